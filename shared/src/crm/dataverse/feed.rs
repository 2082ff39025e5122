//! The opportunity change feed the poller reads ([`Crm::opportunity_changes`]).
//!
//! - **Change tracking** (docs/dataverse.md, "Change tracking"), when the table has it: the
//!   first read asks for every row with `Prefer: odata.track-changes` and pages through
//!   `@odata.nextLink`; its last page carries
//!   the `@odata.deltaLink`, and each later read follows the newest one. The cursor is that
//!   link's query without `$select` (the columns are the adapter's own, sent again each time),
//!   which keeps it short. Change tracking takes no `$filter`, so Sync = yes is checked here;
//!   deleted rows (`$deletedEntity`) are skipped. A change made while the first read is paging
//!   is in the next delta: the delta link starts from where that read began.
//! - **`modifiedon`**, when the table has no change tracking (the first answer does not say
//!   `Preference-Applied: odata.track-changes`, or the last page has no delta link) or a stored
//!   link stops working and the restart finds tracking off. Each round first asks for the newest
//!   `modifiedon` in the table (`until`), then pages through the Sync = yes rows changed from
//!   [`DataverseConfig::change_overlap`](super::DataverseConfig::change_overlap) before the
//!   previous round's `until` up to this one, oldest first. A row a seller changes while the
//!   round is paging gets a `modifiedon` at or after `until`, so the next round finds it, however
//!   long this one takes. Rows the overlap reads again are dropped when they are exactly what was
//!   handed out before: the fingerprint covers the id and the whole row (`modifiedon` and the
//!   row version included), so two changes within one second of `modifiedon` both come through.
//! - A `modifiedon` cursor stays in that mode; a feed started again (no cursor) looks for
//!   change tracking afresh.
//! - A stored link the service refuses (400: the delta token expired or change tracking was
//!   switched off) starts the feed again from the beginning, with a warning; a cursor that cannot
//!   be read does the same. Both repeat opportunities, never skip one.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::http::{Request, missing_table, values};
use super::mapping::{self, query};
use super::{DataverseCrm, OPPORTUNITIES, malformed};
#[cfg(test)]
use crate::crm::feed::MAX_REMEMBERED;
use crate::crm::feed::{self, Remembered, Rounds, Run};
use crate::crm::{ChangePage, CrmError, CrmResult, Opportunity};

/// This format's version, so a future one can tell an old cursor apart.
const VERSION: u8 = 1;

/// The stored form: `{"v":1,"dataverse":{…}}`. Another CRM's cursor does not parse as one.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Cursor {
    v: u8,
    dataverse: Feed,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "mode", rename_all = "camelCase", deny_unknown_fields)]
enum Feed {
    /// Change tracking: the query of the next request (a next page's or the delta link's),
    /// without `$select`.
    Tracking { next: String },
    /// Polling by `modifiedon`.
    #[serde(rename = "modifiedon")]
    Modified(Modified),
}

/// Polling by `modifiedon`.
type Modified = Rounds;

/// A row version's fingerprint: GUIDs compare without regard to case.
fn fingerprint(id: &str, row: &Value) -> u64 {
    feed::fingerprint(&id.to_ascii_lowercase(), row)
}

fn encode_cursor(feed: Feed) -> String {
    // Plain strings and numbers always serialise; were it ever empty, the next call would
    // only start the feed again.
    serde_json::to_string(&Cursor {
        v: VERSION,
        dataverse: feed,
    })
    .unwrap_or_default()
}

fn decode_cursor(text: &str) -> Option<Feed> {
    let cursor: Cursor = serde_json::from_str(text).ok()?;
    if cursor.v != VERSION {
        return None;
    }
    let usable = match &cursor.dataverse {
        Feed::Tracking { next } => follow_up(&format!("?{next}")).as_deref() == Some(next),
        Feed::Modified(m) => m
            .run
            .as_ref()
            .is_none_or(|r| follow_up(&format!("?{}", r.next)).as_deref() == Some(&r.next)),
    };
    usable.then_some(cursor.dataverse)
}

/// The query of a next-page or delta link without `$select`, kept as the service encoded it;
/// `None` when it carries no `$skiptoken` or `$deltatoken` to continue from.
fn follow_up(link: &str) -> Option<String> {
    let (_, query) = link.split_once('?')?;
    let key = |part: &str| {
        url::form_urlencoded::parse(part.as_bytes())
            .next()
            .map(|(k, _)| k.into_owned())
            .unwrap_or_default()
    };
    let kept: Vec<&str> = query
        .split('&')
        .filter(|p| !p.is_empty() && key(p) != "$select")
        .collect();
    let continues = kept
        .iter()
        .any(|p| matches!(key(p).as_str(), "$skiptoken" | "$deltatoken"));
    continues.then(|| kept.join("&"))
}

