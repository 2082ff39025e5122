//! Control routes that play Microsoft: incoming referrals, and changes to a referral and to its
//! related (Microsoft-side) referral, each raising the webhook events the real service would.

use std::collections::HashMap;

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Duration, Utc};
use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::errors::PcError;
use super::referrals::{MICROSOFT_ORG_ID, MICROSOFT_ORG_NAME, PARTNER_ORG_ID, PARTNER_ORG_NAME};
use super::{Owner, Stored};
use crate::app::App;
use crate::clock::pc_timestamp;
use crate::config::ADMIN_USER;

/// What Microsoft sends the partner.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// A co-sell opportunity: shared, sales-qualified, with Microsoft's own referral beside it.
    CoSell,
    /// A qualified lead: independent, no Microsoft referral in the engagement.
    Lead,
    /// Microsoft sharing a pipeline opportunity: shared, not qualified, with Microsoft's referral.
    Pipeline,
}

impl Kind {
    fn parse(s: Option<&String>) -> Result<Kind, PcError> {
        match s.map(|s| s.to_ascii_lowercase()).as_deref() {
            None | Some("co-sell") | Some("cosell") => Ok(Kind::CoSell),
            Some("lead") => Ok(Kind::Lead),
            Some("pipeline") | Some("pipeline-shared") => Ok(Kind::Pipeline),
            Some(other) => Err(PcError::invalid_field(
                "kind",
                format!("kind '{other}' is not one of co-sell, lead, pipeline."),
            )),
        }
    }
}

fn defaults(kind: Kind, now: DateTime<Utc>) -> Value {
    let (ty, qualification, share) = match kind {
        Kind::CoSell => ("Shared", "SalesQualified", true),
        Kind::Lead => ("Independent", "MarketingQualified", false),
        Kind::Pipeline => ("Shared", "None", true),
    };
    json!({
        "name": "Fabrikam cloud migration",
        "type": ty,
        "qualification": qualification,
        "customerProfile": {
            "name": "Fabrikam",
            "size": "51to250employees",
            "address": {
                "addressLine1": "1 Main Street",
                "city": "Bellevue",
                "state": "WA",
                "postalCode": "98004",
                "country": "US"
            },
            "team": [{
                "firstName": "Sue",
                "lastName": "Smith",
                "email": "sue.smith@fabrikam.example",
                "phoneNumber": "+1 425 555 0100"
            }]
        },
        "consent": {
            "consentToToShareInfoWithOthers": true,
            "consentToContact": true,
            "consentToShareReferralWithMicrosoftSellers": share
        },
        "details": {
            "notes": "The customer wants to move its line-of-business apps to the cloud.",
            "dealValue": 30000,
            "currency": "USD",
            "closingDateTime": pc_timestamp(now + Duration::days(45)),
            "requirements": {
                "solutions": [{"id": "SOL-SANDBOX-0001", "name": "Sandbox Migration Service", "type": "Name"}]
            }
        },
        "inviteContext": {
            "notes": "Microsoft seller notes",
            "assistanceRequestCode": "Unknown",
            "invitedBy": {"organizationId": "msft", "organizationName": "Microsoft"}
        },
        "target": [{"type": "SolutionProfile", "id": "SOL-SANDBOX-0001"}],
        "team": [{"firstName": "Referral", "lastName": "Admin", "email": ADMIN_USER}]
    })
}

fn parse_optional_object(body: &[u8]) -> Result<Value, PcError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(json!({}));
    }
    match serde_json::from_slice::<Value>(body) {
        Ok(v @ Value::Object(_)) => Ok(v),
        _ => Err(PcError::invalid("The body must be a JSON object.")),
    }
}

/// An opportunity id in Microsoft's sales system (MSX), in the `7-XXXXXXXXXX` shape it has.
fn new_msx_id() -> String {
    format!(
        "7-{}",
        &uuid::Uuid::new_v4().simple().to_string()[..10].to_uppercase()
    )
}

