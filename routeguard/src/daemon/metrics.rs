//! Prometheus metrics (OpenMetrics text, prometheus-client) and `/healthz`, served over a
//! minimal HTTP/1.1 responder on a loopback address by default.
//!
//! Metrics (all prefixed `routeguard_`):
//! - `removals_total{kind,cause,outcome,comm}`: events by what went, why, the kernel's answer and
//!   the actor's comm (after 256 distinct comms, further ones count as `comm="other"`: an
//!   unprivileged user in its own netns must not be able to grow the label set without bound);
//! - `denials_total{kind,outcome}`: sends the BPF LSM program refused (`denied`) or let through
//!   in a dry run (`would-deny`), one per removal message in them (docs/prevention.md);
//! - `events_lost_total{cause}`: removals never seen: `ring-full` (the kernel dropped the record,
//!   the ring buffer was full: one per send, however many deletes it carried) or `queue-full`
//!   (the queue after the ring drain was at its bound: each removal of a dropped send);
//! - `suppressed_total{reason}`: removal requests the kernel's budgets did not copy, as the
//!   `suppressed` summaries counted them: `refused` (rtnetlink was predicted to refuse them) or
//!   `namespace` (privileged, in a namespace other than the initial or a protected one);
//! - `mirror_resyncs_total`: re-dumps after the route mirror's notification socket overflowed;
//! - `capture_incomplete_total{reason}`: requests cut short (`truncated`), unreadable
//!   (`read-failed`), or records beside them that the ring (`*-lost`) or the queue (`*-dropped`)
//!   could not take — process details (`task-*`), replies (`reply-*`), deletion notifications
//!   (`notify-*`) — each counted once, under its own reason; the events still came;
//! - `sink_errors_total{sink}`: events a sink failed to write (store, jsonl, stdout, journald,
//!   otlp), those it did not try while down included;
//! - `otlp_dropped_total{reason}`: of those, the events the OTLP exporter did not deliver, by
//!   why: `queue-full` (`otlp.queue_size` events already waited), `export-failed` (the collector
//!   refused the request or could not be reached, after the exporter's retries), `down` (not
//!   handed over while the sink was down, waiting for its retry);
//! - `otlp_exported_total`: events the collector accepted;
//! - `sink_up{sink}`: 1 while a sink the config turns on writes, 0 while it is down (failed, and
//!   retried with the next events after a back-off);
//! - `restores_total{outcome}`: restore events by outcome (`restored`, `already-present`,
//!   `failed`, `dry-run`, `skipped`, `suspended`);
//! - `protected_missing{policy,netns,object}`: 1 for each protected object that was removed and
//!   is not back as far as routeguard knows (suspended, failing, waiting, or dry run);
//! - `restore_overflow_total{map}`: what the restore engine's bounded maps turned away:
//!   `missing` (protected objects not tracked as missing, `restore.max_missing` were) and
//!   `sockets` (a namespace's socket closed after its restore, the cache being full);
//! - `capture_intact`: 1 while the pinned capture's pins hold this daemon's links (always 1 for an
//!   unpinned one), 0 once they were removed or replaced (`/healthz` then answers 503 with why);
//! - `build_info{version}`: always 1.

use std::{
    collections::HashSet,
    io,
    net::SocketAddr,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc, Mutex, PoisonError,
    },
    time::{Duration, Instant},
};

use prometheus_client::{
    encoding::{text::encode, EncodeLabelSet},
    metrics::{counter::Counter, family::Family, gauge::Gauge, info::Info},
    registry::Registry,
};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
    task::JoinHandle,
    time::timeout,
};

use crate::{
    event::{Event, EventType, Outcome},
    pipeline::Totals,
    restore::{Missing, Overflow},
    sink::escape::escape,
    store::label,
};

