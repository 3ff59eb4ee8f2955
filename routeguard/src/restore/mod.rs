//! The restore engine: puts protected rules and routes back when a process that is not allowed
//! to removes them, and stops before two programs fight forever.
//!
//! It consumes events (nothing upstream knows it exists) and answers with `restore` and
//! `restore-suspended` events that go to the same sinks. The object re-added is the kernel's own
//! description of what it removed, which travels beside the event ([`Observed`], [`body`]);
//! an event that only carries what a request named is never "restored", since that could create
//! a different object. A re-add the kernel
//! refuses for a reason that may pass (the link is still down) is retried until `retry_for`.
//! routeguard's own re-adds are RTM_NEW* requests from its own pid, which the capture ignores,
//! so a restore never triggers anything.
//!
//! Its state is bounded and outlives a reload: it works only in the namespaces routeguard watches
//! (its own and those named under /run/netns: [`sockets`]), keeps at most
//! `restore.max_missing` missing objects and [`sockets::CAP`] sockets (counting what it turned
//! away: [`Overflow`]), lets go of a namespace's sockets and missing objects once it is no longer
//! named, and a reload ([`Restorer::reconfigure`]) keeps the back-offs, suspensions and retries
//! of every protect entry it leaves unchanged.

pub mod allow;
mod body;
pub mod guard;
pub mod policy;
pub mod sockets;
mod thread;

use std::{
    collections::HashMap,
    sync::Arc,
    time::{Duration, Instant},
};

use crate::{
    clock::Clock,
    event::{
        describe, errno, Cause, Event, EventType, KernelBody, Kind, ObjectKey, Observed, Restore,
        RestoreOutcome,
    },
    hints,
    netlink::{
        uapi::{NLM_F_CREATE, NLM_F_EXCL, RTM_NEWROUTE, RTM_NEWRULE},
        SocketError,
    },
};

pub use allow::{Allow, AllowedCgroup, AllowedExe};
pub use body::BodyError;
pub use guard::GuardConfig;
pub use policy::{parse_spec, Protect, SpecError};
pub use thread::{Finished, Restores};

use guard::{FlapGuard, Verdict};
use sockets::Sockets;

/// A reply slower than this means the kernel is stuck; the restore is reported failed.
const REPLY_TIMEOUT: Duration = Duration::from_secs(1);

/// Delays between retries of a re-add the kernel refused for a passing reason: the first soon
/// (the actor may be re-adding the address the route needs, as networkd does), doubling up to
/// [`RETRY_MAX`].
const RETRY_FIRST: Duration = Duration::from_millis(10);
const RETRY_MAX: Duration = Duration::from_secs(1);
/// How often the namespaces routeguard watches are listed, to let go of those no longer named.
const RESCAN: Duration = Duration::from_secs(1);

/// Why a re-add could not be sent (the kernel's refusal is not an error: it is an outcome).
#[derive(Debug, thiserror::Error)]
pub enum RestoreError {
    #[error(transparent)]
    Body(#[from] BodyError),
    /// The namespace is gone or cannot be entered, or the kernel did not answer.
    #[error(transparent)]
    Socket(#[from] SocketError),
}

/// A restore waiting for its time.
struct Pending {
    due: Instant,
    /// The protect entry that selected the removal.
    entry: Arc<Protect>,
    removal: Event,
    /// The kernel's description of the removed object.
    kernel: Option<KernelBody>,
    policy: String,
    attempt: u32,
    /// Set after a first refusal: retry until then, and report only the final result.
    retry_until: Option<Instant>,
    /// Retries so far.
    retries: u32,
}

/// A protected object that was removed and is not back, as far as routeguard knows.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Missing {
    pub policy: String,
    /// Namespace name, else its inode.
    pub netns: String,
    /// The object in iproute2's words.
    pub object: String,
}

/// What the restorer turned away because a map was full, since it started.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Overflow {
    /// Missing objects not tracked (`restore.max_missing` were).
    pub missing: u64,
    /// Sockets closed after one request ([`sockets::CAP`] were kept).
    pub sockets: u64,
}

impl Overflow {
    /// What grew since `earlier`.
    pub fn since(self, earlier: Overflow) -> Overflow {
        Overflow {
            missing: self.missing.saturating_sub(earlier.missing),
            sockets: self.sockets.saturating_sub(earlier.sockets),
        }
    }

    pub fn add(&mut self, more: Overflow) {
        self.missing += more.missing;
        self.sockets += more.sockets;
    }
}

pub struct Restorer {
    protect: Vec<Arc<Protect>>,
    /// Removed protected objects not (yet) restored, by namespace inode and identity, with the
    /// entry that protects them; at most `max_missing`.
    missing: HashMap<(u32, ObjectKey), (Arc<Protect>, Missing)>,
    missing_overflow: u64,
    guard: FlapGuard<FlapKey>,
    clock: Clock,
    sockets: Sockets,
    pending: Vec<Pending>,
    last_prune: Instant,
    last_rescan: Instant,
}

