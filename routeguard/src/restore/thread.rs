//! The restore engine on a thread of its own (`routeguard-restore`).
//!
//! A re-add may block: opening a socket inside a namespace enters it on a short-lived thread
//! (up to a second), and the kernel's ack is waited for. On its own thread that stalls neither
//! the caller's loop (sinks, metrics, signals) nor the correlation behind it. The caller hands
//! over the removals a protect entry selects ([`Restores::observe`]), and takes the answers
//! (`restore`, `restore-suspended` events) from [`Restores::next`]; retries and back-offs run on
//! the thread's own timers. What is missing is published for the caller's metrics
//! ([`Restores::missing`]), with what the bounded maps turned away ([`Restores::overflow`]). A
//! reload hands the thread the new policy ([`Restores::reconfigure`]): the engine and what it
//! holds stay.

use std::{
    io,
    sync::{mpsc, Arc, Mutex, PoisonError},
    thread,
    time::{Duration, Instant},
};

use tokio::sync::mpsc as async_mpsc;

use super::{GuardConfig, Missing, Overflow, Protect, Restorer};
use crate::event::{Event, Observed};

/// The thread's longest sleep with nothing due: it lets go of deleted namespaces this often.
fn idle() -> Duration {
    Restorer::rescan_every()
}
/// Answer batches in flight to the caller; beyond that the thread waits for it.
const ANSWERS: usize = 64;

/// What the thread shares with its caller.
#[derive(Default)]
struct Shared {
    missing: Vec<Missing>,
    /// Restores waiting for a retry or a back-off.
    waiting: usize,
    overflow: Overflow,
}

/// What the caller hands the thread.
enum Input {
    Observed(Vec<Observed>),
    /// A reloaded policy.
    Reconfigure(Vec<Protect>, GuardConfig),
}

/// What a stopped engine leaves.
pub struct Finished {
    /// Answers not taken yet.
    pub answers: Vec<Event>,
    /// Restores still waiting (back-off or retry).
    pub waiting: usize,
    /// What the bounded maps turned away since [`Restores::overflow`] was last asked.
    pub overflow: Overflow,
}

/// The running restore thread.
pub struct Restores {
    protect: Vec<Protect>,
    input: Option<mpsc::Sender<Input>>,
    /// Overflow already reported by [`Restores::overflow`].
    overflow_seen: Overflow,
    answers: async_mpsc::Receiver<Vec<Event>>,
    shared: Arc<Mutex<Shared>>,
    thread: Option<thread::JoinHandle<()>>,
}

impl Restores {
    /// Starts the thread with `restorer`.
    pub fn start(restorer: Restorer) -> io::Result<Self> {
        let protect = restorer.protect();
        let (input, inputs) = mpsc::channel();
        let (out, answers) = async_mpsc::channel(ANSWERS);
        let shared = Arc::new(Mutex::new(Shared::default()));
        let published = Arc::clone(&shared);
        let thread = thread::Builder::new()
            .name("routeguard-restore".into())
            .spawn(move || run(restorer, &inputs, &out, &published))?;
        Ok(Self {
            protect,
            input: Some(input),
            overflow_seen: Overflow::default(),
            answers,
            shared,
            thread: Some(thread),
        })
    }

    /// Hands over the removals of `observed` that a protect entry selects (the rest never
    /// concern the engine).
    pub fn observe(&self, observed: &[Observed]) {
        let selected: Vec<Observed> = observed
            .iter()
            .filter(|o| self.protect.iter().any(|p| p.selects(&o.event)))
            .cloned()
            .collect();
        if selected.is_empty() {
            return;
        }
        if let Some(input) = &self.input {
            // A thread that stopped (it panicked) restores nothing more; its events were shown.
            let _ = input.send(Input::Observed(selected));
        }
    }

    /// Hands the engine a reloaded policy (see [`Restorer::reconfigure`]).
    pub fn reconfigure(&mut self, protect: Vec<Protect>, config: GuardConfig) {
        self.protect = protect.clone();
        if let Some(input) = &self.input {
            let _ = input.send(Input::Reconfigure(protect, config));
        }
    }

    /// What the bounded maps turned away since the last call.
    pub fn overflow(&mut self) -> Overflow {
        let now = self.lock().overflow;
        let grew = now.since(self.overflow_seen);
        self.overflow_seen = now;
        grew
    }

    /// The next answers. Cancel-safe: answers not taken stay for the next call. Never ready
    /// once the thread has stopped.
    pub async fn next(&mut self) -> Vec<Event> {
        match self.answers.recv().await {
            Some(answers) => answers,
            None => std::future::pending().await,
        }
    }

    /// Protected objects removed and not restored, as of the thread's last turn.
    pub fn missing(&self) -> Vec<Missing> {
        self.lock().missing.clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Shared> {
        self.shared.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Stops the thread once it has answered everything handed over and run what is due.
    pub async fn finish(mut self) -> Finished {
        self.input = None;
        let mut rest = Vec::new();
        while let Some(answers) = self.answers.recv().await {
            rest.extend(answers);
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
        let waiting = self.lock().waiting;
        let overflow = self.overflow();
        Finished {
            answers: rest,
            waiting,
            overflow,
        }
    }
}

fn run(
    mut restorer: Restorer,
    inputs: &mpsc::Receiver<Input>,
    out: &async_mpsc::Sender<Vec<Event>>,
    shared: &Mutex<Shared>,
) {
    loop {
        let wait = restorer
            .next_due()
            .map_or(idle(), |due| due.saturating_duration_since(Instant::now()))
            .min(idle());
        let mut answers = Vec::new();
        let last = match inputs.recv_timeout(wait) {
            Ok(Input::Observed(observed)) => {
                restorer.observe(&observed, &mut answers);
                false
            }
            Ok(Input::Reconfigure(protect, config)) => {
                restorer.reconfigure(protect, config);
                false
            }
            Err(mpsc::RecvTimeoutError::Timeout) => false,
            Err(mpsc::RecvTimeoutError::Disconnected) => true,
        };
        restorer.tick(&mut answers);
        {
            let mut s = shared.lock().unwrap_or_else(PoisonError::into_inner);
            s.missing = restorer.missing();
            s.waiting = restorer.waiting();
            s.overflow = restorer.overflow();
        }
        if !answers.is_empty() && out.blocking_send(answers).is_err() {
            return; // the caller is gone
        }
        if last {
            return;
        }
    }
}
