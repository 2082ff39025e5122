//! Entra ID's sign-in flows as a client meets them: the authorization code flow with PKCE, the
//! device code flow, refresh token rotation and lapse, revocation, Conditional Access's MFA and
//! Partner Center's MFA enforcement, and client assertions signed with a certificate's key.

use cosell_sandbox::SandboxConfig;
use cosell_sandbox::config::{
    ADMIN_USER, CLIENT_ID, CLIENT_SECRET, ClientIdentity, PARTNER_CENTER_AUDIENCE, READER_USER,
    REFERRALS_AUDIENCE, TENANT_ID,
};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use reqwest::{Method, Response};
use serde_json::{Value, json};

use crate::common::{
    Env, REDIRECT_URI, assert_aad, assert_unauthenticated, fast_config, json_of, jwt_claims, pkce,
    redirected_to, str_of,
};

const LIST: &str = "/v1.0/engagements/referrals";
const REG: &str = "/webhooks/v1/registration";
const V2_AUTHORIZE: &str = "/common/oauth2/v2.0/authorize";
const V2_TOKEN: &str = "/common/oauth2/v2.0/token";
const V1_TOKEN: &str = "/common/oauth2/token";

fn pc_scope() -> String {
    format!("{REFERRALS_AUDIENCE}/.default offline_access openid profile")
}

async fn refresh_tokens(env: &Env) -> Vec<Value> {
    json_of(
        env.control(Method::GET, "/_sandbox/entra/refresh-tokens", None)
            .await,
    )
    .await
    .as_array()
    .expect("an array")
    .clone()
}

#[tokio::test]
async fn the_authorization_code_flow_signs_the_admin_in_with_mfa() {
    let env = Env::start().await;
    let (verifier, challenge) = pkce();
    let resp = env
        .authorize_code(
            V2_AUTHORIZE,
            &[
                ("scope", &pc_scope()),
                ("state", "opaque/state=1&x"),
                ("nonce", "n-0S6"),
                ("code_challenge", &challenge),
                ("code_challenge_method", "S256"),
                ("prompt", "select_account"),
            ],
        )
        .await;
    assert_eq!(resp.status(), 302);
    let location = resp
        .headers()
        .get("location")
        .and_then(|v| v.to_str().ok())
        .expect("location")
        .to_string();
    assert!(location.starts_with(REDIRECT_URI), "{location}");
    let back = redirected_to(&resp);
    assert_eq!(back["state"], "opaque/state=1&x");
    let tokens = env
        .redeem_code(V2_TOKEN, &back["code"], &verifier, REDIRECT_URI)
        .await;
    assert_eq!(tokens.status(), 200);
    let tokens = json_of(tokens).await;
    assert_eq!(tokens["token_type"], "Bearer");
    assert_eq!(tokens["expires_in"], 3600);
    assert!(tokens["ext_expires_in"].is_number());
    assert!(str_of(&tokens, "scope").contains("offline_access"));
    assert!(tokens["refresh_token"].is_string());

    let access = jwt_claims(str_of(&tokens, "access_token"));
    assert_eq!(access["aud"], REFERRALS_AUDIENCE);
    assert_eq!(
        access["iss"],
        format!("https://sts.windows.net/{TENANT_ID}/")
    );
    assert_eq!(access["tid"], TENANT_ID);
    assert_eq!(access["appid"], CLIENT_ID);
    assert_eq!(access["ver"], "1.0");
    assert_eq!(access["upn"], ADMIN_USER);
    assert_eq!(access["unique_name"], ADMIN_USER);
    assert_eq!(access["name"], "Referral Admin");
    assert_eq!(access["amr"], json!(["pwd", "mfa"]));
    assert!(access["oid"].is_string() && access["scp"].is_string());
    assert!(access["exp"].as_i64() > access["iat"].as_i64());

    let id = jwt_claims(str_of(&tokens, "id_token"));
    assert_eq!(id["aud"], CLIENT_ID);
    assert_eq!(
        id["iss"],
        format!("https://login.microsoftonline.com/{TENANT_ID}/v2.0")
    );
    assert_eq!(id["nonce"], "n-0S6");
    assert_eq!(id["preferred_username"], ADMIN_USER);
    assert_eq!(id["oid"], access["oid"], "one object id for the user");
    assert_eq!(id["ver"], "2.0");
    assert!(id["sub"].is_string() && id["tid"] == TENANT_ID);

    let token = str_of(&tokens, "access_token");
    assert_eq!(env.call(Method::GET, LIST, token, None).await.status(), 200);
}

