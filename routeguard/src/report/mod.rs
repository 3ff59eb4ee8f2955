//! `routeguard report`: incident attribution reports people paste into a postmortem.
//!
//! Events come back from a JSONL capture or the daemon's store ([`input`], whose facts
//! [`stored`] reads), are folded into
//! compact records and grouped into incidents, rankings and a timeline ([`collect`], with the
//! known culprits of [`hints`] and the words of [`describe`] and [`tell`]), giving a [`Report`]
//! ([`model`]) that [`render`] draws as HTML (with an inline SVG timeline), Markdown or JSON.

pub mod collect;
pub mod describe;
pub mod fleet;
pub use crate::hints;
pub mod input;
mod memo;
pub mod model;
pub mod render;
mod stored;
pub mod tell;

pub use collect::{Collector, Options};
pub use input::{Input, InputError, Query};
pub use model::{Report, REPORT_SCHEMA_VERSION};

use crate::event::Timestamp;

/// Reads `input`, keeps what `query` selects, and builds the report. `filters` are the filter
/// flags as given, recorded in the report; `now` is its generation time.
pub fn build(
    input: &Input,
    query: &Query,
    filters: Vec<String>,
    opts: &Options,
    now: Timestamp,
) -> Result<Report, InputError> {
    let mut collector = Collector::new();
    let source = input::load(input, query, &mut collector)?;
    Ok(assemble(collector, source, query, filters, opts, now))
}

/// The report from events already collected.
pub fn assemble(
    collector: Collector,
    source: model::Source,
    query: &Query,
    filters: Vec<String>,
    opts: &Options,
    now: Timestamp,
) -> Report {
    let s = collector.finish(opts);
    Report {
        report_schema_version: REPORT_SCHEMA_VERSION,
        generator: format!("routeguard {}", env!("CARGO_PKG_VERSION")),
        generated_at: now,
        source,
        window: model::Window {
            since: query.since,
            until: query.until,
            first_event: s.first,
            last_event: s.last,
        },
        filters,
        gap_ms: u64::try_from(opts.gap_ns / 1_000_000).unwrap_or(u64::MAX),
        headline: s.headline,
        incidents: s.incidents,
        actors: s.actors,
        objects: s.objects,
        timeline: s.timeline,
    }
}

#[cfg(test)]
mod tests;
