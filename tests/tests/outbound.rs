//! CRM → Partner Center, end to end: a seller works in Dynamics 365 or Salesforce (through the
//! sandbox's control API, as the CRM's UI would), the poller finds the change, the processor
//! writes Partner Center, and the test looks at what Partner Center and the seller see. Every
//! scenario runs for both CRMs, on DynamoDB and SQS (moto) and on the embedded store and queue.

use cosell_e2e::stack::{Backend, CrmKind, Incoming, Setup, Share, Stage, TestStack};
use serde_json::{Value, json};

cosell_e2e::every_stack!(
    sharing_a_deal_creates_exactly_one_referral,
    partner_center_asking_for_twenty_seconds_is_not_asked_again_sooner,
    a_lost_create_answer_does_not_make_a_second_referral,
    a_deal_that_fails_validation_gets_audit_and_a_cross_and_no_partner_center_call,
    with_a_catalog_a_deal_linking_an_unknown_solution_gets_a_cross_and_audit,
    accepting_from_the_hold_stage_writes_partner_center_once_and_echoes_nothing,
    closing_the_opportunity_closes_the_referral,
    closing_a_pending_referral_declines_it,
    edits_to_different_fields_on_both_sides_are_both_kept,
    the_later_edit_of_the_same_field_wins_and_audit_says_so,
    a_later_crm_edit_of_the_same_field_wins_over_partner_center,
    a_lost_if_match_race_is_read_and_merged_again,
    a_visible_referral_cannot_go_back_to_private,
    webhooks_that_never_arrive_are_made_up_by_reconciliation,
    a_poll_spanning_several_pages_loses_nothing,
);

fn text<'a>(v: &'a Value, pointer: &str) -> Option<&'a str> {
    v.pointer(pointer).and_then(Value::as_str)
}

async fn sharing_a_deal_creates_exactly_one_referral(kind: CrmKind, backend: Backend) {
    let stack = TestStack::start(kind, backend).await;
    let crm_id = stack
        .seller_shares(Share {
            name: "Tailspin cloud migration",
            help: Some("ProofOfConceptOrDemo"),
            ..Share::default()
        })
        .await;
    let run = stack.settle().await;
    assert_eq!(run.failed, 0, "{run:?}");

    let referral = stack
        .referral_for_opportunity(&crm_id)
        .await
        .expect("a referral carries the opportunity's id");
    assert_eq!(text(&referral, "/name"), Some("Tailspin cloud migration"));
    assert_eq!(
        text(&referral, "/customerProfile/address/country"),
        Some("NO")
    );
    let opportunity = stack.opportunity(&crm_id).await.expect("the opportunity");
    let referral_id = text(&referral, "/id").expect("an id");
    assert_eq!(opportunity.referral_id.as_deref(), Some(referral_id));
    assert!(opportunity.name.starts_with('✔'), "{}", opportunity.name);
    assert!(
        opportunity.audit.contains("Shared with Partner Center"),
        "{}",
        opportunity.audit
    );

    // Settled: another poll finds nothing, and nothing more is written anywhere.
    let before = stack.stats().await;
    let again = stack.settle().await;
    assert_eq!(again.received(), 0, "{again:?}");
    assert_eq!(stack.stats().await.since(&before).writes(), 0);
}

const CREATE: &str = "POST /v1.0/engagements/referrals";
const PATCH: &str = "PATCH /v1.0/engagements/referrals/{id}";

/// Partner Center's `Retry-After` on a create outlasts the adapter's in-process wait: the
/// message stays in the queue at least that long.
async fn partner_center_asking_for_twenty_seconds_is_not_asked_again_sooner(
    kind: CrmKind,
    backend: Backend,
) {
    let stack = TestStack::start(kind, backend).await;
    stack
        .fault(
            json!({"method": "POST", "route": "/v1.0/engagements/referrals",
                      "status": 429, "retryAfter": 20, "count": 1}),
        )
        .await;
    let crm_id = stack
        .seller_shares(Share {
            name: "Throttled for a while",
            help: Some("ProofOfConceptOrDemo"),
            ..Share::default()
        })
        .await;
    let run = stack.settle().await;
    assert_eq!(run.failed, 1, "the throttled attempt failed: {run:?}");
    assert_eq!(
        stack
            .partner_center_calls()
            .await
            .get("POST /v1.0/engagements/referrals"),
        1,
        "not sent again within the 20 s Partner Center asked for"
    );
    assert_eq!(
        stack.queue_depth().await,
        1,
        "the message waits in the queue"
    );
    assert!(stack.referral_for_opportunity(&crm_id).await.is_none());
}

