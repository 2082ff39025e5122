//! The webhook registrar against the sandbox over real HTTP: a fresh tenant, a registration
//! already in place, one taken over by another environment (reported, or put back), a 409 on
//! the POST, and validation events that reach a local receiver or fail with the receiver's
//! own answer.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::http::StatusCode;
use cosell_e2e::fast_retries;
use cosell_sandbox::{Sandbox, SandboxConfig};
use cosell_shared::metrics::Metric;
use cosell_shared::partner_center::PartnerCenterError;
use cosell_shared::partner_center::http::{
    PartnerCenterClient, PartnerCenterConfig, WebhookRegistration,
};
use cosell_shared::registrar::{
    Action, EVENTS, MetricSink, Mode, Registrar, RegistrarError, RegistrarOptions, Report,
};
use serde_json::{Value, json};

const POST_REGISTRATION: &str = "POST /webhooks/v1/registration";
const PUT_REGISTRATION: &str = "PUT /webhooks/v1/registration";

/// Counts kept for the test to read.
#[derive(Default)]
struct Metrics(Mutex<Vec<(Metric, f64)>>);

impl MetricSink for Metrics {
    fn count(&self, metric: Metric, value: f64) {
        self.0.lock().expect("lock").push((metric, value));
    }
}

impl Metrics {
    fn value(&self, metric: Metric) -> Option<f64> {
        self.0
            .lock()
            .expect("lock")
            .iter()
            .rev()
            .find(|(m, _)| *m == metric)
            .map(|(_, v)| *v)
    }
}

/// A sandbox, a local webhook receiver, and a Partner Center client for the sandbox's admin.
struct Setup {
    sandbox: Sandbox,
    client: PartnerCenterClient,
    /// Answers 200 and counts what it receives.
    ok_url: String,
    /// Answers 500.
    failing_url: String,
    received: Arc<AtomicUsize>,
}

impl Setup {
    async fn start() -> Setup {
        Setup::start_with(SandboxConfig::default()).await
    }

    async fn start_with(config: SandboxConfig) -> Setup {
        let sandbox = Sandbox::start(SandboxConfig {
            // A failing receiver is given up on quickly.
            webhook_attempts: 2,
            webhook_retry_base: Duration::from_millis(50),
            ..config
        })
        .await
        .unwrap_or_else(|e| panic!("cannot start the sandbox: {e}"));
        let client = PartnerCenterClient::new(
            PartnerCenterConfig {
                api_base_url: sandbox.base_url().to_string(),
                webhooks_base_url: sandbox.base_url().to_string(),
                timeout: Duration::from_secs(10),
                retry: fast_retries(2),
            },
            cosell_e2e::sandbox_admin_auth(sandbox.base_url()).await,
        )
        .unwrap_or_else(|e| panic!("client: {e}"));
        let received = Arc::new(AtomicUsize::new(0));
        let counter = received.clone();
        let app = axum::Router::new()
            .route(
                "/ok",
                axum::routing::post(move || {
                    let counter = counter.clone();
                    async move {
                        counter.fetch_add(1, Ordering::SeqCst);
                        StatusCode::OK
                    }
                }),
            )
            .route(
                "/failing",
                axum::routing::post(|| async { StatusCode::INTERNAL_SERVER_ERROR }),
            );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(async move { axum::serve(listener, app).await });
        Setup {
            sandbox,
            client,
            ok_url: format!("http://{addr}/ok"),
            failing_url: format!("http://{addr}/failing"),
            received,
        }
    }

    async fn ensure(
        &self,
        url: &str,
        mode: Mode,
        metrics: &Metrics,
    ) -> Result<Report, RegistrarError> {
        Registrar {
            registry: &self.client,
            metrics,
            options: RegistrarOptions {
                // Generous: only a broken delivery reaches it.
                validation_timeout: Duration::from_secs(60),
                poll_interval: Duration::from_millis(50),
            },
        }
        .ensure(url, mode)
        .await
    }

    async fn registration(&self) -> Option<WebhookRegistration> {
        self.client
            .webhook_registration()
            .await
            .expect("GET registration")
    }

    async fn control(&self, method: reqwest::Method, path: &str, body: Value) -> Value {
        cosell_e2e::sandbox_control(&self.sandbox, method, path, body).await
    }

    async fn calls(&self, key: &str) -> u64 {
        self.control(reqwest::Method::GET, "/_sandbox/stats", Value::Null)
            .await
            .get(key)
            .and_then(Value::as_u64)
            .unwrap_or(0)
    }

