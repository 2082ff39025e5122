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

use std::time::Duration;

use async_trait::async_trait;
use aws_lc_rs::digest;
use aws_sdk_sqs::Client;
use aws_sdk_sqs::error::{DisplayErrorContext, ProvideErrorMetadata};
use aws_sdk_sqs::types::{Message, MessageSystemAttributeName, QueueAttributeName};

use super::{Delivery, Outgoing, Queue, QueueConsumer, QueueDepth, QueueError};

/// The longest group or deduplication id SQS accepts.
const MAX_ID_LEN: usize = 128;
/// ReceiveMessage answers at most this many messages.
const MAX_RECEIVE_BATCH: usize = 10;
/// ReceiveMessage's longest long poll.
const MAX_WAIT_SECONDS: u64 = 20;
/// ChangeMessageVisibility's longest timeout (12 hours).
const MAX_VISIBILITY_SECONDS: u64 = 43_200;

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
        })
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
    let code = error.code().unwrap_or_default();
    let refused_receipt = error
        .message()
        .is_some_and(|message| message.contains("ReceiptHandle"));
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
