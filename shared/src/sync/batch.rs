//! One SQS FIFO batch: messages run in order within their group, groups at the same time; when
//! one fails, the later messages of the same group fail too (running them would reorder that
//! referral's commands), while other groups carry on.

use std::future::Future;
use std::time::Duration;

/// A handler's failure: what to log, and how long the service behind it asked to be left alone
/// (its `Retry-After`), which the queue must honour before the message's next attempt.
pub trait Failure: std::fmt::Display {
    fn retry_after(&self) -> Option<Duration>;
}

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
/// Each group's messages run one after another, in order; different groups run at the same
/// time (a batch holds at most ten messages, so at most ten run at once).
pub async fn process<F, Fut, E>(messages: &[BatchMessage], handle: F) -> Vec<FailedItem>
where
    F: Fn(&BatchMessage) -> Fut,
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
/// message: once it says no, no message starts (a shutdown finishes the messages in hand and
/// the rest are left [`ItemOutcome::NotRun`]).
pub async fn process_each<F, Fut, E>(
    messages: &[BatchMessage],
    handle: F,
    keep_going: impl Fn() -> bool,
) -> Vec<ItemOutcome>
where
    F: Fn(&BatchMessage) -> Fut,
    Fut: Future<Output = Result<(), E>>,
    E: Failure,
{
    // Message positions by group, in batch order.
    let mut groups: Vec<(&str, Vec<usize>)> = Vec::new();
    for (i, m) in messages.iter().enumerate() {
        match groups.iter_mut().find(|(g, _)| *g == m.group) {
            Some((_, members)) => members.push(i),
            None => groups.push((m.group.as_str(), vec![i])),
        }
    }
    let (handle, keep_going) = (&handle, &keep_going);
    let runs = groups.into_iter().map(|(_, members)| async move {
        let mut outcomes = Vec::with_capacity(members.len());
        let mut failed: Option<Option<Duration>> = None;
        for i in members {
            let m = &messages[i];
            let outcome = if let Some(retry_after) = failed {
                ItemOutcome::Failed { retry_after }
            } else if !keep_going() {
                ItemOutcome::NotRun
            } else {
                match handle(m).await {
                    Ok(()) => ItemOutcome::Done,
                    Err(why) => {
                        let retry_after = why.retry_after();
                        tracing::warn!(message_id = %m.id, group = %m.group, error = %why, ?retry_after, "sync command failed; it will be retried");
                        failed = Some(retry_after);
                        ItemOutcome::Failed { retry_after }
                    }
                }
            };
            outcomes.push((i, outcome));
        }
        outcomes
    });
    let mut outcomes = vec![ItemOutcome::NotRun; messages.len()];
    for (i, outcome) in futures_util::future::join_all(runs)
        .await
        .into_iter()
        .flatten()
    {
        outcomes[i] = outcome;
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
        let ran = std::sync::Mutex::new(Vec::new());
        let failed = process(&batch, |m| {
            ran.lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(m.id.clone());
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
        let ran = ran.into_inner().unwrap_or_else(|e| e.into_inner());
        let of = |group: char| -> Vec<&str> {
            ran.iter()
                .map(String::as_str)
                .filter(|id| id.starts_with(group))
                .collect()
        };
        assert_eq!(of('a'), ["a1", "a2"], "a3 never ran: {ran:?}");
        assert_eq!(of('b'), ["b1", "b2"], "{ran:?}");
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
    async fn different_groups_run_at_the_same_time_and_one_group_in_order() {
        // Each of the two groups' first message waits until the other's has started: run one
        // group after the other, the batch would never finish.
        let batch = [msg("a1", "A"), msg("a2", "A"), msg("b1", "B")];
        let both_started = tokio::sync::Barrier::new(2);
        let order = std::sync::Mutex::new(Vec::new());
        let run = process(&batch, |m| {
            let (id, both_started, order) = (m.id.clone(), &both_started, &order);
            async move {
                if id != "a2" {
                    both_started.wait().await;
                }
                order.lock().unwrap_or_else(|e| e.into_inner()).push(id);
                Ok::<(), Boom>(())
            }
        });
        let failed = tokio::time::timeout(Duration::from_secs(30), run)
            .await
            .unwrap_or_else(|_| panic!("the groups ran one after the other"));
        assert!(failed.is_empty());
        let order = order.into_inner().unwrap_or_else(|e| e.into_inner());
        let a: Vec<&String> = order.iter().filter(|id| id.starts_with('a')).collect();
        assert_eq!(a, ["a1", "a2"]);
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
