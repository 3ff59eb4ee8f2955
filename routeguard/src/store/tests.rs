use std::{
    fs,
    os::unix::fs::PermissionsExt,
    path::{Path, PathBuf},
    sync::atomic::{AtomicU32, Ordering},
    time::Duration,
};

use super::*;
use crate::{
    event::fixtures::{route_event, rule_event, TS},
    event::{Timestamp, SCHEMA_VERSION as EVENT_SCHEMA_VERSION},
};

/// A directory of its own under the temp dir, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> Self {
        static N: AtomicU32 = AtomicU32::new(0);
        let dir = std::env::temp_dir().join(format!(
            "routeguard-store-test-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        fs::create_dir_all(&dir).unwrap();
        Self(dir)
    }

    fn join(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

fn mode(path: &Path) -> u32 {
    fs::metadata(path).unwrap().permissions().mode() & 0o777
}

fn at(mut ev: Event, ts: i128) -> Event {
    ev.ts = Timestamp(ts);
    ev
}

#[test]
fn inserts_and_reads_back_the_json_sink_line() {
    let dir = TempDir::new();
    let path = dir.join("events.db");
    let mut store = Store::open(&path, Retention::default()).unwrap();
    let events = [route_event(), at(rule_event(), TS + 1)];
    assert_eq!(store.insert(&events).unwrap(), 2);
    assert_eq!(store.count().unwrap(), 2);

    let read = read_events(&path, None, None).unwrap();
    assert_eq!(read.len(), 2);
    for (value, ev) in read.iter().zip(&events) {
        let line: serde_json::Value = serde_json::from_str(&sink::json::to_line(ev)).unwrap();
        assert_eq!(value, &line);
    }
    assert_eq!(read[0]["kind"], "route");
    assert_eq!(read[0]["schema_version"], EVENT_SCHEMA_VERSION);
    assert_eq!(read[1]["kind"], "rule");
    store.close().unwrap();
    // Still readable once the writer has gone.
    assert_eq!(read_events(&path, None, None).unwrap().len(), 2);
}

#[test]
fn indexed_columns_copy_the_event() {
    let dir = TempDir::new();
    let path = dir.join("events.db");
    let mut store = Store::open(&path, Retention::default()).unwrap();
    store.insert(&[route_event()]).unwrap();
    let row = store
        .conn
        .query_row(
            "SELECT ts_ns, kind, cause, outcome, family, netns_inode, netns_name, actor_pid, \
             actor_comm, actor_unit, actor_container, route_table FROM events",
            [],
            |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, String>(2)?,
                    r.get::<_, String>(3)?,
                    r.get::<_, Option<String>>(4)?,
                    r.get::<_, i64>(5)?,
                    r.get::<_, Option<String>>(6)?,
                    r.get::<_, i64>(7)?,
                    r.get::<_, String>(8)?,
                    r.get::<_, Option<String>>(9)?,
                    r.get::<_, Option<String>>(10)?,
                    r.get::<_, i64>(11)?,
                ))
            },
        )
        .unwrap();
    assert_eq!(
        row,
        (
            TS as i64,
            "route".into(),
            "request".into(),
            "removed".into(),
            Some("inet".into()),
            4_026_532_456,
            Some("blue".into()),
            12345,
            "ip".into(),
            Some("demo.service".into()),
            None,
            77,
        )
    );
}

#[test]
fn file_is_private_and_versioned() {
    let dir = TempDir::new();
    let path = dir.join("sub/dir/events.db");
    let store = Store::open(&path, Retention::default()).unwrap();
    assert_eq!(mode(&path), 0o600);
    assert_eq!(mode(path.parent().unwrap()), 0o700);
    let version: u32 = store
        .conn
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .unwrap();
    assert_eq!(version, SCHEMA_VERSION);
    let journal: String = store
        .conn
        .query_row("PRAGMA journal_mode", [], |r| r.get(0))
        .unwrap();
    assert_eq!(journal, "wal");
    drop(store);
    // Reopening migrates nothing and keeps the rows' table.
    Store::open(&path, Retention::default()).unwrap();
}

