//! An orphaned capture stops recording (see `routeguard_common::keepalive`).

use aya_ebpf::helpers::bpf_ktime_get_ns;

use super::maps::KEEPALIVE;

/// Whether no daemon has read the ring for the time it set: the program returns at once.
///
/// The daemon's reads go on every few seconds; while they do this costs an array lookup (which
/// the verifier inlines) and a clock read. Once orphaned, the first run to notice sets a flag and
/// every later run stops after the lookup, without asking for the time.
#[inline(always)]
pub fn orphaned() -> bool {
    let Some(k) = KEEPALIVE.get_ptr_mut(0) else {
        return false;
    };
    // SAFETY: the map's one entry, valid for the program's run; the words are read and written
    // whole (a race with another CPU or the daemon sets the same flag or loses one beat).
    unsafe {
        if (*k).orphaned != 0 {
            return true;
        }
        let after = (*k).orphan_after_ns;
        if after == 0 {
            return false;
        }
        if bpf_ktime_get_ns() > (*k).read_ns.saturating_add(after) {
            (*k).orphaned = 1;
            return true;
        }
    }
    false
}
