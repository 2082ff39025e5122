//! Entra ID's token endpoint, v1 (`/{tenant}/oauth2/token`, `resource=`) and v2
//! (`/{tenant}/oauth2/v2.0/token`, `scope=`), with the grants the connector uses, and the bearer
//! check every sandbox API applies.

use std::collections::HashMap;

use axum::Form;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use serde_json::{Value, json};

use crate::app::App;
use crate::config::ReferralRole;

/// Who a token was issued to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Subject {
    /// App-only (client credentials).
    App { client_id: String },
    /// App+User (password or refresh-token grant).
    User {
        client_id: String,
        username: String,
        role: ReferralRole,
    },
}

#[derive(Debug, Clone)]
pub struct AccessGrant {
    pub subject: Subject,
    pub audience: String,
    pub expires_at: DateTime<Utc>,
}

#[derive(Debug, Clone)]
pub struct RefreshGrant {
    client_id: String,
    username: String,
    expires_at: DateTime<Utc>,
}

#[derive(Debug, Default)]
pub struct TokenStore {
    access: HashMap<String, AccessGrant>,
    refresh: HashMap<String, RefreshGrant>,
    /// Current passwords, changed through the control API to play an expired password.
    passwords: HashMap<String, String>,
}

impl TokenStore {
    pub fn clear(&mut self) {
        self.access.clear();
        self.refresh.clear();
        self.passwords.clear();
    }

    /// Changes a user's password and revokes their refresh tokens, as a password reset does.
    pub fn set_password(&mut self, username: &str, password: &str) {
        self.passwords
            .insert(username.to_ascii_lowercase(), password.to_string());
        self.refresh
            .retain(|_, g| !g.username.eq_ignore_ascii_case(username));
    }

    /// Expires every access token now, so the next call of each client gets a 401.
    pub fn expire_access_tokens(&mut self) {
        self.access.clear();
    }
}

/// Why a bearer token was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthFailure {
    Missing,
    Unknown,
    Expired,
    WrongAudience { got: String },
}

impl std::fmt::Display for AuthFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AuthFailure::Missing => write!(f, "No bearer token was provided."),
            AuthFailure::Unknown => write!(f, "The bearer token is not valid."),
            AuthFailure::Expired => write!(f, "The bearer token has expired."),
            AuthFailure::WrongAudience { got } => {
                write!(
                    f,
                    "The bearer token's audience {got} is not valid for this API."
                )
            }
        }
    }
}

impl App {
    /// Checks `Authorization: Bearer …` against issued tokens, their expiry on the sandbox
    /// clock, and the audiences the API accepts.
    pub fn authenticate(
        &self,
        headers: &HeaderMap,
        audiences: &[&str],
    ) -> Result<Subject, AuthFailure> {
        let token = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| {
                let (scheme, rest) = v.split_once(' ')?;
                scheme.eq_ignore_ascii_case("bearer").then(|| rest.trim())
            })
            .filter(|t| !t.is_empty())
            .ok_or(AuthFailure::Missing)?;
        let grant = self
            .tokens()
            .access
            .get(token)
            .cloned()
            .ok_or(AuthFailure::Unknown)?;
        if grant.expires_at <= self.clock.now() {
            return Err(AuthFailure::Expired);
        }
        if !audiences.iter().any(|a| audience_eq(a, &grant.audience)) {
            return Err(AuthFailure::WrongAudience {
                got: grant.audience,
            });
        }
        Ok(grant.subject)
    }

    fn issue(&self, subject: Subject, audience: &str) -> (String, i64) {
        let token = random_token();
        let lifetime = chrono::Duration::from_std(self.config.token_lifetime)
            .unwrap_or(chrono::Duration::hours(1));
        self.tokens().access.insert(
            token.clone(),
            AccessGrant {
                subject,
                audience: audience.to_string(),
                expires_at: self.clock.now() + lifetime,
            },
        );
        (token, lifetime.num_seconds())
    }

    fn issue_refresh(&self, client_id: &str, username: &str) -> String {
        let token = random_token();
        let lifetime = chrono::Duration::from_std(self.config.refresh_token_lifetime)
            .unwrap_or(chrono::Duration::days(90));
        self.tokens().refresh.insert(
            token.clone(),
            RefreshGrant {
                client_id: client_id.to_string(),
                username: username.to_string(),
                expires_at: self.clock.now() + lifetime,
            },
        );
        token
    }

    fn check_client(&self, form: &HashMap<String, String>) -> Result<String, AadError> {
        let client_id = form.get("client_id").cloned().unwrap_or_default();
        let known = self
            .config
            .clients
            .iter()
            .find(|c| c.client_id == client_id);
        match known {
            None => Err(aad_error(
                StatusCode::BAD_REQUEST,
                "unauthorized_client",
                700016,
                &format!(
                    "Application with identifier '{client_id}' was not found in the directory."
                ),
            )),
            Some(c) if form.get("client_secret").map(String::as_str) != Some(&c.client_secret) => {
                Err(aad_error(
                    StatusCode::UNAUTHORIZED,
                    "invalid_client",
                    7000215,
                    "Invalid client secret provided. Ensure the secret being sent in the request is the client secret value, not the client secret ID.",
                ))
            }
            Some(_) => Ok(client_id),
        }
    }

    fn check_user(&self, username: &str, password: &str) -> Option<ReferralRole> {
        let user = self
            .config
            .users
            .iter()
            .find(|u| u.username.eq_ignore_ascii_case(username))?;
        let tokens = self.tokens();
        let current = tokens
            .passwords
            .get(&username.to_ascii_lowercase())
            .map(String::as_str)
            .unwrap_or(&user.password);
        (current == password).then_some(user.role)
    }

    fn user_role(&self, username: &str) -> Option<ReferralRole> {
        self.config
            .users
            .iter()
            .find(|u| u.username.eq_ignore_ascii_case(username))
            .map(|u| u.role)
    }

    /// Audiences a token may be issued for: Partner Center's two, plus any other API the
    /// sandbox serves (added by the CRM simulators).
    fn known_audience(&self, audience: &str) -> bool {
        self.audiences().iter().any(|a| audience_eq(a, audience))
    }
}

