//! Kernel capture: loads the eBPF programs with offsets from the running kernel's BTF, attaches
//! them, and hands out raw records and loss counters.

pub mod probe;
mod programs;
pub mod select;

use std::path::Path;

use aya::{
    maps::{MapData, PerCpuArray, RingBuf},
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
}

impl Default for Options {
    fn default() -> Self {
        Self {
            ring_bytes: 16 << 20,
            wakeup_bytes: 256 << 10,
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
    // Owns the programs and their links: dropping it detaches everything.
    _ebpf: Ebpf,
    ring: RingBuf<MapData>,
    counters: PerCpuArray<MapData, u64>,
}

impl Capture {
    /// Resolves offsets, loads and attaches every program. Fails as a whole: nothing stays
    /// attached when one step fails.
    pub fn start(options: &Options) -> Result<Self, CaptureError> {
        if OBJECT.is_empty() {
            return Err(CaptureError::NoObject);
        }
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
            self_tgid: std::process::id(),
            wakeup_bytes: options.wakeup_bytes,
        };
        let mut ebpf = EbpfLoader::new()
            .override_global("CONFIG", &config, true)
            .map_max_entries("EVENTS", options.ring_bytes)
            .load(OBJECT)
            .map_err(|e| CaptureError::Load(Box::new(e)))?;
        programs::attach_all(&mut ebpf)?;
        let ring = take_map(&mut ebpf, "EVENTS", RingBuf::try_from)?;
        let counters = take_map(&mut ebpf, "COUNTERS", PerCpuArray::try_from)?;
        Ok(Self {
            _ebpf: ebpf,
            ring,
            counters,
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
    _ebpf: Ebpf,
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
