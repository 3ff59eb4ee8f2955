//! A userspace mirror of every network namespace's routes, to see the removals the kernel never
//! announces.
//!
//! When a link goes down or an address is removed, the kernel flushes every IPv4 route that
//! depended on it (`fib_sync_down_dev`, `fib_del_ifaddr`) and sends no RTM_DELROUTE. The mirror
//! keeps each namespace's routes from a dump plus the route multicast groups; after an
//! attributed trigger it dumps again, and what vanished — together with what the kernel
//! announced itself since the trigger (IPv6 does notify) — is what the trigger removed.

mod socket;

use std::{
    collections::HashMap,
    fs,
    os::unix::fs::MetadataExt as _,
    path::PathBuf,
    sync::{Arc, Mutex},
    thread,
    time::{Duration, Instant},
};

use crate::{
    correlate::Clock,
    event::{Family, Route, Rule},
};

pub use socket::MirrorError;

/// How often /run/netns is looked at for namespaces to add or let go.
const RESCAN: Duration = Duration::from_secs(1);
/// Kernel-announced deletions are kept this long (ns) for a trigger to claim them.
const KEEP_ANNOUNCED_NS: u64 = 5_000_000_000;

/// One route as the kernel described it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MirroredRoute {
    pub family: Option<Family>,
    pub route: Route,
}

impl MirroredRoute {
    /// The FIB's own key: one route per (family, table, prefix, tos, metric); a replace swaps
    /// the route under it.
    fn fib_key(&self) -> String {
        let r = &self.route;
        format!(
            "{:?}|{:?}|{:?}|{:?}|{:?}",
            self.family, r.table, r.dst, r.tos, r.priority
        )
    }

    /// Identity of a route in its namespace: its FIB key and what it leads to.
    fn key(&self) -> String {
        let r = &self.route;
        format!(
            "{}|{:?}|{:?}|{:?}",
            self.fib_key(),
            r.gateway,
            r.oif,
            r.route_type
        )
    }
}

/// Routes of one namespace, updated by its listener thread.
#[derive(Default)]
struct Table {
    routes: HashMap<String, MirroredRoute>,
    /// Deletions the kernel announced without a requester (portid 0), with the monotonic time
    /// (ns, the clock of `bpf_ktime_get_ns`) they arrived; newest last.
    announced: Vec<(u64, MirroredRoute)>,
    /// Deletions a request asked for, as the kernel described them, by request sequence number
    /// (with arrival time, ns). A burst of 100,000 deletes must not make claims quadratic.
    requested: HashMap<u32, Vec<(u64, Removed)>>,
    /// When old entries were last dropped (ns).
    pruned_at: u64,
}

/// An object as the kernel described it when it removed it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Removed {
    Route(MirroredRoute),
    Rule { family: Option<Family>, rule: Rule },
}

struct Namespace {
    table: Arc<Mutex<Table>>,
    dumper: socket::RouteSocket,
    /// Where it came from, to notice when it is gone.
    path: PathBuf,
    listener: socket::Stopper,
}

/// Mirrors of the host's namespace and every one under /run/netns.
pub struct Mirror {
    namespaces: HashMap<u64, Namespace>,
    last_scan: Option<Instant>,
    /// Times the listener had to re-dump because its socket overflowed (ENOBUFS).
    resyncs: Arc<std::sync::atomic::AtomicU64>,
    /// Woken when a listener hears a deletion, so a removal waiting for the kernel's view of it
    /// is released at once rather than at the next tick (restores depend on it).
    heard: Arc<tokio::sync::Notify>,
}

impl Mirror {
    pub fn new() -> Self {
        let mut mirror = Self {
            namespaces: HashMap::new(),
            last_scan: None,
            resyncs: Arc::default(),
            heard: Arc::default(),
        };
        mirror.rescan();
        mirror
    }

    /// Notified whenever a listener has recorded a deletion.
    pub fn heard(&self) -> Arc<tokio::sync::Notify> {
        Arc::clone(&self.heard)
    }

