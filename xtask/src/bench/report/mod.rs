//! The report bench: N synthetic events ([`data`]) as JSON lines and as the daemon's SQLite
//! store, then `routeguard report --format html` on each (`--input` and `--db`), alternated
//! `--runs` times, each input read through first so that every report reads it from the page
//! cache: wall time and the child's peak memory side by side, with the load average (the
//! machine is shared; the figures mean little when it is far above the core count). With
//! `--baseline`, a second binary (e.g. a build from before a change) reports the same inputs in
//! the same run, turn about with the first, and the bench prints the ratios and whether the two
//! reports are the same. With `--fleet`, a fleet's stores instead ([`fleet`]), with or without
//! `--baseline`.
mod data;
mod fleet;

use std::{
    fs,
    os::unix::process::ExitStatusExt as _,
    path::{Path, PathBuf},
    process::{Command, ExitStatus},
    time::Instant,
};

use anyhow::{bail, ensure, Context as _, Result};

#[derive(clap::Args)]
pub struct Args {
    /// Number of synthetic events.
    #[arg(long, default_value_t = 1_000_000, value_parser = clap::value_parser!(u64).range(1..=100_000_000))]
    events: u64,
    /// Reports of each input, alternated (JSONL, store, JSONL, …); medians are printed.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..=50))]
    runs: u32,
    /// Keep the generated inputs in target/bench and reuse them when they exist.
    #[arg(long)]
    keep: bool,
    /// Bench this routeguard binary instead of building target/release/routeguard.
    #[arg(long, value_name = "PATH")]
    bin: Option<PathBuf>,
    /// Also bench this routeguard binary (e.g. one built before a change), turn about with the
    /// first on the same inputs: times, memory and their ratios side by side, and whether both
    /// wrote the same report.
    #[arg(long, value_name = "PATH")]
    baseline: Option<PathBuf>,
    /// Fleet mode: a report of --nodes stores of --node-events events each (`--db` repeated),
    /// side by side with one node's report of --events events (and, with --baseline, both
    /// reports by both binaries).
    #[arg(long)]
    fleet: bool,
    /// Nodes in fleet mode.
    #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u32).range(2..=1000))]
    nodes: u32,
    /// Events per node in fleet mode.
    #[arg(long, default_value_t = 20_000, value_parser = clap::value_parser!(u64).range(1..=10_000_000))]
    node_events: u64,
}

/// Target from issue 7: an HTML report of a store of a million events in under two seconds.
const TARGET_SECS: f64 = 2.0;
/// Target from issue 16: a JSONL report at most this many times the baseline's time.
const TARGET_JSONL_RATIO: f64 = 1.5;

/// One binary's reports of one input.
#[derive(Default)]
struct Series {
    times: Vec<f64>,
    cpus: Vec<f64>,
    peaks: Vec<u64>,
}

impl Series {
    /// Median time, median CPU time, largest peak (KiB).
    fn summary(&mut self) -> (f64, f64, u64) {
        (
            median(&mut self.times),
            median(&mut self.cpus),
            self.peaks.iter().max().copied().unwrap_or(0),
        )
    }
}

