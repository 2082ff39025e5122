//! The REST API under `/services/data/vNN.N/`, served through one wildcard route so that the
//! per-route counters can be labelled per object and operation (see [`route_label`]).

use std::collections::HashMap;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get, post};
use chrono::{DateTime, Duration, DurationRound, Utc};
use serde_json::{Map, Value, json};

use super::errors::{ErrorItem, SfError};
use super::query::render;
use super::store::{Actor, Upserted, parse_datetime, sf_datetime};
use super::{Cursor, State as SfState, auth, ids};
use crate::app::App;

/// Largest sObject Collections request (documented: 200 records).
const COLLECTION_LIMIT: usize = 200;
/// Upsert answers 200 with `created:false` from this version on, 204 before (docs/salesforce.md,
/// "Upsert by external ID").
const CREATED_FLAG_VERSION: u32 = 46;

pub fn routes() -> Router<App> {
    Router::new()
        .route("/services/oauth2/token", post(auth::token))
        .route("/services/data", get(versions))
        .route("/services/data/", get(versions))
        .route("/services/data/{*rest}", any(data))
}

/// `vNN.N` → `NN`.
fn parse_version(seg: &str) -> Option<u32> {
    let (major, minor) = seg.strip_prefix('v')?.split_once('.')?;
    (minor == "0").then_some(())?;
    major.parse().ok()
}

/// See [`super::route_label`].
pub fn route_label(path: &str) -> Option<String> {
    let rest = path.strip_prefix("/services/")?;
    let Some(data) = rest.strip_prefix("data/") else {
        return Some(path.to_string());
    };
    let segs: Vec<&str> = data.trim_end_matches('/').split('/').collect();
    let Some((version, tail)) = segs.split_first() else {
        return Some(path.to_string());
    };
    let version = if parse_version(version).is_some() {
        "v{version}"
    } else {
        version
    };
    let tail: Vec<&str> = match tail {
        ["sobjects", obj, op @ ("describe" | "updated" | "deleted")] => {
            vec!["sobjects", obj, op]
        }
        ["sobjects", obj, _id] => vec!["sobjects", obj, "{id}"],
        ["sobjects", obj, field, _value] => vec!["sobjects", obj, field, "{value}"],
        ["tooling", "sobjects", obj, _id] => vec!["tooling", "sobjects", obj, "{id}"],
        [q @ ("query" | "queryAll"), _locator] => vec![q, "{locator}"],
        other => other.to_vec(),
    };
    let mut label = format!("/services/data/{version}");
    for seg in tail {
        label.push('/');
        label.push_str(seg);
    }
    Some(label)
}

/// `GET /services/data/`: the versions served, newest last, labelled by release.
async fn versions(State(app): State<App>) -> Response {
    let c = &app.config.salesforce;
    let list: Vec<Value> = (c.oldest_api_version..=c.latest_api_version)
        .map(|v| {
            json!({
                "label": release_name(v),
                "url": format!("/services/data/v{v}.0"),
                "version": format!("{v}.0"),
            })
        })
        .collect();
    axum::Json(list).into_response()
}

/// Three releases a year, v45.0 being Spring '19.
fn release_name(version: u32) -> String {
    let k = i64::from(version) - 45;
    let (season, year) = match k.rem_euclid(3) {
        0 => ("Spring", 19 + k.div_euclid(3)),
        1 => ("Summer", 19 + k.div_euclid(3)),
        _ => ("Winter", 20 + k.div_euclid(3)),
    };
    format!("{season} '{year:02}")
}

