//! From events to a [`Report`]: events are folded one by one into compact records (actors and
//! objects interned), so a million events cost tens of megabytes, then grouped into incidents,
//! rankings and timeline lanes.

use std::collections::hash_map::RandomState;
use std::collections::{BTreeMap, HashMap};
use std::hash::BuildHasher;

use super::describe;
use super::hints;
use super::model::*;
use crate::event::{Actor, Cause, Event, Kind, Outcome, Timestamp};

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

/// One event, as small as it gets: 24 bytes.
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

struct ObjectInfo {
    kind: Kind,
    netns: NetnsRef,
    description: String,
}

/// What the collector keeps of one event, borrowed from wherever it was read.
pub struct Fields<'a> {
    pub ts: Timestamp,
    pub kind: Kind,
    pub cause: Cause,
    pub outcome: Outcome,
    pub errno: Option<i32>,
    pub error: Option<&'a str>,
    pub netns_inode: u32,
    pub netns_name: Option<&'a str>,
    pub actor: Option<ActorKey<'a>>,
}

/// What makes two actors the same process for the report.
pub struct ActorKey<'a> {
    pub pid: u32,
    pub comm: &'a str,
    pub exe: Option<&'a str>,
    pub cmdline: &'a str,
    pub unit: Option<&'a str>,
    pub container: Option<&'a str>,
}

/// What folding an event derives from its [`Fields`]: the object in words and the hashes
/// interning looks up. It is the costly part of folding, so it can be done on other threads
/// with the collector's hasher ([`Collector::hasher`]).
pub struct Derived {
    object: String,
    object_hash: u64,
    actor_hash: u64,
}

impl Derived {
    /// `object` is the object in words ([`describe::object`]).
    pub fn new(f: &Fields, object: String, hasher: &RandomState) -> Self {
        let object_hash = hasher.hash_one((f.netns_inode, &object));
        let actor_hash = match &f.actor {
            None => hasher.hash_one(0u8),
            Some(k) => hasher.hash_one((k.pid, k.comm, k.exe, k.cmdline, k.unit, k.container)),
        };
        Derived {
            object,
            object_hash,
            actor_hash,
        }
    }
}

fn fields_of(ev: &Event) -> Fields<'_> {
    Fields {
        ts: ev.ts,
        kind: ev.kind,
        cause: ev.cause,
        outcome: ev.outcome,
        errno: ev.errno,
        error: ev.error.as_deref(),
        netns_inode: ev.netns.inode,
        netns_name: ev.netns.name.as_deref(),
        actor: ev.actor.as_ref().map(|a| ActorKey {
            pid: a.pid,
            comm: &a.comm,
            exe: a.exe.as_deref(),
            cmdline: &a.cmdline,
            unit: a.unit.as_deref(),
            container: a.container.as_deref(),
        }),
    }
}

/// Folds events into records; [`Collector::finish`] builds the report.
#[derive(Default)]
pub struct Collector {
    recs: Vec<Rec>,
    /// Interned actors; index `i` is actor `i`. `None` is "no process" (kernel).
    actors: Vec<Option<Actor>>,
    /// Hash of an actor's identity → candidate indexes (compared field by field).
    actor_ix: HashMap<u64, Vec<u32>>,
    hasher: RandomState,
    objects: Vec<ObjectInfo>,
    /// Hash of (netns inode, description) → candidate indexes, as for actors.
    object_ix: HashMap<u64, Vec<u32>>,
    errors: Vec<String>,
    error_ix: HashMap<String, u32>,
}

impl Collector {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn len(&self) -> usize {
        self.recs.len()
    }

    pub fn is_empty(&self) -> bool {
        self.recs.is_empty()
    }

    pub fn push(&mut self, ev: Event) {
        let fields = fields_of(&ev);
        let derived = Derived::new(&fields, describe::object(&ev), &self.hasher);
        let pushed = self.push_compact(&fields, derived, || Ok(ev.actor.clone()));
        debug_assert!(pushed.is_ok(), "the actor is at hand");
    }

