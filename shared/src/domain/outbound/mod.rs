//! CRM → Partner Center, as plain functions: the CRM side's projection, the checks before a
//! referral is created ([`validation`]), the body of a new referral and of Microsoft's connected
//! referral ([`referral_body`]), and the JSON Patch that sends merged fields ([`patch`]). The
//! status moves a stage change makes live with the hold stage in [`crate::domain::stage`]. No
//! I/O: the sync use case reads and writes.

pub mod patch;
pub mod referral_body;
pub mod validation;

#[cfg(test)]
pub(crate) mod fixtures;

pub use patch::{PatchOp, empty_team_op, patch_ops};
pub use referral_body::*;
pub use validation::{ServicesRules, iso_country, validate, validate_catalog, validate_services};

use crate::domain::marker;
use crate::domain::projection::Projection;
use crate::domain::records::{OpportunityFields, Visibility};
use crate::referral::AssistanceRequestCode;

pub(crate) fn non_blank(v: Option<&str>) -> Option<&str> {
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

/// The CRM side's projection, built like `inbound::referral_projection` builds Partner
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::inbound::{Changed, opportunity_update, referral_projection};
    use crate::domain::merge::normalised;
    use crate::domain::outbound::fixtures::*;
    use proptest::prelude::*;
    use serde_json::json;

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
}
