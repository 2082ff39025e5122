//! The opportunity change feed the poller reads ([`Crm::opportunity_changes`]), by SOQL on
//! `SystemModstamp` (docs/salesforce.md, "Change feed (SystemModstamp)").
//!
//! Each round first asks for the newest `SystemModstamp` of any opportunity (`until`), then
//! queries the Sync = yes opportunities stamped from
//! [`SalesforceConfig::change_overlap`](super::SalesforceConfig::change_overlap) before the
//! previous round's `until` up to this one, ordered by `SystemModstamp, Id`, following
//! `nextRecordsUrl` one batch per page. A record a seller changes while the round is paging is
//! stamped at or after `until`, so the next round finds it however long this one takes (and
//! whether or not the open query shows the change). Records the overlap reads again are dropped
//! when they are exactly what was handed out before: the fingerprint covers the id and the
//! whole record as read (`SystemModstamp` included), so the overlap never yields a duplicate and
//! a record changed twice comes twice, even within one second.
//!
//! A batch link Salesforce no longer accepts (query locators expire) runs the round again; a
//! cursor that cannot be read starts the feed again. Both repeat opportunities, never skip one.

use std::collections::HashMap;

use chrono::{DateTime, Timelike, Utc};
use reqwest::Method;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::http::Target;
use super::mapping::{self, Record, soql_quote};
use super::{SalesforceCrm, missing_id};
#[cfg(test)]
use crate::crm::feed::MAX_REMEMBERED;
use crate::crm::feed::{self, Remembered, Rounds, Run};
use crate::crm::{ChangePage, CrmError, CrmResult, Opportunity};

/// Opportunity ids per contact-role query: keeps the query URL well under any proxy's limit.
const IDS_PER_QUERY: usize = 100;

/// This format's version, so a future one can tell an old cursor apart.
const VERSION: u8 = 1;

/// The stored form: `{"v":1,"salesforce":{…}}`. Another CRM's cursor does not parse as one.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Cursor {
    v: u8,
    salesforce: Feed,
}

/// Polling by `SystemModstamp`.
type Feed = Rounds;

/// A record version's fingerprint, keyed by the 15-character id, which both id forms share.
fn fingerprint(id: &str, rec: &Record) -> u64 {
    feed::fingerprint(short_id(id), &Value::Object(rec.clone()))
}

/// The case-sensitive 15-character form of a record id.
fn short_id(id: &str) -> &str {
    id.get(..15).unwrap_or(id)
}

fn encode_cursor(feed: Feed) -> String {
    // Plain strings and numbers always serialise; were it ever empty, the next call would
    // only start the feed again.
    serde_json::to_string(&Cursor {
        v: VERSION,
        salesforce: feed,
    })
    .unwrap_or_default()
}

fn decode_cursor(text: &str) -> Option<Feed> {
    let cursor: Cursor = serde_json::from_str(text).ok()?;
    let usable = cursor.v == VERSION
        && cursor
            .salesforce
            .run
            .as_ref()
            .is_none_or(|r| is_relative_path(&r.next));
    usable.then_some(cursor.salesforce)
}

/// A path on the instance: the bearer token must never follow a stored link elsewhere.
fn is_relative_path(next: &str) -> bool {
    next.starts_with('/') && !next.starts_with("//") && !next.contains("://")
}

