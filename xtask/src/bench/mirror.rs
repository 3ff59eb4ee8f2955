//! The mirror bench: memory of routeguard's netlink mirror per route. `routeguard trace` runs
//! once against an empty namespace and once against one holding N routes; the difference of
//! the settled resident sizes, divided by N, is the cost of one mirrored route. (The mirror
//! also holds the host's routes in both runs; the difference cancels them.)
use std::{
    path::{Path, PathBuf},
    thread,
    time::{Duration, Instant},
};

use anyhow::{ensure, Result};

use super::{
    procfs,
    routes::{add_link, path_str, rate, write_batches},
    tracer::Tracer,
};
use crate::{cmd, interrupt, netns::Netns};

#[derive(clap::Args)]
pub struct Args {
    /// Routes in the full namespace.
    #[arg(long, default_value_t = 1_000_000, value_parser = clap::value_parser!(u32).range(1..=16_000_000))]
    routes: u32,
    /// Bench this routeguard binary instead of building target/release/routeguard.
    #[arg(long, value_name = "PATH")]
    bin: Option<PathBuf>,
}

const SAMPLE_EVERY: Duration = Duration::from_millis(200);
/// RSS that has not reached a new high for this long has settled.
const SETTLE_QUIET: Duration = Duration::from_secs(3);
const SETTLE_MAX: Duration = Duration::from_secs(300);

pub fn run(args: &Args) -> Result<()> {
    interrupt::install();
    let bin = super::routeguard_bin(args.bin.as_deref())?;
    ensure!(
        cmd::is_root(),
        "the mirror bench creates network namespaces and loads eBPF programs: run it as root"
    );
    let dir = super::bench_dir()?;
    let add_file = dir.join("mirror-add.batch");
    write_batches(args.routes, &add_file, &dir.join("mirror-del.batch"))?;

    println!(
        "bench mirror: `routeguard trace --netns NS`, resident size once settled, empty netns vs \
         {} routes",
        args.routes
    );
    let empty = measure(&bin, &dir, None)?;
    empty.print("empty netns");
    let full = measure(&bin, &dir, Some((&add_file, args.routes)))?;
    full.print(&format!("{} routes", args.routes));
    let n = f64::from(args.routes);
    println!(
        "bytes per route: {:.0} (settled RSS), {:.0} (peak RSS); load average {}",
        (full.rss_kib as f64 - empty.rss_kib as f64) * 1024.0 / n,
        (full.hwm_kib as f64 - empty.hwm_kib as f64) * 1024.0 / n,
        procfs::load_average()
    );
    Ok(())
}

struct Memory {
    rss_kib: u64,
    hwm_kib: u64,
    settled: Duration,
}

impl Memory {
    fn print(&self, what: &str) {
        println!(
            "  {what}: RSS {:.1} MiB (peak {:.1} MiB), settled {:.1} s after \"tracing started\"",
            self.rss_kib as f64 / 1024.0,
            self.hwm_kib as f64 / 1024.0,
            self.settled.as_secs_f64()
        );
    }
}

/// One run in a fresh namespace (filled with the given number of routes from the batch file, if
/// given): start the tracer, wait until its RSS stops reaching new highs, read VmRSS and VmHWM,
/// stop it.
fn measure(bin: &Path, dir: &Path, add_file: Option<(&Path, u32)>) -> Result<Memory> {
    let label = if add_file.is_some() { "full" } else { "empty" };
    let ns = Netns::create(&format!("rg-mirror-{label}-{}", std::process::id()))?;
    add_link(&ns)?;
    ns.ip(&["addr", "add", "10.255.0.1/16", "dev", "d0"])?;
    if let Some((add_file, routes)) = add_file {
        let start = Instant::now();
        ns.ip(&["-batch", path_str(add_file)?])?;
        let took = start.elapsed();
        println!(
            "  {} filled in {:.1} s ({:.0} additions/s by `ip -batch`)",
            ns.name(),
            took.as_secs_f64(),
            rate(u64::from(routes), took)
        );
    }
    let out = dir.join(format!("mirror-{label}-trace.txt"));
    let tracer = Tracer::start_with(bin, ns.name(), &out, &[])?;
    let pid = tracer.pid();
    let start = Instant::now();
    let (mut high, mut last_high) = (0, Instant::now());
    loop {
        interrupt::check()?;
        let (rss, _) = procfs::memory(pid)?;
        if rss > high {
            high = rss;
            last_high = Instant::now();
        }
        if last_high.elapsed() >= SETTLE_QUIET || start.elapsed() >= SETTLE_MAX {
            break;
        }
        thread::sleep(SAMPLE_EVERY);
    }
    let settled = last_high - start;
    let (rss_kib, hwm_kib) = procfs::memory(pid)?;
    tracer.stop()?;
    Ok(Memory {
        rss_kib,
        hwm_kib,
        settled,
    })
}
