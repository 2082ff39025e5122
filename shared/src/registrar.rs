//! The webhook registrar's use case: make Partner Center's one webhook registration point at
//! this deployment's ingress with the events the connector needs, then prove it end to end by
//! sending a validation (`test-created`) event and reading how its delivery went.
//!
//! Partner Center keeps one registration per partner tenant, so another environment (a test
//! stack, an old Power Automate flow) can silently take the events away. On deploy the
//! registration is simply made to point here; the daily check reports a registration found
//! pointing elsewhere (an alarmable metric and an error) and puts it back only when told to,
//! because two environments that both restore would take it from each other every day.

use std::time::Duration;

use async_trait::async_trait;
use serde::Serialize;

use crate::metrics::{self, Metric};
use crate::partner_center::http::{
    PartnerCenterClient, RegistrationChange, ValidationEventStatus, WebhookRegistration,
};
use crate::partner_center::{PartnerCenterError, PcResult};

/// The service name the registrar's metrics carry.
pub const SERVICE: &str = "webhook-registrar";

/// What the connector registers: the four referral events, and `test-created`, without which
/// Partner Center refuses to send a validation event.
pub const EVENTS: [&str; 5] = [
    "referral-created",
    "referral-updated",
    "related-referral-created",
    "related-referral-updated",
    "test-created",
];

/// The Webhooks API calls the registrar makes; [`PartnerCenterClient`] over HTTP, or a fake.
#[async_trait]
pub trait WebhookRegistry: Send + Sync {
    async fn registration(&self) -> PcResult<Option<WebhookRegistration>>;
    /// GET, then POST or PUT as needed (see [`PartnerCenterClient::ensure_webhook`]).
    async fn ensure(&self, wanted: &WebhookRegistration) -> PcResult<RegistrationChange>;
    /// Sends a `test-created` event; returns its correlation id.
    async fn send_validation_event(&self) -> PcResult<String>;
    async fn validation_event_status(
        &self,
        correlation_id: &str,
    ) -> PcResult<Option<ValidationEventStatus>>;
}

#[async_trait]
impl WebhookRegistry for PartnerCenterClient {
    async fn registration(&self) -> PcResult<Option<WebhookRegistration>> {
        self.webhook_registration().await
    }
    async fn ensure(&self, wanted: &WebhookRegistration) -> PcResult<RegistrationChange> {
        self.ensure_webhook(wanted).await
    }
    async fn send_validation_event(&self) -> PcResult<String> {
        PartnerCenterClient::send_validation_event(self).await
    }
    async fn validation_event_status(
        &self,
        correlation_id: &str,
    ) -> PcResult<Option<ValidationEventStatus>> {
        PartnerCenterClient::validation_event_status(self, correlation_id).await
    }
}

/// Where the registrar's counts go.
pub trait MetricSink: Send + Sync {
    fn count(&self, metric: Metric, value: f64);
}

/// CloudWatch Embedded Metric Format lines on stdout, under [`SERVICE`]: the Lambda function's.
#[derive(Debug, Clone, Copy, Default)]
pub struct EmfMetrics;

impl MetricSink for EmfMetrics {
    fn count(&self, metric: Metric, value: f64) {
        metrics::count(metric, value, SERVICE);
    }
}

/// Counts nothing: a person at a shell reads the report instead.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoMetrics;

impl MetricSink for NoMetrics {
    fn count(&self, _metric: Metric, _value: f64) {}
}

/// What to do with a registration found pointing at another URL.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// A deploy (or an operator's `cosell register --restore`): this deployment is meant to
    /// receive the events, so the registration is made to point here whatever it pointed at.
    /// Taking it over counts [`Metric::RegistrationRestored`].
    Deploy,
    /// The daily check: a registration pointing elsewhere counts
    /// [`Metric::RegistrationHijacked`] (0 on a clean run, so an alarm always has data), and
    /// is put back (counting [`Metric::RegistrationRestored`]) only when `restore`; otherwise
    /// it is left as is and the run fails with [`RegistrarError::PointsElsewhere`].
    Check { restore: bool },
}

