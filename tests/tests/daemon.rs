//! `routeguard daemon`: removals land in the store (read back with the same `read_events` that
//! `routeguard report` uses), metrics are served over loopback, SIGHUP with a broken config keeps
//! the daemon running, SIGTERM drains and flushes, a bad config starts nothing.
//!
//! Each test runs its own daemon on a store in a temp directory, journald off (the test host has
//! no journal) except in the journald test, which starts a real `systemd-journald` in a private
//! mount namespace and reads the entry back with `journalctl`; metrics on a free loopback port. The daemon sees the whole host, so assertions select rows by the pid of the
//! `ip` the test ran in its own namespace.
//!
//! Restart without loss: kill -9 the daemon, remove a rule, start it again → the removal made
//! while no daemon ran is stored, from the capture the first daemon pinned in bpffs. Each test
//! pins under its own `/sys/fs/bpf/rgt-daemon-*` directory (never the default), removed with it.

use std::{
    fs,
    io::{BufRead, BufReader, Read, Write},
    net::{Ipv4Addr, TcpListener, TcpStream},
    os::unix::fs::PermissionsExt,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::{Arc, Condvar, Mutex, PoisonError},
    time::{Duration, Instant},
};

use routeguard::store::read_events;
use routeguard_tests::*;

/// A temp directory for one daemon's config and store, and its bpffs pin directory; both
/// removed on drop (removing the pins detaches the programs).
struct Dir(PathBuf, PathBuf);

impl Dir {
    fn new(tag: &str) -> Self {
        let dir =
            std::env::temp_dir().join(format!("routeguard-daemon-{tag}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        let pins = PathBuf::from(format!(
            "/sys/fs/bpf/rgt-daemon-{tag}-{}",
            std::process::id()
        ));
        let _ = fs::remove_dir_all(&pins);
        Self(dir, pins)
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
        let _ = fs::remove_dir_all(&self.1);
    }
}

/// A running `routeguard daemon`, killed by pid (SIGKILL) if the test did not stop it.
struct Daemon {
    child: Child,
    stderr: Arc<(Mutex<String>, Condvar, Mutex<bool>)>,
    config: PathBuf,
    store: PathBuf,
    port: u16,
}

fn free_port() -> u16 {
    let l = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
    l.local_addr().unwrap().port()
}

fn config_text(store: &Path, port: u16, pins: &Path, journald: bool) -> String {
    format!(
        "[store]\npath = \"{}\"\n\n[journald]\nenabled = {journald}\n\n[metrics]\nlisten = \"127.0.0.1:{port}\"\n\n[capture]\nring_size = \"4M\"\npin_dir = \"{}\"\n",
        store.display(),
        pins.display()
    )
}

const JOURNALD: &str = "/lib/systemd/systemd-journald";

/// A real `systemd-journald`, in a mount namespace of its own (tmpfs on /run/systemd and
/// /run/log, so the host's journal, if any, is untouched). Killed by pid on drop.
struct Journal {
    child: Child,
}

