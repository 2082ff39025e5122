//! CRM → Partner Center: the CRM side's projection, the checks before a referral is created,
//! the deal type, the body of a new referral, the status moves a stage change makes, and the
//! JSON Patch that sends merged fields. No I/O: the sync use case reads and writes.

use std::fmt;

use chrono::{DateTime, NaiveDate, Utc};
use serde_json::{Map, Number, Value, json};

use super::marker;
use super::merge::Update;
use super::projection::Projection;
use crate::crm::{AccountFields, ContactFields, OpportunityFields, OpportunityState, Visibility};
use crate::partner_center::PatchOp;
use crate::referral::{
    AdditionalRequirements, Address, AssistanceRequestCode, Attribute, Consent, CustomerProfile,
    Details, InviteContext, Member, Qualification, Referral, ReferralType, Requirements, Solution,
    Status, Substatus, Target, TargetType, TransitionError, TransitionRules, check_transition,
};

fn non_blank(v: Option<&str>) -> Option<&str> {
    v.filter(|s| !s.trim().is_empty())
}

/// The `assistanceRequestCode` a CRM "How can Microsoft help" value asks for, in Partner
/// Center's spelling; `None` when it asks for no help (`none`, `Unknown`, empty).
pub fn help_code(value: Option<&str>) -> Option<AssistanceRequestCode> {
    let value = non_blank(value)?.trim();
    if value.eq_ignore_ascii_case("none") {
        return None;
    }
    Some(AssistanceRequestCode::from(value)).filter(AssistanceRequestCode::asks_for_help)
}

/// The CRM side's projection, built like `mapping::referral_projection` builds Partner
/// Center's, so an opportunity just written from a referral projects to the same values: the
/// name without the ✔/✖ marker, the description as notes, the currency in capitals, "none" or an
/// empty Microsoft help as no help, the visibility as `visible`.
///
/// `status` stays `None`: the opportunity holds a stage, not the referral's status, and stage
/// changes go through [`status_action`] instead of the merge.
pub fn crm_projection(opportunity: &OpportunityFields) -> Projection {
    let text = |v: &Option<String>| non_blank(v.as_deref()).map(str::to_string);
    Projection {
        name: non_blank(opportunity.name.as_deref().map(marker::strip)).map(str::to_string),
        deal_value: opportunity.deal_value,
        currency: text(&opportunity.currency).map(|c| c.to_ascii_uppercase()),
        close_date: opportunity.close_date,
        notes: text(&opportunity.description),
        status: None,
        microsoft_help: help_code(opportunity.microsoft_help.as_deref())
            .map(|c| c.as_str().to_string()),
        visible: opportunity.visibility.map(|v| v == Visibility::Visible),
        microsoft_status: text(&opportunity.microsoft_status),
        microsoft_crm_id: text(&opportunity.microsoft_crm_id),
        has_contact: Some(opportunity.contact_id.is_some()),
    }
}

/// ISO 3166-1 alpha-2: every officially assigned code. Partner Center refuses any other
/// country, and a refusal after the call reads far worse in Audit than this check before it.
const ISO_COUNTRIES: &str = "\
AD AE AF AG AI AL AM AO AQ AR AS AT AU AW AX AZ \
BA BB BD BE BF BG BH BI BJ BL BM BN BO BQ BR BS BT BV BW BY BZ \
CA CC CD CF CG CH CI CK CL CM CN CO CR CU CV CW CX CY CZ \
DE DJ DK DM DO DZ EC EE EG EH ER ES ET FI FJ FK FM FO FR \
GA GB GD GE GF GG GH GI GL GM GN GP GQ GR GS GT GU GW GY \
HK HM HN HR HT HU ID IE IL IM IN IO IQ IR IS IT JE JM JO JP \
KE KG KH KI KM KN KP KR KW KY KZ LA LB LC LI LK LR LS LT LU LV LY \
MA MC MD ME MF MG MH MK ML MM MN MO MP MQ MR MS MT MU MV MW MX MY MZ \
NA NC NE NF NG NI NL NO NP NR NU NZ OM PA PE PF PG PH PK PL PM PN PR PS PT PW PY QA \
RE RO RS RU RW SA SB SC SD SE SG SH SI SJ SK SL SM SN SO SR SS ST SV SX SY SZ \
TC TD TF TG TH TJ TK TL TM TN TO TR TT TV TW TZ UA UG UM US UY UZ \
VA VC VE VG VI VN VU WF WS YE YT ZA ZM ZW";

/// The country as Partner Center wants it (two capital letters), when it is an ISO 3166-1
/// alpha-2 code in any case.
pub fn iso_country(value: &str) -> Option<String> {
    let code = value.trim().to_ascii_uppercase();
    (code.len() == 2 && ISO_COUNTRIES.split(' ').any(|c| c == code)).then_some(code)
}

fn looks_like_email(email: &str) -> bool {
    let email = email.trim();
    match email.split_once('@') {
        Some((local, domain)) => {
            !local.is_empty()
                && domain.contains('.')
                && !domain.starts_with('.')
                && !domain.ends_with('.')
                && !email.contains(char::is_whitespace)
                && !domain.contains('@')
        }
        None => false,
    }
}

fn has_phone(phone: Option<&str>) -> bool {
    phone.is_some_and(|p| p.chars().any(|c| c.is_ascii_digit()))
}

fn contact_label(contact: &ContactFields) -> String {
    let name = [
        contact.first_name.as_deref(),
        Some(contact.last_name.as_str()),
    ]
    .into_iter()
    .flatten()
    .map(str::trim)
    .filter(|s| !s.is_empty())
    .collect::<Vec<_>>()
    .join(" ");
    if name.is_empty() {
        "the customer contact".into()
    } else {
        format!("the customer contact {name}")
    }
}

