//! From events to a [`Report`]: events are folded one by one into compact records (actors and
//! objects interned), so a million events cost tens of megabytes, then grouped into incidents,
//! rankings and timeline lanes.

use std::cell::OnceCell;
use std::collections::hash_map::RandomState;
use std::collections::{BTreeMap, HashMap};
use std::hash::BuildHasher;

mod restores;
mod summary;
mod timeline;

use super::describe;
use super::hints;
use super::model::*;
use crate::event::{
    Actor, ActorRef, Cause, Event, EventType, Kind, Object, ObjectKey, Outcome, Timestamp,
};
pub use restores::{outcome_name as restore_outcome_name, RestoreFields};
pub use summary::Summary;

/// How events are grouped and how much of them is kept in full.
#[derive(Clone, Debug)]
pub struct Options {
    /// Removals further apart than this start a new incident.
    pub gap_ns: i128,
    /// Objects listed per incident (the rest are counted in `objects_omitted`).
    pub max_incident_objects: usize,
    /// Bins across the timeline.
    pub timeline_bins: u64,
    /// Timeline lanes; the least busy programs beyond this are merged into `other`.
    pub max_lanes: usize,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            gap_ns: 5_000_000_000,
            max_incident_objects: 200,
            timeline_bins: 400,
            max_lanes: 12,
        }
    }
}

const NONE: u32 = u32::MAX;

/// One removal, as small as it gets: 24 bytes.
#[derive(Clone, Copy)]
struct Rec {
    /// Nanoseconds since the epoch (i64 lasts until 2262).
    ts: i64,
    actor: u32,
    object: u32,
    error: u32,
    kind: Kind,
    cause: Cause,
    outcome: Outcome,
}

const _: () = assert!(std::mem::size_of::<Rec>() == 24);

struct ObjectInfo {
    /// The object interned before this one with the same hash ([`Collector::object_ix`]),
    /// `NONE` for none.
    same_hash: u32,
    kind: Kind,
    netns: NetnsRef,
    key: ObjectKey,
    /// The first event that named it, in words or as the object.
    described: Described,
    /// `described` in words, once asked for.
    words: OnceCell<String>,
}

impl ObjectInfo {
    fn description(&self) -> &str {
        match &self.described {
            Described::Words(w) => w,
            Described::Object(o) => self.words.get_or_init(|| describe::object(o)),
        }
    }
}

/// How an interned object is described: in words a reader already has, or as the object itself,
/// told in words ([`describe::object`]) when first asked for. A fleet report interns a million
/// objects and asks for the words of the few its cluster incidents name.
pub enum Described {
    Words(String),
    Object(Object),
}

impl From<String> for Described {
    fn from(words: String) -> Self {
        Described::Words(words)
    }
}

impl From<&str> for Described {
    fn from(words: &str) -> Self {
        Described::Words(words.to_owned())
    }
}

/// What makes two actors the same process for the report.
#[derive(PartialEq, Eq, Hash)]
pub struct ActorKey<'a> {
    pub pid: u32,
    pub comm: &'a str,
    pub exe: Option<&'a str>,
    pub cmdline: &'a str,
    pub unit: Option<&'a str>,
    pub container: Option<&'a str>,
}

/// The key of an [`Actor`] or an [`ActorRef`], whose fields are named alike.
macro_rules! actor_key {
    ($a:expr) => {
        ActorKey {
            pid: $a.pid,
            comm: &$a.comm,
            exe: $a.exe.as_deref(),
            cmdline: &$a.cmdline,
            unit: $a.unit.as_deref(),
            container: $a.container.as_deref(),
        }
    };
}

impl<'a> ActorKey<'a> {
    pub fn of(a: &'a Actor) -> Self {
        actor_key!(a)
    }

    /// The same, of an actor as read ([`crate::event::EventRef`]).
    pub fn borrowed(a: &'a ActorRef) -> Self {
        actor_key!(a)
    }
}

