//! Records the eBPF programs write into the `EVENTS` ring buffer.
//!
//! Every record starts with a [`RecordHeader`] (kind, version, length) that userspace checks
//! before it reads the body. Record kind ids are fixed forever; a retired id leaves a gap.

/// Version of the record layouts below. Bump it when any of them changes shape.
pub const WIRE_VERSION: u16 = 3;

/// Record kind ids (the `kind` of a [`RecordHeader`]).
pub mod kind {
    /// [`super::TaskRecord`]: full details of a process, sent once per process image.
    pub const TASK: u16 = 1;
    /// [`super::RequestRecord`]: a removal request copied from a send syscall or an ioctl.
    pub const REQUEST: u16 = 2;
    /// [`super::AckRecord`]: the kernel's NLMSG_ERROR reply to a captured request, as read.
    pub const ACK: u16 = 3;
    /// [`super::IoctlResultRecord`]: the return value of a captured ioctl.
    pub const IOCTL_RESULT: u16 = 4;
    /// [`super::KernelRecord`]: a removal seen in the kernel's own deletion function.
    pub const KERNEL: u16 = 5;
    /// [`super::NotifyRecord`]: the kernel's notification of a deletion a request made, caught
    /// on its way to routeguard's own listener (the syscall path's socket filter).
    pub const NOTIFY: u16 = 6;
}

/// The kernel function a [`KernelRecord`] comes from (`KernelRecord::hook`). Fixed forever.
pub mod hook {
    /// fentry `fib_notify_alias_delete`: an IPv4 route leaving its table, whatever the cause.
    pub const ROUTE4: u16 = 1;
    /// fexit `fib_table_delete` that failed: the request as the kernel parsed it.
    pub const ROUTE4_FAILED: u16 = 2;
    /// fexit `fib6_del` that succeeded: an IPv6 route removed, whatever the cause.
    pub const ROUTE6: u16 = 3;
    /// fexit `fib_nl_delrule`: the request message and its result.
    pub const RULE: u16 = 4;
    /// fentry `remove_nexthop`: a nexthop object removed.
    pub const NEXTHOP: u16 = 5;
}

/// Bits of `KernelRecord::context`.
pub mod context {
    /// `current` is a kernel thread (a workqueue, e.g. netns cleanup): there is no actor.
    pub const KTHREAD: u16 = 1 << 0;
    /// Inside `fib6_run_gc` on this CPU: the route expired.
    pub const GC: u16 = 1 << 1;
    /// `portid`, `seq`, `msg_type`, `nlmsg_flags` come from the request's netlink header.
    pub const HAS_NLH: u16 = 1 << 2;
    /// `ret` holds the function's return value.
    pub const HAS_RET: u16 = 1 << 3;
    /// Userspace has this process's details (a task record was sent or is known).
    pub const ANNOUNCED: u16 = 1 << 4;
}

/// What the outermost marked function on this thread was doing (`KernelRecord::mark`).
pub mod mark {
    pub const NONE: u16 = 0;
    /// Inside `fib_table_delete` / `fib6_del` for a request.
    pub const REQUEST: u16 = 1;
    /// A netdev notifier for NETDEV_DOWN.
    pub const LINK_DOWN: u16 = 2;
    /// A netdev notifier for NETDEV_UNREGISTER.
    pub const LINK_REMOVED: u16 = 3;
    /// An address notifier for a removed address.
    pub const ADDRESS_REMOVED: u16 = 4;
    /// Inside `cleanup_net`: a network namespace is being dismantled.
    pub const NETNS_EXIT: u16 = 5;
}

/// Syscall that carried a request (`RequestRecord::syscall`).
pub mod syscall {
    pub const SENDMSG: u16 = 1;
    pub const SENDTO: u16 = 2;
    pub const SENDMMSG: u16 = 3;
    pub const WRITE: u16 = 4;
    pub const IOCTL: u16 = 5;
    pub const WRITEV: u16 = 6;
}

