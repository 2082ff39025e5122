//! Emptying columns as the co-sell connector does: a PATCH with the column set to null, and a
//! lookup's navigation property bound to null (the Web API's documented way to disassociate a
//! single-valued navigation property); and the Services co-sell columns on the opportunity.

use cosell_sandbox::dataverse;
use reqwest::Method;
use serde_json::{Value, json};

use crate::common::Dv;

const SERVICES_COLUMNS: [&str; 4] = [
    "cosell_solutionarea",
    "cosell_solutionplay",
    "cosell_partnerrole",
    "cosell_marketplaceintent",
];

async fn patch(dv: &Dv, id: &str, body: Value) -> crate::common::Reply {
    dv.call_with(
        Method::PATCH,
        &format!("opportunities({id})"),
        Some(body),
        &[("If-Match", "*")],
    )
    .await
}

/// An opportunity with every column the connector can empty filled in, and a contact.
async fn filled(dv: &Dv) -> (String, String) {
    let id = dv.opportunity("Filled").await;
    let contact = dv.create("contacts", json!({"lastname": "Bowman"})).await;
    let r = patch(
        dv,
        &id,
        json!({
            "estimatedclosedate": "2030-06-30",
            "description": "notes",
            "cosell_microsofthelp": "ProofOfConceptOrDemo",
            "cosell_microsoftstatus": "Active/Accepted",
            "cosell_microsoftcrmid": "7-ABC",
            "cosell_solutionarea": "Cloud and AI Platforms",
            "cosell_solutionplay": "Migrate and modernize your estate",
            "cosell_partnerrole": "Implementation partner",
            "cosell_marketplaceintent": "Have not decided",
            "parentcontactid@odata.bind": format!("/contacts({contact})"),
        }),
    )
    .await;
    assert_eq!(r.status, 204, "{r:?}");
    (id, contact)
}

#[tokio::test]
async fn null_columns_and_a_null_bind_empty_the_row_in_one_patch() {
    let dv = Dv::start().await;
    let (id, contact) = filled(&dv).await;
    let before = dv.row("opportunities", &id).await;
    assert_eq!(before["_parentcontactid_value"], json!(contact));
    assert_eq!(
        before["cosell_solutionplay"],
        "Migrate and modernize your estate"
    );
    assert_eq!(before["estimatedvalue"], 1000.0);

    let columns = [
        "estimatedvalue",
        "estimatedclosedate",
        "description",
        "cosell_microsofthelp",
        "cosell_microsoftstatus",
        "cosell_microsoftcrmid",
        "cosell_solutionarea",
        "cosell_solutionplay",
        "cosell_partnerrole",
        "cosell_marketplaceintent",
    ];
    let mut body: serde_json::Map<String, Value> = columns
        .iter()
        .map(|c| (c.to_string(), Value::Null))
        .collect();
    body.insert("parentcontactid@odata.bind".into(), Value::Null);
    let r = patch(&dv, &id, Value::Object(body)).await;
    assert_eq!(r.status, 204, "{r:?}");

    let after = dv.row("opportunities", &id).await;
    for c in columns {
        assert_eq!(after[c], Value::Null, "{c} emptied: {after}");
    }
    assert_eq!(after["_parentcontactid_value"], Value::Null);
    assert_eq!(after["name"], "Filled", "columns not named are kept");
    assert!(after["_customerid_value"].is_string(), "the customer stays");
    assert!(after["_transactioncurrencyid_value"].is_string());
    assert!(dv.row("contacts", &contact).await["lastname"] == "Bowman");

    // A contact that is no longer bound has no lookup annotation either.
    let r = dv
        .call_with(
            Method::GET,
            &format!("opportunities({id})?$select=_parentcontactid_value"),
            None,
            &[("Prefer", "odata.include-annotations=\"*\"")],
        )
        .await;
    assert_eq!(r.status, 200, "{r:?}");
    let annotation = "_parentcontactid_value@Microsoft.Dynamics.CRM.lookuplogicalname";
    assert!(r.body.get(annotation).is_none(), "{:?}", r.body);
}

#[tokio::test]
async fn the_required_currency_cannot_be_unbound_unless_required_is_not_enforced() {
    let dv = Dv::start().await;
    let id = dv.opportunity("Priced").await;
    let r = patch(&dv, &id, json!({"transactioncurrencyid@odata.bind": null})).await;
    assert_eq!(r.status, 400, "{r:?}");
    assert!(r.message().contains("transactioncurrencyid"), "{r:?}");
    assert!(
        dv.row("opportunities", &id).await["_transactioncurrencyid_value"].is_string(),
        "nothing was written"
    );

    let lenient = Dv::with(dataverse::Config {
        enforce_required: false,
        ..Default::default()
    })
    .await;
    let id = lenient.opportunity("Priced").await;
    let r = patch(
        &lenient,
        &id,
        json!({"transactioncurrencyid@odata.bind": null}),
    )
    .await;
    assert_eq!(r.status, 204, "{r:?}");
    assert_eq!(
        lenient.row("opportunities", &id).await["_transactioncurrencyid_value"],
        Value::Null
    );
}

#[tokio::test]
async fn an_environment_without_the_services_columns_refuses_to_select_them() {
    let mut config = dataverse::Config::default();
    config
        .table_mut("opportunities")
        .expect("opportunities")
        .fields
        .retain(|f| !SERVICES_COLUMNS.contains(&f.name.as_str()));
    let dv = Dv::with(config).await;
    let id = dv.opportunity("Plain").await;
    let r = dv
        .get(&format!(
            "opportunities({id})?$select=name,cosell_solutionarea"
        ))
        .await;
    assert_eq!(r.status, 400, "{r:?}");
    assert!(r.message().contains("cosell_solutionarea"), "{r:?}");
    let r = patch(&dv, &id, json!({"cosell_partnerrole": null})).await;
    assert_eq!(r.status, 400, "even an empty value names the column: {r:?}");
    assert_eq!(
        dv.get(&format!("opportunities({id})?$select=name"))
            .await
            .status,
        200
    );
}
