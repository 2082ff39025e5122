//! Collection reads: system query options, `Prefer` preferences, server-driven paging with an
//! opaque `$skiptoken`, and change tracking with `$deltatoken` (docs/dataverse.md, "Queries
//! and paging" and "Change tracking").

use std::cmp::Ordering;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, NaiveDateTime, Utc};
use cosell_odata::{Filter, OrderBy, parse_select};
use serde_json::{Map, Value, json};

use super::error::DvError;
use super::schema::TableDef;
use super::store::{Row, State};

/// The `Prefer` values the Web API honours (docs/dataverse.md, "Headers").
#[derive(Debug, Default, Clone)]
pub struct Prefer {
    pub return_representation: bool,
    pub max_page_size: Option<usize>,
    pub track_changes: bool,
    /// The raw `odata.include-annotations` value.
    pub annotations: Option<String>,
}

impl Prefer {
    pub fn parse(headers: &axum::http::HeaderMap) -> Result<Prefer, DvError> {
        let mut p = Prefer::default();
        for value in headers.get_all("prefer") {
            let Ok(text) = value.to_str() else { continue };
            for item in text.split(',') {
                let item = item.trim();
                let (name, arg) = item.split_once('=').unwrap_or((item, ""));
                let arg = arg.trim().trim_matches('"');
                match name.trim().to_ascii_lowercase().as_str() {
                    "return" => p.return_representation = arg == "representation",
                    "odata.maxpagesize" => {
                        let n = arg.parse::<usize>().ok().filter(|n| *n > 0).ok_or_else(|| {
                            DvError::bad_request(format!(
                                "The value '{arg}' of the preference odata.maxpagesize is not a positive integer."
                            ))
                        })?;
                        p.max_page_size = Some(n);
                    }
                    "odata.track-changes" => p.track_changes = true,
                    "odata.include-annotations" => p.annotations = Some(arg.to_string()),
                    _ => {}
                }
            }
        }
        Ok(p)
    }

    /// Whether lookups get their `…@Microsoft.Dynamics.CRM.lookuplogicalname` annotation.
    pub fn lookup_annotations(&self) -> bool {
        self.annotations.as_deref().is_some_and(|a| {
            a.split(',').any(|x| {
                let x = x.trim();
                x == "*"
                    || x == "Microsoft.Dynamics.CRM.lookuplogicalname"
                    || x == "Microsoft.Dynamics.CRM.*"
            })
        })
    }
}

/// System query options of one request; the raw pairs are kept to build `@odata.nextLink`.
#[derive(Debug, Default)]
pub struct Options {
    pub raw: Vec<(String, String)>,
    pub select: Option<Vec<String>>,
    pub filter: Option<Filter>,
    pub orderby: Option<OrderBy>,
    pub top: Option<usize>,
    pub count: bool,
    pub skiptoken: Option<String>,
    pub deltatoken: Option<String>,
    pub expand: bool,
}

/// Options the Web API has that the sandbox does not simulate.
const NOT_SIMULATED: &[&str] = &["$expand", "$apply", "$search", "$compute", "$levels"];

impl Options {
    pub fn parse(query: Option<&str>) -> Result<Options, DvError> {
        let mut o = Options::default();
        for (k, v) in url::form_urlencoded::parse(query.unwrap_or("").as_bytes()) {
            let (k, v) = (k.into_owned(), v.into_owned());
            match k.as_str() {
                "$select" => {
                    o.select = Some(
                        parse_select(&v)
                            .map_err(|e| DvError::bad_request(format!("Invalid $select: {e}")))?,
                    )
                }
                "$filter" => {
                    o.filter = Some(
                        Filter::parse(&v)
                            .map_err(|e| DvError::bad_request(format!("Invalid $filter: {e}")))?,
                    )
                }
                "$orderby" => {
                    o.orderby = Some(
                        OrderBy::parse(&v)
                            .map_err(|e| DvError::bad_request(format!("Invalid $orderby: {e}")))?,
                    )
                }
                "$top" => {
                    o.top = Some(v.trim().parse().map_err(|_| {
                        DvError::bad_request(format!(
                            "Invalid value '{v}' for $top query option found."
                        ))
                    })?)
                }
                "$count" => o.count = v.eq_ignore_ascii_case("true"),
                "$skiptoken" => o.skiptoken = Some(v.clone()),
                "$deltatoken" => o.deltatoken = Some(v.clone()),
                "$skip" => {
                    return Err(DvError::bad_request(
                        "The query parameter $skip is not supported.",
                    ));
                }
                "$expand" => o.expand = true,
                "$format" => {}
                other if NOT_SIMULATED.contains(&other) => {}
                other if other.starts_with('$') => {
                    return Err(DvError::bad_request(format!(
                        "The query parameter {other} is not supported."
                    )));
                }
                _ => {}
            }
            o.raw.push((k, v));
        }
        Ok(o)
    }

