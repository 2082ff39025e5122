//! What one change costs in API calls, per CRM (see `cosell_e2e::calls`): each row of the table
//! at most its ceiling, echoes without a write, and the idle poll at two calls at most. The
//! counts are deterministic on the sandbox; the bench binary prints the same table.

use cosell_e2e::calls::{ECHO_POLL, Row, burst, render, table};
use cosell_e2e::stack::CrmKind;

/// The most a row may cost: 1.25 × its floor. An echo of the connector's own CRM write may
/// cost the one read the floor allows for an echo: the Salesforce change feed reads its
/// overlap window again after a change (a record stamped before the last round may commit
/// late), which finds the echo and drops it.
fn ceiling(row: &Row) -> u64 {
    if row.change == ECHO_POLL {
        return 1;
    }
    row.floor * 5 / 4
}

async fn check(kind: CrmKind) {
    let rows = table(kind).await;
    let shown = render(kind, &rows);
    println!("{shown}");
    for row in &rows {
        assert!(
            row.total() <= ceiling(row),
            "{kind:?}: {:?} cost {} calls, at most {} allowed\n{shown}",
            row.change,
            row.total(),
            ceiling(row)
        );
        if row.change == ECHO_POLL || row.change.starts_with("echo") {
            assert_eq!(row.writes, 0, "{kind:?}: an echo writes nothing\n{shown}");
            assert_eq!(
                row.commands, 0,
                "{kind:?}: an echo enqueues nothing\n{shown}"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_change_costs_dynamics_at_most_a_quarter_over_the_floor() {
    check(CrmKind::Dynamics).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_change_costs_salesforce_at_most_a_quarter_over_the_floor() {
    check(CrmKind::Salesforce).await;
}

/// A burst of incoming referrals, synced and then polled until quiet: the polls and
/// reconciliation add nothing already queued or synced, so each changed record costs one
/// command (the bench runs the same with 500).
async fn burst_of(kind: CrmKind) {
    let b = burst(kind, 25).await;
    assert_eq!(b.from_polls, 0, "{kind:?}: {b:?}");
    assert!(
        b.commands_per_changed_record() <= 1.2,
        "{kind:?}: {:.2} commands per changed record: {b:?}",
        b.commands_per_changed_record()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dynamics_burst_costs_one_command_per_changed_record() {
    burst_of(CrmKind::Dynamics).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_salesforce_burst_costs_one_command_per_changed_record() {
    burst_of(CrmKind::Salesforce).await;
}
