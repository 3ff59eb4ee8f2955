//! The daemon bench: what `routeguard daemon` costs while nothing happens (resident size and CPU
//! over an idle minute), and how fast it stores a burst of removals (N route deletions by one
//! `ip -batch`: rows in the store, events per second, lost).
//!
//! The daemon runs on a store in `target/bench/daemon/`, journald and metrics off, pinning off
//! (a bench must not leave programs attached). It sees the whole host: the idle figures include
//! whatever else this machine does, so the load average is printed beside them.
use std::{
    fs,
    io::{BufRead as _, BufReader},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::mpsc,
    thread,
    time::{Duration, Instant},
};

use anyhow::{bail, ensure, Context as _, Result};

use super::{
    procfs::{self, load_average},
    routes::{add_link, path_str, write_batches, TABLE},
};
use crate::{cmd, interrupt, netns::Netns};

#[derive(clap::Args)]
pub struct Args {
    /// Route removals to store.
    #[arg(long, default_value_t = 100_000, value_parser = clap::value_parser!(u32).range(1..=10_000_000))]
    removals: u32,
    /// Seconds of idle to measure (0 skips the idle measurement).
    #[arg(long, default_value_t = 60)]
    idle: u64,
    /// Bench this routeguard binary instead of building target/release/routeguard.
    #[arg(long, value_name = "PATH")]
    bin: Option<PathBuf>,
}

/// Targets from issue 6.
const IDLE_RSS_MIB: f64 = 30.0;
const IDLE_CPU_PERCENT: f64 = 0.1;
/// Left alone after start before the idle window opens (mirror dumps, first allocations).
const SETTLE: Duration = Duration::from_secs(5);
const STORE_TIMEOUT: Duration = Duration::from_secs(600);
/// No new row for this long once the deletions are done: the rest were lost.
const STALLED: Duration = Duration::from_secs(15);

pub fn run(args: &Args) -> Result<()> {
    interrupt::install();
    let bin = super::routeguard_bin(args.bin.as_deref())?;
    ensure!(
        cmd::is_root(),
        "the daemon bench loads eBPF programs and creates a network namespace: run it as root"
    );
    let sqlite3 = cmd::find_program("sqlite3")
        .context("the daemon bench counts stored rows with the sqlite3 command; install it")?;
    let dir = super::bench_dir()?.join("daemon");
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let store = dir.join("events.db");
    let config = dir.join("routeguard.toml");
    fs::write(
        &config,
        format!(
            "[store]\npath = \"{}\"\n\n[journald]\nenabled = false\n\n[metrics]\nenabled = false\n\n\
             [capture]\npin_dir = \"\"\n",
            store.display()
        ),
    )
    .with_context(|| format!("writing {}", config.display()))?;

    println!(
        "bench daemon: `routeguard daemon` on {}; load average {}",
        store.display(),
        load_average()
    );
    let daemon = Daemon::start(&bin, &config)?;
    if args.idle > 0 {
        idle(&daemon, Duration::from_secs(args.idle))?;
    } else {
        println!("idle: skipped (--idle 0)");
    }
    ingest(&daemon, &sqlite3, &store, &dir, args.removals)?;
    let stopped = daemon.stop()?;
    let lost = stopped
        .iter()
        .find_map(|l| {
            l.split_once("daemon stopped; ")?
                .1
                .split(' ')
                .next()?
                .parse::<u64>()
                .ok()
        })
        .context("no `daemon stopped; N events lost` line from the daemon")?;
    println!("lost (ring buffer full), whole run: {lost}");
    Ok(())
}

/// Resident size and CPU time of the daemon over `window`, nothing done meanwhile.
fn idle(daemon: &Daemon, window: Duration) -> Result<()> {
    thread::sleep(SETTLE);
    let (cpu0, t0) = (daemon.cpu_time()?, Instant::now());
    while t0.elapsed() < window {
        interrupt::check()?;
        thread::sleep(Duration::from_millis(200));
    }
    let (cpu1, elapsed) = (daemon.cpu_time()?, t0.elapsed());
    let cpu = (cpu1 - cpu0).as_secs_f64() / elapsed.as_secs_f64() * 100.0;
    let (rss, hwm) = daemon.memory()?;
    let rss_mib = rss as f64 / 1024.0;
    println!(
        "idle {:.0} s: RSS {rss_mib:.1} MiB (peak {:.1} MiB; target < {IDLE_RSS_MIB} MiB), CPU {cpu:.3} % \
         (target < {IDLE_CPU_PERCENT} %); load average after: {}",
        elapsed.as_secs_f64(),
        hwm as f64 / 1024.0,
        load_average()
    );
    Ok(())
}

