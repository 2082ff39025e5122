//! CRM → Partner Center.

use serde_json::{Value, json};

use super::{World, last_audit, referral_id};
use crate::crm::{ClearField, CrmKind, OpportunityState};
use crate::partner_center::{PartnerCenterError, PatchOp};
use crate::referral::{Direction, Status, Substatus};
use crate::store::Outcome;
use crate::sync::{Handled, SyncError};

fn paths(ops: &[PatchOp]) -> Vec<String> {
    ops.iter().map(|o| o.path.clone()).collect()
}

fn value_at<'a>(ops: &'a [PatchOp], path: &str) -> Option<&'a Value> {
    ops.iter().find(|o| o.path == path).map(|o| &o.value)
}

#[tokio::test]
async fn sharing_a_co_sell_deal_makes_one_referral_and_invites_microsoft() {
    let w = World::dynamics();
    let crm_id = w.sellers_deal("Contoso", true).await;

    let Handled::Created { crm_id: referral } = w.shared(&crm_id).await else {
        panic!("shared");
    };

    let creates = w.pc.creates();
    assert_eq!(creates.len(), 2, "ours and Microsoft's: {creates:?}");
    let ours = w.referral(&referral);
    assert_eq!(ours.external_reference_id.as_deref(), Some(crm_id.as_str()));
    assert_eq!(ours.direction, Some(Direction::Outgoing));
    let microsoft =
        w.pc.microsoft_referral(&referral)
            .unwrap_or_else(|| panic!("Microsoft's referral is in the engagement"));
    assert_eq!(microsoft.engagement_id, ours.engagement_id);

    let o = w.opportunity(&crm_id);
    assert_eq!(o.fields.referral_id.as_deref(), Some(referral.as_str()));
    assert_eq!(o.fields.name.as_deref(), Some("✔ Contoso"));
    assert!(last_audit(&o).contains("and with Microsoft"), "{o:?}");
    let link = w.linked(&referral).await;
    assert_eq!(link.crm_id, crm_id);
    assert!(link.state.microsoft_invited);
    assert_eq!(w.journal(&referral).await[0].outcome, Outcome::Synced);
}

#[tokio::test]
async fn a_private_deal_is_shared_without_microsoft() {
    let w = World::dynamics();
    let crm_id = w.sellers_deal("Private", false).await;
    let Handled::Created { crm_id: referral } = w.shared(&crm_id).await else {
        panic!("shared");
    };
    assert_eq!(w.pc.creates().len(), 1);
    assert_eq!(w.pc.microsoft_referral(&referral), None);
    assert!(!w.linked(&referral).await.state.microsoft_invited);
}

#[tokio::test]
async fn a_deal_that_fails_validation_gets_a_cross_and_audit_and_no_partner_center_call() {
    let w = World::dynamics();
    let crm_id = w.sellers_deal("Incomplete", true).await;
    w.crm.seller_edits(&crm_id, |f| {
        f.account_id = None;
        f.close_date = None;
    });

    let handled = w.shared(&crm_id).await;
    let Handled::Failed { reason } = handled else {
        panic!("failed, not {handled:?}");
    };
    assert!(
        reason.starts_with("Not shared with Partner Center"),
        "{reason}"
    );
    assert_eq!(w.pc.calls().total(), 0, "no Partner Center call");
    let o = w.opportunity(&crm_id);
    assert_eq!(o.fields.name.as_deref(), Some("✖ Incomplete"));
    assert!(last_audit(&o).contains(&reason), "{o:?}");
    assert_eq!(
        w.journal(&format!("crm:{crm_id}")).await[0].outcome,
        Outcome::Failed
    );
}

