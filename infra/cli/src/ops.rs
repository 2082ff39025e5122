//! The operator's commands: `cosell status`, `cosell redrive`, `cosell dry-run` and
//! `cosell backfill`. Each runs with `cosell local`'s settings and flags, on the embedded store
//! and queue of its data directory or on DynamoDB and SQS when both are configured, so the same
//! command answers for a laptop and for a deployed stack.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, NaiveDate, Utc};
use comfy_table::{Table, presets::UTF8_FULL_CONDENSED};
use cosell_shared::config::Config;
use cosell_shared::crm::Crm;
use cosell_shared::domain::classify::classify;
use cosell_shared::partner_center::PartnerCenter;
use cosell_shared::queue::embedded::{EmbeddedQueue, EmbeddedQueueSettings};
use cosell_shared::queue::sqs::SqsQueue;
use cosell_shared::queue::{
    DeadLetters, Outgoing, Parked, Queue, QueueConsumer, QueueDepth, SyncCommand,
};
use cosell_shared::store::sqlite::SqliteStore;
use cosell_shared::store::{JournalEntry, Link, Store};
use cosell_shared::sync::dry_run::{Decision, Plan};
use cosell_shared::sync::poller::{LAST_POLL_CURSOR, LastPoll, MICROSOFT_ORGANIZATION_ID};
use cosell_shared::wiring;
use serde::Serialize;

use crate::local::{DEAD_LETTER_QUEUE_NAME, QUEUE_NAME};
use crate::resolve::{Resolved, Sources, resolve};
use crate::settings::Settings;

#[derive(Debug, thiserror::Error)]
pub enum OpsError {
    /// A setting is missing or wrong: exit 2, as for the other commands.
    #[error("{0}")]
    Settings(String),
    #[error("{0}")]
    Failed(String),
    /// The command ran, but found what it was asked to report as a failure.
    #[error("{0}")]
    Found(String),
}

impl OpsError {
    pub fn exit_code(&self) -> u8 {
        match self {
            OpsError::Settings(_) => 2,
            OpsError::Failed(_) | OpsError::Found(_) => 1,
        }
    }
}

fn failed(e: impl std::fmt::Display) -> OpsError {
    OpsError::Failed(e.to_string())
}

/// Where the connector keeps its state, as the running connector has it.
pub struct Backend {
    pub store: Arc<dyn Store>,
    pub queue: Arc<dyn Queue>,
    main: MainQueue,
    pub dead_letters: Option<Box<dyn DeadLetters>>,
    pub description: String,
}

enum MainQueue {
    /// Readable without taking anything.
    Embedded(EmbeddedQueue),
    /// Only its counts can be read: receiving would take messages from the processor.
    Sqs(SqsQueue),
}

