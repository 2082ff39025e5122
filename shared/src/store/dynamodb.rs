//! The [`Store`] on DynamoDB: one table keyed `pk` (S) / `sk` (S), with `expiresAt` (N, epoch
//! seconds) as its TTL attribute, as `template.yaml` declares it.
//!
//! Item layout:
//!
//! | item | `pk` | `sk` | other attributes |
//! |---|---|---|---|
//! | link | `REF#<referral id, lowercased>` | `LINK` | `referralId`, `crmId`, `record`, `crmKind`, `engagementId`?, `referralEtag`?, `crmModifiedAt`? (RFC 3339), `terminal` (BOOL), `lastError`?, `version` (N), `synced`? (the projection as JSON), `state`? (JSON) |
//! | reverse lookup | `CRM#<crm id>` | `LINK` | `referralId` (lowercased) |
//! | idempotency | `IDEM#<key>` | `IDEM` | `status` (`INPROGRESS`\|`COMPLETED`), `inProgressUntil` (N, epoch ms, in progress only), `expiresAt` (N, epoch s) |
//! | journal | `REF#<referral id, lowercased>` | `JOURNAL#<at, RFC 3339 with nanoseconds>#<uuid>` | `at`, `referralId`, `outcome`, `message`, `expiresAt` (N, epoch s: `at` plus the retention) |
//! | cursor | `CURSOR#<name>` | `CURSOR` | `value`, `expiresAt`? (N, epoch s, only when put with an expiry) |
//! | timer | `TIMER#<key>` | `TIMER` | `due` (RFC 3339), `crmId`, `referralId`? |
//! | timer index | `TIMERS` | `<due, RFC 3339 with nanoseconds>#<key>` | `key` |
//!
//! Links keep what the sync remembers beyond the projection in `state` (JSON), absent when empty.
//! Listing the links ([`Store::links`]) scans the whole table for the link items (`sk = LINK`,
//! `pk` beginning `REF#`) on every page and sorts them: the links have no partition of their
//! own, and the listing is for `cosell status` and backfills, never the sync path.
//!
//! Journal entries and expiring cursors carry `expiresAt`, so TTL removes them. TTL deletes
//! lazily, days late at times, so reads leave out whatever has expired by the clock. Journal
//! entries written before retention existed have no `expiresAt` and stay until deleted by hand.
//! Timers are few (a Won held for a few days), so one index partition ordered by due time is
//! enough to find the due ones with a single query.
//!
//! Referral ids are GUIDs whose case varies between Partner Center's payloads, hence lowercased in
//! keys (like the queue's message group). CRM ids are kept as given: Salesforce ids are
//! case-sensitive.
//!
//! A link and its reverse lookup are written in one `TransactWriteItems`, so they never disagree;
//! a re-link to another CRM record deletes the old reverse item in the same transaction, and a CRM
//! record already linked to another referral is a [`StoreError::Conflict`]. A write that keeps
//! the CRM id only touches the link item.
//!
//! Idempotency times are kept to the second in `expiresAt` (rounded up, so a completed key is never
//! claimable early); `inProgressUntil` keeps milliseconds, since it decides takeovers.
//!
//! Throttling and 5xx answers are retried by the SDK client's own retry strategy (standard mode,
//! with back-off); a failure that outlasts it is [`StoreError::Unavailable`]. Timeouts are the
//! client's configuration.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::error::DisplayErrorContext;
use aws_sdk_dynamodb::operation::put_item::PutItemError;
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::types::{
    AttributeValue, Delete, Put, ReturnValuesOnConditionCheckFailure, TransactWriteItem,
};
use chrono::{DateTime, SecondsFormat, Utc};
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::{Claim, JournalEntry, Link, LinkState, Store, StoreError, StoreResult, Timer, expiry};

type Item = HashMap<String, AttributeValue>;

const PK: &str = "pk";
const SK: &str = "sk";
const SK_LINK: &str = "LINK";
const SK_IDEM: &str = "IDEM";
const SK_CURSOR: &str = "CURSOR";
const SK_TIMER: &str = "TIMER";
const PK_TIMERS: &str = "TIMERS";
const JOURNAL_PREFIX: &str = "JOURNAL#";
const REF_PREFIX: &str = "REF#";
const EXPIRES_AT: &str = "expiresAt";

const STATUS_IN_PROGRESS: &str = "INPROGRESS";
const STATUS_COMPLETED: &str = "COMPLETED";

/// A claim whose record vanishes between the failed put and the read (released or reaped) is
/// tried again; past this many attempts the caller is told to come back later.
const CLAIM_ATTEMPTS: usize = 3;