/// Decodes `%XX` in a path segment (so an upsert key may hold `/`).
fn percent_decode(seg: &str) -> String {
    let bytes = seg.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (bytes[i], hex) {
            (b'%', Some(b)) => {
                out.push(b);
                i += 3;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// What a handler needs of the request.
struct Req<'a> {
    method: &'a Method,
    version: String,
    version_number: u32,
    query: HashMap<String, String>,
    headers: &'a HeaderMap,
    body: &'a Bytes,
    now: DateTime<Utc>,
}

async fn data(
    State(app): State<App>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let segs: Vec<String> = uri
        .path()
        .strip_prefix("/services/data/")
        .unwrap_or_default()
        .trim_end_matches('/')
        .split('/')
        .map(percent_decode)
        .collect();
    let query: HashMap<String, String> = uri
        .query()
        .map(|q| {
            url::form_urlencoded::parse(q.as_bytes())
                .into_owned()
                .collect()
        })
        .unwrap_or_default();
    let now = app.clock.now();
    let mut state = app.salesforce();
    let scope = ViewScope(&mut state);
    let result = match segs.split_first() {
        Some((v, rest)) => match parse_version(v).filter(|n| {
            (app.config.salesforce.oldest_api_version..=app.config.salesforce.latest_api_version)
                .contains(n)
        }) {
            Some(n) => {
                let req = Req {
                    method: &method,
                    version: v.clone(),
                    version_number: n,
                    query,
                    headers: &headers,
                    body: &body,
                    now,
                };
                handle(scope.0, &req, rest)
            }
            None => Err(SfError::not_found()),
        },
        None => Err(SfError::not_found()),
    };
    drop(scope);
    let max = state.budget_max();
    let used = state.budget.used(now);
    drop(state);
    let mut resp = result.unwrap_or_else(IntoResponse::into_response);
    if let Ok(v) = HeaderValue::from_str(&format!("api-usage={used}/{max}")) {
        resp.headers_mut().insert("sforce-limit-info", v);
    }
    resp
}

/// Ends a request's view of the schema (`State::view`) when the request ends, even when a
/// handler panics: the lock survives a panic, and the control API must see the whole schema.
struct ViewScope<'a>(&'a mut SfState);

impl Drop for ViewScope<'_> {
    fn drop(&mut self) {
        self.0.view = None;
    }
}

impl SfState {
    pub(super) fn budget_max(&self) -> u64 {
        self.budget.max.unwrap_or(self.config.daily_api_limit)
    }
}

pub(super) fn method_not_allowed(method: &Method, allowed: &str) -> SfError {
    SfError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "METHOD_NOT_ALLOWED",
        format!("HTTP Method '{method}' not allowed. Allowed are {allowed}"),
    )
}

pub(super) fn json_object(body: &Bytes) -> Result<Map<String, Value>, SfError> {
    if body.is_empty() {
        return Err(SfError::json_parser("The request body is empty."));
    }
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(m)) => Ok(m),
        Ok(_) => Err(SfError::json_parser(
            "Cannot deserialize an sObject from a value that is not a JSON object",
        )),
        Err(e) => Err(SfError::json_parser(format!("Unexpected character: {e}"))),
    }
}

fn handle(state: &mut SfState, req: &Req<'_>, rest: &[String]) -> Result<Response, SfError> {
    let user_id = auth::authenticate(state, req.headers, req.now)?;
    let max = state.budget_max();
    if state.budget.used(req.now) >= max {
        return Err(SfError::new(
            StatusCode::FORBIDDEN,
            "REQUEST_LIMIT_EXCEEDED",
            "TotalRequests Limit exceeded.",
        ));
    }
    state.budget.calls.push_back((req.now, 1));
    let actor = Actor {
        user_id: &user_id,
        now: req.now,
    };
    let segs: Vec<&str> = rest.iter().map(String::as_str).collect();
    let m = req.method;
    let v = &req.version;
    // The Tooling API sees the whole schema: a field hidden from the caller is still a name
    // taken.
    if let ["tooling", tail @ ..] = segs.as_slice() {
        return super::tooling::handle(state, m, tail, &req.query, req.body, v);
    }
    state.view = state.view_for(&user_id);
    match segs.as_slice() {
        [] | [""] if m == Method::GET => Ok(axum::Json(json!({
            "sobjects": format!("/services/data/{v}/sobjects"),
            "query": format!("/services/data/{v}/query"),
            "limits": format!("/services/data/{v}/limits"),
            "tooling": format!("/services/data/{v}/tooling"),
            "composite": format!("/services/data/{v}/composite"),
        }))
        .into_response()),
        ["limits"] if m == Method::GET => {
            let used = state.budget.used(req.now);
            Ok(axum::Json(json!({
                "DailyApiRequests": {"Max": max, "Remaining": max.saturating_sub(used)}
            }))
            .into_response())
        }
        ["limits"] => Err(method_not_allowed(m, "GET")),
        ["query"] if m == Method::GET => query(state, req),
        ["query", locator] if m == Method::GET => query_more(state, req, locator),
        ["sobjects"] if m == Method::GET => Ok(describe_global(state, v)),
        ["sobjects", obj] => match *m {
            Method::POST => {
                let body = json_object(req.body)?;
                let id = state.create(obj, &body, actor)?;
                Ok((
                    StatusCode::CREATED,
                    axum::Json(json!({"id": id, "success": true, "errors": []})),
                )
                    .into_response())
            }
            Method::GET => {
                let o = state.object_or_404(obj)?;
                let d = o.describe(&state.stages, v);
                Ok(axum::Json(json!({"objectDescribe": d, "recentItems": []})).into_response())
            }
            _ => Err(method_not_allowed(m, "GET, HEAD, POST")),
        },
        ["sobjects", obj, "describe"] if m == Method::GET => {
            let o = state.object_or_404(obj)?;
            Ok(axum::Json(o.describe(&state.stages, v)).into_response())
        }
        ["sobjects", obj, op @ ("updated" | "deleted")] if m == Method::GET => {
            replication(state, req, obj, op == &"deleted")
        }
        ["sobjects", obj, id] => row(state, req, actor, obj, id),
        ["sobjects", obj, field, value] => by_external_id(state, req, actor, obj, field, value),
        ["composite", "sobjects"] => collections(state, req, actor),
        ["composite", "sobjects", obj, field] if m == Method::PATCH => {
            collection_upsert(state, req, actor, obj, field)
        }
        _ => Err(SfError::not_found()),
    }
}

