//! The Referrals API at `/v1.0/engagements/referrals`.

use std::collections::HashMap;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use cosell_odata::{Filter, OrderBy};
use cosell_shared::referral::{Status, Substatus, TransitionRules, check_transition};
use serde_json::{Map, Value, json};

use super::errors::PcError;
use super::{Owner, PartnerCenter, Stored, parse_time, str_at};
use crate::app::App;
use crate::clock::pc_timestamp;
use crate::config::{REFERRALS_AUDIENCE, ReferralRole};
use crate::entra::Subject;

/// Fields the service owns: a client cannot set them on create or change them on update.
const SERVER_FIELDS: &[&str] = &[
    "id",
    "engagementId",
    "eTag",
    "createdDateTime",
    "updatedDateTime",
    "acceptedDateTime",
    "closedDateTime",
    "expirationDateTime",
    "direction",
    "organizationId",
    "organizationName",
    "links",
];

/// The sandbox's own partner organisation.
pub const PARTNER_ORG_ID: &str = "5b3c5f6e-1f0a-4d3e-9c52-0a3a1f3c0d11";
pub const PARTNER_ORG_NAME: &str = "Sandbox Partner";
/// How Microsoft's own referrals name their organisation.
pub const MICROSOFT_ORG_ID: &str = "msft";
pub const MICROSOFT_ORG_NAME: &str = "Microsoft";

#[derive(Debug, Clone)]
struct Caller {
    /// `Some(email)` for a Referral User, who only sees referrals whose team includes them.
    restricted_to: Option<String>,
}

fn caller(app: &App, headers: &HeaderMap) -> Result<Caller, PcError> {
    match app.authenticate(headers, &[REFERRALS_AUDIENCE]) {
        Err(why) => Err(PcError::unauthenticated(why.to_string())),
        Ok(Subject::App { .. }) => Err(PcError::access_denied(
            "The Referrals API requires an App+User token; app-only tokens are not supported.",
        )),
        Ok(Subject::User {
            username,
            role,
            amr,
            ..
        }) => {
            app.require_mfa(&amr)?;
            Ok(Caller {
                restricted_to: (role == ReferralRole::ReferralUser).then_some(username),
            })
        }
    }
}

fn writer(app: &App, headers: &HeaderMap) -> Result<(), PcError> {
    let c = caller(app, headers)?;
    if c.restricted_to.is_some() {
        return Err(PcError::access_denied(
            "The user does not have the Referral Admin role required to change referrals.",
        ));
    }
    Ok(())
}

fn visible(caller: &Caller, r: &Stored) -> bool {
    match &caller.restricted_to {
        None => true,
        Some(email) => r
            .doc
            .get("team")
            .and_then(Value::as_array)
            .is_some_and(|team| {
                team.iter().any(|m| {
                    m.get("email")
                        .and_then(Value::as_str)
                        .is_some_and(|e| e.eq_ignore_ascii_case(email))
                })
            }),
    }
}

fn referral_response(status: StatusCode, doc: &Map<String, Value>) -> Response {
    with_etag(
        (status, axum::Json(Value::Object(doc.clone()))).into_response(),
        doc,
    )
}

fn with_etag(mut resp: Response, doc: &Map<String, Value>) -> Response {
    if let Ok(v) = HeaderValue::from_str(str_at(doc, "eTag")) {
        resp.headers_mut().insert(header::ETAG, v);
    }
    resp
}

fn parse_object(body: &[u8]) -> Result<Map<String, Value>, PcError> {
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(m)) => Ok(m),
        Ok(_) => Err(PcError::invalid("The request body must be a JSON object.")),
        Err(e) => Err(PcError::invalid(format!(
            "The request body is not valid JSON: {e}"
        ))),
    }
}

fn require_json(headers: &HeaderMap, also: &[&str]) -> Result<(), PcError> {
    let ct = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let mime = ct.split(';').next().unwrap_or("").trim();
    if mime.eq_ignore_ascii_case("application/json")
        || also.iter().any(|a| mime.eq_ignore_ascii_case(a))
    {
        Ok(())
    } else {
        Err(PcError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "invalidRequest",
            format!("Content-Type '{ct}' is not supported; send application/json."),
        ))
    }
}

/// The consent member whose `false` makes a deal private.
const CONSENT_TO_SHARE: &str = "consentToShareReferralWithMicrosoftSellers";

