//! The guest's initramfs: static busybox, the virtio/9p modules of the kernel being booted
//! (decompressed, in dependency order), and an /init that mounts the guest's root over virtio-9p
//! and hands over: for `vm-test`, the host's root read-only and the run's stage-2 script (see
//! `guest.rs`); for `vm-unit`, a Debian root under an overlay and systemd (see `systemd.rs`).
use std::{fs, path::Path, process::Command};

use anyhow::{bail, Context as _, Result};

use super::{cpio::Archive, kernel::Kernel};
use crate::cmd;

/// Where busybox-static installs itself.
pub const BUSYBOX: &str = "/bin/busybox";

/// Modules the initramfs loads before it can mount the host's root (virtio_pci is built in on
/// 6.12, a module on 6.1; `modprobe --show-depends` reports "builtin" for those).
pub const BOOT_MODULES: &[&str] = &["virtio_pci", "9pnet_virtio", "9p"];

/// 9p tags of the two shares (see `qemu.rs`).
pub const ROOT_TAG: &str = "hostroot";
pub const SHARED_TAG: &str = "shared";

/// Writes the initramfs for `kernel` to `out`: `modules` (and what they depend on) and `init`
/// as /init (a busybox sh script that starts with [`init_prelude`]).
pub fn build(kernel: &Kernel, modules: &[&str], init: &str, out: &Path) -> Result<()> {
    let mut archive = Archive::default();
    for dir in ["bin", "dev", "proc", "sys", "newroot", "modules"] {
        archive.dir(dir);
    }
    // Without /dev/console in the initramfs, /init would start with no stdin/stdout/stderr.
    archive.char_dev("dev/console", 5, 1);
    let busybox =
        fs::read(BUSYBOX).with_context(|| format!("reading {BUSYBOX} (package busybox-static)"))?;
    archive.file("bin/busybox", 0o755, &busybox);

    let mut order = String::new();
    for (index, module) in module_files(kernel, modules)?.iter().enumerate() {
        let name = module
            .file_name()
            .and_then(|n| n.to_str())
            .context("module path without a file name")?;
        let plain = name.trim_end_matches(".xz");
        let stored = format!("{index:02}-{plain}");
        archive.file(&format!("modules/{stored}"), 0o644, &decompress(module)?);
        order.push_str(&stored);
        order.push('\n');
    }
    archive.file("modules/order", 0o644, order.as_bytes());
    archive.file("init", 0o755, init.as_bytes());

    let mut file = fs::File::create(out).with_context(|| format!("creating {}", out.display()))?;
    archive
        .write_to(&mut file)
        .with_context(|| format!("writing {}", out.display()))
}

/// The files of `modules`, dependencies first, each once (`modprobe --show-depends` on the
/// unpacked tree; kmod resolves against its modules.dep).
fn module_files(kernel: &Kernel, modules: &[&str]) -> Result<Vec<std::path::PathBuf>> {
    let shown = cmd::stdout_of(
        Command::new("modprobe")
            .arg("-d")
            .arg(&kernel.root)
            .args(["-S", &kernel.release, "--show-depends", "-a"])
            .args(modules),
    )?;
    let mut modules: Vec<std::path::PathBuf> = Vec::new();
    for line in shown.lines() {
        let Some(path) = line.strip_prefix("insmod ") else {
            continue; // "builtin NAME"
        };
        let path = std::path::PathBuf::from(path.split_whitespace().next().unwrap_or_default());
        if !modules.contains(&path) {
            modules.push(path);
        }
    }
    Ok(modules)
}

/// Module bytes, decompressed with busybox's xz (Debian's 6.12 ships `.ko.xz`, 6.1 plain `.ko`;
/// the initramfs's busybox insmod takes plain ELF).
fn decompress(module: &Path) -> Result<Vec<u8>> {
    let name = module.to_string_lossy();
    if name.ends_with(".ko") {
        return fs::read(module).with_context(|| format!("reading {name}"));
    }
    if !name.ends_with(".ko.xz") {
        bail!("{name}: unsupported module compression (expected .ko or .ko.xz)");
    }
    let out = cmd::capture(Command::new(BUSYBOX).arg("xzcat").arg(module))?;
    if !out.status.success() {
        bail!(
            "busybox xzcat {name} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(out.stdout)
}

/// Directories the guest gets a fresh tmpfs on (the host's root is read-only to it); whatever
/// the host has below them is hidden from the guest.
pub const GUEST_TMPFS: &str = "/tmp /run /var/tmp";

/// The start of every /init: busybox's applets, the API filesystems, and the modules in the
/// order [`build`] stored them. Defines `fail`, which prints why and powers off: the host then
/// sees no exit code and reports the console's tail.
pub fn init_prelude() -> &'static str {
    r#"#!/bin/busybox sh
/bin/busybox --install -s /bin
export PATH=/bin
fail() { echo "routeguard-vm: init: $*"; poweroff -f; }
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
while read -r module; do
    insmod "/modules/$module" || fail "insmod $module failed"
done < /modules/order
"#
}

/// `vm-test`'s /init: the host's root read-only, the shared folder `shared` at its own path,
/// tmpfs where the guest writes, then `stage2` as PID 1.
pub fn init_script(shared: &Path, stage2: &Path) -> String {
    let shared = shared.display();
    let stage2 = stage2.display();
    let prelude = init_prelude();
    format!(
        r#"{prelude}# cache=loose: the host's root is read-only for the guest and does not change during a run.
mount -t 9p -o trans=virtio,version=9p2000.L,msize=262144,cache=loose,ro {ROOT_TAG} /newroot \
    || fail "cannot mount the host's root over 9p"
mount -t 9p -o trans=virtio,version=9p2000.L,msize=262144 {SHARED_TAG} "/newroot{shared}" \
    || fail "cannot mount the shared folder {shared}"
for dir in {GUEST_TMPFS}; do
    mount -t tmpfs -o mode=1777 tmpfs "/newroot$dir" || fail "cannot mount tmpfs on $dir"
done
mount --move /dev /newroot/dev
mount --move /proc /newroot/proc
mount --move /sys /newroot/sys
exec switch_root /newroot /bin/sh "{stage2}"
"#
    )
}
