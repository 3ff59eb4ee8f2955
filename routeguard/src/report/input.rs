//! Reading events back: a JSONL capture (`routeguard trace --json`) or the daemon's store.
//!
//! A line that is not an event is counted and skipped, and the first few are kept with their
//! line number for the report's headline; a file with no event at all is an error naming the
//! first bad line, since it is most likely not a capture.

use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};

use super::collect::Collector;
use super::model::{Skipped, Source};
use crate::event::{filter::Filter, Event, Timestamp, SCHEMA_VERSION};
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
    fn wants(&self, ev: &Event) -> bool {
        self.since.is_none_or(|s| ev.ts >= s)
            && self.until.is_none_or(|u| ev.ts <= u)
            && self.filter.matches(ev)
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
struct Tally {
    events_read: u64,
    skipped: u64,
    examples: Vec<Skipped>,
}

impl Tally {
    fn new() -> Self {
        Tally {
            events_read: 0,
            skipped: 0,
            examples: Vec::new(),
        }
    }

    fn skip(&mut self, line: u64, reason: String) {
        self.skipped += 1;
        if self.examples.len() < SKIPPED_EXAMPLES {
            self.examples.push(Skipped { line, reason });
        }
    }

    /// One parsed line: checks the schema version, then hands the event on if the query wants it.
    fn event(&mut self, line: u64, ev: Event, q: &Query, into: &mut Collector) {
        if ev.schema_version > SCHEMA_VERSION {
            self.skip(
                line,
                format!(
                    "schema_version {} is newer than this routeguard reads ({SCHEMA_VERSION})",
                    ev.schema_version
                ),
            );
            return;
        }
        self.events_read += 1;
        if q.wants(&ev) {
            into.push(ev);
        }
    }

    fn source(self, kind: &'static str, path: &Path) -> Source {
        Source {
            kind,
            path: path.display().to_string(),
            events_read: self.events_read,
            skipped_lines: self.skipped,
            skipped_examples: self.examples,
        }
    }

    /// Every line was bad: this is not a capture at all.
    fn check_not_all_bad(&self, path: &Path) -> Result<(), InputError> {
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

fn load_jsonl(path: &Path, q: &Query, into: &mut Collector) -> Result<Source, InputError> {
    let io_err = |source| InputError::Io {
        path: path.to_owned(),
        source,
    };
    let file = File::open(path).map_err(io_err)?;
    if file.metadata().map_err(io_err)?.is_dir() {
        return Err(io_err(std::io::Error::other("it is a directory")));
    }
    let mut reader = BufReader::with_capacity(1 << 20, file);
    let mut tally = Tally::new();
    // Parsing JSON is nearly all of a report's time, so whole lines are read in chunks and
    // parsed on every core; results are then folded in file order, so line numbers, skipped
    // examples and the collector see exactly what a sequential read would give.
    let workers = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mut line = 0u64;
    loop {
        let mut chunks = Vec::with_capacity(workers);
        for _ in 0..workers {
            let chunk = read_lines(&mut reader, CHUNK_BYTES).map_err(io_err)?;
            if chunk.is_empty() {
                break;
            }
            chunks.push(chunk);
        }
        if chunks.is_empty() {
            break;
        }
        let parsed: Vec<Vec<Parsed>> = std::thread::scope(|s| {
            let handles: Vec<_> = chunks
                .iter()
                .map(|c| s.spawn(move || parse_chunk(c)))
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().expect("JSONL parser thread panicked"))
                .collect()
        });
        for (chunk_lines, results) in chunks.iter().zip(parsed) {
            for (offset, result) in results {
                match result {
                    Ok(ev) => tally.event(line + offset, ev, q, into),
                    Err(e) => tally.skip(line + offset, e),
                }
            }
            line += chunk_lines.iter().filter(|&&b| b == b'\n').count() as u64;
            if chunk_lines.last() != Some(&b'\n') {
                line += 1;
            }
        }
    }
    tally.check_not_all_bad(path)?;
    Ok(tally.source("jsonl", path))
}

/// Bytes of whole lines handed to one parser thread at a time.
const CHUNK_BYTES: usize = 8 << 20;

/// A parsed line: its 1-based number within the chunk, and the event or why it is not one.
type Parsed = (u64, Result<Event, String>);

/// At least `want` bytes (or up to the end of input) ending on a line boundary.
fn read_lines(reader: &mut impl BufRead, want: usize) -> std::io::Result<Vec<u8>> {
    let mut buf = Vec::with_capacity(want + 4096);
    while buf.len() < want {
        if reader.read_until(b'\n', &mut buf)? == 0 {
            break;
        }
    }
    Ok(buf)
}

fn parse_chunk(chunk: &[u8]) -> Vec<Parsed> {
    chunk
        .split_inclusive(|&b| b == b'\n')
        .enumerate()
        .filter(|(_, l)| !l.iter().all(u8::is_ascii_whitespace))
        .map(|(i, l)| {
            let ev = serde_json::from_slice::<Event>(l).map_err(|e| e.to_string());
            (i as u64 + 1, ev)
        })
        .collect()
}

fn load_store(path: &Path, q: &Query, into: &mut Collector) -> Result<Source, InputError> {
    let rows = store::read_events(path, q.since.map(|t| t.0), q.until.map(|t| t.0))?;
    let mut tally = Tally::new();
    for (i, value) in rows.into_iter().enumerate() {
        let line = i as u64 + 1;
        match serde_json::from_value::<Event>(value) {
            Ok(ev) => tally.event(line, ev, q, into),
            Err(e) => tally.skip(line, e.to_string()),
        }
    }
    tally.check_not_all_bad(path)?;
    Ok(tally.source("store", path))
}
