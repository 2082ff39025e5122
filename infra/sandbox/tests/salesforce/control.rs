//! The API budget, versions and describe, the schema control routes, per-route counts and
//! injected faults.

use cosell_sandbox::salesforce::Config;
use reqwest::{Method, Response};
use serde_json::{Value, json};

use crate::common::{Env, error_code};

fn usage(resp: &Response) -> String {
    resp.headers()
        .get("Sforce-Limit-Info")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("<missing>")
        .to_string()
}

#[tokio::test]
async fn every_response_reports_api_usage_and_a_spent_budget_is_403_without_retry_after() {
    let env = Env::with(Config {
        daily_api_limit: 3,
        ..Default::default()
    })
    .await;
    let ok = env.api(Method::GET, "/limits/", None).await;
    assert_eq!(usage(&ok), "api-usage=1/3");
    let limits: Value = ok.json().await.expect("json");
    assert_eq!(
        limits["DailyApiRequests"],
        json!({"Max": 3, "Remaining": 2})
    );
    let bad = env
        .api(Method::POST, "/sobjects/Opportunity/", Some(json!({})))
        .await;
    assert_eq!(bad.status(), 400);
    assert_eq!(usage(&bad), "api-usage=2/3", "errors count and report too");
    let missing = env
        .api(
            Method::GET,
            "/sobjects/Opportunity/0065g0000000001AAA",
            None,
        )
        .await;
    assert_eq!(missing.status(), 404);
    assert_eq!(usage(&missing), "api-usage=3/3");
    let refused = env.api(Method::GET, "/limits/", None).await;
    assert_eq!(refused.status(), 403);
    assert!(refused.headers().get("Retry-After").is_none());
    assert_eq!(usage(&refused), "api-usage=3/3");
    let (_, code, body) = error_code(refused).await;
    assert_eq!(code, "REQUEST_LIMIT_EXCEEDED");
    assert_eq!(body[0]["message"], "TotalRequests Limit exceeded.");
    // A request without a session is refused before it counts, and still reports usage.
    let anonymous = env
        .http
        .get(env.url("/services/data/v62.0/limits/"))
        .send()
        .await
        .expect("sent");
    assert_eq!(anonymous.status(), 401);
    assert_eq!(usage(&anonymous), "api-usage=3/3");
    // The window rolls: a day later the calls no longer count (a new token, the old expired).
    env.advance(json!({"hours": 24, "seconds": 1})).await;
    let token = env.jwt_token().await;
    let again = env.api_as(&token, Method::GET, "/limits/", None).await;
    assert_eq!(again.status(), 200);
    assert_eq!(usage(&again), "api-usage=1/3");
}

#[tokio::test]
async fn the_budget_can_be_spent_and_changed_through_the_control_api() {
    let env = Env::start().await;
    let b: Value = env
        .control(Method::GET, "/_sandbox/salesforce/budget", None)
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(b["max"], 15_000);
    let r = env
        .control(
            Method::PUT,
            "/_sandbox/salesforce/budget",
            Some(json!({"used": 15_000})),
        )
        .await;
    assert_eq!(r.status(), 200);
    let (status, code, _) = error_code(env.api(Method::GET, "/limits/", None).await).await;
    assert_eq!((status, code.as_str()), (403, "REQUEST_LIMIT_EXCEEDED"));
    let r = env
        .control(
            Method::PUT,
            "/_sandbox/salesforce/budget",
            Some(json!({"max": 20_000})),
        )
        .await;
    let b: Value = r.json().await.expect("json");
    assert_eq!(b["remaining"], 5_000);
    assert_eq!(env.api(Method::GET, "/limits/", None).await.status(), 200);
}

