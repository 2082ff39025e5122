//! A dry run: the poller and the processor read both sides and decide exactly as they would, but
//! every write to the CRM, to Partner Center and to the store is kept aside instead of made.
//! `cosell dry-run` prints the planned writes; `COSELL_DRY_RUN=true` has a deployed stack's
//! processor and poller log them (test against a staging CRM before production).
//!
//! The ports are wrapped, not the sync: the decisions come from the same code as a real run, so
//! what the dry run shows is what a real run would write, read for read. A record the dry run
//! "created" gets an id of the form `dry-run-N`; reads of such an id find nothing, as the CRM
//! would answer for an id it never issued.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::Value;

use crate::crm::{
    Account, AccountFields, CatalogEntry, CatalogSolution, ChangePage, ClearField, Contact,
    ContactFields, Crm, CrmKind, CrmResult, Lead, LeadFields, Opportunity, OpportunityFields,
};
use crate::domain::outbound::patch::PatchOp;
use crate::partner_center::{PartnerCenter, PcResult};
use crate::queue::{Outgoing, Queue, QueueError, SyncCommand};
use crate::referral::Referral;
use crate::store::{Claim, JournalEntry, Link, Store, StoreResult, Timer};

/// Where a planned write would have gone.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Side {
    #[serde(rename = "CRM")]
    Crm,
    #[serde(rename = "Partner Center")]
    PartnerCenter,
}

impl std::fmt::Display for Side {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Side::Crm => "CRM",
            Side::PartnerCenter => "Partner Center",
        })
    }
}

/// A write the dry run kept instead of making.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PlannedWrite {
    pub side: Side,
    /// What it would do, e.g. `update opportunity`.
    pub action: String,
    /// The record written, when it exists already.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    /// The fields written (empty ones left out), as the connector names them.
    pub fields: BTreeMap<String, Value>,
}

