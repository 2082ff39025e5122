//! The embedded queue for `cosell local`: a FIFO queue with a redrive policy, as SQS FIFO has,
//! durable in a SQLite file.
//!
//! # Schema (`user_version` 1)
//!
//! - `queue_messages(seq INTEGER PRIMARY KEY, queue, message_id UNIQUE, group_id, body, sent_at,
//!   visible_at, receive_count, receipt UNIQUE)`: `seq` is the send order (a message moved to the
//!   dead-letter queue gets a new one, so it lines up behind what is already there). Times are
//!   milliseconds since the Unix epoch. A message is *in flight* while `visible_at` is in the
//!   future, *waiting* otherwise; `receipt` names its latest receipt (`NULL` before the first).
//! - `queue_dedup(queue, dedup_id, expires_at)`: deduplication ids seen within the window, kept
//!   even after their message is deleted; expired ones are pruned on each send.
//!
//! Several named queues share one file (the `queue` column): the dead-letter queue is just
//! another name in the same file, read by opening it with [`EmbeddedQueue::open`], or through
//! [`EmbeddedQueue::dead_letters`] to look at its messages and move them back. The file's
//! `user_version` is the queue's schema version, so give the queue a file of its own.
//!
//! # Semantics
//!
//! As SQS FIFO: a group's messages are delivered in send order and never while one of the group
//! is in flight; one receive may answer several consecutive messages of a group, all then in
//! flight. In-flight state is only `visible_at`, so after a crash the message is simply received
//! again once its visibility timeout passes. A message received `max_receive_count` times and
//! not deleted moves to the dead-letter queue at the next receive (keeping its receive count);
//! without a dead-letter queue it is delivered again. A receipt is stale once its message was
//! received again or deleted, and then `delete` and `release` ignore it.
//!
//! A receive that waits wakes at once on a send through the same queue (or a clone of it), and
//! otherwise looks again every 200 ms, for sends from other processes and for visibility
//! timeouts that pass.
//!
//! Unlike SQS FIFO, a receipt whose visibility timeout passed still deletes its message as long
//! as nobody received the message since: the work is done and nobody else has it, so delivering
//! it again would only repeat it.
//!
//! # Concurrency and durability
//!
//! Each receive selects and marks its messages inside one `BEGIN IMMEDIATE` transaction, which
//! takes SQLite's write lock first, so two processes on one file never hand out the same
//! message. The file is in WAL mode with `synchronous = FULL`: every commit fsyncs the WAL before
//! `send` returns. `NORMAL` would already survive a killed process (the write is in the OS page
//! cache), but not a power loss or kernel crash; the ingress acknowledges a webhook as soon as
//! `send` returns, so the message has to outlast those too, and each send pays for an fsync.

use std::path::{Path, PathBuf};
use std::pin::pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use chrono::DateTime;
use rusqlite::{Connection, TransactionBehavior, params};
use tokio::sync::Notify;
use tokio::time::Instant;

use super::{
    DeadLetters, Delivery, Outgoing, Parked, Queue, QueueConsumer, QueueDepth, QueueError,
};

/// The schema this code reads and writes, kept in the file's `user_version`.
const SCHEMA_VERSION: i64 = 1;

const SCHEMA_V1: &str = "
CREATE TABLE queue_messages (
    seq INTEGER PRIMARY KEY,
    queue TEXT NOT NULL,
    message_id TEXT NOT NULL UNIQUE,
    group_id TEXT NOT NULL,
    body TEXT NOT NULL,
    sent_at INTEGER NOT NULL,
    visible_at INTEGER NOT NULL,
    receive_count INTEGER NOT NULL DEFAULT 0,
    receipt TEXT UNIQUE
);
CREATE INDEX queue_messages_in_order ON queue_messages (queue, seq);
CREATE INDEX queue_messages_by_group ON queue_messages (queue, group_id, visible_at);
CREATE TABLE queue_dedup (
    queue TEXT NOT NULL,
    dedup_id TEXT NOT NULL,
    expires_at INTEGER NOT NULL,
    PRIMARY KEY (queue, dedup_id)
) WITHOUT ROWID;
CREATE INDEX queue_dedup_expiry ON queue_dedup (expires_at);
";

/// How long a write waits for another connection's transaction before giving up.
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);
/// How often a waiting receive looks again, for what a `send` in this process does not announce:
/// sends from other processes, and in-flight messages whose visibility timeout passes.
const POLL_INTERVAL: Duration = Duration::from_millis(200);

