//! Co-sell end to end: a deal that asks for Microsoft's help reaches Microsoft (the connected
//! referral in its engagement, exactly once, whatever is lost on the way), Microsoft's answer
//! shows in the CRM, every shared field can be emptied on either side, the Services co-sell
//! fields are checked before anything is sent, a Won too early for Partner Center waits, and
//! hold-stage edits never ride along with a decline or win over Microsoft's later change.
//! Every scenario runs for both CRMs, on DynamoDB and SQS (moto) and on the embedded backend.

use cosell_e2e::stack::{Backend, CrmKind, Incoming, Share, Stage, TestStack};
use reqwest::Method;
use serde_json::{Value, json};

cosell_e2e::every_stack!(
    a_co_sell_deal_gets_exactly_one_microsoft_referral,
    a_private_deal_invites_no_one,
    a_lost_answer_to_the_partners_create_still_invites_microsoft_once,
    a_lost_answer_to_microsofts_create_makes_no_second_one,
    a_failure_between_the_two_creates_is_finished_by_the_next_run,
    a_linked_private_deal_turned_co_sell_invites_microsoft,
    microsoft_accepting_shows_in_the_crm,
    emptying_a_shared_field_in_the_crm_empties_it_in_partner_center,
    emptying_a_shared_field_in_partner_center_empties_it_in_the_crm,
    removing_the_contact_on_either_side_removes_it_on_the_other,
    a_services_deal_without_an_allowed_solution_area_is_refused_before_any_call,
    the_services_and_marketplace_fields_reach_partner_center,
    a_won_within_the_first_72_hours_is_held_and_sent_later,
    an_early_webhook_for_the_connectors_own_referral_reads_as_shared,
    a_decline_sends_only_the_decline_not_the_hold_edits,
    accepting_keeps_microsofts_later_value_over_an_older_hold_edit,
    a_conflict_on_hold_is_written_once,
);

const CREATE: &str = "POST /v1.0/engagements/referrals";

fn text<'a>(v: &'a Value, pointer: &str) -> Option<&'a str> {
    v.pointer(pointer).and_then(Value::as_str)
}

/// Microsoft's referrals in the engagement of the partner's referral `id`.
async fn microsoft_referrals(stack: &TestStack, id: &str) -> Vec<Value> {
    let own = stack.referral(id).await;
    let engagement = own["engagementId"].clone();
    stack
        .referrals()
        .await
        .into_iter()
        .filter(|(owner, r)| owner == "microsoft" && r["engagementId"] == engagement)
        .map(|(_, r)| r)
        .collect()
}

fn co_sell() -> Share<'static> {
    Share {
        name: "Tailspin co-sell",
        help: Some("ProofOfConceptOrDemo"),
        ..Share::default()
    }
}

/// Shares `share`, settles, and answers (referral id, CRM id).
async fn shared(stack: &TestStack, share: Share<'_>) -> (String, String) {
    let crm_id = stack.seller_shares(share).await;
    let run = stack.settle().await;
    assert_eq!(run.failed, 0, "{run:?}");
    let referral = stack
        .referral_for_opportunity(&crm_id)
        .await
        .expect("the partner's referral");
    (text(&referral, "/id").expect("an id").to_string(), crm_id)
}

async fn a_co_sell_deal_gets_exactly_one_microsoft_referral(kind: CrmKind, backend: Backend) {
    let stack = TestStack::start(kind, backend).await;
    let (id, crm_id) = shared(&stack, co_sell()).await;

    let own = stack.referral(&id).await;
    assert_eq!(text(&own, "/type"), Some("Shared"));
    let microsoft = microsoft_referrals(&stack, &id).await;
    assert_eq!(microsoft.len(), 1, "{microsoft:?}");
    assert_eq!(
        microsoft[0].pointer("/target/0/id").and_then(Value::as_str),
        Some("msft")
    );
    assert_eq!(text(&microsoft[0], "/status"), Some("New"));
    let opportunity = stack.opportunity(&crm_id).await.expect("the opportunity");
    assert!(
        opportunity.audit.contains("and with Microsoft"),
        "{}",
        opportunity.audit
    );
    assert!(opportunity.name.starts_with('✔'), "{}", opportunity.name);

    // Its related-referral webhook and the next polls add nothing.
    let before = stack.stats().await;
    let again = stack.settle().await;
    assert_eq!(again.failed, 0, "{again:?}");
    assert_eq!(stack.stats().await.since(&before).get(CREATE), 0);
    assert_eq!(microsoft_referrals(&stack, &id).await.len(), 1);
}

