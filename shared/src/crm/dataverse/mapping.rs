//! The neutral CRM model ↔ Dataverse rows, with the configured column names. Pure functions:
//! no I/O, so every mapping rule is tested here without a server.

use chrono::{DateTime, NaiveDate, Utc};
use serde_json::{Map, Value};
use uuid::Uuid;

use super::config::{DataverseFields, VisibilityEncoding};
use crate::crm::{
    AccountFields, CatalogSolution, ClearField, ContactFields, CrmError, LeadFields, LeadState,
    OpportunityFields, OpportunityState, Visibility,
};

/// Standard opportunity and lead status codes (docs/dataverse.md, "Opportunity and lead states").
pub(super) const OPPORTUNITY_STATUS_IN_PROGRESS: i64 = 1;
pub(super) const OPPORTUNITY_STATUS_ON_HOLD: i64 = 2;
pub(super) const OPPORTUNITY_STATUS_WON: i64 = 3;
/// `Canceled`: the status the connector closes a lost opportunity with.
pub(super) const OPPORTUNITY_STATUS_LOST: i64 = 4;

/// A GUID as Dataverse writes it, or `None` for anything else (which can name no row).
pub(super) fn guid(id: &str) -> Option<Uuid> {
    Uuid::parse_str(id.trim()).ok()
}

/// `set?$select=…&$filter=…` with each option encoded.
pub(super) fn query(set: &str, options: &[(&str, String)]) -> String {
    let parts: Vec<String> = options
        .iter()
        .map(|(k, v)| format!("{k}={}", crate::http::encode_query_value(v)))
        .collect();
    if parts.is_empty() {
        set.to_string()
    } else {
        format!("{set}?{}", parts.join("&"))
    }
}

/// The read column of a lookup (`_parentaccountid_value`).
pub(super) fn lookup_column(name: &str) -> String {
    format!("_{name}_value")
}

/// A `nav@odata.bind` value.
pub(super) fn bind(set: &str, id: Uuid) -> Value {
    Value::String(format!("/{set}({id})"))
}

/// The column a refusal names, when it names one. The Web API puts it in quotes in the
/// messages of unknown properties, over-long text, out-of-range values and lookups; the
/// sandbox lists missing required columns after a colon.
pub(super) fn field_in_message(message: &str) -> Option<String> {
    const QUOTED: &[&str] = &[
        "property '",
        "Property '",
        "length of the '",
        "attribute '",
        "value of '",
        " of '",
    ];
    if let Some((_, rest)) = message.split_once("are missing: ") {
        let list = rest.trim().trim_end_matches('.');
        if !list.is_empty() {
            return Some(list.to_string());
        }
    }
    for marker in QUOTED {
        if let Some((_, rest)) = message.split_once(marker)
            && let Some((name, _)) = rest.split_once('\'')
            && !name.is_empty()
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '@' || c == '.')
        {
            return Some(name.to_string());
        }
    }
    None
}

fn text(row: &Value, column: &str) -> Option<String> {
    row.get(column).and_then(Value::as_str).map(str::to_string)
}

fn put(body: &mut Map<String, Value>, column: &str, value: Option<Value>) {
    if let Some(v) = value {
        body.insert(column.to_string(), v);
    }
}

fn put_text(body: &mut Map<String, Value>, column: &str, value: &Option<String>) {
    put(body, column, value.clone().map(Value::String));
}

/// `(statecode, statuscode)` of an open opportunity state; `None` for Won/Lost, which are
/// reached through the Win/Lose actions.
pub(super) fn open_opportunity_codes(state: OpportunityState) -> Option<(i64, i64)> {
    match state {
        OpportunityState::Active => Some((0, OPPORTUNITY_STATUS_IN_PROGRESS)),
        OpportunityState::OnHold => Some((0, OPPORTUNITY_STATUS_ON_HOLD)),
        OpportunityState::Won | OpportunityState::Lost => None,
    }
}

pub(super) fn opportunity_state(row: &Value) -> Option<OpportunityState> {
    let state = row.get("statecode").and_then(Value::as_i64)?;
    let status = row.get("statuscode").and_then(Value::as_i64);
    match state {
        0 if status == Some(OPPORTUNITY_STATUS_ON_HOLD) => Some(OpportunityState::OnHold),
        0 => Some(OpportunityState::Active),
        1 => Some(OpportunityState::Won),
        2 => Some(OpportunityState::Lost),
        _ => None,
    }
}

/// `(statecode, statuscode)` of a lead state: Open/New, Qualified, Disqualified/Lost.
pub(super) fn lead_codes(state: LeadState) -> (i64, i64) {
    match state {
        LeadState::Open => (0, 1),
        LeadState::Qualified => (1, 3),
        LeadState::Disqualified => (2, 4),
    }
}

pub(super) fn lead_state(row: &Value) -> Option<LeadState> {
    match row.get("statecode").and_then(Value::as_i64)? {
        0 => Some(LeadState::Open),
        1 => Some(LeadState::Qualified),
        2 => Some(LeadState::Disqualified),
        _ => None,
    }
}

fn visibility_value(encoding: &VisibilityEncoding, v: Visibility) -> Value {
    match (encoding, v) {
        (VisibilityEncoding::Boolean, v) => Value::Bool(v == Visibility::Visible),
        (VisibilityEncoding::Choice { private, .. }, Visibility::Private) => Value::from(*private),
        (VisibilityEncoding::Choice { visible, .. }, Visibility::Visible) => Value::from(*visible),
    }
}

