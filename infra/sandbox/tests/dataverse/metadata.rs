//! The Web API's metadata (docs/dataverse.md, "Metadata"): definitions read and created as
//! `cosell crm setup` and `cosell doctor` do, the refusals, the bare org, and the product's
//! own schema client run against it.

use std::collections::HashMap;
use std::time::Duration;

use cosell_sandbox::config::{CLIENT_ID, CLIENT_SECRET};
use cosell_shared::crm::dataverse::{DataverseConfig, DataverseSchema};
use cosell_shared::crm::schema::{CrmSchema, ItemKind, ItemState, SchemaItem};
use reqwest::Method;
use serde_json::{Value, json};

use crate::common::{Dv, Reply};

/// The sandbox's refusal codes (docs/sandbox.md, "Dataverse metadata and the bare org").
const NAME_IN_USE: &str = "0x8004F001";
const SCHEMA_NAME: &str = "0x8004F002";
const PUBLISHER_PREFIX: &str = "0x8004F003";
const LENGTH: &str = "0x8004F004";
const SOLUTION: &str = "0x8004F005";
const IMMUTABLE: &str = "0x8004F007";
const NOT_FOUND: &str = "0x80040217";
const INVALID: &str = "0x80040203";

/// The connector's solution, seeded in the default org.
const IN_SOLUTION: &[(&str, &str)] = &[("MSCRM.SolutionUniqueName", "CoSellConnector")];

fn label(text: &str) -> Value {
    json!({
        "@odata.type": "Microsoft.Dynamics.CRM.Label",
        "LocalizedLabels": [{
            "@odata.type": "Microsoft.Dynamics.CRM.LocalizedLabel",
            "Label": text,
            "LanguageCode": 1033,
        }],
    })
}

fn string_column(schema: &str, max_length: i64) -> Value {
    json!({
        "@odata.type": "Microsoft.Dynamics.CRM.StringAttributeMetadata",
        "SchemaName": schema,
        "DisplayName": label(schema),
        "RequiredLevel": {"Value": "None"},
        "MaxLength": max_length,
        "FormatName": {"Value": "Text"},
    })
}

fn memo_column(schema: &str, max_length: i64) -> Value {
    json!({
        "@odata.type": "Microsoft.Dynamics.CRM.MemoAttributeMetadata",
        "SchemaName": schema,
        "DisplayName": label(schema),
        "RequiredLevel": {"Value": "None"},
        "MaxLength": max_length,
        "Format": "TextArea",
    })
}

fn boolean_column(schema: &str) -> Value {
    json!({
        "@odata.type": "Microsoft.Dynamics.CRM.BooleanAttributeMetadata",
        "SchemaName": schema,
        "DisplayName": label(schema),
        "RequiredLevel": {"Value": "None"},
        "DefaultValue": false,
        "OptionSet": {
            "TrueOption": {"Value": 1, "Label": label("Yes")},
            "FalseOption": {"Value": 0, "Label": label("No")},
        },
    })
}

/// A local choice; an option without a value is numbered by the publisher's prefix.
fn picklist_column(schema: &str, options: &[(Option<i64>, &str)]) -> Value {
    let options: Vec<Value> = options
        .iter()
        .map(|(value, text)| match value {
            Some(v) => json!({"Value": v, "Label": label(text)}),
            None => json!({"Label": label(text)}),
        })
        .collect();
    json!({
        "@odata.type": "Microsoft.Dynamics.CRM.PicklistAttributeMetadata",
        "SchemaName": schema,
        "DisplayName": label(schema),
        "RequiredLevel": {"Value": "None"},
        "OptionSet": {
            "@odata.type": "Microsoft.Dynamics.CRM.OptionSetMetadata",
            "IsGlobal": false,
            "OptionSetType": "Picklist",
            "Options": options,
        },
    })
}

/// A table as the product creates one (docs/dataverse.md, "Metadata").
fn table_body(schema: &str, entity_set: Option<&str>, primary_name: &str) -> Value {
    let mut primary = string_column(primary_name, 200);
    primary["IsPrimaryName"] = json!(true);
    let mut body = json!({
        "@odata.type": "Microsoft.Dynamics.CRM.EntityMetadata",
        "SchemaName": schema,
        "DisplayName": label("Project"),
        "DisplayCollectionName": label("Projects"),
        "OwnershipType": "OrganizationOwned",
        "IsActivity": false,
        "HasActivities": false,
        "HasNotes": false,
        "Attributes": [primary],
    });
    if let Some(set) = entity_set {
        body["EntitySetName"] = json!(set);
    }
    body
}

fn relationship_body(schema: &str, referenced: &str, referencing: &str, lookup: &str) -> Value {
    json!({
        "@odata.type": "Microsoft.Dynamics.CRM.OneToManyRelationshipMetadata",
        "SchemaName": schema,
        "ReferencedEntity": referenced,
        "ReferencedAttribute": format!("{referenced}id"),
        "ReferencingEntity": referencing,
        "CascadeConfiguration": {"Assign": "NoCascade", "Delete": "Cascade"},
        "Lookup": {
            "@odata.type": "Microsoft.Dynamics.CRM.LookupAttributeMetadata",
            "AttributeType": "Lookup",
            "AttributeTypeName": {"Value": "LookupType"},
            "SchemaName": lookup,
            "DisplayName": label(referenced),
            "RequiredLevel": {"Value": "None"},
        },
    })
}

/// A metadata write into the connector's solution.
async fn write(dv: &Dv, method: Method, path: &str, body: Value) -> Reply {
    dv.call_with(method, path, Some(body), IN_SOLUTION).await
}

/// A metadata create that must succeed: 204 with the new definition's URL.
async fn create(dv: &Dv, path: &str, body: Value) -> Reply {
    let r = write(dv, Method::POST, path, body).await;
    assert_eq!(r.status, 204, "POST {path}: {r:?}");
    assert!(
        r.header("OData-EntityId")
            .is_some_and(|u| u.starts_with(&dv.api(""))),
        "{r:?}"
    );
    r
}

/// A Dataverse-shaped error: `{"error":{"code","message"}}`.
fn refused(r: &Reply, status: u16, code: &str) -> String {
    assert_eq!(r.status, status, "{r:?}");
    assert_eq!(r.body["error"]["code"], code, "{r:?}");
    assert!(!r.message().is_empty(), "{r:?}");
    r.message().to_string()
}

/// `AttributeType` of every column of a table, by logical name.
async fn column_types(dv: &Dv, table: &str) -> HashMap<String, String> {
    let r = dv
        .get(&format!(
            "EntityDefinitions(LogicalName='{table}')/Attributes?$select=LogicalName,AttributeType,IsValidForCreate,IsValidForUpdate"
        ))
        .await;
    assert_eq!(r.status, 200, "{r:?}");
    r.body["value"]
        .as_array()
        .expect("value")
        .iter()
        .map(|a| {
            (
                a["LogicalName"].as_str().expect("LogicalName").to_string(),
                a["AttributeType"]
                    .as_str()
                    .expect("AttributeType")
                    .to_string(),
            )
        })
        .collect()
}

async fn options(dv: &Dv, table: &str, column: &str, cast: &str) -> Vec<Value> {
    let r = dv
        .get(&format!(
            "EntityDefinitions(LogicalName='{table}')/Attributes(LogicalName='{column}')/Microsoft.Dynamics.CRM.{cast}?$select=LogicalName&$expand=OptionSet"
        ))
        .await;
    assert_eq!(r.status, 200, "{r:?}");
    r.body["OptionSet"]["Options"]
        .as_array()
        .unwrap_or_else(|| panic!("options in {r:?}"))
        .clone()
}

fn option_label(o: &Value) -> &str {
    o["Label"]["UserLocalizedLabel"]["Label"]
        .as_str()
        .unwrap_or_default()
}

