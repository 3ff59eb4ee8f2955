//! Boots one VM under QEMU (TCG: the machine's KVM is a nested flavour that cannot boot these
//! kernels) and follows its serial console until it powers off or the timeout passes.
use std::{
    fs::File,
    io::{BufRead as _, BufReader, Write as _},
    path::Path,
    process::{Child, Command, Stdio},
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    thread,
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result};

use crate::{cmd, test::parse_test_result};

pub const QEMU: &str = "qemu-system-x86_64";

/// A guest that has not started its command by then is stuck in boot and is killed (seen once
/// under TCG on a loaded host: RCU stall warnings, then nothing for ten minutes). Boots take
/// 3.5–12 s.
pub const BOOT_TIMEOUT: Duration = Duration::from_secs(180);

/// The line stage 2 prints when it starts the command (see `guest.rs`).
pub const STARTED_MARKER: &str = "routeguard-vm: kernel ";

/// How a boot ended.
pub struct Boot {
    /// False when the VM was killed at the timeout (or stuck in boot).
    pub finished: bool,
    /// The guest reached its command (printed [`STARTED_MARKER`]).
    pub started: bool,
    pub elapsed: Duration,
    /// Sums of the console's cargo "test result:" lines.
    pub passed: u64,
    pub failed: u64,
}

/// A host directory the guest mounts over virtio-9p by its tag.
pub struct Share<'a> {
    pub tag: &'a str,
    pub path: &'a Path,
    pub readonly: bool,
}

pub struct Machine<'a> {
    pub vmlinuz: &'a Path,
    pub initramfs: &'a Path,
    /// The kernel command line.
    pub append: &'a str,
    pub shares: &'a [Share<'a>],
    /// Console copy (the whole output, kept after the run).
    pub log: &'a Path,
    pub timeout: Duration,
    /// Echo the console to stdout as it comes (else only the log file).
    pub echo: bool,
}

impl Machine<'_> {
    pub fn command(&self) -> Command {
        let mut qemu = Command::new(QEMU);
        qemu.args([
            "-nodefaults",
            "-no-user-config",
            "-no-reboot",
            "-display",
            "none",
        ])
        .args([
            "-accel",
            "tcg,thread=multi",
            "-cpu",
            "max",
            "-smp",
            "2",
            "-m",
            "2G",
        ])
        // The console on stdout; stdin is not read (the guest runs unattended).
        .args([
            "-chardev",
            "stdio,id=console,signal=off",
            "-serial",
            "chardev:console",
        ])
        .arg("-kernel")
        .arg(self.vmlinuz)
        .arg("-initrd")
        .arg(self.initramfs)
        .arg("-append")
        .arg(self.append);
        for (index, share) in self.shares.iter().enumerate() {
            // multidevs=remap: a shared tree may span several filesystems (the host's root
            // does); without it inode numbers from different devices could collide in the guest.
            let mut fsdev = format!(
                "local,id=fs{index},path={},security_model=none,multidevs=remap",
                share.path.display()
            );
            if share.readonly {
                fsdev.push_str(",readonly=on");
            }
            qemu.arg("-fsdev").arg(fsdev).arg("-device").arg(format!(
                "virtio-9p-pci,fsdev=fs{index},mount_tag={}",
                share.tag
            ));
        }
        qemu
    }

    /// Runs the VM to its end (or kills it, by pid, at the timeout).
    pub fn boot(&self) -> Result<Boot> {
        let mut qemu = self.command();
        println!("routeguard vm:   $ {}", cmd::display(&qemu));
        let start = Instant::now();
        let mut child = qemu
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .spawn()
            .with_context(|| format!("could not start {QEMU}"))?;
        let stdout = child.stdout.take().context("no stdout pipe")?;
        let mut log =
            File::create(self.log).with_context(|| format!("creating {}", self.log.display()))?;
        let echo = self.echo;
        let started = Arc::new(AtomicBool::new(false));
        let seen = Arc::clone(&started);
        let reader = thread::spawn(move || {
            let (mut passed, mut failed) = (0, 0);
            for line in BufReader::new(stdout).split(b'\n') {
                let Ok(line) = line else { break };
                let line = String::from_utf8_lossy(&line);
                let line = line.trim_end_matches('\r');
                if echo {
                    println!("{line}");
                }
                let _ = writeln!(log, "{line}");
                if line.starts_with(STARTED_MARKER) {
                    seen.store(true, Ordering::Relaxed);
                }
                if let Some((p, f)) = parse_test_result(line) {
                    passed += p;
                    failed += f;
                }
            }
            (passed, failed)
        });
        let finished = wait_or_kill(&mut child, self.timeout, &started)?;
        let (passed, failed) = reader.join().unwrap_or_default();
        Ok(Boot {
            finished,
            started: started.load(Ordering::Relaxed),
            elapsed: start.elapsed(),
            passed,
            failed,
        })
    }
}

/// Waits for `child` until `timeout`, or [`BOOT_TIMEOUT`] while `started` is not set; then
/// kills it (SIGKILL, by its pid) and reaps it. Returns whether it ended by itself.
fn wait_or_kill(child: &mut Child, timeout: Duration, started: &AtomicBool) -> Result<bool> {
    let begin = Instant::now();
    let deadline = begin + timeout;
    loop {
        if child.try_wait().context("waiting for qemu")?.is_some() {
            return Ok(true);
        }
        let now = Instant::now();
        let hung = !started.load(Ordering::Relaxed) && now >= begin + BOOT_TIMEOUT;
        if now >= deadline || hung || crate::interrupt::check().is_err() {
            // Child::kill sends SIGKILL to this child's pid only.
            let _ = child.kill();
            let _ = child.wait();
            return Ok(false);
        }
        thread::sleep(Duration::from_millis(100));
    }
}
