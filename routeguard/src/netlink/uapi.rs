//! Numbers from the kernel's UAPI headers that routeguard reads or writes, each defined once.
//!
//! From `include/uapi/linux/netlink.h` (NLMSG_*, NLM_F_*), `rtnetlink.h` (RTM_*, RTA_*, RTN_*,
//! RT_SCOPE_*, RT_TABLE_*, RTMGRP_*, RTNLGRP_*, RTNH_F_*), `fib_rules.h` (FRA_*),
//! `if_link.h` (IFLA_*), `if_addr.h` (IFA_*), `nexthop.h` (NHA_*), `if.h` (IFF_*) and
//! `socket.h` (AF_*). The eBPF programs and `routeguard-common` keep their own copies: they are a
//! different build.

pub const AF_INET: u8 = 2;
pub const AF_INET6: u8 = 10;

/// `NLMSG_HDRLEN`: `sizeof(struct nlmsghdr)` (len u32, type u16, flags u16, seq u32, pid u32).
pub const NLMSG_HDRLEN: usize = 16;
pub const NLMSG_ERROR: u16 = 2;
pub const NLMSG_DONE: u16 = 3;
/// `nlmsg_type` values below this are netlink control messages, skipped by the kernel.
pub const NLMSG_MIN_TYPE: u16 = 0x10;

pub const NLM_F_REQUEST: u16 = 0x1;
pub const NLM_F_ACK: u16 = 0x4;
/// `NLM_F_ROOT | NLM_F_MATCH`.
pub const NLM_F_DUMP: u16 = 0x300;
pub const NLM_F_REPLACE: u16 = 0x100;
pub const NLM_F_EXCL: u16 = 0x200;
pub const NLM_F_CREATE: u16 = 0x400;

pub const RTM_NEWLINK: u16 = 16;
pub const RTM_DELLINK: u16 = 17;
pub const RTM_SETLINK: u16 = 19;
pub const RTM_DELADDR: u16 = 21;
pub const RTM_NEWROUTE: u16 = 24;
pub const RTM_DELROUTE: u16 = 25;
pub const RTM_GETROUTE: u16 = 26;
pub const RTM_NEWRULE: u16 = 32;
pub const RTM_DELRULE: u16 = 33;
pub const RTM_GETRULE: u16 = 34;
pub const RTM_DELNEXTHOP: u16 = 105;

/// `sizeof(struct rtmsg)`: family, dst_len, src_len, tos, table, protocol, scope, type (u8
/// each), flags (u32, the last four bytes).
pub const RTMSG_LEN: usize = 12;
/// `sizeof(struct fib_rule_hdr)`.
pub const FIB_RULE_HDR_LEN: usize = 12;
/// `sizeof(struct nhmsg)`: family, scope, protocol, resvd (u8 each), flags (u32).
pub const NHMSG_LEN: usize = 8;

pub const RT_SCOPE_NOWHERE: u8 = 255;
pub const RT_TABLE_UNSPEC: u32 = 0;
pub const RT_TABLE_MAIN: u32 = 254;
/// `RTN_UNREACHABLE`.
pub const RTN_UNREACHABLE: u8 = 7;

/// The only nexthop flag that is configuration rather than state (`ip route add … onlink`).
pub const RTNH_F_ONLINK: u32 = 4;

pub const IFF_UP: u32 = 0x1;

/// Legacy multicast group bits for `bind`.
pub const RTMGRP_IPV4_ROUTE: u32 = 0x40;
pub const RTMGRP_IPV4_RULE: u32 = 0x80;
pub const RTMGRP_IPV6_ROUTE: u32 = 0x400;
/// `RTNLGRP_IPV6_RULE` has no legacy bit: joined by number (`NETLINK_ADD_MEMBERSHIP`).
pub const RTNLGRP_IPV6_RULE: u32 = 19;

/// `NLA_TYPE_MASK`: an attribute's type without `NLA_F_NESTED` / `NLA_F_NET_BYTEORDER`.
pub const NLA_TYPE_MASK: u16 = 0x3fff;

// Attribute types (`rtattr_type_t`, `FRA_*`, `IFLA_*`, `IFA_*`, `NHA_*`).
pub const RTA_DST: u16 = 1;
pub const RTA_OIF: u16 = 4;
pub const RTA_GATEWAY: u16 = 5;
pub const RTA_PRIORITY: u16 = 6;
pub const RTA_PREFSRC: u16 = 7;
pub const RTA_MULTIPATH: u16 = 9;
/// A `struct rta_cacheinfo`.
pub const RTA_CACHEINFO: u16 = 12;
pub const RTA_TABLE: u16 = 15;
pub const RTA_VIA: u16 = 18;
pub const RTA_NH_ID: u16 = 30;
/// Offset of `rta_expires` (s32, clock ticks: the route's remaining lifetime, negative once it
/// has run out) in `struct rta_cacheinfo`.
pub const RTA_CACHEINFO_EXPIRES: usize = 8;
pub const FRA_DST: u16 = 1;
pub const FRA_SRC: u16 = 2;
pub const FRA_IIFNAME: u16 = 3;
pub const FRA_PRIORITY: u16 = 6;
pub const FRA_FWMARK: u16 = 10;
pub const FRA_TABLE: u16 = 15;
pub const FRA_FWMASK: u16 = 16;
pub const FRA_OIFNAME: u16 = 17;
pub const FRA_PROTOCOL: u16 = 21;
pub const IFLA_IFNAME: u16 = 3;
pub const IFA_ADDRESS: u16 = 1;
pub const IFA_LOCAL: u16 = 2;
pub const IFA_LABEL: u16 = 3;
pub const NHA_ID: u16 = 1;

/// Name of a netlink message type, `None` when it is not one the kernel's rtnetlink knows.
pub fn message_name(msg_type: u16) -> Option<&'static str> {
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
