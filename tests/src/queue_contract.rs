//! The behaviour every queue adapter must show: an SQS FIFO queue with a redrive policy, as the
//! [`Queue`] and [`QueueConsumer`] doc comments promise. Each adapter's test binary runs the
//! checks against its own queues (SQS in moto, the embedded queue), so both are held to the same
//! contract.
//!
//! Every check gets fresh queues from the adapter's factory, as a [`QueueSpec`] asks, so a
//! message left behind by one never shows up in another's receive or depth. Checks wait for what
//! must happen with a generous deadline and never assert how long anything took. A check that a
//! message is *not* delivered looks for one long-poll second. Only the check of the visibility
//! timeout itself gets a short one ([`SHORT_VISIBILITY`]); the others get
//! [`LONG_VISIBILITY`], so no message comes back by timeout in the middle of a check however
//! slow the machine, and a release is seen to work long before the timeout would do the same.
//!
//! Depth is checked exactly: both adapters under test count exactly, unlike SQS proper, whose
//! counts are approximate.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use chrono::{DateTime, Utc};
use cosell_shared::queue::{
    DeadLetters, Delivery, Outgoing, Parked, Queue, QueueConsumer, QueueDepth, SyncCommand,
};
use tokio::time::Instant;

/// The visibility timeout of the queues for the check that waits for it to pass.
pub const SHORT_VISIBILITY: Duration = Duration::from_secs(2);
/// The visibility timeout of the queues for every other check: longer than any check takes.
pub const LONG_VISIBILITY: Duration = Duration::from_secs(120);
/// The maximum receive count the factory should configure: the checks receive a message up to
/// twice before they delete it, so it must be at least 2.
pub const MAX_RECEIVE_COUNT: u32 = 3;

/// What a check asks of the adapter's factory: a fresh queue with a dead-letter queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueueSpec {
    /// Unique per check; letters and hyphens, fit for a queue name.
    pub name: &'static str,
    /// The queues' visibility timeout.
    pub visibility_timeout: Duration,
    /// Receives before a message moves to the dead-letter queue.
    pub max_receive_count: u32,
}

/// One adapter's queues for one check: the queue, its consumer side, and its dead-letter queue.
pub struct QueueUnderTest {
    pub queue: Arc<dyn Queue>,
    pub consumer: Arc<dyn QueueConsumer>,
    pub dead_letters: Arc<dyn QueueConsumer>,
    /// The queue's visibility timeout, as configured (keep it short in tests, e.g. 2 s).
    pub visibility_timeout: Duration,
    /// Receives before a message moves to `dead_letters`; at least 2, since some checks receive
    /// a message twice.
    pub max_receive_count: u32,
}

/// One promise of the contract. [`run_except`] leaves some out for an adapter with a known
/// deviation, which its caller names in a comment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Check {
    SentComesBackParsedWithItsGroup,
    EachGroupInSendOrder,
    GroupHeldWhileOneInFlight,
    VisibleAgainAfterTheTimeout,
    ReleaseMakesVisible,
    DuplicateDeliveredOnce,
    DeadLetteredAfterMaxReceives,
    DepthCountsWaitingAndInFlight,
    StaleReceiptIsHarmless,
    StaleReceiptLeavesTheMessageAlone,
}

impl Check {
    pub const ALL: [Check; 10] = [
        Check::SentComesBackParsedWithItsGroup,
        Check::EachGroupInSendOrder,
        Check::GroupHeldWhileOneInFlight,
        Check::VisibleAgainAfterTheTimeout,
        Check::ReleaseMakesVisible,
        Check::DuplicateDeliveredOnce,
        Check::DeadLetteredAfterMaxReceives,
        Check::DepthCountsWaitingAndInFlight,
        Check::StaleReceiptIsHarmless,
        Check::StaleReceiptLeavesTheMessageAlone,
    ];

