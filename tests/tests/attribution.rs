//! Process attribution that must survive the process: short-lived actors, their parent chain, and
//! the systemd unit (cgroup) they ran in.

use std::process::Command;

use routeguard_tests::*;

/// `sh -c 'ip ... ; exit 0'`: sh forks ip (the trailing command stops sh from exec'ing it), both
/// exit within milliseconds, before routeguard has decoded the event.
#[test]
fn short_lived_actor_keeps_cmdline_and_ancestry() {
    let ns = Netns::new();
    ns.ip_ok(&["rule", "add", "prio", "100", "lookup", "77"]);
    let tracer = Tracer::start(&ns, &[]);
    let script = format!("ip -n {} rule del prio 100; exit 0", ns.name());
    let sh = run(Command::new("sh").args(["-c", &script])).ok("sh -c ip rule del");

    let ev = tracer.wait_for("ip rule del under sh", EVENT_TIMEOUT, |e| {
        at(e, "/kind") == "rule" && at(e, "/actor/comm") == "ip"
    });
    let test_pid = std::process::id();
    assert_fields(
        &ev,
        &[
            ("/outcome", json!("removed")),
            ("/rule/priority", json!(100)),
            ("/actor/ppid", json!(sh.pid)),
            ("/actor/ancestry/0/pid", json!(sh.pid)),
            ("/actor/ancestry/0/comm", json!("sh")),
            ("/actor/ancestry/1/pid", json!(test_pid)),
        ],
    );
    let actor_pid = at(&ev, "/actor/pid").as_u64().expect("actor.pid");
    assert_ne!(actor_pid, u64::from(sh.pid), "ip ran as sh's child: {ev:#}");
    let cmdline = at(&ev, "/actor/cmdline").as_str().unwrap_or_default();
    assert!(
        cmdline.contains("rule del prio 100"),
        "cmdline {cmdline:?} must name the deletion"
    );
    let ancestry = at(&ev, "/actor/ancestry")
        .as_array()
        .expect("actor.ancestry is an array");
    let pids: Vec<u64> = ancestry.iter().filter_map(|a| a["pid"].as_u64()).collect();
    assert!(
        pids.contains(&u64::from(test_pid)),
        "ancestry {pids:?} must reach the test process {test_pid}"
    );
    // Nearest parent first: the chain climbs towards pid 1, so every pid is a real ancestor.
    assert_eq!(
        pids.len(),
        ancestry.len(),
        "every ancestor has a pid: {ev:#}"
    );
    tracer.stop();
}

#[test]
fn actor_unit_from_cgroup() {
    let ns = Netns::new();
    ns.ip_ok(&["rule", "add", "prio", "100", "lookup", "77"]);
    let unit = format!("rgtest-{}-demo.service", std::process::id());
    let Some(cg) = Cgroup::create(&unit) else {
        return;
    };
    let tracer = Tracer::start(&ns, &[]);
    let script = format!(
        "echo $$ > {}/cgroup.procs; exec ip -n {} rule del prio 100",
        cg.path.display(),
        ns.name()
    );
    let sh = run(Command::new("sh").args(["-c", &script])).ok("sh -c exec ip rule del");

    // sh moved itself into the cgroup, then exec'd ip: same pid.
    let ev = tracer.wait_for("ip rule del in a unit", EVENT_TIMEOUT, |e| {
        by_pid(e, sh.pid)
    });
    assert_fields(
        &ev,
        &[
            ("/kind", json!("rule")),
            ("/outcome", json!("removed")),
            ("/actor/comm", json!("ip")),
            ("/actor/unit", json!(unit)),
            ("/actor/cgroup", json!(format!("/{unit}"))),
            ("/actor/container", json!(null)),
        ],
    );
    // Captured by the kernel at request time: ip had exited by the time these were read.
    use std::os::unix::fs::MetadataExt as _;
    let cgroup_dir = std::fs::metadata(&cg.path).unwrap();
    let ip = run(Command::new("sh").args(["-c", "command -v ip"]))
        .ok("command -v ip")
        .stdout;
    let ip = std::fs::metadata(ip.trim()).unwrap();
    assert_fields(
        &ev,
        &[
            ("/actor/cgroup_id", json!(cgroup_dir.ino())),
            ("/actor/exe_dev", json!(ip.dev())),
            ("/actor/exe_inode", json!(ip.ino())),
        ],
    );
    tracer.stop();
}