/// What must be fixed before the opportunity can become a referral, one message per problem, in
/// the seller's words (they land in Audit next to a ✖).
///
/// Checked, from the sync rules and what Partner Center refuses: a name; a customer account
/// with a name and an ISO 3166-1 alpha-2 country; at least one linked solution; when Microsoft
/// help is asked for, a customer contact Microsoft can reach (a name, and an email or a phone
/// number: Partner Center's own example sends a contact with a phone and an empty email); any
/// contact email that is sent must look like one. A close date in the past is not refused:
/// Partner Center documents no such rule, and sellers register deals late.
pub fn validate(
    opportunity: &OpportunityFields,
    account: Option<&AccountFields>,
    contact: Option<&ContactFields>,
    solution_ids: &[String],
) -> Result<(), Vec<String>> {
    let mut problems = Vec::new();
    if non_blank(opportunity.name.as_deref().map(marker::strip)).is_none() {
        problems
            .push("Give the opportunity a name: Partner Center needs one for the referral.".into());
    }
    match account {
        None => problems.push(
            "Choose the customer's account on the opportunity: Partner Center needs the customer's name and country.".into(),
        ),
        Some(account) => {
            if account.name.trim().is_empty() {
                problems.push("Fill in the name of the customer's account: Partner Center needs it.".into());
            }
            match non_blank(account.country.as_deref()) {
                None => problems.push(
                    "Fill in the country of the customer's account as a two-letter ISO code, for example US, DE or GB.".into(),
                ),
                Some(c) if iso_country(c).is_none() => problems.push(format!(
                    "The country '{}' of the customer's account is not a two-letter ISO country code: use one such as US, DE or GB.",
                    c.trim()
                )),
                Some(_) => {}
            }
        }
    }
    if !solution_ids.iter().any(|s| !s.trim().is_empty()) {
        problems.push(
            "Link at least one Microsoft solution to the opportunity: Partner Center needs one to share the deal.".into(),
        );
    }
    let help = help_code(opportunity.microsoft_help.as_deref());
    match (contact, &help) {
        (None, Some(code)) => problems.push(format!(
            "Add a customer contact to the opportunity: Microsoft needs one when you ask for its help ({code})."
        )),
        (Some(contact), _) => {
            let email = non_blank(contact.email.as_deref());
            if let Some(email) = email.filter(|e| !looks_like_email(e)) {
                problems.push(format!(
                    "The email '{}' of {} does not look like an email address: correct it or remove it.",
                    email.trim(),
                    contact_label(contact)
                ));
            }
            if help.is_some() {
                if contact.last_name.trim().is_empty() {
                    problems.push("Give the customer contact a last name: Microsoft needs to know whom to contact.".into());
                }
                if email.is_none() && !has_phone(contact.phone.as_deref()) {
                    problems.push(format!(
                        "Give {} an email address or a phone number: Microsoft needs a way to reach the customer when you ask for its help.",
                        contact_label(contact)
                    ));
                }
            }
        }
        (None, None) => {}
    }
    if marketplace_intent(opportunity.marketplace_intent.as_deref()).is_none() {
        problems.push(format!(
            "The marketplace intent '{}' is not one Partner Center knows: use Yes, No or Have not decided.",
            opportunity.marketplace_intent.as_deref().unwrap_or("").trim()
        ));
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems)
    }
}

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

fn deal_value_number(v: f64) -> Option<Number> {
    // A whole amount goes as an integer, as Partner Center writes it; 2^53 keeps it exact.
    if v.fract() == 0.0 && v.abs() < 9_007_199_254_740_992.0 {
        #[allow(clippy::cast_possible_truncation)]
        return Some(Number::from(v as i64));
    }
    Number::from_f64(v)
}

