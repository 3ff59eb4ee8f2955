//! Prevention (`action = "deny"`): what the BPF LSM program on `netlink_send` refuses, and whom
//! it lets through. The loader fills these maps from the deny entries of the protect policy.

/// Deny selectors the program tests (one per deny entry; bit `i` of an allow mask is entry `i`).
pub const DENY_MAX: u32 = 16;

/// `DenySelector::kind`.
pub mod deny_kind {
    pub const RULE: u8 = 1;
    pub const ROUTE: u8 = 2;
}

/// One deny entry, as the program matches it. A field left out of the entry matches anything.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DenySelector {
    /// Network namespace inode; 0: every namespace.
    pub netns_ino: u32,
    /// Table id; 0: any.
    pub table: u32,
    /// Rule priority or route metric range, when `has_priority` is 1.
    pub priority_lo: u32,
    pub priority_hi: u32,
    /// [`deny_kind`].
    pub kind: u8,
    /// AF_INET / AF_INET6; 0: any.
    pub family: u8,
    pub has_priority: u8,
    /// 1 when `dst` / `dst_len` select routes by destination prefix.
    pub has_dst: u8,
    pub dst_len: u8,
    pub _pad: [u8; 3],
    /// Network byte order, 4 bytes used for IPv4.
    pub dst: [u8; 16],
}

/// Entry 0 of `DENY_STATE`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DenyState {
    /// Valid entries of `DENY_SELECTORS`.
    pub count: u32,
    /// Non-zero: allow and record `would-deny` instead of refusing.
    pub dry_run: u32,
}

/// Key of `ALLOW_EXE`: the executable file (`mm->exe_file->f_inode`), as `TaskRecord` has it.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct ExeKey {
    /// `i_sb->s_dev`, the kernel's encoding `MAJOR << 20 | MINOR`.
    pub dev: u32,
    pub _pad: u32,
    pub ino: u64,
}

const _: () = assert!(core::mem::size_of::<DenySelector>() == 40);
const _: () = assert!(core::mem::size_of::<DenyState>() == 8);
const _: () = assert!(core::mem::size_of::<ExeKey>() == 16);

#[cfg(feature = "user")]
mod pod {
    // SAFETY: repr(C), integers only, padding spelled out: every bit pattern is valid.
    unsafe impl aya::Pod for super::DenySelector {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::DenyState {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::ExeKey {}
}
