//! Removals the kernel performs without announcing them: IPv4 routes flushed when their link
//! goes down, their address is removed, or their link is deleted (no RTM_DELROUTE is sent).
//! routeguard reports one event per route, attributed to the request that caused the flush.

use routeguard_tests::*;

/// Routes in table 77 through `d0`: three IPv4 (flushed silently) and one IPv6 (announced).
fn routes_via_d0(ns: &Netns) -> Vec<&'static str> {
    for dst in ["10.77.1.0/24", "10.77.2.0/24", "10.77.3.0/24"] {
        ns.ip_ok(&["route", "add", dst, "via", "10.99.0.2", "table", "77"]);
    }
    ns.ip_ok(&argv(
        "-6 route add 2001:db8:77::/64 via 2001:db8:99::2 table 77",
    ));
    vec![
        "10.77.1.0/24",
        "10.77.2.0/24",
        "10.77.3.0/24",
        "2001:db8:77::/64",
    ]
}

fn table_77_routes_removed_by(tracer: &Tracer, pid: u32, cause: &str, n: usize) -> Vec<Value> {
    let mut events = tracer.wait_for_n("flushed routes of table 77", n, EVENT_TIMEOUT, |e| {
        by_pid(e, pid) && at(e, "/kind") == "route" && at(e, "/route/table") == 77
    });
    events.sort_by_key(|e| at(e, "/route/dst").as_str().unwrap_or_default().to_string());
    for ev in &events {
        assert_eq!(at(ev, "/cause"), cause, "{ev:#}");
        assert_eq!(at(ev, "/outcome"), "removed", "{ev:#}");
        assert_eq!(at(ev, "/actor/comm"), "ip", "{ev:#}");
    }
    events
}

fn dsts(events: &[Value]) -> Vec<String> {
    events
        .iter()
        .map(|e| at(e, "/route/dst").as_str().unwrap_or_default().to_string())
        .collect()
}

#[test]
fn link_down_reports_every_route_it_flushed() {
    let ns = Netns::new();
    ns.add_test_link("d0");
    let ifindex = ns.ifindex("d0");
    let want = routes_via_d0(&ns);
    let tracer = Tracer::start(&ns, &[]);
    let pid = ns.ip_ok(&["link", "set", "d0", "down"]);

    let events = table_77_routes_removed_by(&tracer, pid, "link-down", want.len());
    assert_eq!(dsts(&events), want);
    for ev in &events {
        assert_eq!(at(ev, "/trigger/kind"), "link", "{ev:#}");
        assert_eq!(at(ev, "/trigger/op"), "RTM_NEWLINK", "{ev:#}");
        assert_eq!(at(ev, "/trigger/link/ifindex"), ifindex, "{ev:#}");
        assert_eq!(at(ev, "/netns/name"), ns.name(), "{ev:#}");
    }
    let v4 = &events[0];
    assert_eq!(at(v4, "/family"), "inet");
    assert_eq!(
        at(v4, "/route/gateway"),
        "10.99.0.2",
        "the kernel's view names the gateway"
    );
    assert_eq!(at(&events[3], "/family"), "inet6");
    tracer.stop();
}

#[test]
fn address_removal_reports_the_routes_that_depended_on_it() {
    let ns = Netns::new();
    ns.add_test_link("d0");
    routes_via_d0(&ns);
    let tracer = Tracer::start(&ns, &[]);
    // Added while tracing: the mirror learns it from the kernel's notification.
    ns.ip_ok(&argv("route add 10.77.9.0/24 via 10.99.0.2 table 77"));
    let pid = ns.ip_ok(&["addr", "del", "10.99.0.1/24", "dev", "d0"]);

    let events = table_77_routes_removed_by(&tracer, pid, "address-removed", 4);
    assert_eq!(
        dsts(&events),
        [
            "10.77.1.0/24",
            "10.77.2.0/24",
            "10.77.3.0/24",
            "10.77.9.0/24"
        ]
    );
    for ev in &events {
        assert_eq!(at(ev, "/trigger/kind"), "address", "{ev:#}");
        assert_eq!(at(ev, "/trigger/address/address"), "10.99.0.1/24", "{ev:#}");
    }
    tracer.assert_none(
        "IPv6 routes survive an IPv4 address removal",
        QUIET_PERIOD,
        |e| by_pid(e, pid) && at(e, "/route/dst") == "2001:db8:77::/64",
    );
    tracer.stop();
}

#[test]
fn link_removal_reports_its_routes() {
    let ns = Netns::new();
    ns.add_test_link("d0");
    let want = routes_via_d0(&ns);
    let tracer = Tracer::start(&ns, &[]);
    let pid = ns.ip_ok(&["link", "del", "d0"]);
    let events = table_77_routes_removed_by(&tracer, pid, "link-removed", want.len());
    assert_eq!(dsts(&events), want);
    tracer.stop();
}

#[test]
fn a_route_replaced_while_tracing_is_reported_once_as_it_was_last() {
    let ns = Netns::new();
    ns.add_test_link("d0");
    ns.ip_ok(&argv("route add 10.77.5.0/24 via 10.99.0.2 table 77"));
    let tracer = Tracer::start(&ns, &[]);
    let replace = ns.ip_ok(&argv("route replace 10.77.5.0/24 via 10.99.0.3 table 77"));
    tracer.wait_for("ip route replace", EVENT_TIMEOUT, |e| by_pid(e, replace));
    let pid = ns.ip_ok(&["link", "set", "d0", "down"]);
    let flushed = table_77_routes_removed_by(&tracer, pid, "link-down", 1);
    assert_eq!(
        at(&flushed[0], "/route/gateway"),
        "10.99.0.3",
        "the route as replaced"
    );
    tracer.assert_none(
        "the replaced route is not reported as flushed",
        QUIET_PERIOD,
        |e| by_pid(e, pid) && at(e, "/route/gateway") == "10.99.0.2",
    );
    tracer.stop();
}