#[tokio::test]
async fn offline_access_and_openid_decide_the_refresh_and_id_tokens_on_v2() {
    let env = Env::start().await;
    let bare = env
        .token_v2(ADMIN_USER, &format!("{REFERRALS_AUDIENCE}/.default"))
        .await;
    assert!(bare["access_token"].is_string());
    assert!(bare.get("refresh_token").is_none(), "{bare}");
    assert!(bare.get("id_token").is_none(), "{bare}");

    // v1 always answers both, with the v1 id token's claims.
    let v1 = env.token_v1(READER_USER, PARTNER_CENTER_AUDIENCE).await;
    assert_eq!(v1["resource"], PARTNER_CENTER_AUDIENCE);
    assert_eq!(v1["expires_in"], "3600");
    assert!(v1["refresh_token"].is_string());
    let id = jwt_claims(str_of(&v1, "id_token"));
    assert_eq!(id["upn"], READER_USER);
    assert_eq!(id["amr"], json!(["pwd", "mfa"]));
    assert_eq!(id["iss"], format!("https://sts.windows.net/{TENANT_ID}/"));
}

/// A code for the admin, with its verifier.
async fn code(env: &Env) -> (String, String) {
    let (verifier, challenge) = pkce();
    let resp = env
        .authorize_code(
            V2_AUTHORIZE,
            &[
                ("scope", &pc_scope()),
                ("code_challenge", &challenge),
                ("code_challenge_method", "S256"),
            ],
        )
        .await;
    assert_eq!(resp.status(), 302);
    (redirected_to(&resp)["code"].clone(), verifier)
}

async fn redeem(env: &Env, code: &str, verifier: &str, redirect_uri: &str) -> Response {
    env.redeem_code(V2_TOKEN, code, verifier, redirect_uri)
        .await
}

#[tokio::test]
async fn a_code_needs_its_verifier_and_redirect_uri_and_works_once() {
    let env = Env::start().await;
    let (code, verifier) = code(&env).await;
    assert_aad(
        redeem(&env, &code, "not-the-verifier", REDIRECT_URI).await,
        400,
        "invalid_grant",
        501481,
    )
    .await;
    let body = assert_aad(
        redeem(&env, &code, &verifier, "http://localhost:8400/other").await,
        400,
        "invalid_grant",
        70002,
    )
    .await;
    assert_eq!(body["error_codes"], json!([70002, 50011]));
    // No client credential: the code flow is for a confidential client.
    let anonymous = env
        .form(
            V2_TOKEN,
            &[
                ("grant_type", "authorization_code"),
                ("client_id", CLIENT_ID),
                ("code", &code),
                ("redirect_uri", REDIRECT_URI),
                ("code_verifier", &verifier),
            ],
        )
        .await;
    assert_aad(anonymous, 401, "invalid_client", 7000218).await;

    // Refused attempts spend nothing; the right one works, and only once.
    assert_eq!(
        redeem(&env, &code, &verifier, REDIRECT_URI).await.status(),
        200
    );
    assert_aad(
        redeem(&env, &code, &verifier, REDIRECT_URI).await,
        400,
        "invalid_grant",
        54005,
    )
    .await;
    assert_aad(
        redeem(&env, "made-up", &verifier, REDIRECT_URI).await,
        400,
        "invalid_grant",
        70000,
    )
    .await;

    // A code lives ten minutes of sandbox time.
    let (late, verifier) = self::code(&env).await;
    env.advance(json!({"minutes": 11})).await;
    assert_aad(
        redeem(&env, &late, &verifier, REDIRECT_URI).await,
        400,
        "invalid_grant",
        70008,
    )
    .await;
}

