//! The queue port: sync commands between the ingress, the poller and the processor. One
//! referral's commands share a group, so they run one at a time and in order.

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
pub mod sqs;

/// One unit of work for the processor. Commands carry ids only: the processor always reads
/// fresh state from both sides, so a stale or duplicated command does no harm.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
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
    CrmChanged { crm_id: String },
}

impl SyncCommand {
    /// The FIFO group: one referral (or CRM record) at a time.
    pub fn group(&self) -> String {
        match self {
            SyncCommand::PartnerCenterChanged { referral_id, .. } => {
                format!("referral:{}", referral_id.to_ascii_lowercase())
            }
            SyncCommand::CrmChanged { crm_id } => format!("crm:{crm_id}"),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
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
    async fn send(&self, message: &Outgoing) -> Result<(), QueueError>;
}
