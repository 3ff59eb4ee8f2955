//! The event store: an embedded SQLite database the daemon writes and `routeguard report` reads.
//!
//! One row per event. The `json` column is the event exactly as the JSON sink writes it
//! ([`sink::json::to_line`], schema in `docs/events.md`); the other columns copy the fields that
//! queries filter on, so they can be indexed. The file holds command lines and parent chains, so
//! it is private ([`crate::files`]): mode 0600 set on the open file, never opened through a
//! symlink; SQLite gives its `-wal` and `-shm` files the database's mode, and existing ones are
//! set to 0600 too.
//!
//! Schema changes bump [`SCHEMA_VERSION`] (kept in `PRAGMA user_version`) and add a migration
//! step in [`migrate`]; a store written by a newer routeguard is refused, not guessed at — the
//! daemon moves such a store aside ([`aside`]) and starts a new one.

mod aside;
mod facts;
#[cfg(test)]
mod node_tests;
mod schema;
#[cfg(test)]
mod tests;

use std::{
    fs, io,
    ops::ControlFlow,
    os::unix::fs::MetadataExt,
    path::{Path, PathBuf},
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use rusqlite::{params, Connection, OpenFlags};
use serde::Serialize;

use crate::{
    event::{Event, Host, Pod},
    files, sink,
};

pub use aside::{set_aside, SetAside};
pub use facts::{FactRow, Reader};
pub use schema::SCHEMA_VERSION;

/// Where the daemon keeps its store unless the config says otherwise.
pub const DEFAULT_PATH: &str = "/var/lib/routeguard/events.db";

/// How long a writer or reader waits for the other's lock before giving up.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// The writer's page cache, in KiB (SQLite's `cache_size` is in KiB when negative). The default
/// 2 MiB is smaller than one of the writer's transactions: it spilled pages to the log before
/// the commit and read index pages back from the file.
const CACHE_KIB: i64 = -16 * 1024;

/// How often pruning also removes the actors and objects no event names any more: it reads
/// every event's facts, so not on every prune.
const SWEEP_EVERY: Duration = Duration::from_secs(3600);

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot create the event store {path}: {source}; check that its directory is writable by routeguard, or set `store.path` in the config")]
    Create { path: PathBuf, source: io::Error },
    #[error("cannot open the event store {path}: {source}; if the file is not a routeguard store, move it away or set `store.path` elsewhere")]
    Open {
        path: PathBuf,
        source: rusqlite::Error,
    },
    #[error("no event store at {path}: start `routeguard daemon` (with `[store] enabled = true`) first, or name the right file")]
    Missing { path: PathBuf },
    #[error("the event store {path} has schema version {found}, but this routeguard understands up to {supported}; upgrade routeguard, or set `store.path` to a new file")]
    Version {
        path: PathBuf,
        found: u32,
        supported: u32,
    },
    #[error("writing to the event store {path} failed: {source}; check free space and that nothing else holds the file")]
    Write {
        path: PathBuf,
        source: rusqlite::Error,
    },
    #[error("reading the event store {path} failed: {source}")]
    Read {
        path: PathBuf,
        source: rusqlite::Error,
    },
    #[error("row {id} of the event store {path} holds invalid JSON ({source}); the file was changed outside routeguard")]
    BadRow {
        path: PathBuf,
        id: i64,
        source: serde_json::Error,
    },
    #[error("row {id} of the event store {path} holds JSON spanning several lines, which routeguard never writes; the file was changed outside routeguard")]
    Multiline { path: PathBuf, id: i64 },
    #[error("cannot move the unusable event store {path} aside: {source}; move it away by hand or set `store.path` elsewhere")]
    SetAside { path: PathBuf, source: io::Error },
}

/// How much the store keeps. `None` means no limit of that kind.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Retention {
    /// Events older than this (by event time) are pruned.
    pub max_age: Option<Duration>,
    /// At most this many events are kept; the oldest go first.
    pub max_rows: Option<u64>,
}

