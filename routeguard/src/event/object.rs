//! The objects a removal removes, decoded from the request (or, later, the kernel's own view).
//! A field the request did not name is `None` (JSON `null`): the kernel matched it by wildcard.

use serde::{Deserialize, Serialize};

use super::Kind;

/// What a removal removes: one object, whose variant is the event's kind.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Object {
    Route(Route),
    Rule(Rule),
    Nexthop(Nexthop),
    Link(Link),
    Address(Address),
}

impl Object {
    pub fn kind(&self) -> Kind {
        match self {
            Object::Route(_) => Kind::Route,
            Object::Rule(_) => Kind::Rule,
            Object::Nexthop(_) => Kind::Nexthop,
            Object::Link(_) => Kind::Link,
            Object::Address(_) => Kind::Address,
        }
    }

    /// An object of `kind` that names nothing: what an event of that kind whose object is
    /// `null` reads as (routeguard never writes one; it describes the object as `null` does).
    pub fn unnamed(kind: Kind) -> Self {
        match kind {
            Kind::Route => Object::Route(Route::default()),
            Kind::Rule => Object::Rule(Rule::default()),
            Kind::Nexthop => Object::Nexthop(Nexthop::default()),
            Kind::Link => Object::Link(Link::default()),
            Kind::Address => Object::Address(Address::default()),
        }
    }

    /// The object an event's JSON names: the member of its kind; when that is `null` (routeguard
    /// never writes it so), [`Object::unnamed`]. The other members say nothing of it.
    pub fn from_members(
        kind: Kind,
        route: Option<Route>,
        rule: Option<Rule>,
        nexthop: Option<Nexthop>,
        link: Option<Link>,
        address: Option<Address>,
    ) -> Self {
        match kind {
            Kind::Route => route.map(Object::Route),
            Kind::Rule => rule.map(Object::Rule),
            Kind::Nexthop => nexthop.map(Object::Nexthop),
            Kind::Link => link.map(Object::Link),
            Kind::Address => address.map(Object::Address),
        }
        .unwrap_or_else(|| Object::unnamed(kind))
    }

    pub fn route(&self) -> Option<&Route> {
        match self {
            Object::Route(r) => Some(r),
            _ => None,
        }
    }

    pub fn route_mut(&mut self) -> Option<&mut Route> {
        match self {
            Object::Route(r) => Some(r),
            _ => None,
        }
    }

    pub fn rule(&self) -> Option<&Rule> {
        match self {
            Object::Rule(r) => Some(r),
            _ => None,
        }
    }

    pub fn rule_mut(&mut self) -> Option<&mut Rule> {
        match self {
            Object::Rule(r) => Some(r),
            _ => None,
        }
    }

    pub fn nexthop(&self) -> Option<&Nexthop> {
        match self {
            Object::Nexthop(n) => Some(n),
            _ => None,
        }
    }

    pub fn link(&self) -> Option<&Link> {
        match self {
            Object::Link(l) => Some(l),
            _ => None,
        }
    }

    pub fn address(&self) -> Option<&Address> {
        match self {
            Object::Address(a) => Some(a),
            _ => None,
        }
    }

    /// The routing table a route is in or a rule points at.
    pub fn table(&self) -> Option<u32> {
        match self {
            Object::Route(r) => r.table,
            Object::Rule(r) => r.table,
            _ => None,
        }
    }
}

#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(default)]
pub struct Route {
    /// Routing table id (`RTA_TABLE`, else `rtm_table`); 254 is `main`.
    pub table: Option<u32>,
    /// Destination prefix, `10.1.0.0/24`, `2001:db8::/64`, or `default`.
    pub dst: Option<String>,
    pub gateway: Option<String>,
    /// Output device name, when known.
    pub dev: Option<String>,
    /// Output interface index (`RTA_OIF`).
    pub oif: Option<u32>,
    /// `kernel`, `boot`, `static`, `dhcp`, … or the number.
    pub protocol: Option<String>,
    /// `universe`, `site`, `link`, `host`, `nowhere` or the number.
    pub scope: Option<String>,
    /// `unicast`, `local`, `blackhole`, `unreachable`, `prohibit`, … or the number.
    #[serde(rename = "type")]
    pub route_type: Option<String>,
    /// Metric (`RTA_PRIORITY`).
    pub priority: Option<u32>,
    pub src: Option<String>,
    pub tos: Option<u8>,
    /// Nexthop object id (`RTA_NH_ID`).
    pub nhid: Option<u32>,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(default)]
pub struct Rule {
    pub priority: Option<u32>,
    pub table: Option<u32>,
    pub from: Option<String>,
    pub to: Option<String>,
    pub iif: Option<String>,
    pub oif: Option<String>,
    /// `0x64` or `0x64/0xff`.
    pub fwmark: Option<String>,
    /// `lookup`, `blackhole`, `unreachable`, `prohibit`, `goto`, `nop`, or the number.
    pub action: Option<String>,
    pub protocol: Option<String>,
    /// The rule is negated (`not`).
    pub invert: bool,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(default)]
pub struct Nexthop {
    pub id: Option<u32>,
}

/// A link taken down or removed.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(default)]
pub struct Link {
    pub ifindex: Option<i32>,
    pub name: Option<String>,
}

/// An address removed (which makes the kernel drop the routes that depend on it).
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(default)]
pub struct Address {
    pub ifindex: Option<u32>,
    pub dev: Option<String>,
    /// `10.0.0.1/24`.
    pub address: Option<String>,
}