/// How an [`EmbeddedQueue`] behaves; the fields mirror an SQS FIFO queue's attributes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EmbeddedQueueSettings {
    /// How long a received message stays invisible unless deleted or released (at least 1 s).
    pub visibility_timeout: Duration,
    /// Receives after which an undeleted message moves to the dead-letter queue (at least 1).
    pub max_receive_count: u32,
    /// Another queue in the same file for messages past `max_receive_count`; `None` keeps them.
    pub dead_letter_queue: Option<String>,
    /// How long a deduplication id suppresses later sends with the same id.
    pub dedup_window: Duration,
}

impl Default for EmbeddedQueueSettings {
    /// A 300 s visibility timeout, 5 receives before the `sync-dlq` queue (the template's
    /// `MaxReceiveCount`), and SQS's five-minute deduplication window.
    fn default() -> Self {
        EmbeddedQueueSettings {
            visibility_timeout: Duration::from_secs(300),
            max_receive_count: 5,
            dead_letter_queue: Some("sync-dlq".to_owned()),
            dedup_window: Duration::from_secs(5 * 60),
        }
    }
}

impl EmbeddedQueueSettings {
    fn validate(&self, name: &str) -> Result<(), QueueError> {
        let invalid = |reason: &str| {
            Err(QueueError::Unavailable(format!(
                "embedded queue {name:?}: {reason}"
            )))
        };
        if name.is_empty() {
            return invalid("the queue name is empty");
        }
        if self.max_receive_count < 1 {
            return invalid("max_receive_count must be at least 1");
        }
        if self.visibility_timeout < Duration::from_secs(1) {
            return invalid("visibility_timeout must be at least 1 s");
        }
        match self.dead_letter_queue.as_deref() {
            Some("") => invalid("dead_letter_queue is an empty name"),
            // Moving a message to its own queue would hide it for good behind a receive count
            // that never drops: open a dead-letter queue with `dead_letter_queue: None`.
            Some(dlq) if dlq == name => invalid("dead_letter_queue names the queue itself"),
            _ => Ok(()),
        }
    }
}

/// A FIFO queue in a SQLite file: [`Queue`] for the senders, [`QueueConsumer`] for the
/// processor. Clones share the connection, and a receive waiting in one wakes on a send in any.
#[derive(Debug, Clone)]
pub struct EmbeddedQueue {
    connection: Arc<Mutex<Connection>>,
    name: Arc<str>,
    path: Arc<Path>,
    settings: Arc<EmbeddedQueueSettings>,
    sent: Arc<Notify>,
}

