//! A private apt configuration for the VM harness: Debian 12's archive plus bookworm-backports,
//! on the same mirror as the machine's own sources, with its own sources, package lists and
//! download cache under `target/vm/apt/`. The host's apt configuration (/etc/apt, its lists) is
//! never modified; only `apt-get install` writes to the system, as it must.
use std::{
    fs,
    path::{Path, PathBuf},
    process::Command,
    time::{Duration, SystemTime},
};

use anyhow::{bail, Context as _, Result};

use crate::cmd;

/// Package lists older than this are refreshed before a look-up (Debian removes superseded
/// kernel packages from the archive, so a stale list can name a file that is gone).
const LISTS_MAX_AGE: Duration = Duration::from_secs(24 * 3600);

const DEFAULT_MIRROR: &str = "http://deb.debian.org/debian";
const DEFAULT_SECURITY: &str = "http://deb.debian.org/debian-security";
const DEFAULT_KEYRING: &str = "/usr/share/keyrings/debian-archive-keyring.gpg";

pub struct PrivateApt {
    dir: PathBuf,
    updated: bool,
}

impl PrivateApt {
    /// Writes the private sources under `dir` (from the host's Debian mirror).
    pub fn new(dir: &Path) -> Result<Self> {
        for sub in ["sources.list.d", "lists/partial", "cache/archives/partial"] {
            fs::create_dir_all(dir.join(sub))
                .with_context(|| format!("creating {}", dir.join(sub).display()))?;
        }
        let host = HostMirrors::read();
        let sources = format!(
            "# Written by `cargo xtask vm-test`; used only with its own apt options.\n\
             Types: deb\nURIs: {main}\nSuites: bookworm bookworm-updates bookworm-backports\n\
             Components: main\nSigned-By: {keyring}\n\n\
             Types: deb\nURIs: {security}\nSuites: bookworm-security\nComponents: main\n\
             Signed-By: {keyring}\n",
            main = host.main,
            security = host.security,
            keyring = host.keyring,
        );
        fs::write(dir.join("sources.list.d/debian.sources"), sources)?;
        // An empty one-line list, so the host's /etc/apt/sources.list is not read either.
        fs::write(dir.join("sources.list"), "")?;
        Ok(PrivateApt {
            dir: dir.to_owned(),
            updated: false,
        })
    }

    /// `apt-get`/`apt-cache` with the private sources, lists and cache.
    pub fn command(&self, program: &str) -> Command {
        let mut command = Command::new(program);
        let dir = self.dir.display();
        command.env("DEBIAN_FRONTEND", "noninteractive");
        for option in [
            format!("Dir::Etc::SourceList={dir}/sources.list"),
            format!("Dir::Etc::SourceParts={dir}/sources.list.d"),
            format!("Dir::State::Lists={dir}/lists"),
            format!("Dir::Cache={dir}/cache"),
            // Downloads land in target/, which apt's unprivileged `_apt` user may not reach.
            String::from("APT::Sandbox::User=root"),
            // Another apt/dpkg (another checkout's setup) may hold the lock for a while.
            String::from("DPkg::Lock::Timeout=300"),
        ] {
            command.arg("-o").arg(option);
        }
        command
    }

    /// `apt-get update` of the private lists, once per run, and only when they are missing or
    /// older than a day (or when `force`).
    pub fn update(&mut self, force: bool) -> Result<()> {
        if self.updated || (!force && self.lists_fresh()) {
            return Ok(());
        }
        let mut update = self.command("apt-get");
        update.args(["update", "-q"]);
        println!(
            "routeguard vm: refreshing the private package lists (bookworm, bookworm-backports)"
        );
        println!("routeguard vm:   $ {}", cmd::display(&update));
        cmd::run(&mut update)?;
        self.updated = true;
        Ok(())
    }

    fn lists_fresh(&self) -> bool {
        let marker = self.dir.join("lists/lock");
        let Ok(entries) = fs::read_dir(self.dir.join("lists")) else {
            return false;
        };
        let newest = entries
            .filter_map(|e| e.ok())
            .filter(|e| {
                e.path() != marker && e.file_name().to_string_lossy().ends_with("InRelease")
            })
            .filter_map(|e| e.metadata().ok()?.modified().ok())
            .max();
        newest.is_some_and(|t| {
            SystemTime::now()
                .duration_since(t)
                .is_ok_and(|age| age < LISTS_MAX_AGE)
        })
    }

    /// Installs `packages`, preferring bookworm-backports' versions (qemu 10: bookworm's own
    /// qemu-system-x86 7.2 would remove a newer qemu-utils already on the machine).
    pub fn install(&mut self, packages: &[&str]) -> Result<()> {
        if !cmd::is_root() {
            bail!("installing {packages:?} needs root");
        }
        self.update(false)?;
        let mut install = self.command("apt-get");
        install
            .args(["install", "-y", "-q", "--no-install-recommends"])
            .args(["-t", "bookworm-backports"])
            .args(packages);
        println!("routeguard vm: installing {}", packages.join(", "));
        println!("routeguard vm:   $ {}", cmd::display(&install));
        cmd::run(&mut install)
    }

    /// Names of the packages whose name starts with `prefix` (`apt-cache pkgnames`).
    pub fn package_names(&mut self, prefix: &str) -> Result<Vec<String>> {
        self.update(false)?;
        let names = cmd::stdout_of(self.command("apt-cache").args(["pkgnames", prefix]))?;
        Ok(names.lines().map(str::to_owned).collect())
    }

