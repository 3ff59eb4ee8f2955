//! journald as a sink: one datagram per event or alert, never waited for.

use std::{io, path::Path, time::Instant};

use super::{
    health::{Attempt, Health},
    Alert, Throttle,
};
use crate::daemon::{
    journald::{self, Journald},
    metrics::Metrics,
};

pub(super) struct JournaldSink {
    /// `None` while down.
    pub(super) journal: Option<Journald>,
    pub(super) health: Health,
    /// When entries dropped at a full socket buffer were last logged.
    pub(super) full_logged: Throttle,
}

impl JournaldSink {
    pub(super) fn write(
        &mut self,
        entries: &[Vec<u8>],
        events: u64,
        now: Instant,
        metrics: &Metrics,
    ) -> Option<Alert> {
        let path = Path::new(journald::SOCKET);
        match self.health.attempt(now) {
            Attempt::Skip => {
                self.health.skipped(events);
                metrics.sink_error("journald", events);
                return None;
            }
            Attempt::Retry => match Journald::connect(path) {
                Ok(Some(j)) => self.journal = Some(j),
                Ok(None) => {
                    metrics.sink_error("journald", events);
                    let error = format!("no journal socket at {}", path.display());
                    return self.health.failed(&error, events, now);
                }
                Err(e) => {
                    metrics.sink_error("journald", events);
                    return self.health.failed(&e.to_string(), events, now);
                }
            },
            Attempt::Write => {}
        }
        let journal = self.journal.as_ref()?;
        // Entries are events, or alerts (`events` is 0), which are not counted as events.
        let counted = |n: usize| if events == 0 { 0 } else { n as u64 };
        let mut dropped = 0;
        for (i, entry) in entries.iter().enumerate() {
            match journal.send_bytes(entry) {
                Ok(()) => {}
                // A full socket buffer: the journal is slow in a burst, not gone. The entry is
                // dropped and counted (the capture must not wait for the journal).
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => dropped += 1,
                // Gone (journald stopped, its socket removed): down, the rest counted.
                Err(e) => {
                    let lost = counted(dropped + entries.len() - i);
                    metrics.sink_error("journald", lost);
                    return self.health.failed(&e.to_string(), lost, now);
                }
            }
        }
        if dropped > 0 {
            metrics.sink_error("journald", counted(dropped));
            if self.full_logged.due(now) {
                tracing::warn!(
                    "journald: {dropped} entries dropped, its socket buffer full (counted in \
                     routeguard_sink_errors_total)"
                );
            }
        }
        self.health.succeeded(now)
    }
}
