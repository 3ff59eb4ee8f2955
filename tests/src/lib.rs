//! Harness for routeguard's end-to-end tests.
//!
//! The tests drive the real `routeguard` binary on the running kernel with real tools (`ip`,
//! net-tools `route`, pyroute2, raw netlink sockets). Every test works inside a network namespace
//! it creates ([`Netns`]) and removes on drop, even when the test panics, so the host's routing is
//! never touched. Only processes the harness spawned are signalled, always by pid.
//!
//! Run as root, one test at a time: `cargo xtask test` (or
//! `cargo test -p routeguard-tests -- --test-threads=1`).

use std::fs;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

pub use serde_json::{json, Value};

pub mod held;
pub mod networkd;
pub mod otlp;

/// How long a test waits for an event it expects. routeguard emits an event once it has seen the
/// kernel's reply, or about 0.5 s later as `unknown`; 5 s leaves room for a loaded machine.
pub const EVENT_TIMEOUT: Duration = Duration::from_secs(5);

/// How long a test waits before it concludes that an event it must not see did not come.
pub const QUIET_PERIOD: Duration = Duration::from_millis(1500);

/// How long routeguard may take to load and attach its programs.
const ATTACH_TIMEOUT: Duration = Duration::from_secs(30);
/// The same inside `cargo xtask vm-test`: under QEMU's TCG the verifier alone takes ~10 s per
/// start on 6.1, and the first start also reads the binary and BTF through a cold 9p cache.
const VM_ATTACH_TIMEOUT: Duration = Duration::from_secs(180);

/// How long routeguard (trace or daemon) may take to start here: [`VM_ATTACH_TIMEOUT`] in the
/// VM, else [`ATTACH_TIMEOUT`].
pub fn attach_timeout() -> Duration {
    if vm_kernel().is_some() {
        VM_ATTACH_TIMEOUT
    } else {
        ATTACH_TIMEOUT
    }
}

/// `timeout` for something expected to happen, stretched inside `cargo xtask vm-test`: under
/// TCG on a busy 2-core host a daemon's restart or a burst takes several times longer.
pub fn expect_within(timeout: Duration) -> Duration {
    if vm_kernel().is_some() {
        timeout * 6
    } else {
        timeout
    }
}

/// Panics unless the tests run as root: they create namespaces and load eBPF programs.
pub fn require_root() {
    // SAFETY: geteuid has no preconditions and cannot fail.
    let euid = unsafe { libc::geteuid() };
    assert_eq!(
        euid, 0,
        "routeguard's integration tests need root (euid is {euid}): run them with `cargo xtask test` as root"
    );
}

/// The binary under test: `$ROUTEGUARD_BIN`, else `<workspace>/target/release/routeguard`.
pub fn routeguard_bin() -> PathBuf {
    let path = match std::env::var_os("ROUTEGUARD_BIN") {
        Some(p) => PathBuf::from(p),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/release/routeguard"),
    };
    assert!(
        path.is_file(),
        "routeguard binary not found at {}: build it with `cargo xtask build` (or set ROUTEGUARD_BIN)",
        path.display()
    );
    path
}

/// The capture path the tracers ask for: `$ROUTEGUARD_TEST_CAPTURE` (e.g. `kernel-function`,
/// set by `cargo xtask vm-test --capture`), passed as `routeguard trace --capture <value>`;
/// None (routeguard's own choice) when unset or empty.
pub fn capture_mode() -> Option<String> {
    std::env::var("ROUTEGUARD_TEST_CAPTURE")
        .ok()
        .filter(|mode| !mode.is_empty())
}

/// The kernel series when the tests run inside `cargo xtask vm-test`'s VM (`$ROUTEGUARD_VM`,
/// e.g. "6.1"), for tests that must skip what the VM lacks, saying so.
pub fn vm_kernel() -> Option<String> {
    std::env::var("ROUTEGUARD_VM")
        .ok()
        .filter(|k| !k.is_empty())
}

