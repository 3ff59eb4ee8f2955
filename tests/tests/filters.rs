//! `routeguard trace` filters.

use routeguard_tests::*;

fn ns_with_route_and_rule() -> Netns {
    let ns = Netns::new();
    ns.add_test_link("d0");
    ns.ip_ok(&argv("route add 10.77.1.0/24 via 10.99.0.2 table 77"));
    ns.ip_ok(&argv("route add 10.77.2.0/24 via 10.99.0.2 table 77"));
    ns.ip_ok(&["rule", "add", "prio", "100", "lookup", "77"]);
    ns
}

#[test]
fn comm_filter() {
    let ns = ns_with_route_and_rule();

    let other = Tracer::start(&ns, &["--comm", "no-such-comm"]);
    ns.ip_ok(&["route", "del", "10.77.1.0/24", "table", "77"]);
    other.assert_none("--comm no-such-comm", QUIET_PERIOD, |_| true);
    let (events, _) = other.stop();
    assert!(events.is_empty(), "{events:#?}");

    // The same filter naming the actor lets its event through.
    let ip = Tracer::start(&ns, &["--comm", "ip"]);
    let pid = ns.ip_ok(&["route", "del", "10.77.2.0/24", "table", "77"]);
    let ev = ip.wait_for("--comm ip", EVENT_TIMEOUT, |e| by_pid(e, pid));
    assert_fields(
        &ev,
        &[
            ("/actor/comm", json!("ip")),
            ("/route/dst", json!("10.77.2.0/24")),
        ],
    );
    ip.stop();
}

#[test]
fn kind_filter() {
    let ns = ns_with_route_and_rule();
    let tracer = Tracer::start(&ns, &["--kind", "rule"]);
    let route_pid = ns.ip_ok(&["route", "del", "10.77.1.0/24", "table", "77"]);
    let rule_pid = ns.ip_ok(&["rule", "del", "prio", "100"]);

    let ev = tracer.wait_for("--kind rule", EVENT_TIMEOUT, |e| by_pid(e, rule_pid));
    assert_fields(
        &ev,
        &[("/kind", json!("rule")), ("/rule/priority", json!(100))],
    );
    tracer.assert_none("route deletion under --kind rule", QUIET_PERIOD, |e| {
        by_pid(e, route_pid) || at(e, "/kind") != "rule"
    });
    tracer.stop();
}
