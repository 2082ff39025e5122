//! The [`Queue`] on an SQS FIFO queue: one message group per referral (or CRM record), the
//! caller's deduplication id, and the command as a JSON body.
//!
//! SQS accepts group and deduplication ids of 1 to 128 printable ASCII characters. An id outside
//! that is replaced by `sha256:` and its SHA-256 in hex: still a pure function of the id, so
//! grouping and deduplication keep working, and no id is ever refused.
//!
//! Throttling and 5xx answers are retried by the SDK client's own retry strategy (standard mode,
//! with back-off); a failure that outlasts it is [`QueueError::Unavailable`].
//!
//! As a [`QueueConsumer`] it maps the port onto ReceiveMessage, DeleteMessage,
//! ChangeMessageVisibility and GetQueueAttributes. The visibility timeout and the dead-letter
//! queue are the queue's own attributes (`VisibilityTimeout`, `RedrivePolicy`): SQS moves a
//! message past its `maxReceiveCount` itself, so the client has nothing to do for it. A
//! delivery's group is the id as sent, i.e. after [`sqs_id`].
//!
//! [`SqsDeadLetters`] reads the dead-letter queue and moves its messages back. SQS has no way to
//! read a queue but receiving from it, so it receives: see there for what that implies.

use std::collections::HashSet;
use std::time::Duration;

use async_trait::async_trait;
use aws_lc_rs::digest;
use aws_sdk_sqs::Client;
use aws_sdk_sqs::error::{DisplayErrorContext, ProvideErrorMetadata};
use aws_sdk_sqs::types::{
    ChangeMessageVisibilityBatchRequestEntry, Message, MessageSystemAttributeName,
    QueueAttributeName,
};
use chrono::DateTime;

use super::{
    DeadLetters, Delivery, Outgoing, Parked, Queue, QueueConsumer, QueueDepth, QueueError,
};

/// The longest group or deduplication id SQS accepts.
const MAX_ID_LEN: usize = 128;
/// ReceiveMessage answers at most this many messages.
const MAX_RECEIVE_BATCH: usize = 10;
/// ReceiveMessage's longest long poll.
const MAX_WAIT_SECONDS: u64 = 20;
/// ChangeMessageVisibility's longest timeout (12 hours).
const MAX_VISIBILITY_SECONDS: u64 = 43_200;
/// How long a look at the dead-letter queue holds what it received: enough to page through it
/// and move what is picked, short enough that a look cut off hides nothing for long.
const LOOK_VISIBILITY_SECONDS: i32 = 30;
/// A look's long poll. Not 0: a short poll asks only some of SQS's servers, so it may answer
/// nothing while the queue has messages, and the look would stop early.
const LOOK_WAIT_SECONDS: i32 = 1;

/// The [`Queue`] and [`QueueConsumer`] adapter for an SQS FIFO queue.
#[derive(Debug, Clone)]
pub struct SqsQueue {
    client: Client,
    queue_url: String,
}

impl SqsQueue {
    /// Sends to `queue_url` (`SyncQueueUrl` in the SAM outputs) with `client` as configured.
    pub fn new(client: Client, queue_url: impl Into<String>) -> Self {
        SqsQueue {
            client,
            queue_url: queue_url.into(),
        }
    }
}

#[async_trait]
impl Queue for SqsQueue {
    async fn send(&self, message: &Outgoing) -> Result<(), QueueError> {
        let body = serde_json::to_string(&message.command).map_err(|err| {
            QueueError::Malformed(format!("the command cannot be serialised: {err}"))
        })?;
        self.client
            .send_message()
            .queue_url(&self.queue_url)
            .message_group_id(sqs_id(&message.command.group()))
            .message_deduplication_id(sqs_id(&message.dedup_id))
            .message_body(body)
            .send()
            .await
            .map(|_| ())
            .map_err(|err| {
                QueueError::Unavailable(format!(
                    "SQS SendMessage to {}: {}",
                    self.queue_url,
                    DisplayErrorContext(&err)
                ))
            })
    }
}

