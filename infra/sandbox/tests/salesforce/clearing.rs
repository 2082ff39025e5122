//! Emptying fields as the co-sell connector does: `"Field": null` in a PATCH, and a contact
//! role deleted to detach the customer contact; and the Services co-sell fields on the
//! opportunity.

use reqwest::Method;
use serde_json::{Value, json};

use crate::common::{Env, error_code};

async fn patch(env: &Env, id: &str, body: Value) -> reqwest::Response {
    env.api(
        Method::PATCH,
        &format!("/sobjects/Opportunity/{id}"),
        Some(body),
    )
    .await
}

#[tokio::test]
async fn null_in_a_patch_empties_text_numbers_picklists_and_services_fields() {
    let env = Env::start().await;
    let filled = json!({
        "Amount": 5000,
        "Description": "notes",
        "How_can_Microsoft_help__c": "Proof of concept or demo",
        "Microsoft_Status__c": "Active/Accepted",
        "Microsoft_CRM_Identifier__c": "7-ABC",
        "Solution_Area__c": "Cloud and AI Platforms",
        "Solution_Play__c": "Migrate and modernize your estate",
        "Partner_Role__c": "Implementation partner",
        "Marketplace_Intent__c": "Have not decided",
    });
    let id = env
        .create("Opportunity", Env::opportunity("Emptied", filled.clone()))
        .await;
    let rec = env.get("Opportunity", &id).await;
    for (k, v) in filled.as_object().expect("object") {
        let stored = if k == "Amount" {
            json!(5000.0)
        } else {
            v.clone()
        };
        assert_eq!(rec[k], stored, "{k} stored");
    }

    let nulls: serde_json::Map<String, Value> = filled
        .as_object()
        .expect("object")
        .keys()
        .map(|k| (k.clone(), Value::Null))
        .collect();
    let resp = patch(&env, &id, Value::Object(nulls.clone())).await;
    assert_eq!(resp.status(), 204);
    let rec = env.get("Opportunity", &id).await;
    for k in nulls.keys() {
        assert_eq!(rec[k], Value::Null, "{k} emptied: {rec}");
    }
    assert_eq!(rec["Name"], "Emptied", "fields not named are kept");
}

#[tokio::test]
async fn a_required_field_cannot_be_emptied() {
    let env = Env::start().await;
    let id = env
        .create("Opportunity", Env::opportunity("Dated", json!({})))
        .await;
    let (status, code, body) = error_code(patch(&env, &id, json!({"CloseDate": null})).await).await;
    assert_eq!(
        (status, code.as_str()),
        (400, "REQUIRED_FIELD_MISSING"),
        "{body}"
    );
    assert_eq!(body[0]["fields"], json!(["CloseDate"]));
    assert_eq!(env.get("Opportunity", &id).await["CloseDate"], "2030-06-30");
}

#[tokio::test]
async fn the_marketplace_intent_picklist_takes_its_three_values_only() {
    let env = Env::start().await;
    for value in ["Yes", "No", "Have not decided"] {
        env.create(
            "Opportunity",
            Env::opportunity(value, json!({"Marketplace_Intent__c": value})),
        )
        .await;
    }
    let resp = env
        .api(
            Method::POST,
            "/sobjects/Opportunity/",
            Some(Env::opportunity(
                "Maybe",
                json!({"Marketplace_Intent__c": "HaveNotDecided"}),
            )),
        )
        .await;
    let (status, code, _) = error_code(resp).await;
    assert_eq!(
        (status, code.as_str()),
        (400, "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST")
    );
}

#[tokio::test]
async fn deleting_the_primary_contact_role_detaches_the_contact_once() {
    let env = Env::start().await;
    let opportunity = env
        .create("Opportunity", Env::opportunity("Detached", json!({})))
        .await;
    let contact = env.create("Contact", json!({"LastName": "Bowman"})).await;
    let other = env.create("Contact", json!({"LastName": "Other"})).await;
    let primary = env
        .create(
            "OpportunityContactRole",
            json!({"OpportunityId": opportunity, "ContactId": contact, "IsPrimary": true}),
        )
        .await;
    env.create(
        "OpportunityContactRole",
        json!({"OpportunityId": opportunity, "ContactId": other, "Role": "Evaluator"}),
    )
    .await;

    let path = format!("/sobjects/OpportunityContactRole/{primary}");
    let resp = env.api(Method::DELETE, &path, None).await;
    assert_eq!(resp.status(), 204);
    let soql = format!(
        "SELECT Id, ContactId, IsPrimary FROM OpportunityContactRole WHERE OpportunityId = '{opportunity}'"
    );
    let left = env.query_ok(&soql).await;
    assert_eq!(left["totalSize"], 1, "{left}");
    assert_eq!(left["records"][0]["ContactId"], json!(other));
    assert_eq!(left["records"][0]["IsPrimary"], false);
    assert_eq!(
        env.get("Contact", &contact).await["LastName"],
        "Bowman",
        "the contact itself stays"
    );

    let (status, code, _) = error_code(env.api(Method::DELETE, &path, None).await).await;
    assert_eq!((status, code.as_str()), (404, "ENTITY_IS_DELETED"));
}