#[tokio::test]
async fn with_a_catalog_a_deal_linking_an_unknown_solution_is_refused_naming_it() {
    use crate::crm::{CatalogSolution, Crm};
    let w = World::dynamics();
    let crm_id = w.sellers_deal("Catalogued", true).await;
    let linked = w.crm.solution_links(&crm_id).await.expect("links");
    assert!(!linked.is_empty(), "the deal links a solution");
    w.crm
        .create_catalog_solution(&CatalogSolution {
            solution_id: "another-solution".into(),
            name: "Another solution".into(),
            description: None,
        })
        .await
        .expect("a catalog row");

    let handled = w.shared(&crm_id).await;
    let Handled::Failed { reason } = handled else {
        panic!("failed, not {handled:?}");
    };
    assert!(reason.contains(&format!("'{}'", linked[0])), "{reason}");
    assert!(reason.contains("solution catalog"), "{reason}");
    assert_eq!(w.pc.calls().total(), 0, "no Partner Center call");
    let o = w.opportunity(&crm_id);
    assert!(last_audit(&o).contains(&reason), "{o:?}");

    // Once the solution is in the catalog, the same deal is shared.
    w.crm
        .create_catalog_solution(&CatalogSolution {
            solution_id: linked[0].clone(),
            name: "Its solution".into(),
            description: None,
        })
        .await
        .expect("a catalog row");
    w.crm
        .seller_edits(&crm_id, |f| f.name = Some("Catalogued".into()));
    assert!(matches!(w.shared(&crm_id).await, Handled::Created { .. }));
}

#[tokio::test]
async fn a_crm_without_a_catalog_table_shares_the_deal_as_before() {
    let w = World::dynamics();
    let crm_id = w.sellers_deal("No catalog table", true).await;
    w.crm.fail_next(
        "catalog",
        crate::crm::CrmError::Rejected {
            message: "Resource not found for the segment 'cosell_solutioncatalogs'.".into(),
            field: None,
        },
    );
    assert!(matches!(w.shared(&crm_id).await, Handled::Created { .. }));
}

#[tokio::test]
async fn a_create_whose_answer_was_lost_is_found_not_made_again() {
    let w = World::dynamics();
    let crm_id = w.sellers_deal("Lost answer", false).await;
    w.pc.lose_next_create_answer();

    let err = w.opportunity_changed(&crm_id).await;
    assert!(
        matches!(&err, Err(SyncError::PartnerCenter(e)) if e.is_transient()),
        "{err:?}"
    );
    let handled = w.shared(&crm_id).await;
    assert!(matches!(handled, Handled::Created { .. }), "{handled:?}");
    let ours: Vec<_> =
        w.pc.referrals()
            .into_iter()
            .filter(|r| r.external_reference_id.as_deref() == Some(crm_id.as_str()))
            .collect();
    assert_eq!(ours.len(), 1, "one referral for the deal");
    assert_eq!(w.pc.creates().len(), 1, "the create is not sent again");
}

#[tokio::test]
async fn a_referral_partner_center_refuses_is_reported_on_the_opportunity() {
    let w = World::new(CrmKind::Salesforce);
    let crm_id = w.sellers_deal("Refused", false).await;
    w.pc.fail_next(
        "create_referral",
        PartnerCenterError::Rejected {
            message: "The country is not supported".into(),
            target: Some("customerProfile.address.country".into()),
        },
    );
    let handled = w.shared(&crm_id).await;
    let Handled::Failed { reason } = handled else {
        panic!("failed, not {handled:?}");
    };
    assert!(
        reason.contains("customerProfile.address.country"),
        "{reason}"
    );
    let o = w.opportunity(&crm_id);
    assert!(o.fields.name.as_deref().is_some_and(|n| n.starts_with('✖')));
    assert_eq!(o.fields.referral_id, None, "not linked");
}

#[tokio::test]
async fn an_opportunity_standing_for_a_referral_is_left_to_that_referrals_sync() {
    let w = World::dynamics();
    let crm_id = w.sellers_deal("Came in", false).await;
    // The referral's sync wrote its id but has not recorded the link yet.
    w.crm.seller_edits(&crm_id, |f| {
        f.referral_id = Some("a-referral-being-synced".into())
    });
    let handled = w.shared(&crm_id).await;
    assert!(matches!(handled, Handled::Skipped { .. }), "{handled:?}");
    assert_eq!(w.pc.calls().total(), 0, "no second referral");
}

/// An incoming referral synced and on hold, time moved on: its id and the opportunity's.
async fn on_hold(w: &World) -> (String, String) {
    let (id, crm_id) = w.incoming_synced().await;
    w.advance(chrono::Duration::minutes(10));
    (id, crm_id)
}

