//! `routeguard trace --json` as the bench drives it: started and ready before the timed
//! deletion, then drained, stopped with SIGINT (so it prints its summary) and read back.
use std::{
    fs::File,
    io::{BufRead as _, BufReader, Read as _, Seek as _, SeekFrom},
    path::Path,
    process::{Child, Command, Stdio},
    sync::mpsc::{self, Receiver, RecvTimeoutError},
    thread,
    time::{Duration, Instant},
};

use anyhow::{anyhow, bail, Context as _, Result};

use super::{
    lines::{self, Outcomes, Started},
    procfs,
};
use crate::interrupt;

const READY_MARKER: &str = "tracing started";
/// Start-up parses the kernel's BTF: seconds under QEMU's emulation on a busy host.
const READY_TIMEOUT: Duration = Duration::from_secs(120);
const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);
const EXIT_TIMEOUT: Duration = Duration::from_secs(10);

/// What one traced run reported.
pub struct TracerReport {
    /// JSON lines written to stdout (one per event).
    pub events: u64,
    /// Of those, the ones with `"outcome":"removed"` (all of them, in this bench).
    pub removed: u64,
    /// `<L>` from the final `routeguard: <E> events, <L> lost` line; `None` if it was missing.
    pub lost: Option<u64>,
    /// `<E>` from that line.
    pub summary_events: Option<u64>,
    /// Whether the `--netns` filter was accepted (otherwise the host's deletions count too).
    pub filtered: bool,
    /// CPU time routeguard used from ready to stop (its userspace and the syscalls it made).
    pub cpu: Option<Duration>,
    /// Its `routeguard: outcomes: …` line: how the removals ended and on what evidence (None
    /// from a binary that does not print it).
    pub outcomes: Option<Outcomes>,
    /// The ring size its start line named.
    pub ring_kib: Option<u64>,
}

impl TracerReport {
    pub fn lost_display(&self) -> String {
        self.lost.map_or_else(|| "?".to_owned(), |l| l.to_string())
    }
}

pub struct Tracer {
    child: Child,
    stderr: Receiver<String>,
    stderr_log: Vec<String>,
    out_path: std::path::PathBuf,
    filtered: bool,
    /// CPU time routeguard had used when it reported ready (start-up: BTF, loading).
    cpu_ready: Option<Duration>,
}

enum StartError {
    /// routeguard exited before it was ready; its stderr.
    Exited(Vec<String>),
    Other(anyhow::Error),
}

impl Tracer {
    /// Starts `<bin> trace <extra> --netns <netns>` (`extra` e.g. `--json --capture syscall`;
    /// without the filter if routeguard rejects `--netns`) and waits until it reports
    /// `tracing started`.
    pub fn start_with(bin: &Path, netns: &str, out_path: &Path, extra: &[&str]) -> Result<Self> {
        Self::start_env(bin, netns, out_path, extra, &[])
    }

    /// [`Tracer::start_with`] with `env` added to routeguard's environment.
    pub fn start_env(
        bin: &Path,
        netns: &str,
        out_path: &Path,
        extra: &[&str],
        env: &[(&str, &str)],
    ) -> Result<Self> {
        match Self::spawn(bin, Some(netns), out_path, extra, env) {
            Ok(tracer) => Ok(tracer),
            Err(StartError::Exited(stderr)) if stderr.iter().any(|l| l.contains("netns")) => {
                eprintln!(
                    "warning: routeguard rejected `--netns {netns}` ({}); tracing without a \
                     filter, so deletions elsewhere on the host count too",
                    stderr.last().map_or("", String::as_str)
                );
                Self::spawn(bin, None, out_path, extra, env).map_err(|err| err.into_anyhow(bin))
            }
            Err(err) => Err(err.into_anyhow(bin)),
        }
    }

    /// Starts `<bin> trace <extra>` without a namespace filter: every namespace's events.
    pub fn start_unfiltered(bin: &Path, out_path: &Path, extra: &[&str]) -> Result<Self> {
        Self::spawn(bin, None, out_path, extra, &[]).map_err(|err| err.into_anyhow(bin))
    }

