//! Removals no process asked for: routes the kernel expired, and what a destroyed network
//! namespace held. They come from the mirror alone and carry no actor — never a wrong process.

use super::Core;
use crate::{
    clock::Clock,
    event::{Capture, Cause, Event, Evidence, Family, Netns, Object, Observed, Outcome},
    mirror::{Exited, MirroredRoute},
};

impl Core {
    /// The kernel deleted `route` of namespace `netns` because its lifetime ran out; the mirror
    /// heard the kernel say so at `at_ns`.
    pub(super) fn expired(&mut self, netns: u32, at_ns: u64, route: MirroredRoute) {
        let netns = self.netns.lookup(netns);
        let event = unasked(
            self,
            at_ns,
            Cause::Expired,
            netns,
            route.family,
            Object::Route(route.route),
        );
        self.release(Observed {
            event,
            kernel: Some(route.kernel),
            evidence: Evidence::Notification,
        });
    }

    /// A namespace was destroyed with what it held: nothing from the kernel names each removal,
    /// so their evidence is none.
    pub(super) fn exited(&mut self, exited: Exited) {
        let now = Clock::monotonic_ns();
        let netns = Netns {
            inode: exited.netns,
            name: exited.name,
        };
        for route in exited.routes {
            let event = unasked(
                self,
                now,
                Cause::NetnsExit,
                netns.clone(),
                route.family,
                Object::Route(route.route),
            );
            self.release(Observed {
                event,
                kernel: Some(route.kernel),
                evidence: Evidence::None,
            });
        }
        for (family, rule) in exited.rules {
            let event = unasked(
                self,
                now,
                Cause::NetnsExit,
                netns.clone(),
                family,
                Object::Rule(rule),
            );
            self.release(Observed::alone(event));
        }
    }
}

/// An event with no actor and no request.
fn unasked(
    core: &Core,
    at_ns: u64,
    cause: Cause,
    netns: Netns,
    family: Option<Family>,
    object: Object,
) -> Event {
    Event::removal(
        core.clock.wall(at_ns),
        object,
        family,
        cause,
        Outcome::Removed,
        Capture::Netlink,
        netns,
    )
}
