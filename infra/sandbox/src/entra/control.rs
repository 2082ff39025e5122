//! Control calls that play the directory's admin and its users: the Entra settings, the user
//! who approves or declines a device code, "revoke sessions", the refresh tokens issued so far,
//! and certificates uploaded to the app registration.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::json;

use super::device::DeviceState;
use crate::app::App;
use crate::config::{ADMIN_USER, RefreshRotation};
use crate::control::{BadRequest, bad_request, known_user, parse};

fn not_found(message: String) -> Response {
    (
        StatusCode::NOT_FOUND,
        axum::Json(json!({"error": {"code": "itemNotFound", "message": message}})),
    )
        .into_response()
}

fn settings_response(app: &App) -> Response {
    axum::Json(app.entra_settings()).into_response()
}

/// `GET /_sandbox/entra/settings`.
pub async fn settings(State(app): State<App>) -> Response {
    settings_response(&app)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SettingsChange {
    refresh_rotation: Option<RefreshRotation>,
    sign_in_mfa: Option<bool>,
    partner_center_mfa: Option<bool>,
    device_code_interval: Option<u64>,
}

/// `POST /_sandbox/entra/settings` with any subset of the settings; answers all of them.
pub async fn set_settings(State(app): State<App>, body: Bytes) -> Result<Response, BadRequest> {
    let change: SettingsChange = parse(&body)?;
    {
        let mut tokens = app.tokens();
        let s = &mut tokens.settings;
        if let Some(v) = change.refresh_rotation {
            s.refresh_rotation = v;
        }
        if let Some(v) = change.sign_in_mfa {
            s.sign_in_mfa = v;
        }
        if let Some(v) = change.partner_center_mfa {
            s.partner_center_mfa = v;
        }
        if let Some(v) = change.device_code_interval {
            s.device_code_interval = v;
        }
    }
    Ok(settings_response(&app))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Approve {
    user_code: String,
    username: Option<String>,
}

/// `POST /_sandbox/entra/device/approve`: the user enters the code and signs in (with the
/// second factor).
pub async fn approve_device(State(app): State<App>, body: Bytes) -> Result<Response, BadRequest> {
    let a: Approve = parse(&body)?;
    let user = known_user(&app, a.username.as_deref().unwrap_or(ADMIN_USER))?;
    let approved = DeviceState::Approved {
        username: user.username.clone(),
    };
    Ok(answer_device(&app, &a.user_code, approved))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Decline {
    user_code: String,
}

/// `POST /_sandbox/entra/device/decline`: the user refuses the sign-in.
pub async fn decline_device(State(app): State<App>, body: Bytes) -> Result<Response, BadRequest> {
    let d: Decline = parse(&body)?;
    Ok(answer_device(&app, &d.user_code, DeviceState::Declined))
}

fn answer_device(app: &App, user_code: &str, answer: DeviceState) -> Response {
    let now = app.clock.now();
    let mut tokens = app.tokens();
    let Some(device) = tokens.devices.by_user_code(user_code) else {
        return not_found(format!("No device code has the user code {user_code}."));
    };
    if device.state != DeviceState::Pending {
        return (
            StatusCode::CONFLICT,
            axum::Json(json!({"error": {
                "code": "conflict",
                "message": format!("The user code {user_code} has already been answered."),
            }})),
        )
            .into_response();
    }
    if device.expires_at <= now {
        return bad_request(format!("The user code {user_code} has expired."));
    }
    device.state = answer;
    StatusCode::NO_CONTENT.into_response()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Revoke {
    username: String,
}

/// `POST /_sandbox/entra/revoke`: an admin revokes the user's sessions; every refresh token of
/// the user stops working (access tokens live out their hour, as in Entra).
pub async fn revoke(State(app): State<App>, body: Bytes) -> Result<Response, BadRequest> {
    let r: Revoke = parse(&body)?;
    known_user(&app, &r.username)?;
    let now = app.clock.now();
    let revoked = app.tokens().refresh.revoke_user(&r.username, false, now);
    Ok(axum::Json(json!({"revoked": revoked})).into_response())
}

/// `GET /_sandbox/entra/refresh-tokens`: every refresh token issued, as fingerprints.
pub async fn refresh_tokens(State(app): State<App>) -> Response {
    let now = app.clock.now();
    axum::Json(app.tokens().refresh.list(now)).into_response()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Certificate {
    client_id: String,
    certificate_pem: String,
}

/// `POST /_sandbox/identities/certificate`: uploads a certificate to the app registration, so
/// the client may authenticate with assertions signed by its key.
pub async fn add_certificate(State(app): State<App>, body: Bytes) -> Result<Response, BadRequest> {
    let c: Certificate = parse(&body)?;
    if app.registered_client(&c.client_id).is_err() {
        return Err(BadRequest(format!(
            "No sandbox client with id {}",
            c.client_id
        )));
    }
    let der = super::client_auth::parse_certificate(&c.certificate_pem).map_err(BadRequest)?;
    let (x5t, x5t_s256) = super::client_auth::thumbprints(&der);
    let mut tokens = app.tokens();
    let registered = tokens.certificates.entry(c.client_id.clone()).or_default();
    if !registered.contains(&der) {
        registered.push(der);
    }
    Ok(axum::Json(json!({
        "client_id": c.client_id,
        "x5t": x5t,
        "x5t#S256": x5t_s256,
    }))
    .into_response())
}
