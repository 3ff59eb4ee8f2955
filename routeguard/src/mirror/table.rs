//! One namespace's mirrored state, and how each kernel notification changes it.

use std::{collections::HashMap, hash::Hash};

use super::{socket::Update, MirroredRoute, Removed};
use crate::event::{Family, Prefix, RouteKey, Rule, RuleKey};

/// Kernel-announced deletions are kept this long (ns) for a trigger to claim them.
const KEEP_NS: u64 = 5_000_000_000;
/// Requested deletions are kept this long (ns) for their request to claim them. The request
/// comes from the ring, which in a burst is read long after the kernel announced the deletion
/// (`ip route flush` of a million routes: 66 s behind; with 5 s, 63 % of its deletes found no
/// notification left and came out `unknown`). Each entry is the route the table just let go,
/// so memory stays what the table held.
const KEEP_REQUESTED_NS: u64 = 120_000_000_000;
/// A route whose deadline is this close (ns) is past it: `rta_expires` is rounded down to
/// clock ticks (10 ms) when the mirror learns it.
const EXPIRY_SLACK_NS: u64 = 50_000_000;

/// A deletion the kernel announced without a requester (portid 0), or found missing after a
/// resync.
pub(super) struct Announced {
    /// Monotonic time (ns, the clock of `bpf_ktime_get_ns`) it was learnt.
    pub at: u64,
    pub route: MirroredRoute,
    /// The route's lifetime had run out: the kernel expired it.
    pub expired: bool,
}

/// A route the table holds, with when it was learnt (monotonic ns): a removal the
/// kernel-function path reports lets go only of what was learnt before it.
pub(super) struct Held {
    pub route: MirroredRoute,
    pub learnt_ns: u64,
}

/// `routes` as a table holds them, each learnt at `now`.
pub(super) fn held(routes: Vec<MirroredRoute>, now: u64) -> HashMap<RouteKey, Held> {
    routes
        .into_iter()
        .map(|route| {
            let held = Held {
                route,
                learnt_ns: now,
            };
            (held.route.key(), held)
        })
        .collect()
}

#[derive(Default)]
pub(super) struct Table {
    pub routes: HashMap<RouteKey, Held>,
    pub rules: HashMap<RuleKey, (Option<Family>, Rule)>,
    /// Newest last.
    pub announced: Vec<Announced>,
    /// Deletions (and replaces) a request asked for, as the kernel described them, by request
    /// sequence number (with arrival time, ns). A burst of 100,000 deletes must not make claims
    /// quadratic.
    pub requested: HashMap<u32, Vec<(u64, Removed)>>,
    /// Routes found gone by a resync (their notifications were lost), by [`route_identity`],
    /// with when (ns): a request of a burst that overflowed the socket finds its route here.
    pub resynced: HashMap<Destination, Vec<(u64, MirroredRoute)>>,
    /// When old entries were last dropped (ns).
    pruned_at: u64,
    /// The kernel-function path's records report route deletions, and the listener does not
    /// hear them (`socket::open_in`): the table only keeps what is there (for replaces), and
    /// nothing for a request or a trigger to claim.
    pub deletions_from_records: bool,
    /// Removals a record reported that the table could not settle for sure (see
    /// [`Table::forget`]); a fresh dump settles them.
    pub doubtful: usize,
}

/// Takes the first entry under `key` learnt at or after `since_ns` that `fits` (dropping the
/// key with its last entry).
fn take<K: Hash + Eq, T>(
    map: &mut HashMap<K, Vec<(u64, T)>>,
    key: &K,
    since_ns: u64,
    fits: impl Fn(&T) -> bool,
) -> Option<T> {
    let list = map.get_mut(key)?;
    let at = list.iter().position(|(t, v)| *t >= since_ns && fits(v))?;
    let (_, value) = list.remove(at);
    if list.is_empty() {
        map.remove(key);
    }
    Some(value)
}

/// What a delete request names of a route: its table and destination.
type Destination = (Option<u32>, Option<Prefix>);

pub(super) fn route_identity(dst: Option<&str>, table: Option<u32>) -> Destination {
    (table, dst.and_then(Prefix::parse))
}

