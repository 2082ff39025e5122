//! `cargo bench -p cosell-e2e --bench api_calls`: the API calls each change costs, per CRM and
//! by route, on the sandbox with the whole connector on loopback (the table the call-count
//! test holds to its ceilings).

use cosell_e2e::calls::{render, table};
use cosell_e2e::stack::CrmKind;

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
    runtime.block_on(async {
        for kind in [CrmKind::Dynamics, CrmKind::Salesforce] {
            let rows = table(kind).await;
            println!("{}", render(kind, &rows));
        }
    });
}
