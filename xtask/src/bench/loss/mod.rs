//! The loss bench: bursts of route removals with `routeguard trace` and `ip monitor route`
//! listening side by side, in a network namespace of its own; prints how many removals each saw,
//! how routeguard's ended, and on what evidence.
//!
//! Three bursts per run: (a) `ip route flush table 100` of a table of N routes (ip deletes in
//! batches without asking for acks, so each outcome rests on the kernel's notification or
//! another sign from the kernel), and (b) M routes deleted by `ip -batch` as fast as it goes,
//! both under `routeguard trace` with its default ring; then (c) the same flush of N routes
//! into `routeguard daemon` with its default config: rows stored, lost, peak resident size.
//! Every route event of table 100 counts, whatever its outcome or cause; `ip monitor` counts its
//! `Deleted` lines. The target: every deletion seen, and every one `removed`.
mod counts;
mod into_daemon;

use std::{
    path::{Path, PathBuf},
    process::Command,
    thread,
    time::{Duration, Instant},
};

use anyhow::{ensure, Result};

use self::counts::{tally, EventCounts, Monitor, MonitorCounts};
use super::{
    procfs::load_average,
    routes::{add_link, path_str, rate, write_batches, TABLE},
    tracer::{LineCounter, Tracer, TracerReport},
};
use crate::{cmd, interrupt, netns::Netns};

#[derive(clap::Args)]
pub struct Args {
    /// Routes in table 100 before `ip route flush table 100`.
    #[arg(long, default_value_t = 1_000_000, value_parser = clap::value_parser!(u32).range(1..=16_000_000))]
    routes: u32,
    /// Routes deleted by `ip -batch` in the second burst.
    #[arg(long, default_value_t = 100_000, value_parser = clap::value_parser!(u32).range(1..=16_000_000))]
    deletes: u32,
    /// Number of runs (each: one flush and one batch delete traced, one flush into the daemon).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=100))]
    runs: u32,
    /// Bench this routeguard binary instead of building target/release/routeguard.
    #[arg(long, value_name = "PATH")]
    bin: Option<PathBuf>,
    /// Run only the third burst, the flush into `routeguard daemon`.
    #[arg(long)]
    daemon_only: bool,
    /// Also flush into the daemon of this routeguard binary (e.g. main's, built into a directory
    /// of its own), just before the one benched: the two side by side in one run.
    #[arg(long, value_name = "PATH")]
    baseline: Option<PathBuf>,
}

/// Once routeguard has as many events as removals, a count that has not grown for this long is
/// final (a duplicate would still show).
const SETTLE_QUIET: Duration = Duration::from_secs(3);
/// Short of that, wait this long after the burst's command returned: routeguard writes in bursts
/// and was seen silent for 20 s while it caught up with a million-route flush.
const SETTLE_MAX: Duration = Duration::from_secs(60);
/// routeguard writes out what it holds before it exits on SIGINT.
const EXIT_TIMEOUT: Duration = Duration::from_secs(60);
/// `ip monitor` prints nothing when ready; its socket is joined well within this.
const MONITOR_START: Duration = Duration::from_millis(500);

pub fn run(args: &Args) -> Result<()> {
    interrupt::install();
    let bin = super::routeguard_bin(args.bin.as_deref())?;
    ensure!(
        cmd::is_root(),
        "the loss bench creates a network namespace and loads eBPF programs: run it as root"
    );
    let dir = super::bench_dir()?;
    let fill_file = dir.join("loss-fill.batch");
    let add_file = dir.join("loss-add.batch");
    let del_file = dir.join("loss-del.batch");
    // The fill's deletions are never run (the flush removes them); a scratch file.
    write_batches(args.routes, &fill_file, &dir.join("loss-fill-del.batch"))?;
    write_batches(args.deletes, &add_file, &del_file)?;

    let ns = Netns::create(&format!("rg-loss-{}", std::process::id()))?;
    add_link(&ns)?;
    ns.ip(&["addr", "add", "10.255.0.1/16", "dev", "d0"])?;
    let listeners = if args.daemon_only {
        String::new()
    } else {
        format!(
            "routeguard `trace --json --netns {0}` (its default ring) and `ip -n {0} monitor \
             route` side by side, then ",
            ns.name()
        )
    };
    println!(
        "bench loss: netns {}, {listeners}`routeguard daemon` (its default config){}; {} run(s); \
         load average {}",
        ns.name(),
        if args.baseline.is_some() {
            ", the baseline's then the benched one's"
        } else {
            ""
        },
        args.runs,
        load_average()
    );

    for run in 1..=args.runs {
        if !args.daemon_only {
            traced(&bin, &ns, &dir, args, run, &fill_file, &add_file, &del_file)?;
        }
        let arms = args.baseline.iter().map(|b| ("baseline", b.as_path()));
        for (name, bin) in arms.chain([("benched", bin.as_path())]) {
            interrupt::check()?;
            fill(
                &ns,
                &fill_file,
                args.routes,
                &format!("run {run} (c) daemon, {name} {}", bin.display()),
            )?;
            into_daemon::flush(bin, &ns, &dir, u64::from(args.routes))?;
        }
    }
    Ok(())
}