async fn a_lost_create_answer_does_not_make_a_second_referral(kind: CrmKind, backend: Backend) {
    let stack = TestStack::start(kind, backend).await;
    // Partner Center commits the create, but its answer never arrives.
    stack
        .fault(json!({
            "method": "POST",
            "route": "/v1.0/engagements/referrals",
            "dropAfterCommit": true,
            "count": 1
        }))
        .await;
    let crm_id = stack.seller_shares(Share::default()).await;
    let run = stack.settle().await;
    assert_eq!(run.failed, 1, "the first attempt failed: {run:?}");

    let calls = stack.partner_center_calls().await;
    assert_eq!(calls.get(CREATE), 1, "created once: {calls:?}");
    let referral = stack
        .referral_for_opportunity(&crm_id)
        .await
        .expect("the referral Partner Center committed");
    let opportunity = stack.opportunity(&crm_id).await.expect("the opportunity");
    assert_eq!(opportunity.referral_id.as_deref(), text(&referral, "/id"));
    assert!(opportunity.name.starts_with('✔'), "{}", opportunity.name);
}

async fn with_a_catalog_a_deal_linking_an_unknown_solution_gets_a_cross_and_audit(
    kind: CrmKind,
    backend: Backend,
) {
    let stack = TestStack::start(kind, backend).await;
    // The partner's catalog holds one solution, not the one the seller links.
    let (set, row) = match kind {
        CrmKind::Dynamics => (
            "cosell_solutioncatalogs",
            serde_json::json!({"cosell_name": "Data platform", "cosell_solutionid": "SOL-CATALOGUED"}),
        ),
        CrmKind::Salesforce => (
            "Microsoft_Solution_Catalog__c",
            serde_json::json!({"Name": "Data platform", "Solution_Id__c": "SOL-CATALOGUED"}),
        ),
    };
    stack
        .control(
            reqwest::Method::POST,
            &cosell_e2e::stack::CrmSide(kind).control(set),
            Some(row),
        )
        .await;
    let crm_id = stack
        .seller_shares(Share {
            name: "Unknown solution",
            solutions: &["SOL-NOT-IN-CATALOG"],
            ..Share::default()
        })
        .await;
    let run = stack.settle().await;
    assert_eq!(run.failed, 0, "acknowledged, not retried: {run:?}");
    let opportunity = stack.opportunity(&crm_id).await.expect("the opportunity");
    assert!(opportunity.name.starts_with('✖'), "{}", opportunity.name);
    assert!(
        opportunity.audit.contains("'SOL-NOT-IN-CATALOG'")
            && opportunity.audit.contains("solution catalog"),
        "Audit names the unknown solution: {}",
        opportunity.audit
    );
    assert_eq!(stack.referral_for_opportunity(&crm_id).await, None);

    let listed = stack
        .seller_shares(Share {
            name: "Catalogued solution",
            solutions: &["SOL-CATALOGUED"],
            ..Share::default()
        })
        .await;
    let run = stack.settle().await;
    assert_eq!(run.failed, 0, "{run:?}");
    assert!(stack.referral_for_opportunity(&listed).await.is_some());
}

async fn a_deal_that_fails_validation_gets_audit_and_a_cross_and_no_partner_center_call(
    kind: CrmKind,
    backend: Backend,
) {
    let stack = TestStack::start(kind, backend).await;
    let before = stack.partner_center_calls().await;
    let crm_id = stack
        .seller_shares(Share {
            country: "Norway",
            solutions: &[],
            help: Some("ProofOfConceptOrDemo"),
            contact: false,
            ..Share::default()
        })
        .await;
    let run = stack.settle().await;
    assert_eq!(run.failed, 0, "acknowledged, not retried: {run:?}");

    // Only the poller's reconciliation listed referrals; nothing was sent for the deal.
    let calls = stack.partner_center_calls().await.since(&before);
    let sent: Vec<&String> = calls
        .0
        .keys()
        .filter(|k| k.as_str() != "GET /v1.0/engagements/referrals")
        .collect();
    assert!(
        sent.is_empty(),
        "no Partner Center call for the deal: {calls:?}"
    );
    let opportunity = stack.opportunity(&crm_id).await.expect("the opportunity");
    assert!(opportunity.name.starts_with('✖'), "{}", opportunity.name);
    let audit = opportunity.audit.to_lowercase();
    for what in ["country", "solution", "contact"] {
        assert!(
            audit.contains(what),
            "Audit names the {what}: {}",
            opportunity.audit
        );
    }
    assert!(opportunity.referral_id.is_none());
    assert_eq!(stack.referral_for_opportunity(&crm_id).await, None);
}

