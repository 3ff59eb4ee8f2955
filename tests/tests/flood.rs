//! Budgets in the kernel: a flood of requests rtnetlink refuses cannot push root's removals out
//! of the ring.
//!
//! Two processes without CAP_NET_ADMIN (uid 65534, in a cgroup of the test's) send 16 KiB
//! batches of RTM_DELRULE, each refused with EPERM, as fast as they can, in a namespace of the
//! test's; meanwhile root removes N routes there with `ip -batch`. Before budgets every refused
//! request was copied into the ring like root's and the ring filled: main's binary (4M ring)
//! recorded a fraction of root's removals. Now the flooders' requests beyond their budget are
//! counted, not copied, and summarised as a `suppressed` line naming their uid and cgroup.
//! Root's namespace is named by a protect entry: privileged removals there are never budgeted.

use std::{io::Read as _, os::unix::fs::MetadataExt as _, time::Duration};

use routeguard_tests::*;
use serde_json::json;

const ROUTES: u32 = 5_000;
const FLOOD_SECONDS: &str = "6";

#[test]
fn a_flood_of_refused_requests_loses_none_of_roots_removals() {
    let ns = Netns::new();
    ns.add_test_link("d0");
    let prefix = |i: u32| format!("10.{}.{}.0/24", 100 + (i >> 8), i & 0xff);
    let adds: Vec<String> = (0..ROUTES)
        .map(|i| format!("route add {} dev d0 table 100", prefix(i)))
        .collect();
    ns.ip_batch(&adds);
    let Some(cgroup) = Cgroup::create(&format!("rgt-flood-{}", std::process::id())) else {
        return;
    };
    let cgroup_id = std::fs::metadata(&cgroup.path).unwrap().ino();
    // Root's namespace is one a protect entry names (an entry that selects nothing here):
    // privileged removals there are exempt from budgets, as in the initial namespace.
    let protect = format!("kind=rule table=4242 netns={}", ns.name());
    let tracer = Tracer::start(&ns, &["--ring-size", "4M", "--protect", &protect]);
    let mut flooders = vec![
        refused_flooder(&ns, &cgroup, FLOOD_SECONDS),
        refused_flooder(&ns, &cgroup, FLOOD_SECONDS),
    ];
    // The flood is under way (and the ring would be full) before root starts.
    std::thread::sleep(Duration::from_secs(1));
    let dels: Vec<String> = (0..ROUTES)
        .map(|i| format!("route del {} dev d0 table 100", prefix(i)))
        .collect();
    let pid = ns.ip_batch(&dels);
    let mut flooded = Vec::new();
    for f in &mut flooders {
        let mut out = String::new();
        f.stdout.take().unwrap().read_to_string(&mut out).unwrap();
        assert!(f.wait().unwrap().success(), "the flooder failed");
        flooded.push(out.trim().to_owned());
    }
    std::thread::sleep(QUIET_PERIOD);
    let (events, stderr, (_shown, lost)) = tracer.stop_lossy();
    eprintln!("flooders (pid sends messages seconds): {flooded:?}");
    let mine: Vec<&serde_json::Value> = events.iter().filter(|e| by_pid(e, pid)).collect();
    let summaries: Vec<&serde_json::Value> = events
        .iter()
        .filter(|e| at(e, "/event") == "suppressed")
        .collect();
    let suppressed: u64 = summaries
        .iter()
        .filter_map(|s| at(s, "/count").as_u64())
        .sum();
    eprintln!(
        "root's removals recorded: {}/{ROUTES}; lost {lost}; {} suppressed summaries, {suppressed} requests suppressed",
        mine.len(),
        summaries.len()
    );
    assert_eq!(lost, 0, "no removal may be lost; stderr:\n{stderr}");
    assert_eq!(
        mine.len() as u32,
        ROUTES,
        "every one of root's removals is recorded; stderr:\n{stderr}"
    );
    let mut seen = std::collections::HashSet::new();
    for e in &mine {
        assert_fields(
            e,
            &[
                ("/kind", json!("route")),
                ("/outcome", json!("removed")),
                ("/actor/comm", json!("ip")),
                ("/actor/uid", json!(0)),
                ("/route/table", json!(100)),
                ("/netns/inode", json!(ns.inode())),
            ],
        );
        seen.insert(at(e, "/route/dst").as_str().unwrap().to_owned());
    }
    assert!(
        (0..ROUTES).all(|i| seen.contains(&prefix(i))),
        "every prefix is named once"
    );
    let flooders_summary = summaries.iter().find(|s| {
        at(s, "/uid") == 65534
            && at(s, "/cgroup_id") == cgroup_id
            && at(s, "/netns/inode") == ns.inode()
    });
    let Some(s) = flooders_summary else {
        panic!("no `suppressed` summary names the flooders (uid 65534, cgroup {cgroup_id}); summaries: {summaries:?}");
    };
    assert_eq!(at(s, "/kind"), "suppressed");
    assert!(at(s, "/count").as_u64().unwrap() > 0);
    assert!(at(s, "/refused").as_u64().unwrap() > 0, "predicted refused");
    assert!(at(s, "/first").is_string() && at(s, "/last").is_string());
}