fn describe_global(state: &SfState, v: &str) -> Response {
    let objects: Vec<Value> = state
        .objects()
        .iter()
        .map(|o| {
            json!({
                "name": o.name,
                "label": o.label(),
                "keyPrefix": o.key_prefix,
                "custom": o.is_custom(),
                "createable": o.createable,
                "queryable": true,
                "urls": {
                    "sobject": format!("/services/data/{v}/sobjects/{}", o.name),
                    "describe": format!("/services/data/{v}/sobjects/{}/describe", o.name),
                },
            })
        })
        .collect();
    axum::Json(json!({"encoding": "UTF-8", "maxBatchSize": COLLECTION_LIMIT, "sobjects": objects}))
        .into_response()
}

/// A record id from a URL, if it is one of `prefix`'s.
fn row_id(id: &str, prefix: &str) -> Option<String> {
    ids::canonical(id).filter(|i| ids::has_prefix(i, prefix))
}

/// `GET|PATCH|DELETE /sobjects/X/{id}`.
fn row(
    state: &mut SfState,
    req: &Req<'_>,
    actor: Actor<'_>,
    obj: &str,
    id: &str,
) -> Result<Response, SfError> {
    let o = state.object_or_404(obj)?;
    let canonical = row_id(id, &o.key_prefix);
    match *req.method {
        Method::GET => {
            let rec = canonical
                .and_then(|i| state.record(&o.name, &i))
                .ok_or_else(SfError::not_found)?;
            let fields = match req.query.get("fields") {
                Some(list) => Some(
                    list.split(',')
                        .map(str::trim)
                        .filter(|f| !f.is_empty())
                        .map(|f| {
                            o.field(f).ok_or_else(|| {
                                SfError::bad_request(ErrorItem::new(
                                    "INVALID_FIELD",
                                    format!("No such column '{f}' on entity '{}'", o.name),
                                ))
                            })
                        })
                        .collect::<Result<Vec<_>, _>>()?,
                ),
                None => None,
            };
            Ok(axum::Json(render(&o, rec, fields.as_deref(), &req.version)).into_response())
        }
        Method::PATCH => {
            let Some(id) = canonical else {
                return Err(SfError::not_found());
            };
            let body = json_object(req.body)?;
            if let Some(since) = req
                .headers
                .get(header::IF_UNMODIFIED_SINCE)
                .and_then(|v| v.to_str().ok())
                && let Some(rec) = state.record(&o.name, &id)
                && modified_since(rec, since)
            {
                return Err(SfError::new(
                    StatusCode::PRECONDITION_FAILED,
                    "PRECONDITION_FAILED",
                    "The record was modified after the date in If-Unmodified-Since",
                ));
            }
            state.update(&o.name, &id, &body, actor)?;
            Ok(StatusCode::NO_CONTENT.into_response())
        }
        Method::DELETE => {
            let Some(id) = canonical else {
                return Err(SfError::not_found());
            };
            state.delete(&o.name, &id, actor)?;
            Ok(StatusCode::NO_CONTENT.into_response())
        }
        _ => Err(method_not_allowed(req.method, "GET, HEAD, PATCH, DELETE")),
    }
}

