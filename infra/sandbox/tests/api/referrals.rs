use reqwest::Method;
use serde_json::{Value, json};

use crate::common::Env;

const LIST: &str = "/v1.0/engagements/referrals";

fn seven_digit_timestamp(v: &Value) -> bool {
    let s = v.as_str().unwrap_or_default();
    let Some((_, frac)) = s.split_once('.') else {
        return false;
    };
    frac.len() == 8 && frac.ends_with('Z') && frac[..7].chars().all(|c| c.is_ascii_digit())
}

#[tokio::test]
async fn create_assigns_ids_etag_timestamps_and_starts_accepted() {
    let env = Env::start().await;
    let token = env.admin().await;
    let resp = env
        .call(
            Method::POST,
            LIST,
            &token,
            Some(Env::outgoing("Contoso deal")),
        )
        .await;
    assert_eq!(resp.status(), 200);
    let etag_header = resp
        .headers()
        .get("etag")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let r: Value = resp.json().await.expect("json");
    assert!(r["id"].as_str().is_some_and(|s| s.len() == 36));
    assert!(r["engagementId"].as_str().is_some_and(|s| s.len() == 36));
    let etag = r["eTag"].as_str().expect("eTag");
    assert!(
        etag.starts_with('"') && etag.ends_with('"'),
        "quoted eTag: {etag}"
    );
    assert_eq!(etag_header.as_deref(), Some(etag));
    // Posted New/Pending, answered Active/Accepted.
    assert_eq!(
        (r["status"].as_str(), r["substatus"].as_str()),
        (Some("Active"), Some("Accepted"))
    );
    assert_eq!(r["direction"], "Outgoing");
    for f in ["createdDateTime", "updatedDateTime", "acceptedDateTime"] {
        assert!(seven_digit_timestamp(&r[f]), "{f}: {}", r[f]);
    }
    assert_eq!(r["customField"], json!({"kept": [1, null, "x"]}));

    let got = env
        .call(
            Method::GET,
            &format!("{LIST}/{}", r["id"].as_str().expect("id")),
            &token,
            None,
        )
        .await;
    assert_eq!(got.status(), 200);
    assert_eq!(got.json::<Value>().await.expect("json"), r);

    let missing = env
        .call(
            Method::GET,
            &format!("{LIST}/00000000-0000-0000-0000-000000000000"),
            &token,
            None,
        )
        .await;
    assert_eq!(missing.status(), 404);
    let body: Value = missing.json().await.expect("json");
    assert_eq!(body["error"]["code"], "itemNotFound");
}

#[tokio::test]
async fn create_validation_names_the_field() {
    let env = Env::start().await;
    let token = env.admin().await;
    let cases = [
        (
            json!({"customerProfile": {"address": {"country": "USA"}}}),
            "customerProfile.address.country",
        ),
        (
            json!({"customerProfile": {"address": {"country": "XX"}}}),
            "customerProfile.address.country",
        ),
        (
            json!({"details": {"requirements": {"solutions": []}}}),
            "details.requirements.solutions",
        ),
        (
            json!({"customerProfile": {"team": []}}),
            "customerProfile.team",
        ),
    ];
    for (patch, field) in cases {
        let mut body = Env::outgoing("bad");
        json_patch::merge(&mut body, &patch);
        let resp = env.call(Method::POST, LIST, &token, Some(body)).await;
        assert_eq!(resp.status(), 400, "{patch}");
        let err: Value = resp.json().await.expect("json");
        assert_eq!(err["error"]["code"], "invalidRequest");
        assert_eq!(err["error"]["target"], field);
        assert!(
            err["error"]["message"]
                .as_str()
                .expect("msg")
                .contains(field)
        );
    }
    // Private deals need no solution; no help asked needs no contact.
    let mut private = Env::outgoing("private");
    json_patch::merge(
        &mut private,
        &json!({
            "consent": {"consentToShareReferralWithMicrosoftSellers": false},
            "details": {"requirements": {"solutions": []}},
            "inviteContext": {"assistanceRequestCode": "Unknown"},
            "customerProfile": {"team": []}
        }),
    );
    assert_eq!(
        env.call(Method::POST, LIST, &token, Some(private))
            .await
            .status(),
        200
    );
    // Nothing was stored for the refused ones.
    let list: Value = env.get_json(LIST, &token).await;
    assert_eq!(list["value"].as_array().map(Vec::len), Some(1));
}

