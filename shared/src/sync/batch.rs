//! One SQS FIFO batch: messages run in order within their group; when one fails, the later
//! messages of the same group fail too (running them would reorder that referral's commands),
//! while other groups carry on.

use std::collections::HashSet;
use std::future::Future;

/// A message of a batch, as the processor sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatchMessage {
    pub id: String,
    pub group: String,
    pub body: String,
}

/// What became of one message of a batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ItemOutcome {
    Done,
    /// Its handler failed, or an earlier message of its group did: it must be delivered again.
    Failed,
    /// Never run because the caller asked to stop: it goes back to the queue as it was.
    NotRun,
}

/// Runs `handle` over the batch and returns the ids of the messages to report as failed
/// (`batchItemFailures`), in batch order. Groups run one after another, which keeps each
/// group's order and leaves concurrency to the event source mapping.
pub async fn process<F, Fut>(messages: &[BatchMessage], handle: F) -> Vec<String>
where
    F: FnMut(&BatchMessage) -> Fut,
    Fut: Future<Output = Result<(), String>>,
{
    process_each(messages, handle, || true)
        .await
        .into_iter()
        .zip(messages)
        .filter(|(outcome, _)| *outcome != ItemOutcome::Done)
        .map(|(_, m)| m.id.clone())
        .collect()
}

/// Like [`process`], answering each message's outcome, and checking `keep_going` before each
/// message: once it says no, the rest of the batch is left [`ItemOutcome::NotRun`] (a shutdown
/// finishes the message in hand and starts no other).
pub async fn process_each<F, Fut>(
    messages: &[BatchMessage],
    mut handle: F,
    keep_going: impl Fn() -> bool,
) -> Vec<ItemOutcome>
where
    F: FnMut(&BatchMessage) -> Fut,
    Fut: Future<Output = Result<(), String>>,
{
    let mut failed_groups: HashSet<&str> = HashSet::new();
    let mut outcomes = Vec::with_capacity(messages.len());
    for m in messages {
        if failed_groups.contains(m.group.as_str()) {
            outcomes.push(ItemOutcome::Failed);
            continue;
        }
        if !keep_going() {
            outcomes.push(ItemOutcome::NotRun);
            continue;
        }
        match handle(m).await {
            Ok(()) => outcomes.push(ItemOutcome::Done),
            Err(why) => {
                tracing::warn!(message_id = %m.id, group = %m.group, error = %why, "sync command failed; it will be retried");
                failed_groups.insert(&m.group);
                outcomes.push(ItemOutcome::Failed);
            }
        }
    }
    outcomes
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(id: &str, group: &str) -> BatchMessage {
        BatchMessage {
            id: id.into(),
            group: group.into(),
            body: String::new(),
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
                    Err("boom".to_string())
                } else {
                    Ok(())
                }
            }
        })
        .await;
        assert_eq!(failed, ["a2", "a3"]);
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
                async { Ok(()) }
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
        assert!(process(&batch, |_| async { Ok(()) }).await.is_empty());
    }
}
