//! RTM_DELLINK, link-down RTM_NEWLINK/RTM_SETLINK, and RTM_DELADDR bodies.

use std::net::IpAddr;

use netlink_packet_core::{Emitable, Parseable, ParseableParametrized};
use netlink_packet_route::{
    address::{AddressAttribute, AddressHeader},
    link::{LinkAttribute, LinkHeader},
};

use super::{attrs, family, BodyError, Object, Removal};
use crate::{
    event::{Address, Cause, Link},
    netlink::uapi::{IFA_ADDRESS, IFA_LABEL, IFA_LOCAL, IFF_UP, IFLA_IFNAME},
};

/// The link an `ifinfomsg` body names, removed (`Cause::LinkRemoved`) or taken down
/// (`Cause::LinkDown`).
fn link(header: &LinkHeader, body: &[u8], cause: Cause) -> Result<Removal, BodyError> {
    let attributes = body.get(header.buffer_len()..).unwrap_or_default();
    let mut link = Link {
        // `ifi_index` is an `int`; the kernel looks the link up by name when it is not positive.
        ifindex: Some(i32::from_ne_bytes(header.index.to_ne_bytes())).filter(|i| *i > 0),
        name: None,
    };
    attrs::for_each(
        attributes,
        &[IFLA_IFNAME],
        |nla| LinkAttribute::parse_with_param(nla, header.interface_family),
        |attr| {
            if let LinkAttribute::IfName(name) = attr {
                link.name = Some(attrs::name(name));
            }
        },
    )?;
    Ok(Removal {
        family: None,
        cause,
        object: Object::Link(link),
    })
}

fn parse_header(body: &[u8]) -> Result<LinkHeader, BodyError> {
    LinkHeader::parse(body).map_err(|e| BodyError::Header {
        header: "ifinfomsg",
        reason: e.to_string(),
    })
}

/// RTM_DELLINK.
pub(super) fn removed(body: &[u8]) -> Result<Removal, BodyError> {
    link(&parse_header(body)?, body, Cause::LinkRemoved)
}

/// RTM_NEWLINK / RTM_SETLINK: a removal only when it takes the link down.
pub(super) fn set(body: &[u8]) -> Result<Option<Removal>, BodyError> {
    let header = parse_header(body)?;
    if !takes_down(header.flags.bits(), header.change_mask.bits()) {
        return Ok(None);
    }
    link(&header, body, Cause::LinkDown).map(Some)
}

/// Whether `ifi_flags`/`ifi_change` clear IFF_UP, as the kernel applies them
/// (net/core/rtnetlink.c):
///
/// - `do_setlink`: `if (ifm->ifi_flags || ifm->ifi_change) { err = dev_change_flags(dev,
///   rtnl_dev_combine_flags(dev, ifm), extack);` — both 0 leaves the flags alone;
/// - `rtnl_dev_combine_flags`: `/* bugwards compatibility: ifi_change == 0 is treated as ~0 */
///   if (ifm->ifi_change) flags = (flags & ifm->ifi_change) | (rtnl_dev_get_flags(dev) &
///   ~ifm->ifi_change);` — so with `ifi_change` 0 the new flags are `ifi_flags` whole.
fn takes_down(ifi_flags: u32, ifi_change: u32) -> bool {
    if ifi_flags == 0 && ifi_change == 0 {
        return false;
    }
    let change = if ifi_change == 0 {
        u32::MAX
    } else {
        ifi_change
    };
    change & IFF_UP != 0 && ifi_flags & IFF_UP == 0
}

/// RTM_DELADDR: the address an `ifaddrmsg` body names.
pub(super) fn address(body: &[u8]) -> Result<Removal, BodyError> {
    let header = AddressHeader::parse(body).map_err(|e| BodyError::Header {
        header: "ifaddrmsg",
        reason: e.to_string(),
    })?;
    let attributes = body.get(header.buffer_len()..).unwrap_or_default();
    let (mut local, mut peer, mut label) = (None, None, None);
    attrs::for_each(
        attributes,
        &[IFA_ADDRESS, IFA_LOCAL, IFA_LABEL],
        |nla| AddressAttribute::parse(nla),
        |attr| match attr {
            AddressAttribute::Local(ip) => local = Some(ip),
            AddressAttribute::Address(ip) => peer = Some(ip),
            AddressAttribute::Label(name) => label = Some(attrs::name(name)),
            _ => {}
        },
    )?;
    // IFA_LOCAL is the interface's own address; IFA_ADDRESS is the peer on point-to-point
    // links and equal to IFA_LOCAL elsewhere (`inet_rtm_deladdr` matches IFA_LOCAL first).
    let address = local
        .or(peer)
        .map(|ip: IpAddr| format!("{ip}/{}", header.prefix_len));
    Ok(Removal {
        family: family(u8::from(header.family)),
        cause: Cause::AddressRemoved,
        object: Object::Address(Address {
            ifindex: Some(header.index).filter(|i| *i != 0),
            dev: label,
            address,
        }),
    })
}

#[cfg(test)]
mod tests {
    use super::takes_down;

    #[test]
    fn link_down_follows_the_kernel_flag_rule() {
        // `ip link set X down`: ifi_flags 0, ifi_change IFF_UP.
        assert!(takes_down(0, 1));
        // `ip link set X up`.
        assert!(!takes_down(1, 1));
        // Neither set: do_setlink leaves the flags alone.
        assert!(!takes_down(0, 0));
        // ifi_change 0 means ~0: any non-zero flags without IFF_UP take the link down.
        assert!(takes_down(0x1000, 0));
        assert!(!takes_down(0x1001, 0));
        // A change mask without IFF_UP never touches it.
        assert!(!takes_down(0, 0x100));
    }
}
