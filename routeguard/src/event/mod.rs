//! The event model: what routeguard tells its users about one removal.
//!
//! This is the user-facing schema (`docs/events.md` documents it field by field). Field names are
//! a contract with users' scripts: add fields freely, but rename or remove one only with a
//! `SCHEMA_VERSION` bump and a line in the compat table of `docs/events.md`.

pub mod describe;
pub mod errno;
pub mod filter;
mod object;
mod time;

pub use object::{Address, Link, Nexthop, Route, Rule};
pub use time::Timestamp;

use serde::{Deserialize, Serialize};

/// Version of the JSON event schema.
pub const SCHEMA_VERSION: u32 = 1;

/// One removal (or a request that makes the kernel remove things, such as a link going down).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Event {
    pub schema_version: u32,
    pub ts: Timestamp,
    pub kind: Kind,
    /// `None` for kinds without an address family (links).
    pub family: Option<Family>,
    pub cause: Cause,
    pub outcome: Outcome,
    /// Positive errno when `outcome` is `failed`.
    pub errno: Option<i32>,
    /// Symbolic name of `errno`, e.g. `ESRCH`.
    pub error: Option<String>,
    pub capture: Capture,
    pub netns: Netns,
    /// `None` only for removals no process asked for (expiry, netns teardown).
    pub actor: Option<Actor>,
    /// How the removal was asked for.
    pub request: Option<Request>,
    pub route: Option<Route>,
    pub rule: Option<Rule>,
    pub nexthop: Option<Nexthop>,
    pub link: Option<Link>,
    pub address: Option<Address>,
    /// What made the kernel remove this object without a request of its own (set on the routes
    /// a link-down, address removal or link removal flushed). Absent in older captures.
    #[serde(default)]
    pub trigger: Option<Trigger>,
}

/// The request whose side effect a removal was: the link it took down or removed, or the
/// address it removed. `actor` and `request` of the event are that request's.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Trigger {
    /// `link` or `address`.
    pub kind: Kind,
    /// `RTM_NEWLINK`, `RTM_DELLINK`, `RTM_DELADDR`, `SIOCSIFFLAGS`.
    pub op: String,
    pub link: Option<Link>,
    pub address: Option<Address>,
}

#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[serde(rename_all = "kebab-case")]
pub enum Kind {
    Route,
    Rule,
    Nexthop,
    Link,
    Address,
}

#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq, Hash)]
#[serde(rename_all = "kebab-case")]
pub enum Family {
    Inet,
    Inet6,
}

#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq, Hash)]
#[serde(rename_all = "kebab-case")]
pub enum Cause {
    /// An explicit delete request (RTM_DEL*, SIOCDELRT).
    Request,
    /// RTM_NEWROUTE / RTM_NEWRULE with NLM_F_REPLACE: the old object is removed.
    Replace,
    LinkDown,
    AddressRemoved,
    LinkRemoved,
    Flush,
    Expired,
    NetnsExit,
}

#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq, Hash)]
#[serde(rename_all = "kebab-case")]
pub enum Outcome {
    /// The kernel accepted the request (it acked with 0, or the ioctl returned 0).
    Removed,
    /// The kernel refused it; see `errno`.
    Failed,
    /// No reply was seen: the sender asked for no ack and never read an error, or exited first.
    Unknown,
}

#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq, Hash)]
#[serde(rename_all = "kebab-case")]
pub enum Capture {
    Syscall,
    KernelFunction,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Netns {
    pub inode: u32,
    /// Name under /run/netns, `host` for the initial namespace, else `None`.
    pub name: Option<String>,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Ancestor {
    pub pid: u32,
    pub comm: String,
}

/// The process that asked for the removal.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Actor {
    pub pid: u32,
    pub tid: u32,
    pub comm: String,
    pub exe: Option<String>,
    /// argv joined by spaces (each argument shell-quoted when it needs it).
    #[serde(default)]
    pub cmdline: String,
    #[serde(default)]
    pub argv: Vec<String>,
    pub uid: u32,
    pub ppid: u32,
    /// Parent chain, nearest parent first, up to pid 1 (or as deep as was captured).
    #[serde(default)]
    pub ancestry: Vec<Ancestor>,
    /// cgroup v2 path, e.g. `/system.slice/systemd-networkd.service`.
    pub cgroup: Option<String>,
    /// systemd unit (`*.service` / `*.scope`) the process runs in.
    pub unit: Option<String>,
    /// Container id when the cgroup path names one (docker, containerd, cri-o, podman).
    pub container: Option<String>,
}

/// How the removal reached the kernel.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Request {
    /// `sendmsg`, `sendto`, `sendmmsg`, `write` or `ioctl`.
    pub syscall: String,
    /// Netlink message type (`RTM_DELROUTE`, …) or ioctl name (`SIOCDELRT`, …).
    pub op: String,
    /// `nlmsg_seq` (netlink only).
    pub seq: Option<u32>,
    /// `nlmsg_flags` (netlink only).
    pub nlmsg_flags: Option<u16>,
    /// True when the sender asked the kernel for an ack (NLM_F_ACK) or used an ioctl.
    #[serde(default)]
    pub ack_requested: bool,
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A complete route event, for tests of everything downstream of the event model.
    pub(crate) fn sample_route_event() -> Event {
        Event {
            schema_version: SCHEMA_VERSION,
            ts: Timestamp(1_795_792_661_123_456_789),
            kind: Kind::Route,
            family: Some(Family::Inet),
            cause: Cause::Request,
            outcome: Outcome::Removed,
            errno: None,
            error: None,
            capture: Capture::Syscall,
            netns: Netns {
                inode: 4_026_532_456,
                name: Some("blue".into()),
            },
            actor: Some(Actor {
                pid: 4242,
                tid: 4242,
                comm: "ip".into(),
                exe: Some("/usr/sbin/ip".into()),
                cmdline: "ip route del 10.77.1.0/24 table 77".into(),
                argv: ["ip", "route", "del", "10.77.1.0/24", "table", "77"]
                    .map(String::from)
                    .to_vec(),
                uid: 0,
                ppid: 4200,
                ancestry: vec![
                    Ancestor {
                        pid: 4200,
                        comm: "bash".into(),
                    },
                    Ancestor {
                        pid: 1,
                        comm: "systemd".into(),
                    },
                ],
                cgroup: Some("/system.slice/demo.service".into()),
                unit: Some("demo.service".into()),
                container: None,
            }),
            request: Some(Request {
                syscall: "sendmsg".into(),
                op: "RTM_DELROUTE".into(),
                seq: Some(1_795_792_661),
                nlmsg_flags: Some(0x5),
                ack_requested: true,
            }),
            route: Some(Route {
                table: Some(77),
                dst: Some("10.77.1.0/24".into()),
                priority: Some(100),
                ..Default::default()
            }),
            rule: None,
            nexthop: None,
            link: None,
            address: None,
            trigger: None,
        }
    }
}
