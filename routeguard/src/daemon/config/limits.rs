//! The accepted range of every duration, size and count in the config, and the checks that
//! need more than one key or a path.
//!
//! Checked once the whole file parsed, so that an error names the key, the value and the range
//! (a value out of range used to be taken as it was: `restore.window = "0"` turned the flap
//! guard off, and a duration of 2^64 seconds panicked at the first `Instant + Duration`).
//! [`LIMITS`] is also the "accepted" column of the table in docs/daemon.md, which a test
//! compares with it.
//!
//! The bounds are what a daemon can sensibly run with, not what the types can hold: a minute of
//! history is no audit store, a flap guard that forgets in a millisecond guards nothing, and a
//! suspension of a year is a restore switched off by accident.

use std::{fmt, path::Path, time::Duration};

use super::Config;

/// What a bound counts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Unit {
    /// Milliseconds, written `500ms`, `90s`, `10m`, `12h`, `30d`.
    Duration,
    /// Bytes, written `4096`, `64K`, `16M`, `1G`.
    Bytes,
    /// A plain number.
    Count,
}

/// The accepted range of one key.
pub struct Limit {
    /// As in the file: `section.key`.
    pub key: &'static str,
    pub unit: Unit,
    pub min: u64,
    pub max: u64,
    /// What `0` means when it is accepted below `min` (`"keep forever"`).
    pub zero: Option<&'static str>,
    /// A condition beyond the range, checked by [`check`].
    pub also: Option<&'static str>,
    /// The key's value in a parsed config, in `unit`s (`u128`: a duration in milliseconds
    /// need not fit in 64 bits).
    get: fn(&Config) -> u128,
}

const SECOND: u64 = 1000;
const MINUTE: u64 = 60 * SECOND;
const HOUR: u64 = 60 * MINUTE;
const DAY: u64 = 24 * HOUR;
const K: u64 = 1 << 10;
const M: u64 = 1 << 20;
const G: u64 = 1 << 30;

fn ms(d: Duration) -> u128 {
    d.as_millis()
}

/// Every duration, size and count the config holds.
pub const LIMITS: &[Limit] = &[
    Limit {
        key: "store.max_age",
        unit: Unit::Duration,
        min: HOUR,
        max: 36_500 * DAY,
        zero: Some("keep events forever"),
        also: None,
        get: |c| c.store.max_age.map_or(0, ms),
    },
    Limit {
        key: "store.max_rows",
        unit: Unit::Count,
        min: 1_000,
        max: 1_000_000_000,
        zero: Some("no limit"),
        also: None,
        get: |c| c.store.max_rows.map_or(0, u128::from),
    },
    Limit {
        key: "jsonl.max_bytes",
        unit: Unit::Bytes,
        min: 64 * K,
        max: 1 << 40,
        zero: None,
        also: None,
        get: |c| u128::from(c.jsonl.max_bytes),
    },
    Limit {
        key: "jsonl.keep",
        unit: Unit::Count,
        min: 0,
        max: 1_000,
        zero: None,
        also: None,
        get: |c| u128::from(c.jsonl.keep),
    },
    Limit {
        key: "capture.ring_size",
        unit: Unit::Bytes,
        min: 64 * K,
        max: G,
        zero: None,
        also: Some("a power of two"),
        get: |c| u128::from(c.capture.ring_size),
    },
    Limit {
        key: "capture.queue_size",
        unit: Unit::Bytes,
        min: M,
        max: 2 * G,
        zero: None,
        also: None,
        get: |c| u128::from(c.capture.queue_size),
    },
    Limit {
        key: "capture.wakeup",
        unit: Unit::Bytes,
        min: 0,
        max: G / 2,
        zero: None,
        also: Some("at most half of capture.ring_size"),
        get: |c| u128::from(c.capture.wakeup),
    },
    Limit {
        key: "capture.orphan_after",
        unit: Unit::Duration,
        // Below a minute only for tests: a daemon restart must fit.
        min: 2 * SECOND,
        max: 30 * DAY,
        zero: Some("never: a pinned capture records until unpinned"),
        also: None,
        get: |c| ms(c.capture.orphan_after),
    },
    Limit {
        key: "capture.budget_rate",
        unit: Unit::Bytes,
        min: 4 * K,
        max: G,
        zero: Some("no budgets: every removal request is copied"),
        also: None,
        get: |c| u128::from(c.capture.budget_rate),
    },
    Limit {
        key: "capture.budget_burst",
        unit: Unit::Bytes,
        min: 16 * K,
        max: G / 8,
        zero: None,
        also: None,
        get: |c| u128::from(c.capture.budget_burst),
    },
    Limit {
        key: "restore.max_attempts",
        unit: Unit::Count,
        min: 1,
        max: 1_000,
        zero: None,
        also: None,
        get: |c| u128::from(c.restore.max_attempts),
    },
    Limit {
        key: "restore.window",
        unit: Unit::Duration,
        min: SECOND,
        max: DAY,
        zero: None,
        also: None,
        get: |c| ms(c.restore.window),
    },
    Limit {
        key: "restore.backoff",
        unit: Unit::Duration,
        min: 0,
        max: 10 * MINUTE,
        zero: None,
        also: None,
        get: |c| ms(c.restore.backoff),
    },
    Limit {
        key: "restore.backoff_max",
        unit: Unit::Duration,
        min: 0,
        max: HOUR,
        zero: None,
        also: Some("at least restore.backoff"),
        get: |c| ms(c.restore.backoff_max),
    },
    Limit {
        key: "restore.suspend",
        unit: Unit::Duration,
        min: SECOND,
        max: 30 * DAY,
        zero: None,
        also: None,
        get: |c| ms(c.restore.suspend),
    },
    Limit {
        key: "restore.retry_for",
        unit: Unit::Duration,
        min: 0,
        max: DAY,
        zero: Some("never retry"),
        also: None,
        get: |c| ms(c.restore.retry_for),
    },
    Limit {
        key: "restore.max_missing",
        unit: Unit::Count,
        min: 1,
        max: 1_000_000,
        zero: None,
        also: None,
        get: |c| u128::from(c.restore.max_missing),
    },
    Limit {
        key: "otlp.timeout",
        unit: Unit::Duration,
        min: 100,
        max: 5 * MINUTE,
        zero: None,
        also: None,
        get: |c| ms(c.otlp.timeout),
    },
    Limit {
        key: "otlp.batch_size",
        unit: Unit::Count,
        min: 1,
        max: 10_000,
        zero: None,
        also: None,
        get: |c| u128::from(c.otlp.batch_size),
    },
    Limit {
        key: "otlp.batch_delay",
        unit: Unit::Duration,
        min: 0,
        max: MINUTE,
        zero: Some("send at once"),
        also: None,
        get: |c| ms(c.otlp.batch_delay),
    },
    Limit {
        key: "otlp.queue_size",
        unit: Unit::Count,
        min: 1,
        max: 1_000_000,
        zero: None,
        also: Some("at least otlp.batch_size"),
        get: |c| u128::from(c.otlp.queue_size),
    },
];

