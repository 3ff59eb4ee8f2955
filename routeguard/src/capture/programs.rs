//! The programs of the syscall capture path and the tracepoints they attach to.

use aya::{programs::TracePoint, Ebpf};

use super::CaptureError;

/// (program name, tracepoint category, tracepoint name).
pub const TRACEPOINTS: &[(&str, &str, &str)] = &[
    // Replies first, so no reply to a request captured a moment later can slip past.
    ("sys_enter_recvmsg", "syscalls", "sys_enter_recvmsg"),
    ("sys_exit_recvmsg", "syscalls", "sys_exit_recvmsg"),
    ("sys_enter_recvfrom", "syscalls", "sys_enter_recvfrom"),
    ("sys_exit_recvfrom", "syscalls", "sys_exit_recvfrom"),
    ("sys_enter_recvmmsg", "syscalls", "sys_enter_recvmmsg"),
    ("sys_exit_recvmmsg", "syscalls", "sys_exit_recvmmsg"),
    ("sys_enter_read", "syscalls", "sys_enter_read"),
    ("sys_exit_read", "syscalls", "sys_exit_read"),
    ("sys_exit_ioctl", "syscalls", "sys_exit_ioctl"),
    ("sched_process_exec", "sched", "sched_process_exec"),
    ("sys_enter_sendmsg", "syscalls", "sys_enter_sendmsg"),
    ("sys_enter_sendto", "syscalls", "sys_enter_sendto"),
    ("sys_enter_sendmmsg", "syscalls", "sys_enter_sendmmsg"),
    ("sys_enter_write", "syscalls", "sys_enter_write"),
    ("sys_enter_ioctl", "syscalls", "sys_enter_ioctl"),
];

pub fn attach_all(ebpf: &mut Ebpf) -> Result<(), CaptureError> {
    for &(name, category, tracepoint) in TRACEPOINTS {
        let err = |source: aya::programs::ProgramError| CaptureError::Program {
            name,
            category,
            tracepoint,
            source: Box::new(source),
        };
        let program: &mut TracePoint = ebpf
            .program_mut(name)
            .ok_or_else(|| err(aya::programs::ProgramError::UnexpectedProgramType))?
            .try_into()
            .map_err(err)?;
        program.load().map_err(err)?;
        program.attach(category, tracepoint).map_err(err)?;
    }
    Ok(())
}
