//! What `routeguard report` reads of each event (schema version 2): a `facts` row beside each
//! `events` row, naming its actor and object, which are stored once each (`schema_v2.sql`).
//!
//! A report of a million events used to read every event's whole JSON (1.2 GB) and parse it; the
//! facts of the same events are a few tens of MB of columns. The JSON stays the event of record,
//! and the facts are written from the same [`Event`] in the same transaction.

use std::collections::HashMap;
use std::hash::BuildHasher as _;
use std::ops::ControlFlow;
use std::path::Path;

use rusqlite::{params, Connection, Transaction};
use serde::Serialize;

use super::{clamp_ns, label, StoreError};
use crate::event::{Actor, Event, Host, Object};

/// Distinct actors and objects whose row ids the writer remembers (16 bytes each); past this it
/// forgets them all and starts again (a host whose every removal is a new `ip` process, or a
/// flush of a million routes), and stores the ones it meets again once more.
const REMEMBERED: usize = 1 << 17;

/// An event's facts as they are written.
pub(super) struct Facts<'e> {
    pub(super) kind: String,
    pub(super) cause: String,
    pub(super) outcome: String,
    errno: Option<i32>,
    error: Option<&'e str>,
    event: String,
    restore: Option<String>,
    /// `None` when no process caused the event.
    actor: Option<&'e Actor>,
    object: ObjectKey,
    /// `None` for an event read from a capture that named no host.
    host: Option<&'e Host>,
}

#[derive(Hash)]
struct ObjectKey {
    kind: String,
    /// The `netns` member's JSON.
    netns: String,
    /// The JSON of the member named by `kind`, or `null`.
    json: String,
}

impl<'e> Facts<'e> {
    pub(super) fn of(ev: &'e Event) -> Self {
        let member = match &ev.object {
            Object::Route(r) => json(r),
            Object::Rule(r) => json(r),
            Object::Nexthop(n) => json(n),
            Object::Link(l) => json(l),
            Object::Address(a) => json(a),
        };
        let kind = label(&ev.kind());
        Facts {
            object: ObjectKey {
                kind: kind.clone(),
                netns: json(&ev.netns),
                json: member,
            },
            kind,
            cause: label(&ev.cause),
            outcome: label(&ev.outcome),
            errno: ev.errno,
            error: ev.error.as_deref(),
            event: label(&ev.event),
            restore: ev.restore.as_ref().map(json),
            actor: ev.actor.as_deref(),
            host: ev.host.as_deref(),
        }
    }
}

/// A member's JSON, as the event's JSON spells it.
fn json<T: Serialize>(value: &T) -> String {
    // Event members are plain data: serialising them cannot fail.
    serde_json::to_string(value).unwrap_or_else(|_| "null".into())
}

/// The writer's memory of actor and object row ids, by a 64-bit hash of their text: kept
/// small, so that a burst of distinct objects leaves no tens of MB behind (two texts of the
/// 2^17 remembered share a hash with odds of about 1 in 10^9). Ids handed out by a transaction
/// that did not commit must be forgotten ([`Interner::forget`]): their rows are gone.
#[derive(Default)]
pub(super) struct Interner {
    /// The last actor stored, compared field by field: events come in bursts from one process,
    /// and this spares them serialising it.
    last_actor: Option<(Actor, i64)>,
    hasher: foldhash::quality::RandomState,
    actors: HashMap<u64, i64, foldhash::fast::RandomState>,
    objects: HashMap<u64, i64, foldhash::fast::RandomState>,
    /// The last host stored: a daemon's events all name the same one.
    last_host: Option<(Host, i64)>,
}

impl Interner {
    pub(super) fn forget(&mut self) {
        self.last_actor = None;
        self.last_host = None;
        self.actors.clear();
        self.objects.clear();
    }

    fn actor(&mut self, tx: &Transaction, actor: &Actor) -> rusqlite::Result<i64> {
        if let Some((last, id)) = &self.last_actor {
            if last == actor {
                return Ok(*id);
            }
        }
        let text = json(actor);
        let hash = self.hasher.hash_one(&text);
        let id = match self.actors.get(&hash) {
            Some(&id) => id,
            None => {
                tx.prepare_cached("INSERT INTO actors (json) VALUES (?1)")?
                    .execute([&text])?;
                let id = tx.last_insert_rowid();
                if self.actors.len() >= REMEMBERED {
                    self.actors.clear();
                }
                self.actors.insert(hash, id);
                id
            }
        };
        self.last_actor = Some((actor.clone(), id));
        Ok(id)
    }