#[tokio::test]
async fn accepting_from_the_hold_stage_sends_the_accept_once_and_its_echo_nothing() {
    let w = World::dynamics();
    let (id, crm_id) = on_hold(&w).await;
    w.crm
        .seller_edits(&crm_id, |f| f.state = Some(OpportunityState::Active));

    let handled = w.shared(&crm_id).await;
    assert!(matches!(handled, Handled::Updated { .. }), "{handled:?}");
    let patches = w.pc.patches();
    assert_eq!(patches.len(), 1, "{patches:?}");
    assert_eq!(value_at(&patches[0].ops, "/status"), Some(&json!("Active")));
    assert_eq!(
        value_at(&patches[0].ops, "/substatus"),
        Some(&json!("Accepted"))
    );
    let referral = w.referral(&id);
    assert_eq!(
        (referral.status, referral.substatus),
        (Some(Status::Active), Some(Substatus::Accepted))
    );

    // The connector's own Audit write and Partner Center's webhook for the accept: no writes.
    w.pc.reset_calls();
    let writes = w.crm.writes();
    w.shared(&crm_id).await;
    w.synced(&id).await;
    assert_eq!(w.pc.calls().writes(), 0, "no Partner Center write");
    assert_eq!(w.crm.writes(), writes, "no CRM write");
}

#[tokio::test]
async fn edits_made_on_hold_are_not_sent() {
    let w = World::dynamics();
    let (_, crm_id) = on_hold(&w).await;
    w.crm
        .seller_edits(&crm_id, |f| f.description = Some("my notes".into()));

    w.shared(&crm_id).await;
    assert!(
        w.pc.patches()
            .iter()
            .all(|p| value_at(&p.ops, "/details/notes").is_none()),
        "{:?}",
        w.pc.patches()
    );
}

#[tokio::test]
async fn a_decline_sends_only_the_decline_and_not_the_held_edits() {
    let w = World::dynamics();
    let (id, crm_id) = on_hold(&w).await;
    w.crm.seller_edits(&crm_id, |f| {
        f.description = Some("notes made on hold".into());
        f.deal_value = Some(1.0);
    });
    w.shared(&crm_id).await;
    w.advance(chrono::Duration::minutes(1));
    w.crm
        .seller_edits(&crm_id, |f| f.state = Some(OpportunityState::Lost));

    w.shared(&crm_id).await;
    let patches = w.pc.patches();
    assert_eq!(patches.len(), 1, "{patches:?}");
    let sent = paths(&patches[0].ops);
    assert!(
        sent.iter()
            .all(|p| p == "/status" || p == "/substatus" || p == "/statusReason"),
        "only the status and its reason: {sent:?}"
    );
    let referral = w.referral(&id);
    assert_eq!(
        (referral.status, referral.substatus),
        (Some(Status::Closed), Some(Substatus::Declined))
    );
    assert_ne!(
        referral
            .details
            .and_then(|d| d.deal_value)
            .and_then(|v| v.as_f64()),
        Some(1.0),
        "the held deal value stays in the CRM"
    );
}

/// A seller's co-sell deal, shared and linked: its referral id.
async fn shared_deal(w: &World, crm_id: &str) -> String {
    match w.shared(crm_id).await {
        Handled::Created { crm_id: referral } => {
            w.pc.reset_calls();
            w.advance(chrono::Duration::minutes(10));
            referral
        }
        other => panic!("shared, not {other:?}"),
    }
}

#[tokio::test]
async fn a_sellers_edit_is_sent_and_nothing_else() {
    let w = World::dynamics();
    let crm_id = w.sellers_deal("Edited", false).await;
    let referral = shared_deal(&w, &crm_id).await;
    w.crm
        .seller_edits(&crm_id, |f| f.description = Some("Budget approved".into()));

    let handled = w.shared(&crm_id).await;
    assert!(matches!(handled, Handled::Updated { .. }), "{handled:?}");
    let patches = w.pc.patches();
    assert_eq!(patches.len(), 1, "{patches:?}");
    assert_eq!(paths(&patches[0].ops), vec!["/details/notes".to_string()]);
    assert_eq!(w.notes(&referral).as_deref(), Some("Budget approved"));
}

