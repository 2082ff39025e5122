//! The Partner Center Referrals API (and the Webhooks API's registration) over HTTP: the real
//! service, or the sandbox at another base URL.
//!
//! Every request carries a bearer token from [`TokenProvider`], `Accept: application/json`, a new
//! `client-request-id` and the `MS-CorrelationId` of the logical call (shared by its retries and
//! pages, so one operation can be followed through the service's logs). A 401 renews the token
//! once; throttling, 5xx and network failures go through [`RetryPolicy::run`].

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use reqwest::header::{self, HeaderMap, HeaderValue};
use reqwest::{Method, StatusCode};
use serde::Deserialize;
use tokio::time::Instant;
use uuid::Uuid;

use super::refresh_store::RefreshTokenStore;
use super::token::{
    AccessToken, PartnerCenterAuth, PartnerCenterConfigError, TokenProvider, UserSession,
};
use super::{AuthFailure, PartnerCenter, PartnerCenterError, PatchOp, PcResult};
use crate::referral::Referral;
use crate::retry::{RetryPolicy, Transient};

/// The Referrals API's host.
pub const DEFAULT_API_BASE_URL: &str = "https://api.partner.microsoft.com";
/// The Webhooks API's host (its own, not the Referrals API's).
pub const DEFAULT_WEBHOOKS_BASE_URL: &str = "https://api.partnercenter.microsoft.com";
/// The Webhooks API's token audience.
pub const PARTNER_CENTER_RESOURCE: &str = "https://api.partnercenter.microsoft.com";
/// How long one request (connect, send, read the whole answer) may take.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

const REFERRALS_PATH: &str = "/v1.0/engagements/referrals";
const REGISTRATION_PATH: &str = "/webhooks/v1/registration";
/// Error text from the service is kept to this length in messages (the documented maximum).
const MAX_MESSAGE_CHARS: usize = 1024;

/// Where the Referrals API is and how patient to be with it.
#[derive(Debug, Clone)]
pub struct PartnerCenterConfig {
    /// Scheme and host (and an optional path prefix) the `/v1.0/engagements/referrals` routes
    /// hang off (default [`DEFAULT_API_BASE_URL`]).
    pub api_base_url: String,
    /// Scheme and host the `/webhooks/v1/registration` routes hang off (default
    /// [`DEFAULT_WEBHOOKS_BASE_URL`]).
    pub webhooks_base_url: String,
    /// Per request, token requests included (default [`DEFAULT_TIMEOUT`]).
    pub timeout: Duration,
    pub retry: RetryPolicy,
}

impl Default for PartnerCenterConfig {
    fn default() -> Self {
        PartnerCenterConfig {
            api_base_url: DEFAULT_API_BASE_URL.to_string(),
            webhooks_base_url: DEFAULT_WEBHOOKS_BASE_URL.to_string(),
            timeout: DEFAULT_TIMEOUT,
            retry: RetryPolicy::default(),
        }
    }
}

/// The [`PartnerCenter`] port over HTTP.
#[derive(Debug)]
pub struct PartnerCenterClient {
    http: reqwest::Client,
    referrals_url: url::Url,
    registration_url: url::Url,
    tokens: TokenProvider,
    /// The same app and user, for the Webhooks API's audience.
    webhook_tokens: TokenProvider,
    retry: RetryPolicy,
}

/// Which API a request goes to, and so which token it carries.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Api {
    Referrals,
    Webhooks,
}

/// A webhook registration: where Partner Center delivers which events.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookRegistration {
    pub webhook_url: String,
    pub webhook_events: Vec<String>,
    /// The signature comes in `x-ms-signature` instead of `Authorization`.
    pub signature_to_ms_header: bool,
}

/// What [`PartnerCenterClient::ensure_webhook`] had to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RegistrationChange {
    Created,
    /// The registration pointed elsewhere or named other events; `previous` is what it was.
    Replaced {
        previous: WebhookRegistration,
    },
    Unchanged,
}

/// What Partner Center knows of one validation (`test-created`) event's delivery: the answer
/// of `GET /webhooks/v1/registration/validationEvents/{correlationId}`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ValidationEventStatus {
    #[serde(alias = "CorrelationId", default)]
    pub correlation_id: String,
    /// `completed` once the service stopped trying; anything else while it still may.
    #[serde(alias = "Status", default)]
    pub status: String,
    /// Where the event was delivered.
    #[serde(alias = "CallbackUrl", default)]
    pub callback_url: Option<String>,
    /// One per delivery attempt, oldest first.
    #[serde(alias = "Results", default)]
    pub results: Vec<DeliveryAttempt>,
}