    /// The queues the check needs.
    pub fn spec(self) -> QueueSpec {
        QueueSpec {
            name: self.name(),
            visibility_timeout: if self == Check::VisibleAgainAfterTheTimeout {
                SHORT_VISIBILITY
            } else {
                LONG_VISIBILITY
            },
            max_receive_count: MAX_RECEIVE_COUNT,
        }
    }

    /// A short name, fit for a queue name (letters and hyphens).
    pub fn name(self) -> &'static str {
        match self {
            Check::SentComesBackParsedWithItsGroup => "round-trip",
            Check::EachGroupInSendOrder => "group-order",
            Check::GroupHeldWhileOneInFlight => "group-held",
            Check::VisibleAgainAfterTheTimeout => "visibility",
            Check::ReleaseMakesVisible => "release",
            Check::DuplicateDeliveredOnce => "dedup",
            Check::DeadLetteredAfterMaxReceives => "dead-letter",
            Check::DepthCountsWaitingAndInFlight => "depth",
            Check::StaleReceiptIsHarmless => "stale-harmless",
            Check::StaleReceiptLeavesTheMessageAlone => "stale-alone",
        }
    }
}

/// Runs every check, each on fresh queues from `fresh`.
pub async fn run_all<F>(fresh: F)
where
    F: AsyncFn(QueueSpec) -> QueueUnderTest,
{
    run_except(fresh, &[]).await;
}

/// Runs every check but `skipped`, each on fresh queues from `fresh`.
pub async fn run_except<F>(fresh: F, skipped: &[Check])
where
    F: AsyncFn(QueueSpec) -> QueueUnderTest,
{
    for check in Check::ALL {
        if skipped.contains(&check) {
            eprintln!("queue contract: {check:?} skipped");
            continue;
        }
        let spec = check.spec();
        let q = fresh(spec).await;
        assert_eq!(
            (q.visibility_timeout, q.max_receive_count),
            (spec.visibility_timeout, spec.max_receive_count),
            "the factory configures the queues as asked"
        );
        run(check, &q).await;
    }
}

/// Runs one check against `q`, panicking on the first broken promise.
pub async fn run(check: Check, q: &QueueUnderTest) {
    assert!(
        q.max_receive_count >= 2,
        "the contract receives some messages twice: configure max_receive_count >= 2"
    );
    assert!(
        q.visibility_timeout > LOOK,
        "a visibility timeout longer than a look for messages that must not come"
    );
    match check {
        Check::SentComesBackParsedWithItsGroup => sent_comes_back_parsed_with_its_group(q).await,
        Check::EachGroupInSendOrder => each_group_in_send_order(q).await,
        Check::GroupHeldWhileOneInFlight => group_held_while_one_in_flight(q).await,
        Check::VisibleAgainAfterTheTimeout => visible_again_after_the_timeout(q).await,
        Check::ReleaseMakesVisible => release_makes_visible(q).await,
        Check::DuplicateDeliveredOnce => duplicate_delivered_once(q).await,
        Check::DeadLetteredAfterMaxReceives => dead_lettered_after_max_receives(q).await,
        Check::DepthCountsWaitingAndInFlight => depth_counts_waiting_and_in_flight(q).await,
        Check::StaleReceiptIsHarmless => stale_receipt_is_harmless(q).await,
        Check::StaleReceiptLeavesTheMessageAlone => stale_receipt_leaves_the_message_alone(q).await,
    }
}

