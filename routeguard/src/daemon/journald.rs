//! journald's native protocol: one datagram per event to `/run/systemd/journal/socket`, with
//! structured fields (`journalctl ROUTEGUARD_ACTOR_COMM=ip -o verbose`).
//!
//! Protocol: <https://systemd.io/JOURNAL_NATIVE_PROTOCOL/>. A field is `NAME=value\n`, or, when
//! the value holds a newline, `NAME\n` + its length as u64 little-endian + the bytes + `\n`.
//! Process-supplied strings (comm, cmdline, unit) always take the length-prefixed form, so no
//! byte of theirs can start a field of its own.

use std::{
    io,
    os::unix::net::UnixDatagram,
    path::{Path, PathBuf},
};

use super::sinks::{Alert, AlertType};
use crate::{
    event::{Event, Outcome},
    sink,
    store::label,
};

pub const SOCKET: &str = "/run/systemd/journal/socket";

/// `LOG_NOTICE`: a removal is normal but significant; `LOG_WARNING` when the kernel refused it
/// (someone tried and failed, which is worth a look too).
const PRIORITY_REMOVED: &str = "5";
const PRIORITY_FAILED: &str = "4";

pub struct Journald {
    socket: UnixDatagram,
    path: PathBuf,
}

impl Journald {
    /// Connects to the journal; `Ok(None)` when there is no journal socket on this host.
    pub fn connect(path: &Path) -> io::Result<Option<Self>> {
        if !path.exists() {
            return Ok(None);
        }
        let socket = UnixDatagram::unbound()?;
        // A slow journal must not stall the capture: a full socket buffer drops the entry (and
        // the caller counts it).
        socket.set_nonblocking(true)?;
        Ok(Some(Self {
            socket,
            path: path.to_owned(),
        }))
    }

    /// Sends one datagram made by [`entry`] or [`alert_entry`].
    pub fn send_bytes(&self, datagram: &[u8]) -> io::Result<()> {
        self.socket.send_to(datagram, &self.path).map(|_| ())
    }
}

/// `LOG_ERR` for a sink that failed, `LOG_WARNING` for a store moved aside, `LOG_NOTICE` for a
/// sink that writes again.
fn alert_priority(event: AlertType) -> &'static str {
    match event {
        AlertType::SinkFailed => "3",
        AlertType::StoreReplaced => "4",
        AlertType::SinkRecovered => "5",
    }
}

/// The datagram for one alert (`journalctl ROUTEGUARD_EVENT_TYPE=sink-failed`).
pub fn alert_entry(alert: &Alert) -> Vec<u8> {
    let mut out = Vec::with_capacity(512);
    field(&mut out, "MESSAGE", &alert.message());
    field(&mut out, "PRIORITY", alert_priority(alert.event));
    field(&mut out, "SYSLOG_IDENTIFIER", "routeguard");
    field(&mut out, "ROUTEGUARD_EVENT_TYPE", &label(&alert.event));
    field(&mut out, "ROUTEGUARD_SINK", alert.sink);
    if let Some(path) = &alert.path {
        field(&mut out, "ROUTEGUARD_PATH", path);
    }
    if let Some(error) = &alert.error {
        field(&mut out, "ROUTEGUARD_ERROR", error);
    }
    field(&mut out, "ROUTEGUARD_MISSED", &alert.missed.to_string());
    if let Some(to) = &alert.moved_to {
        field(&mut out, "ROUTEGUARD_MOVED_TO", to);
    }
    field(&mut out, "ROUTEGUARD_EVENT", &alert.to_line());
    out
}

/// The datagram for a `suppressed` summary.
pub fn suppressed_entry(s: &crate::event::Suppressed) -> Vec<u8> {
    let mut out = Vec::with_capacity(512);
    field(&mut out, "MESSAGE", &s.message());
    field(&mut out, "PRIORITY", PRIORITY_FAILED);
    field(&mut out, "SYSLOG_IDENTIFIER", "routeguard");
    field(&mut out, "ROUTEGUARD_EVENT_TYPE", crate::event::SUPPRESSED);
    field(&mut out, "ROUTEGUARD_NETNS", &s.netns.inode.to_string());
    field(&mut out, "ROUTEGUARD_CGROUP_ID", &s.cgroup_id.to_string());
    field(&mut out, "ROUTEGUARD_UID", &s.uid.to_string());
    field(&mut out, "ROUTEGUARD_COUNT", &s.count.to_string());
    field(&mut out, "ROUTEGUARD_EVENT", &s.to_line());
    out
}

