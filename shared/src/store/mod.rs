//! The store port: links between referrals and CRM records, idempotency claims, the per-referral
//! journal and the pollers' cursors. DynamoDB in AWS; an embedded store locally.
//!
//! Each adapter is built with a retention (`COSELL_RETENTION_DAYS`): a journal entry expires at
//! its `at` plus the retention, and a cursor written with [`Store::put_cursor_until`] at the time
//! it was given. Expired records are never answered, whether or not they are gone yet (DynamoDB's
//! TTL deletes up to days late; the embedded store deletes them on open and at most hourly).

use async_trait::async_trait;
use chrono::{DateTime, TimeDelta, Utc};
use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::crm::CrmKind;
use crate::domain::projection::Projection;
pub mod dynamodb;
#[cfg(feature = "embedded")]
pub mod sqlite;

/// Which kind of CRM record a referral is linked to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum RecordKind {
    Opportunity,
    Lead,
}

/// A referral and the CRM record that stands for it, with the state both sides agreed on at the
/// last sync: the base of every change detection and three-way merge.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Link {
    pub referral_id: String,
    pub crm_id: String,
    pub record: RecordKind,
    pub crm_kind: CrmKind,
    pub engagement_id: Option<String>,
    pub synced: Option<Projection>,
    /// The referral's eTag after the last sync.
    pub referral_etag: Option<String>,
    /// The CRM record's modification time after the last sync.
    pub crm_modified_at: Option<DateTime<Utc>>,
    /// The referral reached a terminal state: nothing more is written to Partner Center.
    pub terminal: bool,
    pub last_error: Option<String>,
    /// Bumped by every write; a write expecting another version loses (no lost updates).
    pub version: u64,
    /// What the sync remembers between runs beyond the projection (stored as one JSON value,
    /// so it can grow without a change to either store's layout).
    #[serde(default)]
    pub state: LinkState,
}

/// What a link remembers between syncs, besides the last synced projection.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct LinkState {
    /// Microsoft's connected referral exists in the engagement: the co-sell deal reached
    /// Microsoft's sellers, and the engagement need not be read again to find out.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub microsoft_invited: bool,
    /// A Won the seller set too early for Partner Center; sent once this time has passed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub won_held_until: Option<DateTime<Utc>>,
    /// Per field (its Audit label), when the CRM's current value differing from the base was
    /// first seen: a field's own change time, which the record's modification time is not.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub crm_seen: BTreeMap<String, Seen>,
    /// The same for Partner Center's values.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub pc_seen: BTreeMap<String, Seen>,
    /// Conflicts already reported in Audit (field and both values), so one held conflict is
    /// written once, not at every poll.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub reported_conflicts: Vec<String>,
    /// Microsoft's referral beside ours (a shared engagement) and its eTag when last synced: a
    /// webhook or reconciliation bringing that same version again needs no further call.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub related_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub related_etag: Option<String>,
}

/// A side's value of a field (as Audit shows it) and when the connector first read it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Seen {
    pub value: String,
    pub at: DateTime<Utc>,
}

/// A command the poller enqueues once `due` has passed (a Won held for Partner Center's
/// minimum deal age). `key` names the timer: putting one with the same key replaces it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Timer {
    pub key: String,
    pub due: DateTime<Utc>,
    pub crm_id: String,
    pub referral_id: Option<String>,
}

/// What a claim on an idempotency key found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Claim {
    /// This caller holds the key now and must `complete` or `release` it.
    Acquired,
    /// The work was done already: skip it.
    Completed,
    /// Someone else is doing it right now: try again later.
    InProgress,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Outcome {
    Synced,
    Failed,
    Skipped,
}

/// One line of a referral's history, for Audit and `cosell status`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct JournalEntry {
    pub at: DateTime<Utc>,
    pub referral_id: String,
    pub outcome: Outcome,
    pub message: String,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    /// A conditional write lost: the link (or claim) changed since it was read.
    #[error("{what} changed concurrently")]
    Conflict { what: String },
    #[error("the store is unavailable: {0}")]
    Unavailable(String),
    #[error("a stored record is unreadable: {0}")]
    Corrupt(String),
}

