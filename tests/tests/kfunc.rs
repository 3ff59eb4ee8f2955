//! Removals only the kernel-function path sees, straight from the kernel's deletion functions:
//! one event per route of a link-down flush, IPv6 route expiry (no actor), and the routes of a
//! namespace being dismantled (no actor). Where fentry/fexit do not load (our build machines)
//! these skip, saying why; `cargo xtask vm-test` runs them on stock Debian kernels.

use std::{process::Command, time::Duration};

use routeguard_tests::*;
use serde_json::Value;

/// The capture path routeguard picks here with `--capture auto`, from `routeguard doctor`.
fn kernel_function_runs() -> bool {
    let ran = run(Command::new(routeguard_bin()).args(["doctor", "--json"]));
    let report: Value = serde_json::from_str(&ran.stdout).expect("doctor --json");
    if report["capture"] == "kernel-function" {
        return true;
    }
    eprintln!(
        "skipped: the kernel-function path does not run on this kernel (capture: {}); \
         `routeguard doctor` says why",
        report["capture"]
    );
    false
}

fn kernel_event(e: &Value) -> bool {
    at(e, "/capture") == "kernel-function"
}

#[test]
fn link_down_flush_is_one_kernel_event_per_route() {
    require_root();
    if !kernel_function_runs() {
        return;
    }
    let ns = Netns::new();
    ns.add_test_link("d0");
    let want: Vec<String> = (1..=5).map(|i| format!("10.77.{i}.0/24")).collect();
    for dst in &want {
        ns.ip_ok(&[
            "route",
            "add",
            dst,
            "via",
            "10.99.0.2",
            "table",
            "77",
            "metric",
            "7",
        ]);
    }
    let tracer = Tracer::start(&ns, &[]);
    let pid = ns.ip_ok(&["link", "set", "d0", "down"]);
    let table77 = |e: &Value| {
        at(e, "/kind") == "route" && at(e, "/route/table") == 77 && at(e, "/family") == "inet"
    };
    let mut events = tracer.wait_for_n("5 flushed routes", want.len(), EVENT_TIMEOUT, table77);
    // Nothing more arrives for them: one event per route, not one per flush call.
    tracer.assert_none(
        "a sixth table-77 route event",
        Duration::from_millis(500),
        |e| table77(e) && !events.contains(e),
    );
    events.sort_by_key(|e| at(e, "/route/dst").as_str().unwrap_or_default().to_string());
    let got: Vec<String> = events
        .iter()
        .map(|e| at(e, "/route/dst").as_str().unwrap().to_string())
        .collect();
    assert_eq!(got, want);
    for ev in &events {
        assert!(kernel_event(ev), "{ev:#}");
        assert_eq!(at(ev, "/cause"), "link-down", "{ev:#}");
        assert_eq!(at(ev, "/outcome"), "removed", "{ev:#}");
        assert_eq!(at(ev, "/actor/pid"), pid, "{ev:#}");
        assert_eq!(at(ev, "/actor/comm"), "ip", "{ev:#}");
        assert_eq!(at(ev, "/netns/inode"), ns.inode(), "{ev:#}");
        // The kernel's own view of the route, not the request's.
        assert_eq!(at(ev, "/route/gateway"), "10.99.0.2", "{ev:#}");
        assert_eq!(at(ev, "/route/priority"), 7, "{ev:#}");
        assert_eq!(at(ev, "/route/dev"), "d0", "{ev:#}");
    }
    tracer.stop();
}

#[test]
fn expired_ipv6_route_has_no_actor() {
    require_root();
    if !kernel_function_runs() {
        return;
    }
    let ns = Netns::new();
    ns.add_test_link("d0");
    // The IPv6 garbage collector runs every gc_interval seconds (30 by default).
    ns.exec("sysctl", &["-qw", "net.ipv6.route.gc_interval=1"])
        .ok("sysctl gc_interval");
    let tracer = Tracer::start(&ns, &[]);
    ns.ip_ok(&argv(
        "-6 route add 2001:db8:e::/64 via 2001:db8:99::2 table 77 expires 2",
    ));
    let ev = tracer.wait_for("the expired route", Duration::from_secs(20), |e| {
        at(e, "/kind") == "route" && at(e, "/route/dst") == "2001:db8:e::/64"
    });
    assert!(kernel_event(&ev), "{ev:#}");
    assert_eq!(at(&ev, "/cause"), "expired", "{ev:#}");
    assert_eq!(
        at(&ev, "/actor"),
        &Value::Null,
        "never a wrong process: {ev:#}"
    );
    assert_eq!(at(&ev, "/family"), "inet6", "{ev:#}");
    assert_eq!(at(&ev, "/route/table"), 77, "{ev:#}");
    assert_eq!(at(&ev, "/route/gateway"), "2001:db8:99::2", "{ev:#}");
    assert_eq!(at(&ev, "/netns/inode"), ns.inode(), "{ev:#}");
    tracer.stop();
}

#[test]
fn routes_of_a_deleted_namespace_are_netns_exit_without_actor() {
    require_root();
    if !kernel_function_runs() {
        return;
    }
    let ns = Netns::new();
    ns.add_test_link("d0");
    ns.ip_ok(&argv("route add 10.78.1.0/24 via 10.99.0.2 table 78"));
    let inode = ns.inode().to_string();
    // By inode: the name is gone once the namespace is.
    let tracer = Tracer::start_args(&["trace", "--json", "--netns", &inode]);
    // First an ordinary removal in the namespace, then the namespace goes away.
    let pid = ns.ip_ok(&["route", "del", "10.78.1.0/24", "table", "78"]);
    ns.ip_ok(&argv("route add 10.78.2.0/24 via 10.99.0.2 table 78"));
    let del = tracer.wait_for("the requested removal", EVENT_TIMEOUT, |e| {
        at(e, "/route/dst") == "10.78.1.0/24"
    });
    assert!(kernel_event(&del), "{del:#}");
    assert_eq!(at(&del, "/cause"), "request", "{del:#}");
    assert_eq!(at(&del, "/actor/pid"), pid, "{del:#}");
    drop(ns);
    let ev = tracer.wait_for(
        "the route of the deleted namespace",
        Duration::from_secs(20),
        |e| at(e, "/route/dst") == "10.78.2.0/24",
    );
    assert!(kernel_event(&ev), "{ev:#}");
    assert_eq!(at(&ev, "/cause"), "netns-exit", "{ev:#}");
    assert_eq!(at(&ev, "/actor"), &Value::Null, "{ev:#}");
    assert_eq!(at(&ev, "/route/table"), 78, "{ev:#}");
    tracer.stop();
}
