//! The DynamoDB and SQS FIFO semantics the connector relies on, checked with
//! the real AWS SDK clients against moto in server mode.
//!
//! Every test starts its own `Moto` rather than sharing one per binary: an
//! instance costs about a second, and separate processes mean no cross-test
//! state and no SDK client outliving the per-test tokio runtime that owns its
//! connection pool. If `moto_server` is missing these tests fail (never skip)
//! with the install hint.

use std::collections::HashMap;
use std::time::Duration;

use aws_sdk_dynamodb::operation::put_item::PutItemError;
use aws_sdk_dynamodb::operation::update_item::UpdateItemError;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, AttributeValue, BillingMode, KeySchemaElement, KeyType,
    ScalarAttributeType,
};
use aws_sdk_sqs::types::{Message, QueueAttributeName};
use cosell_localaws::Moto;

/// Starts moto, failing the test with the error's message (the derived
/// `Debug` that `expect` prints would hide the install hint).
async fn moto() -> Moto {
    Moto::start()
        .await
        .unwrap_or_else(|err| panic!("cannot start moto: {err}"))
}

// ---------------------------------------------------------------- DynamoDB

async fn create_table(dynamodb: &aws_sdk_dynamodb::Client, name: &str) {
    dynamodb
        .create_table()
        .table_name(name)
        .attribute_definitions(
            AttributeDefinition::builder()
                .attribute_name("pk")
                .attribute_type(ScalarAttributeType::S)
                .build()
                .expect("attribute definition is complete"),
        )
        .key_schema(
            KeySchemaElement::builder()
                .attribute_name("pk")
                .key_type(KeyType::Hash)
                .build()
                .expect("key schema is complete"),
        )
        .billing_mode(BillingMode::PayPerRequest)
        .send()
        .await
        .expect("create_table");
    // No waiter: moto creates tables ACTIVE synchronously.
}

async fn get_item(
    dynamodb: &aws_sdk_dynamodb::Client,
    table: &str,
    pk: &str,
) -> HashMap<String, AttributeValue> {
    dynamodb
        .get_item()
        .table_name(table)
        .key("pk", AttributeValue::S(pk.to_owned()))
        .consistent_read(true)
        .send()
        .await
        .expect("get_item")
        .item
        .expect("item exists")
}

fn s(value: &str) -> AttributeValue {
    AttributeValue::S(value.to_owned())
}

fn n(value: u64) -> AttributeValue {
    AttributeValue::N(value.to_string())
}

#[tokio::test]
async fn dynamodb_second_create_if_absent_put_loses() {
    let moto = moto().await;
    let dynamodb = moto.dynamodb();
    let table = "referrals-conditional-put";
    create_table(&dynamodb, table).await;

    let put_if_absent = |owner: &str| {
        dynamodb
            .put_item()
            .table_name(table)
            .item("pk", s("referral#1"))
            .item("owner", s(owner))
            .condition_expression("attribute_not_exists(pk)")
    };

    put_if_absent("writer-a")
        .send()
        .await
        .expect("first writer wins on an empty table");

    let err = put_if_absent("writer-b")
        .send()
        .await
        .expect_err("second writer must lose the race");
    match err.into_service_error() {
        PutItemError::ConditionalCheckFailedException(_) => {}
        other => panic!("expected ConditionalCheckFailedException, got {other:?}"),
    }

    let item = get_item(&dynamodb, table, "referral#1").await;
    assert_eq!(item.get("owner"), Some(&s("writer-a")));
}

#[tokio::test]
async fn dynamodb_optimistic_version_update_loses_when_version_moved_on() {
    let moto = moto().await;
    let dynamodb = moto.dynamodb();
    let table = "referrals-versioned";
    create_table(&dynamodb, table).await;

    dynamodb
        .put_item()
        .table_name(table)
        .item("pk", s("opportunity#1"))
        .item("version", n(1))
        .item("stage", s("Prospect"))
        .send()
        .await
        .expect("seed item");

    // Both writers read version 1; whoever writes second must not clobber.
    let update_from_v1 = |stage: &str| {
        dynamodb
            .update_item()
            .table_name(table)
            .key("pk", s("opportunity#1"))
            .update_expression("SET #v = :next, #s = :stage")
            .condition_expression("#v = :expected")
            .expression_attribute_names("#v", "version")
            .expression_attribute_names("#s", "stage")
            .expression_attribute_values(":expected", n(1))
            .expression_attribute_values(":next", n(2))
            .expression_attribute_values(":stage", s(stage))
    };

    update_from_v1("Qualified")
        .send()
        .await
        .expect("first update sees the expected version");

    let err = update_from_v1("Closed Lost")
        .send()
        .await
        .expect_err("stale version must lose");
    match err.into_service_error() {
        UpdateItemError::ConditionalCheckFailedException(_) => {}
        other => panic!("expected ConditionalCheckFailedException, got {other:?}"),
    }

    let item = get_item(&dynamodb, table, "opportunity#1").await;
    assert_eq!(item.get("version"), Some(&n(2)));
    assert_eq!(item.get("stage"), Some(&s("Qualified")));
}