#[async_trait]
impl QueueConsumer for SqsQueue {
    /// SQS answers at most 10 messages and long-polls in whole seconds up to 20: `max` is capped
    /// at 10 and `wait` rounded down to whole seconds (so never waits longer than asked), capped
    /// at 20 s.
    async fn receive(&self, max: usize, wait: Duration) -> Result<Vec<Delivery>, QueueError> {
        if max == 0 {
            return Ok(Vec::new());
        }
        let max = i32::try_from(max.min(MAX_RECEIVE_BATCH)).unwrap_or(1);
        let wait_seconds = wait_seconds(wait);
        let output = self
            .client
            .receive_message()
            .queue_url(&self.queue_url)
            .max_number_of_messages(max)
            .wait_time_seconds(wait_seconds)
            .message_system_attribute_names(MessageSystemAttributeName::MessageGroupId)
            .message_system_attribute_names(MessageSystemAttributeName::ApproximateReceiveCount)
            .message_system_attribute_names(MessageSystemAttributeName::SentTimestamp)
            .send()
            .await
            .map_err(|err| self.unavailable("ReceiveMessage", &err))?;
        output
            .messages
            .unwrap_or_default()
            .into_iter()
            .map(|message| self.delivery(message))
            .collect()
    }

    async fn delete(&self, receipt: &str) -> Result<(), QueueError> {
        match self
            .client
            .delete_message()
            .queue_url(&self.queue_url)
            .receipt_handle(receipt)
            .send()
            .await
        {
            Ok(_) => Ok(()),
            // A FIFO queue refuses a receipt whose message was received again since (or whose
            // visibility timeout passed): the message is someone else's now, so nothing to do.
            Err(err)
                if err.as_service_error().is_some_and(|service| {
                    service.is_receipt_handle_is_invalid() || is_stale_receipt(service)
                }) =>
            {
                Ok(())
            }
            Err(err) => Err(self.unavailable("DeleteMessage", &err)),
        }
    }

    /// SQS sets visibility in whole seconds: `delay` is rounded up (never visible earlier than
    /// asked), capped at SQS's 12 hours.
    async fn release(&self, receipt: &str, delay: Duration) -> Result<(), QueueError> {
        let seconds = visibility_seconds(delay);
        match self
            .client
            .change_message_visibility()
            .queue_url(&self.queue_url)
            .receipt_handle(receipt)
            .visibility_timeout(seconds)
            .send()
            .await
        {
            Ok(_) => Ok(()),
            // Stale receipt, or the message is no longer in flight: it is visible (or deleted)
            // already, which is all a release asks for.
            Err(err)
                if err.as_service_error().is_some_and(|service| {
                    service.is_receipt_handle_is_invalid()
                        || service.is_message_not_inflight()
                        || is_stale_receipt(service)
                }) =>
            {
                Ok(())
            }
            Err(err) => Err(self.unavailable("ChangeMessageVisibility", &err)),
        }
    }

    async fn depth(&self) -> Result<QueueDepth, QueueError> {
        let output = self
            .client
            .get_queue_attributes()
            .queue_url(&self.queue_url)
            .attribute_names(QueueAttributeName::ApproximateNumberOfMessages)
            .attribute_names(QueueAttributeName::ApproximateNumberOfMessagesNotVisible)
            .send()
            .await
            .map_err(|err| self.unavailable("GetQueueAttributes", &err))?;
        let attributes = output.attributes.unwrap_or_default();
        let count = |name: QueueAttributeName| -> Result<u64, QueueError> {
            match attributes.get(&name) {
                Some(value) => value.parse().map_err(|_| {
                    QueueError::Unavailable(format!(
                        "SQS GetQueueAttributes on {} answered {name:?} = {value:?}, not a count",
                        self.queue_url
                    ))
                }),
                None => Err(QueueError::Unavailable(format!(
                    "SQS GetQueueAttributes on {} did not answer {name:?}",
                    self.queue_url
                ))),
            }
        };
        Ok(QueueDepth {
            waiting: count(QueueAttributeName::ApproximateNumberOfMessages)?,
            in_flight: count(QueueAttributeName::ApproximateNumberOfMessagesNotVisible)?,
        })
    }
}

