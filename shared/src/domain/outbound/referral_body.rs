//! The body of a new referral, its deal type, Microsoft's connected referral that invites
//! Microsoft to a co-sell deal, and the conversion of a private deal into a co-sell one.

use std::fmt;

use chrono::NaiveDate;
use serde_json::{Number, json};

use super::PatchOp;
use super::{help_code, iso_country, non_blank};
use crate::domain::marker;
use crate::domain::records::{AccountFields, ContactFields, OpportunityFields, Visibility};
use crate::referral::{
    AdditionalRequirements, Address, AssistanceRequestCode, Attribute, Consent, CustomerProfile,
    Details, InviteContext, Member, Qualification, Referral, ReferralType, Requirements, Solution,
    Target, TargetType,
};

/// The three kinds of deal a partner registers, as Partner Center's UI offers them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DealType {
    /// Microsoft's help is asked for: shared with Microsoft's sellers, `type: Shared`, the
    /// requested `assistanceRequestCode`; a customer contact is required.
    CoSell,
    /// No help, but visible to Microsoft's sellers: `type: Independent`,
    /// `consentToShareReferralWithMicrosoftSellers: true`, `assistanceRequestCode: Unknown`.
    PartnerLed,
    /// No help and not shared: `type: Independent`,
    /// `consentToShareReferralWithMicrosoftSellers: false`, `assistanceRequestCode: Unknown`.
    Private,
}

impl DealType {
    /// `Shared` only when Microsoft works the deal with the partner: that is what Partner Center
    /// documents `Shared` for ("visible to two parties working together"); a partner-led deal
    /// is visible to Microsoft's sellers through consent, not through a shared engagement.
    pub fn referral_type(self) -> ReferralType {
        match self {
            DealType::CoSell => ReferralType::Shared,
            DealType::PartnerLed | DealType::Private => ReferralType::Independent,
        }
    }

    /// `consentToShareReferralWithMicrosoftSellers`.
    pub fn shared_with_microsoft_sellers(self) -> bool {
        self != DealType::Private
    }

    pub fn as_str(self) -> &'static str {
        match self {
            DealType::CoSell => "co-sell",
            DealType::PartnerLed => "partner-led",
            DealType::Private => "private",
        }
    }
}

impl fmt::Display for DealType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Help requested → co-sell; visible without help → partner-led; otherwise private.
pub fn deal_type(opportunity: &OpportunityFields) -> DealType {
    if help_code(opportunity.microsoft_help.as_deref()).is_some() {
        DealType::CoSell
    } else if opportunity.visibility == Some(Visibility::Visible) {
        DealType::PartnerLed
    } else {
        DealType::Private
    }
}

/// How Partner Center reads a solution id that names one solution.
const SOLUTION_BY_NAME: &str = "Name";

pub(super) fn deal_value_number(v: f64) -> Option<Number> {
    // A whole amount goes as an integer, as Partner Center writes it; 2^53 keeps it exact.
    if v.fract() == 0.0 && v.abs() < 9_007_199_254_740_992.0 {
        #[allow(clippy::cast_possible_truncation)]
        return Some(Number::from(v as i64));
    }
    Number::from_f64(v)
}

pub(super) fn closing_date_time(date: NaiveDate) -> String {
    format!("{}T00:00:00Z", date.format("%Y-%m-%d"))
}

fn solution_list(solution_ids: &[String]) -> Vec<String> {
    let mut ids: Vec<String> = Vec::new();
    for id in solution_ids
        .iter()
        .map(|s| s.trim())
        .filter(|s| !s.is_empty())
    {
        if !ids.iter().any(|i| i.eq_ignore_ascii_case(id)) {
            ids.push(id.to_string());
        }
    }
    ids
}

fn member(contact: &ContactFields) -> Member {
    let text = |v: Option<&str>| non_blank(v).map(|s| s.trim().to_string());
    Member {
        first_name: text(contact.first_name.as_deref()),
        last_name: text(Some(contact.last_name.as_str())),
        phone_number: text(contact.phone.as_deref()),
        email: text(contact.email.as_deref()),
        ..Member::default()
    }
}