/// The output of a finished command, and the pid it ran as.
#[derive(Debug)]
pub struct Ran {
    pub pid: u32,
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

impl Ran {
    /// Panics with the command's output unless it exited 0.
    #[track_caller]
    pub fn ok(self, what: &str) -> Self {
        assert!(
            self.status.success(),
            "`{what}` failed ({}): stdout: {} stderr: {}",
            self.status,
            self.stdout,
            self.stderr
        );
        self
    }
}

/// The words of a command line written as one string, for `Netns::ip_ok` and friends:
/// `argv("route del 10.77.1.0/24 table 77")`. Words never contain spaces here.
pub fn argv(line: &str) -> Vec<&str> {
    line.split_whitespace().collect()
}

/// Spawns `cmd`, records its pid, and waits for it (at most 60 s, then it is killed).
pub fn run(cmd: &mut Command) -> Ran {
    let what = format!("{cmd:?}");
    let child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot spawn {what}: {e}"));
    finish(child, &what, Duration::from_secs(60))
}

/// Like [`run`], but feeds `input` on stdin.
pub fn run_with_input(cmd: &mut Command, input: &str) -> Ran {
    let what = format!("{cmd:?}");
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot spawn {what}: {e}"));
    let mut stdin = child.stdin.take().expect("stdin is piped");
    // Written on a thread while `finish` reads: a long input and a chatty child (`ip -force
    // -batch` prints one line per refusal) would otherwise fill both pipes and wait on each other.
    let input = input.to_owned();
    let writer = std::thread::spawn(move || stdin.write_all(input.as_bytes()));
    let ran = finish(child, &what, Duration::from_secs(60));
    writer
        .join()
        .expect("the input writer does not panic")
        .unwrap_or_else(|e| panic!("cannot write to {what}: {e}"));
    ran
}

/// Waits for `child` (reading its output), killing it by pid after `timeout`.
pub fn finish(mut child: Child, what: &str, timeout: Duration) -> Ran {
    let pid = child.id();
    let out = spawn_reader(child.stdout.take());
    let err = spawn_reader(child.stderr.take());
    let Some(status) = wait_timeout(&mut child, timeout) else {
        kill(pid, libc::SIGKILL);
        let _ = child.wait();
        panic!(
            "{what} (pid {pid}) did not exit within {timeout:?}; stderr: {}",
            err.join().unwrap_or_default()
        )
    };
    Ran {
        pid,
        status,
        stdout: out.join().unwrap_or_default(),
        stderr: err.join().unwrap_or_default(),
    }
}

fn spawn_reader<R: std::io::Read + Send + 'static>(r: Option<R>) -> JoinHandle<String> {
    std::thread::spawn(move || {
        let mut s = String::new();
        if let Some(mut r) = r {
            let _ = r.read_to_string(&mut s);
        }
        s
    })
}