impl EmbeddedQueue {
    /// Opens (creating if needed) the queue `name` in the SQLite file at `path`. Blocks while
    /// it sets the file up, which may wait up to 10 s for another process's write.
    pub fn open(
        path: &Path,
        name: &str,
        settings: EmbeddedQueueSettings,
    ) -> Result<EmbeddedQueue, QueueError> {
        settings.validate(name)?;
        let unavailable = |what: &str, err: rusqlite::Error| {
            QueueError::Unavailable(format!(
                "embedded queue {name:?} in {}: {what}: {err}",
                path.display()
            ))
        };
        let mut connection =
            Connection::open(path).map_err(|err| unavailable("cannot open the file", err))?;
        connection
            .busy_timeout(BUSY_TIMEOUT)
            .map_err(|err| unavailable("cannot set the busy timeout", err))?;
        let mode: String = connection
            .pragma_update_and_check(None, "journal_mode", "wal", |row| row.get(0))
            .map_err(|err| unavailable("cannot switch to WAL mode", err))?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(QueueError::Unavailable(format!(
                "embedded queue {name:?} in {}: the file stays in {mode} mode, not WAL \
                 (is it on a file system without shared memory?)",
                path.display()
            )));
        }
        connection
            .pragma_update(None, "synchronous", "FULL")
            .map_err(|err| unavailable("cannot set synchronous = FULL", err))?;
        let found = migrate(&mut connection).map_err(|err| unavailable("cannot migrate", err))?;
        if found > SCHEMA_VERSION {
            return Err(QueueError::Unavailable(format!(
                "embedded queue {name:?} in {}: the file has schema version {found}, newer than \
                 this build's {SCHEMA_VERSION}",
                path.display()
            )));
        }
        Ok(EmbeddedQueue {
            connection: Arc::new(Mutex::new(connection)),
            name: Arc::from(name),
            path: Arc::from(path),
            settings: Arc::new(settings),
            sent: Arc::new(Notify::new()),
        })
    }

    /// The queue's name in its file.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The SQLite file the queue lives in.
    pub fn path(&self) -> PathBuf {
        self.path.to_path_buf()
    }

    /// Runs `operation` on the connection off the async runtime.
    async fn blocking<T, F>(&self, what: &'static str, operation: F) -> Result<T, QueueError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> rusqlite::Result<T> + Send + 'static,
    {
        let connection = Arc::clone(&self.connection);
        let joined = tokio::task::spawn_blocking(move || {
            // A panic while the lock was held left no transaction open (dropping a Transaction
            // rolls it back), so the connection is still good to use.
            let mut connection = connection.lock().unwrap_or_else(PoisonError::into_inner);
            operation(&mut connection)
        })
        .await;
        let describe = |err: &dyn std::fmt::Display| {
            QueueError::Unavailable(format!(
                "embedded queue {:?} in {}: {what}: {err}",
                self.name,
                self.path.display()
            ))
        };
        match joined {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(err)) => Err(describe(&err)),
            Err(err) => Err(describe(&err)),
        }
    }

    /// Makes every message in flight visible again at once, answering how many there were.
    /// Only for a process that knows it is the queue's sole user (`cosell local` holds a lock on
    /// its data directory): at its start, a message in flight can only be a crashed run's, and
    /// waiting out its visibility timeout would only delay it. Their receive counts stay.
    pub async fn release_in_flight(&self) -> Result<usize, QueueError> {
        let queue = Arc::clone(&self.name);
        self.blocking("releasing messages in flight", move |connection| {
            let now = now_millis();
            connection.execute(
                "UPDATE queue_messages SET visible_at = ?2, receipt = NULL
                 WHERE queue = ?1 AND visible_at > ?2",
                params![queue, now],
            )
        })
        .await
    }

    /// Up to `limit` of the queue's messages in the order they would be delivered, waiting and
    /// in flight alike (`in_flight` tells them apart), read without receiving them: nothing
    /// about their delivery changes.
    pub async fn peek(&self, limit: usize) -> Result<Vec<Parked>, QueueError> {
        let queue = Arc::clone(&self.name);
        self.blocking("peek", move |connection| {
            peek_messages(connection, &queue, limit)
        })
        .await
    }

    /// The dead-letter queue of the settings' `dead_letter_queue`, in the same file, or `None`
    /// when the queue has none.
    pub fn dead_letters(&self) -> Option<EmbeddedDeadLetters> {
        let name = self.settings.dead_letter_queue.as_deref()?;
        // The dead-letter queue's own view of the file, on the same connection; its settings
        // never deliver anything onwards.
        let queue = EmbeddedQueue {
            connection: Arc::clone(&self.connection),
            name: Arc::from(name),
            path: Arc::clone(&self.path),
            settings: Arc::new(EmbeddedQueueSettings {
                dead_letter_queue: None,
                ..(*self.settings).clone()
            }),
            sent: Arc::new(Notify::new()),
        };
        Some(EmbeddedDeadLetters {
            queue,
            source: self.clone(),
        })
    }

    /// One receive attempt: whatever is ready now, possibly nothing.
    async fn receive_now(&self, max: usize) -> Result<Vec<Delivery>, QueueError> {
        let queue = Arc::clone(&self.name);
        let settings = Arc::clone(&self.settings);
        self.blocking("receive", move |connection| {
            receive_ready(connection, &queue, &settings, max)
        })
        .await
    }
}

/// Brings the schema to [`SCHEMA_VERSION`]; answers the version found, which may be newer.
fn migrate(connection: &mut Connection) -> rusqlite::Result<i64> {
    // Immediate, so two processes opening a new file do not both create the tables.
    let transaction = connection.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let found: i64 = transaction.pragma_query_value(None, "user_version", |row| row.get(0))?;
    if found == 0 {
        transaction.execute_batch(SCHEMA_V1)?;
        transaction.pragma_update(None, "user_version", SCHEMA_VERSION)?;
    }
    transaction.commit()?;
    Ok(found)
}

/// Milliseconds since the Unix epoch: the in-flight state must mean the same to every process
/// on the file and after a restart, so it is wall-clock time.
fn now_millis() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, millis)
}

fn millis(duration: Duration) -> i64 {
    i64::try_from(duration.as_millis()).unwrap_or(i64::MAX)
}

/// Adds `message` unless its deduplication id is within the window; answers whether it did.
fn send_one(
    connection: &mut Connection,
    queue: &str,
    message: &Outgoing,
    body: &str,
    dedup_window: Duration,
) -> rusqlite::Result<bool> {
    let now = now_millis();
    let transaction = connection.transaction_with_behavior(TransactionBehavior::Immediate)?;
    transaction.execute("DELETE FROM queue_dedup WHERE expires_at <= ?1", [now])?;
    let first = transaction.execute(
        "INSERT INTO queue_dedup (queue, dedup_id, expires_at) VALUES (?1, ?2, ?3)
         ON CONFLICT DO NOTHING",
        params![
            queue,
            message.dedup_id,
            now.saturating_add(millis(dedup_window))
        ],
    )? == 1;
    if first {
        transaction.execute(
            "INSERT INTO queue_messages (queue, message_id, group_id, body, sent_at, visible_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?5)",
            params![
                queue,
                uuid::Uuid::new_v4().to_string(),
                message.command.group(),
                body,
                now
            ],
        )?;
    }
    transaction.commit()?;
    Ok(first)
}

