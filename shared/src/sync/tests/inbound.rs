//! Partner Center → CRM.

use serde_json::json;

use super::{World, last_audit, referral_id};
use crate::crm::{Crm, CrmError, CrmKind, OpportunityFields, OpportunityState};
use crate::partner_center::PartnerCenterError;
use crate::store::{Outcome, RecordKind};
use crate::sync::{Handled, SyncError};

#[tokio::test]
async fn a_new_co_sell_referral_becomes_one_opportunity_on_hold_linked_both_ways() {
    let w = World::dynamics();
    let referral = w.pc.incoming_co_sell(json!({"name": "Fabrikam ERP"}));
    let id = referral_id(&referral);

    let Handled::Created { crm_id } = w.synced(&id).await else {
        panic!("created");
    };

    let o = w.opportunity(&crm_id);
    assert_eq!(o.fields.name.as_deref(), Some("✔ Fabrikam ERP"));
    assert_eq!(
        o.fields.state,
        Some(OpportunityState::OnHold),
        "waits for the seller"
    );
    assert_eq!(o.fields.referral_id.as_deref(), Some(id.as_str()));
    assert_eq!(o.fields.sync_with_partner_center, Some(true));
    assert_eq!(o.fields.deal_value, Some(30_000.0));
    assert!(
        last_audit(&o).contains("Created from Partner Center"),
        "{o:?}"
    );
    let accounts = w.crm.accounts();
    assert_eq!(accounts.len(), 1);
    assert_eq!(
        o.fields.account_id.as_deref(),
        Some(accounts[0].id.as_str())
    );
    let contacts = w.crm.contacts();
    assert_eq!(contacts.len(), 1, "the customer contact");
    assert_eq!(
        o.fields.contact_id.as_deref(),
        Some(contacts[0].id.as_str())
    );
    assert_eq!(
        w.crm.solution_links_of(&crm_id),
        vec!["SOL-SANDBOX-0001".to_string()]
    );

    // The CRM id goes back to Partner Center, and the link remembers both.
    assert_eq!(
        w.referral(&id).external_reference_id.as_deref(),
        Some(crm_id.as_str())
    );
    let link = w.linked(&id).await;
    assert_eq!(link.crm_id, crm_id);
    assert_eq!(link.record, RecordKind::Opportunity);
    assert_eq!(
        link.referral_etag,
        w.referral(&id).e_tag,
        "the eTag after the write-back"
    );
    assert!(
        link.state.microsoft_invited,
        "Microsoft's referral is in the engagement"
    );
    let journal = w.journal(&id).await;
    assert_eq!(journal.len(), 1);
    assert_eq!(journal[0].outcome, Outcome::Synced);
}

#[tokio::test]
async fn the_same_version_delivered_again_is_skipped_and_writes_nothing() {
    let w = World::dynamics();
    let (id, _) = w.incoming_synced().await;
    let writes = w.crm.writes();
    // The write-back made a new version; the webhook it causes syncs nothing either.
    for _ in 0..3 {
        let handled = w.synced(&id).await;
        assert!(
            matches!(handled, Handled::Skipped { .. } | Handled::Unchanged),
            "{handled:?}"
        );
    }
    assert_eq!(w.crm.opportunities().len(), 1);
    assert_eq!(w.crm.writes(), writes, "no CRM write");
    assert_eq!(w.pc.calls().writes(), 0, "no Partner Center write");
}

#[tokio::test]
async fn an_existing_account_with_the_same_name_and_postal_code_is_used() {
    let w = World::dynamics();
    w.crm
        .create_account(&crate::crm::AccountFields {
            name: "FABRIKAM".into(),
            postal_code: Some("980 04".into()),
            country: Some("US".into()),
            ..Default::default()
        })
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let (_, crm_id) = w.incoming_synced().await;
    assert_eq!(w.crm.accounts().len(), 1, "no second account");
    assert_eq!(
        w.opportunity(&crm_id).fields.account_id,
        Some(w.crm.accounts()[0].id.clone())
    );
}

