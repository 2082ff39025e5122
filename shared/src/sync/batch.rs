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

/// Runs `handle` over the batch and returns the ids of the messages to report as failed
/// (`batchItemFailures`), in batch order. Groups run one after another, which keeps each
/// group's order and leaves concurrency to the event source mapping.
pub async fn process<F, Fut>(messages: &[BatchMessage], mut handle: F) -> Vec<String>
where
    F: FnMut(&BatchMessage) -> Fut,
    Fut: Future<Output = Result<(), String>>,
{
    let mut failed_groups: HashSet<&str> = HashSet::new();
    let mut failed = Vec::new();
    for m in messages {
        if failed_groups.contains(m.group.as_str()) {
            failed.push(m.id.clone());
            continue;
        }
        if let Err(why) = handle(m).await {
            tracing::warn!(message_id = %m.id, group = %m.group, error = %why, "sync command failed; it will be retried");
            failed_groups.insert(&m.group);
            failed.push(m.id.clone());
        }
    }
    failed
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
    async fn an_all_good_batch_reports_nothing() {
        let batch = [msg("a1", "A"), msg("a2", "A")];
        assert!(process(&batch, |_| async { Ok(()) }).await.is_empty());
    }
}
