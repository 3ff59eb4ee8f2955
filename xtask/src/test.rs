//! `cargo xtask test`: setup, build, then every check CI runs, in order, without stopping at the
//! first failure so one run shows everything that is wrong. The integration tests run on the
//! host, then in QEMU on stock Debian 6.1 and 6.12 kernels (`cargo xtask vm-test --kernel all`;
//! $ROUTEGUARD_TEST_CAPTURE picks the capture path there), and last the shipped systemd unit
//! under systemd as PID 1 in a Debian guest on 6.12 (`cargo xtask vm-unit`).
//!
//! The last line is machine-readable: `xtask test: N passed, M failed`, where N and M sum the
//! counts of cargo's "test result:" lines, and every stage that failed without a failing test
//! to show for it (setup, build, fmt, clippy, a test binary that did not compile, not root)
//! adds 1 to M — so M is 0 exactly when the run is green.
use std::{
    io::{BufRead as _, BufReader},
    path::PathBuf,
    process::{Command, ExitCode, Stdio},
};

use anyhow::{bail, Context as _, Result};

use crate::{build, cmd, paths, setup, vm};

/// The stage that runs the shipped systemd unit under systemd (`cargo xtask vm-unit`).
const UNIT_STAGE: &str = "systemd unit 6.12";

struct Stage {
    name: &'static str,
    ok: bool,
    passed: u64,
    failed: u64,
    note: String,
}

impl Stage {
    fn from_result(name: &'static str, result: Result<Counts>) -> Self {
        match result {
            Ok(counts) => Stage {
                name,
                ok: counts.failed == 0,
                passed: counts.passed,
                failed: counts.failed,
                note: String::new(),
            },
            Err(err) => {
                eprintln!("xtask test: {name} failed: {err:#}");
                Stage {
                    name,
                    ok: false,
                    passed: 0,
                    failed: 0,
                    note: format!("{err:#}"),
                }
            }
        }
    }
}

#[derive(Default)]
struct Counts {
    passed: u64,
    failed: u64,
}

