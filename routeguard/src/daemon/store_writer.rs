//! The event store, written on a thread of its own.
//!
//! An insert costs tens of microseconds an event (the JSON, three indexes, the report's facts);
//! written inline, a burst of 100,000 removals kept the daemon from reading the ring buffer long
//! enough for the kernel to drop records. The daemon hands each batch over and goes back to the
//! ring; the thread writes them in order. Events waiting are bounded ([`MAX_QUEUED`]): past that
//! a batch is refused and counted as a store error, never dropped silently.
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
    event::Event,
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

/// Events handed over but not yet written, at most (about 1 KiB of memory each).
const MAX_QUEUED: usize = 200_000;

enum Job {
    Insert(Vec<Event>),
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
        "{waiting} events are still waiting to be written (at most {MAX_QUEUED}); the store is \
         slower than the removals (check the disk)"
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
    fn insert(&mut self, events: &[Event]) -> Result<(), WriteError> {
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
                for job in rx {
                    let done = match job {
                        Job::Insert(events) => {
                            let r = worker.insert(&events);
                            waiting.fetch_sub(events.len(), Ordering::Relaxed);
                            Done::Inserted(r, events.len())
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

    /// Queues `events` for writing; refused (and so to be counted) when too many wait already.
    pub fn insert(&self, events: Vec<Event>) -> Result<(), Refused> {
        let waiting = self.queued.load(Ordering::Relaxed);
        if waiting + events.len() > MAX_QUEUED {
            return Err(Refused::Full { waiting });
        }
        self.queued.fetch_add(events.len(), Ordering::Relaxed);
        let n = events.len();
        self.send(Job::Insert(events)).map_err(|e| {
            self.queued.fetch_sub(n, Ordering::Relaxed);
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
        let inserted: Vec<usize> = done
            .iter()
            .filter_map(|d| match d {
                Done::Inserted(Ok(()), n) => Some(*n),
                _ => None,
            })
            .collect();
        assert_eq!(inserted, [100, 100, 100]);
        assert!(matches!(done.last(), Some(Done::Pruned(Ok(0)))));
        let stored = crate::store::read_events(&path, None, None).unwrap();
        assert_eq!(stored.len(), 300);
        assert_eq!(
            stored[299]["ts"],
            crate::event::Timestamp(TS + 299).rfc3339()
        );
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
