//! Parent-to-child subqueries: `(SELECT … FROM <ChildRelationship> …)` in a select list.

use cosell_sandbox::salesforce::Config;
use reqwest::Method;
use serde_json::{Value, json};

use crate::common::{Env, V, error_code};

/// Contact roles made one minute apart, so `CreatedDate` orders them.
struct Roles {
    /// Three roles: an evaluator, the primary decision maker, an influencer.
    busy: String,
    busy_roles: Vec<String>,
    busy_contacts: Vec<String>,
    /// No role at all.
    bare: String,
    /// One role on the contact "Cole", not primary.
    single: String,
}

async fn seed(env: &Env) -> Roles {
    let busy = env
        .create("Opportunity", Env::opportunity("A busy deal", json!({})))
        .await;
    let bare = env
        .create("Opportunity", Env::opportunity("B bare deal", json!({})))
        .await;
    let single = env
        .create("Opportunity", Env::opportunity("C single deal", json!({})))
        .await;
    let mut busy_roles = Vec::new();
    let mut busy_contacts = Vec::new();
    for (last, role, primary) in [
        ("Avery", "Evaluator", false),
        ("Bowman", "Decision Maker", true),
        ("Chen", "Influencer", false),
    ] {
        let contact = env.create("Contact", json!({"LastName": last})).await;
        let id = env
            .create(
                "OpportunityContactRole",
                json!({"OpportunityId": busy, "ContactId": contact, "Role": role, "IsPrimary": primary}),
            )
            .await;
        busy_roles.push(id);
        busy_contacts.push(contact);
        env.advance(json!({"minutes": 1})).await;
    }
    let cole = env.create("Contact", json!({"LastName": "Cole"})).await;
    env.create(
        "OpportunityContactRole",
        json!({"OpportunityId": single, "ContactId": cole, "Role": "Other"}),
    )
    .await;
    Roles {
        busy,
        busy_roles,
        busy_contacts,
        bare,
        single,
    }
}

fn role_url(id: &str) -> String {
    format!("/services/data/{V}/sobjects/OpportunityContactRole/{id}")
}

#[tokio::test]
async fn the_primary_contact_role_nests_under_its_opportunity() {
    let env = Env::start().await;
    let s = seed(&env).await;
    let r = env
        .query_ok(&format!(
            "SELECT Id, Name, (SELECT ContactId, IsPrimary FROM OpportunityContactRoles \
             WHERE IsPrimary = true ORDER BY CreatedDate ASC LIMIT 1) \
             FROM Opportunity WHERE Id = '{}'",
            s.busy
        ))
        .await;
    assert_eq!(
        (r["totalSize"].clone(), r["done"].clone()),
        (json!(1), json!(true))
    );
    let opp = &r["records"][0];
    let keys: Vec<&str> = opp
        .as_object()
        .expect("object")
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(
        keys,
        ["attributes", "Id", "Name", "OpportunityContactRoles"]
    );
    assert_eq!(
        opp["OpportunityContactRoles"],
        json!({
            "totalSize": 1,
            "done": true,
            "records": [{
                "attributes": {"type": "OpportunityContactRole", "url": role_url(&s.busy_roles[1])},
                "ContactId": s.busy_contacts[1],
                "IsPrimary": true,
            }],
        })
    );
}

