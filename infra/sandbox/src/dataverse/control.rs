//! Control routes under `/_sandbox/dataverse/`: a human seller's creates, edits and deletes
//! (recorded as [`SELLER_USER_ID`], tracked like any change), reading rows without a token,
//! schema changes, and the request budget. No token: the sandbox listens on loopback only.

use axum::body::Bytes;
use axum::extract::{Path, State as AxumState};
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};

use super::api::{json_body, json_response};
use super::error::DvError;
use super::path::{Key, parse_key, percent_decode};
use super::schema::{AlternateKey, Field, FieldType};
use super::store::{APP_USER_ID, Actor, SELLER_USER_ID};
use crate::app::App;

fn parse<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, DvError> {
    serde_json::from_slice(body).map_err(|e| DvError::bad_request(format!("Invalid body: {e}")))
}

fn respond(r: Result<Response, DvError>) -> Response {
    r.unwrap_or_else(IntoResponse::into_response)
}

/// `GET /_sandbox/dataverse/schema`: every table definition.
pub async fn schema(AxumState(app): AxumState<App>) -> Response {
    let tables = serde_json::to_value(&app.dataverse().tables).unwrap_or(Value::Null);
    json_response(StatusCode::OK, json!({ "tables": tables }))
}

/// `GET /_sandbox/dataverse/schema/{set}`.
pub async fn table(AxumState(app): AxumState<App>, Path(set): Path<String>) -> Response {
    respond((|| {
        let state = app.dataverse();
        let t = state.table(&set)?;
        Ok(json_response(
            StatusCode::OK,
            serde_json::to_value(t).unwrap_or(Value::Null),
        ))
    })())
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct TableChange {
    change_tracking: Option<bool>,
}

/// `PATCH /_sandbox/dataverse/schema/{set}` `{"changeTracking": false}`: plays a table without
/// change tracking (the real service cannot turn it off once on; the sandbox sets up either).
pub async fn change_table(
    AxumState(app): AxumState<App>,
    Path(set): Path<String>,
    body: Bytes,
) -> Response {
    respond((|| {
        let change: TableChange = parse(&body)?;
        let mut state = app.dataverse();
        state.table(&set)?;
        let Some(t) = state.table_def_mut(&set) else {
            return Err(DvError::not_found(format!("No table '{set}'.")));
        };
        if let Some(on) = change.change_tracking {
            t.change_tracking = on;
        }
        Ok(json_response(
            StatusCode::OK,
            serde_json::to_value(&*t).unwrap_or(Value::Null),
        ))
    })())
}

fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c == '_')
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
}

