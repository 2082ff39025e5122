//! The sync use cases, over the ports only: the function binaries and the local runner build
//! the adapters and hand them in.

pub mod batch;
pub mod inbound;

use std::time::Duration;

use crate::crm::CrmError;
use crate::partner_center::PartnerCenterError;
use crate::store::StoreError;

/// The admin's options that shape what the sync writes (see sync-rules.md).
#[derive(Debug, Clone, PartialEq)]
pub struct SyncOptions {
    /// Show ✔/✖ before the opportunity name.
    pub marker: bool,
    /// Only co-sell and pipeline-sharing referrals come into the CRM; leads stay out.
    pub co_sell_only: bool,
    /// Link to a referral in Partner Center; `{id}` is replaced by the referral id.
    pub referral_link_template: String,
    /// The Audit field's size in characters; older lines are dropped to fit.
    pub audit_max_chars: usize,
    /// How long a processed referral version is remembered (duplicate webhooks are skipped).
    pub idempotency_ttl: Duration,
    /// How long a claim protects work in progress before another worker may take it over.
    pub in_progress_ttl: Duration,
}

impl Default for SyncOptions {
    fn default() -> Self {
        SyncOptions {
            marker: true,
            co_sell_only: true,
            referral_link_template:
                "https://partner.microsoft.com/dashboard/referrals/v2/opportunities/{id}/details"
                    .into(),
            audit_max_chars: 32_000,
            idempotency_ttl: Duration::from_secs(24 * 3600),
            in_progress_ttl: Duration::from_secs(300),
        }
    }
}

impl SyncOptions {
    pub fn referral_link(&self, referral_id: &str) -> String {
        self.referral_link_template.replace("{id}", referral_id)
    }
}

/// A failure that leaves the message for the queue to deliver again. Failures a person must
/// fix are not errors here: they end as Audit + ✖ and the message is acknowledged.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SyncError {
    #[error("Partner Center: {0}")]
    PartnerCenter(#[from] PartnerCenterError),
    #[error("CRM: {0}")]
    Crm(#[from] CrmError),
    #[error("store: {0}")]
    Store(#[from] StoreError),
    /// Another worker holds this referral's claim; try again after it finishes or expires.
    #[error("referral {0} is being synced by another worker")]
    Busy(String),
}

/// What one command did, for logs, metrics and tests.
#[derive(Debug, Clone, PartialEq)]
pub enum Handled {
    Created {
        crm_id: String,
    },
    Updated {
        crm_id: String,
        fields: Vec<&'static str>,
    },
    Unchanged,
    Skipped {
        reason: String,
    },
    /// A failure a person must fix; written to Audit and the journal.
    Failed {
        reason: String,
    },
}
