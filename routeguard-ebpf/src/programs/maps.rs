//! Maps shared by the programs. Names are part of the loader's contract (`capture::maps`).

use aya_ebpf::{
    macros::map,
    maps::{Array, HashMap, LruHashMap, PerCpuArray, RingBuf},
};
use routeguard_common::{
    budget::{BUDGETS_MAX, EXEMPT_MAX},
    counter, Budget, BudgetKey, BudgetLimits, Keepalive, KernelRecord, NotifyRecord, RequestRecord,
    TaskRecord, ARGS_MAX, EXE_PATH_MAX,
};

/// Every record for userspace. Size is set by the loader (`--ring-size`); this is the default.
#[map]
pub static EVENTS: RingBuf = RingBuf::with_byte_size(16 * 1024 * 1024, 0);

/// Per-CPU loss and truncation counters, indexed by `routeguard_common::counter`.
#[map]
pub static COUNTERS: PerCpuArray<u64> = PerCpuArray::with_max_entries(counter::COUNT, 0);

/// Entry 0: the tgid of the routeguard that reads the ring. Its requests are tagged, never
/// dropped (restores are recognised). A map, not a load-time global: a daemon that adopts
/// programs pinned by its predecessor writes its own tgid here.
#[map]
pub static SELF_TGID: Array<u32> = Array::with_max_entries(1, 0);

/// Entry 0: when the daemon last read the ring, and how long unread makes the capture an
/// orphan that stops recording (`keepalive::orphaned`). Pinned: the next daemon writes here.
#[map]
pub static KEEPALIVE: Array<Keepalive> = Array::with_max_entries(1, 0);

/// (network namespace, cgroup) → its budget and what it had suppressed (`budget.rs`).
/// Userspace reads the counts; the least recently used goes first when it is full.
#[map]
pub static BUDGETS: LruHashMap<BudgetKey, Budget> = LruHashMap::with_max_entries(BUDGETS_MAX, 0);

/// Entry 0: the bucket every budgeted sender also draws from.
#[map]
pub static BUDGET_SHARED: Array<Budget> = Array::with_max_entries(1, 0);

/// Entry 0: the budgets' rate and burst as the daemon last set them (at start and on SIGHUP);
/// until it does, the values loaded in `CONFIG`.
#[map]
pub static BUDGET_LIMITS: Array<BudgetLimits> = Array::with_max_entries(1, 0);

/// Network namespace inodes a protect policy names: privileged removals there are never
/// budgeted. Userspace fills it at start and on SIGHUP.
#[map]
pub static BUDGET_EXEMPT: HashMap<u32, u8> = HashMap::with_max_entries(EXEMPT_MAX, 0);

/// Scratch space to assemble a request (too big for the 512-byte BPF stack).
#[map]
pub static REQUEST_SCRATCH: PerCpuArray<RequestRecord> = PerCpuArray::with_max_entries(1, 0);

/// Scratch space to assemble a kernel-function record.
#[map]
pub static KERNEL_SCRATCH: PerCpuArray<KernelRecord> = PerCpuArray::with_max_entries(1, 0);

/// Scratch space to assemble a notification record.
#[map]
pub static NOTIFY_SCRATCH: PerCpuArray<NotifyRecord> = PerCpuArray::with_max_entries(1, 0);

/// Scratch space to assemble a task record.
#[map]
pub static TASK_SCRATCH: PerCpuArray<TaskRecord> = PerCpuArray::with_max_entries(1, 0);

/// Scratch space for an [`ExecInfo`] before it goes into `EXECS`.
#[map]
pub static EXEC_SCRATCH: PerCpuArray<ExecInfo> = PerCpuArray::with_max_entries(1, 0);

/// tgid → start_time of the process image whose details userspace already has.
#[map]
pub static TASK_SEEN: LruHashMap<u32, u64> = LruHashMap::with_max_entries(8192, 0);

/// tgid → its last execve as it was made (from `sched_process_exec`).
#[map]
pub static EXECS: LruHashMap<u32, ExecInfo> = LruHashMap::with_max_entries(8192, 0);

/// tgid → time (ns) of its last captured netlink request: only these processes' receives are
/// inspected for the kernel's replies, so every other recv in the system costs one lookup.
#[map]
pub static AWAITING_REPLY: LruHashMap<u32, u64> = LruHashMap::with_max_entries(4096, 0);

/// pid_tgid of threads inside a captured ioctl, from sys_enter to sys_exit.
#[map]
pub static IOCTL_IN_FLIGHT: LruHashMap<u64, u8> = LruHashMap::with_max_entries(1024, 0);

/// A process image as exec'd: the path it was started by and its argv before it ran. Programs
/// may rewrite their own argv later (iproute2 overwrites the `/` of `fwmark 0x10/0xff`), so
/// this is what "the command that was run" means.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct ExecInfo {
    pub path_len: u32,
    pub args_len: u32,
    pub path: [u8; EXE_PATH_MAX],
    pub args: [u8; ARGS_MAX],
}

/// How a receive names its buffer.
pub mod recv_kind {
    /// `ptr` is a `struct user_msghdr *`.
    pub const MSGHDR: u32 = 1;
    /// `ptr` is the buffer itself, `len` its size.
    pub const BUF: u32 = 2;
    /// `ptr` is a `struct mmsghdr *`.
    pub const MMSG: u32 = 3;
}

/// Adds one to a per-CPU counter.
#[inline(always)]
pub fn count(index: u32) {
    if let Some(slot) = COUNTERS.get_ptr_mut(index) {
        // SAFETY: a per-CPU slot is only touched by this CPU, and programs don't nest on it.
        unsafe { *slot += 1 };
    }
}

/// This CPU's count in a per-CPU counter.
#[inline(always)]
pub fn counted(index: u32) -> u64 {
    // SAFETY: a per-CPU slot, only written by this CPU.
    COUNTERS.get_ptr(index).map_or(0, |slot| unsafe { *slot })
}