const MAX_COMMS: usize = 256;
/// The main loop turns every 10 ms; silence for this long means it is stuck.
const STALL: Duration = Duration::from_secs(10);
/// At most one loss warning in the log this often.
pub const LOSS_WARNING_EVERY: Duration = Duration::from_secs(1);

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RemovalLabels {
    kind: String,
    cause: String,
    outcome: String,
    comm: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DenialLabels {
    kind: String,
    outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RestoreLabels {
    outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct MissingLabels {
    policy: String,
    netns: String,
    object: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabels {
    reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CauseLabels {
    cause: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct MapLabels {
    map: &'static str,
}

/// The sinks that count errors, in the order the stop line names them.
const SINKS: [&str; 5] = ["store", "jsonl", "stdout", "journald", "otlp"];

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SinkLabels {
    sink: &'static str,
}

pub struct Metrics {
    registry: Registry,
    removals: Family<RemovalLabels, Counter>,
    denials: Family<DenialLabels, Counter>,
    restores: Family<RestoreLabels, Counter>,
    missing: Family<MissingLabels, Gauge>,
    restore_overflow: Family<MapLabels, Counter>,
    lost: Family<CauseLabels, Counter>,
    resyncs: Counter,
    suppressed: Family<ReasonLabels, Counter>,
    /// Resyncs already counted in `resyncs`.
    resyncs_seen: AtomicU64,
    incomplete: Family<ReasonLabels, Counter>,
    sink_errors: Family<SinkLabels, Counter>,
    sink_up: Family<SinkLabels, Gauge>,
    otlp_dropped: Family<ReasonLabels, Counter>,
    otlp_exported: Counter,
    capture_intact: Gauge,
    /// Why the capture is not as this daemon set it up, for `/healthz`.
    capture_fault: Mutex<Option<String>>,
    comms: Mutex<HashSet<String>>,
    losses: Mutex<Totals>,
    started: Instant,
    /// Milliseconds since `started` at the main loop's last turn.
    last_turn_ms: AtomicU64,
    /// When the loss warning was last logged.
    loss_warned: Mutex<Option<Instant>>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("routeguard");
        let removals = Family::<RemovalLabels, Counter>::default();
        let restores = Family::<RestoreLabels, Counter>::default();
        let denials = Family::<DenialLabels, Counter>::default();
        let missing = Family::<MissingLabels, Gauge>::default();
        let restore_overflow = Family::<MapLabels, Counter>::default();
        for map in ["missing", "sockets"] {
            // Shown at 0: a scrape tells "none turned away" from "not counted".
            restore_overflow.get_or_create(&MapLabels { map }).inc_by(0);
        }
        let lost = Family::<CauseLabels, Counter>::default();
        let resyncs = Counter::default();
        let suppressed = Family::<ReasonLabels, Counter>::default();
        for reason in ["refused", "namespace"] {
            suppressed.get_or_create(&ReasonLabels { reason }).inc_by(0);
        }
        let incomplete = Family::<ReasonLabels, Counter>::default();
        let sink_errors = Family::<SinkLabels, Counter>::default();
        let sink_up = Family::<SinkLabels, Gauge>::default();
        let otlp_dropped = Family::<ReasonLabels, Counter>::default();
        let otlp_exported = Counter::default();
        let capture_intact = Gauge::default();
        capture_intact.set(1);
        registry.register(
            "removals",
            "Removal events by kind, cause, outcome and actor comm",
            removals.clone(),
        );
        registry.register(
            "denials",
            "Removal messages in sends the BPF LSM program refused (denied) or let through in a dry run (would-deny)",
            denials.clone(),
        );
        registry.register(
            "restores",
            "Restores of protected objects by outcome",
            restores.clone(),
        );
        registry.register(
            "protected_missing",
            "1 per protected object removed and not restored (as far as routeguard knows)",
            missing.clone(),
        );
        registry.register(
            "restore_overflow",
            "What the restore engine's bounded maps turned away: missing objects not tracked, sockets not kept",
            restore_overflow.clone(),
        );
        registry.register(
            "events_lost",
            "Removals never seen, by cause: the ring buffer was full (ring-full) or the queue after it (queue-full)",
            lost.clone(),
        );
        registry.register(
            "suppressed",
            "Removal requests over their sender's budget, not copied (summarised as `suppressed` events), by reason: refused (predicted to be refused by rtnetlink) or namespace (privileged, another namespace)",
            suppressed.clone(),
        );
        registry.register(
            "mirror_resyncs",
            "Re-dumps of a namespace's routes after the mirror's notification socket overflowed (ENOBUFS)",
            resyncs.clone(),
        );
        registry.register(
            "capture_incomplete",
            "Requests captured incompletely (truncated, unreadable, process details lost)",
            incomplete.clone(),
        );
        registry.register(
            "sink_errors",
            "Events a sink failed to write (or did not try to, while down)",
            sink_errors.clone(),
        );
        registry.register(
            "sink_up",
            "1 while a sink writes, 0 while it is down (retried with the next events)",
            sink_up.clone(),
        );
        registry.register(
            "otlp_dropped",
            "Events the OTLP exporter did not deliver, by reason: queue-full, export-failed, down",
            otlp_dropped.clone(),
        );
        registry.register(
            "otlp_exported",
            "Events the OpenTelemetry collector accepted",
            otlp_exported.clone(),
        );
        registry.register(
            "capture_intact",
            "1 while the pinned capture's pins hold this daemon's links (1 when not pinned), 0 once they were removed or replaced",
            capture_intact.clone(),
        );
        registry.register(
            "build",
            "routeguard version",
            Info::new(vec![("version", env!("CARGO_PKG_VERSION"))]),
        );
        Self {
            registry,
            removals,
            denials,
            restores,
            missing,
            restore_overflow,
            lost,
            resyncs,
            suppressed,
            resyncs_seen: AtomicU64::new(0),
            incomplete,
            sink_errors,
            sink_up,
            otlp_dropped,
            otlp_exported,
            capture_intact,
            capture_fault: Mutex::default(),
            comms: Mutex::default(),
            losses: Mutex::default(),
            started: Instant::now(),
            last_turn_ms: AtomicU64::new(0),
            loss_warned: Mutex::default(),
        }
    }

    pub fn record(&self, events: &[Event]) {
        let mut comms = self.comms.lock().unwrap_or_else(PoisonError::into_inner);
        for ev in events {
            if ev.event != EventType::Removal {
                if let Some(r) = &ev.restore {
                    self.restores
                        .get_or_create(&RestoreLabels {
                            outcome: label(&r.outcome),
                        })
                        .inc();
                }
                continue;
            }
            let comm = ev
                .actor
                .as_ref()
                .map_or_else(|| "none".to_owned(), |a| escape(&a.comm).into_owned());
            let comm = if comms.contains(&comm) {
                comm
            } else if comms.len() < MAX_COMMS {
                comms.insert(comm.clone());
                comm
            } else {
                "other".to_owned()
            };
            if matches!(ev.outcome, Outcome::Denied | Outcome::WouldDeny) {
                self.denials
                    .get_or_create(&DenialLabels {
                        kind: label(&ev.kind()),
                        outcome: label(&ev.outcome),
                    })
                    .inc();
            }
            self.removals
                .get_or_create(&RemovalLabels {
                    kind: label(&ev.kind()),
                    cause: label(&ev.cause),
                    outcome: label(&ev.outcome),
                    comm,
                })
                .inc();
        }
    }

    /// Sets the missing-object gauges to exactly `now`.
    pub fn protected_missing(&self, now: Vec<Missing>) {
        self.missing.clear();
        for m in now {
            self.missing
                .get_or_create(&MissingLabels {
                    policy: escape(&m.policy).into_owned(),
                    netns: escape(&m.netns).into_owned(),
                    object: escape(&m.object).into_owned(),
                })
                .set(1);
        }
    }

    /// Counts what the restore engine's maps turned away, `grew` since the last call.
    pub fn restore_overflow(&self, grew: Overflow) {
        for (map, n) in [("missing", grew.missing), ("sockets", grew.sockets)] {
            self.restore_overflow
                .get_or_create(&MapLabels { map })
                .inc_by(n);
        }
    }

    /// Counts what `suppressed` summaries say the kernel's budgets did not copy.
    pub fn suppressed(&self, summaries: &[crate::event::Suppressed]) {
        for s in summaries {
            self.suppressed
                .get_or_create(&ReasonLabels { reason: "refused" })
                .inc_by(s.refused);
            self.suppressed
                .get_or_create(&ReasonLabels {
                    reason: "namespace",
                })
                .inc_by(s.count.saturating_sub(s.refused));
        }
    }

    /// Takes the pipeline's running totals and counts what grew.
    pub fn losses(&self, now: Totals) {
        let mut seen = self.losses.lock().unwrap_or_else(PoisonError::into_inner);
        for (cause, was, is) in [
            ("ring-full", seen.kernel.ring_full, now.kernel.ring_full),
            ("queue-full", seen.queue.events, now.queue.events),
        ] {
            // Both causes are always shown, 0 included: a scrape tells "none lost" from "not
            // counted".
            self.lost
                .get_or_create(&CauseLabels { cause })
                .inc_by(is.saturating_sub(was));
        }
        let (k, was) = (now.kernel, seen.kernel);
        for (reason, was, is) in [
            ("truncated", was.truncated, k.truncated),
            ("read-failed", was.read_failed, k.read_failed),
            ("task-lost", was.task_lost, k.task_lost),
            ("task-dropped", seen.queue.tasks, now.queue.tasks),
            ("reply-lost", was.ack_lost, k.ack_lost),
            ("reply-dropped", seen.queue.replies, now.queue.replies),
            ("notify-lost", was.notify_lost, k.notify_lost),
            (
                "notify-dropped",
                seen.queue.notifications,
                now.queue.notifications,
            ),
        ] {
            if is > was {
                self.incomplete
                    .get_or_create(&ReasonLabels { reason })
                    .inc_by(is - was);
            }
        }
        *seen = now;
    }

    /// Whether a loss may be logged now: at most once per [`LOSS_WARNING_EVERY`]. In a flood
    /// every batch loses some; the totals a warning gives are cumulative, so one skipped is in
    /// the next, and the counters here are exact.
    pub fn loss_warning_due(&self) -> bool {
        let mut last = self
            .loss_warned
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let now = Instant::now();
        if last.is_some_and(|t| now.duration_since(t) < LOSS_WARNING_EVERY) {
            return false;
        }
        *last = Some(now);
        true
    }

    /// Takes the mirror's running total of resyncs and counts what grew.
    pub fn resyncs(&self, total: u64) {
        let seen = self.resyncs_seen.swap(total, Ordering::Relaxed);
        self.resyncs.inc_by(total.saturating_sub(seen));
    }

    pub fn sink_error(&self, sink: &'static str, events: u64) {
        self.sink_errors
            .get_or_create(&SinkLabels { sink })
            .inc_by(events);
    }

    /// Events each sink failed to write (or refused) since start, for the line the daemon
    /// prints when it stops: only the sinks that failed any, in a fixed order.
    pub fn sink_errors(&self) -> Vec<(&'static str, u64)> {
        SINKS
            .iter()
            .filter_map(|&sink| {
                let n = self.sink_errors.get(&SinkLabels { sink })?.get();
                (n > 0).then_some((sink, n))
            })
            .collect()
    }

    /// `events` the OTLP exporter did not deliver, for `reason` (0 makes the series appear).
    pub fn otlp_dropped(&self, reason: &'static str, events: u64) {
        self.otlp_dropped
            .get_or_create(&ReasonLabels { reason })
            .inc_by(events);
    }

    pub fn otlp_exported(&self, events: u64) {
        self.otlp_exported.inc_by(events);
    }

    /// Whether `sink` writes; `None`: the config turns it off (no series).
    pub fn sink_up(&self, sink: &'static str, up: Option<bool>) {
        let labels = SinkLabels { sink };
        match up {
            Some(up) => {
                self.sink_up.get_or_create(&labels).set(i64::from(up));
            }
            None => {
                self.sink_up.remove(&labels);
            }
        }
    }

    /// The main loop is alive.
    pub fn turned(&self) {
        let ms = self.started.elapsed().as_millis() as u64;
        self.last_turn_ms.store(ms, Ordering::Relaxed);
    }

    /// Why the capture is not as this daemon set it up; `None` when it is.
    pub fn capture_fault(&self, fault: Option<String>) {
        self.capture_intact.set(i64::from(fault.is_none()));
        *self
            .capture_fault
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = fault;
    }

    /// Whether the capture was last found as this daemon set it up.
    pub fn capture_intact(&self) -> bool {
        self.capture_intact.get() == 1
    }

    /// Why the daemon is not healthy, one reason a line; `None` when it is.
    fn unhealthy(&self) -> Option<String> {
        let now = self.started.elapsed().as_millis() as u64;
        let stalled = now.saturating_sub(self.last_turn_ms.load(Ordering::Relaxed))
            >= STALL.as_millis() as u64;
        let mut why: Vec<String> = Vec::new();
        if stalled {
            why.push("stalled: the capture loop has not turned for 10 s".to_owned());
        }
        if let Some(fault) = &*self
            .capture_fault
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
        {
            why.push(format!("capture: {fault}"));
        }
        (!why.is_empty()).then(|| why.join("\n"))
    }

    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing to a String cannot fail.
        let _ = encode(&mut out, &self.registry);
        out
    }
}

/// The HTTP endpoint; dropping it stops the listener.
pub struct Server {
    task: JoinHandle<()>,
    pub addr: SocketAddr,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Server {
    pub async fn bind(addr: SocketAddr, metrics: Arc<Metrics>) -> io::Result<Self> {
        let listener = TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let metrics = metrics.clone();
                tokio::spawn(async move {
                    // A client that stalls is dropped; nothing to report.
                    let _ = timeout(Duration::from_secs(5), respond(stream, &metrics)).await;
                });
            }
        });
        Ok(Self { task, addr })
    }
}

async fn respond(mut stream: TcpStream, metrics: &Metrics) -> io::Result<()> {
    let mut buf = [0u8; 2048];
    let mut len = 0;
    // Read the request head (we need only its first line); bodies are not expected.
    while len < buf.len() && !buf[..len].windows(4).any(|w| w == b"\r\n\r\n") {
        let n = stream.read(&mut buf[len..]).await?;
        if n == 0 {
            break;
        }
        len += n;
    }
    let head = String::from_utf8_lossy(&buf[..len]);
    let mut first = head.lines().next().unwrap_or("").split(' ');
    let (method, target) = (first.next().unwrap_or(""), first.next().unwrap_or(""));
    let path = target.split('?').next().unwrap_or("");
    let unhealthy = if path == "/healthz" {
        metrics.unhealthy()
    } else {
        None
    };
    let (status, content_type, body) = match (method, path) {
        ("GET" | "HEAD", "/metrics") => (
            "200 OK",
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
            metrics.encode(),
        ),
        ("GET" | "HEAD", "/healthz") => match unhealthy {
            None => ("200 OK", "text/plain", "ok\n".to_owned()),
            Some(why) => ("503 Service Unavailable", "text/plain", format!("{why}\n")),
        },
        ("GET" | "HEAD", _) => (
            "404 Not Found",
            "text/plain",
            "try /metrics or /healthz\n".into(),
        ),
        _ => ("405 Method Not Allowed", "text/plain", "GET only\n".into()),
    };
    let mut response = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    if method != "HEAD" {
        response.push_str(&body);
    }
    stream.write_all(response.as_bytes()).await?;
    stream.shutdown().await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        capture::Losses,
        event::fixtures::{route_event, rule_event},
        pipeline::QueueDrops,
    };

    #[test]
    fn counts_removals_and_losses() {
        let m = Metrics::new();
        m.record(&[route_event(), route_event(), rule_event()]);
        let totals = |ring_full, queued| Totals {
            kernel: Losses {
                ring_full,
                truncated: 1,
                ..Losses::default()
            },
            queue: QueueDrops {
                events: queued,
                ..QueueDrops::default()
            },
            ..Totals::default()
        };
        m.losses(totals(3, 0));
        m.losses(totals(5, 2));
        m.sink_error("journald", 2);
        m.sink_error("store", 0);
        m.sink_error("store", 61_716);
        assert_eq!(m.sink_errors(), [("store", 61_716), ("journald", 2)]);
        m.sink_up("store", Some(true));
        m.sink_up("jsonl", Some(false));
        m.sink_up("stdout", Some(true));
        m.sink_up("stdout", None);
        m.resyncs(2);
        m.resyncs(3);
        m.otlp_dropped("queue-full", 0);
        m.otlp_dropped("export-failed", 4);
        m.otlp_exported(7);
        let text = m.encode();
        assert!(
            text.contains(
                r#"routeguard_removals_total{kind="route",cause="request",outcome="removed",comm="ip"} 2"#
            ),
            "{text}"
        );
        assert!(
            text.contains(r#"routeguard_events_lost_total{cause="ring-full"} 5"#),
            "{text}"
        );
        assert!(
            text.contains(r#"routeguard_events_lost_total{cause="queue-full"} 2"#),
            "{text}"
        );
        assert!(text.contains("routeguard_mirror_resyncs_total 3"), "{text}");
        assert!(
            text.contains(r#"routeguard_capture_incomplete_total{reason="truncated"} 1"#),
            "{text}"
        );
        assert!(
            text.contains(r#"routeguard_sink_errors_total{sink="journald"} 2"#),
            "{text}"
        );
        assert!(
            text.contains(r#"routeguard_sink_up{sink="store"} 1"#)
                && text.contains(r#"routeguard_sink_up{sink="jsonl"} 0"#)
                && !text.contains(r#"routeguard_sink_up{sink="stdout"}"#),
            "{text}"
        );
        for series in [
            r#"routeguard_otlp_dropped_total{reason="queue-full"} 0"#,
            r#"routeguard_otlp_dropped_total{reason="export-failed"} 4"#,
            "routeguard_otlp_exported_total 7",
        ] {
            assert!(text.contains(series), "{series} in {text}");
        }
        assert!(text.contains("routeguard_build_info{version="), "{text}");
        assert!(text.ends_with("# EOF\n"));
    }

    #[test]
    fn loss_warnings_are_at_most_one_a_second() {
        let m = Metrics::new();
        let due: Vec<bool> = (0..1000).map(|_| m.loss_warning_due()).collect();
        assert_eq!(
            due.iter().filter(|d| **d).count(),
            1,
            "one warning for a burst"
        );
        assert!(due[0], "the first loss is told at once");
        *m.loss_warned.lock().unwrap() = Some(Instant::now() - LOSS_WARNING_EVERY);
        assert!(m.loss_warning_due(), "and the next a second later");
    }

    #[test]
    fn comm_labels_are_bounded_and_escaped() {
        let m = Metrics::new();
        let mut ev = route_event();
        for i in 0..MAX_COMMS + 10 {
            std::sync::Arc::make_mut(ev.actor.as_mut().unwrap()).comm = format!("c{i}");
            m.record(std::slice::from_ref(&ev));
        }
        std::sync::Arc::make_mut(ev.actor.as_mut().unwrap()).comm = "bad\"\n\u{1b}".into();
        m.record(std::slice::from_ref(&ev));
        let text = m.encode();
        assert!(text.contains(r#"comm="other"} 11"#), "{text}");
        assert_eq!(
            text.matches("routeguard_removals_total{").count(),
            MAX_COMMS + 1
        );
        assert!(!text.contains('\u{1b}'));
    }

    #[tokio::test]
    async fn serves_metrics_and_health_over_loopback() {
        let m = Arc::new(Metrics::new());
        m.turned();
        m.record(&[route_event()]);
        let server = Server::bind("127.0.0.1:0".parse().unwrap(), m.clone())
            .await
            .unwrap();
        let addr = server.addr;
        let get = |path: &'static str| async move {
            let mut s = TcpStream::connect(addr).await.unwrap();
            s.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes())
                .await
                .unwrap();
            let mut out = String::new();
            s.read_to_string(&mut out).await.unwrap();
            out
        };
        let metrics = get("/metrics").await;
        assert!(metrics.starts_with("HTTP/1.1 200 OK\r\n"), "{metrics}");
        assert!(metrics.contains("routeguard_removals_total{"), "{metrics}");
        let health = get("/healthz").await;
        assert!(health.starts_with("HTTP/1.1 200 OK") && health.ends_with("ok\n"));
        assert!(metrics.contains("routeguard_capture_intact 1"), "{metrics}");
        assert!(get("/nope").await.starts_with("HTTP/1.1 404"));
        m.capture_fault(Some("the pinned capture was removed".into()));
        let health = get("/healthz").await;
        assert!(
            health.starts_with("HTTP/1.1 503")
                && health.ends_with("capture: the pinned capture was removed\n"),
            "{health}"
        );
        assert!(get("/metrics")
            .await
            .contains("routeguard_capture_intact 0"));
        m.capture_fault(None);
        assert!(get("/healthz").await.starts_with("HTTP/1.1 200 OK"));
    }
}
