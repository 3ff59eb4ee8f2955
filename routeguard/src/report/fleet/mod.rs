//! The fleet's report: several inputs (captures and stores of many nodes) at once. Inputs are
//! grouped by node ([`node`]), each node folded on its own as a one-input report is, and the
//! removals of all nodes matched into cluster incidents ([`cluster`]): the same program removing
//! the same object, or objects of the same table, on several nodes within the gap.

pub mod cluster;
pub mod node;

use std::collections::{BTreeMap, HashMap};
use std::hash::Hash;

use serde::Serialize;

use super::collect::{Collector, Options, Summary};
use super::describe;
use super::input::{self, Input, InputError, Query};
use super::model::{Source, Window, REPORT_SCHEMA_VERSION};
use super::tell;
use crate::event::{Actor, Host, Kind, ObjectKey, Timestamp};
use cluster::{Cluster, Shared, Sighting};
use node::NamedBy;

/// What `--format json` prints for several inputs (schema: `docs/report.md`, "Fleet report").
#[derive(Debug, Serialize)]
pub struct FleetReport {
    pub report_schema_version: u32,
    pub generator: String,
    pub generated_at: Timestamp,
    /// `--since`/`--until` and the first and last event of all nodes.
    pub window: Window,
    pub filters: Vec<String>,
    /// Removals further apart than this start a new incident, on a node and across nodes.
    pub gap_ms: u64,
    /// By node name.
    pub nodes: Vec<NodeSummary>,
    /// In time order.
    pub cluster_incidents: Vec<ClusterIncident>,
}

/// One node: what its inputs hold, as a one-input report's headline counts it.
#[derive(Debug, Serialize)]
pub struct NodeSummary {
    /// Index in `FleetReport::nodes`.
    pub id: usize,
    pub node: String,
    /// What `node` is: `node` (Kubernetes node name), `hostname`, `machine-id`, or `file` when no
    /// event names its host.
    pub named_by: NamedBy,
    /// The `host` of its first event, as recorded.
    pub host: Option<Host>,
    /// Its inputs, in the order given.
    pub sources: Vec<Source>,
    /// Its counts (`first_event` … `top_actors` in JSON, where they stand in for these fields).
    #[serde(flatten)]
    pub counts: Summary,
    /// Ids of the cluster incidents this node is part of.
    pub cluster_incidents: Vec<usize>,
    /// What the report could not tell apart (an input without host, a store naming several).
    pub notes: Vec<String>,
}

/// Removals by one program on several nodes, each no more than the gap after the one before.
#[derive(Debug, Serialize)]
pub struct ClusterIncident {
    /// 1-based, in time order.
    pub id: usize,
    /// The program's name: the executable's file name, else the unit, else the comm; `kernel`
    /// for removals no process asked for.
    pub program: String,
    /// Which of the actor's fields matched the program across nodes: `exe`, `unit`, `comm` or
    /// `kernel`.
    pub program_key: &'static str,
    /// That field's value (the full executable path for `exe`).
    pub program_value: String,
    /// What the removals share: `object` (the same object's identity, whatever namespace) or
    /// `table` (objects of one routing table, not all the same).
    pub shared: &'static str,
    pub kind: Kind,
    /// The object, in iproute2's words, when `shared` is `object`.
    pub object: Option<String>,
    /// The routing table, when `shared` is `table`.
    pub table: Option<u32>,
    /// Distinct objects removed.
    pub objects: u64,
    /// Ids in `FleetReport::nodes`, ascending.
    pub nodes: Vec<usize>,
    /// Removals in it, all nodes together (outcome `removed` or `unknown`).
    pub removals: u64,
    pub start: Timestamp,
    pub end: Timestamp,
    /// `systemd-networkd removed rule prio 32765 lookup 77 on 14 nodes between 10:02:11.104
    /// and 10:02:40.981 UTC (14 removals; program matched by exe /usr/lib/systemd/systemd-networkd)`.
    pub summary: String,
}

impl FleetReport {
    /// Every input's source, in node order.
    pub fn sources(&self) -> impl Iterator<Item = &Source> {
        self.nodes.iter().flat_map(|n| n.sources.iter())
    }

    pub fn events(&self) -> u64 {
        self.nodes.iter().map(|n| n.counts.events).sum()
    }
}

/// Top actors named per node.
const TOP_ACTORS: usize = 3;

