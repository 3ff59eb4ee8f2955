//! The restore engine's state in the daemon: bounded (only namespaces routeguard watches, capped
//! maps whose overflow is counted in the metrics and the last line on stderr) and kept across a
//! SIGHUP that leaves a protect entry as it was (suspensions, link-down retries).
//! Restores happen in the namespaces the daemon watches: its own, `/run/netns` and the one
//! `ROUTEGUARD_HOST_NETNS` names (the DaemonSet's node namespace, seen from a pod's own).

use std::{
    io::Write as _,
    os::unix::fs::MetadataExt as _,
    process::{Command, Stdio},
};

use routeguard_tests::held::{wait_in_own_netns, HeldNamespace};

use super::*;

/// `[[protect]]` of rule priority 100 in `ns`, named `name`.
fn protect_rule(ns: &Netns, name: &str) -> String {
    format!(
        "\n[[protect]]\nname = \"{name}\"\nkind = \"rule\"\npriority = 100\nnetns = \"{}\"\n",
        ns.name()
    )
}

fn is_restore(e: &Value) -> bool {
    e["event"] == "restore"
}

/// The metric lines that start with `prefix`.
fn series(metrics: &str, prefix: &str) -> Vec<String> {
    metrics
        .lines()
        .filter(|l| l.starts_with(prefix))
        .map(str::to_owned)
        .collect()
}

