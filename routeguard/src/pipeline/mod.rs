//! The running capture: ring buffer → correlation → events, with loss accounting. `trace` and the
//! daemon drive it the same way; each decides what to do with the events and when to stop.
//!
//! # Threads
//! Every thread routeguard starts, with its one job and what it may block on. They talk through
//! channels; every bound that can be reached counts what it dropped.
//!
//! | thread | job | may block on |
//! |---|---|---|
//! | `routeguard-drain` ([`drain`]) | moves records out of the ring into the queue (bounded in bytes, [`Settings::queue_bytes`]; what does not fit is counted, [`QueueDrops`]) | `poll(2)` on the ring, nothing else |
//! | `routeguard-correlate` | decodes records, joins requests with the kernel's answers (acks, notifications, kernel records) and the mirror's news, attributes them, releases events in batches; tells the mirror which routes requests removed | its input channel (waiting for work), `/proc` reads for processes without a task record, the batch channel to the caller when the caller lags (64 batches; the queue then fills and counts what it drops) |
//! | `routeguard-mirror` ([`crate::mirror`]'s control thread) | takes the correlator's asks (forget a route, what vanished since a trigger, re-dump after a loss); rescans `/run/netns` every second (namespaces gone: news of what they held); re-dumps namespaces with doubtful forgets at most every 5 s | netlink dumps on its own sockets (each receive times out after 1 s; a dump the kernel stops answering is given up after 5 s), `setns` on a short-lived thread when a namespace appears, `/proc` reads (who still holds a namespace), its ask channel (unbounded: asks come one per batch, or per trigger) |
//! | `routeguard-listen` (one per namespace) | applies the kernel's route and rule notifications to its namespace's table; tells replaces and expiries; re-dumps after its socket overflowed | its own netlink socket (250 ms receive timeout, to notice when to stop), its table's lock (shared with the control thread); news go into the correlating thread's input channel, unbounded but one per replace or expiry |
//! | `routeguard-restore` (with protect entries) | re-adds protected objects the kernel's description of which was heard; retries and back-offs on its own timers | a socket inside the object's namespace (created on a short-lived thread that enters it: up to 1 s), the kernel's ack of the re-add, the answer channel when the caller lags (64 batches); its input is the removals a protect entry selects (unbounded: one per protected removal) |
//! | short-lived, unnamed | open a netlink socket inside a namespace (`setns` changes only the calling thread) for the mirror or a restore | `setns`, opening the nsfs file |
//! | `store` (daemon, `daemon::store_writer`) | writes events to the SQLite store | SQLite; its queue is bounded in bytes (192 MiB) and refuses (counted) past it |
//! | `routeguard-ebpf-log` ([`capture::ebpf_log`]; only with `-v`/`-vv`) | forwards the programs' own log lines into `tracing` | `poll(2)` on the programs' log ring; stderr, as `tracing` writes to it |
//! | the caller's (`trace`'s or the daemon's current-thread runtime) | sinks (stdout, JSON lines, journald), metrics server, signals, handing removals to the restore thread | writes to its sinks |
//!
//! Nothing on the path from the ring to the events waits on a dump, a `setns` or a restore: the
//! correlating thread only sends asks and reads answers, and a trigger waiting for the mirror's
//! answer holds nothing but itself (at most 5 s, then it goes alone, counted).

pub mod drain;

use std::{
    io,
    os::fd::AsFd as _,
    sync::{mpsc, Arc},
    thread,
    time::{Duration, Instant},
};

use tokio::sync::mpsc as async_mpsc;

use crate::{
    capture::{self, Capture, CaptureError, CapturePath, Counters, Losses},
    clock::Clock,
    correlate::{Correlate, KernelFunctionCorrelator, Problems, SyscallCorrelator},
    event::{Observed, Outcomes},
    mirror::Mirror,
};

use drain::{Drain, Input, Queue};
pub use drain::{Pacing, QueueDrops};

/// Default bound of the queue between the ring drain and the correlating thread: a 100,000-route
/// burst is about 20 MiB of records.
pub const QUEUE_BYTES: usize = 64 << 20;
/// How often waiting requests are expired and loss counters read while anything waits.
const TICK: Duration = drain::TICK;
/// The correlating thread's wait when nothing waits in it.
const IDLE_WAIT: Duration = Duration::from_secs(1);
/// At exit, how long the correlating thread waits for the mirror's answers still due (what a
/// link-down just flushed).
const ANSWERS_AT_EXIT: Duration = Duration::from_secs(1);
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
    /// How the removals released so far ended, and on what evidence.
    pub outcomes: Outcomes,
}

