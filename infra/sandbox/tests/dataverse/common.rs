//! A sandbox on a random loopback port and a Dataverse client over real HTTP.

use cosell_sandbox::config::{CLIENT_ID, CLIENT_SECRET};
use cosell_sandbox::{Sandbox, SandboxConfig, dataverse};
use reqwest::{Method, Response};
use serde_json::{Value, json};

pub struct Dv {
    pub sandbox: Sandbox,
    pub http: reqwest::Client,
    pub token: String,
}

/// A response read whole, so assertions can show the body on failure.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub body: Value,
}

impl Reply {
    pub async fn read(resp: Response) -> Reply {
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let text = resp.text().await.expect("body");
        let body = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or(Value::String(text))
        };
        Reply {
            status,
            headers,
            body,
        }
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    pub fn message(&self) -> &str {
        self.body["error"]["message"].as_str().unwrap_or_default()
    }

    /// The id at the end of `OData-EntityId: …/set(<id>)`.
    pub fn entity_id(&self) -> String {
        let url = self.header("OData-EntityId").expect("OData-EntityId");
        url.rsplit_once('(')
            .and_then(|(_, rest)| rest.strip_suffix(')'))
            .expect("an id in the entity URL")
            .to_string()
    }
}

impl Dv {
    pub async fn start() -> Dv {
        Dv::with(dataverse::Config::default()).await
    }

    /// An org as before `cosell crm setup` ([`dataverse::Config::bare`]).
    pub async fn bare() -> Dv {
        let mut config = dataverse::Config::default();
        config.bare();
        Dv::with(config).await
    }

    pub async fn with(config: dataverse::Config) -> Dv {
        let sandbox = Sandbox::start(SandboxConfig {
            dataverse: config,
            ..Default::default()
        })
        .await
        .expect("sandbox starts");
        let mut dv = Dv {
            sandbox,
            http: reqwest::Client::new(),
            token: String::new(),
        };
        dv.token = dv
            .token_for(&format!("{}/.default", dv.sandbox.base_url()))
            .await;
        dv
    }

    /// A client-credentials token from the sandbox's Entra endpoint.
    pub async fn token_for(&self, scope: &str) -> String {
        let resp: Value = self
            .http
            .post(self.sandbox.url("/my-tenant/oauth2/v2.0/token"))
            .form(&[
                ("grant_type", "client_credentials"),
                ("client_id", CLIENT_ID),
                ("client_secret", CLIENT_SECRET),
                ("scope", scope),
            ])
            .send()
            .await
            .expect("token request")
            .json()
            .await
            .expect("token json");
        resp["access_token"]
            .as_str()
            .expect("access_token")
            .to_string()
    }

    /// `path` relative to `/api/data/v9.2/`, or an absolute URL (a nextLink or deltaLink).
    pub fn api(&self, path: &str) -> String {
        if path.starts_with("http") {
            path.to_string()
        } else {
            self.sandbox.url(&format!("/api/data/v9.2/{path}"))
        }
    }

    /// A Web API call with the documented headers (docs/dataverse.md, "Headers") plus `headers`.
    pub async fn call_with(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
        headers: &[(&str, &str)],
    ) -> Reply {
        let mut req = self
            .http
            .request(method, self.api(path))
            .bearer_auth(&self.token)
            .header("Accept", "application/json")
            .header("OData-MaxVersion", "4.0")
            .header("OData-Version", "4.0");
        if !headers
            .iter()
            .any(|(k, _)| k.eq_ignore_ascii_case("If-None-Match"))
        {
            req = req.header("If-None-Match", "null");
        }
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        Reply::read(req.send().await.expect("request sent")).await
    }

    pub async fn call(&self, method: Method, path: &str, body: Option<Value>) -> Reply {
        self.call_with(method, path, body, &[]).await
    }

    pub async fn get(&self, path: &str) -> Reply {
        self.call(Method::GET, path, None).await
    }

    /// Creates a row (204 + OData-EntityId) and returns its id.
    pub async fn create(&self, set: &str, body: Value) -> String {
        let r = self.call(Method::POST, set, Some(body)).await;
        assert_eq!(r.status, 204, "create in {set}: {r:?}");
        r.entity_id()
    }

    pub async fn row(&self, set: &str, id: &str) -> Value {
        let r = self.get(&format!("{set}({id})")).await;
        assert_eq!(r.status, 200, "get {set}({id}): {r:?}");
        r.body
    }

    pub async fn account(&self, name: &str) -> String {
        self.create("accounts", json!({"name": name})).await
    }

    /// An open opportunity for a new account.
    pub async fn opportunity(&self, name: &str) -> String {
        let account = self.account(&format!("{name} Ltd")).await;
        self.create(
            "opportunities",
            json!({
                "name": name,
                "customerid_account@odata.bind": format!("/accounts({account})"),
                "estimatedvalue": 1000,
            }),
        )
        .await
    }

    /// The id of a seeded currency.
    pub async fn currency(&self, iso: &str) -> String {
        let r = self
            .get(&format!(
                "transactioncurrencies?$select=isocurrencycode&$filter=isocurrencycode eq '{iso}'"
            ))
            .await;
        assert_eq!(r.status, 200, "{r:?}");
        r.body["value"][0]["transactioncurrencyid"]
            .as_str()
            .expect("currency id")
            .to_string()
    }

    pub async fn control(&self, method: Method, path: &str, body: Option<Value>) -> Reply {
        let mut req = self.http.request(method, self.sandbox.url(path));
        if let Some(b) = body {
            req = req.json(&b);
        }
        Reply::read(req.send().await.expect("control request sent")).await
    }

    /// A human seller's edit through the control API.
    pub async fn human_edit(&self, set: &str, id: &str, body: Value) -> Value {
        let r = self
            .control(
                Method::PATCH,
                &format!("/_sandbox/dataverse/{set}({id})"),
                Some(body),
            )
            .await;
        assert_eq!(r.status, 200, "human edit: {r:?}");
        r.body
    }

    pub async fn advance(&self, seconds: i64) {
        let r = self
            .control(
                Method::POST,
                "/_sandbox/clock/advance",
                Some(json!({ "seconds": seconds })),
            )
            .await;
        assert_eq!(r.status, 200, "advance: {r:?}");
    }
}
