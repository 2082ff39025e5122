use reqwest::Method;
use serde_json::{Value, json};

use crate::common::Dv;

async fn patch(dv: &Dv, set: &str, id: &str, body: Value) -> crate::common::Reply {
    dv.call(Method::PATCH, &format!("{set}({id})"), Some(body))
        .await
}

fn state(row: &Value) -> (i64, i64) {
    (
        row["statecode"].as_i64().expect("statecode"),
        row["statuscode"].as_i64().expect("statuscode"),
    )
}

#[tokio::test]
async fn opportunity_status_pairs_are_enforced() {
    let dv = Dv::start().await;
    let id = dv.opportunity("Pairs").await;
    assert_eq!(
        state(&dv.row("opportunities", &id).await),
        (0, 1),
        "open, in progress"
    );
    let r = patch(
        &dv,
        "opportunities",
        &id,
        json!({"statecode": 0, "statuscode": 2}),
    )
    .await;
    assert_eq!(r.status, 204, "on hold: {r:?}");
    assert_eq!(state(&dv.row("opportunities", &id).await), (0, 2));
    let r = patch(&dv, "opportunities", &id, json!({"statecode": 0})).await;
    assert_eq!(r.status, 204, "{r:?}");
    assert_eq!(
        state(&dv.row("opportunities", &id).await),
        (0, 1),
        "statecode alone picks the default status"
    );
    let r = patch(
        &dv,
        "opportunities",
        &id,
        json!({"statecode": 0, "statuscode": 3}),
    )
    .await;
    assert_eq!(r.status, 400, "Won status with the Open state: {r:?}");
    assert!(r.message().contains("OpportunityState.Open"), "{r:?}");
    let r = patch(&dv, "opportunities", &id, json!({"statuscode": 5})).await;
    assert_eq!(r.status, 400, "a Lost status on an open opportunity: {r:?}");
    let r = patch(
        &dv,
        "opportunities",
        &id,
        json!({"statecode": 1, "statuscode": 3}),
    )
    .await;
    assert_eq!(r.status, 400, "API clients close with the actions: {r:?}");
    assert!(r.message().contains("WinOpportunity"), "{r:?}");
    let r = patch(&dv, "opportunities", &id, json!({"statecode": 7})).await;
    assert_eq!(r.status, 400, "no such state: {r:?}");
}

#[tokio::test]
async fn closing_by_statecode_can_be_allowed() {
    let config = cosell_sandbox::dataverse::Config {
        allow_opportunity_close_by_patch: true,
        ..Default::default()
    };
    let dv = Dv::with(config).await;
    let id = dv.opportunity("Patch-closed").await;
    let r = patch(&dv, "opportunities", &id, json!({"statecode": 1})).await;
    assert_eq!(r.status, 204, "{r:?}");
    let row = dv.row("opportunities", &id).await;
    assert_eq!(state(&row), (1, 3));
    assert_eq!(row["closeprobability"], 100);
}

#[tokio::test]
async fn win_and_lose_actions_close_opportunities() {
    let dv = Dv::start().await;
    let won = dv.opportunity("To win").await;
    let r = dv
        .call(
            Method::POST,
            "WinOpportunity",
            Some(json!({
                "Status": 3,
                "OpportunityClose": {
                    "subject": "Won",
                    "opportunityid@odata.bind": format!("/opportunities({won})"),
                }
            })),
        )
        .await;
    assert_eq!(r.status, 204, "{r:?}");
    let row = dv.row("opportunities", &won).await;
    assert_eq!(state(&row), (1, 3));
    assert_eq!(
        row["actualvalue"], 1000.0,
        "the estimate becomes the actual value"
    );
    assert!(row["actualclosedate"].is_string());

    let r = patch(
        &dv,
        "opportunities",
        &won,
        json!({"name": "Edited after win"}),
    )
    .await;
    assert_eq!(r.status, 400, "closed opportunities are read-only: {r:?}");
    let r = dv
        .call(
            Method::POST,
            "WinOpportunity",
            Some(json!({"Status": 3, "OpportunityClose": {
                "opportunityid@odata.bind": format!("/opportunities({won})")}})),
        )
        .await;
    assert_eq!(r.status, 400, "already closed: {r:?}");
    let r = patch(&dv, "opportunities", &won, json!({"statecode": 0})).await;
    assert_eq!(r.status, 204, "reopening: {r:?}");
    let row = dv.row("opportunities", &won).await;
    assert_eq!(state(&row), (0, 1));
    assert!(row["actualvalue"].is_null());
    let r = patch(
        &dv,
        "opportunities",
        &won,
        json!({"name": "Edited after reopen"}),
    )
    .await;
    assert_eq!(r.status, 204, "{r:?}");

    let lost = dv.opportunity("To lose").await;
    let lose = |status: i64| {
        json!({
            "Status": status,
            "OpportunityClose": {
                "subject": "Lost to a competitor",
                "opportunityid@odata.bind": format!("/opportunities({lost})"),
            }
        })
    };
    let r = dv
        .call(Method::POST, "LoseOpportunity", Some(lose(3)))
        .await;
    assert_eq!(r.status, 400, "Won is not a Lost status: {r:?}");
    let r = dv
        .call(Method::POST, "LoseOpportunity", Some(lose(5)))
        .await;
    assert_eq!(r.status, 204, "{r:?}");
    let row = dv.row("opportunities", &lost).await;
    assert_eq!(state(&row), (2, 5), "lost, out-sold");
    assert_eq!(row["closeprobability"], 0);

    let r = dv
        .call(
            Method::POST,
            "WinOpportunity",
            Some(json!({"Status": 3, "OpportunityClose": {
                "opportunityid@odata.bind": "/opportunities(7b1c9a52-1111-4e0e-9d3a-000000000009)"}})),
        )
        .await;
    assert_eq!(r.status, 400, "a missing opportunity: {r:?}");
    let closes = dv
        .control(Method::GET, "/_sandbox/dataverse/opportunitycloses", None)
        .await;
    let subjects: Vec<&Value> = closes.body["value"]
        .as_array()
        .expect("closes")
        .iter()
        .map(|c| &c["subject"])
        .collect();
    assert_eq!(subjects, [&json!("Won"), &json!("Lost to a competitor")]);
}

