//! Network namespaces: which ones this process can reach, and running code inside one.
//!
//! A namespace is named by the inode of its nsfs file. The ones routeguard watches are its own
//! (`/proc/self/ns/net`) and every one `ip netns` named under `/run/netns` (bind mounts of nsfs
//! files). Nothing enters a namespace only an actor's process holds (`/proc/PID/ns/net`): anyone
//! can make those with `unshare -n`, as many as they like.

use std::{
    fs::{self, File},
    io,
    os::{fd::AsRawFd as _, unix::fs::MetadataExt as _},
    path::{Path, PathBuf},
    thread,
};

/// Our own namespace's file.
const OWN: &str = "/proc/self/ns/net";
/// Where `ip netns` names namespaces.
const NAMED_DIR: &str = "/run/netns";

#[derive(Debug, thiserror::Error)]
pub enum NetnsError {
    #[error(
        "the network namespace (inode {0}) is gone, or is not one routeguard watches (its own or \
         one named under /run/netns)"
    )]
    NotFound(u32),
    #[error("cannot open {path}: {source}")]
    Open { path: PathBuf, source: io::Error },
    #[error("cannot enter the network namespace {path}: {source} (needs CAP_SYS_ADMIN)")]
    Setns { path: PathBuf, source: io::Error },
    #[error("cannot start a thread to enter the network namespace {path}: {source}")]
    Thread { path: PathBuf, source: io::Error },
    #[error("the thread that entered the network namespace {path} panicked")]
    Panicked { path: PathBuf },
}

/// A namespace this process can reach: its inode and a file that holds it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reachable {
    pub ino: u64,
    pub path: PathBuf,
}

/// Our own namespace, then every one named under /run/netns (no /run/netns just means none is
/// named). `metadata` follows a bind mount to the nsfs inode; a leftover file that is not
/// mounted has a tmpfs inode, which matches no namespace.
pub fn reachable() -> Vec<Reachable> {
    let mut all = Vec::new();
    if let Ok(meta) = fs::metadata(OWN) {
        all.push(Reachable {
            ino: meta.ino(),
            path: PathBuf::from(OWN),
        });
    }
    if let Ok(dir) = fs::read_dir(NAMED_DIR) {
        for entry in dir.flatten() {
            if let Ok(meta) = fs::metadata(entry.path()) {
                all.push(Reachable {
                    ino: meta.ino(),
                    path: entry.path(),
                });
            }
        }
    }
    all
}

/// The file of namespace `inode`, if it is one routeguard watches: ours or a /run/netns entry.
pub fn find(inode: u32) -> Result<PathBuf, NetnsError> {
    reachable()
        .into_iter()
        .find(|r| r.ino == u64::from(inode))
        .map(|r| r.path)
        .ok_or(NetnsError::NotFound(inode))
}

/// Runs `f` on a short-lived thread that entered the namespace of the nsfs file `path`
/// (`setns` changes only the calling thread), and returns what it returned. A socket stays in
/// the namespace it was created in, so this is how one is opened there.
pub fn run_in<T, E>(path: &Path, f: impl FnOnce() -> Result<T, E> + Send + 'static) -> Result<T, E>
where
    T: Send + 'static,
    E: From<NetnsError> + Send + 'static,
{
    let inside = path.to_path_buf();
    let thread = thread::Builder::new()
        .spawn(move || -> Result<T, E> {
            let file = File::open(&inside).map_err(|source| NetnsError::Open {
                path: inside.clone(),
                source,
            })?;
            // SAFETY: setns on a valid nsfs fd; it changes only this short-lived thread's
            // namespace.
            if unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
                let source = io::Error::last_os_error();
                return Err(NetnsError::Setns {
                    path: inside,
                    source,
                }
                .into());
            }
            f()
        })
        .map_err(|source| NetnsError::Thread {
            path: path.to_path_buf(),
            source,
        })?;
    thread.join().map_err(|_| NetnsError::Panicked {
        path: path.to_path_buf(),
    })?
}

/// Whether namespace `ino`, whose /run/netns name is gone, is still alive: a process other than
/// this one runs in it, or a bind mount holds it.
///
/// `ip netns del` only unmounts the name; the namespace is destroyed (and everything in it
/// removed) when its last reference goes. The references that can be seen from userspace are
/// processes inside it and nsfs bind mounts. An open file descriptor or socket of another
/// process also keeps it alive and is not looked for: such a namespace is taken for gone.
pub fn held_elsewhere(ino: u64) -> bool {
    let target = format!("net:[{ino}]");
    // mountinfo's fourth field is the mount's root; for an nsfs mount, `net:[INODE]`.
    let mounted = fs::read_to_string("/proc/self/mountinfo").is_ok_and(|m| {
        m.lines()
            .any(|l| l.split(' ').nth(3) == Some(target.as_str()))
    });
    if mounted {
        return true;
    }
    let me = std::process::id().to_string();
    let Ok(dir) = fs::read_dir("/proc") else {
        return false;
    };
    dir.flatten().any(|entry| {
        let name = entry.file_name();
        let pid = name.to_string_lossy();
        pid.bytes().all(|b| b.is_ascii_digit())
            && pid != me
            && fs::read_link(entry.path().join("ns/net"))
                .is_ok_and(|link| link.as_os_str() == target.as_str())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn our_own_namespace_is_reachable_and_found() {
        let own = fs::metadata(OWN).unwrap().ino();
        assert_eq!(reachable()[0].ino, own);
        let inode = u32::try_from(own).unwrap();
        assert_eq!(find(inode).unwrap(), PathBuf::from(OWN));
        assert!(matches!(find(1), Err(NetnsError::NotFound(1))));
    }

    #[test]
    fn a_missing_namespace_file_is_an_error_naming_it() {
        let err = run_in::<(), NetnsError>(Path::new("/nonexistent/ns"), || Ok(())).unwrap_err();
        assert!(
            err.to_string().starts_with("cannot open /nonexistent/ns: "),
            "{err}"
        );
    }
}
