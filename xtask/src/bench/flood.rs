//! `cargo xtask bench flood`: root's removals under a flood (issue 17, item 1).
//!
//! Three arms, each a fresh `routeguard trace --json` (default ring) over a fresh namespace in
//! which root removes `--removals` routes with `ip -batch` while the flood covers the whole burst:
//! (a) two processes without CAP_NET_ADMIN (uid 65534, `setpriv`) send 16 KiB batches of
//! RTM_DELRULE, each refused with EPERM, as fast as they can; (b) a process with CAP_NET_ADMIN
//! in a namespace of its own (uid 65534 after `unshare -rn`: what a pod can do) adds and
//! deletes its own routes as fast as it can; (c) both. Printed per arm: the flooders' messages
//! a second, root's removals recorded N/N, the other requests kept (events) and suppressed
//! (summed from the `suppressed` lines), ring loss. `--baseline BIN` runs another binary (main's)
//! in the same arms, alternated, for the side-by-side. With `--capture kernel-function` on a
//! kernel that refuses fentry (or with `--vm`), the arms run in a stock Debian kernel under QEMU.
use std::{
    fs,
    io::{BufRead as _, BufReader},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    thread,
    time::Duration,
};

use anyhow::{bail, Context as _, Result};

use super::{
    bench_dir, routeguard_bin, routes,
    tracer::Tracer,
    vm_run::{in_vm, vm_series, TraceTarget},
};
use crate::{cmd, interrupt, netns::Netns};

#[derive(clap::Args)]
pub struct Args {
    /// Routes root removes in each arm.
    #[arg(long, default_value_t = 20_000, value_parser = clap::value_parser!(u32).range(1..=200_000))]
    removals: u32,
    /// Runs of the three arms.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=20))]
    runs: u32,
    /// Seconds each flood lasts; root starts after the first two.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(4..=120))]
    seconds: u64,
    /// Another binary (e.g. main's) run in the same arms, side by side.
    #[arg(long)]
    baseline: Option<PathBuf>,
    /// Which arms to run: any of `a`, `b`, `c`.
    #[arg(long, default_value = "abc")]
    arms: String,
    #[command(flatten)]
    traced: TraceTarget,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Arm {
    Refused,
    OwnNamespace,
    Both,
}

impl Arm {
    fn name(self) -> &'static str {
        match self {
            Arm::Refused => "(a) 2 unprivileged flooders",
            Arm::OwnNamespace => "(b) CAP_NET_ADMIN in its own netns",
            Arm::Both => "(c) both",
        }
    }
}

/// What one arm measured.
struct Measured {
    flood_messages_per_s: f64,
    root_recorded: u64,
    kept: u64,
    suppressed: u64,
    lost: Option<u64>,
    ip_seconds: f64,
    /// Every flooder was still flooding when root's `ip` finished.
    covered: bool,
}

const FLOOD_SCRIPT: &str = include_str!("../../../tests/clients/flood_rule_del.py");

