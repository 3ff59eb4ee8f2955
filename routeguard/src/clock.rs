//! Kernel timestamps (`bpf_ktime_get_ns`, CLOCK_MONOTONIC) to wall-clock time. Neutral ground:
//! the correlator, the mirror and the restore engine all read this clock, and none of them owns it.

use crate::event::Timestamp;

#[derive(Clone, Copy, Debug)]
pub struct Clock {
    /// Wall-clock ns minus monotonic ns, sampled once at start.
    offset_ns: i128,
}

fn now(clock: libc::clockid_t) -> i128 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes into the timespec we own; both clocks always exist on Linux.
    unsafe { libc::clock_gettime(clock, &mut ts) };
    i128::from(ts.tv_sec) * 1_000_000_000 + i128::from(ts.tv_nsec)
}

impl Clock {
    pub fn new() -> Self {
        Self {
            offset_ns: now(libc::CLOCK_REALTIME) - now(libc::CLOCK_MONOTONIC),
        }
    }

    /// A clock with a fixed offset, for tests.
    pub fn with_offset(offset_ns: i128) -> Self {
        Self { offset_ns }
    }

    /// Current monotonic time in ns: the kernel's `bpf_ktime_get_ns`.
    pub fn monotonic_ns() -> u64 {
        now(libc::CLOCK_MONOTONIC) as u64
    }

    pub fn wall(&self, monotonic_ns: u64) -> Timestamp {
        Timestamp(i128::from(monotonic_ns) + self.offset_ns)
    }
}

impl Default for Clock {
    fn default() -> Self {
        Self::new()
    }
}
