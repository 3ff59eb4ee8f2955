//! Kernel struct offsets, resolved from the running kernel's BTF by userspace and handed to the
//! eBPF programs as a read-only global. Nothing here is compiled in: a field the running kernel
//! lacks is [`OFFSET_MISSING`], and the programs skip the enrichment that needs it.

/// Marks a field the running kernel's BTF does not have (or has in a shape we cannot read).
pub const OFFSET_MISSING: u32 = u32::MAX;

/// Bytes of `pt_regs` the programs read in one go, starting at `KernelOffsets::regs_block`.
pub const REGS_BLOCK_BYTES: u32 = 48;

/// Byte offsets of the kernel struct members the programs read. Each names `struct.member`
/// (nested members flattened, e.g. `file.f_path.dentry`).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KernelOffsets {
    /// `task_struct.real_parent`
    pub task_real_parent: u32,
    /// `task_struct.tgid`
    pub task_tgid: u32,
    /// `task_struct.comm`
    pub task_comm: u32,
    /// `task_struct.mm`
    pub task_mm: u32,
    /// `task_struct.files`
    pub task_files: u32,
    /// `task_struct.start_time` (ns since boot, monotonic)
    pub task_start_time: u32,
    /// `task_struct.cgroups` (`struct css_set *`)
    pub task_cgroups: u32,
    /// `css_set.dfl_cgrp`
    pub css_set_dfl_cgrp: u32,
    /// `cgroup.kn`
    pub cgroup_kn: u32,
    /// `kernfs_node.name`
    pub kernfs_node_name: u32,
    /// `mm_struct.arg_start`
    pub mm_arg_start: u32,
    /// `mm_struct.arg_end`
    pub mm_arg_end: u32,
    /// `mm_struct.exe_file`
    pub mm_exe_file: u32,
    /// `file.f_path.dentry`
    pub file_dentry: u32,
    /// `file.private_data`
    pub file_private_data: u32,
    /// `file.f_inode`
    pub file_inode: u32,
    /// `inode.i_mode` (u16): tells a socket file from any other before `private_data` is trusted
    pub inode_mode: u32,
    /// `dentry.d_name.name`
    pub dentry_name: u32,
    /// `files_struct.fdt`
    pub files_fdt: u32,
    /// `fdtable.max_fds`
    pub fdtable_max_fds: u32,
    /// `fdtable.fd`
    pub fdtable_fd: u32,
    /// `socket.sk`
    pub socket_sk: u32,
    /// `sock.__sk_common.skc_family` (u16)
    pub sock_family: u32,
    /// `sock.__sk_common.skc_net` (`possible_net_t`, a `struct net *`)
    pub sock_net: u32,
    /// `sock.sk_protocol` (u16; missing when the kernel still packs it in a bitfield)
    pub sock_protocol: u32,
    /// `net.ns.inum`
    pub net_ns_inum: u32,
    /// `task_struct.pid` (the thread id)
    pub task_pid: u32,
    /// `task_struct.nsproxy`
    pub task_nsproxy: u32,
    /// `nsproxy.net_ns`
    pub nsproxy_net_ns: u32,
    /// `netlink_sock.portid`: the port id the kernel names a netlink sender by (`nlmsg_pid` of
    /// the notifications a request causes)
    pub netlink_sock_portid: u32,
    /// `pt_regs.di`: first syscall argument (x86_64).
    pub regs_arg0: u32,
    /// `pt_regs.si`: second syscall argument.
    pub regs_arg1: u32,
    /// `pt_regs.dx`: third syscall argument.
    pub regs_arg2: u32,
    /// `pt_regs.orig_ax`: the syscall number, still there at sys_exit.
    pub regs_syscall_nr: u32,
    /// `pt_regs.cs`: tells 64-bit syscalls from ia32 compat ones, which number differently.
    pub regs_cs: u32,
    /// Start of the 48 bytes of `pt_regs` read at once; every `regs_*` member lies inside it,
    /// 8-byte aligned relative to it (checked by the loader).
    pub regs_block: u32,
    /// `sk_buff.sk`: the socket a received skb is queued to
    pub skb_sk: u32,
    /// `sk_buff.data`
    pub skb_data: u32,
    /// `sk_buff.len` (u32)
    pub skb_len: u32,
    /// `inode.i_ino` (`unsigned long`): with the device, the executable's identity
    pub inode_ino: u32,
    /// `inode.i_sb` (`struct super_block *`)
    pub inode_sb: u32,
    /// `super_block.s_dev` (`dev_t`, the kernel's `MAJOR << 20 | MINOR`)
    pub super_block_dev: u32,
    /// `task_struct.cred` (the effective credentials, `const struct cred *`)
    pub task_cred: u32,
    /// `cred.cap_effective` (`kernel_cap_t`: a u64 since 6.3, `u32[2]` before; read as u64)
    pub cred_cap_effective: u32,
    /// `cred.euid` (`kuid_t`)
    pub cred_euid: u32,
    /// `cred.user_ns`
    pub cred_user_ns: u32,
    /// `user_namespace.parent`
    pub user_ns_parent: u32,
    /// `user_namespace.level` (int; the initial namespace is 0, at most 32)
    pub user_ns_level: u32,
    /// `user_namespace.owner` (`kuid_t`)
    pub user_ns_owner: u32,
    /// `net.user_ns`: the user namespace that owns a network namespace
    pub net_user_ns: u32,
}

