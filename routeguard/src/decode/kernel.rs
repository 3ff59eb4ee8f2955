//! The object a kernel-function record describes, as the kernel held it.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use routeguard_common::{hook, KernelRecord};

use super::{family, names, netlink::decode_netlink, DecodeError, Object};
use crate::event::{Family, Nexthop, Route};

/// Why a kernel-function record names no object.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum KernelRecordError {
    /// A rule record carries the request's message; it held none (`msg_len` 0).
    #[error("a rule record without its message ({msg_len} bytes copied)")]
    NoRuleMessage { msg_len: u32 },
    #[error("the rule record's message does not decode: {0}")]
    RuleMessage(#[source] DecodeError),
    /// The rule record's message removes nothing (it is not an RTM_DELRULE).
    #[error("the rule record's message is a {op}, not a rule removal")]
    NotARemoval { op: &'static str },
    /// A hook id this routeguard does not know: the eBPF object comes from another build.
    #[error(
        "unknown kernel-function hook {0}: the eBPF object and the loader come from different builds"
    )]
    UnknownHook(u16),
}

/// The family and object of a kernel-function record.
pub fn kernel_object(rec: &KernelRecord) -> Result<(Option<Family>, Object), KernelRecordError> {
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
                .ok_or(KernelRecordError::NoRuleMessage {
                    msg_len: rec.msg_len,
                })?
                .map_err(KernelRecordError::RuleMessage)?;
            let removal = decoded
                .removal
                .ok_or(KernelRecordError::NotARemoval { op: decoded.op })?;
            Ok((removal.family, removal.object))
        }
        other => Err(KernelRecordError::UnknownHook(other)),
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
