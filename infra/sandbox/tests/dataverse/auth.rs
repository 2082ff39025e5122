use cosell_sandbox::config::PARTNER_CENTER_AUDIENCE;
use cosell_sandbox::dataverse::APP_USER_ID;
use reqwest::Method;

use crate::common::{Dv, Reply};

#[tokio::test]
async fn a_request_without_a_token_is_401_with_the_dataverse_body() {
    let dv = Dv::start().await;
    let resp = dv.http.get(dv.api("accounts")).send().await.expect("sent");
    let r = Reply::read(resp).await;
    assert_eq!(r.status, 401, "{r:?}");
    assert!(r.body["error"]["message"].is_string(), "{r:?}");
    assert!(r.body["error"].get("code").is_some(), "{r:?}");
    let challenge = r.header("www-authenticate").expect("challenge");
    assert!(challenge.contains("authorization_uri="), "{challenge}");
}

#[tokio::test]
async fn a_token_expires_on_the_sandbox_clock() {
    let dv = Dv::start().await;
    assert_eq!(dv.get("accounts").await.status, 200);
    dv.advance(3601).await;
    let r = dv.get("accounts").await;
    assert_eq!(r.status, 401, "{r:?}");
    assert!(r.message().to_lowercase().contains("expired"), "{r:?}");
}

#[tokio::test]
async fn a_token_for_another_audience_is_refused() {
    let mut dv = Dv::start().await;
    dv.token = dv
        .token_for(&format!("{PARTNER_CENTER_AUDIENCE}/.default"))
        .await;
    let r = dv.get("accounts").await;
    assert_eq!(r.status, 401, "{r:?}");
    assert!(r.message().contains(PARTNER_CENTER_AUDIENCE), "{r:?}");
}

#[tokio::test]
async fn who_am_i_names_the_application_user() {
    let dv = Dv::start().await;
    let r = dv.call(Method::GET, "WhoAmI", None).await;
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.body["UserId"], APP_USER_ID.to_string());
    assert!(r.body["OrganizationId"].is_string());
}

#[tokio::test]
async fn v9_0_paths_keep_working_and_unknown_versions_do_not() {
    let dv = Dv::start().await;
    let id = dv.account("Old path").await;
    let r = dv
        .call(
            Method::GET,
            &dv.sandbox.url(&format!("/api/data/v9.0/accounts({id})")),
            None,
        )
        .await;
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.body["name"], "Old path");
    let r = dv
        .call(
            Method::GET,
            &dv.sandbox.url("/api/data/v8.0/accounts"),
            None,
        )
        .await;
    assert_eq!(r.status, 404, "{r:?}");
}
