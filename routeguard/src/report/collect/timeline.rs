//! The timeline: removals binned per program (comm with unit or container), and the restore
//! events in the lane of the actor whose removal they answered, binned at their own time.

use std::collections::{BTreeMap, HashMap};

use super::restores::{Log, RestoreRec};
use super::{add, Options, Rec};
use crate::event::{Actor, RestoreOutcome};
use crate::report::describe;
use crate::report::model::{Bin, Lane, Outcomes, Timeline};

pub(super) fn build(
    actors: &[Option<Actor>],
    recs: &[Rec],
    restores: &Log,
    opts: &Options,
) -> Timeline {
    let times = [recs.first(), recs.last()]
        .into_iter()
        .flatten()
        .map(|r| r.ts)
        .chain(
            [restores.recs.first(), restores.recs.last()]
                .into_iter()
                .flatten()
                .map(|r| r.ts),
        );
    let (Some(first), Some(last)) = (times.clone().min(), times.max()) else {
        return Timeline {
            start: None,
            end: None,
            bin_ns: 0,
            lanes: Vec::new(),
            lanes_merged: 0,
        };
    };
    let span = (i128::from(last) - i128::from(first)).max(1) as u64;
    let bin_ns = span.div_ceil(opts.timeline_bins.max(1)).max(1);
    let bin_of = |ts: i64| (i128::from(ts) - i128::from(first)) as u64 / bin_ns;
    // Lane per program: comm plus container or unit.
    let mut lane_of_actor: Vec<u32> = Vec::with_capacity(actors.len());
    let mut lane_ix: HashMap<String, u32> = HashMap::new();
    let mut labels: Vec<String> = Vec::new();
    for a in actors {
        let label = lane_label(a.as_ref());
        let next = labels.len() as u32;
        let l = *lane_ix.entry(label.clone()).or_insert_with(|| {
            labels.push(label);
            next
        });
        lane_of_actor.push(l);
    }
    let mut totals = vec![Bin::default(); labels.len()];
    let mut bins: Vec<BTreeMap<u64, Bin>> = vec![BTreeMap::new(); labels.len()];
    for r in recs {
        let l = lane_of_actor[r.actor as usize] as usize;
        add(&mut totals[l].outcomes, r.outcome);
        add(
            &mut bins[l].entry(bin_of(r.ts)).or_default().outcomes,
            r.outcome,
        );
    }
    for r in &restores.recs {
        let l = lane_of_actor[r.actor as usize] as usize;
        count_restore(&mut totals[l], r);
        count_restore(bins[l].entry(bin_of(r.ts)).or_default(), r);
    }
    let mut order: Vec<usize> = (0..labels.len())
        .filter(|&l| busy(&totals[l]) != (0, 0))
        .collect();
    order.sort_by(|&a, &b| busy(&totals[b]).cmp(&busy(&totals[a])).then(a.cmp(&b)));
    let keep = if order.len() > opts.max_lanes {
        opts.max_lanes.saturating_sub(1)
    } else {
        order.len()
    };
    let mut lanes: Vec<Lane> = Vec::new();
    for &l in &order[..keep] {
        lanes.push(lane(
            labels[l].clone(),
            std::mem::take(&mut totals[l]),
            std::mem::take(&mut bins[l]),
        ));
    }
    let merged = &order[keep..];
    if !merged.is_empty() {
        let mut all = BTreeMap::new();
        let mut total = Bin::default();
        for &l in merged {
            merge(&mut total, &totals[l]);
            for (b, o) in std::mem::take(&mut bins[l]) {
                merge(all.entry(b).or_default(), &o);
            }
        }
        lanes.push(lane(
            format!("other ({} programs)", merged.len()),
            total,
            all,
        ));
    }
    Timeline {
        start: Some(crate::event::Timestamp(first.into())),
        end: Some(crate::event::Timestamp(last.into())),
        bin_ns,
        lanes,
        lanes_merged: merged.len() as u64,
    }
}

/// Events in a lane or bin: its removals first (lanes rank by them), restores break ties.
fn busy(b: &Bin) -> (u64, u64) {
    (
        b.outcomes.total(),
        b.restored + b.not_restored + b.suspended,
    )
}

fn count_restore(b: &mut Bin, r: &RestoreRec) {
    if r.suspended {
        b.suspended += 1;
    } else if matches!(
        r.outcome,
        RestoreOutcome::Restored | RestoreOutcome::AlreadyPresent
    ) {
        b.restored += 1;
    } else {
        b.not_restored += 1;
    }
}

fn lane(label: String, total: Bin, bins: BTreeMap<u64, Bin>) -> Lane {
    Lane {
        label,
        outcomes: total.outcomes,
        restored: total.restored,
        not_restored: total.not_restored,
        suspended: total.suspended,
        bins: bins
            .into_iter()
            .map(|(index, b)| Bin { index, ..b })
            .collect(),
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

fn merge(into: &mut Bin, b: &Bin) {
    merge_outcomes(&mut into.outcomes, &b.outcomes);
    into.restored += b.restored;
    into.not_restored += b.not_restored;
    into.suspended += b.suspended;
}

fn merge_outcomes(into: &mut Outcomes, o: &Outcomes) {
    into.removed += o.removed;
    into.failed += o.failed;
    into.unknown += o.unknown;
}