/// The body of `POST /referrals` for a deal the partner shares from its CRM. Call [`validate`]
/// first: this builds whatever it is given.
///
/// `externalReferenceId` is the CRM id, which is how a create whose answer was lost is found
/// again instead of made twice. The status is left out: Partner Center starts a partner's deal
/// `Active/Accepted` whatever is posted. The customer profile comes from the account (country
/// in capitals) with the contact as its team; the details carry the deal value, currency,
/// close date (midnight UTC), notes and the solutions; the deal type decides `type`, the
/// consents (a private deal shares nothing with others and invites no contact) and
/// `inviteContext.assistanceRequestCode`. The marketplace intent is sent as
/// "have not decided", as in Partner Center's minimal example: the CRM does not record it.
pub fn new_referral(
    opportunity: &OpportunityFields,
    account: Option<&AccountFields>,
    contact: Option<&ContactFields>,
    solution_ids: &[String],
    crm_id: &str,
) -> Referral {
    let deal = deal_type(opportunity);
    let shared = deal.shared_with_microsoft_sellers();
    let solutions = solution_list(solution_ids);
    let text = |v: Option<&str>| non_blank(v).map(|s| s.trim().to_string());
    let customer_profile = CustomerProfile {
        name: account.and_then(|a| text(Some(a.name.as_str()))),
        address: account.map(|a| Address {
            address_line1: text(a.street.as_deref()),
            city: text(a.city.as_deref()),
            state: text(a.state.as_deref()),
            postal_code: text(a.postal_code.as_deref()),
            country: a
                .country
                .as_deref()
                .map(|c| iso_country(c).unwrap_or_else(|| c.trim().to_string())),
            ..Address::default()
        }),
        team: contact.map(|c| vec![member(c)]),
        ..CustomerProfile::default()
    };
    let code =
        help_code(opportunity.microsoft_help.as_deref()).unwrap_or(AssistanceRequestCode::Unknown);
    let target = match (deal, solutions.first()) {
        // A shared referral names what it is shared about (Partner Center's shared-referral
        // steps); private and partner-led deals invite no one.
        (DealType::CoSell, Some(first)) => vec![Target {
            r#type: Some(TargetType::SolutionProfile),
            id: Some(first.clone()),
            ..Target::default()
        }],
        _ => Vec::new(),
    };
    Referral {
        name: non_blank(opportunity.name.as_deref().map(marker::strip))
            .map(|n| n.trim_end().to_string()),
        external_reference_id: Some(crm_id.to_string()),
        r#type: Some(deal.referral_type()),
        qualification: Some(Qualification::SalesQualified),
        customer_profile: Some(customer_profile),
        consent: Some(Consent {
            consent_to_to_share_info_with_others: Some(shared),
            consent_to_contact: Some(shared),
            consent_to_share_referral_with_microsoft_sellers: Some(shared),
            ..Consent::default()
        }),
        details: Some(Details {
            notes: non_blank(opportunity.description.as_deref()).map(str::to_string),
            deal_value: opportunity.deal_value.and_then(deal_value_number),
            currency: non_blank(opportunity.currency.as_deref())
                .map(|c| c.trim().to_ascii_uppercase()),
            closing_date_time: opportunity.close_date.map(closing_date_time),
            requirements: Some(Requirements {
                solutions: Some(
                    solutions
                        .iter()
                        .map(|id| Solution {
                            id: Some(id.clone()),
                            r#type: Some(SOLUTION_BY_NAME.into()),
                            ..Solution::default()
                        })
                        .collect(),
                ),
                additional_requirements: Some(AdditionalRequirements {
                    attributes: Some(vec![Attribute {
                        r#type: Some("CustomerMarketplaceIntent".into()),
                        id: Some(
                            marketplace_intent(opportunity.marketplace_intent.as_deref())
                                .unwrap_or(MarketplaceIntent::HaveNotDecided)
                                .as_str()
                                .into(),
                        ),
                        ..Attribute::default()
                    }]),
                    ..AdditionalRequirements::default()
                }),
                ..Requirements::default()
            }),
            ..Details::default()
        }),
        invite_context: Some(InviteContext {
            assistance_request_code: Some(code),
            ..InviteContext::default()
        }),
        target: Some(target),
        partner_role: text(opportunity.partner_role.as_deref()),
        solution_area: text(opportunity.solution_area.as_deref()),
        solution_play: text(opportunity.solution_play.as_deref()),
        ..Referral::default()
    }
}

/// `target` of the referral that invites Microsoft into an engagement.
pub const MICROSOFT_TARGET_ID: &str = "msft";

