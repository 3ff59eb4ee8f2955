//! Joins each captured request with the kernel's reply and turns it into an [`Event`].
//!
//! A request is held until its NLMSG_ERROR reply (netlink, keyed by socket and sequence
//! number) or its return value (ioctl, keyed by thread) arrives, then released with its outcome.
//! A request whose reply never shows up is released as `unknown` after [`REPLY_WAIT_NS`].

mod clock;

use std::collections::{hash_map::Entry, HashMap, VecDeque};

use routeguard_common::{syscall, AckRecord, IoctlPayload, IoctlResultRecord, RequestHead};

pub use clock::Clock;

use crate::{
    attribution::{NetnsNames, ProcessTable},
    decode::{self, record::Record, Decoded, Object},
    event::{self, Capture, Event, Outcome, Request, SCHEMA_VERSION},
};

/// How long a request waits for the kernel's reply before it is shown as `unknown`. Senders read
/// their ack within microseconds; this only bounds requests nobody reads a reply for.
pub const REPLY_WAIT_NS: u64 = 500_000_000;
const NLM_F_ACK: u16 = 0x4;

struct Waiting {
    event: Event,
    since_ns: u64,
}

/// Counts of what could not be turned into events (shown in the summary, never silent).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Problems {
    /// Records with a bad header (kind, version, length).
    pub bad_records: u64,
    /// Netlink messages or ioctls whose bytes could not be decoded.
    pub undecodable: u64,
    /// Replies that matched no waiting request.
    pub unmatched_replies: u64,
}

pub struct Correlator {
    clock: Clock,
    processes: ProcessTable,
    netns: NetnsNames,
    /// (socket, sequence) → requests awaiting that reply, oldest first.
    netlink: HashMap<(u64, u32), VecDeque<Waiting>>,
    /// thread id → ioctl awaiting its return.
    ioctl: HashMap<u32, Vec<Waiting>>,
    ready: Vec<Event>,
    problems: Problems,
}

impl Correlator {
    pub fn new(clock: Clock) -> Self {
        Self {
            clock,
            processes: ProcessTable::new(),
            netns: NetnsNames::new(),
            netlink: HashMap::new(),
            ioctl: HashMap::new(),
            ready: Vec::new(),
            problems: Problems::default(),
        }
    }

    pub fn problems(&self) -> Problems {
        self.problems
    }

    /// Feeds one ring-buffer record.
    pub fn record(&mut self, bytes: &[u8]) {
        match decode::record::parse(bytes) {
            Ok(Record::Task(task)) => self.processes.insert(&task),
            Ok(Record::Request { head, payload }) => self.request(&head, payload),
            Ok(Record::Ack(ack)) => self.ack(&ack),
            Ok(Record::IoctlResult(res)) => self.ioctl_result(&res),
            Err(err) => {
                self.problems.bad_records += 1;
                tracing::warn!(%err, "dropping a malformed record from the kernel");
            }
        }
    }

    /// Releases requests that waited longer than [`REPLY_WAIT_NS`] as `unknown`.
    pub fn expire(&mut self, now_ns: u64) {
        let old = |w: &Waiting| now_ns.saturating_sub(w.since_ns) >= REPLY_WAIT_NS;
        let ready = &mut self.ready;
        self.netlink.retain(|_, queue| {
            while queue.front().is_some_and(old) {
                ready.extend(queue.pop_front().map(|w| w.event));
            }
            !queue.is_empty()
        });
        self.ioctl.retain(|_, list| {
            let (gone, keep): (Vec<_>, Vec<_>) = list.drain(..).partition(old);
            ready.extend(gone.into_iter().map(|w| w.event));
            *list = keep;
            !list.is_empty()
        });
    }

    /// Releases everything still waiting (at exit).
    pub fn flush(&mut self) {
        self.expire(u64::MAX);
    }

    /// Events whose outcome is known (or given up on), in the order they completed.
    pub fn take_ready(&mut self) -> Vec<Event> {
        let mut ready = std::mem::take(&mut self.ready);
        ready.sort_by_key(|e| e.ts);
        ready
    }

    fn request(&mut self, head: &RequestHead, payload: &[u8]) {
        if head.syscall == syscall::IOCTL {
            self.ioctl_request(head, payload);
            return;
        }
        let decoded = decode::decode_netlink(payload);
        for item in decoded {
            match item {
                Ok(d) => self.netlink_request(head, d),
                Err(err) => {
                    self.problems.undecodable += 1;
                    tracing::debug!(%err, pid = head.task.pid, "undecodable netlink message");
                }
            }
        }
    }

