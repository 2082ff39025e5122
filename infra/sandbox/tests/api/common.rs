use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use cosell_sandbox::config::{
    ADMIN_USER, CLIENT_ID, CLIENT_SECRET, PARTNER_CENTER_AUDIENCE, READER_USER, REFERRALS_AUDIENCE,
    USER_PASSWORD,
};
use cosell_sandbox::{Sandbox, SandboxConfig};
use reqwest::{Method, Response};
use serde_json::{Value, json};

/// A webhook delivery as the receiver saw it.
#[derive(Debug, Clone)]
pub struct Received {
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Received {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).expect("delivery body is JSON")
    }
}

#[derive(Default)]
struct ReceiverState {
    received: Mutex<Vec<Received>>,
    /// Statuses to answer with, in order, before answering 200.
    script: Mutex<Vec<u16>>,
    delay: Mutex<Duration>,
}

/// A local HTTP endpoint that records webhook deliveries.
pub struct Receiver {
    pub url: String,
    state: Arc<ReceiverState>,
}

impl Receiver {
    pub async fn start() -> Receiver {
        let state = Arc::new(ReceiverState::default());
        let app = axum::Router::new()
            .route("/hook", axum::routing::post(receive))
            .with_state(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind receiver");
        let url = format!("http://{}/hook", listener.local_addr().expect("addr"));
        tokio::spawn(async move {
            axum::serve(listener, app).await.ok();
        });
        Receiver { url, state }
    }

    pub fn received(&self) -> Vec<Received> {
        self.state.received.lock().expect("lock").clone()
    }

    /// The next deliveries get these statuses, then 200.
    pub fn answer_with(&self, statuses: &[u16]) {
        *self.state.script.lock().expect("lock") = statuses.to_vec();
    }

    pub fn delay(&self, d: Duration) {
        *self.state.delay.lock().expect("lock") = d;
    }

    pub async fn wait_for(&self, n: usize) -> Vec<Received> {
        wait_until(|| self.received().len() >= n).await;
        self.received()
    }

    /// Names and referral ids of what arrived, in arrival order.
    pub fn events(&self) -> Vec<(String, String)> {
        self.received()
            .iter()
            .map(|r| {
                let v = r.json();
                let uri = v["ResourceUri"].as_str().unwrap_or_default().to_string();
                (
                    v["EventName"].as_str().unwrap_or_default().to_string(),
                    uri.rsplit('/').next().unwrap_or_default().to_string(),
                )
            })
            .collect()
    }
}

async fn receive(
    State(state): State<Arc<ReceiverState>>,
    headers: HeaderMap,
    body: Bytes,
) -> StatusCode {
    // Recorded before any delay: a sender that gives up drops this handler mid-sleep.
    state
        .received
        .lock()
        .expect("lock")
        .push(Received { headers, body });
    let status = {
        let mut script = state.script.lock().expect("lock");
        if script.is_empty() {
            StatusCode::OK
        } else {
            StatusCode::from_u16(script.remove(0)).unwrap_or(StatusCode::OK)
        }
    };
    let delay = *state.delay.lock().expect("lock");
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    status
}

/// Polls `cond` for up to 10 s; panics when it never holds.
pub async fn wait_until(mut cond: impl FnMut() -> bool) {
    for _ in 0..500 {
        if cond() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("condition not met within 10 s");
}

pub struct Env {
    pub sandbox: Sandbox,
    pub http: reqwest::Client,
    /// Does not follow redirects, so the authorize endpoint's answer can be read.
    pub browser: reqwest::Client,
}

/// A loopback redirect URI, as a desktop client listens on.
pub const REDIRECT_URI: &str = "http://localhost:8400/callback";

/// A PKCE verifier and its S256 challenge.
pub fn pkce() -> (String, String) {
    use base64::Engine;
    let bytes: [u8; 32] = rand::random();
    let verifier = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, verifier.as_bytes());
    let challenge = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(digest.as_ref());
    (verifier, challenge)
}

/// The query parameters of a 302's `Location`.
pub fn redirected_to(resp: &Response) -> std::collections::HashMap<String, String> {
    let location = resp
        .headers()
        .get(reqwest::header::LOCATION)
        .and_then(|v| v.to_str().ok())
        .expect("a Location header");
    url::Url::parse(location)
        .expect("Location is a URL")
        .query_pairs()
        .into_owned()
        .collect()
}

/// The claims of a JWT, read without checking its signature.
pub fn jwt_claims(token: &str) -> Value {
    use base64::Engine;
    let payload = token.split('.').nth(1).expect("a JWT has a payload");
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .expect("base64url payload");
    serde_json::from_slice(&bytes).expect("JSON claims")
}

pub async fn json_of(resp: Response) -> Value {
    resp.json().await.expect("JSON body")
}

pub fn str_of<'a>(v: &'a Value, key: &str) -> &'a str {
    v[key].as_str().unwrap_or_else(|| panic!("{key} in {v}"))
}

