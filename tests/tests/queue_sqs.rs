//! `SqsQueue` against a FIFO queue in moto with the real SDK client: what the ingress and the
//! poller send comes back out, parsed, in order per referral and once per deduplication id.
//!
//! Every test starts its own `Moto` (see `aws_harness.rs`); without `moto_server` they fail with
//! the install hint.

use std::sync::Arc;

use aws_sdk_sqs::types::{Message, MessageSystemAttributeName, QueueAttributeName};
use cosell_e2e::queue_contract::{self, QueueUnderTest};
use cosell_localaws::Moto;
use cosell_shared::queue::sqs::SqsQueue;
use cosell_shared::queue::{DeadLetters, Outgoing, Queue, QueueConsumer, QueueError, SyncCommand};

async fn moto() -> Moto {
    Moto::start()
        .await
        .unwrap_or_else(|err| panic!("cannot start moto: {err}"))
}

/// A FIFO queue like `SyncQueue` in `template.yaml`: explicit deduplication ids only.
async fn fifo_queue(sqs: &aws_sdk_sqs::Client, name: &str) -> String {
    sqs.create_queue()
        .queue_name(name)
        .attributes(QueueAttributeName::FifoQueue, "true")
        .attributes(QueueAttributeName::ContentBasedDeduplication, "false")
        .attributes(QueueAttributeName::VisibilityTimeout, "300")
        .send()
        .await
        .expect("create_queue")
        .queue_url
        .expect("create_queue returns a queue URL")
}

fn pc_changed(referral_id: &str, event: &str) -> SyncCommand {
    SyncCommand::PartnerCenterChanged {
        referral_id: referral_id.to_owned(),
        event: event.to_owned(),
    }
}

async fn send(queue: &SqsQueue, command: SyncCommand, dedup_id: &str) {
    queue
        .send(&Outgoing {
            command,
            dedup_id: dedup_id.to_owned(),
        })
        .await
        .unwrap_or_else(|err| panic!("send with dedup id {dedup_id:?}: {err}"));
}

/// Receives and deletes until the queue is empty, as the processor would; returns the messages
/// in the order received. FIFO holds a group's next message back while one is in flight, so each
/// batch is deleted before the next receive.
async fn drain(sqs: &aws_sdk_sqs::Client, queue_url: &str) -> Vec<Message> {
    let mut received = Vec::new();
    for _ in 0..50 {
        let batch = sqs
            .receive_message()
            .queue_url(queue_url)
            .max_number_of_messages(10)
            .wait_time_seconds(0)
            .message_system_attribute_names(MessageSystemAttributeName::MessageGroupId)
            .message_system_attribute_names(MessageSystemAttributeName::MessageDeduplicationId)
            .send()
            .await
            .expect("receive_message")
            .messages
            .unwrap_or_default();
        if batch.is_empty() {
            return received;
        }
        for message in batch {
            sqs.delete_message()
                .queue_url(queue_url)
                .receipt_handle(message.receipt_handle().expect("a receipt handle"))
                .send()
                .await
                .expect("delete_message");
            received.push(message);
        }
    }
    panic!("queue not drained after 50 receives");
}

fn command_of(message: &Message) -> SyncCommand {
    let body = message.body().expect("messages have a body");
    SyncCommand::from_body(body).unwrap_or_else(|err| panic!("body {body:?} does not parse: {err}"))
}

fn attribute(message: &Message, name: MessageSystemAttributeName) -> &str {
    message
        .attributes()
        .and_then(|a| a.get(&name))
        .map(String::as_str)
        .unwrap_or_else(|| panic!("the {name:?} attribute was requested"))
}

fn group_of(message: &Message) -> &str {
    attribute(message, MessageSystemAttributeName::MessageGroupId)
}

/// What SQS takes as a group or deduplication id: 1 to 128 printable ASCII characters.
fn is_valid_sqs_id(id: &str) -> bool {
    (1..=128).contains(&id.len()) && id.bytes().all(|b| b.is_ascii_graphic())
}

