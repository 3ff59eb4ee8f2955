//! Deny entries as the LSM program's selectors.

use routeguard_common::prevent::deny_kind;

use super::*;
use crate::restore::parse_spec;

fn plan(specs: &[&str]) -> Result<Option<Plan>, String> {
    let protect: Vec<Protect> = specs.iter().map(|s| parse_spec(s).unwrap()).collect();
    Plan::of(&protect, false)
}

#[test]
fn only_deny_entries_become_selectors() {
    assert_eq!(plan(&["kind=rule table=77"]).unwrap(), None);
    let p = plan(&[
        "kind=rule table=77",
        "kind=rule table=78 priority=100-200 action=deny",
        "kind=route table=main dst=10.7.0.0/16 action=deny",
    ])
    .unwrap()
    .unwrap();
    assert_eq!(p.selectors.len(), 2);
    let rule = p.selectors[0];
    assert_eq!(rule.kind, deny_kind::RULE);
    assert_eq!(rule.table, 78);
    assert_eq!(
        (rule.has_priority, rule.priority_lo, rule.priority_hi),
        (1, 100, 200)
    );
    assert_eq!(rule.netns_ino, 0);
    let route = p.selectors[1];
    assert_eq!(route.kind, deny_kind::ROUTE);
    assert_eq!(route.table, 254);
    assert_eq!((route.has_dst, route.dst_len, route.family), (1, 16, 2));
    assert_eq!(&route.dst[..4], &[10, 7, 0, 0]);
    assert_eq!(p.labels[1], "route table 254 dst 10.7.0.0/16");
}

#[test]
fn allowed_exes_and_cgroups_carry_their_entries_bit() {
    let sh = std::fs::canonicalize("/bin/sh").unwrap();
    let p = plan(&[
        &format!("kind=rule table=77 action=deny allow-exe={}", sh.display()),
        &format!("kind=rule table=78 action=deny allow-exe={}", sh.display()),
    ])
    .unwrap()
    .unwrap();
    let meta = std::fs::metadata(&sh).unwrap();
    let key = exe_key(ExeId::of(&meta));
    assert_eq!(p.exes.get(&key), Some(&0b11));
    // The kernel's encoding round-trips to userspace's.
    assert_eq!(ExeId::from_kernel(key.dev, key.ino), Some(ExeId::of(&meta)));
}

#[test]
fn what_the_kernel_cannot_check_is_refused_with_what_to_write() {
    let cases = [
        (
            "kind=rule table=77 action=deny allow-comm=kube-router",
            "allow by allow.exe",
        ),
        ("kind=rule table=77 action=deny fwmark=0x10", "`fwmark`"),
        (
            "kind=rule table=77 action=deny netns=rg-no-such-netns-18",
            "does not exist",
        ),
    ];
    for (spec, needle) in cases {
        let err = plan(&[spec]).unwrap_err();
        assert!(err.contains(needle), "{spec}: {err}");
    }
    let many: Vec<String> = (1..=17)
        .map(|t| format!("kind=rule table={t} action=deny"))
        .collect();
    let many: Vec<&str> = many.iter().map(String::as_str).collect();
    assert!(plan(&many).unwrap_err().contains("at most 16"));
}

#[test]
fn status_says_whether_the_kernel_denies() {
    assert_eq!(Status::Off.describe(), "");
    assert!(Status::Active {
        entries: 2,
        dry_run: false
    }
    .describe()
    .contains("denying 2"));
    assert!(Status::Unavailable("BPF LSM is not active".into())
        .describe()
        .contains("unavailable (BPF LSM is not active), protecting by restore"));
}

#[test]
fn each_namespace_knows_the_entries_in_force_there() {
    let p = plan(&[
        "kind=rule table=77 action=deny",
        "kind=rule table=78 action=deny netns=4026532999",
        "kind=route table=79 action=deny",
    ])
    .unwrap()
    .unwrap();
    let masks = p.by_netns();
    assert_eq!(masks.get(&0), Some(&0b101));
    assert_eq!(masks.get(&4026532999), Some(&0b010));
    assert_eq!(masks.len(), 2);
}

#[test]
fn kernel_releases_are_read_as_major_and_minor() {
    use super::{release_version, PROVEN_FROM};
    assert_eq!(release_version("6.1.0-57-amd64\n"), Some((6, 1)));
    assert_eq!(release_version("6.12.118+deb12-amd64"), Some((6, 12)));
    assert_eq!(release_version("6.18.0"), Some((6, 18)));
    assert_eq!(release_version("5.14.0-427.el9.x86_64"), Some((5, 14)));
    assert_eq!(release_version("garbage"), None);
    assert!(release_version("6.1.0-57-amd64").unwrap() < PROVEN_FROM);
    assert!(release_version("6.12.118+deb12-amd64").unwrap() >= PROVEN_FROM);
    assert!(release_version("7.0.1").unwrap() >= PROVEN_FROM);
}
