use cosell_sandbox::SandboxConfig;
use cosell_sandbox::config::{ADMIN_USER, CLIENT_ID, PARTNER_CENTER_AUDIENCE, REFERRALS_AUDIENCE};
use reqwest::Method;
use serde_json::{Value, json};

use crate::common::{Env, assert_aad, assert_unauthenticated, fast_config, json_of, str_of};

const LIST: &str = "/v1.0/engagements/referrals";

/// Without Conditional Access's MFA and Partner Center's enforcement, the password grant works
/// as it did before either.
fn password_config() -> SandboxConfig {
    SandboxConfig {
        sign_in_mfa: false,
        partner_center_mfa: false,
        ..fast_config()
    }
}

#[tokio::test]
async fn password_grant_gives_a_v1_token_for_either_partner_center_resource() {
    let env = Env::with(password_config()).await;
    for resource in [REFERRALS_AUDIENCE, PARTNER_CENTER_AUDIENCE] {
        let resp = env.password_token_v1(ADMIN_USER, resource).await;
        assert_eq!(resp.status(), 200);
        let t = json_of(resp).await;
        assert_eq!(t["token_type"], "Bearer");
        assert_eq!(t["resource"], resource);
        // v1 answers numbers as strings.
        assert_eq!(t["expires_in"], "3600");
        assert!(t["refresh_token"].is_string());
        if resource == REFERRALS_AUDIENCE {
            let access = str_of(&t, "access_token");
            let resp = env.call(Method::GET, LIST, access, None).await;
            assert_eq!(resp.status(), 200);
        }
    }
}

#[tokio::test]
async fn refresh_token_grant_works_on_v1_and_v2_and_rotates() {
    let env = Env::with(password_config()).await;
    let first = json_of(env.password_token_v1(ADMIN_USER, REFERRALS_AUDIENCE).await).await;
    let refresh = str_of(&first, "refresh_token");
    let v1 = json_of(env.refresh(refresh, true).await).await;
    let access = str_of(&v1, "access_token");
    assert_eq!(
        env.call(Method::GET, LIST, access, None).await.status(),
        200
    );

    // A new refresh token came back; it works on v2.
    let next = str_of(&v1, "refresh_token");
    assert_ne!(next, refresh);
    let v2 = env
        .refresh_v2(
            next,
            &format!("{REFERRALS_AUDIENCE}/.default offline_access"),
        )
        .await;
    assert_eq!(v2.status(), 200);
    let v2 = json_of(v2).await;
    assert!(v2["expires_in"].is_number(), "v2 answers numbers: {v2}");
    let access = str_of(&v2, "access_token");
    assert_eq!(
        env.call(Method::GET, LIST, access, None).await.status(),
        200
    );
}

#[tokio::test]
async fn wrong_credentials_get_entra_errors() {
    let env = Env::start().await;
    let bad_password = env
        .password_grant(ADMIN_USER, "wrong", REFERRALS_AUDIENCE)
        .await;
    assert_aad(bad_password, 400, "invalid_grant", 50126).await;

    let bad_secret = env
        .form(
            "/common/oauth2/v2.0/token",
            &[
                ("grant_type", "client_credentials"),
                ("client_id", CLIENT_ID),
                ("client_secret", "nope"),
                ("scope", "https://api.partnercenter.microsoft.com/.default"),
            ],
        )
        .await;
    assert_aad(bad_secret, 401, "invalid_client", 7000215).await;

    let unknown_resource = env
        .password_token_v1(ADMIN_USER, "https://graph.example")
        .await;
    assert_eq!(unknown_resource.status(), 400);
}

#[tokio::test]
async fn missing_unknown_expired_or_wrong_audience_tokens_get_401() {
    let env = Env::with(SandboxConfig {
        token_lifetime: std::time::Duration::from_secs(60),
        ..fast_config()
    })
    .await;
    let missing = env.http.get(env.url(LIST)).send().await.expect("send");
    assert_unauthenticated(missing, "No bearer token").await;

    assert_eq!(
        env.call(Method::GET, LIST, "made-up", None).await.status(),
        401
    );

    // A Partner Center token for the other audience does not open the Referrals API.
    let wrong = env.token_v1(ADMIN_USER, PARTNER_CENTER_AUDIENCE).await;
    let resp = env
        .call(Method::GET, LIST, str_of(&wrong, "access_token"), None)
        .await;
    assert_unauthenticated(resp, "audience").await;

    let token = env.admin().await;
    assert_eq!(
        env.call(Method::GET, LIST, &token, None).await.status(),
        200
    );
    env.advance(json!({"seconds": 61})).await;
    let expired = env.call(Method::GET, LIST, &token, None).await;
    assert_unauthenticated(expired, "expired").await;
}

#[tokio::test]
async fn app_only_tokens_cannot_use_the_referrals_api() {
    let env = Env::start().await;
    let app = env.app_token(REFERRALS_AUDIENCE).await;
    assert_eq!(env.call(Method::GET, LIST, &app, None).await.status(), 403);
}

#[tokio::test]
async fn referral_user_reads_only_its_team_referrals_and_cannot_write() {
    let env = Env::start().await;
    let mine = env
        .incoming(
            "co-sell",
            json!({"team": [{"firstName": "R", "lastName": "U", "email": "referral-user@sandbox.test"}]}),
        )
        .await;
    let other = env.incoming("co-sell", json!({})).await;
    let reader = env.reader().await;
    let list: Value = env
        .call(Method::GET, LIST, &reader, None)
        .await
        .json()
        .await
        .expect("json");
    let ids: Vec<&str> = list["value"]
        .as_array()
        .expect("value")
        .iter()
        .filter_map(|r| r["id"].as_str())
        .collect();
    assert_eq!(ids, vec![mine["id"].as_str().expect("id")]);
    let hidden = env
        .call(
            Method::GET,
            &format!("{LIST}/{}", other["id"].as_str().expect("id")),
            &reader,
            None,
        )
        .await;
    assert_eq!(hidden.status(), 404);
    let write = env
        .call(
            Method::PATCH,
            &format!("{LIST}/{}", mine["id"].as_str().expect("id")),
            &reader,
            Some(json!([{"op": "replace", "path": "/name", "value": "x"}])),
        )
        .await;
    assert_eq!(write.status(), 403);
    let create = env
        .call(Method::POST, LIST, &reader, Some(Env::outgoing("x")))
        .await;
    assert_eq!(create.status(), 403);
}

#[tokio::test]
async fn a_changed_password_stops_the_password_grant_but_not_a_confidential_refresh_token() {
    let env = Env::with(password_config()).await;
    let first = json_of(env.password_token_v1(ADMIN_USER, REFERRALS_AUDIENCE).await).await;
    env.set_password(ADMIN_USER, "new-one").await;
    let old_password = env.password_token_v1(ADMIN_USER, REFERRALS_AUDIENCE).await;
    assert_eq!(old_password.status(), 400);
    // Obtained with the client secret: a confidential client's token survives the change.
    let refresh = env.refresh(str_of(&first, "refresh_token"), true).await;
    assert_eq!(refresh.status(), 200);
}
