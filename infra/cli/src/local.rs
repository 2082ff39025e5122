//! `cosell local`: the whole connector in one process. The webhook ingress runs as an HTTP
//! server (the same `ingress::handle` as the Lambda function) and the processor as a loop over
//! the queue (the same `Processor` as the queue-processor function), with the embedded store and
//! queue under a data directory, or DynamoDB and SQS when they are configured.
//!
//! Partner Center and the CRM are the sandbox unless real ones are configured: started in this
//! process, or a running one (`--sandbox-url`), used with its default identities, with the
//! webhook registered at this process's listen address.

use std::fs::File;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use cosell_sandbox::config::{ADMIN_USER, CLIENT_ID, CLIENT_SECRET};
use cosell_sandbox::{Sandbox, SandboxConfig};
use cosell_shared::config::Config;
use cosell_shared::crm::{Crm, CrmKind};
use cosell_shared::ingress::{self, SignatureCheck};
use cosell_shared::partner_center::http::{
    PartnerCenterClient, RegistrationChange, WebhookRegistration,
};
use cosell_shared::partner_center::refresh_store::{FileTokenStore, RefreshTokenStore};
use cosell_shared::partner_center::signin::SignIn;
use cosell_shared::partner_center::token::{Secret, UserCredential};
use cosell_shared::partner_center::{PartnerCenter, PartnerCenterError};
use cosell_shared::queue::embedded::{EmbeddedQueue, EmbeddedQueueSettings};
use cosell_shared::queue::sqs::SqsQueue;
use cosell_shared::queue::{Queue, QueueConsumer};
use cosell_shared::registrar;
use cosell_shared::secrets::SECRET_ARN_SETTING;
use cosell_shared::store::Store;
use cosell_shared::store::sqlite::SqliteStore;
use cosell_shared::sync::consume;
use cosell_shared::sync::poller::{Poller, PollerOptions};
use cosell_shared::sync::{Processor, SyncOptions, dry_run};
use cosell_shared::wiring;
use tokio::sync::Notify;

use crate::demo;
use crate::settings::Settings;

/// The path Partner Center delivers to.
pub const WEBHOOK_PATH: &str = "/webhooks/partner-center";
/// The embedded sync queue's name, and its dead-letter queue's, in `queue.sqlite3`.
pub const QUEUE_NAME: &str = "sync";
pub const DEAD_LETTER_QUEUE_NAME: &str = "sync-dlq";
/// The metrics `cosell local` emits (CloudWatch Embedded Metric Format, one JSON line each), in
/// the data directory, with this `Service`.
pub const METRICS_FILE: &str = "metrics.jsonl";
pub const METRICS_SERVICE: &str = "cosell-local";

/// What `cosell local` was asked to do.
#[derive(Debug, Clone)]
pub struct LocalOptions {
    pub crm: Option<CrmKind>,
    pub sandbox_url: Option<String>,
    pub listen: SocketAddr,
    /// The URL Partner Center should deliver to, when it is not the listen address (real
    /// Partner Center cannot reach a laptop without a tunnel or a proxy).
    pub public_url: Option<String>,
    pub demo: bool,
    pub data_dir: PathBuf,
    /// How often the CRM change poller (and the reconciliation with Partner Center) runs.
    pub poll_interval: Duration,
}

#[derive(Debug, thiserror::Error)]
pub enum LocalError {
    #[error("{0}")]
    Setting(String),
    #[error("cannot start the sandbox: {0}")]
    Sandbox(String),
    #[error("the data directory {path}: {message}")]
    DataDir { path: PathBuf, message: String },
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("the webhook registration failed: {0}")]
    Registration(String),
    #[error("{0}")]
    Demo(String),
    /// A part of the running connector stopped on its own; the others were stopped with it, so
    /// the process never goes on half working (receiving webhooks nobody processes).
    #[error("{part} stopped: {reason}; cosell local stopped with it")]
    Stopped { part: &'static str, reason: String },
}