#[tokio::test]
async fn a_referral_naming_a_sellers_opportunity_adopts_it() {
    let w = World::dynamics();
    let crm_id = w.crm.seller_creates(OpportunityFields {
        name: Some("Seller's own".into()),
        state: Some(OpportunityState::Active),
        ..Default::default()
    });
    let referral =
        w.pc.incoming_co_sell(json!({"externalReferenceId": crm_id.clone()}));
    let id = referral_id(&referral);

    let handled = w.synced(&id).await;
    assert!(
        matches!(&handled, Handled::Updated { crm_id: c, .. } if *c == crm_id),
        "{handled:?}"
    );
    assert_eq!(w.crm.opportunities().len(), 1, "no second opportunity");
    let o = w.opportunity(&crm_id);
    assert_eq!(o.fields.referral_id.as_deref(), Some(id.as_str()));
    assert_eq!(o.fields.sync_with_partner_center, Some(true));
    assert_eq!(o.fields.name.as_deref(), Some("✔ Fabrikam cloud migration"));
    assert_eq!(w.linked(&id).await.crm_id, crm_id);
}

#[tokio::test]
async fn a_referral_naming_a_deleted_opportunity_is_reported_not_recreated() {
    let w = World::dynamics();
    let crm_id = w.crm.seller_creates(OpportunityFields {
        name: Some("Gone soon".into()),
        ..Default::default()
    });
    w.crm.seller_deletes(&crm_id);
    let referral =
        w.pc.incoming_co_sell(json!({"externalReferenceId": crm_id}));
    let id = referral_id(&referral);

    let handled = w.synced(&id).await;
    let Handled::Failed { reason } = handled else {
        panic!("failed, not {handled:?}");
    };
    assert!(reason.contains("no longer exists"), "{reason}");
    assert!(w.crm.opportunities().is_empty(), "not recreated");
    assert_eq!(w.link(&id).await, None);
    assert_eq!(w.journal(&id).await[0].outcome, Outcome::Failed);
}

#[tokio::test]
async fn a_lead_stays_out_while_sync_co_sell_only_is_on_and_comes_in_when_it_is_off() {
    let mut w = World::dynamics();
    let lead = w.pc.incoming_lead(json!({}));
    let id = referral_id(&lead);

    let handled = w.synced(&id).await;
    assert!(matches!(handled, Handled::Skipped { .. }), "{handled:?}");
    assert_eq!(w.crm.writes(), 0, "nothing in the CRM");
    let journal = w.journal(&id).await;
    assert_eq!(
        journal[0].outcome,
        Outcome::Skipped,
        "the admin can see why"
    );

    w.options.co_sell_only = false;
    w.pc.microsoft_edit(&id, json!({"name": "A newer version"}));
    let Handled::Created { crm_id } = w.synced(&id).await else {
        panic!("the lead is created");
    };
    let leads = w.crm.leads();
    assert_eq!(leads.len(), 1);
    assert_eq!(leads[0].id, crm_id);
    assert_eq!(leads[0].fields.referral_id.as_deref(), Some(id.as_str()));
    assert!(w.crm.opportunities().is_empty());
    assert_eq!(w.linked(&id).await.record, RecordKind::Lead);
}

#[tokio::test]
async fn a_record_the_crm_refuses_is_reported_and_not_linked() {
    let w = World::dynamics();
    let referral = w.pc.incoming_co_sell(json!({}));
    let id = referral_id(&referral);
    w.crm.fail_next(
        "create_opportunity",
        CrmError::Rejected {
            message: "the deal value is too large".into(),
            field: Some("estimatedvalue".into()),
        },
    );

    let handled = w.synced(&id).await;
    let Handled::Failed { reason } = handled else {
        panic!("failed, not {handled:?}");
    };
    assert!(reason.contains("estimatedvalue"), "{reason}");
    assert_eq!(w.link(&id).await, None);
    assert_eq!(w.journal(&id).await[0].outcome, Outcome::Failed);
    assert_eq!(w.pc.calls().writes(), 0, "nothing written back");
}