fn read_visibility(encoding: &VisibilityEncoding, v: Option<&Value>) -> Option<Visibility> {
    let v = v?;
    match encoding {
        VisibilityEncoding::Boolean => v.as_bool().map(|b| {
            if b {
                Visibility::Visible
            } else {
                Visibility::Private
            }
        }),
        VisibilityEncoding::Choice { private, visible } => match v.as_i64() {
            Some(x) if x == *visible => Some(Visibility::Visible),
            Some(x) if x == *private => Some(Visibility::Private),
            _ => None,
        },
    }
}

/// Columns an opportunity read selects.
pub(super) fn opportunity_select(f: &DataverseFields) -> String {
    [
        "opportunityid".to_string(),
        "name".into(),
        f.deal_value.clone(),
        lookup_column(&f.currency),
        "estimatedclosedate".into(),
        "description".into(),
        "statecode".into(),
        "statuscode".into(),
        lookup_column("parentaccountid"),
        lookup_column("customerid"),
        lookup_column("parentcontactid"),
        f.sync_with_partner_center.clone(),
        f.referral_id.clone(),
        f.referral_link.clone(),
        f.microsoft_help.clone(),
        f.visibility.clone(),
        f.microsoft_crm_id.clone(),
        f.microsoft_status.clone(),
        f.audit.clone(),
        "modifiedon".into(),
        lookup_column("modifiedby"),
    ]
    .into_iter()
    .chain(optional_columns(f).map(|(_, c)| c.to_string()))
    .collect::<Vec<_>>()
    .join(",")
}

/// One of the opt-in opportunity columns of [`DataverseFields`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Optional {
    SolutionArea,
    SolutionPlay,
    PartnerRole,
    MarketplaceIntent,
}

/// The opt-in columns the admin configured, with their names. Those left unset exist nowhere
/// in a request: the environment may not have them.
pub(super) fn optional_columns(f: &DataverseFields) -> impl Iterator<Item = (Optional, &str)> {
    [
        (Optional::SolutionArea, &f.solution_area),
        (Optional::SolutionPlay, &f.solution_play),
        (Optional::PartnerRole, &f.partner_role),
        (Optional::MarketplaceIntent, &f.marketplace_intent),
    ]
    .into_iter()
    .filter_map(|(which, column)| column.as_deref().map(|c| (which, c)))
}

/// Whether the write sets the field that `clear` names. A caller that both sets and clears a
/// field has made a mistake; the value it sent is the more specific instruction, so setting
/// wins and the clear is ignored for that field.
pub(super) fn sets(fields: &OpportunityFields, clear: ClearField) -> bool {
    match clear {
        ClearField::DealValue => fields.deal_value.is_some(),
        ClearField::Currency => fields.currency.is_some(),
        ClearField::CloseDate => fields.close_date.is_some(),
        ClearField::Description => fields.description.is_some(),
        ClearField::MicrosoftHelp => fields.microsoft_help.is_some(),
        ClearField::Contact => fields.contact_id.is_some(),
        ClearField::MicrosoftStatus => fields.microsoft_status.is_some(),
        ClearField::MicrosoftCrmId => fields.microsoft_crm_id.is_some(),
        ClearField::SolutionArea => fields.solution_area.is_some(),
        ClearField::SolutionPlay => fields.solution_play.is_some(),
        ClearField::PartnerRole => fields.partner_role.is_some(),
    }
}

/// The fields a write both sets and clears (see [`sets`]), for the adapter to warn about.
pub(super) fn set_and_cleared(fields: &OpportunityFields) -> Vec<ClearField> {
    fields
        .clear
        .iter()
        .copied()
        .filter(|c| sets(fields, *c))
        .collect()
}

/// The clears a write carries out: those asked for whose field it does not also set.
fn clears(fields: &OpportunityFields) -> impl Iterator<Item = ClearField> + '_ {
    fields.clear.iter().copied().filter(|c| !sets(fields, *c))
}

/// The property a clear writes null to: a plain column, or a lookup's navigation property
/// bound to null (Dataverse's documented way to disassociate a single-valued navigation
/// property in a PATCH). `None` when the field has no column in this environment.
fn cleared_property(clear: ClearField, f: &DataverseFields) -> Option<String> {
    match clear {
        ClearField::DealValue => Some(f.deal_value.clone()),
        ClearField::Currency => Some(format!("{}@odata.bind", f.currency)),
        ClearField::CloseDate => Some("estimatedclosedate".into()),
        ClearField::Description => Some("description".into()),
        ClearField::MicrosoftHelp => Some(f.microsoft_help.clone()),
        ClearField::Contact => Some("parentcontactid@odata.bind".into()),
        ClearField::MicrosoftStatus => Some(f.microsoft_status.clone()),
        ClearField::MicrosoftCrmId => Some(f.microsoft_crm_id.clone()),
        ClearField::SolutionArea => f.solution_area.clone(),
        ClearField::SolutionPlay => f.solution_play.clone(),
        ClearField::PartnerRole => f.partner_role.clone(),
    }
}

/// Ids an opportunity write binds, checked before anything is sent.
#[derive(Debug, Default, Clone, Copy, PartialEq)]
pub(super) struct OpportunityRefs {
    pub account: Option<Uuid>,
    pub contact: Option<Uuid>,
    pub currency: Option<Uuid>,
}

