//! The capabilities tracing needs, each named.

use super::{Check, Facts, Finding};
use crate::kernel::requirements::{effective_caps, missing_caps};

pub struct Capabilities;

/// (name, number, what routeguard uses it for).
const CAPS: &[(&str, u32, &str)] = &[
    ("CAP_BPF", 39, "load programs and create maps"),
    (
        "CAP_PERFMON",
        38,
        "attach tracing programs and read kernel memory",
    ),
    (
        "CAP_NET_ADMIN",
        12,
        "dump routes of every namespace, read other processes' sockets",
    ),
    (
        "CAP_SYS_ADMIN",
        21,
        "enter other network namespaces; stands in for CAP_BPF/CAP_PERFMON before 5.8",
    ),
];

impl Check for Capabilities {
    fn section(&self) -> &'static str {
        "privileges"
    }

    fn run(&self, _: &Facts) -> Vec<Finding> {
        let caps = effective_caps();
        let missing = missing_caps(caps);
        let fix = "run routeguard as root (`sudo routeguard …`) or grant the capability \
                   (systemd: AmbientCapabilities=; a binary: setcap)";
        CAPS.iter()
            .map(|&(name, bit, why)| {
                if caps & (1 << bit) != 0 {
                    Finding::ok(name, format!("held ({why})"))
                } else if missing.contains(&name) {
                    Finding::fail(name, format!("missing: needed to {why}"), fix)
                } else {
                    Finding::warn(
                        name,
                        format!("missing (others cover tracing): used to {why}"),
                        fix,
                    )
                }
            })
            .collect()
    }
}