fn microsoft_side(partner: &Map<String, Value>, engagement: &str, now: DateTime<Utc>) -> Value {
    let msx = new_msx_id();
    json!({
        "name": partner.get("name").cloned().unwrap_or(Value::Null),
        "engagementId": engagement,
        "type": "Shared",
        "qualification": "SalesQualified",
        "status": "Active",
        "substatus": "Accepted",
        "direction": "Outgoing",
        "organizationId": MICROSOFT_ORG_ID,
        "organizationName": MICROSOFT_ORG_NAME,
        "customerProfile": partner.get("customerProfile").cloned().unwrap_or(Value::Null),
        "details": partner.get("details").cloned().unwrap_or(Value::Null),
        "trackingInfo": {"microsoftMsxId": msx},
        "target": [{"type": "BusinessProfileLocation", "id": PARTNER_ORG_ID}],
        "createdDateTime": pc_timestamp(now),
    })
}

impl App {
    fn insert_referral(
        &self,
        mut doc: Map<String, Value>,
        owner: Owner,
        now: DateTime<Utc>,
    ) -> Map<String, Value> {
        let id = uuid::Uuid::new_v4().to_string();
        doc.insert("id".into(), Value::String(id.clone()));
        doc.entry("createdDateTime")
            .or_insert_with(|| Value::String(pc_timestamp(now)));
        self.stamp(&mut doc, now);
        let mut pc = self.partner_center();
        pc.referrals.push(Stored {
            doc: doc.clone(),
            owner,
        });
        self.referral_changed(&pc, &id, true);
        doc
    }
}

/// `POST /_sandbox/partner-center/incoming?kind=co-sell|lead|pipeline`: an incoming referral from
/// Microsoft, built from defaults with the posted partial referral merged over them.
pub async fn incoming(
    State(app): State<App>,
    Query(q): Query<HashMap<String, String>>,
    body: Bytes,
) -> Response {
    (|| {
        let kind = Kind::parse(q.get("kind"))?;
        let partial = parse_optional_object(&body)?;
        let now = app.clock.now();
        let mut doc = defaults(kind, now);
        json_patch::merge(&mut doc, &partial);
        let Value::Object(mut doc) = doc else {
            return Err(PcError::invalid("The body must be a JSON object."));
        };
        let engagement = uuid::Uuid::new_v4().to_string();
        doc.insert("engagementId".into(), Value::String(engagement.clone()));
        doc.insert("direction".into(), "Incoming".into());
        doc.insert("organizationId".into(), PARTNER_ORG_ID.into());
        doc.insert("organizationName".into(), PARTNER_ORG_NAME.into());
        doc.entry("status").or_insert_with(|| "New".into());
        doc.entry("substatus").or_insert_with(|| "Pending".into());
        if let Ok(expiry) = Duration::from_std(app.config.referral_expiry) {
            doc.insert(
                "expirationDateTime".into(),
                Value::String(pc_timestamp(now + expiry)),
            );
        }
        let doc = app.insert_referral(doc, Owner::Partner, now);
        if kind != Kind::Lead
            && let Value::Object(ms) = microsoft_side(&doc, &engagement, now)
        {
            app.insert_referral(ms, Owner::Microsoft, now);
        }
        Ok::<_, PcError>((StatusCode::CREATED, axum::Json(Value::Object(doc))).into_response())
    })()
    .unwrap_or_else(IntoResponse::into_response)
}

/// `GET /_sandbox/partner-center/referrals`: every referral, the partner's and Microsoft's.
pub async fn all(State(app): State<App>) -> Response {
    app.expire_referrals();
    let pc = app.partner_center();
    let rows: Vec<Value> = pc
        .referrals
        .iter()
        .map(|r| {
            json!({
                "owner": if r.owner == Owner::Partner { "partner" } else { "microsoft" },
                "referral": Value::Object(r.doc.clone()),
            })
        })
        .collect();
    axum::Json(rows).into_response()
}