impl Backend {
    /// The store and queue of `config`: DynamoDB and SQS when both are set, else the embedded
    /// ones under `data_dir` (which must exist unless `create` is true: a status of a directory
    /// nobody ran in is a typo more often than not).
    pub async fn open(config: &Config, data_dir: &Path, create: bool) -> Result<Backend, OpsError> {
        match (&config.aws.table_name, &config.aws.queue_url) {
            (Some(table), Some(url)) => {
                let sdk = wiring::aws_sdk_config(config).await;
                let store = wiring::store(config, &sdk).map_err(|e| OpsError::Settings(e.to_string()))?;
                let sqs = SqsQueue::new(aws_sdk_sqs::Client::new(&sdk), url);
                let dead_letters = sqs
                    .dead_letters()
                    .await
                    .map_err(failed)?
                    .map(|d| Box::new(d) as Box<dyn DeadLetters>);
                Ok(Backend {
                    store,
                    queue: Arc::new(sqs.clone()),
                    main: MainQueue::Sqs(sqs),
                    dead_letters,
                    description: format!("DynamoDB table {table}, SQS queue {url}"),
                })
            }
            (Some(_), None) | (None, Some(_)) => Err(OpsError::Settings(
                "COSELL_TABLE_NAME and COSELL_QUEUE_URL: set both (the stack's StateTableName and SyncQueueUrl) or neither for the embedded store and queue".into(),
            )),
            (None, None) => {
                if !data_dir.exists() {
                    if !create {
                        return Err(OpsError::Settings(format!(
                            "--data-dir {}: no such directory; give the data directory of `cosell local` (or COSELL_TABLE_NAME and COSELL_QUEUE_URL for a deployed stack)",
                            data_dir.display()
                        )));
                    }
                    std::fs::create_dir_all(data_dir).map_err(|e| {
                        OpsError::Settings(format!("--data-dir {}: {e}", data_dir.display()))
                    })?;
                }
                let store =
                    SqliteStore::open_with_retention(&data_dir.join("state.sqlite3"), config.retention)
                        .map_err(failed)?;
                let queue = EmbeddedQueue::open(
                    &data_dir.join("queue.sqlite3"),
                    QUEUE_NAME,
                    EmbeddedQueueSettings {
                        dead_letter_queue: Some(DEAD_LETTER_QUEUE_NAME.to_string()),
                        ..EmbeddedQueueSettings::default()
                    },
                )
                .map_err(failed)?;
                let dead_letters = queue
                    .dead_letters()
                    .map(|d| Box::new(d) as Box<dyn DeadLetters>);
                Ok(Backend {
                    store: Arc::new(store),
                    queue: Arc::new(queue.clone()),
                    main: MainQueue::Embedded(queue),
                    dead_letters,
                    description: format!("embedded, in {}", data_dir.display()),
                })
            }
        }
    }

    async fn depth(&self) -> Result<QueueDepth, OpsError> {
        match &self.main {
            MainQueue::Embedded(q) => q.depth().await.map_err(failed),
            MainQueue::Sqs(q) => q.depth().await.map_err(failed),
        }
    }

    /// The commands waiting in the queue, when the queue can be read without taking them.
    async fn queued(&self) -> Result<Option<Vec<Parked>>, OpsError> {
        match &self.main {
            MainQueue::Embedded(q) => q.peek(PEEK_LIMIT).await.map(Some).map_err(failed),
            MainQueue::Sqs(_) => Ok(None),
        }
    }

    async fn dead_lettered(&self) -> Result<Vec<Parked>, OpsError> {
        match &self.dead_letters {
            Some(d) => d.peek(PEEK_LIMIT).await.map_err(failed),
            None => Ok(Vec::new()),
        }
    }
}

/// At most this many queued or dead-lettered commands are read for a status.
const PEEK_LIMIT: usize = 1000;

/// The ids a command is about (its referral id and CRM id, where it has them).
fn command_ids(body: &str) -> Vec<String> {
    match SyncCommand::from_body(body) {
        Ok(SyncCommand::PartnerCenterChanged { referral_id, .. }) => vec![referral_id],
        Ok(SyncCommand::CrmChanged {
            crm_id,
            referral_id,
            ..
        }) => std::iter::once(crm_id).chain(referral_id).collect(),
        Err(_) => Vec::new(),
    }
}

/// Whether a command is about one of `ids` (referral ids in any case; CRM ids as given, since
/// Salesforce's are case-sensitive, though a lowercase match is accepted for GUIDs).
fn about(body: &str, ids: &[String]) -> bool {
    command_ids(body)
        .iter()
        .any(|c| ids.iter().any(|id| id == c || id.eq_ignore_ascii_case(c)))
}

/// What a command is, for a table: `referral <id> (<event>)` or `opportunity <id>`.
fn command_text(body: &str) -> String {
    match SyncCommand::from_body(body) {
        Ok(SyncCommand::PartnerCenterChanged { referral_id, event }) => {
            format!("referral {referral_id} ({event})")
        }
        Ok(SyncCommand::CrmChanged { crm_id, .. }) => format!("opportunity {crm_id}"),
        Err(e) => format!("unreadable: {e}"),
    }
}

fn table(header: &[&str]) -> Table {
    let mut t = Table::new();
    t.load_style(UTF8_FULL_CONDENSED)
        .set_content_arrangement(comfy_table::ContentArrangement::Dynamic)
        .set_header(header.to_vec());
    t
}

