//! Unit tests of the report on hand-built events: grouping, ranking, rendering, escaping.

use super::render::{self, Format};
use super::*;
use crate::event::fixtures;
use crate::event::{Cause, Event, Object, Outcome, Route, Rule, Timestamp};

mod lines;
mod restores;
mod stored;

const S: i128 = 1_000_000_000;

/// systemd-networkd removing `n` rules at `t0`, 10 ms apart.
fn networkd_burst(t0: i128, n: u32) -> Vec<Event> {
    (0..n)
        .map(|i| {
            let mut ev = fixtures::rule_event();
            ev.ts = Timestamp(t0 + i128::from(i) * 10_000_000);
            ev.outcome = Outcome::Removed;
            ev.errno = None;
            ev.error = None;
            ev.object = Object::Rule(Rule {
                priority: Some(100 + i),
                table: Some(77),
                ..Rule::default()
            });
            let a = std::sync::Arc::make_mut(ev.actor.as_mut().unwrap());
            a.pid = 812;
            a.tid = 812;
            a.comm = "systemd-network".into();
            a.exe = Some("/usr/lib/systemd/systemd-networkd".into());
            a.cmdline = "/usr/lib/systemd/systemd-networkd".into();
            a.unit = Some("systemd-networkd.service".into());
            a.ancestry = vec![crate::event::Ancestor {
                pid: 1,
                comm: "systemd".into(),
            }];
            ev
        })
        .collect()
}

fn report_of(events: Vec<Event>, gap_s: i128) -> Report {
    let mut c = Collector::new();
    for ev in events {
        c.push(ev);
    }
    let source = model::Source {
        kind: "jsonl",
        path: "test.jsonl".into(),
        events_read: c.len() as u64,
        skipped_lines: 0,
        skipped_examples: vec![],
    };
    let opts = Options {
        gap_ns: gap_s * S,
        ..Options::default()
    };
    assemble(c, source, &Query::default(), vec![], &opts, Timestamp(0))
}

fn render_str(r: &Report, f: Format) -> String {
    let mut out = Vec::new();
    render::write(r, f, &mut out).unwrap();
    String::from_utf8(out).unwrap()
}

#[test]
fn bursts_become_incidents_with_actor_objects_and_hint() {
    let t0 = fixtures::TS;
    let mut events = networkd_burst(t0, 3);
    let mut late = fixtures::rule_event(); // ip rule del, failed ENOENT, 60 s later
    late.ts = Timestamp(t0 + 60 * S);
    events.push(late);
    let r = report_of(events, 5);
    assert_eq!(r.headline.events, 4);
    assert_eq!(r.headline.incidents, 2);
    assert_eq!(r.headline.outcomes.removed, 3);
    assert_eq!(r.headline.outcomes.failed, 1);
    assert_eq!(r.headline.by_kind.get("rule"), Some(&4));
    assert_eq!(r.headline.errors.get("ENOENT"), Some(&1));

    let first = &r.incidents[0];
    assert_eq!(first.events, 3);
    assert_eq!(first.objects.len(), 3);
    assert_eq!(first.objects[0].description, "rule prio 100 lookup 77");
    assert_eq!(first.hints.len(), 1);
    assert_eq!(first.hints[0].id, "systemd-networkd");
    assert!(
        first.summary.contains("systemd-network[812] (/usr/lib/systemd/systemd-networkd, systemd-networkd.service), started by systemd[1]"),
        "{}",
        first.summary
    );
    assert!(first.summary.contains("3 removed"), "{}", first.summary);
    let second = &r.incidents[1];
    assert_eq!(second.outcomes.failed, 1);
    assert!(second.hints.is_empty());
    assert!(second.summary.contains("ENOENT ×1"), "{}", second.summary);

    // Actors ranked by requests: networkd (3) before ip (1).
    assert_eq!(r.actors[0].actor.as_ref().unwrap().pid, 812);
    assert_eq!(r.actors[0].hints, ["systemd-networkd"]);
    assert_eq!(r.actors[1].outcomes.failed, 1);
    // prio 100 lookup 77 was asked for twice: by networkd (removed) and by ip (failed).
    let prio100 = &r.objects[0];
    assert_eq!(prio100.object, "rule prio 100 lookup 77");
    assert_eq!(prio100.outcomes.total(), 2);
    assert_eq!(prio100.by.len(), 2);
}