impl SqsQueue {
    /// The queue this one moves messages to past their receive count (its `RedrivePolicy`'s
    /// `deadLetterTargetArn`), or `None` when it has none.
    pub async fn dead_letter_queue(&self) -> Result<Option<SqsQueue>, QueueError> {
        let output = self
            .client
            .get_queue_attributes()
            .queue_url(&self.queue_url)
            .attribute_names(QueueAttributeName::RedrivePolicy)
            .send()
            .await
            .map_err(|err| self.unavailable("GetQueueAttributes", &err))?;
        let Some(policy) = output
            .attributes
            .and_then(|a| a.get(&QueueAttributeName::RedrivePolicy).cloned())
        else {
            return Ok(None);
        };
        let arn = serde_json::from_str::<serde_json::Value>(&policy)
            .ok()
            .and_then(|p| p.get("deadLetterTargetArn")?.as_str().map(str::to_string))
            .ok_or_else(|| {
                QueueError::Unavailable(format!(
                    "the RedrivePolicy of {} names no deadLetterTargetArn: {policy}",
                    self.queue_url
                ))
            })?;
        // arn:aws:sqs:<region>:<account>:<name>
        let parts: Vec<&str> = arn.split(':').collect();
        let (Some(account), Some(name)) = (parts.get(4), parts.get(5)) else {
            return Err(QueueError::Unavailable(format!(
                "the dead-letter queue of {} has an ARN without account and name: {arn}",
                self.queue_url
            )));
        };
        let url = self
            .client
            .get_queue_url()
            .queue_name(*name)
            .queue_owner_aws_account_id(*account)
            .send()
            .await
            .map_err(|err| self.unavailable("GetQueueUrl", &err))?
            .queue_url
            .ok_or_else(|| {
                QueueError::Unavailable(format!("SQS GetQueueUrl answered no URL for {name}"))
            })?;
        Ok(Some(SqsQueue::new(self.client.clone(), url)))
    }

    /// This queue's dead-letter queue (see [`SqsQueue::dead_letter_queue`]) to look at and
    /// move back from, or `None` when it has none.
    ///
    /// There is no look at this queue itself, on purpose: reading an SQS queue means receiving
    /// from it, which would take messages from the processor while they are held and count
    /// towards their `maxReceiveCount`. Only its [`QueueConsumer::depth`] can be read.
    pub async fn dead_letters(&self) -> Result<Option<SqsDeadLetters>, QueueError> {
        Ok(self.dead_letter_queue().await?.map(|queue| SqsDeadLetters {
            queue,
            source: self.clone(),
        }))
    }

    /// Where this queue is.
    pub fn url(&self) -> &str {
        &self.queue_url
    }

    fn unavailable<E>(&self, operation: &str, err: &E) -> QueueError
    where
        E: std::error::Error,
    {
        QueueError::Unavailable(format!(
            "SQS {operation} on {}: {}",
            self.queue_url,
            DisplayErrorContext(err)
        ))
    }

    fn delivery(&self, message: Message) -> Result<Delivery, QueueError> {
        let attribute = |name: MessageSystemAttributeName| {
            message
                .attributes()
                .and_then(|attributes| attributes.get(&name))
                .cloned()
        };
        // Without these the answer cannot be used at all: most likely the URL names a standard
        // queue, which has no groups.
        let missing = |what: &str| {
            QueueError::Unavailable(format!(
                "SQS ReceiveMessage on {} answered a message without {what}; is it a FIFO queue?",
                self.queue_url
            ))
        };
        let group = attribute(MessageSystemAttributeName::MessageGroupId)
            .ok_or_else(|| missing("a MessageGroupId"))?;
        let receive_count = attribute(MessageSystemAttributeName::ApproximateReceiveCount)
            .and_then(|count| count.parse().ok())
            .ok_or_else(|| missing("an ApproximateReceiveCount"))?;
        let sent_at = attribute(MessageSystemAttributeName::SentTimestamp)
            .and_then(|millis| millis.parse().ok())
            .and_then(DateTime::from_timestamp_millis);
        let receipt = message
            .receipt_handle
            .ok_or_else(|| missing("a receipt handle"))?;
        let message_id = message.message_id.ok_or_else(|| missing("a message id"))?;
        Ok(Delivery {
            message_id,
            group,
            body: message.body.unwrap_or_default(),
            receipt,
            receive_count,
            sent_at,
        })
    }
}