/// How long to follow the validation event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RegistrarOptions {
    /// The longest wait for the validation event to be delivered, and for a throttled send
    /// (two a minute) to be allowed again. Partner Center delivers within seconds.
    pub validation_timeout: Duration,
    /// Between two reads of the delivery status.
    pub poll_interval: Duration,
}

impl Default for RegistrarOptions {
    fn default() -> Self {
        RegistrarOptions {
            validation_timeout: Duration::from_secs(90),
            poll_interval: Duration::from_secs(2),
        }
    }
}

/// What the registration was before this run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Found {
    pub webhook_url: String,
    pub webhook_events: Vec<String>,
}

/// What the run did to the registration.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum Action {
    /// There was none; it was registered.
    Created,
    /// It already pointed here with the right events.
    Unchanged,
    /// It pointed here with other events (or signature header); they were corrected.
    Updated,
    /// It pointed elsewhere and was made to point here.
    Restored,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Created => "created",
            Action::Unchanged => "unchanged",
            Action::Updated => "updated",
            Action::Restored => "restored",
        }
    }
}

impl std::fmt::Display for Action {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A validation event that reached the webhook.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Validation {
    pub correlation_id: String,
    /// Delivery attempts Partner Center reported, the successful one included.
    pub attempts: usize,
    /// The successful attempt's `responseCode` (`OK`…).
    pub response_code: String,
}

/// The registration points at the URL: what it was, and what was done.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Registered {
    /// `None` when there was no registration.
    pub found: Option<Found>,
    pub action: Action,
}

/// A successful run: the registration points at `webhook_url` and an event got through.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Report {
    pub webhook_url: String,
    /// `None` when there was no registration.
    pub found: Option<Found>,
    pub action: Action,
    pub validation: Validation,
}

impl Report {
    /// One line for a log, a CloudFormation `Reason` or a terminal.
    pub fn summary(&self) -> String {
        let before = match (&self.found, self.action) {
            (Some(found), Action::Restored) => format!(" (it pointed at {})", found.webhook_url),
            _ => String::new(),
        };
        format!(
            "webhook registration {}: {}{before}; validation event {} delivered ({}, {} attempt{})",
            self.action,
            self.webhook_url,
            self.validation.correlation_id,
            self.validation.response_code,
            self.validation.attempts,
            if self.validation.attempts == 1 {
                ""
            } else {
                "s"
            },
        )
    }
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum RegistrarError {
    #[error("the webhook URL '{url}' {reason}")]
    InvalidUrl { url: String, reason: String },
    #[error("{during}: {}", describe(.source))]
    PartnerCenter {
        during: &'static str,
        #[source]
        source: PartnerCenterError,
    },
    #[error(
        "the Partner Center webhook registration points at {current}, not at {wanted}: referral \
         events are delivered there. It was left as is because restoring is off"
    )]
    PointsElsewhere {
        current: String,
        wanted: String,
        events: Vec<String>,
    },
    #[error(
        "validation event {correlation_id} was not delivered to {url}: {}",
        delivery_failure(.response_code.as_deref(), .response_message.as_deref(), *.attempts)
    )]
    ValidationFailed {
        correlation_id: String,
        url: String,
        /// The last attempt's `responseCode` and `responseMessage`, as Partner Center gave them.
        response_code: Option<String>,
        response_message: Option<String>,
        attempts: usize,
    },
    #[error(
        "validation event {correlation_id}: Partner Center reported no delivery attempt to {url} within {}s",
        .waited.as_secs()
    )]
    ValidationNotConfirmed {
        correlation_id: String,
        url: String,
        waited: Duration,
    },
}

