//! What a restore sends: the kernel's own description of the removed object, made fit to be
//! sent back as RTM_NEWROUTE / RTM_NEWRULE (with NLM_F_CREATE | NLM_F_EXCL, on a socket inside
//! its namespace: [`crate::netlink`]).
//!
//! The body is the one the kernel sent when it removed (or dumped) the object, so every
//! attribute comes back — multipath nexthops, metrics, `suppress_prefixlength`, uid ranges —
//! including those routeguard does not decode. Only state the kernel reports but would not take
//! back as configuration is cleared: the nexthop liveness flags (RTNH_F_DEAD / LINKDOWN, which
//! `fib_create_info` would copy into the new route) and RTA_CACHEINFO.

use crate::netlink::{
    attrs,
    uapi::{FIB_RULE_HDR_LEN, RTA_CACHEINFO, RTA_MULTIPATH, RTMSG_LEN, RTNH_F_ONLINK},
    Attr, AttrError,
};

/// Why the kernel's description cannot be sent back.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum BodyError {
    #[error("the kernel's {object} description is {len} bytes, shorter than struct {header}")]
    Short {
        object: &'static str,
        header: &'static str,
        len: usize,
    },
    #[error(transparent)]
    Attribute(#[from] AttrError),
}

/// The body of an RTM_NEWROUTE that re-creates the route the kernel described in `kernel`.
pub fn route_body(kernel: &[u8]) -> Result<Vec<u8>, BodyError> {
    let (header, attributes) = split(kernel, RTMSG_LEN, "route", "rtmsg")?;
    let mut out = header.to_vec();
    // `rtm_flags`, the last u32 of struct rtmsg.
    let flags = u32::from_ne_bytes(out[8..12].try_into().unwrap_or_default()) & RTNH_F_ONLINK;
    out[8..12].copy_from_slice(&flags.to_ne_bytes());
    for attr in attrs(attributes) {
        let Attr { kind, whole, .. } = attr?;
        match kind {
            RTA_CACHEINFO => {}
            RTA_MULTIPATH => {
                let mut hops = whole.to_vec();
                clear_nexthop_state(&mut hops[4..]);
                out.extend_from_slice(&hops);
            }
            _ => out.extend_from_slice(whole),
        }
        out.resize(out.len().next_multiple_of(4), 0);
    }
    Ok(out)
}

/// The body of an RTM_NEWRULE that re-creates the rule the kernel described: the same bytes.
/// (`fib_nl_fill_rule` writes exactly the FRA_* attributes `fib_nl2rule` reads back.)
pub fn rule_body(kernel: &[u8]) -> Result<Vec<u8>, BodyError> {
    let (_, attributes) = split(kernel, FIB_RULE_HDR_LEN, "rule", "fib_rule_hdr")?;
    for attr in attrs(attributes) {
        attr?;
    }
    Ok(kernel.to_vec())
}

/// `kernel` as (fixed header of `len` bytes, attributes); the description of an `object`
/// whose fixed header is `struct header`.
fn split<'a>(
    kernel: &'a [u8],
    len: usize,
    object: &'static str,
    header: &'static str,
) -> Result<(&'a [u8], &'a [u8]), BodyError> {
    kernel.split_at_checked(len).ok_or(BodyError::Short {
        object,
        header,
        len: kernel.len(),
    })
}

/// Each `struct rtnexthop` (len u16, flags u8, hops u8, ifindex i32, attributes) keeps only
/// RTNH_F_ONLINK of its flags.
fn clear_nexthop_state(mut hops: &mut [u8]) {
    while hops.len() >= 8 {
        let len = usize::from(u16::from_ne_bytes([hops[0], hops[1]]));
        if len < 8 || len > hops.len() {
            return;
        }
        hops[2] &= RTNH_F_ONLINK as u8;
        let next = len.next_multiple_of(4).min(hops.len());
        hops = &mut hops[next..];
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::netlink::encode_attr as attr;

    #[test]
    fn route_body_drops_state_and_keeps_configuration() {
        // rtmsg: AF_INET, /24, table 77 via RTA_TABLE, proto static, flags LINKDOWN|ONLINK|DEAD.
        let mut body = vec![2, 24, 0, 0, 254, 4, 0, 1];
        body.extend_from_slice(&(0x10u32 | 0x4 | 0x1).to_ne_bytes());
        let table = attr(15, &77u32.to_ne_bytes());
        let dst = attr(1, &[10, 77, 1, 0]);
        let cache = attr(RTA_CACHEINFO, &[0; 32]);
        // One rtnexthop: len 8, flags DEAD|ONLINK, hops 0, ifindex 3.
        let mut hop = 8u16.to_ne_bytes().to_vec();
        hop.extend_from_slice(&[0x1 | 0x4, 0]);
        hop.extend_from_slice(&3i32.to_ne_bytes());
        let multipath = attr(RTA_MULTIPATH, &hop);
        for a in [&table, &dst, &cache, &multipath] {
            body.extend_from_slice(a);
        }
        let out = route_body(&body).unwrap();
        assert_eq!(u32::from_ne_bytes(out[8..12].try_into().unwrap()), 0x4);
        let attrs: Vec<Attr<'_>> = attrs(&out[12..]).map(Result::unwrap).collect();
        let kinds: Vec<u16> = attrs.iter().map(|a| a.kind).collect();
        assert_eq!(kinds, [15, 1, RTA_MULTIPATH]);
        assert_eq!(attrs[0].whole, &table[..]);
        assert_eq!(attrs[2].whole[4 + 2], 0x4, "nexthop flags keep only ONLINK");
    }

    #[test]
    fn malformed_bodies_are_refused_not_sent() {
        assert!(route_body(&[2, 24])
            .unwrap_err()
            .to_string()
            .contains("shorter than struct rtmsg"));
        let mut body = vec![0u8; 12];
        body.extend_from_slice(&[200, 0, 1, 0]);
        assert!(rule_body(&body)
            .unwrap_err()
            .to_string()
            .contains("malformed attribute"));
    }
}