/// Whether `target` invites Microsoft: what makes a referral posted into an engagement the
/// connected one.
fn targets_microsoft(doc: &Map<String, Value>) -> bool {
    doc.get("target")
        .and_then(Value::as_array)
        .is_some_and(|t| {
            t.iter().any(|t| {
                t.get("type").and_then(Value::as_str) == Some("BusinessProfileLocation")
                    && t.get("id").and_then(Value::as_str) == Some("msft")
            })
        })
}

/// Create-time (and, for the partner's outgoing referrals, update-time) validation: the rules
/// Partner Center enforces on what the partner shares.
fn validate(doc: &Map<String, Value>) -> Result<(), PcError> {
    let at = |path: &[&str]| -> Option<&Value> {
        let mut v = doc.get(path[0])?;
        for p in &path[1..] {
            v = v.get(p)?;
        }
        Some(v)
    };
    if at(&["name"])
        .and_then(Value::as_str)
        .is_none_or(|n| n.trim().is_empty())
    {
        return Err(PcError::invalid_field("name", "name is required."));
    }
    let country = at(&["customerProfile", "address", "country"]).and_then(Value::as_str);
    match country {
        None | Some("") => {
            return Err(PcError::invalid_field(
                "customerProfile.address.country",
                "customerProfile.address.country is required: an ISO 3166 alpha-2 country code.",
            ));
        }
        Some(c) if c.len() != 2 || isocountry::CountryCode::for_alpha2(c).is_err() => {
            return Err(PcError::invalid_field(
                "customerProfile.address.country",
                format!(
                    "customerProfile.address.country '{c}' is not an ISO 3166 alpha-2 country code."
                ),
            ));
        }
        Some(_) => {}
    }
    let shared_with_microsoft = at(&["consent", CONSENT_TO_SHARE])
        .and_then(Value::as_bool)
        .unwrap_or(false)
        || targets_microsoft(doc);
    let has_solution = at(&["details", "requirements", "solutions"])
        .and_then(Value::as_array)
        .is_some_and(|s| !s.is_empty());
    if shared_with_microsoft && !has_solution {
        return Err(PcError::invalid_field(
            "details.requirements.solutions",
            "details.requirements.solutions: at least one solution is required on a referral shared with Microsoft.",
        ));
    }
    let help = at(&["inviteContext", "assistanceRequestCode"])
        .and_then(Value::as_str)
        .is_some_and(|c| !c.is_empty() && !c.eq_ignore_ascii_case("Unknown"));
    let has_contact = at(&["customerProfile", "team"])
        .and_then(Value::as_array)
        .is_some_and(|t| !t.is_empty());
    if help && !has_contact {
        return Err(PcError::invalid_field(
            "customerProfile.team",
            "customerProfile.team: a customer contact is required when inviteContext.assistanceRequestCode asks Microsoft for help.",
        ));
    }
    Ok(())
}

fn status_pair(doc: &Map<String, Value>) -> (Status, Substatus) {
    (
        str_at(doc, "status").parse().unwrap_or(Status::None),
        str_at(doc, "substatus").parse().unwrap_or(Substatus::None),
    )
}

/// The checks every update shares: the referral is not closed, the status change is legal, no
/// server field moved, and the partner's own referrals still pass validation.
fn check_update(
    app: &App,
    old: &Stored,
    new: &mut Map<String, Value>,
    keep_server_fields: bool,
    won_min_age: Duration,
) -> Result<(), PcError> {
    let rules = TransitionRules {
        allow_error_substatus: app.config.allow_error_substatus,
    };
    let from = status_pair(&old.doc);
    if from.0.is_terminal() {
        return Err(PcError::invalid(format!(
            "The referral is closed ({}/{}); no further changes are allowed.",
            str_at(&old.doc, "status"),
            str_at(&old.doc, "substatus")
        )));
    }
    for f in SERVER_FIELDS {
        if keep_server_fields {
            match old.doc.get(*f) {
                Some(v) => new.insert((*f).to_string(), v.clone()),
                None => new.remove(*f),
            };
        } else if new.get(*f) != old.doc.get(*f) {
            return Err(PcError::invalid_field(f, format!("{f} is read-only.")));
        }
    }
    // A replacement body that leaves the status out keeps the current one.
    for field in ["status", "substatus"] {
        if !new.contains_key(field)
            && let Some(v) = old.doc.get(field)
        {
            new.insert(field.into(), v.clone());
        }
    }
    let to = status_pair(new);
    check_transition((&from.0, &from.1), (&to.0, &to.1), &rules)
        .map_err(|e| PcError::invalid_field("status", e.to_string()))?;
    check_visibility(&old.doc, new)?;
    let outgoing = str_at(&old.doc, "direction") == "Outgoing";
    if outgoing && matches!(to, (Status::Closed, Substatus::Won)) {
        check_won_age(&old.doc, won_min_age, app.clock.now())?;
    }
    if outgoing {
        validate(new)?;
    }
    Ok(())
}