fn closing_date_time(date: NaiveDate) -> String {
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

/// Empties the referral's customer contacts (`customerProfile.team`): the seller removed the
/// opportunity's contact. `add` sets the member whether or not the referral has it.
pub fn empty_team_op(referral: &Referral) -> PatchOp {
    if referral.customer_profile.is_some() {
        PatchOp {
            op: "add",
            path: "/customerProfile/team".into(),
            value: json!([]),
        }
    } else {
        PatchOp {
            op: "add",
            path: "/customerProfile".into(),
            value: json!({"team": []}),
        }
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

/// The Services co-sell fields' rules, from the admin's settings. Partner Center requires
/// `solutionArea`, `solutionPlay` and `partnerRole` on Services co-sell referrals only and does
/// not publish the current values, so the admin lists them; an empty list accepts any value.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ServicesRules {
    pub solution_areas: Vec<String>,
    pub solution_plays: Vec<String>,
    pub partner_roles: Vec<String>,
    /// Every co-sell deal is a Services co-sell deal. Otherwise a deal is one when any of the
    /// three fields is filled in.
    pub every_co_sell_deal: bool,
}

/// What must be fixed in the Services co-sell fields before the deal is sent, in the seller's
/// words, naming the allowed values.
pub fn validate_services(opportunity: &OpportunityFields, rules: &ServicesRules) -> Vec<String> {
    let fields = [
        (
            "solution area",
            opportunity.solution_area.as_deref(),
            &rules.solution_areas,
        ),
        (
            "solution play",
            opportunity.solution_play.as_deref(),
            &rules.solution_plays,
        ),
        (
            "partner role",
            opportunity.partner_role.as_deref(),
            &rules.partner_roles,
        ),
    ];
    let filled = fields.iter().any(|(_, v, _)| non_blank(*v).is_some());
    let services =
        filled || (rules.every_co_sell_deal && deal_type(opportunity) == DealType::CoSell);
    if !services {
        return Vec::new();
    }
    let allowed_text = |allowed: &Vec<String>| {
        if allowed.is_empty() {
            String::new()
        } else {
            format!(" (allowed: {})", allowed.join(", "))
        }
    };
    let mut problems = Vec::new();
    for (label, value, allowed) in fields {
        match non_blank(value) {
            None => problems.push(format!(
                "Fill in the {label}: Partner Center needs it for a Services co-sell deal{}.",
                allowed_text(allowed)
            )),
            Some(v)
                if !allowed.is_empty()
                    && !allowed
                        .iter()
                        .any(|a| a.trim().eq_ignore_ascii_case(v.trim())) =>
            {
                problems.push(format!(
                    "The {label} '{}' is not one Partner Center accepts{}.",
                    v.trim(),
                    allowed_text(allowed)
                ));
            }
            Some(_) => {}
        }
    }
    problems
}

/// When a Won the seller set may be sent: `created` (the referral's creation) plus `hold`, or
/// `None` when it may go now.
pub fn won_held_until(
    created: Option<DateTime<Utc>>,
    hold: std::time::Duration,
    now: DateTime<Utc>,
) -> Option<DateTime<Utc>> {
    let hold = chrono::Duration::from_std(hold).ok()?;
    let until = created? + hold;
    (until > now).then_some(until)
}

/// What a stage change in the CRM does to the referral's status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StatusAction {
    /// Nothing to send.
    None,
    /// `Active/Accepted`: the seller moved an incoming referral's opportunity to the active stage.
    Accept,
    /// `Closed/Declined` with `statusReason`: closed in the CRM before it was accepted.
    Decline { reason: String },
    /// `Closed/Won`.
    Won,
    /// `Closed/Lost`.
    Lost,
    /// The CRM asks for a move Partner Center does not allow; nothing is sent and `message`
    /// tells the seller why.
    Refused { message: String },
}

impl StatusAction {
    /// The status and substatus the referral gets.
    pub fn target(&self) -> Option<(Status, Substatus)> {
        match self {
            StatusAction::Accept => Some((Status::Active, Substatus::Accepted)),
            StatusAction::Decline { .. } => Some((Status::Closed, Substatus::Declined)),
            StatusAction::Won => Some((Status::Closed, Substatus::Won)),
            StatusAction::Lost => Some((Status::Closed, Substatus::Lost)),
            StatusAction::None | StatusAction::Refused { .. } => None,
        }
    }

    /// The JSON Patch operations of the move (none for `None` and `Refused`). They can go in
    /// the same PATCH as the field edits: Partner Center checks the move on the result.
    pub fn patch_ops(&self) -> Vec<PatchOp> {
        let Some((status, substatus)) = self.target() else {
            return Vec::new();
        };
        let mut ops = vec![
            PatchOp::replace("/status", json!(status.as_str())),
            PatchOp::replace("/substatus", json!(substatus.as_str())),
        ];
        if let StatusAction::Decline { reason } = self {
            // A pending referral usually has no reason yet; `add` sets a member either way.
            ops.push(PatchOp {
                op: "add",
                path: "/statusReason".into(),
                value: json!(reason),
            });
        }
        ops
    }

    /// What was done, for an Audit line; `None` when nothing is sent.
    pub fn describe(&self) -> Option<String> {
        match self {
            StatusAction::Accept => Some("accepted the referral in Partner Center".into()),
            StatusAction::Decline { .. } => Some("declined the referral in Partner Center".into()),
            StatusAction::Won => Some("closed the referral as won in Partner Center".into()),
            StatusAction::Lost => Some("closed the referral as lost in Partner Center".into()),
            StatusAction::None | StatusAction::Refused { .. } => None,
        }
    }

    /// The projection's `status` text once the action is written over `status/substatus`.
    pub fn status_after(&self, status: &Status, substatus: &Substatus) -> String {
        match self.target() {
            Some((s, sub)) => format!("{s}/{sub}"),
            None => format!("{status}/{substatus}"),
        }
    }

    /// Whether the referral is closed once the action is written.
    pub fn is_terminal(&self) -> bool {
        self.target().is_some_and(|(s, _)| s.is_terminal())
    }
}

/// New, or not yet in the lifecycle: the referral still waits for the partner's answer.
fn is_pending(status: &Status) -> bool {
    matches!(status, Status::New | Status::None)
}

fn state_words(state: OpportunityState) -> &'static str {
    match state {
        OpportunityState::Active => "active",
        OpportunityState::OnHold => "on hold",
        OpportunityState::Won => "won",
        OpportunityState::Lost => "lost",
    }
}

/// What the opportunity's stage asks of the referral, checked against the state machine.
///
/// - An incoming referral still pending (`New`/`None`, whatever the substatus): active →
///   [`StatusAction::Accept`]; won or lost → [`StatusAction::Decline`] (the sync rules: closing
///   it while pending declines it); on hold → nothing, it waits for the seller.
/// - Accepted (or the partner's own): won → `Won`, lost → `Lost`, active or on hold → nothing
///   (Partner Center has no hold stage).
/// - Closed in Partner Center: nothing is ever written again. When the opportunity agrees
///   (won with `Closed/Won`, lost with any other close) or is on hold, that is `None`; any other
///   stage is [`StatusAction::Refused`], so the seller learns why their change went nowhere.
/// - A status the connector does not know: any move is refused; staying put is `None`.
///
/// Every move is checked with `check_transition` (the `Error` substatus stays off), and a move
/// it refuses comes back as `Refused` before any call.
pub fn status_action(
    crm_state: OpportunityState,
    referral_status: &Status,
    referral_substatus: &Substatus,
    incoming: bool,
) -> StatusAction {
    if referral_status.is_terminal() {
        let in_step = match crm_state {
            OpportunityState::OnHold => true,
            OpportunityState::Won => *referral_substatus == Substatus::Won,
            OpportunityState::Lost => *referral_substatus != Substatus::Won,
            OpportunityState::Active => false,
        };
        return if in_step {
            StatusAction::None
        } else {
            StatusAction::Refused {
                message: format!(
                    "The referral is already closed in Partner Center ({referral_status}/{referral_substatus}), so the opportunity's move to {} was not sent: a closed referral cannot change any more",
                    state_words(crm_state)
                ),
            }
        };
    }
    let pending = is_pending(referral_status);
    let wanted = match crm_state {
        OpportunityState::OnHold => StatusAction::None,
        OpportunityState::Active if pending => StatusAction::Accept,
        OpportunityState::Active => StatusAction::None,
        OpportunityState::Won | OpportunityState::Lost if pending && incoming => {
            StatusAction::Decline {
                reason: format!(
                    "Declined in the CRM: the opportunity was closed as {} before the referral was accepted",
                    state_words(crm_state)
                ),
            }
        }
        OpportunityState::Won => StatusAction::Won,
        OpportunityState::Lost => StatusAction::Lost,
    };
    let Some((to_status, to_substatus)) = wanted.target() else {
        return wanted;
    };
    match check_transition(
        (referral_status, referral_substatus),
        (&to_status, &to_substatus),
        &TransitionRules::default(),
    ) {
        Ok(()) => wanted,
        Err(e) => StatusAction::Refused {
            message: refusal(crm_state, &e),
        },
    }
}

