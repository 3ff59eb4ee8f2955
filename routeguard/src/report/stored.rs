//! A report from a store's facts (schema version 2, [`store::Reader`]): each event's facts and
//! the few distinct actors and objects they name, instead of every event's JSON.
//!
//! What reaches the collector is what reading the same events' JSON gives (the store's JSON
//! path, [`super::input`]), in the same order, so the two reports are the same; a filter flag
//! needs the whole event, so a filtered report reads the JSON.

use std::collections::HashMap;
use std::ops::ControlFlow;
use std::path::Path;

use serde::de::{value::StrDeserializer, DeserializeOwned};

use super::collect::{
    actor_hash, object_hash, object_key, ActorKey, Collector, Described, Facts, RestoreFields,
};
use super::input::{InputError, Query, Tally};
use super::model::Source;
use crate::event::{
    Actor, Address, Cause, EventType, Kind, Link, Netns, Nexthop, Object, Outcome, Restore, Route,
    Rule, Timestamp,
};
use crate::store::{FactRow, Reader};

/// An actor or object row: its text until an event names it, then the collector's number.
enum Slot<T> {
    Stored(T),
    Interned(u32),
}

/// An object row: its kind (or why its label is not one), its namespace (an index into
/// [`Fold::netns`]) and the JSON of its kind's member. A fleet report reads a million rows, so a
/// row's kind and namespace are not copied: the labels and namespaces are few.
struct ObjectText {
    kind: Result<Kind, String>,
    netns: u32,
    json: Box<str>,
}

/// Looked up once per row or event, only by this process: a fast hasher.
type FastMap<K, V> = HashMap<K, V, foldhash::fast::RandomState>;

pub(super) fn load(
    reader: Reader,
    path: &Path,
    q: &Query,
    into: &mut Collector,
) -> Result<Source, InputError> {
    let mut actors = FastMap::default();
    reader.actors(|id, json| {
        actors.insert(id, Slot::Stored(Box::<str>::from(json)));
    })?;
    let mut objects = FastMap::default();
    let mut netns_ix: HashMap<String, u32> = HashMap::new();
    let mut netns = Vec::new();
    reader.objects(|id, kind, ns, json| {
        let ns = match netns_ix.get(ns) {
            Some(&i) => i,
            None => {
                let i = netns.len() as u32;
                netns.push(serde_json::from_str(ns).map_err(|e: serde_json::Error| e.to_string()));
                netns_ix.insert(ns.to_owned(), i);
                i
            }
        };
        let row = ObjectText {
            kind: label(kind),
            netns: ns,
            json: json.into(),
        };
        objects.insert(id, Slot::Stored(row));
    })?;
    let mut fold = Fold {
        netns,
        tally: Tally::new(into.hasher()),
        actors,
        objects,
        into,
    };
    let (since, until) = (q.since.map(|t| t.0), q.until.map(|t| t.0));
    // SQLite steps through the rows on one thread while they are folded on this one.
    let (tx, rx) = std::sync::mpsc::sync_channel::<Vec<Result<Fact, String>>>(4);
    std::thread::scope(|s| {
        let scanner = s.spawn(move || {
            let mut chunk = Vec::with_capacity(CHUNK);
            let scanned = reader.scan(since, until, |f| {
                chunk.push(Fact::of(f));
                if chunk.len() == CHUNK {
                    let full = std::mem::replace(&mut chunk, Vec::with_capacity(CHUNK));
                    // The fold gave up (a panic): stop scanning.
                    if tx.send(full).is_err() {
                        return ControlFlow::Break(());
                    }
                }
                ControlFlow::Continue(())
            });
            let _ = tx.send(chunk);
            scanned
        });
        let mut line = 0;
        for chunk in rx {
            for fact in chunk {
                line += 1;
                match fact.and_then(|f| fold.event(&f)) {
                    Ok(()) => fold.tally.events_read += 1,
                    Err(e) => fold.tally.skip(line, e),
                }
            }
        }
        scanner.join().expect("store scanner panicked")
    })?;
    fold.tally.check_not_all_bad(path)?;
    Ok(fold.tally.source("store", path))
}

/// Facts handed from the scanning thread to the fold at a time.
const CHUNK: usize = 8192;

/// One row's facts, its labels read.
struct Fact {
    ts: Timestamp,
    kind: Kind,
    cause: Cause,
    outcome: Outcome,
    errno: Option<i32>,
    error: Option<Box<str>>,
    event: EventType,
    restore: Option<Box<str>>,
    actor: Option<i64>,
    object: i64,
}

