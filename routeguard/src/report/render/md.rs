//! `--format md`: GitHub-flavoured Markdown — headings, lists and tables, no raw HTML. Every
//! process-derived string goes through [`md_escape`], so a `|` cannot split a table cell and a
//! `<script>` stays text.

use std::io::{self, Write};

use super::{md_escape as esc, MAX_ROWS};
use crate::report::describe;
use crate::report::model::{Outcomes, Report};
use crate::report::tell;

pub fn write(r: &Report, out: &mut dyn Write) -> io::Result<()> {
    let mut m = String::with_capacity(32 * 1024);
    m.push_str("# Route, rule and nexthop removals\n\n");
    m.push_str(&format!(
        "Source: {} {} · ",
        r.source.kind,
        esc(&r.source.path)
    ));
    match (r.window.first_event, r.window.last_event) {
        (Some(f), Some(l)) => m.push_str(&format!(
            "events from {} to {} UTC",
            tell::when(f),
            tell::when(l)
        )),
        _ => m.push_str("no events"),
    }
    if !r.filters.is_empty() {
        m.push_str(&format!(" · filters: {}", esc(&r.filters.join(" "))));
    }
    m.push_str(&format!(" · incident gap {} ms\n\n", r.gap_ms));

    let hl = &r.headline;
    m.push_str("## Headline\n\n");
    m.push_str(&format!(
        "- **{} removal requests** in {} incident(s), by {} process(es), for {} object(s).\n",
        hl.events, hl.incidents, hl.actors, hl.objects
    ));
    m.push_str(&format!(
        "- Outcome: {} removed, **{} failed**, {} unknown (no reply seen).\n",
        hl.outcomes.removed, hl.outcomes.failed, hl.outcomes.unknown
    ));
    let kv = |map: &std::collections::BTreeMap<&'static str, u64>| {
        map.iter()
            .map(|(k, n)| format!("{k} {n}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    m.push_str(&format!("- By kind: {}.\n", kv(&hl.by_kind)));
    m.push_str(&format!("- By cause: {}.\n", kv(&hl.by_cause)));
    let restores = !hl.restores.is_empty();
    if restores {
        m.push_str(&format!(
            "- Restores: {} ({} restore event(s)){}.\n",
            tell::restores(&hl.restores),
            hl.restores.events,
            match hl.restores.suspensions {
                0 => String::new(),
                n => format!("; **{n} suspension(s)** (the flap guard stopped restoring)"),
            }
        ));
    }
    if !hl.errors.is_empty() {
        let errs: Vec<String> = hl
            .errors
            .iter()
            .map(|(e, n)| format!("{} ×{n}", esc(e)))
            .collect();
        m.push_str(&format!("- Errors: {}.\n", errs.join(", ")));
    }
    match hl.still_missing {
        None => m.push_str(&format!(
            "- Objects still missing now: {}.\n",
            esc(&hl.still_missing_note)
        )),
        Some(n) => {
            let named: Vec<String> = hl
                .still_missing_objects
                .iter()
                .take(super::html::MISSING_NAMED)
                .map(|&o| esc(&r.objects[o].object))
                .collect();
            let more = hl
                .still_missing_objects
                .len()
                .saturating_sub(super::html::MISSING_NAMED);
            m.push_str(&format!(
                "- Objects still missing now: **{n}**{}{}. Counted: {}.\n",
                if named.is_empty() {
                    String::new()
                } else {
                    format!(": {}", named.join("; "))
                },
                if more > 0 {
                    format!(" and {more} more")
                } else {
                    String::new()
                },
                esc(&hl.still_missing_note)
            ));
        }
    }
    if r.source.skipped_lines > 0 {
        let ex: Vec<String> = r
            .source
            .skipped_examples
            .iter()
            .map(|s| format!("line {}: {}", s.line, esc(&s.reason)))
            .collect();
        m.push_str(&format!(
            "- **{} lines skipped** (not events): {}.\n",
            r.source.skipped_lines,
            ex.join("; ")
        ));
    }

    m.push_str("\n## Timeline\n\n");
    if r.timeline.lanes.is_empty() {
        m.push_str("No removals.\n");
    } else {
        m.push_str("| Program | Requests | Removed | Failed | Unknown |");
        if restores {
            m.push_str(" Restored | Not restored | Suspended |");
        }
        m.push_str(" Busiest moment (UTC) |\n|---|---:|---:|---:|---:|");
        if restores {
            m.push_str("---:|---:|---:|");
        }
        m.push_str("---|\n");
        for lane in &r.timeline.lanes {
            let busiest = lane
                .bins
                .iter()
                .max_by_key(|b| b.outcomes.total())
                .zip(r.timeline.start)
                .map(|(b, start)| {
                    tell::when(crate::event::Timestamp(
                        start.0 + i128::from(b.index) * i128::from(r.timeline.bin_ns),
                    ))
                })
                .unwrap_or_default();
            m.push_str(&format!(
                "| {} | {} | {} | {} | {} |",
                esc(&lane.label),
                lane.outcomes.total(),
                lane.outcomes.removed,
                lane.outcomes.failed,
                lane.outcomes.unknown,
            ));
            if restores {
                m.push_str(&format!(
                    " {} | {} | {} |",
                    lane.restored, lane.not_restored, lane.suspended
                ));
            }
            m.push_str(&format!(" {busiest} |\n"));
        }
    }

    m.push_str("\n## Incidents\n\n");
    if r.incidents.is_empty() {
        m.push_str("No removals in this window.\n");
    }
    for inc in r.incidents.iter().take(MAX_ROWS) {
        m.push_str(&format!(
            "### Incident {} · {} UTC · {} request(s)\n\n{}\n\n",
            inc.id,
            tell::when(inc.start),
            inc.events,
            esc(&inc.summary)
        ));
        for hint in &inc.hints {
            m.push_str(&format!(
                "> **Hint — {}:** {}\n\n",
                esc(hint.culprit),
                esc(hint.advice)
            ));
        }
        for sus in inc.suspensions.iter().take(MAX_ROWS) {
            m.push_str(&format!(
                "> **Restores suspended — {}:** {}\n\n",
                esc(&sus.description),
                esc(sus.detail.as_deref().unwrap_or("the flap guard gave up"))
            ));
        }
        m.push_str("| Kind | Object | Netns | Requests | Outcome |");
        m.push_str(if restores {
            " Restores |\n|---|---|---|---:|---|---|\n"
        } else {
            "\n|---|---|---|---:|---|\n"
        });
        for o in &inc.objects {
            let ns = &r.objects[o.object].netns;
            m.push_str(&format!(
                "| {} | {} | {} | {} | {} |",
                describe::kind_name(o.kind),
                esc(&o.description),
                esc(&super::html::netns_label(ns.name.as_deref(), ns.inode)),
                o.outcomes.total(),
                outcome(&o.outcomes, &o.errors)
            ));
            if restores {
                m.push_str(&format!(" {} |", super::restore_counts(&o.restores)));
            }
            m.push('\n');
        }
        if inc.objects_omitted > 0 {
            m.push_str(&format!(
                "\n{} more object(s) in this incident (raise --max-objects).\n",
                inc.objects_omitted
            ));
        }
        m.push('\n');
    }
    if r.incidents.len() > MAX_ROWS {
        m.push_str(&format!(
            "{} more incidents not shown; narrow with --since/--until or filters, or use --format json.\n\n",
            r.incidents.len() - MAX_ROWS
        ));
    }
    out.write_all(m.as_bytes())?;
    m.clear();

    m.push_str("## Actors, by removal requests\n\n| # | Process | Command line | Requests | Removed | Failed | Unknown | Objects | First – last (UTC) |\n|---:|---|---|---:|---:|---:|---:|---:|---|\n");
    for a in r.actors.iter().take(MAX_ROWS) {
        let cmdline = a.actor.as_ref().map(|a| a.cmdline.as_str()).unwrap_or("");
        m.push_str(&format!(
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} – {} |\n",
            a.id + 1,
            esc(&a.description),
            esc(cmdline),
            a.outcomes.total(),
            a.outcomes.removed,
            a.outcomes.failed,
            a.outcomes.unknown,
            a.objects,
            tell::when(a.first),
            tell::time(a.last)
        ));
    }
    more(r.actors.len(), "actors", &mut m);
    m.push_str("\n## Objects, by removal requests\n\n| Object | Netns | Requests | Outcome |");
    m.push_str(if restores {
        " Restores | Missing now | By | First – last (UTC) |\n|---|---|---:|---|---|---|---|---|\n"
    } else {
        " By | First – last (UTC) |\n|---|---|---:|---|---|---|\n"
    });
    for o in r.objects.iter().take(MAX_ROWS) {
        let by: Vec<String> =
            o.by.iter()
                .take(5)
                .map(|b| {
                    let who = r.actors[b.actor].actor.as_ref().map_or_else(
                        || "kernel".to_string(),
                        |x| describe::comm_pid(&x.comm, x.pid),
                    );
                    format!("{} ×{}", esc(&who), b.count)
                })
                .collect();
        let restore_cells = if restores {
            let missing = match o.still_missing {
                Some(true) => "**yes**",
                Some(false) => "no",
                None => "unknown",
            };
            format!(" {} | {missing} |", super::restore_counts(&o.restores))
        } else {
            String::new()
        };
        m.push_str(&format!(
            "| {} | {} | {} | {} |{restore_cells} {}{} | {} – {} |\n",
            esc(&o.object),
            esc(&super::html::netns_label(
                o.netns.name.as_deref(),
                o.netns.inode
            )),
            o.outcomes.total(),
            tell::outcomes(&o.outcomes),
            by.join(", "),
            if o.by.len() > 5 {
                format!(", and {} more", o.by.len() - 5)
            } else {
                String::new()
            },
            tell::when(o.first),
            tell::time(o.last)
        ));
    }
    more(r.objects.len(), "objects", &mut m);
    m.push_str(&format!(
        "\n---\n{} · report schema {} · generated {} UTC\n",
        esc(&r.generator),
        r.report_schema_version,
        tell::when(r.generated_at)
    ));
    out.write_all(m.as_bytes())
}

fn outcome(o: &Outcomes, errors: &[String]) -> String {
    let mut s = tell::outcomes(o);
    if !errors.is_empty() {
        s.push_str(&format!(" ({})", esc(&errors.join(", "))));
    }
    s
}

fn more(len: usize, what: &str, m: &mut String) {
    if len > MAX_ROWS {
        m.push_str(&format!(
            "\n{} more {what} not shown (the first {MAX_ROWS} by requests); --format json has them all.\n",
            len - MAX_ROWS
        ));
    }
}
