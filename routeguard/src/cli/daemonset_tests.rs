//! The DaemonSet in packaging/kubernetes, checked for what the daemon needs on a node. No cluster
//! runs here (nor kubeconform or kubectl): the manifest is parsed as YAML and its invariants are
//! asserted, and the config it carries is parsed by the daemon's own loader.

use std::path::Path;

use serde_yaml::Value;

use crate::attribution::host::NODE_NAME_ENV;
use crate::daemon::Config;
use crate::netlink::netns::HOST_NETNS_ENV;

const MANIFEST: &str = include_str!("../../../packaging/kubernetes/daemonset.yaml");
const IMAGE_CONFIG: &str = include_str!("../../../packaging/kubernetes/routeguard.toml");

/// The peak RSS `cargo xtask bench daemon` measured for a burst of 100,000 removals with the
/// default queue and ring (docs/performance.md); the memory request must hold it.
const BURST_PEAK_MIB: u64 = 140;

fn documents(text: &str) -> Vec<Value> {
    serde_yaml::Deserializer::from_str(text)
        .map(|d| serde::Deserialize::deserialize(d).unwrap())
        .collect()
}

fn by_kind<'a>(docs: &'a [Value], kind: &str) -> &'a Value {
    docs.iter()
        .find(|d| d["kind"] == kind)
        .unwrap_or_else(|| panic!("no {kind} in the manifest"))
}

fn seq(v: &Value) -> &[Value] {
    v.as_sequence().map_or(&[], Vec::as_slice)
}

/// `160Mi`, `1Gi` → MiB.
fn mebibytes(quantity: &Value) -> u64 {
    let q = quantity.as_str().unwrap_or_else(|| panic!("{quantity:?}"));
    let (n, unit) = q.split_at(q.find(|c: char| !c.is_ascii_digit()).unwrap_or(q.len()));
    let n: u64 = n.parse().unwrap();
    match unit {
        "Mi" => n,
        "Gi" => n * 1024,
        _ => panic!("write memory in Mi or Gi: {q}"),
    }
}

