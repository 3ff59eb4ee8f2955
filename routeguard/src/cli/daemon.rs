//! `routeguard daemon`: read the config, check privileges, then hand over to [`crate::daemon`].

use std::{path::PathBuf, process::ExitCode};

use clap::Args;

use super::EXIT_USAGE;
use crate::daemon::{self, ConfigSource, DaemonError};

pub const DAEMON_EXAMPLES: &str = "\
Examples:
  routeguard daemon                                   defaults, or /etc/routeguard/routeguard.toml
  routeguard daemon --config ./routeguard.toml        another config file
  routeguard install --systemd && systemctl enable --now routeguard

Every removal goes to the sinks the config turns on: the SQLite store
(/var/lib/routeguard/events.db, read by `routeguard report`), JSON lines (file, stdout),
journald, and Prometheus metrics on http://127.0.0.1:9477/metrics (and /healthz).
SIGHUP reloads the config (a bad one is refused and the running one kept); SIGTERM drains the
ring buffer and flushes the store before exit. Every config key and its accepted range is in
docs/daemon.md; a value out of range is refused at start, naming the key, the value and the range.

A sink that cannot be opened or written (a full disk, an I/O error, a path that became
unwritable) does not stop the daemon: it is marked down (routeguard_sink_up 0), its events are
counted in routeguard_sink_errors_total, an alert (event sink-failed) goes to the other sinks,
and it is tried again with the next events after 1 s, doubling to at most 60 s. A corrupt store,
or one of a newer schema, is moved aside (events.db.corrupt-TIMESTAMP, kept) and a new one
started. Files are written mode 0600 and never through a symlink.

The capture stays pinned in bpffs ([capture] pin_dir, default /sys/fs/bpf/routeguard) when the
daemon stops, SIGTERM included, so a restart drains what happened in between.
`routeguard daemon --unpin` removes the pins (the programs detach) and exits; run it when
uninstalling, or set pin_dir to '' to never pin. A daemon that runs holds its programs itself:
unpinned under it, it keeps recording but /healthz answers 503 (restart it to pin again).
A pinned capture no daemon has read for [capture] orphan_after (default 10m) stops recording
and costing; the daemon that adopts it later says for how long it was orphaned.

In a Kubernetes pod with hostPID but not hostNetwork, ROUTEGUARD_HOST_NETNS=/proc/1/ns/net has
the mirror and restores work in the node's network namespace too (docs/kubernetes.md), and
ROUTEGUARD_NODE_NAME (the downward API's spec.nodeName) names the node in each event's host.node.

Exit codes: 0 stopped by SIGTERM/SIGINT, 1 runtime failure, 2 bad config (a value out of
range included), missing privilege or kernel feature, or a metrics address that cannot be bound
(nothing is started then).";

#[derive(Args, Debug, Clone)]
pub struct DaemonArgs {
    /// Config file (TOML). When the default is absent, the documented defaults apply.
    #[arg(long, value_name = "PATH")]
    pub config: Option<PathBuf>,
    /// Remove the capture pinned under `[capture] pin_dir` (detaching its programs, once no
    /// running daemon holds them) and exit; what it recorded and no daemon read is lost.
    #[arg(long)]
    pub unpin: bool,
}

pub fn run(args: DaemonArgs) -> ExitCode {
    // Every event names this machine: read once, now.
    crate::event::set_local_host(crate::attribution::host::local());
    let source = ConfigSource {
        absent_ok: args.config.is_none(),
        path: args
            .config
            .unwrap_or_else(|| PathBuf::from(daemon::config::DEFAULT_PATH)),
    };
    let config = match source.load() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("routeguard: {e}");
            return ExitCode::from(EXIT_USAGE);
        }
    };
    if args.unpin {
        return unpin(&config);
    }
    if let Err(e) = crate::netlink::netns::watch_host_from_env() {
        eprintln!("routeguard: {e}");
        return ExitCode::from(EXIT_USAGE);
    }
    let runtime = match super::capture_runtime() {
        Ok(rt) => rt,
        Err(code) => return code,
    };
    let selection = match super::choose_capture(config.capture.path, !config.protect.is_empty()) {
        Ok(s) => s,
        Err(code) => return code,
    };
    match runtime.block_on(daemon::run(source, config, selection)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("routeguard: {err}");
            match err {
                DaemonError::Sink(_) | DaemonError::Listen { .. } => ExitCode::from(EXIT_USAGE),
                DaemonError::Capture(err) => super::capture_exit(&err),
                DaemonError::Io(_) => ExitCode::FAILURE,
            }
        }
    }
}

fn unpin(config: &daemon::Config) -> ExitCode {
    let Some(dir) = config.capture.pin_dir() else {
        eprintln!("routeguard: pinning is off (`[capture] pin_dir` is empty): nothing to remove");
        return ExitCode::SUCCESS;
    };
    match crate::capture::pin::unpin_all(&dir) {
        Ok(n) => {
            eprintln!(
                "routeguard: removed {n} pinned capture(s) from {}",
                dir.display()
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("routeguard: {e}");
            ExitCode::FAILURE
        }
    }
}
