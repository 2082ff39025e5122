//! Fault injection and per-route request counts, shared by every API the sandbox serves.
//!
//! A fault rule matches a method and a route template (as the routes are declared, e.g.
//! `/v1.0/engagements/referrals/{id}`, or a prefix ending in `*`), fires for a fraction of the
//! matching requests (`rate`), a limited number of times (`count`), and then answers with a
//! status, adds latency, or lets the request commit and closes the connection with no response.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use serde_json::json;
use tokio::sync::Notify;

use crate::app::App;
use crate::partner_center::errors::{PcError, code_for_status, throttled};

fn default_rate() -> f64 {
    1.0
}

fn any_method() -> String {
    "*".into()
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct FaultRule {
    /// HTTP method, or `*`.
    #[serde(default = "any_method")]
    pub method: String,
    /// Route template as declared (`/v1.0/engagements/referrals/{id}`), or a prefix ending in `*`.
    pub route: String,
    /// Answer with this status instead of serving the request.
    #[serde(default)]
    pub status: Option<u16>,
    /// `Retry-After` seconds sent with the status.
    #[serde(default)]
    pub retry_after: Option<u64>,
    /// Added before the request is served.
    #[serde(default)]
    pub latency_ms: Option<u64>,
    /// Serve the request (the write commits) but close the connection without a response.
    #[serde(default)]
    pub drop_after_commit: bool,
    /// Fraction of matching requests affected, 0.0–1.0.
    #[serde(default = "default_rate")]
    pub rate: f64,
    /// How many times the rule fires before it is spent; unlimited when absent.
    #[serde(default)]
    pub count: Option<u32>,
    /// Matching requests let through before the rule starts to fire: the second of two
    /// creates on one route, say.
    #[serde(default)]
    pub skip: u32,
}

impl FaultRule {
    fn matches(&self, method: &str, route: &str) -> bool {
        let method_ok = self.method == "*" || self.method.eq_ignore_ascii_case(method);
        let route_ok = match self.route.strip_suffix('*') {
            Some(prefix) => route.starts_with(prefix),
            None => self.route == route,
        };
        method_ok && route_ok && self.count != Some(0)
    }

    pub fn validate(&self) -> Result<(), String> {
        if !(0.0..=1.0).contains(&self.rate) {
            return Err(format!("rate must be between 0 and 1, got {}", self.rate));
        }
        if let Some(s) = self.status
            && StatusCode::from_u16(s).is_err()
        {
            return Err(format!("status {s} is not an HTTP status"));
        }
        if self.status.is_none() && self.latency_ms.is_none() && !self.drop_after_commit {
            return Err("a rule needs status, latencyMs or dropAfterCommit".into());
        }
        Ok(())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum WebhookFaultKind {
    /// The event is never delivered (as when Partner Center gives up).
    Drop,
    /// The event is delivered twice.
    Duplicate,
    /// The event is held back and delivered after the next one.
    Reorder,
    /// The event is delivered after `delayMs`.
    Delay,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct WebhookFault {
    pub kind: WebhookFaultKind,
    #[serde(default = "default_rate")]
    pub rate: f64,
    #[serde(default)]
    pub count: Option<u32>,
    #[serde(default)]
    pub delay_ms: u64,
}

#[derive(Debug, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Faults {
    pub routes: Vec<FaultRule>,
    pub webhooks: Vec<WebhookFault>,
}

fn fires(rate: f64, count: &mut Option<u32>) -> bool {
    if *count == Some(0) || !(rate >= 1.0 || rand::random::<f64>() < rate) {
        return false;
    }
    if let Some(c) = count {
        *c -= 1;
    }
    true
}

impl Faults {
    fn take_route_fault(&mut self, method: &str, route: &str) -> Option<FaultRule> {
        self.routes
            .iter_mut()
            .filter(|r| r.matches(method, route))
            .find_map(|r| {
                if r.skip > 0 {
                    r.skip -= 1;
                    return None;
                }
                fires(r.rate, &mut r.count).then(|| r.clone())
            })
    }

    pub fn take_webhook_fault(&mut self) -> Option<(WebhookFaultKind, Duration)> {
        self.webhooks.iter_mut().find_map(|f| {
            fires(f.rate, &mut f.count).then(|| (f.kind, Duration::from_millis(f.delay_ms)))
        })
    }
}

/// Closes the current connection without a response. One per connection, in request
/// extensions; the server's accept loop drops the connection when notified.
#[derive(Clone, Debug, Default)]
pub struct ConnectionKill(pub Arc<Notify>);

/// The body an injected status carries, in the shape of the API the route belongs to.
fn fault_response(route: &str, status: StatusCode, retry_after: Option<u64>) -> Response {
    if route.starts_with("/api/data/") {
        return crate::dataverse::fault_response(status, retry_after);
    }
    if route.starts_with("/services/") {
        return crate::salesforce::fault_response(status, retry_after);
    }
    let mut resp = if route.starts_with("/v1.0/") || route.starts_with("/webhooks/") {
        if status == StatusCode::TOO_MANY_REQUESTS {
            return throttled(retry_after.unwrap_or(1));
        }
        PcError::new(
            status,
            code_for_status(status),
            format!("Injected fault: {status}"),
        )
        .into_response()
    } else {
        (
            status,
            axum::Json(json!({"error": {"code": status.as_u16().to_string(), "message": format!("Injected fault: {status}")}})),
        )
            .into_response()
    };
    if let Some(secs) = retry_after {
        resp.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(secs));
    }
    resp
}

/// Counts each request by method and route, then applies the first fault rule that fires.
pub async fn middleware(State(app): State<App>, req: Request, next: Next) -> Response {
    let path = req.uri().path();
    // Wildcard routes (the CRM APIs address rows as `set(id)`) are labelled by their API.
    let route = match req.extensions().get::<MatchedPath>() {
        Some(m) if !m.as_str().contains("{*") => m.as_str().to_string(),
        _ => crate::dataverse::route_label(path)
            .or_else(|| crate::salesforce::route_label(path))
            .unwrap_or_else(|| path.to_string()),
    };
    let method = req.method().as_str().to_string();
    *app.stats().entry(format!("{method} {route}")).or_insert(0) += 1;
    let Some(rule) = app.faults().take_route_fault(&method, &route) else {
        return next.run(req).await;
    };
    if let Some(ms) = rule.latency_ms {
        tokio::time::sleep(Duration::from_millis(ms)).await;
    }
    if let Some(status) = rule.status.and_then(|s| StatusCode::from_u16(s).ok()) {
        return fault_response(&route, status, rule.retry_after);
    }
    let kill = req.extensions().get::<ConnectionKill>().cloned();
    let resp = next.run(req).await;
    match (rule.drop_after_commit, kill) {
        (true, Some(kill)) => {
            kill.0.notify_one();
            // The accept loop drops the connection; this response is never written.
            std::future::pending::<Response>().await
        }
        _ => resp,
    }
}
