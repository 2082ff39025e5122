//! The poller: the CRM change feed, reconciliation with Partner Center, held commands.

use serde_json::json;

use super::{World, referral_id};
use crate::crm::{CrmError, OpportunityFields, OpportunityState};
use crate::queue::SyncCommand;
use crate::store::Store;
use crate::sync::poller::{CRM_CURSOR, PollReport, RECONCILIATION_EVENT, RELATED_EVENT};

async fn poll(w: &World) -> PollReport {
    let (report, errors) = w.poll().run(w.now()).await;
    assert!(errors.is_empty(), "{errors:?}");
    report
}

fn crm_ids(commands: &[SyncCommand]) -> Vec<String> {
    commands
        .iter()
        .filter_map(|c| match c {
            SyncCommand::CrmChanged { crm_id, .. } => Some(crm_id.clone()),
            SyncCommand::PartnerCenterChanged { .. } => None,
        })
        .collect()
}

fn referral_events(commands: &[SyncCommand]) -> Vec<(String, String)> {
    commands
        .iter()
        .filter_map(|c| match c {
            SyncCommand::PartnerCenterChanged { referral_id, event } => {
                Some((referral_id.clone(), event.clone()))
            }
            SyncCommand::CrmChanged { .. } => None,
        })
        .collect()
}

#[tokio::test]
async fn a_sellers_new_synced_deal_is_enqueued_once_and_an_unsynced_one_never() {
    let w = World::dynamics();
    let shared = w.sellers_deal("Shared", true).await;
    w.crm.seller_creates(OpportunityFields {
        name: Some("Internal".into()),
        sync_with_partner_center: Some(false),
        ..Default::default()
    });

    let report = poll(&w).await;
    assert_eq!((report.crm_changed, report.crm_enqueued), (1, 1));
    assert_eq!(crm_ids(&w.drain_queue().await), vec![shared]);
    assert!(
        w.store.cursor(CRM_CURSOR).await.is_ok_and(|c| c.is_some()),
        "the feed's place is kept"
    );

    let again = poll(&w).await;
    assert_eq!(again.crm_enqueued, 0, "{again:?}");
    assert!(w.drain_queue().await.is_empty());
}

#[tokio::test]
async fn the_connectors_own_writes_are_not_enqueued_and_a_sellers_edit_is() {
    let w = World::dynamics();
    let crm_id = w.sellers_deal("Echo", true).await;
    poll(&w).await;
    w.drain_queue().await;
    w.shared(&crm_id).await;

    // The share wrote the referral id, the link and Audit: an echo, not a change.
    let report = poll(&w).await;
    assert_eq!(
        report.crm_changed, 1,
        "the feed brings the write: {report:?}"
    );
    assert_eq!(report.crm_enqueued, 0, "but nothing to sync");

    w.advance(chrono::Duration::minutes(2));
    w.crm
        .seller_edits(&crm_id, |f| f.description = Some("Budget approved".into()));
    poll(&w).await;
    let commands = w.drain_queue().await;
    assert_eq!(crm_ids(&commands), vec![crm_id]);
    assert!(
        commands.iter().any(|c| matches!(
            c,
            SyncCommand::CrmChanged {
                referral_id: Some(_),
                ..
            }
        )),
        "a linked deal's command shares its referral's group: {commands:?}"
    );
}

#[tokio::test]
async fn a_deal_on_hold_edited_by_the_seller_is_enqueued_but_the_inbound_sync_is_not() {
    let w = World::dynamics();
    let (_, crm_id) = w.incoming_synced().await;
    assert_eq!(poll(&w).await.crm_enqueued, 0, "created by the connector");
    w.crm
        .seller_edits(&crm_id, |f| f.state = Some(OpportunityState::Active));
    poll(&w).await;
    assert_eq!(crm_ids(&w.drain_queue().await), vec![crm_id]);
}

#[tokio::test]
async fn a_missed_webhook_is_made_up_by_reconciliation_and_an_up_to_date_link_is_left_alone() {
    let w = World::dynamics();
    let (behind, _) = w.incoming_synced().await;
    let (current, _) = w.incoming_synced().await;
    poll(&w).await;
    w.drain_queue().await;

    w.advance(chrono::Duration::minutes(1));
    w.pc.microsoft_edit(&behind, json!({"details": {"dealValue": 99000}}));
    let report = poll(&w).await;
    assert!(report.referrals_listed >= 1, "{report:?}");
    let events = referral_events(&w.drain_queue().await);
    assert!(
        events.contains(&(behind.clone(), RECONCILIATION_EVENT.to_string())),
        "{events:?}"
    );
    assert!(
        events.iter().all(|(id, _)| *id != current),
        "nothing changed on {current}: {events:?}"
    );
}

