//! From a file descriptor of the current task to its socket: family, protocol, network namespace.

use super::kern::{config_field, read};

pub const AF_NETLINK: u16 = 16;
pub const NETLINK_ROUTE: u16 = 0;
const S_IFMT: u16 = 0o170000;
const S_IFSOCK: u16 = 0o140000;

pub struct Sock {
    /// `struct sock *`
    pub sk: u64,
    pub family: u16,
    pub protocol: u16,
    pub netns_ino: u32,
    /// `struct net *` of the socket's namespace (0 when unknown).
    pub net: u64,
}

impl Sock {
    #[inline(always)]
    pub fn is_rtnetlink(&self) -> bool {
        self.family == AF_NETLINK && self.protocol == NETLINK_ROUTE
    }
}

/// Resolves `fd` of `task` by walking `task->files->fdt->fd[fd]`. `None` if it is not a socket
/// (checked on the inode mode before `private_data` is trusted) or an offset is missing.
#[inline(always)]
pub fn lookup(task: u64, fd: i64) -> Option<Sock> {
    if fd < 0 {
        return None;
    }
    let fd = fd as u64;
    let files = read::<u64>(task, config_field!(offsets.task_files))?;
    let fdt = read::<u64>(files, config_field!(offsets.files_fdt))?;
    let max_fds = read::<u32>(fdt, config_field!(offsets.fdtable_max_fds))?;
    if fd >= u64::from(max_fds) {
        return None;
    }
    let fd_array = read::<u64>(fdt, config_field!(offsets.fdtable_fd))?;
    // SAFETY of the arithmetic: fd < max_fds, the array's length; the read itself is checked.
    let file = read::<u64>(fd_array + fd * 8, 0)?;
    let inode = read::<u64>(file, config_field!(offsets.file_inode))?;
    let mode = read::<u16>(inode, config_field!(offsets.inode_mode))?;
    if mode & S_IFMT != S_IFSOCK {
        return None;
    }
    of_file(file)
}

/// The socket of a `struct file *` known to be a socket's.
#[inline(always)]
pub fn of_file(file: u64) -> Option<Sock> {
    let socket = read::<u64>(file, config_field!(offsets.file_private_data))?;
    let sk = read::<u64>(socket, config_field!(offsets.socket_sk))?;
    let family = read::<u16>(sk, config_field!(offsets.sock_family))?;
    let protocol = read::<u16>(sk, config_field!(offsets.sock_protocol)).unwrap_or(u16::MAX);
    let net = read::<u64>(sk, config_field!(offsets.sock_net)).unwrap_or(0);
    let netns_ino = read::<u32>(net, config_field!(offsets.net_ns_inum)).unwrap_or(0);
    Some(Sock {
        sk,
        family,
        protocol,
        netns_ino,
        net,
    })
}
