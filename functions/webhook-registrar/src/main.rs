//! The webhook registrar, run two ways: as the stack's CloudFormation custom resource (Create
//! and Update point the Partner Center webhook registration at this deployment; Delete leaves
//! it, as the Webhooks API cannot remove one) and by a daily EventBridge schedule (reports a
//! registration taken over by another URL, and puts it back when `COSELL_REGISTRATION_RESTORE`
//! is on). Behaviour lives in `cosell_shared::registrar`; this only wires.
//!
//! Settings are read per invocation, not at start: a bad one must still be reported to
//! CloudFormation, which would otherwise wait for an answer that never comes.

mod custom_resource;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use cosell_shared::registrar::{
    EmfMetrics, MetricSink, Mode, Registrar, RegistrarError, RegistrarOptions, Report,
};
use cosell_shared::wiring;
use custom_resource::{Invocation, Outcome, Request, RequestType};
use lambda_runtime::{Error, LambdaEvent, service_fn};
use serde_json::Value;

/// The URL the registration points at (the ingress's public URL and path).
const WEBHOOK_URL: &str = "COSELL_WEBHOOK_URL";
/// Whether the daily check puts back a registration found pointing elsewhere.
const RESTORE: &str = "COSELL_REGISTRATION_RESTORE";
/// Kept from the invocation's time for answering CloudFormation (three PUTs at most).
const ANSWER_MARGIN: Duration = Duration::from_secs(30);
const ANSWER_TIMEOUT: Duration = Duration::from_secs(8);

#[derive(Debug, thiserror::Error)]
enum RunError {
    #[error("{0}")]
    Setting(String),
    #[error(transparent)]
    Registrar(#[from] RegistrarError),
    #[error(
        "the registration did not finish in the {0}s this invocation had left; raise the function's timeout"
    )]
    TimedOut(u64),
}

/// What one invocation may use.
#[derive(Debug, Clone, Default)]
struct Limits {
    /// Time for the registration itself; `None` when the runtime gave no deadline.
    budget: Option<Duration>,
    /// Named in a failure's reason, so the person reading CloudFormation's events finds the logs.
    log_stream: Option<String>,
}

/// The two triggers over one registrar.
struct Handler {
    /// Settings by name: the process environment in Lambda.
    settings: BTreeMap<String, String>,
    /// For the answer to CloudFormation.
    http: reqwest::Client,
    metrics: Arc<dyn MetricSink>,
    options: RegistrarOptions,
}

impl Handler {
    async fn handle(&self, event: Value, limits: &Limits) -> Result<Value, Error> {
        match custom_resource::parse(&event)? {
            Invocation::CustomResource(request) => self.custom_resource(&request, limits).await,
            Invocation::Scheduled => {
                let result = self.scheduled(limits).await;
                respond(result)
            }
        }
    }

    /// Always answers CloudFormation; the invocation fails only when the answer cannot be
    /// delivered (a failed invocation would be retried and answered twice otherwise).
    async fn custom_resource(&self, request: &Request, limits: &Limits) -> Result<Value, Error> {
        let outcome = match (request.request_type, &request.properties) {
            (Some(RequestType::Delete), _) => Outcome::LeftInPlace,
            (_, Err(reason)) => Outcome::Failed(reason.clone()),
            (None, Ok(_)) => Outcome::Failed("the request has no known RequestType".into()),
            (Some(_), Ok(props)) => {
                // A stack may decline to take the registration from another environment.
                let mode = if props.restore {
                    Mode::Deploy
                } else {
                    Mode::Check { restore: false }
                };
                let url = props
                    .webhook_url
                    .clone()
                    .or_else(|| self.setting(WEBHOOK_URL));
                match url {
                    None => Outcome::Failed(format!(
                        "ResourceProperties.WebhookUrl (or {WEBHOOK_URL}) is required"
                    )),
                    Some(url) => match self.run(&url, mode, limits).await {
                        Ok(report) => Outcome::Registered(report),
                        Err(e) => Outcome::Failed(match &limits.log_stream {
                            Some(stream) => format!("{e} (log stream {stream})"),
                            None => e.to_string(),
                        }),
                    },
                }
            }
        };
        match &outcome {
            Outcome::Registered(report) => {
                tracing::info!(summary = %report.summary(), "registered")
            }
            Outcome::LeftInPlace => tracing::info!("{}", custom_resource::LEFT_IN_PLACE),
            Outcome::Failed(reason) => tracing::error!(%reason, "the custom resource failed"),
        }
        let answer = custom_resource::response(request, &outcome);
        custom_resource::send(&self.http, &request.response_url, &answer)
            .await
            .inspect_err(|e| tracing::error!(error = %e, "CloudFormation was not answered"))?;
        Ok(serde_json::to_value(&answer)?)
    }

