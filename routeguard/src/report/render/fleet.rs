//! A [`FleetReport`] in every format: per-node summary and cluster incidents. Strings from
//! events (node and host names, programs, actors) go through the format's escaper.

use std::io::{self, Write};

use super::{html_escape, md_escape, Format, MAX_ROWS};
use crate::report::fleet::{ClusterIncident, FleetReport, NodeSummary};
use crate::report::model::Outcomes;
use crate::report::tell;

pub fn write(r: &FleetReport, format: Format, out: &mut dyn Write) -> io::Result<()> {
    match format {
        Format::Json => {
            serde_json::to_writer_pretty(&mut *out, r)?;
            out.write_all(b"\n")
        }
        Format::Markdown => out.write_all(md(r).as_bytes()),
        Format::Html => out.write_all(html(r).as_bytes()),
    }
}

/// `12 events from 3 nodes, 2 cluster incident(s), events from … to … UTC`.
fn meta(r: &FleetReport) -> String {
    let mut s = format!(
        "{} inputs from {} node(s) · {} removal requests",
        r.sources().count(),
        r.nodes.len(),
        r.events()
    );
    match (r.window.first_event, r.window.last_event) {
        (Some(f), Some(l)) => s.push_str(&format!(
            " · events from {} to {} UTC",
            tell::when(f),
            tell::when(l)
        )),
        _ => s.push_str(" · no events"),
    }
    if let Some(t) = r.window.since {
        s.push_str(&format!(" · since {} UTC", tell::when(t)));
    }
    if let Some(t) = r.window.until {
        s.push_str(&format!(" · until {} UTC", tell::when(t)));
    }
    s.push_str(&format!(" · gap {} ms", r.gap_ms));
    s
}

fn outcomes(o: &Outcomes) -> String {
    format!("{} / {} / {}", o.removed, o.failed, o.unknown)
}

fn span(n: &NodeSummary) -> String {
    match (n.counts.first, n.counts.last) {
        (Some(f), Some(l)) => format!("{} – {}", tell::when(f), tell::when(l)),
        _ => "no events".into(),
    }
}

fn restores(n: &NodeSummary) -> String {
    match (n.counts.restores.is_empty(), n.counts.still_missing) {
        (true, _) => "none".into(),
        (false, Some(m)) => format!("{}; {m} still missing", tell::restores(&n.counts.restores)),
        (false, None) => tell::restores(&n.counts.restores),
    }
}

/// Cluster incidents named per node in its row; JSON lists them all.
const CLUSTERS_NAMED: usize = 10;

fn cluster_ids(n: &NodeSummary) -> String {
    let ids = &n.cluster_incidents;
    if ids.is_empty() {
        return "–".into();
    }
    let mut s = ids
        .iter()
        .take(CLUSTERS_NAMED)
        .map(|i| format!("#{i}"))
        .collect::<Vec<_>>()
        .join(" ");
    if ids.len() > CLUSTERS_NAMED {
        s.push_str(&format!(" and {} more", ids.len() - CLUSTERS_NAMED));
    }
    s
}

fn md(r: &FleetReport) -> String {
    let esc = md_escape;
    let mut m = String::with_capacity(16 * 1024);
    m.push_str("# Route, rule and nexthop removals across the fleet\n\n");
    m.push_str(&esc(&meta(r)));
    if !r.filters.is_empty() {
        m.push_str(&format!(" · filters: {}", esc(&r.filters.join(" "))));
    }
    m.push_str("\n\n## Cluster incidents\n\n");
    if r.cluster_incidents.is_empty() {
        m.push_str(
            "None: no program removed the same object, or objects of one table, on two nodes \
             or more within the gap.\n",
        );
    }
    for c in r.cluster_incidents.iter().take(MAX_ROWS) {
        m.push_str(&format!("{}. {}\n", c.id, esc(&c.summary)));
    }
    omitted_md(&mut m, r.cluster_incidents.len());
    m.push_str("\n## Nodes\n\n");
    m.push_str(
        "| Node | Named by | Inputs | Removal requests | Removed / failed / unknown | \
         Incidents | Cluster incidents | Restores | Events | Top actors |\n",
    );
    m.push_str("|---|---|---|---:|---|---:|---|---|---|---|\n");
    for n in r.nodes.iter().take(MAX_ROWS) {
        let inputs: Vec<String> = n
            .sources
            .iter()
            .map(|s| format!("{} {}", s.kind, esc(&s.path)))
            .collect();
        m.push_str(&format!(
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |\n",
            esc(&n.node),
            named_by(n),
            inputs.join("<br>"),
            n.counts.events,
            outcomes(&n.counts.outcomes),
            n.counts.incidents,
            cluster_ids(n),
            esc(&restores(n)),
            span(n),
            top_actors(n, md_escape, "; ")
        ));
    }
    omitted_md(&mut m, r.nodes.len());
    let notes: Vec<&String> = r.nodes.iter().flat_map(|n| &n.notes).collect();
    if !notes.is_empty() {
        m.push_str("\nNotes:\n\n");
        for note in notes {
            m.push_str(&format!("- {}\n", esc(note)));
        }
    }
    m.push_str(&format!(
        "\n---\n{} · report schema {} · generated {} UTC\n",
        esc(&r.generator),
        r.report_schema_version,
        tell::when(r.generated_at)
    ));
    m
}

