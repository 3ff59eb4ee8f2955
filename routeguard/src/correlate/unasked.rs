//! Removals no process asked for: routes the kernel expired, and what a destroyed network
//! namespace held. They come from the mirror alone and carry no actor — never a wrong process.

use super::{Clock, Correlator};
use crate::{
    event::{Capture, Cause, Event, Family, Kind, Netns, Outcome},
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
            let ev = unasked(self.clock, at_ns, Cause::Expired, netns, route.family);
            self.ready.push(Event {
                kind: Kind::Route,
                route: Some(route.route),
                ..ev
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
                let ev = unasked(
                    self.clock,
                    now,
                    Cause::NetnsExit,
                    netns.clone(),
                    route.family,
                );
                self.ready.push(Event {
                    kind: Kind::Route,
                    route: Some(route.route),
                    ..ev
                });
            }
            for (family, rule) in rules {
                let ev = unasked(self.clock, now, Cause::NetnsExit, netns.clone(), family);
                self.ready.push(Event {
                    kind: Kind::Rule,
                    rule: Some(rule),
                    ..ev
                });
            }
        }
    }
}

/// An event with no actor and no request; the caller sets the kind and the object.
fn unasked(clock: Clock, at_ns: u64, cause: Cause, netns: Netns, family: Option<Family>) -> Event {
    Event::removal(
        clock.wall(at_ns),
        Kind::Route,
        family,
        cause,
        Outcome::Removed,
        Capture::Netlink,
        netns,
    )
}