/// N routes added in a fresh namespace, then deleted by one `ip -batch`; waits until the store
/// holds a row for each.
fn ingest(daemon: &Daemon, sqlite3: &Path, store: &Path, dir: &Path, n: u32) -> Result<()> {
    let ns = Netns::create(&format!("rg-daemon-{}", std::process::id()))?;
    add_link(&ns)?;
    let (add_file, del_file) = (dir.join("add.batch"), dir.join("del.batch"));
    write_batches(n, &add_file, &del_file)?;
    ns.ip(&["-batch", path_str(&add_file)?])?;
    let start = Instant::now();
    let mut delete = Command::new("ip");
    delete.args(["-n", ns.name(), "-batch", path_str(&del_file)?]);
    let child = delete.spawn().context("could not start `ip -batch`")?;
    let pid = child.id();
    let status = wait_child(child)?;
    let deleted_in = start.elapsed();
    if !status.success() {
        bail!("`{}` failed ({status})", cmd::display(&delete));
    }
    let query = format!(
        "SELECT count(*) FROM events WHERE actor_pid = {pid} AND kind = 'route' \
         AND route_table = {TABLE}"
    );
    let (mut stored, mut grew) = (0, Instant::now());
    while stored < u64::from(n) {
        interrupt::check()?;
        ensure!(
            start.elapsed() < STORE_TIMEOUT,
            "only {stored} of {n} removals stored after {STORE_TIMEOUT:?}"
        );
        if grew.elapsed() > STALLED {
            // Lost on the way (the daemon's count of lost records follows): say so, not hang.
            println!(
                "ingest: only {stored} of {n} route removals stored; none more for {STALLED:?}"
            );
            return Ok(());
        }
        thread::sleep(Duration::from_millis(100));
        let out = cmd::stdout_of(Command::new(sqlite3).arg(store).arg(&query))?;
        let now = out.trim().parse().unwrap_or(stored);
        if now > stored {
            (stored, grew) = (now, Instant::now());
        }
    }
    let all_in = start.elapsed();
    println!(
        "ingest: {n} route removals by `ip -batch` ({:.1} s); all {stored} stored {:.1} s after \
         it began: {:.0} events/s end to end; daemon {}",
        deleted_in.as_secs_f64(),
        all_in.as_secs_f64(),
        f64::from(n) / all_in.as_secs_f64(),
        daemon.memory().map_or_else(
            |_| "memory unknown".to_owned(),
            |(rss, hwm)| format!(
                "RSS {:.1} MiB (peak {:.1} MiB)",
                rss as f64 / 1024.0,
                hwm as f64 / 1024.0
            )
        )
    );
    Ok(())
}

fn wait_child(mut child: Child) -> Result<std::process::ExitStatus> {
    loop {
        if let Some(status) = child.try_wait()? {
            return Ok(status);
        }
        if interrupt::check().is_err() {
            // SAFETY: kill(2) on our own child's pid.
            unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGKILL) };
            let _ = child.wait();
            bail!("interrupted");
        }
        thread::sleep(Duration::from_millis(20));
    }
}

/// The running daemon; stopped with SIGTERM (SIGKILL if it hangs) when dropped.
struct Daemon {
    child: Option<Child>,
    stderr: mpsc::Receiver<String>,
}

impl Daemon {
    fn start(bin: &Path, config: &Path) -> Result<Self> {
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
        let daemon = Daemon {
            child: Some(child),
            stderr: receiver,
        };
        let deadline = Instant::now() + Duration::from_secs(180);
        loop {
            interrupt::check()?;
            match daemon.stderr.recv_timeout(Duration::from_millis(200)) {
                Ok(line) if line.contains("daemon started") => return Ok(daemon),
                Ok(line) => eprintln!("  daemon: {line}"),
                Err(mpsc::RecvTimeoutError::Disconnected) => bail!("the daemon exited at start"),
                Err(mpsc::RecvTimeoutError::Timeout) => {}
            }
            ensure!(
                Instant::now() < deadline,
                "the daemon did not start in 180 s"
            );
        }
    }

    fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    /// utime + stime so far.
    fn cpu_time(&self) -> Result<Duration> {
        procfs::cpu_time(self.pid())
    }

    /// (VmRSS, VmHWM) in KiB.
    fn memory(&self) -> Result<(u64, u64)> {
        procfs::memory(self.pid())
    }

    /// SIGTERM and wait; returns the daemon's remaining stderr lines.
    fn stop(mut self) -> Result<Vec<String>> {
        let Some(mut child) = self.child.take() else {
            return Ok(Vec::new());
        };
        // SAFETY: kill(2) on our own child's pid.
        unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) };
        let status = child.wait()?;
        ensure!(status.success(), "the daemon exited with {status}");
        Ok(self.stderr.try_iter().collect())
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            // SAFETY: kill(2) on our own child's pid.
            unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGKILL) };
            let _ = child.wait();
        }
    }
}
