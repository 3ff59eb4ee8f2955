//! Untrusted strings (comm, cmdline, exe, unit, device names) made safe to print.
//!
//! A process chooses its comm and argv: printed raw, `\x1b]0;...` retitles the operator's
//! terminal, `\x1b[2K\r` rewrites the line above, a `\n` forges a whole event. So every
//! character that a terminal acts on is shown as a visible escape instead, and the backslash
//! itself is escaped so the result reads back unambiguously.

use std::borrow::Cow;
use std::fmt::Write as _;

/// Whether `c` must not reach a terminal raw: C0 controls (incl. ESC, `\r`, `\n`, `\t`), DEL,
/// C1 controls (U+0080–U+009F; U+009B is a one-character CSI for some terminals), and the
/// invisible characters that reorder or hide text (bidi overrides, as in "Trojan Source",
/// zero-width characters, line/paragraph separators, BOM).
pub fn is_unsafe(c: char) -> bool {
    matches!(c,
        '\0'..='\x1f' | '\x7f'..='\u{9f}'
        | '\u{200b}'..='\u{200f}'
        | '\u{2028}'..='\u{202e}'
        | '\u{2060}'..='\u{2069}'
        | '\u{feff}')
}

/// `s` with every unsafe character written as `\xNN` (below U+0100) or `\u{NNNN}`, and `\` as
/// `\\`. Borrowed when nothing needed escaping.
pub fn escape(s: &str) -> Cow<'_, str> {
    if !s.chars().any(|c| c == '\\' || is_unsafe(c)) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        if c == '\\' {
            out.push_str("\\\\");
        } else if is_unsafe(c) {
            let code = u32::from(c);
            // Writing to a String cannot fail.
            let _ = if code < 0x100 {
                write!(out, "\\x{code:02x}")
            } else {
                write!(out, "\\u{{{code:04x}}}")
            };
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_text_is_borrowed() {
        assert!(matches!(escape("ip rule del prio 100 ü"), Cow::Borrowed(_)));
        assert_eq!(escape(""), "");
    }

    #[test]
    fn controls_become_visible() {
        assert_eq!(escape("\x1b[31mred\n"), "\\x1b[31mred\\x0a");
        assert_eq!(escape("a\rb\tc\0d\x7f"), "a\\x0db\\x09c\\x00d\\x7f");
        assert_eq!(escape("\u{9b}2J"), "\\x9b2J");
        assert_eq!(escape("\u{85}"), "\\x85");
        assert_eq!(escape("evil\u{202e}gpj.exe"), "evil\\u{202e}gpj.exe");
        assert_eq!(
            escape("a\u{2028}b\u{200b}\u{feff}"),
            "a\\u{2028}b\\u{200b}\\u{feff}"
        );
    }

    #[test]
    fn backslash_is_escaped_so_output_is_unambiguous() {
        assert_eq!(escape("\\x1b"), "\\\\x1b");
        assert_ne!(escape("\\x1b"), escape("\x1b"));
    }

    #[test]
    fn output_never_holds_an_unsafe_char() {
        let all: String = (0u32..0x3000).filter_map(char::from_u32).collect();
        let escaped = escape(&all);
        assert!(!escaped.chars().any(is_unsafe));
        // Printable non-ASCII survives as is.
        assert!(escaped.contains('é'));
    }
}
