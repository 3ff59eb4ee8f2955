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

use routeguard::{event::Timestamp, store::read_events};
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
        Self::start_in(dir, extra, &[], false, &[])
    }

    /// Like [`Daemon::start_with`], with extra environment variables.
    fn start_env(dir: &Dir, extra: &str, env: &[(&str, &str)]) -> Self {
        Self::start_in(dir, extra, &[], false, env)
    }

    /// Starts the daemon with its journald sink on, in `journal`'s mount namespace.
    fn start_journaling(dir: &Dir, journal: &Journal) -> Self {
        let mut prefix = vec!["nsenter".to_owned()];
        prefix.extend(journal.enter());
        Self::start_in(dir, "", &prefix, true, &[])
    }

    /// Starts the daemon in a mount namespace of its own where `setup` (a shell command) ran
    /// first, e.g. to mount a small tmpfs; the mounts go with the daemon.
    fn start_private(dir: &Dir, extra: &str, setup: &str) -> Self {
        let prefix = [
            "unshare",
            "--mount",
            "--propagation",
            "private",
            "sh",
            "-c",
            &format!("{setup} && exec \"$0\" \"$@\""),
        ];
        Self::start_in(dir, extra, &prefix.map(str::to_owned), false, &[])
    }

    /// `prefix` runs the daemon (it must exec it, so that the child's pid is the daemon's).
    fn start_in(
        dir: &Dir,
        extra: &str,
        prefix: &[String],
        journald: bool,
        env: &[(&str, &str)],
    ) -> Self {
        require_root();
        let store = dir.0.join("state/events.db");
        let config = dir.0.join("routeguard.toml");
        let port = free_port();
        let mut text = config_text(&store, port, &dir.1, journald);
        if extra.starts_with("ring_size") {
            // `extra` sets its own ring (the last section is `[capture]`).
            text = text.replace("ring_size = \"4M\"\n", "");
        }
        text += extra;
        fs::write(&config, text).unwrap();
        // nsenter and `sh -c 'exec …'` exec routeguard: the child's pid is the daemon's.
        let mut command = match prefix.split_first() {
            Some((program, args)) => {
                let mut c = Command::new(program);
                c.args(args).arg(routeguard_bin());
                c
            }
            None => Command::new(routeguard_bin()),
        };
        let mut child = command
            .args(["daemon", "--config"])
            .arg(&config)
            .envs(env.iter().copied())
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

// ---- Degrade, don't stop; files ------------------------------------------------------------
//
// What the config gets wrong starts nothing (exit 2, one line). What goes wrong with a sink, at
// start or while running, is survived: the sink is down (`routeguard_sink_up` 0, its events
// counted, an alert to the other sinks), the capture goes on, and the sink is retried with the
// next events after a back-off (1 s, doubling). Full disks and read-only directories are made in
// a mount namespace of the daemon's own (`unshare --mount`), which goes with it: nothing is left
// mounted. Files are 0600 and never written through a symlink.

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

/// A namespace with a rule of its own for the sink tests to remove again and again
/// ([`remove_rule`]): prio and table 4077, which no test protects (other tests' `--protect
/// 'kind=rule table=77'` restores table-77 rules in every namespace, and they may run meanwhile).
fn ns_with_own_rule() -> Netns {
    let ns = Netns::new();
    ns.add_test_link("d0");
    ns.ip_ok(&["rule", "add", "prio", "4077", "lookup", "4077"]);
    ns
}

/// Removes the rule of [`ns_with_own_rule`] and puts it back: one removal; its pid.
fn remove_rule(ns: &Netns) -> u32 {
    let pid = ns.ip_ok(&["rule", "del", "prio", "4077"]);
    ns.ip_ok(&["rule", "add", "prio", "4077", "lookup", "4077"]);
    pid
}

/// The JSON lines of `path` that parse (a line a full disk cut short does not).
fn jsonl(path: &Path) -> Vec<Value> {
    fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

fn alert<'a>(lines: &'a [Value], event: &str, sink: &str) -> Option<&'a Value> {
    lines
        .iter()
        .find(|l| l["event"] == event && l["sink"] == sink)
}

impl Daemon {
    /// The value of the series `series` (`name{labels}`) in /metrics.
    fn metric(&self, series: &str) -> Option<f64> {
        let text = self.get("/metrics");
        text.lines()
            .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
    }

    /// Removes rule 100 in `ns` once a second until `done` gives a value; panics after 30 s.
    #[track_caller]
    fn churn_until<T>(&self, ns: &Netns, what: &str, mut done: impl FnMut() -> Option<T>) -> T {
        let deadline = Instant::now() + expect_within(Duration::from_secs(30));
        loop {
            if let Some(v) = done() {
                return v;
            }
            assert!(
                Instant::now() < deadline,
                "{what}: not after 30 s; daemon stderr:\n{}",
                self.stderr()
            );
            remove_rule(ns);
            std::thread::sleep(Duration::from_millis(500));
        }
    }