    /// Another environment registers its own URL.
    async fn taken_over_by(&self, url: &str) {
        self.client
            .ensure_webhook(&WebhookRegistration {
                webhook_url: url.into(),
                webhook_events: vec!["referral-created".into(), "referral-updated".into()],
                signature_to_ms_header: false,
            })
            .await
            .expect("the other environment registers");
    }
}

fn events() -> Vec<String> {
    EVENTS.iter().map(|e| e.to_string()).collect()
}

#[tokio::test]
async fn a_fresh_tenant_is_registered_and_the_validation_event_arrives() {
    let s = Setup::start().await;
    assert_eq!(s.registration().await, None);
    let metrics = Metrics::default();

    let report = s
        .ensure(&s.ok_url, Mode::Deploy, &metrics)
        .await
        .expect("registered");

    assert_eq!(report.action, Action::Created);
    assert_eq!(report.found, None);
    assert_eq!(report.validation.response_code, "OK");
    let reg = s.registration().await.expect("a registration");
    assert_eq!(reg.webhook_url, s.ok_url);
    assert_eq!(reg.webhook_events, events());
    assert!(reg.signature_to_ms_header);
    assert_eq!(
        s.received.load(Ordering::SeqCst),
        1,
        "the test event reached the receiver"
    );
    assert_eq!(
        metrics.value(Metric::RegistrationValidationFailed),
        Some(0.0)
    );
}

#[tokio::test]
async fn a_registration_already_in_place_is_not_written_again() {
    let s = Setup::start().await;
    s.ensure(&s.ok_url, Mode::Deploy, &Metrics::default())
        .await
        .expect("registered");
    let writes = s.calls(POST_REGISTRATION).await + s.calls(PUT_REGISTRATION).await;

    let metrics = Metrics::default();
    let report = s
        .ensure(&s.ok_url, Mode::Check { restore: false }, &metrics)
        .await
        .expect("still in place");

    assert_eq!(report.action, Action::Unchanged);
    assert_eq!(
        s.calls(POST_REGISTRATION).await + s.calls(PUT_REGISTRATION).await,
        writes,
        "no POST or PUT"
    );
    assert_eq!(metrics.value(Metric::RegistrationHijacked), Some(0.0));
    assert_eq!(
        s.received.load(Ordering::SeqCst),
        2,
        "each run sends a validation event"
    );
}

