use std::fs;
use std::os::unix::fs::MetadataExt as _;

use routeguard_common::{
    kind, Ancestor as WireAncestor, RecordHeader, TaskInfo, TaskRecord, WIRE_VERSION,
};

use super::test_dir::TestDir;
use super::*;

const TICK_NS: u64 = 10_000_000;

fn fixed<const N: usize>(s: &[u8]) -> [u8; N] {
    let mut out = [0u8; N];
    out[..s.len()].copy_from_slice(s);
    out
}

fn info(pid: u32, start_time: u64, comm: &[u8], cgroup_id: u64) -> TaskInfo {
    TaskInfo {
        pid,
        tid: pid + 1,
        uid: 0,
        gid: 0,
        start_time,
        cgroup_id,
        comm: fixed(comm),
    }
}

fn record(task: TaskInfo, args: &[u8], exe_path: &[u8], parents: &[(u32, &[u8])]) -> TaskRecord {
    let mut ancestry = [WireAncestor {
        pid: 0,
        comm: [0; 16],
    }; ANCESTRY_MAX];
    for (slot, (pid, comm)) in ancestry.iter_mut().zip(parents) {
        *slot = WireAncestor {
            pid: *pid,
            comm: fixed(comm),
        };
    }
    TaskRecord {
        header: RecordHeader {
            kind: kind::TASK,
            version: WIRE_VERSION,
            len: core::mem::size_of::<TaskRecord>() as u32,
        },
        ts_ns: 0,
        task,
        ppid: parents.first().map_or(0, |p| p.0),
        ancestry_len: parents.len() as u32,
        args_len: args.len() as u32,
        exe_path_len: exe_path.len() as u32,
        exe_name: fixed(b"ip"),
        exe_path: fixed(exe_path),
        cgroup_name: fixed(b"demo.service"),
        ancestry,
        args: fixed(args),
        // 8:1 in the kernel's encoding (`MAJOR << 20 | MINOR`): `stat -c %d` says 2049.
        exe_dev: 8 << 20 | 1,
        _pad: 0,
        exe_ino: 1_311_025,
    }
}

/// A fake /proc and cgroup tree.
struct Fixture {
    dir: TestDir,
}

impl Fixture {
    fn new() -> Self {
        let dir = TestDir::new("attr");
        fs::create_dir_all(dir.path().join("proc")).unwrap();
        fs::create_dir_all(dir.path().join("cgroup/system.slice/demo.service")).unwrap();
        Self { dir }
    }

    fn table(&self) -> ProcessTable {
        let cgroups = CgroupPaths::with_mount(self.dir.path().join("cgroup"), "/")
            .with_systemd_v1(self.dir.path().join("systemd"));
        let mut table = ProcessTable::with_parts(self.dir.path().join("proc"), cgroups);
        table.proc = Procfs::with_tick(self.dir.path().join("proc"), TICK_NS);
        // The fixtures belong to whoever runs the tests: trust them as root's.
        // SAFETY: geteuid has no preconditions and cannot fail.
        let trust = Trust::owner(unsafe { libc::geteuid() });
        table.identities = Identities::new(
            trust,
            PodSources::logs_only(self.dir.path().join("logs"), trust),
        );
        table
    }

    fn cgroup_id(&self, rel: &str) -> u64 {
        fs::metadata(self.dir.path().join("cgroup").join(rel))
            .unwrap()
            .ino()
    }

    /// `/proc/PID` with a stat, cmdline, cgroup and exe link.
    fn process(
        &self,
        pid: u32,
        ppid: u32,
        comm: &str,
        start_ticks: u64,
        cmdline: &[u8],
        cgroup: &str,
    ) {
        let dir = self.dir.path().join("proc").join(pid.to_string());
        fs::create_dir_all(&dir).unwrap();
        let stat = format!(
            "{pid} ({comm}) S {ppid} {pid} {pid} 0 -1 4194560 1 0 0 0 0 0 0 0 20 0 1 0 {start_ticks} 1 1"
        );
        fs::write(dir.join("stat"), stat).unwrap();
        fs::write(dir.join("cmdline"), cmdline).unwrap();
        fs::write(
            dir.join("cgroup"),
            format!("1:name=systemd:/x\n0::{cgroup}\n"),
        )
        .unwrap();
        let _ = fs::remove_file(dir.join("exe"));
        std::os::unix::fs::symlink(format!("/usr/bin/{comm}"), dir.join("exe")).unwrap();
    }
}