#[tokio::test]
async fn each_parent_gets_its_own_children_or_null() {
    let env = Env::start().await;
    let s = seed(&env).await;
    // Written in lower case, answered under the relationship's own spelling; the subquery
    // follows a lookup of its own (Contact.LastName) and orders newest first.
    let r = env
        .query_ok(
            "SELECT Name, (select Role, Contact.LastName from opportunitycontactroles \
             order by CreatedDate desc) FROM Opportunity ORDER BY Name",
        )
        .await;
    let records = r["records"].as_array().expect("records");
    assert_eq!(records.len(), 3);
    let busy = &records[0]["OpportunityContactRoles"];
    assert_eq!(busy["totalSize"], 3);
    assert_eq!(busy["done"], true);
    let roles: Vec<(&str, &str)> = busy["records"]
        .as_array()
        .expect("roles")
        .iter()
        .map(|c| {
            (
                c["Role"].as_str().unwrap_or_default(),
                c["Contact"]["LastName"].as_str().unwrap_or_default(),
            )
        })
        .collect();
    assert_eq!(
        roles,
        [
            ("Influencer", "Chen"),
            ("Decision Maker", "Bowman"),
            ("Evaluator", "Avery"),
        ]
    );
    assert_eq!(
        busy["records"][2]["attributes"]["url"],
        role_url(&s.busy_roles[0])
    );
    assert_eq!(
        busy["records"][2]["Contact"]["attributes"]["type"],
        "Contact"
    );
    assert!(
        records[1]
            .as_object()
            .expect("object")
            .get("OpportunityContactRoles")
            .is_some_and(Value::is_null),
        "no roles: the key is there, null: {}",
        records[1]
    );
    assert_eq!(records[2]["OpportunityContactRoles"]["totalSize"], 1);
    assert_eq!(
        records[2]["OpportunityContactRoles"]["records"][0]["Contact"]["LastName"],
        "Cole"
    );

    assert_eq!(
        records[1]["attributes"]["url"],
        format!("/services/data/{V}/sobjects/Opportunity/{}", s.bare)
    );

    // A WHERE that keeps none of a parent's children leaves it null.
    let in_two = format!("WHERE Id IN ('{}', '{}')", s.busy, s.single);
    let r = env
        .query_ok(&format!(
            "SELECT Id, (SELECT Id FROM OpportunityContactRoles WHERE Role = 'Other') \
             FROM Opportunity {in_two}"
        ))
        .await;
    assert!(r["records"][0]["OpportunityContactRoles"].is_null(), "{r}");
    assert_eq!(r["records"][1]["OpportunityContactRoles"]["totalSize"], 1);
    // LIMIT cuts each parent's children; FROM may name the relationship through the parent.
    let r = env
        .query_ok(&format!(
            "SELECT Id, (SELECT Role FROM Opportunity.OpportunityContactRoles LIMIT 2) \
             FROM Opportunity {in_two}"
        ))
        .await;
    assert_eq!(r["records"][0]["OpportunityContactRoles"]["totalSize"], 2);
    assert_eq!(r["records"][1]["OpportunityContactRoles"]["totalSize"], 1);
}

#[tokio::test]
async fn a_contact_lists_its_roles_too() {
    let env = Env::start().await;
    let s = seed(&env).await;
    let r = env
        .query_ok(&format!(
            "SELECT LastName, (SELECT OpportunityId, Opportunity.Name FROM OpportunityContactRoles) \
             FROM Contact WHERE Id = '{}'",
            s.busy_contacts[2]
        ))
        .await;
    let roles = &r["records"][0]["OpportunityContactRoles"];
    assert_eq!(roles["totalSize"], 1, "{r}");
    assert_eq!(roles["records"][0]["OpportunityId"], json!(s.busy));
    assert_eq!(roles["records"][0]["Opportunity"]["Name"], "A busy deal");
}

