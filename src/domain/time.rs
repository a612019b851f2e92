//! Instants as the service stores them: microseconds since the Unix epoch, UTC. The current
//! time comes from [`crate::clock::Clock`], never from here.

use std::time::{Duration, UNIX_EPOCH};

/// An instant, in microseconds since 1970-01-01T00:00:00Z.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(pub i64);

impl Timestamp {
    /// From seconds and nanoseconds since the epoch (the protobuf `Timestamp` shape).
    pub fn from_parts(seconds: i64, nanos: i32) -> Timestamp {
        Timestamp(
            seconds
                .saturating_mul(1_000_000)
                .saturating_add(i64::from(nanos) / 1_000),
        )
    }

    /// Seconds and nanoseconds since the epoch.
    pub fn to_parts(self) -> (i64, i32) {
        let secs = self.0.div_euclid(1_000_000);
        let micros = self.0.rem_euclid(1_000_000);
        (secs, (micros * 1_000) as i32)
    }

    /// This instant moved back by `d` (saturating).
    pub fn minus(self, d: Duration) -> Timestamp {
        Timestamp(
            self.0
                .saturating_sub(d.as_micros().min(i64::MAX as u128) as i64),
        )
    }

    /// This instant moved forward by `d` (saturating).
    pub fn plus(self, d: Duration) -> Timestamp {
        Timestamp(
            self.0
                .saturating_add(d.as_micros().min(i64::MAX as u128) as i64),
        )
    }

    /// RFC 3339 form, for messages meant for people.
    pub fn to_rfc3339(self) -> String {
        let (secs, nanos) = self.to_parts();
        match u64::try_from(secs) {
            Ok(secs) => {
                humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::new(secs, nanos as u32))
                    .to_string()
            }
            Err(_) => format!("{} µs before 1970-01-01T00:00:00Z", -self.0),
        }
    }

    /// Microseconds since the epoch.
    pub fn micros(self) -> i64 {
        self.0
    }
}
