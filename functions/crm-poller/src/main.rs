//! The CRM change poller, run by an EventBridge schedule: one pass over the CRM change feed and
//! one reconciliation with Partner Center, enqueueing sync commands for the processor.
//! Behaviour lives in `cosell_shared::sync::poller`; this only wires.

use std::sync::Arc;

use cosell_shared::sync::dry_run;
use cosell_shared::sync::poller::{PollReport, Poller};
use cosell_shared::wiring;
use lambda_runtime::{Error, LambdaEvent, service_fn};
use serde_json::Value;

/// The run's answer: what it did, and every error. A failed half is an error of the invocation
/// (so it is counted and alarmed), after the other half ran.
fn respond(report: PollReport, errors: Vec<String>) -> Result<Value, Error> {
    if errors.is_empty() {
        Ok(serde_json::to_value(report)?)
    } else {
        Err(format!("the poll did not complete: {}", errors.join("; ")).into())
    }
}

#[tokio::main]
async fn main() -> Result<(), Error> {
    cosell_shared::telemetry::init_for_lambda();
    cosell_shared::metrics::set_service("crm-poller");
    let (config, sdk) = wiring::load_from_process_env().await?;
    let crm = wiring::crm(&config)?;
    let tokens = wiring::token_store(config.secret_arn.as_deref(), &sdk, None);
    let pc = wiring::partner_center(&config, tokens)?;
    let store = wiring::store(&config, &sdk)?;
    // COSELL_DRY_RUN: the processor logs instead of writing; the poller keeps its cursors apart
    // from the real ones, so each change is reported once and a real run later finds them all.
    let (crm, pc, store) = if config.dry_run {
        tracing::warn!(
            "COSELL_DRY_RUN is set: the poller's cursors are kept apart from the real ones"
        );
        dry_run::wrap(crm, pc, store, Some(dry_run::CURSOR_PREFIX))
    } else {
        (crm, pc, store)
    };
    let queue = wiring::queue(&config, &sdk)?;
    let options = Arc::new(config.poller.clone());
    lambda_runtime::run(service_fn(move |_event: LambdaEvent<Value>| {
        let (crm, pc, store, queue, options) = (
            crm.clone(),
            pc.clone(),
            store.clone(),
            queue.clone(),
            options.clone(),
        );
        async move {
            let poller = Poller {
                crm: crm.as_ref(),
                pc: pc.as_ref(),
                store: store.as_ref(),
                queue: queue.as_ref(),
                options: options.as_ref(),
            };
            let (report, errors) = poller.run(chrono::Utc::now()).await;
            tracing::info!(?report, errors = errors.len(), "poll finished");
            for e in &errors {
                tracing::error!(error = %e, "poll failed");
            }
            respond(report, errors.iter().map(ToString::to_string).collect())
        }
    }))
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_clean_run_answers_its_report_and_a_failed_one_is_an_error() {
        let report = PollReport {
            crm_enqueued: 2,
            ..PollReport::default()
        };
        let ok = respond(report.clone(), vec![]).expect("a clean run");
        assert_eq!(ok["crmEnqueued"], 2);
        let err = respond(report, vec!["CRM: unavailable".into()]).expect_err("a failed half");
        assert!(err.to_string().contains("CRM: unavailable"), "{err}");
    }
}
