//! The overhead bench: in a network namespace of its own, delete N routes with `ip -batch` in
//! three arms and compare the deletion times: A untraced, F the physical floor (`routeguard
//! trace` with `ROUTEGUARD_BENCH_FLOOR=1`: its programs attached to exactly the hooks of B,
//! each returning at once), B traced. B/F is what routeguard adds beyond the price of the hooks
//! themselves; B/A what it costs in all. The arms alternate within each pair, their order
//! rotating so none always goes first.
//!
//! Only the deletion is timed; the routes are added (untimed) before each run, and for F and B
//! the tracer is started and ready before the clock starts. Every run's clock starts the same
//! settle time after its additions (the tracer's start-up, measured once, and a second), so the
//! untraced run does not pay for work the additions deferred while the traced one waited for
//! its tracer.
//!
//! `--orphan` adds a fourth arm, O: no tracer, but the capture a `routeguard daemon` pinned and
//! nobody reads any more, orphaned (see `orphan`); O/A should be no more than F/A.
//!
//! `--capture kernel-function` on a kernel that refuses fentry (ours) runs the whole bench in a
//! stock Debian kernel under QEMU (`--vm`, as `cargo xtask vm-test`).
mod orphan;
mod print;

use std::{
    path::Path,
    time::{Duration, Instant, SystemTime},
};

use anyhow::{ensure, Context as _, Result};

use super::{
    bpf_stats,
    procfs::load_average,
    routes::{add_link, path_str, time_deletion, write_batches},
    tracer::{Tracer, TracerReport},
    vm_run::{in_vm, vm_series, TraceTarget},
};
use crate::{cmd, interrupt, netns::Netns, setup, vm};

#[derive(clap::Args)]
pub struct Args {
    /// Number of routes deleted per run.
    #[arg(long, default_value_t = 100_000, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    routes: u32,
    /// Number of rounds, each one run of every arm (untraced, floor, traced).
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..=100))]
    pairs: u32,
    #[command(flatten)]
    traced: TraceTarget,
    /// Add an arm O: an orphaned capture (a daemon's pins nobody reads, after its
    /// `capture.orphan_after`), beside A, F and B (syscall path only: the one that pins).
    #[arg(long)]
    orphan: bool,
    /// Only the untraced runs (no routeguard needed): checks the harness itself.
    #[arg(long, hide = true)]
    untraced_only: bool,
}

/// Set for routeguard in the floor arm: it attaches every program to the same hooks as it
/// otherwise would, each returning at once.
const FLOOR_ENV: &str = "ROUTEGUARD_BENCH_FLOOR";

/// Added to the tracer's start-up to make the settle time before each timed run.
const SETTLE_MARGIN: Duration = Duration::from_secs(1);

/// The arms of a round.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Arm {
    /// A: untraced.
    Untraced,
    /// F: routeguard with every program returning at once.
    Floor,
    /// B: routeguard.
    Traced,
    /// O: an orphaned pinned capture, no routeguard running.
    Orphan,
}

impl Arm {
    fn letter(self) -> char {
        match self {
            Arm::Untraced => 'A',
            Arm::Floor => 'F',
            Arm::Traced => 'B',
            Arm::Orphan => 'O',
        }
    }
}

/// The order of round `round` (from 1): A F B, then F B A, then B A F, and again (with O: A F
/// B O, F B O A, …).
fn order(round: u32, untraced_only: bool, orphan: bool) -> Vec<Arm> {
    if untraced_only {
        return vec![Arm::Untraced];
    }
    let mut arms = vec![Arm::Untraced, Arm::Floor, Arm::Traced];
    if orphan {
        arms.push(Arm::Orphan);
    }
    let len = arms.len();
    arms.rotate_left((round as usize - 1) % len);
    arms
}

/// An O run: the deletion's time and the orphan's programs' own run time and runs.
struct Orphaned {
    elapsed: Duration,
    kernel: Option<(Duration, u64)>,
}

impl Orphaned {
    /// The programs' in-kernel time per deletion, in µs.
    fn kernel_us(&self, n: u32) -> Option<f64> {
        self.kernel
            .map(|(time, _)| time.as_secs_f64() * 1e6 / f64::from(n))
    }
}

/// A run under routeguard (F or B): the deletion's time, what the tracer reported, and the
/// programs' own run time and runs during the deletion (when the kernel keeps statistics).
struct Traced {
    elapsed: Duration,
    report: TracerReport,
    kernel: Option<(Duration, u64)>,
}

impl Traced {
    /// The programs' in-kernel time per deletion, in µs.
    fn kernel_us(&self, n: u32) -> Option<f64> {
        self.kernel
            .map(|(time, _)| time.as_secs_f64() * 1e6 / f64::from(n))
    }
}

