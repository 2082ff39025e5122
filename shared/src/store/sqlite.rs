//! The [`Store`] in one SQLite file, for `cosell local`: the same promises as the DynamoDB
//! adapter ([`super::dynamodb`]), held by SQLite transactions instead of conditional writes.
//!
//! Schema (version 3, recorded in `PRAGMA user_version`; every table is `STRICT`):
//!
//! | table | key | other columns | indexes |
//! |---|---|---|---|
//! | `links` | `referral_key` (the referral id, lowercased) | `referral_id`, `crm_id`, `record`, `crm_kind`, `engagement_id`?, `synced`? (the projection as JSON), `referral_etag`?, `crm_modified_at`? (RFC 3339), `terminal` (0/1), `last_error`?, `version` | `links_by_crm` (unique, `crm_id`) |
//! | `claims` | `key` | `status` (`INPROGRESS`\|`COMPLETED`), `in_progress_until`? (epoch ms, in progress only), `expires_at` (epoch ms) | `claims_by_expiry` (`expires_at`) |
//! | `journal` | `seq` (the rowid, in order of arrival) | `referral_key`, `referral_id`, `at_secs` + `at_nanos` (epoch seconds and their nanoseconds), `outcome`, `message`, `expires_at`? (epoch ms) | `journal_by_referral` (`referral_key`, `at_secs`, `at_nanos`, `seq`), `journal_by_expiry` (`expires_at`) |
//! | `cursors` | `name` | `value`, `expires_at`? (epoch ms, only when put with an expiry) | `cursors_by_expiry` (`expires_at`) |
//! | `timers` | `key` | `due` (RFC 3339 with nanoseconds, fixed width, so text order is time order), `crm_id`, `referral_id`? | `timers_by_due` (`due`) |
//!
//! Schema version 2 adds `links.state` (what the sync remembers beyond the projection, as JSON;
//! null when empty) and the `timers` table. Version 3 adds `journal.expires_at` (the entry's `at`
//! plus the store's retention) and `cursors.expires_at`, each with an index.
//!
//! Why this shape:
//! - Referral ids are lowercased in keys, as in DynamoDB (Partner Center varies their case); CRM
//!   ids are kept as given and compared byte for byte (Salesforce ids are case-sensitive).
//! - DynamoDB needs a separate reverse-lookup item kept in step by a transaction. Here the reverse
//!   lookup is a unique index on the link row itself, so the two cannot disagree, a re-link moves
//!   it with the same `UPDATE`, and a CRM record can belong to one referral only.
//! - Enums are stored by their serde names (`opportunity`, `dynamics`, `synced`), like DynamoDB.
//! - Times that are compared are integers. Claim times are epoch milliseconds: `in_progress_until`
//!   rounded down like DynamoDB's `inProgressUntil`, `expires_at` rounded up so a completed key is
//!   never claimable early (DynamoDB keeps whole seconds there only because its TTL wants them).
//!   Journal times must order entries *and* come back unchanged to the nanosecond, hence seconds
//!   plus nanoseconds. `crm_modified_at` is only carried, so it is RFC 3339 text, as in DynamoDB.
//! - There is no TTL: `complete` deletes the claims whose `expires_at` has passed by the clock, as
//!   DynamoDB's TTL would (the index keeps that cheap). Expired journal rows and cursors are
//!   deleted when the store opens and by the first write after an hour has passed since the last
//!   time: a local connector runs for days, and hourly keeps the deletes small without a timer
//!   of their own. Reads leave out expired rows meanwhile, so the deletes only reclaim space.
//!
//! Every read-modify-write (a link write, a claim) runs in a `BEGIN IMMEDIATE` transaction, which
//! takes SQLite's write lock before reading: the reads a decision rests on cannot go stale before
//! its write, even with another process writing the same file. Waiting for that lock is bounded
//! by the busy timeout; a lock held longer than that is [`StoreError::Unavailable`].
//!
//! Durability: WAL journal mode with `synchronous=FULL`. `NORMAL` would already keep a committed
//! write through a `kill -9` of the process (the WAL is in the operating system's hands by then),
//! but it can lose the last commits to a power cut or an OS crash. A link or a completed claim that
//! is lost makes the connector redo work it has already done on the other side, and a local
//! connector writes a few rows a minute, so the fsync on each commit is worth it.
//!
//! One connection per store, behind a mutex: one process writing one file gains nothing from more
//! (SQLite lets a single writer in at a time), and one connection keeps the statement cache warm.
//! rusqlite is blocking, so each call runs on tokio's blocking pool.

use std::fmt;
use std::path::Path;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, SecondsFormat, Utc};
use rusqlite::types::ValueRef;
use rusqlite::{Connection, Params, Row, Transaction, TransactionBehavior, params};
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::{Claim, JournalEntry, Link, LinkState, Store, StoreError, StoreResult, Timer, expiry};

/// Schema steps: step `i` takes the file from schema version `i` to `i + 1`, and
/// `user_version` records how many have run. A later schema appends a step; never edit one.
const MIGRATIONS: &[&str] = &[
    // 1: the first schema.
    "CREATE TABLE links (
        referral_key    TEXT NOT NULL PRIMARY KEY,
        referral_id     TEXT NOT NULL,
        crm_id          TEXT NOT NULL,
        record          TEXT NOT NULL,
        crm_kind        TEXT NOT NULL,
        engagement_id   TEXT,
        synced          TEXT,
        referral_etag   TEXT,
        crm_modified_at TEXT,
        terminal        INTEGER NOT NULL,
        last_error      TEXT,
        version         INTEGER NOT NULL
    ) STRICT;
    CREATE UNIQUE INDEX links_by_crm ON links (crm_id);

    CREATE TABLE claims (
        key               TEXT NOT NULL PRIMARY KEY,
        status            TEXT NOT NULL,
        in_progress_until INTEGER,
        expires_at        INTEGER NOT NULL
    ) STRICT;
    CREATE INDEX claims_by_expiry ON claims (expires_at);

    CREATE TABLE journal (
        seq          INTEGER PRIMARY KEY,
        referral_key TEXT NOT NULL,
        referral_id  TEXT NOT NULL,
        at_secs      INTEGER NOT NULL,
        at_nanos     INTEGER NOT NULL,
        outcome      TEXT NOT NULL,
        message      TEXT NOT NULL
    ) STRICT;
    CREATE INDEX journal_by_referral ON journal (referral_key, at_secs, at_nanos, seq);

    CREATE TABLE cursors (
        name  TEXT NOT NULL PRIMARY KEY,
        value TEXT NOT NULL
    ) STRICT;",
    // 2: the link's state, and timers.
    "ALTER TABLE links ADD COLUMN state TEXT;

    CREATE TABLE timers (
        key         TEXT NOT NULL PRIMARY KEY,
        due         TEXT NOT NULL,
        crm_id      TEXT NOT NULL,
        referral_id TEXT
    ) STRICT;
    CREATE INDEX timers_by_due ON timers (due);",
    // 3: expiry of journal rows and cursors. The journal's existing rows get theirs from
    // `backfill_journal_expiry`, which needs the store's retention.
    "ALTER TABLE journal ADD COLUMN expires_at INTEGER;
    CREATE INDEX journal_by_expiry ON journal (expires_at);

    ALTER TABLE cursors ADD COLUMN expires_at INTEGER;
    CREATE INDEX cursors_by_expiry ON cursors (expires_at);",
];

/// The step (its index in [`MIGRATIONS`]) after which the journal's existing rows get an expiry.
const JOURNAL_EXPIRY_STEP: usize = 2;

/// How often a write deletes what has expired.
const PURGE_EVERY_MS: i64 = 3600 * 1000;

