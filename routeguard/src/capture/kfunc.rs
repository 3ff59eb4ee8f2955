//! The programs of the kernel-function path and where they attach.

use aya::{
    programs::{FEntry, FExit, ProgramError},
    Btf, Ebpf,
};

use super::CaptureError;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Entry,
    Exit,
}

/// One program: its name in the object, the kernel function, and whether the path can run
/// without it (marks that only sharpen the cause are optional).
#[derive(Clone, Copy, Debug)]
pub struct KernelProgram {
    pub name: &'static str,
    pub function: &'static str,
    pub kind: Kind,
    pub required: bool,
}

const fn p(
    name: &'static str,
    function: &'static str,
    kind: Kind,
    required: bool,
) -> KernelProgram {
    KernelProgram {
        name,
        function,
        kind,
        required,
    }
}

/// Marks first, so no removal is seen before the reason for it can be.
pub const KERNEL_PROGRAMS: &[KernelProgram] = &[
    p("cleanup_net_entry", "cleanup_net", Kind::Entry, false),
    p("cleanup_net_exit", "cleanup_net", Kind::Exit, false),
    p(
        "unregister_netdevice_entry",
        "unregister_netdevice_many_notify",
        Kind::Entry,
        false,
    ),
    p(
        "unregister_netdevice_exit",
        "unregister_netdevice_many_notify",
        Kind::Exit,
        false,
    ),
    p(
        "fib_netdev_event_entry",
        "fib_netdev_event",
        Kind::Entry,
        false,
    ),
    p(
        "fib_netdev_event_exit",
        "fib_netdev_event",
        Kind::Exit,
        false,
    ),
    p(
        "fib_inetaddr_event_entry",
        "fib_inetaddr_event",
        Kind::Entry,
        false,
    ),
    p(
        "fib_inetaddr_event_exit",
        "fib_inetaddr_event",
        Kind::Exit,
        false,
    ),
    p(
        "addrconf_notify_entry",
        "addrconf_notify",
        Kind::Entry,
        false,
    ),
    p("addrconf_notify_exit", "addrconf_notify", Kind::Exit, false),
    p("ipv6_del_addr_entry", "ipv6_del_addr", Kind::Entry, false),
    p("ipv6_del_addr_exit", "ipv6_del_addr", Kind::Exit, false),
    p("fib6_run_gc_entry", "fib6_run_gc", Kind::Entry, true),
    p("fib6_run_gc_exit", "fib6_run_gc", Kind::Exit, true),
    p(
        "fib_table_delete_entry",
        "fib_table_delete",
        Kind::Entry,
        true,
    ),
    p(
        "fib_table_delete_exit",
        "fib_table_delete",
        Kind::Exit,
        true,
    ),
    p(
        "fib_notify_alias_delete",
        "fib_notify_alias_delete",
        Kind::Entry,
        true,
    ),
    p("fib6_del", "fib6_del", Kind::Exit, true),
    p("fib_nl_delrule", "fib_nl_delrule", Kind::Exit, true),
    p("remove_nexthop", "remove_nexthop", Kind::Entry, true),
];

/// The request hooks: every rtnetlink message and socket ioctl in its sender's context (see
/// `kfunc/requests.rs` in the programs). Exits first, so no entry runs without its exit. They
/// are attached before the deletion functions' programs, which ask them what a thread is in.
pub const REQUEST_PROGRAMS: &[KernelProgram] = &[
    p(
        "rtnetlink_rcv_msg_exit",
        "rtnetlink_rcv_msg",
        Kind::Exit,
        false,
    ),
    p(
        "rtnetlink_rcv_msg_entry",
        "rtnetlink_rcv_msg",
        Kind::Entry,
        false,
    ),
    p("sock_ioctl_exit", "sock_ioctl", Kind::Exit, false),
    p("sock_ioctl_entry", "sock_ioctl", Kind::Entry, false),
];

/// Loads and attaches the request hooks; returns how many are attached. They only enrich the
/// kernel's records (the request, the syscall, a refused delete): one that fails is logged.
pub fn attach_requests(ebpf: &mut Ebpf, btf: &Btf) -> usize {
    let mut attached = 0;
    // An entry notes the request as active until its exit marks it finished: never one
    // without the other.
    let mut exits_missing: Vec<&str> = Vec::new();
    for prog in REQUEST_PROGRAMS {
        if prog.kind == Kind::Entry && exits_missing.contains(&prog.function) {
            tracing::warn!(
                program = prog.name,
                function = prog.function,
                "request hook not attached: its exit is not; kernel-function events lack the requests it would add"
            );
            continue;
        }
        let result = attach(ebpf, btf, prog);
        if result.is_err() && prog.kind == Kind::Exit {
            exits_missing.push(prog.function);
        }
        match result {
            Ok(()) => attached += 1,
            Err(error) => tracing::warn!(
                program = prog.name,
                function = prog.function,
                %error,
                "request hook not attached; kernel-function events lack the requests it would add"
            ),
        }
    }
    attached
}

/// `fib_table_delete`'s pair: which IPv4 delete a process asked for, and a refused one. The
/// request hooks tell both (the request, and its result at `rtnetlink_rcv_msg`'s or
/// `sock_ioctl`'s exit), so these run only without them.
const FIB_TABLE_DELETE_PAIR: [&str; 2] = ["fib_table_delete_entry", "fib_table_delete_exit"];

/// Loads and attaches every kernel-function program (but `fib_table_delete`'s pair when
/// `requests_heard`); returns how many are attached. An optional one that fails is logged and
/// skipped (its causes degrade, nothing is misnamed).
pub fn attach_all(ebpf: &mut Ebpf, btf: &Btf, requests_heard: bool) -> Result<usize, CaptureError> {
    let mut attached = 0;
    for prog in KERNEL_PROGRAMS {
        if requests_heard && FIB_TABLE_DELETE_PAIR.contains(&prog.name) {
            continue;
        }
        match attach(ebpf, btf, prog) {
            Ok(()) => attached += 1,
            Err(source) if !prog.required => {
                tracing::warn!(
                    program = prog.name,
                    function = prog.function,
                    error = %source,
                    "optional kernel-function hook not attached; removals it would explain get a less specific cause"
                );
            }
            Err(source) => {
                return Err(CaptureError::KernelProgram {
                    name: prog.name,
                    function: prog.function,
                    source: Box::new(source),
                })
            }
        }
    }
    Ok(attached)
}

fn attach(ebpf: &mut Ebpf, btf: &Btf, prog: &KernelProgram) -> Result<(), ProgramError> {
    let program = ebpf
        .program_mut(prog.name)
        .ok_or(ProgramError::UnexpectedProgramType)?;
    match prog.kind {
        Kind::Entry => {
            let program: &mut FEntry = program.try_into()?;
            program.load(prog.function, btf)?;
            program.attach()?;
        }
        Kind::Exit => {
            let program: &mut FExit = program.try_into()?;
            program.load(prog.function, btf)?;
            program.attach()?;
        }
    }
    Ok(())
}
