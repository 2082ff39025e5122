//! `cosell local` as a user runs it: the real binary in its own process, against a sandbox, on
//! the embedded store and queue (or DynamoDB and SQS in moto). Stopped with Ctrl-C (SIGINT), or
//! killed outright to show a restart loses nothing and does nothing twice.

#![cfg(unix)]
// A test crate: its helpers may panic on what the test set up.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::Path;

use common::{
    Cosell, PATIENCE, POLL, control, crm_arg, incoming_co_sell, opportunities_for, referral,
    wait_for_write_back,
};

use cosell_e2e::stack::{CrmKind, CrmSide, create_state_table, create_sync_queues};
use cosell_sandbox::{Sandbox, SandboxConfig};
use cosell_shared::store::Store;
use cosell_shared::store::sqlite::SqliteStore;
use serde_json::{Value, json};

/// The line `cosell local` prints once it is ready.
const READY: &str = "Press Ctrl-C to stop.";
/// The Partner Center write-back of a new record's id: where the tests hold a sync mid-way.
const WRITE_BACK_ROUTE: &str = "/v1.0/engagements/referrals/{id}";
/// Its key in the sandbox's request counts.
const WRITE_BACK: &str = "PATCH /v1.0/engagements/referrals/{id}";

async fn sandbox() -> Sandbox {
    Sandbox::start(SandboxConfig::default())
        .await
        .unwrap_or_else(|e| panic!("cannot start the sandbox: {e}"))
}

async fn calls(sandbox: &Sandbox, route: &str) -> u64 {
    control(sandbox, reqwest::Method::GET, "/_sandbox/stats", None).await[route]
        .as_u64()
        .unwrap_or(0)
}

async fn wait_for_calls(sandbox: &Sandbox, route: &str) {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while calls(sandbox, route).await == 0 {
        assert!(tokio::time::Instant::now() < deadline, "no {route} call");
        tokio::time::sleep(POLL).await;
    }
}

/// The journal lines of a referral, read from a stopped `cosell local`'s data directory.
async fn journal(data_dir: &Path, id: &str) -> Vec<String> {
    let store = SqliteStore::open(&data_dir.join("state.sqlite3")).expect("the embedded store");
    store
        .journal(id, 100)
        .await
        .expect("journal")
        .into_iter()
        .map(|e| e.message)
        .collect()
}

fn local_args<'a>(kind: CrmKind, sandbox_url: &'a str, data_dir: &'a str) -> Vec<&'a str> {
    vec![
        "local",
        "--crm",
        crm_arg(kind),
        "--sandbox-url",
        sandbox_url,
        "--listen",
        "127.0.0.1:0",
        "--data-dir",
        data_dir,
    ]
}

async fn the_demo_shows_where_each_referral_landed(kind: CrmKind) {
    let dir = tempfile::tempdir().expect("temp dir");
    let data_dir = dir.path().to_str().expect("utf-8 path");
    let mut cosell = Cosell::start(
        &[
            "local",
            "--crm",
            crm_arg(kind),
            "--demo",
            "--listen",
            "127.0.0.1:0",
            "--data-dir",
            data_dir,
        ],
        &[],
    );
    cosell.wait_for("The sandbox keeps running").await;
    let out = cosell.stdout.lock().unwrap().join("\n");
    let table = &out[out.find("Where each referral landed").expect("the table")..];
    assert_eq!(
        table.matches("opportunity, on hold").count(),
        3,
        "two co-sell referrals and one pipeline sharing became opportunities on hold:\n{table}"
    );
    assert_eq!(table.matches("created in the CRM").count(), 3, "{table}");
    assert!(
        table.contains("\"sync co-sell only\" is on"),
        "the lead stayed out, and the table says why:\n{table}"
    );
    assert!(
        table.contains("✔ Contoso: data platform modernisation"),
        "{table}"
    );
    // And back: what sellers did in the CRM reached Partner Center.
    let back = &out[out
        .find("What sellers did in the CRM")
        .expect("the second table")..];
    for outcome in [
        "Accepted the referral in Partner Center",
        "Shared with Partner Center as a co-sell deal",
        "Not shared with Partner Center: The country 'Norway'",
    ] {
        assert!(back.contains(outcome), "{outcome:?} in:\n{back}");
    }

    cosell.interrupt();
    let status = cosell.exit().await;
    assert!(
        status.success(),
        "Ctrl-C ends cleanly: {status}\n{}",
        cosell.output()
    );
    assert!(cosell.output().contains("Stopped."), "{}", cosell.output());
}

