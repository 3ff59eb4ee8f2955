//! A listener thread (`routeguard-listen`, one per namespace): applies the kernel's route and rule
//! notifications to the namespace's table and tells what it learnt. It blocks only on its own
//! socket (a receive timeout lets it notice when to stop).

use std::sync::{
    atomic::{AtomicU64, Ordering},
    Arc, Mutex,
};

use super::{
    socket::{dump_routes, dump_rules, Listener, Update},
    table::Table,
    MirroredRoute, News, NewsSink,
};
use crate::{
    clock::Clock,
    event::RuleKey,
    netlink::{SocketError, RECV_BUF},
};

/// Re-dumps in a row after an overflow while notifications keep overflowing during them.
const RESYNC_ATTEMPTS: u32 = 10;

/// Applies notifications to `table` until the socket is shut down. When the socket overflowed
/// (ENOBUFS: notifications were lost), re-dumps and diffs, so no removal goes unseen.
pub(super) fn listen(
    listener: Listener,
    netns: u32,
    table: Arc<Mutex<Table>>,
    resyncs: Arc<AtomicU64>,
    news: NewsSink,
) {
    let lock = || table.lock().unwrap_or_else(|p| p.into_inner());
    let mut buf = Vec::with_capacity(RECV_BUF);
    loop {
        match listener.next_notifications(&mut buf) {
            Ok(Some(updates)) => {
                let now = Clock::monotonic_ns();
                // Decoded for the news after the lock is let go.
                let mut replaced = Vec::new();
                let mut expired = Vec::new();
                let mut t = lock();
                t.prune(now);
                for update in updates {
                    match update {
                        Update::Added {
                            route,
                            replaced: true,
                            seq,
                            port,
                        } => {
                            let new = route.body.clone();
                            let old = t.add(route, true, now);
                            replaced.push((port, seq, old, new));
                        }
                        Update::Added { route, .. } => {
                            t.add(route, false, now);
                        }
                        Update::Deleted {
                            route,
                            by_kernel,
                            past_expiry,
                        } => expired.extend(t.delete(route, by_kernel, past_expiry, now)),
                        Update::RuleAdded { family, rule } => {
                            t.rules.insert(RuleKey::of(family, &rule), (family, rule));
                        }
                        Update::RuleDeleted { family, rule } => {
                            t.rules.remove(&RuleKey::of(family, &rule));
                        }
                    }
                }
                drop(t);
                for (portid, seq, old, new) in replaced {
                    let Some(new) = MirroredRoute::decode(&new) else {
                        continue;
                    };
                    news(News::Replaced {
                        netns,
                        portid,
                        seq,
                        old: old.and_then(|b| MirroredRoute::decode(&b)).map(Box::new),
                        new: Box::new(new),
                        at_ns: now,
                    });
                }
                tell_expired(&news, netns, now, expired);
            }
            Err(SocketError::Overflow) => resync(&listener, netns, &lock, &resyncs, &news),
            // Told to stop, or the socket failed.
            Ok(None) | Err(_) => return,
        }
    }
}

/// The re-dump shares the socket with the notifications, which a burst can overflow again while
/// it is read: then dump again, until one is clean.
fn resync<'a>(
    listener: &Listener,
    netns: u32,
    lock: &impl Fn() -> std::sync::MutexGuard<'a, Table>,
    resyncs: &AtomicU64,
    news: &NewsSink,
) {
    let socket = listener.socket();
    for attempt in 1..=RESYNC_ATTEMPTS {
        resyncs.fetch_add(1, Ordering::Relaxed);
        let now = Clock::monotonic_ns();
        match dump_routes(socket).and_then(|r| Ok((r, dump_rules(socket)?))) {
            Ok((routes, rules)) => {
                let (gone, expired) = lock().resync(routes, rules, now);
                tracing::debug!(gone, attempt, "route mirror resynced after ENOBUFS");
                tell_expired(news, netns, now, expired);
            }
            Err(err) => {
                tracing::warn!(%err, "route mirror resync failed");
                break;
            }
        }
        if !socket.take_lost_during_dump() {
            break;
        }
        if attempt == RESYNC_ATTEMPTS {
            tracing::warn!(
                "route mirror: notifications still overflowing after {RESYNC_ATTEMPTS} \
                 re-dumps; removals in this burst may be missed"
            );
        }
    }
}

fn tell_expired(news: &NewsSink, netns: u32, at_ns: u64, bodies: Vec<Box<[u8]>>) {
    for body in bodies {
        if let Some(route) = MirroredRoute::decode(&body) {
            news(News::Expired {
                netns,
                at_ns,
                route,
            });
        }
    }
}
