//! Budgets: how many bytes of removal requests a sender may put in the ring.
//!
//! The ring is shared by everyone. A sender rtnetlink will refuse (no CAP_NET_ADMIN over the
//! socket's namespace), or a privileged one in a namespace other than the initial one (a pod
//! with its own namespace and CAP_NET_ADMIN in it), could otherwise fill it and make the
//! programs drop root's removals with the rest. Such requests are budgeted per (network
//! namespace, cgroup): a token bucket of bytes, refilled at `CaptureConfig::budget_rate`, at most
//! `budget_burst`; all budgeted senders together share one more bucket of [`SHARED_FACTOR`]
//! times that, so that making many namespaces or cgroups does not multiply the budget.
//! Requests beyond it are counted in the sender's [`Budget`], not copied; userspace reads the
//! counts and reports them (`kind: "suppressed"`).

/// The shared bucket of every budgeted sender is this many times one sender's.
pub const SHARED_FACTOR: u64 = 4;

/// Budgets kept at once; the least recently used goes first (with its unreported counts).
pub const BUDGETS_MAX: u32 = 4096;

/// Namespaces exempt from budgets besides the initial one (those protect policies name).
pub const EXEMPT_MAX: u32 = 256;

/// Whom a budget is for.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct BudgetKey {
    /// Inode of the socket's network namespace.
    pub netns_ino: u32,
    pub _pad: u32,
    /// The sender's cgroup v2 id.
    pub cgroup_id: u64,
}

/// One sender's bucket and what it had suppressed (counts only grow; userspace reports the
/// difference since it last looked).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Budget {
    /// Bytes it may still send now.
    pub tokens: u64,
    /// When `tokens` was last refilled (ns, `bpf_ktime_get_ns`).
    pub refilled_ns: u64,
    /// Requests (sends) not copied.
    pub suppressed: u64,
    /// Their bytes.
    pub suppressed_bytes: u64,
    /// Of `suppressed`, those predicted to be refused by rtnetlink.
    pub refused: u64,
    /// First and last suppression (ns, `bpf_ktime_get_ns`).
    pub first_ns: u64,
    pub last_ns: u64,
    /// uid and tgid of the last sender suppressed.
    pub uid: u32,
    pub pid: u32,
}

/// The rate and burst userspace last set (`BUDGET_LIMITS`, one entry), so a daemon's reload
/// changes them in the running programs, and a daemon adopting a pinned capture applies its own.
/// Until userspace sets them (`set` 0) the programs use `CaptureConfig::budget_rate` and
/// `budget_burst`, the values they were loaded with.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BudgetLimits {
    /// Bytes a second per sender; 0: no budgets.
    pub rate: u32,
    /// The most a sender may send at once.
    pub burst: u32,
    /// Non-zero once userspace wrote `rate` and `burst`.
    pub set: u32,
    pub _pad: u32,
}

const _: () = assert!(core::mem::size_of::<BudgetKey>() == 16);
const _: () = assert!(core::mem::size_of::<BudgetLimits>() == 16);
const _: () = assert!(core::mem::size_of::<Budget>() == 64);

#[cfg(feature = "user")]
mod pod {
    // SAFETY: repr(C), integers only, padding spelled out: every bit pattern is valid.
    unsafe impl aya::Pod for super::BudgetKey {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::Budget {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::BudgetLimits {}
}
