//! Project tasks: `cargo xtask setup | build | run | test | vm-test | vm-unit | bench`.
//!
//! Everything a fresh machine needs is installed by `setup`, which the other tasks call first,
//! so the README's commands work on a machine that has only rustup and stable Rust.
mod bench;
mod build;
mod cmd;
#[cfg(test)]
mod docs;
mod interrupt;
mod netns;
mod paths;
mod setup;
mod test;
mod vm;

use std::{
    ffi::OsString,
    os::unix::process::CommandExt as _,
    process::{Command, ExitCode},
};

use anyhow::{Context as _, Result};
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "cargo xtask", about = "routeguard's project tasks")]
struct Cli {
    #[command(subcommand)]
    command: Task,
}

#[derive(Subcommand)]
enum Task {
    /// Install the toolchain, bpf-linker, test packages and mounts (only what is missing).
    Setup {
        /// Print the command of every step as if everything were missing; change nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// Setup, then build target/release/routeguard.
    Build {
        /// Build the debug profile instead (target/debug/routeguard).
        #[arg(long)]
        debug: bool,
    },
    /// Setup and build, then run routeguard with ARGS (e.g. `cargo xtask run -- trace --json`).
    Run {
        /// Build and run the debug profile.
        #[arg(long)]
        debug: bool,
        /// Arguments for routeguard.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<OsString>,
    },
    /// Setup and build, then fmt, clippy, unit tests and integration tests (root), the latter
    /// on the host and again on Debian 6.1 and 6.12 under QEMU (see vm-test).
    Test,
    /// Boot stock Debian kernels (6.1, 6.12) under QEMU and run the integration tests inside
    /// (or `-- COMMAND`); exits with the guest command's status. Fetches QEMU and the kernels on
    /// first use (root).
    VmTest(vm::Args),
    /// Run the systemd unit exactly as packaging/ ships it under systemd as PID 1 (a QEMU guest
    /// with a minimal Debian, debootstrapped once into target/vm/rootfs/) and check that the
    /// daemon records, mirrors and restores under it (root).
    VmUnit(vm::systemd::Args),
    /// Benchmarks; without a name, lists them.
    Bench {
        #[command(subcommand)]
        bench: Option<bench::Bench>,
    },
}

fn main() -> Result<ExitCode> {
    let cli = Cli::parse();
    add_sbin_to_path();
    match cli.command {
        Task::Setup { dry_run } => setup::run(setup::Options {
            dry_run,
            verbose: true,
        })?,
        Task::Build { debug } => {
            setup::run(setup::Options::default())?;
            build::run(debug)?;
        }
        Task::Run { debug, args } => {
            setup::run(setup::Options::default())?;
            let bin = build::run(debug)?;
            // exec: routeguard replaces this process, so Ctrl-C and its exit code are its own.
            let err = Command::new(&bin).args(&args).exec();
            return Err(err).with_context(|| format!("could not execute {}", bin.display()));
        }
        Task::Test => return test::run(),
        Task::VmTest(args) => return vm::run(args),
        Task::VmUnit(args) => return vm::systemd::run(args),
        Task::Bench { bench } => bench::run(bench)?,
    }
    Ok(ExitCode::SUCCESS)
}

/// `ip` and `route` live in /usr/sbin on Debian, which a non-login or minimal PATH (CI, sudo,
/// cron) may lack; every task, and the tests it starts, needs them.
fn add_sbin_to_path() {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let mut dirs: Vec<_> = std::env::split_paths(&path).collect();
    for sbin in ["/usr/sbin", "/sbin"] {
        if !dirs.iter().any(|dir| dir.as_os_str() == sbin) {
            dirs.push(sbin.into());
        }
    }
    if let Ok(joined) = std::env::join_paths(dirs) {
        // Edition 2021: set_var is safe; this runs before any thread is started.
        std::env::set_var("PATH", joined);
    }
}
