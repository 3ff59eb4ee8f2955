//! One namespace's mirrored state, and how each kernel notification, dump and forget changes it.
//!
//! A route is held by its identity ([`RouteKey`]) with the kernel's own bytes for it: nothing is
//! decoded into words until a route is reported (a flush it vanished in, an expiry, the
//! namespace's exit). That keeps a mirrored route at a key, a few integers and its body.

use std::collections::HashMap;

use super::{socket::Learnt, MirroredRoute};
use crate::event::{Family, RouteKey, Rule, RuleKey};

/// Kernel-announced deletions are kept this long (ns) for a trigger to claim them.
const KEEP_NS: u64 = 5_000_000_000;
/// A route whose deadline is this close (ns) is past it: `rta_expires` is rounded down to
/// clock ticks (10 ms) when the mirror learns it.
const EXPIRY_SLACK_NS: u64 = 50_000_000;

/// A route the table holds: the kernel's body for it, when its lifetime ends and when it was
/// learnt (monotonic ns, the clock of `bpf_ktime_get_ns`): a removal reported by a record lets
/// go only of what was learnt before it.
pub(super) struct Held {
    pub body: Box<[u8]>,
    /// Monotonic ns its lifetime runs out (IPv6 `expires`); 0 when it has none.
    pub expires_at: u64,
    pub learnt_ns: u64,
}

impl Held {
    fn of(route: Learnt, now: u64) -> (RouteKey, Held) {
        let held = Held {
            body: route.body,
            expires_at: route.expires_at,
            learnt_ns: now,
        };
        (route.key, held)
    }

    /// The route's lifetime had run out at `now` (ns).
    fn lapsed(&self, now: u64) -> bool {
        self.expires_at != 0 && self.expires_at <= now.saturating_add(EXPIRY_SLACK_NS)
    }
}

/// A deletion the kernel announced without a requester (portid 0), or found missing by a resync,
/// for a trigger to claim.
pub(super) struct Announced {
    /// Monotonic ns it was learnt.
    pub at: u64,
    pub body: Box<[u8]>,
}

/// `routes` as a table holds them, each learnt at `now`.
fn held(routes: Vec<Learnt>, now: u64) -> HashMap<RouteKey, Held> {
    routes.into_iter().map(|r| Held::of(r, now)).collect()
}

/// What a fresh dump found gone since a trigger.
pub(super) struct Vanished {
    /// Held before the dump began and absent from it.
    pub gone: Vec<Box<[u8]>>,
    /// Deletions the kernel announced since the trigger.
    pub announced: Vec<Box<[u8]>>,
}

#[derive(Default)]
pub(super) struct Table {
    pub routes: HashMap<RouteKey, Held>,
    pub rules: HashMap<RuleKey, (Option<Family>, Rule)>,
    /// Newest last.
    pub announced: Vec<Announced>,
    /// When old entries were last dropped (ns).
    pruned_at: u64,
    /// Removals reported to [`Table::forget`] that the table could not settle for sure; a fresh
    /// dump settles them.
    pub doubtful: usize,
}

impl Table {
    /// The table of a dump made at `now` (ns).
    pub fn new(routes: Vec<Learnt>, rules: Vec<(Option<Family>, Rule)>, now: u64) -> Self {
        let mut table = Self::default();
        table.set(routes, rules, now);
        table
    }

    fn set(&mut self, routes: Vec<Learnt>, rules: Vec<(Option<Family>, Rule)>, now: u64) {
        self.routes = held(routes, now);
        self.rules = rules
            .into_iter()
            .map(|(family, rule)| (RuleKey::of(family, &rule), (family, rule)))
            .collect();
    }

    /// Drops announced deletions nobody claimed within [`KEEP_NS`], at most once a second.
    pub fn prune(&mut self, now: u64) {
        if now.saturating_sub(self.pruned_at) < 1_000_000_000 {
            return;
        }
        self.pruned_at = now;
        self.announced
            .retain(|a| now.saturating_sub(a.at) < KEEP_NS);
    }

    /// A route added at `now`; with `replaced` (NLM_F_REPLACE), the route it replaced is let
    /// go and returned: the newest held under the FIB key (family, table, prefix, tos, metric),
    /// for a route removed and added again may still be held beside it (its removal's record
    /// not read yet).
    pub fn add(&mut self, route: Learnt, replaced: bool, now: u64) -> Option<Box<[u8]>> {
        let mut old = None;
        if replaced {
            let fib_key = |k: &RouteKey| (k.family, k.table, k.dst, k.tos, k.metric);
            let mut under: Vec<(u64, RouteKey)> = self
                .routes
                .iter()
                .filter(|(k, _)| fib_key(k) == fib_key(&route.key))
                .map(|(k, held)| (held.learnt_ns, *k))
                .collect();
            under.sort_by_key(|(learnt, _)| std::cmp::Reverse(*learnt));
            for (i, (_, key)) in under.into_iter().enumerate() {
                let gone = self.routes.remove(&key);
                if i == 0 {
                    old = gone.map(|h| h.body);
                }
            }
        }
        let (key, held) = Held::of(route, now);
        self.routes.insert(key, held);
        old
    }