async fn stats(dv: &Dv) -> HashMap<String, u64> {
    let r = dv.control(Method::GET, "/_sandbox/stats", None).await;
    assert_eq!(r.status, 200, "{r:?}");
    serde_json::from_value(r.body).expect("counts")
}

/// The counted writes to the Web API: what a dry run must not send.
fn api_writes(stats: &HashMap<String, u64>) -> Vec<String> {
    stats
        .keys()
        .filter(|k| {
            ["POST ", "PUT ", "PATCH ", "DELETE "]
                .iter()
                .any(|m| k.starts_with(&format!("{m}/api/data/")))
        })
        .cloned()
        .collect()
}

#[tokio::test]
async fn a_table_definition_is_read_by_entity_set_logical_name_and_metadata_id() {
    let dv = Dv::start().await;
    let r = dv
        .get("EntityDefinitions?$select=LogicalName,EntitySetName,PrimaryIdAttribute,PrimaryNameAttribute,ChangeTrackingEnabled&$filter=EntitySetName eq 'opportunities'")
        .await;
    assert_eq!(r.status, 200, "{r:?}");
    let value = r.body["value"].as_array().expect("value");
    assert_eq!(value.len(), 1, "{r:?}");
    let def = &value[0];
    assert_eq!(def["LogicalName"], "opportunity");
    assert_eq!(def["EntitySetName"], "opportunities");
    assert_eq!(def["PrimaryIdAttribute"], "opportunityid");
    assert_eq!(def["PrimaryNameAttribute"], "name");
    assert_eq!(def["ChangeTrackingEnabled"], true);
    assert!(
        def.get("DisplayName").is_none(),
        "only the selection: {def}"
    );
    let id = def["MetadataId"]
        .as_str()
        .expect("MetadataId comes without being selected")
        .to_string();

    let none = dv
        .get("EntityDefinitions?$select=LogicalName&$filter=EntitySetName eq 'cosell_projects'")
        .await;
    assert_eq!(none.status, 200, "{none:?}");
    assert_eq!(none.body["value"], json!([]));

    let by_name = dv.get("EntityDefinitions(LogicalName='opportunity')").await;
    assert_eq!(by_name.status, 200, "{by_name:?}");
    assert_eq!(by_name.body["MetadataId"], id.as_str());
    assert_eq!(by_name.body["SchemaName"], "Opportunity");
    assert_eq!(by_name.body["IsCustomEntity"], false);
    assert_eq!(
        by_name.body["DisplayName"]["UserLocalizedLabel"]["Label"],
        "Opportunity"
    );
    let by_id = dv
        .get(&format!("EntityDefinitions({id})?$select=LogicalName"))
        .await;
    assert_eq!(by_id.status, 200, "{by_id:?}");
    assert_eq!(by_id.body["LogicalName"], "opportunity");

    let all = dv.get("EntityDefinitions?$select=LogicalName").await;
    let names: Vec<&str> = all.body["value"]
        .as_array()
        .expect("value")
        .iter()
        .filter_map(|d| d["LogicalName"].as_str())
        .collect();
    for t in [
        "opportunity",
        "lead",
        "account",
        "cosell_solutionlink",
        "cosell_solutioncatalog",
        "publisher",
        "solution",
    ] {
        assert!(names.contains(&t), "{t} in {names:?}");
    }

    // A real environment's definitions keep their ids; so do the sandbox's across starts.
    let again = Dv::start().await;
    let r = again
        .get("EntityDefinitions(LogicalName='opportunity')?$select=LogicalName")
        .await;
    assert_eq!(r.body["MetadataId"], id.as_str());

    for missing in [
        "EntityDefinitions(LogicalName='cosell_project')",
        "EntityDefinitions(00000000-0000-4000-8000-000000000001)",
        "EntityDefinitions(LogicalName='cosell_project')/Attributes",
    ] {
        refused(&dv.get(missing).await, 404, NOT_FOUND);
    }
    let r = dv
        .get("EntityDefinitions(LogicalName='opportunity')?$select=NoSuchProperty")
        .await;
    assert_eq!(r.status, 400, "{r:?}");
}

#[tokio::test]
async fn columns_are_listed_with_their_types_and_lengths_come_through_casts() {
    let dv = Dv::start().await;
    let types = column_types(&dv, "opportunity").await;
    for (column, kind) in [
        ("opportunityid", "Uniqueidentifier"),
        ("name", "String"),
        ("description", "Memo"),
        ("cosell_syncwithpartnercenter", "Boolean"),
        ("cosell_audit", "Memo"),
        ("estimatedvalue", "Money"),
        ("estimatedclosedate", "DateTime"),
        ("closeprobability", "Integer"),
        ("transactioncurrencyid", "Lookup"),
        ("customerid", "Customer"),
        ("ownerid", "Owner"),
        ("statecode", "State"),
        ("statuscode", "Status"),
    ] {
        assert_eq!(
            types.get(column).map(String::as_str),
            Some(kind),
            "{column}"
        );
    }
    let r = dv
        .get("EntityDefinitions(LogicalName='opportunity')/Attributes?$select=LogicalName,IsValidForCreate,IsValidForUpdate&$filter=LogicalName eq 'createdon'")
        .await;
    assert_eq!(
        r.body["value"][0]["IsValidForUpdate"], false,
        "the service maintains it: {r:?}"
    );

    let lengths = |cast: &'static str| {
        let dv = &dv;
        async move {
            let r = dv
                .get(&format!(
                    "EntityDefinitions(LogicalName='opportunity')/Attributes/Microsoft.Dynamics.CRM.{cast}?$select=LogicalName,MaxLength"
                ))
                .await;
            assert_eq!(r.status, 200, "{r:?}");
            r.body["value"]
                .as_array()
                .expect("value")
                .iter()
                .map(|a| {
                    (
                        a["LogicalName"].as_str().expect("name").to_string(),
                        a["MaxLength"].as_u64().expect("MaxLength"),
                    )
                })
                .collect::<HashMap<String, u64>>()
        }
    };
    let strings = lengths("StringAttributeMetadata").await;
    assert_eq!(strings.get("name"), Some(&300));
    assert_eq!(strings.get("cosell_referralid"), Some(&100));
    assert_eq!(strings.get("cosell_referrallink"), Some(&500));
    assert!(
        !strings.contains_key("cosell_audit") && !strings.contains_key("estimatedvalue"),
        "only text columns: {strings:?}"
    );
    let memos = lengths("MemoAttributeMetadata").await;
    assert_eq!(memos.get("cosell_audit"), Some(&100_000));
    assert_eq!(memos.get("description"), Some(&2000));
    assert!(!memos.contains_key("name"), "{memos:?}");

    let one = dv
        .get("EntityDefinitions(LogicalName='opportunity')/Attributes(LogicalName='name')/Microsoft.Dynamics.CRM.StringAttributeMetadata?$select=LogicalName,MaxLength")
        .await;
    assert_eq!(one.status, 200, "{one:?}");
    assert_eq!(one.body["MaxLength"], 300);
    let yes_no = dv
        .get("EntityDefinitions(LogicalName='opportunity')/Attributes(LogicalName='cosell_syncwithpartnercenter')/Microsoft.Dynamics.CRM.BooleanAttributeMetadata?$select=LogicalName,DefaultValue&$expand=OptionSet")
        .await;
    assert_eq!(yes_no.status, 200, "{yes_no:?}");
    assert_eq!(yes_no.body["DefaultValue"], false);
    assert_eq!(yes_no.body["OptionSet"]["TrueOption"]["Value"], 1);
    assert_eq!(yes_no.body["OptionSet"]["FalseOption"]["Value"], 0);

    for missing in [
        "EntityDefinitions(LogicalName='opportunity')/Attributes(LogicalName='cosell_nothing')",
        // A column of another type than the cast.
        "EntityDefinitions(LogicalName='opportunity')/Attributes(LogicalName='name')/Microsoft.Dynamics.CRM.MemoAttributeMetadata",
    ] {
        refused(&dv.get(missing).await, 404, NOT_FOUND);
    }
    let r = dv
        .get("EntityDefinitions(LogicalName='opportunity')/Attributes/Microsoft.Dynamics.CRM.NoSuchAttributeMetadata")
        .await;
    assert_eq!(r.status, 400, "{r:?}");
}