#[tokio::test]
async fn a_lost_if_match_race_is_read_and_merged_again() {
    let w = World::dynamics();
    let crm_id = w.sellers_deal("Raced", false).await;
    let referral = shared_deal(&w, &crm_id).await;
    w.crm
        .seller_edits(&crm_id, |f| f.deal_value = Some(55_000.0));
    w.pc.fail_next("patch_referral", PartnerCenterError::PreconditionFailed);

    let handled = w.shared(&crm_id).await;
    assert!(matches!(handled, Handled::Updated { .. }), "{handled:?}");
    assert_eq!(w.pc.patches().len(), 2, "sent again after reading again");
    assert_eq!(w.pc.calls().get_referral, 2, "read again");
    assert_eq!(
        w.referral(&referral)
            .details
            .and_then(|d| d.deal_value)
            .and_then(|v| v.as_f64()),
        Some(55_000.0)
    );
}

#[tokio::test]
async fn a_race_lost_every_time_goes_back_to_the_queue() {
    let w = World::dynamics();
    let crm_id = w.sellers_deal("Busy", false).await;
    shared_deal(&w, &crm_id).await;
    w.crm
        .seller_edits(&crm_id, |f| f.deal_value = Some(55_000.0));
    for _ in 0..3 {
        w.pc.fail_next("patch_referral", PartnerCenterError::PreconditionFailed);
    }
    let err = w.opportunity_changed(&crm_id).await;
    assert_eq!(
        err,
        Err(SyncError::PartnerCenter(
            PartnerCenterError::PreconditionFailed
        ))
    );
    // The claim is free again: the redelivery succeeds.
    let handled = w.shared(&crm_id).await;
    assert!(matches!(handled, Handled::Updated { .. }), "{handled:?}");
}

#[tokio::test]
async fn the_later_change_of_the_same_field_wins_and_audit_says_so() {
    let w = World::dynamics();
    let crm_id = w.sellers_deal("Both sides", false).await;
    let referral = shared_deal(&w, &crm_id).await;
    w.pc.microsoft_edit(&referral, json!({"details": {"dealValue": 40000}}));
    w.advance(chrono::Duration::minutes(5));
    w.crm
        .seller_edits(&crm_id, |f| f.deal_value = Some(50_000.0));

    w.shared(&crm_id).await;
    assert_eq!(
        w.referral(&referral)
            .details
            .and_then(|d| d.deal_value)
            .and_then(|v| v.as_f64()),
        Some(50_000.0),
        "the seller's edit came later"
    );
    let o = w.opportunity(&crm_id);
    assert_eq!(o.fields.deal_value, Some(50_000.0));
    let audit = o.fields.audit.unwrap_or_default();
    assert!(
        audit.contains("40000") && audit.contains("50000"),
        "{audit}"
    );
}

#[tokio::test]
async fn nothing_is_sent_after_the_referral_is_closed() {
    let w = World::dynamics();
    let crm_id = w.sellers_deal("Closed", false).await;
    let referral = shared_deal(&w, &crm_id).await;
    w.crm
        .seller_edits(&crm_id, |f| f.state = Some(OpportunityState::Lost));
    w.shared(&crm_id).await;
    assert_eq!(
        w.referral(&referral).status,
        Some(Status::Closed),
        "the loss is sent"
    );
    w.pc.reset_calls();
    w.advance(chrono::Duration::minutes(5));
    w.crm.seller_edits(&crm_id, |f| {
        f.description = Some("post mortem".into());
        f.clear.push(ClearField::DealValue);
    });
    w.shared(&crm_id).await;
    assert_eq!(w.pc.calls().writes(), 0, "a closed referral is final");
}

#[tokio::test]
async fn a_won_too_soon_after_the_deal_was_created_is_held_then_sent() {
    let w = World::dynamics();
    let crm_id = w.sellers_deal("Quick win", false).await;
    let referral = shared_deal(&w, &crm_id).await;
    w.crm
        .seller_edits(&crm_id, |f| f.state = Some(OpportunityState::Won));

    w.shared(&crm_id).await;
    assert_ne!(w.referral(&referral).status, Some(Status::Closed), "held");
    let link = w.linked(&referral).await;
    let until = link
        .state
        .won_held_until
        .unwrap_or_else(|| panic!("the Won is held: {link:?}"));
    // Dataverse keeps a won opportunity read-only, so the journal tells why.
    let journal = w.journal(&referral).await;
    assert!(journal[0].message.contains("Won is held"), "{journal:?}");

    w.advance(until - w.now() + chrono::Duration::seconds(1));
    w.shared(&crm_id).await;
    let r = w.referral(&referral);
    assert_eq!(
        (r.status.clone(), r.substatus.clone()),
        (Some(Status::Closed), Some(Substatus::Won))
    );
    assert_eq!(referral_id(&r), referral);
}

