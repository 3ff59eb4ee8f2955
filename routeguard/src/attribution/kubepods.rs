//! Kubelet's cgroup layout: which pod, and which of its containers, a cgroup path names.
//!
//! kubelet places every pod under one tree (`pkg/kubelet/cm/cgroup_manager_linux.go`,
//! `qos_container_manager_linux.go`), one level per QoS class except `Guaranteed`:
//! - systemd driver: `kubepods.slice/kubepods-<qos>.slice/kubepods-<qos>-pod<uid>.slice/<scope>`,
//!   the uid's `-` written `_` (a `-` in a slice name is a level); the scope is the runtime's:
//!   `cri-containerd-<id>.scope`, `crio-<id>.scope`, `docker-<id>.scope`. With
//!   `--cgroup-root=/kubelet.slice` (kind, some distributions) every name gains that prefix:
//!   `kubelet.slice/kubelet-kubepods.slice/kubelet-kubepods-<qos>.slice/…`.
//! - cgroupfs driver: `kubepods/<qos>/pod<uid>/<id>` (CRI-O: `crio-<id>`).
//!
//! The layout is read from the top: the first `kubepods` level, then the pod, then the
//! container right below it. Anything deeper (a process in a container making cgroups of its
//! own) names neither another pod nor another container.

/// What a cgroup path says of its pod.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PodCgroup<'p> {
    /// The pod's UID, with `-` (as the API server spells it).
    pub uid: String,
    /// `burstable` or `besteffort`; `None` for a Guaranteed pod.
    pub qos: Option<&'p str>,
    /// The container's id (64 hex digits); `None` for a cgroup of the pod itself.
    pub container_id: Option<&'p str>,
}

/// The pod (and container) kubelet's layout makes of `components`, the cgroup path's
/// components from the hierarchy's root.
pub fn pod_of<'p>(components: &[&'p str]) -> Option<PodCgroup<'p>> {
    let start = components
        .iter()
        .position(|c| *c == "kubepods" || is_kubepods_slice(c))?;
    let rest = &components[start + 1..];
    if components[start] == "kubepods" {
        cgroupfs(rest)
    } else {
        let base = components[start].strip_suffix(".slice")?;
        systemd(base, rest)
    }
}

fn is_kubepods_slice(c: &str) -> bool {
    c == "kubepods.slice" || c.ends_with("-kubepods.slice")
}

/// Below `<base>.slice`: `<base>-<qos>.slice/<base>-<qos>-pod<uid>.slice/<scope>`, or
/// `<base>-pod<uid>.slice/<scope>`.
fn systemd<'p>(base: &str, rest: &[&'p str]) -> Option<PodCgroup<'p>> {
    let level = |c: &'p str, parent: &str| -> Option<&'p str> {
        c.strip_suffix(".slice")?
            .strip_prefix(parent)?
            .strip_prefix('-')
    };
    let first = level(rest.first()?, base)?;
    let (qos, pod, below) = match qos_class(first) {
        Some(qos) => {
            let parent = format!("{base}-{qos}");
            (Some(qos), level(rest.get(1)?, &parent)?, &rest[2..])
        }
        None => (None, first, &rest[1..]),
    };
    let uid = pod.strip_prefix("pod")?.replace('_', "-");
    is_uid(&uid).then(|| PodCgroup {
        uid,
        qos,
        container_id: below.first().and_then(|c| scope_id(c)),
    })
}

/// Below `kubepods`: `<qos>/pod<uid>/<id>`, or `pod<uid>/<id>`.
fn cgroupfs<'p>(rest: &[&'p str]) -> Option<PodCgroup<'p>> {
    let first = *rest.first()?;
    let (qos, pod, below) = match qos_class(first) {
        Some(qos) => (Some(qos), *rest.get(1)?, &rest[2..]),
        None => (None, first, &rest[1..]),
    };
    let uid = pod.strip_prefix("pod")?;
    is_uid(uid).then(|| PodCgroup {
        uid: uid.to_string(),
        qos,
        container_id: below.first().and_then(|c| {
            let id = c.strip_prefix("crio-").unwrap_or(c);
            is_container_id(id).then_some(id)
        }),
    })
}

fn qos_class(level: &str) -> Option<&str> {
    ["burstable", "besteffort"]
        .into_iter()
        .find(|q| *q == level)
}

/// The container id of a runtime's scope (`cri-containerd-<id>.scope`, …). CRI-O's
/// `crio-conmon-<id>.scope` holds its monitor, which is not in the container.
fn scope_id(c: &str) -> Option<&str> {
    let stem = c.strip_suffix(".scope")?;
    ["cri-containerd-", "crio-", "docker-"]
        .into_iter()
        .find_map(|p| stem.strip_prefix(p))
        .filter(|id| is_container_id(id))
}

