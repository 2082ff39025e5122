//! sObject rows: create, read, update, delete, and the rules every write goes through.

use cosell_sandbox::salesforce::Config;
use reqwest::Method;
use serde_json::{Value, json};

use crate::common::{Env, error_code};

#[tokio::test]
async fn create_read_update_delete_an_opportunity() {
    let env = Env::start().await;
    let account = env
        .create(
            "Account",
            json!({"Name": "Contoso", "BillingCountry": "NO"}),
        )
        .await;
    assert!(
        account.starts_with("001") && account.len() == 18,
        "{account}"
    );
    let resp = env
        .api(
            Method::POST,
            "/sobjects/Opportunity/",
            Some(Env::opportunity(
                "Cloud migration",
                json!({"AccountId": account, "Amount": 1000}),
            )),
        )
        .await;
    assert_eq!(resp.status(), 201);
    let created: Value = resp.json().await.expect("json");
    assert_eq!(created["success"], true);
    assert_eq!(created["errors"], json!([]));
    let id = created["id"].as_str().expect("id").to_string();
    assert!(id.starts_with("006") && id.len() == 18, "{id}");

    let rec = env.get("Opportunity", &id).await;
    assert_eq!(rec["attributes"]["type"], "Opportunity");
    assert_eq!(
        rec["attributes"]["url"],
        format!("/services/data/v62.0/sobjects/Opportunity/{id}")
    );
    assert_eq!(rec["Name"], "Cloud migration");
    assert_eq!(rec["AccountId"], account.as_str());
    assert_eq!(rec["Amount"], 1000.0);
    assert_eq!(
        rec["Sync_with_Partner_Center__c"], false,
        "checkbox default"
    );
    assert_eq!(rec["CreatedById"], env.app["userId"]);
    assert_eq!(rec["LastModifiedById"], env.app["userId"]);
    assert_eq!(rec["OwnerId"], env.app["userId"]);
    let stamp = rec["SystemModstamp"].as_str().expect("stamp");
    assert!(stamp.ends_with("+0000") && stamp.contains('.'), "{stamp}");

    // ?fields= narrows the answer to attributes and those fields.
    let resp = env
        .api(
            Method::GET,
            &format!("/sobjects/Opportunity/{id}?fields=Name,StageName"),
            None,
        )
        .await;
    let narrow: Value = resp.json().await.expect("json");
    let keys: Vec<&str> = narrow
        .as_object()
        .expect("object")
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(keys, ["attributes", "Name", "StageName"]);
    let (status, code, _) = error_code(
        env.api(
            Method::GET,
            &format!("/sobjects/Opportunity/{id}?fields=Nope__c"),
            None,
        )
        .await,
    )
    .await;
    assert_eq!((status, code.as_str()), (400, "INVALID_FIELD"));

    // The 15-character id finds the same record.
    let short = env.get("Opportunity", &id[..15]).await;
    assert_eq!(short["Id"], id.as_str());

    let resp = env
        .api(
            Method::PATCH,
            &format!("/sobjects/Opportunity/{id}"),
            Some(json!({"Description": "Phase 1", "Referral_Identifier__c": "R-1"})),
        )
        .await;
    assert_eq!(resp.status(), 204);
    assert_eq!(resp.text().await.expect("body"), "");
    let after = env.get("Opportunity", &id).await;
    assert_eq!(after["Description"], "Phase 1");
    assert!(after["SystemModstamp"].as_str() >= Some(stamp));

    let resp = env
        .api(Method::DELETE, &format!("/sobjects/Opportunity/{id}"), None)
        .await;
    assert_eq!(resp.status(), 204);
    let (status, code, _) = error_code(
        env.api(Method::GET, &format!("/sobjects/Opportunity/{id}"), None)
            .await,
    )
    .await;
    assert_eq!((status, code.as_str()), (404, "NOT_FOUND"));
    let (status, code, _) = error_code(
        env.api(
            Method::PATCH,
            &format!("/sobjects/Opportunity/{id}"),
            Some(json!({"Name": "x"})),
        )
        .await,
    )
    .await;
    assert_eq!((status, code.as_str()), (404, "ENTITY_IS_DELETED"));
}

