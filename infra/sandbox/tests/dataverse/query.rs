use std::collections::BTreeSet;

use reqwest::Method;
use serde_json::{Value, json};

use crate::common::Dv;

fn names(v: &Value) -> Vec<String> {
    v["value"]
        .as_array()
        .expect("value array")
        .iter()
        .map(|r| r["name"].as_str().unwrap_or_default().to_string())
        .collect()
}

async fn seed(dv: &Dv) -> String {
    let parent = dv.account("Parent Group").await;
    for (name, city, country) in [
        ("Alpha Oslo", "Oslo", "NO"),
        ("Beta Bergen", "Bergen", "NO"),
        ("Gamma Stockholm", "Stockholm", "SE"),
        ("Delta Oslo", "Oslo", "NO"),
    ] {
        dv.create(
            "accounts",
            json!({
                "name": name, "address1_city": city, "address1_country": country,
                "parentaccountid@odata.bind": format!("/accounts({parent})"),
            }),
        )
        .await;
    }
    parent
}

#[tokio::test]
async fn filter_operators_select_and_orderby() {
    let dv = Dv::start().await;
    let parent = seed(&dv).await;
    let q = |f: &str| format!("accounts?$select=name&$filter={f}&$orderby=name");
    let r = dv.get(&q("address1_city eq 'oslo'")).await;
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(
        names(&r.body),
        ["Alpha Oslo", "Delta Oslo"],
        "case-insensitive eq"
    );
    assert!(
        r.body["value"][0].get("address1_city").is_none(),
        "$select applies"
    );
    assert!(
        r.body["@odata.context"]
            .as_str()
            .expect("context")
            .ends_with("$metadata#accounts(name)")
    );
    let r = dv
        .get(&q("address1_country ne 'NO' and address1_country ne null"))
        .await;
    assert_eq!(names(&r.body), ["Gamma Stockholm"]);
    let r = dv
        .get(&q("contains(name,'ta') or startswith(name,'Gam')"))
        .await;
    assert_eq!(
        names(&r.body),
        ["Beta Bergen", "Delta Oslo", "Gamma Stockholm"]
    );
    let r = dv
        .get(&q(&format!(
            "_parentaccountid_value eq {parent} and not endswith(name,'Oslo')"
        )))
        .await;
    assert_eq!(names(&r.body), ["Beta Bergen", "Gamma Stockholm"]);
    let r = dv.get(&q("name gt 'C' and name le 'Delta Oslo'")).await;
    assert_eq!(names(&r.body), ["Delta Oslo"]);
    let r = dv
        .get("accounts?$select=name&$filter=createdon ge 2020-01-01T00:00:00Z&$orderby=name desc&$top=2")
        .await;
    assert_eq!(names(&r.body), ["Parent Group", "Gamma Stockholm"], "{r:?}");
    let r = dv
        .get("accounts?$filter=_parentaccountid_value ne null&$count=true&$select=name")
        .await;
    assert_eq!(r.body["@odata.count"], 4, "{r:?}");
    let r = dv.get("accounts/$count").await;
    assert_eq!(r.body, json!(5), "{r:?}");
}

#[tokio::test]
async fn unknown_columns_and_bad_syntax_in_queries_are_400() {
    let dv = Dv::start().await;
    for path in [
        "accounts?$select=name,nonexistent",
        "accounts?$filter=nonexistent eq 1",
        "accounts?$orderby=nonexistent",
        "accounts?$filter=name eq",
        "accounts?$filter=parentaccountid eq null",
    ] {
        let r = dv.get(path).await;
        assert_eq!(r.status, 400, "{path}: {r:?}");
    }
    let r = dv.get("nosuchtable").await;
    assert_eq!(r.status, 404, "{r:?}");
}

#[tokio::test]
async fn skip_is_refused() {
    let dv = Dv::start().await;
    let r = dv.get("accounts?$skip=10").await;
    assert_eq!(r.status, 400, "{r:?}");
    assert!(r.message().contains("$skip"), "{r:?}");
}

#[tokio::test]
async fn maxpagesize_pages_through_next_links() {
    let dv = Dv::start().await;
    for i in 0..7 {
        dv.account(&format!("Paged {i}")).await;
    }
    dv.account("Other").await;
    let mut url =
        "accounts?$select=name&$filter=startswith(name,'Paged')&$orderby=name desc&$top=1"
            .to_string();
    let mut pages = Vec::new();
    loop {
        let r = dv
            .call_with(
                Method::GET,
                &url,
                None,
                &[("Prefer", "odata.maxpagesize=3")],
            )
            .await;
        assert_eq!(r.status, 200, "{r:?}");
        assert_eq!(r.header("Preference-Applied"), Some("odata.maxpagesize=3"));
        pages.push(names(&r.body));
        match r.body["@odata.nextLink"].as_str() {
            Some(next) => {
                assert!(next.contains("$skiptoken="), "{next}");
                url = next.to_string();
            }
            None => break,
        }
        assert!(pages.len() < 10, "paging never ends");
    }
    let sizes: Vec<usize> = pages.iter().map(Vec::len).collect();
    assert_eq!(
        sizes,
        [3, 3, 1],
        "$top is ignored with a maxpagesize: {pages:?}"
    );
    let all: Vec<String> = pages.concat();
    let expected: Vec<String> = (0..7).rev().map(|i| format!("Paged {i}")).collect();
    assert_eq!(all, expected);
    assert_eq!(all.iter().collect::<BTreeSet<_>>().len(), 7);
}

#[tokio::test]
async fn currencies_are_seeded_and_looked_up_by_iso_code() {
    let dv = Dv::start().await;
    let r = dv
        .get("transactioncurrencies?$select=isocurrencycode,currencyname&$filter=isocurrencycode eq 'HUF'")
        .await;
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.body["value"].as_array().map(Vec::len), Some(1));
    assert_eq!(r.body["value"][0]["isocurrencycode"], "HUF");
    for iso in ["USD", "EUR", "GBP", "NOK", "SEK"] {
        dv.currency(iso).await;
    }
    let r = dv
        .get("transactioncurrencies?$filter=isocurrencycode eq 'XYZ'")
        .await;
    assert_eq!(r.body["value"], json!([]));
}

#[tokio::test]
async fn an_organisation_can_lack_a_currency() {
    let mut config = cosell_sandbox::dataverse::Config::default();
    config.currencies.retain(|c| c.iso != "NOK");
    let dv = Dv::with(config).await;
    let r = dv
        .get("transactioncurrencies?$filter=isocurrencycode eq 'NOK'")
        .await;
    assert_eq!(r.body["value"], json!([]), "{r:?}");
}