/// Polls `child` until it exits or `timeout` passes.
pub fn wait_timeout(child: &mut Child, timeout: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            return Some(status);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Sends `sig` to one process this harness spawned.
fn kill(pid: u32, sig: libc::c_int) {
    let pid = libc::pid_t::try_from(pid).expect("pid fits pid_t");
    // SAFETY: kill(2) only takes integers; `pid` is a child of this process that has not been
    // reaped yet (callers reap it afterwards), so it cannot name an unrelated process.
    unsafe { libc::kill(pid, sig) };
}

// ---------------------------------------------------------------------------------------------
// Network namespaces
// ---------------------------------------------------------------------------------------------

static NETNS_SEQ: AtomicU32 = AtomicU32::new(0);

/// A network namespace `rgt-<pid>-<n>` that exists for as long as this guard does.
pub struct Netns {
    name: String,
    inode: u64,
    /// Already removed by [`Netns::delete`].
    deleted: bool,
}

impl Netns {
    /// Creates the namespace and brings `lo` up.
    pub fn new() -> Self {
        require_root();
        remove_stale_namespaces();
        let name = format!(
            "rgt-{}-{}",
            std::process::id(),
            NETNS_SEQ.fetch_add(1, Ordering::Relaxed)
        );
        run(Command::new("ip").args(["netns", "add", &name])).ok("ip netns add");
        // From here on the guard owns the namespace, so a failing step below still removes it.
        let mut ns = Netns {
            name,
            inode: 0,
            deleted: false,
        };
        ns.inode = fs::metadata(format!("/run/netns/{}", ns.name))
            .unwrap_or_else(|e| panic!("stat /run/netns/{}: {e}", ns.name))
            .ino();
        ns.ip_ok(&["link", "set", "lo", "up"]);
        ns
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// The namespace's inode number (what routeguard reports as `netns.inode`).
    pub fn inode(&self) -> u64 {
        self.inode
    }

    /// Runs `ip -n NAME ARGS...`; `Ran::pid` is the pid the ip process ran as (`ip -n` switches
    /// namespace in-process, it does not fork).
    pub fn ip(&self, args: &[&str]) -> Ran {
        run(Command::new("ip").args(["-n", &self.name]).args(args))
    }

    /// Like [`Netns::ip`], and panics unless it succeeded; returns the ip process's pid.
    #[track_caller]
    pub fn ip_ok(&self, args: &[&str]) -> u32 {
        let what = format!("ip -n {} {}", self.name, args.join(" "));
        self.ip(args).ok(&what).pid
    }

    /// Runs `ip -n NAME -batch -` with one command per line, as a single process.
    #[track_caller]
    pub fn ip_batch(&self, lines: &[String]) -> u32 {
        let input = lines.join("\n") + "\n";
        run_with_input(
            Command::new("ip").args(["-n", &self.name, "-batch", "-"]),
            &input,
        )
        .ok("ip -batch")
        .pid
    }

    /// Runs `ip netns exec NAME PROGRAM ARGS...`. `ip netns exec` execs the program in place, so
    /// `Ran::pid` is the program's pid.
    pub fn exec(&self, program: &str, args: &[&str]) -> Ran {
        run(Command::new("ip")
            .args(["netns", "exec", &self.name, program])
            .args(args))
    }

    /// Adds an up Ethernet link `name` with `10.99.0.1/24` and `2001:db8:99::1/64` (no DAD),
    /// so gateways `10.99.0.2`, `10.99.0.3` and `2001:db8:99::2` are reachable.
    ///
    /// A dummy link when the kernel has them; otherwise (CONFIG_DUMMY off) one end of a veth pair
    /// whose peer `<name>p` is also up, so the link has carrier.
    pub fn add_test_link(&self, name: &str) {
        if !self
            .ip(&["link", "add", name, "type", "dummy"])
            .status
            .success()
        {
            let peer = format!("{name}p");
            self.ip_ok(&["link", "add", name, "type", "veth", "peer", "name", &peer]);
            self.ip_ok(&["link", "set", &peer, "up"]);
        }
        self.ip_ok(&["link", "set", name, "up"]);
        self.ip_ok(&["addr", "add", "10.99.0.1/24", "dev", name]);
        self.ip_ok(&["addr", "add", "2001:db8:99::1/64", "dev", name, "nodad"]);
    }

    /// `ip netns del NAME` now, with whatever is still in it (what the guard does on drop).
    #[track_caller]
    pub fn delete(&mut self) -> u32 {
        let pid = run(Command::new("ip").args(["netns", "del", &self.name]))
            .ok("ip netns del")
            .pid;
        self.deleted = true;
        pid
    }

    /// The ifindex of `dev` inside the namespace.
    pub fn ifindex(&self, dev: &str) -> u32 {
        let path = format!("/sys/class/net/{dev}/ifindex");
        let ran = self.exec("cat", &[&path]).ok("cat ifindex");
        ran.stdout
            .trim()
            .parse()
            .unwrap_or_else(|e| panic!("ifindex of {dev}: {e}: {:?}", ran.stdout))
    }
}

impl Default for Netns {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        if self.deleted {
            return;
        }
        let ran = run(Command::new("ip").args(["netns", "del", &self.name]));
        if !ran.status.success() {
            eprintln!("warning: ip netns del {} failed: {}", self.name, ran.stderr);
        }
    }
}

/// Removes `rgt-<pid>-*` namespaces left by test processes that were killed before their guards
/// could run (a SIGKILLed test leaves them behind).
fn remove_stale_namespaces() {
    let Ok(dir) = fs::read_dir("/run/netns") else {
        return;
    };
    for entry in dir.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(pid) = name
            .strip_prefix("rgt-")
            .and_then(|rest| rest.split('-').next())
            .and_then(|pid| pid.parse::<u32>().ok())
        else {
            continue;
        };
        if pid != std::process::id() && !Path::new(&format!("/proc/{pid}")).exists() {
            let _ = run(Command::new("ip").args(["netns", "del", &name]));
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The tracer
// ---------------------------------------------------------------------------------------------

#[derive(Default)]
struct Shared {
    events: Vec<Value>,
    /// stdout lines that are not JSON objects (with `--json`, stdout must be JSON lines only).
    garbage: Vec<String>,
    stderr: String,
    stdout_done: bool,
    stderr_done: bool,
}

/// `routeguard trace --json --netns <ns> [filters]`, running while this guard lives.
pub struct Tracer {
    child: Child,
    shared: Arc<(Mutex<Shared>, Condvar)>,
    readers: Vec<JoinHandle<()>>,
}

impl Tracer {
    /// Starts a tracer restricted to `ns` (so activity elsewhere on the host cannot interfere),
    /// with `filters` appended, and waits until it reports `tracing started`.
    pub fn start(ns: &Netns, filters: &[&str]) -> Self {
        let mut args = vec!["trace", "--json", "--netns", ns.name()];
        args.extend_from_slice(filters);
        Self::start_args(&args)
    }

    /// Starts `routeguard ARGS...` and waits for `tracing started` on stderr. For `trace`,
    /// [`capture_mode`] adds `--capture <mode>` when set.
    pub fn start_args(args: &[&str]) -> Self {
        Self::start_with_env(args, &[])
    }

    /// Like [`Tracer::start_args`], with extra environment variables.
    pub fn start_with_env(args: &[&str], env: &[(&str, &str)]) -> Self {
        require_root();
        let bin = routeguard_bin();
        let capture = capture_mode();
        let mut args = args.to_vec();
        // Protections run on the syscall path (restores need its route mirror; routeguard
        // refuses `--capture kernel-function` with them), so those tracers keep `auto`.
        // A test that names its path itself keeps it.
        let protecting = args
            .iter()
            .any(|a| matches!(*a, "--protect" | "--config" | "--capture"));
        if let (Some(mode), Some(&"trace"), false) = (capture.as_deref(), args.first(), protecting)
        {
            args.splice(1..1, ["--capture", mode]);
        }
        let args = args.as_slice();
        let mut child = Command::new(&bin)
            .args(args)
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot spawn {}: {e}", bin.display()));
        let shared = Arc::new((Mutex::new(Shared::default()), Condvar::new()));
        let stdout = child.stdout.take().expect("stdout is piped");
        let stderr = child.stderr.take().expect("stderr is piped");
        let readers = vec![
            spawn_line_reader(stdout, Stream::Stdout, Arc::clone(&shared)),
            spawn_line_reader(stderr, Stream::Stderr, Arc::clone(&shared)),
        ];
        let mut tracer = Tracer {
            child,
            shared,
            readers,
        };
        tracer.wait_attached(args);
        tracer
    }

    /// The routeguard process's pid.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    fn wait_attached(&mut self, args: &[&str]) {
        let timeout = attach_timeout();
        let deadline = Instant::now() + timeout;
        let (lock, cvar) = &*self.shared;
        let mut s = relock(lock);
        loop {
            if s.stderr.contains("tracing started") {
                return;
            }
            if s.stderr_done {
                drop(s);
                let status = self.child.wait().expect("wait for routeguard");
                let s = relock(lock);
                panic!(
                    "routeguard {} exited ({status}) before `tracing started`; stderr:\n{}",
                    args.join(" "),
                    s.stderr
                );
            }
            let now = Instant::now();
            if now >= deadline {
                panic!(
                    "routeguard {} did not print `tracing started` within {timeout:?}; stderr so far:\n{}",
                    args.join(" "),
                    s.stderr
                );
            }
            s = cvar
                .wait_timeout(s, deadline - now)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
    }

    /// Waits up to `timeout` for an event matching `pred` and returns it; panics with every event
    /// seen so far when none comes.
    #[track_caller]
    pub fn wait_for(&self, what: &str, timeout: Duration, pred: impl Fn(&Value) -> bool) -> Value {
        self.wait_for_n(what, 1, timeout, pred)
            .pop()
            .expect("one event")
    }

    /// Waits up to `timeout` until `n` events match `pred` and returns them.
    #[track_caller]
    pub fn wait_for_n(
        &self,
        what: &str,
        n: usize,
        timeout: Duration,
        pred: impl Fn(&Value) -> bool,
    ) -> Vec<Value> {
        let timeout = expect_within(timeout);
        let deadline = Instant::now() + timeout;
        let (lock, cvar) = &*self.shared;
        let mut s = relock(lock);
        // Counted as they arrive: a wait for thousands of events wakes once per line, and a
        // recount of everything each time held the lock long enough (unoptimised, under TCG) to
        // stall the reader and so the tracer writing to it.
        let (mut count, mut checked) = (0, 0);
        loop {
            count += s.events[checked..].iter().filter(|e| pred(e)).count();
            checked = s.events.len();
            if count >= n {
                return s.events.iter().filter(|e| pred(e)).cloned().collect();
            }
            let now = Instant::now();
            if now >= deadline || s.stdout_done {
                panic!(
                    "expected {n} event(s) for {what} within {timeout:?}, got {count}; all events:\n{}\nnon-JSON stdout: {:?}\nstderr:\n{}",
                    pretty(&s.events),
                    s.garbage,
                    s.stderr
                );
            }
            s = cvar
                .wait_timeout(s, deadline - now)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
    }

    /// Waits `period` and panics if any event matching `pred` arrived.
    #[track_caller]
    pub fn assert_none(&self, what: &str, period: Duration, pred: impl Fn(&Value) -> bool) {
        std::thread::sleep(period);
        let (lock, _) = &*self.shared;
        let s = relock(lock);
        let found: Vec<Value> = s.events.iter().filter(|e| pred(e)).cloned().collect();
        assert!(
            found.is_empty(),
            "expected no event for {what}, got:\n{}",
            pretty(&found)
        );
    }

    /// Waits up to `timeout` for a stderr line matching `pred` and returns it; panics with the
    /// whole stderr when none comes.
    #[track_caller]
    pub fn wait_stderr(
        &self,
        what: &str,
        timeout: Duration,
        pred: impl Fn(&str) -> bool,
    ) -> String {
        let timeout = expect_within(timeout);
        let deadline = Instant::now() + timeout;
        let (lock, cvar) = &*self.shared;
        let mut s = relock(lock);
        loop {
            if let Some(line) = s.stderr.lines().find(|line| pred(line)) {
                return line.to_owned();
            }
            let now = Instant::now();
            if now >= deadline || s.stderr_done {
                panic!(
                    "expected a stderr line for {what} within {timeout:?}; stderr:\n{}",
                    s.stderr
                );
            }
            s = cvar
                .wait_timeout(s, deadline - now)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
    }

    /// Every event received so far.
    pub fn events(&self) -> Vec<Value> {
        relock(&self.shared.0).events.clone()
    }

    /// Stops the tracer with SIGINT and checks how it ended: exit 0, only JSON on stdout, and a
    /// summary line `routeguard: <E> events, 0 lost` whose count matches the events printed.
    /// Returns the events and the whole stderr.
    #[track_caller]
    pub fn stop(self) -> (Vec<Value>, String) {
        self.stop_with(libc::SIGINT)
    }

    /// Like [`Tracer::stop`], with signal `sig` (SIGINT or SIGTERM).
    #[track_caller]
    pub fn stop_with(self, sig: libc::c_int) -> (Vec<Value>, String) {
        kill(self.child.id(), sig);
        // Under the VM's emulation, detaching ~20 fentry/fexit trampolines (an RCU-tasks grace
        // period each) takes tens of seconds; natively well under one.
        let timeout = if vm_kernel().is_some() {
            Duration::from_secs(90)
        } else {
            Duration::from_secs(10)
        };
        self.wait_exit(&format!("signal {sig}"), timeout)
    }

    /// Waits up to `timeout` for the tracer to exit by itself (`--count`, `--duration`), then
    /// checks how it ended like [`Tracer::stop`].
    #[track_caller]
    pub fn wait_exit(self, why: &str, timeout: Duration) -> (Vec<Value>, String) {
        let (s, (printed, lost)) = self.exited(why, timeout);
        assert_eq!(lost, 0, "routeguard lost events; stderr:\n{}", s.stderr);
        assert_eq!(
            printed,
            s.events.len() as u64,
            "summary count differs from the JSON lines printed; stderr:\n{}",
            s.stderr
        );
        (s.events, s.stderr)
    }

    /// Stops the tracer with SIGINT, checks it exited 0 with only JSON on stdout, and returns
    /// the events, the whole stderr and its summary `(events, lost)`, whatever was lost (for
    /// the tests that make it lose).
    #[track_caller]
    pub fn stop_lossy(self) -> (Vec<Value>, String, (u64, u64)) {
        kill(self.child.id(), libc::SIGINT);
        let timeout = if vm_kernel().is_some() {
            Duration::from_secs(90)
        } else {
            Duration::from_secs(30)
        };
        let (s, summary) = self.exited("SIGINT", timeout);
        (s.events, s.stderr, summary)
    }

    /// Waits up to `timeout` for the tracer to exit (killing it and failing past that), then
    /// checks it exited 0 with only JSON on stdout and a summary line; returns what it printed
    /// and that summary `(events, lost)`.
    #[track_caller]
    fn exited(mut self, why: &str, timeout: Duration) -> (Shared, (u64, u64)) {
        let pid = self.child.id();
        let Some(status) = wait_timeout(&mut self.child, timeout) else {
            kill(pid, libc::SIGKILL);
            let _ = self.child.wait();
            panic!(
                "routeguard (pid {pid}) did not exit within {timeout:?} of {why}; stderr:\n{}",
                relock(&self.shared.0).stderr
            );
        };
        for r in self.readers.drain(..) {
            let _ = r.join();
        }
        let s = std::mem::take(&mut *relock(&self.shared.0));
        assert!(
            status.success(),
            "routeguard exited with {status} after {why} (expected 0); stderr:\n{}",
            s.stderr
        );
        assert!(
            s.garbage.is_empty(),
            "routeguard --json printed non-JSON lines on stdout: {:?}",
            s.garbage
        );
        let summary = parse_summary(&s.stderr).unwrap_or_else(|| {
            panic!(
                "no `routeguard: <E> events, <L> lost` summary on stderr:\n{}",
                s.stderr
            )
        });
        (s, summary)
    }
}

impl Drop for Tracer {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            kill(self.child.id(), libc::SIGKILL);
            let _ = self.child.wait();
        }
    }
}

/// Locks the tracer's shared state. A test that panics while holding the lock poisons it; the
/// state stays valid, and the reader threads and the guard's Drop must still get in.
fn relock(lock: &Mutex<Shared>) -> MutexGuard<'_, Shared> {
    lock.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Which of routeguard's output streams a reader thread reads.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Stream {
    Stdout,
    Stderr,
}

fn spawn_line_reader<R: std::io::Read + Send + 'static>(
    r: R,
    stream: Stream,
    shared: Arc<(Mutex<Shared>, Condvar)>,
) -> JoinHandle<()> {
    std::thread::spawn(move || {
        let (lock, cvar) = &*shared;
        for line in BufReader::new(r).lines() {
            let Ok(line) = line else { break };
            let mut s = relock(lock);
            match stream {
                Stream::Stdout => match serde_json::from_str::<Value>(&line) {
                    Ok(v) if v.is_object() => s.events.push(v),
                    _ => s.garbage.push(line),
                },
                Stream::Stderr => {
                    s.stderr.push_str(&line);
                    s.stderr.push('\n');
                }
            }
            cvar.notify_all();
        }
        let mut s = relock(lock);
        match stream {
            Stream::Stdout => s.stdout_done = true,
            Stream::Stderr => s.stderr_done = true,
        }
        cvar.notify_all();
    })
}

/// Parses `routeguard: <E> events, <L> lost` out of stderr.
pub fn parse_summary(stderr: &str) -> Option<(u64, u64)> {
    stderr.lines().rev().find_map(|line| {
        let rest = &line[line.find("routeguard: ")? + "routeguard: ".len()..];
        let (events, rest) = rest.split_once(" events, ")?;
        let lost = rest.strip_suffix(" lost").unwrap_or(rest).trim();
        Some((events.trim().parse().ok()?, lost.parse().ok()?))
    })
}

fn pretty(events: &[Value]) -> String {
    events
        .iter()
        .map(|e| e.to_string())
        .collect::<Vec<_>>()
        .join("\n")
}

// ---------------------------------------------------------------------------------------------
// Assertions on events
// ---------------------------------------------------------------------------------------------

/// Checks each `(JSON pointer, expected value)` pair against `event` and panics listing every
/// mismatch together with the whole event.
#[track_caller]
pub fn assert_fields(event: &Value, expected: &[(&str, Value)]) {
    let mismatches: Vec<String> = expected
        .iter()
        .filter_map(|(ptr, want)| {
            let got = event.pointer(ptr).unwrap_or(&Value::Null);
            (got != want).then(|| format!("  {ptr}: expected {want}, got {got}"))
        })
        .collect();
    assert!(
        mismatches.is_empty(),
        "event fields differ:\n{}\nevent: {event:#}",
        mismatches.join("\n")
    );
}

/// The value at JSON pointer `ptr`, or null.
pub fn at<'a>(event: &'a Value, ptr: &str) -> &'a Value {
    event.pointer(ptr).unwrap_or(&Value::Null)
}

