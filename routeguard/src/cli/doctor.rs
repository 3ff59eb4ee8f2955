//! `routeguard doctor`: whether tracing can work here, with which capture path, and what that
//! path sees.

use std::process::ExitCode;

use clap::Args;

use super::args::CaptureArg;
use crate::doctor;

pub const DOCTOR_EXAMPLES: &str = "\
Examples:
  sudo routeguard doctor                         every check, as text
  sudo routeguard doctor --json | jq .capture    the capture path trace would use
  sudo routeguard doctor --capture kernel-function   can the kernel-function path run here?

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
}

pub fn run(args: DoctorArgs) -> ExitCode {
    let report = doctor::run(args.capture.into(), &doctor::checks());
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