#[test]
fn loose_mode_is_tightened() {
    let dir = TempDir::new();
    let path = dir.join("events.db");
    fs::write(&path, b"").unwrap();
    fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
    Store::open(&path, Retention::default()).unwrap();
    assert_eq!(mode(&path), 0o600);
}

#[test]
fn reads_a_time_window_in_time_order() {
    let dir = TempDir::new();
    let path = dir.join("events.db");
    let mut store = Store::open(&path, Retention::default()).unwrap();
    // Inserted out of order: reads come back by event time.
    store
        .insert(&[at(route_event(), 30), at(rule_event(), 10)])
        .unwrap();
    store.insert(&[at(route_event(), 20)]).unwrap();
    let ts = |v: &[serde_json::Value]| -> Vec<String> {
        v.iter().map(|e| e["ts"].as_str().unwrap().into()).collect()
    };
    let all = read_events(&path, None, None).unwrap();
    assert_eq!(
        ts(&all),
        [10, 20, 30].map(|n| Timestamp(n).rfc3339()).to_vec()
    );
    let window = read_events(&path, Some(15), Some(30)).unwrap();
    assert_eq!(
        ts(&window),
        [20, 30].map(|n| Timestamp(n).rfc3339()).to_vec()
    );
    assert!(read_events(&path, Some(31), None).unwrap().is_empty());
}

/// A store that keeps events for a minute.
fn keeping_a_minute(path: &Path) -> Store {
    let minute = Retention {
        max_age: Some(Duration::from_secs(60)),
        max_rows: None,
    };
    Store::open(path, minute).unwrap()
}

#[test]
fn prunes_by_age_and_by_count() {
    let dir = TempDir::new();
    let path = dir.join("events.db");
    let now: i64 = 1_000_000_000_000;
    let mut store = keeping_a_minute(&path);
    let old = i128::from(now) - 61_000_000_000;
    let recent = i128::from(now) - 1_000_000_000;
    store
        .insert(&[at(route_event(), old), at(route_event(), recent)])
        .unwrap();
    assert_eq!(store.prune_at(now).unwrap(), 1);
    assert_eq!(store.count().unwrap(), 1);

    store.set_retention(Retention {
        max_age: None,
        max_rows: Some(2),
    });
    let batch: Vec<Event> = (0..5).map(|i| at(rule_event(), recent + i)).collect();
    store.insert(&batch).unwrap();
    assert_eq!(store.prune_at(now).unwrap(), 4);
    let kept = read_events(&path, None, None).unwrap();
    assert_eq!(kept.len(), 2);
    // The newest two survive.
    assert_eq!(kept[1]["ts"], Timestamp(recent + 4).rfc3339());
    assert_eq!(kept[0]["ts"], Timestamp(recent + 3).rfc3339());
}

#[test]
fn missing_and_newer_stores_are_refused_with_the_path() {
    let dir = TempDir::new();
    let path = dir.join("absent.db");
    let err = read_events(&path, None, None).unwrap_err();
    assert!(matches!(err, StoreError::Missing { .. }));
    assert!(err.to_string().contains("absent.db"), "{err}");

    let newer = dir.join("newer.db");
    let conn = Connection::open(&newer).unwrap();
    conn.pragma_update(None, "user_version", SCHEMA_VERSION + 1)
        .unwrap();
    drop(conn);
    let err = Store::open(&newer, Retention::default()).err().unwrap();
    assert!(matches!(err, StoreError::Version { .. }), "{err}");
    assert!(err.to_string().contains("newer.db"), "{err}");
    assert!(matches!(
        read_events(&newer, None, None).unwrap_err(),
        StoreError::Version { .. }
    ));
}

#[test]
fn a_file_that_is_not_sqlite_is_named() {
    let dir = TempDir::new();
    let path = dir.join("garbage.db");
    fs::write(&path, vec![b'x'; 4096]).unwrap();
    let err = Store::open(&path, Retention::default()).err().unwrap();
    assert!(matches!(err, StoreError::Open { .. }), "{err}");
    assert!(err.to_string().contains("garbage.db"), "{err}");
}

