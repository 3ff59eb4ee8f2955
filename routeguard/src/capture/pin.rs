//! Keeping the capture running while no daemon reads it: its links and maps pinned in bpffs.
//!
//! A daemon pins each program's link and the maps a successor needs (the ring buffer, the loss
//! counters, the self-tgid entry, the task-seen cache) under `<pin_dir>/<object tag>/`. The
//! programs stay attached while the pins exist, whether a daemon runs or not, and keep writing
//! into the ring: what happens between two daemons waits there (bounded by the ring's size; what
//! does not fit is counted in the pinned counters). The next daemon built from the same eBPF
//! object adopts the pins instead of loading again and drains the ring first.
//!
//! The tag is a hash of the eBPF object: a daemon never adopts programs it does not understand.
//! Pins of another build (an upgrade) are removed when the new one starts, which detaches them.
//! Pins stay when a daemon stops (SIGTERM included, so `systemctl restart` loses nothing);
//! `routeguard daemon --unpin` removes them. A capture no daemon reads stops recording after
//! `capture.orphan_after` (see [`super::keepalive`]).
//!
//! The running daemon also holds each link by its own fd ([`Held`]): removing the pins under it
//! (`--unpin`, a daemon of another build) does not detach its programs while it runs, and it
//! checks every few seconds that the pins are still its own, reporting on `/healthz` when not.

use std::{
    ffi::CString,
    fs, io,
    os::unix::ffi::OsStrExt as _,
    path::{Path, PathBuf},
};

use aya::{
    maps::{Array, HashMap, Map, MapData, PerCpuArray, RingBuf},
    programs::{links::FdLink, links::PinnedLink, ProgramError, ProgramFd, SocketFilter},
    Ebpf,
};

use routeguard_common::Keepalive;

use super::{programs::NOTIFY_FILTER, CaptureError, PROGRAMS};

/// Maps pinned beside the links: what a successor reads or writes.
const MAPS: &[&str] = &[
    "EVENTS",
    "COUNTERS",
    "SELF_TGID",
    "TASK_SEEN",
    "KEEPALIVE",
    "BUDGETS",
    "BUDGET_SHARED",
    "BUDGET_EXEMPT",
    "BUDGET_LIMITS",
];
/// `BPF_FS_MAGIC` (include/uapi/linux/magic.h).
const BPF_FS_MAGIC: i64 = 0xcafe_4a11;

#[derive(Debug, thiserror::Error)]
pub enum PinError {
    #[error("cannot mount bpffs on {path}: {source} (needs CAP_SYS_ADMIN; or mount it: `mount -t bpf bpf {path}`)")]
    Mount { path: PathBuf, source: io::Error },
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error("cannot pin {what} at {path}: {source}")]
    Pin {
        what: &'static str,
        path: PathBuf,
        source: aya::pin::PinError,
    },
    #[error("cannot open the pinned {what} at {path}: {reason}")]
    Open {
        what: &'static str,
        path: PathBuf,
        reason: String,
    },
}

/// What a daemon gets when it adopts a predecessor's pins.
pub struct Adopted {
    pub ring: RingBuf<MapData>,
    pub counters: PerCpuArray<MapData, u64>,
    /// The notification filter, for the new daemon's route listeners.
    pub notify: ProgramFd,
    /// The heartbeat, not yet written: what it holds says whether the capture was orphaned.
    pub keepalive: Array<MapData, Keepalive>,
    /// The links, held by this process's fds.
    pub links: Held,
    /// The budget maps.
    pub budgets: super::budget::Budgets,
}

/// A pinned capture's links, held open by the daemon that runs it: while it holds them its
/// programs stay attached whatever happens to the pins.
pub struct Held {
    links: Vec<HeldLink>,
}

struct HeldLink {
    path: PathBuf,
    id: u32,
    _link: FdLink,
}

