//! `cargo xtask bench <name>`: benchmarks, kept apart from the tests. Each prints its
//! measurements side by side (untraced vs traced, alternated in one run) and the target.
mod bpf_stats;
mod daemon;
mod daemon_run;
mod flood;
mod lines;
mod loss;
mod mirror;
mod overhead;
mod procfs;
mod report;
mod restore;
mod routes;
mod syscalls;
mod tracer;
mod vm_run;

use std::{
    fs,
    path::{Path, PathBuf},
};

use anyhow::{Context as _, Result};
use clap::Subcommand;

use crate::{build, paths};

/// The routeguard binary to bench: `--bin` as given, else a fresh release build.
fn routeguard_bin(bin: Option<&Path>) -> Result<PathBuf> {
    match bin {
        Some(bin) => fs::canonicalize(bin).with_context(|| format!("--bin {}", bin.display())),
        None => build::run(false),
    }
}

/// `target/bench`, created: where benches keep their batch files and captures.
fn bench_dir() -> Result<PathBuf> {
    let dir = paths::target_dir().join("bench");
    fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    Ok(dir)
}

#[derive(Subcommand)]
pub enum Bench {
    /// Cost of tracing on route deletions: `ip -batch` deleting N routes, untraced vs the floor
    /// (routeguard's hooks returning at once) vs traced (`--orphan`: vs a daemon's orphaned
    /// pinned capture too).
    Overhead(overhead::Args),
    /// `routeguard report --format html` on N synthetic events, from JSON lines and from the
    /// store: time and peak memory side by side.
    Report(report::Args),
    /// Route removals in bursts (flush of N routes, `ip -batch` delete of M): removals seen by
    /// routeguard and by `ip monitor route`, side by side, with their outcomes; then the flush
    /// into the daemon.
    Loss(loss::Args),
    /// Memory of routeguard's netlink mirror per route: RSS with N routes vs an empty netns.
    Mirror(mirror::Args),
    /// `routeguard daemon`: idle RSS and CPU over a minute, then N removals stored, lost and the
    /// peak RSS during the burst, in --runs runs, each held to `ip`'s untraced rate.
    Daemon(daemon::Args),
    /// How long a protected rule or route stays missing: N removals each, p50/p99/max of the
    /// gap until routeguard re-added it, against kube-router's 60 s sync.
    Restore(restore::Args),
    /// Root's removals under a flood: refused requests from two unprivileged processes, a
    /// CAP_NET_ADMIN process in its own namespace, both; recorded N/N, kept/suppressed, loss.
    Flood(flood::Args),
    /// What tracing adds to unrelated syscalls (`getppid`, 1-byte `read`/`write`): ns per call
    /// untraced vs traced.
    Syscalls(syscalls::Args),
}

/// The benches, for `cargo xtask bench` without a name.
const LIST: &[(&str, &str)] = &[
    (
        "overhead",
        "time to delete N routes with `ip -batch`: untraced (A), under `routeguard trace` with \
         every program returning at once (F, the floor) and traced (B), alternated (targets B/F \
         ≤ 1.10, B/A ≤ 1.15, 0 lost); `cargo xtask bench overhead [--routes 100000] [--pairs 5] \
         [--capture auto|kernel-function|syscall] [--vm 6.1|6.12] [--bin PATH]`",
    ),
    (
        "report",
        "HTML report of N synthetic events from JSON lines and from the daemon's store: time and \
         peak memory side by side (target < 2 s for a store of 1,000,000); \
         `cargo xtask bench report [--events 1000000] [--runs 3] [--keep] [--bin PATH]`",
    ),
    (
        "loss",
        "flush a table of N routes, then delete M with `ip -batch`: removals seen by `routeguard \
         trace` (default ring) and by `ip monitor route`, their outcomes and the evidence behind \
         them (target: routeguard sees all, every one `removed`); then the same flush into \
         `routeguard daemon` (default config): stored, lost, peak RSS; \
         `cargo xtask bench loss [--routes 1000000] [--deletes 100000] [--runs 1] [--bin PATH]`",
    ),
    (
        "mirror",
        "netlink mirror memory: bytes per route, RSS with N routes minus RSS of an empty netns; \
         `cargo xtask bench mirror [--routes 1000000] [--bin PATH]`",
    ),
    (
        "restore",
        "N removals each of a protected rule and route by `ip`: time missing until routeguard \
         re-added it, p50/p99/max (target p50 < 1 ms, p99 < 5 ms) vs kube-router's 60 s sync; \
         `cargo xtask bench restore [--removals 1000] [--bin PATH]`",
    ),
    (
        "daemon",
        "`routeguard daemon` with its default config: idle RSS and CPU over 60 s (targets < 64 \
         MiB, < 0.1 %), then, --runs times with a fresh daemon, N route removals by `ip -batch` \
         stored (0 lost; peak RSS during the burst ≤ 128 MiB); a run counts when `ip` reached ≥ \
         85 % of its untraced rate (target: all of 3 runs); `cargo xtask bench daemon \
         [--removals 100000] [--runs 1] [--idle 60] [--capture auto|kernel-function|syscall] \
         [--vm 6.1|6.12] [--bin PATH] [--baseline PATH]`",
    ),
    (
        "syscalls",
        "what tracing adds to every other syscall: ns per `getppid`, 1-byte `read` and `write`, \
         untraced vs under `routeguard trace`; `cargo xtask bench syscalls [--capture \
         auto|kernel-function|syscall] [--calls 1000000] [--pairs 3] [--vm 6.1|6.12] [--bin PATH]`",
    ),
    (
        "flood",
        "root removes N routes with `ip -batch` in its own namespace while (a) two unprivileged \
         processes flood refused RTM_DELRULE batches, (b) a CAP_NET_ADMIN process in its own \
         namespace removes its routes as fast as it can, (c) both: flooders' messages/s, root's \
         removals recorded N/N, requests kept/suppressed, ring loss (target N/N and 0 lost in \
         every arm); `cargo xtask bench flood [--removals 20000] [--runs 1] [--seconds 10] \
         [--bin PATH] [--baseline PATH]`",
    ),
];

pub fn run(bench: Option<Bench>) -> Result<()> {
    match bench {
        Some(Bench::Overhead(args)) => overhead::run(&args),
        Some(Bench::Report(args)) => report::run(&args),
        Some(Bench::Loss(args)) => loss::run(&args),
        Some(Bench::Mirror(args)) => mirror::run(&args),
        Some(Bench::Restore(args)) => restore::run(&args),
        Some(Bench::Daemon(args)) => daemon::run(&args),
        Some(Bench::Syscalls(args)) => syscalls::run(&args),
        Some(Bench::Flood(args)) => flood::run(&args),
        None => {
            println!("available benches (run as root: `cargo xtask bench <name>`):");
            for (name, about) in LIST {
                println!("  {name:<10} {about}");
            }
            Ok(())
        }
    }
}