fn refusal(crm_state: OpportunityState, e: &TransitionError) -> String {
    format!(
        "The opportunity's move to {} was not sent to Partner Center: {e}",
        state_words(crm_state)
    )
}

/// Whether the opportunity's field edits go to Partner Center now.
///
/// Not while an incoming referral is pending and its opportunity is on hold (the sync rules),
/// nor when it is being declined (it closes with the decline), nor ever after the referral is
/// closed, nor when its status is unknown. Moving to active accepts first: the edits go with
/// the acceptance. Won or lost over an accepted referral sends the last edits with the close,
/// since Partner Center takes no edits after it.
pub fn sends_edits(
    crm_state: OpportunityState,
    referral_status: &Status,
    _referral_substatus: &Substatus,
    incoming: bool,
) -> bool {
    if referral_status.is_terminal() || matches!(referral_status, Status::Other(_)) {
        return false;
    }
    if is_pending(referral_status) && incoming {
        return crm_state == OpportunityState::Active;
    }
    true
}

/// Where a referral keeps each merged field: (parent object, member); no parent for top level.
fn location(field: &str) -> (Option<&'static str>, &'static str) {
    match field {
        "name" => (None, "name"),
        "deal value" => (Some("details"), "dealValue"),
        "currency" => (Some("details"), "currency"),
        "close date" => (Some("details"), "closingDateTime"),
        "notes" => (Some("details"), "notes"),
        "Microsoft help" => (Some("inviteContext"), "assistanceRequestCode"),
        _ => (
            Some("consent"),
            "consentToShareReferralWithMicrosoftSellers",
        ),
    }
}

fn same_value(current: Option<&Value>, new: &Value, member: &str) -> bool {
    let current = current.unwrap_or(&Value::Null);
    match member {
        "dealValue" => match (current.as_f64(), new.as_f64()) {
            (Some(a), Some(b)) => a == b,
            _ => current == new,
        },
        // The same day at another time of day is the same close date to a seller.
        "closingDateTime" => match (current.as_str(), new.as_str()) {
            (Some(a), Some(b)) => a.get(..10).is_some() && a.get(..10) == b.get(..10),
            _ => current == new,
        },
        _ => current == new,
    }
}

