//! The Web API handler: one wildcard route under `/api/data/{version}/`, dispatched on the
//! parsed resource and the method.

use axum::body::Bytes;
use axum::extract::State as AxumState;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value, json};
use uuid::Uuid;

use super::error::DvError;
use super::path::{Key, Resource, VERSIONS, parse_resource, percent_decode, split_api_path};
use super::query::{Options, Prefer, Read, count, read_collection};
use super::store::{Actor, BUSINESS_UNIT_ID, ORGANIZATION_ID, Row};
use crate::app::App;
use crate::entra::Subject;

/// The caller of one request, as the budget and `_modifiedby_value` see it.
struct Caller {
    key: String,
    actor: Actor,
}

fn caller(app: &App, headers: &HeaderMap) -> Result<Caller, DvError> {
    match app.authenticate(headers, &[&app.base_url]) {
        Ok(Subject::App { client_id }) => {
            let user = app.dataverse().user_id(None);
            Ok(Caller {
                key: format!("app:{client_id}"),
                actor: Actor { user, human: false },
            })
        }
        Ok(Subject::User { username, .. }) => {
            let user = app.dataverse().user_id(Some(&username));
            Ok(Caller {
                key: format!("user:{}", username.to_ascii_lowercase()),
                actor: Actor { user, human: false },
            })
        }
        Err(why) => Err(DvError::unauthorized(
            why.to_string(),
            format!(
                "Bearer authorization_uri={}/common/oauth2/authorize, resource_id={}/",
                app.base_url, app.base_url
            ),
        )),
    }
}

/// Every request to `/api/data/…`.
pub async fn handle(
    AxumState(app): AxumState<App>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let mut resp = serve(&app, &method, &uri, &headers, &body).unwrap_or_else(|(e, remaining)| {
        let mut r = e.into_response();
        if let Some(n) = remaining {
            r.headers_mut()
                .insert("x-ms-ratelimit-burst-remaining-xrm-requests", n.into());
        }
        r
    });
    resp.headers_mut()
        .insert("OData-Version", HeaderValue::from_static("4.0"));
    resp
}

type Failure = (DvError, Option<u32>);

fn serve(
    app: &App,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<Response, Failure> {
    let (version, rest) = split_api_path(uri.path()).unwrap_or(("", ""));
    if !VERSIONS.contains(&version) {
        return Err((
            DvError::not_found(format!("Resource not found for the segment '{version}'.")),
            None,
        ));
    }
    let resource = percent_decode(rest)
        .and_then(|r| parse_resource(&r))
        .map_err(|e| (e, None))?;
    let who = caller(app, headers).map_err(|e| (e, None))?;
    let now = app.clock.now();
    let remaining = app
        .dataverse()
        .limits
        .admit(&who.key, now)
        .map_err(|e| (e, None))?;
    let ctx = Ctx {
        app,
        version,
        headers,
        query: uri.query(),
        actor: who.actor,
    };
    let mut resp = dispatch(&ctx, method, resource, body).map_err(|e| (e, Some(remaining)))?;
    resp.headers_mut().insert(
        "x-ms-ratelimit-burst-remaining-xrm-requests",
        remaining.into(),
    );
    Ok(resp)
}

/// One API request as the handlers see it.
pub(super) struct Ctx<'a> {
    pub(super) app: &'a App,
    pub(super) version: &'a str,
    pub(super) headers: &'a HeaderMap,
    pub(super) query: Option<&'a str>,
    actor: Actor,
}

impl Ctx<'_> {
    /// `{base}/api/data/{version}`, for `@odata.context` and `OData-EntityId`.
    pub(super) fn api(&self) -> String {
        format!("{}/api/data/{}", self.app.base_url, self.version)
    }

    fn entity_url(&self, set: &str, id: Uuid) -> String {
        format!("{}/{set}({id})", self.api())
    }
}

pub(super) fn method_not_allowed(method: &Method) -> DvError {
    DvError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "",
        format!("The requested resource does not support http method '{method}'."),
    )
}

