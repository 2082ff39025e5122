//! SOQL, query paging, Get Updated and Get Deleted.

use cosell_sandbox::salesforce::Config;
use reqwest::Method;
use serde_json::{Value, json};

use crate::common::{Env, column, enc, error_code};

/// Five opportunities, two with an account, for the operator tests.
async fn seed(env: &Env) -> String {
    let account = env.create("Account", json!({"Name": "Contoso"})).await;
    for (name, stage, amount, close, extra) in [
        (
            "Alpha",
            "Prospecting",
            Some(100.0),
            "2024-01-15",
            json!({"AccountId": account}),
        ),
        (
            "beta",
            "Closed Won",
            Some(2500.0),
            "2024-05-01",
            json!({"AccountId": account, "Referral_Identifier__c": "R-2"}),
        ),
        ("Gamma 50%", "Closed Lost", None, "2024-06-30", json!({})),
        (
            "Delta",
            "On Hold",
            Some(2500.0),
            "2023-12-31",
            json!({"Referral_Identifier__c": "R-4"}),
        ),
        (
            "O'Neil deal",
            "Qualification",
            Some(10.5),
            "2024-05-02",
            json!({}),
        ),
    ] {
        let mut body = Env::opportunity(name, extra);
        body["StageName"] = json!(stage);
        body["CloseDate"] = json!(close);
        if let Some(a) = amount {
            body["Amount"] = json!(a);
        }
        env.create("Opportunity", body).await;
    }
    account
}

async fn names(env: &Env, soql: &str) -> Vec<String> {
    column(&env.query_ok(soql).await, "Name")
}

#[tokio::test]
async fn where_operators_filter_rows() {
    let env = Env::start().await;
    seed(&env).await;
    let base = "SELECT Name FROM Opportunity WHERE";
    let cases: &[(&str, &[&str])] = &[
        ("Name = 'BETA'", &["beta"]),
        (
            "Name != 'beta'",
            &["Alpha", "Gamma 50%", "Delta", "O'Neil deal"],
        ),
        ("Amount > 100", &["beta", "Delta"]),
        ("Amount >= 100", &["Alpha", "beta", "Delta"]),
        ("Amount < 100", &["O'Neil deal"]),
        ("Amount <= 10.5", &["O'Neil deal"]),
        ("Amount = null", &["Gamma 50%"]),
        (
            "Amount != null AND Amount < 2500",
            &["Alpha", "O'Neil deal"],
        ),
        (
            "Referral_Identifier__c != 'R-2'",
            &["Alpha", "Gamma 50%", "Delta", "O'Neil deal"],
        ),
        (
            "StageName IN ('Closed Won', 'Closed Lost')",
            &["beta", "Gamma 50%"],
        ),
        (
            "StageName NOT IN ('Closed Won', 'Closed Lost')",
            &["Alpha", "Delta", "O'Neil deal"],
        ),
        ("Name LIKE 'a%'", &["Alpha"]),
        ("Name LIKE '%ta'", &["beta", "Delta"]),
        ("Name LIKE '_eta'", &["beta"]),
        ("Name LIKE '%50\\%'", &["Gamma 50%"]),
        ("Name = 'O\\'Neil deal'", &["O'Neil deal"]),
        (
            "CloseDate >= 2024-05-01",
            &["beta", "Gamma 50%", "O'Neil deal"],
        ),
        ("CloseDate < 2024-01-01", &["Delta"]),
        ("IsClosed = true", &["beta", "Gamma 50%"]),
        ("IsWon = false AND IsClosed = true", &["Gamma 50%"]),
        (
            "(Amount = 2500 OR Amount = null) AND NOT Name = 'Delta'",
            &["beta", "Gamma 50%"],
        ),
        (
            "Name = 'Alpha' OR (StageName = 'On Hold' AND Amount > 1000)",
            &["Alpha", "Delta"],
        ),
        ("Account.Name = 'Contoso'", &["Alpha", "beta"]),
        (
            "SystemModstamp > 2020-01-01T00:00:00Z",
            &["Alpha", "beta", "Gamma 50%", "Delta", "O'Neil deal"],
        ),
        ("SystemModstamp < 2020-01-01T00:00:00.000+0000", &[]),
    ];
    for (cond, expected) in cases {
        assert_eq!(
            names(&env, &format!("{base} {cond}")).await,
            *expected,
            "{cond}"
        );
    }
    // Keywords and names are case-insensitive; the answer uses the canonical names.
    let r = env
        .query_ok("select name, amount from opportunity where name = 'alpha'")
        .await;
    assert_eq!(r["records"][0]["Name"], "Alpha");
    assert_eq!(r["records"][0]["Amount"], 100.0);
}