/// A burst of removals by one thread shares one actor; another thread, a new name (`prctl`)
/// or a move to another cgroup builds a new one.
#[test]
fn one_thread_s_removals_share_its_actor_until_it_changes() {
    let fx = Fixture::new();
    let mut table = fx.table();
    let cg = fx.cgroup_id("system.slice/demo.service");
    let task = info(12345, 5 * TICK_NS, b"ip", cg);
    table.insert(&record(task, b"ip\0route\0flush\0", b"/usr/sbin/ip", &[]));
    let first = table.actor(&task);
    assert!(Arc::ptr_eq(&first, &table.actor(&task)));

    let other_thread = TaskInfo {
        tid: task.tid + 1,
        ..task
    };
    assert_eq!(table.actor(&other_thread).tid, task.tid + 1);
    let renamed = info(12345, 5 * TICK_NS, b"worker", cg);
    assert_eq!(table.actor(&renamed).comm, "worker");
    let moved = info(12345, 5 * TICK_NS, b"ip", fx.cgroup_id("system.slice"));
    assert_eq!(table.actor(&moved).cgroup.as_deref(), Some("/system.slice"));
    assert_eq!(table.actor(&moved).unit, None);
    assert_eq!(*table.actor(&task), *first, "the same as first built");
}

#[test]
fn actor_from_record_is_complete_without_proc() {
    let fx = Fixture::new();
    let mut table = fx.table();
    let cg = fx.cgroup_id("system.slice/demo.service");
    let task = info(12345, 5 * TICK_NS, b"ip", cg);
    let parents: &[(u32, &[u8])] = &[(12000, b"sh"), (1, b"systemd"), (0, b"swapper/0")];
    table.insert(&record(
        task,
        b"ip\0rule\0del\0prio\x00100\0",
        b"/usr/sbin/ip",
        parents,
    ));

    let actor = table.actor(&task);
    assert_eq!(actor.pid, 12345);
    assert_eq!(actor.tid, 12346);
    assert_eq!(actor.comm, "ip");
    assert_eq!(actor.exe.as_deref(), Some("/usr/sbin/ip"));
    assert_eq!(actor.argv, ["ip", "rule", "del", "prio", "100"]);
    assert_eq!(actor.cmdline, "ip rule del prio 100");
    assert_eq!(actor.ppid, 12000);
    assert_eq!(
        actor.ancestry,
        [
            Ancestor {
                pid: 12000,
                comm: "sh".into()
            },
            Ancestor {
                pid: 1,
                comm: "systemd".into()
            }
        ]
    );
    assert_eq!(actor.cgroup.as_deref(), Some("/system.slice/demo.service"));
    assert_eq!(actor.cgroup_id, Some(cg));
    assert_eq!(actor.unit.as_deref(), Some("demo.service"));
    assert_eq!(actor.container, None);
    assert_eq!(
        (actor.exe_dev, actor.exe_inode),
        (Some(2049), Some(1_311_025))
    );
    assert_eq!(table.exe_id_sources().kernel, 1);
}

/// Without the kernel's (device, inode) (BTF lacked an offset), the identity comes from
/// /proc/PID/exe while that is still the same image, else is unknown; each is counted.
#[test]
fn exe_identity_falls_back_to_proc_then_unknown() {
    use std::os::unix::fs::MetadataExt as _;
    let fx = Fixture::new();
    let mut table = fx.table();
    let file = fx.dir.path().join("real-ip");
    fs::write(&file, b"").unwrap();
    fx.process(300, 1, "ip", 7, b"ip\0", "/");
    let exe = fx.dir.path().join("proc/300/exe");
    fs::remove_file(&exe).unwrap();
    std::os::unix::fs::symlink(&file, &exe).unwrap();
    let alive = info(300, 7 * TICK_NS, b"ip", 0);
    let mut rec = record(alive, b"ip\0", b"", &[]);
    (rec.exe_dev, rec.exe_ino) = (0, 0);
    table.insert(&rec);
    let meta = fs::metadata(&file).unwrap();
    let actor = table.actor(&alive);
    assert_eq!(
        (actor.exe_dev, actor.exe_inode),
        (Some(meta.dev()), Some(meta.ino()))
    );
    assert_eq!(actor.cgroup_id, None, "cgroup id 0 is no cgroup");

    let gone = info(301, 7 * TICK_NS, b"ip", 0);
    let mut rec = record(gone, b"ip\0", b"", &[]);
    (rec.exe_dev, rec.exe_ino) = (0, 0);
    table.insert(&rec);
    assert_eq!(table.actor(&gone).exe_id(), None);
    let sources = table.exe_id_sources();
    assert_eq!((sources.kernel, sources.proc, sources.unknown), (0, 1, 1));
}

