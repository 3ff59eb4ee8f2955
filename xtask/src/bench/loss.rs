//! The loss bench: bursts of route removals with `routeguard trace` and `ip monitor route`
//! listening side by side, in a network namespace of its own; prints how many removals each saw.
//!
//! Two bursts per run: (a) `ip route flush table 100` of a table of N routes (ip deletes in
//! batches without asking for acks, so routeguard's events are `unknown` or `removed`), and (b)
//! M routes deleted by `ip -batch` as fast as it goes. Every route event of table 100 counts,
//! whatever its outcome or cause; `ip monitor` counts its `Deleted` lines.
use std::{
    collections::{BTreeMap, HashSet},
    fs::{self, File},
    io::{BufRead as _, BufReader},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    thread,
    time::{Duration, Instant},
};

use anyhow::{bail, ensure, Context as _, Result};

use super::{
    routes::{add_link, path_str, write_batches, TABLE},
    tracer::{LineCounter, Tracer, TracerReport},
};
use crate::{cmd, interrupt, netns::Netns};

#[derive(clap::Args)]
pub struct Args {
    /// Routes in table 100 before `ip route flush table 100`.
    #[arg(long, default_value_t = 1_000_000, value_parser = clap::value_parser!(u32).range(1..=16_000_000))]
    routes: u32,
    /// Routes deleted by `ip -batch` in the second burst.
    #[arg(long, default_value_t = 100_000, value_parser = clap::value_parser!(u32).range(1..=16_000_000))]
    deletes: u32,
    /// Number of runs (each: one flush, one batch delete).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=100))]
    runs: u32,
    /// Bench this routeguard binary instead of building target/release/routeguard.
    #[arg(long, value_name = "PATH")]
    bin: Option<PathBuf>,
}

/// Ring buffer for the burst: a million events must fit while userspace catches up.
const RING_SIZE: &str = "256M";
/// Once routeguard has as many events as removals, a count that has not grown for this long is
/// final (a duplicate would still show).
const SETTLE_QUIET: Duration = Duration::from_secs(3);
/// Short of that, wait this long after the burst's command returned: routeguard writes in bursts
/// and was seen silent for 20 s while it caught up with a million-route flush.
const SETTLE_MAX: Duration = Duration::from_secs(60);
/// routeguard writes out what it holds before it exits on SIGINT.
const EXIT_TIMEOUT: Duration = Duration::from_secs(60);
/// `ip monitor` prints nothing when ready; its socket is joined well within this.
const MONITOR_START: Duration = Duration::from_millis(500);

pub fn run(args: &Args) -> Result<()> {
    interrupt::install();
    let bin = super::routeguard_bin(args.bin.as_deref())?;
    ensure!(
        cmd::is_root(),
        "the loss bench creates a network namespace and loads eBPF programs: run it as root"
    );
    let dir = super::bench_dir()?;
    let fill_file = dir.join("loss-fill.batch");
    let add_file = dir.join("loss-add.batch");
    let del_file = dir.join("loss-del.batch");
    // The fill's deletions are never run (the flush removes them); a scratch file.
    write_batches(args.routes, &fill_file, &dir.join("loss-fill-del.batch"))?;
    write_batches(args.deletes, &add_file, &del_file)?;

    let ns = Netns::create(&format!("rg-loss-{}", std::process::id()))?;
    add_link(&ns)?;
    ns.ip(&["addr", "add", "10.255.0.1/16", "dev", "d0"])?;
    println!(
        "bench loss: netns {}, routeguard `trace --json --netns {} --ring-size {RING_SIZE}` and \
         `ip -n {} monitor route` side by side; {} run(s)",
        ns.name(),
        ns.name(),
        ns.name(),
        args.runs
    );

    for run in 1..=args.runs {
        interrupt::check()?;
        let start = Instant::now();
        ns.ip(&["-batch", path_str(&fill_file)?])?;
        println!(
            "run {run} (a) flush: {} routes added to table {TABLE} in {:.1} s",
            args.routes,
            start.elapsed().as_secs_f64()
        );
        let seen = observe(&bin, &ns, &dir, "flush", u64::from(args.routes), || {
            flush(&ns)
        })?;
        seen.print(u64::from(args.routes), "`ip route flush table 100`");

        interrupt::check()?;
        ns.ip(&["-batch", path_str(&add_file)?])?;
        println!(
            "run {run} (b) batch delete: {} routes added to table {TABLE}",
            args.deletes
        );
        let seen = observe(&bin, &ns, &dir, "batch", u64::from(args.deletes), || {
            ns.ip(&["-batch", path_str(&del_file)?])
        })?;
        seen.print(u64::from(args.deletes), "`ip -batch` (route del lines)");
    }
    Ok(())
}

