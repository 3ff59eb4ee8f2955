//! The running capture: ring buffer → correlation → events, with loss accounting. `trace` and the
//! daemon drive it the same way; each decides what to do with the events and when to stop.
//!
//! # Threads
//! Each thread has one job and says what it may block on. They talk through channels; every
//! bound that can be reached counts what it dropped.
//!
//! | thread | job | may block on |
//! |---|---|---|
//! | `routeguard-drain` ([`drain`]) | moves records out of the ring into the queue | `poll(2)` on the ring, nothing else |
//! | `routeguard-correlate` | decodes records, joins requests with the kernel's answers, attributes them, releases events | the queue (waiting for work), `/proc` reads, the event channel to the caller when the caller lags (the queue then fills and counts what it drops) |
//! | `routeguard-mirror` (one per namespace) | applies the kernel's route/rule notifications to the mirror | its netlink socket |
//! | the caller's (`trace`'s or the daemon's runtime) | sinks, restores, metrics, signals | writes to its sinks |
//!
//! The queue between the drain and the correlating thread is bounded in bytes
//! ([`Settings::queue_bytes`]); what does not fit is counted ([`QueueDrops`]) and reported with
//! the ring's own losses.

pub mod drain;

use std::{
    io,
    sync::{mpsc, Arc},
    thread,
    time::{Duration, Instant},
};

use tokio::sync::mpsc as async_mpsc;

use crate::{
    capture::{self, Capture, CaptureError, CapturePath, Counters, Losses},
    clock::Clock,
    correlate::{Correlator, Problems},
    event::Observed,
    mirror::Mirror,
};

use drain::{Drain, Input, Queue};
pub use drain::{Pacing, QueueDrops};

/// Default bound of the queue between the ring drain and the correlating thread: a 100,000-route
/// burst is about 20 MiB of records.
pub const QUEUE_BYTES: usize = 64 << 20;
/// How often waiting requests are expired and loss counters read while anything waits.
const TICK: Duration = drain::TICK;
/// The correlating thread's wait when nothing waits in it: namespaces are rescanned this often.
const IDLE_WAIT: Duration = Duration::from_secs(1);
/// Batches in flight to the caller; beyond that the correlating thread waits for it.
const BATCHES: usize = 64;

/// What one turn of the pipeline produced.
#[derive(Debug, Default)]
pub struct Batch {
    /// Events whose outcome is known (or given up on), oldest first, each with the kernel's
    /// description of its object when it was heard (for the restore engine).
    pub events: Vec<Observed>,
    /// Records lost (ring full or queue bound) since the previous batch.
    pub newly_lost: u64,
    /// Totals since start, as of this batch.
    pub totals: Totals,
}

/// Everything counted since start.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Totals {
    /// Losses and truncations in the kernel.
    pub kernel: Losses,
    /// Records dropped at the queue's bound.
    pub queue: QueueDrops,
    pub problems: Problems,
    /// Times the route mirror re-dumped after its notification socket overflowed.
    pub resyncs: u64,
}

impl Totals {
    /// Records of removals never seen: the ring was full, or the queue at its bound.
    pub fn lost(&self) -> u64 {
        self.kernel.ring_full + self.queue.events
    }

    /// Every record lost, whatever it carried.
    pub fn records_lost(&self) -> u64 {
        self.kernel.ring_full + self.queue.total()
    }
}

/// How the pipeline runs.
#[derive(Clone, Debug)]
pub struct Settings {
    /// Bound of the queue after the ring drain, in bytes.
    pub queue_bytes: usize,
    pub pacing: Pacing,
    /// Release deletes as soon as the kernel announces them (for the restore engine), instead
    /// of when their sender reads its ack.
    pub eager: bool,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            queue_bytes: QUEUE_BYTES,
            pacing: Pacing::Interactive,
            eager: false,
        }
    }
}

pub struct Pipeline {
    /// Programs attached.
    pub programs: usize,
    /// The path that runs (the syscall path when kernel-function fell back).
    pub path: CapturePath,
    clock: Clock,
    queue: Arc<Queue>,
    drain: Drain,
    correlate: Option<thread::JoinHandle<()>>,
    batches: async_mpsc::Receiver<Batch>,
    totals: Totals,
    adopted: bool,
    pinned: bool,
}

