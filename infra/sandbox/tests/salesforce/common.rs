use cosell_sandbox::{Sandbox, SandboxConfig, salesforce};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use reqwest::{Method, Response};
use serde_json::{Value, json};

/// The API version the tests call, unless a test is about versions.
pub const V: &str = "v62.0";

pub struct Env {
    pub sandbox: Sandbox,
    pub http: reqwest::Client,
    pub token: String,
    /// The connected app as the control API describes it.
    pub app: Value,
}

impl Env {
    pub async fn start() -> Env {
        Env::with(salesforce::Config::default()).await
    }

    /// A sandbox with these Salesforce settings, and a token from the JWT bearer grant.
    pub async fn with(config: salesforce::Config) -> Env {
        let sandbox = Sandbox::start(SandboxConfig {
            salesforce: config,
            ..Default::default()
        })
        .await
        .expect("sandbox starts");
        let http = reqwest::Client::new();
        let app: Value = http
            .get(sandbox.url("/_sandbox/salesforce/connected-app"))
            .send()
            .await
            .expect("connected app")
            .json()
            .await
            .expect("json");
        let mut env = Env {
            sandbox,
            http,
            token: String::new(),
            app,
        };
        // With only a certificate configured the test brings its own key.
        if env.app["privateKeyPem"].is_string() {
            env.token = env.jwt_token().await;
        }
        env
    }

    pub fn url(&self, path: &str) -> String {
        if path.starts_with("http") {
            path.to_string()
        } else {
            self.sandbox.url(path)
        }
    }

    pub fn private_key(&self) -> String {
        self.app["privateKeyPem"]
            .as_str()
            .expect("the sandbox generated a key")
            .to_string()
    }

    /// The client's clock: a JWT's times are the client's, whatever the sandbox clock says.
    pub fn client_now(&self) -> i64 {
        chrono::Utc::now().timestamp()
    }

    /// Sandbox time as seconds since the epoch (record timestamps and Get Updated use it).
    pub async fn now(&self) -> i64 {
        let clock: Value = self
            .control(Method::GET, "/_sandbox/clock", None)
            .await
            .json()
            .await
            .expect("json");
        let now = clock["now"].as_str().expect("now");
        chrono::DateTime::parse_from_rfc3339(now)
            .expect("rfc3339")
            .timestamp()
    }

    pub async fn advance(&self, body: Value) {
        let r = self
            .control(Method::POST, "/_sandbox/clock/advance", Some(body))
            .await;
        assert!(r.status().is_success(), "advance: {}", r.status());
    }

    /// Posts a form to the token endpoint.
    pub async fn token_request(&self, form: &[(&str, &str)]) -> Response {
        self.http
            .post(self.url("/services/oauth2/token"))
            .form(form)
            .send()
            .await
            .expect("token request")
    }

    /// An assertion with the default claims, changed by `patch` (keys set to null are dropped).
    pub async fn assertion(&self, patch: Value, key_pem: &str) -> String {
        let now = self.client_now();
        let mut claims = json!({
            "iss": self.app["consumerKey"],
            "sub": self.app["username"],
            "aud": "https://login.salesforce.com",
            "exp": now + 120,
        });
        if let (Some(c), Some(p)) = (claims.as_object_mut(), patch.as_object()) {
            for (k, v) in p {
                if v.is_null() {
                    c.remove(k);
                } else {
                    c.insert(k.clone(), v.clone());
                }
            }
        }
        sign(&claims, key_pem)
    }

    pub async fn jwt_grant(&self, assertion: &str) -> Response {
        self.token_request(&[
            ("grant_type", "urn:ietf:params:oauth:grant-type:jwt-bearer"),
            ("assertion", assertion),
        ])
        .await
    }

    pub async fn jwt_token(&self) -> String {
        let assertion = self.assertion(json!({}), &self.private_key()).await;
        let resp = self.jwt_grant(&assertion).await;
        assert_eq!(resp.status(), 200, "JWT grant");
        let body: Value = resp.json().await.expect("json");
        body["access_token"]
            .as_str()
            .expect("access_token")
            .to_string()
    }

    /// A REST call under `/services/data/v62.0` (or a full `/services/...` path) with the
    /// test's token.
    pub async fn api(&self, method: Method, path: &str, body: Option<Value>) -> Response {
        self.api_as(&self.token.clone(), method, path, body).await
    }

