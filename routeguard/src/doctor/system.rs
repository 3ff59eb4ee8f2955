//! The kernel itself: version, BTF (and the offsets routeguard reads from it), filesystems.

use std::{fs, path::Path};

use super::{Check, Facts, Finding};
use crate::kernel::{
    btf::{self, VMLINUX_BTF},
    requirements::TRACEFS,
};

const BPFFS: &str = "/sys/fs/bpf";
/// `BPF_FS_MAGIC` (include/uapi/linux/magic.h).
const BPF_FS_MAGIC: i64 = 0xcafe_4a11;

/// `uname -r`.
pub fn release() -> String {
    fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "unknown".into())
}

/// (major, minor) of a release string such as `6.1.0-56-amd64`.
pub fn version(release: &str) -> Option<(u32, u32)> {
    let mut parts = release.split(|c: char| !c.is_ascii_digit());
    Some((parts.next()?.parse().ok()?, parts.next()?.parse().ok()?))
}

pub struct Kernel;

impl Check for Kernel {
    fn section(&self) -> &'static str {
        "kernel"
    }

    fn run(&self, _: &Facts) -> Vec<Finding> {
        let release = release();
        let finding = match version(&release) {
            // raw_tp sys_enter/sys_exit, BPF ring buffer (5.8) and CAP_BPF (5.8).
            Some(v) if v >= (5, 8) => Finding::ok("version", format!("Linux {release}")),
            Some(_) => Finding::fail(
                "version",
                format!("Linux {release}: routeguard needs 5.8 or later (BPF ring buffer)"),
                "run a newer kernel (Debian 11+, Ubuntu 20.10+, RHEL 9, Fedora)",
            ),
            None => Finding::warn(
                "version",
                format!("cannot parse the kernel release `{release}`"),
                "check /proc/sys/kernel/osrelease",
            ),
        };
        vec![finding]
    }
}

pub struct Btf;

impl Check for Btf {
    fn section(&self) -> &'static str {
        "kernel"
    }

    fn run(&self, _: &Facts) -> Vec<Finding> {
        let path = Path::new(VMLINUX_BTF);
        let Ok(meta) = fs::metadata(path) else {
            return vec![Finding::fail(
                "BTF",
                format!("{VMLINUX_BTF} is absent"),
                "run a kernel built with CONFIG_DEBUG_INFO_BTF=y (standard on Debian 11+, \
                 Ubuntu 20.10+, RHEL 8.2+, Fedora)",
            )];
        };
        let resolved = match btf::resolve(path) {
            Ok(r) => r,
            Err(err) => {
                return vec![Finding::fail(
                    "BTF",
                    err.to_string(),
                    "run a kernel built with CONFIG_DEBUG_INFO_BTF=y",
                )]
            }
        };
        let mut findings = vec![Finding::ok(
            "BTF",
            format!("{VMLINUX_BTF} ({} KiB)", meta.len() >> 10),
        )];
        let (fatal, other): (Vec<_>, Vec<_>) = resolved
            .missing
            .iter()
            .partition(|m| btf::REQUIRED.contains(&m.field));
        let describe = |ms: &[&btf::Missing]| {
            ms.iter()
                .map(|m| format!("{}: {}", m.field, m.reason))
                .collect::<Vec<_>>()
                .join("; ")
        };
        if !fatal.is_empty() {
            findings.push(Finding::fail(
                "kernel offsets",
                format!("the syscall path cannot recognise netlink sockets: {}", describe(&fatal)),
                "report this kernel's version to routeguard; the kernel-function path may still work",
            ));
        } else if !other.is_empty() {
            findings.push(Finding::warn(
                "kernel offsets",
                format!("these enrichments are off: {}", describe(&other)),
                "report this kernel's version to routeguard",
            ));
        } else {
            findings.push(Finding::ok(
                "kernel offsets",
                "every struct member the programs read was found in BTF",
            ));
        }
        findings
    }
}

pub struct Mounts;

impl Check for Mounts {
    fn section(&self) -> &'static str {
        "kernel"
    }

    fn run(&self, _: &Facts) -> Vec<Finding> {
        let tracefs = if Path::new(TRACEFS).join("events").is_dir() {
            Finding::ok("tracefs", format!("mounted at {TRACEFS}"))
        } else {
            Finding::warn(
                "tracefs",
                format!("not mounted at {TRACEFS}; `routeguard trace` mounts it itself"),
                format!("mount -t tracefs nodev {TRACEFS}"),
            )
        };
        let bpffs = if statfs_magic(BPFFS) == Some(BPF_FS_MAGIC) {
            Finding::ok("bpffs", format!("mounted at {BPFFS}"))
        } else {
            Finding::ok(
                "bpffs",
                format!("not mounted at {BPFFS}; not needed (routeguard pins nothing)"),
            )
        };
        vec![tracefs, bpffs]
    }
}

#[allow(
    clippy::unnecessary_cast,
    reason = "f_type is __fsword_t: i64 on x86_64, other widths on other architectures"
)]
fn statfs_magic(path: &str) -> Option<i64> {
    let c = std::ffi::CString::new(path).ok()?;
    let mut buf = std::mem::MaybeUninit::<libc::statfs>::zeroed();
    // SAFETY: `c` is NUL-terminated and `buf` is a statfs-sized buffer the call fills.
    let rc = unsafe { libc::statfs(c.as_ptr(), buf.as_mut_ptr()) };
    // SAFETY: statfs returned 0, so it initialised the whole struct.
    (rc == 0).then(|| unsafe { buf.assume_init() }.f_type as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_releases() {
        assert_eq!(version("6.1.0-56-amd64"), Some((6, 1)));
        assert_eq!(version("6.18.44-fc-v782"), Some((6, 18)));
        assert_eq!(version("5.4"), Some((5, 4)));
        assert_eq!(version("linux"), None);
    }
}