/// Whether `rec` changed after the HTTP date `since` (compared to the second, the header's
/// precision).
fn modified_since(rec: &Map<String, Value>, since: &str) -> bool {
    let Ok(since) = DateTime::parse_from_rfc2822(since) else {
        return false;
    };
    rec.get("LastModifiedDate")
        .and_then(Value::as_str)
        .and_then(parse_datetime)
        .is_some_and(|t| t.timestamp() > since.timestamp())
}

fn record_url(v: &str, obj: &str, id: &str) -> String {
    format!("/services/data/{v}/sobjects/{obj}/{id}")
}

/// `GET|PATCH|DELETE /sobjects/X/{ExternalIdField}/{value}`.
fn by_external_id(
    state: &mut SfState,
    req: &Req<'_>,
    actor: Actor<'_>,
    obj: &str,
    field: &str,
    value: &str,
) -> Result<Response, SfError> {
    let o = state.object_or_404(obj)?;
    let v = &req.version;
    let not_external = || {
        SfError::new(
            StatusCode::NOT_FOUND,
            "NOT_FOUND",
            format!("Provided external ID field does not exist or is not accessible: {field}"),
        )
    };
    match *req.method {
        Method::PATCH => {
            let body = json_object(req.body)?;
            let update_only = req
                .query
                .get("updateOnly")
                .is_some_and(|u| u.eq_ignore_ascii_case("true"));
            let flag = req.version_number >= CREATED_FLAG_VERSION;
            match state.upsert(&o.name, field, value, &body, update_only, actor)? {
                Upserted::Created(id) => {
                    let mut b = json!({"id": id, "success": true, "errors": []});
                    if flag {
                        b["created"] = json!(true);
                    }
                    Ok((StatusCode::CREATED, axum::Json(b)).into_response())
                }
                Upserted::Updated(id) if flag => Ok(axum::Json(
                    json!({"id": id, "success": true, "errors": [], "created": false}),
                )
                .into_response()),
                Upserted::Updated(_) => Ok(StatusCode::NO_CONTENT.into_response()),
                Upserted::Ambiguous(ids) => Ok(multiple_choices(v, &o.name, &ids)),
            }
        }
        Method::GET | Method::DELETE => {
            let key = o
                .field(field)
                .filter(|f| f.external_id)
                .ok_or_else(not_external)?
                .name
                .clone();
            let hits = state.find_by(&o.name, &key, value);
            match hits.as_slice() {
                [] => Err(SfError::not_found()),
                [one] if *req.method == Method::GET => {
                    let rec = state.record(&o.name, one).ok_or_else(SfError::not_found)?;
                    Ok(axum::Json(render(&o, rec, None, v)).into_response())
                }
                [one] => {
                    let one = one.clone();
                    state.delete(&o.name, &one, actor)?;
                    Ok(StatusCode::NO_CONTENT.into_response())
                }
                _ => Ok(multiple_choices(v, &o.name, &hits)),
            }
        }
        _ => Err(method_not_allowed(req.method, "GET, HEAD, PATCH, DELETE")),
    }
}

/// 300: the URLs of the records that share an external id; nothing was written.
fn multiple_choices(v: &str, obj: &str, ids: &[String]) -> Response {
    let urls: Vec<String> = ids.iter().map(|id| record_url(v, obj, id)).collect();
    (StatusCode::MULTIPLE_CHOICES, axum::Json(urls)).into_response()
}

/// The batch size a query asked for in `Sforce-Query-Options`, kept to 200–2,000 as
/// documented, or the configured default.
fn batch_size(state: &SfState, headers: &HeaderMap) -> usize {
    headers
        .get("sforce-query-options")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.split(',').find_map(|opt| {
                let (k, n) = opt.split_once('=')?;
                k.trim()
                    .eq_ignore_ascii_case("batchSize")
                    .then(|| n.trim().parse::<usize>().ok())?
            })
        })
        .map(|n| n.clamp(200, 2000))
        .unwrap_or(state.config.query_batch_size.max(1))
}

