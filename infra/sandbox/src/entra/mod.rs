//! Entra ID as the connector meets it: the token endpoint, v1 (`/{tenant}/oauth2/token`,
//! `resource=`) and v2 (`/{tenant}/oauth2/v2.0/token`, `scope=`); the authorize endpoint that
//! signs a user in interactively; the device authorization grant; client authentication by
//! secret or certificate; rotating refresh tokens; Conditional Access's MFA requirement; and the
//! bearer check every sandbox API applies.

mod authorize;
mod client_auth;
pub mod control;
mod device;
mod jwt;
mod refresh;

use std::collections::HashMap;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

pub use authorize::authorize;
pub use device::devicecode;

use crate::app::App;
use crate::config::{ReferralRole, RefreshRotation, SandboxConfig, TENANT_ID, UserIdentity};
use client_auth::Client;
use jwt::ClientProof;

/// A token request's form fields.
pub type Form = HashMap<String, String>;

fn field<'a>(form: &'a Form, name: &str) -> &'a str {
    form.get(name).map(String::as_str).unwrap_or("")
}

/// A form field the request must carry.
fn required<'a>(form: &'a Form, name: &str) -> Result<&'a str, AadError> {
    let value = field(form, name);
    if value.is_empty() {
        return Err(missing_parameter(name));
    }
    Ok(value)
}

/// Who a token was issued to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Subject {
    /// App-only (client credentials).
    App { client_id: String },
    /// App+User (a user's sign-in, or a refresh token from one).
    User {
        client_id: String,
        username: String,
        role: ReferralRole,
        /// How the user authenticated (`pwd`, `mfa`), as the token's `amr` claim says.
        amr: Vec<String>,
    },
}

#[derive(Debug, Clone)]
pub struct AccessGrant {
    pub subject: Subject,
    pub audience: String,
    pub expires_at: DateTime<Utc>,
}

/// The Entra settings that can change at run time (`/_sandbox/entra/settings`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Settings {
    pub refresh_rotation: RefreshRotation,
    pub sign_in_mfa: bool,
    pub partner_center_mfa: bool,
    /// Seconds.
    pub device_code_interval: u64,
}

impl Settings {
    fn from_config(config: &SandboxConfig) -> Settings {
        Settings {
            refresh_rotation: config.refresh_rotation,
            sign_in_mfa: config.sign_in_mfa,
            partner_center_mfa: config.partner_center_mfa,
            device_code_interval: config.device_code_interval.as_secs(),
        }
    }
}

#[derive(Debug)]
pub struct TokenStore {
    access: HashMap<String, AccessGrant>,
    refresh: refresh::RefreshTokens,
    codes: HashMap<String, authorize::AuthCode>,
    devices: device::Devices,
    assertions: client_auth::SeenAssertions,
    /// Current passwords, changed through the control API to play an expired password.
    passwords: HashMap<String, String>,
    /// Certificates registered through the control API, by client id.
    certificates: HashMap<String, Vec<Vec<u8>>>,
    settings: Settings,
}

impl TokenStore {
    pub fn new(config: &SandboxConfig) -> TokenStore {
        TokenStore {
            access: HashMap::new(),
            refresh: Default::default(),
            codes: HashMap::new(),
            devices: Default::default(),
            assertions: Default::default(),
            passwords: HashMap::new(),
            certificates: HashMap::new(),
            settings: Settings::from_config(config),
        }
    }

    /// Forgets every token, code and sign-in. Settings and registered certificates stay: they
    /// describe the directory and the app registration, not a sign-in.
    pub fn clear(&mut self) {
        self.access.clear();
        self.refresh.clear();
        self.codes.clear();
        self.devices.clear();
        self.assertions.clear();
        self.passwords.clear();
    }

    /// Changes a user's password. As Microsoft documents for refresh tokens, a password change
    /// revokes the tokens public clients hold; a confidential client's tokens survive it.
    pub fn set_password(&mut self, username: &str, password: &str, now: DateTime<Utc>) {
        self.passwords
            .insert(username.to_ascii_lowercase(), password.to_string());
        self.refresh.revoke_user(username, true, now);
    }

