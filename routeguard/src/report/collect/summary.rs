//! What a fleet report keeps of each node: the headline's counts and the top actors, computed
//! without the rankings, incidents and timeline of [`Collector::finish`], which a node's row
//! does not show (fifty nodes of 20,000 objects each are a million object histories built and
//! dropped). Each count is the one `finish` gives: `tests::summary_counts_as_finish_does`.

use std::collections::BTreeMap;

use serde::Serialize;

use super::{add, Collector};
use crate::event::{Kind, Outcome, Timestamp};
use crate::report::describe;
use crate::report::model::{Outcomes, Restores};

/// One node's events, counted as a one-input report's headline counts them. Serialized as a
/// fleet report's node row has them.
#[derive(Debug, Serialize)]
pub struct Summary {
    #[serde(rename = "first_event")]
    pub first: Option<Timestamp>,
    #[serde(rename = "last_event")]
    pub last: Option<Timestamp>,
    /// Removal requests, after filters and the time window.
    pub events: u64,
    pub outcomes: Outcomes,
    pub by_kind: BTreeMap<&'static str, u64>,
    /// Incidents on this node alone (bursts of removals no more than the gap apart).
    pub incidents: u64,
    /// Actors and objects some removal names (not those only a restore event names).
    pub actors: u64,
    pub objects: u64,
    pub restores: Restores,
    /// As the headline's: `None` (`null`) when there is no restore event.
    pub still_missing: Option<u64>,
    /// The `top` actors with most removal requests (then earliest), as
    /// [`describe::actor_sentence`] words them, and their requests.
    pub top_actors: Vec<(String, u64)>,
}

impl Collector {
    /// The counts of [`Collector::finish`]'s headline, its first and last event and its `top`
    /// first-ranked actors, for `gap_ns` between incidents.
    pub fn summary(mut self, gap_ns: i128, top: usize) -> Summary {
        self.recs.sort_by_key(|r| r.ts);
        self.restores.sort();
        let recs = &self.recs;
        let mut outcomes = Outcomes::default();
        // Counted by kind, then named: no string compared per removal.
        let mut kinds: Vec<(Kind, u64)> = Vec::new();
        // Per actor: requests and first request; per object: whether a removal names it, and
        // its last acked removal (`i64::MIN` for none; the records are in time order).
        let mut actor_out = vec![(0u64, i64::MAX); self.actors.len()];
        let mut named = vec![false; self.objects.len()];
        let mut last_removed = vec![i64::MIN; self.objects.len()];
        let mut incidents = 0;
        let mut prev = None;
        for r in recs {
            add(&mut outcomes, r.outcome);
            match kinds.iter_mut().find(|(k, _)| *k == r.kind) {
                Some((_, n)) => *n += 1,
                None => kinds.push((r.kind, 1)),
            }
            let a = &mut actor_out[r.actor as usize];
            a.0 += 1;
            a.1 = a.1.min(r.ts);
            named[r.object as usize] = true;
            if r.outcome == Outcome::Removed {
                last_removed[r.object as usize] = r.ts;
            }
            if prev.is_none_or(|p: i64| i128::from(r.ts) - i128::from(p) > gap_ns) {
                incidents += 1;
            }
            prev = Some(r.ts);
        }
        let by_kind = kinds
            .into_iter()
            .map(|(k, n)| (describe::kind_name(k), n))
            .collect();
        // `finish` ranks by requests, then first request, then the order actors were met.
        let mut ranked: Vec<usize> = (0..actor_out.len())
            .filter(|&i| actor_out[i].0 > 0)
            .collect();
        let actors = ranked.len() as u64;
        ranked.sort_by(|&a, &b| {
            let (x, y) = (actor_out[a], actor_out[b]);
            y.0.cmp(&x.0).then(x.1.cmp(&y.1)).then(a.cmp(&b))
        });
        let top_actors = ranked
            .iter()
            .take(top)
            .map(|&i| {
                let words = self.actors[i]
                    .as_ref()
                    .map_or_else(|| "kernel (no process)".into(), describe::actor_sentence);
                (words, actor_out[i].0)
            })
            .collect();
        let still_missing = (!self.restores.is_empty()).then(|| {
            self.restores
                .still_missing(&last_removed)
                .iter()
                .filter(|&&m| m == Some(true))
                .count() as u64
        });
        let restores = &self.restores.recs;
        let first = recs.first().map(|r| r.ts).into_iter();
        let first = first.chain(restores.first().map(|r| r.ts)).min();
        let last = recs.last().map(|r| r.ts).into_iter();
        let last = last.chain(restores.last().map(|r| r.ts)).max();
        Summary {
            first: first.map(|t| Timestamp(t.into())),
            last: last.map(|t| Timestamp(t.into())),
            events: recs.len() as u64,
            outcomes,
            by_kind,
            incidents,
            actors,
            objects: named.iter().filter(|&&n| n).count() as u64,
            restores: self.restores.summary(restores),
            still_missing,
            top_actors,
        }
    }
}