impl KernelOffsets {
    /// Every field missing: the programs then capture nothing that needs kernel structs.
    pub const MISSING: Self = Self {
        task_real_parent: OFFSET_MISSING,
        task_tgid: OFFSET_MISSING,
        task_comm: OFFSET_MISSING,
        task_mm: OFFSET_MISSING,
        task_files: OFFSET_MISSING,
        task_start_time: OFFSET_MISSING,
        task_cgroups: OFFSET_MISSING,
        css_set_dfl_cgrp: OFFSET_MISSING,
        cgroup_kn: OFFSET_MISSING,
        kernfs_node_name: OFFSET_MISSING,
        mm_arg_start: OFFSET_MISSING,
        mm_arg_end: OFFSET_MISSING,
        mm_exe_file: OFFSET_MISSING,
        file_dentry: OFFSET_MISSING,
        file_private_data: OFFSET_MISSING,
        file_inode: OFFSET_MISSING,
        inode_mode: OFFSET_MISSING,
        dentry_name: OFFSET_MISSING,
        files_fdt: OFFSET_MISSING,
        fdtable_max_fds: OFFSET_MISSING,
        fdtable_fd: OFFSET_MISSING,
        socket_sk: OFFSET_MISSING,
        sock_family: OFFSET_MISSING,
        sock_net: OFFSET_MISSING,
        sock_protocol: OFFSET_MISSING,
        net_ns_inum: OFFSET_MISSING,
        task_pid: OFFSET_MISSING,
        task_nsproxy: OFFSET_MISSING,
        nsproxy_net_ns: OFFSET_MISSING,
        netlink_sock_portid: OFFSET_MISSING,
        regs_arg0: OFFSET_MISSING,
        regs_arg1: OFFSET_MISSING,
        regs_arg2: OFFSET_MISSING,
        regs_syscall_nr: OFFSET_MISSING,
        regs_cs: OFFSET_MISSING,
        regs_block: OFFSET_MISSING,
        skb_sk: OFFSET_MISSING,
        skb_data: OFFSET_MISSING,
        skb_len: OFFSET_MISSING,
        inode_ino: OFFSET_MISSING,
        inode_sb: OFFSET_MISSING,
        super_block_dev: OFFSET_MISSING,
        task_cred: OFFSET_MISSING,
        cred_cap_effective: OFFSET_MISSING,
        cred_euid: OFFSET_MISSING,
        cred_user_ns: OFFSET_MISSING,
        user_ns_parent: OFFSET_MISSING,
        user_ns_level: OFFSET_MISSING,
        user_ns_owner: OFFSET_MISSING,
        net_user_ns: OFFSET_MISSING,
    };
}

/// Syscall numbers of the running architecture (userspace knows them; the programs must not
/// hard-code one architecture's table). `u32::MAX` never matches.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SyscallNumbers {
    pub sendmsg: u32,
    pub sendto: u32,
    pub sendmmsg: u32,
    pub write: u32,
    pub writev: u32,
    pub ioctl: u32,
    pub recvmsg: u32,
    pub recvfrom: u32,
    pub recvmmsg: u32,
    pub read: u32,
    /// The code segment selector of 64-bit user mode; other values are compat syscalls.
    pub user64_cs: u32,
}

impl SyscallNumbers {
    pub const NONE: Self = Self {
        sendmsg: u32::MAX,
        sendto: u32::MAX,
        sendmmsg: u32::MAX,
        write: u32::MAX,
        writev: u32::MAX,
        ioctl: u32::MAX,
        recvmsg: u32::MAX,
        recvfrom: u32::MAX,
        recvmmsg: u32::MAX,
        read: u32::MAX,
        user64_cs: u32::MAX,
    };
}

/// Settings handed to the programs as the `CONFIG` global.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CaptureConfig {
    pub offsets: KernelOffsets,
    pub syscalls: SyscallNumbers,
    /// Wake userspace once this many bytes wait in the ring; below that the loader polls.
    pub wakeup_bytes: u32,
    /// Non-zero: every program returns at once, doing nothing (`cargo xtask bench overhead`'s
    /// floor arm: what the hooks cost by themselves). Never set outside benches.
    pub floor: u32,
    /// Non-zero (the syscall path): the notification filter copies the route deletions a
    /// request made into the ring. Zero (the kernel-function path, whose records report every
    /// route removal): it drops every route deletion unread, and copies only rule deletions.
    pub notify_routes: u32,
    /// The initial network namespace's inode (`/proc/1/ns/net`, or the file
    /// `ROUTEGUARD_HOST_NETNS` names): privileged removals there are never budgeted. 0: unknown
    /// (then none is exempt by namespace).
    pub host_netns_ino: u32,
    /// Budget of each (network namespace, cgroup) whose removal requests are budgeted
    /// (`crate::budget`): bytes of requests per second; 0 turns budgets off.
    pub budget_rate: u32,
    /// The most bytes such a sender may send at once, after a quiet spell.
    pub budget_burst: u32,
    pub _pad: u32,
}

impl CaptureConfig {
    pub const DEFAULT: Self = Self {
        offsets: KernelOffsets::MISSING,
        syscalls: SyscallNumbers::NONE,
        wakeup_bytes: 256 * 1024,
        floor: 0,
        notify_routes: 1,
        host_netns_ino: 0,
        budget_rate: 0,
        budget_burst: 0,
        _pad: 0,
    };
}

// Both sides read these as raw bytes: keep the layouts fixed.
const _: () = assert!(core::mem::size_of::<KernelOffsets>() == 50 * 4);
const _: () = assert!(core::mem::size_of::<SyscallNumbers>() == 11 * 4);
const _: () = assert!(core::mem::size_of::<CaptureConfig>() == 50 * 4 + 11 * 4 + 7 * 4);

#[cfg(feature = "user")]
mod pod {
    // SAFETY: all are repr(C), made only of u32 fields with no padding, so every bit pattern is
    // a valid value and they can be copied into the program's .rodata as bytes.
    unsafe impl aya::Pod for super::KernelOffsets {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::CaptureConfig {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::SyscallNumbers {}
}
