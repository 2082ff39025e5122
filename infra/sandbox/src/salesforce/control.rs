//! The control routes under `/_sandbox/salesforce/`: play the org's humans (a seller editing
//! records, an admin changing the schema and the stages), read every row without a token, set
//! the API budget, and hand out the connected app's key so a connector can sign assertions.
//! No token is needed: the sandbox listens on loopback only. Errors use the REST API's shape.

use std::path::PathBuf;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, patch, post};
use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::errors::{ErrorItem, SfError};
use super::query::render;
use super::schema::{Field, FieldType, Stage};
use super::store::Actor;
use crate::app::App;

/// The version control responses put into record URLs.
const VERSION: &str = "v62.0";

pub fn routes() -> Router<App> {
    Router::new()
        .route("/_sandbox/salesforce/connected-app", get(connected_app))
        .route(
            "/_sandbox/salesforce/connected-app/files",
            post(write_key_files),
        )
        .route("/_sandbox/salesforce/expire-tokens", post(expire_tokens))
        .route("/_sandbox/salesforce/budget", get(budget).put(set_budget))
        .route("/_sandbox/salesforce/stages", get(stages).put(set_stages))
        .route("/_sandbox/salesforce/schema", get(schema))
        .route("/_sandbox/salesforce/schema/{sobject}", get(schema_object))
        .route(
            "/_sandbox/salesforce/schema/{sobject}/fields",
            post(add_field),
        )
        .route(
            "/_sandbox/salesforce/schema/{sobject}/fields/{field}",
            patch(change_field).delete(remove_field),
        )
        .route(
            "/_sandbox/salesforce/{sobject}",
            get(all_rows).post(human_create),
        )
        .route(
            "/_sandbox/salesforce/{sobject}/{id}",
            get(one_row).patch(human_edit).delete(human_delete),
        )
}

type Result<T> = std::result::Result<T, SfError>;

fn parse<T: serde::de::DeserializeOwned>(body: &Bytes) -> Result<T> {
    serde_json::from_slice(body).map_err(|e| SfError::json_parser(format!("Invalid body: {e}")))
}

fn bad(code: &'static str, message: impl Into<String>) -> SfError {
    SfError::bad_request(ErrorItem::new(code, message))
}

fn respond(r: Result<Response>) -> Response {
    r.unwrap_or_else(IntoResponse::into_response)
}

/// `GET /_sandbox/salesforce/connected-app`: what a connector needs for the JWT bearer grant.
async fn connected_app(State(app): State<App>) -> Response {
    let config = &app.config.salesforce;
    let state = app.salesforce();
    let keys = match &state.connected_app {
        Ok(k) => k.clone(),
        Err(e) => {
            return SfError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "UNKNOWN_EXCEPTION",
                e.clone(),
            )
            .into_response();
        }
    };
    let username = config.jwt_users.first().cloned().unwrap_or_default();
    let user_id = state.user_by_name(&username).map(|u| u.id.clone());
    let mut audiences = config.jwt_audiences.clone();
    if config.accept_base_url_audience {
        audiences.push(app.base_url.clone());
    }
    axum::Json(json!({
        "consumerKey": config.consumer_key,
        "consumerSecret": config.consumer_secret,
        "username": username,
        "userId": user_id,
        "sellerUsername": config.seller_user,
        "sellerUserId": state.seller_id(),
        "orgId": state.org_id,
        "loginUrl": app.base_url,
        "instanceUrl": app.base_url,
        "tokenUrl": format!("{}/services/oauth2/token", app.base_url),
        "audiences": audiences,
        "privateKeyPem": keys.private_key_pem,
        "certificatePem": keys.certificate_pem,
    }))
    .into_response()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Directory {
    directory: PathBuf,
}

