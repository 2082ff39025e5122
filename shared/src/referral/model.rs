//! The referral resource as Partner Center sends it.
//!
//! Every struct carries an `extra` map (see the module root for why). Fields are
//! `Option` because Partner Center omits or nulls almost anything depending on
//! who created the referral and which API version wrote it last.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Number, Value};

use super::enums::{
    AssistanceRequestCode, Direction, Qualification, ReferralType, Status, Substatus, TargetType,
};

/// Fields the model does not name, in the order received, written back as they came.
pub type Extra = Map<String, Value>;

/// A Partner Center referral (lead or co-sell opportunity).
///
/// Timestamps stay the exact strings the service sent (seven fractional digits);
/// parsing them would change their text on a write-back, which the service could
/// read as an edit. Explicit `null` on a modelled field reads as `None` and is
/// written back as an absent key: Partner Center treats the two alike. Unmodelled
/// keys, nulls included, land in `extra` and are written back unchanged.
///
/// Fields seen only in unverified payloads (`quality`, `isSpam`, `mpnId`,
/// `referralProgram`, `dealSensitivity`, `createdVia`, `tags`, `registrationStatus`,
/// `registrations`, `@odata.context`) are deliberately left to `extra`: a wrong
/// guess at their type would make every referral carrying them unreadable.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Referral {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// Shared by the referrals of every party working the same deal.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub engagement_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Our CRM record id; the only link from Partner Center back to the CRM.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub external_reference_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_date_time: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub updated_date_time: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expiration_date_time: Option<String>,
    /// Equals the creation time for outgoing referrals.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub accepted_date_time: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub closed_date_time: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<Status>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub substatus: Option<Substatus>,
    /// Free text; the API has no reason codes for declines and losses.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status_reason: Option<String>,
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    pub r#type: Option<ReferralType>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub qualification: Option<Qualification>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub direction: Option<Direction>,
    /// Marketplace leads only; Microsoft says not to classify referrals by it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub referral_source: Option<String>,
    /// Marketplace leads only; Microsoft says not to classify referrals by it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub call_to_action: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub customer_profile: Option<CustomerProfile>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consent: Option<Consent>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub details: Option<Details>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub customer_marketplace_intent: Option<String>,
    /// Our own sellers on the deal.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub team: Option<Vec<Member>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub invite_context: Option<InviteContext>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<Vec<Target>>,
    /// Opaque and already quoted (`"\"…\""`); sent back verbatim as `If-Match`.
    #[serde(rename = "eTag", default, skip_serializing_if = "Option::is_none")]
    pub e_tag: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub organization_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub organization_name: Option<String>,
    /// Required for Services co-sell referrals; the FY26 values are not published.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub partner_role: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub solution_area: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub solution_play: Option<String>,
    /// Swagger lists `Qualify`…`Close`, real payloads carry percentages like `"100"`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sales_stage: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub campaign_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub favorite: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_modified_via: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_run_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tracking_info: Option<TrackingInfo>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub links: Option<Links>,
    #[serde(flatten)]
    pub extra: Extra,
}

impl Referral {
    /// A closed referral accepts no further writes, whatever its substatus.
    pub fn is_closed(&self) -> bool {
        self.status.as_ref().is_some_and(Status::is_terminal)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CustomerProfile {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// An employee-count band such as `10to50employees`; the legacy bands still occur.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<Address>,
    /// The customer's contacts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub team: Option<Vec<Member>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ids: Option<Vec<CustomerId>>,
    #[serde(flatten)]
    pub extra: Extra,
}

#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Address {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address_line1: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address_line2: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub city: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub postal_code: Option<String>,
    /// ISO 3166 alpha-2; anything longer is the most common validation failure.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub country: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    #[serde(flatten)]
    pub extra: Extra,
}

/// An external id of the customer organisation.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CustomerId {
    /// `Duns` or `External` per the swagger; kept as text because the older docs disagree.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub profile_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(flatten)]
    pub extra: Extra,
}

/// A person on either side of the deal (our team or the customer's contacts).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Member {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phone_number: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub contact_preference: Option<ContactPreference>,
    #[serde(flatten)]
    pub extra: Extra,
}

#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ContactPreference {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub locale: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disable_notifications: Option<bool>,
    #[serde(flatten)]
    pub extra: Extra,
}

