//! `routeguard trace`: capture, correlate, filter, print — until interrupted or a limit is hit.

use std::{
    io::{self, BufWriter, Write},
    process::ExitCode,
};

use tokio::{
    signal::unix::{signal, SignalKind},
    time::{sleep_until, Instant},
};

use super::TraceArgs;
use crate::{
    capture::{self, select::Selection, CaptureError},
    daemon::{Config, ConfigError},
    event::{filter::Filter, Event, Observed, Outcomes},
    pipeline::{Pacing, Pipeline, Settings, Totals},
    restore::{Finished, GuardConfig, Protect, Restorer, Restores},
    sink,
};

pub fn run(args: TraceArgs) -> ExitCode {
    // Every event names this machine: read once, now.
    crate::event::set_local_host(crate::attribution::host::local());
    // The policy is checked before anything is loaded: a bad one starts nothing.
    let policy = match Policy::from_args(&args) {
        Ok(p) => p,
        Err(err) => {
            eprintln!("routeguard: {err}");
            return ExitCode::from(super::EXIT_USAGE);
        }
    };
    // Run from a DaemonSet pod, trace watches (and restores in) the node's namespace too.
    if let Err(err) = crate::netlink::netns::watch_host_from_env() {
        eprintln!("routeguard: {err}");
        return ExitCode::from(super::EXIT_USAGE);
    }
    let runtime = match super::capture_runtime() {
        Ok(rt) => rt,
        Err(code) => return code,
    };
    let selection = match super::choose_capture(args.capture.into(), !policy.protect.is_empty()) {
        Ok(s) => s,
        Err(code) => return code,
    };
    match runtime.block_on(trace(&args, policy, &selection)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(TraceError::Capture(err)) => {
            eprintln!("routeguard: {err}");
            super::capture_exit(&err)
        }
        Err(TraceError::Io(err)) => {
            eprintln!("routeguard: {err}");
            ExitCode::FAILURE
        }
    }
}

