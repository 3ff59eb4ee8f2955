//! Joins each captured request with the kernel's answers and turns it into an [`Event`].
//!
//! Two capture paths, two implementations of one [`Correlate`] seam:
//! - [`SyscallCorrelator`] (`syscall.rs`): requests copied at the syscalls are the events. Each
//!   waits for its evidence: the kernel's notification of the removal (a `Notify` record the
//!   socket filter made inside the sender's `sendmsg`, so it follows its request in the ring),
//!   its NLMSG_ERROR reply (netlink, keyed by socket and sequence number) or its return value
//!   (ioctl, keyed by thread). A request nothing answers is released as `unknown` after
//!   [`REPLY_WAIT_NS`]. The route mirror says what a link-down flushed silently, what a replace
//!   replaced, and what expired or left with a namespace.
//! - [`KernelFunctionCorrelator`] (`kernel.rs`): the kernel's own deletion functions' records are
//!   the events; requests heard in rtnetlink enrich them.
//!
//! What both share — the clock, process and namespace names, the requests waiting, the ready
//! queue, the counts — is in `Core` and `requests.rs`. Neither reaches into the mirror: each
//! asks it ([`Ask`]) and hears its [`News`].

mod asked;
mod flush;
mod kernel;
mod notify;
mod replace;
mod requests;
mod syscall;
mod unasked;
mod vanished;

use std::sync::Arc;

use routeguard_common::{request_flags, syscall as id, RequestHead};

pub use kernel::KernelFunctionCorrelator;
pub use syscall::SyscallCorrelator;

use crate::{
    attribution::{NetnsNames, ProcessTable},
    clock::Clock,
    decode,
    event::{
        self, Actor, Capture, Event, Evidence, Family, KernelBody, Observed, Outcome, Outcomes,
        Request, RouteKey, Syscall,
    },
    mirror::{Ask, Asker, Forget, News},
};

/// How long a request waits for the kernel's reply before it is shown as `unknown`, measured in
/// ring time (see [`Correlate::expire`]). Senders read their ack within microseconds; this only
/// bounds requests nobody reads a reply for.
pub const REPLY_WAIT_NS: u64 = 500_000_000;

/// One capture path's correlation: records and the mirror's news in, events out.
pub trait Correlate: Send {
    /// Feeds one ring-buffer record.
    fn record(&mut self, bytes: &[u8]);
    /// What the route mirror learnt, unasked or in answer.
    fn news(&mut self, news: News);
    /// Records were lost (ring full or the queue's bound): what they would have told the mirror
    /// (routes to forget) is lost with them, so it re-dumps.
    fn lost(&mut self);
    /// Releases what waited too long. `now_ns` is monotonic; `caught_up` says whether every
    /// record read from the ring so far has been fed: until then, waits for a reply are measured
    /// in ring time (the newest record's stamp), so a backlog never expires a request whose
    /// answer is still queued behind it.
    fn expire(&mut self, now_ns: u64, caught_up: bool);
    /// Releases everything still waiting (at exit).
    fn flush(&mut self);
    /// Events whose outcome is known (or given up on), in time order.
    fn take_ready(&mut self) -> Vec<Observed>;
    /// Nothing waits for a reply, the mirror or a tick.
    fn is_idle(&self) -> bool;
    /// An answer from the mirror is awaited (at exit the worker gives it a moment).
    fn awaits_mirror(&self) -> bool;
    fn problems(&self) -> Problems;
    /// Outcomes of the events released so far, by evidence.
    fn outcomes(&self) -> Outcomes;
}

/// Counts of what could not be turned into events, or into whole ones (shown in the summary,
/// never silent).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Problems {
    /// Records with a bad header (kind, version, length).
    pub bad_records: u64,
    /// Netlink messages or ioctls whose bytes could not be decoded.
    pub undecodable: u64,
    /// Replies that matched no waiting request.
    pub unmatched_replies: u64,
    /// The mirror's news of a replace that no request claimed in time (the request was lost,
    /// or came from a thread the capture does not see).
    pub unclaimed_news: u64,
    /// Link-downs and address or link removals released before the mirror said what they
    /// flushed (their routes follow when it does).
    pub late_flushes: u64,
    /// Process images whose executable identity came from /proc, not the kernel (BTF lacked an
    /// offset, or the task record was lost).
    pub exe_ids_from_proc: u64,
    /// Process images with no executable identity at all: `allow.exe` cannot match them.
    pub exe_ids_unknown: u64,
}

/// A request held until its outcome is known.
pub(crate) struct Waiting {
    event: Event,
    /// The kernel's description of the object, once the kernel gave it.
    kernel: Option<KernelBody>,
    /// What the outcome rests on so far.
    evidence: Evidence,
    /// The request's kernel time (ns).
    since_ns: u64,
    /// The sender's netlink port id (0 when unknown: the socket was not bound yet).
    portid: u32,
    /// A kernel-function event already stands for this request: it is not shown itself.
    superseded: bool,
}