#[tokio::test]
async fn a_crm_outage_leaves_the_message_for_a_retry_that_creates_once() {
    let w = World::dynamics();
    let referral = w.pc.incoming_co_sell(json!({}));
    let id = referral_id(&referral);
    w.crm.fail_next(
        "add_solution_link",
        CrmError::Transient {
            status: Some(503),
            retry_after: Some(20),
            message: "unavailable".into(),
        },
    );

    let err = w.referral_changed(&id).await;
    assert!(
        matches!(&err, Err(SyncError::Crm(e)) if e.is_transient()),
        "{err:?}"
    );
    assert_eq!(w.crm.opportunities().len(), 1, "created before the outage");

    // The claim was given back: the retry runs at once, finds the record and completes it.
    let handled = w.synced(&id).await;
    assert!(matches!(handled, Handled::Created { .. }), "{handled:?}");
    assert_eq!(w.crm.opportunities().len(), 1, "still one");
    let o = &w.crm.opportunities()[0];
    assert!(
        o.fields.contact_id.is_some(),
        "the contact attached on the retry"
    );
}

#[tokio::test]
async fn a_write_back_that_loses_an_if_match_race_is_sent_again_without_it() {
    let w = World::dynamics();
    let referral = w.pc.incoming_co_sell(json!({}));
    let id = referral_id(&referral);
    w.pc.fail_next("patch_referral", PartnerCenterError::PreconditionFailed);

    let Handled::Created { crm_id } = w.synced(&id).await else {
        panic!("created");
    };
    let patches = w.pc.patches();
    assert_eq!(patches.len(), 2, "{patches:?}");
    assert!(patches[0].e_tag.is_some());
    assert_eq!(patches[1].e_tag, None, "the field is the connector's alone");
    assert_eq!(
        w.referral(&id).external_reference_id.as_deref(),
        Some(crm_id.as_str())
    );
}

#[tokio::test]
async fn a_microsoft_edit_writes_exactly_the_field_that_changed() {
    let w = World::dynamics();
    let (id, crm_id) = w.incoming_synced().await;
    let before = w.opportunity(&crm_id);
    w.advance(chrono::Duration::minutes(5));
    w.pc.microsoft_edit(&id, json!({"details": {"dealValue": 45000}}));

    let handled = w.synced(&id).await;
    let Handled::Updated { fields, .. } = handled else {
        panic!("updated, not {handled:?}");
    };
    assert_eq!(fields, vec!["deal value"]);
    let after = w.opportunity(&crm_id);
    assert_eq!(after.fields.deal_value, Some(45_000.0));
    assert_eq!(
        OpportunityFields {
            deal_value: before.fields.deal_value,
            audit: before.fields.audit.clone(),
            ..after.fields.clone()
        },
        before.fields,
        "nothing else changed"
    );
    assert!(last_audit(&after).contains("deal value"), "{after:?}");
}

#[tokio::test]
async fn a_closed_referral_closes_the_opportunity_and_the_link_is_terminal() {
    let w = World::dynamics();
    let (id, crm_id) = w.incoming_synced().await;
    w.pc.microsoft_edit(
        &id,
        json!({"status": "Closed", "substatus": "Lost", "statusReason": "Budget cut"}),
    );

    w.synced(&id).await;
    assert_eq!(
        w.opportunity(&crm_id).fields.state,
        Some(OpportunityState::Lost)
    );
    assert!(w.linked(&id).await.terminal);
    assert_eq!(
        w.pc.calls().writes(),
        0,
        "nothing is written to a closed referral"
    );
}

#[tokio::test]
async fn an_edit_the_crm_refuses_marks_the_opportunity_and_is_not_retried() {
    let w = World::new(CrmKind::Salesforce);
    let (id, crm_id) = w.incoming_synced().await;
    w.pc.microsoft_edit(&id, json!({"details": {"notes": "new notes"}}));
    w.crm.fail_next(
        "update_opportunity",
        CrmError::Rejected {
            message: "Description: too long".into(),
            field: Some("Description".into()),
        },
    );

    let handled = w.synced(&id).await;
    let Handled::Failed { reason } = handled else {
        panic!("failed, not {handled:?}");
    };
    assert!(reason.contains("too long"), "{reason}");
    let o = w.opportunity(&crm_id);
    assert!(
        o.fields.name.as_deref().is_some_and(|n| n.starts_with('✖')),
        "{o:?}"
    );
    assert!(last_audit(&o).contains("too long"));
    assert_eq!(w.linked(&id).await.last_error, Some(reason));
}