fn setting(name: &str, reason: impl std::fmt::Display) -> LocalError {
    LocalError::Setting(format!("{name}: {reason}"))
}

/// Where Partner Center and the CRM are.
enum Target {
    /// A sandbox: ours (kept alive here) or a running one.
    Sandbox {
        base_url: String,
        owned: Option<Sandbox>,
    },
    Real,
}

impl Target {
    fn sandbox_url(&self) -> Option<&str> {
        match self {
            Target::Sandbox { base_url, .. } => Some(base_url),
            Target::Real => None,
        }
    }
}

/// The store and queue in use, and how to describe them.
struct Backend {
    store: Arc<dyn Store>,
    queue: Arc<dyn Queue>,
    consumer: Arc<dyn QueueConsumer>,
    description: String,
    // Held while running: one `cosell local` per data directory.
    _lock: Option<File>,
}

/// Runs until `shutdown` completes, then finishes the message in hand and returns.
pub async fn run(
    options: LocalOptions,
    mut settings: Settings,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), LocalError> {
    if let Some(kind) = options.crm {
        settings.set(
            "COSELL_CRM",
            match kind {
                CrmKind::Dynamics => "dynamics",
                CrmKind::Salesforce => "salesforce",
            },
        );
    }
    if settings.get("COSELL_CRM").is_none() {
        return Err(setting(
            "--crm (or COSELL_CRM)",
            "is required: dynamics or salesforce",
        ));
    }
    let target = target(&options, &settings).await?;
    if let Some(base) = target.sandbox_url() {
        sandbox_settings(&mut settings, base).await?;
        // The sign-in just made is the newest: rotations go on from it.
        if settings.get(SECRET_ARN_SETTING).is_none()
            && let Some(token) = settings.get("COSELL_PC_REFRESH_TOKEN")
        {
            FileTokenStore::in_dir(&options.data_dir)
                .sign_in(&Secret::new(token))
                .await
                .map_err(|e| LocalError::Setting(e.to_string()))?;
        }
    } else if settings.get(SECRET_ARN_SETTING).is_none()
        && settings.get("COSELL_PC_REFRESH_TOKEN").is_none()
        && settings.get("COSELL_PC_PASSWORD").is_none()
    {
        // `cosell auth login` keeps the Referral admin's sign-in in the data directory.
        if let Some(stored) = FileTokenStore::in_dir(&options.data_dir)
            .load()
            .await
            .map_err(|e| LocalError::Setting(e.to_string()))?
        {
            settings.set("COSELL_PC_REFRESH_TOKEN", stored.token.expose());
        }
    }
    if options.demo && target.sandbox_url().is_none() {
        return Err(setting(
            "--demo",
            "seeds referrals into the sandbox; it cannot run against a real Partner Center",
        ));
    }
    // The secret settings may come from Secrets Manager, as they do for the functions.
    let config = if settings.get(SECRET_ARN_SETTING).is_some() {
        let sdk = wiring::sdk_config_from(settings.values()).await;
        wiring::load(settings.values().clone(), &sdk)
            .await
            .map_err(|e| LocalError::Setting(e.to_string()))?
    } else {
        settings
            .config()
            .map_err(|e| LocalError::Setting(e.to_string()))?
    };
    let backend = backend(&options, &settings, &config).await?;
    cosell_shared::metrics::set_service(METRICS_SERVICE);
    std::fs::create_dir_all(&options.data_dir)
        .and_then(|()| cosell_shared::metrics::write_to_file(&options.data_dir.join(METRICS_FILE)))
        .map_err(|e| LocalError::DataDir {
            path: options.data_dir.clone(),
            message: format!("cannot open {METRICS_FILE}: {e}"),
        })?;

    let sdk = wiring::sdk_config_from(settings.values()).await;
    let tokens = wiring::token_store(config.secret_arn.as_deref(), &sdk, Some(&options.data_dir));
    let pc = Arc::new(
        wiring::partner_center_client(&config, tokens)
            .map_err(|e| LocalError::Setting(e.to_string()))?,
    );
    // A sign-in that cannot work stops start-up here, rather than failing every message later.
    match pc.signed_in_user().await {
        Err(e @ PartnerCenterError::Auth { .. }) => {
            return Err(LocalError::Setting(format!("Partner Center sign-in: {e}")));
        }
        Err(e) => tracing::warn!(error = %e, "cannot check the Partner Center sign-in yet"),
        Ok(_) => {}
    }
    let crm = wiring::crm(&config).map_err(|e| LocalError::Setting(e.to_string()))?;
    let verifier = wiring::verifier(&config).map_err(|e| LocalError::Setting(e.to_string()))?;

    let listener = tokio::net::TcpListener::bind(options.listen)
        .await
        .map_err(|source| LocalError::Listen {
            addr: options.listen,
            source,
        })?;
    let local_addr = listener.local_addr().map_err(|source| LocalError::Listen {
        addr: options.listen,
        source,
    })?;

    let stopping = Arc::new(AtomicBool::new(false));
    let stop_now = Arc::new(Notify::new());
    let server_stop = Arc::new(Notify::new());
    let receiver = Receiver {
        verifier: verifier.clone(),
        queue: backend.queue.clone(),
    };
    let router = axum::Router::new()
        .route(WEBHOOK_PATH, axum::routing::post(receive))
        .route("/healthz", axum::routing::get(|| async { "ok" }))
        .with_state(receiver);
    let mut server = {
        let server_stop = server_stop.clone();
        tokio::spawn(async move {
            axum::serve(listener, router)
                .with_graceful_shutdown(async move { server_stop.notified().await })
                .await
                .map_err(|e| e.to_string())
        })
    };

    // COSELL_DRY_RUN: as in a deployed stack, the writes are logged instead of made.
    let (sync_crm, sync_pc, sync_store, poll_crm, poll_pc, poll_store) = if config.dry_run {
        tracing::warn!(
            "COSELL_DRY_RUN is set: the CRM and Partner Center writes are logged, not made"
        );
        let (c, p, s) = dry_run::wrap(crm.clone(), pc.clone(), backend.store.clone(), None);
        let (pc_, pp, ps) = dry_run::wrap(
            crm.clone(),
            pc.clone(),
            backend.store.clone(),
            Some(dry_run::CURSOR_PREFIX),
        );
        (c, p, s, pc_, pp, ps)
    } else {
        let pc: Arc<dyn PartnerCenter> = pc.clone();
        (
            crm.clone(),
            pc.clone(),
            backend.store.clone(),
            crm.clone(),
            pc,
            backend.store.clone(),
        )
    };
    let processor = Arc::new(Processor {
        pc: sync_pc,
        crm: sync_crm,
        store: sync_store,
        options: SyncOptions::clone(&config.sync),
    });
    let mut worker = tokio::spawn(process_loop(
        backend.consumer.clone(),
        processor,
        stopping.clone(),
        stop_now.clone(),
    ));
    let mut poller = tokio::spawn(poll_loop(
        PollerParts {
            crm: poll_crm,
            pc: poll_pc,
            store: poll_store,
            queue: backend.queue.clone(),
            options: config.poller.clone(),
        },
        options.poll_interval,
        stopping.clone(),
        stop_now.clone(),
    ));

    let webhook_url = match (&options.public_url, &target) {
        (Some(url), _) => Some(url.clone()),
        (None, Target::Sandbox { .. }) => {
            Some(format!("http://{}{WEBHOOK_PATH}", reachable(local_addr)))
        }
        (None, Target::Real) => None,
    };
    let registered = match &webhook_url {
        Some(url) => Some(register(&pc, url).await?),
        None => None,
    };

    println!("cosell local is running");
    println!("  CRM:            {}", crm_name(crm.kind()));
    match &target {
        Target::Sandbox { base_url, owned } => println!(
            "  Partner Center: the sandbox at {base_url}{}",
            if owned.is_some() {
                " (started here)"
            } else {
                ""
            }
        ),
        Target::Real => println!("  Partner Center: {}", config.partner_center.api_base_url),
    }
    println!("  Store, queue:   {}", backend.description);
    println!("  Webhook:        http://{local_addr}{WEBHOOK_PATH}");
    match (&webhook_url, &registered) {
        (Some(url), Some(change)) => println!("  Registered:     {url} ({change})"),
        _ => println!(
            "  Registered:     no (give --public-url to point Partner Center at this process)"
        ),
    }
    println!("Press Ctrl-C to stop.");

    let demo_task = match (options.demo, target.sandbox_url()) {
        (true, Some(base)) => Some(tokio::spawn(demo::run(
            base.to_string(),
            backend.store.clone(),
            crm.clone() as Arc<dyn Crm>,
        ))),
        _ => None,
    };

    // Which part has already been awaited: a finished handle must not be awaited again.
    let (mut worker_done, mut poller_done, mut server_done) = (false, false, false);
    let stopped = tokio::select! {
        () = shutdown => None,
        r = &mut worker => {
            worker_done = true;
            failure(PROCESSOR, r.map(Ok), true)
        }
        r = &mut poller => {
            poller_done = true;
            failure(POLLER, r.map(Ok), true)
        }
        r = &mut server => {
            server_done = true;
            failure(RECEIVER, r, true)
        }
    };
    println!("Stopping: finishing the message in hand…");
    stopping.store(true, Ordering::SeqCst);
    stop_now.notify_waiters();
    server_stop.notify_waiters();
    if let Some(task) = demo_task {
        task.abort();
    }
    // Each part has been told to stop; a panic while stopping is reported, not swallowed.
    let mut failed_while_stopping = None;
    if !worker_done {
        failed_while_stopping = failure(PROCESSOR, worker.await.map(Ok), false);
    }
    if !poller_done {
        failed_while_stopping =
            failed_while_stopping.or(failure(POLLER, poller.await.map(Ok), false));
    }
    if !server_done {
        failed_while_stopping = failed_while_stopping.or(failure(RECEIVER, server.await, false));
    }
    let waiting = backend
        .consumer
        .depth()
        .await
        .map(|d| d.total().to_string())
        .unwrap_or_else(|_| "an unknown number of".into());
    println!("Stopped. {waiting} message(s) wait in the queue for the next start.");
    if let Target::Sandbox {
        owned: Some(sandbox),
        ..
    } = target
    {
        sandbox.stop().await;
    }
    match stopped.or(failed_while_stopping) {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

const PROCESSOR: &str = "the queue processor";
const POLLER: &str = "the CRM poller";
const RECEIVER: &str = "the webhook receiver";

/// What the end of a part that runs until told to stop says: `None` when it stopped cleanly
/// after being told to (`early` is false), else why it stopped.
fn failure(
    part: &'static str,
    r: Result<Result<(), String>, tokio::task::JoinError>,
    early: bool,
) -> Option<LocalError> {
    let reason = match r {
        Ok(Ok(())) if early => "it ended before it was told to".to_string(),
        Ok(Ok(())) => return None,
        Ok(Err(e)) => e,
        Err(e) if e.is_panic() => {
            let payload = e.into_panic();
            let message = payload
                .downcast_ref::<&str>()
                .map(|s| (*s).to_string())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "no message".into());
            format!("it panicked ({message})")
        }
        Err(_) => "it was cancelled".into(),
    };
    Some(LocalError::Stopped { part, reason })
}

/// The sandbox unless real services are configured: a real Partner Center app is the sign.
async fn target(options: &LocalOptions, settings: &Settings) -> Result<Target, LocalError> {
    if let Some(url) = &options.sandbox_url {
        check_sandbox_url(url)?;
        return Ok(Target::Sandbox {
            base_url: url.trim_end_matches('/').to_string(),
            owned: None,
        });
    }
    if settings.get("COSELL_PC_CLIENT_ID").is_some() {
        return Ok(Target::Real);
    }
    let sandbox = Sandbox::start(SandboxConfig::default())
        .await
        .map_err(|e| LocalError::Sandbox(e.to_string()))?;
    Ok(Target::Sandbox {
        base_url: sandbox.base_url().to_string(),
        owned: Some(sandbox),
    })
}

/// `--sandbox-url` must be an http(s) URL.
pub(crate) fn check_sandbox_url(url: &str) -> Result<(), LocalError> {
    let parsed = url::Url::parse(url).map_err(|e| setting("--sandbox-url", e))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(setting("--sandbox-url", "is not an http(s) URL"));
    }
    Ok(())
}