#[tokio::test]
async fn order_by_limit_offset_and_parent_fields() {
    let env = Env::start().await;
    let account = seed(&env).await;
    assert_eq!(
        names(
            &env,
            "SELECT Name FROM Opportunity ORDER BY Amount DESC, Name"
        )
        .await,
        ["Gamma 50%", "beta", "Delta", "Alpha", "O'Neil deal"],
        "nulls first by default, names case-insensitively"
    );
    assert_eq!(
        names(
            &env,
            "SELECT Name FROM Opportunity ORDER BY Amount ASC NULLS LAST LIMIT 2"
        )
        .await,
        ["O'Neil deal", "Alpha"]
    );
    assert_eq!(
        names(
            &env,
            "SELECT Name FROM Opportunity ORDER BY Name LIMIT 2 OFFSET 1"
        )
        .await,
        ["beta", "Delta"]
    );
    assert_eq!(
        names(
            &env,
            "SELECT Name FROM Opportunity ORDER BY CloseDate DESC LIMIT 1"
        )
        .await,
        ["Gamma 50%"]
    );
    let r = env
        .query_ok("SELECT Id, Name, Account.Name FROM Opportunity ORDER BY Name LIMIT 2")
        .await;
    assert_eq!(r["totalSize"], 2);
    assert_eq!(r["done"], true);
    let first = &r["records"][0];
    let keys: Vec<&str> = first
        .as_object()
        .expect("object")
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(keys, ["attributes", "Id", "Name", "Account"]);
    assert_eq!(first["attributes"]["type"], "Opportunity");
    assert_eq!(first["Account"]["Name"], "Contoso");
    assert_eq!(
        first["Account"]["attributes"]["url"],
        format!("/services/data/v62.0/sobjects/Account/{account}")
    );
    let r = env
        .query_ok("SELECT Name, Account.Name FROM Opportunity WHERE Name = 'Delta'")
        .await;
    assert!(r["records"][0]["Account"].is_null());
    let r = env
        .query_ok("SELECT COUNT() FROM Opportunity WHERE Amount = 2500")
        .await;
    assert_eq!(r["totalSize"], 2);
    assert_eq!(r["records"], json!([]));
    // Solutions of an opportunity, through the custom lookup's relationship.
    let opp = env
        .query_ok("SELECT Id FROM Opportunity WHERE Name = 'Alpha'")
        .await["records"][0]["Id"]
        .as_str()
        .expect("id")
        .to_string();
    env.create(
        "Microsoft_Solution__c",
        json!({"Solution_Id__c": "S-1", "Opportunity__c": opp}),
    )
    .await;
    let r = env
        .query_ok(&format!("SELECT Solution_Id__c, Opportunity__r.Name FROM Microsoft_Solution__c WHERE Opportunity__c = '{}'", &opp[..15]))
        .await;
    assert_eq!(r["records"][0]["Opportunity__r"]["Name"], "Alpha");
}

#[tokio::test]
async fn malformed_queries_name_the_position() {
    let env = Env::start().await;
    let cases = [
        (
            "SELECT Id FROM Opportunity WHERE",
            "MALFORMED_QUERY",
            "Column:33",
        ),
        (
            "SELECT Id FROM Opportunity WHERE Name = 'a' AND Amount = 1 OR Amount = 2",
            "MALFORMED_QUERY",
            "Column:60",
        ),
        (
            "SELECT Id, Nope__c FROM Opportunity",
            "INVALID_FIELD",
            "Nope__c",
        ),
        (
            "SELECT Id FROM Opportunity WHERE CloseDate = '2024-05-01'",
            "INVALID_FIELD",
            "date",
        ),
        (
            "SELECT Id FROM Opportunity WHERE Name = 5",
            "INVALID_FIELD",
            "string",
        ),
        (
            "SELECT Id FROM Opportunity WHERE Amount LIKE '5%'",
            "INVALID_FIELD",
            "LIKE",
        ),
        (
            "SELECT Id FROM Opportunity WHERE AccountId = 'abc'",
            "INVALID_QUERY_FILTER_OPERATOR",
            "abc",
        ),
        (
            "SELECT Id FROM Opportunities",
            "INVALID_TYPE",
            "Opportunities",
        ),
        (
            "SELECT Id, Id FROM Opportunity",
            "MALFORMED_QUERY",
            "duplicate",
        ),
        (
            "SELECT Id FROM Opportunity GROUP BY Name",
            "MALFORMED_QUERY",
            "GROUP",
        ),
    ];
    for (soql, expected, mention) in cases {
        let (status, code, err) = error_code(env.query(soql).await).await;
        assert_eq!((status, code.as_str()), (400, expected), "{soql}: {err}");
        let message = err[0]["message"].as_str().unwrap_or_default();
        assert!(message.contains(mention), "{soql}: {message}");
    }
    let (status, code, _) = error_code(env.api(Method::GET, "/query", None).await).await;
    assert_eq!((status, code.as_str()), (400, "MALFORMED_QUERY"));
}

