//! Kernel-function records, alone and with the requests heard beside them: one event per removal,
//! enriched, never duplicated, and never blaming a process for what the kernel did itself.

use routeguard_common::{context, hook, kind, mark, KernelRecord, RecordHeader, WIRE_VERSION};

use super::tests::{
    ack, bytes_of, delrule, notify, request, request_as, route_body, rule_notification, task,
    PORTID,
};
use super::*;
use crate::{
    event::{Cause, Op},
    mirror::{Ask, Asker, MirroredRoute},
};

fn kernel(hook_id: u16, mark_id: u16, ctx: u16) -> KernelRecord {
    // SAFETY: KernelRecord is a repr(C) wire type of integers and byte arrays: all-zero is valid.
    let mut rec: KernelRecord = unsafe { std::mem::zeroed() };
    rec.header = RecordHeader {
        kind: kind::KERNEL,
        version: WIRE_VERSION,
        len: size_of::<KernelRecord>() as u32,
    };
    rec.ts_ns = 5;
    rec.task = task();
    rec.netns_ino = 1;
    rec.hook = hook_id;
    rec.mark = mark_id;
    rec.context = ctx;
    rec
}

fn route4(dst: [u8; 4], len: u8, table: u32, mark_id: u16, ctx: u16) -> Vec<u8> {
    let mut rec = kernel(hook::ROUTE4, mark_id, ctx);
    rec.family = 2;
    rec.dst[..4].copy_from_slice(&dst);
    rec.dst_len = len;
    rec.table = table;
    rec.priority = 7;
    rec.gw_family = 2;
    rec.gateway[..4].copy_from_slice(&[10, 99, 0, 2]);
    rec.dev[..2].copy_from_slice(b"d0");
    rec.oif = 3;
    rec.protocol = 4;
    rec.route_type = 1;
    bytes_of(&rec)
}

#[test]
fn a_rule_delete_is_one_kernel_event_with_the_request() {
    let mut c = KernelFunctionCorrelator::new(Clock::new(), None);
    let msg = delrule(42, 0x5);
    c.record(&request(1, &msg));
    let mut rec = kernel(hook::RULE, mark::NONE, context::HAS_NLH | context::HAS_RET);
    rec.family = 2;
    rec.msg_type = 33;
    rec.nlmsg_flags = 0x5;
    rec.seq = 42;
    rec.msg[..msg.len()].copy_from_slice(&msg);
    rec.msg_len = msg.len() as u32;
    c.record(&bytes_of(&rec));
    c.record(&ack(42, 0));
    c.flush();
    let events = Observed::events(c.take_ready());
    assert_eq!(
        events.len(),
        1,
        "the request is not shown twice: {events:#?}"
    );
    let ev = &events[0];
    assert_eq!(ev.capture, Capture::KernelFunction);
    assert_eq!(ev.cause, Cause::Request);
    assert_eq!(ev.outcome, Outcome::Removed);
    assert_eq!(ev.object.rule().unwrap().priority, Some(100));
    let req = ev.request.as_ref().unwrap();
    assert_eq!(
        (&req.syscall, &req.op, req.seq),
        (&Syscall::Sendmsg, &Op::RtmDelRule, Some(42))
    );
    assert_eq!(ev.actor.as_ref().unwrap().comm, "ip");
}

/// The request hooks leave a message of one removal request to the kernel functions: no
/// request record comes, and the kernel's record names the syscall that carried it.
#[test]
fn a_delete_left_to_the_kernel_functions_has_its_request_and_syscall() {
    let mut c = KernelFunctionCorrelator::new(Clock::new(), None);
    let mut rec = kernel(hook::ROUTE4, mark::REQUEST, context::HAS_NLH);
    rec.family = 2;
    rec.dst[..4].copy_from_slice(&[10, 77, 1, 0]);
    rec.dst_len = 24;
    rec.table = 77;
    rec.msg_type = 25;
    rec.nlmsg_flags = 0x5;
    rec.seq = 7;
    rec.syscall = routeguard_common::syscall::SENDMSG;
    c.record(&bytes_of(&rec));
    c.flush();
    let events = Observed::events(c.take_ready());
    assert_eq!(events.len(), 1, "{events:#?}");
    let ev = &events[0];
    assert_eq!(
        (ev.capture, ev.cause, ev.outcome),
        (Capture::KernelFunction, Cause::Request, Outcome::Removed)
    );
    let request = ev
        .request
        .as_ref()
        .expect("the kernel's copy of the request");
    assert_eq!(
        (&request.syscall, &request.op, request.seq),
        (&Syscall::Sendmsg, &Op::RtmDelRoute, Some(7))
    );
    assert!(request.ack_requested);
    assert_eq!(ev.actor.as_ref().unwrap().pid, task().pid);
}

#[test]
fn a_request_the_kernel_never_acted_on_is_heard_by_the_request_hooks() {
    let mut c = KernelFunctionCorrelator::new(Clock::new(), None);
    // Sent some other way than the syscalls the hooks name (io_uring): syscall 0.
    c.record(&request_as(
        1,
        &delrule(43, 0x5),
        0,
        request_flags::IN_KERNEL,
    ));
    c.record(&ack(43, -2));
    let events = Observed::events(c.take_ready());
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].capture, Capture::KernelFunction);
    assert_eq!(events[0].outcome, Outcome::Failed);
    let request = events[0].request.as_ref().unwrap();
    assert_eq!(
        (&request.syscall, &request.op),
        (&Syscall::Netlink, &Op::RtmDelRule)
    );
}