/// `POST /_sandbox/dataverse/schema/{set}/fields` with a [`Field`]: an admin adds a column
/// (existing rows get its default, or null).
pub async fn add_field(
    AxumState(app): AxumState<App>,
    Path(set): Path<String>,
    body: Bytes,
) -> Response {
    respond((|| {
        let raw: Value = parse(&body)?;
        if let Some(k) = raw
            .as_object()
            .and_then(|o| o.keys().find(|k| !Field::KEYS.contains(&k.as_str())))
        {
            return Err(DvError::bad_request(format!(
                "Invalid body: unknown field `{k}`, expected one of {}.",
                Field::KEYS.join(", ")
            )));
        }
        let field: Field = serde_json::from_value(raw)
            .map_err(|e| DvError::bad_request(format!("Invalid body: {e}")))?;
        if !valid_name(&field.name) {
            return Err(DvError::bad_request(format!(
                "'{}' is not a valid column name (lowercase letters, digits, '_').",
                field.name
            )));
        }
        let mut state = app.dataverse();
        let known: Vec<String> = state.tables.iter().map(|t| t.entity_set.clone()).collect();
        if let FieldType::Lookup { targets } = &field.kind {
            if targets.is_empty() {
                return Err(DvError::bad_request("A lookup needs at least one target."));
            }
            if let Some(t) = targets
                .iter()
                .find(|t| !known.contains(&t.table) && t.table != "systemusers")
            {
                return Err(DvError::bad_request(format!(
                    "The lookup target '{}' is not a table.",
                    t.table
                )));
            }
        }
        let table = state.table(&set)?;
        let clash = table.fields.iter().any(|f| {
            f.name == field.name
                || f.column() == field.column()
                || matches!(&field.kind, FieldType::Lookup { targets }
                    if targets.iter().any(|t| table.navigation(&t.navigation).is_some()))
        });
        if clash {
            return Err(DvError::bad_request(format!(
                "The table '{set}' already has a column '{}'.",
                field.name
            )));
        }
        let Some(t) = state.table_def_mut(&set) else {
            return Err(DvError::not_found(format!("No table '{set}'.")));
        };
        t.fields.push(field.clone());
        Ok(json_response(
            StatusCode::CREATED,
            serde_json::to_value(&field).unwrap_or(Value::Null),
        ))
    })())
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct FieldChange {
    required: Option<bool>,
    read_only: Option<bool>,
    max_length: Option<usize>,
}

/// `PATCH /_sandbox/dataverse/schema/{set}/fields/{name}` `{"required": true}`: an admin changes
/// a column's requirement level (or read-only flag, or maximum length).
pub async fn change_field(
    AxumState(app): AxumState<App>,
    Path((set, name)): Path<(String, String)>,
    body: Bytes,
) -> Response {
    respond((|| {
        let change: FieldChange = parse(&body)?;
        let mut state = app.dataverse();
        state.table(&set)?;
        let Some(f) = state.table_def_mut(&set).and_then(|t| t.field_mut(&name)) else {
            return Err(DvError::not_found(format!(
                "The table '{set}' has no column '{name}'."
            )));
        };
        if let Some(r) = change.required {
            f.required = r;
        }
        if let Some(r) = change.read_only {
            f.read_only = r;
        }
        if let Some(n) = change.max_length {
            match &mut f.kind {
                FieldType::String { max_length } | FieldType::Memo { max_length } => {
                    *max_length = n;
                }
                _ => {
                    return Err(DvError::bad_request(format!(
                        "'{name}' is not a text column; it has no maximum length."
                    )));
                }
            }
        }
        Ok(json_response(
            StatusCode::OK,
            serde_json::to_value(&*f).unwrap_or(Value::Null),
        ))
    })())
}

/// `POST /_sandbox/dataverse/schema/{set}/keys` `{"name":"…","columns":["…"]}`: defines an
/// alternate key, so rows can be addressed and upserted as `set(col='v')`.
pub async fn add_key(
    AxumState(app): AxumState<App>,
    Path(set): Path<String>,
    body: Bytes,
) -> Response {
    respond((|| {
        let key: AlternateKey = parse(&body)?;
        let mut state = app.dataverse();
        let table = state.table(&set)?;
        if key.columns.is_empty() {
            return Err(DvError::bad_request("A key needs at least one column."));
        }
        if let Some(c) = key.columns.iter().find(|c| {
            table
                .field(c)
                .is_none_or(|f| f.is_lookup() || *c == &table.primary_key)
        }) {
            return Err(DvError::bad_request(format!(
                "'{c}' is not a column of '{set}' that can be part of a key."
            )));
        }
        if let Some(t) = state.table_def_mut(&set) {
            t.alternate_keys.retain(|k| k.name != key.name);
            t.alternate_keys.push(key.clone());
        }
        Ok(json_response(
            StatusCode::CREATED,
            serde_json::to_value(&key).unwrap_or(Value::Null),
        ))
    })())
}

fn limits_json(app: &App) -> Value {
    let state = app.dataverse();
    json!({
        "requests": state.limits.requests,
        "windowSeconds": state.limits.window.as_secs(),
    })
}

/// `GET /_sandbox/dataverse/limits`.
pub async fn limits(AxumState(app): AxumState<App>) -> Response {
    json_response(StatusCode::OK, limits_json(&app))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct LimitsChange {
    requests: Option<u32>,
    window_seconds: Option<u64>,
}

/// `PATCH /_sandbox/dataverse/limits` `{"requests": 10, "windowSeconds": 300}`.
pub async fn change_limits(AxumState(app): AxumState<App>, body: Bytes) -> Response {
    respond((|| {
        let change: LimitsChange = parse(&body)?;
        {
            let mut state = app.dataverse();
            if let Some(n) = change.requests {
                state.limits.requests = n;
            }
            if let Some(s) = change.window_seconds {
                if s == 0 {
                    return Err(DvError::bad_request("windowSeconds must be positive."));
                }
                state.limits.window = std::time::Duration::from_secs(s);
            }
        }
        Ok(json_response(StatusCode::OK, limits_json(&app)))
    })())
}

/// `DELETE /_sandbox/dataverse/limits/usage`: forgets recent requests, ending any throttling.
pub async fn clear_usage(AxumState(app): AxumState<App>) -> Response {
    app.dataverse().limits.clear_usage();
    StatusCode::NO_CONTENT.into_response()
}

/// `GET /_sandbox/dataverse/users`: the `systemuserid`s writes are recorded with.
pub async fn users() -> Response {
    json_response(
        StatusCode::OK,
        json!({"application": APP_USER_ID.to_string(), "seller": SELLER_USER_ID.to_string()}),
    )
}

/// `GET /_sandbox/dataverse/opportunitycloses`: the close activities Win/Lose recorded.
pub async fn closes(AxumState(app): AxumState<App>) -> Response {
    let closes = app.dataverse().closes.clone();
    json_response(StatusCode::OK, json!({ "value": closes }))
}

/// A control path after `/_sandbox/dataverse/`: `set`, `set(id)`, or `set(id)/productlines`.
enum Target {
    Set(String),
    Row(String, Key),
    Lines(String, Key),
}

fn target(rest: &str) -> Result<Target, DvError> {
    let rest = percent_decode(rest)?;
    let (first, tail) = rest.split_once('/').unwrap_or((&rest, ""));
    let Some(open) = first.find('(') else {
        return match tail {
            "" => Ok(Target::Set(first.to_string())),
            _ => Err(DvError::not_found(format!("No control route '{rest}'."))),
        };
    };
    let inner = first[open + 1..]
        .strip_suffix(')')
        .ok_or_else(|| DvError::bad_request("Bad Request - Error in query syntax."))?;
    let set = first[..open].to_string();
    let key = parse_key(inner)?;
    match tail {
        "" => Ok(Target::Row(set, key)),
        "productlines" => Ok(Target::Lines(set, key)),
        _ => Err(DvError::not_found(format!("No control route '{rest}'."))),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Lines {
    total: f64,
}

/// Rows as a human sees and changes them in the CRM's UI.
pub async fn rows(
    AxumState(app): AxumState<App>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    respond(rows_inner(&app, &method, &uri, &headers, &body))
}

fn rows_inner(
    app: &App,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<Response, DvError> {
    let rest = uri
        .path()
        .strip_prefix("/_sandbox/dataverse/")
        .unwrap_or("");
    let seller = Actor::seller();
    let now = app.clock.now();
    let mut state = app.dataverse();
    let show = |state: &super::State, set: &str, id| -> Result<Value, DvError> {
        let t = state.table(set)?;
        let row = state
            .row(set, id)
            .ok_or_else(|| DvError::row_missing(&t.logical_name, id))?;
        Ok(state.represent(t, row, None, true))
    };
    let find = |state: &super::State, set: &str, key: &Key| {
        let logical = state.table(set)?.logical_name.clone();
        state
            .resolve(set, key)?
            .ok_or_else(|| DvError::row_missing(&logical, key))
    };
    match (target(rest)?, method.clone()) {
        (Target::Set(set), Method::GET) => {
            let t = state.table(&set)?;
            let value: Vec<Value> = state
                .rows(&set)
                .map(|r| state.represent(t, r, None, true))
                .collect();
            Ok(json_response(StatusCode::OK, json!({ "value": value })))
        }
        (Target::Set(set), Method::POST) => {
            let body = json_body(headers, body)?;
            let id = state.create(&set, None, &[], &body, seller, now)?;
            Ok(json_response(StatusCode::CREATED, show(&state, &set, id)?))
        }
        (Target::Row(set, key), Method::GET) => {
            let id = find(&state, &set, &key)?;
            Ok(json_response(StatusCode::OK, show(&state, &set, id)?))
        }
        (Target::Row(set, key), Method::PATCH) => {
            let body = json_body(headers, body)?;
            let id = find(&state, &set, &key)?;
            state.update(&set, id, &body, seller, now)?;
            Ok(json_response(StatusCode::OK, show(&state, &set, id)?))
        }
        (Target::Row(set, key), Method::DELETE) => {
            let id = find(&state, &set, &key)?;
            state.delete(&set, id, seller, now)?;
            Ok(StatusCode::NO_CONTENT.into_response())
        }
        (Target::Lines(set, key), Method::PUT | Method::POST) => {
            let lines: Lines = parse(body)?;
            let id = find(&state, &set, &key)?;
            state.set_lines_total(&set, id, lines.total, seller, now)?;
            Ok(json_response(StatusCode::OK, show(&state, &set, id)?))
        }
        (_, m) => Err(DvError::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "",
            format!("The control route does not support http method '{m}'."),
        )),
    }
}
