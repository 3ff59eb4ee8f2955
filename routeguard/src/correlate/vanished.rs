//! The routes a link-down, an address removal or a link removal flushed (syscall path). The
//! kernel announces none of the IPv4 ones, so once such a request succeeded the mirror is asked
//! what vanished since ([`Ask::Vanished`](crate::mirror::Ask)), and the trigger is held until it
//! answers: then the trigger goes out followed by one event per route, each with the trigger's
//! actor and request. A mirror that does not answer in time does not hold the trigger longer
//! (it goes alone, counted); its routes follow when the answer comes.

use std::collections::HashMap;

use super::{Core, Waiting};
use crate::{
    event::{Cause, Event, Evidence, Object, Observed, Op, Outcome, Trigger},
    mirror::MirroredRoute,
};

/// How long a trigger waits for the mirror's answer (a re-dump of the namespace's routes).
const ANSWER_WAIT_NS: u64 = 5_000_000_000;
/// How long a late answer is still awaited for the trigger's routes.
const ANSWER_GIVE_UP_NS: u64 = 60_000_000_000;

/// A trigger waiting for the mirror's answer.
struct Held {
    /// When it was asked (monotonic ns).
    asked_ns: u64,
    trigger: Event,
    /// `None` once it went out alone.
    waiting: Option<Waiting>,
}

#[derive(Default)]
pub(super) struct Triggers {
    held: HashMap<u64, Held>,
    next_token: u64,
}

/// A request that makes the kernel flush routes without a word, if it is one.
pub(super) fn flushes(ev: &Event) -> bool {
    matches!(
        ev.cause,
        Cause::LinkDown | Cause::AddressRemoved | Cause::LinkRemoved
    ) && ev.outcome != Outcome::Failed
}

impl Triggers {
    /// Holds `w` under a new token, to ask the mirror with.
    pub fn hold(&mut self, w: Waiting, now_ns: u64) -> u64 {
        self.next_token += 1;
        let token = self.next_token;
        self.held.insert(
            token,
            Held {
                asked_ns: now_ns,
                trigger: w.event.clone(),
                waiting: Some(w),
            },
        );
        token
    }

    /// The mirror's answer `token`: the trigger (unless it went out already), then its routes.
    pub fn answered(
        &mut self,
        core: &mut Core,
        token: u64,
        gone: Vec<MirroredRoute>,
        announced: Vec<MirroredRoute>,
    ) {
        let Some(held) = self.held.remove(&token) else {
            return;
        };
        if let Some(w) = held.waiting {
            core.release(w.observed());
        }
        let flushed = gone
            .into_iter()
            .map(|r| (r, Evidence::Redump))
            .chain(announced.into_iter().map(|r| (r, Evidence::Notification)));
        for (route, evidence) in flushed {
            let event = flushed_by(&held.trigger, route.family, Object::Route(route.route));
            core.release(Observed {
                event,
                kernel: Some(route.kernel),
                evidence,
            });
        }
    }

    /// Triggers that waited [`ANSWER_WAIT_NS`] go out alone; answers awaited longer than
    /// [`ANSWER_GIVE_UP_NS`] are given up.
    pub fn expire(&mut self, core: &mut Core, now_ns: u64) {
        for held in self.held.values_mut() {
            let waited = now_ns.saturating_sub(held.asked_ns);
            if waited >= ANSWER_WAIT_NS {
                if let Some(w) = held.waiting.take() {
                    core.problems.late_flushes += 1;
                    tracing::debug!("the route mirror has not answered; the trigger goes alone");
                    core.release(w.observed());
                }
            }
        }
        self.held
            .retain(|_, held| now_ns.saturating_sub(held.asked_ns) < ANSWER_GIVE_UP_NS);
    }

    /// Triggers are held for the mirror's answer.
    pub fn waiting(&self) -> bool {
        self.held.values().any(|h| h.waiting.is_some())
    }

    pub fn is_empty(&self) -> bool {
        self.held.is_empty()
    }
}

/// A route the kernel flushed because of `trigger`: the trigger's actor, request and namespace.
fn flushed_by(trigger: &Event, family: Option<crate::event::Family>, object: Object) -> Event {
    Event {
        object,
        family,
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
    }
}