#[tokio::test]
async fn the_authorize_endpoint_redirects_only_to_loopback_addresses() {
    let env = Env::start().await;
    let ask = |redirect: &'static str, client: &'static str| {
        let env = &env;
        async move {
            env.authorize(
                V2_AUTHORIZE,
                &[
                    ("client_id", client),
                    ("response_type", "code"),
                    ("redirect_uri", redirect),
                    ("scope", &pc_scope()),
                    ("state", "st"),
                ],
            )
            .await
        }
    };
    for refused in [
        "https://app.example/callback",
        "http://localhost.example.com/cb",
        "",
    ] {
        let resp = ask(refused, CLIENT_ID).await;
        assert!(resp.headers().get("location").is_none(), "{refused}");
        assert_aad(resp, 400, "invalid_request", 50011).await;
    }
    let unknown = ask(REDIRECT_URI, "nobody").await;
    assert!(unknown.headers().get("location").is_none());
    assert_aad(unknown, 400, "unauthorized_client", 700016).await;
    // Entra's loopback rule ignores the port.
    for ok in [
        "http://127.0.0.1:61234/",
        "http://[::1]:3000/cb",
        "http://localhost",
    ] {
        let resp = ask(ok, CLIENT_ID).await;
        assert_eq!(resp.status(), 302, "{ok}");
        assert!(redirected_to(&resp).contains_key("code"));
    }

    // Once the redirect URI is known good, errors go back through it.
    let token_flow = env
        .authorize(
            V2_AUTHORIZE,
            &[
                ("client_id", CLIENT_ID),
                ("response_type", "token"),
                ("redirect_uri", REDIRECT_URI),
                ("scope", &pc_scope()),
                ("state", "st"),
            ],
        )
        .await;
    assert_eq!(token_flow.status(), 302);
    let back = redirected_to(&token_flow);
    assert_eq!(back["error"], "unsupported_response_type");
    assert_eq!(back["state"], "st");
    let stranger = env
        .authorize_code(
            V2_AUTHORIZE,
            &[
                ("scope", &pc_scope()),
                ("login_hint", "nobody@sandbox.test"),
            ],
        )
        .await;
    assert_eq!(redirected_to(&stranger)["error"], "access_denied");
}

#[tokio::test]
async fn the_v1_authorize_endpoint_takes_a_resource_and_plain_pkce() {
    let env = Env::start().await;
    let plain = "plain-verifier-of-enough-length-0123456789abc";
    let resp = env
        .authorize_code(
            "/my-tenant/oauth2/authorize",
            &[("resource", REFERRALS_AUDIENCE), ("code_challenge", plain)],
        )
        .await;
    assert_eq!(resp.status(), 302);
    let code = redirected_to(&resp)["code"].clone();
    let tokens = env
        .redeem_code("/my-tenant/oauth2/token", &code, plain, REDIRECT_URI)
        .await;
    assert_eq!(tokens.status(), 200);
    let tokens = json_of(tokens).await;
    assert_eq!(tokens["resource"], REFERRALS_AUDIENCE);
    assert!(tokens["refresh_token"].is_string() && tokens["id_token"].is_string());
}

async fn start_device(env: &Env, scope: &str) -> Value {
    let resp = env
        .form(
            "/common/oauth2/v2.0/devicecode",
            &[("client_id", CLIENT_ID), ("scope", scope)],
        )
        .await;
    assert_eq!(resp.status(), 200);
    json_of(resp).await
}

/// The user who entered the code answers: `approve` or `decline`.
async fn answer_device(env: &Env, answer: &str, body: Value) -> Response {
    env.control(
        Method::POST,
        &format!("/_sandbox/entra/device/{answer}"),
        Some(body),
    )
    .await
}

async fn poll(env: &Env, device_code: &str, secret: Option<&str>) -> Response {
    let mut form = vec![
        ("grant_type", "urn:ietf:params:oauth:grant-type:device_code"),
        ("client_id", CLIENT_ID),
        ("device_code", device_code),
    ];
    if let Some(s) = secret {
        form.push(("client_secret", s));
    }
    env.form(V2_TOKEN, &form).await
}

#[tokio::test]
async fn the_device_code_flow_waits_for_the_user_then_signs_in_with_mfa() {
    let env = Env::start().await;
    let device = start_device(&env, &pc_scope()).await;
    let user_code = str_of(&device, "user_code").to_string();
    assert_eq!(user_code.len(), 9);
    assert!(
        user_code
            .chars()
            .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit())
    );
    assert_eq!(
        device["verification_uri"],
        "https://microsoft.com/devicelogin"
    );
    assert_eq!(device["expires_in"], 900);
    assert_eq!(device["interval"], 5);
    let message = str_of(&device, "message");
    assert!(message.starts_with("To sign in, use a web browser to open the page"));
    assert!(message.contains(&user_code));
    let device_code = str_of(&device, "device_code");

    assert_aad(
        poll(&env, device_code, None).await,
        400,
        "authorization_pending",
        70016,
    )
    .await;
    let unknown = answer_device(&env, "approve", json!({"user_code": "NOSUCHONE"})).await;
    assert_eq!(unknown.status(), 404);
    let approve = answer_device(&env, "approve", json!({"user_code": user_code})).await;
    assert_eq!(approve.status(), 204);

    let tokens = poll(&env, device_code, None).await;
    assert_eq!(tokens.status(), 200);
    let tokens = json_of(tokens).await;
    let access = jwt_claims(str_of(&tokens, "access_token"));
    assert_eq!(access["amr"], json!(["pwd", "mfa"]));
    assert_eq!(access["upn"], ADMIN_USER);
    assert_eq!(access["appidacr"], "0", "a public client");
    assert_eq!(
        env.call(Method::GET, LIST, str_of(&tokens, "access_token"), None)
            .await
            .status(),
        200
    );
    assert_aad(
        poll(&env, device_code, None).await,
        400,
        "invalid_grant",
        70000,
    )
    .await;

    // A public client's refresh token is redeemed without a credential, never with one.
    let rt = str_of(&tokens, "refresh_token");
    assert_aad(env.refresh(rt, true).await, 401, "invalid_client", 700025).await;
    let renewed = env.refresh(rt, false).await;
    assert_eq!(renewed.status(), 200);
    let renewed = json_of(renewed).await;
    assert_eq!(
        jwt_claims(str_of(&renewed, "access_token"))["amr"],
        json!(["pwd", "mfa"]),
        "a refresh keeps the sign-in's amr"
    );
    let listed = refresh_tokens(&env).await;
    assert!(
        listed.iter().all(|t| t["public_client"] == true),
        "{listed:?}"
    );
}