/// Reads every input (all of them named first, so a missing or unreadable one fails before any
/// is read in full), and builds the fleet report.
pub fn build(
    inputs: &[Input],
    query: &Query,
    filters: Vec<String>,
    opts: &Options,
    now: Timestamp,
) -> Result<FleetReport, InputError> {
    let named = inputs
        .iter()
        .map(node::name)
        .collect::<Result<Vec<_>, _>>()?;
    let mut by_node: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
    for (i, n) in named.iter().enumerate() {
        by_node.entry(n.node.as_str()).or_default().push(i);
    }
    let mut ids = Ids::default();
    let mut sightings = Vec::new();
    let mut nodes = Vec::with_capacity(by_node.len());
    // Nodes are read and summed up as many at a time as there are cores, each on a thread of
    // its own (a node's store is read on one); numbering their programs and objects for the
    // clustering runs here between the two, in node order, so the report is the same whatever
    // the threads' timing. Only the nodes of one round are in memory at once.
    let workers = std::thread::available_parallelism().map_or(1, |n| n.get());
    let groups: Vec<&Vec<usize>> = by_node.values().collect();
    for (round, members_of) in groups.chunks(workers).enumerate() {
        let load = |members: &Vec<usize>| -> Result<(Collector, Vec<Source>), InputError> {
            let mut c = Collector::new();
            let mut sources = Vec::with_capacity(members.len());
            for &i in members {
                sources.push(input::load(&inputs[i], query, &mut c)?);
            }
            Ok((c, sources))
        };
        let loaded = on_threads(members_of.iter().copied(), load);
        let mut read = Vec::with_capacity(loaded.len());
        for (k, result) in loaded.into_iter().enumerate() {
            // The first node in order that could not be read is the error, as one by one.
            let (c, sources) = result?;
            let id = round * workers + k;
            ids.sight(&c, id as u32, &mut sightings);
            read.push((id, members_of[k], c, sources));
        }
        let summed = on_threads(read, |(id, members, c, sources)| {
            let notes = members
                .iter()
                .filter_map(|&i| named[i].note.clone())
                .collect();
            summary(id, &named[members[0]], sources, notes, c, opts)
        });
        nodes.extend(summed);
    }
    let gap_ns = i64::try_from(opts.gap_ns).unwrap_or(i64::MAX);
    let cluster_incidents: Vec<ClusterIncident> = cluster::clusters(&sightings, gap_ns)
        .into_iter()
        .enumerate()
        .map(|(i, c)| ids.incident(i + 1, &c, &nodes))
        .collect();
    for inc in &cluster_incidents {
        for &n in &inc.nodes {
            nodes[n].cluster_incidents.push(inc.id);
        }
    }
    let first_event = nodes.iter().filter_map(|n| n.counts.first).min();
    let last_event = nodes.iter().filter_map(|n| n.counts.last).max();
    Ok(FleetReport {
        report_schema_version: REPORT_SCHEMA_VERSION,
        generator: format!("routeguard {}", env!("CARGO_PKG_VERSION")),
        generated_at: now,
        window: Window {
            since: query.since,
            until: query.until,
            first_event,
            last_event,
        },
        filters,
        gap_ms: u64::try_from(opts.gap_ns / 1_000_000).unwrap_or(u64::MAX),
        nodes,
        cluster_incidents,
    })
}

/// `f` of each item, each on a scoped thread of its own, in the items' order. A panic on one
/// is this thread's.
fn on_threads<T: Send, R: Send>(
    items: impl IntoIterator<Item = T>,
    f: impl Fn(T) -> R + Sync,
) -> Vec<R> {
    let f = &f;
    std::thread::scope(|s| {
        let handles: Vec<_> = items.into_iter().map(|t| s.spawn(move || f(t))).collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
            .collect()
    })
}

fn summary(
    id: usize,
    named: &node::Named,
    sources: Vec<Source>,
    notes: Vec<String>,
    c: Collector,
    opts: &Options,
) -> NodeSummary {
    NodeSummary {
        id,
        node: named.node.clone(),
        named_by: named.named_by,
        host: named.host.clone(),
        sources,
        counts: c.summary(opts.gap_ns, TOP_ACTORS),
        cluster_incidents: Vec::new(),
        notes,
    }
}

/// A program as matched across nodes: the first of exe, unit and comm the actor has.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Program {
    pub key: &'static str,
    pub value: String,
}

impl Program {
    pub fn of(actor: Option<&Actor>) -> Self {
        let (key, value) = match actor {
            None => ("kernel", "kernel"),
            Some(a) => match (a.exe.as_deref(), a.unit.as_deref()) {
                (Some(exe), _) if !exe.is_empty() => ("exe", exe),
                (_, Some(unit)) if !unit.is_empty() => ("unit", unit),
                _ => ("comm", a.comm.as_str()),
            },
        };
        Program {
            key,
            value: value.to_owned(),
        }
    }

    /// `systemd-networkd` for `/usr/lib/systemd/systemd-networkd`.
    pub fn name(&self) -> &str {
        match self.key {
            "exe" => self.value.rsplit('/').next().unwrap_or(&self.value),
            _ => &self.value,
        }
    }
}

