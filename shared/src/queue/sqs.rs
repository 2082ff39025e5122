//! The [`Queue`] on an SQS FIFO queue: one message group per referral (or CRM record), the
//! caller's deduplication id, and the command as a JSON body.
//!
//! SQS accepts group and deduplication ids of 1 to 128 printable ASCII characters. An id outside
//! that is replaced by `sha256:` and its SHA-256 in hex: still a pure function of the id, so
//! grouping and deduplication keep working, and no id is ever refused.
//!
//! Throttling and 5xx answers are retried by the SDK client's own retry strategy (standard mode,
//! with back-off); a failure that outlasts it is [`QueueError::Unavailable`].

use async_trait::async_trait;
use aws_lc_rs::digest;
use aws_sdk_sqs::Client;
use aws_sdk_sqs::error::DisplayErrorContext;

use super::{Outgoing, Queue, QueueError, SyncCommand};

/// The longest group or deduplication id SQS accepts.
const MAX_ID_LEN: usize = 128;

/// The [`Queue`] adapter for an SQS FIFO queue.
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

/// Reads a sync command from a message body (an SQS event record's `body`).
pub fn parse_message(body: &str) -> Result<SyncCommand, QueueError> {
    // serde's message names the position and what was expected, not the body itself.
    serde_json::from_str(body).map_err(|err| QueueError::Malformed(err.to_string()))
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
    fn a_command_round_trips_through_its_body() {
        let command = SyncCommand::PartnerCenterChanged {
            referral_id: "r-1".into(),
            event: "referral-updated".into(),
        };
        let body = serde_json::to_string(&command).unwrap();
        assert_eq!(parse_message(&body), Ok(command));
        assert!(matches!(
            parse_message("{\"type\":\"somethingElse\"}"),
            Err(QueueError::Malformed(_))
        ));
    }
}