async fn a_private_deal_invites_no_one(kind: CrmKind, backend: Backend) {
    let stack = TestStack::start(kind, backend).await;
    let (id, crm_id) = shared(
        &stack,
        Share {
            visible: false,
            ..Share::default()
        },
    )
    .await;
    assert!(microsoft_referrals(&stack, &id).await.is_empty());
    assert_eq!(stack.stats().await.get(CREATE), 1);
    let opportunity = stack.opportunity(&crm_id).await.expect("the opportunity");
    assert!(
        !opportunity.audit.contains("Microsoft"),
        "{}",
        opportunity.audit
    );
}

async fn a_lost_answer_to_the_partners_create_still_invites_microsoft_once(
    kind: CrmKind,
    backend: Backend,
) {
    let stack = TestStack::start(kind, backend).await;
    stack
        .fault(
            json!({"method": "POST", "route": "/v1.0/engagements/referrals",
                      "dropAfterCommit": true, "count": 1}),
        )
        .await;
    let crm_id = stack.seller_shares(co_sell()).await;
    let run = stack.settle().await;
    assert_eq!(run.failed, 1, "the first attempt failed: {run:?}");
    let referral = stack
        .referral_for_opportunity(&crm_id)
        .await
        .expect("one partner referral");
    let id = text(&referral, "/id").expect("an id");
    assert_eq!(microsoft_referrals(&stack, id).await.len(), 1);
    assert_eq!(stack.stats().await.get(CREATE), 2, "one create each");
}

async fn a_lost_answer_to_microsofts_create_makes_no_second_one(kind: CrmKind, backend: Backend) {
    let stack = TestStack::start(kind, backend).await;
    // The partner's create goes through; Microsoft's commits but its answer is lost.
    stack
        .fault(
            json!({"method": "POST", "route": "/v1.0/engagements/referrals",
                      "dropAfterCommit": true, "count": 1, "skip": 1}),
        )
        .await;
    let crm_id = stack.seller_shares(co_sell()).await;
    let run = stack.settle().await;
    assert_eq!(run.failed, 1, "the first attempt failed: {run:?}");
    let referral = stack
        .referral_for_opportunity(&crm_id)
        .await
        .expect("one partner referral");
    let id = text(&referral, "/id").expect("an id");
    assert_eq!(microsoft_referrals(&stack, id).await.len(), 1);
    assert_eq!(stack.stats().await.get(CREATE), 2, "no third create");
    let opportunity = stack.opportunity(&crm_id).await.expect("the opportunity");
    assert!(
        opportunity.audit.contains("and with Microsoft"),
        "{}",
        opportunity.audit
    );
}

async fn a_failure_between_the_two_creates_is_finished_by_the_next_run(
    kind: CrmKind,
    backend: Backend,
) {
    let stack = TestStack::start(kind, backend).await;
    // As if the processor stopped after the partner's referral: Microsoft's create never
    // reaches Partner Center on the first run.
    stack
        .fault(
            json!({"method": "POST", "route": "/v1.0/engagements/referrals",
                      "status": 503, "count": 1 + cosell_e2e::stack::ADAPTER_RETRIES, "skip": 1}),
        )
        .await;
    let crm_id = stack.seller_shares(co_sell()).await;
    let first = stack.poll().await;
    assert_eq!(first.crm_enqueued, 1);
    let run = stack.process_batch().await;
    assert_eq!(run.failed, 1, "{run:?}");
    let referral = stack
        .referral_for_opportunity(&crm_id)
        .await
        .expect("the partner's referral");
    let id = text(&referral, "/id").expect("an id").to_string();
    assert!(microsoft_referrals(&stack, &id).await.is_empty());
    // Not half-shared in the seller's eyes either.
    let opportunity = stack.opportunity(&crm_id).await.expect("the opportunity");
    assert!(
        !opportunity.audit.contains("Shared with"),
        "{}",
        opportunity.audit
    );

    let run = stack.settle().await;
    assert_eq!(run.failed, 0, "{run:?}");
    assert_eq!(microsoft_referrals(&stack, &id).await.len(), 1);
    let partners: Vec<_> = stack
        .referrals()
        .await
        .into_iter()
        .filter(|(owner, r)| owner == "partner" && r["externalReferenceId"] == json!(crm_id))
        .collect();
    assert_eq!(partners.len(), 1, "{partners:?}");
    let opportunity = stack.opportunity(&crm_id).await.expect("the opportunity");
    assert!(
        opportunity.audit.contains("and with Microsoft"),
        "{}",
        opportunity.audit
    );
}

