//! Netlink clients other than iproute2: pyroute2, and raw sockets that send with sendto() and
//! write() instead of sendmsg().

use std::time::Duration;

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

/// `writev` with the netlink header and the body in two iovecs: attributed like sendmsg (before
/// it was hooked, only the kernel's notification named the removal: syscall `netlink`, no ack).
#[test]
fn raw_netlink_writev_read() {
    let (ev, pid, ns) = raw_rule_del("writev");
    assert_fields(&ev, &raw_fields(&ns, pid, "writev"));
}

/// `writev` with the netlink header itself split over two iovecs, then the body: the programs'
/// quick look at the first iovec cannot judge it, and must not drop it.
#[test]
fn raw_netlink_writev_split_header() {
    let (ev, pid, ns) = raw_rule_del("writev-split");
    assert_fields(&ev, &raw_fields(&ns, pid, "writev"));
}

/// A root `ip rule del` in a namespace where an unprivileged process sent RTM_DELRULEs for the
/// same rule carrying the sequence numbers `ip` was about to use (iproute2 starts at
/// `time(NULL)`), all still unanswered when `ip` removes the rule: refused with EPERM, their acks
/// read only after `ip`'s removal (`refused`), or sent without NLM_F_ACK and never read
/// (`unread`). Only the request the kernel accepted may claim the kernel's notification: the
/// removal is `ip`'s, with its pid, comm and the rule's priority and table, and none of the other
/// requests is `removed`. (A join on (namespace, seq) alone gave `unread`'s removal to the
/// unprivileged process: seen failing with that join put back.)
fn seq_collision(mode: &str) {
    use std::io::{BufRead as _, BufReader, Write as _};
    use std::process::{Command, Stdio};

    let python = python3();
    let ns = Netns::new();
    ns.ip_ok(&["rule", "add", "prio", "100", "lookup", "77"]);
    let tracer = Tracer::start(&ns, &[]);
    let mut hostile = Command::new("ip")
        .args(["netns", "exec", ns.name(), "setpriv"])
        .args(["--reuid", "65534", "--regid", "65534", "--clear-groups"])
        .args([&python, &client_script("seq_collide.py"), mode, "100", "2"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn seq_collide.py");
    let mut out = BufReader::new(hostile.stdout.take().unwrap());
    let mut line = String::new();
    out.read_line(&mut line).expect("seq_collide.py output");
    let words: Vec<&str> = line.split_whitespace().collect();
    assert_eq!(words.len(), 2, "seq_collide.py said {line:?}");
    let hostile_pid: u32 = words[0].parse().unwrap();
    assert_eq!(
        hostile_pid,
        hostile.id(),
        "setpriv and ip netns exec exec in place"
    );
    let seqs: Vec<u64> = words[1].split(',').map(|s| s.parse().unwrap()).collect();

    let args = ["rule", "del", "prio", "100"];
    let pid = ns.ip_ok(&args);
    let mut stdin = hostile.stdin.take().unwrap();
    let _ = writeln!(stdin, "read your acks");
    drop(stdin);
    if mode == "refused" {
        let mut acks = String::new();
        out.read_line(&mut acks).expect("the acks");
        let eperm = format!("-{}", libc::EPERM);
        assert!(
            acks.trim().split(',').all(|e| e == eperm),
            "the kernel refused every one: {acks:?}"
        );
    }
    let removal = tracer.wait_for("ip's removal", EVENT_TIMEOUT, |e| by_pid(e, pid));
    let mut want = ip_actor_fields(&ns, pid, &args);
    want.extend([
        ("/kind", json!("rule")),
        ("/outcome", json!("removed")),
        ("/rule/priority", json!(100)),
        ("/rule/table", json!(77)),
    ]);
    assert_fields(&removal, &want);
    let seq = removal["request"]["seq"].as_u64().expect("ip's seq");
    assert!(
        seqs.contains(&seq),
        "ip used seq {seq}, which the other requests carried too ({seqs:?}): the test collided"
    );

    // Each of the other requests is an event of its own, and none removed anything.
    let theirs = tracer.wait_for_n(
        "the colliding requests",
        seqs.len(),
        Duration::from_secs(10),
        |e| by_pid(e, hostile_pid),
    );
    assert!(
        theirs.iter().any(|e| e["request"]["seq"] == seq),
        "one of them carried ip's seq {seq}: {theirs:#?}"
    );
    for e in &theirs {
        assert_fields(
            e,
            &[("/actor/uid", json!(65534)), ("/rule/priority", json!(100))],
        );
        match e["outcome"].as_str() {
            // An ack read within the reply wait (500 ms) is the kernel's refusal.
            Some("failed") => assert_eq!(e["errno"], json!(libc::EPERM), "{e:#}"),
            Some("unknown") => {}
            other => panic!("a refused or unanswered request is {other:?}: {e:#}"),
        }
    }
    if mode == "refused" {
        assert!(
            theirs.iter().any(|e| e["outcome"] == "failed"),
            "the refusals read right after ip's removal are recorded: {theirs:#?}"
        );
    }
    tracer.assert_none("a second event for ip's removal", QUIET_PERIOD, |e| {
        e["outcome"] == "removed" && !by_pid(e, pid)
    });
    let _ = wait_timeout(&mut hostile, Duration::from_secs(10));
    tracer.stop();
}

#[test]
fn a_refused_request_with_ips_seq_does_not_take_its_removal() {
    seq_collision("refused");
}

#[test]
fn an_unread_request_with_ips_seq_does_not_take_its_removal() {
    seq_collision("unread");
}

/// A receiver that repoints its msghdr's iovec at a forged ack (error 0) while blocked in
/// recvmsg(), then sends an RTM_DELRULE the kernel refuses (EPERM: unprivileged): routeguard
/// records the kernel's answer (`failed`, EPERM), not what the receiver's memory says afterwards.
#[test]
fn a_forged_ack_in_the_receivers_memory_is_not_the_outcome() {
    let python = python3();
    let ns = Netns::new();
    ns.ip_ok(&["rule", "add", "prio", "100", "lookup", "77"]);
    let tracer = Tracer::start(&ns, &[]);
    let ran = run(std::process::Command::new("ip")
        .args(["netns", "exec", ns.name(), "setpriv"])
        .args(["--reuid", "65534", "--regid", "65534", "--clear-groups"])
        .args([&python, &client_script("forged_ack.py"), "100"]))
    .ok("forged_ack.py");
    let words: Vec<&str> = ran.stdout.split_whitespace().collect();
    assert_eq!(words.len(), 4, "forged_ack.py said {:?}", ran.stdout);
    let pid: u32 = words[0].parse().unwrap();
    assert_eq!(
        (words[2], words[3]),
        (format!("-{}", libc::EPERM).as_str(), "0"),
        "the kernel refused; the forged ack says done"
    );
    let ev = tracer.wait_for("the refused request", EVENT_TIMEOUT, |e| by_pid(e, pid));
    assert_fields(
        &ev,
        &[
            ("/actor/uid", json!(65534)),
            ("/rule/priority", json!(100)),
            ("/request/seq", json!(words[1].parse::<u64>().unwrap())),
            ("/outcome", json!("failed")),
            ("/errno", json!(libc::EPERM)),
        ],
    );
    assert!(ns
        .ip(&["rule", "show"])
        .ok("ip rule")
        .stdout
        .contains("100:"));
    tracer.stop();
}
