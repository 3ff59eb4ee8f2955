//! UAPI numbers the decoders read, and the names iproute2 prints for them.
//!
//! Numbers are from the kernel's UAPI headers (`include/uapi/linux/rtnetlink.h`, `netlink.h`,
//! `fib_rules.h`, `if.h`, `socket.h`); names from iproute2's `lib/rt_names.c` and
//! `/usr/share/iproute2/rt_protos`, so an event reads like `ip route` output.

pub(super) const AF_INET: u8 = 2;
pub(super) const AF_INET6: u8 = 10;

pub(super) const NLM_F_REQUEST: u16 = 0x1;
pub(super) const NLM_F_REPLACE: u16 = 0x100;

/// `nlmsg_type` values below this are netlink control messages, skipped by the kernel.
pub(super) const NLMSG_MIN_TYPE: u16 = 0x10;

pub(super) const RTM_NEWLINK: u16 = 16;
pub(super) const RTM_DELLINK: u16 = 17;
pub(super) const RTM_SETLINK: u16 = 19;
pub(super) const RTM_DELADDR: u16 = 21;
pub(super) const RTM_NEWROUTE: u16 = 24;
pub(super) const RTM_DELROUTE: u16 = 25;
pub(super) const RTM_NEWRULE: u16 = 32;
pub(super) const RTM_DELRULE: u16 = 33;
pub(super) const RTM_DELNEXTHOP: u16 = 105;

pub(super) const RT_SCOPE_NOWHERE: u8 = 255;
pub(super) const RT_TABLE_UNSPEC: u32 = 0;
pub(super) const RT_TABLE_MAIN: u32 = 254;

pub(super) const IFF_UP: u32 = 0x1;

// Attribute types this crate reads (`rtattr_type_t`, `FRA_*`, `IFLA_*`, `IFA_*`, `NHA_*`).
pub(super) const RTA_DST: u16 = 1;
pub(super) const RTA_OIF: u16 = 4;
pub(super) const RTA_GATEWAY: u16 = 5;
pub(super) const RTA_PRIORITY: u16 = 6;
pub(super) const RTA_PREFSRC: u16 = 7;
pub(super) const RTA_TABLE: u16 = 15;
pub(super) const RTA_VIA: u16 = 18;
pub(super) const RTA_NH_ID: u16 = 30;
pub(super) const FRA_DST: u16 = 1;
pub(super) const FRA_SRC: u16 = 2;
pub(super) const FRA_IIFNAME: u16 = 3;
pub(super) const FRA_PRIORITY: u16 = 6;
pub(super) const FRA_FWMARK: u16 = 10;
pub(super) const FRA_TABLE: u16 = 15;
pub(super) const FRA_FWMASK: u16 = 16;
pub(super) const FRA_OIFNAME: u16 = 17;
pub(super) const FRA_PROTOCOL: u16 = 21;
pub(super) const IFLA_IFNAME: u16 = 3;
pub(super) const IFA_ADDRESS: u16 = 1;
pub(super) const IFA_LOCAL: u16 = 2;
pub(super) const IFA_LABEL: u16 = 3;
pub(super) const NHA_ID: u16 = 1;

