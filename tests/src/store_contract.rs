//! The behaviour every [`Store`] adapter must show, as plain async functions over `&dyn Store`.
//! Each adapter's test binary runs them against its own store (DynamoDB in moto, the embedded
//! store), so both are held to the same contract.
//!
//! Every function makes its own ids from an [`Ids`], so the functions can share one store and run
//! in any order. They panic with a message on the first broken promise, like any test assertion.
//!
//! Beyond the port's doc comments the contract fixes two things the engine relies on: referral
//! ids are found whatever their case (Partner Center's payloads vary it), and a CRM record is
//! linked to at most one referral (a second referral claiming it is a `Conflict`).
//!
//! The store under test keeps the default retention ([`DEFAULT_RETENTION`]): the retention
//! promises write entries on either side of it.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use chrono::{DateTime, Duration, TimeZone, Utc};
use cosell_shared::crm::CrmKind;
use cosell_shared::domain::projection::Projection;
use cosell_shared::store::{
    Claim, DEFAULT_RETENTION, JournalEntry, Link, LinkState, Outcome, RecordKind, Seen, Store,
    StoreError, StoreResult, Timer,
};

/// Unique ids for one run: a per-process seed plus a counter, so runs against a store that
/// outlives the process (a file, a shared table) never collide either.
#[derive(Debug)]
pub struct Ids {
    seed: String,
    next: AtomicU64,
}

impl Default for Ids {
    fn default() -> Self {
        Self::new()
    }
}

impl Ids {
    pub fn new() -> Self {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        Ids {
            seed: format!("{:x}-{:x}", std::process::id(), nanos),
            next: AtomicU64::new(0),
        }
    }

    /// A fresh id such as `referral-1a2b-17c3d4e5f6-7`.
    pub fn next(&self, prefix: &str) -> String {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        format!("{prefix}-{}-{n}", self.seed)
    }
}

/// Declares one `#[tokio::test]` per promise of the contract, each on a store of its own:
/// `$store` is an expression giving a future of `(guard, store)`, the guard kept alive for the
/// test (a moto, a temporary directory).
#[macro_export]
macro_rules! store_contract_tests {
    ($store:expr) => {
        $crate::store_contract_tests!(@each $store;
            links_are_found_both_ways,
            a_first_version_is_written_once,
            each_version_follows_the_one_before,
            a_stale_write_changes_nothing,
            a_relink_moves_the_crm_lookup,
            a_crm_record_is_linked_to_one_referral,
            concurrent_writers_of_one_version_one_wins,
            concurrent_first_writes_one_wins,
            a_claim_is_held_until_completed_then_skipped,
            a_completed_key_can_be_claimed_after_it_expires,
            an_expired_in_progress_claim_is_taken_over,
            a_released_claim_is_free_at_once,
            the_journal_is_newest_first_and_limited,
            cursors_round_trip_and_overwrite,
            timers_come_due_in_order_and_are_replaced_by_key,
            a_links_state_round_trips,
            an_expired_cursor_reads_nothing_and_a_fresh_one_its_value,
            journal_entries_past_the_retention_are_not_answered,
            links_are_listed_in_pages_in_order,
        );
    };
    (@each $store:expr; $($name:ident),* $(,)?) => {$(
        #[tokio::test]
        async fn $name() {
            let (_guard, store) = $store.await;
            $crate::store_contract::$name(&store, &$crate::store_contract::Ids::new()).await;
        }
    )*};
}

/// Runs the whole contract, one promise after another.
pub async fn run_all(store: &dyn Store) {
    let ids = Ids::new();
    run_all_but_concurrency(store).await;
    concurrent_writers_of_one_version_one_wins(store, &ids).await;
    concurrent_first_writes_one_wins(store, &ids).await;
}