/// One round: each arm's run, in the order they ran.
struct Round {
    order: Vec<Arm>,
    untraced: Duration,
    floor: Option<Traced>,
    traced: Option<Traced>,
    orphan: Option<Orphaned>,
    /// The 1-minute load average after the round.
    load: String,
}

pub fn run(args: &Args) -> Result<()> {
    interrupt::install();
    if !vm::in_guest() {
        setup::run(setup::Options::default())?;
    }
    let bin = match (&args.traced.bin, args.untraced_only) {
        (_, true) => None,
        (bin, false) => Some(super::routeguard_bin(bin.as_deref())?),
    };
    ensure!(
        cmd::is_root(),
        "the overhead bench creates a network namespace and loads eBPF programs: run it as root"
    );
    let series = match &bin {
        Some(bin) => vm_series(args.traced.vm.as_deref(), &args.traced.capture, bin)?,
        None => None,
    };
    if let Some(series) = series {
        let bin = bin.context("a VM run benches routeguard: drop --untraced-only")?;
        let argv = vec![
            format!("--routes={}", args.routes),
            format!("--pairs={}", args.pairs),
            format!("--capture={}", args.traced.capture),
        ];
        let mut argv = argv;
        if args.orphan {
            argv.push("--orphan".to_owned());
        }
        return in_vm("overhead", &argv, series, &bin);
    }

    let dir = super::bench_dir()?;
    let add_file = dir.join("overhead-add.batch");
    let del_file = dir.join("overhead-del.batch");
    let trace_file = dir.join("overhead-trace.jsonl");
    write_batches(args.routes, &add_file, &del_file)?;

    let ns = Netns::create(&format!("rg-bench-{}", std::process::id()))?;
    add_link(&ns)?;
    ns.ip(&["addr", "add", "10.255.0.1/16", "dev", "d0"])?;

    println!(
        "bench overhead: deleting {} routes with `ip -batch` in netns {}, {} round(s){}; load \
         average {}",
        args.routes,
        ns.name(),
        args.pairs,
        if args.untraced_only {
            " (untraced only)".to_owned()
        } else {
            format!(
                " of A untraced, F floor (routeguard with {FLOOR_ENV}=1: the same hooks, each \
                 returning at once), B traced, the order rotating"
            )
        },
        load_average()
    );
    // Warm-up (untimed): first-touch allocations in the kernel's FIB and page cache.
    ns.ip(&["-batch", path_str(&add_file)?])?;
    ns.ip(&["-batch", path_str(&del_file)?])?;

    // The kernel's run-time accounting of the programs: their own cost, apart from the tracer's
    // userspace competing for the CPUs. It adds a clock read per program run, so F and B are,
    // if anything, overstated.
    let stats = bin.as_ref().map(|_| bpf_stats::collect());
    if let Some(Err(why)) = &stats {
        println!("bench overhead: no in-kernel figures ({why})");
    }
    let extra = ["--json", "--capture", args.traced.capture.as_str()];
    // A traced run's clock starts once its tracer is ready, seconds after its routes were
    // added, while the kernel finishes the work their addition deferred; an untraced run timed
    // at once would pay for that and flatter B/A. So every run starts the same time after its
    // additions: the tracer's start-up (measured once here, untimed) and a margin.
    let settle = match &bin {
        None => SETTLE_MARGIN,
        Some(bin) => {
            let started = Instant::now();
            let tracer = Tracer::start_with(bin, ns.name(), &trace_file, &extra)?;
            let startup = started.elapsed();
            tracer.finish(0)?;
            startup + SETTLE_MARGIN
        }
    };
    println!(
        "bench overhead: each run's clock starts {:.1} s after its routes were added (the \
         tracer's start-up and {} s)",
        settle.as_secs_f64(),
        SETTLE_MARGIN.as_secs()
    );
    let traced_run = TracedRun {
        ns: &ns,
        del_file: &del_file,
        trace_file: &trace_file,
        extra: &extra,
        settle,
        stats: matches!(stats, Some(Ok(_))),
        n: args.routes,
    };
    let mut rounds = Vec::new();
    for round in 1..=args.pairs {
        let order = order(round, args.untraced_only, args.orphan);
        let (mut untraced, mut floor, mut traced, mut orphaned) =
            (Duration::ZERO, None, None, None);
        for &arm in &order {
            interrupt::check()?;
            if let (Arm::Orphan, Some(bin)) = (arm, &bin) {
                orphaned = Some(traced_run.orphan(bin, &add_file, &dir)?);
                continue;
            }
            ns.ip(&["-batch", path_str(&add_file)?])?;
            match (arm, &bin) {
                (Arm::Untraced, _) | (_, None) => {
                    settle_after(Instant::now(), settle);
                    untraced = time_deletion(&ns, &del_file)?;
                }
                (Arm::Floor, Some(bin)) => {
                    floor = Some(traced_run.run(bin, round, Arm::Floor, false)?);
                }
                (Arm::Traced, Some(bin)) => {
                    let last = round == args.pairs;
                    traced = Some(traced_run.run(bin, round, Arm::Traced, last)?);
                }
                (Arm::Orphan, Some(_)) => unreachable!("run above"),
            }
        }
        let round = Round {
            order,
            untraced,
            floor,
            traced,
            orphan: orphaned,
            load: super::procfs::load_average_1m(),
        };
        print::round(rounds.len() + 1, &round, args.routes);
        rounds.push(round);
    }
    print::summary(&rounds, args.routes, &args.traced.capture);
    Ok(())
}

