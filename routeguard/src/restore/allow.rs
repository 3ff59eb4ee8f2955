//! Who may remove a protected object without routeguard putting it back.
//!
//! A process chooses its `comm` (`prctl(PR_SET_NAME)`), its argv and, in a mount namespace of its
//! own, the path it executes; it cannot choose which file the kernel runs for it, nor which
//! cgroup root placed it in. So `exe` entries are resolved to the file's (device, inode) when the
//! policy is loaded (and again on SIGHUP) and compared with the identity the kernel captured at
//! request time; `cgroup` entries compare the cgroup v2 id the kernel captured with the id of
//! the named cgroup directory. `comm` still matches, but is spoofable (doctor says so).

use std::path::{Path, PathBuf};

use serde::{de, Deserialize, Deserializer};

use crate::event::{Actor, ExeId};

/// Actors allowed to remove protected objects (any one matching is enough).
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Allow {
    /// Command names (`comm`, at most 15 bytes: `systemd-network`). Any process can take any
    /// name: prefer `exe` or `cgroup`.
    pub comm: Vec<String>,
    /// Executables, e.g. `/usr/lib/systemd/systemd-networkd`: the file, not the path string.
    pub exe: Vec<AllowedExe>,
    /// systemd units, e.g. `kube-router.service` (from root-owned cgroup names only).
    pub unit: Vec<String>,
    /// Container ids, or a prefix of at least 12 characters.
    pub container: Vec<String>,
    /// cgroup v2 paths, e.g. `/system.slice/kube-router.service`, matched by the cgroup's id.
    pub cgroup: Vec<AllowedCgroup>,
}

impl Allow {
    pub fn permits(&self, actor: &Actor) -> bool {
        self.comm.contains(&actor.comm)
            || actor
                .exe_id()
                .is_some_and(|id| self.exe.iter().any(|e| e.matches(id)))
            || actor.unit.as_ref().is_some_and(|u| self.unit.contains(u))
            || actor
                .container
                .as_ref()
                .is_some_and(|id| self.container.iter().any(|c| id.starts_with(c.as_str())))
            || actor
                .cgroup_id
                .is_some_and(|id| self.cgroup.iter().any(|c| c.matches(id)))
    }

    /// Whether only `comm` names who is allowed: any process can call itself that.
    pub fn comm_only(&self) -> bool {
        !self.comm.is_empty()
            && self.exe.is_empty()
            && self.unit.is_empty()
            && self.container.is_empty()
            && self.cgroup.is_empty()
    }
}

/// An `allow.exe` entry: the path as written and the file it named when the policy was loaded.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct AllowedExe {
    pub path: PathBuf,
    pub id: ExeId,
}

impl AllowedExe {
    /// Resolves `path` (symlinks followed, as exec does) to the file's (device, inode).
    pub fn resolve(path: &str) -> Result<Self, String> {
        if !path.starts_with('/') {
            return Err(format!(
                "allow.exe `{path}` is not an absolute path; write the executable's full path, \
                 e.g. \"/usr/lib/systemd/systemd-networkd\""
            ));
        }
        let meta = std::fs::metadata(path).map_err(|e| {
            format!("allow.exe `{path}`: {e}; an exe entry names an installed executable")
        })?;
        if !meta.is_file() {
            return Err(format!("allow.exe `{path}` is not a regular file"));
        }
        Ok(Self {
            path: PathBuf::from(path),
            id: ExeId::of(&meta),
        })
    }

    /// The file resolved at load, or the one at `path` now (a package upgrade replaced it and
    /// the program restarted before the next SIGHUP).
    fn matches(&self, id: ExeId) -> bool {
        id == self.id || std::fs::metadata(&self.path).is_ok_and(|m| ExeId::of(&m) == id)
    }
}

impl<'de> Deserialize<'de> for AllowedExe {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Self::resolve(&String::deserialize(d)?).map_err(de::Error::custom)
    }
}

/// An `allow.cgroup` entry: a cgroup v2 path below the hierarchy's root, and the directory's
/// id when it existed at load.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct AllowedCgroup {
    pub path: String,
    /// The directory under the cgroup2 mount; `None` when no cgroup2 hierarchy is mounted.
    dir: Option<PathBuf>,
    id: Option<u64>,
}

impl AllowedCgroup {
    /// `path` as `/proc/PID/cgroup` shows it (`/system.slice/foo.service`), under the cgroup2
    /// hierarchy mounted at `mount`.
    pub fn resolve(path: &str, mount: Option<&Path>) -> Result<Self, String> {
        if !path.starts_with('/') || path.split('/').any(|c| c == "..") {
            return Err(format!(
                "allow.cgroup `{path}` is not a cgroup path; write it as /proc/PID/cgroup shows \
                 it, e.g. \"/system.slice/kube-router.service\""
            ));
        }
        let dir = mount.map(|m| m.join(path.trim_start_matches('/')));
        Ok(Self {
            path: path.to_string(),
            id: dir.as_deref().and_then(inode),
            dir,
        })
    }

    /// The cgroup's id, resolved at load (`None`: the directory did not exist then).
    pub fn id(&self) -> Option<u64> {
        self.id
    }

    /// The id resolved at load, or the directory's id now: a unit restarted since gets a new
    /// cgroup (systemd removes and recreates it).
    fn matches(&self, id: u64) -> bool {
        self.id == Some(id) || self.dir.as_deref().and_then(inode) == Some(id)
    }
}

fn inode(dir: &Path) -> Option<u64> {
    use std::os::unix::fs::MetadataExt as _;
    std::fs::metadata(dir)
        .ok()
        .filter(|m| m.is_dir())
        .map(|m| m.ino())
}

impl<'de> Deserialize<'de> for AllowedCgroup {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let path = String::deserialize(d)?;
        let mount = std::fs::read_to_string("/proc/self/mountinfo")
            .ok()
            .and_then(|info| crate::attribution::cgroup2_mount(&info))
            .map(|(mount, _)| mount);
        Self::resolve(&path, mount.as_deref()).map_err(de::Error::custom)
    }
}
