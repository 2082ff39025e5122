//! Partner Center → CRM, end to end: Microsoft shares or changes a referral in the sandbox, the
//! signed webhook reaches the receiver, the ingress enqueues it on SQS, the processor syncs it
//! into Dynamics 365 or Salesforce, and the test looks at what a seller would see.
//!
//! Every scenario is one async function over a [`CrmKind`], run once per CRM by `both_crms!`.
//! Each runs on DynamoDB and SQS in moto (`moto_server` must be installed; see the architecture
//! document, "Testing") and on the embedded store and queue of `cosell local`, with its own
//! sandbox every time.

use cosell_e2e::stack::{Backend, CrmKind, Incoming, Stage, TestStack, changed_fields};
use cosell_shared::store::Outcome;
use serde_json::{Value, json};

cosell_e2e::every_stack!(
    a_co_sell_referral_becomes_one_opportunity_on_hold,
    an_existing_account_with_the_same_name_and_postal_code_is_used,
    leads_come_in_only_when_sync_co_sell_only_is_off,
    duplicate_and_reordered_webhooks_leave_one_record_with_the_latest_state,
    a_referral_naming_an_existing_opportunity_updates_it,
    a_referral_naming_a_deleted_opportunity_is_reported_not_recreated,
    an_update_writes_exactly_the_fields_that_changed,
    won_lost_declined_and_expired_close_the_opportunity,
    a_related_referral_update_touches_only_microsofts_fields,
    a_tampered_signature_is_refused_and_nothing_is_enqueued,
    a_throttled_crm_is_retried_and_the_opportunity_created_once,
    a_crm_asking_for_twenty_seconds_is_not_asked_again_sooner,
    a_processor_dying_after_the_crm_committed_leaves_one_complete_opportunity,
    an_expired_claim_of_a_crashed_worker_is_taken_over,
);

fn id_of(referral: &Value) -> String {
    referral["id"]
        .as_str()
        .unwrap_or_else(|| panic!("a referral without an id: {referral}"))
        .to_string()
}

/// A co-sell referral from Microsoft, synced into the CRM; answers its id.
async fn synced_co_sell(stack: &TestStack, partial: Value) -> String {
    let id = id_of(&stack.incoming_referral(Incoming::CoSell, partial).await);
    let run = stack.sync().await;
    assert_eq!(run.failed, 0, "{run:?}");
    assert!(
        stack.opportunity_for(&id).await.is_some(),
        "referral {id} is in the CRM"
    );
    id
}