/// Everything the DaemonSet promises, checked on `text`; a message naming the first broken one.
fn check(text: &str) {
    let docs = documents(text);

    let sa = by_kind(&docs, "ServiceAccount");
    assert_eq!(sa["automountServiceAccountToken"], false, "no API access");

    let config = Config::parse(
        Path::new("daemonset.yaml"),
        by_kind(&docs, "ConfigMap")["data"]["routeguard.toml"]
            .as_str()
            .expect("the ConfigMap holds routeguard.toml"),
    )
    .unwrap();
    assert!(config.jsonl.stdout, "JSON lines to stdout for kubectl logs");
    let image = Config::parse(Path::new("routeguard.toml"), IMAGE_CONFIG).unwrap();
    assert_eq!(config, image, "ConfigMap and image config differ");

    let ds = by_kind(&docs, "DaemonSet");
    assert_eq!(ds["apiVersion"], "apps/v1");
    assert_eq!(ds["spec"]["updateStrategy"]["type"], "RollingUpdate");
    let spec = &ds["spec"]["template"]["spec"];
    assert_eq!(spec["serviceAccountName"], sa["metadata"]["name"]);
    assert_eq!(spec["automountServiceAccountToken"], false);
    assert_eq!(spec["priorityClassName"], "system-node-critical");
    assert!(
        seq(&spec["tolerations"])
            .iter()
            .any(|t| t["operator"] == "Exists" && t.get("key").is_none()),
        "tolerates every taint, to run on every node"
    );
    assert_eq!(
        spec["hostPID"], true,
        "actors' /proc/PID and /proc/1/ns/net"
    );

    let c = &spec["containers"][0];
    assert_eq!(c["args"][0], "daemon");
    let env = |name: &str| {
        seq(&c["env"])
            .iter()
            .find(|e| e["name"] == name)
            .unwrap_or_else(|| panic!("env {name} not set"))
    };
    assert_eq!(
        env(NODE_NAME_ENV)["valueFrom"]["fieldRef"]["fieldPath"],
        "spec.nodeName",
        "the node name from the downward API"
    );

    // Metrics: on the pod's address, never on every node address.
    let host_network = spec["hostNetwork"].as_bool().unwrap_or(false);
    let port = u64::from(config.metrics.listen.port());
    assert!(config.metrics.enabled);
    if host_network {
        assert!(
            config.metrics.listen.ip().is_loopback(),
            "with hostNetwork, metrics on {} would be on the node's addresses",
            config.metrics.listen
        );
    } else {
        assert_eq!(
            env(HOST_NETNS_ENV)["value"],
            "/proc/1/ns/net",
            "without hostNetwork the mirror must be pointed at the node's namespace"
        );
    }
    let ports = seq(&c["ports"]);
    assert!(
        ports.iter().all(|p| p.get("hostPort").is_none()),
        "a hostPort would expose the metrics on the node"
    );
    let metrics = ports
        .iter()
        .find(|p| p["containerPort"].as_u64() == Some(port))
        .expect("the metrics port is declared");
    for probe in ["livenessProbe", "readinessProbe"] {
        let get = &c[probe]["httpGet"];
        assert_eq!(get["path"], "/healthz", "{probe}");
        assert!(
            get["port"] == metrics["name"] || get["port"].as_u64() == Some(port),
            "{probe} asks the metrics port"
        );
    }
    let annotations = &ds["spec"]["template"]["metadata"]["annotations"];
    assert_eq!(annotations["prometheus.io/port"], port.to_string());

    // Resources: the burst's peak requested, room above it, no CPU limit.
    let res = &c["resources"];
    let request = mebibytes(&res["requests"]["memory"]);
    let limit = mebibytes(&res["limits"]["memory"]);
    assert!(
        request >= BURST_PEAK_MIB,
        "request {request} MiB < burst peak"
    );
    assert!(
        limit >= request + 64,
        "limit {limit} MiB leaves no headroom"
    );
    assert!(res["requests"]["cpu"].is_string(), "a CPU request");
    assert!(
        res["limits"].get("cpu").is_none(),
        "a CPU limit throttles bursts"
    );

    // Explicit capabilities, not privileged.
    let sc = &c["securityContext"];
    assert_eq!(sc["privileged"], false);
    assert_eq!(sc["allowPrivilegeEscalation"], false);
    assert_eq!(sc["readOnlyRootFilesystem"], true);
    assert_eq!(sc["capabilities"]["drop"][0], "ALL");
    let mut add: Vec<&str> = seq(&sc["capabilities"]["add"])
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    add.sort_unstable();
    assert_eq!(
        add,
        [
            "BPF",
            "DAC_READ_SEARCH",
            "NET_ADMIN",
            "PERFMON",
            "SYS_ADMIN",
            "SYS_PTRACE",
            "SYS_RESOURCE"
        ]
    );

    // Mounts: each the node's own path, read-only unless the daemon writes there.
    let volumes = seq(&spec["volumes"]);
    let mount = |path: &str| {
        let m = seq(&c["volumeMounts"])
            .iter()
            .find(|m| m["mountPath"] == path)
            .unwrap_or_else(|| panic!("{path} not mounted"));
        let v = volumes
            .iter()
            .find(|v| v["name"] == m["name"])
            .unwrap_or_else(|| panic!("no volume for {path}"));
        (m, v)
    };
    let logs = env("ROUTEGUARD_KUBELET_LOG_DIR")["value"].as_str().unwrap();
    let pods = format!("{logs}/pods");
    let containers = format!("{logs}/containers");
    for path in [
        pods.as_str(),
        containers.as_str(),
        "/etc/machine-id",
        "/sys/kernel/btf",
        "/sys/kernel/tracing",
        "/sys/fs/cgroup",
        "/run/netns",
    ] {
        let (m, v) = mount(path);
        assert_eq!(m["readOnly"], true, "{path} is mounted writable");
        assert_eq!(v["hostPath"]["path"], path, "{path} is not the node's");
    }
    assert_eq!(mount("/run/netns").0["mountPropagation"], "HostToContainer");
    for path in ["/sys/fs/bpf", "/var/lib/routeguard"] {
        let (m, v) = mount(path);
        assert_ne!(
            m["readOnly"], true,
            "{path}: pins and the store are written"
        );
        assert_eq!(v["hostPath"]["path"], path, "{path} is not the node's");
    }
    assert!(
        config.store.path.starts_with("/var/lib/routeguard"),
        "the store survives the pod on the node's /var/lib/routeguard"
    );
    let (m, v) = mount("/etc/routeguard");
    assert_eq!(m["readOnly"], true);
    assert_eq!(v["configMap"]["name"], "routeguard");
}

#[test]
fn the_daemonset_has_what_the_daemon_needs() {
    check(MANIFEST);
}

/// Each mutation breaks one promise; `check` must refuse every one.
#[test]
fn a_broken_daemonset_is_refused() {
    let mutations = [
        ("fieldPath: spec.nodeName", "fieldPath: metadata.name"),
        ("hostNetwork: false", "hostNetwork: true"),
        ("value: /proc/1/ns/net", "value: /proc/self/ns/net"),
        ("memory: 160Mi", "memory: 64Mi"),
        (
            "mountPath: /var/log/pods\n              readOnly: true",
            "mountPath: /var/log/pods",
        ),
        (
            "priorityClassName: system-node-critical",
            "priorityClassName: \"\"",
        ),
        ("      automountServiceAccountToken: false\n", ""),
        ("privileged: false", "privileged: true"),
        ("listen = \"0.0.0.0:9477\"", "listen = \"0.0.0.0:9478\""),
    ];
    for (from, to) in mutations {
        assert_eq!(MANIFEST.matches(from).count(), 1, "mutation {from:?}");
        let broken = MANIFEST.replace(from, to);
        let refused = std::panic::catch_unwind(|| check(&broken)).is_err();
        assert!(refused, "accepted with {from:?} -> {to:?}");
    }
}