/// The identity the report groups an object's events by: its [`ObjectKey`], whichever capture
/// path described it. Without the family: the store's object rows do not record it, and a report
/// from a store must be the one its events' JSON gives (addresses and prefixes tell the families
/// apart but for a default route, or a rule without `from` and `to`, of both).
pub fn object_key(object: &Object) -> ObjectKey {
    ObjectKey::of(None, object)
}

/// The hash actors are interned by, with the collector's hasher ([`Collector::hasher`]).
pub fn actor_hash(hasher: &RandomState, key: Option<&ActorKey>) -> u64 {
    match key {
        None => hasher.hash_one(0u8),
        Some(k) => hasher.hash_one((k.pid, k.comm, k.exe, k.cmdline, k.unit, k.container)),
    }
}

/// The hash objects are interned by: their namespace and identity ([`object_key`]).
pub fn object_hash(hasher: &RandomState, netns_inode: u32, key: &ObjectKey) -> u64 {
    hasher.hash_one((netns_inode, key))
}

/// What is kept of an event whose actor and object are interned already
/// ([`Collector::push_interned`]).
pub struct Facts<'a> {
    pub ts: Timestamp,
    pub kind: Kind,
    pub cause: Cause,
    pub outcome: Outcome,
    pub errno: Option<i32>,
    pub error: Option<&'a str>,
    pub event: EventType,
    pub restore: Option<RestoreFields<'a>>,
}

impl<'a> Facts<'a> {
    pub fn of(ev: &'a Event) -> Self {
        Facts {
            ts: ev.ts,
            kind: ev.kind(),
            cause: ev.cause,
            outcome: ev.outcome,
            errno: ev.errno,
            error: ev.error.as_deref(),
            event: ev.event,
            restore: ev.restore.as_ref().map(RestoreFields::of),
        }
    }

    /// Why the event cannot be folded: a restore event must say what the restore did. Checked
    /// before its actor and object are interned, so a skipped line leaves no trace.
    pub fn check(&self) -> Result<(), String> {
        match (self.event, &self.restore) {
            (EventType::Removal, _) | (_, Some(_)) => Ok(()),
            (_, None) => Err("a restore event without its `restore` object".into()),
        }
    }
}

/// Folds events into records; [`Collector::finish`] builds the report.
#[derive(Default)]
pub struct Collector {
    /// Removals.
    recs: Vec<Rec>,
    /// Restore and `restore-suspended` events.
    restores: restores::Log,
    /// Interned actors; index `i` is actor `i`. `None` is "no process" (kernel).
    actors: Vec<Option<Actor>>,
    /// Hash of an actor's identity → candidate indexes (compared field by field).
    actor_ix: HashMap<u64, Vec<u32>>,
    hasher: RandomState,
    objects: Vec<ObjectInfo>,
    /// Hash of (netns inode, identity) → the last object interned with it, whose
    /// [`ObjectInfo::same_hash`] leads to the others: no allocation per object (a fleet report
    /// interns a million). A fast hasher for the hash, which is one already.
    object_ix: HashMap<u64, u32, foldhash::fast::RandomState>,
    errors: Vec<String>,
    error_ix: HashMap<String, u32>,
}

impl Collector {
    pub fn new() -> Self {
        Self::default()
    }

