//! The /proc fallback, for a request whose process details never arrived from the kernel (the
//! task record was lost, or the process was already running when tracing started and its record
//! was dropped).
//!
//! A pid alone does not name a process: it is reused. Every read is checked against the start
//! time the kernel captured, before and after, so a recycled pid is never blamed.

use std::fs;
use std::path::PathBuf;

use crate::event::{Ancestor, ExeId};

use super::cmdline::split_args;

/// Parent-chain walks stop here even if pid 0 was not reached (a loop in a racing /proc).
const MAX_ANCESTRY: usize = 64;

/// The fields of `/proc/PID/stat` we use.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Stat {
    pub comm: String,
    pub ppid: u32,
    /// Field 22, `starttime`: clock ticks since boot.
    pub start_ticks: u64,
}

/// Parses `/proc/PID/stat`. The comm (field 2) is in parentheses and may itself contain spaces
/// and `)`, so the fields are counted from the *last* `)`.
pub fn parse_stat(stat: &str) -> Option<Stat> {
    let open = stat.find('(')?;
    let close = stat.rfind(')')?;
    let comm = stat.get(open + 1..close)?.to_string();
    // After the comm: field 3 (state) is index 0, field 4 (ppid) index 1, field 22 index 19.
    let mut rest = stat.get(close + 1..)?.split_ascii_whitespace();
    let ppid = rest.nth(1)?.parse().ok()?;
    let start_ticks = rest.nth(17)?.parse().ok()?;
    Some(Stat {
        comm,
        ppid,
        start_ticks,
    })
}

/// Reads a procfs tree (`/proc`, or a fixture in tests).
pub struct Procfs {
    root: PathBuf,
    ns_per_tick: u64,
}

impl Procfs {
    pub fn new(root: PathBuf) -> Self {
        Self {
            root,
            ns_per_tick: ns_per_tick(),
        }
    }

    /// A procfs with a fixed tick length (fixtures).
    #[cfg(test)]
    pub fn with_tick(root: PathBuf, ns_per_tick: u64) -> Self {
        Self { root, ns_per_tick }
    }

    pub fn ns_per_tick(&self) -> u64 {
        self.ns_per_tick
    }

    /// The owner of `/proc/PID`: the process's effective uid.
    pub fn uid(&self, pid: u32) -> Option<u32> {
        use std::os::unix::fs::MetadataExt as _;
        fs::metadata(self.root.join(pid.to_string()))
            .ok()
            .map(|m| m.uid())
    }

    fn read(&self, pid: u32, file: &str) -> Option<Vec<u8>> {
        fs::read(self.root.join(pid.to_string()).join(file)).ok()
    }

    pub fn stat(&self, pid: u32) -> Option<Stat> {
        parse_stat(&String::from_utf8_lossy(&self.read(pid, "stat")?))
    }

    /// Whether `/proc/PID` is still the process image that started at `start_ns` (ns since
    /// boot, `task_struct.start_time`). procfs shows the start time in clock ticks
    /// (`nsec_to_clock_t`, truncating), so compare at tick granularity; one tick of slack absorbs
    /// rounding. No pid is reused within one tick.
    ///
    /// Caveat: since Linux 5.5 procfs shows `start_boottime`, which counts suspend, while
    /// `start_time` does not; on a host that has been suspended this fails closed (no /proc
    /// details), it never names the wrong process.
    pub fn same_image(&self, pid: u32, start_ns: u64) -> Option<Stat> {
        let stat = self.stat(pid)?;
        let ticks = start_ns / self.ns_per_tick;
        (stat.start_ticks.abs_diff(ticks) <= 1).then_some(stat)
    }

    pub fn argv(&self, pid: u32) -> Option<Vec<String>> {
        Some(split_args(&self.read(pid, "cmdline")?))
    }

    pub fn exe(&self, pid: u32) -> Option<String> {
        let link = fs::read_link(self.root.join(pid.to_string()).join("exe")).ok()?;
        Some(link.to_string_lossy().into_owned())
    }

    /// (device, inode) of the file `pid` executes: `/proc/PID/exe` followed to the file.
    pub fn exe_id(&self, pid: u32) -> Option<ExeId> {
        let meta = fs::metadata(self.root.join(pid.to_string()).join("exe")).ok()?;
        Some(ExeId::of(&meta))
    }