/// Numbers shared by all nodes: programs, object identities and tables.
#[derive(Default)]
struct Ids {
    programs: Numbered<Program>,
    /// An object's identity (which tells its kind), its kind and the words its first removal
    /// described it in.
    objects: Numbered<ObjectKey>,
    kinds: Vec<Kind>,
    descriptions: Vec<String>,
    tables: Numbered<(Kind, u32)>,
}

/// Looked up once per node and actor or object (a million times for 50 nodes of 20,000
/// objects), only by this process: a fast hasher.
type FastMap<K, V> = HashMap<K, V, foldhash::fast::RandomState>;

struct Numbered<K> {
    ix: FastMap<K, u32>,
    keys: Vec<K>,
}

impl<K> Default for Numbered<K> {
    fn default() -> Self {
        Numbered {
            ix: FastMap::default(),
            keys: Vec::new(),
        }
    }
}

impl<K: Clone + Eq + Hash> Numbered<K> {
    /// `key`'s number, and whether it is new; `key` is cloned only when it is.
    fn number(&mut self, key: &K) -> (u32, bool) {
        if let Some(&i) = self.ix.get(key) {
            return (i, false);
        }
        let i = self.keys.len() as u32;
        self.keys.push(key.clone());
        self.ix.insert(key.clone(), i);
        (i, true)
    }
}

impl Ids {
    /// `c`'s removals as sightings on node `node`; each actor and object of the node numbered
    /// once, not once per removal.
    fn sight(&mut self, c: &Collector, node: u32, out: &mut Vec<Sighting>) {
        let mut actors: FastMap<u32, u32> = FastMap::default();
        let mut objects: FastMap<u32, (u32, Option<u32>)> = FastMap::default();
        for (ts, actor, object) in c.removals() {
            let program = *actors
                .entry(actor)
                .or_insert_with(|| self.programs.number(&Program::of(c.actor(actor))).0);
            let (object, table) = *objects.entry(object).or_insert_with(|| {
                let (kind, key) = c.object(object);
                let (id, new) = self.objects.number(key);
                if new {
                    self.kinds.push(kind);
                    self.descriptions
                        .push(c.object_description(object).to_owned());
                }
                let table = match key {
                    ObjectKey::Route(r) => r.table,
                    ObjectKey::Rule(r) => r.table,
                    _ => None,
                };
                (id, table.map(|t| self.tables.number(&(kind, t)).0))
            });
            out.push(Sighting {
                ts,
                node,
                program,
                object,
                table,
            });
        }
    }

    fn incident(&self, id: usize, c: &Cluster, nodes: &[NodeSummary]) -> ClusterIncident {
        let program = &self.programs.keys[c.program as usize];
        let (shared, kind, object, table) = match c.shared {
            Shared::Object(o) => {
                let kind = self.kinds[o as usize];
                (
                    "object",
                    kind,
                    Some(self.descriptions[o as usize].clone()),
                    None,
                )
            }
            Shared::Table(t) => {
                let (kind, table) = self.tables.keys[t as usize];
                ("table", kind, None, Some(table))
            }
        };
        let what = match (&object, table) {
            (Some(o), _) => o.clone(),
            (None, Some(t)) => format!(
                "{} of table {}",
                describe::kind_plural(kind, c.objects.len() as u64),
                describe::table_name(t)
            ),
            (None, None) => unreachable!("a cluster shares an object or a table"),
        };
        let node_ids: Vec<usize> = c.nodes.iter().map(|&n| n as usize).collect();
        let (start, end) = (Timestamp(c.start.into()), Timestamp(c.end.into()));
        let summary = format!(
            "{} removed {what} on {} nodes between {} and {} UTC ({} removal(s) on {}; program \
             matched by {} {})",
            program.name(),
            node_ids.len(),
            tell::when(start),
            if tell::when(start)[..10] == tell::when(end)[..10] {
                tell::time(end)
            } else {
                tell::when(end)
            },
            c.removals,
            names(&node_ids, nodes),
            program.key,
            program.value,
        );
        ClusterIncident {
            id,
            program: program.name().to_owned(),
            program_key: program.key,
            program_value: program.value.clone(),
            shared,
            kind,
            object,
            table,
            objects: c.objects.len() as u64,
            nodes: node_ids,
            removals: c.removals,
            start,
            end,
            summary,
        }
    }
}

/// Nodes named in a cluster incident's sentence; the node list has them all.
const NODES_NAMED: usize = 5;

/// `a, b, c and 11 more`.
fn names(ids: &[usize], nodes: &[NodeSummary]) -> String {
    let mut s = ids
        .iter()
        .take(NODES_NAMED)
        .map(|&i| nodes[i].node.as_str())
        .collect::<Vec<_>>()
        .join(", ");
    if ids.len() > NODES_NAMED {
        s.push_str(&format!(" and {} more", ids.len() - NODES_NAMED));
    }
    s
}

#[cfg(test)]
mod tests;