/// Where the store lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DynamoStoreConfig {
    /// The state table (`StateTableName` in the SAM outputs).
    pub table_name: String,
    /// How long a journal entry is kept after its `at` (`COSELL_RETENTION_DAYS`;
    /// [`super::DEFAULT_RETENTION`] where nothing is configured).
    pub retention: Duration,
}

/// The [`Store`] adapter for DynamoDB.
#[derive(Debug, Clone)]
pub struct DynamoStore {
    client: Client,
    table: String,
    retention: Duration,
}

impl DynamoStore {
    /// Uses `client` as configured (region, credentials, endpoint, retries, timeouts).
    pub fn new(client: Client, config: DynamoStoreConfig) -> Self {
        DynamoStore {
            client,
            table: config.table_name,
            retention: config.retention,
        }
    }

    /// A strongly consistent read: versions and claims must see the latest write.
    async fn get(&self, pk: String, sk: &str) -> StoreResult<Option<Item>> {
        self.client
            .get_item()
            .table_name(&self.table)
            .key(PK, s(pk))
            .key(SK, s(sk))
            .consistent_read(true)
            .send()
            .await
            .map(|out| out.item)
            .map_err(|err| self.unavailable("GetItem", &err))
    }

    async fn put(&self, item: Item) -> StoreResult<()> {
        self.client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .send()
            .await
            .map(|_| ())
            .map_err(|err| self.unavailable("PutItem", &err))
    }

    fn unavailable<E: std::error::Error + 'static>(&self, operation: &str, err: &E) -> StoreError {
        StoreError::Unavailable(format!(
            "DynamoDB {operation} on table {}: {}",
            self.table,
            DisplayErrorContext(err)
        ))
    }

    async fn link_by_key(&self, referral_key: &str) -> StoreResult<Option<Link>> {
        match self.get(ref_pk(referral_key), SK_LINK).await? {
            Some(item) => decode_link(&item).map(Some),
            None => Ok(None),
        }
    }

    /// Runs a link transaction; `conflicts[i]` names what a failed condition on item `i` means
    /// (item 0 is always the link itself).
    async fn transact(
        &self,
        items: Vec<TransactWriteItem>,
        conflicts: &[String],
    ) -> StoreResult<()> {
        let Err(err) = self
            .client
            .transact_write_items()
            .set_transact_items(Some(items))
            .send()
            .await
        else {
            return Ok(());
        };
        if let Some(TransactWriteItemsError::TransactionCanceledException(cancelled)) =
            err.as_service_error()
        {
            let conflict = |index: usize| StoreError::Conflict {
                what: conflicts
                    .get(index)
                    .or(conflicts.first())
                    .cloned()
                    .unwrap_or_else(|| "a link".to_owned()),
            };
            let reasons = cancelled.cancellation_reasons();
            if let Some(index) = reasons
                .iter()
                .position(|r| r.code() == Some("ConditionalCheckFailed"))
            {
                return Err(conflict(index));
            }
            // Another transaction was writing one of the items: like a lost condition, the
            // caller re-reads and decides again.
            if let Some(index) = reasons
                .iter()
                .position(|r| r.code() == Some("TransactionConflict"))
            {
                return Err(conflict(index));
            }
        }
        Err(self.unavailable("TransactWriteItems", &err))
    }

    fn put_op(&self, item: Item, condition: Condition) -> StoreResult<TransactWriteItem> {
        let put = Put::builder()
            .table_name(&self.table)
            .set_item(Some(item))
            .condition_expression(condition.expression)
            .set_expression_attribute_names(condition.names)
            .set_expression_attribute_values(condition.values)
            .build()
            .map_err(|err| self.unavailable("TransactWriteItems (building a put)", &err))?;
        Ok(TransactWriteItem::builder().put(put).build())
    }

    fn delete_op(
        &self,
        pk: String,
        sk: &str,
        condition: Condition,
    ) -> StoreResult<TransactWriteItem> {
        let delete = Delete::builder()
            .table_name(&self.table)
            .key(PK, s(pk))
            .key(SK, s(sk))
            .condition_expression(condition.expression)
            .set_expression_attribute_names(condition.names)
            .set_expression_attribute_values(condition.values)
            .build()
            .map_err(|err| self.unavailable("TransactWriteItems (building a delete)", &err))?;
        Ok(TransactWriteItem::builder().delete(delete).build())
    }

    /// The reverse item of `crm_id`, unless another referral holds that CRM record.
    fn put_reverse_op(&self, crm_id: &str, referral_key: &str) -> StoreResult<TransactWriteItem> {
        let item = HashMap::from([
            (PK.to_owned(), s(crm_pk(crm_id))),
            (SK.to_owned(), s(SK_LINK)),
            ("referralId".to_owned(), s(referral_key)),
        ]);
        self.put_op(item, Condition::held_by(referral_key))
    }

    async fn put_link_version(&self, link: &Link, item: Item) -> StoreResult<()> {
        let referral_key = link.referral_id.to_ascii_lowercase();
        let previous = link.version - 1;
        let link_conflict = format!("the link of referral {}", link.referral_id);
        let stale = || StoreError::Conflict {
            what: link_conflict.clone(),
        };

        // The stored CRM id is only known by reading; the version condition below guarantees it
        // is still the one read, since every write bumps the version.
        let Some(current) = self.get(ref_pk(&referral_key), SK_LINK).await? else {
            return Err(stale());
        };
        let fields = Fields::new(&current, || {
            format!("the link of referral {}", link.referral_id)
        });
        if fields.u64("version")? != previous {
            return Err(stale());
        }
        let old_crm_id = fields.string("crmId")?;

        if old_crm_id == link.crm_id {
            let result = self
                .client
                .put_item()
                .table_name(&self.table)
                .set_item(Some(item))
                .condition_expression("#v = :previous")
                .expression_attribute_names("#v", "version")
                .expression_attribute_values(":previous", n(previous))
                .send()
                .await;
            return match result {
                Ok(_) => Ok(()),
                Err(err) => match err.as_service_error() {
                    Some(PutItemError::ConditionalCheckFailedException(_)) => Err(stale()),
                    _ => Err(self.unavailable("PutItem", &err)),
                },
            };
        }

        let items = vec![
            self.put_op(item, Condition::version(previous))?,
            self.put_reverse_op(&link.crm_id, &referral_key)?,
            self.delete_op(
                crm_pk(&old_crm_id),
                SK_LINK,
                Condition::held_by(&referral_key),
            )?,
        ];
        let conflicts = [
            link_conflict.clone(),
            format!(
                "CRM record {} (already linked to another referral)",
                link.crm_id
            ),
            format!("CRM record {old_crm_id} (linked to another referral meanwhile)"),
        ];
        self.transact(items, &conflicts).await
    }
}