impl Held {
    fn new(links: Vec<(PathBuf, FdLink)>) -> Result<Self, PinError> {
        let links = links
            .into_iter()
            .map(|(path, link)| {
                let id = link_id(&link, &path)?;
                Ok(HeldLink {
                    path,
                    id,
                    _link: link,
                })
            })
            .collect::<Result<_, PinError>>()?;
        Ok(Self { links })
    }

    /// Whether every pin still holds this daemon's link; the first that does not, when not.
    pub fn check(&self) -> Result<(), PinsLost> {
        for held in &self.links {
            let pinned = PinnedLink::from_pin(&held.path)
                .map_err(|e| e.to_string())
                .and_then(|p| link_id(&FdLink::from(p), &held.path).map_err(|e| e.to_string()));
            match pinned {
                Ok(id) if id == held.id => {}
                Ok(found) => {
                    return Err(PinsLost::Replaced {
                        path: held.path.clone(),
                        found,
                        ours: held.id,
                    })
                }
                Err(reason) => {
                    return Err(PinsLost::Removed {
                        path: held.path.clone(),
                        reason,
                    })
                }
            }
        }
        Ok(())
    }
}

/// The pins no longer hold the running daemon's links: its programs run only while it does.
#[derive(Debug, thiserror::Error)]
pub enum PinsLost {
    #[error("the pinned capture was removed ({path}: {reason}; `routeguard daemon --unpin`?): this daemon's programs run only while it does, and nothing records between it and the next; restart it to pin again", path = path.display())]
    Removed { path: PathBuf, reason: String },
    #[error("{path} holds link {found}, not this daemon's {ours}: another routeguard replaced the pinned capture; this daemon's programs run only while it does", path = path.display())]
    Replaced {
        path: PathBuf,
        found: u32,
        ours: u32,
    },
}

fn link_id(link: &FdLink, path: &Path) -> Result<u32, PinError> {
    link.info()
        .map(|info| info.id())
        .map_err(|e| PinError::Open {
            what: "link",
            path: path.to_path_buf(),
            reason: e.to_string(),
        })
}

/// The notification filter's pin (a program, not a link: it is attached to sockets, which die
/// with the daemon that opened them).
const NOTIFY_PIN: &str = "prog_notify";

/// `<pin_dir>/<tag>`: where this build's capture is pinned.
pub fn dir(pin_dir: &Path, object: &[u8]) -> PathBuf {
    pin_dir.join(format!("v{:016x}", fnv1a(object)))
}

/// FNV-1a, 64 bit: a stable tag for the object's bytes (not a security boundary; bpffs is
/// root's).
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// Makes sure `pin_dir` exists on a bpffs, mounting one on its bpffs root (`/sys/fs/bpf`)
/// when nothing is mounted there.
pub fn prepare(pin_dir: &Path) -> Result<(), PinError> {
    let root = Path::new("/sys/fs/bpf");
    if pin_dir.starts_with(root) && !is_bpffs(root) {
        mount_bpffs(root)?;
    }
    fs::create_dir_all(pin_dir).map_err(|source| PinError::Io {
        path: pin_dir.to_path_buf(),
        source,
    })
}

fn is_bpffs(path: &Path) -> bool {
    let Ok(c) = CString::new(path.as_os_str().as_bytes()) else {
        return false;
    };
    // SAFETY: an all-zero statfs is valid; statfs writes into it and reads the C string.
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: valid C string and a statfs we own.
    unsafe { libc::statfs(c.as_ptr(), &mut st) == 0 && st.f_type as i64 == BPF_FS_MAGIC }
}

