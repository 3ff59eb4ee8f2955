//! Kernel capture: loads the eBPF programs with offsets from the running kernel's BTF, attaches
//! them, and hands out raw records, loss counters and the programs' own log lines.

pub mod budget;
pub mod ebpf_log;
pub mod keepalive;
mod kfunc;
pub mod pin;
pub mod probe;
mod programs;
pub mod select;

use std::{path::Path, time::Duration};

use aya::{
    maps::{Array, HashMap, MapData, PerCpuArray, RingBuf},
    programs::ProgramFd,
    Ebpf, EbpfLoader,
};
use routeguard_common::{
    counter, CaptureConfig, KernelFunctionConfig, SyscallNumbers, OFFSET_MISSING,
};

use crate::kernel::{
    btf::{self, BtfError, VMLINUX_BTF},
    btf_kfunc,
};

pub use keepalive::{Keepalive, Orphaned};
pub use select::CapturePath;

pub use programs::{Hook, EXEC_PROGRAMS, PROGRAMS};

/// The eBPF object built by build.rs.
static OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/routeguard"));

#[derive(Debug, thiserror::Error)]
pub enum CaptureError {
    #[error("this routeguard was built without its eBPF programs (AYA_BUILD_SKIP was set); rebuild with `cargo xtask build`")]
    NoObject,
    #[error(transparent)]
    Btf(#[from] BtfError),
    #[error("the running kernel's BTF lacks what is needed to recognise netlink sockets: {0}; the syscall capture path cannot run on this kernel")]
    Offsets(String),
    #[error("loading the eBPF object failed: {0}")]
    Load(#[source] Box<aya::EbpfError>),
    #[error("the eBPF object has no map `{0}`")]
    NoMap(&'static str),
    #[error(transparent)]
    Pin(#[from] pin::PinError),
    #[error("cannot poll the ring buffer: {0}")]
    Poll(#[source] std::io::Error),
    #[error("map `{name}`: {source}")]
    Map {
        name: &'static str,
        source: aya::maps::MapError,
    },
    #[error("the running kernel's BTF lacks what the kernel-function path reads: {0}")]
    KernelOffsets(String),
    #[error("kernel-function program `{name}` on `{function}`: {source}")]
    KernelProgram {
        name: &'static str,
        function: &'static str,
        source: Box<aya::programs::ProgramError>,
    },
    #[error("cannot read the kernel's BTF for fentry/fexit: {0}")]
    AyaBtf(String),
    #[error("socket filter `{name}`: {source}")]
    Filter {
        name: &'static str,
        source: Box<aya::programs::ProgramError>,
    },
    #[error("program `{name}` ({hook:?}): {source}")]
    Program {
        name: &'static str,
        hook: Hook,
        source: Box<aya::programs::ProgramError>,
    },
}

/// How to set up capture.
#[derive(Clone, Debug)]
pub struct Options {
    /// Ring buffer size in bytes (a power of two, multiple of the page size).
    pub ring_bytes: u32,
    /// Wake userspace once this many bytes wait; 0 wakes it on every record.
    pub wakeup_bytes: u32,
    /// Pin the capture here (the daemon), or adopt the one a predecessor pinned; see [`pin`].
    pub pin_dir: Option<std::path::PathBuf>,
    /// Which path runs (see [`select`]).
    pub path: CapturePath,
    /// With the kernel-function path: also run its request hooks (`rtnetlink_rcv_msg`,
    /// `sock_ioctl`) and the exec tracepoint, whose records enrich its events.
    pub syscall_programs: bool,
    /// `--capture auto`: when the kernel-function programs fail to load or attach (a verifier
    /// or BTF surprise on some kernel), start the syscall path instead, saying why.
    pub fallback: bool,
    /// A pinned capture no daemon has read for this long stops recording ([`keepalive`]);
    /// zero: never.
    pub orphan_after: Duration,
    /// Budgets of removal requests ([`budget`]): bytes a second per (namespace, cgroup), 0
    /// turning them off, and the burst.
    pub budget_rate: u32,
    pub budget_burst: u32,
    /// Deny entries for the BPF LSM program (`crate::prevent`); `None` attaches none.
    pub deny: Option<crate::prevent::Plan>,
}

/// Default `capture.orphan_after`: long enough for any restart, upgrade or reboot of a daemon,
/// short enough that a forgotten capture stops costing the same afternoon.
pub const DEFAULT_ORPHAN_AFTER: Duration = Duration::from_secs(600);

impl Default for Options {
    fn default() -> Self {
        Self {
            ring_bytes: 16 << 20,
            wakeup_bytes: 256 << 10,
            pin_dir: None,
            path: CapturePath::Syscall,
            syscall_programs: true,
            fallback: false,
            orphan_after: DEFAULT_ORPHAN_AFTER,
            budget_rate: budget::DEFAULT_RATE,
            budget_burst: budget::DEFAULT_BURST,
            deny: None,
        }
    }
}

/// Records lost or cut short in the kernel, summed over CPUs. Each record the ring could not
/// take is counted once, under the cause its kind says (`routeguard_common::counter`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Losses {
    /// Records of removals dropped because the ring buffer was full: events never seen.
    pub ring_full: u64,
    /// Requests whose bytes were longer than the copy limit.
    pub truncated: u64,
    /// Reads of process memory that failed mid-copy.
    pub read_failed: u64,
    /// Process-detail records dropped at a full ring (the events still arrive, with /proc
    /// fallbacks).
    pub task_lost: u64,
    /// Replies (acks, ioctl results) dropped at a full ring (their events still arrive, with
    /// outcome `unknown`).
    pub ack_lost: u64,
    /// Deletion notifications dropped at a full ring (their requests' events still arrive).
    pub notify_lost: u64,
    /// Removal requests over their sender's budget, not copied ([`budget`]): predicted to be
    /// refused by rtnetlink, and privileged ones in other namespaces. Not losses: counted and
    /// summarised (`suppressed`), by design.
    pub suppressed_refused: u64,
    pub suppressed_namespace: u64,
}

impl Losses {
    /// Every record the ring could not take, whatever it carried.
    pub fn ring_records(&self) -> u64 {
        self.ring_full + self.task_lost + self.ack_lost + self.notify_lost
    }
}

pub struct Capture {
    /// Programs attached, for the start-up line (0 when adopted from pins).
    pub programs: usize,
    // Owns the programs and their links: dropping it detaches everything not pinned. `None`
    // when the programs were adopted from pins.
    _ebpf: Option<Ebpf>,
    ring: RingBuf<MapData>,
    counters: PerCpuArray<MapData, u64>,
    /// The programs' log ring, when they were loaded with logging on (see [`ebpf_log`]).
    logs: Option<ebpf_log::Logs>,
    /// The capture was adopted from a predecessor's pins (its ring may hold what happened
    /// while no daemon ran).
    pub adopted: bool,
    /// The capture is pinned (adopted or pinned now): it outlives this process.
    pub pinned: bool,
    /// The syscall path's socket filter for routeguard's own route listeners (see
    /// [`Capture::notify_filter`]).
    notify: Option<ProgramFd>,
    /// A pinned capture's heartbeat, for the ring drain.
    keepalive: Option<Keepalive>,
    /// A pinned capture's links, held by this process.
    links: Option<pin::Held>,
    /// The adopted capture had stopped recording: no daemon read it for `orphan_after`.
    pub orphaned: Option<Orphaned>,
    /// The budget maps, for the summaries of what they suppressed.
    budgets: Option<budget::Budgets>,
    /// Whether the deny entries' LSM program runs.
    pub prevention: crate::prevent::Status,
}

impl CaptureError {
    /// The kernel-function path could not start (the syscall path may still).
    pub fn is_kernel_function(&self) -> bool {
        matches!(
            self,
            Self::KernelProgram { .. } | Self::KernelOffsets(_) | Self::AyaBtf(_)
        )
    }
}

impl Capture {
    /// Resolves offsets, loads and attaches every program. Fails as a whole: nothing stays
    /// attached when one step fails.
    pub fn start(options: &Options) -> Result<Self, CaptureError> {
        if OBJECT.is_empty() {
            return Err(CaptureError::NoObject);
        }
        let pin_dir = match (&options.pin_dir, options.path) {
            (Some(dir), CapturePath::Syscall) => dir,
            (Some(pin_dir), CapturePath::KernelFunction) => {
                // fentry/fexit links are not pinned yet: a restart of a kernel-function daemon
                // misses what happens while none runs.
                tracing::info!(
                    "capture=kernel-function is not pinned; pinning covers the syscall path only"
                );
                let capture = Self::load(options, None)?;
                // Once this path runs (not before: `auto` falls back to the syscall path, which
                // adopts them), a syscall capture pinned by an earlier run would go on recording
                // beside it, at the cost of every syscall.
                remove_stale(pin_dir)?;
                return Ok(capture);
            }
            (None, _) => return Self::load(options, None),
        };
        if let Err(err) = pin::prepare(pin_dir) {
            // Capture without pins beats no capture: only a restart loses events then.
            tracing::warn!(%err, "cannot pin the capture; removals made while no daemon runs will not be seen");
            return Self::load(options, None);
        }
        let set = pin::dir(pin_dir, OBJECT);
        pin::remove_others(pin_dir, &set)?;
        if let Some(adopted) = pin::adopt(&set)? {
            tracing::info!(pins = %set.display(), "adopted the pinned capture");
            // Their log ring is not pinned: the pinned programs log at the level of the
            // routeguard that loaded them, which this one cannot change, so it does not read them.
            tracing::debug!("the adopted programs' own log lines are not read (they keep the log level they were loaded with; `routeguard daemon --unpin` and a restart load them at this one's)");
            let mut keepalive = Keepalive::new(adopted.keepalive, options.orphan_after);
            let orphaned = keepalive.orphaned()?;
            keepalive.beat()?;
            return Ok(Self {
                programs: 0,
                _ebpf: None,
                ring: adopted.ring,
                counters: adopted.counters,
                logs: None,
                adopted: true,
                pinned: true,
                notify: Some(adopted.notify),
                keepalive: Some(keepalive),
                links: Some(adopted.links),
                orphaned,
                budgets: Some(adopted.budgets),
                prevention: match &options.deny {
                    None => crate::prevent::Status::Off,
                    Some(_) => crate::prevent::Status::Unavailable(
                        "a pinned capture was adopted; restart with `routeguard daemon --unpin` \
                         to load prevention"
                            .to_string(),
                    ),
                },
            });
        }
        Self::load(options, Some(&set))
    }

    /// Loads and attaches afresh; with `pin_to`, pins the links and maps there.
    fn load(options: &Options, pin_to: Option<&Path>) -> Result<Self, CaptureError> {
        let kernel_function = options.path == CapturePath::KernelFunction;
        let mut syscall = !kernel_function || options.syscall_programs;
        // Parsed once for both paths: under emulation (the VM tests) each parse of the kernel's
        // 5 MB of BTF takes seconds.
        let kernel_btf = btf_rs::Btf::from_file(VMLINUX_BTF).map_err(|source| BtfError::Read {
            path: VMLINUX_BTF.to_string(),
            source,
        })?;
        let resolved = btf::resolve_with(&kernel_btf);
        let fatal: Vec<String> = resolved
            .missing
            .iter()
            .filter(|m| btf::REQUIRED.contains(&m.field))
            .map(|m| format!("{} ({})", m.field, m.reason))
            .collect();
        if !fatal.is_empty() {
            if !kernel_function {
                return Err(CaptureError::Offsets(fatal.join("; ")));
            }
            tracing::warn!(missing = %fatal.join("; "), "the request hooks cannot read requests here; kernel-function events carry only the kernel's copy of each request header");
            syscall = false;
        }
        for m in &resolved.missing {
            tracing::warn!(field = m.field, reason = %m.reason, "kernel offset unavailable; that enrichment is off");
        }
        let config = CaptureConfig {
            offsets: resolved.offsets,
            syscalls: syscall_numbers(),
            wakeup_bytes: options.wakeup_bytes,
            floor: u32::from(floor_requested()),
            notify_routes: u32::from(!kernel_function),
            host_netns_ino: budget::host_netns_ino(),
            budget_rate: options.budget_rate,
            budget_burst: options.budget_burst,
            _pad: 0,
        };
        let mut kconfig = KernelFunctionConfig::DEFAULT;
        if kernel_function {
            kconfig.offsets = kernel_function_offsets(&kernel_btf)?;
            kconfig.wakeup_bytes = options.wakeup_bytes;
        }
        let aya_btf = if kernel_function {
            Some(aya::Btf::from_sys_fs().map_err(|e| CaptureError::AyaBtf(e.to_string()))?)
        } else {
            None
        };
        // Set explicitly, off included: the programs' default is to log everything.
        let log_level = ebpf_log::level();
        let log_global = ebpf_log::global(log_level);
        let mut loader = EbpfLoader::new();
        if let Some(btf) = &aya_btf {
            loader.btf(Some(btf));
        }
        let mut ebpf = loader
            .override_global("CONFIG", &config, true)
            .override_global("KCONFIG", &kconfig, true)
            .override_global(aya_log::LEVEL, &log_global, true)
            .map_max_entries("EVENTS", options.ring_bytes)
            .load(OBJECT)
            .map_err(|e| CaptureError::Load(Box::new(e)))?;
        let logs = ebpf_log::Logs::take(&mut ebpf, log_level);
        if let Some(level) = log_level {
            tracing::debug!(?level, "the programs log rare conditions at this level");
        }
        let mut me: Array<&mut MapData, u32> = ebpf
            .map_mut("SELF_TGID")
            .ok_or(CaptureError::NoMap("SELF_TGID"))?
            .try_into()
            .map_err(|source| CaptureError::Map {
                name: "SELF_TGID",
                source,
            })?;
        me.set(0, std::process::id(), 0)
            .map_err(|source| CaptureError::Map {
                name: "SELF_TGID",
                source,
            })?;
        let mut programs = 0;
        let mut held = None;
        if let Some(btf) = &aya_btf {
            // The hooks name a request by its sender's socket: without those offsets (logged
            // above) they would see nothing, so they are not attached at all.
            let sender_known = kconfig.offsets.skb_cb != OFFSET_MISSING
                && kconfig.offsets.nlcb_sk != OFFSET_MISSING;
            let requests = if syscall && sender_known {
                kfunc::attach_requests(&mut ebpf, btf)
            } else {
                0
            };
            programs += requests;
            // With every request hook in place, `fib_table_delete`'s own pair is redundant
            // (they say which delete a process asked for): two program runs per deletion fewer.
            let requests_heard = requests == kfunc::REQUEST_PROGRAMS.len();
            programs += kfunc::attach_all(&mut ebpf, btf, requests_heard)?;
        }
        let notify = Some(programs::load_notify_filter(&mut ebpf)?);
        if syscall {
            // The kernel-function path hears requests in the kernel (above): of the syscall
            // path's programs it needs only the exec tracepoint, not the hooks on every syscall.
            let list = if kernel_function {
                EXEC_PROGRAMS
            } else {
                PROGRAMS
            };
            match programs::attach_all(&mut ebpf, list, pin_to.is_some()) {
                Ok(links) => {
                    programs += list.len();
                    if let Some(set) = pin_to {
                        held = Some(pin::pin(&mut ebpf, links, set)?);
                        tracing::info!(pins = %set.display(), "capture pinned: it keeps recording while no daemon runs");
                    }
                }
                // Alongside the kernel-function path it only enriches: run without it.
                Err(err) if kernel_function => tracing::warn!(
                    %err,
                    "the exec tracepoint did not load; actors' command lines come from /proc only"
                ),
                Err(err) => return Err(err),
            }
        }
        // Prevention is an addition: a kernel that refuses it still captures and restores.
        let prevention = match &options.deny {
            None => crate::prevent::Status::Off,
            Some(plan) => match crate::prevent::attach(&mut ebpf, plan) {
                Ok(()) => {
                    programs += 1;
                    crate::prevent::Status::Active {
                        entries: plan.selectors.len(),
                        dry_run: plan.dry_run,
                    }
                }
                Err(why) => {
                    tracing::warn!(reason = %why, "prevention is unavailable; deny entries protect by restore");
                    crate::prevent::Status::Unavailable(why)
                }
            },
        };
        let ring = take_map(&mut ebpf, "EVENTS", RingBuf::try_from)?;
        let counters = take_map(&mut ebpf, "COUNTERS", PerCpuArray::try_from)?;
        let budgets = budget::Budgets::new(
            take_map(&mut ebpf, "BUDGETS", HashMap::try_from)?,
            take_map(&mut ebpf, "BUDGET_EXEMPT", HashMap::try_from)?,
            take_map(&mut ebpf, "BUDGET_LIMITS", Array::try_from)?,
        );
        // Only a pinned capture can be orphaned: an unpinned one dies with its reader, and its
        // programs find `orphan_after` 0 (never).
        let keepalive = match held {
            Some(_) => {
                let map = take_map(&mut ebpf, "KEEPALIVE", Array::try_from)?;
                let mut keepalive = Keepalive::new(map, options.orphan_after);
                keepalive.beat()?;
                Some(keepalive)
            }
            None => None,
        };
        Ok(Self {
            programs,
            _ebpf: Some(ebpf),
            ring,
            counters,
            logs,
            adopted: false,
            pinned: held.is_some(),
            notify,
            keepalive,
            links: held,
            orphaned: None,
            budgets: Some(budgets),
            prevention,
        })
    }

    /// The socket filter the route mirror attaches to its listeners: it copies the kernel's
    /// deletion notifications into the ring before a socket could drop them (`notify` in the
    /// eBPF programs; on the kernel-function path rule deletions only).
    pub fn notify_filter(&self) -> Option<&ProgramFd> {
        self.notify.as_ref()
    }

    /// A pinned capture's heartbeat, for the thread that reads the ring.
    pub fn take_keepalive(&mut self) -> Option<Keepalive> {
        self.keepalive.take()
    }

    /// A pinned capture's links, held by this process (see [`pin::Held`]).
    pub fn take_links(&mut self) -> Option<pin::Held> {
        self.links.take()
    }

    /// The budget maps ([`budget`]).
    pub fn take_budgets(&mut self) -> Option<budget::Budgets> {
        self.budgets.take()
    }

    /// The programs' log ring, for a [`ebpf_log::Reader`]; `None` when they do not log.
    pub fn take_logs(&mut self) -> Option<ebpf_log::Logs> {
        self.logs.take()
    }

    /// The ring buffer (to poll and read), the loss counters (which keep the programs loaded)
    /// and the notification filter.
    pub fn split(self) -> (RingBuf<MapData>, Counters, Option<ProgramFd>) {
        (
            self.ring,
            Counters {
                map: self.counters,
                _ebpf: self._ebpf,
            },
            self.notify,
        )
    }
}

/// The per-CPU loss counters (and the loaded programs, which must outlive the ring's reader).
pub struct Counters {
    map: PerCpuArray<MapData, u64>,
    _ebpf: Option<Ebpf>,
}

impl Counters {
    pub fn read(&self) -> Losses {
        let sum =
            |index: u32| -> u64 { self.map.get(&index, 0).map(|v| v.iter().sum()).unwrap_or(0) };
        Losses {
            ring_full: sum(counter::RINGBUF_FULL),
            truncated: sum(counter::TRUNCATED),
            read_failed: sum(counter::READ_FAILED),
            task_lost: sum(counter::TASK_LOST),
            ack_lost: sum(counter::ACK_LOST),
            notify_lost: sum(counter::NOTIFY_LOST),
            suppressed_refused: sum(counter::SUPPRESSED_REFUSED),
            suppressed_namespace: sum(counter::SUPPRESSED_NAMESPACE),
        }
    }
}

/// Removes the syscall path's pins a daemon left under `pin_dir` (their programs detach).
fn remove_stale(pin_dir: &Path) -> Result<(), CaptureError> {
    let removed = pin::unpin_all(pin_dir)?;
    if removed > 0 {
        tracing::warn!(pins = %pin_dir.display(), sets = removed, "removed the syscall capture an earlier daemon pinned: this one runs the kernel-function path, which is not pinned");
    }
    Ok(())
}

/// The kernel-function path's offsets; a missing optional one is logged, a required one fails.
fn kernel_function_offsets(
    btf: &btf_rs::Btf,
) -> Result<routeguard_common::KernelFunctionOffsets, CaptureError> {
    let resolved = btf_kfunc::resolve_with(btf);
    let fatal: Vec<String> = resolved
        .missing
        .iter()
        .filter(|m| btf_kfunc::REQUIRED.contains(&m.field))
        .map(|m| format!("{} ({})", m.field, m.reason))
        .collect();
    if !fatal.is_empty() {
        return Err(CaptureError::KernelOffsets(fatal.join("; ")));
    }
    for m in &resolved.missing {
        tracing::warn!(field = m.field, reason = %m.reason, "kernel-function offset unavailable; that field is left out of events");
    }
    Ok(resolved.offsets)
}

/// Set for `cargo xtask bench overhead`'s floor arm: every program attaches where it always
/// does and returns at once, so the bench can tell the hooks' own cost from routeguard's.
pub const BENCH_FLOOR_ENV: &str = "ROUTEGUARD_BENCH_FLOOR";

fn floor_requested() -> bool {
    let on = std::env::var_os(BENCH_FLOOR_ENV).is_some_and(|v| v == "1");
    if on {
        tracing::warn!("{BENCH_FLOOR_ENV}=1: every program returns at once; nothing is recorded");
    }
    on
}

/// This architecture's syscall numbers, from libc.
#[cfg(target_arch = "x86_64")]
fn syscall_numbers() -> SyscallNumbers {
    let n = |nr: libc::c_long| nr as u32;
    SyscallNumbers {
        sendmsg: n(libc::SYS_sendmsg),
        sendto: n(libc::SYS_sendto),
        sendmmsg: n(libc::SYS_sendmmsg),
        write: n(libc::SYS_write),
        writev: n(libc::SYS_writev),
        ioctl: n(libc::SYS_ioctl),
        recvmsg: n(libc::SYS_recvmsg),
        recvfrom: n(libc::SYS_recvfrom),
        recvmmsg: n(libc::SYS_recvmmsg),
        read: n(libc::SYS_read),
        // __USER_CS (arch/x86/include/asm/segment.h): GDT entry 6, RPL 3.
        user64_cs: 0x33,
    }
}

/// Other architectures: the BTF check above already refused (no x86 `pt_regs` members).
#[cfg(not(target_arch = "x86_64"))]
fn syscall_numbers() -> SyscallNumbers {
    SyscallNumbers::NONE
}

fn take_map<T>(
    ebpf: &mut Ebpf,
    name: &'static str,
    convert: impl FnOnce(aya::maps::Map) -> Result<T, aya::maps::MapError>,
) -> Result<T, CaptureError> {
    let map = ebpf.take_map(name).ok_or(CaptureError::NoMap(name))?;
    convert(map).map_err(|source| CaptureError::Map { name, source })
}