#[test]
fn gap_is_configurable() {
    let t0 = fixtures::TS;
    let mut events = networkd_burst(t0, 2);
    events.extend(networkd_burst(t0 + 3 * S, 2));
    assert_eq!(report_of(events.clone(), 5).incidents.len(), 1);
    assert_eq!(report_of(events, 1).incidents.len(), 2);
}

/// One route removed twice, described once as the kernel-function path does (its device, metric
/// 0) and once as the syscall path's notification does (its index, no metric): one object,
/// named as its first event named it, whether the events were pushed or read from JSON lines.
#[test]
fn a_route_is_one_object_whichever_path_described_it() {
    let mut by_device = fixtures::route_event();
    let route = by_device.object.route().unwrap().clone();
    by_device.object = Object::Route(Route {
        dev: Some("rg0".into()),
        oif: Some(3),
        priority: Some(0),
        ..route.clone()
    });
    let mut by_index = fixtures::route_event();
    by_index.ts = Timestamp(fixtures::TS + S);
    by_index.object = Object::Route(Route {
        oif: Some(3),
        priority: None,
        ..route
    });
    let events = vec![by_device, by_index];
    for r in [
        report_of(events.clone(), 5),
        restores::from_jsonl(&events, "one-route"),
    ] {
        assert_eq!(r.headline.objects, 1);
        assert_eq!(r.objects.len(), 1);
        assert_eq!(
            r.objects[0].object,
            "route table 77 10.1.0.0/24 via 10.0.0.1 dev rg0 metric 0"
        );
        assert_eq!(r.objects[0].outcomes.removed, 2);
    }
}

#[test]
fn out_of_order_events_are_sorted_and_kernel_removals_have_no_actor() {
    let mut a = fixtures::route_event();
    a.ts = Timestamp(fixtures::TS + S);
    let mut b = fixtures::route_event();
    b.actor = None;
    b.cause = Cause::LinkDown;
    let r = report_of(vec![a, b], 5);
    assert_eq!(r.window.first_event, Some(Timestamp(fixtures::TS)));
    assert_eq!(r.headline.by_cause.get("link-down"), Some(&1));
    assert!(r
        .actors
        .iter()
        .any(|a| a.description == "kernel (no process)"));
    assert_eq!(r.timeline.lanes.len(), 2);
}

/// A process that names itself to break out of every format.
fn hostile_report() -> Report {
    let mut ev = fixtures::route_event();
    let a = std::sync::Arc::make_mut(ev.actor.as_mut().unwrap());
    a.comm = "<script>|`x`".into();
    a.cmdline = "evil </svg><script>alert(1)</script> | *b* _i_ [l](u) \x1b]0;pwned\x07".into();
    a.exe = Some("/tmp/<img src=x>".into());
    a.unit = Some("a|b.service".into());
    ev.object.route_mut().unwrap().dev = Some("eth0</td>".into());
    report_of(vec![ev], 5)
}

#[test]
fn html_escapes_every_process_string() {
    let html = render_str(&hostile_report(), Format::Html);
    assert!(!html.contains("<script"), "raw <script> in HTML");
    assert!(!html.contains("<img"), "raw <img> in HTML");
    assert!(!html.contains("eth0</td>"));
    assert!(!html.contains('\x1b'));
    assert!(html.contains("&lt;script&gt;"));
    // Exactly one SVG, closed once: the hostile `</svg>` did not close it early.
    assert_eq!(html.matches("<svg").count(), 1);
    assert_eq!(html.matches("</svg>").count(), 1);
    assert!(html.contains("default-src 'none'"));
    assert!(!html.contains("http://") || html.matches("http://").count() == 1); // SVG xmlns only
}

#[test]
fn markdown_tables_keep_their_shape() {
    let md = render_str(&hostile_report(), Format::Markdown);
    assert!(!md.contains('\x1b'));
    // No raw HTML: every `<` is backslash-escaped.
    assert!(
        !md.replace("\\<", "").contains('<'),
        "unescaped < in Markdown"
    );
    assert!(md.contains("\\<script\\>"));
    // Every table's rows have as many cells as its header.
    let mut expected = None;
    for line in md.lines() {
        if line.starts_with('|') {
            let n = split_cells(line);
            let want = *expected.get_or_insert(n);
            assert_eq!(n, want, "row with the wrong number of cells: {line}");
        } else {
            expected = None;
        }
    }
}

/// Cells of a Markdown table row, honouring `\|` escapes.
fn split_cells(line: &str) -> usize {
    let mut n = 0;
    let mut prev_backslashes = 0;
    for c in line.chars() {
        if c == '|' && prev_backslashes % 2 == 0 {
            n += 1;
        }
        prev_backslashes = if c == '\\' { prev_backslashes + 1 } else { 0 };
    }
    n - 1
}

