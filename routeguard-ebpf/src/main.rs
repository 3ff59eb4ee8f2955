//! routeguard's eBPF programs: the syscall capture path.
//!
//! Tracepoints on the send syscalls copy every rtnetlink request that removes something (and
//! `ioctl(SIOCDELRT / SIOCSIFFLAGS down)`) from the sender's memory, with the sender's identity;
//! tracepoints on the receive syscalls pick up the kernel's NLMSG_ERROR replies so userspace can
//! tell whether the removal happened. Kernel struct offsets come from userspace (`CONFIG`),
//! resolved from the running kernel's BTF.
//!
//! Each entry point is a thin wrapper around a `try_*` function; the comment above it names the
//! tracepoint's prototype and the oldest kernel it was checked against.
#![cfg_attr(target_arch = "bpf", no_std)]
#![cfg_attr(target_arch = "bpf", no_main)]
// `asm!` on BPF (one opaque AND that keeps verifier-visible bounds: `programs::kern::bound`);
// the eBPF crate is built with nightly.
#![cfg_attr(target_arch = "bpf", feature(asm_experimental_arch))]
#![cfg_attr(not(target_arch = "bpf"), allow(dead_code, unused_imports))]

#[cfg(target_arch = "bpf")]
mod programs;

#[cfg(target_arch = "bpf")]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    // SAFETY: the verifier rejects any program that could reach a panic, so this is never run.
    unsafe { core::hint::unreachable_unchecked() }
}

#[cfg(target_arch = "bpf")]
#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";

/// On the host this crate only has to compile (for `cargo clippy --workspace`).
#[cfg(not(target_arch = "bpf"))]
fn main() {}
