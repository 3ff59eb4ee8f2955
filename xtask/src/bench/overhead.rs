//! The overhead bench: in a network namespace of its own, delete N routes with `ip -batch`,
//! alternating untraced (A) and traced (B) runs, and compare the deletion times.
//!
//! Only the deletion is timed; the routes are added (untimed) before each run, and for B the
//! tracer is started and ready before the clock starts.
use std::{
    fmt::Write as _,
    fs,
    path::{Path, PathBuf},
    process::Command,
    time::{Duration, Instant},
};

use anyhow::{bail, ensure, Context as _, Result};

use super::tracer::{Tracer, TracerReport};
use crate::{cmd, interrupt, netns::Netns, setup};

#[derive(clap::Args)]
pub struct Args {
    /// Number of routes deleted per run.
    #[arg(long, default_value_t = 100_000, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    routes: u32,
    /// Number of (untraced, traced) pairs.
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..=100))]
    pairs: u32,
    /// Bench this routeguard binary instead of building target/release/routeguard.
    #[arg(long, value_name = "PATH")]
    bin: Option<PathBuf>,
    /// Only the untraced runs (no routeguard needed): checks the harness itself.
    #[arg(long, hide = true)]
    untraced_only: bool,
}

/// Routing table the bench fills; inside the bench's own namespace, so nothing else uses it.
pub(super) const TABLE: &str = "100";

pub fn run(args: &Args) -> Result<()> {
    interrupt::install();
    setup::run(setup::Options::default())?;
    let bin = match (&args.bin, args.untraced_only) {
        (_, true) => None,
        (bin, false) => Some(super::routeguard_bin(bin.as_deref())?),
    };
    ensure!(
        cmd::is_root(),
        "the overhead bench creates a network namespace and loads eBPF programs: run it as root"
    );

    let dir = super::bench_dir()?;
    let add_file = dir.join("overhead-add.batch");
    let del_file = dir.join("overhead-del.batch");
    let trace_file = dir.join("overhead-trace.jsonl");
    write_batches(args.routes, &add_file, &del_file)?;

    let ns = Netns::create(&format!("rg-bench-{}", std::process::id()))?;
    add_link(&ns)?;
    ns.ip(&["addr", "add", "10.255.0.1/16", "dev", "d0"])?;

    println!(
        "bench overhead: deleting {} routes with `ip -batch` in netns {}, {} pair(s){}",
        args.routes,
        ns.name(),
        args.pairs,
        if args.untraced_only {
            " (untraced only)"
        } else {
            ""
        }
    );
    // Warm-up (untimed): first-touch allocations in the kernel's FIB and page cache.
    ns.ip(&["-batch", path_str(&add_file)?])?;
    ns.ip(&["-batch", path_str(&del_file)?])?;

    let mut pairs = Vec::new();
    for pair in 1..=args.pairs {
        interrupt::check()?;
        ns.ip(&["-batch", path_str(&add_file)?])?;
        let untraced = time_deletion(&ns, &del_file)?;
        let traced = match &bin {
            None => None,
            Some(bin) => {
                interrupt::check()?;
                ns.ip(&["-batch", path_str(&add_file)?])?;
                // Started after the (untimed) additions, ready before the clock starts.
                let tracer = Tracer::start(bin, ns.name(), &trace_file)?;
                let elapsed = time_deletion(&ns, &del_file)?;
                Some((elapsed, tracer.finish(u64::from(args.routes))?))
            }
        };
        print_pair(pair, untraced, traced.as_ref(), args.routes);
        pairs.push((untraced, traced));
    }
    summarise(&pairs, args.routes);
    Ok(())
}

/// Creates the up link `d0` the routes point at: a dummy, or where the kernel has no dummy
/// driver (CONFIG_DUMMY is off on our Firecracker guests) one end of a veth pair whose peer
/// `d1` stays in the same namespace.
pub(super) fn add_link(ns: &Netns) -> Result<()> {
    if ns
        .ip_quiet(&["link", "add", "d0", "type", "dummy"])
        .is_err()
    {
        println!("bench: no dummy link driver here; using a veth pair d0/d1");
        ns.ip(&["link", "add", "d0", "type", "veth", "peer", "name", "d1"])?;
        ns.ip(&["link", "set", "d1", "up"])?;
    }
    ns.ip(&["link", "set", "d0", "up"])
}