async fn a_process_killed_mid_message_completes_it_once_after_restart(kind: CrmKind) {
    let sandbox = sandbox().await;
    let dir = tempfile::tempdir().expect("temp dir");
    let data_dir = dir.path().to_str().expect("utf-8 path");
    let args = local_args(kind, sandbox.base_url(), data_dir);
    // The write-back of the first sync hangs, so the process is caught after the CRM record
    // exists and before Partner Center knows it, the link is saved and the message deleted.
    control(
        &sandbox,
        reqwest::Method::POST,
        "/_sandbox/faults",
        Some(
            json!({"method": "PATCH", "route": WRITE_BACK_ROUTE, "latencyMs": 60_000, "count": 1}),
        ),
    )
    .await;

    let mut first = Cosell::start(&args, &[]);
    first.wait_for(READY).await;
    let id = incoming_co_sell(&sandbox, "Killed mid-sync").await;
    wait_for_calls(&sandbox, WRITE_BACK).await;
    first.kill();
    first.exit().await;
    assert_eq!(
        opportunities_for(&sandbox, kind, &id).await.len(),
        1,
        "created before the kill"
    );
    assert_eq!(
        referral(&sandbox, &id).await["externalReferenceId"],
        Value::Null,
        "the write-back was cut off by the kill"
    );

    let mut second = Cosell::start(&args, &[]);
    second.wait_for(READY).await;
    let crm_id = wait_for_write_back(&sandbox, &id).await;
    second.interrupt();
    assert!(second.exit().await.success(), "{}", second.output());

    let opportunities = opportunities_for(&sandbox, kind, &id).await;
    assert_eq!(
        opportunities.len(),
        1,
        "exactly one opportunity: {opportunities:#?}"
    );
    let (method, route) = CrmSide(kind).create_opportunity_route();
    assert_eq!(
        calls(&sandbox, &format!("{method} {route}")).await,
        1,
        "the CRM record was created once, by the killed process"
    );
    let created: Vec<String> = journal(dir.path(), &id)
        .await
        .into_iter()
        .filter(|m| m == "created in the CRM")
        .collect();
    assert_eq!(
        created.len(),
        1,
        "the restarted process finished the sync once"
    );
    assert_eq!(
        referral(&sandbox, &id).await["externalReferenceId"].as_str(),
        Some(crm_id.as_str())
    );
}

async fn ctrl_c_finishes_the_message_in_hand(kind: CrmKind) {
    let sandbox = sandbox().await;
    let dir = tempfile::tempdir().expect("temp dir");
    let data_dir = dir.path().to_str().expect("utf-8 path");
    control(
        &sandbox,
        reqwest::Method::POST,
        "/_sandbox/faults",
        Some(json!({"method": "PATCH", "route": WRITE_BACK_ROUTE, "latencyMs": 2_000, "count": 1})),
    )
    .await;
    let mut cosell = Cosell::start(&local_args(kind, sandbox.base_url(), data_dir), &[]);
    cosell.wait_for(READY).await;
    let id = incoming_co_sell(&sandbox, "Stopped mid-sync").await;
    wait_for_calls(&sandbox, WRITE_BACK).await;
    cosell.interrupt();
    let status = cosell.exit().await;
    assert!(status.success(), "{status}\n{}", cosell.output());

    // The message in hand was finished before the process ended: nothing is left half done.
    let crm_id = referral(&sandbox, &id).await["externalReferenceId"]
        .as_str()
        .map(str::to_string)
        .unwrap_or_else(|| {
            panic!(
                "the write-back finished before the exit\n{}",
                cosell.output()
            )
        });
    let opportunities = opportunities_for(&sandbox, kind, &id).await;
    assert_eq!(opportunities.len(), 1);
    assert_eq!(journal(dir.path(), &id).await, ["created in the CRM"]);
    assert!(!crm_id.is_empty());
}

