//! Pods from the node alone, with a real container runtime: containerd and runc from Debian's
//! packages (`cargo xtask setup` installs them), started by each test with its own root, state,
//! socket and runc root under a temporary directory, and stopped by pid.
//!
//! The container image is built here (an OCI layout holding the static busybox, imported with
//! `ctr image import`; no registry), and each container is placed where kubelet would place it:
//! its cgroup path is kubelet's (`--cgroup`), and it carries the labels containerd's CRI plugin
//! gives pod containers. It runs `ip rule del` inside a network namespace the test made (it
//! joins it with `--with-ns`), and lives on a second after `ip` exits, as a pod's agent does.
//! (A one-shot container whose cgroup is gone before routeguard reads its process's record
//! names no pod: see docs/kubernetes.md.)
//!
//! On this kind of host cgroups are hybrid (v1 controllers and a `name=systemd` hierarchy, with
//! cgroup2 at /sys/fs/cgroup/unified): runc places the container at the same path in every
//! hierarchy, the unified one included, so routeguard resolves it from the cgroup v2 id the
//! kernel captured, as on a cgroup v2 node.
//!
//! Host paths touched: the cgroup directories of the test's pods (removed at the end, in every
//! hierarchy, only those the test created) and containerd's shim socket directory
//! `/run/containerd/s/`, which containerd 1.6 does not let a config move (its shims remove their
//! sockets when they exit).

use std::fs;
use std::os::unix::fs::{chown, MetadataExt as _};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use routeguard_tests::*;

const IMAGE: &str = "routeguard.test/busybox-ip:1";
/// containerd's CRI plugin makes pod containers in this containerd namespace.
const CRI_NAMESPACE: &str = "k8s.io";
const NODE: &str = "node-rgtest-a";
/// The `nobody` user: owner of the delegated subtree in the negative test.
const NOBODY: u32 = 65534;

// ---------------------------------------------------------------------------------------------
// containerd
// ---------------------------------------------------------------------------------------------

static SEQ: AtomicU32 = AtomicU32::new(0);

/// A temporary directory removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> Self {
        let n = SEQ.fetch_add(1, Ordering::Relaxed);
        let path = std::env::temp_dir().join(format!("rgt-{tag}-{}-{n}", std::process::id()));
        let _ = fs::remove_dir_all(&path);
        fs::create_dir_all(&path).unwrap_or_else(|e| panic!("mkdir {}: {e}", path.display()));
        Self(path)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        if let Err(e) = fs::remove_dir_all(&self.0) {
            eprintln!("warning: cannot remove {}: {e}", self.0.display());
        }
    }
}

/// A containerd of the test's own, with everything it keeps under a temporary directory.
struct Containerd {
    child: Child,
    dir: TempDir,
}

