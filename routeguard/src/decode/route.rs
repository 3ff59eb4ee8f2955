//! RTM_DELROUTE / RTM_NEWROUTE(NLM_F_REPLACE) and RTM_DELNEXTHOP bodies.

use std::{fmt::Write as _, net::IpAddr};

use netlink_packet_core::{parse_u32, Emitable, ParseableParametrized};
use netlink_packet_route::route::{
    RouteAddress, RouteAttribute, RouteHeader, RouteLwEnCapType, RouteVia,
};

use super::{attrs, family, names, BodyError, Object, Removal};
use crate::{
    event::{Cause, Family, Nexthop, Route},
    netlink::uapi::{
        AF_INET6, NHA_ID, NHMSG_LEN, RTA_DST, RTA_GATEWAY, RTA_NH_ID, RTA_OIF, RTA_PREFSRC,
        RTA_PRIORITY, RTA_TABLE, RTA_VIA, RT_SCOPE_NOWHERE, RT_TABLE_UNSPEC,
    },
};

const READ: &[u16] = &[
    RTA_DST,
    RTA_OIF,
    RTA_GATEWAY,
    RTA_PRIORITY,
    RTA_PREFSRC,
    RTA_TABLE,
    RTA_VIA,
    RTA_NH_ID,
];

/// The removal of the route an `rtmsg` body names (see [`parse`]).
pub(super) fn route(body: &[u8], cause: Cause) -> Result<Removal, BodyError> {
    let (family, route) = parse(body, cause)?;
    Ok(Removal {
        family,
        cause,
        object: Object::Route(route),
    })
}

/// The route an `rtmsg` body names. `cause` is `Request` for RTM_DELROUTE and `Replace` for
/// RTM_NEWROUTE with NLM_F_REPLACE; for a replace, the fields other than the key (table, dst,
/// tos, priority) describe the route that takes the old one's place.
pub(super) fn parse(body: &[u8], cause: Cause) -> Result<(Option<Family>, Route), BodyError> {
    let header = RouteHeader::parse(body).map_err(|e| BodyError::Header {
        header: "rtmsg",
        reason: e.to_string(),
    })?;
    let attributes = body.get(header.buffer_len()..).unwrap_or_default();
    let raw_family = u8::from(header.address_family);
    let family = family(raw_family);

    let mut dst = None;
    let mut route = Route::default();
    attrs::for_each(
        attributes,
        READ,
        |nla| {
            // The encap type only matters to RTA_ENCAP, which is not read.
            let param = (header.address_family, header.kind, RouteLwEnCapType::None);
            RouteAttribute::parse_with_param(nla, param)
        },
        |attr| match attr {
            RouteAttribute::Destination(addr) => dst = address(&addr),
            RouteAttribute::Gateway(addr) => route.gateway = address(&addr).map(|a| a.to_string()),
            RouteAttribute::Via(via) => route.gateway = via_address(&via),
            RouteAttribute::PrefSource(addr) => route.src = address(&addr).map(|a| a.to_string()),
            RouteAttribute::Oif(oif) => route.oif = Some(oif),
            RouteAttribute::Priority(metric) => route.priority = Some(metric),
            RouteAttribute::Table(table) => route.table = Some(table),
            RouteAttribute::NhId(id) => route.nhid = Some(id),
            _ => {}
        },
    )?;

    // RTA_TABLE overrides rtm_table (it holds ids above 255). 0 (RT_TABLE_UNSPEC) names no
    // table; the kernel then uses main (`fib_get_table`, `fib6_get_table`), but the request
    // did not say so.
    route.table = route
        .table
        .or(Some(u32::from(header.table)))
        .filter(|table| *table != RT_TABLE_UNSPEC);
    route.dst = prefix(dst, header.destination_prefix_length, family);
    route.tos = Some(header.tos).filter(|tos| *tos != 0);

    let protocol = u8::from(header.protocol);
    let scope = u8::from(header.scope);
    let kind = u8::from(header.kind);
    // On a delete these are wildcards when 0 / RT_SCOPE_NOWHERE / RTN_UNSPEC: IPv4's
    // `fib_table_delete` (net/ipv4/fib_trie.c) matches `(!cfg->fc_type || fa->fa_type ==
    // cfg->fc_type) && (cfg->fc_scope == RT_SCOPE_NOWHERE || ...) && (!cfg->fc_protocol ||
    // ...)`. `ip route del` sends protocol 0, type 0 and scope NOWHERE (IPv4) or 0 (IPv6).
    // IPv6's `ip6_route_del` (net/ipv6/route.c) never compares the scope, so an IPv6 delete
    // states none. A replace states all three for the new route.
    let delete = cause == Cause::Request;
    route.protocol = (!delete || protocol != 0).then(|| names::protocol(protocol));
    route.route_type = (!delete || kind != 0).then(|| names::route_type(kind));
    let scope_is_wildcard = scope == RT_SCOPE_NOWHERE || raw_family == AF_INET6;
    route.scope = (!delete || !scope_is_wildcard).then(|| names::scope(scope));

    Ok((family, route))
}