/// One attempt to deliver a validation event, as the receiver (or the network) answered it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeliveryAttempt {
    /// The HTTP status by its .NET name (`OK`, `InternalServerError`…).
    #[serde(alias = "ResponseCode", default)]
    pub response_code: String,
    #[serde(alias = "ResponseMessage", default)]
    pub response_message: String,
    /// True when the attempt failed before any HTTP answer (connection, timeout).
    #[serde(alias = "SystemError", default)]
    pub system_error: bool,
    #[serde(alias = "DateTimeUtc", default)]
    pub date_time_utc: Option<String>,
}

impl DeliveryAttempt {
    /// The receiver answered 2xx. The service names statuses as .NET's `HttpStatusCode` does;
    /// a number is accepted too.
    pub fn succeeded(&self) -> bool {
        const SUCCESS_NAMES: [&str; 7] = [
            "ok",
            "created",
            "accepted",
            "nonauthoritativeinformation",
            "nocontent",
            "resetcontent",
            "partialcontent",
        ];
        let code = self.response_code.trim();
        let by_name = SUCCESS_NAMES
            .iter()
            .any(|name| code.replace([' ', '_'], "").eq_ignore_ascii_case(name));
        let by_number = code.parse::<u16>().is_ok_and(|n| (200..300).contains(&n));
        !self.system_error && (by_name || by_number)
    }
}

impl ValidationEventStatus {
    /// The service has stopped trying to deliver the event.
    pub fn is_completed(&self) -> bool {
        self.status.eq_ignore_ascii_case("completed")
    }

    /// Some attempt reached the receiver and was accepted.
    pub fn delivered(&self) -> bool {
        self.results.iter().any(DeliveryAttempt::succeeded)
    }

    /// The latest attempt, whose answer explains a failed delivery.
    pub fn last_attempt(&self) -> Option<&DeliveryAttempt> {
        self.results.last()
    }
}

#[derive(Deserialize)]
struct ValidationEventSent {
    #[serde(rename = "correlationId", alias = "CorrelationId")]
    correlation_id: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RegistrationBody {
    #[serde(alias = "WebhookUrl", default)]
    webhook_url: String,
    #[serde(alias = "WebhookEvents", default)]
    webhook_events: Vec<String>,
    #[serde(alias = "SignatureTokenToMsSignatureHeader", default)]
    signature_token_to_ms_signature_header: bool,
}

/// One HTTP answer, read whole inside the attempt so a body that stalls counts as a timeout.
struct Reply {
    status: StatusCode,
    headers: HeaderMap,
    body: Vec<u8>,
}

/// A failed attempt, and whether sending the request again is safe.
#[derive(Debug)]
struct AttemptError {
    error: PartnerCenterError,
    /// False when the request may have been carried out (a create whose answer was lost): a
    /// retry could then make a duplicate, so the caller decides what to do instead.
    resendable: bool,
}

impl Transient for AttemptError {
    fn is_transient(&self) -> bool {
        self.resendable && self.error.is_transient()
    }
    fn retry_after(&self) -> Option<Duration> {
        Transient::retry_after(&self.error)
    }
}

impl From<PartnerCenterError> for AttemptError {
    fn from(error: PartnerCenterError) -> AttemptError {
        AttemptError {
            error,
            resendable: true,
        }
    }
}

/// Whether a request may be sent again after an answer that leaves its effect unknown.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Idempotency {
    /// Reads, and writes that land on the same state when repeated (PATCH `replace`, PUT under
    /// `If-Match`: a repeat after a lost answer fails with 412 at worst).
    Safe,
    /// A create: repeating it after the service may have acted could make a second referral.
    Unsafe,
}

struct Request<'a> {
    method: Method,
    url: url::Url,
    body: Option<Vec<u8>>,
    if_match: Option<&'a str>,
    correlation_id: Uuid,
    idempotency: Idempotency,
    api: Api,
}

#[derive(Deserialize)]
struct Page {
    #[serde(default)]
    value: Vec<Referral>,
    #[serde(rename = "@odata.nextLink", default)]
    next_link: Option<String>,
}

impl PartnerCenterClient {
    /// Checks the URLs and builds the HTTP client; no request is made until the first call.
    pub fn new(
        config: PartnerCenterConfig,
        auth: PartnerCenterAuth,
    ) -> Result<PartnerCenterClient, PartnerCenterConfigError> {
        PartnerCenterClient::with_token_store(config, auth, None)
    }

