//! The Tooling API (docs/salesforce.md, "Metadata"): custom fields and objects created from
//! their `Metadata`, the opportunity stage value set, tooling queries, refusals.

use reqwest::Method;
use serde_json::{Value, json};

use crate::common::{Env, error_code};

fn checkbox() -> Value {
    json!({"label": "Sync with Partner Center", "type": "Checkbox", "defaultValue": "false"})
}

fn text(length: u64) -> Value {
    json!({"label": "Note", "type": "Text", "length": length})
}

#[tokio::test]
async fn fields_of_each_documented_type_are_created_and_described() {
    let env = Env::bare().await;
    let before = env
        .create("Opportunity", Env::opportunity("before", json!({})))
        .await;
    let fields = [
        ("Sync_with_Partner_Center__c", checkbox()),
        (
            "Referral_Identifier__c",
            json!({"label": "Referral Identifier", "type": "Text", "length": 100,
                   "externalId": true, "unique": true, "caseSensitive": false}),
        ),
        (
            "Audit__c",
            json!({"label": "Audit", "type": "LongTextArea", "length": 100000, "visibleLines": 10}),
        ),
        (
            "Referral_Link__c",
            json!({"label": "Referral Link", "type": "Url"}),
        ),
        (
            "Referral_Visibility__c",
            json!({"label": "Referral Visibility", "type": "Picklist", "valueSet": {
                "restricted": true,
                "valueSetDefinition": {"sorted": false, "value": [
                    {"fullName": "Private", "label": "Private", "default": true},
                    {"fullName": "Visible", "label": "Visible", "default": false},
                ]},
            }}),
        ),
        (
            "Partner_Account__c",
            json!({"label": "Partner Account", "type": "Lookup", "referenceTo": "Account",
                   "relationshipName": "Partner_Opportunities", "relationshipLabel": "Partner Opportunities",
                   "deleteConstraint": "SetNull"}),
        ),
    ];
    let mut grants = Vec::new();
    let mut names = Vec::new();
    for (name, metadata) in &fields {
        let id = env
            .tooling_ok(
                "CustomField",
                &format!("Opportunity.{name}"),
                metadata.clone(),
            )
            .await;
        assert!(id.starts_with("00N") && id.len() == 18, "{id}");
        names.push(format!("Opportunity.{name}"));
    }
    for n in &names {
        grants.push((n.as_str(), true));
    }
    env.grant("Cosell_Connector", &grants).await;

    let e = &env;
    let f = |name: &'static str| async move {
        e.described_field("Opportunity", name)
            .await
            .unwrap_or_else(|| panic!("{name} is described once granted"))
    };
    let sync = f("Sync_with_Partner_Center__c").await;
    assert_eq!(sync["type"], "boolean");
    assert_eq!(sync["label"], "Sync with Partner Center");
    let referral = f("Referral_Identifier__c").await;
    assert_eq!(
        (
            &referral["type"],
            &referral["length"],
            &referral["externalId"],
            &referral["unique"]
        ),
        (&json!("string"), &json!(100), &json!(true), &json!(true))
    );
    let audit = f("Audit__c").await;
    assert_eq!(
        (&audit["type"], &audit["length"]),
        (&json!("textarea"), &json!(100000))
    );
    assert_eq!(f("Referral_Link__c").await["type"], "url");
    let visibility = f("Referral_Visibility__c").await;
    assert_eq!(visibility["type"], "picklist");
    assert_eq!(visibility["restrictedPicklist"], true);
    let values: Vec<&str> = visibility["picklistValues"]
        .as_array()
        .expect("values")
        .iter()
        .filter_map(|v| v["value"].as_str())
        .collect();
    assert_eq!(values, ["Private", "Visible"]);
    let lookup = f("Partner_Account__c").await;
    assert_eq!(
        (
            &lookup["type"],
            &lookup["referenceTo"],
            &lookup["relationshipName"]
        ),
        (
            &json!("reference"),
            &json!(["Account"]),
            &json!("Partner_Account__r")
        )
    );

    // A record from before the field has its default; new ones take the types' rules.
    let old = env.get("Opportunity", &before).await;
    assert_eq!(old["Sync_with_Partner_Center__c"], false);
    let (status, code, _) = error_code(
        env.api(
            Method::POST,
            "/sobjects/Opportunity/",
            Some(Env::opportunity(
                "x",
                json!({"Referral_Visibility__c": "Public"}),
            )),
        )
        .await,
    )
    .await;
    assert_eq!(
        (status, code.as_str()),
        (400, "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST")
    );
    let id = env
        .create(
            "Opportunity",
            Env::opportunity("after", json!({"Referral_Identifier__c": "R-1"})),
        )
        .await;
    assert_eq!(
        env.get("Opportunity", &id).await["Referral_Visibility__c"],
        "Private"
    );
    // The External ID is an upsert key at once.
    let r = env
        .api(
            Method::PATCH,
            "/sobjects/Opportunity/Referral_Identifier__c/R-1",
            Some(json!({"Name": "renamed"})),
        )
        .await;
    assert_eq!(r.status(), 200);
    assert_eq!(env.get("Opportunity", &id).await["Name"], "renamed");
    // Unique: a second record with the same referral id is refused.
    let (status, code, _) = error_code(
        env.api(
            Method::POST,
            "/sobjects/Opportunity/",
            Some(Env::opportunity(
                "dup",
                json!({"Referral_Identifier__c": "r-1"}),
            )),
        )
        .await,
    )
    .await;
    assert_eq!((status, code.as_str()), (400, "DUPLICATE_VALUE"));
}