/// Points every connection setting at the sandbox, with its default identities, and signs its
/// Referral admin in (the sandbox, like Partner Center, asks for MFA, which only an interactive
/// sign-in passes; the sandbox's needs no form). The admin's sync options (marker, co-sell
/// only…) stay as configured.
pub(crate) async fn sandbox_settings(
    settings: &mut Settings,
    base: &str,
) -> Result<(), LocalError> {
    sandbox_app_settings(settings, base);
    let values = settings.values().clone();
    let env = cosell_shared::config::Env(&|name| values.get(name).cloned());
    let auth = cosell_shared::config::partner_center_app(
        &env,
        UserCredential::RefreshToken(Secret::new("")),
    )
    .map_err(|e| LocalError::Setting(e.to_string()))?;
    let signed_in = SignIn::new(auth, reqwest::Client::new())
        .sign_in_without_form(Some(ADMIN_USER))
        .await
        .map_err(|e| {
            LocalError::Sandbox(format!("cannot sign in to the sandbox at {base}: {e}"))
        })?;
    settings.set("COSELL_PC_REFRESH_TOKEN", signed_in.refresh_token.expose());
    sandbox_crm_settings(settings, base).await
}

/// The sandbox's app registrations and URLs, without signing anyone in.
pub(crate) fn sandbox_app_settings(settings: &mut Settings, base: &str) {
    let pairs = [
        ("COSELL_PC_CLIENT_ID", CLIENT_ID),
        ("COSELL_PC_CLIENT_SECRET", CLIENT_SECRET),
        ("COSELL_DATAVERSE_TENANT", "sandbox"),
        ("COSELL_DATAVERSE_CLIENT_ID", CLIENT_ID),
        ("COSELL_DATAVERSE_CLIENT_SECRET", CLIENT_SECRET),
    ];
    for (name, value) in pairs {
        settings.set(name, value);
    }
    for name in [
        "COSELL_PC_AUTHORITY_URL",
        "COSELL_PC_API_URL",
        "COSELL_PC_WEBHOOKS_URL",
        "COSELL_DATAVERSE_URL",
        "COSELL_DATAVERSE_AUTHORITY_URL",
    ] {
        settings.set(name, base);
    }
    settings.set("COSELL_WEBHOOK_CERT_PREFIXES", format!("{base}/cert/"));
}