    pub fn resyncs(&self) -> u64 {
        self.resyncs.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Adds new namespaces and lets go of deleted ones (holding a socket in a namespace keeps it
    /// alive; the mirror must never be why a deleted namespace lingers). Rate-limited.
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
        self.namespaces.retain(|ino, ns| {
            let keep = present.iter().any(|(i, p)| i == ino && *p == ns.path);
            if !keep {
                ns.listener.stop();
            }
            keep
        });
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

    fn watch(&self, path: &std::path::Path) -> Result<Namespace, MirrorError> {
        let (listener, dumper) = socket::open_in(path)?;
        let table = Arc::new(Mutex::new(Table::default()));
        let initial = dumper.dump_routes()?;
        tracing::debug!(netns = %path.display(), routes = initial.len(), "mirroring routes");
        {
            let mut t = table.lock().unwrap_or_else(|p| p.into_inner());
            t.routes = initial.into_iter().map(|r| (r.key(), r)).collect();
        }
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
        })
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
        let fresh = match ns.dumper.dump_routes() {
            Ok(routes) => routes,
            Err(err) => {
                tracing::warn!(%err, netns_ino, "cannot re-dump routes; silent removals unknown");
                return Vec::new();
            }
        };
        let fresh: HashMap<String, MirroredRoute> =
            fresh.into_iter().map(|r| (r.key(), r)).collect();
        let mut table = ns.table.lock().unwrap_or_else(|p| p.into_inner());
        tracing::debug!(
            netns_ino,
            before = table.routes.len(),
            after = fresh.len(),
            "re-dumped routes"
        );
        let mut gone: Vec<MirroredRoute> = table
            .routes
            .iter()
            .filter(|(k, _)| !fresh.contains_key(*k))
            .map(|(_, r)| r.clone())
            .collect();
        let announced = std::mem::take(&mut table.announced);
        for (at, route) in announced {
            if at >= since_ns && !gone.iter().any(|g| g.key() == route.key()) {
                gone.push(route);
            }
        }
        table.routes = fresh;
        gone.sort_by_key(MirroredRoute::key);
        gone
    }
}

impl Mirror {
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
        let mut table = ns.table.lock().unwrap_or_else(|p| p.into_inner());
        let list = table.requested.get_mut(&seq)?;
        let at = list
            .iter()
            .position(|(t, removed)| *t >= since_ns && fits(removed))?;
        let (_, removed) = list.remove(at);
        if list.is_empty() {
            table.requested.remove(&seq);
        }
        Some(removed)
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

/// Applies notifications to `table` until the socket is shut down.
fn listen(
    socket: socket::RouteSocket,
    table: Arc<Mutex<Table>>,
    resyncs: Arc<std::sync::atomic::AtomicU64>,
    heard: &tokio::sync::Notify,
) {
    loop {
        match socket.next_notifications() {
            Ok(updates) => {
                let deletions = updates
                    .iter()
                    .any(|u| !matches!(u, socket::Update::Added { .. }));
                let mut t = table.lock().unwrap_or_else(|p| p.into_inner());
                let now = Clock::monotonic_ns();
                if now.saturating_sub(t.pruned_at) >= 1_000_000_000 {
                    t.pruned_at = now;
                    t.announced
                        .retain(|(at, _)| now.saturating_sub(*at) < KEEP_ANNOUNCED_NS);
                    t.requested.retain(|_, list| {
                        list.retain(|(at, _)| now.saturating_sub(*at) < KEEP_ANNOUNCED_NS);
                        !list.is_empty()
                    });
                }
                for update in updates {
                    match update {
                        socket::Update::Added { route, replaced } => {
                            if replaced {
                                let fib_key = route.fib_key();
                                t.routes.retain(|_, old| old.fib_key() != fib_key);
                            }
                            t.routes.insert(route.key(), route);
                        }
                        socket::Update::Deleted {
                            route,
                            by_kernel,
                            seq,
                        } => {
                            t.routes.remove(&route.key());
                            if by_kernel {
                                t.announced.push((now, route));
                            } else {
                                t.requested
                                    .entry(seq)
                                    .or_default()
                                    .push((now, Removed::Route(route)));
                            }
                        }
                        socket::Update::RuleDeleted { family, rule, seq } => {
                            let removed = Removed::Rule { family, rule };
                            t.requested.entry(seq).or_default().push((now, removed));
                        }
                    }
                }
                drop(t);
                if deletions {
                    heard.notify_one();
                }
            }
            Err(MirrorError::Overflow) => {
                resyncs.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                match socket.dump_routes() {
                    Ok(routes) => {
                        let mut t = table.lock().unwrap_or_else(|p| p.into_inner());
                        t.routes = routes.into_iter().map(|r| (r.key(), r)).collect();
                    }
                    Err(err) => tracing::warn!(%err, "route mirror resync failed"),
                }
            }
            Err(_) => return,
        }
    }
}