/// `POST /_sandbox/salesforce/connected-app/files` `{directory}`: writes the key and
/// certificate as PEM files, for a connector that reads its key from disk.
async fn write_key_files(State(app): State<App>, body: Bytes) -> Response {
    respond((|| {
        let d: Directory = parse(&body)?;
        let keys = app
            .salesforce()
            .connected_app
            .clone()
            .map_err(|e| bad("UNKNOWN_EXCEPTION", e))?;
        let io = |e: std::io::Error| bad("UNKNOWN_EXCEPTION", format!("cannot write: {e}"));
        std::fs::create_dir_all(&d.directory).map_err(io)?;
        let cert = d.directory.join("salesforce-connected-app.crt.pem");
        std::fs::write(&cert, &keys.certificate_pem).map_err(io)?;
        let key = match &keys.private_key_pem {
            Some(pem) => {
                let p = d.directory.join("salesforce-connected-app.key.pem");
                std::fs::write(&p, pem).map_err(io)?;
                Some(p.display().to_string())
            }
            None => None,
        };
        Ok(axum::Json(json!({
            "certificateFile": cert.display().to_string(),
            "privateKeyFile": key,
        }))
        .into_response())
    })())
}

/// `POST /_sandbox/salesforce/expire-tokens`: every access token stops working, as when an
/// admin revokes sessions.
async fn expire_tokens(State(app): State<App>) -> Response {
    app.salesforce().sessions.clear();
    StatusCode::NO_CONTENT.into_response()
}

fn budget_json(app: &App) -> Value {
    let now = app.clock.now();
    let mut state = app.salesforce();
    let max = state.budget_max();
    let used = state.budget.used(now);
    json!({"max": max, "used": used, "remaining": max.saturating_sub(used)})
}

