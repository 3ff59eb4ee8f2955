use super::*;

/// The body of a kernel route message: `struct rtmsg`, then RTA_TABLE, RTA_DST, RTA_PRIORITY,
/// RTA_GATEWAY, as the kernel writes an IPv6 route in table 77 with metric 1024.
pub(crate) fn body(dst: &str, gateway: &str) -> Vec<u8> {
    let (dst, len) = dst.split_once('/').unwrap();
    let dst: std::net::Ipv6Addr = dst.parse().unwrap();
    let gateway: std::net::Ipv6Addr = gateway.parse().unwrap();
    let len: u8 = len.parse().unwrap();
    // family AF_INET6, dst_len, src_len, tos, table, protocol boot, scope universe, type unicast
    let mut b = vec![10, len, 0, 0, 77, 3, 0, 1];
    b.extend_from_slice(&0u32.to_ne_bytes()); // rtm_flags
    let mut attr = |kind: u16, value: &[u8]| b.extend(crate::netlink::encode_attr(kind, value));
    attr(15, &77u32.to_ne_bytes());
    attr(1, &dst.octets());
    attr(6, &1024u32.to_ne_bytes());
    attr(5, &gateway.octets());
    b
}

fn learnt(dst: &str, gateway: &str, expires_at: u64) -> Learnt {
    let mut route = Learnt::from_body(&body(dst, gateway)).expect("a route");
    route.expires_at = expires_at;
    route
}

fn key(dst: &str, gateway: &str) -> RouteKey {
    learnt(dst, gateway, 0).key
}

fn dst_of(body: &[u8]) -> String {
    MirroredRoute::decode(body).unwrap().route.dst.unwrap()
}

#[test]
fn a_replace_gives_back_the_route_it_replaced() {
    let mut t = Table::new(
        vec![learnt("2001:db8:1::/64", "2001:db8::2", 0)],
        Vec::new(),
        0,
    );
    let old = t.add(learnt("2001:db8:1::/64", "2001:db8::3", 0), true, 100);
    assert_eq!(t.routes.len(), 1);
    assert!(t
        .routes
        .contains_key(&key("2001:db8:1::/64", "2001:db8::3")));
    let old = MirroredRoute::decode(&old.expect("the route replaced")).unwrap();
    assert_eq!(old.route.gateway.as_deref(), Some("2001:db8::2"));
    assert_eq!(old.route.table, Some(77));
    // Nothing under the key: nothing replaced.
    assert!(t
        .add(learnt("2001:db8:9::/64", "2001:db8::3", 0), true, 100)
        .is_none());
}

#[test]
fn a_replace_names_the_newest_route_under_its_key() {
    let mut t = Table::new(
        vec![learnt("2001:db8:1::/64", "2001:db8::2", 0)],
        Vec::new(),
        0,
    );
    // Removed and added again with another gateway; the removal's forget not read yet.
    t.add(learnt("2001:db8:1::/64", "2001:db8::4", 0), false, 10);
    let old = t.add(learnt("2001:db8:1::/64", "2001:db8::3", 0), true, 20);
    let old = MirroredRoute::decode(&old.unwrap()).unwrap();
    assert_eq!(old.route.gateway.as_deref(), Some("2001:db8::4"));
    assert_eq!(t.routes.len(), 1, "the stale one went too");
}

#[test]
fn a_forget_lets_go_of_a_route_learnt_before_its_removal() {
    let mut t = Table::new(
        vec![learnt("2001:db8:1::/64", "2001:db8::2", 0)],
        Vec::new(),
        10,
    );
    t.forget(key("2001:db8:1::/64", "2001:db8::2"), 20);
    assert!(t.routes.is_empty());
    assert_eq!(t.doubtful, 0);
}

#[test]
fn a_route_learnt_after_its_reported_removal_waits_for_a_dump() {
    let (a, b) = ("2001:db8:1::/64", "2001:db8:2::/64");
    let gw = "2001:db8::2";
    let mut t = Table::new(Vec::new(), Vec::new(), 0);
    // Added again after its removal, or learnt late: only the kernel can tell.
    t.add(learnt(a, gw, 0), false, 30);
    t.forget(key(a, gw), 20);
    assert!(t.routes.contains_key(&key(a, gw)));
    // Not held at all (its addition not learnt yet).
    t.forget(key(b, gw), 20);
    assert_eq!(t.doubtful, 2);
    // A dump begun at 40 does not have `a`; `b` was learnt while it ran.
    t.add(learnt(b, gw, 0), false, 45);
    let gone = t.settle(Vec::new(), 40);
    assert_eq!(gone.len(), 1);
    assert!(!t.routes.contains_key(&key(a, gw)));
    assert!(t.routes.contains_key(&key(b, gw)));
}

