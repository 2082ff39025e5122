//! From a referral to what the CRM holds, under the admin's options: the synced projection,
//! the opportunity state, the account, contact and solution links of a new opportunity, the
//! fields of a lead, and the fields that changed since the last sync.

use chrono::NaiveDate;

use super::projection::Projection;
use super::stage;
use crate::domain::records::{
    AccountFields, ClearField, ContactFields, LeadFields, OpportunityFields,
};
use crate::referral::{Referral, Status, Substatus};

/// The referral's side of the projection. `related` is Microsoft's referral in the same
/// engagement, when there is one: its status and MSX id are what sellers see as "Microsoft
/// status" and "Microsoft CRM identifier".
pub fn referral_projection(r: &Referral, related: Option<&Referral>) -> Projection {
    let details = r.details.as_ref();
    let help = r
        .invite_context
        .as_ref()
        .and_then(|c| c.assistance_request_code.as_ref())
        .filter(|c| c.asks_for_help())
        .map(|c| c.as_str().to_string());
    Projection {
        name: r
            .name
            .as_deref()
            .map(|n| super::marker::strip(n).to_string()),
        deal_value: details
            .and_then(|d| d.deal_value.as_ref())
            .and_then(serde_json::Number::as_f64),
        currency: details
            .and_then(|d| d.currency.clone())
            .map(|c| c.to_ascii_uppercase()),
        close_date: details
            .and_then(|d| d.closing_date_time.as_deref())
            .and_then(date_of),
        notes: details.and_then(|d| d.notes.clone()),
        status: Some(status_text(r)),
        microsoft_help: help,
        visible: r
            .consent
            .as_ref()
            .and_then(|c| c.consent_to_share_referral_with_microsoft_sellers),
        microsoft_status: related.map(status_text),
        microsoft_crm_id: related
            .and_then(|m| m.tracking_info.as_ref())
            .and_then(|t| t.microsoft_msx_id.clone())
            .or_else(|| {
                r.tracking_info
                    .as_ref()
                    .and_then(|t| t.microsoft_msx_id.clone())
            }),
        has_contact: Some(
            r.customer_profile
                .as_ref()
                .and_then(|c| c.team.as_ref())
                .is_some_and(|t| !t.is_empty()),
        ),
    }
}

fn status_text(r: &Referral) -> String {
    format!(
        "{}/{}",
        r.status.as_ref().map_or("None", |s| s.as_str()),
        r.substatus.as_ref().map_or("None", |s| s.as_str())
    )
}

/// `2024-03-24T18:30:00Z` (any RFC 3339 time, or a bare date) → its calendar date in UTC.
fn date_of(s: &str) -> Option<NaiveDate> {
    chrono::DateTime::parse_from_rfc3339(s)
        .map(|t| t.with_timezone(&chrono::Utc).date_naive())
        .ok()
        .or_else(|| NaiveDate::parse_from_str(s.get(..10)?, "%Y-%m-%d").ok())
}

/// Which projection fields differ between the last sync and now.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Changed {
    pub name: bool,
    pub deal_value: bool,
    pub currency: bool,
    pub close_date: bool,
    pub notes: bool,
    pub status: bool,
    pub microsoft_help: bool,
    pub visible: bool,
    pub microsoft_status: bool,
    pub microsoft_crm_id: bool,
}

impl Changed {
    /// Every field differs: a first sync, with no base to compare with.
    pub fn all() -> Changed {
        Changed {
            name: true,
            deal_value: true,
            currency: true,
            close_date: true,
            notes: true,
            status: true,
            microsoft_help: true,
            visible: true,
            microsoft_status: true,
            microsoft_crm_id: true,
        }
    }

    pub fn between(base: &Projection, now: &Projection) -> Changed {
        Changed {
            name: base.name != now.name,
            deal_value: base.deal_value != now.deal_value,
            currency: base.currency != now.currency,
            close_date: base.close_date != now.close_date,
            notes: base.notes != now.notes,
            status: base.status != now.status,
            microsoft_help: base.microsoft_help != now.microsoft_help,
            visible: base.visible != now.visible,
            microsoft_status: base.microsoft_status != now.microsoft_status,
            microsoft_crm_id: base.microsoft_crm_id != now.microsoft_crm_id,
        }
    }

    pub fn any(&self) -> bool {
        !self.names().is_empty()
    }

    /// Names for an Audit line, in a fixed order.
    pub fn names(&self) -> Vec<&'static str> {
        [
            (self.name, "name"),
            (self.deal_value, "deal value"),
            (self.currency, "currency"),
            (self.close_date, "close date"),
            (self.notes, "notes"),
            (self.status, "status"),
            (self.microsoft_help, "Microsoft help"),
            (self.visible, "visibility"),
            (self.microsoft_status, "Microsoft status"),
            (self.microsoft_crm_id, "Microsoft CRM id"),
        ]
        .into_iter()
        .filter_map(|(changed, name)| changed.then_some(name))
        .collect()
    }
}

