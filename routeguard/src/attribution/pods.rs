//! A pod's namespace, name and container name, from what the node keeps: the container
//! runtime's labels and kubelet's log directories. No API server is asked.
//!
//! - containerd's labels on the container (`io.kubernetes.pod.namespace`, `…pod.name`,
//!   `…pod.uid`, `io.kubernetes.container.name`, set by its CRI plugin), read with `ctr`
//!   through containerd's API when its socket is there. `ctr` ships with containerd (the same
//!   Debian package, and containerd's release archives), so it is present wherever the socket
//!   is; a gRPC client of our own would bring tonic, hyper and prost (and `protoc` at build
//!   time) for one call per container. containerd's on-disk metadata is not an API and is not
//!   read.
//! - kubelet's log directories, on every node: `pods/<namespace>_<name>_<uid>/<container>/` and
//!   `containers/<pod>_<namespace>_<container>-<id>.log` under `/var/log`. Namespaces, pod and
//!   container names are DNS labels or subdomains, so `_` never occurs in them.
//!
//! Both are asked once per cgroup (the caller caches the answer): a lookup costs a directory
//! listing and at most one `ctr` run, bounded by [`CTR_TIMEOUT`].

use std::env;
use std::fs;
use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::event::Pod;

use super::trust::Trust;

/// Where kubelet's `pods/` and `containers/` log directories are, unless
/// `ROUTEGUARD_KUBELET_LOG_DIR` says otherwise.
pub const KUBELET_LOG_DIR: &str = "/var/log";
/// containerd's socket, unless `ROUTEGUARD_CONTAINERD_ADDRESS` says otherwise.
pub const CONTAINERD_ADDRESS: &str = "/run/containerd/containerd.sock";
/// The containerd namespace of containers made through the CRI.
const CRI_NAMESPACE: &str = "k8s.io";
/// A `ctr` run longer than this is killed, and its container's labels go unread.
const CTR_TIMEOUT: Duration = Duration::from_secs(1);
/// At most this much of `ctr`'s output is read (a container's info is a few KB).
const CTR_OUTPUT_MAX: u64 = 1 << 20;

/// Where pod names are looked up.
#[derive(Clone, Debug)]
pub struct PodSources {
    /// Holds kubelet's `pods/` and `containers/` directories.
    logs: PathBuf,
    /// containerd's socket and the `ctr` to ask it with; `None` when either is missing.
    containerd: Option<(PathBuf, PathBuf)>,
    trust: Trust,
}

impl PodSources {
    /// The node's own: `/var/log`, containerd's default socket, `ctr` from `PATH`; each
    /// overridden by its environment variable (a DaemonSet mounts them elsewhere).
    pub fn from_env() -> Self {
        let logs = env::var_os("ROUTEGUARD_KUBELET_LOG_DIR")
            .map_or_else(|| PathBuf::from(KUBELET_LOG_DIR), PathBuf::from);
        let socket = env::var_os("ROUTEGUARD_CONTAINERD_ADDRESS")
            .map_or_else(|| PathBuf::from(CONTAINERD_ADDRESS), PathBuf::from);
        let ctr = find_program("ctr");
        let containerd = match (socket.exists(), ctr) {
            (true, Some(ctr)) => Some((socket, ctr)),
            (true, None) => {
                tracing::info!(
                    socket = %socket.display(),
                    "containerd's socket is there but `ctr` is not on PATH: pod names come from kubelet's log directories only"
                );
                None
            }
            (false, _) => None,
        };
        Self {
            logs,
            containerd,
            trust: Trust::root(),
        }
    }

    /// Only kubelet's log directories under `logs`, trusting `trust`'s owner (tests).
    #[cfg(test)]
    pub fn logs_only(logs: PathBuf, trust: Trust) -> Self {
        Self {
            logs,
            containerd: None,
            trust,
        }
    }

