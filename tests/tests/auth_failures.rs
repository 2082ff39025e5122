//! When the connector can no longer act as the Referral admin (the refresh token was revoked or
//! lapsed), the sync stops with an error that says what to do, counts `PartnerCenterAuthFailed`,
//! and keeps every message in the queue, waiting between tries rather than spending its
//! receives; once the admin signs in again the backlog syncs, each referral once.

use std::time::Duration;

use cosell_e2e::stack::{Backend, CrmKind, Incoming, MAX_RECEIVES, QueueRun, TestStack};
use cosell_sandbox::config::ADMIN_USER;
use cosell_shared::metrics::{self, Metric};
use reqwest::Method;
use serde_json::json;

cosell_e2e::every_stack!(a_revoked_sign_in_holds_the_backlog_until_the_admin_signs_in_again);

/// How long a message waits in the queue after a sign-in failure, in these tests.
const AUTH_RETRY: Duration = Duration::from_secs(1);

/// Batches until every visible command was tried once (each failed one hides for the wait).
async fn every_visible_batch(stack: &TestStack) -> QueueRun {
    let mut run = QueueRun::default();
    loop {
        let batch = stack.process_batch().await;
        if batch.received() == 0 {
            return run;
        }
        run.add(batch);
    }
}

async fn a_revoked_sign_in_holds_the_backlog_until_the_admin_signs_in_again(
    kind: CrmKind,
    backend: Backend,
) {
    let mut stack = TestStack::start(kind, backend).await;
    stack.options.auth_retry = AUTH_RETRY;
    let failures_before = metrics::total(Metric::PartnerCenterAuthFailed);

    // The admin's sessions are revoked (or the token lapsed) while referrals keep coming.
    stack
        .control(
            Method::POST,
            "/_sandbox/entra/revoke",
            Some(json!({"username": ADMIN_USER})),
        )
        .await;
    stack
        .control(Method::POST, "/_sandbox/identities/expire-tokens", None)
        .await;
    let mut ids = Vec::new();
    for i in 0..6 {
        let referral = stack
            .incoming_referral(Incoming::CoSell, json!({"name": format!("Burst {i}")}))
            .await;
        ids.push(referral["id"].as_str().unwrap_or_default().to_string());
    }
    stack.wait_for_deliveries().await;
    let backlog = stack.queue_depth().await;
    assert!(backlog >= 6, "a command per referral at least: {backlog}");

    let first = every_visible_batch(&stack).await;
    assert_eq!(first.succeeded, 0, "{first:?}");
    assert_eq!(
        first.failed as u64, backlog,
        "every command waits: {first:?}"
    );
    assert!(
        first.errors.iter().all(|e| e.contains("must sign in again")
            && e.contains("`cosell auth login`")
            && e.contains("AADSTS50173")),
        "the error says what to do: {:?}",
        first.errors
    );
    assert!(
        first.errors.len() < first.failed,
        "one sign-in attempt per batch, not one per command: {first:?}"
    );
    assert!(metrics::total(Metric::PartnerCenterAuthFailed) > failures_before);

    // Not retried at full speed: the commands stay out of sight for the wait.
    let at_once = stack.process_batch().await;
    assert_eq!(at_once.received(), 0, "{at_once:?}");
    tokio::time::sleep(AUTH_RETRY + Duration::from_millis(300)).await;
    let later = every_visible_batch(&stack).await;
    assert_eq!(later.failed as u64, backlog, "{later:?}");
    // Two tries so far, fewer than the queue's receives before it dead-letters.
    const _: () = assert!(2 < MAX_RECEIVES);
    assert_eq!(stack.dead_letter_depth().await, 0);
    assert_eq!(stack.queue_depth().await, backlog, "nothing lost");
    for id in &ids {
        assert!(stack.opportunity_for(id).await.is_none());
    }

    // `cosell auth login`: the processor finds the new sign-in in the store on its next try.
    stack.sign_in_again().await;
    tokio::time::sleep(AUTH_RETRY + Duration::from_millis(300)).await;
    let run = stack.sync().await;
    assert_eq!(run.failed, 0, "{run:?}");
    assert_eq!(run.dead_lettered, 0, "{run:?}");
    for id in &ids {
        assert_eq!(
            stack.opportunities_for(id).await.len(),
            1,
            "referral {id} synced once"
        );
    }
    assert_eq!(stack.dead_letter_depth().await, 0);
}
