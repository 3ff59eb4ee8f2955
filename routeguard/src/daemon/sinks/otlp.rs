//! OTLP as a sink: its exporter thread ([`OtlpWriter`]) and its health. The thread answers
//! asynchronously, so a request's outcome comes back with a later batch ([`OtlpSink::poll`]),
//! as the store's do; the daemon looks at every turn of its loop, events or not.
//!
//! Down (the collector refused or could not be reached, after the exporter's own retries): its
//! events are not handed over but counted, and it is retried with the events after the back-off;
//! the exporter connects again by itself. Every event not sent is counted in
//! `routeguard_sink_errors_total{sink="otlp"}` and, by why, in
//! `routeguard_otlp_dropped_total{reason}`: `queue-full`, `export-failed`, `down`.

use std::{path::Path, sync::Arc, time::Instant};

use tokio::sync::Notify;

use super::{
    health::{Attempt, Health},
    Alert, SinkError, Throttle,
};
use crate::{
    daemon::{
        config::OtlpConfig,
        metrics::Metrics,
        otlp::{Done, OtlpWriter, Refused},
    },
    event::Event,
};

pub(super) struct OtlpSink {
    pub(super) config: OtlpConfig,
    /// `None` while its exporter could not be set up (retried like a write).
    writer: Option<OtlpWriter>,
    /// Told by the exporter's thread after each request ([`super::Sinks::news`]).
    news: Arc<Notify>,
    pub(super) health: Health,
    full_logged: Throttle,
}

/// `routeguard_otlp_dropped_total{reason}`'s reasons.
pub const QUEUE_FULL: &str = "queue-full";
pub const EXPORT_FAILED: &str = "export-failed";
pub const DOWN: &str = "down";

impl OtlpSink {
    /// Starts the exporter; one that cannot be set up starts down (alerted, retried), unless
    /// `strict` (a reload), which refuses it.
    pub(super) fn open(
        config: &OtlpConfig,
        news: &Arc<Notify>,
        strict: bool,
        now: Instant,
        alerts: &mut Vec<Alert>,
        metrics: &Metrics,
    ) -> Result<Self, SinkError> {
        // The config was checked at load: the URL is good.
        let url = config.url().unwrap_or_default();
        let mut health = Health::new("otlp", Some(Path::new(&url)));
        for reason in [QUEUE_FULL, EXPORT_FAILED, DOWN] {
            metrics.otlp_dropped(reason, 0);
        }
        let writer = match OtlpWriter::start(config, news.clone()) {
            Ok(w) => Some(w),
            Err(e) if strict => return Err(SinkError::Otlp(e)),
            Err(e) => {
                alerts.extend(health.failed(&e.to_string(), 0, now));
                None
            }
        };
        Ok(Self {
            config: config.clone(),
            writer,
            news: news.clone(),
            health,
            full_logged: Throttle::default(),
        })
    }

    /// `otlp http/protobuf http://…/v1/logs` for the start-up line.
    pub(super) fn describe(&self) -> String {
        format!(
            "otlp {} {}",
            self.config.protocol,
            self.config.url().unwrap_or_default()
        )
    }

    /// Hands `events` to the exporter (a copy: the store takes the originals).
    pub(super) fn write(
        &mut self,
        events: &[Event],
        now: Instant,
        metrics: &Metrics,
    ) -> Option<Alert> {
        let n = events.len() as u64;
        let lost = |reason, n| {
            metrics.sink_error("otlp", n);
            metrics.otlp_dropped(reason, n);
        };
        match self.health.attempt(now) {
            Attempt::Skip => {
                self.health.skipped(n);
                lost(DOWN, n);
                return None;
            }
            Attempt::Retry if !self.writer.as_ref().is_some_and(OtlpWriter::is_running) => {
                // Never set up, or its thread is gone: a new one.
                if let Some(old) = self.writer.take() {
                    drop(old.close(false));
                }
                match OtlpWriter::start(&self.config, self.news.clone()) {
                    Ok(w) => self.writer = Some(w),
                    Err(e) => {
                        lost(DOWN, n);
                        return self.health.failed(&e.to_string(), n, now);
                    }
                }
            }
            Attempt::Retry | Attempt::Write => {}
        }
        let Some(writer) = &self.writer else {
            lost(DOWN, n);
            return self.health.failed("the exporter is not set up", n, now);
        };
        match writer.send(events.to_vec()) {
            Ok(()) => None,
            Err(Refused::Full(dropped)) => {
                lost(QUEUE_FULL, dropped as u64);
                if self.full_logged.due(now) {
                    tracing::warn!(
                        "OTLP: {dropped} events dropped, {} events already wait for the \
                         collector (otlp.queue_size; counted in routeguard_otlp_dropped_total)",
                        self.config.queue_size
                    );
                }
                None
            }
            Err(Refused::Stopped) => {
                lost(DOWN, n);
                let why = format!("the thread that exports to {} stopped", writer.url());
                self.health.failed(&why, n, now)
            }
        }
    }

    /// Alerts go out as records too, while the sink is up.
    pub(super) fn alerts(&self, alerts: &[Alert]) {
        if let Some(w) = self.writer.as_ref().filter(|_| self.health.is_up()) {
            w.alerts(alerts.to_vec());
        }
    }

    /// `suppressed` summaries go out as records too, while the sink is up.
    pub(super) fn suppressed(&self, summaries: &[crate::event::Suppressed]) {
        if let Some(w) = self.writer.as_ref().filter(|_| self.health.is_up()) {
            w.suppressed(summaries.to_vec());
        }
    }

    /// What the exporter did since the last look: the health it tells, and the alerts.
    pub(super) fn poll(&mut self, now: Instant, metrics: &Metrics) -> Vec<Alert> {
        let Some(writer) = &self.writer else {
            return Vec::new();
        };
        let done: Vec<Done> = writer.done().collect();
        done.into_iter()
            .filter_map(|d| outcome(&mut self.health, d, now, Some(metrics)))
            .collect()
    }

    /// Sends what is queued (at most `otlp.timeout`) and stops; with `wait`, logs what was not
    /// sent (at exit; a reload lets the old exporter finish alone).
    pub(super) fn close(mut self, wait: bool) {
        if let Some(w) = self.writer.take() {
            let now = Instant::now();
            for d in w.close(wait) {
                outcome(&mut self.health, d, now, None);
            }
        }
    }
}

/// One request's outcome; `metrics` is `None` at exit (then it is only logged).
fn outcome(
    health: &mut Health,
    done: Done,
    now: Instant,
    metrics: Option<&Metrics>,
) -> Option<Alert> {
    let n = done.events as u64;
    match done.result {
        Ok(()) => {
            if let Some(m) = metrics {
                m.otlp_exported(n);
            }
            health.succeeded(now)
        }
        Err(e) => {
            if let Some(m) = metrics {
                m.sink_error("otlp", n);
                m.otlp_dropped(EXPORT_FAILED, n);
            } else {
                tracing::error!("OTLP: {e} ({n} events)");
            }
            health.failed(&e.to_string(), n, now)
        }
    }
}
