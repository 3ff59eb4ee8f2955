//! Prevention (`action = "deny"`): routeguard's BPF LSM program on `netlink_send` refuses a
//! removal of a protected rule before rtnetlink acts, and every refusal is an event.
//!
//! BPF LSM programs are refused on the build machines (EPERM, like fentry): there the deny
//! tests skip, saying so, and the fallback test runs. In the QEMU guests (`cargo xtask vm-test`,
//! Debian 6.1 and 6.12, whose kernels list `bpf` in CONFIG_LSM) they run, and they fail when
//! BPF LSM is not active there.

use std::time::Duration;

use routeguard_tests::*;

const LSM_LIST: &str = "/sys/kernel/security/lsm";

/// A tracer protecting `spec` (with `netns=<ns>` added), with prevention running; `None` (the
/// test skips, saying why) where BPF LSM programs cannot load. In a guest, prevention must run.
fn deny_tracer(ns: &Netns, spec: &str) -> Option<Tracer> {
    let spec = format!("{spec} action=deny netns={}", ns.name());
    let tracer = Tracer::start(ns, &["--protect", &spec]);
    let start = tracer.wait_stderr("the start line", Duration::from_secs(5), |l| {
        l.contains("tracing started")
    });
    if start.contains("prevention: BPF LSM, denying 1 selection(s)") {
        return Some(tracer);
    }
    match vm_kernel() {
        Some(kernel) => {
            let lsm = std::fs::read_to_string(LSM_LIST).unwrap_or_default();
            panic!(
                "in the {kernel} guest prevention must run (active LSMs: `{}`); start line: {start}",
                lsm.trim()
            );
        }
        None => {
            eprintln!(
                "skipped: BPF LSM programs are refused on this machine (start line: {start}); \
                 the deny tests run in the QEMU guests: `cargo xtask vm-test -- …` (docs/testing.md)"
            );
            tracer.stop();
            None
        }
    }
}

fn rule_present(ns: &Netns, prio: u32) -> bool {
    let shown = ns.ip(&["rule", "show", "prio", &prio.to_string()]);
    shown.stdout.contains(&format!("{prio}:"))
}

#[test]
fn bpf_lsm_is_active_in_the_guest() {
    let Some(kernel) = vm_kernel() else {
        eprintln!(
            "skipped: a guest check (`cargo xtask vm-test`); this machine refuses BPF LSM programs"
        );
        return;
    };
    let lsm = std::fs::read_to_string(LSM_LIST)
        .unwrap_or_else(|e| panic!("{LSM_LIST} in the {kernel} guest: {e}"));
    assert!(
        lsm.trim().split(',').any(|l| l == "bpf"),
        "BPF LSM is not active in the {kernel} guest: {lsm}"
    );
}

/// A protected rule's delete fails with EPERM and is recorded `denied` with the `ip` that
/// asked; a delete that names no table is refused too (it could match); a rule outside the
/// entry is removed as usual. One tracer for the three: each guest test costs a tracer start.
#[test]
fn a_protected_rule_delete_fails_with_eperm_and_an_unprotected_one_goes() {
    let ns = Netns::new();
    ns.ip_ok(&argv("rule add prio 100 from 10.0.0.0/8 lookup 77"));
    ns.ip_ok(&argv("rule add prio 200 from 10.0.0.0/8 lookup 78"));
    let Some(tracer) = deny_tracer(&ns, "kind=rule table=77 priority=100") else {
        return;
    };
    let args = argv("rule del prio 100 table 77");
    let ran = ns.ip(&args);
    assert_eq!(ran.status.code(), Some(2), "ip must fail: {ran:?}");
    assert!(
        ran.stderr.contains("Operation not permitted"),
        "the send is refused with EPERM: {}",
        ran.stderr
    );
    assert!(rule_present(&ns, 100), "the protected rule must stay");

    let ev = tracer.wait_for("the denial", EVENT_TIMEOUT, |e| by_pid(e, ran.pid));
    let mut want = from_syscall(ip_actor_fields(&ns, ran.pid, &args));
    want.extend([
        ("/kind", json!("rule")),
        ("/family", json!("inet")),
        ("/outcome", json!("denied")),
        ("/errno", json!(libc::EPERM)),
        ("/error", json!("EPERM")),
        ("/request/op", json!("RTM_DELRULE")),
        ("/rule/priority", json!(100)),
        ("/rule/table", json!(77)),
    ]);
    assert_fields(&ev, &want);

    // Underspecified: `ip rule del prio 100` names no table, so it could remove the protected
    // rule (the kernel removes the first rule every named field matches): refused too.
    let bare = ns.ip(&argv("rule del prio 100"));
    assert_eq!(bare.status.code(), Some(2), "{bare:?}");
    assert!(rule_present(&ns, 100), "the protected rule must stay");
    let ev = tracer.wait_for("the second denial", EVENT_TIMEOUT, |e| by_pid(e, bare.pid));
    assert_fields(
        &ev,
        &[
            ("/outcome", json!("denied")),
            ("/actor/comm", json!("ip")),
            ("/rule/priority", json!(100)),
        ],
    );

    // No table named, but priority 200 lies outside the protected range: it cannot match.
    let gone = ns.ip_ok(&argv("rule del prio 200"));
    assert!(!rule_present(&ns, 200), "the unprotected rule is removed");
    let ev = tracer.wait_for("the removal", EVENT_TIMEOUT, |e| by_pid(e, gone));
    assert_fields(
        &ev,
        &[
            ("/outcome", json!("removed")),
            ("/rule/priority", json!(200)),
            ("/rule/table", json!(78)),
        ],
    );
    assert!(rule_present(&ns, 100));
    let (events, _) = tracer.stop();
    // The refused sends removed nothing, so nothing of theirs is reported removed.
    assert!(
        events
            .iter()
            .all(|e| !(by_pid(e, ran.pid) || by_pid(e, bare.pid))
                || at(e, "/outcome") == &json!("denied")),
        "{events:?}"
    );
}

