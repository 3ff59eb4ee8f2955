//! The systemd unit exactly as `packaging/routeguard.service` ships it, under systemd as PID 1:
//! `routeguard install --systemd` writes it, systemd starts it (`Type=notify`: the start
//! completes at READY=1), and inside its sandbox the daemon records a removal with its actor,
//! its netlink mirror sees what the kernel flushed without a notification, and a protected rule
//! is put back. The mirror and every restore enter network namespaces with setns(2), which
//! `RestrictNamespaces=yes` forbade: under that unit the daemon started, but mirrored nothing
//! and skipped every restore. Last, `systemctl stop` ends it with no failure.
//!
//! It runs in `cargo xtask vm-unit`'s QEMU guest (a Debian with systemd as init, thrown away
//! after the run), which runs it with `--ignored`; elsewhere it is ignored, saying why: it
//! installs and starts routeguard.service on the machine it runs on.

use std::{
    fs,
    io::{Read as _, Write as _},
    net::{Ipv4Addr, TcpStream},
    path::Path,
    process::Command,
    time::{Duration, Instant},
};

use routeguard::store::read_events;
use routeguard_tests::*;

const UNIT: &str = "routeguard.service";
const UNIT_FILE: &str = "/etc/systemd/system/routeguard.service";
/// Where `install --systemd` writes the default config, and the shipped config's store, pins
/// and metrics address.
const CONFIG: &str = "/etc/routeguard/routeguard.toml";
const STORE: &str = "/var/lib/routeguard/events.db";
const PIN_DIR: &str = "/sys/fs/bpf/routeguard";
const METRICS_PORT: u16 = 9477;

#[test]
#[ignore = "installs and starts routeguard.service on this machine: `cargo xtask vm-unit` runs it \
            in a throw-away QEMU guest with systemd as PID 1"]
