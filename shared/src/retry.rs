//! Retries for every external call: transient failures (429, 5xx, timeouts) are retried with
//! exponential back-off and jitter, and a server's `Retry-After` replaces the computed wait.

use std::future::Future;
use std::time::Duration;

use backon::{ExponentialBuilder, Retryable};

/// How hard to try before handing a transient failure back to the caller (who then leaves the
/// message for the queue to redeliver).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Retries after the first attempt.
    pub retries: usize,
    pub min_delay: Duration,
    pub max_delay: Duration,
    /// A `Retry-After` longer than this is not waited out here; the error is returned instead.
    pub max_retry_after: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            retries: 4,
            min_delay: Duration::from_millis(200),
            max_delay: Duration::from_secs(10),
            max_retry_after: Duration::from_secs(30),
        }
    }
}

/// An error that may be worth retrying, and how long the server asked us to wait.
pub trait Transient {
    fn is_transient(&self) -> bool;
    fn retry_after(&self) -> Option<Duration>;
}

impl RetryPolicy {
    /// Runs `op` until it succeeds, fails for good, or the retries are spent.
    pub async fn run<T, E, F, Fut>(&self, op: F) -> Result<T, E>
    where
        E: Transient,
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        let backoff = ExponentialBuilder::default()
            .with_min_delay(self.min_delay)
            .with_max_delay(self.max_delay)
            .with_max_times(self.retries)
            .with_jitter();
        let max_retry_after = self.max_retry_after;
        op.retry(backoff)
            .sleep(tokio::time::sleep)
            .when(move |e: &E| {
                e.is_transient() && e.retry_after().is_none_or(|d| d <= max_retry_after)
            })
            // `computed` is None once the retries are spent: keep it so, or this never ends.
            .adjust(|e: &E, computed| computed.map(|c| e.retry_after().unwrap_or(c)))
            .await
    }
}

impl Transient for crate::crm::CrmError {
    fn is_transient(&self) -> bool {
        crate::crm::CrmError::is_transient(self)
    }
    fn retry_after(&self) -> Option<Duration> {
        match self {
            crate::crm::CrmError::Transient { retry_after, .. } => {
                retry_after.map(Duration::from_secs)
            }
            _ => None,
        }
    }
}

impl Transient for crate::partner_center::PartnerCenterError {
    fn is_transient(&self) -> bool {
        crate::partner_center::PartnerCenterError::is_transient(self)
    }
    fn retry_after(&self) -> Option<Duration> {
        match self {
            crate::partner_center::PartnerCenterError::Transient { retry_after, .. } => {
                retry_after.map(Duration::from_secs)
            }
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;
    use crate::crm::CrmError;

    fn fast() -> RetryPolicy {
        RetryPolicy {
            retries: 3,
            min_delay: Duration::from_millis(1),
            max_delay: Duration::from_millis(5),
            max_retry_after: Duration::from_secs(1),
        }
    }

    fn transient(retry_after: Option<u64>) -> CrmError {
        CrmError::Transient {
            status: Some(429),
            retry_after,
            message: "slow down".into(),
        }
    }

    #[tokio::test]
    async fn transient_errors_are_retried_until_success() {
        let calls = AtomicUsize::new(0);
        let result = fast()
            .run(|| async {
                if calls.fetch_add(1, Ordering::SeqCst) < 2 {
                    Err(transient(None))
                } else {
                    Ok(7)
                }
            })
            .await;
        assert_eq!(result, Ok(7));
        assert_eq!(calls.load(Ordering::SeqCst), 3);
    }

    #[tokio::test]
    async fn permanent_errors_and_long_retry_afters_are_returned_at_once() {
        let calls = AtomicUsize::new(0);
        let rejected = fast()
            .run(|| async {
                calls.fetch_add(1, Ordering::SeqCst);
                Err::<(), _>(CrmError::Rejected {
                    message: "bad".into(),
                    field: None,
                })
            })
            .await;
        assert!(matches!(rejected, Err(CrmError::Rejected { .. })));
        assert_eq!(calls.load(Ordering::SeqCst), 1);

        let calls = AtomicUsize::new(0);
        let long = fast()
            .run(|| async {
                calls.fetch_add(1, Ordering::SeqCst);
                Err::<(), _>(transient(Some(3600)))
            })
            .await;
        assert_eq!(long, Err(transient(Some(3600))));
        assert_eq!(calls.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn retries_are_bounded() {
        let calls = AtomicUsize::new(0);
        let result = fast()
            .run(|| async {
                calls.fetch_add(1, Ordering::SeqCst);
                Err::<(), _>(transient(Some(0)))
            })
            .await;
        assert!(result.is_err());
        assert_eq!(calls.load(Ordering::SeqCst), 4);
    }
}
