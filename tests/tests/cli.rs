//! Usage errors: exit 2 with a message naming the bad value, before anything is loaded.

use std::process::Command;
use std::time::Duration;

use routeguard_tests::*;

fn trace_usage_error(args: &[&str], bad: &str) {
    require_root();
    let child = Command::new(routeguard_bin())
        .arg("trace")
        .args(args)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn routeguard");
    let ran = finish(child, "routeguard trace", Duration::from_secs(10));
    assert_eq!(
        ran.status.code(),
        Some(2),
        "trace {args:?} must exit 2; stderr: {}",
        ran.stderr
    );
    assert!(
        ran.stderr.contains(bad),
        "stderr must name the bad value {bad:?}: {}",
        ran.stderr
    );
    assert!(
        !ran.stderr.contains("tracing started"),
        "a usage error must not start tracing: {}",
        ran.stderr
    );
}

#[test]
fn bad_family_is_a_usage_error() {
    trace_usage_error(&["--family", "5"], "5");
}

#[test]
fn bad_kind_is_a_usage_error() {
    trace_usage_error(&["--kind", "bogus"], "bogus");
}