/// A value the config must not hold: which key, its value, and what would do.
#[derive(Debug, PartialEq, Eq)]
pub struct Violation {
    pub key: &'static str,
    pub value: String,
    pub accepted: String,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "`{}` = {} is out of range; accepted: {}",
            self.key, self.value, self.accepted
        )
    }
}

impl Limit {
    /// The range in words, as docs/daemon.md writes it: `1s to 1d`, `0 (no limit) or 1000 to
    /// 1000000000`.
    pub fn accepted(&self) -> String {
        let range = format!("{} to {}", self.show(self.min), self.show(self.max));
        let range = match self.also {
            Some(also) => format!("{range}, {also}"),
            None => range,
        };
        match self.zero {
            Some(meaning) if self.min > 0 => format!("0 ({meaning}) or {range}"),
            Some(meaning) => format!("{range}; 0: {meaning}"),
            None => range,
        }
    }

    fn show(&self, n: u64) -> String {
        show(self.unit, u128::from(n))
    }

    fn check(&self, config: &Config) -> Result<(), Violation> {
        let v = (self.get)(config);
        let zero_ok = v == 0 && self.zero.is_some();
        if zero_ok || (u128::from(self.min)..=u128::from(self.max)).contains(&v) {
            return Ok(());
        }
        Err(Violation {
            key: self.key,
            value: show(self.unit, v),
            accepted: self.accepted(),
        })
    }
}

/// `n` in the largest unit that writes it exactly: `90s`, `10m`, `64K`, `0`.
fn show(unit: Unit, n: u128) -> String {
    const DURATIONS: [(u128, &str); 4] = [
        (DAY as u128, "d"),
        (HOUR as u128, "h"),
        (MINUTE as u128, "m"),
        (SECOND as u128, "s"),
    ];
    const SIZES: [(u128, &str); 3] = [(G as u128, "G"), (M as u128, "M"), (K as u128, "K")];
    let units: &[(u128, &str)] = match unit {
        Unit::Duration => &DURATIONS,
        Unit::Bytes => &SIZES,
        Unit::Count => &[],
    };
    if n == 0 {
        return "0".into();
    }
    for &(size, suffix) in units {
        if n.is_multiple_of(size) {
            return format!("{}{suffix}", n / size);
        }
    }
    match unit {
        Unit::Duration => format!("{n}ms"),
        Unit::Bytes | Unit::Count => n.to_string(),
    }
}

