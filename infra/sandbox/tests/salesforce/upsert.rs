//! Upsert by external id, and sObject Collections.

use reqwest::Method;
use serde_json::{Value, json};

use crate::common::{Env, error_code};

const BY_REFERRAL: &str = "/sobjects/Opportunity/Referral_Identifier__c";

#[tokio::test]
async fn upsert_creates_then_updates() {
    let env = Env::start().await;
    let body = Env::opportunity(
        "From Partner Center",
        json!({"Sync_with_Partner_Center__c": true}),
    );
    let resp = env
        .api(Method::PATCH, &format!("{BY_REFERRAL}/R-100"), Some(body))
        .await;
    assert_eq!(resp.status(), 201);
    let created: Value = resp.json().await.expect("json");
    assert_eq!(created["created"], true);
    assert_eq!(created["success"], true);
    let id = created["id"].as_str().expect("id").to_string();
    assert_eq!(
        env.get("Opportunity", &id).await["Referral_Identifier__c"],
        "R-100"
    );

    // External ids match case-insensitively; the second call updates.
    let resp = env
        .api(
            Method::PATCH,
            &format!("{BY_REFERRAL}/r-100"),
            Some(json!({"Amount": 5})),
        )
        .await;
    assert_eq!(resp.status(), 200);
    let updated: Value = resp.json().await.expect("json");
    assert_eq!(
        updated,
        json!({"id": id, "success": true, "errors": [], "created": false})
    );
    assert_eq!(env.get("Opportunity", &id).await["Amount"], 5.0);

    // Before v46 an update answers 204 and a create has no `created` flag.
    let resp = env
        .api(
            Method::PATCH,
            &format!("/services/data/v45.0{BY_REFERRAL}/R-100"),
            Some(json!({"Amount": 6})),
        )
        .await;
    assert_eq!(resp.status(), 204);
    let resp = env
        .api(
            Method::PATCH,
            &format!("/services/data/v45.0{BY_REFERRAL}/R-101"),
            Some(Env::opportunity("old client", json!({}))),
        )
        .await;
    assert_eq!(resp.status(), 201);
    let v: Value = resp.json().await.expect("json");
    assert!(v.get("created").is_none(), "{v}");

    // GET by external id.
    let r = env
        .api(Method::GET, &format!("{BY_REFERRAL}/R-100"), None)
        .await;
    assert_eq!(r.status(), 200);
    let rec: Value = r.json().await.expect("json");
    assert_eq!(rec["Id"], id.as_str());
}

#[tokio::test]
async fn upsert_with_several_matches_is_300_and_writes_nothing() {
    let env = Env::start().await;
    let a = env
        .create(
            "Opportunity",
            Env::opportunity("a", json!({"Referral_Identifier__c": "DUP"})),
        )
        .await;
    let b = env
        .create(
            "Opportunity",
            Env::opportunity("b", json!({"Referral_Identifier__c": "dup"})),
        )
        .await;
    let resp = env
        .api(
            Method::PATCH,
            &format!("{BY_REFERRAL}/DUP"),
            Some(json!({"Amount": 1})),
        )
        .await;
    assert_eq!(resp.status(), 300);
    let list: Vec<String> = resp.json().await.expect("json");
    assert_eq!(
        list,
        [
            format!("/services/data/v62.0/sobjects/Opportunity/{a}"),
            format!("/services/data/v62.0/sobjects/Opportunity/{b}"),
        ]
    );
    assert!(env.get("Opportunity", &a).await["Amount"].is_null());
    assert!(env.get("Opportunity", &b).await["Amount"].is_null());
}

#[tokio::test]
async fn upsert_on_a_field_that_is_not_an_external_id_is_404() {
    let env = Env::start().await;
    for field in ["Name", "No_Such_Field__c"] {
        let (status, code, _) = error_code(
            env.api(
                Method::PATCH,
                &format!("/sobjects/Opportunity/{field}/x"),
                Some(Env::opportunity("x", json!({}))),
            )
            .await,
        )
        .await;
        assert_eq!((status, code.as_str()), (404, "NOT_FOUND"), "{field}");
    }
}

