//! The running capture: ring buffer → correlation → events, with loss accounting. `trace` and the
//! daemon drive it the same way; each decides what to do with the events and when to stop.

use std::{io, sync::Arc, time::Duration};

use aya::maps::{MapData, RingBuf};
use tokio::{
    io::{unix::AsyncFd, Interest},
    sync::Notify,
    time::{interval, Interval, MissedTickBehavior},
};

use crate::{
    capture::{self, Capture, CaptureError, CapturePath, Counters, Losses},
    correlate::{Clock, Correlator, Problems},
    event::Observed,
    mirror::Mirror,
};

/// How often the ring is drained when the kernel batches wake-ups, and waits are expired.
pub const TICK: Duration = Duration::from_millis(10);
/// The tick once nothing has arrived for [`IDLE_AFTER`] ticks (a quiet second).
pub const IDLE_TICK: Duration = Duration::from_millis(100);
const IDLE_AFTER: u32 = 100;
/// With [`Pipeline::idle_deeply`] (the daemon), the tick once quiet for [`DEEP_AFTER`] ticks
/// (five more seconds) with nothing waiting: an idle daemon wakes once a second. A burst still
/// wakes it at once (the ring's wake-up threshold), so does every record with a protect policy;
/// a lone removal after a quiet spell is stored within this long.
pub const DEEP_IDLE_TICK: Duration = Duration::from_secs(1);
const DEEP_AFTER: u32 = IDLE_AFTER + 50;

/// What one turn of the pipeline produced.
#[derive(Debug, Default)]
pub struct Batch {
    /// Events whose outcome is known (or given up on), oldest first, each with the kernel's
    /// description of its object when it was heard (for the restore engine).
    pub events: Vec<Observed>,
    /// Records the kernel dropped since the previous batch (ring buffer full).
    pub newly_lost: u64,
}

fn ticker(period: Duration) -> Interval {
    let mut tick = interval(period);
    tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    tick
}

pub struct Pipeline {
    /// Programs attached.
    pub programs: usize,
    /// The path that runs (the syscall path when kernel-function fell back).
    pub path: CapturePath,
    ring: AsyncFd<RingBuf<MapData>>,
    counters: Counters,
    correlator: Correlator,
    tick: Interval,
    /// Ticks in a row that found no record.
    quiet_ticks: u32,
    /// Something outside the pipeline (a restore waiting to retry) needs ticks at least every
    /// [`IDLE_TICK`].
    awake: bool,
    /// Slow to [`DEEP_IDLE_TICK`] when idle (the daemon; `trace` shows events within 100 ms).
    deep_idle: bool,
    losses: Losses,
    /// Woken when the mirror hears the kernel announce a deletion (when releasing on the
    /// announcement).
    heard: Option<Arc<Notify>>,
    adopted: bool,
    pinned: bool,
}

/// Waits for the mirror's signal, or forever without a mirror.
async fn heard(notify: Option<&Notify>) {
    match notify {
        Some(n) => n.notified().await,
        None => std::future::pending().await,
    }
}