    /// Folds one event given as its [`Fields`]. `actor` gives the full actor, and is only
    /// called the first time its identity is seen; if it fails, nothing is kept and its reason is
    /// returned.
    pub fn push_compact(
        &mut self,
        ev: &Fields,
        derived: Derived,
        actor: impl FnOnce() -> Result<Option<Actor>, String>,
    ) -> Result<(), String> {
        let actor = self.intern_actor(derived.actor_hash, ev.actor.as_ref(), actor)?;
        let object = self.intern_object(ev, derived);
        let error = match (ev.outcome, ev.error, ev.errno) {
            (Outcome::Failed, Some(name), _) => self.intern_error(name),
            (Outcome::Failed, None, Some(n)) => self.intern_error(&format!("errno {n}")),
            (Outcome::Failed, None, None) => self.intern_error("error unknown"),
            _ => NONE,
        };
        let ts = i64::try_from(ev.ts.0).unwrap_or(if ev.ts.0 < 0 { i64::MIN } else { i64::MAX });
        self.recs.push(Rec {
            ts,
            actor,
            object,
            error,
            kind: ev.kind,
            cause: ev.cause,
            outcome: ev.outcome,
        });
        Ok(())
    }

    /// Identity of a process for the report: same pid, names, unit and container. The first
    /// event of an identity gives its full actor.
    fn intern_actor(
        &mut self,
        hash: u64,
        key: Option<&ActorKey>,
        actor: impl FnOnce() -> Result<Option<Actor>, String>,
    ) -> Result<u32, String> {
        if let Some(candidates) = self.actor_ix.get(&hash) {
            for &i in candidates {
                if same_actor(self.actors[i as usize].as_ref(), key) {
                    return Ok(i);
                }
            }
        }
        let actor = actor()?;
        let i = self.actors.len() as u32;
        self.actor_ix.entry(hash).or_default().push(i);
        self.actors.push(actor);
        Ok(i)
    }

    fn intern_object(&mut self, ev: &Fields, d: Derived) -> u32 {
        let candidates = self.object_ix.entry(d.object_hash).or_default();
        for &i in candidates.iter() {
            let o = &self.objects[i as usize];
            if o.netns.inode == ev.netns_inode && o.description == d.object {
                return i;
            }
        }
        let i = self.objects.len() as u32;
        candidates.push(i);
        self.objects.push(ObjectInfo {
            kind: ev.kind,
            netns: NetnsRef {
                inode: ev.netns_inode,
                name: ev.netns_name.map(str::to_owned),
            },
            description: d.object,
        });
        i
    }

    /// The hasher interning uses, for [`Derived::new`] on other threads.
    pub fn hasher(&self) -> RandomState {
        self.hasher.clone()
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
            still_missing: None,
            still_missing_note: STILL_MISSING_NOTE,
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
            let by = &mut object_by[r.object as usize];
            match by.iter_mut().find(|(a, _)| *a == r.actor) {
                Some((_, n)) => *n += 1,
                None => {
                    by.push((r.actor, 1));
                    actor_objects[r.actor as usize] += 1;
                }
            }
        }

