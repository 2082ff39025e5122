//! The Referral admin's sign-in across processes: every rotated refresh token is kept in the
//! deployed stack's secret (Secrets Manager in moto, with the real SDK client), a process
//! started later (a Lambda cold start) runs on the newest one, and a newer `cosell auth login`
//! is never overwritten by a process still on the older chain. The sandbox retires a refresh
//! token once redeemed (single-use mode), so a process holding a stale one finds out at once.

use cosell_e2e::sandbox_control as control;
use std::sync::Arc;
use std::time::Duration;

use aws_lc_rs::digest;
use cosell_localaws::Moto;
use cosell_sandbox::config::{ADMIN_USER, RefreshRotation};
use cosell_sandbox::{Sandbox, SandboxConfig};
use cosell_shared::partner_center::PartnerCenter;
use cosell_shared::partner_center::http::{PartnerCenterClient, PartnerCenterConfig};
use cosell_shared::partner_center::refresh_store::{RefreshTokenStore, SecretsManagerTokenStore};
use cosell_shared::partner_center::token::{Secret, UserCredential};
use cosell_shared::wiring;
use serde_json::{Value, json};

async fn single_use_sandbox() -> Sandbox {
    Sandbox::start(SandboxConfig {
        refresh_rotation: RefreshRotation::SingleUse,
        ..SandboxConfig::default()
    })
    .await
    .unwrap_or_else(|e| panic!("cannot start the sandbox: {e}"))
}

/// Every access token expires, so each process's next call redeems its refresh token.
async fn expire_access_tokens(sandbox: &Sandbox) {
    control(
        sandbox,
        reqwest::Method::POST,
        "/_sandbox/identities/expire-tokens",
        json!({}),
    )
    .await;
}

/// The sandbox's view of a refresh token: `active`, `superseded`, `revoked` or `expired`.
async fn token_state(sandbox: &Sandbox, token: &Secret) -> String {
    let fingerprint: String = digest::digest(&digest::SHA256, token.expose().as_bytes())
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect::<String>()[..16]
        .to_string();
    let all = control(
        sandbox,
        reqwest::Method::GET,
        "/_sandbox/entra/refresh-tokens",
        Value::Null,
    )
    .await;
    all.as_array()
        .into_iter()
        .flatten()
        .find(|t| t["fingerprint"] == fingerprint.as_str())
        .and_then(|t| t["state"].as_str())
        .unwrap_or_else(|| panic!("the sandbox never issued that token: {all}"))
        .to_string()
}

struct Deployment {
    moto: Moto,
    arn: String,
    secrets: aws_sdk_secretsmanager::Client,
}

impl Deployment {
    /// A stack's secret with the admin's first sign-in and the other secret settings.
    async fn start(first: &Secret) -> Deployment {
        let moto = Moto::start()
            .await
            .unwrap_or_else(|e| panic!("cannot start moto: {e}"));
        let secrets = aws_sdk_secretsmanager::Client::new(&moto.sdk_config());
        let text = json!({
            "COSELL_PC_CLIENT_SECRET": "sandbox-secret",
            "COSELL_PC_REFRESH_TOKEN": first.expose(),
            "COSELL_DATAVERSE_CLIENT_SECRET": "sandbox-secret",
        })
        .to_string();
        let arn = secrets
            .create_secret()
            .name("cosell/connector")
            .secret_string(text)
            .send()
            .await
            .unwrap_or_else(|e| panic!("CreateSecret: {e}"))
            .arn
            .unwrap_or_else(|| panic!("no ARN"));
        Deployment { moto, arn, secrets }
    }

    async fn secret(&self) -> serde_json::Map<String, Value> {
        let text = self
            .secrets
            .get_secret_value()
            .secret_id(&self.arn)
            .send()
            .await
            .unwrap_or_else(|e| panic!("GetSecretValue: {e}"))
            .secret_string
            .unwrap_or_default();
        match serde_json::from_str(&text) {
            Ok(Value::Object(o)) => o,
            other => panic!("the secret is not an object: {other:?}"),
        }
    }

