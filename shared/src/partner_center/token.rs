//! App+User access tokens for the Referrals API from Entra ID's v1 token endpoint
//! (`POST {authority}/{tenant}/oauth2/token`, `resource=`), the only kind of token the Referrals
//! API accepts.
//!
//! A token is cached until shortly before it expires, and every caller waits on the same refresh,
//! so a burst of calls costs one token request. Each redemption of a refresh token hands back a
//! new one: the [`UserSession`] keeps the newest in memory for every audience and in its
//! [`RefreshTokenStore`] for the next process, and when Entra refuses the one it holds it looks
//! in the store for a newer one (another process rotated it, or the admin signed in again).

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;
use tokio::sync::Mutex;
use tokio::time::Instant;

use super::refresh_store::RefreshTokenStore;
use super::{AuthFailure, PartnerCenterError, PcResult};
use crate::entra::{
    ClientCredential, CredentialError, EntraError, MFA_REQUIRED_CODES, PUBLIC_CLIENT_CODE,
    TokenClaims,
};

/// Entra ID's public-cloud authority.
pub const DEFAULT_AUTHORITY_URL: &str = "https://login.microsoftonline.com";
/// The multi-tenant authority Partner Center's documentation uses for the Referrals API.
pub const DEFAULT_TENANT: &str = "common";
/// The token audience of the Referrals API.
pub const REFERRALS_RESOURCE: &str = "https://api.partner.microsoft.com";

/// A token is renewed this long before it expires at most, so a call never starts with a token
/// about to lapse mid-flight.
const MAX_RENEWAL_MARGIN: Duration = Duration::from_secs(300);
/// Used when Entra leaves `expires_in` out or sends something unreadable: short enough that a
/// wrong guess costs little, and a 401 renews the token anyway.
const FALLBACK_LIFETIME: Duration = Duration::from_secs(600);
/// How much of Entra's error description goes into an error message.
const MAX_DESCRIPTION_CHARS: usize = 300;

pub use crate::secret::Secret;

/// How the connector signs in as the Partner Center user (Referral Admin) it acts for.
#[derive(Debug, Clone)]
pub enum UserCredential {
    /// The resource-owner password grant Microsoft documents for the Referrals API. It cannot
    /// pass MFA, which Partner Center enforces on App+User calls since 1 April 2026: only for
    /// tenants (or stand-ins) that do not ask for MFA.
    Password { username: String, password: Secret },
    /// A refresh token from an interactive sign-in (`cosell auth login`).
    RefreshToken(Secret),
}

/// Where and how to get Referrals API tokens.
#[derive(Debug, Clone)]
pub struct PartnerCenterAuth {
    /// Entra ID's authority, without the tenant (default [`DEFAULT_AUTHORITY_URL`]).
    pub authority_url: String,
    /// Tenant id or domain, or `common` (default [`DEFAULT_TENANT`]).
    pub tenant: String,
    /// The app registration with delegated Partner Center permissions.
    pub client_id: String,
    /// The app's client secret or certificate.
    pub client_credential: ClientCredential,
    pub credential: UserCredential,
    /// The token audience (default [`REFERRALS_RESOURCE`]).
    pub resource: String,
}

impl PartnerCenterAuth {
    /// The documented public-cloud defaults for everything but the app and the user.
    pub fn new(
        client_id: impl Into<String>,
        client_credential: impl Into<ClientCredential>,
        credential: UserCredential,
    ) -> PartnerCenterAuth {
        PartnerCenterAuth {
            authority_url: DEFAULT_AUTHORITY_URL.to_string(),
            tenant: DEFAULT_TENANT.to_string(),
            client_id: client_id.into(),
            client_credential: client_credential.into(),
            credential,
            resource: REFERRALS_RESOURCE.to_string(),
        }
    }

    /// `{authority}/{tenant}/oauth2/token`, checked to be an absolute http(s) URL.
    pub fn token_url(&self) -> Result<url::Url, PartnerCenterConfigError> {
        let raw = format!(
            "{}/{}/oauth2/token",
            self.authority_url.trim_end_matches('/'),
            self.tenant.trim_matches('/')
        );
        parse_http_url("authority_url", &raw)
    }
}

