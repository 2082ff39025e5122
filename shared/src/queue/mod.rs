//! The queue port: sync commands between the ingress, the poller and the processor. One
//! referral's commands share a group, so they run one at a time and in order.
//!
//! [`Queue`] is the sending side (the ingress, the poller). [`QueueConsumer`] is the receiving
//! side as `cosell local` drives it; in AWS the Lambda event source mapping receives instead.
//! Both adapters (SQS FIFO, and the embedded queue) behave as an SQS FIFO queue with a
//! redrive policy does: the contract suite in the tests holds them to it.

use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
#[cfg(feature = "embedded")]
pub mod embedded;
pub mod sqs;

/// One unit of work for the processor. Commands carry ids, and at most a snapshot the processor
/// may use instead of a read when it cannot be older than what was synced: a stale or
/// duplicated command does no harm.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "camelCase")]
pub enum SyncCommand {
    /// Partner Center says this referral changed (a webhook, or reconciliation).
    #[serde(rename_all = "camelCase")]
    PartnerCenterChanged {
        referral_id: String,
        /// The webhook's event name, e.g. `related-referral-updated`.
        event: String,
    },
    /// The CRM record changed.
    #[serde(rename_all = "camelCase")]
    CrmChanged {
        crm_id: String,
        /// The referral the record is linked to, when it is: its commands from both sides
        /// then share one group, so they never run at the same time.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        referral_id: Option<String>,
        /// The opportunity as the poller read it from the change feed, so the processor need
        /// not read it again; absent when the record was too large to carry.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        seen: Option<Box<crate::crm::Opportunity>>,
    },
}

impl SyncCommand {
    /// Reads a sync command from a message body (an SQS event record's `body`).
    pub fn from_body(body: &str) -> Result<SyncCommand, QueueError> {
        // serde's message names the position and what was expected, not the body itself.
        serde_json::from_str(body).map_err(|err| QueueError::Malformed(err.to_string()))
    }

    /// The FIFO group: one referral (or CRM record) at a time.
    pub fn group(&self) -> String {
        match self {
            SyncCommand::PartnerCenterChanged { referral_id, .. } => {
                format!("referral:{}", referral_id.to_ascii_lowercase())
            }
            SyncCommand::CrmChanged {
                referral_id: Some(referral_id),
                ..
            } => format!("referral:{}", referral_id.to_ascii_lowercase()),
            SyncCommand::CrmChanged { crm_id, .. } => format!("crm:{crm_id}"),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Outgoing {
    pub command: SyncCommand,
    /// Sends with the same id within the queue's window are delivered once.
    pub dedup_id: String,
}

#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum QueueError {
    #[error("the queue is unavailable: {0}")]
    Unavailable(String),
    #[error("the message is not a sync command: {0}")]
    Malformed(String),
}

#[async_trait]
pub trait Queue: Send + Sync {
    /// Enqueues `message` at the end of its group, unless a message with the same
    /// deduplication id was sent within the queue's deduplication window (then it succeeds and
    /// nothing is added).
    async fn send(&self, message: &Outgoing) -> Result<(), QueueError>;
}

/// A received message, invisible to other receivers until its visibility timeout passes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    pub message_id: String,
    pub group: String,
    pub body: String,
    /// Names this receipt of the message for [`QueueConsumer::delete`] and
    /// [`QueueConsumer::release`]; a later receipt of the same message gets a new one.
    pub receipt: String,
    /// How many times the message was received, this time included.
    pub receive_count: u32,
    /// When the message was first sent; `None` when the queue did not say.
    pub sent_at: Option<DateTime<Utc>>,
}

/// A message as it waits in a queue, read without taking it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Parked {
    pub message_id: String,
    pub group: String,
    pub body: String,
    /// When the message was first sent (for a dead letter: to the queue it failed in, as far as
    /// the queue keeps that).
    pub sent_at: DateTime<Utc>,
    /// How many times it was received before this look. A dead letter keeps the count it had in
    /// the queue it failed in, where the queue keeps that.
    pub receive_count: u32,
    /// Received and neither deleted nor visible again yet.
    pub in_flight: bool,
}