/// What one burst looked like from both listeners.
struct Seen {
    action: Duration,
    /// Routes still in table 100 after the burst's command returned.
    left: u64,
    /// From the start of the burst to routeguard's last new event.
    routeguard_done: Duration,
    report: TracerReport,
    events: EventCounts,
    monitor: MonitorCounts,
}

impl Seen {
    fn print(&self, added: u64, what: &str) {
        let expected = added - self.left.min(added);
        println!(
            "  {what} took {:.2} s{}; routeguard's last event {:.2} s after it started",
            self.action.as_secs_f64(),
            if self.left > 0 {
                format!(", {} routes left in the table", self.left)
            } else {
                String::new()
            },
            self.routeguard_done.as_secs_f64()
        );
        println!(
            "  expected {expected}, routeguard saw {} (lost {}), ip monitor saw {}",
            self.events.table_routes,
            self.report.lost_display(),
            self.monitor.deleted
        );
        println!(
            "  routeguard: summary {} events, {} lost; {} distinct prefixes; outcome {}; cause {}",
            self.report
                .summary_events
                .map_or_else(|| "?".to_owned(), |e| e.to_string()),
            self.report.lost_display(),
            self.events.distinct,
            tally(&self.events.outcomes),
            tally(&self.events.causes)
        );
        if self.events.other > 0 {
            println!(
                "  routeguard: {} other events (not kind route in table {TABLE})",
                self.events.other
            );
        }
        if self.events.table_routes < expected {
            println!(
                "  routeguard MISSED {} of {expected} removals beyond the {} it counted as lost",
                expected - self.events.table_routes,
                self.report.lost_display()
            );
        }
        if !self.monitor.stderr.is_empty() {
            println!(
                "  ip monitor stderr ({} lines): {}",
                self.monitor.stderr.len(),
                self.monitor.stderr[0]
            );
        }
    }
}

/// Starts both listeners, runs `action`, waits until routeguard's and ip monitor's counts stop
/// growing (at most [`SETTLE_MAX`] after `action` returned), stops both and counts.
fn observe(
    bin: &Path,
    ns: &Netns,
    dir: &Path,
    label: &str,
    added: u64,
    action: impl FnOnce() -> Result<()>,
) -> Result<Seen> {
    let trace_path = dir.join(format!("loss-{label}-trace.jsonl"));
    let monitor_path = dir.join(format!("loss-{label}-monitor.txt"));
    let tracer = Tracer::start_with(
        bin,
        ns.name(),
        &trace_path,
        &["--json", "--ring-size", RING_SIZE],
    )?;
    let monitor = Monitor::start(ns, &monitor_path)?;
    thread::sleep(MONITOR_START);

    let start = Instant::now();
    action()?;
    let action_time = start.elapsed();
    let left = count_table_routes(ns)?;
    let expected = added - left.min(added);

    let mut traced = LineCounter::open(&trace_path)?;
    let mut monitored = LineCounter::open(&monitor_path)?;
    let (mut last, mut last_change) = ((0, 0), Instant::now());
    let mut routeguard_done = action_time;
    let settle_deadline = Instant::now() + SETTLE_MAX;
    loop {
        interrupt::check()?;
        let now = (traced.update()?, monitored.update()?);
        if now != last {
            if now.0 != last.0 {
                routeguard_done = start.elapsed();
            }
            last = now;
            last_change = Instant::now();
        }
        // ip monitor may never catch up (it loses on ENOBUFS); routeguard must.
        let caught_up = last.0 >= expected;
        if (caught_up && last_change.elapsed() >= SETTLE_QUIET) || Instant::now() >= settle_deadline
        {
            break;
        }
        thread::sleep(Duration::from_millis(200));
    }
    let report = tracer.stop_within(EXIT_TIMEOUT)?;
    let monitor_stderr = monitor.stop()?;
    Ok(Seen {
        action: action_time,
        left,
        routeguard_done,
        report,
        events: EventCounts::read(&trace_path)?,
        monitor: MonitorCounts::read(&monitor_path, monitor_stderr)?,
    })
}