/// The opportunity fields to write for the `changed` part of `now` (everything else stays
/// `None`: never written, so the CRM side keeps its own edits and no write echoes).
pub fn opportunity_update(now: &Projection, changed: &Changed) -> OpportunityFields {
    let pick = |flag: bool, v: &Option<String>| if flag { v.clone() } else { None };
    OpportunityFields {
        name: pick(changed.name, &now.name),
        deal_value: if changed.deal_value {
            now.deal_value
        } else {
            None
        },
        currency: pick(changed.currency, &now.currency),
        close_date: if changed.close_date {
            now.close_date
        } else {
            None
        },
        description: pick(changed.notes, &now.notes),
        state: if changed.status {
            stage::projected_state(now)
        } else {
            None
        },
        microsoft_help: pick(changed.microsoft_help, &now.microsoft_help),
        visibility: if changed.visible {
            now.visible.map(|v| {
                if v {
                    crate::domain::records::Visibility::Visible
                } else {
                    crate::domain::records::Visibility::Private
                }
            })
        } else {
            None
        },
        microsoft_status: pick(changed.microsoft_status, &now.microsoft_status),
        microsoft_crm_id: pick(changed.microsoft_crm_id, &now.microsoft_crm_id),
        clear: cleared(now, changed),
        ..OpportunityFields::default()
    }
}

/// The changed fields whose new value is empty: emptied on one side, so emptied on the other.
/// The name is never emptied (Partner Center needs one) and the visibility never goes back.
fn cleared(now: &Projection, changed: &Changed) -> Vec<ClearField> {
    let text_empty = |v: &Option<String>| v.as_deref().is_none_or(|t| t.trim().is_empty());
    [
        (
            changed.deal_value && now.deal_value.is_none(),
            ClearField::DealValue,
        ),
        (
            changed.currency && text_empty(&now.currency),
            ClearField::Currency,
        ),
        (
            changed.close_date && now.close_date.is_none(),
            ClearField::CloseDate,
        ),
        (
            changed.notes && text_empty(&now.notes),
            ClearField::Description,
        ),
        (
            changed.microsoft_help && text_empty(&now.microsoft_help),
            ClearField::MicrosoftHelp,
        ),
        (
            changed.microsoft_status && text_empty(&now.microsoft_status),
            ClearField::MicrosoftStatus,
        ),
        (
            changed.microsoft_crm_id && text_empty(&now.microsoft_crm_id),
            ClearField::MicrosoftCrmId,
        ),
    ]
    .into_iter()
    .filter_map(|(empty, field)| empty.then_some(field))
    .collect()
}

/// The account a referral's customer becomes, when the referral names a customer.
pub fn account_fields(r: &Referral) -> Option<AccountFields> {
    let profile = r.customer_profile.as_ref()?;
    let name = profile.name.clone().filter(|n| !n.trim().is_empty())?;
    let address = profile.address.as_ref();
    let street = address.and_then(|a| {
        let lines: Vec<&str> = [a.address_line1.as_deref(), a.address_line2.as_deref()]
            .into_iter()
            .flatten()
            .filter(|l| !l.trim().is_empty())
            .collect();
        (!lines.is_empty()).then(|| lines.join(", "))
    });
    Some(AccountFields {
        name,
        street,
        city: address.and_then(|a| a.city.clone()),
        state: address.and_then(|a| a.state.clone().or_else(|| a.region.clone())),
        postal_code: address.and_then(|a| a.postal_code.clone()),
        country: address.and_then(|a| a.country.clone()),
    })
}

/// The customer contacts of a referral, with an email (the match key); first is primary.
pub fn contact_fields(r: &Referral, account_id: Option<&str>) -> Vec<ContactFields> {
    r.customer_profile
        .as_ref()
        .and_then(|p| p.team.as_ref())
        .map(|team| {
            team.iter()
                .filter(|m| m.email.as_deref().is_some_and(|e| e.contains('@')))
                .map(|m| ContactFields {
                    first_name: m.first_name.clone(),
                    last_name: m
                        .last_name
                        .clone()
                        .filter(|l| !l.trim().is_empty())
                        .or_else(|| m.email.clone())
                        .unwrap_or_default(),
                    email: m.email.clone(),
                    phone: m.phone_number.clone(),
                    account_id: account_id.map(str::to_string),
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Partner Center solution ids on the referral, without duplicates, in order.
pub fn solution_ids(r: &Referral) -> Vec<String> {
    let mut ids: Vec<String> = Vec::new();
    let solutions = r
        .details
        .as_ref()
        .and_then(|d| d.requirements.as_ref())
        .and_then(|q| q.solutions.as_ref());
    for id in solutions.into_iter().flatten().filter_map(|s| s.id.clone()) {
        if !id.trim().is_empty() && !ids.iter().any(|i| i.eq_ignore_ascii_case(&id)) {
            ids.push(id);
        }
    }
    ids
}

/// A CRM lead for a lead referral.
pub fn lead_fields(r: &Referral, referral_link: &str) -> LeadFields {
    let profile = r.customer_profile.as_ref();
    let contact = profile
        .and_then(|p| p.team.as_ref())
        .and_then(|t| t.first());
    let address = profile.and_then(|p| p.address.as_ref());
    LeadFields {
        topic: r.name.clone(),
        first_name: contact.and_then(|c| c.first_name.clone()),
        last_name: contact.and_then(|c| c.last_name.clone()),
        company: profile.and_then(|p| p.name.clone()),
        email: contact.and_then(|c| c.email.clone()),
        phone: contact.and_then(|c| c.phone_number.clone()),
        postal_code: address.and_then(|a| a.postal_code.clone()),
        country: address.and_then(|a| a.country.clone()),
        description: r.details.as_ref().and_then(|d| d.notes.clone()),
        state: Some(stage::lead_state(
            r.status.as_ref().unwrap_or(&Status::New),
            r.substatus.as_ref().unwrap_or(&Substatus::Pending),
        )),
        referral_id: r.id.clone(),
        referral_link: Some(referral_link.to_string()),
        audit: None,
    }
}

#[cfg(test)]
mod tests;
