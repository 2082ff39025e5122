//! Going live on a CRM that has none of the connector's fields, as an admin does it with the real
//! binary: `cosell doctor` names what is missing, `cosell crm setup --dry-run` plans and writes
//! nothing, `cosell crm setup` creates it all through the CRM's metadata API and a second run
//! finds it in place, `cosell doctor` then passes with `cosell local` running, and a referral
//! Microsoft shares syncs end to end.

#![cfg(unix)]
// A test crate: its helpers may panic on what the test set up.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{Cosell, control, crm_arg, incoming_co_sell, opportunities_for, wait_for_write_back};
use cosell_e2e::stack::CrmKind;
use cosell_sandbox::{Sandbox, SandboxConfig};
use serde_json::Value;

/// Items a bare org lacks, by the name doctor and setup give them.
fn some_missing(kind: CrmKind) -> &'static [(&'static str, &'static str)] {
    match kind {
        CrmKind::Dynamics => &[
            ("column", "opportunity.cosell_syncwithpartnercenter"),
            ("column", "opportunity.cosell_referralid"),
            ("column", "opportunity.cosell_audit"),
            ("column", "lead.cosell_referralid"),
            ("table", "cosell_solutionlinks"),
            ("lookup", "cosell_solutionlink.cosell_opportunityid"),
            ("table", "cosell_solutioncatalogs"),
            ("change tracking", "opportunity"),
        ],
        CrmKind::Salesforce => &[
            ("column", "Opportunity.Sync_with_Partner_Center__c"),
            ("column", "Opportunity.Referral_Identifier__c"),
            ("column", "Opportunity.Audit__c"),
            ("column", "Lead.Referral_Identifier__c"),
            ("table", "Microsoft_Solution__c"),
            ("lookup", "Microsoft_Solution__c.Opportunity__c"),
            ("table", "Microsoft_Solution_Catalog__c"),
            ("stage", "Opportunity.StageName On Hold"),
            ("field access", "Opportunity.Audit__c"),
            ("assignment", "CoSell_Connector"),
        ],
    }
}

async fn bare_sandbox() -> Sandbox {
    let mut config = SandboxConfig::default();
    config.dataverse.bare();
    config.salesforce.bare();
    Sandbox::start(config)
        .await
        .unwrap_or_else(|e| panic!("cannot start the sandbox: {e}"))
}

/// The CRM API writes the sandbox counted since the stats were last cleared.
async fn crm_writes(sandbox: &Sandbox) -> Vec<String> {
    let stats = control(sandbox, reqwest::Method::GET, "/_sandbox/stats", None).await;
    stats
        .as_object()
        .unwrap()
        .iter()
        .filter(|(key, n)| {
            let (method, route) = key.split_once(' ').unwrap_or_default();
            method != "GET"
                && (route.starts_with("/api/data/") || route.starts_with("/services/data/"))
                && n.as_u64().unwrap_or(0) > 0
        })
        .map(|(key, n)| format!("{key}: {n}"))
        .collect()
}

/// Runs `cosell <args>` to its end: whether it succeeded, and what it printed.
async fn run(args: &[&str]) -> (bool, String) {
    let mut cosell = Cosell::start(args, &[]);
    let status = cosell.exit().await;
    (status.success(), cosell.output())
}

fn target<'a>(
    command: &[&'a str],
    kind: CrmKind,
    sandbox: &'a Sandbox,
    data_dir: &'a str,
) -> Vec<&'a str> {
    let mut args = command.to_vec();
    args.extend([
        "--crm",
        crm_arg(kind),
        "--sandbox-url",
        sandbox.base_url(),
        "--data-dir",
        data_dir,
    ]);
    args
}

async fn doctor(args: &[&str]) -> (bool, Value) {
    let mut with_json = args.to_vec();
    with_json.push("--json");
    let (ok, output) = run(&with_json).await;
    let json = output
        .strip_prefix("stdout:\n")
        .and_then(|o| o.split("\nstderr:\n").next())
        .and_then(|o| serde_json::from_str::<Value>(o).ok())
        .unwrap_or_else(|| panic!("doctor --json printed no JSON:\n{output}"));
    assert_eq!(
        json["ok"].as_bool(),
        Some(ok),
        "the exit code follows ok: {json:#}"
    );
    (ok, json)
}

fn check<'j>(report: &'j Value, name: &str) -> &'j Value {
    report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == name)
        .unwrap_or_else(|| panic!("no check {name:?} in {report:#}"))
}