/// How long a call waits for another connection (another process) to let go of the write lock.
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

const STATUS_IN_PROGRESS: &str = "INPROGRESS";
const STATUS_COMPLETED: &str = "COMPLETED";

macro_rules! link_columns {
    () => {
        "referral_key, referral_id, crm_id, record, crm_kind, engagement_id, synced, \
         referral_etag, crm_modified_at, terminal, last_error, version, state"
    };
}

const LINK_BY_REFERRAL: &str = concat!(
    "SELECT ",
    link_columns!(),
    " FROM links WHERE referral_key = ?1"
);
const LINK_BY_CRM: &str = concat!("SELECT ", link_columns!(), " FROM links WHERE crm_id = ?1");
const UPSERT_LINK: &str = concat!(
    "INSERT INTO links (",
    link_columns!(),
    ") VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)
     ON CONFLICT (referral_key) DO UPDATE SET
        referral_id = excluded.referral_id, crm_id = excluded.crm_id,
        record = excluded.record, crm_kind = excluded.crm_kind,
        engagement_id = excluded.engagement_id, synced = excluded.synced,
        referral_etag = excluded.referral_etag, crm_modified_at = excluded.crm_modified_at,
        terminal = excluded.terminal, last_error = excluded.last_error,
        version = excluded.version, state = excluded.state"
);
const JOURNAL: &str = "SELECT seq, referral_key, referral_id, at_secs, at_nanos, outcome, message
     FROM journal WHERE referral_key = ?1 AND (expires_at IS NULL OR expires_at > ?3)
     ORDER BY at_secs DESC, at_nanos DESC, seq DESC LIMIT ?2";
const LINKS_FIRST: &str = concat!(
    "SELECT ",
    link_columns!(),
    " FROM links ORDER BY referral_key LIMIT ?1"
);
const LINKS_AFTER: &str = concat!(
    "SELECT ",
    link_columns!(),
    " FROM links WHERE referral_key > ?1 ORDER BY referral_key LIMIT ?2"
);
const PURGE_JOURNAL: &str = "DELETE FROM journal WHERE expires_at <= ?1";
const PURGE_CURSORS: &str = "DELETE FROM cursors WHERE expires_at <= ?1";

/// The [`Store`] adapter for one SQLite file. Clones share the connection.
#[derive(Clone)]
pub struct SqliteStore {
    conn: Arc<Mutex<Connection>>,
    path: Arc<Path>,
    retention: Duration,
    /// When (epoch ms, system clock) the next write deletes expired rows; read and written only
    /// while holding the connection.
    next_purge_ms: Arc<AtomicI64>,
}

impl fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SqliteStore")
            .field("path", &self.path)
            .field("retention", &self.retention)
            .finish_non_exhaustive()
    }
}

impl SqliteStore {
    /// Opens the store in the file at `path`, keeping journal entries for
    /// [`super::DEFAULT_RETENTION`]; see [`SqliteStore::open_with_retention`].
    pub fn open(path: &Path) -> Result<SqliteStore, StoreError> {
        SqliteStore::open_with_retention(path, super::DEFAULT_RETENTION)
    }

    /// Opens the store in the file at `path`, creating the file and its directory when missing
    /// and bringing an older schema up to date, then deletes what has expired. Journal entries
    /// are kept `retention` after their `at` (`COSELL_RETENTION_DAYS`). Refuses a file written by
    /// a newer schema, or a database that is not a cosell store. Blocks: call it at start-up (or
    /// on the blocking pool).
    pub fn open_with_retention(
        path: &Path,
        retention: Duration,
    ) -> Result<SqliteStore, StoreError> {
        let failed = |doing: &str, err: &dyn fmt::Display| {
            StoreError::Unavailable(format!(
                "the SQLite store at {}: {doing}: {err}",
                path.display()
            ))
        };
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent)
                .map_err(|err| failed("cannot create its directory", &err))?;
        }
        let mut conn = Connection::open(path).map_err(|err| failed("cannot open it", &err))?;
        // First, so that the pragmas and the migration below also wait for other processes.
        conn.busy_timeout(BUSY_TIMEOUT)
            .doing(path, "setting the busy timeout")?;
        let mode: String = conn
            .pragma_update_and_check(None, "journal_mode", "wal", |row| row.get(0))
            .doing(path, "switching to WAL journal mode")?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(failed(
                "switching to WAL journal mode",
                &format!("SQLite kept the {mode} mode (is the file on a network share?)"),
            ));
        }
        conn.pragma_update(None, "synchronous", "FULL")
            .doing(path, "setting synchronous=FULL")?;
        migrate(&mut conn, path, retention)?;
        let next_purge_ms = AtomicI64::new(0);
        purge_if_due(&mut conn, path, &next_purge_ms)?;
        Ok(SqliteStore {
            conn: Arc::new(Mutex::new(conn)),
            path: Arc::from(path),
            retention,
            next_purge_ms: Arc::new(next_purge_ms),
        })
    }

    /// The same store keeping the journal entries it writes from now on for `retention`. Rows
    /// it finds are judged by the expiry they were written with; a file migrated by this
    /// store's `open` took [`super::DEFAULT_RETENTION`] for its older rows, so open with
    /// [`SqliteStore::open_with_retention`] where that matters.
    pub fn with_retention(self, retention: Duration) -> SqliteStore {
        SqliteStore { retention, ..self }
    }

    /// The file this store lives in.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Gives back every claim still in progress, answering how many there were. Only for a
    /// process that knows it is the file's sole user (`cosell local` holds a lock on its data
    /// directory): at its start, a claim in progress can only be a crashed run's, and waiting for
    /// it to expire would only delay the retry of the message it was working on.
    pub async fn release_abandoned_claims(&self) -> StoreResult<usize> {
        self.run(move |conn, path| {
            conn.execute("DELETE FROM claims WHERE status = 'INPROGRESS'", [])
                .doing(path, "releasing abandoned claims")
        })
        .await
    }

    /// Runs `work` on the connection, on the blocking pool, after deleting what has expired if
    /// that is due.
    async fn write<T, F>(&self, work: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection, &Path) -> StoreResult<T> + Send + 'static,
    {
        let next_purge_ms = Arc::clone(&self.next_purge_ms);
        self.run(move |conn, path| {
            purge_if_due(conn, path, &next_purge_ms)?;
            work(conn, path)
        })
        .await
    }

    /// Runs `work` on the connection, on the blocking pool.
    async fn run<T, F>(&self, work: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection, &Path) -> StoreResult<T> + Send + 'static,
    {
        let conn = Arc::clone(&self.conn);
        let path = Arc::clone(&self.path);
        tokio::task::spawn_blocking(move || {
            let mut conn = conn.lock().map_err(|_| {
                StoreError::Unavailable(format!(
                    "the SQLite store at {}: an earlier call panicked while using the connection",
                    path.display()
                ))
            })?;
            work(&mut conn, &path)
        })
        .await
        .map_err(|err| {
            StoreError::Unavailable(format!(
                "the SQLite store at {}: the blocking task failed: {err}",
                self.path.display()
            ))
        })?
    }
}

