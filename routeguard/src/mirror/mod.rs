//! A userspace mirror of every network namespace's routes, to see the removals the kernel never
//! announces.
//!
//! When a link goes down or an address is removed, the kernel flushes every IPv4 route that
//! depended on it (`fib_sync_down_dev`, `fib_del_ifaddr`) and sends no RTM_DELROUTE. The mirror
//! keeps each namespace's routes from a dump plus the route multicast groups; after an
//! attributed trigger it dumps again, and what vanished — together with what the kernel
//! announced itself since the trigger (IPv6 does notify) — is what the trigger removed.

mod held;
pub(crate) mod socket;
mod table;

use std::{
    collections::HashMap,
    fs,
    os::unix::fs::MetadataExt as _,
    path::PathBuf,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc, Mutex, MutexGuard,
    },
    thread,
    time::{Duration, Instant},
};

use crate::{
    clock::Clock,
    event::{Family, KernelBody, Route, RouteKey, Rule, RuleKey},
};

pub use socket::{MirrorError, RCVBUF_ENV};
use table::Table;

/// Re-dumps in a row after an overflow while notifications keep overflowing during them.
const RESYNC_ATTEMPTS: u32 = 10;

/// How often /run/netns is looked at for namespaces to add or let go.
const RESCAN: Duration = Duration::from_secs(1);

/// How soon a namespace whose table has doubtful removals is dumped again to settle them (see
/// [`Mirror::reconcile`]).
const RECONCILE: Duration = Duration::from_secs(5);

/// One route as the kernel described it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MirroredRoute {
    pub family: Option<Family>,
    pub route: Route,
    /// The kernel's own description of it, for a restore to re-add it whole.
    pub kernel: KernelBody,
    /// When its lifetime runs out (monotonic ns), for routes added with one (IPv6 `expires`).
    pub expires_at: Option<u64>,
}

impl MirroredRoute {
    /// Identity of a route in its namespace: its FIB key and what it leads to. The map key
    /// of the routes a table holds; sorting by it orders reported routes.
    fn key(&self) -> RouteKey {
        RouteKey::of(self.family, &self.route)
    }

    /// The FIB's own key: one route per (family, table, prefix, tos, metric); a replace swaps
    /// the route under it.
    fn same_fib_key(&self, other: &MirroredRoute) -> bool {
        let (a, b) = (&self.route, &other.route);
        self.family == other.family
            && a.table == b.table
            && a.dst == b.dst
            && a.tos == b.tos
            && a.priority == b.priority
    }
}

/// An object as the kernel described it when it removed it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Removed {
    Route(MirroredRoute),
    Rule {
        family: Option<Family>,
        rule: Rule,
        kernel: KernelBody,
    },
    /// A replace: the route that was under the FIB key, and the one that took its place.
    Replaced {
        old: Box<MirroredRoute>,
        new: Box<MirroredRoute>,
    },
}

/// What a namespace held when it was destroyed (routes and rules the kernel made itself, with
/// protocol `kernel`, left out: they follow from its links and addresses).
#[derive(Debug)]
pub struct Exited {
    pub netns_ino: u64,
    /// Its name under /run/netns.
    pub name: Option<String>,
    pub routes: Vec<MirroredRoute>,
    pub rules: Vec<(Option<Family>, Rule)>,
}

/// A route the kernel removed because its lifetime ran out.
#[derive(Debug)]
pub struct Expired {
    pub netns_ino: u64,
    /// When the mirror learnt it (monotonic ns).
    pub at_ns: u64,
    pub route: MirroredRoute,
}

struct Namespace {
    table: Arc<Mutex<Table>>,
    dumper: socket::RouteSocket,
    /// Where it came from, to notice when it is gone.
    path: PathBuf,
    listener: socket::Stopper,
    /// When its routes were last dumped.
    dumped: Instant,
}