#[tokio::test]
async fn status_reasons_come_with_their_states_and_on_hold_is_built_in() {
    let dv = Dv::start().await;
    let statuses = options(&dv, "opportunity", "statuscode", "StatusAttributeMetadata").await;
    let found: Vec<(i64, i64, &str)> = statuses
        .iter()
        .map(|o| {
            (
                o["Value"].as_i64().expect("Value"),
                o["State"].as_i64().expect("State"),
                option_label(o),
            )
        })
        .collect();
    assert_eq!(
        found,
        vec![
            (1, 0, "In Progress"),
            (2, 0, "On Hold"),
            (3, 1, "Won"),
            (4, 2, "Canceled"),
            (5, 2, "Out-Sold"),
        ]
    );
    let states = options(&dv, "opportunity", "statecode", "StateAttributeMetadata").await;
    assert_eq!(states.len(), 3);
    assert_eq!(states[0]["DefaultStatus"], 1);
}

#[tokio::test]
async fn publishers_and_solutions_are_rows_with_the_documented_rules() {
    let dv = Dv::start().await;
    let r = dv
        .get("publishers?$select=publisherid,uniquename,customizationoptionvalueprefix&$filter=customizationprefix eq 'cosell'")
        .await;
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.body["value"].as_array().map(Vec::len), Some(1), "{r:?}");
    let connector_publisher = r.body["value"][0]["publisherid"]
        .as_str()
        .expect("id")
        .to_string();
    let r = dv
        .get("solutions?$select=solutionid,ismanaged,_publisherid_value&$filter=uniquename eq 'CoSellConnector'")
        .await;
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.body["value"][0]["ismanaged"], false);
    assert_eq!(
        r.body["value"][0]["_publisherid_value"],
        connector_publisher.as_str()
    );
    let r = dv
        .get("solutions?$select=uniquename&$orderby=uniquename")
        .await;
    let names: Vec<&str> = r.body["value"]
        .as_array()
        .expect("value")
        .iter()
        .filter_map(|s| s["uniquename"].as_str())
        .collect();
    assert_eq!(names, vec!["CoSellConnector", "Default"]);

    let publisher = |prefix: &str, option_prefix: i64| {
        json!({
            "uniquename": format!("Publisher{}", prefix.len()),
            "friendlyname": "Contoso",
            "customizationprefix": prefix,
            "customizationoptionvalueprefix": option_prefix,
        })
    };
    // 2 to 8 letters or digits, a letter first, not mscrm (docs/dataverse.md, "Metadata").
    for bad in ["c", "1contoso", "mscrmab", "MSCRM1", "con_to", "con-to"] {
        let r = dv
            .call(Method::POST, "publishers", Some(publisher(bad, 20000)))
            .await;
        let message = refused(&r, 400, PUBLISHER_PREFIX);
        assert!(message.contains(bad), "{message}");
    }
    // The column holds 8 characters, so a longer prefix meets the length rule of every text
    // column first.
    let r = dv
        .call(
            Method::POST,
            "publishers",
            Some(publisher("contosoab", 20000)),
        )
        .await;
    let message = refused(&r, 400, INVALID);
    assert!(message.contains("customizationprefix"), "{message}");
    for bad in [9999, 100_000] {
        let r = dv
            .call(Method::POST, "publishers", Some(publisher("contoso", bad)))
            .await;
        refused(&r, 400, PUBLISHER_PREFIX);
    }
    let contoso = dv.create("publishers", publisher("contoso", 20000)).await;
    let mut twice = publisher("fabrikam", 30000);
    twice["uniquename"] = json!("CoSellConnectorPublisher");
    refused(
        &dv.call(Method::POST, "publishers", Some(twice)).await,
        400,
        NAME_IN_USE,
    );
    let r = dv
        .call(
            Method::PATCH,
            &format!("publishers({contoso})"),
            Some(json!({"customizationprefix": "mscrmab"})),
        )
        .await;
    refused(&r, 400, PUBLISHER_PREFIX);

    let solution = |name: &str, version: &str| {
        json!({
            "uniquename": name,
            "friendlyname": "Contoso",
            "version": version,
            "publisherid@odata.bind": format!("/publishers({contoso})"),
        })
    };
    let made = dv
        .create("solutions", solution("ContosoSolution", "1.0.0.0"))
        .await;
    let row = dv.row("solutions", &made).await;
    assert_eq!(row["_publisherid_value"], contoso.as_str());
    assert_eq!(row["ismanaged"], false);
    refused(
        &dv.call(
            Method::POST,
            "solutions",
            Some(solution("cosellconnector", "1.0")),
        )
        .await,
        400,
        NAME_IN_USE,
    );
    for (name, version) in [
        ("1Contoso", "1.0"),
        ("Con toso", "1.0"),
        ("Contoso2", "one"),
    ] {
        let r = dv
            .call(Method::POST, "solutions", Some(solution(name, version)))
            .await;
        assert_eq!(r.status, 400, "{name} {version}: {r:?}");
        assert!(!r.message().is_empty());
    }
    let r = dv
        .call(
            Method::POST,
            "solutions",
            Some(json!({"uniquename": "NoPublisher", "friendlyname": "x", "version": "1.0"})),
        )
        .await;
    assert_eq!(r.status, 400, "a solution needs its publisher: {r:?}");

    // What a solution holds follows its publisher's prefix.
    let in_contoso = [("MSCRM.SolutionUniqueName", "ContosoSolution")];
    let r = dv
        .call_with(
            Method::POST,
            "EntityDefinitions(LogicalName='lead')/Attributes",
            Some(string_column("cosell_region", 50)),
            &in_contoso,
        )
        .await;
    refused(&r, 400, SCHEMA_NAME);
    let r = dv
        .call_with(
            Method::POST,
            "EntityDefinitions(LogicalName='lead')/Attributes",
            Some(string_column("contoso_region", 50)),
            &in_contoso,
        )
        .await;
    assert_eq!(r.status, 204, "{r:?}");
}