#[tokio::test]
async fn a_registration_taken_over_is_reported_and_put_back_only_when_configured() {
    let s = Setup::start().await;
    let theirs = "https://staging.example/webhooks/partner-center";
    s.taken_over_by(theirs).await;
    let puts = s.calls(PUT_REGISTRATION).await;

    // The daily check without restore: reported, counted, left as is.
    let metrics = Metrics::default();
    let err = s
        .ensure(&s.ok_url, Mode::Check { restore: false }, &metrics)
        .await
        .expect_err("pointing elsewhere is an error");
    assert!(
        matches!(&err, RegistrarError::PointsElsewhere { current, .. } if current == theirs),
        "{err:?}"
    );
    assert!(err.to_string().contains(theirs), "{err}");
    assert_eq!(metrics.value(Metric::RegistrationHijacked), Some(1.0));
    assert_eq!(metrics.value(Metric::RegistrationRestored), None);
    assert_eq!(
        s.registration().await.map(|r| r.webhook_url).as_deref(),
        Some(theirs)
    );
    assert_eq!(s.calls(PUT_REGISTRATION).await, puts, "nothing written");

    // With restore on: put back, counted, and the validation event arrives here.
    let metrics = Metrics::default();
    let report = s
        .ensure(&s.ok_url, Mode::Check { restore: true }, &metrics)
        .await
        .expect("restored");
    assert_eq!(report.action, Action::Restored);
    assert_eq!(report.found.map(|f| f.webhook_url).as_deref(), Some(theirs));
    assert_eq!(metrics.value(Metric::RegistrationHijacked), Some(1.0));
    assert_eq!(metrics.value(Metric::RegistrationRestored), Some(1.0));
    let reg = s.registration().await.expect("a registration");
    assert_eq!(reg.webhook_url, s.ok_url);
    assert_eq!(reg.webhook_events, events());
    assert_eq!(s.received.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn a_deploy_takes_the_registration_over() {
    let s = Setup::start().await;
    s.taken_over_by("https://old-flow.example/hook").await;
    let metrics = Metrics::default();
    let report = s
        .ensure(&s.ok_url, Mode::Deploy, &metrics)
        .await
        .expect("taken");
    assert_eq!(report.action, Action::Restored);
    assert_eq!(metrics.value(Metric::RegistrationRestored), Some(1.0));
    assert_eq!(
        metrics.value(Metric::RegistrationHijacked),
        None,
        "a deploy taking it is not a hijack"
    );
    assert_eq!(
        s.registration().await.map(|r| r.webhook_url),
        Some(s.ok_url.clone())
    );
}

#[tokio::test]
async fn a_409_on_the_post_is_followed_by_a_put() {
    let s = Setup::start().await;
    s.control(
        reqwest::Method::POST,
        "/_sandbox/faults",
        json!({"method": "POST", "route": "/webhooks/v1/registration", "status": 409, "count": 1}),
    )
    .await;

    let report = s
        .ensure(&s.ok_url, Mode::Deploy, &Metrics::default())
        .await
        .expect("registered with PUT");

    assert_eq!(report.action, Action::Created);
    assert_eq!(s.calls(POST_REGISTRATION).await, 1);
    assert_eq!(s.calls(PUT_REGISTRATION).await, 1);
    assert_eq!(
        s.registration().await.map(|r| r.webhook_url),
        Some(s.ok_url.clone())
    );
    assert_eq!(s.received.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn a_receiver_that_fails_makes_the_validation_an_error_with_its_answer() {
    let s = Setup::start().await;
    let metrics = Metrics::default();

    let err = s
        .ensure(&s.failing_url, Mode::Deploy, &metrics)
        .await
        .expect_err("not delivered");

    let RegistrarError::ValidationFailed {
        response_code,
        response_message,
        attempts,
        ..
    } = &err
    else {
        panic!("{err:?}")
    };
    assert_eq!(response_code.as_deref(), Some("InternalServerError"));
    assert_eq!(
        response_message.as_deref(),
        Some("500 Internal Server Error")
    );
    assert_eq!(*attempts, 2, "every attempt the sandbox made");
    assert!(
        err.to_string().contains("500 Internal Server Error"),
        "{err}"
    );
    assert_eq!(
        metrics.value(Metric::RegistrationValidationFailed),
        Some(1.0)
    );
    assert_eq!(
        s.registration().await.map(|r| r.webhook_url),
        Some(s.failing_url.clone()),
        "the registration itself is in place"
    );
}

#[tokio::test]
async fn a_dropped_validation_event_is_an_error() {
    let s = Setup::start().await;
    s.control(
        reqwest::Method::POST,
        "/_sandbox/faults/webhooks",
        json!({"kind": "drop", "count": 1}),
    )
    .await;
    let metrics = Metrics::default();
    let err = s
        .ensure(&s.ok_url, Mode::Deploy, &metrics)
        .await
        .expect_err("dropped");
    assert!(
        matches!(err, RegistrarError::ValidationFailed { attempts: 0, .. }),
        "{err:?}"
    );
    assert_eq!(s.received.load(Ordering::SeqCst), 0);
    assert_eq!(
        metrics.value(Metric::RegistrationValidationFailed),
        Some(1.0)
    );
}

#[tokio::test]
async fn the_validation_throttle_is_transient_with_retry_after() {
    let s = Setup::start_with(SandboxConfig {
        validation_events_per_minute: 1,
        ..SandboxConfig::default()
    })
    .await;
    s.ensure(&s.ok_url, Mode::Deploy, &Metrics::default())
        .await
        .expect("the first run");

    let err = s
        .client
        .send_validation_event()
        .await
        .expect_err("throttled");
    assert!(
        matches!(
            err,
            PartnerCenterError::Transient { status: Some(429), retry_after: Some(secs), .. } if secs > 0
        ),
        "{err:?}"
    );

    // A run that may not wait that long says so, and counts no failed delivery.
    let metrics = Metrics::default();
    let err = Registrar {
        registry: &s.client,
        metrics: &metrics,
        options: RegistrarOptions {
            validation_timeout: Duration::from_secs(1),
            poll_interval: Duration::from_millis(50),
        },
    }
    .ensure(&s.ok_url, Mode::Deploy)
    .await
    .expect_err("throttled");
    assert!(
        matches!(
            &err,
            RegistrarError::PartnerCenter {
                source: PartnerCenterError::Transient {
                    status: Some(429),
                    ..
                },
                ..
            }
        ),
        "{err:?}"
    );
    assert_eq!(metrics.value(Metric::RegistrationValidationFailed), None);
}