impl Namespace {
    fn table(&self) -> MutexGuard<'_, Table> {
        self.table.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Mirrors of the host's namespace and every one under /run/netns.
pub struct Mirror {
    namespaces: HashMap<u64, Namespace>,
    last_scan: Option<Instant>,
    /// Times a listener had to re-dump because its socket overflowed (ENOBUFS).
    resyncs: Arc<AtomicU64>,
    /// Woken when a listener hears a deletion, so a removal waiting for the kernel's view of it
    /// is released at once rather than at the next tick (restores depend on it).
    heard: Arc<Waker>,
    /// Namespaces that went away since the last [`Mirror::take_exited`].
    exited: Vec<Exited>,
    /// The kernel-function path's records report route deletions: the listeners do not hear
    /// them (the kernel drops RTM_DELROUTE before it reaches their sockets, so a burst of
    /// deletions wakes no mirror thread), and [`Mirror::forget`] lets go of each route.
    deletions_from_records: bool,
}

impl Mirror {
    /// The syscall path's mirror: it hears every route and rule change.
    pub fn new() -> Self {
        Self::start(false)
    }

    /// The kernel-function path's mirror: the kernel's records report route deletions (see
    /// [`Mirror::forget`]); the mirror keeps the routes there are, for a replace to name the
    /// route it replaced, and the rules' notifications.
    pub fn for_kernel_records() -> Self {
        Self::start(true)
    }

    fn start(deletions_from_records: bool) -> Self {
        let mut mirror = Self {
            namespaces: HashMap::new(),
            last_scan: None,
            resyncs: Arc::default(),
            heard: Arc::default(),
            exited: Vec::new(),
            deletions_from_records,
        };
        mirror.rescan();
        mirror
    }

    /// Notified whenever a listener has recorded a deletion.
    pub fn wake_on_deletion(&self, wake: impl Fn() + Send + Sync + 'static) {
        let _ = self.heard.set(Box::new(wake));
    }

    pub fn resyncs(&self) -> u64 {
        self.resyncs.load(Ordering::Relaxed)
    }

    /// Adds new namespaces and lets go of deleted ones (holding a socket in a namespace keeps it
    /// alive; the mirror must never be why a deleted namespace lingers). A deleted one that
    /// nothing else holds (no process in it, no bind mount) is being destroyed with everything
    /// in it: its last state goes to [`Mirror::take_exited`]. Rate-limited.
    pub fn rescan(&mut self) {
        if self.last_scan.is_some_and(|t| t.elapsed() < RESCAN) {
            return;
        }
        self.last_scan = Some(Instant::now());
        let mut present: Vec<(u64, PathBuf)> = Vec::new();
        if let Ok(meta) = fs::metadata("/proc/self/ns/net") {
            present.push((meta.ino(), PathBuf::from("/proc/self/ns/net")));
        }
        if let Ok(dir) = fs::read_dir("/run/netns") {
            for entry in dir.flatten() {
                if let Ok(meta) = fs::metadata(entry.path()) {
                    present.push((meta.ino(), entry.path()));
                }
            }
        }
        let gone: Vec<u64> = self
            .namespaces
            .iter()
            .filter(|(ino, ns)| !present.iter().any(|(i, p)| i == *ino && *p == ns.path))
            .map(|(ino, _)| *ino)
            .collect();
        for ino in gone {
            let Some(ns) = self.namespaces.remove(&ino) else {
                continue;
            };
            ns.listener.stop();
            if held::elsewhere(ino) {
                tracing::debug!(netns_ino = ino, "namespace unnamed but still in use");
                continue;
            }
            let table = ns.table();
            let made_by_kernel = |p: &Option<String>| p.as_deref() == Some("kernel");
            let mut routes: Vec<MirroredRoute> = table
                .routes
                .values()
                .filter(|h| !made_by_kernel(&h.route.route.protocol))
                .map(|h| h.route.clone())
                .collect();
            routes.sort_by_key(MirroredRoute::key);
            let mut rules: Vec<(Option<Family>, Rule)> = table
                .rules
                .values()
                .filter(|(_, r)| !made_by_kernel(&r.protocol))
                .cloned()
                .collect();
            rules.sort_by_cached_key(|(family, rule)| RuleKey::of(*family, rule));
            self.exited.push(Exited {
                netns_ino: ino,
                name: ns
                    .path
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned()),
                routes,
                rules,
            });
        }
        for (ino, path) in present {
            if self.namespaces.contains_key(&ino) {
                continue;
            }
            match self.watch(&path) {
                Ok(ns) => {
                    self.namespaces.insert(ino, ns);
                }
                Err(err) => {
                    tracing::warn!(netns = %path.display(), %err, "cannot mirror this namespace's routes")
                }
            }
        }
    }

