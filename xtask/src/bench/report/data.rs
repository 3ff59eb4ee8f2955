//! The report bench's input: N synthetic events, written both as JSON lines (what `trace --json`
//! writes) and as an SQLite store with the daemon's schema (`routeguard/src/store/schema_v*.sql`,
//! the files the store migrates with): one `events` row per line, the same JSON in its `json`
//! column, and its `facts` row naming its actor and object, each stored once with the very text
//! the line carries (as `store::facts` writes them).
//!
//! The events imitate a busy host: 40 processes (networkd, CNI agents, `ip` runs) removing
//! routes and rules in bursts of 50, one burst every 2 s, a tenth failing with ESRCH; one event in
//! 20 is routeguard restoring the removal just before it (every 10,000th a `restore-suspended`).

use std::{
    collections::HashMap,
    fmt::Write as _,
    fs,
    io::{BufWriter, Write as _},
    path::Path,
};

use anyhow::{Context as _, Result};
use rusqlite::{params, Connection};

/// The store schema version the files below create (`PRAGMA user_version`): 2, or 3 for a
/// fleet's node (its events name their host).
const STORE_SCHEMA_VERSION: u32 = 2;
const NODE_STORE_SCHEMA_VERSION: u32 = 3;
const STORE_SCHEMA: [&str; 3] = [
    include_str!("../../../../routeguard/src/store/schema_v1.sql"),
    include_str!("../../../../routeguard/src/store/schema_v2.sql"),
    include_str!("../../../../routeguard/src/store/schema_v3.sql"),
];
const INSERT: &str = "INSERT INTO events (ts_ns, kind, cause, outcome, family, netns_inode, \
    netns_name, actor_pid, actor_comm, actor_unit, actor_container, route_table, json) \
    VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)";
const INSERT_FACTS: &str = "INSERT INTO facts (ts_ns, id, kind, cause, outcome, errno, error, \
    event, restore, actor_id, object_id) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)";
const INSERT_NODE_FACTS: &str = "INSERT INTO facts (ts_ns, id, kind, cause, outcome, errno, \
    error, event, restore, actor_id, object_id, host_id) \
    VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, 1)";
const NETNS: &str = r#"{"inode":4026531840,"name":"host"}"#;
/// Rows per transaction while filling the store.
const BATCH: u64 = 50_000;

const COMMS: &[(&str, &str, Option<&str>)] = &[
    (
        "systemd-network",
        "/usr/lib/systemd/systemd-networkd",
        Some("systemd-networkd.service"),
    ),
    ("kube-router", "/usr/local/bin/kube-router", None),
    (
        "NetworkManager",
        "/usr/sbin/NetworkManager",
        Some("NetworkManager.service"),
    ),
    ("ip", "/usr/sbin/ip", Some("session-1.scope")),
];

/// 2026-11-27T00:00:00Z.
const DAY_S: i64 = 1_795_737_600;

/// What the store keeps of one event beside its JSON (the columns `store::Row::of` fills).
struct Columns {
    ts_ns: i64,
    kind: &'static str,
    outcome: &'static str,
    pid: i64,
    comm: &'static str,
    unit: Option<&'static str>,
    failed: bool,
    event: &'static str,
    /// The members as the line spells them.
    actor: String,
    object: String,
    restore: Option<String>,
}

/// One node of a fleet: its events name it, and happen `shift_s` seconds later than another's
/// (the same change reaching nodes one after another).
pub struct Node {
    pub name: String,
    pub shift_s: i64,
}

impl Node {
    fn host_json(&self) -> String {
        format!(
            r#"{{"name":"{}","machine_id":null,"node":"{}"}}"#,
            self.name, self.name
        )
    }
}