/// Messages in a queue, as SQS's approximate counts report them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct QueueDepth {
    /// Waiting to be received (including those held back behind their group).
    pub waiting: u64,
    /// Received and neither deleted nor visible again yet.
    pub in_flight: u64,
}

impl QueueDepth {
    pub fn total(&self) -> u64 {
        self.waiting + self.in_flight
    }
}

/// The receiving side of a FIFO queue.
///
/// - `receive` answers up to `max` messages, oldest first within each group, and never a message
///   of a group that has one in flight (received, not yet deleted or visible again); it waits up
///   to `wait` for one when none is ready.
/// - A received message that is not deleted becomes visible again when the queue's visibility
///   timeout passes (a crashed receiver loses nothing), or when released.
/// - A message received the queue's maximum receive count times and still not deleted moves to
///   the dead-letter queue at the next receive, instead of being delivered again.
#[async_trait]
pub trait QueueConsumer: Send + Sync {
    async fn receive(&self, max: usize, wait: Duration) -> Result<Vec<Delivery>, QueueError>;
    /// The message is done with. Deleting with a stale receipt (the message was received again
    /// since) is not an error, as with SQS.
    async fn delete(&self, receipt: &str) -> Result<(), QueueError>;
    /// Makes an in-flight message visible again after `delay` (zero: at once).
    async fn release(&self, receipt: &str, delay: Duration) -> Result<(), QueueError>;
    async fn depth(&self) -> Result<QueueDepth, QueueError>;
}

/// A dead-letter queue, for people: what failed past the maximum receive count, and putting it
/// back once the cause is fixed. Nothing here is on the processor's path.
#[async_trait]
pub trait DeadLetters: Send + Sync {
    /// Where the messages are, for people: the queue's name or URL.
    fn describe(&self) -> String;
    /// Up to `limit` dead-lettered messages, oldest first (in the order they were dead-lettered).
    async fn peek(&self, limit: usize) -> Result<Vec<Parked>, QueueError>;
    /// Moves every dead-lettered message `select` picks back to the queue it failed in, at the
    /// end of its own group (the same group id), its receive count starting again; the others
    /// stay. Answers how many moved. Running it again moves nothing already moved.
    async fn redrive(
        &self,
        select: &(dyn for<'p> Fn(&'p Parked) -> bool + Send + Sync),
    ) -> Result<usize, QueueError>;
    async fn depth(&self) -> Result<QueueDepth, QueueError>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_command_round_trips_through_its_body() {
        let command = SyncCommand::PartnerCenterChanged {
            referral_id: "r-1".into(),
            event: "referral-updated".into(),
        };
        let body = serde_json::to_string(&command).unwrap();
        assert_eq!(SyncCommand::from_body(&body), Ok(command));
        assert!(matches!(
            SyncCommand::from_body("{\"type\":\"somethingElse\"}"),
            Err(QueueError::Malformed(_))
        ));
    }

    #[test]
    fn a_linked_crm_change_waits_in_its_referrals_group() {
        let webhook = SyncCommand::PartnerCenterChanged {
            referral_id: "ABC-1".into(),
            event: "referral-updated".into(),
        };
        let linked = SyncCommand::CrmChanged {
            crm_id: "0065g00000XyZ12AAB".into(),
            referral_id: Some("abc-1".into()),
            seen: None,
        };
        let new = SyncCommand::CrmChanged {
            crm_id: "0065g00000XyZ12AAB".into(),
            referral_id: None,
            seen: None,
        };
        assert_eq!(linked.group(), webhook.group());
        assert_eq!(new.group(), "crm:0065g00000XyZ12AAB");
        // A command from before the field existed still reads.
        let old: SyncCommand =
            serde_json::from_str(r#"{"type":"crmChanged","crmId":"x"}"#).expect("parses");
        assert_eq!(old.group(), "crm:x");
    }
}