async fn a_co_sell_referral_becomes_one_opportunity_on_hold(kind: CrmKind, backend: Backend) {
    let stack = TestStack::start(kind, backend).await;
    let referral = stack
        .incoming_referral(
            Incoming::CoSell,
            json!({
                "name": "Contoso data platform",
                "customerProfile": {
                    "name": "Contoso Ltd",
                    "address": {"city": "Oslo", "postalCode": "0150", "country": "NO"},
                    "team": [{"firstName": "Kari", "lastName": "Nordmann", "email": "kari@contoso.example"}]
                },
                "details": {"dealValue": 42000, "requirements": {"solutions": [{"id": "SOL-A"}, {"id": "SOL-B"}]}}
            }),
        )
        .await;
    let id = id_of(&referral);

    // Receive what the webhooks delivered so far (the referral, and Microsoft's referral
    // beside it) until the opportunity is there; the write-back's own webhook comes after.
    stack.wait_for_deliveries().await;
    for _ in 0..10 {
        let batch = stack.process_batch().await;
        assert_eq!(batch.failed, 0, "{batch:?}");
        if stack.opportunity_for(&id).await.is_some() {
            break;
        }
    }

    let all = stack.opportunities().await;
    assert_eq!(all.len(), 1, "exactly one opportunity: {all:#?}");
    let opportunity = stack.opportunity_for(&id).await.expect("the opportunity");
    assert_eq!(opportunity.stage, Stage::OnHold);
    match kind {
        CrmKind::Dynamics => {
            assert_eq!(opportunity.raw["statecode"], 0);
            assert_eq!(opportunity.raw["statuscode"], 2, "On Hold");
        }
        CrmKind::Salesforce => assert_eq!(opportunity.raw["StageName"], "On Hold"),
    }
    assert_eq!(opportunity.name, "✔ Contoso data platform");
    assert_eq!(opportunity.deal_value, Some(42000.0));

    let account_id = opportunity.account_id.clone().expect("an account");
    let account = stack.account(&account_id).await.expect("the account");
    assert_eq!(account.name, "Contoso Ltd");
    assert_eq!(account.country.as_deref(), Some("NO"));
    assert_eq!(account.postal_code.as_deref(), Some("0150"));

    let contact = opportunity.contact_id.clone().expect("a customer contact");
    assert_eq!(
        stack.contact_email(&contact).await.as_deref(),
        Some("kari@contoso.example")
    );
    let mut solutions = opportunity.solutions.clone();
    solutions.sort();
    assert_eq!(solutions, ["SOL-A", "SOL-B"], "one link per solution");

    assert!(opportunity.sync_with_partner_center);
    assert_eq!(opportunity.referral_id.as_deref(), Some(id.as_str()));
    assert!(
        opportunity
            .referral_link
            .as_deref()
            .is_some_and(|l| l.contains(&id)),
        "{opportunity:?}"
    );
    let microsoft = stack
        .related_referral(&id)
        .await
        .expect("Microsoft's referral");
    assert_eq!(
        opportunity.microsoft_status.as_deref(),
        Some("Active/Accepted"),
        "the related referral's status"
    );
    assert_eq!(
        opportunity.microsoft_crm_id.as_deref(),
        microsoft["trackingInfo"]["microsoftMsxId"].as_str()
    );
    let audit = opportunity.audit_lines();
    assert_eq!(audit.len(), 1, "{audit:?}");
    assert!(
        audit[0].contains('✔') && audit[0].contains("Created from Partner Center"),
        "{audit:?}"
    );
    assert_eq!(
        stack.referral(&id).await["externalReferenceId"].as_str(),
        Some(opportunity.id.as_str()),
        "the CRM id is written back"
    );

    // The write-back raises referral-updated: the connector sees its own change and writes
    // nothing more to the CRM.
    let crm_before = stack.crm_calls().await;
    let pc_before = stack.partner_center_calls().await;
    let echo = stack.sync().await;
    assert!(
        echo.succeeded >= 1,
        "the write-back's webhook came: {echo:?}"
    );
    assert_eq!(echo.failed, 0, "{echo:?}");
    let crm_after = stack.crm_calls().await;
    assert_eq!(
        crm_after.writes(),
        crm_before.writes(),
        "no CRM write for our own change: {:?}",
        crm_after.since(&crm_before)
    );
    assert_eq!(
        stack.partner_center_calls().await.writes(),
        pc_before.writes()
    );
    assert_eq!(stack.opportunity_for(&id).await, Some(opportunity));
}

async fn an_existing_account_with_the_same_name_and_postal_code_is_used(
    kind: CrmKind,
    backend: Backend,
) {
    let stack = TestStack::start(kind, backend).await;
    let existing = stack
        .seller_creates_account("CONTOSO   ltd", "sw1a1aa", "GB")
        .await;
    let id = synced_co_sell(
        &stack,
        json!({"customerProfile": {
            "name": "Contoso Ltd",
            "address": {"postalCode": "SW1A 1AA", "country": "GB", "city": "London"}
        }}),
    )
    .await;

    let opportunity = stack.opportunity_for(&id).await.expect("the opportunity");
    assert_eq!(opportunity.account_id.as_deref(), Some(existing.as_str()));

    // The other way round: the seller typed the space, Partner Center has none.
    let spaced = stack
        .seller_creates_account("Fabrikam Inc", "EC1A 1BB", "GB")
        .await;
    let other = synced_co_sell(
        &stack,
        json!({"customerProfile": {
            "name": "fabrikam inc",
            "address": {"postalCode": "ec1a1bb", "country": "GB", "city": "London"}
        }}),
    )
    .await;
    let opportunity = stack
        .opportunity_for(&other)
        .await
        .expect("the opportunity");
    assert_eq!(opportunity.account_id.as_deref(), Some(spaced.as_str()));

    let accounts = stack.accounts().await;
    assert_eq!(accounts.len(), 2, "no new account: {accounts:#?}");
}