    /// The cgroup v2 path from `/proc/PID/cgroup` (the `0::` line).
    pub fn cgroup(&self, pid: u32) -> Option<String> {
        let text = String::from_utf8_lossy(&self.read(pid, "cgroup")?).into_owned();
        text.lines()
            .find_map(|l| l.strip_prefix("0::"))
            .filter(|p| p.starts_with('/'))
            .map(str::to_string)
    }

    /// The cgroup v1 `name=systemd` path from `/proc/PID/cgroup` (`1:name=systemd:/…`).
    pub fn cgroup_systemd_v1(&self, pid: u32) -> Option<String> {
        let text = String::from_utf8_lossy(&self.read(pid, "cgroup")?).into_owned();
        text.lines()
            .find_map(|l| {
                let (_, rest) = l.split_once(':')?;
                let (controllers, path) = rest.split_once(':')?;
                (controllers == "name=systemd").then_some(path)
            })
            .filter(|p| p.starts_with('/'))
            .map(str::to_string)
    }

    /// The parent chain starting at `ppid`, nearest first, up to (not including) pid 0.
    pub fn ancestry(&self, mut ppid: u32) -> Vec<Ancestor> {
        let mut chain = Vec::new();
        while ppid != 0 && chain.len() < MAX_ANCESTRY {
            let Some(stat) = self.stat(ppid) else { break };
            chain.push(Ancestor {
                pid: ppid,
                comm: stat.comm,
            });
            ppid = stat.ppid;
        }
        chain
    }
}

/// Nanoseconds per clock tick (`USER_HZ`, 100 on every mainstream architecture).
fn ns_per_tick() -> u64 {
    // SAFETY: sysconf only reads a configuration value; it has no memory-safety preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    match u64::try_from(hz) {
        Ok(hz) if hz > 0 => 1_000_000_000 / hz,
        _ => 10_000_000,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_stat_with_hostile_comm() {
        let line = "4242 (evil) (x) 1) S 17 4242 4242 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 \
                    987654 1234 56 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 1 0 0 0 0 0";
        let stat = parse_stat(line).unwrap();
        assert_eq!(
            stat,
            Stat {
                comm: "evil) (x) 1".into(),
                ppid: 17,
                start_ticks: 987654
            }
        );
        assert_eq!(parse_stat("12 (short) S 1"), None);
        assert_eq!(parse_stat(""), None);
    }

    /// Reads this very test process through the real /proc.
    #[test]
    fn reads_own_process_and_checks_image() {
        let proc = Procfs::new(PathBuf::from("/proc"));
        let pid = std::process::id();
        let stat = proc.stat(pid).expect("own /proc/PID/stat");
        let start_ns = stat.start_ticks * proc.ns_per_tick() + proc.ns_per_tick() / 2;
        assert!(proc.same_image(pid, start_ns).is_some());
        // Another image with the same pid (started 10 s later) is rejected.
        assert!(proc.same_image(pid, start_ns + 10_000_000_000).is_none());

        let argv = proc.argv(pid).unwrap();
        assert!(!argv.is_empty());
        let exe = proc.exe(pid).unwrap();
        assert_eq!(exe, std::env::current_exe().unwrap().to_string_lossy());

        let chain = proc.ancestry(stat.ppid);
        assert_eq!(chain.first().map(|a| a.pid), Some(stat.ppid));
        assert!(chain.iter().all(|a| a.pid != 0));
        // Unless we run inside a pid namespace, the chain ends at init.
        assert!(chain.last().is_some_and(|a| a.pid == 1) || chain.len() < MAX_ANCESTRY);
    }

    #[test]
    fn missing_process_gives_nothing() {
        let proc = Procfs::new(PathBuf::from("/proc"));
        // PID_MAX_LIMIT is 2^22: this pid never exists.
        assert!(proc.stat(u32::MAX - 1).is_none());
        assert!(proc.same_image(u32::MAX - 1, 0).is_none());
        assert!(proc.ancestry(u32::MAX - 1).is_empty());
    }
}
