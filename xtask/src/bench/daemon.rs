//! The daemon bench: what `routeguard daemon` costs while nothing happens (resident size and CPU
//! over an idle minute), and whether it keeps up with a burst of removals (N route deletions by
//! one `ip -batch`: rows in the store, lost, peak resident size during the burst), `--runs`
//! times, each with a fresh daemon on a fresh store.
//!
//! The same deletion is first timed untraced: a traced run is a test of keeping up only if `ip`
//! went nearly as fast as it does alone (≥ 85 % of its untraced rate); a run on a machine too
//! slow or busy for that is printed but does not count.
//!
//! With `--baseline PATH` a second binary (e.g. main's build) runs the same bursts turn about
//! with the first: in each run this binary's daemon, then the baseline's, each fresh, on the
//! same routes, held to the same untraced rate; the summary gives both side by side.
//!
//! The daemon runs its default config, changed only where a bench must (store in
//! `target/bench/daemon/`, journald and metrics off, pinning off). It sees the whole host: the
//! idle figures include whatever else this machine does, so the load average is printed beside
//! them. `--capture kernel-function` on a kernel that refuses fentry (ours) runs the bench in a
//! stock Debian kernel under QEMU, as the overhead bench does.
use std::{
    fs,
    path::{Path, PathBuf},
    process::Command,
    thread,
    time::{Duration, Instant},
};

use anyhow::{bail, ensure, Context as _, Result};

use super::{
    daemon_run::{self, Burst, Daemon, Files, Patience},
    procfs::{load_average, mib},
    routes::{add_link, path_str, rate, time_deletion, write_batches},
    vm_run::{in_vm, vm_series, TraceTarget},
};
use crate::{cmd, interrupt, netns::Netns, vm};

#[derive(clap::Args)]
pub struct Args {
    /// Route removals per run [default: 100000; 20000 in a VM, which QEMU emulates slowly].
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=10_000_000))]
    removals: Option<u32>,
    /// Runs, each with a fresh daemon on a fresh store.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=100))]
    runs: u32,
    /// Seconds of idle to measure before the first run's burst (0 skips it).
    #[arg(long, default_value_t = 60)]
    idle: u64,
    /// Also run this routeguard binary (e.g. a build of main), turn about with the first in
    /// every run, and print both side by side.
    #[arg(long, value_name = "PATH")]
    baseline: Option<PathBuf>,
    #[command(flatten)]
    target: TraceTarget,
}

/// Targets from issue 16 (the resident sizes count the ring's mapping).
const IDLE_RSS_MIB: f64 = 64.0;
const IDLE_CPU_PERCENT: f64 = 0.1;
const BURST_RSS_MIB: f64 = 128.0;
/// A traced run tests keeping up only when `ip` reached this share of its untraced rate.
const COUNTS_AT: f64 = 0.85;
/// Left alone after start before the idle window opens (mirror dumps, first allocations).
const IDLE_AFTER_START: Duration = Duration::from_secs(5);
/// Between adding the routes and deleting them, untraced and traced alike: the kernel's work
/// the additions deferred is done before the clock starts.
const SETTLE: Duration = Duration::from_secs(2);
const PATIENCE: Patience = Patience {
    stalled: Duration::from_secs(15),
    timeout: Duration::from_secs(600),
};