pub fn run(args: &Args) -> Result<()> {
    let bin = super::routeguard_bin(args.bin.as_deref())?;
    let baseline = args
        .baseline
        .as_deref()
        .map(|b| fs::canonicalize(b).with_context(|| format!("--baseline {}", b.display())))
        .transpose()?;
    if args.fleet {
        return fleet::run(args, &bin, baseline.as_deref());
    }
    let dir = super::bench_dir()?;
    let jsonl = dir.join(format!("report-{}.jsonl", args.events));
    let db = dir.join(format!("report-{}.db", args.events));
    if args.keep && jsonl.exists() && db.exists() {
        println!(
            "bench report: reusing {} and {}",
            jsonl.display(),
            db.display()
        );
    } else {
        let t = Instant::now();
        let bytes = data::write(&jsonl, &db, args.events)?;
        println!(
            "bench report: {} events written in {:.1} s: {:.0} MiB of JSON lines ({}), a {:.0} MiB store ({})",
            args.events,
            t.elapsed().as_secs_f64(),
            mib(bytes),
            jsonl.display(),
            mib(fs::metadata(&db).map_or(0, |m| m.len())),
            db.display()
        );
    }
    // The binaries benched: this one, then the baseline (each writing a report of its own).
    let mut bins = vec![("this", bin, dir.join("report.html"))];
    if let Some(base) = baseline {
        println!("bench report: this binary {}", bins[0].1.display());
        println!("bench report: baseline    {}", base.display());
        bins.push(("baseline", base, dir.join("report-baseline.html")));
    }
    let inputs = [("JSONL", "--input", &jsonl), ("store", "--db", &db)];
    // series[input][binary]
    let mut series: Vec<Vec<Series>> = inputs
        .iter()
        .map(|_| bins.iter().map(|_| Series::default()).collect())
        .collect();
    let mut same = [true, true];
    for run in 1..=args.runs {
        for (n, (name, flag, path)) in inputs.iter().enumerate() {
            // Turn about: the baseline goes first in even runs, so neither always reads a file
            // the other has just warmed.
            let mut order: Vec<usize> = (0..bins.len()).collect();
            if run % 2 == 0 {
                order.reverse();
            }
            // From the page cache, whoever goes first: the machine is shared, and other work
            // evicts a GB-sized input between runs (a first report then read it from disk, at
            // several times the wall time for the same CPU time).
            warm(path)?;
            for b in order {
                let (label, bin, out) = &bins[b];
                let load = super::procfs::load_average_1m();
                let m = measure(
                    Command::new(bin)
                        .args(["report", "--format", "html", flag])
                        .arg(path)
                        .arg("--out")
                        .arg(out),
                )?;
                ensure!(
                    m.status.success(),
                    "{} report {flag} failed: {}",
                    bin.display(),
                    m.status
                );
                let who = if bins.len() > 1 {
                    format!(" {label:<8}")
                } else {
                    String::new()
                };
                println!(
                    "run {run} {name:<5}{who}: {:.2} s ({:.2} s CPU), peak {:.0} MiB, {:.1} MiB of HTML (load average {load})",
                    m.secs,
                    m.cpu_secs,
                    m.peak_kib as f64 / 1024.0,
                    mib(fs::metadata(out).map_or(0, |m| m.len())),
                );
                let s = &mut series[n][b];
                s.times.push(m.secs);
                s.peaks.push(m.peak_kib);
                s.cpus.push(m.cpu_secs);
            }
            if bins.len() > 1 {
                same[n] &= same_report(&bins[0].2, &bins[1].2)?;
            }
        }
    }
    let summary: Vec<Vec<(f64, f64, u64)>> = series
        .iter_mut()
        .map(|per_bin| per_bin.iter_mut().map(Series::summary).collect())
        .collect();
    let store_met = |t: f64| if t < TARGET_SECS { "met" } else { "MISSED" };
    let ((jt, jc, jp), (st, sc, sp)) = (summary[0][0], summary[1][0]);
    if bins.len() == 1 {
        println!(
            "bench report: {} events, HTML report, median of {}: JSONL {jt:.2} s ({jc:.2} s CPU) / {:.0} MiB, store {st:.2} s ({sc:.2} s CPU) / {:.0} MiB (store/JSONL time {:.2}); target store < {TARGET_SECS} s: {}; load average {}",
            args.events,
            args.runs,
            kib_to_mib(jp),
            kib_to_mib(sp),
            st / jt,
            store_met(st),
            super::procfs::load_average_1m()
        );
    } else {
        let ((bjt, bjc, bjp), (bst, bsc, bsp)) = (summary[0][1], summary[1][1]);
        let ratio = jt / bjt;
        println!(
            "bench report: {} events, HTML report, median of {}, this binary / baseline: JSONL {jt:.2} s ({jc:.2} s CPU) / {:.0} MiB vs {bjt:.2} s ({bjc:.2} s CPU) / {:.0} MiB: time ×{ratio:.2}, CPU ×{:.2}; store {st:.2} s ({sc:.2} s CPU) / {:.0} MiB vs {bst:.2} s ({bsc:.2} s CPU) / {:.0} MiB: time ×{:.2}; target JSONL ≤ {TARGET_JSONL_RATIO}× the baseline: {}; target store < {TARGET_SECS} s: {}; same report from both: JSONL {}, store {}; load average {}",
            args.events,
            args.runs,
            kib_to_mib(jp),
            kib_to_mib(bjp),
            jc / bjc,
            kib_to_mib(sp),
            kib_to_mib(bsp),
            st / bst,
            if ratio <= TARGET_JSONL_RATIO { "met" } else { "MISSED" },
            store_met(st),
            yes_no(same[0]),
            yes_no(same[1]),
            super::procfs::load_average_1m()
        );
    }
    if !args.keep {
        for p in [&jsonl, &db] {
            fs::remove_file(p).ok();
        }
    }
    Ok(())
}

