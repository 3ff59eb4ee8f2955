//! The daemon's heartbeat to its pinned programs: an orphaned capture stops recording.
//!
//! A capture pinned in bpffs outlives the daemon that loaded it (see the loader's `capture::pin`).
//! If no daemon comes back it would copy requests into a ring nobody reads, for ever, on every
//! syscall of the machine. So the daemon that reads the ring writes the time of its last read
//! here every few seconds, and every program's first lines compare it with the clock: once
//! nobody has read for `orphan_after_ns`, they return at once, as the bench's floor arm does.

/// The one entry of the `KEEPALIVE` array map (pinned beside the ring).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Keepalive {
    /// `CLOCK_MONOTONIC` (the programs' `bpf_ktime_get_ns`) of the daemon's last read of the
    /// ring.
    pub read_ns: u64,
    /// Nobody read for this long: the programs stop recording. 0: never (an unpinned capture,
    /// which dies with its reader).
    pub orphan_after_ns: u64,
    /// Set by the first program run that found the capture orphaned: later runs return after
    /// reading this word, without asking for the time (so an orphan costs what the floor arm
    /// costs). The next daemon clears it.
    pub orphaned: u32,
    pub _pad: u32,
}

impl Keepalive {
    /// When the capture stopped (or stops) recording, if it is orphaned at `now_ns`.
    pub fn orphaned_since(&self, now_ns: u64) -> Option<u64> {
        if self.orphan_after_ns == 0 {
            return None;
        }
        let deadline = self.read_ns.saturating_add(self.orphan_after_ns);
        (self.orphaned != 0 || now_ns > deadline).then_some(deadline)
    }
}

const _: () = assert!(core::mem::size_of::<Keepalive>() == 24);

#[cfg(feature = "user")]
// SAFETY: repr(C), integers only, padding spelled out: every bit pattern is a valid value.
unsafe impl aya::Pod for Keepalive {}
