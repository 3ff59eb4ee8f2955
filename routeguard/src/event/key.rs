//! An object's identity: what makes two descriptions of one object in one namespace the same
//! object, whichever capture path gave them. It is built from the object's fields — addresses
//! and prefixes parsed, a metric or tos the kernel left out read as the 0 it means, a route's
//! device by its index — never from its words ([`describe`](super::describe)): a kernel-function
//! record names a route's device (`dev rg0`) where a notification gives only its index (`oif 3`),
//! and both are one route.
//!
//! Text the decoders never write (an address that does not parse, in a hand-made capture) leaves
//! its field unknown (`None`), as an absent one is.

use std::net::IpAddr;

use super::{Address, Family, Link, Nexthop, Object, Route, Rule};

/// An object's identity in its network namespace.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ObjectKey {
    Route(RouteKey),
    /// Boxed: a rule's key is thrice a route's, and routes are the many (a report keeps one key
    /// per object it names).
    Rule(Box<RuleKey>),
    Nexthop {
        id: Option<u32>,
    },
    /// A link by its index; one named only by its name (`ifconfig X down`) by that.
    Link {
        ifindex: Option<i32>,
        name: Option<String>,
    },
    /// An address by its link's index (else its link's name) and its prefix.
    Address {
        family: Option<Family>,
        ifindex: Option<u32>,
        dev: Option<String>,
        address: Option<Prefix>,
    },
}

impl ObjectKey {
    /// The identity of `object`, of address family `family` (the event's).
    pub fn of(family: Option<Family>, object: &Object) -> Self {
        match object {
            Object::Route(r) => ObjectKey::Route(RouteKey::of(family, r)),
            Object::Rule(r) => ObjectKey::Rule(Box::new(RuleKey::of(family, r))),
            Object::Nexthop(Nexthop { id }) => ObjectKey::Nexthop { id: *id },
            Object::Link(Link { ifindex, name }) => ObjectKey::Link {
                ifindex: *ifindex,
                name: name.clone().filter(|_| ifindex.is_none()),
            },
            Object::Address(Address {
                ifindex,
                dev,
                address,
            }) => ObjectKey::Address {
                family,
                ifindex: *ifindex,
                dev: dev.clone().filter(|_| ifindex.is_none()),
                address: address.as_deref().and_then(Prefix::parse),
            },
        }
    }
}

/// A route's identity: the kernel's FIB key (family, table, prefix, tos, metric) and what it
/// leads to (gateway, output interface, type).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RouteKey {
    pub family: Option<Family>,
    pub table: Option<u32>,
    pub dst: Option<Prefix>,
    /// 0 when not named (the kernel leaves out a tos of 0).
    pub tos: u8,
    /// `RTA_PRIORITY`; 0 when not named: an IPv4 notification leaves out a metric of 0, which
    /// the kernel-function records state.
    pub metric: u32,
    pub gateway: Option<IpAddr>,
    /// `RTA_OIF`, the output interface's index (not its name, which only some paths give).
    pub ifindex: Option<u32>,
    /// `rtm_type` (`RTN_UNICAST`, …).
    pub route_type: Option<u8>,
}

impl RouteKey {
    pub fn of(family: Option<Family>, r: &Route) -> Self {
        Self {
            family,
            table: r.table,
            dst: r.dst.as_deref().and_then(Prefix::parse),
            tos: r.tos.unwrap_or(0),
            metric: r.priority.unwrap_or(0),
            gateway: r.gateway.as_deref().and_then(|g| g.parse().ok()),
            ifindex: r.oif,
            route_type: r.route_type.as_deref().and_then(route_type_number),
        }
    }
}

/// A policy rule's identity: its selectors, what it does, and who added it.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RuleKey {
    pub family: Option<Family>,
    pub priority: Option<u32>,
    pub table: Option<u32>,
    pub from: Option<Prefix>,
    pub to: Option<Prefix>,
    pub iif: Option<String>,
    pub oif: Option<String>,
    /// (mark, mask).
    pub fwmark: Option<(u32, u32)>,
    pub action: Option<String>,
    pub protocol: Option<String>,
    pub invert: bool,
}

impl RuleKey {
    pub fn of(family: Option<Family>, r: &Rule) -> Self {
        Self {
            family,
            priority: r.priority,
            table: r.table,
            from: r.from.as_deref().and_then(Prefix::parse),
            to: r.to.as_deref().and_then(Prefix::parse),
            iif: r.iif.clone(),
            oif: r.oif.clone(),
            fwmark: r.fwmark.as_deref().and_then(parse_fwmark),
            action: r.action.clone(),
            protocol: r.protocol.clone(),
            invert: r.invert,
        }
    }
}

/// A prefix as events write it: `10.1.0.0/24`, `2001:db8::/64`, or `default`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Prefix {
    /// Length 0, of the family of whatever holds it.
    Default,
    Net {
        addr: IpAddr,
        len: u8,
    },
}

impl Prefix {
    /// `default`, `ADDRESS/LEN`, or a bare address (its full length); `None` for anything else.
    pub fn parse(text: &str) -> Option<Self> {
        if text == "default" {
            return Some(Prefix::Default);
        }
        let (addr, len) = match text.split_once('/') {
            Some((addr, len)) => (addr.parse::<IpAddr>().ok()?, len.parse::<u8>().ok()?),
            None => {
                let addr = text.parse::<IpAddr>().ok()?;
                (addr, if addr.is_ipv4() { 32 } else { 128 })
            }
        };
        Some(if len == 0 {
            Prefix::Default
        } else {
            Prefix::Net { addr, len }
        })
    }
}