fn omitted_md(m: &mut String, n: usize) {
    if n > MAX_ROWS {
        m.push_str(&format!(
            "\n{} more not shown here; `--format json` lists them all.\n",
            n - MAX_ROWS
        ));
    }
}

/// The node's top actors, `description ×removals`, escaped for the format and joined.
fn top_actors(n: &NodeSummary, esc: fn(&str) -> String, sep: &str) -> String {
    let each: Vec<String> = n
        .counts
        .top_actors
        .iter()
        .map(|(a, k)| format!("{} ×{k}", esc(a)))
        .collect();
    each.join(sep)
}

fn named_by(n: &NodeSummary) -> &'static str {
    use crate::report::fleet::node::NamedBy;
    match n.named_by {
        NamedBy::Node => "node name",
        NamedBy::Hostname => "host name",
        NamedBy::MachineId => "machine id",
        NamedBy::File => "input file (no host in its events)",
    }
}

fn html(r: &FleetReport) -> String {
    let esc = html_escape;
    let mut h = String::with_capacity(64 * 1024);
    h.push_str("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">");
    h.push_str("<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; style-src 'unsafe-inline'\">");
    h.push_str("<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">");
    h.push_str(&format!(
        "<title>routeguard fleet report: {} nodes, {} cluster incident(s)</title><style>{}</style></head><body>\n",
        r.nodes.len(),
        r.cluster_incidents.len(),
        super::html::STYLE
    ));
    h.push_str("<header><h1>Route, rule and nexthop removals across the fleet</h1>");
    h.push_str(&format!("<p class=\"meta\">{}", esc(&meta(r))));
    if !r.filters.is_empty() {
        h.push_str(&format!(
            " · filters: <code>{}</code>",
            esc(&r.filters.join(" "))
        ));
    }
    h.push_str("</p></header>\n<section id=\"cluster-incidents\"><h2>Cluster incidents</h2>\n");
    if r.cluster_incidents.is_empty() {
        h.push_str(
            "<p class=\"note\">None: no program removed the same object, or objects of one \
             table, on two nodes or more within the gap.</p>\n",
        );
    }
    for c in r.cluster_incidents.iter().take(MAX_ROWS) {
        cluster_html(c, r, &mut h);
    }
    omitted_html(&mut h, r.cluster_incidents.len());
    h.push_str("</section>\n<section id=\"nodes\"><h2>Nodes</h2><table><thead><tr>");
    for th in [
        "Node",
        "Named by",
        "Inputs",
        "Removal requests",
        "Removed / failed / unknown",
        "Incidents",
        "Cluster incidents",
        "Restores",
        "Events",
        "Top actors",
    ] {
        h.push_str(&format!("<th>{th}</th>"));
    }
    h.push_str("</tr></thead><tbody>\n");
    for n in r.nodes.iter().take(MAX_ROWS) {
        let inputs: Vec<String> = n
            .sources
            .iter()
            .map(|s| format!("{} <code>{}</code>", s.kind, esc(&s.path)))
            .collect();
        h.push_str(&format!(
            "<tr id=\"node-{}\"><td class=\"who\">{}</td><td>{}</td><td>{}</td><td class=\"num\">{}</td><td>{}</td><td class=\"num\">{}</td><td>{}</td><td>{}</td><td>{}</td><td class=\"who\">{}</td></tr>\n",
            n.id,
            esc(&n.node),
            named_by(n),
            inputs.join("<br>"),
            n.counts.events,
            outcomes(&n.counts.outcomes),
            n.counts.incidents,
            cluster_ids(n),
            esc(&restores(n)),
            span(n),
            top_actors(n, html_escape, "<br>")
        ));
    }
    h.push_str("</tbody></table>\n");
    omitted_html(&mut h, r.nodes.len());
    let notes: Vec<&String> = r.nodes.iter().flat_map(|n| &n.notes).collect();
    if !notes.is_empty() {
        h.push_str("<ul class=\"note\">");
        for note in notes {
            h.push_str(&format!("<li>{}</li>", esc(note)));
        }
        h.push_str("</ul>\n");
    }
    h.push_str(&format!(
        "</section>\n<footer class=\"meta\"><p>{} · report schema {} · generated {} UTC</p></footer></body></html>\n",
        esc(&r.generator),
        r.report_schema_version,
        tell::when(r.generated_at)
    ));
    h
}

fn cluster_html(c: &ClusterIncident, r: &FleetReport, h: &mut String) {
    let esc = html_escape;
    h.push_str(&format!(
        "<div class=\"incident\" id=\"cluster-{}\"><h3>#{} {} on {} nodes</h3><p>{}</p><p class=\"meta\">Nodes: ",
        c.id,
        c.id,
        esc(&c.program),
        c.nodes.len(),
        esc(&c.summary)
    ));
    let nodes: Vec<String> = c
        .nodes
        .iter()
        .take(MAX_ROWS)
        .map(|&i| format!("<a href=\"#node-{i}\">{}</a>", esc(&r.nodes[i].node)))
        .collect();
    h.push_str(&nodes.join(", "));
    h.push_str("</p></div>\n");
}

fn omitted_html(h: &mut String, n: usize) {
    if n > MAX_ROWS {
        h.push_str(&format!(
            "<p class=\"note\">{} more not shown here; <code>--format json</code> lists them all.</p>\n",
            n - MAX_ROWS
        ));
    }
}