/// What is sent comes back once, parsed as sent, in the command's group, received once so far.
pub async fn sent_comes_back_parsed_with_its_group(q: &QueueUnderTest) {
    let sent = [
        pc_changed(&unique("Referral"), "referral-created"),
        SyncCommand::CrmChanged {
            crm_id: unique("0065g00000XyZ"),
            referral_id: None,
            seen: None,
        },
    ];
    for command in &sent {
        send(q, command.clone(), &unique("dedup")).await;
    }
    let received = drain(q, sent.len(), "both commands").await;
    for delivery in &received {
        let command = command_of(delivery);
        assert!(sent.contains(&command), "{command:?} was never sent");
        assert_eq!(
            delivery.group,
            command.group(),
            "the group is the command's"
        );
        assert_eq!(
            delivery.receive_count, 1,
            "{command:?} received once so far"
        );
    }
    assert_ne!(
        command_of(&received[0]),
        command_of(&received[1]),
        "each command once"
    );
    assert_ne!(received[0].message_id, received[1].message_id);
    assert_ne!(received[0].receipt, received[1].receipt);
    assert_empty(q, "both were deleted").await;
}

/// Commands of interleaved groups come back in send order within each group.
pub async fn each_group_in_send_order(q: &QueueUnderTest) {
    let (a, b, c) = (
        unique("referral-a"),
        unique("referral-b"),
        unique("referral-c"),
    );
    let sent = [
        pc_changed(&a, "a1"),
        pc_changed(&b, "b1"),
        pc_changed(&a, "a2"),
        pc_changed(&c, "c1"),
        pc_changed(&b, "b2"),
        pc_changed(&a, "a3"),
        pc_changed(&b, "b3"),
        pc_changed(&a, "a4"),
    ];
    for command in &sent {
        send(q, command.clone(), &unique("dedup")).await;
    }
    let received: Vec<SyncCommand> = drain(q, sent.len(), "all commands")
        .await
        .iter()
        .map(command_of)
        .collect();
    for referral in [&a, &b, &c] {
        let group = pc_changed(referral, "").group();
        let in_group = |commands: &[SyncCommand]| -> Vec<SyncCommand> {
            commands
                .iter()
                .filter(|command| command.group() == group)
                .cloned()
                .collect()
        };
        assert_eq!(
            in_group(&received),
            in_group(&sent),
            "group {group} in send order, each once"
        );
    }
}

/// While a group's message is in flight its next one waits, other groups do not; once the first
/// is deleted the next comes.
pub async fn group_held_while_one_in_flight(q: &QueueUnderTest) {
    let (a, b) = (unique("referral-a"), unique("referral-b"));
    send(q, pc_changed(&a, "a1"), &unique("dedup")).await;
    send(q, pc_changed(&a, "a2"), &unique("dedup")).await;
    let first = receive_within(q.consumer.as_ref(), 1, "a1").await;
    assert_eq!(events(&first), ["a1"], "a group's oldest first");

    send(q, pc_changed(&b, "b1"), &unique("dedup")).await;
    let other = receive_within(q.consumer.as_ref(), 10, "b1").await;
    assert_eq!(
        events(&other),
        ["b1"],
        "another group is delivered, a2 is not while a1 is in flight"
    );
    assert_nothing_delivered(q, "a1 and b1 are in flight, a2 waits behind a1").await;

    delete(q, &first[0]).await;
    let next = receive_within(q.consumer.as_ref(), 10, "a2 after a1 is deleted").await;
    assert_eq!(events(&next), ["a2"]);
    assert_eq!(next[0].receive_count, 1);
    delete(q, &next[0]).await;
    delete(q, &other[0]).await;
    assert_empty(q, "all deleted").await;
}

