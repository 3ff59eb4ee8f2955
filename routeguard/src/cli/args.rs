//! Flags of `routeguard trace`, and their validation.

use std::{path::PathBuf, time::Duration};

use clap::{Args, ValueEnum};

use crate::{
    capture::select::Mode,
    event::{filter::Filter, Family, Kind},
    restore::{self, Protect},
};

/// A flag's value that is not what the flag takes (clap prints it after the flag's name).
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum ValueError {
    #[error("`{0}` is not a duration; use e.g. 500ms, 30s, 10m or 2h")]
    Duration(String),
    #[error("`{0}`: the duration must be greater than zero")]
    ZeroDuration(String),
    #[error("`{0}` is not a size; use bytes or a K/M/G suffix, e.g. 16M")]
    Size(String),
    #[error("`{0}` is too large; at most 2G")]
    TooLarge(String),
    #[error("`{value}` is out of range; accepted: {accepted}")]
    OutOfRange {
        value: String,
        accepted: &'static str,
    },
}

pub const TRACE_EXAMPLES: &str = "\
Examples:
  routeguard trace                               every removal, live
  routeguard trace --json > removals.jsonl       JSON lines (schema: docs/events.md)
  routeguard trace --kind rule --table 77        who removes the rules that point at table 77
  routeguard trace --netns blue --family 6       IPv6 removals in the namespace /run/netns/blue
  routeguard trace --unit systemd-networkd.service --duration 10m
  routeguard trace --count 1 --comm ip           stop after the first removal by `ip`
  routeguard trace --capture kernel-function    only the kernel's deletion functions (exit 2 where
                                                 fentry/fexit do not load; `routeguard doctor` says why)
  routeguard trace --protect 'kind=rule table=77 allow-comm=kube-router'
                                                 put back table-77 rules others remove
  routeguard trace --protect 'kind=rule table=77 action=deny allow-exe=/usr/local/bin/kube-router'
                                                 refuse (EPERM) table-77 rule deletes by others
  routeguard trace --config /etc/routeguard/routeguard.toml --dry-run
                                                 what its [[protect]] entries would restore

Each line: time, network namespace, actor comm[pid] (unit or container), what was removed, and
the kernel's answer (removed / failed ERRNO / unknown when the sender read no reply).
On exit routeguard prints how many events it showed and how many were lost; a loss is also
reported the moment it happens (raise --ring-size if it does).
Removal requests the kernel will refuse, and privileged ones in namespaces other than the initial
one, are budgeted per (namespace, cgroup) (64 KiB/s, 256 KiB at once; docs/capture.md): beyond it
they are not shown one by one but summarised once a second in a `suppressed` line (sender's
netns, cgroup, uid, count, first/last time). Privileged removals in the namespaces --netns shows
or a --protect entry names with netns= are never budgeted.