/// Receives up to `max` ready messages in one transaction, first moving those past the maximum
/// receive count that stand in the way to the dead-letter queue.
fn receive_ready(
    connection: &mut Connection,
    queue: &str,
    settings: &EmbeddedQueueSettings,
    max: usize,
) -> rusqlite::Result<Vec<Delivery>> {
    let now = now_millis();
    let transaction = connection.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let mut deliveries = Vec::new();
    let mut dead = Vec::new();
    {
        // Every message of a group without one in flight, oldest first: since a group's messages
        // come in order, whatever is taken of a group is its head and the ones right behind it.
        let mut ready = transaction.prepare_cached(
            "SELECT seq, message_id, group_id, body, receive_count, sent_at FROM queue_messages AS m
             WHERE queue = ?1 AND NOT EXISTS (
                 SELECT 1 FROM queue_messages AS f
                 WHERE f.queue = m.queue AND f.group_id = m.group_id AND f.visible_at > ?2)
             ORDER BY seq",
        )?;
        let mut rows = ready.query(params![queue, now])?;
        while deliveries.len() < max {
            let Some(row) = rows.next()? else { break };
            let seq: i64 = row.get(0)?;
            let receive_count: u32 = row.get(4)?;
            if settings.dead_letter_queue.is_some() && receive_count >= settings.max_receive_count {
                dead.push(seq);
                continue;
            }
            deliveries.push((
                seq,
                Delivery {
                    message_id: row.get(1)?,
                    group: row.get(2)?,
                    body: row.get(3)?,
                    receipt: uuid::Uuid::new_v4().to_string(),
                    receive_count: receive_count.saturating_add(1),
                    // Out of range is impossible for what `send_one` writes; a delivery does
                    // without it rather than hold up the queue.
                    sent_at: DateTime::from_timestamp_millis(row.get(5)?),
                },
            ));
        }
    }
    if let Some(dead_letter_queue) = &settings.dead_letter_queue {
        for seq in dead {
            transaction.execute(
                "UPDATE queue_messages
                 SET queue = ?2, seq = (SELECT MAX(seq) FROM queue_messages) + 1,
                     visible_at = ?3, receipt = NULL
                 WHERE seq = ?1",
                params![seq, dead_letter_queue, now],
            )?;
        }
    }
    let visible_at = now.saturating_add(millis(settings.visibility_timeout));
    for (seq, delivery) in &deliveries {
        transaction.execute(
            "UPDATE queue_messages SET receive_count = ?2, visible_at = ?3, receipt = ?4
             WHERE seq = ?1",
            params![seq, delivery.receive_count, visible_at, delivery.receipt],
        )?;
    }
    transaction.commit()?;
    Ok(deliveries
        .into_iter()
        .map(|(_, delivery)| delivery)
        .collect())
}

/// Up to `limit` of `queue`'s messages in queue order.
fn peek_messages(
    connection: &mut Connection,
    queue: &str,
    limit: usize,
) -> rusqlite::Result<Vec<Parked>> {
    let mut statement = connection.prepare_cached(
        "SELECT message_id, group_id, body, sent_at, receive_count, visible_at > ?2
         FROM queue_messages WHERE queue = ?1 ORDER BY seq LIMIT ?3",
    )?;
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    let rows = statement.query_map(params![queue, now_millis(), limit], |row| {
        let sent_at: i64 = row.get(3)?;
        Ok(Parked {
            message_id: row.get(0)?,
            group: row.get(1)?,
            body: row.get(2)?,
            sent_at: DateTime::from_timestamp_millis(sent_at)
                .ok_or(rusqlite::Error::IntegralValueOutOfRange(3, sent_at))?,
            receive_count: row.get(4)?,
            in_flight: row.get(5)?,
        })
    })?;
    rows.collect()
}

/// Moves the messages `message_ids` of `dead_letter_queue` to the end of `queue`, as if sent
/// now but keeping their id and first send time; answers how many were still there to move.
fn move_back(
    connection: &mut Connection,
    dead_letter_queue: &str,
    queue: &str,
    message_ids: &[String],
) -> rusqlite::Result<usize> {
    let now = now_millis();
    let transaction = connection.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let mut moved = 0;
    {
        // In flight or not: nobody receives from the dead-letter queue in this product, and a
        // receipt someone might hold there goes stale, as it should.
        let mut statement = transaction.prepare_cached(
            "UPDATE queue_messages
             SET queue = ?3, seq = (SELECT MAX(seq) FROM queue_messages) + 1,
                 receive_count = 0, visible_at = ?4, receipt = NULL
             WHERE queue = ?1 AND message_id = ?2",
        )?;
        // In the order they were dead-lettered, so a group's messages keep theirs.
        for message_id in message_ids {
            moved += statement.execute(params![dead_letter_queue, message_id, queue, now])?;
        }
    }
    transaction.commit()?;
    Ok(moved)
}

