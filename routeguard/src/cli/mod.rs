//! Command-line interface: argument parsing, logging set-up, dispatch.

mod args;
mod daemon;
mod doctor;
mod install;
mod report;
mod trace;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

pub use args::TraceArgs;

/// Exit code for usage, configuration, privilege and kernel-feature errors.
pub const EXIT_USAGE: u8 = 2;

#[derive(Parser, Debug)]
#[command(
    name = "routeguard",
    version,
    about = "Names the process behind every route, policy rule and nexthop removal.",
    long_about = "Names the process behind every route, policy rule and nexthop removal.\n\n\
        routeguard hooks the kernel with eBPF and, for every removal in every network namespace, \
        shows who asked for it (pid, command line, parent chain, systemd unit, container), what \
        was removed, and whether the kernel did it."
)]
pub struct Cli {
    /// More diagnostics on stderr (-v: debug, -vv: trace). RUST_LOG overrides.
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    pub verbose: u8,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Show route, rule and nexthop removals live, with the process behind each.
    #[command(after_help = args::TRACE_EXAMPLES)]
    Trace(TraceArgs),
    /// Run as the always-on audit service: every removal to the store, journald, metrics.
    #[command(after_help = daemon::DAEMON_EXAMPLES)]
    Daemon(daemon::DaemonArgs),
    /// Install the daemon as a service (`--systemd`: the hardened unit and a default config).
    Install(install::InstallArgs),
    /// Check whether tracing can work here: kernel, BTF, privileges, which program types load,
    /// the capture path trace would use and which removal causes it sees.
    #[command(after_help = doctor::DOCTOR_EXAMPLES)]
    Doctor(doctor::DoctorArgs),
    /// Incident attribution report (HTML, Markdown or JSON) from a capture or the store.
    #[command(after_help = report::REPORT_EXAMPLES)]
    Report(report::ReportArgs),
}

pub fn init_logging(verbose: u8) {
    let default = match verbose {
        0 => "routeguard=info",
        1 => "routeguard=debug",
        _ => "routeguard=trace",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .init();
}

pub fn dispatch(cli: Cli) -> ExitCode {
    match cli.command {
        Command::Trace(args) => trace::run(args),
        Command::Daemon(args) => daemon::run(args),
        Command::Install(args) => install::run(args),
        Command::Report(args) => report::run(args),
        Command::Doctor(args) => doctor::run(args),
    }
}

/// What every capturing command does first: check privileges and kernel features (exit 2 with
/// the missing piece named), then build the single-threaded runtime it runs on.
fn capture_runtime() -> Result<tokio::runtime::Runtime, ExitCode> {
    if let Err(unmet) = crate::kernel::requirements::check() {
        eprintln!("routeguard: {unmet}");
        return Err(ExitCode::from(EXIT_USAGE));
    }
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|err| {
            eprintln!("routeguard: cannot start the async runtime: {err}");
            ExitCode::FAILURE
        })
}

/// Exit code for a capture that failed to start: 2 when the kernel lacks something (the error
/// names it), 1 for a failure at run time.
fn capture_exit(err: &crate::capture::CaptureError) -> ExitCode {
    use crate::capture::CaptureError::{Map, NoMap, Poll};
    match err {
        Map { .. } | NoMap(_) | Poll(_) => ExitCode::FAILURE,
        _ => ExitCode::from(EXIT_USAGE),
    }
}
