//! The kernel-function path: kernel records → events, enriched by the requests the request hooks
//! hear.
//!
//! The kernel's own deletion function is the source of truth: one event per object removed,
//! as the kernel held it. The request hooks (`rtnetlink_rcv_msg`, `sock_ioctl`) report the
//! requests that may remove something in the sender's context, in the same request-and-result
//! records as the syscall path. The request that caused a removal (same thread; same sequence
//! number when the kernel had the netlink header) gives the event its `request` — and is then
//! *superseded*: it is not shown again as an event of its own when its result arrives. A request
//! the kernel never acted on (refused before reaching the deletion function, or a replace) still
//! becomes an event of its own, so nothing is lost and nothing is shown twice.
//!
//! A removed rule takes the kernel's description of it (its table, its bytes) from the kernel's
//! notification of the deletion, which the socket filter copies inside `fib_nl_delrule`, before
//! the rule's record is written at its exit: the notification waits here, by (thread, sequence
//! number), for the record to claim it. Route records tell the mirror which routes to let go of
//! (its listener never hears route deletions on this path); a replace takes the route it replaced
//! from the mirror's news, as on the syscall path. Expiries and namespace exits come from the
//! kernel's records, so the mirror's are not reported.

use std::collections::{HashMap, VecDeque};

use routeguard_common::{
    context, hook, mark, AckRecord, IoctlResultRecord, KernelRecord, RequestHead,
};

use super::{
    notify::Notified,
    replace::{self, Replaces},
    requests::{is_route_replace, Key, Requests},
    with_result, Core, Correlate, Problems, Waiting,
};
use crate::{
    clock::Clock,
    decode::{self, kernel::kernel_object, record::Notify, record::Record},
    event::{
        Capture, Cause, Event, Evidence, Kind, Observed, Op, Outcome, Outcomes, Request, Trigger,
    },
    mirror::{Ask, Asker, News},
    netlink::{
        self,
        uapi::{NLM_F_ACK, RTM_DELNEXTHOP, RTM_DELROUTE, RTM_DELRULE},
    },
};

/// Waiting requests remembered per thread for enrichment.
const PER_THREAD: usize = 64;
/// How long a rule's notification waits for the rule's record, which the same thread writes
/// microseconds later (measured in the correlator's time: the record is right behind it in
/// the ring).
const NOTE_WAIT_NS: u64 = 1_000_000_000;

/// A rule deletion's notification waiting for its record.
struct Note {
    /// When it came (monotonic ns).
    came_ns: u64,
    notified: Notified,
}

pub struct KernelFunctionCorrelator {
    core: Core,
    requests: Requests,
    /// Thread id → keys of its waiting netlink requests, newest last, to enrich kernel events
    /// with the request that caused them.
    by_tid: HashMap<u32, VecDeque<Key>>,
    /// Rule notifications by (thread, sequence number), oldest first.
    notes: HashMap<(u32, u32), VecDeque<Note>>,
    replaces: Replaces,
}

impl KernelFunctionCorrelator {
    /// With `mirror`, replaces name the route they replaced.
    pub fn new(clock: Clock, mirror: Option<Asker>) -> Self {
        Self {
            core: Core::new(clock, mirror),
            requests: Requests::default(),
            by_tid: HashMap::new(),
            notes: HashMap::new(),
            replaces: Replaces::default(),
        }
    }

    fn request(&mut self, head: &RequestHead, payload: &[u8]) {
        // rtnetlink never saw a refused send: its denial is the only record of it.
        if self
            .core
            .denied(head, payload, Capture::KernelFunction)
            .is_some()
        {
            return;
        }
        for w in self.core.asked(head, payload) {
            if head.syscall == routeguard_common::syscall::IOCTL {
                self.requests.add_ioctl(head.task.tid, w);
                continue;
            }
            let w = if is_route_replace(&w) {
                let (core, requests) = (&mut self.core, &mut self.requests);
                match replace::arrived(core, requests, &mut self.replaces, head.sock, w) {
                    Some(w) => w,
                    None => continue,
                }
            } else {
                w
            };
            let Some(seq) = w.seq() else {
                continue;
            };
            self.requests.add_netlink(head.sock, w);
            let keys = self.by_tid.entry(head.task.tid).or_default();
            keys.push_back((head.sock, seq));
            if keys.len() > PER_THREAD {
                keys.pop_front();
            }
        }
    }

