//! Event timestamps: wall-clock nanoseconds, shown as RFC 3339 with nanoseconds in UTC.

use serde::{Serialize, Serializer};

/// Nanoseconds since the Unix epoch.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(pub i128);

impl Timestamp {
    /// `2026-11-27T15:17:41.123456789Z`
    pub fn rfc3339(self) -> String {
        let secs = self.0.div_euclid(1_000_000_000) as i64;
        let nanos = self.0.rem_euclid(1_000_000_000) as u32;
        let days = secs.div_euclid(86_400);
        let sod = secs.rem_euclid(86_400);
        let (y, m, d) = civil_from_days(days);
        format!(
            "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{nanos:09}Z",
            sod / 3600,
            (sod / 60) % 60,
            sod % 60
        )
    }

    /// `15:17:41.123456` — the time of day shown on the terminal.
    pub fn time_of_day(self) -> String {
        let full = self.rfc3339();
        full[11..26].to_string()
    }
}

/// Days since 1970-01-01 to a proleptic Gregorian date (Howard Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.rfc3339())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_rfc3339_with_nanoseconds() {
        // 2026-11-27T15:17:41Z is 1795792661 s after the epoch.
        let ts = Timestamp(1_795_792_661_000_000_000 + 123_456_789);
        assert_eq!(ts.rfc3339(), "2026-11-27T15:17:41.123456789Z");
        assert_eq!(ts.time_of_day(), "15:17:41.123456");
    }

    #[test]
    fn formats_epoch_and_leap_day() {
        assert_eq!(Timestamp(0).rfc3339(), "1970-01-01T00:00:00.000000000Z");
        // 2024-02-29T00:00:00Z
        assert_eq!(
            Timestamp(1_709_164_800 * 1_000_000_000).rfc3339(),
            "2024-02-29T00:00:00.000000000Z"
        );
    }
}