#[test]
fn record_without_exe_path_uses_proc_then_basename() {
    let fx = Fixture::new();
    let mut table = fx.table();
    // Alive and the same image: /proc/PID/exe gives the full path.
    fx.process(200, 1, "ip", 7, b"ip\0r\0", "/");
    let alive = info(200, 7 * TICK_NS + 3, b"ip", 0);
    table.insert(&record(alive, b"ip\0r\0", b"", &[]));
    assert_eq!(table.actor(&alive).exe.as_deref(), Some("/usr/bin/ip"));

    // Gone: the kernel's basename is all there is.
    let gone = info(201, 7 * TICK_NS, b"ip", 0);
    table.insert(&record(gone, b"ip\0", b"", &[]));
    assert_eq!(table.actor(&gone).exe.as_deref(), Some("ip"));
}

/// A cgroup gone before it was ever resolved leaves its leaf name, which names nothing: who
/// owned the directories above it can no longer be checked.
#[test]
fn deleted_cgroup_falls_back_to_leaf_name() {
    let fx = Fixture::new();
    let mut table = fx.table();
    let task = info(300, TICK_NS, b"ip", 999_999_999);
    table.insert(&record(task, b"ip\0", b"/usr/sbin/ip", &[]));
    let actor = table.actor(&task);
    assert_eq!(actor.cgroup.as_deref(), Some("demo.service"));
    assert_eq!(actor.unit, None);
    assert_eq!(actor.container, None);
}

const POD_UID: &str = "0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0";
const CONTAINER: &str = "3f4e1c2b9a8d7e6f5a4b3c2d1e0f9a8b7c6d5e4f3a2b1c0d9e8f7a6b5c4d3e2f";

fn pod_cgroup() -> String {
    let u = POD_UID.replace('-', "_");
    format!(
        "kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{u}.slice/cri-containerd-{CONTAINER}.scope"
    )
}

fn kubelet_logs(fx: &Fixture) {
    let logs = fx.dir.path().join("logs");
    fs::create_dir_all(logs.join(format!(
        "pods/kube-system_kube-router-abcde_{POD_UID}/kube-router"
    )))
    .unwrap();
    fs::create_dir_all(logs.join("containers")).unwrap();
    std::os::unix::fs::symlink(
        "/dev/null",
        logs.join(format!(
            "containers/kube-router-abcde_kube-system_kube-router-{CONTAINER}.log"
        )),
    )
    .unwrap();
}

fn want_pod() -> crate::event::Pod {
    crate::event::Pod {
        namespace: Some("kube-system".into()),
        name: Some("kube-router-abcde".into()),
        uid: POD_UID.into(),
        container: Some("kube-router".into()),
    }
}

/// The pod is resolved when the task record arrives and kept for the cgroup: removals by the
/// same container after its cgroup went (the `ip` exited long ago) still name it.
#[test]
fn pod_from_cgroup_and_kubelet_logs_outlives_the_cgroup() {
    let fx = Fixture::new();
    kubelet_logs(&fx);
    fs::create_dir_all(fx.dir.path().join("cgroup").join(pod_cgroup())).unwrap();
    let cg = fx.cgroup_id(&pod_cgroup());
    let mut table = fx.table();
    let task = info(500, TICK_NS, b"ip", cg);
    table.insert(&record(task, b"ip\0rule\0del\0", b"/bin/busybox", &[]));
    fs::remove_dir(fx.dir.path().join("cgroup").join(pod_cgroup())).unwrap();
    std::thread::sleep(cgroup::RESCAN_INTERVAL);

    let actor = table.actor(&task);
    assert_eq!(
        actor.cgroup.as_deref(),
        Some(format!("/{}", pod_cgroup()).as_str())
    );
    assert_eq!(actor.container.as_deref(), Some(CONTAINER));
    assert_eq!(actor.pod, Some(want_pod()));
    // Another process of the same container, later: the same identity, no lookup.
    let later = info(501, 2 * TICK_NS, b"ip", cg);
    assert_eq!(table.actor(&later).pod, Some(want_pod()));
    assert_eq!(table.cgroup_evictions(), 0);
}

