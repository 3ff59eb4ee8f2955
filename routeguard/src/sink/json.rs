//! JSON lines: one event per line, the schema documented in `docs/events.md`.
//!
//! serde_json escapes `"`, `\` and C0 controls. A JSON file is also read with `cat` and `less`,
//! so the formatter here additionally writes DEL, C1 controls and invisible/bidi characters as
//! `\uXXXX` (still valid JSON, same decoded string): a raw U+009B is a CSI to some terminals.

use std::{io, sync::Arc};

use serde::Serialize as _;
use serde_json::ser::{CompactFormatter, Formatter};

use crate::event::{Actor, Event};

use super::escape::is_unsafe;

/// The event as one line of JSON, without a trailing newline.
pub fn to_line(ev: &Event) -> String {
    let mut out = Vec::with_capacity(512);
    write_line(ev, &mut out);
    // The formatter only ever writes whole UTF-8 strings, escapes and ASCII.
    String::from_utf8(out).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
}

/// Appends the event as one line of JSON, without a trailing newline, to `out`: what
/// [`to_line`] returns, without a fresh allocation per event (`trace --json` reuses one buffer).
pub fn write_line(ev: &Event, out: &mut Vec<u8>) {
    let start = out.len();
    let mut ser = serde_json::Serializer::with_formatter(&mut *out, SafeFormatter);
    // The event types have no map with non-string keys and no fallible Serialize impl, so an
    // error is not expected; still, a sink never panics and never writes half a line.
    if let Err(e) = ev.serialize(&mut ser) {
        tracing::error!("cannot serialise an event: {e}");
        out.truncate(start);
        let fallback = serde_json::json!({
            "schema_version": ev.schema_version,
            "error": format!("routeguard could not serialise this event: {e}"),
        });
        out.extend_from_slice(fallback.to_string().as_bytes());
    }
}

/// Writes events as [`write_line`] does, remembering the JSON of the last actor: a burst of
/// removals by one process repeats the same actor (a third of each line, with its argv and
/// ancestry), and comparing it costs far less than escaping it again.
#[derive(Default)]
pub struct Lines {
    actor: Option<(Arc<Actor>, Vec<u8>)>,
    /// The event without its actor, reused.
    rest: Vec<u8>,
}

/// How the event's `actor` field reads when it is null. `actor` follows `netns` and no field
/// before it is an object with an `actor` key, and inside a JSON string every `"` is escaped:
/// the first occurrence is the field itself.
const NULL_ACTOR: &[u8] = b",\"actor\":null,";

impl Lines {
    /// Appends `ev` as one line of JSON, without a trailing newline, to `out`: the same bytes as
    /// [`write_line`]. `ev` is borrowed mutably to serialise it without its actor; it is left
    /// as it was.
    pub fn write(&mut self, ev: &mut Event, out: &mut Vec<u8>) {
        let Some(actor) = ev.actor.take() else {
            return write_line(ev, out);
        };
        self.rest.clear();
        write_line(ev, &mut self.rest);
        ev.actor = Some(actor);
        let (Some(at), Some(actor)) = (null_actor(&self.rest), ev.actor.as_ref()) else {
            // Not the usual shape (a serialisation error's stand-in): no shortcut.
            return write_line(ev, out);
        };
        if self
            .actor
            .as_ref()
            .is_none_or(|(cached, _)| !Arc::ptr_eq(cached, actor) && **cached != **actor)
        {
            let mut json = Vec::with_capacity(512);
            let mut ser = serde_json::Serializer::with_formatter(&mut json, SafeFormatter);
            if actor.serialize(&mut ser).is_err() {
                return write_line(ev, out);
            }
            self.actor = Some((Arc::clone(actor), json));
        }
        if let Some((_, json)) = &self.actor {
            // `,"actor":` stays; its `null` becomes the actor.
            let null = at + NULL_ACTOR.len() - 5;
            out.extend_from_slice(&self.rest[..null]);
            out.extend_from_slice(json);
            out.extend_from_slice(&self.rest[null + 4..]);
        }
    }
}

/// Where [`NULL_ACTOR`] starts in `line`.
fn null_actor(line: &[u8]) -> Option<usize> {
    (0..line.len()).find(|&i| line[i] == b',' && line[i..].starts_with(NULL_ACTOR))
}

/// [`CompactFormatter`], but characters a terminal would act on are `\u` escaped.
struct SafeFormatter;