/// Times `ip -n <ns> -batch <del_file>`, and nothing else.
fn time_deletion(ns: &Netns, del_file: &Path) -> Result<Duration> {
    let mut delete = Command::new("ip");
    delete.args(["-n", ns.name(), "-batch", path_str(del_file)?]);
    let start = Instant::now();
    let status = delete.status().context("could not start `ip -batch`")?;
    let elapsed = start.elapsed();
    interrupt::check()?;
    if !status.success() {
        bail!("`{}` failed ({status})", cmd::display(&delete));
    }
    Ok(elapsed)
}

/// Writes `route add|del 10.a.b.c/32 dev d0 table 100` lines: distinct /32s from 10.0.0.1 up,
/// inside the bench's private namespace.
pub(super) fn write_batches(routes: u32, add_file: &Path, del_file: &Path) -> Result<()> {
    let mut add = String::with_capacity(routes as usize * 48);
    let mut del = String::with_capacity(routes as usize * 48);
    for i in 1..=routes {
        let [_, b, c, d] = (0x0a00_0000u32 + i).to_be_bytes();
        // write! into a String cannot fail.
        let _ = writeln!(add, "route add 10.{b}.{c}.{d}/32 dev d0 table {TABLE}");
        let _ = writeln!(del, "route del 10.{b}.{c}.{d}/32 dev d0 table {TABLE}");
    }
    fs::write(add_file, add).with_context(|| format!("writing {}", add_file.display()))?;
    fs::write(del_file, del).with_context(|| format!("writing {}", del_file.display()))
}

pub(super) fn path_str(path: &Path) -> Result<&str> {
    path.to_str()
        .with_context(|| format!("path is not UTF-8: {}", path.display()))
}

fn print_pair(pair: u32, untraced: Duration, traced: Option<&(Duration, TracerReport)>, n: u32) {
    let a = untraced.as_secs_f64();
    match traced {
        None => println!("pair {pair}: A {a:.3} s"),
        Some((b, report)) => {
            let b = b.as_secs_f64();
            println!(
                "pair {pair}: A {a:.3} s  B {b:.3} s  B/A {:.3}  events {}/{n} ({} removed)  lost {}{}",
                b / a,
                report.events,
                report.removed,
                report.lost_display(),
                if report.filtered {
                    ""
                } else {
                    "  (no --netns filter)"
                }
            );
        }
    }
}

fn summarise(pairs: &[(Duration, Option<(Duration, TracerReport)>)], n: u32) {
    let a: Vec<f64> = pairs.iter().map(|(a, _)| a.as_secs_f64()).collect();
    let median_a = median(&a);
    let traced: Vec<(f64, &TracerReport)> = pairs
        .iter()
        .filter_map(|(_, t)| t.as_ref().map(|(b, r)| (b.as_secs_f64(), r)))
        .collect();
    if traced.is_empty() {
        println!(
            "median A {median_a:.3} s for {n} deletions ({:.2} µs each); no traced runs",
            median_a * 1e6 / f64::from(n)
        );
        return;
    }
    let b: Vec<f64> = traced.iter().map(|(b, _)| *b).collect();
    let ratios: Vec<f64> = pairs
        .iter()
        .filter_map(|(a, t)| t.as_ref().map(|(b, _)| b.as_secs_f64() / a.as_secs_f64()))
        .collect();
    let events: u64 = traced.iter().map(|(_, r)| r.events).sum();
    let lost: Option<u64> = traced.iter().map(|(_, r)| r.lost).sum();
    let expected = u64::from(n) * traced.len() as u64;
    println!(
        "median A {median_a:.3} s, median B {:.3} s, median B/A {:.3}   (target ≤ 1.15, 0 lost)",
        median(&b),
        median(&ratios)
    );
    println!(
        "events reported {events} of {expected} deletions, lost {}",
        lost.map_or_else(|| "unknown (no summary line)".to_owned(), |l| l.to_string())
    );
}

fn median(values: &[f64]) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    match sorted.len() {
        0 => f64::NAN,
        len if len % 2 == 1 => sorted[len / 2],
        len => (sorted[len / 2 - 1] + sorted[len / 2]) / 2.0,
    }
}

#[cfg(test)]
mod tests {
    use super::median;

    #[test]
    fn medians() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), 2.5);
        assert!(median(&[]).is_nan());
    }
}
