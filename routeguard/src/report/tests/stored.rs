//! A report from the store's facts (schema version 2) against the same events' JSON: from a
//! capture, from a store that predates facts, and from that store once upgraded.

use std::path::{Path, PathBuf};

use super::restores::{from_jsonl, protected_capture};
use super::*;
use crate::event::{Cause, EventType, Kind};
use crate::store::{self, Retention, Store};

/// A directory of its own under the temp dir, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> Self {
        let dir =
            std::env::temp_dir().join(format!("rg-report-stored-{tag}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Every kind of object, an event no process caused in an unnamed namespace, a failure known
/// only by its errno, and restores with their suspension.
fn every_kind() -> Vec<Event> {
    let mut events = protected_capture();
    for (i, kind) in [
        Kind::Route,
        Kind::Rule,
        Kind::Nexthop,
        Kind::Link,
        Kind::Address,
    ]
    .into_iter()
    .enumerate()
    {
        let mut ev = fixtures::full_event();
        ev.object = fixtures::full_object(kind);
        // Removals; the full event is a suspension.
        ev.event = EventType::Removal;
        ev.restore = None;
        ev.ts = Timestamp(fixtures::TS + 120 * S + i as i128);
        events.push(ev);
    }
    let mut expired = fixtures::full_event();
    expired.ts = Timestamp(fixtures::TS + 121 * S);
    expired.actor = None;
    expired.cause = Cause::Expired;
    expired.event = EventType::Removal;
    expired.restore = None;
    expired.netns.name = None;
    expired.errno = None;
    expired.error = None;
    expired.outcome = Outcome::Removed;
    events.push(expired);
    let mut errno_only = fixtures::route_event();
    errno_only.ts = Timestamp(fixtures::TS + 122 * S);
    errno_only.outcome = Outcome::Failed;
    errno_only.errno = Some(101);
    errno_only.error = None;
    events.push(errno_only);
    events
}

fn from_store(db: &Path, query: &Query) -> Report {
    build(
        &Input::Store(db.to_owned()),
        query,
        vec![],
        &Options::default(),
        Timestamp(0),
    )
    .unwrap()
}

/// The report as JSON, its source left out.
fn content(r: &Report) -> serde_json::Value {
    let mut v: serde_json::Value = serde_json::from_str(&render_str(r, Format::Json)).unwrap();
    v["source"] = serde_json::Value::Null;
    v
}

#[test]
fn facts_of_an_upgraded_store_read_as_its_events_json() {
    let events = every_kind();
    let dir = TempDir::new("upgrade");
    let db = dir.0.join("events.db");
    store::create_v1(&db, &events);
    let expected = content(&from_jsonl(&events, "stored-upgrade"));

    // Version 1: read through each event's JSON.
    let before = from_store(&db, &Query::default());
    assert_eq!(before.source.events_read, events.len() as u64);
    assert_eq!(content(&before), expected);

    // Opening it for writing (as the daemon does) upgrades it and fills in the facts.
    Store::open(&db, Retention::default())
        .unwrap()
        .close()
        .unwrap();
    assert!(store::read_facts(&db).unwrap().is_some());
    let after = from_store(&db, &Query::default());
    assert_eq!(after.source.events_read, events.len() as u64);
    assert_eq!(after.source.skipped_lines, 0);
    assert_eq!(content(&after), expected);

    // New events go in with their facts; a window reads the same either way.
    let mut store = Store::open(&db, Retention::default()).unwrap();
    let mut later = fixtures::rule_event();
    later.ts = Timestamp(fixtures::TS + 200 * S);
    store.insert(std::slice::from_ref(&later)).unwrap();
    store.close().unwrap();
    let mut all = events.clone();
    all.push(later);
    assert_eq!(
        content(&from_store(&db, &Query::default())),
        content(&from_jsonl(&all, "stored-later"))
    );
    let window = Query {
        since: Some(Timestamp(fixtures::TS + 60 * S)),
        until: Some(Timestamp(fixtures::TS + 121 * S)),
        ..Query::default()
    };
    let read = from_store(&db, &window);
    assert_eq!(
        read.source.events_read, 9,
        "networkd's removal and its suspension, the route, 5 kinds, the expiry"
    );
    let json_only: Vec<Event> = all
        .into_iter()
        .filter(|e| window.since.unwrap() <= e.ts && e.ts <= window.until.unwrap())
        .collect();
    let mut expected = from_jsonl(&json_only, "stored-window");
    expected.window.since = window.since;
    expected.window.until = window.until;
    assert_eq!(content(&read), content(&expected));
}

#[test]
fn a_filtered_report_of_a_store_reads_the_json() {
    let events = every_kind();
    let dir = TempDir::new("filter");
    let db = dir.0.join("events.db");
    let mut store = Store::open(&db, Retention::default()).unwrap();
    store.insert(&events).unwrap();
    store.close().unwrap();
    let mut q = Query::default();
    q.filter.comms = vec!["systemd-network".into()];
    let read = from_store(&db, &q);
    let networkd: Vec<Event> = events
        .iter()
        .filter(|e| {
            e.actor
                .as_ref()
                .is_some_and(|a| a.comm == "systemd-network")
        })
        .cloned()
        .collect();
    // Every event is read; the filter keeps networkd's.
    assert_eq!(read.source.events_read, events.len() as u64);
    let mut expected = from_jsonl(&networkd, "stored-filter");
    expected.filters = read.filters.clone();
    assert!(!networkd.is_empty() && networkd.len() < events.len());
    assert_eq!(content(&read), content(&expected));
}

#[test]
fn a_fact_naming_a_missing_actor_is_skipped_with_its_reason() {
    let events = every_kind();
    let dir = TempDir::new("missing");
    let db = dir.0.join("events.db");
    let mut store = Store::open(&db, Retention::default()).unwrap();
    store.insert(&events).unwrap();
    store.close().unwrap();
    let conn = rusqlite::Connection::open(&db).unwrap();
    // As a hand edit would: the store itself refuses to leave a fact without its actor.
    conn.pragma_update(None, "foreign_keys", false).unwrap();
    let orphaned = conn
        .execute(
            "DELETE FROM actors WHERE json LIKE '%\"container\":\"3f4e1c2b9a8d%'",
            [],
        )
        .unwrap();
    assert_eq!(orphaned, 1);
    drop(conn);
    let read = from_store(&db, &Query::default());
    // The events of the containerised `ip`.
    let gone = events
        .iter()
        .filter(|e| e.actor.as_ref().is_some_and(|a| a.container.is_some()))
        .count() as u64;
    assert!(gone > 0);
    assert_eq!(read.source.skipped_lines, gone);
    assert_eq!(read.source.events_read, events.len() as u64 - gone);
    let reason = &read.source.skipped_examples[0].reason;
    assert!(
        reason.contains("names actor") && reason.contains("which the store does not hold"),
        "{reason}"
    );
}