#[test]
fn a_multipath_route_is_let_go_by_the_forget_of_its_first_hop() {
    let mut t = Table::new(Vec::new(), Vec::new(), 0);
    let mut held = learnt("2001:db8:1::/64", "2001:db8::2", 0);
    held.key.gateway = None;
    t.add(held, false, 10);
    t.forget(key("2001:db8:1::/64", "2001:db8::2"), 20);
    assert!(t.routes.is_empty());
    assert_eq!(t.doubtful, 0);
}

#[test]
fn kernel_deletion_of_a_lapsed_route_is_an_expiry_and_others_wait_for_a_trigger() {
    let now = 10_000_000_000;
    let lapsing = learnt("2001:db8:1::/64", "2001:db8::2", now - 1);
    let lasting = learnt("2001:db8:2::/64", "2001:db8::2", now + 3_600_000_000_000);
    let mut t = Table::new(Vec::new(), Vec::new(), 0);
    t.add(lapsing, false, 0);
    t.add(lasting, false, 0);
    let expired = t.delete(
        learnt("2001:db8:1::/64", "2001:db8::2", 0),
        true,
        false,
        now,
    );
    assert_eq!(dst_of(&expired.expect("an expiry")), "2001:db8:1::/64");
    let announced = t.delete(
        learnt("2001:db8:2::/64", "2001:db8::2", 0),
        true,
        false,
        now,
    );
    assert!(announced.is_none());
    let claimed = t.claim_announced(now);
    assert_eq!(claimed.len(), 1);
    assert_eq!(dst_of(&claimed[0]), "2001:db8:2::/64");
    assert!(t.claim_announced(0).is_empty(), "claimed once");
    // A deletion a request made (no filter on the socket) only lets go.
    t.add(learnt("2001:db8:3::/64", "2001:db8::2", 0), false, 0);
    let asked = t.delete(
        learnt("2001:db8:3::/64", "2001:db8::2", 0),
        false,
        false,
        now,
    );
    assert!(asked.is_none() && t.announced.is_empty() && t.routes.is_empty());
}

#[test]
fn what_vanished_since_a_trigger_is_the_dump_diff_and_the_announced() {
    let gw = "2001:db8::2";
    let mut t = Table::new(
        vec![
            learnt("2001:db8:1::/64", gw, 0),
            learnt("2001:db8:2::/64", gw, 0),
        ],
        Vec::new(),
        0,
    );
    t.delete(learnt("2001:db8:2::/64", gw, 0), true, false, 50);
    t.delete(learnt("2001:db8:7::/64", gw, 0), true, false, 5);
    // Learnt while the dump ran: kept, though the dump missed it.
    t.add(learnt("2001:db8:3::/64", gw, 0), false, 70);
    let v = t.vanished(Vec::new(), 40, 60);
    let gone: Vec<String> = v.gone.iter().map(|b| dst_of(b)).collect();
    let announced: Vec<String> = v.announced.iter().map(|b| dst_of(b)).collect();
    assert_eq!(gone, ["2001:db8:1::/64"]);
    assert_eq!(
        announced,
        ["2001:db8:2::/64"],
        "not what came before the trigger"
    );
    assert_eq!(t.routes.len(), 1);
}

#[test]
fn resync_keeps_what_vanished_while_notifications_were_lost() {
    let gw = "2001:db8::2";
    let a = learnt("2001:db8:1::/64", gw, 0);
    let mut t = Table::new(vec![a, learnt("2001:db8:2::/64", gw, 0)], Vec::new(), 0);
    let (gone, expired) = t.resync(vec![learnt("2001:db8:1::/64", gw, 0)], Vec::new(), 5);
    assert_eq!((gone, expired.len()), (1, 0));
    let claimed = t.claim_announced(5);
    assert_eq!(dst_of(&claimed[0]), "2001:db8:2::/64");
}

#[test]
fn last_state_reports_routes_in_key_order_without_the_kernels() {
    let gw = "2001:db8::2";
    let mut kernel_made = body("2001:db8:9::/64", gw);
    kernel_made[5] = 2; // RTPROT_KERNEL
    let kernel_made = Learnt::from_body(&kernel_made).unwrap();
    let t = Table::new(
        vec![
            learnt("2001:db8:2::/64", gw, 0),
            kernel_made,
            learnt("2001:db8:1::/64", gw, 0),
        ],
        Vec::new(),
        0,
    );
    let (routes, rules) = t.last_state();
    let dsts: Vec<&str> = routes
        .iter()
        .map(|r| r.route.dst.as_deref().unwrap())
        .collect();
    assert_eq!(dsts, ["2001:db8:1::/64", "2001:db8:2::/64"]);
    assert!(rules.is_empty());
}
