//! `cargo xtask vm-test`: boots stock Debian kernels (6.1 from bookworm, 6.12 from
//! bookworm-backports) under QEMU and runs a command inside — by default the integration test
//! binaries, built on the host — returning its exit status.
//!
//! The guest sees the host's root read-only over virtio-9p (tmpfs on /tmp, /run, /var/tmp) and
//! one shared read-write folder, `target/vm/run/<kernel>/`, where it writes the exit code and
//! where the console log is kept. Everything it needs (QEMU, busybox-static, kmod, the kernels)
//! is fetched on first use, through a private apt configuration that leaves the host's alone.
//!
//! `cargo xtask vm-unit` (`systemd.rs`) boots the same kernels into a minimal Debian with
//! systemd as PID 1 instead, to run the shipped systemd unit.
mod apt;
mod cpio;
mod guest;
mod initramfs;
mod kernel;
mod qemu;
mod rootfs;
pub mod systemd;
mod tests;

use std::{
    ffi::OsString,
    fs,
    path::{Path, PathBuf},
    process::ExitCode,
    time::Duration,
};

use anyhow::{bail, Context as _, Result};

pub use kernel::Series;

use crate::{build, cmd, paths, setup};

const PREFIX: &str = "routeguard vm:";

/// Host packages the harness needs; qemu-system-x86/qemu-utils come from bookworm-backports.
const PACKAGES: &[&str] = &["qemu-system-x86", "qemu-utils", "busybox-static", "kmod"];

/// Environment variable the test harness reads to pick routeguard's capture path
/// (`--capture <value>`); unset means routeguard's default.
pub const CAPTURE_ENV: &str = "ROUTEGUARD_TEST_CAPTURE";

/// A VM still running after this long is killed (a hung guest must not hang CI). The 6.1 test
/// run took 28 minutes on a 2-core host loaded by other builds (load average 7).
const DEFAULT_TIMEOUT_SECS: u64 = 3600;

/// Boots of one kernel tried before giving up, when the guest hangs before its command.
const BOOT_ATTEMPTS: u32 = 3;

/// Set in the guest to the kernel series, so tests can tell they run in the VM.
pub const VM_ENV: &str = "ROUTEGUARD_VM";

#[derive(clap::Args)]
pub struct Args {
    /// Kernel to boot: 6.1 (Debian 12), 6.12 (Debian 12 backports), or all (one after the other).
    #[arg(long, default_value = "all", value_parser = ["6.1", "6.12", "all"])]
    kernel: String,
    /// Capture path for the integration tests (passed to their tracers as `--capture VALUE`
    /// through $ROUTEGUARD_TEST_CAPTURE, which is also the default); routeguard's own choice
    /// when neither is set.
    #[arg(long, value_name = "VALUE")]
    capture: Option<String>,
    /// Kill a VM that is still running after this many seconds.
    #[arg(long, default_value_t = DEFAULT_TIMEOUT_SECS, value_name = "SECONDS")]
    timeout: u64,
    /// Keep the guest's console in target/vm/run/<kernel>/console.log only (its tail is shown
    /// on failure) instead of also streaming it to the terminal.
    #[arg(long)]
    quiet: bool,
    /// Command to run in the guest instead of the integration tests, as `-- COMMAND ARGS...`
    /// (run in the workspace root, e.g. `-- uname -r` or `-- sh -c 'CMD; CMD'`).
    #[arg(last = true, value_name = "COMMAND")]
    command: Vec<OsString>,
}

/// One kernel's run.
pub struct KernelRun {
    pub series: Series,
    pub package: String,
    /// The command's exit status; None when the VM died or timed out before writing it.
    pub exit_code: Option<i32>,
    pub passed: u64,
    pub failed: u64,
    pub elapsed: Duration,
    pub log: PathBuf,
}

