//! Sandbox time: the wall clock plus an offset that tests move forward, so that token expiry and
//! the 14-day referral expiry can be exercised without waiting.

use std::sync::Mutex;

use chrono::{DateTime, Duration, SecondsFormat, Utc};

#[derive(Debug, Default)]
pub struct Clock {
    offset: Mutex<Duration>,
}

impl Clock {
    pub fn now(&self) -> DateTime<Utc> {
        Utc::now() + *self.offset.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn advance(&self, by: Duration) -> DateTime<Utc> {
        let mut offset = self.offset.lock().unwrap_or_else(|e| e.into_inner());
        *offset += by;
        Utc::now() + *offset
    }

    pub fn reset(&self) {
        *self.offset.lock().unwrap_or_else(|e| e.into_inner()) = Duration::zero();
    }

    pub fn offset(&self) -> Duration {
        *self.offset.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Partner Center writes timestamps with seven fractional digits (100 ns ticks) and a `Z`.
pub fn pc_timestamp(t: DateTime<Utc>) -> String {
    format!(
        "{}.{:07}Z",
        t.format("%Y-%m-%dT%H:%M:%S"),
        t.timestamp_subsec_nanos() / 100
    )
}

/// Webhook payloads carry the change date with seven fractional digits and an explicit offset.
pub fn webhook_timestamp(t: DateTime<Utc>) -> String {
    format!(
        "{}.{:07}+00:00",
        t.format("%Y-%m-%dT%H:%M:%S"),
        t.timestamp_subsec_nanos() / 100
    )
}

pub fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partner_center_timestamps_have_seven_fraction_digits() {
        let t = DateTime::parse_from_rfc3339("2019-02-23T02:05:23.293181789Z")
            .expect("valid")
            .with_timezone(&Utc);
        assert_eq!(pc_timestamp(t), "2019-02-23T02:05:23.2931817Z");
        assert_eq!(webhook_timestamp(t), "2019-02-23T02:05:23.2931817+00:00");
    }

    #[test]
    fn advancing_moves_now_forward() {
        let clock = Clock::default();
        let before = clock.now();
        clock.advance(Duration::days(14));
        assert!(clock.now() - before >= Duration::days(14));
        clock.reset();
        assert!(clock.now() - before < Duration::days(1));
    }
}