/// Event `i` as a JSON line (without the newline) and its store columns.
fn event(i: u64, line: &mut String, node: Option<&Node>) -> Columns {
    // A restore answers the removal just before it: same actor, object and kind.
    let restore = match i {
        _ if i % 10_000 == 9_999 => Some(("restore-suspended", "suspended", 0)),
        _ if i % 20 == 19 => Some(("restore", "restored", 100 + i % 900)),
        _ => None,
    };
    let j = if restore.is_some() { i - 1 } else { i };
    let burst = j / 50;
    let secs = DAY_S + (burst * 2) as i64 + node.map_or(0, |n| n.shift_s);
    let latency_us = restore.map_or(0, |(_, _, us)| us);
    let nanos = (j % 50) * 3_000_000 + latency_us * 1000;
    let (h, m, s) = ((secs % 86_400) / 3600, (secs % 3600) / 60, secs % 60);
    let actor = (burst % 40) as usize;
    let (comm, exe, unit) = COMMS[actor % COMMS.len()];
    let pid = 1000 + actor as u64;
    // Removals at j % 10 == 9 fail; restores answer j % 20 == 18 (removed).
    let failed = restore.is_none() && j % 10 == 9;
    let obj = j % 20_000;
    let unit_json = unit.map_or("null".to_string(), |u| format!("\"{u}\""));
    let cgroup = unit.map_or("null".to_string(), |u| format!("\"/system.slice/{u}\""));
    let (kind, route, rule) = if j % 3 == 0 {
        (
            "rule",
            "null".to_string(),
            format!(
                r#"{{"priority":{},"table":77,"from":null,"to":null,"iif":null,"oif":null,"fwmark":null,"action":null,"protocol":null,"invert":false}}"#,
                100 + obj % 1000
            ),
        )
    } else {
        (
            "route",
            format!(
                r#"{{"table":77,"dst":"10.{}.{}.0/24","gateway":"10.0.0.1","dev":null,"oif":null,"protocol":null,"scope":null,"type":null,"priority":null,"src":null,"tos":null,"nhid":null}}"#,
                obj / 256 % 256,
                obj % 256
            ),
            "null".to_string(),
        )
    };
    let (event, restore_json) = match restore {
        None => ("removal", "null".to_string()),
        Some((event, outcome, us)) => (
            event,
            format!(
                r#"{{"policy":"table 77","outcome":"{outcome}","latency_us":{},"attempt":{},"errno":null,"error":null,"detail":null,"hint":null}}"#,
                if outcome == "restored" {
                    us.to_string()
                } else {
                    "null".into()
                },
                if outcome == "restored" { 1 } else { 5 },
            ),
        ),
    };
    let outcome = if failed { "failed" } else { "removed" };
    let actor_json = format!(
        r#"{{"pid":{pid},"tid":{pid},"comm":"{comm}","exe":"{exe}","cmdline":"{exe} --sync","argv":["{exe}","--sync"],"uid":0,"ppid":1,"ancestry":[{{"pid":1,"comm":"systemd"}}],"cgroup":{cgroup},"unit":{unit_json},"container":null}}"#
    );
    line.clear();
    let _ = write!(
        line,
        r#"{{"schema_version":1,"ts":"2026-11-27T{h:02}:{m:02}:{s:02}.{nanos:09}Z","kind":"{kind}","family":"inet","cause":"request","outcome":"{outcome}","errno":{},"error":{},"capture":"syscall","netns":{NETNS},"actor":{actor_json},"request":{{"syscall":"sendmsg","op":"RTM_DEL{}","seq":{j},"nlmsg_flags":5,"ack_requested":true}},"route":{route},"rule":{rule},"nexthop":null,"link":null,"address":null,"trigger":null,"event":"{event}","restore":{restore_json},"replacement":null{}}}"#,
        if failed { "3" } else { "null" },
        if failed { "\"ESRCH\"" } else { "null" },
        kind.to_uppercase(),
        node.map_or(String::new(), |n| format!(r#","host":{}"#, n.host_json())),
    );
    Columns {
        ts_ns: secs * 1_000_000_000 + nanos as i64,
        kind,
        outcome,
        pid: pid as i64,
        comm,
        unit,
        failed,
        event,
        actor: actor_json,
        object: if kind == "rule" { rule } else { route },
        restore: restore.is_some().then_some(restore_json),
    }
}

/// Writes `n` events to `jsonl` and to a new store at `db`; returns the JSON bytes written.
pub fn write(jsonl: &Path, db: &Path, n: u64) -> Result<u64> {
    write_as(Some(jsonl), db, n, None)
}

/// Writes `n` events of `node` to a new store at `db` (schema version 3: each event names the
/// node as its host).
pub fn write_node(db: &Path, n: u64, node: &Node) -> Result<()> {
    write_as(None, db, n, Some(node)).map(drop)
}

fn write_as(jsonl: Option<&Path>, db: &Path, n: u64, node: Option<&Node>) -> Result<u64> {
    let mut w = match jsonl {
        Some(p) => {
            let file = fs::File::create(p).with_context(|| format!("creating {}", p.display()))?;
            Some(BufWriter::with_capacity(1 << 20, file))
        }
        None => None,
    };
    for suffix in ["", "-wal", "-shm"] {
        let _ = fs::remove_file(format!("{}{suffix}", db.display()));
    }
    let mut conn = Connection::open(db).with_context(|| format!("creating {}", db.display()))?;
    // As the daemon opens it (WAL); durability is not the point while filling it.
    conn.query_row("PRAGMA journal_mode = WAL", [], |_| Ok(()))?;
    conn.pragma_update(None, "synchronous", "OFF")?;
    let version = if node.is_some() {
        NODE_STORE_SCHEMA_VERSION
    } else {
        STORE_SCHEMA_VERSION
    };
    for sql in &STORE_SCHEMA[..version as usize] {
        conn.execute_batch(sql)
            .context("creating the store schema")?;
    }
    conn.pragma_update(None, "user_version", version)?;
    if let Some(node) = node {
        conn.execute(
            "INSERT INTO hosts (id, json) VALUES (1, ?1)",
            [node.host_json()],
        )?;
    }
    let mut bytes = 0u64;
    let mut line = String::with_capacity(1400);
    // Row id of each distinct actor and object text, as the store's writer interns them.
    let mut actors: HashMap<String, i64> = HashMap::new();
    let mut objects: HashMap<(&str, String), i64> = HashMap::new();
    let mut i = 0;
    while i < n {
        let tx = conn.transaction()?;
        {
            let mut insert = tx.prepare_cached(INSERT)?;
            let mut insert_facts = tx.prepare_cached(if node.is_some() {
                INSERT_NODE_FACTS
            } else {
                INSERT_FACTS
            })?;
            let mut insert_actor = tx.prepare_cached("INSERT INTO actors (json) VALUES (?1)")?;
            let mut insert_object =
                tx.prepare_cached("INSERT INTO objects (kind, netns, json) VALUES (?1, ?2, ?3)")?;
            for i in i..(i + BATCH).min(n) {
                let c = event(i, &mut line, node);
                insert.execute(params![
                    c.ts_ns,
                    c.kind,
                    "request",
                    c.outcome,
                    "inet",
                    4_026_531_840i64,
                    "host",
                    c.pid,
                    c.comm,
                    c.unit,
                    None::<&str>,
                    77,
                    line,
                ])?;
                let id = tx.last_insert_rowid();
                let actor = match actors.get(&c.actor) {
                    Some(&a) => a,
                    None => {
                        insert_actor.execute([&c.actor])?;
                        *actors.entry(c.actor).or_insert(tx.last_insert_rowid())
                    }
                };
                let key = (c.kind, c.object);
                let object = match objects.get(&key) {
                    Some(&o) => o,
                    None => {
                        insert_object.execute(params![key.0, NETNS, key.1])?;
                        *objects.entry(key).or_insert(tx.last_insert_rowid())
                    }
                };
                insert_facts.execute(params![
                    c.ts_ns,
                    id,
                    c.kind,
                    "request",
                    c.outcome,
                    c.failed.then_some(3),
                    c.failed.then_some("ESRCH"),
                    c.event,
                    c.restore,
                    actor,
                    object,
                ])?;
                if let Some(w) = w.as_mut() {
                    line.push('\n');
                    w.write_all(line.as_bytes())?;
                    bytes += line.len() as u64;
                }
            }
        }
        tx.commit()?;
        i = (i + BATCH).min(n);
    }
    if let Some(w) = w.as_mut() {
        w.flush()?;
    }
    conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))?;
    Ok(bytes)
}