/// The sandbox's Salesforce connected app, when the CRM is Salesforce.
async fn sandbox_crm_settings(settings: &mut Settings, base: &str) -> Result<(), LocalError> {
    if settings
        .get("COSELL_CRM")
        .is_some_and(|c| c.eq_ignore_ascii_case("salesforce"))
    {
        // The connected app (and its login URL) as the sandbox describes it.
        let app: serde_json::Value = reqwest::Client::new()
            .get(format!("{base}/_sandbox/salesforce/connected-app"))
            .send()
            .await
            .and_then(reqwest::Response::error_for_status)
            .map_err(|e| {
                LocalError::Sandbox(format!("the sandbox at {base} does not answer: {e}"))
            })?
            .json()
            .await
            .map_err(|e| LocalError::Sandbox(format!("the sandbox's connected app: {e}")))?;
        let field = |name: &str| {
            app[name].as_str().map(str::to_string).ok_or_else(|| {
                LocalError::Sandbox(format!("the sandbox's connected app has no {name}"))
            })
        };
        settings.set("COSELL_SALESFORCE_CLIENT_ID", field("consumerKey")?);
        settings.set("COSELL_SALESFORCE_CLIENT_SECRET", field("consumerSecret")?);
        settings.set("COSELL_SALESFORCE_LOGIN_URL", field("loginUrl")?);
    }
    Ok(())
}