pub fn run(args: &Args) -> Result<()> {
    if !cmd::is_root() {
        bail!("bench flood needs root (namespaces, setpriv)");
    }
    let bin = routeguard_bin(args.traced.bin.as_deref())?;
    if let Some(series) = vm_series(args.traced.vm.as_deref(), &args.traced.capture, &bin)? {
        if args.baseline.is_some() {
            bail!("--baseline runs here only: leave it out with --vm or --capture kernel-function");
        }
        let argv = vec![
            format!("--removals={}", args.removals),
            format!("--runs={}", args.runs),
            format!("--seconds={}", args.seconds),
            format!("--arms={}", args.arms),
            format!("--capture={}", args.traced.capture),
        ];
        return in_vm("flood", &argv, series, &bin);
    }
    if kernel_function(args) && !crate::vm::in_guest() {
        bail!(
            "bench flood on the kernel-function path removes root's routes in the initial \
             namespace (there, the only one exempt from budgets): it does so only in a QEMU \
             guest; add --vm 6.12"
        );
    }
    let baseline = args
        .baseline
        .as_deref()
        .map(fs::canonicalize)
        .transpose()
        .context("--baseline")?;
    let dir = bench_dir()?;
    let script = dir.join("flood_rule_del.py");
    fs::write(&script, FLOOD_SCRIPT).with_context(|| format!("writing {}", script.display()))?;
    let add_file = dir.join("flood-add.batch");
    let del_file = dir.join("flood-del.batch");
    routes::write_batches(args.removals, &add_file, &del_file)?;
    println!(
        "bench flood: root removes {} routes in {} {} s into a {} s flood; capture {}; load: {}",
        args.removals,
        if kernel_function(args) {
            "the (guest's) initial namespace"
        } else {
            "its own namespace"
        },
        2,
        args.seconds,
        args.traced.capture,
        uptime()
    );
    let mut bins: Vec<(&str, &Path)> = vec![("this", bin.as_path())];
    if let Some(b) = &baseline {
        bins.push(("baseline", b.as_path()));
    }
    for run in 1..=args.runs {
        let arms = [
            ('a', Arm::Refused),
            ('b', Arm::OwnNamespace),
            ('c', Arm::Both),
        ];
        for (_, arm) in arms.iter().filter(|(c, _)| args.arms.contains(*c)) {
            let arm = *arm;
            for (label, bin) in &bins {
                interrupt::check()?;
                let m = arm_once(bin, arm, args, &script, &add_file, &del_file, &dir)?;
                println!(
                    "run {run} {:<36} {label:<8}: flood {:>10.0} msg/s; root {}/{} recorded \
                     (ip {:.2} s, the flood covered it: {}); other requests kept {}, \
                     suppressed {}; ring loss {}",
                    arm.name(),
                    m.flood_messages_per_s,
                    m.root_recorded,
                    args.removals,
                    m.ip_seconds,
                    if m.covered { "yes" } else { "NO" },
                    m.kept,
                    m.suppressed,
                    m.lost.map_or_else(|| "?".to_owned(), |l| l.to_string()),
                );
            }
        }
    }
    println!("load after: {}", uptime());
    Ok(())
}

