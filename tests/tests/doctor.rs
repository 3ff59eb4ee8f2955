//! `routeguard doctor` on the running kernel: the values it reports are checked against what
//! the kernel independently shows (ftrace's own files), not against themselves.

use std::process::Command;

use routeguard_tests::*;
use serde_json::Value;

fn doctor(args: &[&str]) -> (Option<i32>, String, String) {
    let ran = run(Command::new(routeguard_bin()).arg("doctor").args(args));
    (ran.status.code(), ran.stdout, ran.stderr)
}

fn finding<'a>(report: &'a Value, what: &str) -> &'a Value {
    report["sections"]
        .as_array()
        .expect("sections")
        .iter()
        .flat_map(|s| s["findings"].as_array().expect("findings"))
        .find(|f| f["what"] == what)
        .unwrap_or_else(|| panic!("no finding `{what}` in {report:#}"))
}

/// A kernel that cannot patch its text for ftrace refuses to list its filterable functions
/// (EPERM), and refuses fentry/fexit the same way.
fn ftrace_refused() -> bool {
    std::fs::read("/sys/kernel/tracing/available_filter_functions")
        .is_err_and(|e| e.kind() == std::io::ErrorKind::PermissionDenied)
}

#[test]
fn reports_what_loads_and_the_path_it_would_take() {
    require_root();
    let (code, stdout, stderr) = doctor(&["--json"]);
    let report: Value = serde_json::from_str(&stdout)
        .unwrap_or_else(|e| panic!("doctor --json is not JSON ({e}): {stdout}\n{stderr}"));
    assert_eq!(code, Some(0), "tracing works on this kernel: {report:#}");
    assert_eq!(report["ok"], true);
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap();
    assert_eq!(report["kernel"], release.trim());
    assert_eq!(finding(&report, "raw_tp")["status"], "ok");
    assert_eq!(finding(&report, "tracepoint")["status"], "ok");
    assert_eq!(finding(&report, "BTF")["status"], "ok");
    assert_eq!(finding(&report, "CAP_BPF")["status"], "ok");
    let fentry = finding(&report, "fentry/fexit");
    if ftrace_refused() {
        assert_eq!(fentry["status"], "warn", "{fentry:#}");
        let detail = fentry["detail"].as_str().unwrap();
        assert!(
            detail.contains("bpf_prog_load returned EPERM (1)"),
            "the refusal names the call and errno: {detail}"
        );
        assert_eq!(report["capture"], "syscall");
        let path = finding(&report, "capture path")["detail"].as_str().unwrap();
        assert!(path.starts_with("syscall (--capture auto)"), "{path}");
        let expired = report["coverage"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["cause"] == "expired")
            .expect("an expired row");
        // No process asks for an expiry: the mirror hears the kernel's own deletion.
        assert_eq!(
            expired["seen"], "yes",
            "the mirror sees expiry: {expired:#}"
        );
        assert!(
            expired["how"].as_str().unwrap().contains("actor: none"),
            "{expired:#}"
        );
    } else {
        eprintln!("ftrace works on this kernel: fentry must load");
        assert_eq!(fentry["status"], "ok", "{fentry:#}");
    }
}

#[test]
fn forcing_a_path_that_cannot_load_exits_1_naming_why() {
    require_root();
    if !ftrace_refused() {
        eprintln!("skipped: fentry loads on this kernel, so forcing kernel-function succeeds");
        return;
    }
    let (code, stdout, _) = doctor(&["--capture", "kernel-function"]);
    assert_eq!(code, Some(1), "{stdout}");
    assert!(stdout.contains("FAIL  capture path"), "{stdout}");
    assert!(
        stdout.contains("kernel-function (forced) cannot run"),
        "{stdout}"
    );
    assert!(stdout.contains("tracing cannot work here"), "{stdout}");
}

#[test]
fn text_output_has_every_section_and_the_coverage_table() {
    require_root();
    let (code, stdout, _) = doctor(&[]);
    assert_eq!(code, Some(0), "{stdout}");
    for heading in ["kernel\n", "privileges\n", "capture\n", "\nwhat the "] {
        assert!(stdout.contains(heading), "missing {heading:?}: {stdout}");
    }
    assert!(
        stdout.contains("tracing can work here (capture="),
        "{stdout}"
    );
}

/// An allow-list that names a program by `comm` alone is spoofable: doctor warns, and names a
/// better key; one that names the executable's file is fine.
#[test]
fn warns_about_comm_only_allow_lists() {
    require_root();
    let dir = std::env::temp_dir().join(format!("rg-doctor-allow-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join("routeguard.toml");
    std::fs::write(
        &config,
        "[[protect]]\nkind = \"rule\"\ntable = 77\nallow = { comm = [\"kube-router\"] }\n\n\
         [[protect]]\nkind = \"rule\"\ntable = 78\nallow = { exe = [\"/proc/self/exe\"] }\n",
    )
    .unwrap();
    let (code, stdout, stderr) = doctor(&["--json", "--config", config.to_str().unwrap()]);
    let _ = std::fs::remove_dir_all(&dir);
    let report: Value = serde_json::from_str(&stdout)
        .unwrap_or_else(|e| panic!("doctor --json is not JSON ({e}): {stdout}\n{stderr}"));
    let comm = finding(&report, "allow (rule table 77)");
    assert_eq!(comm["status"], "warn", "{comm:#}");
    assert!(
        comm["detail"].as_str().unwrap().contains("comm only"),
        "{comm:#}"
    );
    assert!(
        comm["fix"].as_str().unwrap().contains("allow.exe"),
        "{comm:#}"
    );
    assert_eq!(finding(&report, "allow (rule table 78)")["status"], "ok");
    // A warning, not a failure: tracing still works.
    assert_eq!(code, Some(if report["ok"] == true { 0 } else { 1 }));
}