#[tokio::test]
async fn a_device_code_can_be_declined_or_left_to_expire() {
    let env = Env::start().await;
    let declined = start_device(&env, &pc_scope()).await;
    let resp = answer_device(&env, "decline", json!({"user_code": declined["user_code"]})).await;
    assert_eq!(resp.status(), 204);
    assert_aad(
        poll(&env, str_of(&declined, "device_code"), None).await,
        400,
        "authorization_declined",
        70000,
    )
    .await;

    env.entra_settings(json!({"device_code_interval": 1})).await;
    let left = start_device(&env, &pc_scope()).await;
    assert_eq!(left["interval"], 1);
    env.advance(json!({"minutes": 16})).await;
    assert_aad(
        poll(&env, str_of(&left, "device_code"), None).await,
        400,
        "expired_token",
        70020,
    )
    .await;
    let unknown = env
        .form(
            "/common/oauth2/v2.0/devicecode",
            &[("client_id", "nobody"), ("scope", &pc_scope())],
        )
        .await;
    assert_aad(unknown, 400, "unauthorized_client", 700016).await;
}

#[tokio::test]
async fn without_public_client_flows_the_device_flow_needs_the_secret() {
    let mut client = ClientIdentity::new(CLIENT_ID, CLIENT_SECRET);
    client.public_client_flows = false;
    let env = Env::with(SandboxConfig {
        clients: vec![client],
        ..fast_config()
    })
    .await;
    let device = start_device(&env, &pc_scope()).await;
    answer_device(
        &env,
        "approve",
        json!({"user_code": device["user_code"], "username": READER_USER}),
    )
    .await;
    let device_code = str_of(&device, "device_code");
    assert_aad(
        poll(&env, device_code, None).await,
        400,
        "invalid_client",
        7000218,
    )
    .await;
    let tokens = poll(&env, device_code, Some(CLIENT_SECRET)).await;
    assert_eq!(tokens.status(), 200);
    let tokens = json_of(tokens).await;
    assert_eq!(
        jwt_claims(str_of(&tokens, "access_token"))["upn"],
        READER_USER
    );
    // With the secret it is a confidential client's refresh token.
    let rt = str_of(&tokens, "refresh_token");
    assert_aad(env.refresh(rt, false).await, 401, "invalid_client", 7000218).await;
    assert_eq!(env.refresh(rt, true).await.status(), 200);
}