async fn setting_up_a_bare_crm_takes_one_command(kind: CrmKind) {
    let sandbox = bare_sandbox().await;
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().to_str().unwrap();

    let (ok, report) = doctor(&target(&["doctor"], kind, &sandbox, data_dir)).await;
    assert!(!ok, "a bare CRM fails the doctor: {report:#}");
    for (item_kind, item) in some_missing(kind) {
        let name = format!("{item_kind} {item}");
        let c = check(&report, &name);
        assert_eq!(c["ok"], false, "{name}: {c:#}");
        assert_eq!(c["fix"], "run `cosell crm setup`", "{name}: {c:#}");
    }
    assert_eq!(check(&report, "settings")["ok"], true, "{report:#}");
    assert_eq!(check(&report, "CRM sign-in")["ok"], true, "{report:#}");

    control(&sandbox, reqwest::Method::DELETE, "/_sandbox/stats", None).await;
    let (ok, plan) = run(&target(
        &["crm", "setup", "--dry-run"],
        kind,
        &sandbox,
        data_dir,
    ))
    .await;
    assert!(ok, "everything can be created: {plan}");
    for (_, item) in some_missing(kind) {
        let line = plan
            .lines()
            .find(|l| l.contains(&format!(" {item} ")))
            .unwrap_or_else(|| panic!("{item} is not in the plan:\n{plan}"));
        assert!(line.contains("to create"), "{line}");
    }
    assert!(plan.contains("Dry run: nothing was changed"), "{plan}");
    assert_eq!(
        crm_writes(&sandbox).await,
        Vec::<String>::new(),
        "a dry run writes nothing"
    );

    let (ok, created) = run(&target(&["crm", "setup"], kind, &sandbox, data_dir)).await;
    assert!(ok, "{created}");
    assert!(!created.contains('✖'), "{created}");
    for (_, item) in some_missing(kind) {
        let line = created
            .lines()
            .rev()
            .find(|l| l.contains(&format!(" {item} ")))
            .unwrap_or_else(|| panic!("{item} is not in the result:\n{created}"));
        let result = line
            .trim_end()
            .strip_suffix('|')
            .and_then(|l| l.rsplit('|').next());
        assert_eq!(result.map(str::trim), Some("created"), "{line}");
    }
    assert!(
        !crm_writes(&sandbox).await.is_empty(),
        "setup wrote the metadata"
    );
    assert_eq!(
        created.contains("add it to each process"),
        matches!(kind, CrmKind::Salesforce),
        "a new Salesforce stage comes with the sales-process note: {created}"
    );

    control(&sandbox, reqwest::Method::DELETE, "/_sandbox/stats", None).await;
    let (ok, again) = run(&target(&["crm", "setup"], kind, &sandbox, data_dir)).await;
    assert!(ok, "{again}");
    assert!(
        again.contains("Created 0;"),
        "a second run creates nothing: {again}"
    );
    let results: Vec<&str> = again
        .lines()
        .filter_map(|l| l.trim_end().strip_suffix('|')?.rsplit('|').next())
        .map(str::trim)
        .collect();
    assert!(results.contains(&"already in place"), "{again}");
    assert!(!results.contains(&"created"), "{again}");
    assert!(again.contains("already in place"), "{again}");
    assert_eq!(
        crm_writes(&sandbox).await,
        Vec::<String>::new(),
        "a second run writes nothing"
    );

    // `cosell local` registers its webhook; with it running, every check passes.
    let mut local = Cosell::start(
        &target(
            &["local", "--listen", "127.0.0.1:0"],
            kind,
            &sandbox,
            data_dir,
        ),
        &[],
    );
    local.wait_for("Press Ctrl-C to stop.").await;
    let registered = local
        .lines()
        .iter()
        .find_map(|l| {
            l.trim()
                .strip_prefix("Registered:")
                .map(str::trim)
                .map(str::to_string)
        })
        .and_then(|l| l.split_whitespace().next().map(str::to_string))
        .unwrap_or_else(|| panic!("no registration in\n{}", local.output()));
    let mut args = target(&["doctor"], kind, &sandbox, data_dir);
    args.extend(["--webhook-url", registered.as_str()]);
    let (ok, report) = doctor(&args).await;
    assert!(ok, "after setup every check passes: {report:#}");
    let mut other = target(&["doctor"], kind, &sandbox, data_dir);
    other.extend(["--webhook-url", "https://elsewhere.example/webhooks"]);
    let (ok, report) = doctor(&other).await;
    assert!(!ok, "another URL fails the registration check");
    let c = check(&report, "Partner Center webhook registration");
    assert!(
        c["fix"]
            .as_str()
            .unwrap()
            .contains("cosell register --url https://elsewhere.example/webhooks"),
        "{c:#}"
    );

    let id = incoming_co_sell(&sandbox, "After setup").await;
    let crm_id = wait_for_write_back(&sandbox, &id).await;
    let synced = opportunities_for(&sandbox, kind, &id).await;
    assert_eq!(
        synced.len(),
        1,
        "one opportunity for the referral: {synced:#?}"
    );
    assert!(
        synced[0].to_string().contains(&crm_id),
        "Partner Center holds the opportunity's id {crm_id}: {:#}",
        synced[0]
    );
    local.interrupt();
    assert!(local.exit().await.success(), "{}", local.output());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dynamics_setting_up_a_bare_crm_takes_one_command() {
    setting_up_a_bare_crm_takes_one_command(CrmKind::Dynamics).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn salesforce_setting_up_a_bare_crm_takes_one_command() {
    setting_up_a_bare_crm_takes_one_command(CrmKind::Salesforce).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_settings_are_a_failed_check_naming_the_setting() {
    let (ok, output) = run(&[
        "doctor",
        "--crm",
        "dynamics",
        "--data-dir",
        "/nonexistent",
        "--json",
    ])
    .await;
    assert!(!ok, "{output}");
    assert!(output.contains("\"name\": \"settings\""), "{output}");
    assert!(
        output.contains("COSELL_"),
        "the message names a setting: {output}"
    );
    let (ok, output) = run(&[
        "crm",
        "setup",
        "--crm",
        "dynamics",
        "--data-dir",
        "/nonexistent",
    ])
    .await;
    assert!(!ok, "{output}");
    assert!(output.contains("COSELL_"), "{output}");
}

/// One command set aside in a dead-letter queue.
fn dead_letter() -> cosell_shared::queue::Outgoing {
    cosell_shared::queue::Outgoing {
        command: cosell_e2e::queue_contract::pc_changed("doctor-1", "referral-updated"),
        dedup_id: "doctor-1".into(),
    }
}

fn dead_letter_check(report: &Value) -> (bool, String) {
    let c = check(report, "dead-letter queue");
    (
        c["ok"].as_bool().unwrap(),
        c["detail"].as_str().unwrap().to_string(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_doctor_reads_dynamodb_and_sqs_and_counts_the_dead_letters() {
    use cosell_shared::queue::Queue;

    let sandbox = Sandbox::start(SandboxConfig::default()).await.unwrap();
    let moto = cosell_localaws::Moto::start()
        .await
        .unwrap_or_else(|e| panic!("cannot start moto: {e}"));
    let table = cosell_e2e::stack::create_state_table(&moto.dynamodb()).await;
    let (queue_url, dlq_url) = cosell_e2e::stack::create_sync_queues(&moto.sqs()).await;
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().to_str().unwrap();
    let env = [
        ("COSELL_TABLE_NAME", table),
        ("COSELL_QUEUE_URL", queue_url.as_str()),
        ("AWS_ENDPOINT_URL", moto.endpoint()),
        ("AWS_REGION", cosell_localaws::REGION),
        ("AWS_ACCESS_KEY_ID", "testing"),
        ("AWS_SECRET_ACCESS_KEY", "testing"),
    ];
    let args = target(&["doctor", "--json"], CrmKind::Dynamics, &sandbox, data_dir);
    let report = |env: &[(&'static str, &str)]| {
        let mut cosell = Cosell::start(&args, env);
        async move {
            cosell.exit().await;
            let out = cosell.stdout.lock().unwrap().join("\n");
            serde_json::from_str::<Value>(&out)
                .unwrap_or_else(|e| panic!("{e}: {}", cosell.output()))
        }
    };
    let clean = report(&env).await;
    assert_eq!(check(&clean, "store")["ok"], true, "{clean:#}");
    assert!(
        check(&clean, "store")["detail"]
            .as_str()
            .unwrap()
            .contains(&format!("DynamoDB table {table}")),
        "{clean:#}"
    );
    assert_eq!(check(&clean, "queue")["ok"], true, "{clean:#}");
    assert!(dead_letter_check(&clean).0, "{clean:#}");

    cosell_shared::queue::sqs::SqsQueue::new(moto.sqs(), &dlq_url)
        .send(&dead_letter())
        .await
        .unwrap();
    let after = report(&env).await;
    let (ok, detail) = dead_letter_check(&after);
    assert!(!ok && detail.contains("1 commands"), "{after:#}");
    assert!(
        detail.contains(&dlq_url),
        "names the dead-letter queue: {detail}"
    );
    assert!(
        !dir.path().join("state.sqlite3").exists(),
        "nothing embedded was opened"
    );

    // A table that is not there is a failed check, not a crash.
    let mut wrong = env;
    wrong[0] = ("COSELL_TABLE_NAME", "no-such-table");
    let missing = report(&wrong).await;
    assert_eq!(check(&missing, "store")["ok"], false, "{missing:#}");
    assert_eq!(missing["ok"], false);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_doctor_counts_the_embedded_dead_letters() {
    use cosell_shared::queue::Queue;
    use cosell_shared::queue::embedded::{EmbeddedQueue, EmbeddedQueueSettings};

    let sandbox = Sandbox::start(SandboxConfig::default()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().to_str().unwrap();
    let args = target(&["doctor"], CrmKind::Salesforce, &sandbox, data_dir);
    let (_, report) = doctor(&args).await;
    assert_eq!(check(&report, "store")["ok"], true, "{report:#}");
    assert!(dead_letter_check(&report).0, "an empty one: {report:#}");

    EmbeddedQueue::open(
        &dir.path().join("queue.sqlite3"),
        "sync-dlq",
        EmbeddedQueueSettings {
            dead_letter_queue: None,
            ..EmbeddedQueueSettings::default()
        },
    )
    .unwrap()
    .send(&dead_letter())
    .await
    .unwrap();
    let (ok, report) = doctor(&args).await;
    assert!(!ok);
    let (dlq_ok, detail) = dead_letter_check(&report);
    assert!(!dlq_ok && detail.contains("1 commands"), "{report:#}");
    assert_eq!(check(&report, "store")["ok"], true, "{report:#}");
    assert_eq!(check(&report, "queue")["ok"], true, "{report:#}");
}
