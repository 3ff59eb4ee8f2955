//! Removals no process asked for: routes the kernel expired, and what a destroyed network
//! namespace held. They come from the mirror alone and carry no actor — never a wrong process.

use super::{Clock, Correlator};
use crate::{
    event::{Capture, Cause, Event, Family, Netns, Object, Observed, Outcome},
    mirror::{Exited, Expired},
};

impl Correlator {
    /// Lets the mirror notice namespaces coming and going, and turns what it found removed
    /// without a request into events.
    pub(super) fn unasked(&mut self) {
        let Some(mirror) = &mut self.mirror else {
            return;
        };
        mirror.rescan();
        let exited = mirror.take_exited();
        let expired = mirror.take_expired();
        if self.kernel_function {
            // The kernel's own deletion functions report these, once each, already.
            mirror.reconcile();
            return;
        }
        for Expired {
            netns_ino,
            at_ns,
            route,
        } in expired
        {
            // Namespace inodes fit in 32 bits (`proc_inum` allocates them from an `unsigned int`).
            let netns = self.netns.lookup(netns_ino as u32);
            let object = Object::Route(route.route);
            let event = unasked(
                self.clock,
                at_ns,
                Cause::Expired,
                netns,
                route.family,
                object,
            );
            self.ready.push(Observed {
                event,
                kernel: Some(route.kernel),
            });
        }
        let now = Clock::monotonic_ns();
        for Exited {
            netns_ino,
            name,
            routes,
            rules,
        } in exited
        {
            let netns = Netns {
                inode: netns_ino as u32,
                name,
            };
            for route in routes {
                let event = unasked(
                    self.clock,
                    now,
                    Cause::NetnsExit,
                    netns.clone(),
                    route.family,
                    Object::Route(route.route),
                );
                self.ready.push(Observed {
                    event,
                    kernel: Some(route.kernel),
                });
            }
            for (family, rule) in rules {
                let object = Object::Rule(rule);
                let ev = unasked(
                    self.clock,
                    now,
                    Cause::NetnsExit,
                    netns.clone(),
                    family,
                    object,
                );
                self.ready.push(Observed::alone(ev));
            }
        }
    }
}

/// An event with no actor and no request.
fn unasked(
    clock: Clock,
    at_ns: u64,
    cause: Cause,
    netns: Netns,
    family: Option<Family>,
    object: Object,
) -> Event {
    Event::removal(
        clock.wall(at_ns),
        object,
        family,
        cause,
        Outcome::Removed,
        Capture::Netlink,
        netns,
    )
}