    /// Events folded: removals and restores.
    pub fn len(&self) -> usize {
        self.recs.len() + self.restores.recs.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Folds one event; a restore event without its `restore` object is left out, as the
    /// readers skip it ([`Facts::check`]).
    pub fn push(&mut self, ev: Event) {
        let facts = Facts::of(&ev);
        if facts.check().is_err() {
            return;
        }
        let key = ev.actor.as_deref().map(ActorKey::of);
        let hash = actor_hash(&self.hasher, key.as_ref());
        let actor = self.intern_actor(hash, key.as_ref(), || ev.actor.as_deref().cloned());
        let key = object_key(&ev.object);
        let object = self.intern_object(
            object_hash(&self.hasher, ev.netns.inode, &key),
            ev.kind(),
            ev.netns.inode,
            ev.netns.name.as_deref(),
            key,
            describe::object(&ev.object),
        );
        self.push_interned(&facts, actor, object);
    }

    /// Folds an event whose actor and object indexes [`Collector::intern_actor`] and
    /// [`Collector::intern_object`] gave, and which passed [`Facts::check`].
    pub fn push_interned(&mut self, ev: &Facts, actor: u32, object: u32) {
        let ts = i64::try_from(ev.ts.0).unwrap_or(if ev.ts.0 < 0 { i64::MIN } else { i64::MAX });
        if let Some(r) = &ev.restore {
            if ev.event != EventType::Removal {
                self.restores.push(ts, actor, object, ev.event, r);
                return;
            }
        }
        let error = match (ev.outcome, ev.error, ev.errno) {
            (Outcome::Failed, Some(name), _) => self.intern_error(name),
            (Outcome::Failed, None, Some(n)) => self.intern_error(&format!("errno {n}")),
            (Outcome::Failed, None, None) => self.intern_error("error unknown"),
            _ => NONE,
        };
        self.recs.push(Rec {
            ts,
            actor,
            object,
            error,
            kind: ev.kind,
            cause: ev.cause,
            outcome: ev.outcome,
        });
    }

    /// Identity of a process for the report: same pid, names, unit and container. The first
    /// event of an identity gives its full actor (`actor` is called then only). `hash` is
    /// [`actor_hash`] of `key`.
    pub fn intern_actor(
        &mut self,
        hash: u64,
        key: Option<&ActorKey>,
        actor: impl FnOnce() -> Option<Actor>,
    ) -> u32 {
        if let Some(candidates) = self.actor_ix.get(&hash) {
            for &i in candidates {
                if same_actor(self.actors[i as usize].as_ref(), key) {
                    return i;
                }
            }
        }
        let i = self.actors.len() as u32;
        self.actor_ix.entry(hash).or_default().push(i);
        self.actors.push(actor());
        i
    }

    /// An object is its namespace and its identity; the first event naming it gives its kind,
    /// namespace name and description (words, or the object to word when asked). `hash` is
    /// [`object_hash`].
    pub fn intern_object(
        &mut self,
        hash: u64,
        kind: Kind,
        netns_inode: u32,
        netns_name: Option<&str>,
        key: ObjectKey,
        description: impl Into<Described>,
    ) -> u32 {
        let last = self.object_ix.get(&hash).copied().unwrap_or(NONE);
        let mut i = last;
        while i != NONE {
            let o = &self.objects[i as usize];
            if o.netns.inode == netns_inode && o.key == key {
                return i;
            }
            i = o.same_hash;
        }
        let i = self.objects.len() as u32;
        self.object_ix.insert(hash, i);
        self.objects.push(ObjectInfo {
            same_hash: last,
            kind,
            netns: NetnsRef {
                inode: netns_inode,
                name: netns_name.map(str::to_owned),
            },
            key,
            described: description.into(),
            words: OnceCell::new(),
        });
        i
    }

    /// The hasher interning uses, for [`actor_hash`] and [`object_hash`] on other threads.
    pub fn hasher(&self) -> RandomState {
        self.hasher.clone()
    }

    /// Removals that took effect or may have (outcome not `failed`), in the order they were
    /// folded: time, actor and object as numbered by this collector. For a fleet report, which
    /// reads them before [`Collector::finish`].
    pub fn removals(&self) -> impl Iterator<Item = (i64, u32, u32)> + '_ {
        self.recs
            .iter()
            .filter(|r| r.outcome != Outcome::Failed)
            .map(|r| (r.ts, r.actor, r.object))
    }

    /// Actor `i` ([`Collector::removals`]); `None` for "no process".
    pub fn actor(&self, i: u32) -> Option<&Actor> {
        self.actors[i as usize].as_ref()
    }