fn uptime() -> String {
    fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

fn arm_once(
    bin: &Path,
    arm: Arm,
    args: &Args,
    script: &Path,
    add_file: &Path,
    del_file: &Path,
    dir: &Path,
) -> Result<Measured> {
    // Root's removals must not be budgeted: on the syscall path they go into a namespace of
    // their own that a protect entry names (selecting nothing there), which exempts it like the
    // initial one. Protect entries need the syscall path (restores need its mirror), so on the
    // kernel-function path root removes in the initial namespace: only ever in a guest (`run`).
    let kfunc = kernel_function(args);
    let root_ns = if kfunc {
        Netns::attach_initial(&format!("rgb-flood-init-{}", std::process::id()))?
    } else {
        Netns::create(&format!("rgb-flood-root-{}", std::process::id()))?
    };
    let flood_ns = Netns::create(&format!("rgb-flood-{}", std::process::id()))?;
    routes::add_link(&root_ns)?;
    cmd::run(Command::new("ip").args([
        "-n",
        root_ns.name(),
        "-batch",
        routes::path_str(add_file)?,
    ]))?;
    let out = dir.join("flood-trace.jsonl");
    // No `--netns` filter: the flooders' events are what "kept" counts. A binary without
    // budgets just protects nothing.
    let protect = format!("kind=rule table=4242 netns={}", root_ns.name());
    let mut trace_args = vec!["--json", "--capture", &args.traced.capture];
    if !kfunc {
        trace_args.extend(["--protect", &protect]);
    }
    let tracer = Tracer::start_unfiltered(bin, &out, &trace_args)?;
    let seconds = args.seconds.to_string();
    let mut flooders: Vec<Child> = Vec::new();
    if matches!(arm, Arm::Refused | Arm::Both) {
        for _ in 0..2 {
            flooders.push(
                Command::new("ip")
                    .args(["netns", "exec", flood_ns.name(), "setpriv"])
                    .args(["--reuid", "65534", "--regid", "65534", "--clear-groups"])
                    // The system interpreter: uid 65534 cannot read pyenv's under /root.
                    .args(["/usr/bin/python3", routes::path_str(script)?, &seconds])
                    .stdout(Stdio::piped())
                    .spawn()
                    .context("starting a flooder")?,
            );
        }
    }
    let mut own = if matches!(arm, Arm::OwnNamespace | Arm::Both) {
        Some(own_namespace_flooder(&seconds)?)
    } else {
        None
    };
    thread::sleep(Duration::from_secs(2));
    let ip_took = routes::time_deletion(&root_ns, del_file)?;
    let mut covered = true;
    for f in flooders.iter_mut().chain(own.as_mut()) {
        covered &= matches!(f.try_wait(), Ok(None));
    }
    let mut messages = 0u64;
    let mut flood_secs = 0f64;
    for mut f in flooders {
        let stdout = f.stdout.take().context("flooder stdout")?;
        if let Some(Ok(line)) = BufReader::new(stdout).lines().next() {
            // "<pid> <sends> <messages> <seconds>"
            let w: Vec<&str> = line.split_whitespace().collect();
            messages += w.get(2).and_then(|m| m.parse().ok()).unwrap_or(0);
            flood_secs = flood_secs.max(w.get(3).and_then(|s| s.parse().ok()).unwrap_or(0.0));
        }
        let _ = f.wait();
    }
    if let Some(mut own) = own {
        let stdout = own.stdout.take().context("own-namespace flooder stdout")?;
        if let Some(Ok(line)) = BufReader::new(stdout).lines().next() {
            messages += line.trim().parse::<u64>().unwrap_or(0);
        }
        let _ = own.wait();
        flood_secs = flood_secs.max(args.seconds as f64);
    }
    thread::sleep(Duration::from_secs(2));
    // A binary without budgets may still be decoding the flood long after: what it wrote by
    // then is what it recorded (it is killed, and its ring loss is unknown).
    let lost = match tracer.stop_within(Duration::from_secs(120)) {
        Ok(report) => report.lost,
        Err(err) => {
            println!("bench: {err:#}; killed, counting what it wrote");
            None
        }
    };
    // The initial namespace is named `host` in events.
    let root_name = if kfunc { "host" } else { root_ns.name() };
    let (root_recorded, kept, suppressed) = tally(&out, root_name)?;
    let _ = fs::remove_file(&out);
    if kfunc {
        // Its routes go with it; the next arm adds them again.
        root_ns.ip(&["link", "delete", "d0"])?;
    }
    Ok(Measured {
        flood_messages_per_s: messages as f64 / flood_secs.max(1e-9),
        root_recorded,
        kept,
        suppressed,
        lost,
        ip_seconds: ip_took.as_secs_f64(),
        covered,
    })
}

fn kernel_function(args: &Args) -> bool {
    args.traced.capture == "kernel-function"
}

/// uid 65534 in a user and network namespace of its own (`unshare -rn`), adding and deleting
/// 1,000 routes on `lo` over and over for `seconds`; prints the removals it made.
fn own_namespace_flooder(seconds: &str) -> Result<Child> {
    let script = format!(
        "ip link set lo up; for i in $(seq 0 999); do echo \"route add 10.77.$((i/250)).$((i%250))/32 dev lo table 100\"; done > /tmp/rgb-own-add.$$; \
         sed 's/route add/route del/' /tmp/rgb-own-add.$$ > /tmp/rgb-own-del.$$; n=0; end=$(( $(date +%s) + {seconds} )); \
         while [ $(date +%s) -lt $end ]; do ip -batch /tmp/rgb-own-add.$$; ip -batch /tmp/rgb-own-del.$$; n=$((n+1000)); done; \
         rm -f /tmp/rgb-own-add.$$ /tmp/rgb-own-del.$$; echo $n"
    );
    Command::new("setpriv")
        .args(["--reuid", "65534", "--regid", "65534", "--clear-groups"])
        .args(["unshare", "-rn", "sh", "-c", &script])
        .stdout(Stdio::piped())
        .spawn()
        .context("starting the own-namespace flooder (unshare -rn as uid 65534)")
}

/// Root's removals recorded (in `root_ns`, `removed`), the other requests recorded, and the
/// requests the `suppressed` lines sum up. Substring checks: a baseline's file can be GBs.
fn tally(out: &Path, root_ns: &str) -> Result<(u64, u64, u64)> {
    let file = fs::File::open(out).with_context(|| format!("opening {}", out.display()))?;
    let root_name = format!("\"name\":\"{root_ns}\"");
    let (mut root, mut kept, mut suppressed) = (0, 0, 0);
    for line in BufReader::new(file).lines() {
        let line = line?;
        if line.contains("\"event\":\"suppressed\"") {
            if let Ok(v) = serde_json::from_str::<serde_json::Value>(&line) {
                suppressed += v["count"].as_u64().unwrap_or(0);
            }
        } else if line.contains(&root_name) && line.contains("\"outcome\":\"removed\"") {
            root += 1;
        } else {
            kept += 1;
        }
    }
    Ok((root, kept, suppressed))
}
