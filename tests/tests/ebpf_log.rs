//! The programs' own log lines (aya-log, rare conditions only the kernel sees) reach stderr
//! through `tracing` at `-vv`, and not at all by default. The condition provoked: a request
//! longer than the copy limit (`long_route_replace.py`), which both capture paths log.

use std::time::Duration;

use routeguard_tests::*;

/// A request message of this many bytes is cut on both paths (the syscall path copies 8191
/// bytes of a buffer, the kernel-function path 8192 of a message).
const LONG: &str = "9000";

/// Replaces 10.77.0.0/24 with a request longer than the copy limit; returns the sender's pid.
fn long_replace(ns: &Netns) -> u32 {
    let ran = ns
        .exec(
            &python3(),
            &[&client_script("long_route_replace.py"), "d0", LONG],
        )
        .ok("long_route_replace.py");
    assert_eq!(
        ran.stdout.trim(),
        format!("{} 0", ran.pid),
        "the kernel accepted the long request"
    );
    ran.pid
}

/// The line a program logs for `pid`'s request cut at the copy limit (with the program source
/// line `tracing` adds as `ebpf=FILE:LINE`).
fn cut_line(pid: u32) -> impl Fn(&str) -> bool {
    let who = format!("pid {pid}:");
    move |line: &str| {
        let line = plain(line);
        line.contains(&who) && line.contains("cut at the copy limit") && line.contains(" ebpf=")
    }
}

/// `line` without its terminal colours (`tracing` writes them to a pipe too).
fn plain(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            // CSI: ESC [ parameters final-byte.
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

#[test]
fn a_request_cut_at_the_copy_limit_is_logged_at_vv() {
    let ns = Netns::new();
    ns.add_test_link("d0");
    let tracer = Tracer::start_args(&["trace", "-vv", "--json", "--netns", ns.name()]);
    let pid = long_replace(&ns);
    let line = tracer.wait_stderr("the programs' line", EVENT_TIMEOUT, cut_line(pid));
    assert!(line.contains("DEBUG"), "logged at debug: {line}");
    let (_, stderr) = tracer.stop();
    assert!(
        stderr.contains("requests longer than the copy limit"),
        "the summary counts it too:\n{stderr}"
    );
}

#[test]
fn programs_log_nothing_by_default() {
    let ns = Netns::new();
    ns.add_test_link("d0");
    let tracer = Tracer::start(&ns, &[]);
    let pid = long_replace(&ns);
    // The line would be written before the send returns, and read within milliseconds.
    std::thread::sleep(QUIET_PERIOD + Duration::from_millis(500));
    let (_, stderr) = tracer.stop();
    assert!(
        stderr.contains("requests longer than the copy limit"),
        "the request was cut (the summary counts it):\n{stderr}"
    );
    assert!(
        !stderr.lines().any(cut_line(pid)) && !plain(&stderr).contains(" ebpf="),
        "no line of the programs without -v:\n{stderr}"
    );
}