    /// Object `i` ([`Collector::removals`]): its kind and identity.
    pub fn object(&self, i: u32) -> (Kind, &ObjectKey) {
        let o = &self.objects[i as usize];
        (o.kind, &o.key)
    }

    /// Object `i`'s description, worded when first asked for.
    pub fn object_description(&self, i: u32) -> &str {
        self.objects[i as usize].description()
    }

    fn intern_error(&mut self, name: &str) -> u32 {
        if let Some(&i) = self.error_ix.get(name) {
            return i;
        }
        let next = self.errors.len() as u32;
        self.errors.push(name.to_owned());
        self.error_ix.insert(name.to_owned(), next);
        next
    }

    /// Groups, ranks and tells the events. `report` gets every section but `source`, `window`
    /// and `filters`, which the caller fills in.
    pub fn finish(mut self, opts: &Options) -> Sections {
        self.recs.sort_by_key(|r| r.ts);
        self.restores.sort();
        let recs = &self.recs;
        let mut headline = Headline {
            events: recs.len() as u64,
            outcomes: Outcomes::default(),
            by_kind: BTreeMap::new(),
            by_cause: BTreeMap::new(),
            errors: BTreeMap::new(),
            actors: 0,
            objects: 0,
            incidents: 0,
            restores: self.restores.summary(&self.restores.recs),
            still_missing: None,
            still_missing_objects: Vec::new(),
            still_missing_note: STILL_MISSING_UNKNOWN.to_string(),
        };
        let mut actor_out: Vec<Outcomes> = (0..self.actors.len())
            .map(|_| Outcomes::default())
            .collect();
        let mut actor_span = vec![(i64::MAX, i64::MIN); self.actors.len()];
        let mut actor_objects = vec![0u64; self.actors.len()];
        let mut object_out: Vec<Outcomes> = (0..self.objects.len())
            .map(|_| Outcomes::default())
            .collect();
        let mut object_span = vec![(i64::MAX, i64::MIN); self.objects.len()];
        let mut object_by: Vec<Vec<(u32, u64)>> = vec![Vec::new(); self.objects.len()];
        // Time of each object's last removal the kernel acked (recs are in time order).
        let mut last_removed = vec![i64::MIN; self.objects.len()];
        for r in recs {
            add(&mut headline.outcomes, r.outcome);
            *headline
                .by_kind
                .entry(describe::kind_name(r.kind))
                .or_default() += 1;
            *headline
                .by_cause
                .entry(describe::cause_name(r.cause))
                .or_default() += 1;
            if r.error != NONE {
                *headline
                    .errors
                    .entry(self.errors[r.error as usize].clone())
                    .or_default() += 1;
            }
            add(&mut actor_out[r.actor as usize], r.outcome);
            widen(&mut actor_span[r.actor as usize], r.ts);
            add(&mut object_out[r.object as usize], r.outcome);
            widen(&mut object_span[r.object as usize], r.ts);
            if r.outcome == Outcome::Removed {
                last_removed[r.object as usize] = r.ts;
            }
            let by = &mut object_by[r.object as usize];
            match by.iter_mut().find(|(a, _)| *a == r.actor) {
                Some((_, n)) => *n += 1,
                None => {
                    by.push((r.actor, 1));
                    actor_objects[r.actor as usize] += 1;
                }
            }
        }

        // Rank: most requests first, then earliest; `id[old] = new id`. Actors and objects
        // only restore events name (their removal is outside the window) are left out.
        let actor_order = ranked(&actor_out, &actor_span);
        let object_order = ranked(&object_out, &object_span);
        let actor_id = inverse(&actor_order, self.actors.len());
        let object_id = inverse(&object_order, self.objects.len());

        let mut actor_out: Vec<Option<Outcomes>> = actor_out.into_iter().map(Some).collect();
        let actors: Vec<ActorSummary> = actor_order
            .iter()
            .enumerate()
            .map(|(id, &old)| {
                let actor = self.actors[old].clone();
                ActorSummary {
                    id,
                    description: actor
                        .as_ref()
                        .map_or_else(|| "kernel (no process)".into(), describe::actor_sentence),
                    hints: actor
                        .as_ref()
                        .map(|a| hints::for_actor(a).iter().map(|h| h.id).collect())
                        .unwrap_or_default(),
                    actor,
                    outcomes: actor_out[old].take().unwrap_or_default(),
                    objects: actor_objects[old],
                    first: Timestamp(actor_span[old].0.into()),
                    last: Timestamp(actor_span[old].1.into()),
                }
            })
            .collect();
        let mut object_out: Vec<Option<Outcomes>> = object_out.into_iter().map(Some).collect();
        let mut object_restores = self.restores.by_object(self.objects.len());
        let still_missing = self.restores.still_missing(&last_removed);
        let objects: Vec<ObjectHistory> = object_order
            .iter()
            .enumerate()
            .map(|(id, &old)| {
                let info = &self.objects[old];
                let mut by: Vec<ByActor> = object_by[old]
                    .iter()
                    .map(|&(a, count)| ByActor {
                        actor: actor_id[a as usize],
                        count,
                    })
                    .collect();
                by.sort_by(|a, b| b.count.cmp(&a.count).then(a.actor.cmp(&b.actor)));
                ObjectHistory {
                    id,
                    kind: info.kind,
                    object: info.description().to_owned(),
                    netns: info.netns.clone(),
                    outcomes: object_out[old].take().unwrap_or_default(),
                    first: Timestamp(object_span[old].0.into()),
                    last: Timestamp(object_span[old].1.into()),
                    by,
                    restores: std::mem::take(&mut object_restores[old]),
                    still_missing: still_missing[old],
                }
            })
            .collect();
        if !self.restores.is_empty() {
            headline.still_missing_objects = objects
                .iter()
                .filter(|o| o.still_missing == Some(true))
                .map(|o| o.id)
                .collect();
            headline.still_missing = Some(headline.still_missing_objects.len() as u64);
            let unprotected = objects
                .iter()
                .filter(|o| o.still_missing.is_none() && o.outcomes.removed > 0)
                .count();
            headline.still_missing_note = still_missing_note(unprotected);
        }

        let incidents = self.incidents(opts, &actor_id, &object_id, &actors);
        headline.actors = actors.len() as u64;
        headline.objects = objects.len() as u64;
        headline.incidents = incidents.len() as u64;
        let timeline = timeline::build(&self.actors, recs, &self.restores, opts);
        let restores = &self.restores.recs;
        let first = recs
            .first()
            .map(|r| r.ts)
            .into_iter()
            .chain(restores.first().map(|r| r.ts))
            .min();
        let last = recs
            .last()
            .map(|r| r.ts)
            .into_iter()
            .chain(restores.last().map(|r| r.ts))
            .max();
        Sections {
            headline,
            incidents,
            actors,
            objects,
            timeline,
            first: first.map(|t| Timestamp(t.into())),
            last: last.map(|t| Timestamp(t.into())),
        }
    }