impl Formatter for SafeFormatter {
    fn write_string_fragment<W: ?Sized + io::Write>(
        &mut self,
        writer: &mut W,
        fragment: &str,
    ) -> io::Result<()> {
        // Every unsafe char is DEL or beyond ASCII: most fragments need no walk at all (both
        // checks run a word or a vector at a time).
        if fragment.is_ascii() && !fragment.as_bytes().contains(&0x7f) {
            return CompactFormatter.write_string_fragment(writer, fragment);
        }
        let mut start = 0;
        for (i, c) in fragment.char_indices() {
            if is_unsafe(c) {
                writer.write_all(&fragment.as_bytes()[start..i])?;
                // Every unsafe char is in the Basic Multilingual Plane: one \u escape.
                write!(writer, "\\u{:04x}", u32::from(c))?;
                start = i + c.len_utf8();
            }
        }
        CompactFormatter.write_string_fragment(writer, &fragment[start..])
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use serde_json::Value;

    use super::*;
    use crate::event::fixtures::{full_event, full_object, route_event, rule_event};
    use crate::event::{Capture, Cause, Family, Kind, Op, Outcome, Syscall};

    const DOC: &str = include_str!("../../../docs/events.md");

    /// Field names per object, from the tables of `docs/events.md`: a `### ` heading whose first
    /// backticked word names the object, then rows whose first cell is `` `field` ``.
    fn documented_fields() -> Vec<(String, BTreeSet<String>)> {
        let mut sections: Vec<(String, BTreeSet<String>)> = Vec::new();
        // Rows belong to the object section above them; any other heading ends it.
        let mut in_object = false;
        for line in DOC.lines() {
            if line.starts_with('#') {
                let name = line.strip_prefix("### ").and_then(|h| h.split('`').nth(1));
                in_object = name.is_some();
                if let Some(name) = name {
                    sections.push((name.to_string(), BTreeSet::new()));
                }
            } else if let (true, Some(row), Some((_, fields))) =
                (in_object, line.strip_prefix("| `"), sections.last_mut())
            {
                if let Some(field) = row.split('`').next() {
                    fields.insert(field.to_string());
                }
            }
        }
        sections
    }

    fn keys(v: &Value) -> BTreeSet<String> {
        v.as_object().expect("an object").keys().cloned().collect()
    }

    #[test]
    fn doc_lists_exactly_the_serialised_fields() {
        // An event carries one object: the full event, and the same with each kind's object.
        const OBJECTS: [(&str, Kind); 5] = [
            ("Route", Kind::Route),
            ("Rule", Kind::Rule),
            ("Nexthop", Kind::Nexthop),
            ("Link", Kind::Link),
            ("Address", Kind::Address),
        ];
        let json = |ev: &Event| -> Value { serde_json::from_str(&to_line(ev)).unwrap() };
        let v = json(&full_event());
        let with_object: Vec<(&str, Value)> = OBJECTS
            .iter()
            .map(|&(name, kind)| {
                let ev = Event {
                    object: full_object(kind),
                    ..full_event()
                };
                (name, json(&ev))
            })
            .collect();
        let sections = documented_fields();
        let object = |name: &str| -> &Value {
            match name {
                "Event" => &v,
                "Ancestor" => &v["actor"]["ancestry"][0],
                "Pod" => &v["actor"]["pod"],
                other => match with_object.iter().find(|(n, _)| *n == other) {
                    Some((_, ev)) => &ev[other.to_lowercase()],
                    None => &v[other.to_lowercase()],
                },
            }
        };
        let names: BTreeSet<&str> = sections.iter().map(|(n, _)| n.as_str()).collect();
        let expected = [
            "Event", "Netns", "Actor", "Ancestor", "Pod", "Host", "Request", "Route", "Rule",
            "Nexthop", "Link", "Address", "Trigger", "Restore",
        ];
        assert_eq!(
            names,
            expected.into_iter().collect(),
            "object sections in docs/events.md"
        );
        for (name, fields) in &sections {
            let obj = object(name);
            assert!(obj.is_object(), "{name} is not an object in {v}");
            assert_eq!(
                fields,
                &keys(obj),
                "fields of {name}: docs/events.md vs serde output"
            );
        }
        // Every optional field was filled in: a null here means the fixture missed one. The
        // members of the kinds the event's object is not are null by design.
        let other_kinds = ["rule", "nexthop", "link", "address"];
        for (name, _) in &sections {
            for (field, value) in object(name).as_object().unwrap() {
                assert!(
                    !value.is_null() || name == "Event" && other_kinds.contains(&field.as_str()),
                    "{name}.{field} is null in the full fixture"
                );
            }
        }
        // Each object is under its kind's key, the other four null.
        for (name, ev) in &with_object {
            let key = name.to_lowercase();
            assert_eq!(ev["kind"], Value::String(key.clone()));
            for (_, other) in OBJECTS {
                let other = serde_json::to_value(other).unwrap();
                let other = other.as_str().unwrap();
                assert_eq!(ev[other].is_null(), other != key, "{other} in {ev}");
            }
        }
    }

    #[test]
    fn doc_lists_every_enum_value() {
        let mut values: Vec<Value> = Vec::new();
        for k in [
            Kind::Route,
            Kind::Rule,
            Kind::Nexthop,
            Kind::Link,
            Kind::Address,
        ] {
            values.push(serde_json::to_value(k).unwrap());
        }
        for f in [Family::Inet, Family::Inet6] {
            values.push(serde_json::to_value(f).unwrap());
        }
        for c in [
            Cause::Request,
            Cause::Replace,
            Cause::LinkDown,
            Cause::AddressRemoved,
            Cause::LinkRemoved,
            Cause::Flush,
            Cause::Expired,
            Cause::NetnsExit,
        ] {
            values.push(serde_json::to_value(c).unwrap());
        }
        for o in [
            Outcome::Removed,
            Outcome::Failed,
            Outcome::Unknown,
            Outcome::Denied,
            Outcome::WouldDeny,
        ] {
            values.push(serde_json::to_value(o).unwrap());
        }
        for c in [Capture::Syscall, Capture::KernelFunction, Capture::Netlink] {
            values.push(serde_json::to_value(c).unwrap());
        }
        for op in Op::KNOWN {
            values.push(serde_json::to_value(op).unwrap());
        }
        for syscall in Syscall::KNOWN {
            values.push(serde_json::to_value(syscall).unwrap());
        }
        for v in values {
            let s = v.as_str().unwrap();
            assert!(
                DOC.contains(&format!("`{s}`")),
                "enum value {s} missing from docs/events.md"
            );
        }
    }

    /// The example lines in the doc are what the code writes for the same events.
    #[test]
    fn doc_examples_match_output() {
        use crate::sink::terminal::format_line;
        for line in [
            to_line(&rule_event()),
            to_line(&route_event()),
            format_line(&route_event()),
            format_line(&rule_event()),
        ] {
            assert!(
                DOC.contains(&line),
                "docs/events.md lacks the example line:\n{line}"
            );
        }
    }

    #[test]
    fn one_line_with_schema_version_and_timestamp() {
        let line = to_line(&route_event());
        assert!(!line.contains('\n'));
        let v: Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["schema_version"], 1);
        assert_eq!(v["ts"], "2026-11-27T15:17:41.123456789Z");
        assert_eq!(v["route"]["type"], Value::Null);
        assert!(v["route"].get("route_type").is_none());
        assert_eq!(v["actor"]["pid"], 12345);
        assert_eq!(v["route"]["dst"], "10.1.0.0/24");
    }

