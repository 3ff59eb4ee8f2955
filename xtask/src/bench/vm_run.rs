//! Where a bench's traced runs happen: here, or, for the kernel-function path on a kernel that
//! refuses fentry (ours), in a stock Debian kernel under QEMU (`--vm`, as `cargo xtask
//! vm-test`): the xtask binary runs itself in the guest, with its scratch files on the guest's
//! tmpfs.
use std::{
    fs,
    path::{Path, PathBuf},
    process::Command,
    time::Duration,
};

use anyhow::{bail, Context as _, Result};

use crate::vm::{self, Series};

/// What the traced runs of a bench run, and where.
#[derive(clap::Args)]
pub struct TraceTarget {
    /// Bench this routeguard binary instead of building target/release/routeguard.
    #[arg(long, value_name = "PATH")]
    pub bin: Option<PathBuf>,
    /// Capture path of the traced runs (`routeguard trace --capture VALUE`, the daemon's
    /// `[capture] path`).
    #[arg(long, default_value = "auto", value_parser = ["auto", "kernel-function", "syscall"])]
    pub capture: String,
    /// Run the bench in this stock Debian kernel under QEMU (TCG). Chosen as 6.12 for
    /// `--capture kernel-function` when this kernel cannot load fentry/fexit programs.
    #[arg(long, value_name = "KERNEL", value_parser = ["6.1", "6.12"])]
    pub vm: Option<String>,
}

/// Scratch target directory of the bench in the guest (on its tmpfs /tmp).
const GUEST_TARGET: &str = "/tmp/routeguard-bench";
/// A VM bench still running after this long is killed.
const VM_TIMEOUT: Duration = Duration::from_secs(3 * 3600);

/// The kernel to run a bench in: `vm` (`--vm`), or 6.12 when the kernel-function path is asked
/// for and this kernel cannot run it (as `routeguard doctor` finds); None to run here.
pub fn vm_series(vm: Option<&str>, capture: &str, bin: &Path) -> Result<Option<Series>> {
    if vm::in_guest() {
        return Ok(None);
    }
    if let Some(kernel) = vm {
        let series = Series::ALL.into_iter().find(|s| s.to_string() == kernel);
        return series.map(Some).context("--vm takes 6.1 or 6.12");
    }
    if capture != "kernel-function" {
        return Ok(None);
    }
    let doctor = Command::new(bin)
        .args(["doctor", "--json", "--capture", "kernel-function"])
        .output()
        .with_context(|| format!("could not run {} doctor", bin.display()))?;
    let report: serde_json::Value = serde_json::from_slice(&doctor.stdout)
        .with_context(|| format!("{} doctor --json printed no JSON", bin.display()))?;
    if report["capture"] == "kernel-function" {
        return Ok(None);
    }
    println!(
        "bench: this kernel cannot run the kernel-function path (see `routeguard doctor \
         --capture kernel-function`); running the bench in Debian's 6.12 kernel under QEMU"
    );
    Ok(Some(Series::V6_12))
}

/// Runs `cargo xtask bench <bench> <args>` inside `series`'s kernel. The guest reads the host's
/// files as they are, so it runs copies that a rebuild meanwhile cannot change.
pub fn in_vm(bench: &str, args: &[String], series: Series, bin: &Path) -> Result<()> {
    let dir = super::bench_dir()?.join("vm");
    fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let copy = |from: &Path, name: &str| -> Result<PathBuf> {
        let to = dir.join(name);
        fs::copy(from, &to)
            .with_context(|| format!("copying {} to {}", from.display(), to.display()))?;
        Ok(to)
    };
    let bin = copy(bin, "routeguard")?;
    let xtask = copy(
        &std::env::current_exe().context("finding the xtask binary")?,
        "xtask",
    )?;
    let mut argv: Vec<String> = vec![
        "env".to_owned(),
        format!("CARGO_TARGET_DIR={GUEST_TARGET}"),
        xtask.to_string_lossy().into_owned(),
        "bench".to_owned(),
        bench.to_owned(),
    ];
    argv.extend(args.iter().cloned());
    argv.push(format!("--bin={}", bin.display()));
    match vm::run_command(series, &argv, VM_TIMEOUT)? {
        Some(0) => Ok(()),
        Some(code) => bail!("the bench failed in the {series} guest (exit status {code})"),
        None => bail!("the {series} guest stopped before the bench finished"),
    }
}