/// `cargo xtask vm-test`.
pub fn run(args: Args) -> Result<ExitCode> {
    let series = match args.kernel.as_str() {
        "6.1" => vec![Series::V6_1],
        "6.12" => vec![Series::V6_12],
        _ => Series::ALL.to_vec(),
    };
    let opts = Options {
        capture: args.capture.or(Options::from_env().capture),
        timeout: Duration::from_secs(args.timeout),
        echo: !args.quiet,
    };
    let command = if args.command.is_empty() {
        None
    } else {
        Some(
            args.command
                .iter()
                .map(|a| guest::quote(&a.to_string_lossy()))
                .collect::<Vec<_>>()
                .join(" "),
        )
    };
    if command.is_none() {
        setup::run(setup::Options::default())?;
    }
    let runs = run_kernels(&series, command.as_deref(), &opts)?;
    summarize(&runs);
    let code = runs
        .iter()
        .map(|r| r.exit_code.unwrap_or(1))
        .find(|&code| code != 0)
        .unwrap_or(0);
    Ok(ExitCode::from(
        u8::try_from(code.clamp(0, 255)).unwrap_or(1),
    ))
}

/// Runs `argv` in the workspace root inside `series`'s kernel, its console streamed; returns
/// the command's exit status (None when the VM died or timed out before it wrote one).
pub fn run_command(series: Series, argv: &[String], timeout: Duration) -> Result<Option<i32>> {
    let command = argv
        .iter()
        .map(|a| guest::quote(a))
        .collect::<Vec<_>>()
        .join(" ");
    let opts = Options {
        capture: None,
        timeout,
        echo: true,
    };
    let runs = run_kernels(&[series], Some(&command), &opts)?;
    Ok(runs.first().and_then(|r| r.exit_code))
}

/// Whether this process runs inside a `vm-test` guest (where the host's root is read-only).
pub fn in_guest() -> bool {
    std::env::var_os(VM_ENV).is_some()
}

pub struct Options {
    pub capture: Option<String>,
    pub timeout: Duration,
    pub echo: bool,
}

impl Options {
    /// `cargo xtask test`'s settings: the capture path from $ROUTEGUARD_TEST_CAPTURE, the
    /// default timeout, console streamed.
    pub fn from_env() -> Self {
        Options {
            capture: std::env::var(CAPTURE_ENV).ok().filter(|c| !c.is_empty()),
            timeout: Duration::from_secs(DEFAULT_TIMEOUT_SECS),
            echo: true,
        }
    }
}

/// Installs what is missing, builds the tests when `command` is None (the default: the
/// integration tests), and boots each kernel in turn.
pub fn run_kernels(
    series: &[Series],
    command: Option<&str>,
    opts: &Options,
) -> Result<Vec<KernelRun>> {
    let mut host = Host::prepare("vm-test")?;
    let vm_dir = host.vm_dir.clone();
    let root = paths::workspace_root();
    for hidden in initramfs::GUEST_TMPFS.split(' ') {
        for (what, path) in [("the workspace", &root), ("the target directory", &vm_dir)] {
            if path.starts_with(hidden) {
                bail!(
                    "{what} is under {hidden} ({}), which the guest replaces with a tmpfs: it \
                     would see neither the binaries nor its scripts; run vm-test from a checkout \
                     elsewhere (e.g. /work or /srv)",
                    path.display()
                );
            }
        }
    }
    let workload = match command {
        Some(command) => Workload::Command(command.to_owned()),
        None => Workload::Tests {
            bin: build::run(false)?,
            binaries: tests::build_test_binaries(&paths::workspace_root())?,
        },
    };
    let mut env: Vec<(String, OsString)> = vec![("RUST_BACKTRACE".into(), "1".into())];
    if let Some(capture) = &opts.capture {
        env.push((CAPTURE_ENV.into(), capture.into()));
    }

    let mut runs = Vec::new();
    for &series in series {
        let kernel = host.kernel(series)?;
        runs.push(boot_one(&kernel, series, &vm_dir, &workload, &env, opts)?);
        crate::interrupt::check()?;
    }
    Ok(runs)
}

