//! A userspace mirror of every network namespace's routes, to see the removals the kernel never
//! announces, and the route a replace took away.
//!
//! When a link goes down or an address is removed, the kernel flushes every IPv4 route that
//! depended on it (`fib_sync_down_dev`, `fib_del_ifaddr`) and sends no RTM_DELROUTE. The mirror
//! keeps each namespace's routes from a dump plus the route multicast groups; asked after an
//! attributed trigger, it dumps again, and what vanished — together with what the kernel
//! announced itself since the trigger (IPv6 does notify) — is what the trigger removed.
//!
//! The mirror runs on threads of its own and knows nothing of requests or correlation: it is
//! asked ([`Ask`]: forget a route a request removed, what vanished since a trigger, re-dump after
//! a loss) over a channel, and tells what it learns ([`News`]: replaced routes, expiries,
//! namespaces gone, answers) to whoever started it.
//!
//! - `routeguard-mirror` (the control thread, `control.rs`) takes the asks and does every
//!   blocking thing: namespace rescans, re-dumps, reconciles.
//! - `routeguard-listen` (one per namespace, `listen.rs`) applies the kernel's notifications.
//!
//! Each listener carries the `notify` eBPF socket filter: the deletions a request made are copied
//! into the ring buffer there (the correlator joins them with their requests), and route
//! deletions are dropped before the socket, so a burst of them never wakes or overflows it. The
//! mirror learns of those from the correlator ([`Ask::Forget`]).

mod control;
mod listen;
mod socket;
mod table;

use std::{
    os::fd::{AsRawFd as _, OwnedFd},
    sync::{
        atomic::{AtomicU64, Ordering},
        mpsc, Arc,
    },
    thread,
};

use crate::{
    decode,
    event::{Family, KernelBody, Route, RouteKey, Rule},
};

pub use socket::{MirrorError, RCVBUF_ENV};

/// One route as the kernel described it, decoded for a report.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MirroredRoute {
    pub family: Option<Family>,
    pub route: Route,
    /// The kernel's own description of it, for a restore to re-add it whole.
    pub kernel: KernelBody,
}

impl MirroredRoute {
    /// The route the kernel's message body `body` describes.
    pub fn decode(body: &[u8]) -> Option<Self> {
        let (family, route) = decode::route_body(body).ok()?;
        Some(Self {
            family,
            route,
            kernel: KernelBody::new(body),
        })
    }

    pub fn key(&self) -> RouteKey {
        RouteKey::of(self.family, &self.route)
    }
}

/// What a namespace held when it was destroyed (routes and rules the kernel made itself, with
/// protocol `kernel`, left out: they follow from its links and addresses).
#[derive(Debug)]
pub struct Exited {
    pub netns: u32,
    /// Its name under /run/netns.
    pub name: Option<String>,
    pub routes: Vec<MirroredRoute>,
    pub rules: Vec<(Option<Family>, Rule)>,
}

/// What the mirror tells, unasked or in answer.
#[derive(Debug)]
pub enum News {
    /// The kernel announced a route added with NLM_F_REPLACE by the request with port id
    /// `portid` and sequence number `seq` in namespace `netns`: `new` took the place of `old`
    /// (the route the mirror held under the same FIB key; `None` when it held none).
    Replaced {
        netns: u32,
        portid: u32,
        seq: u32,
        old: Option<Box<MirroredRoute>>,
        new: Box<MirroredRoute>,
        /// Monotonic ns the mirror learnt it.
        at_ns: u64,
    },
    /// The answer to [`Ask::Vanished`] `token`.
    Vanished {
        token: u64,
        /// Routes held before the trigger and absent from a fresh dump (IPv4 announces nothing
        /// when it flushes).
        gone: Vec<MirroredRoute>,
        /// Deletions the kernel announced itself since the trigger (IPv6).
        announced: Vec<MirroredRoute>,
    },
    /// The kernel deleted a route whose lifetime had run out.
    Expired {
        netns: u32,
        /// Monotonic ns the mirror learnt it.
        at_ns: u64,
        route: MirroredRoute,
    },
    /// A namespace was destroyed, with what it held.
    Exited(Exited),
}