    fn netlink_request(&mut self, head: &RequestHead, d: Decoded) {
        let (Some(removal), Some(hdr)) = (d.removal.clone(), d.header) else {
            return;
        };
        let request = Request {
            syscall: syscall_name(head.syscall).to_string(),
            op: d.op.to_string(),
            seq: Some(hdr.seq),
            nlmsg_flags: Some(hdr.flags),
            ack_requested: hdr.flags & NLM_F_ACK != 0,
        };
        let event = self.event(head, removal, request);
        self.netlink
            .entry((head.sock, hdr.seq))
            .or_default()
            .push_back(Waiting {
                event,
                since_ns: head.ts_ns,
            });
    }

    fn ioctl_request(&mut self, head: &RequestHead, payload: &[u8]) {
        if payload.len() < size_of::<IoctlPayload>() {
            self.problems.undecodable += 1;
            return;
        }
        // SAFETY: length checked above; IoctlPayload is a repr(C) wire type valid for any bits.
        let p: IoctlPayload = unsafe { std::ptr::read_unaligned(payload.as_ptr().cast()) };
        match decode::decode_ioctl(head.sock_family, &p) {
            Ok(Decoded {
                removal: Some(removal),
                op,
                ..
            }) => {
                let request = Request {
                    syscall: "ioctl".into(),
                    op: op.to_string(),
                    seq: None,
                    nlmsg_flags: None,
                    ack_requested: true,
                };
                let event = self.event(head, removal, request);
                self.ioctl.entry(head.task.tid).or_default().push(Waiting {
                    event,
                    since_ns: head.ts_ns,
                });
            }
            Ok(_) => {}
            Err(err) => {
                self.problems.undecodable += 1;
                tracing::debug!(%err, pid = head.task.pid, "undecodable ioctl");
            }
        }
    }

    fn event(&mut self, head: &RequestHead, removal: decode::Removal, request: Request) -> Event {
        let mut ev = Event {
            schema_version: SCHEMA_VERSION,
            ts: self.clock.wall(head.ts_ns),
            kind: removal.kind,
            family: removal.family,
            cause: removal.cause,
            outcome: Outcome::Unknown,
            errno: None,
            error: None,
            capture: Capture::Syscall,
            netns: self.netns.lookup(head.netns_ino),
            actor: Some(self.processes.actor(&head.task)),
            request: Some(request),
            route: None,
            rule: None,
            nexthop: None,
            link: None,
            address: None,
        };
        match removal.object {
            Object::Route(r) => ev.route = Some(r),
            Object::Rule(r) => ev.rule = Some(r),
            Object::Nexthop(n) => ev.nexthop = Some(n),
            Object::Link(l) => ev.link = Some(l),
            Object::Address(a) => ev.address = Some(a),
        }
        ev
    }

    fn ack(&mut self, ack: &AckRecord) {
        let Entry::Occupied(mut slot) = self.netlink.entry((ack.sock, ack.seq)) else {
            // A peeked reply read again, or a reply to a request captured before we started.
            self.problems.unmatched_replies += 1;
            return;
        };
        let Some(waiting) = slot.get_mut().pop_front() else {
            return;
        };
        if slot.get().is_empty() {
            slot.remove();
        }
        self.ready.push(with_result(waiting.event, ack.error));
    }

    fn ioctl_result(&mut self, res: &IoctlResultRecord) {
        let Some(list) = self.ioctl.get_mut(&res.tid) else {
            self.problems.unmatched_replies += 1;
            return;
        };
        let waiting = list.remove(0);
        if list.is_empty() {
            self.ioctl.remove(&res.tid);
        }
        let ret = i32::try_from(res.ret).unwrap_or(i32::MIN);
        self.ready.push(with_result(waiting.event, ret));
    }
}

/// Sets the outcome from a kernel return value (0, or a negative errno).
fn with_result(mut ev: Event, ret: i32) -> Event {
    if ret == 0 {
        ev.outcome = Outcome::Removed;
    } else {
        let errno = ret.checked_neg().unwrap_or(i32::MAX);
        ev.outcome = Outcome::Failed;
        ev.errno = Some(errno);
        ev.error = event::errno::name(errno).map(str::to_string);
    }
    ev
}

fn syscall_name(id: u16) -> &'static str {
    match id {
        syscall::SENDMSG => "sendmsg",
        syscall::SENDTO => "sendto",
        syscall::SENDMMSG => "sendmmsg",
        syscall::WRITE => "write",
        syscall::IOCTL => "ioctl",
        _ => "unknown",
    }
}

#[cfg(test)]
mod tests;
