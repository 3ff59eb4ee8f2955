//! A line's top-level members as raw JSON text, found without parsing their values.
//!
//! Most of what a line holds (its actor, its object, its namespace) repeats from line to line,
//! so [`super::memo`] parses each distinct text once and recognises it by its bytes after that.
//! Skimming only finds where each member starts and ends; it checks the line's own punctuation
//! but leaves every value to be checked by whoever reads it. A line it does not understand (a key
//! with escapes, an unknown or repeated key, a missing required key, nesting deeper than a
//! report ever needs) gives `None`, and the caller parses that line in full as before.

/// The members of an event line, in [`crate::event::Event`]'s order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Key {
    SchemaVersion,
    Ts,
    Kind,
    Family,
    Cause,
    Outcome,
    Errno,
    Error,
    Capture,
    Netns,
    Actor,
    Request,
    Route,
    Rule,
    Nexthop,
    Link,
    Address,
    Trigger,
    Replacement,
    Event,
    Restore,
}

const KEYS: usize = Key::Restore as usize + 1;

/// Members without which an event line does not parse (the others default to `null` or, for
/// `event`, a removal).
const REQUIRED: [Key; 7] = [
    Key::SchemaVersion,
    Key::Ts,
    Key::Kind,
    Key::Cause,
    Key::Outcome,
    Key::Capture,
    Key::Netns,
];

/// Deeper nesting than this goes the slow way: serde_json limits the whole line to 128 levels,
/// and a member checked on its own starts one level higher.
const MAX_DEPTH: u32 = 64;

fn key(name: &str) -> Option<Key> {
    Some(match name {
        "schema_version" => Key::SchemaVersion,
        "ts" => Key::Ts,
        "kind" => Key::Kind,
        "family" => Key::Family,
        "cause" => Key::Cause,
        "outcome" => Key::Outcome,
        "errno" => Key::Errno,
        "error" => Key::Error,
        "capture" => Key::Capture,
        "netns" => Key::Netns,
        "actor" => Key::Actor,
        "request" => Key::Request,
        "route" => Key::Route,
        "rule" => Key::Rule,
        "nexthop" => Key::Nexthop,
        "link" => Key::Link,
        "address" => Key::Address,
        "trigger" => Key::Trigger,
        "replacement" => Key::Replacement,
        "event" => Key::Event,
        "restore" => Key::Restore,
        _ => return None,
    })
}

/// Each member's raw value text, if the line has it, and which members repeat their hint.
pub struct Members<'a>([Option<&'a str>; KEYS], u32);

impl<'a> Members<'a> {
    pub fn get(&self, k: Key) -> Option<&'a str> {
        self.0[k as usize]
    }

    /// Whether member `k` is its hint byte for byte (no need to compare it again).
    pub fn repeats_hint(&self, k: Key) -> bool {
        self.1 & (1 << k as u32) != 0
    }
}

fn is_ws(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | b'\r')
}

fn skip_ws(b: &[u8], mut i: usize) -> usize {
    while i < b.len() && is_ws(b[i]) {
        i += 1;
    }
    i
}

/// Bytes of `w` equal to `c` have their high bit set in the result; the lowest set one is
/// exact (higher ones may be false alarms, which only cost a byte-by-byte look).
fn bytes_equal(w: u64, c: u8) -> u64 {
    const LOW: u64 = 0x0101_0101_0101_0101;
    let x = w ^ (LOW * u64::from(c));
    x.wrapping_sub(LOW) & !x & (LOW << 7)
}

/// Bytes of `w` that may open or close a string, object or array (`"`, `{`, `}`, `[`, `]`), as
/// [`bytes_equal`] marks them. Setting bit 5 folds `[` onto `{` and `]` onto `}`, and no other
/// byte onto either.
fn structural(w: u64) -> u64 {
    const LOW: u64 = 0x0101_0101_0101_0101;
    let folded = w | (LOW * 0x20);
    bytes_equal(w, b'"') | bytes_equal(folded, b'{') | bytes_equal(folded, b'}')
}