fn audience_eq(a: &str, b: &str) -> bool {
    a.trim_end_matches('/')
        .eq_ignore_ascii_case(b.trim_end_matches('/'))
}

fn random_token() -> String {
    use base64::Engine;
    let bytes: [u8; 32] = rand::random();
    format!(
        "sandbox.{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    )
}

/// Entra's error body: `error`, `error_description` starting with the AADSTS code, `error_codes`.
#[derive(Debug)]
struct AadError {
    status: StatusCode,
    error: &'static str,
    code: u32,
    description: String,
}

fn aad_error(status: StatusCode, error: &'static str, code: u32, description: &str) -> AadError {
    AadError {
        status,
        error,
        code,
        description: description.to_string(),
    }
}

impl IntoResponse for AadError {
    fn into_response(self) -> Response {
        (
            self.status,
            axum::Json(json!({
                "error": self.error,
                "error_description": format!("AADSTS{}: {}", self.code, self.description),
                "error_codes": [self.code],
                "timestamp": chrono::Utc::now().format("%Y-%m-%d %H:%M:%SZ").to_string(),
                "trace_id": uuid::Uuid::new_v4(),
                "correlation_id": uuid::Uuid::new_v4(),
            })),
        )
            .into_response()
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Version {
    V1,
    V2,
}

pub async fn token_v1(
    State(app): State<App>,
    Path(_tenant): Path<String>,
    Form(form): Form<HashMap<String, String>>,
) -> Response {
    token(&app, Version::V1, &form).unwrap_or_else(IntoResponse::into_response)
}

pub async fn token_v2(
    State(app): State<App>,
    Path(_tenant): Path<String>,
    Form(form): Form<HashMap<String, String>>,
) -> Response {
    token(&app, Version::V2, &form).unwrap_or_else(IntoResponse::into_response)
}

fn token(
    app: &App,
    version: Version,
    form: &HashMap<String, String>,
) -> Result<Response, AadError> {
    let grant_type = form.get("grant_type").map(String::as_str).unwrap_or("");
    let audience = requested_audience(version, form)?;
    if !app.known_audience(&audience) {
        return Err(aad_error(
            StatusCode::BAD_REQUEST,
            "invalid_resource",
            500011,
            &format!("The resource principal named {audience} was not found in the tenant."),
        ));
    }
    let client_id = app.check_client(form)?;
    match grant_type {
        "password" => {
            let username = form.get("username").cloned().unwrap_or_default();
            let password = form.get("password").cloned().unwrap_or_default();
            let Some(role) = app.check_user(&username, &password) else {
                return Err(aad_error(
                    StatusCode::BAD_REQUEST,
                    "invalid_grant",
                    50126,
                    "Error validating credentials due to invalid username or password.",
                ));
            };
            Ok(user_tokens(
                app, version, &audience, &client_id, &username, role,
            ))
        }
        "refresh_token" => {
            let presented = form.get("refresh_token").cloned().unwrap_or_default();
            let grant = app.tokens().refresh.remove(&presented);
            let grant = match grant {
                Some(g) if g.client_id == client_id && g.expires_at > app.clock.now() => g,
                _ => {
                    return Err(aad_error(
                        StatusCode::BAD_REQUEST,
                        "invalid_grant",
                        700082,
                        "The refresh token has expired or is invalid.",
                    ));
                }
            };
            let Some(role) = app.user_role(&grant.username) else {
                return Err(aad_error(
                    StatusCode::BAD_REQUEST,
                    "invalid_grant",
                    50034,
                    "The user account does not exist.",
                ));
            };
            // A refresh token may be redeemed for another resource of the same tenant.
            Ok(user_tokens(
                app,
                version,
                &audience,
                &client_id,
                &grant.username,
                role,
            ))
        }
        "client_credentials" if version == Version::V2 => {
            let (access, expires_in) = app.issue(Subject::App { client_id }, &audience);
            Ok(token_response(
                app, version, &audience, access, expires_in, None,
            ))
        }
        other => Err(aad_error(
            StatusCode::BAD_REQUEST,
            "unsupported_grant_type",
            70003,
            &format!("The app requested an unsupported grant type '{other}'."),
        )),
    }
}

/// An App+User access token and a fresh refresh token (each redemption rotates it).
fn user_tokens(
    app: &App,
    version: Version,
    audience: &str,
    client_id: &str,
    username: &str,
    role: ReferralRole,
) -> Response {
    let subject = Subject::User {
        client_id: client_id.to_string(),
        username: username.to_string(),
        role,
    };
    let (access, expires_in) = app.issue(subject, audience);
    let refresh = app.issue_refresh(client_id, username);
    token_response(app, version, audience, access, expires_in, Some(refresh))
}

fn requested_audience(
    version: Version,
    form: &HashMap<String, String>,
) -> Result<String, AadError> {
    match version {
        Version::V1 => form
            .get("resource")
            .filter(|r| !r.is_empty())
            .cloned()
            .ok_or_else(|| {
                aad_error(
                    StatusCode::BAD_REQUEST,
                    "invalid_request",
                    50001,
                    "The request body must contain the following parameter: 'resource'.",
                )
            }),
        Version::V2 => {
            let scope = form.get("scope").cloned().unwrap_or_default();
            // `https://api.partner.microsoft.com/.default offline_access openid`: the resource is
            // the scope that names one; the OpenID scopes ride along.
            scope
                .split_whitespace()
                .find(|s| s.contains("://"))
                .map(|s| {
                    s.strip_suffix("/.default")
                        .or_else(|| s.rsplit_once('/').map(|(r, _)| r))
                        .unwrap_or(s)
                        .to_string()
                })
                .ok_or_else(|| {
                    aad_error(
                        StatusCode::BAD_REQUEST,
                        "invalid_scope",
                        70011,
                        &format!("The provided value for the input parameter 'scope' is not valid: '{scope}'."),
                    )
                })
        }
    }
}

fn token_response(
    app: &App,
    version: Version,
    audience: &str,
    access: String,
    expires_in: i64,
    refresh: Option<String>,
) -> Response {
    let mut body = match version {
        // v1 answers with numbers as strings and echoes the resource.
        Version::V1 => {
            let now = app.clock.now().timestamp();
            json!({
                "token_type": "Bearer",
                "scope": "user_impersonation",
                "expires_in": expires_in.to_string(),
                "ext_expires_in": expires_in.to_string(),
                "expires_on": (now + expires_in).to_string(),
                "not_before": now.to_string(),
                "resource": audience,
                "access_token": access,
            })
        }
        Version::V2 => json!({
            "token_type": "Bearer",
            "scope": format!("{}/.default", audience.trim_end_matches('/')),
            "expires_in": expires_in,
            "ext_expires_in": expires_in,
            "access_token": access,
        }),
    };
    if let (Some(r), Some(obj)) = (refresh, body.as_object_mut()) {
        obj.insert("refresh_token".into(), Value::String(r));
    }
    axum::Json(body).into_response()
}
