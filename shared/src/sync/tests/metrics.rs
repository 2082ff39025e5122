//! The processor's metric lines, as CloudWatch reads them: one per command, with its direction,
//! its outcome, how long the message waited and how long the change took to reach the other side.

use serde_json::{Value, json};

use super::*;
use crate::metrics;

fn processor(w: &World) -> super::super::Processor {
    super::super::Processor {
        pc: w.pc.clone(),
        crm: w.crm.clone(),
        store: w.store.clone(),
        options: w.options.clone(),
    }
}

fn sync_lines(lines: &[Value]) -> Vec<&Value> {
    lines.iter().filter(|l| l.get("Syncs").is_some()).collect()
}

#[tokio::test]
async fn a_synced_referral_emits_its_outcome_latency_and_age() {
    let w = World::dynamics();
    let referral = w.pc.incoming_co_sell(json!({}));
    let id = referral_id(&referral);
    // The change was made a few seconds before the processor got to it.
    w.advance(chrono::Duration::seconds(3));
    let body = serde_json::to_string(&SyncCommand::PartnerCenterChanged {
        referral_id: id.clone(),
        event: "referral-created".into(),
    })
    .unwrap();
    let sent_at = w.now() - chrono::Duration::seconds(2);

    metrics::start_capture();
    processor(&w)
        .handle_message(&body, Some(sent_at))
        .await
        .unwrap();
    // The same version again: skipped, and counted as such.
    processor(&w)
        .handle_message(&body, Some(sent_at))
        .await
        .unwrap();
    let lines = metrics::take_captured();
    let syncs = sync_lines(&lines);
    assert_eq!(syncs.len(), 2, "{lines:#?}");

    let created = syncs[0];
    assert_eq!(created["Direction"], "ToCrm");
    assert_eq!(
        created["_aws"]["CloudWatchMetrics"][0]["Namespace"],
        "CoSellConnector"
    );
    assert_eq!(created["SyncCreated"], 1.0);
    assert_eq!(created["SyncFailed"], 0.0);
    assert_eq!(created["RecoveredByReconciliation"], 0.0);
    let latency = created["SyncLatency"].as_f64().expect("a latency");
    assert!(
        latency >= 3000.0,
        "from Partner Center's change time: {latency}"
    );
    let age = created["MessageAge"].as_f64().expect("an age");
    assert!(age >= 2000.0, "from the send: {age}");

    let skipped = syncs[1];
    assert_eq!(skipped["SyncSkipped"], 1.0);
    assert_eq!(skipped["SyncCreated"], 0.0);
    assert!(skipped.get("SyncLatency").is_none(), "nothing was written");
}

#[tokio::test]
async fn what_reconciliation_finds_and_writes_is_a_recovered_webhook() {
    let w = World::dynamics();
    let referral = w.pc.incoming_co_sell(json!({}));
    let body = serde_json::to_string(&SyncCommand::PartnerCenterChanged {
        referral_id: referral_id(&referral),
        event: crate::sync::poller::RECONCILIATION_EVENT.into(),
    })
    .unwrap();
    metrics::start_capture();
    processor(&w).handle(&body).await.unwrap();
    let lines = metrics::take_captured();
    let syncs = sync_lines(&lines);
    assert_eq!(syncs.len(), 1);
    assert_eq!(syncs[0]["RecoveredByReconciliation"], 1.0);
}

#[tokio::test]
async fn a_failed_command_counts_as_failed_toward_partner_center() {
    let w = World::dynamics();
    let crm_id = w.sellers_deal("Failing", false).await;
    w.pc.fail_next(
        "create_referral",
        crate::partner_center::PartnerCenterError::Transient {
            status: Some(503),
            retry_after: None,
            message: "down for maintenance".into(),
        },
    );
    let body = serde_json::to_string(&SyncCommand::CrmChanged {
        crm_id,
        referral_id: None,
        seen: None,
    })
    .unwrap();
    metrics::start_capture();
    let result = processor(&w).handle(&body).await;
    let lines = metrics::take_captured();
    assert!(result.is_err(), "the write failed");
    let syncs = sync_lines(&lines);
    assert_eq!(syncs.len(), 1, "{lines:#?}");
    assert_eq!(syncs[0]["Direction"], "ToPartnerCenter");
    assert_eq!(syncs[0]["SyncFailed"], 1.0);
    assert!(syncs[0].get("RecoveredByReconciliation").is_none());
}
