//! cgroup v2 ids to paths, and what a path says about its process (systemd unit, container).
//!
//! The kernel hands us `cgroup_id`, which for cgroup v2 is the inode number of the cgroup's
//! directory in cgroupfs (kernfs uses the node id as inode on 64-bit `ino_t`:
//! <https://github.com/torvalds/linux/blob/v6.1/fs/kernfs/inode.c>, `kernfs_ino`). So a walk of
//! the cgroup2 mount maps every live id to its path.

use std::collections::HashMap;
use std::fs;
use std::os::unix::fs::MetadataExt as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// A miss re-walks the tree at most this often (a burst of requests from a cgroup that has
/// already been removed must not turn into a burst of tree walks).
pub(super) const RESCAN_INTERVAL: Duration = Duration::from_millis(100);
/// cgroup trees are shallow; this only stops a pathological one.
const MAX_DEPTH: usize = 32;

/// The cgroup2 mount point and the mount's root inside the hierarchy (`/` unless routeguard
/// runs inside a cgroup namespace or a bind mount of a subtree), from `/proc/self/mountinfo`.
pub fn cgroup2_mount(mountinfo: &str) -> Option<(PathBuf, String)> {
    mountinfo.lines().find_map(|line| {
        // `36 25 0:30 / /sys/fs/cgroup/unified rw,nosuid - cgroup2 cgroup2 rw`: the fields
        // before ` - ` vary in number (optional fields), the filesystem type follows it.
        let (before, after) = line.split_once(" - ")?;
        if after.split(' ').next()? != "cgroup2" {
            return None;
        }
        let mut fields = before.split(' ');
        let root = fields.nth(3)?;
        let mount_point = fields.next()?;
        Some((
            PathBuf::from(unescape_mountinfo(mount_point)),
            unescape_mountinfo(root),
        ))
    })
}

/// The cgroup v1 `name=systemd` hierarchy's mount point and root, from `/proc/self/mountinfo`:
/// on hosts without cgroup2 (legacy) it is the only tree that holds every process by unit.
pub fn systemd_v1_mount(mountinfo: &str) -> Option<(PathBuf, String)> {
    mountinfo.lines().find_map(|line| {
        // `40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,name=systemd`
        let (before, after) = line.split_once(" - ")?;
        let mut fs = after.split(' ');
        if fs.next()? != "cgroup" || !fs.nth(1)?.split(',').any(|o| o == "name=systemd") {
            return None;
        }
        let mut fields = before.split(' ');
        let root = fields.nth(3)?;
        let mount_point = fields.next()?;
        Some((
            PathBuf::from(unescape_mountinfo(mount_point)),
            unescape_mountinfo(root),
        ))
    })
}