/// True when `event`'s actor is the process `pid`.
pub fn by_pid(event: &Value, pid: u32) -> bool {
    at(event, "/actor/pid") == pid
}

// ---------------------------------------------------------------------------------------------
// Helpers for other clients
// ---------------------------------------------------------------------------------------------

/// Absolute path of a helper script under `tests/clients/`.
pub fn client_script(name: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("clients")
        .join(name)
        .to_string_lossy()
        .into_owned()
}

/// The real python3 interpreter (not a pyenv shim, which would add processes in between), checked
/// to import pyroute2.
pub fn python3_with_pyroute2() -> String {
    let ran =
        run(Command::new("python3").args(["-c", "import sys, pyroute2; print(sys.executable)"]));
    assert!(
        ran.status.success(),
        "python3 cannot import pyroute2 ({}): run `cargo xtask setup`",
        ran.stderr.trim()
    );
    ran.stdout.trim().to_owned()
}

/// The real python3 interpreter (see [`python3_with_pyroute2`]), without requiring pyroute2.
pub fn python3() -> String {
    let ran = run(Command::new("python3").args(["-c", "import sys; print(sys.executable)"]))
        .ok("python3");
    ran.stdout.trim().to_owned()
}

// ---------------------------------------------------------------------------------------------
// cgroup v2
// ---------------------------------------------------------------------------------------------