/// Bits of `RequestRecord::flags`.
pub mod request_flags {
    /// The request was longer than what was copied; the rest is not in `payload`.
    pub const TRUNCATED: u16 = 1 << 0;
    /// Sent by the loader itself (a restore): never acted upon again.
    pub const SELF: u16 = 1 << 1;
    /// Heard in the kernel by the kernel-function path's request hooks (`rtnetlink_rcv_msg`,
    /// `sock_ioctl`), not by the syscall programs.
    pub const IN_KERNEL: u16 = 1 << 2;
    /// The BPF LSM program on `netlink_send` refused this send (EPERM) because a message in it
    /// could remove a protected object: rtnetlink never saw any of it. The record is the whole
    /// send (up to half the payload).
    pub const DENIED: u16 = 1 << 3;
    /// As [`DENIED`], but the policy is a dry run: the send went through.
    pub const WOULD_DENY: u16 = 1 << 4;
}

/// Indexes of the per-CPU `COUNTERS` array.
pub mod counter {
    /// A record of a removal (a request, or a kernel-function record) could not be written: the
    /// ring buffer was full. Each is one lost event. Other kinds' ring losses have their own
    /// counters below.
    pub const RINGBUF_FULL: u32 = 0;
    /// A request longer than the copy limit: its tail was not captured.
    pub const TRUNCATED: u32 = 1;
    /// A read of user or kernel memory failed while a request was being copied.
    pub const READ_FAILED: u32 = 2;
    /// A task-details record could not be written (the ring was full): that process's events
    /// still come, with details from /proc. Not counted in [`RINGBUF_FULL`] too: each lost
    /// record is counted once, under its own cause.
    pub const TASK_LOST: u32 = 3;
    /// A reply (an ack, or an ioctl's return value) could not be written (the ring was full):
    /// its request's event still comes, with outcome `unknown`. Not a lost event.
    pub const ACK_LOST: u32 = 4;
    /// A deletion notification could not be written (the ring was full): the event of its
    /// request still comes (from the ack); only a removal whose request the capture does not
    /// see (io_uring, a compat syscall) is lost with it.
    pub const NOTIFY_LOST: u32 = 5;
    /// A removal request over its sender's budget (`crate::budget`), not copied: the sender
    /// was predicted to lack CAP_NET_ADMIN over the socket's namespace (rtnetlink refuses it).
    pub const SUPPRESSED_REFUSED: u32 = 6;
    /// A removal request over its sender's budget, not copied: a privileged sender in a
    /// namespace other than the initial one (or those a protect policy names).
    pub const SUPPRESSED_NAMESPACE: u32 = 7;
    /// Sends the LSM program refused (EPERM), or let through in a dry run (`would-deny`).
    pub const DENIED: u32 = 8;
    /// A denial whose record could not be written (ring full): the send was still refused.
    pub const DENIAL_LOST: u32 = 9;
    /// Number of counters.
    pub const COUNT: u32 = 10;
}

/// Constants of the ioctls the programs capture (UAPI, `linux/sockios.h`).
pub mod ioctl {
    pub const SIOCDELRT: u32 = 0x890C;
    pub const SIOCSIFFLAGS: u32 = 0x8914;
}

pub const COMM_LEN: usize = 16;
/// Parent chain levels captured above the actor.
pub const ANCESTRY_MAX: usize = 8;
/// Bytes of the actor's argv captured (NUL-separated, as in /proc/PID/cmdline).
pub const ARGS_MAX: usize = 512;
pub const EXE_PATH_MAX: usize = 256;
pub const NAME_MAX: usize = 64;
/// Bytes of request captured per syscall. A single iovec is copied up to half of it.
pub const PAYLOAD_MAX: usize = 16384;
pub const PAYLOAD_HALF: usize = PAYLOAD_MAX / 2;
/// Bytes of a request message copied from kernel memory by a kernel-function program.
pub const KERNEL_MSG_MAX: usize = 256;
/// Bytes of a deletion notification copied by the socket filter (its `nlmsghdr` included). A
/// route's is about 100 bytes; a multipath route's more. Longer ones keep their head.
pub const NOTIFY_MSG_MAX: usize = 1024;