/// The body of an opportunity write: every `Some` field except the state (a state change
/// takes its own requests). `create` adds the customer binding Dataverse requires on create.
pub(super) fn opportunity_body(
    fields: &OpportunityFields,
    refs: OpportunityRefs,
    f: &DataverseFields,
    create: bool,
) -> Map<String, Value> {
    let mut b = Map::new();
    put_text(&mut b, "name", &fields.name);
    put(
        &mut b,
        &f.deal_value,
        fields
            .deal_value
            .and_then(serde_json::Number::from_f64)
            .map(Value::Number),
    );
    if let Some(c) = refs.currency {
        b.insert(
            format!("{}@odata.bind", f.currency),
            bind("transactioncurrencies", c),
        );
    }
    put(
        &mut b,
        "estimatedclosedate",
        fields
            .close_date
            .map(|d| Value::String(d.format("%Y-%m-%d").to_string())),
    );
    put_text(&mut b, "description", &fields.description);
    if let Some(a) = refs.account {
        b.insert("parentaccountid@odata.bind".into(), bind("accounts", a));
        // `customerid` is required and is what the UI shows as the customer: it follows the
        // account.
        b.insert("customerid_account@odata.bind".into(), bind("accounts", a));
    }
    if let Some(c) = refs.contact {
        b.insert("parentcontactid@odata.bind".into(), bind("contacts", c));
        if create && refs.account.is_none() {
            b.insert("customerid_contact@odata.bind".into(), bind("contacts", c));
        }
    }
    put(
        &mut b,
        &f.sync_with_partner_center,
        fields.sync_with_partner_center.map(Value::Bool),
    );
    put_text(&mut b, &f.referral_id, &fields.referral_id);
    put_text(&mut b, &f.referral_link, &fields.referral_link);
    put_text(&mut b, &f.microsoft_help, &fields.microsoft_help);
    put(
        &mut b,
        &f.visibility,
        fields
            .visibility
            .map(|v| visibility_value(&f.visibility_encoding, v)),
    );
    put_text(&mut b, &f.microsoft_crm_id, &fields.microsoft_crm_id);
    put_text(&mut b, &f.microsoft_status, &fields.microsoft_status);
    put_text(&mut b, &f.audit, &fields.audit);
    for (which, column) in optional_columns(f) {
        let value = match which {
            Optional::SolutionArea => &fields.solution_area,
            Optional::SolutionPlay => &fields.solution_play,
            Optional::PartnerRole => &fields.partner_role,
            // Read only: the seller records the customer's intent, the connector never does.
            Optional::MarketplaceIntent => continue,
        };
        put_text(&mut b, column, value);
    }
    // A new row has nothing to empty.
    if !create {
        for clear in clears(fields) {
            if let Some(property) = cleared_property(clear, f) {
                b.insert(property, Value::Null);
            }
        }
    }
    b
}

/// An opportunity row's fields; the currency comes as the ISO code its lookup resolved to.
pub(super) fn opportunity_fields(
    row: &Value,
    f: &DataverseFields,
    currency: Option<String>,
) -> OpportunityFields {
    OpportunityFields {
        name: text(row, "name"),
        deal_value: row.get(&f.deal_value).and_then(Value::as_f64),
        currency,
        close_date: row
            .get("estimatedclosedate")
            .and_then(Value::as_str)
            .and_then(parse_date),
        description: text(row, "description"),
        state: opportunity_state(row),
        // A seller sets the customer (`customerid`); `parentaccountid` may stay empty. The
        // customer is an account unless its lookup says it is a contact.
        account_id: text(row, &lookup_column("parentaccountid")).or_else(|| {
            let kind = row
                .get("_customerid_value@Microsoft.Dynamics.CRM.lookuplogicalname")
                .and_then(Value::as_str);
            (kind != Some("contact"))
                .then(|| text(row, &lookup_column("customerid")))
                .flatten()
        }),
        contact_id: text(row, &lookup_column("parentcontactid")),
        sync_with_partner_center: row
            .get(&f.sync_with_partner_center)
            .and_then(Value::as_bool),
        referral_id: text(row, &f.referral_id),
        referral_link: text(row, &f.referral_link),
        microsoft_help: text(row, &f.microsoft_help),
        visibility: read_visibility(&f.visibility_encoding, row.get(&f.visibility)),
        microsoft_crm_id: text(row, &f.microsoft_crm_id),
        microsoft_status: text(row, &f.microsoft_status),
        audit: text(row, &f.audit),
        solution_area: f.solution_area.as_deref().and_then(|c| text(row, c)),
        solution_play: f.solution_play.as_deref().and_then(|c| text(row, c)),
        partner_role: f.partner_role.as_deref().and_then(|c| text(row, c)),
        marketplace_intent: f.marketplace_intent.as_deref().and_then(|c| text(row, c)),
        clear: Vec::new(),
    }
}

