//! The operator's commands against a running connector's state: `cosell status`, `redrive`,
//! `dry-run` and `backfill`, for both CRMs, on the embedded store and queue and on DynamoDB and
//! SQS (moto). The connector's processing is the test stack's (the real processor over the same
//! store and queue); the commands are the real binary, reading and writing that state.

#![cfg(unix)]
// A test crate: its helpers may panic on what the test set up.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{Cosell, crm_arg};
use cosell_e2e::stack::{Backend, CrmKind, Incoming, Stage, TestStack};
use serde_json::{Value, json};

/// `cosell <command> …` against the stack: its sandbox, and its store and queue.
async fn cosell(stack: &TestStack, command: &[&str]) -> (bool, String, String) {
    let (target, env) = stack.cli_target();
    let mut args: Vec<&str> = command.to_vec();
    args.extend([
        "--crm",
        crm_arg(stack.kind),
        "--sandbox-url",
        stack.sandbox.base_url(),
    ]);
    args.extend(target.iter().map(String::as_str));
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let mut run = Cosell::start(&args, &env);
    let status = run.exit().await;
    let stdout = run.lines().join("\n");
    (status.success(), stdout, run.output())
}

async fn json_of(stack: &TestStack, command: &[&str]) -> Value {
    let (_, stdout, output) = cosell(stack, command).await;
    serde_json::from_str(&stdout)
        .unwrap_or_else(|e| panic!("{command:?} printed no JSON ({e}):\n{output}"))
}

/// Every request of the stats that wrote to the CRM or to Partner Center (sign-ins aside).
fn api_writes(stats: &Value) -> Vec<String> {
    stats
        .as_object()
        .unwrap()
        .iter()
        .filter(|(key, n)| {
            let (method, route) = key.split_once(' ').unwrap_or_default();
            method != "GET"
                && (route.starts_with("/api/data/")
                    || route.starts_with("/services/data/")
                    || route.starts_with("/v1.0/engagements"))
                && n.as_u64().unwrap_or(0) > 0
        })
        .map(|(key, n)| format!("{key}: {n}"))
        .collect()
}

/// A fault that makes every CRM call fail as an outage does (503), until cleared.
fn crm_outage(kind: CrmKind) -> Value {
    let route = match kind {
        CrmKind::Dynamics => "/api/data/*",
        CrmKind::Salesforce => "/services/data/*",
    };
    json!({"route": route, "status": 503})
}

async fn status_dead_letters_and_redrive(kind: CrmKind, backend: Backend) {
    let stack = TestStack::start(kind, backend).await;
    let first = stack.incoming_referral(Incoming::CoSell, json!({})).await;
    let first = first["id"].as_str().unwrap().to_string();
    stack.sync().await;
    let opportunity = stack.opportunity_for(&first).await.expect("synced").id;

    // The link and its journal, found by either id.
    for id in [&first, &opportunity] {
        let detail = json_of(&stack, &["status", id, "--json"]).await;
        assert_eq!(detail["link"]["crmId"], opportunity.as_str(), "{detail:#}");
        assert_eq!(detail["link"]["referralId"], first.as_str(), "{detail:#}");
        let journal = detail["journal"].as_array().unwrap();
        assert!(!journal.is_empty(), "{detail:#}");
        assert_eq!(journal[0]["outcome"], "synced", "{detail:#}");
        assert_eq!(detail["deadLettered"], json!([]), "{detail:#}");
    }
    let (ok, table, output) = cosell(&stack, &["status", &first]).await;
    assert!(ok, "{output}");
    assert!(
        table.contains(&opportunity) && table.contains("Journal"),
        "{table}"
    );

    // A referral that cannot sync while the CRM is down ends in the dead-letter queue.
    stack.fault(crm_outage(kind)).await;
    let second = stack.incoming_referral(Incoming::CoSell, json!({})).await;
    let second = second["id"].as_str().unwrap().to_string();
    stack.wait_for_deliveries().await;
    for _ in 0..50 {
        if stack.dead_letter_depth().await > 0 {
            break;
        }
        stack.process_batch().await;
    }
    assert_eq!(stack.dead_letter_depth().await, 1);
    let summary = json_of(&stack, &["status", "--json"]).await;
    assert_eq!(summary["links"], 1, "{summary:#}");
    assert_eq!(summary["deadLettered"], 1, "{summary:#}");
    assert!(
        summary["deadLetters"][0]["command"]
            .as_str()
            .unwrap()
            .contains(&second),
        "{summary:#}"
    );
    let detail = json_of(&stack, &["status", &second, "--json"]).await;
    assert_eq!(detail["link"], Value::Null, "{detail:#}");
    assert_eq!(
        detail["deadLettered"].as_array().unwrap().len(),
        1,
        "{detail:#}"
    );

    // Back on the queue once the CRM is back, it syncs; a second redrive moves nothing.
    stack
        .control(reqwest::Method::DELETE, "/_sandbox/faults", None)
        .await;
    let (ok, moved, output) = cosell(&stack, &["redrive", &second]).await;
    assert!(ok, "{output}");
    assert!(moved.contains("Moved 1 command(s)"), "{output}");
    assert_eq!(stack.dead_letter_depth().await, 0);
    stack.sync().await;
    assert_eq!(stack.opportunities_for(&second).await.len(), 1);
    let (ok, again, output) = cosell(&stack, &["redrive", "--all"]).await;
    assert!(ok && again.contains("Moved 0 command(s)"), "{output}");
    let summary = json_of(&stack, &["status", "--json"]).await;
    assert_eq!(
        (summary["links"].clone(), summary["deadLettered"].clone()),
        (json!(2), json!(0)),
        "{summary:#}"
    );
}

