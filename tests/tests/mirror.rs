//! Removals only the netlink mirror sees: a namespace destroyed with routes and rules in it, an
//! IPv6 route whose lifetime runs out (both with no actor), and a notification socket that
//! overflows (ENOBUFS) in the middle of a burst of silent removals.

use std::time::Duration;

use routeguard_tests::*;

/// `ip netns del` while the namespace has routes and a rule: one `netns-exit` event for each,
/// with no actor and no request, and nothing for what the kernel made itself.
#[test]
fn netns_del_reports_every_route_and_rule_it_held() {
    let mut ns = Netns::new();
    ns.add_test_link("d0");
    ns.ip_ok(&argv("route add 10.77.1.0/24 via 10.99.0.2 table 77"));
    ns.ip_ok(&argv(
        "-6 route add 2001:db8:77::/64 via 2001:db8:99::2 table 77",
    ));
    ns.ip_ok(&["rule", "add", "prio", "100", "table", "77"]);
    // The route mirror's own detection (capture `netlink`) is what this tests: the syscall
    // path. On the kernel-function path the kernel reports these itself (tests/tests/kfunc.rs).
    let tracer = Tracer::start(&ns, &["--capture", "syscall"]);
    let name = ns.name().to_string();
    let inode = ns.inode();
    ns.delete();

    let is_exit = |e: &Value| at(e, "/cause") == "netns-exit";
    tracer.wait_for_n("netns-exit events", 3, EVENT_TIMEOUT, is_exit);
    // Anything more would come within the mirror's next rescan.
    std::thread::sleep(Duration::from_millis(1500));
    let (events, _) = tracer.stop();
    let mut exits: Vec<&Value> = events.iter().filter(|e| is_exit(e)).collect();
    exits.sort_by_key(|e| e.to_string());
    for ev in &exits {
        assert_fields(
            ev,
            &[
                ("/outcome", json!("removed")),
                ("/capture", json!("netlink")),
                ("/actor", Value::Null),
                ("/request", Value::Null),
                ("/netns/inode", json!(inode)),
                ("/netns/name", json!(name)),
            ],
        );
    }
    let summary: Vec<String> = exits
        .iter()
        .map(|e| match at(e, "/kind").as_str() {
            Some("route") => format!(
                "route {} table {} via {}",
                at(e, "/route/dst"),
                at(e, "/route/table"),
                at(e, "/route/gateway")
            ),
            _ => format!(
                "rule prio {} table {}",
                at(e, "/rule/priority"),
                at(e, "/rule/table")
            ),
        })
        .collect();
    let mut summary = summary;
    summary.sort();
    assert_eq!(
        summary,
        [
            r#"route "10.77.1.0/24" table 77 via "10.99.0.2""#,
            r#"route "2001:db8:77::/64" table 77 via "2001:db8:99::2""#,
            "rule prio 100 table 77",
        ],
        "one event per route and rule added, none for the kernel's own: {events:#?}"
    );
}

