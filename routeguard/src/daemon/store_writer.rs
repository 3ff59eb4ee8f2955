//! The event store, written on a thread of its own.
//!
//! An insert costs tens of microseconds an event (the JSON, three indexes, the report's facts);
//! written inline, a burst of 100,000 removals kept the daemon from reading the ring buffer long
//! enough for the kernel to drop records. The daemon hands each batch over and goes back to the
//! ring; the thread writes them in order, the batches that waited together in one transaction
//! ([`TRANSACTION_EVENTS`]). Events waiting are bounded in bytes ([`MAX_QUEUED_BYTES`]): past
//! that a batch is refused and counted as a store error, never dropped silently.
//!
//! The thread also (re)opens the store when the daemon asks ([`StoreWriter::reopen`], a retry
//! after a failure), moving an unusable file aside, so that neither a migration nor a slow disk
//! holds up the ring; and it notices when the file was removed or replaced under it (checked
//! before each batch) and starts a new one at the path.

use std::{
    path::{Path, PathBuf},
    sync::{
        atomic::{AtomicUsize, Ordering},
        mpsc, Arc,
    },
    thread::JoinHandle,
};

use crate::{
    event::{Event, Object},
    store::{self, Retention, SetAside, Store, StoreError},
};

/// Why the thread could not do a job.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    #[error(transparent)]
    Store(Arc<StoreError>),
    /// The store is not open; with what closed it or kept it from opening, when that is known.
    /// The daemon's retry reopens it.
    #[error("the event store is not open{}", .0.as_ref().map(|e| format!(": {e}")).unwrap_or_default())]
    NotOpen(Option<Arc<StoreError>>),
}

/// The thread is gone (it panicked); the daemon starts a new one at its next retry.
#[derive(Debug, thiserror::Error)]
#[error("the store thread has stopped")]
pub struct Stopped;

/// Bytes of events handed over but not yet written, at most ([`footprint`]): 192 MiB holds about
/// 219,000 routes of a flush (919 B each, measured by a test below), as many as the bound of
/// 200,000 events it replaces held of routes, but now a burst of larger events cannot hold more.
/// Measured with 64 MiB: a million-route flush peaked at 474 MiB and stored 155,384 (the rest
/// refused, counted), against 277,566 at 646 MiB under the old bound.
const MAX_QUEUED_BYTES: usize = 192 << 20;

/// Events written in one transaction at most. The daemon hands over a batch per ring read, often
/// a few dozen events; a transaction each rewrote the same index pages into the log over and
/// over. While the store lags, the batches waiting go in one transaction: every page it dirties
/// is written once.
const TRANSACTION_EVENTS: usize = 4096;

/// Events handed over together, with their [`footprint`].
struct Batch {
    events: Vec<Event>,
    bytes: usize,
}

enum Job {
    Insert(Batch),
    Prune,
    Retention(Retention),
    /// Close the store (if open) and open it again, moving an unusable file aside.
    Reopen,
}

/// What the thread did, for the daemon's log, metrics and the sink's health.
pub enum Done {
    /// A batch of this many events, written or not.
    Inserted(Result<(), WriteError>, usize),
    Pruned(Result<usize, WriteError>),
    /// A reopen: the store moved aside, if it was unusable.
    Opened(Result<Option<SetAside>, WriteError>),
}

/// Why a batch was not queued.
#[derive(Debug, thiserror::Error)]
pub enum Refused {
    /// Too many events wait already: a burst the store has not caught up with. The batch is
    /// counted; the store is not failing.
    #[error(
        "{} MiB of events are still waiting to be written (at most {} MiB); the store is \
         slower than the removals (check the disk)", .waiting >> 20, MAX_QUEUED_BYTES >> 20
    )]
    Full { waiting: usize },
    #[error(transparent)]
    Stopped(#[from] Stopped),
}

pub struct StoreWriter {
    path: PathBuf,
    jobs: Option<mpsc::Sender<Job>>,
    done: mpsc::Receiver<Done>,
    queued: Arc<AtomicUsize>,
    thread: Option<JoinHandle<Result<(), StoreError>>>,
}