/// The contract without the two promises about concurrent writers, for an emulator whose
/// transactions are not atomic under concurrent requests: moto's server is threaded and
/// `TransactWriteItems` copies the table, writes and restores it on failure with no lock, so in
/// a table holding many items two racing first writes can both succeed there (DynamoDB itself
/// guarantees that one loses). The two promises still run against moto, each on a fresh table.
pub async fn run_all_but_concurrency(store: &dyn Store) {
    let ids = Ids::new();
    links_are_found_both_ways(store, &ids).await;
    a_first_version_is_written_once(store, &ids).await;
    each_version_follows_the_one_before(store, &ids).await;
    a_stale_write_changes_nothing(store, &ids).await;
    a_relink_moves_the_crm_lookup(store, &ids).await;
    a_crm_record_is_linked_to_one_referral(store, &ids).await;
    a_claim_is_held_until_completed_then_skipped(store, &ids).await;
    a_completed_key_can_be_claimed_after_it_expires(store, &ids).await;
    an_expired_in_progress_claim_is_taken_over(store, &ids).await;
    timers_come_due_in_order_and_are_replaced_by_key(store, &ids).await;
    a_links_state_round_trips(store, &ids).await;
    a_released_claim_is_free_at_once(store, &ids).await;
    the_journal_is_newest_first_and_limited(store, &ids).await;
    cursors_round_trip_and_overwrite(store, &ids).await;
    an_expired_cursor_reads_nothing_and_a_fresh_one_its_value(store, &ids).await;
    journal_entries_past_the_retention_are_not_answered(store, &ids).await;
    links_are_listed_in_pages_in_order(store, &ids).await;
}

/// A link with every field filled, so a store that drops one fails the round trip.
pub fn sample_link(referral_id: &str, crm_id: &str, version: u64) -> Link {
    Link {
        referral_id: referral_id.to_owned(),
        crm_id: crm_id.to_owned(),
        record: RecordKind::Opportunity,
        crm_kind: CrmKind::Dynamics,
        engagement_id: Some(format!("engagement-of-{referral_id}")),
        synced: Some(Projection {
            name: Some("Contoso – Azure migration".to_owned()),
            deal_value: Some(125_000.5),
            currency: Some("EUR".to_owned()),
            close_date: chrono::NaiveDate::from_ymd_opt(2025, 9, 30),
            notes: Some("line one\nline two".to_owned()),
            status: Some("Active/Accepted".to_owned()),
            microsoft_help: None,
            visible: Some(true),
            microsoft_status: None,
            microsoft_crm_id: None,
            has_contact: Some(true),
        }),
        referral_etag: Some(format!("\"etag-{version}\"")),
        crm_modified_at: Utc.timestamp_opt(1_750_000_000, 123_456_789).single(),
        terminal: false,
        last_error: None,
        version,
        state: LinkState::default(),
    }
}

/// The link as the next write would store it: one change, the version bumped.
fn next_version(link: &Link, last_error: &str) -> Link {
    Link {
        last_error: Some(last_error.to_owned()),
        version: link.version + 1,
        ..link.clone()
    }
}

fn ok<T>(result: StoreResult<T>, doing: &str) -> T {
    result.unwrap_or_else(|err| panic!("{doing}: unexpected error: {err}"))
}

fn assert_conflict<T: std::fmt::Debug>(result: StoreResult<T>, doing: &str) {
    match result {
        Err(StoreError::Conflict { .. }) => {}
        other => panic!("{doing}: expected Conflict, got {other:?}"),
    }
}

async fn put(store: &dyn Store, link: &Link) {
    ok(
        store.put_link(link).await,
        &format!("put_link {} v{}", link.referral_id, link.version),
    );
}

async fn by_referral(store: &dyn Store, referral_id: &str) -> Option<Link> {
    ok(
        store.link_by_referral(referral_id).await,
        &format!("link_by_referral {referral_id}"),
    )
}

async fn by_crm(store: &dyn Store, crm_id: &str) -> Option<Link> {
    ok(
        store.link_by_crm(crm_id).await,
        &format!("link_by_crm {crm_id}"),
    )
}

async fn claim(
    store: &dyn Store,
    key: &str,
    now: DateTime<Utc>,
    in_progress_until: DateTime<Utc>,
) -> Claim {
    ok(
        store.claim(key, now, in_progress_until).await,
        &format!("claim {key}"),
    )
}