/// A received message not deleted comes back after the visibility timeout, received twice now,
/// under a new receipt; one released for longer stays in flight past the timeout.
pub async fn visible_again_after_the_timeout(q: &QueueUnderTest) {
    send(q, pc_changed(&unique("referral-a"), "a1"), &unique("dedup")).await;
    send(q, pc_changed(&unique("referral-b"), "b1"), &unique("dedup")).await;
    let mut first = Vec::new();
    while first.len() < 2 {
        first.extend(receive_within(q.consumer.as_ref(), 10, "a1 and b1").await);
    }
    // Both timeouts started before this.
    let all_received = Instant::now();
    first.sort_by_key(|delivery| events(std::slice::from_ref(delivery)));
    assert_eq!(events(&first), ["a1", "b1"]);
    assert!(first.iter().all(|delivery| delivery.receive_count == 1));
    let (a1, b1) = (&first[0], &first[1]);
    release(q, b1, Duration::from_secs(3600)).await;

    // a1's receiver "crashed": nothing deletes or releases it.
    let again = receive_within(q.consumer.as_ref(), 10, "a1 after its visibility timeout").await;
    assert_eq!(events(&again), ["a1"], "b1 was released for an hour");
    assert_eq!(again[0].message_id, a1.message_id, "the same message");
    assert_eq!(again[0].receive_count, 2);
    assert_ne!(again[0].receipt, a1.receipt, "a new receipt");
    delete(q, &again[0]).await;

    // SQS counts visibility in whole seconds: a second more makes sure b1's timeout is over.
    tokio::time::sleep_until(all_received + q.visibility_timeout + Duration::from_secs(1)).await;
    assert_nothing_delivered(q, "b1 is released for an hour, past its visibility timeout").await;
    assert_eq!(
        depth(q).await,
        QueueDepth {
            waiting: 0,
            in_flight: 1
        },
        "b1 is still in flight"
    );
    delete(q, b1).await;
    assert_empty(q, "deleted").await;
}

/// `release(…, 0)` makes a message visible at once, received once more.
pub async fn release_makes_visible(q: &QueueUnderTest) {
    send(q, pc_changed(&unique("referral"), "a1"), &unique("dedup")).await;
    let first = receive_within(q.consumer.as_ref(), 10, "a1").await;
    assert_eq!(events(&first), ["a1"]);
    release(q, &first[0], Duration::ZERO).await;
    let again = q
        .consumer
        .receive(10, LOOK)
        .await
        .unwrap_or_else(|err| panic!("receive after release: {err}"));
    assert_eq!(events(&again), ["a1"], "visible right after the release");
    assert_eq!(again[0].message_id, first[0].message_id);
    assert_eq!(again[0].receive_count, 2);
    delete(q, &again[0]).await;
    assert_empty(q, "deleted").await;
}

/// Sends with the same deduplication id within the window deliver the first one only.
pub async fn duplicate_delivered_once(q: &QueueUnderTest) {
    let referral = unique("referral");
    let dedup_id = unique("dedup");
    send(q, pc_changed(&referral, "first"), &dedup_id).await;
    // A redelivered webhook: same id, and here a different body to tell them apart.
    send(q, pc_changed(&referral, "duplicate"), &dedup_id).await;
    send(q, pc_changed(&referral, "second"), &unique("dedup")).await;
    let received = drain(q, 2, "the first and the second").await;
    assert_eq!(events(&received), ["first", "second"]);
    assert_nothing_delivered(q, "the duplicate was never added").await;
    assert_empty(q, "the duplicate was never added").await;
}

/// After `max_receive_count` receives without a delete the message moves to the dead-letter
/// queue at the next receive; its group goes on with the next message.
pub async fn dead_lettered_after_max_receives(q: &QueueUnderTest) {
    let referral = unique("referral");
    send(q, pc_changed(&referral, "poison"), &unique("dedup")).await;
    send(q, pc_changed(&referral, "next"), &unique("dedup")).await;
    for receive in 1..=q.max_receive_count {
        let batch = receive_within(q.consumer.as_ref(), 1, "the poison message").await;
        assert_eq!(events(&batch), ["poison"], "receive {receive}");
        assert_eq!(batch[0].receive_count, receive);
        release(q, &batch[0], Duration::ZERO).await;
    }
    let after = receive_within(q.consumer.as_ref(), 10, "the group's next message").await;
    assert_eq!(
        events(&after),
        ["next"],
        "the poison message is no longer delivered from the queue"
    );
    let dead = receive_within(q.dead_letters.as_ref(), 10, "the dead letter").await;
    assert_eq!(events(&dead), ["poison"]);
    assert_eq!(dead[0].group, pc_changed(&referral, "").group());
    q.dead_letters
        .delete(&dead[0].receipt)
        .await
        .unwrap_or_else(|err| panic!("delete the dead letter: {err}"));
    delete(q, &after[0]).await;
    assert_empty(q, "all deleted").await;
    assert_eq!(
        q.dead_letters
            .depth()
            .await
            .unwrap_or_else(|err| panic!("dead-letter depth: {err}"))
            .total(),
        0
    );
}

