//! The device authorization grant (RFC 8628): `POST /{tenant}/oauth2/v2.0/devicecode` hands out
//! a user code, the client polls the token endpoint with the device code, and a control call
//! plays the user who enters the code in a browser, approving or declining.

use std::collections::HashMap;

use axum::Form as AxumForm;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use rand::Rng;
use serde_json::json;

use super::jwt::ClientProof;
use super::{
    AadError, Endpoint, Form, SignIn, Version, aad_error, client_auth, field, random_token,
    split_scope, user_tokens,
};
use crate::app::App;
use crate::config::TENANT_ID;

pub const DEVICE_CODE_GRANT: &str = "urn:ietf:params:oauth:grant-type:device_code";

/// Where the user is told to go. The sandbox has no page there; the approve control call plays
/// the user.
pub const VERIFICATION_URI: &str = "https://microsoft.com/devicelogin";

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeviceState {
    Pending,
    Approved { username: String },
    Declined,
    Redeemed,
}

#[derive(Debug, Clone)]
pub struct DeviceAuth {
    client_id: String,
    pub user_code: String,
    resource: String,
    scopes: Vec<String>,
    pub expires_at: DateTime<Utc>,
    pub state: DeviceState,
}

/// Device codes by device code.
#[derive(Debug, Default)]
pub struct Devices(HashMap<String, DeviceAuth>);

impl Devices {
    pub fn clear(&mut self) {
        self.0.clear();
    }

    pub fn by_user_code(&mut self, user_code: &str) -> Option<&mut DeviceAuth> {
        self.0
            .values_mut()
            .find(|d| d.user_code.eq_ignore_ascii_case(user_code.trim()))
    }
}

/// Nine upper-case letters and digits, as Entra's user codes look.
fn user_code() -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
    let mut rng = rand::rng();
    (0..9)
        .map(|_| char::from(ALPHABET[rng.random_range(0..ALPHABET.len())]))
        .collect()
}

pub async fn devicecode(
    State(app): State<App>,
    Path(_tenant): Path<String>,
    AxumForm(form): AxumForm<Form>,
) -> Response {
    start(&app, &form).unwrap_or_else(IntoResponse::into_response)
}

fn start(app: &App, form: &Form) -> Result<Response, AadError> {
    let client_id = field(form, "client_id");
    if !app.config.clients.iter().any(|c| c.client_id == client_id) {
        return Err(aad_error(
            StatusCode::BAD_REQUEST,
            "unauthorized_client",
            700016,
            &format!(
                "Application with identifier '{client_id}' was not found in the directory '{TENANT_ID}'."
            ),
        ));
    }
    let scope = field(form, "scope");
    let (resource, scopes) = split_scope(scope);
    let Some(resource) = resource else {
        return Err(aad_error(
            StatusCode::BAD_REQUEST,
            "invalid_scope",
            70011,
            &format!(
                "The provided value for the input parameter 'scope' is not valid: '{scope}' names no resource; ask for '<resource>/.default'."
            ),
        ));
    };
    if !app.known_audience(&resource) {
        return Err(aad_error(
            StatusCode::BAD_REQUEST,
            "invalid_resource",
            500011,
            &format!(
                "The resource principal named {resource} was not found in the tenant named {TENANT_ID}."
            ),
        ));
    }
    let lifetime = chrono::Duration::from_std(app.config.device_code_lifetime)
        .unwrap_or(chrono::Duration::minutes(15));
    let device_code = random_token();
    let code = {
        let mut tokens = app.tokens();
        let mut code = user_code();
        while tokens.devices.by_user_code(&code).is_some() {
            code = user_code();
        }
        tokens.devices.0.insert(
            device_code.clone(),
            DeviceAuth {
                client_id: client_id.to_string(),
                user_code: code.clone(),
                resource,
                scopes,
                expires_at: app.clock.now() + lifetime,
                state: DeviceState::Pending,
            },
        );
        code
    };
    Ok(axum::Json(json!({
        "device_code": device_code,
        "user_code": code,
        "verification_uri": VERIFICATION_URI,
        "expires_in": lifetime.num_seconds(),
        "interval": app.entra_settings().device_code_interval,
        "message": format!(
            "To sign in, use a web browser to open the page {VERIFICATION_URI} and enter the code {code} to authenticate."
        ),
    }))
    .into_response())
}

fn device_error(error: &'static str, code: u32, description: &str) -> AadError {
    aad_error(StatusCode::BAD_REQUEST, error, code, description)
}

/// Polling the token endpoint with `grant_type=urn:ietf:params:oauth:grant-type:device_code`.
/// Without a client credential this is a public client flow: the app must allow it, and the
/// refresh token it yields is a public client's.
pub fn redeem(
    app: &App,
    version: Version,
    endpoint: &Endpoint,
    form: &Form,
) -> Result<Response, AadError> {
    let client = app.identify_client(form, endpoint)?;
    if client.proof == ClientProof::None && !client.public_client_flows {
        return Err(client_auth::missing_credential(StatusCode::BAD_REQUEST));
    }
    let presented = field(form, "device_code");
    if presented.is_empty() {
        return Err(aad_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            900144,
            "The request body must contain the following parameter: 'device_code'.",
        ));
    }
    let now = app.clock.now();
    let (device, username, role, audience) = {
        let mut tokens = app.tokens();
        let device = match tokens.devices.0.get_mut(presented) {
            Some(d) if d.client_id == client.id => d,
            _ => {
                return Err(device_error(
                    "bad_verification_code",
                    70000,
                    "The provided value for the input parameter 'device_code' is not valid.",
                ));
            }
        };
        let username = match &device.state {
            DeviceState::Redeemed => {
                return Err(device_error(
                    "invalid_grant",
                    70000,
                    "The provided grant is invalid or malformed: the device code has already been redeemed.",
                ));
            }
            DeviceState::Declined => {
                return Err(device_error(
                    "authorization_declined",
                    70000,
                    "The end user declined the authorization request.",
                ));
            }
            _ if device.expires_at <= now => {
                return Err(device_error(
                    "expired_token",
                    70020,
                    "The provided value for the input parameter 'device_code' is not valid. This device code has expired.",
                ));
            }
            DeviceState::Pending => {
                return Err(device_error(
                    "authorization_pending",
                    70016,
                    "OAuth 2.0 device flow error. Authorization is pending. Continue polling.",
                ));
            }
            DeviceState::Approved { username } => username.clone(),
        };
        let Some(role) = app.user_role(&username) else {
            return Err(device_error(
                "invalid_grant",
                50034,
                "The user account does not exist in the directory.",
            ));
        };
        let audience = app.resolve_audience(version, form, Some(&device.resource))?;
        device.state = DeviceState::Redeemed;
        (device.clone(), username, role, audience)
    };
    let offline = version == Version::V1 || device.scopes.iter().any(|s| s == "offline_access");
    let openid = version == Version::V1 || device.scopes.iter().any(|s| s == "openid");
    Ok(user_tokens(
        app,
        version,
        &audience,
        SignIn {
            client_id: &client.id,
            username: &username,
            role,
            amr: vec!["pwd".into(), "mfa".into()],
            proof: client.proof,
            scopes: device.scopes.clone(),
            nonce: None,
            refresh: offline,
            id_token: openid,
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_codes_are_nine_upper_case_letters_or_digits() {
        let c = user_code();
        assert_eq!(c.len(), 9);
        assert!(
            c.chars()
                .all(|ch| ch.is_ascii_uppercase() || ch.is_ascii_digit())
        );
    }
}
