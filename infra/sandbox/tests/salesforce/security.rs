//! Field-level security and the permission objects (docs/salesforce.md, "Metadata"), and the
//! bare org `cosell crm setup` starts from.

use cosell_sandbox::salesforce::Config;
use reqwest::Method;
use serde_json::{Value, json};

use crate::common::{Env, error_code};

const NOTE: &str = "Opportunity.Partner_Note__c";

async fn add_note(env: &Env) {
    env.tooling_ok(
        "CustomField",
        NOTE,
        json!({"label": "Partner Note", "type": "Text", "length": 80}),
    )
    .await;
}

#[tokio::test]
async fn a_tooling_field_is_hidden_from_the_integration_user_until_granted() {
    let env = Env::start().await;
    let opp = env
        .create("Opportunity", Env::opportunity("Contoso", json!({})))
        .await;
    add_note(&env).await;

    // Hidden: describe, SOQL, reads and writes.
    assert!(
        env.described_field("Opportunity", "Partner_Note__c")
            .await
            .is_none()
    );
    assert!(
        env.described_field("Opportunity", "Referral_Identifier__c")
            .await
            .is_some(),
        "fields the org started with stay visible"
    );
    let (s, code, body) = error_code(
        env.query("SELECT Id, Partner_Note__c FROM Opportunity")
            .await,
    )
    .await;
    assert_eq!((s, code.as_str()), (400, "INVALID_FIELD"), "{body}");
    assert!(
        body[0]["message"]
            .as_str()
            .is_some_and(|m| m.contains("No such column 'Partner_Note__c'")),
        "{body}"
    );
    let (s, code, _) = error_code(
        env.api(
            Method::POST,
            "/sobjects/Opportunity/",
            Some(Env::opportunity("x", json!({"Partner_Note__c": "hi"}))),
        )
        .await,
    )
    .await;
    assert_eq!((s, code.as_str()), (400, "INVALID_FIELD"));
    let (s, code, _) = error_code(
        env.api(
            Method::PATCH,
            &format!("/sobjects/Opportunity/{opp}"),
            Some(json!({"Partner_Note__c": "hi"})),
        )
        .await,
    )
    .await;
    assert_eq!((s, code.as_str()), (400, "INVALID_FIELD"));
    let row = env.get("Opportunity", &opp).await;
    assert!(row.get("Partner_Note__c").is_none(), "{row}");
    let r = env
        .api(
            Method::GET,
            &format!("/sobjects/Opportunity/{opp}?fields=Partner_Note__c"),
            None,
        )
        .await;
    assert_eq!(r.status(), 400);

    // The seller (control API) is not subject to it.
    let r = env
        .control(
            Method::PATCH,
            &format!("/_sandbox/salesforce/Opportunity/{opp}"),
            Some(json!({"Partner_Note__c": "from the seller"})),
        )
        .await;
    assert_eq!(r.status(), 200);

    // Read only: visible, not editable.
    let set = env
        .create(
            "PermissionSet",
            json!({"Name": "Cosell_Connector", "Label": "Cosell Connector",
        "Description": "The connector's fields"}),
        )
        .await;
    assert!(set.starts_with("0PS"), "{set}");
    let grant = env
        .create(
            "FieldPermissions",
            json!({"ParentId": set, "SobjectType": "Opportunity", "Field": "opportunity.partner_note__c",
                   "PermissionsRead": true, "PermissionsEdit": false}),
        )
        .await;
    // A grant does nothing until its set is assigned.
    assert!(
        env.described_field("Opportunity", "Partner_Note__c")
            .await
            .is_none()
    );
    let user = env.app["userId"].as_str().expect("user id").to_string();
    let assignment = env
        .create(
            "PermissionSetAssignment",
            json!({"AssigneeId": user, "PermissionSetId": set}),
        )
        .await;
    let note = env
        .described_field("Opportunity", "Partner_Note__c")
        .await
        .expect("granted");
    assert_eq!(
        (&note["createable"], &note["updateable"]),
        (&json!(false), &json!(false))
    );
    let r = env
        .query_ok(&format!(
            "SELECT Partner_Note__c FROM Opportunity WHERE Id = '{opp}'"
        ))
        .await;
    assert_eq!(r["records"][0]["Partner_Note__c"], "from the seller");
    let (s, code, _) = error_code(
        env.api(
            Method::PATCH,
            &format!("/sobjects/Opportunity/{opp}"),
            Some(json!({"Partner_Note__c": "hi"})),
        )
        .await,
    )
    .await;
    assert_eq!((s, code.as_str()), (400, "INVALID_FIELD_FOR_INSERT_UPDATE"));

    // Edit too: writable through the data API.
    let r = env
        .api(
            Method::PATCH,
            &format!("/sobjects/FieldPermissions/{grant}"),
            Some(json!({"PermissionsEdit": true})),
        )
        .await;
    assert_eq!(r.status(), 204);
    let note = env
        .described_field("Opportunity", "Partner_Note__c")
        .await
        .expect("granted");
    assert_eq!(note["updateable"], true);
    let r = env
        .api(
            Method::PATCH,
            &format!("/sobjects/Opportunity/{opp}"),
            Some(json!({"Partner_Note__c": "from the connector"})),
        )
        .await;
    assert_eq!(r.status(), 204);
    assert_eq!(
        env.get("Opportunity", &opp).await["Partner_Note__c"],
        "from the connector"
    );

    // The rows read back with SOQL, in the schema's spelling; the user by id.
    let r = env
        .query_ok(&format!(
            "SELECT Id, SobjectType, Field, PermissionsRead, PermissionsEdit FROM FieldPermissions WHERE ParentId = '{set}'"
        ))
        .await;
    assert_eq!(
        (
            &r["records"][0]["Field"],
            &r["records"][0]["SobjectType"],
            &r["records"][0]["PermissionsEdit"]
        ),
        (&json!(NOTE), &json!("Opportunity"), &json!(true))
    );
    let r = env
        .query_ok(&format!(
            "SELECT Id FROM PermissionSetAssignment WHERE PermissionSetId = '{set}' AND AssigneeId = '{user}'"
        ))
        .await;
    assert_eq!(r["records"][0]["Id"], json!(assignment));
    let r = env
        .query_ok(&format!(
            "SELECT Id, Username FROM User WHERE Id = '{user}'"
        ))
        .await;
    assert_eq!(r["records"][0]["Username"], "integration@sandbox.test");
    let r = env
        .query_ok(
            "SELECT Name, Label, Description, (SELECT Field FROM FieldPerms) FROM PermissionSet",
        )
        .await;
    assert_eq!(r["records"][0]["FieldPerms"]["records"][0]["Field"], NOTE);

    // Unassigned, hidden again.
    let r = env
        .api(
            Method::DELETE,
            &format!("/sobjects/PermissionSetAssignment/{assignment}"),
            None,
        )
        .await;
    assert_eq!(r.status(), 204);
    assert!(
        env.described_field("Opportunity", "Partner_Note__c")
            .await
            .is_none()
    );
}

