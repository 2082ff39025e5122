//! A co-sell deal as Partner Center documents it: the partner's referral, the connected referral
//! that invites Microsoft into its engagement, and Microsoft's answer to it.

use reqwest::Method;
use serde_json::{Value, json};

use crate::common::{Env, REFERRAL_EVENTS, Receiver, wait_until};

const LIST: &str = "/v1.0/engagements/referrals";

/// The partner's half of a shared deal: `type: Shared`, targeting its solution.
fn own_deal(name: &str) -> Value {
    let mut body = Env::outgoing(name);
    body["target"] = json!([{"type": "SolutionProfile", "id": "SOL-1"}]);
    body
}

/// The second POST of a shared deal: the partner's body again, into `engagement`, inviting
/// Microsoft.
fn connected(name: &str, engagement: &Value) -> Value {
    let mut body = Env::outgoing(name);
    body["engagementId"] = engagement.clone();
    body["target"] = json!([{"type": "BusinessProfileLocation", "id": "msft"}]);
    body
}

async fn post(env: &Env, token: &str, body: Value) -> reqwest::Response {
    env.call(Method::POST, LIST, token, Some(body)).await
}

/// The referrals of an engagement as the Referrals API lists them to `token`.
async fn engagement(env: &Env, token: &str, engagement: &Value) -> Vec<Value> {
    let id = engagement.as_str().expect("engagementId");
    let url = reqwest::Url::parse_with_params(
        &env.url(LIST),
        [("$filter", format!("engagementId eq '{id}'"))],
    )
    .expect("url");
    let resp = env.call(Method::GET, url.as_str(), token, None).await;
    assert_eq!(resp.status(), 200);
    let body: Value = resp.json().await.expect("json");
    body["value"].as_array().expect("value").clone()
}

