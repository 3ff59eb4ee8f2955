//! Events built by hand, for the tests of every room downstream of the event model.

use std::sync::Arc;

use super::{
    Actor, Address, Ancestor, Capture, Cause, Event, EventType, Family, Host, Kind, Link, Netns,
    Nexthop, Object, Op, Outcome, Pod, Request, Restore, RestoreOutcome, Route, Rule, Syscall,
    Timestamp, Trigger,
};

/// 2026-11-27T15:17:41.123456789Z
pub const TS: i128 = 1_795_792_661_123_456_789;

pub fn actor() -> Actor {
    Actor {
        pid: 12345,
        tid: 12345,
        comm: "ip".into(),
        exe: Some("/usr/sbin/ip".into()),
        exe_dev: Some(2049),
        exe_inode: Some(1_311_025),
        cmdline: "ip route del 10.1.0.0/24 via 10.0.0.1 table 77 metric 100".into(),
        argv: [
            "ip",
            "route",
            "del",
            "10.1.0.0/24",
            "via",
            "10.0.0.1",
            "table",
            "77",
            "metric",
            "100",
        ]
        .map(String::from)
        .to_vec(),
        uid: 0,
        ppid: 12000,
        ancestry: vec![
            Ancestor {
                pid: 12000,
                comm: "bash".into(),
            },
            Ancestor {
                pid: 1,
                comm: "systemd".into(),
            },
        ],
        cgroup: Some("/system.slice/demo.service".into()),
        cgroup_id: Some(4242),
        unit: Some("demo.service".into()),
        container: None,
        pod: None,
    }
}

/// The machine of the fixtures' events.
pub fn host() -> Host {
    Host {
        name: "node-a".into(),
        machine_id: Some("5f1d2c3b4a5968778695a4b3c2d1e0f9".into()),
        node: Some("ip-10-0-3-7.ec2.internal".into()),
    }
}

/// An `ip route del` that the kernel acked.
pub fn route_event() -> Event {
    let mut ev = Event::removal(
        Timestamp(TS),
        Object::Route(Route {
            table: Some(77),
            dst: Some("10.1.0.0/24".into()),
            gateway: Some("10.0.0.1".into()),
            priority: Some(100),
            ..Route::default()
        }),
        Some(Family::Inet),
        Cause::Request,
        Outcome::Removed,
        Capture::Syscall,
        Netns {
            inode: 4026532456,
            name: Some("blue".into()),
        },
    );
    ev.actor = Some(Arc::new(actor()));
    ev.host = Some(Arc::new(host()));
    ev.request = Some(Request {
        syscall: Syscall::Sendmsg,
        op: Op::RtmDelRoute,
        seq: Some(1764256661),
        nlmsg_flags: Some(0x0005),
        ack_requested: true,
        port_id: Some(12345),
    });
    ev
}

/// An `ip rule del prio 100 lookup 77` that failed with ENOENT (no such rule). iproute2 sends
/// no source, action 0 (any) and the table: the other fields are wildcards, `null`.
pub fn rule_event() -> Event {
    let mut actor = actor();
    actor.pid = 12346;
    actor.tid = 12346;
    actor.cmdline = "ip rule del prio 100 lookup 77".into();
    actor.argv = ["ip", "rule", "del", "prio", "100", "lookup", "77"]
        .map(String::from)
        .to_vec();
    actor.cgroup = Some("/user.slice/user-0.slice/session-1.scope".into());
    actor.unit = Some("session-1.scope".into());
    Event {
        ts: Timestamp(1_795_792_662_000_001_000),
        outcome: Outcome::Failed,
        errno: Some(2),
        error: Some("ENOENT".into()),
        netns: Netns {
            inode: 4026531840,
            name: Some("host".into()),
        },
        actor: Some(Arc::new(actor)),
        request: Some(Request {
            syscall: Syscall::Sendmsg,
            op: Op::RtmDelRule,
            seq: Some(1764256662),
            nlmsg_flags: Some(0x0005),
            ack_requested: true,
            port_id: Some(12346),
        }),
        object: Object::Rule(Rule {
            priority: Some(100),
            table: Some(77),
            ..Rule::default()
        }),
        ..route_event()
    }
}