async fn seed(env: &Env, token: &str) -> Vec<Value> {
    let mut out = Vec::new();
    for (name, country) in [("a", "US"), ("b", "NO"), ("c", "US")] {
        let mut body = Env::outgoing(name);
        body["customerProfile"]["address"]["country"] = json!(country);
        out.push(env.create(token, body).await);
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    out
}

async fn names(env: &Env, token: &str, query: &str) -> Vec<String> {
    let url = reqwest::Url::parse_with_params(&env.url(LIST), parse_query(query)).expect("url");
    let resp = env.call(Method::GET, url.as_str(), token, None).await;
    assert_eq!(resp.status(), 200, "{query}");
    let v: Value = resp.json().await.expect("json");
    v["value"]
        .as_array()
        .expect("value")
        .iter()
        .map(|r| r["name"].as_str().unwrap_or_default().to_string())
        .collect()
}

fn parse_query(q: &str) -> Vec<(String, String)> {
    q.split('&')
        .filter(|p| !p.is_empty())
        .filter_map(|p| p.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[tokio::test]
async fn list_filters_orders_and_limits() {
    let env = Env::start().await;
    let token = env.admin().await;
    let seeded = seed(&env, &token).await;
    let b_engagement = seeded[1]["engagementId"].as_str().expect("eid");
    let b_updated = seeded[1]["updatedDateTime"].as_str().expect("updated");

    assert_eq!(
        names(
            &env,
            &token,
            "$filter=customerProfile/address/country eq 'US'"
        )
        .await,
        ["a", "c"]
    );
    assert_eq!(
        names(
            &env,
            &token,
            "$filter=customerProfile/address/country ne 'US'"
        )
        .await,
        ["b"]
    );
    assert_eq!(
        names(
            &env,
            &token,
            &format!("$filter=engagementId eq '{b_engagement}'")
        )
        .await,
        ["b"]
    );
    assert_eq!(
        names(
            &env,
            &token,
            &format!("$filter=engagementId eq {b_engagement}")
        )
        .await,
        ["b"]
    );
    assert_eq!(
        names(
            &env,
            &token,
            &format!("$filter=updatedDateTime gt {b_updated}")
        )
        .await,
        ["c"]
    );
    assert_eq!(
        names(
            &env,
            &token,
            &format!("$filter=createdDateTime lt {b_updated}")
        )
        .await,
        ["a"]
    );
    assert_eq!(
        names(
            &env,
            &token,
            "$filter=name eq 'a' or (name eq 'c' and customerProfile/address/country eq 'US')"
        )
        .await,
        ["a", "c"]
    );
    assert_eq!(
        names(
            &env,
            &token,
            "$filter=status eq 'Active' and direction eq 'Outgoing'"
        )
        .await,
        ["a", "b", "c"]
    );
    assert_eq!(
        names(&env, &token, "$orderby=createdDateTime desc").await,
        ["c", "b", "a"]
    );
    assert_eq!(
        names(&env, &token, "$orderby=updatedDateTime asc&$top=2").await,
        ["a", "b"]
    );

    let bad = env
        .call(
            Method::GET,
            &format!("{LIST}?$filter=name eq"),
            &token,
            None,
        )
        .await;
    assert_eq!(bad.status(), 400);
    let bad = env
        .call(Method::GET, &format!("{LIST}?$orderby=name"), &token, None)
        .await;
    assert_eq!(bad.status(), 400);
}

#[tokio::test]
async fn lists_page_by_100_with_next_links() {
    let env = Env::start().await;
    let token = env.admin().await;
    for i in 0..230 {
        env.incoming("co-sell", json!({"name": format!("r{i:03}")}))
            .await;
    }
    let mut url = env.url(&format!("{LIST}?$filter=direction eq 'Incoming'"));
    let mut sizes = Vec::new();
    let mut seen = std::collections::BTreeSet::new();
    loop {
        let page: Value = env.get_json(&url, &token).await;
        let rows = page["value"].as_array().expect("value");
        sizes.push(rows.len());
        seen.extend(
            rows.iter()
                .filter_map(|r| r["name"].as_str().map(str::to_string)),
        );
        match page["@odata.nextLink"].as_str() {
            Some(next) => {
                assert!(next.contains("$skiptoken="), "{next}");
                url = next.to_string();
            }
            None => break,
        }
    }
    assert_eq!(sizes, [100, 100, 30]);
    assert_eq!(seen.len(), 230);
}

#[tokio::test]
async fn put_replaces_under_if_match_and_keeps_unknown_fields() {
    let env = Env::start().await;
    let token = env.admin().await;
    let r = env.create(&token, Env::outgoing("put me")).await;
    let path = format!("{LIST}/{}", r["id"].as_str().expect("id"));
    let mut body = r.clone();
    body["name"] = json!("renamed");

    let no_if_match = env
        .call(Method::PUT, &path, &token, Some(body.clone()))
        .await;
    assert_eq!(no_if_match.status(), 400);

    let ok = env
        .http
        .put(env.url(&path))
        .bearer_auth(&token)
        .header("If-Match", r["eTag"].as_str().expect("etag"))
        .json(&body)
        .send()
        .await
        .expect("send");
    assert_eq!(ok.status(), 200);
    let updated: Value = ok.json().await.expect("json");
    assert_eq!(updated["name"], "renamed");
    assert_eq!(updated["customField"], r["customField"]);
    assert_ne!(updated["eTag"], r["eTag"]);

    // The first eTag is stale now.
    let stale = env
        .http
        .put(env.url(&path))
        .bearer_auth(&token)
        .header("If-Match", r["eTag"].as_str().expect("etag"))
        .json(&body)
        .send()
        .await
        .expect("send");
    assert_eq!(stale.status(), 412);
    let err: Value = stale.json().await.expect("json");
    assert_eq!(err["error"]["code"], "preconditionFailed");
    assert_eq!(err["error"]["target"], "ETag");
    assert_eq!(err["error"]["innerError"]["code"], "99918");
}

fn patch_req(env: &Env, token: &str, path: &str, ops: Value) -> reqwest::RequestBuilder {
    env.http
        .patch(env.url(path))
        .bearer_auth(token)
        .header("Content-Type", "application/json-patch+json")
        .body(ops.to_string())
}

#[tokio::test]
async fn patch_applies_replace_and_add_with_optional_if_match() {
    let env = Env::start().await;
    let token = env.admin().await;
    let r = env.create(&token, Env::outgoing("patch me")).await;
    let path = format!("{LIST}/{}", r["id"].as_str().expect("id"));

    let resp = patch_req(
        &env,
        &token,
        &path,
        json!([{"op": "replace", "path": "/name", "value": "patched"}]),
    )
    .send()
    .await
    .expect("send");
    assert_eq!(resp.status(), 204);

    let resp = patch_req(
        &env,
        &token,
        &path,
        json!([{"op": "add", "path": "/details/notes", "value": "n"}]),
    )
    .header("Prefer", "return=representation")
    .send()
    .await
    .expect("send");
    assert_eq!(resp.status(), 200);
    let body: Value = resp.json().await.expect("json");
    assert_eq!(
        (body["name"].as_str(), body["details"]["notes"].as_str()),
        (Some("patched"), Some("n"))
    );

    let remove = patch_req(
        &env,
        &token,
        &path,
        json!([{"op": "remove", "path": "/name"}]),
    )
    .send()
    .await
    .expect("send");
    assert_eq!(remove.status(), 400);

    let stale = patch_req(
        &env,
        &token,
        &path,
        json!([{"op": "replace", "path": "/name", "value": "x"}]),
    )
    .header("If-Match", r["eTag"].as_str().expect("etag"))
    .send()
    .await
    .expect("send");
    assert_eq!(stale.status(), 412);

    let read_only = patch_req(
        &env,
        &token,
        &path,
        json!([{"op": "replace", "path": "/id", "value": "x"}]),
    )
    .send()
    .await
    .expect("send");
    assert_eq!(read_only.status(), 400);
}

#[tokio::test]
async fn status_changes_follow_the_state_machine_and_closed_is_final() {
    let env = Env::start().await;
    let token = env.admin().await;
    let incoming = env.incoming("co-sell", json!({})).await;
    let path = format!("{LIST}/{}", incoming["id"].as_str().expect("id"));
    let set = |status: &str, substatus: &str| {
        json!([
            {"op": "replace", "path": "/status", "value": status},
            {"op": "replace", "path": "/substatus", "value": substatus}
        ])
    };
    // New → Active/Won is not a legal pair.
    let resp = patch_req(&env, &token, &path, set("Active", "Won"))
        .send()
        .await
        .expect("send");
    assert_eq!(resp.status(), 400);
    let err: Value = resp.json().await.expect("json");
    assert_eq!(err["error"]["code"], "invalidRequest");
    // Accept.
    let resp = patch_req(&env, &token, &path, set("Active", "Accepted"))
        .send()
        .await
        .expect("send");
    assert_eq!(resp.status(), 204);
    // Active → New is backwards.
    let resp = patch_req(&env, &token, &path, set("New", "Pending"))
        .send()
        .await
        .expect("send");
    assert_eq!(resp.status(), 400);
    // Win.
    let resp = patch_req(&env, &token, &path, set("Closed", "Won"))
        .send()
        .await
        .expect("send");
    assert_eq!(resp.status(), 204);
    let got: Value = env.get_json(&path, &token).await;
    assert!(got["closedDateTime"].is_string());
    assert!(got["acceptedDateTime"].is_string());
    // Nothing after a terminal state, not even a name.
    let resp = patch_req(
        &env,
        &token,
        &path,
        json!([{"op": "replace", "path": "/name", "value": "late"}]),
    )
    .send()
    .await
    .expect("send");
    assert_eq!(resp.status(), 400);
    let err: Value = resp.json().await.expect("json");
    assert!(
        err["error"]["message"]
            .as_str()
            .expect("msg")
            .contains("closed")
    );
}

#[tokio::test]
async fn related_referrals_are_found_through_the_link() {
    let env = Env::start().await;
    let token = env.admin().await;
    let incoming = env.incoming("co-sell", json!({})).await;
    let link = incoming["links"]["relatedReferrals"]["uri"]
        .as_str()
        .expect("link");
    let related: Value = env.get_json(link, &token).await;
    let rows = related["value"].as_array().expect("value");
    assert_eq!(rows.len(), 2, "the partner's and Microsoft's referral");
    assert!(
        rows.iter()
            .all(|r| r["engagementId"] == incoming["engagementId"])
    );
    let microsoft = rows
        .iter()
        .find(|r| r["id"] != incoming["id"])
        .expect("related");
    assert_eq!(microsoft["organizationId"], "msft");
    assert!(microsoft["trackingInfo"]["microsoftMsxId"].is_string());
    // A lead has no Microsoft referral beside it.
    let lead = env.incoming("lead", json!({})).await;
    let link = lead["links"]["relatedReferrals"]["uri"]
        .as_str()
        .expect("link");
    let related: Value = env.get_json(link, &token).await;
    assert_eq!(related["value"].as_array().map(Vec::len), Some(1));
    // Microsoft's referral is read-only to the partner.
    let ms_path = format!("{LIST}/{}", microsoft["id"].as_str().expect("id"));
    let resp = patch_req(
        &env,
        &token,
        &ms_path,
        json!([{"op": "replace", "path": "/name", "value": "x"}]),
    )
    .send()
    .await
    .expect("send");
    assert_eq!(resp.status(), 403);
}

#[tokio::test]
async fn unanswered_incoming_referrals_expire_after_14_days() {
    let env = Env::start().await;
    let token = env.admin().await;
    let incoming = env.incoming("co-sell", json!({})).await;
    let accepted = env.incoming("co-sell", json!({})).await;
    let path = format!("{LIST}/{}", accepted["id"].as_str().expect("id"));
    let resp = patch_req(
        &env,
        &token,
        &path,
        json!([{"op": "replace", "path": "/status", "value": "Active"}, {"op": "replace", "path": "/substatus", "value": "Accepted"}]),
    )
    .send()
    .await
    .expect("send");
    assert_eq!(resp.status(), 204);
    env.control(
        Method::POST,
        "/_sandbox/clock/advance",
        Some(json!({"days": 13})),
    )
    .await;
    let token = env.admin().await;
    let still: Value = env
        .call(
            Method::GET,
            &format!("{LIST}/{}", incoming["id"].as_str().expect("id")),
            &token,
            None,
        )
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(still["status"], "New");
    env.control(
        Method::POST,
        "/_sandbox/clock/advance",
        Some(json!({"days": 1, "minutes": 1})),
    )
    .await;
    let token = env.admin().await;
    let expired: Value = env
        .call(
            Method::GET,
            &format!("{LIST}/{}", incoming["id"].as_str().expect("id")),
            &token,
            None,
        )
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(
        (expired["status"].as_str(), expired["substatus"].as_str()),
        (Some("Closed"), Some("Expired"))
    );
    let kept: Value = env.get_json(&path, &token).await;
    assert_eq!(kept["status"], "Active");
}

fn put_req(
    env: &Env,
    token: &str,
    path: &str,
    etag: &Value,
    body: &Value,
) -> reqwest::RequestBuilder {
    env.http
        .put(env.url(path))
        .bearer_auth(token)
        .header("If-Match", etag.as_str().expect("etag"))
        .json(body)
}

/// The `target` of a 400 `invalidRequest`.
async fn refused_target(resp: reqwest::Response) -> String {
    assert_eq!(resp.status(), 400);
    let err: Value = resp.json().await.expect("json");
    assert_eq!(err["error"]["code"], "invalidRequest");
    err["error"]["target"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

#[tokio::test]
async fn a_deal_may_become_shared_and_visible_but_never_go_back() {
    let env = Env::start().await;
    let token = env.admin().await;
    let mut private = Env::outgoing("private");
    json_patch::merge(
        &mut private,
        &json!({
            "type": "Independent",
            "consent": {"consentToShareReferralWithMicrosoftSellers": false},
            "inviteContext": {"assistanceRequestCode": "Unknown"}
        }),
    );
    let r = env.create(&token, private).await;
    let path = format!("{LIST}/{}", r["id"].as_str().expect("id"));
    let consent = "/consent/consentToShareReferralWithMicrosoftSellers";

    // Private → partner-led → co-sell.
    let resp = patch_req(
        &env,
        &token,
        &path,
        json!([{"op": "replace", "path": consent, "value": true}]),
    )
    .send()
    .await
    .expect("send");
    assert_eq!(resp.status(), 204);
    let resp = patch_req(
        &env,
        &token,
        &path,
        json!([{"op": "replace", "path": "/type", "value": "Shared"}]),
    )
    .send()
    .await
    .expect("send");
    assert_eq!(resp.status(), 204);
    let shared: Value = env.get_json(&path, &token).await;
    assert_eq!(shared["type"], "Shared");
    assert_eq!(
        shared["consent"]["consentToShareReferralWithMicrosoftSellers"],
        true
    );

    // Not back, by PATCH or by PUT.
    let back = patch_req(
        &env,
        &token,
        &path,
        json!([{"op": "replace", "path": "/type", "value": "Independent"}]),
    )
    .send()
    .await
    .expect("send");
    assert_eq!(refused_target(back).await, "type");
    let mut body = shared.clone();
    body["type"] = json!("Independent");
    let back = put_req(&env, &token, &path, &shared["eTag"], &body)
        .send()
        .await
        .expect("send");
    assert_eq!(refused_target(back).await, "type");
    let private_again = patch_req(
        &env,
        &token,
        &path,
        json!([{"op": "replace", "path": consent, "value": false}]),
    )
    .send()
    .await
    .expect("send");
    assert_eq!(
        refused_target(private_again).await,
        "consent.consentToShareReferralWithMicrosoftSellers"
    );
    let mut body = shared.clone();
    body["consent"]["consentToShareReferralWithMicrosoftSellers"] = json!(false);
    let private_again = put_req(&env, &token, &path, &shared["eTag"], &body)
        .send()
        .await
        .expect("send");
    assert_eq!(
        refused_target(private_again).await,
        "consent.consentToShareReferralWithMicrosoftSellers"
    );
    let unchanged: Value = env.get_json(&path, &token).await;
    assert_eq!(unchanged["eTag"], shared["eTag"], "nothing was written");

    // A replacement that leaves them out keeps them, as it keeps the status.
    let mut body = shared.clone();
    let obj = body.as_object_mut().expect("object");
    obj.remove("type");
    obj.remove("consent");
    obj.insert("name".into(), json!("renamed"));
    let kept = put_req(&env, &token, &path, &shared["eTag"], &body)
        .send()
        .await
        .expect("send");
    assert_eq!(kept.status(), 200);
    let kept: Value = kept.json().await.expect("json");
    assert_eq!(kept["name"], "renamed");
    assert_eq!(kept["type"], "Shared");
    assert_eq!(
        kept["consent"]["consentToShareReferralWithMicrosoftSellers"],
        true
    );
}

fn won() -> Value {
    json!([
        {"op": "replace", "path": "/status", "value": "Closed"},
        {"op": "replace", "path": "/substatus", "value": "Won"}
    ])
}

#[tokio::test]
async fn won_is_refused_in_the_first_hours_when_configured() {
    let env = Env::with(cosell_sandbox::SandboxConfig {
        won_min_age: std::time::Duration::from_secs(72 * 3600),
        ..crate::common::fast_config()
    })
    .await;
    let token = env.admin().await;
    let r = env.create(&token, Env::outgoing("too early")).await;
    let path = format!("{LIST}/{}", r["id"].as_str().expect("id"));

    let resp = patch_req(&env, &token, &path, won())
        .send()
        .await
        .expect("send");
    assert_eq!(resp.status(), 400);
    let err: Value = resp.json().await.expect("json");
    assert_eq!(err["error"]["code"], "invalidRequest");
    assert_eq!(err["error"]["target"], "substatus");
    let message = err["error"]["message"].as_str().expect("msg");
    assert!(
        message.contains("Won is refused in the first 72 hours"),
        "{message}"
    );
    let mut body = r.clone();
    body["status"] = json!("Closed");
    body["substatus"] = json!("Won");
    let resp = put_req(&env, &token, &path, &r["eTag"], &body)
        .send()
        .await
        .expect("send");
    assert_eq!(refused_target(resp).await, "substatus");
    // Lost is not held back, nor is a Microsoft-sent deal.
    let lost = env.create(&token, Env::outgoing("lost early")).await;
    let resp = patch_req(
        &env,
        &token,
        &format!("{LIST}/{}", lost["id"].as_str().expect("id")),
        json!([
            {"op": "replace", "path": "/status", "value": "Closed"},
            {"op": "replace", "path": "/substatus", "value": "Lost"}
        ]),
    )
    .send()
    .await
    .expect("send");
    assert_eq!(resp.status(), 204);
    let incoming = env.incoming("co-sell", json!({})).await;
    let incoming_path = format!("{LIST}/{}", incoming["id"].as_str().expect("id"));
    let resp = patch_req(
        &env,
        &token,
        &incoming_path,
        json!([
            {"op": "replace", "path": "/status", "value": "Active"},
            {"op": "replace", "path": "/substatus", "value": "Accepted"}
        ]),
    )
    .send()
    .await
    .expect("send");
    assert_eq!(resp.status(), 204);
    let resp = patch_req(&env, &token, &incoming_path, won())
        .send()
        .await
        .expect("send");
    assert_eq!(resp.status(), 204);

    // Just before the 72 hours are up it is still refused; after, accepted.
    env.control(
        Method::POST,
        "/_sandbox/clock/advance",
        Some(json!({"hours": 71, "minutes": 58})),
    )
    .await;
    let token = env.admin().await;
    let resp = patch_req(&env, &token, &path, won())
        .send()
        .await
        .expect("send");
    assert_eq!(refused_target(resp).await, "substatus");
    env.control(
        Method::POST,
        "/_sandbox/clock/advance",
        Some(json!({"minutes": 3})),
    )
    .await;
    let token = env.admin().await;
    let resp = patch_req(&env, &token, &path, won())
        .send()
        .await
        .expect("send");
    assert_eq!(resp.status(), 204);
    let got: Value = env.get_json(&path, &token).await;
    assert_eq!(got["substatus"], "Won");
}

#[tokio::test]
async fn the_won_hold_is_off_by_default_and_settable_at_run_time() {
    let env = Env::start().await;
    let token = env.admin().await;
    let settings = "/_sandbox/partner-center/settings";
    let now: Value = env
        .control(Method::GET, settings, None)
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(now["wonMinAgeHours"], 0.0);
    let r = env.create(&token, Env::outgoing("won at once")).await;
    let resp = patch_req(
        &env,
        &token,
        &format!("{LIST}/{}", r["id"].as_str().expect("id")),
        won(),
    )
    .send()
    .await
    .expect("send");
    assert_eq!(resp.status(), 204);

    let set = env
        .control(Method::PUT, settings, Some(json!({"wonMinAgeHours": 2})))
        .await;
    assert_eq!(set.status(), 200);
    let set: Value = set.json().await.expect("json");
    assert_eq!(set["wonMinAgeHours"], 2.0);
    let held = env.create(&token, Env::outgoing("held")).await;
    let held_path = format!("{LIST}/{}", held["id"].as_str().expect("id"));
    let resp = patch_req(&env, &token, &held_path, won())
        .send()
        .await
        .expect("send");
    assert_eq!(resp.status(), 400);
    let err: Value = resp.json().await.expect("json");
    assert!(
        err["error"]["message"]
            .as_str()
            .expect("msg")
            .contains("first 2 hours"),
        "{err}"
    );

    for bad in [json!({"wonMinAgeHours": -1}), json!({"wonMinAge": 1})] {
        let resp = env.control(Method::PUT, settings, Some(bad.clone())).await;
        assert_eq!(resp.status(), 400, "{bad}");
    }
    // A reset goes back to the configured value.
    env.control(Method::POST, "/_sandbox/reset", None).await;
    let after: Value = env
        .control(Method::GET, settings, None)
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(after["wonMinAgeHours"], 0.0);
}
