//! Route removals by iproute2 (netlink) and net-tools (ioctl).

use routeguard_tests::*;

/// Table 77 gets `10.77.1.0/24 via 10.99.0.2 metric 100`, as kube-router's table would.
fn ns_with_v4_route() -> Netns {
    let ns = Netns::new();
    ns.add_test_link("d0");
    ns.ip_ok(&argv(
        "route add 10.77.1.0/24 via 10.99.0.2 table 77 metric 100",
    ));
    ns
}

#[test]
fn ip_route_del_v4() {
    let ns = ns_with_v4_route();
    let tracer = Tracer::start(&ns, &[]);
    let args = argv("route del 10.77.1.0/24 table 77 metric 100");
    let pid = ns.ip_ok(&args);

    let ev = tracer.wait_for("ip route del", EVENT_TIMEOUT, |e| by_pid(e, pid));
    let mut want = ip_actor_fields(&ns, pid, &args);
    want.extend([
        ("/kind", json!("route")),
        ("/family", json!("inet")),
        ("/cause", json!("request")),
        ("/outcome", json!("removed")),
        ("/errno", json!(null)),
        ("/error", json!(null)),
        ("/request/op", json!("RTM_DELROUTE")),
        ("/route/table", json!(77)),
        ("/route/dst", json!("10.77.1.0/24")),
        ("/route/priority", json!(100)),
        // Not named on the command line: the kernel's notification of what it removed says.
        ("/route/gateway", json!("10.99.0.2")),
    ]);
    assert_fields(&ev, &want);

    let (events, _) = tracer.stop();
    let mine: Vec<_> = events.iter().filter(|e| by_pid(e, pid)).collect();
    assert_eq!(mine.len(), 1, "one removal, one event: {mine:#?}");
}

#[test]
fn ip_route_del_v6() {
    let ns = Netns::new();
    ns.add_test_link("d0");
    ns.ip_ok(&argv(
        "-6 route add 2001:db8:77::/64 via 2001:db8:99::2 table 77 metric 100",
    ));
    let tracer = Tracer::start(&ns, &[]);
    let args = argv("-6 route del 2001:db8:77::/64 table 77 metric 100");
    let pid = ns.ip_ok(&args);

    let ev = tracer.wait_for("ip -6 route del", EVENT_TIMEOUT, |e| by_pid(e, pid));
    let mut want = ip_actor_fields(&ns, pid, &args);
    want.extend([
        ("/kind", json!("route")),
        ("/family", json!("inet6")),
        ("/cause", json!("request")),
        ("/outcome", json!("removed")),
        ("/request/op", json!("RTM_DELROUTE")),
        ("/route/table", json!(77)),
        ("/route/dst", json!("2001:db8:77::/64")),
        ("/route/priority", json!(100)),
    ]);
    assert_fields(&ev, &want);

    let (events, _) = tracer.stop();
    assert_eq!(events.iter().filter(|e| by_pid(e, pid)).count(), 1);
}

/// The kernel refuses to delete a route that is not there with ESRCH (fib_table_delete()).
#[test]
fn ip_route_del_missing_fails_with_esrch() {
    let ns = ns_with_v4_route();
    let tracer = Tracer::start(&ns, &[]);
    let args = ["route", "del", "10.77.9.0/24", "table", "77"];
    let ran = ns.ip(&args);
    assert!(!ran.status.success(), "deleting a missing route must fail");
    assert!(
        ran.stderr.contains("No such process"),
        "the kernel answers ESRCH: {}",
        ran.stderr
    );

    let ev = tracer.wait_for("failed ip route del", EVENT_TIMEOUT, |e| by_pid(e, ran.pid));
    let mut want = ip_actor_fields(&ns, ran.pid, &args);
    want.extend([
        ("/kind", json!("route")),
        ("/family", json!("inet")),
        ("/outcome", json!("failed")),
        ("/errno", json!(libc::ESRCH)),
        ("/error", json!("ESRCH")),
        ("/route/table", json!(77)),
        ("/route/dst", json!("10.77.9.0/24")),
    ]);
    assert_fields(&ev, &want);
    tracer.stop();
}

#[test]
fn ip_route_replace_removes_the_old_route() {
    let ns = Netns::new();
    ns.add_test_link("d0");
    ns.ip_ok(&argv(
        "route add 10.77.2.0/24 via 10.99.0.2 table 77 metric 100",
    ));
    let tracer = Tracer::start(&ns, &[]);
    let args = argv("route replace 10.77.2.0/24 via 10.99.0.3 table 77 metric 100");
    let pid = ns.ip_ok(&args);

    let ev = tracer.wait_for("ip route replace", EVENT_TIMEOUT, |e| by_pid(e, pid));
    let mut want = ip_actor_fields(&ns, pid, &args);
    want.extend([
        ("/kind", json!("route")),
        ("/family", json!("inet")),
        ("/cause", json!("replace")),
        ("/outcome", json!("removed")),
        ("/request/op", json!("RTM_NEWROUTE")),
        // `route` is the route that was replaced, from the mirror's state...
        ("/route/table", json!(77)),
        ("/route/dst", json!("10.77.2.0/24")),
        ("/route/priority", json!(100)),
        ("/route/gateway", json!("10.99.0.2")),
        ("/route/protocol", json!("boot")),
        // ...and `replacement` the one that took its place, as the kernel announced it.
        ("/replacement/table", json!(77)),
        ("/replacement/dst", json!("10.77.2.0/24")),
        ("/replacement/priority", json!(100)),
        ("/replacement/gateway", json!("10.99.0.3")),
    ]);
    assert_fields(&ev, &want);
    tracer.stop();
}

