//! `routeguard daemon`: the always-on audit service. It drives the same [`Pipeline`] as `trace`
//! and writes every event to its sinks (SQLite store, JSON lines, journald, OTLP) and metrics.
//!
//! Lifecycle: the config is read and every sink opened before anything is loaded into the
//! kernel; SIGHUP re-reads the config (a bad one is logged and the running one kept, a good one
//! is handed to the running restore engine, which keeps the state of unchanged entries); SIGTERM
//! or SIGINT drains the ring buffer, writes what was left and closes the store, then exits 0.
//! Under systemd (`Type=notify`) it says READY=1 once capture runs, RELOADING=1 / STOPPING=1.

pub mod config;
mod journald;
mod jsonl;
mod memory;
mod metrics;
mod notify;
mod otlp;
mod sinks;
mod store_writer;

use std::{io, path::PathBuf, sync::Arc, time::Duration};

use tokio::{
    signal::unix::{signal, SignalKind},
    time::{interval, MissedTickBehavior},
};

pub use config::{Config, ConfigError};
pub use metrics::Metrics;
pub use sinks::{SinkError, Sinks};

use crate::{
    capture::{self, CaptureError},
    event::{Event, Observed},
    pipeline::{Batch, Pacing, Pipeline, Settings},
    restore::{Finished, Overflow, Restorer, Restores},
};
/// How often the store's retention limits are applied and freed heap is given back.
const PRUNE_EVERY: Duration = Duration::from_secs(60);
/// How often a pinned capture's pins are checked (`/healthz` says when they are gone).
const CHECK_PINS_EVERY: Duration = Duration::from_secs(2);