#[tokio::test]
async fn an_id_in_the_body_or_an_unknown_field_is_invalid_field() {
    let env = Env::start().await;
    let body = Env::opportunity("x", json!({"Id": "0065g0000000001AAA"}));
    let (status, code, _) = error_code(
        env.api(Method::POST, "/sobjects/Opportunity/", Some(body))
            .await,
    )
    .await;
    assert_eq!((status, code.as_str()), (400, "INVALID_FIELD"));

    let body = Env::opportunity("x", json!({"Referral_Id__c": "R-1"}));
    let (status, code, err) = error_code(
        env.api(Method::POST, "/sobjects/Opportunity/", Some(body))
            .await,
    )
    .await;
    assert_eq!((status, code.as_str()), (400, "INVALID_FIELD"));
    assert!(
        err[0]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("Referral_Id__c"),
        "{err}"
    );

    let body = Env::opportunity("x", json!({"IsWon": true}));
    let (status, code, err) = error_code(
        env.api(Method::POST, "/sobjects/Opportunity/", Some(body))
            .await,
    )
    .await;
    assert_eq!(
        (status, code.as_str()),
        (400, "INVALID_FIELD_FOR_INSERT_UPDATE")
    );
    assert_eq!(err[0]["fields"], json!(["IsWon"]));

    let (status, code, _) = error_code(
        env.api(
            Method::POST,
            "/sobjects/Opportunity/",
            Some(json!(["not", "an", "object"])),
        )
        .await,
    )
    .await;
    assert_eq!((status, code.as_str()), (400, "JSON_PARSER_ERROR"));
    let (status, _, _) = error_code(
        env.api(Method::POST, "/sobjects/Nothing__c/", Some(json!({})))
            .await,
    )
    .await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn required_fields_are_listed() {
    let env = Env::start().await;
    let (status, code, err) = error_code(
        env.api(
            Method::POST,
            "/sobjects/Opportunity/",
            Some(json!({"Name": "only a name"})),
        )
        .await,
    )
    .await;
    assert_eq!((status, code.as_str()), (400, "REQUIRED_FIELD_MISSING"));
    assert_eq!(err[0]["fields"], json!(["StageName", "CloseDate"]));
    for (object, body, fields) in [
        ("Contact", json!({"FirstName": "Ola"}), json!(["LastName"])),
        ("Lead", json!({"LastName": "Nordmann"}), json!(["Company"])),
        ("Account", json!({"BillingCity": "Oslo"}), json!(["Name"])),
    ] {
        let (status, code, err) = error_code(
            env.api(Method::POST, &format!("/sobjects/{object}/"), Some(body))
                .await,
        )
        .await;
        assert_eq!(
            (status, code.as_str()),
            (400, "REQUIRED_FIELD_MISSING"),
            "{object}"
        );
        assert_eq!(err[0]["fields"], fields, "{object}");
    }
    // Clearing a required field on update is refused too.
    let id = env
        .create("Opportunity", Env::opportunity("x", json!({})))
        .await;
    let (status, code, err) = error_code(
        env.api(
            Method::PATCH,
            &format!("/sobjects/Opportunity/{id}"),
            Some(json!({"Name": null})),
        )
        .await,
    )
    .await;
    assert_eq!((status, code.as_str()), (400, "REQUIRED_FIELD_MISSING"));
    assert_eq!(err[0]["fields"], json!(["Name"]));
    let lead = env
        .create("Lead", json!({"LastName": "N", "Company": "Fabrikam"}))
        .await;
    assert_eq!(
        env.get("Lead", &lead).await["Status"],
        "Open - Not Contacted"
    );
}

#[tokio::test]
async fn currency_iso_code_exists_only_in_a_multi_currency_org() {
    let single = Env::start().await;
    let body = Env::opportunity("x", json!({"CurrencyIsoCode": "EUR"}));
    let (status, code, err) = error_code(
        single
            .api(Method::POST, "/sobjects/Opportunity/", Some(body.clone()))
            .await,
    )
    .await;
    assert_eq!((status, code.as_str()), (400, "INVALID_FIELD"), "{err}");

    let multi = Env::with(Config {
        multi_currency: true,
        ..Default::default()
    })
    .await;
    let id = multi.create("Opportunity", body).await;
    assert_eq!(
        multi.get("Opportunity", &id).await["CurrencyIsoCode"],
        "EUR"
    );
    let other = multi
        .create("Opportunity", Env::opportunity("y", json!({})))
        .await;
    assert_eq!(
        multi.get("Opportunity", &other).await["CurrencyIsoCode"],
        "USD"
    );
    let (status, code, _) = error_code(
        multi
            .api(
                Method::POST,
                "/sobjects/Opportunity/",
                Some(Env::opportunity("z", json!({"CurrencyIsoCode": "XXX"}))),
            )
            .await,
    )
    .await;
    assert_eq!(
        (status, code.as_str()),
        (400, "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST")
    );
}

#[tokio::test]
async fn is_closed_and_is_won_follow_the_stage() {
    let env = Env::start().await;
    let id = env
        .create(
            "Opportunity",
            Env::opportunity("x", json!({"StageName": "On Hold"})),
        )
        .await;
    let rec = env.get("Opportunity", &id).await;
    assert_eq!(
        (rec["IsClosed"].clone(), rec["IsWon"].clone()),
        (json!(false), json!(false))
    );
    assert_eq!(rec["Probability"], 10.0);
    for (stage, closed, won, probability) in [
        ("Closed Won", true, true, 100.0),
        ("Closed Lost", true, false, 0.0),
        ("Negotiation/Review", false, false, 90.0),
    ] {
        let r = env
            .api(
                Method::PATCH,
                &format!("/sobjects/Opportunity/{id}"),
                Some(json!({"StageName": stage})),
            )
            .await;
        assert_eq!(r.status(), 204, "{stage}");
        let rec = env.get("Opportunity", &id).await;
        assert_eq!(rec["IsClosed"], closed, "{stage}");
        assert_eq!(rec["IsWon"], won, "{stage}");
        assert_eq!(rec["Probability"], probability, "{stage}");
    }
    let (status, code, err) = error_code(
        env.api(
            Method::PATCH,
            &format!("/sobjects/Opportunity/{id}"),
            Some(json!({"StageName": "Won"})),
        )
        .await,
    )
    .await;
    assert_eq!(
        (status, code.as_str()),
        (400, "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST")
    );
    assert_eq!(err[0]["fields"], json!(["StageName"]));

    // Stages are data: an admin adds a closed-won stage of their own.
    let mut stages: Vec<Value> = env
        .control(Method::GET, "/_sandbox/salesforce/stages", None)
        .await
        .json()
        .await
        .expect("json");
    stages.push(json!({"name": "Won via Partner Center", "isClosed": true, "isWon": true, "defaultProbability": 100}));
    let r = env
        .control(
            Method::PUT,
            "/_sandbox/salesforce/stages",
            Some(json!(stages)),
        )
        .await;
    assert_eq!(r.status(), 200);
    let r = env
        .api(
            Method::PATCH,
            &format!("/sobjects/Opportunity/{id}"),
            Some(json!({"StageName": "Won via Partner Center"})),
        )
        .await;
    assert_eq!(r.status(), 204);
    let rec = env.get("Opportunity", &id).await;
    assert_eq!(
        (rec["IsClosed"].clone(), rec["IsWon"].clone()),
        (json!(true), json!(true))
    );
    // ...and the connector can read the stage list with SOQL.
    let q = env
        .query_ok("SELECT ApiName FROM OpportunityStage WHERE IsWon = true ORDER BY ApiName")
        .await;
    assert_eq!(
        crate::common::column(&q, "ApiName"),
        ["Closed Won", "Won via Partner Center"]
    );
    let bad = env
        .control(
            Method::PUT,
            "/_sandbox/salesforce/stages",
            Some(json!([{"name": "Odd", "isWon": true}])),
        )
        .await;
    assert_eq!(bad.status(), 400, "won but not closed");
}

#[tokio::test]
async fn lookups_must_name_existing_records_of_the_right_object() {
    let env = Env::start().await;
    let contact = env.create("Contact", json!({"LastName": "Smith"})).await;
    // A well-formed account id whose record is gone.
    let missing_account = env.create("Account", json!({"Name": "Gone"})).await;
    let r = env
        .api(
            Method::DELETE,
            &format!("/sobjects/Account/{missing_account}"),
            None,
        )
        .await;
    assert_eq!(r.status(), 204);
    let cases = [
        (json!({"AccountId": "not-an-id"}), "MALFORMED_ID"),
        (json!({"AccountId": contact}), "MALFORMED_ID"),
        (
            json!({"AccountId": missing_account}),
            "INVALID_CROSS_REFERENCE_KEY",
        ),
    ];
    for (extra, expected) in cases {
        let (status, code, err) = error_code(
            env.api(
                Method::POST,
                "/sobjects/Opportunity/",
                Some(Env::opportunity("x", extra.clone())),
            )
            .await,
        )
        .await;
        assert_eq!((status, code.as_str()), (400, expected), "{extra}: {err}");
        assert_eq!(err[0]["fields"], json!(["AccountId"]));
    }
}

#[tokio::test]
async fn values_are_checked_against_their_types() {
    let env = Env::start().await;
    let cases = [
        (json!({"Name": "x".repeat(121)}), "STRING_TOO_LONG"),
        (json!({"CloseDate": "30/06/2030"}), "JSON_PARSER_ERROR"),
        (json!({"Amount": "lots"}), "JSON_PARSER_ERROR"),
        (json!({"Amount": 1e17}), "NUMBER_OUTSIDE_VALID_RANGE"),
        (
            json!({"Sync_with_Partner_Center__c": 3}),
            "JSON_PARSER_ERROR",
        ),
    ];
    for (extra, expected) in cases {
        let (status, code, err) = error_code(
            env.api(
                Method::POST,
                "/sobjects/Opportunity/",
                Some(Env::opportunity("x", extra.clone())),
            )
            .await,
        )
        .await;
        assert_eq!((status, code.as_str()), (400, expected), "{extra}: {err}");
    }
    let (status, code, _) = error_code(
        env.api(
            Method::POST,
            "/sobjects/Contact/",
            Some(json!({"LastName": "S", "Email": "nope"})),
        )
        .await,
    )
    .await;
    assert_eq!((status, code.as_str()), (400, "INVALID_EMAIL_ADDRESS"));
    // The connector's Audit field holds 100,000 characters.
    let id = env
        .create(
            "Opportunity",
            Env::opportunity("x", json!({"Audit__c": "a".repeat(100_000)})),
        )
        .await;
    assert_eq!(
        env.get("Opportunity", &id).await["Audit__c"]
            .as_str()
            .map(str::len),
        Some(100_000)
    );
}

#[tokio::test]
async fn a_human_edit_is_recorded_as_the_seller() {
    let env = Env::start().await;
    let id = env
        .create("Opportunity", Env::opportunity("x", json!({})))
        .await;
    let before = env.get("Opportunity", &id).await;
    let r = env
        .control(
            Method::PATCH,
            &format!("/_sandbox/salesforce/Opportunity/{id}"),
            Some(json!({"StageName": "Qualification", "Sync_with_Partner_Center__c": true})),
        )
        .await;
    assert_eq!(r.status(), 200);
    let after = env.get("Opportunity", &id).await;
    assert_eq!(after["LastModifiedById"], env.app["sellerUserId"]);
    assert_ne!(after["LastModifiedById"], env.app["userId"]);
    assert_eq!(after["CreatedById"], env.app["userId"]);
    assert!(after["SystemModstamp"].as_str() >= before["SystemModstamp"].as_str());
    assert_eq!(after["Sync_with_Partner_Center__c"], true);
    // A human edit obeys the same rules.
    let r = env
        .control(
            Method::PATCH,
            &format!("/_sandbox/salesforce/Opportunity/{id}"),
            Some(json!({"StageName": "Nope"})),
        )
        .await;
    let (status, code, _) = error_code(r).await;
    assert_eq!(
        (status, code.as_str()),
        (400, "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST")
    );
    // The seller can also create and delete; every row is readable without a token.
    let r = env
        .control(
            Method::POST,
            "/_sandbox/salesforce/Lead",
            Some(json!({"LastName": "L", "Company": "C"})),
        )
        .await;
    assert_eq!(r.status(), 201);
    let lead: Value = r.json().await.expect("json");
    assert_eq!(lead["CreatedById"], env.app["sellerUserId"]);
    let all: Vec<Value> = env
        .control(Method::GET, "/_sandbox/salesforce/Opportunity", None)
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(all.len(), 1);
    let r = env
        .control(
            Method::DELETE,
            &format!("/_sandbox/salesforce/Opportunity/{id}"),
            None,
        )
        .await;
    assert_eq!(r.status(), 204);
}

#[tokio::test]
async fn deleting_an_opportunity_takes_its_contact_roles_and_solutions() {
    let env = Env::start().await;
    let contact = env.create("Contact", json!({"LastName": "Smith"})).await;
    let opp = env
        .create(
            "Opportunity",
            Env::opportunity("x", json!({"ContactId": contact})),
        )
        .await;
    let role = env
        .create(
            "OpportunityContactRole",
            json!({"OpportunityId": opp, "ContactId": contact, "IsPrimary": true, "Role": "Decision Maker"}),
        )
        .await;
    assert!(role.starts_with("00K"));
    let solution = env
        .create(
            "Microsoft_Solution__c",
            json!({"Solution_Id__c": "SOL-1", "Opportunity__c": opp}),
        )
        .await;
    assert!(solution.starts_with("a0X"));
    let r = env
        .api(
            Method::DELETE,
            &format!("/sobjects/Opportunity/{opp}"),
            None,
        )
        .await;
    assert_eq!(r.status(), 204);
    for (object, id) in [
        ("OpportunityContactRole", &role),
        ("Microsoft_Solution__c", &solution),
    ] {
        let r = env
            .api(Method::GET, &format!("/sobjects/{object}/{id}"), None)
            .await;
        assert_eq!(r.status(), 404, "{object}");
    }
    // The contact stays.
    assert_eq!(env.get("Contact", &contact).await["LastName"], "Smith");
}

#[tokio::test]
async fn if_unmodified_since_refuses_a_stale_update() {
    let env = Env::start().await;
    let id = env
        .create("Opportunity", Env::opportunity("x", json!({})))
        .await;
    let long_ago = "Mon, 01 Jan 2024 00:00:00 GMT";
    let resp = env
        .http
        .patch(env.url(&format!("/services/data/v62.0/sobjects/Opportunity/{id}")))
        .bearer_auth(&env.token)
        .header("If-Unmodified-Since", long_ago)
        .json(&json!({"Name": "y"}))
        .send()
        .await
        .expect("sent");
    let (status, code, _) = error_code(resp).await;
    assert_eq!((status, code.as_str()), (412, "PRECONDITION_FAILED"));
    assert_eq!(env.get("Opportunity", &id).await["Name"], "x");
}

#[tokio::test]
async fn user_and_stage_rows_are_read_only() {
    let env = Env::start().await;
    let (status, code, _) = error_code(
        env.api(
            Method::POST,
            "/sobjects/User/",
            Some(json!({"Username": "x@y.z"})),
        )
        .await,
    )
    .await;
    assert_eq!((status, code.as_str()), (400, "INVALID_TYPE_FOR_OPERATION"));
    let q = env
        .query_ok("SELECT Id, Username FROM User WHERE Username = 'seller@sandbox.test'")
        .await;
    assert_eq!(q["records"][0]["Id"], env.app["sellerUserId"]);
}