async fn resolved(settings: Settings, sources: &Sources) -> Result<Resolved, OpsError> {
    resolve(settings, sources)
        .await
        .map_err(|e| OpsError::Settings(e.to_string()))
}

fn data_dir(sources: &Sources) -> PathBuf {
    sources
        .data_dir
        .clone()
        .unwrap_or_else(|| PathBuf::from(".cosell"))
}

// ---------------------------------------------------------------------------------------- status

/// A queued or dead-lettered command, as status shows it.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ParkedCommand {
    pub command: String,
    pub message_id: String,
    pub sent_at: DateTime<Utc>,
    pub receive_count: u32,
}

impl From<&Parked> for ParkedCommand {
    fn from(p: &Parked) -> Self {
        ParkedCommand {
            command: command_text(&p.body),
            message_id: p.message_id.clone(),
            sent_at: p.sent_at,
            receive_count: p.receive_count,
        }
    }
}

/// `cosell status`: the whole connector at a glance.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Summary {
    pub backend: String,
    pub links: usize,
    pub leads: usize,
    pub closed: usize,
    /// Links whose last sync failed (Audit ✖).
    pub failed: usize,
    pub queued: u64,
    pub in_flight: u64,
    pub dead_lettered: usize,
    pub dead_letters: Vec<ParkedCommand>,
    pub last_poll: Option<LastPoll>,
    pub webhook: String,
}

/// `cosell status ID`: one referral or CRM record.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Detail {
    pub id: String,
    pub link: Option<Link>,
    pub journal: Vec<JournalEntry>,
    /// `None` when the queue cannot be read without taking messages (SQS).
    pub queued: Option<Vec<ParkedCommand>>,
    pub dead_lettered: Vec<ParkedCommand>,
}

pub struct StatusOptions {
    pub sources: Sources,
    pub id: Option<String>,
    pub json: bool,
}

pub async fn status(
    options: StatusOptions,
    settings: Settings,
    out: &mut dyn Write,
) -> Result<(), OpsError> {
    let resolved = resolved(settings, &options.sources).await?;
    let backend = Backend::open(&resolved.config, &data_dir(&options.sources), false).await?;
    match &options.id {
        None => {
            let summary = summary(&resolved, &backend).await?;
            if options.json {
                write_json(out, &summary)?;
            } else {
                write_summary(out, &summary);
            }
            Ok(())
        }
        Some(id) => {
            let detail = detail(&backend, id).await?;
            if options.json {
                write_json(out, &detail)?;
            } else {
                write_detail(out, &detail);
            }
            if detail.link.is_none()
                && detail.journal.is_empty()
                && detail.dead_lettered.is_empty()
                && detail.queued.as_ref().is_none_or(Vec::is_empty)
            {
                return Err(OpsError::Found(format!(
                    "nothing is known of {id}: no link, no journal line, no command"
                )));
            }
            Ok(())
        }
    }
}

fn write_json(out: &mut dyn Write, value: &impl Serialize) -> Result<(), OpsError> {
    let json = serde_json::to_string_pretty(value).map_err(failed)?;
    writeln!(out, "{json}").map_err(failed)
}

async fn summary(resolved: &Resolved, backend: &Backend) -> Result<Summary, OpsError> {
    let (mut links, mut leads, mut closed, mut failed_links) = (0, 0, 0, 0);
    let mut after: Option<String> = None;
    loop {
        let page = backend
            .store
            .links(after.as_deref(), 500)
            .await
            .map_err(failed)?;
        for link in &page {
            links += 1;
            leads += usize::from(link.record == cosell_shared::store::RecordKind::Lead);
            closed += usize::from(link.terminal);
            failed_links += usize::from(link.last_error.is_some());
        }
        match page.last() {
            Some(last) if page.len() == 500 => after = Some(last.referral_id.clone()),
            _ => break,
        }
    }
    let depth = backend.depth().await?;
    let dead = backend.dead_lettered().await?;
    let last_poll = match backend
        .store
        .cursor(LAST_POLL_CURSOR)
        .await
        .map_err(failed)?
    {
        Some(json) => serde_json::from_str(&json).ok(),
        None => None,
    };
    Ok(Summary {
        backend: backend.description.clone(),
        links,
        leads,
        closed,
        failed: failed_links,
        queued: depth.waiting,
        in_flight: depth.in_flight,
        dead_lettered: dead.len(),
        dead_letters: dead.iter().map(ParkedCommand::from).collect(),
        last_poll,
        webhook: webhook(resolved).await,
    })
}

