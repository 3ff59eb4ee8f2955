//! `routeguard daemon` as the daemon and loss benches drive it: its default config (a store of
//! its own, journald, metrics and pinning off), started and stopped by pid, and a burst of
//! removals timed from the load generator's start until the store holds a row for each, with
//! the daemon's resident size sampled all the while.
use std::{
    fs::{self, File},
    io::{BufRead as _, BufReader},
    path::{Path, PathBuf},
    process::{Child, Command, ExitStatus, Stdio},
    sync::mpsc,
    thread,
    time::{Duration, Instant},
};

use anyhow::{bail, ensure, Context as _, Result};
use rusqlite::{Connection, OpenFlags};

use super::{
    lines::{Started, Stopped},
    procfs::{self, mib, RssPeak, RSS_SAMPLE_EVERY},
    routes::TABLE,
};
use crate::interrupt;

/// A daemon's files: its config and the store it writes.
pub struct Files {
    pub config: PathBuf,
    pub store: PathBuf,
}

impl Files {
    /// Empties `dir` and writes the default config into it, changed only where a bench must:
    /// the store in `dir`, journald and metrics off, pinning off (a bench must not leave
    /// programs attached), and the capture path when one is asked for (`auto` leaves the
    /// daemon's default).
    pub fn create(dir: &Path, capture: &str) -> Result<Self> {
        let _ = fs::remove_dir_all(dir);
        fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let store = dir.join("events.db");
        let config = dir.join("routeguard.toml");
        let path = match capture {
            "auto" => String::new(),
            capture => format!("path = \"{capture}\"\n"),
        };
        fs::write(
            &config,
            format!(
                "[store]\npath = \"{}\"\n\n[journald]\nenabled = false\n\n[metrics]\n\
                 enabled = false\n\n[capture]\npin_dir = \"\"\n{path}",
                store.display()
            ),
        )
        .with_context(|| format!("writing {}", config.display()))?;
        Ok(Files { config, store })
    }
}

/// The running daemon; killed (SIGKILL) when dropped before [`Daemon::stop`].
pub struct Daemon {
    child: Option<Child>,
    stderr: mpsc::Receiver<String>,
    /// What its start line said.
    pub started: Started,
}

/// Start-up parses the kernel's BTF: seconds here, a minute or more under QEMU's emulation.
const START_TIMEOUT: Duration = Duration::from_secs(180);

impl Daemon {
    pub fn start(bin: &Path, config: &Path) -> Result<Self> {
        let mut child = Command::new(bin)
            .args(["daemon", "--config"])
            .arg(config)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("could not start {}", bin.display()))?;
        let (sender, receiver) = mpsc::channel();
        let stderr = child.stderr.take().expect("stderr is piped");
        thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if sender.send(line).is_err() {
                    break;
                }
            }
        });
        let mut daemon = Daemon {
            child: Some(child),
            stderr: receiver,
            started: Started::default(),
        };
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            interrupt::check()?;
            match daemon.stderr.recv_timeout(Duration::from_millis(200)) {
                Ok(line) => match Started::parse(&line) {
                    Some(started) => {
                        daemon.started = started;
                        return Ok(daemon);
                    }
                    None => eprintln!("  daemon: {line}"),
                },
                Err(mpsc::RecvTimeoutError::Disconnected) => bail!("the daemon exited at start"),
                Err(mpsc::RecvTimeoutError::Timeout) => {}
            }
            ensure!(
                Instant::now() < deadline,
                "the daemon did not start in {} s",
                START_TIMEOUT.as_secs()
            );
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    /// utime + stime so far.
    pub fn cpu_time(&self) -> Result<Duration> {
        procfs::cpu_time(self.pid())
    }

    /// (VmRSS, VmHWM) in KiB.
    pub fn memory(&self) -> Result<(u64, u64)> {
        procfs::memory(self.pid())
    }

    /// Waits until the daemon has been quiet (under 2 % of a CPU over half a second) after
    /// what was just done to it, e.g. routes added that its mirror heard; at most 30 s.
    pub fn settle(&self) -> Result<()> {
        const WINDOW: Duration = Duration::from_millis(500);
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            interrupt::check()?;
            let before = self.cpu_time()?;
            thread::sleep(WINDOW);
            if (self.cpu_time()? - before).as_secs_f64() < WINDOW.as_secs_f64() * 0.02 {
                break;
            }
        }
        Ok(())
    }

    /// SIGTERM and wait; what its stop line said (an error without one).
    pub fn stop(mut self) -> Result<Stopped> {
        let Some(mut child) = self.child.take() else {
            bail!("the daemon was already stopped");
        };
        // SAFETY: kill(2) on our own child's pid, not reaped yet (we own `child`).
        unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) };
        let status = child.wait()?;
        let lines: Vec<String> = self.stderr.try_iter().collect();
        ensure!(
            status.success(),
            "the daemon exited with {status}; its last lines:\n{}",
            lines.join("\n")
        );
        Stopped::from_lines(&lines)
            .context("no `daemon stopped; N events lost` line from the daemon")
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            // SAFETY: kill(2) on our own child's pid, not reaped yet (we own `child`).
            unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGKILL) };
            let _ = child.wait();
        }
    }
}

/// How long a burst may take to be stored.
pub struct Patience {
    /// No new row for this long once the load is done: the rest were lost.
    pub stalled: Duration,
    /// From the load's start.
    pub timeout: Duration,
}