#[test]
fn link_down_routes_are_the_kernels_with_the_trigger() {
    let mut c = KernelFunctionCorrelator::new(Clock::new(), None);
    for dst in [[10, 77, 1, 0], [10, 77, 2, 0]] {
        c.record(&route4(dst, 24, 77, mark::LINK_DOWN, 0));
    }
    let events = Observed::events(c.take_ready());
    assert_eq!(events.len(), 2);
    let ev = &events[0];
    assert_eq!(ev.cause, Cause::LinkDown);
    assert_eq!(ev.capture, Capture::KernelFunction);
    assert_eq!(ev.actor.as_ref().unwrap().pid, task().pid);
    let r = ev.object.route().unwrap();
    assert_eq!(r.dst.as_deref(), Some("10.77.1.0/24"));
    assert_eq!(r.gateway.as_deref(), Some("10.99.0.2"));
    assert_eq!((r.table, r.priority, r.oif), (Some(77), Some(7), Some(3)));
    assert_eq!(r.dev.as_deref(), Some("d0"));
    assert_eq!(r.protocol.as_deref(), Some("static"));
}

#[test]
fn kernel_context_removals_have_no_actor() {
    let mut c = KernelFunctionCorrelator::new(Clock::new(), None);
    c.record(&route4([10, 1, 0, 0], 16, 254, mark::NONE, context::GC));
    c.record(&route4(
        [10, 2, 0, 0],
        16,
        254,
        mark::NETNS_EXIT,
        context::KTHREAD,
    ));
    c.record(&route4(
        [10, 3, 0, 0],
        16,
        254,
        mark::LINK_REMOVED,
        context::KTHREAD,
    ));
    let mut v6 = kernel(hook::ROUTE6, mark::NONE, 0);
    v6.family = 10;
    v6.dst_len = 64;
    c.record(&bytes_of(&v6));
    let events = Observed::events(c.take_ready());
    let causes: Vec<_> = events.iter().map(|e| e.cause).collect();
    assert_eq!(
        causes,
        [
            Cause::Expired,
            Cause::NetnsExit,
            Cause::LinkRemoved,
            Cause::Expired
        ]
    );
    assert!(events.iter().all(|e| e.actor.is_none()), "{events:#?}");
}

/// `ip rule del prio 100` names no table. The kernel's notification of the deletion, copied by
/// the socket filter inside fib_nl_delrule before the rule's record is written at its exit,
/// waits for that record, which takes the kernel's view (table 77, and its bytes for restores).
#[test]
fn a_rule_record_takes_the_kernels_view_from_its_notification() {
    let mut c = KernelFunctionCorrelator::new(Clock::new(), None);
    let msg = delrule(42, 0x5);
    c.record(&request(1, &msg));
    c.record(&notify(4, task().tid, &rule_notification(42, PORTID)));
    assert!(c.take_ready().is_empty(), "waiting for the rule's record");
    let mut rec = kernel(hook::RULE, mark::NONE, context::HAS_NLH | context::HAS_RET);
    rec.family = 2;
    rec.msg_type = 33;
    rec.nlmsg_flags = 0x5;
    rec.seq = 42;
    rec.msg[..msg.len()].copy_from_slice(&msg);
    rec.msg_len = msg.len() as u32;
    c.record(&bytes_of(&rec));
    let ready = c.take_ready();
    assert_eq!(ready.len(), 1, "released with the record: {ready:#?}");
    let ev = &ready[0].event;
    let rule = ev.object.rule().unwrap();
    assert_eq!((rule.priority, rule.table), (Some(100), Some(77)));
    assert_eq!(ev.capture, Capture::KernelFunction);
    assert!(ready[0].kernel.is_some());
    assert_eq!(ready[0].evidence, Evidence::KernelFunction);
    c.record(&ack(42, 0));
    c.flush();
    assert!(c.take_ready().is_empty(), "the request is not shown twice");
    assert!(c.is_idle());
}

/// A rule's record lost (the ring was full): its notification still says what went, and who.
#[test]
fn a_rule_notification_whose_record_never_comes_is_an_event_of_its_own() {
    let mut c = KernelFunctionCorrelator::new(Clock::new(), None);
    c.record(&notify(4, task().tid, &rule_notification(43, PORTID)));
    c.flush();
    let events = Observed::events(c.take_ready());
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].actor.as_ref().unwrap().pid, task().pid);
    assert_eq!(events[0].object.rule().unwrap().table, Some(77));
}

/// The listener hears no route deletions on this path: each route record tells the mirror to
/// let go of its route.
#[test]
fn route_records_tell_the_mirror_what_to_forget() {
    let (asker, mirror) = Asker::scripted();
    let mut c = KernelFunctionCorrelator::new(Clock::new(), Some(asker));
    c.record(&route4(
        [10, 77, 1, 0],
        24,
        77,
        mark::NONE,
        context::KTHREAD,
    ));
    let events = Observed::events(c.take_ready());
    assert_eq!(events.len(), 1);
    let asks = mirror.asks();
    let [Ask::Forget(forgets)] = asks.as_slice() else {
        panic!("{asks:?}");
    };
    let key = events[0].key();
    assert_eq!(crate::event::ObjectKey::Route(forgets[0].key), key);
    assert_eq!((forgets[0].netns, forgets[0].at_ns), (1, 5));
    // The same route as a notification describes it is the same key.
    let mut body = route_body(1);
    body[5] = 4; // protocol static, as the record has it
    let heard = MirroredRoute::decode(&body).unwrap();
    assert_eq!(heard.route.dst.as_deref(), Some("10.77.1.0/24"));
}