    /// [`Lines`] writes what [`to_line`] does, whether the actor is new, repeated, changed or
    /// absent.
    #[test]
    fn lines_match_to_line() {
        let mut hostile = route_event();
        let actor = std::sync::Arc::make_mut(hostile.actor.as_mut().unwrap());
        actor.comm = "\x1b[31mip\n\u{9b}\u{202e}\\\"é,\"actor\":null,".into();
        actor.argv.push("\u{7f}x".into());
        let mut no_actor = rule_event();
        no_actor.actor = None;
        let mut other_pid = route_event();
        std::sync::Arc::make_mut(other_pid.actor.as_mut().unwrap()).pid += 1;
        let events = [
            route_event(),
            route_event(),
            rule_event(),
            full_event(),
            hostile.clone(),
            hostile,
            no_actor,
            other_pid,
            route_event(),
            full_event(),
        ];
        let mut lines = Lines::default();
        let mut out = Vec::new();
        for ev in events {
            let mut written = ev.clone();
            out.clear();
            out.extend_from_slice(b"prefix ");
            lines.write(&mut written, &mut out);
            assert_eq!(written, ev, "the event is left as it was");
            let want = format!("prefix {}", to_line(&ev));
            assert_eq!(String::from_utf8(out.clone()).unwrap(), want);
        }
    }

    #[test]
    fn terminal_controls_are_escaped_and_round_trip() {
        let mut ev = route_event();
        let hostile = "\x1b[31mip\n\r\x7f\u{9b}2J\u{202e}\\\"é";
        std::sync::Arc::make_mut(ev.actor.as_mut().unwrap()).comm = hostile.into();
        let line = to_line(&ev);
        assert!(!line.chars().any(is_unsafe), "{line:?}");
        assert!(
            line.contains(r#""comm":"\u001b[31mip\n\r\u007f\u009b2J\u202e\\\"é""#),
            "{line}"
        );
        let v: Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["actor"]["comm"], hostile);
    }
}