fn dispatch(
    ctx: &Ctx<'_>,
    method: &Method,
    resource: Resource,
    body: &[u8],
) -> Result<Response, DvError> {
    match (resource, method.clone()) {
        (Resource::Collection(set), Method::GET) => list(ctx, &set),
        (Resource::Collection(set), Method::POST) => create(ctx, &set, body),
        (Resource::Count(set), Method::GET) => {
            let options = Options::parse(ctx.query)?;
            let n = count(&ctx.app.dataverse(), &set, &options)?;
            Ok((
                [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
                n.to_string(),
            )
                .into_response())
        }
        (Resource::Row(set, key), Method::GET) => get_row(ctx, &set, &key),
        (Resource::Row(set, key), Method::PATCH) => patch_row(ctx, &set, &key, body),
        (Resource::Row(set, key), Method::DELETE) => delete_row(ctx, &set, &key),
        (Resource::Action(name), Method::POST) => {
            let body = json_body(ctx.headers, body)?;
            let now = ctx.app.clock.now();
            ctx.app.dataverse().close_opportunity(
                name == "WinOpportunity",
                &Value::Object(body),
                ctx.actor,
                now,
            )?;
            Ok(StatusCode::NO_CONTENT.into_response())
        }
        (Resource::WhoAmI, Method::GET) => Ok(json_response(
            StatusCode::OK,
            json!({
                "@odata.context": format!("{}/$metadata#Microsoft.Dynamics.CRM.WhoAmIResponse", ctx.api()),
                "BusinessUnitId": BUSINESS_UNIT_ID.to_string(),
                "UserId": ctx.actor.user.to_string(),
                "OrganizationId": ORGANIZATION_ID.to_string(),
            }),
        )),
        (Resource::Metadata(path), m) => super::metadata::handle(ctx, &m, &path, body),
        (Resource::Unsupported(what), _) => Err(DvError::not_implemented(&format!("'{what}'"))),
        (_, m) => Err(method_not_allowed(&m)),
    }
}

pub fn json_response(status: StatusCode, body: Value) -> Response {
    let mut resp = (status, axum::Json(body)).into_response();
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json; odata.metadata=minimal"),
    );
    resp
}

/// A write body: a JSON object, sent as JSON.
pub fn json_body(headers: &HeaderMap, body: &[u8]) -> Result<Map<String, Value>, DvError> {
    if let Some(ct) = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
    {
        let mime = ct.split(';').next().unwrap_or("").trim();
        if !mime.eq_ignore_ascii_case("application/json") {
            return Err(DvError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "",
                format!("The content type '{ct}' is not supported; send application/json."),
            ));
        }
    }
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(m)) => Ok(m),
        Ok(_) => Err(DvError::bad_request(
            "The request body must be a JSON object.",
        )),
        Err(e) => Err(DvError::bad_request(format!(
            "The request body is not valid JSON: {e}"
        ))),
    }
}

fn applied(resp: &mut Response, prefs: &[String]) {
    if prefs.is_empty() {
        return;
    }
    if let Ok(v) = HeaderValue::from_str(&prefs.join(",")) {
        resp.headers_mut().insert("Preference-Applied", v);
    }
}

fn list(ctx: &Ctx<'_>, set: &str) -> Result<Response, DvError> {
    let options = Options::parse(ctx.query)?;
    let prefer = Prefer::parse(ctx.headers)?;
    let answer = read_collection(
        &ctx.app.dataverse(),
        &Read {
            base: &ctx.app.base_url,
            version: ctx.version,
            set,
            options: &options,
            prefer: &prefer,
            now: ctx.app.clock.now(),
        },
    )?;
    let mut resp = json_response(StatusCode::OK, answer.body);
    applied(&mut resp, &answer.applied);
    Ok(resp)
}

/// `If-Match` / `If-None-Match` values; `null` (sent by every documented client,
/// docs/dataverse.md, "Headers") means none.
fn condition(headers: &HeaderMap, name: header::HeaderName) -> Option<String> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|v| !v.is_empty() && !v.eq_ignore_ascii_case("null"))
        .map(str::to_string)
}

fn etag_matches(condition: &str, row: &Row) -> bool {
    let current = row.etag();
    let bare = |e: &str| {
        e.trim()
            .trim_start_matches("W/")
            .trim_matches('"')
            .to_string()
    };
    condition
        .split(',')
        .any(|c| c.trim() == "*" || bare(c) == bare(&current))
}

/// A row as a single-entity response body, with its `@odata.context`.
fn entity_body(ctx: &Ctx<'_>, set: &str, id: Uuid, options: &Options, prefer: &Prefer) -> Value {
    let state = ctx.app.dataverse();
    let (Ok(table), Some(row)) = (state.table(set), state.row(set, id)) else {
        return Value::Null;
    };
    let mut v = state.represent(
        table,
        row,
        options.select.as_deref(),
        prefer.lookup_annotations(),
    );
    let select = options
        .select
        .as_ref()
        .map(|s| format!("({})", s.join(",")))
        .unwrap_or_default();
    if let Value::Object(m) = &mut v {
        let mut out = Map::new();
        out.insert(
            "@odata.context".into(),
            Value::String(format!("{}/$metadata#{set}{select}/$entity", ctx.api())),
        );
        out.extend(std::mem::take(m));
        *m = out;
    }
    v
}

fn written(
    ctx: &Ctx<'_>,
    set: &str,
    id: Uuid,
    created: bool,
    options: &Options,
    prefer: &Prefer,
) -> Response {
    if prefer.return_representation {
        let status = if created {
            StatusCode::CREATED
        } else {
            StatusCode::OK
        };
        let mut resp = json_response(status, entity_body(ctx, set, id, options, prefer));
        applied(&mut resp, &["return=representation".to_string()]);
        return resp;
    }
    let mut resp = StatusCode::NO_CONTENT.into_response();
    if let Ok(v) = HeaderValue::from_str(&ctx.entity_url(set, id)) {
        resp.headers_mut().insert("OData-EntityId", v);
    }
    resp
}