#[tokio::test]
async fn refusals_name_the_problem_and_write_nothing() {
    let env = Env::start().await;
    let schema_before: Value = env
        .control(Method::GET, "/_sandbox/salesforce/schema", None)
        .await
        .json()
        .await
        .expect("json");
    let cases = [
        // A name the org already has (a seeded connector field).
        (
            "Opportunity.Referral_Identifier__c",
            text(100),
            400,
            "DUPLICATE_DEVELOPER_NAME",
        ),
        (
            "Opportunity.referral_identifier__C",
            text(100),
            400,
            "DUPLICATE_DEVELOPER_NAME",
        ),
        (
            "Opportunity.Note",
            text(100),
            400,
            "FIELD_INTEGRITY_EXCEPTION",
        ),
        (
            "Opportunity.ns__Note__c",
            text(100),
            400,
            "FIELD_INTEGRITY_EXCEPTION",
        ),
        ("Note__c", text(100), 400, "FIELD_INTEGRITY_EXCEPTION"),
        ("Nothing__c.Note__c", text(100), 400, "INVALID_TYPE"),
        (
            "PermissionSet.Note__c",
            text(100),
            400,
            "FIELD_INTEGRITY_EXCEPTION",
        ),
        (
            "Opportunity.Note__c",
            text(0),
            400,
            "FIELD_INTEGRITY_EXCEPTION",
        ),
        (
            "Opportunity.Note__c",
            text(256),
            400,
            "FIELD_INTEGRITY_EXCEPTION",
        ),
        (
            "Opportunity.Note__c",
            json!({"label": "Note", "type": "Text"}),
            400,
            "REQUIRED_FIELD_MISSING",
        ),
        (
            "Opportunity.Note__c",
            json!({"label": "Note", "type": "LongTextArea", "length": 131073, "visibleLines": 3}),
            400,
            "FIELD_INTEGRITY_EXCEPTION",
        ),
        (
            "Opportunity.Note__c",
            json!({"label": "Note", "type": "LongTextArea", "length": 1000}),
            400,
            "REQUIRED_FIELD_MISSING",
        ),
        (
            "Opportunity.Note__c",
            json!({"label": "Note", "type": "Formula"}),
            400,
            "FIELD_INTEGRITY_EXCEPTION",
        ),
        (
            "Opportunity.Note__c",
            json!({"type": "Text", "length": 10}),
            400,
            "REQUIRED_FIELD_MISSING",
        ),
        (
            "Opportunity.Note__c",
            json!({"label": "Note", "type": "Checkbox"}),
            400,
            "REQUIRED_FIELD_MISSING",
        ),
        (
            "Opportunity.Note__c",
            json!({"label": "Note", "type": "Lookup", "referenceTo": "Nothing__c", "relationshipName": "Notes"}),
            400,
            "FIELD_INTEGRITY_EXCEPTION",
        ),
        (
            "Opportunity.Note__c",
            json!({"label": "Note", "type": "Picklist", "valueSet": {"valueSetDefinition": {"value": []}}}),
            400,
            "REQUIRED_FIELD_MISSING",
        ),
        (
            // Users cannot be masters.
            "Account.Owner_Link__c",
            json!({"label": "Owner", "type": "MasterDetail", "referenceTo": "User", "relationshipName": "Accounts"}),
            400,
            "FIELD_INTEGRITY_EXCEPTION",
        ),
    ];
    for (full_name, metadata, status, expected) in cases {
        let (s, code, body) = error_code(
            env.tooling_create("CustomField", full_name, metadata.clone())
                .await,
        )
        .await;
        assert_eq!(
            (s, code.as_str()),
            (status, expected),
            "{full_name} {metadata}: {body}"
        );
        assert!(
            body[0]["message"].as_str().is_some_and(|m| !m.is_empty()),
            "{body}"
        );
    }
    // Malformed bodies.
    let r = env
        .api(
            Method::POST,
            "/tooling/sobjects/CustomField",
            Some(json!({"Metadata": text(10)})),
        )
        .await;
    let (s, code, _) = error_code(r).await;
    assert_eq!((s, code.as_str()), (400, "REQUIRED_FIELD_MISSING"));
    let r = env
        .api(
            Method::POST,
            "/tooling/sobjects/CustomField",
            Some(json!({"FullName": "Opportunity.A__c", "Metadata": {"label": "A", "type": "Text", "length": "ten"}})),
        )
        .await;
    let (s, code, _) = error_code(r).await;
    assert_eq!((s, code.as_str()), (400, "JSON_PARSER_ERROR"));
    // A duplicate object, then one without its settings.
    let object = |label: Value| {
        json!({"label": label, "pluralLabel": "Things", "nameField": {"label": "Name", "type": "Text"},
               "deploymentStatus": "Deployed", "sharingModel": "ReadWrite"})
    };
    let (s, code, _) = error_code(
        env.tooling_create(
            "CustomObject",
            "Microsoft_Solution__c",
            object(json!("Solution")),
        )
        .await,
    )
    .await;
    assert_eq!((s, code.as_str()), (400, "DUPLICATE_DEVELOPER_NAME"));
    let (s, code, _) = error_code(
        env.tooling_create("CustomObject", "Thing", object(json!("Thing")))
            .await,
    )
    .await;
    assert_eq!((s, code.as_str()), (400, "FIELD_INTEGRITY_EXCEPTION"));
    let (s, code, _) = error_code(
        env.tooling_create("CustomObject", "Thing__c", object(Value::Null))
            .await,
    )
    .await;
    assert_eq!((s, code.as_str()), (400, "REQUIRED_FIELD_MISSING"));
    let mut auto = object(json!("Thing"));
    auto["nameField"]["type"] = json!("AutoNumber");
    let (s, code, _) = error_code(env.tooling_create("CustomObject", "Thing__c", auto).await).await;
    assert_eq!((s, code.as_str()), (400, "FIELD_INTEGRITY_EXCEPTION"));
    // An unknown tooling object, and a method the route does not take.
    let r = env
        .api(Method::POST, "/tooling/sobjects/ApexClass", Some(json!({})))
        .await;
    assert_eq!(r.status(), 404);
    let r = env
        .api(Method::GET, "/tooling/sobjects/CustomField", None)
        .await;
    assert_eq!(r.status(), 405);

    let schema_after: Value = env
        .control(Method::GET, "/_sandbox/salesforce/schema", None)
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(schema_before, schema_after, "a refusal changes nothing");

    // A field hidden from the caller is still a name taken: the second create is refused.
    env.tooling_ok("CustomField", "Opportunity.Note__c", text(80))
        .await;
    let (s, code, _) = error_code(
        env.tooling_create("CustomField", "Opportunity.Note__c", text(80))
            .await,
    )
    .await;
    assert_eq!((s, code.as_str()), (400, "DUPLICATE_DEVELOPER_NAME"));
}

