//! Record fixtures for both correlators' tests, and the requests-and-acks basics.

use routeguard_common::{
    kind, syscall, AckRecord, NotifyRecord, RecordHeader, RequestHead, TaskInfo, TaskRecord,
    NOTIFY_MSG_OFFSET, PAYLOAD_OFFSET, WIRE_VERSION,
};

use super::*;
use crate::event::{Cause, Kind, Op};

pub(super) const SOCK: u64 = 0xffff_8880_1234_5678;

pub(super) fn bytes_of<T: Copy>(v: &T) -> Vec<u8> {
    // SAFETY: T is a repr(C) wire type; viewing its bytes is always valid.
    unsafe { std::slice::from_raw_parts((v as *const T).cast::<u8>(), size_of::<T>()) }.to_vec()
}

/// A netlink header: length, type, flags, sequence number, port id.
fn nlmsghdr(msg_type: u16, flags: u16, seq: u32, port: u32, body: &[u8]) -> Vec<u8> {
    let mut m = Vec::new();
    m.extend_from_slice(&(16 + body.len() as u32).to_ne_bytes());
    m.extend_from_slice(&msg_type.to_ne_bytes());
    m.extend_from_slice(&flags.to_ne_bytes());
    m.extend_from_slice(&seq.to_ne_bytes());
    m.extend_from_slice(&port.to_ne_bytes());
    m.extend_from_slice(body);
    m
}

fn attr(out: &mut Vec<u8>, kind: u16, value: &[u8]) {
    out.extend_from_slice(&(4 + value.len() as u16).to_ne_bytes());
    out.extend_from_slice(&kind.to_ne_bytes());
    out.extend_from_slice(value);
}

/// `ip rule del prio 100` as iproute2 sends it: nlmsghdr, fib_rule_hdr, FRA_PRIORITY.
pub(super) fn delrule(seq: u32, flags: u16) -> Vec<u8> {
    let mut body = vec![2, 0, 0, 0, 0, 0, 0, 0]; // family AF_INET, lens, tos, table, res
    body.extend_from_slice(&0u32.to_ne_bytes()); // flags
    attr(&mut body, 6, &100u32.to_ne_bytes()); // FRA_PRIORITY
    nlmsghdr(33, flags, seq, 0, &body)
}

/// The kernel's RTM_DELRULE for `prio 100 lookup 77`, answering the request `seq` of `port`.
pub(super) fn rule_notification(seq: u32, port: u32) -> Vec<u8> {
    // family AF_INET, lens, tos, table 77, res, action FR_ACT_TO_TBL
    let mut body = vec![2, 0, 0, 0, 77, 0, 0, 1];
    body.extend_from_slice(&0u32.to_ne_bytes());
    attr(&mut body, 15, &77u32.to_ne_bytes()); // FRA_TABLE
    attr(&mut body, 6, &100u32.to_ne_bytes()); // FRA_PRIORITY
    nlmsghdr(33, 0, seq, port, &body)
}

/// The body of the kernel's description of `10.77.N.0/24 via 10.99.0.2 dev #3 table 77`.
pub(super) fn route_body(n: u8) -> Vec<u8> {
    // family AF_INET, /24, src 0, tos 0, table 77, protocol boot, scope universe, unicast
    let mut body = vec![2, 24, 0, 0, 77, 3, 0, 1];
    body.extend_from_slice(&0u32.to_ne_bytes());
    attr(&mut body, 15, &77u32.to_ne_bytes()); // RTA_TABLE
    attr(&mut body, 1, &[10, 77, n, 0]); // RTA_DST
    attr(&mut body, 5, &[10, 99, 0, 2]); // RTA_GATEWAY
    attr(&mut body, 4, &3u32.to_ne_bytes()); // RTA_OIF
    body
}

/// The kernel's RTM_DELROUTE for route `n` (see [`route_body`]).
pub(super) fn route_notification(n: u8, seq: u32, port: u32) -> Vec<u8> {
    nlmsghdr(25, 0, seq, port, &route_body(n))
}