/// The thread's side: the store, when it is open, and what it needs to open it again.
struct Worker {
    path: PathBuf,
    retention: Retention,
    store: Option<Store>,
    /// Why the store is not open, or why it must be moved aside at the next reopen.
    broken: Option<Arc<StoreError>>,
}

impl Worker {
    fn insert<'e>(
        &mut self,
        events: impl IntoIterator<Item = &'e Event>,
    ) -> Result<(), WriteError> {
        if self.store.as_ref().is_some_and(Store::is_replaced) {
            // Removed or renamed under us: what SQLite writes now, nobody can read. A new file at
            // the path takes the next events (the next reopen moves nothing).
            tracing::warn!(
                "the event store {} was removed or replaced while open; starting a new one there",
                self.path.display()
            );
            self.reopen()?;
        }
        let Some(store) = &mut self.store else {
            return Err(self.not_open());
        };
        store.insert(events).map(drop).map_err(|e| {
            let e = Arc::new(e);
            if e.is_unusable() {
                // Closed now; moved aside at the next reopen, which the daemon asks for.
                self.close();
                self.broken = Some(Arc::clone(&e));
            }
            WriteError::Store(e)
        })
    }

    fn prune(&mut self) -> Result<usize, WriteError> {
        match &mut self.store {
            Some(store) => store.prune().map_err(|e| WriteError::Store(Arc::new(e))),
            None => Err(self.not_open()),
        }
    }

    fn not_open(&self) -> WriteError {
        WriteError::NotOpen(self.broken.clone())
    }

    fn close(&mut self) {
        if let Some(store) = self.store.take() {
            if let Err(e) = store.close() {
                tracing::debug!("closing the event store to reopen it: {e}");
            }
        }
    }

    fn reopen(&mut self) -> Result<Option<SetAside>, WriteError> {
        self.close();
        let opened = match self.broken.take() {
            // Failed while open with a corrupt file: moved aside without trying it again.
            Some(e) if e.is_unusable() => store::set_aside(&self.path, &e)
                .and_then(|aside| Ok((Store::open(&self.path, self.retention)?, Some(aside)))),
            _ => Store::open_or_set_aside(&self.path, self.retention),
        };
        match opened {
            Ok((store, aside)) => {
                self.store = Some(store);
                Ok(aside)
            }
            Err(e) => {
                let e = Arc::new(e);
                self.broken = Some(Arc::clone(&e));
                Err(WriteError::Store(e))
            }
        }
    }
}

/// The batch `first` and the batches queued behind it, up to [`TRANSACTION_EVENTS`]; another
/// kind of job met meanwhile goes into `next`.
fn gather(first: Batch, rx: &mpsc::Receiver<Job>, next: &mut Option<Job>) -> Vec<Batch> {
    let mut n = first.events.len();
    let mut batches = vec![first];
    while n < TRANSACTION_EVENTS {
        match rx.try_recv() {
            Ok(Job::Insert(more)) => {
                n += more.events.len();
                batches.push(more);
            }
            Ok(other) => {
                *next = Some(other);
                break;
            }
            Err(_) => break,
        }
    }
    batches
}

/// The memory an event waiting in the queue holds, about: the struct and the heap strings of
/// its object (a route's, in full; the kinds that come in bursts are routes), each with the
/// allocator's 16 bytes. Actors and hosts are shared between events ([`Arc`]), not counted.
pub fn footprint(ev: &Event) -> usize {
    const HEAP: usize = 16;
    let string = |s: &Option<String>| s.as_ref().map_or(0, |s| s.capacity() + HEAP);
    let object = match &ev.object {
        Object::Route(r) => [
            &r.dst,
            &r.gateway,
            &r.dev,
            &r.protocol,
            &r.scope,
            &r.route_type,
            &r.src,
        ]
        .into_iter()
        .map(string)
        .sum(),
        // Rules, nexthops, links and addresses: a few short names.
        _ => 256,
    };
    std::mem::size_of::<Event>() + object + string(&ev.netns.name) + string(&ev.error)
}

