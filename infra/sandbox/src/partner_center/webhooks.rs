//! The Webhooks API at `/webhooks/v1/registration`.

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use chrono::Duration;
use serde_json::{Map, Value, json};

use super::Registration;
use super::errors::PcError;
use crate::app::App;
use crate::clock::pc_timestamp;
use crate::config::PARTNER_CENTER_AUDIENCE;
use crate::delivery::{AttemptOutcome, Event};
use crate::entra::Subject;

/// Event names a registration may subscribe to: the referral ones and a sample of the others
/// Partner Center publishes.
pub const EVENT_NAMES: &[&str] = &[
    "test-created",
    "referral-created",
    "referral-updated",
    "related-referral-created",
    "related-referral-updated",
    "subscription-updated",
    "threshold-exceeded",
    "usagerecords-thresholdExceeded",
    "azure-billing-ready",
    "invoice-ready",
    "customer-created",
    "granular-admin-relationship-created",
    "granular-admin-relationship-updated",
];

/// The Webhooks API accepts the Partner Center audience only, app-only or app+user. A token for
/// the Referrals API is a different audience and is refused, as Entra-protected APIs do.
fn authorize(app: &App, headers: &HeaderMap) -> Result<(), PcError> {
    match app.authenticate(headers, &[PARTNER_CENTER_AUDIENCE]) {
        Err(why) => Err(PcError::unauthenticated(why.to_string())),
        Ok(Subject::User { amr, .. }) => app.require_mfa(&amr),
        Ok(Subject::App { .. }) => Ok(()),
    }
}

fn registration_json(r: &Registration) -> Value {
    json!({
        "SubscriberId": r.subscriber_id,
        "WebhookUrl": r.webhook_url,
        "WebhookEvents": r.webhook_events,
        "SignatureTokenToMsSignatureHeader": r.signature_to_ms_header,
        "LastModifiedTimestamp": pc_timestamp(r.last_modified),
    })
}

/// Reads a registration body; keys are matched case-insensitively because Microsoft's own
/// clients send PascalCase and the swagger model is camelCase.
fn parse_registration(body: &[u8]) -> Result<(String, Vec<String>, bool), PcError> {
    let Ok(Value::Object(obj)) = serde_json::from_slice::<Value>(body) else {
        return Err(PcError::invalid("The request body must be a JSON object."));
    };
    let get = |name: &str| {
        obj.iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v)
    };
    let url = get("webhookUrl")
        .and_then(Value::as_str)
        .filter(|u| !u.is_empty())
        .ok_or_else(|| PcError::invalid_field("WebhookUrl", "WebhookUrl is required."))?;
    let parsed = url::Url::parse(url).map_err(|_| {
        PcError::invalid_field(
            "WebhookUrl",
            format!("WebhookUrl '{url}' is not a valid absolute URL."),
        )
    })?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(PcError::invalid_field(
            "WebhookUrl",
            format!("WebhookUrl '{url}' must be an http(s) URL."),
        ));
    }
    let events: Vec<String> = get("webhookEvents")
        .and_then(Value::as_array)
        .ok_or_else(|| PcError::invalid_field("WebhookEvents", "WebhookEvents is required."))?
        .iter()
        .map(|e| e.as_str().map(str::to_string))
        .collect::<Option<_>>()
        .ok_or_else(|| PcError::invalid_field("WebhookEvents", "WebhookEvents must be strings."))?;
    if events.is_empty() {
        return Err(PcError::invalid_field(
            "WebhookEvents",
            "WebhookEvents must name at least one event.",
        ));
    }
    if let Some(bad) = events.iter().find(|e| !EVENT_NAMES.contains(&e.as_str())) {
        return Err(PcError::invalid_field(
            "WebhookEvents",
            format!("'{bad}' is not a supported webhook event."),
        ));
    }
    let ms_header = get("signatureTokenToMsSignatureHeader")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    Ok((url.to_string(), events, ms_header))
}

pub async fn events(State(app): State<App>, headers: HeaderMap) -> Response {
    match authorize(&app, &headers) {
        Ok(()) => axum::Json(EVENT_NAMES).into_response(),
        Err(e) => e.into_response(),
    }
}

pub async fn get(State(app): State<App>, headers: HeaderMap) -> Response {
    (|| {
        authorize(&app, &headers)?;
        let pc = app.partner_center();
        let r = pc
            .registration
            .as_ref()
            .ok_or_else(|| PcError::not_found("A webhook registration"))?;
        Ok::<_, PcError>(axum::Json(registration_json(r)).into_response())
    })()
    .unwrap_or_else(IntoResponse::into_response)
}

