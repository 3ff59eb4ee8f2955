//! Command-line interface: argument parsing, logging set-up, dispatch.

mod args;
mod daemon;
#[cfg(test)]
mod daemonset_tests;
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
    /// More diagnostics on stderr (-v: debug, -vv: trace), the eBPF programs' own lines
    /// included (rare conditions only the kernel sees). RUST_LOG overrides.
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

/// Diagnostics on stderr. The eBPF programs' own lines (`routeguard::ebpf`) are off unless
/// `-v`/`-vv` (or RUST_LOG) asks for them: the level they log at is chosen from this filter
/// when they are loaded (see `capture::ebpf_log`).
pub fn init_logging(verbose: u8) {
    let default = match verbose {
        0 => "routeguard=info,routeguard::ebpf=off",
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

/// Chooses the capture path for `mode` (probing what loads) and says which, and why, on
/// stderr; forcing a path that cannot load here is exit 2 with the kernel's answer.
///
/// Restores re-add the kernel's own netlink description of what was removed, which only the
/// syscall path's route mirror hears so far: with protections, `auto` takes the syscall path and
/// `kernel-function` is refused.
fn choose_capture(
    mode: crate::capture::select::Mode,
    protecting: bool,
) -> Result<crate::capture::select::Selection, ExitCode> {
    use crate::capture::{probe::Support, select};
    let mode = match (mode, protecting) {
        (select::Mode::Auto, true) => {
            tracing::info!("protections are configured: restores need the syscall path's route mirror, so capture=syscall");
            select::Mode::Syscall
        }
        (select::Mode::KernelFunction, true) => {
            eprintln!("routeguard: --capture kernel-function cannot restore yet (restores re-add the kernel's description, which the syscall path's mirror hears); use --capture auto or syscall with protections");
            return Err(ExitCode::from(EXIT_USAGE));
        }
        (mode, _) => mode,
    };
    match select::select(mode, &Support::probe()) {
        Ok(selection) => {
            if let Err(why) = &selection.kernel_function {
                if selection.path == select::CapturePath::Syscall && mode == select::Mode::Auto {
                    tracing::info!(
                        "kernel-function capture unavailable ({why}); using the syscall path"
                    );
                }
            }
            Ok(selection)
        }
        Err(why) => {
            eprintln!(
                "routeguard: --capture {} cannot run here: {why} (`routeguard doctor` shows what loads; use --capture auto)",
                crate::doctor::mode_name(mode)
            );
            Err(ExitCode::from(EXIT_USAGE))
        }
    }
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
