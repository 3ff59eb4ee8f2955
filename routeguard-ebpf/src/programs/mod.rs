//! Entry points. Syscall tracepoints have the layout `common (8 bytes) | __syscall_nr (8) |
//! args…` (8 bytes each, from offset 16); sys_exit has `long ret` at 16. Checked against the
//! tracefs `format` files of 6.1, 6.12 and 6.18.

mod ioctl;
mod kern;
mod maps;
mod recv;
mod send;
mod sock;
mod task;

use aya_ebpf::{
    helpers::{bpf_get_current_pid_tgid, bpf_get_current_task, bpf_probe_read_kernel_str_bytes},
    macros::tracepoint,
    programs::TracePointContext,
};
use routeguard_common::syscall;

use maps::{recv_kind, EXECS, EXEC_SCRATCH, TASK_SEEN};
use send::Source;

/// Argument `n` (0-based) of a syscall tracepoint.
#[inline(always)]
fn arg(ctx: &TracePointContext, n: usize) -> u64 {
    // SAFETY: syscall tracepoints carry six 8-byte args from offset 16; n < 6 at every call.
    unsafe { ctx.read_at::<u64>(16 + n * 8) }.unwrap_or(0)
}

#[inline(always)]
fn ret(ctx: &TracePointContext) -> i64 {
    // SAFETY: sys_exit tracepoints carry `long ret` at offset 16.
    unsafe { ctx.read_at::<i64>(16) }.unwrap_or(-1)
}

// sendmsg(int fd, struct user_msghdr *msg, unsigned int flags) — since 2.6; checked 6.1–6.18.
#[tracepoint(category = "syscalls", name = "sys_enter_sendmsg")]
pub fn sys_enter_sendmsg(ctx: TracePointContext) -> u32 {
    let _ = send::capture(
        arg(&ctx, 0) as i64,
        syscall::SENDMSG,
        Source::Msghdr(arg(&ctx, 1)),
    );
    0
}

// sendto(int fd, void *buff, size_t len, unsigned int flags, struct sockaddr *addr, int addr_len)
#[tracepoint(category = "syscalls", name = "sys_enter_sendto")]
pub fn sys_enter_sendto(ctx: TracePointContext) -> u32 {
    let source = Source::Buf(arg(&ctx, 1), arg(&ctx, 2));
    let _ = send::capture(arg(&ctx, 0) as i64, syscall::SENDTO, source);
    0
}

// sendmmsg(int fd, struct mmsghdr *mmsg, unsigned int vlen, unsigned int flags)
#[tracepoint(category = "syscalls", name = "sys_enter_sendmmsg")]
pub fn sys_enter_sendmmsg(ctx: TracePointContext) -> u32 {
    let source = Source::Mmsg(arg(&ctx, 1), arg(&ctx, 2));
    let _ = send::capture(arg(&ctx, 0) as i64, syscall::SENDMMSG, source);
    0
}

// write(unsigned int fd, const char *buf, size_t count)
#[tracepoint(category = "syscalls", name = "sys_enter_write")]
pub fn sys_enter_write(ctx: TracePointContext) -> u32 {
    let source = Source::Buf(arg(&ctx, 1), arg(&ctx, 2));
    let _ = send::capture(arg(&ctx, 0) as i64, syscall::WRITE, source);
    0
}

// ioctl(unsigned int fd, unsigned int cmd, unsigned long arg)
#[tracepoint(category = "syscalls", name = "sys_enter_ioctl")]
pub fn sys_enter_ioctl(ctx: TracePointContext) -> u32 {
    let _ = ioctl::enter(arg(&ctx, 0) as i64, arg(&ctx, 1) as u32, arg(&ctx, 2));
    0
}

#[tracepoint(category = "syscalls", name = "sys_exit_ioctl")]
pub fn sys_exit_ioctl(ctx: TracePointContext) -> u32 {
    let _ = ioctl::exit(ret(&ctx));
    0
}

// recvmsg(int fd, struct user_msghdr *msg, unsigned int flags)
#[tracepoint(category = "syscalls", name = "sys_enter_recvmsg")]
pub fn sys_enter_recvmsg(ctx: TracePointContext) -> u32 {
    let _ = recv::enter(arg(&ctx, 0) as i64, arg(&ctx, 1), 0, recv_kind::MSGHDR);
    0
}