/// The webhook registration in one line; what went wrong reading it otherwise.
async fn webhook(resolved: &Resolved) -> String {
    let client = match wiring::partner_center_client(&resolved.config, resolved.tokens.clone()) {
        Ok(c) => c,
        Err(e) => return format!("cannot be read: {e}"),
    };
    match client.webhook_registration().await {
        Ok(Some(r)) => format!("{} ({} events)", r.webhook_url, r.webhook_events.len()),
        Ok(None) => "none: run `cosell register --url …` or redeploy the stack".into(),
        Err(e) => format!("cannot be read: {e}"),
    }
}

fn write_summary(out: &mut dyn Write, s: &Summary) {
    let mut t = table(&["", ""]);
    t.add_row(vec!["store, queue".to_string(), s.backend.clone()]);
    t.add_row(vec![
        "links".to_string(),
        format!(
            "{} ({} opportunities, {} leads; {} closed)",
            s.links,
            s.links - s.leads,
            s.leads,
            s.closed
        ),
    ]);
    t.add_row(vec![
        "failed".to_string(),
        format!("{} (their Audit shows ✖ and why)", s.failed),
    ]);
    t.add_row(vec![
        "queued".to_string(),
        format!("{} waiting, {} in progress", s.queued, s.in_flight),
    ]);
    t.add_row(vec![
        "dead-lettered".to_string(),
        if s.dead_lettered == 0 {
            "0".to_string()
        } else {
            format!(
                "{} (`cosell redrive --all` puts them back)",
                s.dead_lettered
            )
        },
    ]);
    t.add_row(vec![
        "last poll".to_string(),
        match &s.last_poll {
            None => "never".to_string(),
            Some(p) => format!(
                "{}: {} CRM change(s) in {} page(s), {} enqueued; reconciliation listed {} referral(s), {} enqueued{}",
                p.at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                p.report.crm_changed,
                p.report.crm_pages,
                p.report.crm_enqueued,
                p.report.referrals_listed,
                p.report.referrals_enqueued,
                if p.errors.is_empty() {
                    String::new()
                } else {
                    format!("; errors: {}", p.errors.join("; "))
                }
            ),
        },
    ]);
    t.add_row(vec!["webhook".to_string(), s.webhook.clone()]);
    let _ = writeln!(out, "{t}");
    if !s.dead_letters.is_empty() {
        let _ = writeln!(out, "Dead-lettered commands:");
        let _ = writeln!(out, "{}", parked_table(&s.dead_letters));
    }
}

fn parked_table(parked: &[ParkedCommand]) -> Table {
    let mut t = table(&["command", "sent", "receives"]);
    for p in parked {
        t.add_row(vec![
            p.command.clone(),
            p.sent_at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            p.receive_count.to_string(),
        ]);
    }
    t
}

async fn detail(backend: &Backend, id: &str) -> Result<Detail, OpsError> {
    let store = &backend.store;
    let link = match store.link_by_referral(id).await.map_err(failed)? {
        Some(link) => Some(link),
        None => store.link_by_crm(id).await.map_err(failed)?,
    };
    let mut journal = Vec::new();
    let mut ids = vec![id.to_string()];
    if let Some(link) = &link {
        journal.extend(store.journal(&link.referral_id, 50).await.map_err(failed)?);
        ids.push(link.referral_id.clone());
        ids.push(link.crm_id.clone());
        // What happened before the deal was shared is under its CRM id.
        journal.extend(
            store
                .journal(&format!("crm:{}", link.crm_id), 50)
                .await
                .map_err(failed)?,
        );
    } else {
        journal.extend(store.journal(id, 50).await.map_err(failed)?);
        journal.extend(
            store
                .journal(&format!("crm:{id}"), 50)
                .await
                .map_err(failed)?,
        );
    }
    journal.sort_by_key(|e| std::cmp::Reverse(e.at));
    let pick = |parked: Vec<Parked>| -> Vec<ParkedCommand> {
        parked
            .iter()
            .filter(|p| about(&p.body, &ids))
            .map(ParkedCommand::from)
            .collect()
    };
    Ok(Detail {
        id: id.to_string(),
        link,
        journal,
        queued: backend.queued().await?.map(&pick),
        dead_lettered: pick(backend.dead_lettered().await?),
    })
}

