use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::{Value, json};

use crate::common::{Env, REFERRAL_EVENTS, Receiver, wait_until};

const LIST: &str = "/v1.0/engagements/referrals";

#[tokio::test]
async fn incoming_kinds_carry_their_classification() {
    let env = Env::start().await;
    let cosell = env
        .incoming(
            "co-sell",
            json!({"name": "Big deal", "customerProfile": {"address": {"country": "DE"}}}),
        )
        .await;
    assert_eq!(cosell["name"], "Big deal");
    assert_eq!(cosell["customerProfile"]["address"]["country"], "DE");
    assert_eq!(
        cosell["customerProfile"]["address"]["city"], "Bellevue",
        "defaults stay"
    );
    assert_eq!(
        (cosell["status"].as_str(), cosell["substatus"].as_str()),
        (Some("New"), Some("Pending"))
    );
    assert_eq!(
        (cosell["type"].as_str(), cosell["qualification"].as_str()),
        (Some("Shared"), Some("SalesQualified"))
    );
    assert_eq!(cosell["direction"], "Incoming");
    assert_eq!(
        cosell["inviteContext"]["invitedBy"]["organizationId"],
        "msft"
    );
    assert!(cosell["expirationDateTime"].is_string());
    let lead = env.incoming("lead", json!({})).await;
    assert_eq!(
        (lead["type"].as_str(), lead["qualification"].as_str()),
        (Some("Independent"), Some("MarketingQualified"))
    );
    let pipeline = env.incoming("pipeline", json!({})).await;
    assert_eq!(pipeline["type"], "Shared");
    let bad = env
        .control(
            Method::POST,
            "/_sandbox/partner-center/incoming?kind=spam",
            Some(json!({})),
        )
        .await;
    assert_eq!(bad.status(), 400);
}

#[tokio::test]
async fn microsoft_changes_raise_referral_and_related_events() {
    let env = Env::start().await;
    let receiver = Receiver::start().await;
    env.register(&receiver, REFERRAL_EVENTS, false).await;
    let r = env.incoming("lead", json!({})).await;
    let id = r["id"].as_str().expect("id").to_string();
    wait_until(|| !receiver.events().is_empty()).await;

    let changed = env
        .control(
            Method::PATCH,
            &format!("/_sandbox/partner-center/referrals/{id}"),
            Some(json!({"details": {"dealValue": 45000}})),
        )
        .await;
    assert_eq!(changed.status(), 200);
    let changed: Value = changed.json().await.expect("json");
    assert_eq!(changed["details"]["dealValue"], 45000);
    assert_ne!(changed["eTag"], r["eTag"]);

    let related = env
        .control(
            Method::POST,
            &format!("/_sandbox/partner-center/referrals/{id}/related"),
            Some(json!({"status": "New", "substatus": "Pending"})),
        )
        .await;
    assert_eq!(related.status(), 201);
    let related: Value = related.json().await.expect("json");
    assert_eq!(related["engagementId"], r["engagementId"]);
    let related_id = related["id"].as_str().expect("id").to_string();
    let updated = env
        .control(
            Method::PATCH,
            &format!("/_sandbox/partner-center/referrals/{id}/related"),
            Some(json!({"status": "Active", "substatus": "Accepted", "trackingInfo": {"microsoftMsxId": "7-ABC"}})),
        )
        .await;
    assert_eq!(updated.status(), 200);
    wait_until(|| receiver.events().len() >= 4).await;
    assert_eq!(
        receiver.events(),
        vec![
            ("referral-created".to_string(), id.clone()),
            ("referral-updated".to_string(), id),
            ("related-referral-created".to_string(), related_id.clone()),
            ("related-referral-updated".to_string(), related_id),
        ]
    );
}

#[tokio::test]
async fn reset_forgets_everything_but_the_certificate() {
    let env = Env::start().await;
    env.incoming("lead", json!({})).await;
    let cert_before = env
        .http
        .get(env.sandbox.certificate_url())
        .send()
        .await
        .expect("cert")
        .bytes()
        .await
        .expect("b");
    assert_eq!(
        env.control(Method::POST, "/_sandbox/reset", None)
            .await
            .status(),
        204
    );
    let token = env.admin().await;
    let list: Value = env.get_json(LIST, &token).await;
    assert_eq!(list["value"].as_array().map(Vec::len), Some(0));
    let cert_after = env
        .http
        .get(env.sandbox.certificate_url())
        .send()
        .await
        .expect("cert")
        .bytes()
        .await
        .expect("b");
    assert_eq!(cert_before, cert_after);
}

