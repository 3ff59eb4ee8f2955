//! What loads here: each program type routeguard could use is probed by loading a trivial
//! program of that type (`r0 = 0; exit`), so the answer is the kernel's own, EPERM included.
//!
//! The probes are aya's (`aya::sys::is_program_supported`); for fentry it loads a tracing
//! program against `bpf_fentry_test1` and opens its trampoline, so "loads" means the kernel can
//! both load and attach a kernel-function program.

use std::{fmt, io};

use aya::programs::{ProgramError, ProgramType};

/// The program types the capture paths are built from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProgramKind {
    /// `raw_tp`: the syscall path's `sys_enter` / `sys_exit`.
    RawTracepoint,
    /// Perf tracepoints: `sched_process_exec`.
    Tracepoint,
    /// fentry/fexit (BPF_PROG_TYPE_TRACING): the kernel-function path.
    Fentry,
}

impl ProgramKind {
    pub const ALL: [Self; 3] = [Self::RawTracepoint, Self::Tracepoint, Self::Fentry];

    pub fn name(self) -> &'static str {
        match self {
            Self::RawTracepoint => "raw_tp",
            Self::Tracepoint => "tracepoint",
            Self::Fentry => "fentry/fexit",
        }
    }

    fn program_type(self) -> ProgramType {
        match self {
            Self::RawTracepoint => ProgramType::RawTracePoint,
            Self::Tracepoint => ProgramType::TracePoint,
            Self::Fentry => ProgramType::Tracing,
        }
    }
}

/// Why a program type does not load.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// A bpf(2) command failed with this errno.
    #[error("{call} returned {name} ({errno})")]
    Errno {
        call: &'static str,
        errno: i32,
        name: &'static str,
    },
    /// The kernel does not know the program type.
    #[error("the kernel does not support this program type")]
    Unsupported,
    #[error("{0}")]
    Other(String),
}

impl Refusal {
    /// What the answer usually means.
    pub fn explain(&self) -> Option<String> {
        match self {
            Self::Errno { call, errno, .. } => Some(describe(*errno, call)),
            _ => None,
        }
    }
}

fn describe(errno: i32, call: &str) -> String {
    match (errno, call) {
        (libc::EPERM, "bpf_prog_load") => "refused before the verifier ran: with the \
            capabilities held, this means the kernel cannot patch its text for ftrace, which \
            fentry/fexit need"
            .into(),
        (libc::ENOTSUP | 524, _) => "the kernel cannot attach a trampoline here".into(),
        _ => io::Error::from_raw_os_error(errno).to_string(),
    }
}

/// The result of probing one program type.
pub type Probe = Result<(), Refusal>;

/// Which program types load on this kernel.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Support {
    pub raw_tracepoint: Probe,
    pub tracepoint: Probe,
    pub fentry: Probe,
}

impl Support {
    /// Loads one trivial program of each type (needs CAP_BPF + CAP_PERFMON or root).
    pub fn probe() -> Self {
        Self {
            raw_tracepoint: probe(ProgramKind::RawTracepoint),
            tracepoint: probe(ProgramKind::Tracepoint),
            fentry: probe(ProgramKind::Fentry),
        }
    }

    pub fn get(&self, kind: ProgramKind) -> &Probe {
        match kind {
            ProgramKind::RawTracepoint => &self.raw_tracepoint,
            ProgramKind::Tracepoint => &self.tracepoint,
            ProgramKind::Fentry => &self.fentry,
        }
    }
}

pub fn probe(kind: ProgramKind) -> Probe {
    match aya::sys::is_program_supported(kind.program_type()) {
        Ok(true) => Ok(()),
        Ok(false) => Err(Refusal::Unsupported),
        Err(ProgramError::SyscallError(err)) => Err(match err.io_error.raw_os_error() {
            Some(errno) => Refusal::Errno {
                call: err.call,
                errno,
                name: crate::event::errno::name(errno).unwrap_or("?"),
            },
            None => Refusal::Other(err.to_string()),
        }),
        Err(other) => Err(Refusal::Other(other.to_string())),
    }
}

impl fmt::Display for ProgramKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}