impl Containerd {
    /// Starts containerd and waits for its socket; panics (with its log) if it does not come.
    fn start() -> Self {
        require_root();
        for program in ["containerd", "ctr", "runc", "containerd-shim-runc-v2"] {
            assert!(
                on_path(program),
                "`{program}` is not installed: run `cargo xtask setup` (Debian's containerd and runc)"
            );
        }
        let dir = TempDir::new("containerd");
        let d = &dir.0;
        // The CRI plugin is off: it would manage networking and images of its own. The test
        // makes the containers the way it would (same namespace, labels and cgroup paths).
        let config = format!(
            "version = 2\nroot = \"{root}\"\nstate = \"{state}\"\n\
             disabled_plugins = [\"io.containerd.grpc.v1.cri\"]\n\
             [grpc]\n  address = \"{sock}\"\n[ttrpc]\n  address = \"{sock}.ttrpc\"\n\
             [debug]\n  address = \"\"\n[metrics]\n  address = \"\"\n",
            root = d.join("root").display(),
            state = d.join("state").display(),
            sock = d.join("containerd.sock").display(),
        );
        fs::write(d.join("config.toml"), config).unwrap();
        let log = fs::File::create(d.join("containerd.log")).unwrap();
        let child = Command::new("containerd")
            .arg("--config")
            .arg(d.join("config.toml"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("spawn containerd");
        let mut containerd = Containerd { child, dir };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if containerd.socket().exists()
                && run(containerd.ctr().args(["version"])).status.success()
            {
                return containerd;
            }
            if let Ok(Some(status)) = containerd.child.try_wait() {
                panic!("containerd exited ({status}): {}", containerd.log());
            }
            assert!(
                Instant::now() < deadline,
                "containerd did not serve {} within 30 s: {}",
                containerd.socket().display(),
                containerd.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn socket(&self) -> PathBuf {
        self.dir.0.join("containerd.sock")
    }

    fn log(&self) -> String {
        fs::read_to_string(self.dir.0.join("containerd.log")).unwrap_or_default()
    }

    /// `ctr` talking to this containerd, in the CRI's namespace.
    fn ctr(&self) -> Command {
        let mut cmd = Command::new("ctr");
        cmd.arg("--address")
            .arg(self.socket())
            .args(["--namespace", CRI_NAMESPACE]);
        cmd
    }

    /// Builds the test image and imports it.
    fn import_image(&self) {
        let tar = build_image(&self.dir.0.join("image"));
        run(self.ctr().args(["image", "import"]).arg(&tar)).ok("ctr image import");
    }

    /// Runs a container `id` from the test image, in cgroup `cgroup` (absolute, in every
    /// hierarchy), in network namespace `ns` and the host's pid namespace (as `hostNetwork` and
    /// `hostPID` agents run), with CAP_NET_ADMIN and `labels`, whose shell runs `ip ARGS` and
    /// stays a second more (a pod's agent outlives the `ip` it runs); waits for it to exit and
    /// removes it. Returns the host pids of the shell and of `ip`.
    fn run_ip(
        &self,
        id: &str,
        cgroup: &str,
        ns: &Netns,
        labels: &[(&str, &str)],
        args: &str,
    ) -> (u32, u32) {
        let d = &self.dir.0;
        let pid_file = d.join(format!("{id}.pid"));
        let mut cmd = self.ctr();
        cmd.args(["run", "--rm", "--runc-root"])
            .arg(d.join("runc"))
            .arg("--fifo-dir")
            .arg(d.join("fifo"))
            .args(["--cgroup", cgroup, "--cap-add", "CAP_NET_ADMIN"])
            .arg("--with-ns")
            .arg(format!("network:/run/netns/{}", ns.name()))
            // The test's own pid namespace (the host's; pid 1's may not be readable).
            .arg("--with-ns")
            .arg(format!("pid:/proc/{}/ns/pid", std::process::id()))
            .arg("--pid-file")
            .arg(&pid_file);
        for (k, v) in labels {
            cmd.args(["--label", &format!("{k}={v}")]);
        }
        let script = format!("ip {args} & echo $!; wait $!; sleep 1");
        cmd.args([IMAGE, id, "/bin/sh", "-c", &script]);
        let ran = run(&mut cmd);
        assert!(
            ran.status.success(),
            "`ctr run` failed ({}): {}\ncontainerd's log:\n{}",
            ran.status,
            ran.stderr,
            self.log()
        );
        let shell = fs::read_to_string(&pid_file)
            .unwrap_or_else(|e| panic!("pid file of container {id}: {e}"))
            .trim()
            .parse()
            .expect("a pid in the pid file");
        let ip = ran
            .stdout
            .trim()
            .parse()
            .unwrap_or_else(|e| panic!("ip's pid from the container: {e}: {:?}", ran.stdout));
        (shell, ip)
    }
}

impl Drop for Containerd {
    fn drop(&mut self) {
        let pid = self.child.id() as libc::pid_t;
        // SAFETY: kill(2) takes integers; `pid` is our own child, not yet reaped.
        unsafe { libc::kill(pid, libc::SIGTERM) };
        if wait_timeout(&mut self.child, Duration::from_secs(10)).is_none() {
            // SAFETY: as above.
            unsafe { libc::kill(pid, libc::SIGKILL) };
            let _ = self.child.wait();
        }
    }
}

fn on_path(program: &str) -> bool {
    std::env::var_os("PATH").is_some_and(|p| {
        std::env::split_paths(&p)
            .chain([PathBuf::from("/usr/sbin"), PathBuf::from("/sbin")])
            .any(|d| d.join(program).is_file())
    })
}

/// An OCI image layout (one layer: the static busybox as `/bin/ip` and `/bin/sh`), tarred for
/// `ctr image import`; its path.
fn build_image(dir: &Path) -> PathBuf {
    let busybox = Path::new("/bin/busybox");
    let ldd = run(Command::new("ldd").arg(busybox));
    assert!(
        busybox.is_file() && !ldd.status.success(),
        "/bin/busybox must be the static one (a container has no libraries): run `cargo xtask setup` (busybox-static); ldd says: {}",
        ldd.stdout
    );
    let rootfs = dir.join("rootfs");
    for d in ["bin", "proc", "sys", "dev", "etc", "tmp"] {
        fs::create_dir_all(rootfs.join(d)).unwrap();
    }
    fs::copy(busybox, rootfs.join("bin/busybox")).unwrap();
    for applet in ["ip", "sh", "sleep"] {
        std::os::unix::fs::symlink("busybox", rootfs.join("bin").join(applet)).unwrap();
    }
    let blobs = dir.join("oci/blobs/sha256");
    fs::create_dir_all(&blobs).unwrap();
    let layer = dir.join("layer.tar");
    run(Command::new("tar")
        .arg("-C")
        .arg(&rootfs)
        .args(["--numeric-owner", "--owner=0", "--group=0", "-cf"])
        .arg(&layer)
        .arg("."))
    .ok("tar the layer");
    let layer = blob(&blobs, &fs::read(&layer).unwrap());
    let config = blob(
        &blobs,
        format!(
            r#"{{"architecture":"amd64","os":"linux","config":{{"Entrypoint":["/bin/sh"]}},"rootfs":{{"type":"layers","diff_ids":["sha256:{}"]}}}}"#,
            layer.0
        )
        .as_bytes(),
    );
    let manifest = blob(
        &blobs,
        format!(
            r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:{}","size":{}}},"layers":[{{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"sha256:{}","size":{}}}]}}"#,
            config.0, config.1, layer.0, layer.1
        )
        .as_bytes(),
    );
    fs::write(
        dir.join("oci/index.json"),
        format!(
            r#"{{"schemaVersion":2,"manifests":[{{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:{}","size":{},"annotations":{{"org.opencontainers.image.ref.name":"{IMAGE}"}}}}]}}"#,
            manifest.0, manifest.1
        ),
    )
    .unwrap();
    fs::write(
        dir.join("oci/oci-layout"),
        r#"{"imageLayoutVersion":"1.0.0"}"#,
    )
    .unwrap();
    let tar = dir.join("image.tar");
    run(Command::new("tar")
        .arg("-C")
        .arg(dir.join("oci"))
        .arg("-cf")
        .arg(&tar)
        .arg("."))
    .ok("tar the image");
    tar
}

/// Stores `bytes` as a blob; its sha256 (hex) and size.
fn blob(blobs: &Path, bytes: &[u8]) -> (String, usize) {
    let tmp = blobs.join("incoming");
    fs::write(&tmp, bytes).unwrap();
    let sum = run(Command::new("sha256sum").arg(&tmp)).ok("sha256sum");
    let hex = sum.stdout.split_whitespace().next().unwrap().to_string();
    fs::rename(&tmp, blobs.join(&hex)).unwrap();
    (hex, bytes.len())
}

// ---------------------------------------------------------------------------------------------
// Pods' cgroups
// ---------------------------------------------------------------------------------------------

/// Every cgroup hierarchy mounted (v1 controllers, `name=systemd`, cgroup2): mount points.
fn cgroup_mounts() -> Vec<PathBuf> {
    let info = fs::read_to_string("/proc/self/mountinfo").unwrap();
    info.lines()
        .filter_map(|line| {
            let (left, right) = line.split_once(" - ")?;
            let fstype = right.split_whitespace().next()?;
            let mount_point = left.split_whitespace().nth(4)?;
            matches!(fstype, "cgroup" | "cgroup2").then(|| PathBuf::from(mount_point))
        })
        .collect()
}

/// The directories of a cgroup path that did not exist when the guard was made, in every
/// hierarchy; removed (deepest first) on drop, once the container is gone.
struct CgroupTree {
    created: Vec<PathBuf>,
}

impl CgroupTree {
    fn new(path: &str) -> Self {
        let mut created = Vec::new();
        for mount in cgroup_mounts() {
            let mut dir = mount.clone();
            for c in path.split('/').filter(|c| !c.is_empty()) {
                dir.push(c);
                if !dir.exists() {
                    created.push(dir.clone());
                }
            }
        }
        // Deepest first.
        created.sort_by_key(|d| std::cmp::Reverse(d.components().count()));
        Self { created }
    }
}

impl Drop for CgroupTree {
    fn drop(&mut self) {
        for dir in &self.created {
            if !dir.exists() {
                continue;
            }
            let mut removed = false;
            for _ in 0..50 {
                if fs::remove_dir(dir).is_ok() {
                    removed = true;
                    break;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            if !removed {
                eprintln!("warning: could not remove cgroup {}", dir.display());
            }
        }
    }
}

/// A random pod UID (a UUID, as the API server makes them) and container id (64 hex digits).
fn random_ids() -> (String, String) {
    let uuid = || {
        fs::read_to_string("/proc/sys/kernel/random/uuid")
            .unwrap()
            .trim()
            .to_string()
    };
    let uid = uuid();
    let id = format!("{}{}", uuid(), uuid()).replace('-', "");
    (uid, id)
}

/// kubelet's systemd-driver cgroup for a BestEffort pod's containerd container.
fn systemd_driver_path(uid: &str, id: &str) -> String {
    let u = uid.replace('-', "_");
    format!(
        "/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod{u}.slice/cri-containerd-{id}.scope"
    )
}

fn cri_labels<'a>(
    namespace: &'a str,
    pod: &'a str,
    uid: &'a str,
    container: &'a str,
) -> Vec<(&'static str, &'a str)> {
    vec![
        ("io.kubernetes.pod.namespace", namespace),
        ("io.kubernetes.pod.name", pod),
        ("io.kubernetes.pod.uid", uid),
        ("io.kubernetes.container.name", container),
        ("io.cri-containerd.kind", "container"),
    ]
}

/// `routeguard trace --json --netns NS` with the node name set and pod sources at `containerd`
/// and `logs`.
fn tracer(ns: &Netns, containerd: &Path, logs: &Path) -> Tracer {
    Tracer::start_with_env(
        &["trace", "--json", "--netns", ns.name()],
        &[
            ("ROUTEGUARD_NODE_NAME", NODE),
            (
                "ROUTEGUARD_CONTAINERD_ADDRESS",
                &containerd.to_string_lossy(),
            ),
            ("ROUTEGUARD_KUBELET_LOG_DIR", &logs.to_string_lossy()),
        ],
    )
}

fn hostname() -> String {
    fs::read_to_string("/proc/sys/kernel/hostname")
        .unwrap()
        .trim()
        .to_string()
}

fn machine_id() -> Value {
    match fs::read_to_string("/etc/machine-id") {
        Ok(id) if id.trim().len() == 32 => json!(id.trim()),
        _ => Value::Null,
    }
}

// ---------------------------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------------------------

/// A container of a pod, in kubelet's systemd-driver cgroup, removes a rule: the event names
/// its pod from containerd's CRI labels (kubelet's log directories are empty here), its
/// container id, the `ip` process, and the node.
#[test]
fn pod_named_from_containerd_labels() {
    let ns = Netns::new();
    ns.ip_ok(&argv("rule add prio 100 lookup 77"));
    let containerd = Containerd::start();
    containerd.import_image();
    let (uid, id) = random_ids();
    let cgroup = systemd_driver_path(&uid, &id);
    let _tree = CgroupTree::new(&cgroup);
    let empty_logs = TempDir::new("nologs");
    let tracer = tracer(&ns, &containerd.socket(), &empty_logs.0);

    let labels = cri_labels("kube-system", "calico-node-x7k2", &uid, "calico-node");
    let (shell, pid) = containerd.run_ip(&id, &cgroup, &ns, &labels, "rule del prio 100");

    let ev = tracer.wait_for("ip rule del in a pod", EVENT_TIMEOUT, |e| by_pid(e, pid));
    eprintln!("actor: {}\nhost: {}", at(&ev, "/actor"), at(&ev, "/host"));
    assert_fields(
        &ev,
        &[
            ("/kind", json!("rule")),
            ("/outcome", json!("removed")),
            ("/rule/priority", json!(100)),
            ("/netns/inode", json!(ns.inode())),
            ("/actor/pid", json!(pid)),
            ("/actor/comm", json!("ip")),
            // busybox's shell runs its `ip` applet in the forked shell, without an exec: the
            // argv the kernel has is the shell's.
            ("/actor/ppid", json!(shell)),
            ("/actor/cgroup", json!(cgroup)),
            ("/actor/container", json!(id)),
            ("/actor/unit", json!(format!("cri-containerd-{id}.scope"))),
            (
                "/actor/pod",
                json!({
                    "namespace": "kube-system",
                    "name": "calico-node-x7k2",
                    "uid": uid,
                    "container": "calico-node",
                }),
            ),
            ("/host/name", json!(hostname())),
            ("/host/machine_id", machine_id()),
            ("/host/node", json!(NODE)),
        ],
    );
    tracer.stop();
}

/// The same from kubelet's cgroupfs-driver layout (`/kubepods/burstable/pod<uid>/<id>`), with no
/// runtime socket to ask: the names come from kubelet's log directories, which every node keeps.
#[test]
fn pod_named_from_kubelet_log_directories() {
    let ns = Netns::new();
    ns.ip_ok(&argv("rule add prio 100 lookup 77"));
    let containerd = Containerd::start();
    containerd.import_image();
    let (uid, id) = random_ids();
    let cgroup = format!("/kubepods/burstable/pod{uid}/{id}");
    let _tree = CgroupTree::new(&cgroup);
    let logs = TempDir::new("kubelet-logs");
    let pod_dir = logs
        .0
        .join(format!("pods/kube-system_kube-router-q2x9z_{uid}"));
    fs::create_dir_all(pod_dir.join("kube-router")).unwrap();
    fs::create_dir_all(logs.0.join("containers")).unwrap();
    std::os::unix::fs::symlink(
        pod_dir.join("kube-router/0.log"),
        logs.0.join(format!(
            "containers/kube-router-q2x9z_kube-system_kube-router-{id}.log"
        )),
    )
    .unwrap();
    let no_socket = logs.0.join("no-containerd.sock");
    let tracer = tracer(&ns, &no_socket, &logs.0);

    let (_, pid) = containerd.run_ip(&id, &cgroup, &ns, &[], "rule del prio 100");

    let ev = tracer.wait_for("ip rule del in a pod", EVENT_TIMEOUT, |e| by_pid(e, pid));
    eprintln!("actor: {}\nhost: {}", at(&ev, "/actor"), at(&ev, "/host"));
    assert_fields(
        &ev,
        &[
            ("/outcome", json!("removed")),
            ("/actor/comm", json!("ip")),
            ("/actor/container", json!(id)),
            ("/actor/unit", json!(null)),
            (
                "/actor/pod",
                json!({
                    "namespace": "kube-system",
                    "name": "kube-router-q2x9z",
                    "uid": uid,
                    "container": "kube-router",
                }),
            ),
            ("/host/node", json!(NODE)),
        ],
    );
    tracer.stop();
}

/// The same cgroup names, made below a directory a user owns (a delegated subtree, as systemd
/// gives `user@UID.service`), are not believed: no pod, no container, no unit below it — even
/// though containerd would vouch for a container of that id with pod labels.
#[test]
fn look_alike_pod_under_a_delegated_directory_is_not_trusted() {
    let ns = Netns::new();
    ns.ip_ok(&argv("rule add prio 100 lookup 77"));
    let containerd = Containerd::start();
    containerd.import_image();
    let (uid, id) = random_ids();
    let delegated = format!("rgtest-{}-user@{NOBODY}.service", std::process::id());
    let cgroup = format!("/{delegated}{}", systemd_driver_path(&uid, &id));
    let _tree = CgroupTree::new(&cgroup);
    // As systemd delegates: the subtree's top belongs to the user, and so does what the user
    // makes below it; in the unified and the name=systemd hierarchies.
    let mut hierarchies = Vec::new();
    for mount in cgroup_mounts() {
        let top = mount.join(&delegated);
        let fstype_v2 = mount.join("cgroup.controllers").exists();
        let systemd_v1 = mount.join("release_agent").exists() && mount.ends_with("systemd");
        if !(fstype_v2 || systemd_v1) {
            continue;
        }
        let mut dir = mount.clone();
        for c in cgroup.split('/').filter(|c| !c.is_empty()) {
            dir.push(c);
            fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("mkdir {}: {e}", dir.display()));
            if dir.starts_with(&top) {
                chown(&dir, Some(NOBODY), Some(NOBODY)).unwrap();
            }
        }
        assert_eq!(fs::metadata(&top).unwrap().uid(), NOBODY);
        hierarchies.push(mount);
    }
    assert!(
        !hierarchies.is_empty(),
        "no cgroup2 or name=systemd hierarchy"
    );
    let logs = TempDir::new("kubelet-logs");
    let pod_dir = logs
        .0
        .join(format!("pods/kube-system_calico-node-x7k2_{uid}"));
    fs::create_dir_all(pod_dir.join("calico-node")).unwrap();
    let tracer = tracer(&ns, &containerd.socket(), &logs.0);

    let labels = cri_labels("kube-system", "calico-node-x7k2", &uid, "calico-node");
    let (_, pid) = containerd.run_ip(&id, &cgroup, &ns, &labels, "rule del prio 100");

    let ev = tracer.wait_for("ip rule del in a look-alike pod", EVENT_TIMEOUT, |e| {
        by_pid(e, pid)
    });
    eprintln!("actor: {}\nhost: {}", at(&ev, "/actor"), at(&ev, "/host"));
    assert_fields(
        &ev,
        &[
            ("/outcome", json!("removed")),
            ("/actor/comm", json!("ip")),
            ("/actor/cgroup", json!(cgroup)),
            ("/actor/pod", json!(null)),
            ("/actor/container", json!(null)),
            // The delegated directory's own name was root's choice; nothing below it is.
            ("/actor/unit", json!(delegated)),
            ("/host/node", json!(NODE)),
        ],
    );
    tracer.stop();
}