/// The dead-letter queue of an [`EmbeddedQueue`], from [`EmbeddedQueue::dead_letters`].
#[derive(Debug, Clone)]
pub struct EmbeddedDeadLetters {
    queue: EmbeddedQueue,
    source: EmbeddedQueue,
}

impl EmbeddedDeadLetters {
    /// The dead-letter queue's name in its file.
    pub fn name(&self) -> &str {
        self.queue.name()
    }
}

#[async_trait]
impl DeadLetters for EmbeddedDeadLetters {
    fn describe(&self) -> String {
        format!(
            "embedded queue {:?} in {}",
            self.queue.name(),
            self.queue.path.display()
        )
    }

    async fn peek(&self, limit: usize) -> Result<Vec<Parked>, QueueError> {
        self.queue.peek(limit).await
    }

    /// Selects on what one read shows, then moves the picked messages in one transaction; one
    /// dead-lettered between the two stays where it is.
    async fn redrive(
        &self,
        select: &(dyn for<'p> Fn(&'p Parked) -> bool + Send + Sync),
    ) -> Result<usize, QueueError> {
        // `select` borrows from the caller, so it cannot go to the blocking thread: it runs
        // here, between a read and the move, and the move skips whatever left meanwhile.
        let picked: Vec<String> = self
            .queue
            .peek(usize::MAX)
            .await?
            .into_iter()
            .filter(|parked| select(parked))
            .map(|parked| parked.message_id)
            .collect();
        if picked.is_empty() {
            return Ok(0);
        }
        let dead_letter_queue = Arc::clone(&self.queue.name);
        let queue = Arc::clone(&self.source.name);
        let moved = self
            .queue
            .blocking("redrive", move |connection| {
                move_back(connection, &dead_letter_queue, &queue, &picked)
            })
            .await?;
        if moved > 0 {
            self.source.sent.notify_waiters();
        }
        Ok(moved)
    }

    async fn depth(&self) -> Result<QueueDepth, QueueError> {
        QueueConsumer::depth(&self.queue).await
    }
}

#[async_trait]
impl Queue for EmbeddedQueue {
    async fn send(&self, message: &Outgoing) -> Result<(), QueueError> {
        let body = serde_json::to_string(&message.command).map_err(|err| {
            QueueError::Malformed(format!("the command cannot be serialised: {err}"))
        })?;
        let queue = Arc::clone(&self.name);
        let window = self.settings.dedup_window;
        let message = message.clone();
        let added = self
            .blocking("send", move |connection| {
                send_one(connection, &queue, &message, &body, window)
            })
            .await?;
        if added {
            self.sent.notify_waiters();
        }
        Ok(())
    }
}

#[async_trait]
impl QueueConsumer for EmbeddedQueue {
    async fn receive(&self, max: usize, wait: Duration) -> Result<Vec<Delivery>, QueueError> {
        if max == 0 {
            return Ok(Vec::new());
        }
        let start = Instant::now();
        // A wait too long to represent is as good as waiting for ever.
        let deadline = start
            .checked_add(wait)
            .unwrap_or_else(|| start + Duration::from_secs(365 * 24 * 3600));
        loop {
            // Registered before looking, so a send between the look and the nap still wakes it.
            let mut sent = pin!(self.sent.notified());
            sent.as_mut().enable();
            let deliveries = self.receive_now(max).await?;
            let now = Instant::now();
            if !deliveries.is_empty() || now >= deadline {
                return Ok(deliveries);
            }
            // Either way it looks again; timing out is just the poll.
            let _ = tokio::time::timeout(POLL_INTERVAL.min(deadline - now), sent).await;
        }
    }

    async fn delete(&self, receipt: &str) -> Result<(), QueueError> {
        let queue = Arc::clone(&self.name);
        let receipt = receipt.to_owned();
        self.blocking("delete", move |connection| {
            connection.execute(
                "DELETE FROM queue_messages WHERE queue = ?1 AND receipt = ?2",
                params![queue, receipt],
            )
        })
        .await
        .map(|_| ())
    }

    async fn release(&self, receipt: &str, delay: Duration) -> Result<(), QueueError> {
        let queue = Arc::clone(&self.name);
        let receipt = receipt.to_owned();
        self.blocking("release", move |connection| {
            let now = now_millis();
            // Only while in flight: a message visible again already is nobody's to hide.
            connection.execute(
                "UPDATE queue_messages SET visible_at = ?3
                 WHERE queue = ?1 AND receipt = ?2 AND visible_at > ?4",
                params![queue, receipt, now.saturating_add(millis(delay)), now],
            )
        })
        .await
        .map(|_| ())
    }

