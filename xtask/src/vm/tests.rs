//! The integration test binaries, built on the host (the guest has no toolchain and runs them
//! straight from the host's target/ over 9p).
use std::{
    io::{BufRead as _, BufReader},
    path::{Path, PathBuf},
    process::{Command, Stdio},
};

use anyhow::{bail, Context as _, Result};

use super::Series;
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

/// Integration tests a guest leaves out, named in its log with the reason.
pub struct LeftOut {
    /// The test target, tests/tests/<target>.rs.
    pub target: &'static str,
    /// The test functions left out (exact names; `module::name` for a test in
    /// tests/tests/<target>/<module>.rs).
    pub tests: &'static [&'static str],
    /// Printed in the guest's log beside the names.
    pub why: &'static str,
}

/// Tests both guests leave to the host: they check what routeguard does in userspace with an
/// event (sinks, config validation, files, restore bookkeeping), which no kernel changes. The
/// guests' time goes to what differs between kernels: capture, attribution, mirror, restore.
pub const HOST_ONLY: &[LeftOut] = &[
    LeftOut {
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
            "a_flood_fills_the_disk_no_further_than_its_bounds",
            "restore_state::a_link_down_retry_outlives_a_reload",
            "restore_state::a_suspension_outlives_a_reload_that_keeps_its_entry",
            "restore_state::restore_state_is_capped_and_its_overflow_counted",
            "restore_state::the_namespace_named_by_route_guard_host_netns_is_restored_in",
            "restore_state::without_route_guard_host_netns_the_held_namespace_is_skipped",
            "restore_state::a_namespace_only_its_user_holds_is_neither_entered_nor_tracked",
        ],
        why: "config validation, the store, JSON lines and journald sinks' failures and fields, \
              the loss warning's rate limit, the disk a flood can fill (budgets: flood.rs), the restorer's state across reloads and its caps",
    },
    LeftOut {
        target: "report",
        tests: &[
            "html_report_renders_in_headless_chromium",
            "bad_input_is_one_clear_error",
            "fleet_report_tells_one_rule_removed_on_three_nodes_as_one_incident",
        ],
        why: "rendering, input errors and the fleet's grouping (the report of each kernel's own \
              capture, restores included, still runs here)",
    },
    LeftOut {
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
    LeftOut {
        target: "deny",
        tests: &["a_bad_action_is_one_clear_error"],
        why: "the policy's parse error",
    },
];