pub fn run(args: &Args) -> Result<()> {
    interrupt::install();
    let bin = super::routeguard_bin(args.target.bin.as_deref())?;
    ensure!(
        cmd::is_root(),
        "the daemon bench loads eBPF programs and creates a network namespace: run it as root"
    );
    let baseline = args
        .baseline
        .as_deref()
        .map(|b| fs::canonicalize(b).with_context(|| format!("--baseline {}", b.display())))
        .transpose()?;
    let series = vm_series(args.target.vm.as_deref(), &args.target.capture, &bin)?;
    let removals = args
        .removals
        .unwrap_or(if series.is_some() || vm::in_guest() {
            20_000
        } else {
            100_000
        });
    if let Some(series) = series {
        ensure!(
            baseline.is_none(),
            "--baseline is not supported with --vm: run the baseline's bench in the guest separately"
        );
        let argv = vec![
            format!("--removals={removals}"),
            format!("--runs={}", args.runs),
            format!("--idle={}", args.idle),
            format!("--capture={}", args.target.capture),
        ];
        return in_vm("daemon", &argv, series, &bin);
    }

    let dir = super::bench_dir()?.join("daemon");
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let (add_file, del_file) = (dir.join("add.batch"), dir.join("del.batch"));
    write_batches(removals, &add_file, &del_file)?;
    let ns = Netns::create(&format!("rg-daemon-{}", std::process::id()))?;
    add_link(&ns)?;
    println!(
        "bench daemon: `routeguard daemon` (default config; store in {}/run-N, journald, \
         metrics and pinning off; capture {}), {} run(s) of {removals} removals by `ip -batch` \
         in netns {}; load average {}",
        dir.display(),
        args.target.capture,
        args.runs,
        ns.name(),
        load_average()
    );

    // Warm-up (untimed), then the untraced rate every traced run is held to.
    ns.ip(&["-batch", path_str(&add_file)?])?;
    ns.ip(&["-batch", path_str(&del_file)?])?;
    ns.ip(&["-batch", path_str(&add_file)?])?;
    thread::sleep(SETTLE);
    let took = time_deletion(&ns, &del_file)?;
    let untraced = rate(u64::from(removals), took);
    println!(
        "untraced: `ip -batch` deleted {removals} routes in {:.2} s: {untraced:.0} deletions/s; \
         a traced run counts if `ip` reaches ≥ {:.0}/s ({:.0} %); load average {}",
        took.as_secs_f64(),
        untraced * COUNTS_AT,
        COUNTS_AT * 100.0,
        load_average()
    );

    // The binaries benched: this one, then the baseline, turn about in every run.
    let mut bins = vec![("this", bin.clone())];
    if let Some(base) = baseline {
        println!("bench daemon: this     {}", bin.display());
        println!("bench daemon: baseline {}", base.display());
        bins.push(("baseline", base));
    }
    let run = Run {
        ns: &ns,
        add_file: &add_file,
        del_file: &del_file,
        removals,
        untraced,
    };
    let mut verdicts: Vec<Vec<Verdict>> = bins.iter().map(|_| Vec::new()).collect();
    for i in 1..=args.runs {
        for ((label, bin), verdicts) in bins.iter().zip(&mut verdicts) {
            interrupt::check()?;
            let files = Files::create(&dir.join(format!("run-{i}-{label}")), &args.target.capture)?;
            let idle = if i == 1 { args.idle } else { 0 };
            verdicts.push(run.once(i, args.runs, (label, bin), &files, idle)?);
        }
    }
    for ((label, _), verdicts) in bins.iter().zip(&verdicts) {
        summary(label, verdicts, args.runs, removals, untraced);
    }
    Ok(())
}

/// One binary's runs in one line: how many stored all, how many counted, the peak RSS.
fn summary(label: &str, verdicts: &[Verdict], runs: u32, removals: u32, untraced: f64) {
    let all = verdicts.iter().filter(|v| v.kept_up).count();
    let counted: Vec<&Verdict> = verdicts.iter().filter(|v| v.counts).collect();
    let peaks: Vec<f64> = verdicts.iter().map(|v| v.peak_mib).collect();
    let (lo, hi) = peaks
        .iter()
        .fold((f64::MAX, 0.0_f64), |(lo, hi), p| (lo.min(*p), hi.max(*p)));
    let rates: Vec<String> = verdicts
        .iter()
        .map(|v| format!("{:.0}", v.ip_rate))
        .collect();
    println!(
        "daemon bench ({label}): {all} of {runs} runs stored all {removals} with 0 lost; {} of \
         {runs} counted (`ip` ≥ {:.0} % of its untraced {untraced:.0} deletions/s; traced: {} /s), \
         of which {} stored all with 0 lost (target: 3 of 3 runs counted, each storing all with \
         0 lost); burst peak RSS {lo:.1}-{hi:.1} MiB (target ≤ {BURST_RSS_MIB} MiB); load \
         average {}",
        counted.len(),
        COUNTS_AT * 100.0,
        rates.join(", "),
        counted.iter().filter(|v| v.kept_up).count(),
        load_average()
    );
}

/// What every run shares.
struct Run<'a> {
    ns: &'a Netns,
    add_file: &'a Path,
    del_file: &'a Path,
    removals: u32,
    /// `ip`'s untraced rate, deletions/s.
    untraced: f64,
}

/// How one run went.
struct Verdict {
    /// Every removal stored, 0 lost.
    kept_up: bool,
    /// `ip` went fast enough for the run to test keeping up.
    counts: bool,
    /// The daemon's highest VmRSS during the burst.
    peak_mib: f64,
    /// `ip`'s rate under the daemon, deletions/s.
    ip_rate: f64,
}