    fn object(&mut self, tx: &Transaction, key: ObjectKey) -> rusqlite::Result<i64> {
        let hash = self.hasher.hash_one(&key);
        if let Some(&id) = self.objects.get(&hash) {
            return Ok(id);
        }
        tx.prepare_cached("INSERT INTO objects (kind, netns, json) VALUES (?1, ?2, ?3)")?
            .execute(params![key.kind, key.netns, key.json])?;
        let id = tx.last_insert_rowid();
        if self.objects.len() >= REMEMBERED {
            self.objects.clear();
        }
        self.objects.insert(hash, id);
        Ok(id)
    }

    fn host(&mut self, tx: &Transaction, host: &Host) -> rusqlite::Result<i64> {
        if let Some((last, id)) = &self.last_host {
            if last == host {
                return Ok(*id);
            }
        }
        tx.prepare_cached("INSERT INTO hosts (json) VALUES (?1)")?
            .execute([json(host)])?;
        let id = tx.last_insert_rowid();
        self.last_host = Some((host.clone(), id));
        Ok(id)
    }

    /// Writes the facts of the event stored as row `id` at `ts_ns`.
    pub(super) fn write(
        &mut self,
        tx: &Transaction,
        id: i64,
        ts_ns: i64,
        f: Facts,
    ) -> rusqlite::Result<()> {
        let actor = f.actor.map(|a| self.actor(tx, a)).transpose()?;
        let object = self.object(tx, f.object)?;
        let host = f.host.map(|h| self.host(tx, h)).transpose()?;
        tx.prepare_cached(
            "INSERT INTO facts (ts_ns, id, kind, cause, outcome, errno, error, event, restore, \
             actor_id, object_id, host_id) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
        )?
        .execute(params![
            ts_ns, id, f.kind, f.cause, f.outcome, f.errno, f.error, f.event, f.restore, actor,
            object, host
        ])?;
        Ok(())
    }

    /// Writes the facts of the event stored as row `id` at `ts_ns` as a version 2 store has
    /// them (the backfill of the step to version 2 runs before `host_id` exists).
    fn write_v2(
        &mut self,
        tx: &Transaction,
        id: i64,
        ts_ns: i64,
        f: Facts,
    ) -> rusqlite::Result<()> {
        let actor = f.actor.map(|a| self.actor(tx, a)).transpose()?;
        let object = self.object(tx, f.object)?;
        tx.prepare_cached(
            "INSERT INTO facts (ts_ns, id, kind, cause, outcome, errno, error, event, restore, \
             actor_id, object_id) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
        )?
        .execute(params![
            ts_ns, id, f.kind, f.cause, f.outcome, f.errno, f.error, f.event, f.restore, actor,
            object
        ])?;
        Ok(())
    }
}

/// Fills `facts` for the events a version 1 store already holds, in the migration's
/// transaction. A row whose JSON is not an event (changed outside routeguard) gets none, with
/// a warning: the report from this store leaves it out, as a report from its JSON skips it.
pub(super) fn backfill(tx: &Transaction, path: &Path) -> rusqlite::Result<()> {
    let mut interner = Interner::default();
    let mut stmt = tx.prepare("SELECT id, json FROM events ORDER BY id")?;
    let mut rows = stmt.query([])?;
    let (mut filled, mut bad) = (0u64, 0u64);
    while let Some(row) = rows.next()? {
        let id: i64 = row.get(0)?;
        let json = row.get_ref(1)?.as_bytes()?;
        match serde_json::from_slice::<Event>(json) {
            Ok(ev) => {
                interner.write_v2(tx, id, clamp_ns(ev.ts.0), Facts::of(&ev))?;
                filled += 1;
            }
            Err(e) => {
                bad += 1;
                tracing::warn!(path = %path.display(), id, error = %e, "event store row is not an event; reports from the store leave it out");
            }
        }
    }
    if filled + bad > 0 {
        tracing::info!(path = %path.display(), events = filled, bad, "event store upgraded to schema version 2: the facts reports read were filled in for the stored events");
    }
    Ok(())
}

/// One event's facts as a report reads them, borrowed from the row.
pub struct FactRow<'a> {
    pub id: i64,
    pub ts_ns: i64,
    pub kind: &'a str,
    pub cause: &'a str,
    pub outcome: &'a str,
    pub errno: Option<i32>,
    pub error: Option<&'a str>,
    pub event: &'a str,
    /// The event's `restore` member (JSON).
    pub restore: Option<&'a str>,
    /// A row of [`Reader::actors`]; `None` when no process caused the event.
    pub actor: Option<i64>,
    /// A row of [`Reader::objects`].
    pub object: i64,
    /// A row of [`Reader::hosts`]; `None` when the event named no host (stored before schema
    /// version 3, or read from a capture without one).
    pub host: Option<i64>,
}

/// A store of schema version 2 or later, open read-only for a report.
pub struct Reader<'p> {
    conn: Connection,
    path: &'p Path,
    /// The store's schema version (2 or later; reports open it read-only, unmigrated).
    version: u32,
}

