//! `cargo xtask bench <name>`: benchmarks, kept apart from the tests. Each prints its
//! measurements side by side (untraced vs traced, alternated in one run) and the target.
mod overhead;
mod report;
mod tracer;

use anyhow::Result;
use clap::Subcommand;

#[derive(Subcommand)]
pub enum Bench {
    /// Cost of tracing on route deletions: `ip -batch` deleting N routes, untraced vs traced.
    Overhead(overhead::Args),
    /// `routeguard report --format html` on N synthetic events: time and peak memory.
    Report(report::Args),
}

/// The benches, for `cargo xtask bench` without a name.
const LIST: &[(&str, &str)] = &[
    (
        "overhead",
        "time to delete N routes with `ip -batch`, untraced vs under `routeguard trace` \
         (target ≤ 1.15, 0 lost); `cargo xtask bench overhead [--routes 100000] [--pairs 5]`",
    ),
    (
        "report",
        "HTML report of N synthetic events: time and peak memory (target < 2 s for 1,000,000); \
         `cargo xtask bench report [--events 1000000] [--bin PATH]`",
    ),
];

pub fn run(bench: Option<Bench>) -> Result<()> {
    match bench {
        Some(Bench::Overhead(args)) => overhead::run(&args),
        Some(Bench::Report(args)) => report::run(&args),
        None => {
            println!("available benches (run as root: `cargo xtask bench <name>`):");
            for (name, about) in LIST {
                println!("  {name:<10} {about}");
            }
            Ok(())
        }
    }
}