// ---------------------------------------------------------------- SQS FIFO

/// Long enough that nothing reappears by timeout while a test runs, so every
/// "not delivered" assertion is about FIFO group locking, not timing.
const LONG_VISIBILITY_SECS: &str = "300";

async fn create_fifo_queue(sqs: &aws_sdk_sqs::Client, name: &str) -> String {
    assert!(
        name.ends_with(".fifo"),
        "FIFO queue names must end in .fifo"
    );
    sqs.create_queue()
        .queue_name(name)
        .attributes(QueueAttributeName::FifoQueue, "true")
        .attributes(QueueAttributeName::ContentBasedDeduplication, "false")
        .attributes(QueueAttributeName::VisibilityTimeout, LONG_VISIBILITY_SECS)
        .send()
        .await
        .expect("create_queue")
        .queue_url
        .expect("create_queue returns a queue URL")
}

async fn send(
    sqs: &aws_sdk_sqs::Client,
    queue_url: &str,
    group: &str,
    body: &str,
    dedup_id: &str,
) -> String {
    sqs.send_message()
        .queue_url(queue_url)
        .message_group_id(group)
        .message_deduplication_id(dedup_id)
        .message_body(body)
        .send()
        .await
        .expect("send_message")
        .message_id
        .expect("send_message returns a MessageId")
}

async fn receive(sqs: &aws_sdk_sqs::Client, queue_url: &str, max: i32) -> Vec<Message> {
    sqs.receive_message()
        .queue_url(queue_url)
        .max_number_of_messages(max)
        // Short poll: moto answers from memory, a long poll would only slow
        // the "nothing deliverable" cases down.
        .wait_time_seconds(0)
        .send()
        .await
        .expect("receive_message")
        .messages
        .unwrap_or_default()
}

async fn delete(sqs: &aws_sdk_sqs::Client, queue_url: &str, message: &Message) {
    sqs.delete_message()
        .queue_url(queue_url)
        .receipt_handle(
            message
                .receipt_handle()
                .expect("received messages carry a receipt handle"),
        )
        .send()
        .await
        .expect("delete_message");
}

fn bodies(messages: &[Message]) -> Vec<&str> {
    messages
        .iter()
        .map(|m| m.body().expect("messages have a body"))
        .collect()
}

/// Receives in batches of up to 10, deleting each batch before asking for the
/// next (FIFO withholds a group's later messages while earlier ones are in
/// flight), until a receive comes back empty. Returns bodies in receipt order.
async fn drain(sqs: &aws_sdk_sqs::Client, queue_url: &str) -> Vec<String> {
    let mut received = Vec::new();
    // A bound instead of `loop` so a broken queue fails instead of hanging.
    for _ in 0..50 {
        let batch = receive(sqs, queue_url, 10).await;
        if batch.is_empty() {
            return received;
        }
        for message in &batch {
            delete(sqs, queue_url, message).await;
            received.push(message.body().expect("messages have a body").to_owned());
        }
    }
    panic!("queue not drained after 50 receives; got so far: {received:?}");
}

async fn approximate_visible(sqs: &aws_sdk_sqs::Client, queue_url: &str) -> u64 {
    let attributes = sqs
        .get_queue_attributes()
        .queue_url(queue_url)
        .attribute_names(QueueAttributeName::ApproximateNumberOfMessages)
        .send()
        .await
        .expect("get_queue_attributes")
        .attributes
        .unwrap_or_default();
    attributes
        .get(&QueueAttributeName::ApproximateNumberOfMessages)
        .expect("requested attribute is returned")
        .parse()
        .expect("ApproximateNumberOfMessages is a number")
}