#[tokio::test]
async fn a_custom_object_with_a_master_detail_works_like_the_seeded_link_object() {
    let env = Env::bare().await;
    let object_id = env
        .tooling_ok(
            "CustomObject",
            "Microsoft_Solution__c",
            json!({"label": "Microsoft Solution", "pluralLabel": "Microsoft Solutions",
                   "nameField": {"label": "Solution Name", "type": "Text"},
                   "deploymentStatus": "Deployed", "sharingModel": "ReadWrite"}),
        )
        .await;
    assert!(object_id.starts_with("01I"), "{object_id}");
    env.tooling_ok(
        "CustomField",
        "Microsoft_Solution__c.Solution_Id__c",
        json!({"label": "Solution Id", "type": "Text", "length": 100}),
    )
    .await;
    env.tooling_ok(
        "CustomField",
        "Microsoft_Solution__c.Opportunity__c",
        json!({"label": "Opportunity", "type": "MasterDetail", "referenceTo": "Opportunity",
               "relationshipName": "Microsoft_Solutions", "relationshipLabel": "Microsoft Solutions"}),
    )
    .await;

    // The standard fields; a detail has no owner of its own; the master-detail is required
    // and visible without a grant, the text field is not.
    let d: Value = env
        .api(
            Method::GET,
            "/sobjects/Microsoft_Solution__c/describe",
            None,
        )
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(
        (&d["label"], &d["custom"], &d["createable"]),
        (&json!("Microsoft Solution"), &json!(true), &json!(true))
    );
    let names: Vec<&str> = d["fields"]
        .as_array()
        .expect("fields")
        .iter()
        .filter_map(|f| f["name"].as_str())
        .collect();
    for standard in [
        "Id",
        "Name",
        "CreatedDate",
        "CreatedById",
        "LastModifiedDate",
        "LastModifiedById",
        "SystemModstamp",
        "IsDeleted",
        "Opportunity__c",
    ] {
        assert!(names.contains(&standard), "{standard} in {names:?}");
    }
    assert!(!names.contains(&"OwnerId"), "{names:?}");
    assert!(!names.contains(&"Solution_Id__c"), "{names:?}");
    let md = env
        .described_field("Microsoft_Solution__c", "Opportunity__c")
        .await
        .expect("master-detail");
    assert_eq!(
        (
            &md["type"],
            &md["nillable"],
            &md["createable"],
            &md["referenceTo"]
        ),
        (
            &json!("reference"),
            &json!(false),
            &json!(true),
            &json!(["Opportunity"])
        )
    );
    // A required field cannot get FieldPermissions.
    let set = env
        .grant(
            "Cosell_Connector",
            &[("Microsoft_Solution__c.Solution_Id__c", true)],
        )
        .await;
    let (s, code, _) = error_code(
        env.api(
            Method::POST,
            "/sobjects/FieldPermissions/",
            Some(
                json!({"ParentId": set, "SobjectType": "Microsoft_Solution__c",
                        "Field": "Microsoft_Solution__c.Opportunity__c",
                        "PermissionsRead": true, "PermissionsEdit": true}),
            ),
        )
        .await,
    )
    .await;
    assert_eq!(
        (s, code.as_str()),
        (400, "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST")
    );

    let opp = env
        .create("Opportunity", Env::opportunity("Contoso", json!({})))
        .await;
    let (s, code, body) = error_code(
        env.api(
            Method::POST,
            "/sobjects/Microsoft_Solution__c/",
            Some(json!({"Solution_Id__c": "SOL-1"})),
        )
        .await,
    )
    .await;
    assert_eq!(
        (s, code.as_str()),
        (400, "REQUIRED_FIELD_MISSING"),
        "{body}"
    );
    let link = env
        .create(
            "Microsoft_Solution__c",
            json!({"Opportunity__c": opp, "Solution_Id__c": "SOL-1"}),
        )
        .await;
    let rec = env.get("Microsoft_Solution__c", &link).await;
    // Without a Name the record is named after its id.
    assert_eq!(rec["Name"], json!(link));
    assert_eq!(rec["IsDeleted"], false);

    // Parent fields through Opportunity__r, children under Microsoft_Solutions__r.
    let r = env
        .query_ok("SELECT Solution_Id__c, Opportunity__r.Name FROM Microsoft_Solution__c")
        .await;
    assert_eq!(r["records"][0]["Opportunity__r"]["Name"], "Contoso");
    let r = env
        .query_ok(&format!(
            "SELECT Name, (SELECT Solution_Id__c FROM Microsoft_Solutions__r) FROM Opportunity WHERE Id = '{opp}'"
        ))
        .await;
    assert_eq!(
        r["records"][0]["Microsoft_Solutions__r"]["records"][0]["Solution_Id__c"],
        "SOL-1"
    );
    // Deleting the master deletes its details.
    let r = env
        .api(
            Method::DELETE,
            &format!("/sobjects/Opportunity/{opp}"),
            None,
        )
        .await;
    assert_eq!(r.status(), 204);
    let r = env
        .query_ok("SELECT COUNT() FROM Microsoft_Solution__c")
        .await;
    assert_eq!(r["totalSize"], 0);

    // A master-detail cannot be added to an object that has records.
    let other = env
        .create("Opportunity", Env::opportunity("Fabrikam", json!({})))
        .await;
    env.create(
        "Microsoft_Solution__c",
        json!({"Opportunity__c": other, "Name": "kept"}),
    )
    .await;
    let (s, code, _) = error_code(
        env.tooling_create(
            "CustomField",
            "Microsoft_Solution__c.Second_Master__c",
            json!({"label": "Second", "type": "MasterDetail", "referenceTo": "Account", "relationshipName": "Solutions"}),
        )
        .await,
    )
    .await;
    assert_eq!((s, code.as_str()), (400, "FIELD_INTEGRITY_EXCEPTION"));
    // The child relationship name is taken on Opportunity.
    let (s, code, _) = error_code(
        env.tooling_create(
            "CustomField",
            "Microsoft_Solution__c.Other_Opportunity__c",
            json!({"label": "Other", "type": "Lookup", "referenceTo": "Opportunity", "relationshipName": "Microsoft_Solutions"}),
        )
        .await,
    )
    .await;
    assert_eq!((s, code.as_str()), (400, "DUPLICATE_DEVELOPER_NAME"));

    // The catalog: an External ID on a new object makes upserts work.
    env.tooling_ok(
        "CustomObject",
        "Microsoft_Solution_Catalog__c",
        json!({"label": "Microsoft Solution Catalog", "pluralLabel": "Microsoft Solution Catalogs",
               "nameField": {"label": "Name", "type": "Text"}, "deploymentStatus": "Deployed", "sharingModel": "ReadWrite"}),
    )
    .await;
    env.tooling_ok(
        "CustomField",
        "Microsoft_Solution_Catalog__c.Solution_Id__c",
        json!({"label": "Solution Id", "type": "Text", "length": 100, "externalId": true, "unique": true}),
    )
    .await;
    env.grant(
        "Cosell_Catalog",
        &[("Microsoft_Solution_Catalog__c.Solution_Id__c", true)],
    )
    .await;
    let r = env
        .api(
            Method::PATCH,
            "/sobjects/Microsoft_Solution_Catalog__c/Solution_Id__c/SOL-9",
            Some(json!({"Name": "Contoso Migrate"})),
        )
        .await;
    assert_eq!(r.status(), 201);
    let r = env
        .query_ok("SELECT Name, Solution_Id__c FROM Microsoft_Solution_Catalog__c")
        .await;
    assert_eq!(r["records"][0]["Solution_Id__c"], "SOL-9");

    // The Tooling API lists the new object and its fields.
    let r: Value = env
        .tooling_query(
            "SELECT Id, DeveloperName, TableEnumOrId FROM CustomField WHERE TableEnumOrId = '",
        )
        .await
        .json()
        .await
        .expect("json");
    assert!(r[0]["errorCode"].is_string(), "an unfinished literal: {r}");
    let r: Value = env
        .tooling_query(&format!(
            "SELECT Id, DeveloperName, TableEnumOrId FROM CustomField WHERE TableEnumOrId = '{object_id}' ORDER BY DeveloperName"
        ))
        .await
        .json()
        .await
        .expect("json");
    let developer_names: Vec<&str> = r["records"]
        .as_array()
        .expect("records")
        .iter()
        .filter_map(|f| f["DeveloperName"].as_str())
        .collect();
    assert_eq!(developer_names, ["Opportunity", "Solution_Id"], "{r}");
    let r: Value = env
        .tooling_query(
            "SELECT Id, DeveloperName FROM CustomObject WHERE DeveloperName = 'Microsoft_Solution'",
        )
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(r["records"][0]["Id"], json!(object_id), "{r}");
}

