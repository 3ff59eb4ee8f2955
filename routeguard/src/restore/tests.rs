//! Policy parsing and matching on event fixtures; the re-adds themselves are tested end to end
//! (tests/tests/restore.rs).

use super::*;
use crate::event::{fixtures::sample_route_event, Object, Outcome, Route, Rule};

fn rule_event(priority: u32, table: u32) -> Event {
    let mut ev = sample_route_event();
    ev.object = Object::Rule(Rule {
        priority: Some(priority),
        table: Some(table),
        protocol: Some("static".into()),
        ..Rule::default()
    });
    ev
}

#[test]
fn spec_selects_by_table_priority_range_and_protocol() {
    let p = parse_spec("kind=rule table=77 priority=32000-32765 protocol=static").unwrap();
    assert!(p.selects(&rule_event(32764, 77)));
    assert!(!p.selects(&rule_event(32766, 77)));
    assert!(!p.selects(&rule_event(32764, 78)));
    let mut failed = rule_event(32764, 77);
    failed.outcome = Outcome::Failed;
    assert!(!p.selects(&failed), "a failed delete removed nothing");
    let mut answer = rule_event(32764, 77);
    answer.event = EventType::Restore;
    assert!(!p.selects(&answer), "restore events never select");
}

#[test]
fn routes_by_prefix_containment_and_netns() {
    let p = parse_spec("kind=route dst=10.77.0.0/16 table=77 netns=blue").unwrap();
    let ev = sample_route_event(); // 10.77.1.0/24 table 77 in netns blue
    assert!(p.selects(&ev));
    let p = parse_spec("kind=route dst=10.78.0.0/16").unwrap();
    assert!(!p.selects(&ev));
    let p = parse_spec("kind=route netns=red").unwrap();
    assert!(!p.selects(&ev));
    let p = parse_spec(&format!("kind=route netns={}", ev.netns.inode)).unwrap();
    assert!(p.selects(&ev));
}

#[test]
fn allow_by_comm_exe_unit_or_container_prefix() {
    let p = parse_spec("kind=rule allow-comm=kube-router allow-unit=demo.service").unwrap();
    let ev = rule_event(100, 77);
    let actor = ev.actor.as_ref().unwrap();
    assert!(p.allow.permits(actor), "sample actor runs in demo.service");
    let p = parse_spec("kind=rule allow-comm=kube-router").unwrap();
    assert!(!p.allow.permits(actor));
    let mut contained = (**actor).clone();
    contained.container = Some("3f2a9c0e1d7b4a5c6e8f".into());
    let p = parse_spec("kind=rule allow-container=3f2a9c0e1d7b").unwrap();
    assert!(p.allow.permits(&contained));
}

#[test]
fn bad_specs_say_which_value_and_what_to_write() {
    let cases = [
        ("kind=rule priority=32765-32000", "inverted"),
        ("kind=route dst=10.0.0.1/8", "host bits"),
        ("kind=route dst=10.0.0/33", "not an IP prefix"),
        ("kind=nexthop", "cannot be protected yet"),
        ("kind=rule tabel=77", "unknown field `tabel`"),
        ("kind=rule protocol=bogus", "protocol `bogus` is unknown"),
        ("kind=rule fwmark=0xzz", "fwmark `0xzz`"),
        ("table=77", "missing field `kind`"),
        ("kind=rule table", "not key=value"),
        ("kind=rule table=0", "table 0"),
        (
            "kind=rule table=77 action=refuse",
            "action `refuse` is not an action",
        ),
        (
            "kind=rule action=deny action=restore",
            "`action` is given twice",
        ),
    ];
    for (spec, needle) in cases {
        let err = parse_spec(spec).unwrap_err().to_string();
        assert!(err.contains(needle), "{spec}: {err}");
    }
}