#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RecordHeader {
    pub kind: u16,
    pub version: u16,
    /// Bytes of the whole record including this header.
    pub len: u32,
}

/// The part of a process that every request carries.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TaskInfo {
    /// Thread group id (the process id userspace shows).
    pub pid: u32,
    /// Thread id.
    pub tid: u32,
    pub uid: u32,
    pub gid: u32,
    /// Boot-relative start time of the process, ns; with `pid` it names one process image.
    pub start_time: u64,
    /// cgroup v2 id (the inode of its cgroupfs directory).
    pub cgroup_id: u64,
    pub comm: [u8; COMM_LEN],
}

#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ancestor {
    pub pid: u32,
    pub comm: [u8; COMM_LEN],
}

/// Full details of a process, sent before its first request (and again after each exec), so
/// userspace never depends on /proc still being there.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TaskRecord {
    pub header: RecordHeader,
    pub ts_ns: u64,
    pub task: TaskInfo,
    pub ppid: u32,
    /// Valid entries of `ancestry`, nearest parent first.
    pub ancestry_len: u32,
    /// Valid bytes of `args`.
    pub args_len: u32,
    /// Valid bytes of `exe_path` (0 when the exec was not seen).
    pub exe_path_len: u32,
    /// Basename of the executable (`mm->exe_file` dentry), NUL-terminated.
    pub exe_name: [u8; NAME_MAX],
    /// Path given to execve, from `sched_process_exec`, when the exec happened while tracing.
    pub exe_path: [u8; EXE_PATH_MAX],
    /// Name of the process's cgroup v2 leaf directory, NUL-terminated.
    pub cgroup_name: [u8; NAME_MAX],
    pub ancestry: [Ancestor; ANCESTRY_MAX],
    pub args: [u8; ARGS_MAX],
    /// Device of the executable's filesystem (`mm->exe_file->f_inode->i_sb->s_dev`, the
    /// kernel's encoding: `MAJOR << 20 | MINOR`); 0 when BTF lacks an offset on the way.
    pub exe_dev: u32,
    pub _pad: u32,
    /// Inode number of the executable (`mm->exe_file->f_inode->i_ino`); 0 when unknown. With
    /// `exe_dev` it names the file that runs, whatever the process calls itself.
    pub exe_ino: u64,
}

/// The fixed part of a [`RequestRecord`].
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RequestHead {
    pub header: RecordHeader,
    pub ts_ns: u64,
    /// Kernel address of the `struct sock` (correlates acks; never shown).
    pub sock: u64,
    pub task: TaskInfo,
    /// Inode of the network namespace of the socket the request went through.
    pub netns_ino: u32,
    pub syscall: u16,
    pub sock_family: u16,
    pub sock_protocol: u16,
    pub flags: u16,
    pub payload_len: u32,
    /// The socket's netlink port id (`netlink_sock.portid`): what the kernel's notifications of
    /// this request carry in `nlmsg_pid`. 0 when the socket was not bound yet (the kernel binds
    /// it during this send) or not a netlink socket.
    pub portid: u32,
    pub _pad: u32,
}

/// A removal request. The record is `PAYLOAD_OFFSET + payload_len` bytes long.
///
/// For netlink syscalls `payload` holds the bytes sent (one or more netlink messages, iovecs
/// concatenated). For `syscall::IOCTL` it holds an [`IoctlPayload`].
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RequestRecord {
    pub head: RequestHead,
    pub payload: [u8; PAYLOAD_MAX],
}