        // Rank: most requests first, then earliest; `rank[old] = new id`.
        let actor_order = ranked(&actor_out, &actor_span);
        let object_order = ranked(&object_out, &object_span);
        let actor_id = inverse(&actor_order);
        let object_id = inverse(&object_order);

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
                    object: info.description.clone(),
                    netns: info.netns.clone(),
                    outcomes: object_out[old].take().unwrap_or_default(),
                    first: Timestamp(object_span[old].0.into()),
                    last: Timestamp(object_span[old].1.into()),
                    by,
                }
            })
            .collect();

        let incidents = self.incidents(opts, &actor_id, &object_id, &actors);
        headline.actors = actors.len() as u64;
        headline.objects = objects.len() as u64;
        headline.incidents = incidents.len() as u64;
        let timeline = self.timeline(opts);
        Sections {
            headline,
            incidents,
            actors,
            objects,
            timeline,
            first: recs.first().map(|r| Timestamp(r.ts.into())),
            last: recs.last().map(|r| Timestamp(r.ts.into())),
        }
    }

    fn incidents(
        &self,
        opts: &Options,
        actor_id: &[usize],
        object_id: &[usize],
        actors: &[ActorSummary],
    ) -> Vec<Incident> {
        let mut out = Vec::new();
        let mut start = 0;
        for i in 1..=self.recs.len() {
            let split = i == self.recs.len()
                || i128::from(self.recs[i].ts) - i128::from(self.recs[i - 1].ts) > opts.gap_ns;
            if split {
                let burst = &self.recs[start..i];
                out.push(self.incident(out.len() + 1, burst, opts, actor_id, object_id, actors));
                start = i;
            }
        }
        out
    }

    fn incident(
        &self,
        id: usize,
        burst: &[Rec],
        opts: &Options,
        actor_id: &[usize],
        object_id: &[usize],
        actors: &[ActorSummary],
    ) -> Incident {
        let mut outcomes = Outcomes::default();
        let mut by_kind = BTreeMap::new();
        let mut errors: BTreeMap<String, u64> = BTreeMap::new();
        let mut by_actor: Vec<(usize, Outcomes)> = Vec::new();
        // Object index (old) → position in `objs`, in order of first removal.
        let mut seen: HashMap<u32, usize> = HashMap::new();
        let mut objs: Vec<IncidentObject> = Vec::new();
        for r in burst {
            add(&mut outcomes, r.outcome);
            *by_kind.entry(describe::kind_name(r.kind)).or_default() += 1;
            let err = (r.error != NONE).then(|| self.errors[r.error as usize].clone());
            if let Some(e) = &err {
                *errors.entry(e.clone()).or_default() += 1;
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
                    description: info.description.clone(),
                    outcomes: Outcomes::default(),
                    errors: Vec::new(),
                });
                objs.len() - 1
            });
            add(&mut objs[pos].outcomes, r.outcome);
            if let Some(e) = err {
                if !objs[pos].errors.contains(&e) {
                    objs[pos].errors.push(e);
                }
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
        let mut incident = Incident {
            id,
            start: Timestamp(burst[0].ts.into()),
            end: Timestamp(burst[burst.len() - 1].ts.into()),
            events: burst.len() as u64,
            outcomes,
            by_kind,
            errors,
            actors: by_actor
                .into_iter()
                .map(|(actor, outcomes)| IncidentActor { actor, outcomes })
                .collect(),
            objects: objs,
            objects_omitted,
            hints: hint_refs,
            summary: String::new(),
        };
        incident.summary = super::tell::incident(&incident, actors);
        incident
    }

    fn timeline(&self, opts: &Options) -> Timeline {
        let (Some(first), Some(last)) = (self.recs.first(), self.recs.last()) else {
            return Timeline {
                start: None,
                end: None,
                bin_ns: 0,
                lanes: Vec::new(),
                lanes_merged: 0,
            };
        };
        let span = (i128::from(last.ts) - i128::from(first.ts)).max(1) as u64;
        let bin_ns = span.div_ceil(opts.timeline_bins.max(1)).max(1);
        // Lane per program: comm plus container or unit.
        let mut lane_of_actor: Vec<u32> = Vec::with_capacity(self.actors.len());
        let mut lane_ix: HashMap<String, u32> = HashMap::new();
        let mut labels: Vec<String> = Vec::new();
        for a in &self.actors {
            let label = lane_label(a.as_ref());
            let next = labels.len() as u32;
            let l = *lane_ix.entry(label.clone()).or_insert_with(|| {
                labels.push(label);
                next
            });
            lane_of_actor.push(l);
        }
        let mut totals = vec![Outcomes::default(); labels.len()];
        let mut bins: Vec<BTreeMap<u64, Outcomes>> = vec![BTreeMap::new(); labels.len()];
        for r in &self.recs {
            let l = lane_of_actor[r.actor as usize] as usize;
            add(&mut totals[l], r.outcome);
            let b = (i128::from(r.ts) - i128::from(first.ts)) as u64 / bin_ns;
            add(bins[l].entry(b).or_default(), r.outcome);
        }
        let mut order: Vec<usize> = (0..labels.len()).collect();
        order.sort_by(|&a, &b| totals[b].total().cmp(&totals[a].total()).then(a.cmp(&b)));
        let keep = if order.len() > opts.max_lanes {
            opts.max_lanes.saturating_sub(1)
        } else {
            order.len()
        };
        let mut lanes: Vec<Lane> = Vec::new();
        for &l in &order[..keep] {
            lanes.push(Lane {
                label: labels[l].clone(),
                outcomes: std::mem::take(&mut totals[l]),
                bins: to_bins(std::mem::take(&mut bins[l])),
            });
        }
        let merged = &order[keep..];
        if !merged.is_empty() {
            let mut all = BTreeMap::new();
            let mut total = Outcomes::default();
            for &l in merged {
                merge(&mut total, &totals[l]);
                for (b, o) in std::mem::take(&mut bins[l]) {
                    merge(all.entry(b).or_default(), &o);
                }
            }
            lanes.push(Lane {
                label: format!("other ({} programs)", merged.len()),
                outcomes: total,
                bins: to_bins(all),
            });
        }
        Timeline {
            start: Some(Timestamp(first.ts.into())),
            end: Some(Timestamp(last.ts.into())),
            bin_ns,
            lanes,
            lanes_merged: merged.len() as u64,
        }
    }
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
    match (a, b) {
        (None, None) => true,
        (Some(a), Some(b)) => {
            a.pid == b.pid
                && a.comm == b.comm
                && a.exe.as_deref() == b.exe
                && a.cmdline == b.cmdline
                && a.unit.as_deref() == b.unit
                && a.container.as_deref() == b.container
        }
        _ => false,
    }
}