impl Journal {
    /// None, saying why, where journald is not installed or does not come up.
    fn start() -> Option<Self> {
        if !Path::new(JOURNALD).exists() {
            eprintln!("skipping: {JOURNALD} is not installed");
            return None;
        }
        let script = format!(
            "mkdir -p /run/systemd /run/log && mount -t tmpfs tmpfs /run/systemd && \
             mount -t tmpfs tmpfs /run/log && mkdir /run/systemd/journal && exec {JOURNALD}"
        );
        let child = Command::new("unshare")
            .args(["--mount", "--propagation", "slave", "sh", "-c", &script])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn unshare for systemd-journald");
        let journal = Journal { child };
        let socket = journal.root().join("run/systemd/journal/socket");
        let deadline = Instant::now() + Duration::from_secs(20);
        while !socket.exists() {
            if Instant::now() > deadline {
                eprintln!(
                    "skipping: systemd-journald did not create {}",
                    socket.display()
                );
                return None;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Some(journal)
    }

    /// journald's view of the file system (its mount namespace).
    fn root(&self) -> PathBuf {
        PathBuf::from(format!("/proc/{}/root", self.child.id()))
    }

    /// `nsenter` arguments that run a command in journald's mount namespace.
    fn enter(&self) -> Vec<String> {
        vec![
            format!("--mount=/proc/{}/ns/mnt", self.child.id()),
            "--".into(),
        ]
    }

    /// The journal entries with `field=value`, as `journalctl -o json` prints them.
    fn entries(&self, field: &str, value: &str) -> Vec<Value> {
        let out = Command::new("nsenter")
            .args(self.enter())
            .args([
                "journalctl",
                "-D",
                "/run/log/journal",
                "--no-pager",
                "-o",
                "json",
            ])
            .arg(format!("{field}={value}"))
            .output()
            .expect("run journalctl");
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }
}

impl Drop for Journal {
    fn drop(&mut self) {
        // SAFETY: kill(2) on the pid of a child this guard spawned and has not reaped.
        unsafe { libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM) };
        if wait_timeout(&mut self.child, Duration::from_secs(10)).is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

impl Daemon {
    fn start(dir: &Dir) -> Self {
        Self::start_with(dir, "")
    }

    /// Pinning covers the syscall path only, and `auto` picks the kernel-function path where
    /// fentry loads (the distro kernels of `vm-test`): the pinning tests ask for syscall.
    fn start_pinnable(dir: &Dir) -> Self {
        // Appended to the config's last section, `[capture]`.
        Self::start_with(dir, "path = \"syscall\"\n")
    }

    /// Starts the daemon with `extra` appended to the test config (e.g. `[[protect]]` tables).
    fn start_with(dir: &Dir, extra: &str) -> Self {
        Self::start_in(dir, extra, None)
    }

    /// Starts the daemon with its journald sink on, in `journal`'s mount namespace.
    fn start_journaling(dir: &Dir, journal: &Journal) -> Self {
        Self::start_in(dir, "", Some(journal))
    }

    fn start_in(dir: &Dir, extra: &str, journal: Option<&Journal>) -> Self {
        require_root();
        let store = dir.0.join("state/events.db");
        let config = dir.0.join("routeguard.toml");
        let port = free_port();
        let text = config_text(&store, port, &dir.1, journal.is_some()) + extra;
        fs::write(&config, text).unwrap();
        // nsenter execs routeguard: the child's pid is the daemon's.
        let mut command = match journal {
            Some(j) => {
                let mut c = Command::new("nsenter");
                c.args(j.enter()).arg(routeguard_bin());
                c
            }
            None => Command::new(routeguard_bin()),
        };
        let mut child = command
            .args(["daemon", "--config"])
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn routeguard daemon");
        let stderr = Arc::new((Mutex::new(String::new()), Condvar::new(), Mutex::new(false)));
        let shared = Arc::clone(&stderr);
        let pipe = child.stderr.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                let mut s = shared.0.lock().unwrap_or_else(PoisonError::into_inner);
                s.push_str(&line);
                s.push('\n');
                shared.1.notify_all();
            }
            *shared.2.lock().unwrap_or_else(PoisonError::into_inner) = true;
            shared.1.notify_all();
        });
        let d = Daemon {
            child,
            stderr,
            config,
            store,
            port,
        };
        d.wait_stderr("daemon started", attach_timeout());
        d
    }