async fn a_linked_private_deal_turned_co_sell_invites_microsoft(kind: CrmKind, backend: Backend) {
    let stack = TestStack::start(kind, backend).await;
    let (id, crm_id) = shared(
        &stack,
        Share {
            visible: false,
            ..Share::default()
        },
    )
    .await;
    let own = stack.referral(&id).await;
    assert_eq!(text(&own, "/type"), Some("Independent"));

    let help_field = match kind {
        CrmKind::Dynamics => "cosell_microsofthelp",
        CrmKind::Salesforce => "How_can_Microsoft_help__c",
    };
    let help = stack.crm_side.help_value("CustomerTechnicalArchitecture");
    stack
        .seller_edits(&crm_id, json!({ help_field: help }))
        .await;
    let run = stack.settle().await;
    assert_eq!(run.failed, 0, "{run:?}");

    let own = stack.referral(&id).await;
    assert_eq!(text(&own, "/type"), Some("Shared"));
    assert_eq!(
        text(&own, "/inviteContext/assistanceRequestCode"),
        Some("CustomerTechnicalArchitecture")
    );
    assert_eq!(
        own.pointer("/consent/consentToShareReferralWithMicrosoftSellers"),
        Some(&json!(true))
    );
    assert_eq!(text(&own, "/target/0/type"), Some("SolutionProfile"));
    assert_eq!(microsoft_referrals(&stack, &id).await.len(), 1);
    let opportunity = stack.opportunity(&crm_id).await.expect("the opportunity");
    assert!(
        opportunity
            .audit_lines()
            .iter()
            .any(|l| l.contains("; shared with Microsoft")),
        "{}",
        opportunity.audit
    );

    // Settled: the conversion is not sent again.
    let before = stack.stats().await;
    stack.settle().await;
    assert_eq!(stack.stats().await.since(&before).writes(), 0);
    assert_eq!(microsoft_referrals(&stack, &id).await.len(), 1);
}

async fn microsoft_accepting_shows_in_the_crm(kind: CrmKind, backend: Backend) {
    let stack = TestStack::start(kind, backend).await;
    let (id, crm_id) = shared(&stack, co_sell()).await;
    stack
        .control(
            Method::POST,
            &format!("/_sandbox/partner-center/referrals/{id}/related/accept"),
            Some(json!({"microsoftMsxId": "7-ACCEPTED01"})),
        )
        .await;
    let run = stack.settle().await;
    assert_eq!(run.failed, 0, "{run:?}");
    let opportunity = stack.opportunity(&crm_id).await.expect("the opportunity");
    assert_eq!(
        opportunity.microsoft_crm_id.as_deref(),
        Some("7-ACCEPTED01")
    );
    assert_eq!(
        opportunity.microsoft_status.as_deref(),
        Some("Active/Accepted")
    );
    // Microsoft's side never writes the partner's referral.
    let before = stack.partner_center_calls().await;
    stack.settle().await;
    assert_eq!(
        stack.partner_center_calls().await.since(&before).writes(),
        0
    );
}

fn crm_field(kind: CrmKind, what: &str) -> &'static str {
    match (kind, what) {
        (CrmKind::Dynamics, "notes") => "description",
        (CrmKind::Dynamics, "close date") => "estimatedclosedate",
        (CrmKind::Dynamics, "deal value") => "estimatedvalue",
        (CrmKind::Dynamics, "help") => "cosell_microsofthelp",
        (CrmKind::Salesforce, "notes") => "Description",
        (CrmKind::Salesforce, "close date") => "CloseDate",
        (CrmKind::Salesforce, "deal value") => "Amount",
        (CrmKind::Salesforce, "help") => "How_can_Microsoft_help__c",
        _ => panic!("no field {what}"),
    }
}