mod dynamics {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_demo_shows_where_each_referral_landed() {
        super::the_demo_shows_where_each_referral_landed(CrmKind::Dynamics).await
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_process_killed_mid_message_completes_it_once_after_restart() {
        super::a_process_killed_mid_message_completes_it_once_after_restart(CrmKind::Dynamics).await
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn ctrl_c_finishes_the_message_in_hand() {
        super::ctrl_c_finishes_the_message_in_hand(CrmKind::Dynamics).await
    }
}

mod salesforce {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_demo_shows_where_each_referral_landed() {
        super::the_demo_shows_where_each_referral_landed(CrmKind::Salesforce).await
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_process_killed_mid_message_completes_it_once_after_restart() {
        super::a_process_killed_mid_message_completes_it_once_after_restart(CrmKind::Salesforce)
            .await
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn ctrl_c_finishes_the_message_in_hand() {
        super::ctrl_c_finishes_the_message_in_hand(CrmKind::Salesforce).await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn it_runs_on_dynamodb_and_sqs_when_they_are_configured() {
    let moto = cosell_localaws::Moto::start()
        .await
        .unwrap_or_else(|e| panic!("cannot start moto: {e}"));
    let table = create_state_table(&moto.dynamodb()).await;
    let (queue_url, _) = create_sync_queues(&moto.sqs()).await;
    let dir = tempfile::tempdir().expect("temp dir");
    let data_dir = dir.path().to_str().expect("utf-8 path");
    let env = [
        ("COSELL_TABLE_NAME", table),
        ("COSELL_QUEUE_URL", queue_url.as_str()),
        ("AWS_ENDPOINT_URL", moto.endpoint()),
        ("AWS_REGION", cosell_localaws::REGION),
        ("AWS_ACCESS_KEY_ID", "testing"),
        ("AWS_SECRET_ACCESS_KEY", "testing"),
    ];
    let mut cosell = Cosell::start(
        &[
            "local",
            "--crm",
            "dynamics",
            "--demo",
            "--listen",
            "127.0.0.1:0",
            "--data-dir",
            data_dir,
        ],
        &env,
    );
    cosell.wait_for("The sandbox keeps running").await;
    let out = cosell.stdout.lock().unwrap().join("\n");
    assert!(out.contains(&format!("DynamoDB table {table}")), "{out}");
    assert_eq!(out.matches("created in the CRM").count(), 3, "{out}");
    cosell.interrupt();
    assert!(cosell.exit().await.success(), "{}", cosell.output());
    assert!(
        !dir.path().join("state.sqlite3").exists(),
        "nothing embedded was used"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_settings_stop_start_up_naming_the_setting() {
    let dir = tempfile::tempdir().expect("temp dir");
    let data_dir = dir.path().to_str().expect("utf-8 path");
    let base = ["local", "--listen", "127.0.0.1:0", "--data-dir", data_dir];
    // (extra arguments, environment, the setting the message must name)
    type Case<'a> = (Vec<&'a str>, Vec<(&'a str, &'a str)>, &'a str);
    let cases: Vec<Case> = vec![
        (vec![], vec![], "--crm"),
        (
            vec!["--crm", "dynamics"],
            vec![("COSELL_MARKER", "maybe")],
            "COSELL_MARKER",
        ),
        (
            vec!["--crm", "dynamics"],
            vec![("COSELL_TABLE_NAME", "cosell-state")],
            "COSELL_QUEUE_URL",
        ),
        (
            vec!["--crm", "dynamics"],
            vec![("COSELL_PC_CLIENT_ID", "app")],
            // Real services are configured, but not completely.
            "COSELL_DATAVERSE_URL",
        ),
        (
            vec!["--crm", "dynamics", "--sandbox-url", "ftp://sandbox"],
            vec![],
            "--sandbox-url",
        ),
    ];
    for (extra, env, setting) in cases {
        let args: Vec<&str> = base.iter().copied().chain(extra).collect();
        let mut cosell = Cosell::start(&args, &env);
        let status = cosell.exit().await;
        assert!(!status.success(), "{args:?} {env:?} must not start");
        let output = cosell.output();
        assert!(
            output.contains(setting),
            "{args:?} {env:?}: the message names {setting}:\n{output}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_process_on_the_same_data_directory_is_refused() {
    let sandbox = sandbox().await;
    let dir = tempfile::tempdir().expect("temp dir");
    let data_dir = dir.path().to_str().expect("utf-8 path");
    let args = local_args(CrmKind::Dynamics, sandbox.base_url(), data_dir);
    let mut first = Cosell::start(&args, &[]);
    first.wait_for(READY).await;
    let mut second = Cosell::start(&args, &[]);
    assert!(!second.exit().await.success());
    assert!(
        second
            .output()
            .contains("another `cosell local` is using it"),
        "{}",
        second.output()
    );
    first.interrupt();
    assert!(first.exit().await.success(), "{}", first.output());
}