    fn incidents(
        &self,
        opts: &Options,
        actor_id: &[usize],
        object_id: &[usize],
        actors: &[ActorSummary],
    ) -> Vec<Incident> {
        let mut bounds = Vec::new();
        let mut start = 0;
        for i in 1..=self.recs.len() {
            let split = i == self.recs.len()
                || i128::from(self.recs[i].ts) - i128::from(self.recs[i - 1].ts) > opts.gap_ns;
            if split {
                bounds.push(start..i);
                start = i;
            }
        }
        // The restore events answering each incident's removals.
        let mut answers: Vec<Vec<&restores::RestoreRec>> = vec![Vec::new(); bounds.len()];
        if !self.restores.is_empty() {
            let removals = bounds.iter().enumerate().flat_map(|(n, b)| {
                self.recs[b.clone()]
                    .iter()
                    .filter(|r| r.outcome == Outcome::Removed)
                    .map(move |r| (r.ts, r.actor, r.object, n))
            });
            let of = self.restores.incident_of(removals);
            for (r, n) in self.restores.recs.iter().zip(of) {
                if let Some(n) = n {
                    answers[n].push(r);
                }
            }
        }
        bounds
            .into_iter()
            .zip(answers)
            .enumerate()
            .map(|(n, (b, answers))| {
                let burst = Burst {
                    removals: &self.recs[b],
                    restores: &answers,
                };
                self.incident(n + 1, burst, opts, actor_id, object_id, actors)
            })
            .collect()
    }