fn merge_into(app: &App, id: &str, patch: &Value) -> Result<Map<String, Value>, PcError> {
    let now = app.clock.now();
    let mut pc = app.partner_center();
    let stored = pc
        .find_mut(id)
        .ok_or_else(|| PcError::not_found(&format!("Referral {id}")))?;
    let mut doc = Value::Object(stored.doc.clone());
    json_patch::merge(&mut doc, patch);
    let Value::Object(mut doc) = doc else {
        return Err(PcError::invalid("The merge patch must leave an object."));
    };
    // Identity stays; everything else is Microsoft's to change.
    for f in ["id", "engagementId", "createdDateTime"] {
        if let Some(v) = stored.doc.get(f) {
            doc.insert(f.into(), v.clone());
        }
    }
    app.stamp(&mut doc, now);
    stored.doc = doc.clone();
    let id = stored.id().to_string();
    app.referral_changed(&pc, &id, false);
    Ok(doc)
}

/// `PATCH /_sandbox/partner-center/referrals/{id}`: Microsoft changes a referral (JSON merge
/// patch); raises `referral-updated` (or `related-referral-updated` for Microsoft's own).
pub async fn change(State(app): State<App>, Path(id): Path<String>, body: Bytes) -> Response {
    (|| {
        let patch = parse_optional_object(&body)?;
        let doc = merge_into(&app, &id, &patch)?;
        Ok::<_, PcError>(axum::Json(Value::Object(doc)).into_response())
    })()
    .unwrap_or_else(IntoResponse::into_response)
}

fn related_of(app: &App, id: &str) -> Result<(String, Option<String>), PcError> {
    let pc = app.partner_center();
    let r = pc
        .find(id)
        .ok_or_else(|| PcError::not_found(&format!("Referral {id}")))?;
    let engagement = r.engagement_id().to_string();
    // Named directly, Microsoft's referral is the one meant, even when a newer one exists.
    let related = if r.owner == Owner::Microsoft {
        Some(r.id().to_string())
    } else {
        pc.microsoft_referral(&engagement)
            .map(|o| o.id().to_string())
    };
    Ok((engagement, related))
}

/// `POST /_sandbox/partner-center/referrals/{id}/related`: Microsoft joins the engagement with
/// its own referral; raises `related-referral-created`.
pub async fn create_related(
    State(app): State<App>,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    (|| {
        let partial = parse_optional_object(&body)?;
        let (engagement, existing) = related_of(&app, &id)?;
        if existing.is_some() {
            return Err(PcError::new(
                StatusCode::CONFLICT,
                "resourceModified",
                "Microsoft already has a referral in this engagement; PATCH it instead.",
            ));
        }
        let now = app.clock.now();
        let partner = app
            .partner_center()
            .find(&id)
            .map(|r| r.doc.clone())
            .unwrap_or_default();
        let mut doc = microsoft_side(&partner, &engagement, now);
        json_patch::merge(&mut doc, &partial);
        let Value::Object(mut doc) = doc else {
            return Err(PcError::invalid("The body must be a JSON object."));
        };
        doc.insert("engagementId".into(), Value::String(engagement));
        let doc = app.insert_referral(doc, Owner::Microsoft, now);
        Ok((StatusCode::CREATED, axum::Json(Value::Object(doc))).into_response())
    })()
    .unwrap_or_else(IntoResponse::into_response)
}

/// `PATCH /_sandbox/partner-center/referrals/{id}/related`: Microsoft changes its referral in
/// the engagement of `id`; raises `related-referral-updated`.
pub async fn change_related(
    State(app): State<App>,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    (|| {
        let patch = parse_optional_object(&body)?;
        let (_, related) = related_of(&app, &id)?;
        let related = related.ok_or_else(|| {
            PcError::not_found(&format!("A Microsoft referral in the engagement of {id}"))
        })?;
        let doc = merge_into(&app, &related, &patch)?;
        Ok::<_, PcError>(axum::Json(Value::Object(doc)).into_response())
    })()
    .unwrap_or_else(IntoResponse::into_response)
}