#[tokio::test]
async fn versions_describe_and_unknown_resources() {
    let env = Env::start().await;
    let list: Vec<Value> = env
        .http
        .get(env.url("/services/data/"))
        .send()
        .await
        .expect("sent")
        .json()
        .await
        .expect("json");
    assert!(
        list.iter()
            .any(|v| v["version"] == "60.0" && v["url"] == "/services/data/v60.0")
    );
    for version in ["v60.0", "v62.0"] {
        let r = env
            .api(
                Method::GET,
                &format!("/services/data/{version}/sobjects/Opportunity/describe"),
                None,
            )
            .await;
        assert_eq!(r.status(), 200, "{version}");
    }
    let r = env
        .api(Method::GET, "/services/data/v9.0/limits/", None)
        .await;
    assert_eq!(r.status(), 404);
    let d: Value = env
        .api(Method::GET, "/sobjects/Opportunity/describe", None)
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(d["keyPrefix"], "006");
    let field = |name: &str| {
        d["fields"]
            .as_array()
            .expect("fields")
            .iter()
            .find(|f| f["name"] == name)
            .cloned()
            .unwrap_or(Value::Null)
    };
    assert_eq!(field("Referral_Identifier__c")["externalId"], true);
    assert_eq!(field("Audit__c")["length"], 100_000);
    assert_eq!(field("IsWon")["updateable"], false);
    let stage_field = field("StageName");
    let stages: Vec<&str> = stage_field["picklistValues"]
        .as_array()
        .expect("values")
        .iter()
        .filter_map(|v| v["value"].as_str())
        .collect();
    assert!(stages.contains(&"On Hold") && stages.contains(&"Closed Won"));
    let global: Value = env
        .api(Method::GET, "/sobjects/", None)
        .await
        .json()
        .await
        .expect("json");
    let names: Vec<&str> = global["sobjects"]
        .as_array()
        .expect("sobjects")
        .iter()
        .filter_map(|o| o["name"].as_str())
        .collect();
    for expected in [
        "Opportunity",
        "Account",
        "Contact",
        "Lead",
        "OpportunityContactRole",
        "Microsoft_Solution__c",
        "Microsoft_Solution_Catalog__c",
    ] {
        assert!(names.contains(&expected), "{expected}");
    }
    let (status, code, _) = error_code(env.api(Method::GET, "/nothing/here", None).await).await;
    assert_eq!((status, code.as_str()), (404, "NOT_FOUND"));
    let (status, code, _) = error_code(env.api(Method::PUT, "/limits/", None).await).await;
    assert_eq!((status, code.as_str()), (405, "METHOD_NOT_ALLOWED"));
}

#[tokio::test]
async fn an_admin_can_add_an_external_id_and_mark_fields_required() {
    let env = Env::start().await;
    let r = env
        .control(
            Method::POST,
            "/_sandbox/salesforce/schema/Opportunity/fields",
            Some(json!({"name": "PC_Referral_Id__c", "type": "string", "length": 64, "externalId": true, "unique": true})),
        )
        .await;
    assert_eq!(r.status(), 201);
    let r = env
        .api(
            Method::PATCH,
            "/sobjects/Opportunity/PC_Referral_Id__c/R-9",
            Some(Env::opportunity("custom key", json!({}))),
        )
        .await;
    assert_eq!(r.status(), 201);
    let created: Value = r.json().await.expect("json");
    let id = created["id"].as_str().expect("id");
    assert_eq!(env.get("Opportunity", id).await["PC_Referral_Id__c"], "R-9");
    // Unique: a second record with the value is refused.
    let (status, code, _) = error_code(
        env.api(
            Method::POST,
            "/sobjects/Opportunity/",
            Some(Env::opportunity("dup", json!({"PC_Referral_Id__c": "r-9"}))),
        )
        .await,
    )
    .await;
    assert_eq!((status, code.as_str()), (400, "DUPLICATE_VALUE"));

    let r = env
        .control(
            Method::PATCH,
            "/_sandbox/salesforce/schema/Opportunity/fields/Description",
            Some(json!({"required": true})),
        )
        .await;
    assert_eq!(r.status(), 200);
    let (status, code, err) = error_code(
        env.api(
            Method::POST,
            "/sobjects/Opportunity/",
            Some(Env::opportunity("x", json!({}))),
        )
        .await,
    )
    .await;
    assert_eq!((status, code.as_str()), (400, "REQUIRED_FIELD_MISSING"));
    assert_eq!(err[0]["fields"], json!(["Description"]));

    // A field the admin deletes is unknown afterwards.
    let r = env
        .control(
            Method::DELETE,
            "/_sandbox/salesforce/schema/Opportunity/fields/Audit__c",
            None,
        )
        .await;
    assert_eq!(r.status(), 204);
    let (status, code, _) = error_code(
        env.api(
            Method::PATCH,
            &format!("/sobjects/Opportunity/{id}"),
            Some(json!({"Audit__c": "x"})),
        )
        .await,
    )
    .await;
    assert_eq!((status, code.as_str()), (400, "INVALID_FIELD"));
    let schema: Value = env
        .control(Method::GET, "/_sandbox/salesforce/schema/Opportunity", None)
        .await
        .json()
        .await
        .expect("json");
    assert!(
        schema["fields"]
            .as_array()
            .expect("fields")
            .iter()
            .any(|f| f["name"] == "PC_Referral_Id__c")
    );
    let r = env
        .control(
            Method::POST,
            "/_sandbox/salesforce/schema/Opportunity/fields",
            Some(json!({"name": "Name", "type": "string", "length": 5})),
        )
        .await;
    assert_eq!(r.status(), 400, "an existing name");
}