/// The embedded store and queue under the data directory, or DynamoDB and SQS when both are
/// configured.
async fn backend(
    options: &LocalOptions,
    settings: &Settings,
    config: &Config,
) -> Result<Backend, LocalError> {
    match (
        settings.get("COSELL_TABLE_NAME"),
        settings.get("COSELL_QUEUE_URL"),
    ) {
        (Some(table), Some(queue_url)) => {
            let sdk = wiring::aws_sdk_config(config).await;
            let store =
                wiring::store(config, &sdk).map_err(|e| LocalError::Setting(e.to_string()))?;
            let sqs = Arc::new(SqsQueue::new(aws_sdk_sqs::Client::new(&sdk), queue_url));
            Ok(Backend {
                store,
                queue: sqs.clone(),
                consumer: sqs,
                description: format!("DynamoDB table {table}, SQS queue {queue_url}"),
                _lock: None,
            })
        }
        (Some(_), None) => Err(setting(
            "COSELL_QUEUE_URL",
            "is required with COSELL_TABLE_NAME (or set neither for the embedded store and queue)",
        )),
        (None, Some(_)) => Err(setting(
            "COSELL_TABLE_NAME",
            "is required with COSELL_QUEUE_URL (or set neither for the embedded store and queue)",
        )),
        (None, None) => embedded(&options.data_dir, settings, config.retention).await,
    }
}

