//! Network namespace inodes to names: `host`, or the name `ip netns` gave it under /run/netns.

use std::collections::HashMap;
use std::fs;
use std::os::unix::fs::MetadataExt as _;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use crate::event::Netns;

/// A miss re-reads /run/netns at most this often.
const RESCAN_INTERVAL: Duration = Duration::from_millis(100);
/// A hit older than this is re-checked: namespace inodes are recycled, and a name deleted with
/// `ip netns del` must not stick to the next namespace that gets its inode.
const MAX_AGE: Duration = Duration::from_secs(2);

/// The initial namespace's inode on kernels that give it a fixed one (`PROC_NET_INIT_INO` in
/// include/linux/proc_ns.h); older kernels number it like any other namespace.
const PROC_NET_INIT_INO: u64 = 0xEFFF_FFF9;

/// Names network namespaces by inode.
pub struct NetnsNames {
    /// The initial namespace's file (`/proc/1/ns/net`).
    host_ns: PathBuf,
    /// Directory of named namespaces (`/run/netns`): bind mounts of nsfs files.
    dir: PathBuf,
    host: Option<u64>,
    names: HashMap<u64, String>,
    last_scan: Option<Instant>,
}

impl NetnsNames {
    pub fn new() -> Self {
        Self::with_paths(PathBuf::from("/proc/1/ns/net"), PathBuf::from("/run/netns"))
    }

    /// Reads the host namespace from `host_ns` and named ones from the files in `dir`.
    pub fn with_paths(host_ns: PathBuf, dir: PathBuf) -> Self {
        let host = match fs::metadata(&host_ns) {
            Ok(meta) => Some(meta.ino()),
            // pid 1's namespace files can be closed to root too (a container's or VM's init);
            // new kernels give the initial namespace a fixed inode, so that still names it.
            Err(_) if Self::fixed_init_inode() => Some(PROC_NET_INIT_INO),
            Err(e) => {
                tracing::warn!(
                    "cannot stat {}: {e}; the initial network namespace will not be named `host` \
                     (run as root, or with CAP_SYS_PTRACE)",
                    host_ns.display()
                );
                None
            }
        };
        Self {
            host_ns,
            dir,
            host,
            names: HashMap::new(),
            last_scan: None,
        }
    }

    /// Whether this kernel numbers the initial namespace `PROC_NET_INIT_INO`: true when that
    /// inode is a live namespace we can see from here (ours, or pid 1's elsewhere).
    fn fixed_init_inode() -> bool {
        fs::metadata("/proc/self/ns/net").is_ok_and(|m| m.ino() == PROC_NET_INIT_INO)
    }

    pub fn lookup(&mut self, inode: u32) -> Netns {
        let ino = u64::from(inode);
        if self.host == Some(ino) {
            return Netns {
                inode,
                name: Some("host".to_string()),
            };
        }
        let fresh = self.last_scan.is_some_and(|t| t.elapsed() < MAX_AGE);
        let may_rescan = self
            .last_scan
            .is_none_or(|t| t.elapsed() >= RESCAN_INTERVAL);
        if (!fresh || !self.names.contains_key(&ino)) && may_rescan {
            self.rescan();
        }
        Netns {
            inode,
            name: self.names.get(&ino).cloned(),
        }
    }

    fn rescan(&mut self) {
        self.last_scan = Some(Instant::now());
        if self.host.is_none() {
            self.host = fs::metadata(&self.host_ns).ok().map(|m| m.ino());
        }
        self.names.clear();
        // No /run/netns just means no named namespaces.
        let Ok(entries) = fs::read_dir(&self.dir) else {
            return;
        };
        for entry in entries.flatten() {
            // metadata() follows the bind mount to the nsfs inode. A leftover file that is not
            // mounted has a tmpfs inode, which matches no namespace.
            let Ok(meta) = fs::metadata(entry.path()) else {
                continue;
            };
            let name = entry.file_name().to_string_lossy().into_owned();
            self.names.entry(meta.ino()).or_insert(name);
        }
    }
}

impl Default for NetnsNames {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::attribution::test_dir::TestDir;

    fn ino(path: &std::path::Path) -> u32 {
        u32::try_from(fs::metadata(path).unwrap().ino()).expect("fixture inode fits u32")
    }

    #[test]
    fn names_host_named_and_unnamed() {
        let dir = TestDir::new("netns");
        let run = dir.path().join("netns");
        fs::create_dir(&run).unwrap();
        let host = dir.path().join("host-net");
        fs::write(&host, b"").unwrap();
        fs::write(run.join("blue"), b"").unwrap();

        let mut names = NetnsNames::with_paths(host.clone(), run.clone());
        assert_eq!(
            names.lookup(ino(&host)),
            Netns {
                inode: ino(&host),
                name: Some("host".into())
            }
        );
        let blue = ino(&run.join("blue"));
        assert_eq!(names.lookup(blue).name.as_deref(), Some("blue"));
        assert_eq!(names.lookup(1).name, None);

        // A namespace named after the last scan is found once the rate limit allows a re-scan.
        fs::write(run.join("red"), b"").unwrap();
        std::thread::sleep(RESCAN_INTERVAL);
        assert_eq!(
            names.lookup(ino(&run.join("red"))).name.as_deref(),
            Some("red")
        );
    }

    #[test]
    fn missing_directory_is_not_an_error() {
        let dir = TestDir::new("netns-none");
        let mut names = NetnsNames::with_paths(dir.path().join("nope"), dir.path().join("none"));
        assert_eq!(
            names.lookup(4026531840),
            Netns {
                inode: 4026531840,
                name: None
            }
        );
    }

    /// On a real host /proc/1/ns/net is the initial namespace (needs root to read).
    #[test]
    fn real_host_namespace() {
        let Ok(meta) = fs::metadata("/proc/1/ns/net") else {
            eprintln!("skipped: /proc/1/ns/net not readable (not root)");
            return;
        };
        let mut names = NetnsNames::new();
        let inode = u32::try_from(meta.ino()).unwrap();
        assert_eq!(names.lookup(inode).name.as_deref(), Some("host"));
    }
}