    /// Namespaces destroyed since the last call, with their last state.
    pub fn take_exited(&mut self) -> Vec<Exited> {
        std::mem::take(&mut self.exited)
    }

    /// Routes the kernel expired since the last call.
    pub fn take_expired(&mut self) -> Vec<Expired> {
        let mut out = Vec::new();
        for (ino, ns) in &self.namespaces {
            for (at_ns, route) in ns.table().take_expired() {
                out.push(Expired {
                    netns_ino: *ino,
                    at_ns,
                    route,
                });
            }
        }
        out
    }

    fn watch(&self, path: &std::path::Path) -> Result<Namespace, MirrorError> {
        let (listener, dumper) = socket::open_in(path, self.deletions_from_records)?;
        let now = Clock::monotonic_ns();
        let routes = dumper.dump_routes()?;
        let rules = dumper.dump_rules()?;
        tracing::debug!(netns = %path.display(), routes = routes.len(), rules = rules.len(), "mirroring");
        let mut table = Table::new(routes, rules, now);
        table.deletions_from_records = self.deletions_from_records;
        let table = Arc::new(Mutex::new(table));
        let stopper = listener.stopper();
        let thread_table = Arc::clone(&table);
        let resyncs = Arc::clone(&self.resyncs);
        let heard = Arc::clone(&self.heard);
        thread::Builder::new()
            .name("routeguard-mirror".into())
            .spawn(move || listen(listener, thread_table, resyncs, &heard))
            .map_err(MirrorError::Thread)?;
        Ok(Namespace {
            table,
            dumper,
            path: path.to_path_buf(),
            listener: stopper,
            dumped: Instant::now(),
        })
    }

    /// The kernel-function path's record of route `gone` removed from namespace `netns_ino` at
    /// `at_ns` (monotonic): the mirror lets go of it (see [`Table::forget`]).
    pub fn forget(&mut self, netns_ino: u32, family: Option<Family>, gone: &Route, at_ns: u64) {
        if let Some(ns) = self.namespaces.get(&u64::from(netns_ino)) {
            ns.table().forget(RouteKey::of(family, gone), at_ns);
        }
    }

    /// Dumps again the routes of each namespace with removals [`Mirror::forget`] could not
    /// settle, at most every [`RECONCILE`]: a route the mirror learnt only after its removal
    /// was reported (so it looked added again), or never held as the record names it, would
    /// otherwise stay, and a later replace could name it as the route it replaced.
    pub fn reconcile(&mut self) {
        for (ino, ns) in &mut self.namespaces {
            let doubts = ns.table().doubtful;
            if doubts == 0 || ns.dumped.elapsed() < RECONCILE {
                continue;
            }
            ns.dumped = Instant::now();
            let started = Clock::monotonic_ns();
            match ns.dumper.dump_routes() {
                Ok(fresh) => {
                    let mut table = ns.table();
                    table.settle(fresh, started);
                    table.doubtful -= doubts;
                    tracing::debug!(
                        netns_ino = ino,
                        doubts,
                        routes = table.routes.len(),
                        "route mirror settled by a dump"
                    );
                }
                Err(err) => {
                    tracing::warn!(%err, netns_ino = ino, "cannot re-dump routes to settle removals")
                }
            }
        }
    }

    /// Routes of namespace `netns_ino` removed since `since_ns` (monotonic) without a request of
    /// their own:
    /// those gone from a fresh dump, and those the kernel announced deleting. The mirror's
    /// state becomes the fresh dump.
    pub fn vanished(&mut self, netns_ino: u32, since_ns: u64) -> Vec<MirroredRoute> {
        let Some(ns) = self.namespaces.get(&u64::from(netns_ino)) else {
            tracing::debug!(netns_ino, "no route mirror for this namespace");
            return Vec::new();
        };
        let dumped_at = Clock::monotonic_ns();
        let fresh = match ns.dumper.dump_routes() {
            Ok(routes) => routes,
            Err(err) => {
                tracing::warn!(%err, netns_ino, "cannot re-dump routes; silent removals unknown");
                return Vec::new();
            }
        };
        let fresh: HashMap<RouteKey, MirroredRoute> =
            fresh.into_iter().map(|r| (r.key(), r)).collect();
        let mut table = ns.table();
        tracing::debug!(
            netns_ino,
            before = table.routes.len(),
            after = fresh.len(),
            "re-dumped routes"
        );
        // By key: a link-down can take thousands of routes, and they are compared both ways.
        let mut gone: HashMap<RouteKey, MirroredRoute> = table
            .routes
            .iter()
            .filter(|(k, _)| !fresh.contains_key(*k))
            .map(|(k, h)| (*k, h.route.clone()))
            .collect();
        for route in table.claim_announced(since_ns) {
            gone.entry(route.key()).or_insert(route);
        }
        // Keyed already: each identity is not worked out a second time.
        table.routes = fresh
            .into_iter()
            .map(|(id, route)| {
                let held = table::Held {
                    route,
                    learnt_ns: dumped_at,
                };
                (id, held)
            })
            .collect();
        let mut gone: Vec<(RouteKey, MirroredRoute)> = gone.into_iter().collect();
        gone.sort_by_key(|(key, _)| *key);
        gone.into_iter().map(|(_, r)| r).collect()
    }