    /// `path` as the daemon sees it (in its mount namespace).
    fn inside(&self, path: &Path) -> PathBuf {
        PathBuf::from(format!("/proc/{}/root", self.child.id()))
            .join(path.strip_prefix("/").unwrap())
    }

    /// Runs `script` with `sh -c` in the daemon's mount namespace.
    #[track_caller]
    fn in_its_mounts(&self, script: &str) {
        run(Command::new("nsenter")
            .arg(format!("--mount=/proc/{}/ns/mnt", self.child.id()))
            .args(["--", "sh", "-c", script]))
        .ok(script);
    }
}

/// A store that is not a database: moved aside (kept as it was, named in the log), a new store
/// started, removals stored. It used to stop the daemon at start, exit 2, and
/// `Restart=on-failure` looped with no capture at all.
#[test]
fn a_corrupt_store_is_moved_aside_and_a_new_one_records() {
    let ns = ns_with_own_rule();
    let dir = Dir::new("corrupt");
    let state = dir.0.join("state");
    fs::create_dir_all(&state).unwrap();
    let garbage = vec![b'x'; 8192];
    fs::write(state.join("events.db"), &garbage).unwrap();
    let daemon = Daemon::start(&dir);
    let stderr = daemon.stderr();
    assert!(stderr.contains("cannot be used"), "{stderr}");
    let aside: Vec<PathBuf> = fs::read_dir(&state)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_string_lossy().contains("events.db.corrupt-"))
        .collect();
    assert_eq!(aside.len(), 1, "{aside:?}");
    assert!(
        stderr.contains(&format!("moved it aside to {}", aside[0].display())),
        "{stderr}"
    );
    assert_eq!(fs::read(&aside[0]).unwrap(), garbage, "kept as it was");
    let pid = remove_rule(&ns);
    daemon.wait_row(pid);
    assert_eq!(
        daemon.metric(r#"routeguard_sink_up{sink="store"}"#),
        Some(1.0)
    );
    let (code, stderr) = daemon.stop();
    assert_eq!(code, Some(0), "{stderr}");
}

/// A store written by a newer routeguard: moved aside, kept for it, a new one started.
#[test]
fn a_newer_store_is_moved_aside_and_kept() {
    let ns = ns_with_own_rule();
    let dir = Dir::new("newer");
    let path = dir.0.join("state/events.db");
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    routeguard::store::Store::open(&path, Default::default())
        .unwrap()
        .close()
        .unwrap();
    // `PRAGMA user_version` is the big-endian u32 at offset 60 of the database header.
    let mut bytes = fs::read(&path).unwrap();
    bytes[60..64].copy_from_slice(&(routeguard::store::SCHEMA_VERSION + 1).to_be_bytes());
    fs::write(&path, &bytes).unwrap();
    let daemon = Daemon::start(&dir);
    let stderr = daemon.stderr();
    let aside = fs::read_dir(path.parent().unwrap())
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.to_string_lossy().contains("events.db.newer-"))
        .unwrap_or_else(|| panic!("no events.db.newer-*: {stderr}"));
    assert!(stderr.contains("has schema version"), "{stderr}");
    assert_eq!(fs::read(&aside).unwrap(), bytes, "kept as it was");
    let pid = remove_rule(&ns);
    daemon.wait_row(pid);
    let (code, stderr) = daemon.stop();
    assert_eq!(code, Some(0), "{stderr}");
}

