//! Partner Center: the Referrals API, the Webhooks API and the control routes that play
//! Microsoft's side of a referral.

pub mod control;
pub mod errors;
pub mod referrals;
pub mod webhooks;

use std::collections::{HashMap, VecDeque};

use chrono::{DateTime, Utc};
use serde_json::{Map, Value, json};

use crate::app::App;
use crate::clock::pc_timestamp;
use crate::config::RelatedEventId;
use crate::delivery::Event;

/// Who a referral belongs to. The partner's own referrals are the ones the Referrals API serves
/// and writes; Microsoft's side of an engagement is its related referral.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Owner {
    Partner,
    Microsoft,
}

#[derive(Debug, Clone)]
pub struct Stored {
    pub doc: Map<String, Value>,
    pub owner: Owner,
}

impl Stored {
    pub fn id(&self) -> &str {
        str_at(&self.doc, "id")
    }
    pub fn engagement_id(&self) -> &str {
        str_at(&self.doc, "engagementId")
    }
    pub fn status(&self) -> &str {
        str_at(&self.doc, "status")
    }
}

pub fn str_at<'a>(doc: &'a Map<String, Value>, key: &str) -> &'a str {
    doc.get(key).and_then(Value::as_str).unwrap_or("")
}

#[derive(Debug, Clone)]
pub struct Registration {
    pub subscriber_id: String,
    pub webhook_url: String,
    pub webhook_events: Vec<String>,
    pub signature_to_ms_header: bool,
    pub last_modified: DateTime<Utc>,
}

#[derive(Debug, Default)]
pub struct PartnerCenter {
    pub referrals: Vec<Stored>,
    pub registration: Option<Registration>,
    /// Test event correlation id → delivery id.
    pub validation_events: HashMap<String, u64>,
    /// When test events were requested, for the documented 2-per-minute throttle.
    pub validation_calls: VecDeque<DateTime<Utc>>,
    /// `won_min_age` as changed on the control API; `None` keeps the configured one, so a
    /// reset goes back to what the sandbox was started with.
    pub won_min_age: Option<std::time::Duration>,
}

impl PartnerCenter {
    pub fn find(&self, id: &str) -> Option<&Stored> {
        self.referrals
            .iter()
            .find(|r| r.id().eq_ignore_ascii_case(id))
    }

    pub fn find_mut(&mut self, id: &str) -> Option<&mut Stored> {
        self.referrals
            .iter_mut()
            .find(|r| r.id().eq_ignore_ascii_case(id))
    }

    /// Microsoft's referral in an engagement. The newest when there are several: a client that
    /// posted the connected referral twice made two, and the later one is the live one.
    pub fn microsoft_referral(&self, engagement_id: &str) -> Option<&Stored> {
        self.referrals.iter().rev().find(|r| {
            r.owner == Owner::Microsoft && r.engagement_id().eq_ignore_ascii_case(engagement_id)
        })
    }

    fn engagement_members(&self, engagement_id: &str, owner: Owner) -> Vec<String> {
        self.referrals
            .iter()
            .filter(|r| r.owner == owner && r.engagement_id().eq_ignore_ascii_case(engagement_id))
            .map(|r| r.id().to_string())
            .collect()
    }
}

pub fn new_etag() -> String {
    format!("\"{}\"", uuid::Uuid::new_v4())
}

impl App {
    /// Partner Center's MFA enforcement: an App+User token must show the user did multifactor
    /// authentication (`amr` has `mfa`). App-only tokens have no user and are not concerned.
    pub fn require_mfa(&self, amr: &[String]) -> Result<(), errors::PcError> {
        if !self.entra_settings().partner_center_mfa || amr.iter().any(|m| m == "mfa") {
            return Ok(());
        }
        Err(errors::PcError::unauthenticated(
            "The access token lacks the multifactor authentication (MFA) claim: Partner Center requires MFA for App+User access. Sign the user in interactively (authorization code or device code) instead of with a password.",
        ))
    }