#[derive(Debug, thiserror::Error)]
enum TraceError {
    #[error(transparent)]
    Capture(#[from] CaptureError),
    #[error("{0}")]
    Io(#[from] io::Error),
}

/// What `trace` protects: `--protect` entries plus those of `--config`, and the flap guard.
struct Policy {
    protect: Vec<Protect>,
    guard: GuardConfig,
    /// The deny entries, for the LSM program.
    deny: Option<crate::prevent::Plan>,
}

impl Policy {
    fn from_args(args: &TraceArgs) -> Result<Self, ConfigError> {
        let mut protect = args.protect.clone();
        let mut guard = GuardConfig::default();
        if let Some(path) = &args.config {
            let config = Config::load(path, false)?;
            protect.extend(config.protect);
            guard = config.restore;
        }
        guard.dry_run |= args.dry_run;
        let deny =
            crate::prevent::Plan::of(&protect, guard.dry_run).map_err(ConfigError::Policy)?;
        Ok(Self {
            protect,
            guard,
            deny,
        })
    }
}

async fn trace(args: &TraceArgs, policy: Policy, selection: &Selection) -> Result<(), TraceError> {
    let protecting = !policy.protect.is_empty();
    let options = capture::Options {
        ring_bytes: args.ring_size,
        // A restore is only as fast as routeguard hears of the removal: no batched wake-ups.
        wakeup_bytes: if protecting { 0 } else { args.wakeup },
        // Only the daemon outlives itself.
        pin_dir: None,
        path: selection.path,
        syscall_programs: selection.enrich,
        fallback: selection.fallback,
        // Unpinned: its programs go with it.
        orphan_after: std::time::Duration::ZERO,
        budget_rate: capture::budget::DEFAULT_RATE,
        // All budgeted senders share four bursts: at most half the ring.
        budget_burst: capture::budget::DEFAULT_BURST.min(args.ring_size / 8),
        deny: policy.deny.clone(),
    };
    let settings = Settings {
        queue_bytes: args.queue_size as usize,
        pacing: Pacing::Interactive,
    };
    let mut pipeline = Pipeline::start(&options, &settings)?;
    // Privileged removals are not budgeted where the user asked to look: the namespaces the
    // protect entries name and those `--netns` shows (a forensic session there wants each one).
    let asked = policy.protect.iter().filter_map(|p| p.netns.as_deref());
    let shown = args.filters.netns.iter().map(String::as_str);
    capture::budget::exempt(pipeline.budgets(), asked.chain(shown));
    let mut summaries = crate::attribution::suppressed::Summaries::new(pipeline.clock());
    let mut budget_tick = tokio::time::interval(capture::budget::SUMMARY_EVERY);
    budget_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let entries = policy.protect.len();
    let dry_run = policy.guard.dry_run;
    let mut restores = match Restorer::new(policy.protect, policy.guard, pipeline.clock()) {
        Some(restorer) => Some(Restores::start(restorer)?),
        None => None,
    };
    let mut output = Output::new(args.json, args.filter(), args.count);
    let mut sigint = signal(SignalKind::interrupt())?;
    let mut sigterm = signal(SignalKind::terminate())?;
    let deadline = args.duration.map(|d| Instant::now() + d);
    let mut protection = match (entries, dry_run) {
        (0, _) => String::new(),
        (n, false) => format!("; protecting {n} selection(s), restoring"),
        (n, true) => format!("; protecting {n} selection(s), dry run"),
    };
    protection.push_str(&pipeline.prevention.describe());
    eprintln!(
        "routeguard: tracing started (capture={}, {} programs, ring {} KiB, queue {} KiB{protection}); Ctrl-C to stop",
        pipeline.path,
        pipeline.programs,
        args.ring_size >> 10,
        pipeline.queue_bytes() >> 10,
    );
    let mut loss = LossReport::new(args.ring_size);
    loop {
        let done = tokio::select! {
            batch = pipeline.next() => {
                let batch = batch?;
                if batch.newly_lost > 0 {
                    loss.report(&batch.totals, false);
                }
                if let Some(r) = &restores {
                    r.observe(&batch.events);
                }
                output.emit(batch.events, Vec::new())?
            }
            answers = answers(&mut restores) => output.emit(Vec::new(), answers)?,
            _ = budget_tick.tick() => output.suppressed(&mut pipeline, &mut summaries)?,
            _ = sigint.recv() => break,
            _ = sigterm.recv() => break,
            _ = sleep_until(deadline.unwrap_or_else(Instant::now)), if deadline.is_some() => break,
        };
        if done {
            break;
        }
    }
    let last = pipeline.finish().await;
    if last.newly_lost > 0 {
        loss.report(&last.totals, true);
    }
    if let Some(r) = &restores {
        r.observe(&last.events);
    }
    output.emit(last.events, Vec::new())?;
    output.suppressed(&mut pipeline, &mut summaries)?;
    if let Some(r) = restores.take() {
        let Finished {
            answers, waiting, ..
        } = r.finish().await;
        output.emit(Vec::new(), answers)?;
        if waiting > 0 {
            eprintln!(
                "routeguard: {waiting} restores were still waiting (back-off or retry) at exit"
            );
        }
    }
    summary(output.shown, &output.outcomes, &pipeline.totals());
    Ok(())
}

/// The restore engine's next answers; never, without one.
async fn answers(restores: &mut Option<Restores>) -> Vec<Event> {
    match restores {
        Some(r) => r.next().await,
        None => std::future::pending().await,
    }
}

/// Says so when records are lost: never silent, at most once a second.
struct LossReport {
    ring_size: u32,
    last: Option<std::time::Instant>,
}

impl LossReport {
    fn new(ring_size: u32) -> Self {
        Self {
            ring_size,
            last: None,
        }
    }

    fn report(&mut self, totals: &Totals, always: bool) {
        let due = self
            .last
            .is_none_or(|t| t.elapsed() >= std::time::Duration::from_secs(1));
        if !(due || always) {
            return;
        }
        self.last = Some(std::time::Instant::now());
        eprintln!(
            "routeguard: {} events lost so far ({} ring full: raise --ring-size from {} KiB; {} \
             queue full: raise --queue-size){}",
            totals.lost(),
            totals.kernel.ring_full,
            self.ring_size >> 10,
            totals.queue.events,
            totals.other_losses()
        );
    }
}

/// The closing lines: what went wrong along the way, if anything; how the removals shown ended
/// and on what evidence (`routeguard: outcomes: …`, which the benches parse); and the count.
fn summary(shown: u64, outcomes: &Outcomes, totals: &Totals) {
    let (losses, problems, resyncs) = (&totals.kernel, totals.problems, totals.resyncs);
    let mut notes = Vec::new();
    for (n, what) in [
        (
            losses.truncated,
            "requests longer than the copy limit (tail not decoded)",
        ),
        (
            losses.suppressed_refused,
            "removal requests over their sender's budget and predicted to be refused, not copied (summarised as `suppressed`)",
        ),
        (
            losses.suppressed_namespace,
            "privileged removal requests in other namespaces over their budget, not copied (summarised as `suppressed`)",
        ),
        (
            losses.read_failed,
            "requests whose memory could not be read",
        ),
        (
            losses.task_lost,
            "process-detail records lost at a full ring (those actors came from /proc)",
        ),
        (
            totals.queue.tasks,
            "process-detail records dropped at the queue bound (those actors came from /proc)",
        ),
        (
            losses.ack_lost,
            "replies lost at a full ring (those outcomes are unknown)",
        ),
        (
            totals.queue.replies,
            "replies dropped at the queue bound (those outcomes are unknown)",
        ),
        (
            losses.notify_lost,
            "deletion notifications lost at a full ring (their requests' events still came)",
        ),
        (
            totals.queue.notifications,
            "deletion notifications dropped at the queue bound (their requests' events still came)",
        ),
        (
            problems.exe_ids_from_proc,
            "processes whose executable identity came from /proc (the kernel gave none)",
        ),
        (
            problems.exe_ids_unknown,
            "processes with no executable identity (gone before /proc was read; allow.exe cannot match them)",
        ),
        (problems.bad_records, "malformed records"),
        (problems.undecodable, "undecodable messages"),
        (
            problems.unclaimed_news,
            "replaces the route mirror heard that no captured request claimed",
        ),
        (
            problems.late_flushes,
            "link-downs or address removals shown before the mirror said what they flushed",
        ),
        (
            resyncs,
            "route-mirror resyncs (its notification socket overflowed; re-dumped and diffed)",
        ),
    ] {
        if n > 0 {
            notes.push(format!("{n} {what}"));
        }
    }
    if !notes.is_empty() {
        eprintln!("routeguard: also: {}", notes.join("; "));
    }
    eprintln!("routeguard: outcomes: {outcomes}");
    eprintln!("routeguard: {shown} events, {} lost", totals.lost());
}

/// Output buffer: a burst of events goes out in few large writes (each event's JSON line is
/// about 1 KiB).
const OUT_BUF: usize = 64 * 1024;

/// Where events go: stdout, as text or JSON lines, after the user's filter and count limit.
struct Output {
    json: bool,
    filter: Filter,
    limit: Option<u64>,
    out: BufWriter<io::Stdout>,
    /// One JSON line at a time, reused: no allocation per event.
    line: Vec<u8>,
    lines: sink::json::Lines,
    shown: u64,
    /// How the removals shown ended.
    outcomes: Outcomes,
    /// stdout went away (e.g. `| head`): stop quietly.
    closed: bool,
}

impl Output {
    fn new(json: bool, filter: Filter, limit: Option<u64>) -> Self {
        Self {
            json,
            filter,
            limit,
            out: BufWriter::with_capacity(OUT_BUF, io::stdout()),
            line: Vec::with_capacity(2048),
            lines: sink::json::Lines::default(),
            shown: 0,
            outcomes: Outcomes::default(),
            closed: false,
        }
    }

    /// Writes the removals and restore answers that pass the filter, counting the removals'
    /// outcomes; true once the output is done (limit reached or stdout closed).
    fn emit(&mut self, observed: Vec<Observed>, answers: Vec<Event>) -> io::Result<bool> {
        let mut events = Vec::with_capacity(observed.len() + answers.len());
        for o in observed {
            if self.filter.matches(&o.event) {
                events.push((Some(o.evidence), o.event));
            }
        }
        events.extend(
            answers
                .into_iter()
                .filter(|e| self.filter.matches(e))
                .map(|e| (None, e)),
        );
        for (evidence, mut ev) in events {
            if self.done() {
                break;
            }
            if let Some(evidence) = evidence {
                self.outcomes.tally(&ev, evidence);
            }
            self.line.clear();
            if self.json {
                self.lines.write(&mut ev, &mut self.line);
            } else {
                self.line
                    .extend_from_slice(sink::terminal::format_line(&ev).as_bytes());
            }
            self.line.push(b'\n');
            if let Err(err) = self.out.write_all(&self.line) {
                return self.broken(err);
            }
            self.shown += 1;
        }
        if let Err(err) = self.out.flush() {
            return self.broken(err);
        }
        Ok(self.done())
    }

    /// Prints what the kernel's budgets suppressed since the last look, one line per sender.
    fn suppressed(
        &mut self,
        pipeline: &mut Pipeline,
        summaries: &mut crate::attribution::suppressed::Summaries,
    ) -> io::Result<bool> {
        let Some(budgets) = pipeline.budgets() else {
            return Ok(self.done());
        };
        for s in budgets.take() {
            if self.closed {
                break;
            }
            let line = summaries.describe(&s);
            let text = if self.json {
                line.to_line()
            } else {
                line.message()
            };
            if let Err(err) = writeln!(self.out, "{text}") {
                return self.broken(err);
            }
        }
        if let Err(err) = self.out.flush() {
            return self.broken(err);
        }
        Ok(self.done())
    }

    fn done(&self) -> bool {
        self.closed || self.limit.is_some_and(|l| self.shown >= l)
    }

    fn broken(&mut self, err: io::Error) -> io::Result<bool> {
        if err.kind() == io::ErrorKind::BrokenPipe {
            self.closed = true;
            Ok(true)
        } else {
            Err(err)
        }
    }
}