    pub fn has(&self, name: &str) -> bool {
        self.raw.iter().any(|(k, _)| k == name)
    }

    /// Every name the options read must be a column of the table.
    pub fn check_columns(&self, table: &TableDef) -> Result<(), DvError> {
        let mut names: Vec<String> = self.select.clone().unwrap_or_default();
        if let Some(f) = &self.filter {
            names.extend(f.properties());
        }
        if let Some(o) = &self.orderby {
            names.extend(o.properties());
        }
        match names.iter().find(|n| table.field_by_column(n).is_none()) {
            Some(bad) => Err(DvError::bad_request(format!(
                "Could not find a property named '{bad}' on type '{}'.",
                table.type_name()
            ))),
            None => Ok(()),
        }
    }

    /// The query string for a follow-up link: every original option except the ones replaced.
    fn link_query(&self, drop: &[&str], add: &[(&str, String)]) -> String {
        let mut parts: Vec<String> = self
            .raw
            .iter()
            .filter(|(k, _)| !drop.contains(&k.as_str()))
            .map(|(k, v)| format!("{}={}", encode(k), encode(v)))
            .collect();
        parts.extend(
            add.iter()
                .map(|(k, v)| format!("{}={}", encode(k), encode(v))),
        );
        parts.join("&")
    }
}

/// Percent-encodes a query component, keeping the characters OData URLs show literally.
pub fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'A'..=b'Z'
            | b'a'..=b'z'
            | b'0'..=b'9'
            | b'-'
            | b'.'
            | b'_'
            | b'~'
            | b'$'
            | b','
            | b'('
            | b')'
            | b'\''
            | b':' => out.push(char::from(b)),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// The state a `$skiptoken` carries: the last row's sort key, the page number, and for a
/// change-tracking read the version its delta link will start from.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
struct Cookie {
    page: u64,
    last: Map<String, Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    watermark: Option<u64>,
}

/// Shaped like Dataverse's paging cookie so clients treat it as the opaque string it is.
fn encode_cookie(c: &Cookie) -> String {
    let inner = URL_SAFE_NO_PAD.encode(serde_json::to_vec(c).unwrap_or_default());
    format!(
        "<cookie pagenumber=\"{}\" pagingcookie=\"{inner}\" istracking=\"{}\" />",
        c.page,
        if c.watermark.is_some() {
            "True"
        } else {
            "False"
        }
    )
}

fn decode_cookie(token: &str) -> Result<Cookie, DvError> {
    let bad = || DvError::bad_request("The $skiptoken is not valid.");
    let start = token.find("pagingcookie=\"").ok_or_else(bad)? + "pagingcookie=\"".len();
    let len = token[start..].find('"').ok_or_else(bad)?;
    let bytes = URL_SAFE_NO_PAD
        .decode(&token[start..start + len])
        .map_err(|_| bad())?;
    serde_json::from_slice(&bytes).map_err(|_| bad())
}

/// `919042!05/24/2021 15:24:04`: a row version and when the token was issued (the
/// example of docs/dataverse.md, "Change tracking").
pub fn delta_token(version: u64, now: DateTime<Utc>) -> String {
    format!("{version}!{}", now.format("%m/%d/%Y %H:%M:%S"))
}

fn parse_delta_token(token: &str) -> Result<(u64, DateTime<Utc>), DvError> {
    let bad = || DvError::bad_request("The $deltatoken is not valid.");
    let (version, when) = token.split_once('!').ok_or_else(bad)?;
    let version = version.trim().parse::<u64>().map_err(|_| bad())?;
    let when = NaiveDateTime::parse_from_str(when.trim(), "%m/%d/%Y %H:%M:%S")
        .map_err(|_| bad())?
        .and_utc();
    Ok((version, when))
}

/// What a collection read answers with.
pub struct Answer {
    pub body: Value,
    pub applied: Vec<String>,
}

/// Everything a collection read needs from outside the store.
pub struct Read<'a> {
    pub base: &'a str,
    pub version: &'a str,
    pub set: &'a str,
    pub options: &'a Options,
    pub prefer: &'a Prefer,
    pub now: DateTime<Utc>,
}

