//! The documented status/substatus state machine.
//!
//! Partner Center rejects illegal moves itself, but only after a round trip and
//! with a generic 400. Checking first lets the connector tell the CRM user which
//! move was wrong, and keeps a CRM edit from overwriting a closed deal.

use thiserror::Error;

use super::enums::{Status, Substatus};

/// Switches for rules the documentation leaves open.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TransitionRules {
    /// The UI closes deals as `Error` (duplicate, test, sync problem) but the API
    /// documents no such substatus; off until someone has seen the API accept it.
    pub allow_error_substatus: bool,
}

impl TransitionRules {
    /// Whether `substatus` may accompany `status` under these rules.
    pub fn allows_substatus(&self, status: &Status, substatus: &Substatus) -> bool {
        status.allowed_substatuses().contains(substatus)
            || (self.allow_error_substatus
                && *status == Status::Closed
                && *substatus == Substatus::Error)
    }
}

/// A write the state machine refuses; the message names the attempted move so it
/// can be shown to the CRM user as is.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum TransitionError {
    #[error("referral is closed ({status}/{substatus}); no further changes are allowed")]
    Closed {
        status: Status,
        substatus: Substatus,
    },
    #[error(
        "referral has status {status}, which this connector does not know, so no change to it can be checked"
    )]
    UnknownCurrentStatus { status: Status },
    #[error("status {status} cannot be set; a referral can only be New, Active or Closed")]
    InvalidTargetStatus { status: Status },
    #[error("status cannot go from {from} to {to}")]
    Status { from: Status, to: Status },
    #[error(
        "substatus Error is not allowed with status Closed: the API does not document it (enable allow_error_substatus to send it)"
    )]
    ErrorSubstatusDisabled,
    #[error("substatus {substatus} is not allowed with status {status}")]
    Substatus {
        status: Status,
        substatus: Substatus,
    },
}

const LIVE_STATUSES: &[Status] = &[Status::New, Status::Active, Status::Closed];

impl Status {
    /// Closed is final: the service refuses every later change, so must we.
    pub fn is_terminal(&self) -> bool {
        *self == Status::Closed
    }

    /// The documented substatuses of this status. `Error` is not among them; see
    /// [`TransitionRules::allows_substatus`].
    pub fn allowed_substatuses(&self) -> &'static [Substatus] {
        match self {
            Status::New => &[Substatus::Pending, Substatus::Received],
            Status::Active => &[Substatus::Accepted],
            Status::Closed => &[
                Substatus::Won,
                Substatus::Lost,
                Substatus::Declined,
                Substatus::Expired,
            ],
            Status::None | Status::Other(_) => &[],
        }
    }

    /// The statuses a referral in this status may be written with. `None` is the
    /// unset default of a referral that has not entered the lifecycle, so it may
    /// start anywhere; an unknown status gets nothing because we cannot tell.
    pub fn allowed_next_statuses(&self) -> &'static [Status] {
        match self {
            Status::None | Status::New => LIVE_STATUSES,
            Status::Active => &LIVE_STATUSES[1..],
            Status::Closed | Status::Other(_) => &[],
        }
    }
}