/// Asserts an Entra error: status, `error`, and the AADSTS code leading the description.
pub async fn assert_aad(resp: Response, status: u16, error: &str, code: u32) -> Value {
    assert_eq!(resp.status(), status, "status");
    let body = json_of(resp).await;
    assert_eq!(body["error"], error, "{body}");
    let description = str_of(&body, "error_description");
    assert!(
        description.starts_with(&format!("AADSTS{code}:")),
        "{description}"
    );
    assert_eq!(body["error_codes"][0], code, "{body}");
    body
}

/// Asserts a Partner Center API's refusal of a bearer token, whose message says `why`.
pub async fn assert_unauthenticated(resp: Response, why: &str) {
    assert_eq!(resp.status(), 401, "status");
    let body = json_of(resp).await;
    assert_eq!(body["error"]["code"], "unauthenticated", "{body}");
    assert!(str_of(&body["error"], "message").contains(why), "{body}");
}

/// Fast webhook retries so retry behaviour is observable in a test.
pub fn fast_config() -> SandboxConfig {
    SandboxConfig {
        webhook_retry_base: Duration::from_millis(10),
        webhook_retry_max: Duration::from_millis(40),
        webhook_timeout: Duration::from_millis(500),
        ..SandboxConfig::default()
    }
}

impl Env {
    pub async fn start() -> Env {
        Env::with(fast_config()).await
    }

    pub async fn with(config: SandboxConfig) -> Env {
        let sandbox = Sandbox::start(config).await.expect("sandbox starts");
        Env {
            sandbox,
            http: reqwest::Client::new(),
            browser: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .expect("client"),
        }
    }

    pub fn url(&self, path: &str) -> String {
        self.sandbox.url(path)
    }

    /// The authorize endpoint as a browser reaches it: the 302 is returned, not followed.
    pub async fn authorize(&self, path: &str, params: &[(&str, &str)]) -> Response {
        let mut url = url::Url::parse(&self.url(path)).expect("sandbox URL");
        url.query_pairs_mut().extend_pairs(params);
        self.browser
            .get(url)
            .send()
            .await
            .expect("authorize request sent")
    }

    /// The authorize endpoint asked for a code for the app, back to [`REDIRECT_URI`], with
    /// `params` besides.
    pub async fn authorize_code(&self, path: &str, params: &[(&str, &str)]) -> Response {
        let mut all = vec![
            ("client_id", CLIENT_ID),
            ("response_type", "code"),
            ("redirect_uri", REDIRECT_URI),
        ];
        all.extend_from_slice(params);
        self.authorize(path, &all).await
    }

    /// An authorization code redeemed with the app's secret at `token_path`.
    pub async fn redeem_code(
        &self,
        token_path: &str,
        code: &str,
        verifier: &str,
        redirect_uri: &str,
    ) -> Response {
        self.form(
            token_path,
            &[
                ("grant_type", "authorization_code"),
                ("client_id", CLIENT_ID),
                ("client_secret", CLIENT_SECRET),
                ("code", code),
                ("redirect_uri", redirect_uri),
                ("code_verifier", verifier),
            ],
        )
        .await
    }