/// Offset of `RequestRecord::payload`.
pub const PAYLOAD_OFFSET: usize = core::mem::offset_of!(RequestRecord, payload);

/// The payload of an ioctl request.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IoctlPayload {
    pub cmd: u32,
    pub _pad: u32,
    /// `struct rtentry` (AF_INET), `struct in6_rtmsg` (AF_INET6) or `struct ifreq`.
    pub arg: [u8; 128],
    /// `rtentry.rt_dev`, read from the pointer it holds, NUL-terminated.
    pub dev: [u8; 16],
}

/// One NLMSG_ERROR reply (error 0 is an ACK) to a request type the programs capture.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AckRecord {
    pub header: RecordHeader,
    pub ts_ns: u64,
    pub sock: u64,
    pub pid: u32,
    pub tid: u32,
    /// `nlmsg_seq` of the request this answers.
    pub seq: u32,
    /// Negative errno, or 0.
    pub error: i32,
    /// `nlmsg_type` of the request this answers.
    pub msg_type: u16,
    pub _pad: [u8; 6],
}

#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IoctlResultRecord {
    pub header: RecordHeader,
    pub ts_ns: u64,
    pub pid: u32,
    pub tid: u32,
    /// The ioctl's return value (0, or a negative errno).
    pub ret: i64,
}

/// A removal seen in a kernel deletion function. Which fields are filled depends on `hook`;
/// addresses are in network byte order, 4 bytes for IPv4, 16 for IPv6.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KernelRecord {
    pub header: RecordHeader,
    pub ts_ns: u64,
    /// `current` (meaningless when `context` has KTHREAD or GC).
    pub task: TaskInfo,
    pub netns_ino: u32,
    pub hook: u16,
    pub context: u16,
    pub mark: u16,
    /// AF_INET or AF_INET6 (rules: the request's family).
    pub family: u8,
    pub dst_len: u8,
    /// Return value (with `context::HAS_RET`): 0 or a negative errno.
    pub ret: i32,
    pub portid: u32,
    pub seq: u32,
    pub msg_type: u16,
    pub nlmsg_flags: u16,
    pub table: u32,
    pub priority: u32,
    /// Output interface index of the (first) nexthop.
    pub oif: u32,
    /// Nexthop object id (routes using one, or the nexthop removed).
    pub nh_id: u32,
    pub protocol: u8,
    pub scope: u8,
    pub route_type: u8,
    pub tos: u8,
    /// AF_INET / AF_INET6 of `gateway`, 0 when there is none.
    pub gw_family: u8,
    pub _pad: u8,
    /// The syscall (`syscall::*`) that carried the request, when the syscall programs saw it
    /// arrive and left it to this record (see `DEFERRED` in the programs); 0 when unknown.
    pub syscall: u16,
    pub _pad1: [u8; 4],
    pub dst: [u8; 16],
    pub gateway: [u8; 16],
    pub prefsrc: [u8; 16],
    /// Name of the nexthop's device, NUL-terminated.
    pub dev: [u8; 16],
    /// Valid bytes of `msg`.
    pub msg_len: u32,
    pub _pad2: u32,
    /// `hook::RULE`: the netlink message as the kernel received it (a copy of its first bytes).
    pub msg: [u8; KERNEL_MSG_MAX],
}

// Layouts are shared with the kernel side byte for byte: fail the build if one drifts.
const _: () = assert!(core::mem::size_of::<RecordHeader>() == 8);
const _: () = assert!(core::mem::size_of::<TaskInfo>() == 48);
const _: () = assert!(core::mem::size_of::<Ancestor>() == 20);
const _: () =
    assert!(core::mem::size_of::<TaskRecord>() == 8 + 8 + 48 + 16 + 64 + 256 + 64 + 160 + 512 + 16);
