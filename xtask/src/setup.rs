//! `cargo xtask setup`: installs everything routeguard needs to build and test, idempotently.
//!
//! Each step checks first and does nothing when its piece is present, so `build`, `run`, `test`
//! and `bench` call it every time (the all-present path takes well under 2 s). Steps that act
//! say what they do; a failing step says which one failed and what to do about it.
use std::{
    fs,
    path::{Path, PathBuf},
    process::Command,
    time::Instant,
};

use anyhow::{anyhow, bail, Context as _, Result};

use crate::cmd;

/// How `setup` behaves.
#[derive(Clone, Copy, Debug, Default)]
pub struct Options {
    /// Print the commands every step would run, as if everything were missing; change nothing.
    pub dry_run: bool,
    /// Also report the steps that were already satisfied.
    pub verbose: bool,
}

const PREFIX: &str = "routeguard setup:";

/// Debian packages the build and the tests need, keyed by a file that proves they are there.
/// (program name looked up on PATH/sbin, or an absolute path, → package).
const DEBIAN_PACKAGES: &[(&str, &str)] = &[
    ("ip", "iproute2"),
    ("route", "net-tools"),
    ("python3", "python3"),
    // systemd-networkd ships in the `systemd` package on Debian 12.
    ("systemd-networkd", "systemd"),
    // Headless browser for the report test (renders the HTML report, takes a screenshot).
    ("/usr/bin/chromium", "chromium"),
    // Builds the Debian root that `cargo xtask vm-unit` boots with systemd as PID 1.
    ("debootstrap", "debootstrap"),
    // A real container runtime for the Kubernetes tests (tests/tests/kubernetes.rs): each test
    // starts its own containerd with state under a temporary directory; installing the package
    // does not start the host's (no systemd here; on a systemd host it is enabled as usual).
    ("containerd", "containerd"),
    ("ctr", "containerd"),
    ("runc", "runc"),
    // The tests' container image is built from the static busybox (its `ip` applet).
    ("/bin/busybox", "busybox-static"),
];

/// Finds pyroute2 without importing it (a full import takes most of a second).
const PYROUTE2_PRESENT: &str =
    "import importlib.util, sys; sys.exit(importlib.util.find_spec('pyroute2') is None)";

/// Runs every step; returns an error naming the step that failed.
pub fn run(opts: Options) -> Result<()> {
    let start = Instant::now();
    let mut setup = Setup {
        opts,
        acted: false,
        apt_updated: false,
    };
    let steps: [(&str, StepFn, &str); 5] = [
        (
            "rust toolchains",
            Setup::toolchains,
            "check that rustup works and can reach the Rust distribution server",
        ),
        (
            "bpf-linker",
            Setup::bpf_linker,
            "see the cargo output above; the build needs a C toolchain (`cc`) and the nightly \
             toolchain's libLLVM",
        ),
        (
            "system packages",
            Setup::packages,
            "run as root on Debian/Ubuntu, or install them with your package manager",
        ),
        (
            "pyroute2",
            Setup::pyroute2,
            "install it by hand: `python3 -m pip install pyroute2` (or the python3-pyroute2 package)",
        ),
        (
            "mounts",
            Setup::mounts,
            "run as root; `mount -t tracefs nodev /sys/kernel/tracing`, `mount -t bpf bpf /sys/fs/bpf`",
        ),
    ];
    let total = steps.len();
    for (index, (name, step, fix)) in steps.into_iter().enumerate() {
        step(&mut setup).with_context(|| {
            format!(
                "{PREFIX} step {}/{total} ({name}) failed; to fix: {fix}; then rerun `cargo xtask setup`",
                index + 1
            )
        })?;
    }
    let elapsed = start.elapsed().as_secs_f64();
    if opts.dry_run {
        println!("{PREFIX} dry run done; nothing was changed");
    } else if setup.acted {
        println!("{PREFIX} done in {elapsed:.1} s");
    } else {
        println!("{PREFIX} everything already present ({elapsed:.2} s)");
    }
    Ok(())
}

/// One setup step: checks, and installs what is missing.
type StepFn = fn(&mut Setup) -> Result<()>;

