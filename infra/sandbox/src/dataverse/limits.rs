//! Service protection (docs/dataverse.md, "Service protection (429)"): a request budget per
//! caller over a sliding window, on the sandbox clock. Refused requests count too, so a client
//! that keeps sending while throttled sees `Retry-After` grow, as documented.

use std::collections::{HashMap, VecDeque};
use std::time::Duration;

use chrono::{DateTime, Utc};

use super::error::DvError;

#[derive(Debug)]
pub struct Limits {
    /// Requests allowed per caller per window.
    pub requests: u32,
    pub window: Duration,
    usage: HashMap<String, VecDeque<DateTime<Utc>>>,
}

impl Limits {
    pub fn new(requests: u32, window: Duration) -> Limits {
        Limits {
            requests,
            window,
            usage: HashMap::new(),
        }
    }

    /// Forgets every caller's recent requests (the control API's way to end throttling).
    pub fn clear_usage(&mut self) {
        self.usage.clear();
    }

    fn window(&self) -> chrono::Duration {
        chrono::Duration::from_std(self.window).unwrap_or(chrono::Duration::seconds(300))
    }

    /// Records a request of `caller`; `Ok` with the requests left in the window, or the 429.
    pub fn admit(&mut self, caller: &str, now: DateTime<Utc>) -> Result<u32, DvError> {
        let window = self.window();
        let budget = self.requests as usize;
        let seen = self.usage.entry(caller.to_string()).or_default();
        while seen.front().is_some_and(|t| *t + window <= now) {
            seen.pop_front();
        }
        let admitted = seen.len() < budget;
        seen.push_back(now);
        if admitted {
            return Ok(u32::try_from(budget - seen.len()).unwrap_or(u32::MAX));
        }
        // The next request is admitted once all but `budget - 1` of the recorded ones have
        // left the window.
        let pivot = seen.len().saturating_sub(budget.max(1));
        let frees_at = seen.get(pivot).map_or(now + window, |t| *t + window);
        let wait = (frees_at - now).num_milliseconds().max(0);
        let secs = u64::try_from((wait + 999) / 1000).unwrap_or(1).max(1);
        Err(DvError::throttled(
            self.requests,
            self.window.as_secs(),
            secs,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn budget_then_retry_after_then_recovery() {
        let mut l = Limits::new(2, Duration::from_secs(300));
        let t0 = Utc::now();
        assert_eq!(l.admit("a", t0).expect("first"), 1);
        assert_eq!(l.admit("a", t0).expect("second"), 0);
        let err = l.admit("a", t0).expect_err("third is refused");
        assert_eq!(err.retry_after, Some(300));
        assert_eq!(err.code, super::super::error::CODE_THROTTLED);
        assert!(l.admit("b", t0).is_ok(), "budgets are per caller");
        let later = t0 + chrono::Duration::seconds(100);
        let err = l.admit("a", later).expect_err("still refused");
        assert_eq!(err.retry_after, Some(200), "{err:?}");
        assert!(l.admit("a", t0 + chrono::Duration::seconds(400)).is_ok());
    }
}
