//! The timeline picture: one row per program, a mark per bin of removals (one event per mark
//! unless they crowd a pixel), failed removals drawn as red diamonds above the row's line,
//! removed as blue bars, unknown as grey bars; routeguard's restores of that program's removals
//! as green triangles under the line (hollow when the object did not come back) and the flap
//! guard's suspensions as orange stop bars across the row; a time axis with gridlines and a
//! legend that draws its symbols. Plain inline SVG, no script.

use std::fmt::Write as _;

use super::html_escape as esc;
use crate::event::Timestamp;
use crate::report::model::{Outcomes, Timeline};
use crate::report::tell;

const WIDTH: f64 = 1000.0;
const LABEL_W: f64 = 230.0;
const RIGHT_PAD: f64 = 20.0;
const TOP: f64 = 10.0;
const ROW_H: f64 = 40.0;
const AXIS_H: f64 = 58.0;
/// Marks narrower than this vanish at a glance (a 2 px bar reads as a rendering glitch).
const MIN_BAR_W: f64 = 6.0;
const BLUE: &str = "#2b6cb0";
const GREY: &str = "#8a8a8a";
const RED: &str = "#c53030";
const GREEN: &str = "#2f855a";
const ORANGE: &str = "#dd6b20";
/// The second legend line, for restore marks.
const LEGEND2_H: f64 = 22.0;
/// Five labels: millisecond labels (`17:05:11.584`) stay apart even at the anchored ends.
const TICKS: u64 = 4;

