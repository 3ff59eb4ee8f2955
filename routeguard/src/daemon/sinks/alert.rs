//! Alerts: what the daemon writes beside its events when a sink fails, when it writes again, and
//! when an unusable store was moved aside — so that a gap in one record is written down in the
//! others (and, once it writes again, in the one that had the gap).
//!
//! An alert is not a removal and has no object, so it is not an [`Event`](crate::event::Event):
//! it is a line of its own in the same JSON stream, told apart by `event` (`sink-failed`,
//! `sink-recovered`, `store-replaced`), with the fields docs/events.md lists under "Alerts" (a
//! test below compares them). It goes to the JSON lines file, stdout and journald; not to the
//! store, whose rows are the removals `routeguard report` reads.

use std::{
    path::Path,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use serde::Serialize;

use crate::event::{Timestamp, SCHEMA_VERSION};

#[derive(Clone, Copy, Debug, Serialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum AlertType {
    /// A sink stopped writing; its events are counted, not written, until it writes again.
    SinkFailed,
    /// It writes again; `missed` events were not written to it since `since`.
    SinkRecovered,
    /// The store could not be used (not a database, corrupt, a newer schema): moved aside to
    /// `moved_to`, and a new store started at `path`.
    StoreReplaced,
}

/// One alert line; docs/events.md, "Alerts", documents each field.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct Alert {
    pub schema_version: u32,
    pub ts: Timestamp,
    pub event: AlertType,
    /// `store`, `jsonl`, `stdout` or `journald`.
    pub sink: &'static str,
    /// The sink's file or socket; `null` for stdout.
    pub path: Option<String>,
    /// What failed (for `sink-recovered`: the last failure).
    pub error: Option<String>,
    /// When the sink failed (for `sink-failed`, `ts`).
    pub since: Timestamp,
    /// Events not written to the sink since `since`.
    pub missed: u64,
    /// For `sink-failed`: the sink is tried again with the first events after this long.
    pub retry_in_ms: Option<u64>,
    /// For `store-replaced`: where the old store is now.
    pub moved_to: Option<String>,
}

/// Now, in the events' clock (wall clock, nanoseconds).
pub fn now() -> Timestamp {
    Timestamp(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as i128),
    )
}

impl Alert {
    fn new(event: AlertType, sink: &'static str, path: Option<&Path>, since: Timestamp) -> Self {
        Self {
            schema_version: SCHEMA_VERSION,
            ts: now(),
            event,
            sink,
            path: path.map(|p| p.display().to_string()),
            error: None,
            since,
            missed: 0,
            retry_in_ms: None,
            moved_to: None,
        }
    }

    pub fn failed(
        sink: &'static str,
        path: Option<&Path>,
        error: &str,
        missed: u64,
        retry_in: Duration,
    ) -> Self {
        let mut a = Self::new(AlertType::SinkFailed, sink, path, now());
        a.since = a.ts;
        a.error = Some(error.to_owned());
        a.missed = missed;
        a.retry_in_ms = Some(retry_in.as_millis() as u64);
        a
    }

    pub fn recovered(
        sink: &'static str,
        path: Option<&Path>,
        error: &str,
        since: Timestamp,
        missed: u64,
    ) -> Self {
        let mut a = Self::new(AlertType::SinkRecovered, sink, path, since);
        a.error = Some(error.to_owned());
        a.missed = missed;
        a
    }

    pub fn store_replaced(path: &Path, reason: &str, moved_to: &Path) -> Self {
        let mut a = Self::new(AlertType::StoreReplaced, "store", Some(path), now());
        a.since = a.ts;
        a.error = Some(reason.to_owned());
        a.moved_to = Some(moved_to.display().to_string());
        a
    }

    /// The alert as one line of JSON, without a trailing newline.
    pub fn to_line(&self) -> String {
        // Plain structs of strings and numbers: serialising cannot fail.
        serde_json::to_string(self).unwrap_or_default()
    }

    /// The alert in a sentence (the journal's `MESSAGE`).
    pub fn message(&self) -> String {
        let at = self
            .path
            .as_deref()
            .map(|p| format!(" ({p})"))
            .unwrap_or_default();
        let error = self.error.as_deref().unwrap_or("");
        match self.event {
            AlertType::SinkFailed => format!(
                "routeguard {} sink{at} failed: {error}; its events are counted in \
                 routeguard_sink_errors_total, not written, until it writes again (tried with \
                 the next events after {} ms)",
                self.sink,
                self.retry_in_ms.unwrap_or(0)
            ),
            AlertType::SinkRecovered => format!(
                "routeguard {} sink{at} writes again; {} events were not written to it since {}",
                self.sink,
                self.missed,
                self.since.rfc3339()
            ),
            AlertType::StoreReplaced => format!(
                "routeguard event store{at} could not be used ({error}); moved aside to {} and \
                 a new store started",
                self.moved_to.as_deref().unwrap_or("?")
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    const DOC: &str = include_str!("../../../../docs/events.md");

    /// The rows of the table under docs/events.md's "## Alerts".
    fn documented() -> BTreeSet<String> {
        DOC.lines()
            .skip_while(|l| *l != "## Alerts")
            .skip(1)
            .take_while(|l| !l.starts_with("## "))
            .filter_map(|l| l.strip_prefix("| `")?.split('`').next())
            .map(str::to_owned)
            .collect()
    }

    #[test]
    fn docs_events_md_lists_exactly_the_fields_and_types() {
        let alert = Alert::store_replaced(
            Path::new("/var/lib/routeguard/events.db"),
            "not a database",
            Path::new("/var/lib/routeguard/events.db.corrupt-20261207T121314Z"),
        );
        let v: serde_json::Value = serde_json::from_str(&alert.to_line()).unwrap();
        let fields: BTreeSet<String> = v.as_object().unwrap().keys().cloned().collect();
        assert_eq!(documented(), fields, "docs/events.md, ## Alerts");
        for t in [
            AlertType::SinkFailed,
            AlertType::SinkRecovered,
            AlertType::StoreReplaced,
        ] {
            let name = serde_json::to_value(t).unwrap();
            let name = name.as_str().unwrap();
            assert!(
                DOC.contains(&format!("`{name}`")),
                "{name} in docs/events.md"
            );
        }
    }

    #[test]
    fn lines_and_messages() {
        let f = Alert::failed(
            "jsonl",
            Some(Path::new("/var/log/routeguard/events.jsonl")),
            "No space left on device (os error 28)",
            12,
            Duration::from_secs(1),
        );
        let v: serde_json::Value = serde_json::from_str(&f.to_line()).unwrap();
        assert_eq!(v["event"], "sink-failed");
        assert_eq!(v["sink"], "jsonl");
        assert_eq!(v["missed"], 12);
        assert_eq!(v["retry_in_ms"], 1000);
        assert_eq!(v["moved_to"], serde_json::Value::Null);
        assert_eq!(v["since"], v["ts"]);
        assert!(!f.to_line().contains('\n'));
        assert!(f.message().contains("No space left"), "{}", f.message());
        let r = Alert::recovered("stdout", None, "Broken pipe", f.since, 40);
        let v: serde_json::Value = serde_json::from_str(&r.to_line()).unwrap();
        assert_eq!(v["event"], "sink-recovered");
        assert_eq!(v["path"], serde_json::Value::Null);
        assert!(
            r.message().contains("40 events were not written"),
            "{}",
            r.message()
        );
    }
}
