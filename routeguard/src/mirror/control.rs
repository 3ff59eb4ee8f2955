//! The mirror's control thread (`routeguard-mirror`): takes the asks and does every blocking
//! thing the mirror does — namespace rescans, re-dumps, reconciles — so that nobody else waits
//! on a dump. Listeners run beside it, one per namespace (`listen.rs`).

use std::{
    collections::HashMap,
    os::fd::OwnedFd,
    path::{Path, PathBuf},
    sync::{atomic::AtomicU64, mpsc, Arc, Mutex, MutexGuard},
    thread,
    time::{Duration, Instant},
};

use super::{
    listen,
    socket::{self, dump_routes, dump_rules, MirrorError, Stopper},
    table::Table,
    Ask, Exited, Forget, MirroredRoute, News, NewsSink,
};
use crate::{
    clock::Clock,
    netlink::{netns, RouteSocket},
};

/// How often /run/netns is looked at for namespaces to add or let go.
const RESCAN: Duration = Duration::from_secs(1);
/// How soon a namespace whose table has doubtful removals is dumped again to settle them (see
/// `Table::forget`).
const RECONCILE: Duration = Duration::from_secs(5);
/// After a loss, every namespace is re-dumped once asks to do so have stopped for this long (a
/// loss comes in bursts), and at most [`SETTLE_LATEST`] after the first.
const SETTLE_QUIET: Duration = Duration::from_secs(1);
const SETTLE_LATEST: Duration = Duration::from_secs(5);

pub(super) enum Message {
    Ask(Ask),
    Stop,
}

struct Namespace {
    table: Arc<Mutex<Table>>,
    dumper: RouteSocket,
    /// Where it came from, to notice when it is gone.
    path: PathBuf,
    listener: Stopper,
    /// When its routes were last dumped.
    dumped: Instant,
}

impl Namespace {
    fn table(&self) -> MutexGuard<'_, Table> {
        self.table.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// A settle asked for: (first ask, latest ask).
type SettleAsked = Option<(Instant, Instant)>;

pub(super) struct Control {
    /// The `notify` socket filter for each listener; held open while the mirror runs.
    filter: Option<OwnedFd>,
    news: NewsSink,
    resyncs: Arc<AtomicU64>,
    /// By namespace inode.
    namespaces: HashMap<u64, Namespace>,
    last_scan: Option<Instant>,
    settle: SettleAsked,
}

impl Control {
    pub fn new(filter: Option<OwnedFd>, news: NewsSink, resyncs: Arc<AtomicU64>) -> Self {
        Self {
            filter,
            news,
            resyncs,
            namespaces: HashMap::new(),
            last_scan: None,
            settle: None,
        }
    }

    pub fn run(mut self, asks: &mpsc::Receiver<Message>) {
        loop {
            match asks.recv_timeout(RESCAN) {
                Ok(Message::Ask(ask)) => self.ask(ask),
                Ok(Message::Stop) | Err(mpsc::RecvTimeoutError::Disconnected) => break,
                Err(mpsc::RecvTimeoutError::Timeout) => {}
            }
            self.rescan();
            self.settle_if_due();
            self.reconcile();
        }
        for ns in self.namespaces.values() {
            ns.listener.stop();
        }
    }

    fn ask(&mut self, ask: Ask) {
        match ask {
            Ask::Forget(routes) => self.forget(routes),
            Ask::Vanished {
                token,
                netns,
                since_ns,
            } => {
                let (gone, announced) = self.vanished(netns, since_ns);
                (self.news)(News::Vanished {
                    token,
                    gone,
                    announced,
                });
            }
            Ask::Settle => {
                let now = Instant::now();
                let first = self.settle.map_or(now, |(first, _)| first);
                self.settle = Some((first, now));
            }
        }
    }

    /// Adds new namespaces and lets go of deleted ones (holding a socket in a namespace keeps it
    /// alive; the mirror must never be why a deleted namespace lingers). A deleted one that
    /// nothing else holds (no process in it, no bind mount) is being destroyed with everything
    /// in it: its last state is told ([`News::Exited`]). Rate-limited.
    pub fn rescan(&mut self) {
        if self.last_scan.is_some_and(|t| t.elapsed() < RESCAN) {
            return;
        }
        self.last_scan = Some(Instant::now());
        let present = netns::reachable();
        let gone: Vec<u64> = self
            .namespaces
            .iter()
            .filter(|(ino, ns)| !present.iter().any(|r| r.ino == **ino && r.path == ns.path))
            .map(|(ino, _)| *ino)
            .collect();
        for ino in gone {
            let Some(ns) = self.namespaces.remove(&ino) else {
                continue;
            };
            ns.listener.stop();
            if netns::held_elsewhere(ino) {
                tracing::debug!(netns_ino = ino, "namespace unnamed but still in use");
                continue;
            }
            let (routes, rules) = ns.table().last_state();
            (self.news)(News::Exited(Exited {
                // Namespace inodes fit in 32 bits (`proc_inum` allocates them from an
                // `unsigned int`).
                netns: ino as u32,
                name: ns
                    .path
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned()),
                routes,
                rules,
            }));
        }
        for netns::Reachable { ino, path } in present {
            if self.namespaces.contains_key(&ino) {
                continue;
            }
            match self.watch(ino, &path) {
                Ok(ns) => {
                    self.namespaces.insert(ino, ns);
                }
                Err(err) => {
                    tracing::warn!(netns = %path.display(), %err, "cannot mirror this namespace's routes")
                }
            }
        }
    }