/// Tests the oldest kernel's guest (6.1) also leaves out: what routeguard decides on top of a
/// captured removal (allow-lists, dry run, the flap guard, suspensions), run on 6.12 and the
/// host; what is decided in userspace or is the same on every kernel (loss counting, joins,
/// pod names, filters, log forwarding), to keep the suite within its hour; and the deny
/// program's tests, as routeguard does not run it on 6.1. 6.1 still loads every program and
/// runs the capture, attribution, mirror and restore tests.
pub const NEWER_KERNEL_ONLY: &[LeftOut] = &[
    LeftOut {
        target: "restore",
        tests: &[
            "allowed_actor_and_dry_run_change_nothing",
            "flap_guard_backs_off_then_suspends_with_the_culprit",
            "trace_restores_in_the_namespace_route_guard_host_netns_names",
        ],
        why: "allow-lists, dry run and the flap guard decide in userspace (run on 6.12)",
    },
    LeftOut {
        target: "daemon",
        tests: &["protected_rule_is_restored_then_suspended_and_both_are_stored_and_counted"],
        why: "the flap guard's suspension decides in userspace (run on 6.12)",
    },
    LeftOut {
        target: "networkd",
        tests: &["networkd_restarted_again_and_again_gets_restores_suspended_with_its_hint"],
        why: "the flap guard's suspension decides in userspace (run on 6.12)",
    },
    LeftOut {
        target: "report",
        tests: &["report_tells_restores_and_suspensions_of_a_real_protected_capture"],
        why: "the report of restores and suspensions is userspace (run on 6.12)",
    },
    LeftOut {
        target: "losses",
        tests: &["every_lost_record_is_counted_once_under_its_cause"],
        why: "the programs count losses by cause alike on every kernel (run on 6.12 and the \
              host); 150 s of the 6.1 guest",
    },
    LeftOut {
        target: "clients",
        tests: &[
            "raw_netlink_writev_split_header",
            "a_refused_request_with_ips_seq_does_not_take_its_removal",
            "an_unread_request_with_ips_seq_does_not_take_its_removal",
            "a_forged_ack_in_the_receivers_memory_is_not_the_outcome",
        ],
        why: "the join of requests to notifications and the outcome's source decide in userspace \
              or on the syscall path (run on 6.12 and the host); 6.1 still runs pyroute2, \
              sendto, write and writev senders",
    },
    LeftOut {
        target: "kubernetes",
        tests: &[
            "pod_named_from_containerd_labels",
            "pod_named_from_kubelet_log_directories",
            "look_alike_pod_under_a_delegated_directory_is_not_trusted",
        ],
        why: "pods are named from cgroup paths, kubelet's directories and containerd in userspace \
              (run on 6.12, cgroup v2 only, and the host, hybrid)",
    },
    LeftOut {
        target: "filters",
        tests: &["comm_filter", "kind_filter"],
        why: "trace's filters apply to decoded events (run on 6.12 and the host)",
    },
    LeftOut {
        target: "ebpf_log",
        tests: &[
            "a_request_cut_at_the_copy_limit_is_logged_at_vv",
            "programs_log_nothing_by_default",
        ],
        why: "the programs' log forwarding is the same object on every kernel (run on 6.12 and \
              the host)",
    },
    LeftOut {
        target: "deny",
        tests: &[
            "a_protected_rule_delete_fails_with_eperm_and_an_unprotected_one_goes",
            "a_batch_with_one_protected_delete_is_refused_whole",
            "an_allowed_exe_removes_the_protected_rule",
        ],
        why: "the deny program is proven from 6.12 on: on 6.1 routeguard protects by restore \
              (deny_without_bpf_lsm_falls_back_to_restore_with_a_warning runs there)",
    },
];

/// What `series`' guest leaves out of a test executable (cargo names it `<target>-<hash>`).
pub fn left_out(binary: &Path, series: Series) -> Vec<&'static LeftOut> {
    let Some(target) = binary
        .file_name()
        .and_then(|n| n.to_str())
        .and_then(|n| n.rsplit_once('-'))
        .map(|(target, _hash)| target)
    else {
        return Vec::new();
    };
    let newer = match series {
        Series::V6_1 => NEWER_KERNEL_ONLY,
        Series::V6_12 => &[],
    };
    HOST_ONLY
        .iter()
        .chain(newer)
        .filter(|entry| entry.target == target)
        .collect()
}

#[cfg(test)]
mod left_out_tests {
    use std::{fs, path::Path};

    use super::{left_out, Series, HOST_ONLY, NEWER_KERNEL_ONLY};
    use crate::paths;

    #[test]
    fn every_left_out_test_exists() {
        for entry in HOST_ONLY.iter().chain(NEWER_KERNEL_ONLY) {
            for test in entry.tests {
                let (file, name) = match test.split_once("::") {
                    Some((module, name)) => (format!("{}/{module}.rs", entry.target), name),
                    None => (format!("{}.rs", entry.target), *test),
                };
                let file = paths::workspace_root().join("tests/tests").join(file);
                let source = fs::read_to_string(&file).unwrap();
                assert!(
                    source.contains(&format!("fn {name}()")),
                    "{} has no test {name}: update xtask/src/vm/tests.rs",
                    file.display()
                );
            }
        }
    }

    #[test]
    fn finds_the_entries_by_target_not_prefix_and_by_kernel() {
        let daemon = Path::new("/t/debug/deps/daemon-51a15a7b0b897a56");
        assert_eq!(left_out(daemon, Series::V6_12).len(), 1);
        assert_eq!(left_out(daemon, Series::V6_1).len(), 2);
        let daemonset = Path::new("/t/debug/deps/daemonset-51a15a7b0b897a56");
        assert!(left_out(daemonset, Series::V6_1).is_empty());
        let restore = Path::new("/t/debug/deps/restore-0123");
        assert!(left_out(restore, Series::V6_12).is_empty());
        assert_eq!(left_out(restore, Series::V6_1)[0].target, "restore");
        assert!(left_out(Path::new("/t/debug/deps/route-0123"), Series::V6_1).is_empty());
    }
}
