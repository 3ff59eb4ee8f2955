//! `routeguard install --systemd`: writes the hardened unit (and a default config, when there is
//! none) so that `systemctl enable --now routeguard` runs the daemon.

use std::{
    fs,
    io::{self, Write},
    os::unix::fs::OpenOptionsExt,
    path::{Path, PathBuf},
    process::ExitCode,
};

use clap::Args;

use super::EXIT_USAGE;

/// The unit shipped in `packaging/`, with `ExecStart` pointing at /usr/local/bin/routeguard.
pub const UNIT: &str = include_str!("../../../packaging/routeguard.service");
/// The documented defaults, every key spelled out.
pub const CONFIG: &str = include_str!("../../../packaging/routeguard.toml");
const SHIPPED_BIN: &str = "/usr/local/bin/routeguard";

#[derive(Args, Debug, Clone)]
pub struct InstallArgs {
    /// Write the systemd unit (routeguard.service) and, if absent, /etc/routeguard/routeguard.toml.
    #[arg(long, required = true)]
    pub systemd: bool,
    /// Print what would be written, write nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Where the unit goes.
    #[arg(long, value_name = "DIR", default_value = "/etc/systemd/system")]
    pub unit_dir: PathBuf,
    /// Where the config goes (left alone if it exists).
    #[arg(
        long,
        value_name = "PATH",
        default_value = "/etc/routeguard/routeguard.toml"
    )]
    pub config: PathBuf,
    /// The binary the unit runs (default: this one).
    #[arg(long, value_name = "PATH")]
    pub bin: Option<PathBuf>,
}

pub fn run(args: InstallArgs) -> ExitCode {
    let bin = match args.bin.clone().map_or_else(std::env::current_exe, Ok) {
        Ok(b) => b,
        Err(e) => {
            eprintln!("routeguard: cannot tell where this binary is ({e}); pass --bin");
            return ExitCode::from(EXIT_USAGE);
        }
    };
    // current_exe is already resolved; a --bin symlink is judged by where it leads.
    let real_bin = fs::canonicalize(&bin).unwrap_or_else(|_| bin.clone());
    let hidden = [
        (
            &real_bin,
            "binary",
            format!(
                "copy it out (`install -m 0755 {} /usr/local/bin/`) and run \
                 `/usr/local/bin/routeguard install --systemd`, or pass --bin",
                real_bin.display()
            ),
        ),
        (
            &args.config,
            "config",
            String::from("pass --config with a path outside it"),
        ),
    ];
    for (path, what, fix) in hidden {
        if let Some((dir, directive)) = hidden_by_unit(path) {
            eprintln!(
                "routeguard: the {what} {} is under {dir}, which the unit's {directive} hides \
                 from the daemon, so the unit could not start: {fix}",
                path.display()
            );
            if !args.dry_run {
                return ExitCode::from(EXIT_USAGE);
            }
        }
    }
    let unit = unit_for(&bin, &args.config);
    let unit_path = args.unit_dir.join("routeguard.service");
    if args.dry_run {
        println!("# would write {}:\n{unit}", unit_path.display());
        if !args.config.exists() {
            println!("# would write {}:\n{CONFIG}", args.config.display());
        }
        return ExitCode::SUCCESS;
    }
    if let Err(e) = write(&unit_path, &unit, 0o644, true) {
        eprintln!("routeguard: cannot write {}: {e}", unit_path.display());
        return ExitCode::FAILURE;
    }
    eprintln!("routeguard: wrote {}", unit_path.display());
    if !args.config.exists() {
        if let Err(e) = write(&args.config, CONFIG, 0o644, false) {
            eprintln!("routeguard: cannot write {}: {e}", args.config.display());
            return ExitCode::FAILURE;
        }
        eprintln!("routeguard: wrote {} (the defaults)", args.config.display());
    }
    eprintln!("routeguard: now run: systemctl daemon-reload && systemctl enable --now routeguard");
    ExitCode::SUCCESS
}

/// Directories the unit's sandbox hides from the daemon: `ProtectHome=yes` leaves /home, /root
/// and /run/user empty, `PrivateTmp=yes` gives it /tmp and /var/tmp of its own. A binary or a
/// config there makes a unit that fails at exec (203/EXEC) or at the config's open.
const HIDDEN: &[(&str, &str)] = &[
    ("/home", "ProtectHome=yes"),
    ("/root", "ProtectHome=yes"),
    ("/run/user", "ProtectHome=yes"),
    ("/tmp", "PrivateTmp=yes"),
    ("/var/tmp", "PrivateTmp=yes"),
];

/// The hidden directory `path` lies in, and the directive that hides it.
fn hidden_by_unit(path: &Path) -> Option<(&'static str, &'static str)> {
    HIDDEN
        .iter()
        .copied()
        .find(|(dir, _)| path.starts_with(dir))
}

/// The shipped unit, running `bin` with `config`.
pub fn unit_for(bin: &Path, config: &Path) -> String {
    UNIT.replace(
        &format!("{SHIPPED_BIN} daemon --config /etc/routeguard/routeguard.toml"),
        &format!("{} daemon --config {}", bin.display(), config.display()),
    )
}

