//! Removals sent a way the syscall path does not hook: io_uring (`IORING_OP_SENDMSG`, its ack
//! read with `IORING_OP_RECVMSG`), by `clients/uring_del.c`. No request record exists; the
//! kernel's deletion notification is the event, named after the thread rtnetlink made it in and
//! the sender socket's port id (`nlmsg_pid`), and protected objects come back as usual.

use std::{
    io::{BufRead as _, BufReader, Write as _},
    process::{Child, Command, Stdio},
};

use routeguard_tests::*;

/// The io_uring client, built by build.rs.
const URING_DEL: &str = env!("ROUTEGUARD_CLIENT_URING_DEL");

/// What the client printed: its pid, its socket's port id (from `getsockname`), the ack's code.
struct Sent {
    pid: u32,
    port_id: u32,
    child: Option<Child>,
}

impl Sent {
    /// Lets a client started with `hold` close its socket and exit.
    fn release(mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.stdin.take().map(|mut s| s.write_all(b"\n"));
            finish(child, "uring_del", EVENT_TIMEOUT).ok("uring_del");
        }
    }
}

/// Runs `uring_del ARGS...` in `ns`; with `hold` in `args` it is left running with its socket
/// open until [`Sent::release`]. Where io_uring is off (`kernel.io_uring_disabled`), the client
/// says so and this fails: the test is about such senders.
fn uring_del(ns: &Netns, args: &[&str]) -> Sent {
    let mut child = Command::new("ip")
        .args(["netns", "exec", ns.name(), URING_DEL])
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn uring_del");
    let mut line = String::new();
    BufReader::new(child.stdout.take().expect("piped"))
        .read_line(&mut line)
        .expect("read uring_del's output");
    let fields: Vec<i64> = line
        .split_whitespace()
        .map(|f| f.parse().expect("numbers"))
        .collect();
    let [pid, port_id, error] = fields[..] else {
        let ran = finish(child, "uring_del", EVENT_TIMEOUT);
        panic!(
            "uring_del {args:?} printed {line:?}; stderr: {}",
            ran.stderr
        );
    };
    assert_eq!(error, 0, "the kernel refused uring_del {args:?}");
    // `ip netns exec` execs the client in place: the pid we spawned.
    assert_eq!(pid, i64::from(child.id()));
    let held = args.contains(&"hold");
    let child = if held {
        Some(child)
    } else {
        finish(child, "uring_del", EVENT_TIMEOUT).ok("uring_del");
        None
    };
    Sent {
        pid: pid as u32,
        port_id: port_id as u32,
        child,
    }
}

/// Fields of a removal known only from its notification, sent by `sent`.
fn notified_fields(ns: &Netns, sent: &Sent, op: &str) -> Vec<(&'static str, Value)> {
    vec![
        ("/capture", json!(removal_capture())),
        ("/netns/inode", json!(ns.inode())),
        ("/netns/name", json!(ns.name())),
        ("/cause", json!("request")),
        ("/outcome", json!("removed")),
        ("/actor/pid", json!(sent.pid)),
        ("/request/syscall", json!("netlink")),
        ("/request/op", json!(op)),
        ("/request/seq", json!(7171)),
        ("/request/port_id", json!(sent.port_id)),
    ]
}

fn rule_at(e: &Value, priority: u32) -> bool {
    e["event"] == "removal" && at(e, "/kind") == "rule" && at(e, "/rule/priority") == priority
}

#[test]
fn io_uring_removals_are_events_named_by_thread_and_port_id() {
    let ns = Netns::new();
    ns.add_test_link("d0");
    ns.ip_ok(&argv("route add 10.66.0.0/24 via 10.99.0.2 table 77"));
    for prio in ["300", "301"] {
        ns.ip_ok(&["rule", "add", "prio", prio, "lookup", "88"]);
    }
    let tracer = Tracer::start(&ns, &[]);

    // Sent in io_uring_enter by the submitting thread, its socket still open.
    let sent = uring_del(&ns, &["rule", "300", "88", "hold"]);
    let ev = tracer.wait_for("io_uring rule del", EVENT_TIMEOUT, |e| rule_at(e, 300));
    let mut want = notified_fields(&ns, &sent, "RTM_DELRULE");
    want.extend([
        ("/actor/tid", json!(sent.pid)),
        ("/actor/comm", json!("uring_del")),
        ("/rule/table", json!(88)),
    ]);
    assert_fields(&ev, &want);
    sent.release();

    // IOSQE_ASYNC: sent by an io-wq worker, a thread of the submitting process.
    let sent = uring_del(&ns, &["rule", "301", "88", "async", "hold"]);
    let ev = tracer.wait_for("io_uring rule del on a worker", EVENT_TIMEOUT, |e| {
        rule_at(e, 301)
    });
    // The kernel-function path reads the sending thread's own comm, which io_uring names
    // after the submitter; the notification's actor is looked up by process.
    let comm = if ev["capture"] == "kernel-function" {
        format!("iou-wrk-{}", sent.pid)
    } else {
        "uring_del".to_owned()
    };
    let mut want = notified_fields(&ns, &sent, "RTM_DELRULE");
    want.extend([("/actor/comm", json!(comm)), ("/rule/table", json!(88))]);
    assert_fields(&ev, &want);
    assert_ne!(
        at(&ev, "/actor/tid"),
        &json!(sent.pid),
        "the worker thread: {ev:#}"
    );
    sent.release();

    // The sender exits at once, its socket closed: the kernel still named its thread.
    let sent = uring_del(&ns, &["route", "10.66.0.0/24", "77"]);
    let ev = tracer.wait_for("io_uring route del", EVENT_TIMEOUT, |e| {
        e["event"] == "removal" && at(e, "/kind") == "route"
    });
    let mut want = notified_fields(&ns, &sent, "RTM_DELROUTE");
    want.extend([
        ("/route/table", json!(77)),
        ("/route/dst", json!("10.66.0.0/24")),
        ("/route/gateway", json!("10.99.0.2")),
    ]);
    assert_fields(&ev, &want);
    tracer.stop();
}

#[test]
fn a_protected_rule_removed_through_io_uring_is_restored() {
    let ns = Netns::new();
    ns.ip_ok(&argv("rule add prio 310 lookup 88"));
    let tracer = Tracer::start(&ns, &["--protect", "kind=rule priority=310"]);
    let sent = uring_del(&ns, &["rule", "310", "88"]);
    let restore = tracer.wait_for("the restore", expect_within(EVENT_TIMEOUT), |e| {
        e["event"] == "restore" && at(e, "/rule/priority") == 310
    });
    assert_fields(
        &restore,
        &[
            ("/restore/outcome", json!("restored")),
            ("/actor/pid", json!(sent.pid)),
            ("/request/syscall", json!("netlink")),
            ("/request/port_id", json!(sent.port_id)),
        ],
    );
    let rules = ns.ip(&["rule", "show"]).ok("ip rule show").stdout;
    assert!(
        rules
            .lines()
            .any(|l| l.starts_with("310:") && l.contains("lookup 88")),
        "rule 310 is back: {rules}"
    );
    tracer.stop();
}
