//! What routeguard is told is bounded: `trace`'s sizes and durations out of range are usage
//! errors (exit 2) naming the value and the range, before anything is loaded.

use std::{
    process::{Command, Stdio},
    time::Duration,
};

use routeguard_tests::*;

/// `trace ARGS` is refused with exit 2, its stderr naming `needle`, and starts nothing.
fn trace_refuses(args: &[&str], needle: &str) {
    let child = Command::new(routeguard_bin())
        .arg("trace")
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn routeguard");
    let ran = finish(child, "routeguard trace", Duration::from_secs(10));
    assert_eq!(ran.status.code(), Some(2), "{args:?}: {}", ran.stderr);
    assert!(ran.stderr.contains(needle), "{args:?}: {}", ran.stderr);
    assert!(!ran.stderr.contains("tracing started"), "{}", ran.stderr);
}

#[test]
fn trace_sizes_and_durations_out_of_range_are_usage_errors() {
    // Panicked at `Instant::now() + duration` once tracing had started.
    trace_refuses(
        &["--duration", "18446744073709551615"],
        "accepted: 1ms to 8760h",
    );
    // 2^64 bytes wrapped to 0 in a release build: a wake-up on every event.
    trace_refuses(&["--wakeup", "17179869184G"], "too large");
    trace_refuses(&["--wakeup", "1G"], "accepted: 0 to 512M");
    trace_refuses(&["--ring-size", "2G"], "a power of two from 64K to 1G");
    trace_refuses(&["--queue-size", "4G"], "too large");
    trace_refuses(&["--queue-size", "512K"], "accepted: 1M to 2G");
    trace_refuses(&["--count", "0"], "0");
}
