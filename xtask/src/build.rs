//! `cargo xtask build`: the routeguard binary, with its eBPF object built by routeguard's
//! build.rs (aya-build, nightly, bpf-linker — which `setup` installs).
use std::{path::PathBuf, process::Command};

use anyhow::{Context as _, Result};

use crate::{cmd, paths};

/// Builds routeguard (release unless `debug`) and returns the binary's absolute path.
pub fn run(debug: bool) -> Result<PathBuf> {
    let mut build = Command::new("cargo");
    build
        .current_dir(paths::workspace_root())
        .args(["build", "--package", "routeguard"]);
    if !debug {
        build.arg("--release");
    }
    println!("routeguard build: $ {}", cmd::display(&build));
    cmd::run(&mut build).context(
        "building routeguard failed (compiler output above); if it is about bpf-linker, \
         nightly or rust-src, run `cargo xtask setup`",
    )?;
    let bin = paths::routeguard_bin(!debug);
    println!("routeguard build: {}", bin.display());
    Ok(bin)
}
