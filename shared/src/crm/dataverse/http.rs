//! The Web API over HTTP: the app-only token (client credentials, cached), the documented
//! headers, error classification into [`CrmError`], retries through [`RetryPolicy::run`], and
//! `@odata.nextLink` paging.

use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};
use serde_json::Value;
use tokio::sync::Mutex;

use super::config::{ClientCredential, ConfigError, DataverseConfig};
use super::mapping::field_in_message;
use crate::crm::{CrmError, CrmResult};
use crate::retry::RetryPolicy;

/// A token is renewed this long before it expires (at most a quarter of its life), so a
/// request never leaves with one about to lapse.
const TOKEN_MARGIN: Duration = Duration::from_secs(300);

/// Error messages from the service are cut to this many characters: enough to act on, not a
/// page of HTML from a proxy.
const MAX_MESSAGE: usize = 500;

struct CachedToken {
    value: String,
    renew_at: Instant,
}

/// One request as the adapter describes it; the client adds auth and the OData headers.
pub(super) struct Request<'a> {
    pub method: Method,
    /// Absolute URL.
    pub url: String,
    pub body: Option<&'a Value>,
    pub if_match: Option<&'static str>,
    pub if_none_match: Option<&'static str>,
    pub prefer: Option<String>,
    /// Any other headers (the metadata API's `MSCRM.SolutionUniqueName`…).
    pub headers: Vec<(&'static str, String)>,
}

