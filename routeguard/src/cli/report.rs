//! `routeguard report`: an incident attribution report from a JSONL capture or the store.

use std::io::{self, BufWriter, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use clap::{ArgGroup, Args, ValueEnum};

use super::args::{parse_duration, parse_run_time, FilterArgs};
use super::EXIT_USAGE;
use crate::event::{filter::Filter, Timestamp, TimestampError};
use crate::files;
use crate::report::{self, render, Input, Options, Query};

pub const REPORT_EXAMPLES: &str = "\
Examples:
  routeguard trace --json > removals.jsonl          capture first (or let the daemon store events)
  routeguard report --input removals.jsonl --out report.html
  routeguard report --db /var/lib/routeguard/events.db --since 2h --format md > incident.md
  routeguard report --input removals.jsonl --kind rule --table 77 --gap 2s --format json
  routeguard report --db node-a/events.db --db node-b/events.db --input node-c.jsonl --out fleet.html

The report has a headline (counts by kind, cause and outcome; restores by outcome, suspensions
and the protected objects still missing), incidents (bursts of removals no more than --gap
apart) told as paragraphs with the actor, its parent chain, every object, what routeguard
restored and how fast, suspensions, and a hint for known culprits (systemd-networkd,
NetworkManager, netplan, CNIs, wg-quick, tailscale), actors and objects ranked by removals
(objects with their restores), and a timeline (an SVG picture in HTML, restores marked).
--format defaults to the --out file's extension (.html, .md, .json), else md.
HTML is one self-contained file (no script, no network); Markdown renders on GitHub; JSON follows
docs/report.md. Exit codes: 0 ok, 1 cannot write the output, 2 usage or unreadable input.

Several inputs (--input and --db repeated, mixed) make a fleet report: inputs are grouped by node
(the `host` their events name: Kubernetes node name, else host name, else machine id, else the
file's path, said in the report), each node summarized (removals, outcomes, incidents, restores,
top actors), and cluster incidents told as one: removals by the same program (matched by exe,
else unit, else comm; the report says which) of the same object, or of objects of one routing
table, on two nodes or more, each no more than --gap after the one before, e.g. \"ip removed rule
prio 32765 lookup 77 on 14 nodes between 2026-12-07 10:02:11.104 and 10:02:40.981 UTC\".
Every input is opened before any is read: a missing or unreadable one is the only error.";

#[derive(Args, Debug, Clone)]
#[command(group(ArgGroup::new("source").required(true).multiple(true).args(["input", "db"])))]
pub struct ReportArgs {
    /// JSON lines written by `routeguard trace --json`. Repeat it (and --db) for a fleet report.
    #[arg(long, value_name = "FILE.jsonl")]
    pub input: Vec<PathBuf>,
    /// The daemon's event store (SQLite). Repeat it (and --input) for a fleet report.
    #[arg(long, value_name = "PATH")]
    pub db: Vec<PathBuf>,
    /// Only events at or after this: a duration back from now (30m, 2h) or RFC 3339.
    #[arg(long, value_name = "2h|RFC3339", value_parser = parse_time)]
    pub since: Option<TimeArg>,
    /// Only events at or before this: a duration back from now or RFC 3339.
    #[arg(long, value_name = "2h|RFC3339", value_parser = parse_time)]
    pub until: Option<TimeArg>,
    /// Removals further apart than this start a new incident (1ms to 8760h); in a fleet report
    /// also the most time between two removals of one cluster incident [default: 5s, 60s for
    /// several inputs].
    #[arg(long, value_name = "DURATION", value_parser = parse_run_time)]
    pub gap: Option<Duration>,
    /// Output format (default: from --out's extension, else md).
    #[arg(long, value_enum)]
    pub format: Option<FormatArg>,
    /// Write the report here instead of standard output: created (or emptied) with mode 0600,
    /// as it holds command lines; a symbolic link at FILE is refused.
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
    /// Objects listed per incident.
    #[arg(long, value_name = "N", default_value_t = 200)]
    pub max_objects: usize,
    #[command(flatten)]
    pub filters: FilterArgs,
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum FormatArg {
    Html,
    Md,
    Json,
}

/// `--since`/`--until`: relative to now, or absolute.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TimeArg {
    Ago(Duration),
    At(Timestamp),
}

impl TimeArg {
    fn resolve(self, now: Timestamp) -> Timestamp {
        match self {
            TimeArg::Ago(d) => Timestamp(now.0 - d.as_nanos() as i128),
            TimeArg::At(t) => t,
        }
    }
}

/// A `--since`/`--until` value that is neither a duration nor a time.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
enum TimeArgError {
    #[error(transparent)]
    Time(#[from] TimestampError),
    #[error("`{0}` is neither a duration (30m, 2h) nor an RFC 3339 time (2026-11-27T15:00:00Z)")]
    Neither(String),
}

fn parse_time(s: &str) -> Result<TimeArg, TimeArgError> {
    // `YYYY-…` is a time; everything else a duration.
    if s.as_bytes().get(4) == Some(&b'-') {
        return Ok(TimeArg::At(s.parse()?));
    }
    parse_duration(s)
        .map(TimeArg::Ago)
        .map_err(|_| TimeArgError::Neither(s.to_owned()))
}

impl ReportArgs {
    fn filter(&self) -> Filter {
        self.filters.filter()
    }

    /// The filter flags as typed, for the report's header.
    fn filter_words(&self) -> Vec<String> {
        self.filters.words()
    }

    fn format(&self) -> render::Format {
        let ext = self
            .out
            .as_ref()
            .and_then(|p| p.extension())
            .and_then(|e| e.to_str())
            .map(str::to_ascii_lowercase);
        match (self.format, ext.as_deref()) {
            (Some(FormatArg::Html), _) | (None, Some("html" | "htm")) => render::Format::Html,
            (Some(FormatArg::Json), _) | (None, Some("json")) => render::Format::Json,
            _ => render::Format::Markdown,
        }
    }
}

fn now() -> Timestamp {
    let d = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    Timestamp(d.as_nanos() as i128)
}

/// `--gap` when not given: one node's bursts are seconds apart; a fleet's nodes act on the same
/// change within a minute or so (a rollout, a timer).
const GAP: Duration = Duration::from_secs(5);
const FLEET_GAP: Duration = Duration::from_secs(60);

pub fn run(args: ReportArgs) -> ExitCode {
    let now = now();
    let inputs: Vec<Input> = (args.input.iter().cloned().map(Input::Jsonl))
        .chain(args.db.iter().cloned().map(Input::Store))
        .collect();
    let query = Query {
        filter: args.filter(),
        since: args.since.map(|t| t.resolve(now)),
        until: args.until.map(|t| t.resolve(now)),
    };
    let fleet = inputs.len() > 1;
    let gap = args.gap.unwrap_or(if fleet { FLEET_GAP } else { GAP });
    let opts = Options {
        gap_ns: gap.as_nanos() as i128,
        max_incident_objects: args.max_objects,
        ..Options::default()
    };
    let built = match inputs.as_slice() {
        [input] => report::build(input, &query, args.filter_words(), &opts, now)
            .map(|r| Built::One(Box::new(r))),
        _ => report::fleet::build(&inputs, &query, args.filter_words(), &opts, now)
            .map(|r| Built::Fleet(Box::new(r))),
    };
    let report = match built {
        Ok(r) => r,
        Err(e) => {
            eprintln!("routeguard: {e}");
            return ExitCode::from(EXIT_USAGE);
        }
    };
    let format = args.format();
    let written = match &args.out {
        // Mode 0600, never through a symlink: a report holds command lines.
        Some(path) => files::open_private(path, files::Write::Truncate)
            .map_err(|e| format!("cannot create {}: {e}", path.display()))
            .and_then(|f| {
                let mut w = BufWriter::new(f);
                report
                    .write(format, &mut w)
                    .and_then(|()| w.flush())
                    .map_err(|e| format!("cannot write {}: {e}", path.display()))
            }),
        None => {
            let mut w = BufWriter::new(io::stdout().lock());
            report
                .write(format, &mut w)
                .and_then(|()| w.flush())
                .map_err(|e| format!("cannot write the report to standard output: {e}"))
        }
    };
    match written {
        Ok(()) => {
            if let Some(path) = &args.out {
                eprintln!(
                    "routeguard: {} written to {}",
                    report.what(),
                    path.display()
                );
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("routeguard: {e}");
            ExitCode::FAILURE
        }
    }
}

/// A one-input report, or a fleet's.
enum Built {
    One(Box<report::Report>),
    Fleet(Box<report::fleet::FleetReport>),
}

impl Built {
    fn write(&self, format: render::Format, out: &mut dyn Write) -> io::Result<()> {
        match self {
            Built::One(r) => render::write(r, format, out),
            Built::Fleet(r) => render::write_fleet(r, format, out),
        }
    }

    /// What was written, for the line on standard error.
    fn what(&self) -> String {
        let skipped = |n| match n {
            0 => String::new(),
            n => format!(" ({n} lines skipped)"),
        };
        match self {
            Built::One(r) => format!(
                "report of {} removal requests in {} incident(s){}",
                r.headline.events,
                r.headline.incidents,
                skipped(r.source.skipped_lines)
            ),
            Built::Fleet(r) => format!(
                "fleet report of {} removal requests on {} node(s), {} cluster incident(s){}",
                r.events(),
                r.nodes.len(),
                r.cluster_incidents.len(),
                skipped(r.sources().map(|s| s.skipped_lines).sum())
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_durations_or_rfc3339() {
        assert_eq!(
            parse_time("2h"),
            Ok(TimeArg::Ago(Duration::from_secs(7200)))
        );
        assert_eq!(
            parse_time("2026-11-27T15:17:41Z"),
            Ok(TimeArg::At(Timestamp(1_795_792_661_000_000_000)))
        );
        assert!(parse_time("yesterday")
            .unwrap_err()
            .to_string()
            .contains("neither a duration"));
        assert!(parse_time("2026-11-27T25:00:00Z")
            .unwrap_err()
            .to_string()
            .contains("not an RFC 3339 timestamp"));
        let now = Timestamp(10_000_000_000);
        assert_eq!(
            TimeArg::Ago(Duration::from_secs(2)).resolve(now),
            Timestamp(8_000_000_000)
        );
    }
}
