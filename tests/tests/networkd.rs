//! The founding incident, for real: systemd-networkd 252 restarts and removes kube-router's
//! policy rules. routeguard must name networkd (comm and pid) as the actor of each removal, put
//! every protected rule back, and — when networkd is restarted again and again — stop restoring
//! with a `restore-suspended` event that carries networkd's hint, instead of fighting forever.

use std::{fs, time::Duration};

use routeguard_tests::{networkd::Networkd, *};

/// networkd's defaults, spelled out: it manages foreign rules and routes.
const CONF: &str = "[Network]\nManageForeignRoutingPolicyRules=yes\nManageForeignRoutes=yes\n";
const KUBE_ROUTER_RULES: [&str; 2] = [
    "rule add priority 32764 from all lookup 77 proto static",
    "rule add priority 32765 from 10.0.0.0/8 lookup 77 proto static",
];

/// A namespace with a veth whose `v0` end networkd manages, networkd running and done, and
/// kube-router-like rules and a table-77 route added after it.
fn incident_scene() -> Option<(Netns, Networkd)> {
    if let Err(why) = Networkd::available() {
        eprintln!("SKIPPED: cannot run systemd-networkd here: {why}");
        return None;
    }
    let ns = Netns::new();
    ns.ip_ok(&["link", "add", "v0", "type", "veth", "peer", "name", "v1"]);
    ns.ip_ok(&["link", "set", "v1", "up"]);
    let networkd = Networkd::start(&ns, "v0", CONF);
    for rule in KUBE_ROUTER_RULES {
        ns.ip_ok(&argv(rule));
    }
    ns.ip_ok(&argv(
        "route add 10.77.0.0/16 via 10.88.0.2 table 77 proto static",
    ));
    Some((ns, networkd))
}

fn rules(ns: &Netns) -> String {
    ns.ip(&["rule", "show"]).ok("ip rule show").stdout
}

#[test]
fn networkd_restart_is_named_and_its_removals_restored() {
    let Some((ns, first)) = incident_scene() else {
        return;
    };
    let before = rules(&ns);
    assert!(
        before.contains("32764:\tfrom all lookup 77 proto static"),
        "{before}"
    );
    let tracer = Tracer::start(
        &ns,
        &[
            "--protect",
            "kind=rule table=77 name=kube-router",
            "--protect",
            "kind=route table=77",
        ],
    );
    first.stop();
    let networkd = Networkd::start(&ns, "v0", CONF);
    let pid = networkd.pid();

    for prio in [32764, 32765] {
        let removal = tracer.wait_for(
            &format!("networkd removing rule {prio}"),
            EVENT_TIMEOUT,
            |e| e["event"] == "removal" && e["rule"]["priority"] == prio,
        );
        assert_fields(
            &removal,
            &[
                ("/actor/pid", json!(pid)),
                ("/actor/comm", json!("systemd-network")),
                ("/actor/exe", json!(routeguard_tests::networkd::NETWORKD)),
                ("/kind", json!("rule")),
                ("/cause", json!("request")),
                ("/outcome", json!("removed")),
                ("/rule/table", json!(77)),
                ("/rule/protocol", json!("static")),
                ("/netns/name", json!(ns.name())),
            ],
        );
        let restore = tracer.wait_for(&format!("rule {prio} restored"), EVENT_TIMEOUT, |e| {
            e["event"] == "restore" && e["rule"]["priority"] == prio
        });
        assert_fields(
            &restore,
            &[
                ("/actor/pid", json!(pid)),
                ("/restore/policy", json!("kube-router")),
                ("/restore/outcome", json!("restored")),
            ],
        );
    }
    // networkd also removes and re-adds v0's address, so the route's gateway may be
    // unreachable at first: the restore is then refused (ENETUNREACH) and retried.
    let route = tracer.wait_for("networkd's route removal restored", EVENT_TIMEOUT, |e| {
        e["event"] == "restore"
            && e["route"]["dst"] == "10.77.0.0/16"
            && e["restore"]["outcome"] == "restored"
    });
    assert_fields(
        &route,
        &[
            ("/actor/pid", json!(pid)),
            ("/restore/outcome", json!("restored")),
        ],
    );
    assert_eq!(rules(&ns), before, "every protected rule is back as it was");
    assert!(ns
        .ip(&["route", "show", "table", "77"])
        .ok("show")
        .stdout
        .contains("10.77.0.0/16 via 10.88.0.2"));
    drop(networkd);
    tracer.stop();
}