    /// A route deletion heard at `now`. One the kernel made itself (`by_kernel`) is kept for a
    /// trigger to claim, unless the route's lifetime had run out: then it is returned, an
    /// expiry. (Deletions a request made reach the listener only when the socket filter is not
    /// attached; the correlator tells the mirror of those.)
    pub fn delete(
        &mut self,
        route: Learnt,
        by_kernel: bool,
        past_expiry: bool,
        now: u64,
    ) -> Option<Box<[u8]>> {
        let had = self.routes.remove(&route.key);
        if !by_kernel {
            return None;
        }
        // Only a route the mirror still held can have expired now: one a trigger's re-dump
        // already took was that trigger's.
        if past_expiry || had.as_ref().is_some_and(|h| h.lapsed(now)) {
            return Some(route.body);
        }
        self.announced.push(Announced {
            at: now,
            body: route.body,
        });
        None
    }

    /// A route a request removed at `at_ns` (its notification, or a kernel-function record, told
    /// the correlator) is let go. What the table holds under its identity is let go only if it
    /// was learnt before the removal; learnt after, it may have been added again since, or learnt
    /// late, and a fresh dump must tell: so must a route the table does not hold (its addition
    /// not learnt yet, or held under another identity). A multipath route is held without
    /// gateway or device; a record names its first hop, so that is tried too.
    pub fn forget(&mut self, gone: RouteKey, at_ns: u64) {
        let id = match self.routes.get(&gone) {
            Some(_) => gone,
            None => RouteKey {
                gateway: None,
                ifindex: None,
                ..gone
            },
        };
        match self.routes.get(&id) {
            Some(held) if held.learnt_ns <= at_ns => {
                self.routes.remove(&id);
            }
            _ => self.doubtful += 1,
        }
    }

    /// A dump begun at `started_ns` replaces the routes held, except what was learnt since it
    /// began, which it may have passed by. Returns the bodies of routes held before it began
    /// and absent from it.
    pub fn settle(&mut self, fresh: Vec<Learnt>, started_ns: u64) -> Vec<(RouteKey, Held)> {
        let mut routes = held(fresh, started_ns);
        let mut gone = Vec::new();
        for (key, held) in self.routes.drain() {
            if held.learnt_ns >= started_ns {
                routes.insert(key, held);
            } else if !routes.contains_key(&key) {
                gone.push((key, held));
            }
        }
        self.routes = routes;
        gone
    }

    /// What vanished since a trigger at `since_ns`, given a dump begun at `started_ns`: the
    /// routes the dump no longer has, and the deletions the kernel announced since (IPv6 does).
    /// The table becomes the dump. Each is claimed once.
    pub fn vanished(&mut self, fresh: Vec<Learnt>, since_ns: u64, started_ns: u64) -> Vanished {
        let mut gone = self.settle(fresh, started_ns);
        gone.sort_by_key(|(key, _)| *key);
        Vanished {
            gone: gone.into_iter().map(|(_, h)| h.body).collect(),
            announced: self.claim_announced(since_ns),
        }
    }

    /// After the notification socket overflowed: fresh dumps replace the state, and every route
    /// that vanished meanwhile is kept as announced (a trigger's flush, which the lost
    /// notifications would have told), or returned when its lifetime had run out (an expiry).
    /// Returns (routes gone, expired bodies).
    pub fn resync(
        &mut self,
        routes: Vec<Learnt>,
        rules: Vec<(Option<Family>, Rule)>,
        now: u64,
    ) -> (usize, Vec<Box<[u8]>>) {
        let mut old = std::mem::take(&mut self.routes);
        self.set(routes, rules, now);
        old.retain(|key, _| !self.routes.contains_key(key));
        let gone = old.len();
        let mut old: Vec<(RouteKey, Held)> = old.into_iter().collect();
        old.sort_by_key(|(key, _)| *key);
        let mut expired = Vec::new();
        for (_, held) in old {
            if held.lapsed(now) {
                expired.push(held.body);
            } else {
                self.announced.push(Announced {
                    at: now,
                    body: held.body,
                });
            }
        }
        (gone, expired)
    }

    /// Kernel-announced deletions learnt at or after `since_ns`: what a trigger at `since_ns`
    /// removed. They are claimed (taken out).
    pub fn claim_announced(&mut self, since_ns: u64) -> Vec<Box<[u8]>> {
        let (mine, rest): (Vec<Announced>, Vec<Announced>) = std::mem::take(&mut self.announced)
            .into_iter()
            .partition(|a| a.at >= since_ns);
        self.announced = rest;
        mine.into_iter().map(|a| a.body).collect()
    }

    /// What the namespace held, for its exit: routes and rules, except those the kernel made
    /// itself (protocol `kernel`: they follow from its links and addresses), in key order.
    pub fn last_state(&self) -> (Vec<MirroredRoute>, Vec<(Option<Family>, Rule)>) {
        let made_by_kernel = |p: &Option<String>| p.as_deref() == Some("kernel");
        let mut keys: Vec<&RouteKey> = self.routes.keys().collect();
        keys.sort();
        let routes = keys
            .into_iter()
            .filter_map(|k| MirroredRoute::decode(&self.routes[k].body))
            .filter(|r| !made_by_kernel(&r.route.protocol))
            .collect();
        let mut rules: Vec<(Option<Family>, Rule)> = self
            .rules
            .values()
            .filter(|(_, r)| !made_by_kernel(&r.protocol))
            .cloned()
            .collect();
        rules.sort_by_cached_key(|(family, rule)| RuleKey::of(*family, rule));
        (routes, rules)
    }
}

#[cfg(test)]
mod tests;
