//! One readable, grep-friendly line per event:
//!
//! ```text
//! 15:17:41.123456 netns=blue(4026532456)   ip[12345] unit=demo.service        DEL       route table 77 10.1.0.0/24 via 10.0.0.1 metric 100  -> removed
//! 15:17:42.000001 netns=host(4026531840)   ip[12346] unit=session-1.scope     DEL       rule prio 100 lookup 77  -> failed ENOENT
//! ```
//!
//! Columns: time of day (UTC), network namespace, actor (`comm[pid]` and its pod
//! (`pod=namespace/name`), else its container's short id, else its systemd unit), a verb saying why the object went, the object in iproute2's
//! words, and the outcome. Every string that came from a process or the network configuration
//! is escaped ([`super::escape`]), so one event is always exactly one line.

use std::fmt::Write as _;

use crate::event::{Actor, Cause, Event, EventType, Netns, Outcome, Restore, RestoreOutcome};

use super::escape::escape;

/// Column widths: wide enough for the common case, so the verbs line up.
const NETNS_WIDTH: usize = 24;
const ACTOR_WIDTH: usize = 33;
const VERB_WIDTH: usize = 9;
/// Docker's short id length.
const SHORT_ID: usize = 12;

/// The event as one line, without a trailing newline.
pub fn format_line(ev: &Event) -> String {
    let [netns, actor, verb, object, outcome] = columns(ev);
    let mut line = String::with_capacity(160);
    // Writing to a String cannot fail; the results below are ignored for that reason.
    let _ = write!(
        line,
        "{} {netns:<nw$} {actor:<aw$}  {verb:<vw$} {object}  -> {outcome}",
        ev.ts.time_of_day(),
        nw = NETNS_WIDTH,
        aw = ACTOR_WIDTH,
        vw = VERB_WIDTH,
    );
    line
}

/// The line without its time of day and column padding, for a sink whose records carry the
/// time (OpenTelemetry's body): `netns=blue(4026532456) ip[12345] unit=demo.service DEL route
/// table 77 10.1.0.0/24 via 10.0.0.1 metric 100 -> removed`.
pub fn summary(ev: &Event) -> String {
    let [netns, actor, verb, object, outcome] = columns(ev);
    format!("{netns} {actor} {verb} {object} -> {outcome}")
}

/// Every column but the time, escaped.
fn columns(ev: &Event) -> [String; 5] {
    [
        netns(&ev.netns),
        actor(ev.actor.as_deref()),
        match ev.event {
            EventType::Removal => verb(ev.cause),
            EventType::Restore => "RESTORE",
            EventType::RestoreSuspended => "SUSPEND",
        }
        .to_owned(),
        object(ev),
        match &ev.restore {
            Some(r) => restore_outcome(r),
            None => outcome(ev),
        },
    ]
}

fn netns(ns: &Netns) -> String {
    match &ns.name {
        Some(name) => format!("netns={}({})", escape(name), ns.inode),
        None => format!("netns={}", ns.inode),
    }
}

/// `comm[pid]`, then `pod=<namespace>/<name>`, `container=<short id>` or `unit=<unit>`; `-`
/// when no process asked.
fn actor(actor: Option<&Actor>) -> String {
    let Some(a) = actor else {
        return "-".to_string();
    };
    let mut s = format!("{}[{}]", escape(&a.comm), a.pid);
    let pod = a
        .pod
        .as_ref()
        .and_then(|p| Some((p.namespace.as_ref()?, p.name.as_ref()?)));
    if let Some((namespace, name)) = pod {
        let _ = write!(s, " pod={}/{}", escape(namespace), escape(name));
    } else if let Some(id) = &a.container {
        let short: String = id.chars().take(SHORT_ID).collect();
        let _ = write!(s, " container={}", escape(&short));
    } else if let Some(unit) = &a.unit {
        let _ = write!(s, " unit={}", escape(unit));
    }
    s
}

pub fn verb(cause: Cause) -> &'static str {
    match cause {
        Cause::Request => "DEL",
        Cause::Replace => "REPLACE",
        Cause::LinkDown => "LINK-DOWN",
        Cause::AddressRemoved => "ADDR-DEL",
        Cause::LinkRemoved => "LINK-DEL",
        Cause::Flush => "FLUSH",
        Cause::Expired => "EXPIRED",
        Cause::NetnsExit => "NETNS-EXIT",
    }
}

/// The object in iproute2's words; its process-derived parts (device names) escaped. A replace
/// shows the route that took the removed one's place after `=>`.
fn object(ev: &Event) -> String {
    use crate::event::describe;
    let mut text = describe::object(&ev.object);
    if let Some(new) = &ev.replacement {
        let new = describe::route(new);
        text.push_str(" => ");
        text.push_str(new.strip_prefix("route ").unwrap_or(&new));
    }
    escape(&text).into_owned()
}

fn outcome(ev: &Event) -> String {
    match ev.outcome {
        Outcome::Removed => "removed".to_string(),
        Outcome::Unknown => "unknown".to_string(),
        Outcome::Denied => "denied EPERM".to_string(),
        Outcome::WouldDeny => "would-deny".to_string(),
        Outcome::Failed => match (&ev.error, ev.errno) {
            (Some(name), _) => format!("failed {}", escape(name)),
            (None, Some(errno)) => format!("failed errno {errno}"),
            (None, None) => "failed".to_string(),
        },
    }
}

/// `restored in 412us`, `failed ENETDOWN (retrying …)`, `suspended: <why>. hint: <advice>`.
fn restore_outcome(r: &Restore) -> String {
    let mut s = match r.outcome {
        RestoreOutcome::Restored => match r.latency_us {
            Some(us) => format!("restored in {us}us"),
            None => "restored".to_string(),
        },
        RestoreOutcome::AlreadyPresent => "already present".to_string(),
        RestoreOutcome::Failed => match &r.error {
            Some(name) => format!("restore failed {}", escape(name)),
            None => "restore failed".to_string(),
        },
        RestoreOutcome::DryRun => "would restore (dry run)".to_string(),
        RestoreOutcome::Skipped => "not restored".to_string(),
        RestoreOutcome::Suspended => format!("restores suspended after {}", r.attempt),
    };
    if r.attempt > 1 && r.outcome != RestoreOutcome::Suspended {
        let _ = write!(s, " (attempt {})", r.attempt);
    }
    if let Some(detail) = &r.detail {
        let _ = write!(s, ": {}", escape(detail));
    }
    if let Some(hint) = &r.hint {
        let _ = write!(s, " hint: {}", escape(hint));
    }
    s
}

#[cfg(test)]
mod tests;
