//! The sync use cases, over the ports only: the function binaries and the local runner build
//! the adapters and hand them in.

pub mod batch;
pub mod consume;
pub mod dry_run;
pub mod inbound;
pub mod outbound;
pub mod poller;
#[cfg(test)]
mod tests;

use std::time::Duration;

use crate::crm::CrmError;
use crate::partner_center::PartnerCenterError;
use crate::store::StoreError;

/// The admin's options that shape what the sync writes (see docs/sync-rules.md).
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
    /// Partner Center may refuse a deal marked Won this soon after the deal was created: a
    /// seller's Won within it is held and sent once it has passed (zero sends at once).
    pub won_hold: Duration,
    /// The Services co-sell fields' checks before a referral is sent.
    pub services: crate::domain::outbound::ServicesRules,
    /// While the connector cannot act as the Referral admin (a lapsed or revoked sign-in), a
    /// message waits this long in the queue before it is tried again, and the rest of its batch
    /// with it: each try costs one of the message's receives, so they are kept few.
    pub auth_retry: Duration,
    /// The time the sync goes by (the system clock; tests follow the sandbox's).
    pub clock: Clock,
}

/// Where the sync reads the time: the system clock, or any other (a test's, which follows the
/// sandbox's clock so that days can pass in a second).
#[derive(Clone)]
pub struct Clock(std::sync::Arc<dyn Fn() -> chrono::DateTime<chrono::Utc> + Send + Sync>);

impl Clock {
    pub fn system() -> Self {
        Clock(std::sync::Arc::new(chrono::Utc::now))
    }

    pub fn new(now: impl Fn() -> chrono::DateTime<chrono::Utc> + Send + Sync + 'static) -> Self {
        Clock(std::sync::Arc::new(now))
    }

    pub fn now(&self) -> chrono::DateTime<chrono::Utc> {
        (self.0)()
    }
}

impl Default for Clock {
    fn default() -> Self {
        Clock::system()
    }
}

impl std::fmt::Debug for Clock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Clock")
    }
}

/// Every clock is the same setting: options compare by what they configure.
impl PartialEq for Clock {
    fn eq(&self, _: &Self) -> bool {
        true
    }
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
            won_hold: Duration::from_secs(72 * 3600),
            services: Default::default(),
            auth_retry: Duration::from_secs(300),
            clock: Clock::system(),
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

/// Why a queue message was not done: it is delivered again (or dead-lettered once its receives
/// are spent), not before the `Retry-After` of the service that failed it.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ProcessError {
    /// A message nobody can read fails every time, so it ends in the dead-letter queue.
    #[error("{0}")]
    Unreadable(crate::queue::QueueError),
    #[error(transparent)]
    Sync(#[from] SyncError),
    /// The connector cannot act as the Referral admin: no message can sync until a person
    /// acts, so this one and the rest of its batch wait `wait` in the queue.
    #[error("{error}")]
    SignIn {
        error: PartnerCenterError,
        wait: Duration,
    },
}

impl batch::Failure for ProcessError {
    fn retry_after(&self) -> Option<Duration> {
        use crate::retry::Transient;
        match self {
            ProcessError::Sync(SyncError::Crm(e)) => e.retry_after(),
            ProcessError::Sync(SyncError::PartnerCenter(e)) => e.retry_after(),
            ProcessError::SignIn { wait, .. } => Some(*wait),
            _ => None,
        }
    }

