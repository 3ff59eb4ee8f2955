//! Restore and `restore-suspended` events: kept apart from removals (they are few, and every
//! count of removals must leave them out), matched to the removal each one answered, and
//! summed up per incident, per object and for the headline.
//!
//! A restore event repeats the removal it answers (same object, same actor — the culprit) with
//! its own `ts`: when the re-add was acked (or, for `skipped`, `dry-run` and `restore-suspended`,
//! the removal's own time). So the removal it answers is the latest removal of that object by
//! that actor at or before it.

use std::collections::{BTreeMap, HashMap};

use crate::event::{EventType, Restore, RestoreOutcome};
use crate::report::model::{Latency, Restores};

/// What the collector keeps of an event's `restore` object, borrowed from it.
#[derive(Clone)]
pub struct RestoreFields<'a> {
    pub policy: &'a str,
    pub outcome: RestoreOutcome,
    pub latency_us: Option<u64>,
    pub attempt: u32,
    pub errno: Option<i32>,
    pub error: Option<&'a str>,
    pub hint: Option<&'a str>,
    pub detail: Option<&'a str>,
}

impl<'a> RestoreFields<'a> {
    pub fn of(r: &'a Restore) -> Self {
        RestoreFields {
            policy: &r.policy,
            outcome: r.outcome,
            latency_us: r.latency_us,
            attempt: r.attempt,
            errno: r.errno,
            error: r.error.as_deref(),
            hint: r.hint.as_deref(),
            detail: r.detail.as_deref(),
        }
    }
}

const NONE: u32 = u32::MAX;

/// One restore event.
#[derive(Clone, Copy)]
pub(super) struct RestoreRec {
    pub ts: i64,
    pub actor: u32,
    pub object: u32,
    /// `u64::MAX` when the event has none.
    latency_us: u64,
    pub attempt: u32,
    /// Interned strings ([`Log::str`]), `NONE` when absent.
    policy: u32,
    /// Why a re-add failed: the errno's name, or `errno N`.
    error: u32,
    hint: u32,
    detail: u32,
    pub suspended: bool,
    pub outcome: RestoreOutcome,
}

impl RestoreRec {
    /// The object is back (routeguard's re-add, or someone else's first).
    pub fn restored(&self) -> bool {
        matches!(
            self.outcome,
            RestoreOutcome::Restored | RestoreOutcome::AlreadyPresent
        ) && !self.suspended
    }
}

/// Every restore event of the input, in time order once [`Log::sort`] ran.
#[derive(Default)]
pub(super) struct Log {
    pub recs: Vec<RestoreRec>,
    strings: Vec<String>,
    string_ix: HashMap<String, u32>,
}

impl Log {
    pub fn push(&mut self, ts: i64, actor: u32, object: u32, event: EventType, r: &RestoreFields) {
        let rec = RestoreRec {
            ts,
            actor,
            object,
            latency_us: r.latency_us.unwrap_or(u64::MAX),
            attempt: r.attempt,
            policy: self.intern(Some(r.policy)),
            error: match (r.error, r.errno) {
                (Some(name), _) => self.intern(Some(name)),
                (None, Some(n)) => self.intern(Some(&format!("errno {n}"))),
                (None, None) => NONE,
            },
            hint: self.intern(r.hint),
            detail: self.intern(r.detail),
            suspended: event == EventType::RestoreSuspended,
            outcome: r.outcome,
        };
        self.recs.push(rec);
    }

    fn intern(&mut self, s: Option<&str>) -> u32 {
        let Some(s) = s else { return NONE };
        if let Some(&i) = self.string_ix.get(s) {
            return i;
        }
        let i = self.strings.len() as u32;
        self.strings.push(s.to_owned());
        self.string_ix.insert(s.to_owned(), i);
        i
    }

    pub fn str(&self, i: u32) -> Option<&str> {
        (i != NONE).then(|| self.strings[i as usize].as_str())
    }

    pub fn policy(&self, r: &RestoreRec) -> &str {
        self.str(r.policy).unwrap_or("")
    }

    pub fn hint(&self, r: &RestoreRec) -> Option<&str> {
        self.str(r.hint)
    }

    pub fn detail(&self, r: &RestoreRec) -> Option<&str> {
        self.str(r.detail)
    }

    pub fn sort(&mut self) {
        self.recs.sort_by_key(|r| r.ts);
    }

    pub fn is_empty(&self) -> bool {
        self.recs.is_empty()
    }

