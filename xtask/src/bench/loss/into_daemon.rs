//! The loss bench's third burst: the million-route flush into `routeguard daemon` with its
//! default config, counted in its store; the daemon is driven as the daemon bench drives it.
use std::{fs, path::Path, time::Duration};

use anyhow::Result;

use super::{count_table_routes, flush_command};
use crate::{
    bench::{
        daemon_run::{self, Daemon, Files, Patience},
        procfs::load_average,
        routes::rate,
    },
    netns::Netns,
};

/// routeguard was seen silent for 20 s while it caught up with a million-route flush; a store
/// that gains no row for a minute has lost the rest.
const PATIENCE: Patience = Patience {
    stalled: Duration::from_secs(60),
    timeout: Duration::from_secs(1800),
};

/// Starts a daemon on a fresh store (the table already filled), flushes table 100 and waits
/// until the store holds a row for each route the flush removed; prints stored, lost and the
/// daemon's peak resident size during the burst.
pub fn flush(bin: &Path, ns: &Netns, dir: &Path, added: u64) -> Result<()> {
    let dir = dir.join("loss-daemon");
    let files = Files::create(&dir, "auto")?;
    let daemon = Daemon::start(bin, &files.config)?;
    println!(
        "  `routeguard daemon` started (capture {}): {}",
        daemon.started.capture.as_deref().unwrap_or("?"),
        daemon.started.bounds()
    );
    daemon.settle()?;
    let left = || count_table_routes(ns).map(|left| added - left.min(added));
    let burst = daemon_run::burst(
        &daemon,
        &files.store,
        flush_command(ns),
        &dir.join("ip.log"),
        left,
        &PATIENCE,
    )?;
    let leftover = added - burst.expected;
    println!(
        "  `ip route flush table 100` took {:.2} s ({:.0} deletions/s; load average {}){}",
        burst.took.as_secs_f64(),
        rate(burst.expected, burst.took),
        load_average(),
        if leftover > 0 {
            format!(", {leftover} routes left in the table")
        } else {
            String::new()
        }
    );
    if !burst.status.success() || !burst.said.is_empty() {
        println!("  ip route flush ({}): {}", burst.status, burst.said);
    }
    let stopped = daemon.stop()?;
    println!(
        "  daemon: stored {} of {}{}, the last {:.2} s after the flush began; lost {}{}",
        burst.stored,
        burst.expected,
        if burst.stalled {
            format!(" (none more for {} s)", PATIENCE.stalled.as_secs())
        } else {
            String::new()
        },
        burst.stored_in.as_secs_f64(),
        stopped.lost,
        stopped
            .breakdown
            .as_ref()
            .map_or_else(String::new, |b| format!(" ({b})"))
    );
    if let Some(sinks) = &stopped.sinks {
        println!("  daemon: sinks: {sinks}");
    }
    println!("  {}", burst.peak_line(None));
    let met = burst.stored == burst.expected && stopped.lost == 0 && !stopped.sinks_missed();
    println!(
        "  target (every deletion stored, 0 lost): {}",
        if met { "met" } else { "not met" }
    );
    // A million rows take a gigabyte: scratch, not worth keeping.
    let _ = fs::remove_dir_all(&dir);
    Ok(())
}
