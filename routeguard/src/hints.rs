//! Known culprits and what to do about them, kept as data: one table, matched on the actor.
//!
//! A hint names a program that is known to remove other programs' routes or rules, and the
//! setting that stops it. Add a row to [`HINTS`] to teach the report a new culprit; the unit tests
//! below check that every row matches the process it describes.

use crate::event::Actor;

/// Which property of the actor a pattern looks at.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Field {
    /// `comm` (at most 15 bytes: `systemd-networkd` is `systemd-network`).
    Comm,
    /// The systemd unit.
    Unit,
    /// The executable's file name (last path component of `exe`).
    ExeName,
    /// The comm of any process in the parent chain (e.g. `wg-quick` running `ip`).
    AncestorComm,
}

/// One culprit: any of `when` matches (exact, case-sensitive comparison).
#[derive(Debug)]
pub struct Hint {
    /// Stable identifier, part of the JSON report (`incidents[].hints[].id`).
    pub id: &'static str,
    pub when: &'static [(Field, &'static str)],
    /// Who this is, in a few words.
    pub culprit: &'static str,
    /// What it does and what to change.
    pub advice: &'static str,
}

pub const HINTS: &[Hint] = &[
    Hint {
        id: "systemd-networkd",
        when: &[
            (Field::Comm, "systemd-network"),
            (Field::Unit, "systemd-networkd.service"),
            (Field::ExeName, "systemd-networkd"),
        ],
        culprit: "systemd-networkd",
        advice:
            "systemd-networkd removes the routing policy rules and routes it did not configure \
            itself when it (re)configures a link, e.g. 0.2-0.3 s after `systemctl restart \
            systemd-networkd`. To leave other programs' objects alone, set \
            `ManageForeignRoutingPolicyRules=no` and `ManageForeignRoutes=no` in the [Network] \
            section of /etc/systemd/networkd.conf (or a drop-in), then restart it. Rules with \
            `proto kernel` are always spared.",
    },
    Hint {
        id: "networkmanager",
        when: &[
            (Field::Comm, "NetworkManager"),
            (Field::Unit, "NetworkManager.service"),
        ],
        culprit: "NetworkManager",
        advice: "NetworkManager removes routes and rules of the connections it manages when they \
            go down or are reapplied. Keep it off interfaces other programs own \
            (`nmcli device set DEV managed no`, or `unmanaged-devices=` in NetworkManager.conf), \
            or declare the routes/rules in the connection (`ipv4.routes`, `ipv4.routing-rules`).",
    },
    Hint {
        id: "netplan",
        when: &[
            (Field::Comm, "netplan"),
            (Field::ExeName, "netplan"),
            (Field::AncestorComm, "netplan"),
        ],
        culprit: "netplan apply",
        advice: "`netplan apply` regenerates the backend configuration and reconfigures \
            systemd-networkd or NetworkManager, which then drop objects they do not know. \
            Declare the routes and rules in the netplan YAML, or make networkd leave foreign \
            objects alone (`ManageForeignRoutingPolicyRules=no`, `ManageForeignRoutes=no`).",
    },
    Hint {
        id: "kube-router",
        when: &[
            (Field::Comm, "kube-router"),
            (Field::ExeName, "kube-router"),
        ],
        culprit: "kube-router (CNI)",
        advice: "kube-router reconciles its own routes and policy rules (tables 77-79); a removal \
            by it means it considered the object stale. Check its log at the same time, and \
            whether another program manages the same tables.",
    },
    Hint {
        id: "calico",
        when: &[
            (Field::Comm, "calico-node"),
            (Field::ExeName, "calico-node"),
            (Field::Comm, "calico-felix"),
        ],
        culprit: "Calico Felix (CNI)",
        advice: "Calico's Felix reconciles routes in the tables it owns and, with \
            `removeExternalRoutes` (default true), removes routes on its interfaces that it \
            did not program. Check FelixConfiguration `routeTableRanges` and \
            `removeExternalRoutes`.",
    },
    Hint {
        id: "cilium",
        when: &[
            (Field::Comm, "cilium-agent"),
            (Field::ExeName, "cilium-agent"),
        ],
        culprit: "Cilium agent (CNI)",
        advice: "The Cilium agent reconciles the routes and rules of its datapath; check its log \
            at the same time and the tables/priorities it is configured to use.",
    },
    Hint {
        id: "flannel",
        when: &[(Field::Comm, "flanneld"), (Field::ExeName, "flanneld")],
        culprit: "flannel (CNI)",
        advice: "flanneld removes routes for subnet leases it believes expired or changed; check \
            its log and the lease store (etcd or the Kubernetes API) at that time.",
    },
    Hint {
        id: "aws-vpc-cni",
        when: &[
            (Field::Comm, "aws-k8s-agent"),
            (Field::ExeName, "aws-k8s-agent"),
        ],
        culprit: "Amazon VPC CNI (ipamd)",
        advice: "ipamd removes the per-pod policy rules and routes of ENIs and IPs it releases; \
            check its log at the same time.",
    },
    Hint {
        id: "wg-quick",
        when: &[(Field::Comm, "wg-quick"), (Field::AncestorComm, "wg-quick")],
        culprit: "wg-quick",
        advice: "`wg-quick down` removes the routes and fwmark rules `wg-quick up` added (table \
            51820 with `Table = auto`). Set `Table = off` in the interface's config to manage \
            routes yourself.",
    },
    Hint {
        id: "tailscale",
        when: &[
            (Field::Comm, "tailscaled"),
            (Field::Unit, "tailscaled.service"),
        ],
        culprit: "tailscaled",
        advice: "tailscaled replaces its own routes (table 52) and policy rules (priorities \
            5210-5270) when it reconfigures; removals of other objects by it are unexpected.",
    },
];

