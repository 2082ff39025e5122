//! A [`Store`] in memory, with the promises of the real ones (versioned links, one referral per
//! CRM record, claims that expire, the journal newest first), so the use cases can be tested
//! without a database. It passes the same contract suite as DynamoDB and SQLite.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use crate::store::{
    Claim, DEFAULT_RETENTION, JournalEntry, Link, Store, StoreError, StoreResult, Timer, expiry,
};
use crate::sync::Clock;

#[derive(Debug, Clone, Copy)]
enum Held {
    InProgress { until: DateTime<Utc> },
    Completed { until: DateTime<Utc> },
}

/// When a journal entry or cursor expires; `None`: never.
type Expiry = Option<DateTime<Utc>>;

#[derive(Default)]
struct State {
    /// By referral id, lowercased (referral ids are GUIDs; their case carries no meaning).
    links: HashMap<String, Link>,
    /// CRM record id → referral key.
    by_crm: HashMap<String, String>,
    claims: HashMap<String, Held>,
    /// By referral id, lowercased; in arrival order (read sorted by time), each with its expiry.
    journal: HashMap<String, Vec<(JournalEntry, Expiry)>>,
    /// Each with its expiry, if it was put with one.
    cursors: HashMap<String, (String, Expiry)>,
    timers: HashMap<String, Timer>,
}

/// The in-memory store. Cheap to make: one per test.
pub struct MemoryStore {
    state: Mutex<State>,
    retention: Duration,
    /// What expiry is judged by: the system clock, as the real stores do, unless a test whose
    /// clock stands still sets its own (else its entries would expire as the calendar moves).
    clock: Clock,
}

impl Default for MemoryStore {
    fn default() -> Self {
        MemoryStore {
            state: Mutex::default(),
            retention: DEFAULT_RETENTION,
            clock: Clock::system(),
        }
    }
}

impl MemoryStore {
    /// A store keeping journal entries for [`DEFAULT_RETENTION`].
    pub fn new() -> MemoryStore {
        MemoryStore::default()
    }

    /// The same store keeping journal entries for `retention` instead.
    pub fn with_retention(self, retention: Duration) -> MemoryStore {
        MemoryStore { retention, ..self }
    }