/// A route a request removed (its notification or kernel record said so), for the mirror to let
/// go of: the listener never hears those deletions.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Forget {
    pub netns: u32,
    pub key: RouteKey,
    /// Monotonic ns of the removal.
    pub at_ns: u64,
}

/// What the mirror is asked.
#[derive(Debug, PartialEq, Eq)]
pub enum Ask {
    /// Let go of these routes.
    Forget(Vec<Forget>),
    /// What vanished from namespace `netns` since `since_ns` (monotonic): answered with
    /// [`News::Vanished`] `token`. The mirror's state becomes a fresh dump.
    Vanished {
        token: u64,
        netns: u32,
        since_ns: u64,
    },
    /// Records were lost, and with them maybe forgets: re-dump every namespace soon.
    Settle,
}

/// Sends [`Ask`]s to the mirror's control thread (cheap to clone).
#[derive(Clone)]
pub struct Asker(mpsc::Sender<control::Message>);

impl Asker {
    pub fn ask(&self, ask: Ask) {
        // A mirror that stopped has nothing left to do with it.
        let _ = self.0.send(control::Message::Ask(ask));
    }

    /// An asker whose asks land in the returned receiver, for tests that script the mirror.
    #[cfg(test)]
    pub fn scripted() -> (Self, Scripted) {
        let (tx, rx) = mpsc::channel();
        (Self(tx), Scripted(rx))
    }
}

/// What a scripted mirror was asked.
#[cfg(test)]
pub struct Scripted(mpsc::Receiver<control::Message>);

#[cfg(test)]
impl Scripted {
    /// Every ask so far.
    pub fn asks(&self) -> Vec<Ask> {
        self.0
            .try_iter()
            .filter_map(|m| match m {
                control::Message::Ask(ask) => Some(ask),
                control::Message::Stop => None,
            })
            .collect()
    }
}

/// The running mirror: its control thread and listeners stop when it is dropped.
pub struct Mirror {
    asker: Asker,
    resyncs: Arc<AtomicU64>,
    control: Option<thread::JoinHandle<()>>,
}

/// Where the mirror's news goes.
pub type NewsSink = Arc<dyn Fn(News) + Send + Sync>;

impl Mirror {
    /// Mirrors the host's namespace and every one under /run/netns (each dumped before this
    /// returns, so a removal right after start is seen), then keeps doing so on its own threads.
    /// `filter` is the `notify` socket filter for the listeners (see `socket::open_in`); `news`
    /// receives what the mirror learns.
    pub fn start(
        filter: Option<OwnedFd>,
        news: impl Fn(News) + Send + Sync + 'static,
    ) -> Result<Self, MirrorError> {
        let (tx, rx) = mpsc::channel();
        let resyncs = Arc::new(AtomicU64::new(0));
        let mut control = control::Control::new(filter, Arc::new(news), Arc::clone(&resyncs));
        control.rescan();
        let thread = thread::Builder::new()
            .name("routeguard-mirror".into())
            .spawn(move || control.run(&rx))
            .map_err(MirrorError::Thread)?;
        Ok(Self {
            asker: Asker(tx),
            resyncs,
            control: Some(thread),
        })
    }

    /// Sends asks to this mirror.
    pub fn asker(&self) -> Asker {
        self.asker.clone()
    }

    /// Times a listener re-dumped because its socket overflowed (ENOBUFS).
    pub fn resyncs(&self) -> u64 {
        self.resyncs.load(Ordering::Relaxed)
    }
}

impl Drop for Mirror {
    fn drop(&mut self) {
        let _ = self.asker.0.send(control::Message::Stop);
        if let Some(thread) = self.control.take() {
            let _ = thread.join();
        }
    }
}

/// The raw fd of the filter, while the mirror holds it.
fn raw(filter: Option<&OwnedFd>) -> Option<std::os::fd::RawFd> {
    filter.map(|f| f.as_raw_fd())
}
