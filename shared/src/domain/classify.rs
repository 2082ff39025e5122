//! What kind of referral Partner Center sent, which decides what it becomes in the CRM:
//! co-sell and pipeline-sharing referrals become opportunities, leads become CRM leads (and only
//! when "sync co-sell only" is off).
//!
//! Partner Center documents the classification in terms of type, qualification and who invited:
//! Independent + Direct/Marketing/SalesQualified + invited by Microsoft is a **lead**; a
//! Shared or partner-invited referral is a **co-sell opportunity**. A Shared referral from
//! Microsoft with no qualification is Microsoft sharing its own pipeline (**pipeline sharing**).
//! `referralSource` and `callToAction` are documented as not to be used for this.

use crate::referral::{Direction, Qualification, Referral, ReferralType};

/// The organisation id Partner Center uses for Microsoft in `inviteContext.invitedBy`.
pub const MICROSOFT_ORG_ID: &str = "msft";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    CoSell,
    PipelineSharing,
    Lead,
}

impl Kind {
    /// Whether the CRM gets a record for it: leads only when "sync co-sell only" is off.
    pub fn comes_into_crm(self, co_sell_only: bool) -> bool {
        !(co_sell_only && self == Kind::Lead)
    }

    pub fn is_opportunity(self) -> bool {
        self != Kind::Lead
    }
}

pub fn classify(r: &Referral) -> Kind {
    if r.direction == Some(Direction::Outgoing) {
        // The partner's own deal, created from its CRM.
        return Kind::CoSell;
    }
    let invited_by = r
        .invite_context
        .as_ref()
        .and_then(|c| c.invited_by.as_ref())
        .and_then(|b| b.organization_id.as_deref())
        .filter(|id| !id.is_empty());
    if invited_by.is_some_and(|id| !id.eq_ignore_ascii_case(MICROSOFT_ORG_ID)) {
        // Another partner invited us: partner-to-partner co-sell.
        return Kind::CoSell;
    }
    match (&r.r#type, &r.qualification) {
        (Some(ReferralType::Shared), None | Some(Qualification::None)) => Kind::PipelineSharing,
        (Some(ReferralType::Shared), _) => Kind::CoSell,
        _ => Kind::Lead,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn referral(json: serde_json::Value) -> Referral {
        serde_json::from_value(json).expect("referral")
    }

    #[test]
    fn table() {
        let msft = serde_json::json!({"invitedBy": {"organizationId": "msft"}});
        let partner = serde_json::json!({"invitedBy": {"organizationId": "4f0c…"}});
        let cases = [
            (
                serde_json::json!({"type": "Shared", "qualification": "SalesQualified", "direction": "Incoming", "inviteContext": msft}),
                Kind::CoSell,
            ),
            (
                serde_json::json!({"type": "Shared", "qualification": "None", "direction": "Incoming", "inviteContext": msft}),
                Kind::PipelineSharing,
            ),
            (
                serde_json::json!({"type": "Shared", "direction": "Incoming", "inviteContext": msft}),
                Kind::PipelineSharing,
            ),
            (
                serde_json::json!({"type": "Independent", "qualification": "MarketingQualified", "direction": "Incoming", "inviteContext": msft}),
                Kind::Lead,
            ),
            (
                serde_json::json!({"type": "Independent", "qualification": "SalesQualified", "direction": "Incoming", "inviteContext": msft}),
                Kind::Lead,
            ),
            (
                serde_json::json!({"type": "Independent", "qualification": "Direct", "direction": "Incoming"}),
                Kind::Lead,
            ),
            (
                serde_json::json!({"type": "Independent", "qualification": "SalesQualified", "direction": "Incoming", "inviteContext": partner}),
                Kind::CoSell,
            ),
            (
                serde_json::json!({"type": "Independent", "qualification": "None", "direction": "Outgoing"}),
                Kind::CoSell,
            ),
        ];
        for (json, want) in cases {
            assert_eq!(classify(&referral(json.clone())), want, "{json}");
        }
    }

    #[test]
    fn leads_come_in_only_when_co_sell_only_is_off() {
        assert!(!Kind::Lead.comes_into_crm(true));
        assert!(Kind::Lead.comes_into_crm(false));
        assert!(Kind::CoSell.comes_into_crm(true));
        assert!(Kind::PipelineSharing.comes_into_crm(true));
        assert!(Kind::PipelineSharing.is_opportunity() && !Kind::Lead.is_opportunity());
    }
}