fn mount_bpffs(path: &Path) -> Result<(), PinError> {
    let err = |source| PinError::Mount {
        path: path.to_path_buf(),
        source,
    };
    let target = CString::new(path.as_os_str().as_bytes())
        .map_err(|e| err(io::Error::new(io::ErrorKind::InvalidInput, e)))?;
    // SAFETY: valid C strings; no mount data.
    let rc = unsafe {
        libc::mount(
            c"bpf".as_ptr(),
            target.as_ptr(),
            c"bpf".as_ptr(),
            0,
            std::ptr::null(),
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(err(io::Error::last_os_error()))
    }
}

/// Removes the pins of other builds under `pin_dir` (detaching their programs). Returns how
/// many sets were removed.
pub fn remove_others(pin_dir: &Path, keep: &Path) -> Result<usize, PinError> {
    let mut removed = 0;
    let Ok(entries) = fs::read_dir(pin_dir) else {
        return Ok(0);
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path != keep && is_pin_set(&path) {
            tracing::warn!(pins = %path.display(), "removing the capture pinned by another routeguard build; what it held unread is lost");
            remove_set(&path)?;
            removed += 1;
        }
    }
    Ok(removed)
}

/// A directory this module made: `v` and 16 hex digits.
fn is_pin_set(path: &Path) -> bool {
    path.file_name()
        .and_then(|n| n.to_str())
        .and_then(|n| n.strip_prefix('v'))
        .is_some_and(|hex| hex.len() == 16 && hex.bytes().all(|b| b.is_ascii_hexdigit()))
}

fn remove_set(set: &Path) -> Result<(), PinError> {
    fs::remove_dir_all(set).map_err(|source| PinError::Io {
        path: set.to_path_buf(),
        source,
    })
}

/// Removes every pinned capture under `pin_dir`; returns how many sets there were.
pub fn unpin_all(pin_dir: &Path) -> Result<usize, PinError> {
    let mut removed = 0;
    let Ok(entries) = fs::read_dir(pin_dir) else {
        return Ok(0);
    };
    for entry in entries.flatten() {
        if is_pin_set(&entry.path()) {
            remove_set(&entry.path())?;
            removed += 1;
        }
    }
    Ok(removed)
}

/// Adopts the capture pinned in `set`, if a complete one is there: every link and map. Writes
/// this process's tgid into SELF_TGID and forgets which processes the predecessor had seen (so
/// the kernel sends their details again). An incomplete set is removed and `None` returned.
pub fn adopt(set: &Path) -> Result<Option<Adopted>, CaptureError> {
    if !set.is_dir() {
        return Ok(None);
    }
    let links: Option<Vec<(PathBuf, FdLink)>> = PROGRAMS
        .iter()
        .map(|(name, _)| {
            let path = set.join(format!("link_{name}"));
            let link = PinnedLink::from_pin(&path).ok()?;
            Some((path, FdLink::from(link)))
        })
        .collect();
    let complete = MAPS.iter().all(|m| set.join(m).exists()) && set.join(NOTIFY_PIN).exists();
    let Some(links) = links.filter(|_| complete) else {
        tracing::warn!(pins = %set.display(), "incomplete pinned capture; loading afresh");
        remove_set(set)?;
        return Ok(None);
    };
    let open = |name: &'static str| -> Result<Map, CaptureError> {
        let path = set.join(name);
        let data = MapData::from_pin(&path).map_err(|e| PinError::Open {
            what: name,
            path: path.clone(),
            reason: e.to_string(),
        })?;
        Ok(match name {
            "EVENTS" => Map::RingBuf(data),
            "COUNTERS" => Map::PerCpuArray(data),
            "SELF_TGID" | "KEEPALIVE" | "BUDGET_SHARED" | "BUDGET_LIMITS" => Map::Array(data),
            "BUDGET_EXEMPT" => Map::HashMap(data),
            _ => Map::LruHashMap(data),
        })
    };
    let map_err = |name: &'static str| move |source| CaptureError::Map { name, source };
    let ring = RingBuf::try_from(open("EVENTS")?).map_err(map_err("EVENTS"))?;
    let counters = PerCpuArray::try_from(open("COUNTERS")?).map_err(map_err("COUNTERS"))?;
    let mut me: Array<MapData, u32> =
        Array::try_from(open("SELF_TGID")?).map_err(map_err("SELF_TGID"))?;
    me.set(0, std::process::id(), 0)
        .map_err(map_err("SELF_TGID"))?;
    let mut seen: HashMap<MapData, u32, u64> =
        HashMap::try_from(open("TASK_SEEN")?).map_err(map_err("TASK_SEEN"))?;
    let tgids: Vec<u32> = seen.keys().flatten().collect();
    for tgid in tgids {
        // Gone already (LRU eviction, exit) is fine.
        let _ = seen.remove(&tgid);
    }
    let path = set.join(NOTIFY_PIN);
    let notify = SocketFilter::from_pin(&path)
        .and_then(|p| {
            p.fd()
                .and_then(|fd| fd.try_clone().map_err(ProgramError::IOError))
        })
        .map_err(|e| PinError::Open {
            what: "notification filter",
            path: path.clone(),
            reason: e.to_string(),
        })?;
    let keepalive = Array::try_from(open("KEEPALIVE")?).map_err(map_err("KEEPALIVE"))?;
    let budgets = super::budget::Budgets::new(
        HashMap::try_from(open("BUDGETS")?).map_err(map_err("BUDGETS"))?,
        HashMap::try_from(open("BUDGET_EXEMPT")?).map_err(map_err("BUDGET_EXEMPT"))?,
        Array::try_from(open("BUDGET_LIMITS")?).map_err(map_err("BUDGET_LIMITS"))?,
    );
    Ok(Some(Adopted {
        budgets,
        ring,
        counters,
        notify,
        keepalive,
        links: Held::new(links)?,
    }))
}