/// A deal may become more visible but never less (Partner Center: visibility cannot be reverted
/// once visible; a private deal can still be upgraded). So `type` may go from `Independent` to
/// `Shared` and the share consent from false to true, not back. A body that leaves either out
/// keeps what the referral has, as it does for the status.
fn check_visibility(old: &Map<String, Value>, new: &mut Map<String, Value>) -> Result<(), PcError> {
    if new.get("type").is_none_or(Value::is_null)
        && let Some(v) = old.get("type")
    {
        new.insert("type".into(), v.clone());
    }
    let (was, now) = (str_at(old, "type"), str_at(new, "type"));
    if was.eq_ignore_ascii_case("Shared") && !now.eq_ignore_ascii_case("Shared") {
        return Err(PcError::invalid_field(
            "type",
            format!(
                "type cannot change from Shared to {now}: a deal shared with Microsoft stays shared."
            ),
        ));
    }
    let target = "consent.consentToShareReferralWithMicrosoftSellers";
    let was_shared = old
        .get("consent")
        .and_then(|c| c.get(CONSENT_TO_SHARE))
        .and_then(Value::as_bool)
        == Some(true);
    if !was_shared {
        return Ok(());
    }
    let consent = new
        .entry("consent")
        .or_insert_with(|| Value::Object(Map::new()));
    if consent.is_null() {
        *consent = Value::Object(Map::new());
    }
    let Some(consent) = consent.as_object_mut() else {
        return Err(PcError::invalid_field(
            "consent",
            "consent must be an object.",
        ));
    };
    match consent.get(CONSENT_TO_SHARE) {
        None | Some(Value::Null) => {
            consent.insert(CONSENT_TO_SHARE.into(), Value::Bool(true));
            Ok(())
        }
        Some(Value::Bool(true)) => Ok(()),
        Some(_) => Err(PcError::invalid_field(
            target,
            format!(
                "{target} cannot go back to false: a deal visible to Microsoft's sellers cannot be made private again."
            ),
        )),
    }
}

/// Partner Center may refuse a deal registration marked Won too soon after the deal was made;
/// the sandbox does when `won_min_age` is set.
fn check_won_age(
    doc: &Map<String, Value>,
    won_min_age: Duration,
    now: DateTime<Utc>,
) -> Result<(), PcError> {
    if won_min_age.is_zero() {
        return Ok(());
    }
    let Some(created) = parse_time(str_at(doc, "createdDateTime")) else {
        // Without a creation time there is no age to hold against the deal.
        return Ok(());
    };
    let allowed_from = chrono::Duration::from_std(won_min_age)
        .ok()
        .and_then(|age| created.checked_add_signed(age));
    if allowed_from.is_some_and(|t| now >= t) {
        return Ok(());
    }
    let hours = won_min_age.as_secs_f64() / 3600.0;
    let from = allowed_from.map_or_else(|| "never".to_string(), pc_timestamp);
    Err(PcError::invalid_field(
        "substatus",
        format!(
            "Won is refused in the first {hours} hours after a deal is created: this referral was created at {}, Closed/Won is accepted from {from}.",
            str_at(doc, "createdDateTime")
        ),
    ))
}

fn etag_matches(given: &str, current: &str) -> bool {
    let norm = |s: &str| {
        s.trim()
            .trim_start_matches("W/")
            .trim_matches('"')
            .to_string()
    };
    given.trim() == "*" || norm(given) == norm(current)
}

pub async fn create(State(app): State<App>, headers: HeaderMap, body: Bytes) -> Response {
    match create_inner(&app, &headers, &body) {
        Ok(r) => r,
        Err(e) => e.into_response(),
    }
}

