//! Attribution: which process asked for a removal, and in which network namespace.
//!
//! The kernel sends a [`TaskRecord`] once per process image, before its first captured request
//! (and again after each exec), so a process that was gone a millisecond later is still named in
//! full. [`ProcessTable`] keeps those records and turns the [`TaskInfo`] every request carries
//! into an [`Actor`]; only when no record arrived does it read /proc, and then only after
//! checking that /proc still shows the same process image.
//!
//! What the process's cgroup names — systemd unit, container, Kubernetes pod — is resolved once
//! per cgroup ([`identity`]), from the names root chose in its path ([`trust`]), kubelet's
//! layout ([`kubepods`]) and what the node keeps of its pods ([`pods`]).

mod cgroup;
mod cmdline;
pub mod host;
mod identity;
mod kubepods;
mod netns;
mod pods;
mod procfs;
pub mod suppressed;
mod trust;

pub use cgroup::{cgroup2_mount, container_of, systemd_v1_mount, unit_of, CgroupPaths};
pub use cmdline::{cstr_lossy, join_quoted, split_args};
pub use identity::CgroupIdentity;
pub use netns::NetnsNames;
pub use pods::PodSources;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use routeguard_common::{TaskInfo, TaskRecord, ANCESTRY_MAX, ARGS_MAX, EXE_PATH_MAX};

use crate::event::{Actor, Ancestor, ExeId};
use cmdline::cstr_opt;
use identity::Identities;
use procfs::Procfs;
use trust::Trust;

/// Process images remembered at most. Past it, the least recently used half is forgotten: a
/// process that has not made a request for that long is not about to.
const CAPACITY: usize = 8192;

/// What is known of one process image, keyed by `(pid, start_time)`.
#[derive(Clone, Debug)]
struct Task {
    ppid: u32,
    ancestry: Vec<Ancestor>,
    argv: Vec<String>,
    /// `argv` joined for display ([`join_quoted`]): once per process image, not per request.
    cmdline: String,
    /// Full path of the executable, when known.
    exe: Option<String>,
    /// Basename from the kernel (`mm->exe_file`), the last resort for `exe`.
    exe_name: Option<String>,
    /// (device, inode) of the executable: from the kernel, else /proc while the image lived.
    exe_id: Option<ExeId>,
    /// cgroup leaf directory name from the kernel, for when the cgroup is gone.
    cgroup_leaf: Option<String>,
    /// What /proc said of its cgroup while it lived: the v2 path for fallback entries, or the
    /// v1 `name=systemd` path when its cgroup v2 id names nothing.
    proc_identity: Option<Arc<CgroupIdentity>>,
    last_used: u64,
    /// The actor last built for one of its threads, and what it was built from.
    built: Option<Built>,
}

/// An [`Actor`] as built for thread `tid` with this identity and name.
#[derive(Clone, Debug)]
struct Built {
    tid: u32,
    uid: u32,
    comm: [u8; routeguard_common::COMM_LEN],
    actor: Arc<Actor>,
}

/// Caches process details and builds [`Actor`]s.
pub struct ProcessTable {
    tasks: HashMap<(u32, u64), Task>,
    /// The newest process image seen of each pid, as its task record or a request named it: a
    /// notification names only the pid and thread.
    latest: HashMap<u32, TaskInfo>,
    clock: u64,
    proc: Procfs,
    cgroups: CgroupPaths,
    identities: Identities,
    exe_ids: ExeIdSources,
}

/// Where process images' executable identities came from, since start.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ExeIdSources {
    /// From the kernel's task record (`mm->exe_file->f_inode`, read at request time).
    pub kernel: u64,
    /// From `/proc/PID/exe`, because the kernel gave none (BTF lacks an offset, or the task
    /// record was lost) and the process was still there.
    pub proc: u64,
    /// Not known at all: no kernel identity and the process was gone. `exe` allow-lists match
    /// no such actor.
    pub unknown: u64,
}

impl ProcessTable {
    pub fn new() -> Self {
        Self::with_parts(PathBuf::from("/proc"), CgroupPaths::new())
    }

    /// A table reading processes from `proc_root` and cgroups through `cgroups`, pods from the
    /// node's own sources ([`PodSources::from_env`]).
    pub fn with_parts(proc_root: PathBuf, cgroups: CgroupPaths) -> Self {
        Self {
            tasks: HashMap::new(),
            latest: HashMap::new(),
            clock: 0,
            proc: Procfs::new(proc_root),
            cgroups,
            identities: Identities::new(Trust::root(), PodSources::from_env()),
            exe_ids: ExeIdSources::default(),
        }
    }

