//! Metrics as CloudWatch Embedded Metric Format (EMF): one JSON line on stdout per data point,
//! which CloudWatch Logs turns into a metric in the `CoSellConnector` namespace, with no API call
//! and no extra permission. Outside Lambda (`cosell local`, tests) the line goes to the log
//! instead, since stdout is for people there. Alarms in `template.yaml` watch these metrics.

use std::io::Write;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

use chrono::Utc;
use serde_json::json;

/// The CloudWatch namespace of every metric the connector emits.
pub const NAMESPACE: &str = "CoSellConnector";

/// A metric the connector counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Metric {
    /// The Partner Center webhook registration pointed at another URL (another environment
    /// took it over): referrals were, or would have been, delivered elsewhere.
    RegistrationHijacked,
    /// The webhook registration was changed to point here.
    RegistrationRestored,
    /// A validation event sent to the webhook was not delivered.
    RegistrationValidationFailed,
    /// The connector could not act as the Referral admin: the refresh token lapsed or was
    /// revoked, MFA is missing, or the app's credentials were refused.
    PartnerCenterAuthFailed,
}

const METRICS: usize = 4;

impl Metric {
    pub fn name(self) -> &'static str {
        match self {
            Metric::RegistrationHijacked => "RegistrationHijacked",
            Metric::RegistrationRestored => "RegistrationRestored",
            Metric::RegistrationValidationFailed => "RegistrationValidationFailed",
            Metric::PartnerCenterAuthFailed => "PartnerCenterAuthFailed",
        }
    }

    fn index(self) -> usize {
        match self {
            Metric::RegistrationHijacked => 0,
            Metric::RegistrationRestored => 1,
            Metric::RegistrationValidationFailed => 2,
            Metric::PartnerCenterAuthFailed => 3,
        }
    }
}

static SERVICE: OnceLock<String> = OnceLock::new();
static TOTALS: [AtomicU64; METRICS] = [const { AtomicU64::new(0) }; METRICS];

/// Names the process's function (`queue-processor`…) for metrics counted where the code does
/// not know which function runs it; the first name given stays.
pub fn set_service(name: &str) {
    let _ = SERVICE.set(name.to_string());
}

/// The process's function as [`set_service`] named it, or `cosell`.
pub fn service() -> &'static str {
    SERVICE.get().map(String::as_str).unwrap_or("cosell")
}

/// Counts `value` of `metric` for the process's own function.
pub fn count_here(metric: Metric, value: f64) {
    count(metric, value, service());
}

/// How many of `metric` this process has counted, so a command can report and a test can see
/// that a metric was emitted.
pub fn total(metric: Metric) -> u64 {
    TOTALS[metric.index()].load(Ordering::Relaxed)
}

/// The EMF line for `value` of `metric` (a count), with the function's name as its dimension.
pub fn emf_line(metric: Metric, value: f64, service: &str) -> String {
    json!({
        "_aws": {
            "Timestamp": Utc::now().timestamp_millis(),
            "CloudWatchMetrics": [{
                "Namespace": NAMESPACE,
                "Dimensions": [["Service"]],
                "Metrics": [{"Name": metric.name(), "Unit": "Count"}]
            }]
        },
        "Service": service,
        metric.name(): value,
    })
    .to_string()
}

/// Counts `value` of `metric` for `service` (e.g. `webhook-registrar`).
pub fn count(metric: Metric, value: f64, service: &str) {
    if value > 0.0 {
        TOTALS[metric.index()].fetch_add(value as u64, Ordering::Relaxed);
    }
    let line = emf_line(metric, value, service);
    if std::env::var_os("AWS_LAMBDA_FUNCTION_NAME").is_some() {
        let mut out = std::io::stdout().lock();
        // A metric that cannot be written must not fail the work it describes.
        let _ = writeln!(out, "{line}");
    } else {
        // Outside Lambda stdout is for people (`cosell local`'s tables): the line goes to the log.
        tracing::info!(metric = metric.name(), value, emf = %line, "metric");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_emf_line_names_its_metric_namespace_and_dimension() {
        let line: serde_json::Value = serde_json::from_str(&emf_line(
            Metric::RegistrationHijacked,
            1.0,
            "webhook-registrar",
        ))
        .expect("JSON");
        let spec = &line["_aws"]["CloudWatchMetrics"][0];
        assert_eq!(spec["Namespace"], NAMESPACE);
        assert_eq!(spec["Metrics"][0]["Name"], "RegistrationHijacked");
        assert_eq!(spec["Dimensions"][0][0], "Service");
        assert_eq!(line["Service"], "webhook-registrar");
        assert_eq!(line["RegistrationHijacked"], 1.0);
        assert!(line["_aws"]["Timestamp"].as_i64().is_some());
    }
}