/// A process whose cgroup v2 path names nothing (a v1-only host, or a runtime that left it in
/// its parent's v2 cgroup) is named from its v1 name=systemd path, read while it lives.
#[test]
fn pod_from_the_v1_systemd_hierarchy_while_the_process_lives() {
    let fx = Fixture::new();
    kubelet_logs(&fx);
    fs::create_dir_all(fx.dir.path().join("systemd").join(pod_cgroup())).unwrap();
    fx.process(600, 1, "ip", 9, b"ip\0", "/");
    let proc_cgroup = fx.dir.path().join("proc/600/cgroup");
    fs::write(
        &proc_cgroup,
        format!("1:name=systemd:/{}\n0::/\n", pod_cgroup()),
    )
    .unwrap();
    let mut table = fx.table();
    let task = info(600, 9 * TICK_NS, b"ip", fx.cgroup_id(""));
    table.insert(&record(task, b"ip\0", b"/sbin/ip", &[]));
    let actor = table.actor(&task);
    assert_eq!(actor.pod, Some(want_pod()));
    assert_eq!(actor.container.as_deref(), Some(CONTAINER));
    assert_eq!(
        actor.cgroup.as_deref(),
        Some(format!("/{}", pod_cgroup()).as_str())
    );
}

/// The same names made under a directory another user owns (a delegated subtree) name no pod,
/// no container and no unit below it.
#[test]
fn look_alike_pod_in_a_delegated_subtree_is_not_trusted() {
    use std::os::unix::fs::PermissionsExt as _;
    let fx = Fixture::new();
    kubelet_logs(&fx);
    let delegated = "user.slice/user-1000.slice/user@1000.service";
    let fake = format!("{delegated}/{}", pod_cgroup());
    fs::create_dir_all(fx.dir.path().join("cgroup").join(&fake)).unwrap();
    // Another's directory: a write bit for others stands in for a chown (which needs root).
    fs::set_permissions(
        fx.dir.path().join("cgroup").join(delegated),
        fs::Permissions::from_mode(0o777),
    )
    .unwrap();
    let mut table = fx.table();
    let task = info(700, TICK_NS, b"ip", fx.cgroup_id(&fake));
    table.insert(&record(task, b"ip\0", b"/sbin/ip", &[]));
    let actor = table.actor(&task);
    assert_eq!(actor.cgroup.as_deref(), Some(format!("/{fake}").as_str()));
    assert_eq!(actor.pod, None);
    assert_eq!(actor.container, None);
    assert_eq!(actor.unit.as_deref(), Some("user@1000.service"));
}

#[test]
fn falls_back_to_proc_for_the_same_image_only() {
    let fx = Fixture::new();
    let mut table = fx.table();
    fx.process(
        400,
        399,
        "ip",
        50,
        b"sh\0-c\0ip rule del prio 100\0",
        "/system.slice/demo.service",
    );
    fx.process(399, 1, "bash", 40, b"bash\0", "/");
    fx.process(1, 0, "systemd", 1, b"/sbin/init\0", "/init.scope");

    let same = info(400, 50 * TICK_NS + 9_999_999, b"sh", 0);
    let actor = table.actor(&same);
    assert_eq!(actor.cmdline, "sh -c 'ip rule del prio 100'");
    assert_eq!(actor.exe.as_deref(), Some("/usr/bin/ip"));
    assert_eq!(actor.ppid, 399);
    assert_eq!(
        actor.ancestry,
        [
            Ancestor {
                pid: 399,
                comm: "bash".into()
            },
            Ancestor {
                pid: 1,
                comm: "systemd".into()
            }
        ]
    );
    assert_eq!(actor.cgroup.as_deref(), Some("/system.slice/demo.service"));
    assert_eq!(actor.unit.as_deref(), Some("demo.service"));

    // The pid now belongs to a process that started 2 s later: nothing from /proc is used.
    let other = info(400, 250 * TICK_NS, b"ip", 0);
    let actor = table.actor(&other);
    assert_eq!(actor.comm, "ip");
    assert!(actor.argv.is_empty() && actor.cmdline.is_empty());
    assert_eq!((&actor.exe, actor.ppid, &actor.cgroup), (&None, 0, &None));
    assert!(actor.ancestry.is_empty());
}