#[tokio::test]
async fn microsofts_referral_is_handed_on_as_a_related_event() {
    let w = World::dynamics();
    let (id, _) = w.incoming_synced().await;
    poll(&w).await;
    w.drain_queue().await;
    let ms =
        w.pc.microsoft_referral(&id)
            .unwrap_or_else(|| panic!("Microsoft's referral"));
    w.advance(chrono::Duration::minutes(1));
    w.pc.microsoft_edit(
        &referral_id(&ms),
        json!({"status": "Closed", "substatus": "Won"}),
    );

    poll(&w).await;
    let events = referral_events(&w.drain_queue().await);
    assert!(
        events.contains(&(referral_id(&ms), RELATED_EVENT.to_string())),
        "{events:?}"
    );
}

#[tokio::test]
async fn a_referral_never_linked_is_handed_on_once_per_version() {
    let w = World::dynamics();
    let lead = w.pc.incoming_lead(json!({}));
    let id = referral_id(&lead);

    poll(&w).await;
    let first = referral_events(&w.drain_queue().await);
    assert_eq!(first, vec![(id.clone(), RECONCILIATION_EVENT.to_string())]);
    // Still inside the overlap window, same version: not again.
    w.advance(chrono::Duration::minutes(1));
    poll(&w).await;
    assert!(referral_events(&w.drain_queue().await).is_empty());
    // A new version is.
    w.pc.microsoft_edit(&id, json!({"name": "Renamed lead"}));
    poll(&w).await;
    assert_eq!(
        referral_events(&w.drain_queue().await),
        vec![(id, RECONCILIATION_EVENT.to_string())]
    );
}

#[tokio::test]
async fn a_held_won_comes_due_and_is_enqueued_once() {
    let w = World::dynamics();
    let crm_id = w.sellers_deal("Quick win", false).await;
    w.shared(&crm_id).await;
    w.advance(chrono::Duration::minutes(10));
    w.crm
        .seller_edits(&crm_id, |f| f.state = Some(OpportunityState::Won));
    w.shared(&crm_id).await;
    poll(&w).await;
    w.drain_queue().await;

    w.advance(chrono::Duration::hours(73));
    let report = poll(&w).await;
    assert_eq!(report.timers_fired, 1, "{report:?}");
    assert_eq!(crm_ids(&w.drain_queue().await), vec![crm_id]);
    assert_eq!(poll(&w).await.timers_fired, 0, "fired once");
}

#[tokio::test]
async fn a_crm_outage_does_not_keep_reconciliation_from_running() {
    let w = World::dynamics();
    let lead = w.pc.incoming_lead(json!({}));
    w.crm.fail_next(
        "opportunity_changes",
        CrmError::Transient {
            status: Some(503),
            retry_after: None,
            message: "unavailable".into(),
        },
    );
    let (report, errors) = w.poll().run(w.now()).await;
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert_eq!(report.referrals_enqueued, 1, "{report:?}");
    assert_eq!(
        referral_events(&w.drain_queue().await),
        vec![(referral_id(&lead), RECONCILIATION_EVENT.to_string())]
    );
    assert!(
        w.store.cursor(CRM_CURSOR).await.is_ok_and(|c| c.is_none()),
        "the feed's place did not move"
    );
}

#[tokio::test]
async fn a_change_whose_webhook_may_still_be_on_its_way_is_left_to_it_until_the_grace_passes() {
    let mut w = World::dynamics();
    w.poller.reconciliation_grace = std::time::Duration::from_secs(60);
    let (id, _) = w.incoming_synced().await;
    w.advance(chrono::Duration::minutes(5));
    poll(&w).await;
    w.drain_queue().await;

    w.pc.microsoft_edit(&id, json!({"details": {"dealValue": 70000}}));
    w.advance(chrono::Duration::seconds(10));
    let report = poll(&w).await;
    assert_eq!(
        report.referrals_enqueued, 0,
        "its webhook comes: {report:?}"
    );

    // The webhook never came: once the grace has passed, reconciliation makes up for it.
    w.advance(chrono::Duration::seconds(60));
    poll(&w).await;
    assert_eq!(
        referral_events(&w.drain_queue().await),
        vec![(id, RECONCILIATION_EVENT.to_string())]
    );
}