/// A link is found by its referral id (in any case) and by its CRM id; unknown ids find nothing.
pub async fn links_are_found_both_ways(store: &dyn Store, ids: &Ids) {
    let link = sample_link(&ids.next("Referral"), &ids.next("crm"), 1);
    assert_eq!(by_referral(store, &link.referral_id).await, None);
    put(store, &link).await;

    assert_eq!(
        by_referral(store, &link.referral_id).await.as_ref(),
        Some(&link)
    );
    assert_eq!(
        by_referral(store, &link.referral_id.to_ascii_uppercase())
            .await
            .as_ref(),
        Some(&link),
        "referral ids are found whatever their case"
    );
    assert_eq!(by_crm(store, &link.crm_id).await.as_ref(), Some(&link));
    assert_eq!(by_referral(store, &ids.next("referral")).await, None);
    assert_eq!(by_crm(store, &ids.next("crm")).await, None);
}

/// Two writers both creating a link: the second loses and the first stays.
pub async fn a_first_version_is_written_once(store: &dyn Store, ids: &Ids) {
    let referral_id = ids.next("referral");
    let first = sample_link(&referral_id, &ids.next("crm"), 1);
    put(store, &first).await;

    let second = sample_link(&referral_id, &ids.next("crm"), 1);
    assert_conflict(
        store.put_link(&second).await,
        "a second version 1 of the same link",
    );
    assert_eq!(by_referral(store, &referral_id).await, Some(first));
    assert_eq!(
        by_crm(store, &second.crm_id).await,
        None,
        "the losing write left no CRM lookup behind"
    );
}

/// Versions 2 and 3 follow 1; skipping a version is a conflict.
pub async fn each_version_follows_the_one_before(store: &dyn Store, ids: &Ids) {
    let v1 = sample_link(&ids.next("referral"), &ids.next("crm"), 1);
    put(store, &v1).await;
    let v2 = next_version(&v1, "first change");
    put(store, &v2).await;
    let v3 = next_version(&v2, "second change");
    put(store, &v3).await;
    assert_eq!(
        by_referral(store, &v1.referral_id).await.as_ref(),
        Some(&v3)
    );
    assert_eq!(by_crm(store, &v1.crm_id).await.as_ref(), Some(&v3));

    let skipping = Link {
        version: 5,
        ..v3.clone()
    };
    assert_conflict(store.put_link(&skipping).await, "version 5 after 3");

    let unknown = sample_link(&ids.next("referral"), &ids.next("crm"), 2);
    assert_conflict(
        store.put_link(&unknown).await,
        "version 2 of a link never stored",
    );
    assert_eq!(by_referral(store, &unknown.referral_id).await, None);
}

/// A writer that read an old version loses and the stored link is left as it was.
pub async fn a_stale_write_changes_nothing(store: &dyn Store, ids: &Ids) {
    let v1 = sample_link(&ids.next("referral"), &ids.next("crm"), 1);
    put(store, &v1).await;
    let v2 = next_version(&v1, "the winner's change");
    put(store, &v2).await;

    let stale = Link {
        terminal: true,
        crm_id: ids.next("crm"),
        ..next_version(&v1, "the loser's change")
    };
    assert_conflict(
        store.put_link(&stale).await,
        "a version 2 written from a stale read",
    );
    assert_eq!(
        by_referral(store, &v1.referral_id).await.as_ref(),
        Some(&v2)
    );
    assert_eq!(by_crm(store, &v1.crm_id).await.as_ref(), Some(&v2));
    assert_eq!(by_crm(store, &stale.crm_id).await, None);
}

/// A re-link to another CRM record: the new record finds the link, the old one no longer does.
pub async fn a_relink_moves_the_crm_lookup(store: &dyn Store, ids: &Ids) {
    let v1 = sample_link(&ids.next("referral"), &ids.next("crm"), 1);
    put(store, &v1).await;
    let v2 = Link {
        crm_id: ids.next("crm"),
        record: RecordKind::Lead,
        ..next_version(&v1, "re-linked")
    };
    put(store, &v2).await;

    assert_eq!(
        by_referral(store, &v1.referral_id).await.as_ref(),
        Some(&v2)
    );
    assert_eq!(by_crm(store, &v2.crm_id).await.as_ref(), Some(&v2));
    assert_eq!(
        by_crm(store, &v1.crm_id).await,
        None,
        "the old CRM record no longer leads to the referral"
    );

    // And the old record is free for another referral.
    let other = sample_link(&ids.next("referral"), &v1.crm_id, 1);
    put(store, &other).await;
    assert_eq!(by_crm(store, &v1.crm_id).await, Some(other));
}