#[tracepoint(category = "syscalls", name = "sys_exit_recvmsg")]
pub fn sys_exit_recvmsg(ctx: TracePointContext) -> u32 {
    let _ = recv::exit(ret(&ctx));
    0
}

// recvfrom(int fd, void *ubuf, size_t size, unsigned int flags, struct sockaddr *addr, int *addr_len)
// (Go's netlink libraries read replies with it.)
#[tracepoint(category = "syscalls", name = "sys_enter_recvfrom")]
pub fn sys_enter_recvfrom(ctx: TracePointContext) -> u32 {
    let _ = recv::enter(
        arg(&ctx, 0) as i64,
        arg(&ctx, 1),
        arg(&ctx, 2),
        recv_kind::BUF,
    );
    0
}

#[tracepoint(category = "syscalls", name = "sys_exit_recvfrom")]
pub fn sys_exit_recvfrom(ctx: TracePointContext) -> u32 {
    let _ = recv::exit(ret(&ctx));
    0
}

// recvmmsg(int fd, struct mmsghdr *mmsg, unsigned int vlen, unsigned int flags, timeout)
#[tracepoint(category = "syscalls", name = "sys_enter_recvmmsg")]
pub fn sys_enter_recvmmsg(ctx: TracePointContext) -> u32 {
    let _ = recv::enter(arg(&ctx, 0) as i64, arg(&ctx, 1), 0, recv_kind::MMSG);
    0
}

#[tracepoint(category = "syscalls", name = "sys_exit_recvmmsg")]
pub fn sys_exit_recvmmsg(ctx: TracePointContext) -> u32 {
    let _ = recv::exit(ret(&ctx));
    0
}

// read(unsigned int fd, char *buf, size_t count)
#[tracepoint(category = "syscalls", name = "sys_enter_read")]
pub fn sys_enter_read(ctx: TracePointContext) -> u32 {
    let _ = recv::enter(
        arg(&ctx, 0) as i64,
        arg(&ctx, 1),
        arg(&ctx, 2),
        recv_kind::BUF,
    );
    0
}

#[tracepoint(category = "syscalls", name = "sys_exit_read")]
pub fn sys_exit_read(ctx: TracePointContext) -> u32 {
    let _ = recv::exit(ret(&ctx));
    0
}

// sched_process_exec: `__data_loc char[] filename` at 8, `pid_t pid` at 12 — since 3.4.
// Runs after the new image is set up: remembers its path and argv as exec'd, and forgets the
// details userspace had for the old image.
#[tracepoint(category = "sched", name = "sched_process_exec")]
pub fn sched_process_exec(ctx: TracePointContext) -> u32 {
    let _ = try_sched_process_exec(&ctx);
    0
}

fn try_sched_process_exec(ctx: &TracePointContext) -> Option<()> {
    let tgid = (bpf_get_current_pid_tgid() >> 32) as u32;
    let _ = TASK_SEEN.remove(tgid);
    // SAFETY: the format puts a u32 __data_loc (offset | len << 16) at 8.
    let loc = unsafe { ctx.read_at::<u32>(8) }.ok()?;
    let src = ctx.as_ptr_u64() + u64::from(loc & 0xffff);
    let exec = EXEC_SCRATCH.get_ptr_mut(0)?;
    // SAFETY: per-CPU scratch owned by this program invocation.
    let exec = unsafe { &mut *exec };
    // SAFETY: src points into the tracepoint record; faults are reported as Err.
    let path = unsafe { bpf_probe_read_kernel_str_bytes(src as *const u8, &mut exec.path) }.ok()?;
    exec.path_len = path.len() as u32;
    // SAFETY: helper without preconditions.
    let task = unsafe { bpf_get_current_task() };
    exec.args_len = task::read_args(task, &mut exec.args);
    EXECS.insert(tgid, &*exec, 0).ok()
}

trait CtxAddr {
    fn as_ptr_u64(&self) -> u64;
}

impl CtxAddr for TracePointContext {
    fn as_ptr_u64(&self) -> u64 {
        use aya_ebpf::EbpfContext as _;
        self.as_ptr() as u64
    }
}
