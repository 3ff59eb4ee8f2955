//! Route replaces: a request (RTM_NEWROUTE with NLM_F_REPLACE) names the new route; the route it
//! took away is the one the mirror held under the same FIB key, which the mirror tells when it
//! hears the kernel announce the new one ([`News::Replaced`](crate::mirror::News), with the
//! request's port id and sequence number). The two meet here, whichever comes first: the
//! request waits a bounded time after its ack for the news, and news no request claimed yet is
//! kept, bounded in count and time (what is dropped is counted).

use std::collections::{hash_map::Entry, HashMap, VecDeque};

use super::{requests::Requests, Core, Waiting};
use crate::{
    clock::Clock,
    event::{Evidence, Object, Outcome},
    mirror::MirroredRoute,
};

/// How long an acked replace waits for the mirror's news (the mirror's listener may lag behind
/// the ring under a burst of additions).
const ACKED_WAIT_NS: u64 = 1_000_000_000;
/// News no request claimed is kept this long (its request may be queued behind a backlog)…
const NEWS_KEEP_NS: u64 = 60_000_000_000;
/// …and at most this many.
const NEWS_KEPT: usize = 65_536;

/// The mirror's news of one replace.
pub(super) struct Replaced {
    pub netns: u32,
    pub portid: u32,
    pub seq: u32,
    pub old: Option<Box<MirroredRoute>>,
    pub new: Box<MirroredRoute>,
}

impl Replaced {
    /// The request's event says what was replaced and by what. When the mirror held nothing
    /// under the key, the request's own view stays, with no replacement.
    pub fn join(self, w: &mut Waiting) {
        let Some(old) = self.old else {
            return;
        };
        w.event.object = Object::Route(old.route);
        if old.family.is_some() {
            w.event.family = old.family;
        }
        w.kernel = Some(old.kernel);
        w.event.replacement = Some(self.new.route);
    }

    /// News for the request of port id `portid` (0: unknown).
    fn fits(&self, portid: u32) -> bool {
        portid == 0 || self.portid == portid
    }
}

type At = (u32, u32);

#[derive(Default)]
pub(super) struct Replaces {
    /// News not claimed yet, by (namespace, sequence), with when it came (monotonic ns).
    news: HashMap<At, VecDeque<(u64, Replaced)>>,
    news_order: VecDeque<(u64, At)>,
    news_count: usize,
    /// Acked replaces waiting for their news, by (namespace, sequence), with when they were
    /// acked (monotonic ns).
    acked: HashMap<At, VecDeque<(u64, Waiting)>>,
    acked_order: VecDeque<(u64, At)>,
}

impl Replaces {
    /// The news for the replace `w` of port id `portid`, if it came.
    pub fn take_news(&mut self, netns: u32, seq: u32, portid: u32) -> Option<Replaced> {
        let Entry::Occupied(mut slot) = self.news.entry((netns, seq)) else {
            return None;
        };
        let pos = slot.get().iter().position(|(_, r)| r.fits(portid))?;
        let (_, news) = slot.get_mut().remove(pos)?;
        if slot.get().is_empty() {
            slot.remove();
        }
        self.news_count -= 1;
        Some(news)
    }

    /// Keeps news no request claimed yet; returns how many were dropped for room.
    pub fn keep_news(&mut self, news: Replaced, now_ns: u64) -> u64 {
        let at = (news.netns, news.seq);
        self.news.entry(at).or_default().push_back((now_ns, news));
        self.news_order.push_back((now_ns, at));
        self.news_count += 1;
        let mut dropped = 0;
        while self.news_count > NEWS_KEPT {
            dropped += self.drop_oldest_news();
        }
        dropped
    }

    /// Drops the oldest news still kept (1), or an order entry already claimed (0).
    fn drop_oldest_news(&mut self) -> u64 {
        let Some((came, at)) = self.news_order.pop_front() else {
            return 0;
        };
        let Entry::Occupied(mut slot) = self.news.entry(at) else {
            return 0;
        };
        let Some(pos) = slot.get().iter().position(|(t, _)| *t == came) else {
            return 0;
        };
        slot.get_mut().remove(pos);
        if slot.get().is_empty() {
            slot.remove();
        }
        self.news_count -= 1;
        1
    }