/// Whether writing `wanted` would change anything in `current`: a `Some` field that differs,
/// or a clear of a field that is not empty. `f` says which opt-in columns exist.
pub(super) fn opportunity_differs(
    current: &OpportunityFields,
    wanted: &OpportunityFields,
    f: &DataverseFields,
) -> bool {
    fn differs<T: PartialEq>(cur: &Option<T>, want: &Option<T>) -> bool {
        want.as_ref().is_some_and(|w| cur.as_ref() != Some(w))
    }
    let value_differs = match (current.deal_value, wanted.deal_value) {
        (_, None) => false,
        // Money keeps two decimals.
        (Some(c), Some(w)) => (c - w).abs() >= 0.005,
        (None, Some(_)) => true,
    };
    let currency_differs = match (&current.currency, &wanted.currency) {
        (_, None) => false,
        (Some(c), Some(w)) => !c.eq_ignore_ascii_case(w),
        (None, Some(_)) => true,
    };
    let id_differs = |cur: &Option<String>, want: &Option<String>| match (cur, want) {
        (_, None) => false,
        (Some(c), Some(w)) => !c.eq_ignore_ascii_case(w),
        (None, Some(_)) => true,
    };
    value_differs
        || currency_differs
        || differs(&current.name, &wanted.name)
        || differs(&current.close_date, &wanted.close_date)
        || differs(&current.description, &wanted.description)
        || id_differs(&current.account_id, &wanted.account_id)
        || id_differs(&current.contact_id, &wanted.contact_id)
        || differs(
            &current.sync_with_partner_center,
            &wanted.sync_with_partner_center,
        )
        || differs(&current.referral_id, &wanted.referral_id)
        || differs(&current.referral_link, &wanted.referral_link)
        || differs(&current.microsoft_help, &wanted.microsoft_help)
        || differs(&current.visibility, &wanted.visibility)
        || differs(&current.microsoft_crm_id, &wanted.microsoft_crm_id)
        || differs(&current.microsoft_status, &wanted.microsoft_status)
        || differs(&current.audit, &wanted.audit)
        || (f.solution_area.is_some() && differs(&current.solution_area, &wanted.solution_area))
        || (f.solution_play.is_some() && differs(&current.solution_play, &wanted.solution_play))
        || (f.partner_role.is_some() && differs(&current.partner_role, &wanted.partner_role))
        || clears(wanted).any(|c| cleared_property(c, f).is_some() && !is_empty(current, c))
}

/// Whether `field` is empty in a read.
fn is_empty(current: &OpportunityFields, field: ClearField) -> bool {
    !sets(current, field)
}

pub(super) fn modified_at(row: &Value) -> Option<DateTime<Utc>> {
    row.get("modifiedon")
        .and_then(Value::as_str)
        .and_then(|s| DateTime::parse_from_rfc3339(s).ok())
        .map(|d| d.with_timezone(&Utc))
}

/// Whether the row's last change was made by `user` (the connector's application user).
pub(super) fn modified_by(row: &Value, user: &str) -> bool {
    row.get(lookup_column("modifiedby"))
        .and_then(Value::as_str)
        .is_some_and(|m| m.eq_ignore_ascii_case(user))
}

fn parse_date(s: &str) -> Option<NaiveDate> {
    NaiveDate::parse_from_str(s, "%Y-%m-%d").ok().or_else(|| {
        DateTime::parse_from_rfc3339(s)
            .ok()
            .map(|d| d.with_timezone(&Utc).date_naive())
    })
}

pub(super) fn lead_select(f: &DataverseFields) -> String {
    [
        "leadid",
        "subject",
        "firstname",
        "lastname",
        "companyname",
        "emailaddress1",
        "telephone1",
        "address1_postalcode",
        &f.lead_country,
        "description",
        "statecode",
        "statuscode",
        &f.lead_referral_id,
        &f.lead_referral_link,
        &f.lead_audit,
    ]
    .join(",")
}

/// The body of a lead write: every `Some` field except the state.
pub(super) fn lead_body(fields: &LeadFields, f: &DataverseFields) -> Map<String, Value> {
    let mut b = Map::new();
    put_text(&mut b, "subject", &fields.topic);
    put_text(&mut b, "firstname", &fields.first_name);
    put_text(&mut b, "lastname", &fields.last_name);
    put_text(&mut b, "companyname", &fields.company);
    put_text(&mut b, "emailaddress1", &fields.email);
    put_text(&mut b, "telephone1", &fields.phone);
    put_text(&mut b, "address1_postalcode", &fields.postal_code);
    put_text(&mut b, &f.lead_country, &fields.country);
    put_text(&mut b, "description", &fields.description);
    put_text(&mut b, &f.lead_referral_id, &fields.referral_id);
    put_text(&mut b, &f.lead_referral_link, &fields.referral_link);
    put_text(&mut b, &f.lead_audit, &fields.audit);
    b
}

pub(super) fn lead_fields(row: &Value, f: &DataverseFields) -> LeadFields {
    LeadFields {
        topic: text(row, "subject"),
        first_name: text(row, "firstname"),
        last_name: text(row, "lastname"),
        company: text(row, "companyname"),
        email: text(row, "emailaddress1"),
        phone: text(row, "telephone1"),
        postal_code: text(row, "address1_postalcode"),
        country: text(row, &f.lead_country),
        description: text(row, "description"),
        state: lead_state(row),
        referral_id: text(row, &f.lead_referral_id),
        referral_link: text(row, &f.lead_referral_link),
        audit: text(row, &f.lead_audit),
    }
}

pub(super) fn account_select(f: &DataverseFields) -> String {
    let mut cols = vec![
        "accountid",
        "name",
        "address1_line1",
        "address1_city",
        "address1_postalcode",
        &f.account_country,
    ];
    if let Some(s) = &f.account_state {
        cols.push(s);
    }
    cols.join(",")
}

pub(super) fn account_body(fields: &AccountFields, f: &DataverseFields) -> Map<String, Value> {
    let mut b = Map::new();
    b.insert("name".into(), Value::String(fields.name.clone()));
    put_text(&mut b, "address1_line1", &fields.street);
    put_text(&mut b, "address1_city", &fields.city);
    if let Some(column) = &f.account_state {
        put_text(&mut b, column, &fields.state);
    }
    put_text(&mut b, "address1_postalcode", &fields.postal_code);
    put_text(&mut b, &f.account_country, &fields.country);
    b
}