/// Depth counts waiting messages (held-back ones included) and in-flight ones apart.
pub async fn depth_counts_waiting_and_in_flight(q: &QueueUnderTest) {
    assert_eq!(depth(q).await, QueueDepth::default(), "a fresh queue");
    let (a, b) = (unique("referral-a"), unique("referral-b"));
    for command in [
        pc_changed(&a, "a1"),
        pc_changed(&a, "a2"),
        pc_changed(&b, "b1"),
    ] {
        send(q, command, &unique("dedup")).await;
    }
    assert_eq!(
        depth(q).await,
        QueueDepth {
            waiting: 3,
            in_flight: 0
        }
    );
    let received = receive_within(q.consumer.as_ref(), 1, "one message").await;
    assert_eq!(received.len(), 1);
    assert_eq!(
        depth(q).await,
        QueueDepth {
            waiting: 2,
            in_flight: 1
        },
        "the one received is in flight; a message held behind its group still waits"
    );
    delete(q, &received[0]).await;
    assert_eq!(
        depth(q).await,
        QueueDepth {
            waiting: 2,
            in_flight: 0
        }
    );
    drain(q, 2, "the rest").await;
}

/// Deleting or releasing with a stale receipt (the message was received again since, or
/// deleted) is not an error.
pub async fn stale_receipt_is_harmless(q: &QueueUnderTest) {
    send(q, pc_changed(&unique("referral"), "a1"), &unique("dedup")).await;
    let (stale, current) = receive_twice(q).await;
    delete(q, &stale).await;
    release(q, &stale, Duration::ZERO).await;
    delete(q, &current).await;
    delete(q, &current).await;
    release(q, &current, Duration::ZERO).await;
    assert_nothing_delivered(q, "deleted").await;
    assert_empty(q, "deleted").await;
}

/// A stale receipt neither deletes nor releases the message received again since: it stays in
/// flight under its current receipt.
pub async fn stale_receipt_leaves_the_message_alone(q: &QueueUnderTest) {
    send(q, pc_changed(&unique("referral"), "a1"), &unique("dedup")).await;
    let (stale, current) = receive_twice(q).await;
    release(q, &stale, Duration::ZERO).await;
    assert_nothing_delivered(q, "a stale release does not make the message visible").await;
    delete(q, &stale).await;
    assert_eq!(
        depth(q).await,
        QueueDepth {
            waiting: 0,
            in_flight: 1
        },
        "a stale delete does not delete the message"
    );
    delete(q, &current).await;
    assert_empty(q, "deleted with the current receipt").await;
}

/// The queues [`dead_letters_are_peeked_and_redriven`] asks for, apart from the contract's
/// checks since not every adapter reads its dead-letter queue.
pub const REDRIVE: QueueSpec = QueueSpec {
    name: "redrive",
    visibility_timeout: LONG_VISIBILITY,
    max_receive_count: MAX_RECEIVE_COUNT,
};

