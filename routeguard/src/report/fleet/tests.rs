//! The fleet report on hand-built captures and stores: nodes named by their host (or file),
//! inputs of one node folded together, cluster incidents found and told.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::*;
use crate::event::{fixtures, Event, Host, Object, Outcome, Route, Rule};
use crate::store::{Retention, Store};

const S: i128 = 1_000_000_000;

struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("rg-fleet-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn host(node: &str) -> Option<Arc<Host>> {
    Some(Arc::new(Host {
        node: Some(node.into()),
        ..fixtures::host()
    }))
}

/// systemd-networkd removing rule `prio` at `secs` on `node`.
fn networkd_rule(node: Option<&str>, secs: i128, prio: u32) -> Event {
    let mut ev = fixtures::rule_event();
    ev.ts = Timestamp(1_795_792_661 * S + secs * S);
    ev.outcome = Outcome::Removed;
    (ev.errno, ev.error) = (None, None);
    ev.object = Object::Rule(Rule {
        priority: Some(prio),
        table: Some(77),
        ..Rule::default()
    });
    let a = Arc::make_mut(ev.actor.as_mut().unwrap());
    a.comm = "systemd-network".into();
    a.exe = Some("/usr/lib/systemd/systemd-networkd".into());
    a.unit = Some("systemd-networkd.service".into());
    ev.host = node.and_then(host);
    ev
}

fn write_jsonl(dir: &Path, name: &str, events: &[Event]) -> Input {
    let path = dir.join(name);
    let text: String = events
        .iter()
        .map(|e| serde_json::to_string(e).unwrap() + "\n")
        .collect();
    std::fs::write(&path, text).unwrap();
    Input::Jsonl(path)
}

fn write_store(dir: &Path, name: &str, events: &[Event]) -> Input {
    let path = dir.join(name);
    let mut store = Store::open(&path, Retention::default()).unwrap();
    store.insert(events).unwrap();
    store.close().unwrap();
    Input::Store(path)
}

fn fleet(inputs: &[Input], gap_s: i128) -> FleetReport {
    let opts = Options {
        gap_ns: gap_s * S,
        ..Options::default()
    };
    build(inputs, &Query::default(), vec![], &opts, Timestamp(0)).unwrap()
}

#[test]
fn one_rule_removed_on_three_nodes_is_one_cluster_incident() {
    let dir = TempDir::new("three");
    let inputs = [
        write_jsonl(
            &dir.0,
            "a.jsonl",
            &[networkd_rule(Some("node-a"), 11, 32765)],
        ),
        write_store(&dir.0, "b.db", &[networkd_rule(Some("node-b"), 20, 32765)]),
        write_jsonl(
            &dir.0,
            "c.jsonl",
            &[networkd_rule(Some("node-c"), 40, 32765)],
        ),
    ];
    let r = fleet(&inputs, 60);
    let names: Vec<_> = r.nodes.iter().map(|n| n.node.as_str()).collect();
    assert_eq!(names, ["node-a", "node-b", "node-c"]);
    assert!(r.nodes.iter().all(|n| n.named_by == NamedBy::Node));
    assert_eq!(r.cluster_incidents.len(), 1);
    let c = &r.cluster_incidents[0];
    assert_eq!(
        (c.program.as_str(), c.program_key),
        ("systemd-networkd", "exe")
    );
    assert_eq!(
        (c.shared, c.nodes.as_slice(), c.removals),
        ("object", &[0, 1, 2][..], 3)
    );
    assert_eq!(
        c.summary,
        "systemd-networkd removed rule prio 32765 lookup 77 on 3 nodes between \
         2026-11-27 15:17:52.000 and 15:18:21.000 UTC (3 removal(s) on node-a, node-b, node-c; \
         program matched by exe /usr/lib/systemd/systemd-networkd)"
    );
    assert!(r.nodes.iter().all(|n| n.cluster_incidents == [1]));
}

#[test]
fn inputs_of_one_node_fold_together_and_one_node_is_no_cluster() {
    let dir = TempDir::new("one-node");
    let inputs = [
        write_jsonl(&dir.0, "a1.jsonl", &[networkd_rule(Some("node-a"), 1, 100)]),
        write_jsonl(&dir.0, "a2.jsonl", &[networkd_rule(Some("node-a"), 2, 100)]),
    ];
    let r = fleet(&inputs, 60);
    assert_eq!(r.nodes.len(), 1);
    assert_eq!((r.nodes[0].sources.len(), r.nodes[0].counts.events), (2, 2));
    assert!(r.cluster_incidents.is_empty());
}

