//! What the CRM change poller does on each run (the `crm-poller` function on a schedule, a loop
//! in `cosell local`): enqueue a sync command for every opportunity whose synced fields changed
//! in the CRM, and reconcile with Partner Center, so a webhook that never arrived costs one
//! interval, not a lost referral.
//!
//! Both halves only enqueue: the processor reads fresh state and decides, so a command enqueued
//! twice (an overlap, a repeated page after a crash) does no harm. A cursor only moves after the
//! commands of what it covers are in the queue.

use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::crm::{Crm, CrmError, Opportunity};
use crate::domain::echo::{LinkFacts, crm_change_needs_sync};
use crate::domain::outbound::crm_projection;
use crate::partner_center::{PartnerCenter, PartnerCenterError};
use crate::queue::{Outgoing, Queue, QueueError, SyncCommand};
use crate::referral::Referral;
use crate::store::{Store, StoreError};

/// The store cursor of the CRM change feed (the adapter's own format).
pub const CRM_CURSOR: &str = "crm-opportunities";
/// The store cursor of the reconciliation: the newest `updatedDateTime` seen (RFC 3339).
pub const RECONCILIATION_CURSOR: &str = "partner-center-referrals";
/// At most this many due timers are fired per run; the rest wait for the next.
const TIMERS_PER_RUN: usize = 100;
/// The event name reconciliation gives its commands for the partner's referrals (webhooks give
/// theirs).
pub const RECONCILIATION_EVENT: &str = "reconciliation";
/// The event it gives Microsoft's referrals: they only update the Microsoft fields of ours.
/// A `related-` event as the webhooks' are, but its own name, so that what reconciliation
/// recovers can be told from what a webhook brought.
pub const RELATED_EVENT: &str = "related-referral-reconciled";
/// `organizationId` of Microsoft's own referrals (as `inviteContext.invitedBy` names Microsoft).
pub const MICROSOFT_ORGANIZATION_ID: &str = "msft";

#[derive(Debug, Clone, PartialEq)]
pub struct PollerOptions {
    /// Reconciliation lists referrals changed since its watermark minus this, so a change
    /// stamped just before the last run's newest one (clocks, paging) is not missed.
    pub reconciliation_overlap: Duration,
    /// How far back the first reconciliation looks.
    pub reconciliation_first_window: Duration,
    /// A referral changed more recently than this is left to its webhook, which is usually
    /// still on its way or in the queue; a later run picks it up if the webhook never came.
    pub reconciliation_grace: Duration,
    /// A bound on pages per run, so one run cannot go on forever while sellers keep editing.
    pub max_pages: usize,
    /// How long the per-referral reconciliation cursors are kept (`COSELL_RETENTION_DAYS`):
    /// one per referral never linked, which would otherwise pile up for good.
    pub cursor_retention: Duration,
}

