//! Partner Center webhook → verified → enqueued → 200, within milliseconds. Behaviour lives in
//! `cosell_shared::ingress`; this only wires configuration to it.

use std::sync::Arc;

use cosell_shared::config::Config;
use cosell_shared::{ingress, wiring};
use lambda_http::{Body, Error, Request, Response, service_fn};

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
    let verifier = wiring::verifier(&config)?;
    let queue = wiring::queue(&config, &sdk)?;
    lambda_http::run(service_fn(move |req: Request| {
        let (verifier, queue) = (Arc::clone(&verifier), Arc::clone(&queue));
        async move {
            let (parts, body) = req.into_parts();
            let reply = ingress::handle(
                &parts.headers,
                body.as_ref(),
                verifier.as_ref(),
                queue.as_ref(),
            )
            .await;
            Response::builder()
                .status(reply.status)
                .header("content-type", "application/json")
                .body(Body::from(reply.body))
                .map_err(Error::from)
        }
    }))
    .await
}
