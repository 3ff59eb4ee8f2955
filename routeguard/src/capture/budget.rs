//! Budgets in the kernel (`routeguard_common::budget`): what the programs did not copy, read
//! back as summaries; and the namespaces exempt from budgets, written for the programs.

use std::{
    collections::HashMap as StdHashMap,
    fs,
    os::unix::fs::MetadataExt as _,
    path::{Path, PathBuf},
};

use aya::maps::{Array, HashMap, MapData};
use routeguard_common::{Budget, BudgetKey, BudgetLimits};

use super::CaptureError;

/// Default `[capture] budget_rate`: bytes of removal requests a second per (namespace, cgroup)
/// whose requests are budgeted. About 650 route deletions of ~100 bytes a second, or 2,000
/// refused rule deletions of 32: more than a pod's own network management makes, 1/64 of a
/// second of what one unprivileged `sendmsg` loop sends.
pub const DEFAULT_RATE: u32 = 64 << 10;
/// Default `[capture] budget_burst`: what such a sender may send at once after a quiet spell
/// (about 2,600 route deletions). All budgeted senders together get four times the rate and
/// the burst (`SHARED_FACTOR`): 1 MiB at once, an eighth of the daemon's default 8 MiB ring.
pub const DEFAULT_BURST: u32 = 256 << 10;

/// `PROC_NET_INIT_INO` (include/linux/proc_ns.h): the initial namespace's fixed inode on
/// kernels that give it one.
const PROC_NET_INIT_INO: u64 = 0xEFFF_FFF9;

/// The initial network namespace's inode, for the programs: the file `ROUTEGUARD_HOST_NETNS`
/// names when set (a DaemonSet pod's view of the node), else `/proc/1/ns/net` — or, where pid 1's
/// namespace files are closed even to root (a container's or VM's init), our own when it has
/// the fixed initial inode. 0 (none exempt by namespace: every privileged request outside the
/// exempt list is budgeted) when none of these can be read, with a warning.
pub fn host_netns_ino() -> u32 {
    let path = std::env::var_os(crate::netlink::netns::HOST_NETNS_ENV)
        .filter(|p| !p.is_empty())
        .map_or_else(|| PathBuf::from("/proc/1/ns/net"), PathBuf::from);
    match fs::metadata(&path) {
        Ok(meta) => meta.ino() as u32,
        Err(_) if fs::metadata("/proc/self/ns/net").is_ok_and(|m| m.ino() == PROC_NET_INIT_INO) => {
            PROC_NET_INIT_INO as u32
        }
        Err(err) => {
            tracing::warn!(path = %path.display(), %err, "cannot read the initial network namespace; removals there are budgeted like any other namespace's");
            0
        }
    }
}

/// Suppressed requests of one (namespace, cgroup) since the previous look.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Suppression {
    pub netns_ino: u32,
    pub cgroup_id: u64,
    /// uid and tgid of the last sender suppressed.
    pub uid: u32,
    pub pid: u32,
    /// Requests (sends) not copied, their bytes, and how many of them rtnetlink was predicted
    /// to refuse.
    pub count: u64,
    pub bytes: u64,
    pub refused: u64,
    /// First and last suppression in this summary (monotonic ns). `first_ns` is exact for a
    /// sender's first summary; after that it is the first suppression the kernel saw after the
    /// previous summary's last, at the earliest (the kernel keeps one first time per sender).
    pub first_ns: u64,
    pub last_ns: u64,
}

#[derive(Clone, Copy, Default)]
struct Reported {
    count: u64,
    bytes: u64,
    refused: u64,
    last_ns: u64,
}

/// The programs' budget maps.
pub struct Budgets {
    counts: HashMap<MapData, BudgetKey, Budget>,
    exempt: HashMap<MapData, u32, u8>,
    limits: Array<MapData, BudgetLimits>,
    reported: StdHashMap<BudgetKey, Reported>,
}

impl Budgets {
    pub fn new(
        counts: HashMap<MapData, BudgetKey, Budget>,
        exempt: HashMap<MapData, u32, u8>,
        limits: Array<MapData, BudgetLimits>,
    ) -> Self {
        Self {
            counts,
            exempt,
            limits,
            reported: StdHashMap::new(),
        }
    }

    /// What was suppressed since the previous call, one summary per sender that had any.
    /// A sender the kernel's LRU map dropped is forgotten here too.
    pub fn take(&mut self) -> Vec<Suppression> {
        let entries: Vec<(BudgetKey, Budget)> = self.counts.iter().flatten().collect();
        grown(&mut self.reported, entries)
    }

    /// Gives the running programs a new rate and burst (bytes; rate 0: no budgets). A bucket
    /// keeps its tokens, clipped to the new burst at its next refill.
    pub fn set_limits(&mut self, rate: u32, burst: u32) -> Result<(), CaptureError> {
        let limits = BudgetLimits {
            rate,
            burst,
            set: 1,
            _pad: 0,
        };
        self.limits
            .set(0, limits, 0)
            .map_err(|source| CaptureError::Map {
                name: "BUDGET_LIMITS",
                source,
            })
    }