/// A setting of the Partner Center client that cannot work, named so an operator can fix it.
#[derive(Debug, thiserror::Error)]
pub enum PartnerCenterConfigError {
    #[error("{setting} '{value}' is not an absolute http(s) URL: {reason}")]
    InvalidUrl {
        setting: &'static str,
        value: String,
        reason: String,
    },
    #[error("cannot build the HTTP client: {0}")]
    Http(#[from] reqwest::Error),
    #[error("the client certificate: {0}")]
    Credential(#[from] CredentialError),
}

pub(crate) fn parse_http_url(
    setting: &'static str,
    raw: &str,
) -> Result<url::Url, PartnerCenterConfigError> {
    let invalid = |reason: String| PartnerCenterConfigError::InvalidUrl {
        setting,
        value: raw.to_string(),
        reason,
    };
    let url = url::Url::parse(raw).map_err(|e| invalid(e.to_string()))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(invalid(format!("the scheme is {}", url.scheme())));
    }
    Ok(url)
}

/// An access token for one call. `Debug` prints `***`.
#[derive(Clone)]
pub struct AccessToken {
    value: Secret,
    /// Tells a token that was refused apart from one obtained since by another caller.
    serial: u64,
    /// Whether the token carries the MFA claim, when it says.
    mfa: Option<bool>,
}

impl AccessToken {
    /// The bearer value to send.
    pub fn secret(&self) -> &str {
        self.value.expose()
    }

    /// Whether the token carries Microsoft's MFA claim (`amr` contains `mfa`); `None` when the
    /// token is not a JWT or says nothing about how the user signed in.
    pub fn mfa(&self) -> Option<bool> {
        self.mfa
    }

    /// What the token says about who it was issued to.
    pub fn claims(&self) -> Option<TokenClaims> {
        TokenClaims::read(self.value.expose())
    }
}

impl fmt::Debug for AccessToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "AccessToken(#{} ***)", self.serial)
    }
}

struct Cached {
    token: AccessToken,
    renew_at: Instant,
}

struct SessionState {
    /// The newest refresh token: the configured one at first, then each rotated one.
    refresh_token: Option<Secret>,
    /// The token the store held when this process last read or wrote it: the only one it may
    /// replace there.
    stored: Option<Secret>,
    /// The refresh token came from a public-client sign-in (the device code flow), so it is
    /// redeemed without the app's credential.
    public_client: bool,
}

/// The Referral admin's sign-in, shared by the tokens for each audience the connector calls
/// (the Referrals API and the Webhooks API), so one refresh-token chain serves both.
pub struct UserSession {
    http: reqwest::Client,
    auth: PartnerCenterAuth,
    token_url: url::Url,
    store: Option<Arc<dyn RefreshTokenStore>>,
    state: Mutex<SessionState>,
}

impl fmt::Debug for UserSession {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UserSession")
            .field("token_url", &self.token_url.as_str())
            .field("client_id", &self.auth.client_id)
            .field("store", &self.store)
            .finish_non_exhaustive()
    }
}

#[derive(Deserialize)]
struct TokenResponse {
    access_token: String,
    /// v1 sends numbers as strings, v2 as numbers.
    #[serde(default)]
    expires_in: Option<serde_json::Value>,
    #[serde(default)]
    refresh_token: Option<String>,
}

/// A refused token request, and whether Entra said the token belongs to a public client.
struct Refusal {
    error: PartnerCenterError,
    public_client: bool,
}

impl From<PartnerCenterError> for Refusal {
    fn from(error: PartnerCenterError) -> Refusal {
        Refusal {
            error,
            public_client: false,
        }
    }
}

enum Grant<'a> {
    Password {
        username: &'a str,
        password: &'a Secret,
    },
    Refresh(&'a Secret),
}

impl UserSession {
    /// `store`, when given, is where rotated refresh tokens are kept for the next process and
    /// where a newer one is looked for when Entra refuses the one held. `http` should carry the
    /// connector's timeout; it is shared with the API calls.
    pub fn new(
        auth: PartnerCenterAuth,
        http: reqwest::Client,
        store: Option<Arc<dyn RefreshTokenStore>>,
    ) -> Result<Arc<UserSession>, PartnerCenterConfigError> {
        let token_url = auth.token_url()?;
        let refresh_token = match &auth.credential {
            UserCredential::RefreshToken(t) => Some(t.clone()),
            UserCredential::Password { username, .. } => {
                tracing::warn!(
                    %username,
                    "Partner Center is configured with the password grant, which cannot pass multifactor authentication: Partner Center refuses App+User calls without MFA since 1 April 2026. Sign the Referral admin in with `cosell auth login` and drop COSELL_PC_USERNAME/COSELL_PC_PASSWORD"
                );
                None
            }
        };
        Ok(Arc::new(UserSession {
            http,
            auth,
            token_url,
            store,
            state: Mutex::new(SessionState {
                stored: refresh_token.clone(),
                refresh_token,
                public_client: false,
            }),
        }))
    }