#[test]
fn json_round_trips_with_schema_version() {
    let r = hostile_report();
    let json = render_str(&r, Format::Json);
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(v["report_schema_version"], 1);
    assert_eq!(v["actors"][0]["actor"]["comm"], "<script>|`x`");
    assert_eq!(
        v["actors"][0]["actor"]["cmdline"],
        r.actors[0].actor.as_ref().unwrap().cmdline
    );
    assert_eq!(v["headline"]["still_missing"], serde_json::Value::Null);
}

#[test]
fn events_round_trip_through_json() {
    for ev in [
        fixtures::route_event(),
        fixtures::rule_event(),
        fixtures::full_event(),
    ] {
        let line = crate::sink::json::to_line(&ev);
        let back: Event = serde_json::from_str(&line).unwrap();
        assert_eq!(back, ev);
    }
    // Unknown fields (a newer routeguard) are ignored.
    let mut v: serde_json::Value =
        serde_json::from_str(&crate::sink::json::to_line(&fixtures::route_event())).unwrap();
    v["added_by_a_newer_routeguard"] = serde_json::json!({"what": "future"});
    assert!(serde_json::from_value::<Event>(v).is_ok());
}

#[test]
fn jsonl_input_counts_bad_lines_and_refuses_non_captures() {
    let dir = std::env::temp_dir().join(format!("rg-report-unit-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let good = crate::sink::json::to_line(&fixtures::route_event());
    let mixed = dir.join("mixed.jsonl");
    std::fs::write(
        &mixed,
        format!("{good}\nnot json\n\n{{\"truncated\":\n{good}\n"),
    )
    .unwrap();
    let r = build(
        &Input::Jsonl(mixed),
        &Query::default(),
        vec![],
        &Options::default(),
        Timestamp(0),
    )
    .unwrap();
    assert_eq!(r.source.events_read, 2);
    assert_eq!(r.source.skipped_lines, 2);
    assert_eq!(r.source.skipped_examples[0].line, 2);
    assert!(render_str(&r, Format::Html).contains("2 lines skipped"));

    let junk = dir.join("junk.jsonl");
    std::fs::write(&junk, "hello\nworld\n").unwrap();
    let err = build(
        &Input::Jsonl(junk.clone()),
        &Query::default(),
        vec![],
        &Options::default(),
        Timestamp(0),
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.contains(&format!("{}:1: not a routeguard event", junk.display())),
        "{err}"
    );
    let missing = build(
        &Input::Jsonl(dir.join("nope.jsonl")),
        &Query::default(),
        vec![],
        &Options::default(),
        Timestamp(0),
    )
    .unwrap_err()
    .to_string();
    assert!(
        missing.contains("cannot read") && missing.contains("nope.jsonl"),
        "{missing}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn empty_report_renders() {
    let r = report_of(vec![], 5);
    for f in [Format::Html, Format::Markdown, Format::Json] {
        assert!(!render_str(&r, f).is_empty());
    }
}

#[test]
fn a_chunk_with_invalid_utf8_is_read_line_by_line() {
    let dir = std::env::temp_dir().join(format!("rg-report-utf8-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let good = crate::sink::json::to_line(&fixtures::route_event());
    let path = dir.join("mixed.jsonl");
    // The same event with a byte that is not UTF-8 in its comm.
    let bad = good.replacen("\"comm\":\"ip\"", "\"comm\":\"i\u{1}p\"", 1);
    assert_ne!(bad, good);
    let bad = bad.replacen('\u{1}', "\u{ff}", 1).into_bytes();
    let bad: Vec<u8> = bad.into_iter().filter(|&b| b != 0xc3).collect();
    let reason = serde_json::from_slice::<Event>(&bad)
        .unwrap_err()
        .to_string();
    let mut bytes = format!("{good}\n").into_bytes();
    bytes.extend_from_slice(&bad);
    bytes.push(b'\n');
    bytes.extend_from_slice(format!("{good}\n").as_bytes());
    std::fs::write(&path, bytes).unwrap();
    let r = build(
        &Input::Jsonl(path),
        &Query::default(),
        vec![],
        &Options::default(),
        Timestamp(0),
    )
    .unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
    assert_eq!(r.source.events_read, 2);
    assert_eq!(r.source.skipped_lines, 1);
    assert_eq!(r.source.skipped_examples[0].line, 2);
    assert_eq!(r.source.skipped_examples[0].reason, reason);
}