fn create_inner(app: &App, headers: &HeaderMap, body: &[u8]) -> Result<Response, PcError> {
    writer(app, headers)?;
    require_json(headers, &[])?;
    let mut doc = parse_object(body)?;
    validate(&doc)?;
    app.expire_referrals();
    let now = app.clock.now();
    let mut pc = app.partner_center();
    let (engagement, owner) = match doc.get("engagementId") {
        None | Some(Value::Null) => (uuid::Uuid::new_v4().to_string(), Owner::Partner),
        Some(Value::String(e)) if e.is_empty() => {
            (uuid::Uuid::new_v4().to_string(), Owner::Partner)
        }
        Some(Value::String(e)) => (connected_engagement(&pc, e, &doc)?, Owner::Microsoft),
        Some(_) => {
            return Err(PcError::invalid_field(
                "engagementId",
                "engagementId must be a string.",
            ));
        }
    };
    doc.retain(|k, _| !k.starts_with("@odata."));
    for f in SERVER_FIELDS {
        doc.remove(*f);
    }
    let id = uuid::Uuid::new_v4().to_string();
    let ts = pc_timestamp(now);
    doc.insert("id".into(), Value::String(id.clone()));
    doc.insert("engagementId".into(), Value::String(engagement));
    doc.insert("direction".into(), "Outgoing".into());
    doc.insert("createdDateTime".into(), Value::String(ts.clone()));
    match owner {
        Owner::Partner => {
            doc.insert("organizationId".into(), PARTNER_ORG_ID.into());
            doc.insert("organizationName".into(), PARTNER_ORG_NAME.into());
            // Deals the partner creates are accepted from the start, whatever status was posted.
            doc.insert("status".into(), "Active".into());
            doc.insert("substatus".into(), "Accepted".into());
            doc.insert("acceptedDateTime".into(), Value::String(ts));
        }
        Owner::Microsoft => {
            // The connected referral is Microsoft's side of the deal, and Microsoft has not
            // answered yet: the control API's related/accept and related/decline play that.
            doc.insert("organizationId".into(), MICROSOFT_ORG_ID.into());
            doc.insert("organizationName".into(), MICROSOFT_ORG_NAME.into());
            doc.insert("type".into(), "Shared".into());
            doc.insert("status".into(), "New".into());
            doc.insert("substatus".into(), "Pending".into());
        }
    }
    app.stamp(&mut doc, now);
    pc.referrals.push(Stored {
        doc: doc.clone(),
        owner,
    });
    app.referral_changed(&pc, &id, true);
    let status = StatusCode::from_u16(app.config.create_status).unwrap_or(StatusCode::OK);
    Ok(referral_response(status, &doc))
}

/// A POST that names an engagement is the second half of a shared deal: the connected referral
/// that invites Microsoft into the partner's engagement. Returns the engagement id as stored.
/// A second one in the same engagement is not refused: a client that makes two should be seen
/// making two.
fn connected_engagement(
    pc: &PartnerCenter,
    posted: &str,
    doc: &Map<String, Value>,
) -> Result<String, PcError> {
    let in_engagement = |r: &&Stored| r.engagement_id().eq_ignore_ascii_case(posted);
    let Some(own) = pc
        .referrals
        .iter()
        .filter(in_engagement)
        .find(|r| r.owner == Owner::Partner)
    else {
        let why = if pc.referrals.iter().any(|r| in_engagement(&r)) {
            "holds no referral of this partner"
        } else {
            "does not name an existing engagement"
        };
        return Err(PcError::invalid_field(
            "engagementId",
            format!(
                "engagementId '{posted}' {why}; a referral posted with an engagementId joins the partner's own engagement."
            ),
        ));
    };
    if !targets_microsoft(doc) {
        return Err(PcError::invalid_field(
            "target",
            "target must include {\"type\": \"BusinessProfileLocation\", \"id\": \"msft\"}: a referral posted into an existing engagement is the connected referral that invites Microsoft.",
        ));
    }
    Ok(own.engagement_id().to_string())
}