impl Pipeline {
    /// Loads and attaches the capture programs and starts the threads; nothing is attached if
    /// this fails.
    pub fn start(options: &capture::Options, settings: &Settings) -> Result<Self, CaptureError> {
        let mut options = options.clone();
        let capture = match Capture::start(&options) {
            Err(err) if options.fallback && err.is_kernel_function() => {
                tracing::warn!(%err, "the kernel-function path did not start; using the syscall path");
                options.path = CapturePath::Syscall;
                Capture::start(&options)?
            }
            started => started?,
        };
        let (adopted, pinned) = (capture.adopted, capture.pinned);
        let programs = capture.programs;
        let (ring, counters, _notify) = capture.split();
        let clock = Clock::new();
        let mut correlator = match options.path {
            CapturePath::Syscall => Correlator::with_mirror(clock, Mirror::new()),
            CapturePath::KernelFunction => {
                Correlator::kernel_function(clock, Some(Mirror::for_kernel_records()))
            }
        };
        let (input, inputs) = mpsc::channel();
        if settings.eager {
            correlator.set_eager(true);
            let heard = input.clone();
            correlator.wake_on_deletion(move || {
                let _ = heard.send(Input::Heard);
            });
        }
        let queue = Queue::new(settings.queue_bytes);
        let (batch_out, batches) = async_mpsc::channel(BATCHES);
        let worker = Worker {
            correlator,
            counters,
            queue: Arc::clone(&queue),
            out: batch_out,
            totals: Totals::default(),
        };
        let correlate = thread::Builder::new()
            .name("routeguard-correlate".into())
            .spawn(move || worker.run(&inputs))
            .map_err(|e| CaptureError::Poll(io::Error::other(e)))?;
        let drain = Drain::start(ring, Arc::clone(&queue), input, settings.pacing)
            .map_err(CaptureError::Poll)?;
        Ok(Self {
            path: options.path,
            programs,
            clock,
            queue,
            drain,
            correlate: Some(correlate),
            batches,
            totals: Totals::default(),
            adopted,
            pinned,
        })
    }

    /// The capture was adopted from a predecessor's pins rather than loaded.
    pub fn adopted(&self) -> bool {
        self.adopted
    }

    /// The capture is pinned in bpffs and outlives this process.
    pub fn pinned(&self) -> bool {
        self.pinned
    }

    /// The bound of the queue after the ring drain, in bytes.
    pub fn queue_bytes(&self) -> usize {
        self.queue.bound()
    }

    /// The next batch of events. Cancel-safe: a batch not taken stays for the next call.
    pub async fn next(&mut self) -> io::Result<Batch> {
        match self.batches.recv().await {
            Some(batch) => {
                self.totals = batch.totals;
                Ok(batch)
            }
            None => Err(io::Error::other("the correlating thread stopped")),
        }
    }

    /// Drains what is left and releases every waiting request (at exit).
    pub async fn finish(&mut self) -> Batch {
        self.drain.stop();
        let mut last = Batch {
            totals: self.totals,
            ..Batch::default()
        };
        while let Some(batch) = self.batches.recv().await {
            last.events.extend(batch.events);
            last.newly_lost += batch.newly_lost;
            last.totals = batch.totals;
        }
        if let Some(thread) = self.correlate.take() {
            let _ = thread.join();
        }
        self.totals = last.totals;
        last
    }

    /// The clock that turns the kernel's timestamps into the events' wall-clock times.
    pub fn clock(&self) -> Clock {
        self.clock
    }

    /// Totals as of the last batch taken.
    pub fn totals(&self) -> Totals {
        self.totals
    }
}

/// The correlating thread's state.
struct Worker {
    correlator: Correlator,
    counters: Counters,
    queue: Arc<Queue>,
    out: async_mpsc::Sender<Batch>,
    totals: Totals,
}

impl Worker {
    fn run(mut self, inputs: &mpsc::Receiver<Input>) {
        let mut last_tick = Instant::now();
        loop {
            let wait = if self.correlator.is_empty() {
                IDLE_WAIT
            } else {
                TICK
            };
            let mut stop = false;
            match inputs.recv_timeout(wait) {
                Ok(Input::Records(chunk)) => {
                    for record in chunk.records() {
                        self.correlator.record(record);
                    }
                }
                Ok(Input::Heard) => self.correlator.release_viewed(),
                Ok(Input::Stop) | Err(mpsc::RecvTimeoutError::Disconnected) => stop = true,
                Err(mpsc::RecvTimeoutError::Timeout) => {}
            }
            let ticked = stop || last_tick.elapsed() >= TICK;
            if stop {
                self.correlator.flush();
            } else if ticked {
                last_tick = Instant::now();
                self.correlator.expire(Clock::monotonic_ns());
            }
            if !self.send(ticked, stop) || stop {
                return;
            }
        }
    }

    /// Sends what is ready (and any new loss; the kernel's counters are read when `ticked`);
    /// false once the caller is gone.
    fn send(&mut self, ticked: bool, last: bool) -> bool {
        let before = self.totals;
        self.totals = Totals {
            kernel: if ticked {
                self.counters.read()
            } else {
                before.kernel
            },
            queue: self.queue.drops(),
            problems: self.correlator.problems(),
            resyncs: self.correlator.resyncs(),
        };
        let newly_lost = self.totals.records_lost() - before.records_lost();
        let events = self.correlator.take_ready();
        if events.is_empty() && newly_lost == 0 && self.totals == before && !last {
            return true;
        }
        let batch = Batch {
            events,
            newly_lost,
            totals: self.totals,
        };
        self.out.blocking_send(batch).is_ok()
    }
}