#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error(transparent)]
    Sink(#[from] SinkError),
    #[error("cannot serve metrics on {addr}: {source}; change `metrics.listen` or free the port")]
    Listen {
        addr: std::net::SocketAddr,
        source: io::Error,
    },
    #[error(transparent)]
    Capture(#[from] CaptureError),
    #[error("{0}")]
    Io(#[from] io::Error),
}

/// Where the config came from, to read it again on SIGHUP.
pub struct ConfigSource {
    pub path: PathBuf,
    /// The default path: an absent file means the defaults.
    pub absent_ok: bool,
}

impl ConfigSource {
    pub fn load(&self) -> Result<Config, ConfigError> {
        Config::load(&self.path, self.absent_ok)
    }
}

pub async fn run(
    source: ConfigSource,
    mut config: Config,
    selection: crate::capture::select::Selection,
) -> Result<(), DaemonError> {
    let metrics = Arc::new(Metrics::new());
    metrics.turned();
    let mut sinks = Sinks::open(&config, &metrics)?;
    let mut server = serve(&config, &metrics).await?;
    let mut sighup = signal(SignalKind::hangup())?;
    let mut sigterm = signal(SignalKind::terminate())?;
    let mut sigint = signal(SignalKind::interrupt())?;
    let mut prune = interval(PRUNE_EVERY);
    prune.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut check_pins = interval(CHECK_PINS_EVERY);
    check_pins.set_missed_tick_behavior(MissedTickBehavior::Delay);

    let options = capture::Options {
        ring_bytes: config.capture.ring_size,
        // A restore is only as fast as routeguard hears of the removal: no batched wake-ups.
        wakeup_bytes: if config.protect.is_empty() {
            config.capture.wakeup
        } else {
            0
        },
        pin_dir: config.capture.pin_dir(),
        path: selection.path,
        syscall_programs: selection.enrich,
        fallback: selection.fallback,
        orphan_after: config.capture.orphan_after,
        budget_rate: config.capture.budget_rate,
        budget_burst: budget_burst(&config),
        // Checked when the config was read.
        deny: crate::prevent::Plan::of(&config.protect, config.restore.dry_run)
            .ok()
            .flatten(),
    };
    let settings = Settings {
        queue_bytes: config.capture.queue_size as usize,
        pacing: Pacing::Deep,
    };
    let mut pipeline = Pipeline::start(&options, &settings)?;
    if let Some(orphaned) = pipeline.orphaned() {
        tracing::warn!("{}", orphaned.describe(&pipeline.clock()));
    }
    budgets(&mut pipeline, &config);
    let mut summaries = crate::attribution::suppressed::Summaries::new(pipeline.clock());
    let mut budget_tick = interval(crate::capture::budget::SUMMARY_EVERY);
    budget_tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut restores = new_restores(&config, &pipeline)?;
    // What the restore engine's bounded maps turned away since start.
    let mut overflow = Overflow::default();
    eprintln!(
        "routeguard: daemon started (capture={}, {} programs, ring {} KiB, queue {} KiB{}; {}; metrics {})",
        pipeline.path,
        pipeline.programs,
        options.ring_bytes >> 10,
        pipeline.queue_bytes() >> 10,
        match (&options.pin_dir, pipeline.pinned(), pipeline.adopted()) {
            (Some(dir), true, true) if pipeline.orphaned().is_some() => format!(
                ", adopted from {} with what it recorded until it was orphaned",
                dir.display()
            ),
            (Some(dir), true, true) => format!(
                ", adopted from {} with what it recorded while no daemon ran",
                dir.display()
            ),
            (Some(dir), true, false) => format!(", pinned in {}", dir.display()),
            _ => ", not pinned".to_owned(),
        } + &pipeline.prevention.describe(),
        sinks.describe(),
        server.as_ref().map_or_else(
            || "off".to_owned(),
            |s| format!("http://{}/metrics", s.addr)
        ),
    );
    // What loading the capture parsed and freed (BTF, the eBPF object) goes back now; later
    // bursts' garbage goes back at each prune.
    memory::give_back();
    notify::send("READY=1");
    let news = sinks.news();

    loop {
        tokio::select! {
            batch = pipeline.next() => {
                let batch = batch?;
                if let Some(r) = &restores {
                    r.observe(&batch.events);
                }
                deliver(&mut sinks, &metrics, batch, options.ring_bytes);
                publish(&metrics, &mut restores, &mut overflow);
                metrics.turned();
            }
            answers = answers(&mut restores) => {
                metrics.record(&answers);
                sinks.write(answers, &metrics);
                publish(&metrics, &mut restores, &mut overflow);
            }
            _ = sighup.recv() => {
                notify::send("RELOADING=1");
                if reload(&source, &mut config, &mut sinks, &mut server, &metrics).await {
                    // The running engine takes the new policy and keeps the back-offs,
                    // suspensions and retries of the entries that did not change.
                    restores = match restores.take() {
                        Some(mut r) if !config.protect.is_empty() => {
                            r.reconfigure(config.protect.clone(), config.restore.clone());
                            Some(r)
                        }
                        Some(r) => {
                            stop_restores(r, &mut sinks, &metrics, &mut overflow).await;
                            None
                        }
                        None => new_restores(&config, &pipeline)?,
                    };
                }
                budgets(&mut pipeline, &config);
                notify::send("READY=1");
            }
            () = news.notified() => sinks.poll(&metrics),
            _ = budget_tick.tick() => summarise(&mut pipeline, &mut summaries, &mut sinks, &metrics),
            _ = prune.tick() => {
                sinks.prune(&metrics);
                memory::give_back();
            }
            _ = check_pins.tick() => {
                // The loop turns: on an idle machine no batch comes for minutes, and /healthz
                // used to say "stalled" after 10 s of quiet.
                metrics.turned();
                let fault = pipeline.check_pins().err().map(|e| e.to_string());
                if let Some(fault) = &fault {
                    if metrics.capture_intact() {
                        tracing::error!("{fault}");
                    }
                }
                metrics.capture_fault(fault);
            }
            _ = sigterm.recv() => break,
            _ = sigint.recv() => break,
        }
    }

    notify::send("STOPPING=1");
    let last = pipeline.finish().await;
    if let Some(r) = &restores {
        r.observe(&last.events);
    }
    deliver(&mut sinks, &metrics, last, options.ring_bytes);
    summarise(&mut pipeline, &mut summaries, &mut sinks, &metrics);
    if let Some(r) = restores.take() {
        stop_restores(r, &mut sinks, &metrics, &mut overflow).await;
    }
    sinks.close();
    let totals = pipeline.totals();
    eprintln!(
        "routeguard: daemon stopped; {} events lost since start (ring full {}, queue full {}); \
         also lost: task records {}, replies {}, notifications {}; {} route-mirror resyncs; \
         restore state overflow: {} missing objects not tracked, {} sockets not kept",
        totals.lost(),
        totals.kernel.ring_full,
        totals.queue.events,
        totals.kernel.task_lost + totals.queue.tasks,
        totals.kernel.ack_lost + totals.queue.replies,
        totals.kernel.notify_lost + totals.queue.notifications,
        totals.resyncs,
        overflow.missing,
        overflow.sockets,
    );
    eprintln!("routeguard: outcomes: {}", totals.outcomes);
    eprintln!("routeguard: {}", sink_failures(&metrics.sink_errors()));
    Ok(())
}

/// `[capture] budget_burst`, at most an eighth of the ring: all budgeted senders share four
/// bursts, so at most half the ring.
fn budget_burst(config: &Config) -> u32 {
    config
        .capture
        .budget_burst
        .min(config.capture.ring_size / 8)
}

/// The kernel's budgets as `config` says (at start, a pinned capture adopted included, and on
/// SIGHUP): the rate and burst, and the namespaces `[[protect]]` entries name are exempt.
fn budgets(pipeline: &mut Pipeline, config: &Config) {
    if let Some(budgets) = pipeline.budgets() {
        let (rate, burst) = (config.capture.budget_rate, budget_burst(config));
        if let Err(err) = budgets.set_limits(rate, burst) {
            tracing::warn!(%err, rate, burst, "cannot set the budgets' rate and burst; the running programs keep theirs");
        }
    }
    crate::capture::budget::exempt(
        pipeline.budgets(),
        config.protect.iter().filter_map(|p| p.netns.as_deref()),
    );
}

/// What the kernel's budgets suppressed since the last look, as `suppressed` summaries.
fn summarise(
    pipeline: &mut Pipeline,
    summaries: &mut crate::attribution::suppressed::Summaries,
    sinks: &mut Sinks,
    metrics: &Metrics,
) {
    let Some(budgets) = pipeline.budgets() else {
        return;
    };
    let lines: Vec<_> = budgets
        .take()
        .iter()
        .map(|s| summaries.describe(s))
        .collect();
    sinks.suppressed(&lines, metrics);
}

/// The stop line's account of the sinks: events seen but not written are not lost by the
/// capture, yet missing from that sink (`routeguard_sink_errors_total{sink}`).
fn sink_failures(failed: &[(&str, u64)]) -> String {
    if failed.is_empty() {
        return "sinks: every event written to every sink that was on".to_string();
    }
    let each: Vec<String> = failed
        .iter()
        .map(|(sink, n)| format!("{sink} {n}"))
        .collect();
    format!(
        "sinks: events not written (refused while a sink lagged, or failed): {}",
        each.join(", ")
    )
}

/// What the restore engine holds, for the metrics: its missing objects, and what its maps
/// turned away (added to `overflow`).
fn publish(metrics: &Metrics, restores: &mut Option<Restores>, overflow: &mut Overflow) {
    let Some(r) = restores else {
        metrics.protected_missing(Vec::new());
        return;
    };
    metrics.protected_missing(r.missing());
    let grew = r.overflow();
    metrics.restore_overflow(grew);
    overflow.add(grew);
}

/// Stops the restore engine; its last answers go to the sinks.
async fn stop_restores(r: Restores, sinks: &mut Sinks, metrics: &Metrics, overflow: &mut Overflow) {
    let Finished {
        answers,
        overflow: grew,
        ..
    } = r.finish().await;
    metrics.restore_overflow(grew);
    overflow.add(grew);
    if !answers.is_empty() {
        metrics.record(&answers);
        sinks.write(answers, metrics);
    }
}

/// The restore engine's next answers; never, without one.
async fn answers(restores: &mut Option<Restores>) -> Vec<Event> {
    match restores {
        Some(r) => r.next().await,
        None => std::future::pending().await,
    }
}

/// The restore engine on its thread, when something is protected.
fn new_restores(config: &Config, pipeline: &Pipeline) -> Result<Option<Restores>, DaemonError> {
    match new_restorer(config, pipeline) {
        Some(restorer) => Ok(Some(Restores::start(restorer)?)),
        None => Ok(None),
    }
}

fn new_restorer(config: &Config, pipeline: &Pipeline) -> Option<Restorer> {
    if !config.protect.is_empty() && config.capture.wakeup != 0 {
        tracing::info!("protecting objects: the ring wakes the daemon on every event (capture.wakeup is ignored)");
    }
    Restorer::new(
        config.protect.clone(),
        config.restore.clone(),
        pipeline.clock(),
    )
}

/// The batch's events go to the sinks.
fn deliver(sinks: &mut Sinks, metrics: &Metrics, batch: Batch, ring: u32) {
    let totals = batch.totals;
    if batch.newly_lost > 0 && metrics.loss_warning_due() {
        tracing::warn!(
            "{} events lost so far ({} ring full: raise `capture.ring_size` from {} KiB; {} queue \
             full: raise `capture.queue_size`){}",
            totals.lost(),
            totals.kernel.ring_full,
            ring >> 10,
            totals.queue.events,
            totals.other_losses(),
        );
    }
    metrics.losses(totals);
    metrics.resyncs(totals.resyncs);
    if batch.events.is_empty() {
        sinks.poll(metrics);
        return;
    }
    let events = Observed::events(batch.events);
    metrics.record(&events);
    sinks.write(events, metrics);
}

async fn serve(
    config: &Config,
    metrics: &Arc<Metrics>,
) -> Result<Option<metrics::Server>, DaemonError> {
    if !config.metrics.enabled {
        return Ok(None);
    }
    let addr = config.metrics.listen;
    metrics::Server::bind(addr, metrics.clone())
        .await
        .map(Some)
        .map_err(|source| DaemonError::Listen { addr, source })
}

/// SIGHUP: read the config again and apply it; any error keeps the running config whole.
/// True when the new config is in force.
async fn reload(
    source: &ConfigSource,
    config: &mut Config,
    sinks: &mut Sinks,
    server: &mut Option<metrics::Server>,
    metrics: &Arc<Metrics>,
) -> bool {
    let mut new = match source.load() {
        Ok(new) => new,
        Err(e) => {
            tracing::error!("reload refused, the running config is kept: {e}");
            return false;
        }
    };
    // The listener first: binding is the step most likely to fail, and it changes nothing.
    let new_server = if new.metrics != config.metrics {
        match serve(&new, metrics).await {
            Ok(s) => Some(s),
            Err(e) => {
                tracing::error!("reload refused, the running config is kept: {e}");
                return false;
            }
        }
    } else {
        None
    };
    if let Err(e) = sinks.reconfigure(&new, metrics) {
        tracing::error!("reload refused, the running config is kept: {e}");
        return false;
    }
    if let Some(s) = new_server {
        *server = s;
    }
    // The budgets' rate and burst are maps the running programs read: they change now. The
    // rest of `[capture]` shapes what is loaded.
    let mut kept = config.capture.clone();
    kept.budget_rate = new.capture.budget_rate;
    kept.budget_burst = new.capture.budget_burst;
    if new.capture != kept {
        tracing::warn!("`[capture]` changes other than budget_rate and budget_burst take effect when the daemon restarts");
        new.capture = kept;
    }
    tracing::info!(
        "config reloaded from {} ({})",
        source.path.display(),
        sinks.describe()
    );
    if new.protect.is_empty() != config.protect.is_empty() {
        tracing::warn!(
            "protecting objects turns per-event wake-ups on or off only when the daemon restarts"
        );
    }
    *config = new;
    true
}