async fn embedded(
    data_dir: &Path,
    settings: &Settings,
    retention: Duration,
) -> Result<Backend, LocalError> {
    let dir_error = |message: String| LocalError::DataDir {
        path: data_dir.to_owned(),
        message,
    };
    std::fs::create_dir_all(data_dir).map_err(|e| dir_error(e.to_string()))?;
    let lock_path = data_dir.join("cosell.lock");
    let lock = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .map_err(|e| dir_error(format!("cannot open {}: {e}", lock_path.display())))?;
    lock.try_lock().map_err(|_| {
        dir_error(
            "another `cosell local` is using it; stop that one or give another --data-dir".into(),
        )
    })?;

    let store = SqliteStore::open_with_retention(&data_dir.join("state.sqlite3"), retention)
        .map_err(|e| dir_error(e.to_string()))?;
    let defaults = EmbeddedQueueSettings::default();
    let queue_settings = EmbeddedQueueSettings {
        visibility_timeout: Duration::from_secs(number(
            settings,
            "COSELL_QUEUE_VISIBILITY_TIMEOUT_SECS",
            defaults.visibility_timeout.as_secs(),
        )?),
        max_receive_count: u32::try_from(number(
            settings,
            "COSELL_QUEUE_MAX_RECEIVE_COUNT",
            u64::from(defaults.max_receive_count),
        )?)
        .map_err(|_| setting("COSELL_QUEUE_MAX_RECEIVE_COUNT", "is too large"))?,
        dead_letter_queue: Some(DEAD_LETTER_QUEUE_NAME.to_string()),
        ..defaults
    };
    let queue_path = data_dir.join("queue.sqlite3");
    let queue = Arc::new(
        EmbeddedQueue::open(&queue_path, QUEUE_NAME, queue_settings)
            .map_err(|e| dir_error(e.to_string()))?,
    );
    // The lock is ours, so whatever is in flight or claimed belongs to a run that died: hand it
    // back now rather than after the visibility timeout and the claim's expiry.
    let messages = queue
        .release_in_flight()
        .await
        .map_err(|e| dir_error(e.to_string()))?;
    let claims = store
        .release_abandoned_claims()
        .await
        .map_err(|e| dir_error(e.to_string()))?;
    if messages > 0 || claims > 0 {
        tracing::info!(messages, claims, "picked up what the last run left in hand");
    }
    Ok(Backend {
        store: Arc::new(store),
        queue: queue.clone(),
        consumer: queue,
        description: format!("embedded, in {}", data_dir.display()),
        _lock: Some(lock),
    })
}