/// The dead-letter queue of an [`SqsQueue`], from [`SqsQueue::dead_letters`].
///
/// SQS reads a queue only by receiving from it, so a look receives every message it reads
/// (holding each for 30 s), then makes them all visible again at once. That has costs:
///
/// - Each look counts as a receive in the messages' `ApproximateReceiveCount` (a look answers
///   the count before itself, so it does not see its own).
/// - A FIFO queue answers no message of a group while one of the group is in flight, and a
///   look's own receives put messages in flight: a group's messages beyond those one receive
///   answered are not seen, until the look is over. The same goes for another look at the same
///   time, which sees nothing of what this one holds.
/// - A look cut off (a crash) leaves what it held hidden until the 30 s pass.
///
/// Nothing receives from the dead-letter queue but these looks, so none of it touches the
/// processor.
#[derive(Debug, Clone)]
pub struct SqsDeadLetters {
    queue: SqsQueue,
    source: SqsQueue,
}

impl SqsDeadLetters {
    /// Where the dead letters are.
    pub fn url(&self) -> &str {
        self.queue.url()
    }

    /// Where they are moved back to.
    pub fn source_url(&self) -> &str {
        self.source.url()
    }

    /// One receive of up to `max` dead letters, with their receipts.
    async fn look(&self, max: usize) -> Result<Vec<(Parked, String)>, QueueError> {
        let max = i32::try_from(max.clamp(1, MAX_RECEIVE_BATCH)).unwrap_or(1);
        let output = self
            .queue
            .client
            .receive_message()
            .queue_url(&self.queue.queue_url)
            .max_number_of_messages(max)
            .wait_time_seconds(LOOK_WAIT_SECONDS)
            .visibility_timeout(LOOK_VISIBILITY_SECONDS)
            .message_system_attribute_names(MessageSystemAttributeName::MessageGroupId)
            .message_system_attribute_names(MessageSystemAttributeName::ApproximateReceiveCount)
            .message_system_attribute_names(MessageSystemAttributeName::SentTimestamp)
            .send()
            .await
            .map_err(|err| self.queue.unavailable("ReceiveMessage", &err))?;
        output
            .messages
            .unwrap_or_default()
            .into_iter()
            .map(|message| {
                let delivery = self.queue.delivery(message)?;
                let sent_at = delivery.sent_at.ok_or_else(|| {
                    QueueError::Unavailable(format!(
                        "SQS ReceiveMessage on {} answered message {} without a SentTimestamp",
                        self.queue.queue_url, delivery.message_id
                    ))
                })?;
                let parked = Parked {
                    message_id: delivery.message_id,
                    group: delivery.group,
                    body: delivery.body,
                    sent_at,
                    receive_count: delivery.receive_count.saturating_sub(1),
                    in_flight: false,
                };
                Ok((parked, delivery.receipt))
            })
            .collect()
    }

    /// Makes the messages of `receipts` visible again at once. Tries them all, answering the
    /// first failure; a receipt gone stale (its message visible again already) is no failure.
    async fn make_visible(&self, receipts: &[String]) -> Result<(), QueueError> {
        let mut first_failure = None;
        for chunk in receipts.chunks(MAX_RECEIVE_BATCH) {
            if let Err(err) = self.make_visible_batch(chunk).await {
                first_failure.get_or_insert(err);
            }
        }
        first_failure.map_or(Ok(()), Err)
    }

    async fn make_visible_batch(&self, receipts: &[String]) -> Result<(), QueueError> {
        let entries = receipts
            .iter()
            .enumerate()
            .map(|(n, receipt)| {
                ChangeMessageVisibilityBatchRequestEntry::builder()
                    .id(n.to_string())
                    .receipt_handle(receipt)
                    .visibility_timeout(0)
                    .build()
            })
            .collect::<Result<Vec<_>, _>>()
            .map_err(|err| self.queue.unavailable("ChangeMessageVisibilityBatch", &err))?;
        let output = self
            .queue
            .client
            .change_message_visibility_batch()
            .queue_url(&self.queue.queue_url)
            .set_entries(Some(entries))
            .send()
            .await
            .map_err(|err| self.queue.unavailable("ChangeMessageVisibilityBatch", &err))?;
        let failed: Vec<String> = output
            .failed()
            .iter()
            .filter(|entry| !is_stale_receipt_code(&entry.code, entry.message.as_deref()))
            .map(|entry| {
                format!(
                    "{}: {}",
                    entry.code,
                    entry.message.as_deref().unwrap_or_default()
                )
            })
            .collect();
        if failed.is_empty() {
            Ok(())
        } else {
            Err(QueueError::Unavailable(format!(
                "SQS ChangeMessageVisibilityBatch on {} left messages hidden for up to \
                 {LOOK_VISIBILITY_SECONDS} s: {}",
                self.queue.queue_url,
                failed.join("; ")
            )))
        }
    }

