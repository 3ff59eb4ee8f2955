//! The daemon's sinks, opened from the config and fed one pipeline batch at a time: the store,
//! JSON lines (file, stdout), journald and OTLP (an OpenTelemetry collector).
//!
//! Degrade, don't stop: a sink that cannot be opened at start, or fails to write later (a full
//! disk, an I/O error, its directory removed, a corrupt store), goes down — its events are
//! counted in `routeguard_sink_errors_total{sink}`, `routeguard_sink_up{sink}` reads 0, and an
//! [`Alert`] goes to the sinks still up — while the capture and the other sinks go on. It is
//! retried with the next events after a back-off ([`health`]). A store that cannot be used
//! (corrupt, or of a newer schema) is moved aside and a new one started ([`crate::store::SetAside`]).
//! Only a SIGHUP that names a new sink which cannot be opened is refused: the running sinks stay.

mod alert;
mod health;
mod journal;
mod lines;
mod otlp;
mod store;
#[cfg(test)]
mod tests;

use std::{
    io::{self, BufWriter},
    path::{Path, PathBuf},
    sync::Arc,
    time::Instant,
};

use tokio::sync::Notify;

pub use alert::{Alert, AlertType};
use health::Health;
use journal::JournaldSink;
use lines::{JsonlSink, StdoutSink};
use otlp::OtlpSink;
use store::{close_store, StoreSink};

use super::{
    config::Config,
    journald::{self, Journald},
    jsonl::RotatingFile,
    metrics::Metrics,
    store_writer::{Done, StoreWriter},
};
use crate::{
    event::Event,
    sink,
    store::{Retention, Store, StoreError},
};

#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("cannot open the JSON lines file {path}: {source}; check `jsonl.path` and that its directory is writable")]
    Jsonl { path: PathBuf, source: io::Error },
    #[error("cannot open the journal socket {path}: {source}")]
    Journald { path: PathBuf, source: io::Error },
    #[error("cannot start the thread that writes the event store: {0}")]
    StoreThread(io::Error),
    #[error(transparent)]
    Otlp(#[from] super::otlp::OtlpError),
}

/// What a new config does to one sink.
enum Plan<T> {
    Keep,
    Off,
    New(T),
}

impl<T> Plan<T> {
    /// Puts the plan in place; what it replaced or turned off.
    fn apply(self, slot: &mut Option<T>) -> Option<T> {
        match self {
            Plan::Keep => None,
            Plan::Off => slot.take(),
            Plan::New(new) => slot.replace(new),
        }
    }
}

#[derive(Default)]
pub struct Sinks {
    store: Option<StoreSink>,
    jsonl: Option<JsonlSink>,
    stdout: Option<StdoutSink>,
    journald: Option<JournaldSink>,
    otlp: Option<OtlpSink>,
    /// Told when a sink's thread has news (an OTLP request's outcome): see [`Sinks::news`].
    news: Arc<Notify>,
}
/// At most one log line per [`Throttle::EVERY`]: for what is not a failure but still loses
/// events (a queue or socket buffer full in a burst), and happens with every batch meanwhile.
#[derive(Default)]
pub(super) struct Throttle(Option<Instant>);

impl Throttle {
    const EVERY: std::time::Duration = std::time::Duration::from_secs(1);

    pub(super) fn due(&mut self, now: Instant) -> bool {
        if self.0.is_some_and(|t| now.duration_since(t) < Self::EVERY) {
            return false;
        }
        self.0 = Some(now);
        true
    }
}
impl Sinks {
    /// Opens the sinks the config turns on. One that cannot be opened starts down (alerted,
    /// retried); only a thread that cannot be started is an error.
    pub fn open(config: &Config, metrics: &Metrics) -> Result<Self, SinkError> {
        let mut sinks = Self::default();
        sinks.apply(config, metrics, false)?;
        Ok(sinks)
    }

    /// Applies a new config (SIGHUP). Sinks whose settings did not change are kept as they are
    /// (up or down); new ones are opened first, and if one cannot be, nothing changes.
    pub fn reconfigure(&mut self, config: &Config, metrics: &Metrics) -> Result<(), SinkError> {
        self.apply(config, metrics, true)
    }

