//! `DynamoStore` against moto with the real SDK client: the whole store contract, plus what only
//! the DynamoDB adapter can get wrong (unreadable items, a missing table, the TTL attribute).
//!
//! Every test starts its own `Moto` (see `aws_harness.rs`); without `moto_server` they fail with
//! the install hint.

use std::collections::HashMap;

use aws_sdk_dynamodb::types::AttributeValue;
use chrono::{Duration, Utc};
use cosell_e2e::stack::create_state_table;
use cosell_e2e::store_contract;
use cosell_localaws::Moto;
use cosell_shared::store::dynamodb::{DynamoStore, DynamoStoreConfig};
use cosell_shared::store::{Claim, DEFAULT_RETENTION, JournalEntry, Outcome, Store, StoreError};

const TABLE: &str = "cosell-state";

async fn moto() -> Moto {
    Moto::start()
        .await
        .unwrap_or_else(|err| panic!("cannot start moto: {err}"))
}

/// moto with the state table, and a store on it.
async fn store() -> (Moto, DynamoStore) {
    let moto = moto().await;
    let table = create_state_table(&moto.dynamodb()).await;
    assert_eq!(table, TABLE);
    let store = DynamoStore::new(
        moto.dynamodb(),
        DynamoStoreConfig {
            table_name: TABLE.to_owned(),
            retention: DEFAULT_RETENTION,
        },
    );
    (moto, store)
}

fn s(value: &str) -> AttributeValue {
    AttributeValue::S(value.to_owned())
}

async fn put_raw(dynamodb: &aws_sdk_dynamodb::Client, item: HashMap<String, AttributeValue>) {
    dynamodb
        .put_item()
        .table_name(TABLE)
        .set_item(Some(item))
        .send()
        .await
        .expect("put_item");
}

cosell_e2e::store_contract_tests!(store());

/// The whole suite in one store, as `run_all` offers it to other adapters: the promises hold
/// side by side, not only each in an empty table. Without the concurrent-writer promises, which
/// moto cannot keep in a busy table (see `run_all_but_concurrency`); they run on their own
/// tables above.
#[tokio::test]
async fn the_whole_contract_in_one_table() {
    let (_moto, store) = store().await;
    store_contract::run_all_but_concurrency(&store).await;
}

#[tokio::test]
async fn an_unreadable_item_is_corrupt_not_missing() {
    let (moto, store) = store().await;
    let dynamodb = moto.dynamodb();

    // A link written by hand (or by a future version) without the fields this one needs.
    put_raw(
        &dynamodb,
        HashMap::from([
            ("pk".to_owned(), s("REF#broken-referral")),
            ("sk".to_owned(), s("LINK")),
            ("referralId".to_owned(), s("broken-referral")),
            ("version".to_owned(), s("two")),
            ("synced".to_owned(), s("{not json")),
        ]),
    )
    .await;
    match store.link_by_referral("broken-referral").await {
        Err(StoreError::Corrupt(message)) => assert!(
            message.contains("REF#broken-referral"),
            "the message names the item: {message}"
        ),
        other => panic!("expected Corrupt, got {other:?}"),
    }

    // A reverse lookup that names no referral.
    put_raw(
        &dynamodb,
        HashMap::from([
            ("pk".to_owned(), s("CRM#broken-crm")),
            ("sk".to_owned(), s("LINK")),
            ("referralId".to_owned(), AttributeValue::N("7".to_owned())),
        ]),
    )
    .await;
    assert!(
        matches!(
            store.link_by_crm("broken-crm").await,
            Err(StoreError::Corrupt(_))
        ),
        "a reverse lookup without a referral id is corrupt"
    );

    // An idempotency record in a state nobody wrote.
    put_raw(
        &dynamodb,
        HashMap::from([
            ("pk".to_owned(), s("IDEM#broken-key")),
            ("sk".to_owned(), s("IDEM")),
            ("status".to_owned(), s("PAUSED")),
        ]),
    )
    .await;
    let now = Utc::now();
    assert!(matches!(
        store
            .claim("broken-key", now, now + Duration::minutes(5))
            .await,
        Err(StoreError::Corrupt(_))
    ));
}

#[tokio::test]
async fn a_missing_table_is_unavailable_and_says_which() {
    let moto = moto().await;
    let store = DynamoStore::new(
        moto.dynamodb(),
        DynamoStoreConfig {
            table_name: "no-such-table".to_owned(),
            retention: DEFAULT_RETENTION,
        },
    );
    match store.cursor("poller").await {
        Err(StoreError::Unavailable(message)) => assert!(
            message.contains("no-such-table"),
            "the message names the table: {message}"
        ),
        other => panic!("expected Unavailable, got {other:?}"),
    }
    let link = store_contract::sample_link("referral-1", "crm-1", 1);
    assert!(matches!(
        store.put_link(&link).await,
        Err(StoreError::Unavailable(_))
    ));
}

/// DynamoDB's TTL only reaps items whose `expiresAt` is epoch seconds: milliseconds would keep
/// every completed key forever.
#[tokio::test]
async fn idempotency_records_carry_their_ttl_in_epoch_seconds() {
    let (moto, store) = store().await;
    let now = Utc::now();
    assert_eq!(
        store
            .claim("command-1", now, now + Duration::minutes(5))
            .await,
        Ok(Claim::Acquired)
    );
    let expires_at = now + Duration::hours(24);
    store
        .complete("command-1", expires_at)
        .await
        .expect("complete");

    let item = moto
        .dynamodb()
        .get_item()
        .table_name(TABLE)
        .key("pk", s("IDEM#command-1"))
        .key("sk", s("IDEM"))
        .consistent_read(true)
        .send()
        .await
        .expect("get_item")
        .item
        .expect("the completed record exists");
    let ttl: i64 = match item.get("expiresAt") {
        Some(AttributeValue::N(n)) => n.parse().expect("expiresAt is a whole number"),
        other => panic!("expiresAt should be a number, got {other:?}"),
    };
    let wanted = expires_at.timestamp();
    assert!(
        ttl == wanted || ttl == wanted + 1,
        "expiresAt {ttl} should be {wanted} (rounded up to the second)"
    );
}

