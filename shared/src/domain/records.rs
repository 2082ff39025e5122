//! The CRM records the sync reads and writes, in the connector's own terms: an opportunity (or
//! lead), its account and contact. Each CRM adapter maps them to its API and the field names
//! the admin configured.

use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};

/// A CRM record id: a GUID in Dataverse, an 18-character id in Salesforce.
pub type CrmId = String;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CrmKind {
    Dynamics,
    Salesforce,
}

/// Where an opportunity stands. Dataverse maps these to statecode/statuscode (In Progress,
/// On Hold, Win/Lose actions); Salesforce to the stage names the admin configured.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum OpportunityState {
    Active,
    /// The hold stage: an incoming referral not yet accepted.
    OnHold,
    Won,
    Lost,
}

impl OpportunityState {
    pub fn is_closed(self) -> bool {
        matches!(self, OpportunityState::Won | OpportunityState::Lost)
    }
}

/// Referral visibility as the seller sets it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Visibility {
    Private,
    Visible,
}

/// The opportunity fields the connector reads and writes. In a write, `None` leaves a field as
/// it is; in a read, `None` means empty in the CRM.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OpportunityFields {
    pub name: Option<String>,
    pub deal_value: Option<f64>,
    /// ISO 4217 code.
    pub currency: Option<String>,
    pub close_date: Option<NaiveDate>,
    pub description: Option<String>,
    pub state: Option<OpportunityState>,
    pub account_id: Option<CrmId>,
    /// The customer contact (Dataverse `parentcontactid`; Salesforce's primary contact role).
    pub contact_id: Option<CrmId>,
    pub sync_with_partner_center: Option<bool>,
    pub referral_id: Option<String>,
    pub referral_link: Option<String>,
    /// `none` or an `assistanceRequestCode` value.
    pub microsoft_help: Option<String>,
    pub visibility: Option<Visibility>,
    pub microsoft_crm_id: Option<String>,
    pub microsoft_status: Option<String>,
    pub audit: Option<String>,
    /// Services co-sell: the solution area, solution play and partner role, as Partner Center
    /// spells them (the admin's allowed-values list decides what may be sent).
    pub solution_area: Option<String>,
    pub solution_play: Option<String>,
    pub partner_role: Option<String>,
    /// The customer's marketplace intent as the CRM holds it (`Yes`, `No`, `Have not decided`
    /// or Partner Center's `HaveNotDecided` spelling); read only, sent on create.
    pub marketplace_intent: Option<String>,
    /// In a write: fields to empty (`None` above can only leave a field as it is). Never set by
    /// a read.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub clear: Vec<ClearField>,
}

/// An opportunity field a write can empty.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum ClearField {
    DealValue,
    Currency,
    CloseDate,
    Description,
    MicrosoftHelp,
    /// The customer contact (Dataverse: the contact lookup; Salesforce: the primary contact
    /// role is removed).
    Contact,
    MicrosoftStatus,
    MicrosoftCrmId,
    SolutionArea,
    SolutionPlay,
    PartnerRole,
}

impl OpportunityFields {
    /// Whether a write of these fields empties `field`.
    pub fn clears(&self, field: ClearField) -> bool {
        self.clear.contains(&field)
    }
}

/// An opportunity as read from the CRM.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Opportunity {
    pub id: CrmId,
    pub fields: OpportunityFields,
    pub modified_at: Option<DateTime<Utc>>,
    /// Whether the connector's own CRM user made the last change (no echo back).
    pub modified_by_connector: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum LeadState {
    Open,
    Qualified,
    Disqualified,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LeadFields {
    /// The topic (Dataverse `subject`; Salesforce has no topic and uses the description).
    pub topic: Option<String>,
    pub first_name: Option<String>,
    pub last_name: Option<String>,
    pub company: Option<String>,
    pub email: Option<String>,
    pub phone: Option<String>,
    pub postal_code: Option<String>,
    pub country: Option<String>,
    pub description: Option<String>,
    pub state: Option<LeadState>,
    pub referral_id: Option<String>,
    pub referral_link: Option<String>,
    pub audit: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Lead {
    pub id: CrmId,
    pub fields: LeadFields,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AccountFields {
    pub name: String,
    pub street: Option<String>,
    pub city: Option<String>,
    pub state: Option<String>,
    pub postal_code: Option<String>,
    /// ISO 3166 alpha-2, in the configured country field.
    pub country: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Account {
    pub id: CrmId,
    pub fields: AccountFields,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ContactFields {
    pub first_name: Option<String>,
    pub last_name: String,
    pub email: Option<String>,
    pub phone: Option<String>,
    pub account_id: Option<CrmId>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Contact {
    pub id: CrmId,
    pub fields: ContactFields,
}
