//! End-to-end scenarios live under `tests/tests/`; this library holds what several of them share.

pub mod calls;
pub mod crm_contract;
pub mod partner_center_contract;
pub mod queue_contract;
pub mod stack;
pub mod store_contract;

use std::time::Duration;

use cosell_shared::retry::RetryPolicy;

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