async fn leads_come_in_only_when_sync_co_sell_only_is_off(kind: CrmKind, backend: Backend) {
    let mut stack = TestStack::start(kind, backend).await;
    assert!(stack.options.co_sell_only, "on by default");
    let skipped = id_of(&stack.incoming_referral(Incoming::Lead, json!({})).await);
    let pc_before = stack.partner_center_calls().await;
    let run = stack.sync().await;
    assert!(run.succeeded >= 1 && run.failed == 0, "{run:?}");
    assert!(stack.leads().await.is_empty());
    assert!(stack.opportunities().await.is_empty());
    assert_eq!(
        stack.partner_center_calls().await.writes(),
        pc_before.writes()
    );
    assert_eq!(
        stack.referral(&skipped).await["externalReferenceId"],
        Value::Null
    );
    let journal = stack.journal(&skipped).await;
    assert!(
        journal
            .iter()
            .any(|e| e.outcome == Outcome::Skipped && e.message.contains("co-sell only")),
        "the skip is on record: {journal:?}"
    );
    // Microsoft changing the skipped lead is skipped again, harmlessly.
    stack
        .microsoft_changes(&skipped, json!({"details": {"dealValue": 5}}))
        .await;
    let again = stack.sync().await;
    assert!(again.succeeded >= 1 && again.failed == 0, "{again:?}");
    assert_eq!(stack.queue_depth().await, 0);
    assert!(stack.leads().await.is_empty());

    stack.options.co_sell_only = false;
    let referral = stack
        .incoming_referral(
            Incoming::Lead,
            json!({"name": "Woodgrove lead", "customerProfile": {"name": "Woodgrove Bank"}}),
        )
        .await;
    let id = id_of(&referral);
    let run = stack.sync().await;
    assert_eq!(run.failed, 0, "{run:?}");
    let lead = stack.lead_for(&id).await.expect("a CRM lead");
    assert_eq!(lead.company.as_deref(), Some("Woodgrove Bank"));
    assert_eq!(lead.last_name.as_deref(), Some("Smith"));
    assert!(
        stack.opportunities().await.is_empty(),
        "a lead, not an opportunity"
    );
    assert_eq!(stack.leads().await.len(), 1, "the skipped lead stayed out");
    assert_eq!(
        stack.referral(&id).await["externalReferenceId"].as_str(),
        Some(lead.id.as_str())
    );
}

