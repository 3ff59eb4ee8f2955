//! Prevention: protect entries with `action = "deny"` become selectors of the BPF LSM program
//! on `netlink_send` (`lsm.rs` in the eBPF crate), which refuses a removal before rtnetlink acts.
//!
//! The program is attached only when a deny entry exists, and only where BPF LSM is active
//! (`bpf` in `/sys/kernel/security/lsm`): elsewhere, and when it fails to load, the entries
//! protect by restore, and `trace` says so at start. See docs/prevention.md.

use std::{collections::HashMap, path::Path};

use aya::{
    maps::{Array, HashMap as BpfHashMap},
    programs::Lsm,
    Btf, Ebpf,
};
use ipnet::IpNet;
use routeguard_common::prevent::{deny_kind, DenySelector, DenyState, ExeKey, DENY_MAX};

use crate::{
    event::{ExeId, Family, Kind},
    restore::{policy::Action, Protect},
};

/// Where the kernel lists its active LSMs.
const LSM_LIST: &str = "/sys/kernel/security/lsm";
/// The program and its hook (aya prefixes `bpf_lsm_`).
const PROGRAM: &str = "lsm_netlink_send";
const HOOK: &str = "netlink_send";

/// What the LSM program is given: the deny entries as selectors, and who each allows.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Plan {
    pub selectors: Vec<DenySelector>,
    /// The entries' labels, in selector order.
    pub labels: Vec<String>,
    /// cgroup v2 id → mask of entries that allow it.
    pub cgroups: HashMap<u64, u64>,
    /// Executable → mask of entries that allow it.
    pub exes: HashMap<ExeKey, u64>,
    pub dry_run: bool,
}

/// Whether prevention runs, for the start line and the logs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Status {
    /// No deny entry.
    Off,
    /// The LSM program is attached with this many deny entries.
    Active { entries: usize, dry_run: bool },
    /// Deny entries exist but the program is not attached: they protect by restore.
    Unavailable(String),
}

impl Status {
    /// `; prevention: …` for the start line (empty when off).
    pub fn describe(&self) -> String {
        match self {
            Status::Off => String::new(),
            Status::Active {
                entries,
                dry_run: false,
            } => format!("; prevention: BPF LSM, denying {entries} selection(s)"),
            Status::Active {
                entries,
                dry_run: true,
            } => format!("; prevention: BPF LSM, dry run of {entries} selection(s)"),
            Status::Unavailable(why) => {
                format!("; prevention: unavailable ({why}), protecting by restore")
            }
        }
    }
}

impl Plan {
    /// The deny entries of `protect`; `None` without any. Errors name the entry and what to
    /// write instead.
    pub fn of(protect: &[Protect], dry_run: bool) -> Result<Option<Self>, String> {
        let deny: Vec<&Protect> = protect
            .iter()
            .filter(|p| p.action == Action::Deny)
            .collect();
        if deny.is_empty() {
            return Ok(None);
        }
        if deny.len() > DENY_MAX as usize {
            return Err(format!(
                "{} protect entries have action = \"deny\"; at most {DENY_MAX} can (merge \
                 selections, e.g. with a priority range)",
                deny.len()
            ));
        }
        let mut plan = Plan {
            dry_run,
            ..Plan::default()
        };
        for (i, p) in deny.iter().enumerate() {
            plan.selectors.push(selector(p)?);
            plan.labels.push(p.label());
            let bit = 1u64 << i;
            for exe in &p.allow.exe {
                *plan.exes.entry(exe_key(exe.id)).or_default() |= bit;
            }
            for cgroup in &p.allow.cgroup {
                if let Some(id) = cgroup.id() {
                    *plan.cgroups.entry(id).or_default() |= bit;
                }
            }
        }
        Ok(Some(plan))
    }
}

impl Plan {
    /// Namespace inode (0: every namespace) → mask of the entries in force there.
    pub fn by_netns(&self) -> HashMap<u32, u64> {
        let mut masks = HashMap::new();
        for (i, sel) in self.selectors.iter().enumerate() {
            *masks.entry(sel.netns_ino).or_default() |= 1u64 << i;
        }
        masks
    }
}