/// The first two bursts of a run, under `routeguard trace`.
#[allow(clippy::too_many_arguments)] // reason: one run's files and names, passed straight through
fn traced(
    bin: &Path,
    ns: &Netns,
    dir: &Path,
    args: &Args,
    run: u32,
    fill_file: &Path,
    add_file: &Path,
    del_file: &Path,
) -> Result<()> {
    interrupt::check()?;
    fill(ns, fill_file, args.routes, &format!("run {run} (a) flush"))?;
    let seen = observe(bin, ns, dir, "flush", u64::from(args.routes), || flush(ns))?;
    seen.print(u64::from(args.routes), "`ip route flush table 100`");

    interrupt::check()?;
    ns.ip(&["-batch", path_str(add_file)?])?;
    println!(
        "run {run} (b) batch delete: {} routes added to table {TABLE}",
        args.deletes
    );
    let seen = observe(bin, ns, dir, "batch", u64::from(args.deletes), || {
        ns.ip(&["-batch", path_str(del_file)?])
    })?;
    seen.print(u64::from(args.deletes), "`ip -batch` (route del lines)");
    Ok(())
}

/// Adds the table's routes from `fill_file`, saying how long it took.
fn fill(ns: &Netns, fill_file: &Path, routes: u32, what: &str) -> Result<()> {
    let start = Instant::now();
    ns.ip(&["-batch", path_str(fill_file)?])?;
    println!(
        "{what}: {routes} routes added to table {TABLE} in {:.1} s",
        start.elapsed().as_secs_f64()
    );
    Ok(())
}

/// What one burst looked like from both listeners.
struct Seen {
    action: Duration,
    /// Routes still in table 100 after the burst's command returned.
    left: u64,
    /// From the start of the burst to routeguard's last new event.
    routeguard_done: Duration,
    report: TracerReport,
    events: EventCounts,
    monitor: MonitorCounts,
    /// The load average when the burst's command returned.
    load: String,
}

impl Seen {
    fn print(&self, added: u64, what: &str) {
        let expected = added - self.left.min(added);
        println!(
            "  {what} took {:.2} s ({:.0} deletions/s; load average {}){}; routeguard's last \
             event {:.2} s after it started",
            self.action.as_secs_f64(),
            rate(expected, self.action),
            self.load,
            if self.left > 0 {
                format!(", {} routes left in the table", self.left)
            } else {
                String::new()
            },
            self.routeguard_done.as_secs_f64()
        );
        println!(
            "  expected {expected}, routeguard saw {} (lost {}), ip monitor saw {}",
            self.events.table_routes,
            self.report.lost_display(),
            self.monitor.deleted
        );
        println!(
            "  routeguard: ring {}; summary {} events, {} lost; {} distinct prefixes; outcome {}; \
             cause {}",
            self.report
                .ring_kib
                .map_or_else(|| "?".to_owned(), |kib| format!("{kib} KiB")),
            self.report
                .summary_events
                .map_or_else(|| "?".to_owned(), |e| e.to_string()),
            self.report.lost_display(),
            self.events.distinct,
            tally(&self.events.outcomes),
            tally(&self.events.causes)
        );
        println!(
            "  evidence: {}",
            self.report
                .outcomes
                .as_ref()
                .map_or_else(|| "n/a".to_owned(), ToString::to_string)
        );
        if self.events.other > 0 {
            println!(
                "  routeguard: {} other events (not kind route in table {TABLE})",
                self.events.other
            );
        }
        let removed = self.events.outcomes.get("removed").copied().unwrap_or(0);
        let met = self.events.table_routes == expected && removed == expected;
        println!(
            "  target (every deletion seen and `removed`): {}",
            if met {
                "met".to_owned()
            } else {
                format!(
                    "not met: {} of {expected} seen, {removed} `removed`",
                    self.events.table_routes
                )
            }
        );
        if self.events.table_routes < expected {
            println!(
                "  routeguard MISSED {} of {expected} removals beyond the {} it counted as lost",
                expected - self.events.table_routes,
                self.report.lost_display()
            );
        }
        if !self.monitor.stderr.is_empty() {
            println!(
                "  ip monitor stderr ({} lines): {}",
                self.monitor.stderr.len(),
                self.monitor.stderr[0]
            );
        }
    }
}