    /// The kernel's own description of what the request with sequence number `seq` removed in
    /// namespace `netns_ino` since `since_ns`, if its notification has arrived and `fits` it.
    /// Each notification is claimed once. Never waits: without it the event keeps the request's
    /// view.
    pub fn claim(
        &mut self,
        netns_ino: u32,
        seq: u32,
        since_ns: u64,
        fits: impl Fn(&Removed) -> bool,
    ) -> Option<Removed> {
        let ns = self.namespaces.get(&u64::from(netns_ino))?;
        let mut table = ns.table();
        table.claim_requested(seq, since_ns, fits)
    }
}

impl Mirror {
    /// A route with destination `dst` in `table` that a resync of namespace `netns_ino` found
    /// gone at or after `since_ns` (its notification was lost to an overflow), that `fits`.
    pub fn claim_resynced(
        &mut self,
        netns_ino: u32,
        dst: Option<&str>,
        table: Option<u32>,
        since_ns: u64,
        fits: impl Fn(&MirroredRoute) -> bool,
    ) -> Option<MirroredRoute> {
        let ns = self.namespaces.get(&u64::from(netns_ino))?;
        let mut t = ns.table();
        t.claim_resynced(dst, table, since_ns, fits)
    }
}

impl Default for Mirror {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for Mirror {
    fn drop(&mut self) {
        for ns in self.namespaces.values() {
            ns.listener.stop();
        }
    }
}

/// What a listener calls when it has recorded a deletion (set once, by whoever waits for them).
type Waker = std::sync::OnceLock<Box<dyn Fn() + Send + Sync>>;

fn wake(heard: &Waker) {
    if let Some(wake) = heard.get() {
        wake();
    }
}

/// Applies notifications to `table` until the socket is shut down. When the socket overflowed
/// (ENOBUFS: notifications were lost), re-dumps and diffs, so no removal goes unseen.
fn listen(
    socket: socket::RouteSocket,
    table: Arc<Mutex<Table>>,
    resyncs: Arc<AtomicU64>,
    heard: &Waker,
) {
    let lock = || table.lock().unwrap_or_else(|p| p.into_inner());
    let mut buf = Vec::with_capacity(socket::RECV_BUF);
    loop {
        match socket.next_notifications(&mut buf) {
            Ok(updates) => {
                // A replace removes a route too.
                let deletions = updates.iter().any(|u| match u {
                    socket::Update::Added { replaced, .. } => *replaced,
                    socket::Update::RuleAdded { .. } => false,
                    _ => true,
                });
                let mut t = lock();
                let now = Clock::monotonic_ns();
                t.prune(now);
                for update in updates {
                    t.apply(update, now);
                }
                drop(t);
                if deletions {
                    wake(heard);
                }
            }
            Err(MirrorError::Overflow) => {
                // The re-dump shares the socket with the notifications, which a burst can
                // overflow again while it is read: then dump again, until one is clean.
                for attempt in 1..=RESYNC_ATTEMPTS {
                    resyncs.fetch_add(1, Ordering::Relaxed);
                    let now = Clock::monotonic_ns();
                    match socket
                        .dump_routes()
                        .and_then(|r| Ok((r, socket.dump_rules()?)))
                    {
                        Ok((routes, rules)) => {
                            let gone = lock().resync(routes, rules, now);
                            tracing::debug!(gone, attempt, "route mirror resynced after ENOBUFS");
                            wake(heard);
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
            Err(_) => return,
        }
    }
}