/// A CRM record already linked to one referral cannot be linked to a second.
pub async fn a_crm_record_is_linked_to_one_referral(store: &dyn Store, ids: &Ids) {
    let crm_id = ids.next("crm");
    let first = sample_link(&ids.next("referral"), &crm_id, 1);
    put(store, &first).await;

    let second = sample_link(&ids.next("referral"), &crm_id, 1);
    assert_conflict(
        store.put_link(&second).await,
        "linking a CRM record that another referral holds",
    );
    assert_eq!(by_crm(store, &crm_id).await.as_ref(), Some(&first));
    assert_eq!(by_referral(store, &second.referral_id).await, None);

    // Nor by moving an existing link onto it.
    let elsewhere = sample_link(&ids.next("referral"), &ids.next("crm"), 1);
    put(store, &elsewhere).await;
    let onto_taken = Link {
        crm_id: crm_id.clone(),
        ..next_version(&elsewhere, "re-link onto a taken record")
    };
    assert_conflict(
        store.put_link(&onto_taken).await,
        "re-linking onto a CRM record that another referral holds",
    );
    assert_eq!(by_crm(store, &crm_id).await.as_ref(), Some(&first));
    assert_eq!(
        by_referral(store, &elsewhere.referral_id).await,
        Some(elsewhere)
    );
}

/// Two writers of the same next version at the same time: exactly one wins, and the stored link
/// is the winner's.
pub async fn concurrent_writers_of_one_version_one_wins(store: &dyn Store, ids: &Ids) {
    let v1 = sample_link(&ids.next("referral"), &ids.next("crm"), 1);
    put(store, &v1).await;
    let a = next_version(&v1, "writer a");
    let b = next_version(&v1, "writer b");

    let (result_a, result_b) = tokio::join!(store.put_link(&a), store.put_link(&b));
    let stored = by_referral(store, &v1.referral_id).await;
    match (result_a, result_b) {
        (Ok(()), Err(StoreError::Conflict { .. })) => assert_eq!(stored, Some(a)),
        (Err(StoreError::Conflict { .. }), Ok(())) => assert_eq!(stored, Some(b)),
        other => panic!("expected exactly one winner and one Conflict, got {other:?}"),
    }
}

/// Two writers creating the same link at the same time: exactly one wins, and both lookups lead
/// to the winner's link.
pub async fn concurrent_first_writes_one_wins(store: &dyn Store, ids: &Ids) {
    let referral_id = ids.next("referral");
    let a = sample_link(&referral_id, &ids.next("crm"), 1);
    let b = sample_link(&referral_id, &ids.next("crm"), 1);

    let (result_a, result_b) = tokio::join!(store.put_link(&a), store.put_link(&b));
    let (winner, loser) = match (result_a, result_b) {
        (Ok(()), Err(StoreError::Conflict { .. })) => (a, b),
        (Err(StoreError::Conflict { .. }), Ok(())) => (b, a),
        other => panic!("expected exactly one winner and one Conflict, got {other:?}"),
    };
    assert_eq!(
        by_referral(store, &referral_id).await.as_ref(),
        Some(&winner)
    );
    assert_eq!(by_crm(store, &winner.crm_id).await.as_ref(), Some(&winner));
    assert_eq!(by_crm(store, &loser.crm_id).await, None);
}

/// Claimed → others see it in progress; completed → others skip it.
pub async fn a_claim_is_held_until_completed_then_skipped(store: &dyn Store, ids: &Ids) {
    let key = ids.next("command");
    let now = Utc::now();
    let until = now + Duration::minutes(5);

    assert_eq!(claim(store, &key, now, until).await, Claim::Acquired);
    assert_eq!(
        claim(store, &key, now + Duration::seconds(1), until).await,
        Claim::InProgress,
        "a second worker must wait while the first holds the key"
    );

    ok(
        store.complete(&key, now + Duration::hours(1)).await,
        "complete",
    );
    assert_eq!(
        claim(store, &key, now + Duration::minutes(10), until).await,
        Claim::Completed,
        "a completed key is skipped, even after the in-progress window"
    );
    assert_eq!(
        claim(store, &ids.next("command"), now, until).await,
        Claim::Acquired,
        "other keys are unaffected"
    );
}

