//! The requests waiting for the kernel's answer, and the keys each answer finds its request by:
//! an ack by (socket, sequence number), a notification by (thread, sequence number), a replace's
//! news by (namespace, sequence number), an ioctl's return by thread.

use std::collections::{hash_map::Entry, HashMap, VecDeque};

use routeguard_common::{AckRecord, IoctlResultRecord};

use super::{with_result, Problems, Waiting, REPLY_WAIT_NS};
use crate::event::{Cause, Evidence, Kind};

/// (socket, sequence number): what an ack names.
pub(super) type Key = (u64, u32);

#[derive(Default)]
pub(super) struct Requests {
    /// (socket, sequence) → requests awaiting that reply, oldest first.
    netlink: HashMap<Key, VecDeque<Waiting>>,
    /// Netlink requests in arrival order (time, key), so expiry looks only at the oldest: a
    /// flush of a million routes without acks must not make every tick scan a million entries.
    arrivals: VecDeque<(u64, Key)>,
    /// (thread, sequence) → sockets of such waiting requests: a notification is made in the
    /// requesting thread and echoes the sequence number.
    by_thread: HashMap<(u32, u32), Vec<u64>>,
    /// (namespace, sequence) → sockets of waiting route replaces: the mirror's news names those.
    replaces: HashMap<(u32, u32), Vec<u64>>,
    /// thread id → ioctls awaiting their return.
    ioctl: HashMap<u32, Vec<Waiting>>,
    /// Requests released on the kernel's notification whose ack is still to come, by key, with
    /// how many; and when each was released (ns), oldest first, to forget acks that never come.
    answered: HashMap<Key, u32>,
    answered_order: VecDeque<(u64, Key)>,
}

fn unindex(index: &mut HashMap<(u32, u32), Vec<u64>>, at: (u32, u32), sock: u64) {
    if let Entry::Occupied(mut slot) = index.entry(at) {
        if let Some(i) = slot.get().iter().position(|s| *s == sock) {
            slot.get_mut().swap_remove(i);
        }
        if slot.get().is_empty() {
            slot.remove();
        }
    }
}

/// A route replace, which the mirror's news of the replaced route answers.
pub(super) fn is_route_replace(w: &Waiting) -> bool {
    w.event.cause == Cause::Replace && w.event.kind() == Kind::Route
}

impl Requests {
    pub fn add_netlink(&mut self, sock: u64, w: Waiting) {
        let Some(seq) = w.seq() else {
            return;
        };
        if let Some(tid) = w.tid() {
            self.by_thread.entry((tid, seq)).or_default().push(sock);
        }
        if is_route_replace(&w) {
            let at = (w.event.netns.inode, seq);
            self.replaces.entry(at).or_default().push(sock);
        }
        self.arrivals.push_back((w.since_ns, (sock, seq)));
        self.netlink.entry((sock, seq)).or_default().push_back(w);
    }

    pub fn add_ioctl(&mut self, tid: u32, w: Waiting) {
        self.ioctl.entry(tid).or_default().push(w);
    }

    /// Takes the request at `pos` under `key`, and out of every index.
    fn take_at(&mut self, key: Key, pos: usize) -> Option<Waiting> {
        let Entry::Occupied(mut slot) = self.netlink.entry(key) else {
            return None;
        };
        let w = slot.get_mut().remove(pos)?;
        if slot.get().is_empty() {
            slot.remove();
        }
        if let Some(tid) = w.tid() {
            unindex(&mut self.by_thread, (tid, key.1), key.0);
        }
        if is_route_replace(&w) {
            unindex(&mut self.replaces, (w.event.netns.inode, key.1), key.0);
        }
        Some(w)
    }

    /// Whether the ack of `key` answers a request that went out already, on the kernel's
    /// notification: then it says nothing new, and is consumed.
    fn answered_before(&mut self, key: Key) -> bool {
        let Entry::Occupied(mut slot) = self.answered.entry(key) else {
            return false;
        };
        *slot.get_mut() -= 1;
        if *slot.get() == 0 {
            slot.remove();
        }
        true
    }

    /// The oldest request waiting under `key`, taken unanswered (a denial stands for it).
    pub fn take(&mut self, key: Key) -> Option<Waiting> {
        self.take_at(key, 0)
    }

    /// The oldest request waiting under the ack's key (`None`: a peeked reply read again, or a
    /// reply to a request captured before routeguard started).
    fn ack(&mut self, key: Key) -> Option<Waiting> {
        self.take_at(key, 0)
    }

    /// The request `ack` answers, with its outcome; `None` when there is none to answer (or it
    /// went out already on the kernel's notification).
    pub fn acked(&mut self, ack: &AckRecord, problems: &mut Problems) -> Option<Waiting> {
        let key = (ack.sock, ack.seq);
        if self.answered_before(key) {
            return None;
        }
        let Some(mut w) = self.ack(key) else {
            problems.unmatched_replies += 1;
            return None;
        };
        with_result(&mut w.event, ack.error);
        w.evidence = Evidence::Ack;
        Some(w)
    }