#[tokio::test]
async fn grants_are_per_user() {
    let mut config = Config::default();
    config.jwt_users.push("reporting@sandbox.test".into());
    let env = Env::with(config).await;
    add_note(&env).await;
    env.grant("Cosell_Connector", &[(NOTE, true)]).await;
    assert!(
        env.described_field("Opportunity", "Partner_Note__c")
            .await
            .is_some()
    );
    let assertion = env
        .assertion(json!({"sub": "reporting@sandbox.test"}), &env.private_key())
        .await;
    let resp = env.jwt_grant(&assertion).await;
    assert_eq!(resp.status(), 200);
    let body: Value = resp.json().await.expect("json");
    let other = body["access_token"].as_str().expect("token").to_string();
    let (s, code, _) = error_code(
        env.api_as(
            &other,
            Method::GET,
            &format!(
                "/query?q={}",
                crate::common::enc("SELECT Partner_Note__c FROM Opportunity")
            ),
            None,
        )
        .await,
    )
    .await;
    assert_eq!((s, code.as_str()), (400, "INVALID_FIELD"));
}

#[tokio::test]
async fn the_permission_objects_refuse_what_salesforce_refuses() {
    let env = Env::start().await;
    add_note(&env).await;
    let set = env
        .create(
            "PermissionSet",
            json!({"Name": "Cosell_Connector", "Label": "Cosell Connector"}),
        )
        .await;
    let post = |object: &'static str, body: Value| {
        let env = &env;
        async move {
            error_code(
                env.api(Method::POST, &format!("/sobjects/{object}/"), Some(body))
                    .await,
            )
            .await
        }
    };
    let cases = [
        (
            "PermissionSet",
            json!({"Name": "cosell_connector", "Label": "Again"}),
            "DUPLICATE_VALUE",
        ),
        (
            "PermissionSet",
            json!({"Name": "Two Words", "Label": "Bad"}),
            "FIELD_INTEGRITY_EXCEPTION",
        ),
        (
            "PermissionSet",
            json!({"Name": "No_Label"}),
            "REQUIRED_FIELD_MISSING",
        ),
        (
            "FieldPermissions",
            json!({"ParentId": set, "SobjectType": "Opportunity", "Field": NOTE, "PermissionsEdit": true}),
            "FIELD_INTEGRITY_EXCEPTION",
        ),
        (
            "FieldPermissions",
            json!({"ParentId": set, "SobjectType": "Opportunity", "Field": "Opportunity.Name", "PermissionsRead": true}),
            "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST",
        ),
        (
            "FieldPermissions",
            json!({"ParentId": set, "SobjectType": "Opportunity", "Field": "Opportunity.Nothing__c", "PermissionsRead": true}),
            "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST",
        ),
        (
            "FieldPermissions",
            json!({"ParentId": set, "SobjectType": "Lead", "Field": NOTE, "PermissionsRead": true}),
            "FIELD_INTEGRITY_EXCEPTION",
        ),
        (
            "ObjectPermissions",
            json!({"ParentId": set, "SobjectType": "Microsoft_Solution__c", "PermissionsDelete": true, "PermissionsRead": true}),
            "FIELD_INTEGRITY_EXCEPTION",
        ),
        (
            "ObjectPermissions",
            json!({"ParentId": set, "SobjectType": "Nothing__c", "PermissionsRead": true}),
            "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST",
        ),
    ];
    for (object, body, expected) in cases {
        let (s, code, answer) = post(object, body.clone()).await;
        assert_eq!(
            (s, code.as_str()),
            (400, expected),
            "{object} {body}: {answer}"
        );
    }
    // One row per field, per object and per assignment.
    let grant = json!({"ParentId": set, "SobjectType": "Opportunity", "Field": NOTE, "PermissionsRead": true});
    env.create("FieldPermissions", grant.clone()).await;
    let (s, code, _) = post("FieldPermissions", grant).await;
    assert_eq!((s, code.as_str()), (400, "DUPLICATE_VALUE"));
    let object = json!({"ParentId": set, "SobjectType": "Microsoft_Solution__c", "PermissionsRead": true,
        "PermissionsCreate": true, "PermissionsEdit": true, "PermissionsDelete": true});
    env.create("ObjectPermissions", object.clone()).await;
    let (s, code, _) = post("ObjectPermissions", object).await;
    assert_eq!((s, code.as_str()), (400, "DUPLICATE_VALUE"));
    let assignment = json!({"AssigneeId": env.app["userId"], "PermissionSetId": set});
    env.create("PermissionSetAssignment", assignment.clone())
        .await;
    let (s, code, _) = post("PermissionSetAssignment", assignment).await;
    assert_eq!((s, code.as_str()), (400, "DUPLICATE_VALUE"));
    let r = env
        .query_ok(&format!(
            "SELECT SobjectType, PermissionsRead, PermissionsCreate, PermissionsEdit, PermissionsDelete FROM ObjectPermissions WHERE ParentId = '{set}'"
        ))
        .await;
    assert_eq!(r["records"][0]["PermissionsDelete"], true);

    // Deleting the set takes its rows and assignments with it, and the grant.
    assert!(
        env.described_field("Opportunity", "Partner_Note__c")
            .await
            .is_some()
    );
    let r = env
        .api(
            Method::DELETE,
            &format!("/sobjects/PermissionSet/{set}"),
            None,
        )
        .await;
    assert_eq!(r.status(), 204);
    for object in [
        "FieldPermissions",
        "ObjectPermissions",
        "PermissionSetAssignment",
    ] {
        let r = env.query_ok(&format!("SELECT COUNT() FROM {object}")).await;
        assert_eq!(r["totalSize"], 0, "{object}");
    }
    assert!(
        env.described_field("Opportunity", "Partner_Note__c")
            .await
            .is_none()
    );
}