/// A completed key is skipped until its expiry, then claimable again.
pub async fn a_completed_key_can_be_claimed_after_it_expires(store: &dyn Store, ids: &Ids) {
    let key = ids.next("command");
    let now = Utc::now();
    assert_eq!(
        claim(store, &key, now, now + Duration::minutes(5)).await,
        Claim::Acquired
    );
    let expires_at = now + Duration::hours(1);
    ok(store.complete(&key, expires_at).await, "complete");

    let before = expires_at - Duration::minutes(1);
    assert_eq!(
        claim(store, &key, before, before + Duration::minutes(5)).await,
        Claim::Completed
    );
    let after = expires_at + Duration::minutes(1);
    assert_eq!(
        claim(store, &key, after, after + Duration::minutes(5)).await,
        Claim::Acquired
    );
    assert_eq!(
        claim(store, &key, after, after + Duration::minutes(5)).await,
        Claim::InProgress,
        "the new claim holds the key again"
    );
}

/// A worker that crashed or timed out never completes: once its window passes, another takes over.
pub async fn an_expired_in_progress_claim_is_taken_over(store: &dyn Store, ids: &Ids) {
    let key = ids.next("command");
    let now = Utc::now();
    let until = now + Duration::minutes(5);
    assert_eq!(claim(store, &key, now, until).await, Claim::Acquired);

    let still_held = until - Duration::minutes(1);
    assert_eq!(
        claim(store, &key, still_held, still_held + Duration::minutes(5)).await,
        Claim::InProgress
    );
    let later = until + Duration::minutes(1);
    let new_until = later + Duration::minutes(5);
    assert_eq!(
        claim(store, &key, later, new_until).await,
        Claim::Acquired,
        "an in-progress claim past its window is taken over"
    );
    assert_eq!(
        claim(store, &key, later + Duration::minutes(1), new_until).await,
        Claim::InProgress,
        "the takeover holds the key for its own window"
    );
}

/// A released claim (the work failed) can be claimed again at once by the retry.
pub async fn a_released_claim_is_free_at_once(store: &dyn Store, ids: &Ids) {
    let key = ids.next("command");
    let now = Utc::now();
    let until = now + Duration::minutes(5);
    assert_eq!(claim(store, &key, now, until).await, Claim::Acquired);
    ok(store.release(&key).await, "release");
    assert_eq!(claim(store, &key, now, until).await, Claim::Acquired);

    // Releasing a key nobody holds is harmless.
    ok(
        store.release(&ids.next("command")).await,
        "release of an unknown key",
    );
}

/// The journal lists a referral's entries newest first, at most `limit`, and nobody else's.
pub async fn the_journal_is_newest_first_and_limited(store: &dyn Store, ids: &Ids) {
    let referral_id = ids.next("Referral");
    // A link under the same referral must not show up as a journal line.
    put(store, &sample_link(&referral_id, &ids.next("crm"), 1)).await;

    let start = Utc::now();
    let entry = |minutes: i64, outcome: Outcome| JournalEntry {
        at: start + Duration::minutes(minutes) + Duration::nanoseconds(123),
        referral_id: referral_id.clone(),
        outcome,
        message: format!("step {minutes}"),
    };
    // Appended out of order: the journal orders by time, not by arrival.
    let entries = [
        entry(2, Outcome::Failed),
        entry(0, Outcome::Synced),
        entry(4, Outcome::Synced),
        entry(1, Outcome::Skipped),
        entry(3, Outcome::Synced),
    ];
    for e in &entries {
        ok(store.append_journal(e).await, "append_journal");
    }
    let other = JournalEntry {
        referral_id: ids.next("referral"),
        ..entry(5, Outcome::Synced)
    };
    ok(store.append_journal(&other).await, "append_journal");

    let newest_three = ok(store.journal(&referral_id, 3).await, "journal");
    let messages: Vec<&str> = newest_three.iter().map(|e| e.message.as_str()).collect();
    assert_eq!(messages, ["step 4", "step 3", "step 2"]);
    assert_eq!(newest_three[0], entries[2], "entries round-trip unchanged");
    assert_eq!(newest_three[2], entries[0]);

    let all = ok(store.journal(&referral_id, 100).await, "journal");
    let messages: Vec<&str> = all.iter().map(|e| e.message.as_str()).collect();
    assert_eq!(messages, ["step 4", "step 3", "step 2", "step 1", "step 0"]);

    assert_eq!(
        ok(
            store.journal(&referral_id.to_ascii_lowercase(), 100).await,
            "journal"
        )
        .len(),
        5,
        "referral ids are found whatever their case"
    );
    assert!(ok(store.journal(&referral_id, 0).await, "journal").is_empty());
    assert_eq!(
        ok(store.journal(&other.referral_id, 10).await, "journal"),
        [other]
    );
    assert!(ok(store.journal(&ids.next("referral"), 10).await, "journal").is_empty());
}