/// A co-sell referral from Microsoft, synced into the CRM on hold; answers (referral id, CRM id).
async fn incoming_on_hold(stack: &TestStack) -> (String, String) {
    let referral = stack
        .incoming_referral(
            Incoming::CoSell,
            json!({"name": "Contoso analytics", "details": {"dealValue": 5000}}),
        )
        .await;
    let id = text(&referral, "/id").expect("an id").to_string();
    let run = stack.settle().await;
    assert_eq!(run.failed, 0, "{run:?}");
    let opportunity = stack.opportunity_for(&id).await.expect("in the CRM");
    assert_eq!(opportunity.stage, Stage::OnHold);
    (id, opportunity.id)
}

async fn accepting_from_the_hold_stage_writes_partner_center_once_and_echoes_nothing(
    kind: CrmKind,
    backend: Backend,
) {
    let stack = TestStack::start(kind, backend).await;
    let (id, crm_id) = incoming_on_hold(&stack).await;
    // Edits while on hold are not sent.
    stack.seller_sets_deal_value(&crm_id, 7000.0).await;
    let before = stack.partner_center_calls().await;
    let run = stack.settle().await;
    assert_eq!(run.failed, 0, "{run:?}");
    assert_eq!(
        stack.partner_center_calls().await.since(&before).writes(),
        0
    );

    let before = stack.partner_center_calls().await;
    stack.seller_moves_to(&crm_id, Stage::Active).await;
    let run = stack.settle().await;
    assert_eq!(run.failed, 0, "{run:?}");
    let writes = stack.partner_center_calls().await.since(&before);
    assert_eq!(
        writes.writes(),
        1,
        "one write accepts it, with the edit: {writes:?}"
    );
    assert_eq!(writes.get(PATCH), 1, "{writes:?}");
    let referral = stack.referral(&id).await;
    assert_eq!(text(&referral, "/status"), Some("Active"));
    assert_eq!(text(&referral, "/substatus"), Some("Accepted"));
    assert_eq!(
        referral
            .pointer("/details/dealValue")
            .and_then(Value::as_f64),
        Some(7000.0)
    );

    // Its webhook and the next polls write nothing anywhere.
    let before = stack.stats().await;
    let again = stack.settle().await;
    assert_eq!(again.failed, 0, "{again:?}");
    assert_eq!(stack.stats().await.since(&before).writes(), 0);
    let opportunity = stack.opportunity(&crm_id).await.expect("the opportunity");
    assert_eq!(opportunity.stage, Stage::Active);
    assert!(opportunity.name.starts_with('✔'), "{}", opportunity.name);
}

async fn closing_the_opportunity_closes_the_referral(kind: CrmKind, backend: Backend) {
    for (stage, substatus) in [(Stage::Won, "Won"), (Stage::Lost, "Lost")] {
        let stack = TestStack::start(kind, backend).await;
        let (id, crm_id) = incoming_on_hold(&stack).await;
        stack.seller_moves_to(&crm_id, Stage::Active).await;
        stack.settle().await;
        stack.seller_moves_to(&crm_id, stage).await;
        let run = stack.settle().await;
        assert_eq!(run.failed, 0, "{run:?}");
        let referral = stack.referral(&id).await;
        assert_eq!(text(&referral, "/status"), Some("Closed"), "{stage:?}");
        assert_eq!(text(&referral, "/substatus"), Some(substatus));

        // Nothing is written after a terminal state: reopening is refused, and says so.
        let before = stack.partner_center_calls().await;
        stack.seller_moves_to(&crm_id, Stage::Active).await;
        let run = stack.settle().await;
        assert_eq!(run.failed, 0, "acknowledged, not retried: {run:?}");
        assert_eq!(
            stack.partner_center_calls().await.since(&before).writes(),
            0
        );
        let opportunity = stack.opportunity(&crm_id).await.expect("the opportunity");
        assert!(opportunity.name.starts_with('✖'), "{}", opportunity.name);
        assert!(
            opportunity.audit_lines()[0].contains("closed"),
            "{:?}",
            opportunity.audit_lines()
        );
    }
}

async fn closing_a_pending_referral_declines_it(kind: CrmKind, backend: Backend) {
    let stack = TestStack::start(kind, backend).await;
    let (id, crm_id) = incoming_on_hold(&stack).await;
    stack.seller_moves_to(&crm_id, Stage::Lost).await;
    let run = stack.settle().await;
    assert_eq!(run.failed, 0, "{run:?}");
    let referral = stack.referral(&id).await;
    assert_eq!(text(&referral, "/status"), Some("Closed"));
    assert_eq!(text(&referral, "/substatus"), Some("Declined"));
    assert!(
        text(&referral, "/statusReason").is_some_and(|r| !r.is_empty()),
        "a reason: {referral}"
    );
}

