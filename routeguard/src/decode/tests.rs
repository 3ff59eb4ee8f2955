//! Decoder tests on bytes captured from iproute2 (see `fixtures/README.md`), on hand-built ioctl
//! arguments, and on mutations of both that must never panic.

use routeguard_common::{ioctl, IoctlPayload};

use super::*;
use crate::event::{Address, Kind, Link, Nexthop};
use crate::netlink::uapi::{NLM_F_REPLACE, NLM_F_REQUEST, RTM_NEWRULE};

macro_rules! fixture {
    ($name:literal) => {
        hex(include_str!(concat!("fixtures/", $name, ".hex")))
    };
}

/// Every fixture, for the mutation test.
fn all_fixtures() -> Vec<Vec<u8>> {
    vec![
        fixture!("route_del_v4"),
        fixture!("route_del_v6"),
        fixture!("route_del_proto"),
        fixture!("route_del_default"),
        fixture!("route_replace"),
        fixture!("route_flush"),
        fixture!("rule_del_prio"),
        fixture!("rule_del_fwmark"),
        fixture!("rule_del_v6"),
        fixture!("nexthop_del"),
        fixture!("link_down"),
        fixture!("link_probe"),
        fixture!("link_del"),
        fixture!("addr_del"),
    ]
}

fn hex(text: &str) -> Vec<u8> {
    let text = text.trim();
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).expect("fixture is hex"))
        .collect()
}

/// The single message in `bytes`, which must decode.
fn one(bytes: &[u8]) -> Decoded {
    let mut all = decode_netlink(bytes);
    assert_eq!(all.len(), 1, "{all:?}");
    all.remove(0).expect("fixture decodes")
}

fn removal(decoded: &Decoded) -> &Removal {
    decoded.removal.as_ref().expect("a removal")
}

fn route(decoded: &Decoded) -> &Route {
    match &removal(decoded).object {
        Object::Route(route) => route,
        other => panic!("not a route: {other:?}"),
    }
}

fn rule(decoded: &Decoded) -> &Rule {
    match &removal(decoded).object {
        Object::Rule(rule) => rule,
        other => panic!("not a rule: {other:?}"),
    }
}

fn link(decoded: &Decoded) -> &Link {
    match &removal(decoded).object {
        Object::Link(link) => link,
        other => panic!("not a link: {other:?}"),
    }
}

#[test]
fn route_del_v4_with_table_metric_via_dev() {
    let decoded = one(&fixture!("route_del_v4"));
    assert_eq!(decoded.op, "RTM_DELROUTE");
    let header = decoded.header.expect("netlink header");
    assert_eq!(
        (header.msg_type, header.flags, header.seq),
        (25, 0x5, 1795793117)
    );
    let removal = removal(&decoded);
    assert_eq!(
        (removal.object.kind(), removal.family, removal.cause),
        (Kind::Route, Some(Family::Inet), Cause::Request)
    );
    assert_eq!(
        *route(&decoded),
        Route {
            table: Some(100),
            dst: Some("10.20.0.0/16".into()),
            gateway: Some("10.9.0.254".into()),
            oif: Some(3),
            priority: Some(50),
            // iproute2 sent protocol 0, scope NOWHERE, type 0: all wildcards.
            ..Route::default()
        }
    );
}

#[test]
fn route_del_v6_with_table_metric_via_dev() {
    let decoded = one(&fixture!("route_del_v6"));
    assert_eq!(removal(&decoded).family, Some(Family::Inet6));
    assert_eq!(
        *route(&decoded),
        Route {
            table: Some(200),
            dst: Some("2001:db8:99::/48".into()),
            gateway: Some("2001:db8:1::fe".into()),
            oif: Some(3),
            priority: Some(1024),
            // iproute2 sends scope 0 for IPv6, which ip6_route_del ignores: not a fact.
            scope: None,
            ..Route::default()
        }
    );
}

#[test]
fn route_del_with_protocol_in_main() {
    let decoded = one(&fixture!("route_del_proto"));
    let route = route(&decoded);
    assert_eq!(route.table, Some(254));
    assert_eq!(route.dst.as_deref(), Some("10.30.0.0/24"));
    assert_eq!(route.protocol.as_deref(), Some("static"));
    assert_eq!(
        (route.scope.as_deref(), route.route_type.as_deref()),
        (None, None)
    );
}