pub(super) fn account_fields(row: &Value, f: &DataverseFields) -> AccountFields {
    AccountFields {
        name: text(row, "name").unwrap_or_default(),
        street: text(row, "address1_line1"),
        city: text(row, "address1_city"),
        state: f.account_state.as_deref().and_then(|c| text(row, c)),
        postal_code: text(row, "address1_postalcode"),
        country: text(row, &f.account_country),
    }
}

pub(super) const CONTACT_SELECT: &str =
    "contactid,firstname,lastname,emailaddress1,telephone1,_parentcustomerid_value";

pub(super) fn contact_body(fields: &ContactFields, account: Option<Uuid>) -> Map<String, Value> {
    let mut b = Map::new();
    put_text(&mut b, "firstname", &fields.first_name);
    b.insert("lastname".into(), Value::String(fields.last_name.clone()));
    put_text(&mut b, "emailaddress1", &fields.email);
    put_text(&mut b, "telephone1", &fields.phone);
    if let Some(a) = account {
        b.insert(
            "parentcustomerid_account@odata.bind".into(),
            bind("accounts", a),
        );
    }
    b
}

pub(super) fn contact_fields(row: &Value) -> ContactFields {
    ContactFields {
        first_name: text(row, "firstname"),
        last_name: text(row, "lastname").unwrap_or_default(),
        email: text(row, "emailaddress1"),
        phone: text(row, "telephone1"),
        account_id: text(row, "_parentcustomerid_value"),
    }
}

/// Columns a catalog read selects.
pub(super) fn catalog_select(f: &DataverseFields) -> String {
    let mut cols = vec![
        f.catalog_key.as_str(),
        &f.catalog_solution_id,
        &f.catalog_name,
    ];
    if let Some(d) = &f.catalog_description {
        cols.push(d);
    }
    cols.join(",")
}

/// The body of a catalog write: every column the settings name. On update a missing
/// description is written as null, since an update writes the whole solution; a create leaves
/// it out, a new row having nothing to empty. Refused before sending when the solution has no
/// id or no name, both of which the catalog needs to be of any use.
pub(super) fn catalog_body(
    solution: &CatalogSolution,
    f: &DataverseFields,
    create: bool,
) -> Result<Map<String, Value>, CrmError> {
    for (value, column, what) in [
        (
            &solution.solution_id,
            &f.catalog_solution_id,
            "a Partner Center solution id",
        ),
        (&solution.name, &f.catalog_name, "a name"),
    ] {
        if value.trim().is_empty() {
            return Err(CrmError::Rejected {
                message: format!("a catalog solution needs {what}"),
                field: Some(column.clone()),
            });
        }
    }
    let mut b = Map::new();
    b.insert(
        f.catalog_solution_id.clone(),
        Value::String(solution.solution_id.clone()),
    );
    b.insert(f.catalog_name.clone(), Value::String(solution.name.clone()));
    if let Some(column) = &f.catalog_description {
        match &solution.description {
            Some(d) => {
                b.insert(column.clone(), Value::String(d.clone()));
            }
            None if !create => {
                b.insert(column.clone(), Value::Null);
            }
            None => {}
        }
    }
    Ok(b)
}

