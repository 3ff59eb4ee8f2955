//! net-tools' way: `ioctl(SIOCDELRT)` removes a route, `ioctl(SIOCSIFFLAGS)` without IFF_UP
//! takes a link down (and with it every IPv4 route through it).

use aya_ebpf::helpers::{
    bpf_get_current_pid_tgid, bpf_get_current_task, bpf_ktime_get_ns, bpf_probe_read_user_buf,
    bpf_probe_read_user_str_bytes,
};
use routeguard_common::{
    counter,
    ioctl::{SIOCDELRT, SIOCSIFFLAGS},
    kind, request_flags, syscall, IoctlPayload, IoctlResultRecord, RecordHeader, RequestRecord,
    WIRE_VERSION,
};

use super::{
    budget,
    kern::read_user,
    maps::{count, EVENTS, IOCTL_IN_FLIGHT, REQUEST_SCRATCH},
    rare::{self, rare, site, EVERY_NS},
    send::{emit, wake_flags},
    sock::{self, Sock},
};

const AF_INET: u16 = 2;
const AF_INET6: u16 = 10;
const IFF_UP: u16 = 0x1;
/// sizeof(struct rtentry), sizeof(struct in6_rtmsg), sizeof(struct ifreq) on 64-bit.
const RTENTRY_LEN: usize = 120;
const IN6_RTMSG_LEN: usize = 80;
const IFREQ_LEN: usize = 40;
/// `rtentry.rt_dev` (char *).
const RTENTRY_DEV: u64 = 88;

/// sys_enter of an ioctl on `fd`.
#[inline(always)]
pub fn enter(fd: i64, cmd: u32, arg: u64) -> Option<()> {
    if !wanted(cmd, arg) {
        return None;
    }
    // SAFETY: helper without preconditions.
    let task_ptr = unsafe { bpf_get_current_task() };
    let sock = sock::lookup(task_ptr, fd)?;
    capture(task_ptr, &sock, cmd, arg, 0)
}

/// `sock_ioctl`'s entry (the kernel-function path): the same, for the socket `file`.
#[inline(always)]
pub fn enter_file(file: u64, cmd: u32, arg: u64) -> Option<()> {
    if !wanted(cmd, arg) {
        return None;
    }
    let sock = sock::of_file(file)?;
    // SAFETY: helper without preconditions.
    let task_ptr = unsafe { bpf_get_current_task() };
    capture(task_ptr, &sock, cmd, arg, request_flags::IN_KERNEL)
}

/// A route delete, or a change of link flags that takes the link down.
#[inline(always)]
fn wanted(cmd: u32, arg: u64) -> bool {
    match cmd {
        SIOCDELRT => true,
        // struct ifreq { char ifr_name[16]; short ifr_flags; ... }: only a down matters.
        SIOCSIFFLAGS => read_user::<u16>(arg + 16).is_some_and(|flags| flags & IFF_UP == 0),
        _ => false,
    }
}

/// Copies the request and notes the thread until the ioctl returns; `flags` go to the record.
#[inline(always)]
fn capture(task_ptr: u64, sock: &Sock, cmd: u32, arg: u64, flags: u16) -> Option<()> {
    let rec = REQUEST_SCRATCH.get_ptr_mut(0)?;
    // SAFETY: per-CPU scratch owned by this program invocation.
    let rec: &mut RequestRecord = unsafe { &mut *rec };
    rec.head.flags = flags;
    // SAFETY: the payload is larger than an IoctlPayload and suitably aligned (offset 88).
    let payload: &mut IoctlPayload =
        unsafe { &mut *(rec.payload.as_mut_ptr() as *mut IoctlPayload) };
    payload.cmd = cmd;
    payload._pad = 0;
    payload.dev[0] = 0;
    let arg_len = match (cmd, sock.family) {
        (SIOCSIFFLAGS, _) => IFREQ_LEN,
        (_, AF_INET) => RTENTRY_LEN,
        (_, AF_INET6) => IN6_RTMSG_LEN,
        _ => return None,
    };
    // SAFETY: arg_len ≤ 128 = payload.arg's size; faults are reported as Err.
    if unsafe { bpf_probe_read_user_buf(arg as *const u8, &mut payload.arg[..arg_len]) }.is_err() {
        count(counter::READ_FAILED);
        // The kernel's own copy faults the page in and the ioctl goes ahead unseen. Any
        // process can pass an untouched buffer: rate-limited, and counted in READ_FAILED.
        rare!(
            Debug,
            site::IOCTL_UNREADABLE,
            EVERY_NS,
            "pid {}: the {} byte argument of its ioctl {:x} could not be read (page not present?); the request is not reported",
            rare::pid(),
            arg_len,
            cmd
        );
        return None;
    }
    if cmd == SIOCDELRT && sock.family == AF_INET {
        if let Some(dev) = read_user::<u64>(arg + RTENTRY_DEV) {
            if dev != 0 {
                // SAFETY: a user string read with fault handling, bounded by the destination.
                let _ =
                    unsafe { bpf_probe_read_user_str_bytes(dev as *const u8, &mut payload.dev) };
            }
        }
    }
    let len = core::mem::size_of::<IoctlPayload>();
    if !budget::admit(task_ptr, sock, len as u64) {
        return None;
    }
    emit(rec, task_ptr, sock, syscall::IOCTL, len)?;
    IOCTL_IN_FLIGHT
        .insert(bpf_get_current_pid_tgid(), 1, 0)
        .ok()
}

/// Whether this thread is inside a captured ioctl (a route delete or a link taken down).
#[inline(always)]
pub fn in_flight() -> bool {
    IOCTL_IN_FLIGHT
        .get_ptr(bpf_get_current_pid_tgid())
        .is_some()
}

#[inline(always)]
pub fn exit(ret: i64) -> Option<()> {
    let pid_tgid = bpf_get_current_pid_tgid();
    IOCTL_IN_FLIGHT.get_ptr(pid_tgid)?;
    let _ = IOCTL_IN_FLIGHT.remove(pid_tgid);
    let rec = IoctlResultRecord {
        header: RecordHeader {
            kind: kind::IOCTL_RESULT,
            version: WIRE_VERSION,
            len: core::mem::size_of::<IoctlResultRecord>() as u32,
        },
        // SAFETY: helper without preconditions.
        ts_ns: unsafe { bpf_ktime_get_ns() },
        pid: (pid_tgid >> 32) as u32,
        tid: pid_tgid as u32,
        ret,
    };
    if EVENTS
        .output::<IoctlResultRecord>(&rec, wake_flags(size_of::<IoctlResultRecord>() as u64))
        .is_err()
    {
        count(counter::ACK_LOST);
    }
    Some(())
}
