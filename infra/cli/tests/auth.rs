//! `cosell auth login` and `cosell auth status` as an admin runs them: the real binary against
//! a sandbox, the sign-in completed by whoever opens the printed URL (here the test, with a GET;
//! the sandbox's Entra asks for no form), the refresh token kept in the data directory or in a
//! Secrets Manager secret (moto).

#![cfg(unix)]
// A test crate: its helpers may panic on what the test set up.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::Path;

use common::Cosell;
use cosell_localaws::Moto;
use cosell_sandbox::config::ADMIN_USER;
use cosell_sandbox::{Sandbox, SandboxConfig};
use serde_json::{Value, json};

async fn sandbox() -> Sandbox {
    Sandbox::start(SandboxConfig::default())
        .await
        .unwrap_or_else(|e| panic!("cannot start the sandbox: {e}"))
}

/// `cosell auth login --no-browser`, signed in by opening the URL it prints.
async fn login(sandbox: &Sandbox, data_dir: &str, env: &[(&str, &str)]) -> Cosell {
    let mut cosell = Cosell::start(
        &[
            "auth",
            "login",
            "--sandbox-url",
            sandbox.base_url(),
            "--no-browser",
            "--port",
            "0",
            "--data-dir",
            data_dir,
        ],
        env,
    );
    cosell.wait_for("/oauth2/v2.0/authorize?").await;
    let url = cosell
        .lines()
        .into_iter()
        .find_map(|l| {
            l.split_whitespace()
                .find(|w| w.contains("/oauth2/v2.0/authorize?"))
                .map(str::to_string)
        })
        .unwrap_or_else(|| panic!("no sign-in URL\n{}", cosell.output()));
    // What a browser does: the sign-in page redirects to the loopback listener.
    let page = reqwest::get(&url)
        .await
        .unwrap_or_else(|e| panic!("open {url}: {e}"));
    assert!(page.status().is_success(), "{}", page.status());
    let status = cosell.exit().await;
    assert!(status.success(), "login failed\n{}", cosell.output());
    cosell
}

async fn status(sandbox: &Sandbox, data_dir: &str, env: &[(&str, &str)]) -> Cosell {
    let mut cosell = Cosell::start(
        &[
            "auth",
            "status",
            "--sandbox-url",
            sandbox.base_url(),
            "--data-dir",
            data_dir,
        ],
        env,
    );
    cosell.exit().await;
    cosell
}

fn token_file(dir: &Path) -> std::path::PathBuf {
    dir.join("partner-center-token.json")
}

#[tokio::test]
async fn login_keeps_the_refresh_token_in_the_data_directory_and_status_names_the_admin() {
    let sandbox = sandbox().await;
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().to_str().unwrap();
    let signed_in = login(&sandbox, data_dir, &[]).await;
    let said = signed_in.output();
    assert!(
        said.contains(&format!("Signed in as {ADMIN_USER}")),
        "{said}"
    );
    assert!(said.contains("MFA claim:      yes"), "{said}");

    let file = token_file(dir.path());
    let text = std::fs::read_to_string(&file).unwrap();
    let stored: Value = serde_json::from_str(&text).unwrap();
    let token = stored["refresh_token"].as_str().unwrap();
    assert!(!said.contains(token), "the token is never printed");
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&file).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600, "only the owner reads the token file");

    let mut checked = status(&sandbox, data_dir, &[]).await;
    let code = checked.exit().await;
    let report = checked.output();
    assert!(code.success(), "{report}");
    assert!(report.contains(ADMIN_USER), "{report}");
    assert!(report.contains("MFA claim:         yes"), "{report}");
    assert!(report.contains("Lapses if unused:"), "{report}");
    assert!(
        report.contains("✔ a Referrals API read succeeded"),
        "{report}"
    );
    assert!(!report.contains(token));
}

#[tokio::test]
async fn status_without_a_sign_in_says_to_log_in_and_fails() {
    let sandbox = sandbox().await;
    let dir = tempfile::tempdir().unwrap();
    let mut checked = status(&sandbox, dir.path().to_str().unwrap(), &[]).await;
    let code = checked.exit().await;
    assert!(!code.success());
    assert!(
        checked.output().contains("cosell auth login"),
        "{}",
        checked.output()
    );
}

#[tokio::test]
async fn status_of_a_revoked_sign_in_fails_saying_to_sign_in_again() {
    let sandbox = sandbox().await;
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().to_str().unwrap();
    login(&sandbox, data_dir, &[]).await;
    reqwest::Client::new()
        .post(sandbox.url("/_sandbox/entra/revoke"))
        .json(&json!({"username": ADMIN_USER}))
        .send()
        .await
        .unwrap()
        .error_for_status()
        .unwrap();
    let mut checked = status(&sandbox, data_dir, &[]).await;
    let code = checked.exit().await;
    let report = checked.output();
    assert!(!code.success(), "{report}");
    assert!(report.contains("must sign in again"), "{report}");
}

