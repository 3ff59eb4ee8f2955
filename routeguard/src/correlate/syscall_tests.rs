//! The syscall path's joins, with a scripted mirror: its news are fed by hand, and what it is
//! asked is read back.

use routeguard_common::syscall as id;

use super::tests::{
    ack, ack_on, delroute, delrule, notify, request, request_from, route_body, route_notification,
    rule_notification, task, task_record, PORTID, SOCK,
};
use super::*;
use crate::{
    decode::record::Record,
    event::{Cause, Kind, Op},
    mirror::{Asker, Exited, MirroredRoute, Scripted},
};

fn scripted() -> (SyscallCorrelator, Scripted) {
    let (asker, asks) = Asker::scripted();
    (
        SyscallCorrelator::new(Clock::with_offset(0), Some(asker)),
        asks,
    )
}

fn mirrored(n: u8) -> MirroredRoute {
    MirroredRoute::decode(&route_body(n)).expect("a route")
}

/// `ip rule del prio 100` names no table; the kernel's notification, made in the sender's
/// `sendmsg`, does: the event takes it and goes out at once, before the ack is read. The ack is
/// then consumed without a word.
#[test]
fn a_notification_gives_the_kernels_view_at_once_and_the_ack_is_consumed() {
    let (mut c, _) = scripted();
    c.record(&request(1_000, &delrule(7, 0x5)));
    c.record(&notify(1_100, task().tid, &rule_notification(7, PORTID)));
    let ready = c.take_ready();
    assert_eq!(ready.len(), 1, "released on the notification");
    let ev = &ready[0].event;
    assert_eq!(
        (ev.kind(), ev.cause, ev.outcome),
        (Kind::Rule, Cause::Request, Outcome::Removed)
    );
    let rule = ev.object.rule().unwrap();
    assert_eq!((rule.priority, rule.table), (Some(100), Some(77)));
    assert_eq!(ready[0].evidence, Evidence::Notification);
    assert!(
        ready[0].kernel.is_some(),
        "the kernel's bytes, for restores"
    );
    assert_eq!(ev.request.as_ref().unwrap().syscall, Syscall::Sendmsg);
    c.record(&ack(7, 0));
    c.flush();
    assert!(c.take_ready().is_empty(), "the ack adds nothing");
    assert_eq!(c.problems().unmatched_replies, 0);
    assert!(c.is_idle());
}

/// `ip route flush` asks for no acks: each delete's notification makes it `removed`, with the
/// route as the kernel held it; the mirror is told to let go of each.
#[test]
fn flush_deletes_without_acks_are_removed_by_their_notifications() {
    let (mut c, mirror) = scripted();
    c.record(&task_record("ip route flush table 77"));
    let mut batch = Vec::new();
    for n in 0..3 {
        batch.extend(delroute(n, 10 + u32::from(n), 0x1));
    }
    c.record(&request(1_000, &batch));
    for n in 0..3 {
        let msg = route_notification(n, 10 + u32::from(n), PORTID);
        c.record(&notify(1_100 + u64::from(n), task().tid, &msg));
    }
    let ready = c.take_ready();
    assert_eq!(ready.len(), 3);
    for (n, o) in ready.iter().enumerate() {
        let ev = &o.event;
        assert_eq!((ev.cause, ev.outcome), (Cause::Flush, Outcome::Removed));
        let route = ev.object.route().unwrap();
        assert_eq!(
            route.dst.as_deref(),
            Some(format!("10.77.{n}.0/24").as_str())
        );
        assert_eq!(
            route.gateway.as_deref(),
            Some("10.99.0.2"),
            "the kernel's view"
        );
        assert!(!ev.request.as_ref().unwrap().ack_requested);
    }
    let asks = mirror.asks();
    let [Ask::Forget(forgets)] = asks.as_slice() else {
        panic!("one batch of forgets: {asks:?}");
    };
    assert_eq!(forgets.len(), 3);
    assert_eq!(forgets[0].key, mirrored(0).key());
    assert_eq!((forgets[0].netns, forgets[0].at_ns), (1, 1_100));
    c.flush();
    assert!(
        c.take_ready().is_empty(),
        "nothing is left to expire as unknown"
    );
    assert_eq!(c.outcomes().removed_by(Evidence::Notification), 3);
}

