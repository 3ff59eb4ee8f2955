//! The event model: what routeguard tells its users about one removal.
//!
//! This is the user-facing schema (`docs/events.md` documents it field by field). Field names are
//! a contract with users' scripts: add fields freely, but rename or remove one only with a
//! `SCHEMA_VERSION` bump and a line in the compat table of `docs/events.md`.
//!
//! The room depends on no other part of routeguard; every other part speaks it:
//! - [`Event`] and its [`Object`] (`wire.rs`: its JSON), [`Request`] with its [`Op`] and
//!   [`Syscall`]; [`EventRef`], an event as read, its process strings borrowed from the text;
//! - [`ObjectKey`]: an object's identity, the same whichever capture path described it;
//! - [`Observed`]: an event with the kernel's own description of its object beside it
//!   ([`KernelBody`]), which only the restore engine reads, and the [`Evidence`] its outcome
//!   rests on ([`Outcomes`] tallies them);
//! - [`describe`] (objects in iproute2's words, for humans), [`filter`], [`errno`] names,
//!   [`Timestamp`]s, and the fixtures every room's tests build events from.

mod borrowed;
pub mod describe;
pub mod errno;
pub mod filter;
#[cfg(test)]
pub(crate) mod fixtures;
mod host;
mod key;
mod object;
mod observed;
mod request;
mod suppressed;
mod time;
mod wire;

pub use borrowed::{ActorRef, AncestorRef, EventRef, HostRef};
pub use host::{local_host, set_local_host, Host, Pod};
pub use key::{parse_fwmark, route_type_name, ObjectKey, Prefix, RouteKey, RuleKey};
pub use object::{Address, Link, Nexthop, Object, Route, Rule};
pub use observed::{Evidence, KernelBody, Observed, Outcomes};
pub use request::{Op, Request, Syscall};
pub use suppressed::{Suppressed, SUPPRESSED};
pub use time::{Timestamp, TimestampError};

use std::sync::Arc;

use serde::{Deserialize, Serialize};

/// Version of the JSON event schema.
pub const SCHEMA_VERSION: u32 = 1;

/// One removal (or a request that makes the kernel remove things, such as a link going down).
///
/// Serialised as `docs/events.md` spells it (`wire.rs`): the object's kind as `kind`, and the
/// object under its kind's key (`route`, `rule`, `nexthop`, `link`, `address`), the other four
/// `null`.
#[derive(Clone, Debug, PartialEq)]
pub struct Event {
    pub schema_version: u32,
    pub ts: Timestamp,
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
    pub actor: Option<Arc<Actor>>,
    /// How the removal was asked for.
    pub request: Option<Request>,
    /// What was removed; its variant is the event's kind.
    pub object: Object,
    /// What made the kernel remove this object without a request of its own (set on the routes
    /// a link-down, address removal or link removal flushed). Absent in older captures.
    pub trigger: Option<Trigger>,
    /// What happened: the removal itself, or routeguard's answer to it. Absent in older
    /// captures, which hold removals only.
    pub event: EventType,
    /// Set on `restore` and `restore-suspended` events: what routeguard did about the removal the
    /// rest of the event describes.
    pub restore: Option<Restore>,
    /// For a `replace`: the route that took the removed one's place (`object` is the route the
    /// replace removed, from the mirror's state). Absent in older captures.
    pub replacement: Option<Route>,
    /// The machine the event happened on, read once at start. Absent in older captures.
    pub host: Option<Arc<Host>>,
}

/// Whether an event reports a removal or routeguard's restore of a protected object.
#[derive(Clone, Copy, Debug, Default, Serialize, Deserialize, PartialEq, Eq, Hash)]
#[serde(rename_all = "kebab-case")]
pub enum EventType {
    /// Something was removed (or a request to remove it failed).
    #[default]
    Removal,
    /// routeguard re-added (or tried to re-add) a protected object; see `restore`.
    Restore,
    /// routeguard stopped restoring an object its actor keeps removing; see `restore.hint`.
    RestoreSuspended,
}

/// routeguard's answer to the removal of a protected object.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Restore {
    /// `name` of the protect entry that matched (or its description when it has no name).
    pub policy: String,
    pub outcome: RestoreOutcome,
    /// Microseconds from the removal (the request's time) to the kernel's ack of the re-add.
    pub latency_us: Option<u64>,
    /// Restores of this object after removals by this actor within the flap-guard window,
    /// this one included.
    pub attempt: u32,
    /// Positive errno of a failed re-add.
    pub errno: Option<i32>,
    pub error: Option<String>,
    /// Why nothing was done, or what happens next, in a sentence.
    pub detail: Option<String>,
    /// For known culprits: the setting that stops them removing other programs' objects.
    pub hint: Option<String>,
}

#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq, Hash)]
#[serde(rename_all = "kebab-case")]
pub enum RestoreOutcome {
    /// The kernel acked the re-add: the object is back.
    Restored,
    /// Someone else put it back first (the re-add found it present: EEXIST).
    AlreadyPresent,
    /// The kernel refused the re-add; see `errno`. Retried while the cause may pass (a link
    /// that is down).
    Failed,
    /// `--dry-run`: routeguard would have re-added it.
    DryRun,
    /// Not restorable, e.g. the kernel's view of the object is unknown; see `detail`.
    Skipped,
    /// The flap guard gave up on this object (event `restore-suspended`).
    Suspended,
}