async fn duplicate_and_reordered_webhooks_leave_one_record_with_the_latest_state(
    kind: CrmKind,
    backend: Backend,
) {
    let stack = TestStack::start(kind, backend).await;
    let id = synced_co_sell(&stack, json!({"name": "Tailspin"})).await;
    let delivered_before = stack.deliveries().await.len();

    // The first change is held back until the second has gone; the second arrives twice.
    stack
        .webhook_fault(json!({"kind": "reorder", "count": 1}))
        .await;
    stack
        .webhook_fault(json!({"kind": "duplicate", "count": 1}))
        .await;
    stack
        .microsoft_changes(&id, json!({"details": {"dealValue": 40000}}))
        .await;
    stack
        .microsoft_changes(
            &id,
            json!({"name": "Tailspin v2", "details": {"dealValue": 50000}}),
        )
        .await;
    let run = stack.sync().await;
    assert_eq!(run.failed, 0, "{run:?}");

    let deliveries = stack.deliveries().await[delivered_before..].to_vec();
    let [older, newer, again] = &deliveries[..] else {
        panic!("one change delivered once, the other twice: {deliveries:#?}");
    };
    assert_eq!(newer["body"], again["body"], "the same event twice");
    for d in &deliveries {
        assert_eq!(d["outcome"], "delivered", "{d}");
    }
    let time = |s: &Value| {
        chrono::DateTime::parse_from_rfc3339(s.as_str().unwrap_or_default())
            .unwrap_or_else(|e| panic!("a time in {s}: {e}"))
    };
    let event = |d: &Value| -> Value {
        serde_json::from_str(d["body"].as_str().unwrap_or_default()).expect("an event")
    };
    assert!(
        time(&older["attempts"][0]["at"]) > time(&event(newer)["ResourceChangeUtcDate"]),
        "the older change arrived after the newer one was raised: {deliveries:#?}"
    );

    let opportunity = stack.opportunity_for(&id).await.expect("one opportunity");
    assert_eq!(opportunity.name, "✔ Tailspin v2");
    assert_eq!(opportunity.deal_value, Some(50000.0));
    let updates = |o: &cosell_e2e::stack::CrmOpportunity| {
        o.audit_lines()
            .iter()
            .filter(|l| l.contains("Updated from Partner Center"))
            .count()
    };
    assert_eq!(updates(&opportunity), 1, "{:?}", opportunity.audit_lines());

    // The older event, delivered once more long after: nothing changes.
    let crm_before = stack.crm_calls().await;
    let older_body = older["body"].as_str().unwrap_or_default().as_bytes();
    let oldest = stack
        .captured()
        .into_iter()
        .find(|d| d.body == older_body)
        .expect("the older event reached the receiver");
    assert_eq!(
        stack
            .post_to_receiver(&oldest.headers, oldest.body.clone())
            .await,
        200
    );
    let replay = stack.sync().await;
    // The embedded queue drops the replay within its deduplication window, as SQS does; moto
    // forgets a deduplication id once its message is deleted (docs/architecture.md, "Testing"), so there the
    // replay is enqueued and handled. Either way nothing is written.
    let expected = match backend {
        Backend::Embedded => (0, 0),
        Backend::Aws => (1, 0),
    };
    assert_eq!((replay.succeeded, replay.failed), expected, "{replay:?}");
    assert_eq!(stack.crm_calls().await.writes(), crm_before.writes());
    assert_eq!(stack.opportunities().await.len(), 1);
    assert_eq!(stack.opportunity_for(&id).await, Some(opportunity));
}

async fn a_referral_naming_an_existing_opportunity_updates_it(kind: CrmKind, backend: Backend) {
    let stack = TestStack::start(kind, backend).await;
    let seller_record = stack.seller_creates_opportunity("Northwind renewal").await;
    let id = id_of(
        &stack
            .incoming_referral(
                Incoming::CoSell,
                json!({"name": "Northwind renewal 2027", "externalReferenceId": seller_record, "details": {"dealValue": 77000}}),
            )
            .await,
    );
    let run = stack.sync().await;
    assert_eq!(run.failed, 0, "{run:?}");

    let all = stack.opportunities().await;
    assert_eq!(all.len(), 1, "never a second one: {all:#?}");
    let record = stack
        .opportunity(&seller_record)
        .await
        .expect("the seller's record");
    assert_eq!(record.name, "✔ Northwind renewal 2027");
    assert_eq!(record.deal_value, Some(77000.0));
    assert_eq!(record.referral_id.as_deref(), Some(id.as_str()));
    assert!(record.sync_with_partner_center);
    let link = stack
        .store
        .link_by_referral(&id)
        .await
        .expect("store")
        .expect("a link");
    assert_eq!(link.crm_id, seller_record);
}

async fn a_referral_naming_a_deleted_opportunity_is_reported_not_recreated(
    kind: CrmKind,
    backend: Backend,
) {
    let stack = TestStack::start(kind, backend).await;
    let gone = stack.seller_creates_opportunity("Old deal").await;
    stack.seller_deletes_opportunity(&gone).await;
    let id = id_of(
        &stack
            .incoming_referral(Incoming::CoSell, json!({"externalReferenceId": gone}))
            .await,
    );
    let run = stack.sync().await;
    assert_eq!(run.failed, 0, "reported, not retried: {run:?}");

    assert!(stack.opportunities().await.is_empty(), "no record created");
    let journal = stack.journal(&id).await;
    let failure = journal
        .iter()
        .find(|e| e.outcome == Outcome::Failed)
        .unwrap_or_else(|| panic!("a failure in the journal: {journal:?}"));
    assert!(failure.message.contains(&gone), "{failure:?}");
    assert_eq!(
        stack.referral(&id).await["externalReferenceId"].as_str(),
        Some(gone.as_str()),
        "left as Microsoft sent it"
    );
}

