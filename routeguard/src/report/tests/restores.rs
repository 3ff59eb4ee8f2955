//! Restore and `restore-suspended` events in the report: removal counts leave them out, the
//! headline, incidents, objects and timeline tell them, and `still_missing` is computed from
//! them — through both readers (events pushed whole, and JSON lines read as
//! [`crate::event::EventRef`]s).

use super::*;
use crate::event::{EventType, Restore, RestoreOutcome};

/// routeguard's answer to `removal`, `after_us` later (at the removal's own time for
/// suspensions, as the engine stamps them).
fn answer(removal: &Event, outcome: RestoreOutcome, after_us: u64) -> Event {
    let mut ev = removal.clone();
    ev.event = EventType::Restore;
    ev.ts = Timestamp(removal.ts.0 + i128::from(after_us) * 1000);
    ev.restore = Some(Restore {
        policy: "kube-router rules".into(),
        outcome,
        latency_us: (outcome == RestoreOutcome::Restored).then_some(after_us),
        attempt: 1,
        errno: None,
        error: None,
        detail: None,
        hint: None,
    });
    if outcome == RestoreOutcome::Failed {
        let r = ev.restore.as_mut().unwrap();
        r.errno = Some(19);
        r.error = Some("ENODEV".into());
    }
    ev
}

fn suspended(removal: &Event) -> Event {
    let mut ev = answer(removal, RestoreOutcome::Suspended, 0);
    ev.event = EventType::RestoreSuspended;
    let advice = crate::hints::for_actor(ev.actor.as_ref().unwrap())[0].advice;
    let r = ev.restore.as_mut().unwrap();
    r.attempt = 3;
    r.hint = Some(advice.into());
    r.detail = Some("systemd-network[812] removed it again after 3 restores within 60s".into());
    ev
}

/// networkd removes prio 100-102 at t0 (two restored in 412 and 900 µs, one re-add refused),
/// and prio 100 again a minute later (restores suspended); `ip` removes an unprotected route.
pub(super) fn protected_capture() -> Vec<Event> {
    let t0 = fixtures::TS;
    let first = networkd_burst(t0, 3);
    let again = networkd_burst(t0 + 60 * S, 1);
    let mut route = fixtures::route_event();
    route.ts = Timestamp(t0 + 61 * S);
    let mut events = vec![
        answer(&first[0], RestoreOutcome::Restored, 412),
        answer(&first[1], RestoreOutcome::Restored, 900),
        answer(&first[2], RestoreOutcome::Failed, 1_000),
        suspended(&again[0]),
        route,
    ];
    events.extend(first);
    events.extend(again);
    events
}

#[test]
fn restore_events_are_not_counted_as_removals() {
    let r = report_of(protected_capture(), 5);
    assert_eq!(r.headline.events, 5, "4 rule removals and a route removal");
    assert_eq!(r.headline.outcomes.removed, 5);
    assert_eq!(r.headline.by_kind.get("rule"), Some(&4));
    assert_eq!(r.headline.incidents, 2);
    assert_eq!(r.incidents[0].events, 3);
    let networkd = &r.actors[0];
    assert_eq!(networkd.actor.as_ref().unwrap().pid, 812);
    assert_eq!(networkd.outcomes.total(), 4);
    let prio100 = r
        .objects
        .iter()
        .find(|o| o.object == "rule prio 100 lookup 77")
        .unwrap();
    assert_eq!(prio100.outcomes.total(), 2);
    let lane = &r.timeline.lanes[0];
    assert_eq!(lane.outcomes.total(), 4);
    assert_eq!(
        (lane.restored, lane.not_restored, lane.suspended),
        (2, 1, 1)
    );
}