fn write_detail(out: &mut dyn Write, d: &Detail) {
    match &d.link {
        None => {
            let _ = writeln!(out, "{}: not linked", d.id);
        }
        Some(link) => {
            let mut t = table(&["", ""]);
            t.add_row(vec!["referral".to_string(), link.referral_id.clone()]);
            t.add_row(vec![
                format!("CRM {:?}", link.record).to_lowercase(),
                link.crm_id.clone(),
            ]);
            if let Some(e) = &link.engagement_id {
                t.add_row(vec!["engagement".to_string(), e.clone()]);
            }
            t.add_row(vec![
                "closed".to_string(),
                if link.terminal { "yes" } else { "no" }.to_string(),
            ]);
            t.add_row(vec![
                "last error".to_string(),
                link.last_error.clone().unwrap_or_else(|| "none".into()),
            ]);
            t.add_row(vec![
                "Partner Center version".to_string(),
                link.referral_etag.clone().unwrap_or_default(),
            ]);
            t.add_row(vec![
                "CRM version".to_string(),
                link.crm_modified_at
                    .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
                    .unwrap_or_default(),
            ]);
            t.add_row(vec![
                "Microsoft invited".to_string(),
                if link.state.microsoft_invited {
                    "yes"
                } else {
                    "no"
                }
                .to_string(),
            ]);
            let _ = writeln!(out, "{t}");
            if let Some(synced) = &link.synced {
                // Both sides agreed on these at the last sync.
                let _ = writeln!(out, "Last synced state (both sides):");
                let mut s = table(&["field", "value"]);
                if let Ok(serde_json::Value::Object(fields)) = serde_json::to_value(synced) {
                    for (k, v) in fields {
                        if !v.is_null() {
                            s.add_row(vec![k, value_text(&v)]);
                        }
                    }
                }
                let _ = writeln!(out, "{s}");
            }
        }
    }
    let _ = writeln!(out, "Journal (newest first):");
    let mut j = table(&["at", "outcome", "message"]);
    for e in &d.journal {
        j.add_row(vec![
            e.at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            format!("{:?}", e.outcome).to_lowercase(),
            e.message.clone(),
        ]);
    }
    let _ = writeln!(out, "{j}");
    match &d.queued {
        Some(q) if q.is_empty() => {
            let _ = writeln!(out, "Queued: none");
        }
        Some(q) => {
            let _ = writeln!(out, "Queued:\n{}", parked_table(q));
        }
        None => {
            let _ = writeln!(
                out,
                "Queued: not shown (an SQS queue cannot be read without taking its messages from the processor)"
            );
        }
    }
    if d.dead_lettered.is_empty() {
        let _ = writeln!(out, "Dead-lettered: none");
    } else {
        let _ = writeln!(
            out,
            "Dead-lettered (`cosell redrive {}` puts them back):\n{}",
            d.id,
            parked_table(&d.dead_lettered)
        );
    }
}

