use std::collections::BTreeSet;

use super::*;
use crate::event::{
    fixtures::{full_event, full_object, host, route_event, rule_event},
    Kind, Restore,
};

const DOC: &str = include_str!("../../../../docs/opentelemetry.md");

fn get<'a>(r: &'a Record, key: &str) -> Option<&'a AnyValue> {
    let found: Vec<_> = r
        .attributes
        .iter()
        .filter(|(k, _)| k.as_str() == key)
        .collect();
    assert!(found.len() <= 1, "{key} is set {} times", found.len());
    found.first().map(|(_, v)| v)
}

fn s(v: &str) -> AnyValue {
    AnyValue::from(v.to_owned())
}

#[test]
fn a_removal_names_the_process_the_namespace_and_the_object() {
    let r = record(&route_event(), Options::default());
    assert_eq!(r.event_name, "routeguard.removal");
    assert_eq!(r.severity, Severity::Info);
    assert_eq!(
        r.timestamp,
        UNIX_EPOCH + Duration::from_nanos(1_795_792_661_123_456_789)
    );
    assert_eq!(
        r.body,
        "netns=blue(4026532456) ip[12345] unit=demo.service DEL route table 77 10.1.0.0/24 via \
         10.0.0.1 metric 100 -> removed"
    );
    for (key, want) in [
        ("process.pid", AnyValue::Int(12345)),
        ("process.parent_pid", AnyValue::Int(12000)),
        ("process.executable.path", s("/usr/sbin/ip")),
        ("process.executable.name", s("ip")),
        ("process.real_user.id", AnyValue::Int(0)),
        ("process.linux.cgroup", s("/system.slice/demo.service")),
        ("thread.id", AnyValue::Int(12345)),
        ("thread.name", s("ip")),
        ("routeguard.actor.unit", s("demo.service")),
        (
            "routeguard.actor.ancestry",
            AnyValue::ListAny(Box::new(vec![s("bash[12000]"), s("systemd[1]")])),
        ),
        ("routeguard.kind", s("route")),
        ("routeguard.family", s("inet")),
        ("routeguard.cause", s("request")),
        ("routeguard.outcome", s("removed")),
        ("routeguard.capture", s("syscall")),
        ("routeguard.netns.inode", AnyValue::Int(4026532456)),
        ("routeguard.netns.name", s("blue")),
        ("routeguard.request.op", s("RTM_DELROUTE")),
        ("routeguard.request.seq", AnyValue::Int(1764256661)),
        ("routeguard.request.ack_requested", AnyValue::Boolean(true)),
        ("routeguard.route.table", AnyValue::Int(77)),
        ("routeguard.route.dst", s("10.1.0.0/24")),
        ("routeguard.route.gateway", s("10.0.0.1")),
        ("routeguard.route.priority", AnyValue::Int(100)),
    ] {
        assert_eq!(get(&r, key), Some(&want), "{key}");
    }
    // Absent values are left out; the argv only when asked for; the host is the resource's.
    for key in [
        "routeguard.errno",
        "routeguard.error",
        "routeguard.route.dev",
        "routeguard.trigger.kind",
        "routeguard.restore.outcome",
        "process.command_args",
        "container.id",
        "k8s.pod.name",
        "host.name",
        "routeguard.host.name",
        "routeguard.actor.pid",
    ] {
        assert_eq!(get(&r, key), None, "{key}");
    }
    let r = record(&route_event(), Options { command_args: true });
    let argv = [
        "ip",
        "route",
        "del",
        "10.1.0.0/24",
        "via",
        "10.0.0.1",
        "table",
        "77",
        "metric",
        "100",
    ]
    .map(s)
    .to_vec();
    assert_eq!(
        get(&r, "process.command_args"),
        Some(&AnyValue::ListAny(Box::new(argv)))
    );
}

#[test]
fn a_refused_removal_is_a_warning_with_its_errno() {
    let r = record(&rule_event(), Options::default());
    assert_eq!(r.severity, Severity::Warn);
    assert_eq!(get(&r, "routeguard.errno"), Some(&AnyValue::Int(2)));
    assert_eq!(get(&r, "routeguard.error"), Some(&s("ENOENT")));
    assert_eq!(
        get(&r, "routeguard.rule.priority"),
        Some(&AnyValue::Int(100))
    );
    assert_eq!(get(&r, "routeguard.rule.table"), Some(&AnyValue::Int(77)));
    assert_eq!(
        get(&r, "routeguard.rule.invert"),
        Some(&AnyValue::Boolean(false))
    );
    assert_eq!(get(&r, "routeguard.route.table"), None);
}