fn check_select(ctx: &Ctx<'_>, set: &str, options: &Options) -> Result<(), DvError> {
    let state = ctx.app.dataverse();
    let table = state.table(set)?;
    options.check_columns(table)
}

fn create(ctx: &Ctx<'_>, set: &str, body: &[u8]) -> Result<Response, DvError> {
    let options = Options::parse(ctx.query)?;
    let prefer = Prefer::parse(ctx.headers)?;
    check_select(ctx, set, &options)?;
    let body = json_body(ctx.headers, body)?;
    let now = ctx.app.clock.now();
    let id = ctx
        .app
        .dataverse()
        .create(set, None, &[], &body, ctx.actor, now)?;
    Ok(written(ctx, set, id, true, &options, &prefer))
}

fn get_row(ctx: &Ctx<'_>, set: &str, key: &Key) -> Result<Response, DvError> {
    let options = Options::parse(ctx.query)?;
    let prefer = Prefer::parse(ctx.headers)?;
    if options.expand {
        return Err(DvError::not_implemented("$expand"));
    }
    check_select(ctx, set, &options)?;
    let (id, etag) = {
        let state = ctx.app.dataverse();
        let logical = state.table(set)?.logical_name.clone();
        let id = state
            .resolve(set, key)?
            .ok_or_else(|| DvError::row_missing(&logical, key))?;
        let row = state
            .row(set, id)
            .ok_or_else(|| DvError::row_missing(&logical, id))?;
        if let Some(c) = condition(ctx.headers, header::IF_NONE_MATCH)
            && etag_matches(&c, row)
        {
            let mut resp = StatusCode::NOT_MODIFIED.into_response();
            if let Ok(v) = HeaderValue::from_str(&row.etag()) {
                resp.headers_mut().insert(header::ETAG, v);
            }
            return Ok(resp);
        }
        (id, row.etag())
    };
    let mut resp = json_response(StatusCode::OK, entity_body(ctx, set, id, &options, &prefer));
    if let Ok(v) = HeaderValue::from_str(&etag) {
        resp.headers_mut().insert(header::ETAG, v);
    }
    if let Some(a) = &prefer.annotations {
        applied(&mut resp, &[format!("odata.include-annotations=\"{a}\"")]);
    }
    Ok(resp)
}

/// Applies `If-Match` (`*` → the row must exist; an etag → it must be current) and
/// `If-None-Match: *` (the row must not exist).
fn preconditions(
    headers: &HeaderMap,
    logical: &str,
    key: &Key,
    row: Option<&Row>,
) -> Result<(), DvError> {
    if let Some(c) = condition(headers, header::IF_MATCH) {
        let Some(row) = row else {
            return Err(DvError::row_missing(logical, key));
        };
        if !etag_matches(&c, row) {
            return Err(DvError::version_mismatch());
        }
    }
    if let Some(c) = condition(headers, header::IF_NONE_MATCH)
        && c == "*"
        && row.is_some()
    {
        return Err(DvError::duplicate());
    }
    Ok(())
}

/// PATCH: update, or create when the row is missing (upsert), under the preconditions.
fn patch_row(ctx: &Ctx<'_>, set: &str, key: &Key, body: &[u8]) -> Result<Response, DvError> {
    let options = Options::parse(ctx.query)?;
    let prefer = Prefer::parse(ctx.headers)?;
    check_select(ctx, set, &options)?;
    let mut body = json_body(ctx.headers, body)?;
    let now = ctx.app.clock.now();
    let (id, created) = {
        let mut state = ctx.app.dataverse();
        let logical = state.table(set)?.logical_name.clone();
        let existing = state.resolve(set, key)?;
        preconditions(
            ctx.headers,
            &logical,
            key,
            existing.and_then(|id| state.row(set, id)),
        )?;
        match (existing, key) {
            (Some(id), Key::Alternate(pairs)) => {
                // Key columns are dropped on update (docs/dataverse.md, "Upsert and alternate
                // keys").
                for (k, _) in pairs {
                    body.remove(k);
                }
                state.update(set, id, &body, ctx.actor, now)?;
                (id, false)
            }
            (Some(id), Key::Id(_)) => {
                state.update(set, id, &body, ctx.actor, now)?;
                (id, false)
            }
            (None, Key::Id(id)) => (
                state.create(set, Some(*id), &[], &body, ctx.actor, now)?,
                true,
            ),
            (None, Key::Alternate(pairs)) => {
                (state.create(set, None, pairs, &body, ctx.actor, now)?, true)
            }
        }
    };
    Ok(written(ctx, set, id, created, &options, &prefer))
}

fn delete_row(ctx: &Ctx<'_>, set: &str, key: &Key) -> Result<Response, DvError> {
    let now = ctx.app.clock.now();
    let mut state = ctx.app.dataverse();
    let logical = state.table(set)?.logical_name.clone();
    let id = state
        .resolve(set, key)?
        .ok_or_else(|| DvError::row_missing(&logical, key))?;
    preconditions(ctx.headers, &logical, key, state.row(set, id))?;
    state.delete(set, id, ctx.actor, now)?;
    Ok(StatusCode::NO_CONTENT.into_response())
}
