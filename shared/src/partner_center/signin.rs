//! The Referral admin's interactive sign-in, once, to get the refresh token the connector then
//! runs on: the OAuth 2.0 authorization-code flow with PKCE (RFC 7636) to a loopback redirect,
//! or the device authorization grant (RFC 8628) for a machine without a browser. Both use Entra
//! ID's v2 endpoints; the refresh token they yield is then redeemed at the v1 endpoint for each
//! Partner Center audience (Entra's refresh tokens serve every resource the app may call).

use std::collections::HashMap;
use std::time::Duration;

use aws_lc_rs::digest;
use aws_lc_rs::rand::{SecureRandom, SystemRandom};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::Deserialize;

use super::token::{PartnerCenterAuth, PartnerCenterConfigError, Secret, parse_http_url};
use crate::entra::{EntraError, TokenClaims};

/// How much of Entra's error description goes into an error message.
const MAX_DESCRIPTION_CHARS: usize = 300;
/// Entra's documented default when a device code answer leaves `interval` out.
const DEFAULT_DEVICE_INTERVAL: Duration = Duration::from_secs(5);
const DEVICE_CODE_GRANT: &str = "urn:ietf:params:oauth:grant-type:device_code";

#[derive(Debug, thiserror::Error)]
pub enum SignInError {
    #[error(transparent)]
    Config(#[from] PartnerCenterConfigError),
    #[error("the sign-in answer's state does not match the request: it was not this sign-in's")]
    StateMismatch,
    #[error("the sign-in was not completed: {error}{}", description.as_deref().map(|d| format!(" ({d})")).unwrap_or_default())]
    Denied {
        error: String,
        description: Option<String>,
    },
    #[error("the sign-in answer carries no authorization code")]
    NoCode,
    #[error("Entra ID refused the sign-in: {0}")]
    Refused(String),
    #[error(
        "Entra ID returned no refresh token: the app must be allowed offline access (the offline_access scope)"
    )]
    NoRefreshToken,
    #[error("the device code expired before the sign-in was completed")]
    DeviceCodeExpired,
    #[error("cannot reach Entra ID: {0}")]
    Http(String),
    #[error("cannot make a random value: {0}")]
    Random(String),
}

/// What a sign-in yields: the refresh token to store, and who signed in.
#[derive(Debug, Clone)]
pub struct SignedIn {
    pub refresh_token: Secret,
    /// The access token for the Referrals API, to read its claims and to call with.
    pub access_token: Secret,
    /// The id token's claims (who signed in), when Entra returned one.
    pub id: Option<TokenClaims>,
    /// The access token's claims (the MFA claim Partner Center checks is here).
    pub access: Option<TokenClaims>,
    /// The token came from a public-client flow (device code without the app's credential).
    pub public_client: bool,
}

impl SignedIn {
    pub fn username(&self) -> Option<&str> {
        self.id
            .as_ref()
            .and_then(TokenClaims::username)
            .or_else(|| self.access.as_ref().and_then(TokenClaims::username))
    }

    pub fn tenant(&self) -> Option<&str> {
        self.id
            .as_ref()
            .and_then(|c| c.tid.as_deref())
            .or_else(|| self.access.as_ref().and_then(|c| c.tid.as_deref()))
    }

    /// Whether the Referrals API token carries the MFA claim.
    pub fn mfa(&self) -> Option<bool> {
        self.access
            .as_ref()
            .and_then(TokenClaims::mfa)
            .or_else(|| self.id.as_ref().and_then(TokenClaims::mfa))
    }
}

/// An authorization request in progress: the URL to open, and what checks its answer.
#[derive(Debug)]
pub struct AuthorizationRequest {
    pub url: url::Url,
    pub redirect_uri: String,
    state: String,
    verifier: Secret,
}

/// A device code to show the user while the connector waits for the sign-in.
#[derive(Debug, Clone, Deserialize)]
pub struct DeviceCode {
    device_code: String,
    pub user_code: String,
    pub verification_uri: String,
    #[serde(default)]
    pub message: Option<String>,
    #[serde(default)]
    expires_in: Option<serde_json::Value>,
    #[serde(default)]
    interval: Option<serde_json::Value>,
}

