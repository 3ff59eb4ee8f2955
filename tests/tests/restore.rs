//! Protect and restore: a protected rule or route removed by a process that is not allowed to is
//! put back, with every attribute the kernel had; allowed actors, dry runs and the flap guard
//! are respected. The kernel's own rule list is the judge, not routeguard's word.

use std::{fs, process::Command, time::Duration};

use routeguard_tests::{held::HeldNamespace, *};

/// `ip rule show` lines of the namespace (priority and selectors as the kernel lists them).
fn rules(ns: &Netns) -> String {
    ns.ip(&["rule", "show"]).ok("ip rule show").stdout
}

fn is_restore(e: &Value) -> bool {
    e["event"] == "restore"
}

#[test]
fn protected_rule_removed_by_ip_is_restored_with_every_selector() {
    let ns = Netns::new();
    // Selectors routeguard does not decode (sport, ipproto) must come back too: the re-add is
    // the kernel's own description.
    let add = argv("rule add prio 32764 from 10.0.0.0/8 fwmark 0x10/0xff ipproto tcp sport 1000-2000 lookup 77 proto static");
    ns.ip_ok(&add);
    let before = rules(&ns);
    let tracer = Tracer::start(
        &ns,
        &["--protect", "kind=rule table=77 name=kube-router-rules"],
    );
    let args = ["rule", "del", "prio", "32764"];
    let pid = ns.ip_ok(&args);

    let removal = tracer.wait_for("the removal", EVENT_TIMEOUT, |e| {
        by_pid(e, pid) && e["event"] == "removal"
    });
    assert_fields(
        &removal,
        &[("/rule/table", json!(77)), ("/restore", Value::Null)],
    );
    let restore = tracer.wait_for("the restore", EVENT_TIMEOUT, |e| {
        by_pid(e, pid) && is_restore(e)
    });
    // Protections run on the syscall path.
    let mut want = from_syscall(ip_actor_fields(&ns, pid, &args));
    want.extend([
        ("/kind", json!("rule")),
        ("/rule/priority", json!(32764)),
        ("/rule/table", json!(77)),
        ("/restore/policy", json!("kube-router-rules")),
        ("/restore/outcome", json!("restored")),
        ("/restore/attempt", json!(1)),
    ]);
    assert_fields(&restore, &want);
    let latency = restore["restore"]["latency_us"]
        .as_u64()
        .expect("latency_us");
    assert!(latency > 0 && latency < 1_000_000, "latency {latency} us");
    assert_eq!(rules(&ns), before, "the rule is back exactly as it was");
    tracer.stop();
}

#[test]
fn protected_route_is_restored_and_others_are_not() {
    let ns = Netns::new();
    ns.add_test_link("d0");
    ns.ip_ok(&argv(
        "route add 10.77.1.0/24 via 10.99.0.2 table 77 metric 5 mtu 1400 proto static",
    ));
    ns.ip_ok(&argv("route add 10.78.1.0/24 via 10.99.0.2 table 78"));
    let before = ns.ip(&["route", "show", "table", "77"]).ok("show").stdout;
    let tracer = Tracer::start(&ns, &["--protect", "kind=route table=77 dst=10.77.0.0/16"]);
    let pid = ns.ip_ok(&["route", "del", "10.77.1.0/24", "table", "77"]);
    let other = ns.ip_ok(&["route", "del", "10.78.1.0/24", "table", "78"]);

    let restore = tracer.wait_for("the restore", EVENT_TIMEOUT, |e| {
        by_pid(e, pid) && is_restore(e)
    });
    assert_fields(
        &restore,
        &[
            ("/route/table", json!(77)),
            ("/route/dst", json!("10.77.1.0/24")),
            ("/route/gateway", json!("10.99.0.2")),
            ("/restore/outcome", json!("restored")),
        ],
    );
    tracer.assert_none("a restore of the unprotected route", QUIET_PERIOD, |e| {
        by_pid(e, other) && is_restore(e)
    });
    assert_eq!(
        ns.ip(&["route", "show", "table", "77"]).ok("show").stdout,
        before,
        "metric and mtu came back too"
    );
    assert!(ns
        .ip(&["route", "show", "table", "78"])
        .ok("show")
        .stdout
        .is_empty());
    tracer.stop();
}