async fn expires_at(moto: &Moto, pk: &str, sk: &str) -> Option<i64> {
    let item = moto
        .dynamodb()
        .get_item()
        .table_name(TABLE)
        .key("pk", s(pk))
        .key("sk", s(sk))
        .consistent_read(true)
        .send()
        .await
        .expect("get_item")
        .item
        .unwrap_or_else(|| panic!("{pk} {sk} exists"));
    match item.get("expiresAt") {
        None => None,
        Some(AttributeValue::N(n)) => Some(n.parse().expect("expiresAt is a whole number")),
        other => panic!("expiresAt should be a number, got {other:?}"),
    }
}

/// Journal entries and expiring cursors carry TTL's `expiresAt` in epoch seconds; a plain
/// `put_cursor` takes it away again.
#[tokio::test]
async fn journal_entries_and_expiring_cursors_carry_their_ttl_in_epoch_seconds() {
    let (moto, store) = store().await;
    let at = Utc::now();
    store
        .append_journal(&JournalEntry {
            at,
            referral_id: "Referral-T".to_owned(),
            outcome: Outcome::Synced,
            message: "synced".to_owned(),
        })
        .await
        .expect("append_journal");
    let sk = moto
        .dynamodb()
        .query()
        .table_name(TABLE)
        .key_condition_expression("pk = :pk")
        .expression_attribute_values(":pk", s("REF#referral-t"))
        .send()
        .await
        .expect("query")
        .items()
        .first()
        .and_then(|item| item.get("sk"))
        .and_then(|sk| sk.as_s().ok())
        .cloned()
        .expect("the journal item");
    let retention = Duration::from_std(DEFAULT_RETENTION).expect("a retention");
    let wanted = (at + retention).timestamp();
    let ttl = expires_at(&moto, "REF#referral-t", &sk).await;
    assert!(
        ttl == Some(wanted) || ttl == Some(wanted + 1),
        "the journal's expiresAt {ttl:?} should be {wanted}"
    );

    let until = at + Duration::hours(2);
    store
        .put_cursor_until("reconciled:r", "etag", until)
        .await
        .expect("put_cursor_until");
    let ttl = expires_at(&moto, "CURSOR#reconciled:r", "CURSOR").await;
    assert!(
        ttl == Some(until.timestamp()) || ttl == Some(until.timestamp() + 1),
        "the cursor's expiresAt {ttl:?}"
    );
    store
        .put_cursor("reconciled:r", "etag-2")
        .await
        .expect("put_cursor");
    assert_eq!(
        expires_at(&moto, "CURSOR#reconciled:r", "CURSOR").await,
        None
    );
}

/// A cursor TTL has not deleted yet is still expired.
#[tokio::test]
async fn an_expired_cursor_that_ttl_left_behind_reads_nothing() {
    let (moto, store) = store().await;
    put_raw(
        &moto.dynamodb(),
        HashMap::from([
            ("pk".to_owned(), s("CURSOR#left-behind")),
            ("sk".to_owned(), s("CURSOR")),
            ("value".to_owned(), s("v")),
            (
                "expiresAt".to_owned(),
                AttributeValue::N((Utc::now().timestamp() - 60).to_string()),
            ),
        ]),
    )
    .await;
    assert_eq!(store.cursor("left-behind").await, Ok(None));
}

/// The listing follows Scan's `LastEvaluatedKey`: links of 100 KB each fill more than one 1 MB
/// page, and every one comes back, in order, with the other items left out.
#[tokio::test]
async fn links_are_listed_across_scan_pages() {
    let (moto, store) = store().await;
    let big = "x".repeat(100 * 1024);
    let mut ids = Vec::new();
    for i in 0..14 {
        let mut link =
            store_contract::sample_link(&format!("Referral-{i:02}"), &format!("crm-{i}"), 1);
        link.last_error = Some(big.clone());
        store.put_link(&link).await.expect("put_link");
        store
            .append_journal(&JournalEntry {
                at: Utc::now(),
                referral_id: link.referral_id.clone(),
                outcome: Outcome::Failed,
                message: "failed".to_owned(),
            })
            .await
            .expect("append_journal");
        ids.push(link.referral_id);
    }
    store
        .put_cursor("crm-opportunities", "t")
        .await
        .expect("put_cursor");

    let first_page = moto
        .dynamodb()
        .scan()
        .table_name(TABLE)
        .send()
        .await
        .expect("scan");
    assert!(
        first_page.last_evaluated_key.is_some(),
        "the table should take more than one Scan page"
    );

    let listed = store.links(None, 100).await.expect("links");
    let listed: Vec<&str> = listed.iter().map(|l| l.referral_id.as_str()).collect();
    assert_eq!(listed, ids);
    let tail = store.links(Some("referral-10"), 2).await.expect("links");
    let tail: Vec<&str> = tail.iter().map(|l| l.referral_id.as_str()).collect();
    assert_eq!(tail, ["Referral-11", "Referral-12"]);
}
