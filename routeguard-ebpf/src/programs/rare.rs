//! Rare conditions the programs tell userspace about, through aya-log: what only the kernel can
//! see — a read that faulted, a request cut at the copy limit, an offset this kernel lacks at the
//! moment a program first needed it. Userspace forwards the lines into `tracing`
//! (`capture::ebpf_log`); every condition is also counted in `COUNTERS` where it loses data.
//!
//! Never per event, and never on a path a flood can drive (a full ring stays a counter). Two
//! gates, cheapest first:
//! 1. The level: `AYA_LOG_LEVEL`, a `.rodata` global the loader sets (off unless `-v`). `.rodata`
//!    is frozen, so the verifier sees a constant: with logging off every call below is dead code,
//!    removed at load, and costs nothing.
//! 2. A per-site rate limit (`LOGGED`): one line per site every [`EVERY_NS`], or only the first
//!    ([`ONCE`]). An unprivileged sender can make a request truncated or its memory unreadable
//!    at will; a flood of them gets one line per interval.

use aya_ebpf::{helpers::bpf_ktime_get_ns, macros::map, maps::Array};
use routeguard_common::OFFSET_MISSING;

/// Where a line comes from: one rate-limit slot each.
pub mod site {
    /// A request on a send syscall cut at the copy limit, or whose memory could not be read.
    pub const SEND_INCOMPLETE: u32 = 0;
    /// An ioctl argument that could not be read.
    pub const IOCTL_UNREADABLE: u32 = 1;
    /// A deletion notification that could not be loaded from its skb.
    pub const NOTIFY_UNREADABLE: u32 = 2;
    /// A request heard in rtnetlink longer than the copy limit.
    pub const REQUEST_TRUNCATED: u32 = 3;
    /// A request heard in rtnetlink whose (kernel) memory could not be read.
    pub const REQUEST_UNREADABLE: u32 = 4;
    /// A netlink message a kernel-function record copies that could not be read.
    pub const KERNEL_MSG_UNREADABLE: u32 = 5;
    /// Missing offsets, each logged once.
    pub const OFFSET_NETLINK_SOCK_PORTID: u32 = 6;
    pub const OFFSET_NLCB_PORTID: u32 = 7;
    pub const OFFSET_FC_NLINFO: u32 = 8;
    pub const OFFSET_FIB_NH: u32 = 9;
    pub const OFFSET_FIB6_NH: u32 = 10;
    pub const COUNT: u32 = 11;
}

/// A site that may log again logs at most this often (on each CPU that races it: see [`due`]).
pub const EVERY_NS: u64 = 10_000_000_000;
/// A site that logs only its first occurrence.
pub const ONCE: u64 = u64::MAX;

/// Per site: when it last logged (`bpf_ktime_get_ns`), 0 if never. One slot for all CPUs.
#[map]
static LOGGED: Array<u64> = Array::with_max_entries(site::COUNT, 0);

/// Whether `site` may log now (at most once per `every` ns); notes that it does.
///
/// The check and the store are not atomic: CPUs that race here may each log once, never more.
#[inline(always)]
pub fn due(site: u32, every: u64) -> bool {
    let Some(last) = LOGGED.get_ptr_mut(site) else {
        return false;
    };
    // SAFETY: helper without preconditions.
    let now = unsafe { bpf_ktime_get_ns() };
    // SAFETY: a live map value; an aligned u64 is read and written whole.
    let last = unsafe { &mut *last };
    if *last != 0 && now.wrapping_sub(*last) < every {
        return false;
    }
    *last = now;
    true
}

/// Whether lines at `level` are on: a constant to the verifier (`AYA_LOG_LEVEL` is `.rodata`).
/// aya-log's own test, from its (pinned, 0.2.0) macro support.
#[inline(always)]
pub fn on(level: aya_log_ebpf::macro_support::Level) -> bool {
    aya_log_ebpf::macro_support::level_enabled(level)
}

/// The current process (tgid), for the lines.
#[inline(always)]
pub fn pid() -> u32 {
    (aya_ebpf::helpers::bpf_get_current_pid_tgid() >> 32) as u32
}

/// `rare!(Level, [if when,] site, every, "format", args…)`: an aya-log line at `Level` (`Error`
/// … `Trace`), when `when` holds, if that level is on and `site` is [`due`].
///
/// The level is tested first, then `when`: with logging off the verifier drops the whole
/// branch, and never has to tell apart states that differ only in what `when` reads (a count
/// kept in a register would multiply the states of every copy loop before it).
///
/// aya-log ignores its context argument; these calls sit in helpers that have none.
macro_rules! rare {
    ($level:ident, if $when:expr, $site:expr, $every:expr, $($message:tt)+) => {
        if $crate::programs::rare::on(::aya_log_ebpf::macro_support::Level::$level)
            && $when
            && $crate::programs::rare::due($site, $every)
        {
            ::aya_log_ebpf::log!(&(), ::aya_log_ebpf::macro_support::Level::$level, $($message)+);
        }
    };
    ($level:ident, $site:expr, $every:expr, $($message:tt)+) => {
        $crate::programs::rare::rare!($level, if true, $site, $every, $($message)+)
    };
}
pub(crate) use rare;

/// Whether `offset` is known on this kernel. The first time a program finds it missing it says
/// so, once: the loader already listed every missing offset at start; this line says when one
/// first cost an event something, and whose event.
#[inline(always)]
pub fn offset_known(offset: u32, site: u32, name: &str, loses: &str) -> bool {
    if offset != OFFSET_MISSING {
        return true;
    }
    rare!(
        Debug,
        site,
        ONCE,
        "offset {} is missing on this kernel; first needed for pid {}: {}",
        name,
        pid(),
        loses
    );
    false
}
