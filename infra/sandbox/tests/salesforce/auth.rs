//! The token endpoint: JWT bearer and client credentials, and expired tokens on the API.

use reqwest::Method;
use serde_json::{Value, json};

use crate::common::{Env, error_code};

async fn grant_error(env: &Env, assertion: &str) -> (u16, Value) {
    let resp = env.jwt_grant(assertion).await;
    let status = resp.status().as_u16();
    (status, resp.json().await.expect("json"))
}

#[tokio::test]
async fn jwt_bearer_returns_an_instance_url_and_no_refresh_token() {
    let env = Env::start().await;
    let assertion = env.assertion(json!({}), &env.private_key()).await;
    let resp = env.jwt_grant(&assertion).await;
    assert_eq!(resp.status(), 200);
    let body: Value = resp.json().await.expect("json");
    assert_eq!(body["instance_url"], env.sandbox.base_url());
    assert_eq!(body["token_type"], "Bearer");
    assert!(body["scope"].is_string());
    assert!(body.get("refresh_token").is_none(), "{body}");
    // The identity URL names the org and the integration user.
    let id = body["id"].as_str().expect("id");
    let user_id = env.app["userId"].as_str().expect("userId");
    assert!(id.ends_with(&format!("/{user_id}")), "{id}");
    let token = body["access_token"].as_str().expect("token");
    assert!(token.starts_with(&env.app["orgId"].as_str().expect("org")[..15]));
    let resp = env.api_as(token, Method::GET, "/limits/", None).await;
    assert_eq!(resp.status(), 200);
}

#[tokio::test]
async fn jwt_bearer_accepts_test_salesforce_and_the_sandbox_url_as_audience() {
    let env = Env::start().await;
    for aud in [
        json!("https://test.salesforce.com"),
        json!(env.sandbox.base_url()),
        json!(["https://example.com", "https://login.salesforce.com/"]),
    ] {
        let a = env.assertion(json!({"aud": aud}), &env.private_key()).await;
        assert_eq!(env.jwt_grant(&a).await.status(), 200, "aud {aud}");
    }
}

#[tokio::test]
async fn jwt_bearer_refusals_are_invalid_grant() {
    let env = Env::start().await;
    let key = env.private_key();
    let now = env.client_now();
    // A key the connected app's certificate does not match.
    let other = rcgen::KeyPair::generate_rsa_for(&rcgen::PKCS_RSA_SHA256, rcgen::RsaKeySize::_2048)
        .expect("key")
        .serialize_pem();
    let cases = [
        (
            "wrong key",
            env.assertion(json!({}), &other).await,
            "invalid assertion",
        ),
        (
            "wrong audience",
            env.assertion(json!({"aud": "https://login.example.com"}), &key)
                .await,
            "audience is invalid",
        ),
        (
            "expired",
            env.assertion(json!({"exp": now - 10}), &key).await,
            "expired",
        ),
        (
            "too long-lived",
            env.assertion(json!({"exp": now + 3600}), &key).await,
            "too far",
        ),
        (
            "unknown user",
            env.assertion(json!({"sub": "nobody@sandbox.test"}), &key)
                .await,
            "approved",
        ),
        (
            "the seller is not pre-approved",
            env.assertion(json!({"sub": "seller@sandbox.test"}), &key)
                .await,
            "approved",
        ),
        ("not a JWT", "not-a-jwt".to_string(), "invalid assertion"),
    ];
    for (why, assertion, description) in cases {
        let (status, body) = grant_error(&env, &assertion).await;
        assert_eq!(status, 400, "{why}: {body}");
        assert_eq!(body["error"], "invalid_grant", "{why}: {body}");
        let d = body["error_description"].as_str().unwrap_or_default();
        assert!(d.contains(description), "{why}: {body}");
    }
    let a = env.assertion(json!({"iss": "someone-else"}), &key).await;
    let (status, body) = grant_error(&env, &a).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_client_id"))
    );
}

#[tokio::test]
async fn an_assertion_is_judged_by_the_clients_clock_not_the_sandbox_clock() {
    let env = Env::start().await;
    let key = env.private_key();
    // Moving sandbox time (to expire sessions or records) leaves a fresh assertion valid: the
    // client stamped it with its own clock.
    env.advance(json!({"days": 15})).await;
    let a = env.assertion(json!({}), &key).await;
    assert_eq!(env.jwt_grant(&a).await.status(), 200);
    let stale = env
        .assertion(json!({"exp": env.client_now() - 1}), &key)
        .await;
    let (status, body) = grant_error(&env, &stale).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_grant"))
    );
}

