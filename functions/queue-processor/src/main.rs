//! Sync commands from the FIFO queue, one group (referral) at a time, reporting failed items so
//! only they are redelivered. Behaviour lives in `cosell_shared::sync`; this only wires.

use std::future::Future;
use std::sync::Arc;

use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent};
use cosell_shared::sync::batch::{self, BatchMessage};
use cosell_shared::sync::{Processor, SyncOptions};
use cosell_shared::wiring;
use lambda_runtime::{Error, LambdaEvent, service_fn};

/// The batch as the engine sees it: id, FIFO group and body of each record, in order.
fn messages(event: SqsEvent) -> Vec<BatchMessage> {
    event
        .records
        .into_iter()
        .map(|r| BatchMessage {
            group: r
                .attributes
                .get("MessageGroupId")
                .cloned()
                .unwrap_or_default(),
            id: r.message_id.unwrap_or_default(),
            body: r.body.unwrap_or_default(),
        })
        .collect()
}

/// Runs the batch and reports the failed items (`ReportBatchItemFailures`).
async fn respond<F, Fut>(event: SqsEvent, handle: F) -> SqsBatchResponse
where
    F: FnMut(&BatchMessage) -> Fut,
    Fut: Future<Output = Result<(), String>>,
{
    let failed = batch::process(&messages(event), handle).await;
    let mut response = SqsBatchResponse::default();
    response.set_failures(failed);
    response
}

#[tokio::main]
async fn main() -> Result<(), Error> {
    cosell_shared::telemetry::init_for_lambda();
    let (config, sdk) = wiring::load_from_process_env().await?;
    let processor = Arc::new(Processor {
        pc: wiring::partner_center(&config)?,
        crm: wiring::crm(&config)?,
        store: wiring::store(&config, &sdk)?,
        options: SyncOptions::clone(&config.sync),
    });
    lambda_runtime::run(service_fn(move |event: LambdaEvent<SqsEvent>| {
        let processor = Arc::clone(&processor);
        async move {
            Ok::<_, Error>(
                respond(event.payload, |m| {
                    let (processor, body) = (Arc::clone(&processor), m.body.clone());
                    async move { processor.handle(&body).await }
                })
                .await,
            )
        }
    }))
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(id: &str, group: &str, body: &str) -> serde_json::Value {
        serde_json::json!({
            "messageId": id,
            "body": body,
            "attributes": {"MessageGroupId": group},
            "messageAttributes": {},
            "eventSource": "aws:sqs",
        })
    }

    #[tokio::test]
    async fn a_failed_record_fails_the_rest_of_its_group_in_the_response() {
        let event: SqsEvent = serde_json::from_value(serde_json::json!({"Records": [
            record("1", "referral:a", "ok"),
            record("2", "referral:b", "fail"),
            record("3", "referral:a", "ok"),
            record("4", "referral:b", "ok"),
        ]}))
        .expect("an SQS event");
        let response = respond(event, |m| {
            let fail = m.body == "fail";
            async move { if fail { Err("boom".into()) } else { Ok(()) } }
        })
        .await;
        let ids: Vec<&str> = response
            .batch_item_failures
            .iter()
            .map(|f| f.item_identifier.as_str())
            .collect();
        assert_eq!(ids, ["2", "4"]);
    }
}