async fn a_dry_run_plans_both_ways_and_writes_nothing(kind: CrmKind, backend: Backend) {
    let stack = TestStack::start(kind, backend).await;
    let referral = stack.incoming_referral(Incoming::CoSell, json!({})).await;
    let referral = referral["id"].as_str().unwrap().to_string();
    let other = stack.incoming_referral(Incoming::CoSell, json!({})).await;
    let other = other["id"].as_str().unwrap().to_string();
    stack.sync().await;
    let edited = stack.opportunity_for(&other).await.expect("synced").id;
    let accepted = stack.opportunity_for(&referral).await.expect("synced").id;
    // The seller accepts both deals, which then sync both ways; then a seller and Microsoft
    // edit, a second later (the CRMs stamp changes to the second).
    stack.seller_moves_to(&edited, Stage::Active).await;
    stack.seller_moves_to(&accepted, Stage::Active).await;
    stack.settle().await;
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    stack.seller_sets_deal_value(&edited, 4321.0).await;
    stack
        .microsoft_changes(&referral, json!({"details": {"dealValue": 9000}}))
        .await;
    stack.wait_for_deliveries().await;

    let before = (
        json_of(&stack, &["status", "--json"]).await,
        json_of(&stack, &["status", &referral, "--json"]).await,
        json_of(&stack, &["status", &other, "--json"]).await,
    );
    stack
        .control(reqwest::Method::DELETE, "/_sandbox/stats", None)
        .await;
    let plan = json_of(&stack, &["dry-run", "--json"]).await;
    let decisions = plan["decisions"].as_array().unwrap();
    let about = |subject: &str| {
        decisions
            .iter()
            .find(|d| d["subject"].as_str().unwrap().ends_with(subject))
            .unwrap_or_else(|| panic!("no decision about {subject}: {plan:#}"))
    };
    let to_pc = about(&edited);
    assert!(
        to_pc["writes"]
            .as_array()
            .unwrap()
            .iter()
            .any(|w| w["side"] == "Partner Center" && w["action"] == "update referral"),
        "{plan:#}"
    );
    let to_crm = about(&referral);
    assert!(
        to_crm["writes"]
            .as_array()
            .unwrap()
            .iter()
            .any(|w| w["side"] == "CRM" && w["action"] == "update opportunity"),
        "{plan:#}"
    );
    let (ok, table, output) = cosell(&stack, &["dry-run", "--limit", "5"]).await;
    assert!(ok, "{output}");
    assert!(table.contains("nothing was written"), "{table}");

    let stats = stack
        .control(reqwest::Method::GET, "/_sandbox/stats", None)
        .await;
    assert_eq!(
        api_writes(&stats),
        Vec::<String>::new(),
        "the dry run wrote"
    );
    let after = (
        json_of(&stack, &["status", "--json"]).await,
        json_of(&stack, &["status", &referral, "--json"]).await,
        json_of(&stack, &["status", &other, "--json"]).await,
    );
    assert_eq!(before, after, "the store changed");
    // What it planned is what the sync then does.
    stack.poll().await;
    stack.sync().await;
    assert_eq!(stack.referral(&other).await["details"]["dealValue"], 4321.0);
    let opportunity = stack.opportunity(&accepted).await.expect("the opportunity");
    assert_eq!(opportunity.deal_value, Some(9000.0));
}

