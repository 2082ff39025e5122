//! Between the connector's neutral CRM records and Salesforce's JSON, under the admin's field
//! names: no I/O, so every rule is tested here with plain data.

use chrono::{DateTime, Days, NaiveDate, Utc};
use serde_json::{Map, Value, json};

use super::config::SalesforceConfig;
use crate::crm::{
    AccountFields, CatalogSolution, ClearField, ContactFields, CrmError, LeadFields, LeadState,
    OpportunityFields, OpportunityState, Visibility,
};

/// A Salesforce record as the REST API returns it.
pub type Record = Map<String, Value>;

/// How far out the close date of a new opportunity lies when the referral names none:
/// Salesforce requires `CloseDate`, and a month ahead is what a seller would type for a deal
/// that just arrived. The sync overwrites it as soon as Partner Center has a date.
pub const DEFAULT_CLOSE_IN_DAYS: u64 = 30;

/// What a lead's required `LastName` and `Company` become when the referral has neither:
/// Salesforce refuses a lead without them, and a placeholder a seller can fix beats a lead
/// that never arrives.
pub const UNKNOWN: &str = "Unknown";

/// A SOQL string literal, quotes included: backslashes, quotes and control characters are
/// escaped as SOQL requires, so a value can never end the literal early.
pub fn soql_quote(value: &str) -> String {
    let mut out = String::with_capacity(value.len() + 2);
    out.push('\'');
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\'' => out.push_str("\\'"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            c => out.push(c),
        }
    }
    out.push('\'');
    out
}

/// Two record ids name the same record: the 15-character form is case-sensitive and the
/// 18-character form only adds a checksum, so the first 15 characters decide.
pub fn same_id(a: &str, b: &str) -> bool {
    let (a, b) = (a.trim(), b.trim());
    if a.len() < 15 || b.len() < 15 {
        return a == b;
    }
    a.get(..15) == b.get(..15)
}

fn text(rec: &Record, field: &str) -> Option<String> {
    rec.get(field)
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
}