/// `(owner, id)` of every referral the sandbox holds, from the control API.
async fn owners(env: &Env) -> Vec<(String, String)> {
    let rows: Value = env
        .control(Method::GET, "/_sandbox/partner-center/referrals", None)
        .await
        .json()
        .await
        .expect("json");
    rows.as_array()
        .expect("rows")
        .iter()
        .map(|r| {
            (
                r["owner"].as_str().unwrap_or_default().to_string(),
                r["referral"]["id"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect()
}

fn id_of(r: &Value) -> String {
    r["id"].as_str().expect("id").to_string()
}

#[tokio::test]
async fn the_connected_referral_is_microsofts_pending_referral_in_the_engagement() {
    let env = Env::start().await;
    let receiver = Receiver::start().await;
    env.register(&receiver, REFERRAL_EVENTS, false).await;
    let token = env.admin().await;
    let own = env.create(&token, own_deal("Contoso")).await;

    let mut body = connected("Contoso", &own["engagementId"]);
    // Whatever the client posts, Microsoft's referral is shared and not answered yet.
    body["type"] = json!("Independent");
    body["status"] = json!("Active");
    body["substatus"] = json!("Accepted");
    let resp = post(&env, &token, body).await;
    assert_eq!(resp.status(), 200);
    let etag_header = resp
        .headers()
        .get("etag")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let ms: Value = resp.json().await.expect("json");
    let ms_id = id_of(&ms);
    assert_ne!(ms_id, id_of(&own));
    assert_eq!(ms["engagementId"], own["engagementId"]);
    assert_eq!(
        (
            ms["organizationId"].as_str(),
            ms["organizationName"].as_str()
        ),
        (Some("msft"), Some("Microsoft"))
    );
    assert_eq!(ms["type"], "Shared");
    assert_eq!(
        (ms["status"].as_str(), ms["substatus"].as_str()),
        (Some("New"), Some("Pending"))
    );
    assert_eq!(ms["direction"], "Outgoing");
    assert!(ms["acceptedDateTime"].is_null(), "not accepted yet: {ms}");
    assert!(ms["createdDateTime"].is_string() && ms["updatedDateTime"].is_string());
    assert_eq!(etag_header.as_deref(), ms["eTag"].as_str());
    assert!(
        ms["links"]["self"]["uri"]
            .as_str()
            .is_some_and(|u| u.ends_with(&ms_id))
    );
    assert!(
        owners(&env)
            .await
            .contains(&("microsoft".to_string(), ms_id.clone())),
        "stored as Microsoft's"
    );

    // The partner reads it beside its own, by the engagement filter and by id.
    let rows = engagement(&env, &token, &own["engagementId"]).await;
    let ids: Vec<String> = rows.iter().map(id_of).collect();
    assert_eq!(ids, [id_of(&own), ms_id.clone()]);
    let got = env
        .call(Method::GET, &format!("{LIST}/{ms_id}"), &token, None)
        .await;
    assert_eq!(got.status(), 200);
    assert_eq!(got.json::<Value>().await.expect("json"), ms);
    // The partner's own referral did not change.
    let own_now: Value = env
        .get_json(&format!("{LIST}/{}", id_of(&own)), &token)
        .await;
    assert_eq!(own_now, own);

    wait_until(|| receiver.events().len() >= 2).await;
    assert_eq!(
        receiver.events(),
        vec![
            ("referral-created".to_string(), id_of(&own)),
            ("related-referral-created".to_string(), ms_id.clone()),
        ]
    );

    // A second one is not refused: a client that makes two is seen making two.
    let again = post(&env, &token, connected("Contoso", &own["engagementId"])).await;
    assert_eq!(again.status(), 200);
    let microsoft = owners(&env)
        .await
        .into_iter()
        .filter(|(o, _)| o == "microsoft")
        .count();
    assert_eq!(microsoft, 2);
    assert_eq!(
        engagement(&env, &token, &own["engagementId"]).await.len(),
        3
    );
}

#[tokio::test]
async fn a_connected_referral_needs_the_partners_engagement_and_microsoft_as_target() {
    let env = Env::start().await;
    let token = env.admin().await;
    let own = env.create(&token, own_deal("Contoso")).await;
    let error = |resp: reqwest::Response| async move {
        assert_eq!(resp.status(), 400);
        let err: Value = resp.json().await.expect("json");
        assert_eq!(err["error"]["code"], "invalidRequest");
        err["error"]["target"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    };

    let unknown = connected("x", &json!("00000000-0000-0000-0000-000000000000"));
    assert_eq!(
        error(post(&env, &token, unknown).await).await,
        "engagementId"
    );
    let not_a_string = connected("x", &json!(42));
    assert_eq!(
        error(post(&env, &token, not_a_string).await).await,
        "engagementId"
    );

    let mut solution_target = connected("x", &own["engagementId"]);
    solution_target["target"] = json!([{"type": "SolutionProfile", "id": "SOL-1"}]);
    assert_eq!(
        error(post(&env, &token, solution_target).await).await,
        "target"
    );
    let mut other_location = connected("x", &own["engagementId"]);
    other_location["target"] = json!([{"type": "BusinessProfileLocation", "id": "other"}]);
    assert_eq!(
        error(post(&env, &token, other_location).await).await,
        "target"
    );
    let mut no_target = connected("x", &own["engagementId"]);
    no_target.as_object_mut().expect("object").remove("target");
    assert_eq!(error(post(&env, &token, no_target).await).await, "target");

    // The usual body rules hold for it too.
    let mut no_country = connected("x", &own["engagementId"]);
    no_country["customerProfile"]["address"]["country"] = json!("");
    assert_eq!(
        error(post(&env, &token, no_country).await).await,
        "customerProfile.address.country"
    );

    // Nothing was stored by the refused ones.
    assert_eq!(owners(&env).await.len(), 1);

    // Without an engagementId, a Microsoft target still makes a new engagement of the partner's.
    let mut fresh = Env::outgoing("fresh");
    fresh["target"] = json!([{"type": "BusinessProfileLocation", "id": "msft"}]);
    let fresh = env.create(&token, fresh).await;
    assert_ne!(fresh["engagementId"], own["engagementId"]);
    assert_ne!(fresh["organizationId"], "msft");
    assert_eq!(fresh["status"], "Active");
    assert!(owners(&env).await.iter().all(|(o, _)| o == "partner"));
}

#[tokio::test]
async fn a_referral_user_sees_microsofts_referral_only_through_its_team() {
    let env = Env::start().await;
    let admin = env.admin().await;
    let reader = env.reader().await;
    let mut body = own_deal("Contoso");
    body["team"] =
        json!([{"firstName": "R", "lastName": "U", "email": "referral-user@sandbox.test"}]);
    let own = env.create(&admin, body).await;
    let ms = post(&env, &admin, connected("Contoso", &own["engagementId"])).await;
    assert_eq!(ms.status(), 200);
    let ms: Value = ms.json().await.expect("json");

    let seen: Vec<String> = engagement(&env, &reader, &own["engagementId"])
        .await
        .iter()
        .map(id_of)
        .collect();
    assert_eq!(seen, [id_of(&own)]);
    let hidden = env
        .call(
            Method::GET,
            &format!("{LIST}/{}", id_of(&ms)),
            &reader,
            None,
        )
        .await;
    assert_eq!(hidden.status(), 404);
    // Nor may a Referral User post one.
    let refused = post(&env, &reader, connected("Contoso", &own["engagementId"])).await;
    assert_eq!(refused.status(), 403);
}

async fn answer(env: &Env, id: &str, verb: &str, body: Option<Value>) -> reqwest::Response {
    env.control(
        Method::POST,
        &format!("/_sandbox/partner-center/referrals/{id}/related/{verb}"),
        body,
    )
    .await
}

#[tokio::test]
async fn microsoft_accepts_with_its_msx_id_or_declines_with_a_reason() {
    let env = Env::start().await;
    let receiver = Receiver::start().await;
    env.register(&receiver, REFERRAL_EVENTS, false).await;
    let token = env.admin().await;

    let own = env.create(&token, own_deal("accepted")).await;
    let ms: Value = post(&env, &token, connected("accepted", &own["engagementId"]))
        .await
        .json()
        .await
        .expect("json");
    let resp = answer(
        &env,
        &id_of(&own),
        "accept",
        Some(json!({"microsoftMsxId": "7-TESTMSX001"})),
    )
    .await;
    assert_eq!(resp.status(), 200);
    let accepted: Value = resp.json().await.expect("json");
    assert_eq!(accepted["id"], ms["id"]);
    assert_eq!(
        (accepted["status"].as_str(), accepted["substatus"].as_str()),
        (Some("Active"), Some("Accepted"))
    );
    assert_eq!(accepted["trackingInfo"]["microsoftMsxId"], "7-TESTMSX001");
    assert!(accepted["acceptedDateTime"].is_string());
    assert_ne!(accepted["eTag"], ms["eTag"]);
    // The partner reads the answer through the Referrals API.
    let read: Value = env
        .get_json(&format!("{LIST}/{}", id_of(&ms)), &token)
        .await;
    assert_eq!(read, accepted);

    // Without a body Microsoft makes up its own MSX id; named by Microsoft's own id, it declines.
    let other = env.create(&token, own_deal("declined")).await;
    let other_ms: Value = post(&env, &token, connected("declined", &other["engagementId"]))
        .await
        .json()
        .await
        .expect("json");
    let resp = answer(&env, &id_of(&other), "accept", None).await;
    assert_eq!(resp.status(), 200);
    let generated: Value = resp.json().await.expect("json");
    let msx = generated["trackingInfo"]["microsoftMsxId"]
        .as_str()
        .expect("msx id");
    assert!(msx.starts_with("7-") && msx.len() == 12, "{msx}");
    let resp = answer(
        &env,
        &id_of(&other_ms),
        "decline",
        Some(json!({"reason": "Customer already engaged with another partner"})),
    )
    .await;
    assert_eq!(resp.status(), 200);
    let declined: Value = resp.json().await.expect("json");
    assert_eq!(
        (declined["status"].as_str(), declined["substatus"].as_str()),
        (Some("Closed"), Some("Declined"))
    );
    assert_eq!(
        declined["statusReason"],
        "Customer already engaged with another partner"
    );
    assert!(declined["closedDateTime"].is_string());

    // Closed is final: neither answer again.
    for verb in ["accept", "decline"] {
        let again = answer(&env, &id_of(&other), verb, None).await;
        assert_eq!(again.status(), 400, "{verb}");
        let err: Value = again.json().await.expect("json");
        assert_eq!(err["error"]["code"], "invalidRequest");
    }
    let unchanged: Value = env
        .get_json(&format!("{LIST}/{}", id_of(&other_ms)), &token)
        .await;
    assert_eq!(unchanged["substatus"], "Declined");

    wait_until(|| receiver.events().len() >= 7).await;
    let related_updates: Vec<String> = receiver
        .events()
        .into_iter()
        .filter(|(name, _)| name == "related-referral-updated")
        .map(|(_, id)| id)
        .collect();
    assert_eq!(
        related_updates,
        [id_of(&ms), id_of(&other_ms), id_of(&other_ms)]
    );
}

#[tokio::test]
async fn microsofts_answer_needs_its_referral_and_goes_to_the_newest() {
    let env = Env::start().await;
    let token = env.admin().await;
    let lonely = env.create(&token, own_deal("no Microsoft")).await;
    for verb in ["accept", "decline"] {
        let resp = answer(&env, &id_of(&lonely), verb, None).await;
        assert_eq!(resp.status(), 404, "{verb}");
        let err: Value = resp.json().await.expect("json");
        assert_eq!(err["error"]["code"], "itemNotFound");
    }
    let unknown = answer(&env, "00000000-0000-0000-0000-000000000000", "accept", None).await;
    assert_eq!(unknown.status(), 404);
    let bad_body = answer(&env, &id_of(&lonely), "accept", Some(json!({"msx": "7-X"}))).await;
    assert_eq!(bad_body.status(), 400);

    let own = env.create(&token, own_deal("twice")).await;
    let mut made = Vec::new();
    for _ in 0..2 {
        let r: Value = post(&env, &token, connected("twice", &own["engagementId"]))
            .await
            .json()
            .await
            .expect("json");
        made.push(r);
    }
    let resp = answer(&env, &id_of(&own), "accept", None).await;
    assert_eq!(resp.status(), 200);
    let accepted: Value = resp.json().await.expect("json");
    assert_eq!(accepted["id"], made[1]["id"], "the newest");
    let older: Value = env
        .get_json(&format!("{LIST}/{}", id_of(&made[0])), &token)
        .await;
    assert_eq!(older["status"], "New");
    // Named directly, the older one answers itself.
    let resp = answer(&env, &id_of(&made[0]), "decline", None).await;
    assert_eq!(resp.status(), 200);
    let declined: Value = resp.json().await.expect("json");
    assert_eq!(declined["id"], made[0]["id"]);
    assert!(declined["statusReason"].is_string());
}