/// The datagram for one event.
pub fn entry(ev: &Event) -> Vec<u8> {
    let mut out = Vec::with_capacity(1024);
    let json = sink::json::to_line(ev);
    let priority = if ev.outcome == Outcome::Failed {
        PRIORITY_FAILED
    } else {
        PRIORITY_REMOVED
    };
    // MESSAGE is the terminal line: escaped, one line, readable in `journalctl`.
    field(&mut out, "MESSAGE", &sink::terminal::format_line(ev));
    field(&mut out, "PRIORITY", priority);
    field(&mut out, "SYSLOG_IDENTIFIER", "routeguard");
    field(&mut out, "ROUTEGUARD_KIND", &label(&ev.kind()));
    field(&mut out, "ROUTEGUARD_CAUSE", &label(&ev.cause));
    field(&mut out, "ROUTEGUARD_OUTCOME", &label(&ev.outcome));
    field(&mut out, "ROUTEGUARD_EVENT_TYPE", &label(&ev.event));
    if let Some(r) = &ev.restore {
        field(&mut out, "ROUTEGUARD_RESTORE_OUTCOME", &label(&r.outcome));
        field(&mut out, "ROUTEGUARD_RESTORE_POLICY", &r.policy);
        if let Some(us) = r.latency_us {
            field(&mut out, "ROUTEGUARD_RESTORE_LATENCY_US", &us.to_string());
        }
    }
    if let Some(error) = &ev.error {
        field(&mut out, "ROUTEGUARD_ERROR", error);
    }
    field(
        &mut out,
        "ROUTEGUARD_NETNS_INODE",
        &ev.netns.inode.to_string(),
    );
    if let Some(name) = &ev.netns.name {
        field(&mut out, "ROUTEGUARD_NETNS", name);
    }
    if let Some(a) = &ev.actor {
        field(&mut out, "ROUTEGUARD_ACTOR_PID", &a.pid.to_string());
        field(&mut out, "ROUTEGUARD_ACTOR_COMM", &a.comm);
        field(&mut out, "ROUTEGUARD_ACTOR_CMDLINE", &a.cmdline);
        if let Some(unit) = &a.unit {
            field(&mut out, "ROUTEGUARD_ACTOR_UNIT", unit);
        }
        if let Some(container) = &a.container {
            field(&mut out, "ROUTEGUARD_ACTOR_CONTAINER", container);
        }
        if let Some(pod) = &a.pod {
            field(&mut out, "ROUTEGUARD_ACTOR_POD_UID", &pod.uid);
            for (name, value) in [
                ("ROUTEGUARD_ACTOR_POD_NAMESPACE", &pod.namespace),
                ("ROUTEGUARD_ACTOR_POD", &pod.name),
                ("ROUTEGUARD_ACTOR_POD_CONTAINER", &pod.container),
            ] {
                if let Some(value) = value {
                    field(&mut out, name, value);
                }
            }
        }
    }
    if let Some(node) = ev.host.as_ref().and_then(|h| h.node.as_ref()) {
        field(&mut out, "ROUTEGUARD_NODE", node);
    }
    if let Some(table) = ev.object.table() {
        field(&mut out, "ROUTEGUARD_TABLE", &table.to_string());
    }
    field(&mut out, "ROUTEGUARD_EVENT", &json);
    out
}

