//! Talking to Salesforce: OAuth (JWT bearer or client credentials), the cached access token,
//! every REST call through [`RetryPolicy::run`], and the mapping of Salesforce's error arrays
//! to [`CrmError`].
//!
//! Salesforce's token response carries no `expires_in` and the JWT flow no refresh token, so
//! the access token is kept until a call answers 401 `INVALID_SESSION_ID`; then the adapter
//! signs in again once and repeats the call.

use std::sync::Arc;
use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::sync::Mutex;
use url::Url;

use super::config::{SalesforceAuth, SalesforceConfig, SalesforceConfigError, SecretString};
use crate::crm::{CrmError, CrmResult};
use crate::retry::Transient;

/// How long a signed assertion lives. Salesforce accepts at most three minutes; two leave room
/// for a clock that runs a little ahead of Salesforce's.
const ASSERTION_LIFETIME_SECS: i64 = 120;

/// A signed-in session: where API calls go, with which token, as which user.
struct Session {
    token: SecretString,
    instance_url: Url,
    /// The integration user's id (the last segment of the token response's identity URL).
    user_id: String,
}

/// What a call answered, when it did not fail.
#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    /// `Null` when the body was empty.
    pub body: Value,
    /// The server's time when it answered (its `Date` header), when given.
    pub date: Option<chrono::DateTime<chrono::Utc>>,
}

/// Where a request goes.
pub enum Target<'a> {
    /// Under `/services/data/{version}/`: path segments (each percent-encoded) and query
    /// parameters.
    Api {
        segments: &'a [&'a str],
        query: &'a [(&'a str, &'a str)],
    },
    /// A server-relative path Salesforce handed out (`nextRecordsUrl`).
    Relative(&'a str),
}

/// One entry of Salesforce's error array.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ApiError {
    #[serde(default)]
    message: String,
    #[serde(default)]
    error_code: String,
    #[serde(default)]
    fields: Vec<String>,
}

/// The OAuth endpoint's error body.
#[derive(Debug, Default, Deserialize)]
struct OAuthError {
    #[serde(default)]
    error: String,
    #[serde(default)]
    error_description: String,
}

#[derive(Deserialize)]
struct TokenResponse {
    access_token: String,
    instance_url: String,
    id: String,
}

#[derive(Serialize)]
struct Claims<'a> {
    iss: &'a str,
    sub: &'a str,
    aud: &'a str,
    exp: i64,
}

/// A [`CrmError`] with the decision whether this attempt is worth repeating in-process.
struct Attempt(CrmError);

impl Transient for Attempt {
    fn is_transient(&self) -> bool {
        // The org's daily request limit (403) rolls over 24 hours: waiting seconds here only
        // holds the Lambda, so it goes straight back to the queue for a later redelivery.
        self.0.is_transient() && !is_daily_limit(&self.0)
    }
    fn retry_after(&self) -> Option<Duration> {
        <CrmError as Transient>::retry_after(&self.0)
    }
}

fn is_daily_limit(e: &CrmError) -> bool {
    matches!(
        e,
        CrmError::Transient {
            status: Some(403),
            ..
        }
    )
}

/// The HTTP side of the adapter.
pub struct Http {
    config: Arc<SalesforceConfig>,
    client: reqwest::Client,
    token_url: Url,
    signing_key: Option<jsonwebtoken::EncodingKey>,
    session: Mutex<Option<Arc<Session>>>,
}

