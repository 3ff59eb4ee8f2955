//! JSON lines of every shape read as the event room reads them: a line that reads as an
//! [`Event`] is reported as that event pushed whole would be, and one that does not is skipped
//! with the reason [`Event`] gives.

use super::restores::jsonl_report;
use super::*;

/// Lines written as the sink writes them, and as others may: other whitespace and order,
/// escapes, members left out or unknown, other values; then lines that are not events.
fn variants() -> Vec<String> {
    let line = crate::sink::json::to_line(&fixtures::route_event());
    let mut other_actor = fixtures::route_event();
    std::sync::Arc::make_mut(other_actor.actor.as_mut().unwrap()).cmdline = "ip r d".into();
    let mut kernel = fixtures::route_event();
    kernel.actor = None;
    let mut lines = vec![
        line.clone(),
        crate::sink::json::to_line(&other_actor),
        crate::sink::json::to_line(&kernel),
        line.replace(",\"kind\":", " ,\t \"kind\" : ")
            .replace("\"ip\"", "\"i\\u0070\""),
        line.replace("\"family\":\"inet\",", "")
            .replace(",\"event\":\"removal\"", ""),
        line.replace("\"actor\":{", "\"actor\":null,\"x\":{"),
        line.replace("/24", "/25")
            .replace("\"name\":\"blue\"", "\"name\":null"),
        line.replace("\"kind\":\"route\"", "\"kind\":\"rule\""),
        line.replace("\"event\":\"removal\"", "\"event\":\"restore\"")
            .replace("\"restore\":null", "\"restore\":{\"policy\":\"p\",\"outcome\":\"restored\",\"latency_us\":5,\"attempt\":1,\"errno\":null,\"error\":null,\"detail\":null,\"hint\":null}"),
        line.replace("\"seq\":1764256661", "\"seq\":4294967295"),
    ];
    // Not events.
    let seq = "\"seq\":1764256661";
    lines.extend(
        [
            (seq, "\"seq\":01"),
            (seq, "\"seq\":4294967296"),
            (seq, "\"seq\":1.5"),
            (seq, "\"seq\":1,\"seq\":2"),
            ("\"kind\":\"route\"", "\"kind\":\"Route\""),
            ("\"uid\":0", "\"uid\":\"0\""),
            ("\"argv\":[\"ip\"", "\"argv\":[7"),
            ("\"table\":77", "\"table\":77,"),
            ("\"capture\":\"syscall\",", ""),
            ("\"ts\":\"2026", "\"ts\":\"x2026"),
            ("\"event\":\"removal\"", "\"event\":\"restore\""),
        ]
        .map(|(from, to)| line.replace(from, to)),
    );
    lines.push(format!("{line} x"));
    lines
}

#[test]
fn lines_of_every_shape_read_as_events_do() {
    // Twice: the second time, every actor and object is one the parser has met.
    let lines: Vec<String> = variants().into_iter().chain(variants()).collect();
    let mut events = Vec::new();
    let mut skipped = Vec::new();
    for (n, line) in lines.iter().enumerate() {
        match serde_json::from_str::<Event>(line) {
            Ok(ev) if ev.event != crate::event::EventType::Removal && ev.restore.is_none() => {
                skipped.push((n as u64 + 1, "a restore event without its".to_string()))
            }
            Ok(ev) => events.push(ev),
            Err(e) => skipped.push((n as u64 + 1, e.to_string())),
        }
    }
    assert_eq!(events.len(), 2 * 10);
    let read = jsonl_report(&(lines.join("\n") + "\n"), "shapes");
    assert_eq!(read.source.events_read, events.len() as u64);
    assert_eq!(read.source.skipped_lines, skipped.len() as u64);
    for (example, (line, reason)) in read.source.skipped_examples.iter().zip(&skipped) {
        assert_eq!(example.line, *line);
        assert!(example.reason.starts_with(reason), "{example:?}: {reason}");
    }
    let content = |r: &Report| {
        let mut v: serde_json::Value = serde_json::from_str(&render_str(r, Format::Json)).unwrap();
        v["source"] = serde_json::Value::Null;
        v
    };
    assert_eq!(content(&read), content(&report_of(events, 5)));
}

/// Many small chunks, handed to the parser threads in turn, fold as one chunk does: the same
/// report, the same skipped lines with the same numbers.
#[test]
fn chunks_fold_in_input_order() {
    let lines: Vec<String> = (0..3).flat_map(|_| variants()).collect();
    let text = lines.join("\n") + "\n";
    let whole = jsonl_report(&text, "chunks");
    // 1, 2 and 3 lines a chunk, in turn.
    let mut chunks = Vec::new();
    let mut rest = &lines[..];
    for n in [1, 2, 3].into_iter().cycle() {
        if rest.is_empty() {
            break;
        }
        let (chunk, after) = rest.split_at(n.min(rest.len()));
        chunks.push((chunk.join("\n") + "\n").into_bytes());
        rest = after;
    }
    let mut chunks = chunks.into_iter();
    let mut c = Collector::new();
    let tally = input::load_lines(|| Ok(chunks.next()), &Query::default(), &mut c).unwrap();
    let path = std::path::Path::new("capture.jsonl");
    let source = tally.source("jsonl", path);
    assert_eq!(source.events_read, whole.source.events_read);
    let read = assemble(
        c,
        source,
        &Query::default(),
        vec![],
        &Options::default(),
        Timestamp(0),
    );
    let json = |r: &Report| {
        let mut v: serde_json::Value = serde_json::from_str(&render_str(r, Format::Json)).unwrap();
        v["source"]["path"] = serde_json::Value::Null;
        v
    };
    assert_eq!(json(&read), json(&whole));

    // A chunk that cannot be read ends the report with its error.
    let mut chunks = vec![Ok(Some(text.clone().into_bytes()))]
        .into_iter()
        .chain([Err(InputError::Io {
            path: path.to_owned(),
            source: std::io::Error::other("gone"),
        })]);
    let failed = input::load_lines(
        || chunks.next().unwrap(),
        &Query::default(),
        &mut Collector::new(),
    );
    assert!(matches!(failed, Err(InputError::Io { .. })));
}

/// An actor and an object are shown as the first line the report keeps records them: not as a
/// skipped line before it does (a newer schema, a restore event without its `restore`).
#[test]
fn a_skipped_line_does_not_record_the_actor_or_the_object() {
    let line = |argv: &str, dev: Option<&str>| {
        let mut ev = fixtures::route_event();
        std::sync::Arc::make_mut(ev.actor.as_mut().unwrap()).argv = vec![argv.into()];
        let route = ev.object.route_mut().unwrap();
        (route.oif, route.dev) = (Some(3), dev.map(String::from));
        crate::sink::json::to_line(&ev)
    };
    let newer = line("newer", Some("rg0")).replace("\"schema_version\":1", "\"schema_version\":99");
    let broken =
        line("broken", Some("rg0")).replace("\"event\":\"removal\"", "\"event\":\"restore\"");
    let text = [newer, broken, line("kept", None)].join("\n") + "\n";
    let r = jsonl_report(&text, "skipped-actor");
    assert_eq!(r.source.skipped_lines, 2);
    assert_eq!(r.actors.len(), 1);
    assert_eq!(r.actors[0].actor.as_ref().unwrap().argv, ["kept"]);
    assert_eq!(
        r.objects[0].object,
        "route table 77 10.1.0.0/24 via 10.0.0.1 oif 3 metric 100"
    );
}