#[async_trait]
impl Store for DynamoStore {
    async fn link_by_referral(&self, referral_id: &str) -> StoreResult<Option<Link>> {
        self.link_by_key(&referral_id.to_ascii_lowercase()).await
    }

    async fn link_by_crm(&self, crm_id: &str) -> StoreResult<Option<Link>> {
        let Some(reverse) = self.get(crm_pk(crm_id), SK_LINK).await? else {
            return Ok(None);
        };
        let referral_key = Fields::new(&reverse, || {
            format!("the reverse lookup of CRM record {crm_id}")
        })
        .string("referralId")?;
        match self.link_by_key(&referral_key).await? {
            Some(link) if link.crm_id == crm_id => Ok(Some(link)),
            // Re-linked to another record between the two reads: this record has no link now.
            Some(_) => Ok(None),
            None => Err(StoreError::Corrupt(format!(
                "the reverse lookup of CRM record {crm_id} names referral {referral_key}, which has no link"
            ))),
        }
    }

    async fn put_link(&self, link: &Link) -> StoreResult<()> {
        let item = encode_link(link)?;
        match link.version {
            0 => Err(StoreError::Conflict {
                what: format!(
                    "the link of referral {} (version 0 is never stored; the first is 1)",
                    link.referral_id
                ),
            }),
            1 => {
                let referral_key = link.referral_id.to_ascii_lowercase();
                let items = vec![
                    self.put_op(item, Condition::absent())?,
                    self.put_reverse_op(&link.crm_id, &referral_key)?,
                ];
                let conflicts = [
                    format!("the link of referral {}", link.referral_id),
                    format!(
                        "CRM record {} (already linked to another referral)",
                        link.crm_id
                    ),
                ];
                self.transact(items, &conflicts).await
            }
            _ => self.put_link_version(link, item).await,
        }
    }