fn delivery_failure(code: Option<&str>, message: Option<&str>, attempts: usize) -> String {
    if attempts == 0 {
        return "Partner Center ended the delivery without attempting it".to_string();
    }
    let message = message
        .filter(|m| !m.is_empty())
        .map(|m| format!(" ({m})"))
        .unwrap_or_default();
    format!(
        "{}{message} after {attempts} attempt{}",
        code.unwrap_or("no answer"),
        if attempts == 1 { "" } else { "s" }
    )
}

/// The Partner Center error in the registration's words (its own messages speak of referrals).
fn describe(e: &PartnerCenterError) -> String {
    match e {
        PartnerCenterError::Rejected { message, .. } => {
            format!("Partner Center refused the request: {message}")
        }
        PartnerCenterError::PreconditionFailed => {
            "Partner Center answered with a conflict (409)".to_string()
        }
        PartnerCenterError::Transient {
            status,
            retry_after,
            message,
        } => {
            let status = status.map(|s| format!(" ({s})")).unwrap_or_default();
            let wait = retry_after
                .map(|s| format!("; it asks to wait {s}s"))
                .unwrap_or_default();
            format!("Partner Center is unavailable for now{status}: {message}{wait}")
        }
        other => other.to_string(),
    }
}

/// The registrar over a [`WebhookRegistry`].
pub struct Registrar<'a> {
    pub registry: &'a dyn WebhookRegistry,
    pub metrics: &'a dyn MetricSink,
    pub options: RegistrarOptions,
}

