use cosell_sandbox::dataverse::{APP_USER_ID, SELLER_USER_ID};
use reqwest::Method;
use serde_json::{Value, json};

use crate::common::Dv;

#[tokio::test]
async fn a_human_edit_is_recorded_as_the_seller() {
    let dv = Dv::start().await;
    let id = dv.opportunity("Edited by a person").await;
    let before = dv.row("opportunities", &id).await;
    assert_eq!(before["_modifiedby_value"], APP_USER_ID.to_string());
    assert_eq!(before["_createdby_value"], APP_USER_ID.to_string());
    dv.advance(60).await;
    let after = dv
        .human_edit(
            "opportunities",
            &id,
            json!({"cosell_syncwithpartnercenter": true}),
        )
        .await;
    assert_eq!(after["_modifiedby_value"], SELLER_USER_ID.to_string());
    assert_eq!(after["_createdby_value"], APP_USER_ID.to_string());
    assert_ne!(after["@odata.etag"], before["@odata.etag"]);
    assert_ne!(after["modifiedon"], before["modifiedon"]);
    let read = dv.row("opportunities", &id).await;
    assert_eq!(read["cosell_syncwithpartnercenter"], true);
    assert_eq!(read["_modifiedby_value"], SELLER_USER_ID.to_string());
    let r = dv
        .control(
            Method::PATCH,
            &format!("/_sandbox/dataverse/opportunities({id})"),
            Some(json!({"nonexistent": 1})),
        )
        .await;
    assert_eq!(r.status, 400, "humans get the same validation: {r:?}");
    let users = dv
        .control(Method::GET, "/_sandbox/dataverse/users", None)
        .await;
    assert_eq!(users.body["seller"], SELLER_USER_ID.to_string());
}

#[tokio::test]
async fn the_control_api_creates_reads_and_deletes_without_a_token() {
    let dv = Dv::start().await;
    let r = dv
        .control(
            Method::POST,
            "/_sandbox/dataverse/contacts",
            Some(json!({"firstname": "Sue", "lastname": "Smith", "emailaddress1": "sue@example.com"})),
        )
        .await;
    assert_eq!(r.status, 201, "{r:?}");
    assert_eq!(r.body["_createdby_value"], SELLER_USER_ID.to_string());
    let id = r.body["contactid"].as_str().expect("id").to_string();
    let all = dv
        .control(Method::GET, "/_sandbox/dataverse/contacts", None)
        .await;
    assert_eq!(
        all.body["value"].as_array().map(Vec::len),
        Some(1),
        "{all:?}"
    );
    let one = dv
        .control(
            Method::GET,
            &format!("/_sandbox/dataverse/contacts({id})"),
            None,
        )
        .await;
    assert_eq!(one.body["fullname"], "Sue Smith");
    let r = dv
        .control(
            Method::DELETE,
            &format!("/_sandbox/dataverse/contacts({id})"),
            None,
        )
        .await;
    assert_eq!(r.status, 204, "{r:?}");
    assert_eq!(dv.get(&format!("contacts({id})")).await.status, 404);
}

#[tokio::test]
async fn an_added_field_is_usable_and_can_be_made_required() {
    let dv = Dv::start().await;
    let r = dv
        .call(
            Method::POST,
            "accounts",
            Some(json!({"name": "X", "new_countryiso2": "NO"})),
        )
        .await;
    assert_eq!(r.status, 400, "not there yet: {r:?}");
    let r = dv
        .control(
            Method::POST,
            "/_sandbox/dataverse/schema/accounts/fields",
            Some(json!({"name": "new_countryiso2", "type": "string", "maxLength": 2})),
        )
        .await;
    assert_eq!(r.status, 201, "{r:?}");
    let id = dv
        .create("accounts", json!({"name": "Y", "new_countryiso2": "NO"}))
        .await;
    let r = dv
        .get("accounts?$select=new_countryiso2&$filter=new_countryiso2 eq 'NO'")
        .await;
    assert_eq!(r.body["value"][0]["accountid"], id.as_str(), "{r:?}");
    let r = dv
        .call(
            Method::POST,
            "accounts",
            Some(json!({"name": "Z", "new_countryiso2": "NOR"})),
        )
        .await;
    assert_eq!(r.status, 400, "its maximum length applies: {r:?}");

    let r = dv
        .control(
            Method::PATCH,
            "/_sandbox/dataverse/schema/accounts/fields/new_countryiso2",
            Some(json!({"required": true})),
        )
        .await;
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.body["required"], true);
    let r = dv
        .call(Method::POST, "accounts", Some(json!({"name": "W"})))
        .await;
    assert_eq!(r.status, 400, "{r:?}");
    assert!(r.message().contains("new_countryiso2"), "{r:?}");
    let r = dv
        .control(
            Method::PATCH,
            "/_sandbox/dataverse/schema/accounts/fields/new_countryiso2",
            Some(json!({"required": false})),
        )
        .await;
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(
        dv.call(Method::POST, "accounts", Some(json!({"name": "W"})))
            .await
            .status,
        204
    );

    let r = dv
        .control(
            Method::POST,
            "/_sandbox/dataverse/schema/opportunities/fields",
            Some(json!({"name": "new_distributorid", "type": "lookup",
                        "targets": [{"navigation": "new_distributorid", "table": "accounts"}]})),
        )
        .await;
    assert_eq!(r.status, 201, "{r:?}");
    let opp = dv.opportunity("Distributed").await;
    let r = dv
        .call(
            Method::PATCH,
            &format!("opportunities({opp})"),
            Some(json!({"new_distributorid@odata.bind": format!("/accounts({id})")})),
        )
        .await;
    assert_eq!(r.status, 204, "{r:?}");
    assert_eq!(
        dv.row("opportunities", &opp).await["_new_distributorid_value"],
        id.as_str()
    );

    let r = dv
        .control(
            Method::POST,
            "/_sandbox/dataverse/schema/accounts/fields",
            Some(json!({"name": "name", "type": "string", "maxLength": 5})),
        )
        .await;
    assert_eq!(r.status, 400, "duplicate column: {r:?}");
    let r = dv
        .control(
            Method::POST,
            "/_sandbox/dataverse/schema/accounts/fields",
            Some(json!({"name": "new_x", "type": "string", "maxLenght": 5})),
        )
        .await;
    assert_eq!(r.status, 400, "a typo is refused, not ignored: {r:?}");

    dv.control(Method::POST, "/_sandbox/reset", None).await;
    let schema = dv
        .control(Method::GET, "/_sandbox/dataverse/schema/accounts", None)
        .await;
    let fields = schema.body["fields"].as_array().expect("fields");
    assert!(
        fields.iter().all(|f| f["name"] != "new_countryiso2"),
        "reset restores the schema"
    );
}