    fn stops_batch(&self) -> bool {
        matches!(self, ProcessError::SignIn { .. })
    }
}

/// `now` + `d`, or an hour on when `d` does not fit.
fn chrono_after(now: chrono::DateTime<chrono::Utc>, d: Duration) -> chrono::DateTime<chrono::Utc> {
    now + chrono::Duration::from_std(d).unwrap_or(chrono::Duration::hours(1))
}

/// Runs `work` under the idempotency claim `key`: a version already synced is skipped (`what`
/// names it), one another worker holds is `Busy(busy)`; success completes the claim, failure
/// gives it back for the retry (best effort: it also expires by itself).
async fn under_claim(
    store: &dyn crate::store::Store,
    options: &SyncOptions,
    key: &str,
    now: chrono::DateTime<chrono::Utc>,
    what: &str,
    busy: &str,
    work: impl Future<Output = Result<Handled, SyncError>>,
) -> Result<Handled, SyncError> {
    use crate::store::Claim;
    match store
        .claim(key, now, chrono_after(now, options.in_progress_ttl))
        .await?
    {
        Claim::Completed => {
            return Ok(Handled::Skipped {
                reason: format!("this version of the {what} is already synced"),
            });
        }
        Claim::InProgress => return Err(SyncError::Busy(busy.to_string())),
        Claim::Acquired => {}
    }
    let result = work.await;
    match &result {
        Ok(_) => {
            store
                .complete(key, chrono_after(now, options.idempotency_ttl))
                .await?
        }
        Err(_) => {
            // The claim expires by itself; a failed release only delays the retry until then.
            if let Err(err) = store.release(key).await {
                tracing::warn!(%key, error = %err, "could not give back the claim; the retry waits for it to expire");
            }
        }
    }
    result
}

/// Each two-way field's change times: `(CRM, Partner Center)`, `None` where it did not change.
type FieldTimes = std::collections::HashMap<
    crate::domain::merge::Field,
    (
        Option<chrono::DateTime<chrono::Utc>>,
        Option<chrono::DateTime<chrono::Utc>>,
    ),
>;

/// When each side changed each two-way field, for the merge's "the later change wins".
///
/// A record's modification time moves with every edit (other fields, a stage, the connector's
/// own Audit line), so it cannot date one field. What can: the first read in which a side's
/// value of the field differed from the base, dated by that read's record time (the field
/// changed at or before it). It is kept in the link's state until both sides agree again, so
/// a value changed on hold and merged days later keeps the time it was changed.
fn change_times(
    state: &mut crate::store::LinkState,
    base: &crate::domain::projection::Projection,
    crm: &crate::domain::projection::Projection,
    pc: &crate::domain::projection::Projection,
    crm_read_at: Option<chrono::DateTime<chrono::Utc>>,
    pc_read_at: Option<chrono::DateTime<chrono::Utc>>,
    now: chrono::DateTime<chrono::Utc>,
) -> FieldTimes {
    use crate::domain::merge::shown_values;
    use crate::store::Seen;
    let base_values = shown_values(base);
    let seen_at = |seen: &mut std::collections::BTreeMap<String, Seen>,
                   label: &str,
                   value: &str,
                   base_value: &str,
                   read_at: Option<chrono::DateTime<chrono::Utc>>| {
        if value == base_value {
            seen.remove(label);
            return None;
        }
        match seen.get(label) {
            Some(s) if s.value == value => Some(s.at),
            _ => {
                let at = read_at.unwrap_or(now).min(now);
                seen.insert(
                    label.to_string(),
                    Seen {
                        value: value.to_string(),
                        at,
                    },
                );
                Some(at)
            }
        }
    };
    let mut times = std::collections::HashMap::new();
    for (((field, b), (_, c)), (_, p)) in base_values
        .iter()
        .zip(shown_values(crm))
        .zip(shown_values(pc))
    {
        let label = field.label();
        let crm_at = seen_at(&mut state.crm_seen, label, &c, b, crm_read_at);
        let pc_at = seen_at(&mut state.pc_seen, label, &p, b, pc_read_at);
        times.insert(*field, (crm_at, pc_at));
    }
    times
}

/// Forgets the change times of fields where a side, once written, holds the new base again.
fn prune_seen(
    state: &mut crate::store::LinkState,
    new_base: &crate::domain::projection::Projection,
    crm_after: &crate::domain::projection::Projection,
    pc_after: &crate::domain::projection::Projection,
) {
    use crate::domain::merge::shown_values;
    let base = shown_values(new_base);
    for ((field, b), (_, c)) in base.iter().zip(shown_values(crm_after)) {
        if *b == c {
            state.crm_seen.remove(field.label());
        }
    }
    for ((field, b), (_, p)) in base.iter().zip(shown_values(pc_after)) {
        if *b == p {
            state.pc_seen.remove(field.label());
        }
    }
}

/// The conflict lines not yet reported for the same field and values; the state remembers
/// those now in conflict, so a conflict that stays (on hold) is written once.
fn unreported_conflicts(
    state: &mut crate::store::LinkState,
    merged: &crate::domain::merge::Merge,
) -> Vec<String> {
    let keys: Vec<(String, String)> = merged
        .conflicts
        .iter()
        .map(|c| {
            (
                format!("{}: {} / {}", c.field.label(), c.crm, c.pc),
                c.audit_line(),
            )
        })
        .collect();
    let fresh = keys
        .iter()
        .filter(|(k, _)| !state.reported_conflicts.contains(k))
        .map(|(_, line)| line.clone())
        .collect();
    state.reported_conflicts = keys.into_iter().map(|(k, _)| k).collect();
    fresh
}

/// The store entry that names the partner's referral beside Microsoft's referral `id`, so an
/// event or a listing of Microsoft's referral finds our link without reading the engagement.
fn related_owner_key(id: &str) -> String {
    format!("related:{}", id.to_ascii_lowercase())
}

/// Notes Microsoft's referral beside ours in the link and in the store (see
/// [`related_owner_key`]): the version that was just synced.
async fn remember_related(
    store: &dyn crate::store::Store,
    link: &mut crate::store::Link,
    related: &crate::referral::Referral,
) -> Result<(), SyncError> {
    let Some(related_id) = related.id.as_deref() else {
        return Ok(());
    };
    if link.state.related_id.as_deref() != Some(related_id) {
        store
            .put_cursor(&related_owner_key(related_id), &link.referral_id)
            .await?;
        link.state.related_id = Some(related_id.to_string());
    }
    link.state.related_etag = related.e_tag.clone();
    Ok(())
}

/// The link of the partner's referral beside Microsoft's referral `id`, when one is known.
async fn link_beside(
    store: &dyn crate::store::Store,
    id: &str,
) -> crate::store::StoreResult<Option<crate::store::Link>> {
    match store.cursor(&related_owner_key(id)).await? {
        Some(own) => store.link_by_referral(&own).await,
        None => Ok(None),
    }
}

/// The store entry a sync writes before it creates a record for `key`: a later attempt that
/// finds it knows an earlier one may have created the record and looks for it first, while a
/// first attempt spares the CRM or Partner Center that look-up.
fn attempt_key(key: &str) -> String {
    format!("attempt:{key}")
}

/// Marks that a create for `key` is about to be tried; answers whether one was tried before.
async fn tried_before(store: &dyn crate::store::Store, key: &str) -> Result<bool, SyncError> {
    let name = attempt_key(key);
    if store.cursor(&name).await?.is_some() {
        return Ok(true);
    }
    store.put_cursor(&name, "1").await?;
    Ok(false)
}

/// Trims a write to an opportunity that reads `current` to what the CRM can and need do: no
/// clear of a field it requires, no stage the record is in already (a stage write costs the
/// CRM a read to work out how).
fn fit_write(
    crm: &dyn crate::crm::Crm,
    fields: &mut crate::crm::OpportunityFields,
    current: &crate::crm::OpportunityFields,
) {
    fields.clear.retain(|c| crm.can_clear(*c));
    if fields.state == current.state {
        fields.state = None;
    }
}

/// Writes the next version of `link` (conditional on the one it was read at).
async fn save_link(
    store: &dyn crate::store::Store,
    mut link: crate::store::Link,
) -> Result<(), SyncError> {
    link.version += 1;
    Ok(store.put_link(&link).await?)
}

/// Appends a line to the journal of `key` (a referral id, or `crm:<id>` for a deal not yet
/// shared).
async fn journal(
    store: &dyn crate::store::Store,
    key: &str,
    at: chrono::DateTime<chrono::Utc>,
    outcome: crate::store::Outcome,
    message: &str,
) -> Result<(), SyncError> {
    Ok(store
        .append_journal(&crate::store::JournalEntry {
            at,
            referral_id: key.to_string(),
            outcome,
            message: message.to_string(),
        })
        .await?)
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

/// Runs one queue message against the ports: what the queue processor (and the local runner)
/// does for every message.
pub struct Processor {
    pub pc: std::sync::Arc<dyn crate::partner_center::PartnerCenter>,
    pub crm: std::sync::Arc<dyn crate::crm::Crm>,
    pub store: std::sync::Arc<dyn crate::store::Store>,
    pub options: SyncOptions,
}

impl Processor {
    /// `Err` leaves the message for redelivery; everything else is acknowledged, including
    /// failures a person must fix (they are in Audit and the journal).
    pub async fn handle(&self, body: &str) -> Result<(), ProcessError> {
        self.handle_message(body, None).await
    }

    /// [`Processor::handle`] for a message first sent at `sent_at`, which gives the metric of
    /// how long it waited.
    pub async fn handle_message(
        &self,
        body: &str,
        sent_at: Option<chrono::DateTime<chrono::Utc>>,
    ) -> Result<(), ProcessError> {
        let started = self.options.clock.now();
        let mut record = None;
        let result = self.run(body, &mut record).await;
        if let Some((direction, changed_at, recovered)) = record {
            use crate::metrics::SyncOutcome;
            let outcome = match &result {
                Err(_) => SyncOutcome::Failed,
                Ok(Handled::Created { .. }) => SyncOutcome::Created,
                Ok(Handled::Updated { .. }) => SyncOutcome::Updated,
                Ok(Handled::Unchanged) => SyncOutcome::Unchanged,
                Ok(Handled::Skipped { .. }) => SyncOutcome::Skipped,
                Ok(Handled::Failed { .. }) => SyncOutcome::Refused,
            };
            let wrote = matches!(outcome, SyncOutcome::Created | SyncOutcome::Updated);
            let since = |t: chrono::DateTime<chrono::Utc>, until: chrono::DateTime<chrono::Utc>| {
                (until - t).to_std().ok()
            };
            crate::metrics::sync(crate::metrics::SyncRecord {
                direction,
                outcome,
                message_age: sent_at.and_then(|t| since(t, started)),
                latency: changed_at
                    .filter(|_| wrote)
                    .and_then(|t| since(t, self.options.clock.now())),
                recovered: recovered && wrote,
            });
        }
        if let Err(ProcessError::Sync(SyncError::Crm(CrmError::Auth { .. }))) = &result {
            crate::metrics::count_here(crate::metrics::Metric::CrmAuthFailed, 1.0);
        }
        result.map(|_| ()).map_err(|e| match e {
            ProcessError::Sync(SyncError::PartnerCenter(
                error @ PartnerCenterError::Auth { kind, .. },
            )) if kind.blocks_every_call() => ProcessError::SignIn {
                error,
                wait: self.options.auth_retry,
            },
            other => other,
        })
    }

    /// Runs the command; `record` learns its direction, the source's change time and whether
    /// reconciliation found it, once the body is read.
    async fn run(
        &self,
        body: &str,
        record: &mut Option<(
            crate::metrics::Direction,
            Option<chrono::DateTime<chrono::Utc>>,
            bool,
        )>,
    ) -> Result<Handled, ProcessError> {
        use crate::metrics::Direction;
        let command =
            crate::queue::SyncCommand::from_body(body).map_err(ProcessError::Unreadable)?;
        match command {
            crate::queue::SyncCommand::PartnerCenterChanged { referral_id, event } => {
                let recovered =
                    event == poller::RECONCILIATION_EVENT || event == poller::RELATED_EVENT;
                *record = Some((Direction::ToCrm, None, recovered));
                let inbound = inbound::Inbound {
                    pc: self.pc.as_ref(),
                    crm: self.crm.as_ref(),
                    store: self.store.as_ref(),
                    options: &self.options,
                };
                let mut changed_at = None;
                let handled = inbound
                    .referral_changed_at(
                        &referral_id,
                        &event,
                        self.options.clock.now(),
                        &mut changed_at,
                    )
                    .await;
                *record = Some((Direction::ToCrm, changed_at, recovered));
                let handled = handled?;
                match &handled {
                    Handled::Failed { reason } => {
                        tracing::warn!(%referral_id, %event, %reason, "sync failed; shown in Audit")
                    }
                    other => tracing::info!(%referral_id, %event, outcome = ?other, "synced"),
                }
                Ok(handled)
            }
            crate::queue::SyncCommand::CrmChanged { crm_id, seen, .. } => {
                *record = Some((Direction::ToPartnerCenter, None, false));
                let outbound = outbound::Outbound {
                    pc: self.pc.as_ref(),
                    crm: self.crm.as_ref(),
                    store: self.store.as_ref(),
                    options: &self.options,
                };
                let mut changed_at = None;
                let handled = outbound
                    .opportunity_changed_at(
                        &crm_id,
                        seen.map(|s| *s),
                        self.options.clock.now(),
                        &mut changed_at,
                    )
                    .await;
                *record = Some((Direction::ToPartnerCenter, changed_at, false));
                let handled = handled?;
                match &handled {
                    Handled::Failed { reason } => {
                        tracing::warn!(%crm_id, %reason, "sync to Partner Center failed; shown in Audit")
                    }
                    other => tracing::info!(%crm_id, outcome = ?other, "synced to Partner Center"),
                }
                Ok(handled)
            }
        }
    }
}