/// Checks a write of `to` over a referral currently in `from`.
///
/// Only the current status matters on the `from` side: the service set the
/// current substatus, and it is not ours to judge.
pub fn check_transition(
    from: (&Status, &Substatus),
    to: (&Status, &Substatus),
    rules: &TransitionRules,
) -> Result<(), TransitionError> {
    let ((from_status, from_substatus), (to_status, to_substatus)) = (from, to);
    if from_status.is_terminal() {
        return Err(TransitionError::Closed {
            status: from_status.clone(),
            substatus: from_substatus.clone(),
        });
    }
    if let Status::Other(_) = from_status {
        return Err(TransitionError::UnknownCurrentStatus {
            status: from_status.clone(),
        });
    }
    if !LIVE_STATUSES.contains(to_status) {
        return Err(TransitionError::InvalidTargetStatus {
            status: to_status.clone(),
        });
    }
    if !from_status.allowed_next_statuses().contains(to_status) {
        return Err(TransitionError::Status {
            from: from_status.clone(),
            to: to_status.clone(),
        });
    }
    if rules.allows_substatus(to_status, to_substatus) {
        return Ok(());
    }
    if *to_status == Status::Closed && *to_substatus == Substatus::Error {
        return Err(TransitionError::ErrorSubstatusDisabled);
    }
    Err(TransitionError::Substatus {
        status: to_status.clone(),
        substatus: to_substatus.clone(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const STRICT: TransitionRules = TransitionRules {
        allow_error_substatus: false,
    };
    const WITH_ERROR: TransitionRules = TransitionRules {
        allow_error_substatus: true,
    };

    /// The documented table, written out as text so that the test does not reuse
    /// the code it checks: for each current status, every target it may be written with.
    const ALLOWED_TARGETS: &[(&str, &[&str])] = &[
        (
            "None",
            &[
                "New/Pending",
                "New/Received",
                "Active/Accepted",
                "Closed/Won",
                "Closed/Lost",
                "Closed/Declined",
                "Closed/Expired",
            ],
        ),
        (
            "New",
            &[
                "New/Pending",
                "New/Received",
                "Active/Accepted",
                "Closed/Won",
                "Closed/Lost",
                "Closed/Declined",
                "Closed/Expired",
            ],
        ),
        (
            "Active",
            &[
                "Active/Accepted",
                "Closed/Won",
                "Closed/Lost",
                "Closed/Declined",
                "Closed/Expired",
            ],
        ),
        ("Closed", &[]),
    ];

    fn all_states() -> Vec<(Status, Substatus)> {
        Status::KNOWN
            .iter()
            .flat_map(|status| {
                Substatus::KNOWN
                    .iter()
                    .map(move |substatus| (status.clone(), substatus.clone()))
            })
            .collect()
    }

    fn check(
        from: &(Status, Substatus),
        to: &(Status, Substatus),
        rules: &TransitionRules,
    ) -> Result<(), TransitionError> {
        check_transition((&from.0, &from.1), (&to.0, &to.1), rules)
    }

    #[test]
    fn every_documented_pair_follows_the_table() {
        let states = all_states();
        assert_eq!(states.len(), 4 * 9);
        let mut allowed = 0;
        for from in &states {
            let targets = ALLOWED_TARGETS
                .iter()
                .find(|(status, _)| *status == from.0.as_str())
                .map(|(_, targets)| *targets)
                .expect("every known status is in the table");
            for to in &states {
                let label = format!("{}/{}", to.0, to.1);
                let result = check(from, to, &STRICT);
                let expected_ok = targets.contains(&label.as_str());
                assert_eq!(
                    result.is_ok(),
                    expected_ok,
                    "{}/{} -> {label}: {result:?}",
                    from.0,
                    from.1
                );
                if result.is_ok() {
                    allowed += 1;
                }
            }
        }
        // 9 substatuses on each of None and New (7 targets), Active (5), Closed (0).
        assert_eq!(allowed, 9 * (7 + 7 + 5));
    }

    #[test]
    fn refusals_name_the_rule_that_was_broken() {
        for from in all_states() {
            for to in all_states() {
                let Err(error) = check(&from, &to, &STRICT) else {
                    continue;
                };
                let expected_kind = if from.0 == Status::Closed {
                    "closed"
                } else if to.0 == Status::None {
                    "invalid target"
                } else if from.0 == Status::Active && to.0 == Status::New {
                    "status"
                } else if to == (Status::Closed, Substatus::Error) {
                    "error disabled"
                } else {
                    "substatus"
                };
                let kind = match error {
                    TransitionError::Closed { .. } => "closed",
                    TransitionError::InvalidTargetStatus { .. } => "invalid target",
                    TransitionError::Status { .. } => "status",
                    TransitionError::ErrorSubstatusDisabled => "error disabled",
                    TransitionError::Substatus { .. } => "substatus",
                    TransitionError::UnknownCurrentStatus { .. } => "unknown current",
                };
                assert_eq!(
                    kind, expected_kind,
                    "{}/{} -> {}/{}",
                    from.0, from.1, to.0, to.1
                );
            }
        }
    }

    #[test]
    fn messages_say_what_was_attempted() {
        let message = |from: (Status, Substatus), to: (Status, Substatus)| {
            check(&from, &to, &STRICT).expect_err("refused").to_string()
        };
        assert_eq!(
            message(
                (Status::Active, Substatus::Accepted),
                (Status::New, Substatus::Pending)
            ),
            "status cannot go from Active to New"
        );
        assert_eq!(
            message(
                (Status::New, Substatus::Pending),
                (Status::Active, Substatus::Won)
            ),
            "substatus Won is not allowed with status Active"
        );
        assert_eq!(
            message(
                (Status::Closed, Substatus::Won),
                (Status::Closed, Substatus::Lost)
            ),
            "referral is closed (Closed/Won); no further changes are allowed"
        );
        assert!(
            message(
                (Status::New, Substatus::Pending),
                (Status::Other("Archived".into()), Substatus::None)
            )
            .contains("status Archived cannot be set")
        );
    }

    #[test]
    fn closed_refuses_even_an_identical_write_and_an_unknown_substatus() {
        let won = (Status::Closed, Substatus::Won);
        assert!(matches!(
            check(&won, &won, &WITH_ERROR),
            Err(TransitionError::Closed { .. })
        ));
        let odd = (Status::Closed, Substatus::Other("Merged".into()));
        assert_eq!(
            check(&odd, &(Status::Active, Substatus::Accepted), &STRICT),
            Err(TransitionError::Closed {
                status: Status::Closed,
                substatus: Substatus::Other("Merged".into()),
            })
        );
    }

    #[test]
    fn error_substatus_depends_on_the_rules() {
        let error = (Status::Closed, Substatus::Error);
        for from in [Status::None, Status::New, Status::Active] {
            let from = (from, Substatus::None);
            assert_eq!(
                check(&from, &error, &STRICT),
                Err(TransitionError::ErrorSubstatusDisabled)
            );
            assert_eq!(check(&from, &error, &WITH_ERROR), Ok(()));
            // The rule only opens Error for Closed.
            for status in [Status::New, Status::Active] {
                let to = (status, Substatus::Error);
                if check(&from, &to, &WITH_ERROR).is_ok() {
                    panic!("{}/{} -> {}/Error allowed", from.0, from.1, to.0);
                }
            }
        }
        assert!(WITH_ERROR.allows_substatus(&Status::Closed, &Substatus::Error));
        assert!(!STRICT.allows_substatus(&Status::Closed, &Substatus::Error));
        assert!(!WITH_ERROR.allows_substatus(&Status::Active, &Substatus::Error));
        assert!(!TransitionRules::default().allow_error_substatus);
    }

    #[test]
    fn unknown_statuses_and_substatuses_are_refused() {
        let pending = (Status::New, Substatus::Pending);
        let archived = (Status::Other("Archived".into()), Substatus::Pending);
        assert_eq!(
            check(&pending, &archived, &WITH_ERROR),
            Err(TransitionError::InvalidTargetStatus {
                status: Status::Other("Archived".into())
            })
        );
        assert_eq!(
            check(&archived, &pending, &WITH_ERROR),
            Err(TransitionError::UnknownCurrentStatus {
                status: Status::Other("Archived".into())
            })
        );
        let merged = (Status::Closed, Substatus::Other("Merged".into()));
        assert_eq!(
            check(&pending, &merged, &WITH_ERROR),
            Err(TransitionError::Substatus {
                status: Status::Closed,
                substatus: Substatus::Other("Merged".into()),
            })
        );
        // An odd current substatus does not block a legal move.
        let odd_new = (Status::New, Substatus::Other("Triaged".into()));
        assert_eq!(
            check(&odd_new, &(Status::Active, Substatus::Accepted), &STRICT),
            Ok(())
        );
    }

    #[test]
    fn status_tables_match_the_documentation() {
        assert!(Status::Closed.is_terminal());
        for status in [
            Status::None,
            Status::New,
            Status::Active,
            Status::Other("x".into()),
        ] {
            assert!(!status.is_terminal(), "{status}");
        }
        assert_eq!(
            Status::New.allowed_substatuses(),
            &[Substatus::Pending, Substatus::Received]
        );
        assert_eq!(Status::Active.allowed_substatuses(), &[Substatus::Accepted]);
        assert_eq!(
            Status::Closed.allowed_substatuses(),
            &[
                Substatus::Won,
                Substatus::Lost,
                Substatus::Declined,
                Substatus::Expired
            ]
        );
        assert!(Status::None.allowed_substatuses().is_empty());
        assert_eq!(
            Status::New.allowed_next_statuses(),
            &[Status::New, Status::Active, Status::Closed]
        );
        assert_eq!(
            Status::Active.allowed_next_statuses(),
            &[Status::Active, Status::Closed]
        );
        assert!(Status::Closed.allowed_next_statuses().is_empty());
        assert!(Status::Other("x".into()).allowed_next_statuses().is_empty());
    }
}