/// A deal the seller shared, synced; answers (referral id, CRM id).
async fn shared_deal(stack: &TestStack) -> (String, String) {
    let crm_id = stack.seller_shares(Share::default()).await;
    let run = stack.settle().await;
    assert_eq!(run.failed, 0, "{run:?}");
    let referral = stack
        .referral_for_opportunity(&crm_id)
        .await
        .expect("shared");
    (text(&referral, "/id").expect("an id").to_string(), crm_id)
}

async fn edits_to_different_fields_on_both_sides_are_both_kept(kind: CrmKind, backend: Backend) {
    let stack = TestStack::start(kind, backend).await;
    let (id, crm_id) = shared_deal(&stack).await;
    // At the same time: the seller changes the deal value, someone in Partner Center the name.
    stack.seller_sets_deal_value(&crm_id, 31_000.0).await;
    stack
        .microsoft_changes(&id, json!({"name": "Tailspin cloud migration, phase 2"}))
        .await;
    let run = stack.settle().await;
    assert_eq!(run.failed, 0, "{run:?}");

    let referral = stack.referral(&id).await;
    assert_eq!(
        text(&referral, "/name"),
        Some("Tailspin cloud migration, phase 2")
    );
    assert_eq!(
        referral
            .pointer("/details/dealValue")
            .and_then(Value::as_f64),
        Some(31_000.0)
    );
    let opportunity = stack.opportunity(&crm_id).await.expect("the opportunity");
    assert_eq!(opportunity.name, "✔ Tailspin cloud migration, phase 2");
    assert_eq!(opportunity.deal_value, Some(31_000.0));
}

async fn the_later_edit_of_the_same_field_wins_and_audit_says_so(kind: CrmKind, backend: Backend) {
    let stack = TestStack::start(kind, backend).await;
    let (id, crm_id) = shared_deal(&stack).await;
    stack
        .seller_renames(&crm_id, "✔ Tailspin, seller's name")
        .await;
    // Later, in Partner Center.
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    stack
        .microsoft_changes(&id, json!({"name": "Tailspin, Partner Center's name"}))
        .await;
    let run = stack.settle().await;
    assert_eq!(run.failed, 0, "{run:?}");

    let referral = stack.referral(&id).await;
    assert_eq!(
        text(&referral, "/name"),
        Some("Tailspin, Partner Center's name")
    );
    let opportunity = stack.opportunity(&crm_id).await.expect("the opportunity");
    assert_eq!(opportunity.name, "✔ Tailspin, Partner Center's name");
    assert!(
        opportunity
            .audit_lines()
            .iter()
            .any(|l| l.contains("Tailspin, seller's name") && l.contains("Partner Center's name")),
        "Audit records the conflict: {:?}",
        opportunity.audit_lines()
    );
}

async fn webhooks_that_never_arrive_are_made_up_by_reconciliation(kind: CrmKind, backend: Backend) {
    let stack = TestStack::start(kind, backend).await;
    stack
        .webhook_fault(json!({"kind": "drop", "count": 1000}))
        .await;
    let mut ids = Vec::new();
    for n in 0..10 {
        let referral = stack
            .incoming_referral(Incoming::CoSell, json!({"name": format!("Missed {n}")}))
            .await;
        ids.push(text(&referral, "/id").expect("an id").to_string());
    }
    stack.wait_for_deliveries().await;
    assert_eq!(stack.queue_depth().await, 0, "no webhook got through");

    // One interval: one poll, then the queue.
    let report = stack.poll().await;
    assert!(report.referrals_enqueued >= 10, "{report:?}");
    let run = stack.process_queue().await;
    assert_eq!(run.failed, 0, "{run:?}");
    for id in &ids {
        assert_eq!(
            stack.opportunities_for(id).await.len(),
            1,
            "referral {id} is in the CRM"
        );
    }
}