/// The store, open for writing. One writer at a time; readers use [`read_events`].
pub struct Store {
    path: PathBuf,
    conn: Connection,
    retention: Retention,
    interner: facts::Interner,
    /// When actors and objects were last swept ([`SWEEP_EVERY`]).
    swept: Option<Instant>,
    /// Device and inode of the file opened, to tell when the path names another one.
    identity: (u64, u64),
}

impl Store {
    /// Opens (creating it, mode 0600, with its directory, mode 0700) and migrates the store.
    /// An existing file, `-wal` or `-shm` with another mode is set to 0600; a symlink at any of
    /// them is refused.
    pub fn open(path: &Path, retention: Retention) -> Result<Self, StoreError> {
        let identity = create_private(path)?;
        let open_err = |source| StoreError::Open {
            path: path.to_owned(),
            source,
        };
        let mut conn = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_WRITE
                | OpenFlags::SQLITE_OPEN_NO_MUTEX
                | OpenFlags::SQLITE_OPEN_NOFOLLOW,
        )
        .map_err(open_err)?;
        conn.busy_timeout(BUSY_TIMEOUT).map_err(open_err)?;
        // WAL: readers (`routeguard report`) never block the daemon's inserts. NORMAL sync is
        // durable across a crash of routeguard; a power cut may lose the last transactions.
        let mode: String = conn
            .query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))
            .map_err(open_err)?;
        if !mode.eq_ignore_ascii_case("wal") {
            tracing::warn!(path = %path.display(), %mode, "the event store could not switch to WAL; reports may wait for inserts");
        }
        conn.pragma_update(None, "synchronous", "NORMAL")
            .map_err(open_err)?;
        conn.pragma_update(None, "cache_size", CACHE_KIB.to_string())
            .map_err(open_err)?;
        schema::migrate(&mut conn, path)?;
        Ok(Self {
            path: path.to_owned(),
            conn,
            retention,
            interner: facts::Interner::default(),
            swept: None,
            identity,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Whether the path no longer names the file this store writes (it was removed, renamed or
    /// replaced): SQLite would go on writing to a file nobody can open.
    pub fn is_replaced(&self) -> bool {
        fs::symlink_metadata(&self.path).map_or(true, |m| (m.dev(), m.ino()) != self.identity)
    }

    /// Changes what [`prune`](Self::prune) keeps (on a config reload).
    pub fn set_retention(&mut self, retention: Retention) {
        self.retention = retention;
    }

    /// Inserts the events in one transaction: all of them or none. Returns how many.
    pub fn insert<'e>(
        &mut self,
        events: impl IntoIterator<Item = &'e Event>,
    ) -> Result<usize, StoreError> {
        let mut events = events.into_iter().peekable();
        if events.peek().is_none() {
            return Ok(0);
        }
        let inserted = self.insert_tx(events);
        if inserted.is_err() {
            // Actors and objects the rolled-back transaction added are gone.
            self.interner.forget();
        }
        inserted.map_err(|source| StoreError::Write {
            path: self.path.clone(),
            source,
        })
    }

    fn insert_tx<'e>(
        &mut self,
        events: impl Iterator<Item = &'e Event>,
    ) -> rusqlite::Result<usize> {
        let tx = self.conn.transaction()?;
        let mut n = 0;
        {
            let mut stmt = tx.prepare_cached(schema::INSERT)?;
            for ev in events {
                let row = Row::of(ev);
                row.insert(&mut stmt)?;
                let id = tx.last_insert_rowid();
                self.interner.write(&tx, id, row.ts_ns, row.facts)?;
                n += 1;
            }
        }
        tx.commit()?;
        Ok(n)
    }

    /// Applies the retention limits; returns how many events were removed.
    pub fn prune(&mut self) -> Result<usize, StoreError> {
        self.prune_at(now_ns())
    }

    fn prune_at(&mut self, now_ns: i64) -> Result<usize, StoreError> {
        let write_err = |source| StoreError::Write {
            path: self.path.clone(),
            source,
        };
        let mut removed = 0;
        if let Some(age) = self.retention.max_age {
            let age = i64::try_from(age.as_nanos()).unwrap_or(i64::MAX);
            let cutoff = now_ns.saturating_sub(age);
            removed += self
                .conn
                .execute("DELETE FROM events WHERE ts_ns < ?1", [cutoff])
                .map_err(write_err)?;
        }
        if let Some(max) = self.retention.max_rows {
            // Ids grow with insertion, which is time order within a daemon's life: keep the
            // newest `max` rows by id.
            let keep = i64::try_from(max).unwrap_or(i64::MAX);
            removed += self
                .conn
                .execute(
                    "DELETE FROM events WHERE id <= \
                     (SELECT id FROM events ORDER BY id DESC LIMIT 1 OFFSET ?1)",
                    [keep],
                )
                .map_err(write_err)?;
        }
        if removed > 0 && self.swept.is_none_or(|t| t.elapsed() >= SWEEP_EVERY) {
            let path = self.path.clone();
            self.sweep()
                .map_err(|source| StoreError::Write { path, source })?;
        }
        Ok(removed)
    }

    /// Removes the actors and objects no stored event names.
    fn sweep(&mut self) -> rusqlite::Result<()> {
        self.swept = Some(Instant::now());
        self.interner.forget();
        self.conn.execute_batch(
            "DELETE FROM actors WHERE id NOT IN \
                 (SELECT actor_id FROM facts WHERE actor_id IS NOT NULL); \
             DELETE FROM objects WHERE id NOT IN (SELECT object_id FROM facts); \
             DELETE FROM hosts WHERE id NOT IN \
                 (SELECT host_id FROM facts WHERE host_id IS NOT NULL);",
        )
    }

    /// Number of events stored.
    pub fn count(&self) -> Result<u64, StoreError> {
        self.conn
            .query_row("SELECT COUNT(*) FROM events", [], |r| r.get::<_, i64>(0))
            .map(|n| n as u64)
            .map_err(|source| StoreError::Read {
                path: self.path.clone(),
                source,
            })
    }

    /// Checkpoints the WAL into the main file and closes the store (at exit).
    pub fn close(self) -> Result<(), StoreError> {
        let path = self.path.clone();
        // PASSIVE never waits for readers; the rest is checkpointed by the next open.
        self.conn
            .query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()))
            .map_err(|source| StoreError::Write {
                path: path.clone(),
                source,
            })?;
        self.conn
            .close()
            .map_err(|(_, source)| StoreError::Write { path, source })
    }
}