#[tokio::test]
async fn a_human_can_close_by_status_as_the_ui_does() {
    let dv = Dv::start().await;
    let id = dv.opportunity("Seller closes").await;
    let row = dv
        .human_edit(
            "opportunities",
            &id,
            json!({"statecode": 2, "statuscode": 4}),
        )
        .await;
    assert_eq!(state(&row), (2, 4));
}

#[tokio::test]
async fn system_calculated_revenue_overwrites_a_written_estimate() {
    let dv = Dv::start().await;
    let id = dv.opportunity("Calculated").await;
    let r = patch(
        &dv,
        "opportunities",
        &id,
        json!({"isrevenuesystemcalculated": true, "estimatedvalue": 5000}),
    )
    .await;
    assert_eq!(r.status, 204, "{r:?}");
    assert_eq!(
        dv.row("opportunities", &id).await["estimatedvalue"],
        0.0,
        "no product lines yet"
    );
    let r = dv
        .control(
            Method::PUT,
            &format!("/_sandbox/dataverse/opportunities({id})/productlines"),
            Some(json!({"total": 1200.5})),
        )
        .await;
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.body["estimatedvalue"], 1200.5);
    let r = patch(&dv, "opportunities", &id, json!({"estimatedvalue": 999})).await;
    assert_eq!(r.status, 204, "the write is accepted: {r:?}");
    assert_eq!(dv.row("opportunities", &id).await["estimatedvalue"], 1200.5);
    let r = patch(
        &dv,
        "opportunities",
        &id,
        json!({"isrevenuesystemcalculated": false, "estimatedvalue": 999}),
    )
    .await;
    assert_eq!(r.status, 204, "{r:?}");
    assert_eq!(
        dv.row("opportunities", &id).await["estimatedvalue"],
        999.0,
        "user provided"
    );
}

#[tokio::test]
async fn lead_states_are_enforced() {
    let dv = Dv::start().await;
    let r = dv
        .call(
            Method::POST,
            "leads",
            Some(json!({"lastname": "No subject"})),
        )
        .await;
    assert_eq!(r.status, 400, "subject is required: {r:?}");
    assert!(r.message().contains("subject"), "{r:?}");
    let id = dv
        .create(
            "leads",
            json!({"subject": "Interested", "companyname": "Contoso"}),
        )
        .await;
    assert_eq!(state(&dv.row("leads", &id).await), (0, 1), "open, new");
    let r = patch(&dv, "leads", &id, json!({"statuscode": 2})).await;
    assert_eq!(r.status, 204, "contacted: {r:?}");
    let r = patch(&dv, "leads", &id, json!({"statecode": 1})).await;
    assert_eq!(r.status, 204, "{r:?}");
    assert_eq!(state(&dv.row("leads", &id).await), (1, 3), "qualified");
    let r = patch(&dv, "leads", &id, json!({"statecode": 2, "statuscode": 3})).await;
    assert_eq!(
        r.status, 400,
        "Qualified is not a Disqualified status: {r:?}"
    );
    assert!(r.message().contains("LeadState.Disqualified"), "{r:?}");
    let r = patch(&dv, "leads", &id, json!({"statecode": 2, "statuscode": 6})).await;
    assert_eq!(r.status, 204, "{r:?}");
    assert_eq!(
        state(&dv.row("leads", &id).await),
        (2, 6),
        "no longer interested"
    );
    let r = patch(&dv, "leads", &id, json!({"statuscode": 2})).await;
    assert_eq!(r.status, 400, "Contacted belongs to Open: {r:?}");
    let r = patch(&dv, "leads", &id, json!({"statecode": 2})).await;
    assert_eq!(r.status, 204, "{r:?}");
    assert_eq!(state(&dv.row("leads", &id).await), (2, 4), "default: lost");
}
