//! `SqliteStore` on a temp file: the whole store contract, plus what only a file-backed store can
//! get wrong: what one process wrote is there for the next (a restart, or a `kill -9`), and two
//! stores on one file (two processes) still let exactly one writer win.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;

use chrono::{Duration, Utc};
use cosell_e2e::store_contract::{self, Ids, sample_link};
use cosell_shared::store::sqlite::SqliteStore;
use cosell_shared::store::{Claim, JournalEntry, Link, Outcome, Store, StoreError};
use tempfile::TempDir;

/// A path in a fresh temp dir, one directory down so `open` has to create it.
fn temp_file() -> (TempDir, PathBuf) {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("cosell").join("state.db");
    (dir, path)
}

fn open(path: &Path) -> SqliteStore {
    SqliteStore::open(path).unwrap_or_else(|err| panic!("cannot open the store: {err}"))
}

/// A store on a file of its own; keep the `TempDir` alive as long as the store.
fn store() -> (TempDir, SqliteStore) {
    let (dir, path) = temp_file();
    let store = open(&path);
    (dir, store)
}

cosell_e2e::store_contract_tests!(async { store() });

/// The whole suite in one file, then again in the same file after reopening it: the promises hold
/// side by side, and on a file that already holds data.
#[tokio::test]
async fn the_whole_contract_in_one_file_and_after_reopening_it() {
    let (_dir, path) = temp_file();
    store_contract::run_all(&open(&path)).await;
    store_contract::run_all(&open(&path)).await;
}

fn next_version(link: &Link, last_error: &str) -> Link {
    Link {
        last_error: Some(last_error.to_owned()),
        version: link.version + 1,
        ..link.clone()
    }
}

fn journal_entry(referral_id: &str, minutes: i64, message: &str) -> JournalEntry {
    JournalEntry {
        at: Utc::now() + Duration::minutes(minutes),
        referral_id: referral_id.to_owned(),
        outcome: Outcome::Synced,
        message: message.to_owned(),
    }
}

#[tokio::test]
async fn a_restarted_process_reads_what_the_last_one_wrote() {
    let (_dir, path) = temp_file();
    let now = Utc::now();
    let v1 = sample_link("Referral-1", "crm-old", 1);
    let v2 = Link {
        crm_id: "crm-new".to_owned(),
        ..next_version(&v1, "re-linked")
    };
    let journal = [
        journal_entry("Referral-1", 0, "first"),
        journal_entry("Referral-1", 1, "second"),
    ];
    {
        let before = open(&path);
        before.put_link(&v1).await.expect("put v1");
        before.put_link(&v2).await.expect("put v2");
        for key in ["done", "running"] {
            assert_eq!(
                before.claim(key, now, now + Duration::minutes(5)).await,
                Ok(Claim::Acquired)
            );
        }
        before
            .complete("done", now + Duration::hours(1))
            .await
            .expect("complete");
        for entry in &journal {
            before.append_journal(entry).await.expect("append_journal");
        }
        before
            .put_cursor("dataverse-opportunities", "token-2")
            .await
            .expect("put_cursor");
    }

    let after = open(&path);
    assert_eq!(
        after.link_by_referral("REFERRAL-1").await,
        Ok(Some(v2.clone()))
    );
    assert_eq!(after.link_by_crm("crm-new").await, Ok(Some(v2.clone())));
    assert_eq!(after.link_by_crm("crm-old").await, Ok(None));
    let later = now + Duration::minutes(1);
    assert_eq!(
        after
            .claim("done", later, later + Duration::minutes(5))
            .await,
        Ok(Claim::Completed),
        "a completed claim is still completed"
    );
    assert_eq!(
        after
            .claim("running", later, later + Duration::minutes(5))
            .await,
        Ok(Claim::InProgress),
        "a claim in progress is still held"
    );
    assert_eq!(
        after.journal("referral-1", 10).await,
        Ok(vec![journal[1].clone(), journal[0].clone()])
    );
    assert_eq!(
        after.cursor("dataverse-opportunities").await,
        Ok(Some("token-2".to_owned()))
    );

    // The versions carry on where they were.
    assert!(matches!(
        after.put_link(&next_version(&v1, "stale")).await,
        Err(StoreError::Conflict { .. })
    ));
    let v3 = next_version(&v2, "after the restart");
    after.put_link(&v3).await.expect("put v3");
    assert_eq!(after.link_by_referral("referral-1").await, Ok(Some(v3)));
}

/// Tells the child process which file to write; without it the child test does nothing.
const CRASH_FILE: &str = "COSELL_SQLITE_KILL_TEST_FILE";
/// What the child prints once every write has returned.
const WRITTEN: &str = "cosell-sqlite-child: all writes returned";

/// The child half of `writes_survive_a_kill_9_of_the_process`: writes, says so, and waits to be
/// killed. Ignored so that it only runs when that test starts it.
#[tokio::test]
#[ignore = "the child process of writes_survive_a_kill_9_of_the_process, which runs it"]
async fn child_writes_then_waits_to_be_killed() {
    let Some(path) = std::env::var_os(CRASH_FILE) else {
        return;
    };
    let store = open(Path::new(&path));
    let now = Utc::now();
    store
        .put_link(&sample_link("referral-k", "crm-k", 1))
        .await
        .expect("put_link");
    assert_eq!(
        store.claim("done", now, now + Duration::minutes(5)).await,
        Ok(Claim::Acquired)
    );
    store
        .complete("done", now + Duration::hours(1))
        .await
        .expect("complete");
    store
        .append_journal(&journal_entry("referral-k", 0, "synced before the crash"))
        .await
        .expect("append_journal");
    store
        .put_cursor("poller", "token-k")
        .await
        .expect("put_cursor");
    println!("{WRITTEN}");
    std::future::pending::<()>().await;
}

