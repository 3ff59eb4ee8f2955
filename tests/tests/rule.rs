//! Policy rule removals by iproute2 — the founding incident is networkd deleting these.

use routeguard_tests::*;

#[test]
fn ip_rule_del_by_priority_v4() {
    let ns = Netns::new();
    ns.ip_ok(&argv("rule add prio 100 from 10.0.0.0/8 lookup 77"));
    let tracer = Tracer::start(&ns, &[]);
    let args = ["rule", "del", "prio", "100"];
    let pid = ns.ip_ok(&args);

    let ev = tracer.wait_for("ip rule del", EVENT_TIMEOUT, |e| by_pid(e, pid));
    let mut want = ip_actor_fields(&ns, pid, &args);
    want.extend([
        ("/kind", json!("rule")),
        ("/family", json!("inet")),
        ("/cause", json!("request")),
        ("/outcome", json!("removed")),
        ("/request/op", json!("RTM_DELRULE")),
        ("/rule/priority", json!(100)),
        // The request named only the priority; the kernel's notification of what it removed
        // supplies the rest.
        ("/rule/table", json!(77)),
        ("/rule/from", json!("10.0.0.0/8")),
    ]);
    assert_fields(&ev, &want);

    let (events, _) = tracer.stop();
    assert_eq!(events.iter().filter(|e| by_pid(e, pid)).count(), 1);
}

#[test]
fn ip_rule_del_by_priority_v6() {
    let ns = Netns::new();
    ns.ip_ok(&argv("-6 rule add prio 100 from 2001:db8::/32 lookup 77"));
    let tracer = Tracer::start(&ns, &[]);
    let args = ["-6", "rule", "del", "prio", "100"];
    let pid = ns.ip_ok(&args);

    let ev = tracer.wait_for("ip -6 rule del", EVENT_TIMEOUT, |e| by_pid(e, pid));
    let mut want = ip_actor_fields(&ns, pid, &args);
    want.extend([
        ("/kind", json!("rule")),
        ("/family", json!("inet6")),
        ("/cause", json!("request")),
        ("/outcome", json!("removed")),
        ("/request/op", json!("RTM_DELRULE")),
        ("/rule/priority", json!(100)),
        ("/rule/table", json!(77)),
        ("/rule/from", json!("2001:db8::/32")),
    ]);
    assert_fields(&ev, &want);
    tracer.stop();
}

#[test]
fn ip_rule_del_with_table_and_fwmark() {
    let ns = Netns::new();
    ns.ip_ok(&argv("rule add prio 300 fwmark 0x10/0xff lookup 77"));
    let tracer = Tracer::start(&ns, &[]);
    let args = argv("rule del prio 300 table 77 fwmark 0x10/0xff");
    let pid = ns.ip_ok(&args);

    let ev = tracer.wait_for("ip rule del fwmark", EVENT_TIMEOUT, |e| by_pid(e, pid));
    // iproute2 parses `fwmark 0x10/0xff` by writing a NUL over the '/' in its own argv
    // (iprule_modify(): `*slash = '\0'`), so /proc/PID/cmdline reads `... fwmark 0x10 0xff`
    // afterwards. routeguard records argv at exec, so the event must show the command as run.
    let want = ip_actor_fields(&ns, pid, &args);
    let mut want = want;
    want.extend([
        ("/kind", json!("rule")),
        ("/family", json!("inet")),
        ("/outcome", json!("removed")),
        ("/rule/priority", json!(300)),
        ("/rule/table", json!(77)),
        ("/rule/fwmark", json!("0x10/0xff")),
        ("/rule/invert", json!(false)),
    ]);
    assert_fields(&ev, &want);
    tracer.stop();
}

/// The kernel refuses to delete a rule that is not there with ENOENT (fib_nl_delrule()).
#[test]
fn ip_rule_del_missing_fails_with_enoent() {
    let ns = Netns::new();
    let tracer = Tracer::start(&ns, &[]);
    let args = ["rule", "del", "prio", "4242"];
    let ran = ns.ip(&args);
    assert!(!ran.status.success(), "deleting a missing rule must fail");
    assert!(
        ran.stderr.contains("No such file or directory"),
        "the kernel answers ENOENT: {}",
        ran.stderr
    );

    let ev = tracer.wait_for("failed ip rule del", EVENT_TIMEOUT, |e| by_pid(e, ran.pid));
    let mut want = ip_actor_fields(&ns, ran.pid, &args);
    want.extend([
        ("/kind", json!("rule")),
        ("/outcome", json!("failed")),
        ("/errno", json!(libc::ENOENT)),
        ("/error", json!("ENOENT")),
        ("/rule/priority", json!(4242)),
    ]);
    assert_fields(&ev, &want);
    tracer.stop();
}
