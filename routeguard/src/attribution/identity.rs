//! What a cgroup says about the processes in it — systemd unit, container, Kubernetes pod —
//! resolved once per cgroup and kept, so that a process that exited long ago (and a cgroup
//! removed since) is still named.
//!
//! Names come from the cgroup's path, and only from the part of it root named ([`Trust`]).

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use crate::event::Pod;

use super::cgroup::{container_of, unit_of};
use super::kubepods::pod_of;
use super::pods::PodSources;
use super::trust::Trust;

/// cgroups remembered at most (a few hundred bytes each). Past it, the least recently used
/// half is forgotten, and counted ([`Identities::evictions`]): a busy node runs a few hundred
/// containers, so this holds every live one and many gone.
pub const CAPACITY: usize = 4096;

/// What a cgroup path names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CgroupIdentity {
    /// The path, as found (untrusted: any name below a delegated directory is its owner's);
    /// only the leaf directory's name, without a leading `/`, when the cgroup was gone.
    pub path: String,
    /// systemd unit: the deepest trusted `*.service` or `*.scope`.
    pub unit: Option<String>,
    /// Container id: the pod's container for a pod, else the innermost trusted one.
    pub container: Option<String>,
    pub pod: Option<Pod>,
}

impl CgroupIdentity {
    /// A path whose names cannot be checked (a leaf name only): it names nothing.
    pub fn unchecked(path: &str) -> Self {
        Self {
            path: path.to_string(),
            unit: None,
            container: None,
            pod: None,
        }
    }

    /// Whether it names anything beyond its path.
    pub fn names_something(&self) -> bool {
        self.unit.is_some() || self.container.is_some() || self.pod.is_some()
    }
}

struct Entry {
    identity: Arc<CgroupIdentity>,
    last_used: u64,
}

/// Resolves cgroup paths and remembers them by cgroup id.
pub struct Identities {
    by_id: HashMap<u64, Entry>,
    clock: u64,
    evictions: u64,
    trust: Trust,
    pods: PodSources,
}

impl Identities {
    pub fn new(trust: Trust, pods: PodSources) -> Self {
        Self {
            by_id: HashMap::new(),
            clock: 0,
            evictions: 0,
            trust,
            pods,
        }
    }

    /// The identity remembered for cgroup `id`.
    pub fn get(&mut self, id: u64) -> Option<Arc<CgroupIdentity>> {
        self.clock += 1;
        let clock = self.clock;
        self.by_id.get_mut(&id).map(|e| {
            e.last_used = clock;
            Arc::clone(&e.identity)
        })
    }

    /// Resolves `path` (found in the hierarchy mounted at `mount`, whose root is `prefix` in
    /// it) and remembers it as cgroup `id`'s.
    pub fn insert(
        &mut self,
        id: u64,
        mount: &Path,
        prefix: &str,
        path: &str,
    ) -> Arc<CgroupIdentity> {
        let identity = Arc::new(self.resolve(mount, prefix, path));
        if self.by_id.len() >= CAPACITY && !self.by_id.contains_key(&id) {
            let mut ages: Vec<u64> = self.by_id.values().map(|e| e.last_used).collect();
            let mid = ages.len() / 2;
            let (_, &mut threshold, _) = ages.select_nth_unstable(mid);
            let before = self.by_id.len();
            self.by_id.retain(|_, e| e.last_used > threshold);
            self.evictions += (before - self.by_id.len()) as u64;
            tracing::debug!(
                evictions = self.evictions,
                "cgroup identities forgotten (cache full)"
            );
        }
        self.clock += 1;
        self.by_id.insert(
            id,
            Entry {
                identity: Arc::clone(&identity),
                last_used: self.clock,
            },
        );
        identity
    }

    /// cgroups forgotten because the cache was full, since start.
    pub fn evictions(&self) -> u64 {
        self.evictions
    }