Environment: ROUTEGUARD_HOST_NETNS=/proc/1/ns/net (in a pod with hostPID, e.g. `kubectl exec`
into the DaemonSet's) watches and restores in the node's namespace too; ROUTEGUARD_NODE_NAME
names the Kubernetes node in each event's host.node. RUST_LOG overrides -v.

Needs root (CAP_BPF, CAP_PERFMON, CAP_NET_ADMIN) and a kernel with BTF. Exit codes: 0 ok,
1 runtime failure, 2 usage, privilege or kernel-feature error.";

#[derive(Args, Debug, Clone)]
pub struct TraceArgs {
    /// Print one JSON object per line instead of text.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub filters: FilterArgs,
    /// Stop after this long, e.g. 30s, 10m, 1h (1ms to 8760h).
    #[arg(long, value_name = "DURATION", value_parser = parse_run_time)]
    pub duration: Option<Duration>,
    /// Stop after this many events (at least 1).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    pub count: Option<u64>,
    /// Kernel ring buffer size, e.g. 16M (a power of two, 64K to 1G).
    #[arg(long, value_name = "BYTES", default_value = "16M", value_parser = parse_ring_size)]
    pub ring_size: u32,
    /// Bound of the queue between the thread that empties the ring and the one that decodes
    /// and correlates, e.g. 256M (1M to 2G). Records are held there only while decoding lags
    /// behind a burst; what does not fit is counted and reported as lost.
    #[arg(long, value_name = "BYTES", default_value = "256M", value_parser = parse_queue_size)]
    pub queue_size: u32,
    /// Wake routeguard once this many bytes wait in the ring (0: on every event; at most 512M,
    /// and a value at or above --ring-size only wakes it on its drain ticks). Batching keeps
    /// the cost per removal low; routeguard also drains every 10 ms (every 100 ms after a quiet
    /// second).
    #[arg(long, value_name = "BYTES", default_value = "256K", value_parser = parse_wakeup)]
    pub wakeup: u32,
    /// Put back rules or routes this selects when a process not allowed to removes them
    /// (repeatable). Keys as in a `[[protect]]` entry, `allow.X` as `allow-X`, e.g.
    /// 'kind=rule table=77 priority=32000-32765 allow-comm=kube-router'. With `action=deny` the
    /// removal is refused in the kernel instead (EPERM, BPF LSM; restored where BPF LSM is not
    /// active; docs/prevention.md).
    #[arg(long, value_name = "SPEC", value_parser = restore::parse_spec)]
    pub protect: Vec<Protect>,
    /// Read `[[protect]]` entries and `[restore]` settings (flap guard) from this config file,
    /// the daemon's format; its other sections are checked but not used by `trace`.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// With --protect or --config: show what would be restored (and, for `action=deny` entries,
    /// what would be refused: `would-deny`), change nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Capture path: kernel-function (fentry/fexit on the kernel's deletion functions: every
    /// cause, expiry and netns teardown included), syscall (netlink/ioctl requests plus a route
    /// mirror), or auto (kernel-function where it loads). Every event's `capture` says which.
    #[arg(long, value_enum, value_name = "PATH", default_value = "auto")]
    pub capture: CaptureArg,
}

/// Which events to show: the same flags for `trace` and `report`. Every flag can be repeated
/// (any value matches); different flags must all match.
#[derive(Args, Debug, Clone, Default)]
pub struct FilterArgs {
    /// Only removals by processes with this command name (repeatable).
    #[arg(long, value_name = "NAME")]
    pub comm: Vec<String>,
    /// Only removals by this process or thread id (repeatable).
    #[arg(long, value_name = "PID")]
    pub pid: Vec<u32>,
    /// Only removals by processes in this systemd unit, e.g. systemd-networkd.service (repeatable).
    #[arg(long, value_name = "UNIT")]
    pub unit: Vec<String>,
    /// Only this network namespace: a name under /run/netns, `host`, or an inode number (repeatable).
    #[arg(long, value_name = "NAME|INODE")]
    pub netns: Vec<String>,
    /// Only these kinds of object (repeatable).
    #[arg(long, value_enum, value_name = "KIND")]
    pub kind: Vec<KindArg>,
    /// Only IPv4 (4) or IPv6 (6).
    #[arg(long, value_name = "4|6", value_parser = Family::parse)]
    pub family: Option<Family>,
    /// Only routes and rules of this routing table id (repeatable).
    #[arg(long, value_name = "ID")]
    pub table: Vec<u32>,
}

impl FilterArgs {
    pub fn filter(&self) -> Filter {
        Filter {
            comms: self.comm.clone(),
            pids: self.pid.clone(),
            units: self.unit.clone(),
            netns: self.netns.clone(),
            kinds: self.kind.iter().map(|&k| k.into()).collect(),
            family: self.family,
            tables: self.table.clone(),
        }
    }

    /// The flags as typed, e.g. for a report's header.
    pub fn words(&self) -> Vec<String> {
        let mut w = Vec::new();
        let mut push = |flag: &str, v: String| w.push(format!("--{flag} {v}"));
        self.comm.iter().for_each(|v| push("comm", v.clone()));
        self.pid.iter().for_each(|v| push("pid", v.to_string()));
        self.unit.iter().for_each(|v| push("unit", v.clone()));
        self.netns.iter().for_each(|v| push("netns", v.clone()));
        self.kind
            .iter()
            .for_each(|v| push("kind", format!("{v:?}").to_lowercase()));
        if let Some(f) = self.family {
            push("family", if f == Family::Inet { "4" } else { "6" }.into());
        }
        self.table.iter().for_each(|v| push("table", v.to_string()));
        w
    }
}

/// `--capture`: which capture path to run.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum CaptureArg {
    /// kernel-function where fentry/fexit load, else syscall.
    #[default]
    Auto,
    /// fentry/fexit on the kernel's deletion functions: every cause, including expiry and
    /// netns exit. Fails (exit 2) where they do not load.
    KernelFunction,
    /// Tracepoints on the netlink/ioctl syscalls, plus the route mirror for silent flushes.
    Syscall,
}

