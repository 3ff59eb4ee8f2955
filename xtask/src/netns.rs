//! A network namespace that this process created and that is deleted when the guard drops —
//! on success, on error, on panic and (with `interrupt`) on Ctrl-C. Only namespaces created
//! here are ever touched.
use std::process::Command;

use anyhow::{bail, Result};

use crate::cmd;

pub struct Netns {
    name: String,
}

impl Netns {
    /// Creates the namespace `name`; refuses a name that already exists (not ours to reuse).
    pub fn create(name: &str) -> Result<Self> {
        if std::path::Path::new("/run/netns").join(name).exists() {
            bail!("network namespace {name} already exists; not touching it");
        }
        cmd::run(Command::new("ip").args(["netns", "add", name]))?;
        Ok(Netns {
            name: name.to_owned(),
        })
    }

    /// Names the initial namespace `name` (`ip netns attach <name> 1`), for a bench that must act
    /// there. Only inside a QEMU guest of ours (`cargo xtask vm-test`), never on a host: the
    /// host's own routing is not ours to change. Dropping it deletes the name, not the namespace.
    pub fn attach_initial(name: &str) -> Result<Self> {
        if !crate::vm::in_guest() {
            bail!(
                "refusing to act in this host's initial network namespace (only in a QEMU guest)"
            );
        }
        if std::path::Path::new("/run/netns").join(name).exists() {
            bail!("network namespace {name} already exists; not touching it");
        }
        cmd::run(Command::new("ip").args(["netns", "attach", name, "1"]))?;
        Ok(Netns {
            name: name.to_owned(),
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// `ip -n <ns> <args…>`, checked.
    pub fn ip(&self, args: &[&str]) -> Result<()> {
        cmd::run(Command::new("ip").args(["-n", &self.name]).args(args))
    }
}

impl Netns {
    /// Like [`Netns::ip`], with ip's error message in the error instead of on stderr.
    pub fn ip_quiet(&self, args: &[&str]) -> Result<()> {
        cmd::stdout_of(Command::new("ip").args(["-n", &self.name]).args(args)).map(drop)
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        match cmd::capture(Command::new("ip").args(["netns", "delete", &self.name])) {
            Ok(out) if out.status.success() => {}
            Ok(out) => eprintln!(
                "warning: could not delete network namespace {}: {}; remove it with `ip netns delete {}`",
                self.name,
                String::from_utf8_lossy(&out.stderr).trim(),
                self.name
            ),
            Err(err) => eprintln!(
                "warning: could not delete network namespace {}: {err:#}; remove it with `ip netns delete {}`",
                self.name, self.name
            ),
        }
    }
}