/// Microsoft's referral in the engagement of `id`, for an answer from Microsoft: the error when
/// there is none, or when it is closed and so can no longer answer.
fn open_related(app: &App, id: &str) -> Result<String, PcError> {
    let (_, related) = related_of(app, id)?;
    let related = related.ok_or_else(|| {
        PcError::not_found(&format!("A Microsoft referral in the engagement of {id}"))
    })?;
    let pc = app.partner_center();
    if let Some(r) = pc.find(&related)
        && r.status() == "Closed"
    {
        return Err(PcError::invalid(format!(
            "Microsoft's referral {related} is already closed ({}/{}); it cannot answer again.",
            r.status(),
            super::str_at(&r.doc, "substatus")
        )));
    }
    Ok(related)
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Accept {
    microsoft_msx_id: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Decline {
    reason: Option<String>,
}

/// An optional typed body: nothing (or whitespace) is the default.
fn parse_optional<T: Default + serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, PcError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    serde_json::from_slice(body).map_err(|e| PcError::invalid(format!("Invalid body: {e}")))
}

/// `POST /_sandbox/partner-center/referrals/{id}/related/accept` `{microsoftMsxId?}`: Microsoft
/// accepts the deal; its referral becomes `Active/Accepted` with the MSX opportunity id and
/// `related-referral-updated` is raised.
pub async fn accept_related(
    State(app): State<App>,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    (|| {
        let a: Accept = parse_optional(&body)?;
        let msx = match a.microsoft_msx_id {
            Some(m) if m.trim().is_empty() => {
                return Err(PcError::invalid_field(
                    "microsoftMsxId",
                    "microsoftMsxId must not be empty.",
                ));
            }
            Some(m) => m,
            None => new_msx_id(),
        };
        let related = open_related(&app, &id)?;
        let doc = merge_into(
            &app,
            &related,
            &json!({
                "status": "Active",
                "substatus": "Accepted",
                "trackingInfo": {"microsoftMsxId": msx}
            }),
        )?;
        Ok::<_, PcError>(axum::Json(Value::Object(doc)).into_response())
    })()
    .unwrap_or_else(IntoResponse::into_response)
}

/// `POST /_sandbox/partner-center/referrals/{id}/related/decline` `{reason?}`: Microsoft declines
/// the deal; its referral becomes `Closed/Declined` with the reason as `statusReason` and
/// `related-referral-updated` is raised.
pub async fn decline_related(
    State(app): State<App>,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    (|| {
        let d: Decline = parse_optional(&body)?;
        let reason = d
            .reason
            .filter(|r| !r.trim().is_empty())
            .unwrap_or_else(|| "Declined by Microsoft".to_string());
        let related = open_related(&app, &id)?;
        let doc = merge_into(
            &app,
            &related,
            &json!({"status": "Closed", "substatus": "Declined", "statusReason": reason}),
        )?;
        Ok::<_, PcError>(axum::Json(Value::Object(doc)).into_response())
    })()
    .unwrap_or_else(IntoResponse::into_response)
}

fn settings_json(app: &App) -> Value {
    json!({"wonMinAgeHours": app.won_min_age().as_secs_f64() / 3600.0})
}

/// `GET /_sandbox/partner-center/settings`: the Partner Center rules that can change at run time.
pub async fn settings(State(app): State<App>) -> Response {
    axum::Json(settings_json(&app)).into_response()
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Settings {
    won_min_age_hours: Option<f64>,
}

/// `PUT /_sandbox/partner-center/settings` `{wonMinAgeHours?}`: changes them until the next
/// reset, which goes back to the configuration the sandbox started with.
pub async fn set_settings(State(app): State<App>, body: Bytes) -> Response {
    (|| {
        let s: Settings = parse_optional(&body)?;
        if let Some(hours) = s.won_min_age_hours {
            let age = std::time::Duration::try_from_secs_f64(hours * 3600.0).map_err(|_| {
                PcError::invalid_field(
                    "wonMinAgeHours",
                    format!("wonMinAgeHours must be a non-negative number of hours, got {hours}."),
                )
            })?;
            app.partner_center().won_min_age = Some(age);
        }
        Ok::<_, PcError>(axum::Json(settings_json(&app)).into_response())
    })()
    .unwrap_or_else(IntoResponse::into_response)
}