    /// The pod of uid `uid` (from a trusted cgroup path), with the names the runtime and
    /// kubelet give it and `container_id`.
    pub fn pod(&self, uid: &str, container_id: Option<&str>) -> Pod {
        let mut pod = Pod {
            namespace: None,
            name: None,
            uid: uid.to_string(),
            container: None,
        };
        if let (Some((socket, ctr)), Some(id)) = (&self.containerd, container_id) {
            if let Some(labels) = ctr_labels(ctr, socket, id) {
                apply_labels(&mut pod, &labels, id);
            }
        }
        if pod.namespace.is_none() || pod.name.is_none() {
            if let Some((namespace, name)) = self.log_dir(uid) {
                pod.namespace = Some(namespace);
                pod.name = Some(name);
            }
        }
        if pod.container.is_none() {
            if let (Some(ns), Some(name), Some(id)) = (&pod.namespace, &pod.name, container_id) {
                pod.container = self.container_log(ns, name, id);
            }
        }
        pod
    }

    /// `pods/<namespace>_<name>_<uid>`: the namespace and name of the pod `uid`.
    fn log_dir(&self, uid: &str) -> Option<(String, String)> {
        let dir = self.logs.join("pods");
        let suffix = format!("_{uid}");
        // Only kubelet (root) may add entries: the directory must be root's alone.
        if !self.trust.owns(&dir) {
            return None;
        }
        fs::read_dir(&dir).ok()?.flatten().find_map(|entry| {
            let file_name = entry.file_name();
            let stem = file_name.to_str()?.strip_suffix(&suffix)?;
            let (namespace, name) = stem.split_once('_')?;
            let ok = !namespace.is_empty()
                && !name.contains('_')
                && entry.file_type().is_ok_and(|t| t.is_dir())
                && self.trust.owns(&entry.path());
            ok.then(|| (namespace.to_string(), name.to_string()))
        })
    }

    /// `containers/<pod>_<namespace>_<container>-<id>.log`: the name of container `id`.
    fn container_log(&self, namespace: &str, pod: &str, id: &str) -> Option<String> {
        let prefix = format!("{pod}_{namespace}_");
        let suffix = format!("-{id}.log");
        let dir = self.logs.join("containers");
        if !self.trust.owns(&dir) {
            return None;
        }
        fs::read_dir(dir).ok()?.flatten().find_map(|entry| {
            let file_name = entry.file_name();
            let container = file_name
                .to_str()?
                .strip_prefix(&prefix)?
                .strip_suffix(&suffix)?;
            let ok = !container.is_empty()
                && !container.contains('_')
                && self.trust.owns_entry(&entry.path());
            ok.then(|| container.to_string())
        })
    }
}

/// The CRI labels of a container, from `ctr containers info`'s JSON.
fn ctr_labels(
    ctr: &Path,
    socket: &Path,
    id: &str,
) -> Option<serde_json::Map<String, serde_json::Value>> {
    let mut child = Command::new(ctr)
        .arg("--address")
        .arg(socket)
        .args(["--namespace", CRI_NAMESPACE, "containers", "info", id])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| tracing::debug!("cannot run {}: {e}", ctr.display()))
        .ok()?;
    // Read while it runs: a spec larger than the pipe would otherwise stall it.
    let mut stdout = child.stdout.take()?;
    let reader = std::thread::spawn(move || {
        let mut out = Vec::new();
        let _ = (&mut stdout).take(CTR_OUTPUT_MAX).read_to_end(&mut out);
        out
    });
    let deadline = Instant::now() + CTR_TIMEOUT;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break Some(status),
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(5)),
            _ => break None,
        }
    };
    let Some(status) = status else {
        tracing::warn!(
            container = id,
            "`ctr containers info` took over {CTR_TIMEOUT:?}: killed; its labels are not read"
        );
        // Our own child, not yet reaped: its pid cannot name another process.
        let _ = child.kill();
        let _ = child.wait();
        let _ = reader.join();
        return None;
    };
    let out = reader.join().ok()?;
    if !status.success() {
        // Not one of containerd's CRI containers (docker's, or gone already).
        tracing::debug!(container = id, %status, "`ctr containers info` found no container");
        return None;
    }
    let info: serde_json::Value = serde_json::from_slice(&out).ok()?;
    info.get("Labels")?.as_object().cloned()
}