/// `ip route flush table 100`. iproute2 gives up after 30 s ("Flush not completed after N
/// seconds"); what it left is counted afterwards, so that is reported, not an error.
fn flush(ns: &Netns) -> Result<()> {
    let out =
        cmd::capture(Command::new("ip").args(["-n", ns.name(), "route", "flush", "table", TABLE]))?;
    let said = String::from_utf8_lossy(&out.stdout).trim().to_owned()
        + String::from_utf8_lossy(&out.stderr).trim();
    if !out.status.success() || !said.is_empty() {
        println!("  ip route flush ({}): {said}", out.status);
    }
    Ok(())
}

fn count_table_routes(ns: &Netns) -> Result<u64> {
    let out = cmd::stdout_of(Command::new("ip").args([
        "-n",
        ns.name(),
        "route",
        "show",
        "table",
        TABLE,
    ]))?;
    Ok(out.lines().count() as u64)
}

/// `ip -n <ns> monitor route`, stdout to a file; killed on drop if still running.
struct Monitor {
    child: Child,
    stderr_path: PathBuf,
}

impl Monitor {
    fn start(ns: &Netns, out_path: &Path) -> Result<Self> {
        let out =
            File::create(out_path).with_context(|| format!("creating {}", out_path.display()))?;
        let stderr_path = out_path.with_extension("stderr");
        let err = File::create(&stderr_path)
            .with_context(|| format!("creating {}", stderr_path.display()))?;
        let child = Command::new("ip")
            .args(["-n", ns.name(), "monitor", "route"])
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .context("could not start `ip monitor route`")?;
        Ok(Monitor { child, stderr_path })
    }

    /// SIGINT, then its stderr lines.
    fn stop(mut self) -> Result<Vec<String>> {
        let pid = libc::pid_t::try_from(self.child.id()).context("pid out of range")?;
        // SAFETY: kill(2) on our own child, not reaped yet (we own `child`).
        if unsafe { libc::kill(pid, libc::SIGINT) } != 0 {
            bail!(
                "could not send SIGINT to ip monitor: {}",
                std::io::Error::last_os_error()
            );
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        while self.child.try_wait()?.is_none() {
            if Instant::now() > deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                break;
            }
            thread::sleep(Duration::from_millis(50));
        }
        let stderr = fs::read_to_string(&self.stderr_path).unwrap_or_default();
        Ok(stderr.lines().map(str::to_owned).collect())
    }
}

