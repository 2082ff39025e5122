//! End-to-end scenarios live under `tests/tests/`; this library holds what several of them share.

pub mod queue_contract;
pub mod stack;
pub mod store_contract;

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