fn the_shipped_unit_records_mirrors_and_restores_under_systemd() {
    require_root();
    assert!(
        vm_kernel().is_some(),
        "refusing to run outside `cargo xtask vm-unit`'s guest ($ROUTEGUARD_VM is unset): this \
         test installs routeguard.service into this machine's /etc"
    );
    let init = fs::read_to_string("/proc/1/comm").unwrap_or_default();
    assert_eq!(init.trim(), "systemd", "PID 1 must be systemd");

    install_as_shipped();
    let shipped_config = fs::read_to_string(CONFIG).unwrap();
    // The namespace the policy names exists before the daemon reads the config (names are
    // resolved when it loads).
    let ns = Netns::new();
    ns.add_test_link("d0");
    ns.ip_ok(&argv("rule add prio 100 lookup 77"));
    for dst in ["10.77.1.0/24", "10.77.2.0/24", "10.77.3.0/24"] {
        ns.ip_ok(&["route", "add", dst, "via", "10.99.0.2", "table", "77"]);
    }
    append_config(&format!(
        "\n[[protect]]\nname = \"t77\"\nkind = \"rule\"\ntable = 77\nnetns = \"{}\"\n",
        ns.name()
    ));
    systemctl_ok(&["daemon-reload"]);
    // For the record (the score is not a pass mark: a root daemon with CAP_SYS_ADMIN scores
    // what it scores).
    let security = command("systemd-analyze", &["security", "--no-pager", UNIT]);
    let overall = security.stdout.lines().last().unwrap_or_default();
    eprintln!("systemd-analyze security {UNIT}: {overall}");

    // 1. The shipped config and a protected rule: the daemon takes the syscall path (restores
    // need its mirror) and pins its capture in bpffs.
    let first = start();
    let started = wait_journal("routeguard: daemon started");
    eprintln!("{started}");
    assert!(
        started.contains("capture=syscall") && started.contains(&format!("pinned in {PIN_DIR}")),
        "{started}"
    );
    assert_eq!(pin_sets().len(), 1, "one pinned capture in {PIN_DIR}");

    // (a) The removal, with its actor as systemd placed it, and (c) its restore. The rule's
    // table is not in `ip rule del prio 100`: it is the kernel's view of the rule, which the
    // mirror's socket in the namespace hears.
    let pid = ns.ip_ok(&argv("rule del prio 100"));
    let removal = wait_row("the removal of rule 100", |e| {
        by_pid(e, pid) && e["event"] == "removal"
    });
    assert_fields(
        &removal,
        &[
            ("/kind", json!("rule")),
            ("/cause", json!("request")),
            ("/outcome", json!("removed")),
            ("/request/op", json!("RTM_DELRULE")),
            ("/actor/pid", json!(pid)),
            ("/actor/comm", json!("ip")),
            ("/actor/unit", json!(own_unit())),
            ("/netns/name", json!(ns.name())),
            ("/rule/priority", json!(100)),
            ("/rule/table", json!(77)),
        ],
    );
    let restore = wait_row("the restore of rule 100", |e| {
        by_pid(e, pid) && e["event"] == "restore"
    });
    assert_fields(
        &restore,
        &[
            ("/restore/policy", json!("t77")),
            ("/restore/outcome", json!("restored")),
        ],
    );
    let rules = ns.ip(&argv("rule show")).ok("ip rule show").stdout;
    assert!(
        rules
            .lines()
            .any(|l| l.starts_with("100:") && l.ends_with("lookup 77")),
        "rule 100 is back: {rules}"
    );
    // The journald sink, through the unit's AF_UNIX and a read-only /run.
    let entry = journal_entry("ROUTEGUARD_ACTOR_PID", &pid.to_string());
    assert_eq!(entry["ROUTEGUARD_TABLE"], json!("77"), "{entry:#}");
    // Metrics over AF_INET.
    let health = http_get("/healthz");
    assert!(health.starts_with("HTTP/1.1 200 OK"), "{health}");

    // (b) A link-down flushes the three IPv4 routes through d0 and announces none of it: on
    // this path only the mirror sees them go.
    let down = ns.ip_ok(&argv("link set d0 down"));
    let deadline = Instant::now() + expect_within(EVENT_TIMEOUT);
    let flushed = loop {
        let rows: Vec<_> = rows()
            .into_iter()
            .filter(|e| by_pid(e, down) && at(e, "/route/table") == 77)
            .collect();
        if rows.len() >= 3 || Instant::now() > deadline {
            break rows;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let mut dsts: Vec<&str> = flushed
        .iter()
        .map(|e| at(e, "/route/dst").as_str().unwrap_or_default())
        .collect();
    dsts.sort_unstable();
    assert_eq!(
        dsts,
        ["10.77.1.0/24", "10.77.2.0/24", "10.77.3.0/24"],
        "the mirror reports every route the link-down flushed; journal:\n{}",
        journal()
    );
    for e in &flushed {
        assert_fields(
            e,
            &[
                ("/cause", json!("link-down")),
                ("/outcome", json!("removed")),
                ("/actor/comm", json!("ip")),
                ("/netns/name", json!(ns.name())),
            ],
        );
    }

    // A namespace made while the daemon runs: `ip netns add` mounts it under /run/netns in the
    // host's mount namespace, and the daemon, in the unit's own, still names it.
    let late = Netns::new();
    late.ip_ok(&argv("rule add prio 200 lookup 78"));
    let late_pid = late.ip_ok(&argv("rule del prio 200"));
    let row = wait_row("the removal in the namespace made later", |e| {
        by_pid(e, late_pid)
    });
    assert_fields(
        &row,
        &[
            ("/kind", json!("rule")),
            ("/rule/priority", json!(200)),
            ("/netns/name", json!(late.name())),
        ],
    );
    drop(late);

    // ExecReload (SIGHUP through /bin/kill, inside the sandbox).
    systemctl_ok(&["reload", UNIT]);
    wait_journal("config reloaded from /etc/routeguard/routeguard.toml");
    assert_eq!(show("ActiveState"), "active");

    // 2. The config exactly as installed (capture `auto`): the kernel-function path on Debian's
    // kernels, whose mirror still names a removed rule's table.
    fs::write(CONFIG, &shipped_config).unwrap();
    systemctl_ok(&["restart", "--no-block", UNIT]);
    wait_active(Some(first));
    let started = wait_journal("capture=kernel-function");
    eprintln!("{started}");
    ns.ip_ok(&argv("rule add prio 300 lookup 79"));
    let pid = ns.ip_ok(&argv("rule del prio 300"));
    let removal = wait_row("the removal of rule 300", |e| by_pid(e, pid));
    assert_fields(
        &removal,
        &[
            ("/capture", json!("kernel-function")),
            ("/kind", json!("rule")),
            ("/outcome", json!("removed")),
            ("/actor/comm", json!("ip")),
            ("/netns/name", json!(ns.name())),
            ("/rule/priority", json!(300)),
            ("/rule/table", json!(79)),
        ],
    );

    // 3. A clean stop: the daemon drains and exits 0; systemd records no failure.
    systemctl_ok(&["stop", UNIT]);
    for (property, want) in [
        ("ActiveState", "inactive"),
        ("Result", "success"),
        ("ExecMainStatus", "0"),
        ("NRestarts", "0"),
    ] {
        assert_eq!(
            show(property),
            want,
            "{property} after stop; journal:\n{}",
            journal()
        );
    }
    let journal = journal();
    assert!(journal.contains("routeguard: daemon stopped"), "{journal}");
    for problem in ["cannot mirror", "cannot re-dump", "Operation not permitted"] {
        assert!(
            !journal.contains(problem),
            "the daemon logged `{problem}` under the unit:\n{journal}"
        );
    }
}

/// `routeguard install --systemd`, and the unit it wrote is the committed one with only
/// `ExecStart` pointing at this binary.
fn install_as_shipped() {
    let bin = routeguard_bin();
    run(Command::new(&bin).args(["install", "--systemd"])).ok("routeguard install --systemd");
    let shipped = Path::new(env!("CARGO_MANIFEST_DIR")).join("../packaging/routeguard.service");
    let shipped = fs::read_to_string(&shipped)
        .unwrap_or_else(|e| panic!("reading {}: {e}", shipped.display()));
    let installed = fs::read_to_string(UNIT_FILE).unwrap();
    let want = shipped.replace(
        "ExecStart=/usr/local/bin/routeguard daemon",
        &format!("ExecStart={} daemon", bin.display()),
    );
    assert_eq!(
        installed,
        want,
        "the installed unit is packaging/routeguard.service with ExecStart pointing at {} \
         (rebuild the binary after editing the unit: it embeds it)",
        bin.display()
    );
    // systemd parses every directive (a misspelt one would be ignored with a warning).
    let verify = command("systemd-analyze", &["verify", "--man=no", UNIT_FILE]);
    let output = format!("{}{}", verify.stdout, verify.stderr);
    assert!(
        verify.status.success() && !output.contains(UNIT),
        "systemd-analyze verify {UNIT_FILE}: {output}"
    );
}

/// The pinned capture sets (`v<tag>` directories) in the shipped pin directory, as the host
/// (outside the unit's mount namespace) sees it.
fn pin_sets() -> Vec<String> {
    fs::read_dir(PIN_DIR)
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

fn append_config(text: &str) {
    let mut file = fs::OpenOptions::new().append(true).open(CONFIG).unwrap();
    file.write_all(text.as_bytes()).unwrap();
}

/// The unit systemd runs this test in (the last part of its cgroup path), which the `ip`
/// processes it spawns are attributed to.
fn own_unit() -> String {
    let cgroup = fs::read_to_string("/proc/self/cgroup").unwrap();
    let path = cgroup
        .lines()
        .find_map(|l| l.strip_prefix("0::"))
        .expect("a cgroup2 line in /proc/self/cgroup");
    path.rsplit('/').next().unwrap_or_default().to_owned()
}

fn command(program: &str, args: &[&str]) -> Ran {
    run(Command::new(program).args(args))
}

#[track_caller]
fn systemctl_ok(args: &[&str]) {
    let ran = command("systemctl", args);
    assert!(
        ran.status.success(),
        "systemctl {} failed ({}): {}{}\njournal:\n{}",
        args.join(" "),
        ran.status,
        ran.stdout,
        ran.stderr,
        journal()
    );
}

fn show(property: &str) -> String {
    command(
        "systemctl",
        &["show", UNIT, "--property", property, "--value"],
    )
    .stdout
    .trim()
    .to_owned()
}

/// `systemctl start`, without blocking (the daemon's start may outlast `run`'s limit under
/// TCG); returns the daemon's pid once systemd says the unit is active, i.e. READY=1 came.
fn start() -> u32 {
    systemctl_ok(&["start", "--no-block", UNIT]);
    wait_active(None)
}

/// Waits until the unit is active with a main pid other than `not`; panics with the journal
/// when it fails or takes longer than a daemon may take to start.
fn wait_active(not: Option<u32>) -> u32 {
    let deadline = Instant::now() + attach_timeout();
    loop {
        let state = show("ActiveState");
        let pid: u32 = show("MainPID").parse().unwrap_or(0);
        if state == "active" && pid != 0 && Some(pid) != not {
            return pid;
        }
        assert!(
            state != "failed" && Instant::now() < deadline,
            "{UNIT} is {state} ({}), not active, after {:?}; journal:\n{}",
            show("Result"),
            attach_timeout(),
            journal()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// The unit's journal of this boot, messages only.
fn journal() -> String {
    command(
        "journalctl",
        &["--boot", "--unit", UNIT, "--no-pager", "--output", "cat"],
    )
    .stdout
}

/// The last journal line of the unit containing `needle`, waiting for it.
#[track_caller]
fn wait_journal(needle: &str) -> String {
    let deadline = Instant::now() + expect_within(EVENT_TIMEOUT);
    loop {
        let journal = journal();
        if let Some(line) = journal.lines().rev().find(|l| l.contains(needle)) {
            return line.to_owned();
        }
        assert!(
            Instant::now() < deadline,
            "no `{needle}` in the journal of {UNIT}:\n{journal}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// The journal entry (all fields) with `field=value`, waiting for it.
fn journal_entry(field: &str, value: &str) -> Value {
    let deadline = Instant::now() + expect_within(EVENT_TIMEOUT);
    loop {
        let out = command(
            "journalctl",
            &[
                "--boot",
                "--no-pager",
                "--output",
                "json",
                &format!("{field}={value}"),
            ],
        );
        if let Some(entry) = out
            .stdout
            .lines()
            .rev()
            .find_map(|l| serde_json::from_str::<Value>(l).ok())
        {
            return entry;
        }
        assert!(
            Instant::now() < deadline,
            "no journal entry with {field}={value}; the unit's journal:\n{}",
            journal()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn rows() -> Vec<Value> {
    if !Path::new(STORE).exists() {
        return Vec::new();
    }
    read_events(Path::new(STORE), None, None).expect("read the daemon's store")
}

/// The first stored event matching `pred`, waiting for it to be written.
#[track_caller]
fn wait_row(what: &str, pred: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + expect_within(EVENT_TIMEOUT);
    loop {
        if let Some(row) = rows().into_iter().find(|e| pred(e)) {
            return row;
        }
        assert!(
            Instant::now() < deadline,
            "no stored event: {what}; journal:\n{}",
            journal()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn http_get(path: &str) -> String {
    let mut s = TcpStream::connect((Ipv4Addr::LOCALHOST, METRICS_PORT)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(s, "GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n").unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).expect("read the response");
    out
}