async fn emptying_a_shared_field_in_the_crm_empties_it_in_partner_center(
    kind: CrmKind,
    backend: Backend,
) {
    let stack = TestStack::start(kind, backend).await;
    let (id, crm_id) = shared(&stack, co_sell()).await;
    stack
        .seller_edits(
            &crm_id,
            json!({crm_field(kind, "notes"): "Phase one", crm_field(kind, "close date"): "2027-03-31"}),
        )
        .await;
    stack.settle().await;
    let own = stack.referral(&id).await;
    assert_eq!(text(&own, "/details/notes"), Some("Phase one"));

    let mut emptied = json!({
        crm_field(kind, "notes"): null,
        crm_field(kind, "deal value"): null,
        crm_field(kind, "help"): null,
    });
    if kind == CrmKind::Dynamics {
        emptied[crm_field(kind, "close date")] = Value::Null;
    }
    stack.seller_edits(&crm_id, emptied).await;
    let run = stack.settle().await;
    assert_eq!(run.failed, 0, "{run:?}");

    let own = stack.referral(&id).await;
    let empty = |pointer: &str| own.pointer(pointer).is_none_or(Value::is_null);
    assert!(empty("/details/notes"), "{own}");
    assert!(empty("/details/dealValue"), "{own}");
    assert_eq!(
        text(&own, "/inviteContext/assistanceRequestCode"),
        Some("Unknown")
    );
    if kind == CrmKind::Dynamics {
        assert!(empty("/details/closingDateTime"), "{own}");
    }
    // And it stays so: no echo puts the values back.
    let before = stack.stats().await;
    stack.settle().await;
    assert_eq!(stack.stats().await.since(&before).writes(), 0);
}

async fn emptying_a_shared_field_in_partner_center_empties_it_in_the_crm(
    kind: CrmKind,
    backend: Backend,
) {
    let stack = TestStack::start(kind, backend).await;
    let referral = stack
        .incoming_referral(
            Incoming::CoSell,
            json!({"details": {"notes": "From Microsoft", "dealValue": 5000,
                               "closingDateTime": "2027-06-30T00:00:00Z"}}),
        )
        .await;
    let id = text(&referral, "/id").expect("an id").to_string();
    stack.settle().await;
    let opportunity = stack.opportunity_for(&id).await.expect("in the CRM");
    assert_eq!(
        opportunity.raw[crm_field(kind, "notes")],
        json!("From Microsoft")
    );

    stack
        .microsoft_changes(
            &id,
            json!({"details": {"notes": null, "dealValue": null, "closingDateTime": null}}),
        )
        .await;
    let run = stack.settle().await;
    assert_eq!(run.failed, 0, "{run:?}");
    let opportunity = stack
        .opportunity(&opportunity.id)
        .await
        .expect("in the CRM");
    assert!(
        opportunity.raw[crm_field(kind, "notes")].is_null(),
        "{}",
        opportunity.raw
    );
    assert_eq!(opportunity.deal_value, None, "{}", opportunity.raw);
    match kind {
        CrmKind::Dynamics => assert!(
            opportunity.raw[crm_field(kind, "close date")].is_null(),
            "{}",
            opportunity.raw
        ),
        // Salesforce requires a close date: the opportunity keeps it.
        CrmKind::Salesforce => assert!(
            opportunity.raw[crm_field(kind, "close date")].is_string(),
            "{}",
            opportunity.raw
        ),
    }
}

fn services_field(kind: CrmKind, what: &str) -> &'static str {
    match (kind, what) {
        (CrmKind::Dynamics, "area") => "cosell_solutionarea",
        (CrmKind::Dynamics, "play") => "cosell_solutionplay",
        (CrmKind::Dynamics, "role") => "cosell_partnerrole",
        (CrmKind::Dynamics, "intent") => "cosell_marketplaceintent",
        (CrmKind::Salesforce, "area") => "Solution_Area__c",
        (CrmKind::Salesforce, "play") => "Solution_Play__c",
        (CrmKind::Salesforce, "role") => "Partner_Role__c",
        (CrmKind::Salesforce, "intent") => "Marketplace_Intent__c",
        _ => panic!("no field {what}"),
    }
}

fn services_rules() -> cosell_shared::domain::outbound::ServicesRules {
    cosell_shared::domain::outbound::ServicesRules {
        solution_areas: vec!["Security".into(), "AI Business Solutions".into()],
        solution_plays: vec!["Modern SecOps".into()],
        partner_roles: vec!["Solution design".into()],
        every_co_sell_deal: false,
    }
}

