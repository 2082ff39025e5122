//! Sync commands from the FIFO queue, one group (referral) at a time, reporting failed items so
//! only they are redelivered. Behaviour lives in `cosell_shared::sync`; this only wires.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;

use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent};
use cosell_shared::queue::QueueConsumer;
use cosell_shared::sync::batch::{self, BatchMessage, Failure};
use cosell_shared::sync::{Processor, SyncOptions, dry_run};
use cosell_shared::wiring;
use lambda_runtime::{Error, LambdaEvent, service_fn};

/// The batch as the engine sees it: id, FIFO group and body of each record, in order; and each
/// record's receipt handle by id.
fn messages(event: SqsEvent) -> (Vec<BatchMessage>, HashMap<String, String>) {
    let mut receipts = HashMap::new();
    let messages = event
        .records
        .into_iter()
        .map(|r| {
            let id = r.message_id.unwrap_or_default();
            if let Some(receipt) = r.receipt_handle {
                receipts.insert(id.clone(), receipt);
            }
            BatchMessage {
                group: r
                    .attributes
                    .get("MessageGroupId")
                    .cloned()
                    .unwrap_or_default(),
                // Epoch milliseconds, as SQS gives every record.
                sent_at: r
                    .attributes
                    .get("SentTimestamp")
                    .and_then(|t| t.parse::<i64>().ok())
                    .and_then(chrono::DateTime::from_timestamp_millis),
                id,
                body: r.body.unwrap_or_default(),
            }
        })
        .collect();
    (messages, receipts)
}

/// Runs the batch and reports the failed items (`ReportBatchItemFailures`).
///
/// A failed item comes back once the queue's visibility timeout passes, unless the service that
/// failed it asked for a `Retry-After`: then its visibility is set to that, so it is retried
/// when the service said it would be ready (and not before). A visibility change that fails
/// leaves the message to the visibility timeout, which is the failure's default anyway.
async fn respond<F, Fut, E>(
    event: SqsEvent,
    queue: &dyn QueueConsumer,
    handle: F,
) -> SqsBatchResponse
where
    F: FnMut(&BatchMessage) -> Fut,
    Fut: Future<Output = Result<(), E>>,
    E: Failure,
{
    let (messages, receipts) = messages(event);
    let failed = batch::process(&messages, handle).await;
    for item in &failed {
        let (Some(wait), Some(receipt)) = (item.retry_after, receipts.get(&item.id)) else {
            continue;
        };
        if let Err(err) = queue.release(receipt, wait).await {
            tracing::warn!(message_id = %item.id, error = %err, "could not delay the message by its Retry-After; it comes back after the visibility timeout");
        }
    }
    let mut response = SqsBatchResponse::default();
    response.set_failures(failed.into_iter().map(|item| item.id).collect::<Vec<_>>());
    response
}