impl Default for PollerOptions {
    fn default() -> Self {
        PollerOptions {
            reconciliation_overlap: Duration::from_secs(10 * 60),
            reconciliation_first_window: Duration::from_secs(24 * 3600),
            reconciliation_grace: Duration::from_secs(60),
            max_pages: 100,
            cursor_retention: crate::store::DEFAULT_RETENTION,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum PollError {
    #[error("CRM: {0}")]
    Crm(#[from] CrmError),
    #[error("Partner Center: {0}")]
    PartnerCenter(#[from] PartnerCenterError),
    #[error("store: {0}")]
    Store(#[from] StoreError),
    #[error("queue: {0}")]
    Queue(#[from] QueueError),
}

/// The store cursor holding the last run's [`LastPoll`] (JSON), for `cosell status`.
pub const LAST_POLL_CURSOR: &str = "status:last-poll";

/// When the poller last ran, what it found, and what went wrong.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LastPoll {
    pub at: DateTime<Utc>,
    pub report: PollReport,
    pub errors: Vec<String>,
}

/// What one run did, for the log line and the function's answer.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PollReport {
    pub crm_pages: usize,
    pub crm_changed: usize,
    pub crm_enqueued: usize,
    pub referrals_listed: usize,
    pub referrals_enqueued: usize,
    /// Held commands (a Won waiting for the deal's minimum age) enqueued because they came due.
    pub timers_fired: usize,
}

/// The ports a poll runs against.
pub struct Poller<'a> {
    pub crm: &'a dyn Crm,
    pub pc: &'a dyn PartnerCenter,
    pub store: &'a dyn Store,
    pub queue: &'a dyn Queue,
    pub options: &'a PollerOptions,
}

impl Poller<'_> {
    /// Both halves, side by side: they read different services and keep different cursors,
    /// so a run takes as long as the slower one, and a failure of one does not keep the other
    /// from running.
    pub async fn run(&self, now: DateTime<Utc>) -> (PollReport, Vec<PollError>) {
        let crm_side = async {
            let mut report = PollReport::default();
            let mut errors = Vec::new();
            if let Err(e) = self.poll_crm(now, &mut report).await {
                errors.push(e);
            }
            if let Err(e) = self.fire_timers(now, &mut report).await {
                errors.push(e);
            }
            (report, errors)
        };
        let partner_center_side = async {
            let mut report = PollReport::default();
            let result = self.reconcile(now, &mut report).await;
            (report, result)
        };
        let ((mut report, mut errors), (reconciled, result)) =
            tokio::join!(crm_side, partner_center_side);
        report.referrals_listed += reconciled.referrals_listed;
        report.referrals_enqueued += reconciled.referrals_enqueued;
        if let Err(e) = result {
            errors.push(e);
        }
        self.record(now, &report, &errors).await;
        (report, errors)
    }

    /// The run's metrics, and its summary in the store for `cosell status`. Best effort: a
    /// summary that cannot be kept must not fail the run it describes.
    async fn record(&self, now: DateTime<Utc>, report: &PollReport, errors: &[PollError]) {
        use crate::metrics::{Line, Metric};
        let n = |v: usize| v as f64;
        Line::here()
            .count("PollRuns", 1.0)
            .count("CrmChangesFound", n(report.crm_changed))
            .count("CrmPages", n(report.crm_pages))
            .count("CrmEnqueued", n(report.crm_enqueued))
            .count("ReferralsListed", n(report.referrals_listed))
            .count("ReferralsEnqueued", n(report.referrals_enqueued))
            .count("TimersFired", n(report.timers_fired))
            .count("PollErrors", n(errors.len()))
            .emit();
        if errors
            .iter()
            .any(|e| matches!(e, PollError::Crm(CrmError::Auth { .. })))
        {
            crate::metrics::count_here(Metric::CrmAuthFailed, 1.0);
        }
        let summary = LastPoll {
            at: now,
            report: report.clone(),
            errors: errors.iter().map(ToString::to_string).collect(),
        };
        let written = match serde_json::to_string(&summary) {
            Ok(json) => self.store.put_cursor(LAST_POLL_CURSOR, &json).await,
            Err(e) => Err(StoreError::Corrupt(e.to_string())),
        };
        if let Err(e) = written {
            tracing::warn!(error = %e, "cannot keep the poll's summary for cosell status");
        }
    }

    /// Follows the CRM change feed from the stored cursor, page by page.
    pub async fn poll_crm(
        &self,
        now: DateTime<Utc>,
        report: &mut PollReport,
    ) -> Result<(), PollError> {
        let mut cursor = self.store.cursor(CRM_CURSOR).await?;
        for _ in 0..self.options.max_pages.max(1) {
            let page = self.crm.opportunity_changes(cursor.as_deref()).await?;
            report.crm_pages += 1;
            for opportunity in &page.opportunities {
                report.crm_changed += 1;
                if let Some(referral_id) = self.needs_sync(opportunity, now).await? {
                    self.queue
                        .send(&Outgoing {
                            command: SyncCommand::CrmChanged {
                                crm_id: opportunity.id.clone(),
                                referral_id,
                                seen: carried(opportunity),
                            },
                            dedup_id: crm_dedup_id(opportunity),
                        })
                        .await?;
                    report.crm_enqueued += 1;
                }
            }
            self.store.put_cursor(CRM_CURSOR, &page.cursor).await?;
            cursor = Some(page.cursor);
            if !page.more {
                break;
            }
        }
        Ok(())
    }

    /// Whether an opportunity differs from what was last synced: new with Sync = yes, or a
    /// shared field or its stage changed. The connector's own writes project to the last synced
    /// state, so they are never enqueued (no echo). `Some` holds the linked referral, if any.
    async fn needs_sync(
        &self,
        opportunity: &Opportunity,
        now: DateTime<Utc>,
    ) -> Result<Option<Option<String>>, PollError> {
        if opportunity.fields.sync_with_partner_center != Some(true) {
            return Ok(None);
        }
        let link = self.store.link_by_crm(&opportunity.id).await?;
        let facts = link.as_ref().map(|l| LinkFacts {
            synced: l.synced.as_ref(),
            terminal: l.terminal,
            won_held_until: l.state.won_held_until,
        });
        if !crm_change_needs_sync(opportunity, facts, now) {
            return Ok(None);
        }
        Ok(Some(link.map(|l| l.referral_id)))
    }

    /// Enqueues the command of every timer that has come due (a held Won), then forgets it.
    /// A crash between the two enqueues it again next run: the processor's claim makes that
    /// harmless.
    pub async fn fire_timers(
        &self,
        now: DateTime<Utc>,
        report: &mut PollReport,
    ) -> Result<(), PollError> {
        for timer in self.store.due_timers(now, TIMERS_PER_RUN).await? {
            self.queue
                .send(&Outgoing {
                    command: SyncCommand::CrmChanged {
                        crm_id: timer.crm_id.clone(),
                        referral_id: timer.referral_id.clone(),
                        seen: None,
                    },
                    dedup_id: format!("timer:{}:{}", timer.key, timer.due.timestamp()),
                })
                .await?;
            self.store.delete_timer(&timer.key).await?;
            report.timers_fired += 1;
        }
        Ok(())
    }

    /// Lists referrals changed since the watermark and enqueues those whose eTag is not the
    /// one the link recorded.
    pub async fn reconcile(
        &self,
        now: DateTime<Utc>,
        report: &mut PollReport,
    ) -> Result<(), PollError> {
        let watermark = match self.store.cursor(RECONCILIATION_CURSOR).await? {
            Some(text) => DateTime::parse_from_rfc3339(&text)
                .map(|t| t.with_timezone(&Utc))
                .map_err(|_| {
                    StoreError::Corrupt(format!(
                        "the cursor {RECONCILIATION_CURSOR} is not an RFC 3339 time"
                    ))
                })?,
            None => now - chrono_duration(self.options.reconciliation_first_window),
        };
        let since = watermark - chrono_duration(self.options.reconciliation_overlap);
        let referrals = self.pc.list_changed_since(since).await?;
        report.referrals_listed += referrals.len();
        let mut newest = watermark;
        let settled = now - chrono_duration(self.options.reconciliation_grace);
        for referral in &referrals {
            let Some(id) = referral.id.as_deref() else {
                continue;
            };
            if let Some(updated) = updated_at(referral) {
                if updated > settled {
                    // Not yet: the watermark stays before it, so the next run lists it again.
                    continue;
                }
                newest = newest.max(updated);
            }
            // Microsoft's own referral beside ours: what its missed webhook would have said.
            let microsoft = referral
                .organization_id
                .as_deref()
                .is_some_and(|o| o.eq_ignore_ascii_case(MICROSOFT_ORGANIZATION_ID));
            let link = self.store.link_by_referral(id).await?;
            let e_tag = referral.e_tag.as_deref().unwrap_or("");
            let seen_key = format!("reconciled:{}", id.to_ascii_lowercase());
            // Microsoft's referral beside a synced one of ours: behind when the link saw
            // another version of it.
            let beside = match (&link, microsoft) {
                (None, true) => super::link_beside(self.store, id).await?,
                _ => None,
            };
            let behind = match (&link, &beside) {
                (Some(link), _) => link.referral_etag.as_deref() != referral.e_tag.as_deref(),
                (None, Some(own)) => own.state.related_etag.as_deref() != referral.e_tag.as_deref(),
                // Never linked (a referral the CRM does not take, a new one whose webhook was
                // missed, Microsoft's): handed to the processor once per version, which decides
                // and journals; the overlap lists it again and again otherwise.
                (None, None) => self.store.cursor(&seen_key).await?.as_deref() != Some(e_tag),
            };
            if behind {
                let event = if microsoft {
                    RELATED_EVENT
                } else {
                    RECONCILIATION_EVENT
                };
                self.queue
                    .send(&Outgoing {
                        command: SyncCommand::PartnerCenterChanged {
                            referral_id: id.to_string(),
                            event: event.to_string(),
                        },
                        dedup_id: format!(
                            "reconcile:{}:{}",
                            id.to_ascii_lowercase(),
                            referral.e_tag.as_deref().unwrap_or("")
                        ),
                    })
                    .await?;
                report.referrals_enqueued += 1;
                if link.is_none() && beside.is_none() {
                    let until = now + chrono_duration(self.options.cursor_retention);
                    self.store.put_cursor_until(&seen_key, e_tag, until).await?;
                }
            }
        }
        self.store
            .put_cursor(
                RECONCILIATION_CURSOR,
                &newest.to_rfc3339_opts(chrono::SecondsFormat::Nanos, true),
            )
            .await?;
        Ok(())
    }
}

/// One command per version of a CRM record: the same version seen twice (an overlap, a repeated
/// page) is enqueued once.
fn crm_dedup_id(opportunity: &Opportunity) -> String {
    format!(
        "crm:{}:{}",
        opportunity.id,
        opportunity_version(opportunity)
    )
}

/// The largest opportunity a command carries (its JSON), far below SQS's 256 KiB message
/// limit: a record with a long Audit is read again by the processor instead.
const MAX_CARRIED_BYTES: usize = 32 * 1024;

/// The opportunity as the feed returned it, for the processor to use instead of reading it
/// again, when it is small enough to travel in the message.
fn carried(opportunity: &Opportunity) -> Option<Box<Opportunity>> {
    let size = serde_json::to_vec(opportunity).map(|v| v.len()).ok()?;
    (size <= MAX_CARRIED_BYTES).then(|| Box::new(opportunity.clone()))
}

/// What identifies a version of an opportunity for the sync: its modification time and a digest
/// of what the outbound sync reads from it. The time alone cannot: the CRMs keep it to the
/// second, and a seller's edit in the same second as the connector's last write would look like
/// no change. The digest alone cannot either: a value changed and changed back is a new version.
pub fn opportunity_version(opportunity: &Opportunity) -> String {
    let f = &opportunity.fields;
    let material = serde_json::json!([
        opportunity.modified_at,
        crm_projection(f),
        f.state,
        f.sync_with_partner_center,
        f.account_id,
        f.contact_id,
        f.referral_id,
        // The connector's own writes change these, so a value changed and changed back within
        // one second still makes a new version.
        f.name,
        f.audit,
    ]);
    let digest =
        aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, material.to_string().as_bytes());
    digest.as_ref()[..12]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn updated_at(referral: &Referral) -> Option<DateTime<Utc>> {
    referral
        .updated_date_time
        .as_deref()
        .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
        .map(|t| t.with_timezone(&Utc))
}

fn chrono_duration(d: Duration) -> chrono::Duration {
    chrono::Duration::from_std(d).unwrap_or(chrono::Duration::MAX)
}