impl Restorer {
    /// `None` when nothing is protected: no engine at all.
    pub fn new(protect: Vec<Protect>, config: GuardConfig, clock: Clock) -> Option<Self> {
        (!protect.is_empty()).then(|| Self {
            protect: protect.into_iter().map(Arc::new).collect(),
            guard: FlapGuard::new(config),
            clock,
            sockets: Sockets::new(),
            missing: HashMap::new(),
            missing_overflow: 0,
            pending: Vec::new(),
            last_prune: Instant::now(),
            last_rescan: Instant::now(),
        })
    }

    /// The protect entries, in order.
    pub fn protect(&self) -> Vec<Protect> {
        self.protect.iter().map(|p| (**p).clone()).collect()
    }

    /// Takes a reloaded policy and guard settings. What an unchanged protect entry (equal in
    /// every selector, allow-list and name) holds stays: its back-offs, suspensions, link-down
    /// retries and missing objects. What a changed or removed entry held is dropped: a new
    /// policy starts afresh.
    pub fn reconfigure(&mut self, protect: Vec<Protect>, config: GuardConfig) {
        let new: Vec<Arc<Protect>> = protect.into_iter().map(Arc::new).collect();
        let kept = |entry: &Protect| new.iter().any(|n| **n == *entry);
        let (pending, tracks) = (self.pending.len(), self.guard.len());
        self.pending.retain(|p| kept(&p.entry));
        self.guard.retain(|key| kept(&key.entry));
        self.missing.retain(|_, (entry, _)| kept(entry));
        tracing::info!(
            pending_kept = self.pending.len(),
            pending_dropped = pending - self.pending.len(),
            flap_histories_kept = self.guard.len(),
            flap_histories_dropped = tracks - self.guard.len(),
            "restore policy reloaded; unchanged entries keep their state"
        );
        self.guard.set_config(config);
        self.protect = new;
    }

    /// What was turned away because a map was full, since start.
    pub fn overflow(&self) -> Overflow {
        Overflow {
            missing: self.missing_overflow,
            sockets: self.sockets.overflow,
        }
    }

    /// Looks at each event; restores what is due now, schedules the rest. Appends the restore
    /// events to `out`.
    pub fn observe(&mut self, observed: &[Observed], out: &mut Vec<Event>) {
        let now = Instant::now();
        // Listed once per batch, when a removal needs it.
        let mut watched: Option<Vec<u64>> = None;
        for Observed {
            event: ev, kernel, ..
        } in observed
        {
            let Some(entry) = self.protect.iter().find(|p| p.selects(ev)).cloned() else {
                continue;
            };
            let policy = entry.label();
            if let Some(actor) = &ev.actor {
                if entry.allow.permits(actor) {
                    tracing::debug!(comm = %actor.comm, pid = actor.pid, %policy, "removal allowed");
                    continue;
                }
            }
            if ev.cause != Cause::NetnsExit
                && !watched
                    .get_or_insert_with(sockets::watched_now)
                    .contains(&u64::from(ev.netns.inode))
            {
                let detail = format!(
                    "its network namespace (inode {}) is not one routeguard watches (its own, \
                     the one ROUTEGUARD_HOST_NETNS names, or one named under /run/netns); not \
                     re-added",
                    ev.netns.inode
                );
                out.push(answer(
                    ev,
                    &policy,
                    RestoreOutcome::Skipped,
                    0,
                    Some(detail),
                ));
                continue;
            }
            if !matches!(ev.cause, Cause::NetnsExit | Cause::Expired) {
                self.note_missing(ev, &entry);
            }
            if let Some(detail) = unrestorable(ev, kernel.as_ref()) {
                out.push(answer(
                    ev,
                    &policy,
                    RestoreOutcome::Skipped,
                    0,
                    Some(detail),
                ));
                continue;
            }
            match self.guard.admit(flap_key(ev, &entry), now) {
                Verdict::Restore { delay, attempt } => {
                    let pending = Pending {
                        due: now + delay,
                        entry,
                        removal: ev.clone(),
                        kernel: kernel.clone(),
                        policy,
                        attempt,
                        retry_until: None,
                        retries: 0,
                    };
                    if delay.is_zero() {
                        self.attempt(pending, out);
                    } else {
                        self.pending.push(pending);
                    }
                }
                Verdict::Suspend { attempts } => {
                    out.push(suspended(ev, &policy, attempts, self.guard.config()))
                }
                Verdict::Suspended => {}
            }
        }
    }