/// mountinfo writes space, tab, newline and backslash as octal escapes (`\040`).
fn unescape_mountinfo(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\' && i + 4 <= bytes.len() {
            let digits = &bytes[i + 1..i + 4];
            if digits.iter().all(|d| (b'0'..=b'7').contains(d)) {
                let value = digits.iter().fold(0u32, |v, d| v * 8 + u32::from(d - b'0'));
                if let Ok(b) = u8::try_from(value) {
                    out.push(b);
                    i += 4;
                    continue;
                }
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Maps cgroup v2 ids to paths (`/system.slice/systemd-networkd.service`), walking the cgroup2
/// tree once and again on a miss.
pub struct CgroupPaths {
    /// cgroup2 mount point; `None` when there is none (cgroup v1 only): no paths then.
    mount: Option<PathBuf>,
    /// Path of the mount's root in the hierarchy, prefixed to every path found under it.
    prefix: String,
    by_id: HashMap<u64, String>,
    last_scan: Option<Instant>,
    /// The v1 `name=systemd` hierarchy (mount point, root), read through /proc while a process
    /// lives when its cgroup v2 path names nothing.
    systemd_v1: Option<(PathBuf, String)>,
}

impl CgroupPaths {
    /// Finds the cgroup2 and `name=systemd` mounts in `/proc/self/mountinfo`.
    pub fn new() -> Self {
        let mountinfo = fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
        let systemd_v1 = systemd_v1_mount(&mountinfo);
        let mut paths = match cgroup2_mount(&mountinfo) {
            Some((mount, root)) => Self::with_mount(mount, &root),
            None => {
                tracing::warn!(
                    "no cgroup2 mount in /proc/self/mountinfo: events carry the cgroup v1 \
                     name=systemd path of processes still alive when their request is seen, \
                     and nothing for the others (mount cgroup2, or boot with cgroup v2)"
                );
                Self {
                    mount: None,
                    prefix: String::new(),
                    by_id: HashMap::new(),
                    last_scan: None,
                    systemd_v1: None,
                }
            }
        };
        paths.systemd_v1 = systemd_v1;
        paths
    }

    /// Walks the cgroup2 hierarchy mounted at `mount`, whose root is `root` in the hierarchy.
    pub fn with_mount(mount: PathBuf, root: &str) -> Self {
        let prefix = if root == "/" {
            String::new()
        } else {
            root.trim_end_matches('/').to_string()
        };
        Self {
            mount: Some(mount),
            prefix,
            by_id: HashMap::new(),
            last_scan: None,
            systemd_v1: None,
        }
    }

    /// The same, also reading the v1 `name=systemd` hierarchy mounted at `mount` (root `/`).
    #[cfg(test)]
    pub fn with_systemd_v1(mut self, mount: PathBuf) -> Self {
        self.systemd_v1 = Some((mount, "/".into()));
        self
    }

    /// The cgroup2 mount point and its root in the hierarchy (`/` or a prefix).
    pub fn mount(&self) -> Option<(&Path, &str)> {
        let mount = self.mount.as_deref()?;
        Some((
            mount,
            if self.prefix.is_empty() {
                "/"
            } else {
                &self.prefix
            },
        ))
    }

    /// The v1 `name=systemd` mount point and its root in the hierarchy.
    pub fn systemd_v1(&self) -> Option<(&Path, &str)> {
        self.systemd_v1
            .as_ref()
            .map(|(m, r)| (m.as_path(), r.as_str()))
    }

    /// The path of cgroup `id`, or `None` when no live cgroup has it (it was removed, or the
    /// id is 0 because the kernel had no cgroup v2 id to give).
    pub fn path(&mut self, id: u64) -> Option<&str> {
        if id == 0 {
            return None;
        }
        if !self.by_id.contains_key(&id) {
            // One cgroup opened by its id, at once: a cgroup made since the last walk is found
            // even while walks are rate-limited (a container's first process, a burst of others).
            let found = self
                .mount
                .as_deref()
                .and_then(|mount| path_by_handle(mount, id))
                .map(|below| match (below.as_str(), self.prefix.is_empty()) {
                    ("/", false) => self.prefix.clone(),
                    (_, false) => format!("{}{below}", self.prefix),
                    (_, true) => below,
                });
            if let Some(path) = found {
                self.by_id.insert(id, path);
            }
        }
        if !self.by_id.contains_key(&id)
            && self
                .last_scan
                .is_none_or(|t| t.elapsed() >= RESCAN_INTERVAL)
        {
            self.rescan();
        }
        self.by_id.get(&id).map(String::as_str)
    }

    fn rescan(&mut self) {
        self.last_scan = Some(Instant::now());
        let Some(mount) = &self.mount else { return };
        let mut by_id = HashMap::with_capacity(self.by_id.len().max(64));
        let root_path = if self.prefix.is_empty() {
            "/".to_string()
        } else {
            self.prefix.clone()
        };
        match fs::metadata(mount) {
            Ok(meta) => {
                by_id.insert(meta.ino(), root_path);
            }
            Err(e) => {
                tracing::debug!("cannot stat cgroup2 mount {}: {e}", mount.display());
                return;
            }
        }
        walk(mount, &self.prefix, 0, &mut by_id);
        self.by_id = by_id;
    }
}

impl Default for CgroupPaths {
    fn default() -> Self {
        Self::new()
    }
}

/// `FILEID_KERNFS` (`include/linux/exportfs.h`): a kernfs node by its 64-bit id, which for a
/// cgroup is its cgroup id.
const FILEID_KERNFS: libc::c_int = 0xfe;

/// A `struct file_handle` holding a kernfs id.
#[repr(C)]
struct KernfsHandle {
    handle_bytes: libc::c_uint,
    handle_type: libc::c_int,
    id: u64,
}

/// The path below `mount` (`/system.slice/x.service`) of the cgroup whose id is `id`, by opening
/// it with `open_by_handle_at(2)` (kernfs exports cgroups by id since Linux 4.13,
/// `kernfs_fh_to_dentry`) and reading back where the descriptor points. Needs
/// CAP_DAC_READ_SEARCH; `None` without it, or when no live cgroup has that id.
fn path_by_handle(mount: &Path, id: u64) -> Option<String> {
    use std::os::fd::{AsRawFd as _, FromRawFd as _, OwnedFd};
    let dir = fs::File::open(mount).ok()?;
    let mut handle = KernfsHandle {
        handle_bytes: 8,
        handle_type: FILEID_KERNFS,
        id,
    };
    // SAFETY: `handle` is a `struct file_handle` whose `f_handle` holds `handle_bytes` (8)
    // bytes, the kernel reads no more; `dir` is an open descriptor for the call's duration.
    let fd = unsafe {
        libc::open_by_handle_at(
            dir.as_raw_fd(),
            std::ptr::addr_of_mut!(handle).cast::<libc::file_handle>(),
            libc::O_RDONLY | libc::O_DIRECTORY | libc::O_CLOEXEC,
        )
    };
    if fd < 0 {
        return None;
    }
    // SAFETY: `fd` was just returned open by the kernel and is owned by nothing else.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    let target = fs::read_link(format!("/proc/self/fd/{}", fd.as_raw_fd())).ok()?;
    let below = target.strip_prefix(mount).ok()?;
    // Removed between the open and the readlink: d_path marks it.
    let below = below.to_str().filter(|b| !b.ends_with(" (deleted)"))?;
    Some(if below.is_empty() {
        "/".to_string()
    } else {
        format!("/{below}")
    })
}

fn walk(dir: &Path, path: &str, depth: usize, by_id: &mut HashMap<u64, String>) {
    if depth >= MAX_DEPTH {
        return;
    }
    // A cgroup removed while we walk is simply not found: errors here are routine.
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        // file_type() does not follow symlinks; cgroupfs has none, but don't walk out of it.
        if !entry.file_type().is_ok_and(|t| t.is_dir()) {
            continue;
        }
        let Ok(meta) = entry.metadata() else { continue };
        let child = format!("{path}/{}", entry.file_name().to_string_lossy());
        walk(&entry.path(), &child, depth + 1, by_id);
        by_id.insert(meta.ino(), child);
    }
}

/// The systemd unit of a cgroup path: its deepest component ending in `.service` or `.scope`
/// (`/user.slice/user-1000.slice/user@1000.service/app.slice/foo.scope` → `foo.scope`).
pub fn unit_of(path: &str) -> Option<&str> {
    path.rsplit('/')
        .find(|c| c.len() > ".scope".len() && (c.ends_with(".service") || c.ends_with(".scope")))
}

/// The container id (64 hex digits) a cgroup path names, the deepest one when containers nest.
///
/// Recognised: systemd-driver scopes `docker-<id>.scope`, `cri-containerd-<id>.scope`,
/// `crio-<id>.scope`, `libpod-<id>.scope`; cgroupfs-driver paths `/docker/<id>` and
/// `/kubepods/<qos>/pod<uid>/<id>`. The `crio-conmon-` and `libpod-conmon-` scopes hold the
/// container monitor, which runs outside the container: they name no container.
pub fn container_of(path: &str) -> Option<&str> {
    let components: Vec<&str> = path.split('/').filter(|c| !c.is_empty()).collect();
    let under_engine = |i: usize| {
        components[..i]
            .iter()
            .any(|c| *c == "docker" || *c == "kubepods")
    };
    components.iter().enumerate().rev().find_map(|(i, c)| {
        if let Some(stem) = c.strip_suffix(".scope") {
            for prefix in ["docker-", "cri-containerd-", "crio-", "libpod-"] {
                if let Some(id) = stem.strip_prefix(prefix).filter(|id| is_container_id(id)) {
                    return Some(id);
                }
            }
            None
        } else if is_container_id(c) && under_engine(i) {
            Some(*c)
        } else {
            None
        }
    })
}

use super::kubepods::is_container_id;

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "3f4e1c2b9a8d7e6f5a4b3c2d1e0f9a8b7c6d5e4f3a2b1c0d9e8f7a6b5c4d3e2f";

    #[test]
    fn finds_cgroup2_mount_hybrid_and_unified() {
        let hybrid = "31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755\n\
                      40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,name=systemd\n\
                      41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw\n";
        assert_eq!(
            cgroup2_mount(hybrid),
            Some((PathBuf::from("/sys/fs/cgroup/unified"), "/".to_string()))
        );
        let unified = "30 23 0:26 / /sys/fs/cgroup rw,nosuid,nodev shared:4 - cgroup2 cgroup2 rw,nsdelegate\n";
        assert_eq!(
            cgroup2_mount(unified),
            Some((PathBuf::from("/sys/fs/cgroup"), "/".to_string()))
        );
        let spaced = "30 23 0:26 /kubepods.slice /mnt/my\\040cg rw - cgroup2 none rw\n";
        assert_eq!(
            cgroup2_mount(spaced),
            Some((PathBuf::from("/mnt/my cg"), "/kubepods.slice".to_string()))
        );
        assert_eq!(
            cgroup2_mount("31 23 0:28 / /sys/fs/cgroup rw - tmpfs tmpfs rw\n"),
            None
        );
        assert_eq!(
            systemd_v1_mount(hybrid),
            Some((PathBuf::from("/sys/fs/cgroup/systemd"), "/".to_string()))
        );
        assert_eq!(systemd_v1_mount(unified), None);
        let cpu = "42 31 0:39 / /sys/fs/cgroup/cpu rw - cgroup cgroup rw,cpu\n";
        assert_eq!(systemd_v1_mount(cpu), None);
    }

    #[test]
    fn unit_is_deepest_service_or_scope() {
        assert_eq!(
            unit_of("/system.slice/systemd-networkd.service"),
            Some("systemd-networkd.service")
        );
        assert_eq!(unit_of("/init.scope"), Some("init.scope"));
        assert_eq!(
            unit_of("/user.slice/user-1000.slice/user@1000.service/app.slice/foo.scope"),
            Some("foo.scope")
        );
        assert_eq!(
            unit_of("/user.slice/user-1000.slice/user@1000.service/app.slice"),
            Some("user@1000.service")
        );
        assert_eq!(
            unit_of("/system.slice/docker-abc.scope"),
            Some("docker-abc.scope")
        );
        assert_eq!(unit_of("/"), None);
        assert_eq!(unit_of("/user.slice"), None);
        assert_eq!(unit_of("/kubepods/burstable"), None);
        assert_eq!(unit_of("networkd.service"), Some("networkd.service"));
    }

    #[test]
    fn container_ids_from_systemd_scopes() {
        for scope in ["docker", "cri-containerd", "crio", "libpod"] {
            let path = format!(
                "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod1234.slice/{scope}-{ID}.scope"
            );
            assert_eq!(container_of(&path), Some(ID), "{path}");
        }
        assert_eq!(
            container_of(&format!("/system.slice/docker-{ID}.scope")),
            Some(ID)
        );
        assert_eq!(
            container_of(&format!("/machine.slice/libpod-conmon-{ID}.scope")),
            None
        );
        assert_eq!(
            container_of(&format!("/system.slice/crio-conmon-{ID}.scope")),
            None
        );
        // Leaf name only (the cgroup was removed before we could resolve its id).
        assert_eq!(
            container_of(&format!("cri-containerd-{ID}.scope")),
            Some(ID)
        );
    }

    #[test]
    fn container_ids_from_cgroupfs_paths() {
        assert_eq!(container_of(&format!("/docker/{ID}")), Some(ID));
        assert_eq!(
            container_of(&format!("/kubepods/burstable/pod0f1e2d3c-aaaa-bbbb/{ID}")),
            Some(ID)
        );
        assert_eq!(
            container_of(&format!("/kubepods/besteffort/podx/{ID}/")),
            Some(ID)
        );
        // Nested (docker in docker): the innermost wins.
        let inner = "a".repeat(64);
        assert_eq!(
            container_of(&format!("/docker/{ID}/docker/{inner}")),
            Some(inner.as_str())
        );
        // 64 hex digits outside a container engine's tree name nothing.
        assert_eq!(container_of(&format!("/system.slice/{ID}")), None);
    }

    #[test]
    fn rejects_non_ids() {
        assert_eq!(container_of("/system.slice/docker-short.scope"), None);
        assert_eq!(
            container_of(&format!("/docker/{}", ID.to_uppercase())),
            None
        );
        assert_eq!(container_of(&format!("/docker/{}x", &ID[..63])), None);
        assert_eq!(container_of("/system.slice/systemd-networkd.service"), None);
        assert_eq!(container_of(""), None);
    }

    /// Opens a cgroup by its id through the real cgroup2 mount (root only: it makes a cgroup).
    #[test]
    fn opens_a_live_cgroup_by_its_id() {
        let info = fs::read_to_string("/proc/self/mountinfo").unwrap();
        let Some((mount, _)) = cgroup2_mount(&info).filter(|(_, root)| root == "/") else {
            eprintln!("SKIP: no cgroup2 mount at its root here");
            return;
        };
        // SAFETY: geteuid has no preconditions and cannot fail.
        if unsafe { libc::geteuid() } != 0 {
            eprintln!("SKIP: making a cgroup and open_by_handle_at need root");
            return;
        }
        let name = format!("routeguard-unit-{}", std::process::id());
        let dir = mount.join(&name);
        fs::create_dir(&dir).unwrap();
        let id = fs::metadata(&dir).unwrap().ino();
        let found = path_by_handle(&mount, id);
        let root = path_by_handle(&mount, fs::metadata(&mount).unwrap().ino());
        fs::remove_dir(&dir).unwrap();
        assert_eq!(found, Some(format!("/{name}")));
        assert_eq!(root.as_deref(), Some("/"));
        assert_eq!(path_by_handle(&mount, id), None, "removed");
    }

    #[test]
    fn walks_a_tree_and_maps_inodes_to_paths() {
        let dir = crate::attribution::test_dir::TestDir::new("cgroup");
        fs::create_dir_all(dir.path().join("system.slice/demo.service")).unwrap();
        fs::create_dir_all(dir.path().join("user.slice")).unwrap();
        let ino = |p: &str| fs::metadata(dir.path().join(p)).unwrap().ino();

        let mut paths = CgroupPaths::with_mount(dir.path().to_path_buf(), "/");
        assert_eq!(
            paths.path(ino("system.slice/demo.service")),
            Some("/system.slice/demo.service")
        );
        assert_eq!(paths.path(ino("user.slice")), Some("/user.slice"));
        assert_eq!(paths.path(ino("")), Some("/"));
        assert_eq!(paths.path(0), None);

        // A cgroup created after the walk is found by the next walk, no sooner than the interval.
        fs::create_dir(dir.path().join("late.scope")).unwrap();
        std::thread::sleep(RESCAN_INTERVAL);
        assert_eq!(paths.path(ino("late.scope")), Some("/late.scope"));

        let mut nested = CgroupPaths::with_mount(dir.path().to_path_buf(), "/kubepods.slice/");
        assert_eq!(
            nested.path(ino("user.slice")),
            Some("/kubepods.slice/user.slice")
        );
        assert_eq!(nested.path(ino("")), Some("/kubepods.slice"));
    }
}
