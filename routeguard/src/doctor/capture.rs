//! Which program types load here and which capture path `trace` would take.

use super::{Check, Facts, Finding};
use crate::capture::{
    probe::ProgramKind,
    select::{CapturePath, Mode, Unavailable, KERNEL_FUNCTIONS},
};

pub struct ProgramTypes;

impl Check for ProgramTypes {
    fn section(&self) -> &'static str {
        "capture"
    }

    fn run(&self, facts: &Facts) -> Vec<Finding> {
        let support = facts.support();
        ProgramKind::ALL
            .iter()
            .map(|&kind| match support.get(kind) {
                Ok(()) => Finding::ok(kind.name(), "loads"),
                Err(refusal) => {
                    let (needed_by, fix) = match kind {
                        ProgramKind::RawTracepoint => (
                            "the syscall path",
                            "run a kernel with CONFIG_BPF_EVENTS (every distro kernel has it)",
                        ),
                        ProgramKind::Tracepoint => (
                            "exec details (the command line as started)",
                            "run a kernel with CONFIG_BPF_EVENTS (every distro kernel has it)",
                        ),
                        ProgramKind::Fentry => (
                            "the kernel-function path",
                            "run a kernel with fentry support (CONFIG_FUNCTION_TRACER, \
                             CONFIG_DYNAMIC_FTRACE_WITH_DIRECT_CALLS; Debian, Ubuntu, RHEL and \
                             Fedora kernels have it); the syscall path works without it",
                        ),
                    };
                    let probe = match kind {
                        ProgramKind::Fentry => " (fentry on bpf_fentry_test1)",
                        _ => "",
                    };
                    let mut detail = format!("refused{probe}: {refusal}");
                    if let Some(note) = refusal.explain() {
                        detail.push_str(&format!("; {note}"));
                    }
                    detail.push_str(&format!(" — needed by {needed_by}"));
                    // Only the syscall path's own program type is indispensable; the path check
                    // below fails when no path can run at all.
                    Finding::warn(kind.name(), detail, fix)
                }
            })
            .collect()
    }
}

pub struct Path;

impl Check for Path {
    fn section(&self) -> &'static str {
        "capture"
    }

    fn run(&self, facts: &Facts) -> Vec<Finding> {
        let mut findings = Vec::new();
        match facts.selection() {
            Ok(selection) => {
                let mut detail = format!(
                    "{} (--capture {})",
                    selection.path,
                    super::mode_name(facts.mode)
                );
                match (&selection.path, &selection.kernel_function) {
                    (CapturePath::Syscall, Err(why)) => {
                        detail.push_str(&format!("; kernel-function unavailable: {why}"));
                    }
                    (CapturePath::Syscall, Ok(())) => {
                        detail.push_str("; kernel-function would load (not chosen)");
                    }
                    (CapturePath::KernelFunction, _) if selection.enrich => {
                        detail.push_str(
                            "; requests heard in rtnetlink_rcv_msg and sock_ioctl (no program runs on every syscall)",
                        );
                    }
                    (CapturePath::KernelFunction, _) => {
                        detail
                            .push_str("; raw_tp does not load, so events carry no request details");
                    }
                }
                findings.push(Finding::ok("capture path", detail));
            }
            Err(why) => {
                let fix = match (facts.mode, why) {
                    (Mode::KernelFunction, _) => {
                        "use --capture auto or --capture syscall, or a kernel with fentry support"
                    }
                    _ => "run a distro kernel (Debian, Ubuntu, RHEL, Fedora) with BPF tracing enabled",
                };
                let detail = match facts.mode {
                    Mode::KernelFunction => format!("kernel-function (forced) cannot run: {why}"),
                    _ => format!("no capture path can run: {why}"),
                };
                findings.push(Finding::fail("capture path", detail, fix));
            }
        }
        if let Ok(selection) = facts.selection() {
            if let Err(Unavailable::Functions(missing)) = &selection.kernel_function {
                findings.push(Finding::warn(
                    "kernel functions",
                    format!(
                        "absent from BTF: {missing} (of {})",
                        KERNEL_FUNCTIONS.join(", ")
                    ),
                    "report this kernel's version to routeguard",
                ));
            }
        }
        findings
    }
}
