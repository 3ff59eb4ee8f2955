//! Cluster incidents: removals by the same program of the same object (or of objects in the same
//! table) on several nodes, each no more than the gap after the one before.
//!
//! Pure logic on numbers: the caller numbers nodes, programs, objects and tables, and words the
//! result ([`super::tell_cluster`]).

use std::collections::BTreeSet;

use super::FastMap;

/// One removal on one node, as the clustering sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Sighting {
    /// Nanoseconds since the epoch.
    pub ts: i64,
    pub node: u32,
    /// The program that asked (a [`super::Program`]'s number).
    pub program: u32,
    /// The object's identity (its `ObjectKey`, whatever namespace or node it was in).
    pub object: u32,
    /// The routing table, for routes and rules that name one: a number the caller gives each
    /// (kind, table) pair, so a route table and a rule's `lookup` of it stay apart.
    pub table: Option<u32>,
}

/// What the removals of a cluster have in common besides their program.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Shared {
    /// The same object on every node.
    Object(u32),
    /// Objects of the same table ([`Sighting::table`] number), not all the same.
    Table(u32),
}

/// One cluster incident.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cluster {
    pub program: u32,
    pub shared: Shared,
    /// Distinct nodes, ascending.
    pub nodes: Vec<u32>,
    /// Distinct objects removed.
    pub objects: BTreeSet<u32>,
    pub removals: u64,
    pub start: i64,
    pub end: i64,
}

/// The cluster incidents in `sightings`, in time order. Removals of the same object by the same
/// program are chained first (consecutive ones no more than `gap_ns` apart, so a gap of exactly
/// `gap_ns` still joins); a chain that spans at least two nodes is an incident. Removals left
/// over are chained again by program and table, so that a program removing different routes of
/// one table across the fleet is told too. A chain on one node only is that node's business.
pub fn clusters(sightings: &[Sighting], gap_ns: i64) -> Vec<Cluster> {
    // A million sightings for 50 nodes of 20,000: a fast hasher (the numbers are ours, and the
    // incidents are sorted at the end, whatever order the groups come in).
    let mut by_object: FastMap<(u32, u32), Vec<usize>> = FastMap::default();
    for (i, s) in sightings.iter().enumerate() {
        by_object.entry((s.program, s.object)).or_default().push(i);
    }
    let mut out = Vec::new();
    let mut used = vec![false; sightings.len()];
    for ((program, object), members) in by_object {
        for chain in chains(sightings, members, gap_ns) {
            if let Some(c) = cluster(sightings, &chain, program, Shared::Object(object)) {
                for &i in &chain {
                    used[i] = true;
                }
                out.push(c);
            }
        }
    }
    let mut by_table: FastMap<(u32, u32), Vec<usize>> = FastMap::default();
    for (i, s) in sightings.iter().enumerate() {
        if let (false, Some(t)) = (used[i], s.table) {
            by_table.entry((s.program, t)).or_default().push(i);
        }
    }
    for ((program, table), members) in by_table {
        for chain in chains(sightings, members, gap_ns) {
            out.extend(cluster(sightings, &chain, program, Shared::Table(table)));
        }
    }
    out.sort_by_key(|a| (a.start, a.program, a.shared));
    out
}

/// `members` (indexes into `sightings`) split where two consecutive removals are more than
/// `gap_ns` apart.
fn chains(sightings: &[Sighting], mut members: Vec<usize>, gap_ns: i64) -> Vec<Vec<usize>> {
    members.sort_by_key(|&i| (sightings[i].ts, i));
    let mut out: Vec<Vec<usize>> = Vec::new();
    let mut last = i64::MIN;
    for i in members {
        let ts = sightings[i].ts;
        match out.last_mut() {
            Some(chain) if ts.saturating_sub(last) <= gap_ns => chain.push(i),
            _ => out.push(vec![i]),
        }
        last = ts;
    }
    out
}