/// Where cgroup v2 is mounted (`/sys/fs/cgroup` on unified hosts, `/sys/fs/cgroup/unified` on
/// hybrid ones), from /proc/self/mountinfo.
pub fn cgroup2_mount() -> Option<PathBuf> {
    let info = fs::read_to_string("/proc/self/mountinfo").ok()?;
    info.lines().find_map(|line| {
        let (left, right) = line.split_once(" - ")?;
        let mount_point = left.split_whitespace().nth(4)?;
        (right.split_whitespace().next()? == "cgroup2").then(|| PathBuf::from(mount_point))
    })
}

/// A process without CAP_NET_ADMIN (uid 65534) in `cgroup`, sending 16 KiB batches of
/// RTM_DELRULE in `ns` for `seconds` as fast as it can, each refused with EPERM
/// (`clients/flood_rule_del.py`); it prints "<pid> <sends> <messages> <seconds>" when done.
pub fn refused_flooder(ns: &Netns, cgroup: &Cgroup, seconds: &str) -> Child {
    let line = format!(
        "echo $$ > {}/cgroup.procs && exec ip netns exec {} setpriv --reuid 65534 --regid 65534 \
         --clear-groups {} {} {seconds}",
        cgroup.path.display(),
        ns.name(),
        // The real interpreter, readable by uid 65534 (pyenv's lives under /root).
        "/usr/bin/python3",
        client_script("flood_rule_del.py"),
    );
    Command::new("sh")
        .args(["-c", &line])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn the flooder")
}