/// A link and a completed claim must outlive the process that wrote them, even one killed the
/// instant the calls returned (no flush on the way out). The child is this test binary again,
/// running `child_writes_then_waits_to_be_killed`; `Child::kill` is SIGKILL on Unix.
#[test]
fn writes_survive_a_kill_9_of_the_process() {
    let (_dir, path) = temp_file();
    let exe = std::env::current_exe().expect("the test binary's path");
    let mut child = Command::new(exe)
        .args([
            "child_writes_then_waits_to_be_killed",
            "--exact",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CRASH_FILE, &path)
        .stdout(Stdio::piped())
        .spawn()
        .expect("start the child process");
    let stdout = child.stdout.take().expect("the child's stdout");
    let (written, wait_written) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if line.contains(WRITTEN) {
                let _ = written.send(());
            }
        }
    });
    let said_written = wait_written.recv_timeout(std::time::Duration::from_secs(120));
    child.kill().expect("kill -9 the child");
    let status = child.wait().expect("reap the child");
    assert!(
        said_written.is_ok(),
        "the child never said its writes returned (it ended with {status})"
    );

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    runtime.block_on(async {
        let store = open(&path);
        let link = sample_link("referral-k", "crm-k", 1);
        assert_eq!(store.link_by_crm("crm-k").await, Ok(Some(link)));
        let now = Utc::now();
        assert_eq!(
            store.claim("done", now, now + Duration::minutes(5)).await,
            Ok(Claim::Completed)
        );
        let journal = store.journal("referral-k", 10).await.expect("journal");
        assert_eq!(journal.len(), 1);
        assert_eq!(store.cursor("poller").await, Ok(Some("token-k".to_owned())));
    });
}

/// Two processes on one file, as two `cosell local` started by mistake would be.
fn two_stores() -> (TempDir, SqliteStore, SqliteStore) {
    let (dir, path) = temp_file();
    let a = open(&path);
    let b = open(&path);
    (dir, a, b)
}

const ROUNDS: usize = 30;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_stores_on_one_file_racing_for_a_claim_have_one_winner() {
    let (_dir, a, b) = two_stores();
    let ids = Ids::new();
    let now = Utc::now();
    let until = now + Duration::minutes(5);
    for _ in 0..ROUNDS {
        let key = ids.next("command");
        let results = tokio::join!(a.claim(&key, now, until), b.claim(&key, now, until));
        match results {
            (Ok(Claim::Acquired), Ok(Claim::InProgress))
            | (Ok(Claim::InProgress), Ok(Claim::Acquired)) => {}
            other => panic!("expected one Acquired and one InProgress, got {other:?}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_stores_on_one_file_racing_to_write_a_link_version_have_one_winner() {
    let (_dir, a, b) = two_stores();
    let ids = Ids::new();
    for _ in 0..ROUNDS {
        let v1 = sample_link(&ids.next("referral"), &ids.next("crm"), 1);
        a.put_link(&v1).await.expect("put v1");
        let from_a = next_version(&v1, "writer a");
        let from_b = next_version(&v1, "writer b");
        let results = tokio::join!(a.put_link(&from_a), b.put_link(&from_b));
        let winner = match results {
            (Ok(()), Err(StoreError::Conflict { .. })) => from_a,
            (Err(StoreError::Conflict { .. }), Ok(())) => from_b,
            other => panic!("expected one winner and one Conflict, got {other:?}"),
        };
        for store in [&a, &b] {
            assert_eq!(
                store.link_by_referral(&v1.referral_id).await,
                Ok(Some(winner.clone()))
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_stores_on_one_file_racing_to_create_a_link_have_one_winner() {
    let (_dir, a, b) = two_stores();
    let ids = Ids::new();
    for _ in 0..ROUNDS {
        let referral_id = ids.next("referral");
        let from_a = sample_link(&referral_id, &ids.next("crm"), 1);
        let from_b = sample_link(&referral_id, &ids.next("crm"), 1);
        let results = tokio::join!(a.put_link(&from_a), b.put_link(&from_b));
        let (winner, loser) = match results {
            (Ok(()), Err(StoreError::Conflict { .. })) => (from_a, from_b),
            (Err(StoreError::Conflict { .. }), Ok(())) => (from_b, from_a),
            other => panic!("expected one winner and one Conflict, got {other:?}"),
        };
        for store in [&a, &b] {
            assert_eq!(
                store.link_by_crm(&winner.crm_id).await,
                Ok(Some(winner.clone()))
            );
            assert_eq!(store.link_by_crm(&loser.crm_id).await, Ok(None));
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_stores_on_one_file_racing_for_one_crm_record_have_one_winner() {
    let (_dir, a, b) = two_stores();
    let ids = Ids::new();
    for _ in 0..ROUNDS {
        let crm_id = ids.next("crm");
        let from_a = sample_link(&ids.next("referral"), &crm_id, 1);
        let from_b = sample_link(&ids.next("referral"), &crm_id, 1);
        let results = tokio::join!(a.put_link(&from_a), b.put_link(&from_b));
        let (winner, loser) = match results {
            (Ok(()), Err(StoreError::Conflict { .. })) => (from_a, from_b),
            (Err(StoreError::Conflict { .. }), Ok(())) => (from_b, from_a),
            other => panic!("expected one winner and one Conflict, got {other:?}"),
        };
        for store in [&a, &b] {
            assert_eq!(store.link_by_crm(&crm_id).await, Ok(Some(winner.clone())));
            assert_eq!(store.link_by_referral(&loser.referral_id).await, Ok(None));
        }
    }
}