impl<'a> Request<'a> {
    pub fn get(url: String) -> Request<'a> {
        Request {
            method: Method::GET,
            url,
            body: None,
            if_match: None,
            // docs/dataverse.md, "Headers": sent on reads so no cached representation is served.
            if_none_match: Some("null"),
            prefer: None,
            headers: Vec::new(),
        }
    }

    /// An update that must not turn into an upsert when the row is gone (`If-Match: *`).
    pub fn update(url: String, body: &'a Value) -> Request<'a> {
        Request {
            method: Method::PATCH,
            url,
            body: Some(body),
            if_match: Some("*"),
            if_none_match: None,
            prefer: None,
            headers: Vec::new(),
        }
    }

    /// A create at a client-chosen id that must not overwrite (`If-None-Match: *`).
    pub fn create(url: String, body: &'a Value) -> Request<'a> {
        Request {
            method: Method::PATCH,
            url,
            body: Some(body),
            if_match: None,
            if_none_match: Some("*"),
            prefer: None,
            headers: Vec::new(),
        }
    }

    pub fn post(url: String, body: &'a Value) -> Request<'a> {
        Request {
            method: Method::POST,
            url,
            body: Some(body),
            if_match: None,
            if_none_match: None,
            prefer: None,
            headers: Vec::new(),
        }
    }
}

/// A successful answer, read whole.
pub(super) struct Reply {
    pub body: Value,
    /// The `Preference-Applied` header: which `Prefer` values the service honoured
    /// (docs/dataverse.md, "Queries and paging" and "Change tracking").
    pub preference_applied: Option<String>,
}

pub(super) struct Http {
    client: reqwest::Client,
    /// `{org}/api/data/{version}`, no trailing slash.
    api_base: String,
    token_url: String,
    scope: String,
    client_id: String,
    credential: ClientCredential,
    retry: RetryPolicy,
    page_size: usize,
    /// Held across a token request, so concurrent calls wait for one token instead of each
    /// fetching their own.
    token: Mutex<Option<CachedToken>>,
}

impl Http {
    pub fn new(config: &DataverseConfig) -> Result<Http, ConfigError> {
        let client = crate::http::client_builder()
            .timeout(config.timeout)
            .build()
            .map_err(|e| ConfigError::Http(e.to_string()))?;
        let org = config.org_url.trim_end_matches('/');
        Ok(Http {
            client,
            api_base: format!("{org}/api/data/{}", config.api_version),
            token_url: format!(
                "{}/{}/oauth2/v2.0/token",
                config.authority_url.trim_end_matches('/'),
                config.tenant
            ),
            scope: format!("{org}/.default"),
            client_id: config.client_id.clone(),
            credential: config.client_credential.clone(),
            retry: config.retry,
            page_size: config.page_size,
            token: Mutex::new(None),
        })
    }

    /// Rows per page asked for with `Prefer: odata.maxpagesize`.
    pub fn page_size(&self) -> usize {
        self.page_size
    }

    /// `path` (with its query) under the Web API root.
    pub fn url(&self, path: &str) -> String {
        format!("{}/{path}", self.api_base)
    }

    /// Sends `req`, retrying transient failures as the policy allows.
    pub async fn call(&self, req: &Request<'_>) -> CrmResult<Reply> {
        self.retry.run(|| self.attempt(req)).await
    }

    /// Every row of a collection query, following `@odata.nextLink` page by page.
    pub async fn list(&self, url: String) -> CrmResult<Vec<Value>> {
        let mut rows = Vec::new();
        let mut next = Some(url);
        while let Some(url) = next.take() {
            // The bearer token goes wherever the link points: never off the environment.
            if !same_origin(&url, &self.api_base) {
                return Err(CrmError::Transient {
                    status: None,
                    retry_after: None,
                    message: "Dataverse returned a next-page link outside the environment".into(),
                });
            }
            let mut req = Request::get(url);
            req.prefer = Some(format!("odata.maxpagesize={}", self.page_size));
            let reply = self.call(&req).await.map_err(missing_table)?;
            rows.extend(values(&reply.body));
            next = reply
                .body
                .get("@odata.nextLink")
                .and_then(Value::as_str)
                .map(str::to_string);
        }
        Ok(rows)
    }

    /// The rows of a single-page query (one with `$top`, which a page size would override).
    pub async fn first_page(&self, url: String) -> CrmResult<Vec<Value>> {
        let reply = self.call(&Request::get(url)).await.map_err(missing_table)?;
        Ok(values(&reply.body))
    }

    async fn attempt(&self, req: &Request<'_>) -> CrmResult<Reply> {
        let token = self.token(None).await?;
        let resp = self.send(req, &token).await?;
        if resp.status() != StatusCode::UNAUTHORIZED {
            return classify(resp).await;
        }
        // The token may have been revoked or outlived its cache entry: one fresh token, once.
        let fresh = self.token(Some(&token)).await?;
        let resp = self.send(req, &fresh).await?;
        classify(resp).await
    }

    async fn send(&self, req: &Request<'_>, token: &str) -> CrmResult<reqwest::Response> {
        let mut builder = self
            .client
            .request(req.method.clone(), &req.url)
            .bearer_auth(token)
            .header("Accept", "application/json")
            .header("OData-MaxVersion", "4.0")
            .header("OData-Version", "4.0");
        if let Some(v) = req.if_match {
            builder = builder.header("If-Match", v);
        }
        if let Some(v) = req.if_none_match {
            builder = builder.header("If-None-Match", v);
        }
        if let Some(v) = &req.prefer {
            builder = builder.header("Prefer", v);
        }
        for (name, value) in &req.headers {
            builder = builder.header(*name, value);
        }
        if let Some(body) = req.body {
            builder = builder.json(body);
        }
        tracing::debug!(method = %req.method, path = %path_only(&req.url), "dataverse request");
        let started = std::time::Instant::now();
        let sent = builder.send().await;
        crate::metrics::api_call(
            crate::metrics::Api::Dataverse,
            started,
            sent.as_ref().ok().map(|r| r.status().as_u16()),
        );
        sent.map_err(network)
    }

    /// The cached token, or a new one when there is none, it is due for renewal, or it is
    /// `stale` (the one a 401 just refused).
    async fn token(&self, stale: Option<&str>) -> CrmResult<String> {
        let mut cached = self.token.lock().await;
        if let Some(t) = cached.as_ref()
            && Instant::now() < t.renew_at
            && stale != Some(t.value.as_str())
        {
            return Ok(t.value.clone());
        }
        let fresh = self.fetch_token().await?;
        let value = fresh.value.clone();
        *cached = Some(fresh);
        Ok(value)
    }

    async fn fetch_token(&self) -> CrmResult<CachedToken> {
        let mut form = vec![
            ("grant_type", "client_credentials".to_string()),
            ("client_id", self.client_id.clone()),
            ("scope", self.scope.clone()),
        ];
        form.extend(
            self.credential
                .form_fields(&self.client_id, &self.token_url)
                .map_err(|e| CrmError::Auth {
                    message: e.to_string(),
                })?,
        );
        let started = std::time::Instant::now();
        let sent = self.client.post(&self.token_url).form(&form).send().await;
        crate::metrics::api_call(
            crate::metrics::Api::EntraId,
            started,
            sent.as_ref().ok().map(|r| r.status().as_u16()),
        );
        let resp = sent.map_err(network)?;
        let status = resp.status();
        let retry_after = crate::http::retry_after(resp.headers());
        let text = resp.text().await.map_err(network)?;
        let body: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
        if !status.is_success() {
            // Entra's `error_description` names the problem (bad secret, unknown app) and
            // never echoes the secret; keep its first line.
            let what = [
                body.get("error").and_then(Value::as_str),
                body.get("error_description")
                    .and_then(Value::as_str)
                    .and_then(|d| d.lines().next()),
            ]
            .into_iter()
            .flatten()
            .collect::<Vec<_>>()
            .join(": ");
            let message = format!("the token endpoint answered {status}: {what}");
            return Err(
                if status == StatusCode::TOO_MANY_REQUESTS || status.is_server_error() {
                    CrmError::Transient {
                        status: Some(status.as_u16()),
                        retry_after,
                        message,
                    }
                } else {
                    CrmError::Auth { message }
                },
            );
        }
        let value = body
            .get("access_token")
            .and_then(Value::as_str)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| CrmError::Auth {
                message: "the token endpoint answered without an access_token".into(),
            })?
            .to_string();
        // v2 answers a number; v1-style string values are accepted too.
        let lifetime = body
            .get("expires_in")
            .and_then(|v| v.as_u64().or_else(|| v.as_str()?.parse().ok()))
            .map_or(Duration::from_secs(300), Duration::from_secs);
        let margin = TOKEN_MARGIN.min(lifetime / 4);
        Ok(CachedToken {
            value,
            renew_at: Instant::now() + lifetime.saturating_sub(margin),
        })
    }
}

/// A query answered 404 names a table the environment does not have: a configuration
/// mistake for a person to fix, not a missing record.
pub(super) fn missing_table(e: CrmError) -> CrmError {
    match e {
        CrmError::NotFound { what } => CrmError::Rejected {
            message: what,
            field: None,
        },
        other => other,
    }
}

fn same_origin(a: &str, b: &str) -> bool {
    match (url::Url::parse(a), url::Url::parse(b)) {
        (Ok(a), Ok(b)) => a.origin() == b.origin(),
        _ => false,
    }
}

pub(super) fn values(body: &Value) -> Vec<Value> {
    body.get("value")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default()
}

/// The URL without its query, for logs: filters can hold customers' e-mail addresses.
fn path_only(url: &str) -> &str {
    url.split_once('?').map_or(url, |(p, _)| p)
}

fn network(e: reqwest::Error) -> CrmError {
    let what = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "could not connect"
    } else {
        "the connection failed"
    };
    CrmError::Transient {
        status: None,
        retry_after: None,
        message: format!("Dataverse request {what}: {}", e.without_url()),
    }
}