#[test]
fn action_defaults_to_restore_and_deny_is_taken_from_spec_and_config() {
    use crate::restore::policy::Action;
    assert_eq!(
        parse_spec("kind=rule table=77").unwrap().action,
        Action::Restore
    );
    let deny = parse_spec("kind=rule table=77 action=deny").unwrap();
    assert_eq!(deny.action, Action::Deny);
    assert_eq!(deny.table, Some(77));
    let restore = parse_spec("kind=route dst=10.7.0.0/16 action=restore").unwrap();
    assert_eq!(restore.action, Action::Restore);
    let toml = "kind = \"rule\"\ntable = 77\naction = \"deny\"\n";
    let entry: Protect = toml::from_str(toml).unwrap();
    assert_eq!(entry.action, Action::Deny);
    let bad: Result<Protect, _> = toml::from_str("kind = \"rule\"\naction = \"drop\"\n");
    assert!(bad
        .unwrap_err()
        .to_string()
        .contains("action `drop` is not an action"));
}

#[test]
fn unrestorable_without_the_kernels_view() {
    let mut ev = rule_event(100, 77);
    assert!(unrestorable(&ev, None)
        .unwrap()
        .contains("kernel's own description"));
    let kernel = KernelBody::new(&[0; 12]);
    assert_eq!(unrestorable(&ev, Some(&kernel)), None);
    ev.cause = Cause::NetnsExit;
    assert!(unrestorable(&ev, Some(&kernel))
        .unwrap()
        .contains("namespace is gone"));
}

#[test]
fn flap_key_ignores_pid_but_not_program() {
    let a = rule_event(100, 77);
    let mut b = a.clone();
    std::sync::Arc::make_mut(b.actor.as_mut().unwrap()).pid = 9999;
    let entry = Arc::new(parse_spec("kind=rule").unwrap());
    assert_eq!(flap_key(&a, &entry), flap_key(&b, &entry));
    std::sync::Arc::make_mut(b.actor.as_mut().unwrap()).comm = "other".into();
    assert_ne!(flap_key(&a, &entry), flap_key(&b, &entry));
    let other = Arc::new(parse_spec("kind=rule table=77").unwrap());
    assert_ne!(
        flap_key(&a, &entry),
        flap_key(&a, &other),
        "a history per entry"
    );
}

/// A route as the kernel-function path names it (its device, metric 0) and as the syscall path's
/// notification does (its index, no metric): one object to the flap guard and to what is missing.
#[test]
fn a_route_is_one_object_whichever_path_described_it() {
    let route = sample_route_event().object.route().unwrap().clone();
    let mut by_device = sample_route_event();
    by_device.object = Object::Route(Route {
        dev: Some("rg0".into()),
        oif: Some(3),
        priority: Some(0),
        ..route.clone()
    });
    let mut by_index = sample_route_event();
    by_index.object = Object::Route(Route {
        oif: Some(3),
        priority: None,
        ..route
    });
    assert_ne!(
        describe::object(&by_index.object),
        describe::object(&by_device.object)
    );
    let entry = Arc::new(parse_spec("kind=route").unwrap());
    assert_eq!(flap_key(&by_index, &entry), flap_key(&by_device, &entry));
    by_device.netns.inode = own_netns();
    by_index.netns.inode = own_netns();
    let protect = vec![parse_spec("kind=route table=77").unwrap()];
    let mut r = Restorer::new(protect, GuardConfig::default(), Clock::new()).unwrap();
    let mut answers = Vec::new();
    r.observe(
        &[Observed::alone(by_device), Observed::alone(by_index)],
        &mut answers,
    );
    assert_eq!(
        answers.len(),
        2,
        "neither is restorable without the kernel's view"
    );
    assert_eq!(r.missing().len(), 1, "{:?}", r.missing());
}

#[test]
fn suspension_names_the_culprit_and_the_networkd_hint() {
    let mut ev = rule_event(32764, 77);
    let actor = std::sync::Arc::make_mut(ev.actor.as_mut().unwrap());
    actor.comm = "systemd-network".into();
    actor.unit = Some("systemd-networkd.service".into());
    let e = suspended(&ev, "kube-router rules", 5, &GuardConfig::default());
    assert_eq!(e.event, EventType::RestoreSuspended);
    let r = e.restore.unwrap();
    assert_eq!(r.outcome, RestoreOutcome::Suspended);
    assert!(r.detail.unwrap().contains("systemd-network[4242]"));
    assert!(r
        .hint
        .unwrap()
        .contains("ManageForeignRoutingPolicyRules=no"));
}

