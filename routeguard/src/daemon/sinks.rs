//! The daemon's sinks, opened from the config and fed one pipeline batch at a time.
//!
//! A sink that fails to write logs it (once, until it recovers), counts the events in
//! `routeguard_sink_errors_total{sink}`, and the daemon goes on: one full disk must not blind the
//! journal and the metrics.

use std::{
    io::{self, BufWriter, Stdout, Write},
    path::{Path, PathBuf},
};

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
    store::{Store, StoreError},
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
}

#[derive(Default)]
pub struct Sinks {
    store: Option<StoreWriter>,
    jsonl: Option<RotatingFile>,
    stdout: Option<BufWriter<Stdout>>,
    journald: Option<Journald>,
    /// Sinks whose last write failed (logged once until they recover).
    failing: Vec<&'static str>,
}

impl Sinks {
    pub fn open(config: &Config) -> Result<Self, SinkError> {
        let mut sinks = Self::default();
        sinks.reconfigure(config)?;
        Ok(sinks)
    }

    /// Applies a (new) config. Everything new is opened first; on error nothing changes.
    pub fn reconfigure(&mut self, config: &Config) -> Result<(), SinkError> {
        let store = match (&self.store, config.store.enabled) {
            (_, false) => None,
            (Some(s), true) if s.path() == config.store.path => Some(None),
            (_, true) => Some(Some(
                StoreWriter::start(Store::open(&config.store.path, config.store.retention())?)
                    .map_err(SinkError::StoreThread)?,
            )),
        };
        let jsonl = if config.jsonl.enabled {
            Some(
                RotatingFile::open(
                    &config.jsonl.path,
                    config.jsonl.max_bytes,
                    config.jsonl.keep,
                )
                .map_err(|source| SinkError::Jsonl {
                    path: config.jsonl.path.clone(),
                    source,
                })?,
            )
        } else {
            None
        };
        let journald = if config.journald.enabled {
            let path = Path::new(journald::SOCKET);
            let j = Journald::connect(path).map_err(|source| SinkError::Journald {
                path: path.to_owned(),
                source,
            })?;
            if j.is_none() {
                tracing::info!(
                    "journald sink skipped: no journal socket at {}",
                    journald::SOCKET
                );
            }
            j
        } else {
            None
        };
        // Commit.
        match store {
            None => self.close_store(),
            Some(None) => {
                if let Some(s) = &self.store {
                    if let Err(e) = s.set_retention(config.store.retention()) {
                        tracing::error!("event store: {e}");
                    }
                }
            }
            Some(Some(new)) => {
                self.close_store();
                self.store = Some(new);
            }
        }
        if let Some(old) = &mut self.jsonl {
            let _ = old.flush();
        }
        self.jsonl = jsonl;
        self.stdout = config.jsonl.stdout.then(|| BufWriter::new(io::stdout()));
        self.journald = journald;
        self.failing.clear();
        Ok(())
    }

    /// What is on, for the start-up line.
    pub fn describe(&self) -> String {
        let mut on = Vec::new();
        if let Some(s) = &self.store {
            on.push(format!("store {}", s.path().display()));
        }
        if let Some(j) = &self.jsonl {
            on.push(format!("jsonl {}", j.path().display()));
        }
        if self.stdout.is_some() {
            on.push("stdout".into());
        }
        if self.journald.is_some() {
            on.push("journald".into());
        }
        if on.is_empty() {
            "no sinks".into()
        } else {
            on.join(", ")
        }
    }

    pub fn write(&mut self, events: Vec<Event>, metrics: &Metrics) {
        self.store_done(metrics);
        if events.is_empty() {
            return;
        }
        let lines: Vec<String> = if self.jsonl.is_some() || self.stdout.is_some() {
            events.iter().map(sink::json::to_line).collect()
        } else {
            Vec::new()
        };
        if let Some(file) = &mut self.jsonl {
            let r = lines
                .iter()
                .try_for_each(|l| file.write_line(l))
                .and_then(|()| file.flush());
            self.outcome("jsonl", r.map_err(|e| e.to_string()), events.len(), metrics);
        }
        if let Some(out) = &mut self.stdout {
            let r = lines
                .iter()
                .try_for_each(|l| writeln!(out, "{l}"))
                .and_then(|()| out.flush());
            self.outcome(
                "stdout",
                r.map_err(|e| e.to_string()),
                events.len(),
                metrics,
            );
        }
        if let Some(j) = &self.journald {
            let failed = events.iter().filter(|ev| j.send(ev).is_err()).count();
            let r = if failed == 0 {
                Ok(())
            } else {
                Err(format!(
                    "{failed} entries not accepted by {}",
                    journald::SOCKET
                ))
            };
            self.outcome("journald", r, failed, metrics);
        }
        // Last: the store's thread takes the events. Queued is not yet written: how the write
        // went comes back from the thread ([`Sinks::store_done`]); only a refusal counts here.
        if let Some(store) = &self.store {
            let n = events.len();
            if let Err(e) = store.insert(events) {
                self.outcome("store", Err(e), n, metrics);
            }
        }
    }

    /// Logs and counts what the store's thread has done since the last look.
    fn store_done(&mut self, metrics: &Metrics) {
        let done: Vec<Done> = match &self.store {
            Some(s) => s.done().collect(),
            None => return,
        };
        for d in done {
            self.store_outcome(d, Some(metrics));
        }
    }

    fn store_outcome(&mut self, done: Done, metrics: Option<&Metrics>) {
        let (r, events) = match done {
            Done::Inserted(r, n) => (r, n),
            Done::Pruned(Ok(0)) => return,
            Done::Pruned(Ok(n)) => {
                tracing::debug!(removed = n, "event store pruned");
                return;
            }
            Done::Pruned(Err(e)) => (Err(e), 0),
        };
        match metrics {
            Some(m) => self.outcome("store", r, events, m),
            None => {
                if let Err(e) = r {
                    tracing::error!("store sink failed: {e}");
                }
            }
        }
    }

    /// Applies the store's retention limits.
    pub fn prune(&mut self, metrics: &Metrics) {
        self.store_done(metrics);
        if let Some(store) = &self.store {
            if let Err(e) = store.prune() {
                self.outcome("store", Err(e), 0, metrics);
            }
        }
    }

    /// Flushes and closes everything (at exit).
    pub fn close(mut self) {
        self.close_store();
        if let Some(file) = &mut self.jsonl {
            if let Err(e) = file.flush() {
                tracing::error!("JSON lines file {}: {e}", file.path().display());
            }
        }
    }

    fn close_store(&mut self) {
        if let Some(store) = self.store.take() {
            let (closed, done) = store.close();
            for d in done {
                self.store_outcome(d, None);
            }
            if let Err(e) = closed {
                tracing::error!("{e}");
            }
        }
    }

    fn outcome(
        &mut self,
        sink: &'static str,
        result: Result<(), String>,
        events: usize,
        metrics: &Metrics,
    ) {
        let was_failing = self.failing.contains(&sink);
        match result {
            Ok(()) if was_failing => {
                self.failing.retain(|s| *s != sink);
                tracing::info!("{sink} sink writes again");
            }
            Ok(()) => {}
            Err(e) => {
                metrics.sink_error(sink, events);
                if !was_failing {
                    self.failing.push(sink);
                    tracing::error!("{sink} sink failed: {e}; its events are counted in routeguard_sink_errors_total until it recovers");
                }
            }
        }
    }
}
