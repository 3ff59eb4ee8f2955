//! Kernel capture: loads the eBPF programs with offsets from the running kernel's BTF, attaches
//! them, and hands out raw records and loss counters.

pub mod pin;
pub mod probe;
mod programs;
pub mod select;

use std::path::Path;

use aya::{
    maps::{Array, MapData, PerCpuArray, RingBuf},
    Ebpf, EbpfLoader,
};
use routeguard_common::{counter, CaptureConfig, SyscallNumbers};

use crate::kernel::btf::{self, BtfError, VMLINUX_BTF};

pub use programs::{Hook, PROGRAMS};

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
}

impl Default for Options {
    fn default() -> Self {
        Self {
            ring_bytes: 16 << 20,
            wakeup_bytes: 256 << 10,
            pin_dir: None,
        }
    }
}

/// Records lost or cut short in the kernel, summed over CPUs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Losses {
    /// Records dropped because the ring buffer was full: events never seen.
    pub ring_full: u64,
    /// Requests whose bytes were longer than the copy limit.
    pub truncated: u64,
    /// Reads of process memory that failed mid-copy.
    pub read_failed: u64,
    /// Process-detail records dropped (the events still arrive, with /proc fallbacks).
    pub task_lost: u64,
}

pub struct Capture {
    // Owns the programs and their links: dropping it detaches everything not pinned. `None`
    // when the programs were adopted from pins.
    _ebpf: Option<Ebpf>,
    ring: RingBuf<MapData>,
    counters: PerCpuArray<MapData, u64>,
    /// The capture was adopted from a predecessor's pins (its ring may hold what happened
    /// while no daemon ran).
    pub adopted: bool,
    /// The capture is pinned (adopted or pinned now): it outlives this process.
    pub pinned: bool,
}

impl Capture {
    /// Resolves offsets, loads and attaches every program. Fails as a whole: nothing stays
    /// attached when one step fails.
    pub fn start(options: &Options) -> Result<Self, CaptureError> {
        if OBJECT.is_empty() {
            return Err(CaptureError::NoObject);
        }
        let Some(pin_dir) = &options.pin_dir else {
            return Self::load(options, None);
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
            return Ok(Self {
                _ebpf: None,
                ring: adopted.ring,
                counters: adopted.counters,
                adopted: true,
                pinned: true,
            });
        }
        Self::load(options, Some(&set))
    }

    /// Loads and attaches afresh; with `pin_to`, pins the links and maps there.
    fn load(options: &Options, pin_to: Option<&Path>) -> Result<Self, CaptureError> {
        let resolved = btf::resolve(Path::new(VMLINUX_BTF))?;
        let fatal: Vec<String> = resolved
            .missing
            .iter()
            .filter(|m| btf::REQUIRED.contains(&m.field))
            .map(|m| format!("{} ({})", m.field, m.reason))
            .collect();
        if !fatal.is_empty() {
            return Err(CaptureError::Offsets(fatal.join("; ")));
        }
        for m in &resolved.missing {
            tracing::warn!(field = m.field, reason = %m.reason, "kernel offset unavailable; that enrichment is off");
        }
        let config = CaptureConfig {
            offsets: resolved.offsets,
            syscalls: syscall_numbers(),
            wakeup_bytes: options.wakeup_bytes,
        };
        let mut ebpf = EbpfLoader::new()
            .override_global("CONFIG", &config, true)
            .map_max_entries("EVENTS", options.ring_bytes)
            .load(OBJECT)
            .map_err(|e| CaptureError::Load(Box::new(e)))?;
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
        let links = programs::attach_all(&mut ebpf, pin_to.is_some())?;
        if let Some(set) = pin_to {
            pin::pin(&ebpf, links, set)?;
            tracing::info!(pins = %set.display(), "capture pinned: it keeps recording while no daemon runs");
        }
        let ring = take_map(&mut ebpf, "EVENTS", RingBuf::try_from)?;
        let counters = take_map(&mut ebpf, "COUNTERS", PerCpuArray::try_from)?;
        Ok(Self {
            _ebpf: Some(ebpf),
            ring,
            counters,
            adopted: false,
            pinned: pin_to.is_some(),
        })
    }

    /// The ring buffer (to poll and read) and the loss counters, which keep the programs loaded.
    pub fn split(self) -> (RingBuf<MapData>, Counters) {
        (
            self.ring,
            Counters {
                map: self.counters,
                _ebpf: self._ebpf,
            },
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
        }
    }
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