async fn an_update_writes_exactly_the_fields_that_changed(kind: CrmKind, backend: Backend) {
    let stack = TestStack::start(kind, backend).await;
    let id = synced_co_sell(&stack, json!({"name": "Adatum"})).await;
    let before = stack.opportunity_for(&id).await.expect("the opportunity");

    stack
        .microsoft_changes(
            &id,
            json!({"name": "Adatum expansion", "details": {"dealValue": 61000}}),
        )
        .await;
    let run = stack.sync().await;
    assert_eq!(run.failed, 0, "{run:?}");
    let after = stack.opportunity_for(&id).await.expect("the opportunity");

    let side = stack.crm_side;
    let mut expected = vec![
        side.name_field().to_string(),
        side.deal_value_field().to_string(),
        side.audit_field().to_string(),
    ];
    expected.sort();
    assert_eq!(changed_fields(side, &before.raw, &after.raw), expected);
    assert_eq!(after.name, "✔ Adatum expansion");
    assert_eq!(after.deal_value, Some(61000.0));
    let lines = after.audit_lines();
    assert_eq!(lines.len(), 2, "{lines:?}");
    assert!(
        lines[0].contains("name") && lines[0].contains("deal value"),
        "{lines:?}"
    );
    assert!(!lines[0].contains("status"), "{lines:?}");
    assert_eq!(lines[1..], before.audit_lines()[..], "older lines kept");
}

async fn won_lost_declined_and_expired_close_the_opportunity(kind: CrmKind, backend: Backend) {
    // The clock moves 15 days ahead below: every token expires and the adapters sign in again.
    let stack = TestStack::start(kind, backend).await;
    let mut ids = Vec::new();
    for name in ["Won deal", "Lost deal", "Declined deal", "Expired deal"] {
        let r = stack
            .incoming_referral(Incoming::CoSell, json!({"name": name}))
            .await;
        ids.push(id_of(&r));
    }
    let run = stack.sync().await;
    assert_eq!(run.failed, 0, "{run:?}");
    let [won, lost, declined, expired] = [&ids[0], &ids[1], &ids[2], &ids[3]];
    stack
        .microsoft_changes(won, json!({"status": "Closed", "substatus": "Won"}))
        .await;
    stack
        .microsoft_changes(lost, json!({"status": "Closed", "substatus": "Lost"}))
        .await;
    stack
        .microsoft_changes(
            declined,
            json!({"status": "Closed", "substatus": "Declined", "statusReason": "Not a fit"}),
        )
        .await;
    let run = stack.sync().await;
    assert_eq!(run.failed, 0, "{run:?}");

    // Fifteen days later the unanswered referral has expired, and every token the connector
    // holds has too: the adapters sign in again by themselves.
    let sign_ins = stack.sign_ins().await;
    stack.advance_clock_days(15).await;
    let run = stack.sync().await;
    assert_eq!(run.failed, 0, "{run:?}");
    let renewed = stack.sign_ins().await.since(&sign_ins);
    assert_eq!(
        renewed.0.len(),
        2,
        "Partner Center and the CRM signed in again: {renewed:?}"
    );
    assert_eq!(stack.referral(expired).await["substatus"], "Expired");

    for (id, stage) in [
        (won, Stage::Won),
        (lost, Stage::Lost),
        (declined, Stage::Lost),
        (expired, Stage::Lost),
    ] {
        let o = stack.opportunity_for(id).await.expect("the opportunity");
        assert_eq!(o.stage, stage, "{}", o.name);
        match (kind, stage) {
            (CrmKind::Dynamics, Stage::Won) => assert_eq!(o.raw["statecode"], 1),
            (CrmKind::Dynamics, _) => assert_eq!(o.raw["statecode"], 2),
            (CrmKind::Salesforce, Stage::Won) => assert_eq!(o.raw["StageName"], "Closed Won"),
            (CrmKind::Salesforce, _) => assert_eq!(o.raw["StageName"], "Closed Lost"),
        }
        assert!(o.name.starts_with('✔'), "{}", o.name);
    }
    assert_eq!(stack.opportunities().await.len(), 4);
}