/// A cursor reads back what was last written, and nothing before the first write.
pub async fn cursors_round_trip_and_overwrite(store: &dyn Store, ids: &Ids) {
    let name = ids.next("dataverse-opportunities");
    assert_eq!(ok(store.cursor(&name).await, "cursor"), None);

    ok(store.put_cursor(&name, "token-1").await, "put_cursor");
    assert_eq!(
        ok(store.cursor(&name).await, "cursor").as_deref(),
        Some("token-1")
    );
    let long = format!("https://example.invalid/delta?token={}", "x".repeat(2000));
    ok(store.put_cursor(&name, &long).await, "put_cursor");
    assert_eq!(ok(store.cursor(&name).await, "cursor"), Some(long));

    assert_eq!(
        ok(store.cursor(&ids.next("other")).await, "cursor"),
        None,
        "cursors are independent"
    );
}

/// Timers: only due ones come back, soonest first; a timer put again under its key moves; a
/// deleted one never comes back.
pub async fn timers_come_due_in_order_and_are_replaced_by_key(store: &dyn Store, ids: &Ids) {
    let now = Utc::now();
    let timer = |key: &str, due: DateTime<Utc>| Timer {
        key: key.to_owned(),
        due,
        crm_id: format!("crm-of-{key}"),
        referral_id: Some(format!("referral-of-{key}")),
    };
    let (soon, sooner, later) = (ids.next("won"), ids.next("won"), ids.next("won"));
    ok(
        store
            .put_timer(&timer(&soon, now - Duration::minutes(1)))
            .await,
        "put_timer",
    );
    ok(
        store
            .put_timer(&timer(&sooner, now - Duration::minutes(2)))
            .await,
        "put_timer",
    );
    ok(
        store
            .put_timer(&timer(&later, now + Duration::hours(1)))
            .await,
        "put_timer",
    );
    let ours = |timers: Vec<Timer>| -> Vec<Timer> {
        timers
            .into_iter()
            .filter(|t| [&soon, &sooner, &later].contains(&&t.key))
            .collect()
    };
    let due = ours(ok(store.due_timers(now, 1000).await, "due_timers"));
    assert_eq!(
        due,
        vec![
            timer(&sooner, now - Duration::minutes(2)),
            timer(&soon, now - Duration::minutes(1))
        ],
        "only the due timers, soonest first, with every field"
    );

    // Put again under its key: moved, not doubled.
    ok(
        store
            .put_timer(&timer(&soon, now + Duration::hours(2)))
            .await,
        "put_timer",
    );
    let due = ours(ok(store.due_timers(now, 1000).await, "due_timers"));
    assert_eq!(
        due.iter().map(|t| t.key.clone()).collect::<Vec<_>>(),
        vec![sooner.clone()]
    );
    let due = ours(ok(
        store.due_timers(now + Duration::hours(3), 1000).await,
        "due_timers",
    ));
    assert_eq!(
        due.iter().map(|t| t.key.clone()).collect::<Vec<_>>(),
        vec![sooner.clone(), later.clone(), soon.clone()]
    );

    ok(store.delete_timer(&sooner).await, "delete_timer");
    ok(
        store.delete_timer(&ids.next("never-put")).await,
        "deleting a missing timer",
    );
    let due = ours(ok(
        store.due_timers(now + Duration::hours(3), 1000).await,
        "due_timers",
    ));
    assert_eq!(
        due.iter().map(|t| t.key.clone()).collect::<Vec<_>>(),
        vec![later, soon]
    );
}