    fn ack(&mut self, ack: &AckRecord) {
        self.core.saw(ack.ts_ns);
        if let Some(w) = self.requests.acked(ack, &mut self.core.problems) {
            self.complete(w);
        }
    }

    fn ioctl_result(&mut self, res: &IoctlResultRecord) {
        self.core.saw(res.ts_ns);
        if let Some(w) = self.requests.returned(res, &mut self.core.problems) {
            self.complete(w);
        }
    }

    /// A request's outcome is known: shown unless a kernel event stands for it.
    fn complete(&mut self, w: Waiting) {
        if w.superseded {
            return;
        }
        if is_route_replace(&w) && w.event.outcome == Outcome::Removed {
            replace::acked(&mut self.core, &mut self.replaces, w);
            return;
        }
        self.core.release(w.observed());
    }

    /// A rule's notification (the filter copies no route deletions on this path): kept for the
    /// rule's record.
    fn notify(&mut self, n: &Notify<'_>) {
        self.core.saw(n.ts_ns);
        let Some(notified) = Notified::parse(n, &mut self.core) else {
            return;
        };
        if notified.object.kind() != Kind::Rule {
            return;
        }
        let note = Note {
            came_ns: Clock::monotonic_ns(),
            notified,
        };
        let at = (note.notified.tid, note.notified.seq);
        self.notes.entry(at).or_default().push_back(note);
    }

    /// The oldest rule notification of thread `tid` (with sequence number `seq`, when known).
    fn take_note(&mut self, tid: u32, seq: Option<u32>) -> Option<Notified> {
        let at = match seq {
            Some(seq) => (tid, seq),
            None => {
                *self
                    .notes
                    .iter()
                    .filter(|((t, _), _)| *t == tid)
                    .min_by_key(|(_, list)| list.front().map(|n| n.came_ns))?
                    .0
            }
        };
        let list = self.notes.get_mut(&at)?;
        let note = list.pop_front();
        if list.is_empty() {
            self.notes.remove(&at);
        }
        note.map(|n| n.notified)
    }

