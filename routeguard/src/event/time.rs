//! Event timestamps: wall-clock nanoseconds, shown as RFC 3339 with nanoseconds in UTC, and read
//! back from RFC 3339 (any offset, up to nanosecond precision) by `report`.

use std::{fmt, str::FromStr};

use serde::{de, Deserialize, Deserializer, Serialize, Serializer};

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
        let Ok(year @ 0..=9999) = u32::try_from(y) else {
            return format!(
                "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{nanos:09}Z",
                sod / 3600,
                (sod / 60) % 60,
                sod % 60
            );
        };
        // Every event has one: written digit by digit, not through the formatting machinery
        // (seven fields a timestamp were a visible share of the tracer's time in a burst).
        let mut text = *b"0000-00-00T00:00:00.000000000Z";
        let mut put = |at: usize, width: usize, mut value: u32| {
            for digit in text[at..at + width].iter_mut().rev() {
                *digit = b'0' + (value % 10) as u8;
                value /= 10;
            }
        };
        let sod = sod as u32;
        put(0, 4, year);
        put(5, 2, m);
        put(8, 2, d);
        put(11, 2, sod / 3600);
        put(14, 2, (sod / 60) % 60);
        put(17, 2, sod % 60);
        put(20, 9, nanos);
        text.iter().map(|&b| char::from(b)).collect()
    }

    /// `15:17:41.123456` — the time of day shown on the terminal.
    pub fn time_of_day(self) -> String {
        let full = self.rfc3339();
        full[11..26].to_string()
    }
}

/// Why a string is not an RFC 3339 timestamp.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "`{input}` is not an RFC 3339 timestamp ({reason}); use e.g. 2026-11-27T15:17:41.123456789Z"
)]
pub struct TimestampError {
    pub input: String,
    pub reason: &'static str,
}

impl FromStr for Timestamp {
    type Err = TimestampError;

    /// `YYYY-MM-DDTHH:MM:SS[.fraction](Z|±hh:mm)`, 1 to 9 fractional digits; `t`/`z` accepted
    /// lower-case as RFC 3339 allows. Leap seconds (`:60`) are refused: events never carry them.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = |reason| TimestampError {
            input: s.to_string(),
            reason,
        };
        let b = s.as_bytes();
        if b.len() < 20 {
            return Err(err("too short"));
        }
        let num = |range: std::ops::Range<usize>| -> Option<i64> {
            let part = &b[range];
            part.iter()
                .all(u8::is_ascii_digit)
                .then(|| part.iter().fold(0i64, |n, d| n * 10 + i64::from(d - b'0')))
        };
        let sep = |i: usize, c: u8| b[i] == c;
        if !(sep(4, b'-')
            && sep(7, b'-')
            && matches!(b[10], b'T' | b't')
            && sep(13, b':')
            && sep(16, b':'))
        {
            return Err(err("expected YYYY-MM-DDTHH:MM:SS"));
        }
        let (Some(y), Some(mo), Some(d), Some(h), Some(mi), Some(sec)) = (
            num(0..4),
            num(5..7),
            num(8..10),
            num(11..13),
            num(14..16),
            num(17..19),
        ) else {
            return Err(err("non-digit in date or time"));
        };
        if !(1..=12).contains(&mo) || d < 1 || d > days_in_month(y, mo as u32) {
            return Err(err("no such date"));
        }
        if h > 23 || mi > 59 || sec > 59 {
            return Err(err("no such time of day"));
        }
        let mut i = 19;
        let mut nanos = 0i64;
        if b[i] == b'.' {
            i += 1;
            let start = i;
            while i < b.len() && b[i].is_ascii_digit() {
                i += 1;
            }
            let digits = i - start;
            if digits == 0 || digits > 9 {
                return Err(err("1 to 9 fractional digits"));
            }
            nanos = num(start..i).unwrap_or(0) * 10i64.pow(9 - digits as u32);
        }
        let offset_secs = match &b[i..] {
            [b'Z' | b'z'] => 0,
            [sign @ (b'+' | b'-'), _, _, b':', _, _] => {
                let (Some(oh), Some(om)) = (num(i + 1..i + 3), num(i + 4..i + 6)) else {
                    return Err(err("non-digit in offset"));
                };
                if oh > 23 || om > 59 {
                    return Err(err("no such offset"));
                }
                let off = oh * 3600 + om * 60;
                if *sign == b'-' {
                    -off
                } else {
                    off
                }
            }
            _ => return Err(err("expected Z or an offset like +02:00 at the end")),
        };
        let days = days_from_civil(y, mo as u32, d as u32);
        let secs = days * 86_400 + h * 3600 + mi * 60 + sec - offset_secs;
        Ok(Timestamp(
            i128::from(secs) * 1_000_000_000 + i128::from(nanos),
        ))
    }
}