async fn a_services_deal_without_an_allowed_solution_area_is_refused_before_any_call(
    kind: CrmKind,
    backend: Backend,
) {
    let mut stack = TestStack::start(kind, backend).await;
    stack.options.services = services_rules();
    let crm_id = stack.seller_shares(co_sell()).await;
    stack
        .seller_edits(
            &crm_id,
            json!({services_field(kind, "area"): "Cloud Stuff",
                   services_field(kind, "play"): "Modern SecOps",
                   services_field(kind, "role"): "Solution design"}),
        )
        .await;
    let run = stack.settle().await;
    assert_eq!(run.failed, 0, "{run:?}");
    assert_eq!(stack.stats().await.get(CREATE), 0, "no referral is created");
    let opportunity = stack.opportunity(&crm_id).await.expect("the opportunity");
    assert!(opportunity.name.starts_with('✖'), "{}", opportunity.name);
    assert!(
        opportunity.audit.contains("'Cloud Stuff'")
            && opportunity
                .audit
                .contains("Security, AI Business Solutions"),
        "Audit names the value and the allowed ones: {}",
        opportunity.audit
    );

    // Fixed by the seller: shared.
    stack
        .seller_edits(&crm_id, json!({services_field(kind, "area"): "security"}))
        .await;
    let run = stack.settle().await;
    assert_eq!(run.failed, 0, "{run:?}");
    assert_eq!(
        stack.stats().await.get(CREATE),
        2,
        "the deal and Microsoft's"
    );
}

async fn the_services_and_marketplace_fields_reach_partner_center(kind: CrmKind, backend: Backend) {
    let mut stack = TestStack::start(kind, backend).await;
    stack.options.services = services_rules();
    let crm_id = stack.seller_shares(co_sell()).await;
    let intent = match kind {
        CrmKind::Dynamics => "Yes",
        CrmKind::Salesforce => "Yes",
    };
    stack
        .seller_edits(
            &crm_id,
            json!({services_field(kind, "area"): "Security",
                   services_field(kind, "play"): "Modern SecOps",
                   services_field(kind, "role"): "Solution design",
                   services_field(kind, "intent"): intent}),
        )
        .await;
    stack.settle().await;
    let referral = stack
        .referral_for_opportunity(&crm_id)
        .await
        .expect("the referral");
    assert_eq!(text(&referral, "/solutionArea"), Some("Security"));
    assert_eq!(text(&referral, "/solutionPlay"), Some("Modern SecOps"));
    assert_eq!(text(&referral, "/partnerRole"), Some("Solution design"));
    assert_eq!(
        text(
            &referral,
            "/details/requirements/additionalRequirements/attributes/0/id"
        ),
        Some("Yes")
    );

    // Incoming: the referral's Services fields are shown in the CRM.
    let incoming = stack
        .incoming_referral(
            Incoming::CoSell,
            json!({"solutionArea": "AI Business Solutions", "partnerRole": "Solution design"}),
        )
        .await;
    let id = text(&incoming, "/id").expect("an id").to_string();
    stack.settle().await;
    let opportunity = stack.opportunity_for(&id).await.expect("in the CRM");
    assert_eq!(
        opportunity.raw[services_field(kind, "area")],
        json!("AI Business Solutions")
    );
    assert_eq!(
        opportunity.raw[services_field(kind, "role")],
        json!("Solution design")
    );
}

