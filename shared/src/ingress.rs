//! The webhook ingress as plain logic: verify, parse, enqueue, answer — never a CRM call, so it
//! answers Partner Center within milliseconds. The Lambda function and the local runner both
//! call [`handle`].

use async_trait::async_trait;
use reqwest::header::HeaderMap;

use crate::partner_center::signature::SignatureError;
use crate::queue::{Outgoing, Queue, SyncCommand};
use crate::referral::WebhookEvent;

/// Partner Center's notifications are small; anything bigger is not one of them.
pub const MAX_BODY_BYTES: usize = 1024 * 1024;

/// Checks a delivery's signature (the Partner Center verifier, or a stand-in in unit tests).
#[async_trait]
pub trait SignatureCheck: Send + Sync {
    /// `Err` says why, for the log line; the caller answers 401.
    async fn check(&self, headers: &HeaderMap, body: &[u8]) -> Result<(), SignatureError>;
}

/// What to answer Partner Center.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub status: u16,
    pub body: String,
}

impl Reply {
    fn new(status: u16, message: &str) -> Reply {
        Reply {
            status,
            body: serde_json::json!({ "message": message }).to_string(),
        }
    }
}

/// The deduplication id of a delivery: its body's SHA-256. A redelivered event has the same
/// body (same change date) and is dropped by the queue; a new change has a new date.
pub fn dedup_id(body: &[u8]) -> String {
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, body);
    digest.as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

/// Verify → parse → enqueue. Bad input gets a 4xx and nothing is enqueued; a queue failure gets
/// a 5xx so Partner Center delivers again.
pub async fn handle(
    headers: &HeaderMap,
    body: &[u8],
    verifier: &dyn SignatureCheck,
    queue: &dyn Queue,
) -> Reply {
    if body.len() > MAX_BODY_BYTES {
        return Reply::new(413, "the notification is larger than 1 MiB");
    }
    if let Err(why) = verifier.check(headers, body).await {
        tracing::warn!(reason = %why, "webhook refused: signature not verified");
        return Reply::new(401, "the signature could not be verified");
    }
    let event = match WebhookEvent::parse(body) {
        Ok(e) => e,
        Err(e) => {
            tracing::warn!(error = %e, "webhook refused: not a Partner Center event");
            return Reply::new(400, &format!("not a Partner Center event: {e}"));
        }
    };
    if !event.event_name.is_referral_event() {
        tracing::info!(event = %event.event_name, "webhook acknowledged; nothing to sync");
        return Reply::new(200, "acknowledged");
    }
    let Some(referral_id) = event.resource_id().map(str::to_string) else {
        return Reply::new(400, "ResourceUri names no referral");
    };
    let command = SyncCommand::PartnerCenterChanged {
        referral_id: referral_id.clone(),
        event: event.event_name.as_str().to_string(),
    };
    let outgoing = Outgoing {
        command,
        dedup_id: dedup_id(body),
    };
    match queue.send(&outgoing).await {
        Ok(()) => {
            tracing::info!(event = %event.event_name, referral_id = %referral_id, "webhook enqueued");
            Reply::new(200, "enqueued")
        }
        Err(e) => {
            tracing::error!(error = %e, referral_id = %referral_id, "webhook not enqueued; Partner Center will retry");
            Reply::new(503, "the queue is unavailable; try again")
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;
    use crate::queue::QueueError;

    struct Verifier(bool);

    #[async_trait]
    impl SignatureCheck for Verifier {
        async fn check(&self, _: &HeaderMap, _: &[u8]) -> Result<(), SignatureError> {
            if self.0 {
                Ok(())
            } else {
                Err(SignatureError::BadSignature)
            }
        }
    }

    #[derive(Default)]
    struct Recorder {
        sent: Mutex<Vec<Outgoing>>,
        down: bool,
    }

    #[async_trait]
    impl Queue for Recorder {
        async fn send(&self, m: &Outgoing) -> Result<(), QueueError> {
            if self.down {
                return Err(QueueError::Unavailable("no queue".into()));
            }
            self.sent.lock().expect("lock").push(m.clone());
            Ok(())
        }
    }

    fn event(name: &str) -> Vec<u8> {
        serde_json::json!({
            "EventName": name,
            "ResourceUri": "https://api.partner.microsoft.com/v1.0/engagements/referrals/abc-1",
            "ResourceName": "referral",
            "AuditUri": null,
            "ResourceChangeUtcDate": "2026-11-21T10:00:00.1234567+00:00"
        })
        .to_string()
        .into_bytes()
    }

    #[tokio::test]
    async fn a_verified_referral_event_is_enqueued_in_its_referrals_group() {
        let q = Recorder::default();
        let reply = handle(
            &HeaderMap::new(),
            &event("referral-updated"),
            &Verifier(true),
            &q,
        )
        .await;
        assert_eq!(reply.status, 200);
        let sent = q.sent.lock().expect("lock").clone();
        assert_eq!(sent.len(), 1);
        assert_eq!(
            sent[0].command,
            SyncCommand::PartnerCenterChanged {
                referral_id: "abc-1".into(),
                event: "referral-updated".into()
            }
        );
        assert_eq!(sent[0].command.group(), "referral:abc-1");
        assert_eq!(sent[0].dedup_id, dedup_id(&event("referral-updated")));
        assert_eq!(sent[0].dedup_id.len(), 64);
    }

    #[tokio::test]
    async fn bad_input_gets_a_4xx_and_enqueues_nothing() {
        let q = Recorder::default();
        let big = vec![b' '; MAX_BODY_BYTES + 1];
        let cases: [(&[u8], bool, u16); 4] = [
            (&big, true, 413),
            (&event("referral-created"), false, 401),
            (b"{not json", true, 400),
            (br#"{"EventName":"referral-created"}"#, true, 400),
        ];
        for (body, verified, status) in cases {
            let reply = handle(&HeaderMap::new(), body, &Verifier(verified), &q).await;
            assert_eq!(reply.status, status);
        }
        assert!(q.sent.lock().expect("lock").is_empty());
    }

    #[tokio::test]
    async fn test_and_other_events_are_acknowledged_without_work() {
        let q = Recorder::default();
        for name in ["test-created", "invoice-ready"] {
            let reply = handle(&HeaderMap::new(), &event(name), &Verifier(true), &q).await;
            assert_eq!(reply.status, 200, "{name}");
        }
        assert!(q.sent.lock().expect("lock").is_empty());
    }

    #[tokio::test]
    async fn a_queue_outage_gets_a_5xx_so_partner_center_retries() {
        let q = Recorder {
            down: true,
            ..Recorder::default()
        };
        let reply = handle(
            &HeaderMap::new(),
            &event("referral-created"),
            &Verifier(true),
            &q,
        )
        .await;
        assert_eq!(reply.status, 503);
    }
}