    /// The same store judging expiry (journal entries, cursors) by `clock`.
    pub fn with_clock(self, clock: Clock) -> MemoryStore {
        MemoryStore { clock, ..self }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // A test that panicked while holding the lock leaves consistent data: every method
        // changes the state only after its checks.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

fn conflict(what: impl Into<String>) -> StoreError {
    StoreError::Conflict { what: what.into() }
}

#[async_trait]
impl Store for MemoryStore {
    async fn link_by_referral(&self, referral_id: &str) -> StoreResult<Option<Link>> {
        Ok(self
            .state()
            .links
            .get(&referral_id.to_ascii_lowercase())
            .cloned())
    }

    async fn link_by_crm(&self, crm_id: &str) -> StoreResult<Option<Link>> {
        let state = self.state();
        Ok(state
            .by_crm
            .get(crm_id)
            .and_then(|key| state.links.get(key))
            .cloned())
    }

    async fn put_link(&self, link: &Link) -> StoreResult<()> {
        let mut state = self.state();
        let key = link.referral_id.to_ascii_lowercase();
        let stored = state.links.get(&key).map(|l| l.version);
        let expected = link.version.checked_sub(1).filter(|v| *v > 0);
        if stored != expected || link.version == 0 {
            return Err(conflict(format!(
                "the link of referral {}",
                link.referral_id
            )));
        }
        if state
            .by_crm
            .get(&link.crm_id)
            .is_some_and(|holder| *holder != key)
        {
            return Err(conflict(format!(
                "CRM record {} (linked to another referral)",
                link.crm_id
            )));
        }
        if let Some(old) = state.links.get(&key).map(|l| l.crm_id.clone())
            && old != link.crm_id
        {
            state.by_crm.remove(&old);
        }
        state.by_crm.insert(link.crm_id.clone(), key.clone());
        state.links.insert(key, link.clone());
        Ok(())
    }

    async fn links(&self, after: Option<&str>, limit: usize) -> StoreResult<Vec<Link>> {
        let after = after.map(str::to_ascii_lowercase);
        let state = self.state();
        let mut keys: Vec<&String> = state
            .links
            .keys()
            .filter(|key| after.as_ref().is_none_or(|after| *key > after))
            .collect();
        keys.sort();
        Ok(keys
            .into_iter()
            .take(limit)
            .filter_map(|key| state.links.get(key).cloned())
            .collect())
    }

    async fn claim(
        &self,
        key: &str,
        now: DateTime<Utc>,
        in_progress_until: DateTime<Utc>,
    ) -> StoreResult<Claim> {
        let mut state = self.state();
        match state.claims.get(key) {
            Some(Held::InProgress { until }) if *until > now => return Ok(Claim::InProgress),
            Some(Held::Completed { until }) if *until > now => return Ok(Claim::Completed),
            _ => {}
        }
        state.claims.insert(
            key.to_owned(),
            Held::InProgress {
                until: in_progress_until,
            },
        );
        Ok(Claim::Acquired)
    }

    async fn complete(&self, key: &str, expires_at: DateTime<Utc>) -> StoreResult<()> {
        self.state()
            .claims
            .insert(key.to_owned(), Held::Completed { until: expires_at });
        Ok(())
    }

    async fn release(&self, key: &str) -> StoreResult<()> {
        self.state().claims.remove(key);
        Ok(())
    }

    async fn append_journal(&self, entry: &JournalEntry) -> StoreResult<()> {
        self.state()
            .journal
            .entry(entry.referral_id.to_ascii_lowercase())
            .or_default()
            .push((entry.clone(), expiry(entry.at, self.retention)));
        Ok(())
    }

    async fn journal(&self, referral_id: &str, limit: usize) -> StoreResult<Vec<JournalEntry>> {
        let now = self.clock.now();
        let state = self.state();
        let mut entries: Vec<JournalEntry> = state
            .journal
            .get(&referral_id.to_ascii_lowercase())
            .into_iter()
            .flatten()
            .filter(|(_, expires_at)| expires_at.is_none_or(|at| at > now))
            .map(|(entry, _)| entry.clone())
            .collect();
        entries.sort_by_key(|e| std::cmp::Reverse(e.at));
        entries.truncate(limit);
        Ok(entries)
    }

    async fn cursor(&self, name: &str) -> StoreResult<Option<String>> {
        let now = self.clock.now();
        Ok(self
            .state()
            .cursors
            .get(name)
            .filter(|(_, expires_at)| expires_at.is_none_or(|at| at > now))
            .map(|(value, _)| value.clone()))
    }

    async fn put_cursor(&self, name: &str, value: &str) -> StoreResult<()> {
        self.state()
            .cursors
            .insert(name.to_owned(), (value.to_owned(), None));
        Ok(())
    }

    async fn put_cursor_until(
        &self,
        name: &str,
        value: &str,
        expires_at: DateTime<Utc>,
    ) -> StoreResult<()> {
        self.state()
            .cursors
            .insert(name.to_owned(), (value.to_owned(), Some(expires_at)));
        Ok(())
    }

    async fn put_timer(&self, timer: &Timer) -> StoreResult<()> {
        self.state().timers.insert(timer.key.clone(), timer.clone());
        Ok(())
    }

    async fn due_timers(&self, now: DateTime<Utc>, limit: usize) -> StoreResult<Vec<Timer>> {
        let state = self.state();
        let mut due: Vec<Timer> = state
            .timers
            .values()
            .filter(|t| t.due <= now)
            .cloned()
            .collect();
        due.sort_by(|a, b| a.due.cmp(&b.due).then_with(|| a.key.cmp(&b.key)));
        due.truncate(limit);
        Ok(due)
    }

    async fn delete_timer(&self, key: &str) -> StoreResult<()> {
        self.state().timers.remove(key);
        Ok(())
    }
}
