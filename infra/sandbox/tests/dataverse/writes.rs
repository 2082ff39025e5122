use reqwest::Method;
use serde_json::json;

use crate::common::Dv;

const MISSING: &str = "7b1c9a52-1111-4e0e-9d3a-000000000001";

#[tokio::test]
async fn create_answers_204_with_the_entity_url() {
    let dv = Dv::start().await;
    let r = dv
        .call(
            Method::POST,
            "accounts",
            Some(json!({"name": "Contoso", "address1_country": "NO"})),
        )
        .await;
    assert_eq!(r.status, 204, "{r:?}");
    assert_eq!(r.body, serde_json::Value::Null);
    let url = r.header("OData-EntityId").expect("OData-EntityId");
    assert!(url.starts_with(&dv.api("accounts(")), "{url}");
    let row = dv.row("accounts", &r.entity_id()).await;
    assert_eq!(row["name"], "Contoso");
    assert!(
        row["@odata.etag"]
            .as_str()
            .expect("etag")
            .starts_with("W/\"")
    );
    assert!(row["createdon"].is_string() && row["modifiedon"].is_string());
    assert_eq!(row["accountid"], r.entity_id());
}

#[tokio::test]
async fn return_representation_answers_201_with_the_selected_columns() {
    let dv = Dv::start().await;
    let r = dv
        .call_with(
            Method::POST,
            "accounts?$select=name,address1_city",
            Some(json!({"name": "Fabrikam", "address1_city": "Bergen", "telephone1": "1"})),
            &[("Prefer", "return=representation")],
        )
        .await;
    assert_eq!(r.status, 201, "{r:?}");
    assert!(r.header("OData-EntityId").is_none());
    assert_eq!(
        r.header("Preference-Applied"),
        Some("return=representation")
    );
    assert_eq!(r.body["name"], "Fabrikam");
    assert_eq!(r.body["address1_city"], "Bergen");
    assert!(r.body["@odata.etag"].is_string());
    assert!(r.body["accountid"].is_string(), "the key always comes back");
    assert!(r.body.get("telephone1").is_none(), "not selected: {r:?}");
}

#[tokio::test]
async fn patch_without_if_match_upserts() {
    let dv = Dv::start().await;
    let id = "3f2504e0-4f89-41d3-9a0c-0305e82c3301";
    let r = dv
        .call(
            Method::PATCH,
            &format!("accounts({id})"),
            Some(json!({"name": "Upserted"})),
        )
        .await;
    assert_eq!(r.status, 204, "created by upsert: {r:?}");
    assert_eq!(r.entity_id(), id);
    let first = dv.row("accounts", id).await;
    assert_eq!(first["name"], "Upserted");
    let r = dv
        .call_with(
            Method::PATCH,
            &format!("accounts({id})"),
            Some(json!({"telephone1": "555"})),
            &[("Prefer", "return=representation")],
        )
        .await;
    assert_eq!(r.status, 200, "updated by upsert: {r:?}");
    assert_eq!(r.body["name"], "Upserted", "fields not sent are kept");
    assert_eq!(r.body["telephone1"], "555");
    assert_ne!(r.body["@odata.etag"], first["@odata.etag"]);
}

#[tokio::test]
async fn if_match_star_on_a_missing_row_is_404() {
    let dv = Dv::start().await;
    let r = dv
        .call_with(
            Method::PATCH,
            &format!("accounts({MISSING})"),
            Some(json!({"name": "x"})),
            &[("If-Match", "*")],
        )
        .await;
    assert_eq!(r.status, 404, "{r:?}");
    assert_eq!(
        r.message(),
        format!("account With Id = {MISSING} Does Not Exist")
    );
    assert_eq!(dv.get(&format!("accounts({MISSING})")).await.status, 404);
}