    /// cgroup identities forgotten because their cache was full, since start.
    pub fn cgroup_evictions(&self) -> u64 {
        self.identities.evictions()
    }

    /// Where the executable identities of the process images seen came from, since start.
    pub fn exe_id_sources(&self) -> ExeIdSources {
        self.exe_ids
    }

    /// Counts where `id` came from (`from_kernel`, else /proc or nothing).
    fn count_exe_id(&mut self, from_kernel: bool, id: Option<ExeId>) {
        let slot = match (from_kernel, id) {
            (true, _) => &mut self.exe_ids.kernel,
            (false, Some(_)) => &mut self.exe_ids.proc,
            (false, None) => &mut self.exe_ids.unknown,
        };
        *slot += 1;
    }

    /// The identity of cgroup v2 `id`: remembered, or resolved now from its live path.
    fn identity_of(&mut self, id: u64) -> Option<Arc<CgroupIdentity>> {
        if id == 0 {
            return None;
        }
        if let Some(known) = self.identities.get(id) {
            return Some(known);
        }
        let path = self.cgroups.path(id)?.to_string();
        let (mount, prefix) = self.cgroups.mount()?;
        Some(self.identities.insert(id, mount, prefix, &path))
    }

    /// The identity of `info`'s cgroup v2 id from the path /proc gives the process, when that
    /// path is still the cgroup of that id: a cgroup created since the last walk of the tree
    /// (walks are rate-limited) is resolved at once, before a short-lived container removes it.
    fn identity_from_proc(&mut self, info: &TaskInfo) -> Option<Arc<CgroupIdentity>> {
        use std::os::unix::fs::MetadataExt as _;
        if info.cgroup_id == 0 {
            return None;
        }
        self.proc.same_image(info.pid, info.start_time)?;
        let path = self.proc.cgroup(info.pid)?;
        let (mount, prefix) = self.cgroups.mount()?;
        let below = path
            .strip_prefix(prefix.trim_end_matches('/'))
            .unwrap_or(&path);
        let dir = mount.join(below.trim_start_matches('/'));
        if std::fs::metadata(&dir).ok()?.ino() != info.cgroup_id {
            return None;
        }
        Some(self.identities.insert(info.cgroup_id, mount, prefix, &path))
    }

    /// What /proc says of `pid`'s cgroups: its v2 path's identity (`v2`, fallback entries), or,
    /// when that names nothing, its v1 `name=systemd` path's. The caller checks the image.
    fn proc_identity(&self, pid: u32, v2: Option<&str>) -> Option<Arc<CgroupIdentity>> {
        let from_v2 = v2.map(|path| match self.cgroups.mount() {
            Some((mount, prefix)) => self.identities.resolve(mount, prefix, path),
            None => CgroupIdentity::unchecked(path),
        });
        if from_v2
            .as_ref()
            .is_some_and(CgroupIdentity::names_something)
        {
            return from_v2.map(Arc::new);
        }
        let from_v1 = self.cgroups.systemd_v1().and_then(|(mount, prefix)| {
            let path = self.proc.cgroup_systemd_v1(pid)?;
            Some(self.identities.resolve(mount, prefix, &path))
        });
        from_v1
            .filter(CgroupIdentity::names_something)
            .or(from_v2)
            .map(Arc::new)
    }