#[test]
fn headline_has_restores_by_outcome_and_what_is_still_missing() {
    let r = report_of(protected_capture(), 5);
    let hl = &r.headline;
    assert_eq!(hl.restores.events, 3);
    assert_eq!(hl.restores.count("restored"), 2);
    assert_eq!(hl.restores.count("failed"), 1);
    assert_eq!(hl.restores.errors.get("ENODEV"), Some(&1));
    assert_eq!(hl.restores.suspensions, 1);
    let l = hl.restores.latency_us.as_ref().unwrap();
    assert_eq!((l.count, l.p50, l.max), (2, 412, 900));
    // prio 100 (suspended after its last removal) and prio 102 (re-add refused) are missing;
    // prio 101 came back; the route was never protected, so it is not counted either way.
    assert_eq!(hl.still_missing, Some(2));
    let missing: Vec<&str> = hl
        .still_missing_objects
        .iter()
        .map(|&o| r.objects[o].object.as_str())
        .collect();
    assert!(missing.contains(&"rule prio 100 lookup 77"), "{missing:?}");
    assert!(missing.contains(&"rule prio 102 lookup 77"), "{missing:?}");
    assert!(
        hl.still_missing_note
            .contains("1 other removed object had no restore event"),
        "{}",
        hl.still_missing_note
    );
    let by_name = |name: &str| r.objects.iter().find(|o| o.object == name).unwrap();
    let prio100 = by_name("rule prio 100 lookup 77");
    assert_eq!(prio100.restores.get("restored"), Some(&1));
    assert_eq!(prio100.restores.get("suspended"), Some(&1));
    assert_eq!(prio100.still_missing, Some(true));
    assert_eq!(
        by_name("rule prio 101 lookup 77").still_missing,
        Some(false)
    );
    assert_eq!(
        by_name("route table 77 10.1.0.0/24 via 10.0.0.1 metric 100").still_missing,
        None
    );
}

#[test]
fn incidents_tell_what_was_restored_how_fast_and_suspensions_with_the_hint() {
    let r = report_of(protected_capture(), 5);
    let first = &r.incidents[0];
    assert_eq!(first.restores.count("restored"), 2);
    assert_eq!(first.restores.count("failed"), 1);
    assert!(
        first.summary.contains(
            "Restores: 2 restored (p50 412 µs, max 900 µs), 1 re-add failed (ENODEV ×1)."
        ),
        "{}",
        first.summary
    );
    assert_eq!(first.objects[0].restores.get("restored"), Some(&1));
    assert!(first.suspensions.is_empty());

    let second = &r.incidents[1];
    assert_eq!(second.restores.events, 0);
    assert_eq!(second.suspensions.len(), 1);
    let sus = &second.suspensions[0];
    assert_eq!(sus.description, "rule prio 100 lookup 77");
    assert_eq!(sus.attempts, 3);
    assert_eq!(sus.policy, "kube-router rules");
    assert!(sus
        .hint
        .as_deref()
        .unwrap()
        .contains("ManageForeignRoutingPolicyRules=no"));
    assert!(
        second.summary.contains(
            "Restores of rule prio 100 lookup 77 (policy kube-router rules) suspended at"
        ) && second
            .summary
            .contains("after 3 attempts: systemd-network[812] kept removing it. See the hint for systemd-networkd."),
        "{}",
        second.summary
    );
}

#[test]
fn a_suspension_hint_no_incident_hint_covers_is_quoted() {
    let mut removal = fixtures::rule_event();
    removal.outcome = Outcome::Removed;
    (removal.errno, removal.error) = (None, None);
    let mut sus = suspended(&networkd_burst(removal.ts.0, 1)[0]);
    sus.actor = removal.actor.clone();
    sus.restore.as_mut().unwrap().hint = Some("stop doing that.".into());
    let r = report_of(vec![removal, sus], 5);
    assert!(
        r.incidents[0].summary.contains("Hint: stop doing that."),
        "{}",
        r.incidents[0].summary
    );
}

#[test]
fn without_restore_events_still_missing_stays_unknown() {
    let r = report_of(networkd_burst(fixtures::TS, 2), 5);
    assert_eq!(r.headline.still_missing, None);
    assert_eq!(r.headline.still_missing_note, model::STILL_MISSING_UNKNOWN);
    assert!(r.headline.restores.is_empty());
    assert!(r.objects.iter().all(|o| o.still_missing.is_none()));
    let md = render_str(&r, Format::Markdown);
    assert!(
        !md.contains("Missing now"),
        "no restore columns without restores"
    );
    let html = render_str(&r, Format::Html);
    assert!(!html.contains("mark restore") && !html.contains("restores suspended"));
}

