//! `routeguard report` end to end: events captured by the real tracer in a netns (one of them
//! from a process whose comm and argv carry `<script>`, `</svg>`, `|` and a terminal escape),
//! turned into HTML, Markdown and JSON, checked for content and for escaping, and the HTML
//! rendered by headless Chromium (DOM and a screenshot under target/). A capture with a protect
//! policy (real restores, and a suspension by the flap guard) checks the restore content.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use routeguard_tests::*;

const CHROMIUM: &str = "/usr/bin/chromium";
const HOSTILE_ARGS: [&str; 4] = [
    "<script>alert(1)</script>",
    "</svg><b>x</b>",
    "a|b|c",
    "\x1b]0;pwned\x07\x1b[2J",
];

/// A temporary directory removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> Self {
        let p = std::env::temp_dir().join(format!("rg-report-{tag}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&p);
        fs::create_dir_all(&p).unwrap_or_else(|e| panic!("mkdir {}: {e}", p.display()));
        TempDir(p)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

struct Capture {
    jsonl: PathBuf,
    ip_pid: u32,
    hostile_pid: u32,
    ns_name: String,
}

/// Captures three removals in a fresh netns: `ip rule del prio 100`, `ip route del … table 77`
/// and the hostile client deleting rule 101; saves the JSON lines in `dir`.
fn capture(dir: &Path) -> Capture {
    let python = python3();
    let ns = Netns::new();
    ns.add_test_link("rg0");
    ns.ip_ok(&["rule", "add", "prio", "100", "lookup", "77"]);
    ns.ip_ok(&["rule", "add", "prio", "101", "lookup", "77"]);
    ns.ip_ok(&argv("route add 10.77.1.0/24 via 10.99.0.2 table 77"));
    let tracer = Tracer::start(&ns, &[]);
    let ip_pid = ns.ip_ok(&["rule", "del", "prio", "100"]);
    let route_pid = ns.ip_ok(&["route", "del", "10.77.1.0/24", "table", "77"]);
    let mut args = vec![client_script("report_hostile_rule_del.py"), "101".into()];
    args.extend(HOSTILE_ARGS.map(String::from));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let ran = ns.exec(&python, &args).ok("report_hostile_rule_del.py");
    assert_eq!(ran.stdout.trim(), format!("{} 0", ran.pid), "kernel acked");
    for pid in [ip_pid, route_pid, ran.pid] {
        tracer.wait_for("removal", EVENT_TIMEOUT, |e| by_pid(e, pid));
    }
    let (events, _) = tracer.stop();
    let hostile = events
        .iter()
        .find(|e| by_pid(e, ran.pid))
        .expect("hostile event");
    assert_eq!(
        at(hostile, "/actor/comm"),
        "<script>|\x1b[2J",
        "prctl comm reached the event"
    );
    let jsonl = dir.join("capture.jsonl");
    let text: String = events.iter().map(|e| format!("{e}\n")).collect();
    fs::write(&jsonl, text).expect("write capture");
    Capture {
        jsonl,
        ip_pid,
        hostile_pid: ran.pid,
        ns_name: ns.name().to_string(),
    }
}

fn report(args: &[&str]) -> Ran {
    run(Command::new(routeguard_bin()).arg("report").args(args))
}

fn report_ok(input: &Path, format: &str, out: &Path) -> String {
    report(&[
        "--input",
        input.to_str().unwrap(),
        "--format",
        format,
        "--out",
        out.to_str().unwrap(),
    ])
    .ok("routeguard report");
    fs::read_to_string(out).unwrap_or_else(|e| panic!("read {}: {e}", out.display()))
}

#[test]
fn report_from_a_real_capture_in_every_format() {
    require_root();
    let dir = TempDir::new("formats");
    let cap = capture(&dir.0);

    // JSON: content and round trip of the hostile strings.
    let json = report_ok(&cap.jsonl, "json", &dir.0.join("r.json"));
    let v: Value = serde_json::from_str(&json).expect("report JSON parses");
    assert_eq!(v["report_schema_version"], 1);
    assert_eq!(v["headline"]["events"], 3);
    assert_eq!(v["headline"]["outcomes"]["removed"], 3);
    assert_eq!(v["headline"]["by_kind"]["rule"], 2);
    assert_eq!(v["headline"]["by_kind"]["route"], 1);
    assert_eq!(v["headline"]["incidents"], 1, "three removals within 5 s");
    let objects: Vec<&str> = v["objects"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["object"].as_str().unwrap())
        .collect();
    // Objects as the kernel described removing them (the table and gateway the requests left
    // out): on the syscall path its notification, which names the device by index (`oif N`,
    // which depends on the test link this kernel offers); on the kernel-function path its own
    // record, which has the device's name (`dev rg0 proto boot …`).
    for want in [
        "rule prio 100 lookup 77",
        "route table 77 10.77.1.0/24 via 10.99.0.2 ",
        "rule prio 101 lookup 77",
    ] {
        let found = objects
            .iter()
            .any(|o| *o == want || (want.ends_with(' ') && o.starts_with(want)));
        assert!(found, "{want} in {objects:?}");
    }
    let actors = v["actors"].as_array().unwrap();
    let ip = actors
        .iter()
        .find(|a| a["actor"]["pid"] == cap.ip_pid)
        .expect("ip actor");
    assert_eq!(ip["actor"]["comm"], "ip");
    assert!(ip["description"]
        .as_str()
        .unwrap()
        .starts_with(&format!("ip[{}]", cap.ip_pid)));
    let hostile = actors
        .iter()
        .find(|a| a["actor"]["pid"] == cap.hostile_pid)
        .expect("hostile actor");
    assert_eq!(hostile["actor"]["comm"], "<script>|\x1b[2J");
    for arg in HOSTILE_ARGS {
        assert!(
            hostile["actor"]["argv"]
                .as_array()
                .unwrap()
                .iter()
                .any(|a| a == arg),
            "argv keeps {arg:?}"
        );
    }
    assert!(json.contains(&cap.ns_name));

    // HTML: no injected element; the literal markup only appears escaped.
    let html = report_ok(&cap.jsonl, "html", &dir.0.join("r.html"));
    assert!(!html.contains("<script"), "unescaped <script> in HTML");
    assert!(!html.contains("<b>x</b>"));
    assert!(!html.contains('\x1b') && !html.contains('\x07'));
    assert!(
        html.contains("&lt;script&gt;|\\x1b[2J"),
        "escaped comm shown"
    );
    assert_eq!(html.matches("<svg").count(), 1);
    assert_eq!(html.matches("</svg>").count(), 1);
    assert!(html.contains(&format!("ip[{}]", cap.ip_pid)));
    assert!(html.contains("route table 77 10.77.1.0/24"));

    // Markdown: no raw HTML, tables keep their shape.
    let md = report_ok(&cap.jsonl, "md", &dir.0.join("r.md"));
    assert!(!md.contains('\x1b'));
    assert!(
        !md.replace("\\<", "").contains('<'),
        "unescaped < in Markdown"
    );
    let mut expected = None;
    for line in md.lines() {
        if line.starts_with('|') {
            let n = cells(line);
            assert_eq!(n, *expected.get_or_insert(n), "bad row: {line}");
        } else {
            expected = None;
        }
    }
    assert!(
        md.contains("\\<script\\>\\|\\\\x1b\\[2J"),
        "escaped comm in Markdown"
    );
}

fn cells(line: &str) -> usize {
    let mut n = 0usize;
    let mut backslashes = 0;
    for c in line.chars() {
        if c == '|' && backslashes % 2 == 0 {
            n += 1;
        }
        backslashes = if c == '\\' { backslashes + 1 } else { 0 };
    }
    n.saturating_sub(1)
}

/// Protected rules removed by `ip` and restored by the tracer, one of them again and again until
/// the flap guard suspends its restores, and an unprotected route removed: saved as JSON lines.
struct Protected {
    jsonl: PathBuf,
    /// The `ip` that removed prio 100 the last time (the culprit of the suspension).
    culprit: u32,
}

fn protected_capture(dir: &Path) -> Protected {
    let ns = Netns::new();
    ns.add_test_link("rg0");
    ns.ip_ok(&["rule", "add", "prio", "100", "lookup", "77"]);
    ns.ip_ok(&["rule", "add", "prio", "101", "lookup", "77"]);
    ns.ip_ok(&argv("route add 10.78.1.0/24 via 10.99.0.2 table 78"));
    // The flap guard set low: the second restore waits 100 ms, the third removal is suspended.
    let config = dir.join("flap.toml");
    fs::write(
        &config,
        "[restore]\nmax_attempts = 2\nwindow = \"60s\"\nbackoff = \"100ms\"\n",
    )
    .expect("write config");
    let tracer = Tracer::start(
        &ns,
        &[
            "--protect",
            "kind=rule table=77",
            "--config",
            config.to_str().unwrap(),
        ],
    );
    let restored = |pid: u32| {
        move |e: &Value| {
            by_pid(e, pid) && e["event"] == "restore" && e["restore"]["outcome"] == "restored"
        }
    };
    let p101 = ns.ip_ok(&["rule", "del", "prio", "101"]);
    tracer.wait_for("prio 101 restored", EVENT_TIMEOUT, restored(p101));
    let mut culprit = 0;
    for n in 1..=3 {
        let deadline = std::time::Instant::now() + expect_within(EVENT_TIMEOUT);
        while !ns
            .ip(&["rule", "show"])
            .ok("ip rule show")
            .stdout
            .contains("100:")
        {
            assert!(
                std::time::Instant::now() < deadline,
                "prio 100 not back before removal {n}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        culprit = ns.ip_ok(&["rule", "del", "prio", "100"]);
        if n < 3 {
            tracer.wait_for("prio 100 restored", EVENT_TIMEOUT, restored(culprit));
        }
    }
    tracer.wait_for("restore-suspended", EVENT_TIMEOUT, |e| {
        by_pid(e, culprit) && e["event"] == "restore-suspended"
    });
    let route = ns.ip_ok(&["route", "del", "10.78.1.0/24", "table", "78"]);
    tracer.wait_for("the route removal", EVENT_TIMEOUT, |e| by_pid(e, route));
    let (events, _) = tracer.stop();
    let jsonl = dir.join("protected.jsonl");
    let text: String = events.iter().map(|e| format!("{e}\n")).collect();
    fs::write(&jsonl, text).expect("write capture");
    Protected { jsonl, culprit }
}

#[test]
fn report_tells_restores_and_suspensions_of_a_real_protected_capture() {
    require_root();
    let dir = TempDir::new("restores");
    let cap = protected_capture(&dir.0);

    let json = report_ok(&cap.jsonl, "json", &dir.0.join("r.json"));
    let v: Value = serde_json::from_str(&json).expect("report JSON parses");
    let hl = &v["headline"];
    // Five removals (prio 101 once, prio 100 three times, the route): the restore events
    // repeat their removals' fields but are not counted as removals.
    assert_eq!(hl["events"], 5, "{hl:#}");
    assert_eq!(hl["by_kind"]["rule"], 4);
    assert_eq!(hl["by_kind"]["route"], 1);
    assert_eq!(hl["restores"]["events"], 3, "{hl:#}");
    assert_eq!(hl["restores"]["by_outcome"]["restored"], 3);
    assert_eq!(hl["restores"]["suspensions"], 1);
    let latency = &hl["restores"]["latency_us"];
    assert_eq!(latency["count"], 3);
    let (p50, max) = (
        latency["p50"].as_u64().unwrap(),
        latency["max"].as_u64().unwrap(),
    );
    assert!(0 < p50 && p50 <= max && max < 1_000_000, "{latency}");
    // prio 100 is missing (suspended), prio 101 is back, the route was never protected.
    assert_eq!(hl["still_missing"], 1, "{hl:#}");
    let objects = v["objects"].as_array().unwrap();
    let object = |name: &str| {
        objects
            .iter()
            .find(|o| o["object"] == name)
            .unwrap_or_else(|| panic!("{name} in {objects:#?}"))
    };
    let prio100 = object("rule prio 100 lookup 77");
    assert_eq!(hl["still_missing_objects"][0], prio100["id"]);
    assert_eq!(prio100["outcomes"]["removed"], 3);
    assert_eq!(prio100["restores"]["restored"], 2);
    assert_eq!(prio100["restores"]["suspended"], 1);
    assert_eq!(prio100["still_missing"], true);
    let prio101 = object("rule prio 101 lookup 77");
    assert_eq!(prio101["restores"]["restored"], 1);
    assert_eq!(prio101["still_missing"], false);
    let route = objects
        .iter()
        .find(|o| o["kind"] == "route")
        .expect("route object");
    assert_eq!(route["still_missing"], Value::Null);
    assert!(hl["still_missing_note"]
        .as_str()
        .unwrap()
        .contains("1 other removed object had no restore event"));

    // All within the 5 s gap: one incident, with the restores and the suspension.
    assert_eq!(hl["incidents"], 1);
    let inc = &v["incidents"][0];
    assert_eq!(inc["events"], 5);
    assert_eq!(inc["restores"]["by_outcome"]["restored"], 3);
    let sus = &inc["suspensions"][0];
    assert_eq!(sus["description"], "rule prio 100 lookup 77");
    assert_eq!(sus["attempts"], 2);
    let policy = sus["policy"].as_str().unwrap();
    assert_eq!(
        v["actors"][sus["actor"].as_u64().unwrap() as usize]["actor"]["pid"],
        cap.culprit
    );
    let summary = inc["summary"].as_str().unwrap();
    assert!(summary.contains("Restores: 3 restored (p50 "), "{summary}");
    assert!(
        summary.contains(&format!(
            "Restores of rule prio 100 lookup 77 (policy {policy}) suspended at"
        )) && summary.contains(&format!(
            "after 2 attempts: ip[{}] kept removing it.",
            cap.culprit
        )),
        "{summary}"
    );
    let lane = &v["timeline"]["lanes"][0];
    assert_eq!(
        (lane["restored"].as_u64(), lane["suspended"].as_u64()),
        (Some(3), Some(1))
    );

    let md = report_ok(&cap.jsonl, "md", &dir.0.join("r.md"));
    assert!(md.contains("- Restores: 3 restored (p50 "), "{md}");
    assert!(md.contains("**1 suspension(s)**"), "{md}");
    assert!(
        md.contains("- Objects still missing now: **1**: rule prio 100 lookup 77."),
        "{md}"
    );
    assert!(
        md.contains("> **Restores suspended — rule prio 100 lookup 77:**"),
        "{md}"
    );
    assert!(md.contains("| Restores | Missing now |"), "{md}");

    let html = report_ok(&cap.jsonl, "html", &dir.0.join("r.html"));
    assert!(
        html.contains("class=\"mark restore\""),
        "restore marks in the SVG"
    );
    assert!(
        html.contains("class=\"mark suspended\""),
        "suspension mark in the SVG"
    );
    assert!(html.contains(">restores suspended</text>"), "legend");
}

#[test]
fn html_report_renders_in_headless_chromium() {
    require_root();
    if let Some(kernel) = vm_kernel() {
        // Rendering is the browser's business, not the kernel's; under QEMU/TCG Chromium alone
        // takes minutes, and the guest's target/ (for the screenshot) is read-only.
        eprintln!(
            "SKIP: headless Chromium in the {kernel} VM (TCG is too slow for it); this test runs on the host"
        );
        return;
    }
    assert!(
        Path::new(CHROMIUM).exists(),
        "{CHROMIUM} not found: run `cargo xtask setup` (it installs Debian's chromium)"
    );
    let dir = TempDir::new("chromium");
    let cap = capture(&dir.0);
    // And a protected capture after it, so the page (and the README's screenshot) shows
    // restores and a suspension too: two trace sessions, one file, as `cat` would join them.
    let protected = protected_capture(&dir.0);
    let both = dir.0.join("both.jsonl");
    let text = [&cap.jsonl, &protected.jsonl]
        .map(|p| fs::read_to_string(p).unwrap_or_else(|e| panic!("read {}: {e}", p.display())))
        .concat();
    fs::write(&both, text).expect("write both captures");
    let html = dir.0.join("report.html");
    report_ok(&both, "html", &html);
    let url = format!("file://{}", html.display());
    let chromium = |extra: &[&str], profile: &str| {
        let profile = dir.0.join(profile);
        let mut cmd = Command::new(CHROMIUM);
        cmd.args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--window-size=1280,2000",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(extra)
        .arg(&url);
        finish(
            cmd.stdin(std::process::Stdio::null())
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .expect("spawn chromium"),
            "chromium",
            Duration::from_secs(90),
        )
    };
    let dom = chromium(&["--dump-dom"], "profile-dom").ok("chromium --dump-dom");
    assert!(
        dom.stdout.contains("<svg"),
        "rendered DOM has the SVG timeline"
    );
    assert!(
        dom.stdout.contains("Incident 1"),
        "rendered DOM has the incident"
    );
    assert!(dom.stdout.contains(&format!("ip[{}]", cap.ip_pid)));
    assert!(
        !dom.stdout.contains("<script"),
        "no script element in the DOM"
    );
    assert!(!dom.stdout.contains("<b>x</b>"));
    assert!(
        dom.stdout.contains("class=\"mark restore\"")
            && dom.stdout.contains("class=\"mark suspended\""),
        "restores and the suspension are marked in the rendered SVG"
    );
    assert!(dom.stdout.contains("Restores suspended"));

    // The workspace's target/ need not exist (CARGO_TARGET_DIR may point elsewhere), and
    // chromium exits 0 without writing when the screenshot's directory is missing.
    let shot = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/report-screenshot.png");
    let shot_dir = shot.parent().expect("screenshot path has a parent");
    fs::create_dir_all(shot_dir).unwrap_or_else(|e| panic!("mkdir {}: {e}", shot_dir.display()));
    let _ = fs::remove_file(&shot);
    let ran = chromium(
        &[&format!("--screenshot={}", shot.display())],
        "profile-shot",
    )
    .ok("chromium --screenshot");
    let png = fs::read(&shot).unwrap_or_else(|e| {
        panic!(
            "screenshot {}: {e}; chromium stderr: {}",
            shot.display(),
            ran.stderr
        )
    });
    assert!(png.starts_with(b"\x89PNG"), "screenshot is a PNG");
}

#[test]
fn bad_input_is_one_clear_error() {
    let dir = TempDir::new("bad");
    let junk = dir.0.join("junk.jsonl");
    fs::write(&junk, "this is not json\n").unwrap();
    let ran = report(&["--input", junk.to_str().unwrap()]);
    assert_eq!(ran.status.code(), Some(2), "{}", ran.stderr);
    assert!(
        ran.stderr
            .contains(&format!("{}:1: not a routeguard event", junk.display())),
        "{}",
        ran.stderr
    );
    let missing = report(&["--input", "/nonexistent/capture.jsonl"]);
    assert_eq!(missing.status.code(), Some(2));
    assert!(
        missing
            .stderr
            .contains("cannot read /nonexistent/capture.jsonl"),
        "{}",
        missing.stderr
    );
    let neither = report(&[]);
    assert_eq!(neither.status.code(), Some(2));
}

/// `2026-12-07 19:20:01.123` and `19:20:01.123` of an event's `ts`, as the report writes them.
fn when_and_time(event: &serde_json::Value) -> (String, String) {
    let ts = at(event, "/ts").as_str().expect("ts is a string");
    (
        format!("{} {}", &ts[..10], &ts[11..23]),
        ts[11..23].to_string(),
    )
}

/// Three nodes: three tracer runs, each with its own `ROUTEGUARD_NODE_NAME` (the DaemonSet's
/// downward-API variable) and netns, where `ip rule del` removes the same rule. The fleet
/// report over the three captures tells one cluster incident: program, rule, nodes, time span.
#[test]
fn fleet_report_tells_one_rule_removed_on_three_nodes_as_one_incident() {
    let dir = TempDir::new("fleet");
    let prio = (31_000 + std::process::id() % 1000).to_string();
    let nodes = ["fleet-node-a", "fleet-node-b", "fleet-node-c"];
    let mut inputs = Vec::new();
    let mut removals = Vec::new();
    for node in nodes {
        let ns = Netns::new();
        ns.ip_ok(&["rule", "add", "prio", &prio, "lookup", "77"]);
        let tracer = Tracer::start_with_env(
            &["trace", "--json", "--netns", ns.name()],
            &[("ROUTEGUARD_NODE_NAME", node)],
        );
        let pid = ns.ip_ok(&["rule", "del", "prio", &prio, "lookup", "77"]);
        let removal = tracer.wait_for("removal", EVENT_TIMEOUT, |e| by_pid(e, pid));
        let (events, _) = tracer.stop();
        assert_eq!(
            at(&removal, "/host/node"),
            node,
            "the node name reached the event"
        );
        let jsonl = dir.0.join(format!("{node}.jsonl"));
        let text: String = events.iter().map(|e| format!("{e}\n")).collect();
        fs::write(&jsonl, text).expect("write capture");
        inputs.push(jsonl);
        removals.push(removal);
    }
    let exe = at(&removals[0], "/actor/exe")
        .as_str()
        .expect("ip's exe")
        .to_string();
    let (start, _) = when_and_time(&removals[0]);
    let (_, end) = when_and_time(&removals[2]);
    let mut args = Vec::new();
    for p in &inputs {
        args.extend(["--input", p.to_str().unwrap()]);
    }
    let json = dir.0.join("fleet.json");
    args.extend(["--out", json.to_str().unwrap()]);
    report(&args).ok("routeguard report (fleet)");
    let r: serde_json::Value =
        serde_json::from_str(&fs::read_to_string(&json).unwrap()).expect("report JSON");
    let names: Vec<&str> = r["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["node"].as_str().unwrap())
        .collect();
    assert_eq!(names, nodes);
    assert!(r["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .all(|n| n["named_by"] == "node" && n["events"] == 1 && n["outcomes"]["removed"] == 1));
    let incidents = r["cluster_incidents"].as_array().unwrap();
    assert_eq!(incidents.len(), 1, "{incidents:#?}");
    let c = &incidents[0];
    assert_eq!(
        c["summary"].as_str().unwrap(),
        format!(
            "ip removed rule prio {prio} lookup 77 on 3 nodes between {start} and {end} UTC \
             (3 removal(s) on fleet-node-a, fleet-node-b, fleet-node-c; program matched by exe \
             {exe})"
        )
    );
    assert_eq!(
        (&c["program_key"], &c["shared"]),
        (&"exe".into(), &"object".into())
    );
    assert_eq!(c["nodes"], serde_json::json!([0, 1, 2]));
    // The same in Markdown and HTML: a cluster incidents section and a row per node.
    for (format, heading) in [
        ("md", "## Cluster incidents"),
        ("html", "<h2>Cluster incidents</h2>"),
    ] {
        let out = dir.0.join(format!("fleet.{format}"));
        let mut args = args[..args.len() - 2].to_vec();
        args.extend(["--out", out.to_str().unwrap()]);
        report(&args).ok("routeguard report (fleet)");
        let text = fs::read_to_string(&out).unwrap();
        assert!(text.contains(heading), "{text}");
        assert!(
            text.contains(&format!("on 3 nodes between {start} and {end} UTC")),
            "{text}"
        );
        for node in nodes {
            assert!(text.contains(node), "{node} in {format}");
        }
    }
    // Bad inputs among good ones: one clear error, exit 2, nothing written.
    let junk = dir.0.join("junk.jsonl");
    fs::write(&junk, "not an event\n").unwrap();
    let out = dir.0.join("never.html");
    for (bad, flag, says) in [
        (
            junk.to_str().unwrap(),
            "--input",
            format!("{}:1: not a routeguard event", junk.display()),
        ),
        (
            "/nonexistent/events.db",
            "--db",
            "no event store at /nonexistent/events.db".into(),
        ),
        (
            "/nonexistent/x.jsonl",
            "--input",
            "cannot read /nonexistent/x.jsonl".into(),
        ),
    ] {
        let ran = report(&[
            "--input",
            inputs[0].to_str().unwrap(),
            flag,
            bad,
            "--out",
            out.to_str().unwrap(),
        ]);
        assert_eq!(ran.status.code(), Some(2), "{}", ran.stderr);
        assert_eq!(ran.stderr.lines().count(), 1, "{}", ran.stderr);
        assert!(ran.stderr.contains(&says), "{}", ran.stderr);
        assert!(!out.exists(), "no report written for a bad input");
    }
    for gap in ["0s", "9000h", "soon"] {
        let ran = report(&[
            "--input",
            inputs[0].to_str().unwrap(),
            "--input",
            inputs[1].to_str().unwrap(),
            "--gap",
            gap,
        ]);
        assert_eq!(ran.status.code(), Some(2), "--gap {gap}: {}", ran.stderr);
        assert!(ran.stderr.contains("--gap"), "{}", ran.stderr);
    }
}