pub async fn get(State(app): State<App>, headers: HeaderMap, Path(id): Path<String>) -> Response {
    let result = (|| {
        let c = caller(&app, &headers)?;
        app.expire_referrals();
        let pc = app.partner_center();
        let r = pc
            .find(&id)
            .filter(|r| visible(&c, r))
            .ok_or_else(|| PcError::not_found(&format!("Referral {id}")))?;
        Ok::<_, PcError>(referral_response(StatusCode::OK, &r.doc))
    })();
    result.unwrap_or_else(IntoResponse::into_response)
}

pub async fn list(
    State(app): State<App>,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    list_inner(&app, &headers, &q).unwrap_or_else(IntoResponse::into_response)
}

fn list_inner(
    app: &App,
    headers: &HeaderMap,
    q: &HashMap<String, String>,
) -> Result<Response, PcError> {
    let c = caller(app, headers)?;
    let filter = match q.get("$filter").filter(|f| !f.trim().is_empty()) {
        Some(f) => Some(
            Filter::parse(f)
                .map_err(|e| PcError::invalid_field("$filter", format!("Invalid $filter: {e}")))?,
        ),
        None => None,
    };
    let order = match q.get("$orderby").filter(|o| !o.trim().is_empty()) {
        Some(o) => {
            let order = OrderBy::parse(o).map_err(|e| {
                PcError::invalid_field("$orderby", format!("Invalid $orderby: {e}"))
            })?;
            if let Some(bad) = order
                .properties()
                .into_iter()
                .find(|p| p != "createdDateTime" && p != "updatedDateTime")
            {
                return Err(PcError::invalid_field(
                    "$orderby",
                    format!("$orderby supports createdDateTime and updatedDateTime, not {bad}."),
                ));
            }
            Some(order)
        }
        None => None,
    };
    let number = |key: &str| -> Result<Option<usize>, PcError> {
        q.get(key)
            .map(|v| {
                v.trim().parse::<usize>().map_err(|_| {
                    PcError::invalid_field(key, format!("{key} must be a non-negative integer."))
                })
            })
            .transpose()
    };
    let top = number("$top")?;
    let skip = match q.get("$skiptoken") {
        Some(t) => decode_skiptoken(t)
            .ok_or_else(|| PcError::invalid_field("$skiptoken", "Invalid $skiptoken."))?,
        None => 0,
    };
    app.expire_referrals();
    let pc = app.partner_center();
    // Only the referrals that match are copied: a list filtered to one engagement stays cheap
    // however many referrals there are.
    let mut rows: Vec<Value> = pc
        .referrals
        .iter()
        .filter(|r| visible(&c, r))
        .filter(|r| filter.as_ref().is_none_or(|f| f.matches_object(&r.doc)))
        .map(|r| Value::Object(r.doc.clone()))
        .collect();
    drop(pc);
    if let Some(order) = &order {
        rows.sort_by(|a, b| order.compare(a, b));
    }
    let total = top.map_or(rows.len(), |t| t.min(rows.len()));
    let end = total.min(skip + app.config.page_size.max(1));
    let page: Vec<Value> = rows
        .get(skip..end)
        .map(<[Value]>::to_vec)
        .unwrap_or_default();
    let mut body = json!({
        "@odata.context": format!("{}/v1.0/engagements/$metadata#Referrals", app.base_url),
        "@odata.count": page.len(),
        "value": page,
    });
    if end < total {
        // Written as Partner Center writes it: `$` kept literal, values percent-encoded.
        let mut next = format!("{}/v1.0/engagements/referrals?", app.base_url);
        for key in ["$filter", "$orderby", "$top"] {
            if let Some(v) = q.get(key) {
                next.push_str(&format!("{key}={}&", encode(v)));
            }
        }
        next.push_str(&format!("$skiptoken={}", encode_skiptoken(end)));
        body["@odata.nextLink"] = Value::String(next);
    }
    Ok(axum::Json(body).into_response())
}

fn encode(v: &str) -> String {
    url::form_urlencoded::byte_serialize(v.as_bytes()).collect()
}

fn encode_skiptoken(offset: usize) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(format!("offset:{offset}"))
}

fn decode_skiptoken(token: &str) -> Option<usize> {
    use base64::Engine;
    let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(token.trim())
        .ok()?;
    std::str::from_utf8(&raw)
        .ok()?
        .strip_prefix("offset:")?
        .parse()
        .ok()
}