/// `allow.exe` names the file: a process calling itself by the allowed name, or running another
/// file from the same path string (e.g. in a mount namespace of its own), is not allowed.
#[test]
fn allow_exe_matches_the_file_not_the_name_or_path() {
    let own = std::env::current_exe().unwrap();
    let p = parse_spec(&format!("kind=rule allow-exe={}", own.display())).unwrap();
    let id = crate::event::ExeId::of(&std::fs::metadata(&own).unwrap());
    let mut actor = (*rule_event(100, 77).actor.unwrap()).clone();
    actor.exe = Some(own.display().to_string());
    (actor.exe_dev, actor.exe_inode) = (Some(id.dev), Some(id.ino + 1));
    assert!(!p.allow.permits(&actor), "same path string, another file");
    actor.exe_inode = Some(id.ino);
    assert!(p.allow.permits(&actor));
    actor.exe_inode = None;
    assert!(
        !p.allow.permits(&actor),
        "an unknown identity matches no exe entry"
    );
    assert!(!p.allow.comm_only());
    assert!(parse_spec("kind=rule allow-comm=ip")
        .unwrap()
        .allow
        .comm_only());
}

#[test]
fn allow_cgroup_matches_the_cgroup_id() {
    let dir = crate::attribution::test_dir::TestDir::new("allow-cgroup");
    std::fs::create_dir_all(dir.path().join("system.slice/kr.service")).unwrap();
    let entry = AllowedCgroup::resolve("/system.slice/kr.service", Some(dir.path())).unwrap();
    let allow = Allow {
        cgroup: vec![entry],
        ..Allow::default()
    };
    use std::os::unix::fs::MetadataExt as _;
    let ino = std::fs::metadata(dir.path().join("system.slice/kr.service"))
        .unwrap()
        .ino();
    let mut actor = (*rule_event(100, 77).actor.unwrap()).clone();
    actor.cgroup_id = Some(ino);
    assert!(allow.permits(&actor));
    actor.cgroup_id = Some(ino + 1);
    actor.cgroup = Some("/system.slice/kr.service".into());
    assert!(
        !allow.permits(&actor),
        "the path string alone is not enough"
    );
    // The unit restarted: systemd made a new cgroup directory with a new id.
    std::fs::remove_dir(dir.path().join("system.slice/kr.service")).unwrap();
    std::fs::create_dir(dir.path().join("system.slice/kr.service")).unwrap();
    actor.cgroup_id = Some(
        std::fs::metadata(dir.path().join("system.slice/kr.service"))
            .unwrap()
            .ino(),
    );
    assert!(allow.permits(&actor));
}

#[test]
fn bad_exe_and_cgroup_entries_are_refused() {
    for (spec, want) in [
        ("kind=rule allow-exe=ip", "not an absolute path"),
        (
            "kind=rule allow-exe=/no/such/routeguard-exe",
            "names an installed executable",
        ),
        ("kind=rule allow-exe=/", "not a regular file"),
        ("kind=rule allow-cgroup=system.slice/x", "not a cgroup path"),
        (
            "kind=rule allow-cgroup=/system.slice/../x",
            "not a cgroup path",
        ),
    ] {
        let err = parse_spec(spec).unwrap_err().to_string();
        assert!(err.contains(want), "{spec}: {err}");
    }
}

/// Our own namespace's inode: one routeguard watches.
fn own_netns() -> u32 {
    use std::os::unix::fs::MetadataExt as _;
    std::fs::metadata("/proc/self/ns/net").unwrap().ino() as u32
}

/// A removal of rule `priority` in our own namespace, with the kernel's (empty) description: a
/// dry run "restores" it without sending anything.
fn own_rule(priority: u32) -> Observed {
    let mut ev = rule_event(priority, 77);
    ev.netns.inode = own_netns();
    ev.netns.name = None;
    Observed {
        kernel: Some(KernelBody::new(&[0; 12])),
        ..Observed::alone(ev)
    }
}

fn dry_run(max_attempts: u32) -> GuardConfig {
    GuardConfig {
        dry_run: true,
        max_attempts,
        ..GuardConfig::default()
    }
}

