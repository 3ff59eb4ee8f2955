//! `SIOCDELRT` and `SIOCSIFFLAGS` arguments (net-tools' `route del` and `ifconfig X down`).
//!
//! The argument is a C struct whose layout is UAPI; offsets below are x86_64 (LP64), the ABI the
//! capture runs on. Fields are read by offset from the fixed-size copy, never by casting it.

use std::net::{Ipv4Addr, Ipv6Addr};

use routeguard_common::{ioctl, IoctlPayload};

use super::{names, DecodeError, Decoded, Object, Removal};
use crate::{
    event::{Cause, Family, Link, Route},
    netlink::uapi::{self, IFF_UP, RTN_UNREACHABLE, RT_TABLE_MAIN},
};

/// `struct rtentry` (include/uapi/linux/route.h) on LP64: `unsigned long rt_pad1` @0, `struct
/// sockaddr rt_dst` @8, `rt_gateway` @24, `rt_genmask` @40, `unsigned short rt_flags` @56,
/// `short rt_pad2` @58, `unsigned long rt_pad3` @64, `void *rt_pad4` @72, `short rt_metric` @80,
/// `char *rt_dev` @88, `rt_mtu` @96, `rt_window` @104, `unsigned short rt_irtt` @112; 120 bytes.
mod rtentry {
    pub const DST: usize = 8;
    pub const GATEWAY: usize = 24;
    pub const GENMASK: usize = 40;
    pub const FLAGS: usize = 56;
    pub const METRIC: usize = 80;
}

/// `struct in6_rtmsg` (include/uapi/linux/ipv6_route.h): `struct in6_addr rtmsg_dst` @0,
/// `rtmsg_src` @16, `rtmsg_gateway` @32, `__u32 rtmsg_type` @48, `__u16 rtmsg_dst_len` @52,
/// `__u16 rtmsg_src_len` @54, `__u32 rtmsg_metric` @56, `unsigned long rtmsg_info` @64,
/// `__u32 rtmsg_flags` @72, `int rtmsg_ifindex` @76; 80 bytes.
mod in6_rtmsg {
    pub const DST: usize = 0;
    pub const GATEWAY: usize = 32;
    pub const DST_LEN: usize = 52;
    pub const METRIC: usize = 56;
    pub const FLAGS: usize = 72;
    pub const IFINDEX: usize = 76;
}

/// `struct ifreq`: `char ifr_name[IFNAMSIZ]` @0, then the union; `short ifr_flags` @16.
mod ifreq {
    pub const NAME_LEN: usize = 16;
    pub const FLAGS: usize = 16;
}

/// `struct sockaddr_in`: `sa_family_t sin_family` @0, `__be16 sin_port` @2, `sin_addr` @4.
const SIN_ADDR: usize = 4;
/// route.h `RTF_GATEWAY`, `RTF_HOST`, `RTF_REJECT` (the same bits in `rtmsg_flags`).
const RTF_GATEWAY: u32 = 0x0002;
const RTF_HOST: u32 = 0x0004;
const RTF_REJECT: u32 = 0x0200;

const AF_INET: u16 = uapi::AF_INET as u16;
const AF_INET6: u16 = uapi::AF_INET6 as u16;

/// A `SIOCDELRT` argument the kernel would refuse, as `rtentry_to_fib_config` checks it.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum IoctlError {
    /// `rt_dst` not AF_INET: the kernel answers EAFNOSUPPORT.
    #[error("rt_dst family {0}, the kernel accepts only AF_INET (2)")]
    DstFamily(u16),
    /// `rt_genmask` neither AF_INET nor all zero: EAFNOSUPPORT.
    #[error("rt_genmask family {0}, the kernel accepts only AF_INET (2)")]
    GenmaskFamily(u16),
    /// A mask that is not contiguous or has bits the destination lacks: EINVAL.
    #[error("rt_genmask {mask} does not fit rt_dst {dst}")]
    Genmask { mask: Ipv4Addr, dst: Ipv4Addr },
}

/// One captured ioctl. `sock_family` is the family of the socket it was issued on
/// (`AF_INET` = 2 or `AF_INET6` = 10); it decides which struct a `SIOCDELRT` carries.
pub fn decode_ioctl(sock_family: u16, payload: &IoctlPayload) -> Result<Decoded, DecodeError> {
    let (op, removal) = match payload.cmd {
        ioctl::SIOCDELRT => {
            let op = "SIOCDELRT";
            let route = match sock_family {
                AF_INET => inet_route(&payload.arg, &payload.dev)
                    .map_err(|reason| DecodeError::MalformedIoctl { op, reason })?,
                AF_INET6 => inet6_route(&payload.arg),
                _ => return Err(DecodeError::UnsupportedSocketFamily { sock_family }),
            };
            (op, Some(route))
        }
        ioctl::SIOCSIFFLAGS => ("SIOCSIFFLAGS", link_down(&payload.arg)),
        cmd => return Err(DecodeError::UnknownIoctl { cmd }),
    };
    Ok(Decoded {
        header: None,
        op,
        removal,
    })
}