#[test]
fn events_without_host_are_named_after_their_file() {
    let dir = TempDir::new("nohost");
    let inputs = [
        write_jsonl(&dir.0, "old.jsonl", &[networkd_rule(None, 0, 100)]),
        write_jsonl(
            &dir.0,
            "new.jsonl",
            &[networkd_rule(Some("node-b"), 5, 100)],
        ),
    ];
    let r = fleet(&inputs, 60);
    let old = r
        .nodes
        .iter()
        .find(|n| n.named_by == NamedBy::File)
        .unwrap();
    assert!(old.node.ends_with("old.jsonl"), "{}", old.node);
    assert!(old.notes[0].contains("names its host"), "{:?}", old.notes);
    assert_eq!(
        r.cluster_incidents.len(),
        1,
        "a file-named node still counts"
    );
}

#[test]
fn the_gap_bounds_a_cluster_incident() {
    let dir = TempDir::new("gap");
    let inputs = [
        write_jsonl(&dir.0, "a.jsonl", &[networkd_rule(Some("node-a"), 0, 100)]),
        write_jsonl(&dir.0, "b.jsonl", &[networkd_rule(Some("node-b"), 30, 100)]),
    ];
    assert_eq!(
        fleet(&inputs, 30).cluster_incidents.len(),
        1,
        "exactly the gap"
    );
    assert!(fleet(&inputs, 29).cluster_incidents.is_empty());
}

#[test]
fn same_table_different_routes_by_the_same_unit() {
    let dir = TempDir::new("table");
    let route = |node: &str, secs: i128, dst: &str, table: u32| {
        let mut ev = fixtures::route_event();
        ev.ts = Timestamp(1_795_792_661 * S + secs * S);
        ev.object = Object::Route(Route {
            dst: Some(dst.into()),
            table: Some(table),
            ..Route::default()
        });
        let a = Arc::make_mut(ev.actor.as_mut().unwrap());
        a.exe = None;
        a.unit = Some("kube-router.service".into());
        ev.host = host(node);
        ev
    };
    let inputs = [
        write_jsonl(&dir.0, "a.jsonl", &[route("a", 0, "10.1.0.0/24", 77)]),
        write_jsonl(&dir.0, "b.jsonl", &[route("b", 1, "10.2.0.0/24", 77)]),
        write_jsonl(&dir.0, "c.jsonl", &[route("c", 2, "10.3.0.0/24", 78)]),
    ];
    let r = fleet(&inputs, 60);
    assert_eq!(r.cluster_incidents.len(), 1, "{:?}", r.cluster_incidents);
    let c = &r.cluster_incidents[0];
    assert_eq!((c.shared, c.table, c.objects), ("table", Some(77), 2));
    assert_eq!(
        (c.program_key, c.program.as_str()),
        ("unit", "kube-router.service")
    );
    assert!(c
        .summary
        .starts_with("kube-router.service removed 2 routes of table 77 on 2 nodes"));
}

#[test]
fn a_missing_input_fails_before_any_is_read() {
    let dir = TempDir::new("missing");
    let inputs = [
        write_jsonl(&dir.0, "a.jsonl", &[networkd_rule(Some("node-a"), 0, 100)]),
        Input::Store(dir.0.join("absent.db")),
    ];
    let e = build(
        &inputs,
        &Query::default(),
        vec![],
        &Options::default(),
        Timestamp(0),
    )
    .unwrap_err()
    .to_string();
    assert!(
        e.contains("no event store at") && e.contains("absent.db"),
        "{e}"
    );
}

#[test]
fn programs_match_by_exe_then_unit_then_comm() {
    let mut a = fixtures::actor();
    a.exe = Some("/usr/sbin/ip".into());
    assert_eq!(Program::of(Some(&a)).name(), "ip");
    a.exe = None;
    a.unit = Some("x.service".into());
    assert_eq!(Program::of(Some(&a)).key, "unit");
    a.unit = None;
    assert_eq!(
        (Program::of(Some(&a)).key, Program::of(None).key),
        ("comm", "kernel")
    );
}
