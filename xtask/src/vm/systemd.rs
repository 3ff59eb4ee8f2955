//! `cargo xtask vm-unit`: the systemd unit exactly as `packaging/routeguard.service` ships it,
//! run by systemd as PID 1 in a QEMU guest, where `tests/tests/systemd_unit.rs` installs it
//! with `routeguard install --systemd`, starts it and checks that the daemon records, mirrors
//! and restores under it.
//!
//! The guest boots a stock Debian kernel (as `vm-test` does) into a minimal Debian 12 with
//! systemd (`rootfs.rs`, built once with debootstrap): /init mounts that tree read-only over
//! virtio-9p under a tmpfs overlay (so the guest may write anywhere and the cache stays as
//! built), the workspace read-only at its own path (the binaries and the test), and the run's
//! shared folder read-write; it copies the folder's `etc/` over the root's (the driver unit,
//! masks) and hands over to /lib/systemd/systemd. Once multi-user.target is reached the driver
//! unit runs the test, writes its exit status into the shared folder and powers off.
//!
//! Why not the host's own root, as `vm-test` does: the host's /etc is another machine's (its
//! fstab, enabled services, machine-id), and a fresh CI host need not have systemd installed
//! at all; a debootstrapped tree is the same everywhere and costs one build.
use std::{
    fs,
    os::unix::fs::{symlink, PermissionsExt as _},
    path::{Path, PathBuf},
    process::ExitCode,
    time::Duration,
};

use anyhow::{Context as _, Result};

use super::{
    guest::{quote, EXIT_CODE_FILE},
    initramfs, kernel, qemu, rootfs, run_machine, summarize, tests as test_binaries, Host,
    KernelRun, Options, Series, CMDLINE, VM_ENV,
};
use crate::{build, paths, setup};

/// The integration test target that drives the unit, and its one test (run with `--ignored`:
/// anywhere but this guest it has no systemd as PID 1 to talk to).
pub const TEST_TARGET: &str = "systemd_unit";
pub const TEST_NAME: &str = "the_shipped_unit_records_mirrors_and_restores_under_systemd";

/// The guest's modules: the 9p ones of `vm-test`, and overlayfs for the writable root.
const MODULES: &[&str] = &["virtio_pci", "9pnet_virtio", "9p", "overlay"];

/// 9p tags of the guest's shares.
const ROOTFS_TAG: &str = "rootfs";
const WORKSPACE_TAG: &str = "workspace";
const TARGET_TAG: &str = "target";
const SHARED_TAG: &str = "shared";

/// The unit that runs the test in the guest.
const DRIVER_UNIT: &str = "routeguard-vm-unit.service";

/// A guest still running after this long is killed. A run takes about 3 minutes under TCG on
/// the 2-core host (boot ~40 s, two daemon starts, the test's waits).
const DEFAULT_TIMEOUT_SECS: u64 = 900;

#[derive(clap::Args)]
pub struct Args {
    /// Kernel to boot: 6.12 (Debian 12 backports; routeguard picks its kernel-function path
    /// there) or 6.1 (Debian 12).
    #[arg(long, default_value = "6.12", value_parser = ["6.1", "6.12"])]
    kernel: String,
    /// Kill the VM when it is still running after this many seconds.
    #[arg(long, default_value_t = DEFAULT_TIMEOUT_SECS, value_name = "SECONDS")]
    timeout: u64,
    /// Keep the console in target/vm/run/unit-<kernel>/console.log only (its tail is shown on
    /// failure) instead of also streaming it to the terminal.
    #[arg(long)]
    quiet: bool,
}

