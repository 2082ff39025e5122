//! The control API under `/_sandbox/`: reset, clock, faults, counters, deliveries, identities.
//! It needs no token: the sandbox listens on loopback only.

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::Duration;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::app::App;
use crate::config::UserIdentity;
use crate::faults::{FaultRule, WebhookFault};

/// A control call the sandbox cannot carry out, answered 400 with the reason.
pub(crate) struct BadRequest(pub(crate) String);

impl IntoResponse for BadRequest {
    fn into_response(self) -> Response {
        (
            StatusCode::BAD_REQUEST,
            axum::Json(json!({"error": {"code": "invalidRequest", "message": self.0}})),
        )
            .into_response()
    }
}

pub(crate) fn bad_request(message: impl Into<String>) -> Response {
    BadRequest(message.into()).into_response()
}

pub(crate) fn parse<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, BadRequest> {
    serde_json::from_slice(body).map_err(|e| BadRequest(format!("Invalid body: {e}")))
}

/// The sandbox user a control call names.
pub(crate) fn known_user<'a>(app: &'a App, username: &str) -> Result<&'a UserIdentity, BadRequest> {
    app.user(username)
        .ok_or_else(|| BadRequest(format!("No sandbox user named {username}")))
}

pub async fn reset(State(app): State<App>) -> Response {
    app.reset();
    StatusCode::NO_CONTENT.into_response()
}

fn clock_json(app: &App) -> Value {
    json!({
        "now": crate::clock::pc_timestamp(app.clock.now()),
        "offsetSeconds": app.clock.offset().num_seconds(),
    })
}

pub async fn clock(State(app): State<App>) -> Response {
    axum::Json(clock_json(&app)).into_response()
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Advance {
    #[serde(default)]
    days: i64,
    #[serde(default)]
    hours: i64,
    #[serde(default)]
    minutes: i64,
    #[serde(default)]
    seconds: i64,
}

/// Moves sandbox time forward; tokens and unanswered referrals expire accordingly.
pub async fn advance(State(app): State<App>, body: Bytes) -> Response {
    let a: Advance = match parse(&body) {
        Ok(a) => a,
        Err(r) => return r.into_response(),
    };
    let by = Duration::days(a.days)
        + Duration::hours(a.hours)
        + Duration::minutes(a.minutes)
        + Duration::seconds(a.seconds);
    if by < Duration::zero() {
        return bad_request("The sandbox clock only moves forward.");
    }
    app.clock.advance(by);
    app.expire_referrals();
    axum::Json(clock_json(&app)).into_response()
}

/// Accepts one rule or an array of rules.
pub async fn add_faults(State(app): State<App>, body: Bytes) -> Response {
    let rules: Vec<FaultRule> = match serde_json::from_slice::<Value>(&body) {
        Ok(Value::Array(_)) => match parse(&body) {
            Ok(r) => r,
            Err(r) => return r.into_response(),
        },
        _ => match parse(&body) {
            Ok(r) => vec![r],
            Err(r) => return r.into_response(),
        },
    };
    if let Some(err) = rules.iter().find_map(|r| r.validate().err()) {
        return bad_request(err);
    }
    app.faults().routes.extend(rules);
    faults(State(app)).await
}

pub async fn add_webhook_fault(State(app): State<App>, body: Bytes) -> Response {
    let fault: WebhookFault = match parse(&body) {
        Ok(f) => f,
        Err(r) => return r.into_response(),
    };
    if !(0.0..=1.0).contains(&fault.rate) {
        return bad_request(format!("rate must be between 0 and 1, got {}", fault.rate));
    }
    app.faults().webhooks.push(fault);
    faults(State(app)).await
}

pub async fn faults(State(app): State<App>) -> Response {
    let body = serde_json::to_value(&*app.faults()).unwrap_or(Value::Null);
    axum::Json(body).into_response()
}

pub async fn clear_faults(State(app): State<App>) -> Response {
    *app.faults() = Default::default();
    StatusCode::NO_CONTENT.into_response()
}

/// Request counts keyed `"METHOD /route/{template}"`.
pub async fn stats(State(app): State<App>) -> Response {
    axum::Json(app.stats().clone()).into_response()
}

pub async fn clear_stats(State(app): State<App>) -> Response {
    app.stats().clear();
    StatusCode::NO_CONTENT.into_response()
}

pub async fn deliveries(State(app): State<App>) -> Response {
    axum::Json(app.deliveries().all()).into_response()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Password {
    username: String,
    password: String,
}

/// Changes a user's password: what an expired or reset password does to a connector that signs
/// in as that user. Public clients' refresh tokens are revoked; confidential clients' survive.
pub async fn set_password(State(app): State<App>, body: Bytes) -> Response {
    let p: Password = match parse(&body) {
        Ok(p) => p,
        Err(r) => return r.into_response(),
    };
    if let Err(e) = known_user(&app, &p.username) {
        return e.into_response();
    }
    app.tokens()
        .set_password(&p.username, &p.password, app.clock.now());
    StatusCode::NO_CONTENT.into_response()
}

pub async fn expire_tokens(State(app): State<App>) -> Response {
    app.tokens().expire_access_tokens();
    StatusCode::NO_CONTENT.into_response()
}

/// The webhook signing certificate, DER-encoded, as Partner Center publishes its own.
pub async fn certificate(State(app): State<App>, Path(name): Path<String>) -> Response {
    if name != crate::CERTIFICATE_NAME {
        return StatusCode::NOT_FOUND.into_response();
    }
    let mut resp = app.signer.cert_der().to_vec().into_response();
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/pkix-cert"),
    );
    resp
}
