//! Netlink clients other than iproute2: pyroute2, and raw sockets that send with sendto() and
//! write() instead of sendmsg().

use routeguard_tests::*;

#[test]
fn pyroute2_deletes_route_and_rule() {
    let python = python3_with_pyroute2();
    let ns = Netns::new();
    ns.add_test_link("d0");
    ns.ip_ok(&argv("route add 10.66.0.0/24 via 10.99.0.2 table 77"));
    ns.ip_ok(&["rule", "add", "prio", "200", "lookup", "77"]);
    let tracer = Tracer::start(&ns, &[]);
    let ran = ns
        .exec(
            &python,
            &[
                &client_script("pyroute2_del.py"),
                "10.66.0.0/24",
                "77",
                "200",
            ],
        )
        .ok("pyroute2_del.py");
    // `ip netns exec` execs python in place, so the script reports the pid we spawned.
    assert_eq!(ran.stdout.trim(), ran.pid.to_string());

    let route = tracer.wait_for("pyroute2 route del", EVENT_TIMEOUT, |e| {
        by_pid(e, ran.pid) && at(e, "/kind") == "route"
    });
    let mut want = actor_fields(&ns, ran.pid, "python3");
    want.extend([
        ("/family", json!("inet")),
        ("/cause", json!("request")),
        ("/outcome", json!("removed")),
        ("/request/op", json!("RTM_DELROUTE")),
        ("/route/table", json!(77)),
        ("/route/dst", json!("10.66.0.0/24")),
    ]);
    assert_fields(&route, &want);

    let rule = tracer.wait_for("pyroute2 rule del", EVENT_TIMEOUT, |e| {
        by_pid(e, ran.pid) && at(e, "/kind") == "rule"
    });
    let mut want = actor_fields(&ns, ran.pid, "python3");
    want.extend([
        ("/family", json!("inet")),
        ("/cause", json!("request")),
        ("/outcome", json!("removed")),
        ("/request/op", json!("RTM_DELRULE")),
        ("/rule/priority", json!(200)),
        ("/rule/table", json!(77)),
    ]);
    assert_fields(&rule, &want);
    tracer.stop();
}

/// Runs `raw_rule_del.py MODE 100` in `ns` against a rule at priority 100 and returns the event.
fn raw_rule_del(mode: &str) -> (Value, u32, Netns) {
    let python = python3();
    let ns = Netns::new();
    ns.ip_ok(&["rule", "add", "prio", "100", "lookup", "77"]);
    let tracer = Tracer::start(&ns, &[]);
    let ran = ns
        .exec(&python, &[&client_script("raw_rule_del.py"), mode, "100"])
        .ok("raw_rule_del.py");
    assert_eq!(
        ran.stdout.trim(),
        format!("{} 0", ran.pid),
        "the kernel acked the deletion"
    );
    let ev = tracer.wait_for("raw RTM_DELRULE", EVENT_TIMEOUT, |e| by_pid(e, ran.pid));
    tracer.stop();
    (ev, ran.pid, ns)
}

fn raw_fields(ns: &Netns, pid: u32, syscall: &str) -> Vec<(&'static str, Value)> {
    let mut want = actor_fields(ns, pid, "python3");
    want.extend([
        ("/kind", json!("rule")),
        ("/family", json!("inet")),
        ("/cause", json!("request")),
        ("/outcome", json!("removed")),
        ("/request/syscall", json!(syscall)),
        ("/request/op", json!("RTM_DELRULE")),
        // The script's hand-built header: seq 4242, NLM_F_REQUEST | NLM_F_ACK.
        ("/request/seq", json!(4242)),
        (
            "/request/nlmsg_flags",
            json!(libc::NLM_F_REQUEST | libc::NLM_F_ACK),
        ),
        ("/request/ack_requested", json!(true)),
        ("/rule/priority", json!(100)),
        // Named only by priority; the kernel's view adds the table.
        ("/rule/table", json!(77)),
    ]);
    want
}

#[test]
fn raw_netlink_sendto_recvfrom() {
    let (ev, pid, ns) = raw_rule_del("sendto");
    assert_fields(&ev, &raw_fields(&ns, pid, "sendto"));
}

#[test]
fn raw_netlink_write_read() {
    let (ev, pid, ns) = raw_rule_del("write");
    assert_fields(&ev, &raw_fields(&ns, pid, "write"));
}
