//! The store's tables, and the steps from one schema version to the next.

use std::path::Path;

use rusqlite::Connection;

use super::StoreError;

/// Version of the store's schema (`PRAGMA user_version`); 0 is a fresh file.
pub const SCHEMA_VERSION: u32 = 1;

/// Version 1: one row per event; `json` is the whole event, the rest are indexed copies. A file
/// of its own so that `cargo xtask bench report` builds its million-event store with exactly
/// this schema.
const V1: &str = include_str!("schema_v1.sql");

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
