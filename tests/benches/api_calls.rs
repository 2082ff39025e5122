//! `cargo bench -p cosell-e2e --bench api_calls`: the API calls each change costs, per CRM and
//! by route, on the sandbox with the whole connector on loopback (the table the call-count
//! test holds to its ceilings); then a burst of incoming referrals (`BURST`, default 500): the
//! commands processed per changed record (both referrals of each engagement and the
//! opportunity) and per referral, referrals per second; the time a change takes with
//! `LATENCY_MS` (default 50) added to every API call, against that latency times the calls
//! that must run one after another; and the process's peak memory.
//! The sandbox, the connector and the bench share one process, so the memory is an upper bound.

use cosell_e2e::calls::{burst, latency, peak_rss_kib, render, table};
use cosell_e2e::stack::CrmKind;

/// A number from the environment, or `default` when it is unset or not a number.
fn number_from_env<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn main() {
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("cannot start the runtime: {e}");
            std::process::exit(1);
        }
    };
    // `PARTS=burst` (or any of `calls,burst,latency`) runs only those parts.
    let parts = std::env::var("PARTS").unwrap_or_else(|_| "calls,burst,latency".into());
    let runs = |part: &str| parts.split(',').any(|p| p.trim() == part);
    runtime.block_on(async {
        if runs("calls") {
            for kind in [CrmKind::Dynamics, CrmKind::Salesforce] {
                let rows = table(kind).await;
                println!("{}", render(kind, &rows));
            }
        }
        if runs("burst") {
            let n = number_from_env("BURST", 500);
            println!(
                "{:<12} {:>9} {:>8} {:>14} {:>11} {:>18} {:>16} {:>12} {:>11} {:>8}",
                "burst",
                "referrals",
                "records",
                "from webhooks",
                "from polls",
                "commands/record",
                "commands/referral",
                "referrals/s",
                "arriving s",
                "total s"
            );
            for kind in [CrmKind::Dynamics, CrmKind::Salesforce] {
                let b = burst(kind, n).await;
                println!(
                    "{:<12} {:>9} {:>8} {:>14} {:>11} {:>18.2} {:>16.2} {:>12.1} {:>11.1} {:>8.1}",
                    format!("{kind:?}"),
                    b.referrals,
                    b.changed_records,
                    b.from_webhooks,
                    b.from_polls,
                    b.commands_per_changed_record(),
                    b.commands_per_referral(),
                    b.referrals_per_second(),
                    b.arriving_seconds,
                    b.seconds
                );
            }
        }
        if runs("latency") {
            let l = number_from_env("LATENCY_MS", 50);
            println!(
                "{:<12} {:<28} {:>9} {:>8} {:>16}",
                "latency", "change", "seconds", "floor", "x (L x floor)"
            );
            for kind in [CrmKind::Dynamics, CrmKind::Salesforce] {
                for row in latency(kind, l).await {
                    println!(
                        "{:<12} {:<28} {:>9.3} {:>8} {:>16.2}",
                        format!("{kind:?}"),
                        row.change,
                        row.seconds,
                        row.sequential_floor,
                        row.ratio()
                    );
                }
            }
        }
        match peak_rss_kib() {
            Some(kib) => println!("peak RSS {} MiB", kib / 1024),
            None => println!("peak RSS not available on this platform"),
        }
    });
}