fn value_text(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

// --------------------------------------------------------------------------------------- redrive

pub struct RedriveOptions {
    pub sources: Sources,
    pub ids: Vec<String>,
    pub all: bool,
}

pub async fn redrive(
    options: RedriveOptions,
    settings: Settings,
    out: &mut dyn Write,
) -> Result<usize, OpsError> {
    if options.ids.is_empty() && !options.all {
        return Err(OpsError::Settings(
            "name the referral or CRM record ids to redrive, or give --all".into(),
        ));
    }
    let resolved = resolved(settings, &options.sources).await?;
    let backend = Backend::open(&resolved.config, &data_dir(&options.sources), false).await?;
    let Some(dead) = &backend.dead_letters else {
        return Err(OpsError::Failed(
            "the queue has no dead-letter queue, so nothing is ever dead-lettered".into(),
        ));
    };
    // A referral's commands name its referral id; a CRM record's its CRM id: both are matched,
    // and so is the other id of a link, so either id brings back every command about the deal.
    let mut ids = options.ids.clone();
    for id in &options.ids {
        if let Some(link) = backend.store.link_by_referral(id).await.map_err(failed)? {
            ids.push(link.crm_id);
        } else if let Some(link) = backend.store.link_by_crm(id).await.map_err(failed)? {
            ids.push(link.referral_id);
        }
    }
    let all = options.all;
    let moved = dead
        .redrive(&move |p: &Parked| all || about(&p.body, &ids))
        .await
        .map_err(failed)?;
    let left = dead.depth().await.map_err(failed)?.total();
    let _ = writeln!(
        out,
        "Moved {moved} command(s) from {} back to the queue; {left} left dead-lettered.",
        dead.describe()
    );
    Ok(moved)
}

// --------------------------------------------------------------------------------------- dry run

pub struct DryRunOptions {
    pub sources: Sources,
    pub limit: Option<usize>,
    pub json: bool,
}

#[derive(Debug, Serialize)]
struct DryRunReport {
    decisions: Vec<Decision>,
    errors: Vec<String>,
}

pub async fn dry_run(
    options: DryRunOptions,
    settings: Settings,
    out: &mut dyn Write,
) -> Result<(), OpsError> {
    let resolved = resolved(settings, &options.sources).await?;
    let config = &resolved.config;
    let backend = Backend::open(config, &data_dir(&options.sources), false).await?;
    let plan = Plan {
        crm: wiring::crm(config).map_err(|e| OpsError::Settings(e.to_string()))?,
        pc: wiring::partner_center(config, resolved.tokens.clone())
            .map_err(|e| OpsError::Settings(e.to_string()))?,
        store: backend.store.clone(),
        options: config.sync.clone(),
        poller: config.poller.clone(),
    };
    let (decisions, errors) = plan.run(config.sync.clock.now(), options.limit).await;
    if options.json {
        write_json(
            out,
            &DryRunReport {
                decisions,
                errors: errors.clone(),
            },
        )?;
    } else {
        let writes: usize = decisions.iter().map(|d| d.writes.len()).sum();
        let _ = writeln!(
            out,
            "Dry run: {} change(s) to sync, {writes} write(s) planned; nothing was written.",
            decisions.len()
        );
        if !decisions.is_empty() {
            let mut t = table(&["record", "found by", "decision", "would write"]);
            for d in &decisions {
                t.add_row(vec![
                    d.subject.clone(),
                    d.source.clone(),
                    d.outcome.clone(),
                    d.writes
                        .iter()
                        .map(|w| w.summary())
                        .collect::<Vec<_>>()
                        .join("\n"),
                ]);
            }
            let _ = writeln!(out, "{t}");
        }
        for e in &errors {
            let _ = writeln!(out, "✖ the poll did not complete: {e}");
        }
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(OpsError::Failed(format!(
            "{} part(s) of the poll failed",
            errors.len()
        )))
    }
}

// -------------------------------------------------------------------------------------- backfill

pub struct BackfillOptions {
    pub sources: Sources,
    /// Only referrals changed since this day (UTC); every referral otherwise.
    pub since: Option<NaiveDate>,
}

/// What a backfill did with each record it read.
#[derive(Debug, Default, Clone, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct BackfillCounts {
    pub read: usize,
    pub enqueued: usize,
    /// Linked already: the sync keeps it in step.
    pub linked: usize,
    /// Enqueued by an earlier backfill (the one interrupted, or a second run).
    pub earlier: usize,
    /// Not for the CRM: a lead while "sync co-sell only" is on, Microsoft's side of a
    /// co-sell deal; or an opportunity with Sync off.
    pub left_out: usize,
}