fn lane_label(a: Option<&Actor>) -> String {
    match a {
        None => "kernel (no process)".into(),
        Some(a) => match (&a.container, &a.unit) {
            (Some(id), _) => format!("{} (container {})", a.comm, describe::short_id(id)),
            (None, Some(unit)) => format!("{} ({unit})", a.comm),
            (None, None) => a.comm.clone(),
        },
    }
}

fn add(o: &mut Outcomes, outcome: Outcome) {
    match outcome {
        Outcome::Removed => o.removed += 1,
        Outcome::Failed => o.failed += 1,
        Outcome::Unknown => o.unknown += 1,
    }
}

fn merge(into: &mut Outcomes, o: &Outcomes) {
    into.removed += o.removed;
    into.failed += o.failed;
    into.unknown += o.unknown;
}

fn widen(span: &mut (i64, i64), ts: i64) {
    span.0 = span.0.min(ts);
    span.1 = span.1.max(ts);
}

fn ranked(out: &[Outcomes], span: &[(i64, i64)]) -> Vec<usize> {
    let mut order: Vec<usize> = (0..out.len()).collect();
    order.sort_by(|&a, &b| {
        out[b]
            .total()
            .cmp(&out[a].total())
            .then(span[a].0.cmp(&span[b].0))
            .then(a.cmp(&b))
    });
    order
}

fn inverse(order: &[usize]) -> Vec<usize> {
    let mut inv = vec![0; order.len()];
    for (new, &old) in order.iter().enumerate() {
        inv[old] = new;
    }
    inv
}

fn to_bins(map: BTreeMap<u64, Outcomes>) -> Vec<Bin> {
    map.into_iter()
        .map(|(index, outcomes)| Bin { index, outcomes })
        .collect()
}