/// `struct rtentry`, read as `rtentry_to_fib_config` (net/ipv4/fib_frontend.c) reads it.
fn inet_route(arg: &[u8; 128], dev: &[u8; 16]) -> Result<Removal, IoctlError> {
    // `if (rt->rt_dst.sa_family != AF_INET) return -EAFNOSUPPORT;`
    let dst_family = u16_at(arg, rtentry::DST);
    if dst_family != AF_INET {
        return Err(IoctlError::DstFamily(dst_family));
    }
    let dst = ipv4_at(arg, rtentry::DST + SIN_ADDR);
    let flags = u32::from(u16_at(arg, rtentry::FLAGS));
    // `if (rt->rt_flags & RTF_HOST) plen = 32; else plen = inet_mask_len(mask)` from rt_genmask.
    let len = if flags & RTF_HOST != 0 {
        32
    } else {
        let mask = u32::from(ipv4_at(arg, rtentry::GENMASK + SIN_ADDR));
        let mask_family = u16_at(arg, rtentry::GENMASK);
        // `if (rt->rt_genmask.sa_family != AF_INET) { if (mask || rt->rt_genmask.sa_family)
        // return -EAFNOSUPPORT; }` and `if (bad_mask(mask, addr)) return -EINVAL;`
        if mask_family != AF_INET && (mask != 0 || mask_family != 0) {
            return Err(IoctlError::GenmaskFamily(mask_family));
        }
        if mask.leading_ones() + mask.trailing_zeros() != 32 || u32::from(dst) & !mask != 0 {
            return Err(IoctlError::Genmask {
                mask: Ipv4Addr::from(mask),
                dst,
            });
        }
        mask.leading_ones()
    };
    // `if (rt->rt_gateway.sa_family == AF_INET && addr)`: a gateway only when one is set.
    let gateway = ipv4_at(arg, rtentry::GATEWAY + SIN_ADDR);
    let has_gateway = u16_at(arg, rtentry::GATEWAY) == AF_INET && !gateway.is_unspecified();
    // `if (rt->rt_metric) cfg->fc_priority = rt->rt_metric - 1;`: net-tools stores metric + 1.
    let metric = i16::from_ne_bytes([arg[rtentry::METRIC], arg[rtentry::METRIC + 1]]);
    let route = Route {
        // `cfg->fc_table = RT_TABLE_MAIN` unless the device is in an l3mdev (VRF).
        table: Some(RT_TABLE_MAIN),
        dst: Some(if len == 0 {
            "default".to_owned()
        } else {
            format!("{dst}/{len}")
        }),
        gateway: has_gateway.then(|| gateway.to_string()),
        dev: c_string(dev),
        // `if (rt->rt_flags & RTF_REJECT) { ... cfg->fc_type = RTN_UNREACHABLE; }`
        route_type: (flags & RTF_REJECT != 0).then(|| names::route_type(RTN_UNREACHABLE)),
        priority: (metric != 0).then(|| (i32::from(metric) - 1) as u32),
        ..Route::default()
    };
    Ok(removal(Family::Inet, route))
}

/// `struct in6_rtmsg`, read as `rtmsg_to_fib6_config` (net/ipv6/route.c) reads it.
fn inet6_route(arg: &[u8; 128]) -> Removal {
    let dst = ipv6_at(arg, in6_rtmsg::DST);
    let len = u16_at(arg, in6_rtmsg::DST_LEN);
    let flags = u32_at(arg, in6_rtmsg::FLAGS);
    let ifindex = i32::from_ne_bytes(u32_at(arg, in6_rtmsg::IFINDEX).to_ne_bytes());
    let metric = u32_at(arg, in6_rtmsg::METRIC);
    let route = Route {
        // `.fc_table = l3mdev_fib_table_by_index(net, rtmsg->rtmsg_ifindex) ? : RT6_TABLE_MAIN`
        table: Some(RT_TABLE_MAIN),
        dst: Some(if len == 0 {
            "default".to_owned()
        } else {
            format!("{dst}/{len}")
        }),
        gateway: (flags & RTF_GATEWAY != 0).then(|| ipv6_at(arg, in6_rtmsg::GATEWAY).to_string()),
        oif: u32::try_from(ifindex).ok().filter(|i| *i != 0),
        // `.fc_metric = rtmsg->rtmsg_metric`; `ip6_route_del` matches it only when non-zero.
        priority: (metric != 0).then_some(metric),
        ..Route::default()
    };
    removal(Family::Inet6, route)
}

/// `struct ifreq` of SIOCSIFFLAGS: a removal when it clears IFF_UP.
fn link_down(arg: &[u8; 128]) -> Option<Removal> {
    let flags = u16_at(arg, ifreq::FLAGS);
    if u32::from(flags) & IFF_UP != 0 {
        return None;
    }
    Some(Removal {
        family: None,
        cause: Cause::LinkDown,
        object: Object::Link(Link {
            ifindex: None,
            name: c_string(&arg[..ifreq::NAME_LEN]),
        }),
    })
}

fn removal(family: Family, route: Route) -> Removal {
    Removal {
        family: Some(family),
        cause: Cause::Request,
        object: Object::Route(route),
    }
}

/// The bytes up to the first NUL, `None` when empty. Lossy: names are shown, never trusted.
fn c_string(bytes: &[u8]) -> Option<String> {
    let end = bytes.iter().position(|b| *b == 0).unwrap_or(bytes.len());
    let name = &bytes[..end];
    (!name.is_empty()).then(|| String::from_utf8_lossy(name).into_owned())
}

// The readers below take offsets that are constants well inside the 128-byte argument.
fn u16_at(arg: &[u8; 128], at: usize) -> u16 {
    u16::from_ne_bytes([arg[at], arg[at + 1]])
}

fn u32_at(arg: &[u8; 128], at: usize) -> u32 {
    u32::from_ne_bytes([arg[at], arg[at + 1], arg[at + 2], arg[at + 3]])
}

fn ipv4_at(arg: &[u8; 128], at: usize) -> Ipv4Addr {
    Ipv4Addr::new(arg[at], arg[at + 1], arg[at + 2], arg[at + 3])
}

fn ipv6_at(arg: &[u8; 128], at: usize) -> Ipv6Addr {
    let mut octets = [0u8; 16];
    octets.copy_from_slice(&arg[at..at + 16]);
    Ipv6Addr::from(octets)
}