#[tokio::test]
async fn microsofts_referral_changing_updates_only_the_microsoft_fields_of_ours() {
    let w = World::dynamics();
    let (id, crm_id) = w.incoming_synced().await;
    let before = w.opportunity(&crm_id);
    let microsoft =
        w.pc.microsoft_referral(&id)
            .unwrap_or_else(|| panic!("Microsoft's referral"));
    let ms_id = referral_id(&microsoft);
    w.pc.microsoft_edit(&ms_id, json!({"status": "Closed", "substatus": "Won"}));

    let handled = w
        .inbound()
        .referral_changed(&ms_id, "related-referral-updated", w.now())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(matches!(handled, Handled::Updated { .. }), "{handled:?}");
    let after = w.opportunity(&crm_id);
    assert_eq!(after.fields.microsoft_status.as_deref(), Some("Closed/Won"));
    assert_eq!(
        after.fields.state, before.fields.state,
        "ours stays on hold"
    );
}

#[tokio::test]
async fn a_related_event_for_an_engagement_without_a_synced_referral_is_skipped() {
    let w = World::dynamics();
    let referral = w.pc.incoming_co_sell(json!({}));
    let ms =
        w.pc.microsoft_referral(&referral_id(&referral))
            .unwrap_or_else(|| panic!("Microsoft's referral"));
    let handled = w
        .inbound()
        .referral_changed(&referral_id(&ms), "related-referral-updated", w.now())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(matches!(handled, Handled::Skipped { .. }), "{handled:?}");
    assert_eq!(w.crm.writes(), 0);
}

#[tokio::test]
async fn a_referral_nobody_may_see_is_skipped() {
    let w = World::dynamics();
    let handled = w.synced("6f1b6c1e-0000-4000-8000-00000000dead").await;
    assert!(matches!(handled, Handled::Skipped { .. }), "{handled:?}");
    assert_eq!(w.crm.writes(), 0);
}

#[tokio::test]
async fn the_echo_of_the_write_back_costs_one_read_and_nothing_else() {
    let w = World::dynamics();
    let (id, _) = w.incoming_synced().await;
    let crm_calls = w.crm.calls("get_opportunity") + w.crm.writes();
    let handled = w.synced(&id).await;
    assert!(matches!(handled, Handled::Skipped { .. }), "{handled:?}");
    assert_eq!(w.pc.calls().total(), 1, "{:?}", w.pc.calls());
    assert_eq!(
        w.crm.calls("get_opportunity") + w.crm.writes(),
        crm_calls,
        "no CRM call"
    );
}

#[tokio::test]
async fn microsofts_referral_announced_again_costs_one_read() {
    let w = World::dynamics();
    let (id, _) = w.incoming_synced().await;
    let ms =
        w.pc.microsoft_referral(&id)
            .unwrap_or_else(|| panic!("Microsoft's referral"));
    let handled = w
        .inbound()
        .referral_changed(&referral_id(&ms), "related-referral-created", w.now())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(matches!(handled, Handled::Skipped { .. }), "{handled:?}");
    assert_eq!(w.pc.calls().total(), 1, "{:?}", w.pc.calls());
}

#[tokio::test]
async fn a_first_attempt_creates_without_looking_and_a_retry_looks_first() {
    let w = World::dynamics();
    let referral = w.pc.incoming_co_sell(json!({}));
    let id = referral_id(&referral);
    w.crm.fail_next(
        "add_solution_link",
        CrmError::Transient {
            status: Some(503),
            retry_after: None,
            message: "unavailable".into(),
        },
    );
    let first = w.referral_changed(&id).await;
    assert!(first.is_err(), "{first:?}");
    assert_eq!(
        w.crm.calls("find_opportunity_by_referral"),
        0,
        "nothing to find yet"
    );
    w.synced(&id).await;
    assert_eq!(
        w.crm.calls("find_opportunity_by_referral"),
        1,
        "the retry finds what the first attempt made"
    );
    assert_eq!(w.crm.opportunities().len(), 1);
}

#[tokio::test]
async fn a_microsoft_edit_costs_one_referral_read_and_one_crm_read() {
    let w = World::dynamics();
    let (id, _) = w.incoming_synced().await;
    w.advance(chrono::Duration::minutes(5));
    w.pc.microsoft_edit(&id, json!({"details": {"notes": "new notes"}}));
    let reads = w.crm.calls("get_opportunity");
    w.synced(&id).await;
    assert_eq!(w.pc.calls().total(), 1, "{:?}", w.pc.calls());
    assert_eq!(w.crm.calls("get_opportunity") - reads, 1);
}
