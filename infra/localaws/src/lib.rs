//! Local AWS for tests: starts [moto](https://github.com/getmoto/moto) in
//! server mode and hands out real AWS SDK clients pointed at it.
//!
//! The connector's DynamoDB and SQS code is exercised through the very same
//! SDK clients it uses in Lambda; only the endpoint URL differs. Each [`Moto`]
//! is its own `moto_server` process on its own port, so tests that start their
//! own instance never see each other's tables or queues.
//!
//! ```no_run
//! # async fn demo() -> Result<(), cosell_localaws::LocalAwsError> {
//! let moto = cosell_localaws::Moto::start().await?;
//! let tables = moto.dynamodb().list_tables().send().await;
//! # Ok(()) }
//! ```

use std::collections::VecDeque;
use std::ffi::OsStr;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStderr, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_credential_types::Credentials;
use aws_credential_types::provider::SharedCredentialsProvider;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Environment variable that overrides where `moto_server` is looked up.
pub const MOTO_SERVER_ENV: &str = "MOTO_SERVER";

/// Region every client is configured for; moto accepts any, but one fixed
/// region keeps ARNs and queue URLs predictable in assertions.
pub const REGION: &str = "us-east-1";

/// Test credentials. moto does not validate signatures, but the SDK refuses
/// to send unsigned requests, so something static has to be there.
const ACCESS_KEY_ID: &str = "testing";
const SECRET_ACCESS_KEY: &str = "testing";

/// Python start-up plus importing moto's backends takes ~1 s on an idle
/// machine; a 2-core CI box compiling in parallel can be far slower.
const READY_TIMEOUT: Duration = Duration::from_secs(30);
const POLL_INTERVAL: Duration = Duration::from_millis(100);
/// Per-request bound so a half-open socket cannot eat the whole budget.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);
/// The free port is found by binding and releasing it, so another process can
/// grab it before moto binds; a handful of fresh ports makes that a non-issue.
const PORT_ATTEMPTS: usize = 5;
/// Enough of moto's stderr to show a Python traceback in an error.
const STDERR_TAIL_LINES: usize = 40;

/// Everything that can go wrong while running moto.
#[derive(Debug, thiserror::Error)]
pub enum LocalAwsError {
    /// Neither `$MOTO_SERVER` nor `PATH` yields an executable.
    #[error(
        "moto_server not found: install it with pip install 'moto[server]' (or set MOTO_SERVER to its path)"
    )]
    MotoServerNotFound,

    /// No local port could be reserved for moto.
    #[error("could not reserve a local port for moto_server: {0}")]
    FreePort(#[source] std::io::Error),

    /// The binary exists but could not be executed.
    #[error("failed to spawn {}: {source}", path.display())]
    Spawn {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    /// moto exited before answering HTTP.
    #[error("moto_server exited before it was ready ({status}); stderr tail:\n{stderr_tail}")]
    Exited {
        status: ExitStatus,
        stderr_tail: String,
    },

    /// Every fresh port we tried was taken before moto could bind it.
    #[error(
        "moto_server could not bind a free port after {attempts} attempts; last stderr tail:\n{stderr_tail}"
    )]
    PortsExhausted {
        attempts: usize,
        stderr_tail: String,
    },

    /// moto kept running but never answered HTTP within the deadline.
    #[error(
        "moto_server at {endpoint} did not answer HTTP within {}s; stderr tail:\n{stderr_tail}",
        waited.as_secs()
    )]
    NotReady {
        endpoint: String,
        waited: Duration,
        stderr_tail: String,
    },

    /// A call to moto's own control API (`/moto-api/...`) failed.
    #[error("moto control request {request} to {endpoint} failed: {reason}")]
    ControlApi {
        endpoint: String,
        request: &'static str,
        reason: String,
    },
}

/// A running `moto_server` child process plus an SDK configuration that
/// points at it. Dropping it kills and reaps the process.
///
/// The process is a plain `std::process::Child` (not a tokio one) on purpose:
/// a `Moto` then does not depend on the runtime that started it, so it can be
/// dropped synchronously anywhere without leaving a zombie behind.
#[derive(Debug)]
pub struct Moto {
    endpoint: String,
    sdk_config: SdkConfig,
    process: MotoProcess,
}

