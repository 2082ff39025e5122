//! The `cosell-sandbox` binary as a user starts it.

// A test crate: its helpers may panic on what the test set up.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

struct Child(std::process::Child);

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn port_zero_prints_the_url_once_ready_and_serves_it() {
    let mut child = Child(
        Command::new(env!("CARGO_BIN_EXE_cosell-sandbox"))
            .args(["--port", "0"])
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start cosell-sandbox"),
    );
    let stdout = child.0.stdout.take().expect("stdout");
    let mut line = String::new();
    BufReader::new(stdout).read_line(&mut line).expect("a line");
    let url = line
        .trim()
        .strip_prefix("listening on ")
        .unwrap_or_else(|| panic!("unexpected first line: {line:?}"))
        .to_string();
    assert!(url.starts_with("http://127.0.0.1:"), "{url}");
    let port: u16 = url
        .rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .expect("port");
    assert_ne!(port, 0);

    // Ready means ready: the first request is answered.
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let status = rt.block_on(async {
        reqwest::get(format!("{url}/cert/pcnotifications-dispatch.cer"))
            .await
            .expect("request")
            .status()
    });
    assert_eq!(status, 200);
}

#[test]
fn help_prints_the_default_identities() {
    let out = Command::new(env!("CARGO_BIN_EXE_cosell-sandbox"))
        .arg("--help")
        .output()
        .expect("run --help");
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    for needle in [
        "sandbox-client",
        "sandbox-secret",
        "referral-admin@sandbox.test",
        "referral-user@sandbox.test",
        "--refresh-rotation",
        "--no-sign-in-mfa",
        "--no-partner-center-mfa",
        "--device-code-interval",
        "--bare-schema",
        "/oauth2/v2.0/authorize",
    ] {
        assert!(text.contains(needle), "--help lacks {needle}:\n{text}");
    }
}

#[test]
fn a_half_given_signing_pair_is_refused_naming_the_missing_flag() {
    let out = Command::new(env!("CARGO_BIN_EXE_cosell-sandbox"))
        .args(["--port", "0", "--signing-key", "/nonexistent/key.pem"])
        .output()
        .expect("run");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--signing-cert"), "{err}");
}

#[test]
fn signing_files_written_by_one_run_are_loaded_by_the_next() {
    let dir = std::env::temp_dir().join(format!("cosell-sandbox-cli-{}", std::process::id()));
    let start = |args: &[&str]| {
        let mut child = Child(
            Command::new(env!("CARGO_BIN_EXE_cosell-sandbox"))
                .args(args)
                .stdout(Stdio::piped())
                .spawn()
                .expect("start"),
        );
        let mut line = String::new();
        BufReader::new(child.0.stdout.take().expect("stdout"))
            .read_line(&mut line)
            .expect("line");
        let url = line.trim().trim_start_matches("listening on ").to_string();
        let rt = tokio::runtime::Runtime::new().expect("runtime");
        let cert = rt.block_on(async {
            reqwest::get(format!("{url}/cert/pcnotifications-dispatch.cer"))
                .await
                .expect("request")
                .bytes()
                .await
                .expect("bytes")
        });
        (child, cert)
    };
    let dir_s = dir.to_string_lossy().to_string();
    let (first, cert1) = start(&["--port", "0", "--write-signing-files", &dir_s]);
    drop(first);
    let key = dir.join("key.pem").to_string_lossy().to_string();
    let cert = dir.join("cert.pem").to_string_lossy().to_string();
    let (_second, cert2) = start(&[
        "--port",
        "0",
        "--signing-key",
        &key,
        "--signing-cert",
        &cert,
    ]);
    assert_eq!(cert1, cert2, "the same certificate across restarts");
    std::fs::remove_dir_all(dir).ok();
}

/// The first line of a started sandbox: its URL.
fn started(child: &mut Child) -> String {
    let mut line = String::new();
    BufReader::new(child.0.stdout.take().expect("stdout"))
        .read_line(&mut line)
        .expect("line");
    line.trim().trim_start_matches("listening on ").to_string()
}

#[test]
fn bare_schema_starts_both_crms_as_before_setup() {
    let start = |args: &[&str]| {
        let mut child = Child(
            Command::new(env!("CARGO_BIN_EXE_cosell-sandbox"))
                .args(args)
                .stdout(Stdio::piped())
                .spawn()
                .expect("start"),
        );
        let url = started(&mut child);
        (child, url)
    };
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    // What the control API says about each CRM's schema, without a token.
    let look = |url: &str| {
        rt.block_on(async {
            let http = reqwest::Client::new();
            let get = |path: &str| {
                let http = http.clone();
                let url = format!("{url}{path}");
                async move {
                    let r = http.get(url).send().await.expect("request");
                    let status = r.status().as_u16();
                    let body: serde_json::Value = r.json().await.unwrap_or_default();
                    (status, body)
                }
            };
            let (_, opportunity) = get("/_sandbox/dataverse/schema/opportunities").await;
            let (links, _) = get("/_sandbox/dataverse/schema/cosell_solutionlinks").await;
            let (_, stages) = get("/_sandbox/salesforce/stages").await;
            let connector_columns = opportunity["fields"]
                .as_array()
                .expect("fields")
                .iter()
                .filter(|f| f["name"].as_str().is_some_and(|n| n.starts_with("cosell_")))
                .count();
            let hold_stage = stages
                .as_array()
                .expect("stages")
                .iter()
                .any(|s| s["name"] == "On Hold");
            (
                connector_columns,
                opportunity["changeTracking"].clone(),
                links,
                hold_stage,
            )
        })
    };
    let (_bare, bare_url) = start(&["--port", "0", "--bare-schema"]);
    let (columns, tracking, links, hold) = look(&bare_url);
    assert_eq!(columns, 0, "no connector column on the opportunity");
    assert_eq!(tracking, false, "change tracking off on the opportunity");
    assert_eq!(links, 404, "no solution-link table");
    assert!(!hold, "no On Hold stage in Salesforce");

    let (_full, full_url) = start(&["--port", "0"]);
    let (columns, tracking, links, hold) = look(&full_url);
    assert!(columns > 0);
    assert_eq!(tracking, true);
    assert_eq!(links, 200);
    assert!(hold);
}
