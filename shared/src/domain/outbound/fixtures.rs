//! The opportunity, account and contact the outbound rules' tests start from.

use proptest::prelude::*;

use chrono::NaiveDate;
use serde_json::Value;

use crate::domain::projection::Projection;
use crate::domain::records::{
    AccountFields, ContactFields, OpportunityFields, OpportunityState, Visibility,
};
use crate::referral::{AssistanceRequestCode, Referral};

pub(crate) fn referral(v: Value) -> Referral {
    serde_json::from_value(v).expect("referral")
}

pub(crate) fn date(y: i32, m: u32, d: u32) -> NaiveDate {
    NaiveDate::from_ymd_opt(y, m, d).expect("date")
}

pub(crate) fn opportunity() -> OpportunityFields {
    OpportunityFields {
        name: Some("✔ Contoso cloud migration".into()),
        deal_value: Some(30000.0),
        currency: Some("eur".into()),
        close_date: Some(date(2026, 6, 30)),
        description: Some("Move the ERP".into()),
        state: Some(OpportunityState::Active),
        microsoft_help: Some("none".into()),
        visibility: Some(Visibility::Private),
        ..OpportunityFields::default()
    }
}

pub(crate) fn account() -> AccountFields {
    AccountFields {
        name: "Contoso".into(),
        street: Some("1 Harbour Road".into()),
        city: Some("Oslo".into()),
        state: None,
        postal_code: Some("0150".into()),
        country: Some("no".into()),
    }
}

pub(crate) fn contact() -> ContactFields {
    ContactFields {
        first_name: Some("Kari".into()),
        last_name: "Nordmann".into(),
        email: Some("kari@contoso.example".into()),
        phone: None,
        account_id: None,
    }
}

pub(crate) fn solutions() -> Vec<String> {
    vec!["SOL-1".into(), "sol-1".into(), " ".into(), "SOL-2".into()]
}

pub(crate) fn name() -> impl Strategy<Value = String> {
    "[A-Za-z0-9][A-Za-z0-9 ]{0,12}"
}

/// Any two-way projection a CRM round trip keeps.
pub(crate) fn two_way_projection() -> impl Strategy<Value = Projection> {
    (
        (
            proptest::option::of(name()),
            proptest::option::of(0u32..100_000),
            proptest::option::of("[A-Z]{3}"),
        ),
        (
            proptest::option::of(0u32..365),
            proptest::option::of(name()),
            proptest::option::of(proptest::sample::select(&AssistanceRequestCode::KNOWN[1..])),
            proptest::option::of(any::<bool>()),
            proptest::option::of(name()),
        ),
    )
        .prop_map(
            |((name, value, currency), (day, notes, help, visible, msx))| Projection {
                name,
                deal_value: value.map(|v| f64::from(v) / 4.0),
                currency,
                close_date: day
                    .and_then(|d| date(2026, 1, 1).checked_add_days(chrono::Days::new(d.into()))),
                notes,
                status: None,
                microsoft_help: help.map(|h| h.as_str().to_string()),
                visible,
                microsoft_status: None,
                microsoft_crm_id: msx,
                // No contact: opportunity_update never writes one.
                has_contact: Some(false),
            },
        )
}