#[test]
fn scan_hands_over_each_line_in_time_order_and_refuses_rows_spanning_lines() {
    let dir = TempDir::new();
    let path = dir.join("events.db");
    let mut store = Store::open(&path, Retention::default()).unwrap();
    store
        .insert(&[at(route_event(), TS + 2), at(rule_event(), TS + 1)])
        .unwrap();
    let mut seen = Vec::new();
    scan_json(&path, None, None, |_, json| {
        seen.push(String::from_utf8(json.to_vec()).unwrap());
        ControlFlow::Continue(())
    })
    .unwrap();
    assert_eq!(seen.len(), 2);
    assert_eq!(seen[0], sink::json::to_line(&at(rule_event(), TS + 1)));
    assert_eq!(seen[1], sink::json::to_line(&at(route_event(), TS + 2)));
    // Stops when asked.
    let mut n = 0;
    scan_json(&path, None, None, |_, _| {
        n += 1;
        ControlFlow::Break(())
    })
    .unwrap();
    assert_eq!(n, 1);

    store
        .conn
        .execute(
            "UPDATE events SET json = '{\n}' WHERE ts_ns = ?1",
            [TS as i64 + 2],
        )
        .unwrap();
    let err = scan_json(&path, None, None, |_, _| ControlFlow::Continue(())).unwrap_err();
    assert!(matches!(err, StoreError::Multiline { .. }), "{err}");
    assert!(err.to_string().contains("events.db"), "{err}");
}

/// (facts, actors, objects) rows.
fn fact_rows(store: &Store) -> (i64, i64, i64) {
    let count = |table: &str| -> i64 {
        store
            .conn
            .query_row(&format!("SELECT COUNT(*) FROM {table}"), [], |r| r.get(0))
            .unwrap()
    };
    (count("facts"), count("actors"), count("objects"))
}

#[test]
fn facts_go_with_their_events_and_unnamed_actors_and_objects_are_swept() {
    let dir = TempDir::new();
    let path = dir.join("events.db");
    let now: i64 = 1_000_000_000_000;
    let mut store = keeping_a_minute(&path);
    let (old, recent) = (i128::from(now) - 61_000_000_000, i128::from(now) - 1);
    let mut other = at(route_event(), old);
    std::sync::Arc::make_mut(other.actor.as_mut().unwrap()).pid = 999;
    // The same actor and route twice, another actor once, and a rule: each stored once.
    store
        .insert(&[
            at(route_event(), recent),
            at(route_event(), recent + 1),
            other,
            at(rule_event(), recent + 2),
        ])
        .unwrap();
    assert_eq!(fact_rows(&store), (4, 3, 2));
    assert_eq!(store.prune_at(now).unwrap(), 1);
    assert_eq!(
        fact_rows(&store),
        (3, 2, 2),
        "pid 999 went with its only event"
    );
    // Swept once an hour: the next prune leaves the table alone.
    store.insert(&[at(rule_event(), old)]).unwrap();
    let before = fact_rows(&store);
    assert_eq!(store.prune_at(now).unwrap(), 1);
    assert_eq!(fact_rows(&store), (before.0 - 1, before.1, before.2));
}

#[test]
fn an_upgrade_fills_in_the_facts_of_stored_events() {
    let dir = TempDir::new();
    let path = dir.join("events.db");
    create_v1(&path, &[route_event(), at(rule_event(), TS + 1)]);
    {
        let conn = Connection::open(&path).unwrap();
        // A row changed by hand: no facts, and no failed upgrade.
        conn.execute(
            "INSERT INTO events (ts_ns, kind, cause, outcome, json) VALUES (1, 'route', 'request', 'removed', 'not json')",
            [],
        )
        .unwrap();
    }
    let store = Store::open(&path, Retention::default()).unwrap();
    assert_eq!(store.count().unwrap(), 3);
    assert_eq!(fact_rows(&store), (2, 2, 2));
    let mut seen = Vec::new();
    read_facts(&path)
        .unwrap()
        .unwrap()
        .scan(None, None, |f| {
            seen.push((f.ts_ns, f.kind.to_owned(), f.outcome.to_owned(), f.errno));
            ControlFlow::Continue(())
        })
        .unwrap();
    assert_eq!(
        seen,
        [
            (TS as i64, "route".into(), "removed".into(), None),
            (TS as i64 + 1, "rule".into(), "failed".into(), Some(2)),
        ]
    );
}

