use reqwest::Method;
use serde_json::json;

use crate::common::Dv;

#[tokio::test]
async fn the_request_budget_gives_429_with_retry_after_until_the_window_moves() {
    let config = cosell_sandbox::dataverse::Config {
        request_limit: 3,
        ..Default::default()
    };
    let dv = Dv::with(config).await;
    for left in ["2", "1", "0"] {
        let r = dv.get("accounts?$select=name").await;
        assert_eq!(r.status, 200, "{r:?}");
        assert_eq!(
            r.header("x-ms-ratelimit-burst-remaining-xrm-requests"),
            Some(left)
        );
    }
    let r = dv.get("accounts?$select=name").await;
    assert_eq!(r.status, 429, "{r:?}");
    assert_eq!(r.body["error"]["code"], "0x80072322");
    assert_eq!(
        r.message(),
        "Number of requests exceeded the limit of 3 over time window of 300 seconds."
    );
    let retry: u64 = r
        .header("retry-after")
        .expect("Retry-After")
        .parse()
        .expect("seconds");
    assert!((1..=300).contains(&retry), "{retry}");
    dv.advance(150).await;
    let r = dv.get("accounts?$select=name").await;
    assert_eq!(r.status, 429, "the window still holds the requests: {r:?}");
    dv.advance(300).await;
    let r = dv.get("accounts?$select=name").await;
    assert_eq!(r.status, 200, "{r:?}");
}

#[tokio::test]
async fn budgets_are_per_caller_and_settable_at_run_time() {
    let dv = Dv::start().await;
    let r = dv
        .control(
            Method::PATCH,
            "/_sandbox/dataverse/limits",
            Some(json!({"requests": 1})),
        )
        .await;
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.body, json!({"requests": 1, "windowSeconds": 300}));
    assert_eq!(dv.get("accounts").await.status, 200);
    assert_eq!(dv.get("accounts").await.status, 429);
    let r = dv
        .control(Method::DELETE, "/_sandbox/dataverse/limits/usage", None)
        .await;
    assert_eq!(r.status, 204);
    assert_eq!(dv.get("accounts").await.status, 200);
    let r = dv
        .control(Method::GET, "/_sandbox/dataverse/accounts", None)
        .await;
    assert_eq!(r.status, 200, "control reads are not budgeted: {r:?}");
}
