//! Incidents told in words, as a paragraph someone can paste into a postmortem (plain text;
//! renderers escape it).

use std::fmt::Write as _;

use super::describe;
use super::model::{ActorSummary, Incident, Outcomes, Restores};
use crate::event::Timestamp;

/// Objects named in the paragraph itself; the full list follows it in every format.
const OBJECTS_IN_TEXT: usize = 4;
/// Suspensions told in the paragraph; JSON lists them all.
const SUSPENSIONS_IN_TEXT: usize = 3;

/// `2026-11-27 15:56:29.196`.
pub fn when(ts: Timestamp) -> String {
    let s = ts.rfc3339();
    format!("{} {}", &s[..10], &s[11..23])
}

/// `15:56:29.196`.
pub fn time(ts: Timestamp) -> String {
    ts.rfc3339()[11..23].to_string()
}

pub fn outcomes(o: &Outcomes) -> String {
    let mut parts = Vec::new();
    if o.removed > 0 {
        parts.push(format!("{} removed", o.removed));
    }
    if o.failed > 0 {
        parts.push(format!("{} failed", o.failed));
    }
    if o.unknown > 0 {
        parts.push(format!("{} unknown", o.unknown));
    }
    if parts.is_empty() {
        "none".into()
    } else {
        parts.join(", ")
    }
}

pub fn incident(inc: &Incident, actors: &[ActorSummary]) -> String {
    let mut s = String::new();
    let span = inc.end.0 - inc.start.0;
    let _ = write!(s, "On {} UTC", when(inc.start));
    if span > 0 {
        let _ = write!(s, ", over {}", describe::duration(span));
    }
    let objects = inc.objects.len() as u64 + inc.objects_omitted;
    let _ = write!(
        s,
        ", {} removal request{} for {} object{}",
        inc.events,
        plural(inc.events),
        objects,
        plural(objects)
    );
    let kinds: Vec<String> = inc
        .by_kind
        .iter()
        .map(|(k, n)| format!("{n} {k}"))
        .collect();
    let _ = write!(s, " ({})", kinds.join(", "));
    let _ = write!(s, " came from ");
    let named: Vec<String> = inc
        .actors
        .iter()
        .take(3)
        .map(|ia| {
            let a = &actors[ia.actor];
            if inc.actors.len() == 1 {
                a.description.clone()
            } else {
                format!(
                    "{} ({} request{})",
                    a.description,
                    ia.outcomes.total(),
                    plural(ia.outcomes.total())
                )
            }
        })
        .collect();
    s.push_str(&named.join("; "));
    if inc.actors.len() > 3 {
        let _ = write!(s, "; and {} other processes", inc.actors.len() - 3);
    }
    s.push('.');
    let shown: Vec<&str> = inc
        .objects
        .iter()
        .take(OBJECTS_IN_TEXT)
        .map(|o| o.description.as_str())
        .collect();
    if !shown.is_empty() {
        let _ = write!(s, " Objects: {}", shown.join("; "));
        if objects as usize > shown.len() {
            let _ = write!(s, "; and {} more", objects as usize - shown.len());
        }
        s.push('.');
    }
    let _ = write!(s, " Outcome: {}", outcomes(&inc.outcomes));
    if !inc.errors.is_empty() {
        let errs: Vec<String> = inc
            .errors
            .iter()
            .map(|(e, n)| format!("{e} ×{n}"))
            .collect();
        let _ = write!(s, " ({})", errs.join(", "));
    }
    s.push('.');
    if inc.restores.events > 0 {
        let _ = write!(s, " Restores: {}.", restores(&inc.restores));
    }
    for sus in inc.suspensions.iter().take(SUSPENSIONS_IN_TEXT) {
        let who = actors[sus.actor].actor.as_ref().map_or_else(
            || "the kernel".into(),
            |a| describe::comm_pid(&a.comm, a.pid),
        );
        let _ = write!(
            s,
            " Restores of {} (policy {}) suspended at {} after {} attempt{}: {who} kept removing it.",
            sus.description,
            sus.policy,
            time(sus.at),
            sus.attempts,
            plural(u64::from(sus.attempts))
        );
        match (
            &sus.hint,
            inc.hints
                .iter()
                .find(|h| Some(h.advice) == sus.hint.as_deref()),
        ) {
            (_, Some(h)) => {
                let _ = write!(s, " See the hint for {}.", h.culprit);
            }
            (Some(hint), None) => {
                let _ = write!(s, " Hint: {hint}");
            }
            (None, None) => {}
        }
    }
    if inc.suspensions.len() > SUSPENSIONS_IN_TEXT {
        let _ = write!(
            s,
            " And {} more suspensions.",
            inc.suspensions.len() - SUSPENSIONS_IN_TEXT
        );
    }
    for h in &inc.hints {
        let _ = write!(s, " Known culprit: {}.", h.culprit);
    }
    s
}

/// `3 restored (p50 412 µs, max 1.2 ms), 1 already back, 1 re-add failed`, or `none` (restore
/// events only; suspensions are told apart).
pub fn restores(r: &Restores) -> String {
    let mut parts = Vec::new();
    let n = r.count("restored");
    if n > 0 {
        let mut p = format!("{n} restored");
        if let Some(l) = &r.latency_us {
            if l.count == 1 {
                let _ = write!(p, " in {}", describe::micros(l.max));
            } else {
                let _ = write!(
                    p,
                    " (p50 {}, max {})",
                    describe::micros(l.p50),
                    describe::micros(l.max)
                );
            }
        }
        parts.push(p);
    }
    for (name, one, many) in [
        ("already-present", "already back", "already back"),
        ("failed", "re-add failed", "re-adds failed"),
        (
            "dry-run",
            "dry run (not re-added)",
            "dry runs (not re-added)",
        ),
        ("skipped", "not restorable", "not restorable"),
    ] {
        match r.count(name) {
            0 => {}
            1 => parts.push(format!("1 {one}")),
            n => parts.push(format!("{n} {many}")),
        }
    }
    if parts.is_empty() {
        return "none".into();
    }
    let mut s = parts.join(", ");
    if !r.errors.is_empty() {
        let errs: Vec<String> = r.errors.iter().map(|(e, n)| format!("{e} ×{n}")).collect();
        let _ = write!(s, " ({})", errs.join(", "));
    }
    s
}

fn plural(n: u64) -> &'static str {
    if n == 1 {
        ""
    } else {
        "s"
    }
}