/// The host side of every VM run: root, QEMU and the other host packages installed, Ctrl-C
/// handled, and the private apt configuration (made on first need) for kernels.
struct Host {
    vm_dir: PathBuf,
    apt_dir: PathBuf,
    apt: Option<apt::PrivateApt>,
}

impl Host {
    fn prepare(task: &str) -> Result<Self> {
        if !cmd::is_root() {
            bail!(
                "{task} needs root: it installs packages, and the guest reads host files \
                 through QEMU with the caller's rights (rerun as root)"
            );
        }
        crate::interrupt::install();
        let vm_dir = paths::target_dir().join("vm");
        let apt_dir = vm_dir.join("apt");
        let mut apt = None;
        ensure_packages(&mut apt, &apt_dir)?;
        Ok(Host {
            vm_dir,
            apt_dir,
            apt,
        })
    }

    /// The newest kernel of `series`, fetched and unpacked on first use.
    fn kernel(&mut self, series: Series) -> Result<kernel::Kernel> {
        kernel::fetch(
            series,
            &self.vm_dir.join("kernels"),
            &mut self.apt,
            &self.apt_dir,
        )
    }
}

/// Prepares the shared folder (stage 2, initramfs) for `kernel`, boots it, and reads back the
/// exit code.
fn boot_one(
    kernel: &kernel::Kernel,
    series: Series,
    vm_dir: &Path,
    workload: &Workload,
    env: &[(String, OsString)],
    opts: &Options,
) -> Result<KernelRun> {
    let root = paths::workspace_root();
    let shared = vm_dir.join("run").join(series.to_string());
    if shared.exists() {
        fs::remove_dir_all(&shared).with_context(|| format!("clearing {}", shared.display()))?;
    }
    fs::create_dir_all(&shared).with_context(|| format!("creating {}", shared.display()))?;
    let mut guest_env = env.to_vec();
    guest_env.push((VM_ENV.into(), series.to_string().into()));
    let (command, cwd) = match workload {
        Workload::Command(command) => (command.clone(), root),
        Workload::Tests { bin, binaries } => {
            guest_env.push(("ROUTEGUARD_BIN".into(), bin.clone().into_os_string()));
            // cargo runs test binaries in their package's directory.
            (
                guest::test_runner(&shared, binaries, series)?,
                root.join("tests"),
            )
        }
    };
    let stage2 = guest::write(&guest::Plan {
        shared: &shared,
        kernel_root: &kernel.root,
        cwd: &cwd,
        env: guest_env,
        command,
    })?;
    let initramfs = shared.join("initramfs.cpio");
    initramfs::build(
        kernel,
        initramfs::BOOT_MODULES,
        &initramfs::init_script(&shared, &stage2),
        &initramfs,
    )?;
    let log = shared.join("console.log");
    let machine = qemu::Machine {
        vmlinuz: &kernel.vmlinuz,
        initramfs: &initramfs,
        append: CMDLINE,
        shares: &[
            qemu::Share {
                tag: initramfs::ROOT_TAG,
                path: Path::new("/"),
                readonly: true,
            },
            qemu::Share {
                tag: initramfs::SHARED_TAG,
                path: &shared,
                readonly: false,
            },
        ],
        log: &log,
        timeout: opts.timeout,
        echo: opts.echo,
    };
    run_machine(&machine, kernel, series, &shared, opts)
}

/// The kernel command line of every guest (`vm-unit` adds systemd's options).
pub const CMDLINE: &str = "console=ttyS0 rdinit=/init panic=-1 quiet loglevel=4";