    fn watch(&self, ino: u64, path: &Path) -> Result<Namespace, MirrorError> {
        let (listener, dumper) = socket::open_in(path, super::raw(self.filter.as_ref()))?;
        let now = Clock::monotonic_ns();
        let routes = dump_routes(&dumper)?;
        let rules = dump_rules(&dumper)?;
        tracing::debug!(netns = %path.display(), routes = routes.len(), rules = rules.len(), "mirroring");
        let table = Arc::new(Mutex::new(Table::new(routes, rules, now)));
        let stopper = listener.stopper();
        let (table_, resyncs, news) = (
            Arc::clone(&table),
            Arc::clone(&self.resyncs),
            Arc::clone(&self.news),
        );
        thread::Builder::new()
            .name("routeguard-listen".into())
            .spawn(move || listen::listen(listener, ino as u32, table_, resyncs, news))
            .map_err(MirrorError::Thread)?;
        Ok(Namespace {
            table,
            dumper,
            path: path.to_path_buf(),
            listener: stopper,
            dumped: Instant::now(),
        })
    }

    fn forget(&mut self, mut routes: Vec<Forget>) {
        routes.sort_by_key(|f| f.netns);
        for group in routes.chunk_by(|a, b| a.netns == b.netns) {
            let Some(ns) = self.namespaces.get(&u64::from(group[0].netns)) else {
                continue;
            };
            let mut table = ns.table();
            for f in group {
                table.forget(f.key, f.at_ns);
            }
        }
    }

    /// Routes of namespace `netns` removed since `since_ns` without a request of their own:
    /// (those gone from a fresh dump, those the kernel announced deleting).
    fn vanished(&mut self, netns: u32, since_ns: u64) -> (Vec<MirroredRoute>, Vec<MirroredRoute>) {
        let Some(ns) = self.namespaces.get_mut(&u64::from(netns)) else {
            tracing::debug!(netns, "no route mirror for this namespace");
            return (Vec::new(), Vec::new());
        };
        let started = Clock::monotonic_ns();
        let fresh = match dump_routes(&ns.dumper) {
            Ok(routes) => routes,
            Err(err) => {
                tracing::warn!(%err, netns, "cannot re-dump routes; silent removals unknown");
                return (Vec::new(), Vec::new());
            }
        };
        ns.dumped = Instant::now();
        let vanished = ns.table().vanished(fresh, since_ns, started);
        tracing::debug!(
            netns,
            gone = vanished.gone.len(),
            announced = vanished.announced.len(),
            "re-dumped routes after a trigger"
        );
        let decode = |bodies: Vec<Box<[u8]>>| -> Vec<MirroredRoute> {
            bodies
                .iter()
                .filter_map(|b| MirroredRoute::decode(b))
                .collect()
        };
        (decode(vanished.gone), decode(vanished.announced))
    }

    /// After a loss: dumps every namespace again once the asks have calmed (see
    /// [`SETTLE_QUIET`]), so routes whose forgets were lost with the records are let go.
    fn settle_if_due(&mut self) {
        let Some((first, latest)) = self.settle else {
            return;
        };
        if latest.elapsed() < SETTLE_QUIET && first.elapsed() < SETTLE_LATEST {
            return;
        }
        self.settle = None;
        for (ino, ns) in &mut self.namespaces {
            settle(*ino, ns, "after lost records");
        }
    }

    /// Dumps again the routes of each namespace with removals [`Table::forget`] could not
    /// settle, at most every [`RECONCILE`]: a route the mirror learnt only after its removal
    /// was reported (so it looked added again), or never held as the record names it, would
    /// otherwise stay, and a later replace could name it as the route it replaced.
    fn reconcile(&mut self) {
        for (ino, ns) in &mut self.namespaces {
            if ns.table().doubtful == 0 || ns.dumped.elapsed() < RECONCILE {
                continue;
            }
            settle(*ino, ns, "doubtful removals");
        }
    }
}

/// Replaces a namespace's routes by a fresh dump (what was learnt while it ran is kept).
fn settle(ino: u64, ns: &mut Namespace, why: &str) {
    ns.dumped = Instant::now();
    let doubts = ns.table().doubtful;
    let started = Clock::monotonic_ns();
    match dump_routes(&ns.dumper) {
        Ok(fresh) => {
            let mut table = ns.table();
            let gone = table.settle(fresh, started).len();
            table.doubtful -= doubts.min(table.doubtful);
            tracing::debug!(
                netns_ino = ino,
                doubts,
                gone,
                routes = table.routes.len(),
                why,
                "route mirror settled by a dump"
            );
        }
        Err(err) => {
            tracing::warn!(%err, netns_ino = ino, why, "cannot re-dump routes to settle the mirror")
        }
    }
}