/// Reads `path` (and a store's write-ahead log) through, into the page cache.
fn warm(path: &Path) -> Result<()> {
    let wal = PathBuf::from(format!("{}-wal", path.display()));
    for p in [path, wal.as_path()] {
        match fs::File::open(p) {
            Ok(mut f) => {
                std::io::copy(&mut f, &mut std::io::sink())
                    .with_context(|| format!("reading {}", p.display()))?;
            }
            Err(_) if p == wal.as_path() => {}
            Err(e) => return Err(e).with_context(|| format!("opening {}", p.display())),
        }
    }
    Ok(())
}

/// Whether two HTML reports are the same but for the time each was generated (the footer).
fn same_report(a: &Path, b: &Path) -> Result<bool> {
    let read = |p: &Path| fs::read_to_string(p).with_context(|| format!("reading {}", p.display()));
    let (a, b) = (read(a)?, read(b)?);
    let body = |s: &str| -> Vec<String> {
        s.lines()
            .filter(|l| !l.starts_with("<footer class=\"meta\">"))
            .map(str::to_owned)
            .collect()
    };
    Ok(body(&a) == body(&b))
}

fn yes_no(b: bool) -> &'static str {
    if b {
        "yes"
    } else {
        "NO"
    }
}

fn kib_to_mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1 << 20) as f64
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

struct Measured {
    status: ExitStatus,
    secs: f64,
    /// Peak resident set of the child alone.
    peak_kib: u64,
    /// User plus system CPU time of the child: what the load average inflates least.
    cpu_secs: f64,
}

/// Runs `cmd` and reaps it with wait4(2), which gives this child's own resource usage (getrusage
/// RUSAGE_CHILDREN would give the largest of all children so far).
fn measure(cmd: &mut Command) -> Result<Measured> {
    let start = Instant::now();
    let child = cmd
        .spawn()
        .with_context(|| format!("running {:?}", cmd.get_program()))?;
    let pid = libc::pid_t::try_from(child.id()).context("child pid")?;
    let mut status = 0;
    // SAFETY: wait4 only writes into the zeroed struct we own.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: `pid` is our child, not yet reaped (`child` is never waited on); both pointers
    // are valid for writes.
    let reaped = unsafe { libc::wait4(pid, &mut status, 0, &mut ru) };
    let secs = start.elapsed().as_secs_f64();
    if reaped != pid {
        bail!("wait4({pid}): {}", std::io::Error::last_os_error());
    }
    Ok(Measured {
        status: ExitStatus::from_raw(status),
        secs,
        peak_kib: u64::try_from(ru.ru_maxrss).unwrap_or(0),
        cpu_secs: [ru.ru_utime, ru.ru_stime]
            .iter()
            .map(|t| t.tv_sec as f64 + t.tv_usec as f64 / 1e6)
            .sum(),
    })
}
