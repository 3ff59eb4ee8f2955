//! `routeguard doctor`: whether tracing can work here, with which capture path, and what that
//! path sees.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;

use super::args::CaptureArg;
use crate::doctor;

pub const DOCTOR_EXAMPLES: &str = "\
Examples:
  sudo routeguard doctor                         every check, as text
  sudo routeguard doctor --json | jq .capture    the capture path trace would use
  sudo routeguard doctor --capture kernel-function   can the kernel-function path run here?
  routeguard doctor --config ./routeguard.toml   also check that file's allow-lists

Probes the kernel by loading one trivial program of each type routeguard can use (raw_tp,
tracepoint, fentry) and reports the kernel's answer, e.g. EPERM. Exit codes: 0 tracing can
work here, 1 it cannot (each failed check says what to fix).";

#[derive(Args, Debug, Clone)]
pub struct DoctorArgs {
    /// Print one JSON object instead of text.
    #[arg(long)]
    pub json: bool,
    /// Check for this capture path, as `trace --capture` would choose it.
    #[arg(long, value_enum, value_name = "PATH", default_value = "auto")]
    pub capture: CaptureArg,
    /// Check the allow-lists of this config's `[[protect]]` entries (default: the daemon's
    /// config, when it exists). An entry that allows by `comm` alone is a warning: any process
    /// can take that name.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
}

pub fn run(args: DoctorArgs) -> ExitCode {
    let mut checks = doctor::checks();
    checks.push(Box::new(doctor::AllowLists {
        explicit: args.config.is_some(),
        path: args
            .config
            .unwrap_or_else(|| PathBuf::from(crate::daemon::config::DEFAULT_PATH)),
    }));
    let report = doctor::run(args.capture.into(), &checks);
    if args.json {
        println!("{}", doctor::render::json(&report));
    } else {
        print!("{}", doctor::render::text(&report));
    }
    if report.ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