#[tokio::test]
async fn login_into_a_secret_changes_only_its_refresh_token() {
    let sandbox = sandbox().await;
    let moto = Moto::start().await.unwrap();
    let secrets = aws_sdk_secretsmanager::Client::new(&moto.sdk_config());
    let arn = secrets
        .create_secret()
        .name("cosell/connector")
        .secret_string(
            json!({
                "COSELL_PC_CLIENT_SECRET": "sandbox-secret",
                "COSELL_DATAVERSE_CLIENT_SECRET": "dv-s3cret",
                "COSELL_PC_REFRESH_TOKEN": "an-old-token",
            })
            .to_string(),
        )
        .send()
        .await
        .unwrap()
        .arn
        .unwrap();
    let env = [
        ("COSELL_SECRET_ARN", arn.as_str()),
        ("AWS_ENDPOINT_URL", moto.endpoint()),
        ("AWS_REGION", "us-east-1"),
        ("AWS_ACCESS_KEY_ID", "testing"),
        ("AWS_SECRET_ACCESS_KEY", "testing"),
    ];
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().to_str().unwrap();
    let signed_in = login(&sandbox, data_dir, &env).await;
    assert!(
        signed_in.output().contains("Secrets Manager secret"),
        "{}",
        signed_in.output()
    );
    assert!(
        !token_file(dir.path()).exists(),
        "with a secret, nothing is kept in the data directory"
    );
    let text = secrets
        .get_secret_value()
        .secret_id(&arn)
        .send()
        .await
        .unwrap()
        .secret_string
        .unwrap();
    let secret: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(secret["COSELL_PC_CLIENT_SECRET"], "sandbox-secret");
    assert_eq!(secret["COSELL_DATAVERSE_CLIENT_SECRET"], "dv-s3cret");
    let token = secret["COSELL_PC_REFRESH_TOKEN"].as_str().unwrap();
    assert_ne!(token, "an-old-token");
    assert_eq!(secret.as_object().unwrap().len(), 3, "{secret}");

    let mut checked = status(&sandbox, data_dir, &env).await;
    let code = checked.exit().await;
    assert!(code.success(), "{}", checked.output());
}

#[tokio::test]
async fn the_device_code_flow_signs_in_once_the_code_is_approved() {
    let sandbox = Sandbox::start(SandboxConfig {
        device_code_interval: std::time::Duration::from_secs(1),
        ..SandboxConfig::default()
    })
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut cosell = Cosell::start(
        &[
            "auth",
            "login",
            "--device-code",
            "--sandbox-url",
            sandbox.base_url(),
            "--data-dir",
            dir.path().to_str().unwrap(),
        ],
        &[],
    );
    cosell.wait_for("enter the code").await;
    let message = cosell
        .lines()
        .into_iter()
        .find(|l| l.contains("enter the code"))
        .unwrap();
    let code = message
        .split_whitespace()
        .skip_while(|w| *w != "code")
        .nth(1)
        .map(|w| {
            w.trim_end_matches(|c: char| !c.is_ascii_alphanumeric())
                .to_string()
        })
        .unwrap_or_else(|| panic!("no user code in {message:?}"));
    reqwest::Client::new()
        .post(sandbox.url("/_sandbox/entra/device/approve"))
        .json(&json!({"user_code": code}))
        .send()
        .await
        .unwrap()
        .error_for_status()
        .unwrap();
    let exited = cosell.exit().await;
    assert!(exited.success(), "{}", cosell.output());
    assert!(
        cosell
            .output()
            .contains(&format!("Signed in as {ADMIN_USER}"))
    );

    // A public client's refresh token: the connector redeems it without the app's secret.
    let mut checked = status(&sandbox, dir.path().to_str().unwrap(), &[]).await;
    let code = checked.exit().await;
    assert!(code.success(), "{}", checked.output());
}

/// The sandbox as a real tenant would be configured: every connection setting given, the
/// Referral admin by user name and password.
fn password_grant_settings(base: &str) -> Vec<(&str, &str)> {
    vec![
        ("COSELL_PC_CLIENT_ID", "sandbox-client"),
        ("COSELL_PC_CLIENT_SECRET", "sandbox-secret"),
        ("COSELL_PC_USERNAME", ADMIN_USER),
        ("COSELL_PC_PASSWORD", "sandbox"),
        ("COSELL_PC_AUTHORITY_URL", base),
        ("COSELL_PC_API_URL", base),
        ("COSELL_PC_WEBHOOKS_URL", base),
        ("COSELL_DATAVERSE_URL", base),
        ("COSELL_DATAVERSE_AUTHORITY_URL", base),
        ("COSELL_DATAVERSE_TENANT", "sandbox"),
        ("COSELL_DATAVERSE_CLIENT_ID", "sandbox-client"),
        ("COSELL_DATAVERSE_CLIENT_SECRET", "sandbox-secret"),
    ]
}

#[tokio::test]
async fn the_password_grant_against_an_mfa_tenant_stops_start_up_saying_why() {
    let sandbox = sandbox().await;
    let dir = tempfile::tempdir().unwrap();
    let mut cosell = Cosell::start(
        &[
            "local",
            "--crm",
            "dynamics",
            "--listen",
            "127.0.0.1:0",
            "--data-dir",
            dir.path().to_str().unwrap(),
        ],
        &password_grant_settings(sandbox.base_url()),
    );
    let status = cosell.exit().await;
    let output = cosell.output();
    assert!(!status.success(), "{output}");
    assert!(
        output.contains("the password grant cannot pass multifactor authentication"),
        "{output}"
    );
    assert!(output.contains("AADSTS50076"), "{output}");
    assert!(output.contains("cosell auth login"), "{output}");
    assert!(
        output.contains("Partner Center refuses App+User calls without MFA"),
        "the start-up warning: {output}"
    );
}
