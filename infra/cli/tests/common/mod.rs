//! What the tests of the `cosell` binary share: the binary run in its own process, its output
//! collected as it comes.

// Each test crate uses its own part of this module.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Guards against a hang; never a timing assertion.
pub const PATIENCE: Duration = Duration::from_secs(120);
pub const POLL: Duration = Duration::from_millis(100);

/// The `--crm` value of a CRM.
pub fn crm_arg(kind: cosell_e2e::stack::CrmKind) -> &'static str {
    match kind {
        cosell_e2e::stack::CrmKind::Dynamics => "dynamics",
        cosell_e2e::stack::CrmKind::Salesforce => "salesforce",
    }
}

/// A call to the sandbox's control API that must succeed; its JSON answer (null when empty).
pub async fn control(
    sandbox: &cosell_sandbox::Sandbox,
    method: reqwest::Method,
    path: &str,
    body: Option<serde_json::Value>,
) -> serde_json::Value {
    let mut request = reqwest::Client::new().request(method.clone(), sandbox.url(path));
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request
        .send()
        .await
        .unwrap_or_else(|e| panic!("{method} {path}: {e}"));
    let status = response.status();
    let text = response.text().await.unwrap_or_default();
    assert!(
        status.is_success(),
        "{method} {path} answered {status}: {text}"
    );
    serde_json::from_str(&text).unwrap_or(serde_json::Value::Null)
}

pub async fn incoming_co_sell(sandbox: &cosell_sandbox::Sandbox, name: &str) -> String {
    let referral = control(
        sandbox,
        reqwest::Method::POST,
        "/_sandbox/partner-center/incoming?kind=co-sell",
        Some(serde_json::json!({"name": name})),
    )
    .await;
    referral["id"].as_str().expect("an id").to_string()
}

pub async fn referral(sandbox: &cosell_sandbox::Sandbox, id: &str) -> serde_json::Value {
    control(
        sandbox,
        reqwest::Method::GET,
        "/_sandbox/partner-center/referrals",
        None,
    )
    .await
    .as_array()
    .cloned()
    .unwrap_or_default()
    .into_iter()
    .map(|r| r["referral"].clone())
    .find(|r| r["id"].as_str() == Some(id))
    .unwrap_or_else(|| panic!("no referral {id}"))
}

/// Waits until Partner Center holds the CRM id of the referral's record: its sync finished.
pub async fn wait_for_write_back(sandbox: &cosell_sandbox::Sandbox, id: &str) -> String {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        if let Some(crm_id) = referral(sandbox, id).await["externalReferenceId"].as_str() {
            return crm_id.to_string();
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "referral {id} never synced"
        );
        tokio::time::sleep(POLL).await;
    }
}

/// The opportunities whose referral identifier is `id`, as the CRM holds them.
pub async fn opportunities_for(
    sandbox: &cosell_sandbox::Sandbox,
    kind: cosell_e2e::stack::CrmKind,
    id: &str,
) -> Vec<serde_json::Value> {
    let side = cosell_e2e::stack::CrmSide(kind);
    let body = control(
        sandbox,
        reqwest::Method::GET,
        &side.control(side.opportunities()),
        None,
    )
    .await;
    let rows = match kind {
        cosell_e2e::stack::CrmKind::Dynamics => {
            body["value"].as_array().cloned().unwrap_or_default()
        }
        cosell_e2e::stack::CrmKind::Salesforce => body.as_array().cloned().unwrap_or_default(),
    };
    rows.into_iter()
        .filter(|r| r[side.referral_field()].as_str() == Some(id))
        .collect()
}

/// A running `cosell`, its output collected as it comes.
pub struct Cosell {
    pub child: Child,
    pub stdout: Arc<Mutex<Vec<String>>>,
    pub stderr: Arc<Mutex<String>>,
}

impl Cosell {
    /// `cosell <args>` with only `env` for environment (nothing leaks in from the test's).
    pub fn start(args: &[&str], env: &[(&str, &str)]) -> Cosell {
        let mut command = Command::new(env!("CARGO_BIN_EXE_cosell"));
        command
            .args(args)
            .env_clear()
            .env("COSELL_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (k, v) in env {
            command.env(k, v);
        }
        let mut child = command
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start cosell: {e}"));
        let stdout = Arc::new(Mutex::new(Vec::new()));
        let stderr = Arc::new(Mutex::new(String::new()));
        let out = child.stdout.take().expect("piped stdout");
        let lines = stdout.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                lines.lock().unwrap().push(line);
            }
        });
        let mut err = child.stderr.take().expect("piped stderr");
        let text = stderr.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = err.read(&mut buf) {
                if n == 0 {
                    break;
                }
                text.lock()
                    .unwrap()
                    .push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        });
        Cosell {
            child,
            stdout,
            stderr,
        }
    }

    /// The lines of stdout so far.
    pub fn lines(&self) -> Vec<String> {
        self.stdout.lock().unwrap().clone()
    }

    pub fn output(&self) -> String {
        format!(
            "stdout:\n{}\nstderr:\n{}",
            self.stdout.lock().unwrap().join("\n"),
            self.stderr.lock().unwrap()
        )
    }

    /// Waits for a line of stdout containing `needle`.
    pub async fn wait_for(&mut self, needle: &str) {
        let deadline = tokio::time::Instant::now() + PATIENCE;
        loop {
            if self
                .stdout
                .lock()
                .unwrap()
                .iter()
                .any(|l| l.contains(needle))
            {
                return;
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!(
                    "cosell exited ({status}) before printing {needle:?}\n{}",
                    self.output()
                );
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "cosell did not print {needle:?}\n{}",
                self.output()
            );
            tokio::time::sleep(POLL).await;
        }
    }

    /// Ctrl-C.
    pub fn interrupt(&self) {
        let pid = libc::pid_t::try_from(self.child.id()).expect("a pid");
        // SAFETY: kill(2) with a pid this test started and has not reaped yet.
        let sent = unsafe { libc::kill(pid, libc::SIGINT) };
        assert_eq!(sent, 0, "SIGINT to cosell");
    }

    /// `kill -9`: no chance to finish anything.
    pub fn kill(&mut self) {
        self.child.kill().expect("SIGKILL");
    }

    pub async fn exit(&mut self) -> ExitStatus {
        let deadline = tokio::time::Instant::now() + PATIENCE;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                // Let the reader threads take the last lines.
                tokio::time::sleep(POLL).await;
                return status;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "cosell did not exit\n{}",
                self.output()
            );
            tokio::time::sleep(POLL).await;
        }
    }
}

impl Drop for Cosell {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
