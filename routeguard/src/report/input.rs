//! Reading events back: a JSONL capture (`routeguard trace --json`) or the daemon's store.
//!
//! A line that is not an event is counted and skipped, and the first few are kept with their
//! line number for the report's headline; a file with no event at all is an error naming the
//! first bad line, since it is most likely not a capture.

use std::collections::hash_map::RandomState;
use std::fs::File;
use std::io::Read;
use std::ops::ControlFlow;
use std::path::{Path, PathBuf};

use super::collect::{actor_hash, Collector, Facts, RestoreFields};
use super::memo::{ActorEntry, Memo, ObjectEntry, Wanted, NO_ACTOR};
use super::model::{Skipped, Source};
use crate::event::{filter::Filter, Event, EventRef, Timestamp};
use crate::store::{self, StoreError};

/// Skipped lines kept with their reason.
const SKIPPED_EXAMPLES: usize = 3;

#[derive(Clone, Debug)]
pub enum Input {
    /// JSON lines as `routeguard trace --json` writes them.
    Jsonl(PathBuf),
    /// The daemon's SQLite store.
    Store(PathBuf),
}

/// Which events make it into the report.
#[derive(Clone, Debug, Default)]
pub struct Query {
    pub filter: Filter,
    /// Inclusive bounds.
    pub since: Option<Timestamp>,
    pub until: Option<Timestamp>,
}

impl Query {
    /// Whether the event at `ts` is wanted; `event` gives it in full, which only a filter flag
    /// needs.
    pub(super) fn wants(&self, ts: Timestamp, event: impl FnOnce() -> Event) -> bool {
        self.since.is_none_or(|s| ts >= s)
            && self.until.is_none_or(|u| ts <= u)
            && (!self.filters() || self.filter.matches(&event()))
    }