fn days_in_month(y: i64, m: u32) -> i64 {
    match m {
        2 if (y % 4 == 0 && y % 100 != 0) || y % 400 == 0 => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Proleptic Gregorian date to days since 1970-01-01 (inverse of [`civil_from_days`]).
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = i64::from((m + 9) % 12);
    let doy = (153 * mp + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
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

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl de::Visitor<'_> for Visitor {
            type Value = Timestamp;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an RFC 3339 timestamp such as 2026-11-27T15:17:41.123456789Z")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Timestamp, E> {
                v.parse().map_err(E::custom)
            }
        }
        d.deserialize_str(Visitor)
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

    #[test]
    fn digit_by_digit_is_what_format_writes() {
        let formatted = |ts: Timestamp| {
            let secs = ts.0.div_euclid(1_000_000_000) as i64;
            let nanos = ts.0.rem_euclid(1_000_000_000);
            let sod = secs.rem_euclid(86_400);
            let (y, m, d) = civil_from_days(secs.div_euclid(86_400));
            format!(
                "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{nanos:09}Z",
                sod / 3600,
                (sod / 60) % 60,
                sod % 60
            )
        };
        let mut ns: i128 = -62_167_219_200_000_000_001; // just before year 0
        while ns < 253_402_300_800_000_000_000 + 86_400_000_000_000 {
            let ts = Timestamp(ns);
            assert_eq!(ts.rfc3339(), formatted(ts));
            ns += 86_399_999_999_977 * 13;
        }
    }

    #[test]
    fn parses_what_it_prints() {
        for ns in [
            0i128,
            1_795_792_661_123_456_789,
            1_709_164_800 * 1_000_000_000,
            -1,
            951_782_400_000_000_001, // 2000-02-29
        ] {
            let ts = Timestamp(ns);
            assert_eq!(
                ts.rfc3339().parse::<Timestamp>(),
                Ok(ts),
                "{}",
                ts.rfc3339()
            );
        }
    }

    #[test]
    fn parses_offsets_and_short_fractions() {
        let want = Timestamp(1_795_792_661_000_000_000);
        assert_eq!("2026-11-27T15:17:41Z".parse(), Ok(want));
        assert_eq!("2026-11-27t15:17:41z".parse(), Ok(want));
        assert_eq!("2026-11-27T16:17:41+01:00".parse(), Ok(want));
        assert_eq!("2026-11-27T10:47:41-04:30".parse(), Ok(want));
        assert_eq!(
            "2026-11-27T15:17:41.5Z".parse(),
            Ok(Timestamp(want.0 + 500_000_000))
        );
        assert_eq!(
            "2026-11-27T15:17:41.000000001Z".parse(),
            Ok(Timestamp(want.0 + 1))
        );
    }

    #[test]
    fn refuses_malformed_timestamps() {
        for (s, why) in [
            ("2026-11-27", "too short"),
            ("2026-11-27 15:17:41Z", "expected YYYY-MM-DDTHH:MM:SS"),
            ("2026-02-30T00:00:00Z", "no such date"),
            ("2025-02-29T00:00:00Z", "no such date"),
            ("2026-11-27T24:00:00Z", "no such time of day"),
            ("2026-11-27T15:17:41.Z", "1 to 9 fractional digits"),
            (
                "2026-11-27T15:17:41.1234567891Z",
                "1 to 9 fractional digits",
            ),
            ("2026-11-27T15:17:41", "too short"),
            ("2026-11-27T15:17:41+0100", "expected Z or an offset"),
            ("2026-11-27T15:17:4xZ", "non-digit"),
        ] {
            let e = s.parse::<Timestamp>().unwrap_err();
            assert!(e.to_string().contains(why), "{s}: {e}");
        }
    }

    #[test]
    fn deserializes_from_json() {
        let ts: Timestamp = serde_json::from_str("\"2026-11-27T15:17:41.123456789Z\"").unwrap();
        assert_eq!(ts, Timestamp(1_795_792_661_123_456_789));
        let e = serde_json::from_str::<Timestamp>("\"yesterday\"").unwrap_err();
        assert!(e.to_string().contains("not an RFC 3339 timestamp"), "{e}");
        assert!(serde_json::from_str::<Timestamp>("12").is_err());
    }
}