    /// How long after creation a partner's deal may not yet be closed as Won.
    pub fn won_min_age(&self) -> std::time::Duration {
        self.partner_center()
            .won_min_age
            .unwrap_or(self.config.won_min_age)
    }

    pub fn referral_url(&self, id: &str) -> String {
        format!("{}/v1.0/engagements/referrals/{id}", self.base_url)
    }

    /// Server-side fields of a referral that has just been written: a new eTag and update time,
    /// and the dates that follow from its status.
    pub fn stamp(&self, doc: &mut Map<String, Value>, now: DateTime<Utc>) {
        let ts = pc_timestamp(now);
        doc.insert("eTag".into(), Value::String(new_etag()));
        doc.insert("updatedDateTime".into(), Value::String(ts.clone()));
        match str_at(doc, "status") {
            "Active" if doc.get("acceptedDateTime").is_none_or(Value::is_null) => {
                doc.insert("acceptedDateTime".into(), Value::String(ts));
            }
            "Closed" if doc.get("closedDateTime").is_none_or(Value::is_null) => {
                doc.insert("closedDateTime".into(), Value::String(ts));
            }
            _ => {}
        }
        let id = str_at(doc, "id").to_string();
        let engagement = str_at(doc, "engagementId").to_string();
        doc.insert(
            "links".into(),
            json!({
                "relatedReferrals": {
                    "uri": format!("{}/v1.0/engagements/referrals?$filter=engagementId eq '{engagement}'", self.base_url),
                    "method": "GET"
                },
                "self": {"uri": self.referral_url(&id), "method": "GET"}
            }),
        );
    }

    /// Raises the events a change to referral `id` causes: `referral-*` for the partner's own
    /// referral, `related-referral-*` for Microsoft's side of an engagement the partner is in.
    pub fn referral_changed(&self, pc: &PartnerCenter, id: &str, created: bool) {
        let Some(r) = pc.find(id) else { return };
        match r.owner {
            Owner::Partner => self.emit(Event::referral(
                if created {
                    "referral-created"
                } else {
                    "referral-updated"
                },
                id,
            )),
            Owner::Microsoft => {
                let name = if created {
                    "related-referral-created"
                } else {
                    "related-referral-updated"
                };
                for own in pc.engagement_members(r.engagement_id(), Owner::Partner) {
                    let carried = match self.config.related_event_id {
                        RelatedEventId::Related => id.to_string(),
                        RelatedEventId::Own => own,
                    };
                    self.emit(Event::referral(name, &carried));
                }
            }
        }
    }

    /// Incoming referrals nobody answered expire after the configured time (14 days): they
    /// become `Closed/Expired`, which raises `referral-updated`.
    pub fn expire_referrals(&self) {
        let now = self.clock.now();
        let Ok(expiry) = chrono::Duration::from_std(self.config.referral_expiry) else {
            return;
        };
        let mut pc = self.partner_center();
        let due: Vec<String> = pc
            .referrals
            .iter()
            .filter(|r| {
                r.owner == Owner::Partner
                    && r.status() == "New"
                    && str_at(&r.doc, "direction") == "Incoming"
                    && parse_time(str_at(&r.doc, "createdDateTime"))
                        .is_some_and(|created| created + expiry <= now)
            })
            .map(|r| r.id().to_string())
            .collect();
        for id in &due {
            if let Some(r) = pc.find_mut(id) {
                r.doc.insert("status".into(), "Closed".into());
                r.doc.insert("substatus".into(), "Expired".into());
                r.doc.insert(
                    "statusReason".into(),
                    "Not answered within the allowed time".into(),
                );
                let mut doc = std::mem::take(&mut r.doc);
                self.stamp(&mut doc, now);
                r.doc = doc;
            }
            self.referral_changed(&pc, id, false);
        }
    }
}

pub fn parse_time(s: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(s)
        .ok()
        .map(|t| t.with_timezone(&Utc))
}