    /// Tracks `ev`'s object as missing, unless `max_missing` are already (then counts it).
    fn note_missing(&mut self, ev: &Event, entry: &Arc<Protect>) {
        let key = (ev.netns.inode, ev.key());
        let cap = self.guard.config().max_missing as usize;
        if !self.missing.contains_key(&key) && self.missing.len() >= cap {
            self.missing_overflow += 1;
            tracing::debug!(
                cap,
                "restore.max_missing objects are missing already; this one is not tracked"
            );
            return;
        }
        let missing = Missing {
            policy: entry.label(),
            netns: ev
                .netns
                .name
                .clone()
                .unwrap_or_else(|| ev.netns.inode.to_string()),
            object: describe::object(&ev.object),
        };
        self.missing.insert(key, (Arc::clone(entry), missing));
    }

    /// When the next waiting restore is due.
    pub fn next_due(&self) -> Option<Instant> {
        self.pending.iter().map(|p| p.due).min()
    }

    /// Runs the restores whose time has come.
    pub fn tick(&mut self, out: &mut Vec<Event>) {
        let now = Instant::now();
        let (due, later): (Vec<_>, Vec<_>) = std::mem::take(&mut self.pending)
            .into_iter()
            .partition(|p| p.due <= now);
        self.pending = later;
        for pending in due {
            self.attempt(pending, out);
        }
        if now.duration_since(self.last_prune) >= Duration::from_secs(10) {
            self.guard.prune(now);
            self.last_prune = now;
        }
        if now.duration_since(self.last_rescan) >= RESCAN {
            self.last_rescan = now;
            self.keep_only(&sockets::watched_now());
        }
    }

    /// Lets go of what concerns namespaces no longer watched (deleted, or no longer named):
    /// their sockets are closed, so that none keeps a dead namespace alive, and their objects
    /// are no longer missing — they went with it.
    fn keep_only(&mut self, watched: &[u64]) {
        self.sockets.keep_only(watched);
        self.missing
            .retain(|(inode, _), _| watched.contains(&u64::from(*inode)));
    }

    /// How often the thread must call [`Restorer::tick`] at least, with nothing due.
    pub fn rescan_every() -> Duration {
        RESCAN
    }

    /// Protected objects removed and not restored (suspended, failed, waiting, dry run).
    pub fn missing(&self) -> Vec<Missing> {
        let mut all: Vec<Missing> = self.missing.values().map(|(_, m)| m.clone()).collect();
        all.sort();
        all
    }

    /// Restores waiting (back-off or retry), for the exit summary.
    pub fn waiting(&self) -> usize {
        self.pending.len()
    }

    fn attempt(&mut self, mut pending: Pending, out: &mut Vec<Event>) {
        let removal = pending.removal.clone();
        let ev = &removal;
        if self.guard.config().dry_run {
            let detail = "dry run: would re-add it".to_string();
            out.push(answer(
                ev,
                &pending.policy,
                RestoreOutcome::DryRun,
                pending.attempt,
                Some(detail),
            ));
            return;
        }
        let result = self.readd(ev, pending.kernel.as_ref());
        let latency_us = {
            let now = self.clock.wall(Clock::monotonic_ns());
            u64::try_from((now.0 - ev.ts.0) / 1000).ok()
        };
        let mut reply = match result {
            Ok(Ok(())) => answer(
                ev,
                &pending.policy,
                RestoreOutcome::Restored,
                pending.attempt,
                None,
            ),
            Ok(Err(libc::EEXIST)) => answer(
                ev,
                &pending.policy,
                RestoreOutcome::AlreadyPresent,
                pending.attempt,
                Some("it was back before routeguard re-added it".into()),
            ),
            Ok(Err(code)) => {
                let now = Instant::now();
                let first_refusal = pending.retry_until.is_none();
                let until = *pending
                    .retry_until
                    .get_or_insert(now + self.guard.config().retry_for);
                // The device is down or gone for now, or the gateway not yet reachable: these
                // pass when the link comes back.
                let passing = matches!(
                    code,
                    libc::ENETDOWN | libc::ENODEV | libc::ENETUNREACH | libc::EINVAL
                );
                let mut r = answer(
                    ev,
                    &pending.policy,
                    RestoreOutcome::Failed,
                    pending.attempt,
                    None,
                );
                if let Some(rs) = r.restore.as_mut() {
                    rs.errno = Some(code);
                    rs.error = errno::name(code).map(str::to_string);
                }
                let delay = RETRY_FIRST
                    .saturating_mul(1 << pending.retries.min(10))
                    .min(RETRY_MAX);
                if passing && now + delay < until {
                    if let Some(rs) = r.restore.as_mut() {
                        rs.detail = Some(format!(
                            "the kernel refused the re-add; retrying (every {RETRY_MAX:?} at most) for up \
                             to {:?} (e.g. until its link is up again)",
                            self.guard.config().retry_for
                        ));
                    }
                    pending.due = now + delay;
                    pending.retries += 1;
                    self.pending.push(pending);
                    if !first_refusal {
                        return;
                    }
                }
                r
            }
            Err(err) => answer(
                ev,
                &pending.policy,
                RestoreOutcome::Failed,
                pending.attempt,
                Some(err.to_string()),
            ),
        };
        if let Some(r) = reply.restore.as_mut() {
            if r.outcome == RestoreOutcome::Restored {
                r.latency_us = latency_us;
            }
            if matches!(
                r.outcome,
                RestoreOutcome::Restored | RestoreOutcome::AlreadyPresent
            ) {
                self.missing.remove(&(ev.netns.inode, ev.key()));
            }
        }
        reply.ts = self.clock.wall(Clock::monotonic_ns());
        out.push(reply);
    }