/// A delete of `10.77.N.0/24 table 77` as `ip route flush` sends it: no NLM_F_ACK, no gateway.
pub(super) fn delroute(n: u8, seq: u32, flags: u16) -> Vec<u8> {
    let mut body = vec![2, 24, 0, 0, 77, 0, 255, 0];
    body.extend_from_slice(&0u32.to_ne_bytes());
    attr(&mut body, 1, &[10, 77, n, 0]);
    nlmsghdr(25, flags, seq, 0, &body)
}

/// The sender of every request in these tests.
pub(super) fn task() -> TaskInfo {
    TaskInfo {
        pid: u32::MAX - 1,
        tid: u32::MAX - 1,
        uid: 0,
        gid: 0,
        start_time: 0,
        cgroup_id: 0,
        comm: *b"ip\0\0\0\0\0\0\0\0\0\0\0\0\0\0",
    }
}

/// The details the kernel sends for the test sender, run as `argv`.
pub(super) fn task_record(argv: &str) -> Vec<u8> {
    // SAFETY: TaskRecord is a repr(C) wire type of integers and byte arrays: all-zero is valid.
    let mut rec: TaskRecord = unsafe { std::mem::zeroed() };
    rec.header = RecordHeader {
        kind: kind::TASK,
        version: WIRE_VERSION,
        len: size_of::<TaskRecord>() as u32,
    };
    rec.task = task();
    let args: Vec<u8> = argv
        .split(' ')
        .flat_map(|a| [a.as_bytes(), b"\0"].concat())
        .collect();
    rec.args[..args.len()].copy_from_slice(&args);
    rec.args_len = args.len() as u32;
    bytes_of(&rec)
}

/// The port id of the test sender's socket.
pub(super) const PORTID: u32 = 4242;

pub(super) fn request(ts_ns: u64, payload: &[u8]) -> Vec<u8> {
    request_as(ts_ns, payload, syscall::SENDMSG, 0)
}

/// A request record with its syscall and flags.
pub(super) fn request_as(ts_ns: u64, payload: &[u8], via: u16, flags: u16) -> Vec<u8> {
    request_from(ts_ns, payload, via, flags, task(), PORTID)
}

/// A request record of thread `task`, whose socket has port id `portid`.
pub(super) fn request_from(
    ts_ns: u64,
    payload: &[u8],
    via: u16,
    flags: u16,
    task: TaskInfo,
    portid: u32,
) -> Vec<u8> {
    let head = RequestHead {
        header: RecordHeader {
            kind: kind::REQUEST,
            version: WIRE_VERSION,
            len: (PAYLOAD_OFFSET + payload.len()) as u32,
        },
        ts_ns,
        sock: SOCK + u64::from(portid),
        task,
        netns_ino: 1,
        syscall: via,
        sock_family: 16,
        sock_protocol: 0,
        flags,
        payload_len: payload.len() as u32,
        portid,
        _pad: 0,
    };
    let mut bytes = bytes_of(&head);
    bytes.extend_from_slice(payload);
    bytes
}

pub(super) fn ack(seq: u32, error: i32) -> Vec<u8> {
    ack_on(SOCK + u64::from(PORTID), seq, error)
}

pub(super) fn ack_on(sock: u64, seq: u32, error: i32) -> Vec<u8> {
    bytes_of(&AckRecord {
        header: RecordHeader {
            kind: kind::ACK,
            version: WIRE_VERSION,
            len: 48,
        },
        ts_ns: 2,
        sock,
        pid: 1,
        tid: 1,
        seq,
        error,
        msg_type: 33,
        _pad: [0; 6],
    })
}

/// The socket filter's copy of notification `msg`, made in thread `tid` of the test sender.
pub(super) fn notify(ts_ns: u64, tid: u32, msg: &[u8]) -> Vec<u8> {
    // SAFETY: NotifyRecord is a repr(C) wire type of integers and byte arrays: all-zero is valid.
    let mut rec: NotifyRecord = unsafe { std::mem::zeroed() };
    let len = NOTIFY_MSG_OFFSET + msg.len();
    rec.header = RecordHeader {
        kind: kind::NOTIFY,
        version: WIRE_VERSION,
        len: len as u32,
    };
    rec.ts_ns = ts_ns;
    rec.pid = task().pid;
    rec.tid = tid;
    rec.netns_ino = 1;
    rec.msg_len = msg.len() as u32;
    rec.full_len = msg.len() as u32;
    rec.msg[..msg.len()].copy_from_slice(msg);
    bytes_of(&rec)[..len].to_vec()
}

