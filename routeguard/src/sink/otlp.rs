//! An event as an OpenTelemetry log record: event name, severity, body and attributes after
//! OpenTelemetry's semantic conventions where they name the thing, `routeguard.*` otherwise.
//! docs/opentelemetry.md tabulates the mapping; a test below keeps the table and the code in step.
//!
//! - Event name `routeguard.<event>`, the JSON `event` in snake case (`routeguard.removal`,
//!   `routeguard.restore`, `routeguard.restore_suspended`): OpenTelemetry names words with `_`.
//! - Severity: INFO for a removal, WARN when the kernel refused it (as journald's priority 4) and
//!   for a restore (a protected object was removed by a program not allowed to), ERROR when the
//!   restore failed or was suspended (the object stays missing).
//! - Body: the `trace` line without its time of day (the record has the time), escaped.
//! - Attributes: the actor as `process.*`, `thread.*`, `container.id` and `k8s.*` (it is the
//!   process the record is about, not the one that sent it); the rest of the event under
//!   `routeguard.*`, with the JSON's member and field names (docs/events.md). Absent values are
//!   left out, never sent empty. Strings are sent as decoded, not escaped: a log store's UI must
//!   escape them, as for the JSON.
//! - The machine (`host.name`, `host.id`, `k8s.node.name`) is the same for every record a daemon
//!   sends: it is on the resource ([`resource`]), with `service.name = routeguard`.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use opentelemetry::{
    logs::{AnyValue, Severity},
    Key, KeyValue,
};
use serde_json::Value;

use crate::event::{Actor, Event, EventType, Host, Outcome, RestoreOutcome};

use super::terminal;

/// Everything a log record carries, before the SDK's record is made of it.
#[derive(Clone, Debug, PartialEq)]
pub struct Record {
    pub event_name: &'static str,
    pub severity: Severity,
    pub timestamp: SystemTime,
    pub body: String,
    pub attributes: Vec<(Key, AnyValue)>,
}

/// What the config decides about the records.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Options {
    /// Send the actor's argv (`process.command_args`).
    pub command_args: bool,
}

/// The record's event name for an event of type `t`.
pub fn event_name(t: EventType) -> &'static str {
    match t {
        EventType::Removal => "routeguard.removal",
        EventType::Restore => "routeguard.restore",
        EventType::RestoreSuspended => "routeguard.restore_suspended",
    }
}

/// See the module's documentation.
pub fn severity(ev: &Event) -> Severity {
    match (ev.event, &ev.restore) {
        (EventType::Removal, _) if ev.outcome == Outcome::Failed => Severity::Warn,
        (EventType::Removal, _) => Severity::Info,
        (EventType::RestoreSuspended, _) => Severity::Error,
        (EventType::Restore, Some(r)) if r.outcome == RestoreOutcome::Failed => Severity::Error,
        (EventType::Restore, _) => Severity::Warn,
    }
}

/// Nanoseconds since the epoch as a time (before the epoch: the epoch).
pub fn time(ns: i128) -> SystemTime {
    UNIX_EPOCH + Duration::from_nanos(u64::try_from(ns).unwrap_or(0))
}

pub fn record(ev: &Event, options: Options) -> Record {
    let mut a = Attributes::default();
    // The event's own members, as the JSON names them.
    let json = serde_json::to_value(ev).unwrap_or_default();
    for member in [
        "kind", "family", "cause", "outcome", "errno", "error", "capture",
    ] {
        a.json(&format!("routeguard.{member}"), &json[member]);
    }
    a.json("routeguard.netns", &json["netns"]);
    if let Some(actor) = &ev.actor {
        a.actor(actor, options);
    }
    a.json("routeguard.request", &json["request"]);
    // The object under its kind's name: `routeguard.rule.priority`, `routeguard.route.table`.
    let kind = json["kind"].as_str().unwrap_or_default();
    a.json(&format!("routeguard.{kind}"), &json[kind]);
    for member in ["trigger", "replacement", "restore"] {
        a.json(&format!("routeguard.{member}"), &json[member]);
    }
    Record {
        event_name: event_name(ev.event),
        severity: severity(ev),
        timestamp: time(ev.ts.0),
        body: terminal::summary(ev),
        attributes: a.0,
    }
}