fn number(settings: &Settings, name: &str, default: u64) -> Result<u64, LocalError> {
    match settings.get(name) {
        None => Ok(default),
        Some(v) => v
            .trim()
            .parse()
            .map_err(|_| setting(name, format!("'{v}' is not a whole number"))),
    }
}

/// Registers `url` for the referral events (the signature in `x-ms-signature`).
async fn register(pc: &PartnerCenterClient, url: &str) -> Result<String, LocalError> {
    let wanted = WebhookRegistration {
        webhook_url: url.to_string(),
        webhook_events: registrar::EVENTS.iter().map(|e| e.to_string()).collect(),
        signature_to_ms_header: true,
    };
    let change = pc
        .ensure_webhook(&wanted)
        .await
        .map_err(|e| LocalError::Registration(e.to_string()))?;
    Ok(match change {
        RegistrationChange::Created => "new".to_string(),
        RegistrationChange::Unchanged => "already in place".to_string(),
        RegistrationChange::Replaced { previous } => {
            tracing::warn!(previous = %previous.webhook_url, "the webhook registration pointed elsewhere; it now points here");
            format!("taken over from {}", previous.webhook_url)
        }
    })
}

/// The address to give others for `addr`: loopback when it listens on every interface.
fn reachable(addr: SocketAddr) -> SocketAddr {
    if addr.ip().is_unspecified() {
        let ip = match addr.ip() {
            IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::LOCALHOST),
            IpAddr::V6(_) => IpAddr::V6(std::net::Ipv6Addr::LOCALHOST),
        };
        SocketAddr::new(ip, addr.port())
    } else {
        addr
    }
}

pub fn crm_name(kind: CrmKind) -> &'static str {
    match kind {
        CrmKind::Dynamics => "Dynamics 365 (Dataverse)",
        CrmKind::Salesforce => "Salesforce",
    }
}

/// The ingress's collaborators.
#[derive(Clone)]
struct Receiver {
    verifier: Arc<cosell_shared::partner_center::signature::SignatureVerifier>,
    queue: Arc<dyn Queue>,
}