async fn a_poll_spanning_several_pages_loses_nothing(kind: CrmKind, backend: Backend) {
    // Salesforce pages by at least 200 records; Dataverse by what the connector asks.
    let (page_size, count) = match kind {
        CrmKind::Dynamics => (3, 11),
        CrmKind::Salesforce => (200, 205),
    };
    let stack = TestStack::start_with(
        kind,
        Setup {
            backend,
            crm_page_size: Some(page_size),
            ..Setup::default()
        },
    )
    .await;
    let ids = stack.seller_marks_many_for_sync(count).await;

    let report = stack.poll().await;
    assert!(report.crm_pages > 1, "several pages: {report:?}");
    assert_eq!(
        report.crm_enqueued, count,
        "every opportunity, once: {report:?}"
    );
    let run = stack.process_queue().await;
    assert_eq!((run.succeeded, run.failed), (count, 0), "{run:?}");
    for id in &ids {
        let opportunity = stack.opportunity(id).await.expect("the opportunity");
        assert!(
            opportunity.name.starts_with('✖'),
            "{id} was handled: {}",
            opportunity.name
        );
    }
    // The connector's own ✖ and Audit writes are not changes to send.
    let again = stack.poll().await;
    assert_eq!(again.crm_enqueued, 0, "{again:?}");
}

async fn a_later_crm_edit_of_the_same_field_wins_over_partner_center(
    kind: CrmKind,
    backend: Backend,
) {
    let stack = TestStack::start(kind, backend).await;
    let (id, crm_id) = shared_deal(&stack).await;
    stack
        .microsoft_changes(&id, json!({"name": "Tailspin, Partner Center's name"}))
        .await;
    // Later, in the CRM (its times are kept to the second).
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    stack
        .seller_renames(&crm_id, "✔ Tailspin, seller's name")
        .await;
    let run = stack.settle().await;
    assert_eq!(run.failed, 0, "{run:?}");

    let referral = stack.referral(&id).await;
    assert_eq!(text(&referral, "/name"), Some("Tailspin, seller's name"));
    let opportunity = stack.opportunity(&crm_id).await.expect("the opportunity");
    assert_eq!(opportunity.name, "✔ Tailspin, seller's name");
    assert!(
        opportunity
            .audit_lines()
            .iter()
            .any(|l| l.contains("Tailspin, seller's name") && l.contains("Partner Center's name")),
        "Audit records the conflict: {:?}",
        opportunity.audit_lines()
    );
}

async fn a_lost_if_match_race_is_read_and_merged_again(kind: CrmKind, backend: Backend) {
    let stack = TestStack::start(kind, backend).await;
    let (id, crm_id) = shared_deal(&stack).await;
    // Someone else's write lands between the connector's read and its PATCH.
    stack
        .fault(json!({
            "method": "PATCH",
            "route": "/v1.0/engagements/referrals/{id}",
            "status": 412,
            "count": 1
        }))
        .await;
    stack.seller_sets_deal_value(&crm_id, 44_000.0).await;
    let before = stack.partner_center_calls().await;
    let run = stack.settle().await;
    assert_eq!(run.failed, 0, "retried within the sync: {run:?}");
    let calls = stack.partner_center_calls().await.since(&before);
    assert_eq!(
        calls.get(PATCH),
        2,
        "refused once, then sent again: {calls:?}"
    );
    let referral = stack.referral(&id).await;
    assert_eq!(
        referral
            .pointer("/details/dealValue")
            .and_then(Value::as_f64),
        Some(44_000.0)
    );
}

async fn a_visible_referral_cannot_go_back_to_private(kind: CrmKind, backend: Backend) {
    let stack = TestStack::start(kind, backend).await;
    let (id, crm_id) = shared_deal(&stack).await;
    let private = match kind {
        CrmKind::Dynamics => json!({"cosell_visibility": false}),
        CrmKind::Salesforce => json!({"Referral_Visibility__c": "Private"}),
    };
    stack.seller_edits(&crm_id, private).await;
    let before = stack.partner_center_calls().await;
    let run = stack.settle().await;
    assert_eq!(run.failed, 0, "{run:?}");

    assert_eq!(
        stack.partner_center_calls().await.since(&before).writes(),
        0
    );
    let referral = stack.referral(&id).await;
    assert_eq!(
        referral
            .pointer("/consent/consentToShareReferralWithMicrosoftSellers")
            .and_then(Value::as_bool),
        Some(true)
    );
    let opportunity = stack.opportunity(&crm_id).await.expect("the opportunity");
    let visible = match kind {
        CrmKind::Dynamics => opportunity.raw["cosell_visibility"] == json!(true),
        CrmKind::Salesforce => opportunity.raw["Referral_Visibility__c"] == json!("Visible"),
    };
    assert!(
        visible,
        "set back to visible in the CRM: {:?}",
        opportunity.raw
    );
    assert!(
        opportunity.audit_lines()[0]
            .to_lowercase()
            .contains("private"),
        "Audit says why: {:?}",
        opportunity.audit_lines()
    );
}
