//! The referral's lifecycle against the opportunity's stage, both ways, in one place: a
//! referral not yet accepted puts its opportunity in the hold stage; leaving the hold stage for
//! the active one accepts it; closing it while pending declines it; edits made on hold are not
//! sent; nothing is written to a closed referral; a Won waits out Partner Center's minimum deal
//! age.

use chrono::{DateTime, Utc};
use serde_json::json;

use crate::domain::outbound::PatchOp;
use crate::domain::projection::Projection;
use crate::domain::records::{LeadState, OpportunityState};
use crate::referral::{Status, Substatus, TransitionError, TransitionRules, check_transition};

/// Where the opportunity stands for a referral status: not yet accepted → the hold stage;
/// accepted → active; won → won; lost, declined, expired (or closed as error) → lost.
pub fn opportunity_state(status: &Status, substatus: &Substatus) -> OpportunityState {
    match (status, substatus) {
        (Status::Closed, Substatus::Won) => OpportunityState::Won,
        (Status::Closed, _) => OpportunityState::Lost,
        (Status::Active, _) => OpportunityState::Active,
        _ => OpportunityState::OnHold,
    }
}

/// Where the opportunity stands for a projection's status: the stage a synced projection puts
/// the opportunity in, `None` when the projection holds no status the connector reads.
pub fn projected_state(p: &Projection) -> Option<OpportunityState> {
    p.status_pair().map(|(s, sub)| opportunity_state(&s, &sub))
}

/// A lead's state: open until accepted, qualified when accepted or won, disqualified when
/// closed any other way.
pub fn lead_state(status: &Status, substatus: &Substatus) -> LeadState {
    match (status, substatus) {
        (Status::Closed, Substatus::Won) | (Status::Active, _) => LeadState::Qualified,
        (Status::Closed, _) => LeadState::Disqualified,
        _ => LeadState::Open,
    }
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

#[cfg(test)]
mod tests {
    use super::*;

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
}