#[tokio::test]
async fn if_none_match_star_creates_only() {
    let dv = Dv::start().await;
    let id = dv.account("Exists").await;
    let r = dv
        .call_with(
            Method::PATCH,
            &format!("accounts({id})"),
            Some(json!({"name": "Overwritten"})),
            &[("If-None-Match", "*")],
        )
        .await;
    assert_eq!(r.status, 412, "{r:?}");
    assert_eq!(
        r.message(),
        "A record with matching key values already exists."
    );
    assert_eq!(dv.row("accounts", &id).await["name"], "Exists");
    let r = dv
        .call_with(
            Method::PATCH,
            &format!("accounts({MISSING})"),
            Some(json!({"name": "New"})),
            &[("If-None-Match", "*")],
        )
        .await;
    assert_eq!(r.status, 204, "creates when missing: {r:?}");
}

#[tokio::test]
async fn a_stale_etag_is_412_with_the_documented_message() {
    let dv = Dv::start().await;
    let id = dv.account("Versioned").await;
    let etag = dv.row("accounts", &id).await["@odata.etag"]
        .as_str()
        .expect("etag")
        .to_string();
    let r = dv
        .call_with(
            Method::PATCH,
            &format!("accounts({id})"),
            Some(json!({"name": "First"})),
            &[("If-Match", &etag)],
        )
        .await;
    assert_eq!(r.status, 204, "current etag: {r:?}");
    let r = dv
        .call_with(
            Method::PATCH,
            &format!("accounts({id})"),
            Some(json!({"name": "Second"})),
            &[("If-Match", &etag)],
        )
        .await;
    assert_eq!(r.status, 412, "{r:?}");
    assert_eq!(
        r.message(),
        "The version of the existing record doesn't match the RowVersion property provided."
    );
    let r = dv
        .call_with(
            Method::DELETE,
            &format!("accounts({id})"),
            None,
            &[("If-Match", &etag)],
        )
        .await;
    assert_eq!(r.status, 412, "stale delete: {r:?}");
    assert_eq!(dv.row("accounts", &id).await["name"], "First");
}

#[tokio::test]
async fn delete_then_the_row_is_gone() {
    let dv = Dv::start().await;
    let id = dv.account("Doomed").await;
    let r = dv
        .call(Method::DELETE, &format!("accounts({id})"), None)
        .await;
    assert_eq!(r.status, 204, "{r:?}");
    assert_eq!(dv.get(&format!("accounts({id})")).await.status, 404);
    let r = dv
        .call(Method::DELETE, &format!("accounts({id})"), None)
        .await;
    assert_eq!(r.status, 404, "{r:?}");
}

#[tokio::test]
async fn get_with_the_current_etag_is_304() {
    let dv = Dv::start().await;
    let id = dv.account("Cached").await;
    let etag = dv.row("accounts", &id).await["@odata.etag"]
        .as_str()
        .expect("etag")
        .to_string();
    let path = format!("accounts({id})?$select=name");
    let r = dv
        .call_with(Method::GET, &path, None, &[("If-None-Match", &etag)])
        .await;
    assert_eq!(r.status, 304, "{r:?}");
    dv.call(
        Method::PATCH,
        &format!("accounts({id})"),
        Some(json!({"name": "Changed"})),
    )
    .await;
    let r = dv
        .call_with(Method::GET, &path, None, &[("If-None-Match", &etag)])
        .await;
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.body["name"], "Changed");
    assert!(r.body.get("telephone1").is_none(), "$select applies");
}

