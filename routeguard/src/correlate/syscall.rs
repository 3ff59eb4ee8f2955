//! The syscall path: requests copied at the syscalls become the events, once the kernel answered.
//!
//! - A route or rule delete is answered by the kernel's notification of what it removed (a
//!   `Notify` record, made inside the requester's `sendmsg` after its request record, so its
//!   request is already here): joined by (thread, sequence number) and port id, of the same
//!   kind. The event takes the kernel's view of the object and goes out at once; its ack, when it
//!   comes, is consumed. A request the kernel refused gets no notification, only its ack; a
//!   notification no request claims is an event of its own (`notify.rs`).
//! - Everything else by its ack or ioctl return ([`super::REPLY_WAIT_NS`] at most).
//! - A replace by the mirror's news of the route it replaced (`replace.rs`).
//! - A link-down, address or link removal by its ack, then the mirror's answer of what vanished
//!   (`vanished.rs`).
//! - Expiries and namespace exits from the mirror's news alone (`unasked.rs`).

use routeguard_common::{syscall as id, AckRecord, IoctlResultRecord, RequestHead};

use super::{
    notify::Notified,
    replace::{self, Replaces},
    requests::{is_route_replace, Requests},
    vanished::{self, Triggers},
    Core, Correlate, Problems, Waiting,
};
use crate::{
    clock::Clock,
    decode::{self, record::Notify, record::Record},
    event::{Capture, Evidence, Observed, Outcomes},
    mirror::{Ask, Asker, News},
};

pub struct SyscallCorrelator {
    core: Core,
    requests: Requests,
    replaces: Replaces,
    triggers: Triggers,
}

impl SyscallCorrelator {
    /// With `mirror`, removals the kernel makes silently (flushes), replaces, expiries and
    /// namespace exits are reported too.
    pub fn new(clock: Clock, mirror: Option<Asker>) -> Self {
        Self {
            core: Core::new(clock, mirror),
            requests: Requests::default(),
            replaces: Replaces::default(),
            triggers: Triggers::default(),
        }
    }

    fn request(&mut self, head: &RequestHead, payload: &[u8]) {
        if let Some(seqs) = self.core.denied(head, payload, Capture::Syscall) {
            // sys_enter copied the same send before the LSM refused it: no ack will answer
            // those requests, and the denial stands for them.
            for seq in seqs {
                let _ = self.requests.take((head.sock, seq));
            }
            return;
        }
        for w in self.core.asked(head, payload) {
            if head.syscall == id::IOCTL {
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
            self.requests.add_netlink(head.sock, w);
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

    /// The kernel announced a deletion a request made: the request it answers takes the
    /// kernel's view and goes out now.
    fn notify(&mut self, n: &Notify<'_>) {
        self.core.saw(n.ts_ns);
        let Some(notified) = Notified::parse(n, &mut self.core) else {
            return;
        };
        let (tid, seq, port, ts) = (notified.tid, notified.seq, notified.port, notified.ts_ns);
        let claimed = self
            .requests
            .claim_notified(tid, seq, port, |w| notified.answers(&w.event));
        // The listener never hears a route deletion a request made (the filter drops it): the
        // mirror lets go of the route when told.
        let gone = notified
            .object
            .route()
            .cloned()
            .map(|r| (notified.family, r));
        let observed = match claimed {
            Some((key, mut w)) => {
                if w.ack_requested() {
                    self.requests.answered(key, ts);
                }
                w.kernel = notified.settle(&mut w.event);
                w.evidence = Evidence::Notification;
                w.observed()
            }
            None => notified.alone(&mut self.core, Capture::Syscall),
        };
        if let Some((family, route)) = gone {
            self.core
                .forget(observed.event.netns.inode, family, &route, ts);
        }
        self.core.release(observed);
    }

    /// A request whose outcome is known (or given up on).
    fn complete(&mut self, w: Waiting) {
        if is_route_replace(&w) && w.event.outcome == crate::event::Outcome::Removed {
            replace::acked(&mut self.core, &mut self.replaces, w);
            return;
        }
        if vanished::flushes(&w.event) && self.core.mirror.is_some() {
            let (netns, since_ns) = (w.event.netns.inode, w.since_ns);
            let token = self.triggers.hold(w, Clock::monotonic_ns());
            self.core.ask(Ask::Vanished {
                token,
                netns,
                since_ns,
            });
            return;
        }
        self.core.release(w.observed());
    }
}

impl Correlate for SyscallCorrelator {
    fn record(&mut self, bytes: &[u8]) {
        match decode::record::parse(bytes) {
            Ok(Record::Task(task)) => self.core.processes.insert(&task),
            Ok(Record::Request { head, payload }) => self.request(&head, payload),
            Ok(Record::Ack(ack)) => self.ack(&ack),
            Ok(Record::IoctlResult(res)) => self.ioctl_result(&res),
            Ok(Record::Notify(n)) => self.notify(&n),
            // Only the kernel-function path loads the programs that make them.
            Ok(Record::Kernel(_)) => {}
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
            News::Vanished {
                token,
                gone,
                announced,
            } => self
                .triggers
                .answered(&mut self.core, token, gone, announced),
            News::Expired {
                netns,
                at_ns,
                route,
            } => self.core.expired(netns, at_ns, route),
            News::Exited(exited) => self.core.exited(exited),
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
        replace::expire(&mut self.core, &mut self.replaces, now_ns);
        self.triggers.expire(&mut self.core, now_ns);
    }

    fn flush(&mut self) {
        self.expire(u64::MAX, true);
    }

    fn take_ready(&mut self) -> Vec<Observed> {
        self.core.take_ready()
    }

    fn is_idle(&self) -> bool {
        self.requests.is_empty()
            && self.replaces.is_idle()
            && self.triggers.is_empty()
            && self.core.ready.is_empty()
            && self.core.forgets.is_empty()
    }

    fn awaits_mirror(&self) -> bool {
        self.triggers.waiting() || !self.replaces.is_idle()
    }

    fn problems(&self) -> Problems {
        self.core.problems()
    }

    fn outcomes(&self) -> Outcomes {
        self.core.outcomes
    }
}