/// Reads the answer and sorts a failure by what the caller should do (docs/dataverse.md,
/// "Errors").
async fn classify(resp: reqwest::Response) -> CrmResult<Reply> {
    let status = resp.status();
    let retry_after = crate::http::retry_after(resp.headers());
    let preference_applied = resp
        .headers()
        .get_all("preference-applied")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect::<Vec<_>>()
        .join(",");
    let text = resp.text().await.map_err(network)?;
    let body = if text.trim().is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&text).unwrap_or(Value::String(text))
    };
    if status.is_success() || status == StatusCode::NOT_MODIFIED {
        return Ok(Reply {
            body,
            preference_applied: Some(preference_applied).filter(|p| !p.is_empty()),
        });
    }
    let message = error_message(status, &body);
    Err(match status.as_u16() {
        429 => CrmError::Transient {
            status: Some(429),
            retry_after,
            message,
        },
        // 501 is the service saying "never": retrying will not change it.
        408 | 500 | 502..=599 => CrmError::Transient {
            status: Some(status.as_u16()),
            retry_after,
            message,
        },
        401 | 403 => CrmError::Auth { message },
        404 => CrmError::NotFound { what: message },
        412 => CrmError::Conflict,
        _ => CrmError::Rejected {
            field: field_in_message(&message),
            message,
        },
    })
}

fn error_message(status: StatusCode, body: &Value) -> String {
    let text = match body {
        Value::String(s) => Some(s.as_str()),
        other => other
            .pointer("/error/message")
            .and_then(Value::as_str)
            .filter(|m| !m.is_empty()),
    };
    match text {
        Some(t) => t.chars().take(MAX_MESSAGE).collect(),
        None => format!("Dataverse answered {status}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn next_links_must_stay_in_the_environment() {
        let base = "https://contoso.crm4.dynamics.com/api/data/v9.2";
        assert!(same_origin(
            "https://CONTOSO.crm4.dynamics.com/api/data/v9.2/accounts?$skiptoken=x",
            base
        ));
        assert!(!same_origin(
            "https://evil.example/api/data/v9.2/accounts",
            base
        ));
        assert!(!same_origin(
            "http://contoso.crm4.dynamics.com/api/data/v9.2/x",
            base
        ));
        assert!(!same_origin("not a url", base));
    }

    #[test]
    fn service_messages_are_read_from_the_envelope_and_cut() {
        let body = serde_json::json!({"error": {"code": "0x0", "message": "nope"}});
        assert_eq!(error_message(StatusCode::BAD_REQUEST, &body), "nope");
        let long = Value::String("x".repeat(2000));
        assert_eq!(
            error_message(StatusCode::BAD_GATEWAY, &long).len(),
            MAX_MESSAGE
        );
        assert_eq!(
            error_message(StatusCode::BAD_GATEWAY, &Value::Null),
            "Dataverse answered 502 Bad Gateway"
        );
    }
}