#[tokio::test]
async fn sqs_fifo_keeps_send_order_within_each_group() {
    let moto = moto().await;
    let sqs = moto.sqs();
    let queue_url = create_fifo_queue(&sqs, "referrals-order.fifo").await;
    // moto derives queue URLs from the request's Host header, so they point
    // at this instance rather than a default host/port.
    assert!(
        queue_url.starts_with(moto.endpoint()),
        "queue URL {queue_url} should point at {}",
        moto.endpoint()
    );

    for (group, body) in [
        ("A", "A1"),
        ("B", "B1"),
        ("A", "A2"),
        ("B", "B2"),
        ("A", "A3"),
    ] {
        send(&sqs, &queue_url, group, body, body).await;
    }

    let received = drain(&sqs, &queue_url).await;
    let of_group = |prefix: &str| -> Vec<&str> {
        received
            .iter()
            .map(String::as_str)
            .filter(|body| body.starts_with(prefix))
            .collect()
    };
    assert_eq!(
        of_group("A"),
        ["A1", "A2", "A3"],
        "all received: {received:?}"
    );
    assert_eq!(of_group("B"), ["B1", "B2"], "all received: {received:?}");
    assert_eq!(received.len(), 5, "each message exactly once: {received:?}");
}

#[tokio::test]
async fn sqs_fifo_same_deduplication_id_is_delivered_once() {
    let moto = moto().await;
    let sqs = moto.sqs();
    let queue_url = create_fifo_queue(&sqs, "referrals-dedup.fifo").await;

    let first = send(&sqs, &queue_url, "A", "first", "referral#1:v1").await;
    // The duplicate send succeeds (that is what makes retries safe); moto
    // returns a fresh MessageId where real SQS returns the original's, so the
    // id is deliberately not compared.
    let second = send(&sqs, &queue_url, "A", "second", "referral#1:v1").await;
    assert!(!first.is_empty() && !second.is_empty());

    assert_eq!(approximate_visible(&sqs, &queue_url).await, 1);
    // Duplicates are only checked while both sends sit in the queue: moto
    // compares against messages not yet deleted, so re-sending the id after
    // the first copy was consumed is accepted, whereas real SQS drops it for
    // the full 5-minute window. Do not build a test on that case.
    assert_eq!(drain(&sqs, &queue_url).await, ["first"]);
}

#[tokio::test]
async fn sqs_fifo_in_flight_message_blocks_only_its_own_group() {
    let moto = moto().await;
    let sqs = moto.sqs();
    let queue_url = create_fifo_queue(&sqs, "referrals-inflight.fifo").await;

    for (group, body) in [("A", "A1"), ("A", "A2"), ("B", "B1")] {
        send(&sqs, &queue_url, group, body, body).await;
    }

    let a1 = receive(&sqs, &queue_url, 1).await;
    assert_eq!(bodies(&a1), ["A1"]);

    // A1 is in flight (received, not deleted, 300 s visibility): group A is
    // locked, group B is not.
    let while_locked = receive(&sqs, &queue_url, 10).await;
    assert_eq!(bodies(&while_locked), ["B1"]);

    delete(&sqs, &queue_url, &a1[0]).await;
    for message in &while_locked {
        delete(&sqs, &queue_url, message).await;
    }
    assert_eq!(drain(&sqs, &queue_url).await, ["A2"]);
}

// ---------------------------------------------------------------- harness

#[tokio::test]
async fn reset_wipes_tables_and_queues() {
    let moto = moto().await;
    let dynamodb = moto.dynamodb();
    let sqs = moto.sqs();
    create_table(&dynamodb, "referrals-reset").await;
    create_fifo_queue(&sqs, "referrals-reset.fifo").await;

    moto.reset().await.expect("reset");

    let tables = dynamodb
        .list_tables()
        .send()
        .await
        .expect("list_tables")
        .table_names
        .unwrap_or_default();
    assert!(tables.is_empty(), "tables left after reset: {tables:?}");
    let queues = sqs
        .list_queues()
        .send()
        .await
        .expect("list_queues")
        .queue_urls
        .unwrap_or_default();
    assert!(queues.is_empty(), "queues left after reset: {queues:?}");
}

#[tokio::test]
async fn dropping_moto_stops_the_server() {
    let moto = moto().await;
    let endpoint = moto.endpoint().to_owned();
    let address = endpoint
        .strip_prefix("http://")
        .expect("endpoint is plain http")
        .to_owned();
    assert!(address.starts_with("127.0.0.1:"), "endpoint: {endpoint}");
    tokio::net::TcpStream::connect(&address)
        .await
        .expect("moto accepts connections while alive");

    drop(moto);

    // Drop kills and reaps synchronously, so the port is closed right away;
    // the short grace only absorbs kernel socket teardown.
    let mut refused = false;
    for _ in 0..20 {
        if tokio::net::TcpStream::connect(&address).await.is_err() {
            refused = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(refused, "{endpoint} still accepts connections after drop");
}