#[tokio::test]
async fn refresh_tokens_rotate_and_the_old_one_keeps_working_by_default() {
    let env = Env::start().await;
    let first = env.token_v1(ADMIN_USER, REFERRALS_AUDIENCE).await;
    let first_rt = str_of(&first, "refresh_token").to_string();
    let second = json_of(env.refresh(&first_rt, true).await).await;
    let second_rt = str_of(&second, "refresh_token").to_string();
    assert_ne!(
        first_rt, second_rt,
        "every redemption hands out a new token"
    );
    // Reuse: the redeemed token still works, and again yields a new one.
    let third = env.refresh(&first_rt, true).await;
    assert_eq!(third.status(), 200);
    let third = json_of(third).await;
    assert_ne!(str_of(&third, "refresh_token"), first_rt);

    // Another resource, on v2: refresh tokens are multi-resource.
    let v2 = env
        .refresh_v2(
            &second_rt,
            &format!("{PARTNER_CENTER_AUDIENCE}/.default offline_access"),
        )
        .await;
    assert_eq!(v2.status(), 200);
    let v2 = json_of(v2).await;
    assert_eq!(
        jwt_claims(str_of(&v2, "access_token"))["aud"],
        PARTNER_CENTER_AUDIENCE
    );
    assert!(v2["refresh_token"].is_string());

    // A confidential client's token needs the client's credential.
    assert_aad(
        env.refresh(&first_rt, false).await,
        401,
        "invalid_client",
        7000218,
    )
    .await;

    let listed = refresh_tokens(&env).await;
    assert_eq!(listed.len(), 4, "{listed:?}");
    let text = serde_json::to_string(&listed).expect("json");
    assert!(!text.contains(&first_rt) && !text.contains(&second_rt));
    let first_entry = &listed[0];
    assert_eq!(first_entry["state"], "active");
    assert_eq!(first_entry["username"], ADMIN_USER);
    assert_eq!(first_entry["client_id"], CLIENT_ID);
    assert_eq!(first_entry["public_client"], false);
    assert!(first_entry["last_redeemed_at"].is_string());
    assert_eq!(str_of(first_entry, "fingerprint").len(), 16);
    assert!(listed[3]["last_redeemed_at"].is_null());
    assert!(first_entry["issued_at"].is_string() && first_entry["expires_at"].is_string());
}

#[tokio::test]
async fn single_use_rotation_refuses_a_redeemed_refresh_token() {
    let env = Env::start().await;
    let settings = env
        .entra_settings(json!({"refresh_rotation": "single-use"}))
        .await;
    assert_eq!(settings["refresh_rotation"], "single-use");
    assert_eq!(settings["sign_in_mfa"], true);
    let first = env.token_v1(ADMIN_USER, REFERRALS_AUDIENCE).await;
    let first_rt = str_of(&first, "refresh_token");
    let second = json_of(env.refresh(first_rt, true).await).await;
    assert_aad(
        env.refresh(first_rt, true).await,
        400,
        "invalid_grant",
        70000,
    )
    .await;
    assert_eq!(
        env.refresh(str_of(&second, "refresh_token"), true)
            .await
            .status(),
        200
    );
    let states: Vec<Value> = refresh_tokens(&env)
        .await
        .iter()
        .map(|t| t["state"].clone())
        .collect();
    assert_eq!(
        states,
        vec![json!("superseded"), json!("superseded"), json!("active")]
    );
}

#[tokio::test]
async fn a_refresh_token_lapses_ninety_days_after_it_was_issued() {
    let env = Env::start().await;
    let first = env.token_v1(ADMIN_USER, REFERRALS_AUDIENCE).await;
    let first_rt = str_of(&first, "refresh_token");
    env.advance(json!({"days": 89})).await;
    let kept = json_of(env.refresh(first_rt, true).await).await;
    let kept_rt = str_of(&kept, "refresh_token");
    env.advance(json!({"days": 2})).await;
    let body = assert_aad(
        env.refresh(first_rt, true).await,
        400,
        "invalid_grant",
        700082,
    )
    .await;
    assert!(
        str_of(&body, "error_description").contains("inactive for 90.00:00:00"),
        "{body}"
    );
    // The token from day 89 is two days old: used regularly, a sign-in never lapses.
    assert_eq!(env.refresh(kept_rt, true).await.status(), 200);
    let states: Vec<Value> = refresh_tokens(&env)
        .await
        .iter()
        .map(|t| t["state"].clone())
        .collect();
    assert_eq!(states[0], "expired");
    assert_eq!(states[1], "active");
}

#[tokio::test]
async fn revoking_a_users_sessions_ends_every_refresh_token() {
    let env = Env::start().await;
    let admin = env.token_v1(ADMIN_USER, REFERRALS_AUDIENCE).await;
    let reader = env.token_v1(READER_USER, REFERRALS_AUDIENCE).await;
    let resp = env
        .control(
            Method::POST,
            "/_sandbox/entra/revoke",
            Some(json!({"username": ADMIN_USER})),
        )
        .await;
    assert_eq!(resp.status(), 200);
    assert_eq!(json_of(resp).await["revoked"], 1);
    let body = assert_aad(
        env.refresh(str_of(&admin, "refresh_token"), true).await,
        400,
        "invalid_grant",
        50173,
    )
    .await;
    assert!(str_of(&body, "error_description").contains("revoked"));
    assert_eq!(
        env.refresh(str_of(&reader, "refresh_token"), true)
            .await
            .status(),
        200
    );
    // The access token lives out its lifetime.
    assert_eq!(
        env.call(Method::GET, LIST, str_of(&admin, "access_token"), None)
            .await
            .status(),
        200
    );
    assert_eq!(refresh_tokens(&env).await[0]["state"], "revoked");
    let unknown = env
        .control(
            Method::POST,
            "/_sandbox/entra/revoke",
            Some(json!({"username": "nobody@sandbox.test"})),
        )
        .await;
    assert_eq!(unknown.status(), 400);
}

