use cosell_sandbox::config::{ADMIN_USER, PARTNER_CENTER_AUDIENCE, REFERRALS_AUDIENCE};
use reqwest::Method;
use serde_json::{Value, json};

use crate::common::{Env, REFERRAL_EVENTS, Receiver, wait_until};

const REG: &str = "/webhooks/v1/registration";

#[tokio::test]
async fn registration_lifecycle_get_post_conflict_put() {
    let env = Env::start().await;
    let token = env.webhooks_token().await;
    assert_eq!(env.call(Method::GET, REG, &token, None).await.status(), 404);

    let body =
        json!({"WebhookUrl": "https://partner.example/hook", "WebhookEvents": REFERRAL_EVENTS});
    let created = env
        .call(Method::POST, REG, &token, Some(body.clone()))
        .await;
    assert_eq!(created.status(), 200);
    let created: Value = created.json().await.expect("json");
    assert!(created["SubscriberId"].is_string());
    assert_eq!(created["WebhookUrl"], "https://partner.example/hook");

    let again = env.call(Method::POST, REG, &token, Some(body)).await;
    assert_eq!(again.status(), 409);

    let replaced = env
        .call(
            Method::PUT,
            REG,
            &token,
            Some(json!({"webhookUrl": "https://other.example/hook", "webhookEvents": ["referral-created"]})),
        )
        .await;
    assert_eq!(replaced.status(), 200);
    let now: Value = env.get_json(REG, &token).await;
    assert_eq!(now["WebhookUrl"], "https://other.example/hook");
    assert_eq!(now["WebhookEvents"], json!(["referral-created"]));
    assert_eq!(now["SubscriberId"], created["SubscriberId"]);

    let bad = env
        .call(
            Method::PUT,
            REG,
            &token,
            Some(json!({"WebhookUrl": "https://x.example", "WebhookEvents": ["no-such-event"]})),
        )
        .await;
    assert_eq!(bad.status(), 400);
    // App+User tokens work too, and no token does not.
    let user = env
        .token_v1(
            "referral-admin@sandbox.test",
            "https://api.partnercenter.microsoft.com",
        )
        .await;
    let user = user["access_token"].as_str().expect("token");
    assert_eq!(env.call(Method::GET, REG, user, None).await.status(), 200);
    assert_eq!(
        env.http
            .get(env.url(REG))
            .send()
            .await
            .expect("send")
            .status(),
        401
    );
}

#[tokio::test]
async fn event_names_are_listed() {
    let env = Env::start().await;
    let token = env.webhooks_token().await;
    let names: Vec<String> =
        serde_json::from_value(env.get_json(&format!("{REG}/events"), &token).await)
            .expect("a list of names");
    for e in REFERRAL_EVENTS.iter().chain(&["test-created"]) {
        assert!(names.iter().any(|n| n == e), "{e} missing from {names:?}");
    }
}

#[tokio::test]
async fn validation_events_need_test_created_are_throttled_and_report_attempts() {
    let env = Env::start().await;
    let receiver = Receiver::start().await;
    let token = env.webhooks_token().await;
    let validation = format!("{REG}/validationEvents");
    let send = || env.call(Method::POST, &validation, &token, None);

    // Without a registration, and with one lacking test-created: refused.
    assert_eq!(send().await.status(), 400);
    env.register(&receiver, REFERRAL_EVENTS, false).await;
    assert_eq!(send().await.status(), 400);

    let mut events = REFERRAL_EVENTS.to_vec();
    events.push("test-created");
    env.register(&receiver, &events, false).await;
    receiver.answer_with(&[500]);
    let first = send().await;
    assert_eq!(first.status(), 200);
    let first: Value = first.json().await.expect("json");
    let correlation = first["correlationId"]
        .as_str()
        .expect("correlationId")
        .to_string();
    assert_eq!(send().await.status(), 200);
    let third = send().await;
    assert_eq!(third.status(), 429);
    assert!(third.headers().contains_key("retry-after"));
    // A minute later the budget is back.
    env.control(
        Method::POST,
        "/_sandbox/clock/advance",
        Some(json!({"seconds": 61})),
    )
    .await;
    let token = env.webhooks_token().await;
    assert_eq!(
        env.call(
            Method::POST,
            &format!("{REG}/validationEvents"),
            &token,
            None
        )
        .await
        .status(),
        200
    );

    let status_url = format!("{REG}/validationEvents/{correlation}");
    let mut status = Value::Null;
    for _ in 0..200 {
        status = env.get_json(&status_url, &token).await;
        if status["status"] == "completed" {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(status["status"], "completed", "{status}");
    assert_eq!(status["callbackUrl"], receiver.url);
    let results = status["results"].as_array().expect("results");
    // One result per attempt: the first got 500, the retry 200.
    assert_eq!(results.len(), 2, "{status}");
    assert_eq!(results[0]["responseCode"], "InternalServerError");
    assert_eq!(results[1]["responseCode"], "OK");
    assert_eq!(results[1]["systemError"], false);
    wait_until(|| {
        receiver
            .events()
            .iter()
            .filter(|(n, _)| n == "test-created")
            .count()
            >= 3
    })
    .await;
}

#[tokio::test]
async fn the_webhooks_api_refuses_referrals_api_tokens() {
    let env = Env::start().await;
    let app_only = env.app_token(REFERRALS_AUDIENCE).await;
    // The Referrals API's own App+User token is the one a connector already holds.
    let user = env.admin().await;
    let calls = [
        (Method::GET, REG.to_string(), None),
        (Method::GET, format!("{REG}/events"), None),
        (
            Method::PUT,
            REG.to_string(),
            Some(
                json!({"WebhookUrl": "https://partner.example/hook", "WebhookEvents": REFERRAL_EVENTS}),
            ),
        ),
        (Method::POST, format!("{REG}/validationEvents"), None),
    ];
    for token in [&app_only, &user] {
        for (method, path, body) in &calls {
            let resp = env.call(method.clone(), path, token, body.clone()).await;
            assert_eq!(resp.status(), 401, "{method} {path}");
            let err: Value = resp.json().await.expect("json");
            assert_eq!(err["error"]["code"], "unauthenticated");
            assert!(
                err["error"]["message"]
                    .as_str()
                    .expect("msg")
                    .contains("audience"),
                "{err}"
            );
        }
    }
    // Nothing was registered by the refused PUT, and the right audience still gets in.
    let right = env.webhooks_token().await;
    assert_eq!(env.call(Method::GET, REG, &right, None).await.status(), 404);
    let user = env.token_v1(ADMIN_USER, PARTNER_CENTER_AUDIENCE).await;
    let user = user["access_token"].as_str().expect("token");
    assert_eq!(
        env.call(Method::GET, &format!("{REG}/events"), user, None)
            .await
            .status(),
        200
    );
}