    /// The ioctl `res` answers, with its outcome.
    pub fn returned(
        &mut self,
        res: &IoctlResultRecord,
        problems: &mut Problems,
    ) -> Option<Waiting> {
        let Some(mut w) = self.ioctl_result(res.tid) else {
            problems.unmatched_replies += 1;
            return None;
        };
        with_result(&mut w.event, i32::try_from(res.ret).unwrap_or(i32::MIN));
        w.evidence = Evidence::Ioctl;
        Some(w)
    }

    /// The request released now at `now_ns` without its ack, which will still come.
    pub fn answered(&mut self, key: Key, now_ns: u64) {
        *self.answered.entry(key).or_default() += 1;
        self.answered_order.push_back((now_ns, key));
    }

    /// The oldest ioctl of thread `tid` still waiting for its return.
    fn ioctl_result(&mut self, tid: u32) -> Option<Waiting> {
        let Entry::Occupied(mut slot) = self.ioctl.entry(tid) else {
            return None;
        };
        let w = slot.get_mut().remove(0);
        if slot.get().is_empty() {
            slot.remove();
        }
        Some(w)
    }

    /// The oldest request of thread `tid` with sequence number `seq` that `fits` (the sender's
    /// port id `port`, when the request knew its own, must be the same).
    pub fn claim_notified(
        &mut self,
        tid: u32,
        seq: u32,
        port: u32,
        fits: impl Fn(&Waiting) -> bool,
    ) -> Option<(Key, Waiting)> {
        let (sock, pos) = self.by_thread.get(&(tid, seq))?.iter().find_map(|&sock| {
            let list = self.netlink.get(&(sock, seq))?;
            let pos = list.iter().position(|w| {
                w.tid() == Some(tid) && (w.portid == 0 || w.portid == port) && fits(w)
            })?;
            Some((sock, pos))
        })?;
        self.take_at((sock, seq), pos).map(|w| ((sock, seq), w))
    }

    /// The oldest route replace of namespace `netns` with sequence number `seq` (and port id
    /// `port`, when the request knew its own).
    pub fn claim_replace(&mut self, netns: u32, seq: u32, port: u32) -> Option<(Key, Waiting)> {
        let (sock, pos) = self.replaces.get(&(netns, seq))?.iter().find_map(|&sock| {
            let list = self.netlink.get(&(sock, seq))?;
            let pos = list.iter().position(|w| {
                is_route_replace(w)
                    && w.event.netns.inode == netns
                    && (w.portid == 0 || w.portid == port)
            })?;
            Some((sock, pos))
        })?;
        self.take_at((sock, seq), pos).map(|w| ((sock, seq), w))
    }

    /// Requests that waited [`REPLY_WAIT_NS`] or longer by `now_ns` (ring time), oldest first.
    pub fn expire(&mut self, now_ns: u64) -> Vec<Waiting> {
        let old = |since: u64| now_ns.saturating_sub(since) >= REPLY_WAIT_NS;
        let mut expired = Vec::new();
        while let Some(&(since, key)) = self.arrivals.front() {
            if !old(since) {
                break;
            }
            self.arrivals.pop_front();
            // Still waiting only if nothing answered it: then it is the oldest under its key.
            if self
                .netlink
                .get(&key)
                .and_then(VecDeque::front)
                .is_some_and(|w| w.since_ns == since)
            {
                expired.extend(self.take_at(key, 0));
            }
        }
        self.ioctl.retain(|_, list| {
            let (gone, keep): (Vec<_>, Vec<_>) = list.drain(..).partition(|w| old(w.since_ns));
            expired.extend(gone);
            *list = keep;
            !list.is_empty()
        });
        while let Some(&(at, key)) = self.answered_order.front() {
            if !old(at) {
                break;
            }
            self.answered_order.pop_front();
            if let Entry::Occupied(mut slot) = self.answered.entry(key) {
                *slot.get_mut() -= 1;
                if *slot.get() == 0 {
                    slot.remove();
                }
            }
        }
        expired
    }

    pub fn is_empty(&self) -> bool {
        self.netlink.is_empty() && self.ioctl.is_empty() && self.answered.is_empty()
    }

    /// Requests under `key` (the kernel-function path enriches its records from them).
    pub fn under(&mut self, key: &Key) -> Option<&mut VecDeque<Waiting>> {
        self.netlink.get_mut(key)
    }

    pub fn contains(&self, key: &Key) -> bool {
        self.netlink.contains_key(key)
    }

    /// The newest ioctl of thread `tid` still waiting.
    pub fn newest_ioctl(&mut self, tid: u32) -> Option<&mut Waiting> {
        self.ioctl.get_mut(&tid).and_then(|l| l.last_mut())
    }

    pub fn has_ioctl(&self, tid: u32) -> bool {
        self.ioctl.contains_key(&tid)
    }
}