/// Why the adapter could not be built.
#[derive(Debug, thiserror::Error)]
pub enum SalesforceSetupError {
    /// A configuration value is unusable; the message names it.
    #[error(transparent)]
    Config(#[from] SalesforceConfigError),
    /// The message names what is wrong with the key, never the key.
    #[error("the Salesforce connected app's private key is not a usable RSA PEM key: {0}")]
    PrivateKey(String),
    /// The HTTP client could not be set up (TLS roots, for one).
    #[error("cannot build the HTTP client: {0}")]
    Client(#[from] reqwest::Error),
}

impl Http {
    pub fn new(config: Arc<SalesforceConfig>) -> Result<Http, SalesforceSetupError> {
        config.validate()?;
        let base = Url::parse(&config.login_url).map_err(|e| SalesforceConfigError {
            setting: "login_url",
            reason: format!("is not a URL ({e})"),
        })?;
        let token_url = api_url(&base, &["services", "oauth2", "token"]);
        let signing_key = match &config.auth {
            SalesforceAuth::JwtBearer {
                private_key_pem, ..
            } => Some(
                jsonwebtoken::EncodingKey::from_rsa_pem(private_key_pem.expose().as_bytes())
                    .map_err(|e| SalesforceSetupError::PrivateKey(key_problem(&e)))?,
            ),
            SalesforceAuth::ClientCredentials { .. } => None,
        };
        let client = crate::http::client_builder()
            .timeout(config.timeout)
            .user_agent(concat!("cosell-connector/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(Http {
            config,
            client,
            token_url,
            signing_key,
            session: Mutex::new(None),
        })
    }

    /// The integration user's id, signing in when there is no session yet.
    pub async fn user_id(&self) -> CrmResult<String> {
        let retry = self.config.retry;
        retry
            .run(|| async {
                self.session()
                    .await
                    .map(|s| s.user_id.clone())
                    .map_err(Attempt)
            })
            .await
            .map_err(|a| a.0)
    }

    /// One logical call: retried under the policy, signed in again once on 401. Answers 2xx
    /// and 300 (an upsert's several matches, which only the caller can explain); everything
    /// else becomes a [`CrmError`], 404 a `NotFound` naming `what`.
    pub async fn call(
        &self,
        method: Method,
        target: Target<'_>,
        body: Option<&Value>,
        what: &str,
    ) -> CrmResult<Reply> {
        let retry = self.config.retry;
        retry
            .run(|| async {
                self.attempt(method.clone(), &target, body, what)
                    .await
                    .map_err(Attempt)
            })
            .await
            .map_err(|a| a.0)
    }

    async fn attempt(
        &self,
        method: Method,
        target: &Target<'_>,
        body: Option<&Value>,
        what: &str,
    ) -> CrmResult<Reply> {
        let session = self.session().await?;
        let raw = self.send(&session, method.clone(), target, body).await?;
        if raw.status != StatusCode::UNAUTHORIZED {
            return classify(raw, what);
        }
        // The token expired or was revoked: one new sign-in, one repeat.
        tracing::debug!("Salesforce session expired; signing in again");
        self.forget(&session).await;
        let session = self.session().await?;
        let raw = self.send(&session, method, target, body).await?;
        if raw.status == StatusCode::UNAUTHORIZED {
            self.forget(&session).await;
            let e = first_error(&raw.body);
            return Err(CrmError::Auth {
                message: format!(
                    "Salesforce refused a fresh session ({}: {})",
                    e.error_code, e.message
                ),
            });
        }
        classify(raw, what)
    }

    async fn send(
        &self,
        session: &Session,
        method: Method,
        target: &Target<'_>,
        body: Option<&Value>,
    ) -> CrmResult<Raw> {
        let url = match target {
            Target::Api { segments, query } => {
                let mut path = vec!["services", "data", self.config.api_version.as_str()];
                path.extend_from_slice(segments);
                let mut url = api_url(&session.instance_url, &path);
                if !query.is_empty() {
                    url.query_pairs_mut().extend_pairs(query.iter());
                }
                url
            }
            Target::Relative(path) => {
                session
                    .instance_url
                    .join(path)
                    .map_err(|e| CrmError::Transient {
                        status: None,
                        retry_after: None,
                        message: format!("Salesforce handed out an unusable next-page path: {e}"),
                    })?
            }
        };
        let is_query = matches!(target, Target::Relative(_))
            || matches!(target, Target::Api { segments, .. } if segments.first() == Some(&"query"));
        let mut req = self
            .client
            .request(method, url)
            .bearer_auth(session.token.expose())
            .header(reqwest::header::ACCEPT, "application/json");
        if let (true, Some(n)) = (is_query, self.config.query_batch_size) {
            req = req.header("Sforce-Query-Options", format!("batchSize={n}"));
        }
        if let Some(b) = body {
            req = req.json(b);
        }
        let started = std::time::Instant::now();
        let sent = req.send().await;
        crate::metrics::api_call(
            crate::metrics::Api::Salesforce,
            started,
            sent.as_ref().ok().map(|r| r.status().as_u16()),
        );
        let resp = sent.map_err(network)?;
        let raw = Raw::read(resp).await?;
        log_usage(raw.limit_info.as_deref());
        Ok(raw)
    }

    async fn session(&self) -> CrmResult<Arc<Session>> {
        let mut slot = self.session.lock().await;
        if let Some(s) = slot.as_ref() {
            return Ok(s.clone());
        }
        let fresh = Arc::new(self.sign_in().await?);
        *slot = Some(fresh.clone());
        Ok(fresh)
    }

    /// Drops `stale` unless another call has already replaced it.
    async fn forget(&self, stale: &Arc<Session>) {
        let mut slot = self.session.lock().await;
        if slot.as_ref().is_some_and(|s| Arc::ptr_eq(s, stale)) {
            *slot = None;
        }
    }

    async fn sign_in(&self) -> CrmResult<Session> {
        let form: Vec<(&str, String)> = match &self.config.auth {
            SalesforceAuth::JwtBearer {
                consumer_key,
                username,
                audience,
                ..
            } => {
                let audience = audience.as_deref().unwrap_or(&self.config.login_url);
                let assertion = self.assertion(consumer_key, username, audience)?;
                vec![
                    (
                        "grant_type",
                        "urn:ietf:params:oauth:grant-type:jwt-bearer".into(),
                    ),
                    ("assertion", assertion),
                ]
            }
            SalesforceAuth::ClientCredentials {
                client_id,
                client_secret,
            } => vec![
                ("grant_type", "client_credentials".into()),
                ("client_id", client_id.clone()),
                ("client_secret", client_secret.expose().to_string()),
            ],
        };
        let started = std::time::Instant::now();
        let sent = self
            .client
            .post(self.token_url.clone())
            .header(reqwest::header::ACCEPT, "application/json")
            .form(&form)
            .send()
            .await;
        crate::metrics::api_call(
            crate::metrics::Api::Salesforce,
            started,
            sent.as_ref().ok().map(|r| r.status().as_u16()),
        );
        let resp = sent.map_err(network)?;
        let raw = Raw::read(resp).await?;
        let status = raw.status;
        if status.is_success() {
            let t: TokenResponse =
                serde_json::from_value(raw.body).map_err(|e| CrmError::Auth {
                    message: format!("Salesforce's token response is not as expected: {e}"),
                })?;
            let instance_url = Url::parse(&t.instance_url).map_err(|e| CrmError::Auth {
                message: format!("Salesforce's token response names no usable instance_url: {e}"),
            })?;
            let user_id =
                t.id.trim_end_matches('/')
                    .rsplit('/')
                    .next()
                    .unwrap_or_default()
                    .to_string();
            tracing::debug!(user_id, instance_url = %instance_url, "signed in to Salesforce");
            return Ok(Session {
                token: SecretString::new(t.access_token),
                instance_url,
                user_id,
            });
        }
        if status == StatusCode::TOO_MANY_REQUESTS || status.is_server_error() {
            return Err(CrmError::Transient {
                status: Some(status.as_u16()),
                retry_after: raw.retry_after,
                message: "Salesforce's token endpoint is unavailable".into(),
            });
        }
        let e: OAuthError = serde_json::from_value(raw.body).unwrap_or_default();
        Err(CrmError::Auth {
            message: format!(
                "Salesforce refused to sign the connector in ({status}): {} {}",
                e.error, e.error_description
            )
            .trim_end()
            .to_string(),
        })
    }

    /// An RS256 assertion for the JWT bearer flow.
    fn assertion(&self, iss: &str, sub: &str, aud: &str) -> CrmResult<String> {
        let Some(key) = &self.signing_key else {
            return Err(CrmError::Auth {
                message: "no private key to sign the JWT assertion with".into(),
            });
        };
        let claims = Claims {
            iss,
            sub,
            aud,
            exp: chrono::Utc::now().timestamp() + ASSERTION_LIFETIME_SECS,
        };
        jsonwebtoken::encode(
            &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256),
            &claims,
            key,
        )
        .map_err(|e| CrmError::Auth {
            message: format!("cannot sign the JWT assertion: {}", key_problem(&e)),
        })
    }
}

/// What is wrong with a key, in words that cannot carry any of its bytes (a base64 error
/// would quote one).
fn key_problem(e: &jsonwebtoken::errors::Error) -> String {
    use jsonwebtoken::errors::ErrorKind;
    match e.kind() {
        ErrorKind::InvalidKeyFormat | ErrorKind::Base64(_) | ErrorKind::Utf8(_) => {
            "not a PEM-encoded key".into()
        }
        ErrorKind::InvalidRsaKey(_) => "not an RSA private key".into(),
        ErrorKind::RsaFailedSigning | ErrorKind::Signing(_) => "signing failed".into(),
        _ => "unusable key".into(),
    }
}

/// `base` with `segments` appended, each percent-encoded (a record id or an external-id value
/// cannot change the path).
fn api_url(base: &Url, segments: &[&str]) -> Url {
    let mut url = base.clone();
    url.set_query(None);
    url.set_fragment(None);
    if let Ok(mut path) = url.path_segments_mut() {
        path.pop_if_empty().extend(segments);
    }
    url
}

/// A response read to the end.
struct Raw {
    status: StatusCode,
    retry_after: Option<u64>,
    limit_info: Option<String>,
    date: Option<chrono::DateTime<chrono::Utc>>,
    body: Value,
}

impl Raw {
    async fn read(resp: reqwest::Response) -> CrmResult<Raw> {
        let status = resp.status();
        let header = |name: &str| {
            resp.headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)
        };
        let retry_after = crate::http::retry_after(resp.headers());
        let limit_info = header("sforce-limit-info");
        let date = header("date")
            .and_then(|d| httpdate::parse_http_date(&d).ok())
            .map(chrono::DateTime::<chrono::Utc>::from);
        let bytes = resp.bytes().await.map_err(network)?;
        let body = if bytes.iter().all(u8::is_ascii_whitespace) {
            Value::Null
        } else {
            // A body that is not JSON (a proxy's HTML page) still has a status worth mapping.
            serde_json::from_slice(&bytes).unwrap_or(Value::Null)
        };
        Ok(Raw {
            status,
            retry_after,
            limit_info,
            date,
            body,
        })
    }
}

