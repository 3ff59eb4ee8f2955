//! `routeguard doctor`: can routeguard trace here, which capture path would it use, and what
//! does that path see? Each check gives [`Finding`]s (ok / warn / fail, with the fix for what is
//! missing); a `fail` means tracing cannot work.
//!
//! Checks are a list ([`checks`]): another concern adds its own by appending a [`Check`] there.
//! Probing the kernel costs a few program loads, so checks share [`Facts`], probed once.

mod capture;
mod conflicts;
mod coverage;
mod policy;
mod privileges;
pub mod render;
mod system;

use std::cell::OnceCell;

use serde::Serialize;

pub use coverage::{Coverage, Seen};
pub use policy::AllowLists;

use crate::capture::{
    probe::Support,
    select::{self, CapturePath, Mode, Selection, Unavailable},
};

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Ok,
    Warn,
    Fail,
}

/// One thing checked.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Finding {
    pub status: Status,
    /// What was checked, e.g. `CAP_BPF` or `fentry/fexit`.
    pub what: String,
    /// What was found, with the values.
    pub detail: String,
    /// What to do about it (warn and fail only).
    pub fix: Option<String>,
}

impl Finding {
    pub fn ok(what: impl Into<String>, detail: impl Into<String>) -> Self {
        Self {
            status: Status::Ok,
            what: what.into(),
            detail: detail.into(),
            fix: None,
        }
    }

    pub fn warn(
        what: impl Into<String>,
        detail: impl Into<String>,
        fix: impl Into<String>,
    ) -> Self {
        Self {
            status: Status::Warn,
            fix: Some(fix.into()),
            ..Self::ok(what, detail)
        }
    }

    pub fn fail(
        what: impl Into<String>,
        detail: impl Into<String>,
        fix: impl Into<String>,
    ) -> Self {
        Self {
            status: Status::Fail,
            ..Self::warn(what, detail, fix)
        }
    }
}

/// What the checks share: the capture mode asked for, and the kernel probes, run at most once.
pub struct Facts {
    pub mode: Mode,
    support: OnceCell<Support>,
    selection: OnceCell<Result<Selection, Unavailable>>,
}

impl Facts {
    pub fn new(mode: Mode) -> Self {
        Self {
            mode,
            support: OnceCell::new(),
            selection: OnceCell::new(),
        }
    }

    /// Which program types load (loads a trivial program of each type the first time).
    pub fn support(&self) -> &Support {
        self.support.get_or_init(Support::probe)
    }

    /// The capture path `trace` would choose with the same `--capture`.
    pub fn selection(&self) -> &Result<Selection, Unavailable> {
        self.selection
            .get_or_init(|| select::select(self.mode, self.support()))
    }
}

/// One check: its section heading and what it finds.
pub trait Check {
    fn section(&self) -> &'static str;
    fn run(&self, facts: &Facts) -> Vec<Finding>;
}

/// Every check, in the order they are shown.
pub fn checks() -> Vec<Box<dyn Check>> {
    vec![
        Box::new(system::Kernel),
        Box::new(system::Btf),
        Box::new(system::Mounts),
        Box::new(privileges::Capabilities),
        Box::new(capture::ProgramTypes),
        Box::new(capture::Path),
        // Other programs that remove routes and rules (systemd-networkd's ManageForeign*,
        // NetworkManager, netplan): warnings, never failures.
        Box::new(conflicts::Conflicts),
    ]
}

/// A section of the report: its heading and findings, in check order.
#[derive(Clone, Debug, Serialize)]
pub struct Section {
    pub title: &'static str,
    pub findings: Vec<Finding>,
}

/// Everything doctor found.
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    /// True when tracing can work here (no finding failed): the exit status is 0.
    pub ok: bool,
    /// `uname -r`.
    pub kernel: String,
    /// `auto`, `kernel-function` or `syscall`: what was asked for.
    pub mode: &'static str,
    /// The capture path `trace` would use, if any can run.
    pub capture: Option<&'static str>,
    pub sections: Vec<Section>,
    /// Which removal causes the chosen path sees.
    pub coverage: Vec<Coverage>,
}

pub fn mode_name(mode: Mode) -> &'static str {
    match mode {
        Mode::Auto => "auto",
        Mode::KernelFunction => "kernel-function",
        Mode::Syscall => "syscall",
    }
}

/// Runs `checks` and gathers their findings by section.
pub fn run(mode: Mode, checks: &[Box<dyn Check>]) -> Report {
    let facts = Facts::new(mode);
    let mut sections: Vec<Section> = Vec::new();
    for check in checks {
        let findings = check.run(&facts);
        match sections.last_mut() {
            Some(last) if last.title == check.section() => last.findings.extend(findings),
            _ => sections.push(Section {
                title: check.section(),
                findings,
            }),
        }
    }
    let ok = sections
        .iter()
        .flat_map(|s| &s.findings)
        .all(|f| f.status != Status::Fail);
    let path = facts.selection().as_ref().ok().map(|s| s.path);
    Report {
        ok,
        kernel: system::release(),
        mode: mode_name(mode),
        capture: path.map(CapturePath::name),
        sections,
        coverage: path.map(coverage::table).unwrap_or_default(),
    }
}