/// Its request record was lost (or the sender used a way the capture does not hook): the
/// notification is an event on its own, named after the requesting thread it was made in.
#[test]
fn a_notification_no_request_claims_is_an_event_of_its_own() {
    let (mut c, _) = scripted();
    c.record(&notify(5_000, task().tid, &route_notification(4, 99, 777)));
    let ready = c.take_ready();
    assert_eq!(ready.len(), 1);
    let ev = &ready[0].event;
    assert_eq!((ev.cause, ev.outcome), (Cause::Request, Outcome::Removed));
    assert_eq!(ev.actor.as_ref().unwrap().pid, task().pid);
    assert_eq!(ev.netns.inode, 1);
    let req = ev.request.as_ref().unwrap();
    assert_eq!(
        (&req.syscall, &req.op, req.seq, req.port_id),
        (&Syscall::Netlink, &Op::RtmDelRoute, Some(99), Some(777))
    );
    assert_eq!(
        ev.object.route().unwrap().dst.as_deref(),
        Some("10.77.4.0/24")
    );
    assert_eq!(ready[0].evidence, Evidence::Notification);
}

/// The kernel could not name the thread (pid 0: BTF lacked the task's offsets): no actor rather
/// than a process called 0, and the port id still names the socket.
#[test]
fn a_notification_from_an_unnamed_thread_has_no_actor_and_keeps_its_port_id() {
    let (mut c, _) = scripted();
    let mut rec = notify(5_000, 0, &rule_notification(7, 4242));
    rec[std::mem::offset_of!(routeguard_common::NotifyRecord, pid)..][..4]
        .copy_from_slice(&0u32.to_ne_bytes());
    c.record(&rec);
    let ready = c.take_ready();
    assert_eq!(ready.len(), 1, "{ready:#?}");
    let ev = &ready[0].event;
    assert_eq!((ev.cause, ev.outcome), (Cause::Request, Outcome::Removed));
    assert!(ev.actor.is_none(), "{:?}", ev.actor);
    assert_eq!(ev.request.as_ref().unwrap().port_id, Some(4242));
}

/// The kernel refused the request (ESRCH): it never gets a notification, and one that comes
/// later with the same thread and sequence number is not its.
#[test]
fn a_refused_request_never_claims_a_notification() {
    let (mut c, _) = scripted();
    c.record(&request(1_000, &delrule(7, 0x5)));
    c.record(&ack(7, -3));
    c.record(&notify(2_000, task().tid, &rule_notification(7, PORTID)));
    let ready = c.take_ready();
    assert_eq!(ready.len(), 2, "{ready:#?}");
    let failed = &ready[0].event;
    assert_eq!(
        (failed.outcome, failed.error.as_deref()),
        (Outcome::Failed, Some("ESRCH"))
    );
    assert_eq!(
        failed.object.rule().unwrap().table,
        None,
        "the request's view"
    );
    let alone = &ready[1].event;
    assert_eq!(alone.outcome, Outcome::Removed);
    assert_eq!(alone.request.as_ref().unwrap().syscall, Syscall::Netlink);
}