/// Routes removed and added again under the same key (another gateway), then replaced: each
/// replace names the route that was there, never the one removed before it. The
/// kernel-function path's mirror hears no deletions and may still hold a removed route when the
/// replace comes, so this is what its records and its choice of route must get right.
#[test]
fn a_replace_after_a_removal_and_readdition_names_the_route_that_was_there() {
    const N: usize = 8;
    let ns = Netns::new();
    ns.add_test_link("d0");
    let dst = |i: usize| format!("10.78.{i}.0/24");
    let with = |verb: &str, gw: &str| -> Vec<String> {
        (0..N)
            .map(|i| format!("route {verb} {} via {gw} table 77", dst(i)))
            .collect()
    };
    ns.ip_batch(&with("add", "10.99.0.2"));
    let tracer = Tracer::start(&ns, &[]);
    let readd: Vec<String> = (0..N)
        .flat_map(|i| {
            [
                format!("route del {} table 77", dst(i)),
                format!("route add {} via 10.99.0.4 table 77", dst(i)),
            ]
        })
        .collect();
    ns.ip_batch(&readd);
    let pid = ns.ip_batch(&with("replace", "10.99.0.3"));
    let mut events = tracer.wait_for_n("the replaces", N, EVENT_TIMEOUT, |e| {
        by_pid(e, pid) && at(e, "/cause") == "replace"
    });
    events.sort_by_key(|e| at(e, "/route/dst").to_string());
    for (i, ev) in events.iter().enumerate() {
        assert_fields(
            ev,
            &[
                ("/outcome", json!("removed")),
                ("/route/dst", json!(dst(i))),
                ("/route/gateway", json!("10.99.0.4")),
                ("/replacement/gateway", json!("10.99.0.3")),
            ],
        );
    }
    tracer.stop();
}

/// `ip route flush` dumps the table and sends one RTM_DELROUTE per route in batches, without
/// NLM_F_ACK: no reply comes on success, but the kernel's notification of each removal echoes the
/// request's sequence number, so each is reported `removed`, with the gateway it had, and with
/// cause `flush` because its sender is `ip route flush`.
#[test]
fn ip_route_flush_table_reports_every_route() {
    const N: usize = 50;
    let ns = Netns::new();
    ns.add_test_link("d0");
    let dsts: Vec<String> = (0..N).map(|i| format!("10.50.{i}.0/24")).collect();
    let adds: Vec<String> = dsts
        .iter()
        .map(|d| format!("route add {d} via 10.99.0.2 table 77"))
        .collect();
    ns.ip_batch(&adds);
    let tracer = Tracer::start(&ns, &[]);
    let pid = ns.ip_ok(&["route", "flush", "table", "77"]);
    let shown = ns.ip(&["route", "show", "table", "77"]);
    assert!(
        shown.stdout.trim().is_empty(),
        "flush left: {}",
        shown.stdout
    );

    let is_mine = |e: &Value| by_pid(e, pid) && at(e, "/kind") == "route";
    tracer.wait_for_n("routes flushed", N, EVENT_TIMEOUT, is_mine);
    let (events, _) = tracer.stop();
    let mine: Vec<&Value> = events.iter().filter(|e| is_mine(e)).collect();
    assert_eq!(mine.len(), N, "one event per flushed route");
    for ev in &mine {
        assert_fields(
            ev,
            &[
                ("/actor/comm", json!("ip")),
                ("/actor/pid", json!(pid)),
                ("/cause", json!("flush")),
                ("/family", json!("inet")),
                ("/route/table", json!(77)),
                ("/route/gateway", json!("10.99.0.2")),
                ("/request/op", json!("RTM_DELROUTE")),
                ("/request/ack_requested", json!(false)),
                ("/outcome", json!("removed")),
            ],
        );
    }
    let mut got: Vec<String> = mine
        .iter()
        .map(|e| at(e, "/route/dst").as_str().unwrap_or("null").to_owned())
        .collect();
    got.sort();
    let mut want = dsts.clone();
    want.sort();
    assert_eq!(got, want, "every flushed prefix is reported once");
}

/// net-tools' `route del` uses the SIOCDELRT ioctl, not netlink.
#[test]
fn net_tools_route_del_ioctl() {
    let ns = Netns::new();
    ns.add_test_link("d0");
    ns.ip_ok(&["route", "add", "10.88.0.0/24", "via", "10.99.0.2"]);
    let tracer = Tracer::start(&ns, &[]);
    // `ip netns exec` execs `route` in place: the spawned pid is route's pid.
    let ran = ns
        .exec(
            "route",
            &argv("del -net 10.88.0.0 netmask 255.255.255.0 gw 10.99.0.2"),
        )
        .ok("route del -net");

    let ev = tracer.wait_for("route del (ioctl)", EVENT_TIMEOUT, |e| by_pid(e, ran.pid));
    let mut want = actor_fields(&ns, ran.pid, "route");
    want.extend([
        ("/kind", json!("route")),
        ("/family", json!("inet")),
        ("/cause", json!("request")),
        ("/outcome", json!("removed")),
        ("/request/syscall", json!("ioctl")),
        ("/request/op", json!("SIOCDELRT")),
        ("/request/ack_requested", json!(true)),
        ("/route/dst", json!("10.88.0.0/24")),
        ("/route/gateway", json!("10.99.0.2")),
    ]);
    assert_fields(&ev, &want);
    tracer.stop();
}