/// What the sync remembers beside the projection comes back as written, and an emptied state
/// reads as empty.
pub async fn a_links_state_round_trips(store: &dyn Store, ids: &Ids) {
    let referral_id = ids.next("referral");
    let mut link = sample_link(&referral_id, &ids.next("crm"), 1);
    link.state = LinkState {
        microsoft_invited: true,
        won_held_until: Utc.timestamp_opt(1_750_100_000, 5).single(),
        crm_seen: [(
            "deal value".to_owned(),
            Seen {
                value: "125000.5".to_owned(),
                at: Utc
                    .timestamp_opt(1_750_000_100, 7)
                    .single()
                    .unwrap_or_default(),
            },
        )]
        .into(),
        pc_seen: [(
            "notes".to_owned(),
            Seen {
                value: "'line one'".to_owned(),
                at: Utc
                    .timestamp_opt(1_750_000_200, 9)
                    .single()
                    .unwrap_or_default(),
            },
        )]
        .into(),
        reported_conflicts: vec!["deal value: 1 / 2".to_owned()],
        related_id: Some(format!("microsoft-{referral_id}")),
        related_etag: Some("\"etag-of-microsofts\"".to_owned()),
    };
    ok(store.put_link(&link).await, "put_link");
    assert_eq!(by_referral(store, &referral_id).await.as_ref(), Some(&link));
    let emptied = Link {
        state: LinkState::default(),
        version: 2,
        ..link.clone()
    };
    ok(store.put_link(&emptied).await, "put_link");
    assert_eq!(by_referral(store, &referral_id).await, Some(emptied));
}

/// A cursor put with an expiry reads as its value until then and as nothing after; a plain
/// `put_cursor` of the same name keeps it for good again.
pub async fn an_expired_cursor_reads_nothing_and_a_fresh_one_its_value(
    store: &dyn Store,
    ids: &Ids,
) {
    let now = Utc::now();
    let (fresh, expired) = (ids.next("reconciled"), ids.next("reconciled"));
    ok(
        store
            .put_cursor_until(&fresh, "etag-1", now + Duration::hours(1))
            .await,
        "put_cursor_until",
    );
    ok(
        store
            .put_cursor_until(&expired, "etag-2", now - Duration::minutes(1))
            .await,
        "put_cursor_until",
    );
    assert_eq!(
        ok(store.cursor(&fresh).await, "cursor").as_deref(),
        Some("etag-1"),
        "a cursor before its expiry reads its value"
    );
    assert_eq!(
        ok(store.cursor(&expired).await, "cursor"),
        None,
        "a cursor past its expiry reads nothing"
    );

    ok(store.put_cursor(&expired, "etag-3").await, "put_cursor");
    assert_eq!(
        ok(store.cursor(&expired).await, "cursor").as_deref(),
        Some("etag-3"),
        "a plain put_cursor keeps the cursor for good"
    );

    // And an expiry put later replaces the permanent value's.
    let permanent = ids.next("cursor");
    ok(store.put_cursor(&permanent, "v1").await, "put_cursor");
    ok(
        store
            .put_cursor_until(&permanent, "v2", now - Duration::seconds(5))
            .await,
        "put_cursor_until",
    );
    assert_eq!(ok(store.cursor(&permanent).await, "cursor"), None);
}