    pub async fn api_as(
        &self,
        token: &str,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> Response {
        let full = if path.starts_with("/services/") {
            path.to_string()
        } else {
            format!("/services/data/{V}{path}")
        };
        let mut req = self
            .http
            .request(method, self.url(&full))
            .bearer_auth(token);
        if let Some(b) = body {
            req = req.json(&b);
        }
        req.send().await.expect("api request")
    }

    pub async fn control(&self, method: Method, path: &str, body: Option<Value>) -> Response {
        let mut req = self.http.request(method, self.url(path));
        if let Some(b) = body {
            req = req.json(&b);
        }
        req.send().await.expect("control request")
    }

    /// Creates a record through the API and returns its id.
    pub async fn create(&self, object: &str, body: Value) -> String {
        let resp = self
            .api(Method::POST, &format!("/sobjects/{object}/"), Some(body))
            .await;
        let status = resp.status();
        let v: Value = resp.json().await.expect("json");
        assert_eq!(status, 201, "create {object}: {v}");
        v["id"].as_str().expect("id").to_string()
    }

    pub async fn get(&self, object: &str, id: &str) -> Value {
        let resp = self
            .api(Method::GET, &format!("/sobjects/{object}/{id}"), None)
            .await;
        assert_eq!(resp.status(), 200, "get {object}/{id}");
        resp.json().await.expect("json")
    }

    /// A SOQL query's first batch.
    pub async fn query(&self, soql: &str) -> Response {
        self.api(Method::GET, &format!("/query?q={}", enc(soql)), None)
            .await
    }

    pub async fn query_ok(&self, soql: &str) -> Value {
        let resp = self.query(soql).await;
        let status = resp.status();
        let v: Value = resp.json().await.expect("json");
        assert_eq!(status, 200, "{soql}: {v}");
        v
    }

    pub async fn stats(&self) -> Value {
        self.control(Method::GET, "/_sandbox/stats", None)
            .await
            .json()
            .await
            .expect("json")
    }

    /// A minimal valid opportunity, changed by `extra`.
    pub fn opportunity(name: &str, extra: Value) -> Value {
        let mut o = json!({
            "Name": name,
            "StageName": "Prospecting",
            "CloseDate": "2030-06-30",
        });
        if let (Some(o), Some(e)) = (o.as_object_mut(), extra.as_object()) {
            for (k, v) in e {
                o.insert(k.clone(), v.clone());
            }
        }
        o
    }
}

pub fn sign(claims: &Value, key_pem: &str) -> String {
    let key = EncodingKey::from_rsa_pem(key_pem.as_bytes()).expect("RSA key");
    jsonwebtoken::encode(&Header::new(Algorithm::RS256), claims, &key).expect("sign")
}

/// The error code of a Salesforce error array.
pub async fn error_code(resp: Response) -> (u16, String, Value) {
    let status = resp.status().as_u16();
    let body: Value = resp.json().await.expect("error body is JSON");
    let code = body[0]["errorCode"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    (status, code, body)
}

/// `names` of a query result's records under `field`.
pub fn column(result: &Value, field: &str) -> Vec<String> {
    result["records"]
        .as_array()
        .expect("records")
        .iter()
        .map(|r| r[field].as_str().unwrap_or("<null>").to_string())
        .collect()
}

/// Percent-encodes a query-string value.
pub fn enc(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

impl Env {
    /// A sandbox whose org is as before `cosell crm setup` ([`salesforce::Config::bare`]).
    pub async fn bare() -> Env {
        let mut config = salesforce::Config::default();
        config.bare();
        Env::with(config).await
    }

    /// `POST tooling/sobjects/{kind}` with `{"FullName", "Metadata"}`.
    pub async fn tooling_create(&self, kind: &str, full_name: &str, metadata: Value) -> Response {
        self.api(
            Method::POST,
            &format!("/tooling/sobjects/{kind}"),
            Some(json!({"FullName": full_name, "Metadata": metadata})),
        )
        .await
    }

    /// Like [`Env::tooling_create`], expecting 201; returns the new id.
    pub async fn tooling_ok(&self, kind: &str, full_name: &str, metadata: Value) -> String {
        let resp = self.tooling_create(kind, full_name, metadata).await;
        let status = resp.status();
        let v: Value = resp.json().await.expect("json");
        assert_eq!(status, 201, "create {kind} {full_name}: {v}");
        assert_eq!((&v["success"], &v["errors"]), (&json!(true), &json!([])));
        v["id"].as_str().expect("id").to_string()
    }

    /// A tooling query's answer.
    pub async fn tooling_query(&self, soql: &str) -> Response {
        self.api(
            Method::GET,
            &format!("/tooling/query?q={}", enc(soql)),
            None,
        )
        .await
    }

    /// The describe result's field `name`, if the caller can see it.
    pub async fn described_field(&self, object: &str, name: &str) -> Option<Value> {
        let resp = self
            .api(Method::GET, &format!("/sobjects/{object}/describe"), None)
            .await;
        assert_eq!(resp.status(), 200, "describe {object}");
        let d: Value = resp.json().await.expect("json");
        d["fields"]
            .as_array()
            .expect("fields")
            .iter()
            .find(|f| {
                f["name"]
                    .as_str()
                    .is_some_and(|n| n.eq_ignore_ascii_case(name))
            })
            .cloned()
    }

    /// A permission set granting `grants` (`Object.Field`, edit) to the integration user;
    /// returns its id.
    pub async fn grant(&self, set_name: &str, grants: &[(&str, bool)]) -> String {
        let set = self
            .create(
                "PermissionSet",
                json!({"Name": set_name, "Label": set_name.replace('_', " ")}),
            )
            .await;
        for (field, edit) in grants {
            let object = field.split_once('.').map_or(*field, |(o, _)| o);
            self.create(
                "FieldPermissions",
                json!({"ParentId": set, "SobjectType": object, "Field": field,
                       "PermissionsRead": true, "PermissionsEdit": edit}),
            )
            .await;
        }
        self.create(
            "PermissionSetAssignment",
            json!({"AssigneeId": self.app["userId"], "PermissionSetId": set}),
        )
        .await;
        set
    }
}
