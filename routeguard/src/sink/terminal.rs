//! One readable, grep-friendly line per event:
//!
//! ```text
//! 15:17:41.123456 netns=blue(4026532456)   ip[12345] unit=demo.service        DEL       route table 77 10.1.0.0/24 via 10.0.0.1 metric 100  -> removed
//! 15:17:42.000001 netns=host(4026531840)   ip[12346] unit=session-1.scope     DEL       rule prio 100 lookup 77  -> failed ENOENT
//! ```
//!
//! Columns: time of day (UTC), network namespace, actor (`comm[pid]` and its systemd unit, or
//! its container's short id), a verb saying why the object went, the object in iproute2's
//! words, and the outcome. Every string that came from a process or the network configuration
//! is escaped ([`super::escape`]), so one event is always exactly one line.

use std::fmt::Write as _;

use crate::event::{
    Actor, Address, Cause, Event, Kind, Link, Netns, Nexthop, Outcome, Route, Rule,
};

use super::escape::escape;

/// Column widths: wide enough for the common case, so the verbs line up.
const NETNS_WIDTH: usize = 24;
const ACTOR_WIDTH: usize = 33;
const VERB_WIDTH: usize = 9;
/// Docker's short id length.
const SHORT_ID: usize = 12;

/// The event as one line, without a trailing newline.
pub fn format_line(ev: &Event) -> String {
    let mut line = String::with_capacity(160);
    // Writing to a String cannot fail; the results below are ignored for that reason.
    let _ = write!(
        line,
        "{} {:<nw$} {:<aw$}  {:<vw$} {}  -> {}",
        ev.ts.time_of_day(),
        netns(&ev.netns),
        actor(ev.actor.as_ref()),
        verb(ev.cause),
        object(ev),
        outcome(ev),
        nw = NETNS_WIDTH,
        aw = ACTOR_WIDTH,
        vw = VERB_WIDTH,
    );
    line
}

fn netns(ns: &Netns) -> String {
    match &ns.name {
        Some(name) => format!("netns={}({})", escape(name), ns.inode),
        None => format!("netns={}", ns.inode),
    }
}

/// `comm[pid]`, then `container=<short id>` or `unit=<unit>`; `-` when no process asked.
fn actor(actor: Option<&Actor>) -> String {
    let Some(a) = actor else {
        return "-".to_string();
    };
    let mut s = format!("{}[{}]", escape(&a.comm), a.pid);
    if let Some(id) = &a.container {
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

fn object(ev: &Event) -> String {
    let mut words = Words::default();
    match ev.kind {
        Kind::Route => route(&mut words, ev.route.as_ref()),
        Kind::Rule => rule(&mut words, ev.rule.as_ref()),
        Kind::Nexthop => nexthop(&mut words, ev.nexthop.as_ref()),
        Kind::Link => link(&mut words, ev.link.as_ref()),
        Kind::Address => address(&mut words, ev.address.as_ref()),
    }
    words.0
}

/// Space-separated words; every string pushed through [`Words::text`] is escaped.
#[derive(Default)]
struct Words(String);

impl Words {
    fn word(&mut self, w: impl std::fmt::Display) {
        if !self.0.is_empty() {
            self.0.push(' ');
        }
        let _ = write!(self.0, "{w}");
    }

    fn text(&mut self, s: &str) {
        self.word(escape(s));
    }

    fn key(&mut self, key: &str, value: Option<impl std::fmt::Display>) {
        if let Some(v) = value {
            self.word(key);
            self.word(v);
        }
    }

    fn key_text(&mut self, key: &str, value: Option<&String>) {
        if let Some(v) = value {
            self.word(key);
            self.text(v);
        }
    }
}

/// iproute2's names for the reserved tables.
fn table_name(id: u32) -> String {
    match id {
        253 => "default".to_string(),
        254 => "main".to_string(),
        255 => "local".to_string(),
        n => n.to_string(),
    }
}

/// `route [table N] dst [nhid N] [via gw] [dev X|oif N] [proto P] [scope S] [src S] [metric M] [tos T] [type T]`
fn route(w: &mut Words, r: Option<&Route>) {
    w.word("route");
    let Some(r) = r else { return };
    w.key("table", r.table.map(table_name));
    if let Some(dst) = &r.dst {
        w.text(dst);
    }
    w.key("nhid", r.nhid);
    w.key_text("via", r.gateway.as_ref());
    if r.dev.is_some() {
        w.key_text("dev", r.dev.as_ref());
    } else {
        w.key("oif", r.oif);
    }
    w.key_text("proto", r.protocol.as_ref());
    w.key_text("scope", r.scope.as_ref());
    w.key_text("src", r.src.as_ref());
    w.key("metric", r.priority);
    w.key("tos", r.tos.map(|t| format!("0x{t:02x}")));
    w.key_text("type", r.route_type.as_ref());
}

/// `rule [prio N] [not] [from X] [to Y] [iif I] [oif O] [fwmark M] [lookup T|<action>] [proto P]`
fn rule(w: &mut Words, r: Option<&Rule>) {
    w.word("rule");
    let Some(r) = r else { return };
    w.key("prio", r.priority);
    if r.invert {
        w.word("not");
    }
    w.key_text("from", r.from.as_ref());
    w.key_text("to", r.to.as_ref());
    w.key_text("iif", r.iif.as_ref());
    w.key_text("oif", r.oif.as_ref());
    w.key_text("fwmark", r.fwmark.as_ref());
    match r.action.as_deref() {
        None | Some("lookup") => w.key("lookup", r.table.map(table_name)),
        Some(action) => w.text(action),
    }
    w.key_text("proto", r.protocol.as_ref());
}

fn nexthop(w: &mut Words, n: Option<&Nexthop>) {
    w.word("nexthop");
    w.key("id", n.and_then(|n| n.id));
}

fn link(w: &mut Words, l: Option<&Link>) {
    w.word("link");
    let Some(l) = l else { return };
    w.key_text("dev", l.name.as_ref());
    w.key("ifindex", l.ifindex);
}

fn address(w: &mut Words, a: Option<&Address>) {
    w.word("addr");
    let Some(a) = a else { return };
    if let Some(addr) = &a.address {
        w.text(addr);
    }
    if a.dev.is_some() {
        w.key_text("dev", a.dev.as_ref());
    } else {
        w.key("ifindex", a.ifindex);
    }
}

fn outcome(ev: &Event) -> String {
    match ev.outcome {
        Outcome::Removed => "removed".to_string(),
        Outcome::Unknown => "unknown".to_string(),
        Outcome::Failed => match (&ev.error, ev.errno) {
            (Some(name), _) => format!("failed {}", escape(name)),
            (None, Some(errno)) => format!("failed errno {errno}"),
            (None, None) => "failed".to_string(),
        },
    }
}

#[cfg(test)]
mod tests;