/// JSON Patch operations that send the `to_pc` fields of a merge to `referral` (as last read),
/// skipping fields whose value Partner Center already holds.
///
/// A member the referral has is `replace`d; a missing one is `add`ed, because `replace` fails on
/// a missing member while `add` sets it either way; a missing parent object (`details`,
/// `consent`, `inviteContext`) is added whole. An emptied deal value, currency, close date or
/// notes is sent as `null`, which Partner Center treats as absent; an empty name is never sent
/// (the merge refuses it). Help withdrawn is sent as `Unknown`. Nothing is sent to a closed
/// referral.
pub fn patch_ops(referral: &Referral, to_pc: &Update) -> Vec<PatchOp> {
    if referral.is_closed() {
        return Vec::new();
    }
    let current = serde_json::to_value(referral).unwrap_or(Value::Null);
    let v = &to_pc.values;
    let mut ops: Vec<PatchOp> = Vec::new();
    for field in to_pc.names() {
        let new = match field {
            "name" => match non_blank(v.name.as_deref()) {
                Some(n) => json!(n),
                None => continue,
            },
            "deal value" => v
                .deal_value
                .and_then(deal_value_number)
                .map_or(Value::Null, Value::Number),
            "currency" => v.currency.as_deref().map_or(Value::Null, |c| json!(c)),
            "close date" => v
                .close_date
                .map_or(Value::Null, |d| json!(closing_date_time(d))),
            "notes" => v.notes.as_deref().map_or(Value::Null, |n| json!(n)),
            "Microsoft help" => json!(
                help_code(v.microsoft_help.as_deref())
                    .unwrap_or(AssistanceRequestCode::Unknown)
                    .as_str()
            ),
            "visibility" => match v.visible {
                Some(b) => json!(b),
                None => continue,
            },
            // The status and the Microsoft fields never go to Partner Center.
            _ => continue,
        };
        let (parent, member) = location(field);
        let parent_path = parent.map_or(String::new(), |p| format!("/{p}"));
        let path = format!("{parent_path}/{member}");
        let existing = current.pointer(&path);
        if same_value(existing, &new, member) {
            continue;
        }
        let parent_exists =
            parent.is_none() || current.pointer(&parent_path).is_some_and(Value::is_object);
        if parent_exists {
            ops.push(PatchOp {
                op: if existing.is_some() { "replace" } else { "add" },
                path,
                value: new,
            });
            continue;
        }
        // The parent is missing: one `add` of the whole object, collecting its members.
        match ops.iter_mut().find(|op| op.path == parent_path) {
            Some(PatchOp {
                value: Value::Object(members),
                ..
            }) => {
                members.insert(member.to_string(), new);
            }
            _ => {
                let mut members = Map::new();
                members.insert(member.to_string(), new);
                ops.push(PatchOp {
                    op: "add",
                    path: parent_path,
                    value: Value::Object(members),
                });
            }
        }
    }
    ops
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::mapping::{Changed, opportunity_update, referral_projection};
    use crate::domain::merge::{merge, normalised};
    use proptest::prelude::*;

    fn referral(v: Value) -> Referral {
        serde_json::from_value(v).expect("referral")
    }

    fn date(y: i32, m: u32, d: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(y, m, d).expect("date")
    }

    fn opportunity() -> OpportunityFields {
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

    fn account() -> AccountFields {
        AccountFields {
            name: "Contoso".into(),
            street: Some("1 Harbour Road".into()),
            city: Some("Oslo".into()),
            state: None,
            postal_code: Some("0150".into()),
            country: Some("no".into()),
        }
    }

    fn contact() -> ContactFields {
        ContactFields {
            first_name: Some("Kari".into()),
            last_name: "Nordmann".into(),
            email: Some("kari@contoso.example".into()),
            phone: None,
            account_id: None,
        }
    }

    fn solutions() -> Vec<String> {
        vec!["SOL-1".into(), "sol-1".into(), " ".into(), "SOL-2".into()]
    }

    #[test]
    fn crm_projection_reads_the_opportunity_like_the_referral_is_read() {
        let p = crm_projection(&OpportunityFields {
            microsoft_status: Some("Active/Accepted".into()),
            microsoft_crm_id: Some(" ".into()),
            ..opportunity()
        });
        assert_eq!(p.name.as_deref(), Some("Contoso cloud migration"));
        assert_eq!(p.currency.as_deref(), Some("EUR"));
        assert_eq!(p.notes.as_deref(), Some("Move the ERP"));
        assert_eq!(p.microsoft_help, None);
        assert_eq!(p.visible, Some(false));
        assert_eq!(p.status, None, "the stage is not the referral's status");
        assert_eq!(p.microsoft_status.as_deref(), Some("Active/Accepted"));
        assert_eq!(p.microsoft_crm_id, None);

        let help = |v: Option<&str>| {
            crm_projection(&OpportunityFields {
                microsoft_help: v.map(str::to_string),
                ..OpportunityFields::default()
            })
            .microsoft_help
        };
        for none in [
            None,
            Some(""),
            Some(" "),
            Some("none"),
            Some("None"),
            Some("Unknown"),
        ] {
            assert_eq!(help(none), None, "{none:?}");
        }
        assert_eq!(
            help(Some("proofofconceptordemo")).as_deref(),
            Some("ProofOfConceptOrDemo")
        );
        assert_eq!(
            help(Some("DealAcceleration")).as_deref(),
            Some("DealAcceleration")
        );
        let blank = crm_projection(&OpportunityFields {
            name: Some("✖ ".into()),
            description: Some(String::new()),
            ..OpportunityFields::default()
        });
        assert_eq!((blank.name, blank.notes, blank.visible), (None, None, None));
    }

    #[test]
    fn an_opportunity_written_from_a_referral_projects_to_the_same_values() {
        let r = referral(json!({
            "name": "Fabrikam rollout", "status": "Active", "substatus": "Accepted",
            "consent": {"consentToShareReferralWithMicrosoftSellers": true},
            "details": {"dealValue": 1234.5, "currency": "usd", "closingDateTime": "2026-03-24T18:30:00Z",
                "notes": "Phase 2"},
            "inviteContext": {"assistanceRequestCode": "QuotesOrLicensing"},
            "trackingInfo": {"microsoftMsxId": "7-ABC"}
        }));
        let pc = referral_projection(&r, None);
        let mut written = opportunity_update(&pc, &Changed::all());
        written.name = written
            .name
            .map(|n| marker::apply(&n, marker::Mark::Synced, true));
        let crm = crm_projection(&written);
        assert_eq!(crm, Projection { status: None, ..pc });
    }

    fn name() -> impl Strategy<Value = String> {
        "[A-Za-z0-9][A-Za-z0-9 ]{0,12}"
    }

    fn two_way_projection() -> impl Strategy<Value = Projection> {
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
                    close_date: day.and_then(|d| {
                        date(2026, 1, 1).checked_add_days(chrono::Days::new(d.into()))
                    }),
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

    proptest! {
        #[test]
        fn crm_projection_undoes_opportunity_update(p in two_way_projection(), synced: bool) {
            let mut written = opportunity_update(&p, &Changed::all());
            let mark = if synced { marker::Mark::Synced } else { marker::Mark::Failed };
            written.name = written.name.map(|n| marker::apply(&n, mark, true));
            prop_assert_eq!(crm_projection(&written), p);
        }

        /// A shared deal's first base: the created referral projects to the opportunity's values.
        #[test]
        fn a_new_referral_projects_to_the_opportunity_s_values(p in two_way_projection()) {
            let mut fields = opportunity_update(&p, &Changed::all());
            fields.name = Some(p.name.clone().unwrap_or_else(|| "Deal".into()));
            let created = new_referral(&fields, Some(&account()), Some(&contact()), &solutions(), "crm-1");
            let from_pc = normalised(&referral_projection(&created, None));
            let from_crm = normalised(&crm_projection(&fields));
            let co_sell = from_crm.microsoft_help.is_some();
            prop_assert_eq!(from_pc.name, from_crm.name);
            prop_assert_eq!(from_pc.deal_value, from_crm.deal_value);
            prop_assert_eq!(from_pc.currency, from_crm.currency);
            prop_assert_eq!(from_pc.close_date, from_crm.close_date);
            prop_assert_eq!(from_pc.notes, from_crm.notes);
            prop_assert_eq!(from_pc.microsoft_help, from_crm.microsoft_help);
            prop_assert_eq!(from_pc.visible, Some(co_sell || from_crm.visible == Some(true)));
        }
    }

    #[test]
    fn iso_countries_are_the_249_assigned_codes() {
        let codes: Vec<&str> = ISO_COUNTRIES.split(' ').collect();
        assert_eq!(codes.len(), 249);
        let mut sorted = codes.clone();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(sorted, codes, "sorted and unique");
        assert!(
            codes
                .iter()
                .all(|c| c.len() == 2 && c.bytes().all(|b| b.is_ascii_uppercase()))
        );
        assert_eq!(iso_country(" de ").as_deref(), Some("DE"));
        assert_eq!(iso_country("gb").as_deref(), Some("GB"));
        for bad in ["USA", "UK", "XX", "", "U", "Norway", "ÉS"] {
            assert_eq!(iso_country(bad), None, "{bad}");
        }
    }

    #[test]
    fn validation_says_what_to_fix() {
        let help = OpportunityFields {
            microsoft_help: Some("ProofOfConceptOrDemo".into()),
            ..opportunity()
        };
        let no_reach = ContactFields {
            email: None,
            phone: Some("n/a".into()),
            ..contact()
        };
        let bad_mail = ContactFields {
            email: Some("kari at contoso".into()),
            ..contact()
        };
        let phone_only = ContactFields {
            email: Some(String::new()),
            phone: Some("+47 22 00 00 00".into()),
            ..contact()
        };
        let usa = AccountFields {
            country: Some("USA".into()),
            ..account()
        };
        let no_country = AccountFields {
            country: Some(" ".into()),
            ..account()
        };
        let unnamed = OpportunityFields {
            name: Some("✔ ".into()),
            ..opportunity()
        };
        let none: &[String] = &[];
        let blank_only = vec![" ".to_string()];
        let (plain, acct, person, sols) = (opportunity(), account(), contact(), solutions());
        /// What, the opportunity, its account, contact and solutions, and the expected
        /// messages' beginnings.
        type Case<'a> = (
            &'a str,
            &'a OpportunityFields,
            Option<&'a AccountFields>,
            Option<&'a ContactFields>,
            &'a [String],
            Vec<&'a str>,
        );
        let cases: Vec<Case> = vec![
            (
                "private, no contact",
                &plain,
                Some(&acct),
                None,
                &sols,
                vec![],
            ),
            (
                "co-sell with an email",
                &help,
                Some(&acct),
                Some(&person),
                &sols,
                vec![],
            ),
            (
                "co-sell with a phone only",
                &help,
                Some(&acct),
                Some(&phone_only),
                &sols,
                vec![],
            ),
            (
                "no name",
                &unnamed,
                Some(&acct),
                None,
                &sols,
                vec!["Give the opportunity a name"],
            ),
            (
                "no account",
                &plain,
                None,
                None,
                &sols,
                vec!["Choose the customer's account"],
            ),
            (
                "three-letter country",
                &plain,
                Some(&usa),
                None,
                &sols,
                vec![
                    "The country 'USA' of the customer's account is not a two-letter ISO country code",
                ],
            ),
            (
                "no country",
                &plain,
                Some(&no_country),
                None,
                &sols,
                vec!["Fill in the country of the customer's account"],
            ),
            (
                "no solution",
                &plain,
                Some(&acct),
                None,
                none,
                vec!["Link at least one Microsoft solution"],
            ),
            (
                "blank solution",
                &plain,
                Some(&acct),
                None,
                &blank_only,
                vec!["Link at least one Microsoft solution"],
            ),
            (
                "help without a contact",
                &help,
                Some(&acct),
                None,
                &sols,
                vec![
                    "Add a customer contact to the opportunity: Microsoft needs one when you ask for its help (ProofOfConceptOrDemo).",
                ],
            ),
            (
                "help, contact unreachable",
                &help,
                Some(&acct),
                Some(&no_reach),
                &sols,
                vec!["Give the customer contact Kari Nordmann an email address or a phone number"],
            ),
            (
                "malformed email",
                &plain,
                Some(&acct),
                Some(&bad_mail),
                &sols,
                vec![
                    "The email 'kari at contoso' of the customer contact Kari Nordmann does not look like an email address",
                ],
            ),
            (
                "everything wrong",
                &unnamed,
                Some(&usa),
                None,
                none,
                vec![
                    "Give the opportunity a name",
                    "The country 'USA'",
                    "Link at least one",
                ],
            ),
        ];
        for (what, o, a, c, s, want) in cases {
            let got = validate(o, a, c, s).err().unwrap_or_default();
            assert_eq!(got.len(), want.len(), "{what}: {got:?}");
            for (g, w) in got.iter().zip(&want) {
                assert!(g.starts_with(w), "{what}: {g:?} should start with {w:?}");
            }
        }
    }

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

    fn all_states() -> Vec<(Status, Substatus)> {
        Status::KNOWN
            .iter()
            .chain([&Status::Other("Archived".into())])
            .flat_map(|s| {
                Substatus::KNOWN
                    .iter()
                    .map(move |sub| (s.clone(), sub.clone()))
            })
            .collect()
    }

    const STATES: [OpportunityState; 4] = [
        OpportunityState::Active,
        OpportunityState::OnHold,
        OpportunityState::Won,
        OpportunityState::Lost,
    ];

    #[test]
    fn status_actions_table() {
        use OpportunityState as O;
        use StatusAction as A;
        let decline = |state: &str| A::Decline {
            reason: format!(
                "Declined in the CRM: the opportunity was closed as {state} before the referral was accepted"
            ),
        };
        let cases = [
            (O::OnHold, Status::New, Substatus::Pending, true, A::None),
            (O::Active, Status::New, Substatus::Pending, true, A::Accept),
            (O::Active, Status::New, Substatus::Received, true, A::Accept),
            (
                O::Won,
                Status::New,
                Substatus::Pending,
                true,
                decline("won"),
            ),
            (
                O::Lost,
                Status::New,
                Substatus::Received,
                true,
                decline("lost"),
            ),
            (
                O::Active,
                Status::Active,
                Substatus::Accepted,
                true,
                A::None,
            ),
            (
                O::OnHold,
                Status::Active,
                Substatus::Accepted,
                true,
                A::None,
            ),
            (O::Won, Status::Active, Substatus::Accepted, true, A::Won),
            (O::Lost, Status::Active, Substatus::Accepted, false, A::Lost),
            (O::Won, Status::Active, Substatus::Accepted, false, A::Won),
            // The partner's own deal that somehow is still New closes as it is.
            (O::Won, Status::New, Substatus::Pending, false, A::Won),
            (O::Active, Status::None, Substatus::None, true, A::Accept),
            (O::Won, Status::Closed, Substatus::Won, true, A::None),
            (O::Lost, Status::Closed, Substatus::Declined, true, A::None),
            (O::Lost, Status::Closed, Substatus::Expired, false, A::None),
            (O::OnHold, Status::Closed, Substatus::Expired, true, A::None),
            (
                O::Active,
                Status::Other("Archived".into()),
                Substatus::None,
                true,
                A::None,
            ),
        ];
        for (state, status, substatus, incoming, want) in cases {
            assert_eq!(
                status_action(state, &status, &substatus, incoming),
                want,
                "{state:?} over {status}/{substatus}, incoming {incoming}"
            );
        }
    }

    #[test]
    fn moves_partner_center_refuses_are_refused_before_any_call() {
        let refused = |state, status: Status, substatus: Substatus| match status_action(
            state, &status, &substatus, true,
        ) {
            StatusAction::Refused { message } => message,
            other => panic!("{state:?} over {status}/{substatus}: {other:?}"),
        };
        assert_eq!(
            refused(OpportunityState::Active, Status::Closed, Substatus::Won),
            "The referral is already closed in Partner Center (Closed/Won), so the opportunity's move to active was not sent: a closed referral cannot change any more"
        );
        assert!(
            refused(OpportunityState::Won, Status::Closed, Substatus::Lost)
                .contains("(Closed/Lost)")
        );
        assert!(
            refused(OpportunityState::Lost, Status::Closed, Substatus::Won)
                .contains("move to lost")
        );
        assert!(
            refused(
                OpportunityState::Won,
                Status::Other("Archived".into()),
                Substatus::None
            )
            .contains("status Archived, which this connector does not know")
        );
    }

    #[test]
    fn every_move_sent_is_one_the_state_machine_allows() {
        for (status, substatus) in all_states() {
            for state in STATES {
                for incoming in [true, false] {
                    let action = status_action(state, &status, &substatus, incoming);
                    if let Some((to, to_sub)) = action.target() {
                        assert_eq!(
                            check_transition(
                                (&status, &substatus),
                                (&to, &to_sub),
                                &TransitionRules::default()
                            ),
                            Ok(()),
                            "{action:?}"
                        );
                    }
                    if status.is_terminal() {
                        assert!(
                            action.target().is_none(),
                            "nothing after {status}/{substatus}: {action:?}"
                        );
                        assert!(!sends_edits(state, &status, &substatus, incoming));
                    }
                    assert_eq!(action.patch_ops().is_empty(), action.target().is_none());
                }
            }
        }
    }

    #[test]
    fn each_action_sets_its_status_fields() {
        let ops = |a: StatusAction| serde_json::to_value(a.patch_ops()).expect("json");
        assert_eq!(
            ops(StatusAction::Accept),
            json!([{"op": "replace", "path": "/status", "value": "Active"},
                   {"op": "replace", "path": "/substatus", "value": "Accepted"}])
        );
        assert_eq!(
            ops(StatusAction::Decline { reason: "r".into() }),
            json!([{"op": "replace", "path": "/status", "value": "Closed"},
                   {"op": "replace", "path": "/substatus", "value": "Declined"},
                   {"op": "add", "path": "/statusReason", "value": "r"}])
        );
        assert_eq!(ops(StatusAction::Won)[1]["value"], "Won");
        assert_eq!(ops(StatusAction::Lost)[1]["value"], "Lost");
        assert_eq!(ops(StatusAction::None), json!([]));
        assert_eq!(
            ops(StatusAction::Refused {
                message: "m".into()
            }),
            json!([])
        );
        assert_eq!(
            StatusAction::Accept.status_after(&Status::New, &Substatus::Pending),
            "Active/Accepted"
        );
        assert_eq!(
            StatusAction::None.status_after(&Status::New, &Substatus::Pending),
            "New/Pending"
        );
        assert!(StatusAction::Won.is_terminal() && !StatusAction::Accept.is_terminal());
        assert_eq!(StatusAction::None.describe(), None);
    }

    #[test]
    fn edits_wait_for_acceptance_and_stop_at_the_close() {
        use OpportunityState as O;
        let cases = [
            (O::OnHold, Status::New, true, false),
            (O::Active, Status::New, true, true),
            (O::Won, Status::New, true, false),
            (O::Lost, Status::New, true, false),
            (O::OnHold, Status::New, false, true),
            (O::Active, Status::Active, true, true),
            (O::OnHold, Status::Active, true, true),
            (O::Won, Status::Active, true, true),
            (O::Active, Status::Closed, false, false),
            (O::Active, Status::Other("Archived".into()), false, false),
        ];
        for (state, status, incoming, want) in cases {
            assert_eq!(
                sends_edits(state, &status, &Substatus::None, incoming),
                want,
                "{state:?} {status} {incoming}"
            );
        }
    }

    fn linked() -> Referral {
        referral(json!({
            "id": "r1", "name": "Contoso", "status": "Active", "substatus": "Accepted",
            "consent": {"consentToShareReferralWithMicrosoftSellers": false},
            "details": {"dealValue": 30000, "currency": "EUR", "closingDateTime": "2026-06-30T18:00:00Z"},
            "inviteContext": {"assistanceRequestCode": "Unknown"}
        }))
    }

    fn update_for(referral: &Referral, edit: impl FnOnce(&mut Projection)) -> Update {
        let base = referral_projection(referral, None);
        let mut crm = base.clone();
        edit(&mut crm);
        merge(&base, &crm, &base, None, None).to_pc
    }

    #[test]
    fn patch_ops_send_only_what_changes_with_add_where_a_member_is_missing() {
        let r = linked();
        let ops = |edit: fn(&mut Projection)| {
            serde_json::to_value(patch_ops(&r, &update_for(&r, edit))).expect("json")
        };
        assert_eq!(
            ops(|p| p.name = Some("Contoso phase 2".into())),
            json!([{"op": "replace", "path": "/name", "value": "Contoso phase 2"}])
        );
        assert_eq!(
            ops(|p| {
                p.deal_value = Some(45000.5);
                p.notes = Some("Now with AI".into());
            }),
            json!([{"op": "replace", "path": "/details/dealValue", "value": 45000.5},
                   {"op": "add", "path": "/details/notes", "value": "Now with AI"}])
        );
        assert_eq!(
            ops(|p| p.visible = Some(true)),
            json!([{"op": "replace", "path": "/consent/consentToShareReferralWithMicrosoftSellers", "value": true}])
        );
        assert_eq!(
            ops(|p| p.close_date = NaiveDate::from_ymd_opt(2026, 7, 1)),
            json!([{"op": "replace", "path": "/details/closingDateTime", "value": "2026-07-01T00:00:00Z"}])
        );
        assert_eq!(
            ops(|p| p.currency = None),
            json!([{"op": "replace", "path": "/details/currency", "value": null}])
        );
        assert_eq!(
            ops(|p| p.microsoft_help = Some("GeneralOrOther".into())),
            json!([{"op": "replace", "path": "/inviteContext/assistanceRequestCode", "value": "GeneralOrOther"},
                   {"op": "replace", "path": "/consent/consentToShareReferralWithMicrosoftSellers", "value": true}])
        );
    }

    #[test]
    fn patch_ops_add_missing_parents_whole_and_skip_what_partner_center_holds() {
        let bare = referral(
            json!({"id": "r2", "name": "Bare", "status": "Active", "substatus": "Accepted"}),
        );
        let mut values = referral_projection(&bare, None);
        values.deal_value = Some(1000.0);
        values.currency = Some("USD".into());
        values.notes = None;
        values.visible = Some(true);
        values.status = Some("Closed/Won".into());
        let update = Update {
            fields: Changed::all(),
            values,
        };
        assert_eq!(
            serde_json::to_value(patch_ops(&bare, &update)).expect("json"),
            json!([{"op": "add", "path": "/details", "value": {"dealValue": 1000, "currency": "USD"}},
                   {"op": "add", "path": "/inviteContext", "value": {"assistanceRequestCode": "Unknown"}},
                   {"op": "add", "path": "/consent", "value": {"consentToShareReferralWithMicrosoftSellers": true}}])
        );

        // Already there (the same day at another hour, the same amount as a float): nothing.
        let r = linked();
        let mut same = referral_projection(&r, None);
        same.close_date = NaiveDate::from_ymd_opt(2026, 6, 30);
        let update = Update {
            fields: Changed::all(),
            values: same,
        };
        assert_eq!(patch_ops(&r, &update), vec![]);

        let closed =
            referral(json!({"id": "r3", "name": "Old", "status": "Closed", "substatus": "Won"}));
        let update = update_for(&closed, |p| p.name = Some("New".into()));
        assert!(!update.is_empty());
        assert_eq!(
            patch_ops(&closed, &update),
            vec![],
            "nothing after a terminal state"
        );
    }

    /// Just enough JSON Patch (`add`/`replace` on object members) to see what Partner Center
    /// would hold.
    fn apply(doc: &mut Value, ops: &[PatchOp]) {
        for op in ops {
            let (parent, member) = op.path.rsplit_once('/').expect("a path");
            let target = doc
                .pointer_mut(parent)
                .and_then(Value::as_object_mut)
                .expect("parent");
            if op.op == "replace" {
                assert!(
                    target.contains_key(member),
                    "replace of a missing {}",
                    op.path
                );
            }
            target.insert(member.to_string(), op.value.clone());
        }
    }

    fn referral_from(p: &Projection) -> Referral {
        let mut fields = opportunity_update(p, &Changed::all());
        fields.name = Some(p.name.clone().unwrap_or_else(|| "Deal".into()));
        let mut r = new_referral(
            &fields,
            Some(&account()),
            Some(&contact()),
            &solutions(),
            "crm",
        );
        r.status = Some(Status::Active);
        r.substatus = Some(Substatus::Accepted);
        r
    }

    proptest! {
        /// After the patch, Partner Center projects to the merged values of every field sent.
        #[test]
        fn patched_referral_holds_the_merged_values(
            start in two_way_projection(), edit in two_way_projection(), mask in 0u8..128, drop_details: bool,
        ) {
            let mut r = referral_from(&start);
            if drop_details {
                r.details = None;
                r.consent = None;
            }
            let base = referral_projection(&r, None);
            let mut crm = base.clone();
            let bit = |i: u8| mask & (1 << i) != 0;
            if bit(0) && edit.name.is_some() { crm.name.clone_from(&edit.name); }
            if bit(1) { crm.deal_value = edit.deal_value; }
            if bit(2) { crm.currency.clone_from(&edit.currency); }
            if bit(3) { crm.close_date = edit.close_date; }
            if bit(4) { crm.notes.clone_from(&edit.notes); }
            if bit(5) { crm.microsoft_help.clone_from(&edit.microsoft_help); }
            if bit(6) { crm.visible = edit.visible; }
            let m = merge(&base, &crm, &base, None, None);
            let ops = patch_ops(&r, &m.to_pc);
            let mut doc = serde_json::to_value(&r).expect("json");
            apply(&mut doc, &ops);
            let after = referral_projection(&serde_json::from_value(doc).expect("referral"), None);
            prop_assert_eq!(Projection { status: None, ..normalised(&after) }, Projection { status: None, ..m.merged.clone() });
            // Sending again changes nothing.
            let mut patched: Referral = serde_json::to_value(&r)
                .ok()
                .and_then(|mut d| { apply(&mut d, &ops); serde_json::from_value(d).ok() })
                .expect("patched");
            patched.e_tag = None;
            prop_assert!(patch_ops(&patched, &m.to_pc).is_empty());
        }
    }
}