    /// A fresh access token for `resource`, rotating the refresh token.
    async fn token_for(&self, resource: &str) -> PcResult<TokenResponse> {
        let mut state = self.state.lock().await;
        let response = match (&state.refresh_token.clone(), &self.auth.credential) {
            (Some(refresh), UserCredential::Password { username, password }) => {
                // The refresh token a password grant returned spares sending the password
                // again; when it has been revoked, the password still works.
                match self.redeem(&mut state, refresh, resource).await {
                    Err(PartnerCenterError::Auth { .. }) => self
                        .request(Grant::Password { username, password }, resource, true)
                        .await
                        .map_err(|r| r.error),
                    other => other,
                }
            }
            (None, UserCredential::Password { username, password }) => self
                .request(Grant::Password { username, password }, resource, true)
                .await
                .map_err(|r| r.error),
            (Some(refresh), UserCredential::RefreshToken(_)) => {
                match self.redeem(&mut state, refresh, resource).await {
                    Err(
                        e @ PartnerCenterError::Auth {
                            kind: AuthFailure::SignInAgain,
                            ..
                        },
                    ) => {
                        self.retry_with_stored(&mut state, refresh, resource, e)
                            .await
                    }
                    other => other,
                }
            }
            (None, UserCredential::RefreshToken(configured)) => {
                self.redeem(&mut state, configured, resource).await
            }
        }?;
        if let Some(rotated) = response.refresh_token.as_deref().filter(|t| !t.is_empty()) {
            self.keep(&mut state, Secret::new(rotated)).await;
        }
        Ok(response)
    }

    /// Entra refused `refused`: when the store holds another token (a newer sign-in, or a
    /// rotation by another process), that one is tried before giving up.
    async fn retry_with_stored(
        &self,
        state: &mut SessionState,
        refused: &Secret,
        resource: &str,
        error: PartnerCenterError,
    ) -> PcResult<TokenResponse> {
        let Some(store) = &self.store else {
            return Err(error);
        };
        let stored = match store.load().await {
            Ok(Some(stored)) if &stored.token != refused => stored.token,
            Ok(_) => return Err(error),
            Err(e) => {
                tracing::warn!(error = %e, "cannot look for a newer refresh token");
                return Err(error);
            }
        };
        tracing::info!(place = %store.place(), "Entra refused the refresh token in use; trying the one stored since");
        state.refresh_token = Some(stored.clone());
        state.stored = Some(stored.clone());
        // A new sign-in may have been made with either flow.
        state.public_client = false;
        self.redeem(state, &stored, resource).await
    }

    /// Redeems a refresh token, without the app's credential when it is a public-client token.
    async fn redeem(
        &self,
        state: &mut SessionState,
        refresh: &Secret,
        resource: &str,
    ) -> PcResult<TokenResponse> {
        match self
            .request(Grant::Refresh(refresh), resource, !state.public_client)
            .await
        {
            Err(Refusal {
                public_client: true,
                ..
            }) if !state.public_client => {
                state.public_client = true;
                self.request(Grant::Refresh(refresh), resource, false)
                    .await
                    .map_err(|r| r.error)
            }
            other => other.map_err(|r| r.error),
        }
    }

    /// Keeps a rotated refresh token in memory, and in the store while the store still holds
    /// the one this process started from.
    async fn keep(&self, state: &mut SessionState, rotated: Secret) {
        state.refresh_token = Some(rotated.clone());
        let Some(store) = &self.store else { return };
        if matches!(self.auth.credential, UserCredential::Password { .. }) {
            return;
        }
        let Some(expected) = state.stored.clone() else {
            return;
        };
        match store.replace(&expected, &rotated).await {
            Ok(true) => {
                state.stored = Some(rotated);
                tracing::debug!(place = %store.place(), "kept the rotated refresh token");
            }
            Ok(false) => {
                tracing::info!(place = %store.place(), "the stored refresh token is newer than the one this process started from (a new sign-in or another process); it is left as it is");
            }
            Err(e) => {
                tracing::warn!(error = %e, "the rotated refresh token is kept in memory only; the next process starts from the stored one");
            }
        }
    }