    /// Whether any filter flag was given.
    pub(super) fn filters(&self) -> bool {
        // Destructured so that a new filter field cannot be forgotten here.
        let Filter {
            comms,
            pids,
            units,
            netns,
            kinds,
            family,
            tables,
        } = &self.filter;
        !(comms.is_empty()
            && pids.is_empty()
            && units.is_empty()
            && netns.is_empty()
            && kinds.is_empty()
            && family.is_none()
            && tables.is_empty())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum InputError {
    #[error("cannot read {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "{path}:{line}: not a routeguard event ({reason}); --input expects the JSON lines \
         `routeguard trace --json` writes (docs/events.md)"
    )]
    NotEvents {
        path: PathBuf,
        line: u64,
        reason: String,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Tallies what was read, for [`Source`].
pub(super) struct Tally {
    pub(super) events_read: u64,
    skipped: u64,
    examples: Vec<Skipped>,
    /// The collector's hasher and its number for "no process", once an event had none.
    pub(super) hasher: RandomState,
    pub(super) kernel: Option<u32>,
}

/// What the fold knows of one parser thread's actors and objects ([`Memo`]): each with the
/// collector's number, once an event wanted it (`NOT_YET` before).
#[derive(Default)]
struct Slot {
    actors: Vec<(ActorEntry, u32)>,
    objects: Vec<(ObjectEntry, u32)>,
}

const NOT_YET: u32 = u32::MAX;

impl Tally {
    pub(super) fn new(hasher: RandomState) -> Self {
        Tally {
            events_read: 0,
            skipped: 0,
            examples: Vec::new(),
            hasher,
            kernel: None,
        }
    }

    pub(super) fn skip(&mut self, line: u64, reason: String) {
        self.skipped += 1;
        if self.examples.len() < SKIPPED_EXAMPLES {
            self.examples.push(Skipped { line, reason });
        }
    }

    /// One event read ([`Memo::line`]): folded if the query wants it, and counted.
    fn event(&mut self, wanted: Option<Wanted>, slot: &mut Slot, into: &mut Collector) {
        if let Some(w) = wanted {
            self.fold(w, slot, into);
        }
        self.events_read += 1;
    }

    fn fold(&mut self, w: Wanted, slot: &mut Slot, into: &mut Collector) {
        let facts = Facts {
            ts: w.ts,
            kind: w.kind,
            cause: w.cause,
            outcome: w.outcome,
            errno: w.errno,
            error: w.error.as_deref(),
            event: w.event,
            restore: w.restore.as_deref().map(RestoreFields::of),
        };
        let actor = if w.actor == NO_ACTOR {
            match self.kernel {
                Some(i) => i,
                None => {
                    let hash = actor_hash(&self.hasher, None);
                    *self.kernel.insert(into.intern_actor(hash, None, || None))
                }
            }
        } else {
            let (a, i) = &mut slot.actors[w.actor as usize];
            if *i == NOT_YET {
                *i = into.intern_actor(a.hash, Some(&a.key()), || Some(a.actor.clone()));
            }
            *i
        };
        let (o, object) = &mut slot.objects[w.object as usize];
        if *object == NOT_YET {
            *object = into.intern_object(
                o.hash,
                o.kind,
                o.netns.inode,
                o.netns.name.as_deref(),
                o.key.clone(),
                o.description.as_str(),
            );
        }
        into.push_interned(&facts, actor, *object);
    }

    pub(super) fn source(self, kind: &'static str, path: &Path) -> Source {
        Source {
            kind,
            path: path.display().to_string(),
            events_read: self.events_read,
            skipped_lines: self.skipped,
            skipped_examples: self.examples,
        }
    }

    /// Every line was bad: this is not a capture at all.
    pub(super) fn check_not_all_bad(&self, path: &Path) -> Result<(), InputError> {
        match self.examples.first() {
            Some(first) if self.events_read == 0 => Err(InputError::NotEvents {
                path: path.to_owned(),
                line: first.line,
                reason: first.reason.clone(),
            }),
            _ => Ok(()),
        }
    }
}

/// Reads `input`, pushing every event `q` wants into `into`.
pub fn load(input: &Input, q: &Query, into: &mut Collector) -> Result<Source, InputError> {
    match input {
        Input::Jsonl(path) => load_jsonl(path, q, into),
        Input::Store(path) => load_store(path, q, into),
    }
}

/// Opens a JSON lines capture; a directory is an error naming it.
pub(super) fn open_capture(path: &Path) -> Result<File, InputError> {
    let io_err = |source| InputError::Io {
        path: path.to_owned(),
        source,
    };
    let file = File::open(path).map_err(io_err)?;
    if file.metadata().map_err(io_err)?.is_dir() {
        return Err(io_err(std::io::Error::other("it is a directory")));
    }
    Ok(file)
}

fn load_jsonl(path: &Path, q: &Query, into: &mut Collector) -> Result<Source, InputError> {
    let io_err = |source| InputError::Io {
        path: path.to_owned(),
        source,
    };
    let mut reader = open_capture(path)?;
    let mut carry = Vec::new();
    let tally = load_lines(
        || {
            let chunk = read_lines(&mut reader, &mut carry, CHUNK_BYTES).map_err(io_err)?;
            Ok((!chunk.is_empty()).then_some(chunk))
        },
        q,
        into,
    )?;
    tally.check_not_all_bad(path)?;
    Ok(tally.source("jsonl", path))
}

/// Folds the lines of the chunks `next` gives (each whole lines; `None` at the end) into
/// `into`.
///
/// Reading JSON is nearly all of a report's time, so chunks are read on every core, each by a
/// parser thread of its own, while a reader thread reads the next chunks and this thread folds
/// the chunks already read. Chunk `k` goes to parser `k % workers`, whose memory carries over
/// from chunk to chunk, and the chunks are folded in input order: line numbers, skipped
/// examples and the collector see exactly what a sequential read would give.
pub(super) fn load_lines(
    mut next: impl FnMut() -> Result<Option<Vec<u8>>, InputError> + Send,
    q: &Query,
    into: &mut Collector,
) -> Result<Tally, InputError> {
    let hasher = into.hasher();
    let mut tally = Tally::new(hasher.clone());
    let workers = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mut slots: Vec<Slot> = (0..workers).map(|_| Slot::default()).collect();
    std::thread::scope(|s| {
        // Bounded: a chunk waiting and one being read per parser, a result waiting per parser.
        let (to_parsers, from_parsers): (Vec<_>, Vec<_>) = (0..workers)
            .map(|_| {
                let (chunk_tx, chunk_rx) = std::sync::mpsc::sync_channel::<Vec<u8>>(1);
                let (done_tx, done_rx) = std::sync::mpsc::sync_channel::<Chunk>(1);
                let mut memo = Memo::new(hasher.clone());
                s.spawn(move || {
                    for chunk in chunk_rx {
                        // The fold gave up (a panic): stop.
                        if done_tx.send(parse_chunk(&chunk, q, &mut memo)).is_err() {
                            break;
                        }
                    }
                });
                (chunk_tx, done_rx)
            })
            .unzip();
        let reader = s.spawn(move || -> Result<(), InputError> {
            for k in 0.. {
                let Some(chunk) = next()? else { break };
                // A parser only stops early when the fold did.
                if to_parsers[k % workers].send(chunk).is_err() {
                    break;
                }
            }
            Ok(())
        });
        let mut line = 0u64;
        for k in 0.. {
            // Closed once the reader is done and the parser has handed over all it was given.
            let Ok(chunk) = from_parsers[k % workers].recv() else {
                break;
            };
            let slot = &mut slots[k % workers];
            let new_actors = chunk.actors.into_iter().map(|a| (a, NOT_YET));
            slot.actors.extend(new_actors);
            let new_objects = chunk.objects.into_iter().map(|o| (o, NOT_YET));
            slot.objects.extend(new_objects);
            for (offset, result) in chunk.lines {
                match result {
                    Ok(wanted) => tally.event(wanted, slot, into),
                    Err(e) => tally.skip(line + offset, e),
                }
            }
            line += chunk.count;
        }
        reader.join().expect("reader thread panicked")
    })?;
    Ok(tally)
}

/// Bytes of whole lines handed to one parser thread at a time.
const CHUNK_BYTES: usize = 8 << 20;

/// At least `want` bytes (or up to the end of input) ending on a line boundary. `carry` holds
/// the start of the next line, read already; it begins the next chunk.
fn read_lines(
    reader: &mut impl Read,
    carry: &mut Vec<u8>,
    want: usize,
) -> std::io::Result<Vec<u8>> {
    let mut buf = Vec::with_capacity(want + (1 << 16));
    buf.append(carry);
    loop {
        if buf.len() >= want {
            if let Some(end) = buf.iter().rposition(|&b| b == b'\n') {
                carry.extend_from_slice(&buf[end + 1..]);
                buf.truncate(end + 1);
                return Ok(buf);
            }
        }
        let room = (buf.capacity() - buf.len()).max(1 << 16) as u64;
        // Straight into the chunk: no buffered copy, no scan per line.
        if reader.by_ref().take(room).read_to_end(&mut buf)? == 0 {
            return Ok(buf);
        }
    }
}

/// One chunk read by a parser thread.
struct Chunk {
    /// Each line with its 1-based number within the chunk, read as far as the report needs it,
    /// or why it is not an event.
    lines: Vec<(u64, Result<Option<Wanted>, String>)>,
    /// Lines in the chunk, blank ones included.
    count: u64,
    /// Actors and objects the parser met for the first time in this chunk.
    actors: Vec<ActorEntry>,
    objects: Vec<ObjectEntry>,
}

fn parse_chunk(chunk: &[u8], q: &Query, memo: &mut Memo) -> Chunk {
    let mut count = 0;
    // One UTF-8 check for the whole chunk (the common case) instead of one per string.
    let split: Box<dyn Iterator<Item = (&[u8], Option<&str>)>> = match std::str::from_utf8(chunk) {
        Ok(text) => Box::new(text.split_inclusive('\n').map(|l| (l.as_bytes(), Some(l)))),
        Err(_) => Box::new(chunk.split_inclusive(|&b| b == b'\n').map(|l| (l, None))),
    };
    let lines = split
        .inspect(|_| count += 1)
        .enumerate()
        .filter(|(_, (l, _))| !l.iter().all(u8::is_ascii_whitespace))
        .map(|(i, (bytes, text))| {
            let read = match text {
                Some(text) => serde_json::from_str::<EventRef>(text),
                None => serde_json::from_slice::<EventRef>(bytes),
            };
            let line = read
                .map_err(|e| e.to_string())
                .and_then(|ev| memo.line(ev, q));
            (i as u64 + 1, line)
        })
        .collect();
    let (actors, objects) = memo.take_new();
    Chunk {
        lines,
        count,
        actors,
        objects,
    }
}

fn load_store(path: &Path, q: &Query, into: &mut Collector) -> Result<Source, InputError> {
    // The facts hold no filter flag's field; a filtered report reads the events' JSON.
    if !q.filters() {
        if let Some(reader) = store::read_facts(path)? {
            return super::stored::load(reader, path, q, into);
        }
    }
    // Rows are read on a thread of their own, into chunks of lines as a JSONL capture gives
    // them, while earlier chunks are parsed: one parser for both inputs, no `Value` per row.
    let workers = std::thread::available_parallelism().map_or(1, |n| n.get());
    let (tx, rx) = std::sync::mpsc::sync_channel::<Result<Vec<u8>, StoreError>>(workers);
    let (since, until) = (q.since.map(|t| t.0), q.until.map(|t| t.0));
    let tally = std::thread::scope(|s| {
        s.spawn(move || {
            let mut chunk = Vec::with_capacity(CHUNK_BYTES + (1 << 16));
            let scanned = store::scan_json(path, since, until, |_, json| {
                chunk.extend_from_slice(json);
                chunk.push(b'\n');
                if chunk.len() >= CHUNK_BYTES {
                    let full =
                        std::mem::replace(&mut chunk, Vec::with_capacity(CHUNK_BYTES + (1 << 16)));
                    // The reader gave up (an error): stop scanning.
                    if tx.send(Ok(full)).is_err() {
                        return ControlFlow::Break(());
                    }
                }
                ControlFlow::Continue(())
            });
            let last = match scanned {
                Ok(()) if chunk.is_empty() => return,
                Ok(()) => Ok(chunk),
                Err(e) => Err(e),
            };
            let _ = tx.send(last);
        });
        // `rx` goes with the reader thread: when it gives up, the scan stops.
        load_lines(
            move || match rx.recv() {
                Ok(chunk) => Ok(Some(chunk?)),
                Err(_) => Ok(None),
            },
            q,
            into,
        )
    })?;
    tally.check_not_all_bad(path)?;
    Ok(tally.source("store", path))
}
