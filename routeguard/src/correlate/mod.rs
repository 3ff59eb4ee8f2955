//! Joins each captured request with the kernel's reply and turns it into an [`Event`].
//!
//! A request is held until its NLMSG_ERROR reply (netlink, keyed by socket and sequence
//! number) or its return value (ioctl, keyed by thread) arrives, then released with its outcome.
//! A request whose reply never shows up is released as `unknown` after [`REPLY_WAIT_NS`].

mod flush;
mod kernel;
mod unasked;

use std::collections::{hash_map::Entry, HashMap, VecDeque};

use routeguard_common::{
    request_flags, syscall, AckRecord, IoctlPayload, IoctlResultRecord, RequestHead,
};

use crate::clock::Clock;

use crate::{
    attribution::{NetnsNames, ProcessTable},
    decode::{self, record::Record, Decoded},
    event::{
        self, Capture, Cause, Event, KernelBody, Kind, Object, Observed, Op, Outcome, Request,
        Syscall, Trigger,
    },
    mirror::{Mirror, Removed},
};

/// How long a request waits for the kernel's reply before it is shown as `unknown`. Senders read
/// their ack within microseconds; this only bounds requests nobody reads a reply for.
pub const REPLY_WAIT_NS: u64 = 500_000_000;
/// How long a successful delete waits for the kernel's notification of what it removed. The
/// kernel queues it before the ack, so only the mirror's own thread can make it late.
pub const VIEW_WAIT_NS: u64 = 50_000_000;
/// The same wait when restores depend on the kernel's view (an object known only from its
/// request is never re-added): a starved mirror thread on a loaded host must not cost a restore.
pub const EAGER_VIEW_WAIT_NS: u64 = 1_000_000_000;
const NLM_F_ACK: u16 = 0x4;

struct Waiting {
    event: Event,
    /// The kernel's description of the object, once its view was joined.
    kernel: Option<KernelBody>,
    since_ns: u64,
    /// A kernel-function event already stands for this request: it is not shown itself.
    superseded: bool,
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
    /// Netlink requests in arrival order (time, key), so expiry looks only at the oldest: a
    /// flush of a million routes without acks must not make every tick scan a million entries.
    arrivals: VecDeque<(u64, (u64, u32))>,
    /// thread id → ioctl awaiting its return.
    ioctl: HashMap<u32, Vec<Waiting>>,
    ready: Vec<Observed>,
    problems: Problems,
    /// Route state of every namespace, to find what a link-down or address removal flushed.
    mirror: Option<Mirror>,
    /// Successful deletes waiting for the kernel's view, with when they completed (ns), oldest
    /// first; released in order.
    joining: VecDeque<(u64, Waiting)>,
    /// Release a delete as soon as the kernel announces its removal, before the sender reads
    /// its ack (a restore must not wait for a busy daemon to get round to its acks).
    eager: bool,
    /// Requests released on the kernel's announcement, by (socket, seq), with when (ns): their
    /// ack, when it comes, is expected and consumed.
    released_early: HashMap<(u64, u32), u64>,
    /// Kernel-function capture: thread id → keys of its waiting netlink requests, newest last,
    /// to enrich kernel events with the request that caused them.
    by_tid: HashMap<u32, VecDeque<(u64, u32)>>,
    kernel_function: bool,
}

/// Eager release scans the requests waiting for acks; beyond this many (a burst) it leaves them
/// to their acks rather than scan a burst on every notification.
const EAGER_MAX_WAITING: usize = 256;

impl Correlator {
    /// A correlator that also reports the routes the kernel flushes silently, from `mirror`.
    pub fn with_mirror(clock: Clock, mirror: Mirror) -> Self {
        Self {
            mirror: Some(mirror),
            ..Self::new(clock)
        }
    }