impl Moto {
    /// Starts `moto_server` on a free port of 127.0.0.1 and waits until it
    /// answers HTTP.
    ///
    /// The binary is `$MOTO_SERVER` if set, else `moto_server` on `PATH`.
    pub async fn start() -> Result<Moto, LocalAwsError> {
        let binary = find_moto_server(
            std::env::var_os(MOTO_SERVER_ENV).as_deref(),
            std::env::var_os("PATH").as_deref(),
        )?;
        Self::start_binary(&binary, READY_TIMEOUT).await
    }

    async fn start_binary(binary: &Path, ready_timeout: Duration) -> Result<Moto, LocalAwsError> {
        let mut last_tail = String::new();
        for _ in 0..PORT_ATTEMPTS {
            let port = free_port()?;
            let mut process = MotoProcess::spawn(binary, port)?;
            let endpoint = format!("http://127.0.0.1:{port}");
            match wait_until_ready(&mut process, &endpoint, ready_timeout).await {
                Ok(()) => {
                    return Ok(Moto {
                        sdk_config: sdk_config_for(&endpoint),
                        endpoint,
                        process,
                    });
                }
                Err(StartFailure::PortTaken(tail)) => last_tail = tail,
                Err(StartFailure::Fatal(err)) => return Err(err),
            }
        }
        Err(LocalAwsError::PortsExhausted {
            attempts: PORT_ATTEMPTS,
            stderr_tail: last_tail,
        })
    }

    /// Base URL of this moto, e.g. `http://127.0.0.1:40123`.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// Shared SDK configuration: region `us-east-1`, static test credentials,
    /// endpoint URL set to this moto, latest behaviour version. Use it to
    /// build clients for services beyond DynamoDB and SQS.
    pub fn sdk_config(&self) -> SdkConfig {
        self.sdk_config.clone()
    }

    /// A DynamoDB client talking to this moto.
    ///
    /// Each call builds a fresh client (and connection pool). Keep clients
    /// within the tokio runtime that made them: hyper's pool is tied to it.
    pub fn dynamodb(&self) -> aws_sdk_dynamodb::Client {
        aws_sdk_dynamodb::Client::new(&self.sdk_config)
    }

    /// An SQS client talking to this moto.
    ///
    /// moto builds queue URLs from the request's `Host` header, so the URLs it
    /// returns already point at this endpoint and can be used as-is.
    pub fn sqs(&self) -> aws_sdk_sqs::Client {
        aws_sdk_sqs::Client::new(&self.sdk_config)
    }

    /// Wipes all state (tables, queues, ...) in this moto via
    /// `POST /moto-api/reset`, so one instance can serve several scenarios.
    pub async fn reset(&self) -> Result<(), LocalAwsError> {
        let request = "POST /moto-api/reset";
        let status = http_status(self.process.port, "POST", "/moto-api/reset")
            .await
            .map_err(|err| LocalAwsError::ControlApi {
                endpoint: self.endpoint.clone(),
                request,
                reason: err.to_string(),
            })?;
        if status == 200 {
            Ok(())
        } else {
            Err(LocalAwsError::ControlApi {
                endpoint: self.endpoint.clone(),
                request,
                reason: format!("HTTP status {status}"),
            })
        }
    }
}

fn sdk_config_for(endpoint: &str) -> SdkConfig {
    let credentials = Credentials::new(
        ACCESS_KEY_ID,
        SECRET_ACCESS_KEY,
        None,
        None,
        "cosell-localaws",
    );
    // Built by hand rather than via `aws_config::defaults()`: the loader would
    // consult env vars, profiles and IMDS (and needs default features), while
    // tests must never pick up a developer's real AWS identity. Sleep, time
    // source and HTTP client are filled in by each service client's defaults.
    SdkConfig::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new(REGION))
        .credentials_provider(SharedCredentialsProvider::new(credentials))
        .endpoint_url(endpoint)
        .build()
}