/// The timeline as an `<svg>` element (empty string when there is nothing to draw).
pub fn timeline(t: &Timeline) -> String {
    let (Some(start), Some(end)) = (t.start, t.end) else {
        return String::new();
    };
    let plot_w = WIDTH - LABEL_W - RIGHT_PAD;
    let span = (end.0 - start.0).max(1) as f64;
    let restores = t
        .lanes
        .iter()
        .any(|l| l.restored + l.not_restored + l.suspended > 0);
    let height =
        TOP + ROW_H * t.lanes.len() as f64 + AXIS_H + if restores { LEGEND2_H } else { 0.0 };
    let mut s = String::with_capacity(4096);
    let _ = write!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" class="timeline" viewBox="0 0 {WIDTH} {height}" width="{WIDTH}" height="{height}" role="img" aria-labelledby="tl-title"><title id="tl-title">Removals over time, one row per program{}, from {} to {} UTC</title>"#,
        if restores {
            ", with routeguard's restores and suspensions"
        } else {
            ""
        },
        tell::when(start),
        tell::when(end)
    );
    let x = |offset_ns: f64| LABEL_W + offset_ns / span * plot_w;
    let bar_w = (plot_w * t.bin_ns as f64 / span).clamp(MIN_BAR_W, 14.0);
    let ay = TOP + ROW_H * t.lanes.len() as f64 + 4.0;
    // Tick gridlines first, under the marks, so a mark can be read against the axis.
    for i in 0..=TICKS {
        let tx = x(span * i as f64 / TICKS as f64);
        let _ = write!(
            s,
            r##"<line x1="{tx:.1}" x2="{tx:.1}" y1="{TOP}" y2="{ay}" stroke="#eceff3"/>"##
        );
    }
    for (row, lane) in t.lanes.iter().enumerate() {
        let y = TOP + ROW_H * row as f64;
        let mid = y + ROW_H / 2.0;
        // Alternate row shading carries the eye from the label to the marks.
        let shade = if row % 2 == 0 { "#f4f6f8" } else { "none" };
        let total = lane.outcomes.removed + lane.outcomes.unknown + lane.outcomes.failed;
        let _ = write!(
            s,
            r##"<g class="lane"><rect x="0" y="{y}" width="{}" height="{ROW_H}" fill="{shade}"/><line x1="{LABEL_W}" x2="{}" y1="{mid}" y2="{mid}" stroke="#c8ced6"/><text x="{}" y="{}" text-anchor="end" font-size="14" fill="#1a202c">{} <tspan fill="#555">×{total}</tspan></text>"##,
            WIDTH - RIGHT_PAD,
            WIDTH - RIGHT_PAD,
            LABEL_W - 10.0,
            mid + 5.0,
            esc(&clip(&lane.label, 26))
        );
        let _ = write!(
            s,
            "<title>{}: {}</title>",
            esc(&lane.label),
            counts(
                &lane.outcomes,
                lane.restored,
                lane.not_restored,
                lane.suspended
            )
        );
        for bin in &lane.bins {
            let off = bin.index as f64 * t.bin_ns as f64;
            let bx = x(off.min(span));
            let when = tell::when(Timestamp(start.0 + (bin.index as i128) * t.bin_ns as i128));
            let what = counts(&bin.outcomes, bin.restored, bin.not_restored, bin.suspended);
            let ok = bin.outcomes.removed + bin.outcomes.unknown;
            if ok > 0 {
                let h = bar_height(ok);
                let fill = if bin.outcomes.removed > 0 { BLUE } else { GREY };
                let _ = write!(
                    s,
                    r##"<rect class="mark" x="{:.1}" y="{:.1}" width="{bar_w:.1}" height="{h:.1}" fill="{fill}"><title>{when}: {}</title></rect>"##,
                    bx - bar_w / 2.0,
                    mid - h / 2.0,
                    what
                );
            }
            if bin.outcomes.failed > 0 {
                let r = 6.0;
                let cy = y + 7.0;
                let _ = write!(
                    s,
                    r##"<path class="mark failed" d="M{bx:.1} {:.1} L{:.1} {cy:.1} L{bx:.1} {:.1} L{:.1} {cy:.1} Z" fill="{RED}"><title>{when}: {}</title></path>"##,
                    cy - r,
                    bx + r,
                    cy + r,
                    bx - r,
                    what
                );
            }
            if bin.suspended > 0 {
                // Drawn first among the restore marks so the triangle stays visible on top.
                let _ = write!(
                    s,
                    r##"<rect class="mark suspended" x="{:.1}" y="{:.1}" width="3" height="{:.1}" fill="{ORANGE}"><title>{when}: {what}</title></rect>"##,
                    bx - 1.5,
                    y + 2.0,
                    ROW_H - 4.0
                );
            }
            if bin.restored + bin.not_restored > 0 {
                let cy = y + ROW_H - 7.0;
                let paint = if bin.restored > 0 {
                    format!(r#"fill="{GREEN}""#)
                } else {
                    format!(r#"fill="white" stroke="{GREEN}" stroke-width="1.5""#)
                };
                let _ = write!(
                    s,
                    r##"<path class="mark restore" d="M{bx:.1} {:.1} L{:.1} {:.1} L{:.1} {:.1} Z" {paint}><title>{when}: {what}</title></path>"##,
                    cy - 5.0,
                    bx + 5.0,
                    cy + 4.0,
                    bx - 5.0,
                    cy + 4.0,
                );
            }
        }
        s.push_str("</g>");
    }
    // Axis.
    let _ = write!(
        s,
        r##"<g class="axis" font-size="13" fill="#1a202c"><line x1="{LABEL_W}" x2="{}" y1="{ay}" y2="{ay}" stroke="#333"/>"##,
        WIDTH - RIGHT_PAD
    );
    for i in 0..=TICKS {
        let off = span * i as f64 / TICKS as f64;
        let tx = x(off);
        let ts = Timestamp(start.0 + off as i128);
        let label = if end.0 - start.0 >= 10_000_000_000 {
            tell::time(ts)[..8].to_string()
        } else {
            tell::time(ts)
        };
        let anchor = match i {
            0 => "start",
            TICKS => "end",
            _ => "middle",
        };
        let _ = write!(
            s,
            r##"<line x1="{tx:.1}" x2="{tx:.1}" y1="{ay}" y2="{}" stroke="#333"/><text x="{tx:.1}" y="{}" text-anchor="{anchor}">{label}</text>"##,
            ay + 6.0,
            ay + 21.0
        );
    }
    // The legend draws its symbols, so it reads without knowing colour names.
    let ly = ay + 44.0;
    let sy = ly - 12.0;
    let (b, g, f) = (LABEL_W + 150.0, LABEL_W + 240.0, LABEL_W + 432.0);
    let _ = write!(
        s,
        r##"<g class="legend" font-size="13" fill="#444"><text x="{LABEL_W}" y="{ly}">UTC, {day}</text><rect x="{b}" y="{sy}" width="{MIN_BAR_W}" height="14" fill="{BLUE}"/><text x="{bt}" y="{ly}">removed</text><rect x="{g}" y="{sy}" width="{MIN_BAR_W}" height="14" fill="{GREY}"/><text x="{gt}" y="{ly}">unknown (no reply seen)</text><path d="M{f} {sy} l6 6 l-6 6 l-6 -6 Z" fill="{RED}"/><text x="{ft}" y="{ly}">failed</text></g>"##,
        day = &tell::when(start)[..10],
        bt = b + 12.0,
        gt = g + 12.0,
        ft = f + 12.0,
    );
    if restores {
        let ly2 = ly + LEGEND2_H;
        let (r, n, u) = (LABEL_W + 150.0, LABEL_W + 262.0, LABEL_W + 500.0);
        let _ = write!(
            s,
            r##"<g class="legend restores" font-size="13" fill="#444"><path d="M{r} {a} l5 9 l-10 0 Z" fill="{GREEN}"/><text x="{rt}" y="{ly2}">restored</text><path d="M{n} {a} l5 9 l-10 0 Z" fill="white" stroke="{GREEN}" stroke-width="1.5"/><text x="{nt}" y="{ly2}">not restored (failed, dry run)</text><rect x="{u}" y="{sy2}" width="3" height="14" fill="{ORANGE}"/><text x="{ut}" y="{ly2}">restores suspended</text></g>"##,
            a = ly2 - 11.0,
            sy2 = ly2 - 12.0,
            rt = r + 10.0,
            nt = n + 10.0,
            ut = u + 10.0,
        );
    }
    s.push_str("</g></svg>");
    s
}

fn bar_height(n: u64) -> f64 {
    (16.0 + 4.0 * (n as f64).log2()).min(ROW_H - 8.0)
}

/// A mark's tooltip: its removals, then restores and suspensions when there are any.
fn counts(o: &Outcomes, restored: u64, not_restored: u64, suspended: u64) -> String {
    let mut s = if o.total() > 0 {
        tell::outcomes(o)
    } else {
        "no removals".into()
    };
    for (n, what) in [
        (restored, "restored"),
        (not_restored, "not restored"),
        (suspended, "restores suspended"),
    ] {
        if n > 0 {
            let _ = write!(s, "; {n} {what}");
        }
    }
    s
}

/// At most `max` characters, with `…` when cut.
fn clip(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        s.to_string()
    } else {
        let mut c: String = s.chars().take(max - 1).collect();
        c.push('…');
        c
    }
}