#[tokio::test]
async fn lookups_bind_and_read_back_as_value_properties() {
    let dv = Dv::start().await;
    let account = dv.account("Parent").await;
    let contact = dv
        .create(
            "contacts",
            json!({
                "firstname": "Ann", "lastname": "Lee",
                "parentcustomerid_account@odata.bind": format!("/accounts({account})"),
            }),
        )
        .await;
    let eur = dv.currency("EUR").await;
    let opp = dv
        .create(
            "opportunities",
            json!({
                "name": "Bound",
                "customerid_contact@odata.bind": dv.api(&format!("contacts({contact})")),
                "parentaccountid@odata.bind": format!("accounts({account})"),
                "transactioncurrencyid@odata.bind": format!("/transactioncurrencies({eur})"),
            }),
        )
        .await;
    let r = dv
        .call_with(
            Method::GET,
            &format!("opportunities({opp})"),
            None,
            &[("Prefer", "odata.include-annotations=\"*\"")],
        )
        .await;
    assert_eq!(r.body["_customerid_value"], contact.as_str(), "{r:?}");
    assert_eq!(
        r.body["_customerid_value@Microsoft.Dynamics.CRM.lookuplogicalname"],
        "contact"
    );
    assert_eq!(r.body["_parentaccountid_value"], account.as_str());
    assert_eq!(r.body["_transactioncurrencyid_value"], eur.as_str());
    let c = dv.row("contacts", &contact).await;
    assert_eq!(c["_parentcustomerid_value"], account.as_str());
    assert_eq!(c["fullname"], "Ann Lee");
    let sol = dv
        .create(
            "cosell_solutionlinks",
            json!({
                "cosell_solutionid": "SOL-1",
                "cosell_opportunityid@odata.bind": format!("/opportunities({opp})"),
            }),
        )
        .await;
    let r = dv
        .get(&format!(
            "cosell_solutionlinks?$filter=_cosell_opportunityid_value eq {opp}"
        ))
        .await;
    assert_eq!(
        r.body["value"][0]["cosell_solutionlinkid"],
        sol.as_str(),
        "{r:?}"
    );
    let r = dv
        .call(
            Method::PATCH,
            &format!("opportunities({opp})"),
            Some(json!({"parentaccountid@odata.bind": null})),
        )
        .await;
    assert_eq!(r.status, 204, "a null bind clears: {r:?}");
    assert!(dv.row("opportunities", &opp).await["_parentaccountid_value"].is_null());
}

#[tokio::test]
async fn a_bind_to_a_missing_row_is_400() {
    let dv = Dv::start().await;
    let r = dv
        .call(
            Method::POST,
            "contacts",
            Some(json!({
                "lastname": "Orphan",
                "parentcustomerid_account@odata.bind": format!("/accounts({MISSING})"),
            })),
        )
        .await;
    assert_eq!(r.status, 400, "{r:?}");
    assert!(r.message().contains(MISSING), "{r:?}");
    let account = dv.account("A").await;
    let r = dv
        .call(
            Method::POST,
            "contacts",
            Some(json!({
                "lastname": "Wrong set",
                "parentcustomerid_account@odata.bind": format!("/contacts({account})"),
            })),
        )
        .await;
    assert_eq!(r.status, 400, "bind to the wrong table: {r:?}");
    let r = dv
        .call(
            Method::POST,
            "contacts",
            Some(json!({"lastname": "X", "_parentcustomerid_value": account})),
        )
        .await;
    assert_eq!(r.status, 400, "lookups are not written as values: {r:?}");
    assert!(
        r.message().contains("parentcustomerid_account@odata.bind"),
        "{r:?}"
    );
}

#[tokio::test]
async fn an_unknown_property_is_400_naming_it() {
    let dv = Dv::start().await;
    let r = dv
        .call(
            Method::POST,
            "accounts",
            Some(json!({"name": "X", "new_countrycode": "NO"})),
        )
        .await;
    assert_eq!(r.status, 400, "{r:?}");
    assert!(r.message().contains("'new_countrycode'"), "{r:?}");
    assert!(
        r.message().contains("Microsoft.Dynamics.CRM.account"),
        "{r:?}"
    );
    assert!(
        r.body["error"]["code"]
            .as_str()
            .expect("code")
            .starts_with("0x")
    );
}