pub async fn put(
    State(app): State<App>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    (|| {
        writer(&app, &headers)?;
        require_json(&headers, &[])?;
        let if_match = headers
            .get(header::IF_MATCH)
            .and_then(|v| v.to_str().ok())
            .ok_or_else(|| {
                PcError::invalid_field(
                    "If-Match",
                    "The If-Match header is required to replace a referral.",
                )
            })?
            .to_string();
        let mut new = parse_object(&body)?;
        new.retain(|k, _| !k.starts_with("@odata."));
        app.expire_referrals();
        let won_min_age = app.won_min_age();
        write(&app, &id, &if_match, |old| {
            check_update(&app, old, &mut new, true, won_min_age)?;
            Ok(new)
        })
        .map(|doc| referral_response(StatusCode::OK, &doc))
    })()
    .unwrap_or_else(IntoResponse::into_response)
}

pub async fn patch(
    State(app): State<App>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    (|| {
        writer(&app, &headers)?;
        require_json(&headers, &["application/json-patch+json"])?;
        let ops: json_patch::Patch = serde_json::from_slice(&body).map_err(|e| {
            PcError::invalid(format!(
                "The request body must be a JSON Patch document: {e}"
            ))
        })?;
        if let Some(op) = ops.0.iter().find(|op| {
            !matches!(
                op,
                json_patch::PatchOperation::Replace(_) | json_patch::PatchOperation::Add(_)
            )
        }) {
            return Err(PcError::invalid(format!(
                "Only the replace and add operations are supported, not {}.",
                serde_json::to_value(op)
                    .ok()
                    .and_then(|v| v.get("op").and_then(Value::as_str).map(str::to_string))
                    .unwrap_or_default()
            )));
        }
        let if_match = headers
            .get(header::IF_MATCH)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("*")
            .to_string();
        app.expire_referrals();
        let won_min_age = app.won_min_age();
        let doc = write(&app, &id, &if_match, |old| {
            let mut value = Value::Object(old.doc.clone());
            json_patch::patch(&mut value, &ops)
                .map_err(|e| PcError::invalid(format!("The patch cannot be applied: {e}")))?;
            let Value::Object(mut new) = value else {
                return Err(PcError::invalid(
                    "The patch must leave the referral an object.",
                ));
            };
            check_update(&app, old, &mut new, false, won_min_age)?;
            Ok(new)
        })?;
        let wants_body = headers
            .get_all("prefer")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .any(|v| {
                v.split(',')
                    .any(|p| p.trim().eq_ignore_ascii_case("return=representation"))
            });
        Ok(if wants_body {
            referral_response(StatusCode::OK, &doc)
        } else {
            with_etag(StatusCode::NO_CONTENT.into_response(), &doc)
        })
    })()
    .unwrap_or_else(IntoResponse::into_response)
}

/// Applies `change` to the partner's referral `id` under `If-Match`, stamps it and raises
/// `referral-updated`; returns the stored document.
fn write(
    app: &App,
    id: &str,
    if_match: &str,
    change: impl FnOnce(&Stored) -> Result<Map<String, Value>, PcError>,
) -> Result<Map<String, Value>, PcError> {
    let now = app.clock.now();
    let mut pc = app.partner_center();
    let stored = pc
        .find_mut(id)
        .ok_or_else(|| PcError::not_found(&format!("Referral {id}")))?;
    if stored.owner != Owner::Partner {
        return Err(PcError::access_denied(
            "This referral belongs to another organization and cannot be changed.",
        ));
    }
    if !etag_matches(if_match, str_at(&stored.doc, "eTag")) {
        return Err(PcError::precondition_failed());
    }
    let mut new = change(stored)?;
    app.stamp(&mut new, now);
    stored.doc = new.clone();
    let id = stored.id().to_string();
    app.referral_changed(&pc, &id, false);
    Ok(new)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn etags_compare_with_or_without_quotes() {
        assert!(etag_matches("\"abc\"", "\"abc\""));
        assert!(etag_matches("abc", "\"abc\""));
        assert!(etag_matches("*", "\"abc\""));
        assert!(!etag_matches("\"abd\"", "\"abc\""));
    }

    #[test]
    fn skiptokens_round_trip_and_reject_garbage() {
        assert_eq!(decode_skiptoken(&encode_skiptoken(200)), Some(200));
        assert_eq!(decode_skiptoken("not-a-token"), None);
    }
}