#[tokio::test]
async fn injected_statuses_honour_count_and_carry_retry_after() {
    let env = Env::start().await;
    let token = env.admin().await;
    let resp = env
        .control(
            Method::POST,
            "/_sandbox/faults",
            Some(json!({"method": "GET", "route": "/v1.0/engagements/referrals", "status": 429, "retryAfter": 7, "count": 2})),
        )
        .await;
    assert_eq!(resp.status(), 200);
    for _ in 0..2 {
        let r = env.call(Method::GET, LIST, &token, None).await;
        assert_eq!(r.status(), 429);
        assert_eq!(r.headers()["retry-after"], "7");
        let body: Value = r.json().await.expect("json");
        assert_eq!(body["statusCode"], 429, "Partner Center's throttling body");
    }
    assert_eq!(
        env.call(Method::GET, LIST, &token, None).await.status(),
        200
    );

    env.control(
        Method::POST,
        "/_sandbox/faults",
        Some(json!({"route": "/v1.0/*", "status": 503, "count": 1})),
    )
    .await;
    let r = env.call(Method::GET, LIST, &token, None).await;
    assert_eq!(r.status(), 503);
    let body: Value = r.json().await.expect("json");
    assert_eq!(body["error"]["code"], "serviceNotAvailable");
    assert_eq!(
        env.call(Method::GET, LIST, &token, None).await.status(),
        200
    );

    let bad = env
        .control(
            Method::POST,
            "/_sandbox/faults",
            Some(json!({"route": "/x", "rate": 2.0, "status": 500})),
        )
        .await;
    assert_eq!(bad.status(), 400);
}

#[tokio::test]
async fn injected_latency_delays_the_answer() {
    let env = Env::start().await;
    let token = env.admin().await;
    env.control(
        Method::POST,
        "/_sandbox/faults",
        Some(json!({"route": "/v1.0/engagements/referrals", "latencyMs": 300, "count": 1})),
    )
    .await;
    let started = Instant::now();
    assert_eq!(
        env.call(Method::GET, LIST, &token, None).await.status(),
        200
    );
    // A lower bound only: the latency is added, never removed.
    assert!(started.elapsed() >= Duration::from_millis(300));
}

#[tokio::test]
async fn drop_after_commit_writes_but_never_answers() {
    let env = Env::start().await;
    let token = env.admin().await;
    env.control(
        Method::POST,
        "/_sandbox/faults",
        Some(json!({"method": "POST", "route": "/v1.0/engagements/referrals", "dropAfterCommit": true, "count": 1})),
    )
    .await;
    let sent = env
        .http
        .post(env.url(LIST))
        .bearer_auth(&token)
        .json(&Env::outgoing("lost answer"))
        .send()
        .await;
    assert!(sent.is_err(), "no response: {sent:?}");
    // The write happened all the same.
    let list: Value = env
        .call(
            Method::GET,
            &format!("{LIST}?$filter=name eq 'lost answer'"),
            &token,
            None,
        )
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(list["value"].as_array().map(Vec::len), Some(1));
}

async fn events_after_faults(fault: Value, creates: usize) -> (Env, Receiver, Vec<String>) {
    let env = Env::start().await;
    let receiver = Receiver::start().await;
    env.register(&receiver, &["referral-created"], false).await;
    env.control(Method::POST, "/_sandbox/faults/webhooks", Some(fault))
        .await;
    let mut ids = Vec::new();
    for i in 0..creates {
        let r = env.incoming("lead", json!({"name": format!("n{i}")})).await;
        ids.push(r["id"].as_str().expect("id").to_string());
    }
    (env, receiver, ids)
}

