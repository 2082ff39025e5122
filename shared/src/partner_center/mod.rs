//! The Partner Center port: the Referrals API calls the sync makes. The HTTP adapter talks to
//! the real service or to the sandbox; only the base URLs differ.

pub mod http;
pub mod refresh_store;
pub mod signature;
pub mod signin;
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
    /// Sign-in, credentials, consent or roles: a person must act (`kind` says who and how)
    /// before any call can succeed.
    #[error("Partner Center did not accept the connector's credentials: {message}")]
    Auth { kind: AuthFailure, message: String },
}

/// Why the connector could not act as the Referral admin: each asks for a different fix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthFailure {
    /// The refresh token expired (90 days unused), was revoked or replaced: the Referral admin
    /// must sign in again with `cosell auth login`.
    SignInAgain,
    /// The password grant met an MFA requirement it cannot pass.
    PasswordGrantMfa,
    /// Partner Center refused a token that lacks Microsoft's MFA claim.
    MfaClaimMissing,
    /// Anything else about the sign-in: the app registration, its secret or certificate,
    /// consent.
    Credentials,
    /// Partner Center answered 403: the user may not do this (a role, or a referral of another
    /// organisation). Other calls can still succeed.
    Forbidden,
}

impl AuthFailure {
    pub fn name(self) -> &'static str {
        match self {
            AuthFailure::SignInAgain => "sign_in_again",
            AuthFailure::PasswordGrantMfa => "password_grant_mfa",
            AuthFailure::MfaClaimMissing => "mfa_claim_missing",
            AuthFailure::Credentials => "credentials",
            AuthFailure::Forbidden => "forbidden",
        }
    }

    /// Whether every call fails alike until a person acts (as opposed to one refused call).
    pub fn blocks_every_call(self) -> bool {
        !matches!(self, AuthFailure::Forbidden)
    }
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