/// A cgroup v2 directory that is removed on drop (once the processes put in it have exited).
pub struct Cgroup {
    pub path: PathBuf,
}

impl Cgroup {
    /// Creates `<cgroup2 mount>/<name>`; `None` (with a printed reason) when there is no cgroup2.
    pub fn create(name: &str) -> Option<Self> {
        let Some(mount) = cgroup2_mount() else {
            eprintln!("SKIP: no cgroup2 mount in /proc/self/mountinfo");
            return None;
        };
        let path = mount.join(name);
        fs::create_dir(&path).unwrap_or_else(|e| panic!("mkdir {}: {e}", path.display()));
        Some(Cgroup { path })
    }
}

impl Drop for Cgroup {
    fn drop(&mut self) {
        // rmdir fails with EBUSY while a process is still inside; give exited processes a moment
        // to leave.
        for _ in 0..50 {
            if fs::remove_dir(&self.path).is_ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        eprintln!("warning: could not remove cgroup {}", self.path.display());
    }
}

/// Fields every syscall-captured event by process `pid` (`comm`) in `ns` must carry.
pub fn actor_fields(ns: &Netns, pid: u32, comm: &str) -> Vec<(&'static str, Value)> {
    vec![
        ("/schema_version", json!(1)),
        ("/capture", json!(removal_capture())),
        ("/netns/name", json!(ns.name())),
        ("/netns/inode", json!(ns.inode())),
        ("/actor/pid", json!(pid)),
        ("/actor/comm", json!(comm)),
        ("/actor/uid", json!(0)),
    ]
}

/// The `capture` of events: the path routeguard runs here with the tests' `--capture` (as
/// `routeguard doctor` reports it). On the kernel-function path, requests the kernel never acts
/// on as a deletion (link and address requests, refusals, replaces) are heard by its own request
/// hooks, so they say `kernel-function` too.
pub fn removal_capture() -> &'static str {
    static CAPTURE: OnceLock<&'static str> = OnceLock::new();
    CAPTURE.get_or_init(|| {
        let mode = capture_mode().unwrap_or_else(|| "auto".into());
        let ran =
            run(Command::new(routeguard_bin()).args(["doctor", "--json", "--capture", &mode]));
        let report: Value = serde_json::from_str(&ran.stdout)
            .unwrap_or_else(|e| panic!("routeguard doctor --json: {e}: {}", ran.stdout));
        match report["capture"].as_str() {
            Some("kernel-function") => "kernel-function",
            _ => "syscall",
        }
    })
}