#[test]
fn route_del_default() {
    let decoded = one(&fixture!("route_del_default"));
    assert_eq!(route(&decoded).dst.as_deref(), Some("default"));
    assert_eq!(route(&decoded).table, Some(254));
}

#[test]
fn route_replace_is_a_removal_with_the_new_routes_facts() {
    let decoded = one(&fixture!("route_replace"));
    assert_eq!(decoded.op, "RTM_NEWROUTE");
    assert_eq!(removal(&decoded).cause, Cause::Replace);
    let route = route(&decoded);
    assert_eq!(route.dst.as_deref(), Some("10.40.0.0/24"));
    assert_eq!(route.priority, Some(0));
    assert_eq!(route.protocol.as_deref(), Some("boot"));
    assert_eq!(route.scope.as_deref(), Some("universe"));
    assert_eq!(route.route_type.as_deref(), Some("unicast"));
}

#[test]
fn route_add_without_replace_removes_nothing() {
    let mut bytes = fixture!("route_replace");
    // nlmsg_flags: REQUEST|ACK|EXCL|CREATE (what `ip route add` sends).
    bytes[6..8].copy_from_slice(&0x0605u16.to_ne_bytes());
    let decoded = one(&bytes);
    assert_eq!((decoded.op, decoded.removal), ("RTM_NEWROUTE", None));
}

#[test]
fn route_flush_batch_decodes_every_message() {
    let all = decode_netlink(&fixture!("route_flush"));
    assert_eq!(all.len(), 30);
    for (i, decoded) in all.iter().enumerate() {
        let decoded = decoded.as_ref().expect("flush message decodes");
        let header = decoded.header.expect("netlink header");
        assert_eq!(header.flags, 0x1, "flush asks for no ack");
        assert_eq!(header.seq, 1795793118 + i as u32);
        let route = route(decoded);
        assert_eq!(route.table, Some(77));
        assert_eq!(route.dst, Some(format!("172.16.{}.0/24", i + 1)));
        assert_eq!(route.oif, Some(3));
        // A flush replays what it dumped: these are the routes' real attributes.
        assert_eq!(route.protocol.as_deref(), Some("boot"));
        assert_eq!(route.scope.as_deref(), Some("link"));
        assert_eq!(route.route_type.as_deref(), Some("unicast"));
    }
}

#[test]
fn rule_del_by_priority() {
    let decoded = one(&fixture!("rule_del_prio"));
    assert_eq!(decoded.op, "RTM_DELRULE");
    let removal = removal(&decoded);
    assert_eq!(
        (removal.object.kind(), removal.family),
        (Kind::Rule, Some(Family::Inet))
    );
    assert_eq!(
        *rule(&decoded),
        Rule {
            priority: Some(100),
            ..Rule::default()
        }
    );
}

#[test]
fn rule_add_with_replace_removes_nothing() {
    // fib_nl_newrule ignores NLM_F_REPLACE: the rule is added beside any it matches.
    let mut bytes = fixture!("rule_del_prio");
    bytes[4..6].copy_from_slice(&RTM_NEWRULE.to_ne_bytes());
    bytes[6..8].copy_from_slice(&(NLM_F_REQUEST | NLM_F_REPLACE | 0x400).to_ne_bytes());
    let decoded = one(&bytes);
    assert_eq!((decoded.op, decoded.removal), ("RTM_NEWRULE", None));
}

#[test]
fn rule_del_from_table_fwmark_mask() {
    let decoded = one(&fixture!("rule_del_fwmark"));
    assert_eq!(
        *rule(&decoded),
        Rule {
            table: Some(77),
            from: Some("10.0.0.0/8".into()),
            fwmark: Some("0x10/0xff".into()),
            ..Rule::default()
        }
    );
}

#[test]
fn rule_del_v6() {
    let decoded = one(&fixture!("rule_del_v6"));
    assert_eq!(removal(&decoded).family, Some(Family::Inet6));
    assert_eq!(rule(&decoded).priority, Some(300));
}

#[test]
fn nexthop_del() {
    let decoded = one(&fixture!("nexthop_del"));
    assert_eq!(decoded.op, "RTM_DELNEXTHOP");
    let removal = removal(&decoded);
    assert_eq!(
        (removal.object.kind(), removal.family),
        (Kind::Nexthop, None)
    );
    assert_eq!(removal.object, Object::Nexthop(Nexthop { id: Some(5) }));
}