    /// A user's interactive sign-in with the authorization code flow and PKCE, on the
    /// endpoints under `oauth2` (`/common/oauth2` for v1, `/common/oauth2/v2.0` for v2): the
    /// code from the redirect, redeemed with the app's secret. `request` is `("resource", …)`
    /// for v1 or `("scope", …)` for v2.
    async fn sign_in(&self, oauth2: &str, user: &str, request: (&str, &str)) -> Value {
        let (verifier, challenge) = pkce();
        let resp = self
            .authorize_code(
                &format!("{oauth2}/authorize"),
                &[
                    request,
                    ("login_hint", user),
                    ("state", "s1"),
                    ("code_challenge", &challenge),
                    ("code_challenge_method", "S256"),
                ],
            )
            .await;
        assert_eq!(resp.status(), 302, "authorize for {user}");
        let back = redirected_to(&resp);
        let code = back.get("code").expect("a code in the redirect");
        let resp = self
            .redeem_code(&format!("{oauth2}/token"), code, &verifier, REDIRECT_URI)
            .await;
        assert_eq!(resp.status(), 200, "token for {user}");
        resp.json().await.expect("token json")
    }

    /// A v1 token for `resource` from the user's interactive sign-in (password and MFA).
    pub async fn token_v1(&self, user: &str, resource: &str) -> Value {
        self.sign_in("/common/oauth2", user, ("resource", resource))
            .await
    }

    /// A v2 token for `scope` from the user's interactive sign-in.
    pub async fn token_v2(&self, user: &str, scope: &str) -> Value {
        self.sign_in("/common/oauth2/v2.0", user, ("scope", scope))
            .await
    }

    /// The resource owner password grant on v1, as it stands (it needs `sign_in_mfa` off).
    pub async fn password_token_v1(&self, user: &str, resource: &str) -> Response {
        self.password_grant(user, USER_PASSWORD, resource).await
    }

    pub async fn password_grant(&self, user: &str, password: &str, resource: &str) -> Response {
        self.form(
            "/common/oauth2/token",
            &[
                ("grant_type", "password"),
                ("client_id", CLIENT_ID),
                ("client_secret", CLIENT_SECRET),
                ("username", user),
                ("password", password),
                ("resource", resource),
                ("scope", "openid"),
            ],
        )
        .await
    }

    /// The refresh token grant on v1 for the Referrals API, with the app's secret or, as a
    /// public client does, without.
    pub async fn refresh(&self, token: &str, with_secret: bool) -> Response {
        let mut form = vec![
            ("grant_type", "refresh_token"),
            ("client_id", CLIENT_ID),
            ("refresh_token", token),
            ("resource", REFERRALS_AUDIENCE),
        ];
        if with_secret {
            form.push(("client_secret", CLIENT_SECRET));
        }
        self.form("/common/oauth2/token", &form).await
    }

    /// The refresh token grant on v2 for `scope`, with the app's secret.
    pub async fn refresh_v2(&self, token: &str, scope: &str) -> Response {
        self.form(
            "/common/oauth2/v2.0/token",
            &[
                ("grant_type", "refresh_token"),
                ("client_id", CLIENT_ID),
                ("client_secret", CLIENT_SECRET),
                ("refresh_token", token),
                ("scope", scope),
            ],
        )
        .await
    }

    /// Moves the sandbox clock on, by `{"seconds": …}`, `{"minutes": …}` or `{"days": …}`.
    pub async fn advance(&self, by: Value) -> Response {
        self.control(Method::POST, "/_sandbox/clock/advance", Some(by))
            .await
    }

    /// Changes a user's password, as an admin's reset or an expiry does.
    pub async fn set_password(&self, user: &str, password: &str) {
        let resp = self
            .control(
                Method::POST,
                "/_sandbox/identities/password",
                Some(json!({"username": user, "password": password})),
            )
            .await;
        assert_eq!(resp.status(), 204, "password change");
    }

    /// Changes Entra settings at run time (`/_sandbox/entra/settings`).
    pub async fn entra_settings(&self, change: Value) -> Value {
        let resp = self
            .control(Method::POST, "/_sandbox/entra/settings", Some(change))
            .await;
        assert_eq!(resp.status(), 200, "entra settings");
        resp.json().await.expect("settings json")
    }

    pub async fn admin(&self) -> String {
        self.token_v1(ADMIN_USER, REFERRALS_AUDIENCE).await["access_token"]
            .as_str()
            .expect("access_token")
            .to_string()
    }

    pub async fn reader(&self) -> String {
        self.token_v1(READER_USER, REFERRALS_AUDIENCE).await["access_token"]
            .as_str()
            .expect("access_token")
            .to_string()
    }