/// One burst of removals into a running daemon.
pub struct Burst {
    /// The load generator's exit status and run time, and what it printed.
    pub status: ExitStatus,
    pub took: Duration,
    pub said: String,
    /// Removals the store should hold (those the load made).
    pub expected: u64,
    /// Rows of those in the store when it was done or gave up.
    pub stored: u64,
    /// From the load's start until the last row came.
    pub stored_in: Duration,
    /// Whether no new row came for [`Patience::stalled`] before all were stored.
    pub stalled: bool,
    /// The daemon's highest VmRSS, sampled from the load's start until all were stored (or it
    /// gave up), and the samples taken.
    pub peak_rss_kib: u64,
    pub samples: u64,
    /// The daemon's (VmRSS, VmHWM) at the end.
    pub memory: Option<(u64, u64)>,
}

impl Burst {
    /// The burst's peak resident size beside its target, and VmHWM (the whole life's peak).
    pub fn peak_line(&self, target_mib: Option<f64>) -> String {
        format!(
            "burst peak RSS {:.1} MiB (VmRSS every {} ms from the load's start until {}, {} \
             samples{}); VmHWM {} (the whole life, start-up included)",
            mib(self.peak_rss_kib),
            RSS_SAMPLE_EVERY.as_millis(),
            if self.stored >= self.expected {
                "all were stored"
            } else {
                "it gave up"
            },
            self.samples,
            target_mib.map_or_else(String::new, |t| format!("; target ≤ {t} MiB")),
            self.memory.map_or_else(
                || "unknown".to_owned(),
                |(_, hwm)| format!("{:.1} MiB", mib(hwm))
            )
        )
    }
}

/// Runs `load` (its output into `log`), then waits until the store holds a row for each of the
/// `expected()` removals it made (asked once `load` exited), made by it in table 100.
pub fn burst(
    daemon: &Daemon,
    store: &Path,
    mut load: Command,
    log: &Path,
    expected: impl FnOnce() -> Result<u64>,
    patience: &Patience,
) -> Result<Burst> {
    let out = File::create(log).with_context(|| format!("creating {}", log.display()))?;
    load.stdin(Stdio::null())
        .stdout(out.try_clone()?)
        .stderr(out);
    let rss = RssPeak::start(daemon.pid());
    let start = Instant::now();
    let child = load.spawn().context("could not start the load generator")?;
    let mut rows = StoreCount::new(store, child.id());
    let status = wait_child(child)?;
    let took = start.elapsed();
    let said = fs::read_to_string(log)
        .unwrap_or_default()
        .trim()
        .to_owned();
    let expected = expected()?;
    let (mut stored, mut grew) = (0, Instant::now());
    let mut stored_in = took;
    let mut stalled = false;
    while stored < expected {
        interrupt::check()?;
        ensure!(
            start.elapsed() < patience.timeout,
            "only {stored} of {expected} removals stored after {:?}",
            patience.timeout
        );
        if grew.elapsed() > patience.stalled {
            stalled = true;
            break;
        }
        // A count reads only the rows added since the last: cheap beside the daemon's work.
        thread::sleep(Duration::from_millis(100));
        let now = rows.update()?;
        if now > stored {
            (stored, grew, stored_in) = (now, Instant::now(), start.elapsed());
        }
    }
    let (peak_rss_kib, samples) = rss.stop();
    Ok(Burst {
        status,
        took,
        said,
        expected,
        stored,
        stored_in,
        stalled,
        peak_rss_kib,
        samples,
        memory: daemon.memory().ok(),
    })
}

/// Rows the daemon stored for removals by one process in table 100, counted as they come: each
/// update reads only the rows after the last one it saw (ids only grow).
struct StoreCount {
    path: PathBuf,
    conn: Option<Connection>,
    actor: u32,
    table: i64,
    last_id: i64,
    rows: u64,
}

impl StoreCount {
    fn new(path: &Path, actor: u32) -> Self {
        StoreCount {
            path: path.to_owned(),
            conn: None,
            actor,
            table: TABLE.parse().expect("TABLE is a number"),
            last_id: 0,
            rows: 0,
        }
    }

    fn update(&mut self) -> Result<u64> {
        if self.conn.is_none() {
            if !self.path.exists() {
                return Ok(0);
            }
            // The daemon writes in WAL mode: a reader never blocks its inserts.
            let conn = Connection::open_with_flags(&self.path, OpenFlags::SQLITE_OPEN_READ_ONLY)
                .with_context(|| format!("opening {}", self.path.display()))?;
            conn.busy_timeout(Duration::from_secs(5))?;
            self.conn = Some(conn);
        }
        let conn = self.conn.as_ref().expect("opened above");
        let (last, new): (i64, i64) = conn
            .query_row(
                "SELECT coalesce(max(id), ?1), coalesce(sum(actor_pid = ?2 AND kind = 'route' \
                 AND route_table = ?3), 0) FROM events WHERE id > ?1",
                rusqlite::params![self.last_id, self.actor, self.table],
                |row| Ok((row.get(0)?, row.get(1)?)),
            )
            .with_context(|| format!("counting rows in {}", self.path.display()))?;
        self.last_id = last;
        self.rows += u64::try_from(new).unwrap_or(0);
        Ok(self.rows)
    }
}

/// Waits for our own child, killing it on Ctrl-C.
fn wait_child(mut child: Child) -> Result<ExitStatus> {
    loop {
        if let Some(status) = child.try_wait()? {
            return Ok(status);
        }
        if interrupt::check().is_err() {
            // SAFETY: kill(2) on our own child's pid, not reaped yet (we own `child`).
            unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGKILL) };
            let _ = child.wait();
            bail!("interrupted");
        }
        thread::sleep(Duration::from_millis(20));
    }
}
