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

/// Integration tests the guests leave to the host: they check what routeguard does in
/// userspace with an event (sinks, config validation, files), which no kernel changes. The
/// guests' time goes to what differs between kernels: capture, attribution, mirror, restore.
pub struct HostOnly {
    /// The test target, tests/tests/<target>.rs.
    pub target: &'static str,
    /// The test functions left out (exact names).
    pub tests: &'static [&'static str],
    /// Printed in the guest's log beside the names.
    pub why: &'static str,
}

pub const HOST_ONLY: &[HostOnly] = &[
    HostOnly {
        target: "daemon",
        tests: &[
            "a_bad_config_starts_nothing",
            "a_value_out_of_range_starts_nothing",
            "sighup_with_a_broken_config_keeps_the_running_one",
            "a_corrupt_store_is_moved_aside_and_a_new_one_records",
            "a_newer_store_is_moved_aside_and_kept",
            "a_jsonl_directory_that_cannot_be_made_at_start_is_retried",
            "a_read_only_jsonl_directory_at_start_is_retried",
            "a_jsonl_directory_removed_or_replaced_while_running",
            "a_full_disk_under_the_store_is_survived",
            "a_full_disk_under_the_jsonl_file_is_survived",
            "files_are_private_and_never_written_through_a_symlink",
            "a_pin_dir_that_cannot_be_made_runs_unpinned",
            "events_reach_a_real_journald_with_their_fields",
            "losses_are_warned_at_most_once_a_second",
        ],
        why: "config validation, the store, JSON lines and journald sinks' failures and fields, \
              the loss warning's rate limit",
    },
    HostOnly {
        target: "report",
        tests: &[
            "html_report_renders_in_headless_chromium",
            "bad_input_is_one_clear_error",
            "fleet_report_tells_one_rule_removed_on_three_nodes_as_one_incident",
        ],
        why: "rendering, input errors and the fleet's grouping (the report of each kernel's own \
              capture, restores included, still runs here)",
    },
    HostOnly {
        target: "otlp",
        tests: &[
            "a_removal_reaches_an_otlp_grpc_receiver_field_by_field",
            "an_http_receiver_down_at_start_and_during_the_run_is_retried",
            "a_grpc_receiver_down_at_start_and_during_the_run_is_retried",
            "a_stalled_collector_fills_the_bounded_queue_and_holds_up_nothing",
            "a_bad_otlp_config_starts_nothing",
        ],
        why: "the OTLP exporter's transport, retries and queue (the http test still checks \
              each field of a removal captured by this kernel)",
    },
];

/// The host-only entry for a test executable (cargo names it `<target>-<hash>`).
pub fn host_only(binary: &Path) -> Option<&'static HostOnly> {
    let name = binary.file_name()?.to_str()?;
    let (target, _hash) = name.rsplit_once('-')?;
    HOST_ONLY.iter().find(|h| h.target == target)
}

#[cfg(test)]
mod host_only_tests {
    use std::{fs, path::Path};

    use super::{host_only, HOST_ONLY};
    use crate::paths;

    #[test]
    fn every_host_only_test_exists() {
        for entry in HOST_ONLY {
            let file = paths::workspace_root()
                .join("tests/tests")
                .join(format!("{}.rs", entry.target));
            let source = fs::read_to_string(&file).unwrap();
            for test in entry.tests {
                assert!(
                    source.contains(&format!("fn {test}()")),
                    "{} has no test {test}: update HOST_ONLY in xtask/src/vm/tests.rs",
                    file.display()
                );
            }
        }
    }

    #[test]
    fn finds_the_entry_by_target_not_prefix() {
        let daemon = host_only(Path::new("/t/debug/deps/daemon-51a15a7b0b897a56")).unwrap();
        assert_eq!(daemon.target, "daemon");
        assert!(host_only(Path::new("/t/debug/deps/daemonset-51a15a7b0b897a56")).is_none());
        assert!(host_only(Path::new("/t/debug/deps/route-0123")).is_none());
    }
}