#[tokio::test]
async fn missing_required_fields_are_400_naming_them() {
    // No default currency, so `transactioncurrencyid` must be bound like `name` and `customerid`.
    let config = cosell_sandbox::dataverse::Config {
        default_currency: None,
        ..Default::default()
    };
    let dv = Dv::with(config).await;
    let r = dv
        .call(
            Method::POST,
            "opportunities",
            Some(json!({"description": "no name"})),
        )
        .await;
    assert_eq!(r.status, 400, "{r:?}");
    for f in ["name", "customerid", "transactioncurrencyid"] {
        assert!(r.message().contains(f), "{f} in {r:?}");
    }
    let id = dv.opportunity_with_currency().await;
    let r = dv
        .call(
            Method::PATCH,
            &format!("opportunities({id})"),
            Some(json!({"name": null})),
        )
        .await;
    assert_eq!(r.status, 400, "clearing a required field: {r:?}");
    assert!(r.message().contains("name"), "{r:?}");
}

impl Dv {
    async fn opportunity_with_currency(&self) -> String {
        let account = self.account("Cur").await;
        let usd = self.currency("USD").await;
        self.create(
            "opportunities",
            json!({
                "name": "With currency",
                "customerid_account@odata.bind": format!("/accounts({account})"),
                "transactioncurrencyid@odata.bind": format!("/transactioncurrencies({usd})"),
            }),
        )
        .await
    }
}

#[tokio::test]
async fn values_are_checked_against_column_types() {
    let dv = Dv::start().await;
    let r = dv
        .call(
            Method::POST,
            "accounts",
            Some(json!({"name": "X", "address1_postalcode": "123456789012345678901"})),
        )
        .await;
    assert_eq!(r.status, 400, "postal code over 20 characters: {r:?}");
    assert!(r.message().contains("address1_postalcode"), "{r:?}");
    let id = dv.opportunity("Typed").await;
    for (body, what) in [
        (json!({"estimatedvalue": "lots"}), "money as text"),
        (json!({"closeprobability": 150}), "probability over 100"),
        (json!({"estimatedclosedate": "next week"}), "not a date"),
        (
            json!({"cosell_syncwithpartnercenter": "yes"}),
            "not a boolean",
        ),
    ] {
        let r = dv
            .call(Method::PATCH, &format!("opportunities({id})"), Some(body))
            .await;
        assert_eq!(r.status, 400, "{what}: {r:?}");
    }
    let r = dv
        .call(
            Method::PATCH,
            &format!("opportunities({id})"),
            Some(json!({"estimatedvalue": 1234.567, "estimatedclosedate": "2025-03-31"})),
        )
        .await;
    assert_eq!(r.status, 204, "{r:?}");
    let row = dv.row("opportunities", &id).await;
    assert_eq!(row["estimatedvalue"], 1234.57);
    assert_eq!(row["estimatedclosedate"], "2025-03-31");
    assert_eq!(
        row["cosell_syncwithpartnercenter"], false,
        "connector default"
    );
}

#[tokio::test]
async fn alternate_keys_address_and_upsert_rows() {
    let dv = Dv::start().await;
    let r = dv
        .control(
            Method::POST,
            "/_sandbox/dataverse/schema/accounts/keys",
            Some(json!({"name": "accountnumber_key", "columns": ["accountnumber"]})),
        )
        .await;
    assert_eq!(r.status, 201, "{r:?}");
    let r = dv
        .call_with(
            Method::PATCH,
            "accounts(accountnumber='A-1')",
            Some(json!({"name": "Keyed"})),
            &[("Prefer", "return=representation")],
        )
        .await;
    assert_eq!(r.status, 201, "created: {r:?}");
    assert_eq!(r.body["accountnumber"], "A-1");
    let r = dv
        .call_with(
            Method::PATCH,
            "accounts(accountnumber='A-1')",
            Some(json!({"name": "Keyed again", "accountnumber": "ignored"})),
            &[("Prefer", "return=representation")],
        )
        .await;
    assert_eq!(r.status, 200, "updated: {r:?}");
    assert_eq!(
        r.body["accountnumber"], "A-1",
        "key columns are dropped on update"
    );
    let r = dv.get("accounts(accountnumber='A-1')").await;
    assert_eq!(r.body["name"], "Keyed again");
    let r = dv.get("accounts(name='Keyed again')").await;
    assert_eq!(r.status, 400, "not a defined key: {r:?}");
}