#[tokio::test]
async fn update_only_refuses_to_create() {
    let env = Env::start().await;
    let r = env
        .api(
            Method::PATCH,
            &format!("{BY_REFERRAL}/R-404?updateOnly=true"),
            Some(Env::opportunity("x", json!({}))),
        )
        .await;
    assert_eq!(r.status(), 404);
    let all: Vec<Value> = env
        .control(Method::GET, "/_sandbox/salesforce/Opportunity", None)
        .await
        .json()
        .await
        .expect("json");
    assert!(all.is_empty());
}

#[tokio::test]
async fn an_upsert_that_creates_must_still_be_complete() {
    let env = Env::start().await;
    let (status, code, err) = error_code(
        env.api(
            Method::PATCH,
            &format!("{BY_REFERRAL}/R-7"),
            Some(json!({"Name": "x"})),
        )
        .await,
    )
    .await;
    assert_eq!((status, code.as_str()), (400, "REQUIRED_FIELD_MISSING"));
    assert_eq!(err[0]["fields"], json!(["StageName", "CloseDate"]));
}

fn opp_record(name: &str) -> Value {
    let mut r = Env::opportunity(name, json!({}));
    r["attributes"] = json!({"type": "Opportunity"});
    r
}

#[tokio::test]
async fn collections_create_partially_without_all_or_none() {
    let env = Env::start().await;
    let mut bad = opp_record("bad");
    bad["StageName"] = json!("Nope");
    let records =
        json!([opp_record("one"), bad, {"attributes": {"type": "Account"}, "Name": "Fabrikam"}]);
    let resp = env
        .api(
            Method::POST,
            "/composite/sobjects",
            Some(json!({"allOrNone": false, "records": records})),
        )
        .await;
    assert_eq!(resp.status(), 200);
    let results: Vec<Value> = resp.json().await.expect("json");
    assert_eq!(results.len(), 3);
    assert_eq!(results[0]["success"], true);
    assert!(
        results[0]["id"]
            .as_str()
            .is_some_and(|i| i.starts_with("006"))
    );
    assert_eq!(results[1]["success"], false);
    assert_eq!(
        results[1]["errors"][0]["statusCode"],
        "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST"
    );
    assert_eq!(results[1]["errors"][0]["fields"], json!(["StageName"]));
    assert!(
        results[2]["id"]
            .as_str()
            .is_some_and(|i| i.starts_with("001"))
    );
    let opps: Vec<Value> = env
        .control(Method::GET, "/_sandbox/salesforce/Opportunity", None)
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(opps.len(), 1);
}

#[tokio::test]
async fn collections_roll_everything_back_with_all_or_none() {
    let env = Env::start().await;
    let records = json!([opp_record("one"), {"attributes": {"type": "Opportunity"}, "Name": "incomplete"}, opp_record("three")]);
    let resp = env
        .api(
            Method::POST,
            "/composite/sobjects",
            Some(json!({"allOrNone": true, "records": records})),
        )
        .await;
    assert_eq!(resp.status(), 200);
    let results: Vec<Value> = resp.json().await.expect("json");
    let codes: Vec<&str> = results
        .iter()
        .map(|r| r["errors"][0]["statusCode"].as_str().unwrap_or("ok"))
        .collect();
    assert_eq!(
        codes,
        [
            "ALL_OR_NONE_OPERATION_ROLLED_BACK",
            "REQUIRED_FIELD_MISSING",
            "ALL_OR_NONE_OPERATION_ROLLED_BACK"
        ]
    );
    assert!(
        results
            .iter()
            .all(|r| r["success"] == false && r.get("id").is_none())
    );
    let opps: Vec<Value> = env
        .control(Method::GET, "/_sandbox/salesforce/Opportunity", None)
        .await
        .json()
        .await
        .expect("json");
    assert!(opps.is_empty(), "nothing committed");
}