#[test]
fn link_set_down_and_the_probe_before_it() {
    let decoded = one(&fixture!("link_down"));
    assert_eq!(decoded.op, "RTM_NEWLINK");
    assert_eq!(removal(&decoded).cause, Cause::LinkDown);
    assert_eq!(
        *link(&decoded),
        Link {
            ifindex: Some(5),
            name: None
        }
    );
    // ifi_flags = ifi_change = 0: do_setlink leaves the flags alone.
    assert_eq!(one(&fixture!("link_probe")).removal, None);
}

#[test]
fn link_set_up_removes_nothing() {
    let mut bytes = fixture!("link_down");
    bytes[24..28].copy_from_slice(&1u32.to_ne_bytes()); // ifi_flags = IFF_UP
    assert_eq!(one(&bytes).removal, None);
}

#[test]
fn link_del() {
    let decoded = one(&fixture!("link_del"));
    assert_eq!(decoded.op, "RTM_DELLINK");
    let removal = removal(&decoded);
    assert_eq!(
        (removal.object.kind(), removal.family, removal.cause),
        (Kind::Link, None, Cause::LinkRemoved)
    );
    assert_eq!(link(&decoded).ifindex, Some(5));
}

#[test]
fn addr_del() {
    let decoded = one(&fixture!("addr_del"));
    assert_eq!(decoded.op, "RTM_DELADDR");
    let removal = removal(&decoded);
    assert_eq!(
        (removal.object.kind(), removal.cause),
        (Kind::Address, Cause::AddressRemoved)
    );
    assert_eq!(
        removal.object,
        Object::Address(Address {
            ifindex: Some(3),
            dev: None,
            address: Some("10.9.0.1/24".into()),
        })
    );
}

#[test]
fn message_without_nlm_f_request_removes_nothing() {
    let mut bytes = fixture!("route_del_v4");
    bytes[6..8].copy_from_slice(&0u16.to_ne_bytes());
    assert_eq!(one(&bytes).removal, None);
}

#[test]
fn dump_request_then_padding_reports_the_bad_header() {
    // `ip route flush` sends its RTM_GETROUTE dump request in a zero-padded 156-byte buffer.
    let mut bytes = hex("240000001a000103dda0096b0000000002000000000000000000000008000f004d000000");
    bytes.resize(156, 0);
    let all = decode_netlink(&bytes);
    assert_eq!(all.len(), 2);
    let first = all[0].as_ref().expect("dump request decodes");
    assert_eq!((first.op, first.removal.as_ref()), ("RTM_GETROUTE", None));
    assert_eq!(
        all[1],
        Err(DecodeError::BadLength {
            offset: 36,
            msg_type: 0,
            nlmsg_len: 0,
            remaining: 120
        })
    );
}

#[test]
fn truncated_capture_reports_where() {
    let bytes = fixture!("route_flush");
    let all = decode_netlink(&bytes[..52 + 30]);
    assert!(all[0].is_ok());
    assert_eq!(
        all[1],
        Err(DecodeError::BadLength {
            offset: 52,
            msg_type: 25,
            nlmsg_len: 52,
            remaining: 30
        })
    );
    assert_eq!(
        decode_netlink(&bytes[..52 + 7])[1],
        Err(DecodeError::TruncatedHeader {
            offset: 52,
            remaining: 7
        })
    );
}

#[test]
fn unknown_type_and_malformed_body_are_errors() {
    let mut bytes = fixture!("route_del_v4");
    bytes[4..6].copy_from_slice(&23u16.to_ne_bytes());
    assert!(matches!(
        decode_netlink(&bytes)[0],
        Err(DecodeError::UnknownType {
            msg_type: 23,
            offset: 0,
            len: 60
        })
    ));

    // RTA_DST of 3 bytes: the value the event would carry is unknown.
    let mut bytes = fixture!("route_del_v4");
    bytes[28..30].copy_from_slice(&7u16.to_ne_bytes());
    let err = decode_netlink(&bytes).remove(0).expect_err("bad RTA_DST");
    assert!(
        matches!(
            err,
            DecodeError::Malformed {
                op: "RTM_DELROUTE",
                offset: 0,
                len: 60,
                ..
            }
        ),
        "{err}"
    );

    // An rtmsg cut short.
    let mut bytes = fixture!("route_del_v4")[..24].to_vec();
    bytes[0..4].copy_from_slice(&24u32.to_ne_bytes());
    assert!(matches!(
        decode_netlink(&bytes)[0],
        Err(DecodeError::Malformed { .. })
    ));
}