impl Totals {
    /// Records of removals never seen: the ring was full, or the queue at its bound. Replies,
    /// process details and notifications lost are not lost events (their events still come);
    /// they have their own counts.
    pub fn lost(&self) -> u64 {
        self.kernel.ring_full + self.queue.events
    }

    /// Every record lost, whatever it carried, each once.
    pub fn records_lost(&self) -> u64 {
        self.kernel.ring_records() + self.queue.total()
    }

    /// What was lost besides events, as the tail of a loss line (`; also lost: …`), or `""`.
    pub fn other_losses(&self) -> String {
        let (k, q) = (&self.kernel, &self.queue);
        let parts: Vec<String> = [
            (
                k.ack_lost + q.replies,
                "replies (those outcomes show `unknown`)",
            ),
            (
                k.task_lost + q.tasks,
                "process-detail records (those actors came from /proc)",
            ),
            (
                k.notify_lost + q.notifications,
                "deletion notifications (their requests' events still came)",
            ),
        ]
        .into_iter()
        .filter(|(n, _)| *n > 0)
        .map(|(n, what)| format!("{n} {what}"))
        .collect();
        if parts.is_empty() {
            String::new()
        } else {
            format!("; also lost: {}", parts.join(", "))
        }
    }
}

/// How the pipeline runs.
#[derive(Clone, Debug)]
pub struct Settings {
    /// Bound of the queue after the ring drain, in bytes.
    pub queue_bytes: usize,
    pub pacing: Pacing,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            queue_bytes: QUEUE_BYTES,
            pacing: Pacing::Interactive,
        }
    }
}

pub struct Pipeline {
    /// Programs attached.
    pub programs: usize,
    /// The path that runs (the syscall path when kernel-function fell back).
    pub path: CapturePath,
    /// Whether the deny entries' LSM program runs.
    pub prevention: crate::prevent::Status,
    clock: Clock,
    queue: Arc<Queue>,
    drain: Drain,
    correlate: Option<thread::JoinHandle<()>>,
    batches: async_mpsc::Receiver<Batch>,
    totals: Totals,
    adopted: bool,
    pinned: bool,
    /// The adopted capture had stopped recording, orphaned.
    orphaned: Option<capture::Orphaned>,
    /// A pinned capture's links, held open while the pipeline runs.
    links: Option<capture::pin::Held>,
    /// Forwards the programs' log lines while it lives.
    logs: Option<capture::ebpf_log::Reader>,
    /// The kernel's budgets, read by the caller for its `suppressed` summaries.
    budgets: Option<capture::budget::Budgets>,
}

impl Pipeline {
    /// Loads and attaches the capture programs and starts the threads; nothing is attached if
    /// this fails.
    pub fn start(options: &capture::Options, settings: &Settings) -> Result<Self, CaptureError> {
        let mut options = options.clone();
        let mut capture = match Capture::start(&options) {
            Err(err) if options.fallback && err.is_kernel_function() => {
                tracing::warn!(%err, "the kernel-function path did not start; using the syscall path");
                options.path = CapturePath::Syscall;
                Capture::start(&options)?
            }
            started => started?,
        };
        let (adopted, pinned, orphaned) = (capture.adopted, capture.pinned, capture.orphaned);
        let programs = capture.programs;
        let prevention = capture.prevention.clone();
        let keepalive = capture.take_keepalive();
        let links = capture.take_links();
        let budgets = capture.take_budgets();
        // Lines the programs log are rare and may wait on a slow stderr: a thread of their own.
        let logs = match capture.take_logs().map(capture::ebpf_log::Reader::start) {
            Some(Err(err)) => {
                tracing::warn!(%err, "cannot start the thread that reads the programs' log lines; they are lost");
                None
            }
            started => started.and_then(Result::ok),
        };
        let (ring, counters, notify) = capture.split();
        let clock = Clock::new();
        let (input, inputs) = mpsc::channel();
        // The listeners get the notification filter (its own fd: the mirror holds it while it
        // runs); without it they would hear every deletion.
        let filter = notify.and_then(|program| match program.as_fd().try_clone_to_owned() {
            Ok(fd) => Some(fd),
            Err(err) => {
                tracing::warn!(%err, "cannot keep the notification filter; the route mirror hears every deletion");
                None
            }
        });
        let news = input.clone();
        let mirror = Mirror::start(filter, move |n| {
            // A correlating thread that stopped needs no more news.
            let _ = news.send(Input::News(Box::new(n)));
        })
        .map_err(|e| CaptureError::Poll(io::Error::other(e)))?;
        let correlator: Box<dyn Correlate> = match options.path {
            CapturePath::Syscall => Box::new(SyscallCorrelator::new(clock, Some(mirror.asker()))),
            CapturePath::KernelFunction => {
                Box::new(KernelFunctionCorrelator::new(clock, Some(mirror.asker())))
            }
        };
        let queue = Queue::new(settings.queue_bytes);
        let (batch_out, batches) = async_mpsc::channel(BATCHES);
        let worker = Worker {
            correlator,
            mirror,
            counters,
            queue: Arc::clone(&queue),
            out: batch_out,
            totals: Totals::default(),
        };
        let correlate = thread::Builder::new()
            .name("routeguard-correlate".into())
            .spawn(move || worker.run(&inputs))
            .map_err(|e| CaptureError::Poll(io::Error::other(e)))?;
        let drain = Drain::start(ring, keepalive, Arc::clone(&queue), input, settings.pacing)
            .map_err(CaptureError::Poll)?;
        Ok(Self {
            path: options.path,
            prevention,
            programs,
            clock,
            queue,
            drain,
            correlate: Some(correlate),
            batches,
            totals: Totals::default(),
            adopted,
            pinned,
            orphaned,
            links,
            logs,
            budgets,
        })
    }