    /// Waits until stderr contains `needle`; panics with stderr if it does not in time.
    #[track_caller]
    fn wait_stderr(&self, needle: &str, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        let (lock, cvar, _) = &*self.stderr;
        let mut s = lock.lock().unwrap_or_else(PoisonError::into_inner);
        while !s.contains(needle) {
            let now = Instant::now();
            assert!(
                now < deadline,
                "daemon stderr lacks `{needle}` after {timeout:?}:\n{s}"
            );
            s = cvar
                .wait_timeout(s, deadline - now)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
    }

    fn stderr(&self) -> String {
        self.stderr
            .0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    fn signal(&self, sig: libc::c_int) {
        // SAFETY: kill(2) on the pid of a child this guard spawned and has not reaped.
        unsafe { libc::kill(self.child.id() as libc::pid_t, sig) };
    }

    /// SIGKILL, as a crash would: nothing is drained or flushed.
    fn kill9(mut self) {
        self.signal(libc::SIGKILL);
        let _ = self.child.wait();
    }

    /// SIGTERM, then waits for exit; returns the exit code and stderr.
    fn stop(mut self) -> (Option<i32>, String) {
        self.signal(libc::SIGTERM);
        let status = wait_timeout(&mut self.child, Duration::from_secs(20))
            .unwrap_or_else(|| panic!("daemon ignored SIGTERM:\n{}", self.stderr()));
        self.wait_stderr_closed();
        (status.code(), self.stderr())
    }

    fn wait_stderr_closed(&self) {
        let deadline = Instant::now() + Duration::from_secs(5);
        let (lock, cvar, done) = &*self.stderr;
        let mut s = lock.lock().unwrap_or_else(PoisonError::into_inner);
        while !*done.lock().unwrap_or_else(PoisonError::into_inner) && Instant::now() < deadline {
            s = cvar
                .wait_timeout(s, Duration::from_millis(100))
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
    }

    /// The stored event by process `pid`, waiting for it to be written.
    #[track_caller]
    fn wait_row(&self, pid: u32) -> Value {
        self.wait_row_where(&format!("by pid {pid}"), |e| by_pid(e, pid))
    }

    /// The first stored event matching `pred`, waiting for it to be written.
    #[track_caller]
    fn wait_row_where(&self, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + expect_within(EVENT_TIMEOUT);
        loop {
            if self.store.exists() {
                let rows = read_events(&self.store, None, None).expect("read_events");
                if let Some(row) = rows.into_iter().find(|e| pred(e)) {
                    return row;
                }
            }
            assert!(
                Instant::now() < deadline,
                "no stored event {what} after {EVENT_TIMEOUT:?}; daemon stderr:\n{}",
                self.stderr()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn get(&self, path: &str) -> String {
        let mut s = TcpStream::connect((Ipv4Addr::LOCALHOST, self.port)).expect("connect");
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        write!(s, "GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n").unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).expect("read response");
        out
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            self.signal(libc::SIGKILL);
            let _ = self.child.wait();
        }
    }
}

fn ns_with_rule_and_route() -> Netns {
    let ns = Netns::new();
    ns.add_test_link("d0");
    ns.ip_ok(&["rule", "add", "prio", "100", "lookup", "77"]);
    ns.ip_ok(&argv("route add 10.77.1.0/24 via 10.99.0.2 table 77"));
    ns
}

#[test]
fn removals_are_stored_and_counted() {
    let ns = ns_with_rule_and_route();
    let dir = Dir::new("store");
    let daemon = Daemon::start(&dir);

    let rule_args = ["rule", "del", "prio", "100"];
    let rule_pid = ns.ip_ok(&rule_args);
    let route_args = ["route", "del", "10.77.1.0/24", "table", "77"];
    let route_pid = ns.ip_ok(&route_args);

    let rule = daemon.wait_row(rule_pid);
    let mut want = ip_actor_fields(&ns, rule_pid, &rule_args);
    want.extend([
        ("/kind", json!("rule")),
        ("/cause", json!("request")),
        ("/outcome", json!("removed")),
        ("/request/op", json!("RTM_DELRULE")),
        ("/rule/priority", json!(100)),
    ]);
    assert_fields(&rule, &want);

    let route = daemon.wait_row(route_pid);
    let mut want = ip_actor_fields(&ns, route_pid, &route_args);
    want.extend([
        ("/kind", json!("route")),
        ("/cause", json!("request")),
        ("/outcome", json!("removed")),
        ("/route/table", json!(77)),
        ("/route/dst", json!("10.77.1.0/24")),
    ]);
    assert_fields(&route, &want);

    let mode = fs::metadata(&daemon.store).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "store file mode");

    let metrics = daemon.get("/metrics");
    assert!(metrics.starts_with("HTTP/1.1 200 OK"), "{metrics}");
    for series in [
        r#"routeguard_removals_total{kind="rule",cause="request",outcome="removed",comm="ip"} "#,
        r#"routeguard_removals_total{kind="route",cause="request",outcome="removed",comm="ip"} "#,
        r#"routeguard_events_lost_total{cause="ring-full"} 0"#,
        r#"routeguard_events_lost_total{cause="queue-full"} 0"#,
        "routeguard_build_info{version=",
    ] {
        assert!(metrics.contains(series), "no `{series}` in:\n{metrics}");
    }
    let health = daemon.get("/healthz");
    assert!(health.starts_with("HTTP/1.1 200 OK"), "{health}");

    let (code, stderr) = daemon.stop();
    assert_eq!(code, Some(0), "{stderr}");
    assert!(stderr.contains("daemon stopped"), "{stderr}");
}

/// The pinned sets (`v<tag>` directories) under a pin directory.
fn pin_sets(pins: &Path) -> Vec<String> {
    fs::read_dir(pins)
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn events_reach_a_real_journald_with_their_fields() {
    require_root();
    // The namespace first: journald's mount namespace (the daemon's) copies its /run/netns
    // mount whatever the propagation of the machine's mounts.
    let ns = ns_with_rule_and_route();
    let Some(journal) = Journal::start() else {
        return;
    };
    let dir = Dir::new("journal");
    let daemon = Daemon::start_journaling(&dir, &journal);
    assert!(daemon.stderr().contains("journald"), "{}", daemon.stderr());

    let args = ["rule", "del", "prio", "100"];
    let pid = ns.ip_ok(&args);
    daemon.wait_row(pid);
    let deadline = Instant::now() + expect_within(EVENT_TIMEOUT);
    let entry = loop {
        if let Some(e) = journal
            .entries("ROUTEGUARD_ACTOR_PID", &pid.to_string())
            .pop()
        {
            break e;
        }
        assert!(
            Instant::now() < deadline,
            "no journal entry with ROUTEGUARD_ACTOR_PID={pid} after {EVENT_TIMEOUT:?}; daemon stderr:\n{}",
            daemon.stderr()
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    for (field, want) in [
        ("ROUTEGUARD_KIND", "rule"),
        ("ROUTEGUARD_CAUSE", "request"),
        ("ROUTEGUARD_OUTCOME", "removed"),
        ("ROUTEGUARD_ACTOR_COMM", "ip"),
        ("ROUTEGUARD_ACTOR_PID", &pid.to_string()),
        ("ROUTEGUARD_NETNS", ns.name()),
        // Not named by `ip rule del prio 100`: the kernel's view of the removed rule.
        ("ROUTEGUARD_TABLE", "77"),
    ] {
        assert_eq!(entry[field], json!(want), "{field} in {entry:#}");
    }
    let message = entry["MESSAGE"].as_str().unwrap_or_default();
    assert!(
        message.contains(&format!("ip[{pid}]")),
        "MESSAGE names the actor: {message}"
    );
}

#[test]
fn a_removal_made_while_the_daemon_is_down_is_stored_after_restart() {
    let ns = ns_with_rule_and_route();
    let dir = Dir::new("restart");
    let daemon = Daemon::start_pinnable(&dir);
    assert!(daemon.stderr().contains("pinned in"), "{}", daemon.stderr());
    assert_eq!(pin_sets(&dir.1).len(), 1, "one pinned capture");
    daemon.kill9();

    // No daemon runs now; the pinned programs keep recording into the pinned ring.
    let args = ["rule", "del", "prio", "100"];
    let pid = ns.ip_ok(&args);

    let daemon = Daemon::start_pinnable(&dir);
    assert!(
        daemon.stderr().contains("adopted from"),
        "the second daemon adopts the pins: {}",
        daemon.stderr()
    );
    // `ip` exited before this daemon started: actor details come from the kernel's records.
    // Pinning covers the syscall path only, so that is the capture even where auto would pick
    // kernel-function (the VM's Debian kernels).
    let row = daemon.wait_row(pid);
    let mut want = from_syscall(ip_actor_fields(&ns, pid, &args));
    want.extend([
        ("/kind", json!("rule")),
        ("/cause", json!("request")),
        ("/outcome", json!("removed")),
        ("/request/op", json!("RTM_DELRULE")),
        ("/rule/priority", json!(100)),
    ]);
    assert_fields(&row, &want);

    // A clean stop keeps the pins (a restart must not lose events either)...
    let (code, stderr) = daemon.stop();
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(pin_sets(&dir.1).len(), 1, "pins kept after SIGTERM");
    // ...and `--unpin` removes them.
    let config = dir.0.join("routeguard.toml");
    let ran = run(Command::new(routeguard_bin())
        .args(["daemon", "--unpin", "--config"])
        .arg(&config));
    assert!(ran.status.success(), "--unpin: {}", ran.stderr);
    assert!(
        ran.stderr.contains("removed 1 pinned capture"),
        "{}",
        ran.stderr
    );
    assert!(pin_sets(&dir.1).is_empty(), "{:?}", pin_sets(&dir.1));
}

#[test]
fn protected_rule_is_restored_then_suspended_and_both_are_stored_and_counted() {
    let ns = ns_with_rule_and_route();
    let dir = Dir::new("protect");
    let daemon = Daemon::start_with(
        &dir,
        &format!(
            "\n[restore]\nmax_attempts = 1\n\n[[protect]]\nname = \"t77\"\nkind = \"rule\"\n\
             table = 77\nnetns = \"{}\"\n",
            ns.name()
        ),
    );
    let first = ns.ip_ok(&["rule", "del", "prio", "100"]);
    let restore = daemon.wait_row_where("restore", |e| by_pid(e, first) && e["event"] == "restore");
    assert_fields(
        &restore,
        &[
            ("/actor/comm", json!("ip")),
            ("/rule/priority", json!(100)),
            ("/restore/policy", json!("t77")),
            ("/restore/outcome", json!("restored")),
        ],
    );
    assert!(ns
        .ip(&["rule", "show"])
        .ok("ip rule")
        .stdout
        .contains("100:"));
    let second = ns.ip_ok(&["rule", "del", "prio", "100"]);
    let suspended = daemon.wait_row_where("restore-suspended", |e| {
        by_pid(e, second) && e["event"] == "restore-suspended"
    });
    assert_fields(&suspended, &[("/restore/outcome", json!("suspended"))]);
    let metrics = daemon.get("/metrics");
    for series in [
        r#"routeguard_restores_total{outcome="restored"} 1"#,
        r#"routeguard_restores_total{outcome="suspended"} 1"#,
        // Restore events are not removals: exactly the two deletions count.
        r#"routeguard_removals_total{kind="rule",cause="request",outcome="removed",comm="ip"} 2"#,
        r#"routeguard_protected_missing{policy="t77","#,
    ] {
        assert!(metrics.contains(series), "no `{series}` in:\n{metrics}");
    }
    let store = daemon.store.clone();
    let (code, stderr) = daemon.stop();
    assert_eq!(code, Some(0), "{stderr}");

    // The report of this store: two removals (not four events), one restored, one suspension,
    // and the rule still missing.
    let report = run(std::process::Command::new(routeguard_bin()).args([
        "report",
        "--format",
        "json",
        "--db",
        store.to_str().unwrap(),
    ]))
    .ok("routeguard report --db");
    let v: Value = serde_json::from_str(&report.stdout).expect("report JSON");
    let hl = &v["headline"];
    assert_eq!(v["source"]["kind"], "store");
    assert_eq!(hl["events"], 2, "{hl:#}");
    assert_eq!(hl["restores"]["by_outcome"]["restored"], 1, "{hl:#}");
    assert_eq!(hl["restores"]["suspensions"], 1, "{hl:#}");
    assert_eq!(hl["still_missing"], 1, "{hl:#}");
    let missing = hl["still_missing_objects"][0].as_u64().unwrap() as usize;
    assert_eq!(v["objects"][missing]["object"], "rule prio 100 lookup 77");
}

/// A pin directory that cannot be made (here: inside /proc) costs the pins, not the daemon.
#[test]
fn a_pin_dir_that_cannot_be_made_runs_unpinned() {
    let ns = ns_with_rule_and_route();
    let mut dir = Dir::new("nopins");
    dir.1 = PathBuf::from(format!("/proc/rgt-no-pins-{}", std::process::id()));
    let daemon = Daemon::start_pinnable(&dir);
    let stderr = daemon.stderr();
    assert!(stderr.contains("cannot pin the capture"), "{stderr}");
    assert!(stderr.contains("not pinned"), "{stderr}");
    let pid = ns.ip_ok(&["rule", "del", "prio", "100"]);
    daemon.wait_row(pid);
    let (code, stderr) = daemon.stop();
    assert_eq!(code, Some(0), "{stderr}");
}

#[test]
fn sigterm_drains_what_is_in_flight() {
    let ns = ns_with_rule_and_route();
    let dir = Dir::new("drain");
    let daemon = Daemon::start(&dir);
    let pid = ns.ip_ok(&["rule", "del", "prio", "100"]);
    // No wait: the event may still be in the ring or waiting for its reply.
    let store = daemon.store.clone();
    let (code, stderr) = daemon.stop();
    assert_eq!(code, Some(0), "{stderr}");
    let rows = read_events(&store, None, None).unwrap();
    let row = rows.iter().find(|e| by_pid(e, pid)).unwrap_or_else(|| {
        panic!("the removal made just before SIGTERM is stored: {rows:#?}\n{stderr}")
    });
    assert_fields(
        row,
        &[("/kind", json!("rule")), ("/rule/priority", json!(100))],
    );
}

#[test]
fn sighup_with_a_broken_config_keeps_the_running_one() {
    let ns = ns_with_rule_and_route();
    let dir = Dir::new("reload");
    let daemon = Daemon::start(&dir);
    fs::write(&daemon.config, "[store]\nmax_age = \"soon\"\n").unwrap();
    daemon.signal(libc::SIGHUP);
    daemon.wait_stderr("reload refused", EVENT_TIMEOUT);
    let stderr = daemon.stderr();
    assert!(
        stderr.contains(&format!("{} line 2", daemon.config.display())),
        "the error names the file and line: {stderr}"
    );
    // Still recording, to the same store.
    let pid = ns.ip_ok(&["rule", "del", "prio", "100"]);
    daemon.wait_row(pid);

    // A good config is taken.
    let port = daemon.port;
    fs::write(
        &daemon.config,
        config_text(&daemon.store, port, &dir.1, false) + "\n[jsonl]\nstdout = true\n",
    )
    .unwrap();
    daemon.signal(libc::SIGHUP);
    daemon.wait_stderr("config reloaded", EVENT_TIMEOUT);
    let (code, stderr) = daemon.stop();
    assert_eq!(code, Some(0), "{stderr}");
}

#[test]
fn a_bad_config_starts_nothing() {
    require_root();
    let dir = Dir::new("badconfig");
    let config = dir.0.join("routeguard.toml");
    let store = dir.0.join("events.db");
    fs::write(
        &config,
        format!(
            "[store]\npath = \"{}\"\n\n[metrics]\nlisten = \"nowhere\"\n",
            store.display()
        ),
    )
    .unwrap();
    let ran = run(Command::new(routeguard_bin())
        .args(["daemon", "--config"])
        .arg(&config));
    assert_eq!(ran.status.code(), Some(2), "{}", ran.stderr);
    let lines: Vec<&str> = ran.stderr.lines().collect();
    assert_eq!(lines.len(), 1, "one line: {}", ran.stderr);
    assert!(
        lines[0].contains(&format!("{} line 5", config.display())) && lines[0].contains("listen"),
        "{}",
        ran.stderr
    );
    assert!(!store.exists(), "nothing was started");
}

/// A value out of range: exit 2, one line naming the file, the line, the key, the value and the
/// range; nothing is started. (`window = "0"` used to turn the flap guard off, silently.)
#[test]
fn a_value_out_of_range_starts_nothing() {
    require_root();
    let dir = Dir::new("range");
    let config = dir.0.join("routeguard.toml");
    let store = dir.0.join("events.db");
    fs::write(
        &config,
        config_text(&store, free_port(), &dir.1, false) + "\n[restore]\nwindow = \"0\"\n",
    )
    .unwrap();
    let child = Command::new(routeguard_bin())
        .args(["daemon", "--config"])
        .arg(&config)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let ran = finish(child, "routeguard daemon", Duration::from_secs(30));
    assert_eq!(ran.status.code(), Some(2), "{}", ran.stderr);
    let lines: Vec<&str> = ran.stderr.lines().collect();
    assert_eq!(lines.len(), 1, "one line: {}", ran.stderr);
    assert!(
        lines[0].contains(&format!(
            "{} line 15 (`window = \\\"0\\\"`)",
            config.display()
        )),
        "{}",
        ran.stderr
    );
    assert!(
        lines[0].ends_with("`restore.window` = 0 is out of range; accepted: 1s to 1d"),
        "{}",
        ran.stderr
    );
    assert!(!store.exists(), "nothing was started");
}