/// The customer's consents, which decide who may see and act on the deal.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Consent {
    /// The doubled "To" is the service's real key, not a typo of ours; the field
    /// mirrors it so the mapping stays mechanical.
    #[serde(
        rename = "consentToToShareInfoWithOthers",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub consent_to_to_share_info_with_others: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consent_to_contact: Option<bool>,
    /// `false` makes the deal private: Microsoft sellers do not see it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consent_to_share_referral_with_microsoft_sellers: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consent_to_microsoft_to_contact_specific_partners: Option<bool>,
    #[serde(flatten)]
    pub extra: Extra,
}

#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Details {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notes: Option<String>,
    /// A JSON number rather than `f64`, so an integer amount stays an integer when written
    /// back and change detection compares the service's own value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deal_value: Option<Number>,
    /// ISO 4217 code.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub currency: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub closing_date_time: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub customer_requested_contact: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub customer_action: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub incentive_level: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requirements: Option<Requirements>,
    #[serde(flatten)]
    pub extra: Extra,
}

/// What the customer is interested in; solution ids are what the service validates.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Requirements {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub industries: Option<Vec<Tag>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub products: Option<Vec<Tag>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub services: Option<Vec<Tag>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub solutions: Option<Vec<Solution>>,
    /// Shape undocumented, so kept as raw JSON.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub offers: Option<Vec<Value>>,
    /// Shape undocumented, so kept as raw JSON.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sales_plays: Option<Vec<Value>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub additional_requirements: Option<AdditionalRequirements>,
    #[serde(flatten)]
    pub extra: Extra,
}

/// An industry, product or service the customer needs, by catalogue id.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Tag {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(flatten)]
    pub extra: Extra,
}

/// A solution from the Microsoft or partner catalogue attached to the deal.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Solution {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// How `id` is to be read: `None`, `Category` or `Name`.
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    pub r#type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub price: Option<Number>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quantity: Option<Number>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub currency: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub publisher_name: Option<String>,
    /// Who publishes the solution, e.g. `3P` for a partner's own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub solution_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub closing_date_time: Option<String>,
    #[serde(flatten)]
    pub extra: Extra,
}

#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AdditionalRequirements {
    /// Shape undocumented (the create example sends `{}`), so kept as raw JSON.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iot: Option<Value>,
    /// Carries the customer's marketplace intent (`type: CustomerMarketplaceIntent`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attributes: Option<Vec<Attribute>>,
    #[serde(flatten)]
    pub extra: Extra,
}

#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Attribute {
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    pub r#type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(flatten)]
    pub extra: Extra,
}

/// Why and by whom another organisation was brought into the deal.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct InviteContext {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notes: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub invited_by: Option<InvitedBy>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub invited_mpn_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub assistance_request_code: Option<AssistanceRequestCode>,
    #[serde(flatten)]
    pub extra: Extra,
}

#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct InvitedBy {
    /// `msft` when Microsoft sent the referral.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub organization_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub organization_name: Option<String>,
    #[serde(flatten)]
    pub extra: Extra,
}

/// Who the referral is addressed to.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Target {
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    pub r#type: Option<TargetType>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(flatten)]
    pub extra: Extra,
}

/// Ids of the same deal in Microsoft's internal systems, useful when talking to
/// Microsoft sellers.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TrackingInfo {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub microsoft_msx_id: Option<String>,
    #[serde(
        rename = "microsoftUSFedOpportunityId",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub microsoft_us_fed_opportunity_id: Option<String>,
    #[serde(
        rename = "microsoftUSFedLeadId",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub microsoft_us_fed_lead_id: Option<String>,
    #[serde(
        rename = "migratedPSCDealId",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub migrated_psc_deal_id: Option<String>,
    #[serde(
        rename = "migratedPSCPartnerDealId",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub migrated_psc_partner_deal_id: Option<String>,
    #[serde(flatten)]
    pub extra: Extra,
}

#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Links {
    /// The query listing the other parties' referrals of the same engagement.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub related_referrals: Option<Link>,
    #[serde(rename = "self", default, skip_serializing_if = "Option::is_none")]
    pub self_: Option<Link>,
    #[serde(flatten)]
    pub extra: Extra,
}

#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Link {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uri: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub method: Option<String>,
    #[serde(flatten)]
    pub extra: Extra,
}

#[cfg(test)]
mod tests;