impl Event {
    /// A removal of `object` with no actor, request or restore yet: the correlator fills in
    /// what its source knows.
    pub fn removal(
        ts: Timestamp,
        object: Object,
        family: Option<Family>,
        cause: Cause,
        outcome: Outcome,
        capture: Capture,
        netns: Netns,
    ) -> Self {
        Self {
            schema_version: SCHEMA_VERSION,
            ts,
            family,
            cause,
            outcome,
            errno: None,
            error: None,
            capture,
            netns,
            actor: None,
            request: None,
            object,
            trigger: None,
            event: EventType::Removal,
            restore: None,
            replacement: None,
            host: local_host(),
        }
    }

    /// What was removed: a route, a rule, …
    pub fn kind(&self) -> Kind {
        self.object.kind()
    }

    /// The identity of what was removed.
    pub fn key(&self) -> ObjectKey {
        ObjectKey::of(self.family, &self.object)
    }
}

/// The request whose side effect a removal was: the link it took down or removed, or the
/// address it removed. `actor` and `request` of the event are that request's.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Trigger {
    /// `link` or `address`.
    pub kind: Kind,
    /// `RTM_NEWLINK`, `RTM_DELLINK`, `RTM_DELADDR`, `SIOCSIFFLAGS`.
    pub op: Op,
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

#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[serde(rename_all = "kebab-case")]
pub enum Family {
    Inet,
    Inet6,
}

/// What a user wrote for an address family, when it is none.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
#[error("`{0}` is not an address family; use 4 or 6")]
pub struct UnknownFamily(pub String);

impl Family {
    /// `4`/`inet` or `6`/`inet6`, as users write it.
    pub fn parse(s: &str) -> Result<Self, UnknownFamily> {
        match s {
            "4" | "inet" => Ok(Family::Inet),
            "6" | "inet6" => Ok(Family::Inet6),
            other => Err(UnknownFamily(other.to_owned())),
        }
    }
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
    /// routeguard's BPF LSM program refused the send before rtnetlink saw it (`errno` EPERM):
    /// a deny entry protects what this message could remove (docs/prevention.md).
    Denied,
    /// As `denied`, in a dry run: the send went through.
    WouldDeny,
}

#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq, Hash)]
#[serde(rename_all = "kebab-case")]
pub enum Capture {
    Syscall,
    KernelFunction,
    /// Heard from the kernel's own notifications and dumps (the netlink mirror): removals no
    /// captured request carried (`expired`, `netns-exit`).
    Netlink,
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

/// A file as the kernel knows it: a process can name itself anything (`comm`, `argv`, the path
/// it executed in a mount namespace of its own) but cannot change which file it runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ExeId {
    /// `st_dev` in userspace's encoding (what `stat -c %d` prints).
    pub dev: u64,
    pub ino: u64,
}

impl ExeId {
    /// From the kernel's `super_block.s_dev` (`MAJOR << 20 | MINOR`) and `i_ino`; `None` when
    /// the programs could not read them (0).
    pub fn from_kernel(s_dev: u32, ino: u64) -> Option<Self> {
        (ino != 0).then(|| Self {
            dev: libc::makedev(s_dev >> 20, s_dev & 0xf_ffff),
            ino,
        })
    }

    pub fn of(meta: &std::fs::Metadata) -> Self {
        use std::os::unix::fs::MetadataExt as _;
        Self {
            dev: meta.dev(),
            ino: meta.ino(),
        }
    }
}

/// The process that asked for the removal. Read as an [`ActorRef`] made owned (`wire.rs`).
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct Actor {
    pub pid: u32,
    pub tid: u32,
    pub comm: String,
    pub exe: Option<String>,
    /// Device (`st_dev`, as `stat` shows it) and inode of the file the process executed, taken
    /// by the kernel at request time: what `exe` allow-lists match. Absent in older captures.
    pub exe_dev: Option<u64>,
    pub exe_inode: Option<u64>,
    /// argv joined by spaces (each argument shell-quoted when it needs it). A line without it
    /// reads as empty, as one without `argv` or `ancestry` does.
    pub cmdline: String,
    pub argv: Vec<String>,
    pub uid: u32,
    pub ppid: u32,
    /// Parent chain, nearest parent first, up to pid 1 (or as deep as was captured).
    pub ancestry: Vec<Ancestor>,
    /// cgroup v2 path, e.g. `/system.slice/systemd-networkd.service`.
    pub cgroup: Option<String>,
    /// cgroup v2 id (the inode of the cgroup's directory), taken by the kernel at request time:
    /// what `cgroup` allow-lists match. Absent in older captures.
    pub cgroup_id: Option<u64>,
    /// systemd unit (`*.service` / `*.scope`) the process runs in.
    pub unit: Option<String>,
    /// Container id when the cgroup path names one (docker, containerd, cri-o, podman).
    pub container: Option<String>,
    /// The Kubernetes pod, when the cgroup is one of kubelet's pods. Absent in older captures.
    #[serde(default)]
    pub pod: Option<Pod>,
}

impl Actor {
    /// The executable's identity, when the kernel (or /proc, while the process lived) gave it.
    pub fn exe_id(&self) -> Option<ExeId> {
        Some(ExeId {
            dev: self.exe_dev?,
            ino: self.exe_inode?,
        })
    }
}
