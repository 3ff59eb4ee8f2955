//! `[otlp]`: the real daemon sends its events as OpenTelemetry log records to a receiver on
//! 127.0.0.1 built on the official protobuf definitions (`routeguard_tests::otlp`), over
//! OTLP/HTTP and over OTLP/gRPC. The receiver decodes every request; a real `ip rule del` in a
//! network namespace is checked field by field, against what the test knows (the `ip`'s pid, its
//! namespace, the rule) and against the daemon's own store row of the same removal.
//!
//! Then the receiver is down at start and goes away during the run: the sink goes down (alerted
//! in the JSON lines, counted in the metrics), is retried and recovers, and the capture and the
//! store miss nothing.
//!
//! Each daemon runs on a store, JSON lines and metrics port of its own, journald off and
//! unpinned (`pin_dir = ""`). It sees the whole host: records are picked by the pid of the `ip`
//! this test ran in its own namespace.

use std::{
    fs,
    io::{BufRead, BufReader, Read, Write},
    net::{Ipv4Addr, TcpListener, TcpStream},
    path::PathBuf,
    process::{Child, Command, Stdio},
    sync::{Arc, Condvar, Mutex, PoisonError},
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use routeguard::store::read_events;
use routeguard_tests::{
    otlp::{AnyValue, Protocol, Receiver, Record},
    *,
};

/// The daemon's files; removed on drop.
struct Dir(PathBuf);

impl Dir {
    fn new(tag: &str) -> Self {
        let dir =
            std::env::temp_dir().join(format!("routeguard-otlp-{tag}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        Self(dir)
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

fn free_port() -> u16 {
    let l = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
    l.local_addr().unwrap().port()
}

/// A running `routeguard daemon`, killed by pid (SIGKILL) if the test did not stop it.
struct Daemon {
    child: Child,
    stderr: Arc<(Mutex<String>, Condvar, Mutex<bool>)>,
    store: PathBuf,
    jsonl: PathBuf,
    port: u16,
}

impl Daemon {
    /// Starts the daemon with `otlp` (the lines of its `[otlp]` section).
    fn start(dir: &Dir, otlp: &str) -> Self {
        require_root();
        let store = dir.0.join("events.db");
        let jsonl = dir.0.join("events.jsonl");
        let config = dir.0.join("routeguard.toml");
        let port = free_port();
        fs::write(
            &config,
            format!(
                "[store]\npath = \"{}\"\n\n[jsonl]\nenabled = true\npath = \"{}\"\n\n\
                 [journald]\nenabled = false\n\n[metrics]\nlisten = \"127.0.0.1:{port}\"\n\n\
                 [capture]\nring_size = \"4M\"\npin_dir = \"\"\n\n[otlp]\nenabled = true\n{otlp}",
                store.display(),
                jsonl.display()
            ),
        )
        .unwrap();
        let mut child = Command::new(routeguard_bin())
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
            store,
            jsonl,
            port,
        };
        d.wait_stderr("daemon started", attach_timeout());
        d
    }

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

    /// SIGTERM, then waits for exit; the exit code and stderr.
    fn stop(mut self) -> (Option<i32>, String) {
        // SAFETY: kill(2) on the pid of a child this guard spawned and has not reaped.
        unsafe { libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM) };
        let status = wait_timeout(&mut self.child, Duration::from_secs(30))
            .unwrap_or_else(|| panic!("daemon ignored SIGTERM:\n{}", self.stderr()));
        let deadline = Instant::now() + Duration::from_secs(5);
        let (lock, cvar, done) = &*self.stderr;
        let mut s = lock.lock().unwrap_or_else(PoisonError::into_inner);
        while !*done.lock().unwrap_or_else(PoisonError::into_inner) && Instant::now() < deadline {
            s = cvar
                .wait_timeout(s, Duration::from_millis(100))
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
        (status.code(), s.clone())
    }

    /// The stored event by process `pid`, waiting for it.
    #[track_caller]
    fn wait_row(&self, pid: u32) -> Value {
        let deadline = Instant::now() + expect_within(EVENT_TIMEOUT);
        loop {
            if self.store.exists() {
                let rows = read_events(&self.store, None, None).expect("read_events");
                if let Some(row) = rows.into_iter().find(|e| by_pid(e, pid)) {
                    return row;
                }
            }
            assert!(
                Instant::now() < deadline,
                "no stored event by pid {pid}; daemon stderr:\n{}",
                self.stderr()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The JSON lines written so far (events and alerts).
    fn lines(&self) -> Vec<Value> {
        fs::read_to_string(&self.jsonl)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }

    /// Alerts about the `otlp` sink, of `event` (`sink-failed`, `sink-recovered`).
    fn otlp_alerts(&self, event: &str) -> Vec<Value> {
        self.lines()
            .into_iter()
            .filter(|l| l["event"] == event && l["sink"] == "otlp")
            .collect()
    }

    fn metrics(&self) -> String {
        let mut s = TcpStream::connect((Ipv4Addr::LOCALHOST, self.port)).expect("connect");
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        write!(s, "GET /metrics HTTP/1.1\r\nHost: localhost\r\n\r\n").unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).expect("read /metrics");
        out
    }

    /// The value of the series `name` (its name and labels, as written).
    fn metric(&self, name: &str) -> Option<f64> {
        series(&self.metrics(), name)
    }

    /// Waits until `cond` holds of the metrics.
    #[track_caller]
    fn wait_metrics(&self, what: &str, timeout: Duration, cond: impl Fn(&Daemon) -> bool) {
        let deadline = Instant::now() + timeout;
        while !cond(self) {
            assert!(
                Instant::now() < deadline,
                "{what} not within {timeout:?}; metrics:\n{}\nstderr:\n{}",
                self.metrics(),
                self.stderr()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            // SAFETY: kill(2) on the pid of a child this guard spawned and has not reaped.
            unsafe { libc::kill(self.child.id() as libc::pid_t, libc::SIGKILL) };
            let _ = self.child.wait();
        }
    }
}

/// A namespace with rules at priorities 100, 101, … (`n` of them), looking up table 77.
fn ns_with_rules(n: u32) -> Netns {
    let ns = Netns::new();
    for prio in 100..100 + n {
        ns.ip_ok(&["rule", "add", "prio", &prio.to_string(), "lookup", "77"]);
    }
    ns
}

/// Removes the rule at `prio` (no table named: the kernel's view names it); the ip's pid.
fn del_rule(ns: &Netns, prio: u32) -> u32 {
    ns.ip_ok(&["rule", "del", "prio", &prio.to_string()])
}

/// The value of the series `name` (its name and labels, as written) in the metrics `text`.
fn series(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
}

fn hostname() -> String {
    fs::read_to_string("/proc/sys/kernel/hostname")
        .unwrap()
        .trim()
        .to_owned()
}

fn s(v: &str) -> AnyValue {
    AnyValue::StringValue(v.to_owned())
}

/// The record of the removal by `pid`, field by field.
#[track_caller]
fn check_removal(r: &Record, ns: &Netns, pid: u32, row: &Value, command_args: bool) {
    let l = &r.record;
    assert_eq!(l.event_name, "routeguard.removal");
    assert_eq!((l.severity_number, l.severity_text.as_str()), (9, "INFO"));
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    assert!(
        l.time_unix_nano > now - 60_000_000_000 && l.time_unix_nano <= l.observed_time_unix_nano,
        "time {} observed {} now {now}",
        l.time_unix_nano,
        l.observed_time_unix_nano
    );
    // The record's time is the event's `ts`, to the nanosecond.
    let ts = row["ts"].as_str().unwrap();
    let ts: routeguard::event::Timestamp = ts.parse().expect("ts");
    assert_eq!(i128::from(l.time_unix_nano), ts.0, "{row:#}");
    let body = r.body().unwrap();
    for needle in [
        format!("netns={}({})", ns.name(), ns.inode()),
        format!("ip[{pid}]"),
        "DEL rule prio 100".to_owned(),
        "-> removed".to_owned(),
    ] {
        assert!(body.contains(&needle), "`{needle}` in the body {body:?}");
    }
    let ints = [
        ("process.pid", Some(i64::from(pid))),
        ("process.parent_pid", Some(i64::from(std::process::id()))),
        ("process.real_user.id", Some(0)),
        ("thread.id", row["actor"]["tid"].as_i64()),
        ("routeguard.netns.inode", Some(ns.inode() as i64)),
        ("routeguard.rule.priority", Some(100)),
        // `ip rule del prio 100` names no table: the kernel's view of the rule does.
        ("routeguard.rule.table", Some(77)),
    ];
    for (key, want) in ints {
        assert_eq!(r.int(key), want, "{key} in {:#?}", r.attributes);
    }
    let exe = row["actor"]["exe"].as_str().unwrap();
    assert!(exe.ends_with("/ip"), "{exe}");
    let strs = [
        ("thread.name", Some("ip")),
        ("process.executable.name", Some("ip")),
        ("process.executable.path", Some(exe)),
        ("routeguard.kind", Some("rule")),
        ("routeguard.cause", Some("request")),
        ("routeguard.outcome", Some("removed")),
        ("routeguard.capture", row["capture"].as_str()),
        ("routeguard.request.op", Some("RTM_DELRULE")),
        ("routeguard.request.syscall", Some("sendmsg")),
        ("routeguard.netns.name", Some(ns.name())),
        ("routeguard.rule.action", row["rule"]["action"].as_str()),
        ("process.linux.cgroup", row["actor"]["cgroup"].as_str()),
        ("routeguard.actor.unit", row["actor"]["unit"].as_str()),
        // As the store has them: present when the test runs in a container, else absent.
        ("container.id", row["actor"]["container"].as_str()),
        ("k8s.pod.name", row["actor"]["pod"]["name"].as_str()),
        ("k8s.pod.uid", row["actor"]["pod"]["uid"].as_str()),
        (
            "k8s.namespace.name",
            row["actor"]["pod"]["namespace"].as_str(),
        ),
    ];
    for (key, want) in strs {
        assert_eq!(r.str(key), want, "{key} in {:#?}", r.attributes);
    }
    assert_eq!(
        r.attr("routeguard.request.ack_requested"),
        Some(&AnyValue::BoolValue(true))
    );
    let argv: Vec<AnyValue> = ["ip", "-n", ns.name(), "rule", "del", "prio", "100"]
        .map(s)
        .to_vec();
    match (command_args, r.attr("process.command_args")) {
        (false, None) => {}
        (true, Some(AnyValue::ArrayValue(a))) => {
            let got: Vec<AnyValue> = a.values.iter().filter_map(|v| v.value.clone()).collect();
            assert_eq!(got, argv);
        }
        (want, got) => panic!("process.command_args (asked: {want}): {got:?}"),
    }
    // Nothing that is not the actor's or the event's.
    for key in r.attributes.keys() {
        assert!(
            ["process.", "thread.", "container.", "k8s.", "routeguard."]
                .iter()
                .any(|p| key.starts_with(p)),
            "{key}"
        );
    }
    assert_eq!(r.resource.get("service.name"), Some(&s("routeguard")));
    assert_eq!(r.resource.get("host.name"), Some(&s(&hostname())));
    assert_eq!(
        r.resource.get("host.id").cloned(),
        row["host"]["machine_id"].as_str().map(s)
    );
    assert_eq!(r.scope, "routeguard");
}

/// The daemon's record of a real removal, as the receiver decoded it.
fn removal_reaches_the_receiver(protocol: Protocol) {
    let ns = ns_with_rules(1);
    let receiver = Receiver::start(protocol);
    let dir = Dir::new(protocol.config_name().replace('/', "-").as_str());
    let command_args = protocol == Protocol::Grpc;
    let daemon = Daemon::start(
        &dir,
        &format!(
            "endpoint = \"{}\"\nprotocol = \"{}\"\nbatch_delay = \"100ms\"\ncommand_args = {command_args}\n\
             [otlp.headers]\n\"X-Scope-OrgID\" = \"team%20a\"\n",
            receiver.endpoint(),
            protocol.config_name()
        ),
    );
    assert!(
        daemon.stderr().contains(&format!(
            "otlp {} {}",
            protocol.config_name(),
            receiver.endpoint()
        )),
        "{}",
        daemon.stderr()
    );

    let pid = del_rule(&ns, 100);
    let row = daemon.wait_row(pid);
    let record = receiver.wait_record(
        &format!("by pid {pid}"),
        expect_within(EVENT_TIMEOUT),
        |r| r.int("process.pid") == Some(i64::from(pid)),
    );
    check_removal(&record, &ns, pid, &row, command_args);
    // The header as written in the config: literal, not percent-decoded.
    assert_eq!(
        record.headers.get("x-scope-orgid").map(String::as_str),
        Some("team%20a"),
        "{:?}",
        record.headers
    );
    if protocol == Protocol::Http {
        assert_eq!(
            record.headers.get("content-type").map(String::as_str),
            Some("application/x-protobuf")
        );
    }
    assert_eq!(receiver.errors(), Vec::<String>::new());
    // One record for the one removal (the host's other removals, if any, are not ours).
    let ours = receiver
        .records()
        .iter()
        .filter(|r| r.str("routeguard.netns.name") == Some(ns.name()))
        .count();
    assert_eq!(ours, 1);

    daemon.wait_metrics("the export counted", EVENT_TIMEOUT, |d| {
        d.metric("routeguard_otlp_exported_total").unwrap_or(0.0) >= 1.0
    });
    for (series, want) in [
        (r#"routeguard_sink_up{sink="otlp"}"#, 1.0),
        (r#"routeguard_otlp_dropped_total{reason="queue-full"}"#, 0.0),
        (
            r#"routeguard_otlp_dropped_total{reason="export-failed"}"#,
            0.0,
        ),
        (r#"routeguard_otlp_dropped_total{reason="down"}"#, 0.0),
    ] {
        assert_eq!(daemon.metric(series), Some(want), "{series}");
    }
    let (code, stderr) = daemon.stop();
    assert_eq!(code, Some(0), "{stderr}");
}

#[test]
fn a_removal_reaches_an_otlp_http_receiver_field_by_field() {
    removal_reaches_the_receiver(Protocol::Http);
}

#[test]
fn a_removal_reaches_an_otlp_grpc_receiver_field_by_field() {
    removal_reaches_the_receiver(Protocol::Grpc);
}

/// Down at start, up, down during the run, up again: the sink follows, alerts, counts and
/// retries; the store has every removal.
fn a_receiver_that_comes_and_goes(protocol: Protocol) {
    let ns = ns_with_rules(5);
    let port = free_port();
    let dir = Dir::new(&format!(
        "down-{}",
        protocol.config_name().replace('/', "-")
    ));
    let daemon = Daemon::start(
        &dir,
        &format!(
            "endpoint = \"http://127.0.0.1:{port}\"\nprotocol = \"{}\"\nbatch_delay = \"50ms\"\ntimeout = \"1s\"\n",
            protocol.config_name()
        ),
    );
    let up = r#"routeguard_sink_up{sink="otlp"}"#;
    let failed = r#"routeguard_otlp_dropped_total{reason="export-failed"}"#;
    let down = r#"routeguard_otlp_dropped_total{reason="down"}"#;
    let errors = r#"routeguard_sink_errors_total{sink="otlp"}"#;

    // 1. Nothing listens: the first request fails, the sink goes down.
    let a = del_rule(&ns, 100);
    daemon.wait_row(a);
    daemon.wait_metrics(
        "the otlp sink down",
        expect_within(Duration::from_secs(10)),
        |d| d.metric(up) == Some(0.0),
    );
    assert!(daemon.metric(failed) >= Some(1.0), "{}", daemon.metrics());
    assert!(daemon.metric(errors) >= Some(1.0), "{}", daemon.metrics());
    let alert = daemon.otlp_alerts("sink-failed");
    assert_eq!(alert.len(), 1, "{alert:#?}");
    let error = alert[0]["error"].as_str().unwrap();
    assert!(error.contains(&format!("127.0.0.1:{port}")), "{error}");
    assert_eq!(
        alert[0]["path"]
            .as_str()
            .map(|p| p.starts_with(&format!("http://127.0.0.1:{port}"))),
        Some(true),
        "{alert:#?}"
    );

    // 2. The receiver comes up; after the back-off (1 s), the next removal goes through.
    let mut receiver = Receiver::start_on(protocol, port);
    std::thread::sleep(Duration::from_millis(1200));
    let b = del_rule(&ns, 101);
    daemon.wait_row(b);
    receiver.wait_record(
        &format!("by pid {b}"),
        expect_within(Duration::from_secs(10)),
        |r| r.int("process.pid") == Some(i64::from(b)),
    );
    daemon.wait_metrics("the otlp sink up", expect_within(EVENT_TIMEOUT), |d| {
        d.metric(up) == Some(1.0)
    });
    let recovered = daemon.otlp_alerts("sink-recovered");
    assert_eq!(recovered.len(), 1, "{recovered:#?}");
    assert!(recovered[0]["missed"].as_u64() >= Some(1), "{recovered:#?}");
    // The collector hears of its own outage.
    let told = receiver.wait_record("sink_recovered", expect_within(EVENT_TIMEOUT), |r| {
        r.record.event_name == "routeguard.sink_recovered"
    });
    assert_eq!(told.str("routeguard.alert.sink"), Some("otlp"));
    assert_eq!(
        (
            told.record.severity_number,
            told.record.severity_text.as_str()
        ),
        (9, "INFO")
    );
    // The removal made while it was down was not sent later: it is counted.
    assert!(
        !receiver
            .records()
            .iter()
            .any(|r| r.int("process.pid") == Some(i64::from(a))),
        "the failed request's record was sent again"
    );

    // 3. It goes away during the run: down again, and what comes during the back-off is counted
    // as `down` without being tried.
    receiver.stop();
    let c = del_rule(&ns, 102);
    daemon.wait_row(c);
    daemon.wait_metrics(
        "the otlp sink down again",
        expect_within(Duration::from_secs(10)),
        |d| d.metric(up) == Some(0.0),
    );
    let d = del_rule(&ns, 103);
    daemon.wait_row(d);
    daemon.wait_metrics(
        "a removal counted while down",
        expect_within(EVENT_TIMEOUT),
        |dm| dm.metric(down) >= Some(1.0),
    );
    assert_eq!(daemon.otlp_alerts("sink-failed").len(), 2);

    // 4. Back again: once the back-off (2 s now) is over, it writes again.
    receiver.restart();
    std::thread::sleep(Duration::from_millis(2500));
    let e = del_rule(&ns, 104);
    daemon.wait_row(e);
    receiver.wait_record(
        &format!("by pid {e}"),
        expect_within(Duration::from_secs(10)),
        |r| r.int("process.pid") == Some(i64::from(e)),
    );
    daemon.wait_metrics(
        "the otlp sink up again",
        expect_within(EVENT_TIMEOUT),
        |d| d.metric(up) == Some(1.0),
    );
    assert_eq!(daemon.otlp_alerts("sink-recovered").len(), 2);
    let metrics = daemon.metrics();
    let lost = daemon.metric(failed).unwrap_or(0.0) + daemon.metric(down).unwrap_or(0.0);
    assert_eq!(daemon.metric(errors), Some(lost), "{metrics}");
    assert!(lost >= 3.0, "a, c and d at least: {metrics}");
    assert!(daemon.stderr().contains("otlp sink"), "{}", daemon.stderr());
    assert_eq!(receiver.errors(), Vec::<String>::new());

    // The capture and the store were not held up: every removal is there.
    let rows = read_events(&daemon.store, None, None).unwrap();
    for pid in [a, b, c, d, e] {
        assert!(
            rows.iter().any(|r| by_pid(r, pid)),
            "removal by {pid} stored"
        );
    }
    let (code, stderr) = daemon.stop();
    assert_eq!(code, Some(0), "{stderr}");
    drop(receiver);
}

#[test]
fn an_http_receiver_down_at_start_and_during_the_run_is_retried() {
    a_receiver_that_comes_and_goes(Protocol::Http);
}

#[test]
fn a_grpc_receiver_down_at_start_and_during_the_run_is_retried() {
    a_receiver_that_comes_and_goes(Protocol::Grpc);
}

/// A collector that takes connections and reads requests but never answers, holding what it was
/// sent: every request waits its whole `otlp.timeout`.
struct Stalled {
    port: u16,
    stop: Arc<std::sync::atomic::AtomicBool>,
    accept: Option<std::thread::JoinHandle<()>>,
}

impl Stalled {
    fn start() -> Self {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
        listener.set_nonblocking(true).unwrap();
        let port = listener.local_addr().unwrap().port();
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let stopping = stop.clone();
        let accept = std::thread::spawn(move || {
            let mut held = Vec::new();
            while !stopping.load(std::sync::atomic::Ordering::SeqCst) {
                match listener.accept() {
                    Ok((stream, _)) => {
                        let _ = stream.set_nonblocking(false);
                        let mut reader = stream.try_clone().unwrap();
                        // Read (so the client's writes never block) and never answer.
                        std::thread::spawn(move || {
                            let mut buf = [0; 64 << 10];
                            while matches!(reader.read(&mut buf), Ok(n) if n > 0) {}
                        });
                        held.push(stream);
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(10)),
                }
            }
            for s in held {
                let _ = s.shutdown(std::net::Shutdown::Both);
            }
        });
        Self {
            port,
            stop,
            accept: Some(accept),
        }
    }
}

impl Drop for Stalled {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::SeqCst);
        if let Some(t) = self.accept.take() {
            let _ = t.join();
        }
    }
}

/// A burst of 2,000 removals while the collector hangs on the first request: at most
/// `otlp.queue_size` events wait for it, the rest are dropped at once and counted as
/// `queue-full`, and the capture and the store are not held up: every removal is stored, none
/// lost, before the hung request has even timed out.
#[test]
fn a_stalled_collector_fills_the_bounded_queue_and_holds_up_nothing() {
    const RULES: u32 = 2000;
    const QUEUE: u32 = 200;
    let ns = Netns::new();
    let lines = |op: &str| -> Vec<String> {
        (1000..1000 + RULES)
            .map(|p| format!("rule {op} prio {p} lookup 77"))
            .collect()
    };
    ns.ip_batch(&lines("add"));
    let collector = Stalled::start();
    let dir = Dir::new("stalled");
    let daemon = Daemon::start(
        &dir,
        &format!(
            "endpoint = \"http://127.0.0.1:{}\"\ntimeout = \"20s\"\nbatch_size = 100\n\
             queue_size = {QUEUE}\nbatch_delay = \"0s\"\n",
            collector.port
        ),
    );
    let start = Instant::now();
    let pid = ns.ip_batch(&lines("del"));
    let stored = || {
        read_events(&daemon.store, None, None)
            .map(|rows| rows.iter().filter(|r| by_pid(r, pid)).count())
            .unwrap_or(0)
    };
    let deadline = Instant::now() + expect_within(Duration::from_secs(10));
    while stored() < RULES as usize {
        assert!(
            Instant::now() < deadline,
            "{} of {RULES} removals stored; stderr:\n{}",
            stored(),
            daemon.stderr()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    // The daemon sees the whole host: removals by others (tests running beside this one) take
    // room in the queue too. Every event beyond the bound is dropped: all removals seen, less
    // the QUEUE that wait for the hung request. Read from one snapshot of the metrics.
    let queue_full = r#"routeguard_otlp_dropped_total{reason="queue-full"}"#;
    let seen = |text: &str| -> f64 {
        text.lines()
            .filter(|l| l.starts_with("routeguard_removals_total{"))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    };
    daemon.wait_metrics(
        "the burst beyond the queue counted",
        expect_within(EVENT_TIMEOUT),
        |d| {
            let text = d.metrics();
            let seen = seen(&text);
            seen >= f64::from(RULES) && series(&text, queue_full) == Some(seen - f64::from(QUEUE))
        },
    );
    let took = start.elapsed();
    // Still within the first request's 20 s: nothing has come back from the collector yet.
    let metrics = daemon.metrics();
    assert!(took < Duration::from_secs(15), "{took:?}");
    let dropped = series(&metrics, queue_full).unwrap();
    for (name, want) in [
        (r#"routeguard_sink_up{sink="otlp"}"#, 1.0),
        (
            r#"routeguard_otlp_dropped_total{reason="export-failed"}"#,
            0.0,
        ),
        ("routeguard_otlp_exported_total", 0.0),
        (r#"routeguard_sink_errors_total{sink="otlp"}"#, dropped),
        (r#"routeguard_events_lost_total{cause="ring-full"}"#, 0.0),
        (r#"routeguard_events_lost_total{cause="queue-full"}"#, 0.0),
    ] {
        assert_eq!(series(&metrics, name), Some(want), "{name} in\n{metrics}");
    }
    eprintln!(
        "{RULES} removals stored and {dropped} dropped at the OTLP queue ({} removals seen on \
         the host) within {took:?}, the collector silent",
        seen(&metrics)
    );
    // At exit the queue is given `otlp.timeout` (at most 10 s), then the rest is logged.
    let stopping = Instant::now();
    let (code, stderr) = daemon.stop();
    assert_eq!(code, Some(0), "{stderr}");
    assert!(stopping.elapsed() < Duration::from_secs(25), "{stderr}");
    drop(collector);
}

/// What `[otlp]` gets wrong starts nothing: exit 2, one line naming the file, the line and the
/// key, with what is accepted; no store is made, nothing is loaded.
#[test]
fn a_bad_otlp_config_starts_nothing() {
    require_root();
    let dir = Dir::new("badconfig");
    let store = dir.0.join("events.db");
    let config = dir.0.join("routeguard.toml");
    for (otlp, line, needle) in [
        (
            "protocol = \"http/json\"",
            "line 6 (`protocol = \\\"http/json\\\"`)",
            "`otlp.protocol` = \"http/json\" is not a protocol routeguard speaks; accepted: \
             \"http/protobuf\" or \"grpc\"",
        ),
        (
            "endpoint = \"collector:4318\"",
            "line 6 (`endpoint = \\\"collector:4318\\\"`)",
            "`otlp.endpoint` = \"collector:4318\" is out of range; accepted: an http:// URL",
        ),
        (
            "endpoint = \"https://collector:4318\"",
            "line 6",
            "`otlp.endpoint` = \"https://collector:4318\" is out of range; accepted: TLS is not \
             built into routeguard",
        ),
        (
            "protocol = \"grpc\"\nendpoint = \"http://127.0.0.1:4317/v1/logs\"",
            "line 7",
            "`otlp.endpoint` = \"http://127.0.0.1:4317/v1/logs\" is out of range; accepted: a \
             gRPC endpoint without a path",
        ),
    ] {
        fs::write(
            &config,
            format!(
                "[store]\npath = \"{}\"\n\n[otlp]\nenabled = true\n{otlp}\n",
                store.display()
            ),
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
        assert_eq!(ran.status.code(), Some(2), "{otlp}: {}", ran.stderr);
        let lines: Vec<&str> = ran.stderr.lines().collect();
        assert_eq!(lines.len(), 1, "one line: {}", ran.stderr);
        let want = format!("bad config {} {line}", config.display());
        assert!(lines[0].contains(&want), "{want} in {}", lines[0]);
        assert!(lines[0].contains(needle), "{needle} in {}", lines[0]);
        assert!(!store.exists(), "nothing was started");
    }
}
