//! Other programs on this host that remove routes and rules they did not make: systemd-networkd
//! (with its effective `ManageForeignRoutingPolicyRules` / `ManageForeignRoutes`, from
//! networkd.conf and its drop-ins, and the foreign rules and routes it would remove now),
//! NetworkManager and netplan. Each is a warning with the fix, never a failure: tracing works,
//! these are who it will likely catch.

use std::{
    fs,
    path::{Path, PathBuf},
};

use super::{Check, Facts, Finding};
use crate::{
    decode,
    event::{describe, Object},
    netlink::{
        uapi::{FIB_RULE_HDR_LEN, RTMSG_LEN, RTM_GETROUTE, RTM_GETRULE},
        Options, RouteSocket,
    },
};

/// Where systemd looks for networkd.conf, highest priority first (systemd.syntax(7)).
const CONF_DIRS: [&str; 4] = [
    "/etc/systemd",
    "/run/systemd",
    "/usr/local/lib/systemd",
    "/usr/lib/systemd",
];
/// Rules networkd never removes: `proto kernel` (the default rules carry it).
const SPARED_PROTOCOL: &str = "kernel";
/// Routes whose protocol says the kernel or an autoconfiguration made them.
const KERNEL_ROUTE_PROTOCOLS: [&str; 4] = ["kernel", "ra", "redirect", "dhcp"];
/// Objects listed by name before "and N more".
const SHOW: usize = 5;
/// A dump the kernel has sent nothing of for this long is given up.
const DUMP_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(1);

pub struct Conflicts;

impl Check for Conflicts {
    fn section(&self) -> &'static str {
        "conflicts"
    }

    fn run(&self, _: &Facts) -> Vec<Finding> {
        let processes = processes();
        let mut findings = networkd(&processes, &NetworkdConf::read(Path::new("/")));
        findings.push(match pids_of(&processes, "NetworkManager") {
            pids if pids.is_empty() => Finding::ok("NetworkManager", "not running"),
            pids => Finding::warn(
                "NetworkManager",
                format!("running (pid {})", join(&pids)),
                "NetworkManager removes routes and rules of connections it manages when they go \
                 down or are reapplied; keep it off interfaces other programs own (`nmcli device \
                 set DEV managed no`, or `unmanaged-devices=` in NetworkManager.conf)",
            ),
        });
        findings.push(netplan(Path::new("/")));
        findings
    }
}

/// (pid, comm) of every process.
fn processes() -> Vec<(u32, String)> {
    let Ok(dir) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.flatten()
        .filter_map(|e| {
            let pid: u32 = e.file_name().to_str()?.parse().ok()?;
            let comm = fs::read_to_string(e.path().join("comm")).ok()?;
            Some((pid, comm.trim_end().to_string()))
        })
        .collect()
}

fn pids_of(processes: &[(u32, String)], comm: &str) -> Vec<u32> {
    processes
        .iter()
        .filter(|(_, c)| c == comm)
        .map(|(p, _)| *p)
        .collect()
}

