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

/// Reads a `T` from the current process's memory.
#[inline(always)]
pub fn read_user<T>(addr: u64) -> Option<T> {
    if addr == 0 {
        return None;
    }
    // SAFETY: bpf_probe_read_user copies with fault handling; a bad address is an Err.
    unsafe { bpf_probe_read_user(addr as *const T).ok() }
}