#[test]
fn allowed_actor_and_dry_run_change_nothing() {
    let ns = Netns::new();
    ns.ip_ok(&["rule", "add", "prio", "200", "lookup", "77"]);
    ns.ip_ok(&["rule", "add", "prio", "201", "lookup", "77"]);
    let tracer = Tracer::start(&ns, &["--protect", "kind=rule priority=200 allow-comm=ip"]);
    let pid = ns.ip_ok(&["rule", "del", "prio", "200"]);
    tracer.wait_for("the removal", EVENT_TIMEOUT, |e| by_pid(e, pid));
    tracer.assert_none("a restore for an allowed actor", QUIET_PERIOD, is_restore);
    assert!(!rules(&ns).contains("200:"));
    tracer.stop();

    let tracer = Tracer::start(&ns, &["--protect", "kind=rule priority=201", "--dry-run"]);
    let pid = ns.ip_ok(&["rule", "del", "prio", "201"]);
    let answer = tracer.wait_for("the dry run", EVENT_TIMEOUT, |e| {
        by_pid(e, pid) && is_restore(e)
    });
    assert_fields(&answer, &[("/restore/outcome", json!("dry-run"))]);
    assert!(!rules(&ns).contains("201:"), "a dry run re-adds nothing");
    tracer.stop();
}

#[test]
fn flap_guard_backs_off_then_suspends_with_the_culprit() {
    let ns = Netns::new();
    ns.ip_ok(&["rule", "add", "prio", "300", "lookup", "77"]);
    let config = std::env::temp_dir().join(format!("rgt-flap-{}.toml", std::process::id()));
    fs::write(
        &config,
        "[restore]\nmax_attempts = 3\nwindow = \"60s\"\nbackoff = \"100ms\"\n\n\
         [[protect]]\nname = \"prio 300\"\nkind = \"rule\"\npriority = 300\n",
    )
    .unwrap();
    let tracer = Tracer::start(&ns, &["--config", config.to_str().unwrap()]);
    let mut pids = Vec::new();
    for n in 1..=4u64 {
        // Wait until the rule is back (restores back off: 0, 100, 200 ms) before removing it again.
        let deadline = std::time::Instant::now() + expect_within(EVENT_TIMEOUT);
        while !rules(&ns).contains("300:") {
            assert!(
                std::time::Instant::now() < deadline,
                "rule not back before removal {n}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        pids.push(ns.ip_ok(&["rule", "del", "prio", "300"]));
        if n <= 3 {
            let r = tracer.wait_for("a restore", EVENT_TIMEOUT, |e| {
                by_pid(e, pids[pids.len() - 1]) && is_restore(e)
            });
            assert_fields(
                &r,
                &[
                    ("/restore/attempt", json!(n)),
                    ("/restore/outcome", json!("restored")),
                ],
            );
        }
    }
    let last = *pids.last().unwrap();
    let s = tracer.wait_for("restore-suspended", EVENT_TIMEOUT, |e| {
        e["event"] == "restore-suspended"
    });
    assert_fields(
        &s,
        &[
            ("/actor/pid", json!(last)),
            ("/actor/comm", json!("ip")),
            ("/restore/outcome", json!("suspended")),
            ("/restore/attempt", json!(3)),
            ("/restore/policy", json!("prio 300")),
        ],
    );
    assert!(s["restore"]["detail"]
        .as_str()
        .unwrap()
        .contains(&format!("ip[{last}]")));
    tracer.assert_none("a restore after suspension", QUIET_PERIOD, |e| {
        by_pid(e, last) && is_restore(e)
    });
    assert!(!rules(&ns).contains("300:"), "suspended: not put back");
    tracer.stop();
    let _ = fs::remove_file(&config);
}

#[test]
fn route_through_a_down_link_comes_back_when_the_link_does() {
    let ns = Netns::new();
    ns.add_test_link("d0");
    ns.ip_ok(&argv("route add 10.77.5.0/24 via 10.99.0.2 table 77"));
    let tracer = Tracer::start(&ns, &["--protect", "kind=route table=77"]);
    let down = ns.ip_ok(&["link", "set", "d0", "down"]);
    let refused = tracer.wait_for("a refused restore", EVENT_TIMEOUT, |e| {
        by_pid(e, down) && is_restore(e)
    });
    assert_fields(
        &refused,
        &[
            ("/cause", json!("link-down")),
            ("/route/dst", json!("10.77.5.0/24")),
            ("/restore/outcome", json!("failed")),
        ],
    );
    assert!(refused["restore"]["detail"]
        .as_str()
        .unwrap()
        .contains("retrying"));
    ns.ip_ok(&["link", "set", "d0", "up"]);
    // The address of d0 comes back with the link only if it was kept: it is (IFF_UP toggles
    // keep IPv4 addresses), so the gateway is reachable again.
    let back = tracer.wait_for(
        "the restore once the link is up",
        Duration::from_secs(10),
        |e| by_pid(e, down) && is_restore(e) && e["restore"]["outcome"] == "restored",
    );
    assert_fields(&back, &[("/route/gateway", json!("10.99.0.2"))]);
    assert!(ns
        .ip(&["route", "show", "table", "77"])
        .ok("show")
        .stdout
        .contains("10.77.5.0/24 via 10.99.0.2"));
    tracer.stop();
}

/// `SIOCGSKNS` (linux/sockios.h): a file descriptor of the socket's network namespace.
const SIOCGSKNS: libc::c_ulong = 0x894C;

/// The inodes of the network namespaces process `pid`'s sockets live in: each socket fd is
/// duplicated into this process (`pidfd_getfd`) and asked for its namespace (`SIOCGSKNS`). The
/// duplicates are closed at once, so that this test does not keep a namespace alive itself.
fn socket_namespaces(pid: u32) -> Vec<u64> {
    use std::os::{fd::FromRawFd as _, unix::fs::MetadataExt as _};
    // SAFETY: pidfd_open(2) with a pid and no flags; the result is checked.
    let pidfd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) } as libc::c_int;
    assert!(
        pidfd >= 0,
        "pidfd_open {pid}: {}",
        std::io::Error::last_os_error()
    );
    // SAFETY: `pidfd` is a new fd this function owns.
    let pidfd = unsafe { std::os::fd::OwnedFd::from_raw_fd(pidfd) };
    let mut inodes = Vec::new();
    for entry in fs::read_dir(format!("/proc/{pid}/fd")).unwrap().flatten() {
        let is_socket =
            fs::read_link(entry.path()).is_ok_and(|t| t.to_string_lossy().starts_with("socket:["));
        let Ok(target) = entry.file_name().to_string_lossy().parse::<libc::c_int>() else {
            continue;
        };
        if !is_socket {
            continue;
        }
        use std::os::fd::AsRawFd as _;
        // SAFETY: pidfd_getfd(2) on our pidfd; the result is checked (the fd may be gone).
        let dup = unsafe { libc::syscall(libc::SYS_pidfd_getfd, pidfd.as_raw_fd(), target, 0) }
            as libc::c_int;
        if dup < 0 {
            continue;
        }
        // SAFETY: `dup` is a new fd this function owns.
        let dup = unsafe { std::os::fd::OwnedFd::from_raw_fd(dup) };
        // SAFETY: ioctl(SIOCGSKNS) on a socket fd takes no argument and returns a new fd.
        let ns = unsafe { libc::ioctl(dup.as_raw_fd(), SIOCGSKNS as _) };
        if ns < 0 {
            continue;
        }
        // SAFETY: `ns` is a new fd this function owns.
        let ns = fs::File::from(unsafe { std::os::fd::OwnedFd::from_raw_fd(ns) });
        inodes.push(ns.metadata().unwrap().ino());
    }
    inodes
}