struct Setup {
    opts: Options,
    /// Whether any step installed or mounted something.
    acted: bool,
    /// Whether `apt-get update` already ran (it runs at most once, and only before an install).
    apt_updated: bool,
}

impl Setup {
    fn present(&self, what: &str) {
        if self.opts.verbose && !self.opts.dry_run {
            println!("{PREFIX} {what}: already present, skipping");
        }
    }

    /// Announces `what`, then runs `cmd` (or only prints it in a dry run).
    fn act(&mut self, what: &str, cmd: &mut Command) -> Result<()> {
        if self.opts.dry_run {
            println!("{PREFIX} {what}: would run `{}`", cmd::display(cmd));
            return Ok(());
        }
        println!("{PREFIX} {what}…");
        println!("{PREFIX}   $ {}", cmd::display(cmd));
        self.acted = true;
        cmd::run(cmd)
    }

    /// The nightly toolchain with rust-src (eBPF crate, `-Z build-std=core`), and rustfmt and
    /// clippy for the default toolchain (`cargo xtask test`).
    fn toolchains(&mut self) -> Result<()> {
        if cmd::find_program("rustup").is_none() {
            bail!("rustup is not on PATH (source \"$HOME/.cargo/env\" or install rustup)");
        }
        let toolchains = cmd::stdout_of(Command::new("rustup").args(["toolchain", "list"]))?;
        let has_nightly = toolchains.lines().any(|l| l.starts_with("nightly-"));
        if has_nightly && !self.opts.dry_run {
            self.present("nightly toolchain");
        } else {
            self.act(
                "installing the nightly toolchain",
                Command::new("rustup").args([
                    "toolchain",
                    "install",
                    "nightly",
                    "--profile",
                    "minimal",
                ]),
            )?;
        }

        let nightly_components = if has_nightly {
            installed_components(Some("nightly"))?
        } else {
            Vec::new()
        };
        if nightly_components.iter().any(|c| c.starts_with("rust-src")) && !self.opts.dry_run {
            self.present("rust-src for nightly");
        } else {
            self.act(
                "installing rust-src for nightly",
                Command::new("rustup").args([
                    "component",
                    "add",
                    "rust-src",
                    "--toolchain",
                    "nightly",
                ]),
            )?;
        }

        let default_components = installed_components(None)?;
        let missing: Vec<&str> = ["rustfmt", "clippy"]
            .into_iter()
            .filter(|want| {
                self.opts.dry_run || !default_components.iter().any(|c| c.starts_with(want))
            })
            .collect();
        if missing.is_empty() {
            self.present("rustfmt and clippy");
        } else {
            self.act(
                &format!(
                    "installing {} for the default toolchain",
                    missing.join(" and ")
                ),
                Command::new("rustup")
                    .args(["component", "add"])
                    .args(&missing),
            )?;
        }
        Ok(())
    }

    /// bpf-linker, built from crates.io against the nightly toolchain's own libLLVM, so that no
    /// system LLVM of a matching version is needed.
    fn bpf_linker(&mut self) -> Result<()> {
        if !self.opts.dry_run && cmd::succeeds(Command::new("bpf-linker").arg("--version")) {
            self.present("bpf-linker");
            return Ok(());
        }
        let (mut install, llvm_major) = match bpf_linker_install_command() {
            Ok(found) => found,
            // A dry run on a machine without nightly cannot derive the names yet: show the shape.
            Err(err) if self.opts.dry_run => {
                println!("{PREFIX} bpf-linker: cannot derive the LLVM names yet ({err:#}); after step 1 it would run:");
                (
                    bpf_linker_command(Path::new("<sysroot>/lib"), "LLVM-<major>-…", "<major>"),
                    String::from("<major>"),
                )
            }
            Err(err) => return Err(err),
        };
        self.act(
            &format!(
                "building bpf-linker from crates.io against nightly's LLVM {llvm_major} \
                 (takes about 4 minutes)"
            ),
            &mut install,
        )
    }