fn join(pids: &[u32]) -> String {
    pids.iter()
        .map(u32::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

/// networkd.conf's two settings that matter here, as networkd would read them.
#[derive(Debug, PartialEq, Eq)]
struct NetworkdConf {
    manage_foreign_rules: bool,
    manage_foreign_routes: bool,
    /// The files read, in order (the main file, then drop-ins).
    files: Vec<PathBuf>,
}

impl NetworkdConf {
    /// Reads networkd.conf and its drop-ins under `root`: the main file from the first
    /// directory that has one, then every `networkd.conf.d/*.conf`, ordered by file name, where
    /// a name in a higher-priority directory masks the same name below; later settings win.
    fn read(root: &Path) -> Self {
        let mut conf = Self {
            manage_foreign_rules: true,
            manage_foreign_routes: true,
            files: Vec::new(),
        };
        let under = |dir: &str| root.join(dir.trim_start_matches('/'));
        if let Some(main) = CONF_DIRS
            .iter()
            .map(|d| under(d).join("networkd.conf"))
            .find(|p| p.is_file())
        {
            conf.apply(&main);
        }
        let mut dropins: Vec<(std::ffi::OsString, PathBuf)> = Vec::new();
        for dir in CONF_DIRS {
            let Ok(entries) = fs::read_dir(under(dir).join("networkd.conf.d")) else {
                continue;
            };
            for e in entries.flatten() {
                let name = e.file_name();
                if Path::new(&name).extension().is_some_and(|x| x == "conf")
                    && !dropins.iter().any(|(n, _)| *n == name)
                {
                    dropins.push((name, e.path()));
                }
            }
        }
        dropins.sort();
        for (_, path) in dropins {
            conf.apply(&path);
        }
        conf
    }

    fn apply(&mut self, path: &Path) {
        let Ok(text) = fs::read_to_string(path) else {
            return;
        };
        self.files.push(path.to_path_buf());
        let mut section = String::new();
        for line in text.lines().map(str::trim) {
            if line.starts_with(['#', ';']) || line.is_empty() {
                continue;
            }
            if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
                section = name.to_string();
                continue;
            }
            let Some((key, value)) = line.split_once('=') else {
                continue;
            };
            let Some(value) = parse_bool(value.trim()) else {
                continue;
            };
            match (section.as_str(), key.trim()) {
                ("Network", "ManageForeignRoutingPolicyRules") => self.manage_foreign_rules = value,
                ("Network", "ManageForeignRoutes") => self.manage_foreign_routes = value,
                _ => {}
            }
        }
    }

    fn source(&self) -> String {
        if self.files.is_empty() {
            "no networkd.conf: the defaults".into()
        } else {
            let files: Vec<String> = self.files.iter().map(|p| p.display().to_string()).collect();
            format!("from {}", files.join(", "))
        }
    }
}

/// systemd's boolean words.
fn parse_bool(s: &str) -> Option<bool> {
    match s.to_ascii_lowercase().as_str() {
        "1" | "yes" | "y" | "true" | "t" | "on" => Some(true),
        "0" | "no" | "n" | "false" | "f" | "off" => Some(false),
        _ => None,
    }
}

fn networkd(processes: &[(u32, String)], conf: &NetworkdConf) -> Vec<Finding> {
    // comm is cut to 15 bytes: `systemd-networkd` is `systemd-network`.
    let pids = pids_of(processes, "systemd-network");
    if pids.is_empty() {
        return vec![Finding::ok("systemd-networkd", "not running")];
    }
    let mut findings = vec![Finding::ok(
        "systemd-networkd",
        format!("running (pid {})", join(&pids)),
    )];
    let setting = |name: &str, on: bool, what: &str, foreign: Vec<String>| {
        if !on {
            return Finding::ok(
                name,
                format!(
                    "no ({}): it leaves other programs' {what} alone",
                    conf.source()
                ),
            );
        }
        let present = if foreign.is_empty() {
            "none of them present now".to_string()
        } else {
            let more = foreign.len().saturating_sub(SHOW);
            let mut list = foreign
                .into_iter()
                .take(SHOW)
                .collect::<Vec<_>>()
                .join("; ");
            if more > 0 {
                list.push_str(&format!("; and {more} more"));
            }
            format!("it would remove, in this network namespace now: {list}")
        };
        Finding::warn(
            name,
            format!("yes ({}): networkd removes {what} it did not configure when it (re)configures a link; {present}", conf.source()),
            format!(
                "set `{name}=no` in the [Network] section of /etc/systemd/networkd.conf (or a \
                 drop-in in /etc/systemd/networkd.conf.d/), then `systemctl restart \
                 systemd-networkd`; or protect them with routeguard (`[[protect]]`)"
            ),
        )
    };
    let (rules, routes) = foreign_objects();
    findings.push(setting(
        "ManageForeignRoutingPolicyRules",
        conf.manage_foreign_rules,
        "routing policy rules",
        rules,
    ));
    findings.push(setting(
        "ManageForeignRoutes",
        conf.manage_foreign_routes,
        "routes",
        routes,
    ));
    findings
}

/// Rules and routes of this namespace (the host's, where doctor runs) networkd counts as foreign
/// (described): rules not `proto kernel`; routes not made by the kernel or autoconfiguration.
fn foreign_objects() -> (Vec<String>, Vec<String>) {
    let options = Options {
        poll: DUMP_TIMEOUT,
        quiet: DUMP_TIMEOUT,
        ..Options::default()
    };
    let Ok(socket) = RouteSocket::open(&options) else {
        return (Vec::new(), Vec::new());
    };
    // What a dump that fails midway gave is not all there is: nothing is listed then.
    let dump = |request, header: &[u8]| {
        let mut bodies = Vec::new();
        match socket.dump(request, header, |m| bodies.push(m.body.to_vec())) {
            Ok(()) => bodies,
            Err(_) => Vec::new(),
        }
    };
    let rules = dump(RTM_GETRULE, &[0; FIB_RULE_HDR_LEN])
        .iter()
        .filter_map(|b| decode::rule_body(b).ok())
        .filter(|(_, r)| r.protocol.as_deref() != Some(SPARED_PROTOCOL))
        .map(|(_, rule)| describe::object(&Object::Rule(rule)))
        .collect();
    let routes = dump(RTM_GETROUTE, &[0; RTMSG_LEN])
        .iter()
        .filter_map(|b| decode::route_body(b).ok())
        .filter(|(_, r)| {
            !r.protocol
                .as_deref()
                .is_some_and(|p| KERNEL_ROUTE_PROTOCOLS.contains(&p))
        })
        .filter(|(_, r)| {
            r.route_type.as_deref() != Some("local") && r.route_type.as_deref() != Some("broadcast")
        })
        .map(|(_, route)| describe::route(&route))
        .collect();
    (rules, routes)
}

/// netplan regenerates networkd's or NetworkManager's configuration; `netplan apply` makes them
/// reconfigure, which is when foreign objects go.
fn netplan(root: &Path) -> Finding {
    let dir = root.join("etc/netplan");
    let files: Vec<String> = fs::read_dir(&dir)
        .map(|d| {
            d.flatten()
                .filter(|e| e.path().extension().is_some_and(|x| x == "yaml"))
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    if files.is_empty() {
        return Finding::ok("netplan", "no /etc/netplan/*.yaml");
    }
    Finding::warn(
        "netplan",
        format!("configured ({} in {})", files.join(", "), dir.display()),
        "`netplan apply` restarts the backend's configuration of every link, removing foreign \
         rules and routes with it; prefer `netplan try`, and set the networkd settings above",
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(root: &Path, path: &str, text: &str) {
        let p = root.join(path);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(p, text).unwrap();
    }

    #[test]
    fn networkd_conf_main_file_then_dropins_by_name_with_etc_masking() {
        let root = std::env::temp_dir().join(format!("rg-doctor-{}", std::process::id()));
        let _ = fs::remove_dir_all(&root);
        assert_eq!(
            NetworkdConf::read(&root),
            NetworkdConf {
                manage_foreign_rules: true,
                manage_foreign_routes: true,
                files: vec![]
            }
        );
        write(
            &root,
            "usr/lib/systemd/networkd.conf",
            "[Network]\nManageForeignRoutes=no\n",
        );
        write(
            &root,
            "etc/systemd/networkd.conf",
            "[Network]\n#ManageForeignRoutes=no\n",
        );
        write(
            &root,
            "usr/lib/systemd/networkd.conf.d/10-a.conf",
            "[Network]\nManageForeignRoutingPolicyRules=no\n",
        );
        // Masked by /etc's file of the same name: its `no` never applies.
        write(
            &root,
            "usr/lib/systemd/networkd.conf.d/20-b.conf",
            "[Network]\nManageForeignRoutes=no\n",
        );
        write(
            &root,
            "etc/systemd/networkd.conf.d/20-b.conf",
            "[Network]\nManageForeignRoutes=yes\n",
        );
        write(
            &root,
            "etc/systemd/networkd.conf.d/30-c.conf",
            "[DHCPv4]\nManageForeignRoutes=no\n",
        );
        let conf = NetworkdConf::read(&root);
        assert!(!conf.manage_foreign_rules, "10-a.conf");
        assert!(
            conf.manage_foreign_routes,
            "/etc main file wins over /usr/lib; 20-b masked; 30-c wrong section"
        );
        assert_eq!(conf.files.len(), 4);
        assert!(conf.files[0].ends_with("etc/systemd/networkd.conf"));
        let _ = fs::remove_dir_all(&root);
    }

    #[test]
    fn networkd_findings_name_the_setting_and_the_fix() {
        let running = [(812, "systemd-network".to_string())];
        let conf = NetworkdConf {
            manage_foreign_rules: true,
            manage_foreign_routes: false,
            files: vec![],
        };
        let f = networkd(&running, &conf);
        assert_eq!(f[0].detail, "running (pid 812)");
        assert_eq!(f[1].what, "ManageForeignRoutingPolicyRules");
        assert_eq!(f[1].status, super::super::Status::Warn);
        assert!(f[1]
            .fix
            .as_deref()
            .unwrap()
            .contains("ManageForeignRoutingPolicyRules=no"));
        assert_eq!(f[2].status, super::super::Status::Ok);
        assert!(networkd(&[], &conf)[0].detail.contains("not running"));
    }

    #[test]
    fn systemd_booleans() {
        assert_eq!(parse_bool("No"), Some(false));
        assert_eq!(parse_bool("on"), Some(true));
        assert_eq!(parse_bool("maybe"), None);
    }
}
