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

pub mod allow;
mod body;
pub mod guard;
pub mod policy;
mod thread;

use std::{
    collections::{hash_map::Entry, HashMap},
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
        netns,
        uapi::{NLM_F_CREATE, NLM_F_EXCL, RTM_NEWROUTE, RTM_NEWRULE},
        Options, RouteSocket, SocketError,
    },
};

pub use allow::{Allow, AllowedCgroup, AllowedExe};
pub use body::BodyError;
pub use guard::GuardConfig;
pub use policy::{parse_spec, Protect, SpecError};
pub use thread::Restores;

use guard::{FlapGuard, Verdict};

/// A reply slower than this means the kernel is stuck; the restore is reported failed.
const REPLY_TIMEOUT: Duration = Duration::from_secs(1);

/// Delays between retries of a re-add the kernel refused for a passing reason: the first soon
/// (the actor may be re-adding the address the route needs, as networkd does), doubling up to
/// [`RETRY_MAX`].
const RETRY_FIRST: Duration = Duration::from_millis(10);
const RETRY_MAX: Duration = Duration::from_secs(1);

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

pub struct Restorer {
    protect: Vec<Protect>,
    /// Removed protected objects not (yet) restored, by namespace inode and identity.
    missing: HashMap<(u32, ObjectKey), Missing>,
    guard: FlapGuard<FlapKey>,
    clock: Clock,
    sockets: HashMap<u32, RouteSocket>,
    pending: Vec<Pending>,
    last_prune: Instant,
}

impl Restorer {
    /// `None` when nothing is protected: no engine at all.
    pub fn new(protect: Vec<Protect>, config: GuardConfig, clock: Clock) -> Option<Self> {
        (!protect.is_empty()).then(|| Self {
            protect,
            guard: FlapGuard::new(config),
            clock,
            sockets: HashMap::new(),
            missing: HashMap::new(),
            pending: Vec::new(),
            last_prune: Instant::now(),
        })
    }

    /// Looks at each event; restores what is due now, schedules the rest. Appends the restore
    /// events to `out`.
    pub fn observe(&mut self, observed: &[Observed], out: &mut Vec<Event>) {
        let now = Instant::now();
        for Observed {
            event: ev, kernel, ..
        } in observed
        {
            let Some(entry) = self.protect.iter().find(|p| p.selects(ev)) else {
                continue;
            };
            let policy = entry.label();
            if let Some(actor) = &ev.actor {
                if entry.allow.permits(actor) {
                    tracing::debug!(comm = %actor.comm, pid = actor.pid, %policy, "removal allowed");
                    continue;
                }
            }
            if !matches!(ev.cause, Cause::NetnsExit | Cause::Expired) {
                let object = describe::object(&ev.object);
                let netns = ev
                    .netns
                    .name
                    .clone()
                    .unwrap_or_else(|| ev.netns.inode.to_string());
                self.missing.insert(
                    (ev.netns.inode, ev.key()),
                    Missing {
                        policy: policy.clone(),
                        netns,
                        object,
                    },
                );
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
            match self.guard.admit(flap_key(ev), now) {
                Verdict::Restore { delay, attempt } => {
                    let pending = Pending {
                        due: now + delay,
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
    }

    /// Protected objects removed and not restored (suspended, failed, waiting, dry run).
    pub fn missing(&self) -> Vec<Missing> {
        let mut all: Vec<Missing> = self.missing.values().cloned().collect();
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
            Err(err) => {
                self.sockets.remove(&ev.netns.inode);
                answer(
                    ev,
                    &pending.policy,
                    RestoreOutcome::Failed,
                    pending.attempt,
                    Some(err.to_string()),
                )
            }
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
        let inode = ev.netns.inode;
        let socket = match self.sockets.entry(inode) {
            Entry::Occupied(slot) => slot.into_mut(),
            Entry::Vacant(slot) => {
                let path = netns::find(inode, ev.actor.as_ref().map(|a| a.pid))
                    .map_err(SocketError::from)?;
                let options = Options {
                    poll: REPLY_TIMEOUT,
                    quiet: REPLY_TIMEOUT,
                    ..Options::default()
                };
                let [socket] = RouteSocket::open_in(&path, [options])?;
                slot.insert(socket)
            }
        };
        Ok(socket.request(msg_type, NLM_F_CREATE | NLM_F_EXCL, &body)?)
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

/// The flap guard's identity of "this object, removed by this actor".
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct FlapKey {
    netns_inode: u32,
    object: ObjectKey,
    /// The actor's program (not its pid: a restarted daemon is the same culprit): comm, exe and
    /// unit; `None` for the kernel.
    actor: Option<(String, Option<String>, Option<String>)>,
}

fn flap_key(ev: &Event) -> FlapKey {
    FlapKey {
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
             restoring it for {:?} rather than fight (restart routeguard or send SIGHUP to resume)",
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