impl Drop for Monitor {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// routeguard's JSON lines, counted.
#[derive(Default)]
struct EventCounts {
    /// `"kind":"route"` with `route.table` 100, whatever the outcome or cause.
    table_routes: u64,
    /// Distinct `route.dst` among those.
    distinct: usize,
    outcomes: BTreeMap<String, u64>,
    causes: BTreeMap<String, u64>,
    /// Every other line.
    other: u64,
}

impl EventCounts {
    fn read(path: &Path) -> Result<Self> {
        let file = File::open(path).with_context(|| format!("opening {}", path.display()))?;
        let mut counts = EventCounts::default();
        let mut dsts = HashSet::new();
        for line in BufReader::new(file).lines() {
            let line = line.with_context(|| format!("reading {}", path.display()))?;
            let route = object(&line, "route");
            let in_table = route.is_some_and(|r| number(r, "table") == Some(TABLE));
            if string(&line, "kind") != Some("route") || !in_table {
                counts.other += 1;
                continue;
            }
            counts.table_routes += 1;
            if let Some(dst) = route.and_then(|r| string(r, "dst")) {
                dsts.insert(dst.to_owned());
            }
            let outcome = string(&line, "outcome").unwrap_or("?");
            *counts.outcomes.entry(outcome.to_owned()).or_default() += 1;
            let cause = string(&line, "cause").unwrap_or("?");
            *counts.causes.entry(cause.to_owned()).or_default() += 1;
        }
        counts.distinct = dsts.len();
        Ok(counts)
    }
}

/// The first `"key":"value"` of a JSON line: the top-level one for the event's own fields,
/// which come before the nested objects in routeguard's output (docs/events.md).
fn string<'a>(json: &'a str, key: &str) -> Option<&'a str> {
    let pattern = format!("\"{key}\":\"");
    let rest = &json[json.find(&pattern)? + pattern.len()..];
    Some(&rest[..rest.find('"')?])
}

/// The first `"key":<number>`, as text.
fn number<'a>(json: &'a str, key: &str) -> Option<&'a str> {
    let pattern = format!("\"{key}\":");
    let rest = &json[json.find(&pattern)? + pattern.len()..];
    let end = rest
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(rest.len());
    (end > 0).then(|| &rest[..end])
}

/// The flat object `"key":{…}` (routeguard's `route` holds no nested object).
fn object<'a>(json: &'a str, key: &str) -> Option<&'a str> {
    let pattern = format!("\"{key}\":{{");
    let rest = &json[json.find(&pattern)? + pattern.len()..];
    Some(&rest[..rest.find('}')?])
}

fn tally(counts: &BTreeMap<String, u64>) -> String {
    if counts.is_empty() {
        return "-".to_owned();
    }
    counts
        .iter()
        .map(|(k, v)| format!("{k} {v}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// `ip monitor route` output, counted.
struct MonitorCounts {
    /// Lines starting with `Deleted`.
    deleted: u64,
    stderr: Vec<String>,
}

impl MonitorCounts {
    fn read(path: &Path, stderr: Vec<String>) -> Result<Self> {
        let file = File::open(path).with_context(|| format!("opening {}", path.display()))?;
        let mut deleted = 0;
        for line in BufReader::new(file).lines() {
            let line = line.with_context(|| format!("reading {}", path.display()))?;
            if line.starts_with("Deleted") {
                deleted += 1;
            }
        }
        Ok(MonitorCounts { deleted, stderr })
    }
}

#[cfg(test)]
mod tests {
    use super::{number, object, string};

    const LINE: &str = r#"{"schema_version":1,"kind":"route","cause":"request","outcome":"unknown","route":{"table":100,"dst":"10.0.0.1/32","gateway":null},"rule":null,"trigger":{"kind":"link"}}"#;

    #[test]
    fn reads_the_fields_it_counts() {
        assert_eq!(string(LINE, "kind"), Some("route"));
        assert_eq!(string(LINE, "outcome"), Some("unknown"));
        let route = object(LINE, "route").unwrap();
        assert_eq!(number(route, "table"), Some("100"));
        assert_eq!(string(route, "dst"), Some("10.0.0.1/32"));
        assert_eq!(object(LINE, "rule"), None);
        assert_eq!(number(r#"{"table":null}"#, "table"), None);
    }
}
