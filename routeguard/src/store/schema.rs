//! The store's tables, and the steps from one schema version to the next.

use std::path::Path;

use rusqlite::{Connection, Transaction};

use super::StoreError;

/// Version of the store's schema (`PRAGMA user_version`); 0 is a fresh file.
pub const SCHEMA_VERSION: u32 = 4;

/// Version 1: one row per event; `json` is the whole event, the rest are indexed copies. Files
/// of their own so that `cargo xtask bench report` builds its million-event store with exactly
/// this schema.
pub(super) const V1: &str = include_str!("schema_v1.sql");

/// Version 2: the facts a report reads of each event, apart from its JSON ([`super::facts`]);
/// the events already stored get theirs in the same step.
pub(super) const V2: &str = include_str!("schema_v2.sql");

/// Version 3: the event's host and its actor's pod, as columns of `events` and in `facts`
/// (`hosts`); nothing to fill in for the events already stored, which have neither.
pub(super) const V3: &str = include_str!("schema_v3.sql");

/// Version 4: no indexes on `(actor_comm, ts_ns)` and `(kind, ts_ns)`, which nothing read and
/// every insert paid for.
const V4: &str = include_str!("schema_v4.sql");

/// The columns of `events` a version 1 or 2 store has (a test writes such a store with it).
#[cfg(test)]
pub const INSERT_V1: &str = "INSERT INTO events (ts_ns, kind, cause, outcome, family, \
    netns_inode, netns_name, actor_pid, actor_comm, actor_unit, actor_container, route_table, \
    json) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)";

pub const INSERT: &str = "INSERT INTO events (ts_ns, kind, cause, outcome, family, netns_inode, \
    netns_name, actor_pid, actor_comm, actor_unit, actor_container, route_table, json, \
    host_name, host_machine_id, host_node, actor_pod_namespace, actor_pod_name, actor_pod_uid) \
    VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19)";

/// One step from a version to the next: its SQL, then what the SQL cannot do.
struct Step {
    sql: &'static str,
    then: Option<fn(&Transaction, &Path) -> rusqlite::Result<()>>,
}

/// `MIGRATIONS[n]` takes a store from version n to n + 1.
const MIGRATIONS: &[Step] = &[
    Step {
        sql: V1,
        then: None,
    },
    Step {
        sql: V2,
        then: Some(super::facts::backfill),
    },
    Step {
        sql: V3,
        then: None,
    },
    Step {
        sql: V4,
        then: None,
    },
];

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
        tx.execute_batch(step.sql).map_err(write_err)?;
        if let Some(then) = step.then {
            then(&tx, path).map_err(write_err)?;
        }
        tx.pragma_update(None, "user_version", from as u32 + 1)
            .map_err(write_err)?;
        tx.commit().map_err(write_err)?;
        tracing::debug!(path = %path.display(), version = from + 1, "event store schema migrated");
    }
    Ok(())
}