    async fn links(&self, after: Option<&str>, limit: usize) -> StoreResult<Vec<Link>> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let after_pk = after.map(|after| ref_pk(&after.to_ascii_lowercase()));
        // Only the `limit` smallest keys past `after` are kept while scanning, so a large table
        // costs reads but not memory.
        let mut page: BTreeMap<String, Item> = BTreeMap::new();
        let mut start = None;
        loop {
            let mut scan = self
                .client
                .scan()
                .table_name(&self.table)
                .expression_attribute_names("#pk", PK)
                .expression_attribute_names("#sk", SK)
                .expression_attribute_values(":link", s(SK_LINK))
                .expression_attribute_values(":ref", s(REF_PREFIX))
                // Strongly consistent, like the reads of a single link: a link just written
                // must not be missing from the listing.
                .consistent_read(true)
                .set_exclusive_start_key(start);
            scan = match &after_pk {
                Some(after_pk) => scan
                    .filter_expression("#sk = :link AND begins_with(#pk, :ref) AND #pk > :after")
                    .expression_attribute_values(":after", s(after_pk)),
                None => scan.filter_expression("#sk = :link AND begins_with(#pk, :ref)"),
            };
            let out = scan
                .send()
                .await
                .map_err(|err| self.unavailable("Scan", &err))?;
            for item in out.items.unwrap_or_default() {
                let Some(pk) = item.get(PK).and_then(|v| v.as_s().ok()).cloned() else {
                    continue;
                };
                if page.len() == limit && page.last_key_value().is_some_and(|(last, _)| pk > *last)
                {
                    continue;
                }
                page.insert(pk, item);
                if page.len() > limit {
                    page.pop_last();
                }
            }
            start = out.last_evaluated_key;
            if start.is_none() {
                break;
            }
        }
        page.values().map(decode_link).collect()
    }

    async fn claim(
        &self,
        key: &str,
        now: DateTime<Utc>,
        in_progress_until: DateTime<Utc>,
    ) -> StoreResult<Claim> {
        let item = HashMap::from([
            (PK.to_owned(), s(idem_pk(key))),
            (SK.to_owned(), s(SK_IDEM)),
            ("status".to_owned(), s(STATUS_IN_PROGRESS)),
            (
                "inProgressUntil".to_owned(),
                n(in_progress_until.timestamp_millis()),
            ),
            // Lets TTL reap a claim whose worker never came back; it may be taken over by then.
            ("expiresAt".to_owned(), n(ceil_secs(in_progress_until))),
        ]);
        for _ in 0..CLAIM_ATTEMPTS {
            let result = self
                .client
                .put_item()
                .table_name(&self.table)
                .set_item(Some(item.clone()))
                .condition_expression(
                    "attribute_not_exists(pk) \
                     OR (#status = :inProgress AND #inProgressUntil <= :nowMs) \
                     OR (#status = :completed AND #expiresAt <= :nowSecs)",
                )
                .expression_attribute_names("#status", "status")
                .expression_attribute_names("#inProgressUntil", "inProgressUntil")
                .expression_attribute_names("#expiresAt", "expiresAt")
                .expression_attribute_values(":inProgress", s(STATUS_IN_PROGRESS))
                .expression_attribute_values(":completed", s(STATUS_COMPLETED))
                .expression_attribute_values(":nowMs", n(now.timestamp_millis()))
                .expression_attribute_values(":nowSecs", n(now.timestamp()))
                .return_values_on_condition_check_failure(
                    ReturnValuesOnConditionCheckFailure::AllOld,
                )
                .send()
                .await;
            let old = match result {
                Ok(_) => return Ok(Claim::Acquired),
                Err(err) => match err.as_service_error() {
                    Some(PutItemError::ConditionalCheckFailedException(failed)) => {
                        match failed.item() {
                            Some(old) => Some(old.clone()),
                            None => self.get(idem_pk(key), SK_IDEM).await?,
                        }
                    }
                    _ => return Err(self.unavailable("PutItem", &err)),
                },
            };
            let Some(old) = old else {
                continue;
            };
            let status =
                Fields::new(&old, || format!("the idempotency record {key}")).string("status")?;
            return match status.as_str() {
                STATUS_COMPLETED => Ok(Claim::Completed),
                STATUS_IN_PROGRESS => Ok(Claim::InProgress),
                other => Err(StoreError::Corrupt(format!(
                    "the idempotency record {key} has the unknown status {other:?}"
                ))),
            };
        }
        Ok(Claim::InProgress)
    }

    async fn complete(&self, key: &str, expires_at: DateTime<Utc>) -> StoreResult<()> {
        self.put(HashMap::from([
            (PK.to_owned(), s(idem_pk(key))),
            (SK.to_owned(), s(SK_IDEM)),
            ("status".to_owned(), s(STATUS_COMPLETED)),
            ("expiresAt".to_owned(), n(ceil_secs(expires_at))),
        ]))
        .await
    }

    async fn release(&self, key: &str) -> StoreResult<()> {
        self.client
            .delete_item()
            .table_name(&self.table)
            .key(PK, s(idem_pk(key)))
            .key(SK, s(SK_IDEM))
            .send()
            .await
            .map(|_| ())
            .map_err(|err| self.unavailable("DeleteItem", &err))
    }

    async fn append_journal(&self, entry: &JournalEntry) -> StoreResult<()> {
        let at = entry.at.to_rfc3339_opts(SecondsFormat::Nanos, true);
        let mut item = HashMap::from([
            (
                PK.to_owned(),
                s(ref_pk(&entry.referral_id.to_ascii_lowercase())),
            ),
            (
                SK.to_owned(),
                s(format!("{JOURNAL_PREFIX}{at}#{}", uuid::Uuid::new_v4())),
            ),
            ("at".to_owned(), s(at)),
            ("referralId".to_owned(), s(&entry.referral_id)),
            ("outcome".to_owned(), s(enum_name(&entry.outcome)?)),
            ("message".to_owned(), s(&entry.message)),
        ]);
        if let Some(expires_at) = expiry(entry.at, self.retention) {
            item.insert(EXPIRES_AT.to_owned(), n(ceil_secs(expires_at)));
        }
        self.put(item).await
    }

    async fn journal(&self, referral_id: &str, limit: usize) -> StoreResult<Vec<JournalEntry>> {
        let pk = ref_pk(&referral_id.to_ascii_lowercase());
        let now = Utc::now().timestamp();
        let mut entries = Vec::new();
        let mut start = None;
        // A page can end early at 1 MB, and `Limit` counts the items read before the filter
        // drops the expired ones, so keep asking until `limit` entries or the end. Expired
        // entries are the oldest, and TTL removes them within days, so few pages are wasted.
        while entries.len() < limit {
            let wanted = i32::try_from(limit - entries.len()).unwrap_or(i32::MAX);
            let page = self
                .client
                .query()
                .table_name(&self.table)
                .key_condition_expression("pk = :pk AND begins_with(sk, :journal)")
                .filter_expression("attribute_not_exists(#expiresAt) OR #expiresAt > :now")
                .expression_attribute_names("#expiresAt", EXPIRES_AT)
                .expression_attribute_values(":pk", s(&pk))
                .expression_attribute_values(":journal", s(JOURNAL_PREFIX))
                .expression_attribute_values(":now", n(now))
                .scan_index_forward(false)
                .limit(wanted)
                .set_exclusive_start_key(start)
                .send()
                .await
                .map_err(|err| self.unavailable("Query", &err))?;
            for item in page.items() {
                entries.push(decode_journal(item)?);
            }
            start = page.last_evaluated_key;
            if start.is_none() {
                break;
            }
        }
        entries.truncate(limit);
        Ok(entries)
    }

    async fn cursor(&self, name: &str) -> StoreResult<Option<String>> {
        let Some(item) = self.get(cursor_pk(name), SK_CURSOR).await? else {
            return Ok(None);
        };
        let fields = Fields::new(&item, || format!("the cursor {name}"));
        // TTL may not have deleted an expired cursor yet.
        if fields
            .opt_i64(EXPIRES_AT)?
            .is_some_and(|expires_at| expires_at <= Utc::now().timestamp())
        {
            return Ok(None);
        }
        fields.string("value").map(Some)
    }

    async fn put_cursor(&self, name: &str, value: &str) -> StoreResult<()> {
        // A whole-item put: an expiry from an earlier `put_cursor_until` goes with it.
        self.put(cursor_item(name, value)).await
    }

    async fn put_cursor_until(
        &self,
        name: &str,
        value: &str,
        expires_at: DateTime<Utc>,
    ) -> StoreResult<()> {
        let mut item = cursor_item(name, value);
        item.insert(EXPIRES_AT.to_owned(), n(ceil_secs(expires_at)));
        self.put(item).await
    }

    async fn put_timer(&self, timer: &Timer) -> StoreResult<()> {
        let mut items = Vec::new();
        if let Some(old) = self.timer(&timer.key).await?
            && old.due != timer.due
        {
            items.push(delete_item(&self.table, PK_TIMERS, &timer_sk(&old))?);
        }
        let mut item = HashMap::from([
            (PK.to_owned(), s(timer_pk(&timer.key))),
            (SK.to_owned(), s(SK_TIMER)),
            ("due".to_owned(), s(stamp(timer.due))),
            ("crmId".to_owned(), s(&timer.crm_id)),
        ]);
        if let Some(referral_id) = &timer.referral_id {
            item.insert("referralId".to_owned(), s(referral_id));
        }
        items.push(put_item(&self.table, item)?);
        items.push(put_item(
            &self.table,
            HashMap::from([
                (PK.to_owned(), s(PK_TIMERS)),
                (SK.to_owned(), s(timer_sk(timer))),
                ("key".to_owned(), s(&timer.key)),
            ]),
        )?);
        self.transact_unconditional(items).await
    }

    async fn due_timers(&self, now: DateTime<Utc>, limit: usize) -> StoreResult<Vec<Timer>> {
        // Every index key of a time up to `now` sorts before `<now>#~`.
        let upto = format!("{}#~", stamp(now));
        let page = self
            .client
            .query()
            .table_name(&self.table)
            .key_condition_expression("pk = :pk AND sk <= :upto")
            .expression_attribute_values(":pk", s(PK_TIMERS))
            .expression_attribute_values(":upto", s(upto))
            .consistent_read(true)
            .limit(i32::try_from(limit).unwrap_or(i32::MAX))
            .send()
            .await
            .map_err(|err| self.unavailable("Query", &err))?;
        let mut timers = Vec::new();
        for item in page.items() {
            let key = Fields::new(item, || "a timer index item".to_owned()).string("key")?;
            // The index may name a timer deleted a moment ago: only the timer item counts.
            if let Some(timer) = self.timer(&key).await?
                && timer.due <= now
            {
                timers.push(timer);
            }
        }
        Ok(timers)
    }

    async fn delete_timer(&self, key: &str) -> StoreResult<()> {
        let Some(old) = self.timer(key).await? else {
            return Ok(());
        };
        let items = vec![
            delete_item(&self.table, &timer_pk(key), SK_TIMER)?,
            delete_item(&self.table, PK_TIMERS, &timer_sk(&old))?,
        ];
        self.transact_unconditional(items).await
    }
}