    /// Details the kernel sent once per process image (before its first request, and after
    /// each exec). A later record for the same image replaces the earlier one.
    pub fn insert(&mut self, rec: &TaskRecord) {
        let info = &rec.task;
        let args_len = (rec.args_len as usize).min(ARGS_MAX);
        let exe_len = (rec.exe_path_len as usize).min(EXE_PATH_MAX);
        let ancestry_len = (rec.ancestry_len as usize).min(ANCESTRY_MAX);
        let ancestry = rec.ancestry[..ancestry_len]
            .iter()
            .take_while(|a| a.pid != 0)
            .map(|a| Ancestor {
                pid: a.pid,
                comm: cstr_lossy(&a.comm),
            })
            .collect();
        // The record arrives before the process's first request, so it is most likely still
        // alive now: the best moment to read the full exe path the kernel could not give.
        let exe = cstr_opt(&rec.exe_path[..exe_len]).or_else(|| {
            self.proc
                .same_image(info.pid, info.start_time)
                .and_then(|_| self.proc.exe(info.pid))
        });
        // Resolved now, while the cgroup most likely still exists; remembered by id after.
        let kernel_exe = ExeId::from_kernel(rec.exe_dev, rec.exe_ino);
        let exe_id = kernel_exe.or_else(|| {
            // Read, then checked: the pid may have been recycled in between.
            let id = self.proc.exe_id(info.pid)?;
            self.proc.same_image(info.pid, info.start_time).map(|_| id)
        });
        self.count_exe_id(kernel_exe.is_some(), exe_id);
        let by_id = self
            .identity_of(info.cgroup_id)
            .or_else(|| self.identity_from_proc(info));
        let proc_identity = if by_id
            .as_deref()
            .is_some_and(CgroupIdentity::names_something)
            || self.cgroups.systemd_v1().is_none()
        {
            None
        } else {
            // cgroup v2 names nothing (a v1-only host, or a runtime that left the process in
            // its parent's v2 cgroup): the v1 name=systemd path, if it is still this process.
            self.proc
                .same_image(info.pid, info.start_time)
                .and_then(|_| self.proc_identity(info.pid, None))
                .filter(|_| self.proc.same_image(info.pid, info.start_time).is_some())
        };
        let argv = split_args(&rec.args[..args_len]);
        let task = Task {
            ppid: rec.ppid,
            ancestry,
            cmdline: join_quoted(&argv),
            argv,
            exe,
            exe_name: cstr_opt(&rec.exe_name),
            exe_id,
            cgroup_leaf: cstr_opt(&rec.cgroup_name),
            proc_identity,
            last_used: 0,
            built: None,
        };
        self.remember((info.pid, info.start_time), task);
        self.latest.insert(info.pid, *info);
    }

    /// The actor for thread `tid` of process `pid`, when nothing else is known of it (a
    /// notification of the kernel names only those): the newest image of that pid a task record
    /// or request showed, else what /proc shows now.
    pub fn actor_of(&mut self, pid: u32, tid: u32) -> Arc<Actor> {
        let info = match self.latest.get(&pid) {
            Some(info) => TaskInfo { tid, ..*info },
            None => {
                let stat = self.proc.stat(pid);
                let comm = stat.as_ref().map(|s| s.comm.as_bytes()).unwrap_or_default();
                let mut name = [0; routeguard_common::COMM_LEN];
                let n = comm.len().min(name.len() - 1);
                name[..n].copy_from_slice(&comm[..n]);
                TaskInfo {
                    pid,
                    tid,
                    uid: self.proc.uid(pid).unwrap_or(0),
                    gid: 0,
                    start_time: stat.map_or(0, |s| s.start_ticks * self.proc.ns_per_tick()),
                    cgroup_id: 0,
                    comm: name,
                }
            }
        };
        self.actor(&info)
    }

    /// The actor for a request made by `info`.
    pub fn actor(&mut self, info: &TaskInfo) -> Arc<Actor> {
        let key = (info.pid, info.start_time);
        if self.latest.len() >= CAPACITY && !self.latest.contains_key(&info.pid) {
            self.latest.clear();
        }
        self.latest.insert(info.pid, *info);
        if !self.tasks.contains_key(&key) {
            let task = self.read_proc(info);
            self.count_exe_id(false, task.exe_id);
            self.remember(key, task);
        }
        self.clock += 1;
        let clock = self.clock;
        let by_id = self.identity_of(info.cgroup_id);
        let task = self.tasks.get_mut(&key).expect("inserted above");
        task.last_used = clock;

        // The live (or remembered) cgroup's identity; else what /proc said; else the leaf name
        // the kernel sent, without a leading `/` to show it is not a full path (the cgroup was
        // gone before it could be resolved), which names nothing.
        let identity = match (by_id, &task.proc_identity) {
            (Some(id), Some(proc)) if !id.names_something() && proc.names_something() => {
                Some(Arc::clone(proc))
            }
            (Some(id), _) => Some(id),
            (None, Some(proc)) => Some(Arc::clone(proc)),
            (None, None) => task
                .cgroup_leaf
                .as_deref()
                .map(|leaf| Arc::new(CgroupIdentity::unchecked(leaf))),
        };
        let cgroup = identity.as_ref().map(|i| i.path.as_str());
        // A burst of removals by one thread names the same actor each time: built once.
        if let Some(built) = &task.built {
            if built.tid == info.tid
                && built.uid == info.uid
                && built.comm == info.comm
                && built.actor.cgroup.as_deref() == cgroup
                && built.actor.cgroup_id == Some(info.cgroup_id).filter(|&id| id != 0)
            {
                return Arc::clone(&built.actor);
            }
        }
        let actor = Arc::new(Actor {
            pid: info.pid,
            tid: info.tid,
            comm: cstr_lossy(&info.comm),
            exe: task.exe.clone().or_else(|| task.exe_name.clone()),
            exe_dev: task.exe_id.map(|id| id.dev),
            exe_inode: task.exe_id.map(|id| id.ino),
            cmdline: task.cmdline.clone(),
            argv: task.argv.clone(),
            uid: info.uid,
            ppid: task.ppid,
            ancestry: task.ancestry.clone(),
            cgroup: cgroup.map(str::to_string),
            cgroup_id: (info.cgroup_id != 0).then_some(info.cgroup_id),
            unit: identity.as_ref().and_then(|i| i.unit.clone()),
            container: identity.as_ref().and_then(|i| i.container.clone()),
            pod: identity.as_ref().and_then(|i| i.pod.clone()),
        });
        task.built = Some(Built {
            tid: info.tid,
            uid: info.uid,
            comm: info.comm,
            actor: Arc::clone(&actor),
        });
        actor
    }