    /// Like [`PartnerCenterClient::new`], keeping each rotated refresh token in `store` (and
    /// looking there for a newer one when Entra refuses the one in use).
    pub fn with_token_store(
        config: PartnerCenterConfig,
        auth: PartnerCenterAuth,
        store: Option<Arc<dyn RefreshTokenStore>>,
    ) -> Result<PartnerCenterClient, PartnerCenterConfigError> {
        let base = super::token::parse_http_url("api_base_url", &config.api_base_url)?;
        let referrals_url = super::token::parse_http_url(
            "api_base_url",
            &format!("{}{REFERRALS_PATH}", base.as_str().trim_end_matches('/')),
        )?;
        let http = crate::http::client_builder()
            .timeout(config.timeout)
            .connect_timeout(config.timeout.min(Duration::from_secs(10)))
            // The API never redirects; following one could carry the bearer token elsewhere.
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("cosell-connector/", env!("CARGO_PKG_VERSION")))
            .build()?;
        let webhooks =
            super::token::parse_http_url("webhooks_base_url", &config.webhooks_base_url)?;
        let registration_url = super::token::parse_http_url(
            "webhooks_base_url",
            &format!(
                "{}{REGISTRATION_PATH}",
                webhooks.as_str().trim_end_matches('/')
            ),
        )?;
        let resource = auth.resource.clone();
        let session = UserSession::new(auth, http.clone(), store)?;
        let tokens = TokenProvider::for_resource(Arc::clone(&session), resource);
        let webhook_tokens = TokenProvider::for_resource(session, PARTNER_CENTER_RESOURCE);
        Ok(PartnerCenterClient {
            http,
            referrals_url,
            registration_url,
            tokens,
            webhook_tokens,
            retry: config.retry,
        })
    }

    /// What the Referrals API token says of the user it acts for (`None` when the token is not
    /// a JWT): signing in if need be, so this is also a check that the sign-in works.
    pub async fn signed_in_user(&self) -> PcResult<Option<crate::entra::TokenClaims>> {
        let token = self.tokens.access_token().await.inspect_err(|e| {
            if let PartnerCenterError::Auth { kind, message } = e {
                tracing::error!(kind = kind.name(), error = %message, "cannot act as the Referral admin in Partner Center");
                crate::metrics::count_here(crate::metrics::Metric::PartnerCenterAuthFailed, 1.0);
            }
        })?;
        Ok(token.claims())
    }

    /// Replaces the whole referral under `If-Match` = its eTag (the documented PUT), returning
    /// the stored result with its new eTag. A stale eTag gives
    /// [`PartnerCenterError::PreconditionFailed`].
    pub async fn put_referral(&self, referral: &Referral) -> PcResult<Referral> {
        let id = referral
            .id
            .as_deref()
            .filter(|id| !id.is_empty())
            .ok_or_else(|| PartnerCenterError::Rejected {
                message: "a referral without an id cannot replace one in Partner Center".into(),
                target: Some("id".into()),
            })?;
        let e_tag = referral
            .e_tag
            .as_deref()
            .filter(|t| !t.is_empty())
            .ok_or_else(|| PartnerCenterError::Rejected {
                message: format!(
                    "referral {id} has no eTag; Partner Center requires If-Match to replace it"
                ),
                target: Some("eTag".into()),
            })?;
        let reply = self
            .execute(Request {
                method: Method::PUT,
                url: self.referral_url(id),
                body: Some(to_json(referral)?),
                if_match: Some(e_tag),
                correlation_id: Uuid::new_v4(),
                idempotency: Idempotency::Safe,
                api: Api::Referrals,
            })
            .await?;
        match reply.status.as_u16() {
            200 | 201 => parse_referral(&reply),
            204 => self.get_referral(id).await?.ok_or_else(|| not_found(id)),
            _ => Err(refusal(&reply, Some(id))),
        }
    }

    /// The current webhook registration, if there is one.
    pub async fn webhook_registration(&self) -> PcResult<Option<WebhookRegistration>> {
        let reply = self
            .execute(self.registration_request(Method::GET, None))
            .await?;
        match reply.status.as_u16() {
            200 => {
                let body: RegistrationBody = serde_json::from_slice(&reply.body)
                    .map_err(|e| unreadable(reply.status, "webhook registration", &e))?;
                Ok(Some(WebhookRegistration {
                    webhook_url: body.webhook_url,
                    webhook_events: body.webhook_events,
                    signature_to_ms_header: body.signature_token_to_ms_signature_header,
                }))
            }
            404 => Ok(None),
            _ => Err(refusal(&reply, None)),
        }
    }

    /// Makes the registration `wanted`: none → POST; another URL or other events → PUT; a 409
    /// on POST (someone registered meanwhile) → PUT. Only one registration exists per partner,
    /// so replacing one takes the events away from wherever they went before: the change says
    /// what it was.
    pub async fn ensure_webhook(
        &self,
        wanted: &WebhookRegistration,
    ) -> PcResult<RegistrationChange> {
        let current = self.webhook_registration().await?;
        let change = match &current {
            None => RegistrationChange::Created,
            Some(c) if same_registration(c, wanted) => return Ok(RegistrationChange::Unchanged),
            Some(c) => RegistrationChange::Replaced {
                previous: c.clone(),
            },
        };
        let body = serde_json::to_vec(&serde_json::json!({
            "WebhookUrl": wanted.webhook_url,
            "WebhookEvents": wanted.webhook_events,
            "SignatureTokenToMsSignatureHeader": wanted.signature_to_ms_header,
        }))
        .map_err(|e| PartnerCenterError::Rejected {
            message: format!("the registration cannot be written as JSON: {e}"),
            target: None,
        })?;
        let method = if current.is_none() {
            Method::POST
        } else {
            Method::PUT
        };
        let mut reply = self
            .execute(self.registration_request(method.clone(), Some(body.clone())))
            .await?;
        if method == Method::POST && reply.status == StatusCode::CONFLICT {
            reply = self
                .execute(self.registration_request(Method::PUT, Some(body)))
                .await?;
        }
        match reply.status.as_u16() {
            200 | 201 => Ok(change),
            _ => Err(refusal(&reply, None)),
        }
    }

    /// Asks Partner Center to send a `test-created` event to the registered URL, returning the
    /// correlation id to follow its delivery with [`Self::validation_event_status`]. The
    /// registration must include `test-created`. The service allows two a minute: a third is
    /// [`PartnerCenterError::Transient`] with `retry_after` (after the retry policy's own
    /// waiting, for a `Retry-After` it is willing to wait out).
    pub async fn send_validation_event(&self) -> PcResult<String> {
        let reply = self
            .execute(Request {
                method: Method::POST,
                url: self.validation_events_url(None),
                // An empty body, sent as such: a POST without Content-Length can meet a 411.
                body: Some(Vec::new()),
                if_match: None,
                correlation_id: Uuid::new_v4(),
                // A repeat only sends another test event, which changes nothing.
                idempotency: Idempotency::Safe,
                api: Api::Webhooks,
            })
            .await?;
        match reply.status.as_u16() {
            200..=202 => {
                let sent: ValidationEventSent = serde_json::from_slice(&reply.body)
                    .map_err(|e| unreadable(reply.status, "validation event", &e))?;
                Ok(sent.correlation_id)
            }
            _ => Err(refusal(&reply, None)),
        }
    }

    /// The delivery status of a validation event, `None` while Partner Center does not know
    /// the correlation id (never sent, purged after 7 days, or not recorded yet).
    pub async fn validation_event_status(
        &self,
        correlation_id: &str,
    ) -> PcResult<Option<ValidationEventStatus>> {
        let reply = self
            .execute(Request {
                method: Method::GET,
                url: self.validation_events_url(Some(correlation_id)),
                body: None,
                if_match: None,
                correlation_id: Uuid::new_v4(),
                idempotency: Idempotency::Safe,
                api: Api::Webhooks,
            })
            .await?;
        match reply.status.as_u16() {
            200 => serde_json::from_slice(&reply.body)
                .map(Some)
                .map_err(|e| unreadable(reply.status, "validation event status", &e)),
            404 => Ok(None),
            _ => Err(refusal(&reply, None)),
        }
    }

    fn validation_events_url(&self, correlation_id: Option<&str>) -> url::Url {
        let mut url = self.registration_url.clone();
        if let Ok(mut segments) = url.path_segments_mut() {
            segments.push("validationEvents");
            if let Some(id) = correlation_id {
                segments.push(id);
            }
        }
        url
    }

    fn registration_request(&self, method: Method, body: Option<Vec<u8>>) -> Request<'static> {
        Request {
            method,
            url: self.registration_url.clone(),
            body,
            if_match: None,
            correlation_id: Uuid::new_v4(),
            // Registering twice lands on the same registration.
            idempotency: Idempotency::Safe,
            api: Api::Webhooks,
        }
    }

    fn referral_url(&self, id: &str) -> url::Url {
        let mut url = self.referrals_url.clone();
        if let Ok(mut segments) = url.path_segments_mut() {
            segments.push(id);
        }
        url
    }

    /// Every referral the filter selects, following `@odata.nextLink` to the end.
    async fn list(&self, filter: &str, order_by: Option<&str>) -> PcResult<Vec<Referral>> {
        let mut query = format!("$filter={}", crate::http::encode_query_value(filter));
        if let Some(order) = order_by {
            query.push_str(&format!(
                "&$orderby={}",
                crate::http::encode_query_value(order)
            ));
        }
        let mut url = self.referrals_url.clone();
        url.set_query(Some(&query));
        let correlation_id = Uuid::new_v4();
        let mut all = Vec::new();
        loop {
            let reply = self
                .execute(Request {
                    method: Method::GET,
                    url: url.clone(),
                    body: None,
                    if_match: None,
                    correlation_id,
                    idempotency: Idempotency::Safe,
                    api: Api::Referrals,
                })
                .await?;
            if reply.status != StatusCode::OK {
                return Err(refusal(&reply, None));
            }
            let page: Page = serde_json::from_slice(&reply.body)
                .map_err(|e| unreadable(reply.status, "list of referrals", &e))?;
            all.extend(page.value);
            let Some(next) = page.next_link.filter(|l| !l.is_empty()) else {
                return Ok(all);
            };
            let next = self.follow(&url, &next)?;
            url = next;
        }
    }

    /// Resolves a next-page link, which must stay on the API's own origin: the bearer token
    /// goes with it.
    fn follow(&self, current: &url::Url, link: &str) -> PcResult<url::Url> {
        let next = current
            .join(link)
            .map_err(|e| PartnerCenterError::Transient {
                status: None,
                retry_after: None,
                message: format!("Partner Center's next-page link is not a URL ({e})"),
            })?;
        let base = &self.referrals_url;
        let same_origin = next.scheme() == base.scheme()
            && next.host_str() == base.host_str()
            && next.port_or_known_default() == base.port_or_known_default();
        if !same_origin {
            return Err(PartnerCenterError::Transient {
                status: None,
                retry_after: None,
                message: format!(
                    "Partner Center's next-page link leaves {}; it was not followed",
                    base.origin().ascii_serialization()
                ),
            });
        }
        if &next == current {
            return Err(PartnerCenterError::Transient {
                status: None,
                retry_after: None,
                message: "Partner Center's next-page link repeats the page just read".into(),
            });
        }
        Ok(next)
    }

    /// Sends `req` under the retry policy and returns any answer the caller must interpret
    /// (success, 400, 404, 409, 412…). Throttling, 5xx, timeouts and network failures come back
    /// as `Transient` once the policy gives up; 401 (after one renewal) and 403 as `Auth`.
    async fn execute(&self, req: Request<'_>) -> PcResult<Reply> {
        let result = self
            .retry
            .run(|| self.attempt(&req))
            .await
            .map_err(|e| e.error);
        if let Err(PartnerCenterError::Auth { kind, message }) = &result
            && kind.blocks_every_call()
        {
            tracing::error!(kind = kind.name(), error = %message, "cannot act as the Referral admin in Partner Center");
            crate::metrics::count_here(crate::metrics::Metric::PartnerCenterAuthFailed, 1.0);
        }
        result
    }

    async fn attempt(&self, req: &Request<'_>) -> Result<Reply, AttemptError> {
        let tokens = match req.api {
            Api::Referrals => &self.tokens,
            Api::Webhooks => &self.webhook_tokens,
        };
        let token = tokens.access_token().await?;
        let reply = self.send(req, &token).await?;
        let (reply, token) = if reply.status == StatusCode::UNAUTHORIZED {
            // The service refused the token before doing anything, so resending is safe even
            // for a create.
            let renewed = tokens.renew_refused(&token).await?;
            (self.send(req, &renewed).await?, renewed)
        } else {
            (reply, token)
        };
        let status = reply.status.as_u16();
        let answered = || {
            format!(
                "{} {} answered {status}: {}",
                req.method,
                route(req),
                service_message(&reply.body).message
            )
        };
        match status {
            // Partner Center's answer to a token without the MFA claim is not documented beyond
            // the 401; the token itself tells whether that is the reason.
            401 if token.mfa() == Some(false) => Err(PartnerCenterError::Auth {
                kind: AuthFailure::MfaClaimMissing,
                message: format!(
                    "the access token has no MFA claim (its amr lacks 'mfa'), and Partner Center requires multifactor authentication for App+User calls: sign the Referral admin in with `cosell auth login` ({})",
                    answered()
                ),
            }
            .into()),
            401 => Err(PartnerCenterError::Auth {
                kind: AuthFailure::Credentials,
                message: answered(),
            }
            .into()),
            403 => Err(PartnerCenterError::Auth {
                kind: AuthFailure::Forbidden,
                message: answered(),
            }
            .into()),
            408 | 429 | 500..=599 => {
                let error = PartnerCenterError::Transient {
                    status: Some(status),
                    retry_after: crate::http::retry_after(&reply.headers),
                    message: service_message(&reply.body).message,
                };
                // 429 and 503 mean the service turned the request away; any other 5xx may
                // come after the work was done.
                let resendable =
                    req.idempotency == Idempotency::Safe || matches!(status, 429 | 503);
                Err(AttemptError { error, resendable })
            }
            _ => Ok(reply),
        }
    }

    async fn send(&self, req: &Request<'_>, token: &AccessToken) -> Result<Reply, AttemptError> {
        let client_request_id = Uuid::new_v4();
        let mut builder = self
            .http
            .request(req.method.clone(), req.url.clone())
            .bearer_auth(token.secret())
            .header(header::ACCEPT, "application/json")
            .header("client-request-id", client_request_id.to_string())
            .header("MS-CorrelationId", req.correlation_id.to_string());
        if let Some(tag) = req.if_match {
            let value = HeaderValue::from_str(tag).map_err(|_| PartnerCenterError::Rejected {
                message: "the eTag is not a valid If-Match header value".into(),
                target: Some("eTag".into()),
            })?;
            builder = builder.header(header::IF_MATCH, value);
        }
        if let Some(body) = &req.body {
            builder = builder
                .header(header::CONTENT_TYPE, "application/json")
                .body(body.clone());
        }
        let started = Instant::now();
        let outcome = async {
            let response = builder.send().await?;
            let status = response.status();
            let headers = response.headers().clone();
            let body = response.bytes().await?.to_vec();
            Ok::<_, reqwest::Error>(Reply {
                status,
                headers,
                body,
            })
        }
        .await;
        let elapsed_ms = started.elapsed().as_millis() as u64;
        crate::metrics::api_call(
            crate::metrics::Api::PartnerCenter,
            started.into_std(),
            outcome.as_ref().ok().map(|r| r.status.as_u16()),
        );
        match outcome {
            Ok(reply) => {
                tracing::debug!(
                    method = %req.method,
                    route = route(req),
                    status = reply.status.as_u16(),
                    elapsed_ms,
                    %client_request_id,
                    correlation_id = %req.correlation_id,
                    "partner center call"
                );
                Ok(reply)
            }
            Err(e) => {
                tracing::warn!(
                    method = %req.method,
                    route = route(req),
                    elapsed_ms,
                    %client_request_id,
                    correlation_id = %req.correlation_id,
                    error = %e,
                    "partner center call failed without an answer"
                );
                // A refused connection means nothing was sent; after that, the service may
                // have acted on the request even though no answer arrived.
                let resendable = req.idempotency == Idempotency::Safe || e.is_connect();
                let what = if e.is_timeout() {
                    "no answer in time"
                } else if e.is_connect() {
                    "cannot connect"
                } else {
                    "the connection failed"
                };
                Err(AttemptError {
                    error: PartnerCenterError::Transient {
                        status: None,
                        retry_after: None,
                        message: format!(
                            "{} {}: {what} (client-request-id {client_request_id}): {e}",
                            req.method,
                            route(req)
                        ),
                    },
                    resendable,
                })
            }
        }
    }
}