#[tokio::test]
async fn a_created_table_takes_rows_through_its_entity_set_at_once() {
    let dv = Dv::start().await;
    let r = create(
        &dv,
        "EntityDefinitions",
        table_body("cosell_project", Some("cosell_projects"), "cosell_name"),
    )
    .await;
    let id = r.entity_id();
    let def = dv.get(&format!("EntityDefinitions({id})")).await;
    assert_eq!(def.status, 200, "{def:?}");
    assert_eq!(def.body["LogicalName"], "cosell_project");
    assert_eq!(def.body["SchemaName"], "cosell_project");
    assert_eq!(def.body["EntitySetName"], "cosell_projects");
    assert_eq!(def.body["PrimaryIdAttribute"], "cosell_projectid");
    assert_eq!(def.body["PrimaryNameAttribute"], "cosell_name");
    assert_eq!(def.body["IsCustomEntity"], true);
    assert_eq!(def.body["OwnershipType"], "OrganizationOwned");
    assert_eq!(def.body["ChangeTrackingEnabled"], false);
    assert_eq!(
        def.body["DisplayCollectionName"]["UserLocalizedLabel"]["Label"],
        "Projects"
    );
    let found = dv
        .get("EntityDefinitions?$select=LogicalName&$filter=EntitySetName eq 'cosell_projects'")
        .await;
    assert_eq!(found.body["value"][0]["MetadataId"], id.as_str());
    let types = column_types(&dv, "cosell_project").await;
    for (column, kind) in [
        ("cosell_projectid", "Uniqueidentifier"),
        ("cosell_name", "String"),
        ("statecode", "State"),
        ("statuscode", "Status"),
        ("createdon", "DateTime"),
        ("ownerid", "Owner"),
    ] {
        assert_eq!(
            types.get(column).map(String::as_str),
            Some(kind),
            "{column}"
        );
    }
    let name = dv
        .get("EntityDefinitions(LogicalName='cosell_project')/Attributes(LogicalName='cosell_name')/Microsoft.Dynamics.CRM.StringAttributeMetadata?$select=MaxLength,IsPrimaryName")
        .await;
    assert_eq!(name.body["MaxLength"], 200);
    assert_eq!(name.body["IsPrimaryName"], true);

    let row = dv
        .create("cosell_projects", json!({"cosell_name": "Pilot"}))
        .await;
    let read = dv.row("cosell_projects", &row).await;
    assert_eq!(read["cosell_name"], "Pilot");
    assert_eq!(read["statecode"], 0);
    assert_eq!(read["cosell_projectid"], row.as_str());
    let r = dv
        .call(
            Method::PATCH,
            &format!("cosell_projects({row})"),
            Some(json!({"cosell_name": "x".repeat(201)})),
        )
        .await;
    assert_eq!(r.status, 400, "the primary name's length holds: {r:?}");
    let r = dv
        .call(
            Method::PATCH,
            &format!("cosell_projects({row})"),
            Some(json!({"cosell_name": "Pilot 2"})),
        )
        .await;
    assert_eq!(r.status, 204, "{r:?}");
    let list = dv
        .get("cosell_projects?$select=cosell_name&$filter=cosell_name eq 'Pilot 2'")
        .await;
    assert_eq!(list.body["value"].as_array().map(Vec::len), Some(1));
    let r = dv
        .call(Method::DELETE, &format!("cosell_projects({row})"), None)
        .await;
    assert_eq!(r.status, 204, "{r:?}");

    // Without EntitySetName the set is the logical name plus s.
    create(
        &dv,
        "EntityDefinitions",
        table_body("cosell_milestone", None, "cosell_title"),
    )
    .await;
    let r = dv
        .get("EntityDefinitions(LogicalName='cosell_milestone')?$select=EntitySetName")
        .await;
    assert_eq!(r.body["EntitySetName"], "cosell_milestones");
    dv.create("cosell_milestones", json!({"cosell_title": "M1"}))
        .await;
}

#[tokio::test]
async fn created_columns_are_usable_by_the_data_api_at_once() {
    let dv = Dv::start().await;
    let earlier = dv
        .create("leads", json!({"subject": "Earlier", "lastname": "Før"}))
        .await;
    let attributes = "EntityDefinitions(LogicalName='lead')/Attributes";
    let r = create(&dv, attributes, string_column("cosell_region", 20)).await;
    let url = r.header("OData-EntityId").expect("url").to_string();
    assert!(url.contains("/EntityDefinitions("), "{url}");
    assert!(url.contains(")/Attributes("), "{url}");
    create(&dv, attributes, memo_column("cosell_notes", 5000)).await;
    create(&dv, attributes, boolean_column("cosell_priority")).await;
    create(
        &dv,
        attributes,
        picklist_column(
            "cosell_tier",
            &[(None, "Gold"), (None, "Silver"), (Some(7), "Bronze")],
        ),
    )
    .await;

    let types = column_types(&dv, "lead").await;
    assert_eq!(types["cosell_region"], "String");
    assert_eq!(types["cosell_notes"], "Memo");
    assert_eq!(types["cosell_priority"], "Boolean");
    assert_eq!(types["cosell_tier"], "Picklist");
    let region = dv
        .get(&format!(
            "{attributes}(LogicalName='cosell_region')/Microsoft.Dynamics.CRM.StringAttributeMetadata?$select=MaxLength,SchemaName,IsCustomAttribute"
        ))
        .await;
    assert_eq!(region.body["MaxLength"], 20);
    assert_eq!(region.body["IsCustomAttribute"], true);
    let notes = dv
        .get(&format!(
            "{attributes}(LogicalName='cosell_notes')/Microsoft.Dynamics.CRM.MemoAttributeMetadata?$select=MaxLength"
        ))
        .await;
    assert_eq!(notes.body["MaxLength"], 5000);
    // The connector's option value prefix (26541) numbers the options sent without a value.
    let tiers = options(&dv, "lead", "cosell_tier", "PicklistAttributeMetadata").await;
    let tiers: Vec<(i64, &str)> = tiers
        .iter()
        .map(|o| (o["Value"].as_i64().expect("Value"), option_label(o)))
        .collect();
    assert_eq!(
        tiers,
        vec![
            (265_410_000, "Gold"),
            (265_410_001, "Silver"),
            (7, "Bronze")
        ]
    );

    let lead = dv
        .create(
            "leads",
            json!({
                "subject": "Columns",
                "lastname": "Nordmann",
                "cosell_region": "Nordics",
                "cosell_notes": "n".repeat(4000),
                "cosell_tier": 265_410_001,
            }),
        )
        .await;
    let row = dv.row("leads", &lead).await;
    assert_eq!(row["cosell_region"], "Nordics");
    assert_eq!(row["cosell_tier"], 265_410_001);
    assert_eq!(
        row["cosell_priority"], false,
        "a new Yes/No column's default"
    );
    let before = dv.row("leads", &earlier).await;
    // A default applies to rows created after the column (inferred).
    assert_eq!(before["cosell_priority"], Value::Null, "{before}");
    assert_eq!(before["cosell_region"], Value::Null, "{before}");
    for (column, value, needle) in [
        ("cosell_region", json!("r".repeat(21)), "cosell_region"),
        ("cosell_notes", json!("n".repeat(5001)), "cosell_notes"),
        ("cosell_tier", json!(3), "cosell_tier"),
        ("cosell_priority", json!("yes"), "Edm.Boolean"),
    ] {
        let r = dv
            .call(
                Method::PATCH,
                &format!("leads({lead})"),
                Some(json!({ column: value })),
            )
            .await;
        assert_eq!(r.status, 400, "{column}: {r:?}");
        assert!(r.message().contains(needle), "{column}: {r:?}");
    }
    let r = dv
        .get("leads?$select=leadid&$filter=cosell_region eq 'Nordics' and cosell_priority eq false")
        .await;
    assert_eq!(r.body["value"].as_array().map(Vec::len), Some(1), "{r:?}");
}

