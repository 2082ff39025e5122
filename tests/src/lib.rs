//! End-to-end scenarios live under `tests/tests/`; this library holds what several of them share.

pub mod calls;
pub mod crm_contract;
pub mod partner_center_contract;
pub mod queue_contract;
pub mod stack;
pub mod store_contract;

use std::time::Duration;

use cosell_shared::partner_center::signin::SignIn;
use cosell_shared::partner_center::token::{PartnerCenterAuth, Secret, UserCredential};
use cosell_shared::retry::RetryPolicy;

/// A call of the sandbox's control API that must succeed; answers its JSON (or `null`).
pub async fn sandbox_control(
    sandbox: &cosell_sandbox::Sandbox,
    method: reqwest::Method,
    path: &str,
    body: serde_json::Value,
) -> serde_json::Value {
    let response = reqwest::Client::new()
        .request(method, sandbox.url(path))
        .json(&body)
        .send()
        .await
        .unwrap_or_else(|e| panic!("{path}: {e}"));
    let status = response.status();
    let text = response.text().await.unwrap_or_default();
    assert!(status.is_success(), "{path} answered {status}: {text}");
    serde_json::from_str(&text).unwrap_or(serde_json::Value::Null)
}

/// The sandbox's Referral admin, signed in as `cosell auth login` does, for the sandbox's app.
pub async fn sandbox_admin_auth(base_url: &str) -> PartnerCenterAuth {
    sandbox_auth(
        base_url,
        UserCredential::RefreshToken(
            sandbox_refresh_token(base_url, cosell_sandbox::config::ADMIN_USER).await,
        ),
    )
}

/// The sandbox's default app, signing in at the sandbox with `credential`.
pub fn sandbox_auth(base_url: &str, credential: UserCredential) -> PartnerCenterAuth {
    PartnerCenterAuth {
        authority_url: base_url.to_string(),
        ..PartnerCenterAuth::new(
            cosell_sandbox::config::CLIENT_ID,
            cosell_sandbox::config::CLIENT_SECRET,
            credential,
        )
    }
}

/// `username` signed in at the sandbox as `cosell auth login` signs the Referral admin in (the
/// authorization-code flow with PKCE, which passes MFA; the sandbox asks for no form): the
/// refresh token the connector then runs on.
pub async fn sandbox_refresh_token(base_url: &str, username: &str) -> Secret {
    SignIn::new(
        sandbox_auth(base_url, UserCredential::RefreshToken(Secret::new(""))),
        reqwest::Client::new(),
    )
    .sign_in_without_form(Some(username))
    .await
    .unwrap_or_else(|e| panic!("cannot sign {username} in at the sandbox: {e}"))
    .refresh_token
}

/// The retry policy every test gives the adapters: `retries` after the first attempt, with
/// millisecond backoff so scenarios stay short, but a `Retry-After` of up to two seconds waited
/// out as the service asks.
pub fn fast_retries(retries: usize) -> RetryPolicy {
    RetryPolicy {
        retries,
        min_delay: Duration::from_millis(1),
        max_delay: Duration::from_millis(10),
        max_retry_after: Duration::from_secs(2),
    }
}

/// Runs each scenario for both CRMs, on DynamoDB and SQS (moto) and on the embedded store and
/// queue: `dynamics::aws::…`, `salesforce::embedded::…`.
#[macro_export]
macro_rules! every_stack {
    ($($scenario:ident),* $(,)?) => {
        $crate::every_stack!(@crm dynamics, Dynamics; $($scenario),*);
        $crate::every_stack!(@crm salesforce, Salesforce; $($scenario),*);
    };
    (@crm $module:ident, $kind:ident; $($scenario:ident),*) => {
        mod $module {
            $crate::every_stack!(@backend aws, Aws, $kind; $($scenario),*);
            $crate::every_stack!(@backend embedded, Embedded, $kind; $($scenario),*);
        }
    };
    (@backend $module:ident, $backend:ident, $kind:ident; $($scenario:ident),*) => {
        mod $module {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $scenario() {
                    super::super::$scenario(
                        $crate::stack::CrmKind::$kind,
                        $crate::stack::Backend::$backend,
                    )
                    .await
                }
            )*
        }
    };
}
