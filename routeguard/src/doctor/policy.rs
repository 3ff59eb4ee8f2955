//! The protect policy's allow-lists: an entry that allows by `comm` alone lets any process that
//! calls itself that name remove what is protected (`prctl(PR_SET_NAME)`, or a renamed copy).

use std::path::PathBuf;

use super::{Check, Facts, Finding};
use crate::daemon::Config;

/// Reads the config at `path` (the daemon's, unless `doctor --config` names another).
pub struct AllowLists {
    pub path: PathBuf,
    /// The file was named on the command line: its absence is worth a warning.
    pub explicit: bool,
}

impl Check for AllowLists {
    fn section(&self) -> &'static str {
        "Protect policy"
    }

    fn run(&self, _: &Facts) -> Vec<Finding> {
        let shown = self.path.display();
        let config = match Config::load(&self.path, !self.explicit) {
            Ok(config) => config,
            Err(e) => {
                return vec![Finding::warn(
                    "config",
                    e.to_string(),
                    "fix the file; `routeguard daemon` refuses it too",
                )]
            }
        };
        if config.protect.is_empty() {
            return vec![Finding::ok(
                "allow-lists",
                format!("{shown}: nothing protected"),
            )];
        }
        let mut findings = Vec::new();
        for entry in &config.protect {
            let allow = &entry.allow;
            if allow.comm_only() {
                findings.push(Finding::warn(
                    format!("allow ({})", entry.label()),
                    format!(
                        "{shown}: allowed by comm only ({}): any process can take that name",
                        allow.comm.join(", ")
                    ),
                    "name the program by `allow.exe` (its file: device and inode) or \
                     `allow.cgroup`/`allow.unit` (set by root), see docs/restore.md",
                ));
            } else {
                findings.push(Finding::ok(
                    format!("allow ({})", entry.label()),
                    format!(
                        "{} exe, {} cgroup, {} unit, {} container, {} comm",
                        allow.exe.len(),
                        allow.cgroup.len(),
                        allow.unit.len(),
                        allow.container.len(),
                        allow.comm.len()
                    ),
                ));
            }
        }
        findings
    }
}