async fn a_won_within_the_first_72_hours_is_held_and_sent_later(kind: CrmKind, backend: Backend) {
    let mut stack = TestStack::start(kind, backend).await;
    stack.options.won_hold = std::time::Duration::from_secs(72 * 3600);
    // Partner Center refusing such a Won, as it may.
    stack
        .control(
            Method::PUT,
            "/_sandbox/partner-center/settings",
            Some(json!({"wonMinAgeHours": 72})),
        )
        .await;
    let (id, crm_id) = shared(&stack, Share::default()).await;
    stack.seller_moves_to(&crm_id, Stage::Won).await;
    let run = stack.settle().await;
    assert_eq!(run.failed, 0, "{run:?}");
    let own = stack.referral(&id).await;
    assert_eq!(text(&own, "/status"), Some("Active"), "not sent early");
    // Dataverse keeps a closed opportunity read-only, so there only the journal can say so.
    let journal = stack.journal(&id).await;
    assert!(
        journal.iter().any(|e| e.message.contains("Won is held")),
        "{journal:?}"
    );
    if kind == CrmKind::Salesforce {
        let opportunity = stack.opportunity(&crm_id).await.expect("the opportunity");
        assert!(
            opportunity.audit_lines()[0].contains("Won is held"),
            "{}",
            opportunity.audit
        );
    }
    // Polls while it waits write nothing to either side.
    stack.advance_clock_hours(24).await;
    let before = (stack.partner_center_calls().await, stack.crm_calls().await);
    stack.settle().await;
    assert_eq!(
        stack.partner_center_calls().await.since(&before.0).writes(),
        0
    );
    let crm_writes = stack.crm_calls().await.since(&before.1);
    assert!(crm_writes.writes() == 0, "{crm_writes:?}");

    stack.advance_clock_hours(49).await;
    let run = stack.settle().await;
    assert_eq!(run.failed, 0, "{run:?}");
    let own = stack.referral(&id).await;
    assert_eq!(text(&own, "/status"), Some("Closed"));
    assert_eq!(text(&own, "/substatus"), Some("Won"));
    let journal = stack.journal(&id).await;
    assert!(
        journal[0].message.contains("Closed the referral as won"),
        "{journal:?}"
    );
}

async fn an_early_webhook_for_the_connectors_own_referral_reads_as_shared(
    kind: CrmKind,
    backend: Backend,
) {
    let stack = TestStack::start(kind, backend).await;
    stack
        .fault(
            json!({"method": "POST", "route": "/v1.0/engagements/referrals",
                      "dropAfterCommit": true, "count": 1}),
        )
        .await;
    let crm_id = stack.seller_shares(Share::default()).await;
    let run = stack.settle().await;
    assert_eq!(run.failed, 1, "{run:?}");
    let opportunity = stack.opportunity(&crm_id).await.expect("the opportunity");
    assert!(
        !opportunity.audit.contains("Updated from Partner Center"),
        "{}",
        opportunity.audit
    );
    assert!(
        opportunity.audit.contains("Shared with Partner Center"),
        "{}",
        opportunity.audit
    );
    let referral = stack
        .referral_for_opportunity(&crm_id)
        .await
        .expect("the referral");
    let id = text(&referral, "/id").expect("an id");
    let journal = stack.journal(id).await;
    assert!(
        journal
            .iter()
            .all(|e| !e.message.contains("Updated from Partner Center")),
        "{journal:?}"
    );
    assert!(
        journal
            .iter()
            .any(|e| e.message.contains("Shared with Partner Center")),
        "{journal:?}"
    );
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
    stack.settle().await;
    let opportunity = stack.opportunity_for(&id).await.expect("in the CRM");
    assert_eq!(opportunity.stage, Stage::OnHold);
    (id, opportunity.id)
}

fn deal_value(referral: &Value) -> Option<f64> {
    referral
        .pointer("/details/dealValue")
        .and_then(Value::as_f64)
}

async fn a_decline_sends_only_the_decline_not_the_hold_edits(kind: CrmKind, backend: Backend) {
    let stack = TestStack::start(kind, backend).await;
    let (id, crm_id) = incoming_on_hold(&stack).await;
    stack.seller_sets_deal_value(&crm_id, 7000.0).await;
    stack.settle().await;
    stack.seller_moves_to(&crm_id, Stage::Lost).await;
    let run = stack.settle().await;
    assert_eq!(run.failed, 0, "{run:?}");
    let own = stack.referral(&id).await;
    assert_eq!(text(&own, "/substatus"), Some("Declined"));
    assert_eq!(
        deal_value(&own),
        Some(5000.0),
        "Partner Center keeps its value"
    );
}