/// `0x10`, `16` or `0x10/0xff` → (mark, mask); a mark without a mask matches all 32 bits.
pub fn parse_fwmark(text: &str) -> Option<(u32, u32)> {
    let num = |t: &str| match t.strip_prefix("0x") {
        Some(hex) => u32::from_str_radix(hex, 16).ok(),
        None => t.parse().ok(),
    };
    match text.split_once('/') {
        Some((mark, mask)) => Some((num(mark)?, num(mask)?)),
        None => Some((num(text)?, u32::MAX)),
    }
}

/// `rtm_type` (`RTN_*`, include/uapi/linux/rtnetlink.h) by number, as iproute2 names it.
const ROUTE_TYPES: [&str; 12] = [
    "unspec",
    "unicast",
    "local",
    "broadcast",
    "anycast",
    "multicast",
    "blackhole",
    "unreachable",
    "prohibit",
    "throw",
    "nat",
    "xresolve",
];

/// A route's `type` as events write it: its name, else the number.
pub fn route_type_name(raw: u8) -> String {
    ROUTE_TYPES
        .get(usize::from(raw))
        .map_or_else(|| raw.to_string(), |name| (*name).to_owned())
}

/// The number a route's `type` names.
fn route_type_number(name: &str) -> Option<u8> {
    match ROUTE_TYPES.iter().position(|n| *n == name) {
        Some(raw) => u8::try_from(raw).ok(),
        None => name.parse().ok(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route(priority: Option<u32>) -> Route {
        Route {
            table: Some(77),
            dst: Some("10.1.0.0/24".into()),
            gateway: Some("10.99.0.2".into()),
            oif: Some(3),
            priority,
            route_type: Some("unicast".into()),
            ..Route::default()
        }
    }

    #[test]
    fn one_route_whichever_path_described_it() {
        let family = Some(Family::Inet);
        // The kernel-function record names the device and states the metric 0; the syscall
        // path's notification gives the index and leaves the metric out.
        let record = Route {
            dev: Some("rg0".into()),
            protocol: Some("boot".into()),
            scope: Some("universe".into()),
            ..route(Some(0))
        };
        let notification = route(None);
        assert_eq!(
            RouteKey::of(family, &record),
            RouteKey::of(family, &notification)
        );
        let key = |r: &Route| ObjectKey::of(family, &Object::Route(r.clone()));
        assert_eq!(key(&record), key(&notification));
        // What the route is, or leads to, is its identity.
        for other in [
            route(Some(100)),
            Route {
                oif: Some(4),
                ..route(None)
            },
            Route {
                gateway: Some("10.99.0.3".into()),
                ..route(None)
            },
            Route {
                dst: Some("10.1.0.0/25".into()),
                ..route(None)
            },
            Route {
                route_type: Some("blackhole".into()),
                ..route(None)
            },
        ] {
            assert_ne!(key(&other), key(&notification), "{other:?}");
        }
        assert_ne!(
            RouteKey::of(Some(Family::Inet6), &notification),
            RouteKey::of(family, &notification)
        );
    }

    #[test]
    fn prefixes_and_marks_parse_as_events_write_them() {
        let net = |addr: &str, len| Prefix::Net {
            addr: addr.parse().unwrap(),
            len,
        };
        assert_eq!(Prefix::parse("10.1.0.0/24"), Some(net("10.1.0.0", 24)));
        assert_eq!(Prefix::parse("2001:db8::/64"), Some(net("2001:db8::", 64)));
        assert_eq!(Prefix::parse("10.0.0.1"), Some(net("10.0.0.1", 32)));
        assert_eq!(Prefix::parse("default"), Some(Prefix::Default));
        assert_eq!(Prefix::parse("0.0.0.0/0"), Some(Prefix::Default));
        assert_eq!(Prefix::parse("10.1.0.0/x"), None);
        assert_eq!(parse_fwmark("0x64/0xff"), Some((0x64, 0xff)));
        assert_eq!(parse_fwmark("0x64"), Some((0x64, u32::MAX)));
        assert_eq!(parse_fwmark("16"), Some((16, u32::MAX)));
        assert_eq!(parse_fwmark("0xzz"), None);
        for raw in 0..=u8::MAX {
            assert_eq!(route_type_number(&route_type_name(raw)), Some(raw));
        }
    }

    #[test]
    fn rules_links_and_addresses_by_their_selectors_and_indexes() {
        let family = Some(Family::Inet);
        let rule = Rule {
            priority: Some(100),
            table: Some(77),
            from: Some("10.0.0.0/8".into()),
            fwmark: Some("0x64".into()),
            ..Rule::default()
        };
        let same = Rule {
            fwmark: Some("0x64/0xffffffff".into()),
            ..rule.clone()
        };
        assert_eq!(RuleKey::of(family, &rule), RuleKey::of(family, &same));
        let other = Rule {
            invert: true,
            ..rule.clone()
        };
        assert_ne!(RuleKey::of(family, &rule), RuleKey::of(family, &other));
        assert_ne!(
            RuleKey::of(Some(Family::Inet6), &rule),
            RuleKey::of(family, &rule)
        );
        let link = |ifindex, name: &str| {
            ObjectKey::of(
                None,
                &Object::Link(Link {
                    ifindex,
                    name: Some(name.into()),
                }),
            )
        };
        assert_eq!(link(Some(3), "rg0"), link(Some(3), "renamed"));
        assert_ne!(link(None, "rg0"), link(None, "rg1"));
        let address = |ifindex, dev: Option<&str>| {
            ObjectKey::of(
                family,
                &Object::Address(Address {
                    ifindex,
                    dev: dev.map(String::from),
                    address: Some("10.0.0.2/24".into()),
                }),
            )
        };
        assert_eq!(address(Some(3), Some("rg0")), address(Some(3), None));
    }
}
