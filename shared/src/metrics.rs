//! Metrics as CloudWatch Embedded Metric Format (EMF): one JSON line per event, which CloudWatch
//! Logs turns into metrics in the `CoSellConnector` namespace, with no API call and no extra
//! permission. In Lambda the line goes to stdout; `cosell local` appends it to a file in its data
//! directory ([`write_to_file`]), since its stdout is for people; elsewhere (tests, one-shot
//! commands) it is a debug event under the log target `emf`. Alarms and the dashboard in
//! `template.yaml` read these metrics; docs/operations.md lists them.
//!
//! Dimensions are kept to two, `Service` and `Direction`, so each metric is a handful of time
//! series (CloudWatch bills by series). `Service` is the function that emitted the line, except
//! on API call lines, where it is the API called (`PartnerCenter`, `EntraId`, `Dataverse`,
//! `Salesforce`): a throttled CRM matters per CRM, whichever function met it.

use std::cell::RefCell;
use std::collections::HashMap;
use std::io::Write;
use std::sync::{Mutex, OnceLock, PoisonError};
use std::time::{Duration, Instant};

use chrono::Utc;
use serde_json::{Map, Value, json};

/// The CloudWatch namespace of every metric the connector emits.
pub const NAMESPACE: &str = "CoSellConnector";

/// A metric the connector counts on its own line, with the function as its dimension.
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
    /// The CRM refused the connector's credentials (a secret expired, the application or
    /// integration user was disabled).
    CrmAuthFailed,
}

impl Metric {
    pub fn name(self) -> &'static str {
        match self {
            Metric::RegistrationHijacked => "RegistrationHijacked",
            Metric::RegistrationRestored => "RegistrationRestored",
            Metric::RegistrationValidationFailed => "RegistrationValidationFailed",
            Metric::PartnerCenterAuthFailed => "PartnerCenterAuthFailed",
            Metric::CrmAuthFailed => "CrmAuthFailed",
        }
    }
}

/// Which way a sync went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// Partner Center → CRM.
    ToCrm,
    /// CRM → Partner Center.
    ToPartnerCenter,
}

impl Direction {
    pub fn name(self) -> &'static str {
        match self {
            Direction::ToCrm => "ToCrm",
            Direction::ToPartnerCenter => "ToPartnerCenter",
        }
    }
}

/// What became of one sync command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SyncOutcome {
    Created,
    Updated,
    Unchanged,
    Skipped,
    /// Refused by validation: a person must fix it; shown in Audit with ✖.
    Refused,
    /// An error: the message is delivered again, and dead-lettered once its receives are spent.
    Failed,
}

impl SyncOutcome {
    const ALL: [SyncOutcome; 6] = [
        SyncOutcome::Created,
        SyncOutcome::Updated,
        SyncOutcome::Unchanged,
        SyncOutcome::Skipped,
        SyncOutcome::Refused,
        SyncOutcome::Failed,
    ];

    pub fn metric(self) -> &'static str {
        match self {
            SyncOutcome::Created => "SyncCreated",
            SyncOutcome::Updated => "SyncUpdated",
            SyncOutcome::Unchanged => "SyncUnchanged",
            SyncOutcome::Skipped => "SyncSkipped",
            SyncOutcome::Refused => "SyncRefused",
            SyncOutcome::Failed => "SyncFailed",
        }
    }
}

/// An API the connector calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Api {
    PartnerCenter,
    /// Token requests (Partner Center's and Dataverse's sign-in).
    EntraId,
    Dataverse,
    Salesforce,
}