async fn accepting_keeps_microsofts_later_value_over_an_older_hold_edit(
    kind: CrmKind,
    backend: Backend,
) {
    let stack = TestStack::start(kind, backend).await;
    let (id, crm_id) = incoming_on_hold(&stack).await;
    stack.seller_sets_deal_value(&crm_id, 7000.0).await;
    stack.settle().await;
    // Microsoft's later change, whose webhook is late.
    stack
        .webhook_fault(json!({"kind": "drop", "count": 1}))
        .await;
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    stack
        .microsoft_changes(&id, json!({"details": {"dealValue": 9000}}))
        .await;
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    stack.seller_moves_to(&crm_id, Stage::Active).await;
    let run = stack.settle().await;
    assert_eq!(run.failed, 0, "{run:?}");

    let own = stack.referral(&id).await;
    assert_eq!(text(&own, "/status"), Some("Active"));
    assert_eq!(deal_value(&own), Some(9000.0));
    let opportunity = stack.opportunity(&crm_id).await.expect("the opportunity");
    assert_eq!(opportunity.deal_value, Some(9000.0));
    let conflicts: Vec<&str> = opportunity
        .audit_lines()
        .into_iter()
        .filter(|l| l.contains("changed on both sides"))
        .collect();
    assert_eq!(conflicts.len(), 1, "{}", opportunity.audit);
    assert!(
        conflicts[0].contains("7000")
            && conflicts[0].contains("9000")
            && conflicts[0].contains("later change, in Partner Center"),
        "{}",
        conflicts[0]
    );

    // Another edit afterwards keeps Microsoft's value on both sides.
    stack
        .seller_renames(&crm_id, "✔ Contoso analytics, phase 2")
        .await;
    stack.settle().await;
    assert_eq!(deal_value(&stack.referral(&id).await), Some(9000.0));
    let opportunity = stack.opportunity(&crm_id).await.expect("the opportunity");
    assert_eq!(opportunity.deal_value, Some(9000.0));
}

async fn a_conflict_on_hold_is_written_once(kind: CrmKind, backend: Backend) {
    let stack = TestStack::start(kind, backend).await;
    let (id, crm_id) = incoming_on_hold(&stack).await;
    stack
        .microsoft_changes(&id, json!({"details": {"dealValue": 9000}}))
        .await;
    // The seller's edit is later and wins, but is not sent while on hold.
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    stack.seller_sets_deal_value(&crm_id, 7000.0).await;
    for _ in 0..10 {
        let run = stack.settle().await;
        assert_eq!(run.failed, 0, "{run:?}");
    }
    let opportunity = stack.opportunity(&crm_id).await.expect("the opportunity");
    let conflicts = opportunity
        .audit_lines()
        .into_iter()
        .filter(|l| l.contains("changed on both sides"))
        .count();
    assert_eq!(conflicts, 1, "{}", opportunity.audit);
    assert_eq!(deal_value(&stack.referral(&id).await), Some(9000.0));
}

async fn removing_the_contact_on_either_side_removes_it_on_the_other(
    kind: CrmKind,
    backend: Backend,
) {
    let stack = TestStack::start(kind, backend).await;
    // A partner-led deal: Partner Center needs no contact for it.
    let (id, crm_id) = shared(&stack, Share::default()).await;
    let team = |r: &Value| {
        r.pointer("/customerProfile/team")
            .and_then(Value::as_array)
            .map_or(0, Vec::len)
    };
    assert_eq!(team(&stack.referral(&id).await), 1);
    stack.seller_removes_contact(&crm_id).await;
    // Salesforce keeps contact roles beside the opportunity: the removal travels with the
    // seller's next edit of it.
    stack.seller_sets_deal_value(&crm_id, 26_000.0).await;
    let run = stack.settle().await;
    assert_eq!(run.failed, 0, "{run:?}");
    assert_eq!(
        team(&stack.referral(&id).await),
        0,
        "Partner Center's team emptied"
    );
    let before = stack.stats().await;
    stack.settle().await;
    assert_eq!(stack.stats().await.since(&before).writes(), 0, "no echo");

    // And from Partner Center: an incoming referral whose team Microsoft empties.
    let incoming = stack.incoming_referral(Incoming::CoSell, json!({})).await;
    let id = text(&incoming, "/id").expect("an id").to_string();
    stack.settle().await;
    let opportunity = stack.opportunity_for(&id).await.expect("in the CRM");
    assert!(opportunity.contact_id.is_some(), "{opportunity:?}");
    stack
        .microsoft_changes(&id, json!({"customerProfile": {"team": []}}))
        .await;
    let run = stack.settle().await;
    assert_eq!(run.failed, 0, "{run:?}");
    let opportunity = stack
        .opportunity(&opportunity.id)
        .await
        .expect("in the CRM");
    assert_eq!(opportunity.contact_id, None, "{}", opportunity.raw);
    assert!(
        opportunity.audit_lines()[0].contains("customer contact"),
        "{}",
        opportunity.audit
    );
}