/// `cargo xtask vm-unit`.
pub fn run(args: Args) -> Result<ExitCode> {
    setup::run(setup::Options::default())?;
    let series = if args.kernel == "6.1" {
        Series::V6_1
    } else {
        Series::V6_12
    };
    let opts = Options {
        capture: None,
        timeout: Duration::from_secs(args.timeout),
        echo: !args.quiet,
    };
    let run = run_kernel(series, &opts)?;
    summarize(std::slice::from_ref(&run));
    Ok(if run.exit_code == Some(0) && run.failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// `cargo xtask test`'s stage: the default kernel, console streamed.
pub fn stage() -> Result<KernelRun> {
    run_kernel(
        Series::V6_12,
        &Options {
            capture: None,
            timeout: Duration::from_secs(DEFAULT_TIMEOUT_SECS),
            echo: true,
        },
    )
}

/// Builds what the guest runs (release binary, the test, the root filesystem on first use),
/// boots `series` with systemd as PID 1 and returns how the test went.
pub fn run_kernel(series: Series, opts: &Options) -> Result<KernelRun> {
    let mut host = Host::prepare("vm-unit")?;
    let workspace = paths::workspace_root();
    let target = paths::target_dir();
    let bin = build::run(false)?;
    let binaries = test_binaries::build_test_binaries(&workspace)?;
    let test = test_binaries::find(&binaries, TEST_TARGET)?;
    let rootfs = rootfs::ensure(&host.vm_dir)?;
    let kernel = host.kernel(series)?;

    let shared = host.vm_dir.join("run").join(format!("unit-{series}"));
    if shared.exists() {
        fs::remove_dir_all(&shared).with_context(|| format!("clearing {}", shared.display()))?;
    }
    fs::create_dir_all(&shared).with_context(|| format!("creating {}", shared.display()))?;
    let env = [
        ("ROUTEGUARD_BIN", bin.display().to_string()),
        (VM_ENV, series.to_string()),
        ("RUST_BACKTRACE", "1".to_owned()),
    ];
    let driver = write_driver(&shared, &workspace, &test, &env)?;
    write_etc(&shared, &driver)?;

    // The workspace holds the binaries and the test's sources; a target directory elsewhere
    // ($CARGO_TARGET_DIR) is shared on its own.
    let mut shares = vec![
        qemu::Share {
            tag: ROOTFS_TAG,
            path: &rootfs,
            readonly: true,
        },
        qemu::Share {
            tag: WORKSPACE_TAG,
            path: &workspace,
            readonly: true,
        },
    ];
    let target_apart = !target.starts_with(&workspace);
    if target_apart {
        shares.push(qemu::Share {
            tag: TARGET_TAG,
            path: &target,
            readonly: true,
        });
    }
    shares.push(qemu::Share {
        tag: SHARED_TAG,
        path: &shared,
        readonly: false,
    });
    let initramfs = shared.join("initramfs.cpio");
    let init = init_script(
        &workspace,
        target_apart.then_some(target.as_path()),
        &shared,
        &kernel,
    );
    initramfs::build(&kernel, MODULES, &init, &initramfs)?;
    let log = shared.join("console.log");
    // systemd.firstboot=off: the tree's machine-id is set, but a first-boot prompt on the
    // serial console would wait forever.
    let append = format!("{CMDLINE} systemd.firstboot=off");
    let machine = qemu::Machine {
        vmlinuz: &kernel.vmlinuz,
        initramfs: &initramfs,
        append: &append,
        shares: &shares,
        log: &log,
        timeout: opts.timeout,
        echo: opts.echo,
    };
    run_machine(&machine, &kernel, series, &shared, opts)
}

/// /init: the Debian tree under a tmpfs overlay, the workspace (and a target directory outside
/// it) read-only at their own paths, the shared folder read-write, the folder's `etc/` copied
/// over the root's, the unpacked kernel's modules linked where modprobe looks, then systemd as
/// PID 1.
fn init_script(
    workspace: &Path,
    target: Option<&Path>,
    shared: &Path,
    kernel: &kernel::Kernel,
) -> String {
    const NINEP: &str = "trans=virtio,version=9p2000.L,msize=262144";
    let mut script = String::from(initramfs::init_prelude());
    script.push_str(&format!(
        r#"mkdir -p /lower /rw
mount -t 9p -o {NINEP},cache=loose,ro {ROOTFS_TAG} /lower \
    || fail "cannot mount the guest's root filesystem over 9p"
mount -t tmpfs -o mode=0755 tmpfs /rw && mkdir /rw/upper /rw/work \
    || fail "cannot mount the overlay's tmpfs"
mount -t overlay overlay -o lowerdir=/lower,upperdir=/rw/upper,workdir=/rw/work /newroot \
    || fail "cannot mount the overlay on the guest's root"
"#
    ));
    // cache=loose: nothing under these changes while the guest runs.
    let mut ro = vec![(WORKSPACE_TAG, workspace)];
    ro.extend(target.map(|t| (TARGET_TAG, t)));
    for (tag, path) in ro {
        let at = quote(&format!("/newroot{}", path.display()));
        script.push_str(&format!(
            "mkdir -p {at} && mount -t 9p -o {NINEP},cache=loose,ro {tag} {at} \\\n    \
             || fail \"cannot mount {tag} at {}\"\n",
            path.display()
        ));
    }
    let at = quote(&format!("/newroot{}", shared.display()));
    script.push_str(&format!(
        r#"mount -t 9p -o {NINEP} {SHARED_TAG} {at} || fail "cannot mount the shared folder"
cp -a {etc} /newroot/etc/ || fail "cannot copy the test's units into /etc"
mkdir -p /newroot/usr/lib/modules && ln -s {modules} /newroot/usr/lib/modules/ \
    || fail "cannot link the kernel's modules"
mount --move /dev /newroot/dev
mount --move /proc /newroot/proc
mount --move /sys /newroot/sys
exec switch_root /newroot /lib/systemd/systemd
"#,
        etc = quote(&format!("/newroot{}/etc/.", shared.display())),
        modules = quote(
            &kernel
                .root
                .join("lib/modules")
                .join(&kernel.release)
                .to_string_lossy()
        ),
    ));
    script
}

/// The script the driver unit runs: the test, then (on failure) how systemd saw the unit, the
/// exit status into the shared folder, power off.
fn write_driver(
    shared: &Path,
    workspace: &Path,
    test: &Path,
    env: &[(&str, String)],
) -> Result<PathBuf> {
    let mut exports = String::new();
    for (key, value) in env {
        exports.push_str(&format!("export {key}={}\n", quote(value)));
    }
    let test = quote(&test.to_string_lossy());
    let exit_file = quote(&shared.join(EXIT_CODE_FILE).to_string_lossy());
    let script = format!(
        r#"#!/bin/sh
# Run by {DRIVER_UNIT} once the guest reached multi-user.target (written by `cargo xtask vm-unit`).
# Plain text for the serial console and the host's log.
export HOME=/root SYSTEMD_COLORS=0 SYSTEMD_URLIFY=0
{exports}
echo "{started}$(uname -r), up $(cut -d' ' -f1 /proc/uptime) s, PID 1 is $(cat /proc/1/comm); running {TEST_TARGET}::{TEST_NAME}"
cd {tests_dir} || {{ echo 126 > {exit_file}; systemctl poweroff --force --force; }}
{test} --ignored --exact {TEST_NAME} --nocapture --test-threads=1 --color never
status=$?
if [ "$status" -ne 0 ]; then
    echo "routeguard-vm: the test failed (exit $status); routeguard.service as systemd sees it:"
    systemctl status routeguard.service --no-pager --full --lines=0
    echo "routeguard-vm: its journal:"
    journalctl --boot --unit routeguard.service --no-pager --output short-monotonic | tail -n 80
fi
echo "$status" > {exit_file}
sync
systemctl poweroff --force --force
"#,
        started = qemu::STARTED_MARKER,
        tests_dir = quote(&workspace.join("tests").to_string_lossy()),
    );
    let path = shared.join("driver.sh");
    fs::write(&path, script).with_context(|| format!("writing {}", path.display()))?;
    fs::set_permissions(&path, fs::Permissions::from_mode(0o755))?;
    Ok(path)
}

/// What /init copies over the guest's /etc: the driver unit (wanted by multi-user.target), and
/// masks for what has no business in a throw-away guest: the serial login prompt (the console
/// carries the test's output) and the timers (apt-daily & co.).
fn write_etc(shared: &Path, driver: &Path) -> Result<()> {
    let system = shared.join("etc/systemd/system");
    let wants = system.join("multi-user.target.wants");
    fs::create_dir_all(&wants).with_context(|| format!("creating {}", wants.display()))?;
    let unit = format!(
        "[Unit]\n\
         Description=routeguard vm-unit: the test of routeguard.service\n\
         After=multi-user.target\n\n\
         [Service]\n\
         Type=exec\n\
         ExecStart=/bin/sh {driver}\n\
         # Raw lines on the serial console: the host counts cargo's \"test result:\" lines.\n\
         StandardOutput=tty\n\
         StandardError=tty\n\
         TTYPath=/dev/console\n\
         TTYReset=no\n\
         TTYVHangup=no\n",
        driver = driver.display()
    );
    fs::write(system.join(DRIVER_UNIT), unit)?;
    let link = wants.join(DRIVER_UNIT);
    symlink(format!("../{DRIVER_UNIT}"), &link)
        .with_context(|| format!("creating {}", link.display()))?;
    for masked in ["getty.target", "timers.target"] {
        symlink("/dev/null", system.join(masked)).with_context(|| format!("masking {masked}"))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn init_mounts_the_overlay_then_the_shares_then_starts_systemd() {
        let kernel = kernel::Kernel {
            package: "linux-image-6.12.1+deb12-amd64".into(),
            root: "/srv/target/vm/kernels/linux-image-6.12.1+deb12-amd64".into(),
            release: "6.12.1+deb12-amd64".into(),
            vmlinuz: "/unused".into(),
        };
        let init = init_script(
            Path::new("/work/rg"),
            Some(Path::new("/srv/target")),
            Path::new("/work/rg/target/vm/run/unit-6.12"),
            &kernel,
        );
        let at = |needle: &str| {
            init.find(needle)
                .unwrap_or_else(|| panic!("no `{needle}` in:\n{init}"))
        };
        assert!(init.starts_with("#!/bin/busybox sh\n"));
        assert!(at("mount -t overlay") < at("workspace '/newroot/work/rg'"));
        assert!(at("workspace '/newroot/work/rg'") < at("target '/newroot/srv/target'"));
        assert!(at("target '/newroot/srv/target'") < at("shared '/newroot/work/rg/target/vm"));
        assert!(at("cp -a '/newroot/work/rg/target/vm/run/unit-6.12/etc/.' /newroot/etc/") > 0);
        assert!(init.contains(
            "ln -s '/srv/target/vm/kernels/linux-image-6.12.1+deb12-amd64/lib/modules/\
             6.12.1+deb12-amd64' /newroot/usr/lib/modules/"
        ));
        assert!(init.ends_with("exec switch_root /newroot /lib/systemd/systemd\n"));
    }
}