#[tokio::test]
async fn the_stage_list_is_read_and_replaced_as_the_opportunity_stage_value_set() {
    let env = Env::bare().await;
    let q = "SELECT Id, Metadata FROM StandardValueSet WHERE MasterLabel = 'OpportunityStage'";
    let resp = env.tooling_query(q).await;
    assert_eq!(resp.status(), 200);
    let r: Value = resp.json().await.expect("json");
    assert_eq!(
        (&r["totalSize"], &r["done"], &r["size"]),
        (&json!(1), &json!(true), &json!(1))
    );
    assert_eq!(r["entityTypeName"], "StandardValueSet");
    let record = &r["records"][0];
    let id = record["Id"].as_str().expect("id").to_string();
    assert_eq!(
        record["attributes"]["url"],
        format!("/services/data/v62.0/tooling/sobjects/StandardValueSet/{id}")
    );
    let mut metadata = record["Metadata"].clone();
    let values = metadata["standardValue"].as_array().expect("standardValue");
    let won = values
        .iter()
        .find(|v| v["valueName"] == "Closed Won")
        .expect("Closed Won");
    assert_eq!(
        (
            &won["closed"],
            &won["won"],
            &won["probability"],
            &won["forecastCategory"]
        ),
        (&json!(true), &json!(true), &json!(100), &json!("Closed"))
    );
    assert!(
        values.iter().all(|v| v["valueName"] != "On Hold"),
        "bare: no hold stage"
    );
    let (s, code, _) = error_code(
        env.api(
            Method::POST,
            "/sobjects/Opportunity/",
            Some(Env::opportunity("held", json!({"StageName": "On Hold"}))),
        )
        .await,
    )
    .await;
    assert_eq!(
        (s, code.as_str()),
        (400, "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST")
    );

    // The product's PATCH: the whole Metadata, the new value appended.
    if let Some(list) = metadata["standardValue"].as_array_mut() {
        list.push(
            json!({"label": "On Hold", "valueName": "On Hold", "closed": false, "won": false,
                         "probability": 10, "forecastCategory": "Pipeline", "default": false}),
        );
    }
    let path = format!("/tooling/sobjects/StandardValueSet/{id}");
    let r = env
        .api(Method::PATCH, &path, Some(json!({"Metadata": metadata})))
        .await;
    assert_eq!(r.status(), 204);
    let stage = env
        .described_field("Opportunity", "StageName")
        .await
        .expect("StageName");
    assert!(
        stage["picklistValues"]
            .as_array()
            .expect("values")
            .iter()
            .any(|v| v["value"] == "On Hold"),
        "{stage}"
    );
    let held = env
        .create(
            "Opportunity",
            Env::opportunity("held", json!({"StageName": "On Hold"})),
        )
        .await;
    let rec = env.get("Opportunity", &held).await;
    assert_eq!(
        (&rec["IsClosed"], &rec["Probability"]),
        (&json!(false), &json!(10.0))
    );
    let r: Value = env.tooling_query(q).await.json().await.expect("json");
    assert_eq!(
        r["records"][0]["Metadata"]["standardValue"]
            .as_array()
            .and_then(|v| v.last())
            .map(|v| v["valueName"].clone()),
        Some(json!("On Hold"))
    );
    let stages: Value = env
        .control(Method::GET, "/_sandbox/salesforce/stages", None)
        .await
        .json()
        .await
        .expect("json");
    assert!(
        stages
            .as_array()
            .expect("stages")
            .iter()
            .any(|s| s["name"] == "On Hold")
    );
    let r = env
        .query_ok("SELECT ApiName FROM OpportunityStage WHERE ApiName = 'On Hold'")
        .await;
    assert_eq!(r["totalSize"], 1);

    // Refusals: a won stage that is not closed, a missing Metadata, an unknown set.
    let bad = json!({"Metadata": {"standardValue": [{"valueName": "Odd", "closed": false, "won": true}]}});
    let (s, code, _) = error_code(env.api(Method::PATCH, &path, Some(bad)).await).await;
    assert_eq!((s, code.as_str()), (400, "FIELD_INTEGRITY_EXCEPTION"));
    let (s, code, _) = error_code(env.api(Method::PATCH, &path, Some(json!({}))).await).await;
    assert_eq!((s, code.as_str()), (400, "REQUIRED_FIELD_MISSING"));
    let other = format!(
        "/tooling/sobjects/StandardValueSet/{}",
        id.replacen("00001", "00009", 1)
    );
    let r = env
        .api(Method::PATCH, &other, Some(json!({"Metadata": metadata})))
        .await;
    assert_eq!(r.status(), 404);
    // The set reads by id too.
    let one: Value = env
        .api(Method::GET, &path, None)
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(one["MasterLabel"], "OpportunityStage");
}

