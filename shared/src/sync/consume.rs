//! A receive-and-run cycle over a [`QueueConsumer`], doing what the Lambda event source mapping
//! does with `ReportBatchItemFailures` in AWS: run the batch in group order, delete what
//! succeeded, and hand the rest back. `cosell local` runs it in a loop; the end-to-end tests
//! run it one batch at a time.

use std::time::Duration;

use crate::queue::{Delivery, QueueConsumer, QueueError};
use crate::sync::batch::{self, BatchMessage, Failure, ItemOutcome};

/// What one batch did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BatchReport {
    pub received: usize,
    pub succeeded: usize,
    /// Will be delivered again (after the retry delay), or dead-lettered by the queue once its
    /// receive count is spent.
    pub failed: usize,
    /// Handed back untouched because of a stop.
    pub returned: usize,
    /// The handlers' errors, in order.
    pub errors: Vec<String>,
}

/// How long a failed message stays invisible before its next attempt, by how many times it was
/// received: 1 s, 2 s, 4 s… up to a minute, so a failing referral is retried soon but never in a
/// tight loop.
pub fn backoff(receive_count: u32) -> Duration {
    let exponent = receive_count.saturating_sub(1).min(6);
    Duration::from_secs(1u64 << exponent).min(Duration::from_secs(60))
}

/// Runs `deliveries` (one receive's worth) through `handle` and settles each with the queue.
/// `keep_going` is checked before each message; `retry_delay` maps a failed message's receive
/// count to the delay before it is visible again, lengthened to the `Retry-After` of the
/// service that failed it (a throttled CRM asked to be left alone that long).
///
/// Settling errors (the queue unavailable for a delete) do not stop the batch: an undeleted
/// message is delivered again and the processor's idempotency makes that harmless. The first
/// such error is answered after the batch is settled.
pub async fn run_batch<F, Fut, E>(
    queue: &dyn QueueConsumer,
    deliveries: Vec<Delivery>,
    mut handle: F,
    keep_going: impl Fn() -> bool,
    retry_delay: impl Fn(u32) -> Duration,
) -> Result<BatchReport, QueueError>
where
    F: FnMut(&BatchMessage) -> Fut,
    Fut: Future<Output = Result<(), E>>,
    E: Failure,
{
    let messages: Vec<BatchMessage> = deliveries
        .iter()
        .map(|d| BatchMessage {
            id: d.message_id.clone(),
            group: d.group.clone(),
            body: d.body.clone(),
            sent_at: d.sent_at,
        })
        .collect();
    let errors = std::sync::Mutex::new(Vec::new());
    let outcomes = batch::process_each(
        &messages,
        |m| {
            let run = handle(m);
            let errors = &errors;
            async move {
                let result = run.await;
                if let Err(why) = &result {
                    errors
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner)
                        .push(why.to_string());
                }
                result
            }
        },
        keep_going,
    )
    .await;

    let mut report = BatchReport {
        received: deliveries.len(),
        errors: errors
            .into_inner()
            .unwrap_or_else(std::sync::PoisonError::into_inner),
        ..BatchReport::default()
    };
    let mut first_error = None;
    for (delivery, outcome) in deliveries.iter().zip(outcomes) {
        let settled = match outcome {
            ItemOutcome::Done => {
                report.succeeded += 1;
                queue.delete(&delivery.receipt).await
            }
            ItemOutcome::Failed { retry_after } => {
                report.failed += 1;
                let delay =
                    retry_delay(delivery.receive_count).max(retry_after.unwrap_or_default());
                queue.release(&delivery.receipt, delay).await
            }
            ItemOutcome::NotRun => {
                report.returned += 1;
                queue.release(&delivery.receipt, Duration::ZERO).await
            }
        };
        if let Err(err) = settled {
            tracing::warn!(message_id = %delivery.message_id, error = %err, "could not settle a message with the queue; it will be delivered again");
            first_error.get_or_insert(err);
        }
    }
    match first_error {
        Some(err) => Err(err),
        None => Ok(report),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_is_capped() {
        assert_eq!(backoff(0), Duration::from_secs(1));
        assert_eq!(backoff(1), Duration::from_secs(1));
        assert_eq!(backoff(2), Duration::from_secs(2));
        assert_eq!(backoff(4), Duration::from_secs(8));
        assert_eq!(backoff(7), Duration::from_secs(60));
        assert_eq!(backoff(u32::MAX), Duration::from_secs(60));
    }
}