    async fn scheduled(&self, limits: &Limits) -> Result<Report, RunError> {
        let url = self.setting(WEBHOOK_URL).ok_or_else(|| {
            RunError::Setting(format!(
                "{WEBHOOK_URL} is required (the webhook ingress's public URL)"
            ))
        })?;
        let restore = match self.setting(RESTORE).map(|v| v.to_ascii_lowercase()) {
            None => false,
            Some(v) if matches!(v.as_str(), "true" | "yes" | "1" | "on") => true,
            Some(v) if matches!(v.as_str(), "false" | "no" | "0" | "off") => false,
            Some(v) => {
                return Err(RunError::Setting(format!(
                    "{RESTORE} is invalid: '{v}' is not true or false"
                )));
            }
        };
        self.run(&url, Mode::Check { restore }, limits).await
    }

    async fn run(&self, url: &str, mode: Mode, limits: &Limits) -> Result<Report, RunError> {
        let work = async {
            let sdk = wiring::sdk_config_from(&self.settings).await;
            let config = wiring::load(self.settings.clone(), &sdk)
                .await
                .map_err(|e| RunError::Setting(e.to_string()))?;
            let tokens = wiring::token_store(config.secret_arn.as_deref(), &sdk, None);
            let client = wiring::partner_center_client(&config, tokens)
                .map_err(|e| RunError::Setting(e.to_string()))?;
            let registrar = Registrar {
                registry: &client,
                metrics: self.metrics.as_ref(),
                options: self.options,
            };
            Ok(registrar.ensure(url, mode).await?)
        };
        match limits.budget {
            Some(budget) => tokio::time::timeout(budget, work)
                .await
                .unwrap_or(Err(RunError::TimedOut(budget.as_secs()))),
            None => work.await,
        }
    }

    fn setting(&self, name: &str) -> Option<String> {
        self.settings
            .get(name)
            .map(|v| v.trim().to_string())
            .filter(|v| !v.is_empty())
    }
}

/// The scheduled run's answer: its report, or an error (counted by Lambda's Errors metric).
fn respond(result: Result<Report, RunError>) -> Result<Value, Error> {
    match result {
        Ok(report) => {
            tracing::info!(summary = %report.summary(), "the registration is in place");
            Ok(serde_json::to_value(report)?)
        }
        Err(e) => {
            tracing::error!(error = %e, "the registration check failed");
            Err(e.to_string().into())
        }
    }
}

/// The time left for the registration: until the invocation's deadline (milliseconds since the
/// epoch; 0 when unknown) less what answering CloudFormation needs.
fn budget(deadline_ms: u64, now: SystemTime) -> Option<Duration> {
    if deadline_ms == 0 {
        return None;
    }
    let now_ms = u64::try_from(now.duration_since(UNIX_EPOCH).ok()?.as_millis()).ok()?;
    Some(Duration::from_millis(deadline_ms.saturating_sub(now_ms)).saturating_sub(ANSWER_MARGIN))
}