#[async_trait]
impl PartnerCenter for PartnerCenterClient {
    async fn get_referral(&self, id: &str) -> PcResult<Option<Referral>> {
        let reply = self
            .execute(Request {
                method: Method::GET,
                url: self.referral_url(id),
                body: None,
                if_match: None,
                correlation_id: Uuid::new_v4(),
                idempotency: Idempotency::Safe,
                api: Api::Referrals,
            })
            .await?;
        match reply.status.as_u16() {
            200 => parse_referral(&reply).map(Some),
            404 => Ok(None),
            _ => Err(refusal(&reply, Some(id))),
        }
    }

    async fn find_by_external_reference(&self, crm_id: &str) -> PcResult<Option<Referral>> {
        let filter = format!(
            "externalReferenceId eq {}",
            crate::http::odata_string(crm_id)
        );
        let found = self.list(&filter, None).await?;
        if found.len() > 1 {
            tracing::warn!(
                crm_id,
                count = found.len(),
                "several Partner Center referrals carry the same externalReferenceId"
            );
        }
        // The service compares strings without regard to case; an exact match wins.
        let exact = found
            .iter()
            .position(|r| r.external_reference_id.as_deref() == Some(crm_id));
        let mut found = found;
        Ok(match exact {
            Some(i) => Some(found.swap_remove(i)),
            None => found.into_iter().next(),
        })
    }

