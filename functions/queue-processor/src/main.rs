//! Sync commands from the FIFO queue, one group (referral) at a time, reporting failed items so
//! only they are redelivered. Behaviour lives in `cosell_shared::sync`; this only wires.

use std::sync::Arc;

use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent};
use cosell_shared::config::Config;
use cosell_shared::sync::batch::{self, BatchMessage};
use cosell_shared::sync::{Processor, SyncOptions};
use cosell_shared::wiring;
use lambda_runtime::{Error, LambdaEvent, service_fn};

#[tokio::main]
async fn main() -> Result<(), Error> {
    tracing_subscriber::fmt()
        .json()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .without_time()
        .with_target(false)
        .init();
    let config = Config::from_process_env()?;
    let sdk = wiring::aws_sdk_config(&config).await;
    let processor = Arc::new(Processor {
        pc: wiring::partner_center(&config)?,
        crm: wiring::crm(&config)?,
        store: wiring::store(&config, &sdk)?,
        options: SyncOptions::clone(&config.sync),
    });
    lambda_runtime::run(service_fn(move |event: LambdaEvent<SqsEvent>| {
        let processor = Arc::clone(&processor);
        async move {
            let messages: Vec<BatchMessage> = event
                .payload
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
                .collect();
            let failed = batch::process(&messages, |m| {
                let (processor, body) = (Arc::clone(&processor), m.body.clone());
                async move { processor.handle(&body).await }
            })
            .await;
            let mut response = SqsBatchResponse::default();
            response.set_failures(failed);
            Ok::<_, Error>(response)
        }
    }))
    .await
}
