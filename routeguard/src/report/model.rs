//! The report as data: what every renderer draws, and exactly what `--format json` prints
//! (schema: `docs/report.md`). Strings that came from a process are kept raw here; each renderer
//! escapes them for its format.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::event::{Actor, Kind, Timestamp};

/// Version of the JSON report schema (`docs/report.md`). Bump it when a field is renamed or
/// removed; adding fields does not.
pub const REPORT_SCHEMA_VERSION: u32 = 1;

#[derive(Debug, Serialize)]
pub struct Report {
    pub report_schema_version: u32,
    /// `routeguard 0.1.0`.
    pub generator: String,
    pub generated_at: Timestamp,
    pub source: Source,
    pub window: Window,
    /// The filters the report was made with, as given on the command line.
    pub filters: Vec<String>,
    /// Removals further apart than this start a new incident.
    pub gap_ms: u64,
    pub headline: Headline,
    pub incidents: Vec<Incident>,
    /// Ranked by removal requests, most first.
    pub actors: Vec<ActorSummary>,
    /// Ranked by removal requests, most first.
    pub objects: Vec<ObjectHistory>,
    pub timeline: Timeline,
}

#[derive(Debug, Serialize)]
pub struct Source {
    /// `jsonl` or `store`.
    pub kind: &'static str,
    pub path: String,
    /// Events read from the source, before filters and the time window.
    pub events_read: u64,
    /// Lines that were not events and were skipped.
    pub skipped_lines: u64,
    /// The first few of them: line number and why.
    pub skipped_examples: Vec<Skipped>,
}

#[derive(Clone, Debug, Serialize)]
pub struct Skipped {
    /// 1-based line number (for a store: the row's position in time order).
    pub line: u64,
    pub reason: String,
}

#[derive(Debug, Serialize)]
pub struct Window {
    /// `--since` / `--until` as resolved (absolute), `null` when not given.
    pub since: Option<Timestamp>,
    pub until: Option<Timestamp>,
    /// First and last event in the report, `null` when it has none.
    pub first_event: Option<Timestamp>,
    pub last_event: Option<Timestamp>,
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct Outcomes {
    pub removed: u64,
    pub failed: u64,
    pub unknown: u64,
    /// Refused by the LSM program, or would have been (dry run): nothing was removed.
    pub denied: u64,
}

impl Outcomes {
    pub fn total(&self) -> u64 {
        self.removed + self.failed + self.unknown + self.denied
    }
}

#[derive(Debug, Serialize)]
pub struct Headline {
    /// Removal events in the report (after filters and the time window); restore events are
    /// counted in `restores`.
    pub events: u64,
    pub outcomes: Outcomes,
    /// Events per kind (`route`, `rule`, …), per cause (`request`, `link-down`, …).
    pub by_kind: BTreeMap<&'static str, u64>,
    pub by_cause: BTreeMap<&'static str, u64>,
    /// Failed removals per error name (`ESRCH`, …; `errno N` when unnamed).
    pub errors: BTreeMap<String, u64>,
    pub actors: u64,
    pub objects: u64,
    pub incidents: u64,
    /// What routeguard's restore engine answered the removals with.
    pub restores: Restores,
    /// Protected objects still missing at the end of the window: their last removal was not
    /// followed by a `restored` or `already-present` restore. `null` when the input holds no
    /// restore events at all (no protect policy), since then nothing is known of re-additions.
    pub still_missing: Option<u64>,
    /// Ids (`Report::objects`) of those objects, in the order of `objects`.
    pub still_missing_objects: Vec<usize>,
    /// What `still_missing` counts, and what it cannot know.
    pub still_missing_note: String,
}

pub const STILL_MISSING_UNKNOWN: &str = "not computed: the input holds no restore events (no \
    protect policy), and removals alone do not say whether an object came back";

/// Restore and `restore-suspended` events (docs/events.md): how many per outcome, how fast
/// objects came back, how often routeguard gave up.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Restores {
    /// `restore` events.
    pub events: u64,
    /// Per restore outcome: `restored`, `already-present`, `failed`, `dry-run`, `skipped`.
    pub by_outcome: BTreeMap<&'static str, u64>,
    /// Why re-adds failed: error name (`ENODEV`, or `errno N`) → count.
    pub errors: BTreeMap<String, u64>,
    /// `latency_us` of the `restored` ones; `null` when none.
    pub latency_us: Option<Latency>,
    /// `restore-suspended` events: the flap guard stopped restoring an object.
    pub suspensions: u64,
}

impl Restores {
    pub fn is_empty(&self) -> bool {
        self.events == 0 && self.suspensions == 0
    }

    pub fn count(&self, outcome: &str) -> u64 {
        self.by_outcome.get(outcome).copied().unwrap_or(0)
    }
}

/// Microseconds an object was missing: removal to routeguard's re-add acked.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct Latency {
    pub count: u64,
    pub p50: u64,
    pub p99: u64,
    pub max: u64,
}

impl Latency {
    /// Nearest-rank percentiles of `us` (sorted in place); `None` when empty.
    pub fn of(us: &mut [u64]) -> Option<Latency> {
        if us.is_empty() {
            return None;
        }
        us.sort_unstable();
        let rank = |p: u64| us[((us.len() as u64 * p).div_ceil(100).max(1) - 1) as usize];
        Some(Latency {
            count: us.len() as u64,
            p50: rank(50),
            p99: rank(99),
            max: us[us.len() - 1],
        })
    }
}