#[test]
fn pods_and_containers_use_the_kubernetes_conventions() {
    let r = record(&full_event(), Options::default());
    for (key, want) in [
        (
            "container.id",
            "3f4e1c2b9a8d7e6f5a4b3c2d1e0f9a8b7c6d5e4f3a2b1c0d9e8f7a6b5c4d3e2f",
        ),
        ("k8s.pod.name", "calico-node-x7k2"),
        ("k8s.pod.uid", "0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0"),
        ("k8s.namespace.name", "kube-system"),
        ("k8s.container.name", "calico-node"),
        ("routeguard.restore.policy", "kube-router rules"),
        ("routeguard.trigger.link.name", "eth0"),
        ("routeguard.replacement.gateway", "10.0.0.9"),
    ] {
        assert_eq!(get(&r, key), Some(&s(want)), "{key}");
    }
    assert_eq!(
        get(&r, "routeguard.restore.latency_us"),
        Some(&AnyValue::Int(412))
    );
}

#[test]
fn event_names_and_severities() {
    let mut ev = route_event();
    assert_eq!(event_name(ev.event), "routeguard.removal");
    ev.event = EventType::Restore;
    let mut restore = Restore {
        policy: "p".into(),
        outcome: RestoreOutcome::Restored,
        latency_us: Some(300),
        attempt: 1,
        errno: None,
        error: None,
        detail: None,
        hint: None,
    };
    ev.restore = Some(restore.clone());
    assert_eq!(
        record(&ev, Options::default()).event_name,
        "routeguard.restore"
    );
    assert_eq!(severity(&ev), Severity::Warn);
    restore.outcome = RestoreOutcome::Failed;
    ev.restore = Some(restore.clone());
    assert_eq!(severity(&ev), Severity::Error);
    ev.event = EventType::RestoreSuspended;
    restore.outcome = RestoreOutcome::Suspended;
    ev.restore = Some(restore);
    assert_eq!(
        record(&ev, Options::default()).event_name,
        "routeguard.restore_suspended"
    );
    assert_eq!(severity(&ev), Severity::Error);
}

#[test]
fn the_resource_names_the_service_and_the_machine() {
    let keys: Vec<(String, String)> = resource(Some(&host()))
        .into_iter()
        .map(|kv| (kv.key.to_string(), kv.value.to_string()))
        .collect();
    for (key, value) in [
        ("service.name", "routeguard"),
        ("host.name", "node-a"),
        ("host.id", "5f1d2c3b4a5968778695a4b3c2d1e0f9"),
        ("k8s.node.name", "ip-10-0-3-7.ec2.internal"),
    ] {
        assert!(
            keys.contains(&(key.to_owned(), value.to_owned())),
            "{key} in {keys:?}"
        );
    }
    assert_eq!(resource(None).len(), 2);
}

/// The keys of the tables under docs/opentelemetry.md's "## Attributes" and "## Resource";
/// `<field>` stands for any field name.
fn documented() -> BTreeSet<String> {
    DOC.lines()
        .skip_while(|l| *l != "## Resource")
        .take_while(|l| *l != "## Severity")
        .filter_map(|l| l.strip_prefix("| `")?.split('`').next())
        .map(str::to_owned)
        .collect()
}

fn matches(pattern: &str, key: &str) -> bool {
    match pattern.split_once("<field>") {
        Some((head, "")) => key
            .strip_prefix(head)
            .is_some_and(|rest| !rest.is_empty() && !rest.contains('.')),
        _ => pattern == key,
    }
}

/// Every attribute any event can carry is in docs/opentelemetry.md, and everything listed
/// there is sent by some event.
#[test]
fn docs_opentelemetry_md_lists_every_attribute() {
    let mut sent = BTreeSet::new();
    let options = Options { command_args: true };
    for kind in [
        Kind::Route,
        Kind::Rule,
        Kind::Nexthop,
        Kind::Link,
        Kind::Address,
    ] {
        let ev = Event {
            object: full_object(kind),
            ..full_event()
        };
        sent.extend(
            record(&ev, options)
                .attributes
                .into_iter()
                .map(|(k, _)| k.to_string()),
        );
    }
    sent.extend(
        resource(Some(&host()))
            .into_iter()
            .map(|kv| kv.key.to_string()),
    );
    let doc = documented();
    for key in &sent {
        assert!(
            doc.iter().any(|p| matches(p, key)),
            "`{key}` is sent but not in docs/opentelemetry.md"
        );
    }
    for pattern in &doc {
        assert!(
            sent.iter().any(|k| matches(pattern, k)),
            "docs/opentelemetry.md lists `{pattern}`, which no event sends"
        );
    }
    for t in [
        EventType::Removal,
        EventType::Restore,
        EventType::RestoreSuspended,
    ] {
        assert!(
            DOC.contains(&format!("`{}`", event_name(t))),
            "{} in docs/opentelemetry.md",
            event_name(t)
        );
    }
}