/// Fills `pod` from CRI labels, unless they name another pod than the cgroup path does.
fn apply_labels(pod: &mut Pod, labels: &serde_json::Map<String, serde_json::Value>, id: &str) {
    let label = |key: &str| labels.get(key).and_then(|v| v.as_str()).map(str::to_string);
    if let Some(uid) = label("io.kubernetes.pod.uid") {
        if uid != pod.uid {
            tracing::warn!(container = id, cgroup_uid = %pod.uid, label_uid = %uid, "the runtime's labels name another pod than the container's cgroup: labels ignored");
            return;
        }
    }
    pod.namespace = label("io.kubernetes.pod.namespace");
    pod.name = label("io.kubernetes.pod.name");
    pod.container = label("io.kubernetes.container.name");
}

/// `name` on `PATH`.
fn find_program(name: &str) -> Option<PathBuf> {
    let path = env::var_os("PATH")?;
    env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::symlink;

    use super::*;
    use crate::attribution::test_dir::TestDir;

    const UID: &str = "0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0";
    const ID: &str = "3f4e1c2b9a8d7e6f5a4b3c2d1e0f9a8b7c6d5e4f3a2b1c0d9e8f7a6b5c4d3e2f";

    fn euid() -> u32 {
        // SAFETY: geteuid has no preconditions and cannot fail.
        unsafe { libc::geteuid() }
    }

    #[test]
    fn names_from_kubelet_log_directories() {
        let dir = TestDir::new("podlogs");
        let logs = dir.path();
        fs::create_dir_all(logs.join(format!(
            "pods/kube-system_calico-node-x7k2_{UID}/calico-node"
        )))
        .unwrap();
        fs::create_dir_all(logs.join("pods/default_other_1111")).unwrap();
        fs::create_dir_all(logs.join("containers")).unwrap();
        symlink(
            format!("/var/log/pods/kube-system_calico-node-x7k2_{UID}/calico-node/0.log"),
            logs.join(format!(
                "containers/calico-node-x7k2_kube-system_calico-node-{ID}.log"
            )),
        )
        .unwrap();
        let sources = PodSources::logs_only(logs.to_path_buf(), Trust::owner(euid()));
        assert_eq!(
            sources.pod(UID, Some(ID)),
            Pod {
                namespace: Some("kube-system".into()),
                name: Some("calico-node-x7k2".into()),
                uid: UID.into(),
                container: Some("calico-node".into()),
            }
        );
        // Another container of the pod: its name is not guessed.
        let other = "c".repeat(64);
        assert_eq!(sources.pod(UID, Some(&other)).container, None);
        // Not a pod kubelet knows: the uid only.
        let unknown = sources.pod("9999", Some(ID));
        assert_eq!((unknown.namespace, unknown.name), (None, None));
        // Directories of another owner are not believed.
        let foreign = PodSources::logs_only(logs.to_path_buf(), Trust::owner(euid() + 1));
        assert_eq!(foreign.pod(UID, Some(ID)).name, None);
    }

    #[test]
    fn labels_naming_another_pod_are_ignored() {
        let labels = |uid: &str| {
            serde_json::json!({
                "io.kubernetes.pod.namespace": "kube-system",
                "io.kubernetes.pod.name": "kube-router-abcde",
                "io.kubernetes.pod.uid": uid,
                "io.kubernetes.container.name": "kube-router",
            })
            .as_object()
            .cloned()
            .unwrap()
        };
        let empty = || Pod {
            namespace: None,
            name: None,
            uid: UID.into(),
            container: None,
        };
        let mut pod = empty();
        apply_labels(&mut pod, &labels(UID), ID);
        assert_eq!(pod.name.as_deref(), Some("kube-router-abcde"));
        assert_eq!(pod.container.as_deref(), Some("kube-router"));
        let mut pod = empty();
        apply_labels(&mut pod, &labels("another"), ID);
        assert_eq!(pod, empty());
    }
}
