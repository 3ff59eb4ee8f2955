//! The syscalls bench: what tracing adds to syscalls that have nothing to do with routing.
//!
//! routeguard has to find the few requests that remove routes among everything the machine
//! does. The syscall path hooks every syscall (raw tracepoints `sys_enter`/`sys_exit`), so every
//! process pays for it; the kernel-function path hooks rtnetlink and socket ioctls only. This
//! bench times tight loops of `getppid`, `read(/dev/zero, 1)` and `write(/dev/null, 1)`,
//! untraced (A) and under `routeguard trace` (B), alternated, and prints the ratios.
//!
//! `--capture kernel-function` on a kernel that refuses fentry (ours) runs in a stock Debian
//! kernel under QEMU, as the overhead bench does.
use std::{
    fs::File,
    io::{Read as _, Write as _},
    time::{Duration, Instant},
};

use anyhow::{ensure, Context as _, Result};

use super::{
    tracer::Tracer,
    vm_run::{self, TraceTarget},
};
use crate::{cmd, interrupt, netns::Netns, setup, vm};

#[derive(clap::Args)]
pub struct Args {
    /// Calls of each syscall per timed loop.
    #[arg(long, default_value_t = 1_000_000, value_parser = clap::value_parser!(u32).range(1000..=100_000_000))]
    calls: u32,
    /// Number of (untraced, traced) pairs.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..=100))]
    pairs: u32,
    #[command(flatten)]
    traced: TraceTarget,
}

/// The loops, in the order they are printed.
const LOOPS: [&str; 3] = ["getppid", "read", "write"];

pub fn run(args: &Args) -> Result<()> {
    interrupt::install();
    if !vm::in_guest() {
        setup::run(setup::Options::default())?;
    }
    let bin = super::routeguard_bin(args.traced.bin.as_deref())?;
    ensure!(
        cmd::is_root(),
        "the syscalls bench loads eBPF programs: run it as root"
    );
    if let Some(series) = vm_run::vm_series(args.traced.vm.as_deref(), &args.traced.capture, &bin)?
    {
        let argv = vec![
            format!("--calls={}", args.calls),
            format!("--pairs={}", args.pairs),
            format!("--capture={}", args.traced.capture),
        ];
        return vm_run::in_vm("syscalls", &argv, series, &bin);
    }
    let dir = super::bench_dir()?;
    let trace_file = dir.join("syscalls-trace.jsonl");
    // The tracer watches a namespace of its own: nothing happens there, so what it costs is
    // what finding nothing costs.
    let ns = Netns::create(&format!("rg-sysbench-{}", std::process::id()))?;
    println!(
        "bench syscalls: {} calls of each of {} per loop, {} pair(s), capture {}",
        args.calls,
        LOOPS.join(", "),
        args.pairs,
        args.traced.capture
    );
    let mut files = Files::open()?;
    files.time(args.calls.min(10_000))?; // warm-up
    let mut pairs = Vec::new();
    for pair in 1..=args.pairs {
        interrupt::check()?;
        let untraced = files.time(args.calls)?;
        let extra = ["--json", "--capture", args.traced.capture.as_str()];
        let tracer = Tracer::start_with(&bin, ns.name(), &trace_file, &extra)?;
        let traced = files.time(args.calls)?;
        tracer.stop()?;
        let cells: Vec<String> = LOOPS
            .iter()
            .enumerate()
            .map(|(i, name)| {
                format!(
                    "{name} {:.0}/{:.0} ns ({:.2})",
                    untraced[i],
                    traced[i],
                    traced[i] / untraced[i]
                )
            })
            .collect();
        println!("pair {pair}: A/B {}", cells.join("  "));
        pairs.push((untraced, traced));
    }
    let medians: Vec<String> = LOOPS
        .iter()
        .enumerate()
        .map(|(i, name)| {
            let a = median(pairs.iter().map(|(a, _)| a[i]).collect());
            let b = median(pairs.iter().map(|(_, b)| b[i]).collect());
            format!("{name} {a:.0} → {b:.0} ns ({:.2})", b / a)
        })
        .collect();
    println!(
        "median per call, untraced → traced (B/A): {}   (capture {}; load average {})",
        medians.join(", "),
        args.traced.capture,
        super::procfs::load_average()
    );
    Ok(())
}

/// The files the read and write loops use.
struct Files {
    zero: File,
    null: File,
}

impl Files {
    fn open() -> Result<Self> {
        Ok(Self {
            zero: File::open("/dev/zero").context("opening /dev/zero")?,
            null: File::options()
                .write(true)
                .open("/dev/null")
                .context("opening /dev/null")?,
        })
    }

    /// Nanoseconds per call of each loop.
    fn time(&mut self, calls: u32) -> Result<[f64; 3]> {
        let mut byte = [0u8; 1];
        let per_call = |elapsed: Duration| elapsed.as_nanos() as f64 / f64::from(calls);
        let start = Instant::now();
        for _ in 0..calls {
            // SAFETY: getppid has no arguments and cannot fail.
            unsafe { libc::getppid() };
        }
        let getppid = per_call(start.elapsed());
        let start = Instant::now();
        for _ in 0..calls {
            self.zero
                .read_exact(&mut byte)
                .context("reading /dev/zero")?;
        }
        let read = per_call(start.elapsed());
        let start = Instant::now();
        for _ in 0..calls {
            self.null.write_all(&byte).context("writing /dev/null")?;
        }
        let write = per_call(start.elapsed());
        Ok([getppid, read, write])
    }
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}