/// The nexthop object an RTM_DELNEXTHOP body names. `netlink-packet-route` 0.34 has no nexthop
/// messages, so the fixed `struct nhmsg` is checked here and NHA_ID parsed by
/// `netlink-packet-core`.
pub(super) fn nexthop(body: &[u8]) -> Result<Removal, BodyError> {
    let (Some(&raw_family), Some(attributes)) = (body.first(), body.get(NHMSG_LEN..)) else {
        return Err(BodyError::Short {
            header: "nhmsg",
            len: body.len(),
            needs: NHMSG_LEN,
        });
    };
    let mut nexthop = Nexthop::default();
    attrs::for_each(
        attributes,
        &[NHA_ID],
        |nla| parse_u32(nla.value()),
        |id| nexthop.id = Some(id),
    )?;
    Ok(Removal {
        family: family(raw_family),
        cause: Cause::Request,
        object: Object::Nexthop(nexthop),
    })
}

/// `a.b.c.d/len`, `2001:db8::/64` or `default`. Without RTA_DST the kernel uses the all-zero
/// address of `dst_len` bits, so a delete without it and with `dst_len` 0 is the default route.
pub(super) fn prefix(dst: Option<IpAddr>, len: u8, family: Option<Family>) -> Option<String> {
    if len == 0 {
        return Some("default".to_owned());
    }
    let dst = dst.or(match family? {
        Family::Inet => Some(IpAddr::from([0u8; 4])),
        Family::Inet6 => Some(IpAddr::from([0u8; 16])),
    })?;
    // Written by hand for IPv4: every route request and notification has one, and `format!`
    // (five Display calls through the formatting machinery) was a visible share of the
    // tracer's time in a burst. Same text.
    let mut text = String::with_capacity(20);
    match dst {
        IpAddr::V4(v4) => {
            for (i, octet) in v4.octets().into_iter().enumerate() {
                if i > 0 {
                    text.push('.');
                }
                push_decimal(&mut text, octet);
            }
        }
        IpAddr::V6(v6) => {
            // Writing to a String cannot fail.
            let _ = write!(text, "{v6}");
        }
    }
    text.push('/');
    push_decimal(&mut text, len);
    Some(text)
}

/// `n` in decimal, as `{n}` formats it.
fn push_decimal(text: &mut String, n: u8) {
    if n >= 100 {
        text.push(char::from(b'0' + n / 100));
    }
    if n >= 10 {
        text.push(char::from(b'0' + n / 10 % 10));
    }
    text.push(char::from(b'0' + n % 10));
}

/// An IPv4/IPv6 route address; MPLS labels and other families are not shown.
fn address(addr: &RouteAddress) -> Option<IpAddr> {
    match addr {
        RouteAddress::Inet(v4) => Some(IpAddr::V4(*v4)),
        RouteAddress::Inet6(v6) => Some(IpAddr::V6(*v6)),
        _ => None,
    }
}

fn via_address(via: &RouteVia) -> Option<String> {
    match via {
        RouteVia::Inet(v4) => Some(v4.to_string()),
        RouteVia::Inet6(v6) => Some(v6.to_string()),
        _ => None,
    }
}

#[cfg(test)]
mod prefix_tests {
    use std::net::{Ipv4Addr, Ipv6Addr};

    use super::*;

    /// The hand-written text is what `format!("{dst}/{len}")` gives.
    #[test]
    fn prefix_text_is_the_formatted_one() {
        for octet in 0..=255u8 {
            for len in [1u8, 8, 9, 10, 24, 32, 99, 100, 128, 255] {
                let v4 = IpAddr::V4(Ipv4Addr::new(octet, 255 - octet, octet / 3, octet % 10));
                let v6 = IpAddr::V6(Ipv6Addr::new(
                    0x2001,
                    0xdb8,
                    u16::from(octet),
                    0,
                    0,
                    0,
                    0,
                    1,
                ));
                for dst in [v4, v6] {
                    assert_eq!(
                        prefix(Some(dst), len, Some(Family::Inet)),
                        Some(format!("{dst}/{len}"))
                    );
                }
            }
        }
        assert_eq!(prefix(None, 0, None), Some("default".to_owned()));
        assert_eq!(
            prefix(None, 16, Some(Family::Inet)),
            Some("0.0.0.0/16".to_owned())
        );
        assert_eq!(
            prefix(None, 64, Some(Family::Inet6)),
            Some("::/64".to_owned())
        );
    }
}