/// Resolves the `moto_server` executable.
///
/// Takes the `$MOTO_SERVER` override and `$PATH` as arguments rather than
/// reading the environment, so it can be tested without `set_var` (which is
/// process-global and races with parallel tests).
///
/// An override containing a path separator is taken as a path; a bare name is
/// searched on `PATH` like the default.
pub fn find_moto_server(
    override_path: Option<&OsStr>,
    path_var: Option<&OsStr>,
) -> Result<PathBuf, LocalAwsError> {
    let wanted = match override_path {
        Some(value) if !value.is_empty() => value,
        _ => OsStr::new("moto_server"),
    };
    let wanted_path = Path::new(wanted);
    if wanted_path.components().count() > 1 {
        return if is_executable_file(wanted_path) {
            Ok(wanted_path.to_path_buf())
        } else {
            Err(LocalAwsError::MotoServerNotFound)
        };
    }
    path_var
        .into_iter()
        .flat_map(std::env::split_paths)
        .map(|dir| dir.join(wanted_path))
        .find(|candidate| is_executable_file(candidate))
        .ok_or(LocalAwsError::MotoServerNotFound)
}

#[cfg(unix)]
fn is_executable_file(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    path.metadata()
        .map(|meta| meta.is_file() && meta.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}

#[cfg(not(unix))]
fn is_executable_file(path: &Path) -> bool {
    path.is_file()
}

fn free_port() -> Result<u16, LocalAwsError> {
    let listener =
        std::net::TcpListener::bind(("127.0.0.1", 0)).map_err(LocalAwsError::FreePort)?;
    listener
        .local_addr()
        .map(|addr| addr.port())
        .map_err(LocalAwsError::FreePort)
}

/// Why one start attempt failed: a lost port race is retried on a new port,
/// anything else is reported.
enum StartFailure {
    PortTaken(String),
    Fatal(LocalAwsError),
}

async fn wait_until_ready(
    process: &mut MotoProcess,
    endpoint: &str,
    ready_timeout: Duration,
) -> Result<(), StartFailure> {
    let port = process.port;
    let deadline = Instant::now() + ready_timeout;
    loop {
        if let Some(status) = process.exit_status() {
            return Err(process.exited(status));
        }
        // Any HTTP answer will do (moto serves its dashboard redirect at /).
        // A foreign server that grabbed the port would also answer, so the
        // child's liveness is re-checked afterwards: if moto lost the bind it
        // exits within moments of starting, long before Python is serving.
        if http_status(port, "GET", "/").await.is_ok() {
            tokio::time::sleep(POLL_INTERVAL).await;
            return match process.exit_status() {
                Some(status) => Err(process.exited(status)),
                None => Ok(()),
            };
        }
        if Instant::now() >= deadline {
            return Err(StartFailure::Fatal(LocalAwsError::NotReady {
                endpoint: endpoint.to_owned(),
                waited: ready_timeout,
                stderr_tail: process.stderr_tail(),
            }));
        }
        tokio::time::sleep(POLL_INTERVAL).await;
    }
}

/// Sends a bodiless HTTP/1.1 request and returns the status code.
///
/// Hand-rolled on a TCP socket because the two calls moto's control plane
/// needs do not justify an HTTP client dependency next to the SDK's own.
async fn http_status(port: u16, method: &str, path: &str) -> std::io::Result<u16> {
    let exchange = async {
        let mut stream = TcpStream::connect(("127.0.0.1", port)).await?;
        let request = format!(
            "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        );
        stream.write_all(request.as_bytes()).await?;
        let mut response = Vec::new();
        stream.read_to_end(&mut response).await?;
        parse_status(&response).ok_or_else(|| {
            std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!(
                    "not an HTTP response: {:?}",
                    String::from_utf8_lossy(&response[..response.len().min(80)])
                ),
            )
        })
    };
    tokio::time::timeout(PROBE_TIMEOUT, exchange)
        .await
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "no HTTP response"))?
}

fn parse_status(response: &[u8]) -> Option<u16> {
    let line_end = response.iter().position(|&b| b == b'\n')?;
    let line = std::str::from_utf8(&response[..line_end]).ok()?;
    let mut parts = line.split_whitespace();
    parts
        .next()
        .filter(|version| version.starts_with("HTTP/"))?;
    parts.next()?.parse().ok()
}