#[tokio::test]
async fn a_password_change_revokes_public_client_tokens_but_not_confidential_ones() {
    let env = Env::start().await;
    let confidential = env.token_v1(ADMIN_USER, REFERRALS_AUDIENCE).await;
    let device = start_device(&env, &pc_scope()).await;
    answer_device(&env, "approve", json!({"user_code": device["user_code"]})).await;
    let public = json_of(poll(&env, str_of(&device, "device_code"), None).await).await;
    env.set_password(ADMIN_USER, "new-one").await;
    assert_eq!(
        env.refresh(str_of(&confidential, "refresh_token"), true)
            .await
            .status(),
        200
    );
    assert_aad(
        env.refresh(str_of(&public, "refresh_token"), false).await,
        400,
        "invalid_grant",
        50173,
    )
    .await;
}

#[tokio::test]
async fn the_password_grant_meets_conditional_access_mfa_by_default() {
    let env = Env::start().await;
    let refused = env.password_token_v1(ADMIN_USER, REFERRALS_AUDIENCE).await;
    let body = assert_aad(refused, 400, "invalid_grant", 50076).await;
    assert_eq!(body["suberror"], "basic_action");
    assert!(
        str_of(&body, "error_description").contains(
            "you must use multi-factor authentication to access 'https://api.partner.microsoft.com'"
        ),
        "{body}"
    );

    let settings = env.entra_settings(json!({"sign_in_mfa": false})).await;
    assert_eq!(settings["sign_in_mfa"], false);
    let ok = env.password_token_v1(ADMIN_USER, REFERRALS_AUDIENCE).await;
    assert_eq!(ok.status(), 200);
    let ok = json_of(ok).await;
    let token = str_of(&ok, "access_token");
    assert_eq!(jwt_claims(token)["amr"], json!(["pwd"]));

    // Partner Center's own enforcement refuses a token without MFA, on both APIs.
    let resp = env.call(Method::GET, LIST, token, None).await;
    assert_unauthenticated(resp, "multifactor authentication").await;
    let webhooks = env
        .password_token_v1(ADMIN_USER, PARTNER_CENTER_AUDIENCE)
        .await;
    let webhooks = json_of(webhooks).await;
    let webhooks = str_of(&webhooks, "access_token");
    assert_eq!(
        env.call(Method::GET, REG, webhooks, None).await.status(),
        401
    );
    // App-only tokens have no user and are not concerned.
    let app = env.webhooks_token().await;
    assert_eq!(env.call(Method::GET, REG, &app, None).await.status(), 404);

    env.entra_settings(json!({"partner_center_mfa": false}))
        .await;
    assert_eq!(env.call(Method::GET, LIST, token, None).await.status(), 200);
    assert_eq!(
        env.call(Method::GET, REG, webhooks, None).await.status(),
        404
    );

    // The refresh token of a password sign-in carries its amr too.
    let renewed = json_of(env.refresh(str_of(&ok, "refresh_token"), true).await).await;
    assert_eq!(
        jwt_claims(str_of(&renewed, "access_token"))["amr"],
        json!(["pwd"])
    );
}

async fn settings(env: &Env) -> Value {
    json_of(
        env.control(Method::GET, "/_sandbox/entra/settings", None)
            .await,
    )
    .await
}

#[tokio::test]
async fn settings_survive_a_reset_and_start_from_the_configuration() {
    let env = Env::with(SandboxConfig {
        sign_in_mfa: false,
        device_code_interval: std::time::Duration::from_secs(2),
        ..fast_config()
    })
    .await;
    let now = settings(&env).await;
    assert_eq!(
        now,
        json!({
            "refresh_rotation": "reuse",
            "sign_in_mfa": false,
            "partner_center_mfa": true,
            "device_code_interval": 2
        })
    );
    env.entra_settings(json!({"partner_center_mfa": false}))
        .await;
    let token = env.token_v1(ADMIN_USER, REFERRALS_AUDIENCE).await;
    env.control(Method::POST, "/_sandbox/reset", None).await;
    let after = settings(&env).await;
    assert_eq!(after["partner_center_mfa"], false);
    assert!(
        refresh_tokens(&env).await.is_empty(),
        "a reset forgets tokens"
    );
    assert_aad(
        env.refresh(str_of(&token, "refresh_token"), true).await,
        400,
        "invalid_grant",
        70000,
    )
    .await;
    let bad = env
        .control(
            Method::POST,
            "/_sandbox/entra/settings",
            Some(json!({"refresh_rotation": "sometimes"})),
        )
        .await;
    assert_eq!(bad.status(), 400);
}

