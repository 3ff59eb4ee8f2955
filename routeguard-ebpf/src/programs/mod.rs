//! Entry points.
//!
//! The syscall path hangs off the raw tracepoints `sys_enter(struct pt_regs *regs, long id)` and
//! `sys_exit(struct pt_regs *regs, long ret)` (since 4.17; checked on 6.1, 6.12, 6.18), which
//! fire for every syscall and dispatch on its number. Per-syscall tracepoints would be simpler
//! but each goes through perf's trace buffers: measured here, one of them alone added ~2 µs to
//! every call. The raw ones still cost every syscall of the machine ~300–500 ns on 6.18
//! (`cargo xtask bench syscalls`), which is why the kernel-function path does not attach them
//! and hears requests in rtnetlink instead (`kfunc/requests.rs`).
//! Syscall arguments are read from `pt_regs` (offsets from BTF); at sys_exit they are still the
//! caller's, so receives need no enter/exit bookkeeping.

mod ack;
mod budget;
mod ioctl;
mod keepalive;
mod kern;
mod kfunc;
mod lsm;
mod maps;
mod notify;
mod rare;
mod recv;
mod send;
mod sock;
mod task;

use aya_ebpf::{
    helpers::{bpf_get_current_pid_tgid, bpf_get_current_task, bpf_probe_read_kernel_str_bytes},
    macros::{raw_tracepoint, tracepoint},
    programs::{RawTracePointContext, TracePointContext},
};
use routeguard_common::syscall;

use kern::{config_field, read};
use maps::{recv_kind, EXECS, EXEC_SCRATCH, TASK_SEEN};
use send::Source;

/// The saved user registers the programs need, read in one go: each probe read costs far
/// more than its bytes, and on x86_64 `dx, si, di, orig_ax, ip, cs` are 48 contiguous bytes
/// (the loader checks that against BTF and sets `regs_block` to their start).
pub(crate) struct Regs([u64; REGS_BLOCK_WORDS]);

const REGS_BLOCK_WORDS: usize = 6;

impl Regs {
    #[inline(always)]
    pub(crate) fn read(regs: u64) -> Option<Self> {
        read::<[u64; REGS_BLOCK_WORDS]>(regs, config_field!(offsets.regs_block)).map(Self)
    }

    /// The word holding the member at kernel offset `offset`.
    #[inline(always)]
    fn word(&self, offset: u32) -> Option<u64> {
        let index = offset.checked_sub(config_field!(offsets.regs_block))? / 8;
        self.0.get(index as usize).copied()
    }

    /// The first three syscall arguments as the caller passed them.
    #[inline(always)]
    fn args(&self) -> Option<[u64; 3]> {
        Some([
            self.word(config_field!(offsets.regs_arg0))?,
            self.word(config_field!(offsets.regs_arg1))?,
            self.word(config_field!(offsets.regs_arg2))?,
        ])
    }

    #[inline(always)]
    pub(crate) fn syscall_nr(&self) -> Option<u32> {
        self.word(config_field!(offsets.regs_syscall_nr))
            .map(|nr| nr as u32)
    }

    /// Compat (ia32) syscalls use another numbering: only 64-bit ones are dispatched. The
    /// selector is the low 16 bits of `cs` on every layout (see the loader's BTF table).
    #[inline(always)]
    pub(crate) fn native(&self) -> bool {
        self.word(config_field!(offsets.regs_cs))
            .map(|cs| cs as u16 as u32)
            == Some(config_field!(syscalls.user64_cs))
    }
}

// raw_tp sys_enter(struct pt_regs *regs, long id)
#[raw_tracepoint(tracepoint = "sys_enter")]
pub fn sys_enter(ctx: RawTracePointContext) -> u32 {
    if crate::programs::kern::floor() {
        return 0;
    }
    let _ = try_sys_enter(&ctx);
    0
}

#[inline(always)]
fn try_sys_enter(ctx: &RawTracePointContext) -> Option<()> {
    let id: u64 = ctx.arg(1);
    let id = id as u32;
    let via = if id == config_field!(syscalls.sendmsg) {
        syscall::SENDMSG
    } else if id == config_field!(syscalls.sendto) {
        syscall::SENDTO
    } else if id == config_field!(syscalls.sendmmsg) {
        syscall::SENDMMSG
    } else if id == config_field!(syscalls.write) {
        syscall::WRITE
    } else if id == config_field!(syscalls.writev) {
        syscall::WRITEV
    } else if id == config_field!(syscalls.ioctl) {
        syscall::IOCTL
    } else {
        return None;
    };
    let regs = Regs::read(ctx.arg(0))?;
    if !regs.native() {
        return None;
    }
    let [fd, a1, a2] = regs.args()?;
    let fd = fd as i32 as i64;
    match via {
        // sendmsg(int fd, struct user_msghdr *msg, unsigned flags)
        syscall::SENDMSG => send::capture(fd, via, Source::Msghdr(a1)),
        // sendto(int fd, void *buf, size_t len, …) and write(int fd, const void *buf, size_t n)
        syscall::SENDTO | syscall::WRITE => send::capture(fd, via, Source::Buf(a1, a2)),
        // sendmmsg(int fd, struct mmsghdr *mmsg, unsigned vlen, unsigned flags)
        syscall::SENDMMSG => send::capture(fd, via, Source::Mmsg(a1, a2)),
        // writev(int fd, const struct iovec *iov, int iovcnt)
        syscall::WRITEV => send::capture(fd, via, Source::Iov(a1, a2 as i32 as u64)),
        // ioctl(int fd, unsigned cmd, unsigned long arg)
        _ => ioctl::enter(fd, a1 as u32, a2),
    }
}

// raw_tp sys_exit(struct pt_regs *regs, long ret)
#[raw_tracepoint(tracepoint = "sys_exit")]
pub fn sys_exit(ctx: RawTracePointContext) -> u32 {
    if crate::programs::kern::floor() {
        return 0;
    }
    let _ = try_sys_exit(&ctx);
    0
}

#[inline(always)]
fn try_sys_exit(ctx: &RawTracePointContext) -> Option<()> {
    let regs = Regs::read(ctx.arg(0))?;
    let ret: i64 = ctx.arg(1);
    let id = regs.syscall_nr()?;
    let kind = if id == config_field!(syscalls.recvmsg) {
        recv_kind::MSGHDR
    } else if id == config_field!(syscalls.recvfrom) || id == config_field!(syscalls.read) {
        // recvfrom(int fd, void *buf, size_t len, …): Go's netlink libraries read replies with
        // it; read(int fd, void *buf, size_t n)
        recv_kind::BUF
    } else if id == config_field!(syscalls.recvmmsg) {
        recv_kind::MMSG
    } else if id == config_field!(syscalls.ioctl) {
        return ioctl::exit(ret);
    } else {
        return None;
    };
    if !regs.native() {
        return None;
    }
    let [fd, ptr, len] = regs.args()?;
    recv::exit(fd as i32 as i64, ptr, len, kind, ret)
}

// sched_process_exec: `__data_loc char[] filename` at 8, `pid_t pid` at 12 — since 3.4.
// Runs after the new image is set up: remembers its path and argv as exec'd, and forgets the
// details userspace had for the old image.
#[tracepoint(category = "sched", name = "sched_process_exec")]
pub fn sched_process_exec(ctx: TracePointContext) -> u32 {
    if crate::programs::kern::floor() {
        return 0;
    }
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