impl From<CaptureArg> for Mode {
    fn from(c: CaptureArg) -> Self {
        match c {
            CaptureArg::Auto => Mode::Auto,
            CaptureArg::KernelFunction => Mode::KernelFunction,
            CaptureArg::Syscall => Mode::Syscall,
        }
    }
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum KindArg {
    Route,
    Rule,
    Nexthop,
    Link,
    Address,
}

impl From<KindArg> for Kind {
    fn from(k: KindArg) -> Self {
        match k {
            KindArg::Route => Kind::Route,
            KindArg::Rule => Kind::Rule,
            KindArg::Nexthop => Kind::Nexthop,
            KindArg::Link => Kind::Link,
            KindArg::Address => Kind::Address,
        }
    }
}

impl TraceArgs {
    pub fn filter(&self) -> Filter {
        self.filters.filter()
    }
}

/// `500ms`, `30s`, `10m`, `2h`, or plain seconds.
pub fn parse_duration(s: &str) -> Result<Duration, ValueError> {
    let bad = || ValueError::Duration(s.to_owned());
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: u64 = num.parse().map_err(|_| bad())?;
    let d = match unit {
        "ms" => Duration::from_millis(n),
        "" | "s" => Duration::from_secs(n),
        "m" => Duration::from_secs(n.checked_mul(60).ok_or_else(bad)?),
        "h" => Duration::from_secs(n.checked_mul(3600).ok_or_else(bad)?),
        _ => return Err(bad()),
    };
    if d.is_zero() {
        return Err(ValueError::ZeroDuration(s.to_owned()));
    }
    Ok(d)
}

/// A duration a run is bounded by (`trace --duration`, `report --gap`): 1ms to 8760h (a year).
/// Beyond that a deadline is no deadline, and `Instant + Duration` panics near 2^63 seconds.
pub fn parse_run_time(s: &str) -> Result<Duration, ValueError> {
    const MAX: Duration = Duration::from_secs(8760 * 3600);
    let d = parse_duration(s)?;
    if d > MAX {
        return Err(ValueError::OutOfRange {
            value: s.to_owned(),
            accepted: "1ms to 8760h",
        });
    }
    Ok(d)
}

/// `4096`, `64K`, `16M`, `1G`.
pub fn parse_size(s: &str) -> Result<u32, ValueError> {
    let bad = || ValueError::Size(s.to_owned());
    let (num, mult) = match s.as_bytes().last() {
        Some(b'K' | b'k') => (&s[..s.len() - 1], 1u64 << 10),
        Some(b'M' | b'm') => (&s[..s.len() - 1], 1 << 20),
        Some(b'G' | b'g') => (&s[..s.len() - 1], 1 << 30),
        _ => (s, 1),
    };
    let n: u64 = num.parse().map_err(|_| bad())?;
    // Checked: `17179869184G` is 2^64 bytes, which wrapped to 0 in a release build.
    n.checked_mul(mult)
        .and_then(|n| u32::try_from(n).ok())
        .ok_or_else(|| ValueError::TooLarge(s.to_owned()))
}

/// A size within `min..=max`, or the range in the error.
fn size_in(s: &str, min: u32, max: u32, accepted: &'static str) -> Result<u32, ValueError> {
    let n = parse_size(s)?;
    if !(min..=max).contains(&n) {
        return Err(ValueError::OutOfRange {
            value: s.to_owned(),
            accepted,
        });
    }
    Ok(n)
}

fn parse_queue_size(s: &str) -> Result<u32, ValueError> {
    size_in(s, 1 << 20, 2 << 30, "1M to 2G, e.g. 256M")
}

fn parse_ring_size(s: &str) -> Result<u32, ValueError> {
    const ACCEPTED: &str = "a power of two from 64K to 1G, e.g. 16M";
    let n = size_in(s, 64 << 10, 1 << 30, ACCEPTED)?;
    if !n.is_power_of_two() {
        return Err(ValueError::OutOfRange {
            value: s.to_owned(),
            accepted: ACCEPTED,
        });
    }
    Ok(n)
}

fn parse_wakeup(s: &str) -> Result<u32, ValueError> {
    size_in(s, 0, 512 << 20, "0 to 512M")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("30"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("10m"), Ok(Duration::from_secs(600)));
        assert!(parse_duration("0s")
            .unwrap_err()
            .to_string()
            .contains("greater than zero"));
        assert!(parse_duration("ten")
            .unwrap_err()
            .to_string()
            .contains("`ten` is not a duration"));
    }

