//! Privileges and kernel features tracing needs, each named precisely when missing.

use std::{fs, path::Path};

use super::btf::VMLINUX_BTF;

pub const TRACEFS: &str = "/sys/kernel/tracing";

/// Capabilities by number (linux/capability.h).
const CAP_NET_ADMIN: u32 = 12;
const CAP_SYS_ADMIN: u32 = 21;
const CAP_PERFMON: u32 = 38;
const CAP_BPF: u32 = 39;

#[derive(Debug, thiserror::Error)]
pub enum Unmet {
    #[error("missing capabilities: {0} (run routeguard as root, e.g. `sudo routeguard trace`, or grant them with `setcap` / the unit's AmbientCapabilities)")]
    Capabilities(String),
    #[error("the kernel has no BTF at {VMLINUX_BTF} (routeguard needs CONFIG_DEBUG_INFO_BTF=y, standard on Debian ≥ 11, Ubuntu ≥ 20.10, RHEL ≥ 8.2, Fedora)")]
    NoBtf,
    #[error("tracefs is not mounted at {TRACEFS} and mounting it failed: {0} (mount it with `mount -t tracefs nodev {TRACEFS}`)")]
    NoTracefs(String),
}

/// Effective capabilities of this process, from /proc/self/status `CapEff`.
pub fn effective_caps() -> u64 {
    fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("CapEff:"))
                .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
        })
        .unwrap_or(0)
}

/// Names the capabilities tracing needs that `caps` lacks. CAP_SYS_ADMIN stands in for
/// CAP_BPF + CAP_PERFMON on kernels before 5.8.
pub fn missing_caps(caps: u64) -> Vec<&'static str> {
    let has = |c: u32| caps & (1 << c) != 0;
    let mut missing = Vec::new();
    if !has(CAP_BPF) && !has(CAP_SYS_ADMIN) {
        missing.push("CAP_BPF");
    }
    if !has(CAP_PERFMON) && !has(CAP_SYS_ADMIN) {
        missing.push("CAP_PERFMON");
    }
    // Following sockets and namespaces of other processes (ns files, /proc/PID/fd).
    if !has(CAP_SYS_ADMIN) && !has(CAP_NET_ADMIN) {
        missing.push("CAP_NET_ADMIN");
    }
    missing
}

/// Checks everything `trace` needs before anything is loaded; mounts tracefs when absent.
pub fn check() -> Result<(), Unmet> {
    let missing = missing_caps(effective_caps());
    if !missing.is_empty() {
        return Err(Unmet::Capabilities(missing.join(", ")));
    }
    if !Path::new(VMLINUX_BTF).exists() {
        return Err(Unmet::NoBtf);
    }
    ensure_tracefs()
}

fn ensure_tracefs() -> Result<(), Unmet> {
    if Path::new(TRACEFS).join("events").is_dir() {
        return Ok(());
    }
    let status = std::process::Command::new("mount")
        .args(["-t", "tracefs", "nodev", TRACEFS])
        .status()
        .map_err(|e| Unmet::NoTracefs(e.to_string()))?;
    if status.success() && Path::new(TRACEFS).join("events").is_dir() {
        Ok(())
    } else {
        Err(Unmet::NoTracefs(format!("mount exited with {status}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_each_missing_capability() {
        assert_eq!(
            missing_caps(0),
            vec!["CAP_BPF", "CAP_PERFMON", "CAP_NET_ADMIN"]
        );
        assert!(missing_caps(1 << CAP_SYS_ADMIN).is_empty());
        let bpf_only = (1 << CAP_BPF) | (1 << CAP_NET_ADMIN);
        assert_eq!(missing_caps(bpf_only), vec!["CAP_PERFMON"]);
    }
}