    fn spawn(
        bin: &Path,
        netns: Option<&str>,
        out_path: &Path,
        extra: &[&str],
        env: &[(&str, &str)],
    ) -> Result<Self, StartError> {
        let out = File::create(out_path)
            .with_context(|| format!("creating {}", out_path.display()))
            .map_err(StartError::Other)?;
        let mut command = Command::new(bin);
        command.arg("trace").args(extra).envs(env.iter().copied());
        if let Some(netns) = netns {
            command.args(["--netns", netns]);
        }
        let mut child = command
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("could not start {}", bin.display()))
            .map_err(StartError::Other)?;
        let stderr = child.stderr.take().expect("stderr is piped");
        let (sender, receiver) = mpsc::channel();
        thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if sender.send(line).is_err() {
                    break;
                }
            }
        });
        let mut tracer = Tracer {
            child,
            stderr: receiver,
            stderr_log: Vec::new(),
            out_path: out_path.to_owned(),
            filtered: netns.is_some(),
            cpu_ready: None,
        };
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            interrupt::check().map_err(StartError::Other)?;
            match tracer.stderr.recv_timeout(Duration::from_millis(100)) {
                Ok(line) => {
                    let ready = line.contains(READY_MARKER);
                    tracer.stderr_log.push(line);
                    if ready {
                        tracer.cpu_ready = procfs::cpu_time(tracer.child.id()).ok();
                        return Ok(tracer);
                    }
                }
                Err(RecvTimeoutError::Disconnected) => {
                    // stderr closed: routeguard exited (Drop reaps it).
                    return Err(StartError::Exited(std::mem::take(&mut tracer.stderr_log)));
                }
                Err(RecvTimeoutError::Timeout) => {}
            }
            if Instant::now() > deadline {
                return Err(StartError::Other(anyhow!(
                    "routeguard did not print \"{READY_MARKER}\" within {} s; its stderr so far:\n{}",
                    READY_TIMEOUT.as_secs(),
                    tracer.stderr_log.join("\n")
                )));
            }
        }
    }

    /// Waits until `expected` JSON lines arrived (or 10 s passed), stops routeguard with SIGINT
    /// and reads its report.
    pub fn finish(mut self, expected: u64) -> Result<TracerReport> {
        let mut counter = LineCounter::open(&self.out_path)?;
        let deadline = Instant::now() + DRAIN_TIMEOUT;
        while counter.update()? < expected && Instant::now() < deadline {
            interrupt::check()?;
            self.collect_stderr();
            thread::sleep(Duration::from_millis(50));
        }
        let out_path = self.out_path.clone();
        let report = self.stop()?;
        if report.removed != report.events {
            eprintln!(
                "warning: {} of {} events are not `\"outcome\":\"removed\"` (see {})",
                report.events - report.removed.min(report.events),
                report.events,
                out_path.display()
            );
        }
        Ok(report)
    }

    /// routeguard's pid, e.g. to read its /proc/PID/status.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Stops routeguard with SIGINT at once (no draining) and reads its report.
    pub fn stop(self) -> Result<TracerReport> {
        self.stop_within(EXIT_TIMEOUT)
    }

    /// Like [`Tracer::stop`], allowing routeguard `exit_timeout` to write out what it holds.
    pub fn stop_within(mut self, exit_timeout: Duration) -> Result<TracerReport> {
        let cpu = procfs::cpu_time(self.child.id())
            .ok()
            .zip(self.cpu_ready)
            .map(|(now, ready)| now.saturating_sub(ready));
        let pid = libc::pid_t::try_from(self.child.id()).context("pid out of range")?;
        // SAFETY: kill(2) on our own child, which has not been reaped yet (we own `child`).
        if unsafe { libc::kill(pid, libc::SIGINT) } != 0 {
            bail!(
                "could not send SIGINT to routeguard: {}",
                std::io::Error::last_os_error()
            );
        }
        let deadline = Instant::now() + exit_timeout;
        let status = loop {
            if let Some(status) = self.child.try_wait().context("waiting for routeguard")? {
                break status;
            }
            if Instant::now() > deadline {
                bail!(
                    "routeguard did not exit within {} s of SIGINT",
                    exit_timeout.as_secs()
                );
            }
            self.collect_stderr();
            thread::sleep(Duration::from_millis(50));
        };
        // The reader thread ends with the pipe; take everything it still holds.
        while let Ok(line) = self.stderr.recv_timeout(Duration::from_secs(2)) {
            self.stderr_log.push(line);
        }
        if !status.success() {
            eprintln!(
                "warning: routeguard exited with {status} after SIGINT; its stderr:\n{}",
                self.stderr_log.join("\n")
            );
        }
        let events = LineCounter::open(&self.out_path)?.update()?;
        let removed = count_removed(&self.out_path)?;
        let summary = self
            .stderr_log
            .iter()
            .rev()
            .find_map(|l| lines::trace_summary(l));
        let lost = summary.map(|(_, lost)| lost);
        if lost.is_none() {
            eprintln!(
                "warning: routeguard printed no `routeguard: <E> events, <L> lost` summary line"
            );
        }
        Ok(TracerReport {
            events,
            removed,
            lost,
            summary_events: summary.map(|(events, _)| events),
            filtered: self.filtered,
            cpu,
            outcomes: self.stderr_log.iter().find_map(|l| Outcomes::parse(l)),
            ring_kib: self
                .stderr_log
                .iter()
                .find_map(|l| Started::parse(l))
                .and_then(|s| s.ring_kib),
        })
    }

    fn collect_stderr(&mut self) {
        while let Ok(line) = self.stderr.try_recv() {
            self.stderr_log.push(line);
        }
    }
}

impl StartError {
    fn into_anyhow(self, bin: &Path) -> anyhow::Error {
        match self {
            StartError::Other(err) => err,
            StartError::Exited(stderr) => anyhow!(
                "{} trace exited before \"{READY_MARKER}\"; its stderr:\n{}",
                bin.display(),
                stderr.join("\n")
            ),
        }
    }
}

impl Drop for Tracer {
    /// On any early exit (error, Ctrl-C) the tracer must not outlive the bench.
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Counts newline-terminated lines of a growing file, reading only what was appended.
pub struct LineCounter {
    file: File,
    offset: u64,
    lines: u64,
}

impl LineCounter {
    pub fn open(path: &Path) -> Result<Self> {
        let file = File::open(path).with_context(|| format!("opening {}", path.display()))?;
        Ok(LineCounter {
            file,
            offset: 0,
            lines: 0,
        })
    }

    pub fn update(&mut self) -> Result<u64> {
        self.file.seek(SeekFrom::Start(self.offset))?;
        let mut buf = Vec::new();
        self.offset += self.file.read_to_end(&mut buf)? as u64;
        self.lines += buf.iter().filter(|&&b| b == b'\n').count() as u64;
        Ok(self.lines)
    }
}

/// Lines of the JSON output whose outcome is `removed`.
fn count_removed(path: &Path) -> Result<u64> {
    let file = File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let mut removed = 0;
    for line in BufReader::new(file).lines() {
        let line = line.with_context(|| format!("reading {}", path.display()))?;
        if line.contains("\"outcome\":\"removed\"") {
            removed += 1;
        }
    }
    Ok(removed)
}