    /// What /proc says of `info`'s process, if /proc still shows that image; else nothing
    /// beyond what the request itself carried.
    fn read_proc(&self, info: &TaskInfo) -> Task {
        let mut task = Task {
            ppid: 0,
            ancestry: Vec::new(),
            argv: Vec::new(),
            cmdline: String::new(),
            exe: None,
            exe_name: None,
            exe_id: None,
            cgroup_leaf: None,
            proc_identity: None,
            last_used: 0,
            built: None,
        };
        let pid = info.pid;
        let Some(stat) = self.proc.same_image(pid, info.start_time) else {
            tracing::debug!(
                pid,
                "no task record and /proc/{pid} is gone or another process"
            );
            return task;
        };
        let argv = self.proc.argv(pid);
        let exe = self.proc.exe(pid);
        let exe_id = self.proc.exe_id(pid);
        let cgroup_path = self.proc.cgroup(pid);
        let proc_identity = self.proc_identity(pid, cgroup_path.as_deref());
        // Re-check after reading: the pid may have been recycled meanwhile.
        if self.proc.same_image(pid, info.start_time).is_none() {
            return task;
        }
        // stat's field 4 is the same value as status' PPid (the real parent's tgid).
        task.ppid = stat.ppid;
        task.ancestry = self.proc.ancestry(stat.ppid);
        task.argv = argv.unwrap_or_default();
        task.cmdline = join_quoted(&task.argv);
        task.exe = exe;
        task.exe_id = exe_id;
        task.proc_identity = proc_identity;
        task
    }

    fn remember(&mut self, key: (u32, u64), task: Task) {
        if self.tasks.len() >= CAPACITY && !self.tasks.contains_key(&key) {
            let mut ages: Vec<u64> = self.tasks.values().map(|t| t.last_used).collect();
            let mid = ages.len() / 2;
            let (_, &mut threshold, _) = ages.select_nth_unstable(mid);
            self.tasks.retain(|_, t| t.last_used > threshold);
        }
        let last_used = self.tasks.get(&key).map_or(self.clock, |t| t.last_used);
        self.tasks.insert(key, Task { last_used, ..task });
    }
}

impl Default for ProcessTable {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
pub(crate) mod test_dir {
    //! A temporary directory removed on drop.

    use std::path::{Path, PathBuf};
    use std::sync::atomic::{AtomicU32, Ordering};

    pub struct TestDir(PathBuf);

    impl TestDir {
        pub fn new(tag: &str) -> Self {
            static NEXT: AtomicU32 = AtomicU32::new(0);
            let n = NEXT.fetch_add(1, Ordering::Relaxed);
            let path =
                std::env::temp_dir().join(format!("routeguard-{tag}-{}-{n}", std::process::id()));
            let _ = std::fs::remove_dir_all(&path);
            std::fs::create_dir_all(&path).expect("create test dir");
            Self(path)
        }

        pub fn path(&self) -> &Path {
            &self.0
        }
    }

    impl Drop for TestDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

#[cfg(test)]
mod tests;
