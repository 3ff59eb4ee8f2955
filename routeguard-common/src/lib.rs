//! Wire types shared by the eBPF programs and the userspace loader.
//!
//! Everything here crosses the kernel/user boundary through the ring buffer or as a global
//! handed to the programs at load time, so every type is `#[repr(C)]`, holds only integers and
//! byte arrays, and spells out its padding. Sizes and offsets are asserted at compile time so the
//! two sides cannot drift. Record kinds are plain `u16` ids decoded with `TryFrom`: an unknown id
//! is an error value in userspace, never undefined behaviour.
#![cfg_attr(not(feature = "user"), no_std)]

pub mod budget;
pub mod keepalive;
pub mod kfunc;
pub mod offsets;
pub mod prevent;
pub mod records;

pub use budget::{Budget, BudgetKey, BudgetLimits};
pub use keepalive::Keepalive;
pub use kfunc::{KernelFunctionConfig, KernelFunctionOffsets};
pub use offsets::{CaptureConfig, KernelOffsets, SyscallNumbers, OFFSET_MISSING, REGS_BLOCK_BYTES};
pub use records::*;
