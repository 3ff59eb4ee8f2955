//! Network namespaces: which ones this process can reach, and running code inside one.
//!
//! A namespace is named by the inode of its nsfs file. The ones routeguard watches are its own
//! (`/proc/self/ns/net`), the one [`HOST_NETNS_ENV`] names (the node's, for a DaemonSet pod
//! that does not share it) and every one `ip netns` named under `/run/netns` (bind mounts of
//! nsfs files). Nothing enters a namespace only an actor's process holds (`/proc/PID/ns/net`):
//! anyone can make those with `unshare -n`, as many as they like.

use std::{
    env,
    fs::{self, File},
    io,
    os::{fd::AsRawFd as _, unix::fs::MetadataExt as _},
    path::{Path, PathBuf},
    sync::OnceLock,
    thread,
};

/// Our own namespace's file.
const OWN: &str = "/proc/self/ns/net";
/// Where `ip netns` names namespaces.
const NAMED_DIR: &str = "/run/netns";

/// The environment variable that names one more namespace to watch, by an nsfs file: in a
/// DaemonSet pod with `hostPID` but not `hostNetwork`, `/proc/1/ns/net` (the node's), so that
/// the metrics listen on the pod's address only while the mirror and restores work in the
/// node's namespace.
pub const HOST_NETNS_ENV: &str = "ROUTEGUARD_HOST_NETNS";

/// The file [`HOST_NETNS_ENV`] named, checked by [`watch_host_from_env`].
static HOST: OnceLock<PathBuf> = OnceLock::new();

#[derive(Debug, thiserror::Error)]
pub enum NetnsError {
    #[error(
        "the network namespace (inode {0}) is gone, or is not one routeguard watches (its own, \
         the one ROUTEGUARD_HOST_NETNS names, or one named under /run/netns)"
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
    #[error(
        "{HOST_NETNS_ENV}={}: {reason} (in a pod, /proc/1/ns/net needs hostPID and \
         CAP_SYS_PTRACE; entering it, CAP_SYS_ADMIN)", path.display()
    )]
    Host { path: PathBuf, reason: String },
}

/// A namespace this process can reach: its inode and a file that holds it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reachable {
    pub ino: u64,
    pub path: PathBuf,
}

/// Reads [`HOST_NETNS_ENV`] once, at start: unset or empty means nothing more to watch; a file
/// that is not a network namespace's (or cannot be entered) is an error naming it, so that a
/// DaemonSet missing `hostPID` fails at start rather than watching only the pod's namespace.
pub fn watch_host_from_env() -> Result<Option<PathBuf>, NetnsError> {
    let Some(path) = env::var_os(HOST_NETNS_ENV).filter(|p| !p.is_empty()) else {
        return Ok(None);
    };
    let path = PathBuf::from(path);
    check_enterable(&path)?;
    Ok(Some(HOST.get_or_init(|| path).clone()))
}

/// Entering `path` is the check that matters: it proves an nsfs file of a network namespace
/// (`setns` refuses another type with EINVAL) and the privilege the mirror will need.
fn check_enterable(path: &Path) -> Result<(), NetnsError> {
    run_in::<(), NetnsError>(path, || Ok(())).map_err(|err| NetnsError::Host {
        path: path.to_path_buf(),
        reason: match err {
            NetnsError::Setns { source, .. } if source.raw_os_error() == Some(libc::EINVAL) => {
                "not a network namespace file".to_string()
            }
            NetnsError::Open { source, .. } | NetnsError::Setns { source, .. } => {
                source.to_string()
            }
            err => err.to_string(),
        },
    })
}

/// Our own namespace, the one [`HOST_NETNS_ENV`] named, then every one named under /run/netns.
pub fn reachable() -> Vec<Reachable> {
    reachable_from(
        Path::new(OWN),
        HOST.get().map(PathBuf::as_path),
        Path::new(NAMED_DIR),
    )
}

/// `own`, then `host` when it is another namespace, then the files in `named_dir` (none there
/// just means none is named). `metadata` follows a bind mount to the nsfs inode; a leftover file
/// that is not mounted has a tmpfs inode, which matches no namespace.
fn reachable_from(own: &Path, host: Option<&Path>, named_dir: &Path) -> Vec<Reachable> {
    let mut all: Vec<Reachable> = Vec::new();
    let named = fs::read_dir(named_dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|entry| entry.path());
    for path in [own.to_path_buf()]
        .into_iter()
        .chain(host.map(Path::to_path_buf))
    {
        let Ok(meta) = fs::metadata(&path) else {
            continue;
        };
        if !all.iter().any(|r| r.ino == meta.ino()) {
            all.push(Reachable {
                ino: meta.ino(),
                path,
            });
        }
    }
    for path in named {
        if let Ok(meta) = fs::metadata(&path) {
            all.push(Reachable {
                ino: meta.ino(),
                path,
            });
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
    fn the_host_namespace_is_watched_once_after_our_own() {
        let own = Path::new(OWN);
        let own_ino = fs::metadata(own).unwrap().ino();
        let none = Path::new("/nonexistent");
        // The same namespace as ours (a daemon on the host, or with hostNetwork): once.
        let same = reachable_from(own, Some(Path::new("/proc/thread-self/ns/net")), none);
        assert_eq!(same.len(), 1);
        assert_eq!(same[0].path, own);
        // Another one: after ours. The user namespace's file stands in for another inode.
        let other = Path::new("/proc/self/ns/user");
        let both = reachable_from(own, Some(other), none);
        assert_eq!(both.len(), 2);
        assert_eq!((both[0].ino, both[1].path.as_path()), (own_ino, other));
        // A host file that is gone is skipped, not an error here (checked at start instead).
        assert_eq!(reachable_from(own, Some(none), none).len(), 1);
    }

    #[test]
    fn a_host_file_of_another_namespace_type_is_refused() {
        let err = check_enterable(Path::new("/proc/self/ns/uts")).unwrap_err();
        assert_eq!(
            err.to_string(),
            "ROUTEGUARD_HOST_NETNS=/proc/self/ns/uts: not a network namespace file (in a pod, \
             /proc/1/ns/net needs hostPID and CAP_SYS_PTRACE; entering it, CAP_SYS_ADMIN)"
        );
        let err = check_enterable(Path::new("/nonexistent")).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("ROUTEGUARD_HOST_NETNS=/nonexistent: No such file or directory"),
            "{err}"
        );
        // Our own namespace passes (root may enter it again).
        check_enterable(Path::new(OWN)).unwrap();
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