fn field(out: &mut Vec<u8>, name: &str, value: &str) {
    out.extend_from_slice(name.as_bytes());
    // Only our own ASCII values go in the simple form; anything else is length-prefixed.
    let simple = value.bytes().all(|b| b.is_ascii_graphic() || b == b' ')
        && !name.ends_with("_CMDLINE")
        && !name.ends_with("_COMM");
    if simple {
        out.push(b'=');
        out.extend_from_slice(value.as_bytes());
    } else {
        out.push(b'\n');
        out.extend_from_slice(&(value.len() as u64).to_le_bytes());
        out.extend_from_slice(value.as_bytes());
    }
    out.push(b'\n');
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::fixtures::{route_event, rule_event};
    use std::collections::HashMap;

    /// Parses a native-protocol datagram back into fields, as journald does.
    fn parse(mut data: &[u8]) -> HashMap<String, String> {
        let mut fields = HashMap::new();
        while !data.is_empty() {
            let nl = data.iter().position(|&b| b == b'\n').unwrap();
            let line = &data[..nl];
            if let Some(eq) = line.iter().position(|&b| b == b'=') {
                fields.insert(
                    String::from_utf8(line[..eq].to_vec()).unwrap(),
                    String::from_utf8(line[eq + 1..].to_vec()).unwrap(),
                );
                data = &data[nl + 1..];
            } else {
                let name = String::from_utf8(line.to_vec()).unwrap();
                let len = u64::from_le_bytes(data[nl + 1..nl + 9].try_into().unwrap()) as usize;
                let value = &data[nl + 9..nl + 9 + len];
                assert_eq!(data[nl + 9 + len], b'\n');
                fields.insert(name, String::from_utf8(value.to_vec()).unwrap());
                data = &data[nl + 10 + len..];
            }
        }
        fields
    }

    #[test]
    fn route_event_fields() {
        let ev = route_event();
        let f = parse(&entry(&ev));
        assert_eq!(f["PRIORITY"], "5");
        assert_eq!(f["SYSLOG_IDENTIFIER"], "routeguard");
        assert_eq!(f["ROUTEGUARD_KIND"], "route");
        assert_eq!(f["ROUTEGUARD_CAUSE"], "request");
        assert_eq!(f["ROUTEGUARD_OUTCOME"], "removed");
        assert_eq!(f["ROUTEGUARD_ACTOR_PID"], "12345");
        assert_eq!(f["ROUTEGUARD_ACTOR_COMM"], "ip");
        assert_eq!(f["ROUTEGUARD_ACTOR_UNIT"], "demo.service");
        assert_eq!(f["ROUTEGUARD_TABLE"], "77");
        assert_eq!(f["ROUTEGUARD_NETNS"], "blue");
        assert_eq!(f["ROUTEGUARD_NETNS_INODE"], "4026532456");
        assert_eq!(f["MESSAGE"], sink::terminal::format_line(&ev));
        assert_eq!(f["ROUTEGUARD_EVENT"], sink::json::to_line(&ev));
        assert_eq!(f["ROUTEGUARD_EVENT_TYPE"], "removal");
        assert_eq!(f["ROUTEGUARD_NODE"], "ip-10-0-3-7.ec2.internal");
        assert!(!f.contains_key("ROUTEGUARD_ACTOR_POD"));
        assert!(!f.contains_key("ROUTEGUARD_RESTORE_OUTCOME"));
        assert!(!f.contains_key("ROUTEGUARD_ACTOR_CONTAINER"));
    }

    #[test]
    fn pod_fields() {
        let f = parse(&entry(&crate::event::fixtures::full_event()));
        assert_eq!(f["ROUTEGUARD_ACTOR_POD_NAMESPACE"], "kube-system");
        assert_eq!(f["ROUTEGUARD_ACTOR_POD"], "calico-node-x7k2");
        assert_eq!(
            f["ROUTEGUARD_ACTOR_POD_UID"],
            "0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0"
        );
        assert_eq!(f["ROUTEGUARD_ACTOR_POD_CONTAINER"], "calico-node");
    }

    #[test]
    fn hostile_strings_cannot_forge_fields() {
        let mut ev = rule_event();
        let actor = std::sync::Arc::make_mut(ev.actor.as_mut().unwrap());
        actor.comm = "x\nPRIORITY=0".into();
        actor.cmdline = "evil\nROUTEGUARD_KIND=nothing".into();
        ev.outcome = Outcome::Failed;
        let f = parse(&entry(&ev));
        assert_eq!(f["ROUTEGUARD_ACTOR_COMM"], "x\nPRIORITY=0");
        assert_eq!(f["PRIORITY"], "4");
        assert_eq!(f["ROUTEGUARD_KIND"], "rule");
        assert!(!f["MESSAGE"].contains('\n'));
    }

    #[test]
    fn alert_fields() {
        let alert = Alert::failed(
            "store",
            Some(Path::new("/var/lib/routeguard/events.db")),
            "disk I/O error",
            7,
            std::time::Duration::from_secs(1),
        );
        let f = parse(&alert_entry(&alert));
        assert_eq!(f["PRIORITY"], "3");
        assert_eq!(f["ROUTEGUARD_EVENT_TYPE"], "sink-failed");
        assert_eq!(f["ROUTEGUARD_SINK"], "store");
        assert_eq!(f["ROUTEGUARD_PATH"], "/var/lib/routeguard/events.db");
        assert_eq!(f["ROUTEGUARD_ERROR"], "disk I/O error");
        assert_eq!(f["ROUTEGUARD_MISSED"], "7");
        assert_eq!(f["ROUTEGUARD_EVENT"], alert.to_line());
        assert_eq!(f["MESSAGE"], alert.message());
    }

    #[test]
    fn absent_socket_is_not_an_error() {
        assert!(Journald::connect(Path::new("/nonexistent/journal/socket"))
            .unwrap()
            .is_none());
    }
}