/// A `restore-suspended` event: the flap guard stopped restoring an object its actor keeps
/// removing.
#[derive(Debug, Serialize)]
pub struct Suspension {
    pub at: Timestamp,
    /// Index in `Report::objects`.
    pub object: usize,
    pub description: String,
    /// Index in `Report::actors`: the culprit.
    pub actor: usize,
    /// The protect entry.
    pub policy: String,
    /// Restores within the window before it gave up.
    pub attempts: u32,
    /// The setting that stops this culprit (known culprits only).
    pub hint: Option<String>,
    /// The engine's sentence: who removed it again, for how long restores stop.
    pub detail: Option<String>,
}

/// A process that asked for removals. `id` is its index in `Report::actors`.
#[derive(Debug, Serialize)]
pub struct ActorSummary {
    pub id: usize,
    /// The event's `actor` object as recorded (first event of this process). `null` for removals
    /// no process asked for (expiry, namespace exit, kernel flushes).
    pub actor: Option<Actor>,
    /// `comm[pid] (exe, unit), started by parent[pid] ← …`, or `kernel (no process)`.
    pub description: String,
    pub outcomes: Outcomes,
    /// Distinct objects it removed.
    pub objects: u64,
    pub first: Timestamp,
    pub last: Timestamp,
    /// Ids of the matching rows of the hint table (`Hint::id`).
    pub hints: Vec<&'static str>,
}

/// One object (as the requests named it) and who removed it when. `id` is its index in
/// `Report::objects`.
#[derive(Debug, Serialize)]
pub struct ObjectHistory {
    pub id: usize,
    pub kind: Kind,
    /// `route table 77 10.1.0.0/24 via 10.0.0.1` (iproute2's words).
    pub object: String,
    pub netns: NetnsRef,
    pub outcomes: Outcomes,
    pub first: Timestamp,
    pub last: Timestamp,
    /// Who asked, most first: actor id and how many requests.
    pub by: Vec<ByActor>,
    /// Restore events for it per outcome (`restored`, …, and `suspended`).
    pub restores: BTreeMap<&'static str, u64>,
    /// Whether it is missing at the end of the window; `null` when routeguard never answered a
    /// removal of it (not protected), so nothing is known.
    pub still_missing: Option<bool>,
}

#[derive(Clone, Debug, Serialize, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NetnsRef {
    pub inode: u32,
    pub name: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct ByActor {
    pub actor: usize,
    pub count: u64,
}

/// A burst of removals: consecutive events no more than `gap_ms` apart.
#[derive(Debug, Serialize)]
pub struct Incident {
    /// 1-based, in time order.
    pub id: usize,
    pub start: Timestamp,
    pub end: Timestamp,
    pub events: u64,
    pub outcomes: Outcomes,
    pub by_kind: BTreeMap<&'static str, u64>,
    /// Error names of failed removals, with counts.
    pub errors: BTreeMap<String, u64>,
    /// Actors in this incident, most requests first.
    pub actors: Vec<IncidentActor>,
    /// Objects removed in it, grouped by kind then in time order (capped, see
    /// `objects_omitted`).
    pub objects: Vec<IncidentObject>,
    /// Distinct objects left out of `objects` by the cap.
    pub objects_omitted: u64,
    /// Restores answering this incident's removals (wherever in time they happened).
    pub restores: Restores,
    pub suspensions: Vec<Suspension>,
    pub hints: Vec<HintRef>,
    /// The incident told in one paragraph (plain text, unescaped).
    pub summary: String,
}

#[derive(Debug, Serialize)]
pub struct IncidentActor {
    pub actor: usize,
    pub outcomes: Outcomes,
}

#[derive(Debug, Serialize)]
pub struct IncidentObject {
    /// Index in `Report::objects`.
    pub object: usize,
    pub kind: Kind,
    pub description: String,
    pub outcomes: Outcomes,
    /// Error names when some requests for it failed.
    pub errors: Vec<String>,
    /// Restore events answering its removals in this incident, per outcome (and `suspended`).
    pub restores: BTreeMap<&'static str, u64>,
}

#[derive(Debug, Serialize)]
pub struct HintRef {
    pub id: &'static str,
    pub culprit: &'static str,
    pub advice: &'static str,
    /// Actor ids it was matched on.
    pub actors: Vec<usize>,
}

/// Removals over time, one lane per program (comm and unit or container), binned so that even
/// a million events draw as a few thousand marks; restores and suspensions in the lane of the
/// actor whose removal they answered, at the time they happened.
#[derive(Debug, Serialize)]
pub struct Timeline {
    pub start: Option<Timestamp>,
    pub end: Option<Timestamp>,
    /// Width of one bin.
    pub bin_ns: u64,
    pub lanes: Vec<Lane>,
    /// Lanes left out (the least busy ones), merged into the last lane `other`.
    pub lanes_merged: u64,
}

#[derive(Debug, Serialize)]
pub struct Lane {
    /// `systemd-network (systemd-networkd.service)`, `ip (session-1.scope)`, `kernel`.
    pub label: String,
    pub outcomes: Outcomes,
    /// Restore events that put an object back (`restored`, `already-present`).
    pub restored: u64,
    /// Restore events that did not (`failed`, `dry-run`, `skipped`).
    pub not_restored: u64,
    pub suspended: u64,
    pub bins: Vec<Bin>,
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct Bin {
    /// Bin number from `Timeline::start` (`start + index * bin_ns`).
    pub index: u64,
    /// Removals.
    pub outcomes: Outcomes,
    /// Restore events in this bin, as in `Lane`.
    pub restored: u64,
    pub not_restored: u64,
    pub suspended: u64,
}