impl Api {
    pub fn name(self) -> &'static str {
        match self {
            Api::PartnerCenter => "PartnerCenter",
            Api::EntraId => "EntraId",
            Api::Dataverse => "Dataverse",
            Api::Salesforce => "Salesforce",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Unit {
    Count,
    Milliseconds,
}

impl Unit {
    fn name(self) -> &'static str {
        match self {
            Unit::Count => "Count",
            Unit::Milliseconds => "Milliseconds",
        }
    }
}

/// One EMF line: its dimensions, its values, and properties that are searchable in Logs
/// Insights but are not dimensions (they would multiply the series).
#[derive(Debug, Clone, Default)]
pub struct Line {
    dimensions: Vec<(&'static str, String)>,
    values: Vec<(&'static str, f64, Unit)>,
    properties: Vec<(&'static str, Value)>,
}

impl Line {
    /// A line with the process's function as its `Service`.
    pub fn here() -> Line {
        Line::default().dimension("Service", service())
    }

    pub fn dimension(mut self, name: &'static str, value: impl Into<String>) -> Line {
        self.dimensions.push((name, value.into()));
        self
    }

    pub fn count(mut self, name: &'static str, value: f64) -> Line {
        self.values.push((name, value, Unit::Count));
        self
    }

    pub fn millis(mut self, name: &'static str, value: Duration) -> Line {
        self.values
            .push((name, value.as_secs_f64() * 1000.0, Unit::Milliseconds));
        self
    }

    pub fn property(mut self, name: &'static str, value: impl Into<Value>) -> Line {
        self.properties.push((name, value.into()));
        self
    }

    /// The line as CloudWatch reads it.
    pub fn to_json(&self) -> Value {
        let mut root = Map::new();
        root.insert(
            "_aws".into(),
            json!({
                "Timestamp": Utc::now().timestamp_millis(),
                "CloudWatchMetrics": [{
                    "Namespace": NAMESPACE,
                    "Dimensions": [self.dimensions.iter().map(|(n, _)| *n).collect::<Vec<_>>()],
                    "Metrics": self.values.iter().map(|(n, _, unit)| json!({"Name": n, "Unit": unit.name()})).collect::<Vec<_>>(),
                }]
            }),
        );
        for (name, value) in &self.dimensions {
            root.insert((*name).into(), Value::String(value.clone()));
        }
        for (name, value) in &self.properties {
            root.insert((*name).into(), value.clone());
        }
        for (name, value, _) in &self.values {
            root.insert((*name).into(), json!(value));
        }
        Value::Object(root)
    }

    /// Writes the line, and adds its counts to the process's totals.
    pub fn emit(self) {
        {
            let mut totals = totals().lock().unwrap_or_else(PoisonError::into_inner);
            for (name, value, unit) in &self.values {
                if *unit == Unit::Count {
                    *totals.entry(name).or_default() += value;
                }
            }
        }
        let line = self.to_json().to_string();
        CAPTURE.with(|c| {
            if let Some(lines) = c.borrow_mut().as_mut() {
                lines.push(line.clone());
            }
        });
        // A metric that cannot be written must not fail the work it describes: write errors
        // are dropped.
        if std::env::var_os("AWS_LAMBDA_FUNCTION_NAME").is_some() {
            let mut out = std::io::stdout().lock();
            let _ = writeln!(out, "{line}");
        } else if let Some(file) = FILE.get() {
            let mut file = file.lock().unwrap_or_else(PoisonError::into_inner);
            let _ = writeln!(file, "{line}");
        } else {
            // Outside Lambda stdout is for people (`cosell local`'s tables).
            tracing::debug!(target: "emf", "{line}");
        }
    }
}

static SERVICE: OnceLock<String> = OnceLock::new();
static FILE: OnceLock<Mutex<std::fs::File>> = OnceLock::new();

/// A metrics file past this size is moved aside (to `<name>.1`) when it is next opened.
const MAX_FILE_BYTES: u64 = 10 * 1024 * 1024;

/// Sends this process's EMF lines to the file at `path` (appended, one JSON object per line),
/// as `cosell local` does: a terminal flooded with a line per API call helps nobody, and a file
/// can be read by a script or shipped to CloudWatch by its agent. The first file set stays.
pub fn write_to_file(path: &std::path::Path) -> std::io::Result<()> {
    if std::fs::metadata(path).is_ok_and(|m| m.len() > MAX_FILE_BYTES) {
        let mut aside = path.as_os_str().to_owned();
        aside.push(".1");
        std::fs::rename(path, aside)?;
    }
    let file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)?;
    let _ = FILE.set(Mutex::new(file));
    Ok(())
}

fn totals() -> &'static Mutex<HashMap<&'static str, f64>> {
    static TOTALS: OnceLock<Mutex<HashMap<&'static str, f64>>> = OnceLock::new();
    TOTALS.get_or_init(Default::default)
}

thread_local! {
    static CAPTURE: RefCell<Option<Vec<String>>> = const { RefCell::new(None) };
}

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

/// Counts `value` of `metric` for `service` (e.g. `webhook-registrar`).
pub fn count(metric: Metric, value: f64, service: &str) {
    Line::default()
        .dimension("Service", service)
        .count(metric.name(), value)
        .emit();
}

/// How much of `metric` this process has counted, so a command can report and a test can see
/// that a metric was emitted.
pub fn total(metric: Metric) -> u64 {
    total_of(metric.name()) as u64
}

/// The process's total of the count named `name`, on any line.
pub fn total_of(name: &str) -> f64 {
    totals()
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .get(name)
        .copied()
        .unwrap_or(0.0)
}

/// The EMF line for `value` of `metric` (a count), with the function's name as its dimension.
pub fn emf_line(metric: Metric, value: f64, service: &str) -> String {
    Line::default()
        .dimension("Service", service)
        .count(metric.name(), value)
        .to_json()
        .to_string()
}

/// What one sync command came to, with how long the message waited in the queue and how long
/// the change took from the source side to the write on the other side, when they are known.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SyncRecord {
    pub direction: Direction,
    pub outcome: SyncOutcome,
    pub message_age: Option<Duration>,
    pub latency: Option<Duration>,
    /// The change came from reconciliation, not a webhook, and was written: a missed webhook.
    pub recovered: bool,
}

/// One line per sync command: `Syncs` 1, and 1 for its outcome and 0 for the others (so a
/// ratio over a period has every term).
pub fn sync(record: SyncRecord) {
    let mut line = Line::here()
        .dimension("Direction", record.direction.name())
        .count("Syncs", 1.0);
    for outcome in SyncOutcome::ALL {
        line = line.count(
            outcome.metric(),
            if outcome == record.outcome { 1.0 } else { 0.0 },
        );
    }
    if let Some(age) = record.message_age {
        line = line.millis("MessageAge", age);
    }
    if let Some(latency) = record.latency {
        line = line.millis("SyncLatency", latency);
    }
    if record.direction == Direction::ToCrm {
        line = line.count(
            "RecoveredByReconciliation",
            if record.recovered { 1.0 } else { 0.0 },
        );
    }
    line.emit();
}

/// One line per HTTP call to `api`: its latency, and how it ended. `status` is `None` when no
/// answer came (a timeout, a refused connection).
pub fn api_call(api: Api, started: Instant, status: Option<u16>) {
    let (throttled, client, server, transport) = match status {
        None => (0.0, 0.0, 0.0, 1.0),
        Some(429 | 503) => (1.0, 0.0, 0.0, 0.0),
        Some(400..=499) => (0.0, 1.0, 0.0, 0.0),
        Some(500..=599) => (0.0, 0.0, 1.0, 0.0),
        Some(_) => (0.0, 0.0, 0.0, 0.0),
    };
    Line::default()
        .dimension("Service", api.name())
        .property("Function", service())
        .count("ApiCalls", 1.0)
        .count("ApiThrottled", throttled)
        .count("ApiClientErrors", client)
        .count("ApiServerErrors", server)
        .count("ApiTransportErrors", transport)
        .millis("ApiLatency", started.elapsed())
        .emit();
}

/// Collects the EMF lines emitted on this thread until [`take_captured`], for tests (a
/// `#[tokio::test]` runs its futures on one thread).
pub fn start_capture() {
    CAPTURE.with(|c| *c.borrow_mut() = Some(Vec::new()));
}

/// The lines collected since [`start_capture`], which stops collecting.
pub fn take_captured() -> Vec<Value> {
    CAPTURE
        .with(|c| c.borrow_mut().take())
        .unwrap_or_default()
        .iter()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_emf_line_names_its_metric_namespace_and_dimension() {
        let line: Value = serde_json::from_str(&emf_line(
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

    #[test]
    fn a_sync_line_counts_its_outcome_and_carries_its_times() {
        start_capture();
        sync(SyncRecord {
            direction: Direction::ToCrm,
            outcome: SyncOutcome::Created,
            message_age: Some(Duration::from_millis(40)),
            latency: Some(Duration::from_millis(250)),
            recovered: true,
        });
        let lines = take_captured();
        assert_eq!(lines.len(), 1);
        let line = &lines[0];
        let spec = &line["_aws"]["CloudWatchMetrics"][0];
        assert_eq!(spec["Dimensions"][0], json!(["Service", "Direction"]));
        assert_eq!(line["Direction"], "ToCrm");
        assert_eq!(line["Syncs"], 1.0);
        assert_eq!(line["SyncCreated"], 1.0);
        assert_eq!(line["SyncFailed"], 0.0);
        assert_eq!(line["SyncLatency"], 250.0);
        assert_eq!(line["MessageAge"], 40.0);
        assert_eq!(line["RecoveredByReconciliation"], 1.0);
        let units: HashMap<String, String> = spec["Metrics"]
            .as_array()
            .expect("metrics")
            .iter()
            .map(|m| {
                (
                    m["Name"].as_str().unwrap_or_default().to_string(),
                    m["Unit"].as_str().unwrap_or_default().to_string(),
                )
            })
            .collect();
        assert_eq!(units["SyncLatency"], "Milliseconds");
        assert_eq!(units["SyncCreated"], "Count");
    }

    #[test]
    fn an_api_call_is_classed_by_its_answer() {
        start_capture();
        let started = Instant::now();
        for status in [Some(200), Some(429), Some(404), Some(502), None] {
            api_call(Api::Dataverse, started, status);
        }
        let lines = take_captured();
        let column = |name: &str| -> Vec<f64> {
            lines
                .iter()
                .map(|l| l[name].as_f64().unwrap_or(-1.0))
                .collect()
        };
        assert_eq!(column("ApiCalls"), [1.0; 5]);
        assert_eq!(column("ApiThrottled"), [0.0, 1.0, 0.0, 0.0, 0.0]);
        assert_eq!(column("ApiClientErrors"), [0.0, 0.0, 1.0, 0.0, 0.0]);
        assert_eq!(column("ApiServerErrors"), [0.0, 0.0, 0.0, 1.0, 0.0]);
        assert_eq!(column("ApiTransportErrors"), [0.0, 0.0, 0.0, 0.0, 1.0]);
        assert_eq!(lines[0]["Service"], "Dataverse");
    }
}