/// A JSON lines directory that cannot be made at start (a file is in the way — root's
/// permissions cannot stop root): the daemon starts without the file, stores and counts on, and
/// writes it once it can, beginning with what it missed.
#[test]
fn a_jsonl_directory_that_cannot_be_made_at_start_is_retried() {
    let ns = ns_with_own_rule();
    let dir = Dir::new("jsonl-start");
    let blocker = dir.0.join("logs");
    fs::write(&blocker, "").unwrap();
    let path = blocker.join("events.jsonl");
    let daemon = Daemon::start_with(
        &dir,
        &format!("\n[jsonl]\nenabled = true\npath = \"{}\"\n", path.display()),
    );
    let stderr = daemon.stderr();
    assert!(stderr.contains("routeguard jsonl sink"), "{stderr}");
    assert!(stderr.contains("cannot create its directory"), "{stderr}");
    assert!(
        stderr.contains("(down: "),
        "the start-up line says so: {stderr}"
    );
    assert_eq!(
        daemon.metric(r#"routeguard_sink_up{sink="jsonl"}"#),
        Some(0.0)
    );
    // The capture goes on.
    let pid = remove_rule(&ns);
    daemon.wait_row(pid);
    assert!(daemon.metric(r#"routeguard_sink_errors_total{sink="jsonl"}"#) >= Some(1.0));
    fs::remove_file(&blocker).unwrap();
    let recovered = daemon.churn_until(&ns, "the JSON lines file written again", || {
        alert(&jsonl(&path), "sink-recovered", "jsonl").cloned()
    });
    assert!(recovered["missed"].as_u64() >= Some(1), "{recovered}");
    assert!(
        recovered["error"]
            .as_str()
            .unwrap()
            .contains("cannot create its directory"),
        "{recovered}"
    );
    assert_eq!(
        daemon.metric(r#"routeguard_sink_up{sink="jsonl"}"#),
        Some(1.0)
    );
    let (code, stderr) = daemon.stop();
    assert_eq!(code, Some(0), "{stderr}");
}

/// A read-only JSON lines directory at start (a read-only bind mount in the daemon's own mount
/// namespace), made writable while it runs.
#[test]
fn a_read_only_jsonl_directory_at_start_is_retried() {
    let ns = ns_with_own_rule();
    let dir = Dir::new("jsonl-ro");
    let logs = dir.0.join("logs");
    fs::create_dir_all(&logs).unwrap();
    let path = logs.join("events.jsonl");
    let daemon = Daemon::start_private(
        &dir,
        &format!("\n[jsonl]\nenabled = true\npath = \"{}\"\n", path.display()),
        &format!("mount --bind -o ro {0} {0}", logs.display()),
    );
    assert!(
        daemon.stderr().contains("Read-only file system"),
        "{}",
        daemon.stderr()
    );
    let pid = remove_rule(&ns);
    daemon.wait_row(pid);
    assert_eq!(
        daemon.metric(r#"routeguard_sink_up{sink="jsonl"}"#),
        Some(0.0)
    );
    daemon.in_its_mounts(&format!("umount {}", logs.display()));
    let recovered = daemon.churn_until(&ns, "the JSON lines file written again", || {
        alert(&jsonl(&path), "sink-recovered", "jsonl").cloned()
    });
    assert!(recovered["missed"].as_u64() >= Some(1), "{recovered}");
    let (code, stderr) = daemon.stop();
    assert_eq!(code, Some(0), "{stderr}");
}

/// While running: the JSON lines directory removed (a new file is started, not lines written
/// to an unlinked one), then replaced by a file (the sink goes down, the store records on), then
/// made possible again (the sink writes again, saying how many events it missed).
#[test]
fn a_jsonl_directory_removed_or_replaced_while_running() {
    let ns = ns_with_own_rule();
    let dir = Dir::new("jsonl-run");
    let logs = dir.0.join("logs");
    let path = logs.join("events.jsonl");
    let daemon = Daemon::start_with(
        &dir,
        &format!("\n[jsonl]\nenabled = true\npath = \"{}\"\n", path.display()),
    );
    let first = remove_rule(&ns);
    daemon.wait_row(first);
    assert!(jsonl(&path).iter().any(|e| by_pid(e, first)));

    fs::remove_dir_all(&logs).unwrap();
    let second = remove_rule(&ns);
    daemon.wait_row(second);
    daemon.churn_until(&ns, "a new file after the directory was removed", || {
        jsonl(&path).iter().any(|e| by_pid(e, second)).then_some(())
    });

    fs::remove_dir_all(&logs).unwrap();
    fs::write(&logs, "").unwrap();
    let third = remove_rule(&ns);
    daemon.wait_row(third);
    daemon.churn_until(&ns, "the sink down", || {
        (daemon.metric(r#"routeguard_sink_up{sink="jsonl"}"#) == Some(0.0)).then_some(())
    });
    let stderr = daemon.stderr();
    assert_eq!(
        stderr.matches("routeguard jsonl sink").count(),
        1,
        "one error, not one per batch: {stderr}"
    );
    fs::remove_file(&logs).unwrap();
    let recovered = daemon.churn_until(&ns, "the JSON lines file written again", || {
        alert(&jsonl(&path), "sink-recovered", "jsonl").cloned()
    });
    assert!(recovered["missed"].as_u64() >= Some(1), "{recovered}");
    let (code, stderr) = daemon.stop();
    assert_eq!(code, Some(0), "{stderr}");
}

/// Mounts a 1 MiB tmpfs on `small` (in the daemon's mount namespace).
fn small_tmpfs(small: &Path) -> String {
    format!(
        "mkdir -p {0} && mount -t tmpfs -o size=1m,mode=0700 routeguard-test {0}",
        small.display()
    )
}

/// Fills the tmpfs on `small` from inside the daemon's mount namespace.
fn fill(daemon: &Daemon, small: &Path) {
    daemon.in_its_mounts(&format!(
        "dd if=/dev/zero of={}/fill bs=4k 2>/dev/null; true",
        small.display()
    ));
}

/// The store on a full disk: down, counted, alerted in the JSON lines file, the capture and the
/// file go on; space again, and the store writes again.
#[test]
fn a_full_disk_under_the_store_is_survived() {
    let ns = ns_with_own_rule();
    let dir = Dir::new("full-store");
    let small = dir.0.join("state");
    let path = dir.0.join("events.jsonl");
    let daemon = Daemon::start_private(
        &dir,
        &format!("\n[jsonl]\nenabled = true\npath = \"{}\"\n", path.display()),
        &small_tmpfs(&small),
    );
    let first = remove_rule(&ns);
    daemon.churn_until(&ns, "a removal in the JSON lines file", || {
        jsonl(&path).iter().any(|e| by_pid(e, first)).then_some(())
    });
    fill(&daemon, &small);
    let failed = daemon.churn_until(&ns, "the store failing on a full disk", || {
        alert(&jsonl(&path), "sink-failed", "store").cloned()
    });
    assert!(
        failed["error"].as_str().unwrap().contains("full"),
        "{failed}"
    );
    assert_eq!(
        daemon.metric(r#"routeguard_sink_up{sink="store"}"#),
        Some(0.0)
    );
    // The capture goes on: removals reach the JSON lines file.
    let during = remove_rule(&ns);
    daemon.churn_until(&ns, "a removal in the JSON lines file", || {
        jsonl(&path).iter().any(|e| by_pid(e, during)).then_some(())
    });
    daemon.in_its_mounts(&format!("rm {}/fill", small.display()));
    let recovered = daemon.churn_until(&ns, "the store writing again", || {
        alert(&jsonl(&path), "sink-recovered", "store").cloned()
    });
    assert!(recovered["missed"].as_u64() >= Some(1), "{recovered}");
    assert_eq!(
        daemon.metric(r#"routeguard_sink_up{sink="store"}"#),
        Some(1.0)
    );
    let after = remove_rule(&ns);
    // The store is in the daemon's mount namespace only (SQLite does not open it through
    // /proc/PID/root): a copy is read.
    let copy = dir.0.join("copy");
    fs::create_dir_all(&copy).unwrap();
    let stored = daemon.churn_until(&ns, "the removal after the recovery stored", || {
        daemon.in_its_mounts(&format!(
            "cp {}/events.db* {}/",
            small.display(),
            copy.display()
        ));
        let rows = read_events(&copy.join("events.db"), None, None).ok()?;
        rows.iter().any(|e| by_pid(e, after)).then_some(rows)
    });
    assert!(
        stored.iter().any(|e| by_pid(e, first)),
        "stored before the disk filled"
    );
    assert!(
        !stored.iter().any(|e| by_pid(e, during)),
        "missed, and counted"
    );
    let stderr = daemon.stderr();
    assert!(
        stderr.matches("routeguard store sink").count() <= 3,
        "rate-limited, not one per batch: {stderr}"
    );
    let missed = daemon
        .metric(r#"routeguard_sink_errors_total{sink="store"}"#)
        .expect("the store's errors are counted");
    let (code, stderr) = daemon.stop();
    assert_eq!(code, Some(0), "{stderr}");
    // The stop line says what the store missed, beside the capture's own losses.
    let line = format!(
        "sinks: events not written (refused while a sink lagged, or failed): store {missed}"
    );
    assert!(stderr.contains(&line), "{line}\n{stderr}");
}

/// The JSON lines file on a full disk: down, the store records on; space again, and the file
/// writes again, saying what it missed (a line cut short is ended first).
#[test]
fn a_full_disk_under_the_jsonl_file_is_survived() {
    let ns = ns_with_own_rule();
    let dir = Dir::new("full-jsonl");
    let small = dir.0.join("logs");
    let path = small.join("events.jsonl");
    let daemon = Daemon::start_private(
        &dir,
        &format!("\n[jsonl]\nenabled = true\npath = \"{}\"\n", path.display()),
        &small_tmpfs(&small),
    );
    let first = remove_rule(&ns);
    daemon.wait_row(first);
    fill(&daemon, &small);
    // The path is only in the daemon's mount namespace: read it there.
    let inside = daemon.inside(&path);
    daemon.churn_until(&ns, "the JSON lines sink down", || {
        (daemon.metric(r#"routeguard_sink_up{sink="jsonl"}"#) == Some(0.0)).then_some(())
    });
    assert!(
        daemon.stderr().contains("No space left on device"),
        "{}",
        daemon.stderr()
    );
    // The store records on.
    let during = remove_rule(&ns);
    daemon.wait_row(during);
    daemon.in_its_mounts(&format!("rm {}/fill", small.display()));
    let recovered = daemon.churn_until(&ns, "the JSON lines file written again", || {
        alert(&jsonl(&inside), "sink-recovered", "jsonl").cloned()
    });
    assert!(recovered["missed"].as_u64() >= Some(1), "{recovered}");
    let text = fs::read_to_string(&inside).unwrap();
    let broken = text
        .lines()
        .filter(|l| serde_json::from_str::<Value>(l).is_err())
        .count();
    assert!(broken <= 1, "at most the line the disk cut short: {text}");
    let (code, stderr) = daemon.stop();
    assert_eq!(code, Some(0), "{stderr}");
}

/// The store, its log and the JSON lines file end up 0600 whatever mode they had; a symlink at
/// the JSON lines path is refused (the sink is down) and its target left alone.
#[test]
fn files_are_private_and_never_written_through_a_symlink() {
    let ns = ns_with_own_rule();
    let dir = Dir::new("files");
    let state = dir.0.join("state");
    fs::create_dir_all(&state).unwrap();
    let store = state.join("events.db");
    routeguard::store::Store::open(&store, Default::default())
        .unwrap()
        .close()
        .unwrap();
    fs::write(state.join("events.db-wal"), "").unwrap();
    let jsonl_path = dir.0.join("events.jsonl");
    fs::write(&jsonl_path, "").unwrap();
    for p in [&store, &state.join("events.db-wal"), &jsonl_path] {
        fs::set_permissions(p, fs::Permissions::from_mode(0o644)).unwrap();
    }
    let daemon = Daemon::start_with(
        &dir,
        &format!(
            "\n[jsonl]\nenabled = true\npath = \"{}\"\n",
            jsonl_path.display()
        ),
    );
    let pid = remove_rule(&ns);
    daemon.wait_row(pid);
    for name in ["events.db", "events.db-wal", "events.db-shm"] {
        let mode = fs::metadata(state.join(name)).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{name}");
    }
    let mode = fs::metadata(&jsonl_path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "events.jsonl");
    let (code, stderr) = daemon.stop();
    assert_eq!(code, Some(0), "{stderr}");

    let target = dir.0.join("not-yours");
    fs::write(&target, "theirs\n").unwrap();
    fs::set_permissions(&target, fs::Permissions::from_mode(0o644)).unwrap();
    fs::remove_file(&jsonl_path).unwrap();
    std::os::unix::fs::symlink(&target, &jsonl_path).unwrap();
    let daemon = Daemon::start_with(
        &dir,
        &format!(
            "\n[jsonl]\nenabled = true\npath = \"{}\"\n",
            jsonl_path.display()
        ),
    );
    assert!(
        daemon.stderr().contains("is a symbolic link"),
        "{}",
        daemon.stderr()
    );
    let pid = remove_rule(&ns);
    daemon.wait_row(pid);
    assert_eq!(
        daemon.metric(r#"routeguard_sink_up{sink="jsonl"}"#),
        Some(0.0)
    );
    let (code, stderr) = daemon.stop();
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(fs::read_to_string(&target).unwrap(), "theirs\n");
    let mode = fs::metadata(&target).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o644, "the link's target is left alone");
}

/// A burst that overflows a small ring: the loss is warned about at once, then at most once a
/// second (it was once per batch with new loss: every 10 ms in a burst), and counted exactly in
/// the metrics.
#[test]
fn losses_are_warned_at_most_once_a_second() {
    let ns = ns_with_own_rule();
    let dir = Dir::new("loss");
    let routes: Vec<String> = (0..10_000)
        .map(|i| {
            format!(
                "10.{}.{}.0/24 via 10.99.0.2 table 4077",
                100 + i / 250,
                i % 250
            )
        })
        .collect();
    let with = |verb: &str| -> Vec<String> {
        routes.iter().map(|r| format!("route {verb} {r}")).collect()
    };
    ns.ip_batch(&with("add"));
    let daemon = Daemon::start_with(&dir, "ring_size = \"64K\"\nwakeup = \"32K\"\n");
    ns.ip_batch(&with("del"));
    std::thread::sleep(Duration::from_secs(2));
    let lost = daemon
        .metric(r#"routeguard_events_lost_total{cause="ring-full"}"#)
        .unwrap_or(0.0);
    let (code, stderr) = daemon.stop();
    assert_eq!(code, Some(0), "{stderr}");
    if lost == 0.0 {
        eprintln!(
            "skipping: a 64K ring lost nothing of 10,000 removals here; no loss to warn about"
        );
        return;
    }
    // The log's own timestamps (the first word of a line, once its colours are taken out).
    let times: Vec<Timestamp> = stderr
        .lines()
        .filter(|l| l.contains("events lost so far"))
        .map(|l| {
            let plain = strip_ansi(l);
            let word = plain.split_whitespace().next().unwrap_or_default();
            word.parse()
                .unwrap_or_else(|e| panic!("no timestamp in {plain:?}: {e}"))
        })
        .collect();
    assert!(!times.is_empty(), "{lost} lost and no warning: {stderr}");
    for pair in times.windows(2) {
        let apart_ms = (pair[1].0 - pair[0].0) / 1_000_000;
        assert!(
            apart_ms >= 990,
            "loss warnings {apart_ms} ms apart ({} in all, {lost} lost):\n{stderr}",
            times.len()
        );
    }
}

/// `line` without its ANSI colour sequences (`ESC [ … m`).
fn strip_ansi(line: &str) -> String {
    let mut out = String::new();
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c == 'm' {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// Issue 17 item 6: a pinned capture no daemon reads stops recording after
/// `capture.orphan_after`, and the daemon that adopts it says for how long it had stopped.
#[test]
fn an_orphaned_capture_stops_recording_and_the_next_daemon_says_for_how_long() {
    let ns = ns_with_rule_and_route();
    let dir = Dir::new("orphan");
    let pinnable = "path = \"syscall\"\norphan_after = \"2s\"\n";
    let daemon = Daemon::start_with(&dir, pinnable);
    daemon.kill9();

    // Within `orphan_after` of the last read: still recorded (the pins are what they were)...
    let kept_args = ["rule", "del", "prio", "100"];
    let kept = ns.ip_ok(&kept_args);
    // ...after it: not.
    std::thread::sleep(Duration::from_secs(4));
    let lost = ns.ip_ok(&["route", "del", "10.77.1.0/24", "table", "77"]);
    std::thread::sleep(Duration::from_secs(1));

    let daemon = Daemon::start_with(&dir, pinnable);
    let stderr = daemon.stderr();
    assert!(stderr.contains("adopted from"), "{stderr}");
    assert!(
        stderr.contains("the pinned capture was orphaned for")
            && stderr.contains("no daemon had read it for 2s"),
        "the adopting daemon says how long the capture was orphaned:\n{stderr}"
    );
    let row = daemon.wait_row(kept);
    assert_fields(
        &row,
        &[("/kind", json!("rule")), ("/rule/priority", json!(100))],
    );
    // Recording again: a removal now is stored. The ring is drained in order, so once it is in
    // the store, the orphan's removal would be too had it been recorded.
    ns.ip_ok(&["rule", "add", "prio", "100", "lookup", "77"]);
    let now = ns.ip_ok(&["rule", "del", "prio", "100"]);
    daemon.wait_row(now);
    let rows = read_events(&daemon.store, None, None).expect("read_events");
    assert!(
        !rows.iter().any(|e| by_pid(e, lost)),
        "the orphaned capture recorded a removal: {:?}",
        rows.iter().find(|e| by_pid(e, lost))
    );
    let (code, stderr) = daemon.stop();
    assert_eq!(code, Some(0), "{stderr}");
}

/// `routeguard daemon --unpin` while a daemon runs: its programs stay attached (it holds their
/// links by fd) and it still records, but /healthz answers 503 and says why (a restart would
/// find nothing pinned), and `routeguard_capture_intact` drops to 0.
#[test]
fn unpinning_under_a_running_daemon_makes_it_unhealthy_not_deaf() {
    let ns = ns_with_rule_and_route();
    let dir = Dir::new("unpin-live");
    let daemon = Daemon::start_pinnable(&dir);
    let health = daemon.get("/healthz");
    assert!(health.starts_with("HTTP/1.1 200 OK"), "{health}");
    assert_eq!(daemon.metric("routeguard_capture_intact"), Some(1.0));

    let ran = run(Command::new(routeguard_bin())
        .args(["daemon", "--unpin", "--config"])
        .arg(&daemon.config));
    assert!(ran.status.success(), "--unpin: {}", ran.stderr);
    assert!(pin_sets(&dir.1).is_empty(), "{:?}", pin_sets(&dir.1));

    let deadline = Instant::now() + expect_within(Duration::from_secs(6));
    let health = loop {
        let health = daemon.get("/healthz");
        if health.starts_with("HTTP/1.1 503") || Instant::now() > deadline {
            break health;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    assert!(
        health.starts_with("HTTP/1.1 503 Service Unavailable"),
        "/healthz after --unpin:\n{health}\ndaemon stderr:\n{}",
        daemon.stderr()
    );
    assert!(
        health.contains("the pinned capture was removed"),
        "{health}"
    );
    assert_eq!(daemon.metric("routeguard_capture_intact"), Some(0.0));

    // Still attached: the daemon's own fds hold the links.
    let pid = ns.ip_ok(&["rule", "del", "prio", "100"]);
    daemon.wait_row(pid);
    let (code, stderr) = daemon.stop();
    assert_eq!(code, Some(0), "{stderr}");
    assert!(
        stderr.contains("the pinned capture was removed"),
        "{stderr}"
    );
}

/// A daemon that switches to the kernel-function path (not pinned) removes the syscall capture
/// an earlier run pinned: it used to stay attached, hooking every syscall beside the new path.
/// Where fentry/fexit do not load (our build machines) this skips, saying why; `cargo xtask
/// vm-test` runs it on stock Debian kernels.
#[test]
fn switching_to_the_kernel_function_path_removes_the_syscall_pins() {
    require_root();
    let ran = run(Command::new(routeguard_bin()).args(["doctor", "--json"]));
    let report: Value = serde_json::from_str(&ran.stdout).expect("doctor --json");
    if report["capture"] != "kernel-function" {
        eprintln!(
            "skipped: the kernel-function path does not run on this kernel (capture: {}); \
             `routeguard doctor` says why",
            report["capture"]
        );
        return;
    }
    let dir = Dir::new("switch");
    let daemon = Daemon::start_pinnable(&dir);
    assert_eq!(pin_sets(&dir.1).len(), 1, "one pinned capture");
    let (code, stderr) = daemon.stop();
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(pin_sets(&dir.1).len(), 1, "pins kept after SIGTERM");

    let daemon = Daemon::start_with(&dir, "path = \"kernel-function\"\n");
    assert!(
        pin_sets(&dir.1).is_empty(),
        "the syscall capture is still pinned beside the kernel-function path: {:?}\n{}",
        pin_sets(&dir.1),
        daemon.stderr()
    );
    assert!(
        daemon
            .stderr()
            .contains("removed the syscall capture an earlier daemon pinned"),
        "{}",
        daemon.stderr()
    );
    let (code, stderr) = daemon.stop();
    assert_eq!(code, Some(0), "{stderr}");
}

/// Sends `sends` batches of refused RTM_DELRULEs (16,380 bytes each; the programs copy, and
/// budget, 8 to 16 KiB of each) as uid 65534 in `ns`.
fn send_refused(ns: &Netns, sends: u32) {
    run(Command::new("ip")
        .args(["netns", "exec", ns.name(), "setpriv"])
        .args(["--reuid", "65534", "--regid", "65534", "--clear-groups"])
        // The real interpreter, readable by uid 65534 (pyenv's lives under /root).
        .args([
            "/usr/bin/python3",
            &client_script("flood_rule_del.py"),
            "10",
        ])
        .arg(sends.to_string()))
    .ok("flood_rule_del.py");
}

/// `[capture] budget_rate` and `budget_burst` are maps the running programs read: a SIGHUP
/// applies them without reloading or detaching anything. A burst of 128K lets three 16K sends
/// of refused requests through; after a SIGHUP to a 16K burst, six such sends from a fresh
/// sender (another namespace: another budget) see all but the first one or two suppressed,
/// where the 128K burst would let all six through. Before, a reload kept the programs'
/// load-time budgets (and warned that `[capture]` needs a restart).
#[test]
fn a_sighup_applies_new_budgets_to_the_running_programs() {
    let (first, second) = (Netns::new(), Netns::new());
    let dir = Dir::new("budget-reload");
    let budget = |burst: &str| format!("budget_rate = \"4K\"\nbudget_burst = \"{burst}\"\n");
    let daemon = Daemon::start_with(&dir, &budget("128K"));
    let series = "routeguard_suppressed_total{reason=\"refused\"}";
    let suppressed = || {
        daemon
            .metric(series)
            .unwrap_or_else(|| panic!("no {series} in /metrics:\n{}", daemon.get("/metrics")))
    };
    send_refused(&first, 3);
    // What the budgets suppressed is read once a second.
    std::thread::sleep(Duration::from_millis(2_500));
    assert_eq!(suppressed(), 0.0, "three 16K sends fit a 128K burst");

    let text = config_text(&daemon.store, daemon.port, &dir.1, false) + &budget("16K");
    fs::write(&daemon.config, text).unwrap();
    daemon.signal(libc::SIGHUP);
    daemon.wait_stderr("config reloaded", EVENT_TIMEOUT);
    send_refused(&second, 6);
    // The syscall path budgets (and counts) whole sends; the kernel-function path each request
    // rtnetlink handles, 585 RTM_DELRULEs of 28 bytes a send.
    let per_send = if daemon.stderr().contains("capture=kernel-function") {
        585.0
    } else {
        1.0
    };
    let deadline = Instant::now() + expect_within(Duration::from_secs(10));
    while suppressed() < 4.0 * per_send {
        assert!(
            Instant::now() < deadline,
            "{} suppressed after the reload to a 16K burst (want 4 or 5 of the 6 sends, \
             {per_send} each); stderr:\n{}",
            suppressed(),
            daemon.stderr()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    std::thread::sleep(Duration::from_millis(1_500));
    let after = suppressed();
    assert!(
        after <= 5.0 * per_send,
        "the first send fits the 16K burst: {after} suppressed ({per_send} a send); stderr:\n{}",
        daemon.stderr()
    );
    let stderr = daemon.stderr();
    assert!(
        !stderr.contains("take effect when the daemon restarts"),
        "budget changes need no restart: {stderr}"
    );
    let (code, stderr) = daemon.stop();
    assert_eq!(code, Some(0), "{stderr}");
}

#[path = "daemon/restore_state.rs"]
mod restore_state;

/// What a flood of refused requests can put on disk is bounded: the JSON lines by rotation
/// (`max_bytes` × (`keep` + 1)), the store by the kernel's budgets (at most the budget's bytes
/// a second, plus one burst, of 28-byte requests become events; the rest are one `suppressed`
/// line a second, which the store does not keep), while root's removals in a protected
/// namespace are all stored.
#[test]
fn a_flood_fills_the_disk_no_further_than_its_bounds() {
    const ROUTES: u32 = 2_000;
    const RATE: u64 = 64 << 10;
    const BURST: u64 = 256 << 10;
    const MAX_BYTES: u64 = 64 << 10;
    let flood_ns = Netns::new();
    let root_ns = Netns::new();
    root_ns.add_test_link("d0");
    let prefix = |i: u32| format!("10.{}.{}.0/24", 100 + (i >> 8), i & 0xff);
    let adds: Vec<String> = (0..ROUTES)
        .map(|i| format!("route add {} dev d0 table 100", prefix(i)))
        .collect();
    root_ns.ip_batch(&adds);
    let Some(cgroup) = Cgroup::create(&format!("rgt-disk-flood-{}", std::process::id())) else {
        panic!("a flood needs a cgroup v2 of the test's own to put the flooders in");
    };
    let dir = Dir::new("disk-flood");
    let logs = dir.0.join("logs");
    let jsonl_path = logs.join("events.jsonl");
    let started = Instant::now();
    let daemon = Daemon::start_with(
        &dir,
        &format!(
            "budget_rate = \"{RATE}\"\nbudget_burst = \"{BURST}\"\n\n[jsonl]\nenabled = true\n\
             path = \"{}\"\nmax_bytes = \"{MAX_BYTES}\"\nkeep = 1\n\n[[protect]]\nkind = \"rule\"\n\
             table = 4242\nnetns = \"{}\"\n",
            jsonl_path.display(),
            root_ns.name()
        ),
    );
    let mut flooders = vec![
        refused_flooder(&flood_ns, &cgroup, "6"),
        refused_flooder(&flood_ns, &cgroup, "6"),
    ];
    std::thread::sleep(Duration::from_secs(1));
    let dels: Vec<String> = (0..ROUTES)
        .map(|i| format!("route del {} dev d0 table 100", prefix(i)))
        .collect();
    let pid = root_ns.ip_batch(&dels);
    let mut sent = 0u64;
    for f in &mut flooders {
        let mut out = String::new();
        f.stdout.take().unwrap().read_to_string(&mut out).unwrap();
        assert!(f.wait().unwrap().success(), "the flooder failed");
        // "<pid> <sends> <messages> <seconds>"
        sent += out
            .split_whitespace()
            .nth(2)
            .and_then(|m| m.parse().ok())
            .unwrap_or(0);
    }
    let deadline = Instant::now() + expect_within(EVENT_TIMEOUT);
    let (root, flood) = loop {
        let rows = read_events(&daemon.store, None, None).unwrap_or_default();
        let root = rows.iter().filter(|e| by_pid(e, pid)).count() as u32;
        let flood = rows
            .iter()
            .filter(|e| at(e, "/netns/inode") == flood_ns.inode())
            .count() as u64;
        if root == ROUTES || Instant::now() > deadline {
            break (root, flood);
        }
        std::thread::sleep(Duration::from_millis(500));
    };
    let suppressed = daemon
        .metric(r#"routeguard_suppressed_total{reason="refused"}"#)
        .unwrap_or(0.0);
    let jsonl_bytes: u64 = fs::read_dir(&logs)
        .unwrap()
        .map(|e| e.unwrap().metadata().unwrap().len())
        .sum();
    let (code, stderr) = daemon.stop();
    let seconds = started.elapsed().as_secs();
    // One send of slack: a send is let through whole while its sender still has budget.
    let budgeted = (RATE * seconds + BURST + (16 << 10)) / 28;
    eprintln!(
        "flooders sent {sent} requests; stored: root {root}/{ROUTES}, flooders {flood} (bound \
         {budgeted} in {seconds} s); suppressed {suppressed}; JSON lines {jsonl_bytes} bytes"
    );
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(
        root, ROUTES,
        "root's removals all stored; stderr:\n{stderr}"
    );
    assert!(flood > 0, "the flooders' requests within budget are stored");
    assert!(
        flood <= budgeted,
        "the store took {flood} of the flooders' events, over the budget's {budgeted}"
    );
    assert!(suppressed > 0.0, "requests over budget are counted");
    assert!(
        sent > 10 * flood,
        "the flood ({sent}) was much more than what was stored ({flood})"
    );
    // A file rotates before a line would take it past `max_bytes`.
    assert!(
        jsonl_bytes <= 2 * MAX_BYTES,
        "the JSON lines files hold {jsonl_bytes} bytes, over max_bytes × (keep + 1)"
    );
}