/// Every optional field filled in, nested objects included: a route, [`full_object`].
pub fn full_event() -> Event {
    let mut actor = actor();
    actor.container =
        Some("3f4e1c2b9a8d7e6f5a4b3c2d1e0f9a8b7c6d5e4f3a2b1c0d9e8f7a6b5c4d3e2f".into());
    actor.pod = Some(Pod {
        namespace: Some("kube-system".into()),
        name: Some("calico-node-x7k2".into()),
        uid: "0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0".into(),
        container: Some("calico-node".into()),
    });
    Event {
        object: full_object(Kind::Route),
        errno: Some(2),
        error: Some("ENOENT".into()),
        actor: Some(Arc::new(actor)),
        trigger: Some(Trigger {
            kind: Kind::Link,
            op: Op::RtmNewLink,
            link: Some(Link {
                ifindex: Some(2),
                name: Some("eth0".into()),
            }),
            // Never both in a real event; the full fixture fills every field the doc lists.
            address: Some(Address {
                ifindex: Some(2),
                dev: Some("eth0".into()),
                address: Some("10.0.0.2/24".into()),
            }),
        }),
        event: EventType::RestoreSuspended,
        // Never all of these in a real event (latency only on `restored`, errno only on
        // `failed`); the full fixture fills every field the doc lists.
        restore: Some(Restore {
            policy: "kube-router rules".into(),
            outcome: RestoreOutcome::Suspended,
            latency_us: Some(412),
            attempt: 5,
            errno: Some(19),
            error: Some("ENODEV".into()),
            detail: Some("stopped restoring it".into()),
            hint: Some("set ManageForeignRoutingPolicyRules=no".into()),
        }),
        // Never with a trigger in a real event.
        replacement: Some(Route {
            table: Some(77),
            dst: Some("10.1.0.0/24".into()),
            gateway: Some("10.0.0.9".into()),
            ..Route::default()
        }),
        ..route_event()
    }
}

/// An object of `kind` with every field filled in.
pub fn full_object(kind: Kind) -> Object {
    match kind {
        Kind::Route => Object::Route(Route {
            table: Some(254),
            dst: Some("2001:db8::/64".into()),
            gateway: Some("fe80::1".into()),
            dev: Some("eth0".into()),
            oif: Some(2),
            protocol: Some("boot".into()),
            scope: Some("universe".into()),
            route_type: Some("unicast".into()),
            priority: Some(1024),
            src: Some("2001:db8::2".into()),
            tos: Some(0),
            nhid: Some(7),
        }),
        Kind::Rule => Object::Rule(Rule {
            priority: Some(100),
            table: Some(77),
            from: Some("10.0.0.0/8".into()),
            to: Some("10.1.0.0/16".into()),
            iif: Some("eth0".into()),
            oif: Some("eth1".into()),
            fwmark: Some("0x64/0xff".into()),
            action: Some("lookup".into()),
            protocol: Some("static".into()),
            invert: true,
        }),
        Kind::Nexthop => Object::Nexthop(Nexthop { id: Some(7) }),
        Kind::Link => Object::Link(Link {
            ifindex: Some(2),
            name: Some("eth0".into()),
        }),
        Kind::Address => Object::Address(Address {
            ifindex: Some(2),
            dev: Some("eth0".into()),
            address: Some("10.0.0.2/24".into()),
        }),
    }
}

/// [`route_event`] by another run of `ip`, of a route of its own: pid 4242, route 10.77.1.0/24
/// table 77 metric 100.
pub fn sample_route_event() -> Event {
    let mut ev = route_event();
    let actor = Arc::make_mut(ev.actor.as_mut().expect("the fixture has its actor"));
    (actor.pid, actor.tid, actor.ppid) = (4242, 4242, 4200);
    actor.ancestry[0].pid = 4200;
    actor.cmdline = "ip route del 10.77.1.0/24 table 77".into();
    actor.argv = ["ip", "route", "del", "10.77.1.0/24", "table", "77"]
        .map(String::from)
        .to_vec();
    ev.request
        .as_mut()
        .expect("the fixture has its request")
        .seq = Some(1_795_792_661);
    ev.object = Object::Route(Route {
        table: Some(77),
        dst: Some("10.77.1.0/24".into()),
        priority: Some(100),
        ..Default::default()
    });
    ev
}