impl StoreWriter {
    /// Starts the thread with `store`, or with none open (it could not be), to be opened by
    /// [`reopen`](Self::reopen).
    pub fn start(path: &Path, retention: Retention, store: Option<Store>) -> std::io::Result<Self> {
        let mut worker = Worker {
            path: path.to_owned(),
            retention,
            store,
            broken: None,
        };
        let (jobs, rx) = mpsc::channel::<Job>();
        let (done_tx, done) = mpsc::channel();
        let queued = Arc::new(AtomicUsize::new(0));
        let waiting = queued.clone();
        let thread = std::thread::Builder::new()
            .name("store".into())
            .spawn(move || {
                // A job taken while gathering batches, to do next.
                let mut next = None;
                while let Some(job) = next.take().or_else(|| rx.recv().ok()) {
                    let done = match job {
                        Job::Insert(first) => {
                            let batches = gather(first, &rx, &mut next);
                            let r = worker.insert(batches.iter().flat_map(|b| &b.events));
                            let n = batches.iter().map(|b| b.events.len()).sum();
                            let bytes = batches.iter().map(|b| b.bytes).sum();
                            // Freed before the queue says there is room again.
                            drop(batches);
                            waiting.fetch_sub(bytes, Ordering::Relaxed);
                            Done::Inserted(r, n)
                        }
                        Job::Prune => Done::Pruned(worker.prune()),
                        Job::Retention(r) => {
                            worker.retention = r;
                            if let Some(store) = &mut worker.store {
                                store.set_retention(r);
                            }
                            continue;
                        }
                        Job::Reopen => Done::Opened(worker.reopen()),
                    };
                    // The daemon reads these as it goes; gone only once it is closing.
                    let _ = done_tx.send(done);
                }
                worker.store.map_or(Ok(()), Store::close)
            })?;
        Ok(StoreWriter {
            path: path.to_owned(),
            jobs: Some(jobs),
            done,
            queued,
            thread: Some(thread),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Whether the thread still takes jobs (it ends only if it panicked).
    pub fn is_running(&self) -> bool {
        self.thread.as_ref().is_some_and(|t| !t.is_finished())
    }

    fn send(&self, job: Job) -> Result<(), Stopped> {
        self.jobs
            .as_ref()
            .and_then(|j| j.send(job).ok())
            .ok_or(Stopped)
    }

    /// Queues `events` for writing; refused (and so to be counted) when too many bytes wait
    /// already ([`MAX_QUEUED_BYTES`]).
    pub fn insert(&self, events: Vec<Event>) -> Result<(), Refused> {
        let bytes: usize = events.iter().map(footprint).sum();
        let waiting = self.queued.load(Ordering::Relaxed);
        if waiting + bytes > MAX_QUEUED_BYTES {
            return Err(Refused::Full { waiting });
        }
        self.queued.fetch_add(bytes, Ordering::Relaxed);
        self.send(Job::Insert(Batch { events, bytes }))
            .map_err(|e| {
                self.queued.fetch_sub(bytes, Ordering::Relaxed);
                Refused::Stopped(e)
            })
    }

    pub fn prune(&self) -> Result<(), Stopped> {
        self.send(Job::Prune)
    }

    pub fn set_retention(&self, retention: Retention) -> Result<(), Stopped> {
        self.send(Job::Retention(retention))
    }

    /// Asks the thread to close the store and open it again (moving an unusable one aside);
    /// the outcome comes back as [`Done::Opened`].
    pub fn reopen(&self) -> Result<(), Stopped> {
        self.send(Job::Reopen)
    }

    /// What the thread has done since the last call.
    pub fn done(&self) -> impl Iterator<Item = Done> + '_ {
        self.done.try_iter()
    }

    /// Writes what is queued, closes the store and ends the thread; then what it did.
    pub fn close(mut self) -> (Result<(), StoreError>, Vec<Done>) {
        drop(self.jobs.take());
        let closed = match self.thread.take().map(JoinHandle::join) {
            Some(Ok(r)) => r,
            Some(Err(_)) => {
                tracing::error!(path = %self.path.display(), "the store thread panicked");
                Ok(())
            }
            None => Ok(()),
        };
        (closed, self.done.try_iter().collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::fixtures::{route_event, TS};

    #[test]
    fn batches_are_written_in_order_and_closing_writes_what_waits() {
        let dir = std::env::temp_dir().join(format!("rg-store-writer-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("events.db");
        let writer = StoreWriter::start(
            &path,
            Retention::default(),
            Some(Store::open(&path, Retention::default()).unwrap()),
        )
        .unwrap();
        for batch in 0..3 {
            let events = (0..100)
                .map(|i| {
                    let mut ev = route_event();
                    ev.ts = crate::event::Timestamp(TS + batch * 100 + i);
                    ev
                })
                .collect();
            writer.insert(events).unwrap();
        }
        writer.prune().unwrap();
        let (closed, done) = writer.close();
        closed.unwrap();
        // Batches that waited together are written in one transaction: one answer for them.
        let inserted: usize = done
            .iter()
            .map(|d| match d {
                Done::Inserted(Ok(()), n) => *n,
                Done::Inserted(Err(e), _) => panic!("{e}"),
                _ => 0,
            })
            .sum();
        assert_eq!(inserted, 300);
        assert!(matches!(done.last(), Some(Done::Pruned(Ok(0)))));
        let stored = crate::store::read_events(&path, None, None).unwrap();
        assert_eq!(stored.len(), 300);
        assert_eq!(
            stored[299]["ts"],
            crate::event::Timestamp(TS + 299).rfc3339()
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// What a flush's route event holds while it waits (the figure [`MAX_QUEUED_BYTES`] quotes).
    #[test]
    fn a_flushed_route_waits_in_under_a_kibibyte() {
        let mut ev = route_event();
        ev.actor = None;
        let bytes = footprint(&ev);
        println!("a route event waiting: {bytes} bytes");
        assert!((500..1024).contains(&bytes), "{bytes}");
    }

    /// While the store is locked by another writer, batches pile up to the byte bound and no
    /// further: the one that would pass it is refused (and so counted by the caller).
    #[test]
    fn a_burst_is_refused_at_the_byte_bound() {
        let dir = std::env::temp_dir().join(format!("rg-store-bound-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("events.db");
        let store = Store::open(&path, Retention::default()).unwrap();
        let locker = rusqlite::Connection::open(&path).unwrap();
        locker.execute_batch("BEGIN IMMEDIATE").unwrap();
        let writer = StoreWriter::start(&path, Retention::default(), Some(store)).unwrap();
        let batch: Vec<Event> = (0..1000).map(|_| route_event()).collect();
        let per_batch: usize = batch.iter().map(footprint).sum();
        let mut accepted = 0;
        let refused = loop {
            match writer.insert(batch.clone()) {
                Ok(()) => accepted += per_batch,
                Err(Refused::Full { waiting }) => break waiting,
                Err(e) => panic!("{e}"),
            }
            assert!(accepted <= MAX_QUEUED_BYTES, "accepted {accepted} bytes");
        };
        // The thread may have taken (and be stuck writing) some batches: they still count.
        assert!(
            refused + per_batch > MAX_QUEUED_BYTES,
            "refused at {refused}"
        );
        assert!(
            accepted + per_batch > MAX_QUEUED_BYTES,
            "accepted {accepted}"
        );
        locker.execute_batch("ROLLBACK").unwrap();
        drop(locker);
        let (closed, _) = writer.close();
        closed.unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
    }

    fn wait_done(writer: &StoreWriter) -> Done {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        loop {
            if let Some(d) = writer.done().next() {
                return d;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "no answer from the store thread"
            );
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
    }

    /// Started without a store (it could not be opened), the thread opens it when asked,
    /// moving an unusable file aside; and a file removed under it is started again.
    #[test]
    fn reopens_when_asked_and_starts_again_when_the_file_goes() {
        let dir = std::env::temp_dir().join(format!("rg-store-reopen-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("events.db");
        std::fs::write(&path, vec![b'x'; 4096]).unwrap();
        let writer = StoreWriter::start(&path, Retention::default(), None).unwrap();
        writer.insert(vec![route_event()]).unwrap();
        assert!(
            matches!(wait_done(&writer), Done::Inserted(Err(e), 1) if e.to_string().contains("not open"))
        );
        writer.reopen().unwrap();
        let Done::Opened(Ok(Some(aside))) = wait_done(&writer) else {
            panic!("the garbage file is moved aside");
        };
        assert!(aside.to.to_str().unwrap().contains(".corrupt-"));
        writer.insert(vec![route_event()]).unwrap();
        assert!(matches!(wait_done(&writer), Done::Inserted(Ok(()), 1)));
        std::fs::remove_file(&path).unwrap();
        writer.insert(vec![route_event(), route_event()]).unwrap();
        assert!(matches!(wait_done(&writer), Done::Inserted(Ok(()), 2)));
        let (closed, _) = writer.close();
        closed.unwrap();
        assert_eq!(
            crate::store::read_events(&path, None, None).unwrap().len(),
            2
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

/// The store's write rate through the daemon's real path (queue, thread, [`Store::insert`]), for
/// a flush: every event a distinct route, one actor. Not a test (it asserts nothing and takes a
/// while): `cargo test --release -p routeguard store_write_rate -- --ignored --nocapture`, with
/// `ROUTEGUARD_STORE_RATE_EVENTS` (default 200,000) and `ROUTEGUARD_STORE_RATE_BATCH` (events
/// per batch handed over, default 64). A batch refused at the queue's bound is handed over again
/// after 1 ms (the daemon would count it as lost; here it is counted and retried).
#[cfg(test)]
mod rate {
    use std::time::{Duration, Instant};

    use super::*;
    use crate::event::{fixtures::route_event, Object, Timestamp};

    fn env(name: &str, default: usize) -> usize {
        std::env::var(name)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(default)
    }

    /// CPU seconds this process has used (all threads): on a shared machine, the rate per CPU
    /// second says more than the rate per wall-clock second.
    fn cpu_seconds() -> f64 {
        // SAFETY: getrusage fills the struct it is handed; RUSAGE_SELF is always valid.
        let usage = unsafe {
            let mut usage = std::mem::zeroed::<libc::rusage>();
            libc::getrusage(libc::RUSAGE_SELF, &mut usage);
            usage
        };
        let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
        secs(usage.ru_utime) + secs(usage.ru_stime)
    }

    #[test]
    #[ignore = "a benchmark: run it by name with --ignored --nocapture"]
    fn store_write_rate() {
        let n = env("ROUTEGUARD_STORE_RATE_EVENTS", 200_000);
        let batch = env("ROUTEGUARD_STORE_RATE_BATCH", 64).max(1);
        let dir = std::env::temp_dir().join(format!("rg-store-rate-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("events.db");
        let events: Vec<Event> = (0..n)
            .map(|i| {
                let mut ev = route_event();
                ev.ts = Timestamp(crate::event::fixtures::TS + i as i128);
                if let Object::Route(r) = &mut ev.object {
                    r.dst = Some(format!("10.{}.{}.0/24", i >> 16, (i >> 8) & 255));
                    r.table = Some(100);
                }
                ev
            })
            .collect();
        let writer = StoreWriter::start(
            &path,
            Retention::default(),
            Some(Store::open(&path, Retention::default()).unwrap()),
        )
        .unwrap();
        let (start, cpu) = (Instant::now(), cpu_seconds());
        let mut refused = 0usize;
        let mut chunks = events.chunks(batch);
        let mut next = chunks.next();
        while let Some(chunk) = next {
            match writer.insert(chunk.to_vec()) {
                Ok(()) => next = chunks.next(),
                Err(Refused::Full { .. }) => {
                    refused += chunk.len();
                    std::thread::sleep(Duration::from_millis(1));
                }
                Err(e) => panic!("{e}"),
            }
        }
        let handed = start.elapsed();
        let (closed, done) = writer.close();
        let (took, cpu) = (start.elapsed(), cpu_seconds() - cpu);
        closed.unwrap();
        let failed = done
            .iter()
            .filter(|d| matches!(d, Done::Inserted(Err(_), _)))
            .count();
        let size = std::fs::metadata(&path).map_or(0, |m| m.len())
            + std::fs::metadata(dir.join("events.db-wal")).map_or(0, |m| m.len());
        println!(
            "store write rate: {n} events in batches of {batch}: handed over in {:.2} s, written \
             in {:.2} s = {:.0} events/s, {:.0} per CPU second (all threads); refused (retried) {refused}, failed batches {failed}; \
             store {:.0} MiB ({:.0} B/event)",
            handed.as_secs_f64(),
            took.as_secs_f64(),
            n as f64 / took.as_secs_f64(),
            n as f64 / cpu,
            size as f64 / 1048576.0,
            size as f64 / n as f64,
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