/// The index just past the closing quote of the string opening at `i`, and whether the string
/// holds an escape. Eight bytes at a time: strings are most of a line.
fn skip_string(b: &[u8], i: usize) -> Option<(usize, bool)> {
    let mut j = i + 1;
    let mut escaped = false;
    loop {
        if let Some(word) = b.get(j..j + 8) {
            let w = u64::from_le_bytes(word.try_into().ok()?);
            let hits = bytes_equal(w, b'"') | bytes_equal(w, b'\\');
            if hits == 0 {
                j += 8;
                continue;
            }
            j += (hits.trailing_zeros() / 8) as usize;
        }
        match *b.get(j)? {
            b'"' => return Some((j + 1, escaped)),
            b'\\' => {
                escaped = true;
                j += 2;
            }
            _ => j += 1,
        }
    }
}

/// The index just past the value starting at `i`, if the value is well formed (when it is not,
/// any index: the reader of the value finds out).
fn skip_value(b: &[u8], mut i: usize) -> Option<usize> {
    match *b.get(i)? {
        b'"' => skip_string(b, i).map(|(end, _)| end),
        b'{' | b'[' => {
            let mut depth = 0u32;
            loop {
                // Eight bytes at a time up to the next that may matter: numbers, `null`s and
                // punctuation between the strings are skipped as they were one by one.
                if let Some(word) = b.get(i..i + 8) {
                    let hits = structural(u64::from_le_bytes(word.try_into().ok()?));
                    if hits == 0 {
                        i += 8;
                        continue;
                    }
                    i += (hits.trailing_zeros() / 8) as usize;
                }
                match *b.get(i)? {
                    b'"' => i = skip_string(b, i)?.0,
                    b'{' | b'[' => {
                        depth += 1;
                        if depth > MAX_DEPTH {
                            return None;
                        }
                        i += 1;
                    }
                    b'}' | b']' => {
                        depth -= 1;
                        i += 1;
                        if depth == 0 {
                            return Some(i);
                        }
                    }
                    _ => i += 1,
                }
            }
        }
        _ => {
            while i < b.len() && !matches!(b[i], b',' | b'}' | b']') && !is_ws(b[i]) {
                i += 1;
            }
            Some(i)
        }
    }
}

/// Where a member's value ends if it repeats `hint` (the same member's text on an earlier line):
/// no need to look at each byte then. A value that is not complete JSON there fails whoever
/// reads it, so a wrong guess cannot pass.
fn repeated(b: &[u8], i: usize, hint: &str) -> Option<usize> {
    let end = i + hint.len();
    let same = !hint.is_empty() && b.get(i..end)? == hint.as_bytes();
    (same && matches!(b.get(skip_ws(b, end)), Some(b',' | b'}'))).then_some(end)
}