    fn apply(&mut self, config: &Config, metrics: &Metrics, strict: bool) -> Result<(), SinkError> {
        let now = Instant::now();
        let mut alerts = Vec::new();
        // Everything that can fail first; the running sinks are changed only after.
        let c = &config.store;
        let store = if !c.enabled {
            Plan::Off
        } else if self
            .store
            .as_ref()
            .is_some_and(|s| s.writer.path() == c.path)
        {
            Plan::Keep
        } else {
            Plan::New(Self::open_store(
                &c.path,
                c.retention(),
                strict,
                now,
                &mut alerts,
            )?)
        };
        let c = &config.jsonl;
        let jsonl = if !c.enabled {
            Plan::Off
        } else if self.jsonl.as_ref().is_some_and(|j| j.config == *c) {
            Plan::Keep
        } else {
            let mut health = Health::new("jsonl", Some(&c.path));
            let file = match RotatingFile::open(&c.path, c.max_bytes, c.keep) {
                Ok(f) => Some(f),
                Err(source) if strict => {
                    return Err(SinkError::Jsonl {
                        path: c.path.clone(),
                        source,
                    })
                }
                Err(e) => {
                    alerts.extend(health.failed(&e.to_string(), 0, now));
                    None
                }
            };
            Plan::New(JsonlSink {
                config: c.clone(),
                file,
                health,
            })
        };
        let journald = if !config.journald.enabled {
            Plan::Off
        } else if self.journald.is_some() {
            Plan::Keep
        } else {
            let path = Path::new(journald::SOCKET);
            let mut health = Health::new("journald", Some(path));
            match Journald::connect(path) {
                Ok(Some(j)) => Plan::New(JournaldSink {
                    journal: Some(j),
                    health,
                    full_logged: Throttle::default(),
                }),
                Ok(None) => {
                    tracing::info!(
                        "journald sink skipped: no journal socket at {}",
                        journald::SOCKET
                    );
                    Plan::Off
                }
                Err(source) if strict => {
                    return Err(SinkError::Journald {
                        path: path.to_owned(),
                        source,
                    })
                }
                Err(e) => {
                    alerts.extend(health.failed(&e.to_string(), 0, now));
                    Plan::New(JournaldSink {
                        journal: None,
                        health,
                        full_logged: Throttle::default(),
                    })
                }
            }
        };
        let c = &config.otlp;
        let otlp = if !c.enabled {
            Plan::Off
        } else if self.otlp.as_ref().is_some_and(|o| o.config == *c) {
            Plan::Keep
        } else {
            Plan::New(OtlpSink::open(
                c,
                &self.news,
                strict,
                now,
                &mut alerts,
                metrics,
            )?)
        };
        // Commit: what is replaced or turned off is flushed and closed.
        let old_store = store.apply(&mut self.store);
        if let Some(s) = &mut self.store {
            s.retention = config.store.retention();
            if let Err(e) = s.writer.set_retention(s.retention) {
                tracing::error!("event store: {e}");
            }
        }
        if let Some(old) = old_store {
            close_store(old);
        }
        if let Some(mut old) = jsonl.apply(&mut self.jsonl) {
            if let Some(f) = &mut old.file {
                let _ = f.flush();
            }
        }
        journald.apply(&mut self.journald);
        if let Some(old) = otlp.apply(&mut self.otlp) {
            // Not waited for: the old exporter sends what it holds on its own thread.
            old.close(false);
        }
        if !config.jsonl.stdout {
            self.stdout = None;
        } else if self.stdout.is_none() {
            self.stdout = Some(StdoutSink {
                out: BufWriter::new(io::stdout()),
                health: Health::new("stdout", None),
            });
        }
        self.announce(alerts, metrics);
        self.gauges(metrics);
        Ok(())
    }

    /// Opens the store (moving an unusable one aside) on a thread of its own; at start, one that
    /// cannot be opened starts down.
    fn open_store(
        path: &Path,
        retention: Retention,
        strict: bool,
        now: Instant,
        alerts: &mut Vec<Alert>,
    ) -> Result<StoreSink, SinkError> {
        let mut health = Health::new("store", Some(path));
        let store = match Store::open_or_set_aside(path, retention) {
            Ok((store, aside)) => {
                if let Some(a) = aside {
                    alerts.push(Alert::store_replaced(&a.from, &a.reason, &a.to));
                }
                Some(store)
            }
            Err(e) if strict => return Err(e.into()),
            Err(e) => {
                alerts.extend(health.failed(&e.to_string(), 0, now));
                None
            }
        };
        let writer = StoreWriter::start(path, retention, store).map_err(SinkError::StoreThread)?;
        Ok(StoreSink {
            writer,
            retention,
            health,
            full_logged: Throttle::default(),
        })
    }