    /// What `path` names, from the names root chose in it. `prefix` (the mount's root in the
    /// hierarchy, above what routeguard can see) is trusted as whoever mounted it chose it.
    pub fn resolve(&self, mount: &Path, prefix: &str, path: &str) -> CgroupIdentity {
        let components: Vec<&str> = path.split('/').filter(|c| !c.is_empty()).collect();
        let above: usize = prefix.split('/').filter(|c| !c.is_empty()).count();
        let below = components.get(above..).unwrap_or_default();
        let trusted = &components[..above + self.trust.depth(mount, below)];
        let trusted_path = trusted.join("/");
        let pod_cgroup = pod_of(trusted);
        let container = match &pod_cgroup {
            Some(p) => p.container_id.map(str::to_string),
            None => container_of(&trusted_path).map(str::to_string),
        };
        CgroupIdentity {
            path: path.to_string(),
            unit: unit_of(&trusted_path).map(str::to_string),
            container,
            pod: pod_cgroup.map(|p| self.pods.pod(&p.uid, p.container_id)),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::fs;
    use std::os::unix::fs::PermissionsExt as _;

    use super::*;
    use crate::attribution::test_dir::TestDir;

    const ID: &str = "3f4e1c2b9a8d7e6f5a4b3c2d1e0f9a8b7c6d5e4f3a2b1c0d9e8f7a6b5c4d3e2f";
    const UID: &str = "0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0";

    fn euid() -> u32 {
        // SAFETY: geteuid has no preconditions and cannot fail.
        unsafe { libc::geteuid() }
    }

    fn identities(dir: &Path) -> Identities {
        let trust = Trust::owner(euid());
        Identities::new(trust, PodSources::logs_only(dir.join("logs"), trust))
    }

    fn pod_path() -> String {
        let u = UID.replace('-', "_");
        format!("kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod{u}.slice/cri-containerd-{ID}.scope")
    }

    #[test]
    fn a_root_owned_pod_is_named_a_delegated_look_alike_is_not() {
        let dir = TestDir::new("identity");
        let cg = dir.path().join("cg");
        let real = pod_path();
        let fake = format!("user.slice/user-1000.slice/user@1000.service/{real}");
        fs::create_dir_all(cg.join(&real)).unwrap();
        fs::create_dir_all(cg.join(&fake)).unwrap();
        fs::create_dir_all(
            dir.path()
                .join(format!("logs/pods/kube-system_calico-node-x7k2_{UID}")),
        )
        .unwrap();
        let ids = identities(dir.path());

        let named = ids.resolve(&cg, "/", &format!("/{real}"));
        assert_eq!(named.path, format!("/{real}"));
        assert_eq!(named.container.as_deref(), Some(ID));
        assert_eq!(named.unit, Some(format!("cri-containerd-{ID}.scope")));
        let pod = named.pod.expect("a pod");
        assert_eq!(pod.uid, UID);
        assert_eq!(pod.namespace.as_deref(), Some("kube-system"));
        assert_eq!(pod.name.as_deref(), Some("calico-node-x7k2"));

        // The user's manager owns its directory (simulated by a write bit for others).
        let manager = cg.join("user.slice/user-1000.slice/user@1000.service");
        fs::set_permissions(&manager, fs::Permissions::from_mode(0o777)).unwrap();
        let fake = ids.resolve(&cg, "/", &format!("/{fake}"));
        assert_eq!(
            fake.path,
            format!("/user.slice/user-1000.slice/user@1000.service/{real}")
        );
        assert_eq!(fake.pod, None);
        assert_eq!(fake.container, None);
        assert_eq!(fake.unit.as_deref(), Some("user@1000.service"));
    }

    #[test]
    fn remembered_by_id_and_bounded() {
        let dir = TestDir::new("identity-cache");
        let cg = dir.path().join("cg");
        fs::create_dir_all(cg.join("system.slice/a.service")).unwrap();
        let mut ids = identities(dir.path());
        let a = ids.insert(7, &cg, "/", "/system.slice/a.service");
        assert_eq!(a.unit.as_deref(), Some("a.service"));
        // The cgroup goes: the identity stays.
        fs::remove_dir(cg.join("system.slice/a.service")).unwrap();
        assert_eq!(ids.get(7).as_deref(), Some(&*a));
        assert_eq!(ids.get(8), None);

        for id in 100..100 + CAPACITY as u64 {
            ids.insert(id, &cg, "/", "/system.slice");
            if id % 2 == 0 {
                let _ = ids.get(7);
            }
        }
        assert!(ids.by_id.len() <= CAPACITY);
        assert_eq!(ids.evictions(), (CAPACITY / 2) as u64 + 1);
        assert!(ids.get(7).is_some(), "the most used one is kept");
    }

    #[test]
    fn a_mount_below_the_root_trusts_its_prefix() {
        let dir = TestDir::new("identity-prefix");
        let cg = dir.path().join("cg");
        fs::create_dir_all(cg.join("x.scope")).unwrap();
        let ids = identities(dir.path());
        let id = ids.resolve(
            &cg,
            "/system.slice/rg.service",
            "/system.slice/rg.service/x.scope",
        );
        assert_eq!(id.unit.as_deref(), Some("x.scope"));
        assert_eq!(CgroupIdentity::unchecked("x.scope").unit, None);
    }
}