#[derive(Deserialize)]
struct Tokens {
    access_token: String,
    #[serde(default)]
    refresh_token: Option<String>,
    #[serde(default)]
    id_token: Option<String>,
}

/// The app and the Entra endpoints a sign-in uses.
pub struct SignIn {
    auth: PartnerCenterAuth,
    http: reqwest::Client,
}

fn random_urlsafe(bytes: usize) -> Result<String, SignInError> {
    let mut buf = vec![0u8; bytes];
    SystemRandom::new()
        .fill(&mut buf)
        .map_err(|e| SignInError::Random(e.to_string()))?;
    Ok(URL_SAFE_NO_PAD.encode(buf))
}

fn number(v: &Option<serde_json::Value>) -> Option<u64> {
    match v.as_ref()? {
        serde_json::Value::Number(n) => n.as_u64(),
        serde_json::Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

impl SignIn {
    /// Signs in for the app of `auth` (its client id, secret or certificate, authority and
    /// tenant); `auth.resource` is the audience whose `.default` scope is asked for.
    pub fn new(auth: PartnerCenterAuth, http: reqwest::Client) -> SignIn {
        SignIn { auth, http }
    }

    fn endpoint(&self, name: &str) -> Result<url::Url, SignInError> {
        let raw = format!(
            "{}/{}/oauth2/v2.0/{name}",
            self.auth.authority_url.trim_end_matches('/'),
            self.auth.tenant.trim_matches('/')
        );
        Ok(parse_http_url("authority_url", &raw)?)
    }

    /// The Partner Center audience, refresh tokens, and who signed in.
    fn scope(&self) -> String {
        format!(
            "{}/.default offline_access openid profile",
            self.auth.resource.trim_end_matches('/')
        )
    }

    /// The URL that signs the user in and redirects to `redirect_uri` (a loopback URL the
    /// caller listens on) with a code. `login_hint` fills in the user's name.
    pub fn authorization_request(
        &self,
        redirect_uri: &str,
        login_hint: Option<&str>,
    ) -> Result<AuthorizationRequest, SignInError> {
        let state = random_urlsafe(24)?;
        let verifier = random_urlsafe(48)?;
        let challenge =
            URL_SAFE_NO_PAD.encode(digest::digest(&digest::SHA256, verifier.as_bytes()));
        let mut url = self.endpoint("authorize")?;
        {
            let mut q = url.query_pairs_mut();
            q.append_pair("client_id", &self.auth.client_id)
                .append_pair("response_type", "code")
                .append_pair("redirect_uri", redirect_uri)
                .append_pair("response_mode", "query")
                .append_pair("scope", &self.scope())
                .append_pair("state", &state)
                .append_pair("code_challenge", &challenge)
                .append_pair("code_challenge_method", "S256");
            if let Some(hint) = login_hint {
                q.append_pair("login_hint", hint);
            }
        }
        Ok(AuthorizationRequest {
            url,
            redirect_uri: redirect_uri.to_string(),
            state,
            verifier: Secret::new(verifier),
        })
    }

    /// Checks the redirect's query (`state`, `code` or `error`) and redeems the code.
    pub async fn complete(
        &self,
        request: &AuthorizationRequest,
        query: &HashMap<String, String>,
    ) -> Result<SignedIn, SignInError> {
        if query.get("state") != Some(&request.state) {
            return Err(SignInError::StateMismatch);
        }
        if let Some(error) = query.get("error") {
            return Err(SignInError::Denied {
                error: error.clone(),
                description: query.get("error_description").cloned(),
            });
        }
        let code = query.get("code").ok_or(SignInError::NoCode)?;
        let form = vec![
            ("grant_type", "authorization_code".to_string()),
            ("code", code.clone()),
            ("redirect_uri", request.redirect_uri.clone()),
            ("code_verifier", request.verifier.expose().to_string()),
            ("scope", self.scope()),
        ];
        match self.token(form, true).await? {
            Ok(tokens) => self.signed_in(tokens, false),
            Err(error) => Err(SignInError::Refused(self.describe(&error))),
        }
    }

    /// Signs `login_hint` in where the authority asks nothing of the user and redirects at
    /// once (the sandbox's Entra does): the redirect is read, not followed, so nothing need
    /// listen on the loopback address.
    pub async fn sign_in_without_form(
        &self,
        login_hint: Option<&str>,
    ) -> Result<SignedIn, SignInError> {
        let request = self.authorization_request("http://localhost/", login_hint)?;
        let client = crate::http::client_builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| SignInError::Http(e.to_string()))?;
        let response = client
            .get(request.url.clone())
            .send()
            .await
            .map_err(|e| SignInError::Http(e.to_string()))?;
        let location = response
            .headers()
            .get(reqwest::header::LOCATION)
            .and_then(|l| l.to_str().ok())
            .and_then(|l| url::Url::parse(l).ok())
            .ok_or_else(|| {
                SignInError::Refused(format!(
                    "the authorize endpoint answered {} without a redirect: it asks for a form this sign-in cannot fill; use `cosell auth login`",
                    response.status()
                ))
            })?;
        let query: HashMap<String, String> = location.query_pairs().into_owned().collect();
        self.complete(&request, &query).await
    }

    /// Starts a device code sign-in. The flow is a public client's: the app registration must
    /// allow public client flows.
    pub async fn start_device_code(&self) -> Result<DeviceCode, SignInError> {
        let form = vec![
            ("client_id", self.auth.client_id.clone()),
            ("scope", self.scope()),
        ];
        let (ok, body) = self.post(self.endpoint("devicecode")?, &form).await?;
        if !ok {
            let error: EntraError = serde_json::from_slice(&body).unwrap_or_default();
            return Err(SignInError::Refused(self.describe(&error)));
        }
        serde_json::from_slice(&body).map_err(|e| {
            SignInError::Refused(format!("the device code answer is not readable: {e}"))
        })
    }

    /// Waits, polling at the interval Entra asked for, until the user completes the sign-in
    /// the device code started, declines it, or the code expires.
    pub async fn finish_device_code(&self, device: &DeviceCode) -> Result<SignedIn, SignInError> {
        let mut interval = number(&device.interval)
            .filter(|s| *s > 0)
            .map(Duration::from_secs)
            .unwrap_or(DEFAULT_DEVICE_INTERVAL);
        let deadline = tokio::time::Instant::now()
            + Duration::from_secs(number(&device.expires_in).unwrap_or(900));
        loop {
            tokio::time::sleep(interval).await;
            let form = vec![
                ("grant_type", DEVICE_CODE_GRANT.to_string()),
                ("device_code", device.device_code.clone()),
            ];
            match self.token(form, false).await? {
                Ok(tokens) => return self.signed_in(tokens, true),
                Err(e) if e.code() == "authorization_pending" => {}
                Err(e) if e.code() == "slow_down" => interval += Duration::from_secs(5),
                Err(e) if e.code() == "expired_token" => {
                    return Err(SignInError::DeviceCodeExpired);
                }
                Err(e) if e.code() == "authorization_declined" => {
                    return Err(SignInError::Denied {
                        error: "authorization_declined".into(),
                        description: Some(self.describe(&e)),
                    });
                }
                Err(e) => return Err(SignInError::Refused(self.describe(&e))),
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(SignInError::DeviceCodeExpired);
            }
        }
    }

    /// One request to the v2 token endpoint: the tokens, or Entra's error.
    async fn token(
        &self,
        mut form: Vec<(&'static str, String)>,
        with_client_credential: bool,
    ) -> Result<Result<Tokens, EntraError>, SignInError> {
        let url = self.endpoint("token")?;
        form.push(("client_id", self.auth.client_id.clone()));
        if with_client_credential {
            let fields = self
                .auth
                .client_credential
                .form_fields(&self.auth.client_id, url.as_str())
                .map_err(|e| SignInError::Config(e.into()))?;
            form.extend(fields);
        }
        let (ok, body) = self.post(url, &form).await?;
        if ok {
            serde_json::from_slice(&body).map(Ok).map_err(|e| {
                SignInError::Refused(format!("Entra ID's token answer is not readable: {e}"))
            })
        } else {
            Ok(Err(serde_json::from_slice(&body).unwrap_or_default()))
        }
    }

    /// Posts `form` to `url`: whether it succeeded, and the body.
    async fn post(
        &self,
        url: url::Url,
        form: &[(&'static str, String)],
    ) -> Result<(bool, Vec<u8>), SignInError> {
        let response = self
            .http
            .post(url)
            .header(reqwest::header::ACCEPT, "application/json")
            .form(form)
            .send()
            .await
            .map_err(|e| SignInError::Http(e.to_string()))?;
        let ok = response.status().is_success();
        let body = response
            .bytes()
            .await
            .map_err(|e| SignInError::Http(e.to_string()))?;
        Ok((ok, body.to_vec()))
    }

    fn signed_in(&self, tokens: Tokens, public_client: bool) -> Result<SignedIn, SignInError> {
        let refresh_token = tokens
            .refresh_token
            .filter(|t| !t.is_empty())
            .ok_or(SignInError::NoRefreshToken)?;
        Ok(SignedIn {
            refresh_token: Secret::new(refresh_token),
            access: TokenClaims::read(&tokens.access_token),
            access_token: Secret::new(tokens.access_token),
            id: tokens.id_token.as_deref().and_then(TokenClaims::read),
            public_client,
        })
    }

    fn describe(&self, error: &EntraError) -> String {
        let secrets: Vec<&str> = self
            .auth
            .client_credential
            .secret()
            .map(|s| s.expose())
            .into_iter()
            .collect();
        format!(
            "{} ({})",
            error.code(),
            error.summary(MAX_DESCRIPTION_CHARS, &secrets)
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::partner_center::token::UserCredential;

    fn sign_in() -> SignIn {
        SignIn::new(
            PartnerCenterAuth::new(
                "app-1",
                "secret",
                UserCredential::RefreshToken(Secret::new("")),
            ),
            reqwest::Client::new(),
        )
    }

    #[test]
    fn an_authorization_request_asks_for_a_code_with_pkce_and_a_fresh_state() {
        let s = sign_in();
        let a = s
            .authorization_request("http://localhost:8400/", Some("admin@contoso.test"))
            .expect("a request");
        let b = s
            .authorization_request("http://localhost:8400/", None)
            .expect("a request");
        let q: HashMap<String, String> = a.url.query_pairs().into_owned().collect();
        assert_eq!(
            a.url.path(),
            "/common/oauth2/v2.0/authorize",
            "the v2 endpoint of the tenant"
        );
        assert_eq!(q["response_type"], "code");
        assert_eq!(q["code_challenge_method"], "S256");
        assert_eq!(
            q["code_challenge"],
            URL_SAFE_NO_PAD.encode(digest::digest(
                &digest::SHA256,
                a.verifier.expose().as_bytes()
            ))
        );
        assert!(q["scope"].contains("https://api.partner.microsoft.com/.default"));
        assert!(q["scope"].contains("offline_access"));
        assert_eq!(q["login_hint"], "admin@contoso.test");
        assert_ne!(a.state, b.state, "each sign-in has its own state");
        assert!(
            !a.url.as_str().contains(a.verifier.expose()),
            "the verifier stays here"
        );
    }

    #[tokio::test]
    async fn an_answer_for_another_state_or_an_error_is_refused_before_any_request() {
        let s = sign_in();
        let a = s
            .authorization_request("http://localhost:8400/", None)
            .expect("a request");
        let forged: HashMap<String, String> = [
            ("state".to_string(), "other".to_string()),
            ("code".to_string(), "c".to_string()),
        ]
        .into();
        assert!(matches!(
            s.complete(&a, &forged).await,
            Err(SignInError::StateMismatch)
        ));
        let denied: HashMap<String, String> = [
            ("state".to_string(), a.state.clone()),
            ("error".to_string(), "access_denied".to_string()),
        ]
        .into();
        assert!(matches!(
            s.complete(&a, &denied).await,
            Err(SignInError::Denied { .. })
        ));
    }
}