async fn budget(State(app): State<App>) -> Response {
    axum::Json(budget_json(&app)).into_response()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SetBudget {
    max: Option<u64>,
    used: Option<u64>,
}

/// `PUT /_sandbox/salesforce/budget` `{max?, used?}`: changes the daily allocation, or
/// pretends `used` calls were made just now (to spend the budget without making them).
async fn set_budget(State(app): State<App>, body: Bytes) -> Response {
    let b: SetBudget = match parse(&body) {
        Ok(b) => b,
        Err(e) => return e.into_response(),
    };
    {
        let now = app.clock.now();
        let mut state = app.salesforce();
        if let Some(max) = b.max {
            state.budget.max = Some(max);
        }
        if let Some(used) = b.used {
            state.budget.calls.clear();
            state.budget.calls.push_back((now, used));
        }
    }
    axum::Json(budget_json(&app)).into_response()
}

async fn stages(State(app): State<App>) -> Response {
    axum::Json(app.salesforce().stages.clone()).into_response()
}

/// `PUT /_sandbox/salesforce/stages` `[Stage]`: the admin's stage list. Opportunities keep the
/// `IsClosed`/`IsWon` they were saved with until their next write.
async fn set_stages(State(app): State<App>, body: Bytes) -> Response {
    respond((|| {
        let list: Vec<Stage> = parse(&body)?;
        if list.is_empty() {
            return Err(bad(
                "FIELD_INTEGRITY_EXCEPTION",
                "an org needs at least one stage",
            ));
        }
        for (i, s) in list.iter().enumerate() {
            if s.name.trim().is_empty() {
                return Err(bad("REQUIRED_FIELD_MISSING", "a stage needs a name"));
            }
            if s.is_won && !s.is_closed {
                return Err(bad(
                    "FIELD_INTEGRITY_EXCEPTION",
                    format!("stage '{}' is won but not closed", s.name),
                ));
            }
            if list[..i].iter().any(|o| o.name == s.name) {
                return Err(bad(
                    "DUPLICATE_VALUE",
                    format!("stage '{}' is listed twice", s.name),
                ));
            }
        }
        let mut state = app.salesforce();
        state.stages = list;
        state.sync_stage_records();
        Ok(axum::Json(state.stages.clone()).into_response())
    })())
}

async fn schema(State(app): State<App>) -> Response {
    axum::Json(app.salesforce().schema.clone()).into_response()
}

async fn schema_object(State(app): State<App>, Path(sobject): Path<String>) -> Response {
    respond(
        app.salesforce()
            .object_or_404(&sobject)
            .map(|o| axum::Json(o).into_response()),
    )
}

/// `POST /_sandbox/salesforce/schema/{sobject}/fields` with a field definition, e.g.
/// `{"name":"Alt_Referral_Id__c","type":"string","length":80,"externalId":true}`.
async fn add_field(State(app): State<App>, Path(sobject): Path<String>, body: Bytes) -> Response {
    respond((|| {
        let field: Field = parse(&body)?;
        let mut state = app.salesforce();
        let obj = state.object_or_404(&sobject)?;
        if obj.field(&field.name).is_some() {
            return Err(bad(
                "DUPLICATE_DEVELOPER_NAME",
                format!("{} already has a field named {}", obj.name, field.name),
            ));
        }
        let valid_name = field
            .name
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic())
            && field
                .name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !valid_name {
            return Err(bad(
                "INVALID_FIELD",
                format!("'{}' is not a valid API name", field.name),
            ));
        }
        if field.field_type == FieldType::Id {
            return Err(bad("INVALID_FIELD", "an object has exactly one Id field"));
        }
        for target in field.reference_to() {
            if state.object(target).is_none() {
                return Err(bad(
                    "INVALID_TYPE",
                    format!("referenceTo names no object: {target}"),
                ));
            }
        }
        let initial = field
            .default_value
            .clone()
            .unwrap_or(match field.field_type {
                FieldType::Boolean => Value::Bool(false),
                _ => Value::Null,
            });
        if let Some(table) = state.data.tables.get_mut(&obj.name) {
            for rec in table.values_mut() {
                rec.insert(field.name.clone(), initial.clone());
            }
        }
        if let Some(o) = state.schema.iter_mut().find(|o| o.name == obj.name) {
            o.fields.push(field.clone());
        }
        Ok((StatusCode::CREATED, axum::Json(field)).into_response())
    })())
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct FieldChange {
    required: Option<bool>,
    external_id: Option<bool>,
    unique: Option<bool>,
    read_only: Option<bool>,
    default_value: Option<Value>,
}

/// `PATCH /_sandbox/salesforce/schema/{sobject}/fields/{field}`
/// `{required?, externalId?, unique?, readOnly?, defaultValue?}`.
async fn change_field(
    State(app): State<App>,
    Path((sobject, field)): Path<(String, String)>,
    body: Bytes,
) -> Response {
    respond((|| {
        let change: FieldChange = parse(&body)?;
        let mut state = app.salesforce();
        let name = state.object_or_404(&sobject)?.name;
        let f = state
            .schema
            .iter_mut()
            .find(|o| o.name == name)
            .and_then(|o| o.field_mut(&field))
            .ok_or_else(SfError::not_found)?;
        if f.field_type == FieldType::Id {
            return Err(bad("INVALID_FIELD", "the Id field cannot be changed"));
        }
        if let Some(v) = change.required {
            f.required = v;
        }
        if let Some(v) = change.external_id {
            f.external_id = v;
        }
        if let Some(v) = change.unique {
            f.unique = v;
        }
        if let Some(v) = change.read_only {
            f.read_only = v;
        }
        if let Some(v) = change.default_value {
            f.default_value = (!v.is_null()).then_some(v);
        }
        Ok(axum::Json(f.clone()).into_response())
    })())
}

/// `DELETE /_sandbox/salesforce/schema/{sobject}/fields/{field}`: removes a custom field and
/// its values, as an admin deleting it would.
async fn remove_field(
    State(app): State<App>,
    Path((sobject, field)): Path<(String, String)>,
) -> Response {
    respond((|| {
        let mut state = app.salesforce();
        let obj = state.object_or_404(&sobject)?;
        let f = obj.field(&field).ok_or_else(SfError::not_found)?;
        if !f.is_custom() {
            return Err(bad(
                "INVALID_FIELD",
                format!("{} is a standard field and cannot be deleted", f.name),
            ));
        }
        let name = f.name.clone();
        if let Some(o) = state.schema.iter_mut().find(|o| o.name == obj.name) {
            o.fields.retain(|x| x.name != name);
        }
        if let Some(table) = state.data.tables.get_mut(&obj.name) {
            for rec in table.values_mut() {
                rec.remove(&name);
            }
        }
        Ok(StatusCode::NO_CONTENT.into_response())
    })())
}

/// `GET /_sandbox/salesforce/{sobject}`: every row, all fields, in creation order.
async fn all_rows(State(app): State<App>, Path(sobject): Path<String>) -> Response {
    let state = app.salesforce();
    respond(state.object_or_404(&sobject).map(|o| {
        let rows: Vec<Value> = state
            .table(&o.name)
            .map(|r| render(&o, r, None, VERSION))
            .collect();
        axum::Json(rows).into_response()
    }))
}

async fn one_row(State(app): State<App>, Path((sobject, id)): Path<(String, String)>) -> Response {
    let state = app.salesforce();
    respond((|| {
        let o = state.object_or_404(&sobject)?;
        let rec = state.record(&o.name, &id).ok_or_else(SfError::not_found)?;
        Ok(axum::Json(render(&o, rec, None, VERSION)).into_response())
    })())
}

fn body_object(body: &Bytes) -> Result<Map<String, Value>> {
    match parse::<Value>(body)? {
        Value::Object(m) => Ok(m),
        _ => Err(SfError::json_parser("the body must be a JSON object")),
    }
}

/// `POST /_sandbox/salesforce/{sobject}`: a seller creates a record (same rules as the API).
async fn human_create(
    State(app): State<App>,
    Path(sobject): Path<String>,
    body: Bytes,
) -> Response {
    let now = app.clock.now();
    let mut state = app.salesforce();
    respond((|| {
        let body = body_object(&body)?;
        let seller = state.seller_id();
        let id = state.create(
            &sobject,
            &body,
            Actor {
                user_id: &seller,
                now,
            },
        )?;
        let o = state.object_or_404(&sobject)?;
        let rec = state.record(&o.name, &id).ok_or_else(SfError::not_found)?;
        Ok((
            StatusCode::CREATED,
            axum::Json(render(&o, rec, None, VERSION)),
        )
            .into_response())
    })())
}

/// `PATCH /_sandbox/salesforce/{sobject}/{id}`: a seller's edit: same rules as the API, but
/// `LastModifiedById` is the seller and `SystemModstamp` moves, as a connector's poll sees it.
async fn human_edit(
    State(app): State<App>,
    Path((sobject, id)): Path<(String, String)>,
    body: Bytes,
) -> Response {
    let now = app.clock.now();
    let mut state = app.salesforce();
    respond((|| {
        let body = body_object(&body)?;
        let seller = state.seller_id();
        let o = state.object_or_404(&sobject)?;
        state.update(
            &o.name,
            &id,
            &body,
            Actor {
                user_id: &seller,
                now,
            },
        )?;
        let rec = state.record(&o.name, &id).ok_or_else(SfError::not_found)?;
        Ok(axum::Json(render(&o, rec, None, VERSION)).into_response())
    })())
}

/// `DELETE /_sandbox/salesforce/{sobject}/{id}`: a seller deletes a record.
async fn human_delete(
    State(app): State<App>,
    Path((sobject, id)): Path<(String, String)>,
) -> Response {
    let now = app.clock.now();
    let mut state = app.salesforce();
    respond((|| {
        let seller = state.seller_id();
        state.delete(
            &sobject,
            &id,
            Actor {
                user_id: &seller,
                now,
            },
        )?;
        Ok(StatusCode::NO_CONTENT.into_response())
    })())
}
