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
use crate::control::{bad_request, parse};

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
pub async fn set_settings(State(app): State<App>, body: Bytes) -> Response {
    let change: SettingsChange = match parse(&body) {
        Ok(c) => c,
        Err(r) => return r.into_response(),
    };
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
    settings_response(&app)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Approve {
    user_code: String,
    username: Option<String>,
}

/// `POST /_sandbox/entra/device/approve`: the user enters the code and signs in (with the
/// second factor).
pub async fn approve_device(State(app): State<App>, body: Bytes) -> Response {
    let a: Approve = match parse(&body) {
        Ok(a) => a,
        Err(r) => return r.into_response(),
    };
    let wanted = a.username.as_deref().unwrap_or(ADMIN_USER);
    let Some(user) = app
        .config
        .users
        .iter()
        .find(|u| u.username.eq_ignore_ascii_case(wanted))
    else {
        return bad_request(format!("No sandbox user named {wanted}"));
    };
    answer_device(
        &app,
        &a.user_code,
        DeviceState::Approved {
            username: user.username.clone(),
        },
    )
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Decline {
    user_code: String,
}

/// `POST /_sandbox/entra/device/decline`: the user refuses the sign-in.
pub async fn decline_device(State(app): State<App>, body: Bytes) -> Response {
    let d: Decline = match parse(&body) {
        Ok(d) => d,
        Err(r) => return r.into_response(),
    };
    answer_device(&app, &d.user_code, DeviceState::Declined)
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
pub async fn revoke(State(app): State<App>, body: Bytes) -> Response {
    let r: Revoke = match parse(&body) {
        Ok(r) => r,
        Err(resp) => return resp.into_response(),
    };
    if !app
        .config
        .users
        .iter()
        .any(|u| u.username.eq_ignore_ascii_case(&r.username))
    {
        return bad_request(format!("No sandbox user named {}", r.username));
    }
    let now = app.clock.now();
    let revoked = app.tokens().refresh.revoke_user(&r.username, false, now);
    axum::Json(json!({"revoked": revoked})).into_response()
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
pub async fn add_certificate(State(app): State<App>, body: Bytes) -> Response {
    let c: Certificate = match parse(&body) {
        Ok(c) => c,
        Err(r) => return r.into_response(),
    };
    if !app
        .config
        .clients
        .iter()
        .any(|k| k.client_id == c.client_id)
    {
        return bad_request(format!("No sandbox client with id {}", c.client_id));
    }
    let der = match super::client_auth::parse_certificate(&c.certificate_pem) {
        Ok(d) => d,
        Err(e) => return bad_request(e),
    };
    let (x5t, x5t_s256) = super::client_auth::thumbprints(&der);
    let mut tokens = app.tokens();
    let registered = tokens.certificates.entry(c.client_id.clone()).or_default();
    if !registered.contains(&der) {
        registered.push(der);
    }
    axum::Json(json!({
        "client_id": c.client_id,
        "x5t": x5t,
        "x5t#S256": x5t_s256,
    }))
    .into_response()
}
