//! The kernel-function path: fentry/fexit on the kernel's own deletion functions.
//!
//! One record per removed object, read from the kernel's structs (offsets from BTF, `KCONFIG`).
//! Why it was removed comes from *marks*: the outermost marked function running on this thread
//! (a netdev/address notifier, `cleanup_net`, `fib_table_delete`) says link-down, address
//! removal, netns exit or request; `fib6_run_gc` marks its CPU (it runs with bottom halves off),
//! so an expiring route is never blamed on whichever task the timer interrupted.

mod marks;
mod nexthop;
mod record;
pub mod requests;
mod route4;
mod route6;
mod rule;

/// Reads one field of `KCONFIG`. `read_volatile` keeps the compiler from folding the default in.
macro_rules! kconfig_field {
    ($($field:ident).+) => {
        // SAFETY: KCONFIG is a plain static in .rodata; reading it is always valid.
        unsafe { core::ptr::read_volatile(&$crate::programs::kfunc::record::kconfig().$($field).+) }
    };
}
pub(crate) use kconfig_field;
