//! Which machine an event happened on, and the pod a process ran in: the identities a fleet's
//! pipeline groups by.
//!
//! The host is read once when capture starts ([`set_local_host`], from `attribution::host`)
//! and every event made from then on names it: events travel to log stores far from the node.

use std::sync::{Arc, OnceLock};

use serde::{Deserialize, Serialize};

/// The machine routeguard runs on.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq, Hash)]
pub struct Host {
    /// Host name (`uname -n`), as the kernel had it at start.
    pub name: String,
    /// `/etc/machine-id`: 32 hex digits, stable across reboots and renames.
    pub machine_id: Option<String>,
    /// The Kubernetes node name, from the DaemonSet's downward API (`ROUTEGUARD_NODE_NAME`).
    pub node: Option<String>,
}

/// The Kubernetes pod a process ran in, from its cgroup path (kubelet's layout) and what the
/// node keeps of the pod: the container runtime's labels, kubelet's log directories.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq, Hash)]
pub struct Pod {
    /// Pod namespace (`io.kubernetes.pod.namespace`); `None` when neither the runtime nor
    /// kubelet's log directories named it.
    pub namespace: Option<String>,
    /// Pod name (`io.kubernetes.pod.name`).
    pub name: Option<String>,
    /// Pod UID, from the cgroup path (always known for a pod).
    pub uid: String,
    /// Container name within the pod (`io.kubernetes.container.name`).
    pub container: Option<String>,
}

static LOCAL: OnceLock<Arc<Host>> = OnceLock::new();

/// Records the machine every event made from now on names. The first call wins: the host is
/// read once, at start.
pub fn set_local_host(host: Host) {
    let _ = LOCAL.set(Arc::new(host));
}

/// The host [`set_local_host`] recorded, if any (none in unit tests and when reading captures).
pub fn local_host() -> Option<Arc<Host>> {
    LOCAL.get().cloned()
}