/// Pins the maps a successor needs and `links` (program name, link) into `set`. bpffs cannot
/// rename, so a set is written in place; a daemon that dies half-way leaves a set that
/// [`adopt`] finds incomplete and removes. The links come back, held (see [`Held`]).
pub fn pin(
    ebpf: &mut Ebpf,
    links: Vec<(&'static str, FdLink)>,
    set: &Path,
) -> Result<Held, PinError> {
    if set.exists() {
        remove_set(set)?;
    }
    fs::create_dir(set).map_err(|source| PinError::Io {
        path: set.to_path_buf(),
        source,
    })?;
    for name in MAPS {
        let path = set.join(name);
        let map = ebpf.map(name).ok_or_else(|| PinError::Open {
            what: "map",
            path: path.clone(),
            reason: format!("the eBPF object has no map {name}"),
        })?;
        map.pin(&path).map_err(|source| PinError::Pin {
            what: "a map",
            path: path.clone(),
            source,
        })?;
    }
    let path = set.join(NOTIFY_PIN);
    let notify: &mut SocketFilter = ebpf
        .program_mut(NOTIFY_FILTER)
        .and_then(|p| p.try_into().ok())
        .ok_or_else(|| PinError::Open {
            what: "program",
            path: path.clone(),
            reason: format!("the eBPF object has no socket filter {NOTIFY_FILTER}"),
        })?;
    notify.pin(&path).map_err(|source| PinError::Pin {
        what: "the notification filter",
        path: path.clone(),
        source,
    })?;
    let mut held = Vec::new();
    for (name, link) in links {
        let path = set.join(format!("link_{name}"));
        // The pin keeps the link (and so the program) alive once this fd is closed.
        let pinned = link.pin(&path).map_err(|source| PinError::Pin {
            what: "a link",
            path: path.clone(),
            source,
        })?;
        held.push((path, FdLink::from(pinned)));
    }
    Held::new(held)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tag_follows_the_object() {
        let a = dir(Path::new("/sys/fs/bpf/routeguard"), b"one object");
        let b = dir(Path::new("/sys/fs/bpf/routeguard"), b"another object");
        assert_ne!(a, b);
        assert!(is_pin_set(&a), "{}", a.display());
        assert!(!is_pin_set(Path::new("/sys/fs/bpf/routeguard/v1234")));
    }
}