/// Messages that failed `max_receive_count` times are seen in the dead-letter queue `dead` (of
/// `q`), oldest first, by a peek that moves nothing. A redrive moves back only those picked, each
/// to the end of its own group with its receive count starting again, and a second one moves
/// nothing. Deliveries say when their message was sent.
pub async fn dead_letters_are_peeked_and_redriven(q: &QueueUnderTest, dead: &dyn DeadLetters) {
    let started = Utc::now();
    let (a, b) = (unique("referral-a"), unique("referral-b"));
    send(q, pc_changed(&a, "a-poison"), &unique("dedup")).await;
    send(q, pc_changed(&b, "b-poison"), &unique("dedup")).await;
    for receive in 1..=q.max_receive_count {
        let mut batch = Vec::new();
        while batch.len() < 2 {
            batch.extend(receive_within(q.consumer.as_ref(), 10, "both poison messages").await);
        }
        batch.sort_by_key(|delivery| events(std::slice::from_ref(delivery)));
        assert_eq!(
            events(&batch),
            ["a-poison", "b-poison"],
            "receive {receive}"
        );
        for delivery in &batch {
            assert_eq!(delivery.receive_count, receive);
            let sent_at = delivery.sent_at.unwrap_or_else(|| {
                panic!(
                    "{:?} says when it was sent",
                    events(std::slice::from_ref(delivery))
                )
            });
            assert_sent_since(sent_at, started, "a delivery");
            release(q, delivery, Duration::ZERO).await;
        }
    }
    send(q, pc_changed(&a, "a-next"), &unique("dedup")).await;
    send(q, pc_changed(&a, "a-last"), &unique("dedup")).await;
    // This receive finds both poison messages past their count, and moves them.
    let next = receive_within(q.consumer.as_ref(), 1, "a-next").await;
    assert_eq!(events(&next), ["a-next"]);

    let deadline = Instant::now() + PATIENCE;
    let parked = loop {
        let parked = peek(dead, 10).await;
        if parked.len() >= 2 {
            break parked;
        }
        assert!(
            Instant::now() < deadline,
            "the poison messages not dead-lettered within {PATIENCE:?}: {:?}",
            parked_events(&parked)
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(
        parked_events(&parked),
        ["a-poison", "b-poison"],
        "oldest first"
    );
    for (message, referral) in parked.iter().zip([&a, &b]) {
        assert_eq!(message.group, pc_changed(referral, "").group());
        assert_eq!(message.receive_count, q.max_receive_count, "{message:?}");
        assert!(!message.in_flight, "{message:?}");
        assert_sent_since(message.sent_at, started, "a dead letter");
    }

    // Looking moves nothing. (Receive counts are left out: SQS counts a look as a receive.)
    let identity = |parked: &[Parked]| -> Vec<(String, String, String)> {
        parked
            .iter()
            .map(|p| (p.message_id.clone(), p.group.clone(), p.body.clone()))
            .collect()
    };
    assert_eq!(identity(&peek(dead, 10).await), identity(&parked));
    assert_eq!(identity(&peek(dead, 1).await), identity(&parked[..1]));
    assert_eq!(dead_depth(dead).await.total(), 2);
    assert_eq!(
        depth(q).await,
        QueueDepth {
            waiting: 1,
            in_flight: 1
        },
        "a-next in flight, a-last waiting"
    );

    let a_poison = |parked: &Parked| parked_events(std::slice::from_ref(parked)) == ["a-poison"];
    let moved = dead
        .redrive(&a_poison)
        .await
        .unwrap_or_else(|err| panic!("redrive a-poison: {err}"));
    assert_eq!(moved, 1, "only the one picked");
    assert_eq!(parked_events(&peek(dead, 10).await), ["b-poison"]);
    assert_eq!(
        depth(q).await,
        QueueDepth {
            waiting: 2,
            in_flight: 1
        },
        "a-poison is back"
    );
    assert_nothing_delivered(q, "a-last and a-poison wait behind a-next").await;
    delete(q, &next[0]).await;
    let last = receive_within(q.consumer.as_ref(), 1, "a-last").await;
    assert_eq!(events(&last), ["a-last"], "a-poison is behind what waited");
    delete(q, &last[0]).await;
    let redriven = receive_within(q.consumer.as_ref(), 1, "a-poison again").await;
    assert_eq!(events(&redriven), ["a-poison"]);
    assert_eq!(
        redriven[0].group,
        pc_changed(&a, "").group(),
        "in its group"
    );
    assert_eq!(
        redriven[0].receive_count, 1,
        "its receive count starts again"
    );
    assert!(redriven[0].sent_at.is_some());
    delete(q, &redriven[0]).await;

    let again = dead
        .redrive(&a_poison)
        .await
        .unwrap_or_else(|err| panic!("redrive a-poison again: {err}"));
    assert_eq!(again, 0, "nothing moved twice");
    assert_empty(q, "a-poison was not moved twice").await;

    let rest = dead
        .redrive(&|_: &Parked| true)
        .await
        .unwrap_or_else(|err| panic!("redrive the rest: {err}"));
    assert_eq!(rest, 1);
    assert_eq!(dead_depth(dead).await.total(), 0);
    let b_again = drain(q, 1, "b-poison").await;
    assert_eq!(events(&b_again), ["b-poison"]);
    assert_eq!(b_again[0].receive_count, 1);
    assert_empty(q, "all deleted").await;
}

/// `sent_at` lies between `started` and now, give or take a clock that is a little off (the
/// queue's, in another process).
fn assert_sent_since(sent_at: DateTime<Utc>, started: DateTime<Utc>, what: &str) {
    let slack = chrono::Duration::seconds(5);
    assert!(
        started - slack <= sent_at && sent_at <= Utc::now() + slack,
        "{what} sent at {sent_at}, the check started at {started}"
    );
}

async fn peek(dead: &dyn DeadLetters, limit: usize) -> Vec<Parked> {
    let parked = dead
        .peek(limit)
        .await
        .unwrap_or_else(|err| panic!("peek {}: {err}", dead.describe()));
    assert!(parked.len() <= limit, "asked for {limit}, got {parked:?}");
    parked
}

async fn dead_depth(dead: &dyn DeadLetters) -> QueueDepth {
    dead.depth()
        .await
        .unwrap_or_else(|err| panic!("depth of {}: {err}", dead.describe()))
}

/// [`events`] of parked messages.
pub fn parked_events(parked: &[Parked]) -> Vec<String> {
    parked
        .iter()
        .map(|p| match SyncCommand::from_body(&p.body) {
            Ok(SyncCommand::PartnerCenterChanged { event, .. }) => event,
            Ok(SyncCommand::CrmChanged { crm_id, .. }) => crm_id,
            Err(err) => panic!("body {:?} does not parse: {err}", p.body),
        })
        .collect()
}

/// Receives the only message in `q` twice (releasing it in between): the first receipt, stale
/// now, and the current one.
async fn receive_twice(q: &QueueUnderTest) -> (Delivery, Delivery) {
    let mut first = receive_within(q.consumer.as_ref(), 10, "the message").await;
    assert_eq!(first.len(), 1);
    release(q, &first[0], Duration::ZERO).await;
    let mut second = receive_within(q.consumer.as_ref(), 10, "the message again").await;
    assert_eq!(second.len(), 1);
    assert_eq!(second[0].message_id, first[0].message_id);
    assert_eq!(second[0].receive_count, 2);
    (first.remove(0), second.remove(0))
}

/// A fresh id such as `referral-1a2b-17c3d4e5f6-7`: unique across runs and processes, since an
/// embedded queue's file or a moto server may outlive one run.
pub fn unique(prefix: &str) -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| since.as_nanos());
    format!(
        "{}-{:x}-{nanos:x}-{n}",
        prefix.to_ascii_lowercase(),
        std::process::id()
    )
}