pub async fn post(State(app): State<App>, headers: HeaderMap, body: Bytes) -> Response {
    register(&app, &headers, &body, false).unwrap_or_else(IntoResponse::into_response)
}

pub async fn put(State(app): State<App>, headers: HeaderMap, body: Bytes) -> Response {
    register(&app, &headers, &body, true).unwrap_or_else(IntoResponse::into_response)
}

fn register(
    app: &App,
    headers: &HeaderMap,
    body: &[u8],
    replace: bool,
) -> Result<Response, PcError> {
    authorize(app, headers)?;
    let (url, events, ms_header) = parse_registration(body)?;
    let mut pc = app.partner_center();
    if pc.registration.is_some() && !replace {
        return Err(PcError::new(
            StatusCode::CONFLICT,
            "resourceModified",
            "A registration already exists for this partner; use PUT to update it.",
        ));
    }
    let subscriber_id = pc
        .registration
        .as_ref()
        .map(|r| r.subscriber_id.clone())
        .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
    let reg = Registration {
        subscriber_id,
        webhook_url: url,
        webhook_events: events,
        signature_to_ms_header: ms_header,
        last_modified: app.clock.now(),
    };
    let body = registration_json(&reg);
    pc.registration = Some(reg);
    Ok(axum::Json(body).into_response())
}

pub async fn validation_event(State(app): State<App>, headers: HeaderMap) -> Response {
    (|| {
        authorize(&app, &headers)?;
        let now = app.clock.now();
        let mut pc = app.partner_center();
        let Some(reg) = pc.registration.as_ref() else {
            return Err(PcError::invalid(
                "No webhook registration exists; register test-created first.",
            ));
        };
        if !reg.webhook_events.iter().any(|e| e == "test-created") {
            return Err(PcError::invalid(
                "The registration does not include the test-created event.",
            ));
        }
        while pc
            .validation_calls
            .front()
            .is_some_and(|t| now - *t >= Duration::minutes(1))
        {
            pc.validation_calls.pop_front();
        }
        if pc.validation_calls.len() >= app.config.validation_events_per_minute {
            let oldest = pc.validation_calls.front().copied().unwrap_or(now);
            let wait = (oldest + Duration::minutes(1) - now).num_seconds().max(1) as u64;
            return Ok(super::errors::throttled(wait));
        }
        pc.validation_calls.push_back(now);
        let correlation_id = uuid::Uuid::new_v4().to_string();
        let delivery_id = app.deliveries().reserve();
        pc.validation_events
            .insert(correlation_id.clone(), delivery_id);
        drop(pc);
        app.emit(Event::test(&correlation_id, delivery_id));
        Ok(axum::Json(json!({"correlationId": correlation_id})).into_response())
    })()
    .unwrap_or_else(IntoResponse::into_response)
}

pub async fn validation_status(
    State(app): State<App>,
    headers: HeaderMap,
    Path(correlation_id): Path<String>,
) -> Response {
    (|| {
        authorize(&app, &headers)?;
        let delivery_id = app
            .partner_center()
            .validation_events
            .get(&correlation_id)
            .copied()
            .ok_or_else(|| PcError::not_found(&format!("Validation event {correlation_id}")))?;
        let deliveries = app.deliveries();
        let d = deliveries.get(delivery_id);
        let results: Vec<Value> = d
            .map(|d| {
                d.attempts
                    .iter()
                    .map(|a| {
                        let (code, message, system_error) = match &a.outcome {
                            AttemptOutcome::Status(s) => {
                                let reason = StatusCode::from_u16(*s)
                                    .ok()
                                    .and_then(|s| s.canonical_reason())
                                    .unwrap_or("Unknown");
                                (reason.replace(' ', ""), format!("{s} {reason}"), false)
                            }
                            AttemptOutcome::Error(e) => ("Error".to_string(), e.clone(), true),
                        };
                        let mut m = Map::new();
                        m.insert("responseCode".into(), code.into());
                        m.insert("responseMessage".into(), message.into());
                        m.insert("systemError".into(), system_error.into());
                        m.insert("dateTimeUtc".into(), pc_timestamp(a.at).into());
                        Value::Object(m)
                    })
                    .collect()
            })
            .unwrap_or_default();
        let status = if d.is_some_and(|d| d.finished) {
            "completed"
        } else {
            "inProgress"
        };
        let callback = d.map(|d| d.url.clone()).unwrap_or_default();
        Ok::<_, PcError>(
            axum::Json(json!({
                "correlationId": correlation_id,
                "partnerId": super::referrals::PARTNER_ORG_ID,
                "status": status,
                "callbackUrl": callback,
                "results": results,
            }))
            .into_response(),
        )
    })()
    .unwrap_or_else(IntoResponse::into_response)
}
