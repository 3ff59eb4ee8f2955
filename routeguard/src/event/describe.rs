//! Objects in iproute2's words (`route table 77 10.1.0.0/24 via 10.0.0.1`, `rule prio 100 lookup
//! 77`), unescaped: the terminal sink and each report format escape the result for themselves,
//! so a `trace` session and a report read alike. A field nobody named is left out.

use std::fmt::Write as _;

use super::{Address, Event, Kind, Link, Nexthop, Route, Rule};

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