    /// What is on, for the start-up line.
    pub fn describe(&self) -> String {
        let mut on = Vec::new();
        let state = |h: &Health| match h.error() {
            Some(e) => format!(" (down: {e})"),
            None => String::new(),
        };
        if let Some(s) = &self.store {
            on.push(format!(
                "store {}{}",
                s.writer.path().display(),
                state(&s.health)
            ));
        }
        if let Some(j) = &self.jsonl {
            on.push(format!(
                "jsonl {}{}",
                j.config.path.display(),
                state(&j.health)
            ));
        }
        if self.stdout.is_some() {
            on.push("stdout".into());
        }
        if let Some(j) = &self.journald {
            on.push(format!("journald{}", state(&j.health)));
        }
        if let Some(o) = &self.otlp {
            on.push(format!("{}{}", o.describe(), state(&o.health)));
        }
        if on.is_empty() {
            "no sinks".into()
        } else {
            on.join(", ")
        }
    }

    pub fn write(&mut self, events: Vec<Event>, metrics: &Metrics) {
        let mut alerts = self.store_done(metrics);
        alerts.extend(self.otlp_done(metrics));
        if !events.is_empty() {
            let now = Instant::now();
            let n = events.len() as u64;
            let lines: Vec<String> = if self.jsonl.is_some() || self.stdout.is_some() {
                events.iter().map(sink::json::to_line).collect()
            } else {
                Vec::new()
            };
            if let Some(j) = &mut self.jsonl {
                alerts.extend(j.write(&lines, n, now, metrics));
            }
            if let Some(s) = &mut self.stdout {
                alerts.extend(s.write(&lines, n, now, metrics));
            }
            if let Some(j) = &mut self.journald {
                let entries: Vec<Vec<u8>> = events.iter().map(journald::entry).collect();
                alerts.extend(j.write(&entries, n, now, metrics));
            }
            if let Some(o) = &mut self.otlp {
                alerts.extend(o.write(&events, now, metrics));
            }
            // Last: the store's thread takes the events. Queued is not yet written: how the
            // write went comes back from the thread ([`Sinks::store_done`]).
            if let Some(s) = &mut self.store {
                alerts.extend(s.write(events, now, metrics));
            }
        }
        self.announce(alerts, metrics);
        self.gauges(metrics);
    }

    /// Writes `suppressed` summaries (what the kernel's budgets did not copy) to the JSON lines
    /// file, stdout, journald and OTLP, like alerts; not to the store, whose rows are removals.
    pub fn suppressed(&mut self, summaries: &[crate::event::Suppressed], metrics: &Metrics) {
        if summaries.is_empty() {
            return;
        }
        metrics.suppressed(summaries);
        let now = Instant::now();
        let lines: Vec<String> = summaries.iter().map(|s| s.to_line()).collect();
        let mut alerts = Vec::new();
        if let Some(j) = self.jsonl.as_mut().filter(|j| j.health.is_up()) {
            alerts.extend(j.write(&lines, 0, now, metrics));
        }
        if let Some(s) = self.stdout.as_mut().filter(|s| s.health.is_up()) {
            alerts.extend(s.write(&lines, 0, now, metrics));
        }
        if let Some(j) = self.journald.as_mut().filter(|j| j.health.is_up()) {
            let entries: Vec<Vec<u8>> = summaries.iter().map(journald::suppressed_entry).collect();
            alerts.extend(j.write(&entries, 0, now, metrics));
        }
        if let Some(o) = &self.otlp {
            o.suppressed(summaries);
        }
        self.announce(alerts, metrics);
    }

    /// What the store's thread has done since the last look: alerts for what changed.
    fn store_done(&mut self, metrics: &Metrics) -> Vec<Alert> {
        let Some(s) = &mut self.store else {
            return Vec::new();
        };
        let done: Vec<Done> = s.writer.done().collect();
        let now = Instant::now();
        let mut alerts = Vec::new();
        for d in done {
            alerts.extend(s.outcome(d, now, metrics));
        }
        alerts
    }

