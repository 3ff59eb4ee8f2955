//! A sink's health: up, or down since a failure and tried again, with the next events, after a
//! back-off.
//!
//! Down, a sink writes nothing: its events are counted (`missed`, and
//! `routeguard_sink_errors_total`) and the other sinks go on. It is tried again with the first
//! events after [`FIRST_RETRY`], then after twice as long each time it fails again, at most
//! [`MAX_RETRY`]; it is up again once a write succeeded. A sink that fails again within
//! [`SETTLE`] of writing again resumes the back-off where it was, so a flapping sink is not
//! retried — nor announced — every second. The log is written on each change only: once when the
//! sink fails, once more when a retry fails differently, once when it writes again.

use std::{
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use super::alert::Alert;
use crate::event::Timestamp;

pub const FIRST_RETRY: Duration = Duration::from_secs(1);
pub const MAX_RETRY: Duration = Duration::from_secs(60);
pub const SETTLE: Duration = Duration::from_secs(60);

/// What to do with the next events.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Attempt {
    /// Write them (the sink is up, or a retry is under way).
    Write,
    /// The back-off is over: reopen the sink, then write them.
    Retry,
    /// Down, and not yet time to retry: count them.
    Skip,
}

pub struct Health {
    sink: &'static str,
    path: Option<PathBuf>,
    down: Option<Outage>,
    /// The back-off of the last outage, and when it ended.
    last: Option<(Duration, Instant)>,
}

struct Outage {
    since: Timestamp,
    error: String,
    missed: u64,
    delay: Duration,
    retry_at: Instant,
    /// A retry was started and its outcome is not known yet.
    probing: bool,
}

impl Health {
    pub fn new(sink: &'static str, path: Option<&Path>) -> Self {
        Self {
            sink,
            path: path.map(Path::to_owned),
            down: None,
            last: None,
        }
    }

    pub fn sink(&self) -> &'static str {
        self.sink
    }

    pub fn is_up(&self) -> bool {
        self.down.is_none()
    }

    /// Why it is down.
    pub fn error(&self) -> Option<&str> {
        self.down.as_ref().map(|o| o.error.as_str())
    }

    pub fn attempt(&mut self, now: Instant) -> Attempt {
        match &mut self.down {
            None => Attempt::Write,
            Some(o) if o.probing => Attempt::Write,
            Some(o) if now >= o.retry_at => {
                o.probing = true;
                Attempt::Retry
            }
            Some(_) => Attempt::Skip,
        }
    }

    /// `n` events the sink did not write while down.
    pub fn skipped(&mut self, n: u64) {
        if let Some(o) = &mut self.down {
            o.missed += n;
        }
    }

    /// A write (or an open) failed, losing `missed` events; the alert when the sink was up.
    pub fn failed(&mut self, error: &str, missed: u64, now: Instant) -> Option<Alert> {
        let sink = self.sink;
        let Some(o) = &mut self.down else {
            let delay = match self.last {
                Some((d, ended)) if now.duration_since(ended) < SETTLE => (d * 2).min(MAX_RETRY),
                _ => FIRST_RETRY,
            };
            let alert = Alert::failed(sink, self.path.as_deref(), error, missed, delay);
            tracing::error!("{}", alert.message());
            self.down = Some(Outage {
                since: alert.ts,
                error: error.to_owned(),
                missed,
                delay,
                retry_at: now + delay,
                probing: false,
            });
            return Some(alert);
        };
        o.missed += missed;
        if o.probing {
            o.probing = false;
            o.delay = (o.delay * 2).min(MAX_RETRY);
            o.retry_at = now + o.delay;
            if error != o.error {
                tracing::warn!(
                    "{sink} sink still failing, now: {error}; tried again after {} s",
                    o.delay.as_secs()
                );
                o.error = error.to_owned();
            } else {
                tracing::debug!("{sink} sink still failing; tried again after {:?}", o.delay);
            }
        }
        None
    }

    /// A write succeeded; the alert when the sink was down.
    pub fn succeeded(&mut self, now: Instant) -> Option<Alert> {
        let o = self.down.take()?;
        self.last = Some((o.delay, now));
        let alert = Alert::recovered(self.sink, self.path.as_deref(), &o.error, o.since, o.missed);
        tracing::info!("{}", alert.message());
        Some(alert)
    }

    /// When it went down (for tests and the start-up line).
    #[cfg(test)]
    fn since(&self) -> Option<Timestamp> {
        self.down.as_ref().map(|o| o.since)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::daemon::sinks::alert::AlertType;

    #[test]
    fn down_skips_until_the_back_off_then_retries_doubling_and_recovers_once() {
        let mut h = Health::new("jsonl", Some(Path::new("/x/events.jsonl")));
        let t = Instant::now();
        assert_eq!(h.attempt(t), Attempt::Write);
        let a = h.failed("ENOSPC", 3, t).unwrap();
        assert_eq!(
            (a.event, a.missed, a.retry_in_ms),
            (AlertType::SinkFailed, 3, Some(1000))
        );
        assert!(!h.is_up());
        // Further failures of batches already under way: counted, no second alert.
        assert!(h.failed("ENOSPC", 2, t).is_none());
        assert_eq!(h.attempt(t + Duration::from_millis(500)), Attempt::Skip);
        h.skipped(10);
        assert_eq!(h.attempt(t + FIRST_RETRY), Attempt::Retry);
        // While the retry is under way, events are written (the store's results come later).
        assert_eq!(h.attempt(t + FIRST_RETRY), Attempt::Write);
        assert!(h.failed("ENOSPC", 1, t + FIRST_RETRY).is_none());
        // 2 s now.
        assert_eq!(h.attempt(t + Duration::from_millis(2500)), Attempt::Skip);
        assert_eq!(h.attempt(t + Duration::from_secs(3)), Attempt::Retry);
        let since = h.since().unwrap();
        let r = h.succeeded(t + Duration::from_secs(3)).unwrap();
        assert_eq!(r.event, AlertType::SinkRecovered);
        assert_eq!((r.missed, r.since), (16, since));
        assert!(h.is_up());
        assert!(h.succeeded(t + Duration::from_secs(3)).is_none());
    }

    #[test]
    fn the_back_off_is_capped_and_a_flapping_sink_keeps_it() {
        let mut h = Health::new("store", None);
        let mut t = Instant::now();
        h.failed("EIO", 0, t);
        let mut delays = Vec::new();
        for _ in 0..8 {
            t += Duration::from_secs(60);
            assert_eq!(h.attempt(t), Attempt::Retry);
            h.failed("EIO", 0, t);
            delays.push(h.down.as_ref().unwrap().delay.as_secs());
        }
        assert_eq!(delays, [2, 4, 8, 16, 32, 60, 60, 60]);
        t += Duration::from_secs(60);
        h.attempt(t);
        h.succeeded(t);
        // Fails again 5 s later: no fresh 1 s start.
        let a = h.failed("EIO", 0, t + Duration::from_secs(5)).unwrap();
        assert_eq!(a.retry_in_ms, Some(60_000));
        t += Duration::from_secs(200);
        h.attempt(t);
        h.succeeded(t);
        // Long after: from 1 s again.
        let a = h.failed("EIO", 0, t + SETTLE).unwrap();
        assert_eq!(a.retry_in_ms, Some(1000));
    }
}
