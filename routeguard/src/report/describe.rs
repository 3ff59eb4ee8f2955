//! Objects and actors in words, unescaped: each renderer escapes them for its own format.
//!
//! Objects are described as iproute2 would name them (`route table 77 10.1.0.0/24 via 10.0.0.1`,
//! `rule prio 100 lookup 77`), the same words as the terminal sink, so a report and a `trace`
//! session read alike. A field the request did not name is left out.

use std::fmt::Write as _;

use crate::event::{Actor, Address, Cause, Event, Kind, Link, Nexthop, Outcome, Route, Rule};

/// The removed object in iproute2's words, as the request named it.
pub fn object(ev: &Event) -> String {
    object_of(
        ev.kind,
        &Objects {
            route: ev.route.as_ref(),
            rule: ev.rule.as_ref(),
            nexthop: ev.nexthop.as_ref(),
            link: ev.link.as_ref(),
            address: ev.address.as_ref(),
        },
    )
}

/// The object fields of an event, wherever they were read from.
pub struct Objects<'e> {
    pub route: Option<&'e Route>,
    pub rule: Option<&'e Rule>,
    pub nexthop: Option<&'e Nexthop>,
    pub link: Option<&'e Link>,
    pub address: Option<&'e Address>,
}

/// [`object`] from the object fields alone.
pub fn object_of(kind: Kind, ev: &Objects) -> String {
    let mut w = Words::default();
    match kind {
        Kind::Route => {
            w.word("route");
            if let Some(r) = ev.route {
                w.key("table", r.table.map(table_name));
                w.opt(r.dst.as_deref());
                w.key("nhid", r.nhid);
                w.key("via", r.gateway.as_deref());
                match &r.dev {
                    Some(dev) => w.key("dev", Some(dev)),
                    None => w.key("oif", r.oif),
                }
                w.key("proto", r.protocol.as_deref());
                w.key("scope", r.scope.as_deref());
                w.key("src", r.src.as_deref());
                w.key("metric", r.priority);
                w.key("tos", r.tos.map(|t| format!("0x{t:02x}")));
                w.key("type", r.route_type.as_deref());
            }
        }
        Kind::Rule => {
            w.word("rule");
            if let Some(r) = ev.rule {
                w.key("prio", r.priority);
                if r.invert {
                    w.word("not");
                }
                w.key("from", r.from.as_deref());
                w.key("to", r.to.as_deref());
                w.key("iif", r.iif.as_deref());
                w.key("oif", r.oif.as_deref());
                w.key("fwmark", r.fwmark.as_deref());
                match r.action.as_deref() {
                    None | Some("lookup") => w.key("lookup", r.table.map(table_name)),
                    Some(action) => w.word(action),
                }
                w.key("proto", r.protocol.as_deref());
            }
        }
        Kind::Nexthop => {
            w.word("nexthop");
            w.key("id", ev.nexthop.and_then(|n| n.id));
        }
        Kind::Link => {
            w.word("link");
            if let Some(l) = ev.link {
                w.key("dev", l.name.as_deref());
                w.key("ifindex", l.ifindex);
            }
        }
        Kind::Address => {
            w.word("addr");
            if let Some(a) = ev.address {
                w.opt(a.address.as_deref());
                match &a.dev {
                    Some(dev) => w.key("dev", Some(dev)),
                    None => w.key("ifindex", a.ifindex),
                }
            }
        }
    }
    w.0
}

/// iproute2's names for the reserved tables.
pub fn table_name(id: u32) -> String {
    match id {
        253 => "default".to_string(),
        254 => "main".to_string(),
        255 => "local".to_string(),
        n => n.to_string(),
    }
}

#[derive(Default)]
struct Words(String);

impl Words {
    fn word(&mut self, w: impl std::fmt::Display) {
        if !self.0.is_empty() {
            self.0.push(' ');
        }
        // Writing to a String cannot fail.
        let _ = write!(self.0, "{w}");
    }

    fn opt(&mut self, w: Option<&str>) {
        if let Some(w) = w {
            self.word(w);
        }
    }

    fn key(&mut self, key: &str, value: Option<impl std::fmt::Display>) {
        if let Some(v) = value {
            self.word(key);
            self.word(v);
        }
    }
}

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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sink::fixtures;

    #[test]
    fn objects_in_iproute2_words() {
        assert_eq!(
            object(&fixtures::route_event()),
            "route table 77 10.1.0.0/24 via 10.0.0.1 metric 100"
        );
        assert_eq!(object(&fixtures::rule_event()), "rule prio 100 lookup 77");
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
    }
}