/// The child process, reaped on drop, with its stderr drained in the
/// background. Draining matters beyond error messages: moto logs every
/// request to stderr, and an unread pipe would fill up and stall it.
#[derive(Debug)]
struct MotoProcess {
    child: Child,
    port: u16,
    stderr_tail: Arc<Mutex<VecDeque<String>>>,
    stderr_reader: Option<JoinHandle<()>>,
}

impl MotoProcess {
    fn spawn(binary: &Path, port: u16) -> Result<MotoProcess, LocalAwsError> {
        let mut child = Command::new(binary)
            .args(["-H", "127.0.0.1", "-p"])
            .arg(port.to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|source| LocalAwsError::Spawn {
                path: binary.to_path_buf(),
                source,
            })?;
        let stderr_tail = Arc::new(Mutex::new(VecDeque::with_capacity(STDERR_TAIL_LINES)));
        // A plain thread (not a tokio task) so draining survives the runtime
        // that called `start()`, e.g. when one Moto outlives a test runtime.
        let stderr_reader = child.stderr.take().and_then(|stderr| {
            let tail = Arc::clone(&stderr_tail);
            std::thread::Builder::new()
                .name(format!("moto-stderr-{port}"))
                .spawn(move || drain_stderr(stderr, &tail))
                .ok()
        });
        Ok(MotoProcess {
            child,
            port,
            stderr_tail,
            stderr_reader,
        })
    }

    fn exit_status(&mut self) -> Option<ExitStatus> {
        // An error here means the child cannot be polled at all; treating it
        // as still running lets the deadline produce a clear error instead.
        self.child.try_wait().ok().flatten()
    }

    /// Classifies an early exit, after letting the reader catch up with the
    /// last lines the child wrote.
    fn exited(&mut self, status: ExitStatus) -> StartFailure {
        self.wait_for_stderr_eof(Duration::from_secs(1));
        let stderr_tail = self.stderr_tail();
        // Werkzeug reports a lost bind like this before exiting with 1.
        if stderr_tail.contains("Address already in use")
            || stderr_tail.contains("is in use by another program")
        {
            StartFailure::PortTaken(stderr_tail)
        } else {
            StartFailure::Fatal(LocalAwsError::Exited {
                status,
                stderr_tail,
            })
        }
    }

