//! The event store, written on a thread of its own.
//!
//! An insert costs tens of microseconds an event (the JSON, three indexes, the report's facts);
//! written inline, a burst of 100,000 removals kept the daemon from reading the ring buffer long
//! enough for the kernel to drop records. The daemon hands each batch over and goes back to the
//! ring; the thread writes them in order. Events waiting are bounded ([`MAX_QUEUED`]): past that
//! a batch is refused and counted as a store error, never dropped silently.

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
    store::{Retention, Store, StoreError},
};

/// Events handed over but not yet written, at most (about 1 KiB of memory each).
const MAX_QUEUED: usize = 200_000;

enum Job {
    Insert(Vec<Event>),
    Prune,
    Retention(Retention),
}

/// What the thread did, for the daemon's log and metrics.
pub enum Done {
    /// A batch of this many events, written or not.
    Inserted(Result<(), String>, usize),
    Pruned(Result<usize, String>),
}

pub struct StoreWriter {
    path: PathBuf,
    jobs: Option<mpsc::Sender<Job>>,
    done: mpsc::Receiver<Done>,
    queued: Arc<AtomicUsize>,
    thread: Option<JoinHandle<Result<(), StoreError>>>,
}

impl StoreWriter {
    /// Hands `store` to a new thread.
    pub fn start(mut store: Store) -> std::io::Result<Self> {
        let path = store.path().to_owned();
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
                            let r = store.insert(&events).map(drop).map_err(|e| e.to_string());
                            waiting.fetch_sub(events.len(), Ordering::Relaxed);
                            Done::Inserted(r, events.len())
                        }
                        Job::Prune => Done::Pruned(store.prune().map_err(|e| e.to_string())),
                        Job::Retention(r) => {
                            store.set_retention(r);
                            continue;
                        }
                    };
                    // The daemon reads these as it goes; gone only once it is closing.
                    let _ = done_tx.send(done);
                }
                store.close()
            })?;
        Ok(StoreWriter {
            path,
            jobs: Some(jobs),
            done,
            queued,
            thread: Some(thread),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn send(&self, job: Job) -> Result<(), String> {
        self.jobs
            .as_ref()
            .and_then(|j| j.send(job).ok())
            .ok_or_else(|| "the store thread has stopped".to_owned())
    }

    /// Queues `events` for writing; refused (and so to be counted) when too many wait already.
    pub fn insert(&self, events: Vec<Event>) -> Result<(), String> {
        let waiting = self.queued.load(Ordering::Relaxed);
        if waiting + events.len() > MAX_QUEUED {
            return Err(format!(
                "{waiting} events are still waiting to be written (at most {MAX_QUEUED}); the \
                 store is slower than the removals (check the disk)"
            ));
        }
        self.queued.fetch_add(events.len(), Ordering::Relaxed);
        let n = events.len();
        self.send(Job::Insert(events)).inspect_err(|_| {
            self.queued.fetch_sub(n, Ordering::Relaxed);
        })
    }

    pub fn prune(&self) -> Result<(), String> {
        self.send(Job::Prune)
    }

    pub fn set_retention(&self, retention: Retention) -> Result<(), String> {
        self.send(Job::Retention(retention))
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
        let writer = StoreWriter::start(Store::open(&path, Retention::default()).unwrap()).unwrap();
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
}