/// Another process's unacknowledged `ip rule del` with the same sequence number (iproute2 seeds
/// it from the clock), and one from the same thread but another socket, wait beside root's:
/// neither takes root's notification.
#[test]
fn a_same_seq_request_of_another_thread_or_port_does_not_steal_a_notification() {
    let (mut c, _) = scripted();
    let other = routeguard_common::TaskInfo {
        pid: 4000,
        tid: 4000,
        ..task()
    };
    c.record(&request_from(
        900,
        &delrule(7, 0x1),
        id::SENDMSG,
        0,
        other,
        5151,
    ));
    c.record(&request_from(
        950,
        &delrule(7, 0x1),
        id::SENDMSG,
        0,
        task(),
        6161,
    ));
    c.record(&request(1_000, &delrule(7, 0x5)));
    c.record(&notify(1_100, task().tid, &rule_notification(7, PORTID)));
    let ready = c.take_ready();
    assert_eq!(ready.len(), 1);
    let ev = &ready[0].event;
    assert_eq!(ev.actor.as_ref().unwrap().tid, task().tid);
    assert!(ev.request.as_ref().unwrap().ack_requested, "root's request");
    assert_eq!(ev.object.rule().unwrap().table, Some(77));
    c.flush();
    let rest = Observed::events(c.take_ready());
    assert_eq!(rest.len(), 2);
    assert!(
        rest.iter().all(|e| e.outcome == Outcome::Unknown),
        "{rest:#?}"
    );
}

/// `ip link set d1 down`: once acked, the mirror is asked what vanished since; the trigger waits
/// for the answer, then goes out followed by each route it flushed, with its actor and request.
#[test]
fn a_link_down_is_followed_by_what_the_mirror_says_vanished() {
    let (mut c, mirror) = scripted();
    let link_down = hex("2000000010000500dea0096b0000000000000000050000000000000001000000");
    let seq = 0x6b09_a0de;
    c.record(&request(1_000, &link_down));
    c.record(&ack(seq, 0));
    assert!(c.take_ready().is_empty(), "held for the mirror's answer");
    let asks = mirror.asks();
    let [Ask::Vanished {
        token,
        netns: 1,
        since_ns: 1_000,
    }] = asks.as_slice()
    else {
        panic!("asked what vanished: {asks:?}");
    };
    assert!(c.awaits_mirror());
    c.news(News::Vanished {
        token: *token,
        gone: vec![mirrored(1), mirrored(2)],
        announced: vec![mirrored(3)],
    });
    let ready = c.take_ready();
    assert_eq!(ready.len(), 4, "{ready:#?}");
    let trigger = &ready[0].event;
    assert_eq!(
        (trigger.kind(), trigger.cause),
        (Kind::Link, Cause::LinkDown)
    );
    for o in &ready[1..] {
        let ev = &o.event;
        assert_eq!((ev.kind(), ev.cause), (Kind::Route, Cause::LinkDown));
        assert_eq!(ev.actor, trigger.actor);
        assert_eq!(ev.trigger.as_ref().unwrap().op, Op::RtmNewLink);
        assert!(o.kernel.is_some());
    }
    let evidence: Vec<Evidence> = ready.iter().map(|o| o.evidence).collect();
    assert_eq!(
        evidence,
        [
            Evidence::Ack,
            Evidence::Redump,
            Evidence::Redump,
            Evidence::Notification
        ]
    );
    assert!(c.is_idle());
}

/// A mirror that does not answer does not hold the trigger forever.
#[test]
fn a_trigger_goes_alone_when_the_mirror_does_not_answer() {
    let (mut c, _) = scripted();
    let link_down = hex("2000000010000500dea0096b0000000000000000050000000000000001000000");
    c.record(&request(1_000, &link_down));
    c.record(&ack(0x6b09_a0de, 0));
    c.flush();
    let events = Observed::events(c.take_ready());
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].cause, Cause::LinkDown);
    assert_eq!(c.problems().late_flushes, 1);
}