/// Starts both listeners, runs `action`, waits until routeguard's and ip monitor's counts stop
/// growing (at most [`SETTLE_MAX`] after `action` returned), stops both and counts.
fn observe(
    bin: &Path,
    ns: &Netns,
    dir: &Path,
    label: &str,
    added: u64,
    action: impl FnOnce() -> Result<()>,
) -> Result<Seen> {
    let trace_path = dir.join(format!("loss-{label}-trace.jsonl"));
    let monitor_path = dir.join(format!("loss-{label}-monitor.txt"));
    let tracer = Tracer::start_with(bin, ns.name(), &trace_path, &["--json"])?;
    let monitor = Monitor::start(ns, &monitor_path)?;
    thread::sleep(MONITOR_START);

    let start = Instant::now();
    action()?;
    let action_time = start.elapsed();
    let load = load_average();
    let left = count_table_routes(ns)?;
    let expected = added - left.min(added);

    let mut traced = LineCounter::open(&trace_path)?;
    let mut monitored = LineCounter::open(&monitor_path)?;
    let (mut last, mut last_change) = ((0, 0), Instant::now());
    let mut routeguard_done = action_time;
    let settle_deadline = Instant::now() + SETTLE_MAX;
    loop {
        interrupt::check()?;
        let now = (traced.update()?, monitored.update()?);
        if now != last {
            if now.0 != last.0 {
                routeguard_done = start.elapsed();
            }
            last = now;
            last_change = Instant::now();
        }
        // ip monitor may never catch up (it loses on ENOBUFS); routeguard must.
        let caught_up = last.0 >= expected;
        if (caught_up && last_change.elapsed() >= SETTLE_QUIET) || Instant::now() >= settle_deadline
        {
            break;
        }
        thread::sleep(Duration::from_millis(200));
    }
    let report = tracer.stop_within(EXIT_TIMEOUT)?;
    let monitor_stderr = monitor.stop()?;
    Ok(Seen {
        action: action_time,
        left,
        routeguard_done,
        report,
        events: EventCounts::read(&trace_path)?,
        monitor: MonitorCounts::read(&monitor_path, monitor_stderr)?,
        load,
    })
}

/// `ip route flush table 100`. iproute2 gives up after 30 s ("Flush not completed after N
/// seconds"); what it left is counted afterwards, so that is reported, not an error.
fn flush(ns: &Netns) -> Result<()> {
    let out = cmd::capture(&mut flush_command(ns))?;
    let said = String::from_utf8_lossy(&out.stdout).trim().to_owned()
        + String::from_utf8_lossy(&out.stderr).trim();
    if !out.status.success() || !said.is_empty() {
        println!("  ip route flush ({}): {said}", out.status);
    }
    Ok(())
}

/// `ip -n <ns> route flush table 100`.
fn flush_command(ns: &Netns) -> Command {
    let mut flush = Command::new("ip");
    flush.args(["-n", ns.name(), "route", "flush", "table", TABLE]);
    flush
}

fn count_table_routes(ns: &Netns) -> Result<u64> {
    let out = cmd::stdout_of(Command::new("ip").args([
        "-n",
        ns.name(),
        "route",
        "show",
        "table",
        TABLE,
    ]))?;
    Ok(out.lines().count() as u64)
}