#[tokio::test]
async fn webhook_faults_drop_duplicate_reorder_and_delay() {
    let (_env, receiver, ids) = events_after_faults(json!({"kind": "drop", "count": 1}), 2).await;
    wait_until(|| !receiver.events().is_empty()).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        receiver
            .events()
            .iter()
            .map(|e| e.1.clone())
            .collect::<Vec<_>>(),
        vec![ids[1].clone()]
    );

    let (_env, receiver, ids) =
        events_after_faults(json!({"kind": "duplicate", "count": 1}), 1).await;
    wait_until(|| receiver.events().len() >= 2).await;
    assert!(receiver.events().iter().all(|e| e.1 == ids[0]));

    let (_env, receiver, ids) =
        events_after_faults(json!({"kind": "reorder", "count": 1}), 2).await;
    wait_until(|| receiver.events().len() >= 2).await;
    let order: Vec<String> = receiver.events().into_iter().map(|e| e.1).collect();
    assert_eq!(order, vec![ids[1].clone(), ids[0].clone()]);

    let (_env, receiver, ids) =
        events_after_faults(json!({"kind": "delay", "delayMs": 400, "count": 1}), 2).await;
    wait_until(|| receiver.events().len() >= 2).await;
    let order: Vec<String> = receiver.events().into_iter().map(|e| e.1).collect();
    assert_eq!(order, vec![ids[1].clone(), ids[0].clone()]);
}

#[tokio::test]
async fn stats_count_requests_per_route_and_method() {
    let env = Env::start().await;
    let token = env.admin().await;
    let r = env.create(&token, Env::outgoing("counted")).await;
    for _ in 0..3 {
        env.call(
            Method::GET,
            &format!("{LIST}/{}", r["id"].as_str().expect("id")),
            &token,
            None,
        )
        .await;
    }
    env.call(Method::GET, LIST, &token, None).await;
    let stats = env.stats().await;
    assert_eq!(stats["GET /v1.0/engagements/referrals/{id}"], 3);
    assert_eq!(stats["POST /v1.0/engagements/referrals"], 1);
    assert_eq!(stats["GET /v1.0/engagements/referrals"], 1);
    assert_eq!(stats["POST /{tenant}/oauth2/token"], 1);
    assert!(
        stats.get("GET /_sandbox/stats").is_none(),
        "control calls are not counted"
    );
    env.control(Method::DELETE, "/_sandbox/stats", None).await;
    assert_eq!(env.stats().await, json!({}));
}

#[tokio::test]
async fn the_clock_moves_forward_only() {
    let env = Env::start().await;
    let before: Value = env
        .control(Method::GET, "/_sandbox/clock", None)
        .await
        .json()
        .await
        .expect("json");
    let after: Value = env
        .control(
            Method::POST,
            "/_sandbox/clock/advance",
            Some(json!({"hours": 2})),
        )
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(
        after["offsetSeconds"].as_i64(),
        Some(before["offsetSeconds"].as_i64().unwrap_or(0) + 7200)
    );
    let back = env
        .control(
            Method::POST,
            "/_sandbox/clock/advance",
            Some(json!({"hours": -1})),
        )
        .await;
    assert_eq!(back.status(), 400);
}

#[tokio::test]
async fn a_fault_rate_of_zero_never_fires_and_one_always_does() {
    let env = Env::start().await;
    let token = env.admin().await;
    env.control(
        Method::POST,
        "/_sandbox/faults",
        Some(json!([
            {"method": "GET", "route": "/v1.0/engagements/referrals", "status": 500, "rate": 0.0},
            {"method": "GET", "route": "/v1.0/engagements/referrals/{id}", "status": 502, "rate": 1.0}
        ])),
    )
    .await;
    for _ in 0..20 {
        assert_eq!(
            env.call(Method::GET, LIST, &token, None).await.status(),
            200
        );
        assert_eq!(
            env.call(Method::GET, &format!("{LIST}/x"), &token, None)
                .await
                .status(),
            502
        );
    }
    assert_eq!(
        env.control(Method::DELETE, "/_sandbox/faults", None)
            .await
            .status(),
        204
    );
    assert_eq!(
        env.call(Method::GET, &format!("{LIST}/x"), &token, None)
            .await
            .status(),
        404
    );
}

#[tokio::test]
async fn a_fault_rule_can_let_the_first_matching_requests_through() {
    let env = Env::start().await;
    let token = env.admin().await;
    env.control(
        Method::POST,
        "/_sandbox/faults",
        Some(json!({"method": "GET", "route": "/v1.0/engagements/referrals", "status": 503, "count": 1, "skip": 2})),
    )
    .await;
    let statuses = [
        env.call(Method::GET, LIST, &token, None).await.status(),
        env.call(Method::GET, LIST, &token, None).await.status(),
        env.call(Method::GET, LIST, &token, None).await.status(),
        env.call(Method::GET, LIST, &token, None).await.status(),
    ];
    assert_eq!(statuses.map(|s| s.as_u16()), [200, 200, 503, 200]);
}