fn write(path: &Path, text: &str, mode: u32, replace: bool) -> io::Result<()> {
    if let Some(dir) = path.parent() {
        fs::create_dir_all(dir)?;
    }
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(replace)
        .create_new(!replace)
        .mode(mode)
        .open(path)?;
    f.write_all(text.as_bytes())
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;
    use crate::daemon::Config;

    /// `section → key → values` of a systemd unit (keys may repeat).
    fn parse_unit(text: &str) -> HashMap<String, HashMap<String, Vec<String>>> {
        let mut out: HashMap<String, HashMap<String, Vec<String>>> = HashMap::new();
        let mut section = String::new();
        for line in text.lines().map(str::trim) {
            if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
                continue;
            }
            if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
                section = name.to_owned();
                continue;
            }
            let (k, v) = line
                .split_once('=')
                .unwrap_or_else(|| panic!("not key=value: {line}"));
            assert!(!section.is_empty(), "{line} outside a section");
            out.entry(section.clone())
                .or_default()
                .entry(k.to_owned())
                .or_default()
                .push(v.to_owned());
        }
        out
    }

    #[test]
    fn unit_is_hardened() {
        let unit = parse_unit(UNIT);
        let svc = &unit["Service"];
        let one = |k: &str| -> &str {
            let v = svc.get(k).unwrap_or_else(|| panic!("[Service] lacks {k}"));
            assert_eq!(v.len(), 1, "{k} set twice");
            &v[0]
        };
        assert_eq!(one("Type"), "notify");
        assert_eq!(
            one("ExecStart"),
            "/usr/local/bin/routeguard daemon --config /etc/routeguard/routeguard.toml"
        );
        assert_eq!(one("Restart"), "on-failure");
        assert_eq!(one("ProtectSystem"), "strict");
        assert_eq!(one("StateDirectory"), "routeguard");
        assert_eq!(one("NoNewPrivileges"), "yes");
        // The mirror and restores setns(CLONE_NEWNET); `yes` forbade it (vm-unit shows it).
        assert_eq!(one("RestrictNamespaces"), "net");
        let caps: Vec<&str> = one("CapabilityBoundingSet").split(' ').collect();
        for cap in ["CAP_BPF", "CAP_PERFMON", "CAP_NET_ADMIN", "CAP_SYS_ADMIN"] {
            assert!(caps.contains(&cap), "{cap} missing");
        }
        assert!(caps.iter().all(|c| c.starts_with("CAP_")));
        assert!(!caps.contains(&"CAP_SYS_MODULE"));
        let rw: Vec<&str> = one("ReadWritePaths").split(' ').collect();
        assert!(rw.contains(&"/var/lib/routeguard"));
        // The default store and JSON lines paths are writable under ProtectSystem=strict.
        let defaults = Config::default();
        assert!(defaults.store.path.starts_with("/var/lib/routeguard"));
        assert!(defaults.jsonl.path.starts_with("/var/log/routeguard"));
        assert!(rw.contains(&"/var/log/routeguard"));
        assert_eq!(unit["Install"]["WantedBy"], ["multi-user.target"]);
    }

    #[test]
    fn paths_the_sandbox_hides_are_refused() {
        let svc = &parse_unit(UNIT)["Service"];
        for (_, directive) in HIDDEN {
            let (key, value) = directive.split_once('=').unwrap();
            assert_eq!(
                svc[key],
                [value],
                "the unit no longer sets {directive}: update HIDDEN"
            );
        }
        assert_eq!(
            hidden_by_unit(Path::new("/root/routeguard/target/release/routeguard")),
            Some(("/root", "ProtectHome=yes"))
        );
        assert_eq!(
            hidden_by_unit(Path::new("/tmp/routeguard.toml")),
            Some(("/tmp", "PrivateTmp=yes"))
        );
        assert_eq!(hidden_by_unit(Path::new("/usr/local/bin/routeguard")), None);
        assert_eq!(hidden_by_unit(Path::new("/rootfs/routeguard")), None);
    }

    #[test]
    fn install_points_the_unit_at_the_binary_and_config() {
        let unit = unit_for(
            Path::new("/opt/rg/bin/routeguard"),
            Path::new("/etc/rg.toml"),
        );
        assert_eq!(
            parse_unit(&unit)["Service"]["ExecStart"],
            ["/opt/rg/bin/routeguard daemon --config /etc/rg.toml"]
        );
    }

    #[test]
    fn shipped_configs_parse_and_the_default_one_is_the_defaults() {
        let shipped = Config::parse(Path::new("packaging/routeguard.toml"), CONFIG).unwrap();
        assert_eq!(shipped, Config::default());
        let image = Config::parse(
            Path::new("packaging/kubernetes/routeguard.toml"),
            include_str!("../../../packaging/kubernetes/routeguard.toml"),
        )
        .unwrap();
        assert!(image.jsonl.stdout && !image.journald.enabled);
    }

    #[test]
    fn containerfile_ships_the_binary_and_runs_the_daemon() {
        let text = include_str!("../../../packaging/Containerfile");
        let instr: Vec<&str> = text
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .collect();
        assert!(instr[0].starts_with("FROM ") && instr[0].ends_with(" AS build"));
        assert!(instr.contains(&"RUN cargo xtask build"));
        assert!(instr.contains(
            &"COPY --from=build /src/target/release/routeguard /usr/local/bin/routeguard"
        ));
        assert!(instr.contains(
            &"COPY packaging/kubernetes/routeguard.toml /etc/routeguard/routeguard.toml"
        ));
        assert!(instr.contains(&r#"ENTRYPOINT ["/usr/local/bin/routeguard"]"#));
        assert!(instr.iter().any(|l| l.starts_with("CMD [\"daemon\"")));
    }
}
