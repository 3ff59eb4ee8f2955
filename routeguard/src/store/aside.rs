//! A store the daemon cannot use — not a database, corrupt, or written by a newer routeguard — is
//! moved aside and a new one started in its place: the daemon records on, and the old file is
//! kept for whoever wants to look at it (or for the newer routeguard it belongs to).
//!
//! The file is renamed, never rewritten: `events.db` becomes `events.db.corrupt-20261207T121314Z`
//! (`.newer-…` for a newer schema), its `-wal` and `-shm` beside it under the same name. The
//! write-ahead log goes with its database: left in place, SQLite would replay the old file's
//! pages into the new one.

use std::{
    fs, io,
    path::{Path, PathBuf},
    time::{SystemTime, UNIX_EPOCH},
};

use rusqlite::ErrorCode;

use super::{Retention, Store, StoreError};
use crate::event::Timestamp;

/// A store moved aside: where it was, where it is now, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SetAside {
    pub from: PathBuf,
    pub to: PathBuf,
    /// The error that made the store unusable.
    pub reason: String,
}

impl StoreError {
    /// The file at the path cannot be a store this routeguard writes: not SQLite, corrupt, or a
    /// newer schema. (Other errors — no permission, a full disk, a lock — may pass, and the
    /// file may be fine: those are retried, never moved.)
    pub fn is_unusable(&self) -> bool {
        match self {
            StoreError::Version { .. } => true,
            StoreError::Open { source, .. }
            | StoreError::Write { source, .. }
            | StoreError::Read { source, .. } => matches!(
                source.sqlite_error_code(),
                Some(ErrorCode::NotADatabase | ErrorCode::DatabaseCorrupt)
            ),
            _ => false,
        }
    }
}

impl Store {
    /// Opens the store at `path` as [`Store::open`] does; when the file there is unusable
    /// ([`StoreError::is_unusable`]), moves it aside and starts a new store, saying where the
    /// old one went.
    pub fn open_or_set_aside(
        path: &Path,
        retention: Retention,
    ) -> Result<(Store, Option<SetAside>), StoreError> {
        match Store::open(path, retention) {
            Err(e) if e.is_unusable() => {
                let aside = set_aside(path, &e)?;
                Ok((Store::open(path, retention)?, Some(aside)))
            }
            other => other.map(|store| (store, None)),
        }
    }
}

/// Moves the store at `path` (and its `-wal` and `-shm`) aside because of `why`.
pub fn set_aside(path: &Path, why: &StoreError) -> Result<SetAside, StoreError> {
    let label = match why {
        StoreError::Version { .. } => "newer",
        _ => "corrupt",
    };
    let to = aside_name(path, label);
    let moved = (|| {
        // The log first: a database without its log is an older state of itself; a log without
        // its database would be replayed into the next one.
        for suffix in ["-wal", "-shm"] {
            match fs::rename(sidecar(path, suffix), sidecar(&to, suffix)) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
                _ => {}
            }
        }
        fs::rename(path, &to)
    })();
    moved.map_err(|source| StoreError::SetAside {
        path: path.to_owned(),
        source,
    })?;
    tracing::warn!(
        "the event store {} cannot be used ({why}); moved it aside to {} and started a new one",
        path.display(),
        to.display()
    );
    Ok(SetAside {
        from: path.to_owned(),
        to,
        reason: why.to_string(),
    })
}

/// Moves a `-wal` or `-shm` whose database is gone out of the way of a new database at `path`.
pub(super) fn set_aside_orphans(path: &Path) -> io::Result<()> {
    let to = aside_name(path, "orphan");
    for suffix in ["-wal", "-shm"] {
        let from = sidecar(path, suffix);
        if fs::symlink_metadata(&from).is_ok() {
            let to = sidecar(&to, suffix);
            fs::rename(&from, &to)?;
            tracing::warn!(
                "{} was left without its database; moved it aside to {}",
                from.display(),
                to.display()
            );
        }
    }
    Ok(())
}

/// `events.db` + `-wal`.
pub(super) fn sidecar(path: &Path, suffix: &str) -> PathBuf {
    let mut p = path.as_os_str().to_owned();
    p.push(suffix);
    PathBuf::from(p)
}

/// `events.db.corrupt-20261207T121314Z`, or with `.1`, `.2`… when that exists already.
fn aside_name(path: &Path, label: &str) -> PathBuf {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as i128);
    // 2026-12-07T12:13:14.123456789Z → 20261207T121314Z
    let stamp: String = Timestamp(now).rfc3339()[..19]
        .chars()
        .filter(|c| !matches!(c, '-' | ':'))
        .collect();
    let base = sidecar(path, &format!(".{label}-{stamp}Z"));
    let taken = |p: &Path| {
        ["", "-wal", "-shm"]
            .iter()
            .any(|s| fs::symlink_metadata(sidecar(p, s)).is_ok())
    };
    let mut name = base.clone();
    let mut n = 0;
    while taken(&name) {
        n += 1;
        name = sidecar(&base, &format!(".{n}"));
    }
    name
}