#[tokio::test]
async fn a_bare_org_lacks_the_connector_fields_objects_and_hold_stage() {
    let env = Env::bare().await;
    for object in ["Opportunity", "Lead"] {
        let d: Value = env
            .api(Method::GET, &format!("/sobjects/{object}/describe"), None)
            .await
            .json()
            .await
            .expect("json");
        let names: Vec<&str> = d["fields"]
            .as_array()
            .expect("fields")
            .iter()
            .filter_map(|f| f["name"].as_str())
            .collect();
        assert!(
            names.iter().all(|n| !n.ends_with("__c")),
            "{object}: {names:?}"
        );
        for standard in ["Id", "Name", "OwnerId", "SystemModstamp"] {
            assert!(names.contains(&standard), "{object}: {standard}");
        }
    }
    assert!(
        env.described_field("Opportunity", "StageName")
            .await
            .is_some()
    );
    assert!(env.described_field("Opportunity", "Amount").await.is_some());
    assert!(env.described_field("Lead", "Company").await.is_some());
    for object in ["Microsoft_Solution__c", "Microsoft_Solution_Catalog__c"] {
        let r = env
            .api(Method::GET, &format!("/sobjects/{object}/describe"), None)
            .await;
        assert_eq!(r.status(), 404, "{object}");
    }
    for object in [
        "PermissionSet",
        "FieldPermissions",
        "ObjectPermissions",
        "PermissionSetAssignment",
        "User",
    ] {
        let r = env
            .api(Method::GET, &format!("/sobjects/{object}/describe"), None)
            .await;
        assert_eq!(r.status(), 200, "{object}");
    }
    let stages: Value = env
        .control(Method::GET, "/_sandbox/salesforce/stages", None)
        .await
        .json()
        .await
        .expect("json");
    let names: Vec<&str> = stages
        .as_array()
        .expect("stages")
        .iter()
        .filter_map(|s| s["name"].as_str())
        .collect();
    assert!(!names.contains(&"On Hold"), "{names:?}");
    assert!(
        names.contains(&"Prospecting")
            && names.contains(&"Closed Won")
            && names.contains(&"Closed Lost")
    );
    // What `cosell doctor` reads for the daily allocation.
    let limits: Value = env
        .api(Method::GET, "/limits", None)
        .await
        .json()
        .await
        .expect("json");
    let daily = &limits["DailyApiRequests"];
    assert_eq!(daily["Max"], 15000);
    assert!(
        daily["Remaining"]
            .as_u64()
            .is_some_and(|r| r > 0 && r < 15000),
        "{limits}"
    );
}
