//! The restore engine on a thread of its own (`routeguard-restore`).
//!
//! A re-add may block: opening a socket inside a namespace enters it on a short-lived thread
//! (up to a second), and the kernel's ack is waited for. On its own thread that stalls neither
//! the caller's loop (sinks, metrics, signals) nor the correlation behind it. The caller hands
//! over the removals a protect entry selects ([`Restores::observe`]), and takes the answers
//! (`restore`, `restore-suspended` events) from [`Restores::next`]; retries and back-offs run on
//! the thread's own timers. What is missing is published for the caller's metrics
//! ([`Restores::missing`]).

use std::{
    io,
    sync::{mpsc, Arc, Mutex, PoisonError},
    thread,
    time::{Duration, Instant},
};

use tokio::sync::mpsc as async_mpsc;

use super::{Missing, Protect, Restorer};
use crate::event::{Event, Observed};

/// The thread's longest sleep with nothing due (the flap guard prunes itself this often).
const IDLE: Duration = Duration::from_secs(10);
/// Answer batches in flight to the caller; beyond that the thread waits for it.
const ANSWERS: usize = 64;

/// What the thread shares with its caller.
#[derive(Default)]
struct Shared {
    missing: Vec<Missing>,
    /// Restores waiting for a retry or a back-off.
    waiting: usize,
}

/// The running restore thread.
pub struct Restores {
    protect: Vec<Protect>,
    input: Option<mpsc::Sender<Vec<Observed>>>,
    answers: async_mpsc::Receiver<Vec<Event>>,
    shared: Arc<Mutex<Shared>>,
    thread: Option<thread::JoinHandle<()>>,
}

impl Restores {
    /// Starts the thread with `restorer`.
    pub fn start(restorer: Restorer) -> io::Result<Self> {
        let protect = restorer.protect.clone();
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
            let _ = input.send(selected);
        }
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

    /// Stops the thread once it has answered everything handed over and run what is due;
    /// returns the answers not taken yet and how many restores were still waiting.
    pub async fn finish(mut self) -> (Vec<Event>, usize) {
        self.input = None;
        let mut rest = Vec::new();
        while let Some(answers) = self.answers.recv().await {
            rest.extend(answers);
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
        let waiting = self.lock().waiting;
        (rest, waiting)
    }
}

fn run(
    mut restorer: Restorer,
    inputs: &mpsc::Receiver<Vec<Observed>>,
    out: &async_mpsc::Sender<Vec<Event>>,
    shared: &Mutex<Shared>,
) {
    loop {
        let wait = restorer
            .next_due()
            .map_or(IDLE, |due| due.saturating_duration_since(Instant::now()))
            .min(IDLE);
        let mut answers = Vec::new();
        let last = match inputs.recv_timeout(wait) {
            Ok(observed) => {
                restorer.observe(&observed, &mut answers);
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
        }
        if !answers.is_empty() && out.blocking_send(answers).is_err() {
            return; // the caller is gone
        }
        if last {
            return;
        }
    }
}