#[derive(Debug, Default, Clone, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct BackfillReport {
    pub referrals: BackfillCounts,
    pub opportunities: BackfillCounts,
}

/// The earliest `--since` that makes sense: Partner Center's referrals API is younger.
fn beginning() -> DateTime<Utc> {
    DateTime::from_timestamp(946_684_800, 0).unwrap_or_default()
}

/// The store cursor that marks a record as enqueued by a backfill.
fn marker(kind: &str, id: &str) -> String {
    format!("backfill:{kind}:{}", id.to_ascii_lowercase())
}

pub async fn backfill(
    options: BackfillOptions,
    settings: Settings,
    out: &mut dyn Write,
) -> Result<BackfillReport, OpsError> {
    let resolved = resolved(settings, &options.sources).await?;
    let config = &resolved.config;
    let backend = Backend::open(config, &data_dir(&options.sources), true).await?;
    let pc = wiring::partner_center(config, resolved.tokens.clone())
        .map_err(|e| OpsError::Settings(e.to_string()))?;
    let crm = wiring::crm(config).map_err(|e| OpsError::Settings(e.to_string()))?;
    let run = Backfill {
        store: backend.store.as_ref(),
        queue: backend.queue.as_ref(),
        retention: config.retention,
        co_sell_only: config.sync.co_sell_only,
    };
    let since = options
        .since
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .map(|t| t.and_utc())
        .unwrap_or_else(beginning);
    let mut report = BackfillReport::default();
    let referrals = run
        .referrals(pc.as_ref(), since, &mut report.referrals)
        .await;
    let opportunities = run
        .opportunities(crm.as_ref(), &mut report.opportunities)
        .await;
    let mut t = table(&[
        "",
        "read",
        "enqueued",
        "already linked",
        "earlier backfill",
        "left out",
    ]);
    for (name, c) in [
        ("Partner Center referrals", &report.referrals),
        ("CRM opportunities (Sync = yes)", &report.opportunities),
    ] {
        t.add_row(vec![
            name.to_string(),
            c.read.to_string(),
            c.enqueued.to_string(),
            c.linked.to_string(),
            c.earlier.to_string(),
            c.left_out.to_string(),
        ]);
    }
    let _ = writeln!(out, "{t}");
    let _ = writeln!(
        out,
        "{} command(s) enqueued on {}; the processor (`cosell local`, or the deployed stack) syncs them.",
        report.referrals.enqueued + report.opportunities.enqueued,
        backend.description
    );
    match (referrals, opportunities) {
        (Ok(()), Ok(())) => Ok(report),
        (Err(e), _) | (_, Err(e)) => Err(OpsError::Failed(format!(
            "{e}; run cosell backfill again to go on where it stopped"
        ))),
    }
}

struct Backfill<'a> {
    store: &'a dyn Store,
    queue: &'a dyn Queue,
    retention: Duration,
    co_sell_only: bool,
}

fn progress(len: Option<u64>, what: &str) -> indicatif::ProgressBar {
    let bar = match len {
        Some(n) => indicatif::ProgressBar::new(n),
        None => indicatif::ProgressBar::new_spinner(),
    };
    let template = if len.is_some() {
        "{msg} [{bar:40}] {pos}/{len}"
    } else {
        "{msg} {spinner} {pos}"
    };
    if let Ok(style) = indicatif::ProgressStyle::with_template(template) {
        bar.set_style(style);
    }
    bar.set_message(what.to_string());
    bar
}