impl Run<'_> {
    /// A fresh daemon: idle (when asked), then the burst, then stopped.
    fn once(
        &self,
        i: u32,
        runs: u32,
        (label, bin): (&str, &Path),
        files: &Files,
        idle_secs: u64,
    ) -> Result<Verdict> {
        let daemon = Daemon::start(bin, &files.config)?;
        println!(
            "run {i} of {runs} ({label}): daemon started (capture {}): {}; load average {}",
            daemon.started.capture.as_deref().unwrap_or("?"),
            daemon.started.bounds(),
            load_average()
        );
        if idle_secs > 0 {
            idle(&daemon, Duration::from_secs(idle_secs))?;
        } else if i == 1 {
            println!("idle: skipped (--idle 0)");
        }
        self.ns.ip(&["-batch", path_str(self.add_file)?])?;
        thread::sleep(SETTLE);
        daemon.settle()?;
        let mut delete = Command::new("ip");
        delete.args(["-n", self.ns.name(), "-batch", path_str(self.del_file)?]);
        let shown = cmd::display(&delete);
        let n = u64::from(self.removals);
        let log = files.store.with_file_name("ip.log");
        let burst = daemon_run::burst(&daemon, &files.store, delete, &log, || Ok(n), &PATIENCE)?;
        if !burst.status.success() {
            bail!("`{shown}` failed ({}): {}", burst.status, burst.said);
        }
        let ip_rate = rate(n, burst.took);
        self.print_ingest(&burst, ip_rate);
        println!("{}", burst.peak_line(Some(BURST_RSS_MIB)));
        let stopped = daemon.stop()?;
        println!(
            "lost (ring buffer full), whole run: {}{}",
            stopped.lost,
            stopped
                .breakdown
                .as_ref()
                .map_or_else(String::new, |b| format!(" ({b})"))
        );
        if let Some(sinks) = &stopped.sinks {
            println!("daemon: sinks: {sinks}");
        }
        let share = ip_rate / self.untraced;
        let counts = share >= COUNTS_AT;
        if counts {
            println!(
                "run {i} ({label}) counts: `ip` reached {ip_rate:.0} deletions/s, {:.0} % of its untraced \
                 {:.0}/s",
                share * 100.0,
                self.untraced
            );
        } else {
            println!(
                "run {i} ({label}) does not count: `ip` reached {ip_rate:.0} deletions/s, {:.0} % of its \
                 untraced {:.0}/s (under {:.0} %): the machine was too slow or busy for this run \
                 to test keeping up",
                share * 100.0,
                self.untraced,
                COUNTS_AT * 100.0
            );
        }
        Ok(Verdict {
            kept_up: burst.stored >= n
                && !burst.stalled
                && stopped.lost == 0
                && !stopped.sinks_missed(),
            counts,
            peak_mib: mib(burst.peak_rss_kib),
            ip_rate,
        })
    }

    fn print_ingest(&self, burst: &Burst, ip_rate: f64) {
        let n = self.removals;
        let ip = format!(
            "{:.1} s, {ip_rate:.0} deletions/s, {:.0} % of untraced",
            burst.took.as_secs_f64(),
            ip_rate / self.untraced * 100.0
        );
        if burst.stored < burst.expected {
            // Lost on the way (the daemon's count of lost records follows): say so, not hang.
            println!(
                "ingest: {n} route removals by `ip -batch` ({ip}); only {} of {n} route removals \
                 stored; none more for {:?}; load average {}",
                burst.stored,
                PATIENCE.stalled,
                load_average()
            );
            return;
        }
        println!(
            "ingest: {n} route removals by `ip -batch` ({ip}); all {} stored {:.1} s after it \
             began: {:.0} events/s end to end; daemon {}; load average {}",
            burst.stored,
            burst.stored_in.as_secs_f64(),
            rate(burst.stored, burst.stored_in),
            burst.memory.map_or_else(
                || "memory unknown".to_owned(),
                |(rss, hwm)| format!("RSS {:.1} MiB (peak {:.1} MiB)", mib(rss), mib(hwm))
            ),
            load_average()
        );
    }
}

/// Resident size and CPU time of the daemon over `window`, nothing done meanwhile.
fn idle(daemon: &Daemon, window: Duration) -> Result<()> {
    thread::sleep(IDLE_AFTER_START);
    let (cpu0, t0) = (daemon.cpu_time()?, Instant::now());
    while t0.elapsed() < window {
        interrupt::check()?;
        thread::sleep(Duration::from_millis(200));
    }
    let (cpu1, elapsed) = (daemon.cpu_time()?, t0.elapsed());
    let cpu = (cpu1 - cpu0).as_secs_f64() / elapsed.as_secs_f64() * 100.0;
    let (rss, hwm) = daemon.memory()?;
    println!(
        "idle {:.0} s: RSS {:.1} MiB (VmHWM {:.1} MiB, start-up included; target < \
         {IDLE_RSS_MIB} MiB), CPU {cpu:.3} % (target < {IDLE_CPU_PERCENT} %); load average \
         after: {}",
        elapsed.as_secs_f64(),
        mib(rss),
        mib(hwm),
        load_average()
    );
    Ok(())
}