/// A SOQL datetime literal: unquoted, UTC, whole seconds (`2024-05-01T00:00:00Z`), the form
/// the SOQL reference lists (fractions are left out rather than relied on).
fn soql_time(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// `t` rounded up to a whole second, so an upper bound written in whole seconds still
/// includes `t`.
fn ceil_second(t: DateTime<Utc>) -> DateTime<Utc> {
    match t.with_nanosecond(0) {
        Some(floor) if floor < t => floor + chrono::Duration::seconds(1),
        Some(floor) => floor,
        None => t,
    }
}

/// What one batch yields: the opportunities, where the feed stands after them, and whether
/// more batches are ready.
type Step = (Vec<Opportunity>, Feed, bool);

fn page(opportunities: Vec<Opportunity>, feed: Feed, more: bool) -> ChangePage {
    ChangePage {
        opportunities,
        cursor: encode_cursor(feed),
        more,
    }
}

/// Whether a round can leave the overlap window unread: nothing is stamped after the last
/// round's `until`, and that round began (by the server's clock) at least the overlap after it,
/// when every record stamped up to `until` had committed and was in its read.
fn quiet(feed: &Feed, until: DateTime<Utc>, overlap: chrono::Duration) -> bool {
    match (feed.since, feed.checked_at, &feed.run) {
        (Some(since), Some(checked), None) => until <= since && checked >= since + overlap,
        _ => false,
    }
}

impl SalesforceCrm {
    /// The feed's next page that hands something out, or the end of the round. Batches
    /// holding only records the overlap read again are passed over here: there are few of them
    /// (only remembered records are skipped), and the caller gets no empty pages to store.
    pub(super) async fn changes(&self, cursor: Option<&str>) -> CrmResult<ChangePage> {
        let mut feed = match cursor {
            None => Feed::default(),
            Some(text) => decode_cursor(text).unwrap_or_else(|| {
                tracing::warn!(
                    "the stored Salesforce change cursor is not one this version reads; reading \
                     the opportunities again from the start"
                );
                Feed::default()
            }),
        };
        loop {
            let (opportunities, next, more) = self.step(feed).await?;
            if more && opportunities.is_empty() {
                feed = next;
                continue;
            }
            return Ok(page(opportunities, next, more));
        }
    }

    /// One batch: the next of the round under way, or the first of a new round.
    async fn step(&self, mut feed: Feed) -> CrmResult<Step> {
        if let Some(run) = feed.run.take() {
            match self
                .http
                .call(
                    Method::GET,
                    Target::Relative(&run.next),
                    None,
                    "query batch",
                )
                .await
            {
                Ok(reply) => {
                    return self
                        .changes_page(feed, run.until, run.keep, reply.body)
                        .await;
                }
                Err(e @ (CrmError::Rejected { .. } | CrmError::NotFound { .. })) => {
                    tracing::warn!(
                        reason = %e,
                        "Salesforce no longer serves the stored query batch (its locator \
                         expired); reading this round of changes again"
                    );
                }
                Err(e) => return Err(e),
            }
        }
        let (newest, server_now) = self.newest_stamp().await?;
        let Some(until) = newest else {
            return Ok((Vec::new(), feed, false));
        };
        if quiet(&feed, until, self.change_overlap()) {
            // Nothing stamped since the last round, which read the whole overlap window after
            // every record stamped before it had committed: the window holds nothing new.
            return Ok((Vec::new(), feed, false));
        }
        let mut fields = mapping::opportunity_query_select(&self.config);
        if !fields
            .iter()
            .any(|f| f.eq_ignore_ascii_case("SystemModstamp"))
        {
            fields.push("SystemModstamp".into());
        }
        let mut soql = format!(
            "SELECT {} FROM Opportunity WHERE {} = true AND SystemModstamp <= {}",
            fields.join(", "),
            self.config.fields.sync_with_partner_center,
            soql_time(ceil_second(until))
        );
        if let Some(since) = feed.since {
            soql.push_str(&format!(
                " AND SystemModstamp >= {}",
                soql_time(since - self.change_overlap())
            ));
        }
        soql.push_str(" ORDER BY SystemModstamp ASC, Id ASC");
        let reply = self
            .http
            .call(
                Method::GET,
                Target::Api {
                    segments: &["query"],
                    query: &[("q", &soql)],
                },
                None,
                "query",
            )
            .await?;
        let (opportunities, mut next, more) = self
            .changes_page(feed, until, Remembered::default(), reply.body)
            .await?;
        if next.run.is_none() {
            next.checked_at = server_now;
        }
        Ok((opportunities, next, more))
    }

    fn change_overlap(&self) -> chrono::Duration {
        // Validated to at most a day, so it always converts.
        chrono::Duration::from_std(self.config.change_overlap)
            .unwrap_or(chrono::Duration::minutes(10))
    }

    /// The newest `SystemModstamp` of any opportunity (everything changed from now on is
    /// stamped at or after it), and the server's time when it answered.
    async fn newest_stamp(&self) -> CrmResult<(Option<DateTime<Utc>>, Option<DateTime<Utc>>)> {
        let reply = self
            .http
            .call(
                Method::GET,
                Target::Api {
                    segments: &["query"],
                    query: &[(
                        "q",
                        "SELECT SystemModstamp FROM Opportunity ORDER BY SystemModstamp DESC LIMIT 1",
                    )],
                },
                None,
                "query",
            )
            .await?;
        let newest = reply
            .body
            .get("records")
            .and_then(Value::as_array)
            .and_then(|r| r.first())
            .and_then(Value::as_object)
            .and_then(|r| mapping::datetime(r, "SystemModstamp"));
        Ok((newest, reply.date))
    }

    async fn changes_page(
        &self,
        feed: Feed,
        until: DateTime<Utc>,
        mut keep: Remembered,
        body: Value,
    ) -> CrmResult<Step> {
        let done = body.get("done").and_then(Value::as_bool).unwrap_or(true);
        let next = match body.get("nextRecordsUrl").and_then(Value::as_str) {
            _ if done => None,
            Some(n) if is_relative_path(n) => Some(n.to_string()),
            // Ending the round here would move past records not read yet.
            _ => {
                return Err(CrmError::Transient {
                    status: None,
                    retry_after: None,
                    message: "Salesforce answered an unfinished query without a usable \
                              nextRecordsUrl"
                        .into(),
                });
            }
        };
        let records: Vec<Record> = match body {
            Value::Object(mut m) => match m.remove("records") {
                Some(Value::Array(a)) => a
                    .into_iter()
                    .filter_map(|r| match r {
                        Value::Object(m) => Some(m),
                        _ => None,
                    })
                    .collect(),
                _ => Vec::new(),
            },
            _ => Vec::new(),
        };
        // The next round reads again from `until - overlap`: records from there on are
        // remembered.
        let horizon = until - self.change_overlap();
        let mut fresh = Vec::new();
        for rec in records {
            let id = mapping::id_of(&rec).ok_or_else(|| missing_id("Opportunity"))?;
            let print = fingerprint(&id, &rec);
            if mapping::datetime(&rec, "SystemModstamp").is_some_and(|t| t >= horizon) {
                keep.remember(print);
            }
            if feed.seen.contains(print) {
                tracing::debug!(id, "opportunity unchanged since it was handed out; skipped");
                continue;
            }
            fresh.push((id, rec));
        }
        // Records read with their contact roles nested need no query for them.
        let ids: Vec<String> = fresh
            .iter()
            .filter(|(_, rec)| mapping::nested_primary_contact(rec).is_none())
            .map(|(id, _)| id.clone())
            .collect();
        let mut contacts = self.primary_contacts(&ids).await?;
        let me = self.http.user_id().await?;
        let opportunities = fresh
            .into_iter()
            .map(|(id, rec)| {
                let contact = mapping::nested_primary_contact(&rec)
                    .unwrap_or_else(|| contacts.remove(short_id(&id)));
                self.opportunity_from(id, &rec, contact, &me)
            })
            .collect();
        if let Some(next) = next {
            let feed = Feed {
                run: Some(Run { until, next, keep }),
                ..feed
            };
            return Ok((opportunities, feed, true));
        }
        let feed = Feed {
            since: Some(feed.since.map_or(until, |s| s.max(until))),
            seen: keep,
            run: None,
            // Set by the caller when this round was read in one batch.
            checked_at: None,
        };
        Ok((opportunities, feed, false))
    }

    /// The primary contact of each opportunity (by its 15-character id), as
    /// `primary_contact` picks it, in one query per [`IDS_PER_QUERY`] opportunities.
    async fn primary_contacts(&self, ids: &[String]) -> CrmResult<HashMap<String, String>> {
        let mut out = HashMap::new();
        for chunk in ids.chunks(IDS_PER_QUERY) {
            let list: Vec<String> = chunk.iter().map(|id| soql_quote(id)).collect();
            let soql = format!(
                "SELECT OpportunityId, ContactId FROM OpportunityContactRole WHERE IsPrimary = true AND OpportunityId IN ({}) ORDER BY CreatedDate ASC",
                list.join(", ")
            );
            for role in self.query(&soql).await? {
                let text = |k: &str| role.get(k).and_then(Value::as_str).map(str::to_string);
                if let (Some(opportunity), Some(contact)) =
                    (text("OpportunityId"), text("ContactId"))
                {
                    out.entry(short_id(&opportunity).to_string())
                        .or_insert(contact);
                }
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn cursors_round_trip_and_foreign_ones_are_refused() {
        let mut seen = Remembered::default();
        seen.remember(1);
        seen.remember(u64::MAX);
        let feed = Feed {
            checked_at: None,
            since: Some(Utc::now()),
            seen,
            run: Some(Run {
                until: Utc::now(),
                next: "/services/data/v62.0/query/01gD0000000001-200".into(),
                keep: Remembered::default(),
            }),
        };
        assert_eq!(decode_cursor(&encode_cursor(feed.clone())), Some(feed));
        assert_eq!(
            decode_cursor(&encode_cursor(Feed::default())),
            Some(Feed::default())
        );
        for foreign in [
            "",
            "garbage",
            r#"{"v":1,"dataverse":{"mode":"tracking","next":"$deltatoken=1"}}"#,
            r#"{"v":9,"salesforce":{}}"#,
            r#"{"v":1,"salesforce":{"run":{"until":"2025-01-01T00:00:00Z","next":"https://evil.example/q"}}}"#,
            r#"{"v":1,"salesforce":{"run":{"until":"2025-01-01T00:00:00Z","next":"//evil.example/q"}}}"#,
        ] {
            assert_eq!(decode_cursor(foreign), None, "{foreign}");
        }
    }

    #[test]
    fn a_cursor_stays_a_few_hundred_bytes() {
        let mut seen = Remembered::default();
        for n in 0..500u64 {
            seen.remember(n.wrapping_mul(0x9e37_79b9_7f4a_7c15));
        }
        assert_eq!(seen.0.len(), MAX_REMEMBERED);
        let text = encode_cursor(Feed {
            checked_at: None,
            since: Some(Utc::now()),
            seen,
            run: None,
        });
        assert!(text.len() < 500, "{} bytes: {text}", text.len());
    }

    #[test]
    fn soql_times_are_whole_seconds_and_bounds_widen() {
        let t = DateTime::parse_from_rfc3339("2025-03-01T10:20:30.250Z")
            .map(|t| t.with_timezone(&Utc))
            .unwrap_or_default();
        assert_eq!(soql_time(t), "2025-03-01T10:20:30Z");
        assert_eq!(soql_time(ceil_second(t)), "2025-03-01T10:20:31Z");
        let whole = DateTime::parse_from_rfc3339("2025-03-01T10:20:30Z")
            .map(|t| t.with_timezone(&Utc))
            .unwrap_or_default();
        assert_eq!(ceil_second(whole), whole);
    }

    #[test]
    fn fingerprints_follow_the_record_not_the_id_form() {
        let rec = |stamp: &str| match json!({"Id": "006000000000001AAA", "SystemModstamp": stamp}) {
            Value::Object(m) => m,
            _ => Record::new(),
        };
        let a = rec("2025-01-01T00:00:00.000+0000");
        assert_eq!(
            fingerprint("006000000000001AAA", &a),
            fingerprint("006000000000001", &a)
        );
        assert_ne!(
            fingerprint("006000000000001AAA", &a),
            fingerprint("006000000000001AAA", &rec("2025-01-01T00:00:01.000+0000"))
        );
    }
}