    /// What the exporter's thread has done since the last look: alerts for what changed.
    fn otlp_done(&mut self, metrics: &Metrics) -> Vec<Alert> {
        match &mut self.otlp {
            Some(o) => o.poll(Instant::now(), metrics),
            None => Vec::new(),
        }
    }

    /// What the daemon's loop waits on besides events: a sink's thread has news for
    /// [`Sinks::poll`]. Without it, a collector that went away would be told (and its drops
    /// counted) only with the next removal, or at the next prune a minute later.
    pub fn news(&self) -> Arc<Notify> {
        self.news.clone()
    }

    /// Looks at what the sinks' threads did (each turn of the daemon's loop, events or not), so
    /// that a collector that went away is told, and counted, without waiting for the next
    /// removal.
    pub fn poll(&mut self, metrics: &Metrics) {
        let mut alerts = self.store_done(metrics);
        alerts.extend(self.otlp_done(metrics));
        if !alerts.is_empty() {
            self.announce(alerts, metrics);
            self.gauges(metrics);
        }
    }

    /// Applies the store's retention limits (while it is up), and looks at what it did.
    pub fn prune(&mut self, metrics: &Metrics) {
        let mut alerts = self.store_done(metrics);
        alerts.extend(self.otlp_done(metrics));
        if let Some(s) = &mut self.store {
            if s.health.is_up() {
                if let Err(e) = s.writer.prune() {
                    tracing::error!("event store: {e}");
                }
            }
        }
        self.announce(alerts, metrics);
        self.gauges(metrics);
    }

    /// Writes `alerts` to the sinks that are up, except the store (and any that fails doing so
    /// alerts the others in turn). OTLP takes them too; how that went comes back later.
    fn announce(&mut self, mut alerts: Vec<Alert>, metrics: &Metrics) {
        // Each round can only take sinks down, so this ends within a round per sink.
        while !alerts.is_empty() {
            let now = Instant::now();
            let lines: Vec<String> = alerts.iter().map(Alert::to_line).collect();
            let entries: Vec<Vec<u8>> = alerts.iter().map(journald::alert_entry).collect();
            let mut more = Vec::new();
            if let Some(j) = self.jsonl.as_mut().filter(|j| j.health.is_up()) {
                more.extend(j.write(&lines, 0, now, metrics));
            }
            if let Some(s) = self.stdout.as_mut().filter(|s| s.health.is_up()) {
                more.extend(s.write(&lines, 0, now, metrics));
            }
            if let Some(j) = self.journald.as_mut().filter(|j| j.health.is_up()) {
                more.extend(j.write(&entries, 0, now, metrics));
            }
            if let Some(o) = &self.otlp {
                o.alerts(&alerts);
            }
            alerts = more;
        }
    }

    /// `routeguard_sink_up{sink}` for every sink the config turns on.
    fn gauges(&self, metrics: &Metrics) {
        let mut up = [
            ("store", None),
            ("jsonl", None),
            ("stdout", None),
            ("journald", None),
            ("otlp", None),
        ];
        for h in [
            self.store.as_ref().map(|s| &s.health),
            self.jsonl.as_ref().map(|s| &s.health),
            self.stdout.as_ref().map(|s| &s.health),
            self.journald.as_ref().map(|s| &s.health),
            self.otlp.as_ref().map(|s| &s.health),
        ]
        .into_iter()
        .flatten()
        {
            if let Some(slot) = up.iter_mut().find(|(name, _)| *name == h.sink()) {
                slot.1 = Some(h.is_up());
            }
        }
        for (sink, state) in up {
            metrics.sink_up(sink, state);
        }
    }

    /// Flushes and closes everything (at exit): what waits for the collector is sent for at most
    /// `otlp.timeout`.
    pub fn close(mut self) {
        if let Some(s) = self.store.take() {
            close_store(s);
        }
        if let Some(o) = self.otlp.take() {
            o.close(true);
        }
        if let Some(file) = self.jsonl.as_mut().and_then(|j| j.file.as_mut()) {
            if let Err(e) = file.flush() {
                tracing::error!("JSON lines file {}: {e}", file.path().display());
            }
        }
    }
}
