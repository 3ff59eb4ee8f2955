//! A network namespace held by a process and named nowhere: the node's namespace as a
//! DaemonSet pod sees it.
use std::{
    fs,
    os::unix::fs::MetadataExt as _,
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use crate::{argv, run, EVENT_TIMEOUT};

/// Waits until process `pid` has entered a network namespace other than ours and runs `comm`
/// (what `unshare -n PROGRAM` does, in that order); panics naming `what` after
/// [`EVENT_TIMEOUT`].
#[track_caller]
pub fn wait_in_own_netns(pid: u32, comm: &str, what: &str) {
    let own = fs::metadata("/proc/self/ns/net").unwrap().ino();
    let netns = |pid| fs::metadata(format!("/proc/{pid}/ns/net")).map_or(0, |m| m.ino());
    let want = format!("{comm}\n");
    let deadline = Instant::now() + EVENT_TIMEOUT;
    while netns(pid) == own
        || fs::read_to_string(format!("/proc/{pid}/comm"))
            .ok()
            .as_deref()
            != Some(&want)
    {
        assert!(Instant::now() < deadline, "{what} did not start");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// A network namespace nobody named, made by `unshare -n sleep` and held by that sleep: the
/// node's namespace as a DaemonSet pod sees it, at `/proc/<pid>/ns/net` and nowhere in
/// `/run/netns`. The sleep is killed by pid on drop.
pub struct HeldNamespace {
    child: std::process::Child,
}

impl HeldNamespace {
    /// The namespace with `rule from 10.9.0.0/16 lookup 77 priority 1000` in it.
    pub fn with_rule() -> Self {
        let child = Command::new("unshare")
            .args(["-n", "sleep", "120"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn unshare -n sleep");
        let ns = HeldNamespace { child };
        wait_in_own_netns(ns.pid(), "sleep", "unshare -n sleep");
        ns.ip(&["link", "set", "lo", "up"]);
        ns.ip(&argv("rule add from 10.9.0.0/16 table 77 priority 1000"));
        ns
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn path(&self) -> String {
        format!("/proc/{}/ns/net", self.pid())
    }

    pub fn inode(&self) -> u64 {
        fs::metadata(self.path()).map_or(0, |m| m.ino())
    }

    /// Runs `nsenter --net=PATH ip ARGS...` and returns ip's pid (nsenter execs it in place).
    #[track_caller]
    pub fn ip(&self, args: &[&str]) -> u32 {
        run(Command::new("nsenter")
            .arg(format!("--net={}", self.path()))
            .arg("ip")
            .args(args))
        .ok(&format!("ip {} in the held namespace", args.join(" ")))
        .pid
    }

    pub fn rules(&self) -> String {
        run(Command::new("nsenter")
            .arg(format!("--net={}", self.path()))
            .args(["ip", "rule", "show"]))
        .ok("ip rule show in the held namespace")
        .stdout
    }
}

impl Drop for HeldNamespace {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