/// A key pair and self-signed certificate as a connector would upload to its app registration.
struct Credential {
    key_pem: String,
    cert_pem: String,
    cert_der: Vec<u8>,
}

fn credential() -> Credential {
    let mut dn = rcgen::DistinguishedName::new();
    dn.push(rcgen::DnType::CommonName, "co-sell connector");
    let (key, cert) = cosell_sandbox::signing::self_signed_rsa(dn).expect("key pair");
    Credential {
        key_pem: key.serialize_pem(),
        cert_pem: cert.pem(),
        cert_der: cert.der().to_vec(),
    }
}

const ASSERTION_TYPE: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

/// A certificate's thumbprint as a JWT header names it: `x5t` with SHA-1, `x5t#S256` with
/// SHA-256.
fn thumbprint(algorithm: &'static aws_lc_rs::digest::Algorithm, der: &[u8]) -> String {
    use base64::Engine;
    let digest = aws_lc_rs::digest::digest(algorithm, der);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(digest.as_ref())
}

fn x5t(der: &[u8]) -> String {
    thumbprint(&aws_lc_rs::digest::SHA1_FOR_LEGACY_USE_ONLY, der)
}

/// A client assertion naming `named`'s certificate, signed with `signer`'s key.
fn assertion(signer: &Credential, named: &Credential, claims: Value, sha256: bool) -> String {
    let mut header = Header::new(Algorithm::RS256);
    if sha256 {
        header.x5t_s256 = Some(thumbprint(&aws_lc_rs::digest::SHA256, &named.cert_der));
    } else {
        header.x5t = Some(x5t(&named.cert_der));
    }
    let key = EncodingKey::from_rsa_pem(signer.key_pem.as_bytes()).expect("key");
    jsonwebtoken::encode(&header, &claims, &key).expect("signed")
}

fn claims_for(env: &Env, path: &str) -> Value {
    let now = chrono::Utc::now().timestamp();
    json!({
        "aud": env.url(path),
        "iss": CLIENT_ID,
        "sub": CLIENT_ID,
        "jti": uuid::Uuid::new_v4().to_string(),
        "nbf": now,
        "exp": now + 600,
    })
}

async fn client_credentials(env: &Env, assertion: &str) -> Response {
    env.form(
        "/my-tenant/oauth2/v2.0/token",
        &[
            ("grant_type", "client_credentials"),
            ("client_id", CLIENT_ID),
            ("client_assertion_type", ASSERTION_TYPE),
            ("client_assertion", assertion),
            ("scope", &format!("{PARTNER_CENTER_AUDIENCE}/.default")),
        ],
    )
    .await
}