/// Name of a netlink message type, `None` when it is not one the kernel's rtnetlink knows.
pub(super) fn message_type(msg_type: u16) -> Option<&'static str> {
    Some(match msg_type {
        1 => "NLMSG_NOOP",
        2 => "NLMSG_ERROR",
        3 => "NLMSG_DONE",
        4 => "NLMSG_OVERRUN",
        // Reserved control types: the kernel skips them like the ones above.
        0 | 5..=15 => "NLMSG_CONTROL",
        16 => "RTM_NEWLINK",
        17 => "RTM_DELLINK",
        18 => "RTM_GETLINK",
        19 => "RTM_SETLINK",
        20 => "RTM_NEWADDR",
        21 => "RTM_DELADDR",
        22 => "RTM_GETADDR",
        24 => "RTM_NEWROUTE",
        25 => "RTM_DELROUTE",
        26 => "RTM_GETROUTE",
        28 => "RTM_NEWNEIGH",
        29 => "RTM_DELNEIGH",
        30 => "RTM_GETNEIGH",
        32 => "RTM_NEWRULE",
        33 => "RTM_DELRULE",
        34 => "RTM_GETRULE",
        36 => "RTM_NEWQDISC",
        37 => "RTM_DELQDISC",
        38 => "RTM_GETQDISC",
        40 => "RTM_NEWTCLASS",
        41 => "RTM_DELTCLASS",
        42 => "RTM_GETTCLASS",
        44 => "RTM_NEWTFILTER",
        45 => "RTM_DELTFILTER",
        46 => "RTM_GETTFILTER",
        48 => "RTM_NEWACTION",
        49 => "RTM_DELACTION",
        50 => "RTM_GETACTION",
        52 => "RTM_NEWPREFIX",
        58 => "RTM_GETMULTICAST",
        62 => "RTM_GETANYCAST",
        64 => "RTM_NEWNEIGHTBL",
        66 => "RTM_GETNEIGHTBL",
        67 => "RTM_SETNEIGHTBL",
        68 => "RTM_NEWNDUSEROPT",
        72 => "RTM_NEWADDRLABEL",
        73 => "RTM_DELADDRLABEL",
        74 => "RTM_GETADDRLABEL",
        78 => "RTM_GETDCB",
        79 => "RTM_SETDCB",
        80 => "RTM_NEWNETCONF",
        81 => "RTM_DELNETCONF",
        82 => "RTM_GETNETCONF",
        84 => "RTM_NEWMDB",
        85 => "RTM_DELMDB",
        86 => "RTM_GETMDB",
        88 => "RTM_NEWNSID",
        89 => "RTM_DELNSID",
        90 => "RTM_GETNSID",
        92 => "RTM_NEWSTATS",
        94 => "RTM_GETSTATS",
        95 => "RTM_SETSTATS",
        96 => "RTM_NEWCACHEREPORT",
        100 => "RTM_NEWCHAIN",
        101 => "RTM_DELCHAIN",
        102 => "RTM_GETCHAIN",
        104 => "RTM_NEWNEXTHOP",
        105 => "RTM_DELNEXTHOP",
        106 => "RTM_GETNEXTHOP",
        108 => "RTM_NEWLINKPROP",
        109 => "RTM_DELLINKPROP",
        110 => "RTM_GETLINKPROP",
        112 => "RTM_NEWVLAN",
        113 => "RTM_DELVLAN",
        114 => "RTM_GETVLAN",
        116 => "RTM_NEWNEXTHOPBUCKET",
        117 => "RTM_DELNEXTHOPBUCKET",
        118 => "RTM_GETNEXTHOPBUCKET",
        120 => "RTM_NEWTUNNEL",
        121 => "RTM_DELTUNNEL",
        122 => "RTM_GETTUNNEL",
        _ => return None,
    })
}

/// `rtm_protocol` / `FRA_PROTOCOL` (`RTPROT_*`), named as in iproute2's `rt_protos`.
pub(super) fn protocol(raw: u8) -> String {
    let name = match raw {
        0 => "unspec",
        1 => "redirect",
        2 => "kernel",
        3 => "boot",
        4 => "static",
        8 => "gated",
        9 => "ra",
        10 => "mrt",
        11 => "zebra",
        12 => "bird",
        13 => "dnrouted",
        14 => "xorp",
        15 => "ntk",
        16 => "dhcp",
        17 => "mrouted",
        18 => "keepalived",
        42 => "babel",
        99 => "openr",
        186 => "bgp",
        187 => "isis",
        188 => "ospf",
        189 => "rip",
        192 => "eigrp",
        other => return other.to_string(),
    };
    name.to_owned()
}

/// `rtm_scope` (`RT_SCOPE_*`).
pub(super) fn scope(raw: u8) -> String {
    let name = match raw {
        0 => "universe",
        200 => "site",
        253 => "link",
        254 => "host",
        255 => "nowhere",
        other => return other.to_string(),
    };
    name.to_owned()
}

/// `rtm_type` (`RTN_*`), as the event model names it (its [`RouteKey`] reads the name back).
///
/// [`RouteKey`]: crate::event::RouteKey
pub(super) fn route_type(raw: u8) -> String {
    crate::event::route_type_name(raw)
}

/// `fib_rule_hdr.action` (`FR_ACT_*`), as `ip rule` prints it.
pub(super) fn rule_action(raw: u8) -> String {
    let name = match raw {
        1 => "lookup",
        2 => "goto",
        3 => "nop",
        6 => "blackhole",
        7 => "unreachable",
        8 => "prohibit",
        other => return other.to_string(),
    };
    name.to_owned()
}