    /// Debian packages, installed only when the program they provide is missing.
    fn packages(&mut self) -> Result<()> {
        let mut missing: Vec<&str> = DEBIAN_PACKAGES
            .iter()
            .filter(|(program, _)| self.opts.dry_run || !program_present(program))
            .map(|(_, package)| *package)
            .collect();
        missing.dedup();
        if missing.is_empty() {
            self.present(
                "system packages (iproute2, net-tools, python3, systemd, chromium, debootstrap, containerd, runc, busybox-static)",
            );
            return Ok(());
        }
        if !self.opts.dry_run {
            if cmd::find_program("apt-get").is_none() {
                bail!("missing packages {missing:?} and apt-get is not available");
            }
            if !cmd::is_root() {
                bail!("missing packages {missing:?}; installing them needs root");
            }
        }
        self.apt_install(&missing)
    }

    /// `apt-get install` of `packages`, after one `apt-get update` per setup run.
    fn apt_install(&mut self, packages: &[&str]) -> Result<()> {
        if !self.apt_updated {
            self.act(
                "refreshing the package lists",
                Command::new("apt-get").args(["update", "-q"]),
            )?;
            self.apt_updated = true;
        }
        self.act(
            &format!("installing {}", packages.join(", ")),
            Command::new("apt-get")
                .env("DEBIAN_FRONTEND", "noninteractive")
                .args(["install", "-y", "-q", "--no-install-recommends"])
                .args(packages),
        )
    }

    /// pyroute2 (used by the integration tests to send netlink requests from Python).
    fn pyroute2(&mut self) -> Result<()> {
        if !self.opts.dry_run
            && cmd::succeeds(Command::new("python3").args(["-c", PYROUTE2_PRESENT]))
        {
            self.present("pyroute2");
            return Ok(());
        }
        if self.opts.dry_run
            || cmd::succeeds(Command::new("python3").args(["-m", "pip", "--version"]))
        {
            let pip = self.act(
                "installing pyroute2 from PyPI",
                Command::new("python3").args(["-m", "pip", "install", "-q", "pyroute2"]),
            );
            match pip {
                Ok(()) => return Ok(()),
                // Debian's python3 refuses pip installs into the system (PEP 668,
                // "externally-managed-environment"): fall back to Debian's package.
                Err(err) if cmd::find_program("apt-get").is_some() && cmd::is_root() => {
                    println!("{PREFIX} pip failed ({err:#})");
                }
                Err(err) => return Err(err),
            }
        }
        // Debian's own python3 has no pip by default: take Debian's package instead.
        println!("{PREFIX} taking Debian's python3-pyroute2 instead");
        self.apt_install(&["python3-pyroute2"])
    }

    /// tracefs (tracepoints) and bpffs (pinning), mounted when absent.
    fn mounts(&mut self) -> Result<()> {
        let mounts = fs::read_to_string("/proc/mounts").context("reading /proc/mounts")?;
        for (fstype, source, target) in [
            ("tracefs", "nodev", "/sys/kernel/tracing"),
            ("bpf", "bpf", "/sys/fs/bpf"),
        ] {
            let mounted = mounts.lines().any(|line| {
                let mut fields = line.split_whitespace().skip(1);
                fields.next() == Some(target) && fields.next() == Some(fstype)
            });
            if mounted && !self.opts.dry_run {
                self.present(&format!("{fstype} on {target}"));
                continue;
            }
            if !self.opts.dry_run && !cmd::is_root() {
                bail!("{fstype} is not mounted on {target}; mounting it needs root");
            }
            self.act(
                &format!("mounting {fstype} on {target}"),
                Command::new("mount").args(["-t", fstype, source, target]),
            )?;
        }
        Ok(())
    }
}

/// Components installed for `toolchain` (the active one when `None`).
fn installed_components(toolchain: Option<&str>) -> Result<Vec<String>> {
    let mut list = Command::new("rustup");
    list.args(["component", "list", "--installed"]);
    if let Some(toolchain) = toolchain {
        list.args(["--toolchain", toolchain]);
    }
    Ok(cmd::stdout_of(&mut list)?
        .lines()
        .map(str::to_owned)
        .collect())
}

