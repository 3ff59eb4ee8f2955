use routeguard_common::{kind, RecordHeader, TaskInfo, PAYLOAD_OFFSET, WIRE_VERSION};

use super::*;
use crate::event::{Cause, Kind};

const SOCK: u64 = 0xffff_8880_1234_5678;

pub(super) fn bytes_of<T: Copy>(v: &T) -> Vec<u8> {
    // SAFETY: T is a repr(C) wire type; viewing its bytes is always valid.
    unsafe { std::slice::from_raw_parts((v as *const T).cast::<u8>(), size_of::<T>()) }.to_vec()
}

/// `ip rule del prio 100` as iproute2 sends it: nlmsghdr, fib_rule_hdr, FRA_PRIORITY.
pub(super) fn delrule(seq: u32, flags: u16) -> Vec<u8> {
    let mut m = Vec::new();
    m.extend_from_slice(&36u32.to_ne_bytes());
    m.extend_from_slice(&33u16.to_ne_bytes()); // RTM_DELRULE
    m.extend_from_slice(&flags.to_ne_bytes());
    m.extend_from_slice(&seq.to_ne_bytes());
    m.extend_from_slice(&0u32.to_ne_bytes());
    m.extend_from_slice(&[2, 0, 0, 0, 0, 0, 0, 0]); // family AF_INET, lens, tos, table, res
    m.extend_from_slice(&0u32.to_ne_bytes()); // flags
    m.extend_from_slice(&8u16.to_ne_bytes());
    m.extend_from_slice(&6u16.to_ne_bytes()); // FRA_PRIORITY
    m.extend_from_slice(&100u32.to_ne_bytes());
    m
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

/// The port id of the test sender's socket.
pub(super) const PORTID: u32 = 4242;

pub(super) fn request(ts_ns: u64, payload: &[u8]) -> Vec<u8> {
    request_as(ts_ns, payload, syscall::SENDMSG, 0)
}

/// A request record with its syscall and flags.
pub(super) fn request_as(ts_ns: u64, payload: &[u8], via: u16, flags: u16) -> Vec<u8> {
    let head = RequestHead {
        header: RecordHeader {
            kind: kind::REQUEST,
            version: WIRE_VERSION,
            len: (PAYLOAD_OFFSET + payload.len()) as u32,
        },
        ts_ns,
        sock: SOCK,
        task: task(),
        netns_ino: 1,
        syscall: via,
        sock_family: 16,
        sock_protocol: 0,
        flags,
        payload_len: payload.len() as u32,
        portid: PORTID,
        _pad: 0,
    };
    let mut bytes = bytes_of(&head);
    bytes.extend_from_slice(payload);
    bytes
}

pub(super) fn ack(seq: u32, error: i32) -> Vec<u8> {
    bytes_of(&AckRecord {
        header: RecordHeader {
            kind: kind::ACK,
            version: WIRE_VERSION,
            len: 48,
        },
        ts_ns: 2,
        sock: SOCK,
        pid: 1,
        tid: 1,
        seq,
        error,
        msg_type: 33,
        _pad: [0; 6],
    })
}

#[test]
fn a_request_waits_for_its_ack_and_takes_its_outcome() {
    let mut c = Correlator::new(Clock::with_offset(0));
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
        (&req.syscall, &req.op, req.seq, req.ack_requested),
        (&Syscall::Sendmsg, &Op::RtmDelRule, Some(7), true)
    );
    assert_eq!(c.problems().unmatched_replies, 1);
}

#[test]
fn a_batch_yields_one_event_per_message_and_unanswered_ones_expire_as_unknown() {
    let mut c = Correlator::new(Clock::with_offset(0));
    let mut batch = delrule(1, 0x1);
    batch.extend(delrule(2, 0x1));
    c.record(&request(1_000, &batch));
    c.record(&ack(2, 0));
    let first = Observed::events(c.take_ready());
    assert_eq!(first.len(), 1);
    assert_eq!(first[0].outcome, Outcome::Removed);
    c.expire(1_000 + REPLY_WAIT_NS - 1);
    assert!(Observed::events(c.take_ready()).is_empty());
    c.expire(1_000 + REPLY_WAIT_NS);
    let rest = Observed::events(c.take_ready());
    assert_eq!(rest.len(), 1);
    assert_eq!(rest[0].outcome, Outcome::Unknown);
    assert!(!rest[0].request.as_ref().unwrap().ack_requested);
}

#[test]
fn malformed_records_are_counted_not_fatal() {
    let mut c = Correlator::new(Clock::with_offset(0));
    c.record(&[0xff; 4]);
    c.record(&request(5, &[1, 2, 3]));
    assert_eq!(c.problems().bad_records, 1);
    assert_eq!(c.problems().undecodable, 1);
    assert!(Observed::events(c.take_ready()).is_empty());
}