    async fn depth(&self) -> Result<QueueDepth, QueueError> {
        let queue = Arc::clone(&self.name);
        let (waiting, in_flight) = self
            .blocking("depth", move |connection| {
                connection.query_row(
                    "SELECT COALESCE(SUM(visible_at <= ?2), 0), COALESCE(SUM(visible_at > ?2), 0)
                     FROM queue_messages WHERE queue = ?1",
                    params![queue, now_millis()],
                    |row| Ok((row.get::<_, i64>(0)?, row.get::<_, i64>(1)?)),
                )
            })
            .await?;
        Ok(QueueDepth {
            waiting: u64::try_from(waiting).unwrap_or(0),
            in_flight: u64::try_from(in_flight).unwrap_or(0),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::queue::SyncCommand;

    /// A fresh SQLite path in a directory of its own, removed with its WAL files afterwards.
    struct TempFile {
        path: PathBuf,
        _dir: tempfile::TempDir,
    }

    impl TempFile {
        fn new() -> Self {
            let dir = tempfile::tempdir().expect("a temporary directory");
            TempFile {
                path: dir.path().join("queue.sqlite3"),
                _dir: dir,
            }
        }
    }

    fn outgoing(referral_id: &str, event: &str, dedup_id: &str) -> Outgoing {
        Outgoing {
            command: SyncCommand::PartnerCenterChanged {
                referral_id: referral_id.to_owned(),
                event: event.to_owned(),
            },
            dedup_id: dedup_id.to_owned(),
        }
    }

    fn event_of(delivery: &Delivery) -> String {
        match SyncCommand::from_body(&delivery.body) {
            Ok(SyncCommand::PartnerCenterChanged { event, .. }) => event,
            other => panic!("unexpected body {other:?}"),
        }
    }

    #[test]
    fn bad_settings_are_refused_naming_the_setting() {
        let file = TempFile::new();
        let cases = [
            (
                EmbeddedQueueSettings {
                    max_receive_count: 0,
                    ..EmbeddedQueueSettings::default()
                },
                "max_receive_count",
            ),
            (
                EmbeddedQueueSettings {
                    visibility_timeout: Duration::from_millis(999),
                    ..EmbeddedQueueSettings::default()
                },
                "visibility_timeout",
            ),
            (
                EmbeddedQueueSettings {
                    dead_letter_queue: Some("sync".to_owned()),
                    ..EmbeddedQueueSettings::default()
                },
                "dead_letter_queue",
            ),
        ];
        for (settings, setting) in cases {
            match EmbeddedQueue::open(&file.path, "sync", settings) {
                Err(QueueError::Unavailable(message)) => {
                    assert!(message.contains(setting), "{message:?} names {setting}");
                }
                other => panic!("expected Unavailable naming {setting}, got {other:?}"),
            }
        }
        assert!(EmbeddedQueue::open(&file.path, "sync", EmbeddedQueueSettings::default()).is_ok());
    }

    #[test]
    fn a_file_from_a_newer_version_is_refused() {
        let file = TempFile::new();
        let queue = EmbeddedQueue::open(&file.path, "sync", EmbeddedQueueSettings::default())
            .expect("a new file opens");
        queue
            .connection
            .lock()
            .expect("not poisoned")
            .pragma_update(None, "user_version", SCHEMA_VERSION + 1)
            .expect("set user_version");
        drop(queue);
        match EmbeddedQueue::open(&file.path, "sync", EmbeddedQueueSettings::default()) {
            Err(QueueError::Unavailable(message)) => {
                assert!(message.contains("schema version 2"), "{message}");
            }
            other => panic!("expected Unavailable, got {other:?}"),
        }
    }

    #[test]
    fn the_file_is_in_wal_mode_with_full_sync() {
        let file = TempFile::new();
        let queue = EmbeddedQueue::open(&file.path, "sync", EmbeddedQueueSettings::default())
            .expect("a new file opens");
        let connection = queue.connection.lock().expect("not poisoned");
        let mode: String = connection
            .pragma_query_value(None, "journal_mode", |row| row.get(0))
            .expect("journal_mode");
        let synchronous: i64 = connection
            .pragma_query_value(None, "synchronous", |row| row.get(0))
            .expect("synchronous");
        assert_eq!(mode, "wal");
        assert_eq!(synchronous, 2, "FULL");
    }

    #[tokio::test]
    async fn one_receive_takes_a_groups_consecutive_messages_all_in_flight() {
        let file = TempFile::new();
        let queue = EmbeddedQueue::open(&file.path, "sync", EmbeddedQueueSettings::default())
            .expect("open");
        for (referral, event) in [("a", "a1"), ("a", "a2"), ("b", "b1"), ("a", "a3")] {
            queue
                .send(&outgoing(referral, event, event))
                .await
                .expect("send");
        }
        let batch = queue.receive(3, Duration::ZERO).await.expect("receive");
        let events: Vec<String> = batch.iter().map(event_of).collect();
        assert_eq!(events, ["a1", "a2", "b1"], "oldest first, up to max");
        assert_eq!(
            queue.depth().await.expect("depth"),
            QueueDepth {
                waiting: 1,
                in_flight: 3
            }
        );
        // a3 waits behind a1 and a2, though a1 is done.
        queue.delete(&batch[0].receipt).await.expect("delete");
        assert!(
            queue
                .receive(10, Duration::ZERO)
                .await
                .expect("receive")
                .is_empty()
        );
        queue.delete(&batch[1].receipt).await.expect("delete");
        let next = queue.receive(10, Duration::ZERO).await.expect("receive");
        assert_eq!(next.iter().map(event_of).collect::<Vec<_>>(), ["a3"]);
    }

    #[tokio::test]
    async fn without_a_dead_letter_queue_a_message_keeps_coming_back() {
        let file = TempFile::new();
        let settings = EmbeddedQueueSettings {
            max_receive_count: 2,
            dead_letter_queue: None,
            ..EmbeddedQueueSettings::default()
        };
        let queue = EmbeddedQueue::open(&file.path, "sync", settings).expect("open");
        queue.send(&outgoing("a", "a1", "a1")).await.expect("send");
        for expected in 1..=4 {
            let batch = queue.receive(10, Duration::ZERO).await.expect("receive");
            assert_eq!(batch.len(), 1, "receive {expected}");
            assert_eq!(batch[0].receive_count, expected);
            queue
                .release(&batch[0].receipt, Duration::ZERO)
                .await
                .expect("release");
        }
    }

    #[tokio::test]
    async fn expired_dedup_ids_are_pruned_and_no_longer_deduplicate() {
        let file = TempFile::new();
        let settings = EmbeddedQueueSettings {
            dedup_window: Duration::ZERO,
            ..EmbeddedQueueSettings::default()
        };
        let queue = EmbeddedQueue::open(&file.path, "sync", settings).expect("open");
        for event in ["first", "second", "third"] {
            queue
                .send(&outgoing("a", event, "same-id"))
                .await
                .expect("send");
        }
        let dedup_ids: i64 = queue
            .connection
            .lock()
            .expect("not poisoned")
            .query_row("SELECT COUNT(*) FROM queue_dedup", [], |row| row.get(0))
            .expect("count");
        assert_eq!(dedup_ids, 1, "only the last send's id is left");
        assert_eq!(queue.depth().await.expect("depth").waiting, 3);
    }

    #[tokio::test]
    async fn messages_in_flight_are_released_at_once_keeping_their_receive_count() {
        let file = TempFile::new();
        let queue =
            EmbeddedQueue::open(&file.path, "sync", EmbeddedQueueSettings::default()).unwrap();
        queue
            .send(&outgoing("r-1", "referral-created", "d-1"))
            .await
            .unwrap();
        queue
            .send(&outgoing("r-2", "referral-created", "d-2"))
            .await
            .unwrap();
        assert_eq!(queue.receive(1, Duration::ZERO).await.unwrap().len(), 1);
        assert_eq!(queue.release_in_flight().await.unwrap(), 1);

        let again = queue.receive(10, Duration::ZERO).await.unwrap();
        let counts: Vec<u32> = again.iter().map(|d| d.receive_count).collect();
        assert_eq!(
            counts,
            [2, 1],
            "both visible, the released one received before"
        );
    }

    #[tokio::test]
    async fn a_waiting_receive_gets_a_message_sent_meanwhile() {
        let file = TempFile::new();
        let queue = EmbeddedQueue::open(&file.path, "sync", EmbeddedQueueSettings::default())
            .expect("open");
        let sender = queue.clone();
        let send = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(300)).await;
            sender.send(&outgoing("a", "late", "late")).await
        });
        let batch = queue
            .receive(10, Duration::from_secs(60))
            .await
            .expect("receive");
        send.await.expect("join").expect("send");
        assert_eq!(batch.iter().map(event_of).collect::<Vec<_>>(), ["late"]);
    }

