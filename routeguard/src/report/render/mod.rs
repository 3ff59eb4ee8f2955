//! Drawing a [`Report`]: HTML (one self-contained file with an inline SVG timeline), Markdown
//! (GitHub-flavoured, tables only, no raw HTML) and JSON (`docs/report.md`).
//!
//! Every string that came from a process (comm, exe, cmdline, unit, device names) reaches the
//! output through [`html`] or [`md`] escaping, or through serde for JSON. Both escapers first
//! make terminal control characters visible (`\x1b`), so a pasted report cannot hide text.

mod fleet;
mod html;
mod json;
mod md;
mod svg;

use std::io::{self, Write};

use super::Report;
use crate::sink::escape::escape as visible;

/// Rows shown per table in HTML and Markdown; JSON has them all.
pub const MAX_ROWS: usize = 200;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Html,
    Markdown,
    Json,
}

/// Writes a fleet report (several inputs) to `out` in `format`.
pub use fleet::write as write_fleet;

/// Writes `report` to `out` in `format`.
pub fn write(report: &Report, format: Format, out: &mut dyn Write) -> io::Result<()> {
    match format {
        Format::Html => html::write(report, out),
        Format::Markdown => md::write(report, out),
        Format::Json => json::write(report, out),
    }
}

/// A restores-by-outcome map in words: `restored ×2, suspended ×1`, or `none`.
pub fn restore_counts(m: &std::collections::BTreeMap<&'static str, u64>) -> String {
    if m.is_empty() {
        return "none".into();
    }
    m.iter()
        .map(|(k, n)| format!("{k} ×{n}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Text for HTML element content and attribute values (also inside inline SVG).
pub fn html_escape(s: &str) -> String {
    let s = visible(s);
    let mut out = String::with_capacity(s.len() + 16);
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// Text for Markdown (paragraphs and table cells): every character GitHub-flavoured Markdown
/// could read as markup, a table cell boundary, an HTML tag or an entity is backslash-escaped.
pub fn md_escape(s: &str) -> String {
    let s = visible(s);
    let mut out = String::with_capacity(s.len() + 16);
    for c in s.chars() {
        if matches!(
            c,
            '\\' | '`'
                | '*'
                | '_'
                | '['
                | ']'
                | '<'
                | '>'
                | '|'
                | '~'
                | '&'
                | '#'
                | '!'
                | '('
                | ')'
        ) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn html_escapes_markup_and_shows_controls() {
        assert_eq!(
            html_escape("<script>a&b\"c'</svg>\x1b[2J"),
            "&lt;script&gt;a&amp;b&quot;c&#39;&lt;/svg&gt;\\x1b[2J"
        );
    }

    #[test]
    fn md_escapes_markup_pipes_and_controls() {
        assert_eq!(md_escape("a|b"), "a\\|b");
        assert_eq!(
            md_escape("`x` *y* _z_ [l](u)"),
            "\\`x\\` \\*y\\* \\_z\\_ \\[l\\]\\(u\\)"
        );
        assert_eq!(md_escape("<script>"), "\\<script\\>");
        assert_eq!(md_escape("\x1b[31m\n"), "\\\\x1b\\[31m\\\\x0a");
        assert!(!md_escape("a\r\nb|c").contains(['\n', '\r']));
    }
}
