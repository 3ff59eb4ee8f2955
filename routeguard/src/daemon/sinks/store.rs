//! The store as a sink: its thread ([`StoreWriter`]) and its health. The thread answers
//! asynchronously, so a write's outcome comes back with a later batch ([`store_outcome`]).

use std::time::Instant;

use super::{
    health::{Attempt, Health},
    Alert, Throttle,
};
use crate::{
    daemon::{
        metrics::Metrics,
        store_writer::{Done, Refused, StoreWriter},
    },
    event::Event,
    store::Retention,
};

pub(super) struct StoreSink {
    pub(super) writer: StoreWriter,
    pub(super) retention: Retention,
    pub(super) health: Health,
    /// When a batch refused at the queue's bound was last logged.
    pub(super) full_logged: Throttle,
}

/// Writes what is queued, closes the store and logs what its thread did meanwhile.
pub(super) fn close_store(s: StoreSink) {
    let StoreSink {
        writer, mut health, ..
    } = s;
    let (closed, done) = writer.close();
    let now = Instant::now();
    for d in done {
        store_outcome(&mut health, d, now, None);
    }
    if let Err(e) = closed {
        tracing::error!("{e}");
    }
}

impl StoreSink {
    pub(super) fn write(
        &mut self,
        events: Vec<Event>,
        now: Instant,
        metrics: &Metrics,
    ) -> Option<Alert> {
        let n = events.len() as u64;
        match self.health.attempt(now) {
            Attempt::Skip => {
                self.health.skipped(n);
                metrics.sink_error("store", n);
                return None;
            }
            Attempt::Retry => {
                if !self.writer.is_running() {
                    // The thread panicked: a new one (the store is opened by the reopen below).
                    match StoreWriter::start(self.writer.path(), self.retention, None) {
                        Ok(w) => drop(std::mem::replace(&mut self.writer, w).close()),
                        Err(e) => {
                            metrics.sink_error("store", n);
                            return self.health.failed(&e.to_string(), n, now);
                        }
                    }
                }
                if let Err(e) = self.writer.reopen() {
                    metrics.sink_error("store", n);
                    return self.health.failed(&e.to_string(), n, now);
                }
            }
            Attempt::Write => {}
        }
        match self.writer.insert(events) {
            Ok(()) => None,
            Err(e @ Refused::Full { .. }) => {
                metrics.sink_error("store", n);
                if self.full_logged.due(now) {
                    tracing::warn!("event store: a batch of {n} events refused: {e}");
                }
                None
            }
            Err(e @ Refused::Stopped(_)) => {
                metrics.sink_error("store", n);
                self.health.failed(&e.to_string(), n, now)
            }
        }
    }

    pub(super) fn outcome(&mut self, done: Done, now: Instant, metrics: &Metrics) -> Option<Alert> {
        store_outcome(&mut self.health, done, now, Some(metrics))
    }
}

/// One thing the store's thread did; `metrics` is `None` at exit (then it is only logged).
fn store_outcome(
    health: &mut Health,
    done: Done,
    now: Instant,
    metrics: Option<&Metrics>,
) -> Option<Alert> {
    match done {
        Done::Inserted(Ok(()), _) => health.succeeded(now),
        Done::Inserted(Err(e), n) => {
            if let Some(m) = metrics {
                m.sink_error("store", n as u64);
            }
            health.failed(&e.to_string(), n as u64, now)
        }
        Done::Pruned(Ok(0)) => None,
        Done::Pruned(Ok(n)) => {
            tracing::debug!(removed = n, "event store pruned");
            None
        }
        Done::Pruned(Err(e)) | Done::Opened(Err(e)) => health.failed(&e.to_string(), 0, now),
        Done::Opened(Ok(Some(a))) => Some(Alert::store_replaced(&a.from, &a.reason, &a.to)),
        Done::Opened(Ok(None)) => None,
    }
}
