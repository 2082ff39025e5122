//! The Partner Center port: the Referrals API calls the sync makes. The HTTP adapter talks to
//! the real service or to the sandbox; only the base URLs differ.

pub mod http;
pub mod signature;
pub mod token;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use crate::referral::Referral;

// A patch is built by the sync rules; the port only sends it.
pub use crate::domain::outbound::PatchOp;

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum PartnerCenterError {
    /// Worth retrying later: 429, 5xx, timeout, network.
    #[error("Partner Center is unavailable for now ({status:?}): {message}")]
    Transient {
        status: Option<u16>,
        retry_after: Option<u64>,
        message: String,
    },
    /// The referral was refused as sent (400): a person must fix the data.
    #[error("Partner Center refused the referral: {message}")]
    Rejected {
        message: String,
        target: Option<String>,
    },
    /// `If-Match` no longer matches: re-read and re-apply.
    #[error("the referral changed in Partner Center since it was read")]
    PreconditionFailed,
    #[error("referral {id} was not found in Partner Center")]
    NotFound { id: String },
    /// Credentials, consent or roles: an operator must fix the configuration.
    #[error("Partner Center did not accept the connector's credentials: {message}")]
    Auth { message: String },
}

impl PartnerCenterError {
    pub fn is_transient(&self) -> bool {
        matches!(self, PartnerCenterError::Transient { .. })
    }
}

pub type PcResult<T> = Result<T, PartnerCenterError>;

#[async_trait]
pub trait PartnerCenter: Send + Sync {
    /// `None` when the referral does not exist or the user may not see it.
    async fn get_referral(&self, id: &str) -> PcResult<Option<Referral>>;
    /// The referral whose `externalReferenceId` is `crm_id`, to avoid creating a duplicate.
    async fn find_by_external_reference(&self, crm_id: &str) -> PcResult<Option<Referral>>;
    /// Every referral of an engagement (the partner's and the related ones).
    async fn engagement_referrals(&self, engagement_id: &str) -> PcResult<Vec<Referral>>;
    /// Every referral changed after `since`, oldest change first, across all pages: what the
    /// reconciliation compares with the links.
    async fn list_changed_since(&self, since: DateTime<Utc>) -> PcResult<Vec<Referral>>;
    async fn create_referral(&self, referral: &Referral) -> PcResult<Referral>;
    /// JSON Patch under `If-Match` when an eTag is given; returns the new eTag when known.
    async fn patch_referral(
        &self,
        id: &str,
        e_tag: Option<&str>,
        ops: &[PatchOp],
    ) -> PcResult<Option<String>>;
}
