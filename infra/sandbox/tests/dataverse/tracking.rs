use reqwest::Method;
use serde_json::{Value, json};

use crate::common::{Dv, Reply};

const TRACK: &[(&str, &str)] = &[("Prefer", "odata.track-changes")];

async fn track(dv: &Dv, url: &str) -> Reply {
    let r = dv.call_with(Method::GET, url, None, TRACK).await;
    assert_eq!(r.status, 200, "{url}: {r:?}");
    r
}

fn delta_link(r: &Reply) -> String {
    r.body["@odata.deltaLink"]
        .as_str()
        .unwrap_or_else(|| panic!("a deltaLink in {r:?}"))
        .to_string()
}

#[tokio::test]
async fn deltas_return_changes_then_deletions() {
    let dv = Dv::start().await;
    let edited = dv.account("Edited later").await;
    let deleted = dv.account("Deleted later").await;
    let untouched = dv.account("Untouched").await;
    let r = track(&dv, "accounts?$select=name,address1_city").await;
    assert_eq!(r.header("Preference-Applied"), Some("odata.track-changes"));
    assert_eq!(r.body["value"].as_array().map(Vec::len), Some(3));
    let link = delta_link(&r);
    assert!(link.contains("$deltatoken="), "{link}");
    assert!(link.contains("$select=name,address1_city"), "{link}");

    let quiet = track(&dv, &link).await;
    assert_eq!(
        quiet.body["value"],
        json!([]),
        "nothing changed yet: {quiet:?}"
    );

    dv.human_edit("accounts", &edited, json!({"address1_city": "Trondheim"}))
        .await;
    let created = dv.account("Created later").await;
    let r = dv
        .call(Method::DELETE, &format!("accounts({deleted})"), None)
        .await;
    assert_eq!(r.status, 204);

    let delta = track(&dv, &link).await;
    assert!(
        delta.body["@odata.context"]
            .as_str()
            .expect("context")
            .ends_with("$metadata#accounts(name,address1_city)/$delta"),
        "{delta:?}"
    );
    let value = delta.body["value"].as_array().expect("value");
    assert_eq!(value.len(), 3, "{delta:?}");
    assert_eq!(value[0]["accountid"], edited.as_str());
    assert_eq!(
        value[0]["address1_city"], "Trondheim",
        "changed rows come in full"
    );
    assert_eq!(value[0]["name"], "Edited later");
    assert!(
        value[0].get("telephone1").is_none(),
        "with the original $select"
    );
    assert_eq!(value[1]["accountid"], created.as_str());
    assert_eq!(
        value[2],
        json!({
            "@odata.context": dv.api("$metadata#accounts/$deletedEntity"),
            "id": deleted,
            "reason": "deleted",
        }),
        "deletions come after changes"
    );
    assert!(
        value.iter().all(|v| v["accountid"] != untouched.as_str()),
        "unchanged rows are left out"
    );
    let next = delta_link(&delta);
    assert_ne!(next, link);
    let r = track(&dv, &next).await;
    assert_eq!(r.body["value"], json!([]), "{r:?}");
}

#[tokio::test]
async fn track_changes_pages_and_puts_the_delta_link_on_the_last_page() {
    let dv = Dv::start().await;
    for i in 0..5 {
        dv.account(&format!("T{i}")).await;
    }
    let prefer = [("Prefer", "odata.track-changes,odata.maxpagesize=2")];
    let mut url = "accounts?$select=name".to_string();
    let mut seen = 0;
    let link = loop {
        let r = dv.call_with(Method::GET, &url, None, &prefer).await;
        assert_eq!(r.status, 200, "{r:?}");
        seen += r.body["value"].as_array().map_or(0, Vec::len);
        if let Some(next) = r.body["@odata.nextLink"].as_str() {
            assert!(r.body.get("@odata.deltaLink").is_none());
            url = next.to_string();
            // A change while paging shows up in the next delta, not lost between pages.
            if seen == 2 {
                dv.account("During paging").await;
            }
            continue;
        }
        break delta_link(&r);
    };
    assert!(seen >= 5, "{seen}");
    let r = track(&dv, &link).await;
    let names: Vec<&Value> = r.body["value"]
        .as_array()
        .expect("value")
        .iter()
        .map(|v| &v["name"])
        .collect();
    assert_eq!(names, [&json!("During paging")], "{r:?}");
}

#[tokio::test]
async fn track_changes_refuses_filter_orderby_and_top() {
    let dv = Dv::start().await;
    for q in [
        "accounts?$select=name&$filter=name eq 'x'",
        "accounts?$select=name&$orderby=name",
        "accounts?$select=name&$top=5",
    ] {
        let r = dv.call_with(Method::GET, q, None, TRACK).await;
        assert_eq!(r.status, 400, "{q}: {r:?}");
        assert!(
            r.message()
                .ends_with("query parameter isn't supported when Change Tracking is enabled."),
            "{r:?}"
        );
    }
    let link = delta_link(&track(&dv, "accounts?$select=name").await);
    let r = dv.get(&format!("{link}&$filter=name eq 'x'")).await;
    assert_eq!(r.status, 400, "a filter on the delta link too: {r:?}");
}

#[tokio::test]
async fn a_table_without_change_tracking_ignores_the_preference() {
    let mut config = cosell_sandbox::dataverse::Config::default();
    config.table_mut("leads").expect("leads").change_tracking = false;
    let dv = Dv::with(config).await;
    let r = dv
        .call_with(Method::GET, "leads?$select=subject", None, TRACK)
        .await;
    assert_eq!(r.status, 200, "{r:?}");
    assert!(r.body.get("@odata.deltaLink").is_none(), "{r:?}");
    assert!(r.header("Preference-Applied").is_none(), "{r:?}");
    let r = dv
        .call_with(
            Method::GET,
            "leads?$select=subject&$filter=subject ne null",
            None,
            TRACK,
        )
        .await;
    assert_eq!(
        r.status, 200,
        "the preference is ignored, so $filter is fine: {r:?}"
    );
    let r = dv
        .control(
            Method::PATCH,
            "/_sandbox/dataverse/schema/accounts",
            Some(json!({"changeTracking": false})),
        )
        .await;
    assert_eq!(r.status, 200, "{r:?}");
    let r = dv.call_with(Method::GET, "accounts", None, TRACK).await;
    assert!(r.body.get("@odata.deltaLink").is_none(), "{r:?}");
}

#[tokio::test]
async fn delta_tokens_expire_after_seven_days() {
    let dv = Dv::start().await;
    let link = delta_link(&track(&dv, "accounts?$select=name").await);
    dv.advance(8 * 24 * 3600).await;
    // The old token (1 h) has expired with the clock; take a new one.
    let mut dv = dv;
    dv.token = dv
        .token_for(&format!("{}/.default", dv.sandbox.base_url()))
        .await;
    let r = dv.get(&link).await;
    assert_eq!(r.status, 400, "{r:?}");
    assert!(r.message().contains("expired"), "{r:?}");
}