    pub async fn app_token(&self, audience: &str) -> String {
        let resp: Value = self
            .form(
                "/my-tenant/oauth2/v2.0/token",
                &[
                    ("grant_type", "client_credentials"),
                    ("client_id", CLIENT_ID),
                    ("client_secret", CLIENT_SECRET),
                    ("scope", &format!("{audience}/.default")),
                ],
            )
            .await
            .json()
            .await
            .expect("json");
        resp["access_token"]
            .as_str()
            .expect("access_token")
            .to_string()
    }

    pub async fn webhooks_token(&self) -> String {
        self.app_token(PARTNER_CENTER_AUDIENCE).await
    }

    pub async fn call(
        &self,
        method: Method,
        path: &str,
        token: &str,
        body: Option<Value>,
    ) -> Response {
        let url = if path.starts_with("http") {
            path.to_string()
        } else {
            self.url(path)
        };
        let mut req = self.http.request(method, url).bearer_auth(token);
        if let Some(b) = body {
            req = req.json(&b);
        }
        req.send().await.expect("request sent")
    }

    /// GET with a token; the body as JSON.
    pub async fn get_json(&self, path: &str, token: &str) -> Value {
        self.call(Method::GET, path, token, None)
            .await
            .json()
            .await
            .expect("JSON body")
    }

    /// A form POST, as token requests are made.
    pub async fn form(&self, path: &str, pairs: &[(&str, &str)]) -> Response {
        self.http
            .post(self.url(path))
            .form(pairs)
            .send()
            .await
            .expect("form request sent")
    }

    pub async fn control(&self, method: Method, path: &str, body: Option<Value>) -> Response {
        let mut req = self.http.request(method, self.url(path));
        if let Some(b) = body {
            req = req.json(&b);
        }
        req.send().await.expect("control request sent")
    }

    /// A valid partner-created referral body.
    pub fn outgoing(name: &str) -> Value {
        json!({
            "name": name,
            "type": "Shared",
            "qualification": "SalesQualified",
            "customerProfile": {
                "name": "Contoso",
                "address": {"city": "Oslo", "postalCode": "0150", "country": "NO"},
                "team": [{"firstName": "Ola", "lastName": "Nordmann", "email": "ola@contoso.example"}]
            },
            "consent": {"consentToShareReferralWithMicrosoftSellers": true, "consentToContact": true},
            "details": {
                "dealValue": 1000, "currency": "NOK",
                "requirements": {"solutions": [{"id": "SOL-1", "type": "Name"}]}
            },
            "inviteContext": {"assistanceRequestCode": "ProofOfConceptOrDemo"},
            "status": "New", "substatus": "Pending",
            "customField": {"kept": [1, null, "x"]}
        })
    }

    pub async fn create(&self, token: &str, body: Value) -> Value {
        let resp = self
            .call(
                Method::POST,
                "/v1.0/engagements/referrals",
                token,
                Some(body),
            )
            .await;
        assert_eq!(resp.status(), 200, "create");
        resp.json().await.expect("json")
    }

    pub async fn incoming(&self, kind: &str, partial: Value) -> Value {
        let resp = self
            .control(
                Method::POST,
                &format!("/_sandbox/partner-center/incoming?kind={kind}"),
                Some(partial),
            )
            .await;
        assert_eq!(resp.status(), 201, "incoming");
        resp.json().await.expect("json")
    }

    pub async fn register(&self, receiver: &Receiver, events: &[&str], ms_header: bool) {
        let token = self.webhooks_token().await;
        let resp = self
            .call(
                Method::PUT,
                "/webhooks/v1/registration",
                &token,
                Some(json!({
                    "WebhookUrl": receiver.url,
                    "WebhookEvents": events,
                    "SignatureTokenToMsSignatureHeader": ms_header,
                })),
            )
            .await;
        assert_eq!(resp.status(), 200, "register");
    }

    pub async fn stats(&self) -> Value {
        self.control(Method::GET, "/_sandbox/stats", None)
            .await
            .json()
            .await
            .expect("json")
    }
}

pub const REFERRAL_EVENTS: &[&str] = &[
    "referral-created",
    "referral-updated",
    "related-referral-created",
    "related-referral-updated",
];