    async fn engagement_referrals(&self, engagement_id: &str) -> PcResult<Vec<Referral>> {
        let filter = format!(
            "engagementId eq {}",
            crate::http::odata_string(engagement_id)
        );
        self.list(&filter, None).await
    }

    /// Every referral changed after `since`, oldest change first, across all pages: the
    /// reconciliation poller's view. The watermark is written with the service's seven
    /// fractional digits, rounded down, so nothing changed at `since` itself is missed.
    async fn list_changed_since(&self, since: DateTime<Utc>) -> PcResult<Vec<Referral>> {
        let filter = format!("updatedDateTime gt {}", odata_timestamp(since));
        self.list(&filter, Some("updatedDateTime asc")).await
    }

    async fn create_referral(&self, referral: &Referral) -> PcResult<Referral> {
        let reply = self
            .execute(Request {
                method: Method::POST,
                url: self.referrals_url.clone(),
                body: Some(to_json(referral)?),
                if_match: None,
                correlation_id: Uuid::new_v4(),
                idempotency: Idempotency::Unsafe,
                api: Api::Referrals,
            })
            .await?;
        match reply.status.as_u16() {
            200 | 201 => parse_referral(&reply),
            _ => Err(refusal(&reply, None)),
        }
    }

    async fn patch_referral(
        &self,
        id: &str,
        e_tag: Option<&str>,
        ops: &[PatchOp],
    ) -> PcResult<Option<String>> {
        let body = serde_json::to_vec(ops).map_err(|e| PartnerCenterError::Rejected {
            message: format!("the patch cannot be written as JSON: {e}"),
            target: None,
        })?;
        let reply = self
            .execute(Request {
                method: Method::PATCH,
                url: self.referral_url(id),
                body: Some(body),
                if_match: e_tag,
                correlation_id: Uuid::new_v4(),
                idempotency: Idempotency::Safe,
                api: Api::Referrals,
            })
            .await?;
        match reply.status.as_u16() {
            204 => Ok(etag_header(&reply.headers)),
            200 => {
                let from_body = serde_json::from_slice::<Referral>(&reply.body)
                    .ok()
                    .and_then(|r| r.e_tag);
                Ok(from_body.or_else(|| etag_header(&reply.headers)))
            }
            _ => Err(refusal(&reply, Some(id))),
        }
    }
}