/// Whether `r` is Microsoft's referral in an engagement: Microsoft's organisation, or the
/// connected referral a partner creates for Microsoft (its target is Microsoft).
pub fn is_microsoft_referral(r: &Referral) -> bool {
    let org = r
        .organization_id
        .as_deref()
        .is_some_and(|o| o.eq_ignore_ascii_case(MICROSOFT_TARGET_ID));
    let targets_microsoft = r.target.as_ref().is_some_and(|targets| {
        targets.iter().any(|t| {
            t.r#type == Some(TargetType::BusinessProfileLocation)
                && t.id
                    .as_deref()
                    .is_some_and(|id| id.eq_ignore_ascii_case(MICROSOFT_TARGET_ID))
        })
    });
    org || targets_microsoft
}

/// The body of the second `POST /referrals` of a co-sell deal: Microsoft's referral in the
/// partner's engagement (Partner Center's "creating a shared referral"), built from the
/// partner's referral as Partner Center holds it. It carries no `externalReferenceId`: that id
/// finds the partner's own referral, and must find only that one.
pub fn microsoft_referral(partner: &Referral) -> Referral {
    let help = partner
        .invite_context
        .as_ref()
        .and_then(|c| c.assistance_request_code.clone());
    Referral {
        engagement_id: partner.engagement_id.clone(),
        name: partner.name.clone(),
        r#type: Some(ReferralType::Shared),
        qualification: partner
            .qualification
            .clone()
            .or(Some(Qualification::SalesQualified)),
        customer_profile: partner.customer_profile.clone(),
        consent: partner.consent.clone(),
        details: partner.details.clone(),
        team: partner.team.clone(),
        invite_context: Some(InviteContext {
            assistance_request_code: help,
            notes: partner
                .invite_context
                .as_ref()
                .and_then(|c| c.notes.clone()),
            ..InviteContext::default()
        }),
        target: Some(vec![Target {
            r#type: Some(TargetType::BusinessProfileLocation),
            id: Some(MICROSOFT_TARGET_ID.into()),
            ..Target::default()
        }]),
        partner_role: partner.partner_role.clone(),
        solution_area: partner.solution_area.clone(),
        solution_play: partner.solution_play.clone(),
        ..Referral::default()
    }
}

/// What turns a linked private or partner-led referral into a co-sell one, beside the help code
/// and the consent the merge sends: `type: Shared`, and a target naming the deal's first
/// solution when the referral has none (as a new co-sell referral is created).
pub fn co_sell_conversion_ops(referral: &Referral) -> Vec<PatchOp> {
    let mut ops = Vec::new();
    if referral.is_closed() {
        return ops;
    }
    if referral.r#type != Some(ReferralType::Shared) {
        ops.push(PatchOp {
            op: if referral.r#type.is_some() {
                "replace"
            } else {
                "add"
            },
            path: "/type".into(),
            value: json!(ReferralType::Shared.as_str()),
        });
    }
    let has_target = referral.target.as_ref().is_some_and(|t| !t.is_empty());
    let first_solution = referral
        .details
        .as_ref()
        .and_then(|d| d.requirements.as_ref())
        .and_then(|r| r.solutions.as_ref())
        .and_then(|s| s.iter().find_map(|s| s.id.clone()));
    if !has_target && let Some(id) = first_solution {
        ops.push(PatchOp {
            op: "add",
            path: "/target".into(),
            value: json!([{"type": TargetType::SolutionProfile.as_str(), "id": id}]),
        });
    }
    ops
}

/// The customer's marketplace intent, as Partner Center's `CustomerMarketplaceIntent` attribute
/// names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MarketplaceIntent {
    Yes,
    No,
    HaveNotDecided,
}

impl MarketplaceIntent {
    pub fn as_str(self) -> &'static str {
        match self {
            MarketplaceIntent::Yes => "Yes",
            MarketplaceIntent::No => "No",
            MarketplaceIntent::HaveNotDecided => "HaveNotDecided",
        }
    }
}

