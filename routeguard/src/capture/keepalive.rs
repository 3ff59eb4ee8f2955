//! The heartbeat a pinned capture needs to keep recording (`routeguard_common::keepalive`).
//!
//! The daemon's ring drain writes the time of its last read into the pinned `KEEPALIVE` map every
//! [`Keepalive::every`]; when no daemon has done so for `capture.orphan_after`, the programs stop
//! recording and return at once. A daemon that adopts the pins reads the map first and says how
//! long the capture was orphaned.

use std::time::{Duration, Instant};

use aya::maps::{Array, MapData};
use routeguard_common::Keepalive as Entry;

use super::CaptureError;
use crate::clock::Clock;

/// A beat at most this far apart, however long `orphan_after` is.
const EVERY_MAX: Duration = Duration::from_secs(5);

/// The pinned capture's heartbeat, written by the thread that reads the ring.
pub struct Keepalive {
    map: Array<MapData, Entry>,
    orphan_after: Duration,
    last: Option<Instant>,
}

/// What an adopting daemon found: the capture had stopped recording.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Orphaned {
    /// How long no daemon had read it when it stopped (its `orphan_after`).
    pub after: Duration,
    /// How long it has not recorded.
    pub stopped_for: Duration,
    /// Monotonic ns at which it stopped.
    pub since_ns: u64,
}

impl Orphaned {
    /// The line an adopting daemon logs.
    pub fn describe(&self, clock: &Clock) -> String {
        format!(
            "the pinned capture was orphaned for {} (since {}): no daemon had read it for {}, so it stopped recording; removals made in that time were not seen",
            human(self.stopped_for),
            clock.wall(self.since_ns).rfc3339(),
            human(self.after),
        )
    }
}

impl Keepalive {
    pub fn new(map: Array<MapData, Entry>, orphan_after: Duration) -> Self {
        Self {
            map,
            orphan_after,
            last: None,
        }
    }

    /// How often [`Keepalive::beat_if_due`] writes: a quarter of `orphan_after`, so that a few
    /// late beats (a busy drain, a paused VM) do not stop the capture.
    pub fn every(&self) -> Duration {
        if self.orphan_after.is_zero() {
            return EVERY_MAX;
        }
        (self.orphan_after / 4).min(EVERY_MAX)
    }

    /// Reads what the previous daemon left, before [`Keepalive::beat`] overwrites it.
    pub fn orphaned(&self) -> Result<Option<Orphaned>, CaptureError> {
        let old = self.map.get(&0, 0).map_err(|source| CaptureError::Map {
            name: "KEEPALIVE",
            source,
        })?;
        let now = Clock::monotonic_ns();
        Ok(old.orphaned_since(now).map(|since_ns| Orphaned {
            after: Duration::from_nanos(old.orphan_after_ns),
            stopped_for: Duration::from_nanos(now.saturating_sub(since_ns)),
            since_ns,
        }))
    }

    /// Says "read now": the programs record (again) until `orphan_after` passes without a beat.
    pub fn beat(&mut self) -> Result<(), CaptureError> {
        let entry = Entry {
            read_ns: Clock::monotonic_ns(),
            orphan_after_ns: u64::try_from(self.orphan_after.as_nanos()).unwrap_or(u64::MAX),
            orphaned: 0,
            _pad: 0,
        };
        self.map
            .set(0, entry, 0)
            .map_err(|source| CaptureError::Map {
                name: "KEEPALIVE",
                source,
            })?;
        self.last = Some(Instant::now());
        Ok(())
    }

    /// Beats when the last beat is [`Keepalive::every`] old. Called by the ring drain after
    /// each read; a failed write is logged (the next one is tried a beat later).
    pub fn beat_if_due(&mut self) {
        if self.last.is_some_and(|t| t.elapsed() < self.every()) {
            return;
        }
        if let Err(err) = self.beat() {
            tracing::warn!(%err, "cannot tell the pinned capture the ring was read; it stops recording after capture.orphan_after without a beat");
            self.last = Some(Instant::now());
        }
    }
}

/// `3h12m`, `42s`, `1d4h`: the two largest units.
pub fn human(d: Duration) -> String {
    let s = d.as_secs();
    let parts = [
        (s / 86_400, "d"),
        (s / 3_600 % 24, "h"),
        (s / 60 % 60, "m"),
        (s % 60, "s"),
    ];
    let Some(first) = parts.iter().position(|(n, _)| *n > 0) else {
        return format!("{}ms", d.as_millis());
    };
    parts[first..]
        .iter()
        .take(2)
        .filter(|(n, _)| *n > 0)
        .map(|(n, unit)| format!("{n}{unit}"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_like_a_person_wrote_them() {
        assert_eq!(human(Duration::from_secs(3 * 3600 + 12 * 60 + 5)), "3h12m");
        assert_eq!(human(Duration::from_secs(42)), "42s");
        assert_eq!(human(Duration::from_secs(86_400 + 4 * 3600)), "1d4h");
        assert_eq!(human(Duration::from_secs(600)), "10m");
        assert_eq!(human(Duration::from_millis(300)), "300ms");
    }

    #[test]
    fn orphaned_after_the_deadline_or_once_flagged_and_never_without_a_limit() {
        let k = Entry {
            read_ns: 1_000,
            orphan_after_ns: 500,
            orphaned: 0,
            _pad: 0,
        };
        assert_eq!(k.orphaned_since(1_500), None);
        assert_eq!(k.orphaned_since(1_501), Some(1_500));
        let flagged = Entry { orphaned: 1, ..k };
        assert_eq!(flagged.orphaned_since(1_200), Some(1_500));
        let never = Entry {
            orphan_after_ns: 0,
            orphaned: 1,
            ..k
        };
        assert_eq!(never.orphaned_since(u64::MAX), None);
    }
}