/// `ip -6 route add … expires 2`: when the kernel's garbage collector removes it, the event has
/// cause `expired` and no actor — not the `ip` that added it, nor anyone else.
#[test]
fn ipv6_route_expiry_has_no_actor() {
    let ns = Netns::new();
    ns.add_test_link("d0");
    // The collector runs every gc_interval seconds (30 by default).
    ns.exec("sysctl", &["-qw", "net.ipv6.route.gc_interval=1"])
        .ok("sysctl net.ipv6.route.gc_interval=1");
    // The tracer starts first: under QEMU/TCG (cargo xtask vm-test) starting it takes longer
    // than the route lives, and a route that expired before tracing began yields no event.
    // The mirror's detection (capture `netlink`), so the syscall path; the kernel-function
    // path reports expiry from the kernel (tests/tests/kfunc.rs).
    let tracer = Tracer::start(&ns, &["--capture", "syscall"]);
    ns.ip_ok(&argv(
        "-6 route add 2001:db8:55::/64 via 2001:db8:99::2 table 77 expires 3",
    ));
    let is_it = |e: &Value| at(e, "/route/dst") == "2001:db8:55::/64";
    let ev = tracer.wait_for("the route expiring", Duration::from_secs(15), is_it);
    assert_fields(
        &ev,
        &[
            ("/kind", json!("route")),
            ("/family", json!("inet6")),
            ("/cause", json!("expired")),
            ("/outcome", json!("removed")),
            ("/capture", json!("netlink")),
            ("/actor", Value::Null),
            ("/request", Value::Null),
            ("/netns/inode", json!(ns.inode())),
            ("/route/table", json!(77)),
            ("/route/gateway", json!("2001:db8:99::2")),
        ],
    );
    let shown = ns.ip(&["-6", "route", "show", "table", "77"]);
    assert!(
        !shown.stdout.contains("2001:db8:55::"),
        "the route is still there: {}",
        shown.stdout
    );
    let (events, _) = tracer.stop();
    let about_it: Vec<&Value> = events.iter().filter(|e| is_it(e)).collect();
    assert_eq!(about_it.len(), 1, "exactly one event: {about_it:#?}");
}

/// With the mirror's notification socket shrunk to the kernel's minimum, a link-down that makes
/// the kernel announce 2,000 IPv6 route deletions overflows it. The mirror re-dumps, counts the
/// resync, and the diff still yields every route, attributed to the `ip` that took the link
/// down.
#[test]
fn notification_overflow_resyncs_and_misses_nothing() {
    const N: usize = 2000;
    // 2,000 deletions, overflowing re-dumps and the diff: 120 s under TCG (see `expect_within`).
    let timeout = EVENT_TIMEOUT * 4;
    let ns = Netns::new();
    ns.add_test_link("d0");
    let dsts: Vec<String> = (0..N)
        .map(|i| format!("2001:db8:{:x}::/64", 0x1000 + i))
        .collect();
    let adds: Vec<String> = dsts
        .iter()
        .map(|d| format!("route add {d} via 2001:db8:99::2 table 77"))
        .collect();
    ns.ip_batch(&adds);
    // The mirror is what is under test: on the kernel-function path the kernel would report
    // each route itself, so the syscall path is asked for on every kernel.
    let tracer = Tracer::start_with_env(
        &[
            "trace",
            "--json",
            "--capture",
            "syscall",
            "--netns",
            ns.name(),
        ],
        &[("ROUTEGUARD_MIRROR_RCVBUF", "1")],
    );
    let pid = ns.ip_ok(&["link", "set", "d0", "down"]);

    let is_mine =
        |e: &Value| by_pid(e, pid) && at(e, "/kind") == "route" && at(e, "/route/table") == 77;
    tracer.wait_for_n("routes removed by the link-down", N, timeout, is_mine);
    let (events, stderr) = tracer.stop();
    let mine: Vec<&Value> = events.iter().filter(|e| is_mine(e)).collect();
    for ev in &mine {
        assert_fields(
            ev,
            &[
                ("/cause", json!("link-down")),
                ("/actor/comm", json!("ip")),
                ("/family", json!("inet6")),
                ("/route/gateway", json!("2001:db8:99::2")),
            ],
        );
    }
    let mut got: Vec<String> = mine
        .iter()
        .map(|e| at(e, "/route/dst").as_str().unwrap_or("null").to_owned())
        .collect();
    got.sort();
    let mut want = dsts;
    want.sort();
    assert_eq!(got, want, "every route once");
    // `routeguard: also: …; 3 route-mirror resyncs (…)`
    let resyncs: u64 = stderr
        .lines()
        .find_map(|l| l.split_once(" route-mirror resyncs"))
        .and_then(|(before, _)| before.rsplit(' ').next()?.parse().ok())
        .unwrap_or(0);
    assert!(
        resyncs > 0,
        "the notification socket never overflowed, so this test proved nothing; stderr:\n{stderr}"
    );
    eprintln!("{resyncs} resync(s) for {N} announced deletions");
}

