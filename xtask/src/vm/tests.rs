//! The integration test binaries, built on the host (the guest has no toolchain and runs them
//! straight from the host's target/ over 9p).
use std::{
    io::{BufRead as _, BufReader},
    path::{Path, PathBuf},
    process::{Command, Stdio},
};

use anyhow::{bail, Context as _, Result};

use crate::cmd;

/// `cargo test -p routeguard-tests --no-run`, returning the test executables it built.
pub fn build_test_binaries(root: &Path) -> Result<Vec<PathBuf>> {
    let mut build = Command::new("cargo");
    build
        .current_dir(root)
        // As in `cargo xtask test`: the tests drive the release binary, and link routeguard
        // only for its store reader, so its eBPF object is not built again.
        .env("AYA_BUILD_SKIP", "1")
        .args([
            "test",
            "--package",
            "routeguard-tests",
            "--no-run",
            "--message-format=json-render-diagnostics",
        ]);
    println!(
        "routeguard vm: building the integration tests: $ {}",
        cmd::display(&build)
    );
    let shown = cmd::display(&build);
    let mut child = build
        .stdout(Stdio::piped())
        .spawn()
        .with_context(|| format!("could not start `{shown}`"))?;
    let stdout = child.stdout.take().context("no stdout pipe")?;
    let mut binaries = Vec::new();
    for line in BufReader::new(stdout).lines() {
        let line = line.context("reading cargo's output")?;
        let Ok(message) = serde_json::from_str::<serde_json::Value>(&line) else {
            continue;
        };
        let is_test =
            message["reason"] == "compiler-artifact" && message["profile"]["test"] == true;
        if let (true, Some(executable)) = (is_test, message["executable"].as_str()) {
            binaries.push(PathBuf::from(executable));
        }
    }
    let status = child.wait().context("waiting for cargo")?;
    if !status.success() {
        bail!("`{shown}` failed ({status}): see the compiler output above");
    }
    if binaries.is_empty() {
        bail!("`{shown}` reported no test executable");
    }
    binaries.sort();
    Ok(binaries)
}

/// The executable of the integration test target `target` (cargo names it `<target>-<hash>`).
pub fn find(binaries: &[PathBuf], target: &str) -> Result<PathBuf> {
    let prefix = format!("{target}-");
    binaries
        .iter()
        .find(|b| {
            b.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with(&prefix))
        })
        .cloned()
        .with_context(|| format!("cargo built no test executable for tests/tests/{target}.rs"))
}