/// Same URL and the same events, in any order and case.
fn same_registration(a: &WebhookRegistration, b: &WebhookRegistration) -> bool {
    let events = |r: &WebhookRegistration| {
        let mut e: Vec<String> = r
            .webhook_events
            .iter()
            .map(|e| e.to_ascii_lowercase())
            .collect();
        e.sort();
        e.dedup();
        e
    };
    a.webhook_url == b.webhook_url
        && events(a) == events(b)
        && a.signature_to_ms_header == b.signature_to_ms_header
}

/// The error for an answer the call did not expect: 400 and the like, 404, 409, 412.
fn refusal(reply: &Reply, id: Option<&str>) -> PartnerCenterError {
    let status = reply.status.as_u16();
    let details = service_message(&reply.body);
    match status {
        404 => match id {
            Some(id) => not_found(id),
            None => PartnerCenterError::Rejected {
                message: details.message,
                target: details.target,
            },
        },
        // `resourceModified` (409) is how the service reports a lost race besides 412.
        409 | 412 => PartnerCenterError::PreconditionFailed,
        400..=499 => PartnerCenterError::Rejected {
            message: details.message,
            target: details.target,
        },
        _ => PartnerCenterError::Transient {
            status: Some(status),
            retry_after: None,
            message: format!("unexpected answer: {}", details.message),
        },
    }
}