    /// Sends `parked` to the end of its group in the source queue, then deletes it here.
    async fn move_back(&self, parked: &Parked, receipt: &str) -> Result<(), QueueError> {
        // A crash (or a failure) between the send and the delete leaves the message in both
        // queues, and that is harmless: a redrive within SQS's five-minute deduplication window
        // sends it again under the same id, which SQS drops, and then deletes it; later, the
        // processor gets the command twice, and a repeated command does no harm (see
        // `SyncCommand`).
        self.source
            .client
            .send_message()
            .queue_url(&self.source.queue_url)
            .message_group_id(sqs_id(&parked.group))
            .message_deduplication_id(sqs_id(&format!("redrive:{}", parked.message_id)))
            .message_body(&parked.body)
            .send()
            .await
            .map_err(|err| self.source.unavailable("SendMessage", &err))?;
        QueueConsumer::delete(&self.queue, receipt).await
    }
}

#[async_trait]
impl DeadLetters for SqsDeadLetters {
    fn describe(&self) -> String {
        format!("SQS queue {}", self.queue.queue_url)
    }

    /// Receives until a receive answers nothing or `limit` are read, then makes them all
    /// visible again; see [`SqsDeadLetters`] for what that implies.
    async fn peek(&self, limit: usize) -> Result<Vec<Parked>, QueueError> {
        let mut parked = Vec::new();
        let mut held = Vec::new();
        let mut seen = HashSet::new();
        let looked = async {
            while parked.len() < limit {
                let batch = self.look(limit - parked.len()).await?;
                if batch.is_empty() {
                    break;
                }
                let mut new = false;
                for (message, receipt) in batch {
                    held.push(receipt);
                    if seen.insert(message.message_id.clone()) {
                        new = true;
                        parked.push(message);
                    }
                }
                // Only messages seen already: the look took longer than its visibility timeout
                // and went round again.
                if !new {
                    break;
                }
            }
            Ok::<(), QueueError>(())
        }
        .await;
        let released = self.make_visible(&held).await;
        looked.and(released)?;
        Ok(parked)
    }

    /// Receives as [`DeadLetters::peek`] does, moving each picked message as it comes (sent to
    /// the source queue with the deduplication id `redrive:<its message id>`, then deleted), and
    /// makes the others visible again at the end. A picked message behind one not picked in the
    /// same group is not seen, so it stays (see [`SqsDeadLetters`]).
    async fn redrive(
        &self,
        select: &(dyn for<'p> Fn(&'p Parked) -> bool + Send + Sync),
    ) -> Result<usize, QueueError> {
        let mut moved = 0;
        let mut held = Vec::new();
        let mut seen = HashSet::new();
        let redriven = async {
            loop {
                let batch = self.look(MAX_RECEIVE_BATCH).await?;
                if batch.is_empty() {
                    return Ok::<(), QueueError>(());
                }
                let mut new = false;
                for (message, receipt) in batch {
                    if !seen.insert(message.message_id.clone()) {
                        held.push(receipt);
                        continue;
                    }
                    new = true;
                    if select(&message) {
                        self.move_back(&message, &receipt).await?;
                        moved += 1;
                    } else {
                        held.push(receipt);
                    }
                }
                if !new {
                    return Ok(());
                }
            }
        }
        .await;
        let released = self.make_visible(&held).await;
        redriven.and(released)?;
        Ok(moved)
    }

    async fn depth(&self) -> Result<QueueDepth, QueueError> {
        QueueConsumer::depth(&self.queue).await
    }
}

/// ReceiveMessage's `WaitTimeSeconds` for `wait`: whole seconds, rounded down, at most 20.
fn wait_seconds(wait: Duration) -> i32 {
    i32::try_from(wait.as_secs().min(MAX_WAIT_SECONDS)).unwrap_or(0)
}

/// ChangeMessageVisibility's `VisibilityTimeout` for `delay`: whole seconds, rounded up, at most
/// 12 hours.
fn visibility_seconds(delay: Duration) -> i32 {
    let rounded_up = delay
        .as_secs()
        .saturating_add(u64::from(delay.subsec_nanos() > 0));
    i32::try_from(rounded_up.min(MAX_VISIBILITY_SECONDS)).unwrap_or(0)
}