#[tokio::test]
async fn tooling_queries_refuse_what_they_cannot_answer() {
    let env = Env::start().await;
    let (s, code, _) = error_code(env.tooling_query("SELECT Id FROM Opportunity").await).await;
    assert_eq!((s, code.as_str()), (400, "INVALID_TYPE"));
    let (s, code, _) = error_code(env.tooling_query("SELECT FROM").await).await;
    assert_eq!((s, code.as_str()), (400, "MALFORMED_QUERY"));
    // Metadata is read one row at a time; the seeded connector fields are custom fields.
    let (s, code, _) = error_code(
        env.tooling_query(
            "SELECT Id, Metadata FROM CustomField WHERE TableEnumOrId = 'Opportunity'",
        )
        .await,
    )
    .await;
    assert_eq!((s, code.as_str()), (400, "MALFORMED_QUERY"));
    let r: Value = env
        .tooling_query(
            "SELECT Id, Metadata FROM CustomField WHERE TableEnumOrId = 'Opportunity' AND DeveloperName = 'Referral_Identifier'",
        )
        .await
        .json()
        .await
        .expect("json");
    let m = &r["records"][0]["Metadata"];
    assert_eq!(
        (&m["type"], &m["length"], &m["externalId"]),
        (&json!("Text"), &json!(100), &json!(true)),
        "{r}"
    );
    let r: Value = env
        .tooling_query("SELECT COUNT() FROM StandardValueSet WHERE MasterLabel = 'LeadSource'")
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(r["totalSize"], 0);
    // The data API does not know the tooling objects.
    let (s, code, _) = error_code(env.query("SELECT Id FROM CustomField").await).await;
    assert_eq!((s, code.as_str()), (400, "INVALID_TYPE"));
}

