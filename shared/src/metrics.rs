//! Metrics as CloudWatch Embedded Metric Format (EMF): one JSON line on stdout per data point,
//! which CloudWatch Logs turns into a metric in the `CoSellConnector` namespace, with no API call
//! and no extra permission. Outside Lambda the line is just a log line. Alarms in
//! `template.yaml` watch these metrics.

use std::io::Write;

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
}

impl Metric {
    pub fn name(self) -> &'static str {
        match self {
            Metric::RegistrationHijacked => "RegistrationHijacked",
            Metric::RegistrationRestored => "RegistrationRestored",
            Metric::RegistrationValidationFailed => "RegistrationValidationFailed",
        }
    }
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
    let line = emf_line(metric, value, service);
    let mut out = std::io::stdout().lock();
    // A metric that cannot be written must not fail the work it describes.
    let _ = writeln!(out, "{line}");
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