/// A deny entry as the program matches it.
fn selector(p: &Protect) -> Result<DenySelector, String> {
    let label = p.label();
    if !p.allow.comm.is_empty() || !p.allow.unit.is_empty() || !p.allow.container.is_empty() {
        return Err(format!(
            "protect entry `{label}` has action = \"deny\" with allow.comm, allow.unit or \
             allow.container, which the kernel cannot check when it refuses a removal; allow \
             by allow.exe (the executable file) or allow.cgroup instead"
        ));
    }
    let unsupported = [
        (p.protocol.is_some(), "protocol"),
        (p.from.is_some(), "from"),
        (p.to.is_some(), "to"),
        (p.iif.is_some(), "iif"),
        (p.oif.is_some(), "oif"),
        (p.fwmark.is_some(), "fwmark"),
    ];
    if let Some((_, key)) = unsupported.iter().find(|(set, _)| *set) {
        return Err(format!(
            "protect entry `{label}` has action = \"deny\" and selects by `{key}`, which the \
             kernel-side matching does not support yet; select deny entries by table, \
             priority, dst, family and netns (or use action = \"restore\")"
        ));
    }
    let mut sel = DenySelector {
        kind: match p.kind {
            Kind::Route => deny_kind::ROUTE,
            _ => deny_kind::RULE,
        },
        family: match p.family {
            Some(Family::Inet) => 2,
            Some(Family::Inet6) => 10,
            _ => 0,
        },
        table: p.table.unwrap_or(0),
        ..DenySelector::default()
    };
    if let Some((lo, hi)) = p.priority {
        sel.has_priority = 1;
        sel.priority_lo = lo;
        sel.priority_hi = hi;
    }
    if let Some(dst) = p.dst {
        sel.has_dst = 1;
        sel.dst_len = dst.prefix_len();
        match dst {
            IpNet::V4(net) => {
                sel.family = 2;
                sel.dst[..4].copy_from_slice(&net.network().octets());
            }
            IpNet::V6(net) => {
                sel.family = 10;
                sel.dst = net.network().octets();
            }
        }
    }
    if let Some(named) = &p.netns {
        if named != "host" {
            sel.netns_ino = crate::capture::budget::netns_inode(named, Path::new("/run/netns"))
                .ok_or_else(|| {
                    format!(
                        "protect entry `{label}` has action = \"deny\" in netns `{named}`, \
                             which does not exist; the kernel needs the namespace to deny in it \
                             (create it first, or use action = \"restore\")"
                    )
                })?;
        } else {
            sel.netns_ino = crate::capture::budget::host_netns_ino();
        }
    }
    Ok(sel)
}

/// The kernel's encoding of an executable's file (`s_dev` is `MAJOR << 20 | MINOR`).
fn exe_key(id: ExeId) -> ExeKey {
    let (major, minor) = (libc::major(id.dev), libc::minor(id.dev));
    ExeKey {
        dev: (major << 20) | (minor & 0xf_ffff),
        _pad: 0,
        ino: id.ino,
    }
}

/// Whether BPF LSM programs run here: `bpf` must be in the active list, or a program loads,
/// attaches and never runs.
pub fn lsm_active() -> Result<(), String> {
    if !Path::new(LSM_LIST).exists() {
        mount_securityfs();
    }
    let list = std::fs::read_to_string(LSM_LIST)
        .map_err(|e| format!("cannot read {LSM_LIST} ({e}); is securityfs mounted?"))?;
    if list.trim().split(',').any(|l| l == "bpf") {
        Ok(())
    } else {
        Err(format!(
            "BPF LSM is not active: {LSM_LIST} lists `{}` without `bpf` (boot with \
             lsm={},bpf)",
            list.trim(),
            list.trim()
        ))
    }
}

/// Mounts securityfs where the kernel offers it and nothing is mounted yet (as systemd does at
/// boot; some hosts and containers skip it). A failure shows as the list being unreadable.
fn mount_securityfs() {
    // SAFETY: plain C strings; the mount(2) call has no memory effects on this process.
    let ret = unsafe {
        libc::mount(
            c"none".as_ptr(),
            c"/sys/kernel/security".as_ptr(),
            c"securityfs".as_ptr(),
            0,
            std::ptr::null(),
        )
    };
    if ret != 0 {
        tracing::debug!(err = %std::io::Error::last_os_error(), "cannot mount securityfs");
    }
}