impl DynamoStore {
    /// A transaction without conditions (the timer items): it fails only when DynamoDB does.
    async fn transact_unconditional(&self, items: Vec<TransactWriteItem>) -> StoreResult<()> {
        self.client
            .transact_write_items()
            .set_transact_items(Some(items))
            .send()
            .await
            .map(|_| ())
            .map_err(|err| self.unavailable("TransactWriteItems", &err))
    }

    async fn timer(&self, key: &str) -> StoreResult<Option<Timer>> {
        let Some(item) = self.get(timer_pk(key), SK_TIMER).await? else {
            return Ok(None);
        };
        let fields = Fields::new(&item, || format!("the timer {key}"));
        Ok(Some(Timer {
            key: key.to_owned(),
            due: fields.time("due")?,
            crm_id: fields.string("crmId")?,
            referral_id: fields.opt_string("referralId")?,
        }))
    }
}

fn timer_pk(key: &str) -> String {
    format!("TIMER#{key}")
}

/// Fixed width, so the index's string order is time order.
fn stamp(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Nanos, true)
}

fn timer_sk(timer: &Timer) -> String {
    format!("{}#{}", stamp(timer.due), timer.key)
}

fn put_item(table: &str, item: Item) -> StoreResult<TransactWriteItem> {
    Put::builder()
        .table_name(table)
        .set_item(Some(item))
        .build()
        .map(|put| TransactWriteItem::builder().put(put).build())
        .map_err(|err| StoreError::Unavailable(format!("a DynamoDB put cannot be built: {err}")))
}