/// The events stored between `since_ns` and `until_ns` (nanoseconds since the epoch, both
/// inclusive, either open), in time order, each as the JSON object the JSON sink writes.
/// Opens the store read-only; the daemon may keep writing meanwhile.
pub fn read_events(
    path: &Path,
    since_ns: Option<i128>,
    until_ns: Option<i128>,
) -> Result<Vec<serde_json::Value>, StoreError> {
    let mut out = Vec::new();
    let mut bad = None;
    scan_json(path, since_ns, until_ns, |id, json| {
        match serde_json::from_slice(json) {
            Ok(value) => out.push(value),
            Err(source) => {
                bad = Some(StoreError::BadRow {
                    path: path.to_owned(),
                    id,
                    source,
                });
                return ControlFlow::Break(());
            }
        }
        ControlFlow::Continue(())
    })?;
    match bad {
        Some(e) => Err(e),
        None => Ok(out),
    }
}

/// As [`read_events`], but hands each event's JSON text (one line, as the JSON sink wrote it)
/// to `each` with its row id, without parsing or copying it, until `each` breaks. A million
/// events parsed into `serde_json::Value`s take gigabytes; `routeguard report` parses this text
/// the way it parses a JSONL capture.
pub fn scan_json(
    path: &Path,
    since_ns: Option<i128>,
    until_ns: Option<i128>,
    mut each: impl FnMut(i64, &[u8]) -> ControlFlow<()>,
) -> Result<(), StoreError> {
    let read_err = |source| StoreError::Read {
        path: path.to_owned(),
        source,
    };
    let Some((conn, _)) = open_read(path)? else {
        return Ok(());
    };
    let since = since_ns.map_or(i64::MIN, clamp_ns);
    let until = until_ns.map_or(i64::MAX, clamp_ns);
    // The ts_ns index ends with the rowid, so this order is the index's: no sort.
    let mut stmt = conn
        .prepare("SELECT id, json FROM events WHERE ts_ns BETWEEN ?1 AND ?2 ORDER BY ts_ns, id")
        .map_err(read_err)?;
    let mut rows = stmt.query([since, until]).map_err(read_err)?;
    while let Some(row) = rows.next().map_err(read_err)? {
        let id: i64 = row.get(0).map_err(read_err)?;
        let json = row
            .get_ref(1)
            .and_then(|v| v.as_bytes().map_err(rusqlite::Error::from))
            .map_err(read_err)?;
        if json.contains(&b'\n') {
            return Err(StoreError::Multiline {
                path: path.to_owned(),
                id,
            });
        }
        if each(id, json).is_break() {
            break;
        }
    }
    Ok(())
}

