//! Which capture path runs: probed at start, overridable with `--capture`.
//!
//! - `kernel-function`: fentry/fexit on the kernel's own deletion functions. Sees every removal
//!   whatever caused it (requests, link-down and address flushes, IPv6 expiry, netns exit), with
//!   the object as the kernel removed it. Needs fentry/fexit, which distro kernels have.
//! - `syscall`: raw tracepoints on the send/receive syscalls copy each request and its ack; the
//!   route mirror infers what a link-down or address removal flushed. Needs only raw_tp.
//!
//! `auto` takes kernel-function where it loads and the kernel has every hooked function, else
//! syscall. The kernel-function path hears requests with hooks of its own (`rtnetlink_rcv_msg`,
//! `sock_ioctl`, in the sender's context), never with programs on every syscall: they enrich
//! its events (the request as the kernel received it, the syscall, its result).

use std::{fmt, path::Path};

use super::probe::{ProgramKind, Refusal, Support};
use crate::kernel::btf::VMLINUX_BTF;

/// What the user asked for (`--capture`, the daemon's `[capture] path`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Mode {
    #[default]
    Auto,
    KernelFunction,
    Syscall,
}

/// The path that runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CapturePath {
    KernelFunction,
    Syscall,
}

impl CapturePath {
    pub fn name(self) -> &'static str {
        match self {
            Self::KernelFunction => "kernel-function",
            Self::Syscall => "syscall",
        }
    }
}

impl fmt::Display for CapturePath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Kernel functions the kernel-function path attaches to (checked against the running kernel's
/// BTF). Each is the one place a kind of removal passes on 6.1 … 6.18.
pub const KERNEL_FUNCTIONS: &[&str] = &[
    // IPv4 routes asked for (RTM_DELROUTE, SIOCDELRT), with the result.
    "fib_table_delete",
    // IPv4: every alias leaving a table, asked for or flushed (link down, address removed,
    // netns exit): the per-route step of both fib_table_delete and fib_table_flush.
    "fib_notify_alias_delete",
    // IPv6 routes, every cause.
    "fib6_del",
    // Policy rules, both families, with the result.
    "fib_nl_delrule",
    // Nexthop objects, every cause.
    "remove_nexthop",
];

/// Why the kernel-function path cannot run here.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Unavailable {
    #[error("fentry/fexit programs do not load: {0}")]
    Fentry(Refusal),
    #[error(
        "the kernel's BTF lacks the hooked functions {0} (they may be inlined on this kernel)"
    )]
    Functions(String),
    #[error("cannot read the kernel's BTF at {VMLINUX_BTF}: {0}")]
    Btf(String),
    #[error("raw tracepoints do not load: {0}")]
    RawTracepoint(Refusal),
}

/// The path chosen, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Selection {
    pub path: CapturePath,
    /// The kernel-function path's request hooks and the exec tracepoint run, to enrich its
    /// events.
    pub enrich: bool,
    /// Asked for `auto`: a kernel-function start-up failure falls back to syscall.
    pub fallback: bool,
    /// Whether the kernel-function path could run here, and why not.
    pub kernel_function: Result<(), Unavailable>,
}

/// The hooked functions the running kernel's BTF lacks.
pub fn missing_functions(btf_path: &Path) -> Result<Vec<&'static str>, Unavailable> {
    let btf = btf_rs::Btf::from_file(btf_path).map_err(|e| Unavailable::Btf(format!("{e}")))?;
    Ok(KERNEL_FUNCTIONS
        .iter()
        .copied()
        .filter(|name| {
            !btf.resolve_types_by_name(name)
                .is_ok_and(|types| types.iter().any(|t| matches!(t, btf_rs::Type::Func(_))))
        })
        .collect())
}

/// Whether the kernel-function path can run, from the probe and the kernel's BTF.
pub fn kernel_function(support: &Support) -> Result<(), Unavailable> {
    support.fentry.clone().map_err(Unavailable::Fentry)?;
    let missing = missing_functions(Path::new(VMLINUX_BTF))?;
    if missing.is_empty() {
        Ok(())
    } else {
        Err(Unavailable::Functions(missing.join(", ")))
    }
}

/// Chooses the path for `mode`. Forcing a path that cannot load is an error naming why.
pub fn select(mode: Mode, support: &Support) -> Result<Selection, Unavailable> {
    let raw_tp = support.get(ProgramKind::RawTracepoint).clone();
    let kfunc = kernel_function(support);
    match (mode, &kfunc) {
        (Mode::KernelFunction, Err(why)) => Err(why.clone()),
        (Mode::KernelFunction | Mode::Auto, Ok(())) => Ok(Selection {
            path: CapturePath::KernelFunction,
            enrich: raw_tp.is_ok(),
            fallback: mode == Mode::Auto && raw_tp.is_ok(),
            kernel_function: Ok(()),
        }),
        (Mode::Syscall | Mode::Auto, _) => {
            raw_tp.map_err(Unavailable::RawTracepoint)?;
            Ok(Selection {
                path: CapturePath::Syscall,
                enrich: false,
                fallback: false,
                kernel_function: kfunc,
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn eperm() -> Refusal {
        Refusal::Errno {
            call: "bpf_prog_load",
            errno: libc::EPERM,
            name: "EPERM",
        }
    }

    #[test]
    fn auto_falls_back_to_syscall_and_forcing_names_why() {
        let support = Support {
            raw_tracepoint: Ok(()),
            tracepoint: Ok(()),
            fentry: Err(eperm()),
        };
        let auto = select(Mode::Auto, &support).unwrap();
        assert_eq!(auto.path, CapturePath::Syscall);
        assert!(auto.kernel_function.is_err());
        assert!(select(Mode::KernelFunction, &support).is_err());
        let nothing = Support {
            raw_tracepoint: Err(eperm()),
            ..support
        };
        assert!(matches!(
            select(Mode::Syscall, &nothing),
            Err(Unavailable::RawTracepoint(_))
        ));
    }
}