    /// The adopted capture had stopped recording: no daemon read it for `orphan_after`.
    pub fn orphaned(&self) -> Option<capture::Orphaned> {
        self.orphaned
    }

    /// Whether a pinned capture's pins still hold this pipeline's links; why not, when not.
    pub fn check_pins(&self) -> Result<(), capture::pin::PinsLost> {
        self.links
            .as_ref()
            .map_or(Ok(()), capture::pin::Held::check)
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
        // After the programs are gone (with the correlating thread's counters): their last
        // lines are forwarded before it stops.
        self.logs = None;
        self.totals = last.totals;
        last
    }

    /// The kernel's budgets (what they suppressed; which namespaces are exempt).
    pub fn budgets(&mut self) -> Option<&mut capture::budget::Budgets> {
        self.budgets.as_mut()
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
    correlator: Box<dyn Correlate>,
    /// Stops (its threads with it) when the correlating thread ends.
    mirror: Mirror,
    counters: Counters,
    queue: Arc<Queue>,
    out: async_mpsc::Sender<Batch>,
    totals: Totals,
}

impl Worker {
    fn run(mut self, inputs: &mpsc::Receiver<Input>) {
        let mut last_tick = Instant::now();
        loop {
            let wait = if self.correlator.is_idle() {
                IDLE_WAIT
            } else {
                TICK
            };
            let mut stop = false;
            match inputs.recv_timeout(wait) {
                Ok(input) => stop = self.take(input),
                Err(mpsc::RecvTimeoutError::Disconnected) => stop = true,
                Err(mpsc::RecvTimeoutError::Timeout) => {}
            }
            let ticked = stop || last_tick.elapsed() >= TICK;
            if stop {
                self.answers_at_exit(inputs);
                self.correlator.flush();
            } else if ticked {
                last_tick = Instant::now();
                self.correlator
                    .expire(Clock::monotonic_ns(), self.queue.is_empty());
            }
            if !self.send(ticked, stop) || stop {
                return;
            }
        }
    }

    /// Feeds one input; true when it says to stop.
    fn take(&mut self, input: Input) -> bool {
        match input {
            Input::Records(chunk) => {
                for record in chunk.records() {
                    self.correlator.record(record);
                }
            }
            Input::News(news) => self.correlator.news(*news),
            Input::Stop => return true,
        }
        false
    }

    /// Gives the mirror a moment to answer what is still asked of it (the routes a link-down
    /// just flushed), so they are not cut off at exit.
    fn answers_at_exit(&mut self, inputs: &mpsc::Receiver<Input>) {
        let deadline = Instant::now() + ANSWERS_AT_EXIT;
        while self.correlator.awaits_mirror() {
            let left = deadline.saturating_duration_since(Instant::now());
            match inputs.recv_timeout(left) {
                Ok(input) => {
                    self.take(input);
                }
                Err(_) => return,
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
            resyncs: self.mirror.resyncs(),
            outcomes: self.correlator.outcomes(),
        };
        let newly_lost = self.totals.records_lost() - before.records_lost();
        if newly_lost > 0 {
            // What the lost records would have told the mirror is lost too.
            self.correlator.lost();
        }
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