#[test]
fn attributes_the_decoder_does_not_read_may_be_garbage() {
    // A malformed trailing attribute header ends the walk, as in the kernel; the rest stands.
    let mut bytes = fixture!("route_del_v4");
    bytes.extend_from_slice(&[0xff, 0xff, 0x02, 0x00]);
    let len = bytes.len() as u32;
    bytes[0..4].copy_from_slice(&len.to_ne_bytes());
    assert_eq!(route(&one(&bytes)).priority, Some(50));
}

#[test]
fn output_is_capped() {
    // 5000 empty NLMSG_NOOPs.
    let noop = [16u8, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
    let bytes: Vec<u8> = noop.iter().copied().cycle().take(16 * 5000).collect();
    let all = decode_netlink(&bytes);
    assert_eq!(all.len(), netlink::MAX_MESSAGES);
    assert!(matches!(
        all.last(),
        Some(Err(DecodeError::TooManyMessages { .. }))
    ));
}

// --- ioctl ------------------------------------------------------------------------------------

fn payload(cmd: u32, arg: &[(usize, &[u8])], dev: &str) -> IoctlPayload {
    let mut p = IoctlPayload {
        cmd,
        _pad: 0,
        arg: [0; 128],
        dev: [0; 16],
    };
    for (at, bytes) in arg {
        p.arg[*at..*at + bytes.len()].copy_from_slice(bytes);
    }
    p.dev[..dev.len()].copy_from_slice(dev.as_bytes());
    p
}

/// `route del -net 10.1.0.0 netmask 255.255.0.0 gw 10.9.0.254 metric 100 dev eth0` as net-tools
/// fills `struct rtentry` (metric stored + 1, RTF_UP|RTF_GATEWAY).
fn rtentry_del() -> IoctlPayload {
    let sin = |a: [u8; 4]| [2, 0, 0, 0, a[0], a[1], a[2], a[3]];
    payload(
        ioctl::SIOCDELRT,
        &[
            (8, &sin([10, 1, 0, 0])),
            (24, &sin([10, 9, 0, 254])),
            (40, &sin([255, 255, 0, 0])),
            (56, &0x0003u16.to_ne_bytes()),
            (80, &101i16.to_ne_bytes()),
            (88, &0x7fff_0000_1000u64.to_ne_bytes()),
        ],
        "eth0",
    )
}

#[test]
fn siocdelrt_inet() {
    let decoded = decode_ioctl(2, &rtentry_del()).expect("rtentry decodes");
    assert_eq!((decoded.op, decoded.header), ("SIOCDELRT", None));
    assert_eq!(removal(&decoded).family, Some(Family::Inet));
    assert_eq!(
        *route(&decoded),
        Route {
            table: Some(254),
            dst: Some("10.1.0.0/16".into()),
            gateway: Some("10.9.0.254".into()),
            dev: Some("eth0".into()),
            priority: Some(100),
            ..Route::default()
        }
    );
}

#[test]
fn siocdelrt_inet_host_and_refused_arguments() {
    let mut host = rtentry_del();
    host.arg[56..58].copy_from_slice(&0x0005u16.to_ne_bytes()); // RTF_UP|RTF_HOST
    host.arg[80..82].copy_from_slice(&0i16.to_ne_bytes());
    let decoded = decode_ioctl(2, &host).expect("host route");
    assert_eq!(route(&decoded).dst.as_deref(), Some("10.1.0.0/32"));
    assert_eq!(route(&decoded).priority, None);

    let mut bad_family = rtentry_del();
    bad_family.arg[8] = 10;
    assert!(matches!(
        decode_ioctl(2, &bad_family),
        Err(DecodeError::MalformedIoctl { .. })
    ));
    let mut bad_mask = rtentry_del();
    bad_mask.arg[44..48].copy_from_slice(&[255, 0, 255, 0]);
    assert!(matches!(
        decode_ioctl(2, &bad_mask),
        Err(DecodeError::MalformedIoctl { .. })
    ));
    assert_eq!(
        decode_ioctl(16, &rtentry_del()),
        Err(DecodeError::UnsupportedSocketFamily { sock_family: 16 })
    );
}

#[test]
fn siocdelrt_inet6() {
    let dst: [u8; 16] = "2001:db8:5::"
        .parse::<std::net::Ipv6Addr>()
        .unwrap()
        .octets();
    let gw: [u8; 16] = "fe80::1".parse::<std::net::Ipv6Addr>().unwrap().octets();
    let p = payload(
        ioctl::SIOCDELRT,
        &[
            (0, &dst),
            (32, &gw),
            (52, &64u16.to_ne_bytes()),
            (56, &1024u32.to_ne_bytes()),
            (72, &0x0003u32.to_ne_bytes()),
            (76, &7i32.to_ne_bytes()),
        ],
        "",
    );
    let decoded = decode_ioctl(10, &p).expect("in6_rtmsg decodes");
    assert_eq!(removal(&decoded).family, Some(Family::Inet6));
    assert_eq!(
        *route(&decoded),
        Route {
            table: Some(254),
            dst: Some("2001:db8:5::/64".into()),
            gateway: Some("fe80::1".into()),
            oif: Some(7),
            priority: Some(1024),
            ..Route::default()
        }
    );
}

#[test]
fn siocsifflags_down_up_and_unknown_cmd() {
    let down = payload(
        ioctl::SIOCSIFFLAGS,
        &[(0, b"eth1"), (16, &0x1002u16.to_ne_bytes())],
        "",
    );
    let decoded = decode_ioctl(2, &down).expect("ifreq decodes");
    assert_eq!(decoded.op, "SIOCSIFFLAGS");
    assert_eq!(removal(&decoded).cause, Cause::LinkDown);
    assert_eq!(link(&decoded).name.as_deref(), Some("eth1"));

    let up = payload(
        ioctl::SIOCSIFFLAGS,
        &[(0, b"eth1"), (16, &0x1003u16.to_ne_bytes())],
        "",
    );
    assert_eq!(decode_ioctl(2, &up).expect("ifreq decodes").removal, None);

    assert_eq!(
        decode_ioctl(2, &payload(0x890B, &[], "")),
        Err(DecodeError::UnknownIoctl { cmd: 0x890B })
    );
}

// --- hostile bytes ----------------------------------------------------------------------------

/// xorshift64*: deterministic, so a failure replays.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

/// One mutation: flip bytes, set interesting values, truncate, splice or duplicate a range.
fn mutate(rng: &mut Rng, bytes: &mut Vec<u8>) {
    for _ in 0..=rng.below(4) {
        match rng.below(6) {
            0 if !bytes.is_empty() => {
                let at = rng.below(bytes.len());
                bytes[at] ^= 1 << rng.below(8);
            }
            1 if !bytes.is_empty() => {
                let at = rng.below(bytes.len());
                bytes[at] = [0, 1, 3, 4, 0x7f, 0x80, 0xfe, 0xff][rng.below(8)];
            }
            2 => bytes.truncate(rng.below(bytes.len() + 1)),
            3 if bytes.len() >= 2 => {
                // An nlmsg_len / nla_len sized field set to something odd.
                let at = rng.below(bytes.len() - 1);
                let value = [0u16, 1, 3, 4, 15, 16, 17, 0xffff][rng.below(8)];
                bytes[at..at + 2].copy_from_slice(&value.to_ne_bytes());
            }
            4 if !bytes.is_empty() => {
                let start = rng.below(bytes.len());
                let end = (start + rng.below(64)).min(bytes.len());
                let copy = bytes[start..end].to_vec();
                let at = rng.below(bytes.len());
                bytes.splice(at..at, copy);
            }
            _ => bytes.extend((0..rng.below(32)).map(|_| rng.next() as u8)),
        }
    }
}

#[test]
fn mutated_and_random_bytes_never_panic() {
    let fixtures = all_fixtures();
    let mut rng = Rng(0x5eed_0fd3_c0de);
    for round in 0..40_000 {
        let mut bytes = fixtures[round % fixtures.len()].clone();
        mutate(&mut rng, &mut bytes);
        let all = decode_netlink(&bytes);
        assert!(all.len() <= netlink::MAX_MESSAGES);
        assert!(all.len() <= bytes.len() / 16 + 1);
    }
    for _ in 0..5_000 {
        let len = rng.below(512);
        let bytes: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
        decode_netlink(&bytes);
    }
    for _ in 0..20_000 {
        let mut p = rtentry_del();
        p.cmd = [ioctl::SIOCDELRT, ioctl::SIOCSIFFLAGS, rng.next() as u32][rng.below(3)];
        for _ in 0..rng.below(16) {
            let at = rng.below(128);
            p.arg[at] = rng.next() as u8;
        }
        let at = rng.below(16);
        p.dev[at] = rng.next() as u8;
        let _ = decode_ioctl([2, 10, rng.next() as u16][rng.below(3)], &p);
    }
}