fn query(state: &mut SfState, req: &Req<'_>) -> Result<Response, SfError> {
    let Some(q) = req.query.get("q").filter(|q| !q.trim().is_empty()) else {
        return Err(SfError::bad_request(ErrorItem::new(
            "MALFORMED_QUERY",
            "A query string has to be specified",
        )));
    };
    let rows = state.run_query(q, &req.version)?;
    let batch = batch_size(state, req.headers);
    if rows.records.len() <= batch {
        return Ok(axum::Json(json!({
            "totalSize": rows.total,
            "done": true,
            "records": rows.records,
        }))
        .into_response());
    }
    let locator = ids::make_id("01g", state.cursors.len() as u64 + 1);
    let first: Vec<Value> = rows.records[..batch].to_vec();
    state.cursors.insert(
        locator.clone(),
        Cursor {
            records: rows.records,
            batch,
            used_at: req.now,
        },
    );
    Ok(axum::Json(json!({
        "totalSize": rows.total,
        "done": false,
        "nextRecordsUrl": format!("/services/data/{}/query/{locator}-{batch}", req.version),
        "records": first,
    }))
    .into_response())
}

/// `GET /query/{locator}-{offset}`: the next batch of an open query.
fn query_more(state: &mut SfState, req: &Req<'_>, locator: &str) -> Result<Response, SfError> {
    let invalid = || {
        SfError::bad_request(ErrorItem::new(
            "INVALID_QUERY_LOCATOR",
            "invalid query locator",
        ))
    };
    let (loc, offset) = locator.rsplit_once('-').ok_or_else(invalid)?;
    let offset: usize = offset.parse().map_err(|_| invalid())?;
    let lifetime =
        Duration::from_std(state.config.query_locator_lifetime).unwrap_or(Duration::minutes(15));
    let expired = state
        .cursors
        .get(loc)
        .is_some_and(|c| req.now - c.used_at > lifetime);
    if expired {
        state.cursors.remove(loc);
    }
    let cursor = state.cursors.get_mut(loc).ok_or_else(invalid)?;
    if offset > cursor.records.len() {
        return Err(invalid());
    }
    cursor.used_at = req.now;
    let end = (offset + cursor.batch).min(cursor.records.len());
    let done = end == cursor.records.len();
    let mut body = json!({
        "totalSize": cursor.records.len(),
        "done": done,
        "records": cursor.records[offset..end].to_vec(),
    });
    if !done {
        body["nextRecordsUrl"] = json!(format!("/services/data/{}/query/{loc}-{end}", req.version));
    }
    Ok(axum::Json(body).into_response())
}

/// Get Updated / Get Deleted: ids changed in `[start, end)`, both truncated to the minute
/// (docs/salesforce.md, "Change feed (SystemModstamp)"), at most the replication window back.
fn replication(
    state: &SfState,
    req: &Req<'_>,
    obj: &str,
    deleted: bool,
) -> Result<Response, SfError> {
    let o = state.object_or_404(obj)?;
    let bad = |m: String| SfError::bad_request(ErrorItem::new("INVALID_REPLICATION_DATE", m));
    let param = |name: &str| -> Result<DateTime<Utc>, SfError> {
        let raw = req.query.get(name).ok_or_else(|| {
            SfError::bad_request(ErrorItem::new(
                "MISSING_ARGUMENT",
                format!("{name} was not specified"),
            ))
        })?;
        // An unencoded `+` in the offset arrives as a space.
        let raw = raw.replace(' ', "+");
        let t = parse_datetime(&raw)
            .ok_or_else(|| bad(format!("{name} is not a valid dateTime: {raw}")))?;
        Ok(t.duration_trunc(Duration::minutes(1)).unwrap_or(t))
    };
    let start = param("start")?;
    let end = param("end")?;
    if start > end {
        return Err(bad("The start date cannot be after the end date".into()));
    }
    let now = req.now;
    let window = Duration::from_std(state.config.replication_window).unwrap_or(Duration::days(30));
    if start < now - window {
        return Err(bad(format!(
            "startDate cannot be more than {} days ago",
            window.num_days()
        )));
    }
    let now_minute = now.duration_trunc(Duration::minutes(1)).unwrap_or(now);
    let end = end.min(now_minute);
    let in_range = |t: DateTime<Utc>| t >= start && t < end;
    if deleted {
        let hits: Vec<Value> = state
            .data
            .deleted
            .iter()
            .filter(|d| d.object == o.name && in_range(d.at))
            .map(|d| json!({"id": d.id, "deletedDate": sf_datetime(d.at)}))
            .collect();
        let earliest = state
            .data
            .deleted
            .iter()
            .filter(|d| d.object == o.name)
            .map(|d| d.at)
            .min()
            .unwrap_or(start)
            .max(now - window);
        return Ok(axum::Json(json!({
            "deletedRecords": hits,
            "earliestDateAvailable": sf_datetime(earliest),
            "latestDateCovered": sf_datetime(end),
        }))
        .into_response());
    }
    let ids: Vec<String> = state
        .table(&o.name)
        .filter(|r| {
            r.get("SystemModstamp")
                .or_else(|| r.get("LastModifiedDate"))
                .and_then(Value::as_str)
                .and_then(parse_datetime)
                .is_some_and(in_range)
        })
        .filter_map(|r| r.get("Id").and_then(Value::as_str).map(str::to_string))
        .collect();
    if ids.len() > state.config.replication_max_ids {
        return Err(SfError::bad_request(ErrorItem::new(
            "EXCEEDED_ID_LIMIT",
            format!(
                "more than {} ids changed in the range; narrow it",
                state.config.replication_max_ids
            ),
        )));
    }
    Ok(axum::Json(json!({"ids": ids, "latestDateCovered": sf_datetime(end)})).into_response())
}