/// The route's lifetime had run out at `now` (ns).
fn lapsed(route: &MirroredRoute, now: u64) -> bool {
    route
        .expires_at
        .is_some_and(|at| at <= now.saturating_add(EXPIRY_SLACK_NS))
}

impl Table {
    /// The table of a dump made at `now` (ns).
    pub fn new(routes: Vec<MirroredRoute>, rules: Vec<(Option<Family>, Rule)>, now: u64) -> Self {
        let mut table = Self::default();
        table.set(routes, rules, now);
        table
    }

    fn set(&mut self, routes: Vec<MirroredRoute>, rules: Vec<(Option<Family>, Rule)>, now: u64) {
        self.routes = held(routes, now);
        self.rules = rules
            .into_iter()
            .map(|(family, rule)| (RuleKey::of(family, &rule), (family, rule)))
            .collect();
    }

    /// Drops claims nobody made within [`KEEP_NS`], at most once a second. Expired routes stay
    /// until they are reported.
    pub fn prune(&mut self, now: u64) {
        if now.saturating_sub(self.pruned_at) < 1_000_000_000 {
            return;
        }
        self.pruned_at = now;
        let fresh = |at: u64| now.saturating_sub(at) < KEEP_NS;
        self.announced.retain(|a| a.expired || fresh(a.at));
        let wanted = |at: u64| now.saturating_sub(at) < KEEP_REQUESTED_NS;
        self.requested.retain(|_, list| {
            list.retain(|(at, _)| wanted(*at));
            !list.is_empty()
        });
        self.resynced.retain(|_, list| {
            list.retain(|(at, _)| wanted(*at));
            !list.is_empty()
        });
    }

    pub fn apply(&mut self, update: Update, now: u64) {
        match update {
            Update::Added {
                route,
                replaced,
                seq,
            } => {
                if replaced {
                    // Newest first, so that is what the request claims: on the
                    // kernel-function path a route removed and added again under the key may
                    // still be held (its record not read yet) beside the one replaced.
                    let mut old: Vec<(u64, RouteKey)> = self
                        .routes
                        .iter()
                        .filter(|(_, held)| held.route.same_fib_key(&route))
                        .map(|(k, held)| (held.learnt_ns, *k))
                        .collect();
                    old.sort_by_key(|(learnt, _)| std::cmp::Reverse(*learnt));
                    for (_, key) in old {
                        if let Some(Held { route: old, .. }) = self.routes.remove(&key) {
                            let removed = Removed::Replaced {
                                old: Box::new(old),
                                new: Box::new(route.clone()),
                            };
                            self.request_removed(seq, now, removed);
                        }
                    }
                }
                let held = Held {
                    route,
                    learnt_ns: now,
                };
                self.routes.insert(held.route.key(), held);
            }
            Update::Deleted {
                route,
                by_kernel,
                seq,
                past_expiry,
            } => {
                let had = self.routes.remove(&route.key());
                if self.deletions_from_records {
                    // Nothing to claim: the records report deletions.
                } else if by_kernel {
                    // Only a route the mirror still held can have expired now: one a trigger's
                    // re-dump already took was that trigger's.
                    let expired =
                        past_expiry || had.as_ref().is_some_and(|h| lapsed(&h.route, now));
                    self.announced.push(Announced {
                        at: now,
                        route,
                        expired,
                    });
                } else {
                    self.request_removed(seq, now, Removed::Route(route));
                }
            }
            Update::RuleAdded { family, rule } => {
                self.rules
                    .insert(RuleKey::of(family, &rule), (family, rule));
            }
            Update::RuleDeleted {
                family,
                rule,
                kernel,
                seq,
            } => {
                self.rules.remove(&RuleKey::of(family, &rule));
                let removed = Removed::Rule {
                    family,
                    rule,
                    kernel,
                };
                self.request_removed(seq, now, removed);
            }
        }
    }

