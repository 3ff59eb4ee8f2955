//! The store's tables, and the steps from one schema version to the next.

use std::path::Path;

use rusqlite::Connection;

use super::StoreError;

/// Version of the store's schema (`PRAGMA user_version`); 0 is a fresh file.
pub const SCHEMA_VERSION: u32 = 1;

/// Version 1: one row per event; `json` is the whole event, the rest are indexed copies.
const V1: &str = "
CREATE TABLE events (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    ts_ns INTEGER NOT NULL,
    kind TEXT NOT NULL,
    cause TEXT NOT NULL,
    outcome TEXT NOT NULL,
    family TEXT,
    netns_inode INTEGER,
    netns_name TEXT,
    actor_pid INTEGER,
    actor_comm TEXT,
    actor_unit TEXT,
    actor_container TEXT,
    route_table INTEGER,
    json TEXT NOT NULL
);
CREATE INDEX events_ts ON events (ts_ns);
CREATE INDEX events_actor_comm_ts ON events (actor_comm, ts_ns);
CREATE INDEX events_kind_ts ON events (kind, ts_ns);
";

pub const INSERT: &str = "INSERT INTO events (ts_ns, kind, cause, outcome, family, netns_inode, \
    netns_name, actor_pid, actor_comm, actor_unit, actor_container, route_table, json) \
    VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)";

/// `MIGRATIONS[n]` takes a store from version n to n + 1.
const MIGRATIONS: &[&str] = &[V1];

/// Brings the store up to [`SCHEMA_VERSION`], each step in its own transaction.
pub fn migrate(conn: &mut Connection, path: &Path) -> Result<(), StoreError> {
    let write_err = |source| StoreError::Write {
        path: path.to_owned(),
        source,
    };
    let found: u32 = conn
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .map_err(|source| StoreError::Open {
            path: path.to_owned(),
            source,
        })?;
    if found > SCHEMA_VERSION {
        return Err(StoreError::Version {
            path: path.to_owned(),
            found,
            supported: SCHEMA_VERSION,
        });
    }
    for (from, step) in MIGRATIONS.iter().enumerate().skip(found as usize) {
        let tx = conn.transaction().map_err(write_err)?;
        tx.execute_batch(step).map_err(write_err)?;
        tx.pragma_update(None, "user_version", from as u32 + 1)
            .map_err(write_err)?;
        tx.commit().map_err(write_err)?;
        tracing::debug!(path = %path.display(), version = from + 1, "event store schema migrated");
    }
    Ok(())
}