/// Runs all stages; exits non-zero when any failed.
pub fn run() -> Result<ExitCode> {
    let root = paths::workspace_root();
    let mut stages = Vec::new();

    let setup = setup::run(setup::Options::default());
    let setup_ok = setup.is_ok();
    stages.push(Stage::from_result(
        "setup",
        setup.map(|()| Counts::default()),
    ));

    let bin: Option<PathBuf> = if setup_ok {
        let built = build::run(false);
        let bin = built.as_ref().ok().cloned();
        stages.push(Stage::from_result(
            "build",
            built.map(|_| Counts::default()),
        ));
        bin
    } else {
        None
    };

    let fmt = cmd::run(
        Command::new("cargo")
            .current_dir(&root)
            .args(["fmt", "--all", "--", "--check"]),
    );
    stages.push(Stage::from_result("fmt", fmt.map(|()| Counts::default())));

    // `--workspace` includes routeguard-ebpf: on the host it is an ordinary std crate (its
    // no_std/no_main/panic handler are `cfg(target_arch = "bpf")`), so it lints and tests here
    // and needs no separate BPF-target clippy run.
    // AYA_BUILD_SKIP: lints and unit tests cover host code; the eBPF object was built (and so
    // checked) by the release build above, and skipping it saves a second eBPF build for the
    // dev profile. routeguard/build.rs leaves an empty object in its place.
    let clippy = cmd::run(
        Command::new("cargo")
            .current_dir(&root)
            .env("AYA_BUILD_SKIP", "1")
            .args([
                "clippy",
                "--workspace",
                "--all-targets",
                "--",
                "-D",
                "warnings",
            ]),
    );
    stages.push(Stage::from_result(
        "clippy",
        clippy.map(|()| Counts::default()),
    ));

    let unit = cargo_test(
        Command::new("cargo")
            .current_dir(&root)
            .env("AYA_BUILD_SKIP", "1")
            .args([
                "test",
                "--no-fail-fast",
                "--workspace",
                "--exclude",
                "routeguard-tests",
            ]),
    );
    stages.push(Stage::from_result("unit tests", unit));

    let integration = match &bin {
        None => Err(anyhow::anyhow!(
            "not run: there is no routeguard binary (see setup/build above)"
        )),
        Some(_) if !cmd::is_root() => Err(anyhow::anyhow!(
            "not run: the integration tests load eBPF programs and create network namespaces, \
             which needs root; rerun as root (e.g. `sudo -E env PATH=\"$PATH\" cargo xtask test`)"
        )),
        Some(bin) => cargo_test(
            Command::new("cargo")
                .current_dir(&root)
                .env("ROUTEGUARD_BIN", bin)
                // The tests drive the release binary above; they link routeguard only for its
                // store reader, so building its eBPF object again would be wasted minutes.
                .env("AYA_BUILD_SKIP", "1")
                .args([
                    "test",
                    "--no-fail-fast",
                    "--package",
                    "routeguard-tests",
                    "--",
                    "--test-threads=1",
                ]),
        ),
    };
    stages.push(Stage::from_result("integration tests", integration));

    // The same integration tests on stock Debian kernels under QEMU (kernel-only behaviour,
    // older verifiers). Same preconditions as the host run: a binary and root.
    match (bin.is_some(), cmd::is_root()) {
        (true, true) => {
            let opts = vm::Options::from_env();
            match vm::run_kernels(&vm::Series::ALL, None, &opts) {
                Ok(runs) => stages.extend(runs.into_iter().map(|run| Stage {
                    name: run.series.stage_name(),
                    ok: run.exit_code == Some(0) && run.failed == 0,
                    passed: run.passed,
                    failed: run.failed,
                    note: match run.exit_code {
                        Some(_) => format!("{:.0} s on {}", run.elapsed.as_secs_f64(), run.package),
                        None => format!("no exit code from the VM; see {}", run.log.display()),
                    },
                })),
                Err(err) => stages.push(Stage::from_result("vm tests", Err(err))),
            }
            // The shipped systemd unit under systemd as PID 1 (`cargo xtask vm-unit`).
            stages.push(match vm::systemd::stage() {
                Ok(run) => Stage {
                    name: UNIT_STAGE,
                    ok: run.exit_code == Some(0) && run.failed == 0,
                    passed: run.passed,
                    failed: run.failed,
                    note: match run.exit_code {
                        Some(_) => format!("{:.0} s on {}", run.elapsed.as_secs_f64(), run.package),
                        None => format!("no exit code from the VM; see {}", run.log.display()),
                    },
                },
                Err(err) => Stage::from_result(UNIT_STAGE, Err(err)),
            });
        }
        _ => {
            for name in ["vm tests", UNIT_STAGE] {
                stages.push(Stage::from_result(
                    name,
                    Err(anyhow::anyhow!(
                        "not run: needs the routeguard binary and root, as above"
                    )),
                ));
            }
        }
    }

    let mut passed = 0;
    let mut failed = 0;
    println!();
    println!("xtask test summary:");
    for stage in &stages {
        passed += stage.passed;
        failed += stage.failed;
        if !stage.ok && stage.failed == 0 {
            failed += 1;
        }
        let counts = if stage.passed + stage.failed > 0 {
            format!(" ({} passed, {} failed)", stage.passed, stage.failed)
        } else {
            String::new()
        };
        let status = if stage.ok { "ok" } else { "FAILED" };
        let note = first_line(&stage.note);
        println!("  {:<18} {status}{counts}{note}", stage.name);
    }
    println!("xtask test: {passed} passed, {failed} failed");
    Ok(if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn first_line(note: &str) -> String {
    match note.lines().next() {
        Some(line) if !line.is_empty() => format!(" — {line}"),
        _ => String::new(),
    }
}

/// Runs a `cargo test` command (with `--no-fail-fast`, so every test binary runs and the
/// counts are complete), echoing its stdout while summing its "test result:" lines.
/// An error when cargo itself failed and no failing test explains it (e.g. a compile error).
fn cargo_test(cmd: &mut Command) -> Result<Counts> {
    let shown = cmd::display(cmd);
    let mut child = cmd
        .stdout(Stdio::piped())
        .spawn()
        .with_context(|| format!("could not start `{shown}`"))?;
    let stdout = child.stdout.take().context("no stdout pipe")?;
    let mut counts = Counts::default();
    for line in BufReader::new(stdout).lines() {
        let line = line.context("reading cargo test output")?;
        println!("{line}");
        if let Some((passed, failed)) = parse_test_result(&line) {
            counts.passed += passed;
            counts.failed += failed;
        }
    }
    let status = child.wait().context("waiting for cargo test")?;
    if !status.success() && counts.failed == 0 {
        bail!("`{shown}` failed ({status}) without a failing test: see the output above");
    }
    Ok(counts)
}

/// "test result: ok. 3 passed; 1 failed; 0 ignored; …" → (3, 1).
pub fn parse_test_result(line: &str) -> Option<(u64, u64)> {
    let rest = line.trim_start().strip_prefix("test result: ")?;
    let count = |word: &str| {
        rest.split(';').find_map(|part| {
            part.trim()
                .strip_suffix(word)?
                .trim_end()
                .rsplit(' ')
                .next()?
                .parse()
                .ok()
        })
    };
    Some((count(" passed")?, count(" failed")?))
}

#[cfg(test)]
mod tests {
    use super::parse_test_result;

    #[test]
    fn parses_cargo_test_results() {
        assert_eq!(
            parse_test_result(
                "test result: ok. 12 passed; 0 failed; 1 ignored; 0 measured; 0 filtered out; finished in 0.01s"
            ),
            Some((12, 0))
        );
        assert_eq!(
            parse_test_result("test result: FAILED. 3 passed; 2 failed; 0 ignored; 0 measured"),
            Some((3, 2))
        );
        assert_eq!(parse_test_result("running 3 tests"), None);
        assert_eq!(parse_test_result("test foo ... ok"), None);
    }
}
