//! Which node an input came from: the `host` its first event names (`docs/events.md`), read
//! before the input itself, so that a node's captures and stores are folded together.

use std::io::{BufRead, BufReader};
use std::ops::ControlFlow;
use std::path::Path;

use serde::Serialize;

use crate::event::{EventRef, Host};
use crate::report::input::{self, Input, InputError};
use crate::store;

/// Lines of a capture read for its host before giving up (a capture's first line names it).
const LINES_FOR_HOST: usize = 1000;

/// What names a node in the report, best first.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum NamedBy {
    /// `host.node`: the Kubernetes node name.
    Node,
    /// `host.name`: the host name.
    Hostname,
    /// `host.machine_id`, when the host had no name.
    MachineId,
    /// No event names its host (captured before routeguard recorded it): the input's path.
    File,
}

/// An input's node.
#[derive(Clone, Debug)]
pub struct Named {
    pub node: String,
    pub named_by: NamedBy,
    pub host: Option<Host>,
    /// Why the name may not tell the whole story (a store naming several hosts).
    pub note: Option<String>,
}

/// The node `input` came from: its first event's host, by the best name it has, else the
/// input's path. Reads as little as it can; fails as reading the input would (missing file, a
/// directory, a store of a newer schema).
pub fn name(input: &Input) -> Result<Named, InputError> {
    let (path, host, hosts) = match input {
        Input::Jsonl(path) => (path, capture_host(path)?, None),
        Input::Store(path) => {
            let (host, hosts) = store_host(path)?;
            (path, host, Some(hosts))
        }
    };
    let mut named = named(host, path);
    if let Some(n @ 2..) = hosts {
        named.note = Some(format!(
            "{} names {n} hosts; all its events are counted as node {}",
            path.display(),
            named.node
        ));
    }
    Ok(named)
}

fn named(host: Option<Host>, path: &Path) -> Named {
    let given = |s: Option<&String>| s.filter(|s| !s.trim().is_empty()).cloned();
    let best = host.as_ref().and_then(|h| {
        given(h.node.as_ref())
            .map(|n| (n, NamedBy::Node))
            .or_else(|| given(Some(&h.name)).map(|n| (n, NamedBy::Hostname)))
            .or_else(|| given(h.machine_id.as_ref()).map(|n| (n, NamedBy::MachineId)))
    });
    match best {
        Some((node, named_by)) => Named {
            node,
            named_by,
            host,
            note: None,
        },
        None => Named {
            node: path.display().to_string(),
            named_by: NamedBy::File,
            host,
            note: Some(format!(
                "no event of {} names its host: the node is named after the file",
                path.display()
            )),
        },
    }
}

fn capture_host(path: &Path) -> Result<Option<Host>, InputError> {
    let io_err = |source| InputError::Io {
        path: path.to_owned(),
        source,
    };
    let mut line = Vec::new();
    let mut reader = BufReader::new(input::open_capture(path)?);
    for _ in 0..LINES_FOR_HOST {
        line.clear();
        if reader.read_until(b'\n', &mut line).map_err(io_err)? == 0 {
            break;
        }
        // Lines that are not events are the report's to count; here they are passed over.
        if let Ok(ev) = serde_json::from_slice::<EventRef>(&line) {
            return Ok(ev.host.map(|h| h.into_owned()));
        }
    }
    Ok(None)
}

/// The first stored event's host, and how many hosts the store names (0 before schema 3).
fn store_host(path: &Path) -> Result<(Option<Host>, usize), InputError> {
    let mut host = None;
    store::scan_json(path, None, None, |_, json| {
        match serde_json::from_slice::<EventRef>(json) {
            Ok(ev) => {
                host = ev.host.map(|h| h.into_owned());
                ControlFlow::Break(())
            }
            Err(_) => ControlFlow::Continue(()),
        }
    })?;
    let mut hosts = 0;
    if let Some(reader) = store::read_facts(path)? {
        reader.hosts(|_, _| hosts += 1)?;
    }
    Ok((host, hosts))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host(name: &str, machine_id: Option<&str>, node: Option<&str>) -> Option<Host> {
        Some(Host {
            name: name.into(),
            machine_id: machine_id.map(Into::into),
            node: node.map(Into::into),
        })
    }

    #[test]
    fn node_name_then_host_name_then_machine_id_then_file() {
        let p = Path::new("/captures/a.jsonl");
        let n = named(host("web-1", Some("ab12"), Some("node-7")), p);
        assert_eq!((n.node.as_str(), n.named_by), ("node-7", NamedBy::Node));
        let n = named(host("web-1", Some("ab12"), None), p);
        assert_eq!((n.node.as_str(), n.named_by), ("web-1", NamedBy::Hostname));
        let n = named(host("", Some("ab12"), Some(" ")), p);
        assert_eq!((n.node.as_str(), n.named_by), ("ab12", NamedBy::MachineId));
        let n = named(None, p);
        assert_eq!(
            (n.node.as_str(), n.named_by),
            ("/captures/a.jsonl", NamedBy::File)
        );
        assert!(n.note.unwrap().contains("names its host"));
    }
}
