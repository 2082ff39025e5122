//! What one change costs in API calls, per CRM (see `cosell_e2e::calls`): each row of the table
//! at most its ceiling, echoes without a write, and the idle poll at two calls at most. The
//! counts are deterministic on the sandbox; the bench binary prints the same table.

use cosell_e2e::calls::{ECHO_POLL, Row, render, table};
use cosell_e2e::stack::CrmKind;

/// The most a row may cost: 1.25 × its floor. Salesforce reads an opportunity's primary contact
/// role with a query of its own and its change feed asks for the newest stamp before each
/// round, so some of its rows are allowed one or two calls more until those reads are folded.
fn ceiling(kind: CrmKind, row: &Row) -> u64 {
    let target = row.floor * 5 / 4;
    let salesforce_extra = match row.change {
        "idle poll cycle" => 1,
        ECHO_POLL => 1,
        "Microsoft edits one field" => 1,
        "seller edits one field (with its echo)" => 2,
        "new seller deal shared (partner-led, with its echo)" => 1,
        "new seller deal shared (co-sell, Microsoft's referral, echoes)" => 0,
        _ => 0,
    };
    match kind {
        CrmKind::Dynamics => target,
        CrmKind::Salesforce => target + salesforce_extra,
    }
}

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
async fn every_change_costs_salesforce_no_more_than_its_ceiling() {
    check(CrmKind::Salesforce).await;
}
