//! The names iproute2 prints for the numbers the decoders read (the numbers themselves are in
//! [`crate::netlink::uapi`]): from iproute2's `lib/rt_names.c` and
//! `/usr/share/iproute2/rt_protos`, so an event reads like `ip route` output.

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