impl Read<'_> {
    fn api(&self) -> String {
        format!("{}/api/data/{}", self.base, self.version)
    }

    fn context(&self, suffix: &str) -> String {
        let select = self
            .options
            .select
            .as_ref()
            .map(|s| format!("({})", s.join(",")))
            .unwrap_or_default();
        format!("{}/$metadata#{}{select}{suffix}", self.api(), self.set)
    }
}

fn change_tracking_conflict(o: &Options) -> Option<DvError> {
    ["$filter", "$orderby", "$top", "$expand"]
        .iter()
        .find(|k| o.has(k))
        .map(|k| {
            DvError::bad_request(format!(
                "The {k} query parameter isn't supported when Change Tracking is enabled."
            ))
        })
}

/// Sort order of a query: `$orderby`, then the primary key, so pages never overlap.
fn compare(order: Option<&OrderBy>, pk: &str, a: &Value, b: &Value) -> Ordering {
    let first = order.map_or(Ordering::Equal, |o| o.compare(a, b));
    first.then_with(|| {
        let key = |v: &Value| v.get(pk).and_then(Value::as_str).unwrap_or("").to_string();
        key(a).cmp(&key(b))
    })
}

/// `GET /set` with its options: a page of rows, or a delta when a `$deltatoken` is given.
pub fn read_collection(state: &State, read: &Read<'_>) -> Result<Answer, DvError> {
    let table = state.table(read.set)?;
    let o = read.options;
    let tracking_table = table.change_tracking;
    if let Some(token) = &o.deltatoken {
        if !tracking_table {
            return Err(DvError::bad_request(format!(
                "Change tracking is not enabled for the entity '{}'.",
                table.logical_name
            )));
        }
        if let Some(e) = change_tracking_conflict(o) {
            return Err(e);
        }
        o.check_columns(table)?;
        return delta(state, table, read, token);
    }
    let tracking = read.prefer.track_changes && tracking_table;
    if tracking && let Some(e) = change_tracking_conflict(o) {
        return Err(e);
    }
    if o.expand {
        return Err(DvError::not_implemented("$expand"));
    }
    if let Some(k) = NOT_SIMULATED.iter().find(|k| o.has(k)) {
        return Err(DvError::not_implemented(k));
    }
    o.check_columns(table)?;
    let cookie = o.skiptoken.as_deref().map(decode_cookie).transpose()?;
    let pk = table.primary_key.as_str();
    let order = o.orderby.as_ref();
    // Each matching row as a JSON value once, for the sort.
    let mut rows: Vec<(Value, &Row)> = state
        .rows(read.set)
        .filter(|r| {
            o.filter
                .as_ref()
                .is_none_or(|f| f.matches_object(&r.values))
        })
        .map(|r| (Value::Object(r.values.clone()), r))
        .collect();
    rows.sort_by(|(a, _), (b, _)| compare(order, pk, a, b));
    let total = rows.len();
    let max = state.config.max_page_size.max(1);
    let page_size = match read.prefer.max_page_size {
        Some(n) => n.min(max),
        None => {
            if let Some(top) = o.top {
                rows.truncate(top);
            }
            max
        }
    };
    if let Some(c) = &cookie {
        let last = Value::Object(c.last.clone());
        rows.retain(|(v, _)| compare(order, pk, v, &last) == Ordering::Greater);
    }
    let more = rows.len() > page_size;
    rows.truncate(page_size);
    let annotations = read.prefer.lookup_annotations();
    let select = o.select.as_deref();
    let value: Vec<Value> = rows
        .iter()
        .map(|(_, r)| state.represent(table, r, select, annotations))
        .collect();
    let mut body = Map::new();
    body.insert("@odata.context".into(), Value::String(read.context("")));
    if o.count {
        body.insert("@odata.count".into(), Value::from(total.min(5000)));
    }
    body.insert("value".into(), Value::Array(value));
    let watermark = match &cookie {
        Some(c) => c.watermark,
        None => tracking.then(|| state.version()),
    };
    if more && let Some((_, last)) = rows.last() {
        let mut key = Map::new();
        for p in order.map(|o| o.properties()).unwrap_or_default() {
            key.insert(
                p.clone(),
                last.values.get(&p).cloned().unwrap_or(Value::Null),
            );
        }
        key.insert(
            pk.into(),
            last.values.get(pk).cloned().unwrap_or(Value::Null),
        );
        let next = Cookie {
            page: cookie.as_ref().map_or(1, |c| c.page) + 1,
            last: key,
            watermark,
        };
        let q = o.link_query(&["$skiptoken"], &[("$skiptoken", encode_cookie(&next))]);
        body.insert(
            "@odata.nextLink".into(),
            Value::String(format!("{}/{}?{q}", read.api(), read.set)),
        );
    } else if let Some(w) = watermark {
        body.insert(
            "@odata.deltaLink".into(),
            Value::String(delta_link(read, w)),
        );
    }
    let mut applied = Vec::new();
    if let Some(n) = read.prefer.max_page_size {
        applied.push(format!("odata.maxpagesize={}", n.min(max)));
    }
    if tracking {
        applied.push("odata.track-changes".into());
    }
    if let Some(a) = &read.prefer.annotations {
        applied.push(format!("odata.include-annotations=\"{a}\""));
    }
    Ok(Answer {
        body: Value::Object(body),
        applied,
    })
}

