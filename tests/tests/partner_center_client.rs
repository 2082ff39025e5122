//! The Partner Center HTTP adapter against the sandbox over real HTTP: the Partner Center
//! contract (every Referrals API call the sync makes, as the in-memory Partner Center makes them
//! too), and what only the adapter can get wrong: tokens (refresh-token and password grants,
//! MFA, caching, renewal after a 401, rotation), paging, the errors and retries a user would notice, PUT and the
//! webhook registration.

use cosell_e2e::sandbox_control as control;
use std::collections::HashSet;
use std::time::Duration;

use cosell_e2e::{fast_retries, partner_center_contract, sandbox_refresh_token};
use cosell_sandbox::config::RefreshRotation;
use cosell_sandbox::{Sandbox, SandboxConfig};
use cosell_shared::partner_center::http::{
    PartnerCenterClient, PartnerCenterConfig, RegistrationChange, WebhookRegistration,
};
use cosell_shared::partner_center::token::{PartnerCenterAuth, Secret, UserCredential};
use cosell_shared::partner_center::{AuthFailure, PartnerCenter, PartnerCenterError, PatchOp};
use cosell_shared::referral::Referral;
use serde_json::{Value, json};

const ADMIN: &str = "referral-admin@sandbox.test";
const READER: &str = "referral-user@sandbox.test";
const PASSWORD: &str = "sandbox";
const TOKEN_ROUTE: &str = "POST /{tenant}/oauth2/token";
const GET_ONE: &str = "GET /v1.0/engagements/referrals/{id}";
const LIST: &str = "GET /v1.0/engagements/referrals";
const CREATE: &str = "POST /v1.0/engagements/referrals";

async fn sandbox() -> Sandbox {
    sandbox_with(SandboxConfig::default()).await
}

async fn sandbox_with(config: SandboxConfig) -> Sandbox {
    Sandbox::start(config)
        .await
        .unwrap_or_else(|e| panic!("cannot start the sandbox: {e}"))
}

/// A tenant without Conditional Access or Partner Center's MFA enforcement, where the password
/// grant still works.
async fn sandbox_without_mfa() -> Sandbox {
    sandbox_with(SandboxConfig {
        sign_in_mfa: false,
        partner_center_mfa: false,
        ..SandboxConfig::default()
    })
    .await
}

fn password(username: &str, password: &str) -> UserCredential {
    UserCredential::Password {
        username: username.into(),
        password: Secret::new(password),
    }
}

fn auth(sandbox: &Sandbox, credential: UserCredential) -> PartnerCenterAuth {
    PartnerCenterAuth {
        authority_url: sandbox.base_url().to_string(),
        ..PartnerCenterAuth::new("sandbox-client", "sandbox-secret", credential)
    }
}

fn client_with(sandbox: &Sandbox, auth: PartnerCenterAuth) -> PartnerCenterClient {
    let config = PartnerCenterConfig {
        api_base_url: sandbox.base_url().to_string(),
        webhooks_base_url: sandbox.base_url().to_string(),
        timeout: Duration::from_secs(10),
        retry: fast_retries(3),
    };
    PartnerCenterClient::new(config, auth).unwrap_or_else(|e| panic!("client: {e}"))
}

/// The Referral admin signed in as `cosell auth login` does.
async fn signed_in(sandbox: &Sandbox, username: &str) -> UserCredential {
    UserCredential::RefreshToken(sandbox_refresh_token(sandbox.base_url(), username).await)
}

async fn admin_client(sandbox: &Sandbox) -> PartnerCenterClient {
    client_with(sandbox, auth(sandbox, signed_in(sandbox, ADMIN).await))
}

async fn stats(sandbox: &Sandbox) -> Value {
    control(
        sandbox,
        reqwest::Method::GET,
        "/_sandbox/stats",
        Value::Null,
    )
    .await
}

fn count(stats: &Value, key: &str) -> u64 {
    stats.get(key).and_then(Value::as_u64).unwrap_or(0)
}

async fn add_fault(sandbox: &Sandbox, rule: Value) {
    control(sandbox, reqwest::Method::POST, "/_sandbox/faults", rule).await;
}

