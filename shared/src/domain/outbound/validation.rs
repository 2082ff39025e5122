//! What must be fixed before an opportunity can become a referral, in the seller's words.

use super::help_code;
use super::non_blank;
use super::referral_body::{DealType, deal_type, marketplace_intent};
use crate::domain::marker;
use crate::domain::records::{AccountFields, ContactFields, OpportunityFields};

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

/// With a solution catalog in the CRM (`catalog` its solution ids, empty when there is none), a
/// deal may only link solutions that are in it: one problem per unknown id, naming it.
pub fn validate_catalog(linked: &[String], catalog: &[String]) -> Vec<String> {
    if catalog.is_empty() {
        return Vec::new();
    }
    linked
        .iter()
        .filter(|id| !catalog.iter().any(|c| c.trim().eq_ignore_ascii_case(id.trim())))
        .map(|id| {
            format!(
                "The solution '{}' is not in the solution catalog: link a solution from the catalog, or import it with `cosell solutions import`.",
                id.trim()
            )
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::outbound::fixtures::*;

    #[test]
    fn with_a_catalog_only_its_solutions_may_be_linked() {
        let linked = vec!["sol-1".to_string(), "sol-9".to_string()];
        assert_eq!(
            validate_catalog(&linked, &[]),
            Vec::<String>::new(),
            "no catalog: any"
        );
        let problems = validate_catalog(&linked, &["SOL-1".to_string(), "sol-2".to_string()]);
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(problems[0].contains("'sol-9'"), "{problems:?}");
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
}
