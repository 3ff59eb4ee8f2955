use super::*;
use crate::event::fixtures::{route_event, rule_event};
use crate::event::{Address, Link, Nexthop, Object, Route, Rule};

/// The line with runs of spaces collapsed: the words, not the alignment.
fn words(line: &str) -> String {
    line.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[test]
fn route_delete_line() {
    let line = format_line(&route_event());
    assert_eq!(
        words(&line),
        "15:17:41.123456 netns=blue(4026532456) ip[12345] unit=demo.service DEL route table 77 \
         10.1.0.0/24 via 10.0.0.1 metric 100 -> removed"
    );
    assert!(line.contains("  DEL "), "{line}");
    assert!(line.ends_with("  -> removed"), "{line}");
}

#[test]
fn rule_delete_failed_line() {
    let line = format_line(&rule_event());
    assert_eq!(
        words(&line),
        "15:17:42.000001 netns=host(4026531840) ip[12346] unit=session-1.scope DEL rule prio 100 lookup 77 -> failed ENOENT"
    );
}

#[test]
fn columns_line_up() {
    let a = format_line(&route_event());
    let b = format_line(&rule_event());
    assert_eq!(a.find("DEL"), b.find("DEL"), "\n{a}\n{b}");
    assert_eq!(a.find(" route "), b.find(" rule "), "\n{a}\n{b}");
}

#[test]
fn hostile_strings_stay_on_one_escaped_line() {
    let mut ev = route_event();
    let actor = std::sync::Arc::make_mut(ev.actor.as_mut().unwrap());
    actor.comm = "\x1b[31mip\n".into();
    actor.unit = Some("x\r\u{9b}2J.service".into());
    ev.netns.name = Some("blue\x07".into());
    ev.object.route_mut().unwrap().dev = Some("eth0\n12:00:00 fake".into());
    let line = format_line(&ev);
    assert!(!line.contains('\n') && !line.contains('\r') && !line.contains('\x1b'));
    assert!(
        !line.chars().any(crate::sink::escape::is_unsafe),
        "{line:?}"
    );
    assert!(line.contains("\\x1b[31mip\\x0a[12345]"), "{line}");
    assert!(line.contains("unit=x\\x0d\\x9b2J.service"), "{line}");
    assert!(line.contains("netns=blue\\x07(4026532456)"), "{line}");
    assert!(line.contains("dev eth0\\x0a12:00:00 fake"), "{line}");
}

#[test]
fn container_short_id_preferred_over_unit() {
    let mut ev = route_event();
    let actor = std::sync::Arc::make_mut(ev.actor.as_mut().unwrap());
    actor.container =
        Some("3f4e1c2b9a8d7e6f5a4b3c2d1e0f9a8b7c6d5e4f3a2b1c0d9e8f7a6b5c4d3e2f".into());
    actor.unit = Some("docker-3f4e.scope".into());
    let line = format_line(&ev);
    assert!(line.contains("ip[12345] container=3f4e1c2b9a8d "), "{line}");
    assert!(!line.contains("unit="), "{line}");
}

#[test]
fn pod_preferred_over_container_and_escaped() {
    let mut ev = crate::event::fixtures::full_event();
    let line = format_line(&ev);
    assert!(
        line.contains("ip[12345] pod=kube-system/calico-node-x7k2 "),
        "{line}"
    );
    assert!(!line.contains("container="), "{line}");
    let actor = std::sync::Arc::make_mut(ev.actor.as_mut().unwrap());
    let pod = actor.pod.as_mut().unwrap();
    pod.name = Some("x\n12:00:00 fake".into());
    assert!(format_line(&ev).contains("pod=kube-system/x\\x0a12:00:00 fake"));
    // A pod known by its uid only: the container id.
    let pod = std::sync::Arc::make_mut(ev.actor.as_mut().unwrap())
        .pod
        .as_mut()
        .unwrap();
    pod.name = None;
    assert!(format_line(&ev).contains("container=3f4e1c2b9a8d "));
}

#[test]
fn verbs_by_cause_and_other_objects() {
    let mut ev = route_event();
    ev.cause = Cause::LinkDown;
    ev.family = None;
    ev.object = Object::Link(Link {
        ifindex: Some(3),
        name: Some("eth1".into()),
    });
    assert!(words(&format_line(&ev)).contains(" LINK-DOWN link dev eth1 ifindex 3 -> removed"));

    ev.cause = Cause::AddressRemoved;
    ev.object = Object::Address(Address {
        ifindex: Some(3),
        dev: None,
        address: Some("10.0.0.2/24".into()),
    });
    assert!(words(&format_line(&ev)).contains(" ADDR-DEL addr 10.0.0.2/24 ifindex 3 -> removed"));

    ev.cause = Cause::Request;
    ev.object = Object::Nexthop(Nexthop { id: Some(42) });
    ev.outcome = Outcome::Unknown;
    assert!(words(&format_line(&ev)).contains(" DEL nexthop id 42 -> unknown"));

    ev.cause = Cause::Expired;
    ev.actor = None;
    ev.outcome = Outcome::Failed;
    ev.errno = Some(99);
    ev.error = None;
    let line = words(&format_line(&ev));
    assert!(
        line.contains("netns=blue(4026532456) - EXPIRED nexthop id 42 -> failed errno 99"),
        "{line}"
    );

    let names: Vec<_> = [
        Cause::Request,
        Cause::Replace,
        Cause::LinkDown,
        Cause::AddressRemoved,
        Cause::LinkRemoved,
        Cause::Flush,
        Cause::Expired,
        Cause::NetnsExit,
    ]
    .map(verb)
    .to_vec();
    assert!(names.iter().all(|v| v.len() <= VERB_WIDTH + 1));
}

#[test]
fn route_variants() {
    let mut ev = route_event();
    ev.netns.name = None;
    ev.object = Object::Route(Route {
        table: Some(254),
        dst: Some("default".into()),
        oif: Some(4),
        scope: Some("link".into()),
        route_type: Some("blackhole".into()),
        tos: Some(0x10),
        nhid: Some(9),
        ..Route::default()
    });
    let line = words(&format_line(&ev));
    assert!(
        line.contains("netns=4026532456 ip[12345]")
            && line.contains(
                " DEL route table main default nhid 9 oif 4 scope link tos 0x10 type blackhole ->"
            ),
        "{line}"
    );
}

#[test]
fn rule_variants() {
    let mut ev = rule_event();
    ev.object = Object::Rule(Rule {
        priority: Some(32766),
        invert: true,
        from: Some("10.0.0.0/8".into()),
        to: Some("10.1.0.0/16".into()),
        iif: Some("eth0".into()),
        oif: Some("eth1".into()),
        fwmark: Some("0x64/0xff".into()),
        table: Some(254),
        protocol: Some("static".into()),
        ..Rule::default()
    });
    let line = words(&format_line(&ev));
    assert!(
        line.contains(
            " DEL rule prio 32766 not from 10.0.0.0/8 to 10.1.0.0/16 iif eth0 oif eth1 fwmark 0x64/0xff \
             lookup main proto static ->"
        ),
        "{line}"
    );
    ev.object = Object::Rule(Rule {
        priority: Some(5),
        action: Some("blackhole".into()),
        ..Rule::default()
    });
    assert!(words(&format_line(&ev)).contains(" DEL rule prio 5 blackhole -> failed ENOENT"));
}

#[test]
fn a_replace_shows_the_route_that_took_the_old_one_s_place() {
    let mut ev = route_event();
    ev.cause = Cause::Replace;
    ev.replacement = Some(Route {
        table: Some(77),
        dst: Some("10.1.0.0/24".into()),
        gateway: Some("10.0.0.9".into()),
        ..Default::default()
    });
    let line = words(&format_line(&ev));
    assert!(
        line.contains(
            "REPLACE route table 77 10.1.0.0/24 via 10.0.0.1 metric 100 => table 77 10.1.0.0/24 \
             via 10.0.0.9 -> removed"
        ),
        "{line}"
    );
}