impl Pipeline {
    /// Loads and attaches the capture programs; nothing is attached if this fails.
    pub fn start(options: &capture::Options) -> Result<Self, CaptureError> {
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
        let (ring, counters) = capture.split();
        // SAFETY: the RingBuf owns its map fd and moves into the AsyncFd, so the fd stays open
        // and is registered nowhere else for as long as the AsyncFd lives.
        let ring = unsafe { AsyncFd::register_with_interest(ring, Interest::READABLE) }
            .map_err(|e| CaptureError::Poll(io::Error::other(e.to_string())))?;
        let tick = ticker(TICK);
        let correlator = match options.path {
            CapturePath::Syscall => Correlator::with_mirror(Clock::new(), Mirror::new()),
            CapturePath::KernelFunction => {
                Correlator::kernel_function(Clock::new(), Some(Mirror::for_kernel_records()))
            }
        };
        Ok(Self {
            path: options.path,
            programs,
            ring,
            counters,
            heard: None,
            correlator,
            tick,
            quiet_ticks: 0,
            awake: false,
            deep_idle: false,
            losses: Losses::default(),
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

    /// Waits for data (or the next tick) and returns what completed. Cancel-safe: dropping the
    /// future loses nothing, the records stay in the ring until the next call.
    pub async fn next(&mut self) -> io::Result<Batch> {
        let mut heard_deletion = false;
        let ticked = tokio::select! {
            guard = self.ring.readable_mut() => {
                guard?.clear_ready();
                false
            }
            _ = heard(self.heard.as_deref()) => {
                heard_deletion = true;
                false
            }
            _ = self.tick.tick() => true,
        };
        // A deletion the kernel announced is activity even without a record (an IPv6 expiry,
        // a namespace's teardown): the fast ticks that follow report it promptly.
        let records = self.drain() + usize::from(heard_deletion);
        self.pace(ticked, records);
        if heard_deletion {
            // The kernel's view of a removal may be what a finished request was waiting for.
            self.correlator.release_viewed();
        }
        let mut newly_lost = 0;
        if ticked {
            self.correlator.expire(Clock::monotonic_ns());
            let now = self.counters.read();
            newly_lost = now.ring_full - self.losses.ring_full;
            self.losses = now;
        }
        Ok(Batch {
            events: self.correlator.take_ready(),
            newly_lost,
        })
    }

    /// Drains what is left and releases every waiting request (at exit).
    pub fn finish(&mut self) -> Batch {
        self.drain();
        self.correlator.flush();
        let now = self.counters.read();
        let newly_lost = now.ring_full - self.losses.ring_full;
        self.losses = now;
        Batch {
            events: self.correlator.take_ready(),
            newly_lost,
        }
    }

    /// Release deletes as soon as the kernel announces them (for the restore engine), instead
    /// of when their sender reads its ack.
    ///
    /// Only then does the mirror's signal wake the pipeline on each deletion it hears: in a
    /// burst that is a wake-up, a batch of one and a write per removal (measured: a third of
    /// the tracer's CPU). Otherwise the kernel's view of a removal is joined at the next tick.
    pub fn release_on_announcement(&mut self) {
        self.correlator.set_eager(true);
        self.heard = self.correlator.heard();
    }

    /// The clock that turns the kernel's timestamps into the events' wall-clock times.
    pub fn clock(&self) -> Clock {
        self.correlator.clock()
    }

    /// Lets the tick slow to once a second after a quiet spell with nothing waiting.
    pub fn idle_deeply(&mut self) {
        self.deep_idle = true;
    }

    /// Keeps the tick at [`IDLE_TICK`] or faster while `awake` (the restore engine has a retry
    /// due), instead of slowing to [`DEEP_IDLE_TICK`].
    pub fn stay_awake(&mut self, awake: bool) {
        self.awake = awake;
        if awake && self.tick.period() > IDLE_TICK {
            self.tick = ticker(IDLE_TICK);
        }
    }

    /// Totals since start.
    pub fn losses(&self) -> Losses {
        self.losses
    }

    pub fn problems(&self) -> Problems {
        self.correlator.problems()
    }

    /// Times the route mirror re-dumped after its notification socket overflowed.
    pub fn resyncs(&self) -> u64 {
        self.correlator.resyncs()
    }

    /// Reads every record waiting in the ring; returns how many there were.
    fn drain(&mut self) -> usize {
        let ring = self.ring.get_mut();
        let mut records = 0;
        while let Some(item) = ring.next() {
            self.correlator.record(&item);
            records += 1;
        }
        records
    }

    /// Fast ticks while records flow, slower ones after a quiet second, and (when idling
    /// deeply) one a second once quiet for longer with nothing waiting. The kernel still wakes
    /// us when the ring fills past the wake-up threshold, so a burst is never left waiting.
    fn pace(&mut self, ticked: bool, records: usize) {
        let period = self.tick.period();
        if records > 0 {
            self.quiet_ticks = 0;
            if period != TICK {
                self.tick = ticker(TICK);
            }
        } else if ticked {
            self.quiet_ticks = self.quiet_ticks.saturating_add(1);
            let deep = self.deep_idle
                && self.quiet_ticks >= DEEP_AFTER
                && !self.awake
                && self.correlator.is_empty();
            let want = match self.quiet_ticks {
                _ if deep => DEEP_IDLE_TICK,
                q if q >= IDLE_AFTER => IDLE_TICK,
                _ => TICK,
            };
            if want > period {
                self.tick = ticker(want);
            }
        }
    }
}