fn not_found(id: &str) -> PartnerCenterError {
    PartnerCenterError::NotFound { id: id.to_string() }
}

struct ServiceMessage {
    message: String,
    target: Option<String>,
}

/// The message and target of Partner Center's error envelope, of the plain throttling body, or
/// the start of whatever else came back.
fn service_message(body: &[u8]) -> ServiceMessage {
    let json: Option<serde_json::Value> = serde_json::from_slice(body).ok();
    let text = |v: Option<&serde_json::Value>| {
        v.and_then(serde_json::Value::as_str)
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_string)
    };
    if let Some(json) = &json {
        if let Some(error) = json.get("error") {
            let code = text(error.get("code"));
            let message = text(error.get("message"));
            let target = text(error.get("target"));
            let message = match (code, message) {
                (_, Some(m)) => m,
                (Some(c), None) => c,
                (None, None) => "no error message".to_string(),
            };
            return ServiceMessage {
                message: truncate(&message),
                target,
            };
        }
        if let Some(m) = text(json.get("message")) {
            return ServiceMessage {
                message: truncate(&m),
                target: None,
            };
        }
    }
    let raw = String::from_utf8_lossy(body);
    let raw = raw.trim();
    ServiceMessage {
        message: if raw.is_empty() {
            "no error message".to_string()
        } else {
            truncate(raw)
        },
        target: None,
    }
}

fn truncate(s: &str) -> String {
    if s.chars().count() <= MAX_MESSAGE_CHARS {
        s.to_string()
    } else {
        s.chars().take(MAX_MESSAGE_CHARS).collect::<String>() + "…"
    }
}

