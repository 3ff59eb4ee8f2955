//! Objects in iproute2's words (`route table 77 10.1.0.0/24 via 10.0.0.1`, `rule prio 100 lookup
//! 77`), unescaped: the terminal sink and each report format escape the result for themselves,
//! so a `trace` session and a report read alike. A field nobody named is left out. For
//! humans only: an object's identity is its [`ObjectKey`](super::ObjectKey), not these words.

use std::fmt::Write as _;

use super::{Address, Link, Nexthop, Object, Route, Rule};

/// The removed object in iproute2's words.
pub fn object(object: &Object) -> String {
    let mut w = Words::default();
    match object {
        Object::Route(r) => route_words(&mut w, r),
        Object::Rule(r) => rule_words(&mut w, r),
        Object::Nexthop(n) => nexthop_words(&mut w, n),
        Object::Link(l) => link_words(&mut w, l),
        Object::Address(a) => address_words(&mut w, a),
    }
    w.0
}

/// A route in iproute2's words: `route table 77 10.1.0.0/24 via 10.0.0.1`.
pub fn route(r: &Route) -> String {
    let mut w = Words::default();
    route_words(&mut w, r);
    w.0
}

fn route_words(w: &mut Words, r: &Route) {
    w.word("route");
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

fn rule_words(w: &mut Words, r: &Rule) {
    w.word("rule");
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

fn nexthop_words(w: &mut Words, n: &Nexthop) {
    w.word("nexthop");
    w.key("id", n.id);
}

fn link_words(w: &mut Words, l: &Link) {
    w.word("link");
    w.key("dev", l.name.as_deref());
    w.key("ifindex", l.ifindex);
}

fn address_words(w: &mut Words, a: &Address) {
    w.word("addr");
    w.opt(a.address.as_deref());
    match &a.dev {
        Some(dev) => w.key("dev", Some(dev)),
        None => w.key("ifindex", a.ifindex),
    }
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