fn delete_item(table: &str, pk: &str, sk: &str) -> StoreResult<TransactWriteItem> {
    Delete::builder()
        .table_name(table)
        .key(PK, s(pk))
        .key(SK, s(sk))
        .build()
        .map(|delete| TransactWriteItem::builder().delete(delete).build())
        .map_err(|err| StoreError::Unavailable(format!("a DynamoDB delete cannot be built: {err}")))
}

/// A condition expression with its placeholders.
struct Condition {
    expression: String,
    names: Option<HashMap<String, String>>,
    values: Option<HashMap<String, AttributeValue>>,
}

impl Condition {
    fn absent() -> Self {
        Condition {
            expression: "attribute_not_exists(pk)".to_owned(),
            names: None,
            values: None,
        }
    }

    fn version(previous: u64) -> Self {
        Condition {
            expression: "#v = :previous".to_owned(),
            names: Some(HashMap::from([("#v".to_owned(), "version".to_owned())])),
            values: Some(HashMap::from([(":previous".to_owned(), n(previous))])),
        }
    }

    /// The reverse item is free or already points at this referral.
    fn held_by(referral_key: &str) -> Self {
        Condition {
            expression: "attribute_not_exists(pk) OR #r = :referral".to_owned(),
            names: Some(HashMap::from([("#r".to_owned(), "referralId".to_owned())])),
            values: Some(HashMap::from([(":referral".to_owned(), s(referral_key))])),
        }
    }
}

fn ref_pk(referral_key: &str) -> String {
    format!("{REF_PREFIX}{referral_key}")
}

fn crm_pk(crm_id: &str) -> String {
    format!("CRM#{crm_id}")
}

fn idem_pk(key: &str) -> String {
    format!("IDEM#{key}")
}

fn cursor_pk(name: &str) -> String {
    format!("CURSOR#{name}")
}

fn cursor_item(name: &str, value: &str) -> Item {
    HashMap::from([
        (PK.to_owned(), s(cursor_pk(name))),
        (SK.to_owned(), s(SK_CURSOR)),
        ("value".to_owned(), s(value)),
    ])
}

fn s(value: impl Into<String>) -> AttributeValue {
    AttributeValue::S(value.into())
}