/// Microsoft shares a referral with the partner.
async fn incoming(sandbox: &Sandbox, kind: &str, partial: Value) -> Referral {
    let doc = control(
        sandbox,
        reqwest::Method::POST,
        &format!("/_sandbox/partner-center/incoming?kind={kind}"),
        partial,
    )
    .await;
    serde_json::from_value(doc).unwrap_or_else(|e| panic!("incoming referral: {e}"))
}

/// A private deal the partner registers from its CRM.
fn deal(name: &str, crm_id: &str, country: &str) -> Referral {
    serde_json::from_value(json!({
        "name": name,
        "externalReferenceId": crm_id,
        "type": "Independent",
        "qualification": "SalesQualified",
        "customerProfile": {
            "name": "Contoso",
            "address": {"city": "Oslo", "country": country}
        },
        "consent": {
            "consentToToShareInfoWithOthers": false,
            "consentToContact": true,
            "consentToShareReferralWithMicrosoftSellers": false
        },
        "details": {"dealValue": 12000, "currency": "USD"}
    }))
    .unwrap_or_else(|e| panic!("deal: {e}"))
}

async fn create(client: &PartnerCenterClient, name: &str, crm_id: &str) -> Referral {
    client
        .create_referral(&deal(name, crm_id, "NO"))
        .await
        .unwrap_or_else(|e| panic!("create {name}: {e}"))
}

fn id(r: &Referral) -> &str {
    r.id.as_deref()
        .unwrap_or_else(|| panic!("referral without id: {r:?}"))
}

#[tokio::test]
async fn the_client_keeps_the_partner_center_contract_on_the_sandbox() {
    let sandbox = sandbox().await;
    let client = admin_client(&sandbox).await;
    partner_center_contract::run_all(&client, &sandbox).await;
}

#[tokio::test]
async fn one_token_serves_many_calls() {
    let sandbox = sandbox().await;
    let client = admin_client(&sandbox).await;
    let created = create(&client, "Contoso ERP", "crm-1").await;
    for _ in 0..3 {
        let read = client.get_referral(id(&created)).await.expect("get");
        assert_eq!(read.and_then(|r| r.name).as_deref(), Some("Contoso ERP"));
    }
    client
        .find_by_external_reference("crm-1")
        .await
        .expect("find");
    assert_eq!(count(&stats(&sandbox).await, TOKEN_ROUTE), 1);
}

#[tokio::test]
async fn concurrent_first_calls_share_one_token_request() {
    let sandbox = sandbox().await;
    let client = std::sync::Arc::new(admin_client(&sandbox).await);
    let mut calls = tokio::task::JoinSet::new();
    for i in 0..8 {
        let client = client.clone();
        calls.spawn(async move { client.get_referral(&format!("missing-{i}")).await });
    }
    while let Some(result) = calls.join_next().await {
        assert_eq!(result.expect("task"), Ok(None));
    }
    assert_eq!(count(&stats(&sandbox).await, TOKEN_ROUTE), 1);
}

#[tokio::test]
async fn a_rotated_refresh_token_is_followed_when_the_old_one_stops_working() {
    let sandbox = sandbox_with(SandboxConfig {
        refresh_rotation: RefreshRotation::SingleUse,
        ..SandboxConfig::default()
    })
    .await;
    let client = admin_client(&sandbox).await;
    let created = create(&client, "Refreshed deal", "crm-rt").await;

    // In single-use mode a redeemed refresh token is retired: the next access token can only
    // come from the rotated one the client kept.
    control(
        &sandbox,
        reqwest::Method::POST,
        "/_sandbox/identities/expire-tokens",
        json!({}),
    )
    .await;
    let read = client.get_referral(id(&created)).await.expect("get");
    assert_eq!(read.map(|r| r.id), Some(created.id.clone()));
    assert_eq!(count(&stats(&sandbox).await, TOKEN_ROUTE), 2);
}