/// The facts of the stored events, for a report; `None` when the store predates them (schema
/// version 1: [`scan_json`] reads it) or was never written. Opens the store read-only, in one
/// read transaction, so that facts, actors and objects agree while the daemon writes.
pub fn read_facts(path: &Path) -> Result<Option<Reader<'_>>, StoreError> {
    match open_read(path)? {
        Some((conn, version)) if version >= 2 => {
            conn.execute_batch("BEGIN")
                .map_err(|source| StoreError::Read {
                    path: path.to_owned(),
                    source,
                })?;
            Ok(Some(Reader::new(conn, path, version)))
        }
        _ => Ok(None),
    }
}

/// The store opened read-only with its schema version; `None` when it was created but never
/// migrated (or is not a routeguard store): nothing to read.
fn open_read(path: &Path) -> Result<Option<(Connection, u32)>, StoreError> {
    if !path.exists() {
        return Err(StoreError::Missing {
            path: path.to_owned(),
        });
    }
    let read_err = |source| StoreError::Read {
        path: path.to_owned(),
        source,
    };
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(|source| StoreError::Open {
        path: path.to_owned(),
        source,
    })?;
    conn.busy_timeout(BUSY_TIMEOUT).map_err(read_err)?;
    let found: u32 = conn
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .map_err(read_err)?;
    if found > SCHEMA_VERSION {
        return Err(StoreError::Version {
            path: path.to_owned(),
            found,
            supported: SCHEMA_VERSION,
        });
    }
    Ok((found > 0).then_some((conn, found)))
}

/// The indexed columns of one event, and its facts.
struct Row<'e> {
    ts_ns: i64,
    facts: facts::Facts<'e>,
    family: Option<String>,
    netns_inode: i64,
    netns_name: Option<String>,
    actor_pid: Option<i64>,
    actor_comm: Option<String>,
    actor_unit: Option<String>,
    actor_container: Option<String>,
    route_table: Option<i64>,
    json: String,
    host: Option<&'e Host>,
    pod: Option<&'e Pod>,
}

impl<'e> Row<'e> {
    /// Inserts the `events` row with [`schema::INSERT`].
    fn insert(&self, stmt: &mut rusqlite::Statement) -> rusqlite::Result<usize> {
        let (host, pod) = (self.host, self.pod);
        stmt.execute(params![
            self.ts_ns,
            self.facts.kind,
            self.facts.cause,
            self.facts.outcome,
            self.family,
            self.netns_inode,
            self.netns_name,
            self.actor_pid,
            self.actor_comm,
            self.actor_unit,
            self.actor_container,
            self.route_table,
            self.json,
            host.map(|h| &h.name),
            host.and_then(|h| h.machine_id.as_ref()),
            host.and_then(|h| h.node.as_ref()),
            pod.and_then(|p| p.namespace.as_ref()),
            pod.and_then(|p| p.name.as_ref()),
            pod.map(|p| &p.uid),
        ])
    }