/// `ip route replace`: the request names the new route; the route it took away is what the
/// mirror held under the key, which its news says. Whichever comes first, they meet.
#[test]
fn a_replace_takes_the_replaced_route_from_the_mirrors_news() {
    let replace = hex("3c00000018000505dda0096b0000000002180000fe03000100000000080001000a280000080005000a0900fe08000600000000000800040003000000");
    let seq = 0x6b09_a0dd;
    let news = |old: Option<MirroredRoute>| News::Replaced {
        netns: 1,
        portid: PORTID,
        seq,
        old: old.map(Box::new),
        new: Box::new(mirrored(40)),
        at_ns: 0,
    };
    // The ack first, then the news.
    let (mut c, _) = scripted();
    c.record(&request(1_000, &replace));
    c.record(&ack(seq, 0));
    assert!(c.take_ready().is_empty(), "waiting for the news");
    c.news(news(Some(mirrored(7))));
    let ready = c.take_ready();
    assert_eq!(ready.len(), 1);
    let ev = &ready[0].event;
    assert_eq!((ev.cause, ev.outcome), (Cause::Replace, Outcome::Removed));
    assert_eq!(
        ev.object.route().unwrap().dst.as_deref(),
        Some("10.77.7.0/24")
    );
    assert_eq!(
        ev.replacement.as_ref().unwrap().dst.as_deref(),
        Some("10.77.40.0/24")
    );
    assert_eq!(ready[0].evidence, Evidence::Ack);
    // The news first (the mirror ran ahead of the ring), then the request and its ack.
    let (mut c, _) = scripted();
    c.news(news(Some(mirrored(8))));
    c.record(&request(1_000, &replace));
    let ready = c.take_ready();
    assert_eq!(ready.len(), 1, "released on the news");
    assert_eq!(
        ready[0].event.object.route().unwrap().dst.as_deref(),
        Some("10.77.8.0/24")
    );
    assert_eq!(ready[0].evidence, Evidence::Notification);
    c.record(&ack(seq, 0));
    c.flush();
    assert!(c.take_ready().is_empty(), "the ack is consumed");
    assert_eq!(c.problems().unmatched_replies, 0);
}

/// An expiry and a namespace's exit come from the mirror alone: no actor, no request.
#[test]
fn expiries_and_exits_are_unasked_removals() {
    let (mut c, _) = scripted();
    c.news(News::Expired {
        netns: 1,
        at_ns: 10,
        route: mirrored(5),
    });
    c.news(News::Exited(Exited {
        netns: 9,
        name: Some("blue".into()),
        routes: vec![mirrored(6)],
        rules: vec![(None, crate::event::Rule::default())],
    }));
    let ready = c.take_ready();
    assert_eq!(ready.len(), 3);
    let causes: Vec<Cause> = ready.iter().map(|o| o.event.cause).collect();
    assert_eq!(causes, [Cause::Expired, Cause::NetnsExit, Cause::NetnsExit]);
    for o in &ready {
        assert!(o.event.actor.is_none() && o.event.request.is_none());
        assert_eq!(o.event.capture, Capture::Netlink);
    }
    assert_eq!(ready[1].event.netns.name.as_deref(), Some("blue"));
    assert_eq!(ready[0].evidence, Evidence::Notification);
    assert_eq!(ready[1].evidence, Evidence::None);
}

/// Lost records may have carried forgets: the mirror re-dumps.
#[test]
fn a_loss_asks_the_mirror_to_settle() {
    let (mut c, mirror) = scripted();
    c.lost();
    assert_eq!(mirror.asks(), [Ask::Settle]);
}

/// An ack that names a socket the request did not come from is not its.
#[test]
fn acks_are_joined_by_socket_and_sequence_number() {
    let (mut c, _) = scripted();
    c.record(&request(1_000, &delrule(7, 0x5)));
    c.record(&ack_on(SOCK, 7, 0));
    assert!(c.take_ready().is_empty());
    assert_eq!(c.problems().unmatched_replies, 1);
    assert!(matches!(
        crate::decode::record::parse(&ack(7, 0)),
        Ok(Record::Ack(_))
    ));
}

fn hex(text: &str) -> Vec<u8> {
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).unwrap())
        .collect()
}
