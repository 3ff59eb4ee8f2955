//! The restorer's netlink sockets, one per namespace it re-adds in, kept for the next restore
//! there (opening one enters the namespace on a short-lived thread).
//!
//! Bounded three ways, because a socket holds its namespace alive and the namespaces a process
//! can make are not bounded:
//! - only namespaces routeguard watches, the same ones the mirror does (its own and those named
//!   under /run/netns, which only root can name): never one an actor made for itself with
//!   `unshare -n` and reaches through `/proc/PID/ns/net`;
//! - at most [`Sockets::cap`] of them: beyond that a socket serves its one request and is closed
//!   (counted in [`Sockets::overflow`]);
//! - a namespace no longer named is let go of at the next [`Sockets::keep_only`] (every second):
//!   a cached socket must never be why a deleted pod's namespace lingers.

use std::collections::HashMap;

use super::REPLY_TIMEOUT;
use crate::netlink::{netns, NetnsError, Options, RouteSocket, SocketError};

/// Sockets kept at most, unless [`CAP_ENV`] says otherwise.
pub const CAP: usize = 256;
/// Overrides [`CAP`]. Only for tests that must make the cache overflow with a few namespaces.
pub const CAP_ENV: &str = "ROUTEGUARD_RESTORE_SOCKETS";

pub struct Sockets {
    open: HashMap<u32, RouteSocket>,
    cap: usize,
    /// Sockets closed after one request because the cache was full.
    pub overflow: u64,
}

impl Default for Sockets {
    fn default() -> Self {
        Self::new()
    }
}

impl Sockets {
    pub fn new() -> Self {
        let cap = std::env::var(CAP_ENV)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(CAP);
        Self {
            open: HashMap::new(),
            cap,
            overflow: 0,
        }
    }

    /// Sends a request (see [`RouteSocket::request`]) in namespace `inode`, which must be one
    /// routeguard watches.
    pub fn request(
        &mut self,
        inode: u32,
        msg_type: u16,
        flags: u16,
        body: &[u8],
    ) -> Result<Result<(), i32>, SocketError> {
        if let Some(socket) = self.open.get(&inode) {
            let result = socket.request(msg_type, flags, body);
            if result.is_err() {
                // The namespace may be gone, or the socket broken: the next restore opens anew.
                self.open.remove(&inode);
            }
            return result;
        }
        let path = watched(inode)?;
        let options = Options {
            poll: REPLY_TIMEOUT,
            quiet: REPLY_TIMEOUT,
            ..Options::default()
        };
        let [socket] = RouteSocket::open_in(&path, [options])?;
        let result = socket.request(msg_type, flags, body);
        if result.is_ok() {
            if self.open.len() < self.cap {
                self.open.insert(inode, socket);
            } else {
                self.overflow += 1;
                tracing::debug!(
                    netns_ino = inode,
                    cap = self.cap,
                    "restore socket cache full; this one is closed after its request"
                );
            }
        }
        result
    }

    /// Closes the sockets of namespaces not in `watched` (inodes).
    pub fn keep_only(&mut self, watched: &[u64]) {
        self.open
            .retain(|inode, _| watched.contains(&u64::from(*inode)));
    }
}

/// The nsfs file of namespace `inode` if routeguard watches it (its own, or one named under
/// /run/netns); never an actor's own namespace.
fn watched(inode: u32) -> Result<std::path::PathBuf, NetnsError> {
    netns::find(inode)
}

/// The inodes of the namespaces routeguard watches now.
pub fn watched_now() -> Vec<u64> {
    netns::reachable().into_iter().map(|r| r.ino).collect()
}