    fn kernel(&mut self, rec: &KernelRecord) {
        self.core.saw(rec.ts_ns);
        let (family, object) = match kernel_object(rec) {
            Ok(x) => x,
            Err(err) => {
                self.core.problems.undecodable += 1;
                tracing::debug!(%err, hook = rec.hook, "undecodable kernel-function record");
                return;
            }
        };
        let kind = object.kind();
        let has_nlh = rec.context & context::HAS_NLH != 0;
        let asked = has_nlh && matches!(rec.msg_type, RTM_DELROUTE | RTM_DELRULE | RTM_DELNEXTHOP);
        let kthread = rec.context & context::KTHREAD != 0;
        let tid = rec.task.tid;
        // (cause, whether `current` is the actor)
        let (cause, process) = if rec.context & context::GC != 0 {
            (Cause::Expired, false)
        } else {
            match rec.mark {
                mark::NETNS_EXIT => (Cause::NetnsExit, false),
                mark::LINK_DOWN => (Cause::LinkDown, !kthread),
                mark::LINK_REMOVED => (Cause::LinkRemoved, !kthread),
                mark::ADDRESS_REMOVED => (Cause::AddressRemoved, !kthread),
                mark::REQUEST => (Cause::Request, !kthread),
                _ if asked || rec.hook == hook::RULE => (Cause::Request, !kthread),
                _ if kthread => (Cause::Expired, false),
                // IPv6 removes routes from softirq too (router advertisements): without a
                // request of this thread to explain it, `current` may be whoever was
                // interrupted, so nobody is named.
                _ if rec.hook == hook::ROUTE6 && !self.has_waiting(tid) => (Cause::Expired, false),
                _ => (Cause::Flush, true),
            }
        };
        let mut ev = Event::removal(
            self.core.clock.wall(rec.ts_ns),
            object,
            family,
            cause,
            Outcome::Removed,
            Capture::KernelFunction,
            self.core.netns.lookup(rec.netns_ino),
        );
        ev.actor = process.then(|| self.core.processes.actor(&rec.task));
        if rec.context & context::HAS_RET != 0 {
            with_result(&mut ev, rec.ret);
        }
        if let (Some(route), Outcome::Removed) = (ev.object.route(), ev.outcome) {
            // The listener does not hear route deletions on this path: the records say.
            self.core.forget(rec.netns_ino, family, route, rec.ts_ns);
        }
        if process {
            let seq = has_nlh.then_some(rec.seq);
            if cause == Cause::Request {
                if let Some(claimed) = self.claim(tid, seq, Some(kind)) {
                    // `ip route flush` sends one delete per route: the request says so.
                    if claimed.cause == Cause::Flush {
                        ev.cause = Cause::Flush;
                    }
                    ev.request = claimed.request;
                }
            } else if let Some(claimed) = self.claim(tid, None, None) {
                ev.trigger = Some(Trigger {
                    kind: claimed.kind(),
                    // A claimed request always has its request.
                    op: claimed
                        .request
                        .as_ref()
                        .map_or_else(|| Op::Other(String::new()), |r| r.op.clone()),
                    link: claimed.object.link().cloned(),
                    address: claimed.object.address().cloned(),
                });
                ev.request = claimed.request;
            }
        }
        if ev.request.is_none() && has_nlh {
            // The kernel's view of the request, with the syscall that carried it (noted by the
            // request hooks).
            ev.request = Some(Request {
                syscall: super::syscall_of(rec.syscall),
                op: Op::named(netlink::message_name(rec.msg_type).unwrap_or("unknown")),
                seq: Some(rec.seq),
                nlmsg_flags: Some(rec.nlmsg_flags),
                ack_requested: rec.nlmsg_flags & NLM_F_ACK != 0,
                port_id: (rec.portid != 0).then_some(rec.portid),
            });
        }
        // A delete the request hooks left to the kernel functions has only the kernel's copy
        // of the request: `ip route flush` is told by its sender, as on the syscall path.
        super::flush::reclassify(&mut ev);
        if ev.outcome == Outcome::Failed && kind == Kind::Route {
            // fib_table_delete refused it: the route named is what was asked for.
            ev.cause = Cause::Request;
        }
        let mut kernel = None;
        if rec.hook == hook::RULE && ev.outcome == Outcome::Removed {
            // The kernel's notification of the rule says what it removed (`ip rule del prio
            // 100` names no table; the notification does).
            let seq = has_nlh.then_some(rec.seq);
            if let Some(notified) = self.take_note(tid, seq) {
                kernel = notified.settle(&mut ev);
            }
        }
        self.core.release(Observed {
            event: ev,
            kernel,
            evidence: Evidence::KernelFunction,
        });
    }

    /// Whether this thread has a captured request still waiting for its reply.
    fn has_waiting(&self, tid: u32) -> bool {
        self.by_tid
            .get(&tid)
            .is_some_and(|keys| keys.iter().any(|k| self.requests.contains(k)))
            || self.requests.has_ioctl(tid)
    }