async fn a_related_referral_update_touches_only_microsofts_fields(kind: CrmKind, backend: Backend) {
    let stack = TestStack::start(kind, backend).await;
    let id = synced_co_sell(&stack, json!({"name": "Fourth Coffee"})).await;
    let before = stack.opportunity_for(&id).await.expect("the opportunity");
    let pc_before = stack.partner_center_calls().await;

    stack
        .microsoft_changes_related(
            &id,
            json!({"status": "Closed", "substatus": "Won", "trackingInfo": {"microsoftMsxId": "7-NEWMSX0001"}}),
        )
        .await;
    let run = stack.sync().await;
    assert_eq!(run.failed, 0, "{run:?}");
    let after = stack.opportunity_for(&id).await.expect("the opportunity");

    let side = stack.crm_side;
    let mut expected = vec![
        side.microsoft_status_field().to_string(),
        side.microsoft_crm_id_field().to_string(),
        side.audit_field().to_string(),
    ];
    expected.sort();
    assert_eq!(changed_fields(side, &before.raw, &after.raw), expected);
    assert_eq!(after.microsoft_status.as_deref(), Some("Closed/Won"));
    assert_eq!(after.microsoft_crm_id.as_deref(), Some("7-NEWMSX0001"));
    assert_eq!(
        after.stage,
        Stage::OnHold,
        "our own referral did not change"
    );

    let pc = stack.partner_center_calls().await.since(&pc_before);
    for write in [
        "PATCH /v1.0/engagements/referrals/{id}",
        "PUT /v1.0/engagements/referrals/{id}",
    ] {
        assert_eq!(pc.get(write), 0, "no Partner Center write: {pc:?}");
    }
}

async fn a_tampered_signature_is_refused_and_nothing_is_enqueued(kind: CrmKind, backend: Backend) {
    let stack = TestStack::start(kind, backend).await;
    synced_co_sell(&stack, json!({})).await;
    assert_eq!(stack.queue_depth().await, 0);
    let genuine = stack
        .captured()
        .into_iter()
        .find(|d| d.status == 200)
        .expect("a delivery that was accepted");

    let mut tampered = genuine.body.clone();
    let at = tampered
        .iter()
        .position(|b| *b == b'r')
        .expect("a byte to change");
    tampered[at] = b'R';
    assert_eq!(
        stack.post_to_receiver(&genuine.headers, tampered).await,
        401
    );
    assert_eq!(stack.queue_depth().await, 0, "nothing enqueued");
    assert_eq!(stack.process_queue().await.succeeded, 0);

    // The untouched delivery still gets in: the byte was the difference. It repeats an event
    // already processed, so a queue that remembers deduplication ids (SQS, the embedded queue)
    // drops it; moto forgets them once the message is deleted and enqueues it again.
    assert_eq!(
        stack
            .post_to_receiver(&genuine.headers, genuine.body.clone())
            .await,
        200
    );
    let expected = match backend {
        Backend::Embedded => 0,
        Backend::Aws => 1,
    };
    assert_eq!(stack.queue_depth().await, expected);
}