/// A catalog row's solution; a missing id or name reads as empty (every row is listed).
pub(super) fn catalog_solution(row: &Value, f: &DataverseFields) -> CatalogSolution {
    CatalogSolution {
        solution_id: text(row, &f.catalog_solution_id).unwrap_or_default(),
        name: text(row, &f.catalog_name).unwrap_or_default(),
        description: f.catalog_description.as_deref().and_then(|c| text(row, c)),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn all_fields() -> OpportunityFields {
        OpportunityFields {
            name: Some("Contoso – Azure migration".into()),
            deal_value: Some(125_000.5),
            currency: Some("EUR".into()),
            close_date: NaiveDate::from_ymd_opt(2025, 3, 31),
            description: Some("Lift and shift".into()),
            state: Some(OpportunityState::OnHold),
            account_id: Some("6592a1b0-ad2b-4c5b-a68a-47ab4b6c7d3e".into()),
            contact_id: Some("0f1c2d3e-4a5b-4c6d-8e9f-0a1b2c3d4e5f".into()),
            sync_with_partner_center: Some(true),
            referral_id: Some("ref-1".into()),
            referral_link: Some("https://partner.microsoft.com/ref-1".into()),
            microsoft_help: Some("none".into()),
            visibility: Some(Visibility::Visible),
            microsoft_crm_id: Some("7-ABC".into()),
            microsoft_status: Some("Active".into()),
            audit: Some("line".into()),
            solution_area: Some("Cloud and AI Platforms".into()),
            solution_play: Some("Migrate and modernize your estate".into()),
            partner_role: Some("Implementation partner".into()),
            marketplace_intent: None,
            clear: Vec::new(),
        }
    }

    /// The defaults with every opt-in column configured under its suggested name.
    fn with_services_columns() -> DataverseFields {
        DataverseFields {
            solution_area: Some("cosell_solutionarea".into()),
            solution_play: Some("cosell_solutionplay".into()),
            partner_role: Some("cosell_partnerrole".into()),
            marketplace_intent: Some("cosell_marketplaceintent".into()),
            ..Default::default()
        }
    }

    const EVERY_CLEAR: [ClearField; 11] = [
        ClearField::DealValue,
        ClearField::Currency,
        ClearField::CloseDate,
        ClearField::Description,
        ClearField::MicrosoftHelp,
        ClearField::Contact,
        ClearField::MicrosoftStatus,
        ClearField::MicrosoftCrmId,
        ClearField::SolutionArea,
        ClearField::SolutionPlay,
        ClearField::PartnerRole,
    ];

    fn refs(fields: &OpportunityFields) -> OpportunityRefs {
        OpportunityRefs {
            account: fields.account_id.as_deref().and_then(guid),
            contact: fields.contact_id.as_deref().and_then(guid),
            currency: guid("11111111-2222-4333-8444-555555555555"),
        }
    }

    /// What the server would hand back for a body: binds become `_x_value` columns.
    fn as_row(body: &Map<String, Value>) -> Value {
        let mut row = Map::new();
        for (k, v) in body {
            match k.strip_suffix("@odata.bind") {
                Some(nav) => {
                    // Polymorphic lookups bind per target (`customerid_account`).
                    let column = nav
                        .strip_suffix("_account")
                        .or_else(|| nav.strip_suffix("_contact"))
                        .unwrap_or(nav);
                    let id = v
                        .as_str()
                        .and_then(|s| s.split_once('('))
                        .map(|(_, r)| r.trim_end_matches(')').to_string());
                    row.insert(lookup_column(column), json!(id));
                }
                None => {
                    row.insert(k.clone(), v.clone());
                }
            }
        }
        Value::Object(row)
    }

    #[test]
    fn an_opportunity_round_trips_through_its_columns() {
        let f = with_services_columns();
        let fields = all_fields();
        let body = opportunity_body(&fields, refs(&fields), &f, true);
        assert_eq!(body["cosell_visibility"], json!(true));
        assert_eq!(body["estimatedclosedate"], json!("2025-03-31"));
        assert_eq!(
            body["customerid_account@odata.bind"],
            json!("/accounts(6592a1b0-ad2b-4c5b-a68a-47ab4b6c7d3e)")
        );
        assert!(body.get("statecode").is_none(), "state goes separately");
        let mut row = as_row(&body);
        row["statecode"] = json!(0);
        row["statuscode"] = json!(2);
        let back = opportunity_fields(&row, &f, Some("EUR".into()));
        assert_eq!(back, fields);
    }

    #[test]
    fn only_some_fields_are_written() {
        let f = DataverseFields::default();
        let fields = OpportunityFields {
            description: Some("new".into()),
            visibility: Some(Visibility::Private),
            ..Default::default()
        };
        let body = opportunity_body(&fields, OpportunityRefs::default(), &f, false);
        assert_eq!(
            Value::Object(body),
            json!({"description": "new", "cosell_visibility": false})
        );
    }

    #[test]
    fn configured_names_and_a_choice_visibility_are_used() {
        let f = DataverseFields {
            referral_id: "new_pcreferral".into(),
            visibility: "new_visibility".into(),
            visibility_encoding: VisibilityEncoding::Choice {
                private: 100,
                visible: 200,
            },
            deal_value: "new_dealvalue".into(),
            ..Default::default()
        };
        let fields = OpportunityFields {
            referral_id: Some("r".into()),
            visibility: Some(Visibility::Visible),
            deal_value: Some(10.0),
            ..Default::default()
        };
        let body = opportunity_body(&fields, OpportunityRefs::default(), &f, false);
        assert_eq!(
            Value::Object(body.clone()),
            json!({"new_pcreferral": "r", "new_visibility": 200, "new_dealvalue": 10.0})
        );
        let back = opportunity_fields(&Value::Object(body), &f, None);
        assert_eq!(back.visibility, Some(Visibility::Visible));
        assert!(opportunity_select(&f).contains("new_pcreferral"));
        assert!(!opportunity_select(&f).contains("cosell_referralid"));
    }

    #[test]
    fn states_map_both_ways() {
        for (state, row) in [
            (
                OpportunityState::Active,
                json!({"statecode": 0, "statuscode": 1}),
            ),
            (
                OpportunityState::OnHold,
                json!({"statecode": 0, "statuscode": 2}),
            ),
            (
                OpportunityState::Won,
                json!({"statecode": 1, "statuscode": 3}),
            ),
            (
                OpportunityState::Lost,
                json!({"statecode": 2, "statuscode": 5}),
            ),
        ] {
            assert_eq!(opportunity_state(&row), Some(state), "{row}");
        }
        assert_eq!(
            open_opportunity_codes(OpportunityState::OnHold),
            Some((0, 2))
        );
        assert_eq!(open_opportunity_codes(OpportunityState::Won), None);
        for s in [
            LeadState::Open,
            LeadState::Qualified,
            LeadState::Disqualified,
        ] {
            let (state, status) = lead_codes(s);
            let row = json!({"statecode": state, "statuscode": status});
            assert_eq!(lead_state(&row), Some(s));
        }
    }

    #[test]
    fn differences_consider_only_wanted_fields() {
        let current = all_fields();
        let f = DataverseFields::default();
        assert!(!opportunity_differs(
            &current,
            &OpportunityFields::default(),
            &f
        ));
        assert!(!opportunity_differs(&current, &current, &f));
        let same_ish = OpportunityFields {
            deal_value: Some(125_000.501),
            currency: Some("eur".into()),
            account_id: Some("6592A1B0-AD2B-4C5B-A68A-47AB4B6C7D3E".into()),
            ..Default::default()
        };
        assert!(!opportunity_differs(&current, &same_ish, &f));
        let changed = OpportunityFields {
            audit: Some("another line".into()),
            ..Default::default()
        };
        assert!(opportunity_differs(&current, &changed, &f));
    }

    #[test]
    fn a_clear_differs_only_from_a_field_that_holds_something() {
        let f = with_services_columns();
        let current = OpportunityFields {
            description: Some("x".into()),
            ..Default::default()
        };
        let clear = |c: ClearField| OpportunityFields {
            clear: vec![c],
            ..Default::default()
        };
        assert!(opportunity_differs(
            &current,
            &clear(ClearField::Description),
            &f
        ));
        assert!(!opportunity_differs(
            &current,
            &clear(ClearField::DealValue),
            &f
        ));
        let with_area = OpportunityFields {
            solution_area: Some("AI Business Solutions".into()),
            ..Default::default()
        };
        assert!(opportunity_differs(
            &with_area,
            &clear(ClearField::SolutionArea),
            &f
        ));
        // Without the column there is nothing to empty.
        assert!(!opportunity_differs(
            &with_area,
            &clear(ClearField::SolutionArea),
            &DataverseFields::default()
        ));
    }

    #[test]
    fn each_clear_writes_null_and_lookups_are_unbound() {
        let f = with_services_columns();
        let fields = OpportunityFields {
            clear: EVERY_CLEAR.to_vec(),
            ..Default::default()
        };
        let body = opportunity_body(&fields, OpportunityRefs::default(), &f, false);
        assert_eq!(
            Value::Object(body),
            json!({
                "estimatedvalue": null,
                "transactioncurrencyid@odata.bind": null,
                "estimatedclosedate": null,
                "description": null,
                "cosell_microsofthelp": null,
                "parentcontactid@odata.bind": null,
                "cosell_microsoftstatus": null,
                "cosell_microsoftcrmid": null,
                "cosell_solutionarea": null,
                "cosell_solutionplay": null,
                "cosell_partnerrole": null,
            })
        );
        let create = opportunity_body(&fields, OpportunityRefs::default(), &f, true);
        assert!(
            create.is_empty(),
            "a create has nothing to clear: {create:?}"
        );
    }

    #[test]
    fn a_field_both_set_and_cleared_is_set() {
        let f = with_services_columns();
        let contact = guid("0f1c2d3e-4a5b-4c6d-8e9f-0a1b2c3d4e5f");
        let fields = OpportunityFields {
            description: Some("kept".into()),
            contact_id: contact.map(|c| c.to_string()),
            solution_play: Some("Migrate and modernize".into()),
            clear: vec![
                ClearField::Description,
                ClearField::Contact,
                ClearField::SolutionPlay,
                ClearField::MicrosoftStatus,
            ],
            ..Default::default()
        };
        let refs = OpportunityRefs {
            contact,
            ..Default::default()
        };
        let body = opportunity_body(&fields, refs, &f, false);
        assert_eq!(body["description"], json!("kept"));
        assert_eq!(
            body["parentcontactid@odata.bind"],
            json!("/contacts(0f1c2d3e-4a5b-4c6d-8e9f-0a1b2c3d4e5f)")
        );
        assert_eq!(body["cosell_solutionplay"], json!("Migrate and modernize"));
        assert_eq!(body["cosell_microsoftstatus"], Value::Null);
        assert_eq!(
            set_and_cleared(&fields),
            vec![
                ClearField::Description,
                ClearField::Contact,
                ClearField::SolutionPlay
            ]
        );
    }

    #[test]
    fn services_columns_are_used_only_when_configured() {
        let fields = OpportunityFields {
            solution_area: Some("Cloud and AI Platforms".into()),
            solution_play: Some("Migrate and modernize your estate".into()),
            partner_role: Some("Implementation partner".into()),
            marketplace_intent: Some("Yes".into()),
            clear: vec![ClearField::DealValue],
            ..Default::default()
        };
        let plain = DataverseFields::default();
        let body = opportunity_body(&fields, OpportunityRefs::default(), &plain, false);
        assert_eq!(Value::Object(body), json!({"estimatedvalue": null}));
        let select = opportunity_select(&plain);
        for column in [
            "solutionarea",
            "solutionplay",
            "partnerrole",
            "marketplaceintent",
        ] {
            assert!(!select.contains(column), "{select}");
        }

        let f = with_services_columns();
        let body = opportunity_body(&fields, OpportunityRefs::default(), &f, false);
        assert_eq!(body["cosell_solutionarea"], json!("Cloud and AI Platforms"));
        assert_eq!(body["cosell_partnerrole"], json!("Implementation partner"));
        assert!(
            !body.contains_key("cosell_marketplaceintent"),
            "the marketplace intent is read only: {body:?}"
        );
        let select = opportunity_select(&f);
        for column in [
            "cosell_solutionarea",
            "cosell_solutionplay",
            "cosell_partnerrole",
            "cosell_marketplaceintent",
        ] {
            assert!(select.split(',').any(|c| c == column), "{select}");
        }
        let row = json!({
            "cosell_solutionarea": "Cloud and AI Platforms",
            "cosell_solutionplay": "Migrate and modernize your estate",
            "cosell_partnerrole": "Implementation partner",
            "cosell_marketplaceintent": "Have not decided",
        });
        let read = opportunity_fields(&row, &f, None);
        assert_eq!(read.solution_area, fields.solution_area);
        assert_eq!(read.solution_play, fields.solution_play);
        assert_eq!(read.partner_role, fields.partner_role);
        assert_eq!(read.marketplace_intent.as_deref(), Some("Have not decided"));
        assert!(read.clear.is_empty());
        assert_eq!(
            opportunity_fields(&row, &plain, None).solution_area,
            None,
            "an unconfigured column is not read"
        );
    }

    #[test]
    fn refusals_name_their_column() {
        for (message, field) in [
            (
                "The property 'new_x' does not exist on type 'Microsoft.Dynamics.CRM.opportunity'.",
                Some("new_x"),
            ),
            (
                "The following required fields of 'opportunity' are missing: closeprobability.",
                Some("closeprobability"),
            ),
            (
                "A validation error occurred. The length of the 'name' attribute of the 'opportunity' entity exceeded the maximum allowed length of '300'.",
                Some("name"),
            ),
            (
                "A validation error occurred. The value 101 of 'closeprobability' on record of type 'opportunity' is outside the valid range.",
                Some("closeprobability"),
            ),
            (
                "An undeclared property 'parentaccount' which only has property annotations in the payload but no property value was found in the payload.",
                Some("parentaccount"),
            ),
            ("account With Id = 1 Does Not Exist", None),
        ] {
            assert_eq!(field_in_message(message).as_deref(), field, "{message}");
        }
    }

    #[test]
    fn a_catalog_solution_round_trips_and_an_update_empties_a_missing_description() {
        let f = DataverseFields::default();
        let solution = CatalogSolution {
            solution_id: "SOL-1".into(),
            name: "Contoso Migrate".into(),
            description: Some("Moves estates".into()),
        };
        let body = catalog_body(&solution, &f, true).expect("valid");
        assert_eq!(
            Value::Object(body.clone()),
            json!({"cosell_solutionid": "SOL-1", "cosell_name": "Contoso Migrate", "cosell_description": "Moves estates"})
        );
        assert_eq!(catalog_solution(&Value::Object(body), &f), solution);
        assert_eq!(
            catalog_select(&f),
            "cosell_solutioncatalogid,cosell_solutionid,cosell_name,cosell_description"
        );
        let bare = CatalogSolution {
            description: None,
            ..solution.clone()
        };
        let create = catalog_body(&bare, &f, true).expect("valid");
        assert!(!create.contains_key("cosell_description"), "{create:?}");
        let update = catalog_body(&bare, &f, false).expect("valid");
        assert_eq!(update["cosell_description"], Value::Null);

        let no_description = DataverseFields {
            catalog_description: None,
            ..Default::default()
        };
        let update = catalog_body(&solution, &no_description, false).expect("valid");
        assert!(!update.contains_key("cosell_description"), "{update:?}");
        assert!(!catalog_select(&no_description).contains("description"));
        let row =
            json!({"cosell_solutionid": "SOL-1", "cosell_name": "N", "cosell_description": "D"});
        assert_eq!(catalog_solution(&row, &no_description).description, None);

        for (missing, column) in [
            (
                CatalogSolution {
                    solution_id: " ".into(),
                    ..solution.clone()
                },
                "cosell_solutionid",
            ),
            (
                CatalogSolution {
                    name: String::new(),
                    ..solution.clone()
                },
                "cosell_name",
            ),
        ] {
            match catalog_body(&missing, &f, true) {
                Err(CrmError::Rejected { field, .. }) => assert_eq!(field.as_deref(), Some(column)),
                other => panic!("expected a refusal, got {other:?}"),
            }
        }
    }

    #[test]
    fn literals_and_queries_are_escaped() {
        assert_eq!(
            query(
                "accounts",
                &[
                    ("$select", "name".into()),
                    ("$filter", "name eq 'A & B'".into())
                ]
            ),
            "accounts?$select=name&$filter=name%20eq%20%27A%20%26%20B%27"
        );
    }

    #[test]
    fn leads_accounts_and_contacts_round_trip() {
        let f = DataverseFields::default();
        let lead = LeadFields {
            topic: Some("Co-sell lead".into()),
            first_name: Some("Ada".into()),
            last_name: Some("Lovelace".into()),
            company: Some("Fabrikam".into()),
            email: Some("ada@fabrikam.example".into()),
            phone: Some("+1 555".into()),
            postal_code: Some("98052".into()),
            country: Some("US".into()),
            description: Some("notes".into()),
            state: None,
            referral_id: Some("ref".into()),
            referral_link: Some("https://x".into()),
            audit: Some("a".into()),
        };
        let body = lead_body(&lead, &f);
        assert_eq!(lead_fields(&Value::Object(body), &f), lead);

        let account = AccountFields {
            name: "Fabrikam".into(),
            street: Some("1 Main St".into()),
            city: Some("Redmond".into()),
            state: Some("WA".into()),
            postal_code: Some("98052".into()),
            country: Some("US".into()),
        };
        let body = account_body(&account, &f);
        assert_eq!(body["address1_stateorprovince"], json!("WA"));
        assert_eq!(account_fields(&Value::Object(body), &f), account);
        let no_state = DataverseFields {
            account_state: None,
            ..Default::default()
        };
        let body = account_body(&account, &no_state);
        assert!(!body.contains_key("address1_stateorprovince"));
        assert!(!account_select(&no_state).contains("stateorprovince"));

        let contact = ContactFields {
            first_name: Some("Ada".into()),
            last_name: "Lovelace".into(),
            email: Some("ada@fabrikam.example".into()),
            phone: None,
            account_id: Some("6592a1b0-ad2b-4c5b-a68a-47ab4b6c7d3e".into()),
        };
        let body = contact_body(&contact, contact.account_id.as_deref().and_then(guid));
        assert_eq!(contact_fields(&as_row(&body)), contact);
    }
}
