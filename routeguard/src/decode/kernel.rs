//! The object a kernel-function record describes, as the kernel held it.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use routeguard_common::{hook, KernelRecord};

use super::{family, names, netlink::decode_netlink, Object};
use crate::event::{Family, Nexthop, Route};

/// `RTM_DELROUTE`, … for a netlink message type the kernel handled.
pub fn message_name(msg_type: u16) -> Option<&'static str> {
    names::message_type(msg_type)
}

/// The family and object of a kernel-function record.
pub fn kernel_object(rec: &KernelRecord) -> Result<(Option<Family>, Object), String> {
    let fam = family(rec.family);
    match rec.hook {
        hook::ROUTE4 | hook::ROUTE4_FAILED | hook::ROUTE6 => {
            Ok((fam, Object::Route(route(rec, fam))))
        }
        hook::NEXTHOP => Ok((
            None,
            Object::Nexthop(Nexthop {
                id: Some(rec.nh_id),
            }),
        )),
        hook::RULE => {
            let len = (rec.msg_len as usize).min(rec.msg.len());
            let decoded = decode_netlink(&rec.msg[..len])
                .into_iter()
                .next()
                .ok_or("no rule message")?
                .map_err(|e| e.to_string())?;
            let removal = decoded.removal.ok_or("not a rule removal")?;
            Ok((removal.family, removal.object))
        }
        other => Err(format!("unknown kernel-function hook {other}")),
    }
}

fn addr(bytes: &[u8; 16], fam: Option<Family>) -> Option<IpAddr> {
    match fam? {
        Family::Inet => Some(IpAddr::V4(Ipv4Addr::new(
            bytes[0], bytes[1], bytes[2], bytes[3],
        ))),
        Family::Inet6 => Some(IpAddr::V6(Ipv6Addr::from(*bytes))),
    }
}

fn route(rec: &KernelRecord, fam: Option<Family>) -> Route {
    let dst = super::route::prefix(addr(&rec.dst, fam), rec.dst_len, fam).unwrap_or_default();
    let gw_family = family(rec.gw_family);
    let dev = {
        let end = rec
            .dev
            .iter()
            .position(|&b| b == 0)
            .unwrap_or(rec.dev.len());
        (end > 0).then(|| String::from_utf8_lossy(&rec.dev[..end]).into_owned())
    };
    let src = (rec.prefsrc != [0; 16])
        .then(|| addr(&rec.prefsrc, fam))
        .flatten()
        .map(|a| a.to_string());
    let failed = rec.hook == hook::ROUTE4_FAILED;
    // A refused request names only what it asked for: zero means "any" there.
    let some_u32 = |v: u32| (!failed || v != 0).then_some(v);
    let some_u8 = |v: u8| (!failed || v != 0).then_some(v);
    Route {
        table: some_u32(rec.table),
        dst: Some(dst),
        gateway: (rec.gw_family != 0)
            .then(|| addr(&rec.gateway, gw_family))
            .flatten()
            .map(|a| a.to_string()),
        dev,
        oif: (rec.oif != 0).then_some(rec.oif),
        protocol: some_u8(rec.protocol).map(names::protocol),
        scope: (rec.family == 2 && (!failed || rec.scope != 0xff && rec.scope != 0))
            .then_some(rec.scope)
            .map(names::scope),
        route_type: some_u8(rec.route_type).map(names::route_type),
        priority: some_u32(rec.priority),
        src,
        tos: (rec.family == 2 && rec.tos != 0).then_some(rec.tos),
        nhid: (rec.nh_id != 0).then_some(rec.nh_id),
    }
}