    /// A route the kernel-function path's record reports removed at `at_ns` (the listener does
    /// not hear deletions then) is let go. What the table holds under its identity is let go
    /// only if it was learnt before the removal; learnt after, it may have been added again
    /// since, or learnt late, and a fresh dump must tell: so must a route the table does not
    /// hold (its addition not learnt yet, or held under another identity). A multipath route is
    /// held without gateway or device; the record names its first hop, so that is tried too.
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

    /// A dump begun at `started_ns` replaces the routes held: except what was learnt since it
    /// began, which it may have passed by (additions; the listener hears no deletions).
    pub fn settle(&mut self, fresh: Vec<MirroredRoute>, started_ns: u64) {
        let mut routes = held(fresh, started_ns);
        for (id, held) in self.routes.drain() {
            if held.learnt_ns >= started_ns {
                routes.insert(id, held);
            }
        }
        self.routes = routes;
    }

    /// Keeps what request `seq` removed for the request to claim. Almost every request removes
    /// one object: its list starts with room for one (a default Vec's first push makes room
    /// for four, over a kilobyte per notification that glibc serves from its slow large bins).
    fn request_removed(&mut self, seq: u32, now: u64, removed: Removed) {
        self.requested
            .entry(seq)
            .or_insert_with(|| Vec::with_capacity(1))
            .push((now, removed));
    }

    /// After the notification socket overflowed: the fresh dumps replace the state, and every
    /// route that vanished meanwhile is kept as announced (a trigger's flush or an expiry,
    /// which the lost notifications would have told). Routes deleted by requests land here
    /// too; their events come from the captured requests, and no trigger claims them unless it
    /// ran at the same moment.
    pub fn resync(
        &mut self,
        routes: Vec<MirroredRoute>,
        rules: Vec<(Option<Family>, Rule)>,
        now: u64,
    ) -> usize {
        let mut old = std::mem::take(&mut self.routes);
        self.set(routes, rules, now);
        old.retain(|key, _| !self.routes.contains_key(key));
        let gone = old.len();
        if self.deletions_from_records {
            // Their records reported them.
            return gone;
        }
        let mut gone_routes: Vec<MirroredRoute> = old.into_values().map(|h| h.route).collect();
        gone_routes.sort_by_key(MirroredRoute::key);
        for route in gone_routes {
            let expired = lapsed(&route, now);
            if !expired {
                let r = &route.route;
                let key = route_identity(r.dst.as_deref(), r.table);
                self.resynced
                    .entry(key)
                    .or_default()
                    .push((now, route.clone()));
            }
            self.announced.push(Announced {
                at: now,
                route,
                expired,
            });
        }
        gone
    }

    /// A route a resync found gone at or after `since_ns` with this destination and table, that
    /// `fits`; taken out.
    pub fn claim_resynced(
        &mut self,
        dst: Option<&str>,
        table: Option<u32>,
        since_ns: u64,
        fits: impl Fn(&MirroredRoute) -> bool,
    ) -> Option<MirroredRoute> {
        take(
            &mut self.resynced,
            &route_identity(dst, table),
            since_ns,
            fits,
        )
    }

    /// What the request with sequence number `seq` removed, learnt at or after `since_ns`, that
    /// `fits`; taken out.
    pub fn claim_requested(
        &mut self,
        seq: u32,
        since_ns: u64,
        fits: impl Fn(&Removed) -> bool,
    ) -> Option<Removed> {
        take(&mut self.requested, &seq, since_ns, fits)
    }

    /// Kernel-announced deletions learnt at or after `since_ns` that no expiry explains: what a
    /// trigger at `since_ns` removed. They are claimed (taken out).
    pub fn claim_announced(&mut self, since_ns: u64) -> Vec<MirroredRoute> {
        let (mine, rest): (Vec<Announced>, Vec<Announced>) = std::mem::take(&mut self.announced)
            .into_iter()
            .partition(|a| a.at >= since_ns && !a.expired);
        self.announced = rest;
        mine.into_iter().map(|a| a.route).collect()
    }

