//! What a parser thread remembers across lines: the actors and objects it has met, each under a
//! number of its own.
//!
//! A million events name a few dozen processes and some thousands of objects. Each line is read
//! as an [`EventRef`], its actor's strings borrowed from the line: an actor met before is found
//! by its identity without copying any of them, and only a new one is made owned. An object is
//! found by its identity ([`ObjectKey`]) and described only the first time.
//!
//! Numbers are local to this thread ([`Local`]); the thread that folds the lines maps them to the
//! collector's numbers the first time it meets each, in input order, so interning and everything
//! ranked by it come out as a sequential read would give them.

use std::collections::hash_map::RandomState;
use std::collections::HashMap;
use std::hash::BuildHasher as _;

use super::collect::{actor_hash, object_hash, object_key, ActorKey, Facts, RestoreFields};
use super::describe;
use super::input::Query;
use crate::event::{
    Actor, ActorRef, Cause, EventRef, EventType, Kind, Netns, Object, ObjectKey, Outcome, Restore,
    Timestamp, SCHEMA_VERSION,
};

/// An actor or object number local to one parser thread's [`Memo`].
pub type Local = u32;

/// The actor of an event without one (the kernel).
pub const NO_ACTOR: Local = u32::MAX;

/// What the fold keeps of a wanted event: its facts (which passed [`Facts::check`]), its actor
/// and its object.
pub struct Wanted {
    pub ts: Timestamp,
    pub kind: Kind,
    pub cause: Cause,
    pub outcome: Outcome,
    pub errno: Option<i32>,
    pub error: Option<String>,
    pub event: EventType,
    pub restore: Option<Box<Restore>>,
    pub actor: Local,
    pub object: Local,
}

/// An actor as the first event of its identity recorded it.
#[derive(Clone)]
pub struct ActorEntry {
    pub actor: Actor,
    /// [`actor_hash`] of its identity.
    pub hash: u64,
}

impl ActorEntry {
    pub fn key(&self) -> ActorKey<'_> {
        ActorKey::of(&self.actor)
    }
}

/// An object's identity (namespace and key) and what its first event said of it.
pub struct ObjectEntry {
    pub kind: Kind,
    pub netns: Netns,
    pub key: ObjectKey,
    pub description: String,
    /// [`object_hash`] of it.
    pub hash: u64,
}

/// A faster hash than the collector's for the lookups made on every line; the collector's is
/// worked out once per actor or object.
type Fast = foldhash::fast::RandomState;

/// One parser thread's memory.
pub struct Memo {
    /// The collector's hasher, for [`ActorEntry::hash`] and [`ObjectEntry::hash`].
    hasher: RandomState,
    fast: Fast,
    actors: Vec<ActorEntry>,
    /// Actors by the [`Fast`] hash of their identity.
    actor_ix: HashMap<u64, Vec<Local>, Fast>,
    /// The actor of the last line: events come in bursts from one process.
    last_actor: Local,
    /// Objects by their namespace and identity: the key is kept in the table itself, so that
    /// finding an object touches no other memory (this lookup is a share of every line's time).
    objects: HashMap<(u32, ObjectKey), Local, Fast>,
    /// Objects numbered since the last [`Memo::take_new`].
    new_objects: Vec<ObjectEntry>,
    /// Actors already handed to the fold.
    actors_sent: usize,
}

impl Memo {
    pub fn new(hasher: RandomState) -> Self {
        Memo {
            hasher,
            fast: Fast::default(),
            actors: Vec::new(),
            actor_ix: HashMap::default(),
            last_actor: NO_ACTOR,
            objects: HashMap::default(),
            new_objects: Vec::new(),
            actors_sent: 0,
        }
    }

    /// Actors and objects numbered since the last call, in number order.
    pub fn take_new(&mut self) -> (Vec<ActorEntry>, Vec<ObjectEntry>) {
        let actors = self.actors[self.actors_sent..].to_vec();
        self.actors_sent = self.actors.len();
        (actors, std::mem::take(&mut self.new_objects))
    }

    /// A line read, as the fold needs it: `None` when the query does not want it, or why it
    /// cannot be reported. Checked before its actor and object are remembered, so that what a
    /// skipped line says of them is not what the report shows.
    pub fn line(&mut self, mut ev: EventRef, q: &Query) -> Result<Option<Wanted>, String> {
        if ev.schema_version > SCHEMA_VERSION {
            return Err(format!(
                "schema_version {} is newer than this routeguard reads ({SCHEMA_VERSION})",
                ev.schema_version
            ));
        }
        if !q.wants(ev.ts, || ev.clone().into_owned()) {
            return Ok(None);
        }
        let facts = Facts {
            ts: ev.ts,
            kind: ev.kind,
            cause: ev.cause,
            outcome: ev.outcome,
            errno: ev.errno,
            error: ev.error.as_deref(),
            event: ev.event,
            restore: ev.restore.as_deref().map(RestoreFields::of),
        };
        facts.check()?;
        let actor = ev.actor.as_ref().map_or(NO_ACTOR, |a| self.actor(a));
        let removed = ev.take_object();
        let object = self.object(&ev.netns, &removed);
        Ok(Some(Wanted {
            ts: ev.ts,
            kind: ev.kind,
            cause: ev.cause,
            outcome: ev.outcome,
            errno: ev.errno,
            error: ev.error.take(),
            event: ev.event,
            restore: ev.restore.take(),
            actor,
            object,
        }))
    }

    fn actor(&mut self, a: &ActorRef) -> Local {
        let key = ActorKey::borrowed(a);
        if let Some(last) = self.actors.get(self.last_actor as usize) {
            if last.key() == key {
                return self.last_actor;
            }
        }
        let candidates = self.actor_ix.entry(self.fast.hash_one(&key)).or_default();
        let found = candidates
            .iter()
            .copied()
            .find(|&i| self.actors[i as usize].key() == key);
        let i = found.unwrap_or_else(|| {
            let i = self.actors.len() as Local;
            candidates.push(i);
            self.actors.push(ActorEntry {
                actor: a.clone().into_owned(),
                hash: actor_hash(&self.hasher, Some(&key)),
            });
            i
        });
        self.last_actor = i;
        i
    }

    fn object(&mut self, netns: &Netns, object: &Object) -> Local {
        let key = (netns.inode, object_key(object));
        if let Some(&i) = self.objects.get(&key) {
            return i;
        }
        let i = self.objects.len() as Local;
        self.new_objects.push(ObjectEntry {
            kind: object.kind(),
            netns: netns.clone(),
            hash: object_hash(&self.hasher, key.0, &key.1),
            key: key.1.clone(),
            description: describe::object(object),
        });
        self.objects.insert(key, i);
        i
    }
}