#[tokio::test]
async fn each_referrals_commands_come_back_in_the_order_sent() {
    let moto = moto().await;
    let sqs = moto.sqs();
    let queue_url = fifo_queue(&sqs, "sync-order.fifo").await;
    let queue = SqsQueue::new(moto.sqs(), &queue_url);

    let sent = [
        pc_changed("Referral-A", "referral-created"),
        pc_changed("referral-b", "referral-created"),
        pc_changed("REFERRAL-A", "referral-updated"),
        SyncCommand::CrmChanged {
            crm_id: "0065g00000XyZ12AAB".to_owned(),
            referral_id: None,
            seen: None,
        },
        pc_changed("referral-b", "related-referral-updated"),
        pc_changed("referral-a", "related-referral-created"),
    ];
    for (n, command) in sent.iter().enumerate() {
        send(&queue, command.clone(), &format!("command-{n}")).await;
    }

    let received = drain(&sqs, &queue_url).await;
    assert_eq!(received.len(), sent.len(), "each command exactly once");
    for message in &received {
        assert_eq!(
            group_of(message),
            command_of(message).group(),
            "the message group is the command's"
        );
    }
    let of_group = |group: &str| -> Vec<SyncCommand> {
        received
            .iter()
            .filter(|m| group_of(m) == group)
            .map(command_of)
            .collect()
    };
    // Referral ids differ in case between payloads but are one referral, hence one group.
    assert_eq!(
        of_group("referral:referral-a"),
        [sent[0].clone(), sent[2].clone(), sent[5].clone()]
    );
    assert_eq!(
        of_group("referral:referral-b"),
        [sent[1].clone(), sent[4].clone()]
    );
    assert_eq!(of_group("crm:0065g00000XyZ12AAB"), [sent[3].clone()]);
}

#[tokio::test]
async fn the_same_dedup_id_is_delivered_once() {
    let moto = moto().await;
    let sqs = moto.sqs();
    let queue_url = fifo_queue(&sqs, "sync-dedup.fifo").await;
    let queue = SqsQueue::new(moto.sqs(), &queue_url);

    // A webhook delivered twice: the ingress enqueues it twice with one id.
    let first = pc_changed("referral-1", "referral-updated");
    send(&queue, first.clone(), "referral-1:etag-7").await;
    send(
        &queue,
        pc_changed("referral-1", "referral-updated-again"),
        "referral-1:etag-7",
    )
    .await;

    let received = drain(&sqs, &queue_url).await;
    let commands: Vec<SyncCommand> = received.iter().map(command_of).collect();
    assert_eq!(commands, [first]);
    assert_eq!(
        attribute(
            &received[0],
            MessageSystemAttributeName::MessageDeduplicationId
        ),
        "referral-1:etag-7",
        "an id SQS accepts is sent as it is"
    );
}

#[tokio::test]
async fn long_or_odd_dedup_ids_are_accepted_and_still_deduplicate() {
    let moto = moto().await;
    let sqs = moto.sqs();
    let queue_url = fifo_queue(&sqs, "sync-odd-ids.fifo").await;
    let queue = SqsQueue::new(moto.sqs(), &queue_url);

    // Longer than SQS's 128 characters, with spaces and non-ASCII that SQS refuses as they are.
    let odd = format!("Référence client {}", "x".repeat(300));
    let odd_command = pc_changed("referral-odd", "referral-created");
    send(&queue, odd_command.clone(), &odd).await;
    send(&queue, pc_changed("referral-odd", "duplicate"), &odd).await;
    // A different odd id is a different message.
    let other_command = pc_changed("referral-odd", "referral-updated");
    send(&queue, other_command.clone(), &format!("{odd}!")).await;

    let received = drain(&sqs, &queue_url).await;
    let commands: Vec<SyncCommand> = received.iter().map(command_of).collect();
    assert_eq!(commands, [odd_command, other_command]);
    // moto does not enforce SQS's limits on the id, so check what actually went over the wire.
    for message in &received {
        let dedup_id = attribute(message, MessageSystemAttributeName::MessageDeduplicationId);
        assert!(
            is_valid_sqs_id(dedup_id),
            "real SQS would refuse the deduplication id {dedup_id:?}"
        );
    }
}

