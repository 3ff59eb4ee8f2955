//! The programs of the syscall capture path and where they attach.

use aya::{
    programs::{links::FdLink, ProgramError, ProgramFd, RawTracePoint, SocketFilter, TracePoint},
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
    (
        "skb_copy_datagram_iovec",
        Hook::Raw("skb_copy_datagram_iovec"),
    ),
    ("sys_exit", Hook::Raw("sys_exit")),
    (
        "sched_process_exec",
        Hook::TracePoint("sched", "sched_process_exec"),
    ),
    ("sys_enter", Hook::Raw("sys_enter")),
];

/// What the kernel-function path takes of them: who exec'd what.
pub const EXEC_PROGRAMS: &[(&str, Hook)] = &[(
    "sched_process_exec",
    Hook::TracePoint("sched", "sched_process_exec"),
)];

/// The socket filter routeguard's route listeners carry (program `notify`); loaded, not
/// attached: the mirror attaches it to each listener it opens.
pub const NOTIFY_FILTER: &str = "notify";

/// Loads the notification filter; returns its fd for the mirror.
pub fn load_notify_filter(ebpf: &mut Ebpf) -> Result<ProgramFd, CaptureError> {
    let err = |source: ProgramError| CaptureError::Filter {
        name: NOTIFY_FILTER,
        source: Box::new(source),
    };
    let program: &mut SocketFilter = ebpf
        .program_mut(NOTIFY_FILTER)
        .ok_or_else(|| err(ProgramError::UnexpectedProgramType))?
        .try_into()
        .map_err(err)?;
    program.load().map_err(err)?;
    program
        .fd()
        .map_err(err)?
        .try_clone()
        .map_err(|e| err(ProgramError::IOError(e)))
}

/// Loads and attaches the programs of `list`. With `take_links`, the links are handed back (to be
/// pinned) instead of staying with the programs, which would detach them when dropped.
pub fn attach_all(
    ebpf: &mut Ebpf,
    list: &[(&'static str, Hook)],
    take_links: bool,
) -> Result<Vec<(&'static str, FdLink)>, CaptureError> {
    let mut links = Vec::new();
    for &(name, hook) in list {
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
                let id = program.attach(tracepoint).map_err(err)?;
                if take_links {
                    links.push((name, FdLink::from(program.take_link(id).map_err(err)?)));
                }
            }
            Hook::TracePoint(category, tracepoint) => {
                let program: &mut TracePoint = program.try_into().map_err(err)?;
                program.load().map_err(err)?;
                let id = program.attach(category, tracepoint).map_err(err)?;
                if take_links {
                    let link = program.take_link(id).map_err(err)?;
                    // A perf link is an fd link when the kernel has BPF_LINK_CREATE for perf
                    // events (5.15); older ones cannot pin it.
                    let link = FdLink::try_from(link)
                        .map_err(|e| err(ProgramError::IOError(std::io::Error::other(e))))?;
                    links.push((name, link));
                }
            }
        }
    }
    Ok(links)
}