/// Checks every limit, then what involves a path or two keys; the first violation found.
pub fn check(config: &Config) -> Result<(), Violation> {
    for limit in LIMITS {
        limit.check(config)?;
    }
    let c = &config.capture;
    if !c.ring_size.is_power_of_two() {
        return Err(Violation {
            key: "capture.ring_size",
            value: show(Unit::Bytes, c.ring_size.into()),
            accepted: "a power of two from 64K to 1G, e.g. \"8M\"".into(),
        });
    }
    if c.wakeup > c.ring_size / 2 {
        return Err(Violation {
            key: "capture.wakeup",
            value: show(Unit::Bytes, c.wakeup.into()),
            accepted: format!(
                "0 to half of capture.ring_size ({}): the ring must wake the daemon while \
                 half of it is still free",
                show(Unit::Bytes, (c.ring_size / 2).into())
            ),
        });
    }
    let r = &config.restore;
    if r.backoff_max < r.backoff {
        return Err(Violation {
            key: "restore.backoff_max",
            value: show(Unit::Duration, ms(r.backoff_max)),
            accepted: format!(
                "restore.backoff ({}) to 1h",
                show(Unit::Duration, ms(r.backoff))
            ),
        });
    }
    file_path("store.path", &config.store.path)?;
    file_path("jsonl.path", &config.jsonl.path)?;
    if config.store.enabled && config.jsonl.enabled && config.store.path == config.jsonl.path {
        return Err(Violation {
            key: "jsonl.path",
            value: quoted(&config.jsonl.path),
            accepted: "a file other than store.path".into(),
        });
    }
    config.otlp.check()?;
    if !c.pin_dir.is_empty() && !Path::new(&c.pin_dir).is_absolute() {
        return Err(Violation {
            key: "capture.pin_dir",
            value: format!("{:?}", c.pin_dir),
            accepted: "\"\" (no pinning) or an absolute path in bpffs".into(),
        });
    }
    Ok(())
}

/// A file the daemon writes: an absolute path that names a file, not a directory. A relative
/// one would depend on the directory the daemon happens to start in (`/` under systemd).
fn file_path(key: &'static str, path: &Path) -> Result<(), Violation> {
    let text = path.as_os_str().as_encoded_bytes();
    let names_file = path.file_name().is_some() && !text.ends_with(b"/") && !text.ends_with(b"/.");
    if path.is_absolute() && names_file {
        return Ok(());
    }
    Err(Violation {
        key,
        value: quoted(path),
        accepted: "an absolute path to a file, e.g. \"/var/lib/routeguard/events.db\"".into(),
    })
}

fn quoted(path: &Path) -> String {
    format!("{:?}", path.display().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_in_words() {
        let words: Vec<(&str, String)> = LIMITS.iter().map(|l| (l.key, l.accepted())).collect();
        assert!(words.contains(&("restore.window", "1s to 1d".into())));
        assert!(words.contains(&(
            "store.max_age",
            "0 (keep events forever) or 1h to 36500d".into()
        )));
        assert!(words.contains(&("restore.retry_for", "0 to 1d; 0: never retry".into())));
        assert!(words.contains(&("capture.ring_size", "64K to 1G, a power of two".into())));
        assert_eq!(show(Unit::Duration, 1500), "1500ms");
        assert_eq!(show(Unit::Bytes, 100 << 20), "100M");
        assert_eq!(
            show(Unit::Duration, u128::from(u64::MAX) * 1000),
            "18446744073709551615s"
        );
    }

    #[test]
    fn the_defaults_are_in_range() {
        check(&Config::default()).unwrap();
    }

    /// The table in docs/daemon.md has a column "accepted": it says what [`LIMITS`] says.
    #[test]
    fn docs_daemon_md_lists_every_range() {
        const DOC: &str = include_str!("../../../../docs/daemon.md");
        for limit in LIMITS {
            let row = DOC
                .lines()
                .find(|l| l.starts_with(&format!("| `{}` |", limit.key)))
                .unwrap_or_else(|| panic!("no row for {} in docs/daemon.md", limit.key));
            let cells: Vec<&str> = row.split(" | ").collect();
            assert_eq!(
                cells.get(2).copied(),
                Some(limit.accepted().as_str()),
                "the range of {} in docs/daemon.md:\n{row}",
                limit.key
            );
        }
    }
}