/// The chain as an incident, if it spans two nodes or more.
fn cluster(
    sightings: &[Sighting],
    chain: &[usize],
    program: u32,
    shared: Shared,
) -> Option<Cluster> {
    let nodes: BTreeSet<u32> = chain.iter().map(|&i| sightings[i].node).collect();
    if nodes.len() < 2 {
        return None;
    }
    Some(Cluster {
        program,
        shared,
        nodes: nodes.into_iter().collect(),
        objects: chain.iter().map(|&i| sightings[i].object).collect(),
        removals: chain.len() as u64,
        start: sightings[chain[0]].ts,
        end: sightings[chain[chain.len() - 1]].ts,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: i64 = 1_000_000_000;

    fn at(secs: i64, node: u32, program: u32, object: u32, table: Option<u32>) -> Sighting {
        Sighting {
            ts: secs * S,
            node,
            program,
            object,
            table,
        }
    }

    #[test]
    fn same_object_on_several_nodes_is_one_incident() {
        let s = [
            at(100, 0, 7, 1, Some(77)),
            at(110, 1, 7, 1, Some(77)),
            at(129, 2, 7, 1, Some(77)),
            // Another program's removal of the same object is not part of it.
            at(105, 3, 8, 1, Some(77)),
        ];
        let c = clusters(&s, 60 * S);
        assert_eq!(c.len(), 1, "{c:?}");
        assert_eq!(c[0].program, 7);
        assert_eq!(c[0].shared, Shared::Object(1));
        assert_eq!(c[0].nodes, [0, 1, 2]);
        assert_eq!((c[0].start, c[0].end, c[0].removals), (100 * S, 129 * S, 3));
    }

    #[test]
    fn one_node_only_is_no_cluster_incident() {
        let s = [
            at(100, 4, 7, 1, Some(77)),
            at(101, 4, 7, 1, Some(77)),
            at(102, 4, 7, 2, Some(77)),
        ];
        assert_eq!(clusters(&s, 60 * S), []);
    }

    #[test]
    fn the_gap_joins_at_exactly_gap_and_splits_one_nanosecond_later() {
        let gap = 60 * S;
        let joined = [at(0, 0, 1, 1, None), at(60, 1, 1, 1, None)];
        assert_eq!(clusters(&joined, gap).len(), 1);
        let mut split = joined;
        split[1].ts += 1;
        assert_eq!(clusters(&split, gap), []);
        // Chained: each within the gap of the one before, the whole span longer than it.
        let chained = [
            at(0, 0, 1, 1, None),
            at(60, 1, 1, 1, None),
            at(120, 2, 1, 1, None),
        ];
        let c = clusters(&chained, gap);
        assert_eq!((c.len(), c[0].nodes.len(), c[0].end), (1, 3, 120 * S));
    }

    #[test]
    fn same_program_different_tables_are_apart() {
        // Different routes (objects 1, 2, 3) on three nodes: tables 77 and 78 differ.
        let s = [
            at(0, 0, 1, 1, Some(77)),
            at(1, 1, 1, 2, Some(78)),
            at(2, 2, 1, 3, Some(77)),
        ];
        let c = clusters(&s, 60 * S);
        assert_eq!(c.len(), 1, "{c:?}");
        assert_eq!(c[0].shared, Shared::Table(77));
        assert_eq!(c[0].nodes, [0, 2]);
        assert_eq!(c[0].objects.iter().copied().collect::<Vec<_>>(), [1, 3]);
    }

    #[test]
    fn object_clusters_take_their_removals_before_tables_do() {
        // Object 1 on nodes 0 and 1 (an object incident); object 2 on node 2, same table, is
        // left alone: one node is no cluster of its own.
        let s = [
            at(0, 0, 1, 1, Some(77)),
            at(1, 1, 1, 1, Some(77)),
            at(2, 2, 1, 2, Some(77)),
        ];
        let c = clusters(&s, 60 * S);
        assert_eq!(c.len(), 1, "{c:?}");
        assert_eq!(
            (c[0].shared, c[0].nodes.clone()),
            (Shared::Object(1), vec![0, 1])
        );
    }

    #[test]
    fn objects_without_a_table_cluster_by_identity_only() {
        let s = [at(0, 0, 1, 1, None), at(1, 1, 1, 2, None)];
        assert_eq!(clusters(&s, 60 * S), []);
    }
}