    fn parked_event(parked: &Parked) -> String {
        match SyncCommand::from_body(&parked.body) {
            Ok(SyncCommand::PartnerCenterChanged { event, .. }) => event,
            other => panic!("unexpected body {other:?}"),
        }
    }

    #[tokio::test]
    async fn a_peek_shows_waiting_and_in_flight_messages_and_changes_nothing() {
        let file = TempFile::new();
        let queue = EmbeddedQueue::open(&file.path, "sync", EmbeddedQueueSettings::default())
            .expect("open");
        for (referral, event) in [("a", "a1"), ("a", "a2"), ("b", "b1")] {
            queue
                .send(&outgoing(referral, event, event))
                .await
                .expect("send");
        }
        let a1 = queue.receive(1, Duration::ZERO).await.expect("receive");
        assert!(a1[0].sent_at.is_some());

        let parked = queue.peek(10).await.expect("peek");
        let seen: Vec<(String, bool, u32)> = parked
            .iter()
            .map(|p| (parked_event(p), p.in_flight, p.receive_count))
            .collect();
        assert_eq!(
            seen,
            [
                ("a1".to_owned(), true, 1),
                ("a2".to_owned(), false, 0),
                ("b1".to_owned(), false, 0)
            ]
        );
        assert_eq!(parked[0].message_id, a1[0].message_id);
        assert_eq!(Some(parked[0].sent_at), a1[0].sent_at);
        assert_eq!(queue.peek(2).await.expect("peek").len(), 2);
        assert_eq!(
            queue.depth().await.expect("depth"),
            QueueDepth {
                waiting: 2,
                in_flight: 1
            }
        );
        let next = queue.receive(10, Duration::ZERO).await.expect("receive");
        assert_eq!(next.iter().map(event_of).collect::<Vec<_>>(), ["b1"]);
        assert_eq!(next[0].receive_count, 1);
    }