pub type StoreResult<T> = Result<T, StoreError>;

/// The retention of a store built without one: [`crate::config::DEFAULT_RETENTION_DAYS`].
pub const DEFAULT_RETENTION: Duration =
    Duration::from_secs(crate::config::DEFAULT_RETENTION_DAYS * 24 * 3600);

/// When a journal entry written at `at` expires under `retention`; `None` (kept for ever) only
/// for a retention beyond any representable time, which the settings never allow.
pub(crate) fn expiry(at: DateTime<Utc>, retention: Duration) -> Option<DateTime<Utc>> {
    TimeDelta::from_std(retention)
        .ok()
        .and_then(|retention| at.checked_add_signed(retention))
}

#[async_trait]
pub trait Store: Send + Sync {
    async fn link_by_referral(&self, referral_id: &str) -> StoreResult<Option<Link>>;
    async fn link_by_crm(&self, crm_id: &str) -> StoreResult<Option<Link>>;
    /// Writes `link` if the stored version is `link.version - 1` (or none is stored when
    /// `link.version == 1`); otherwise `Conflict`.
    async fn put_link(&self, link: &Link) -> StoreResult<()>;
    /// Every link, ordered by referral id as the keys hold it (lowercased), at most `limit`,
    /// starting after the referral id `after` (in any case): pass the last referral id of a page
    /// to get the next one; a page shorter than `limit` is the last. For `cosell status` and
    /// backfills, not the sync path: DynamoDB answers each page by reading the whole table.
    async fn links(&self, after: Option<&str>, limit: usize) -> StoreResult<Vec<Link>>;

    /// Powertools-style idempotency: a conditional put claims `key` until `in_progress_until`;
    /// a completed key is skipped until `expires_at`; an in-progress claim whose time has passed
    /// (a crashed or timed-out worker) can be taken over.
    async fn claim(
        &self,
        key: &str,
        now: DateTime<Utc>,
        in_progress_until: DateTime<Utc>,
    ) -> StoreResult<Claim>;
    async fn complete(&self, key: &str, expires_at: DateTime<Utc>) -> StoreResult<()>;
    /// Gives a claim back after a failure, so the retry can take it at once.
    async fn release(&self, key: &str) -> StoreResult<()>;

    /// Keeps `entry` until `entry.at` plus the store's retention.
    async fn append_journal(&self, entry: &JournalEntry) -> StoreResult<()>;
    /// Newest first, at most `limit`; entries past their retention are never answered (the
    /// system clock decides), so `limit` counts only entries still kept.
    async fn journal(&self, referral_id: &str, limit: usize) -> StoreResult<Vec<JournalEntry>>;

    /// The value last put under `name`, unless it was put with an expiry that has passed by the
    /// system clock.
    async fn cursor(&self, name: &str) -> StoreResult<Option<String>>;
    /// Stores `value` under `name` for good, replacing any value and expiry.
    async fn put_cursor(&self, name: &str, value: &str) -> StoreResult<()>;
    /// Like [`Store::put_cursor`], but `cursor(name)` answers `None` once `expires_at` has
    /// passed (DynamoDB keeps the expiry to the second, rounded up), and the store may delete it
    /// from then on. A later `put_cursor` of the same name keeps it for good again.
    async fn put_cursor_until(
        &self,
        name: &str,
        value: &str,
        expires_at: DateTime<Utc>,
    ) -> StoreResult<()>;

    /// Stores `timer`, replacing any timer with the same key.
    async fn put_timer(&self, timer: &Timer) -> StoreResult<()>;
    /// Timers due at `now` or earlier, soonest first, at most `limit`.
    async fn due_timers(&self, now: DateTime<Utc>, limit: usize) -> StoreResult<Vec<Timer>>;
    /// Removes the timer with this key, if any.
    async fn delete_timer(&self, key: &str) -> StoreResult<()>;
}