    #[test]
    fn sizes_and_ring_sizes() {
        assert_eq!(parse_size("16M"), Ok(16 << 20));
        assert_eq!(parse_size("0"), Ok(0));
        assert_eq!(parse_ring_size("64K"), Ok(64 << 10));
        assert!(parse_ring_size("100K")
            .unwrap_err()
            .to_string()
            .contains("power of two"));
        assert!(parse_size("4G")
            .unwrap_err()
            .to_string()
            .contains("too large"));
    }

    /// Every size and duration flag of `trace` has a range, and its error says it.
    #[test]
    fn trace_flags_are_range_checked() {
        // 2^64 bytes: the multiplication wrapped to 0 (a wake-up on every event) in release.
        assert!(parse_size("17179869184G")
            .unwrap_err()
            .to_string()
            .contains("too large"));
        assert!(parse_wakeup("17179869184G").is_err());
        assert_eq!(parse_wakeup("0"), Ok(0));
        assert_eq!(
            parse_wakeup("1G").unwrap_err().to_string(),
            "`1G` is out of range; accepted: 0 to 512M"
        );
        assert_eq!(parse_ring_size("1G"), Ok(1 << 30));
        assert_eq!(
            parse_ring_size("2G").unwrap_err().to_string(),
            "`2G` is out of range; accepted: a power of two from 64K to 1G, e.g. 16M"
        );
        assert!(parse_ring_size("32K")
            .unwrap_err()
            .to_string()
            .contains("out of range"));
        assert_eq!(parse_queue_size("2G"), Ok(2 << 30));
        assert_eq!(
            parse_queue_size("512K").unwrap_err().to_string(),
            "`512K` is out of range; accepted: 1M to 2G, e.g. 256M"
        );
        // A huge --duration panicked at `Instant::now() + d`.
        assert_eq!(
            parse_run_time("18446744073709551615")
                .unwrap_err()
                .to_string(),
            "`18446744073709551615` is out of range; accepted: 1ms to 8760h"
        );
        assert_eq!(
            parse_run_time("8760h"),
            Ok(Duration::from_secs(8760 * 3600))
        );
        assert!(parse_run_time("0")
            .unwrap_err()
            .to_string()
            .contains("greater than zero"));
    }

    #[test]
    fn families() {
        assert_eq!(Family::parse("4"), Ok(Family::Inet));
        assert!(Family::parse("5")
            .unwrap_err()
            .to_string()
            .contains("`5` is not an address family"));
    }
}