/// The result of one record of a collection call.
enum Outcome {
    /// The per-record result; `existing` when the record existed before the call (an update,
    /// a delete), so a rollback still names it.
    Ok {
        result: Value,
        existing: bool,
    },
    Err(Option<String>, ErrorItem),
}

impl Outcome {
    fn new_record(result: Value) -> Outcome {
        Outcome::Ok {
            result,
            existing: false,
        }
    }

    fn existing_record(result: Value) -> Outcome {
        Outcome::Ok {
            result,
            existing: true,
        }
    }
}

fn first_item(e: SfError) -> ErrorItem {
    let mut item = e
        .items
        .into_iter()
        .next()
        .unwrap_or_else(|| ErrorItem::new("UNKNOWN_EXCEPTION", "unknown error"));
    // A collection reports a missing record as a bad reference, not as a 404.
    if item.code == "NOT_FOUND" {
        item = ErrorItem::new("INVALID_CROSS_REFERENCE_KEY", "invalid cross reference id");
    }
    item
}

/// Runs `op` for each of `n` records; with `all_or_none`, any failure restores the data as it
/// was and marks the others rolled back.
fn run_batch(
    state: &mut SfState,
    all_or_none: bool,
    n: usize,
    mut op: impl FnMut(&mut SfState, usize) -> Outcome,
) -> Vec<Value> {
    let snapshot = all_or_none.then(|| state.data.clone());
    let outcomes: Vec<Outcome> = (0..n).map(|i| op(state, i)).collect();
    let failed = outcomes.iter().any(|o| matches!(o, Outcome::Err(..)));
    if let (true, Some(snapshot)) = (failed, snapshot) {
        state.data = snapshot;
        return outcomes
            .into_iter()
            .map(|o| match o {
                Outcome::Err(id, e) => failure(id, &e),
                Outcome::Ok { result, existing } => {
                    // A rolled-back create has no id any more; an update keeps its own.
                    let id = existing
                        .then(|| result.get("id").and_then(Value::as_str).map(str::to_string))
                        .flatten();
                    failure(
                        id,
                        &ErrorItem::new(
                            "ALL_OR_NONE_OPERATION_ROLLED_BACK",
                            "Record rolled back because not all records were valid and the request was using AllOrNone header",
                        ),
                    )
                }
            })
            .collect();
    }
    outcomes
        .into_iter()
        .map(|o| match o {
            Outcome::Ok { result, .. } => result,
            Outcome::Err(id, e) => failure(id, &e),
        })
        .collect()
}

fn failure(id: Option<String>, e: &ErrorItem) -> Value {
    let mut v = json!({"success": false, "errors": [e.to_collection_json()]});
    if let Some(id) = id {
        v["id"] = json!(id);
    }
    v
}