#[tokio::test]
async fn the_password_grant_cannot_pass_mfa_and_says_to_sign_in_interactively() {
    let sandbox = sandbox().await;
    let client = client_with(&sandbox, auth(&sandbox, password(ADMIN, PASSWORD)));
    let err = client.get_referral("x").await.expect_err("MFA is required");
    let PartnerCenterError::Auth { kind, message } = &err else {
        panic!("expected Auth, got {err:?}");
    };
    assert_eq!(*kind, AuthFailure::PasswordGrantMfa, "{message}");
    assert!(message.contains("AADSTS50076"), "{message}");
    assert!(message.contains("cosell auth login"), "{message}");
}

#[tokio::test]
async fn a_token_without_the_mfa_claim_is_refused_by_partner_center_and_said_so() {
    // Entra lets the password through (no Conditional Access), Partner Center enforces MFA.
    let sandbox = sandbox_with(SandboxConfig {
        sign_in_mfa: false,
        ..SandboxConfig::default()
    })
    .await;
    let client = client_with(&sandbox, auth(&sandbox, password(ADMIN, PASSWORD)));
    let err = client.get_referral("x").await.expect_err("no MFA claim");
    let PartnerCenterError::Auth { kind, message } = &err else {
        panic!("expected Auth, got {err:?}");
    };
    assert_eq!(*kind, AuthFailure::MfaClaimMissing, "{message}");
    assert!(message.contains("MFA claim"), "{message}");
}

#[tokio::test]
async fn a_revoked_refresh_token_asks_the_admin_to_sign_in_again() {
    let sandbox = sandbox().await;
    let client = admin_client(&sandbox).await;
    control(
        &sandbox,
        reqwest::Method::POST,
        "/_sandbox/entra/revoke",
        json!({"username": ADMIN}),
    )
    .await;
    let err = client.get_referral("x").await.expect_err("revoked");
    let PartnerCenterError::Auth { kind, message } = &err else {
        panic!("expected Auth, got {err:?}");
    };
    assert_eq!(*kind, AuthFailure::SignInAgain, "{message}");
    assert!(message.contains("AADSTS50173"), "{message}");
    assert!(message.contains("`cosell auth login`"), "{message}");
}

#[tokio::test]
async fn a_password_grant_token_serves_many_calls_where_no_mfa_is_asked() {
    let sandbox = sandbox_without_mfa().await;
    let client = client_with(&sandbox, auth(&sandbox, password(ADMIN, PASSWORD)));
    let created = create(&client, "Contoso ERP", "crm-1").await;
    let read = client.get_referral(id(&created)).await.expect("get");
    assert_eq!(read.and_then(|r| r.name).as_deref(), Some("Contoso ERP"));
    assert_eq!(count(&stats(&sandbox).await, TOKEN_ROUTE), 1);
}

#[tokio::test]
async fn an_expired_token_is_renewed_once_and_the_call_succeeds() {
    let sandbox = sandbox().await;
    let client = admin_client(&sandbox).await;
    let created = create(&client, "Contoso", "crm-exp").await;
    control(
        &sandbox,
        reqwest::Method::POST,
        "/_sandbox/identities/expire-tokens",
        json!({}),
    )
    .await;
    let read = client.get_referral(id(&created)).await.expect("get");
    assert!(read.is_some());
    let stats = stats(&sandbox).await;
    assert_eq!(count(&stats, TOKEN_ROUTE), 2);
    // The refused call and its one repeat.
    assert_eq!(count(&stats, GET_ONE), 2);
}

#[tokio::test]
async fn a_wrong_password_is_an_auth_error_that_does_not_show_it() {
    let sandbox = sandbox_without_mfa().await;
    let client = client_with(&sandbox, auth(&sandbox, password(ADMIN, "Winter2025!")));
    let err = client
        .get_referral("anything")
        .await
        .expect_err("must fail");
    let PartnerCenterError::Auth { message, .. } = &err else {
        panic!("expected Auth, got {err:?}");
    };
    assert!(message.contains("AADSTS50126"), "{message}");
    assert!(message.contains("invalid_grant"), "{message}");
    for shown in [err.to_string(), format!("{err:?}")] {
        assert!(!shown.contains("Winter2025!"), "{shown}");
        assert!(!shown.contains("sandbox-secret"), "{shown}");
    }
    // Wrong credentials are not retried: one attempt, no hammering of Entra.
    assert_eq!(count(&stats(&sandbox).await, TOKEN_ROUTE), 1);
}