    /// The newest waiting request of thread `tid` (with sequence number `seq`, when given).
    /// When `supersede` names the kernel event's kind and the request asked to remove an object
    /// of that kind, the request will not be shown on its own: the kernel event stands for it.
    fn claim(&mut self, tid: u32, seq: Option<u32>, supersede: Option<Kind>) -> Option<Event> {
        let same = |w: &Waiting| w.tid() == Some(tid) && seq.is_none_or(|s| w.seq() == Some(s));
        let mark = |w: &mut Waiting| {
            if supersede == Some(w.event.kind())
                && matches!(w.event.cause, Cause::Request | Cause::Flush)
            {
                w.superseded = true;
            }
            w.event.clone()
        };
        if let Some(keys) = self.by_tid.get_mut(&tid) {
            keys.retain(|k| self.requests.contains(k));
            for key in keys.clone().iter().rev() {
                if let Some(list) = self.requests.under(key) {
                    if let Some(w) = list.iter_mut().rev().find(|w| same(w)) {
                        return Some(mark(w));
                    }
                }
            }
        }
        if seq.is_none() {
            if let Some(w) = self.requests.newest_ioctl(tid) {
                return Some(mark(w));
            }
        }
        None
    }

    /// Rule notifications no record claimed in time: their record was lost (the ring was
    /// full), so each is an event of its own.
    fn expire_notes(&mut self, now_ns: u64) {
        let mut alone = Vec::new();
        self.notes.retain(|_, list| {
            while list
                .front()
                .is_some_and(|n| now_ns.saturating_sub(n.came_ns) >= NOTE_WAIT_NS)
            {
                alone.extend(list.pop_front());
            }
            !list.is_empty()
        });
        alone.sort_by_key(|n| n.notified.ts_ns);
        for note in alone {
            let observed = note.notified.alone(&mut self.core, Capture::KernelFunction);
            self.core.release(observed);
        }
    }
}

impl Correlate for KernelFunctionCorrelator {
    fn record(&mut self, bytes: &[u8]) {
        match decode::record::parse(bytes) {
            Ok(Record::Task(task)) => self.core.processes.insert(&task),
            Ok(Record::Request { head, payload }) => self.request(&head, payload),
            Ok(Record::Ack(ack)) => self.ack(&ack),
            Ok(Record::IoctlResult(res)) => self.ioctl_result(&res),
            Ok(Record::Kernel(rec)) => self.kernel(&rec),
            Ok(Record::Notify(n)) => self.notify(&n),
            Err(err) => {
                self.core.problems.bad_records += 1;
                tracing::warn!(%err, "dropping a malformed record from the kernel");
            }
        }
    }

    fn news(&mut self, news: News) {
        match news {
            News::Replaced {
                netns,
                portid,
                seq,
                old,
                new,
                ..
            } => {
                let r = replace::Replaced {
                    netns,
                    portid,
                    seq,
                    old,
                    new,
                };
                replace::news(&mut self.core, &mut self.requests, &mut self.replaces, r);
            }
            // The kernel's own deletion functions report these, once each, already; and
            // nothing here asks what vanished.
            News::Vanished { .. } | News::Expired { .. } | News::Exited(_) => {}
        }
    }

    fn lost(&mut self) {
        self.core.ask(Ask::Settle);
    }

    fn expire(&mut self, now_ns: u64, caught_up: bool) {
        let ring = self.core.ring_now(now_ns, caught_up);
        for w in self.requests.expire(ring) {
            self.complete(w);
        }
        let requests = &self.requests;
        self.by_tid.retain(|_, keys| {
            keys.retain(|k| requests.contains(k));
            !keys.is_empty()
        });
        replace::expire(&mut self.core, &mut self.replaces, now_ns);
        self.expire_notes(now_ns);
    }

    fn flush(&mut self) {
        self.expire(u64::MAX, true);
    }

    fn take_ready(&mut self) -> Vec<Observed> {
        self.core.take_ready()
    }

    fn is_idle(&self) -> bool {
        self.requests.is_empty()
            && self.notes.is_empty()
            && self.replaces.is_idle()
            && self.core.ready.is_empty()
            && self.core.forgets.is_empty()
    }

    fn awaits_mirror(&self) -> bool {
        !self.replaces.is_idle()
    }

    fn problems(&self) -> Problems {
        self.core.problems()
    }

    fn outcomes(&self) -> Outcomes {
        self.core.outcomes
    }
}