impl<'p> Reader<'p> {
    pub(super) fn new(conn: Connection, path: &'p Path, version: u32) -> Self {
        Reader {
            conn,
            path,
            version,
        }
    }

    fn read_err(&self) -> impl Fn(rusqlite::Error) -> StoreError + '_ {
        |source| StoreError::Read {
            path: self.path.to_owned(),
            source,
        }
    }

    /// Every actor: row id and `actor` JSON.
    pub fn actors(&self, mut each: impl FnMut(i64, &str)) -> Result<(), StoreError> {
        let mut stmt = self
            .conn
            .prepare("SELECT id, json FROM actors")
            .map_err(self.read_err())?;
        let mut rows = stmt.query([]).map_err(self.read_err())?;
        while let Some(row) = rows.next().map_err(self.read_err())? {
            let id = row.get(0).map_err(self.read_err())?;
            each(id, row.get_ref(1).and_then(text).map_err(self.read_err())?);
        }
        Ok(())
    }

    /// Every host: row id and `host` JSON (none in a store older than schema version 3).
    pub fn hosts(&self, mut each: impl FnMut(i64, &str)) -> Result<(), StoreError> {
        if self.version < 3 {
            return Ok(());
        }
        let mut stmt = self
            .conn
            .prepare("SELECT id, json FROM hosts")
            .map_err(self.read_err())?;
        let mut rows = stmt.query([]).map_err(self.read_err())?;
        while let Some(row) = rows.next().map_err(self.read_err())? {
            let id = row.get(0).map_err(self.read_err())?;
            each(id, row.get_ref(1).and_then(text).map_err(self.read_err())?);
        }
        Ok(())
    }

    /// Every object: row id, kind, `netns` JSON and the JSON of its kind's member.
    pub fn objects(&self, mut each: impl FnMut(i64, &str, &str, &str)) -> Result<(), StoreError> {
        let mut stmt = self
            .conn
            .prepare("SELECT id, kind, netns, json FROM objects")
            .map_err(self.read_err())?;
        let mut rows = stmt.query([]).map_err(self.read_err())?;
        while let Some(row) = rows.next().map_err(self.read_err())? {
            let id = row.get(0).map_err(self.read_err())?;
            let col = |i| row.get_ref(i).and_then(text).map_err(self.read_err());
            each(id, col(1)?, col(2)?, col(3)?);
        }
        Ok(())
    }

    /// The facts of the events between `since_ns` and `until_ns` (both inclusive), in time order
    /// (the order of [`super::scan_json`]), until `each` breaks.
    pub fn scan(
        &self,
        since_ns: Option<i128>,
        until_ns: Option<i128>,
        mut each: impl FnMut(&FactRow) -> ControlFlow<()>,
    ) -> Result<(), StoreError> {
        let since = since_ns.map_or(i64::MIN, clamp_ns);
        let until = until_ns.map_or(i64::MAX, clamp_ns);
        // The primary key's order: no sort. A version 2 store has no host column.
        let host = if self.version >= 3 { "host_id" } else { "NULL" };
        let mut stmt = self
            .conn
            .prepare(&format!(
                "SELECT ts_ns, id, kind, cause, outcome, errno, error, event, restore, actor_id, \
                 object_id, {host} FROM facts WHERE ts_ns BETWEEN ?1 AND ?2 ORDER BY ts_ns, id"
            ))
            .map_err(self.read_err())?;
        let mut rows = stmt.query([since, until]).map_err(self.read_err())?;
        while let Some(row) = rows.next().map_err(self.read_err())? {
            let get = |i| -> Result<&str, StoreError> {
                row.get_ref(i).and_then(text).map_err(self.read_err())
            };
            let opt = |i| -> Result<Option<&str>, StoreError> {
                let v = row.get_ref(i).map_err(self.read_err())?;
                match v {
                    rusqlite::types::ValueRef::Null => Ok(None),
                    v => text(v).map(Some).map_err(self.read_err()),
                }
            };
            let fact = FactRow {
                ts_ns: row.get(0).map_err(self.read_err())?,
                id: row.get(1).map_err(self.read_err())?,
                kind: get(2)?,
                cause: get(3)?,
                outcome: get(4)?,
                errno: row.get(5).map_err(self.read_err())?,
                error: opt(6)?,
                event: get(7)?,
                restore: opt(8)?,
                actor: row.get(9).map_err(self.read_err())?,
                object: row.get(10).map_err(self.read_err())?,
                host: row.get(11).map_err(self.read_err())?,
            };
            if each(&fact).is_break() {
                break;
            }
        }
        Ok(())
    }
}

fn text(v: rusqlite::types::ValueRef<'_>) -> rusqlite::Result<&str> {
    v.as_str().map_err(rusqlite::Error::from)
}
