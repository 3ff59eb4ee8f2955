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

The report has a headline (counts by kind, cause and outcome; restores by outcome, suspensions
and the protected objects still missing), incidents (bursts of removals no more than --gap
apart) told as paragraphs with the actor, its parent chain, every object, what routeguard
restored and how fast, suspensions, and a hint for known culprits (systemd-networkd,
NetworkManager, netplan, CNIs, wg-quick, tailscale), actors and objects ranked by removals
(objects with their restores), and a timeline (an SVG picture in HTML, restores marked).
--format defaults to the --out file's extension (.html, .md, .json), else md.
HTML is one self-contained file (no script, no network); Markdown renders on GitHub; JSON follows
docs/report.md. Exit codes: 0 ok, 1 cannot write the output, 2 usage or unreadable input.";

#[derive(Args, Debug, Clone)]
#[command(group(ArgGroup::new("source").required(true).args(["input", "db"])))]
pub struct ReportArgs {
    /// JSON lines written by `routeguard trace --json`.
    #[arg(long, value_name = "FILE.jsonl")]
    pub input: Option<PathBuf>,
    /// The daemon's event store (SQLite).
    #[arg(long, value_name = "PATH")]
    pub db: Option<PathBuf>,
    /// Only events at or after this: a duration back from now (30m, 2h) or RFC 3339.
    #[arg(long, value_name = "2h|RFC3339", value_parser = parse_time)]
    pub since: Option<TimeArg>,
    /// Only events at or before this: a duration back from now or RFC 3339.
    #[arg(long, value_name = "2h|RFC3339", value_parser = parse_time)]
    pub until: Option<TimeArg>,
    /// Removals further apart than this start a new incident (1ms to 8760h).
    #[arg(long, value_name = "DURATION", default_value = "5s", value_parser = parse_run_time)]
    pub gap: Duration,
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

pub fn run(args: ReportArgs) -> ExitCode {
    let now = now();
    let input = match (&args.input, &args.db) {
        (Some(p), _) => Input::Jsonl(p.clone()),
        (None, Some(p)) => Input::Store(p.clone()),
        (None, None) => unreachable!("clap requires --input or --db"),
    };
    let query = Query {
        filter: args.filter(),
        since: args.since.map(|t| t.resolve(now)),
        until: args.until.map(|t| t.resolve(now)),
    };
    let opts = Options {
        gap_ns: args.gap.as_nanos() as i128,
        max_incident_objects: args.max_objects,
        ..Options::default()
    };
    let report = match report::build(&input, &query, args.filter_words(), &opts, now) {
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
                render::write(&report, format, &mut w)
                    .and_then(|()| w.flush())
                    .map_err(|e| format!("cannot write {}: {e}", path.display()))
            }),
        None => {
            let mut w = BufWriter::new(io::stdout().lock());
            render::write(&report, format, &mut w)
                .and_then(|()| w.flush())
                .map_err(|e| format!("cannot write the report to standard output: {e}"))
        }
    };
    match written {
        Ok(()) => {
            if let Some(path) = &args.out {
                eprintln!(
                    "routeguard: report of {} removal requests in {} incident(s) written to {}{}",
                    report.headline.events,
                    report.headline.incidents,
                    path.display(),
                    match report.source.skipped_lines {
                        0 => String::new(),
                        n => format!(" ({n} lines skipped)"),
                    }
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