#[test]
fn a_namespace_routeguard_does_not_watch_is_never_entered_nor_tracked() {
    let protect = vec![parse_spec("kind=rule").unwrap()];
    let mut r = Restorer::new(protect, dry_run(5), Clock::new()).unwrap();
    let mut ev = own_rule(100);
    // Inode 1 is no namespace: like one an actor made with `unshare -n` and never named.
    ev.event.netns.inode = 1;
    let mut answers = Vec::new();
    r.observe(&[ev], &mut answers);
    assert_eq!(answers.len(), 1);
    let answer = answers[0].restore.as_ref().unwrap();
    assert_eq!(answer.outcome, RestoreOutcome::Skipped);
    assert!(
        answer
            .detail
            .as_ref()
            .unwrap()
            .contains("not one routeguard watches"),
        "{answer:?}"
    );
    assert!(r.missing().is_empty());
}

#[test]
fn missing_objects_are_capped_and_the_overflow_counted() {
    let protect = vec![parse_spec("kind=rule").unwrap()];
    let config = GuardConfig {
        max_missing: 2,
        ..dry_run(5)
    };
    let mut r = Restorer::new(protect, config, Clock::new()).unwrap();
    let mut answers = Vec::new();
    r.observe(
        &[own_rule(1), own_rule(2), own_rule(3), own_rule(1)],
        &mut answers,
    );
    assert_eq!(
        answers.len(),
        3,
        "answered at once (dry run), the repeat after its back-off"
    );
    assert_eq!(r.missing().len(), 2);
    assert_eq!(
        r.overflow(),
        Overflow {
            missing: 1,
            sockets: 0
        },
        "one more object was not tracked; the one already tracked is no overflow"
    );
    r.keep_only(&[]);
    assert!(r.missing().is_empty(), "a namespace gone takes its objects");
}

#[test]
fn a_reload_keeps_the_state_of_unchanged_entries_only() {
    let spec = "kind=rule table=77 name=t77";
    let protect = vec![parse_spec(spec).unwrap()];
    let mut r = Restorer::new(protect, dry_run(1), Clock::new()).unwrap();
    let mut answers = Vec::new();
    r.observe(&[own_rule(100), own_rule(100)], &mut answers);
    let outcomes: Vec<_> = answers
        .iter()
        .map(|a| a.restore.as_ref().unwrap().outcome)
        .collect();
    assert_eq!(
        outcomes,
        [RestoreOutcome::DryRun, RestoreOutcome::Suspended]
    );
    // The same entry, among others, and other guard settings: still suspended.
    let same = vec![parse_spec("kind=route").unwrap(), parse_spec(spec).unwrap()];
    r.reconfigure(same, dry_run(3));
    answers.clear();
    r.observe(&[own_rule(100)], &mut answers);
    assert!(answers.is_empty(), "still suspended: {answers:?}");
    assert_eq!(r.missing().len(), 1, "still missing");
    // A changed entry starts afresh.
    r.reconfigure(
        vec![parse_spec("kind=rule table=77 name=t77b").unwrap()],
        dry_run(3),
    );
    assert!(
        r.missing().is_empty(),
        "what the old entry held went with it"
    );
    r.observe(&[own_rule(100)], &mut answers);
    let a = answers[0].restore.as_ref().unwrap();
    assert_eq!((a.outcome, a.attempt), (RestoreOutcome::DryRun, 1));
}

#[test]
fn a_reload_keeps_a_pending_back_off_of_an_unchanged_entry() {
    let spec = "kind=rule table=77";
    let config = GuardConfig {
        backoff: Duration::from_secs(30),
        ..dry_run(5)
    };
    let mut r = Restorer::new(
        vec![parse_spec(spec).unwrap()],
        config.clone(),
        Clock::new(),
    )
    .unwrap();
    let mut answers = Vec::new();
    r.observe(&[own_rule(100), own_rule(100)], &mut answers);
    assert_eq!(
        (answers.len(), r.waiting()),
        (1, 1),
        "the second waits 30 s"
    );
    r.reconfigure(vec![parse_spec(spec).unwrap()], config.clone());
    assert_eq!(r.waiting(), 1, "kept across an unchanged reload");
    r.reconfigure(vec![parse_spec("kind=rule table=78").unwrap()], config);
    assert_eq!(r.waiting(), 0, "dropped with its entry");
}