fn parse_referral(reply: &Reply) -> PcResult<Referral> {
    let mut referral: Referral = serde_json::from_slice(&reply.body)
        .map_err(|e| unreadable(reply.status, "referral", &e))?;
    if referral.e_tag.is_none() {
        referral.e_tag = etag_header(&reply.headers);
    }
    Ok(referral)
}

fn unreadable(status: StatusCode, what: &str, e: &serde_json::Error) -> PartnerCenterError {
    PartnerCenterError::Transient {
        status: Some(status.as_u16()),
        retry_after: None,
        message: format!("Partner Center's {what} could not be read: {e}"),
    }
}

fn to_json(referral: &Referral) -> PcResult<Vec<u8>> {
    serde_json::to_vec(referral).map_err(|e| PartnerCenterError::Rejected {
        message: format!("the referral cannot be written as JSON: {e}"),
        target: None,
    })
}

fn etag_header(headers: &HeaderMap) -> Option<String> {
    headers
        .get(header::ETAG)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
        .filter(|t| !t.is_empty())
}

/// The path of a request for logs and messages, without the query: ids are not secret, but
/// filters can carry customer data.
fn route(req: &Request<'_>) -> String {
    req.url.path().to_string()
}

/// UTC with seven fractional digits (100 ns ticks), rounded down.
fn odata_timestamp(t: DateTime<Utc>) -> String {
    format!(
        "{}.{:07}Z",
        t.format("%Y-%m-%dT%H:%M:%S"),
        t.timestamp_subsec_nanos() / 100
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_have_seven_digits_rounded_down() {
        let t = DateTime::parse_from_rfc3339("2024-05-01T10:20:30.123456789Z")
            .map(|t| t.with_timezone(&Utc))
            .unwrap_or_default();
        assert_eq!(odata_timestamp(t), "2024-05-01T10:20:30.1234567Z");
    }

    #[test]
    fn a_validation_status_reads_the_documented_shape() {
        let status: ValidationEventStatus = serde_json::from_str(
            r#"{"correlationId":"c-1","partnerId":"p","status":"completed",
                "callbackUrl":"https://connector.example/hook",
                "results":[
                  {"responseCode":"InternalServerError","responseMessage":"500 Internal Server Error","systemError":false,"dateTimeUtc":"2024-05-01T10:00:00.0000000Z"},
                  {"responseCode":"OK","responseMessage":"","systemError":false,"dateTimeUtc":"2024-05-01T10:00:02.0000000Z"}]}"#,
        )
        .expect("documented shape");
        assert!(status.is_completed());
        assert!(status.delivered());
        assert_eq!(status.results.len(), 2);
        assert_eq!(
            status.callback_url.as_deref(),
            Some("https://connector.example/hook")
        );

        let failed: ValidationEventStatus = serde_json::from_str(
            r#"{"CorrelationId":"c-2","Status":"Completed","Results":[{"ResponseCode":"Error","ResponseMessage":"The receiver could not be reached.","SystemError":true}]}"#,
        )
        .expect("PascalCase");
        assert!(failed.is_completed());
        assert!(!failed.delivered());
        assert_eq!(
            failed.last_attempt().map(|a| a.response_message.as_str()),
            Some("The receiver could not be reached.")
        );
        let pending: ValidationEventStatus =
            serde_json::from_str(r#"{"correlationId":"c-3","status":"inProgress"}"#)
                .expect("no results yet");
        assert!(!pending.is_completed() && !pending.delivered());
    }

    #[test]
    fn only_2xx_attempts_count_as_delivered() {
        let attempt = |code: &str, system_error: bool| DeliveryAttempt {
            response_code: code.into(),
            response_message: String::new(),
            system_error,
            date_time_utc: None,
        };
        for code in ["OK", "ok", "NoContent", "Accepted", "204"] {
            assert!(attempt(code, false).succeeded(), "{code}");
        }
        for code in [
            "InternalServerError",
            "NotFound",
            "Forbidden",
            "500",
            "",
            "Error",
        ] {
            assert!(!attempt(code, false).succeeded(), "{code}");
        }
        assert!(
            !attempt("OK", true).succeeded(),
            "a system error is a failure"
        );
    }

    #[test]
    fn error_envelopes_give_message_and_target() {
        let m = service_message(
            br#"{"error":{"code":"invalidRequest","message":"country is bad","target":"customerProfile.address.country"}}"#,
        );
        assert_eq!(m.message, "country is bad");
        assert_eq!(m.target.as_deref(), Some("customerProfile.address.country"));
        let m = service_message(br#"{"statusCode":429,"message":"Rate limit is exceeded."}"#);
        assert_eq!(m.message, "Rate limit is exceeded.");
        assert_eq!(service_message(b"").message, "no error message");
    }
}
