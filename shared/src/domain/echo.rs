//! Whether a change the CRM reports needs a sync to Partner Center, or is only the echo of the
//! connector's own write. The connector's writes project to the last synced state, so comparing
//! the opportunity with that projection (not with its previous version) is what keeps an echo
//! from going round again.

use chrono::{DateTime, Utc};

use crate::domain::merge::Field;
use crate::domain::outbound::crm_projection;
use crate::domain::projection::Projection;
use crate::domain::records::{Opportunity, OpportunityState};
use crate::domain::stage;

/// What the sync remembers about an opportunity's link that decides whether a change matters.
#[derive(Debug, Clone, Copy)]
pub struct LinkFacts<'a> {
    /// The projection both sides agreed on at the last sync; `None` before the first one.
    pub synced: Option<&'a Projection>,
    /// The referral reached a terminal state.
    pub terminal: bool,
    /// A Won the seller set, held for Partner Center's minimum deal age until then.
    pub won_held_until: Option<DateTime<Utc>>,
}

/// Whether `opportunity` (marked for sync) needs a command: `link` is `None` when it was never
/// shared.
pub fn crm_change_needs_sync(
    opportunity: &Opportunity,
    link: Option<LinkFacts<'_>>,
    now: DateTime<Utc>,
) -> bool {
    let Some(link) = link else {
        // Not shared yet. When the connector made the last change (✖ and an Audit line after a
        // failed validation), the seller has not fixed anything since: trying again would only
        // repeat the failure, forever.
        return !opportunity.modified_by_connector;
    };
    // A Won held for Partner Center's minimum deal age waits for its timer; only a change of
    // the seller's (another stage, a two-way field) is worth a command before then.
    if link.won_held_until.is_some_and(|until| until > now)
        && opportunity.fields.state == Some(OpportunityState::Won)
        && !two_way_fields_differ(opportunity, link.synced)
    {
        return false;
    }
    // After a terminal state nothing more goes to Partner Center; the CRM may go on differing
    // (a reopened deal). Each change the seller makes there is answered once (an Audit line
    // saying why it went nowhere), not again after the connector's own answer.
    if link.terminal && opportunity.modified_by_connector {
        return false;
    }
    differs_from_synced(opportunity, link.synced)
}

/// Whether the opportunity's two-way fields (or whether it has a contact) differ from `synced`.
fn two_way_fields_differ(opportunity: &Opportunity, synced: Option<&Projection>) -> bool {
    let Some(base) = synced else {
        return true;
    };
    let now = crm_projection(&opportunity.fields);
    Field::ALL.iter().any(|f| f.differs(&now, base))
        || (now.has_contact == Some(true)) != (base.has_contact == Some(true))
}

/// Whether the two-way fields or the stage differ from `synced`.
fn differs_from_synced(opportunity: &Opportunity, synced: Option<&Projection>) -> bool {
    let Some(base) = synced else {
        return true;
    };
    if two_way_fields_differ(opportunity, synced) {
        return true;
    }
    opportunity.fields.state.is_some() && opportunity.fields.state != stage::projected_state(base)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::records::OpportunityFields;

    fn opportunity(fields: OpportunityFields, by_connector: bool) -> Opportunity {
        Opportunity {
            id: "opp-1".into(),
            fields,
            modified_at: None,
            modified_by_connector: by_connector,
        }
    }

    fn synced_fields() -> OpportunityFields {
        OpportunityFields {
            name: Some("Contoso".into()),
            deal_value: Some(100.0),
            currency: Some("USD".into()),
            state: Some(OpportunityState::Active),
            sync_with_partner_center: Some(true),
            ..Default::default()
        }
    }

    fn base() -> Projection {
        let mut p = crm_projection(&synced_fields());
        p.status = Some("Active/Accepted".into());
        p
    }

    fn facts(base: &Projection) -> LinkFacts<'_> {
        LinkFacts {
            synced: Some(base),
            terminal: false,
            won_held_until: None,
        }
    }

    #[test]
    fn the_connectors_own_write_is_an_echo() {
        let base = base();
        let echo = opportunity(synced_fields(), true);
        assert!(!crm_change_needs_sync(
            &echo,
            Some(facts(&base)),
            Utc::now()
        ));
    }

    #[test]
    fn a_seller_edit_of_a_two_way_field_needs_a_sync() {
        let base = base();
        let mut fields = synced_fields();
        fields.deal_value = Some(250.0);
        let edited = opportunity(fields, false);
        assert!(crm_change_needs_sync(
            &edited,
            Some(facts(&base)),
            Utc::now()
        ));
    }

    #[test]
    fn a_stage_move_needs_a_sync_and_the_synced_stage_does_not() {
        let base = base();
        let mut fields = synced_fields();
        fields.state = Some(OpportunityState::Lost);
        assert!(crm_change_needs_sync(
            &opportunity(fields, false),
            Some(facts(&base)),
            Utc::now()
        ));
        assert!(!crm_change_needs_sync(
            &opportunity(synced_fields(), false),
            Some(facts(&base)),
            Utc::now()
        ));
    }

    #[test]
    fn a_never_shared_opportunity_syncs_unless_the_connector_answered_it_last() {
        let now = Utc::now();
        assert!(crm_change_needs_sync(
            &opportunity(synced_fields(), false),
            None,
            now
        ));
        assert!(!crm_change_needs_sync(
            &opportunity(synced_fields(), true),
            None,
            now
        ));
    }

    #[test]
    fn a_terminal_link_answers_the_seller_once_not_its_own_answer() {
        let base = base();
        let mut fields = synced_fields();
        fields.description = Some("reopened".into());
        let terminal = LinkFacts {
            terminal: true,
            ..facts(&base)
        };
        let now = Utc::now();
        assert!(crm_change_needs_sync(
            &opportunity(fields.clone(), false),
            Some(terminal),
            now
        ));
        assert!(!crm_change_needs_sync(
            &opportunity(fields, true),
            Some(terminal),
            now
        ));
    }

    #[test]
    fn a_held_won_waits_for_its_timer_unless_the_seller_edits_a_field() {
        let base = base();
        let now = Utc::now();
        let held = LinkFacts {
            won_held_until: Some(now + chrono::Duration::hours(1)),
            ..facts(&base)
        };
        let mut won = synced_fields();
        won.state = Some(OpportunityState::Won);
        assert!(!crm_change_needs_sync(
            &opportunity(won.clone(), false),
            Some(held),
            now
        ));
        won.name = Some("Contoso renewal".into());
        assert!(crm_change_needs_sync(
            &opportunity(won, false),
            Some(held),
            now
        ));
    }
}