    /// Expires every access token now, so the next call of each client gets a 401.
    pub fn expire_access_tokens(&mut self) {
        self.access.clear();
    }

    fn client_certificates(&self, client_id: &str) -> Vec<Vec<u8>> {
        self.certificates
            .get(client_id)
            .cloned()
            .unwrap_or_default()
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

/// The sign-in a user token is issued for.
pub(crate) struct SignIn<'a> {
    client: &'a Client,
    username: &'a str,
    role: ReferralRole,
    amr: Vec<String>,
    /// The OpenID scopes asked for (`openid`, `offline_access`, `profile`).
    scopes: Vec<String>,
    nonce: Option<&'a str>,
    /// A refresh token's redemption, which hands out the next refresh token whatever the
    /// scopes ask for.
    renewal: bool,
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

    /// The Entra settings in force now.
    pub fn entra_settings(&self) -> Settings {
        self.tokens().settings.clone()
    }

    fn token_lifetime(&self) -> chrono::Duration {
        chrono::Duration::from_std(self.config.token_lifetime).unwrap_or(chrono::Duration::hours(1))
    }

    fn issue(
        &self,
        subject: Subject,
        audience: &str,
        proof: ClientProof,
    ) -> Result<(String, i64), AadError> {
        let lifetime = self.token_lifetime();
        let now = self.clock.now();
        let claims = jwt::access_claims(&subject, audience, proof, now, now + lifetime);
        let token = jwt::sign(&claims).ok_or_else(server_error)?;
        self.tokens().access.insert(
            token.clone(),
            AccessGrant {
                subject,
                audience: audience.to_string(),
                expires_at: now + lifetime,
            },
        );
        Ok((token, lifetime.num_seconds()))
    }

    fn issue_refresh(&self, new: refresh::Session) -> String {
        let token = random_token();
        let lifetime = chrono::Duration::from_std(self.config.refresh_token_lifetime)
            .unwrap_or(chrono::Duration::days(90));
        let now = self.clock.now();
        self.tokens().refresh.insert(&token, new, now, lifetime);
        token
    }

    /// The directory's user of that name; user names are case-insensitive.
    pub(crate) fn user(&self, username: &str) -> Option<&UserIdentity> {
        self.config
            .users
            .iter()
            .find(|u| u.username.eq_ignore_ascii_case(username))
    }

    fn check_user(&self, username: &str, password: &str) -> Option<(String, ReferralRole)> {
        let user = self.user(username)?;
        let tokens = self.tokens();
        let current = tokens
            .passwords
            .get(&username.to_ascii_lowercase())
            .map(String::as_str)
            .unwrap_or(&user.password);
        (current == password).then(|| (user.username.clone(), user.role))
    }

    /// The role of the user a code, device code or refresh token was issued for.
    fn user_role(&self, username: &str) -> Result<ReferralRole, AadError> {
        self.user(username).map(|u| u.role).ok_or_else(|| {
            invalid_grant(50034, "The user account does not exist in the directory.")
        })
    }

    /// Audiences a token may be issued for: Partner Center's two, plus any other API the
    /// sandbox serves (added by the CRM simulators).
    fn known_audience(&self, audience: &str) -> bool {
        self.audiences().iter().any(|a| audience_eq(a, audience))
    }

    /// A resource a sign-in asks for, checked to be one of the tenant's.
    fn check_resource(&self, resource: &str) -> Result<(), AadError> {
        if self.known_audience(resource) {
            return Ok(());
        }
        Err(refusal(
            "invalid_resource",
            500011,
            &format!(
                "The resource principal named {resource} was not found in the tenant named {TENANT_ID}."
            ),
        ))
    }

    /// The resource a sign-in's v2 scope names, checked to be one of the tenant's, and the
    /// OpenID scopes beside it.
    fn scope_resource(&self, scope: &str) -> Result<(String, Vec<String>), AadError> {
        let (resource, scopes) = split_scope(scope);
        let Some(resource) = resource else {
            return Err(refusal(
                "invalid_scope",
                70011,
                &format!(
                    "The provided value for the input parameter 'scope' is not valid: '{scope}' names no resource; ask for '<resource>/.default'."
                ),
            ));
        };
        self.check_resource(&resource)?;
        Ok((resource, scopes))
    }
}

fn audience_eq(a: &str, b: &str) -> bool {
    a.trim_end_matches('/')
        .eq_ignore_ascii_case(b.trim_end_matches('/'))
}

/// `https://api.partner.microsoft.com/.default offline_access openid`: the resource is the scope
/// that names one; the OpenID scopes ride along.
fn split_scope(scope: &str) -> (Option<String>, Vec<String>) {
    let mut resource = None;
    let mut others = Vec::new();
    for s in scope.split_whitespace() {
        if s.contains("://") {
            if resource.is_none() {
                resource = Some(
                    s.strip_suffix("/.default")
                        .or_else(|| s.rsplit_once('/').map(|(r, _)| r))
                        .unwrap_or(s)
                        .to_string(),
                );
            }
        } else {
            others.push(s.to_string());
        }
    }
    (resource, others)
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
pub struct AadError {
    status: StatusCode,
    error: &'static str,
    codes: Vec<u32>,
    description: String,
    /// `suberror`, as Conditional Access answers carry (`basic_action`).
    suberror: Option<&'static str>,
}

fn aad_error(status: StatusCode, error: &'static str, code: u32, description: &str) -> AadError {
    AadError {
        status,
        error,
        codes: vec![code],
        description: description.to_string(),
        suberror: None,
    }
}

/// A 400, as Entra refuses most requests.
fn refusal(error: &'static str, code: u32, description: &str) -> AadError {
    aad_error(StatusCode::BAD_REQUEST, error, code, description)
}

fn invalid_grant(code: u32, description: &str) -> AadError {
    refusal("invalid_grant", code, description)
}

fn missing_parameter(name: &str) -> AadError {
    refusal(
        "invalid_request",
        900144,
        &format!("The request body must contain the following parameter: '{name}'."),
    )
}

fn unknown_client(client_id: &str) -> AadError {
    refusal(
        "unauthorized_client",
        700016,
        &format!(
            "Application with identifier '{client_id}' was not found in the directory '{TENANT_ID}'."
        ),
    )
}

fn server_error() -> AadError {
    aad_error(
        StatusCode::INTERNAL_SERVER_ERROR,
        "server_error",
        90033,
        "A transient error has occurred. Please try again.",
    )
}

impl AadError {
    fn first_code(&self) -> u32 {
        self.codes.first().copied().unwrap_or(0)
    }

    /// `error_description`: the description led by its AADSTS code.
    fn full_description(&self) -> String {
        format!("AADSTS{}: {}", self.first_code(), self.description)
    }

    fn error_uri(&self) -> String {
        format!(
            "https://login.microsoftonline.com/error?code={}",
            self.first_code()
        )
    }
}

impl IntoResponse for AadError {
    fn into_response(self) -> Response {
        let mut body = json!({
            "error": self.error,
            "error_description": self.full_description(),
            "error_codes": self.codes,
            "timestamp": chrono::Utc::now().format("%Y-%m-%d %H:%M:%SZ").to_string(),
            "trace_id": uuid::Uuid::new_v4(),
            "correlation_id": uuid::Uuid::new_v4(),
            "error_uri": self.error_uri(),
        });
        if let (Some(sub), Some(obj)) = (self.suberror, body.as_object_mut()) {
            obj.insert("suberror".into(), json!(sub));
        }
        (self.status, axum::Json(body)).into_response()
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Version {
    V1,
    V2,
}

impl Version {
    /// The version of the endpoint a request came to, told apart as Entra's are: v2's live
    /// under `/oauth2/v2.0/`, v1's straight under `/oauth2/`.
    fn of(uri: &Uri) -> Version {
        if uri.path().contains("/oauth2/v2.0/") {
            Version::V2
        } else {
            Version::V1
        }
    }
}

/// The token endpoint a request came to: a client assertion's `aud` must name it.
#[derive(Debug, Clone)]
pub struct Endpoint {
    tenant: String,
    path: String,
}

/// The token endpoint, v1 (`/{tenant}/oauth2/token`) and v2 (`/{tenant}/oauth2/v2.0/token`).
pub async fn token(
    State(app): State<App>,
    Path(tenant): Path<String>,
    uri: Uri,
    axum::Form(form): axum::Form<Form>,
) -> Response {
    let endpoint = Endpoint {
        tenant,
        path: uri.path().to_string(),
    };
    let req = TokenRequest {
        app: &app,
        version: Version::of(&uri),
        endpoint,
        form,
    };
    grant(&req).unwrap_or_else(IntoResponse::into_response)
}

/// A token request, as every grant reads it.
pub(crate) struct TokenRequest<'a> {
    app: &'a App,
    version: Version,
    endpoint: Endpoint,
    form: Form,
}

impl TokenRequest<'_> {
    fn field(&self, name: &str) -> &str {
        field(&self.form, name)
    }

    fn required(&self, name: &str) -> Result<&str, AadError> {
        required(&self.form, name)
    }

    /// The client that sent the request, and how it proved it.
    fn client(&self) -> Result<Client, AadError> {
        self.app.identify_client(&self.form, &self.endpoint)
    }

    /// The resource a token request asks for (`resource=` on v1, the resource scope on v2), or
    /// `fallback` (the one the code or refresh token was issued for) when it names none.
    fn audience(&self, fallback: Option<&str>) -> Result<String, AadError> {
        let asked = match self.version {
            Version::V1 => Some(self.field("resource"))
                .filter(|r| !r.is_empty())
                .map(str::to_string),
            Version::V2 => split_scope(self.field("scope")).0,
        };
        let Some(audience) = asked.or_else(|| fallback.map(str::to_string)) else {
            return Err(match self.version {
                Version::V1 => refusal(
                    "invalid_request",
                    50001,
                    "The request body must contain the following parameter: 'resource'.",
                ),
                Version::V2 => refusal(
                    "invalid_scope",
                    70011,
                    &format!(
                        "The provided value for the input parameter 'scope' is not valid: '{}'.",
                        self.field("scope")
                    ),
                ),
            });
        };
        if !self.app.known_audience(&audience) {
            return Err(refusal(
                "invalid_resource",
                500011,
                &format!("The resource principal named {audience} was not found in the tenant."),
            ));
        }
        Ok(audience)
    }
}

fn grant(req: &TokenRequest<'_>) -> Result<Response, AadError> {
    match req.field("grant_type") {
        "password" => password(req),
        "refresh_token" => refresh::redeem(req),
        "authorization_code" => authorize::redeem(req),
        device::DEVICE_CODE_GRANT => device::redeem(req),
        "client_credentials" if req.version == Version::V2 => {
            let audience = req.audience(None)?;
            let client = req.client()?;
            client.require_credential()?;
            let (access, expires_in) = req.app.issue(
                Subject::App {
                    client_id: client.id,
                },
                &audience,
                client.proof,
            )?;
            Ok(req.token_response(
                &audience,
                &[],
                Issued {
                    access,
                    expires_in,
                    refresh: None,
                    id_token: None,
                },
            ))
        }
        other => Err(refusal(
            "unsupported_grant_type",
            70003,
            &format!("The app requested an unsupported grant type '{other}'."),
        )),
    }
}

/// The resource owner password grant. Entra checks the password first and Conditional Access
/// after, so a wrong password is reported as such even where MFA is required.
fn password(req: &TokenRequest<'_>) -> Result<Response, AadError> {
    let app = req.app;
    let audience = req.audience(None)?;
    let client = req.client()?;
    client.require_credential_or_public_flows(StatusCode::UNAUTHORIZED)?;
    let Some((username, role)) = app.check_user(req.field("username"), req.field("password"))
    else {
        return Err(invalid_grant(
            50126,
            "Error validating credentials due to invalid username or password.",
        ));
    };
    if app.entra_settings().sign_in_mfa {
        let mut e = invalid_grant(
            50076,
            &format!(
                "Due to a configuration change made by your administrator, or because you moved to a new location, you must use multi-factor authentication to access '{audience}'."
            ),
        );
        e.suberror = Some("basic_action");
        return Err(e);
    }
    Ok(req.user_tokens(
        &audience,
        SignIn {
            client: &client,
            username: &username,
            role,
            amr: vec!["pwd".into()],
            scopes: split_scope(req.field("scope")).1,
            nonce: None,
            renewal: false,
        },
    ))
}

/// What a token answer hands out.
struct Issued {
    access: String,
    expires_in: i64,
    refresh: Option<String>,
    id_token: Option<String>,
}

impl TokenRequest<'_> {
    /// An App+User access token, with a new refresh token and an id token when the sign-in asked
    /// for them: v1 answers both whatever the scopes, v2 those `offline_access` and `openid` ask for.
    fn user_tokens(&self, audience: &str, s: SignIn<'_>) -> Response {
        let (app, version) = (self.app, self.version);
        let asked = |scope: &str| version == Version::V1 || s.scopes.iter().any(|x| x == scope);
        let subject = Subject::User {
            client_id: s.client.id.clone(),
            username: s.username.to_string(),
            role: s.role,
            amr: s.amr.clone(),
        };
        let (access, expires_in) = match app.issue(subject, audience, s.client.proof) {
            Ok(t) => t,
            Err(e) => return e.into_response(),
        };
        let refresh = (s.renewal || asked("offline_access")).then(|| {
            app.issue_refresh(refresh::Session {
                client_id: s.client.id.clone(),
                username: s.username.to_string(),
                amr: s.amr.clone(),
                public_client: s.client.proof == ClientProof::None,
                scopes: s.scopes.clone(),
                resource: audience.to_string(),
            })
        });
        let id_token = if asked("openid") {
            let now = app.clock.now();
            let claims = jwt::id_claims(&jwt::IdToken {
                v1: version == Version::V1,
                client_id: &s.client.id,
                username: s.username,
                amr: &s.amr,
                nonce: s.nonce,
                issued: now,
                expires: now + app.token_lifetime(),
            });
            match jwt::sign(&claims) {
                Some(t) => Some(t),
                None => return server_error().into_response(),
            }
        } else {
            None
        };
        self.token_response(
            audience,
            &s.scopes,
            Issued {
                access,
                expires_in,
                refresh,
                id_token,
            },
        )
    }

    fn token_response(&self, audience: &str, scopes: &[String], issued: Issued) -> Response {
        let mut body = match self.version {
            // v1 answers with numbers as strings and echoes the resource.
            Version::V1 => {
                let now = self.app.clock.now().timestamp();
                json!({
                    "token_type": "Bearer",
                    "scope": "user_impersonation",
                    "expires_in": issued.expires_in.to_string(),
                    "ext_expires_in": issued.expires_in.to_string(),
                    "expires_on": (now + issued.expires_in).to_string(),
                    "not_before": now.to_string(),
                    "resource": audience,
                    "access_token": issued.access,
                })
            }
            Version::V2 => {
                // The granted scopes: the resource's, then the OpenID ones that were asked for.
                let mut granted = vec![format!("{}/.default", audience.trim_end_matches('/'))];
                granted.extend(
                    scopes
                        .iter()
                        .filter(|s| {
                            matches!(
                                s.as_str(),
                                "openid" | "profile" | "email" | "offline_access"
                            )
                        })
                        .cloned(),
                );
                json!({
                    "token_type": "Bearer",
                    "scope": granted.join(" "),
                    "expires_in": issued.expires_in,
                    "ext_expires_in": issued.expires_in,
                    "access_token": issued.access,
                })
            }
        };
        if let Some(obj) = body.as_object_mut() {
            if let Some(r) = issued.refresh {
                obj.insert("refresh_token".into(), Value::String(r));
            }
            if let Some(t) = issued.id_token {
                obj.insert("id_token".into(), Value::String(t));
            }
        }
        axum::Json(body).into_response()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_resource_is_the_scope_that_names_one() {
        let (r, rest) =
            split_scope("https://api.partner.microsoft.com/.default offline_access openid");
        assert_eq!(r.as_deref(), Some("https://api.partner.microsoft.com"));
        assert_eq!(rest, vec!["offline_access", "openid"]);
        let (r, _) = split_scope("https://api.partner.microsoft.com/user_impersonation");
        assert_eq!(r.as_deref(), Some("https://api.partner.microsoft.com"));
        assert_eq!(split_scope("openid").0, None);
    }
}