    /// Sends the kernel's description back to the kernel.
    fn readd(
        &mut self,
        ev: &Event,
        kernel: Option<&KernelBody>,
    ) -> Result<Result<(), i32>, RestoreError> {
        let kernel = kernel.map(KernelBody::bytes).unwrap_or_default();
        let (msg_type, body) = match ev.kind() {
            Kind::Route => (RTM_NEWROUTE, body::route_body(kernel)?),
            _ => (RTM_NEWRULE, body::rule_body(kernel)?),
        };
        Ok(self
            .sockets
            .request(ev.netns.inode, msg_type, NLM_F_CREATE | NLM_F_EXCL, &body)?)
    }
}

/// Why an event's object cannot be put back, if it cannot. `kernel` is the kernel's description
/// of it, if it was heard.
fn unrestorable(ev: &Event, kernel: Option<&KernelBody>) -> Option<String> {
    match ev.cause {
        Cause::NetnsExit => return Some("its network namespace is gone".into()),
        Cause::Expired => {
            return Some("the kernel removed it because its lifetime ended; not re-added".into())
        }
        Cause::Replace => {
            return Some(
                "it was replaced, not removed: putting the old one back would undo the \
                 replacement and start a fight; not re-added"
                    .into(),
            )
        }
        _ => {}
    }
    let known = kernel.is_some() && matches!(ev.kind(), Kind::Route | Kind::Rule);
    (!known).then(|| {
        "the kernel's own description of the removed object was not heard (only the request's), \
         and re-adding what the request named could create a different object"
            .into()
    })
}

/// The flap guard's identity of "this object, removed by this actor, protected by this entry"
/// (the entry, so that a reload that changes it starts its history afresh).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct FlapKey {
    entry: Arc<Protect>,
    netns_inode: u32,
    object: ObjectKey,
    /// The actor's program (not its pid: a restarted daemon is the same culprit): comm, exe and
    /// unit; `None` for the kernel.
    actor: Option<(String, Option<String>, Option<String>)>,
}

fn flap_key(ev: &Event, entry: &Arc<Protect>) -> FlapKey {
    FlapKey {
        entry: Arc::clone(entry),
        netns_inode: ev.netns.inode,
        object: ev.key(),
        actor: ev
            .actor
            .as_ref()
            .map(|a| (a.comm.clone(), a.exe.clone(), a.unit.clone())),
    }
}

/// A `restore` event answering the removal `ev`.
fn answer(
    ev: &Event,
    policy: &str,
    outcome: RestoreOutcome,
    attempt: u32,
    detail: Option<String>,
) -> Event {
    Event {
        event: EventType::Restore,
        restore: Some(Restore {
            policy: policy.to_string(),
            outcome,
            latency_us: None,
            attempt,
            errno: None,
            error: None,
            detail,
            hint: None,
        }),
        ..ev.clone()
    }
}

fn suspended(ev: &Event, policy: &str, attempts: u32, config: &GuardConfig) -> Event {
    let hint = ev
        .actor
        .as_ref()
        .and_then(|a| hints::for_actor(a).first().map(|h| h.advice.to_string()));
    let who = ev.actor.as_ref().map_or("the kernel".to_string(), |a| {
        format!("{}[{}]", a.comm, a.pid)
    });
    let mut e = answer(
        ev,
        policy,
        RestoreOutcome::Suspended,
        attempts,
        Some(format!(
            "{who} removed it again after {attempts} restores within {:?}; routeguard stops \
             restoring it for {:?} rather than fight (to resume sooner: change its protect entry \
             and send SIGHUP, or restart routeguard)",
            config.window, config.suspend
        )),
    );
    e.event = EventType::RestoreSuspended;
    if let Some(r) = e.restore.as_mut() {
        r.hint = hint;
    }
    e
}

#[cfg(test)]
mod tests;
