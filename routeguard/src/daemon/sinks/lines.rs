//! JSON lines as sinks: the rotated file and stdout. Alerts go there too, as lines of their own.

use std::{
    io::{BufWriter, Stdout, Write},
    time::Instant,
};

use super::{
    health::{Attempt, Health},
    Alert,
};
use crate::daemon::{config::JsonlConfig, jsonl::RotatingFile, metrics::Metrics};

pub(super) struct JsonlSink {
    pub(super) config: JsonlConfig,
    /// `None` while down.
    pub(super) file: Option<RotatingFile>,
    pub(super) health: Health,
}

pub(super) struct StdoutSink {
    pub(super) out: BufWriter<Stdout>,
    pub(super) health: Health,
}

impl JsonlSink {
    /// Writes `lines` (holding `events` events; 0 for alerts) to the file.
    pub(super) fn write(
        &mut self,
        lines: &[String],
        events: u64,
        now: Instant,
        metrics: &Metrics,
    ) -> Option<Alert> {
        let c = &self.config;
        match self.health.attempt(now) {
            Attempt::Skip => {
                self.health.skipped(events);
                metrics.sink_error("jsonl", events);
                return None;
            }
            Attempt::Retry => self.file = None,
            Attempt::Write => {
                if self.file.as_ref().is_some_and(RotatingFile::is_replaced) {
                    tracing::warn!(
                        "the JSON lines file {} was removed or replaced; writing to a new one there",
                        c.path.display()
                    );
                    self.file = None;
                }
            }
        }
        if self.file.is_none() {
            match RotatingFile::open(&c.path, c.max_bytes, c.keep) {
                Ok(f) => self.file = Some(f),
                Err(e) => {
                    metrics.sink_error("jsonl", events);
                    return self.health.failed(&e.to_string(), events, now);
                }
            }
        }
        let file = self.file.as_mut()?;
        let written = lines
            .iter()
            .try_for_each(|l| file.write_line(l))
            .and_then(|()| file.flush());
        match written {
            Ok(()) => self.health.succeeded(now),
            Err(e) => {
                // What the buffer still holds is dropped, not written later in pieces; the next
                // open starts on a line of its own.
                if let Some(f) = self.file.take() {
                    f.abandon();
                }
                metrics.sink_error("jsonl", events);
                self.health.failed(&e.to_string(), events, now)
            }
        }
    }
}

impl StdoutSink {
    pub(super) fn write(
        &mut self,
        lines: &[String],
        events: u64,
        now: Instant,
        metrics: &Metrics,
    ) -> Option<Alert> {
        if self.health.attempt(now) == Attempt::Skip {
            self.health.skipped(events);
            metrics.sink_error("stdout", events);
            return None;
        }
        let out = &mut self.out;
        let written = lines
            .iter()
            .try_for_each(|l| writeln!(out, "{l}"))
            .and_then(|()| out.flush());
        match written {
            Ok(()) => self.health.succeeded(now),
            Err(e) => {
                metrics.sink_error("stdout", events);
                self.health.failed(&e.to_string(), events, now)
            }
        }
    }
}