    fn wait_for_stderr_eof(&self, at_most: Duration) {
        let deadline = Instant::now() + at_most;
        while self
            .stderr_reader
            .as_ref()
            .is_some_and(|reader| !reader.is_finished())
            && Instant::now() < deadline
        {
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    fn stderr_tail(&self) -> String {
        let lines = self
            .stderr_tail
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if lines.is_empty() {
            "(empty)".to_owned()
        } else {
            lines
                .iter()
                .map(String::as_str)
                .collect::<Vec<_>>()
                .join("\n")
        }
    }
}

impl Drop for MotoProcess {
    fn drop(&mut self) {
        // SIGKILL rather than a polite SIGTERM: moto holds no state worth
        // flushing, and a prompt exit keeps test teardown fast. `kill` fails
        // only if the child is already gone; `wait` must run either way so the
        // process is reaped rather than left as a zombie.
        let _ = self.child.kill();
        let _ = self.child.wait();
        // The reader thread ends on its own at EOF; it is not joined because
        // a grandchild inheriting the pipe could keep it open indefinitely.
    }
}

fn drain_stderr(stderr: ChildStderr, tail: &Mutex<VecDeque<String>>) {
    let mut reader = BufReader::new(stderr);
    let mut line = Vec::new();
    loop {
        line.clear();
        match reader.read_until(b'\n', &mut line) {
            Ok(0) | Err(_) => return,
            Ok(_) => {
                let text = String::from_utf8_lossy(&line).trim_end().to_owned();
                let mut lines = tail.lock().unwrap_or_else(PoisonError::into_inner);
                if lines.len() == STDERR_TAIL_LINES {
                    lines.pop_front();
                }
                lines.push_back(text);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOT_FOUND: &str = "moto_server not found: install it with pip install 'moto[server]' (or set MOTO_SERVER to its path)";

    #[test]
    fn override_pointing_nowhere_says_how_to_install() {
        let err = find_moto_server(
            Some(OsStr::new("/nonexistent/cosell/moto_server")),
            Some(OsStr::new("/usr/bin:/bin")),
        )
        .expect_err("a nonexistent override must not resolve");
        assert!(matches!(err, LocalAwsError::MotoServerNotFound));
        assert_eq!(err.to_string(), NOT_FOUND);
    }

    #[test]
    fn missing_from_path_says_how_to_install() {
        let empty_dir = std::env::temp_dir().join("cosell-localaws-no-moto-here");
        let err = find_moto_server(None, Some(empty_dir.as_os_str()))
            .expect_err("an empty PATH must not resolve");
        assert_eq!(err.to_string(), NOT_FOUND);
        let err = find_moto_server(None, None).expect_err("no PATH must not resolve");
        assert_eq!(err.to_string(), NOT_FOUND);
    }

    #[cfg(unix)]
    #[test]
    fn override_and_path_lookup_find_an_executable() {
        // `sh` stands in for moto: lookup only checks for an executable file.
        let sh = find_moto_server(Some(OsStr::new("sh")), Some(OsStr::new("/usr/bin:/bin")))
            .expect("sh should be on /usr/bin:/bin");
        assert!(sh.ends_with("sh"));
        let direct = find_moto_server(Some(sh.as_os_str()), None)
            .expect("an explicit path to an executable resolves without PATH");
        assert_eq!(direct, sh);
    }

    /// Writes stand-in `moto_server` scripts and checks each way a start can
    /// fail. One test on purpose: exec'ing a freshly written script while a
    /// parallel test forks can fail with ETXTBSY, so no other test in this
    /// crate spawns processes, and this one writes every script before the
    /// first spawn.
    #[cfg(unix)]
    #[tokio::test]
    async fn start_reports_how_the_child_failed() {
        use std::os::unix::fs::PermissionsExt;

        let dir = std::env::temp_dir().join(format!("cosell-localaws-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("create temp dir");
        let script = |name: &str, body: &str| {
            let path = dir.join(name);
            std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).expect("write script");
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755))
                .expect("chmod script");
            path
        };
        let crashes = script(
            "crashes",
            "echo 'Traceback: ImportError: no flask' >&2; exit 3",
        );
        let port_taken = script(
            "port-taken",
            "echo 'Address already in use' >&2; echo \"Port $4 is in use by another program.\" >&2; exit 1",
        );
        let hangs = script("hangs", "echo 'starting...' >&2; exec sleep 60");

        match Moto::start_binary(&crashes, READY_TIMEOUT).await {
            Err(err @ LocalAwsError::Exited { .. }) => {
                let message = err.to_string();
                assert!(message.contains("ImportError: no flask"), "{message}");
                assert!(message.contains("exit status: 3"), "{message}");
            }
            other => panic!("expected Exited, got {other:?}"),
        }

        match Moto::start_binary(&port_taken, READY_TIMEOUT).await {
            Err(err @ LocalAwsError::PortsExhausted { .. }) => {
                let message = err.to_string();
                assert!(
                    message.contains(&format!("after {PORT_ATTEMPTS} attempts")),
                    "{message}"
                );
                assert!(
                    message.contains("is in use by another program"),
                    "{message}"
                );
            }
            other => panic!("expected PortsExhausted, got {other:?}"),
        }

        let started = Instant::now();
        match Moto::start_binary(&hangs, Duration::from_millis(500)).await {
            Err(err @ LocalAwsError::NotReady { .. }) => {
                assert!(err.to_string().contains("starting..."), "{err}");
            }
            other => panic!("expected NotReady, got {other:?}"),
        }
        // The hung child was killed on the error path, not waited out.
        assert!(started.elapsed() < Duration::from_secs(10));

        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn parses_http_status_lines() {
        assert_eq!(parse_status(b"HTTP/1.1 200 OK\r\n\r\n"), Some(200));
        assert_eq!(
            parse_status(b"HTTP/1.0 302 FOUND\r\nLocation: /x\r\n"),
            Some(302)
        );
        assert_eq!(parse_status(b"SSH-2.0-OpenSSH\r\n"), None);
        assert_eq!(parse_status(b""), None);
    }
}