    fn incident(
        &self,
        id: usize,
        burst: Burst,
        opts: &Options,
        actor_id: &[usize],
        object_id: &[usize],
        actors: &[ActorSummary],
    ) -> Incident {
        let mut outcomes = Outcomes::default();
        // Counted by kind and error number first (a burst may hold most of a million events),
        // then named: no string built or compared per removal.
        let mut kinds: Vec<(Kind, u64)> = Vec::new();
        let mut error_counts: Vec<(u32, u64)> = Vec::new();
        let mut by_actor: Vec<(usize, Outcomes)> = Vec::new();
        // Object index (old) → position in `objs`, in order of first removal.
        let mut seen: HashMap<u32, usize, foldhash::fast::RandomState> = HashMap::default();
        let mut objs: Vec<IncidentObject> = Vec::new();
        for r in burst.removals {
            add(&mut outcomes, r.outcome);
            match kinds.iter_mut().find(|(k, _)| *k == r.kind) {
                Some((_, n)) => *n += 1,
                None => kinds.push((r.kind, 1)),
            }
            if r.error != NONE {
                match error_counts.iter_mut().find(|(e, _)| *e == r.error) {
                    Some((_, n)) => *n += 1,
                    None => error_counts.push((r.error, 1)),
                }
            }
            let a = actor_id[r.actor as usize];
            match by_actor.iter_mut().find(|(x, _)| *x == a) {
                Some((_, o)) => add(o, r.outcome),
                None => {
                    let mut o = Outcomes::default();
                    add(&mut o, r.outcome);
                    by_actor.push((a, o));
                }
            }
            let pos = *seen.entry(r.object).or_insert_with(|| {
                let info = &self.objects[r.object as usize];
                objs.push(IncidentObject {
                    object: object_id[r.object as usize],
                    kind: info.kind,
                    description: info.description().to_owned(),
                    outcomes: Outcomes::default(),
                    errors: Vec::new(),
                    restores: BTreeMap::new(),
                });
                objs.len() - 1
            });
            add(&mut objs[pos].outcomes, r.outcome);
            if r.error != NONE {
                let e = &self.errors[r.error as usize];
                if !objs[pos].errors.contains(e) {
                    objs[pos].errors.push(e.clone());
                }
            }
        }
        let by_kind: BTreeMap<&'static str, u64> = kinds
            .into_iter()
            .map(|(k, n)| (describe::kind_name(k), n))
            .collect();
        let errors: BTreeMap<String, u64> = error_counts
            .into_iter()
            .map(|(e, n)| (self.errors[e as usize].clone(), n))
            .collect();
        let mut suspensions = Vec::new();
        for r in burst.restores {
            // Every restore here answers a removal of this incident, so its object is in it.
            if let Some(&pos) = seen.get(&r.object) {
                *objs[pos].restores.entry(restores::rec_name(r)).or_default() += 1;
            }
            if r.suspended {
                suspensions.push(Suspension {
                    at: Timestamp(r.ts.into()),
                    object: object_id[r.object as usize],
                    description: self.objects[r.object as usize].description().to_owned(),
                    actor: actor_id[r.actor as usize],
                    policy: self.restores.policy(r).to_string(),
                    attempts: r.attempt,
                    hint: self.restores.hint(r).map(str::to_string),
                    detail: self.restores.detail(r).map(str::to_string),
                });
            }
        }
        by_actor.sort_by(|a, b| b.1.total().cmp(&a.1.total()).then(a.0.cmp(&b.0)));
        // Grouped by kind, each group in order of first removal (the sort is stable).
        objs.sort_by_key(|o| o.kind);
        let objects_omitted = objs.len().saturating_sub(opts.max_incident_objects) as u64;
        objs.truncate(opts.max_incident_objects);

        let mut hint_refs: Vec<HintRef> = Vec::new();
        for &(a, _) in &by_actor {
            let Some(actor) = actors[a].actor.as_ref() else {
                continue;
            };
            for h in hints::for_actor(actor) {
                match hint_refs.iter_mut().find(|r| r.id == h.id) {
                    Some(r) => r.actors.push(a),
                    None => hint_refs.push(HintRef {
                        id: h.id,
                        culprit: h.culprit,
                        advice: h.advice,
                        actors: vec![a],
                    }),
                }
            }
        }
        let removals = burst.removals;
        let mut incident = Incident {
            id,
            start: Timestamp(removals[0].ts.into()),
            end: Timestamp(removals[removals.len() - 1].ts.into()),
            events: removals.len() as u64,
            outcomes,
            by_kind,
            errors,
            actors: by_actor
                .into_iter()
                .map(|(actor, outcomes)| IncidentActor { actor, outcomes })
                .collect(),
            objects: objs,
            objects_omitted,
            restores: self.restores.summary(burst.restores.iter().copied()),
            suspensions,
            hints: hint_refs,
            summary: String::new(),
        };
        incident.summary = super::tell::incident(&incident, actors);
        incident
    }
}