/// Whether SQS refused a receipt handle as expired or superseded. FIFO queues answer that as
/// `InvalidParameterValue` ("Value … for parameter ReceiptHandle is invalid. Reason: …") rather
/// than as the modelled `ReceiptHandleIsInvalid`.
fn is_stale_receipt(error: &impl ProvideErrorMetadata) -> bool {
    is_stale_receipt_code(error.code().unwrap_or_default(), error.message())
}

/// [`is_stale_receipt`] for an error's code and message, as a batch answers them per entry.
fn is_stale_receipt_code(code: &str, message: Option<&str>) -> bool {
    let refused_receipt = message.is_some_and(|message| message.contains("ReceiptHandle"));
    code.ends_with("ReceiptHandleIsInvalid")
        || code.ends_with("MessageNotInflight")
        || (code.ends_with("InvalidParameterValue") && refused_receipt)
}

/// `id` if SQS accepts it as a group or deduplication id, else its SHA-256 digest.
pub fn sqs_id(id: &str) -> String {
    let accepted =
        !id.is_empty() && id.len() <= MAX_ID_LEN && id.bytes().all(|b| b.is_ascii_graphic());
    if accepted {
        return id.to_owned();
    }
    let hash = digest::digest(&digest::SHA256, id.as_bytes());
    let mut hex = String::with_capacity(7 + 64);
    hex.push_str("sha256:");
    for byte in hash.as_ref() {
        hex.push_str(&format!("{byte:02x}"));
    }
    hex
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn acceptable_ids_are_kept() {
        let id =
            "referral:0f8fad5b-d9cb-469f-a165-70867728950e:\"etag\"!#$%&'()*+,-./;<=>?@[\\]^_`{|}~";
        assert_eq!(sqs_id(id), id);
        let longest = "a".repeat(128);
        assert_eq!(sqs_id(&longest), longest);
    }

    #[test]
    fn long_or_odd_ids_are_hashed() {
        for id in [
            "a".repeat(129),
            "has space".into(),
            "ümlaut".into(),
            String::new(),
        ] {
            let hashed = sqs_id(&id);
            assert!(hashed.starts_with("sha256:"), "{hashed}");
            assert_eq!(hashed.len(), 71);
            assert!(hashed.bytes().all(|b| b.is_ascii_graphic()));
            assert_eq!(sqs_id(&id), hashed, "hashing is stable");
        }
        assert_ne!(sqs_id("has space"), sqs_id("has  space"));
        // The SHA-256 of the empty string, a known value.
        assert_eq!(
            sqs_id(""),
            "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }

    #[test]
    fn waits_round_down_and_visibility_rounds_up_within_sqs_limits() {
        assert_eq!(wait_seconds(Duration::ZERO), 0);
        assert_eq!(wait_seconds(Duration::from_millis(1_999)), 1);
        assert_eq!(wait_seconds(Duration::from_secs(3600)), 20);
        assert_eq!(visibility_seconds(Duration::ZERO), 0);
        assert_eq!(visibility_seconds(Duration::from_millis(1)), 1);
        assert_eq!(visibility_seconds(Duration::from_millis(2_001)), 3);
        assert_eq!(visibility_seconds(Duration::MAX), 43_200);
    }

    #[test]
    fn expired_or_superseded_receipts_are_recognised_as_stale() {
        use aws_sdk_sqs::error::ErrorMetadata;
        let error = |code: &str, message: &str| {
            ErrorMetadata::builder().code(code).message(message).build()
        };
        for stale in [
            error(
                "InvalidParameterValue",
                "Value AQEB for parameter ReceiptHandle is invalid. Reason: The receipt handle \
                 has expired.",
            ),
            error(
                "ReceiptHandleIsInvalid",
                "The input receipt handle is invalid.",
            ),
            error(
                "AWS.SimpleQueueService.MessageNotInflight",
                "The message referred to isn't in flight.",
            ),
        ] {
            assert!(is_stale_receipt(&stale), "{stale:?}");
        }
        for other in [
            error(
                "InvalidParameterValue",
                "Value 50000 for parameter VisibilityTimeout is invalid.",
            ),
            error("AccessDenied", "ReceiptHandle aside, you may not."),
            ErrorMetadata::builder().build(),
        ] {
            assert!(!is_stale_receipt(&other), "{other:?}");
        }
    }
}