#[test]
fn a_symlink_at_the_store_or_its_log_is_refused() {
    use std::os::unix::fs::symlink;
    let dir = TempDir::new();
    let target = dir.join("elsewhere.db");
    let path = dir.join("events.db");
    symlink(&target, &path).unwrap();
    let err = Store::open(&path, Retention::default()).err().unwrap();
    assert!(matches!(err, StoreError::Create { .. }), "{err}");
    assert!(err.to_string().contains("is a symbolic link"), "{err}");
    assert!(!target.exists(), "nothing created through the link");
    fs::remove_file(&path).unwrap();
    Store::open(&path, Retention::default())
        .unwrap()
        .close()
        .unwrap();
    let wal = dir.join("events.db-wal");
    let _ = fs::remove_file(&wal);
    symlink(&target, &wal).unwrap();
    let err = Store::open(&path, Retention::default()).err().unwrap();
    assert!(
        err.to_string().contains("events.db-wal is a symbolic link"),
        "{err}"
    );
    assert!(!target.exists());
}

#[test]
fn a_looser_log_and_shared_memory_file_are_set_to_0600() {
    let dir = TempDir::new();
    let path = dir.join("events.db");
    let store = Store::open(&path, Retention::default()).unwrap();
    drop(store);
    for suffix in ["-wal", "-shm"] {
        let p = dir.join(&format!("events.db{suffix}"));
        fs::write(&p, b"").unwrap();
        fs::set_permissions(&p, fs::Permissions::from_mode(0o644)).unwrap();
    }
    let mut store = Store::open(&path, Retention::default()).unwrap();
    store.insert(&[route_event()]).unwrap();
    for name in ["events.db", "events.db-wal", "events.db-shm"] {
        assert_eq!(mode(&dir.join(name)), 0o600, "{name}");
    }
}

/// What the daemon does with a store it cannot use: moves it (and its log) aside, keeps it, and
/// starts a new one at the path.
#[test]
fn a_corrupt_or_newer_store_is_moved_aside_and_a_new_one_started() {
    let dir = TempDir::new();
    let path = dir.join("events.db");
    fs::write(&path, vec![b'x'; 4096]).unwrap();
    fs::write(dir.join("events.db-wal"), b"old log").unwrap();
    // Moved aside, a store's log goes with it.
    let why = Store::open(&path, Retention::default()).err().unwrap();
    assert!(why.is_unusable(), "{why}");
    fs::write(dir.join("events.db-wal"), b"old log").unwrap();
    let moved = set_aside(&path, &why).unwrap();
    let mut wal = moved.to.clone().into_os_string();
    wal.push("-wal");
    assert_eq!(fs::read(&wal).unwrap(), b"old log", "the log went with it");
    assert!(!path.exists() && !dir.join("events.db-wal").exists());
    fs::rename(&moved.to, &path).unwrap();
    fs::remove_file(&wal).unwrap();
    fs::write(dir.join("events.db-wal"), b"old log").unwrap();
    let (mut store, aside) = Store::open_or_set_aside(&path, Retention::default()).unwrap();
    let aside = aside.expect("moved aside");
    assert_eq!(aside.from, path);
    let name = aside.to.file_name().unwrap().to_str().unwrap().to_owned();
    assert!(
        name.starts_with("events.db.corrupt-") && name.ends_with('Z'),
        "{name}"
    );
    assert!(aside.reason.contains("not a database"), "{}", aside.reason);
    assert_eq!(
        fs::read(&aside.to).unwrap(),
        vec![b'x'; 4096],
        "kept as it was"
    );
    // (SQLite itself dropped the log, which was no log, when the failed open closed.)
    assert_ne!(
        fs::read(dir.join("events.db-wal")).ok().as_deref(),
        Some(&b"old log"[..])
    );
    store.insert(&[route_event()]).unwrap();
    assert_eq!(store.count().unwrap(), 1);
    store.close().unwrap();

    // A newer schema: refused by `open`, moved aside by the daemon's open.
    let conn = Connection::open(&path).unwrap();
    conn.pragma_update(None, "user_version", SCHEMA_VERSION + 1)
        .unwrap();
    drop(conn);
    assert!(matches!(
        Store::open(&path, Retention::default()).err().unwrap(),
        StoreError::Version { .. }
    ));
    let (store, aside) = Store::open_or_set_aside(&path, Retention::default()).unwrap();
    let aside = aside.unwrap();
    assert!(
        aside.to.to_str().unwrap().contains("events.db.newer-"),
        "{}",
        aside.to.display()
    );
    assert_eq!(store.count().unwrap(), 0);
    // The moved store still says what it is.
    assert!(matches!(
        read_events(&aside.to, None, None).unwrap_err(),
        StoreError::Version { .. }
    ));

    // A file that merely cannot be opened now is left where it is.
    let (_, none) = Store::open_or_set_aside(&path, Retention::default()).unwrap();
    assert!(none.is_none());
}

