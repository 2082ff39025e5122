//! What one change costs in API calls, per CRM (see `cosell_e2e::calls`): each row of the table
//! at most its ceiling, echoes without a write, and the idle poll at two calls at most. The
//! counts are deterministic on the sandbox; the bench binary prints the same table.

use cosell_e2e::calls::{ECHO_POLL, Row, render, table};
use cosell_e2e::stack::CrmKind;

/// The most a row may cost: 1.25 × its floor. The Salesforce change feed reads its overlap
/// window again after a change (a record stamped before the last round may commit late), so a
/// poll that finds something there costs that one read more than an idle poll: the poll after
/// the connector's own write (which writes nothing and queues nothing) and the seller's edit.
/// The seller's edit also costs the processor's read of the opportunity the poll just read.
fn ceiling(kind: CrmKind, row: &Row) -> u64 {
    let target = row.floor * 5 / 4;
    match (kind, row.change) {
        (CrmKind::Salesforce, ECHO_POLL | SELLER_EDIT) => target + 1,
        _ => target,
    }
}

const SELLER_EDIT: &str = "seller edits one field (with its echo)";

async fn check(kind: CrmKind) {
    let rows = table(kind).await;
    let shown = render(kind, &rows);
    println!("{shown}");
    for row in &rows {
        assert!(
            row.total() <= ceiling(kind, row),
            "{kind:?}: {:?} cost {} calls, at most {} allowed\n{shown}",
            row.change,
            row.total(),
            ceiling(kind, row)
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
