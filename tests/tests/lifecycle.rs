//! How `routeguard trace` ends: --count, --duration and SIGTERM all end it cleanly, with the
//! `routeguard: <E> events, <L> lost` summary and exit 0 (checked by the harness).

use std::time::Duration;

use routeguard_tests::*;

fn ns_with_rules(prios: &[&str]) -> Netns {
    let ns = Netns::new();
    for prio in prios {
        ns.ip_ok(&["rule", "add", "prio", prio, "lookup", "77"]);
    }
    ns
}

#[test]
fn count_ends_the_trace() {
    let ns = ns_with_rules(&["100", "101"]);
    let tracer = Tracer::start(&ns, &["--count", "1"]);
    let pid = ns.ip_ok(&["rule", "del", "prio", "100"]);
    let (events, stderr) = tracer.wait_exit("--count 1", Duration::from_secs(10));
    assert_eq!(events.len(), 1, "--count 1 prints one event: {events:#?}");
    assert_fields(
        &events[0],
        &[("/actor/pid", json!(pid)), ("/rule/priority", json!(100))],
    );
    assert_eq!(parse_summary(&stderr), Some((1, 0)), "{stderr}");
}

#[test]
fn duration_ends_the_trace() {
    let ns = ns_with_rules(&["100"]);
    let tracer = Tracer::start(&ns, &["--duration", "2s"]);
    let pid = ns.ip_ok(&["rule", "del", "prio", "100"]);
    // Attaching is not part of the duration's promise, so allow generous slack past 2 s.
    let (events, _) = tracer.wait_exit("--duration 2s", Duration::from_secs(10));
    let ev = events
        .iter()
        .find(|e| by_pid(e, pid))
        .unwrap_or_else(|| panic!("the deletion inside the window is reported: {events:#?}"));
    assert_fields(
        ev,
        &[("/kind", json!("rule")), ("/outcome", json!("removed"))],
    );
}

#[test]
fn sigterm_ends_the_trace() {
    let ns = ns_with_rules(&["100"]);
    let tracer = Tracer::start(&ns, &[]);
    let pid = ns.ip_ok(&["rule", "del", "prio", "100"]);
    tracer.wait_for("ip rule del", EVENT_TIMEOUT, |e| by_pid(e, pid));
    let (events, stderr) = tracer.stop_with(libc::SIGTERM);
    assert_eq!(parse_summary(&stderr), Some((events.len() as u64, 0)));
}