#[test]
fn a_request_waits_for_its_ack_and_takes_its_outcome() {
    let mut c = SyscallCorrelator::new(Clock::with_offset(0), None);
    c.record(&request(1_000, &delrule(7, 0x5)));
    assert!(
        Observed::events(c.take_ready()).is_empty(),
        "no outcome yet"
    );
    c.record(&ack(8, 0));
    assert!(
        Observed::events(c.take_ready()).is_empty(),
        "another sequence number"
    );
    c.record(&ack(7, -2));
    let events = Observed::events(c.take_ready());
    assert_eq!(events.len(), 1);
    let ev = &events[0];
    assert_eq!(
        (ev.kind(), ev.cause, ev.outcome),
        (Kind::Rule, Cause::Request, Outcome::Failed)
    );
    assert_eq!((ev.errno, ev.error.as_deref()), (Some(2), Some("ENOENT")));
    assert_eq!(ev.object.rule().and_then(|r| r.priority), Some(100));
    assert_eq!(ev.actor.as_ref().map(|a| a.comm.as_str()), Some("ip"));
    let req = ev.request.as_ref().unwrap();
    assert_eq!(
        (
            &req.syscall,
            &req.op,
            req.seq,
            req.ack_requested,
            req.port_id
        ),
        (
            &Syscall::Sendmsg,
            &Op::RtmDelRule,
            Some(7),
            true,
            Some(PORTID)
        )
    );
    assert_eq!(c.problems().unmatched_replies, 1);
    assert_eq!(
        (c.outcomes().failed, c.outcomes().removed()),
        (1, 0),
        "{}",
        c.outcomes()
    );
}

#[test]
fn a_batch_yields_one_event_per_message_and_unanswered_ones_expire_as_unknown() {
    let mut c = SyscallCorrelator::new(Clock::with_offset(0), None);
    let mut batch = delrule(1, 0x1);
    batch.extend(delrule(2, 0x1));
    c.record(&request(1_000, &batch));
    c.record(&ack(2, 0));
    let first = c.take_ready();
    assert_eq!(first.len(), 1);
    assert_eq!(first[0].event.outcome, Outcome::Removed);
    assert_eq!(first[0].evidence, Evidence::Ack);
    c.expire(1_000 + REPLY_WAIT_NS - 1, true);
    assert!(Observed::events(c.take_ready()).is_empty());
    c.expire(1_000 + REPLY_WAIT_NS, true);
    let rest = Observed::events(c.take_ready());
    assert_eq!(rest.len(), 1);
    assert_eq!(rest[0].outcome, Outcome::Unknown);
    assert!(!rest[0].request.as_ref().unwrap().ack_requested);
    assert_eq!(c.outcomes().to_string(), "removed 1 (ack 1, notification 0, kernel-function 0, ioctl 0, re-dump 0, none 0), failed 0, unknown 1");
}

/// Behind a backlog, a request's wait is counted in ring time: its answer is queued behind it.
#[test]
fn a_backlog_does_not_expire_a_request_whose_answer_is_still_queued() {
    let mut c = SyscallCorrelator::new(Clock::with_offset(0), None);
    c.record(&request(1_000, &delrule(3, 0x5)));
    // Seconds later by the wall clock, but nothing newer has been read from the ring.
    c.expire(1_000 + 10 * REPLY_WAIT_NS, false);
    assert!(c.take_ready().is_empty());
    c.record(&ack(3, 0));
    let events = Observed::events(c.take_ready());
    assert_eq!(events[0].outcome, Outcome::Removed);
}

#[test]
fn malformed_records_are_counted_not_fatal() {
    let mut c = SyscallCorrelator::new(Clock::with_offset(0), None);
    c.record(&[0xff; 4]);
    c.record(&request(5, &[1, 2, 3]));
    assert_eq!(c.problems().bad_records, 1);
    assert_eq!(c.problems().undecodable, 1);
    assert!(Observed::events(c.take_ready()).is_empty());
}