    /// The summary of the restore events `which` selects.
    pub fn summary<'r>(&self, which: impl IntoIterator<Item = &'r RestoreRec>) -> Restores {
        let mut s = Restores::default();
        let mut latencies = Vec::new();
        for r in which {
            if r.suspended {
                s.suspensions += 1;
                continue;
            }
            s.events += 1;
            *s.by_outcome.entry(outcome_name(r.outcome)).or_default() += 1;
            if let Some(e) = self.str(r.error) {
                *s.errors.entry(e.to_string()).or_default() += 1;
            }
            if r.outcome == RestoreOutcome::Restored && r.latency_us != u64::MAX {
                latencies.push(r.latency_us);
            }
        }
        s.latency_us = Latency::of(&mut latencies);
        s
    }

    /// For each removal (`removals` gives `(ts, actor, object, incident)` in time order, only
    /// removals the kernel acked), and each restore event: the incident of the removal it
    /// answered, or `None` when that removal is not in the report (before its window).
    pub fn incident_of(
        &self,
        removals: impl Iterator<Item = (i64, u32, u32, usize)>,
    ) -> Vec<Option<usize>> {
        // Only the (object, actor) pairs some restore answered are remembered.
        // Looked up once per removal (a million of them): a fast hasher, only looked up.
        let mut answered: HashMap<(u32, u32), Vec<(i64, usize)>, foldhash::fast::RandomState> =
            self.recs
                .iter()
                .map(|r| ((r.object, r.actor), Vec::new()))
                .collect();
        for (ts, actor, object, incident) in removals {
            if let Some(v) = answered.get_mut(&(object, actor)) {
                v.push((ts, incident));
            }
        }
        self.recs
            .iter()
            .map(|r| {
                let v = &answered[&(r.object, r.actor)];
                let after = v.partition_point(|&(ts, _)| ts <= r.ts);
                after.checked_sub(1).map(|i| v[i].1)
            })
            .collect()
    }

    /// Per object (index as interned): its restore events per outcome (`suspended` for
    /// `restore-suspended`).
    pub fn by_object(&self, objects: usize) -> Vec<BTreeMap<&'static str, u64>> {
        let mut out = vec![BTreeMap::new(); objects];
        for r in &self.recs {
            *out[r.object as usize].entry(rec_name(r)).or_default() += 1;
        }
        out
    }

    /// Per object (index as interned), whether it is missing at the end: `None` when no restore
    /// event names it (not protected, so unknown), else whether its last removal
    /// (`last_removed[o]`, `i64::MIN` when none was acked) came after its last restore that put
    /// it back.
    pub fn still_missing(&self, last_removed: &[i64]) -> Vec<Option<bool>> {
        let mut back = vec![None::<i64>; last_removed.len()];
        let mut answered = vec![false; last_removed.len()];
        for r in &self.recs {
            let o = r.object as usize;
            answered[o] = true;
            if r.restored() {
                back[o] = Some(back[o].map_or(r.ts, |b| b.max(r.ts)));
            }
        }
        (0..last_removed.len())
            .map(|o| {
                let removed = last_removed[o];
                (answered[o] && removed != i64::MIN).then(|| back[o].is_none_or(|b| b < removed))
            })
            .collect()
    }
}

/// The event schema's spelling of a restore outcome.
pub fn outcome_name(o: RestoreOutcome) -> &'static str {
    match o {
        RestoreOutcome::Restored => "restored",
        RestoreOutcome::AlreadyPresent => "already-present",
        RestoreOutcome::Failed => "failed",
        RestoreOutcome::DryRun => "dry-run",
        RestoreOutcome::Skipped => "skipped",
        RestoreOutcome::Suspended => "suspended",
    }
}

/// `suspended` for a `restore-suspended` event, else its outcome.
pub(super) fn rec_name(r: &RestoreRec) -> &'static str {
    if r.suspended {
        "suspended"
    } else {
        outcome_name(r.outcome)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(log: &mut Log, ts: i64, object: u32, outcome: RestoreOutcome, suspended: bool) {
        let event = if suspended {
            EventType::RestoreSuspended
        } else {
            EventType::Restore
        };
        log.push(
            ts,
            0,
            object,
            event,
            &RestoreFields {
                policy: "p",
                outcome,
                latency_us: (outcome == RestoreOutcome::Restored).then_some(ts as u64),
                attempt: 1,
                errno: None,
                error: None,
                hint: None,
                detail: None,
            },
        );
    }

    #[test]
    fn still_missing_compares_last_removal_with_last_restore() {
        let mut log = Log::default();
        // Object 0: removed at 10, restored at 11. Object 1: removed at 10, restored at 11,
        // removed again at 20 and suspended. Object 2: never answered. Object 3: restore
        // failed, then already present. Object 4: dry run.
        rec(&mut log, 11, 0, RestoreOutcome::Restored, false);
        rec(&mut log, 11, 1, RestoreOutcome::Restored, false);
        rec(&mut log, 20, 1, RestoreOutcome::Suspended, true);
        rec(&mut log, 12, 3, RestoreOutcome::Failed, false);
        rec(&mut log, 30, 3, RestoreOutcome::AlreadyPresent, false);
        rec(&mut log, 10, 4, RestoreOutcome::DryRun, false);
        log.sort();
        let missing = log.still_missing(&[10, 20, 10, 10, 10]);
        assert_eq!(
            missing,
            [Some(false), Some(true), None, Some(false), Some(true)]
        );
        let s = log.summary(&log.recs);
        assert_eq!(s.events, 5);
        assert_eq!(s.suspensions, 1);
        assert_eq!(s.count("restored"), 2);
        assert_eq!(s.count("already-present"), 1);
        assert_eq!(s.latency_us.unwrap().max, 11);
    }

    #[test]
    fn restores_join_the_incident_of_the_removal_they_answer() {
        let mut log = Log::default();
        rec(&mut log, 15, 7, RestoreOutcome::Restored, false); // answers the removal at 10
        rec(&mut log, 30, 7, RestoreOutcome::Restored, false); // answers the one at 25
        rec(&mut log, 5, 8, RestoreOutcome::Restored, false); // its removal is not in the report
        log.sort();
        let removals = [(10, 0, 7, 0), (25, 0, 7, 1), (26, 0, 8, 1)];
        assert_eq!(
            log.incident_of(removals.into_iter()),
            vec![None, Some(0), Some(1)],
            "sorted by time: 5 (object 8), 15, 30"
        );
    }

    #[test]
    fn latency_percentiles_are_nearest_rank() {
        let mut v: Vec<u64> = (1..=100).rev().collect();
        let l = Latency::of(&mut v).unwrap();
        assert_eq!((l.count, l.p50, l.p99, l.max), (100, 50, 99, 100));
        assert_eq!(Latency::of(&mut []), None);
        let l = Latency::of(&mut [7]).unwrap();
        assert_eq!((l.p50, l.p99, l.max), (7, 7, 7));
    }
}