#[test]
fn networkd_restarted_again_and_again_gets_restores_suspended_with_its_hint() {
    let Some((ns, mut networkd)) = incident_scene() else {
        return;
    };
    let config =
        std::env::temp_dir().join(format!("rgt-networkd-flap-{}.toml", std::process::id()));
    fs::write(
        &config,
        "[restore]\nmax_attempts = 2\nwindow = \"60s\"\nbackoff = \"100ms\"\n\n\
         [[protect]]\nname = \"kube-router\"\nkind = \"rule\"\ntable = 77\npriority = 32764\n",
    )
    .unwrap();
    let tracer = Tracer::start(&ns, &["--config", config.to_str().unwrap()]);
    let mut pids = Vec::new();
    for round in 1..=3 {
        // Restores back off (0, then 100 ms): remove only once the rule is back.
        let deadline = std::time::Instant::now() + expect_within(EVENT_TIMEOUT);
        while !rules(&ns).contains("32764:") {
            assert!(
                std::time::Instant::now() < deadline,
                "rule not back before restart {round}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        networkd.stop();
        networkd = Networkd::start(&ns, "v0", CONF);
        pids.push(networkd.pid());
        let pid = networkd.pid();
        tracer.wait_for(
            &format!("restart {round} removes the rule"),
            EVENT_TIMEOUT,
            |e| e["event"] == "removal" && e["rule"]["priority"] == 32764 && by_pid(e, pid),
        );
    }
    let suspended = tracer.wait_for("restore-suspended", EVENT_TIMEOUT, |e| {
        e["event"] == "restore-suspended"
    });
    assert_fields(
        &suspended,
        &[
            ("/actor/pid", json!(pids[2])),
            ("/actor/comm", json!("systemd-network")),
            ("/rule/priority", json!(32764)),
            ("/restore/outcome", json!("suspended")),
            ("/restore/attempt", json!(2)),
        ],
    );
    let hint = suspended["restore"]["hint"]
        .as_str()
        .expect("a hint for networkd");
    assert!(
        hint.contains("ManageForeignRoutingPolicyRules=no"),
        "{hint}"
    );
    let events = tracer.events();
    let restored: Vec<_> = events
        .iter()
        .filter(|e| e["event"] == "restore" && e["restore"]["outcome"] == "restored")
        .map(|e| e["actor"]["pid"].as_u64().unwrap() as u32)
        .collect();
    assert_eq!(
        restored,
        pids[..2],
        "one restore per restart before the suspension"
    );
    tracer.assert_none("a restore after the suspension", QUIET_PERIOD, |e| {
        e["event"] == "restore" && by_pid(e, pids[2])
    });
    assert!(
        !rules(&ns).contains("32764:"),
        "suspended: networkd's removal stands"
    );
    drop(networkd);
    tracer.stop();
    let _ = fs::remove_file(&config);
}

#[test]
fn doctor_names_running_networkd_and_the_foreign_rules_it_would_remove() {
    let Some((ns, networkd)) = incident_scene() else {
        return;
    };
    // doctor looks at the namespace it runs in: run it in the scene's.
    let ran = ns.exec(routeguard_bin().to_str().unwrap(), &["doctor", "--json"]);
    let report: Value = serde_json::from_str(&ran.stdout)
        .unwrap_or_else(|e| panic!("doctor --json: {e}: {}{}", ran.stdout, ran.stderr));
    let conflicts = report["sections"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["title"] == "conflicts")
        .expect("a conflicts section");
    let finding = |what: &str| {
        conflicts["findings"]
            .as_array()
            .unwrap()
            .iter()
            .find(|f| f["what"] == what)
            .unwrap_or_else(|| panic!("no {what} finding in {conflicts}"))
            .clone()
    };
    let running = finding("systemd-networkd");
    assert!(
        running["detail"]
            .as_str()
            .unwrap()
            .contains(&networkd.pid().to_string()),
        "{running}"
    );
    let rules = finding("ManageForeignRoutingPolicyRules");
    assert_eq!(rules["status"], "warn", "{rules}");
    let detail = rules["detail"].as_str().unwrap();
    assert!(
        detail.contains("rule prio 32764 lookup 77 proto static"),
        "{detail}"
    );
    assert!(
        detail.contains("rule prio 32765 from 10.0.0.0/8 lookup 77"),
        "{detail}"
    );
    assert!(
        !detail.contains("prio 32766"),
        "proto kernel rules are spared: {detail}"
    );
    assert!(rules["fix"]
        .as_str()
        .unwrap()
        .contains("ManageForeignRoutingPolicyRules=no"));
    let routes = finding("ManageForeignRoutes");
    assert!(
        routes["detail"].as_str().unwrap().contains("10.77.0.0/16"),
        "{routes}"
    );
    assert_eq!(
        ran.status.code(),
        Some(0),
        "conflicts are warnings: {}",
        ran.stderr
    );
    drop(networkd);
}