/// The members of `line`, one JSON object (surrounding whitespace allowed), or `None` when the
/// line must be parsed in full. `hint` gives a member's text on an earlier line, if any.
pub fn members<'h>(line: &str, hint: impl Fn(Key) -> Option<&'h str>) -> Option<Members<'_>> {
    let b = line.as_bytes();
    let mut m = Members([None; KEYS], 0);
    let mut i = skip_ws(b, 0);
    if b.get(i) != Some(&b'{') {
        return None;
    }
    i = skip_ws(b, i + 1);
    if b.get(i) == Some(&b'}') {
        return None;
    }
    loop {
        if b.get(i) != Some(&b'"') {
            return None;
        }
        let (end, escaped) = skip_string(b, i)?;
        if escaped {
            return None;
        }
        let k = key(&line[i + 1..end - 1])?;
        if m.0[k as usize].is_some() {
            return None;
        }
        i = skip_ws(b, end);
        if b.get(i) != Some(&b':') {
            return None;
        }
        i = skip_ws(b, i + 1);
        let end = match hint(k).and_then(|h| repeated(b, i, h)) {
            Some(end) => {
                m.1 |= 1 << k as u32;
                end
            }
            None => skip_value(b, i)?,
        };
        if end == i {
            return None;
        }
        m.0[k as usize] = Some(&line[i..end]);
        i = skip_ws(b, end);
        match b.get(i) {
            Some(b',') => i = skip_ws(b, i + 1),
            Some(b'}') => break,
            _ => return None,
        }
    }
    if skip_ws(b, i + 1) != b.len() {
        return None;
    }
    REQUIRED.iter().all(|&k| m.get(k).is_some()).then_some(m)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_members_and_refuses_what_it_cannot_vouch_for() {
        let m = members(
            " {\"ts\" : \"x\\\"}\", \"netns\":{\"a\":[1,{\"b\":\"}\"}]},\"kind\":1,\"schema_version\":2,\
             \"cause\":null,\"outcome\":true,\"capture\":-1.5e3}\n",
            |_| None,
        )
        .unwrap();
        assert_eq!(m.get(Key::Ts), Some("\"x\\\"}\""));
        assert_eq!(m.get(Key::Netns), Some("{\"a\":[1,{\"b\":\"}\"}]}"));
        assert_eq!(m.get(Key::Capture), Some("-1.5e3"));
        assert_eq!(m.get(Key::Actor), None);
        // Long strings go eight bytes at a time; a quote or escape anywhere in the word counts.
        for at in 0..20 {
            let text = format!("\"{}\\\"{}\"", "a".repeat(at), "b".repeat(19 - at));
            let line = format!(
                "{{\"ts\":{text},\"kind\":0,\"schema_version\":0,\"cause\":0,\"outcome\":0,\
                 \"capture\":0,\"netns\":0}}"
            );
            assert_eq!(
                members(&line, |_| None).unwrap().get(Key::Ts),
                Some(text.as_str())
            );
        }
        // Nested values go eight bytes at a time too; a bracket anywhere in the word counts.
        for at in 0..20 {
            let text = format!(
                "{{\"a\":[{}{{\"b\":\"}}]\"}},[[]],{}],\"c\":null}}",
                "1,".repeat(at),
                "0".repeat(19 - at)
            );
            let line = format!(
                "{{\"ts\":0,\"kind\":0,\"schema_version\":0,\"cause\":0,\"outcome\":0,\
                 \"capture\":0,\"netns\":{text}}}"
            );
            assert_eq!(
                members(&line, |_| None).unwrap().get(Key::Netns),
                Some(text.as_str())
            );
        }
        for bad in [
            "",
            "[]",
            "{}",
            "{\"ts\":1,\"ts\":2}",
            "{\"t\\u0073\":1}",
            "{\"unknown\":1}",
            "{\"ts\":1}",
            "{\"ts\":1,}",
            "{\"ts\" 1}",
            "{\"ts\":}",
            "{\"ts\":\"1}",
            "{\"ts\":{\"a\":1}",
            "{\"ts\":\"0123456789abcdef\\\"",
        ] {
            assert!(members(bad, |_| None).is_none(), "{bad}");
        }
        // A hint only counts where the whole value repeats it.
        let line = "{\"ts\":12,\"kind\":0,\"schema_version\":0,\"cause\":0,\"outcome\":0,\
                    \"capture\":0,\"netns\":{\"a\":1}}";
        for hint in ["1", "12", "{\"a\":1}", "{\"a\":"] {
            let m = members(line, |_| Some(hint)).unwrap();
            assert_eq!(m.get(Key::Ts), Some("12"), "{hint}");
            assert_eq!(m.get(Key::Netns), Some("{\"a\":1}"), "{hint}");
            assert_eq!(m.repeats_hint(Key::Netns), hint == "{\"a\":1}", "{hint}");
            assert_eq!(m.repeats_hint(Key::Ts), hint == "12", "{hint}");
        }
        let deep = format!(
            "{{\"ts\":{}{}}}",
            "[".repeat(MAX_DEPTH as usize + 1),
            "]".repeat(MAX_DEPTH as usize + 1)
        );
        assert!(members(&deep, |_| None).is_none());
    }
}