/// Follows `nextRecordsUrl` to the end; returns each batch's names.
async fn all_batches(env: &Env, first: Value) -> Vec<Vec<String>> {
    let mut batches = vec![column(&first, "Name")];
    let mut page = first;
    while page["done"] == false {
        let next = page["nextRecordsUrl"]
            .as_str()
            .expect("nextRecordsUrl")
            .to_string();
        assert!(next.starts_with("/services/data/v62.0/query/01g"), "{next}");
        let resp = env.api(Method::GET, &next, None).await;
        assert_eq!(resp.status(), 200);
        page = resp.json().await.expect("json");
        batches.push(column(&page, "Name"));
    }
    assert!(page.get("nextRecordsUrl").is_none());
    batches
}

#[tokio::test]
async fn paging_follows_next_records_url_until_done() {
    let env = Env::with(Config {
        query_batch_size: 2,
        ..Default::default()
    })
    .await;
    for i in 1..=5 {
        env.create("Lead", json!({"LastName": format!("L{i}"), "Company": "C"}))
            .await;
    }
    let first = env
        .query_ok("SELECT LastName, Name FROM Lead ORDER BY LastName")
        .await;
    assert_eq!(first["totalSize"], 5);
    assert_eq!(first["done"], false);
    let batches = all_batches(&env, first).await;
    assert_eq!(batches, [vec!["L1", "L2"], vec!["L3", "L4"], vec!["L5"]]);
    let (status, code, _) = error_code(env.api(Method::GET, "/query/01gNOPE-2", None).await).await;
    assert_eq!((status, code.as_str()), (400, "INVALID_QUERY_LOCATOR"));
}

#[tokio::test]
async fn sforce_query_options_sets_the_batch_size_within_200_to_2000() {
    let env = Env::start().await;
    for chunk in 0..3 {
        let records: Vec<Value> = (0..150)
            .map(|i| json!({"attributes": {"type": "Account"}, "Name": format!("A{chunk}-{i}")}))
            .collect();
        let r = env
            .api(
                Method::POST,
                "/composite/sobjects",
                Some(json!({"records": records})),
            )
            .await;
        assert_eq!(r.status(), 200);
    }
    // 5 is below the documented minimum, so the batch is 200: 450 rows in three batches.
    let resp = env
        .http
        .get(env.url(&format!(
            "/services/data/v62.0/query?q={}",
            enc("SELECT Name FROM Account")
        )))
        .bearer_auth(&env.token)
        .header("Sforce-Query-Options", "batchSize=5")
        .send()
        .await
        .expect("sent");
    let first: Value = resp.json().await.expect("json");
    let sizes: Vec<usize> = all_batches(&env, first)
        .await
        .iter()
        .map(Vec::len)
        .collect();
    assert_eq!(sizes, [200, 200, 50]);
    // Without the header the default batch of 2,000 holds them all.
    let all = env.query_ok("SELECT Name FROM Account").await;
    assert_eq!(
        (all["done"].clone(), all["totalSize"].clone()),
        (json!(true), json!(450))
    );
}

fn minute_of(stamp: &str) -> String {
    // `2024-05-01T10:20:30.123+0000` → `2024-05-01T10:20`
    stamp[..16].to_string()
}