#[tokio::test]
async fn a_wrong_client_secret_is_an_auth_error_that_does_not_show_it() {
    let sandbox = sandbox().await;
    let mut auth = auth(&sandbox, signed_in(&sandbox, ADMIN).await);
    auth.client_credential = Secret::new("not-the-secret-xyz").into();
    let client = client_with(&sandbox, auth);
    let err = client.get_referral("x").await.expect_err("must fail");
    let PartnerCenterError::Auth { message, .. } = &err else {
        panic!("expected Auth, got {err:?}");
    };
    assert!(message.contains("AADSTS7000215"), "{message}");
    assert!(!format!("{err} {err:?}").contains("not-the-secret-xyz"));
}

#[tokio::test]
async fn a_referral_user_may_not_write() {
    let sandbox = sandbox().await;
    let admin = admin_client(&sandbox).await;
    let created = create(&admin, "Contoso", "crm-ro").await;
    let reader = client_with(&sandbox, auth(&sandbox, signed_in(&sandbox, READER).await));
    let err = reader
        .patch_referral(
            id(&created),
            None,
            &[PatchOp::replace("/name", json!("Renamed"))],
        )
        .await
        .expect_err("must be refused");
    assert!(matches!(err, PartnerCenterError::Auth { .. }), "{err:?}");
}

#[tokio::test]
async fn list_changed_since_follows_every_page_in_update_order() {
    let sandbox = sandbox().await;
    let client = admin_client(&sandbox).await;
    for _ in 0..3 {
        incoming(&sandbox, "lead", json!({"name": "Before the watermark"})).await;
    }
    // Later changes happen an hour on, so the watermark cleanly separates them.
    let clock = control(
        &sandbox,
        reqwest::Method::POST,
        "/_sandbox/clock/advance",
        json!({"hours": 1}),
    )
    .await;
    let since = clock["now"]
        .as_str()
        .and_then(|s| chrono::DateTime::parse_from_rfc3339(s).ok())
        .map(|t| t.with_timezone(&chrono::Utc))
        .unwrap_or_else(|| panic!("sandbox clock: {clock}"));
    let mut expected = HashSet::new();
    for i in 0..230 {
        let r = incoming(&sandbox, "lead", json!({"name": format!("Lead {i}")})).await;
        expected.insert(r.id.clone().expect("id"));
    }
    control(
        &sandbox,
        reqwest::Method::DELETE,
        "/_sandbox/stats",
        Value::Null,
    )
    .await;

    let changed = client.list_changed_since(since).await.expect("list");
    let ids: HashSet<_> = changed.iter().filter_map(|r| r.id.clone()).collect();
    assert_eq!(changed.len(), 230);
    assert_eq!(ids, expected);
    let stamps: Vec<_> = changed
        .iter()
        .map(|r| r.updated_date_time.clone().unwrap_or_default())
        .collect();
    let mut sorted = stamps.clone();
    sorted.sort();
    assert_eq!(stamps, sorted, "oldest change first");
    // Pages of 100: 100 + 100 + 30.
    assert_eq!(count(&stats(&sandbox).await, LIST), 3);
}

#[tokio::test]
async fn put_replaces_the_referral_under_its_etag() {
    let sandbox = sandbox().await;
    let client = admin_client(&sandbox).await;
    let created = create(&client, "Contoso", "crm-put").await;
    let mut edited = created.clone();
    edited.name = Some("Contoso, renamed".into());
    let stored = client.put_referral(&edited).await.expect("put");
    assert_eq!(stored.name.as_deref(), Some("Contoso, renamed"));
    assert_ne!(stored.e_tag, created.e_tag);

    // `edited` still carries the eTag from before the replace.
    edited.name = Some("Lost update".into());
    assert_eq!(
        client.put_referral(&edited).await,
        Err(PartnerCenterError::PreconditionFailed)
    );
}