/// A pod UID: a UUID, or the 32 hex digits kubelet gives a static pod (a hash of its manifest).
fn is_uid(s: &str) -> bool {
    (32..=36).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_hexdigit() || b == b'-')
}

pub(super) fn is_container_id(s: &str) -> bool {
    s.len() == 64
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "3f4e1c2b9a8d7e6f5a4b3c2d1e0f9a8b7c6d5e4f3a2b1c0d9e8f7a6b5c4d3e2f";
    const UID: &str = "0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0";

    fn pod(path: &str) -> Option<PodCgroup<'_>> {
        let components: Vec<&str> = path.split('/').filter(|c| !c.is_empty()).collect();
        pod_of(&components).map(|p| PodCgroup {
            uid: p.uid,
            qos: p.qos,
            container_id: p.container_id,
        })
    }

    fn want(qos: Option<&'static str>, id: Option<&'static str>) -> Option<PodCgroup<'static>> {
        Some(PodCgroup {
            uid: UID.into(),
            qos,
            container_id: id,
        })
    }

    #[test]
    fn systemd_driver_every_runtime_and_qos() {
        let u = UID.replace('-', "_");
        for scope in ["cri-containerd", "crio", "docker"] {
            let path = format!(
                "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{u}.slice/{scope}-{ID}.scope"
            );
            assert_eq!(pod(&path), want(Some("burstable"), Some(ID)), "{path}");
        }
        let besteffort = format!(
            "/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod{u}.slice/cri-containerd-{ID}.scope"
        );
        assert_eq!(pod(&besteffort), want(Some("besteffort"), Some(ID)));
        // Guaranteed: no QoS level.
        let guaranteed = format!("/kubepods.slice/kubepods-pod{u}.slice/crio-{ID}.scope");
        assert_eq!(pod(&guaranteed), want(None, Some(ID)));
        // The pod's own cgroup, and CRI-O's monitor: the pod, no container.
        assert_eq!(
            pod(&format!("/kubepods.slice/kubepods-pod{u}.slice")),
            want(None, None)
        );
        assert_eq!(
            pod(&format!(
                "/kubepods.slice/kubepods-pod{u}.slice/crio-conmon-{ID}.scope"
            )),
            want(None, None)
        );
        // kubelet --cgroup-root=/kubelet.slice (kind).
        let kind = format!(
            "/kubelet.slice/kubelet-kubepods.slice/kubelet-kubepods-besteffort.slice/kubelet-kubepods-besteffort-pod{u}.slice/cri-containerd-{ID}.scope"
        );
        assert_eq!(pod(&kind), want(Some("besteffort"), Some(ID)));
    }

    #[test]
    fn cgroupfs_driver() {
        assert_eq!(
            pod(&format!("/kubepods/burstable/pod{UID}/{ID}")),
            want(Some("burstable"), Some(ID))
        );
        assert_eq!(
            pod(&format!("/kubepods/pod{UID}/crio-{ID}")),
            want(None, Some(ID))
        );
        assert_eq!(
            pod(&format!("/kubepods/besteffort/pod{UID}")),
            want(Some("besteffort"), None)
        );
    }

    #[test]
    fn read_from_the_top_not_the_bottom() {
        let u = UID.replace('-', "_");
        let other = "b".repeat(64);
        // A process in the container made a look-alike pod below its own cgroup: the pod and the
        // container are still the outer ones.
        let nested = format!(
            "/kubepods.slice/kubepods-pod{u}.slice/cri-containerd-{ID}.scope/kubepods.slice/kubepods-pod{}.slice/cri-containerd-{other}.scope",
            "1".repeat(32)
        );
        assert_eq!(pod(&nested), want(None, Some(ID)));
    }

    #[test]
    fn not_pods() {
        let u = UID.replace('-', "_");
        for path in [
            "/system.slice/kubelet.service".to_string(),
            "/kubepods.slice".to_string(),
            "/kubepods.slice/kubepods-burstable.slice".to_string(),
            // Levels that do not continue their parent's name.
            format!("/kubepods.slice/other-pod{u}.slice/cri-containerd-{ID}.scope"),
            format!("/kubepods.slice/kubepods-burstable.slice/kubepods-besteffort-pod{u}.slice"),
            // Not a UID.
            "/kubepods.slice/kubepods-podxyz.slice".to_string(),
            "/kubepods/burstable/podnot-a-uid".to_string(),
            format!("/kubepods/guaranteed/pod{UID}/{ID}"),
            String::new(),
        ] {
            assert_eq!(pod(&path), None, "{path}");
        }
        // A container that is not an id.
        assert_eq!(
            pod(&format!("/kubepods/pod{UID}/sandbox")),
            want(None, None)
        );
    }
}