    async fn stored_token(&self) -> Secret {
        Secret::new(
            self.secret().await["COSELL_PC_REFRESH_TOKEN"]
                .as_str()
                .unwrap_or_else(|| panic!("no refresh token in the secret")),
        )
    }

    fn store(&self) -> Arc<dyn RefreshTokenStore> {
        Arc::new(SecretsManagerTokenStore::new(
            self.secrets.clone(),
            self.arn.clone(),
        ))
    }

    /// A function's cold start: its settings from the environment and the secret, as the
    /// functions read them, and a client keeping rotations in the secret.
    async fn cold_start(&self, sandbox: &Sandbox) -> PartnerCenterClient {
        let base = sandbox.base_url();
        let env = [
            ("COSELL_CRM", "dynamics"),
            ("COSELL_PC_CLIENT_ID", "sandbox-client"),
            ("COSELL_PC_AUTHORITY_URL", base),
            ("COSELL_PC_API_URL", base),
            ("COSELL_PC_WEBHOOKS_URL", base),
            ("COSELL_DATAVERSE_URL", base),
            ("COSELL_DATAVERSE_AUTHORITY_URL", base),
            ("COSELL_DATAVERSE_TENANT", "sandbox"),
            ("COSELL_DATAVERSE_CLIENT_ID", "sandbox-client"),
            ("COSELL_SECRET_ARN", &self.arn),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let sdk = self.moto.sdk_config();
        let config = wiring::load(env, &sdk)
            .await
            .unwrap_or_else(|e| panic!("configuration: {e}"));
        let tokens = wiring::token_store(config.secret_arn.as_deref(), &sdk, None);
        wiring::partner_center_client(&config, tokens)
            .unwrap_or_else(|e| panic!("Partner Center client: {e}"))
    }
}

/// A client of the sandbox's Partner Center, without a store.
fn client(
    sandbox: &Sandbox,
    auth: cosell_shared::partner_center::token::PartnerCenterAuth,
) -> PartnerCenterClient {
    PartnerCenterClient::new(
        PartnerCenterConfig {
            api_base_url: sandbox.base_url().to_string(),
            webhooks_base_url: sandbox.base_url().to_string(),
            timeout: Duration::from_secs(10),
            retry: cosell_e2e::fast_retries(2),
        },
        auth,
    )
    .unwrap_or_else(|e| panic!("a client: {e}"))
}

/// A Referrals API read, which needs a valid App+User token.
async fn read(client: &PartnerCenterClient) {
    client
        .get_referral("00000000-0000-0000-0000-000000000000")
        .await
        .unwrap_or_else(|e| panic!("a Referrals API read: {e}"));
}

#[tokio::test]
async fn a_cold_start_after_several_rotations_runs_on_the_newest_token_from_the_secret() {
    let sandbox = single_use_sandbox().await;
    let first = cosell_e2e::sandbox_refresh_token(sandbox.base_url(), ADMIN_USER).await;
    let deployment = Deployment::start(&first).await;
    let warm = deployment.cold_start(&sandbox).await;
    for _ in 0..3 {
        read(&warm).await;
        expire_access_tokens(&sandbox).await;
    }
    read(&warm).await;
    let stored = deployment.stored_token().await;
    assert_ne!(stored, first, "each rotation is kept in the secret");
    assert_eq!(token_state(&sandbox, &first).await, "superseded");
    assert_eq!(
        token_state(&sandbox, &stored).await,
        "active",
        "the secret holds the newest token of the chain"
    );
    let secret = deployment.secret().await;
    assert_eq!(
        secret["COSELL_DATAVERSE_CLIENT_SECRET"], "sandbox-secret",
        "the secret's other keys stay as they were: {secret:?}"
    );
    assert_eq!(secret["COSELL_PC_CLIENT_SECRET"], "sandbox-secret");

    drop(warm);
    let restarted = deployment.cold_start(&sandbox).await;
    read(&restarted).await;
}

#[tokio::test]
async fn a_newer_sign_in_in_the_secret_is_not_overwritten_and_a_stale_process_moves_to_it() {
    let sandbox = single_use_sandbox().await;
    let first = cosell_e2e::sandbox_refresh_token(sandbox.base_url(), ADMIN_USER).await;
    let deployment = Deployment::start(&first).await;
    let running = deployment.cold_start(&sandbox).await;
    read(&running).await;

    // The admin signs in again while the function runs (`cosell auth login`).
    let login = cosell_e2e::sandbox_refresh_token(sandbox.base_url(), ADMIN_USER).await;
    deployment
        .store()
        .sign_in(&login)
        .await
        .unwrap_or_else(|e| panic!("store the new sign-in: {e}"));

    // The running process rotates its own, older chain: the new sign-in stays in the secret.
    expire_access_tokens(&sandbox).await;
    read(&running).await;
    assert_eq!(
        deployment.stored_token().await,
        login,
        "a process never overwrites a newer sign-in"
    );

    // A process whose token was retired (here: revoked, as when the admin's sessions are
    // revoked) finds the newer sign-in in the secret and carries on.
    let stale = deployment.cold_start(&sandbox).await;
    read(&stale).await;
    control(
        &sandbox,
        reqwest::Method::POST,
        "/_sandbox/entra/revoke",
        json!({"username": ADMIN_USER}),
    )
    .await;
    let fresh = cosell_e2e::sandbox_refresh_token(sandbox.base_url(), ADMIN_USER).await;
    deployment
        .store()
        .sign_in(&fresh)
        .await
        .unwrap_or_else(|e| panic!("store the new sign-in: {e}"));
    expire_access_tokens(&sandbox).await;
    read(&stale).await;
    let stored = deployment.stored_token().await;
    assert_ne!(stored, fresh, "the new sign-in was redeemed and rotated");
    assert_eq!(token_state(&sandbox, &stored).await, "active");
}

#[tokio::test]
async fn a_certificate_signs_the_app_in_instead_of_a_secret() {
    let sandbox = Sandbox::start(SandboxConfig::default())
        .await
        .unwrap_or_else(|e| panic!("cannot start the sandbox: {e}"));
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_RSA_SHA256).expect("an RSA key");
    let cert = rcgen::CertificateParams::new(vec!["cosell-connector".into()])
        .and_then(|p| p.self_signed(&key))
        .expect("a certificate");
    control(
        &sandbox,
        reqwest::Method::POST,
        "/_sandbox/identities/certificate",
        json!({"client_id": "sandbox-client", "certificate_pem": cert.pem()}),
    )
    .await;
    let credential = cosell_shared::entra::ClientCertificate::from_pem(
        &cert.pem(),
        &Secret::new(key.serialize_pem()),
    )
    .expect("a certificate credential");
    let mut auth = cosell_e2e::sandbox_auth(
        sandbox.base_url(),
        UserCredential::RefreshToken(Secret::new("")),
    );
    auth.client_credential = cosell_shared::entra::ClientCredential::Certificate(credential);
    // Signed in and redeemed with the certificate only: no client secret is sent anywhere.
    let signed_in =
        cosell_shared::partner_center::signin::SignIn::new(auth.clone(), reqwest::Client::new())
            .sign_in_without_form(Some(ADMIN_USER))
            .await
            .expect("a sign-in with the certificate");
    auth.credential = UserCredential::RefreshToken(signed_in.refresh_token);
    let signed = client(&sandbox, auth.clone());
    read(&signed).await;

    // The wrong key for the uploaded certificate is refused.
    let other = rcgen::KeyPair::generate_for(&rcgen::PKCS_RSA_SHA256).expect("an RSA key");
    auth.client_credential = cosell_shared::entra::ClientCredential::Certificate(
        cosell_shared::entra::ClientCertificate::from_pem(
            &cert.pem(),
            &Secret::new(other.serialize_pem()),
        )
        .expect("a certificate credential"),
    );
    let forged = client(&sandbox, auth);
    let err = forged.get_referral("x").await.expect_err("a bad signature");
    assert!(err.to_string().contains("AADSTS700027"), "{err}");
}