/// The oldest kernel the deny program is proven on (Debian's 6.12 in the QEMU guests). On
/// Debian's 6.1 the same object loads and refuses a delete that names the table, but let one
/// that names none through (`ip rule del prio 100`), which 6.12 refuses: how 6.1's verifier
/// treats `bpf_loop` callbacks is suspected, not proven. Until an older kernel is proven, deny
/// entries there protect by restore, and the start line says why.
const PROVEN_FROM: (u32, u32) = (6, 12);

/// `major.minor` of a kernel release string (`6.1.0-57-amd64`, `6.12.118+deb12-amd64`).
fn release_version(release: &str) -> Option<(u32, u32)> {
    let mut numbers = release.trim().split(|c: char| !c.is_ascii_digit());
    Some((numbers.next()?.parse().ok()?, numbers.next()?.parse().ok()?))
}

/// Whether this kernel is one the deny program is proven on ([`PROVEN_FROM`]).
fn kernel_proven() -> Result<(), String> {
    const OSRELEASE: &str = "/proc/sys/kernel/osrelease";
    let release =
        std::fs::read_to_string(OSRELEASE).map_err(|e| format!("cannot read {OSRELEASE} ({e})"))?;
    let release = release.trim();
    match release_version(release) {
        Some(v) if v >= PROVEN_FROM => Ok(()),
        Some(_) => Err(format!(
            "kernel {release}: the deny program is proven on {}.{} and later; on 6.1 it let a \
             delete naming no table through",
            PROVEN_FROM.0, PROVEN_FROM.1
        )),
        None => Err(format!("cannot tell the kernel's version from `{release}`")),
    }
}

/// Fills the program's maps from `plan` and attaches it. The link lives as long as `ebpf`.
pub fn attach(ebpf: &mut Ebpf, plan: &Plan) -> Result<(), String> {
    kernel_proven()?;
    lsm_active()?;
    fill(ebpf, plan).map_err(|e| format!("filling the deny maps: {e}"))?;
    let btf = Btf::from_sys_fs().map_err(|e| format!("cannot read the kernel's BTF: {e}"))?;
    let program: &mut Lsm = ebpf
        .program_mut(PROGRAM)
        .ok_or_else(|| format!("the eBPF object has no program {PROGRAM}"))?
        .try_into()
        .map_err(|e| format!("{PROGRAM}: {e}"))?;
    program
        .load(HOOK, &btf)
        .map_err(|e| format!("loading {PROGRAM} on {HOOK}: {}", chain(&e)))?;
    program
        .attach()
        .map_err(|e| format!("attaching {PROGRAM} on {HOOK}: {}", chain(&e)))?;
    Ok(())
}

fn chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

fn fill(ebpf: &mut Ebpf, plan: &Plan) -> Result<(), aya::maps::MapError> {
    let mut selectors: Array<_, DenySelector> =
        Array::try_from(ebpf.map_mut("DENY_SELECTORS").ok_or(no_map())?)?;
    for (i, sel) in plan.selectors.iter().enumerate() {
        selectors.set(i as u32, sel, 0)?;
    }
    let mut cgroups: BpfHashMap<_, u64, u64> =
        BpfHashMap::try_from(ebpf.map_mut("ALLOW_CGROUP").ok_or(no_map())?)?;
    for (id, mask) in &plan.cgroups {
        cgroups.insert(id, mask, 0)?;
    }
    let mut netns: BpfHashMap<_, u32, u64> =
        BpfHashMap::try_from(ebpf.map_mut("DENY_NETNS").ok_or(no_map())?)?;
    for (ino, mask) in plan.by_netns() {
        netns.insert(ino, mask, 0)?;
    }
    let mut exes: BpfHashMap<_, ExeKey, u64> =
        BpfHashMap::try_from(ebpf.map_mut("ALLOW_EXE").ok_or(no_map())?)?;
    for (key, mask) in &plan.exes {
        exes.insert(key, mask, 0)?;
    }
    // Last: the program reads `count` first, so it never sees a half-filled table.
    let mut state: Array<_, DenyState> =
        Array::try_from(ebpf.map_mut("DENY_STATE").ok_or(no_map())?)?;
    state.set(
        0,
        DenyState {
            count: plan.selectors.len() as u32,
            dry_run: u32::from(plan.dry_run),
        },
        0,
    )?;
    Ok(())
}

fn no_map() -> aya::maps::MapError {
    aya::maps::MapError::InvalidName {
        name: "DENY_*".to_string(),
    }
}

#[cfg(test)]
mod tests;