#[tokio::test]
async fn subquery_errors_are_salesforces() {
    let env = Env::start().await;
    let cases = [
        (
            "SELECT Id, (SELECT Id FROM Contacts) FROM Opportunity",
            "INVALID_TYPE",
            "Didn't understand relationship 'Contacts' in FROM part of query call",
            "Row:1:Column:28",
        ),
        (
            "SELECT Id, (SELECT Id FROM OpportunityContactRole) FROM Opportunity",
            "INVALID_TYPE",
            "Didn't understand relationship 'OpportunityContactRole'",
            "Column:28",
        ),
        (
            "SELECT Id, (SELECT Id FROM OpportunityContactRoles) FROM Account",
            "INVALID_TYPE",
            "'OpportunityContactRoles'",
            "Column:28",
        ),
        (
            "SELECT Id, (SELECT Id FROM Account.OpportunityContactRoles) FROM Opportunity",
            "INVALID_TYPE",
            "'Account.OpportunityContactRoles'",
            "Column:28",
        ),
        (
            "SELECT Id, (SELECT Id FROM Opportunity.Opportunity.OpportunityContactRoles) FROM Opportunity",
            "MALFORMED_QUERY",
            "unexpected token",
            "Column:28",
        ),
        (
            "SELECT Id, (SELECT Nope__c FROM OpportunityContactRoles) FROM Opportunity",
            "INVALID_FIELD",
            "No such column 'Nope__c' on entity 'OpportunityContactRole'",
            "Column:20",
        ),
        (
            "SELECT Id, (SELECT Id FROM OpportunityContactRoles WHERE IsPrimary = 'yes') FROM Opportunity",
            "INVALID_FIELD",
            "boolean",
            "Column:70",
        ),
        (
            "SELECT Id, (SELECT Id FROM OpportunityContactRoles LIMIT 5 OFFSET 1) FROM Opportunity",
            "MALFORMED_QUERY",
            "OFFSET",
            "Column:60",
        ),
        (
            "SELECT Id, (SELECT Id FROM OpportunityContactRoles), (SELECT Role FROM OpportunityContactRoles) FROM Opportunity",
            "MALFORMED_QUERY",
            "duplicate",
            "Column:72",
        ),
        (
            "SELECT Id, (SELECT Id FROM OpportunityContactRoles FROM Opportunity",
            "MALFORMED_QUERY",
            "unexpected token: FROM",
            "Column:52",
        ),
    ];
    for (soql, expected, mention, at) in cases {
        let (status, code, err) = error_code(env.query(soql).await).await;
        assert_eq!((status, code.as_str()), (400, expected), "{soql}: {err}");
        let message = err[0]["message"].as_str().unwrap_or_default();
        assert!(message.contains(mention), "{soql}: {message}");
        assert!(message.contains(at), "{soql}: {message}");
    }
}

#[tokio::test]
async fn a_subquery_may_skip_rows_under_a_single_parent() {
    let env = Env::start().await;
    let s = seed(&env).await;
    let r = env
        .query_ok(&format!(
            "SELECT Id, (SELECT Role FROM OpportunityContactRoles ORDER BY CreatedDate LIMIT 1 OFFSET 1) \
             FROM Opportunity WHERE Id = '{}' LIMIT 1",
            s.busy
        ))
        .await;
    let roles = &r["records"][0]["OpportunityContactRoles"];
    assert_eq!(roles["totalSize"], 1, "{r}");
    assert_eq!(roles["records"][0]["Role"], "Decision Maker");
}