/// One incident's removals and the restore events that answered them.
struct Burst<'a> {
    removals: &'a [Rec],
    restores: &'a [&'a restores::RestoreRec],
}

fn still_missing_note(unprotected: usize) -> String {
    let mut s = "protected objects (those routeguard answered with a restore event) whose last \
        removal was not followed by a restore that put them back (restored or already-present), \
        at the end of the window"
        .to_string();
    if unprotected > 0 {
        s.push_str(&format!(
            "; {unprotected} other removed object{} had no restore event (not protected, or \
             removed by an allowed actor): whether {} came back is not recorded",
            if unprotected == 1 { "" } else { "s" },
            if unprotected == 1 { "it" } else { "they" },
        ));
    }
    s
}

/// Everything the events give; the caller adds where they came from.
pub struct Sections {
    pub headline: Headline,
    pub incidents: Vec<Incident>,
    pub actors: Vec<ActorSummary>,
    pub objects: Vec<ObjectHistory>,
    pub timeline: Timeline,
    pub first: Option<Timestamp>,
    pub last: Option<Timestamp>,
}

fn same_actor(a: Option<&Actor>, b: Option<&ActorKey>) -> bool {
    a.map(ActorKey::of).as_ref() == b
}

pub(super) fn add(o: &mut Outcomes, outcome: Outcome) {
    match outcome {
        Outcome::Removed => o.removed += 1,
        Outcome::Failed => o.failed += 1,
        Outcome::Unknown => o.unknown += 1,
        Outcome::Denied | Outcome::WouldDeny => o.denied += 1,
    }
}

fn widen(span: &mut (i64, i64), ts: i64) {
    span.0 = span.0.min(ts);
    span.1 = span.1.max(ts);
}

/// Indexes with removals, most first, then earliest.
fn ranked(out: &[Outcomes], span: &[(i64, i64)]) -> Vec<usize> {
    let mut order: Vec<usize> = (0..out.len()).filter(|&i| out[i].total() > 0).collect();
    order.sort_by(|&a, &b| {
        out[b]
            .total()
            .cmp(&out[a].total())
            .then(span[a].0.cmp(&span[b].0))
            .then(a.cmp(&b))
    });
    order
}

/// `inv[old] = new`; `usize::MAX` for the indexes `order` left out.
fn inverse(order: &[usize], len: usize) -> Vec<usize> {
    let mut inv = vec![usize::MAX; len];
    for (new, &old) in order.iter().enumerate() {
        inv[old] = new;
    }
    inv
}