async fn receive(
    State(receiver): State<Receiver>,
    headers: HeaderMap,
    body: Bytes,
) -> (StatusCode, [(&'static str, &'static str); 1], String) {
    let verifier: &dyn SignatureCheck = receiver.verifier.as_ref();
    let reply = ingress::handle(&headers, &body, verifier, receiver.queue.as_ref()).await;
    let status = StatusCode::from_u16(reply.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    (status, [("content-type", "application/json")], reply.body)
}

/// What the poll loop runs against.
struct PollerParts {
    crm: Arc<dyn Crm>,
    pc: Arc<dyn PartnerCenter>,
    store: Arc<dyn Store>,
    queue: Arc<dyn Queue>,
    options: PollerOptions,
}

/// Polls the CRM and reconciles with Partner Center every `interval` until stopped, as the
/// scheduled crm-poller function does in AWS. A run in progress finishes before the stop.
async fn poll_loop(
    parts: PollerParts,
    interval: Duration,
    stopping: Arc<AtomicBool>,
    stop_now: Arc<Notify>,
) {
    while !stopping.load(Ordering::SeqCst) {
        let poller = Poller {
            crm: parts.crm.as_ref(),
            pc: parts.pc.as_ref(),
            store: parts.store.as_ref(),
            queue: parts.queue.as_ref(),
            options: &parts.options,
        };
        let (report, errors) = poller.run(chrono::Utc::now()).await;
        if report.crm_enqueued + report.referrals_enqueued > 0 {
            tracing::info!(
                crm = report.crm_enqueued,
                referrals = report.referrals_enqueued,
                "the poll found changes to sync"
            );
        }
        for e in errors {
            tracing::warn!(error = %e, "the poll did not complete; it runs again at the next interval");
        }
        pause(interval, &stopping, &stop_now).await;
    }
}

/// Sleeps for `duration`, or until a stop: one that came before this call is not missed.
async fn pause(duration: Duration, stopping: &AtomicBool, stop_now: &Notify) {
    let notified = stop_now.notified();
    tokio::pin!(notified);
    notified.as_mut().enable();
    if stopping.load(Ordering::SeqCst) {
        return;
    }
    tokio::select! {
        () = tokio::time::sleep(duration) => {}
        () = notified => {}
    }
}

/// Receives and processes until stopped. A stop lets the message in hand finish and hands the
/// rest of its batch back to the queue.
async fn process_loop(
    consumer: Arc<dyn QueueConsumer>,
    processor: Arc<Processor>,
    stopping: Arc<AtomicBool>,
    stop_now: Arc<Notify>,
) {
    // Long enough to be cheap, short enough that a stop is noticed at once.
    const WAIT: Duration = Duration::from_secs(1);
    while !stopping.load(Ordering::SeqCst) {
        let deliveries = match consumer.receive(10, WAIT).await {
            Ok(d) => d,
            Err(e) => {
                tracing::warn!(error = %e, "cannot receive from the queue; trying again shortly");
                pause(Duration::from_secs(2), &stopping, &stop_now).await;
                continue;
            }
        };
        if deliveries.is_empty() {
            continue;
        }
        let result = consume::run_batch(
            consumer.as_ref(),
            deliveries,
            |m| {
                let (processor, body, sent_at) = (processor.clone(), m.body.clone(), m.sent_at);
                async move { processor.handle_message(&body, sent_at).await }
            },
            || !stopping.load(Ordering::SeqCst),
            consume::backoff,
        )
        .await;
        match result {
            Ok(report) if report.failed > 0 => {
                tracing::info!(
                    failed = report.failed,
                    succeeded = report.succeeded,
                    "some sync commands will be retried"
                )
            }
            Ok(_) => {}
            Err(e) => {
                tracing::warn!(error = %e, "the queue did not take a result; the message will come again")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_part_that_ends_or_panics_is_reported_with_its_reason() {
        let reason = |e: Option<LocalError>| match e {
            Some(LocalError::Stopped { reason, .. }) => Some(reason),
            _ => None,
        };
        let panicked = tokio::spawn(async { panic!("the store is gone") }).await;
        assert_eq!(
            reason(failure(POLLER, panicked.map(Ok), true)).as_deref(),
            Some("it panicked (the store is gone)")
        );
        let formatted = tokio::spawn(async { panic!("{} left", 3) }).await;
        assert_eq!(
            reason(failure(POLLER, formatted.map(Ok), false)).as_deref(),
            Some("it panicked (3 left)")
        );
        assert_eq!(
            reason(failure(POLLER, Ok(Ok(())), true)).as_deref(),
            Some("it ended before it was told to")
        );
        assert!(failure(POLLER, Ok(Ok(())), false).is_none(), "a clean stop");
        assert_eq!(
            reason(failure(RECEIVER, Ok(Err("address in use".into())), false)).as_deref(),
            Some("address in use")
        );
        let stopped = LocalError::Stopped {
            part: POLLER,
            reason: "it panicked (boom)".into(),
        };
        assert_eq!(
            stopped.to_string(),
            "the CRM poller stopped: it panicked (boom); cosell local stopped with it"
        );
    }
}