/// A `$filter` date-time literal: unquoted, UTC, whole seconds (as `modifiedon` is stored).
fn literal_time(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%dT%H:%M:%SZ").to_string()
}

fn link<'a>(body: &'a Value, name: &str) -> Option<&'a str> {
    body.get(name).and_then(Value::as_str)
}

fn is_deleted(row: &Value) -> bool {
    row.get("@odata.context")
        .and_then(Value::as_str)
        .is_some_and(|c| c.ends_with("$deletedEntity"))
        || (row.get("opportunityid").is_none() && row.get("reason").is_some())
}

/// What one request of the `modifiedon` feed yields: the opportunities, where the feed stands
/// after them, and whether more pages are ready.
type Step = (Vec<Opportunity>, Modified, bool);

fn page(opportunities: Vec<Opportunity>, feed: Feed, more: bool) -> ChangePage {
    ChangePage {
        opportunities,
        cursor: encode_cursor(feed),
        more,
    }
}

impl DataverseCrm {
    pub(super) async fn changes(&self, cursor: Option<&str>) -> CrmResult<ChangePage> {
        let feed = match cursor {
            None => None,
            Some(text) => {
                let feed = decode_cursor(text);
                if feed.is_none() {
                    tracing::warn!(
                        "the stored Dynamics 365 change cursor is not one this version reads; \
                         reading the opportunities again from the start"
                    );
                }
                feed
            }
        };
        match feed {
            None => self.start_feed().await,
            Some(Feed::Tracking { next }) => match self.tracking(&next).await {
                Err(CrmError::Rejected { message, .. }) => {
                    tracing::warn!(
                        reason = %message,
                        "Dynamics 365 refused the stored change-tracking link (the delta token \
                         expired, or change tracking was switched off); reading the opportunities \
                         again from the start"
                    );
                    self.start_feed().await
                }
                other => other,
            },
            Some(Feed::Modified(m)) => self.by_modifiedon(m).await,
        }
    }

    fn select(&self) -> String {
        mapping::opportunity_select(&self.fields)
    }

