//! Partner Center webhook → verified → enqueued → 200, within milliseconds. Behaviour lives in
//! `cosell_shared::ingress`; this only wires configuration to it.

use std::sync::Arc;

use cosell_shared::ingress::{self, SignatureCheck};
use cosell_shared::queue::Queue;
use cosell_shared::wiring;
use lambda_http::{Body, Error, Request, Response, service_fn};

/// One Function URL / API Gateway request: the raw body bytes as Partner Center signed them.
async fn respond(
    req: Request,
    verifier: &dyn SignatureCheck,
    queue: &dyn Queue,
) -> Result<Response<Body>, Error> {
    let (parts, body) = req.into_parts();
    let reply = ingress::handle(&parts.headers, body.as_ref(), verifier, queue).await;
    Response::builder()
        .status(reply.status)
        .header("content-type", "application/json")
        .body(Body::from(reply.body))
        .map_err(Error::from)
}

#[tokio::main]
async fn main() -> Result<(), Error> {
    cosell_shared::telemetry::init_for_lambda();
    cosell_shared::metrics::set_service("webhook-ingress");
    let (config, sdk) = wiring::load_from_process_env().await?;
    let verifier = wiring::verifier(&config)?;
    let queue = wiring::queue(&config, &sdk)?;
    lambda_http::run(service_fn(move |req: Request| {
        let (verifier, queue) = (Arc::clone(&verifier), Arc::clone(&queue));
        async move { respond(req, verifier.as_ref(), queue.as_ref()).await }
    }))
    .await
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use cosell_shared::partner_center::signature::SignatureError;
    use cosell_shared::queue::{Outgoing, QueueError};
    use lambda_http::http::HeaderMap;

    use super::*;

    struct Accept;

    #[async_trait::async_trait]
    impl SignatureCheck for Accept {
        async fn check(&self, headers: &HeaderMap, _: &[u8]) -> Result<(), SignatureError> {
            headers.contains_key("x-ms-signature").then_some(()).ok_or(
                SignatureError::MissingHeader {
                    header: "x-ms-signature",
                },
            )
        }
    }

    #[derive(Default)]
    struct Sent(Mutex<Vec<Outgoing>>);

    #[async_trait::async_trait]
    impl Queue for Sent {
        async fn send(&self, m: &Outgoing) -> Result<(), QueueError> {
            self.0.lock().expect("lock").push(m.clone());
            Ok(())
        }
    }

    fn request(body: Vec<u8>, signed: bool) -> Request {
        let mut b = lambda_http::http::Request::builder()
            .method("POST")
            .uri("/");
        if signed {
            b = b.header("x-ms-signature", "sig");
        }
        b.body(Body::from(body)).expect("request")
    }

    #[tokio::test]
    async fn the_lambda_answers_with_the_ingress_reply() {
        let queue = Sent::default();
        let event = br#"{"EventName":"referral-created","ResourceUri":"https://x/v1.0/engagements/referrals/r-1","ResourceName":"referral","AuditUri":null,"ResourceChangeUtcDate":"2026-11-21T10:00:00.0000000+00:00"}"#;
        let ok = respond(request(event.to_vec(), true), &Accept, &queue)
            .await
            .expect("response");
        assert_eq!(ok.status(), 200);
        assert_eq!(ok.headers()["content-type"], "application/json");
        let unsigned = respond(request(event.to_vec(), false), &Accept, &queue)
            .await
            .expect("response");
        assert_eq!(unsigned.status(), 401);
        let big = respond(request(vec![b'x'; 1024 * 1024 + 1], true), &Accept, &queue)
            .await
            .expect("response");
        assert_eq!(big.status(), 413);
        assert_eq!(
            queue.0.lock().expect("lock").len(),
            1,
            "only the good one enqueued"
        );
    }
}