#[tokio::test]
async fn client_credentials_adds_signature_and_issued_at() {
    let env = Env::start().await;
    let resp = env
        .token_request(&[
            ("grant_type", "client_credentials"),
            ("client_id", "sandbox-client"),
            ("client_secret", "sandbox-secret"),
        ])
        .await;
    assert_eq!(resp.status(), 200);
    let body: Value = resp.json().await.expect("json");
    assert!(body.get("refresh_token").is_none());
    assert_eq!(body["instance_url"], env.sandbox.base_url());
    let issued_at = body["issued_at"].as_str().expect("issued_at");
    assert!(issued_at.parse::<i64>().is_ok(), "{issued_at}");
    // The signature is HMAC-SHA256(id + issued_at) keyed with the consumer secret.
    let key = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, b"sandbox-secret");
    let expected = aws_lc_rs::hmac::sign(
        &key,
        format!("{}{issued_at}", body["id"].as_str().expect("id")).as_bytes(),
    );
    use base64::Engine;
    assert_eq!(
        body["signature"].as_str(),
        Some(
            base64::engine::general_purpose::STANDARD
                .encode(expected.as_ref())
                .as_str()
        )
    );
    let token = body["access_token"].as_str().expect("token");
    assert_eq!(
        env.api_as(token, Method::GET, "/limits/", None)
            .await
            .status(),
        200
    );

    let resp = env
        .token_request(&[
            ("grant_type", "client_credentials"),
            ("client_id", "sandbox-client"),
            ("client_secret", "wrong"),
        ])
        .await;
    assert_eq!(resp.status(), 400);
    let body: Value = resp.json().await.expect("json");
    assert_eq!(body["error"], "invalid_client");
    let resp = env.token_request(&[("grant_type", "password")]).await;
    let body: Value = resp.json().await.expect("json");
    assert_eq!(body["error"], "unsupported_grant_type");
}

#[tokio::test]
async fn an_expired_or_unknown_token_gets_invalid_session_id() {
    let env = Env::start().await;
    assert_eq!(env.api(Method::GET, "/limits/", None).await.status(), 200);
    env.advance(json!({"hours": 2, "seconds": 1})).await;
    let (status, code, body) = error_code(env.api(Method::GET, "/limits/", None).await).await;
    assert_eq!((status, code.as_str()), (401, "INVALID_SESSION_ID"));
    assert_eq!(body[0]["message"], "Session expired or invalid");
    let (status, code, _) = error_code(
        env.api_as("00Dbogus!x", Method::GET, "/limits/", None)
            .await,
    )
    .await;
    assert_eq!((status, code.as_str()), (401, "INVALID_SESSION_ID"));
    let resp = env
        .http
        .get(env.url("/services/data/v62.0/limits/"))
        .send()
        .await
        .expect("sent");
    assert_eq!(resp.status(), 401, "no Authorization header");
}

#[tokio::test]
async fn the_control_api_can_revoke_every_session() {
    let env = Env::start().await;
    let r = env
        .control(Method::POST, "/_sandbox/salesforce/expire-tokens", None)
        .await;
    assert_eq!(r.status(), 204);
    let (status, code, _) = error_code(env.api(Method::GET, "/limits/", None).await).await;
    assert_eq!((status, code.as_str()), (401, "INVALID_SESSION_ID"));
}

#[tokio::test]
async fn the_key_survives_a_reset_and_can_be_written_to_files() {
    let env = Env::start().await;
    let r = env.control(Method::POST, "/_sandbox/reset", None).await;
    assert!(r.status().is_success());
    let after: Value = env
        .control(Method::GET, "/_sandbox/salesforce/connected-app", None)
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(after["certificatePem"], env.app["certificatePem"]);
    let dir = std::env::temp_dir().join(format!("sf-keys-{}", uuid::Uuid::new_v4()));
    let r = env
        .control(
            Method::POST,
            "/_sandbox/salesforce/connected-app/files",
            Some(json!({"directory": dir})),
        )
        .await;
    assert_eq!(r.status(), 200);
    let files: Value = r.json().await.expect("json");
    let key = std::fs::read_to_string(files["privateKeyFile"].as_str().expect("key file"))
        .expect("key written");
    let a = env.assertion(json!({}), &key).await;
    assert_eq!(env.jwt_grant(&a).await.status(), 200);
    std::fs::remove_dir_all(dir).ok();
}

#[tokio::test]
async fn a_configured_certificate_is_used_instead_of_a_generated_one() {
    // The key pair another sandbox generated plays the admin's own certificate.
    let first = Env::start().await;
    let dir = std::env::temp_dir().join(format!("sf-cert-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).expect("dir");
    let params = rcgen::CertificateParams::new(vec!["admin.example".into()]).expect("params");
    let key = rcgen::KeyPair::generate_rsa_for(&rcgen::PKCS_RSA_SHA256, rcgen::RsaKeySize::_2048)
        .expect("key");
    let cert = params.self_signed(&key).expect("cert");
    let cert_path = dir.join("cert.pem");
    std::fs::write(&cert_path, cert.pem()).expect("write");
    let env = Env::with(cosell_sandbox::salesforce::Config {
        certificate_file: Some(cert_path),
        ..Default::default()
    })
    .await
    .with_token_from(&key.serialize_pem())
    .await;
    assert!(
        env.app["privateKeyPem"].is_null(),
        "only the certificate is known"
    );
    assert_eq!(env.app["certificatePem"], cert.pem());
    // The generated key no longer signs for this org.
    let a = env.assertion(json!({}), &first.private_key()).await;
    assert_eq!(env.jwt_grant(&a).await.status(), 400);
    std::fs::remove_dir_all(dir).ok();
}

impl Env {
    /// Replaces the test's token by one from an assertion signed with `key_pem`.
    async fn with_token_from(mut self, key_pem: &str) -> Env {
        let a = self.assertion(json!({}), key_pem).await;
        let resp = self.jwt_grant(&a).await;
        assert_eq!(resp.status(), 200, "grant with the configured key");
        let body: Value = resp.json().await.expect("json");
        self.token = body["access_token"].as_str().expect("token").to_string();
        self
    }
}