/// Boots `machine` (again, up to [`BOOT_ATTEMPTS`] times, while it hangs before its command)
/// and reads the exit code the guest wrote into `shared`.
fn run_machine(
    machine: &qemu::Machine,
    kernel: &kernel::Kernel,
    series: Series,
    shared: &Path,
    opts: &Options,
) -> Result<KernelRun> {
    let log = machine.log;
    println!(
        "{PREFIX} booting {} ({series}) under QEMU/TCG; console log: {}",
        kernel.package,
        log.display()
    );
    let mut boot = machine.boot()?;
    for attempt in 2..=BOOT_ATTEMPTS {
        if boot.started || crate::interrupt::check().is_err() {
            break;
        }
        let stuck = log.with_extension(format!("boot{}.log", attempt - 1));
        let _ = fs::rename(log, &stuck);
        eprintln!(
            "{PREFIX} {series}: the guest did not reach its command within {} s (stuck in \
             boot; console kept in {}); booting it again, attempt {attempt} of {BOOT_ATTEMPTS}",
            qemu::BOOT_TIMEOUT.as_secs(),
            stuck.display()
        );
        boot = machine.boot()?;
    }
    let exit_code = fs::read_to_string(shared.join(guest::EXIT_CODE_FILE))
        .ok()
        .and_then(|s| s.trim().parse().ok());
    if !boot.finished {
        eprintln!(
            "{PREFIX} {series}: the VM did not power off within {} s and was killed",
            opts.timeout.as_secs()
        );
    }
    if exit_code.is_none() || (exit_code != Some(0) && !opts.echo) {
        show_tail(log);
    }
    if exit_code.is_none() {
        eprintln!(
            "{PREFIX} {series}: the guest wrote no exit code (see {})",
            log.display()
        );
    }
    Ok(KernelRun {
        series,
        package: kernel.package.clone(),
        exit_code,
        passed: boot.passed,
        failed: boot.failed,
        elapsed: boot.elapsed,
        log: log.to_owned(),
    })
}

/// What the guest runs.
enum Workload {
    /// The integration test binaries, with the release routeguard as $ROUTEGUARD_BIN.
    Tests {
        bin: PathBuf,
        binaries: Vec<PathBuf>,
    },
    /// A shell command line given after `--`.
    Command(String),
}

fn ensure_packages(apt: &mut Option<apt::PrivateApt>, apt_dir: &Path) -> Result<()> {
    let missing: Vec<&str> = PACKAGES
        .iter()
        .copied()
        .filter(|package| !installed(package))
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    println!("{PREFIX} missing host packages: {}", missing.join(", "));
    let apt = match apt {
        Some(apt) => apt,
        None => apt.insert(apt::PrivateApt::new(apt_dir)?),
    };
    apt.install(PACKAGES)
}

fn installed(package: &str) -> bool {
    cmd::stdout_of(std::process::Command::new("dpkg-query").args([
        "-W",
        "-f",
        "${Status}",
        package,
    ]))
    .is_ok_and(|status| status.trim() == "install ok installed")
}

fn show_tail(log: &Path) {
    let Ok(text) = fs::read_to_string(log) else {
        return;
    };
    let lines: Vec<&str> = text.lines().collect();
    let start = lines.len().saturating_sub(40);
    eprintln!(
        "{PREFIX} last {} console lines ({}):",
        lines.len() - start,
        log.display()
    );
    for line in &lines[start..] {
        eprintln!("  {line}");
    }
}

fn summarize(runs: &[KernelRun]) {
    println!();
    println!("vm-test summary:");
    for run in runs {
        let status = match run.exit_code {
            Some(0) => String::from("ok"),
            Some(code) => format!("FAILED (exit {code})"),
            None => String::from("FAILED (no exit code)"),
        };
        println!(
            "  {:<5} {:<34} {status}, {} passed, {} failed, {:.0} s",
            run.series.to_string(),
            run.package,
            run.passed,
            run.failed,
            run.elapsed.as_secs_f64()
        );
        if run.exit_code != Some(0) {
            println!("        console: {}", run.log.display());
        }
    }
}