fn delta_link(read: &Read<'_>, version: u64) -> String {
    let q = read.options.link_query(
        &["$skiptoken", "$deltatoken", "$count"],
        &[("$deltatoken", delta_token(version, read.now))],
    );
    format!("{}/{}?{q}", read.api(), read.set)
}

/// Rows created or changed since the token, in full (with `$select`), then deletions.
fn delta(state: &State, table: &TableDef, read: &Read<'_>, token: &str) -> Result<Answer, DvError> {
    let (since, issued) = parse_delta_token(token)?;
    let expiry = chrono::Duration::from_std(state.config.change_tracking_expiry)
        .unwrap_or(chrono::Duration::days(7));
    if read.now - issued > expiry {
        return Err(DvError::invalid(
            "The change tracking token has expired. Read the whole table again with Prefer: odata.track-changes.",
        ));
    }
    let (changed, deleted) = state.changes_since(read.set, since);
    let select = read.options.select.as_deref();
    let annotations = read.prefer.lookup_annotations();
    let mut value: Vec<Value> = changed
        .iter()
        .map(|r| state.represent(table, r, select, annotations))
        .collect();
    let deleted_context = format!("{}/$metadata#{}/$deletedEntity", read.api(), read.set);
    value.extend(deleted.iter().map(
        |id| json!({"@odata.context": deleted_context, "id": id.to_string(), "reason": "deleted"}),
    ));
    let body = json!({
        "@odata.context": read.context("/$delta"),
        "value": value,
        "@odata.deltaLink": delta_link(read, state.version()),
    });
    Ok(Answer {
        body,
        applied: vec!["odata.track-changes".into()],
    })
}

/// `GET /set/$count`: the number of rows (capped at 5000, docs/dataverse.md, "Queries and
/// paging").
pub fn count(state: &State, set: &str, options: &Options) -> Result<usize, DvError> {
    let table = state.table(set)?;
    options.check_columns(table)?;
    Ok(state
        .rows(set)
        .filter(|r| {
            options
                .filter
                .as_ref()
                .is_none_or(|f| f.matches_object(&r.values))
        })
        .count()
        .min(5000))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cookies_round_trip() {
        let c = Cookie {
            page: 2,
            last: Map::from_iter([("name".to_string(), json!("a"))]),
            watermark: Some(7),
        };
        let token = encode_cookie(&c);
        assert!(token.starts_with("<cookie pagenumber=\"2\""));
        let back = decode_cookie(&token).expect("decodes");
        assert_eq!(back.watermark, Some(7));
        assert_eq!(back.last["name"], "a");
        assert!(decode_cookie("garbage").is_err());
    }

    #[test]
    fn delta_tokens_round_trip() {
        let now = Utc::now();
        let (v, when) = parse_delta_token(&delta_token(919042, now)).expect("parses");
        assert_eq!(v, 919042);
        assert!((now - when).num_seconds().abs() <= 1);
    }

    #[test]
    fn options() {
        let o = Options::parse(Some(
            "$select=name,_parentaccountid_value&$filter=name%20eq%20'a'&$top=3",
        ))
        .expect("parses");
        assert_eq!(o.select.as_deref().map(<[String]>::len), Some(2));
        assert_eq!(o.top, Some(3));
        let e = Options::parse(Some("$skip=10")).expect_err("refused");
        assert!(e.message.contains("$skip"));
        assert_eq!(
            o.link_query(&["$top"], &[("$skiptoken", "<a b=\"1\">".into())]),
            "$select=name,_parentaccountid_value&$filter=name%20eq%20'a'&$skiptoken=%3Ca%20b%3D%221%22%3E"
        );
    }
}