#[tokio::test]
async fn the_org_can_start_without_the_connector_fields() {
    let env = Env::with(Config {
        connector_fields: false,
        ..Default::default()
    })
    .await;
    let body = Env::opportunity("x", json!({"Sync_with_Partner_Center__c": true}));
    let (status, code, _) = error_code(
        env.api(Method::POST, "/sobjects/Opportunity/", Some(body))
            .await,
    )
    .await;
    assert_eq!((status, code.as_str()), (400, "INVALID_FIELD"));
    let r = env
        .api(
            Method::GET,
            "/sobjects/Microsoft_Solution__c/describe",
            None,
        )
        .await;
    assert_eq!(r.status(), 404);
}

#[tokio::test]
async fn requests_are_counted_per_object_and_operation() {
    let env = Env::start().await;
    let a = env
        .create("Opportunity", Env::opportunity("a", json!({})))
        .await;
    let b = env
        .create("Opportunity", Env::opportunity("b", json!({})))
        .await;
    env.get("Opportunity", &a).await;
    env.get("Opportunity", &b).await;
    env.create("Lead", json!({"LastName": "L", "Company": "C"}))
        .await;
    env.query_ok("SELECT Id FROM Lead").await;
    env.api(
        Method::PATCH,
        "/sobjects/Opportunity/Referral_Identifier__c/R-1",
        Some(Env::opportunity("c", json!({}))),
    )
    .await;
    let stats = env.stats().await;
    let count = |k: &str| stats[k].as_u64().unwrap_or(0);
    assert_eq!(
        count("GET /services/data/v{version}/sobjects/Opportunity/{id}"),
        2,
        "{stats}"
    );
    assert_eq!(
        count("POST /services/data/v{version}/sobjects/Opportunity"),
        2,
        "{stats}"
    );
    assert_eq!(
        count("POST /services/data/v{version}/sobjects/Lead"),
        1,
        "{stats}"
    );
    assert_eq!(count("GET /services/data/v{version}/query"), 1, "{stats}");
    assert_eq!(
        count(
            "PATCH /services/data/v{version}/sobjects/Opportunity/Referral_Identifier__c/{value}"
        ),
        1,
        "{stats}"
    );
    assert!(count("POST /services/oauth2/token") >= 1, "{stats}");
}

#[tokio::test]
async fn an_injected_fault_answers_in_salesforce_shape() {
    let env = Env::start().await;
    let id = env
        .create("Opportunity", Env::opportunity("a", json!({})))
        .await;
    let r = env
        .control(
            Method::POST,
            "/_sandbox/faults",
            Some(json!({
                "method": "GET",
                "route": "/services/data/v{version}/sobjects/Opportunity/{id}",
                "status": 503,
                "count": 1
            })),
        )
        .await;
    assert!(r.status().is_success());
    let (status, code, body) = error_code(
        env.api(Method::GET, &format!("/sobjects/Opportunity/{id}"), None)
            .await,
    )
    .await;
    assert_eq!(status, 503);
    assert_eq!(code, "SERVER_UNAVAILABLE");
    assert!(
        body[0]["message"]
            .as_str()
            .is_some_and(|m| m.contains("503")),
        "{body}"
    );
    // The rule is spent; the next call is served.
    assert_eq!(env.get("Opportunity", &id).await["Name"], "a");
    // Other objects were never affected.
    let r = env
        .control(
            Method::POST,
            "/_sandbox/faults",
            Some(json!({"route": "/services/data/v{version}/sobjects/Lead*", "status": 500})),
        )
        .await;
    assert!(r.status().is_success());
    let r = env
        .api(
            Method::POST,
            "/sobjects/Lead/",
            Some(json!({"LastName": "L", "Company": "C"})),
        )
        .await;
    assert_eq!(r.status(), 500);
    assert_eq!(env.get("Opportunity", &id).await["Name"], "a");
}