/// `fields` for an event of a routeguard that runs the syscall path whatever the tests'
/// `--capture` (protections, pinning): `capture` is `syscall`.
pub fn from_syscall(mut fields: Vec<(&'static str, Value)>) -> Vec<(&'static str, Value)> {
    for (key, value) in &mut fields {
        if *key == "/capture" {
            *value = json!("syscall");
        }
    }
    fields
}

/// Fields of an `ip -n NS ARGS...` process this test spawned directly, sending netlink requests
/// with sendmsg() and asking for acks (as iproute2's `rtnl_talk` does).
pub fn ip_actor_fields(ns: &Netns, pid: u32, args: &[&str]) -> Vec<(&'static str, Value)> {
    let mut argv = vec!["ip", "-n", ns.name()];
    argv.extend_from_slice(args);
    let mut fields = actor_fields(ns, pid, "ip");
    fields.extend([
        ("/actor/ppid", json!(std::process::id())),
        ("/actor/argv", json!(argv)),
        ("/request/syscall", json!("sendmsg")),
        ("/request/ack_requested", json!(true)),
    ]);
    fields
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_line_is_parsed() {
        let stderr = "routeguard: tracing started\nsomething\nrouteguard: 12 events, 3 lost\n";
        assert_eq!(parse_summary(stderr), Some((12, 3)));
        assert_eq!(parse_summary("routeguard: tracing started\n"), None);
    }

    #[test]
    fn field_mismatches_are_all_reported() {
        let ev = json!({"kind": "route", "route": {"table": 77}});
        assert_fields(
            &ev,
            &[("/kind", json!("route")), ("/route/table", json!(77))],
        );
        let err = std::panic::catch_unwind(|| {
            assert_fields(
                &ev,
                &[
                    ("/kind", json!("rule")),
                    ("/route/dst", json!("10.0.0.0/8")),
                ],
            )
        })
        .expect_err("mismatch must panic");
        let msg = err.downcast_ref::<String>().expect("formatted panic");
        assert!(
            msg.contains("/kind: expected \"rule\", got \"route\""),
            "{msg}"
        );
        assert!(
            msg.contains("/route/dst: expected \"10.0.0.0/8\", got null"),
            "{msg}"
        );
    }
}
