use aws_lc_rs::signature::{RSA_PKCS1_2048_8192_SHA256, UnparsedPublicKey};
use base64::Engine;
use reqwest::Method;
use serde_json::{Value, json};

use crate::common::{Env, REFERRAL_EVENTS, Receiver, wait_until};

/// What a connector does with a delivery: fetch the certificate the header names, take its
/// public key, verify the RSA PKCS#1 v1.5 SHA-256 signature over the raw body.
async fn verifies(env: &Env, headers: &axum::http::HeaderMap, body: &[u8]) -> bool {
    let cert_url = headers["x-ms-certificate-url"].to_str().expect("cert url");
    assert_eq!(headers["x-ms-signature-algorithm"], "rsa-sha256");
    let der = env
        .http
        .get(cert_url)
        .send()
        .await
        .expect("cert")
        .bytes()
        .await
        .expect("bytes");
    let (_, cert) = x509_parser::parse_x509_certificate(&der).expect("DER certificate");
    let org = cert
        .subject()
        .iter_organization()
        .next()
        .and_then(|o| o.as_str().ok())
        .map(str::to_string);
    assert_eq!(org.as_deref(), Some("Microsoft Corporation"));
    assert!(cert.validity().is_valid());
    let signature = match headers.get("x-ms-signature") {
        Some(v) => v.to_str().expect("ascii").to_string(),
        None => headers["authorization"]
            .to_str()
            .expect("ascii")
            .strip_prefix("Signature ")
            .expect("Signature scheme")
            .to_string(),
    };
    let signature = base64::engine::general_purpose::STANDARD
        .decode(signature)
        .expect("base64");
    assert_eq!(signature.len(), 256, "RSA-2048 signature");
    let key = UnparsedPublicKey::new(
        &RSA_PKCS1_2048_8192_SHA256,
        cert.public_key().subject_public_key.data.as_ref(),
    );
    key.verify(body, &signature).is_ok()
}

#[tokio::test]
async fn deliveries_are_thin_events_signed_over_the_raw_body() {
    let env = Env::start().await;
    let receiver = Receiver::start().await;
    env.register(&receiver, REFERRAL_EVENTS, false).await;
    let incoming = env.incoming("co-sell", json!({})).await;
    let got = receiver.wait_for(2).await;
    let first = &got[0];
    let event = first.json();
    assert_eq!(event["EventName"], "referral-created");
    assert_eq!(event["ResourceName"], "referral");
    assert!(event["AuditUri"].is_null());
    let uri = event["ResourceUri"].as_str().expect("uri");
    assert!(uri.ends_with(&format!(
        "/v1.0/engagements/referrals/{}",
        incoming["id"].as_str().expect("id")
    )));
    let date = event["ResourceChangeUtcDate"].as_str().expect("date");
    assert!(
        date.ends_with("+00:00") && date.split_once('.').is_some_and(|(_, f)| f.len() == 13),
        "{date}"
    );
    assert_eq!(event.as_object().map(|o| o.len()), Some(5), "thin: {event}");
    // Microsoft's side of the engagement raises the related event.
    assert_eq!(got[1].json()["EventName"], "related-referral-created");

    // The ResourceUri is directly readable with a Referrals API token.
    let token = env.admin().await;
    let fetched = env.call(Method::GET, uri, &token, None).await;
    assert_eq!(fetched.status(), 200);

    assert!(verifies(&env, &first.headers, &first.body).await);
    let mut tampered = first.body.to_vec();
    let i = tampered.iter().position(|b| *b == b'r').expect("an r");
    tampered[i] = b's';
    assert!(!verifies(&env, &first.headers, &tampered).await);
}

#[tokio::test]
async fn the_ms_signature_header_is_used_when_the_registration_asks() {
    let env = Env::start().await;
    let receiver = Receiver::start().await;
    env.register(&receiver, REFERRAL_EVENTS, true).await;
    env.incoming("lead", json!({})).await;
    let got = receiver.wait_for(1).await;
    assert!(got[0].headers.contains_key("x-ms-signature"));
    assert!(!got[0].headers.contains_key("authorization"));
    assert!(verifies(&env, &got[0].headers, &got[0].body).await);
}

#[tokio::test]
async fn every_api_write_raises_an_event_for_each_subscribed_name() {
    let env = Env::start().await;
    let receiver = Receiver::start().await;
    env.register(&receiver, &["referral-created", "referral-updated"], false)
        .await;
    let token = env.admin().await;
    let r = env.create(&token, Env::outgoing("mine")).await;
    let id = r["id"].as_str().expect("id").to_string();
    let resp = env
        .http
        .patch(env.url(&format!("/v1.0/engagements/referrals/{id}")))
        .bearer_auth(&token)
        .json(&json!([{"op": "replace", "path": "/name", "value": "renamed"}]))
        .send()
        .await
        .expect("send");
    assert_eq!(resp.status(), 204);
    wait_until(|| receiver.events().len() >= 2).await;
    assert_eq!(
        receiver.events(),
        vec![
            ("referral-created".to_string(), id.clone()),
            ("referral-updated".to_string(), id)
        ]
    );
    // Not subscribed: related events are not sent.
    let incoming = env.incoming("co-sell", json!({})).await;
    wait_until(|| receiver.events().len() >= 3).await;
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    assert_eq!(receiver.events().len(), 3);
    assert_eq!(receiver.events()[2].1, incoming["id"].as_str().expect("id"));
}

#[tokio::test]
async fn failed_deliveries_are_retried_ten_times_then_given_up() {
    let env = Env::start().await;
    let receiver = Receiver::start().await;
    env.register(&receiver, REFERRAL_EVENTS, false).await;
    receiver.answer_with(&[503, 500, 404]);
    env.incoming("lead", json!({})).await;
    let got = receiver.wait_for(4).await;
    assert_eq!(got.len(), 4, "3 failures then success");

    receiver.answer_with(&[500; 20]);
    env.incoming("lead", json!({})).await;
    let deliveries = || async {
        env.control(Method::GET, "/_sandbox/webhooks/deliveries", None)
            .await
            .json::<Vec<Value>>()
            .await
            .expect("json")
    };
    let mut last = Value::Null;
    for _ in 0..300 {
        last = deliveries().await.last().cloned().unwrap_or_default();
        if last["finished"] == true {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(last["outcome"], "givenUp", "{last}");
    assert_eq!(last["attempts"].as_array().map(Vec::len), Some(10));
    assert_eq!(receiver.received().len(), 14);
}

#[tokio::test]
async fn a_receiver_that_does_not_answer_in_time_counts_as_a_failed_attempt() {
    let env = Env::start().await;
    let receiver = Receiver::start().await;
    env.register(&receiver, REFERRAL_EVENTS, false).await;
    receiver.delay(std::time::Duration::from_millis(800));
    env.incoming("lead", json!({})).await;
    wait_until(|| receiver.received().len() >= 2).await;
    receiver.delay(std::time::Duration::ZERO);
    let deliveries: Vec<Value> = env
        .control(Method::GET, "/_sandbox/webhooks/deliveries", None)
        .await
        .json()
        .await
        .expect("json");
    let first = &deliveries[0]["attempts"][0]["outcome"];
    assert_eq!(first["kind"], "error", "{first}");
    assert!(first["value"].as_str().expect("msg").contains("in time"));
}