/// A namespace deleted after a restore in it is not kept alive by routeguard: the restore's
/// socket is closed once the namespace is no longer named (a cached socket would otherwise hold
/// a deleted pod's namespace, and everything in it, for as long as routeguard runs).
#[test]
fn a_deleted_namespace_is_not_held_by_a_restore_socket() {
    let mut ns = Netns::new();
    ns.ip_ok(&["rule", "add", "prio", "400", "lookup", "77"]);
    let tracer = Tracer::start(&ns, &["--protect", "kind=rule priority=400"]);
    let pid = ns.ip_ok(&["rule", "del", "prio", "400"]);
    let restore = tracer.wait_for("the restore", EVENT_TIMEOUT, |e| {
        by_pid(e, pid) && is_restore(e)
    });
    assert_fields(&restore, &[("/restore/outcome", json!("restored"))]);
    let inode = ns.inode();
    let held = socket_namespaces(tracer.pid());
    assert!(
        held.contains(&inode),
        "while the namespace is named, routeguard's sockets are in it (the check sees them): {held:?}"
    );
    ns.delete();
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        let held = socket_namespaces(tracer.pid());
        if !held.contains(&inode) {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "routeguard still holds a socket in the deleted namespace {inode} after 5 s: {held:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    tracer.stop();
}

/// `trace` run from a DaemonSet pod (`kubectl exec`) watches the node's namespace as the daemon
/// does: a protected rule `ip` removes in the namespace `ROUTEGUARD_HOST_NETNS` names, which is
/// neither trace's own nor under /run/netns, is attributed and put back there. A file that is
/// not a network namespace's is refused at start.
#[test]
fn trace_restores_in_the_namespace_route_guard_host_netns_names() {
    let held = HeldNamespace::with_rule();
    let protect = format!("kind=rule table=77 netns={} name=node77", held.inode());
    let tracer = Tracer::start_with_env(
        &["trace", "--json", "--protect", &protect],
        &[("ROUTEGUARD_HOST_NETNS", &held.path())],
    );
    let pid = held.ip(&argv("rule del from 10.9.0.0/16 table 77 priority 1000"));
    let restore = tracer.wait_for("the restore", EVENT_TIMEOUT, |e| {
        by_pid(e, pid) && is_restore(e)
    });
    assert_fields(
        &restore,
        &[
            ("/actor/pid", json!(pid)),
            ("/actor/comm", json!("ip")),
            ("/netns/inode", json!(held.inode())),
            ("/rule/table", json!(77)),
            ("/rule/priority", json!(1000)),
            ("/restore/policy", json!("node77")),
            ("/restore/outcome", json!("restored")),
        ],
    );
    let rules = held.rules();
    assert!(
        rules.contains("1000:\tfrom 10.9.0.0/16 lookup 77"),
        "re-added:\n{rules}"
    );
    tracer.stop();

    let r = run(Command::new(routeguard_bin())
        .args(["trace", "--json"])
        .env("ROUTEGUARD_HOST_NETNS", "/proc/self/ns/uts"));
    assert_eq!(r.status.code(), Some(2), "{}", r.stderr);
    assert!(
        r.stderr
            .contains("ROUTEGUARD_HOST_NETNS=/proc/self/ns/uts: not a network namespace file"),
        "{}",
        r.stderr
    );
    assert!(!r.stderr.contains("tracing started"), "{}", r.stderr);
}

#[test]
fn bad_protect_specs_and_configs_exit_2_and_start_nothing() {
    let bin = routeguard_bin();
    for (args, needle) in [
        (
            vec!["trace", "--protect", "kind=rule priority=9-1"],
            "inverted",
        ),
        (
            vec!["trace", "--protect", "kind=route dst=10.0.0.0/33"],
            "10.0.0.0/33",
        ),
        (vec!["trace", "--protect", "kind=rule tabel=7"], "tabel"),
    ] {
        let r = run(std::process::Command::new(&bin).args(&args));
        assert_eq!(r.status.code(), Some(2), "{args:?}: {}", r.stderr);
        assert!(r.stderr.contains(needle), "{args:?}: {}", r.stderr);
        assert!(!r.stderr.contains("tracing started"));
    }
    let config = std::env::temp_dir().join(format!("rgt-bad-{}.toml", std::process::id()));
    fs::write(
        &config,
        "[[protect]]\nkind = \"rule\"\n\npriority = \"300-200\"\n",
    )
    .unwrap();
    let r =
        run(std::process::Command::new(&bin).args(["trace", "--config", config.to_str().unwrap()]));
    assert_eq!(r.status.code(), Some(2), "{}", r.stderr);
    assert!(
        r.stderr
            .contains(&format!("bad config {} line 4", config.display()))
            && r.stderr.contains("inverted"),
        "{}",
        r.stderr
    );
    assert!(!r.stderr.contains("tracing started"));
    let _ = fs::remove_file(&config);
}

/// The path `ip` runs from (`command -v ip`), and that file's (device, inode).
fn real_ip() -> (String, u64, u64) {
    use std::os::unix::fs::MetadataExt as _;
    let path = run(Command::new("sh").args(["-c", "command -v ip"]))
        .ok("command -v ip")
        .stdout
        .trim()
        .to_string();
    let meta = fs::metadata(&path).unwrap_or_else(|e| panic!("stat {path}: {e}"));
    (path, meta.dev(), meta.ino())
}

/// `allow.exe` names the file, not a name or a path string a process can choose: a copy of
/// `ip` (its comm is `ip` too) and that copy mounted over `ip`'s own path in a mount namespace
/// of its own (so even the exec path string is the allowed one) have their removals restored;
/// the real `ip`'s is left alone, and its event carries the file's device and inode.
#[test]
fn allow_exe_is_the_file_not_the_name() {
    let ns = Netns::new();
    for prio in ["300", "301", "302"] {
        ns.ip_ok(&["rule", "add", "prio", prio, "lookup", "77"]);
    }
    let (path, dev, ino) = real_ip();
    let dir = std::env::temp_dir().join(format!("rg-allow-exe-{}", std::process::id()));
    fs::create_dir_all(&dir).unwrap();
    let _cleanup = RemoveDir(dir.clone());
    let copy = dir.join("ip");
    fs::copy(&path, &copy).unwrap();
    let tracer = Tracer::start(
        &ns,
        &["--protect", &format!("kind=rule table=77 allow-exe={path}")],
    );

    // The copy at the allowed path string: `unshare -m` execs sh, which execs ip, in one pid.
    let script = format!(
        "mount --bind {} {path} && exec {path} -n {} rule del prio 302",
        copy.display(),
        ns.name()
    );
    let spoof = run(Command::new("unshare").args(["-m", "sh", "-c", &script]))
        .ok("unshare -m: copy of ip bound over its path");
    let answer = tracer.wait_for("the restore of the spoofed removal", EVENT_TIMEOUT, |e| {
        by_pid(e, spoof.pid) && is_restore(e)
    });
    assert_fields(
        &answer,
        &[
            ("/actor/comm", json!("ip")),
            ("/restore/outcome", json!("restored")),
        ],
    );
    assert_ne!(answer["actor"]["exe_inode"], json!(ino), "{answer:#}");

    // The copy under its own path: comm `ip`, another file.
    let renamed = run(Command::new(&copy).args(["-n", ns.name(), "rule", "del", "prio", "301"]))
        .ok("copy of ip");
    tracer.wait_for("the restore of the copy's removal", EVENT_TIMEOUT, |e| {
        by_pid(e, renamed.pid) && is_restore(e) && e["actor"]["comm"] == "ip"
    });

    // The real one, already exited when its event is read: allowed, and named by its file.
    let pid = ns.ip_ok(&["rule", "del", "prio", "300"]);
    let removal = tracer.wait_for("the real ip's removal", EVENT_TIMEOUT, |e| {
        by_pid(e, pid) && e["event"] == "removal"
    });
    assert_fields(
        &removal,
        &[
            ("/actor/exe_dev", json!(dev)),
            ("/actor/exe_inode", json!(ino)),
        ],
    );
    tracer.assert_none("a restore for the real ip", QUIET_PERIOD, |e| {
        by_pid(e, pid) && is_restore(e)
    });
    let (_, stderr) = tracer.stop();
    assert!(
        !stderr.contains("executable identity"),
        "every identity came from the kernel: {stderr}"
    );
    let now = rules(&ns);
    assert!(!now.contains("300:"), "{now}");
    assert!(now.contains("301:") && now.contains("302:"), "{now}");
}

/// `allow.cgroup` matches the cgroup id the kernel captured: `ip` in that cgroup is allowed,
/// the same `ip` outside it is not.
#[test]
fn allow_cgroup_is_the_cgroup_id() {
    use std::os::unix::fs::MetadataExt as _;
    let ns = Netns::new();
    ns.ip_ok(&["rule", "add", "prio", "310", "lookup", "77"]);
    ns.ip_ok(&["rule", "add", "prio", "311", "lookup", "77"]);
    let unit = format!("rgtest-{}-allow.service", std::process::id());
    let Some(cg) = Cgroup::create(&unit) else {
        return;
    };
    let id = fs::metadata(&cg.path).unwrap().ino();
    let tracer = Tracer::start(
        &ns,
        &[
            "--protect",
            &format!("kind=rule table=77 allow-cgroup=/{unit}"),
        ],
    );
    let script = format!(
        "echo $$ > {}/cgroup.procs; exec ip -n {} rule del prio 310",
        cg.path.display(),
        ns.name()
    );
    let inside = run(Command::new("sh").args(["-c", &script])).ok("ip in the cgroup");
    let removal = tracer.wait_for("the removal in the cgroup", EVENT_TIMEOUT, |e| {
        by_pid(e, inside.pid) && e["event"] == "removal"
    });
    assert_fields(&removal, &[("/actor/cgroup_id", json!(id))]);
    let outside = ns.ip_ok(&["rule", "del", "prio", "311"]);
    tracer.wait_for("the restore of the removal outside", EVENT_TIMEOUT, |e| {
        by_pid(e, outside) && is_restore(e)
    });
    tracer.assert_none("a restore for ip in the cgroup", QUIET_PERIOD, |e| {
        by_pid(e, inside.pid) && is_restore(e)
    });
    tracer.stop();
    let now = rules(&ns);
    assert!(!now.contains("310:") && now.contains("311:"), "{now}");
}

/// Removes a directory on drop.
struct RemoveDir(std::path::PathBuf);

impl Drop for RemoveDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}
