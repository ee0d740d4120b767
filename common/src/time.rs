//! Time as stored (microseconds since the Unix epoch, UTC, in an `i64`) and as sent
//! (`google.protobuf.Timestamp`).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Microseconds since the Unix epoch.
pub type Micros = i64;

/// The current time in microseconds since the Unix epoch.
pub fn now_micros() -> Micros {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX))
}

/// `duration` in microseconds, saturating.
pub fn micros(duration: Duration) -> Micros {
    i64::try_from(duration.as_micros()).unwrap_or(i64::MAX)
}

/// A stored time as a protobuf timestamp.
pub fn to_timestamp(micros: Micros) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: micros.div_euclid(1_000_000),
        // In 0..1_000_000_000 by construction.
        nanos: i32::try_from(micros.rem_euclid(1_000_000) * 1_000).unwrap_or(0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_keep_microseconds_and_handle_times_before_1970() {
        let ts = to_timestamp(1_700_000_000_123_456);
        assert_eq!((ts.seconds, ts.nanos), (1_700_000_000, 123_456_000));
        let ts = to_timestamp(-1);
        assert_eq!((ts.seconds, ts.nanos), (-1, 999_999_000));
    }
}
