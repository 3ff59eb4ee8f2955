//! The machine routeguard runs on, read once at start: every event names it
//! ([`crate::event::set_local_host`]).

use std::env;
use std::fs;
use std::path::Path;

use crate::event::Host;

/// The environment variable a DaemonSet sets to the node's name through the downward API
/// (`valueFrom.fieldRef.fieldPath: spec.nodeName`).
pub const NODE_NAME_ENV: &str = "ROUTEGUARD_NODE_NAME";

/// This machine: host name, `/etc/machine-id`, and the node name from [`NODE_NAME_ENV`].
pub fn local() -> Host {
    Host {
        name: hostname(),
        machine_id: machine_id(Path::new("/etc/machine-id")),
        node: env::var(NODE_NAME_ENV)
            .ok()
            .map(|n| n.trim().to_string())
            .filter(|n| !n.is_empty()),
    }
}

/// The kernel's host name (`uname -n`) of routeguard's UTS namespace: the node's when it runs
/// on the host or with `hostNetwork` (which shares it).
fn hostname() -> String {
    fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_default()
}

/// The machine id: 32 lowercase hex digits (machine-id(5)); anything else (empty before first
/// boot, `uninitialized`) is none.
fn machine_id(path: &Path) -> Option<String> {
    let id = fs::read_to_string(path).ok()?;
    let id = id.trim();
    (id.len() == 32
        && id
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)))
    .then(|| id.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::attribution::test_dir::TestDir;

    #[test]
    fn machine_id_is_32_hex_digits_or_none() {
        let dir = TestDir::new("machine-id");
        let path = dir.path().join("machine-id");
        for (text, want) in [
            (
                "5f1d2c3b4a5968778695a4b3c2d1e0f9\n",
                Some("5f1d2c3b4a5968778695a4b3c2d1e0f9"),
            ),
            ("uninitialized\n", None),
            ("", None),
            ("5F1D2C3B4A5968778695A4B3C2D1E0F9\n", None),
        ] {
            fs::write(&path, text).unwrap();
            assert_eq!(machine_id(&path).as_deref(), want, "{text:?}");
        }
        assert_eq!(machine_id(&dir.path().join("absent")), None);
    }

    #[test]
    fn local_names_this_machine() {
        let host = local();
        assert!(!host.name.is_empty());
        assert!(!host.name.contains('\n'));
    }
}