impl Registrar<'_> {
    /// Makes the registration point at `url` with [`EVENTS`] (see [`Mode`] for a registration
    /// found pointing elsewhere), then sends a validation event and waits, within
    /// [`RegistrarOptions::validation_timeout`], for Partner Center to report its delivery:
    /// [`Self::register`] then [`Self::validate`].
    pub async fn ensure(&self, url: &str, mode: Mode) -> Result<Report, RegistrarError> {
        let registered = self.register(url, mode).await?;
        let validation = self.validate(url).await?;
        Ok(Report {
            webhook_url: url.to_string(),
            found: registered.found,
            action: registered.action,
            validation,
        })
    }

    /// The registration half of [`Self::ensure`].
    pub async fn register(&self, url: &str, mode: Mode) -> Result<Registered, RegistrarError> {
        check_url(url)?;
        let wanted = WebhookRegistration {
            webhook_url: url.to_string(),
            webhook_events: EVENTS.iter().map(|e| e.to_string()).collect(),
            signature_to_ms_header: true,
        };
        let found = self
            .registry
            .registration()
            .await
            .map_err(pc("reading the webhook registration"))?;
        let elsewhere = found.as_ref().filter(|f| f.webhook_url != url);
        if let Mode::Check { restore } = mode {
            self.metrics.count(
                Metric::RegistrationHijacked,
                if elsewhere.is_some() { 1.0 } else { 0.0 },
            );
            if let Some(other) = elsewhere {
                tracing::warn!(
                    registered = %other.webhook_url,
                    wanted = url,
                    restore,
                    "the Partner Center webhook registration points at another URL"
                );
                if !restore {
                    return Err(RegistrarError::PointsElsewhere {
                        current: other.webhook_url.clone(),
                        wanted: url.to_string(),
                        events: other.webhook_events.clone(),
                    });
                }
            }
        }
        // The registration is read again inside `ensure`: what it replaces is what it reports.
        let change = self
            .registry
            .ensure(&wanted)
            .await
            .map_err(pc("registering the webhook"))?;
        let action = match &change {
            RegistrationChange::Created => Action::Created,
            RegistrationChange::Unchanged => Action::Unchanged,
            RegistrationChange::Replaced { previous } if previous.webhook_url == url => {
                Action::Updated
            }
            RegistrationChange::Replaced { previous } => {
                tracing::warn!(
                    previous = %previous.webhook_url,
                    now = url,
                    "the webhook registration pointed elsewhere; it now points here"
                );
                self.metrics.count(Metric::RegistrationRestored, 1.0);
                Action::Restored
            }
        };
        let found = match (&change, found) {
            // Someone registered between the two reads: report what was replaced.
            (RegistrationChange::Replaced { previous }, _) => Some(Found {
                webhook_url: previous.webhook_url.clone(),
                webhook_events: previous.webhook_events.clone(),
            }),
            (_, found) => found.map(|f| Found {
                webhook_url: f.webhook_url,
                webhook_events: f.webhook_events,
            }),
        };
        tracing::info!(
            url,
            action = action.as_str(),
            "webhook registration ensured"
        );
        Ok(Registered { found, action })
    }

    /// The validation half of [`Self::ensure`]: sends a validation event to the registered
    /// `url` and follows its delivery, counting [`Metric::RegistrationValidationFailed`] (1 or
    /// 0) once the delivery's fate is known.
    pub async fn validate(&self, url: &str) -> Result<Validation, RegistrarError> {
        let validation = self.follow_validation(url).await;
        match &validation {
            Ok(_) => self
                .metrics
                .count(Metric::RegistrationValidationFailed, 0.0),
            Err(
                RegistrarError::ValidationFailed { .. }
                | RegistrarError::ValidationNotConfirmed { .. },
            ) => self
                .metrics
                .count(Metric::RegistrationValidationFailed, 1.0),
            // Partner Center did not take the request: nothing is known of the delivery.
            Err(_) => {}
        }
        validation
    }

    /// Sends a validation event and follows its delivery until it succeeded, Partner Center
    /// gave up, or the wait is over.
    async fn follow_validation(&self, url: &str) -> Result<Validation, RegistrarError> {
        let timeout = self.options.validation_timeout;
        let correlation_id = match self.registry.send_validation_event().await {
            Ok(id) => id,
            // Two a minute: a recent run (a deploy just before, another operator) can use them
            // up. Waiting once is cheaper than failing a deploy.
            Err(PartnerCenterError::Transient {
                retry_after: Some(secs),
                ..
            }) if Duration::from_secs(secs) <= timeout => {
                tracing::info!(wait_secs = secs, "validation events are throttled; waiting");
                tokio::time::sleep(Duration::from_secs(secs)).await;
                self.registry
                    .send_validation_event()
                    .await
                    .map_err(pc("sending a validation event"))?
            }
            Err(e) => return Err(pc("sending a validation event")(e)),
        };
        tracing::info!(%correlation_id, "validation event sent");
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let status = self
                .registry
                .validation_event_status(&correlation_id)
                .await
                .map_err(pc("reading the validation event's delivery"))?;
            let over = tokio::time::Instant::now() >= deadline;
            if let Some(status) = status {
                if let Some(ok) = status.results.iter().find(|a| a.succeeded()) {
                    return Ok(Validation {
                        correlation_id,
                        attempts: status.results.len(),
                        response_code: ok.response_code.clone(),
                    });
                }
                // Still being retried: a first attempt can fail on a cold start and the next
                // succeed, so only a finished delivery, or the end of the wait, is a failure.
                if let Some(last) = status
                    .last_attempt()
                    .filter(|_| status.is_completed() || over)
                {
                    return Err(RegistrarError::ValidationFailed {
                        correlation_id,
                        url: url.to_string(),
                        response_code: Some(last.response_code.clone()),
                        response_message: Some(last.response_message.clone()),
                        attempts: status.results.len(),
                    });
                }
                if status.is_completed() {
                    return Err(RegistrarError::ValidationFailed {
                        correlation_id,
                        url: url.to_string(),
                        response_code: None,
                        response_message: None,
                        attempts: 0,
                    });
                }
            }
            if over {
                return Err(RegistrarError::ValidationNotConfirmed {
                    correlation_id,
                    url: url.to_string(),
                    waited: timeout,
                });
            }
            tokio::time::sleep(self.options.poll_interval).await;
        }
    }
}

fn pc(during: &'static str) -> impl FnOnce(PartnerCenterError) -> RegistrarError {
    move |source| RegistrarError::PartnerCenter { during, source }
}