fn network(e: reqwest::Error) -> CrmError {
    let kind = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "could not connect"
    } else {
        "failed"
    };
    CrmError::Transient {
        status: None,
        retry_after: None,
        message: format!("the request to Salesforce {kind}: {}", e.without_url()),
    }
}

fn first_error(body: &Value) -> ApiError {
    body.as_array()
        .and_then(|a| a.first())
        .cloned()
        .and_then(|v| serde_json::from_value(v).ok())
        .unwrap_or_default()
}

fn describe(e: &ApiError, status: StatusCode) -> String {
    match (e.error_code.is_empty(), e.message.is_empty()) {
        (true, true) => format!("HTTP {status}"),
        (true, false) => e.message.clone(),
        (false, true) => e.error_code.clone(),
        (false, false) => format!("{}: {}", e.error_code, e.message),
    }
}

/// `Sforce-Limit-Info: api-usage=10018/100000` → (used, max).
pub fn parse_usage(header: &str) -> Option<(u64, u64)> {
    header.split(';').find_map(|part| {
        let (key, value) = part.trim().split_once('=')?;
        if key.trim() != "api-usage" {
            return None;
        }
        let (used, max) = value.trim().split_once('/')?;
        Some((used.trim().parse().ok()?, max.trim().parse().ok()?))
    })
}