    /// A correlator for the kernel-function path: kernel records are the events; captured
    /// requests enrich them (and are shown on their own only when the kernel never acted on
    /// them). The mirror ([`Mirror::for_kernel_records`]) only adds the kernel's netlink
    /// description of a removed rule (its table and selectors) and of the route a replace
    /// took away; it never expands flushes, which the kernel reports itself.
    pub fn kernel_function(clock: Clock, mirror: Option<Mirror>) -> Self {
        Self {
            kernel_function: true,
            mirror,
            ..Self::new(clock)
        }
    }

    pub fn new(clock: Clock) -> Self {
        Self {
            by_tid: HashMap::new(),
            kernel_function: false,
            mirror: None,
            joining: VecDeque::new(),
            eager: false,
            released_early: HashMap::new(),
            arrivals: VecDeque::new(),
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

    pub fn clock(&self) -> Clock {
        self.clock
    }

    /// `wake` is called whenever the mirror hears a deletion (see [`Mirror::wake_on_deletion`]).
    pub fn wake_on_deletion(&self, wake: impl Fn() + Send + Sync + 'static) {
        if let Some(mirror) = &self.mirror {
            mirror.wake_on_deletion(wake);
        }
    }

    /// Feeds one ring-buffer record.
    pub fn record(&mut self, bytes: &[u8]) {
        match decode::record::parse(bytes) {
            Ok(Record::Task(task)) => self.processes.insert(&task),
            Ok(Record::Request { head, payload }) => self.request(&head, payload),
            Ok(Record::Ack(ack)) => self.ack(&ack),
            Ok(Record::IoctlResult(res)) => self.ioctl_result(&res),
            Ok(Record::Kernel(rec)) => self.kernel(&rec),
            // The socket filter that makes them is not attached yet.
            Ok(Record::Notify(_)) => {}
            Err(err) => {
                self.problems.bad_records += 1;
                tracing::warn!(%err, "dropping a malformed record from the kernel");
            }
        }
    }

    /// Releases requests that waited longer than [`REPLY_WAIT_NS`] as `unknown`.
    pub fn expire(&mut self, now_ns: u64) {
        let old = |since: u64| now_ns.saturating_sub(since) >= REPLY_WAIT_NS;
        let mut expired = Vec::new();
        while let Some(&(since, key)) = self.arrivals.front() {
            if !old(since) {
                break;
            }
            self.arrivals.pop_front();
            // Still waiting only if its reply never came: then it is the oldest under its key.
            if let Entry::Occupied(mut slot) = self.netlink.entry(key) {
                if slot.get().front().is_some_and(|w| w.since_ns == since) {
                    expired.extend(slot.get_mut().pop_front());
                }
                if slot.get().is_empty() {
                    slot.remove();
                }
            }
        }
        self.ioctl.retain(|_, list| {
            let (gone, keep): (Vec<_>, Vec<_>) = list.drain(..).partition(|w| old(w.since_ns));
            expired.extend(gone);
            *list = keep;
            !list.is_empty()
        });
        for waiting in expired {
            self.complete(waiting);
        }
        self.release_joined(now_ns);
        self.released_early
            .retain(|_, at| now_ns.saturating_sub(*at) < REPLY_WAIT_NS);
        self.unasked();
    }

    /// Releases the successful deletes whose kernel view has now arrived (called when the
    /// mirror hears one, so they need not wait for the next tick). With [`Self::set_eager`],
    /// also deletes still waiting for their ack whose removal the kernel announced.
    pub fn release_viewed(&mut self) {
        let now = Clock::monotonic_ns();
        self.release_joined(now);
        if !self.eager || self.netlink.len() > EAGER_MAX_WAITING {
            return;
        }
        let keys: Vec<(u64, u32)> = self.netlink.keys().copied().collect();
        for key in keys {
            let Entry::Occupied(mut slot) = self.netlink.entry(key) else {
                continue;
            };
            let Some(mut waiting) = slot.get_mut().pop_front() else {
                continue;
            };
            // The kernel's notification of the removal echoes the request's sequence number:
            // it proves the delete succeeded, whatever the sender does with its ack.
            if self.viewable(&waiting.event) && self.kernel_view(&mut waiting) {
                if let Entry::Occupied(slot) = self.netlink.entry(key) {
                    if slot.get().is_empty() {
                        slot.remove();
                    }
                }
                waiting.event.outcome = Outcome::Removed;
                self.released_early.insert(key, now);
                self.release(waiting);
            } else if let Some(list) = self.netlink.get_mut(&key) {
                list.push_front(waiting);
            }
        }
    }

    /// Release deletes on the kernel's announcement rather than on the sender's ack (the
    /// restore engine wants them at once).
    pub fn set_eager(&mut self, eager: bool) {
        self.eager = eager;
    }

    /// Releases waiting deletes in order: those with their kernel view, or waited long enough.
    fn release_joined(&mut self, now_ns: u64) {
        while let Some((since, mut waiting)) = self.joining.pop_front() {
            let wait = if self.eager {
                EAGER_VIEW_WAIT_NS
            } else {
                VIEW_WAIT_NS
            };
            if self.kernel_view(&mut waiting) || now_ns.saturating_sub(since) >= wait {
                self.release(waiting);
            } else {
                self.joining.push_front((since, waiting));
                break;
            }
        }
        let netlink = &self.netlink;
        self.by_tid.retain(|_, keys| {
            keys.retain(|k| netlink.contains_key(k));
            !keys.is_empty()
        });
    }

    /// Counts of notification-socket overflows the mirror recovered from by re-dumping.
    pub fn resyncs(&self) -> u64 {
        self.mirror.as_ref().map_or(0, Mirror::resyncs)
    }

    /// A request whose outcome is known (or given up on) becomes ready, followed by the routes
    /// the kernel flushed because of it, when it took a link down or removed a link or address.
    fn complete(&mut self, mut waiting: Waiting) {
        if waiting.superseded {
            return;
        }
        // A delete sent without NLM_F_ACK (`ip route flush` does that) gets no reply on success,
        // but the kernel's notification of the removal echoes its sequence number.
        if waiting.event.outcome == Outcome::Unknown
            && self.viewable(&waiting.event)
            && self.kernel_view(&mut waiting)
        {
            waiting.event.outcome = Outcome::Removed;
        }
        if waiting.event.outcome == Outcome::Removed
            && self.viewable(&waiting.event)
            && !self.kernel_view(&mut waiting)
        {
            self.joining.push_back((Clock::monotonic_ns(), waiting));
            return;
        }
        self.release(waiting);
    }

    /// The event goes out, followed by the routes its trigger flushed, if it was one.
    fn release(&mut self, waiting: Waiting) {
        let trigger = waiting.event;
        let kernel = waiting.kernel;
        let flushes = !self.kernel_function
            && matches!(
                trigger.cause,
                Cause::LinkDown | Cause::AddressRemoved | Cause::LinkRemoved
            )
            && trigger.outcome != Outcome::Failed;
        if flushes {
            if let Some(mirror) = &mut self.mirror {
                for gone in mirror.vanished(trigger.netns.inode, waiting.since_ns) {
                    let event = Event {
                        object: Object::Route(gone.route),
                        family: gone.family,
                        outcome: Outcome::Removed,
                        errno: None,
                        error: None,
                        trigger: Some(Trigger {
                            kind: trigger.kind(),
                            // A trigger is always a captured request.
                            op: trigger
                                .request
                                .as_ref()
                                .map_or_else(|| Op::Other(String::new()), |r| r.op.clone()),
                            link: trigger.object.link().cloned(),
                            address: trigger.object.address().cloned(),
                        }),
                        ..trigger.clone()
                    };
                    self.ready.push(Observed {
                        event,
                        kernel: Some(gone.kernel),
                    });
                }
            }
        }
        self.ready.push(Observed {
            event: trigger,
            kernel,
        });
    }

    /// Nothing is waiting for a reply, an ack, the kernel's view or a tick.
    pub fn is_empty(&self) -> bool {
        self.netlink.is_empty()
            && self.ioctl.is_empty()
            && self.joining.is_empty()
            && self.released_early.is_empty()
            && self.ready.is_empty()
    }

    /// Releases everything still waiting (at exit).
    pub fn flush(&mut self) {
        self.expire(u64::MAX);
    }

    /// Events whose outcome is known (or given up on), each with the kernel's description of its
    /// object when that was heard, in the order they completed.
    pub fn take_ready(&mut self) -> Vec<Observed> {
        // The next batch is likely as large as this one: room for it up front spares the
        // doublings that would each move every (large) event again. Nothing when idle.
        let room = Vec::with_capacity(self.ready.len());
        let mut ready = std::mem::replace(&mut self.ready, room);
        ready.sort_by_key(|o| o.event.ts);
        ready
    }

    /// Replaces what a successful route or rule delete named with what the kernel says it
    /// removed (its RTM_DEL* notification echoes the request's sequence number): `ip rule del
    /// prio 100` names no table, the kernel's notification does.
    /// Returns whether the kernel's view was found.
    fn kernel_view(&mut self, waiting: &mut Waiting) -> bool {
        let ev = &mut waiting.event;
        let Some(mirror) = &mut self.mirror else {
            return false;
        };
        let Some(seq) = ev.request.as_ref().and_then(|r| r.seq) else {
            return false;
        };
        let (route, rule) = (ev.object.route().cloned(), ev.object.rule().cloned());
        let replace = ev.cause == Cause::Replace;
        let claimed = mirror.claim(
            ev.netns.inode,
            seq,
            waiting.since_ns,
            |removed| match removed {
                Removed::Route(r) if !replace => route.as_ref().is_some_and(|asked| {
                    asked.dst == r.route.dst && asked.table.is_none_or(|t| r.route.table == Some(t))
                }),
                // A replace names the new route: it has the old one's key.
                Removed::Replaced { new: r, .. } if replace => {
                    route.as_ref().is_some_and(|asked| {
                        asked.dst == r.route.dst
                            && asked.table.is_none_or(|t| r.route.table == Some(t))
                    })
                }
                Removed::Rule { rule: r, .. } if !replace => rule.as_ref().is_some_and(|asked| {
                    asked.priority.is_none_or(|p| r.priority == Some(p))
                        && asked.table.is_none_or(|t| r.table == Some(t))
                }),
                _ => false,
            },
        );
        // Its notification lost to an overflow: the resync that followed found the route gone.
        let claimed = claimed.or_else(|| {
            let asked = route.as_ref().filter(|_| !replace)?;
            mirror
                .claim_resynced(
                    ev.netns.inode,
                    asked.dst.as_deref(),
                    Some(asked.table?),
                    waiting.since_ns,
                    |_| true,
                )
                .map(Removed::Route)
        });
        let kernel = match claimed {
            Some(Removed::Replaced { old, new }) if ev.cause == Cause::Replace => {
                ev.object = Object::Route(old.route);
                ev.replacement = Some(new.route);
                old.kernel
            }
            Some(Removed::Route(r)) if ev.kind() == Kind::Route => {
                ev.object = Object::Route(r.route);
                r.kernel
            }
            Some(Removed::Rule { rule, kernel, .. }) if ev.kind() == Kind::Rule => {
                ev.object = Object::Rule(rule);
                kernel
            }
            _ => return false,
        };
        waiting.kernel = Some(kernel);
        true
    }

    /// A delete the kernel announces when it succeeds (a netlink route or rule request, or a
    /// route replace), with a mirror to hear it. The kernel-function path's mirror does not
    /// hear route deletions: its records carry the route removed, as the kernel held it.
    fn viewable(&self, ev: &Event) -> bool {
        let announced = match (ev.cause, ev.kind()) {
            (Cause::Request | Cause::Flush, Kind::Rule) => true,
            (Cause::Request | Cause::Flush, Kind::Route) => !self.kernel_function,
            (Cause::Replace, Kind::Route) => true,
            _ => false,
        };
        self.mirror.is_some() && announced && ev.request.as_ref().is_some_and(|r| r.seq.is_some())
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
            syscall: syscall_of(head.syscall),
            op: Op::named(d.op),
            seq: Some(hdr.seq),
            nlmsg_flags: Some(hdr.flags),
            ack_requested: hdr.flags & NLM_F_ACK != 0,
        };
        let event = self.event(head, removal, request);
        let key = (head.sock, hdr.seq);
        self.netlink.entry(key).or_default().push_back(Waiting {
            event,
            kernel: None,
            since_ns: head.ts_ns,
            superseded: false,
        });
        if self.kernel_function {
            let keys = self.by_tid.entry(head.task.tid).or_default();
            keys.push_back(key);
            if keys.len() > kernel::PER_THREAD {
                keys.pop_front();
            }
        }
        self.arrivals.push_back((head.ts_ns, key));
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
                    syscall: Syscall::Ioctl,
                    op: Op::named(op),
                    seq: None,
                    nlmsg_flags: None,
                    ack_requested: true,
                };
                let event = self.event(head, removal, request);
                self.ioctl.entry(head.task.tid).or_default().push(Waiting {
                    event,
                    kernel: None,
                    since_ns: head.ts_ns,
                    superseded: false,
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
        let mut ev = Event::removal(
            self.clock.wall(head.ts_ns),
            removal.object,
            removal.family,
            removal.cause,
            Outcome::Unknown,
            if head.flags & request_flags::IN_KERNEL != 0 {
                Capture::KernelFunction
            } else {
                Capture::Syscall
            },
            self.netns.lookup(head.netns_ino),
        );
        ev.actor = Some(self.processes.actor(&head.task));
        ev.request = Some(request);
        flush::reclassify(&mut ev);
        ev
    }

    fn ack(&mut self, ack: &AckRecord) {
        if self.released_early.remove(&(ack.sock, ack.seq)).is_some()
            && !self.netlink.contains_key(&(ack.sock, ack.seq))
        {
            return; // its request went out when the kernel announced the removal
        }
        let Entry::Occupied(mut slot) = self.netlink.entry((ack.sock, ack.seq)) else {
            // A peeked reply read again, or a reply to a request captured before we started.
            self.problems.unmatched_replies += 1;
            return;
        };
        let Some(mut waiting) = slot.get_mut().pop_front() else {
            return;
        };
        if slot.get().is_empty() {
            slot.remove();
        }
        waiting.event = with_result(waiting.event, ack.error);
        self.complete(waiting);
    }

    fn ioctl_result(&mut self, res: &IoctlResultRecord) {
        let Some(list) = self.ioctl.get_mut(&res.tid) else {
            self.problems.unmatched_replies += 1;
            return;
        };
        let mut waiting = list.remove(0);
        if list.is_empty() {
            self.ioctl.remove(&res.tid);
        }
        let ret = i32::try_from(res.ret).unwrap_or(i32::MIN);
        waiting.event = with_result(waiting.event, ret);
        self.complete(waiting);
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

fn syscall_of(id: u16) -> Syscall {
    match id {
        // Heard by the kernel-function path in rtnetlink, sent some other way (io_uring, a
        // compat syscall).
        0 => Syscall::Netlink,
        syscall::SENDMSG => Syscall::Sendmsg,
        syscall::SENDTO => Syscall::Sendto,
        syscall::SENDMMSG => Syscall::Sendmmsg,
        syscall::WRITE => Syscall::Write,
        syscall::IOCTL => Syscall::Ioctl,
        _ => Syscall::Unknown,
    }
}

#[cfg(test)]
mod kernel_tests;
#[cfg(test)]
mod tests;
