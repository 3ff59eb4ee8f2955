use std::process::ExitCode;

use clap::Parser as _;

fn main() -> ExitCode {
    let cli = routeguard::cli::Cli::parse();
    routeguard::cli::init_logging(cli.verbose);
    routeguard::cli::dispatch(cli)
}