fn log_usage(header: Option<&str>) {
    let Some((used, max)) = header.and_then(parse_usage) else {
        return;
    };
    tracing::debug!(api_used = used, api_max = max, "Salesforce API usage");
    // Nine tenths spent: an operator has a few hours to act before the org locks every
    // integration out, not only this one.
    if max > 0 && used.saturating_mul(10) >= max.saturating_mul(9) {
        tracing::warn!(
            api_used = used,
            api_max = max,
            "Salesforce daily API requests nearly spent"
        );
    }
}

fn classify(raw: Raw, what: &str) -> CrmResult<Reply> {
    let status = raw.status;
    if status.is_success() || status == StatusCode::MULTIPLE_CHOICES {
        return Ok(Reply {
            status,
            body: raw.body,
            date: raw.date,
        });
    }
    let e = first_error(&raw.body);
    let message = describe(&e, status);
    Err(match status.as_u16() {
        400 => CrmError::Rejected {
            message,
            field: e.fields.first().cloned(),
        },
        401 => CrmError::Auth { message },
        403 if e.error_code == "REQUEST_LIMIT_EXCEEDED" => CrmError::Transient {
            status: Some(403),
            // Salesforce sends no Retry-After: the allocation rolls over 24 hours.
            retry_after: None,
            message: format!(
                "the Salesforce org's API request limit is reached ({message}); syncing resumes once the rolling 24-hour allocation frees up"
            ),
        },
        403 => CrmError::Auth { message },
        404 => CrmError::NotFound {
            what: what.to_string(),
        },
        409 | 412 => CrmError::Conflict,
        429 => CrmError::Transient {
            status: Some(429),
            retry_after: raw.retry_after,
            message,
        },
        s if s >= 500 => CrmError::Transient {
            status: Some(s),
            retry_after: raw.retry_after,
            message,
        },
        _ => CrmError::Rejected {
            message,
            field: e.fields.first().cloned(),
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(status: u16, body: Value) -> Raw {
        Raw {
            date: None,
            status: StatusCode::from_u16(status).unwrap_or(StatusCode::IM_A_TEAPOT),
            retry_after: None,
            limit_info: None,
            body,
        }
    }

    #[test]
    fn usage_is_read_from_the_limit_header() {
        assert_eq!(parse_usage("api-usage=10018/100000"), Some((10018, 100000)));
        assert_eq!(
            parse_usage("api-usage=5/15000; api-bursts=1/750"),
            Some((5, 15000))
        );
        assert_eq!(parse_usage("per-app-api-usage=1/2"), None);
    }

    #[test]
    fn errors_are_sorted_by_what_the_caller_should_do() {
        let body = serde_json::json!([{
            "message": "Required fields are missing: [NextStep]",
            "errorCode": "REQUIRED_FIELD_MISSING",
            "fields": ["NextStep"]
        }]);
        match classify(raw(400, body), "x") {
            Err(CrmError::Rejected { field, message }) => {
                assert_eq!(field.as_deref(), Some("NextStep"));
                assert!(message.contains("REQUIRED_FIELD_MISSING"));
            }
            other => panic!("{other:?}"),
        }
        let limit = serde_json::json!([{"message": "TotalRequests Limit exceeded.", "errorCode": "REQUEST_LIMIT_EXCEEDED"}]);
        let e = classify(raw(403, limit), "x").err();
        assert!(matches!(
            e,
            Some(CrmError::Transient {
                status: Some(403),
                retry_after: None,
                ..
            })
        ));
        assert!(!Attempt(e.unwrap_or(CrmError::Conflict)).is_transient());
        let denied = serde_json::json!([{"message": "no", "errorCode": "INSUFFICIENT_ACCESS"}]);
        assert!(matches!(
            classify(raw(403, denied), "x"),
            Err(CrmError::Auth { .. })
        ));
        assert_eq!(
            classify(raw(404, Value::Null), "opportunity 006").err(),
            Some(CrmError::NotFound {
                what: "opportunity 006".into()
            })
        );
        let e = classify(raw(503, Value::Null), "x").err();
        assert!(e.as_ref().is_some_and(CrmError::is_transient));
        assert!(Attempt(e.unwrap_or(CrmError::Conflict)).is_transient());
        assert!(classify(raw(300, serde_json::json!(["/a", "/b"])), "x").is_ok());
    }

    #[test]
    fn path_segments_are_encoded() {
        let base = Url::parse("https://example.my.salesforce.com")
            .unwrap_or_else(|_| Url::parse("http://localhost").unwrap_or_else(|_| unreachable!()));
        let url = api_url(&base, &["services", "data", "v62.0", "a/b?c#d"]);
        assert_eq!(url.path(), "/services/data/v62.0/a%2Fb%3Fc%23d");
    }
}