impl PlannedWrite {
    /// One line for people: `CRM: update opportunity 0061…: name, audit`.
    pub fn summary(&self) -> String {
        let target = self
            .target
            .as_deref()
            .map(|t| format!(" {t}"))
            .unwrap_or_default();
        let fields = if self.fields.is_empty() {
            String::new()
        } else {
            format!(
                ": {}",
                self.fields
                    .iter()
                    .map(|(k, v)| format!("{k}={}", short(v)))
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        };
        format!("{}: {}{target}{fields}", self.side, self.action)
    }
}

/// A value as a summary shows it: long text (the Audit field) cut to its first 40 characters.
fn short(value: &Value) -> String {
    let text = match value {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    let first_line = text.lines().next().unwrap_or_default();
    let mut cut: String = first_line.chars().take(40).collect();
    if cut.len() < text.len() {
        cut.push('…');
    }
    cut
}

/// The fields of a serialisable write, without the empty ones.
fn fields_of(value: &impl Serialize) -> BTreeMap<String, Value> {
    match serde_json::to_value(value) {
        Ok(Value::Object(map)) => map
            .into_iter()
            .filter(|(_, v)| !v.is_null() && v != &Value::Array(Vec::new()))
            .collect(),
        Ok(other) => BTreeMap::from([("value".to_string(), other)]),
        Err(_) => BTreeMap::new(),
    }
}

/// The planned writes, in order, shared by the wrapped ports of one dry run.
#[derive(Debug, Default)]
pub struct Recorder {
    writes: Mutex<Vec<PlannedWrite>>,
    next_id: AtomicU64,
    /// Log each write as it is planned (a deployed stack's dry run).
    log: bool,
}

impl Recorder {
    pub fn new() -> Arc<Recorder> {
        Arc::new(Recorder::default())
    }

    /// A recorder that also logs every planned write, for `COSELL_DRY_RUN`.
    pub fn logging() -> Arc<Recorder> {
        Arc::new(Recorder {
            log: true,
            ..Recorder::default()
        })
    }

    fn record(
        &self,
        side: Side,
        action: &str,
        target: Option<&str>,
        fields: BTreeMap<String, Value>,
    ) {
        let write = PlannedWrite {
            side,
            action: action.to_string(),
            target: target.map(str::to_string),
            fields,
        };
        if self.log {
            tracing::info!(write = %write.summary(), "dry run: would write");
        }
        self.writes
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(write);
    }

    fn fake_id(&self) -> String {
        format!(
            "dry-run-{}",
            self.next_id.fetch_add(1, Ordering::Relaxed) + 1
        )
    }

    /// The writes planned since the last call.
    pub fn take(&self) -> Vec<PlannedWrite> {
        std::mem::take(&mut *self.writes.lock().unwrap_or_else(PoisonError::into_inner))
    }
}

/// Whether `id` is one the dry run made up.
fn invented(id: &str) -> bool {
    id.starts_with("dry-run-")
}

/// The CRM with its writes kept aside.
pub struct DryRunCrm {
    pub inner: Arc<dyn Crm>,
    pub recorder: Arc<Recorder>,
}

impl DryRunCrm {
    fn write(&self, action: &str, target: Option<&str>, fields: BTreeMap<String, Value>) {
        self.recorder.record(Side::Crm, action, target, fields);
    }

    fn create(&self, action: &str, fields: BTreeMap<String, Value>) -> String {
        self.write(action, None, fields);
        self.recorder.fake_id()
    }
}

#[async_trait]
impl Crm for DryRunCrm {
    fn kind(&self) -> CrmKind {
        self.inner.kind()
    }

    fn can_clear(&self, field: ClearField) -> bool {
        self.inner.can_clear(field)
    }

    async fn get_opportunity(&self, id: &str) -> CrmResult<Option<Opportunity>> {
        if invented(id) {
            return Ok(None);
        }
        self.inner.get_opportunity(id).await
    }

    async fn find_opportunity_by_referral(
        &self,
        referral_id: &str,
    ) -> CrmResult<Option<Opportunity>> {
        self.inner.find_opportunity_by_referral(referral_id).await
    }

    async fn create_opportunity(&self, fields: &OpportunityFields) -> CrmResult<String> {
        Ok(self.create("create opportunity", fields_of(fields)))
    }

    async fn update_opportunity(&self, id: &str, fields: &OpportunityFields) -> CrmResult<()> {
        self.write("update opportunity", Some(id), fields_of(fields));
        Ok(())
    }

    async fn get_lead(&self, id: &str) -> CrmResult<Option<Lead>> {
        if invented(id) {
            return Ok(None);
        }
        self.inner.get_lead(id).await
    }

    async fn find_lead_by_referral(&self, referral_id: &str) -> CrmResult<Option<Lead>> {
        self.inner.find_lead_by_referral(referral_id).await
    }

    async fn create_lead(&self, fields: &LeadFields) -> CrmResult<String> {
        Ok(self.create("create lead", fields_of(fields)))
    }

    async fn update_lead(&self, id: &str, fields: &LeadFields) -> CrmResult<()> {
        self.write("update lead", Some(id), fields_of(fields));
        Ok(())
    }

    async fn account_candidates(
        &self,
        key: &crate::domain::accounts::AccountKey,
    ) -> CrmResult<Vec<Account>> {
        self.inner.account_candidates(key).await
    }

    async fn create_account(&self, fields: &AccountFields) -> CrmResult<String> {
        Ok(self.create("create account", fields_of(fields)))
    }

    async fn find_contact_by_email(&self, email: &str) -> CrmResult<Option<Contact>> {
        self.inner.find_contact_by_email(email).await
    }

    async fn create_contact(&self, fields: &ContactFields) -> CrmResult<String> {
        Ok(self.create("create contact", fields_of(fields)))
    }

    async fn attach_contact(&self, opportunity_id: &str, contact_id: &str) -> CrmResult<()> {
        self.write(
            "attach contact",
            Some(opportunity_id),
            BTreeMap::from([("contact".into(), Value::String(contact_id.into()))]),
        );
        Ok(())
    }

    async fn solution_links(&self, opportunity_id: &str) -> CrmResult<Vec<String>> {
        if invented(opportunity_id) {
            return Ok(Vec::new());
        }
        self.inner.solution_links(opportunity_id).await
    }

    async fn add_solution_link(&self, opportunity_id: &str, solution_id: &str) -> CrmResult<()> {
        self.write(
            "link solution",
            Some(opportunity_id),
            BTreeMap::from([("solution".into(), Value::String(solution_id.into()))]),
        );
        Ok(())
    }

    async fn opportunity_changes(&self, cursor: Option<&str>) -> CrmResult<ChangePage> {
        self.inner.opportunity_changes(cursor).await
    }

    async fn get_account(&self, id: &str) -> CrmResult<Option<Account>> {
        if invented(id) {
            return Ok(None);
        }
        self.inner.get_account(id).await
    }

    async fn get_contact(&self, id: &str) -> CrmResult<Option<Contact>> {
        if invented(id) {
            return Ok(None);
        }
        self.inner.get_contact(id).await
    }

    async fn catalog(&self) -> CrmResult<Vec<CatalogEntry>> {
        self.inner.catalog().await
    }

    async fn create_catalog_solution(&self, solution: &CatalogSolution) -> CrmResult<String> {
        Ok(self.create("create catalog solution", fields_of(solution)))
    }

    async fn update_catalog_solution(
        &self,
        crm_id: &str,
        solution: &CatalogSolution,
    ) -> CrmResult<()> {
        self.write("update catalog solution", Some(crm_id), fields_of(solution));
        Ok(())
    }
}

/// Partner Center with its writes kept aside.
pub struct DryRunPartnerCenter {
    pub inner: Arc<dyn PartnerCenter>,
    pub recorder: Arc<Recorder>,
}

#[async_trait]
impl PartnerCenter for DryRunPartnerCenter {
    async fn get_referral(&self, id: &str) -> PcResult<Option<Referral>> {
        if invented(id) {
            return Ok(None);
        }
        self.inner.get_referral(id).await
    }

    async fn find_by_external_reference(&self, crm_id: &str) -> PcResult<Option<Referral>> {
        if invented(crm_id) {
            return Ok(None);
        }
        self.inner.find_by_external_reference(crm_id).await
    }

    async fn engagement_referrals(&self, engagement_id: &str) -> PcResult<Vec<Referral>> {
        if invented(engagement_id) {
            return Ok(Vec::new());
        }
        self.inner.engagement_referrals(engagement_id).await
    }

    async fn list_changed_since(&self, since: DateTime<Utc>) -> PcResult<Vec<Referral>> {
        self.inner.list_changed_since(since).await
    }

    async fn create_referral(&self, referral: &Referral) -> PcResult<Referral> {
        self.recorder.record(
            Side::PartnerCenter,
            "create referral",
            None,
            fields_of(referral),
        );
        // What Partner Center answers a create with: the referral with its new ids.
        let mut created = referral.clone();
        created.id = Some(self.recorder.fake_id());
        created.engagement_id = Some(self.recorder.fake_id());
        created.e_tag = Some("dry-run".into());
        Ok(created)
    }

    async fn patch_referral(
        &self,
        id: &str,
        _e_tag: Option<&str>,
        ops: &[PatchOp],
    ) -> PcResult<Option<String>> {
        let fields = ops
            .iter()
            .map(|op| {
                (
                    op.path.trim_start_matches('/').to_string(),
                    op.value.clone(),
                )
            })
            .collect();
        self.recorder
            .record(Side::PartnerCenter, "update referral", Some(id), fields);
        Ok(None)
    }
}

/// What a dry run's store holds beside the real one.
#[derive(Debug, Default)]
struct Overlay {
    links: HashMap<String, Link>,
    /// CRM id → referral id (lowercased) of the links above.
    by_crm: HashMap<String, String>,
    completed: HashMap<String, ()>,
    cursors: HashMap<String, String>,
    timers: HashMap<String, Option<Timer>>,
}

/// The store, read through, with every write kept in memory. With a cursor prefix the cursors
/// are written to the real store under that prefix instead (and read from there), so that a
/// deployed poller in a dry run reports each change once, and moves none of the real cursors.
pub struct DryRunStore {
    pub inner: Arc<dyn Store>,
    overlay: Mutex<Overlay>,
    cursor_prefix: Option<String>,
}

impl DryRunStore {
    pub fn new(inner: Arc<dyn Store>) -> DryRunStore {
        DryRunStore {
            inner,
            overlay: Mutex::default(),
            cursor_prefix: None,
        }
    }

    /// Cursors kept in the real store under `prefix` (see the type's doc).
    pub fn with_cursor_prefix(inner: Arc<dyn Store>, prefix: &str) -> DryRunStore {
        DryRunStore {
            cursor_prefix: Some(prefix.to_string()),
            ..DryRunStore::new(inner)
        }
    }

    fn overlay(&self) -> std::sync::MutexGuard<'_, Overlay> {
        self.overlay.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[async_trait]
impl Store for DryRunStore {
    async fn link_by_referral(&self, referral_id: &str) -> StoreResult<Option<Link>> {
        if let Some(link) = self.overlay().links.get(&referral_id.to_ascii_lowercase()) {
            return Ok(Some(link.clone()));
        }
        self.inner.link_by_referral(referral_id).await
    }

    async fn link_by_crm(&self, crm_id: &str) -> StoreResult<Option<Link>> {
        let found = {
            let overlay = self.overlay();
            overlay
                .by_crm
                .get(crm_id)
                .and_then(|r| overlay.links.get(r))
                .cloned()
        };
        match found {
            Some(link) => Ok(Some(link)),
            None => self.inner.link_by_crm(crm_id).await,
        }
    }

    async fn put_link(&self, link: &Link) -> StoreResult<()> {
        let key = link.referral_id.to_ascii_lowercase();
        let mut overlay = self.overlay();
        overlay.by_crm.insert(link.crm_id.clone(), key.clone());
        overlay.links.insert(key, link.clone());
        Ok(())
    }

    async fn links(&self, after: Option<&str>, limit: usize) -> StoreResult<Vec<Link>> {
        self.inner.links(after, limit).await
    }

    /// Nobody else works on the dry run's claims: free unless the dry run completed the key.
    async fn claim(
        &self,
        key: &str,
        _now: DateTime<Utc>,
        _in_progress_until: DateTime<Utc>,
    ) -> StoreResult<Claim> {
        Ok(if self.overlay().completed.contains_key(key) {
            Claim::Completed
        } else {
            Claim::Acquired
        })
    }

    async fn complete(&self, key: &str, _expires_at: DateTime<Utc>) -> StoreResult<()> {
        self.overlay().completed.insert(key.to_string(), ());
        Ok(())
    }

    async fn release(&self, _key: &str) -> StoreResult<()> {
        Ok(())
    }

    async fn append_journal(&self, entry: &JournalEntry) -> StoreResult<()> {
        tracing::debug!(referral = %entry.referral_id, message = %entry.message, "dry run: journal line not kept");
        Ok(())
    }

    async fn journal(&self, referral_id: &str, limit: usize) -> StoreResult<Vec<JournalEntry>> {
        self.inner.journal(referral_id, limit).await
    }

    async fn cursor(&self, name: &str) -> StoreResult<Option<String>> {
        if let Some(prefix) = &self.cursor_prefix {
            return self.inner.cursor(&format!("{prefix}{name}")).await;
        }
        if let Some(value) = self.overlay().cursors.get(name) {
            return Ok(Some(value.clone()));
        }
        self.inner.cursor(name).await
    }

    async fn put_cursor(&self, name: &str, value: &str) -> StoreResult<()> {
        if let Some(prefix) = &self.cursor_prefix {
            return self
                .inner
                .put_cursor(&format!("{prefix}{name}"), value)
                .await;
        }
        self.overlay()
            .cursors
            .insert(name.to_string(), value.to_string());
        Ok(())
    }

    async fn put_cursor_until(
        &self,
        name: &str,
        value: &str,
        expires_at: DateTime<Utc>,
    ) -> StoreResult<()> {
        if let Some(prefix) = &self.cursor_prefix {
            return self
                .inner
                .put_cursor_until(&format!("{prefix}{name}"), value, expires_at)
                .await;
        }
        self.put_cursor(name, value).await
    }

    async fn put_timer(&self, timer: &Timer) -> StoreResult<()> {
        self.overlay()
            .timers
            .insert(timer.key.clone(), Some(timer.clone()));
        Ok(())
    }

    async fn due_timers(&self, now: DateTime<Utc>, limit: usize) -> StoreResult<Vec<Timer>> {
        let mut due: Vec<Timer> = self
            .inner
            .due_timers(now, limit)
            .await?
            .into_iter()
            .filter(|t| !self.overlay().timers.contains_key(&t.key))
            .collect();
        due.extend(
            self.overlay()
                .timers
                .values()
                .flatten()
                .filter(|t| t.due <= now)
                .cloned(),
        );
        due.sort_by_key(|t| t.due);
        due.truncate(limit);
        Ok(due)
    }

    async fn delete_timer(&self, key: &str) -> StoreResult<()> {
        self.overlay().timers.insert(key.to_string(), None);
        Ok(())
    }
}

/// A queue that keeps what is sent to it, each deduplication id once: the commands a dry run's
/// poll would have enqueued.
#[derive(Debug, Default)]
pub struct CollectingQueue {
    sent: Mutex<Vec<Outgoing>>,
}

impl CollectingQueue {
    pub fn take(&self) -> Vec<Outgoing> {
        std::mem::take(&mut *self.sent.lock().unwrap_or_else(PoisonError::into_inner))
    }
}

#[async_trait]
impl Queue for CollectingQueue {
    async fn send(&self, message: &Outgoing) -> Result<(), QueueError> {
        let mut sent = self.sent.lock().unwrap_or_else(PoisonError::into_inner);
        if !sent.iter().any(|m| m.dedup_id == message.dedup_id) {
            sent.push(message.clone());
        }
        Ok(())
    }
}

/// The ports of a deployed stack's dry run (`COSELL_DRY_RUN`): writes logged instead of made.
/// `cursor_prefix` is the poller's (see [`DryRunStore::with_cursor_prefix`]); the processor
/// passes `None`.
pub fn wrap(
    crm: Arc<dyn Crm>,
    pc: Arc<dyn PartnerCenter>,
    store: Arc<dyn Store>,
    cursor_prefix: Option<&str>,
) -> (Arc<dyn Crm>, Arc<dyn PartnerCenter>, Arc<dyn Store>) {
    let recorder = Recorder::logging();
    let store: Arc<dyn Store> = Arc::new(match cursor_prefix {
        Some(prefix) => DryRunStore::with_cursor_prefix(store, prefix),
        None => DryRunStore::new(store),
    });
    (
        Arc::new(DryRunCrm {
            inner: crm,
            recorder: recorder.clone(),
        }),
        Arc::new(DryRunPartnerCenter {
            inner: pc,
            recorder,
        }),
        store,
    )
}

/// The cursor prefix of a deployed poller's dry run.
pub const CURSOR_PREFIX: &str = "dry-run:";

/// What the sync would do for one command.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Decision {
    /// `referral <id>` or `opportunity <id>`.
    pub subject: String,
    /// Why it came up: the poll's CRM feed, reconciliation, a due timer.
    pub source: String,
    /// What the processor would answer (created, updated, unchanged, skipped…).
    pub outcome: String,
    pub writes: Vec<PlannedWrite>,
}

/// A dry run of one poll and the processing of everything it would enqueue.
pub struct Plan {
    pub crm: Arc<dyn Crm>,
    pub pc: Arc<dyn PartnerCenter>,
    pub store: Arc<dyn Store>,
    pub options: super::SyncOptions,
    pub poller: super::poller::PollerOptions,
}

impl Plan {
    /// Polls both sides as the poller would, then decides each command as the processor would
    /// (at most `limit` of them), writing nothing. The poll's errors are answered beside the
    /// decisions: what could be read is still planned.
    pub async fn run(
        &self,
        now: DateTime<Utc>,
        limit: Option<usize>,
    ) -> (Vec<Decision>, Vec<String>) {
        let recorder = Recorder::new();
        let store: Arc<dyn Store> = Arc::new(DryRunStore::new(self.store.clone()));
        let crm: Arc<dyn Crm> = Arc::new(DryRunCrm {
            inner: self.crm.clone(),
            recorder: recorder.clone(),
        });
        let pc: Arc<dyn PartnerCenter> = Arc::new(DryRunPartnerCenter {
            inner: self.pc.clone(),
            recorder: recorder.clone(),
        });
        let queue = CollectingQueue::default();
        // A real run leaves the latest Partner Center changes to their webhooks for a while;
        // a dry run is asked about every change there is, so it takes them now.
        let poller_options = super::poller::PollerOptions {
            reconciliation_grace: std::time::Duration::ZERO,
            ..self.poller.clone()
        };
        let poller = super::poller::Poller {
            crm: crm.as_ref(),
            pc: pc.as_ref(),
            store: store.as_ref(),
            queue: &queue,
            options: &poller_options,
        };
        let (_, errors) = poller.run(now).await;
        let errors: Vec<String> = errors.iter().map(ToString::to_string).collect();
        let processor = super::Processor {
            pc,
            crm,
            store,
            options: self.options.clone(),
        };
        let mut decisions = Vec::new();
        for message in queue.take().into_iter().take(limit.unwrap_or(usize::MAX)) {
            let (subject, source) = describe(&message);
            let outcome = match serde_json::to_string(&message.command) {
                Ok(body) => match processor.run(&body, &mut None).await {
                    Ok(handled) => outcome_text(&handled),
                    Err(e) => format!("would fail: {e}"),
                },
                Err(e) => format!("would fail: {e}"),
            };
            decisions.push(Decision {
                subject,
                source,
                outcome,
                writes: recorder.take(),
            });
        }
        (decisions, errors)
    }
}

fn describe(message: &Outgoing) -> (String, String) {
    match &message.command {
        SyncCommand::PartnerCenterChanged { referral_id, event } => (
            format!("referral {referral_id}"),
            format!("Partner Center ({event})"),
        ),
        SyncCommand::CrmChanged { crm_id, .. } => {
            let source = if message.dedup_id.starts_with("timer:") {
                "a held Won come due"
            } else {
                "the CRM change feed"
            };
            (format!("opportunity {crm_id}"), source.to_string())
        }
    }
}

/// The processor's answer as a dry run reports it.
pub fn outcome_text(handled: &super::Handled) -> String {
    use super::Handled;
    match handled {
        Handled::Created { .. } => "would create".into(),
        Handled::Updated { fields, .. } if fields.is_empty() => "would update".into(),
        Handled::Updated { fields, .. } => format!("would update {}", fields.join(", ")),
        Handled::Unchanged => "nothing to write".into(),
        Handled::Skipped { reason } => format!("skipped: {reason}"),
        Handled::Failed { reason } => format!("would be refused: {reason}"),
    }
}