#[test]
fn later_record_replaces_proc_fallback_and_exec() {
    let fx = Fixture::new();
    let mut table = fx.table();
    fx.process(500, 1, "sh", 3, b"sh\0", "/");
    let task = info(500, 3 * TICK_NS, b"sh", 0);
    assert_eq!(table.actor(&task).cmdline, "sh");
    // The record for the exec that followed wins over what /proc showed.
    table.insert(&record(
        task,
        b"ip\0link\0set\0eth0\0down\0",
        b"/usr/sbin/ip",
        &[(1, b"systemd")],
    ));
    let actor = table.actor(&task);
    assert_eq!(actor.cmdline, "ip link set eth0 down");
    assert_eq!(actor.ppid, 1);
}

#[test]
fn hostile_bytes_stay_data() {
    let fx = Fixture::new();
    let mut table = fx.table();
    let task = info(600, TICK_NS, b"\x1b[31mip\n", 0);
    table.insert(&record(
        task,
        b"ip\0a b\xff\0$(rm)\0",
        b"/tmp/\x1b]0;x\x07",
        &[],
    ));
    let actor = table.actor(&task);
    assert_eq!(actor.comm, "\x1b[31mip\n");
    assert_eq!(actor.argv, ["ip", "a b\u{fffd}", "$(rm)"]);
    assert_eq!(actor.cmdline, "ip 'a b\u{fffd}' '$(rm)'");
    assert_eq!(actor.exe.as_deref(), Some("/tmp/\x1b]0;x\x07"));
}

#[test]
fn lengths_beyond_the_arrays_are_clamped() {
    let fx = Fixture::new();
    let mut table = fx.table();
    let task = info(700, TICK_NS, b"ip", 0);
    let mut rec = record(task, b"ip\0", b"/x", &[(5, b"p")]);
    rec.args_len = u32::MAX;
    rec.exe_path_len = u32::MAX;
    rec.ancestry_len = u32::MAX;
    table.insert(&rec);
    let actor = table.actor(&task);
    assert_eq!(actor.argv, ["ip"]);
    assert_eq!(actor.exe.as_deref(), Some("/x"));
    assert_eq!(actor.ancestry.len(), 1);
}

#[test]
fn forgets_least_recently_used_past_capacity() {
    let fx = Fixture::new();
    let mut table = fx.table();
    let hot = info(1, TICK_NS, b"hot", 0);
    table.insert(&record(hot, b"hot\0", b"/hot", &[]));
    for pid in 2..=CAPACITY as u32 + 10 {
        table.insert(&record(info(pid, TICK_NS, b"x", 0), b"x\0", b"/x", &[]));
        if pid % 100 == 0 {
            table.actor(&hot);
        }
    }
    assert!(table.tasks.len() <= CAPACITY);
    assert_eq!(table.actor(&hot).cmdline, "hot");
}

/// Through the real /proc and cgroup2 mount: this test process, with no task record.
#[test]
fn real_proc_fallback_for_own_process() {
    let mut table = ProcessTable::new();
    let pid = std::process::id();
    let proc = Procfs::new("/proc".into());
    let stat = proc.stat(pid).unwrap();
    let task = info(pid, stat.start_ticks * proc.ns_per_tick(), b"test", 0);
    let actor = table.actor(&task);
    assert_eq!(actor.ppid, stat.ppid);
    assert_eq!(
        actor.exe,
        Some(
            std::env::current_exe()
                .unwrap()
                .to_string_lossy()
                .into_owned()
        )
    );
    assert!(!actor.argv.is_empty());
    let own = crate::event::ExeId::of(&fs::metadata(std::env::current_exe().unwrap()).unwrap());
    assert_eq!(actor.exe_id(), Some(own));
    assert_eq!(table.exe_id_sources().proc, 1);
    // Hosts with cgroup v1 only have no `0::` line, hence no cgroup path.
    let has_v2 = fs::read_to_string("/proc/self/cgroup")
        .is_ok_and(|c| c.contains("\n0::/") || c.starts_with("0::/"));
    assert!(
        !has_v2 || actor.cgroup.as_deref().is_some_and(|c| c.starts_with('/')),
        "{:?}",
        actor.cgroup
    );
}