/// What the F and B runs share.
struct TracedRun<'a> {
    ns: &'a Netns,
    del_file: &'a Path,
    trace_file: &'a Path,
    extra: &'a [&'a str],
    settle: Duration,
    /// Whether the kernel keeps run-time statistics of the programs.
    stats: bool,
    n: u32,
}

impl TracedRun<'_> {
    /// Starts routeguard after the (untimed) additions, ready before the clock starts, and
    /// times the deletion under it. `programs`: print each program's cost.
    fn run(&self, bin: &Path, round: u32, arm: Arm, programs: bool) -> Result<Traced> {
        let added = Instant::now();
        let since = SystemTime::now();
        let env: &[(&str, &str)] = match arm {
            Arm::Floor => &[(FLOOR_ENV, "1")],
            _ => &[],
        };
        let tracer = Tracer::start_env(bin, self.ns.name(), self.trace_file, self.extra, env)?;
        if added.elapsed() > self.settle {
            println!(
                "bench overhead: round {round} {}: the tracer took {:.1} s to start, longer than \
                 the settle time",
                arm.letter(),
                added.elapsed().as_secs_f64()
            );
        }
        settle_after(added, self.settle);
        let before = bpf_stats::by_program(since);
        let elapsed = time_deletion(self.ns, self.del_file)?;
        let during = bpf_stats::delta(&before, bpf_stats::by_program(since));
        let kernel = self.stats.then(|| bpf_stats::total(&during));
        if kernel.is_some() && programs {
            print::programs(&during, self.n);
        }
        // The floor reports nothing: stop it at once. B is drained until every event came.
        let expected = match arm {
            Arm::Floor => 0,
            _ => u64::from(self.n),
        };
        Ok(Traced {
            elapsed,
            report: tracer.finish(expected)?,
            kernel,
        })
    }
}

impl TracedRun<'_> {
    /// Makes an orphaned capture, adds the routes (untimed) and times their deletion with
    /// nothing but the orphan's programs attached; the pins are removed after.
    fn orphan(&self, bin: &Path, add_file: &Path, dir: &Path) -> Result<Orphaned> {
        let since = SystemTime::now();
        let orphan = orphan::Orphan::make(bin, dir)?;
        let added = Instant::now();
        self.ns.ip(&["-batch", path_str(add_file)?])?;
        settle_after(added, self.settle);
        let before = bpf_stats::by_program(since);
        let elapsed = time_deletion(self.ns, self.del_file)?;
        let during = bpf_stats::delta(&before, bpf_stats::by_program(since));
        drop(orphan);
        Ok(Orphaned {
            elapsed,
            kernel: self.stats.then(|| bpf_stats::total(&during)),
        })
    }
}

/// Sleeps until `settle` has passed since `since`.
fn settle_after(since: Instant, settle: Duration) {
    if let Some(left) = settle.checked_sub(since.elapsed()) {
        std::thread::sleep(left);
    }
}

#[cfg(test)]
mod tests {
    use super::{order, Arm};

    #[test]
    fn every_arm_takes_every_place() {
        let letters = |round| {
            order(round, false, false)
                .iter()
                .map(|a| a.letter())
                .collect()
        };
        let rounds: Vec<String> = (1..=4).map(letters).collect();
        assert_eq!(rounds, ["AFB", "FBA", "BAF", "AFB"]);
        let letters = |round| {
            order(round, false, true)
                .iter()
                .map(|a| a.letter())
                .collect()
        };
        let rounds: Vec<String> = (1..=5).map(letters).collect();
        assert_eq!(rounds, ["AFBO", "FBOA", "BOAF", "OAFB", "AFBO"]);
        assert_eq!(order(2, true, true), [Arm::Untraced]);
    }
}