#[tokio::main]
async fn main() -> Result<(), Error> {
    cosell_shared::telemetry::init_for_lambda();
    cosell_shared::metrics::set_service("webhook-registrar");
    let handler = Arc::new(Handler {
        settings: std::env::vars().collect(),
        http: cosell_shared::http::client_builder()
            .timeout(ANSWER_TIMEOUT)
            .build()?,
        metrics: Arc::new(EmfMetrics),
        options: RegistrarOptions::default(),
    });
    lambda_runtime::run(service_fn(move |event: LambdaEvent<Value>| {
        let handler = handler.clone();
        async move {
            let limits = Limits {
                budget: budget(event.context.deadline, SystemTime::now()),
                log_stream: Some(event.context.env_config.log_stream.clone())
                    .filter(|s| !s.is_empty()),
            };
            handler.handle(event.payload, &limits).await
        }
    }))
    .await
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use axum::extract::State;
    use axum::http::{HeaderMap, StatusCode};
    use cosell_sandbox::config::{ADMIN_USER, CLIENT_ID, CLIENT_SECRET};
    use cosell_sandbox::{Sandbox, SandboxConfig};
    use cosell_shared::partner_center::http::PartnerCenterClient;
    use cosell_shared::registrar::{Action, NoMetrics};
    use serde_json::json;
    use tokio::net::TcpListener;

    use super::*;

    /// One answer: its Content-Type header, and its body.
    type Answer = (Option<String>, Value);

    /// What the local stand-in for S3's pre-signed URL received.
    #[derive(Clone, Default)]
    struct Received {
        answers: Arc<Mutex<Vec<Answer>>>,
        /// Status codes to answer PUTs with, first to last; 200 once spent.
        refusals: Arc<Mutex<Vec<u16>>>,
    }

    impl Received {
        fn answers(&self) -> Vec<Answer> {
            self.answers.lock().expect("lock").clone()
        }
    }

    /// A local HTTP receiver: `PUT /answer` records CloudFormation answers, `POST /hook`
    /// accepts webhook deliveries.
    async fn receiver(received: Received) -> String {
        async fn answer(State(r): State<Received>, headers: HeaderMap, body: String) -> StatusCode {
            let refusal = {
                let mut refusals = r.refusals.lock().expect("lock");
                (!refusals.is_empty()).then(|| refusals.remove(0))
            };
            if let Some(status) = refusal {
                return StatusCode::from_u16(status).expect("status");
            }
            let content_type = headers
                .get("content-type")
                .and_then(|v| v.to_str().ok())
                .map(str::to_string);
            let body = serde_json::from_str(&body).expect("the answer is JSON");
            r.answers.lock().expect("lock").push((content_type, body));
            StatusCode::OK
        }
        let app = axum::Router::new()
            .route("/answer", axum::routing::put(answer))
            .route("/hook", axum::routing::post(|| async { StatusCode::OK }))
            .with_state(received);
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(async move { axum::serve(listener, app).await });
        format!("http://{addr}")
    }

    async fn sandbox() -> Sandbox {
        Sandbox::start(SandboxConfig {
            webhook_attempts: 2,
            webhook_retry_base: Duration::from_millis(50),
            ..SandboxConfig::default()
        })
        .await
        .expect("sandbox")
    }

    /// The settings a deployment has, pointed at the sandbox's default identities, with the
    /// Referral admin signed in as `cosell auth login` does.
    async fn sandbox_settings(base: &str) -> BTreeMap<String, String> {
        let auth = cosell_shared::partner_center::token::PartnerCenterAuth {
            authority_url: base.to_string(),
            ..cosell_shared::partner_center::token::PartnerCenterAuth::new(
                CLIENT_ID,
                CLIENT_SECRET,
                cosell_shared::partner_center::token::UserCredential::RefreshToken("".into()),
            )
        };
        let signed_in =
            cosell_shared::partner_center::signin::SignIn::new(auth, reqwest::Client::new())
                .sign_in_without_form(Some(ADMIN_USER))
                .await
                .expect("the sandbox's admin signs in");
        let mut s: BTreeMap<String, String> = [
            ("COSELL_CRM", "dynamics"),
            ("COSELL_PC_CLIENT_ID", CLIENT_ID),
            ("COSELL_PC_CLIENT_SECRET", CLIENT_SECRET),
            ("COSELL_PC_REFRESH_TOKEN", signed_in.refresh_token.expose()),
            ("COSELL_DATAVERSE_TENANT", "sandbox"),
            ("COSELL_DATAVERSE_CLIENT_ID", CLIENT_ID),
            ("COSELL_DATAVERSE_CLIENT_SECRET", CLIENT_SECRET),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        for name in [
            "COSELL_PC_AUTHORITY_URL",
            "COSELL_PC_API_URL",
            "COSELL_PC_WEBHOOKS_URL",
            "COSELL_DATAVERSE_URL",
            "COSELL_DATAVERSE_AUTHORITY_URL",
        ] {
            s.insert(name.to_string(), base.to_string());
        }
        s
    }

    fn handler(settings: BTreeMap<String, String>) -> Handler {
        Handler {
            settings,
            http: reqwest::Client::new(),
            metrics: Arc::new(NoMetrics),
            options: RegistrarOptions {
                validation_timeout: Duration::from_secs(60),
                poll_interval: Duration::from_millis(50),
            },
        }
    }

    fn event(request_type: &str, response_url: &str, props: Value) -> Value {
        let mut e = json!({
            "ServiceToken": "arn:aws:lambda:eu-west-1:123456789012:function:registrar",
            "RequestType": request_type,
            "RequestId": "req-7",
            "ResponseURL": response_url,
            "StackId": "arn:aws:cloudformation:eu-west-1:123456789012:stack/cosell/guid",
            "ResourceType": "Custom::WebhookRegistration",
            "LogicalResourceId": "WebhookRegistration",
            "ResourceProperties": props,
        });
        if request_type != "Create" {
            e["PhysicalResourceId"] = json!(custom_resource::PHYSICAL_RESOURCE_ID);
        }
        if request_type == "Update" {
            e["OldResourceProperties"] = e["ResourceProperties"].clone();
        }
        e
    }

    async fn registration(sandbox: &Sandbox) -> Value {
        // The control API has no registration view; the Webhooks API needs a token.
        let settings = sandbox_settings(sandbox.base_url()).await;
        let config = wiring::load(settings.clone(), &wiring::sdk_config_from(&settings).await)
            .await
            .expect("config");
        let client = PartnerCenterClient::new(config.partner_center, config.partner_center_auth)
            .expect("client");
        let r = client
            .webhook_registration()
            .await
            .expect("GET")
            .expect("a registration");
        json!({"url": r.webhook_url, "events": r.webhook_events})
    }

    #[tokio::test]
    async fn create_registers_validates_and_answers_success_to_the_response_url() {
        let sandbox = sandbox().await;
        let received = Received::default();
        let local = receiver(received.clone()).await;
        let hook = format!("{local}/hook");
        let h = handler(sandbox_settings(sandbox.base_url()).await);

        let out = h
            .handle(
                event(
                    "Create",
                    &format!("{local}/answer"),
                    json!({"WebhookUrl": hook, "Restore": "true"}),
                ),
                &Limits::default(),
            )
            .await
            .expect("answered");

        let answers = received.answers();
        assert_eq!(answers.len(), 1, "one answer: {answers:?}");
        let (content_type, body) = &answers[0];
        assert_eq!(
            content_type, &None,
            "no Content-Type: the pre-signed URL was signed without one"
        );
        assert_eq!(body["Status"], "SUCCESS", "{body}");
        assert_eq!(
            body["PhysicalResourceId"],
            custom_resource::PHYSICAL_RESOURCE_ID
        );
        assert_eq!(body["RequestId"], "req-7");
        assert_eq!(body["Data"]["WebhookUrl"], hook.as_str());
        assert_eq!(body["Data"]["Action"], "created");
        assert_eq!(&out, body);
        let reg = registration(&sandbox).await;
        assert_eq!(reg["url"], hook.as_str());
        assert_eq!(
            reg["events"],
            json!(cosell_shared::registrar::EVENTS),
            "{reg}"
        );
    }

    #[tokio::test]
    async fn a_configuration_error_is_still_answered_failed() {
        let received = Received::default();
        let local = receiver(received.clone()).await;
        let h = handler(BTreeMap::new());
        let limits = Limits {
            budget: None,
            log_stream: Some("2025/01/01/[$LATEST]abc".into()),
        };
        h.handle(
            event(
                "Create",
                &format!("{local}/answer"),
                json!({"WebhookUrl": format!("{local}/hook")}),
            ),
            &limits,
        )
        .await
        .expect("answered");
        let answers = received.answers();
        assert_eq!(answers.len(), 1);
        let body = &answers[0].1;
        assert_eq!(body["Status"], "FAILED");
        let reason = body["Reason"].as_str().expect("a reason");
        assert!(reason.contains("COSELL_CRM"), "{reason}");
        assert!(reason.contains("[$LATEST]abc"), "{reason}");
        assert_eq!(
            body["PhysicalResourceId"],
            custom_resource::PHYSICAL_RESOURCE_ID
        );

        // No WebhookUrl anywhere, and an unreadable request: FAILED too.
        h.handle(
            event("Update", &format!("{local}/answer"), json!({})),
            &limits,
        )
        .await
        .expect("answered");
        h.handle(
            event("Rollback", &format!("{local}/answer"), json!({})),
            &limits,
        )
        .await
        .expect("answered");
        let answers = received.answers();
        assert_eq!(answers.len(), 3);
        assert!(
            answers[1].1["Reason"]
                .as_str()
                .is_some_and(|r| r.contains("WebhookUrl")),
            "{:?}",
            answers[1]
        );
        assert_eq!(answers[2].1["Status"], "FAILED");
    }

    #[tokio::test]
    async fn delete_answers_success_and_leaves_the_registration() {
        let sandbox = sandbox().await;
        let received = Received::default();
        let local = receiver(received.clone()).await;
        let hook = format!("{local}/hook");
        let h = handler(sandbox_settings(sandbox.base_url()).await);
        h.handle(
            event(
                "Create",
                &format!("{local}/answer"),
                json!({"WebhookUrl": hook}),
            ),
            &Limits::default(),
        )
        .await
        .expect("created");

        h.handle(
            event(
                "Delete",
                &format!("{local}/answer"),
                json!({"WebhookUrl": hook}),
            ),
            &Limits::default(),
        )
        .await
        .expect("answered");
        let answers = received.answers();
        let body = &answers[1].1;
        assert_eq!(body["Status"], "SUCCESS");
        assert!(
            body["Reason"]
                .as_str()
                .is_some_and(|r| r.contains("left in place")),
            "{body}"
        );
        assert_eq!(registration(&sandbox).await["url"], hook.as_str());
    }

    #[tokio::test]
    async fn running_out_of_time_answers_failed_before_the_deadline() {
        let sandbox = sandbox().await;
        let received = Received::default();
        let local = receiver(received.clone()).await;
        let h = handler(sandbox_settings(sandbox.base_url()).await);
        let limits = Limits {
            budget: Some(Duration::ZERO),
            log_stream: None,
        };
        h.handle(
            event(
                "Create",
                &format!("{local}/answer"),
                json!({"WebhookUrl": format!("{local}/hook")}),
            ),
            &limits,
        )
        .await
        .expect("answered");
        let answers = received.answers();
        assert_eq!(answers[0].1["Status"], "FAILED");
        assert!(
            answers[0].1["Reason"]
                .as_str()
                .is_some_and(|r| r.contains("timeout")),
            "{:?}",
            answers[0]
        );
    }

    #[tokio::test]
    async fn a_busy_response_url_is_tried_again_and_a_refusing_one_fails_the_invocation() {
        let received = Received::default();
        received.refusals.lock().expect("lock").push(503);
        let local = receiver(received.clone()).await;
        let h = handler(BTreeMap::new());
        h.handle(
            event("Delete", &format!("{local}/answer"), json!({})),
            &Limits::default(),
        )
        .await
        .expect("answered on the second try");
        assert_eq!(received.answers().len(), 1);

        received.refusals.lock().expect("lock").push(403);
        let err = h
            .handle(
                event("Delete", &format!("{local}/answer"), json!({})),
                &Limits::default(),
            )
            .await
            .expect_err("not answered");
        assert!(err.to_string().contains("403"), "{err}");
    }

    #[tokio::test]
    async fn the_daily_check_reads_its_url_and_restore_setting() {
        let sandbox = sandbox().await;
        let local = receiver(Received::default()).await;
        let hook = format!("{local}/hook");
        let scheduled = json!({
            "version": "0", "id": "e-1", "detail-type": "Scheduled Event",
            "source": "aws.events", "time": "2025-01-01T00:00:00Z",
            "resources": [], "detail": {}
        });

        let missing = handler(sandbox_settings(sandbox.base_url()).await);
        let err = missing
            .handle(scheduled.clone(), &Limits::default())
            .await
            .expect_err("no URL");
        assert!(err.to_string().contains(WEBHOOK_URL), "{err}");

        let mut settings = sandbox_settings(sandbox.base_url()).await;
        settings.insert(WEBHOOK_URL.into(), hook.clone());
        settings.insert(RESTORE.into(), "maybe".into());
        let err = handler(settings.clone())
            .handle(scheduled.clone(), &Limits::default())
            .await
            .expect_err("bad setting");
        assert!(err.to_string().contains(RESTORE), "{err}");

        settings.insert(RESTORE.into(), "false".into());
        let out = handler(settings)
            .handle(scheduled, &Limits::default())
            .await
            .expect("registered");
        assert_eq!(out["action"], json!(Action::Created));
        assert_eq!(out["webhookUrl"], hook.as_str());
    }

    #[test]
    fn the_budget_leaves_time_to_answer() {
        let now = UNIX_EPOCH + Duration::from_secs(1_000);
        assert_eq!(budget(0, now), None, "no deadline given");
        assert_eq!(
            budget(1_000_000 + 180_000, now),
            Some(Duration::from_secs(150))
        );
        assert_eq!(budget(1_000_000 + 10_000, now), Some(Duration::ZERO));
    }

    #[test]
    fn a_failed_check_is_an_error_of_the_invocation() {
        let err = respond(Err(RunError::Setting(
            "COSELL_WEBHOOK_URL is required".into(),
        )))
        .expect_err("failed");
        assert!(err.to_string().contains("COSELL_WEBHOOK_URL"));
    }
}