const _: () = assert!(core::mem::offset_of!(TaskRecord, exe_ino) == 1144);
const _: () = assert!(PAYLOAD_OFFSET == 96);
const _: () = assert!(core::mem::size_of::<RequestHead>() == PAYLOAD_OFFSET);
const _: () = assert!(core::mem::size_of::<RequestRecord>() == PAYLOAD_OFFSET + PAYLOAD_MAX);
const _: () = assert!(core::mem::size_of::<IoctlPayload>() == 152);
const _: () = assert!(core::mem::size_of::<AckRecord>() == 48);
const _: () = assert!(core::mem::size_of::<IoctlResultRecord>() == 32);
const _: () = assert!(PAYLOAD_HALF.is_power_of_two());
const _: () = assert!(core::mem::offset_of!(KernelRecord, netns_ino) == 64);
const _: () = assert!(core::mem::offset_of!(KernelRecord, dst) == 120);
const _: () = assert!(core::mem::offset_of!(KernelRecord, msg) == 192);
const _: () = assert!(core::mem::size_of::<KernelRecord>() == 192 + KERNEL_MSG_MAX);
const _: () = assert!(KERNEL_MSG_MAX.is_power_of_two());
const _: () = assert!(NOTIFY_MSG_OFFSET == 40);
const _: () = assert!(core::mem::size_of::<NotifyRecord>() == 40 + NOTIFY_MSG_MAX);
const _: () = assert!(NOTIFY_MSG_MAX.is_power_of_two());

/// The kernel's notification (RTM_DELROUTE, RTM_DELRULE) of a deletion a request asked for,
/// copied by the socket filter on routeguard's own listener before the socket's receive buffer
/// could drop it. It is made in the requesting thread (rtnetlink handles a request inside the
/// sender's `sendmsg`), so `pid`/`tid` name that thread.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NotifyRecord {
    pub header: RecordHeader,
    pub ts_ns: u64,
    pub pid: u32,
    pub tid: u32,
    /// Network namespace of the requesting thread; the request's socket may be in another (the
    /// request record names that one).
    pub netns_ino: u32,
    /// Valid bytes of `msg`.
    pub msg_len: u32,
    /// Length of the whole message (more than `msg_len` when it was cut).
    pub full_len: u32,
    pub _pad: u32,
    /// The notification: `nlmsghdr` (`nlmsg_pid` is the requester's port id, `nlmsg_seq` its
    /// request's sequence number) and body.
    pub msg: [u8; NOTIFY_MSG_MAX],
}

/// Offset of `NotifyRecord::msg`.
pub const NOTIFY_MSG_OFFSET: usize = core::mem::offset_of!(NotifyRecord, msg);

/// Kind ids as a checked enum for userspace.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RecordKind {
    Task,
    Request,
    Ack,
    IoctlResult,
    Kernel,
    Notify,
}

/// An id the programs never send.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UnknownKind(pub u16);

impl TryFrom<u16> for RecordKind {
    type Error = UnknownKind;

    fn try_from(id: u16) -> Result<Self, Self::Error> {
        match id {
            kind::TASK => Ok(Self::Task),
            kind::REQUEST => Ok(Self::Request),
            kind::ACK => Ok(Self::Ack),
            kind::IOCTL_RESULT => Ok(Self::IoctlResult),
            kind::KERNEL => Ok(Self::Kernel),
            kind::NOTIFY => Ok(Self::Notify),
            other => Err(UnknownKind(other)),
        }
    }
}

impl RecordKind {
    /// Smallest length a record of this kind may have.
    pub const fn min_len(self) -> usize {
        match self {
            Self::Task => core::mem::size_of::<TaskRecord>(),
            Self::Request => PAYLOAD_OFFSET,
            Self::Ack => core::mem::size_of::<AckRecord>(),
            Self::IoctlResult => core::mem::size_of::<IoctlResultRecord>(),
            Self::Kernel => core::mem::size_of::<KernelRecord>(),
            // A notification's header at least.
            Self::Notify => NOTIFY_MSG_OFFSET + 16,
        }
    }
}