    async fn request(
        &self,
        grant: Grant<'_>,
        resource: &str,
        with_client_credential: bool,
    ) -> Result<TokenResponse, Refusal> {
        let auth = &self.auth;
        let mut form: Vec<(&str, String)> = vec![
            ("client_id", auth.client_id.clone()),
            ("resource", resource.to_string()),
        ];
        if with_client_credential {
            let fields = auth
                .client_credential
                .form_fields(&auth.client_id, self.token_url.as_str())
                .map_err(|e| PartnerCenterError::Auth {
                    kind: AuthFailure::Credentials,
                    message: e.to_string(),
                })?;
            form.extend(fields);
        }
        let (who, password_grant) = match &grant {
            Grant::Password { username, password } => {
                form.extend([
                    ("grant_type", "password".to_string()),
                    ("scope", "openid".to_string()),
                    ("username", username.to_string()),
                    ("password", password.expose().to_string()),
                ]);
                (format!("user {username}"), true)
            }
            Grant::Refresh(token) => {
                form.extend([
                    ("grant_type", "refresh_token".to_string()),
                    ("refresh_token", token.expose().to_string()),
                ]);
                ("the refresh token".to_string(), false)
            }
        };
        let started = std::time::Instant::now();
        let sent = self
            .http
            .post(self.token_url.clone())
            .header(reqwest::header::ACCEPT, "application/json")
            .form(&form)
            .send()
            .await;
        crate::metrics::api_call(
            crate::metrics::Api::EntraId,
            started,
            sent.as_ref().ok().map(|r| r.status().as_u16()),
        );
        let response = sent.map_err(|e| PartnerCenterError::Transient {
            status: None,
            retry_after: None,
            message: format!("cannot reach Entra ID at {}: {e}", self.token_url),
        })?;
        let status = response.status();
        let retry_after = crate::http::retry_after(response.headers());
        let body = response
            .bytes()
            .await
            .map_err(|e| PartnerCenterError::Transient {
                status: Some(status.as_u16()),
                retry_after: None,
                message: format!("Entra ID's token response was cut short: {e}"),
            })?;
        if status.is_success() {
            return serde_json::from_slice::<TokenResponse>(&body).map_err(|e| {
                PartnerCenterError::Transient {
                    status: Some(status.as_u16()),
                    retry_after: None,
                    message: format!("Entra ID's token response is not readable: {e}"),
                }
                .into()
            });
        }
        let error: EntraError = serde_json::from_slice(&body).unwrap_or_default();
        let code = error.code();
        let detail = self.describe(&error);
        if status.as_u16() == 429
            || status.as_u16() == 408
            || status.is_server_error()
            || code == "temporarily_unavailable"
        {
            return Err(PartnerCenterError::Transient {
                status: Some(status.as_u16()),
                retry_after,
                message: format!("Entra ID could not issue a token for {who}: {code} ({detail})"),
            }
            .into());
        }
        let client = &auth.client_id;
        let (kind, message) = if MFA_REQUIRED_CODES.iter().any(|c| error.has_code(*c))
            && password_grant
        {
            (
                AuthFailure::PasswordGrantMfa,
                format!(
                    "the password grant cannot pass multifactor authentication, which Entra requires for {who}: sign the Referral admin in with `cosell auth login` instead (Entra: {detail})"
                ),
            )
        } else if code == "invalid_grant" && !password_grant {
            (
                AuthFailure::SignInAgain,
                format!(
                    "the Referral admin's refresh token expired or was revoked: the Referral admin must sign in again: `cosell auth login` (Entra: {code}, {detail})"
                ),
            )
        } else {
            (
                AuthFailure::Credentials,
                format!("Entra ID refused a token for {who} (client {client}): {code} ({detail})"),
            )
        };
        Err(Refusal {
            error: PartnerCenterError::Auth { kind, message },
            public_client: error.has_code(PUBLIC_CLIENT_CODE),
        })
    }

    fn describe(&self, error: &EntraError) -> String {
        let mut secrets: Vec<&str> = Vec::new();
        if let Some(s) = self.auth.client_credential.secret() {
            secrets.push(s.expose());
        }
        match &self.auth.credential {
            UserCredential::Password { password, .. } => secrets.push(password.expose()),
            UserCredential::RefreshToken(t) => secrets.push(t.expose()),
        }
        error.summary(MAX_DESCRIPTION_CHARS, &secrets)
    }
}

/// Gets, caches and renews the access tokens of one audience for the session's user.
pub struct TokenProvider {
    session: Arc<UserSession>,
    resource: String,
    state: Mutex<AccessState>,
}

struct AccessState {
    current: Option<Cached>,
    serial: u64,
}

impl fmt::Debug for TokenProvider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenProvider")
            .field("resource", &self.resource)
            .field("session", &self.session)
            .finish_non_exhaustive()
    }
}