/// A journal entry whose `at` lies further back than the retention is not answered; one just
/// inside it is, and `limit` counts only the entries still kept.
pub async fn journal_entries_past_the_retention_are_not_answered(store: &dyn Store, ids: &Ids) {
    let retention = Duration::from_std(DEFAULT_RETENTION).unwrap_or_else(|err| panic!("{err}"));
    let now = Utc::now();
    let referral_id = ids.next("Referral");
    let entry = |at: DateTime<Utc>, message: &str| JournalEntry {
        at,
        referral_id: referral_id.clone(),
        outcome: Outcome::Synced,
        message: message.to_owned(),
    };
    let kept = [
        entry(now, "today"),
        entry(
            now - retention + Duration::days(1),
            "a day inside the retention",
        ),
    ];
    let expired = [
        entry(
            now - retention - Duration::days(1),
            "a day past the retention",
        ),
        entry(now - retention - Duration::days(2), "two days past"),
        entry(now - retention - Duration::days(400), "long ago"),
    ];
    for e in expired.iter().chain(&kept) {
        ok(store.append_journal(e).await, "append_journal");
    }

    assert_eq!(
        ok(store.journal(&referral_id, 10).await, "journal"),
        kept,
        "only the entries inside the retention, newest first"
    );
    assert_eq!(
        ok(store.journal(&referral_id, 2).await, "journal"),
        kept,
        "a limit as large as the kept entries answers them all"
    );
    assert_eq!(
        ok(store.journal(&referral_id, 1).await, "journal"),
        kept[..1]
    );

    let only_old = ids.next("referral");
    ok(
        store
            .append_journal(&JournalEntry {
                referral_id: only_old.clone(),
                ..expired[0].clone()
            })
            .await,
        "append_journal",
    );
    assert!(ok(store.journal(&only_old, 10).await, "journal").is_empty());
}

/// Paging through every link with `links`: ordered by lowercased referral id, each link once,
/// none left out, `after` in any case, and a short page only at the end.
pub async fn links_are_listed_in_pages_in_order(store: &dyn Store, ids: &Ids) {
    const LINKS: usize = 25;
    const PAGE: usize = 10;
    let mut ours = Vec::new();
    for i in 0..LINKS {
        let mut link = sample_link(&ids.next("Listed"), &ids.next("crm"), 1);
        if i % 3 == 0 {
            link.last_error = Some(format!("error {i}"));
        }
        put(store, &link).await;
        ours.push(link);
    }
    // A second version must be listed as such, not as what was first written.
    let changed = next_version(&ours[7], "changed");
    put(store, &changed).await;
    ours[7] = changed;
    ours.sort_by_key(|link| link.referral_id.to_ascii_lowercase());

    let mut listed: Vec<Link> = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let page = ok(store.links(after.as_deref(), PAGE).await, "links");
        assert!(page.len() <= PAGE, "a page holds at most the limit");
        let done = page.len() < PAGE;
        after = page.last().map(|link| link.referral_id.clone());
        listed.extend(page);
        if done || after.is_none() {
            break;
        }
        assert!(
            listed.len() <= 100 * 1000,
            "the listing does not end: a page comes back again"
        );
    }
    let keys: Vec<String> = listed
        .iter()
        .map(|link| link.referral_id.to_ascii_lowercase())
        .collect();
    assert!(
        keys.windows(2).all(|pair| pair[0] < pair[1]),
        "every link once, ordered by lowercased referral id"
    );
    let found: Vec<Link> = listed
        .into_iter()
        .filter(|link| ours.iter().any(|o| o.referral_id == link.referral_id))
        .collect();
    assert_eq!(found, ours, "each of ours, as last written, none left out");
    assert_eq!(
        found
            .iter()
            .filter(|link| link.last_error.is_some())
            .count(),
        10,
        "the links with an error, for the summary"
    );

    // `after` is a referral id in any case, and need not be a link's.
    let from_fourth = ok(
        store
            .links(Some(&ours[3].referral_id.to_ascii_uppercase()), 2)
            .await,
        "links after an upper-case referral id",
    );
    let from_fourth: Vec<&str> = from_fourth.iter().map(|l| l.referral_id.as_str()).collect();
    let next_two: Vec<&str> = ours[4..6].iter().map(|l| l.referral_id.as_str()).collect();
    assert_eq!(
        from_fourth, next_two,
        "the page after {}",
        ours[3].referral_id
    );
    let between = format!("{}-", ours[3].referral_id);
    let from_between = ok(store.links(Some(&between), 1).await, "links");
    assert_eq!(
        from_between.first().map(|l| l.referral_id.as_str()),
        Some(next_two[0]),
        "after an id that is no link's"
    );
    assert!(ok(store.links(None, 0).await, "links with limit 0").is_empty());
}