    /// A feed read: the page size, and change tracking when `tracking`.
    fn feed_request(&self, url: String, tracking: bool) -> Request<'static> {
        let mut req = Request::get(url);
        let size = format!("odata.maxpagesize={}", self.http.page_size());
        req.prefer = Some(if tracking {
            format!("odata.track-changes,{size}")
        } else {
            size
        });
        req
    }

    /// The first read: every row with change tracking, or the `modifiedon` feed when the table
    /// has none.
    async fn start_feed(&self) -> CrmResult<ChangePage> {
        let url = self
            .http
            .url(&query(OPPORTUNITIES, &[("$select", self.select())]));
        let reply = self
            .http
            .call(&self.feed_request(url, true))
            .await
            .map_err(missing_table)?;
        let tracked = reply.preference_applied.as_deref().is_some_and(|p| {
            p.split(',')
                .any(|x| x.trim().eq_ignore_ascii_case("odata.track-changes"))
        });
        if !tracked {
            tracing::info!(
                "change tracking is off for Dynamics 365 opportunities; finding changes by modifiedon"
            );
            return self.by_modifiedon(Modified::default()).await;
        }
        self.tracking_page(&reply.body).await
    }

    async fn tracking(&self, next: &str) -> CrmResult<ChangePage> {
        let url = self.http.url(&format!(
            "{OPPORTUNITIES}?$select={}&{next}",
            crate::http::encode_query_value(&self.select())
        ));
        let reply = self
            .http
            .call(&self.feed_request(url, true))
            .await
            .map_err(missing_table)?;
        self.tracking_page(&reply.body).await
    }

    async fn tracking_page(&self, body: &Value) -> CrmResult<ChangePage> {
        let mut opportunities = Vec::new();
        for row in values(body) {
            if is_deleted(&row) {
                tracing::debug!(
                    id = row
                        .get("id")
                        .and_then(serde_json::Value::as_str)
                        .unwrap_or_default(),
                    "a deleted opportunity in the change feed; ignored"
                );
                continue;
            }
            if self.synced(&row) {
                opportunities.push(self.to_opportunity(&row).await?);
            }
        }
        if let Some(next) = link(body, "@odata.nextLink").and_then(follow_up) {
            return Ok(page(opportunities, Feed::Tracking { next }, true));
        }
        if let Some(next) = link(body, "@odata.deltaLink").and_then(follow_up) {
            return Ok(page(opportunities, Feed::Tracking { next }, false));
        }
        // Without a delta link there is nothing to continue from: poll by modifiedon, which
        // starts with every Sync = yes row, so whatever this read has not reached yet comes.
        tracing::warn!(
            "Dynamics 365 answered a change-tracking read without a delta link; finding changes \
             by modifiedon from now on"
        );
        Ok(page(
            opportunities,
            Feed::Modified(Modified::default()),
            true,
        ))
    }

    fn synced(&self, row: &Value) -> bool {
        row.get(&self.fields.sync_with_partner_center)
            .and_then(Value::as_bool)
            == Some(true)
    }

    /// The `modifiedon` feed's next page that hands something out, or the end of the round.
    /// Pages holding only rows the overlap read again are passed over here: there are few of
    /// them (only remembered rows are skipped), and the caller gets no empty pages to store.
    async fn by_modifiedon(&self, feed: Modified) -> CrmResult<ChangePage> {
        let mut feed = feed;
        loop {
            let (opportunities, next, more) = self.modified_step(feed).await?;
            if more && opportunities.is_empty() {
                feed = next;
                continue;
            }
            return Ok(page(opportunities, Feed::Modified(next), more));
        }
    }

    /// One page of the `modifiedon` feed: the next page of the round under way, or a new round.
    async fn modified_step(&self, mut feed: Modified) -> CrmResult<Step> {
        if let Some(run) = feed.run.take() {
            let url = self.http.url(&format!(
                "{OPPORTUNITIES}?$select={}&{}",
                crate::http::encode_query_value(&self.select()),
                run.next
            ));
            match self
                .http
                .call(&self.feed_request(url, false))
                .await
                .map_err(missing_table)
            {
                Ok(reply) => {
                    return self
                        .modified_page(feed, run.until, run.keep, &reply.body)
                        .await;
                }
                Err(CrmError::Rejected { message, .. }) => tracing::warn!(
                    reason = %message,
                    "Dynamics 365 refused the stored next-page link; reading this round of \
                     modifiedon changes again"
                ),
                Err(e) => return Err(e),
            }
        }
        let Some(until) = self.newest_change().await? else {
            return Ok((Vec::new(), feed, false));
        };
        let mut filter = format!(
            "{} eq true and modifiedon le {}",
            self.fields.sync_with_partner_center,
            literal_time(until)
        );
        if let Some(since) = feed.since {
            filter.push_str(&format!(
                " and modifiedon ge {}",
                literal_time(since - self.change_overlap)
            ));
        }
        let url = self.http.url(&query(
            OPPORTUNITIES,
            &[
                ("$select", self.select()),
                ("$filter", filter),
                ("$orderby", "modifiedon asc,opportunityid asc".into()),
            ],
        ));
        let reply = self
            .http
            .call(&self.feed_request(url, false))
            .await
            .map_err(missing_table)?;
        self.modified_page(feed, until, Remembered::default(), &reply.body)
            .await
    }

    /// The newest `modifiedon` of any opportunity: everything changed from now on is stamped
    /// at or after it.
    async fn newest_change(&self) -> CrmResult<Option<DateTime<Utc>>> {
        let url = self.http.url(&query(
            OPPORTUNITIES,
            &[
                ("$select", "modifiedon".into()),
                ("$orderby", "modifiedon desc".into()),
                ("$top", "1".into()),
            ],
        ));
        let rows = self.http.first_page(url).await?;
        Ok(rows.first().and_then(mapping::modified_at))
    }

    async fn modified_page(
        &self,
        feed: Modified,
        until: DateTime<Utc>,
        mut keep: Remembered,
        body: &Value,
    ) -> CrmResult<Step> {
        // The next round reads again from `until - overlap`: rows from there on are remembered.
        let horizon = until - self.change_overlap;
        let mut opportunities = Vec::new();
        for row in values(body) {
            let Some(id) = row.get("opportunityid").and_then(Value::as_str) else {
                continue;
            };
            let print = fingerprint(id, &row);
            if mapping::modified_at(&row).is_some_and(|t| t >= horizon) {
                keep.remember(print);
            }
            if feed.seen.contains(print) {
                tracing::debug!(id, "opportunity unchanged since it was handed out; skipped");
                continue;
            }
            opportunities.push(self.to_opportunity(&row).await?);
        }
        if let Some(link) = link(body, "@odata.nextLink") {
            // Ending the round here would move past rows not read yet.
            let next = follow_up(link).ok_or_else(|| malformed("a usable @odata.nextLink"))?;
            let feed = Modified {
                run: Some(Run { until, next, keep }),
                ..feed
            };
            return Ok((opportunities, feed, true));
        }
        let since = feed.since.map_or(until, |s| s.max(until));
        let feed = Modified {
            since: Some(since),
            seen: keep,
            run: None,
            checked_at: None,
        };
        Ok((opportunities, feed, false))
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn follow_ups_keep_the_tokens_and_drop_the_select() {
        let delta = "https://org.example/api/data/v9.2/opportunities?$select=name,modifiedon&$deltatoken=919042%2105%2F24%2F2021%2015%3A24%3A04";
        assert_eq!(
            follow_up(delta).as_deref(),
            Some("$deltatoken=919042%2105%2F24%2F2021%2015%3A24%3A04")
        );
        let next = "https://org.example/api/data/v9.2/opportunities?%24select=name&$filter=a%20eq%201&$skiptoken=%3Ccookie%20pagenumber%3D%222%22%20%2F%3E";
        assert_eq!(
            follow_up(next).as_deref(),
            Some("$filter=a%20eq%201&$skiptoken=%3Ccookie%20pagenumber%3D%222%22%20%2F%3E")
        );
        assert_eq!(follow_up("https://org.example/x?$select=a&$filter=b"), None);
        assert_eq!(follow_up("https://org.example/x"), None);
    }

    #[test]
    fn cursors_round_trip_and_foreign_ones_are_refused() {
        let mut seen = Remembered::default();
        seen.remember(7);
        seen.remember(u64::MAX);
        let feed = Feed::Modified(Modified {
            checked_at: None,
            since: Some(Utc::now()),
            seen,
            run: Some(Run {
                until: Utc::now(),
                next: "$skiptoken=abc".into(),
                keep: Remembered::default(),
            }),
        });
        let text = encode_cursor(feed.clone());
        assert_eq!(decode_cursor(&text), Some(feed));
        let tracking = Feed::Tracking {
            next: "$deltatoken=1%2101%2F01%2F2025%2000%3A00%3A00".into(),
        };
        assert_eq!(
            decode_cursor(&encode_cursor(tracking.clone())),
            Some(tracking)
        );
        for foreign in [
            "",
            "garbage",
            r#"{"v":1,"salesforce":{}}"#,
            r#"{"v":2,"dataverse":{"mode":"tracking","next":"$deltatoken=1"}}"#,
            r#"{"v":1,"dataverse":{"mode":"tracking","next":"$filter=x"}}"#,
            r#"{"v":1,"dataverse":{"mode":"modifiedon","seen":"not base64!"}}"#,
        ] {
            assert_eq!(decode_cursor(foreign), None, "{foreign}");
        }
    }

    #[test]
    fn a_cursor_stays_a_few_hundred_bytes() {
        let mut seen = Remembered::default();
        for n in 0..1000u64 {
            seen.remember(n.wrapping_mul(0x9e37_79b9_7f4a_7c15));
        }
        assert_eq!(seen.0.len(), MAX_REMEMBERED);
        assert_eq!(
            seen.0.last(),
            Some(&999u64.wrapping_mul(0x9e37_79b9_7f4a_7c15))
        );
        let text = encode_cursor(Feed::Modified(Modified {
            checked_at: None,
            since: Some(Utc::now()),
            seen,
            run: None,
        }));
        assert!(text.len() < 500, "{} bytes: {text}", text.len());
    }

    #[test]
    fn fingerprints_tell_row_versions_apart() {
        let a = json!({"@odata.etag": "W/\"1\"", "opportunityid": "x", "modifiedon": "2025-01-01T00:00:00Z"});
        let b = json!({"@odata.etag": "W/\"2\"", "opportunityid": "x", "modifiedon": "2025-01-01T00:00:00Z"});
        assert_eq!(fingerprint("X", &a), fingerprint("x", &a));
        assert_ne!(fingerprint("x", &a), fingerprint("x", &b));
        assert_ne!(fingerprint("x", &a), fingerprint("y", &a));
    }

    #[test]
    fn deleted_entries_are_recognised() {
        assert!(is_deleted(&json!({
            "@odata.context": "https://o/api/data/v9.2/$metadata#opportunities/$deletedEntity",
            "id": "x", "reason": "deleted"
        })));
        assert!(!is_deleted(&json!({"opportunityid": "x", "name": "n"})));
    }
}