/// The resource every record of this daemon shares: the service and the machine.
pub fn resource(host: Option<&Host>) -> Vec<KeyValue> {
    let mut r = vec![
        KeyValue::new("service.name", "routeguard"),
        KeyValue::new("service.version", env!("CARGO_PKG_VERSION")),
    ];
    if let Some(h) = host {
        r.push(KeyValue::new("host.name", h.name.clone()));
        if let Some(id) = &h.machine_id {
            r.push(KeyValue::new("host.id", id.clone()));
        }
        if let Some(node) = &h.node {
            r.push(KeyValue::new("k8s.node.name", node.clone()));
        }
    }
    r
}

/// Attributes in the order they are added.
#[derive(Default)]
pub struct Attributes(pub Vec<(Key, AnyValue)>);

impl Attributes {
    pub fn add(&mut self, key: impl Into<Key>, value: impl Into<AnyValue>) {
        self.0.push((key.into(), value.into()));
    }

    /// A JSON value under `key`: an object's fields as `key.field` (nested ones likewise),
    /// numbers as integers, `null` left out.
    pub fn json(&mut self, key: &str, value: &Value) {
        match value {
            Value::Null => {}
            Value::Bool(b) => self.add(key.to_owned(), *b),
            Value::Number(n) => match n.as_i64() {
                Some(i) => self.add(key.to_owned(), i),
                None => self.add(key.to_owned(), n.as_f64().unwrap_or_default()),
            },
            Value::String(s) => self.add(key.to_owned(), s.clone()),
            Value::Array(items) => {
                let list: Vec<AnyValue> = items
                    .iter()
                    .map(|v| match v {
                        Value::String(s) => AnyValue::from(s.clone()),
                        other => AnyValue::from(other.to_string()),
                    })
                    .collect();
                self.add(key.to_owned(), AnyValue::ListAny(Box::new(list)));
            }
            Value::Object(fields) => {
                for (name, v) in fields {
                    self.json(&format!("{key}.{name}"), v);
                }
            }
        }
    }

    fn actor(&mut self, a: &Actor, options: Options) {
        self.add("process.pid", i64::from(a.pid));
        if a.ppid != 0 {
            self.add("process.parent_pid", i64::from(a.ppid));
        }
        if let Some(exe) = a.exe.as_deref().filter(|e| !e.is_empty()) {
            // Only the file name when the path could not be learned.
            if exe.starts_with('/') {
                self.add("process.executable.path", exe.to_owned());
            }
            let name = exe.rsplit('/').next().unwrap_or(exe);
            self.add("process.executable.name", name.to_owned());
        }
        if options.command_args && !a.argv.is_empty() {
            let argv = a.argv.iter().cloned().map(AnyValue::from).collect();
            self.add("process.command_args", AnyValue::ListAny(Box::new(argv)));
        }
        // The capture reads `current_uid()`: the real user id.
        self.add("process.real_user.id", i64::from(a.uid));
        if let Some(cgroup) = &a.cgroup {
            self.add("process.linux.cgroup", cgroup.clone());
        }
        // `comm` is the name of the thread that sent the request.
        self.add("thread.id", i64::from(a.tid));
        self.add("thread.name", a.comm.clone());
        if let Some(unit) = &a.unit {
            self.add("routeguard.actor.unit", unit.clone());
        }
        if !a.ancestry.is_empty() {
            let chain = a
                .ancestry
                .iter()
                .map(|p| AnyValue::from(format!("{}[{}]", p.comm, p.pid)))
                .collect();
            self.add(
                "routeguard.actor.ancestry",
                AnyValue::ListAny(Box::new(chain)),
            );
        }
        if let Some(id) = &a.container {
            self.add("container.id", id.clone());
        }
        if let Some(pod) = &a.pod {
            self.add("k8s.pod.uid", pod.uid.clone());
            if let Some(name) = &pod.name {
                self.add("k8s.pod.name", name.clone());
            }
            if let Some(namespace) = &pod.namespace {
                self.add("k8s.namespace.name", namespace.clone());
            }
            if let Some(container) = &pod.container {
                self.add("k8s.container.name", container.clone());
            }
        }
    }
}

#[cfg(test)]
mod tests;