impl Backfill<'_> {
    /// Enqueues `command` once: a marker in the store, written after the send, is what a later
    /// or resumed run finds. A crash between the two sends it again, and the processor's
    /// idempotency makes that harmless.
    async fn enqueue_once(
        &self,
        kind: &str,
        id: &str,
        command: SyncCommand,
        counts: &mut BackfillCounts,
    ) -> Result<(), OpsError> {
        let name = marker(kind, id);
        if self.store.cursor(&name).await.map_err(failed)?.is_some() {
            counts.earlier += 1;
            return Ok(());
        }
        self.queue
            .send(&Outgoing {
                command,
                dedup_id: name.clone(),
            })
            .await
            .map_err(failed)?;
        let until = Utc::now()
            + chrono::Duration::from_std(self.retention).unwrap_or(chrono::Duration::days(90));
        self.store
            .put_cursor_until(&name, "enqueued", until)
            .await
            .map_err(failed)?;
        counts.enqueued += 1;
        Ok(())
    }

    async fn referrals(
        &self,
        pc: &dyn PartnerCenter,
        since: DateTime<Utc>,
        counts: &mut BackfillCounts,
    ) -> Result<(), OpsError> {
        let listing = progress(None, "Listing Partner Center referrals");
        let referrals = pc.list_changed_since(since).await.map_err(failed);
        listing.finish_and_clear();
        let referrals = referrals?;
        let bar = progress(Some(referrals.len() as u64), "Partner Center referrals");
        let result = async {
            for referral in &referrals {
                bar.inc(1);
                counts.read += 1;
                let Some(id) = referral.id.as_deref() else {
                    continue;
                };
                let microsoft = referral
                    .organization_id
                    .as_deref()
                    .is_some_and(|o| o.eq_ignore_ascii_case(MICROSOFT_ORGANIZATION_ID));
                let kind = classify(referral);
                if microsoft || !kind.comes_into_crm(self.co_sell_only) {
                    counts.left_out += 1;
                    continue;
                }
                if self
                    .store
                    .link_by_referral(id)
                    .await
                    .map_err(failed)?
                    .is_some()
                {
                    counts.linked += 1;
                    continue;
                }
                self.enqueue_once(
                    "referral",
                    id,
                    SyncCommand::PartnerCenterChanged {
                        referral_id: id.to_string(),
                        event: BACKFILL_EVENT.to_string(),
                    },
                    counts,
                )
                .await?;
            }
            Ok(())
        }
        .await;
        bar.finish_and_clear();
        result
    }

    async fn opportunities(
        &self,
        crm: &dyn Crm,
        counts: &mut BackfillCounts,
    ) -> Result<(), OpsError> {
        let bar = progress(None, "CRM opportunities");
        let result = async {
            // The start of the change feed: every opportunity with Sync = yes, page by page.
            let mut cursor: Option<String> = None;
            loop {
                let page = crm
                    .opportunity_changes(cursor.as_deref())
                    .await
                    .map_err(failed)?;
                for opportunity in &page.opportunities {
                    bar.inc(1);
                    counts.read += 1;
                    if opportunity.fields.sync_with_partner_center != Some(true) {
                        counts.left_out += 1;
                        continue;
                    }
                    if self
                        .store
                        .link_by_crm(&opportunity.id)
                        .await
                        .map_err(failed)?
                        .is_some()
                    {
                        counts.linked += 1;
                        continue;
                    }
                    self.enqueue_once(
                        "crm",
                        &opportunity.id,
                        SyncCommand::CrmChanged {
                            crm_id: opportunity.id.clone(),
                            referral_id: None,
                            seen: None,
                        },
                        counts,
                    )
                    .await?;
                }
                cursor = Some(page.cursor);
                if !page.more {
                    break;
                }
            }
            Ok(())
        }
        .await;
        bar.finish_and_clear();
        result
    }
}

/// The event name of a backfill's commands, as the journal shows it.
pub const BACKFILL_EVENT: &str = "backfill";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_command_is_found_by_either_of_its_ids() {
        let body = serde_json::to_string(&SyncCommand::CrmChanged {
            crm_id: "0065g00000XyZ12AAB".into(),
            referral_id: Some("ABC-1".into()),
            seen: None,
        })
        .unwrap();
        assert!(about(&body, &["abc-1".into()]));
        assert!(about(&body, &["0065g00000XyZ12AAB".into()]));
        assert!(!about(&body, &["other".into()]));
        assert!(!about("not json", &["abc-1".into()]));
    }

    #[test]
    fn bad_settings_exit_2_and_findings_exit_1() {
        assert_eq!(OpsError::Settings("x".into()).exit_code(), 2);
        assert_eq!(OpsError::Found("x".into()).exit_code(), 1);
    }
}
