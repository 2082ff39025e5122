//! The functions' secrets from Secrets Manager (in moto, with the real SDK client): one secret
//! of settings, read at start into the configuration; a bad secret stops start-up naming
//! `COSELL_SECRET_ARN` and never showing a value.

use std::collections::BTreeMap;

use cosell_localaws::Moto;
use cosell_shared::wiring::{self, WiringError};

async fn moto() -> Moto {
    Moto::start()
        .await
        .unwrap_or_else(|e| panic!("cannot start moto: {e}"))
}

async fn create_secret(moto: &Moto, name: &str, text: &str) -> String {
    aws_sdk_secretsmanager::Client::new(&moto.sdk_config())
        .create_secret()
        .name(name)
        .secret_string(text)
        .send()
        .await
        .unwrap_or_else(|e| panic!("CreateSecret: {e}"))
        .arn
        .unwrap_or_else(|| panic!("CreateSecret returned no ARN"))
}

/// A Salesforce deployment's plain settings, without any secret.
fn plain(arn: &str) -> BTreeMap<String, String> {
    [
        ("COSELL_CRM", "salesforce"),
        ("COSELL_PC_CLIENT_ID", "app"),
        ("COSELL_SALESFORCE_CLIENT_ID", "consumer-key"),
        ("COSELL_SECRET_ARN", arn),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect()
}

#[tokio::test]
async fn the_secret_settings_come_from_secrets_manager() {
    let moto = moto().await;
    let arn = create_secret(
        &moto,
        "cosell/connector",
        r#"{"COSELL_PC_CLIENT_SECRET": "pc-s3cret", "COSELL_PC_REFRESH_TOKEN": "rt-s3cret",
            "COSELL_SALESFORCE_CLIENT_SECRET": "sf-s3cret"}"#,
    )
    .await;
    let config = wiring::load(plain(&arn), &moto.sdk_config())
        .await
        .expect("a complete configuration");
    assert_eq!(
        config
            .partner_center_auth
            .client_credential
            .secret()
            .map(|s| s.expose()),
        Some("pc-s3cret")
    );
    assert!(
        !format!("{config:?}").contains("s3cret"),
        "secrets are never printed"
    );
}

#[tokio::test]
async fn a_missing_or_bad_secret_stops_start_up_naming_the_setting() {
    let moto = moto().await;
    let not_settings = create_secret(&moto, "cosell/plain", "pc-s3cret").await;
    let stray = create_secret(&moto, "cosell/stray", r#"{"COSELL_MARKER": "s3cret"}"#).await;
    let cases = [
        (
            "arn:aws:secretsmanager:us-east-1:123456789012:secret:nope-AbCdEf".to_string(),
            "cannot be read",
        ),
        (not_settings, "JSON object of settings"),
        (stray, "COSELL_MARKER"),
    ];
    for (arn, expected) in cases {
        let err = wiring::load(plain(&arn), &moto.sdk_config())
            .await
            .expect_err("a bad secret");
        assert!(matches!(err, WiringError::Secrets(_)), "{err:?}");
        let message = err.to_string();
        assert!(message.starts_with("COSELL_SECRET_ARN"), "{message}");
        assert!(message.contains(expected), "{message}");
        assert!(!message.contains("s3cret"), "no secret in: {message}");
    }
}

#[tokio::test]
async fn without_a_secret_the_environment_is_used_as_before() {
    let moto = moto().await;
    let mut env = plain("");
    env.insert("COSELL_PC_CLIENT_SECRET".into(), "pc-secret".into());
    env.insert("COSELL_PC_REFRESH_TOKEN".into(), "rt".into());
    env.insert("COSELL_SALESFORCE_CLIENT_SECRET".into(), "sf".into());
    let config = wiring::load(env, &moto.sdk_config()).await.expect("valid");
    assert_eq!(
        config
            .partner_center_auth
            .client_credential
            .secret()
            .map(|s| s.expose()),
        Some("pc-secret")
    );
}