#[tokio::test]
async fn metadata_writes_are_counted_under_their_routes() {
    let env = Env::bare().await;
    // Reading what exists writes nothing.
    env.api(Method::GET, "/sobjects/Opportunity/describe", None)
        .await;
    env.tooling_query(
        "SELECT Id, Metadata FROM StandardValueSet WHERE MasterLabel = 'OpportunityStage'",
    )
    .await;
    env.query_ok("SELECT Id FROM PermissionSet WHERE Name = 'Cosell_Connector'")
        .await;
    let stats = env.stats().await;
    let writes: Vec<&String> = stats
        .as_object()
        .expect("stats")
        .keys()
        .filter(|k| {
            ["POST ", "PATCH ", "PUT ", "DELETE "]
                .iter()
                .any(|m| k.starts_with(m))
                && k.contains(" /services/data/")
        })
        .collect();
    assert!(writes.is_empty(), "{writes:?}");

    env.tooling_ok(
        "CustomField",
        "Opportunity.Audit__c",
        json!({"label": "Audit", "type": "LongTextArea", "length": 100000, "visibleLines": 10}),
    )
    .await;
    env.tooling_ok(
        "CustomObject",
        "Thing__c",
        json!({"label": "Thing", "pluralLabel": "Things", "nameField": {"label": "Name", "type": "Text"}}),
    )
    .await;
    let r: Value = env
        .tooling_query(
            "SELECT Id, Metadata FROM StandardValueSet WHERE MasterLabel = 'OpportunityStage'",
        )
        .await
        .json()
        .await
        .expect("json");
    let id = r["records"][0]["Id"].as_str().expect("id").to_string();
    let metadata = r["records"][0]["Metadata"].clone();
    env.api(
        Method::PATCH,
        &format!("/tooling/sobjects/StandardValueSet/{id}"),
        Some(json!({"Metadata": metadata})),
    )
    .await;
    env.grant("Cosell_Connector", &[("Opportunity.Audit__c", true)])
        .await;
    let stats = env.stats().await;
    let count = |k: &str| stats[k].as_u64().unwrap_or(0);
    assert_eq!(
        count("POST /services/data/v{version}/tooling/sobjects/CustomField"),
        1,
        "{stats}"
    );
    assert_eq!(
        count("POST /services/data/v{version}/tooling/sobjects/CustomObject"),
        1,
        "{stats}"
    );
    assert_eq!(
        count("PATCH /services/data/v{version}/tooling/sobjects/StandardValueSet/{id}"),
        1,
        "{stats}"
    );
    assert_eq!(
        count("GET /services/data/v{version}/tooling/query"),
        2,
        "{stats}"
    );
    for object in [
        "PermissionSet",
        "FieldPermissions",
        "PermissionSetAssignment",
    ] {
        assert_eq!(
            count(&format!(
                "POST /services/data/v{{version}}/sobjects/{object}"
            )),
            1,
            "{object}: {stats}"
        );
    }
}