    #[tokio::test]
    async fn a_dead_letter_in_flight_is_moved_back_too() {
        let file = TempFile::new();
        let settings = EmbeddedQueueSettings {
            max_receive_count: 1,
            ..EmbeddedQueueSettings::default()
        };
        let queue = EmbeddedQueue::open(&file.path, "sync", settings).expect("open");
        queue.send(&outgoing("a", "a1", "a1")).await.expect("send");
        let first = queue.receive(1, Duration::ZERO).await.expect("receive");
        queue
            .release(&first[0].receipt, Duration::ZERO)
            .await
            .expect("release");
        assert!(
            queue
                .receive(10, Duration::ZERO)
                .await
                .expect("receive")
                .is_empty(),
            "moved to the dead-letter queue"
        );
        let dlq = EmbeddedQueue::open(
            &file.path,
            "sync-dlq",
            EmbeddedQueueSettings {
                dead_letter_queue: None,
                ..EmbeddedQueueSettings::default()
            },
        )
        .expect("open the dead-letter queue");
        let held = dlq.receive(1, Duration::ZERO).await.expect("receive");
        assert_eq!(held.len(), 1);

        let dead = queue.dead_letters().expect("a dead-letter queue");
        assert_eq!(dead.name(), "sync-dlq");
        assert!(dead.describe().contains("sync-dlq"), "{}", dead.describe());
        let parked = dead.peek(10).await.expect("peek");
        assert_eq!(parked.len(), 1);
        assert!(parked[0].in_flight);
        assert_eq!(dead.redrive(&|_: &Parked| true).await.expect("redrive"), 1);
        dlq.delete(&held[0].receipt).await.expect("a stale delete");
        assert_eq!(dead.depth().await.expect("depth"), QueueDepth::default());
        let back = queue.receive(10, Duration::ZERO).await.expect("receive");
        assert_eq!(back.iter().map(event_of).collect::<Vec<_>>(), ["a1"]);
        assert_eq!(back[0].receive_count, 1);

        let without = EmbeddedQueue::open(
            &file.path,
            "other",
            EmbeddedQueueSettings {
                dead_letter_queue: None,
                ..EmbeddedQueueSettings::default()
            },
        )
        .expect("open");
        assert!(without.dead_letters().is_none());
    }

    #[tokio::test]
    async fn releasing_a_message_visible_again_does_not_hide_it() {
        let file = TempFile::new();
        let settings = EmbeddedQueueSettings {
            visibility_timeout: Duration::from_secs(1),
            ..EmbeddedQueueSettings::default()
        };
        let queue = EmbeddedQueue::open(&file.path, "sync", settings).expect("open");
        queue.send(&outgoing("a", "a1", "a1")).await.expect("send");
        let first = queue.receive(1, Duration::ZERO).await.expect("receive");
        assert_eq!(first.len(), 1);
        let deadline = Instant::now() + Duration::from_secs(60);
        while queue.depth().await.expect("depth").in_flight > 0 {
            assert!(
                Instant::now() < deadline,
                "the visibility timeout never passed"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        queue
            .release(&first[0].receipt, Duration::from_secs(3600))
            .await
            .expect("release");
        let again = queue.receive(1, Duration::ZERO).await.expect("receive");
        assert_eq!(again.len(), 1, "still visible");
        assert_eq!(again[0].receive_count, 2);
    }
}