/// `ip -n NS route flush table 77` of 20,000 routes, with the mirror's notification socket
/// shrunk to the kernel's minimum: the flush asks for no acks, so each deletion's only evidence
/// is the kernel's notification of it, which the socket filter on the mirror's listener copies
/// into the ring before the socket could drop it. Every route is one `removed` event of the
/// `ip` that flushed it, none `unknown`, and trace's closing `outcomes:` line says each rests on
/// a notification.
#[test]
fn a_flush_that_would_overflow_the_mirror_is_removed_route_by_route() {
    const N: usize = 20_000;
    // Adding, dumping and flushing 20,000 routes: minutes under TCG (see `expect_within`).
    let timeout = EVENT_TIMEOUT * 6;
    let ns = Netns::new();
    ns.add_test_link("d0");
    let dsts: Vec<String> = (0..N)
        .map(|i| format!("10.{}.{}.0/24", i / 256, i % 256))
        .collect();
    let adds: Vec<String> = dsts
        .iter()
        .map(|d| format!("route add {d} via 10.99.0.2 table 77"))
        .collect();
    ns.ip_batch(&adds);
    // The syscall path's joins are under test: on the kernel-function path the kernel's own
    // records report each route.
    let tracer = Tracer::start_with_env(
        &[
            "trace",
            "--json",
            "--capture",
            "syscall",
            "--netns",
            ns.name(),
        ],
        &[("ROUTEGUARD_MIRROR_RCVBUF", "1")],
    );
    let pid = ns.ip_ok(&["route", "flush", "table", "77"]);
    let shown = ns.ip(&["route", "show", "table", "77"]);
    assert!(
        shown.stdout.trim().is_empty(),
        "flush left: {}",
        shown.stdout
    );

    let is_mine = |e: &Value| by_pid(e, pid) && at(e, "/kind") == "route";
    tracer.wait_for_n("routes flushed", N, timeout, is_mine);
    let (events, stderr) = tracer.stop();
    let mine: Vec<&Value> = events.iter().filter(|e| is_mine(e)).collect();
    let unknown = mine
        .iter()
        .filter(|e| at(e, "/outcome") != "removed")
        .count();
    assert_eq!(
        unknown, 0,
        "{unknown} of {N} flushed routes are not `removed`; stderr:\n{stderr}"
    );
    for ev in &mine {
        assert_fields(
            ev,
            &[
                ("/actor/comm", json!("ip")),
                ("/actor/pid", json!(pid)),
                ("/cause", json!("flush")),
                ("/outcome", json!("removed")),
                ("/route/table", json!(77)),
                ("/route/gateway", json!("10.99.0.2")),
                ("/request/op", json!("RTM_DELROUTE")),
            ],
        );
    }
    let mut got: Vec<String> = mine
        .iter()
        .map(|e| at(e, "/route/dst").as_str().unwrap_or("null").to_owned())
        .collect();
    got.sort();
    let mut want = dsts;
    want.sort();
    assert_eq!(got.len(), want.len(), "one event per flushed route");
    assert!(got == want, "every flushed prefix is reported once");
    // `routeguard: outcomes: removed N (ack A, notification B, …), failed G, unknown U`
    let outcomes = stderr
        .lines()
        .find(|l| l.contains("routeguard: outcomes:"))
        .unwrap_or_else(|| panic!("no `outcomes:` line on stderr:\n{stderr}"));
    assert!(
        outcomes.contains(&format!("notification {N}")),
        "every removal rests on its notification: {outcomes}"
    );
    assert!(
        outcomes.ends_with("unknown 0"),
        "nothing is unknown: {outcomes}"
    );
    // Whether the listener re-dumped is not asserted: the count covers every namespace the
    // tracer mirrors, and other tests on the host may overflow theirs (the tiny buffer is every
    // listener's).
}
