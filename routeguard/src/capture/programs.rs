//! The programs of the syscall capture path and where they attach.

use aya::{
    programs::{ProgramError, RawTracePoint, TracePoint},
    Ebpf,
};

use super::CaptureError;

/// Where a program attaches.
#[derive(Clone, Copy, Debug)]
pub enum Hook {
    /// A raw tracepoint (`raw_tp/NAME`).
    Raw(&'static str),
    /// A perf tracepoint (`CATEGORY:NAME`).
    TracePoint(&'static str, &'static str),
}

/// (program name, hook). Replies first, so no reply to a request captured a moment later can
/// slip past.
pub const PROGRAMS: &[(&str, Hook)] = &[
    ("sys_exit", Hook::Raw("sys_exit")),
    (
        "sched_process_exec",
        Hook::TracePoint("sched", "sched_process_exec"),
    ),
    ("sys_enter", Hook::Raw("sys_enter")),
];

pub fn attach_all(ebpf: &mut Ebpf) -> Result<(), CaptureError> {
    for &(name, hook) in PROGRAMS {
        let err = |source: ProgramError| CaptureError::Program {
            name,
            hook,
            source: Box::new(source),
        };
        let program = ebpf
            .program_mut(name)
            .ok_or_else(|| err(ProgramError::UnexpectedProgramType))?;
        match hook {
            Hook::Raw(tracepoint) => {
                let program: &mut RawTracePoint = program.try_into().map_err(err)?;
                program.load().map_err(err)?;
                program.attach(tracepoint).map_err(err)?;
            }
            Hook::TracePoint(category, tracepoint) => {
                let program: &mut TracePoint = program.try_into().map_err(err)?;
                program.load().map_err(err)?;
                program.attach(category, tracepoint).map_err(err)?;
            }
        }
    }
    Ok(())
}
