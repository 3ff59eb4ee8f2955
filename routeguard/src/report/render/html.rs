//! `--format html`: one self-contained page. No script, no external resource (a
//! Content-Security-Policy forbids both), styles inline, print styles included.

use std::io::{self, Write};

use super::{html_escape as esc, svg, MAX_ROWS};
use crate::report::describe;
use crate::report::model::{Outcomes, Report};

/// Still-missing objects named in the headline; the objects table marks them all.
pub const MISSING_NAMED: usize = 10;
/// Suspensions shown per incident; JSON lists them all.
const SUSPENSIONS_SHOWN: usize = 20;
use crate::report::tell;

pub(super) const STYLE: &str = "
body{font:14px/1.45 system-ui,-apple-system,'Segoe UI',sans-serif;margin:2em auto;max-width:1040px;color:#1a202c;padding:0 1em}
h1{font-size:1.6em;margin-bottom:.2em}h2{border-bottom:1px solid #ccc;padding-bottom:.2em;margin-top:1.6em}
.meta{color:#555}.num{text-align:right;font-variant-numeric:tabular-nums}
table{border-collapse:collapse;width:100%;margin:.6em 0}th,td{border:1px solid #ddd;padding:3px 6px;vertical-align:top;text-align:left}
th{background:#f4f6f8}td.obj,td.who{font-family:ui-monospace,monospace;font-size:12.5px;word-break:break-all}
.incident{border-left:4px solid #2b6cb0;padding:.2em 1em;margin:1em 0;background:#fafbfc}
.incident.failed{border-left-color:#c53030}.hint{background:#fffbea;border:1px solid #f0d96b;padding:.5em .8em;margin:.5em 0}
.suspended{background:#fff4e5;border:1px solid #f6ad55;padding:.5em .8em;margin:.5em 0}.missing{color:#c53030;font-weight:600}
.failed-count{color:#c53030;font-weight:600}.note{color:#555;font-style:italic}
ul.headline li{margin:.15em 0}svg.timeline{max-width:100%;height:auto;font-family:system-ui,sans-serif}
@media print{body{margin:0;max-width:none;font-size:11px}.incident,tr,svg{break-inside:avoid}h2{break-after:avoid}a{color:inherit;text-decoration:none}}
";

pub fn write(r: &Report, out: &mut dyn Write) -> io::Result<()> {
    let mut h = String::with_capacity(64 * 1024);
    h.push_str("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">");
    h.push_str("<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; style-src 'unsafe-inline'\">");
    h.push_str("<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">");
    h.push_str(&format!(
        "<title>routeguard report: {} removal requests</title><style>{STYLE}</style></head><body>\n",
        r.headline.events
    ));
    h.push_str("<header><h1>Route, rule and nexthop removals</h1>");
    h.push_str(&format!("<p class=\"meta\">{}</p></header>\n", meta(r)));
    headline(r, &mut h);
    out.write_all(h.as_bytes())?;
    h.clear();

    h.push_str("<section id=\"timeline\"><h2>Timeline</h2>");
    if r.timeline.lanes.is_empty() {
        h.push_str("<p class=\"note\">No removals to draw.</p>");
    } else {
        h.push_str(&svg::timeline(&r.timeline));
    }
    h.push_str("</section>\n");
    incidents(r, &mut h);
    out.write_all(h.as_bytes())?;
    h.clear();
    actors(r, &mut h);
    objects(r, &mut h);
    h.push_str(&format!(
        "<footer class=\"meta\"><p>{} · report schema {} · generated {} UTC</p></footer></body></html>\n",
        esc(&r.generator),
        r.report_schema_version,
        tell::when(r.generated_at)
    ));
    out.write_all(h.as_bytes())
}

fn meta(r: &Report) -> String {
    let mut parts = vec![format!(
        "Source: {} <code>{}</code>",
        r.source.kind,
        esc(&r.source.path)
    )];
    match (r.window.first_event, r.window.last_event) {
        (Some(f), Some(l)) => parts.push(format!(
            "events from {} to {} UTC",
            tell::when(f),
            tell::when(l)
        )),
        _ => parts.push("no events".into()),
    }
    if let Some(s) = r.window.since {
        parts.push(format!("since {} UTC", tell::when(s)));
    }
    if let Some(u) = r.window.until {
        parts.push(format!("until {} UTC", tell::when(u)));
    }
    if !r.filters.is_empty() {
        parts.push(format!(
            "filters: <code>{}</code>",
            esc(&r.filters.join(" "))
        ));
    }
    parts.push(format!("incident gap {} ms", r.gap_ms));
    parts.join(" · ")
}

fn headline(r: &Report, h: &mut String) {
    let hl = &r.headline;
    h.push_str("<section id=\"headline\"><h2>Headline</h2><ul class=\"headline\">");
    h.push_str(&format!(
        "<li><strong>{} removal requests</strong> in {} incident(s), by {} process(es), for {} object(s).</li>",
        hl.events, hl.incidents, hl.actors, hl.objects
    ));
    h.push_str(&format!(
        "<li>Outcome: {} removed, <span class=\"{}\">{} failed</span>, {} unknown (no reply seen).</li>",
        hl.outcomes.removed,
        if hl.outcomes.failed > 0 { "failed-count" } else { "" },
        hl.outcomes.failed,
        hl.outcomes.unknown
    ));
    h.push_str(&format!("<li>By kind: {}.</li>", counts(&hl.by_kind)));
    h.push_str(&format!("<li>By cause: {}.</li>", counts(&hl.by_cause)));
    if !hl.restores.is_empty() {
        h.push_str(&format!(
            "<li>Restores: {} ({} restore event(s)){}.</li>",
            esc(&tell::restores(&hl.restores)),
            hl.restores.events,
            match hl.restores.suspensions {
                0 => String::new(),
                n => format!("; <span class=\"failed-count\">{n} suspension(s)</span> (the flap guard stopped restoring)"),
            }
        ));
    }
    if !hl.errors.is_empty() {
        let errs: Vec<String> = hl
            .errors
            .iter()
            .map(|(e, n)| format!("{} ×{n}", esc(e)))
            .collect();
        h.push_str(&format!("<li>Errors: {}.</li>", errs.join(", ")));
    }
    match hl.still_missing {
        None => h.push_str(&format!(
            "<li>Objects still missing now: {}.</li>",
            esc(&hl.still_missing_note)
        )),
        Some(n) => {
            let named: Vec<String> = hl
                .still_missing_objects
                .iter()
                .take(MISSING_NAMED)
                .map(|&o| format!("<code>{}</code>", esc(&r.objects[o].object)))
                .collect();
            let more = hl.still_missing_objects.len().saturating_sub(MISSING_NAMED);
            h.push_str(&format!(
                "<li>Objects still missing now: <span class=\"{}\">{n}</span>{}{}. <span class=\"note\">Counted: {}.</span></li>",
                if n > 0 { "missing" } else { "" },
                if named.is_empty() { String::new() } else { format!(": {}", named.join(", ")) },
                if more > 0 { format!(" and {more} more") } else { String::new() },
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
        h.push_str(&format!(
            "<li class=\"failed-count\">{} lines skipped (not events): {}.</li>",
            r.source.skipped_lines,
            ex.join("; ")
        ));
    }
    h.push_str("</ul></section>\n");
}

fn counts(m: &std::collections::BTreeMap<&'static str, u64>) -> String {
    if m.is_empty() {
        return "none".into();
    }
    m.iter()
        .map(|(k, n)| format!("{k} {n}"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn incidents(r: &Report, h: &mut String) {
    h.push_str("<section id=\"incidents\"><h2>Incidents</h2>");
    if r.incidents.is_empty() {
        h.push_str("<p class=\"note\">No removals in this window.</p>");
    }
    for inc in r.incidents.iter().take(MAX_ROWS) {
        let class = if inc.outcomes.failed > 0 {
            "incident failed"
        } else {
            "incident"
        };
        h.push_str(&format!(
            "<article class=\"{class}\" id=\"incident-{}\"><h3>Incident {} · {} UTC · {} request(s)</h3>",
            inc.id,
            inc.id,
            tell::when(inc.start),
            inc.events
        ));
        h.push_str(&format!("<p class=\"summary\">{}</p>", esc(&inc.summary)));
        for hint in &inc.hints {
            h.push_str(&format!(
                "<div class=\"hint\"><strong>Hint — {}:</strong> {}</div>",
                esc(hint.culprit),
                esc(hint.advice)
            ));
        }
        for sus in inc.suspensions.iter().take(SUSPENSIONS_SHOWN) {
            h.push_str(&format!(
                "<div class=\"suspended\"><strong>Restores suspended — <code>{}</code>:</strong> {}</div>",
                esc(&sus.description),
                esc(sus.detail.as_deref().unwrap_or("the flap guard gave up"))
            ));
        }
        let restores = !r.headline.restores.is_empty();
        h.push_str("<table><thead><tr><th>Kind</th><th>Object</th><th>Netns</th><th class=\"num\">Requests</th><th>Outcome</th>");
        if restores {
            h.push_str("<th>Restores</th>");
        }
        h.push_str("</tr></thead><tbody>");
        for o in &inc.objects {
            let netns = &r.objects[o.object].netns;
            h.push_str(&format!(
                "<tr><td>{}</td><td class=\"obj\">{}</td><td>{}</td><td class=\"num\">{}</td><td>{}</td>",
                describe::kind_name(o.kind),
                esc(&o.description),
                esc(&netns_label(netns.name.as_deref(), netns.inode)),
                o.outcomes.total(),
                outcome_cell(&o.outcomes, &o.errors)
            ));
            if restores {
                h.push_str(&format!(
                    "<td>{}</td>",
                    esc(&super::restore_counts(&o.restores))
                ));
            }
            h.push_str("</tr>");
        }
        h.push_str("</tbody></table>");
        if inc.objects_omitted > 0 {
            h.push_str(&format!(
                "<p class=\"note\">{} more object(s) in this incident; `--format json` lists {} per incident, raise it with --max-objects.</p>",
                inc.objects_omitted,
                inc.objects.len()
            ));
        }
        h.push_str("</article>\n");
    }
    if r.incidents.len() > MAX_ROWS {
        h.push_str(&format!(
            "<p class=\"note\">{} more incidents not shown; use --since/--until or filters, or --format json.</p>",
            r.incidents.len() - MAX_ROWS
        ));
    }
    h.push_str("</section>\n");
}

pub fn netns_label(name: Option<&str>, inode: u32) -> String {
    match name {
        Some(n) => format!("{n} ({inode})"),
        None => inode.to_string(),
    }
}

fn outcome_cell(o: &Outcomes, errors: &[String]) -> String {
    let mut s = esc(&tell::outcomes(o));
    if !errors.is_empty() {
        s.push_str(&format!(
            " <span class=\"failed-count\">{}</span>",
            esc(&errors.join(", "))
        ));
    }
    s
}

fn actors(r: &Report, h: &mut String) {
    h.push_str("<section id=\"actors\"><h2>Actors, by removal requests</h2><table><thead><tr><th>#</th><th>Process</th><th>Command line</th><th class=\"num\">Requests</th><th class=\"num\">Removed</th><th class=\"num\">Failed</th><th class=\"num\">Unknown</th><th class=\"num\">Objects</th><th>First – last (UTC)</th></tr></thead><tbody>");
    for a in r.actors.iter().take(MAX_ROWS) {
        let cmdline = a.actor.as_ref().map(|a| a.cmdline.as_str()).unwrap_or("");
        h.push_str(&format!(
            "<tr><td class=\"num\">{}</td><td class=\"who\">{}</td><td class=\"who\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td>{} – {}</td></tr>",
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
    h.push_str("</tbody></table>");
    more(r.actors.len(), "actors", h);
    h.push_str("</section>\n");
}

fn objects(r: &Report, h: &mut String) {
    let restores = !r.headline.restores.is_empty();
    h.push_str("<section id=\"objects\"><h2>Objects, by removal requests</h2><table><thead><tr><th>Object</th><th>Netns</th><th class=\"num\">Requests</th><th>Outcome</th>");
    if restores {
        h.push_str("<th>Restores</th><th>Missing now</th>");
    }
    h.push_str("<th>By</th><th>First – last (UTC)</th></tr></thead><tbody>");
    for o in r.objects.iter().take(MAX_ROWS) {
        let by: Vec<String> =
            o.by.iter()
                .take(5)
                .map(|b| {
                    let a = &r.actors[b.actor];
                    let who = a.actor.as_ref().map_or_else(
                        || "kernel".to_string(),
                        |x| describe::comm_pid(&x.comm, x.pid),
                    );
                    format!("{} ×{}", esc(&who), b.count)
                })
                .collect();
        let more = if o.by.len() > 5 {
            format!(", and {} more", o.by.len() - 5)
        } else {
            String::new()
        };
        let restore_cells = if restores {
            let missing = match o.still_missing {
                Some(true) => "<span class=\"missing\">yes</span>",
                Some(false) => "no",
                None => "unknown",
            };
            format!(
                "<td>{}</td><td>{missing}</td>",
                esc(&super::restore_counts(&o.restores))
            )
        } else {
            String::new()
        };
        h.push_str(&format!(
            "<tr><td class=\"obj\">{}</td><td>{}</td><td class=\"num\">{}</td><td>{}</td>{restore_cells}<td class=\"who\">{}{more}</td><td>{} – {}</td></tr>",
            esc(&o.object),
            esc(&netns_label(o.netns.name.as_deref(), o.netns.inode)),
            o.outcomes.total(),
            esc(&tell::outcomes(&o.outcomes)),
            by.join(", "),
            tell::when(o.first),
            tell::time(o.last)
        ));
    }
    h.push_str("</tbody></table>");
    more(r.objects.len(), "objects", h);
    h.push_str("</section>\n");
}

fn more(len: usize, what: &str, h: &mut String) {
    if len > MAX_ROWS {
        h.push_str(&format!(
            "<p class=\"note\">{} more {what} not shown (the first {MAX_ROWS} by requests); --format json has them all.</p>",
            len - MAX_ROWS
        ));
    }
}