impl Waiting {
    fn seq(&self) -> Option<u32> {
        self.event.request.as_ref().and_then(|r| r.seq)
    }

    fn tid(&self) -> Option<u32> {
        self.event.actor.as_ref().map(|a| a.tid)
    }

    fn ack_requested(&self) -> bool {
        self.event.request.as_ref().is_some_and(|r| r.ack_requested)
    }

    fn observed(self) -> Observed {
        Observed {
            event: self.event,
            kernel: self.kernel,
            evidence: self.evidence,
        }
    }
}

/// What both capture paths' correlators hold.
pub(crate) struct Core {
    clock: Clock,
    processes: ProcessTable,
    netns: NetnsNames,
    ready: Vec<Observed>,
    problems: Problems,
    outcomes: Outcomes,
    /// The route mirror's control thread; `None` without a mirror.
    mirror: Option<Asker>,
    /// Routes to forget, sent to the mirror in one ask per batch.
    forgets: Vec<Forget>,
    /// The newest record's kernel time (ns): the ring time waits are measured in.
    ring_ns: u64,
}

impl Core {
    /// [`Problems`], with where the actors' executable identities came from.
    fn problems(&self) -> Problems {
        let sources = self.processes.exe_id_sources();
        Problems {
            exe_ids_from_proc: sources.proc,
            exe_ids_unknown: sources.unknown,
            ..self.problems
        }
    }

    fn new(clock: Clock, mirror: Option<Asker>) -> Self {
        Self {
            clock,
            processes: ProcessTable::new(),
            netns: NetnsNames::new(),
            ready: Vec::new(),
            problems: Problems::default(),
            outcomes: Outcomes::default(),
            mirror,
            forgets: Vec::new(),
            ring_ns: 0,
        }
    }

    /// Notes a record's kernel time.
    fn saw(&mut self, ts_ns: u64) {
        self.ring_ns = self.ring_ns.max(ts_ns);
    }

    /// The time waits for replies are measured against (see [`Correlate::expire`]).
    fn ring_now(&self, now_ns: u64, caught_up: bool) -> u64 {
        if caught_up {
            now_ns.max(self.ring_ns)
        } else {
            self.ring_ns
        }
    }

    /// An event goes out, counted.
    fn release(&mut self, observed: Observed) {
        self.outcomes.count(&observed);
        self.ready.push(observed);
    }

    fn ask(&self, ask: Ask) {
        if let Some(mirror) = &self.mirror {
            mirror.ask(ask);
        }
    }

    /// The mirror lets go of a route a request removed at `at_ns` (sent with the batch).
    fn forget(&mut self, netns: u32, family: Option<Family>, route: &event::Route, at_ns: u64) {
        if self.mirror.is_some() {
            self.forgets.push(Forget {
                netns,
                key: RouteKey::of(family, route),
                at_ns,
            });
        }
    }

    fn take_ready(&mut self) -> Vec<Observed> {
        if !self.forgets.is_empty() {
            let forgets = std::mem::take(&mut self.forgets);
            self.ask(Ask::Forget(forgets));
        }
        // The next batch is likely as large as this one: room for it up front spares the
        // doublings that would each move every (large) event again. Nothing when idle.
        let room = Vec::with_capacity(self.ready.len());
        let mut ready = std::mem::replace(&mut self.ready, room);
        ready.sort_by_key(|o| o.event.ts);
        ready
    }

    /// The event of a captured request, not yet answered.
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

    /// The actor of thread `tid` of process `pid`, from its task record or /proc.
    fn actor_of(&mut self, pid: u32, tid: u32) -> Arc<Actor> {
        self.processes.actor_of(pid, tid)
    }
}

/// A waiting request becomes one the kernel answered.
fn waiting(event: Event, head: &RequestHead) -> Waiting {
    Waiting {
        event,
        kernel: None,
        evidence: Evidence::None,
        since_ns: head.ts_ns,
        portid: head.portid,
        superseded: false,
    }
}

/// Sets the outcome from a kernel return value (0, or a negative errno).
fn with_result(ev: &mut Event, ret: i32) {
    if ret == 0 {
        ev.outcome = Outcome::Removed;
    } else {
        let errno = ret.checked_neg().unwrap_or(i32::MAX);
        ev.outcome = Outcome::Failed;
        ev.errno = Some(errno);
        ev.error = event::errno::name(errno).map(str::to_string);
    }
}

fn syscall_of(id: u16) -> Syscall {
    match id {
        // Heard in rtnetlink, sent some other way (io_uring, a compat syscall).
        0 => Syscall::Netlink,
        id::SENDMSG => Syscall::Sendmsg,
        id::SENDTO => Syscall::Sendto,
        id::SENDMMSG => Syscall::Sendmmsg,
        id::WRITE => Syscall::Write,
        id::WRITEV => Syscall::Writev,
        id::IOCTL => Syscall::Ioctl,
        _ => Syscall::Unknown,
    }
}

#[cfg(test)]
mod kernel_tests;
#[cfg(test)]
mod syscall_tests;
#[cfg(test)]
mod tests;
