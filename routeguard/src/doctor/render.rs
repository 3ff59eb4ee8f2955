//! doctor's output: aligned text for people, one JSON object for scripts.

use std::fmt::Write as _;

use super::{Report, Seen, Status};

pub fn json(report: &Report) -> String {
    serde_json::to_string_pretty(report).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"))
}

pub fn text(report: &Report) -> String {
    let mut out = String::new();
    let width = report
        .sections
        .iter()
        .flat_map(|s| &s.findings)
        .map(|f| f.what.len())
        .max()
        .unwrap_or(0);
    for section in &report.sections {
        let _ = writeln!(out, "{}", section.title);
        for f in &section.findings {
            let status = match f.status {
                Status::Ok => "ok  ",
                Status::Warn => "WARN",
                Status::Fail => "FAIL",
            };
            let _ = writeln!(out, "  {status}  {:width$}  {}", f.what, f.detail);
            if let Some(fix) = &f.fix {
                let _ = writeln!(out, "        {:width$}  fix: {fix}", "");
            }
        }
    }
    if let Some(path) = report.capture {
        let _ = writeln!(out, "\nwhat the {path} path sees");
        let width = report
            .coverage
            .iter()
            .map(|c| c.cause.len())
            .max()
            .unwrap_or(0);
        for row in &report.coverage {
            let seen = match row.seen {
                Seen::Yes => "yes",
                Seen::No => "no ",
            };
            let _ = writeln!(out, "  {:width$}  {seen}  {}", row.cause, row.how);
        }
    }
    let (warns, fails) =
        report
            .sections
            .iter()
            .flat_map(|s| &s.findings)
            .fold((0, 0), |(w, f), x| match x.status {
                Status::Warn => (w + 1, f),
                Status::Fail => (w, f + 1),
                Status::Ok => (w, f),
            });
    let verdict = match report.capture {
        Some(path) if report.ok => format!("tracing can work here (capture={path})"),
        _ => "tracing cannot work here".to_string(),
    };
    let _ = writeln!(out, "\n{verdict}: {fails} failed, {warns} warnings");
    out
}