const BACKFILL: usize = 300;

async fn backfill_brings_in_what_exists_once(kind: CrmKind, backend: Backend) {
    let stack = TestStack::start(kind, backend).await;
    // Before go-live: referrals in Partner Center (no webhook reaches a connector not yet
    // running) and deals a seller marked for sync.
    stack.webhook_fault(json!({"kind": "drop"})).await;
    let mut ids = Vec::new();
    for i in 0..BACKFILL {
        let r = stack
            .incoming_referral(Incoming::CoSell, json!({"name": format!("Backfill {i}")}))
            .await;
        ids.push(r["id"].as_str().unwrap().to_string());
    }
    let marked = stack.seller_marks_many_for_sync(3).await;
    assert_eq!(stack.queue_depth().await, 0);

    let (ok, table, output) = cosell(&stack, &["backfill"]).await;
    assert!(ok, "{output}");
    assert!(table.contains("Partner Center referrals"), "{table}");
    assert!(
        table.contains(&format!("{} command(s) enqueued", BACKFILL + marked.len())),
        "{output}"
    );
    stack.process_queue().await;
    for id in &ids {
        assert_eq!(stack.opportunities_for(id).await.len(), 1, "referral {id}");
    }
    for crm_id in &marked {
        assert!(
            stack.referral_for_opportunity(crm_id).await.is_some(),
            "{crm_id} shared"
        );
    }
    assert_eq!(stack.opportunities().await.len(), BACKFILL + marked.len());

    let (ok, table, output) = cosell(&stack, &["backfill"]).await;
    assert!(ok, "{output}");
    assert!(table.contains("0 command(s) enqueued"), "{output}");
    assert_eq!(stack.queue_depth().await, 0);
}

macro_rules! each {
    ($($(#[$meta:meta])* $name:ident: $scenario:ident, $kind:expr, $backend:expr;)*) => {$(
        $(#[$meta])*
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $name() {
            $scenario($kind, $backend).await;
        }
    )*};
}

each! {
    dynamics_embedded_status_and_redrive: status_dead_letters_and_redrive, CrmKind::Dynamics, Backend::Embedded;
    salesforce_embedded_status_and_redrive: status_dead_letters_and_redrive, CrmKind::Salesforce, Backend::Embedded;
    dynamics_aws_status_and_redrive: status_dead_letters_and_redrive, CrmKind::Dynamics, Backend::Aws;
    salesforce_aws_status_and_redrive: status_dead_letters_and_redrive, CrmKind::Salesforce, Backend::Aws;
    dynamics_embedded_dry_run: a_dry_run_plans_both_ways_and_writes_nothing, CrmKind::Dynamics, Backend::Embedded;
    salesforce_embedded_dry_run: a_dry_run_plans_both_ways_and_writes_nothing, CrmKind::Salesforce, Backend::Embedded;
    dynamics_aws_dry_run: a_dry_run_plans_both_ways_and_writes_nothing, CrmKind::Dynamics, Backend::Aws;
    salesforce_aws_dry_run: a_dry_run_plans_both_ways_and_writes_nothing, CrmKind::Salesforce, Backend::Aws;
    #[ignore = "unfinished: the 300-referral backfill does not pass yet (see the issue note)"]
    dynamics_embedded_backfill: backfill_brings_in_what_exists_once, CrmKind::Dynamics, Backend::Embedded;
    #[ignore = "unfinished: the 300-referral backfill does not pass yet (see the issue note)"]
    salesforce_embedded_backfill: backfill_brings_in_what_exists_once, CrmKind::Salesforce, Backend::Embedded;
    #[ignore = "unfinished: the 300-referral backfill does not pass yet (see the issue note)"]
    dynamics_aws_backfill: backfill_brings_in_what_exists_once, CrmKind::Dynamics, Backend::Aws;
    #[ignore = "unfinished: the 300-referral backfill does not pass yet (see the issue note)"]
    salesforce_aws_backfill: backfill_brings_in_what_exists_once, CrmKind::Salesforce, Backend::Aws;
}
