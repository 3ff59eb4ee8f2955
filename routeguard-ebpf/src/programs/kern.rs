//! Reading kernel memory at offsets userspace resolved from BTF.

use aya_ebpf::helpers::{bpf_probe_read_kernel, bpf_probe_read_user};
use routeguard_common::{CaptureConfig, OFFSET_MISSING};

/// Filled in by the loader (`EbpfLoader::override_global("CONFIG", …)`) before load.
#[unsafe(no_mangle)]
static CONFIG: CaptureConfig = CaptureConfig::DEFAULT;

/// Reads one field of `CONFIG`. `read_volatile` keeps the compiler from folding the default in.
macro_rules! config_field {
    ($($field:ident).+) => {
        // SAFETY: CONFIG is a plain static in .rodata; reading it is always valid.
        unsafe { core::ptr::read_volatile(&$crate::programs::kern::config().$($field).+) }
    };
}
pub(crate) use config_field;

/// Whether this run returns at once, doing nothing: the bench's floor arm (see
/// `CaptureConfig::floor`), or a pinned capture no daemon reads any more (`keepalive`). Every
/// entry point starts with it.
#[inline(always)]
pub fn floor() -> bool {
    floor_arm() || super::keepalive::orphaned()
}

/// The bench's floor arm alone. The notification filter asks only this: it runs on a live
/// daemon's own sockets, and dropping there would blind the daemon's route mirror.
#[inline(always)]
pub fn floor_arm() -> bool {
    config_field!(floor) != 0
}

#[inline(always)]
pub fn config() -> &'static CaptureConfig {
    &CONFIG
}

/// Reads a `T` at `base + offset` in kernel memory; `None` when the offset is unknown on this
/// kernel, the base is null, or the read faults.
#[inline(always)]
pub fn read<T>(base: u64, offset: u32) -> Option<T> {
    if offset == OFFSET_MISSING || base == 0 {
        return None;
    }
    // SAFETY: bpf_probe_read_kernel copies with fault handling; a bad address is an Err.
    unsafe { bpf_probe_read_kernel((base + u64::from(offset)) as *const T).ok() }
}

/// Loads a `T` at `base + offset` straight from kernel memory: one instruction, no helper call.
///
/// Only for a `base` whose BTF type the verifier knows (an fentry/fexit argument, or a pointer
/// loaded this way from one), and an `offset` from the frozen `.rodata` config (so the verifier
/// sees a constant) that userspace checked is a whole member of exactly `size_of::<T>()` bytes,
/// not a bitfield. The verifier checks the access against BTF and makes the load fault-safe (a
/// bad pointer reads 0); anything else is refused at load time, never misread.
#[inline(always)]
pub fn load<T>(base: u64, offset: u32) -> Option<T> {
    if offset == OFFSET_MISSING || base == 0 {
        return None;
    }
    // SAFETY: see above: the verifier proves the access against the kernel's BTF and turns it
    // into an exception-handled load; volatile keeps it exactly this size.
    Some(unsafe { core::ptr::read_volatile((base + u64::from(offset)) as *const T) })
}

/// Reads a `T` from the current process's memory.
#[inline(always)]
pub fn read_user<T>(addr: u64) -> Option<T> {
    if addr == 0 {
        return None;
    }
    // SAFETY: bpf_probe_read_user copies with fault handling; a bad address is an Err.
    unsafe { bpf_probe_read_user(addr as *const T).ok() }
}

/// `value & mask`, computed here, in the register the verifier will check.
///
/// A plain `&` after `if n > MAX { n = MAX }` is folded away by LLVM (it can prove the bits are
/// already clear), which may then reload the unclamped length from the stack buffer it was read
/// into for the helper call. The 6.1 verifier keeps no bounds across such a reload (it does not
/// track spills of unbounded scalars) and rejects the program: "R2 min value is negative". An
/// AND inside `asm!` is opaque to LLVM, so it is emitted as written and bounds the value the
/// helper receives; a bounded spill is tracked by every kernel since 5.x.
#[inline(always)]
pub fn bound(value: u64, mask: u64) -> u64 {
    let mut value = value;
    // SAFETY: one register AND (BPF ALU64 `&=`); no memory, stack or control flow.
    unsafe {
        core::arch::asm!(
            "{value} &= {mask}",
            value = inout(reg) value,
            mask = in(reg) mask,
            options(pure, nomem, nostack, preserves_flags),
        );
    }
    value
}