async fn a_throttled_crm_is_retried_and_the_opportunity_created_once(
    kind: CrmKind,
    backend: Backend,
) {
    let stack = TestStack::start(kind, backend).await;
    let (method, route) = stack.crm_side.create_opportunity_route();
    stack
        .fault(
            json!({"method": method, "route": route, "status": 429, "retryAfter": 1, "count": 1}),
        )
        .await;
    let id = id_of(
        &stack
            .incoming_referral(Incoming::CoSell, json!({"name": "Throttled"}))
            .await,
    );
    let run = stack.sync().await;
    assert_eq!(run.failed, 0, "retried within the attempt: {run:?}");

    let calls = stack.crm_calls().await;
    assert_eq!(
        calls.get(&format!("{method} {route}")),
        2,
        "throttled once, then sent again: {calls:?}"
    );
    assert_eq!(
        stack.faults_left().await["routes"][0]["count"],
        0,
        "the 429 was served"
    );
    let all = stack.opportunities().await;
    assert_eq!(all.len(), 1, "{all:#?}");
    assert_eq!(all[0].referral_id.as_deref(), Some(id.as_str()));
}

/// A `Retry-After` longer than the adapter waits in-process ends the attempt; the message must
/// then stay away at least that long, not come back after the receive-count backoff.
async fn a_crm_asking_for_twenty_seconds_is_not_asked_again_sooner(
    kind: CrmKind,
    backend: Backend,
) {
    let stack = TestStack::start(kind, backend).await;
    let (method, route) = stack.crm_side.create_opportunity_route();
    stack
        .fault(
            json!({"method": method, "route": route, "status": 429, "retryAfter": 20, "count": 1}),
        )
        .await;
    stack
        .incoming_referral(Incoming::CoSell, json!({"name": "Throttled for a while"}))
        .await;
    let run = stack.sync().await;
    assert_eq!(run.failed, 1, "the throttled attempt failed: {run:?}");
    assert_eq!(
        stack.crm_calls().await.get(&format!("{method} {route}")),
        1,
        "not sent again within the 20 s the CRM asked for"
    );
    assert_eq!(
        stack.queue_depth().await,
        1,
        "the message waits in the queue"
    );
    assert_eq!(stack.dead_letter_depth().await, 0);
    assert!(stack.opportunities().await.is_empty());
}

async fn a_processor_dying_after_the_crm_committed_leaves_one_complete_opportunity(
    kind: CrmKind,
    backend: Backend,
) {
    let stack = TestStack::start(kind, backend).await;
    stack.crm_dies_after_committing_opportunity_create().await;
    let id = id_of(
        &stack
            .incoming_referral(
                Incoming::CoSell,
                json!({"name": "Interrupted", "details": {"requirements": {"solutions": [{"id": "SOL-X"}]}}}),
            )
            .await,
    );
    let run = stack.sync().await;
    assert_eq!(run.failed, 1, "the first attempt failed: {run:?}");
    assert_eq!(
        run.dead_lettered, 0,
        "the second attempt completed: {run:?}"
    );

    let all = stack.opportunities().await;
    assert_eq!(all.len(), 1, "exactly one opportunity: {all:#?}");
    let opportunity = &all[0];
    assert_eq!(opportunity.referral_id.as_deref(), Some(id.as_str()));
    assert_eq!(opportunity.solutions, ["SOL-X"]);
    assert!(opportunity.contact_id.is_some(), "{opportunity:?}");
    let link = stack
        .store
        .link_by_referral(&id)
        .await
        .expect("store")
        .expect("a link");
    assert_eq!(link.crm_id, opportunity.id);
    assert_eq!(
        stack.referral(&id).await["externalReferenceId"].as_str(),
        Some(opportunity.id.as_str())
    );
}

async fn an_expired_claim_of_a_crashed_worker_is_taken_over(kind: CrmKind, backend: Backend) {
    let stack = TestStack::start(kind, backend).await;
    let id = id_of(&stack.incoming_referral(Incoming::CoSell, json!({})).await);
    stack.wait_for_deliveries().await;
    let key = stack.crashed_worker_claims(&id).await;

    let run = stack.sync().await;
    assert_eq!(run.failed, 0, "{run:?}");
    assert_eq!(stack.opportunities_for(&id).await.len(), 1);
    assert!(
        stack.sync_key_completed(&key).await,
        "the processor took the claim over and completed it"
    );
}