    /// Downloads `package` (newest version) into `into` and returns the .deb's path. Retries
    /// once after refreshing the lists: the version they name may have left the mirror.
    pub fn download(&mut self, package: &str, into: &Path) -> Result<PathBuf> {
        fs::create_dir_all(into).with_context(|| format!("creating {}", into.display()))?;
        let attempt = |apt: &Self| -> Result<()> {
            let mut download = apt.command("apt-get");
            download.current_dir(into).args(["download", "-q", package]);
            println!("routeguard vm:   $ {}", cmd::display(&download));
            cmd::run(&mut download)
        };
        if let Err(err) = attempt(self) {
            if self.updated {
                return Err(err);
            }
            println!("routeguard vm: download failed ({err:#}); refreshing the lists and retrying");
            self.update(true)?;
            attempt(self)?;
        }
        let prefix = format!("{package}_");
        fs::read_dir(into)?
            .filter_map(|e| e.ok())
            .map(|e| e.path())
            .find(|p| {
                p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with(&prefix) && n.ends_with(".deb"))
            })
            .with_context(|| {
                format!(
                    "apt-get download left no {prefix}*.deb in {}",
                    into.display()
                )
            })
    }
}

/// The Debian mirror the machine's own apt sources use and its keyring (for debootstrap, so the
/// systemd guest's root comes from the same place as everything else).
pub fn debian_mirror() -> (String, String) {
    let host = HostMirrors::read();
    (host.main, host.keyring)
}

/// The Debian mirror the machine's own apt sources use (deb822 `.sources` files or one-line
/// `.list` files), so the private sources fetch from the same place; deb.debian.org if none.
struct HostMirrors {
    main: String,
    security: String,
    keyring: String,
}

impl HostMirrors {
    fn read() -> Self {
        let mut texts = Vec::new();
        if let Ok(text) = fs::read_to_string("/etc/apt/sources.list") {
            texts.push(text);
        }
        if let Ok(dir) = fs::read_dir("/etc/apt/sources.list.d") {
            for entry in dir.filter_map(|e| e.ok()) {
                let name = entry.file_name().to_string_lossy().into_owned();
                if name.ends_with(".sources") || name.ends_with(".list") {
                    texts.extend(fs::read_to_string(entry.path()).ok());
                }
            }
        }
        let mut mirrors = HostMirrors {
            main: DEFAULT_MIRROR.into(),
            security: DEFAULT_SECURITY.into(),
            keyring: DEFAULT_KEYRING.into(),
        };
        for (uri, suites, keyring) in texts.iter().flat_map(|t| entries(t)) {
            let debian_suite = |s: &str| s == "bookworm" || s == "bookworm-security";
            if !suites.iter().any(|s| debian_suite(s)) {
                continue;
            }
            if suites.iter().any(|s| s == "bookworm-security") {
                mirrors.security = uri;
            } else {
                mirrors.main = uri;
                if let Some(keyring) = keyring {
                    mirrors.keyring = keyring;
                }
            }
        }
        mirrors
    }
}

/// (URI, suites, Signed-By) of every enabled entry in a sources file, either format.
fn entries(text: &str) -> Vec<(String, Vec<String>, Option<String>)> {
    let mut found = Vec::new();
    // One-line format: `deb [signed-by=…] URI SUITE COMPONENT…`.
    for line in text.lines().map(str::trim) {
        let Some(rest) = line.strip_prefix("deb ") else {
            continue;
        };
        let mut keyring = None;
        let mut rest = rest.trim_start();
        if let Some(options) = rest.strip_prefix('[') {
            let (options, after) = options.split_once(']').unwrap_or((options, ""));
            keyring = options
                .split_whitespace()
                .find_map(|o| o.strip_prefix("signed-by="))
                .map(str::to_owned);
            rest = after;
        }
        let mut words = rest.split_whitespace();
        if let (Some(uri), Some(suite)) = (words.next(), words.next()) {
            found.push((uri.to_owned(), vec![suite.to_owned()], keyring));
        }
    }
    // deb822: stanzas separated by blank lines, `Key: value` fields.
    for stanza in text.split("\n\n") {
        let field = |key: &str| {
            stanza.lines().find_map(|line| {
                let (k, v) = line.split_once(':')?;
                k.trim()
                    .eq_ignore_ascii_case(key)
                    .then(|| v.trim().to_owned())
            })
        };
        let enabled = field("Enabled").is_none_or(|v| !v.eq_ignore_ascii_case("no"));
        let is_deb = field("Types").is_some_and(|t| t.split_whitespace().any(|t| t == "deb"));
        if let (true, true, Some(uris), Some(suites)) =
            (enabled, is_deb, field("URIs"), field("Suites"))
        {
            let suites: Vec<String> = suites.split_whitespace().map(str::to_owned).collect();
            for uri in uris.split_whitespace() {
                found.push((uri.to_owned(), suites.clone(), field("Signed-By")));
            }
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::entries;

    #[test]
    fn reads_both_source_formats() {
        let deb822 = "Types: deb\n# comment\nURIs: http://mirror.example/debian\n\
                      Suites: bookworm bookworm-updates\nComponents: main\n\
                      Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg\n\n\
                      Types: deb-src\nURIs: http://src.example/debian\nSuites: bookworm\n";
        let found = entries(deb822);
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].0, "http://mirror.example/debian");
        assert_eq!(found[0].1, ["bookworm", "bookworm-updates"]);
        assert_eq!(
            found[0].2.as_deref(),
            Some("/usr/share/keyrings/debian-archive-keyring.gpg")
        );

        let one_line = "# deb http://old.example/debian bookworm main\n\
                        deb [arch=amd64 signed-by=/k.gpg] http://m.example/debian bookworm main\n";
        let found = entries(one_line);
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].0, "http://m.example/debian");
        assert_eq!(found[0].2.as_deref(), Some("/k.gpg"));
    }
}
