//! The load the route benches generate: a link in the bench's own namespace, batch files of
//! `/32` routes to add and delete, and the timed deletion, with the rate `ip` reached.
use std::{fmt::Write as _, fs, path::Path, process::Command, time::Duration, time::Instant};

use anyhow::{bail, Context as _, Result};

use crate::{cmd, interrupt, netns::Netns};

/// Routing table the benches fill; inside the bench's own namespace, so nothing else uses it.
pub const TABLE: &str = "100";

/// Creates the up link `d0` the routes point at: a dummy, or where the kernel has no dummy
/// driver (CONFIG_DUMMY is off on our Firecracker guests) one end of a veth pair whose peer
/// `d1` stays in the same namespace.
pub fn add_link(ns: &Netns) -> Result<()> {
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

/// Writes `route add|del 10.a.b.c/32 dev d0 table 100` lines: distinct /32s from 10.0.0.1 up,
/// inside the bench's private namespace.
pub fn write_batches(routes: u32, add_file: &Path, del_file: &Path) -> Result<()> {
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

pub fn path_str(path: &Path) -> Result<&str> {
    path.to_str()
        .with_context(|| format!("path is not UTF-8: {}", path.display()))
}

/// Times `ip -n <ns> -batch <del_file>`, and nothing else.
pub fn time_deletion(ns: &Netns, del_file: &Path) -> Result<Duration> {
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

/// Deletions per second: `n` in `took`.
pub fn rate(n: u64, took: Duration) -> f64 {
    n as f64 / took.as_secs_f64().max(1e-9)
}
