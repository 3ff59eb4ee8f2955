//! The O arm: a capture `routeguard daemon` pinned and no daemon reads any more. It must cost
//! no more than the floor (issue 17: an orphaned capture stops recording after
//! `capture.orphan_after`, its programs returning at once).
//!
//! Made before each O run: a daemon starts on the syscall path (the one that pins) with a pin
//! directory of its own and `orphan_after = "2s"`, is killed with SIGKILL once it is running
//! (its pins stay, as after a crash or an uninstall without `--unpin`), and the run waits until
//! the capture is orphaned. The pins are removed after the run (detaching the programs).

use std::{
    fs,
    io::{BufRead as _, BufReader},
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{bail, Context as _, Result};

/// The daemon's `capture.orphan_after` (the config's minimum).
const ORPHAN_AFTER: Duration = Duration::from_secs(2);
/// Waited beyond it before the clock starts.
const MARGIN: Duration = Duration::from_secs(2);
/// How long the daemon may take to start.
const START_TIMEOUT: Duration = Duration::from_secs(120);

/// A pinned capture nobody reads; its pins (and the daemon's files) removed on drop.
pub struct Orphan {
    dir: PathBuf,
    pins: PathBuf,
}

impl Orphan {
    /// Starts a daemon pinning into a directory of its own, kills it once running, and waits
    /// until its capture is orphaned.
    pub fn make(bin: &Path, dir: &Path) -> Result<Self> {
        let orphan = Self {
            dir: dir.join("orphan"),
            pins: PathBuf::from(format!(
                "/sys/fs/bpf/rg-bench-orphan-{}",
                std::process::id()
            )),
        };
        let _ = fs::remove_dir_all(&orphan.pins);
        let _ = fs::remove_dir_all(&orphan.dir);
        fs::create_dir_all(&orphan.dir)
            .with_context(|| format!("creating {}", orphan.dir.display()))?;
        let config = orphan.dir.join("routeguard.toml");
        fs::write(
            &config,
            format!(
                "[store]\nenabled = false\n[journald]\nenabled = false\n[metrics]\nenabled = false\n\
                 [capture]\npath = \"syscall\"\npin_dir = \"{}\"\norphan_after = \"{}s\"\n",
                orphan.pins.display(),
                ORPHAN_AFTER.as_secs()
            ),
        )?;
        let mut daemon = Command::new(bin)
            .args(["daemon", "--config"])
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("starting {} daemon", bin.display()))?;
        let stderr = daemon.stderr.take().context("the daemon's stderr")?;
        let started = Instant::now();
        let mut said = String::new();
        let mut lines = BufReader::new(stderr).lines();
        let running = loop {
            match lines.next() {
                Some(Ok(line)) => {
                    said.push_str(&line);
                    said.push('\n');
                    if line.contains("daemon started") {
                        break true;
                    }
                }
                _ => break false,
            }
            if started.elapsed() > START_TIMEOUT {
                break false;
            }
        };
        // SIGKILL by pid, as a crash would: the pins stay.
        let _ = daemon.kill();
        let _ = daemon.wait();
        if !running || !said.contains("pinned in") {
            bail!("the orphan's daemon did not start pinned:\n{said}");
        }
        std::thread::sleep(ORPHAN_AFTER + MARGIN);
        Ok(orphan)
    }
}

impl Drop for Orphan {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.pins);
        let _ = fs::remove_dir_all(&self.dir);
    }
}