    /// Inserts the `events` row as a version 1 store has it ([`schema::INSERT_V1`]).
    #[cfg(test)]
    fn insert_v1(&self, stmt: &mut rusqlite::Statement) -> rusqlite::Result<usize> {
        stmt.execute(params![
            self.ts_ns,
            self.facts.kind,
            self.facts.cause,
            self.facts.outcome,
            self.family,
            self.netns_inode,
            self.netns_name,
            self.actor_pid,
            self.actor_comm,
            self.actor_unit,
            self.actor_container,
            self.route_table,
            self.json,
        ])
    }

    fn of(ev: &'e Event) -> Self {
        let actor = ev.actor.as_ref();
        Self {
            ts_ns: clamp_ns(ev.ts.0),
            facts: facts::Facts::of(ev),
            family: ev.family.as_ref().map(label),
            netns_inode: i64::from(ev.netns.inode),
            netns_name: ev.netns.name.clone(),
            actor_pid: actor.map(|a| i64::from(a.pid)),
            actor_comm: actor.map(|a| a.comm.clone()),
            actor_unit: actor.and_then(|a| a.unit.clone()),
            actor_container: actor.and_then(|a| a.container.clone()),
            // The table a route lives in, or the one a rule points at: "what touched table 77".
            route_table: ev.object.table().map(i64::from),
            json: sink::json::to_line(ev),
            host: ev.host.as_deref(),
            pod: actor.and_then(|a| a.pod.as_ref()),
        }
    }
}

/// A store as routeguard wrote it before schema version 2, holding `events`, for the tests of
/// what an upgrade and a report make of one.
#[cfg(test)]
pub(crate) fn create_v1(path: &Path, events: &[Event]) {
    let conn = Connection::open(path).unwrap();
    conn.execute_batch(schema::V1).unwrap();
    conn.pragma_update(None, "user_version", 1).unwrap();
    let mut stmt = conn.prepare(schema::INSERT_V1).unwrap();
    for ev in events {
        Row::of(ev).insert_v1(&mut stmt).unwrap();
    }
}

/// The name serde gives a unit enum variant (`route`, `link-down`, …): the same as in the JSON.
pub(crate) fn label<T: Serialize>(value: &T) -> String {
    match serde_json::to_value(value) {
        Ok(serde_json::Value::String(s)) => s,
        Ok(other) => other.to_string(),
        Err(_) => String::from("?"),
    }
}

/// Event times fit in an i64 until the year 2262.
fn clamp_ns(ns: i128) -> i64 {
    i64::try_from(ns).unwrap_or(if ns < 0 { i64::MIN } else { i64::MAX })
}

fn now_ns() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
}

/// Creates the file (and directory) private to its owner, or sets an existing file, `-wal` and
/// `-shm` to 0600 ([`files`]); the file's device and inode.
fn create_private(path: &Path) -> Result<(u64, u64), StoreError> {
    let create_err = |source| StoreError::Create {
        path: path.to_owned(),
        source,
    };
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        if !dir.exists() {
            files::create_private_dir(dir).map_err(create_err)?;
        }
    }
    if fs::symlink_metadata(path).is_err() {
        // A new database: a log left from a removed one must not be replayed into it.
        aside::set_aside_orphans(path).map_err(create_err)?;
    }
    let file = files::open_private(path, files::Write::Keep).map_err(create_err)?;
    for suffix in ["-wal", "-shm"] {
        files::tighten_existing(&aside::sidecar(path, suffix)).map_err(create_err)?;
    }
    let meta = file.metadata().map_err(create_err)?;
    Ok((meta.dev(), meta.ino()))
}