fn n(value: impl ToString) -> AttributeValue {
    AttributeValue::N(value.to_string())
}

fn ceil_secs(at: DateTime<Utc>) -> i64 {
    let secs = at.timestamp();
    if at.timestamp_subsec_nanos() > 0 {
        secs + 1
    } else {
        secs
    }
}

/// The serde name of a unit variant (`opportunity`, `dynamics`, `synced`), so the stored names
/// always match the JSON the rest of the connector speaks.
fn enum_name<T: Serialize>(value: &T) -> StoreResult<String> {
    match serde_json::to_value(value) {
        Ok(serde_json::Value::String(name)) => Ok(name),
        _ => Err(StoreError::Corrupt(
            "a value that should be a plain name did not serialise as one".to_owned(),
        )),
    }
}

fn encode_link(link: &Link) -> StoreResult<Item> {
    let mut item = HashMap::from([
        (
            PK.to_owned(),
            s(ref_pk(&link.referral_id.to_ascii_lowercase())),
        ),
        (SK.to_owned(), s(SK_LINK)),
        ("referralId".to_owned(), s(&link.referral_id)),
        ("crmId".to_owned(), s(&link.crm_id)),
        ("record".to_owned(), s(enum_name(&link.record)?)),
        ("crmKind".to_owned(), s(enum_name(&link.crm_kind)?)),
        ("terminal".to_owned(), AttributeValue::Bool(link.terminal)),
        ("version".to_owned(), n(link.version)),
    ]);
    let optional = [
        ("engagementId", link.engagement_id.clone()),
        ("referralEtag", link.referral_etag.clone()),
        (
            "crmModifiedAt",
            link.crm_modified_at
                .map(|at| at.to_rfc3339_opts(SecondsFormat::Nanos, true)),
        ),
        ("lastError", link.last_error.clone()),
    ];
    for (name, value) in optional {
        if let Some(value) = value {
            item.insert(name.to_owned(), s(value));
        }
    }
    if let Some(synced) = &link.synced {
        let json = serde_json::to_string(synced).map_err(|err| {
            StoreError::Corrupt(format!(
                "the synced projection of referral {} cannot be serialised: {err}",
                link.referral_id
            ))
        })?;
        item.insert("synced".to_owned(), s(json));
    }
    if link.state != LinkState::default() {
        let json = serde_json::to_string(&link.state).map_err(|err| {
            StoreError::Corrupt(format!(
                "the state of the link of referral {} cannot be serialised: {err}",
                link.referral_id
            ))
        })?;
        item.insert("state".to_owned(), s(json));
    }
    Ok(item)
}

fn decode_link(item: &Item) -> StoreResult<Link> {
    let pk = item
        .get(PK)
        .and_then(|v| v.as_s().ok())
        .map_or("?", String::as_str);
    let fields = Fields::new(item, || format!("the link item {pk}"));
    let synced = match fields.opt_string("synced")? {
        Some(json) => Some(fields.json("synced", &json)?),
        None => None,
    };
    let state = match fields.opt_string("state")? {
        Some(json) => fields.json("state", &json)?,
        None => LinkState::default(),
    };
    Ok(Link {
        referral_id: fields.string("referralId")?,
        crm_id: fields.string("crmId")?,
        record: fields.named("record")?,
        crm_kind: fields.named("crmKind")?,
        engagement_id: fields.opt_string("engagementId")?,
        synced,
        referral_etag: fields.opt_string("referralEtag")?,
        crm_modified_at: fields.opt_time("crmModifiedAt")?,
        terminal: fields.bool("terminal")?,
        last_error: fields.opt_string("lastError")?,
        version: fields.u64("version")?,
        state,
    })
}

fn decode_journal(item: &Item) -> StoreResult<JournalEntry> {
    let sk = item
        .get(SK)
        .and_then(|v| v.as_s().ok())
        .map_or("?", String::as_str);
    let fields = Fields::new(item, || format!("the journal item {sk}"));
    Ok(JournalEntry {
        at: fields.time("at")?,
        referral_id: fields.string("referralId")?,
        outcome: fields.named("outcome")?,
        message: fields.string("message")?,
    })
}

/// Typed reads of an item's attributes; anything missing or mistyped is `Corrupt`, naming the
/// item and the attribute (never its value, which may be a customer's data).
struct Fields<'a, F> {
    item: &'a Item,
    what: F,
}

impl<'a, F: Fn() -> String> Fields<'a, F> {
    fn new(item: &'a Item, what: F) -> Self {
        Fields { item, what }
    }

    fn corrupt(&self, name: &str, problem: &str) -> StoreError {
        StoreError::Corrupt(format!("{}: attribute {name} {problem}", (self.what)()))
    }