/// The `{allOrNone, records}` body of a collection call.
fn collection_body(body: &Bytes) -> Result<(bool, Vec<Map<String, Value>>), SfError> {
    let body = json_object(body)?;
    let all_or_none = body
        .get("allOrNone")
        .map(|v| {
            v.as_bool()
                .ok_or_else(|| SfError::json_parser("allOrNone must be true or false"))
        })
        .transpose()?
        .unwrap_or(false);
    let records = body
        .get("records")
        .and_then(Value::as_array)
        .ok_or_else(|| SfError::json_parser("records must be a list of sObjects"))?;
    check_count(records.len())?;
    let records = records
        .iter()
        .map(|r| {
            r.as_object()
                .cloned()
                .ok_or_else(|| SfError::json_parser("each record must be a JSON object"))
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok((all_or_none, records))
}

fn check_count(n: usize) -> Result<(), SfError> {
    if n > COLLECTION_LIMIT {
        return Err(SfError::bad_request(ErrorItem::new(
            "EXCEEDED_ID_LIMIT",
            format!(
                "record limit reached. cannot submit more than {COLLECTION_LIMIT} records into this call"
            ),
        )));
    }
    Ok(())
}

/// `attributes.type` of a collection record; required, as documented.
fn record_type(r: &Map<String, Value>) -> Result<String, SfError> {
    r.get("attributes")
        .and_then(|a| a.get("type"))
        .and_then(Value::as_str)
        .map(str::to_string)
        .ok_or_else(|| {
            SfError::bad_request(ErrorItem::new(
                "INVALID_TYPE",
                "No SObject Type defined in the attributes of a record",
            ))
        })
}

/// sObject Collections: `POST` creates, `PATCH` updates (by `Id`), `DELETE ?ids=` deletes.
fn collections(state: &mut SfState, req: &Req<'_>, actor: Actor<'_>) -> Result<Response, SfError> {
    let results = match *req.method {
        Method::POST | Method::PATCH => {
            let create = *req.method == Method::POST;
            let (all_or_none, records) = collection_body(req.body)?;
            let types = records
                .iter()
                .map(record_type)
                .collect::<Result<Vec<_>, _>>()?;
            run_batch(state, all_or_none, records.len(), |state, i| {
                let r = &records[i];
                if create {
                    return match state.create(&types[i], r, actor) {
                        Ok(id) => {
                            Outcome::new_record(json!({"id": id, "success": true, "errors": []}))
                        }
                        Err(e) => Outcome::Err(None, first_item(e)),
                    };
                }
                let Some(id) = r.get("Id").and_then(Value::as_str).map(str::to_string) else {
                    return Outcome::Err(
                        None,
                        ErrorItem::new("MISSING_ARGUMENT", "Id not specified in an update call"),
                    );
                };
                let known_type = state
                    .object(&types[i])
                    .is_some_and(|o| row_id(&id, &o.key_prefix).is_some());
                if !known_type {
                    return Outcome::Err(
                        Some(id.clone()),
                        ErrorItem::new("MALFORMED_ID", format!("invalid record id: {id}"))
                            .with_fields(vec!["Id".into()]),
                    );
                }
                match state.update(&types[i], &id, r, actor) {
                    Ok(()) => Outcome::existing_record(
                        json!({"id": ids::canonical(&id).unwrap_or(id), "success": true, "errors": []}),
                    ),
                    Err(e) => Outcome::Err(Some(id), first_item(e)),
                }
            })
        }
        Method::DELETE => {
            let ids_param = req.query.get("ids").cloned().unwrap_or_default();
            let list: Vec<String> = ids_param
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_string)
                .collect();
            check_count(list.len())?;
            let all_or_none = req
                .query
                .get("allOrNone")
                .is_some_and(|v| v.eq_ignore_ascii_case("true"));
            run_batch(state, all_or_none, list.len(), |state, i| {
                let id = &list[i];
                let object = state
                    .schema
                    .iter()
                    .find(|o| row_id(id, &o.key_prefix).is_some())
                    .map(|o| o.name.clone());
                let Some(object) = object else {
                    return Outcome::Err(
                        Some(id.clone()),
                        ErrorItem::new("MALFORMED_ID", format!("invalid record id: {id}")),
                    );
                };
                match state.delete(&object, id, actor) {
                    Ok(()) => Outcome::existing_record(
                        json!({"id": ids::canonical(id).unwrap_or_else(|| id.clone()), "success": true, "errors": []}),
                    ),
                    Err(e) => Outcome::Err(Some(id.clone()), first_item(e)),
                }
            })
        }
        _ => return Err(method_not_allowed(req.method, "POST, PATCH, DELETE")),
    };
    Ok(axum::Json(results).into_response())
}

/// `PATCH /composite/sobjects/X/{ExternalIdField}`: upserts with `created` per record.
fn collection_upsert(
    state: &mut SfState,
    req: &Req<'_>,
    actor: Actor<'_>,
    obj: &str,
    field: &str,
) -> Result<Response, SfError> {
    let o = state.object_or_404(obj)?;
    let key = match o.field(field) {
        Some(f) if f.external_id => f.name.clone(),
        _ => {
            return Err(SfError::new(
                StatusCode::NOT_FOUND,
                "NOT_FOUND",
                format!("Provided external ID field does not exist or is not accessible: {field}"),
            ));
        }
    };
    let (all_or_none, records) = collection_body(req.body)?;
    for r in &records {
        let t = record_type(r)?;
        if !t.eq_ignore_ascii_case(&o.name) {
            return Err(SfError::bad_request(ErrorItem::new(
                "INVALID_TYPE",
                format!("The records must all be of type {}, not {t}", o.name),
            )));
        }
    }
    let v = req.version.clone();
    let results = run_batch(state, all_or_none, records.len(), |state, i| {
        let r = &records[i];
        let value = r
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(&key))
            .and_then(|(_, v)| v.as_str())
            .map(str::to_string);
        let Some(value) = value else {
            return Outcome::Err(
                None,
                ErrorItem::new("MISSING_ARGUMENT", format!("{key} not specified"))
                    .with_fields(vec![key.clone()]),
            );
        };
        match state.upsert(&o.name, &key, &value, r, false, actor) {
            Ok(Upserted::Created(id)) => Outcome::new_record(
                json!({"id": id, "success": true, "errors": [], "created": true}),
            ),
            Ok(Upserted::Updated(id)) => Outcome::existing_record(
                json!({"id": id, "success": true, "errors": [], "created": false}),
            ),
            Ok(Upserted::Ambiguous(ids)) => Outcome::Err(
                None,
                ErrorItem::new(
                    "DUPLICATE_EXTERNAL_ID",
                    format!(
                        "{key}: more than one record found for external id field: {:?}",
                        ids.iter()
                            .map(|id| record_url(&v, &o.name, id))
                            .collect::<Vec<_>>()
                    ),
                )
                .with_fields(vec![key.clone()]),
            ),
            Err(e) => Outcome::Err(None, first_item(e)),
        }
    });
    Ok(axum::Json(results).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_replace_versions_ids_and_keys() {
        let l = |p: &str| route_label(p).expect("a Salesforce path");
        assert_eq!(
            l("/services/data/v62.0/sobjects/Opportunity/0065g000000001AAA"),
            "/services/data/v{version}/sobjects/Opportunity/{id}"
        );
        assert_eq!(
            l("/services/data/v60.0/sobjects/Opportunity/Referral_Identifier__c/abc"),
            "/services/data/v{version}/sobjects/Opportunity/Referral_Identifier__c/{value}"
        );
        assert_eq!(
            l("/services/data/v62.0/query/"),
            "/services/data/v{version}/query"
        );
        assert_eq!(
            l("/services/data/v62.0/query/01g5g0000000001AAA-2000"),
            "/services/data/v{version}/query/{locator}"
        );
        assert_eq!(
            l("/services/data/v62.0/sobjects/Lead/updated/"),
            "/services/data/v{version}/sobjects/Lead/updated"
        );
        assert_eq!(route_label("/api/data/v9.2/accounts"), None);
    }

    #[test]
    fn releases_are_named_by_season() {
        assert_eq!(release_name(60), "Spring '24");
        assert_eq!(release_name(62), "Winter '25");
        assert_eq!(release_name(31), "Summer '14");
    }

    #[test]
    fn path_segments_are_percent_decoded() {
        assert_eq!(percent_decode("a%2Fb%20c"), "a/b c");
        assert_eq!(percent_decode("100%"), "100%");
    }
}
