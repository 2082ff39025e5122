//! One SQS FIFO batch: messages run in order within their group; when one fails, the later
//! messages of the same group fail too (running them would reorder that referral's commands),
//! while other groups carry on.

use std::collections::HashMap;
use std::future::Future;
use std::time::Duration;

/// A handler's failure: what to log, and how long the service behind it asked to be left alone
/// (its `Retry-After`), which the queue must honour before the message's next attempt.
pub trait Failure: std::fmt::Display {
    fn retry_after(&self) -> Option<Duration>;

    /// The failure will meet every message alike (the connector cannot sign in): the rest of
    /// the batch is not run and fails with it, waiting as long.
    fn stops_batch(&self) -> bool {
        false
    }
}

/// A message of a batch, as the processor sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatchMessage {
    pub id: String,
    pub group: String,
    pub body: String,
    /// When the message was first sent, when the queue says (for the message-age metric).
    pub sent_at: Option<chrono::DateTime<chrono::Utc>>,
}

/// What became of one message of a batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ItemOutcome {
    Done,
    /// Its handler failed, or an earlier message of its group did: it must be delivered again,
    /// not before `retry_after` (the failing message's, for the whole group).
    Failed {
        retry_after: Option<Duration>,
    },
    /// Never run because the caller asked to stop: it goes back to the queue as it was.
    NotRun,
}

/// A message to report as failed (`batchItemFailures`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FailedItem {
    pub id: String,
    pub retry_after: Option<Duration>,
}

/// Runs `handle` over the batch and returns the messages to report as failed, in batch order.
/// Groups run one after another, which keeps each group's order and leaves concurrency to the
/// event source mapping.
pub async fn process<F, Fut, E>(messages: &[BatchMessage], handle: F) -> Vec<FailedItem>
where
    F: FnMut(&BatchMessage) -> Fut,
    Fut: Future<Output = Result<(), E>>,
    E: Failure,
{
    process_each(messages, handle, || true)
        .await
        .into_iter()
        .zip(messages)
        .filter_map(|(outcome, m)| match outcome {
            ItemOutcome::Failed { retry_after } => Some(FailedItem {
                id: m.id.clone(),
                retry_after,
            }),
            ItemOutcome::Done | ItemOutcome::NotRun => None,
        })
        .collect()
}

/// Like [`process`], answering each message's outcome, and checking `keep_going` before each
/// message: once it says no, the rest of the batch is left [`ItemOutcome::NotRun`] (a shutdown
/// finishes the message in hand and starts no other).
pub async fn process_each<F, Fut, E>(
    messages: &[BatchMessage],
    mut handle: F,
    keep_going: impl Fn() -> bool,
) -> Vec<ItemOutcome>
where
    F: FnMut(&BatchMessage) -> Fut,
    Fut: Future<Output = Result<(), E>>,
    E: Failure,
{
    let mut failed_groups: HashMap<&str, Option<Duration>> = HashMap::new();
    let mut outcomes = Vec::with_capacity(messages.len());
    let mut stopped: Option<Option<Duration>> = None;
    for m in messages {
        if let Some(retry_after) = stopped {
            outcomes.push(ItemOutcome::Failed { retry_after });
            continue;
        }
        if let Some(&retry_after) = failed_groups.get(m.group.as_str()) {
            outcomes.push(ItemOutcome::Failed { retry_after });
            continue;
        }
        if !keep_going() {
            outcomes.push(ItemOutcome::NotRun);
            continue;
        }
        match handle(m).await {
            Ok(()) => outcomes.push(ItemOutcome::Done),
            Err(why) => {
                let retry_after = why.retry_after();
                tracing::warn!(message_id = %m.id, group = %m.group, error = %why, ?retry_after, "sync command failed; it will be retried");
                if why.stops_batch() {
                    stopped = Some(retry_after);
                }
                failed_groups.insert(&m.group, retry_after);
                outcomes.push(ItemOutcome::Failed { retry_after });
            }
        }
    }
    outcomes
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A failure as a handler reports it, asking for a wait or not.
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

    /// A failure every message would meet (the connector cannot sign in).
    #[derive(Debug)]
    struct SignedOut;

    impl std::fmt::Display for SignedOut {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("signed out")
        }
    }

    impl Failure for SignedOut {
        fn retry_after(&self) -> Option<Duration> {
            Some(Duration::from_secs(300))
        }

        fn stops_batch(&self) -> bool {
            true
        }
    }

    #[tokio::test]
    async fn a_failure_that_meets_every_message_stops_the_batch_and_all_wait_alike() {
        let batch = [msg("a1", "A"), msg("b1", "B"), msg("c1", "C")];
        let mut ran = Vec::new();
        let failed = process(&batch, |m| {
            ran.push(m.id.clone());
            let fail = m.id == "b1";
            async move { if fail { Err(SignedOut) } else { Ok(()) } }
        })
        .await;
        assert_eq!(
            ran,
            ["a1", "b1"],
            "c1 is not tried against a sign-in that failed"
        );
        assert_eq!(
            failed,
            [
                FailedItem {
                    id: "b1".into(),
                    retry_after: Some(Duration::from_secs(300))
                },
                FailedItem {
                    id: "c1".into(),
                    retry_after: Some(Duration::from_secs(300))
                }
            ]
        );
    }

    fn msg(id: &str, group: &str) -> BatchMessage {
        BatchMessage {
            id: id.into(),
            group: group.into(),
            body: String::new(),
            sent_at: None,
        }
    }

    #[tokio::test]
    async fn a_failure_fails_the_rest_of_its_group_only() {
        let batch = [
            msg("a1", "A"),
            msg("b1", "B"),
            msg("a2", "A"),
            msg("b2", "B"),
            msg("a3", "A"),
        ];
        let mut ran = Vec::new();
        let failed = process(&batch, |m| {
            ran.push(m.id.clone());
            let fail = m.id == "a2";
            async move {
                if fail {
                    Err(Boom(Some(Duration::from_secs(30))))
                } else {
                    Ok(())
                }
            }
        })
        .await;
        let ids: Vec<&str> = failed.iter().map(|f| f.id.as_str()).collect();
        assert_eq!(ids, ["a2", "a3"]);
        assert!(
            failed
                .iter()
                .all(|f| f.retry_after == Some(Duration::from_secs(30))),
            "the whole group waits as long as the service asked: {failed:?}"
        );
        assert_eq!(ran, ["a1", "b1", "a2", "b2"], "a3 never ran");
    }

    #[tokio::test]
    async fn a_stop_finishes_the_message_in_hand_and_runs_no_other() {
        use std::cell::Cell;
        let batch = [msg("a1", "A"), msg("b1", "B"), msg("a2", "A")];
        let stop = Cell::new(false);
        let outcomes = process_each(
            &batch,
            |_| {
                // The stop arrives while the first message is being handled.
                stop.set(true);
                async { Ok::<(), Boom>(()) }
            },
            || !stop.get(),
        )
        .await;
        assert_eq!(
            outcomes,
            [ItemOutcome::Done, ItemOutcome::NotRun, ItemOutcome::NotRun]
        );
    }

    #[tokio::test]
    async fn an_all_good_batch_reports_nothing() {
        let batch = [msg("a1", "A"), msg("a2", "A")];
        assert!(
            process(&batch, |_| async { Ok::<(), Boom>(()) })
                .await
                .is_empty()
        );
    }
}
