//! Nexthop objects, and requests that make the kernel remove things: link down, address removal,
//! link removal.

use routeguard_tests::*;

#[test]
fn ip_nexthop_del() {
    let ns = Netns::new();
    ns.add_test_link("d0");
    ns.ip_ok(&["nexthop", "add", "id", "5", "dev", "d0"]);
    let tracer = Tracer::start(&ns, &[]);
    let args = ["nexthop", "del", "id", "5"];
    let pid = ns.ip_ok(&args);

    let ev = tracer.wait_for("ip nexthop del", EVENT_TIMEOUT, |e| by_pid(e, pid));
    let mut want = ip_actor_fields(&ns, pid, &args);
    want.extend([
        ("/kind", json!("nexthop")),
        ("/cause", json!("request")),
        ("/outcome", json!("removed")),
        ("/request/op", json!("RTM_DELNEXTHOP")),
        ("/nexthop/id", json!(5)),
    ]);
    assert_fields(&ev, &want);
    tracer.stop();
}

/// The link is named by name or by ifindex, whichever routeguard could resolve.
#[track_caller]
fn assert_link_is(ev: &Value, name: &str, ifindex: u32) {
    let by_name = at(ev, "/link/name") == name;
    let by_index = at(ev, "/link/ifindex") == ifindex;
    assert!(
        by_name || by_index,
        "expected link {name} (ifindex {ifindex}): {ev:#}"
    );
    if !at(ev, "/link/name").is_null() {
        assert!(by_name, "link.name names another link: {ev:#}");
    }
    if !at(ev, "/link/ifindex").is_null() {
        assert!(by_index, "link.ifindex names another link: {ev:#}");
    }
}

#[test]
fn ip_link_set_down() {
    let ns = Netns::new();
    ns.add_test_link("d0");
    let ifindex = ns.ifindex("d0");
    let tracer = Tracer::start(&ns, &[]);
    let args = ["link", "set", "d0", "down"];
    let pid = ns.ip_ok(&args);

    let ev = tracer.wait_for("ip link set down", EVENT_TIMEOUT, |e| {
        by_pid(e, pid) && at(e, "/kind") == "link"
    });
    let mut want = ip_actor_fields(&ns, pid, &args);
    want.extend([
        ("/cause", json!("link-down")),
        ("/outcome", json!("removed")),
        ("/request/op", json!("RTM_NEWLINK")),
    ]);
    assert_fields(&ev, &want);
    assert_link_is(&ev, "d0", ifindex);
    tracer.stop();
}

#[test]
fn ip_addr_del() {
    let ns = Netns::new();
    ns.add_test_link("d0");
    let ifindex = ns.ifindex("d0");
    let tracer = Tracer::start(&ns, &[]);
    let args = ["addr", "del", "10.99.0.1/24", "dev", "d0"];
    let pid = ns.ip_ok(&args);

    let ev = tracer.wait_for("ip addr del", EVENT_TIMEOUT, |e| {
        by_pid(e, pid) && at(e, "/kind") == "address"
    });
    let mut want = ip_actor_fields(&ns, pid, &args);
    want.extend([
        ("/family", json!("inet")),
        ("/cause", json!("address-removed")),
        ("/outcome", json!("removed")),
        ("/request/op", json!("RTM_DELADDR")),
        ("/address/address", json!("10.99.0.1/24")),
        ("/address/ifindex", json!(ifindex)),
    ]);
    assert_fields(&ev, &want);
    tracer.stop();
}

#[test]
fn ip_link_del() {
    let ns = Netns::new();
    ns.add_test_link("d0");
    let ifindex = ns.ifindex("d0");
    let tracer = Tracer::start(&ns, &[]);
    let args = ["link", "del", "d0"];
    let pid = ns.ip_ok(&args);

    let ev = tracer.wait_for("ip link del", EVENT_TIMEOUT, |e| {
        // Removing one end of a veth pair removes its peer too: pick d0's event.
        by_pid(e, pid)
            && at(e, "/kind") == "link"
            && at(e, "/cause") == "link-removed"
            && (at(e, "/link/name") == "d0" || at(e, "/link/ifindex") == ifindex)
    });
    let mut want = ip_actor_fields(&ns, pid, &args);
    want.extend([
        ("/outcome", json!("removed")),
        ("/request/op", json!("RTM_DELLINK")),
    ]);
    assert_fields(&ev, &want);
    assert_link_is(&ev, "d0", ifindex);
    tracer.stop();
}
