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

use super::{AadError, Form, SignIn, TokenRequest, field, invalid_grant, random_token, refusal};
use crate::app::App;

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
    app.registered_client(client_id)?;
    let (resource, scopes) = app.scope_resource(field(form, "scope"))?;
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

/// Polling the token endpoint with `grant_type=urn:ietf:params:oauth:grant-type:device_code`.
/// Without a client credential this is a public client flow: the app must allow it, and the
/// refresh token it yields is a public client's.
pub fn redeem(req: &TokenRequest<'_>) -> Result<Response, AadError> {
    let app = req.app;
    let client = req.client()?;
    client.require_credential_or_public_flows(StatusCode::BAD_REQUEST)?;
    let presented = req.required("device_code")?;
    let now = app.clock.now();
    let (scopes, username, role, audience) = {
        let mut tokens = app.tokens();
        let device = match tokens.devices.0.get_mut(presented) {
            Some(d) if d.client_id == client.id => d,
            _ => {
                return Err(refusal(
                    "bad_verification_code",
                    70000,
                    "The provided value for the input parameter 'device_code' is not valid.",
                ));
            }
        };
        let username = match &device.state {
            DeviceState::Redeemed => {
                return Err(invalid_grant(
                    70000,
                    "The provided grant is invalid or malformed: the device code has already been redeemed.",
                ));
            }
            DeviceState::Declined => {
                return Err(refusal(
                    "authorization_declined",
                    70000,
                    "The end user declined the authorization request.",
                ));
            }
            _ if device.expires_at <= now => {
                return Err(refusal(
                    "expired_token",
                    70020,
                    "The provided value for the input parameter 'device_code' is not valid. This device code has expired.",
                ));
            }
            DeviceState::Pending => {
                return Err(refusal(
                    "authorization_pending",
                    70016,
                    "OAuth 2.0 device flow error. Authorization is pending. Continue polling.",
                ));
            }
            DeviceState::Approved { username } => username.clone(),
        };
        let role = app.user_role(&username)?;
        let audience = req.audience(Some(&device.resource))?;
        device.state = DeviceState::Redeemed;
        (device.scopes.clone(), username, role, audience)
    };
    Ok(req.user_tokens(
        &audience,
        SignIn {
            client: &client,
            username: &username,
            role,
            amr: vec!["pwd".into(), "mfa".into()],
            scopes,
            nonce: None,
            renewal: false,
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
