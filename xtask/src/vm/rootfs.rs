//! The systemd guest's root filesystem: a minimal Debian 12 (debootstrap's `minbase` plus
//! systemd, iproute2 and procps), built once under `target/vm/rootfs/` and reused. The guest
//! mounts it read-only over virtio-9p under a tmpfs overlay, so no run changes it.
//!
//! debootstrap mounts /proc and /sys inside the tree while it configures packages; it runs in a
//! private mount namespace of its own (`unshare --mount`), so whatever it leaves mounted on a
//! failure goes away with that namespace instead of staying on the host.
use std::{
    fs,
    path::{Path, PathBuf},
    process::Command,
    time::Instant,
};

use anyhow::{bail, Context as _, Result};

use super::apt;
use crate::cmd;

/// Debian 12, the release of the harness's kernels and of the host the binaries are built on
/// (the guest runs them, so its glibc must be at least as new as the host's).
const SUITE: &str = "bookworm";

/// What the guest needs on top of minbase: systemd as init (`systemd-sysv` makes it
/// /sbin/init), `ip` for the test's namespaces, modprobe (kmod) for the modules the kernel asks
/// for (veth, dummy, …: /init links the unpacked kernel's tree in), and /bin/kill (procps) for
/// the unit's `ExecReload`.
const INCLUDE: &[&str] = &["systemd", "systemd-sysv", "iproute2", "kmod", "procps"];

/// Written last into a finished tree; holds the recipe, so a changed recipe builds anew.
const COMPLETE: &str = ".routeguard-rootfs";

/// The cached root filesystem, built first when missing or made from another recipe.
pub fn ensure(vm_dir: &Path) -> Result<PathBuf> {
    let dir = vm_dir.join("rootfs");
    let root = dir.join(format!("{SUITE}-systemd"));
    let recipe = recipe();
    if fs::read_to_string(root.join(COMPLETE)).is_ok_and(|found| found == recipe) {
        return Ok(root);
    }
    let Some(debootstrap) = cmd::find_program("debootstrap") else {
        bail!(
            "debootstrap is not installed; it builds the systemd guest's root filesystem \
             (run `cargo xtask setup`, or `apt-get install debootstrap`)"
        );
    };
    let (mirror, keyring) = apt::debian_mirror();
    println!(
        "routeguard vm: building the systemd guest's root filesystem: Debian {SUITE} minbase + \
         {} from {mirror} (once, about 3 minutes and 160 MB; cached in {})",
        INCLUDE.join(", "),
        root.display()
    );
    let partial = dir.join(format!("{SUITE}-systemd.partial"));
    remove_tree(&partial)?;
    fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let start = Instant::now();
    let mut build = Command::new("unshare");
    build
        .args(["--mount", "--propagation", "private"])
        .arg(debootstrap)
        .args(["--variant=minbase", "--merged-usr"])
        .arg(format!("--include={}", INCLUDE.join(",")))
        .arg(format!("--keyring={keyring}"))
        .arg(SUITE)
        .arg(&partial)
        .arg(&mirror);
    println!("routeguard vm:   $ {}", cmd::display(&build));
    cmd::run(&mut build).context(
        "debootstrap failed (its log is debootstrap/debootstrap.log in the partial tree named \
         above); check that the Debian mirror is reachable",
    )?;
    // Package lists and downloaded .debs: half the tree, and nothing the guest reads.
    for cache in ["var/cache/apt", "var/lib/apt/lists"] {
        let path = partial.join(cache);
        fs::remove_dir_all(&path).with_context(|| format!("removing {}", path.display()))?;
        fs::create_dir_all(&path)?;
    }
    fs::write(partial.join(COMPLETE), &recipe)?;
    remove_tree(&root)?;
    fs::rename(&partial, &root)
        .with_context(|| format!("renaming {} to {}", partial.display(), root.display()))?;
    println!(
        "routeguard vm: root filesystem ready in {:.0} s",
        start.elapsed().as_secs_f64()
    );
    Ok(root)
}

fn recipe() -> String {
    format!(
        "debootstrap --variant=minbase --merged-usr --include={} {SUITE}\n",
        INCLUDE.join(",")
    )
}

/// Removes `path` (a tree this module made), refusing when anything is mounted below it: a
/// recursive delete must never walk into a mounted /proc or /sys.
fn remove_tree(path: &Path) -> Result<()> {
    if !path.exists() {
        return Ok(());
    }
    let mountinfo = fs::read_to_string("/proc/self/mountinfo").context("reading mountinfo")?;
    if let Some(mount) = mounts_below(&mountinfo, path).first() {
        bail!(
            "{mount} is mounted inside {}; unmount it (`umount -R {mount}`) before the tree is \
             rebuilt",
            path.display()
        );
    }
    fs::remove_dir_all(path).with_context(|| format!("removing {}", path.display()))
}

/// Mount points (mountinfo's 5th field) at or below `path`.
fn mounts_below(mountinfo: &str, path: &Path) -> Vec<String> {
    mountinfo
        .lines()
        .filter_map(|line| line.split(' ').nth(4))
        .filter(|point| Path::new(point).starts_with(path))
        .map(str::to_owned)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_mounts_left_inside_a_tree() {
        let mountinfo = "22 1 0:21 / /proc rw - proc proc rw\n\
                         90 22 0:40 / /srv/t/root/proc rw - proc proc rw\n\
                         91 22 0:41 / /srv/t/rootfs rw - tmpfs tmpfs rw\n";
        assert_eq!(
            mounts_below(mountinfo, Path::new("/srv/t/root")),
            ["/srv/t/root/proc"]
        );
        assert!(mounts_below(mountinfo, Path::new("/srv/u")).is_empty());
    }
}