#[tokio::test]
async fn child_relationships_declared_in_the_schema_nest_up_to_the_version_limit() {
    let env = Env::start().await;
    let s = seed(&env).await;
    // A custom lookup from solution links to a contact role, declaring its child relationship.
    let r = env
        .control(
            Method::POST,
            "/_sandbox/salesforce/schema/Microsoft_Solution__c/fields",
            Some(json!({
                "name": "Contact_Role__c",
                "type": "reference",
                "referenceTo": ["OpportunityContactRole"],
                "childRelationshipName": "Solution_Links__r",
            })),
        )
        .await;
    assert_eq!(r.status(), 201);
    env.create(
        "Microsoft_Solution__c",
        json!({"Solution_Id__c": "S-9", "Opportunity__c": s.busy, "Contact_Role__c": s.busy_roles[1]}),
    )
    .await;
    let soql = format!(
        "SELECT Name, (SELECT Role, (SELECT Solution_Id__c FROM Solution_Links__r) \
         FROM OpportunityContactRoles ORDER BY CreatedDate) FROM Opportunity WHERE Id = '{}'",
        s.busy
    );
    let r = env.query_ok(&soql).await;
    let roles = &r["records"][0]["OpportunityContactRoles"]["records"];
    assert!(roles[0]["Solution_Links__r"].is_null(), "{r}");
    assert_eq!(
        roles[1]["Solution_Links__r"]["records"][0],
        json!({
            "attributes": {
                "type": "Microsoft_Solution__c",
                "url": roles[1]["Solution_Links__r"]["records"][0]["attributes"]["url"],
            },
            "Solution_Id__c": "S-9",
        })
    );
    assert_eq!(
        roles[1]["Solution_Links__r"]["records"][0]["attributes"]["url"]
            .as_str()
            .map(|u| u.starts_with("/services/data/v62.0/sobjects/Microsoft_Solution__c/a0X")),
        Some(true)
    );
    // The lookup the seeded schema leaves without a child relationship is not queryable
    // from the parent.
    let (status, code, _) = error_code(
        env.query("SELECT Id, (SELECT Id FROM Microsoft_Solutions__r) FROM Opportunity")
            .await,
    )
    .await;
    assert_eq!((status, code.as_str()), (400, "INVALID_TYPE"));
    // Before API version 58.0 a query reaches one level of children only.
    let resp = env
        .api(
            Method::GET,
            &format!("/services/data/v57.0/query?q={}", crate::common::enc(&soql)),
            None,
        )
        .await;
    let (status, code, err) = error_code(resp).await;
    assert_eq!((status, code.as_str()), (400, "MALFORMED_QUERY"), "{err}");
    let one_level = format!(
        "SELECT Name, (SELECT Role FROM OpportunityContactRoles) FROM Opportunity WHERE Id = '{}'",
        s.busy
    );
    let resp = env
        .api(
            Method::GET,
            &format!(
                "/services/data/v57.0/query?q={}",
                crate::common::enc(&one_level)
            ),
            None,
        )
        .await;
    assert_eq!(resp.status(), 200);
}

#[tokio::test]
async fn batches_carry_their_children_and_each_query_counts_once() {
    let env = Env::with(Config {
        query_batch_size: 2,
        ..Default::default()
    })
    .await;
    let contact = env.create("Contact", json!({"LastName": "Dale"})).await;
    for i in 1..=5 {
        let opp = env
            .create("Opportunity", Env::opportunity(&format!("O{i}"), json!({})))
            .await;
        // Every other opportunity has a role.
        if i % 2 == 1 {
            env.create(
                "OpportunityContactRole",
                json!({"OpportunityId": opp, "ContactId": contact, "Role": "Other"}),
            )
            .await;
        }
    }
    let r = env.control(Method::DELETE, "/_sandbox/stats", None).await;
    assert!(r.status().is_success());
    let mut page = env
        .query_ok(
            "SELECT Name, (SELECT ContactId FROM OpportunityContactRoles) FROM Opportunity ORDER BY Name",
        )
        .await;
    assert_eq!(
        (page["totalSize"].clone(), page["done"].clone()),
        (json!(5), json!(false))
    );
    let mut seen = Vec::new();
    loop {
        for rec in page["records"].as_array().expect("records") {
            let roles = &rec["OpportunityContactRoles"];
            seen.push((
                rec["Name"].as_str().unwrap_or_default().to_string(),
                if roles.is_null() {
                    0
                } else {
                    assert_eq!(roles["records"][0]["ContactId"], json!(contact));
                    roles["totalSize"].as_u64().unwrap_or(99)
                },
            ));
        }
        if page["done"] == true {
            break;
        }
        let next = page["nextRecordsUrl"].as_str().expect("next").to_string();
        let resp = env.api(Method::GET, &next, None).await;
        assert_eq!(resp.status(), 200);
        page = resp.json().await.expect("json");
    }
    let expected: Vec<(String, u64)> = (1..=5)
        .map(|i| (format!("O{i}"), if i % 2 == 1 { 1 } else { 0 }))
        .collect();
    assert_eq!(seen, expected);
    let stats = env.stats().await;
    assert_eq!(stats["GET /services/data/v{version}/query"], 1, "{stats}");
    assert_eq!(
        stats["GET /services/data/v{version}/query/{locator}"], 2,
        "{stats}"
    );
}