#[test]
fn a_batch_with_one_protected_delete_is_refused_whole() {
    let ns = Netns::new();
    for (prio, table) in [(100, 77), (200, 78), (300, 78)] {
        ns.ip_ok(&argv(&format!(
            "rule add prio {prio} from 10.0.0.0/8 lookup {table}"
        )));
    }
    let Some(tracer) = deny_tracer(&ns, "kind=rule table=77 priority=100") else {
        return;
    };
    let client = client_script("batch_rule_del.py");
    // One sendmsg() with three RTM_DELRULEs, the protected one in the middle.
    let ran = ns
        .exec(&python3(), &[&client, "200", "100", "300"])
        .ok("batch");
    let (pid, result) = ran.stdout.trim().split_once(' ').expect("<pid> <result>");
    let pid: u32 = pid.parse().unwrap();
    assert_eq!(result, format!("send-errno={}", libc::EPERM), "{ran:?}");
    for prio in [100, 200, 300] {
        assert!(
            rule_present(&ns, prio),
            "nothing of the batch is applied: {prio}"
        );
    }
    let denied = tracer.wait_for_n("the batch's denials", 3, EVENT_TIMEOUT, |e| by_pid(e, pid));
    let mut prios: Vec<u64> = denied
        .iter()
        .map(|e| {
            assert_eq!(at(e, "/outcome"), &json!("denied"), "{e}");
            at(e, "/rule/priority").as_u64().unwrap()
        })
        .collect();
    prios.sort_unstable();
    assert_eq!(prios, [100, 200, 300]);

    // Without the protected delete the same client goes through.
    let ran = ns.exec(&python3(), &[&client, "200", "300"]).ok("batch");
    assert!(ran.stdout.trim().ends_with(" 0,0"), "{ran:?}");
    assert!(!rule_present(&ns, 200) && !rule_present(&ns, 300));
    assert!(rule_present(&ns, 100));
    tracer.stop();
}

#[test]
fn an_allowed_exe_removes_the_protected_rule() {
    let ns = Netns::new();
    ns.ip_ok(&argv("rule add prio 100 from 10.0.0.0/8 lookup 77"));
    let python = python3();
    let spec = format!("kind=rule table=77 priority=100 allow-exe={python}");
    let Some(tracer) = deny_tracer(&ns, &spec) else {
        return;
    };
    // `ip` is not allowed ...
    assert_eq!(ns.ip(&argv("rule del prio 100")).status.code(), Some(2));
    // ... the allowed interpreter is (matched by its file's device and inode, in the kernel).
    let ran = ns
        .exec(&python, &[&client_script("batch_rule_del.py"), "100"])
        .ok("allowed delete");
    assert!(ran.stdout.trim().ends_with(" 0"), "{ran:?}");
    assert!(!rule_present(&ns, 100));
    tracer.stop();
}

/// Where BPF LSM cannot load (this machine), or on a kernel the deny program is not proven on
/// (the 6.1 guest), a deny entry still protects, by restore, and `trace` says so at start.
#[test]
fn deny_without_bpf_lsm_falls_back_to_restore_with_a_warning() {
    let ns = Netns::new();
    ns.ip_ok(&argv("rule add prio 100 from 10.0.0.0/8 lookup 77"));
    let spec = format!("kind=rule table=77 action=deny netns={}", ns.name());
    let tracer = Tracer::start(&ns, &["--protect", &spec]);
    let start = tracer.wait_stderr("the start line", Duration::from_secs(5), |l| {
        l.contains("tracing started")
    });
    if start.contains("prevention: BPF LSM") {
        eprintln!("skipped: BPF LSM loads here, so there is no fallback to test");
        tracer.stop();
        return;
    }
    assert!(
        start.contains("prevention: unavailable (") && start.contains("protecting by restore"),
        "{start}"
    );
    if let Some(kernel) = vm_kernel() {
        // BPF LSM is active in the guests: only a kernel older than the program is proven on
        // (6.1) falls back, and says so.
        assert!(
            start.contains("proven on 6.12 and later"),
            "in the {kernel} guest the fallback names the kernel: {start}"
        );
    }
    let pid = ns.ip_ok(&argv("rule del prio 100"));
    tracer.wait_for("the restore", EVENT_TIMEOUT, |e| {
        by_pid(e, pid) && e["restore"]["outcome"] == "restored"
    });
    assert!(rule_present(&ns, 100), "restored (removed by {pid})");
    tracer.stop();
}

#[test]
fn a_bad_action_is_one_clear_error() {
    let ran = run(std::process::Command::new(routeguard_bin()).args([
        "trace",
        "--protect",
        "kind=rule table=77 action=refuse",
    ]));
    assert_eq!(ran.status.code(), Some(2), "{ran:?}");
    assert!(
        ran.stderr.contains("action `refuse` is not an action"),
        "{}",
        ran.stderr
    );
    // clap's usage error: the message on its first line, then only its pointer to --help.
    let first = ran.stderr.lines().next().unwrap_or_default();
    assert!(first.contains("action `refuse`"), "{}", ran.stderr);
    assert!(!ran.stderr.contains("tracing started"), "{}", ran.stderr);
}
