//! What the benches read of a process and of the machine in /proc.
use std::{
    fs,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    thread::{self, JoinHandle},
    time::Duration,
};

use anyhow::{Context as _, Result};

/// CPU time (user + system) process `pid` has used so far.
pub fn cpu_time(pid: u32) -> Result<Duration> {
    let path = format!("/proc/{pid}/stat");
    let stat = fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
    // Fields after the parenthesised comm: state is field 3, utime 14, stime 15.
    let rest = stat
        .rsplit_once(") ")
        .map(|(_, r)| r)
        .with_context(|| format!("{path} has no `) ` after the comm"))?;
    let fields: Vec<&str> = rest.split(' ').collect();
    let at = |i: usize| -> Result<u64> {
        fields
            .get(i - 3)
            .and_then(|f| f.parse().ok())
            .with_context(|| format!("field {i} of {path}"))
    };
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    Ok(Duration::from_secs_f64((at(14)? + at(15)?) as f64 / hz))
}

/// (VmRSS, VmHWM) of process `pid` in KiB, from /proc/PID/status.
pub fn memory(pid: u32) -> Result<(u64, u64)> {
    let path = format!("/proc/{pid}/status");
    let text = fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
    Ok((
        status_kib(&text, "VmRSS:").with_context(|| format!("no VmRSS in {path}"))?,
        status_kib(&text, "VmHWM:").with_context(|| format!("no VmHWM in {path}"))?,
    ))
}

/// `VmRSS:   1234 kB` → 1234.
fn status_kib(status: &str, field: &str) -> Option<u64> {
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

/// Samples a process's VmRSS on a thread of its own until stopped: the peak over a window,
/// which VmHWM (the peak over the whole life, start-up included) cannot give.
pub struct RssPeak {
    stop: Arc<AtomicBool>,
    thread: JoinHandle<(u64, u64)>,
}

/// Between two samples; a burst's peak lasts longer than this.
pub const RSS_SAMPLE_EVERY: Duration = Duration::from_millis(20);

impl RssPeak {
    pub fn start(pid: u32) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let stopping = Arc::clone(&stop);
        let thread = thread::spawn(move || {
            let path = format!("/proc/{pid}/status");
            let (mut peak, mut samples) = (0, 0);
            while !stopping.load(Ordering::Relaxed) {
                let rss = fs::read_to_string(&path)
                    .ok()
                    .and_then(|text| status_kib(&text, "VmRSS:"));
                if let Some(rss) = rss {
                    peak = peak.max(rss);
                    samples += 1;
                }
                thread::sleep(RSS_SAMPLE_EVERY);
            }
            (peak, samples)
        });
        RssPeak { stop, thread }
    }

    /// (peak VmRSS in KiB, samples taken).
    pub fn stop(self) -> (u64, u64) {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.join().unwrap_or((0, 0))
    }
}

/// KiB as MiB, for printing.
pub fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

/// `/proc/loadavg`'s first three fields.
pub fn load_average() -> String {
    fs::read_to_string("/proc/loadavg")
        .map(|l| l.split(' ').take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "unknown".to_owned())
}

/// `/proc/loadavg`'s first field (the 1-minute load average), `?` when unreadable.
pub fn load_average_1m() -> String {
    fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|l| l.split_whitespace().next().map(str::to_string))
        .unwrap_or_else(|| "?".into())
}