/// Deletes the journal rows and cursors whose expiry has passed, unless that was done less than
/// [`PURGE_EVERY_MS`] ago. Both indexed, so a purge reads only what it deletes.
fn purge_if_due(conn: &mut Connection, path: &Path, next_purge_ms: &AtomicI64) -> StoreResult<()> {
    let now = Utc::now().timestamp_millis();
    if now < next_purge_ms.load(Ordering::Relaxed) {
        return Ok(());
    }
    let doing = "deleting expired journal rows and cursors";
    let tx = immediate(conn, path)?;
    for sql in [PURGE_JOURNAL, PURGE_CURSORS] {
        tx.prepare_cached(sql)
            .and_then(|mut statement| statement.execute([now]))
            .doing(path, doing)?;
    }
    tx.commit().doing(path, doing)?;
    // Only after it worked: a failed purge is tried again by the next write.
    next_purge_ms.store(now.saturating_add(PURGE_EVERY_MS), Ordering::Relaxed);
    Ok(())
}

/// Gives the journal rows written before schema version 3 the expiry they would have had: their
/// `at` plus this store's retention. Not "no expiry": those rows are the very history retention
/// exists to bound, and rows without an expiry would stay for good. The retention the store is
/// opened with, not the default, so a user who set `COSELL_RETENTION_DAYS` keeps what they asked
/// for.
fn backfill_journal_expiry(
    tx: &Transaction<'_>,
    path: &Path,
    retention: Duration,
) -> StoreResult<()> {
    // Beyond a thousand years the expiry means "for good" anyway; the cap keeps the sum below
    // an overflow, which SQLite would turn into a REAL that the STRICT column refuses.
    const CAP_MS: i64 = 1000 * 366 * 24 * 3600 * 1000;
    let retention_ms = i64::try_from(retention.as_millis()).map_or(CAP_MS, |ms| ms.min(CAP_MS));
    tx.execute(
        "UPDATE journal SET expires_at = at_secs * 1000 + (at_nanos + 999999) / 1000000 + ?1
         WHERE expires_at IS NULL",
        [retention_ms],
    )
    .doing(path, "giving the journal's rows their expiry")
    .map(|_| ())
}

/// Brings the schema to the newest version this build knows, in one transaction, so two
/// processes opening a new file at once create it once.
fn migrate(conn: &mut Connection, path: &Path, retention: Duration) -> StoreResult<()> {
    let known = i64::try_from(MIGRATIONS.len()).unwrap_or(i64::MAX);
    let tx = immediate(conn, path)?;
    let found: i64 = tx
        .pragma_query_value(None, "user_version", |row| row.get(0))
        .doing(path, "reading the schema version")?;
    if found > known {
        return Err(StoreError::Unavailable(format!(
            "the SQLite store at {} has schema version {found}, newer than the version {known} \
             this cosell knows: it was written by a newer cosell, so upgrade cosell to open it",
            path.display()
        )));
    }
    let Ok(done) = usize::try_from(found) else {
        return Err(not_ours(path));
    };
    if done == 0 {
        let tables: i64 = tx
            .query_row(
                "SELECT count(*) FROM sqlite_master WHERE type = 'table'",
                [],
                |row| row.get(0),
            )
            .doing(path, "looking for existing tables")?;
        if tables > 0 {
            return Err(not_ours(path));
        }
    }
    for (step, sql) in MIGRATIONS.iter().enumerate().skip(done) {
        tx.execute_batch(sql).doing(
            path,
            &format!("migrating the schema to version {}", step + 1),
        )?;
        if step == JOURNAL_EXPIRY_STEP {
            backfill_journal_expiry(&tx, path, retention)?;
        }
    }
    if found < known {
        tx.pragma_update(None, "user_version", known)
            .doing(path, "recording the schema version")?;
    }
    tx.commit().doing(path, "committing the schema")
}

fn not_ours(path: &Path) -> StoreError {
    StoreError::Unavailable(format!(
        "the SQLite store at {} is a database without a cosell schema version: it is not a \
         cosell store (choose another file)",
        path.display()
    ))
}

fn immediate<'c>(conn: &'c mut Connection, path: &Path) -> StoreResult<Transaction<'c>> {
    conn.transaction_with_behavior(TransactionBehavior::Immediate)
        .doing(path, "starting a write transaction")
}

/// Names what failed and where, for any SQLite error: all of them leave the caller nothing to
/// do but try again later.
trait Doing<T> {
    fn doing(self, path: &Path, doing: &str) -> StoreResult<T>;
}

impl<T> Doing<T> for rusqlite::Result<T> {
    fn doing(self, path: &Path, doing: &str) -> StoreResult<T> {
        self.map_err(|err| {
            StoreError::Unavailable(format!(
                "the SQLite store at {}: {doing}: {err}",
                path.display()
            ))
        })
    }
}