#[tokio::test]
async fn the_dead_letter_queue_is_found_through_the_redrive_policy_and_counted() {
    let moto = moto().await;
    let sqs = moto.sqs();
    let (main_url, dlq_url) = cosell_e2e::stack::create_fifo_queues(
        &sqs,
        "sync-with-dlq",
        std::time::Duration::from_secs(30),
        3,
    )
    .await;
    send(
        &SqsQueue::new(moto.sqs(), &dlq_url),
        pc_changed("referral-dead", "referral-created"),
        "dead-1",
    )
    .await;

    let main = SqsQueue::new(moto.sqs(), &main_url);
    let dlq = main
        .dead_letter_queue()
        .await
        .expect("the redrive policy reads")
        .expect("the queue has a dead-letter queue");
    assert_eq!(dlq.url(), dlq_url);
    assert_eq!(dlq.depth().await.expect("depth").total(), 1);

    let lonely = SqsQueue::new(moto.sqs(), fifo_queue(&sqs, "sync-no-dlq.fifo").await);
    assert!(lonely.dead_letter_queue().await.expect("reads").is_none());
}

#[tokio::test]
async fn dead_letters_are_peeked_and_redriven_into_their_group() {
    let moto = moto().await;
    let sqs = moto.sqs();
    let spec = queue_contract::REDRIVE;
    let (main_url, dlq_url) = cosell_e2e::stack::create_fifo_queues(
        &sqs,
        spec.name,
        spec.visibility_timeout,
        spec.max_receive_count,
    )
    .await;
    let main = Arc::new(SqsQueue::new(sqs.clone(), &main_url));
    let dead = main
        .dead_letters()
        .await
        .expect("the redrive policy reads")
        .expect("the queue has a dead-letter queue");
    assert_eq!(dead.url(), dlq_url);
    assert_eq!(dead.source_url(), main_url);
    assert!(dead.describe().contains(&dlq_url), "{}", dead.describe());
    let q = QueueUnderTest {
        queue: main.clone(),
        consumer: main,
        dead_letters: Arc::new(SqsQueue::new(sqs, &dlq_url)),
        visibility_timeout: spec.visibility_timeout,
        max_receive_count: spec.max_receive_count,
    };
    queue_contract::dead_letters_are_peeked_and_redriven(&q, &dead).await;

    let lonely = SqsQueue::new(
        moto.sqs(),
        fifo_queue(&moto.sqs(), "redrive-no-dlq.fifo").await,
    );
    assert!(lonely.dead_letters().await.expect("reads").is_none());
}

#[tokio::test]
async fn a_missing_queue_is_unavailable() {
    let moto = moto().await;
    let queue = SqsQueue::new(
        moto.sqs(),
        format!("{}/123456789012/no-such-queue.fifo", moto.endpoint()),
    );
    let result = queue
        .send(&Outgoing {
            command: pc_changed("referral-1", "referral-created"),
            dedup_id: "d-1".to_owned(),
        })
        .await;
    match result {
        Err(QueueError::Unavailable(message)) => assert!(
            message.contains("no-such-queue.fifo"),
            "the message names the queue: {message}"
        ),
        other => panic!("expected Unavailable, got {other:?}"),
    }
}

#[test]
fn a_body_that_is_not_a_sync_command_is_malformed() {
    for body in [
        "",
        "not json",
        "{}",
        r#"{"type":"partnerCenterChanged"}"#,
        r#"{"type":"somethingElse","crmId":"1"}"#,
        r#"[1,2,3]"#,
    ] {
        assert!(
            matches!(SyncCommand::from_body(body), Err(QueueError::Malformed(_))),
            "{body:?} should be Malformed"
        );
    }
    assert_eq!(
        SyncCommand::from_body(r#"{"type":"crmChanged","crmId":"abc"}"#),
        Ok(SyncCommand::CrmChanged {
            crm_id: "abc".to_owned(),
            referral_id: None,
            seen: None,
        })
    );
}
