//! What runs inside the guest after the initramfs: the stage-2 script (PID 1 on the host's
//! root), the modprobe wrapper the kernel calls for on-demand modules, and the default command
//! that runs the integration test binaries.
use std::{
    ffi::OsString,
    fs,
    os::unix::fs::PermissionsExt as _,
    path::{Path, PathBuf},
};

use anyhow::{Context as _, Result};

use super::{initramfs::BUSYBOX, tests as test_binaries, Series};

/// File in the shared folder that receives the command's exit status.
pub const EXIT_CODE_FILE: &str = "exit-code";

/// Everything the guest needs to run one command.
pub struct Plan<'a> {
    /// The shared read-write folder (same path on host and guest).
    pub shared: &'a Path,
    /// The unpacked kernel (its lib/modules, for the modprobe wrapper).
    pub kernel_root: &'a Path,
    /// Working directory of the command.
    pub cwd: &'a Path,
    /// Environment passed to the command (on top of PATH and HOME).
    pub env: Vec<(String, OsString)>,
    /// The command, as a shell command line.
    pub command: String,
}

/// Writes stage2.sh and the modprobe wrapper into the shared folder; returns stage2's path.
pub fn write(plan: &Plan) -> Result<PathBuf> {
    let modprobe = plan.shared.join("modprobe");
    write_executable(
        &modprobe,
        &format!(
            "#!/bin/sh\n# The kernel's request_module() helper: resolve against the unpacked tree.\n\
             exec /usr/sbin/modprobe -d {} \"$@\"\n",
            quote(&plan.kernel_root.to_string_lossy())
        ),
    )?;

    let mut exports = String::new();
    for (key, value) in &plan.env {
        exports.push_str(&format!(
            "export {key}={}\n",
            quote(&value.to_string_lossy())
        ));
    }
    let shared = quote(&plan.shared.to_string_lossy());
    let stage2 = format!(
        r#"#!/bin/sh
# PID 1 of the routeguard VM after switch_root (written by `cargo xtask vm-test`).
export PATH={path} HOME=/root
{exports}
try() {{ "$@" || echo "routeguard-vm: warning: $* failed"; }}
try mount -t bpf bpf /sys/fs/bpf
try mount -t tracefs tracefs /sys/kernel/tracing
try mount -t debugfs debugfs /sys/kernel/debug
try mount -t securityfs securityfs /sys/kernel/security
try mount -t cgroup2 cgroup2 /sys/fs/cgroup
mkdir -p /dev/pts /dev/shm
try mount -t devpts devpts /dev/pts
try mount -t tmpfs -o mode=1777 tmpfs /dev/shm
echo {modprobe} > /proc/sys/kernel/modprobe
try hostname routeguard-vm
try ip link set lo up
echo "{started}$(uname -r), up $(cut -d' ' -f1 /proc/uptime) s; running: "{shown}
cd {cwd} || {{ echo 126 > {shared}/{EXIT_CODE_FILE}; exec {BUSYBOX} poweroff -f; }}
{command}
echo $? > {shared}/{EXIT_CODE_FILE}
sync
exec {BUSYBOX} poweroff -f
"#,
        path = quote(&std::env::var("PATH").unwrap_or_default()),
        modprobe = quote(&modprobe.to_string_lossy()),
        started = super::qemu::STARTED_MARKER,
        shown = quote(&plan.command),
        cwd = quote(&plan.cwd.to_string_lossy()),
        command = plan.command,
    );
    let path = plan.shared.join("stage2.sh");
    write_executable(&path, &stage2)?;
    Ok(path)
}

/// A shell script (in the shared folder) that runs each test binary one test at a time, less
/// the tests `series`' guest leaves out ([`test_binaries::left_out`], named in the log with
/// why), and exits non-zero when any failed; returns the command line that runs it.
pub fn test_runner(shared: &Path, binaries: &[PathBuf], series: Series) -> Result<String> {
    let mut script = String::from("#!/bin/sh\nstatus=0\n");
    for path in binaries {
        let binary = quote(&path.to_string_lossy());
        let mut skips = String::new();
        for entry in test_binaries::left_out(path, series) {
            let names = entry.tests.join(", ");
            let note = format!("routeguard-vm: left out here ({}): {names}", entry.why);
            script.push_str(&format!("echo {}\n", quote(&note)));
            for test in entry.tests {
                skips.push_str(&format!(" --skip {}", quote(test)));
            }
        }
        if !skips.is_empty() {
            skips.push_str(" --exact");
        }
        script.push_str(&format!(
            "echo \"routeguard-vm: running \"{binary}\n{binary} --test-threads=1 --color never{skips} || status=1\n"
        ));
    }
    script.push_str("exit $status\n");
    let path = shared.join("run-tests.sh");
    write_executable(&path, &script)?;
    Ok(quote(&path.to_string_lossy()))
}

fn write_executable(path: &Path, text: &str) -> Result<()> {
    fs::write(path, text).with_context(|| format!("writing {}", path.display()))?;
    fs::set_permissions(path, fs::Permissions::from_mode(0o755))
        .with_context(|| format!("chmod {}", path.display()))
}

/// Single-quotes `s` for sh.
pub fn quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::{quote, test_runner, Series};

    #[test]
    fn the_runner_leaves_out_what_each_kernel_leaves_out_and_says_so() {
        let shared = std::env::temp_dir().join(format!("rg-runner-{}", std::process::id()));
        std::fs::create_dir_all(&shared).unwrap();
        let binaries = [
            PathBuf::from("/t/deps/daemon-0a1b"),
            PathBuf::from("/t/deps/route-2c3d"),
        ];
        let script = |series| {
            test_runner(&shared, &binaries, series).unwrap();
            std::fs::read_to_string(shared.join("run-tests.sh")).unwrap()
        };
        let (newest, oldest) = (script(Series::V6_12), script(Series::V6_1));
        std::fs::remove_dir_all(&shared).unwrap();
        let line = |script: &str, binary: &str| {
            script
                .lines()
                .find(|l| l.starts_with(binary))
                .unwrap()
                .to_string()
        };
        let daemon = line(&newest, "'/t/deps/daemon-0a1b'");
        assert!(daemon.contains(" --skip 'a_full_disk_under_the_store_is_survived'"));
        assert!(daemon.contains(" --skip 'restore_state::a_link_down_retry_outlives_a_reload'"));
        assert!(!daemon.contains("restored_then_suspended"), "{daemon}");
        assert!(daemon.ends_with(" --exact || status=1"), "{daemon}");
        assert!(newest.contains("left out here (config validation"));
        let daemon = line(&oldest, "'/t/deps/daemon-0a1b'");
        assert!(daemon.contains(" --skip 'a_full_disk_under_the_store_is_survived'"));
        assert!(daemon.contains(
            " --skip 'protected_rule_is_restored_then_suspended_and_both_are_stored_and_counted'"
        ));
        assert_eq!(daemon.matches(" --exact").count(), 1, "{daemon}");
        assert!(oldest.contains("(run on 6.12)"));
        for script in [&newest, &oldest] {
            assert_eq!(
                line(script, "'/t/deps/route-2c3d'"),
                "'/t/deps/route-2c3d' --test-threads=1 --color never || status=1"
            );
        }
    }

    #[test]
    fn quotes_for_sh() {
        assert_eq!(quote("a b"), "'a b'");
        assert_eq!(quote("it's"), r"'it'\''s'");
    }
}