/// The first row `sql` finds, decoded.
fn query_one<T>(
    conn: &Connection,
    path: &Path,
    doing: &str,
    sql: &str,
    params: impl Params,
    decode: impl FnOnce(&Row<'_>) -> StoreResult<T>,
) -> StoreResult<Option<T>> {
    let mut statement = conn.prepare_cached(sql).doing(path, doing)?;
    let mut rows = statement.query(params).doing(path, doing)?;
    match rows.next().doing(path, doing)? {
        Some(row) => decode(row).map(Some),
        None => Ok(None),
    }
}

fn conflict(what: String) -> StoreError {
    StoreError::Conflict { what }
}

fn ceil_millis(at: DateTime<Utc>) -> i64 {
    let millis = at.timestamp_millis();
    if !at.timestamp_subsec_nanos().is_multiple_of(1_000_000) {
        millis + 1
    } else {
        millis
    }
}

/// The serde name of a unit variant, so stored names always match the connector's JSON.
fn enum_name<T: Serialize>(value: &T) -> StoreResult<String> {
    match serde_json::to_value(value) {
        Ok(serde_json::Value::String(name)) => Ok(name),
        _ => Err(StoreError::Corrupt(
            "a value that should be a plain name did not serialise as one".to_owned(),
        )),
    }
}

/// A link as its row holds it, made before taking the connection.
struct LinkRow {
    referral_key: String,
    referral_id: String,
    crm_id: String,
    record: String,
    crm_kind: String,
    engagement_id: Option<String>,
    synced: Option<String>,
    referral_etag: Option<String>,
    crm_modified_at: Option<String>,
    terminal: bool,
    last_error: Option<String>,
    version: u64,
    stored_version: i64,
    state: Option<String>,
}

impl LinkRow {
    fn encode(link: &Link) -> StoreResult<Self> {
        let synced = match &link.synced {
            Some(synced) => Some(serde_json::to_string(synced).map_err(|err| {
                StoreError::Corrupt(format!(
                    "the synced projection of referral {} cannot be serialised: {err}",
                    link.referral_id
                ))
            })?),
            None => None,
        };
        let state = if link.state == LinkState::default() {
            None
        } else {
            Some(serde_json::to_string(&link.state).map_err(|err| {
                StoreError::Corrupt(format!(
                    "the state of the link of referral {} cannot be serialised: {err}",
                    link.referral_id
                ))
            })?)
        };
        let stored_version = i64::try_from(link.version).map_err(|_| {
            conflict(format!(
                "the link of referral {} (version {} is beyond what the store can hold)",
                link.referral_id, link.version
            ))
        })?;
        Ok(LinkRow {
            referral_key: link.referral_id.to_ascii_lowercase(),
            referral_id: link.referral_id.clone(),
            crm_id: link.crm_id.clone(),
            record: enum_name(&link.record)?,
            crm_kind: enum_name(&link.crm_kind)?,
            engagement_id: link.engagement_id.clone(),
            synced,
            referral_etag: link.referral_etag.clone(),
            crm_modified_at: link
                .crm_modified_at
                .map(|at| at.to_rfc3339_opts(SecondsFormat::Nanos, true)),
            terminal: link.terminal,
            last_error: link.last_error.clone(),
            version: link.version,
            stored_version,
            state,
        })
    }

    /// Writes the row if `version` follows the stored one and its CRM record is free.
    fn put(&self, tx: &Transaction<'_>, path: &Path) -> StoreResult<()> {
        let stale = || conflict(format!("the link of referral {}", self.referral_id));
        let current = query_one(
            tx,
            path,
            "reading a link",
            "SELECT referral_key, version, crm_id FROM links WHERE referral_key = ?1",
            [&self.referral_key],
            |row| {
                let columns = Columns::link(row);
                Ok((columns.u64("version")?, columns.text("crm_id")?))
            },
        )?;
        let follows = match &current {
            None => self.version == 1,
            Some((stored, _)) => self.version > 1 && *stored == self.version - 1,
        };
        if !follows {
            return Err(stale());
        }
        if current.is_none_or(|(_, crm_id)| crm_id != self.crm_id) {
            let holder = query_one(
                tx,
                path,
                "reading the link of a CRM record",
                "SELECT referral_key FROM links WHERE crm_id = ?1",
                [&self.crm_id],
                |row| Columns::link(row).text("referral_key"),
            )?;
            if holder.is_some_and(|holder| holder != self.referral_key) {
                return Err(conflict(format!(
                    "CRM record {} (already linked to another referral)",
                    self.crm_id
                )));
            }
        }
        tx.prepare_cached(UPSERT_LINK)
            .and_then(|mut statement| {
                statement.execute(params![
                    self.referral_key,
                    self.referral_id,
                    self.crm_id,
                    self.record,
                    self.crm_kind,
                    self.engagement_id,
                    self.synced,
                    self.referral_etag,
                    self.crm_modified_at,
                    self.terminal,
                    self.last_error,
                    self.stored_version,
                    self.state,
                ])
            })
            .doing(path, "writing a link")?;
        Ok(())
    }
}

fn decode_link(row: &Row<'_>) -> StoreResult<Link> {
    let columns = Columns::link(row);
    let synced = match columns.opt_text("synced")? {
        Some(json) => Some(columns.json("synced", &json)?),
        None => None,
    };
    let state = match columns.opt_text("state")? {
        Some(json) => columns.json("state", &json)?,
        None => LinkState::default(),
    };
    Ok(Link {
        referral_id: columns.text("referral_id")?,
        crm_id: columns.text("crm_id")?,
        record: columns.named("record")?,
        crm_kind: columns.named("crm_kind")?,
        engagement_id: columns.opt_text("engagement_id")?,
        synced,
        referral_etag: columns.opt_text("referral_etag")?,
        crm_modified_at: columns.opt_rfc3339("crm_modified_at")?,
        terminal: columns.bool("terminal")?,
        last_error: columns.opt_text("last_error")?,
        version: columns.u64("version")?,
        state,
    })
}

fn decode_journal(row: &Row<'_>) -> StoreResult<JournalEntry> {
    let seq = match row.get_ref("seq") {
        Ok(ValueRef::Integer(seq)) => seq.to_string(),
        _ => "?".to_owned(),
    };
    let columns = Columns {
        row,
        what: format!("the journal row {seq}"),
    };
    let secs = columns.int("at_secs")?;
    let nanos = u32::try_from(columns.int("at_nanos")?)
        .map_err(|_| columns.corrupt("at_nanos", "is out of range"))?;
    Ok(JournalEntry {
        at: DateTime::from_timestamp(secs, nanos)
            .ok_or_else(|| columns.corrupt("at_secs", "is not a representable time"))?,
        referral_id: columns.text("referral_id")?,
        outcome: columns.named("outcome")?,
        message: columns.text("message")?,
    })
}

/// Typed reads of a row's columns; anything missing or mistyped is `Corrupt`, naming the row and
/// the column (never the value, which may be a customer's data).
struct Columns<'a, 'r> {
    row: &'a Row<'r>,
    what: String,
}

impl<'a, 'r> Columns<'a, 'r> {
    fn link(row: &'a Row<'r>) -> Self {
        let key = match row.get_ref("referral_key") {
            Ok(ValueRef::Text(key)) => String::from_utf8_lossy(key).into_owned(),
            _ => "?".to_owned(),
        };
        Columns {
            row,
            what: format!("the link row of referral {key}"),
        }
    }

    fn corrupt(&self, column: &str, problem: &str) -> StoreError {
        StoreError::Corrupt(format!("{}: column {column} {problem}", self.what))
    }

    fn value(&self, column: &str) -> StoreResult<ValueRef<'a>> {
        self.row
            .get_ref(column)
            .map_err(|_| self.corrupt(column, "is missing"))
    }

    fn opt_text(&self, column: &str) -> StoreResult<Option<String>> {
        match self.value(column)? {
            ValueRef::Null => Ok(None),
            ValueRef::Text(text) => std::str::from_utf8(text)
                .map(|text| Some(text.to_owned()))
                .map_err(|_| self.corrupt(column, "is not UTF-8 text")),
            _ => Err(self.corrupt(column, "is not text")),
        }
    }

    fn text(&self, column: &str) -> StoreResult<String> {
        self.opt_text(column)?
            .ok_or_else(|| self.corrupt(column, "is empty (NULL)"))
    }

    fn opt_int(&self, column: &str) -> StoreResult<Option<i64>> {
        match self.value(column)? {
            ValueRef::Null => Ok(None),
            ValueRef::Integer(value) => Ok(Some(value)),
            _ => Err(self.corrupt(column, "is not an integer")),
        }
    }

    fn int(&self, column: &str) -> StoreResult<i64> {
        self.opt_int(column)?
            .ok_or_else(|| self.corrupt(column, "is empty (NULL)"))
    }

    fn u64(&self, column: &str) -> StoreResult<u64> {
        u64::try_from(self.int(column)?).map_err(|_| self.corrupt(column, "is negative"))
    }

    fn bool(&self, column: &str) -> StoreResult<bool> {
        match self.int(column)? {
            0 => Ok(false),
            1 => Ok(true),
            _ => Err(self.corrupt(column, "is neither 0 nor 1")),
        }
    }

    fn opt_rfc3339(&self, column: &str) -> StoreResult<Option<DateTime<Utc>>> {
        match self.opt_text(column)? {
            Some(text) => DateTime::parse_from_rfc3339(&text)
                .map(|at| Some(at.with_timezone(&Utc)))
                .map_err(|_| self.corrupt(column, "is not an RFC 3339 time")),
            None => Ok(None),
        }
    }

    fn named<T: DeserializeOwned>(&self, column: &str) -> StoreResult<T> {
        serde_json::from_value(serde_json::Value::String(self.text(column)?))
            .map_err(|_| self.corrupt(column, "holds an unknown name"))
    }

    fn json<T: DeserializeOwned>(&self, column: &str, json: &str) -> StoreResult<T> {
        serde_json::from_str(json).map_err(|err| {
            // serde's message names the position and the expected shape, not the data.
            self.corrupt(column, &format!("is not valid JSON for its type ({err})"))
        })
    }
}

/// Writes a cursor with its expiry (`None`: for good), replacing value and expiry.
fn put_cursor_row(
    conn: &Connection,
    path: &Path,
    name: &str,
    value: &str,
    expires_ms: Option<i64>,
) -> StoreResult<()> {
    conn.prepare_cached(
        "INSERT INTO cursors (name, value, expires_at) VALUES (?1, ?2, ?3)
         ON CONFLICT (name) DO UPDATE SET value = excluded.value,
            expires_at = excluded.expires_at",
    )
    .and_then(|mut statement| statement.execute(params![name, value, expires_ms]))
    .doing(path, "writing a cursor")
    .map(|_| ())
}