#[tokio::test]
async fn a_relationship_creates_its_lookup_bound_through_the_schema_name() {
    let dv = Dv::start().await;
    create(
        &dv,
        "EntityDefinitions",
        table_body("cosell_project", Some("cosell_projects"), "cosell_name"),
    )
    .await;
    let r = create(
        &dv,
        "RelationshipDefinitions",
        relationship_body(
            "cosell_opportunity_cosell_project",
            "opportunity",
            "cosell_project",
            "cosell_opportunityid",
        ),
    )
    .await;
    let id = r.entity_id();
    let rel = dv.get(&format!("RelationshipDefinitions({id})")).await;
    assert_eq!(rel.status, 200, "{rel:?}");
    assert_eq!(rel.body["SchemaName"], "cosell_opportunity_cosell_project");
    assert_eq!(rel.body["ReferencedEntity"], "opportunity");
    assert_eq!(rel.body["ReferencedAttribute"], "opportunityid");
    assert_eq!(rel.body["ReferencingEntity"], "cosell_project");
    assert_eq!(rel.body["ReferencingAttribute"], "cosell_opportunityid");
    assert_eq!(
        rel.body["ReferencingEntityNavigationPropertyName"],
        "cosell_opportunityid"
    );
    let by_name = dv
        .get("RelationshipDefinitions(SchemaName='cosell_opportunity_cosell_project')?$select=SchemaName")
        .await;
    assert_eq!(by_name.body["MetadataId"], id.as_str());
    let listed = dv
        .get("RelationshipDefinitions/Microsoft.Dynamics.CRM.OneToManyRelationshipMetadata?$select=SchemaName,ReferencingEntity&$filter=ReferencingEntity eq 'cosell_project'")
        .await;
    assert_eq!(listed.status, 200, "{listed:?}");
    assert_eq!(listed.body["value"].as_array().map(Vec::len), Some(1));
    let lookup = dv
        .get("EntityDefinitions(LogicalName='cosell_project')/Attributes(LogicalName='cosell_opportunityid')/Microsoft.Dynamics.CRM.LookupAttributeMetadata?$select=AttributeType,Targets")
        .await;
    assert_eq!(lookup.status, 200, "{lookup:?}");
    assert_eq!(lookup.body["AttributeType"], "Lookup");
    assert_eq!(lookup.body["Targets"], json!(["opportunity"]));

    let opportunity = dv.opportunity("Linked").await;
    let row = dv
        .create(
            "cosell_projects",
            json!({
                "cosell_name": "Linked project",
                "cosell_opportunityid@odata.bind": format!("/opportunities({opportunity})"),
            }),
        )
        .await;
    let read = dv.row("cosell_projects", &row).await;
    assert_eq!(read["_cosell_opportunityid_value"], opportunity.as_str());
    let r = dv
        .get(&format!(
            "cosell_projects?$select=cosell_name&$filter=_cosell_opportunityid_value eq {opportunity}"
        ))
        .await;
    assert_eq!(r.body["value"].as_array().map(Vec::len), Some(1), "{r:?}");
    let r = dv
        .call(
            Method::POST,
            "cosell_projects",
            Some(json!({
                "cosell_name": "Dangling",
                "cosell_opportunityid@odata.bind": "/opportunities(00000000-0000-4000-8000-000000000009)",
            })),
        )
        .await;
    assert_eq!(r.status, 400, "a bind to a missing row: {r:?}");

    let r = write(
        &dv,
        Method::POST,
        "RelationshipDefinitions",
        relationship_body(
            "cosell_opportunity_cosell_project",
            "opportunity",
            "cosell_project",
            "cosell_otheropportunityid",
        ),
    )
    .await;
    refused(&r, 400, NAME_IN_USE);
    let r = write(
        &dv,
        Method::POST,
        "RelationshipDefinitions",
        relationship_body(
            "cosell_account_cosell_project",
            "account",
            "cosell_project",
            "cosell_opportunityid",
        ),
    )
    .await;
    refused(&r, 400, NAME_IN_USE);
    let r = write(
        &dv,
        Method::POST,
        "RelationshipDefinitions",
        relationship_body(
            "cosell_nothing_cosell_project",
            "cosell_nothing",
            "cosell_project",
            "cosell_nothingid",
        ),
    )
    .await;
    assert_eq!(r.status, 400, "{r:?}");
    assert!(r.message().contains("cosell_nothing"), "{r:?}");
}

#[tokio::test]
async fn insert_status_value_adds_a_status_reason_valid_at_once() {
    let dv = Dv::start().await;
    let insert = |value: Option<i64>, state: i64, text: &str| {
        let mut body = json!({
            "EntityLogicalName": "opportunity",
            "AttributeLogicalName": "statuscode",
            "StateCode": state,
            "Label": label(text),
            "SolutionUniqueName": "CoSellConnector",
        });
        if let Some(v) = value {
            body["Value"] = json!(v);
        }
        body
    };
    let r = dv
        .call(
            Method::POST,
            "InsertStatusValue",
            Some(insert(Some(100), 0, "Waiting for Microsoft")),
        )
        .await;
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.body["NewOptionValue"], 100);
    let r = dv
        .call(
            Method::POST,
            "InsertStatusValue",
            Some(insert(None, 2, "Withdrawn")),
        )
        .await;
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(
        r.body["NewOptionValue"], 265_410_000,
        "numbered by the solution publisher's option value prefix"
    );
    let statuses = options(&dv, "opportunity", "statuscode", "StatusAttributeMetadata").await;
    let waiting = statuses
        .iter()
        .find(|o| o["Value"] == 100)
        .expect("the new status reason");
    assert_eq!(waiting["State"], 0);
    assert_eq!(option_label(waiting), "Waiting for Microsoft");

    let opportunity = dv.opportunity("Waiting").await;
    let r = dv
        .call(
            Method::PATCH,
            &format!("opportunities({opportunity})"),
            Some(json!({"statecode": 0, "statuscode": 100})),
        )
        .await;
    assert_eq!(r.status, 204, "{r:?}");
    assert_eq!(
        dv.row("opportunities", &opportunity).await["statuscode"],
        100
    );

    // On Hold is built in: inserting it again is refused.
    let r = dv
        .call(
            Method::POST,
            "InsertStatusValue",
            Some(insert(Some(2), 0, "On Hold")),
        )
        .await;
    refused(&r, 400, NAME_IN_USE);
    let r = dv
        .call(
            Method::POST,
            "InsertStatusValue",
            Some(insert(Some(101), 7, "Nowhere")),
        )
        .await;
    assert_eq!(r.status, 400, "no state 7: {r:?}");
    let mut body = insert(Some(102), 0, "Elsewhere");
    body["SolutionUniqueName"] = json!("NoSuchSolution");
    let r = dv.call(Method::POST, "InsertStatusValue", Some(body)).await;
    refused(&r, 400, SOLUTION);
}

#[tokio::test]
async fn a_put_of_the_definition_as_read_turns_change_tracking_on() {
    let dv = Dv::bare().await;
    let track = [("Prefer", "odata.track-changes")];
    let r = dv
        .call_with(Method::GET, "opportunities?$select=name", None, &track)
        .await;
    assert!(
        r.body.get("@odata.deltaLink").is_none(),
        "off in a bare org: {r:?}"
    );
    let read = dv.get("EntityDefinitions(LogicalName='opportunity')").await;
    assert_eq!(read.body["ChangeTrackingEnabled"], false);
    let id = read.body["MetadataId"].as_str().expect("id").to_string();
    let mut def = read.body.clone();
    if let Some(o) = def.as_object_mut() {
        o.retain(|k, _| !k.starts_with("@odata."));
    }
    def["ChangeTrackingEnabled"] = json!(true);
    let merge = [("MSCRM.MergeLabels", "true")];
    let r = dv
        .call_with(
            Method::PUT,
            &format!("EntityDefinitions({id})"),
            Some(def.clone()),
            &merge,
        )
        .await;
    assert_eq!(r.status, 204, "{r:?}");
    let after = dv.get("EntityDefinitions(LogicalName='opportunity')").await;
    assert_eq!(after.body["ChangeTrackingEnabled"], true);
    assert_eq!(
        after.body["DisplayName"], read.body["DisplayName"],
        "the labels put back are kept"
    );
    let r = dv
        .call_with(Method::GET, "opportunities?$select=name", None, &track)
        .await;
    assert!(r.body["@odata.deltaLink"].is_string(), "{r:?}");

    // Once on, it stays on; a table's identity does not change.
    def["ChangeTrackingEnabled"] = json!(false);
    let r = dv
        .call_with(
            Method::PUT,
            &format!("EntityDefinitions({id})"),
            Some(def.clone()),
            &merge,
        )
        .await;
    refused(&r, 400, IMMUTABLE);
    def["ChangeTrackingEnabled"] = json!(true);
    def["EntitySetName"] = json!("deals");
    let r = dv
        .call_with(
            Method::PUT,
            &format!("EntityDefinitions({id})"),
            Some(def),
            &merge,
        )
        .await;
    refused(&r, 400, IMMUTABLE);
    let r = dv
        .call_with(
            Method::PUT,
            "EntityDefinitions(00000000-0000-4000-8000-000000000001)",
            Some(json!({"ChangeTrackingEnabled": true})),
            &merge,
        )
        .await;
    refused(&r, 404, NOT_FOUND);
}