#[tokio::test]
async fn get_updated_truncates_seconds_and_looks_back_30_days() {
    let env = Env::start().await;
    let id = env
        .create("Opportunity", Env::opportunity("x", json!({})))
        .await;
    let stamp = env.get("Opportunity", &id).await["SystemModstamp"]
        .as_str()
        .expect("stamp")
        .to_string();
    env.advance(json!({"minutes": 2})).await;
    // A start late in the record's minute still covers it: seconds are dropped.
    let start = format!("{}:59.999Z", minute_of(&stamp));
    let end = chrono::DateTime::from_timestamp(env.now().await, 0)
        .expect("now")
        .to_rfc3339();
    let path = format!(
        "/sobjects/Opportunity/updated/?start={}&end={}",
        enc(&start),
        enc(&end)
    );
    let resp = env.api(Method::GET, &path, None).await;
    assert_eq!(resp.status(), 200);
    let body: Value = resp.json().await.expect("json");
    assert_eq!(body["ids"], json!([id]));
    let covered = body["latestDateCovered"].as_str().expect("covered");
    assert!(covered.ends_with(":00.000+0000"), "{covered}");
    assert!(covered > stamp.as_str());

    // A window after the change is empty.
    let path = format!(
        "/sobjects/Opportunity/updated/?start={}&end={}",
        enc(covered),
        enc(&end)
    );
    let body: Value = env
        .api(Method::GET, &path, None)
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(body["ids"], json!([]));

    let month_ago = chrono::DateTime::from_timestamp(env.now().await - 31 * 24 * 3600, 0)
        .expect("then")
        .to_rfc3339();
    let path = format!(
        "/sobjects/Opportunity/updated/?start={}&end={}",
        enc(&month_ago),
        enc(&end)
    );
    let (status, code, _) = error_code(env.api(Method::GET, &path, None).await).await;
    assert_eq!((status, code.as_str()), (400, "INVALID_REPLICATION_DATE"));
    let path = format!(
        "/sobjects/Opportunity/updated/?start={}&end={}",
        enc(&end),
        enc(&start)
    );
    let (status, code, _) = error_code(env.api(Method::GET, &path, None).await).await;
    assert_eq!(
        (status, code.as_str()),
        (400, "INVALID_REPLICATION_DATE"),
        "start after end"
    );
}

#[tokio::test]
async fn get_deleted_lists_deleted_ids() {
    let env = Env::start().await;
    let keep = env
        .create("Lead", json!({"LastName": "K", "Company": "C"}))
        .await;
    let gone = env
        .create("Lead", json!({"LastName": "G", "Company": "C"}))
        .await;
    let start = chrono::DateTime::from_timestamp(env.now().await - 120, 0)
        .expect("start")
        .to_rfc3339();
    let r = env
        .api(Method::DELETE, &format!("/sobjects/Lead/{gone}"), None)
        .await;
    assert_eq!(r.status(), 204);
    env.advance(json!({"minutes": 2})).await;
    let end = chrono::DateTime::from_timestamp(env.now().await, 0)
        .expect("end")
        .to_rfc3339();
    let path = format!(
        "/sobjects/Lead/deleted/?start={}&end={}",
        enc(&start),
        enc(&end)
    );
    let body: Value = env
        .api(Method::GET, &path, None)
        .await
        .json()
        .await
        .expect("json");
    let deleted: Vec<&str> = body["deletedRecords"]
        .as_array()
        .expect("list")
        .iter()
        .filter_map(|d| d["id"].as_str())
        .collect();
    assert_eq!(deleted, [gone.as_str()]);
    assert_ne!(deleted, [keep.as_str()]);
    assert!(
        body["latestDateCovered"]
            .as_str()
            .is_some_and(|c| c.ends_with(":00.000+0000"))
    );
}

#[tokio::test]
async fn an_unused_query_locator_expires() {
    let env = Env::with(Config {
        query_batch_size: 1,
        ..Default::default()
    })
    .await;
    for name in ["a", "b", "c"] {
        env.create("Account", json!({"Name": name})).await;
    }
    let first = env.query_ok("SELECT Name FROM Account").await;
    let next = first["nextRecordsUrl"].as_str().expect("next").to_string();
    // Fetching keeps it alive...
    env.advance(json!({"minutes": 10})).await;
    let second: Value = env
        .api(Method::GET, &next, None)
        .await
        .json()
        .await
        .expect("json");
    let after = second["nextRecordsUrl"].as_str().expect("next").to_string();
    // ...an idle quarter of an hour does not.
    env.advance(json!({"minutes": 16})).await;
    let (status, code, _) = error_code(env.api(Method::GET, &after, None).await).await;
    assert_eq!((status, code.as_str()), (400, "INVALID_QUERY_LOCATOR"));
}