impl Daemon {
    /// Sends SIGHUP and waits for the `n`th `config reloaded`.
    fn reload(&self, n: usize) {
        self.signal(libc::SIGHUP);
        let deadline = Instant::now() + EVENT_TIMEOUT;
        while self.stderr().matches("config reloaded").count() < n {
            assert!(
                Instant::now() < deadline,
                "reload {n} not taken:\n{}",
                self.stderr()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Asserts that no restore answering process `pid` is stored within [`QUIET_PERIOD`].
    #[track_caller]
    fn assert_no_restore(&self, pid: u32, why: &str) {
        std::thread::sleep(QUIET_PERIOD);
        let rows = read_events(&self.store, None, None).expect("read_events");
        let found: Vec<_> = rows
            .iter()
            .filter(|e| by_pid(e, pid) && e["event"] != "removal")
            .collect();
        assert!(found.is_empty(), "{why}: {found:#?}");
    }
}

/// A namespace an unprivileged user made with `unshare -rn`, holding an `ip -batch -` that reads
/// its commands from the test: the actor stays alive, and so does its namespace.
struct UserNamespace {
    child: std::process::Child,
}

impl UserNamespace {
    fn start() -> Self {
        let child = Command::new("setpriv")
            .args(["--reuid", "65534", "--regid", "65534", "--clear-groups"])
            .args(["unshare", "-rn", "ip", "-batch", "-"])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn setpriv unshare -rn ip -batch -");
        let ns = UserNamespace { child };
        wait_in_own_netns(ns.pid(), "ip", "unshare -rn ip");
        ns
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn inode(&self) -> u64 {
        fs::metadata(format!("/proc/{}/ns/net", self.pid())).map_or(0, |m| m.ino())
    }

    /// Hands `ip` one command.
    fn ip(&mut self, line: &str) {
        let stdin = self.child.stdin.as_mut().unwrap();
        writeln!(stdin, "{line}").unwrap();
        stdin.flush().unwrap();
    }

    fn rules(&self) -> String {
        run(Command::new("nsenter")
            .arg(format!("--net=/proc/{}/ns/net", self.pid()))
            .args(["ip", "rule", "show"]))
        .ok("ip rule show in the user's namespace")
        .stdout
    }
}

impl Drop for UserNamespace {
    fn drop(&mut self) {
        drop(self.child.stdin.take());
        if wait_timeout(&mut self.child, Duration::from_secs(5)).is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// A protected rule removed in a namespace that nobody named (an unprivileged user's `unshare
/// -rn`) is not re-added there and not tracked as missing: anyone can make such namespaces, as
/// many as they like, and routeguard must neither enter them nor grow its state for them.
#[test]
fn a_namespace_only_its_user_holds_is_neither_entered_nor_tracked() {
    let mut user = UserNamespace::start();
    let inode = user.inode();
    user.ip("rule add prio 555 lookup 77");
    let dir = Dir::new("unnamed");
    let daemon = Daemon::start_with(
        &dir,
        &format!(
            "\n[[protect]]\nname = \"p555\"\nkind = \"rule\"\npriority = 555\nnetns = \"{inode}\"\n"
        ),
    );
    user.ip("rule del prio 555");
    let pid = user.pid();
    let answer = daemon.wait_row_where("the restore answer", |e| by_pid(e, pid) && is_restore(e));
    assert_fields(
        &answer,
        &[
            ("/netns/inode", json!(inode)),
            ("/rule/priority", json!(555)),
            ("/restore/outcome", json!("skipped")),
        ],
    );
    let missing = series(&daemon.get("/metrics"), "routeguard_protected_missing{");
    assert!(missing.is_empty(), "not tracked as missing: {missing:?}");
    let detail = answer["restore"]["detail"].as_str().unwrap();
    assert!(detail.contains("not one routeguard watches"), "{detail}");
    assert!(!user.rules().contains("555:"), "not re-added");
    let (code, stderr) = daemon.stop();
    assert_eq!(code, Some(0), "{stderr}");
}

/// At most `restore.max_missing` missing objects and `ROUTEGUARD_RESTORE_SOCKETS` namespace
/// sockets: what is turned away is counted in `routeguard_restore_overflow_total` and in the
/// daemon's last line.
#[test]
fn restore_state_is_capped_and_its_overflow_counted() {
    let (a, b) = (ns_with_rule_and_route(), ns_with_rule_and_route());
    let dir = Dir::new("caps");
    let extra = format!(
        "\n[restore]\nmax_attempts = 1\nmax_missing = 1\n{}{}",
        protect_rule(&a, "a"),
        protect_rule(&b, "b")
    );
    let daemon = Daemon::start_env(&dir, &extra, &[("ROUTEGUARD_RESTORE_SOCKETS", "1")]);
    // Restored in both: the socket of `a` is kept, the one of `b` closed after its re-add.
    for ns in [&a, &b] {
        let pid = ns.ip_ok(&["rule", "del", "prio", "100"]);
        let r = daemon.wait_row_where("a restore", |e| by_pid(e, pid) && is_restore(e));
        assert_fields(&r, &[("/restore/outcome", json!("restored"))]);
    }
    // Removed again: suspended in both, missing in both, but only one is tracked.
    for ns in [&a, &b] {
        let pid = ns.ip_ok(&["rule", "del", "prio", "100"]);
        daemon.wait_row_where("a suspension", |e| {
            by_pid(e, pid) && e["event"] == "restore-suspended"
        });
    }
    let metrics = daemon.get("/metrics");
    let missing = series(&metrics, "routeguard_protected_missing{");
    assert_eq!(missing.len(), 1, "{missing:?}");
    for line in [
        r#"routeguard_restore_overflow_total{map="missing"} 1"#,
        r#"routeguard_restore_overflow_total{map="sockets"} 1"#,
    ] {
        assert!(metrics.contains(line), "no `{line}` in:\n{metrics}");
    }
    let (code, stderr) = daemon.stop();
    assert_eq!(code, Some(0), "{stderr}");
    assert!(
        stderr
            .contains("restore state overflow: 1 missing objects not tracked, 1 sockets not kept"),
        "{stderr}"
    );
}

/// A suspension outlives a SIGHUP that leaves its protect entry as it was; a SIGHUP that changes
/// the entry starts it afresh.
#[test]
fn a_suspension_outlives_a_reload_that_keeps_its_entry() {
    let ns = ns_with_rule_and_route();
    let dir = Dir::new("hup-suspend");
    let daemon = Daemon::start_with(
        &dir,
        &format!(
            "\n[restore]\nmax_attempts = 1\n{}",
            protect_rule(&ns, "t100")
        ),
    );
    let first = ns.ip_ok(&["rule", "del", "prio", "100"]);
    daemon.wait_row_where("the restore", |e| by_pid(e, first) && is_restore(e));
    let second = ns.ip_ok(&["rule", "del", "prio", "100"]);
    daemon.wait_row_where("the suspension", |e| {
        by_pid(e, second) && e["event"] == "restore-suspended"
    });

    // The same config again.
    daemon.reload(1);
    ns.ip_ok(&["rule", "add", "prio", "100", "lookup", "77"]);
    let third = ns.ip_ok(&["rule", "del", "prio", "100"]);
    daemon.wait_row(third);
    daemon.assert_no_restore(third, "still suspended after an unchanged reload");
    assert!(!ns
        .ip(&["rule", "show"])
        .ok("ip rule")
        .stdout
        .contains("100:"));
    let metrics = daemon.get("/metrics");
    assert_eq!(
        series(&metrics, "routeguard_protected_missing{").len(),
        1,
        "still missing:\n{metrics}"
    );

    // The entry renamed: a new policy, restored at once.
    let text = fs::read_to_string(&daemon.config).unwrap();
    fs::write(&daemon.config, text.replace("\"t100\"", "\"t100-renamed\"")).unwrap();
    daemon.reload(2);
    ns.ip_ok(&["rule", "add", "prio", "100", "lookup", "77"]);
    let fourth = ns.ip_ok(&["rule", "del", "prio", "100"]);
    let r = daemon.wait_row_where("the restore", |e| by_pid(e, fourth) && is_restore(e));
    assert_fields(
        &r,
        &[
            ("/restore/policy", json!("t100-renamed")),
            ("/restore/outcome", json!("restored")),
            ("/restore/attempt", json!(1)),
        ],
    );
    let (code, stderr) = daemon.stop();
    assert_eq!(code, Some(0), "{stderr}");
}

/// A re-add refused while the link is down is still retried after a SIGHUP, and succeeds once
/// the link is up.
#[test]
fn a_link_down_retry_outlives_a_reload() {
    let ns = Netns::new();
    ns.add_test_link("d0");
    ns.ip_ok(&argv("route add 10.77.5.0/24 via 10.99.0.2 table 77"));
    let dir = Dir::new("hup-retry");
    let daemon = Daemon::start_with(
        &dir,
        &format!(
            "\n[[protect]]\nkind = \"route\"\ntable = 77\nnetns = \"{}\"\n",
            ns.name()
        ),
    );
    let down = ns.ip_ok(&["link", "set", "d0", "down"]);
    let refused =
        daemon.wait_row_where("the refused restore", |e| by_pid(e, down) && is_restore(e));
    assert_fields(&refused, &[("/restore/outcome", json!("failed"))]);
    daemon.reload(1);
    ns.ip_ok(&["link", "set", "d0", "up"]);
    let back = daemon.wait_row_where("the restore once the link is up", |e| {
        by_pid(e, down) && is_restore(e) && e["restore"]["outcome"] == "restored"
    });
    assert_fields(&back, &[("/route/dst", json!("10.77.5.0/24"))]);
    let (code, stderr) = daemon.stop();
    assert_eq!(code, Some(0), "{stderr}");
}

/// The daemon in a named namespace of its own, protecting table 77 in `held` (by inode), with
/// `host` as `ROUTEGUARD_HOST_NETNS` if any; `ip` removes the rule in `held`. Returns ip's pid,
/// its stored removal and the restore answer.
fn remove_in_held_namespace(held: &HeldNamespace, host: Option<&str>) -> (u32, Value, Value) {
    let own = Netns::new();
    let dir = Dir::new(if host.is_some() {
        "host-ns"
    } else {
        "no-host-ns"
    });
    let env: Vec<(&str, &str)> = host
        .map(|h| ("ROUTEGUARD_HOST_NETNS", h))
        .into_iter()
        .collect();
    let daemon = Daemon::start_in(
        &dir,
        &format!(
            "\n[[protect]]\nname = \"host77\"\nkind = \"rule\"\ntable = 77\nnetns = \"{}\"\n",
            held.inode()
        ),
        &[
            "nsenter".to_owned(),
            format!("--net=/run/netns/{}", own.name()),
        ],
        false,
        &env,
    );
    let pid = held.ip(&argv("rule del from 10.9.0.0/16 table 77 priority 1000"));
    let removal =
        daemon.wait_row_where("the removal", |e| by_pid(e, pid) && e["event"] == "removal");
    let answer = daemon.wait_row_where("the restore answer", |e| by_pid(e, pid) && is_restore(e));
    let (code, stderr) = daemon.stop();
    assert_eq!(code, Some(0), "{stderr}");
    assert!(stderr.contains("daemon stopped"), "{stderr}");
    (pid, removal, answer)
}

/// `ROUTEGUARD_HOST_NETNS` (the DaemonSet's `/proc/1/ns/net`) makes a namespace the daemon is not
/// in and `/run/netns` does not list one it watches: a protected rule `ip` removes there is
/// stored with ip's pid and comm and put back there.
#[test]
fn the_namespace_named_by_route_guard_host_netns_is_restored_in() {
    let held = HeldNamespace::with_rule();
    let (pid, removal, answer) = remove_in_held_namespace(&held, Some(&held.path()));
    let expected = [
        ("/actor/pid", json!(pid)),
        ("/actor/comm", json!("ip")),
        ("/netns/inode", json!(held.inode())),
        ("/rule/table", json!(77)),
        ("/rule/priority", json!(1000)),
    ];
    assert_fields(&removal, &expected);
    assert_fields(&answer, &expected);
    assert_fields(
        &answer,
        &[
            ("/restore/policy", json!("host77")),
            ("/restore/outcome", json!("restored")),
        ],
    );
    let rules = held.rules();
    assert!(
        rules.contains("1000:\tfrom 10.9.0.0/16 lookup 77"),
        "re-added:\n{rules}"
    );
}

/// The same removal without `ROUTEGUARD_HOST_NETNS`: the namespace is not one the daemon watches,
/// so the restore is `skipped` and the rule stays gone.
#[test]
fn without_route_guard_host_netns_the_held_namespace_is_skipped() {
    let held = HeldNamespace::with_rule();
    let (pid, removal, answer) = remove_in_held_namespace(&held, None);
    assert_fields(
        &removal,
        &[
            ("/actor/pid", json!(pid)),
            ("/actor/comm", json!("ip")),
            ("/netns/inode", json!(held.inode())),
            ("/rule/priority", json!(1000)),
        ],
    );
    assert_fields(&answer, &[("/restore/outcome", json!("skipped"))]);
    let detail = answer["restore"]["detail"].as_str().unwrap_or_default();
    assert!(detail.contains("not one routeguard watches"), "{detail}");
    let rules = held.rules();
    assert!(!rules.contains("lookup 77"), "not re-added:\n{rules}");
}