#[tokio::test]
async fn a_client_assertion_signed_with_a_registered_certificate_authenticates_the_app() {
    let env = Env::start().await;
    let mine = credential();
    let stranger = credential();
    let registered = env
        .control(
            Method::POST,
            "/_sandbox/identities/certificate",
            Some(json!({"client_id": CLIENT_ID, "certificate_pem": mine.cert_pem})),
        )
        .await;
    assert_eq!(registered.status(), 200);
    assert_eq!(json_of(registered).await["x5t"], x5t(&mine.cert_der));
    let path = "/my-tenant/oauth2/v2.0/token";

    let good = assertion(&mine, &mine, claims_for(&env, path), false);
    let resp = client_credentials(&env, &good).await;
    assert_eq!(resp.status(), 200);
    let token = json_of(resp).await;
    let claims = jwt_claims(str_of(&token, "access_token"));
    assert_eq!(claims["appidacr"], "2");
    assert_eq!(claims["idtyp"], "app");
    assert!(claims.get("amr").is_none() && claims.get("upn").is_none());
    assert_eq!(
        env.call(Method::GET, REG, str_of(&token, "access_token"), None)
            .await
            .status(),
        404
    );
    let replayed = assert_aad(
        client_credentials(&env, &good).await,
        401,
        "invalid_client",
        50027,
    )
    .await;
    assert!(str_of(&replayed, "error_description").contains("already presented"));

    let sha256 = assertion(&mine, &mine, claims_for(&env, path), true);
    assert_eq!(client_credentials(&env, &sha256).await.status(), 200);

    // Signed by another key under the registered certificate's thumbprint.
    let forged = assertion(&stranger, &mine, claims_for(&env, path), false);
    assert_aad(
        client_credentials(&env, &forged).await,
        401,
        "invalid_client",
        700027,
    )
    .await;
    // A certificate nobody registered.
    let unknown = assertion(&stranger, &stranger, claims_for(&env, path), false);
    let body = assert_aad(
        client_credentials(&env, &unknown).await,
        401,
        "invalid_client",
        700027,
    )
    .await;
    assert!(str_of(&body, "error_description").contains("not found"));

    let mut wrong_aud = claims_for(&env, path);
    wrong_aud["aud"] = json!("https://login.microsoftonline.com/other/oauth2/v2.0/token");
    let wrong_aud = assertion(&mine, &mine, wrong_aud, false);
    assert_aad(
        client_credentials(&env, &wrong_aud).await,
        401,
        "invalid_client",
        700023,
    )
    .await;
    let mut expired = claims_for(&env, path);
    expired["exp"] = json!(chrono::Utc::now().timestamp() - 3600);
    let expired = assertion(&mine, &mine, expired, false);
    assert_aad(
        client_credentials(&env, &expired).await,
        401,
        "invalid_client",
        700024,
    )
    .await;
    let mut other_issuer = claims_for(&env, path);
    other_issuer["iss"] = json!("someone-else");
    let other_issuer = assertion(&mine, &mine, other_issuer, false);
    assert_aad(
        client_credentials(&env, &other_issuer).await,
        401,
        "invalid_client",
        700021,
    )
    .await;

    // No credential at all.
    let none = env
        .form(
            path,
            &[
                ("grant_type", "client_credentials"),
                ("client_id", CLIENT_ID),
                ("scope", &format!("{PARTNER_CENTER_AUDIENCE}/.default")),
            ],
        )
        .await;
    let body = assert_aad(none, 401, "invalid_client", 7000218).await;
    assert!(str_of(&body, "error_description").contains("'client_assertion' or 'client_secret'"));
}

#[tokio::test]
async fn a_client_assertion_redeems_codes_and_refresh_tokens_too() {
    let mine = credential();
    let mut client = ClientIdentity::new(CLIENT_ID, CLIENT_SECRET);
    client.certificates.push(mine.cert_der.clone());
    let env = Env::with(SandboxConfig {
        clients: vec![client],
        ..fast_config()
    })
    .await;
    let (code, verifier) = code(&env).await;
    let token_path = "/common/oauth2/v2.0/token";
    let with_assertion = |grant: Vec<(&'static str, String)>| {
        let env = &env;
        let a = assertion(&mine, &mine, claims_for(env, token_path), false);
        async move {
            let mut form: Vec<(&str, String)> = vec![
                ("client_id", CLIENT_ID.to_string()),
                ("client_assertion_type", ASSERTION_TYPE.to_string()),
                ("client_assertion", a),
            ];
            form.extend(grant);
            let pairs: Vec<(&str, &str)> = form.iter().map(|(k, v)| (*k, v.as_str())).collect();
            env.form(token_path, &pairs).await
        }
    };
    let tokens = with_assertion(vec![
        ("grant_type", "authorization_code".into()),
        ("code", code),
        ("redirect_uri", REDIRECT_URI.into()),
        ("code_verifier", verifier),
    ])
    .await;
    assert_eq!(tokens.status(), 200);
    let tokens = json_of(tokens).await;
    assert_eq!(jwt_claims(str_of(&tokens, "access_token"))["appidacr"], "2");
    let renewed = with_assertion(vec![
        ("grant_type", "refresh_token".into()),
        ("refresh_token", str_of(&tokens, "refresh_token").into()),
    ])
    .await;
    assert_eq!(renewed.status(), 200);
}

#[tokio::test]
async fn a_refresh_token_belongs_to_the_client_it_was_issued_to() {
    let env = Env::with(SandboxConfig {
        clients: vec![
            ClientIdentity::new(CLIENT_ID, CLIENT_SECRET),
            ClientIdentity::new("other-client", "other-secret"),
        ],
        ..fast_config()
    })
    .await;
    let tokens = env.token_v1(ADMIN_USER, REFERRALS_AUDIENCE).await;
    let other = env
        .form(
            V1_TOKEN,
            &[
                ("grant_type", "refresh_token"),
                ("client_id", "other-client"),
                ("client_secret", "other-secret"),
                ("refresh_token", str_of(&tokens, "refresh_token")),
                ("resource", REFERRALS_AUDIENCE),
            ],
        )
        .await;
    assert_aad(other, 400, "invalid_grant", 70000).await;
}
