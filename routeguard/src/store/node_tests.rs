//! Schema version 3: the host and the actor's pod of each event, stored so that a report can
//! group by node; stores of versions 1 and 2 still read, with no host.

use std::ops::ControlFlow;

use rusqlite::Connection;

use super::*;
use crate::attribution::test_dir::TestDir;
use crate::event::fixtures::{full_event, host, route_event, TS};
use crate::event::Timestamp;

fn hosts_and_facts(path: &Path) -> (Vec<(i64, String)>, Vec<Option<i64>>) {
    let reader = read_facts(path).unwrap().expect("facts");
    let mut hosts = Vec::new();
    reader
        .hosts(|id, json| hosts.push((id, json.to_string())))
        .unwrap();
    let mut facts = Vec::new();
    reader
        .scan(None, None, |f| {
            facts.push(f.host);
            ControlFlow::Continue(())
        })
        .unwrap();
    (hosts, facts)
}

#[test]
fn host_and_pod_are_stored_as_columns_and_facts() {
    let dir = TestDir::new("store-v3");
    let path = dir.path().join("events.db");
    let mut store = Store::open(&path, Retention::default()).unwrap();
    let mut later = full_event();
    later.ts = Timestamp(TS + 1);
    store.insert(&[route_event(), later]).unwrap();
    store.close().unwrap();

    let conn = Connection::open(&path).unwrap();
    let row: (
        String,
        String,
        String,
        Option<String>,
        Option<String>,
        Option<String>,
    ) = conn
        .query_row(
            "SELECT host_name, host_machine_id, host_node, actor_pod_namespace, actor_pod_name, \
             actor_pod_uid FROM events ORDER BY id DESC LIMIT 1",
            [],
            |r| {
                Ok((
                    r.get(0)?,
                    r.get(1)?,
                    r.get(2)?,
                    r.get(3)?,
                    r.get(4)?,
                    r.get(5)?,
                ))
            },
        )
        .unwrap();
    let h = host();
    assert_eq!(
        row,
        (
            h.name.clone(),
            h.machine_id.clone().unwrap(),
            h.node.clone().unwrap(),
            Some("kube-system".into()),
            Some("calico-node-x7k2".into()),
            Some("0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0".into()),
        )
    );

    // One host row for both events, read back as the event's `host` member.
    let (hosts, facts) = hosts_and_facts(&path);
    assert_eq!(hosts.len(), 1);
    let (id, json) = &hosts[0];
    assert_eq!(serde_json::from_str::<Host>(json).unwrap(), h);
    assert_eq!(facts, [Some(*id), Some(*id)]);
    // The event's JSON carries them too.
    let events = read_events(&path, None, None).unwrap();
    assert_eq!(events[1]["host"]["node"], "ip-10-0-3-7.ec2.internal");
    assert_eq!(events[1]["actor"]["pod"]["name"], "calico-node-x7k2");
}

#[test]
fn older_stores_read_without_hosts_and_upgrade() {
    let dir = TestDir::new("store-v2");
    // A version 2 store as an older daemon (or the report bench) wrote it, read as it is: a
    // report opens stores read-only and does not migrate them.
    let v2 = dir.path().join("v2.db");
    {
        let conn = Connection::open(&v2).unwrap();
        conn.execute_batch(schema::V1).unwrap();
        conn.execute_batch(schema::V2).unwrap();
        conn.pragma_update(None, "user_version", 2).unwrap();
    }
    let (hosts, facts) = hosts_and_facts(&v2);
    assert!(hosts.is_empty() && facts.is_empty());

    // A version 1 store with events, upgraded by a daemon: its events have no host, new ones do.
    let v1 = dir.path().join("v1.db");
    let mut old = route_event();
    old.host = None;
    create_v1(&v1, &[old]);
    let mut store = Store::open(&v1, Retention::default()).unwrap();
    let mut new = route_event();
    new.ts = Timestamp(TS + 1);
    store.insert(&[new]).unwrap();
    store.close().unwrap();
    let (hosts, facts) = hosts_and_facts(&v1);
    assert_eq!(hosts.len(), 1);
    assert_eq!(facts, [None, Some(hosts[0].0)]);
    let version: u32 = Connection::open(&v1)
        .unwrap()
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .unwrap();
    assert_eq!(version, SCHEMA_VERSION);
}