    /// An acked replace waits for its news.
    pub fn wait(&mut self, w: Waiting, now_ns: u64) {
        let at = (w.event.netns.inode, w.seq().unwrap_or(0));
        self.acked.entry(at).or_default().push_back((now_ns, w));
        self.acked_order.push_back((now_ns, at));
    }

    /// The acked replace these news are for.
    pub fn take_acked(&mut self, news: &Replaced) -> Option<Waiting> {
        let Entry::Occupied(mut slot) = self.acked.entry((news.netns, news.seq)) else {
            return None;
        };
        let pos = slot.get().iter().position(|(_, w)| news.fits(w.portid))?;
        let (_, w) = slot.get_mut().remove(pos)?;
        if slot.get().is_empty() {
            slot.remove();
        }
        Some(w)
    }

    /// Acked replaces that waited long enough by `now_ns` (they go as the request named them),
    /// and how many unclaimed news were dropped.
    pub fn expire(&mut self, now_ns: u64) -> (Vec<Waiting>, u64) {
        let mut released = Vec::new();
        while let Some(&(since, at)) = self.acked_order.front() {
            if now_ns.saturating_sub(since) < ACKED_WAIT_NS {
                break;
            }
            self.acked_order.pop_front();
            if let Entry::Occupied(mut slot) = self.acked.entry(at) {
                if slot.get().front().is_some_and(|(t, _)| *t == since) {
                    released.extend(slot.get_mut().pop_front().map(|(_, w)| w));
                }
                if slot.get().is_empty() {
                    slot.remove();
                }
            }
        }
        let mut dropped = 0;
        while self
            .news_order
            .front()
            .is_some_and(|(came, _)| now_ns.saturating_sub(*came) >= NEWS_KEEP_NS)
        {
            dropped += self.drop_oldest_news();
        }
        (released, dropped)
    }

    /// Nothing waits (kept news do not keep the correlator awake).
    pub fn is_idle(&self) -> bool {
        self.acked.is_empty()
    }
}

/// The mirror's news of a replace meets its request: acked and waiting for it, or still waiting
/// for its ack (then the news is its evidence), else it is kept for the request to come.
pub(super) fn news(core: &mut Core, requests: &mut Requests, replaces: &mut Replaces, r: Replaced) {
    if let Some(mut w) = replaces.take_acked(&r) {
        r.join(&mut w);
        core.release(w.observed());
        return;
    }
    if let Some((key, mut w)) = requests.claim_replace(r.netns, r.seq, r.portid) {
        if w.ack_requested() {
            requests.answered(key, core.ring_ns);
        }
        r.join(&mut w);
        w.event.outcome = Outcome::Removed;
        w.evidence = Evidence::Notification;
        core.release(w.observed());
        return;
    }
    core.problems.unclaimed_news += replaces.keep_news(r, Clock::monotonic_ns());
}

/// A route replace the kernel acked joins its news, or waits for it.
pub(super) fn acked(core: &mut Core, replaces: &mut Replaces, mut w: Waiting) {
    let seq = w.seq().unwrap_or(0);
    match replaces.take_news(w.event.netns.inode, seq, w.portid) {
        Some(news) => {
            news.join(&mut w);
            core.release(w.observed());
        }
        None => replaces.wait(w, Clock::monotonic_ns()),
    }
}

/// A replace request whose news came before it: joined and released at once (the news is its
/// evidence). Gives the request back when no news waits for it.
pub(super) fn arrived(
    core: &mut Core,
    requests: &mut Requests,
    replaces: &mut Replaces,
    sock: u64,
    mut w: Waiting,
) -> Option<Waiting> {
    let seq = w.seq()?;
    let Some(news) = replaces.take_news(w.event.netns.inode, seq, w.portid) else {
        return Some(w);
    };
    if w.ack_requested() {
        requests.answered((sock, seq), w.since_ns);
    }
    news.join(&mut w);
    w.event.outcome = Outcome::Removed;
    w.evidence = Evidence::Notification;
    core.release(w.observed());
    None
}

/// Releases what waited too long for the mirror, counting news dropped unclaimed.
pub(super) fn expire(core: &mut Core, replaces: &mut Replaces, now_ns: u64) {
    let (released, dropped) = replaces.expire(now_ns);
    core.problems.unclaimed_news += dropped;
    for w in released {
        core.release(w.observed());
    }
}