fn number(rec: &Record, field: &str) -> Option<f64> {
    match rec.get(field)? {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

fn boolean(rec: &Record, field: &str) -> Option<bool> {
    match rec.get(field)? {
        Value::Bool(b) => Some(*b),
        Value::String(s) => s.parse().ok(),
        _ => None,
    }
}

fn date(rec: &Record, field: &str) -> Option<NaiveDate> {
    text(rec, field).and_then(|s| NaiveDate::parse_from_str(s.get(..10)?, "%Y-%m-%d").ok())
}

/// Salesforce writes `2024-05-01T12:00:00.000+0000`; RFC 3339 is accepted too.
pub fn datetime(rec: &Record, field: &str) -> Option<DateTime<Utc>> {
    let s = text(rec, field)?;
    DateTime::parse_from_rfc3339(&s)
        .or_else(|_| DateTime::parse_from_str(&s, "%Y-%m-%dT%H:%M:%S%.f%z"))
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

/// The record's `Id`.
pub fn id_of(rec: &Record) -> Option<String> {
    text(rec, "Id")
}

/// Sets `field` to `value` when the neutral value is `Some` (a write leaves `None` alone).
fn put<T: Into<Value>>(body: &mut Record, field: &str, value: Option<T>) {
    if let Some(v) = value {
        body.insert(field.to_string(), v.into());
    }
}

/// Why a write was refused before it was sent.
fn rejected(field: &str, message: String) -> CrmError {
    CrmError::Rejected {
        message,
        field: Some(field.to_string()),
    }
}

// ---------------------------------------------------------------- opportunities

/// The fields an opportunity read asks for, in a stable order.
/// The child relationship from an opportunity to its contact roles.
pub const CONTACT_ROLES: &str = "OpportunityContactRoles";

/// [`opportunity_select`] with the primary contact role nested, for a SOQL query: the role
/// comes with the record instead of by a query of its own (docs/salesforce.md, "Queries and
/// paging").
pub fn opportunity_query_select(c: &SalesforceConfig) -> Vec<String> {
    let mut out = opportunity_select(c);
    out.push(format!(
        "(SELECT ContactId FROM {CONTACT_ROLES} WHERE IsPrimary = true ORDER BY CreatedDate ASC LIMIT 1)"
    ));
    out
}

/// The primary contact a record read with [`opportunity_query_select`] carries: `Some(None)`
/// when it has none, `None` when the record was read without the relationship.
pub fn nested_primary_contact(rec: &Record) -> Option<Option<String>> {
    let roles = rec.get(CONTACT_ROLES)?;
    Some(
        roles
            .get("records")
            .and_then(Value::as_array)
            .and_then(|r| r.first())
            .and_then(|r| r.get("ContactId"))
            .and_then(Value::as_str)
            .map(str::to_string),
    )
}

/// Whether `id` has the shape of a Salesforce record id (15 or 18 letters and digits): a query
/// for anything else is refused by Salesforce rather than answered with nothing.
pub fn is_record_id(id: &str) -> bool {
    matches!(id.len(), 15 | 18) && id.chars().all(|c| c.is_ascii_alphanumeric())
}

pub fn opportunity_select(c: &SalesforceConfig) -> Vec<String> {
    let f = &c.fields;
    let mut out: Vec<String> = [
        "Id",
        "Name",
        "CloseDate",
        "Description",
        "StageName",
        "IsClosed",
        "IsWon",
        "AccountId",
        "LastModifiedById",
        "LastModifiedDate",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    out.push(f.deal_value.clone());
    if c.multi_currency {
        out.push(f.currency.clone());
    }
    out.extend(
        [
            &f.sync_with_partner_center,
            &f.referral_id,
            &f.referral_link,
            &f.microsoft_help,
            &f.visibility,
            &f.microsoft_crm_id,
            &f.microsoft_status,
            &f.audit,
        ]
        .into_iter()
        .cloned(),
    );
    out.extend(optional_fields(c).map(|(_, name)| name.to_string()));
    dedup(out)
}

/// One of the opt-in opportunity fields of [`SalesforceFieldNames`](super::SalesforceFieldNames).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Optional {
    SolutionArea,
    SolutionPlay,
    PartnerRole,
    MarketplaceIntent,
}

/// The opt-in fields the admin configured, with their API names. Those left unset appear in
/// no request: the org may not have them.
fn optional_fields(c: &SalesforceConfig) -> impl Iterator<Item = (Optional, &str)> {
    let f = &c.fields;
    [
        (Optional::SolutionArea, &f.solution_area),
        (Optional::SolutionPlay, &f.solution_play),
        (Optional::PartnerRole, &f.partner_role),
        (Optional::MarketplaceIntent, &f.marketplace_intent),
    ]
    .into_iter()
    .filter_map(|(which, name)| name.as_deref().map(|n| (which, n)))
}

/// Whether the write sets the field that `clear` names. A caller that both sets and clears a
/// field has made a mistake; the value it sent is the more specific instruction, so setting
/// wins and the clear is ignored for that field.
fn sets(o: &OpportunityFields, clear: ClearField) -> bool {
    match clear {
        ClearField::DealValue => o.deal_value.is_some(),
        ClearField::Currency => o.currency.is_some(),
        ClearField::CloseDate => o.close_date.is_some(),
        ClearField::Description => o.description.is_some(),
        ClearField::MicrosoftHelp => o.microsoft_help.is_some(),
        ClearField::Contact => o.contact_id.is_some(),
        ClearField::MicrosoftStatus => o.microsoft_status.is_some(),
        ClearField::MicrosoftCrmId => o.microsoft_crm_id.is_some(),
        ClearField::SolutionArea => o.solution_area.is_some(),
        ClearField::SolutionPlay => o.solution_play.is_some(),
        ClearField::PartnerRole => o.partner_role.is_some(),
    }
}

/// The fields a write both sets and clears (see [`sets`]), for the adapter to warn about.
pub fn set_and_cleared(o: &OpportunityFields) -> Vec<ClearField> {
    o.clear.iter().copied().filter(|c| sets(o, *c)).collect()
}

/// Whether an update empties `field`: asked for, and not overridden by a value (see [`sets`]).
pub fn clears(o: &OpportunityFields, field: ClearField) -> bool {
    o.clears(field) && !sets(o, field)
}

/// The field a clear writes null to; `None` when it is no field of the opportunity record (the
/// contact is a contact role, removed by the adapter), or the org has no such field (a
/// single-currency org, an unconfigured opt-in field).
fn cleared_field(c: &SalesforceConfig, clear: ClearField) -> Option<&str> {
    let f = &c.fields;
    match clear {
        ClearField::DealValue => Some(&f.deal_value),
        ClearField::Currency => c.multi_currency.then_some(f.currency.as_str()),
        // Salesforce requires a close date: the update is refused with REQUIRED_FIELD_MISSING
        // naming CloseDate, which is what the caller should see rather than a silent no-op.
        ClearField::CloseDate => Some("CloseDate"),
        ClearField::Description => Some("Description"),
        ClearField::MicrosoftHelp => Some(&f.microsoft_help),
        ClearField::Contact => None,
        ClearField::MicrosoftStatus => Some(&f.microsoft_status),
        ClearField::MicrosoftCrmId => Some(&f.microsoft_crm_id),
        ClearField::SolutionArea => f.solution_area.as_deref(),
        ClearField::SolutionPlay => f.solution_play.as_deref(),
        ClearField::PartnerRole => f.partner_role.as_deref(),
    }
}

fn dedup(list: Vec<String>) -> Vec<String> {
    let mut out: Vec<String> = Vec::with_capacity(list.len());
    for f in list {
        if !out.iter().any(|o| o.eq_ignore_ascii_case(&f)) {
            out.push(f);
        }
    }
    out
}

/// The stage name that stands for `state`.
pub fn stage_for(c: &SalesforceConfig, state: OpportunityState) -> &str {
    match state {
        OpportunityState::Active => &c.stages.active,
        OpportunityState::OnHold => &c.stages.on_hold,
        OpportunityState::Won => &c.stages.won,
        OpportunityState::Lost => &c.stages.lost,
    }
}

/// The state an opportunity is in: the configured stages first, then any other stage by
/// whether Salesforce counts it closed and won.
pub fn state_of(c: &SalesforceConfig, rec: &Record) -> OpportunityState {
    let stage = text(rec, "StageName").unwrap_or_default();
    let s = &c.stages;
    if stage == s.on_hold {
        OpportunityState::OnHold
    } else if stage == s.won {
        OpportunityState::Won
    } else if stage == s.lost {
        OpportunityState::Lost
    } else if stage == s.active {
        OpportunityState::Active
    } else if boolean(rec, "IsClosed").unwrap_or(false) {
        if boolean(rec, "IsWon").unwrap_or(false) {
            OpportunityState::Won
        } else {
            OpportunityState::Lost
        }
    } else {
        OpportunityState::Active
    }
}

/// Whether this write creates the record (required fields get defaults) or updates it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Write {
    Create { today: NaiveDate },
    Update,
}

/// The picklist value of an `assistanceRequestCode`; `none`/`Unknown` mean no help (empty).
fn help_value(c: &SalesforceConfig, code: &str) -> Value {
    if code.eq_ignore_ascii_case("none") || code.eq_ignore_ascii_case("unknown") || code.is_empty()
    {
        return Value::Null;
    }
    c.microsoft_help
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(code))
        .map(|(_, v)| json!(v))
        .unwrap_or_else(|| json!(code))
}

fn help_code(c: &SalesforceConfig, value: &str) -> String {
    c.microsoft_help
        .iter()
        .find(|(_, v)| v.eq_ignore_ascii_case(value))
        .map(|(k, _)| k.clone())
        .unwrap_or_else(|| value.to_string())
}

/// The JSON body of an opportunity write. Not included: the stage on update (the adapter
/// decides after reading the current stage) and the contact (a contact role, not a field).
pub fn opportunity_body(
    c: &SalesforceConfig,
    o: &OpportunityFields,
    write: Write,
) -> Result<Record, CrmError> {
    let f = &c.fields;
    let mut body = Record::new();
    if let Write::Create { .. } = write {
        for (k, v) in &c.opportunity_create_values {
            body.insert(k.clone(), v.clone());
        }
    }
    put(&mut body, "Name", o.name.clone());
    if let Some(v) = o.deal_value {
        if !v.is_finite() {
            return Err(rejected(
                &f.deal_value,
                format!("the deal value {v} is not a number Salesforce can store"),
            ));
        }
        body.insert(f.deal_value.clone(), json!(v));
    }
    if let Some(code) = &o.currency {
        let code = code.trim().to_ascii_uppercase();
        if c.multi_currency {
            body.insert(f.currency.clone(), json!(code));
        } else if !code.eq_ignore_ascii_case(&c.corporate_currency) {
            return Err(rejected(
                &f.currency,
                format!(
                    "the deal is in {code}, but this Salesforce org is not multi-currency and keeps every amount in {}; convert the deal value to {} in Partner Center, or turn on multi-currency in Salesforce and in the connector",
                    c.corporate_currency, c.corporate_currency
                ),
            ));
        }
    }
    match (o.close_date, write) {
        (Some(d), _) => {
            body.insert("CloseDate".into(), json!(d.format("%Y-%m-%d").to_string()));
        }
        (None, Write::Create { today }) if !body.contains_key("CloseDate") => {
            let d = today
                .checked_add_days(Days::new(DEFAULT_CLOSE_IN_DAYS))
                .unwrap_or(today);
            body.insert("CloseDate".into(), json!(d.format("%Y-%m-%d").to_string()));
        }
        _ => {}
    }
    put(&mut body, "Description", o.description.clone());
    if let Write::Create { .. } = write {
        let state = o.state.unwrap_or(OpportunityState::Active);
        body.insert("StageName".into(), json!(stage_for(c, state)));
    }
    put(&mut body, "AccountId", o.account_id.clone());
    put(
        &mut body,
        &f.sync_with_partner_center,
        o.sync_with_partner_center,
    );
    put(&mut body, &f.referral_id, o.referral_id.clone());
    put(&mut body, &f.referral_link, o.referral_link.clone());
    if let Some(code) = &o.microsoft_help {
        body.insert(f.microsoft_help.clone(), help_value(c, code));
    }
    put(
        &mut body,
        &f.visibility,
        o.visibility.map(|v| match v {
            Visibility::Private => c.visibility.private.clone(),
            Visibility::Visible => c.visibility.visible.clone(),
        }),
    );
    put(&mut body, &f.microsoft_crm_id, o.microsoft_crm_id.clone());
    put(&mut body, &f.microsoft_status, o.microsoft_status.clone());
    put(&mut body, &f.audit, o.audit.clone());
    for (which, name) in optional_fields(c) {
        let value = match which {
            Optional::SolutionArea => &o.solution_area,
            Optional::SolutionPlay => &o.solution_play,
            Optional::PartnerRole => &o.partner_role,
            // Read only: the seller records the customer's intent, the connector never does.
            Optional::MarketplaceIntent => continue,
        };
        put(&mut body, name, value.clone());
    }
    // A new record has nothing to empty.
    if write == Write::Update {
        for clear in o.clear.iter().copied().filter(|x| clears(o, *x)) {
            if let Some(name) = cleared_field(c, clear) {
                body.insert(name.to_string(), Value::Null);
            }
        }
    }
    Ok(body)
}

/// The neutral fields of an opportunity record. `contact_id` comes from its primary contact
/// role, which is not a field of the record.
pub fn opportunity_fields(
    c: &SalesforceConfig,
    rec: &Record,
    contact_id: Option<String>,
) -> OpportunityFields {
    let f = &c.fields;
    let visibility = text(rec, &f.visibility).and_then(|v| {
        if v.eq_ignore_ascii_case(&c.visibility.visible) {
            Some(Visibility::Visible)
        } else if v.eq_ignore_ascii_case(&c.visibility.private) {
            Some(Visibility::Private)
        } else {
            None
        }
    });
    let currency = if c.multi_currency {
        text(rec, &f.currency)
    } else {
        // Every amount of a single-currency org is in its currency.
        Some(c.corporate_currency.to_ascii_uppercase())
    };
    OpportunityFields {
        name: text(rec, "Name"),
        deal_value: number(rec, &f.deal_value),
        currency,
        close_date: date(rec, "CloseDate"),
        description: text(rec, "Description"),
        state: Some(state_of(c, rec)),
        account_id: text(rec, "AccountId"),
        contact_id,
        sync_with_partner_center: boolean(rec, &f.sync_with_partner_center),
        referral_id: text(rec, &f.referral_id),
        referral_link: text(rec, &f.referral_link),
        microsoft_help: text(rec, &f.microsoft_help).map(|v| help_code(c, &v)),
        visibility,
        microsoft_crm_id: text(rec, &f.microsoft_crm_id),
        microsoft_status: text(rec, &f.microsoft_status),
        audit: text(rec, &f.audit),
        solution_area: f.solution_area.as_deref().and_then(|n| text(rec, n)),
        solution_play: f.solution_play.as_deref().and_then(|n| text(rec, n)),
        partner_role: f.partner_role.as_deref().and_then(|n| text(rec, n)),
        marketplace_intent: f.marketplace_intent.as_deref().and_then(|n| text(rec, n)),
        clear: Vec::new(),
    }
}

// ---------------------------------------------------------------- leads

pub fn lead_select(c: &SalesforceConfig) -> Vec<String> {
    let f = &c.fields;
    let mut out: Vec<String> = [
        "Id",
        "FirstName",
        "LastName",
        "Company",
        "Email",
        "Phone",
        "PostalCode",
        "Country",
        "Description",
        "Status",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    out.extend([
        f.lead_referral_id.clone(),
        f.lead_referral_link.clone(),
        f.lead_audit.clone(),
    ]);
    out.extend(f.lead_topic.clone());
    dedup(out)
}

fn lead_status(c: &SalesforceConfig, state: LeadState) -> Option<&str> {
    let l = &c.lead_statuses;
    match state {
        LeadState::Open => l.open.first(),
        LeadState::Qualified => l.qualified.first(),
        LeadState::Disqualified => l.disqualified.first(),
    }
    .map(String::as_str)
}

fn lead_state(c: &SalesforceConfig, status: &str) -> Option<LeadState> {
    let l = &c.lead_statuses;
    let has = |list: &[String]| list.iter().any(|v| v.eq_ignore_ascii_case(status));
    if has(&l.open) {
        Some(LeadState::Open)
    } else if has(&l.qualified) {
        Some(LeadState::Qualified)
    } else if has(&l.disqualified) {
        Some(LeadState::Disqualified)
    } else {
        None
    }
}

/// The JSON body of a lead write. On create, Salesforce's required `LastName` falls back to the
/// company and then to [`UNKNOWN`], `Company` to [`UNKNOWN`]; without a topic field the topic
/// leads the description.
pub fn lead_body(c: &SalesforceConfig, l: &LeadFields, write: Write) -> Record {
    let f = &c.fields;
    let mut body = Record::new();
    let creating = matches!(write, Write::Create { .. });
    if creating {
        for (k, v) in &c.lead_create_values {
            body.insert(k.clone(), v.clone());
        }
    }
    let present = |v: &Option<String>| v.clone().filter(|s| !s.trim().is_empty());
    put(&mut body, "FirstName", l.first_name.clone());
    let (last_name, company) = if creating {
        let company = present(&l.company);
        (
            Some(
                present(&l.last_name)
                    .or_else(|| company.clone())
                    .unwrap_or_else(|| UNKNOWN.to_string()),
            ),
            Some(company.unwrap_or_else(|| UNKNOWN.to_string())),
        )
    } else {
        (l.last_name.clone(), l.company.clone())
    };
    put(&mut body, "LastName", last_name);
    put(&mut body, "Company", company);
    put(&mut body, "Email", l.email.clone());
    put(&mut body, "Phone", l.phone.clone());
    put(&mut body, "PostalCode", l.postal_code.clone());
    put(&mut body, "Country", l.country.clone());
    match &f.lead_topic {
        Some(topic_field) => {
            put(&mut body, topic_field, l.topic.clone());
            put(&mut body, "Description", l.description.clone());
        }
        None => {
            let joined = match (present(&l.topic), present(&l.description)) {
                (Some(t), Some(d)) => Some(format!("{t}\n\n{d}")),
                (t, d) => t.or(d),
            };
            put(&mut body, "Description", joined);
        }
    }
    let state = l
        .state
        .or(creating.then_some(LeadState::Open))
        .and_then(|s| lead_status(c, s));
    put(&mut body, "Status", state);
    put(&mut body, &f.lead_referral_id, l.referral_id.clone());
    put(&mut body, &f.lead_referral_link, l.referral_link.clone());
    put(&mut body, &f.lead_audit, l.audit.clone());
    body
}

pub fn lead_fields(c: &SalesforceConfig, rec: &Record) -> LeadFields {
    let f = &c.fields;
    LeadFields {
        topic: f.lead_topic.as_ref().and_then(|t| text(rec, t)),
        first_name: text(rec, "FirstName"),
        last_name: text(rec, "LastName"),
        company: text(rec, "Company"),
        email: text(rec, "Email"),
        phone: text(rec, "Phone"),
        postal_code: text(rec, "PostalCode"),
        country: text(rec, "Country"),
        description: text(rec, "Description"),
        state: text(rec, "Status").and_then(|s| lead_state(c, &s)),
        referral_id: text(rec, &f.lead_referral_id),
        referral_link: text(rec, &f.lead_referral_link),
        audit: text(rec, &f.lead_audit),
    }
}

// ---------------------------------------------------------------- accounts and contacts

pub fn account_select(c: &SalesforceConfig) -> Vec<String> {
    dedup(
        [
            "Id",
            "Name",
            "BillingStreet",
            "BillingCity",
            "BillingState",
            "BillingPostalCode",
            c.fields.account_country.as_str(),
        ]
        .iter()
        .map(|s| s.to_string())
        .collect(),
    )
}

pub fn account_body(c: &SalesforceConfig, a: &AccountFields) -> Record {
    let mut body = Record::new();
    body.insert("Name".into(), json!(a.name));
    put(&mut body, "BillingStreet", a.street.clone());
    put(&mut body, "BillingCity", a.city.clone());
    put(&mut body, "BillingState", a.state.clone());
    put(&mut body, "BillingPostalCode", a.postal_code.clone());
    put(&mut body, &c.fields.account_country, a.country.clone());
    body
}

pub fn account_fields(c: &SalesforceConfig, rec: &Record) -> AccountFields {
    AccountFields {
        name: text(rec, "Name").unwrap_or_default(),
        street: text(rec, "BillingStreet"),
        city: text(rec, "BillingCity"),
        state: text(rec, "BillingState"),
        postal_code: text(rec, "BillingPostalCode"),
        country: text(rec, &c.fields.account_country),
    }
}

pub const CONTACT_SELECT: &[&str] = &["Id", "FirstName", "LastName", "Email", "Phone", "AccountId"];

pub fn contact_body(c: &ContactFields) -> Record {
    let mut body = Record::new();
    put(&mut body, "FirstName", c.first_name.clone());
    body.insert("LastName".into(), json!(c.last_name));
    put(&mut body, "Email", c.email.clone());
    put(&mut body, "Phone", c.phone.clone());
    put(&mut body, "AccountId", c.account_id.clone());
    body
}

pub fn contact_fields(rec: &Record) -> ContactFields {
    ContactFields {
        first_name: text(rec, "FirstName"),
        last_name: text(rec, "LastName").unwrap_or_default(),
        email: text(rec, "Email"),
        phone: text(rec, "Phone"),
        account_id: text(rec, "AccountId"),
    }
}

// ---------------------------------------------------------------- the solution catalog

pub fn catalog_select(c: &SalesforceConfig) -> Vec<String> {
    let f = &c.fields;
    let mut out = vec![
        "Id".to_string(),
        f.catalog_solution_id.clone(),
        f.catalog_name.clone(),
    ];
    out.extend(f.catalog_description.clone());
    dedup(out)
}

/// The JSON body of a catalog write: every field the settings name. On update a missing
/// description is written as null, since an update writes the whole solution; a create leaves
/// it out. Refused before sending when the solution has no id (the upsert's key) or no name.
pub fn catalog_body(
    c: &SalesforceConfig,
    solution: &CatalogSolution,
    create: bool,
) -> Result<Record, CrmError> {
    let f = &c.fields;
    if solution.solution_id.trim().is_empty() {
        return Err(rejected(
            &f.catalog_solution_id,
            "a catalog solution needs a Partner Center solution id".into(),
        ));
    }
    if solution.name.trim().is_empty() {
        return Err(rejected(
            &f.catalog_name,
            "a catalog solution needs a name".into(),
        ));
    }
    let mut body = Record::new();
    body.insert(f.catalog_solution_id.clone(), json!(solution.solution_id));
    body.insert(f.catalog_name.clone(), json!(solution.name));
    if let Some(field) = &f.catalog_description {
        match &solution.description {
            Some(d) => {
                body.insert(field.clone(), json!(d));
            }
            None if !create => {
                body.insert(field.clone(), Value::Null);
            }
            None => {}
        }
    }
    Ok(body)
}

/// A catalog record's solution; a missing id or name reads as empty (every record is listed).
pub fn catalog_solution(c: &SalesforceConfig, rec: &Record) -> CatalogSolution {
    let f = &c.fields;
    CatalogSolution {
        solution_id: text(rec, &f.catalog_solution_id).unwrap_or_default(),
        name: text(rec, &f.catalog_name).unwrap_or_default(),
        description: f.catalog_description.as_ref().and_then(|d| text(rec, d)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crm::salesforce::config::SalesforceAuth;

    fn record(v: Value) -> Record {
        match v {
            Value::Object(m) => m,
            _ => Record::new(),
        }
    }

    #[test]
    fn the_nested_primary_contact_is_read_and_told_apart_from_a_record_read_without_it() {
        let with = record(json!({"Id": "006000000000001AAA", CONTACT_ROLES: {
            "totalSize": 1, "done": true,
            "records": [{"attributes": {"type": "OpportunityContactRole"}, "ContactId": "003000000000001AAA"}]
        }}));
        assert_eq!(
            nested_primary_contact(&with),
            Some(Some("003000000000001AAA".to_string()))
        );
        let none = record(json!({"Id": "006000000000001AAA", CONTACT_ROLES: null}));
        assert_eq!(
            nested_primary_contact(&none),
            Some(None),
            "no role: no contact"
        );
        let without = record(json!({"Id": "006000000000001AAA"}));
        assert_eq!(nested_primary_contact(&without), None, "not asked for");
    }

    #[test]
    fn only_what_looks_like_a_record_id_is_queried() {
        assert!(is_record_id("006000000000001"));
        assert!(is_record_id("006000000000001AAA"));
        for bad in ["", "not-an-id", "006000000000001AA", "006000000000001AA'"] {
            assert!(!is_record_id(bad), "{bad}");
        }
    }

    fn config() -> SalesforceConfig {
        SalesforceConfig::new(SalesforceAuth::ClientCredentials {
            client_id: "id".into(),
            client_secret: "secret".into(),
        })
    }

    fn rec(v: Value) -> Record {
        match v {
            Value::Object(m) => m,
            _ => Record::new(),
        }
    }

    fn today() -> NaiveDate {
        NaiveDate::from_ymd_opt(2025, 1, 20).unwrap_or_default()
    }

    #[test]
    fn a_catalog_solution_round_trips_and_an_update_empties_a_missing_description() {
        let c = config();
        let solution = CatalogSolution {
            solution_id: "SOL-1".into(),
            name: "Contoso Migrate".into(),
            description: Some("Cloud and AI Platforms".into()),
        };
        let body = catalog_body(&c, &solution, true).unwrap_or_default();
        assert_eq!(
            Value::Object(body.clone()),
            json!({"Solution_Id__c": "SOL-1", "Name": "Contoso Migrate", "Solution_Area__c": "Cloud and AI Platforms"})
        );
        assert_eq!(catalog_solution(&c, &body), solution);
        assert_eq!(
            catalog_select(&c),
            ["Id", "Solution_Id__c", "Name", "Solution_Area__c"]
        );
        let bare = CatalogSolution {
            description: None,
            ..solution.clone()
        };
        let create = catalog_body(&c, &bare, true).unwrap_or_default();
        assert!(!create.contains_key("Solution_Area__c"), "{create:?}");
        let update = catalog_body(&c, &bare, false).unwrap_or_default();
        assert_eq!(update.get("Solution_Area__c"), Some(&Value::Null));

        let mut plain = config();
        plain.fields.catalog_description = None;
        let update = catalog_body(&plain, &solution, false).unwrap_or_default();
        assert!(!update.contains_key("Solution_Area__c"), "{update:?}");
        assert_eq!(catalog_select(&plain), ["Id", "Solution_Id__c", "Name"]);
        assert_eq!(catalog_solution(&plain, &body).description, None);

        let no_id = CatalogSolution {
            solution_id: " ".into(),
            ..solution.clone()
        };
        assert!(matches!(
            catalog_body(&c, &no_id, true),
            Err(CrmError::Rejected { field: Some(f), .. }) if f == "Solution_Id__c"
        ));
        let no_name = CatalogSolution {
            name: String::new(),
            ..solution
        };
        assert!(matches!(
            catalog_body(&c, &no_name, false),
            Err(CrmError::Rejected { field: Some(f), .. }) if f == "Name"
        ));
    }

    #[test]
    fn soql_literals_escape_quotes_and_backslashes() {
        assert_eq!(soql_quote("plain"), "'plain'");
        assert_eq!(soql_quote("O'Brien"), r"'O\'Brien'");
        assert_eq!(soql_quote(r"a\b"), r"'a\\b'");
        assert_eq!(soql_quote(r"\'; DELETE"), r"'\\\'; DELETE'");
        assert_eq!(soql_quote("two\nlines"), r"'two\nlines'");
    }

    #[test]
    fn ids_compare_on_their_case_sensitive_part() {
        assert!(same_id("0055g00000000A1AAA", "0055g00000000A1"));
        assert!(!same_id("0055g00000000A1AAA", "0055g00000000a1AAA"));
        assert!(!same_id("short", "other"));
    }

    #[test]
    fn stages_map_both_ways_and_unknown_stages_follow_closed_and_won() {
        let c = config();
        for state in [
            OpportunityState::Active,
            OpportunityState::OnHold,
            OpportunityState::Won,
            OpportunityState::Lost,
        ] {
            let r = rec(json!({"StageName": stage_for(&c, state)}));
            assert_eq!(state_of(&c, &r), state);
        }
        let cases = [
            (
                json!({"StageName": "Negotiation/Review", "IsClosed": false}),
                OpportunityState::Active,
            ),
            (
                json!({"StageName": "Won Big", "IsClosed": true, "IsWon": true}),
                OpportunityState::Won,
            ),
            (
                json!({"StageName": "Cancelled", "IsClosed": true, "IsWon": false}),
                OpportunityState::Lost,
            ),
        ];
        for (r, want) in cases {
            assert_eq!(state_of(&c, &rec(r.clone())), want, "{r}");
        }
    }

    #[test]
    fn a_create_fills_required_fields_and_an_update_writes_only_what_is_set() {
        let c = config();
        let fields = OpportunityFields {
            name: Some("Contoso".into()),
            state: Some(OpportunityState::OnHold),
            microsoft_help: Some("ProofOfConceptOrDemo".into()),
            visibility: Some(Visibility::Visible),
            ..Default::default()
        };
        let body =
            opportunity_body(&c, &fields, Write::Create { today: today() }).unwrap_or_default();
        assert_eq!(body["CloseDate"], json!("2025-02-19"));
        assert_eq!(body["StageName"], json!("On Hold"));
        assert_eq!(
            body["How_can_Microsoft_help__c"],
            json!("Proof of concept or demo")
        );
        assert_eq!(body["Referral_Visibility__c"], json!("Visible"));
        let update = opportunity_body(
            &c,
            &OpportunityFields {
                description: Some("notes".into()),
                state: Some(OpportunityState::Won),
                ..Default::default()
            },
            Write::Update,
        )
        .unwrap_or_default();
        assert_eq!(update, rec(json!({"Description": "notes"})));
    }

    #[test]
    fn no_help_clears_the_picklist_and_reads_back_as_none() {
        let c = config();
        let body = opportunity_body(
            &c,
            &OpportunityFields {
                microsoft_help: Some("none".into()),
                ..Default::default()
            },
            Write::Update,
        )
        .unwrap_or_default();
        assert_eq!(body["How_can_Microsoft_help__c"], Value::Null);
        let read = opportunity_fields(&c, &body, None);
        assert_eq!(read.microsoft_help, None);
    }

    fn services_config() -> SalesforceConfig {
        let mut c = config();
        c.fields.solution_area = Some("Solution_Area__c".into());
        c.fields.solution_play = Some("Solution_Play__c".into());
        c.fields.partner_role = Some("Partner_Role__c".into());
        c.fields.marketplace_intent = Some("Marketplace_Intent__c".into());
        c
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

    #[test]
    fn each_clear_writes_null_but_a_create_clears_nothing() {
        let mut c = services_config();
        c.multi_currency = true;
        let fields = OpportunityFields {
            clear: EVERY_CLEAR.to_vec(),
            ..Default::default()
        };
        let body = opportunity_body(&c, &fields, Write::Update).unwrap_or_default();
        assert_eq!(
            Value::Object(body),
            json!({
                "Amount": null,
                "CurrencyIsoCode": null,
                "CloseDate": null,
                "Description": null,
                "How_can_Microsoft_help__c": null,
                "Microsoft_Status__c": null,
                "Microsoft_CRM_Identifier__c": null,
                "Solution_Area__c": null,
                "Solution_Play__c": null,
                "Partner_Role__c": null,
            }),
            "the contact is a contact role, not a field"
        );
        let create =
            opportunity_body(&c, &fields, Write::Create { today: today() }).unwrap_or_default();
        assert_eq!(create["CloseDate"], json!("2025-02-19"));
        assert!(
            !create.contains_key("Amount") && !create.contains_key("Description"),
            "{create:?}"
        );
    }

    #[test]
    fn a_single_currency_org_has_no_currency_to_clear_and_unset_fields_none_to_empty() {
        let c = config();
        let fields = OpportunityFields {
            clear: vec![
                ClearField::Currency,
                ClearField::SolutionArea,
                ClearField::SolutionPlay,
                ClearField::PartnerRole,
            ],
            ..Default::default()
        };
        let body = opportunity_body(&c, &fields, Write::Update).unwrap_or_default();
        assert!(body.is_empty(), "{body:?}");
    }

    #[test]
    fn a_field_both_set_and_cleared_is_set() {
        let c = services_config();
        let fields = OpportunityFields {
            description: Some("kept".into()),
            partner_role: Some("Co-sell partner".into()),
            contact_id: Some("003000000000001AAA".into()),
            clear: vec![
                ClearField::Description,
                ClearField::PartnerRole,
                ClearField::Contact,
                ClearField::MicrosoftCrmId,
            ],
            ..Default::default()
        };
        let body = opportunity_body(&c, &fields, Write::Update).unwrap_or_default();
        assert_eq!(
            Value::Object(body),
            json!({
                "Description": "kept",
                "Partner_Role__c": "Co-sell partner",
                "Microsoft_CRM_Identifier__c": null,
            })
        );
        assert!(!clears(&fields, ClearField::Contact));
        assert!(clears(&fields, ClearField::MicrosoftCrmId));
        assert_eq!(
            set_and_cleared(&fields),
            vec![
                ClearField::Description,
                ClearField::PartnerRole,
                ClearField::Contact
            ]
        );
    }

    #[test]
    fn services_fields_are_read_and_written_only_when_configured() {
        let fields = OpportunityFields {
            solution_area: Some("Cloud and AI Platforms".into()),
            solution_play: Some("Migrate and modernize your estate".into()),
            partner_role: Some("Implementation partner".into()),
            marketplace_intent: Some("Yes".into()),
            ..Default::default()
        };
        let plain = config();
        assert!(
            opportunity_body(&plain, &fields, Write::Update)
                .unwrap_or_default()
                .is_empty()
        );
        let select = opportunity_select(&plain);
        assert!(
            !select.iter().any(|f| f.contains("Solution")
                || f.contains("Partner_Role")
                || f.contains("Marketplace")),
            "{select:?}"
        );

        let c = services_config();
        let body = opportunity_body(&c, &fields, Write::Update).unwrap_or_default();
        assert_eq!(
            Value::Object(body.clone()),
            json!({
                "Solution_Area__c": "Cloud and AI Platforms",
                "Solution_Play__c": "Migrate and modernize your estate",
                "Partner_Role__c": "Implementation partner",
            }),
            "the marketplace intent is read only"
        );
        let select = opportunity_select(&c);
        for name in [
            "Solution_Area__c",
            "Solution_Play__c",
            "Partner_Role__c",
            "Marketplace_Intent__c",
        ] {
            assert!(select.iter().any(|f| f == name), "{select:?}");
        }
        let mut rec = body;
        rec.insert("Marketplace_Intent__c".into(), json!("Have not decided"));
        let read = opportunity_fields(&c, &rec, None);
        assert_eq!(read.solution_area, fields.solution_area);
        assert_eq!(read.solution_play, fields.solution_play);
        assert_eq!(read.partner_role, fields.partner_role);
        assert_eq!(read.marketplace_intent.as_deref(), Some("Have not decided"));
        assert!(read.clear.is_empty());
        assert_eq!(
            opportunity_fields(&plain, &rec, None).marketplace_intent,
            None
        );
    }

    #[test]
    fn a_foreign_currency_is_refused_unless_the_org_is_multi_currency() {
        let mut c = config();
        let eur = OpportunityFields {
            currency: Some("eur".into()),
            ..Default::default()
        };
        match opportunity_body(&c, &eur, Write::Update) {
            Err(CrmError::Rejected { message, field }) => {
                assert_eq!(field.as_deref(), Some("CurrencyIsoCode"));
                assert!(message.contains("EUR") && message.contains("multi-currency"));
            }
            other => panic!("expected a rejection, got {other:?}"),
        }
        let usd = OpportunityFields {
            currency: Some("usd".into()),
            ..Default::default()
        };
        assert_eq!(
            opportunity_body(&c, &usd, Write::Update).map(|b| b.is_empty()),
            Ok(true)
        );
        c.multi_currency = true;
        let body = opportunity_body(&c, &eur, Write::Update).unwrap_or_default();
        assert_eq!(body["CurrencyIsoCode"], json!("EUR"));
    }

    #[test]
    fn configured_create_values_are_kept_unless_the_connector_sets_the_field() {
        let mut c = config();
        c.opportunity_create_values
            .insert("LeadSource".into(), json!("Partner Referral"));
        c.opportunity_create_values
            .insert("CloseDate".into(), json!("2030-01-01"));
        let body = opportunity_body(
            &c,
            &OpportunityFields::default(),
            Write::Create { today: today() },
        )
        .unwrap_or_default();
        assert_eq!(body["LeadSource"], json!("Partner Referral"));
        assert_eq!(body["CloseDate"], json!("2030-01-01"));
    }

    #[test]
    fn a_lead_without_names_gets_placeholders_and_the_topic_leads_the_description() {
        let c = config();
        let body = lead_body(
            &c,
            &LeadFields {
                topic: Some("Cloud migration".into()),
                description: Some("500 seats".into()),
                ..Default::default()
            },
            Write::Create { today: today() },
        );
        assert_eq!(body["LastName"], json!(UNKNOWN));
        assert_eq!(body["Company"], json!(UNKNOWN));
        assert_eq!(body["Description"], json!("Cloud migration\n\n500 seats"));
        assert_eq!(body["Status"], json!("Open - Not Contacted"));
        let with_company = lead_body(
            &c,
            &LeadFields {
                company: Some("Fabrikam".into()),
                ..Default::default()
            },
            Write::Create { today: today() },
        );
        assert_eq!(with_company["LastName"], json!("Fabrikam"));
        let update = lead_body(
            &c,
            &LeadFields {
                state: Some(LeadState::Disqualified),
                ..Default::default()
            },
            Write::Update,
        );
        assert_eq!(update, rec(json!({"Status": "Closed - Not Converted"})));
    }

    #[test]
    fn lead_statuses_read_back_to_states() {
        let c = config();
        let state = |s: &str| lead_fields(&c, &rec(json!({"Status": s}))).state;
        assert_eq!(state("Working - Contacted"), Some(LeadState::Open));
        assert_eq!(state("closed - converted"), Some(LeadState::Qualified));
        assert_eq!(
            state("Closed - Not Converted"),
            Some(LeadState::Disqualified)
        );
        assert_eq!(state("Nurture"), None);
    }

    #[test]
    fn salesforce_datetimes_parse() {
        let r = rec(json!({"LastModifiedDate": "2024-05-01T12:30:00.000+0000"}));
        assert_eq!(
            datetime(&r, "LastModifiedDate").map(|t| t.to_rfc3339()),
            Some("2024-05-01T12:30:00+00:00".to_string())
        );
    }
}
