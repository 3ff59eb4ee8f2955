//! The report bench: N synthetic events ([`data`]) as JSON lines and as the daemon's SQLite
//! store, then `routeguard report --format html` on each (`--input` and `--db`), alternated
//! `--runs` times: wall time and the child's peak memory side by side, with the load average
//! (the machine is shared; the figures mean little when it is far above the core count).
mod data;

use std::{
    fs,
    os::unix::process::ExitStatusExt as _,
    path::PathBuf,
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
}

/// Target from issue 7: an HTML report of a store of a million events in under two seconds.
const TARGET_SECS: f64 = 2.0;

pub fn run(args: &Args) -> Result<()> {
    let bin = super::routeguard_bin(args.bin.as_deref())?;
    let dir = super::bench_dir()?;
    let jsonl = dir.join(format!("report-{}.jsonl", args.events));
    let db = dir.join(format!("report-{}.db", args.events));
    let out = dir.join("report.html");
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
    let inputs = [("JSONL", "--input", &jsonl), ("store", "--db", &db)];
    let mut times: [Vec<f64>; 2] = [Vec::new(), Vec::new()];
    let mut peaks: [Vec<u64>; 2] = [Vec::new(), Vec::new()];
    let mut cpus: [Vec<f64>; 2] = [Vec::new(), Vec::new()];
    for run in 1..=args.runs {
        for (n, (name, flag, path)) in inputs.iter().enumerate() {
            let load = super::procfs::load_average_1m();
            let m = measure(
                Command::new(&bin)
                    .args(["report", "--format", "html", flag])
                    .arg(path)
                    .arg("--out")
                    .arg(&out),
            )?;
            ensure!(
                m.status.success(),
                "routeguard report {flag} failed: {}",
                m.status
            );
            println!(
                "run {run} {name:<5}: {:.2} s ({:.2} s CPU), peak {:.0} MiB, {:.1} MiB of HTML (load average {load})",
                m.secs,
                m.cpu_secs,
                m.peak_kib as f64 / 1024.0,
                mib(fs::metadata(&out).map_or(0, |m| m.len())),
            );
            times[n].push(m.secs);
            peaks[n].push(m.peak_kib);
            cpus[n].push(m.cpu_secs);
        }
    }
    let (jt, st) = (median(&mut times[0]), median(&mut times[1]));
    let (jc, sc) = (median(&mut cpus[0]), median(&mut cpus[1]));
    let (jp, sp) = (
        peaks[0].iter().max().copied().unwrap_or(0),
        peaks[1].iter().max().copied().unwrap_or(0),
    );
    println!(
        "bench report: {} events, HTML report, median of {}: JSONL {jt:.2} s ({jc:.2} s CPU) / {:.0} MiB, store {st:.2} s ({sc:.2} s CPU) / {:.0} MiB (store/JSONL time {:.2}); target store < {TARGET_SECS} s: {}; load average {}",
        args.events,
        args.runs,
        jp as f64 / 1024.0,
        sp as f64 / 1024.0,
        st / jt,
        if st < TARGET_SECS { "met" } else { "MISSED" },
        super::procfs::load_average_1m()
    );
    if !args.keep {
        for p in [&jsonl, &db] {
            fs::remove_file(p).ok();
        }
    }
    Ok(())
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