#[tokio::test]
async fn the_connector_fields_are_installed() {
    let dv = Dv::start().await;
    let r = dv
        .control(
            Method::GET,
            "/_sandbox/dataverse/schema/opportunities",
            None,
        )
        .await;
    let names: Vec<&str> = r.body["fields"]
        .as_array()
        .expect("fields")
        .iter()
        .filter_map(|f| f["name"].as_str())
        .collect();
    for f in [
        "cosell_syncwithpartnercenter",
        "cosell_referralid",
        "cosell_referrallink",
        "cosell_microsofthelp",
        "cosell_visibility",
        "cosell_microsoftcrmid",
        "cosell_microsoftstatus",
        "cosell_audit",
    ] {
        assert!(names.contains(&f), "{f}");
    }
    let id = dv
        .create(
            "cosell_solutioncatalogs",
            json!({"cosell_name": "Contoso AI", "cosell_solutionid": "SOL-9"}),
        )
        .await;
    assert_eq!(
        dv.row("cosell_solutioncatalogs", &id).await["cosell_solutionid"],
        "SOL-9"
    );
}

#[tokio::test]
async fn requests_are_counted_per_entity_set_and_operation() {
    let dv = Dv::start().await;
    let a = dv.account("Counted").await;
    let b = dv.account("Counted too").await;
    dv.get(&format!("accounts({a})")).await;
    dv.get(&format!("accounts({b})")).await;
    dv.get("accounts?$select=name").await;
    dv.call(
        Method::PATCH,
        &format!("accounts({a})"),
        Some(json!({"name": "C"})),
    )
    .await;
    let stats: Value = dv.control(Method::GET, "/_sandbox/stats", None).await.body;
    assert_eq!(stats["POST /api/data/v9.2/accounts"], 2, "{stats}");
    assert_eq!(stats["GET /api/data/v9.2/accounts({id})"], 2, "{stats}");
    assert_eq!(stats["GET /api/data/v9.2/accounts"], 1, "{stats}");
    assert_eq!(stats["PATCH /api/data/v9.2/accounts({id})"], 1, "{stats}");
    assert_eq!(stats["POST /{tenant}/oauth2/v2.0/token"], 1, "{stats}");
}

#[tokio::test]
async fn an_injected_fault_answers_in_the_dataverse_shape() {
    let dv = Dv::start().await;
    let r = dv
        .control(
            Method::POST,
            "/_sandbox/faults",
            Some(json!([
                {"method": "GET", "route": "/api/data/v9.2/accounts", "status": 503, "count": 1},
                {"method": "POST", "route": "/api/data/v9.2/*", "status": 429, "retryAfter": 7, "count": 1}
            ])),
        )
        .await;
    assert_eq!(r.status, 200, "{r:?}");
    let r = dv.get("accounts").await;
    assert_eq!(r.status, 503, "{r:?}");
    assert!(r.body["error"]["message"].is_string(), "{r:?}");
    assert!(r.body["error"].get("code").is_some(), "{r:?}");
    assert_eq!(dv.get("accounts").await.status, 200, "the fault was spent");
    let r = dv
        .call(Method::POST, "accounts", Some(json!({"name": "Throttled"})))
        .await;
    assert_eq!(r.status, 429, "{r:?}");
    assert_eq!(r.header("retry-after"), Some("7"));
    assert_eq!(r.body["error"]["code"], "0x80072322");
    assert!(
        r.message()
            .starts_with("Number of requests exceeded the limit"),
        "{r:?}"
    );
    let all = dv
        .control(Method::GET, "/_sandbox/dataverse/accounts", None)
        .await;
    assert_eq!(
        all.body["value"],
        json!([]),
        "the throttled create did not happen"
    );
}