    /// Makes `inodes` (the namespaces protect policies name) the exempt ones.
    pub fn set_exempt(&mut self, inodes: &[u32]) -> Result<(), CaptureError> {
        let err = |source| CaptureError::Map {
            name: "BUDGET_EXEMPT",
            source,
        };
        let old: Vec<u32> = self.exempt.keys().flatten().collect();
        for ino in old.iter().filter(|o| !inodes.contains(o)) {
            self.exempt.remove(ino).map_err(err)?;
        }
        for ino in inodes.iter().filter(|i| !old.contains(i)) {
            self.exempt.insert(ino, 1, 0).map_err(err)?;
        }
        Ok(())
    }
}

/// What grew in `entries` since `reported` (which becomes `entries`' counts), oldest first.
fn grown(
    reported: &mut StdHashMap<BudgetKey, Reported>,
    entries: Vec<(BudgetKey, Budget)>,
) -> Vec<Suppression> {
    let mut out = Vec::new();
    let mut live = StdHashMap::new();
    for (key, b) in entries {
        let was = reported.get(&key).copied().unwrap_or_default();
        live.insert(
            key,
            Reported {
                count: b.suppressed,
                bytes: b.suppressed_bytes,
                refused: b.refused,
                last_ns: b.last_ns,
            },
        );
        // A count lower than reported: the entry was evicted and made again.
        let was = if b.suppressed < was.count {
            Reported::default()
        } else {
            was
        };
        if b.suppressed == was.count {
            continue;
        }
        out.push(Suppression {
            netns_ino: key.netns_ino,
            cgroup_id: key.cgroup_id,
            uid: b.uid,
            pid: b.pid,
            count: b.suppressed - was.count,
            bytes: b.suppressed_bytes.saturating_sub(was.bytes),
            refused: b.refused.saturating_sub(was.refused),
            first_ns: b.first_ns.max(was.last_ns),
            last_ns: b.last_ns,
        });
    }
    *reported = live;
    out.sort_by_key(|s| s.first_ns);
    out
}

/// How often what the budgets suppressed is summarised.
pub const SUMMARY_EVERY: std::time::Duration = std::time::Duration::from_secs(1);

/// Makes the namespaces `named` (protect entries' `netns`) the exempt ones; a failure is
/// logged (their removals are then budgeted like others').
pub fn exempt<'a>(budgets: Option<&mut Budgets>, named: impl Iterator<Item = &'a str>) {
    let inodes: Vec<u32> = named
        .filter_map(|n| netns_inode(n, Path::new("/run/netns")))
        .collect();
    if let Some(budgets) = budgets {
        if let Err(err) = budgets.set_exempt(&inodes) {
            tracing::warn!(%err, "cannot exempt the protected namespaces from budgets; their removals are budgeted like others'");
        }
    }
}

/// The inode of the namespace a protect entry's `netns` names: `host` (the initial one, exempt
/// anyway), a name under `/run/netns`, or an inode number. `None` for a name not (yet) there.
pub fn netns_inode(named: &str, run_netns: &Path) -> Option<u32> {
    if named == "host" {
        return None;
    }
    if let Ok(ino) = named.parse::<u32>() {
        return Some(ino);
    }
    fs::metadata(run_netns.join(named))
        .ok()
        .map(|m| m.ino() as u32)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn budget(suppressed: u64, refused: u64, first_ns: u64, last_ns: u64) -> Budget {
        Budget {
            suppressed,
            suppressed_bytes: suppressed * 16_384,
            refused,
            first_ns,
            last_ns,
            uid: 65_534,
            pid: 42,
            ..Budget::default()
        }
    }

    #[test]
    fn summaries_say_what_grew_since_the_last_look() {
        let key = BudgetKey {
            netns_ino: 7,
            _pad: 0,
            cgroup_id: 99,
        };
        let quiet = BudgetKey {
            netns_ino: 8,
            _pad: 0,
            cgroup_id: 1,
        };
        let mut reported = StdHashMap::new();
        let first = grown(
            &mut reported,
            vec![(key, budget(10, 10, 100, 200)), (quiet, budget(0, 0, 0, 0))],
        );
        assert_eq!(
            first,
            vec![Suppression {
                netns_ino: 7,
                cgroup_id: 99,
                uid: 65_534,
                pid: 42,
                count: 10,
                bytes: 163_840,
                refused: 10,
                first_ns: 100,
                last_ns: 200,
            }]
        );
        // Nothing grew: nothing to say.
        assert!(grown(&mut reported, vec![(key, budget(10, 10, 100, 200))]).is_empty());
        // Grew by 5: the next summary counts 5, from no earlier than the last one's end.
        let next = grown(&mut reported, vec![(key, budget(15, 12, 100, 400))]);
        assert_eq!(
            (
                next[0].count,
                next[0].refused,
                next[0].first_ns,
                next[0].last_ns
            ),
            (5, 2, 200, 400)
        );
        // Evicted and made again (counts restarted): counted from zero.
        let again = grown(&mut reported, vec![(key, budget(3, 3, 500, 600))]);
        assert_eq!((again[0].count, again[0].first_ns), (3, 500));
    }

    #[test]
    fn protect_netns_names_an_inode() {
        let dir = std::env::temp_dir().join(format!("routeguard-budget-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        fs::write(dir.join("blue"), b"").unwrap();
        let ino = fs::metadata(dir.join("blue")).unwrap().ino() as u32;
        assert_eq!(netns_inode("blue", &dir), Some(ino));
        assert_eq!(netns_inode("4026532456", &dir), Some(4_026_532_456));
        assert_eq!(netns_inode("host", &dir), None);
        assert_eq!(netns_inode("absent", &dir), None);
        fs::remove_dir_all(&dir).unwrap();
    }
}