impl Fact {
    fn of(f: &FactRow) -> Result<Self, String> {
        Ok(Fact {
            ts: Timestamp(i128::from(f.ts_ns)),
            kind: label(f.kind)?,
            cause: label(f.cause)?,
            outcome: label(f.outcome)?,
            errno: f.errno,
            error: f.error.map(Into::into),
            event: label(f.event)?,
            restore: f.restore.map(Into::into),
            actor: f.actor,
            object: f.object,
        })
    }
}

struct Fold<'c> {
    tally: Tally,
    actors: FastMap<i64, Slot<Box<str>>>,
    objects: FastMap<i64, Slot<ObjectText>>,
    /// The namespaces object rows name, each read once (or why it could not be).
    netns: Vec<Result<Netns, String>>,
    into: &'c mut Collector,
}

impl Fold<'_> {
    fn event(&mut self, f: &Fact) -> Result<(), String> {
        let restore: Option<Restore> = f
            .restore
            .as_deref()
            .map(|text| serde_json::from_str(text).map_err(|e| format!("restore: {e}")))
            .transpose()?;
        let facts = Facts {
            ts: f.ts,
            kind: f.kind,
            cause: f.cause,
            outcome: f.outcome,
            errno: f.errno,
            error: f.error.as_deref(),
            event: f.event,
            restore: restore.as_ref().map(RestoreFields::of),
        };
        facts.check()?;
        let actor = self.actor(f.actor)?;
        let object = self.object(f.object)?;
        self.into.push_interned(&facts, actor, object);
        Ok(())
    }

    fn actor(&mut self, id: Option<i64>) -> Result<u32, String> {
        let Some(id) = id else {
            return match self.tally.kernel {
                Some(i) => Ok(i),
                None => {
                    let hash = actor_hash(&self.tally.hasher, None);
                    let i = self.into.intern_actor(hash, None, || None);
                    Ok(*self.tally.kernel.insert(i))
                }
            };
        };
        let slot = self
            .actors
            .get_mut(&id)
            .ok_or_else(|| format!("names actor {id}, which the store does not hold"))?;
        let json = match slot {
            Slot::Interned(i) => return Ok(*i),
            Slot::Stored(json) => json,
        };
        let a: Actor = serde_json::from_str(json).map_err(|e| format!("actor {id}: {e}"))?;
        let key = ActorKey::of(&a);
        let hash = actor_hash(&self.tally.hasher, Some(&key));
        let i = self.into.intern_actor(hash, Some(&key), || Some(a.clone()));
        *slot = Slot::Interned(i);
        Ok(i)
    }

    fn object(&mut self, id: i64) -> Result<u32, String> {
        let slot = self
            .objects
            .get_mut(&id)
            .ok_or_else(|| format!("names object {id}, which the store does not hold"))?;
        let ObjectText { kind, netns, json } = match slot {
            Slot::Interned(i) => return Ok(*i),
            Slot::Stored(text) => text,
        };
        let kind = kind.clone()?;
        let netns = self.netns[*netns as usize]
            .as_ref()
            .map_err(|e| format!("object {id}: {e}"))?;
        let bad = |e: serde_json::Error| format!("object {id}: {e}");
        // The member of the object's kind, as the event's JSON holds it (`null` included).
        let object = match kind {
            Kind::Route => {
                serde_json::from_str::<Option<Route>>(json).map(|o| o.map(Object::Route))
            }
            Kind::Rule => serde_json::from_str::<Option<Rule>>(json).map(|o| o.map(Object::Rule)),
            Kind::Nexthop => {
                serde_json::from_str::<Option<Nexthop>>(json).map(|o| o.map(Object::Nexthop))
            }
            Kind::Link => serde_json::from_str::<Option<Link>>(json).map(|o| o.map(Object::Link)),
            Kind::Address => {
                serde_json::from_str::<Option<Address>>(json).map(|o| o.map(Object::Address))
            }
        }
        .map_err(bad)?
        .unwrap_or_else(|| Object::unnamed(kind));
        let key = object_key(&object);
        let hash = object_hash(&self.tally.hasher, netns.inode, &key);
        let i = self.into.intern_object(
            hash,
            kind,
            netns.inode,
            netns.name.as_deref(),
            key,
            Described::Object(object),
        );
        *slot = Slot::Interned(i);
        Ok(i)
    }
}

/// A kind, cause, outcome or event type as the JSON spells it.
fn label<T: DeserializeOwned>(text: &str) -> Result<T, String> {
    T::deserialize(StrDeserializer::<serde::de::value::Error>::new(text)).map_err(|e| e.to_string())
}