#[test]
fn a_removed_store_is_noticed_and_its_orphaned_log_not_replayed() {
    let dir = TempDir::new();
    let path = dir.join("events.db");
    let mut store = Store::open(&path, Retention::default()).unwrap();
    store.insert(&[route_event()]).unwrap();
    assert!(!store.is_replaced());
    fs::remove_file(&path).unwrap();
    assert!(store.is_replaced());
    // The log of the removed file is still there: a new store must not take its pages.
    assert!(dir.join("events.db-wal").exists());
    let fresh = Store::open(&path, Retention::default()).unwrap();
    assert_eq!(fresh.count().unwrap(), 0);
    let orphans: Vec<String> = fs::read_dir(&dir.0)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains(".orphan-"))
        .collect();
    assert!(orphans.iter().any(|n| n.ends_with("-wal")), "{orphans:?}");
    drop(store);
}

fn index_names(path: &Path) -> Vec<String> {
    let conn = Connection::open(path).unwrap();
    let mut stmt = conn
        .prepare("SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'events' ORDER BY name")
        .unwrap();
    let names = stmt
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    names
}

/// Version 4 drops the indexes nothing read; a version 3 store with events keeps them (and
/// their facts) and is readable before and after.
#[test]
fn a_version_3_store_upgrades_without_the_unread_indexes() {
    let dir = TempDir::new();
    let path = dir.join("v3.db");
    create_v1(&path, &[route_event(), at(rule_event(), TS + 1)]);
    {
        let mut conn = Connection::open(&path).unwrap();
        let tx = conn.transaction().unwrap();
        tx.execute_batch(schema::V2).unwrap();
        facts::backfill(&tx, &path).unwrap();
        tx.execute_batch(schema::V3).unwrap();
        tx.pragma_update(None, "user_version", 3).unwrap();
        tx.commit().unwrap();
    }
    assert_eq!(
        index_names(&path),
        ["events_actor_comm_ts", "events_kind_ts", "events_ts"]
    );
    let mut store = Store::open(&path, Retention::default()).unwrap();
    assert_eq!(index_names(&path), ["events_ts"]);
    store.insert(&[at(route_event(), TS + 2)]).unwrap();
    store.close().unwrap();
    let events = read_events(&path, None, None).unwrap();
    assert_eq!(events.len(), 3);
    assert_eq!(events[1]["kind"], "rule");
    let mut kinds = Vec::new();
    read_facts(&path)
        .unwrap()
        .expect("facts")
        .scan(None, None, |f| {
            kinds.push(f.kind.to_string());
            ControlFlow::Continue(())
        })
        .unwrap();
    assert_eq!(kinds, ["route", "rule", "route"]);
    let version: u32 = Connection::open(&path)
        .unwrap()
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .unwrap();
    assert_eq!(version, 4);
}