    fn opt_string(&self, name: &str) -> StoreResult<Option<String>> {
        match self.item.get(name) {
            None | Some(AttributeValue::Null(true)) => Ok(None),
            Some(AttributeValue::S(value)) => Ok(Some(value.clone())),
            Some(_) => Err(self.corrupt(name, "is not a string")),
        }
    }

    fn string(&self, name: &str) -> StoreResult<String> {
        self.opt_string(name)?
            .ok_or_else(|| self.corrupt(name, "is missing"))
    }

    fn u64(&self, name: &str) -> StoreResult<u64> {
        match self.item.get(name) {
            None => Err(self.corrupt(name, "is missing")),
            Some(AttributeValue::N(value)) => value
                .parse()
                .map_err(|_| self.corrupt(name, "is not a whole number")),
            Some(_) => Err(self.corrupt(name, "is not a number")),
        }
    }

    fn opt_i64(&self, name: &str) -> StoreResult<Option<i64>> {
        match self.item.get(name) {
            None => Ok(None),
            Some(AttributeValue::N(value)) => value
                .parse()
                .map(Some)
                .map_err(|_| self.corrupt(name, "is not a whole number")),
            Some(_) => Err(self.corrupt(name, "is not a number")),
        }
    }

    fn bool(&self, name: &str) -> StoreResult<bool> {
        match self.item.get(name) {
            None => Err(self.corrupt(name, "is missing")),
            Some(AttributeValue::Bool(value)) => Ok(*value),
            Some(_) => Err(self.corrupt(name, "is not a boolean")),
        }
    }

    fn opt_time(&self, name: &str) -> StoreResult<Option<DateTime<Utc>>> {
        match self.opt_string(name)? {
            Some(text) => DateTime::parse_from_rfc3339(&text)
                .map(|at| Some(at.with_timezone(&Utc)))
                .map_err(|_| self.corrupt(name, "is not an RFC 3339 time")),
            None => Ok(None),
        }
    }

    fn time(&self, name: &str) -> StoreResult<DateTime<Utc>> {
        self.opt_time(name)?
            .ok_or_else(|| self.corrupt(name, "is missing"))
    }

    fn named<T: DeserializeOwned>(&self, name: &str) -> StoreResult<T> {
        serde_json::from_value(serde_json::Value::String(self.string(name)?))
            .map_err(|_| self.corrupt(name, "holds an unknown name"))
    }

    fn json<T: DeserializeOwned>(&self, name: &str, json: &str) -> StoreResult<T> {
        serde_json::from_str(json).map_err(|err| {
            // serde's message names the position and the expected shape, not the data.
            self.corrupt(name, &format!("is not valid JSON for its type ({err})"))
        })
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;
    use crate::crm::CrmKind;
    use crate::domain::projection::Projection;
    use crate::store::RecordKind;

    fn link() -> Link {
        Link {
            referral_id: "ABC-1".into(),
            crm_id: "0065g00000XyZ12AAB".into(),
            record: RecordKind::Opportunity,
            crm_kind: CrmKind::Salesforce,
            engagement_id: Some("e-1".into()),
            synced: Some(Projection {
                name: Some("Contoso".into()),
                deal_value: Some(1234.5),
                ..Projection::default()
            }),
            referral_etag: None,
            crm_modified_at: Some(Utc.with_ymd_and_hms(2025, 3, 4, 5, 6, 7).unwrap()),
            terminal: false,
            last_error: None,
            version: 3,
            state: Default::default(),
        }
    }

    #[test]
    fn a_link_survives_encoding() {
        let item = encode_link(&link()).unwrap();
        assert_eq!(item.get(PK), Some(&s("REF#abc-1")));
        assert_eq!(item.get("version"), Some(&n(3)));
        assert_eq!(item.get("record"), Some(&s("opportunity")));
        assert_eq!(item.get("crmKind"), Some(&s("salesforce")));
        assert!(!item.contains_key("referralEtag"));
        assert_eq!(decode_link(&item).unwrap(), link());
    }

    #[test]
    fn an_unreadable_link_names_the_attribute() {
        let mut item = encode_link(&link()).unwrap();
        item.insert("version".into(), s("three"));
        let err = decode_link(&item).unwrap_err();
        assert!(
            matches!(&err, StoreError::Corrupt(m) if m.contains("version")),
            "{err}"
        );
    }

    #[test]
    fn expiry_rounds_up_to_the_second() {
        let whole = Utc.with_ymd_and_hms(2025, 1, 1, 0, 0, 10).unwrap();
        assert_eq!(ceil_secs(whole), whole.timestamp());
        let later = whole + chrono::Duration::milliseconds(1);
        assert_eq!(ceil_secs(later), whole.timestamp() + 1);
    }
}