#[tokio::main]
async fn main() -> Result<(), Error> {
    cosell_shared::telemetry::init_for_lambda();
    cosell_shared::metrics::set_service("queue-processor");
    let (config, sdk) = wiring::load_from_process_env().await?;
    let tokens = wiring::token_store(config.secret_arn.as_deref(), &sdk, None);
    let (crm, pc, store) = (
        wiring::crm(&config)?,
        wiring::partner_center(&config, tokens)?,
        wiring::store(&config, &sdk)?,
    );
    // COSELL_DRY_RUN: decide as always, log the CRM and Partner Center writes instead.
    let (crm, pc, store) = if config.dry_run {
        tracing::warn!(
            "COSELL_DRY_RUN is set: the processor logs what it would write and writes nothing"
        );
        dry_run::wrap(crm, pc, store, None)
    } else {
        (crm, pc, store)
    };
    let processor = Arc::new(Processor {
        pc,
        crm,
        store,
        options: SyncOptions::clone(&config.sync),
    });
    let queue = wiring::queue_consumer(&config, &sdk)?;
    lambda_runtime::run(service_fn(move |event: LambdaEvent<SqsEvent>| {
        let (processor, queue) = (Arc::clone(&processor), Arc::clone(&queue));
        async move {
            Ok::<_, Error>(
                respond(event.payload, queue.as_ref(), |m| {
                    let (processor, body, sent_at) =
                        (Arc::clone(&processor), m.body.clone(), m.sent_at);
                    async move { processor.handle_message(&body, sent_at).await }
                })
                .await,
            )
        }
    }))
    .await
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use cosell_shared::queue::embedded::{EmbeddedQueue, EmbeddedQueueSettings};
    use cosell_shared::queue::{Delivery, Outgoing, Queue, SyncCommand};

    use super::*;

    /// A handler's failure, asking for a wait or not.
    #[derive(Debug)]
    struct Boom(Option<Duration>);

    impl std::fmt::Display for Boom {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("boom")
        }
    }

    impl Failure for Boom {
        fn retry_after(&self) -> Option<Duration> {
            self.0
        }
    }

    fn record(id: &str, group: &str, body: &str, receipt: &str) -> serde_json::Value {
        serde_json::json!({
            "messageId": id,
            "receiptHandle": receipt,
            "body": body,
            "attributes": {"MessageGroupId": group},
            "messageAttributes": {},
            "eventSource": "aws:sqs",
        })
    }

    fn queue(dir: &tempfile::TempDir, visibility_timeout: Duration) -> EmbeddedQueue {
        let settings = EmbeddedQueueSettings {
            visibility_timeout,
            ..EmbeddedQueueSettings::default()
        };
        EmbeddedQueue::open(&dir.path().join("queue.sqlite"), "sync", settings)
            .expect("an embedded queue")
    }

    async fn send(queue: &EmbeddedQueue, referral_id: &str) {
        let command = SyncCommand::PartnerCenterChanged {
            referral_id: referral_id.into(),
            event: "referral-updated".into(),
        };
        queue
            .send(&Outgoing {
                command,
                dedup_id: referral_id.into(),
            })
            .await
            .expect("send");
    }

    fn event_of(deliveries: &[Delivery]) -> SqsEvent {
        let records: Vec<_> = deliveries
            .iter()
            .map(|d| record(&d.message_id, &d.group, &d.body, &d.receipt))
            .collect();
        serde_json::from_value(serde_json::json!({ "Records": records })).expect("an SQS event")
    }

    #[tokio::test]
    async fn a_failed_record_fails_the_rest_of_its_group_in_the_response() {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let queue = queue(&dir, Duration::from_secs(300));
        let event: SqsEvent = serde_json::from_value(serde_json::json!({"Records": [
            record("1", "referral:a", "ok", "r1"),
            record("2", "referral:b", "fail", "r2"),
            record("3", "referral:a", "ok", "r3"),
            record("4", "referral:b", "ok", "r4"),
        ]}))
        .expect("an SQS event");
        let response = respond(event, &queue, |m| {
            let fail = m.body == "fail";
            async move { if fail { Err(Boom(None)) } else { Ok(()) } }
        })
        .await;
        let ids: Vec<&str> = response
            .batch_item_failures
            .iter()
            .map(|f| f.item_identifier.as_str())
            .collect();
        assert_eq!(ids, ["2", "4"]);
    }

    #[tokio::test]
    async fn a_failure_with_retry_after_stays_away_that_long_and_a_plain_one_for_the_visibility_timeout()
     {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let queue = queue(&dir, Duration::from_secs(1));
        send(&queue, "throttled").await;
        send(&queue, "plain").await;
        let deliveries = queue.receive(10, Duration::ZERO).await.expect("receive");
        assert_eq!(deliveries.len(), 2);
        let throttled = deliveries[0].message_id.clone();
        let response = respond(event_of(&deliveries), &queue, |m| {
            let wait = (m.id == throttled).then_some(Duration::from_secs(30));
            async move { Err::<(), _>(Boom(wait)) }
        })
        .await;
        assert_eq!(response.batch_item_failures.len(), 2);

        // Past the queue's visibility timeout, only the message without a Retry-After is back.
        tokio::time::sleep(Duration::from_millis(1500)).await;
        let again = queue.receive(10, Duration::ZERO).await.expect("receive");
        let ids: Vec<&str> = again.iter().map(|d| d.message_id.as_str()).collect();
        assert_eq!(ids, [deliveries[1].message_id.as_str()]);
        assert_eq!(
            queue.depth().await.expect("depth").total(),
            2,
            "nothing lost"
        );
    }
}
