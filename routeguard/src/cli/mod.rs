//! Command-line interface.
use std::process::ExitCode;

#[derive(clap::Parser, Debug)]
pub struct Cli {
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    pub verbose: u8,
}

pub fn init_logging(_verbose: u8) {}

pub fn dispatch(_cli: Cli) -> ExitCode {
    ExitCode::SUCCESS
}