/// A Partner Center command; the event tells messages of one referral apart.
pub fn pc_changed(referral_id: &str, event: &str) -> SyncCommand {
    SyncCommand::PartnerCenterChanged {
        referral_id: referral_id.to_owned(),
        event: event.to_owned(),
    }
}

/// The command in a delivery's body.
pub fn command_of(delivery: &Delivery) -> SyncCommand {
    SyncCommand::from_body(&delivery.body)
        .unwrap_or_else(|err| panic!("body {:?} does not parse: {err}", delivery.body))
}

/// The events of Partner Center commands (the CRM record id for CRM commands), in order.
pub fn events(deliveries: &[Delivery]) -> Vec<String> {
    deliveries
        .iter()
        .map(|delivery| match command_of(delivery) {
            SyncCommand::PartnerCenterChanged { event, .. } => event,
            SyncCommand::CrmChanged { crm_id, .. } => crm_id,
        })
        .collect()
}

async fn send(q: &QueueUnderTest, command: SyncCommand, dedup_id: &str) {
    q.queue
        .send(&Outgoing {
            command,
            dedup_id: dedup_id.to_owned(),
        })
        .await
        .unwrap_or_else(|err| panic!("send with dedup id {dedup_id:?}: {err}"));
}

async fn delete(q: &QueueUnderTest, delivery: &Delivery) {
    q.consumer
        .delete(&delivery.receipt)
        .await
        .unwrap_or_else(|err| panic!("delete {:?}: {err}", events(std::slice::from_ref(delivery))));
}