#[async_trait]
impl Store for SqliteStore {
    async fn link_by_referral(&self, referral_id: &str) -> StoreResult<Option<Link>> {
        let key = referral_id.to_ascii_lowercase();
        self.run(move |conn, path| {
            query_one(
                conn,
                path,
                "reading a link",
                LINK_BY_REFERRAL,
                [&key],
                decode_link,
            )
        })
        .await
    }

    async fn link_by_crm(&self, crm_id: &str) -> StoreResult<Option<Link>> {
        let crm_id = crm_id.to_owned();
        self.run(move |conn, path| {
            query_one(
                conn,
                path,
                "reading the link of a CRM record",
                LINK_BY_CRM,
                [&crm_id],
                decode_link,
            )
        })
        .await
    }

    async fn put_link(&self, link: &Link) -> StoreResult<()> {
        if link.version == 0 {
            return Err(conflict(format!(
                "the link of referral {} (version 0 is never stored; the first is 1)",
                link.referral_id
            )));
        }
        let row = LinkRow::encode(link)?;
        self.write(move |conn, path| {
            let tx = immediate(conn, path)?;
            row.put(&tx, path)?;
            tx.commit().doing(path, "committing a link")
        })
        .await
    }

    async fn links(&self, after: Option<&str>, limit: usize) -> StoreResult<Vec<Link>> {
        let after = after.map(str::to_ascii_lowercase);
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.run(move |conn, path| {
            let doing = "listing the links";
            let mut links = Vec::new();
            let mut collect = |mut rows: rusqlite::Rows<'_>| -> StoreResult<()> {
                while let Some(row) = rows.next().doing(path, doing)? {
                    links.push(decode_link(row)?);
                }
                Ok(())
            };
            match &after {
                Some(after) => {
                    let mut statement = conn.prepare_cached(LINKS_AFTER).doing(path, doing)?;
                    collect(statement.query(params![after, limit]).doing(path, doing)?)?;
                }
                None => {
                    let mut statement = conn.prepare_cached(LINKS_FIRST).doing(path, doing)?;
                    collect(statement.query(params![limit]).doing(path, doing)?)?;
                }
            }
            Ok(links)
        })
        .await
    }

    async fn claim(
        &self,
        key: &str,
        now: DateTime<Utc>,
        in_progress_until: DateTime<Utc>,
    ) -> StoreResult<Claim> {
        let key = key.to_owned();
        let now_ms = now.timestamp_millis();
        let until_ms = in_progress_until.timestamp_millis();
        let reap_at = ceil_millis(in_progress_until);
        self.write(move |conn, path| {
            let tx = immediate(conn, path)?;
            let held = query_one(
                &tx,
                path,
                "reading a claim",
                "SELECT status, in_progress_until, expires_at FROM claims WHERE key = ?1",
                [&key],
                |row| {
                    let columns = Columns {
                        row,
                        what: format!("the claim row {key}"),
                    };
                    match columns.text("status")?.as_str() {
                        STATUS_IN_PROGRESS => Ok((columns.int("in_progress_until")? > now_ms)
                            .then_some(Claim::InProgress)),
                        STATUS_COMPLETED => {
                            Ok((columns.int("expires_at")? > now_ms).then_some(Claim::Completed))
                        }
                        _ => Err(columns.corrupt("status", "holds an unknown status")),
                    }
                },
            )?
            .flatten();
            if let Some(held) = held {
                return Ok(held);
            }
            tx.prepare_cached(
                "INSERT INTO claims (key, status, in_progress_until, expires_at)
                 VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (key) DO UPDATE SET status = excluded.status,
                    in_progress_until = excluded.in_progress_until,
                    expires_at = excluded.expires_at",
            )
            .and_then(|mut statement| {
                statement.execute(params![key, STATUS_IN_PROGRESS, until_ms, reap_at])
            })
            .doing(path, "writing a claim")?;
            tx.commit().doing(path, "committing a claim")?;
            Ok(Claim::Acquired)
        })
        .await
    }

    async fn complete(&self, key: &str, expires_at: DateTime<Utc>) -> StoreResult<()> {
        let key = key.to_owned();
        let expires_ms = ceil_millis(expires_at);
        let reap_before = Utc::now().timestamp_millis();
        self.write(move |conn, path| {
            let tx = immediate(conn, path)?;
            tx.prepare_cached(
                "INSERT INTO claims (key, status, in_progress_until, expires_at)
                 VALUES (?1, ?2, NULL, ?3)
                 ON CONFLICT (key) DO UPDATE SET status = excluded.status,
                    in_progress_until = NULL, expires_at = excluded.expires_at",
            )
            .and_then(|mut statement| statement.execute(params![key, STATUS_COMPLETED, expires_ms]))
            .doing(path, "completing a claim")?;
            // DynamoDB's TTL, by hand: whatever expired is claimable anyway, so it may go.
            tx.prepare_cached("DELETE FROM claims WHERE expires_at <= ?1")
                .and_then(|mut statement| statement.execute([reap_before]))
                .doing(path, "deleting expired claims")?;
            tx.commit().doing(path, "committing a claim")
        })
        .await
    }

    async fn release(&self, key: &str) -> StoreResult<()> {
        let key = key.to_owned();
        self.write(move |conn, path| {
            conn.prepare_cached("DELETE FROM claims WHERE key = ?1")
                .and_then(|mut statement| statement.execute([&key]))
                .doing(path, "releasing a claim")
                .map(|_| ())
        })
        .await
    }

    async fn append_journal(&self, entry: &JournalEntry) -> StoreResult<()> {
        let referral_key = entry.referral_id.to_ascii_lowercase();
        let referral_id = entry.referral_id.clone();
        let at_secs = entry.at.timestamp();
        let at_nanos = entry.at.timestamp_subsec_nanos();
        let outcome = enum_name(&entry.outcome)?;
        let message = entry.message.clone();
        let expires_at = expiry(entry.at, self.retention).map(ceil_millis);
        self.write(move |conn, path| {
            conn.prepare_cached(
                "INSERT INTO journal
                    (referral_key, referral_id, at_secs, at_nanos, outcome, message, expires_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            )
            .and_then(|mut statement| {
                statement.execute(params![
                    referral_key,
                    referral_id,
                    at_secs,
                    at_nanos,
                    outcome,
                    message,
                    expires_at
                ])
            })
            .doing(path, "appending to the journal")
            .map(|_| ())
        })
        .await
    }

    async fn journal(&self, referral_id: &str, limit: usize) -> StoreResult<Vec<JournalEntry>> {
        let key = referral_id.to_ascii_lowercase();
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let now = Utc::now().timestamp_millis();
        self.run(move |conn, path| {
            let doing = "reading the journal";
            let mut statement = conn.prepare_cached(JOURNAL).doing(path, doing)?;
            let mut rows = statement
                .query(params![key, limit, now])
                .doing(path, doing)?;
            let mut entries = Vec::new();
            while let Some(row) = rows.next().doing(path, doing)? {
                entries.push(decode_journal(row)?);
            }
            Ok(entries)
        })
        .await
    }

    async fn cursor(&self, name: &str) -> StoreResult<Option<String>> {
        let name = name.to_owned();
        let now = Utc::now().timestamp_millis();
        self.run(move |conn, path| {
            query_one(
                conn,
                path,
                "reading a cursor",
                // An expired cursor may not have been deleted yet.
                "SELECT value FROM cursors
                 WHERE name = ?1 AND (expires_at IS NULL OR expires_at > ?2)",
                params![name, now],
                |row| {
                    Columns {
                        row,
                        what: format!("the cursor row {name}"),
                    }
                    .text("value")
                },
            )
        })
        .await
    }

    async fn put_cursor(&self, name: &str, value: &str) -> StoreResult<()> {
        let name = name.to_owned();
        let value = value.to_owned();
        self.write(move |conn, path| put_cursor_row(conn, path, &name, &value, None))
            .await
    }

    async fn put_cursor_until(
        &self,
        name: &str,
        value: &str,
        expires_at: DateTime<Utc>,
    ) -> StoreResult<()> {
        let name = name.to_owned();
        let value = value.to_owned();
        let expires_ms = ceil_millis(expires_at);
        self.write(move |conn, path| put_cursor_row(conn, path, &name, &value, Some(expires_ms)))
            .await
    }

    async fn put_timer(&self, timer: &Timer) -> StoreResult<()> {
        let timer = timer.clone();
        self.write(move |conn, path| {
            conn.prepare_cached(
                "INSERT INTO timers (key, due, crm_id, referral_id) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (key) DO UPDATE SET due = excluded.due, crm_id = excluded.crm_id,
                    referral_id = excluded.referral_id",
            )
            .and_then(|mut statement| {
                statement.execute(params![
                    timer.key,
                    timer.due.to_rfc3339_opts(SecondsFormat::Nanos, true),
                    timer.crm_id,
                    timer.referral_id
                ])
            })
            .doing(path, "writing a timer")
            .map(|_| ())
        })
        .await
    }

    async fn due_timers(&self, now: DateTime<Utc>, limit: usize) -> StoreResult<Vec<Timer>> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.run(move |conn, path| {
            let doing = "reading the due timers";
            let mut statement = conn
                .prepare_cached(
                    "SELECT key, due, crm_id, referral_id FROM timers WHERE due <= ?1
                     ORDER BY due, key LIMIT ?2",
                )
                .doing(path, doing)?;
            let mut rows = statement
                .query(params![
                    now.to_rfc3339_opts(SecondsFormat::Nanos, true),
                    limit
                ])
                .doing(path, doing)?;
            let mut timers = Vec::new();
            while let Some(row) = rows.next().doing(path, doing)? {
                let key: String = row.get(0).doing(path, doing)?;
                let due: String = row.get(1).doing(path, doing)?;
                let due = DateTime::parse_from_rfc3339(&due)
                    .map(|t| t.with_timezone(&Utc))
                    .map_err(|_| {
                        StoreError::Corrupt(format!("the timer {key} has an unreadable due time"))
                    })?;
                timers.push(Timer {
                    crm_id: row.get(2).doing(path, doing)?,
                    referral_id: row.get(3).doing(path, doing)?,
                    key,
                    due,
                });
            }
            Ok(timers)
        })
        .await
    }

    async fn delete_timer(&self, key: &str) -> StoreResult<()> {
        let key = key.to_owned();
        self.write(move |conn, path| {
            conn.prepare_cached("DELETE FROM timers WHERE key = ?1")
                .and_then(|mut statement| statement.execute([&key]))
                .doing(path, "deleting a timer")
                .map(|_| ())
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use chrono::Duration as TimeDelta;

    use super::*;
    use crate::crm::CrmKind;
    use crate::store::{Outcome, RecordKind};

    /// A fresh directory, removed when dropped.
    struct TempDir(tempfile::TempDir);

    impl TempDir {
        fn new() -> Self {
            TempDir(tempfile::tempdir().expect("a temporary directory"))
        }

        fn file(&self) -> PathBuf {
            self.0.path().join("state.db")
        }
    }

    fn link(referral_id: &str, crm_id: &str) -> Link {
        Link {
            referral_id: referral_id.to_owned(),
            crm_id: crm_id.to_owned(),
            record: RecordKind::Opportunity,
            crm_kind: CrmKind::Salesforce,
            engagement_id: None,
            synced: None,
            referral_etag: None,
            crm_modified_at: None,
            terminal: false,
            last_error: None,
            version: 1,
            state: Default::default(),
        }
    }

    /// A second connection on the file, as another process (or a curious admin) would have.
    fn raw(path: &Path) -> Connection {
        let conn = Connection::open(path).unwrap();
        conn.busy_timeout(BUSY_TIMEOUT).unwrap();
        conn
    }

    fn unavailable_message<T: fmt::Debug>(result: StoreResult<T>) -> String {
        match result {
            Err(StoreError::Unavailable(message)) => message,
            other => panic!("expected Unavailable, got {other:?}"),
        }
    }

    fn corrupt_message<T: fmt::Debug>(result: StoreResult<T>) -> String {
        match result {
            Err(StoreError::Corrupt(message)) => message,
            other => panic!("expected Corrupt, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn what_is_written_is_read_back_after_reopening() {
        let dir = TempDir::new();
        let now = Utc::now();
        {
            let store = SqliteStore::open(&dir.file()).unwrap();
            store.put_link(&link("Ref-1", "crm-1")).await.unwrap();
            assert_eq!(
                store.claim("k", now, now + TimeDelta::minutes(5)).await,
                Ok(Claim::Acquired)
            );
            store
                .complete("k", now + TimeDelta::hours(1))
                .await
                .unwrap();
            store.put_cursor("poller", "token").await.unwrap();
        }
        let store = SqliteStore::open(&dir.file()).unwrap();
        assert_eq!(
            store.link_by_crm("crm-1").await.unwrap(),
            Some(link("Ref-1", "crm-1"))
        );
        assert_eq!(
            store.claim("k", now, now + TimeDelta::minutes(5)).await,
            Ok(Claim::Completed)
        );
        assert_eq!(
            store.cursor("poller").await.unwrap().as_deref(),
            Some("token")
        );
    }

    #[tokio::test]
    async fn open_creates_missing_directories() {
        let dir = TempDir::new();
        let path = dir.0.path().join("a").join("b").join("state.db");
        let store = SqliteStore::open(&path).unwrap();
        store.put_cursor("c", "v").await.unwrap();
        assert!(path.is_file());
        assert_eq!(store.path(), path);
    }

    #[test]
    fn a_newer_schema_is_refused_naming_the_file() {
        let dir = TempDir::new();
        drop(SqliteStore::open(&dir.file()).unwrap());
        raw(&dir.file())
            .pragma_update(None, "user_version", 99)
            .unwrap();

        let message = unavailable_message(SqliteStore::open(&dir.file()));
        assert!(
            message.contains(&dir.file().display().to_string()),
            "{message}"
        );
        assert!(
            message.contains("99") && message.contains("newer"),
            "{message}"
        );
        assert_eq!(
            raw(&dir.file())
                .pragma_query_value(None, "user_version", |row| row.get::<_, i64>(0))
                .unwrap(),
            99,
            "a refused file is left as it was"
        );
    }

    #[test]
    fn a_database_of_something_else_is_refused() {
        let dir = TempDir::new();
        raw(&dir.file())
            .execute_batch("CREATE TABLE invoices (id INTEGER PRIMARY KEY)")
            .unwrap();
        let message = unavailable_message(SqliteStore::open(&dir.file()));
        assert!(message.contains("not a cosell store"), "{message}");
        assert!(
            message.contains(&dir.file().display().to_string()),
            "{message}"
        );
    }

    #[test]
    fn a_file_that_is_no_database_is_unavailable_naming_it() {
        let dir = TempDir::new();
        std::fs::write(
            dir.file(),
            "this is a text file, not a database\n".repeat(50),
        )
        .unwrap();
        let message = unavailable_message(SqliteStore::open(&dir.file()));
        assert!(
            message.contains(&dir.file().display().to_string()),
            "{message}"
        );
    }

    #[tokio::test]
    async fn the_file_is_in_wal_mode_with_full_sync() {
        let dir = TempDir::new();
        let store = SqliteStore::open(&dir.file()).unwrap();
        let mode: String = raw(&dir.file())
            .pragma_query_value(None, "journal_mode", |row| row.get(0))
            .unwrap();
        assert_eq!(mode, "wal");
        let synchronous: i64 = store
            .conn
            .lock()
            .unwrap()
            .pragma_query_value(None, "synchronous", |row| row.get(0))
            .unwrap();
        assert_eq!(synchronous, 2, "synchronous=FULL");
    }

    #[tokio::test]
    async fn abandoned_claims_are_released_and_completed_ones_kept() {
        let dir = TempDir::new();
        let store = SqliteStore::open(&dir.file()).unwrap();
        let now = Utc::now();
        let later = now + chrono::Duration::minutes(5);
        assert_eq!(
            store.claim("done", now, later).await.unwrap(),
            Claim::Acquired
        );
        store.complete("done", later).await.unwrap();
        assert_eq!(
            store.claim("crashed", now, later).await.unwrap(),
            Claim::Acquired
        );

        assert_eq!(store.release_abandoned_claims().await.unwrap(), 1);
        assert_eq!(
            store.claim("crashed", now, later).await.unwrap(),
            Claim::Acquired
        );
        assert_eq!(
            store.claim("done", now, later).await.unwrap(),
            Claim::Completed
        );
    }

    #[tokio::test]
    async fn version_0_is_refused() {
        let dir = TempDir::new();
        let store = SqliteStore::open(&dir.file()).unwrap();
        let zero = Link {
            version: 0,
            ..link("r", "c")
        };
        assert!(matches!(
            store.put_link(&zero).await,
            Err(StoreError::Conflict { what }) if what.contains("version 0")
        ));
        assert_eq!(store.link_by_referral("r").await.unwrap(), None);
    }

    #[tokio::test]
    async fn crm_ids_differing_only_in_case_are_different_records() {
        let dir = TempDir::new();
        let store = SqliteStore::open(&dir.file()).unwrap();
        let upper = link("referral-1", "0065g00000XyZ12AAB");
        let lower = link("referral-2", "0065g00000xyz12aab");
        store.put_link(&upper).await.unwrap();
        store.put_link(&lower).await.unwrap();
        assert_eq!(store.link_by_crm(&upper.crm_id).await.unwrap(), Some(upper));
        assert_eq!(store.link_by_crm(&lower.crm_id).await.unwrap(), Some(lower));
        assert_eq!(store.link_by_crm("0065G00000XYZ12AAB").await.unwrap(), None);
    }

    #[tokio::test]
    async fn unreadable_rows_are_corrupt_naming_row_and_column_not_value() {
        let dir = TempDir::new();
        let store = SqliteStore::open(&dir.file()).unwrap();
        store.put_link(&link("ref-a", "crm-a")).await.unwrap();
        store.put_link(&link("ref-b", "crm-b")).await.unwrap();
        let raw = raw(&dir.file());
        raw.execute_batch(
            "UPDATE links SET record = 'secret-kind' WHERE referral_key = 'ref-a';
             UPDATE links SET synced = '{\"name\": 7, \"secret\"' WHERE referral_key = 'ref-b';
             INSERT INTO claims VALUES ('key-1', 'SECRET-STATUS', NULL, 0);
             INSERT INTO journal (referral_key, referral_id, at_secs, at_nanos, outcome, message)
                 VALUES ('ref-a', 'ref-a', 0, 0, 'secret-outcome', 'm');",
        )
        .unwrap();

        let message = corrupt_message(store.link_by_referral("REF-A").await);
        assert!(
            message.contains("ref-a") && message.contains("record"),
            "{message}"
        );
        assert!(!message.contains("secret"), "{message}");

        let message = corrupt_message(store.link_by_crm("crm-b").await);
        assert!(
            message.contains("ref-b") && message.contains("synced"),
            "{message}"
        );
        assert!(!message.contains("secret"), "{message}");

        let now = Utc::now();
        let message = corrupt_message(store.claim("key-1", now, now).await);
        assert!(
            message.contains("key-1") && message.contains("status"),
            "{message}"
        );
        assert!(!message.contains("SECRET"), "{message}");

        let message = corrupt_message(store.journal("ref-a", 10).await);
        assert!(message.contains("outcome"), "{message}");
        assert!(!message.contains("secret"), "{message}");
    }

    #[tokio::test]
    async fn completing_deletes_claims_that_have_expired() {
        let dir = TempDir::new();
        let store = SqliteStore::open(&dir.file()).unwrap();
        let now = Utc::now();
        for key in ["done-long-ago", "abandoned"] {
            let then = now - TimeDelta::days(2);
            assert_eq!(
                store.claim(key, then, then + TimeDelta::minutes(5)).await,
                Ok(Claim::Acquired)
            );
        }
        store
            .complete("done-long-ago", now - TimeDelta::days(1))
            .await
            .unwrap();
        assert_eq!(
            store.claim("held", now, now + TimeDelta::minutes(5)).await,
            Ok(Claim::Acquired)
        );
        store
            .complete("fresh", now + TimeDelta::hours(1))
            .await
            .unwrap();

        let keys: Vec<String> = raw(&dir.file())
            .prepare("SELECT key FROM claims ORDER BY key")
            .unwrap()
            .query_map([], |row| row.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(keys, ["fresh", "held"]);
        assert_eq!(
            store.claim("fresh", now, now + TimeDelta::minutes(5)).await,
            Ok(Claim::Completed)
        );
    }

    #[test]
    fn the_journal_is_read_through_its_index() {
        let dir = TempDir::new();
        drop(SqliteStore::open(&dir.file()).unwrap());
        let plan: Vec<String> = raw(&dir.file())
            .prepare(&format!("EXPLAIN QUERY PLAN {JOURNAL}"))
            .unwrap()
            .query_map(params!["r", 10, 0], |row| row.get::<_, String>(3))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        let plan = plan.join("\n");
        assert!(plan.contains("journal_by_referral"), "{plan}");
        assert!(
            !plan.contains("TEMP B-TREE"),
            "no sort outside the index: {plan}"
        );
    }

    #[tokio::test]
    async fn a_poisoned_connection_is_unavailable() {
        let dir = TempDir::new();
        let store = SqliteStore::open(&dir.file()).unwrap();
        let conn = Arc::clone(&store.conn);
        let _ = std::thread::spawn(move || {
            let _held = conn.lock();
            panic!("a call panics while holding the connection");
        })
        .join();
        let message = unavailable_message(store.cursor("c").await);
        assert!(
            message.contains(&dir.file().display().to_string()),
            "{message}"
        );
    }

    #[tokio::test]
    async fn journal_times_keep_their_nanoseconds_and_order() {
        let dir = TempDir::new();
        let store = SqliteStore::open(&dir.file()).unwrap();
        // Recent, so the retention keeps it.
        let at = DateTime::from_timestamp(Utc::now().timestamp(), 999_999_999).unwrap();
        for (at, message) in [(at, "earlier"), (at + TimeDelta::nanoseconds(1), "later")] {
            store
                .append_journal(&JournalEntry {
                    at,
                    referral_id: "r".into(),
                    outcome: Outcome::Synced,
                    message: message.into(),
                })
                .await
                .unwrap();
        }
        let entries = store.journal("r", 10).await.unwrap();
        let messages: Vec<&str> = entries.iter().map(|e| e.message.as_str()).collect();
        assert_eq!(messages, ["later", "earlier"]);
        assert_eq!(entries[1].at, at);
    }

    fn count(path: &Path, table: &str) -> i64 {
        raw(path)
            .query_row(&format!("SELECT count(*) FROM {table}"), [], |row| {
                row.get(0)
            })
            .unwrap()
    }

    fn entry(referral_id: &str, at: DateTime<Utc>, message: &str) -> JournalEntry {
        JournalEntry {
            at,
            referral_id: referral_id.to_owned(),
            outcome: Outcome::Synced,
            message: message.to_owned(),
        }
    }

    #[tokio::test]
    async fn expired_rows_are_deleted_on_open_and_by_a_write_an_hour_later() {
        let dir = TempDir::new();
        let retention = Duration::from_secs(24 * 3600);
        let now = Utc::now();
        let store = SqliteStore::open_with_retention(&dir.file(), retention).unwrap();
        store
            .append_journal(&entry("r", now, "kept"))
            .await
            .unwrap();
        store
            .append_journal(&entry("r", now - TimeDelta::days(2), "expired"))
            .await
            .unwrap();
        store
            .put_cursor_until("gone", "v", now - TimeDelta::minutes(1))
            .await
            .unwrap();
        store
            .put_cursor_until("held", "v", now + TimeDelta::hours(1))
            .await
            .unwrap();
        store.put_cursor("forever", "v").await.unwrap();
        // The open purged a moment ago, so these writes left the expired rows in place.
        assert_eq!(count(&dir.file(), "journal"), 2);
        assert_eq!(count(&dir.file(), "cursors"), 3);
        assert_eq!(store.journal("r", 10).await.unwrap().len(), 1);

        // Reopening purges.
        drop(store);
        let store = SqliteStore::open_with_retention(&dir.file(), retention).unwrap();
        assert_eq!(count(&dir.file(), "journal"), 1);
        assert_eq!(count(&dir.file(), "cursors"), 2);

        // So does the first write once the hour is up.
        store
            .append_journal(&entry("r", now - TimeDelta::days(3), "expired too"))
            .await
            .unwrap();
        store
            .put_cursor_until("gone", "v", now - TimeDelta::minutes(1))
            .await
            .unwrap();
        assert_eq!(count(&dir.file(), "journal"), 2);
        store.next_purge_ms.store(0, Ordering::Relaxed);
        store.put_link(&link("ref-1", "crm-1")).await.unwrap();
        assert_eq!(count(&dir.file(), "journal"), 1);
        assert_eq!(count(&dir.file(), "cursors"), 2);
        assert!(
            store.next_purge_ms.load(Ordering::Relaxed) > Utc::now().timestamp_millis(),
            "the next purge is an hour away"
        );
        assert_eq!(store.cursor("held").await.unwrap().as_deref(), Some("v"));
        assert_eq!(store.cursor("forever").await.unwrap().as_deref(), Some("v"));
    }

    #[test]
    fn the_purge_deletes_through_the_expiry_indexes() {
        let dir = TempDir::new();
        drop(SqliteStore::open(&dir.file()).unwrap());
        for (sql, index) in [
            (PURGE_JOURNAL, "journal_by_expiry"),
            (PURGE_CURSORS, "cursors_by_expiry"),
        ] {
            let plan: Vec<String> = raw(&dir.file())
                .prepare(&format!("EXPLAIN QUERY PLAN {sql}"))
                .unwrap()
                .query_map([0], |row| row.get::<_, String>(3))
                .unwrap()
                .collect::<Result<_, _>>()
                .unwrap();
            let plan = plan.join("\n");
            assert!(plan.contains(index), "{sql}: {plan}");
        }
    }

    /// A file as schema version 2 left it: its tables, a journal row of now, one older than the
    /// retention, and a cursor.
    fn version_2_file(path: &Path, now: DateTime<Utc>, retention: TimeDelta) {
        let mut conn = raw(path);
        let tx = conn.transaction().unwrap();
        for sql in &MIGRATIONS[..2] {
            tx.execute_batch(sql).unwrap();
        }
        tx.pragma_update(None, "user_version", 2).unwrap();
        for (at, message) in [
            (now, "recent"),
            (now - retention - TimeDelta::days(1), "old"),
        ] {
            tx.execute(
                "INSERT INTO journal (referral_key, referral_id, at_secs, at_nanos, outcome, message)
                 VALUES ('r', 'R', ?1, ?2, 'synced', ?3)",
                params![at.timestamp(), at.timestamp_subsec_nanos(), message],
            )
            .unwrap();
        }
        tx.execute(
            "INSERT INTO cursors (name, value) VALUES ('crm-opportunities', 'token')",
            [],
        )
        .unwrap();
        tx.commit().unwrap();
    }

    #[tokio::test]
    async fn a_version_2_file_migrates_in_place() {
        let dir = TempDir::new();
        let now = Utc::now();
        let retention = TimeDelta::days(30);
        version_2_file(&dir.file(), now, retention);

        let store =
            SqliteStore::open_with_retention(&dir.file(), retention.to_std().unwrap()).unwrap();
        let version: i64 = raw(&dir.file())
            .pragma_query_value(None, "user_version", |row| row.get(0))
            .unwrap();
        assert_eq!(version, 3);
        assert_eq!(
            store.cursor("crm-opportunities").await.unwrap().as_deref(),
            Some("token"),
            "an existing cursor is kept for good"
        );
        let expiry: Option<i64> = raw(&dir.file())
            .query_row(
                "SELECT expires_at FROM cursors WHERE name = 'crm-opportunities'",
                [],
                |row| row.get(0),
            )
            .unwrap();
        assert_eq!(expiry, None);

        // The old row got its expiry from its time, so the open deleted it.
        let rows: Vec<(String, Option<i64>)> = raw(&dir.file())
            .prepare("SELECT message, expires_at FROM journal")
            .unwrap()
            .query_map([], |row| Ok((row.get(0)?, row.get(1)?)))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(
            rows,
            [("recent".to_owned(), Some(ceil_millis(now + retention)))]
        );
        let journal = store.journal("r", 10).await.unwrap();
        assert_eq!(journal.len(), 1);
        assert_eq!(journal[0].at, now);

        // And the migrated file takes the new kinds of write.
        store
            .put_cursor_until("reconciled:r", "etag", now + TimeDelta::hours(1))
            .await
            .unwrap();
        store
            .append_journal(&entry("r", now, "after"))
            .await
            .unwrap();
        assert_eq!(store.journal("r", 10).await.unwrap().len(), 2);
    }

    #[tokio::test]
    async fn links_are_listed_through_the_key() {
        let dir = TempDir::new();
        let store = SqliteStore::open(&dir.file()).unwrap();
        for (referral, crm) in [("B", "1"), ("a", "2"), ("C", "3")] {
            store.put_link(&link(referral, crm)).await.unwrap();
        }
        let ids = |links: Vec<Link>| -> Vec<String> {
            links.into_iter().map(|l| l.referral_id).collect()
        };
        assert_eq!(ids(store.links(None, 10).await.unwrap()), ["a", "B", "C"]);
        assert_eq!(ids(store.links(Some("A"), 1).await.unwrap()), ["B"]);
        assert!(store.links(Some("c"), 10).await.unwrap().is_empty());
        for sql in [LINKS_FIRST, LINKS_AFTER] {
            let plan: Vec<String> = raw(&dir.file())
                .prepare(&format!("EXPLAIN QUERY PLAN {sql}"))
                .unwrap()
                .query_map(
                    rusqlite::params_from_iter(["a", "1"].iter().take(sql.matches('?').count())),
                    |row| row.get::<_, String>(3),
                )
                .unwrap()
                .collect::<Result<_, _>>()
                .unwrap();
            let plan = plan.join("\n");
            assert!(!plan.contains("TEMP B-TREE"), "no sort: {plan}");
        }
    }
}
