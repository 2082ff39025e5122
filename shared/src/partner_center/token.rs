//! App+User access tokens for the Referrals API from Entra ID's v1 token endpoint
//! (`POST {authority}/{tenant}/oauth2/token`, `resource=`), the only kind of token the Referrals
//! API accepts.
//!
//! A token is cached until shortly before it expires, and every caller waits on the same refresh,
//! so a burst of calls costs one token request. Each redemption of a refresh token hands back a
//! new one; the newest is kept in memory, because the one presented stops working.

use std::fmt;
use std::time::Duration;

use serde::Deserialize;
use tokio::sync::Mutex;
use tokio::time::Instant;

use super::{PartnerCenterError, PcResult};

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
    /// The resource-owner password grant Microsoft documents for the Referrals API. It fails
    /// for users with MFA; use a refresh token for those.
    Password { username: String, password: Secret },
    /// A refresh token obtained once interactively (the Secure Application Model).
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
    pub client_secret: Secret,
    pub credential: UserCredential,
    /// The token audience (default [`REFERRALS_RESOURCE`]).
    pub resource: String,
}

impl PartnerCenterAuth {
    /// The documented public-cloud defaults for everything but the app and the user.
    pub fn new(
        client_id: impl Into<String>,
        client_secret: impl Into<Secret>,
        credential: UserCredential,
    ) -> PartnerCenterAuth {
        PartnerCenterAuth {
            authority_url: DEFAULT_AUTHORITY_URL.to_string(),
            tenant: DEFAULT_TENANT.to_string(),
            client_id: client_id.into(),
            client_secret: client_secret.into(),
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
}

impl AccessToken {
    /// The bearer value to send.
    pub fn secret(&self) -> &str {
        self.value.expose()
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

struct TokenState {
    current: Option<Cached>,
    /// The newest refresh token: the configured one at first, then each rotated one.
    refresh_token: Option<Secret>,
    serial: u64,
}

/// Gets, caches and renews Referrals API tokens for one user.
pub struct TokenProvider {
    http: reqwest::Client,
    auth: PartnerCenterAuth,
    token_url: url::Url,
    state: Mutex<TokenState>,
}

impl fmt::Debug for TokenProvider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenProvider")
            .field("token_url", &self.token_url.as_str())
            .field("client_id", &self.auth.client_id)
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

#[derive(Deserialize, Default)]
struct EntraError {
    #[serde(default)]
    error: Option<String>,
    #[serde(default)]
    error_description: Option<String>,
    #[serde(default)]
    error_codes: Option<Vec<u64>>,
}

enum Grant<'a> {
    Password {
        username: &'a str,
        password: &'a Secret,
    },
    Refresh(&'a Secret),
}

impl TokenProvider {
    /// `http` should carry the connector's timeout; it is shared with the API calls.
    pub fn new(
        auth: PartnerCenterAuth,
        http: reqwest::Client,
    ) -> Result<TokenProvider, PartnerCenterConfigError> {
        let token_url = auth.token_url()?;
        let refresh_token = match &auth.credential {
            UserCredential::RefreshToken(t) => Some(t.clone()),
            UserCredential::Password { .. } => None,
        };
        Ok(TokenProvider {
            http,
            auth,
            token_url,
            state: Mutex::new(TokenState {
                current: None,
                refresh_token,
                serial: 0,
            }),
        })
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
    async fn acquire(&self, state: &mut TokenState) -> PcResult<AccessToken> {
        let response = match (&state.refresh_token, &self.auth.credential) {
            (Some(refresh), UserCredential::Password { username, password }) => {
                // The refresh token a password grant returned spares sending the password
                // again; when it has been revoked (a password reset), the password still works.
                match self.request(Grant::Refresh(refresh)).await {
                    Err(PartnerCenterError::Auth { .. }) => {
                        self.request(Grant::Password { username, password }).await
                    }
                    other => other,
                }
            }
            (Some(refresh), UserCredential::RefreshToken(_)) => {
                self.request(Grant::Refresh(refresh)).await
            }
            (None, UserCredential::Password { username, password }) => {
                self.request(Grant::Password { username, password }).await
            }
            (None, UserCredential::RefreshToken(configured)) => {
                self.request(Grant::Refresh(configured)).await
            }
        }?;
        if let Some(rotated) = response.refresh_token.filter(|t| !t.is_empty()) {
            state.refresh_token = Some(Secret::new(rotated));
        }
        let lifetime = response
            .expires_in
            .as_ref()
            .and_then(seconds)
            .unwrap_or(FALLBACK_LIFETIME);
        let margin = MAX_RENEWAL_MARGIN.min(lifetime / 10);
        state.serial += 1;
        let token = AccessToken {
            value: Secret::new(response.access_token),
            serial: state.serial,
        };
        state.current = Some(Cached {
            token: token.clone(),
            renew_at: Instant::now() + lifetime.saturating_sub(margin),
        });
        tracing::debug!(
            lifetime_secs = lifetime.as_secs(),
            "obtained a Partner Center access token"
        );
        Ok(token)
    }

    async fn request(&self, grant: Grant<'_>) -> PcResult<TokenResponse> {
        let auth = &self.auth;
        let mut form: Vec<(&str, &str)> = vec![
            ("client_id", &auth.client_id),
            ("client_secret", auth.client_secret.expose()),
            ("resource", &auth.resource),
        ];
        let who = match &grant {
            Grant::Password { username, password } => {
                form.extend([
                    ("grant_type", "password"),
                    ("scope", "openid"),
                    ("username", username),
                    ("password", password.expose()),
                ]);
                format!("user {username}")
            }
            Grant::Refresh(token) => {
                form.extend([
                    ("grant_type", "refresh_token"),
                    ("refresh_token", token.expose()),
                ]);
                "the refresh token".to_string()
            }
        };
        let response = self
            .http
            .post(self.token_url.clone())
            .header(reqwest::header::ACCEPT, "application/json")
            .form(&form)
            .send()
            .await
            .map_err(|e| PartnerCenterError::Transient {
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
            });
        }
        let error: EntraError = serde_json::from_slice(&body).unwrap_or_default();
        let code = error.error.as_deref().unwrap_or("unknown_error");
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
            });
        }
        Err(PartnerCenterError::Auth {
            message: format!(
                "Entra ID refused a token for {who} (client {}): {code} ({detail})",
                auth.client_id
            ),
        })
    }

    /// The AADSTS code and the first line of Entra's description, with anything secret the
    /// connector sent cut out in case the service ever echoes it.
    fn describe(&self, error: &EntraError) -> String {
        let first_line = error
            .error_description
            .as_deref()
            .and_then(|d| d.lines().next())
            .map(str::trim)
            .filter(|l| !l.is_empty());
        let mut text = match (first_line, error.error_codes.as_deref()) {
            (Some(line), _) => line.to_string(),
            (None, Some([code, ..])) => format!("AADSTS{code}"),
            (None, _) => "no description".to_string(),
        };
        let mut secrets: Vec<&str> = vec![self.auth.client_secret.expose()];
        if let UserCredential::Password { password, .. } = &self.auth.credential {
            secrets.push(password.expose());
        }
        if let UserCredential::RefreshToken(t) = &self.auth.credential {
            secrets.push(t.expose());
        }
        for s in secrets.into_iter().filter(|s| !s.is_empty()) {
            text = text.replace(s, "***");
        }
        if text.chars().count() > MAX_DESCRIPTION_CHARS {
            text = text.chars().take(MAX_DESCRIPTION_CHARS).collect::<String>() + "…";
        }
        text
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
        let shown = format!("{auth:?} {}", auth.client_secret);
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