#[tokio::test]
async fn publish_xml_is_accepted_for_tables_that_exist() {
    let dv = Dv::start().await;
    let r = dv
        .call(
            Method::POST,
            "PublishXml",
            Some(json!({"ParameterXml": "<importexportxml><entities><entity>opportunity</entity><entity>cosell_solutionlink</entity></entities></importexportxml>"})),
        )
        .await;
    assert_eq!(r.status, 204, "{r:?}");
    let r = dv
        .call(
            Method::POST,
            "PublishXml",
            Some(json!({"ParameterXml": "<importexportxml><entities><entity>cosell_nothing</entity></entities></importexportxml>"})),
        )
        .await;
    assert_eq!(r.status, 400, "{r:?}");
    assert!(r.message().contains("cosell_nothing"), "{r:?}");
}

#[tokio::test]
async fn the_solution_header_puts_each_component_in_that_solution() {
    let dv = Dv::start().await;
    let solution = |name: &'static str| {
        let dv = &dv;
        async move {
            let r = dv
                .get(&format!(
                    "solutions?$select=solutionid&$filter=uniquename eq '{name}'"
                ))
                .await;
            r.body["value"][0]["solutionid"]
                .as_str()
                .expect("solution id")
                .to_string()
        }
    };
    let connector = solution("CoSellConnector").await;
    let components = |solution_id: String| {
        let dv = &dv;
        async move {
            let r = dv
                .get(&format!(
                    "solutioncomponents?$select=objectid,componenttype&$filter=_solutionid_value eq {solution_id}"
                ))
                .await;
            assert_eq!(r.status, 200, "{r:?}");
            r.body["value"]
                .as_array()
                .expect("value")
                .iter()
                .map(|c| {
                    (
                        c["objectid"].as_str().expect("objectid").to_string(),
                        c["componenttype"].as_i64().expect("componenttype"),
                    )
                })
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(components(connector.clone()).await, vec![]);

    let table = create(
        &dv,
        "EntityDefinitions",
        table_body("cosell_project", Some("cosell_projects"), "cosell_name"),
    )
    .await
    .entity_id();
    let column_url = create(
        &dv,
        "EntityDefinitions(LogicalName='lead')/Attributes",
        string_column("cosell_region", 50),
    )
    .await;
    let column = column_url.entity_id();
    let relationship = create(
        &dv,
        "RelationshipDefinitions",
        relationship_body(
            "cosell_opportunity_cosell_project",
            "opportunity",
            "cosell_project",
            "cosell_opportunityid",
        ),
    )
    .await
    .entity_id();
    let lookup = dv
        .get("EntityDefinitions(LogicalName='cosell_project')/Attributes(LogicalName='cosell_opportunityid')?$select=LogicalName")
        .await;
    let lookup = lookup.body["MetadataId"].as_str().expect("id").to_string();
    let held = components(connector.clone()).await;
    for (object, kind) in [(&table, 1), (&column, 2), (&relationship, 10), (&lookup, 2)] {
        assert!(
            held.contains(&(object.clone(), kind)),
            "{object} ({kind}) in {held:?}"
        );
    }
    assert_eq!(held.len(), 4, "{held:?}");

    // Without the header a create goes to the Default solution, whose publisher's prefix is
    // new_.
    let r = dv
        .call(
            Method::POST,
            "EntityDefinitions(LogicalName='lead')/Attributes",
            Some(string_column("cosell_other", 50)),
        )
        .await;
    let message = refused(&r, 400, SCHEMA_NAME);
    assert!(message.contains("new_"), "{message}");
    let made = dv
        .call(
            Method::POST,
            "EntityDefinitions(LogicalName='lead')/Attributes",
            Some(string_column("new_other", 50)),
        )
        .await;
    assert_eq!(made.status, 204, "{made:?}");
    let default = components(solution("Default").await).await;
    assert_eq!(default, vec![(made.entity_id(), 2)]);

    let r = dv
        .call_with(
            Method::POST,
            "EntityDefinitions(LogicalName='lead')/Attributes",
            Some(string_column("cosell_third", 50)),
            &[("MSCRM.SolutionUniqueName", "NoSuchSolution")],
        )
        .await;
    refused(&r, 400, SOLUTION);
    let r = dv
        .call(
            Method::PATCH,
            &format!("solutions({connector})"),
            Some(json!({"ismanaged": true})),
        )
        .await;
    assert_eq!(r.status, 204, "{r:?}");
    let r = write(
        &dv,
        Method::POST,
        "EntityDefinitions(LogicalName='lead')/Attributes",
        string_column("cosell_third", 50),
    )
    .await;
    let message = refused(&r, 400, SOLUTION);
    assert!(message.contains("managed"), "{message}");
    let r = dv
        .call(
            Method::POST,
            "solutioncomponents",
            Some(json!({"objectid": table, "componenttype": 1})),
        )
        .await;
    assert_eq!(r.status, 400, "components are not written directly: {r:?}");
}

#[tokio::test]
async fn refusals_name_what_is_wrong_and_change_nothing() {
    let dv = Dv::start().await;
    let opportunity = "EntityDefinitions(LogicalName='opportunity')/Attributes";
    let before = column_types(&dv, "opportunity").await;

    let message = refused(
        &write(
            &dv,
            Method::POST,
            opportunity,
            memo_column("cosell_audit", 2000),
        )
        .await,
        400,
        NAME_IN_USE,
    );
    assert!(message.contains("cosell_audit"), "{message}");
    // Case does not make a name another.
    refused(
        &write(
            &dv,
            Method::POST,
            opportunity,
            boolean_column("cosell_Visibility"),
        )
        .await,
        400,
        NAME_IN_USE,
    );
    // The table's primary key is a column name too (docs/dataverse.md, "Metadata").
    let message = refused(
        &write(
            &dv,
            Method::POST,
            "EntityDefinitions(LogicalName='cosell_solutionlink')/Attributes",
            string_column("cosell_solutionlinkid", 100),
        )
        .await,
        400,
        NAME_IN_USE,
    );
    assert!(message.contains("primary key"), "{message}");
    let message = refused(
        &write(
            &dv,
            Method::POST,
            opportunity,
            string_column("referralnote", 100),
        )
        .await,
        400,
        SCHEMA_NAME,
    );
    assert!(message.contains("cosell_"), "{message}");
    refused(
        &write(
            &dv,
            Method::POST,
            opportunity,
            string_column("cosell_", 100),
        )
        .await,
        400,
        SCHEMA_NAME,
    );
    refused(
        &write(
            &dv,
            Method::POST,
            opportunity,
            string_column("cosell_bad name", 100),
        )
        .await,
        400,
        SCHEMA_NAME,
    );
    for body in [
        string_column("cosell_short", 0),
        string_column("cosell_long", 4001),
        memo_column("cosell_longer", 1_048_577),
        memo_column("cosell_none", -1),
    ] {
        let name = body["SchemaName"].clone();
        let message = refused(
            &write(&dv, Method::POST, opportunity, body).await,
            400,
            LENGTH,
        );
        assert!(message.contains("MaxLength"), "{name}: {message}");
    }
    let r = write(
        &dv,
        Method::POST,
        opportunity,
        string_column("cosell_edge", 4000),
    )
    .await;
    assert_eq!(r.status, 204, "4000 is the longest text column: {r:?}");
    let r = write(
        &dv,
        Method::POST,
        opportunity,
        memo_column("cosell_edgememo", 1_048_576),
    )
    .await;
    assert_eq!(r.status, 204, "1,048,576 the longest memo: {r:?}");
    let r = write(
        &dv,
        Method::POST,
        opportunity,
        picklist_column("cosell_twice", &[(Some(1), "A"), (Some(1), "B")]),
    )
    .await;
    refused(&r, 400, NAME_IN_USE);

    // A table: a name taken, one without the prefix, a set taken, not one primary name.
    refused(
        &write(
            &dv,
            Method::POST,
            "EntityDefinitions",
            table_body("cosell_solutionlink", Some("cosell_links2"), "cosell_name"),
        )
        .await,
        400,
        NAME_IN_USE,
    );
    refused(
        &write(
            &dv,
            Method::POST,
            "EntityDefinitions",
            table_body("project", Some("projects"), "cosell_name"),
        )
        .await,
        400,
        SCHEMA_NAME,
    );
    refused(
        &write(
            &dv,
            Method::POST,
            "EntityDefinitions",
            table_body("cosell_project", Some("opportunities"), "cosell_name"),
        )
        .await,
        400,
        NAME_IN_USE,
    );
    let mut two = table_body("cosell_project", None, "cosell_name");
    two["Attributes"] = json!([]);
    let r = write(&dv, Method::POST, "EntityDefinitions", two).await;
    assert_eq!(r.status, 400, "{r:?}");
    assert!(r.message().contains("IsPrimaryName"), "{r:?}");
    let mut unknown = string_column("cosell_other", 100);
    unknown["Colour"] = json!("blue");
    let r = write(&dv, Method::POST, opportunity, unknown).await;
    assert_eq!(r.status, 400, "{r:?}");
    assert!(r.message().contains("Colour"), "{r:?}");
    let r = write(
        &dv,
        Method::POST,
        "EntityDefinitions(LogicalName='cosell_nothing')/Attributes",
        string_column("cosell_other", 100),
    )
    .await;
    refused(&r, 404, NOT_FOUND);

    let after = column_types(&dv, "opportunity").await;
    let added: Vec<&String> = after.keys().filter(|k| !before.contains_key(*k)).collect();
    let mut added: Vec<&str> = added.into_iter().map(String::as_str).collect();
    added.sort_unstable();
    assert_eq!(
        added,
        vec!["cosell_edge", "cosell_edgememo"],
        "only the accepted creates"
    );
    let r = dv
        .get("EntityDefinitions?$select=LogicalName&$filter=LogicalName eq 'cosell_project'")
        .await;
    assert_eq!(r.body["value"], json!([]));
}

#[tokio::test]
async fn a_bare_org_lacks_the_connector_columns_tables_publisher_and_solution() {
    let dv = Dv::bare().await;
    for table in ["opportunity", "lead"] {
        let types = column_types(&dv, table).await;
        let custom: Vec<&String> = types.keys().filter(|k| k.starts_with("cosell_")).collect();
        assert!(custom.is_empty(), "{table}: {custom:?}");
    }
    let types = column_types(&dv, "opportunity").await;
    for standard in [
        "name",
        "estimatedvalue",
        "transactioncurrencyid",
        "customerid",
    ] {
        assert!(types.contains_key(standard), "{standard}");
    }
    assert!(
        column_types(&dv, "lead")
            .await
            .contains_key("address1_country")
    );
    assert!(
        column_types(&dv, "account")
            .await
            .contains_key("address1_country")
    );
    for set in ["cosell_solutionlinks", "cosell_solutioncatalogs"] {
        let r = dv
            .get(&format!(
                "EntityDefinitions?$select=LogicalName&$filter=EntitySetName eq '{set}'"
            ))
            .await;
        assert_eq!(r.body["value"], json!([]), "{set}");
        assert_eq!(dv.get(set).await.status, 404, "{set}");
    }
    let r = dv
        .get("EntityDefinitions(LogicalName='opportunity')?$select=ChangeTrackingEnabled")
        .await;
    assert_eq!(r.body["ChangeTrackingEnabled"], false);
    let r = dv
        .get("EntityDefinitions(LogicalName='account')?$select=ChangeTrackingEnabled")
        .await;
    assert_eq!(r.body["ChangeTrackingEnabled"], true, "others keep theirs");
    // Dynamics 365 Sales ships On Hold (docs/dataverse.md, "Opportunity and lead states").
    let statuses = options(&dv, "opportunity", "statuscode", "StatusAttributeMetadata").await;
    assert!(
        statuses
            .iter()
            .any(|o| o["Value"] == 2 && o["State"] == 0 && option_label(o) == "On Hold"),
        "{statuses:?}"
    );
    let r = dv
        .get("publishers?$select=uniquename,customizationprefix")
        .await;
    let prefixes: Vec<&str> = r.body["value"]
        .as_array()
        .expect("value")
        .iter()
        .filter_map(|p| p["customizationprefix"].as_str())
        .collect();
    assert_eq!(prefixes, vec!["new"]);
    let r = dv.get("solutions?$select=uniquename").await;
    assert_eq!(r.body["value"].as_array().map(Vec::len), Some(1));
    assert_eq!(r.body["value"][0]["uniquename"], "Default");
    let r = dv
        .call_with(
            Method::POST,
            "EntityDefinitions(LogicalName='opportunity')/Attributes",
            Some(boolean_column("cosell_syncwithpartnercenter")),
            IN_SOLUTION,
        )
        .await;
    refused(&r, 400, SOLUTION);
    // The data API still works.
    dv.opportunity("Before setup").await;
}

#[tokio::test]
async fn metadata_requests_are_counted_so_a_dry_run_shows_no_writes() {
    let dv = Dv::start().await;
    dv.get("EntityDefinitions?$select=LogicalName&$filter=EntitySetName eq 'opportunities'")
        .await;
    dv.get("EntityDefinitions(LogicalName='opportunity')/Attributes?$select=LogicalName")
        .await;
    dv.get("EntityDefinitions(LogicalName='lead')/Attributes/Microsoft.Dynamics.CRM.StringAttributeMetadata?$select=LogicalName,MaxLength")
        .await;
    let s = stats(&dv).await;
    assert!(api_writes(&s).is_empty(), "reads only: {s:?}");
    assert_eq!(
        s.get("GET /api/data/v9.2/EntityDefinitions({key})/Attributes"),
        Some(&1),
        "{s:?}"
    );
    assert_eq!(
        s.get("GET /api/data/v9.2/EntityDefinitions({key})/Attributes/Microsoft.Dynamics.CRM.StringAttributeMetadata"),
        Some(&1),
        "{s:?}"
    );

    create(
        &dv,
        "EntityDefinitions(LogicalName='lead')/Attributes",
        string_column("cosell_region", 50),
    )
    .await;
    let read = dv.get("EntityDefinitions(LogicalName='account')").await;
    let id = read.body["MetadataId"].as_str().expect("id").to_string();
    let mut def = read.body.clone();
    if let Some(o) = def.as_object_mut() {
        o.retain(|k, _| !k.starts_with("@odata."));
    }
    let r = dv
        .call(Method::PUT, &format!("EntityDefinitions({id})"), Some(def))
        .await;
    assert_eq!(r.status, 204, "{r:?}");
    let s = stats(&dv).await;
    let mut writes = api_writes(&s);
    writes.sort_unstable();
    assert_eq!(
        writes,
        vec![
            "POST /api/data/v9.2/EntityDefinitions({key})/Attributes",
            "PUT /api/data/v9.2/EntityDefinitions({id})",
        ],
        "{s:?}"
    );
}

/// The product's schema client (`cosell crm setup` and `cosell doctor`) against this sandbox.
fn schema_client(dv: &Dv) -> DataverseSchema {
    let mut config = DataverseConfig::new(
        dv.sandbox.base_url(),
        "contoso-tenant",
        CLIENT_ID,
        CLIENT_SECRET,
    );
    config.authority_url = dv.sandbox.base_url().to_string();
    config.timeout = Duration::from_secs(10);
    DataverseSchema::new(config).expect("schema client")
}

fn not_in_place(items: &[SchemaItem]) -> Vec<String> {
    items
        .iter()
        .filter(|i| !i.in_place())
        .map(|i| format!("{:?} {} {:?}", i.kind, i.name, i.state))
        .collect()
}

#[tokio::test]
async fn the_seeded_org_is_what_the_product_setup_makes() {
    let dv = Dv::start().await;
    let items = schema_client(&dv).inspect().await.expect("inspect");
    assert!(
        not_in_place(&items).is_empty(),
        "{:?}",
        not_in_place(&items)
    );
}

#[tokio::test]
async fn the_product_setup_creates_what_a_bare_org_lacks_and_a_second_run_writes_nothing() {
    let dv = Dv::bare().await;
    let schema = schema_client(&dv);
    let items = schema.inspect().await.expect("inspect");
    let unexpected: Vec<String> = items
        .iter()
        .filter(|i| !i.is_missing() && !i.in_place())
        .map(|i| format!("{} {:?}", i.name, i.state))
        .collect();
    assert!(unexpected.is_empty(), "{unexpected:?}");
    let missing: Vec<&SchemaItem> = items.iter().filter(|i| i.is_missing()).collect();
    let kinds: Vec<ItemKind> = missing.iter().map(|i| i.kind).collect();
    for kind in [
        ItemKind::Publisher,
        ItemKind::Solution,
        ItemKind::Table,
        ItemKind::Column,
        ItemKind::Relationship,
        ItemKind::ChangeTracking,
    ] {
        assert!(kinds.contains(&kind), "{kind:?} missing in {kinds:?}");
    }
    let names: Vec<&str> = missing.iter().map(|i| i.name.as_str()).collect();
    for name in [
        "opportunity.cosell_syncwithpartnercenter",
        "opportunity.cosell_audit",
        "lead.cosell_referralid",
        "cosell_solutionlinks",
        "cosell_solutionlink.cosell_solutionid",
        "cosell_solutionlink.cosell_opportunityid",
        "cosell_solutioncatalogs",
    ] {
        assert!(names.contains(&name), "{name} in {names:?}");
    }
    let hold = items
        .iter()
        .find(|i| i.kind == ItemKind::StatusReason)
        .expect("the On Hold item");
    assert_eq!(hold.state, ItemState::InPlace, "built in: {hold:?}");
    assert!(
        api_writes(&stats(&dv).await).is_empty(),
        "inspecting writes nothing"
    );

    let mut created = Vec::new();
    for item in missing {
        schema
            .create(item)
            .await
            .unwrap_or_else(|e| panic!("create {} ({:?}): {e}", item.name, item.kind));
        created.push(item.clone());
    }
    schema.finish(&created).await.expect("publish");
    let s = stats(&dv).await;
    assert_eq!(s.get("POST /api/data/v9.2/PublishXml"), Some(&1), "{s:?}");
    assert_eq!(
        s.get("PUT /api/data/v9.2/EntityDefinitions({id})"),
        Some(&1),
        "{s:?}"
    );

    dv.control(Method::DELETE, "/_sandbox/stats", None).await;
    let again = schema.inspect().await.expect("inspect again");
    assert!(
        not_in_place(&again).is_empty(),
        "{:?}",
        not_in_place(&again)
    );
    let s = stats(&dv).await;
    assert!(
        api_writes(&s).is_empty(),
        "a second run writes nothing: {s:?}"
    );

    // Change tracking was turned on inside the connector's solution, so it travels with it.
    let r = dv
        .get("EntityDefinitions(LogicalName='opportunity')?$select=MetadataId")
        .await;
    let opportunity_id = r.body["MetadataId"]
        .as_str()
        .expect("MetadataId")
        .to_string();
    let r = dv
        .get("solutions?$select=solutionid&$filter=uniquename eq 'CoSellConnector'")
        .await;
    let solution_id = r.body["value"][0]["solutionid"]
        .as_str()
        .expect("the solution")
        .to_string();
    let r = dv
        .get(&format!(
            "solutioncomponents?$select=objectid,componenttype&$filter=_solutionid_value eq {solution_id}"
        ))
        .await;
    assert!(
        r.body["value"]
            .as_array()
            .expect("value")
            .iter()
            .any(|c| c["objectid"] == opportunity_id.as_str() && c["componenttype"] == 1),
        "opportunity is a component of the solution: {r:?}"
    );

    // What setup made serves the connector's rows.
    let opportunity = dv.opportunity("After setup").await;
    let r = dv
        .call(
            Method::PATCH,
            &format!("opportunities({opportunity})"),
            Some(json!({
                "cosell_syncwithpartnercenter": true,
                "cosell_referralid": "7f3a0c5e-0000-4000-8000-000000000001",
                "cosell_audit": "Shared with Microsoft",
            })),
        )
        .await;
    assert_eq!(r.status, 204, "{r:?}");
    dv.create(
        "cosell_solutionlinks",
        json!({
            "cosell_name": "Link",
            "cosell_solutionid": "SOL-1",
            "cosell_opportunityid@odata.bind": format!("/opportunities({opportunity})"),
        }),
    )
    .await;
    let r = dv
        .call(
            Method::POST,
            "cosell_solutionlinks",
            Some(json!({"cosell_name": "Orphan", "cosell_solutionid": "SOL-2"})),
        )
        .await;
    assert_eq!(r.status, 400, "the opportunity lookup is required: {r:?}");
    dv.create(
        "cosell_solutioncatalogs",
        json!({"cosell_name": "Catalog entry", "cosell_solutionid": "SOL-1"}),
    )
    .await;
    let r = dv
        .call_with(
            Method::GET,
            "opportunities?$select=name",
            None,
            &[("Prefer", "odata.track-changes")],
        )
        .await;
    assert!(r.body["@odata.deltaLink"].is_string(), "{r:?}");
    let r = dv
        .get("solutions?$select=solutionid&$filter=uniquename eq 'CoSellConnector'")
        .await;
    let solution = r.body["value"][0]["solutionid"]
        .as_str()
        .expect("the connector's solution")
        .to_string();
    let r = dv
        .get(&format!(
            "solutioncomponents?$select=componenttype&$filter=_solutionid_value eq {solution}"
        ))
        .await;
    // A component per table and column, two for the relationship (its lookup column too),
    // and the opportunity table for its change tracking; the publisher and the solution add
    // none.
    let count = r.body["value"].as_array().map_or(0, Vec::len);
    assert_eq!(count, created.len() - 1, "{r:?}");
}

#[tokio::test]
async fn a_solution_of_another_publisher_is_reported_before_anything_is_created() {
    let dv = Dv::bare().await;
    let r = create(
        &dv,
        "publishers",
        json!({
            "uniquename": "ContosoPublisher",
            "friendlyname": "Contoso",
            "customizationprefix": "contoso",
            "customizationoptionvalueprefix": 41000,
        }),
    )
    .await;
    assert_eq!(r.status, 204, "{r:?}");
    let r = dv
        .get("publishers?$select=publisherid&$filter=customizationprefix eq 'contoso'")
        .await;
    let contoso = r.body["value"][0]["publisherid"]
        .as_str()
        .expect("the publisher")
        .to_string();
    let r = create(
        &dv,
        "solutions",
        json!({
            "uniquename": "CoSellConnector",
            "friendlyname": "Co-sell",
            "version": "1.0.0.0",
            "publisherid@odata.bind": format!("/publishers({contoso})"),
        }),
    )
    .await;
    assert_eq!(r.status, 204, "{r:?}");

    let items = schema_client(&dv).inspect().await.expect("inspect");
    let solution = items
        .iter()
        .find(|i| i.kind == ItemKind::Solution)
        .expect("the solution item");
    assert!(
        matches!(&solution.state, ItemState::Unusable(why) if why.contains("COSELL_DATAVERSE_PUBLISHER_PREFIX")),
        "every create would be refused for the prefix, so it is not in place: {solution:?}"
    );
}