    /// Routes the kernel expired, with when that was learnt (ns); each is taken once.
    pub fn take_expired(&mut self) -> Vec<(u64, MirroredRoute)> {
        if !self.announced.iter().any(|a| a.expired) {
            return Vec::new();
        }
        let (expired, rest): (Vec<Announced>, Vec<Announced>) = std::mem::take(&mut self.announced)
            .into_iter()
            .partition(|a| a.expired);
        self.announced = rest;
        expired.into_iter().map(|a| (a.at, a.route)).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{KernelBody, Route};

    fn route(dst: &str, gateway: &str, expires_at: Option<u64>) -> MirroredRoute {
        MirroredRoute {
            family: Some(Family::Inet6),
            route: Route {
                table: Some(77),
                dst: Some(dst.into()),
                gateway: Some(gateway.into()),
                priority: Some(1024),
                ..Route::default()
            },
            kernel: KernelBody::new(dst.as_bytes()),
            expires_at,
        }
    }

    #[test]
    fn replace_keeps_the_old_route_for_the_request() {
        let old = route("2001:db8:1::/64", "2001:db8::2", None);
        let new = route("2001:db8:1::/64", "2001:db8::3", None);
        let mut t = Table::new(vec![old.clone()], Vec::new(), 0);
        t.apply(
            Update::Added {
                route: new.clone(),
                replaced: true,
                seq: 7,
            },
            100,
        );
        assert_eq!(t.routes.len(), 1);
        assert!(t.routes.contains_key(&new.key()));
        let claimed = &t.requested[&7];
        assert_eq!(claimed.len(), 1);
        let want = Removed::Replaced {
            old: Box::new(old),
            new: Box::new(new),
        };
        assert_eq!(claimed[0].1, want);
    }

    #[test]
    fn a_replace_names_the_newest_route_under_its_key() {
        let stale = route("2001:db8:1::/64", "2001:db8::2", None);
        let live = route("2001:db8:1::/64", "2001:db8::4", None);
        let new = route("2001:db8:1::/64", "2001:db8::3", None);
        let mut t = Table::new(vec![stale], Vec::new(), 0);
        t.deletions_from_records = true;
        let added = |route: &MirroredRoute, replaced, seq| Update::Added {
            route: route.clone(),
            replaced,
            seq,
        };
        t.apply(added(&live, false, 1), 10);
        t.apply(added(&new, true, 2), 20);
        let claimed = t.claim_requested(2, 0, |_| true);
        let Some(Removed::Replaced { old, .. }) = claimed else {
            panic!("no replace: {claimed:?}");
        };
        assert_eq!(*old, live);
    }

    #[test]
    fn a_record_lets_go_of_a_route_learnt_before_its_removal() {
        let a = route("2001:db8:1::/64", "2001:db8::2", None);
        let mut t = Table::new(vec![a.clone()], Vec::new(), 10);
        t.deletions_from_records = true;
        t.forget(a.key(), 20);
        assert!(t.routes.is_empty());
        assert_eq!(t.doubtful, 0);
    }

    #[test]
    fn a_route_learnt_after_its_reported_removal_waits_for_a_dump() {
        let a = route("2001:db8:1::/64", "2001:db8::2", None);
        let b = route("2001:db8:2::/64", "2001:db8::2", None);
        let mut t = Table::new(Vec::new(), Vec::new(), 0);
        t.deletions_from_records = true;
        let added = |route: &MirroredRoute| Update::Added {
            route: route.clone(),
            replaced: false,
            seq: 1,
        };
        // Added again after its removal, or learnt late: only the kernel can tell.
        t.apply(added(&a), 30);
        t.forget(a.key(), 20);
        assert!(t.routes.contains_key(&a.key()));
        // Not held at all (its addition not learnt yet).
        t.forget(b.key(), 20);
        assert_eq!(t.doubtful, 2);
        // A dump begun at 40 does not have `a`; `b` was learnt while it ran.
        t.apply(added(&b), 45);
        t.settle(Vec::new(), 40);
        assert!(!t.routes.contains_key(&a.key()));
        assert!(t.routes.contains_key(&b.key()));
    }

    #[test]
    fn a_multipath_route_is_let_go_by_the_record_of_its_first_hop() {
        let mut held = route("2001:db8:1::/64", "2001:db8::2", None);
        held.route.gateway = None;
        let first_hop = route("2001:db8:1::/64", "2001:db8::2", None);
        let mut t = Table::new(vec![held], Vec::new(), 10);
        t.forget(first_hop.key(), 20);
        assert!(t.routes.is_empty());
        assert_eq!(t.doubtful, 0);
    }

    #[test]
    fn with_records_reporting_deletions_nothing_is_kept_to_claim() {
        let a = route("2001:db8:1::/64", "2001:db8::2", None);
        let b = route("2001:db8:2::/64", "2001:db8::2", None);
        let mut t = Table::new(vec![a.clone(), b.clone()], Vec::new(), 0);
        t.deletions_from_records = true;
        let update = Update::Deleted {
            route: a,
            by_kernel: false,
            seq: 9,
            past_expiry: false,
        };
        t.apply(update, 10);
        assert!(t.requested.is_empty());
        assert_eq!(t.resync(Vec::new(), Vec::new(), 20), 1);
        assert!(t.announced.is_empty() && t.resynced.is_empty());
    }

    #[test]
    fn kernel_deletion_of_a_lapsed_route_is_an_expiry() {
        let now = 10_000_000_000;
        let lapsing = route("2001:db8:1::/64", "2001:db8::2", Some(now - 1));
        let lasting = route(
            "2001:db8:2::/64",
            "2001:db8::2",
            Some(now + 3_600_000_000_000),
        );
        let mut t = Table::new(vec![lapsing.clone(), lasting.clone()], Vec::new(), 0);
        for r in [&lapsing, &lasting] {
            let update = Update::Deleted {
                route: r.clone(),
                by_kernel: true,
                seq: 0,
                past_expiry: false,
            };
            t.apply(update, now);
        }
        assert_eq!(t.claim_announced(now), vec![lasting]);
        assert_eq!(t.take_expired(), vec![(now, lapsing)]);
        assert!(t.take_expired().is_empty());
    }

    #[test]
    fn a_requested_deletion_waits_for_a_request_read_a_minute_late() {
        const S: u64 = 1_000_000_000;
        let a = route("2001:db8:1::/64", "2001:db8::2", None);
        let mut t = Table::new(vec![a.clone()], Vec::new(), 0);
        let update = Update::Deleted {
            route: a,
            by_kernel: false,
            seq: 9,
            past_expiry: false,
        };
        t.apply(update, 10 * S);
        t.prune(80 * S);
        assert!(
            t.requested.contains_key(&9),
            "kept 70 s for a lagging request"
        );
        t.prune(10 * S + KEEP_REQUESTED_NS);
        assert!(t.requested.is_empty(), "dropped once nobody can claim it");
    }

    #[test]
    fn resync_keeps_what_vanished_while_notifications_were_lost() {
        let a = route("2001:db8:1::/64", "2001:db8::2", None);
        let b = route("2001:db8:2::/64", "2001:db8::2", None);
        let mut t = Table::new(vec![a.clone(), b.clone()], Vec::new(), 0);
        assert_eq!(t.resync(vec![a], Vec::new(), 5), 1);
        assert_eq!(t.claim_announced(5), vec![b]);
    }

    #[test]
    fn a_request_whose_notification_was_lost_finds_its_route_in_the_resync() {
        let a = route("2001:db8:1::/64", "2001:db8::2", None);
        let b = route("2001:db8:2::/64", "2001:db8::2", None);
        let mut t = Table::new(vec![a.clone(), b.clone()], Vec::new(), 0);
        t.resync(Vec::new(), Vec::new(), 50);
        let dst = Some("2001:db8:2::/64");
        assert_eq!(
            t.claim_resynced(dst, Some(78), 10, |_| true),
            None,
            "other table"
        );
        assert_eq!(
            t.claim_resynced(dst, Some(77), 60, |_| true),
            None,
            "gone before it was asked"
        );
        assert_eq!(t.claim_resynced(dst, Some(77), 10, |_| true), Some(b));
        assert_eq!(
            t.claim_resynced(dst, Some(77), 10, |_| true),
            None,
            "claimed once"
        );
        assert_eq!(t.resynced.len(), 1, "a is still there");
    }
}