/// The capture as JSON lines, read back by `--input`.
pub(super) fn from_jsonl(events: &[Event], tag: &str) -> Report {
    let text: String = events
        .iter()
        .map(|e| crate::sink::json::to_line(e) + "\n")
        .collect();
    jsonl_report(&text, tag)
}

/// The report of a file holding `text`, read by `--input`.
pub(super) fn jsonl_report(text: &str, tag: &str) -> Report {
    let dir = std::env::temp_dir().join(format!("rg-report-restores-{tag}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("capture.jsonl");
    std::fs::write(&path, text).unwrap();
    let r = build(
        &Input::Jsonl(path),
        &Query::default(),
        vec![],
        &Options::default(),
        Timestamp(0),
    )
    .unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
    r
}

#[test]
fn jsonl_lines_read_event_and_restore_as_events_do() {
    let events = protected_capture();
    let pushed = render_str(&report_of(events.clone(), 5), Format::Json);
    let read = render_str(&from_jsonl(&events, "same"), Format::Json);
    let strip = |s: &str| {
        let mut v: serde_json::Value = serde_json::from_str(s).unwrap();
        v["source"] = serde_json::Value::Null;
        v
    };
    assert_eq!(strip(&pushed), strip(&read));
}

#[test]
fn a_store_reads_as_the_same_capture_in_jsonl() {
    let events = protected_capture();
    let dir = std::env::temp_dir().join(format!("rg-report-store-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let db = dir.join("events.db");
    let mut store = crate::store::Store::open(&db, crate::store::Retention::default()).unwrap();
    store.insert(&events).unwrap();
    store.close().unwrap();
    let stored = build(
        &Input::Store(db),
        &Query::default(),
        vec![],
        &Options::default(),
        Timestamp(0),
    )
    .unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
    assert_eq!(stored.source.kind, "store");
    assert_eq!(stored.source.events_read, events.len() as u64);
    let strip = |r: &Report| {
        let mut v: serde_json::Value = serde_json::from_str(&render_str(r, Format::Json)).unwrap();
        v["source"] = serde_json::Value::Null;
        v
    };
    assert_eq!(strip(&stored), strip(&from_jsonl(&events, "store")));
    assert_eq!(stored.headline.still_missing, Some(2));
}

#[test]
fn older_captures_without_event_read_as_removals_and_restore_without_its_object_is_skipped() {
    let removal = &networkd_burst(fixtures::TS, 1)[0];
    let mut old: serde_json::Value =
        serde_json::from_str(&crate::sink::json::to_line(removal)).unwrap();
    let obj = old.as_object_mut().unwrap();
    obj.remove("event");
    obj.remove("restore");
    let mut broken: serde_json::Value =
        serde_json::from_str(&crate::sink::json::to_line(removal)).unwrap();
    broken["event"] = "restore".into();
    let dir = std::env::temp_dir().join(format!("rg-report-old-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("old.jsonl");
    std::fs::write(&path, format!("{old}\n{broken}\n")).unwrap();
    let r = build(
        &Input::Jsonl(path),
        &Query::default(),
        vec![],
        &Options::default(),
        Timestamp(0),
    )
    .unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
    assert_eq!(r.headline.events, 1);
    assert!(r.headline.restores.is_empty());
    assert_eq!(r.source.skipped_lines, 1);
    assert_eq!(r.source.skipped_examples[0].line, 2);
    assert!(
        r.source.skipped_examples[0]
            .reason
            .contains("restore event without its `restore` object"),
        "{:?}",
        r.source.skipped_examples
    );
}

#[test]
fn every_format_shows_restores_and_suspensions() {
    let r = report_of(protected_capture(), 5);
    let html = render_str(&r, Format::Html);
    assert!(
        html.contains("<li>Restores: 2 restored (p50 412 µs, max 900 µs)"),
        "headline"
    );
    assert!(html.contains("Objects still missing now: <span class=\"missing\">2</span>"));
    assert!(
        html.contains("class=\"mark restore\""),
        "restore marks in the SVG"
    );
    assert!(
        html.contains("class=\"mark suspended\""),
        "suspension marks in the SVG"
    );
    assert!(html.contains(">restores suspended</text>"), "legend");
    assert!(html.contains("<div class=\"suspended\"><strong>Restores suspended — <code>rule prio 100 lookup 77</code>"));
    assert_eq!(html.matches("<svg").count(), 1);
    assert_eq!(html.matches("</svg>").count(), 1);

    let md = render_str(&r, Format::Markdown);
    assert!(md.contains("- Restores: 2 restored (p50 412 µs, max 900 µs), 1 re-add failed (ENODEV ×1) (3 restore event(s)); **1 suspension(s)**"), "{md}");
    assert!(
        md.contains(
            "- Objects still missing now: **2**: rule prio 100 lookup 77; rule prio 102 lookup 77."
        ),
        "{md}"
    );
    assert!(md.contains("| Restores | Missing now |"));
    assert!(md.contains("> **Restores suspended — rule prio 100 lookup 77:**"));
    // Tables keep their shape with the extra columns.
    let mut expected = None;
    for line in md.lines() {
        if line.starts_with('|') {
            let n = split_cells(line);
            assert_eq!(n, *expected.get_or_insert(n), "bad row: {line}");
        } else {
            expected = None;
        }
    }

    let v: serde_json::Value = serde_json::from_str(&render_str(&r, Format::Json)).unwrap();
    let hl = &v["headline"];
    assert_eq!(hl["restores"]["by_outcome"]["restored"], 2);
    assert_eq!(hl["restores"]["latency_us"]["p50"], 412);
    assert_eq!(hl["restores"]["suspensions"], 1);
    assert_eq!(hl["still_missing"], 2);
    assert_eq!(v["incidents"][1]["suspensions"][0]["attempts"], 3);
    assert_eq!(v["timeline"]["lanes"][0]["suspended"], 1);
}

#[test]
fn a_fleet_node_summary_counts_as_the_full_report_does() {
    let mut events = protected_capture();
    let mut failed = fixtures::rule_event(); // `ip rule del`, refused with ENOENT
    failed.ts = Timestamp(fixtures::TS + 30 * S);
    let mut kernel = fixtures::route_event();
    kernel.actor = None;
    kernel.ts = Timestamp(fixtures::TS + 2 * S);
    events.extend([failed, kernel]);
    for (gap_s, top) in [(1, 1), (5, 2), (3600, 10)] {
        let collector = || {
            let mut c = Collector::new();
            for ev in events.clone() {
                c.push(ev);
            }
            c
        };
        let opts = Options {
            gap_ns: gap_s * S,
            ..Options::default()
        };
        let full = collector().finish(&opts);
        let s = collector().summary(opts.gap_ns, top);
        let hl = &full.headline;
        assert_eq!((s.first, s.last), (full.first, full.last));
        assert_eq!(
            (s.events, s.incidents, s.actors, s.objects, s.still_missing),
            (
                hl.events,
                hl.incidents,
                hl.actors,
                hl.objects,
                hl.still_missing
            ),
            "gap {gap_s} s"
        );
        assert_eq!(s.by_kind, hl.by_kind);
        let json = |v| serde_json::to_value(v).unwrap();
        assert_eq!(json(&s.outcomes), json(&hl.outcomes));
        assert_eq!(
            serde_json::to_value(&s.restores).unwrap(),
            serde_json::to_value(&hl.restores).unwrap()
        );
        let top_full: Vec<(String, u64)> = full
            .actors
            .iter()
            .take(top)
            .map(|a| (a.description.clone(), a.outcomes.total()))
            .collect();
        assert_eq!(s.top_actors, top_full);
    }
}