async fn release(q: &QueueUnderTest, delivery: &Delivery, delay: Duration) {
    q.consumer
        .release(&delivery.receipt, delay)
        .await
        .unwrap_or_else(|err| {
            panic!(
                "release {:?}: {err}",
                events(std::slice::from_ref(delivery))
            )
        });
}

async fn depth(q: &QueueUnderTest) -> QueueDepth {
    q.consumer
        .depth()
        .await
        .unwrap_or_else(|err| panic!("depth: {err}"))
}

/// How long to wait for something that must happen: plenty to spare for a loaded machine, and
/// for [`SHORT_VISIBILITY`] to pass many times over.
const PATIENCE: Duration = Duration::from_secs(60);

/// How long to look for messages that must not be there (one long poll).
const LOOK: Duration = Duration::from_secs(1);

/// The first non-empty answer of `consumer` to receives of up to `max` messages.
pub async fn receive_within(consumer: &dyn QueueConsumer, max: usize, what: &str) -> Vec<Delivery> {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let batch = consumer
            .receive(max, Duration::from_secs(1))
            .await
            .unwrap_or_else(|err| panic!("receive ({what}): {err}"));
        if !batch.is_empty() {
            assert!(batch.len() <= max, "asked for {max}, got {}", batch.len());
            return batch;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: not delivered within {PATIENCE:?}"
        );
    }
}

/// Receives and deletes until `count` messages came, as the processor does; answers them in the
/// order received.
async fn drain(q: &QueueUnderTest, count: usize, what: &str) -> Vec<Delivery> {
    let mut received = Vec::new();
    while received.len() < count {
        let batch = receive_within(q.consumer.as_ref(), 10, what).await;
        for delivery in batch {
            delete(q, &delivery).await;
            received.push(delivery);
        }
    }
    assert_eq!(
        received.len(),
        count,
        "{what}: more than sent: {:?}",
        events(&received)
    );
    assert_nothing_delivered(q, &format!("{what} were all received")).await;
    received
}

async fn assert_nothing_delivered(q: &QueueUnderTest, why: &str) {
    let batch = q
        .consumer
        .receive(10, LOOK)
        .await
        .unwrap_or_else(|err| panic!("receive ({why}): {err}"));
    assert!(
        batch.is_empty(),
        "nothing should be delivered ({why}), got {:?}",
        events(&batch)
    );
}

async fn assert_empty(q: &QueueUnderTest, why: &str) {
    assert_eq!(depth(q).await, QueueDepth::default(), "empty: {why}");
}
