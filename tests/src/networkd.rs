//! The real systemd-networkd, confined to a test namespace: its own network namespace, a private
//! mount namespace with a private /run (a minimal udev database entry for the managed link, so
//! networkd believes udev initialised it and configures it after enumeration — which is when it
//! drops foreign rules and routes), and its own .network file and networkd.conf bound over the
//! host's. The host's /run, /etc/systemd/network and networkd.conf are never seen or touched.

use std::{
    fs,
    path::PathBuf,
    process::{Child, Command, Stdio},
    sync::atomic::{AtomicU32, Ordering},
    time::{Duration, Instant},
};

use crate::{kill, wait_timeout, Netns};

pub const NETWORKD: &str = "/lib/systemd/systemd-networkd";
/// The address the .network file gives the managed link; its arrival means networkd is done.
pub const ADDRESS: &str = "10.88.0.1/24";

/// One running systemd-networkd; stopped (by pid) on drop.
pub struct Networkd {
    child: Child,
    dir: PathBuf,
    ns_name: String,
}

/// Files of one confined networkd: its .network file, networkd.conf and start script.
fn prepare(ns: &Netns, link: &str, conf: &str) -> PathBuf {
    static STARTS: AtomicU32 = AtomicU32::new(0);
    let n = STARTS.fetch_add(1, Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!("rgt-networkd-{}-{n}", ns.name()));
    fs::create_dir_all(dir.join("network")).expect("networkd test dir");
    fs::write(
        dir.join("network/10-test.network"),
        format!("[Match]\nName={link}\n\n[Network]\nAddress={ADDRESS}\n"),
    )
    .expect("write .network");
    fs::write(dir.join("networkd.conf"), conf).expect("write networkd.conf");
    let ifindex = ns.ifindex(link);
    let script = format!(
        "set -e\n\
         mount -t tmpfs tmpfs /run\n\
         mkdir -p /run/udev/data /run/systemd/netif\n\
         echo \"I:$(date +%s%6N)\" > /run/udev/data/n{ifindex}\n\
         chown systemd-network:systemd-network /run/systemd/netif\n\
         mount --bind {d}/network /etc/systemd/network\n\
         mount --bind {d}/networkd.conf /etc/systemd/networkd.conf\n\
         exec {NETWORKD}\n",
        d = dir.display()
    );
    fs::write(dir.join("start.sh"), script).expect("write start script");
    dir
}

impl Networkd {
    /// Whether the test can run here at all (the binary and its user).
    pub fn available() -> Result<(), String> {
        if !std::path::Path::new(NETWORKD).exists() {
            return Err(format!(
                "{NETWORKD} is not installed (Debian package systemd)"
            ));
        }
        let id = Command::new("id").arg("systemd-network").output();
        if !id.is_ok_and(|o| o.status.success()) {
            return Err("the systemd-network user does not exist".into());
        }
        Ok(())
    }

    /// Starts networkd managing `link` of `ns` with `conf` as its networkd.conf, and waits until
    /// it has configured the link (its address is there).
    pub fn start(ns: &Netns, link: &str, conf: &str) -> Self {
        let dir = prepare(ns, link, conf);
        let log = fs::File::create(dir.join("log")).expect("networkd log");
        // `ip netns exec` enters the namespace (and remounts /sys for it); `unshare -m` makes the
        // mounts of the script private; both exec, so the child's pid is networkd's.
        let child = Command::new("ip")
            .args([
                "netns",
                "exec",
                ns.name(),
                "unshare",
                "-m",
                "--propagation",
                "private",
                "sh",
            ])
            .arg(dir.join("start.sh"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn systemd-networkd");
        let mut me = Networkd {
            child,
            dir,
            ns_name: ns.name().to_string(),
        };
        me.wait_configured(ns, link);
        me
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    fn wait_configured(&mut self, ns: &Netns, link: &str) {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let addrs = ns.ip(&["-4", "addr", "show", "dev", link]).stdout;
            if addrs.contains(ADDRESS) {
                // Configured; give it a moment to finish dropping foreign objects.
                std::thread::sleep(Duration::from_millis(300));
                return;
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!(
                    "systemd-networkd in {} exited ({status}) before configuring {link}; log in {}",
                    self.ns_name,
                    self.dir.display()
                );
            }
            assert!(
                Instant::now() < deadline,
                "systemd-networkd did not configure {link} within 20 s; log in {}",
                self.dir.display()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// SIGTERM, and wait for it to exit.
    pub fn stop(mut self) {
        self.terminate();
    }

    fn terminate(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            kill(self.child.id(), libc::SIGTERM);
            if wait_timeout(&mut self.child, Duration::from_secs(5)).is_none() {
                kill(self.child.id(), libc::SIGKILL);
                let _ = self.child.wait();
            }
        }
    }
}

impl Drop for Networkd {
    fn drop(&mut self) {
        self.terminate();
        if !std::thread::panicking() {
            let _ = fs::remove_dir_all(&self.dir);
        }
    }
}
