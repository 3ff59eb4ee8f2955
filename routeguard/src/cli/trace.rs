//! `routeguard trace`: capture, correlate, filter, print — until interrupted or a limit is hit.

use std::{
    io::{self, BufWriter, Write},
    process::ExitCode,
    time::Duration,
};

use aya::maps::{MapData, RingBuf};
use tokio::{
    io::{unix::AsyncFd, Interest},
    signal::unix::{signal, SignalKind},
    time::{interval, sleep_until, Instant},
};

use super::{TraceArgs, EXIT_USAGE};
use crate::{
    capture::{self, Capture, CaptureError, Losses, PROGRAMS},
    correlate::{Clock, Correlator},
    event::Event,
    kernel::requirements,
    sink,
};

/// How often the ring is drained when the kernel batches wake-ups, and waits are expired.
const TICK: Duration = Duration::from_millis(10);

pub fn run(args: TraceArgs) -> ExitCode {
    if let Err(unmet) = requirements::check() {
        eprintln!("routeguard: {unmet}");
        return ExitCode::from(EXIT_USAGE);
    }
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(err) => {
            eprintln!("routeguard: cannot start the async runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(trace(&args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(TraceError::Capture(err)) => {
            eprintln!("routeguard: {err}");
            match err {
                CaptureError::Map { .. } | CaptureError::NoMap(_) => ExitCode::FAILURE,
                _ => ExitCode::from(EXIT_USAGE),
            }
        }
        Err(TraceError::Io(err)) => {
            eprintln!("routeguard: {err}");
            ExitCode::FAILURE
        }
    }
}

#[derive(Debug, thiserror::Error)]
enum TraceError {
    #[error(transparent)]
    Capture(#[from] CaptureError),
    #[error("{0}")]
    Io(#[from] io::Error),
}

enum Wake {
    Data,
    Tick,
    Stop,
}

async fn trace(args: &TraceArgs) -> Result<(), TraceError> {
    let options = capture::Options {
        ring_bytes: args.ring_size,
        wakeup_bytes: args.wakeup,
    };
    let (ring, counters) = Capture::start(&options)?.split();
    // SAFETY: the RingBuf owns its map fd and moves into the AsyncFd, so the fd stays open and
    // is not registered elsewhere for as long as the AsyncFd lives.
    let mut ring = unsafe { AsyncFd::register_with_interest(ring, Interest::READABLE) }
        .map_err(|e| io::Error::other(format!("cannot poll the ring buffer: {e}")))?;
    let mut output = Output::new(args.json);
    let mut correlator = Correlator::new(Clock::new());
    let filter = args.filter();
    let mut sigint = signal(SignalKind::interrupt())?;
    let mut sigterm = signal(SignalKind::terminate())?;
    let deadline = args.duration.map(|d| Instant::now() + d);
    let mut tick = interval(TICK);
    let mut reported = Losses::default();
    eprintln!(
        "routeguard: tracing started (capture=syscall, {} programs, ring {} KiB); Ctrl-C to stop",
        PROGRAMS.len(),
        args.ring_size >> 10
    );

    loop {
        let wake = tokio::select! {
            guard = ring.readable_mut() => {
                guard?.clear_ready();
                Wake::Data
            }
            _ = tick.tick() => Wake::Tick,
            _ = sigint.recv() => Wake::Stop,
            _ = sigterm.recv() => Wake::Stop,
            _ = sleep_until(deadline.unwrap_or_else(Instant::now)), if deadline.is_some() => Wake::Stop,
        };
        drain(ring.get_mut(), &mut correlator);
        if matches!(wake, Wake::Tick) {
            correlator.expire(Clock::monotonic_ns());
            reported = report_new_losses(&counters.read(), reported, args.ring_size);
        }
        let done = output.emit(correlator.take_ready(), &filter, args.count)?;
        if done || matches!(wake, Wake::Stop) || output.closed {
            break;
        }
    }
    drain(ring.get_mut(), &mut correlator);
    correlator.flush();
    output.emit(correlator.take_ready(), &filter, args.count)?;
    let losses = counters.read();
    report_new_losses(&losses, reported, args.ring_size);
    summary(output.shown, &losses, &correlator);
    Ok(())
}

fn drain(ring: &mut RingBuf<MapData>, correlator: &mut Correlator) {
    while let Some(item) = ring.next() {
        correlator.record(&item);
    }
}

/// Says so the moment the kernel drops a record: loss is never silent.
fn report_new_losses(now: &Losses, before: Losses, ring_size: u32) -> Losses {
    if now.ring_full > before.ring_full {
        eprintln!(
            "routeguard: {} events lost so far: the ring buffer ({} KiB) was full; raise --ring-size",
            now.ring_full,
            ring_size >> 10
        );
    }
    *now
}

fn summary(shown: u64, losses: &Losses, correlator: &Correlator) {
    let p = correlator.problems();
    let mut notes = Vec::new();
    for (n, what) in [
        (
            losses.truncated,
            "requests longer than the copy limit (tail not decoded)",
        ),
        (
            losses.read_failed,
            "requests whose memory could not be read",
        ),
        (
            losses.task_lost,
            "process-detail records lost (those actors came from /proc)",
        ),
        (p.bad_records, "malformed records"),
        (p.undecodable, "undecodable messages"),
    ] {
        if n > 0 {
            notes.push(format!("{n} {what}"));
        }
    }
    if !notes.is_empty() {
        eprintln!("routeguard: also: {}", notes.join("; "));
    }
    eprintln!("routeguard: {shown} events, {} lost", losses.ring_full);
}

/// Where events go: stdout, as text or JSON lines.
struct Output {
    json: bool,
    out: BufWriter<io::Stdout>,
    shown: u64,
    /// stdout went away (e.g. `| head`): stop quietly.
    closed: bool,
}

impl Output {
    fn new(json: bool) -> Self {
        Self {
            json,
            out: BufWriter::new(io::stdout()),
            shown: 0,
            closed: false,
        }
    }

    /// Writes the events that pass `filter`; true once `limit` events have been shown.
    fn emit(
        &mut self,
        events: Vec<Event>,
        filter: &crate::event::filter::Filter,
        limit: Option<u64>,
    ) -> io::Result<bool> {
        for ev in events.iter().filter(|e| filter.matches(e)) {
            if limit.is_some_and(|l| self.shown >= l) || self.closed {
                break;
            }
            let line = if self.json {
                sink::json::to_line(ev)
            } else {
                sink::terminal::format_line(ev)
            };
            if let Err(err) = writeln!(self.out, "{line}") {
                return self.broken(err);
            }
            self.shown += 1;
        }
        if let Err(err) = self.out.flush() {
            return self.broken(err);
        }
        Ok(limit.is_some_and(|l| self.shown >= l))
    }

    fn broken(&mut self, err: io::Error) -> io::Result<bool> {
        if err.kind() == io::ErrorKind::BrokenPipe {
            self.closed = true;
            Ok(true)
        } else {
            Err(err)
        }
    }
}