/// The hints whose patterns match `actor`, in table order.
pub fn for_actor(actor: &Actor) -> Vec<&'static Hint> {
    HINTS.iter().filter(|h| matches(h, actor)).collect()
}

fn matches(hint: &Hint, a: &Actor) -> bool {
    hint.when.iter().any(|&(field, want)| match field {
        Field::Comm => a.comm == want,
        Field::Unit => a.unit.as_deref() == Some(want),
        Field::ExeName => a
            .exe
            .as_deref()
            .and_then(|e| e.rsplit('/').next())
            .is_some_and(|name| name == want),
        Field::AncestorComm => a.ancestry.iter().any(|p| p.comm == want),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::Ancestor;

    fn actor(comm: &str, exe: Option<&str>, unit: Option<&str>, parents: &[&str]) -> Actor {
        Actor {
            pid: 812,
            tid: 812,
            comm: comm.into(),
            exe: exe.map(Into::into),
            exe_dev: None,
            exe_inode: None,
            cmdline: String::new(),
            argv: vec![],
            uid: 0,
            ppid: 1,
            ancestry: parents
                .iter()
                .enumerate()
                .map(|(i, c)| Ancestor {
                    pid: 100 + i as u32,
                    comm: (*c).into(),
                })
                .collect(),
            cgroup: None,
            cgroup_id: None,
            unit: unit.map(Into::into),
            container: None,
            pod: None,
        }
    }

    fn ids(a: &Actor) -> Vec<&'static str> {
        for_actor(a).iter().map(|h| h.id).collect()
    }

    #[test]
    fn networkd_by_truncated_comm_unit_or_exe() {
        let by_comm = actor("systemd-network", None, None, &["systemd"]);
        assert_eq!(ids(&by_comm), ["systemd-networkd"]);
        let by_unit = actor("x", None, Some("systemd-networkd.service"), &[]);
        assert_eq!(ids(&by_unit), ["systemd-networkd"]);
        let by_exe = actor("x", Some("/usr/lib/systemd/systemd-networkd"), None, &[]);
        assert_eq!(ids(&by_exe), ["systemd-networkd"]);
        let text = for_actor(&by_comm)[0].advice;
        assert!(
            text.contains("ManageForeignRoutingPolicyRules=no"),
            "{text}"
        );
        assert!(text.contains("ManageForeignRoutes=no"), "{text}");
    }

    #[test]
    fn others_by_comm_and_ancestry() {
        let nm = actor("NetworkManager", None, Some("NetworkManager.service"), &[]);
        assert_eq!(ids(&nm), ["networkmanager"]);
        let wg = actor("ip", Some("/usr/sbin/ip"), None, &["wg-quick", "bash"]);
        assert_eq!(ids(&wg), ["wg-quick"]);
        let np = actor("systemd-network", None, None, &["netplan", "sudo"]);
        assert_eq!(ids(&np), ["systemd-networkd", "netplan"]);
        for (comm, id) in [
            ("kube-router", "kube-router"),
            ("calico-node", "calico"),
            ("cilium-agent", "cilium"),
            ("flanneld", "flannel"),
            ("tailscaled", "tailscale"),
        ] {
            assert_eq!(ids(&actor(comm, None, None, &[])), [id], "{comm}");
        }
    }

    #[test]
    fn plain_tools_and_lookalikes_get_no_hint() {
        assert!(ids(&actor(
            "ip",
            Some("/usr/sbin/ip"),
            Some("session-1.scope"),
            &["bash"]
        ))
        .is_empty());
        // Exact match only: a process that merely contains a culprit's name is not it.
        assert!(ids(&actor("my-kube-router-x", None, None, &[])).is_empty());
        assert!(ids(&actor("x", Some("/opt/systemd-networkd-helper"), None, &[])).is_empty());
    }

    #[test]
    fn ids_are_unique_and_every_row_has_a_pattern() {
        let mut seen = std::collections::HashSet::new();
        for h in HINTS {
            assert!(seen.insert(h.id), "duplicate hint id {}", h.id);
            assert!(!h.when.is_empty(), "{} matches nothing", h.id);
        }
    }
}