#[tokio::test]
async fn collections_update_delete_and_upsert() {
    let env = Env::start().await;
    let a = env
        .create("Opportunity", Env::opportunity("a", json!({})))
        .await;
    let b = env
        .create("Opportunity", Env::opportunity("b", json!({})))
        .await;
    let update = json!({"allOrNone": true, "records": [
        {"attributes": {"type": "Opportunity"}, "Id": a, "StageName": "Closed Won"},
        {"attributes": {"type": "Opportunity"}, "Id": b, "Amount": 42},
    ]});
    let results: Vec<Value> = env
        .api(Method::PATCH, "/composite/sobjects", Some(update))
        .await
        .json()
        .await
        .expect("json");
    assert!(results.iter().all(|r| r["success"] == true), "{results:?}");
    assert_eq!(env.get("Opportunity", &a).await["IsWon"], true);
    assert_eq!(env.get("Opportunity", &b).await["Amount"], 42.0);

    // A failing update with allOrNone keeps both records as they were, ids in the results.
    let update = json!({"allOrNone": true, "records": [
        {"attributes": {"type": "Opportunity"}, "Id": a, "Amount": 7},
        {"attributes": {"type": "Opportunity"}, "Amount": 8},
    ]});
    let results: Vec<Value> = env
        .api(Method::PATCH, "/composite/sobjects", Some(update))
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(results[0]["id"], a.as_str());
    assert_eq!(
        results[0]["errors"][0]["statusCode"],
        "ALL_OR_NONE_OPERATION_ROLLED_BACK"
    );
    assert_eq!(results[1]["errors"][0]["statusCode"], "MISSING_ARGUMENT");
    assert!(env.get("Opportunity", &a).await["Amount"].is_null());

    let upsert = json!({"allOrNone": false, "records": [
        {"attributes": {"type": "Opportunity"}, "Referral_Identifier__c": "R-1", "Name": "n", "StageName": "Prospecting", "CloseDate": "2030-01-01"},
        {"attributes": {"type": "Opportunity"}, "Referral_Identifier__c": "R-1", "Amount": 3},
    ]});
    let results: Vec<Value> = env
        .api(
            Method::PATCH,
            "/composite/sobjects/Opportunity/Referral_Identifier__c",
            Some(upsert),
        )
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(results[0]["created"], true);
    assert_eq!(results[1]["created"], false);
    assert_eq!(results[0]["id"], results[1]["id"]);

    let resp = env
        .api(
            Method::DELETE,
            &format!("/composite/sobjects?ids={a},{b}&allOrNone=true"),
            None,
        )
        .await;
    let results: Vec<Value> = resp.json().await.expect("json");
    assert_eq!(results.iter().filter(|r| r["success"] == true).count(), 2);
    assert_eq!(
        env.api(Method::GET, &format!("/sobjects/Opportunity/{a}"), None)
            .await
            .status(),
        404
    );
}

#[tokio::test]
async fn collections_take_at_most_200_records() {
    let env = Env::start().await;
    let records: Vec<Value> = (0..201).map(|i| opp_record(&format!("o{i}"))).collect();
    let (status, code, _) = error_code(
        env.api(
            Method::POST,
            "/composite/sobjects",
            Some(json!({"records": records})),
        )
        .await,
    )
    .await;
    assert_eq!((status, code.as_str()), (400, "EXCEEDED_ID_LIMIT"));
    let records: Vec<Value> = (0..200).map(|i| opp_record(&format!("o{i}"))).collect();
    let results: Vec<Value> = env
        .api(
            Method::POST,
            "/composite/sobjects",
            Some(json!({"records": records})),
        )
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(results.len(), 200);
    assert!(results.iter().all(|r| r["success"] == true));
}