#[tokio::test]
async fn a_first_share_creates_without_looking_for_the_referral_or_microsofts() {
    let w = World::dynamics();
    let crm_id = w.sellers_deal("First try", true).await;
    w.shared(&crm_id).await;
    let calls = w.pc.calls();
    assert_eq!(calls.find_by_external_reference, 0, "{calls:?}");
    assert_eq!(calls.engagement_referrals, 0, "{calls:?}");
    assert_eq!(calls.create_referral, 2, "{calls:?}");
}

#[tokio::test]
async fn the_opportunity_the_poll_read_is_not_read_again() {
    let w = World::dynamics();
    let crm_id = w.sellers_deal("Carried", false).await;
    let referral = shared_deal(&w, &crm_id).await;
    w.crm
        .seller_edits(&crm_id, |f| f.description = Some("Budget approved".into()));
    w.poll()
        .poll_crm(w.now(), &mut Default::default())
        .await
        .unwrap_or_else(|e| panic!("poll: {e}"));
    let commands = w.drain_queue().await;
    assert_eq!(commands.len(), 1, "{commands:?}");
    let reads_before = w.crm.calls("get_opportunity");

    for command in commands {
        w.process(command).await;
    }

    assert_eq!(w.crm.calls("get_opportunity"), reads_before);
    assert_eq!(w.notes(&referral).as_deref(), Some("Budget approved"));
}

#[tokio::test]
async fn a_late_command_from_before_the_last_sync_sends_no_older_values() {
    let w = World::dynamics();
    let crm_id = w.sellers_deal("Late", false).await;
    let referral = shared_deal(&w, &crm_id).await;
    let before_the_edit = w.opportunity(&crm_id);
    w.crm
        .seller_edits(&crm_id, |f| f.description = Some("Budget approved".into()));
    w.shared(&crm_id).await;
    w.pc.reset_calls();
    w.advance(chrono::Duration::minutes(1));

    let handled = w
        .outbound()
        .opportunity_changed(&crm_id, Some(before_the_edit), w.now())
        .await
        .unwrap_or_else(|e| panic!("sync: {e}"));

    assert!(
        w.pc.patches().is_empty(),
        "{handled:?}: {:?}",
        w.pc.patches()
    );
    assert_eq!(w.notes(&referral).as_deref(), Some("Budget approved"));
}

#[tokio::test]
async fn a_command_read_before_partner_centers_change_reached_the_crm_reads_again() {
    let w = World::dynamics();
    let crm_id = w.sellers_deal("Raced", false).await;
    let referral = shared_deal(&w, &crm_id).await;
    w.crm
        .seller_edits(&crm_id, |f| f.description = Some("Budget approved".into()));
    // The poll reads the seller's edit; before its command runs, Microsoft's change of the
    // deal value is synced into the CRM.
    let polled = w.opportunity(&crm_id);
    w.advance(chrono::Duration::seconds(5));
    w.pc.microsoft_edit(&referral, json!({"details": {"dealValue": 45000}}));
    w.synced(&referral).await;
    w.advance(chrono::Duration::seconds(5));

    w.outbound()
        .opportunity_changed(&crm_id, Some(polled), w.now())
        .await
        .unwrap_or_else(|e| panic!("sync: {e}"));

    let details = w.referral(&referral).details.unwrap_or_default();
    assert_eq!(
        details.deal_value.and_then(|v| v.as_f64()),
        Some(45000.0),
        "Microsoft's value stays"
    );
    assert_eq!(details.notes.as_deref(), Some("Budget approved"));
    assert_eq!(w.opportunity(&crm_id).fields.deal_value, Some(45000.0));
}