/// The CRM's marketplace intent value: Yes / No / Have not decided in any case or spacing (or
/// Partner Center's own spellings); empty is not decided. `None` for anything else.
pub fn marketplace_intent(value: Option<&str>) -> Option<MarketplaceIntent> {
    let Some(value) = non_blank(value) else {
        return Some(MarketplaceIntent::HaveNotDecided);
    };
    let squeezed: String = value
        .chars()
        .filter(|c| c.is_alphanumeric())
        .collect::<String>()
        .to_ascii_lowercase();
    match squeezed.as_str() {
        "yes" | "true" => Some(MarketplaceIntent::Yes),
        "no" | "false" => Some(MarketplaceIntent::No),
        "havenotdecided" | "notdecided" | "undecided" => Some(MarketplaceIntent::HaveNotDecided),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::outbound::fixtures::*;

    #[test]
    fn the_deal_type_follows_help_then_visibility() {
        let cases = [
            (
                Some("ProofOfConceptOrDemo"),
                Some(Visibility::Private),
                DealType::CoSell,
            ),
            (Some("GeneralOrOther"), None, DealType::CoSell),
            (
                Some("none"),
                Some(Visibility::Visible),
                DealType::PartnerLed,
            ),
            (None, Some(Visibility::Visible), DealType::PartnerLed),
            (
                Some("Unknown"),
                Some(Visibility::Private),
                DealType::Private,
            ),
            (None, None, DealType::Private),
        ];
        for (help, visibility, want) in cases {
            let o = OpportunityFields {
                microsoft_help: help.map(str::to_string),
                visibility,
                ..OpportunityFields::default()
            };
            assert_eq!(deal_type(&o), want, "{help:?} {visibility:?}");
        }
        assert_eq!(DealType::PartnerLed.to_string(), "partner-led");
    }

    #[test]
    fn a_new_referral_carries_the_deal_type_and_the_opportunity() {
        let cases = [
            (
                Some("QuotesOrLicensing"),
                Visibility::Private,
                "Shared",
                true,
                "QuotesOrLicensing",
                json!([{"type": "SolutionProfile", "id": "SOL-1"}]),
            ),
            (
                None,
                Visibility::Visible,
                "Independent",
                true,
                "Unknown",
                json!([]),
            ),
            (
                Some("none"),
                Visibility::Private,
                "Independent",
                false,
                "Unknown",
                json!([]),
            ),
        ];
        for (help, visibility, ty, shared, code, target) in cases {
            let o = OpportunityFields {
                microsoft_help: help.map(str::to_string),
                visibility: Some(visibility),
                ..opportunity()
            };
            let body = serde_json::to_value(new_referral(
                &o,
                Some(&account()),
                Some(&contact()),
                &solutions(),
                "crm-42",
            ))
            .expect("json");
            assert_eq!(body["type"], ty, "{help:?}");
            assert_eq!(
                body["consent"]["consentToShareReferralWithMicrosoftSellers"],
                shared
            );
            assert_eq!(body["inviteContext"]["assistanceRequestCode"], code);
            assert_eq!(body["target"], target);
            assert_eq!(body["externalReferenceId"], "crm-42");
            assert_eq!(body["name"], "Contoso cloud migration");
            assert_eq!(body["qualification"], "SalesQualified");
            assert!(
                body.get("status").is_none(),
                "Partner Center sets the status"
            );
            assert_eq!(
                body["customerProfile"],
                json!({
                    "name": "Contoso",
                    "address": {"addressLine1": "1 Harbour Road", "city": "Oslo", "postalCode": "0150", "country": "NO"},
                    "team": [{"firstName": "Kari", "lastName": "Nordmann", "email": "kari@contoso.example"}]
                })
            );
            assert_eq!(body["details"]["dealValue"], json!(30000));
            assert_eq!(body["details"]["currency"], "EUR");
            assert_eq!(body["details"]["closingDateTime"], "2026-06-30T00:00:00Z");
            assert_eq!(body["details"]["notes"], "Move the ERP");
            assert_eq!(
                body["details"]["requirements"]["solutions"],
                json!([{"id": "SOL-1", "type": "Name"}, {"id": "SOL-2", "type": "Name"}])
            );
        }
        let odd = OpportunityFields {
            deal_value: Some(99.95),
            ..OpportunityFields::default()
        };
        let body = serde_json::to_value(new_referral(&odd, None, None, &[], "x")).expect("json");
        assert_eq!(body["details"]["dealValue"], json!(99.95));
        assert!(body.get("name").is_none());
        assert_eq!(body["customerProfile"], json!({}));
    }
}
