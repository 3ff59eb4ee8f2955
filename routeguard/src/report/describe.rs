//! Objects and actors in words, unescaped: each renderer escapes them for its own format.
//!
//! Objects are described as iproute2 would name them (`route table 77 10.1.0.0/24 via 10.0.0.1`,
//! `rule prio 100 lookup 77`), the same words as the terminal sink, so a report and a `trace`
//! session read alike. A field the request did not name is left out.

use std::fmt::Write as _;

use crate::event::{Actor, Cause, Kind, Outcome};

pub use crate::event::describe::{object, route, table_name};

/// `comm[pid]`.
pub fn comm_pid(comm: &str, pid: u32) -> String {
    format!("{comm}[{pid}]")
}

/// `systemd-networkd[812] (systemd-networkd.service), started by systemd[1]` — who, where, and
/// the parent chain (nearest parent first, up to pid 1 or as deep as was captured).
pub fn actor_sentence(a: &Actor) -> String {
    let mut s = comm_pid(&a.comm, a.pid);
    let mut place = Vec::new();
    if let Some(exe) = &a.exe {
        place.push(exe.clone());
    }
    if let Some(id) = &a.container {
        place.push(format!("container {}", short_id(id)));
    }
    if let Some(unit) = &a.unit {
        place.push(unit.clone());
    }
    if !place.is_empty() {
        let _ = write!(s, " ({})", place.join(", "));
    }
    if let Some(chain) = parent_chain(a) {
        let _ = write!(s, ", started by {chain}");
    }
    s
}

/// `bash[12000] ← sshd[900] ← systemd[1]`, or `None` when nothing is known.
pub fn parent_chain(a: &Actor) -> Option<String> {
    if a.ancestry.is_empty() {
        return (a.ppid != 0).then(|| format!("pid {}", a.ppid));
    }
    Some(
        a.ancestry
            .iter()
            .map(|p| comm_pid(&p.comm, p.pid))
            .collect::<Vec<_>>()
            .join(" ← "),
    )
}

/// Docker's 12-character short id.
pub fn short_id(id: &str) -> String {
    id.chars().take(12).collect()
}

/// The event schema's spelling of a kind / cause / outcome (kebab-case).
pub fn kind_name(k: Kind) -> &'static str {
    match k {
        Kind::Route => "route",
        Kind::Rule => "rule",
        Kind::Nexthop => "nexthop",
        Kind::Link => "link",
        Kind::Address => "address",
    }
}

pub fn kind_plural(k: Kind, n: u64) -> String {
    let name = match k {
        Kind::Address => "address",
        other => kind_name(other),
    };
    match (n, k) {
        (1, _) => format!("1 {name}"),
        (n, Kind::Address) => format!("{n} addresses"),
        (n, _) => format!("{n} {name}s"),
    }
}

pub fn cause_name(c: Cause) -> &'static str {
    match c {
        Cause::Request => "request",
        Cause::Replace => "replace",
        Cause::LinkDown => "link-down",
        Cause::AddressRemoved => "address-removed",
        Cause::LinkRemoved => "link-removed",
        Cause::Flush => "flush",
        Cause::Expired => "expired",
        Cause::NetnsExit => "netns-exit",
    }
}

pub fn outcome_name(o: Outcome) -> &'static str {
    match o {
        Outcome::Removed => "removed",
        Outcome::Failed => "failed",
        Outcome::Unknown => "unknown",
        Outcome::Denied => "denied",
        Outcome::WouldDeny => "would-deny",
    }
}

/// `1.2 s`, `250 ms`, `3 min 4 s`, `2 h 5 min`.
pub fn duration(ns: i128) -> String {
    let ms = ns / 1_000_000;
    match ms {
        ..=0 if ns > 0 => format!("{} µs", ns / 1000),
        ..=999 => format!("{ms} ms"),
        1_000..=59_999 => format!("{}.{} s", ms / 1000, (ms % 1000) / 100),
        60_000..=3_599_999 => format!("{} min {} s", ms / 60_000, (ms % 60_000) / 1000),
        _ => format!("{} h {} min", ms / 3_600_000, (ms % 3_600_000) / 60_000),
    }
}

/// A restore latency: `412 µs`, `3.4 ms`, `1.2 s`.
pub fn micros(us: u64) -> String {
    match us {
        0..=999 => format!("{us} µs"),
        1_000..=99_999 => format!("{}.{} ms", us / 1000, (us % 1000) / 100),
        100_000..=999_999 => format!("{} ms", us / 1000),
        _ => duration(i128::from(us) * 1000),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::fixtures;

    #[test]
    fn objects_in_iproute2_words() {
        assert_eq!(
            object(&fixtures::route_event().object),
            "route table 77 10.1.0.0/24 via 10.0.0.1 metric 100"
        );
        assert_eq!(
            object(&fixtures::rule_event().object),
            "rule prio 100 lookup 77"
        );
    }

    #[test]
    fn actor_with_unit_and_parent_chain() {
        let a = fixtures::actor();
        let s = actor_sentence(&a);
        assert!(s.starts_with(&format!("{}[{}]", a.comm, a.pid)), "{s}");
        assert!(s.contains("started by "), "{s}");
    }

    #[test]
    fn durations_read_naturally() {
        assert_eq!(duration(1_500), "1 µs");
        assert_eq!(duration(250_000_000), "250 ms");
        assert_eq!(duration(1_250_000_000), "1.2 s");
        assert_eq!(duration(184_000_000_000), "3 min 4 s");
        assert_eq!(duration(7_500_000_000_000), "2 h 5 min");
        assert_eq!(kind_plural(Kind::Address, 2), "2 addresses");
        assert_eq!(kind_plural(Kind::Rule, 1), "1 rule");
        assert_eq!(micros(412), "412 µs");
        assert_eq!(micros(3_456), "3.4 ms");
        assert_eq!(micros(250_000), "250 ms");
        assert_eq!(micros(1_250_000), "1.2 s");
    }
}
