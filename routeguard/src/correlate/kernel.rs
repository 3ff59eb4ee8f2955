//! Kernel-function records → events, enriched by the requests the request hooks hear.
//!
//! The kernel's own deletion function is the source of truth: one event per object removed,
//! as the kernel held it. The request hooks (`rtnetlink_rcv_msg`, `sock_ioctl`) report the
//! requests that may remove something in the sender's context, in the same request-and-result
//! records as the syscall path. The request that caused a removal (same thread; same sequence
//! number when the kernel had the netlink header) gives the event its `request` — and is then
//! *superseded*: it is not shown again as an event of its own when its result arrives. A request
//! the kernel never acted on (refused before reaching the deletion function, or a replace) still
//! becomes an event of its own, so nothing is lost and nothing is shown twice.

use routeguard_common::{context, hook, mark, KernelRecord};

use super::{with_result, Correlator};
use crate::{
    decode::{self, kernel::kernel_object},
    event::{Capture, Cause, Event, Kind, Op, Outcome, Request, Trigger},
};

const NLM_F_ACK: u16 = 0x4;
const RTM_DELROUTE: u16 = 25;
const RTM_DELRULE: u16 = 33;
const RTM_DELNEXTHOP: u16 = 105;
/// How long before a rule record's stamp (fib_nl_delrule's exit) the kernel may have sent its
/// notification: microseconds natively, milliseconds under emulation. The join also needs the
/// namespace, the sequence number and a rule that fits.
const RULE_NOTIFIED_BEFORE_NS: u64 = 200_000_000;
/// Waiting requests remembered per thread for enrichment.
pub(super) const PER_THREAD: usize = 64;

impl Correlator {
    pub(super) fn kernel(&mut self, rec: &KernelRecord) {
        let (family, object) = match kernel_object(rec) {
            Ok(x) => x,
            Err(err) => {
                self.problems.undecodable += 1;
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
        let outcome_ret = (rec.context & context::HAS_RET != 0).then_some(rec.ret);
        let mut ev = Event::removal(
            self.clock.wall(rec.ts_ns),
            object,
            family,
            cause,
            Outcome::Removed,
            Capture::KernelFunction,
            self.netns.lookup(rec.netns_ino),
        );
        ev.actor = process.then(|| self.processes.actor(&rec.task));
        if let Some(ret) = outcome_ret {
            ev = with_result(ev, ret);
        }
        if let (Some(mirror), Some(route), Outcome::Removed) =
            (&mut self.mirror, ev.object.route(), ev.outcome)
        {
            // Its mirror does not hear route deletions (see `Mirror::for_kernel_records`).
            mirror.forget(rec.netns_ino, family, route, rec.ts_ns);
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
                op: Op::named(decode::kernel::message_name(rec.msg_type).unwrap_or("unknown")),
                seq: Some(rec.seq),
                nlmsg_flags: Some(rec.nlmsg_flags),
                ack_requested: rec.nlmsg_flags & NLM_F_ACK != 0,
            });
        }
        // A delete the request hooks left to the kernel functions has only the kernel's copy
        // of the request: `ip route flush` is told by its sender, as on the syscall path.
        super::flush::reclassify(&mut ev);
        if ev.outcome == Outcome::Failed && kind == Kind::Route {
            // fib_table_delete refused it: the route named is what was asked for.
            ev.cause = Cause::Request;
        }
        // A request's removal waits (briefly) for the kernel's notification of it, as on the
        // syscall path: that adds the kernel's own description (a rule's table, its bytes).
        // The kernel's notification is joined if learnt at or after `since_ns`. A rule's record
        // is stamped at fib_nl_delrule's exit, after the kernel sent that notification: on
        // another CPU the mirror can learn it first.
        let since_ns = if rec.hook == hook::RULE {
            rec.ts_ns.saturating_sub(RULE_NOTIFIED_BEFORE_NS)
        } else {
            rec.ts_ns
        };
        self.complete(super::Waiting {
            event: ev,
            kernel: None,
            since_ns,
            superseded: false,
        });
    }

    /// Whether this thread has a captured request still waiting for its reply.
    fn has_waiting(&self, tid: u32) -> bool {
        self.by_tid
            .get(&tid)
            .is_some_and(|keys| keys.iter().any(|k| self.netlink.contains_key(k)))
            || self.ioctl.contains_key(&tid)
    }

    /// The newest waiting request of thread `tid` (with sequence number `seq`, when given).
    /// When `supersede` names the kernel event's kind and the request asked to remove an object
    /// of that kind, the request will not be shown on its own: the kernel event stands for it.
    fn claim(&mut self, tid: u32, seq: Option<u32>, supersede: Option<Kind>) -> Option<Event> {
        let same = |w: &super::Waiting| {
            w.event.actor.as_ref().is_some_and(|a| a.tid == tid)
                && seq.is_none_or(|s| w.event.request.as_ref().and_then(|r| r.seq) == Some(s))
        };
        let mark = |w: &mut super::Waiting| {
            if supersede == Some(w.event.kind())
                && matches!(w.event.cause, Cause::Request | Cause::Flush)
            {
                w.superseded = true;
            }
            w.event.clone()
        };
        if let Some(keys) = self.by_tid.get_mut(&tid) {
            keys.retain(|k| self.netlink.contains_key(k));
            for key in keys.iter().rev() {
                if let Some(list) = self.netlink.get_mut(key) {
                    if let Some(w) = list.iter_mut().rev().find(|w| same(w)) {
                        return Some(mark(w));
                    }
                }
            }
        }
        if seq.is_none() {
            if let Some(w) = self.ioctl.get_mut(&tid).and_then(|l| l.last_mut()) {
                return Some(mark(w));
            }
        }
        None
    }
}