#[tokio::test]
async fn throttling_is_waited_out_and_the_read_succeeds() {
    let sandbox = sandbox().await;
    let shared = incoming(&sandbox, "lead", json!({})).await;
    let client = admin_client(&sandbox).await;
    add_fault(
        &sandbox,
        json!({"method": "GET", "route": "/v1.0/engagements/referrals/{id}",
               "status": 429, "retryAfter": 1, "count": 1}),
    )
    .await;
    let read = client.get_referral(id(&shared)).await.expect("get");
    assert_eq!(read.map(|r| r.id), Some(shared.id.clone()));
    assert_eq!(count(&stats(&sandbox).await, GET_ONE), 2);
}

#[tokio::test]
async fn a_lasting_outage_ends_transient_after_the_policy_s_retries() {
    let sandbox = sandbox().await;
    let client = admin_client(&sandbox).await;
    add_fault(
        &sandbox,
        json!({"method": "GET", "route": "/v1.0/engagements/referrals/{id}",
               "status": 503, "count": 100}),
    )
    .await;
    let err = client.get_referral("any").await.expect_err("must fail");
    assert!(
        matches!(
            err,
            PartnerCenterError::Transient {
                status: Some(503),
                ..
            }
        ),
        "{err:?}"
    );
    // The first attempt and the policy's three retries.
    assert_eq!(count(&stats(&sandbox).await, GET_ONE), 4);
}

#[tokio::test]
async fn a_create_whose_answer_is_lost_is_transient_and_not_sent_again() {
    let sandbox = sandbox().await;
    let client = admin_client(&sandbox).await;
    add_fault(
        &sandbox,
        json!({"method": "POST", "route": "/v1.0/engagements/referrals",
               "dropAfterCommit": true, "count": 1}),
    )
    .await;
    let err = client
        .create_referral(&deal("Contoso", "crm-dropped", "US"))
        .await
        .expect_err("no answer");
    assert!(err.is_transient(), "{err:?}");
    // Sending it again could have made a duplicate; the write did happen once.
    assert_eq!(count(&stats(&sandbox).await, CREATE), 1);
    let found = client
        .find_by_external_reference("crm-dropped")
        .await
        .expect("find");
    assert!(found.is_some());
}

fn registration(url: &str, events: &[&str]) -> WebhookRegistration {
    WebhookRegistration {
        webhook_url: url.into(),
        webhook_events: events.iter().map(|e| e.to_string()).collect(),
        signature_to_ms_header: true,
    }
}

#[tokio::test]
async fn the_webhook_registration_is_created_kept_and_taken_back() {
    let sandbox = sandbox().await;
    let client = admin_client(&sandbox).await;
    let ours = registration(
        "https://connector.example/webhooks/partner-center",
        &["referral-created", "referral-updated"],
    );
    assert_eq!(client.webhook_registration().await.expect("GET"), None);

    assert_eq!(
        client.ensure_webhook(&ours).await.expect("register"),
        RegistrationChange::Created
    );
    assert_eq!(
        client.webhook_registration().await.expect("GET"),
        Some(ours.clone())
    );

    // The same events in another order and case: nothing to do.
    let reordered = registration(
        "https://connector.example/webhooks/partner-center",
        &["Referral-Updated", "referral-created"],
    );
    assert_eq!(
        client.ensure_webhook(&reordered).await.expect("again"),
        RegistrationChange::Unchanged
    );

    // Another environment took the registration over: it is put back, and the change says
    // where the events were going.
    let theirs = registration("https://test-env.example/hook", &["referral-created"]);
    client.ensure_webhook(&theirs).await.expect("take over");
    assert_eq!(
        client.ensure_webhook(&ours).await.expect("take back"),
        RegistrationChange::Replaced { previous: theirs }
    );
    assert_eq!(
        client.webhook_registration().await.expect("GET"),
        Some(ours)
    );
}

#[tokio::test]
async fn a_refused_registration_names_the_problem() {
    let sandbox = sandbox().await;
    let client = admin_client(&sandbox).await;
    let err = client
        .ensure_webhook(&registration("https://c.example/hook", &["no-such-event"]))
        .await
        .expect_err("unknown event");
    assert!(
        matches!(&err, PartnerCenterError::Rejected { message, .. } if message.contains("no-such-event")),
        "{err:?}"
    );
}