fn program_present(program: &str) -> bool {
    if program == "systemd-networkd" {
        // Not on PATH: it lives in systemd's private directory.
        return [
            "/lib/systemd/systemd-networkd",
            "/usr/lib/systemd/systemd-networkd",
        ]
        .iter()
        .any(|p| Path::new(p).exists());
    }
    cmd::find_program(program).is_some()
}

/// Derives the bpf-linker install command from the nightly toolchain: its LLVM major version
/// (`rustc +nightly -vV`) and the libLLVM dylib in its sysroot. Returns it with the major.
fn bpf_linker_install_command() -> Result<(Command, String)> {
    let version = cmd::stdout_of(Command::new("rustc").args(["+nightly", "-vV"]))?;
    let major = llvm_major(&version)?;
    let sysroot = cmd::stdout_of(Command::new("rustc").args(["+nightly", "--print", "sysroot"]))?;
    let libdir = PathBuf::from(sysroot.trim()).join("lib");
    let dylib = llvm_dylib(&libdir, &major)?;
    Ok((bpf_linker_command(&libdir, &dylib, &major), major))
}

fn bpf_linker_command(libdir: &Path, dylib: &str, major: &str) -> Command {
    let libdir = libdir.display();
    let mut install = Command::new("cargo");
    install
        .env(
            "RUSTFLAGS",
            format!("-L {libdir} -l dylib={dylib} -C link-arg=-Wl,-rpath,{libdir}"),
        )
        .args([
            "+nightly",
            "install",
            "bpf-linker",
            "--no-default-features",
            "--features",
        ])
        .arg(format!("llvm-{major},no-llvm-linking"));
    install
}

/// "LLVM version: 22.1.4" → "22".
fn llvm_major(rustc_vv: &str) -> Result<String> {
    let version = rustc_vv
        .lines()
        .find_map(|line| line.strip_prefix("LLVM version:"))
        .ok_or_else(|| anyhow!("`rustc +nightly -vV` printed no \"LLVM version:\" line"))?;
    let major = version.trim().split('.').next().unwrap_or_default();
    if major.is_empty() || !major.chars().all(|c| c.is_ascii_digit()) {
        bail!(
            "cannot read the LLVM major version from {:?}",
            version.trim()
        );
    }
    Ok(major.to_owned())
}

/// Finds `lib<name>.so` with `<name>` = `LLVM-<major>-…` in `libdir` and returns `<name>`.
fn llvm_dylib(libdir: &Path, major: &str) -> Result<String> {
    let prefix = format!("libLLVM-{major}-");
    let entries = fs::read_dir(libdir).with_context(|| format!("listing {}", libdir.display()))?;
    entries
        .filter_map(|entry| entry.ok()?.file_name().into_string().ok())
        .find_map(|name| {
            name.starts_with(&prefix)
                .then(|| name.strip_suffix(".so").map(|n| n[3..].to_owned()))
                .flatten()
        })
        .ok_or_else(|| {
            anyhow!(
                "no {prefix}*.so in {}; is the nightly toolchain complete?",
                libdir.display()
            )
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_llvm_major() {
        let vv = "rustc 1.97.0-nightly (e50aa6fba 2026-05-19)\nhost: x86_64-unknown-linux-gnu\n\
                  release: 1.97.0-nightly\nLLVM version: 22.1.4\n";
        assert_eq!(llvm_major(vv).unwrap(), "22");
        assert!(llvm_major("rustc 1.0\n").is_err());
        assert!(llvm_major("LLVM version: x.1\n").is_err());
    }

    #[test]
    fn finds_llvm_dylib() {
        let dir = std::env::temp_dir().join(format!("xtask-llvm-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        for name in [
            "libLLVM.so.22.1-rust-1.97.0-nightly",
            "libLLVM-22-rust-1.97.0-nightly.so",
            "librustc_driver-b5a965480ee51f9a.so",
        ] {
            fs::write(dir.join(name), b"").unwrap();
        }
        let found = llvm_dylib(&dir, "22");
        let other = llvm_dylib(&dir, "21");
        fs::remove_dir_all(&dir).unwrap();
        assert_eq!(found.unwrap(), "LLVM-22-rust-1.97.0-nightly");
        assert!(other.is_err());
    }
}