fn check_url(url: &str) -> Result<(), RegistrarError> {
    let invalid = |reason: &str| RegistrarError::InvalidUrl {
        url: url.to_string(),
        reason: reason.to_string(),
    };
    let parsed = url::Url::parse(url).map_err(|e| invalid(&format!("is not a URL ({e})")))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(invalid("must be an http(s) URL"));
    }
    if parsed.host_str().is_none_or(str::is_empty) {
        return Err(invalid("has no host"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;
    use crate::partner_center::http::DeliveryAttempt;

    /// A registry in memory; the validation status answers come from a script.
    #[derive(Default)]
    struct Fake {
        registration: Mutex<Option<WebhookRegistration>>,
        writes: Mutex<usize>,
        sends: Mutex<Vec<PcResult<String>>>,
        statuses: Mutex<Vec<Option<ValidationEventStatus>>>,
    }

    #[async_trait]
    impl WebhookRegistry for Fake {
        async fn registration(&self) -> PcResult<Option<WebhookRegistration>> {
            Ok(self.registration.lock().expect("lock").clone())
        }
        async fn ensure(&self, wanted: &WebhookRegistration) -> PcResult<RegistrationChange> {
            let mut current = self.registration.lock().expect("lock");
            let change = match current.clone() {
                None => RegistrationChange::Created,
                Some(c) if &c == wanted => return Ok(RegistrationChange::Unchanged),
                Some(previous) => RegistrationChange::Replaced { previous },
            };
            *current = Some(wanted.clone());
            *self.writes.lock().expect("lock") += 1;
            Ok(change)
        }
        async fn send_validation_event(&self) -> PcResult<String> {
            let mut sends = self.sends.lock().expect("lock");
            if sends.is_empty() {
                Ok("corr-1".into())
            } else {
                sends.remove(0)
            }
        }
        async fn validation_event_status(
            &self,
            _correlation_id: &str,
        ) -> PcResult<Option<ValidationEventStatus>> {
            let mut statuses = self.statuses.lock().expect("lock");
            Ok(if statuses.len() > 1 {
                statuses.remove(0)
            } else {
                statuses.first().cloned().flatten()
            })
        }
    }

    #[derive(Default)]
    struct Recorded(Mutex<Vec<(Metric, f64)>>);

    impl MetricSink for Recorded {
        fn count(&self, metric: Metric, value: f64) {
            self.0.lock().expect("lock").push((metric, value));
        }
    }

    impl Recorded {
        fn all(&self) -> Vec<(Metric, f64)> {
            self.0.lock().expect("lock").clone()
        }
    }

    const OURS: &str = "https://ingress.example/webhooks/partner-center";

    fn attempt(code: &str, message: &str) -> DeliveryAttempt {
        DeliveryAttempt {
            response_code: code.into(),
            response_message: message.into(),
            system_error: false,
            date_time_utc: None,
        }
    }

    fn status(completed: bool, attempts: Vec<DeliveryAttempt>) -> Option<ValidationEventStatus> {
        Some(ValidationEventStatus {
            correlation_id: "corr-1".into(),
            status: if completed { "completed" } else { "inProgress" }.into(),
            callback_url: Some(OURS.into()),
            results: attempts,
        })
    }

    fn delivered() -> Vec<Option<ValidationEventStatus>> {
        vec![status(true, vec![attempt("OK", "")])]
    }

    fn registered(url: &str, events: &[&str]) -> Option<WebhookRegistration> {
        Some(WebhookRegistration {
            webhook_url: url.into(),
            webhook_events: events.iter().map(|e| e.to_string()).collect(),
            signature_to_ms_header: true,
        })
    }

    /// A wait no test reaches unless it means to.
    fn fast() -> RegistrarOptions {
        RegistrarOptions {
            validation_timeout: Duration::from_secs(30),
            poll_interval: Duration::from_millis(5),
        }
    }

    /// A wait the test means to reach.
    fn short() -> RegistrarOptions {
        RegistrarOptions {
            validation_timeout: Duration::from_millis(100),
            ..fast()
        }
    }

    async fn run(fake: &Fake, metrics: &Recorded, mode: Mode) -> Result<Report, RegistrarError> {
        run_with(fake, metrics, mode, fast()).await
    }

    async fn run_with(
        fake: &Fake,
        metrics: &Recorded,
        mode: Mode,
        options: RegistrarOptions,
    ) -> Result<Report, RegistrarError> {
        Registrar {
            registry: fake,
            metrics,
            options,
        }
        .ensure(OURS, mode)
        .await
    }

    #[tokio::test]
    async fn a_fresh_tenant_is_registered_with_the_referral_events_and_test_created() {
        let fake = Fake {
            statuses: Mutex::new(delivered()),
            ..Fake::default()
        };
        let metrics = Recorded::default();
        let report = run(&fake, &metrics, Mode::Deploy)
            .await
            .expect("registered");
        assert_eq!(report.action, Action::Created);
        assert_eq!(report.found, None);
        assert_eq!(report.validation.response_code, "OK");
        let reg = fake
            .registration
            .lock()
            .expect("lock")
            .clone()
            .expect("one");
        assert_eq!(reg.webhook_url, OURS);
        assert_eq!(reg.webhook_events, EVENTS.map(String::from).to_vec());
        assert_eq!(
            metrics.all(),
            vec![(Metric::RegistrationValidationFailed, 0.0)]
        );
    }

    #[tokio::test]
    async fn the_daily_check_leaves_a_taken_over_registration_unless_told_to_restore() {
        let theirs = registered("https://other-env.example/hook", &["referral-created"]);
        let fake = Fake {
            registration: Mutex::new(theirs.clone()),
            statuses: Mutex::new(delivered()),
            ..Fake::default()
        };
        let metrics = Recorded::default();
        let err = run(&fake, &metrics, Mode::Check { restore: false })
            .await
            .expect_err("reported");
        assert!(
            matches!(&err, RegistrarError::PointsElsewhere { current, .. } if current == "https://other-env.example/hook"),
            "{err:?}"
        );
        assert!(err.to_string().contains("https://other-env.example/hook"));
        assert_eq!(*fake.registration.lock().expect("lock"), theirs);
        assert_eq!(*fake.writes.lock().expect("lock"), 0);
        assert_eq!(metrics.all(), vec![(Metric::RegistrationHijacked, 1.0)]);

        let metrics = Recorded::default();
        let report = run(&fake, &metrics, Mode::Check { restore: true })
            .await
            .expect("restored");
        assert_eq!(report.action, Action::Restored);
        assert_eq!(
            report.found.map(|f| f.webhook_url).as_deref(),
            Some("https://other-env.example/hook")
        );
        assert_eq!(
            metrics.all(),
            vec![
                (Metric::RegistrationHijacked, 1.0),
                (Metric::RegistrationRestored, 1.0),
                (Metric::RegistrationValidationFailed, 0.0),
            ]
        );
    }

    #[tokio::test]
    async fn a_clean_daily_check_counts_zero_and_writes_nothing() {
        let fake = Fake {
            registration: Mutex::new(registered(OURS, &EVENTS)),
            statuses: Mutex::new(delivered()),
            ..Fake::default()
        };
        let metrics = Recorded::default();
        let report = run(&fake, &metrics, Mode::Check { restore: false })
            .await
            .expect("fine");
        assert_eq!(report.action, Action::Unchanged);
        assert_eq!(*fake.writes.lock().expect("lock"), 0);
        assert_eq!(
            metrics.all(),
            vec![
                (Metric::RegistrationHijacked, 0.0),
                (Metric::RegistrationValidationFailed, 0.0)
            ]
        );
    }

    #[tokio::test]
    async fn our_url_with_missing_events_is_corrected_even_without_restore() {
        let fake = Fake {
            registration: Mutex::new(registered(OURS, &EVENTS[..4])),
            statuses: Mutex::new(delivered()),
            ..Fake::default()
        };
        let metrics = Recorded::default();
        let report = run(&fake, &metrics, Mode::Check { restore: false })
            .await
            .expect("corrected");
        assert_eq!(report.action, Action::Updated);
        assert!(!metrics.all().contains(&(Metric::RegistrationRestored, 1.0)));
    }

    #[tokio::test]
    async fn a_failed_delivery_is_an_error_with_the_last_attempts_answer() {
        let fake = Fake {
            statuses: Mutex::new(vec![
                status(false, vec![]),
                status(
                    false,
                    vec![attempt("ServiceUnavailable", "503 Service Unavailable")],
                ),
                status(
                    true,
                    vec![
                        attempt("ServiceUnavailable", "503 Service Unavailable"),
                        attempt("InternalServerError", "500 Internal Server Error"),
                    ],
                ),
            ]),
            ..Fake::default()
        };
        let metrics = Recorded::default();
        let err = run(&fake, &metrics, Mode::Deploy)
            .await
            .expect_err("failed");
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
        assert_eq!(*attempts, 2);
        assert!(
            err.to_string().contains("500 Internal Server Error"),
            "{err}"
        );
        assert_eq!(
            metrics.all(),
            vec![(Metric::RegistrationValidationFailed, 1.0)]
        );
    }

    #[tokio::test]
    async fn a_delivery_still_failing_at_the_end_of_the_wait_is_a_failure() {
        let fake = Fake {
            statuses: Mutex::new(vec![status(
                false,
                vec![attempt("Error", "The receiver could not be reached.")],
            )]),
            ..Fake::default()
        };
        let err = run_with(&fake, &Recorded::default(), Mode::Deploy, short())
            .await
            .expect_err("failed");
        assert!(
            err.to_string()
                .contains("The receiver could not be reached."),
            "{err}"
        );
        let silent = Fake {
            statuses: Mutex::new(vec![None]),
            ..Fake::default()
        };
        let err = run_with(&silent, &Recorded::default(), Mode::Deploy, short())
            .await
            .expect_err("never reported");
        assert!(
            matches!(err, RegistrarError::ValidationNotConfirmed { .. }),
            "{err:?}"
        );
    }

    #[tokio::test]
    async fn a_throttled_validation_event_is_sent_again_after_the_wait() {
        let fake = Fake {
            sends: Mutex::new(vec![Err(PartnerCenterError::Transient {
                status: Some(429),
                retry_after: Some(0),
                message: "Rate limit is exceeded.".into(),
            })]),
            statuses: Mutex::new(delivered()),
            ..Fake::default()
        };
        run(&fake, &Recorded::default(), Mode::Deploy)
            .await
            .expect("sent on the second try");

        let too_long = Fake {
            sends: Mutex::new(vec![Err(PartnerCenterError::Transient {
                status: Some(429),
                retry_after: Some(600),
                message: "Rate limit is exceeded.".into(),
            })]),
            ..Fake::default()
        };
        let metrics = Recorded::default();
        let err = run(&too_long, &metrics, Mode::Deploy)
            .await
            .expect_err("not waited out");
        assert!(err.to_string().contains("wait 600s"), "{err}");
        assert!(metrics.all().is_empty(), "no delivery to count");
    }

    #[tokio::test]
    async fn a_url_that_is_not_http_is_refused_before_any_call() {
        let fake = Fake::default();
        for url in ["not a url", "ftp://ingress.example/hook"] {
            let err = Registrar {
                registry: &fake,
                metrics: &NoMetrics,
                options: fast(),
            }
            .ensure(url, Mode::Deploy)
            .await
            .expect_err("refused");
            assert!(matches!(err, RegistrarError::InvalidUrl { .. }), "{err:?}");
        }
        assert_eq!(*fake.writes.lock().expect("lock"), 0);
    }
}