impl TokenProvider {
    /// Tokens for `auth.resource` from a session of its own, without a store.
    pub fn new(
        auth: PartnerCenterAuth,
        http: reqwest::Client,
    ) -> Result<TokenProvider, PartnerCenterConfigError> {
        let resource = auth.resource.clone();
        Ok(TokenProvider::for_resource(
            UserSession::new(auth, http, None)?,
            resource,
        ))
    }

    /// Tokens for `resource` from `session`.
    pub fn for_resource(session: Arc<UserSession>, resource: impl Into<String>) -> TokenProvider {
        TokenProvider {
            session,
            resource: resource.into(),
            state: Mutex::new(AccessState {
                current: None,
                serial: 0,
            }),
        }
    }

    /// A token good for a while yet: the cached one, or a fresh one when it is about to expire.
    pub async fn access_token(&self) -> PcResult<AccessToken> {
        let mut state = self.state.lock().await;
        if let Some(c) = &state.current
            && Instant::now() < c.renew_at
        {
            return Ok(c.token.clone());
        }
        self.acquire(&mut state).await
    }

    /// A replacement for a token the API refused (401). When another caller already replaced
    /// it, that newer token is returned and Entra is not asked again.
    pub async fn renew_refused(&self, refused: &AccessToken) -> PcResult<AccessToken> {
        let mut state = self.state.lock().await;
        if let Some(c) = &state.current
            && c.token.serial != refused.serial
            && Instant::now() < c.renew_at
        {
            return Ok(c.token.clone());
        }
        state.current = None;
        self.acquire(&mut state).await
    }

    /// Runs with the state lock held, so concurrent callers share this one request.
    async fn acquire(&self, state: &mut AccessState) -> PcResult<AccessToken> {
        let response = self.session.token_for(&self.resource).await?;
        let lifetime = response
            .expires_in
            .as_ref()
            .and_then(seconds)
            .unwrap_or(FALLBACK_LIFETIME);
        let margin = MAX_RENEWAL_MARGIN.min(lifetime / 10);
        state.serial += 1;
        let mfa = TokenClaims::read(&response.access_token).and_then(|c| c.mfa());
        let token = AccessToken {
            value: Secret::new(response.access_token),
            serial: state.serial,
            mfa,
        };
        state.current = Some(Cached {
            token: token.clone(),
            renew_at: Instant::now() + lifetime.saturating_sub(margin),
        });
        tracing::debug!(
            lifetime_secs = lifetime.as_secs(),
            resource = %self.resource,
            "obtained a Partner Center access token"
        );
        Ok(token)
    }
}

fn seconds(v: &serde_json::Value) -> Option<Duration> {
    let secs = match v {
        serde_json::Value::String(s) => s.trim().parse::<u64>().ok()?,
        serde_json::Value::Number(n) => n.as_u64()?,
        _ => return None,
    };
    (secs > 0).then(|| Duration::from_secs(secs))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_never_print() {
        let auth = PartnerCenterAuth::new(
            "client",
            "s3cr3t-value",
            UserCredential::Password {
                username: "admin@contoso.test".into(),
                password: Secret::new("pa55word"),
            },
        );
        let shown = format!("{auth:?}");
        assert!(shown.contains("admin@contoso.test"), "{shown}");
        assert!(!shown.contains("s3cr3t-value"), "{shown}");
        assert!(!shown.contains("pa55word"), "{shown}");
        let refresh = format!("{:?}", UserCredential::RefreshToken("rt-value".into()));
        assert!(!refresh.contains("rt-value"), "{refresh}");
    }

    #[test]
    fn lifetimes_read_as_strings_or_numbers() {
        assert_eq!(
            seconds(&serde_json::json!("3599")),
            Some(Duration::from_secs(3599))
        );
        assert_eq!(
            seconds(&serde_json::json!(3600)),
            Some(Duration::from_secs(3600))
        );
        assert_eq!(seconds(&serde_json::json!("soon")), None);
        assert_eq!(seconds(&serde_json::json!("0")), None);
    }

    #[test]
    fn token_url_joins_authority_and_tenant() {
        let mut auth =
            PartnerCenterAuth::new("c", "s", UserCredential::RefreshToken(Secret::new("r")));
        assert_eq!(
            auth.token_url().map(|u| u.to_string()).ok().as_deref(),
            Some("https://login.microsoftonline.com/common/oauth2/token")
        );
        auth.authority_url = "login.example".into();
        assert!(matches!(
            auth.token_url(),
            Err(PartnerCenterConfigError::InvalidUrl {
                setting: "authority_url",
                ..
            })
        ));
    }
}
