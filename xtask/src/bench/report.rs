//! The report bench: write N synthetic events as JSON lines (what `trace --json` writes), then
//! time `routeguard report --format html` on them and read the child's peak memory.
//!
//! The events imitate a busy host: 40 processes (networkd, CNI agents, `ip` runs) removing
//! routes and rules in bursts of 50, one burst every 2 s, a tenth failing with ESRCH.
use std::{
    fs,
    io::{BufWriter, Write as _},
    path::{Path, PathBuf},
    process::Command,
    time::Instant,
};

use anyhow::{ensure, Context as _, Result};

#[derive(clap::Args)]
pub struct Args {
    /// Number of synthetic events.
    #[arg(long, default_value_t = 1_000_000, value_parser = clap::value_parser!(u64).range(1..=100_000_000))]
    events: u64,
    /// Bench this routeguard binary instead of building target/release/routeguard.
    #[arg(long, value_name = "PATH")]
    bin: Option<PathBuf>,
}

/// Target from issue 7: an HTML report of a million events in under two seconds.
const TARGET_SECS: f64 = 2.0;

pub fn run(args: &Args) -> Result<()> {
    let bin = super::routeguard_bin(args.bin.as_deref())?;
    let dir = super::bench_dir()?;
    let input = dir.join(format!("report-{}.jsonl", args.events));
    let out = dir.join("report.html");
    let t = Instant::now();
    let bytes = write_events(&input, args.events)?;
    println!(
        "bench report: {} events, {:.0} MiB of JSON lines written in {:.2} s ({})",
        args.events,
        bytes as f64 / (1 << 20) as f64,
        t.elapsed().as_secs_f64(),
        input.display()
    );
    let start = Instant::now();
    let status = Command::new(&bin)
        .args(["report", "--format", "html", "--input"])
        .arg(&input)
        .arg("--out")
        .arg(&out)
        .status()
        .with_context(|| format!("running {}", bin.display()))?;
    let secs = start.elapsed().as_secs_f64();
    ensure!(status.success(), "routeguard report failed: {status}");
    let peak_kib = children_peak_rss_kib();
    let html = fs::metadata(&out).map(|m| m.len()).unwrap_or(0);
    println!(
        "bench report: HTML report in {secs:.2} s (target < {TARGET_SECS} s: {}), peak memory {:.0} MiB, {:.1} MiB of HTML ({})",
        if secs < TARGET_SECS { "met" } else { "MISSED" },
        peak_kib as f64 / 1024.0,
        html as f64 / (1 << 20) as f64,
        out.display()
    );
    fs::remove_file(&input).ok();
    Ok(())
}

/// Peak resident set of the waited-for children (only the report process here), in KiB.
fn children_peak_rss_kib() -> i64 {
    // SAFETY: getrusage only writes into the zeroed struct we own.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: RUSAGE_CHILDREN is a valid `who`, `ru` is a valid pointer.
    unsafe { libc::getrusage(libc::RUSAGE_CHILDREN, &mut ru) };
    ru.ru_maxrss
}

const COMMS: &[(&str, &str, Option<&str>)] = &[
    (
        "systemd-network",
        "/usr/lib/systemd/systemd-networkd",
        Some("systemd-networkd.service"),
    ),
    ("kube-router", "/usr/local/bin/kube-router", None),
    (
        "NetworkManager",
        "/usr/sbin/NetworkManager",
        Some("NetworkManager.service"),
    ),
    ("ip", "/usr/sbin/ip", Some("session-1.scope")),
];

fn write_events(path: &Path, n: u64) -> Result<u64> {
    let file = fs::File::create(path).with_context(|| format!("creating {}", path.display()))?;
    let mut w = BufWriter::with_capacity(1 << 20, file);
    let mut bytes = 0u64;
    // 2026-11-27T00:00:00Z
    let day = 1_795_737_600i64;
    let mut line = String::with_capacity(1400);
    for i in 0..n {
        let burst = i / 50;
        let secs = day + (burst * 2) as i64;
        let nanos = (i % 50) * 3_000_000;
        let (h, m, s) = ((secs % 86_400) / 3600, (secs % 3600) / 60, secs % 60);
        let actor = (burst % 40) as usize;
        let (comm, exe, unit) = COMMS[actor % COMMS.len()];
        let pid = 1000 + actor as u64;
        let failed = i % 10 == 9;
        let obj = i % 20_000;
        let unit_json = unit.map_or("null".to_string(), |u| format!("\"{u}\""));
        let cgroup = unit.map_or("null".to_string(), |u| format!("\"/system.slice/{u}\""));
        let (kind, route, rule) = if i % 3 == 0 {
            (
                "rule",
                "null".to_string(),
                format!(
                    r#"{{"priority":{},"table":77,"from":null,"to":null,"iif":null,"oif":null,"fwmark":null,"action":null,"protocol":null,"invert":false}}"#,
                    100 + obj % 1000
                ),
            )
        } else {
            (
                "route",
                format!(
                    r#"{{"table":77,"dst":"10.{}.{}.0/24","gateway":"10.0.0.1","dev":null,"oif":null,"protocol":null,"scope":null,"type":null,"priority":null,"src":null,"tos":null,"nhid":null}}"#,
                    obj / 256 % 256,
                    obj % 256
                ),
                "null".to_string(),
            )
        };
        line.clear();
        use std::fmt::Write as _;
        let _ = write!(
            line,
            r#"{{"schema_version":1,"ts":"2026-11-27T{h:02}:{m:02}:{s:02}.{nanos:09}Z","kind":"{kind}","family":"inet","cause":"request","outcome":"{}","errno":{},"error":{},"capture":"syscall","netns":{{"inode":4026531840,"name":"host"}},"actor":{{"pid":{pid},"tid":{pid},"comm":"{comm}","exe":"{exe}","cmdline":"{exe} --sync","argv":["{exe}","--sync"],"uid":0,"ppid":1,"ancestry":[{{"pid":1,"comm":"systemd"}}],"cgroup":{cgroup},"unit":{unit_json},"container":null}},"request":{{"syscall":"sendmsg","op":"RTM_DEL{}","seq":{i},"nlmsg_flags":5,"ack_requested":true}},"route":{route},"rule":{rule},"nexthop":null,"link":null,"address":null}}"#,
            if failed { "failed" } else { "removed" },
            if failed { "3" } else { "null" },
            if failed { "\"ESRCH\"" } else { "null" },
            kind.to_uppercase(),
        );
        line.push('\n');
        w.write_all(line.as_bytes())?;
        bytes += line.len() as u64;
    }
    w.flush()?;
    Ok(bytes)
}
