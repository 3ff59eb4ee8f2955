//! The daemon's configuration file (TOML), its defaults and its validation.
//!
//! Every key is optional; an absent file means all defaults. Unknown keys are errors, so a typo
//! never silently leaves a default in place. Values are parsed, then every duration, size, count
//! and path is range-checked ([`limits`]); either error names the file, the line and the key,
//! and a range error also the value and what is accepted. docs/daemon.md documents every key
//! and its range; a test keeps the ranges in step.

mod limits;
mod otlp;

use std::{
    fmt, fs, io,
    net::SocketAddr,
    path::{Path, PathBuf},
    time::Duration,
};

use serde::{de, Deserialize, Deserializer};

pub use otlp::{OtlpConfig, Protocol as OtlpProtocol};

use crate::{
    restore::{GuardConfig, Protect},
    store::{self, Retention},
};

pub const DEFAULT_PATH: &str = "/etc/routeguard/routeguard.toml";

#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub store: StoreConfig,
    pub jsonl: JsonlConfig,
    pub journald: JournaldConfig,
    /// `[otlp]`: OpenTelemetry log records to a collector.
    pub otlp: OtlpConfig,
    pub metrics: MetricsConfig,
    pub capture: CaptureConfig,
    /// `[[protect]]`: rules and routes to put back when they are removed.
    pub protect: Vec<Protect>,
    /// `[restore]`: dry run and the flap guard.
    pub restore: GuardConfig,
}

/// `[store]`: the SQLite event store `routeguard report` reads.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StoreConfig {
    pub enabled: bool,
    pub path: PathBuf,
    /// Events older than this are pruned (`30d`, `12h`, …); `0` keeps them forever.
    #[serde(deserialize_with = "age")]
    pub max_age: Option<Duration>,
    /// At most this many events are kept, the oldest pruned first; `0` means no limit.
    #[serde(deserialize_with = "rows")]
    pub max_rows: Option<u64>,
}

impl Default for StoreConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            path: PathBuf::from(store::DEFAULT_PATH),
            max_age: Some(Duration::from_secs(30 * 86_400)),
            max_rows: Some(1_000_000),
        }
    }
}

impl StoreConfig {
    pub fn retention(&self) -> Retention {
        Retention {
            max_age: self.max_age,
            max_rows: self.max_rows,
        }
    }
}

/// `[jsonl]`: JSON lines to a file (rotated by size) and/or to stdout.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct JsonlConfig {
    /// Write the file at `path`.
    pub enabled: bool,
    pub path: PathBuf,
    /// Rotate once the file reaches this size (`100M`).
    #[serde(deserialize_with = "size")]
    pub max_bytes: u64,
    /// Rotated files kept (`events.jsonl.1` … `.N`); 0 truncates instead.
    pub keep: u32,
    /// Also write every event to stdout (containers, `journalctl -o cat`).
    pub stdout: bool,
}

impl Default for JsonlConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            path: PathBuf::from("/var/log/routeguard/events.jsonl"),
            max_bytes: 100 << 20,
            keep: 5,
            stdout: false,
        }
    }
}

/// `[journald]`: one structured journal entry per event.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct JournaldConfig {
    pub enabled: bool,
}

impl Default for JournaldConfig {
    fn default() -> Self {
        Self { enabled: true }
    }
}

/// `[metrics]`: Prometheus text format on `http://LISTEN/metrics`, and `/healthz`.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MetricsConfig {
    pub enabled: bool,
    pub listen: SocketAddr,
}

impl Default for MetricsConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            listen: SocketAddr::from(([127, 0, 0, 1], 9477)),
        }
    }
}

/// `[capture]`: the kernel side. Changes take effect at the next start, not on reload.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CaptureConfig {
    /// Ring buffer size: a power of two, 64K to 1G.
    #[serde(deserialize_with = "size32")]
    pub ring_size: u32,
    /// Bound of the queue after the thread that empties the ring (at least 1M): records wait
    /// there only while decoding lags behind a burst; what does not fit is counted as lost.
    #[serde(deserialize_with = "size32")]
    pub queue_size: u32,
    /// Wake the daemon once this many bytes wait (it also drains on a tick: every 10 ms while
    /// records flow, down to once a second when idle).
    #[serde(deserialize_with = "size32")]
    pub wakeup: u32,
    /// Where the capture is pinned in bpffs so it keeps recording between two daemons; `""`
    /// turns pinning off (then removals made while no daemon runs are not seen).
    pub pin_dir: String,
    /// `auto`, `kernel-function` or `syscall` (as `trace --capture`).
    pub path: crate::capture::select::Mode,
    /// A pinned capture no daemon has read for this long stops recording (so a forgotten one
    /// stops costing every syscall); `"0"`: it records until unpinned.
    #[serde(deserialize_with = "duration")]
    pub orphan_after: Duration,
    /// Bytes a second of removal requests each (network namespace, cgroup) whose requests are
    /// budgeted may put in the ring (docs/capture.md, "Budgets"); `"0"` turns budgets off.
    #[serde(deserialize_with = "size32")]
    pub budget_rate: u32,
    /// The most such a sender may send at once after a quiet spell.
    #[serde(deserialize_with = "size32")]
    pub budget_burst: u32,
}

impl CaptureConfig {
    pub fn pin_dir(&self) -> Option<PathBuf> {
        (!self.pin_dir.is_empty()).then(|| PathBuf::from(&self.pin_dir))
    }
}

/// Default `[capture] pin_dir`.
pub const DEFAULT_PIN_DIR: &str = "/sys/fs/bpf/routeguard";

/// Default `[capture] ring_size`: half of `trace`'s. The ring is mapped into the daemon twice
/// (the kernel maps its data pages twice so records never wrap), so it counts twice in the
/// daemon's RSS; 8 MiB (16 MiB resident) still held a 100,000-removal `ip -batch` burst with
/// nothing lost (`cargo xtask bench daemon`).
pub const DEFAULT_RING_SIZE: u32 = 8 << 20;

/// Default `[capture] queue_size`. A 100,000-removal `ip -batch` burst is about 20 MiB of
/// records; the queue holds only what decoding has not caught up with, so it is mostly empty.
pub const DEFAULT_QUEUE_SIZE: u32 = 64 << 20;

impl Default for CaptureConfig {
    fn default() -> Self {
        let d = crate::capture::Options::default();
        Self {
            ring_size: DEFAULT_RING_SIZE,
            queue_size: DEFAULT_QUEUE_SIZE,
            wakeup: d.wakeup_bytes,
            pin_dir: DEFAULT_PIN_DIR.to_owned(),
            path: crate::capture::select::Mode::Auto,
            orphan_after: d.orphan_after,
            budget_rate: d.budget_rate,
            budget_burst: d.budget_burst,
        }
    }
}

/// A config file that could not be used: which file, where, and why — on one line.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read the config {path}: {source}")]
    Read { path: PathBuf, source: io::Error },
    #[error("bad config {path}{at}: {message}")]
    Invalid {
        path: PathBuf,
        /// ` line N (`the line`)`, when the parser knows where.
        at: Location,
        message: String,
    },
    /// The protect entries together cannot be enforced as written (`crate::prevent::Plan`).
    #[error("{0}")]
    Policy(String),
}

/// A config value that is not a size or a duration (reported with its line by serde).
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum ValueError {
    #[error("`{0}` is not a size; use bytes or a K/M/G suffix, e.g. \"16M\"")]
    Size(String),
    #[error("`{0}` is not a duration; use e.g. \"90s\", \"10m\", \"12h\" or \"30d\"")]
    Duration(String),
}

#[derive(Debug, Default)]
pub struct Location(Option<(usize, String)>);

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.0 {
            Some((line, text)) => write!(f, " line {line} (`{text}`)"),
            None => Ok(()),
        }
    }
}

impl Config {
    /// Reads `path`; an absent file gives the defaults only when `absent_ok` (the default path).
    pub fn load(path: &Path, absent_ok: bool) -> Result<Self, ConfigError> {
        match fs::read_to_string(path) {
            Ok(text) => Self::parse(path, &text),
            Err(e) if e.kind() == io::ErrorKind::NotFound && absent_ok => Ok(Self::default()),
            Err(source) => Err(ConfigError::Read {
                path: path.to_owned(),
                source,
            }),
        }
    }

    pub fn parse(path: &Path, text: &str) -> Result<Self, ConfigError> {
        let config: Self = toml::from_str(text).map_err(|e| {
            let at = e.span().map(|span| {
                let line = text[..span.start.min(text.len())].matches('\n').count() + 1;
                let content = text.lines().nth(line - 1).unwrap_or("").trim();
                (line, content.escape_debug().to_string())
            });
            ConfigError::Invalid {
                path: path.to_owned(),
                at: Location(at),
                // toml's message is one sentence, sometimes with a trailing newline.
                message: e.message().trim().replace('\n', "; "),
            }
        })?;
        limits::check(&config).map_err(|v| ConfigError::Invalid {
            path: path.to_owned(),
            at: Location(locate(text, v.key)),
            message: v.to_string(),
        })?;
        crate::prevent::Plan::of(&config.protect, false).map_err(|message| {
            ConfigError::Invalid {
                path: path.to_owned(),
                at: Location(None),
                message,
            }
        })?;
        Ok(config)
    }
}

/// The line that sets `key` (`section.name`) in `text`, and its text: the last `name = …` under
/// `[section]`, or the header `[section.name]` of a table (`[otlp.headers]`) (a key given as
/// `section.name = …` or in an inline table is not found, and the error then names the key
/// alone).
fn locate(text: &str, key: &str) -> Option<(usize, String)> {
    let (section, name) = key.split_once('.')?;
    let mut current = "";
    let mut found = None;
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if let Some(header) = line.strip_prefix('[') {
            current = header
                .trim_start_matches('[')
                .split(']')
                .next()
                .unwrap_or("")
                .trim();
            if current == key {
                found = Some((i + 1, line.escape_debug().to_string()));
            }
        } else if current == section
            && line
                .strip_prefix(name)
                .is_some_and(|rest| rest.trim_start().starts_with('='))
        {
            found = Some((i + 1, line.escape_debug().to_string()));
        }
    }
    found
}

fn age<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
    let s = String::deserialize(d)?;
    let age = parse_duration(&s).map_err(de::Error::custom)?;
    Ok((!age.is_zero()).then_some(age))
}

fn duration<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    let s = String::deserialize(d)?;
    parse_duration(&s).map_err(de::Error::custom)
}

fn rows<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    let n = u64::deserialize(d)?;
    Ok((n != 0).then_some(n))
}

fn size<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    SizeValue::deserialize(d)?
        .bytes()
        .map_err(de::Error::custom)
}

fn size32<'de, D: Deserializer<'de>>(d: D) -> Result<u32, D::Error> {
    let n = SizeValue::deserialize(d)?
        .bytes()
        .map_err(de::Error::custom)?;
    u32::try_from(n).map_err(|_| de::Error::custom(format!("{n} is too large; at most 4G")))
}

/// A size written as a number of bytes or a string with a K/M/G suffix.
#[derive(Deserialize)]
#[serde(untagged)]
enum SizeValue {
    Bytes(u64),
    Text(String),
}

impl SizeValue {
    fn bytes(self) -> Result<u64, ValueError> {
        match self {
            SizeValue::Bytes(n) => Ok(n),
            SizeValue::Text(s) => parse_size(&s),
        }
    }
}

/// `4096`, `64K`, `16M`, `1G`.
pub fn parse_size(s: &str) -> Result<u64, ValueError> {
    let bad = || ValueError::Size(s.to_owned());
    let (num, shift) = match s.as_bytes().last() {
        Some(b'K' | b'k') => (&s[..s.len() - 1], 10),
        Some(b'M' | b'm') => (&s[..s.len() - 1], 20),
        Some(b'G' | b'g') => (&s[..s.len() - 1], 30),
        _ => (s, 0),
    };
    let n: u64 = num.trim().parse().map_err(|_| bad())?;
    n.checked_mul(1 << shift).ok_or_else(bad)
}

/// `500ms`, `90s`, `10m`, `12h`, `30d`, or `0` (no limit).
pub fn parse_duration(s: &str) -> Result<Duration, ValueError> {
    let bad = || ValueError::Duration(s.to_owned());
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: u64 = num.parse().map_err(|_| bad())?;
    if unit == "ms" {
        return Ok(Duration::from_millis(n));
    }
    let secs = match unit {
        "" if n == 0 => 0,
        "s" => n,
        "m" => n.checked_mul(60).ok_or_else(bad)?,
        "h" => n.checked_mul(3600).ok_or_else(bad)?,
        "d" => n.checked_mul(86_400).ok_or_else(bad)?,
        _ => return Err(bad()),
    };
    Ok(Duration::from_secs(secs))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::parse(Path::new("/etc/routeguard/routeguard.toml"), text)
    }

    #[test]
    fn empty_file_is_the_defaults() {
        let c = parse("").unwrap();
        assert_eq!(c, Config::default());
        assert!(c.store.enabled && c.journald.enabled && c.metrics.enabled);
        assert!(!c.jsonl.enabled && !c.jsonl.stdout);
        assert_eq!(c.store.path, Path::new("/var/lib/routeguard/events.db"));
        assert_eq!(c.metrics.listen.to_string(), "127.0.0.1:9477");
        assert_eq!(c.capture.ring_size, 8 << 20);
    }

    #[test]
    fn absent_default_file_is_the_defaults_but_a_named_one_is_an_error() {
        let absent = Path::new("/nonexistent/routeguard.toml");
        assert_eq!(Config::load(absent, true).unwrap(), Config::default());
        let err = Config::load(absent, false).unwrap_err();
        assert!(err.to_string().contains("/nonexistent/routeguard.toml"));
    }

    #[test]
    fn every_key() {
        let c = parse(
            r#"
[store]
enabled = true
path = "/tmp/rg/events.db"
max_age = "7d"
max_rows = 5000

[jsonl]
enabled = true
path = "/tmp/rg/events.jsonl"
max_bytes = "1M"
keep = 2
stdout = true

[journald]
enabled = false

[otlp]
enabled = true
endpoint = "http://10.0.0.5:4317"
protocol = "grpc"
timeout = "5s"
batch_size = 100
batch_delay = "200ms"
queue_size = 1000
command_args = true

[otlp.headers]
"X-Scope-OrgID" = "tenant-a"
authorization = "Bearer abc%20def"

[metrics]
enabled = true
listen = "127.0.0.1:19477"

[capture]
ring_size = "64M"
wakeup = 0
orphan_after = "1h"

[restore]
dry_run = true
max_attempts = 3
window = "30s"
backoff = "50ms"
backoff_max = "2s"
suspend = "5m"
retry_for = "1m"

[[protect]]
name = "kube-router rules"
kind = "rule"
family = "inet"
netns = "host"
table = 77
priority = "32000-32765"
protocol = "static"
from = "10.0.0.0/8"
to = "0.0.0.0/0"
iif = "eth0"
oif = "eth1"
fwmark = "0x10/0xff"
allow = { comm = ["kube-router"], exe = ["/proc/self/exe"], unit = ["kube-router.service"], container = ["3f2a9c0e1d7b"], cgroup = ["/system.slice/kube-router.service"] }

[[protect]]
kind = "route"
table = "main"
dst = "default"
priority = 100
"#,
        )
        .unwrap();
        assert!(c.restore.dry_run);
        assert_eq!(c.restore.max_attempts, 3);
        assert_eq!(c.restore.backoff, Duration::from_millis(50));
        assert_eq!(c.restore.retry_for, Duration::from_secs(60));
        assert_eq!(c.protect.len(), 2);
        let rules = &c.protect[0];
        assert_eq!(rules.label(), "kube-router rules");
        assert_eq!(rules.priority, Some((32000, 32765)));
        assert_eq!(rules.protocol, Some(4));
        assert_eq!(rules.fwmark, Some((0x10, 0xff)));
        assert_eq!(rules.allow.unit, ["kube-router.service"]);
        // `exe` is resolved while the config is read: the file, not the path string.
        let own = std::fs::metadata(std::env::current_exe().unwrap()).unwrap();
        assert_eq!(rules.allow.exe[0].id, crate::event::ExeId::of(&own));
        assert_eq!(
            rules.allow.cgroup[0].path,
            "/system.slice/kube-router.service"
        );
        assert_eq!(c.protect[1].table, Some(254));
        assert_eq!(c.protect[1].priority, Some((100, 100)));
        assert_eq!(c.store.max_age, Some(Duration::from_secs(7 * 86_400)));
        assert_eq!(c.store.max_rows, Some(5000));
        assert_eq!(c.jsonl.max_bytes, 1 << 20);
        assert_eq!(c.jsonl.keep, 2);
        assert!(c.jsonl.stdout && !c.journald.enabled);
        assert_eq!(c.metrics.listen.port(), 19477);
        assert_eq!(c.capture.ring_size, 64 << 20);
        assert_eq!(c.capture.wakeup, 0);
        let o = &c.otlp;
        assert!(o.enabled && o.command_args);
        assert_eq!(o.protocol, OtlpProtocol::Grpc);
        assert_eq!(o.url().unwrap(), "http://10.0.0.5:4317");
        assert_eq!(o.headers["X-Scope-OrgID"], "tenant-a");
        assert_eq!(o.headers["authorization"], "Bearer abc%20def");
        assert_eq!(
            (o.timeout, o.batch_size, o.batch_delay, o.queue_size),
            (
                Duration::from_secs(5),
                100,
                Duration::from_millis(200),
                1000
            )
        );
        assert_eq!(c.capture.orphan_after, Duration::from_secs(3600));
    }

    #[test]
    fn zero_means_no_retention_limit() {
        let c = parse("[store]\nmax_age = \"0\"\nmax_rows = 0\n").unwrap();
        assert_eq!(c.store.retention(), Retention::default());
    }

    #[test]
    fn errors_name_the_file_line_and_key() {
        let cases = [
            ("[store]\nmax_age = \"3 weeks\"\n", 2, "3 weeks"),
            ("[metrics]\nlisten = \"localhost\"\n", 2, "listen"),
            ("[capture]\nring_size = \"100K\"\n", 2, "power of two"),
            ("[jsonl]\nmax_bytes = 0\n", 2, "accepted: 64K to 1024G"),
            ("[store]\nenabled = true\npth = \"/x\"\n", 3, "pth"),
            (
                "[[protect]]\nkind = \"rule\"\npriority = \"32765-32000\"\n",
                3,
                "inverted",
            ),
            (
                "[[protect]]\nkind = \"route\"\ndst = \"10.0.0.0/33\"\n",
                3,
                "10.0.0.0/33",
            ),
            (
                "[[protect]]\nkind = \"rule\"\nallow = { pid = [1] }\n",
                3,
                "pid",
            ),
            ("[restore]\nwindow = \"soon\"\n", 2, "soon"),
            ("[store\n", 1, ""),
        ];
        for (text, line, needle) in cases {
            let err = parse(text).unwrap_err().to_string();
            assert!(
                err.starts_with("bad config /etc/routeguard/routeguard.toml line "),
                "{err}"
            );
            assert!(err.contains(&format!(" line {line} ")), "{text:?}: {err}");
            assert!(err.contains(needle), "{text:?}: {err}");
            assert!(!err.contains('\n'), "{err}");
        }
    }

    /// Every duration, size and count just outside its range is refused, on one line that names
    /// the file, the line, the key, the value and the range.
    #[test]
    fn every_limit_is_enforced_with_key_value_and_range() {
        for limit in limits::LIMITS {
            let (section, name) = limit.key.split_once('.').unwrap();
            let write = |n: u64| match limit.unit {
                limits::Unit::Duration => format!("\"{n}ms\""),
                limits::Unit::Bytes | limits::Unit::Count => n.to_string(),
            };
            let mut outside = vec![limit.max + 1];
            if limit.min > 1 || (limit.min == 1 && limit.zero.is_none()) {
                outside.push(limit.min - 1);
            }
            for n in outside {
                let text = format!("# comment\n[{section}]\n{name} = {}\n", write(n));
                let err = parse(&text).unwrap_err().to_string();
                assert!(
                    err.starts_with("bad config /etc/routeguard/routeguard.toml line 3 ("),
                    "{text:?}: {err}"
                );
                assert!(err.contains(&format!("`{}` = ", limit.key)), "{err}");
                assert!(
                    err.ends_with(&format!("out of range; accepted: {}", limit.accepted())),
                    "{err}"
                );
                assert!(!err.contains('\n'), "{err}");
            }
            // The bounds themselves are accepted (with the keys a bound depends on set to fit).
            let fit = match limit.key {
                "capture.ring_size" => "wakeup = 0\n",
                "capture.wakeup" => "ring_size = \"1G\"\n",
                "restore.backoff_max" => "backoff = \"0\"\n",
                "restore.backoff" => "backoff_max = \"1h\"\n",
                "otlp.queue_size" => "batch_size = 1\n",
                "otlp.batch_size" => "queue_size = 1000000\n",
                _ => "",
            };
            for n in [limit.min, limit.max] {
                let text = format!("[{section}]\n{fit}{name} = {}\n", write(n));
                parse(&text).unwrap_or_else(|e| panic!("{text:?}: {e}"));
            }
        }
    }

    #[test]
    fn values_that_used_to_break_the_daemon_are_refused() {
        let cases = [
            // Turned the flap guard off: every removal was "outside the window".
            ("[restore]\nwindow = \"0\"\n", "`restore.window` = 0 is out of range; accepted: 1s to 1d"),
            // Panicked at the first suspension: `Instant + Duration` overflowed.
            (
                "[restore]\nsuspend = \"18446744073709551615s\"\n",
                "`restore.suspend` = 18446744073709551615s is out of range; accepted: 1s to 30d",
            ),
            (
                "[restore]\nretry_for = \"9999999999d\"\n",
                "`restore.retry_for` = 9999999999d is out of range",
            ),
            // Suspended every object at its first removal.
            ("[restore]\nmax_attempts = 0\n", "`restore.max_attempts` = 0 is out of range; accepted: 1 to 1000"),
            (
                "[restore]\nbackoff = \"2s\"\nbackoff_max = \"1s\"\n",
                "`restore.backoff_max` = 1s is out of range; accepted: restore.backoff (2s) to 1h",
            ),
            (
                "[capture]\nring_size = \"1M\"\nwakeup = \"1M\"\n",
                "`capture.wakeup` = 1M is out of range; accepted: 0 to half of capture.ring_size (512K)",
            ),
            ("[capture]\nring_size = \"96K\"\n", "a power of two"),
            (
                "[store]\npath = \"events.db\"\n",
                "`store.path` = \"events.db\" is out of range; accepted: an absolute path to a file",
            ),
            ("[jsonl]\npath = \"/var/log/routeguard/\"\n", "`jsonl.path` = \"/var/log/routeguard/\""),
            ("[capture]\npin_dir = \"bpf\"\n", "`capture.pin_dir` = \"bpf\""),
            (
                "[otlp]\nendpoint = \"https://collector:4318\"\n",
                "`otlp.endpoint` = \"https://collector:4318\" is out of range; accepted: TLS is not built",
            ),
            ("[otlp]\nprotocol = \"grpc\"\nendpoint = \"http://c:4317/v1/logs\"\n", "without a path"),
            (
                "[otlp]\nprotocol = \"http/json\"\n",
                "line 2 (`protocol = \\\"http/json\\\"`): `otlp.protocol` = \"http/json\" is not a protocol routeguard speaks; accepted: \"http/protobuf\" or \"grpc\"",
            ),
            ("[otlp.headers]\n\"bad name\" = \"x\"\n", "`otlp.headers` = \"bad name\""),
            ("[otlp.headers]\nx-token = \"line\\nbreak\"\n", "`otlp.headers` = \"x-token\""),
            (
                "[otlp]\nbatch_size = 600\nqueue_size = 500\n",
                "`otlp.queue_size` = 500 is out of range; accepted: otlp.batch_size (600) to 1000000",
            ),
            (
                "[store]\npath = \"/x/e\"\n[jsonl]\nenabled = true\npath = \"/x/e\"\n",
                "accepted: a file other than store.path",
            ),
        ];
        for (text, needle) in cases {
            let err = parse(text).unwrap_err().to_string();
            assert!(
                err.starts_with("bad config /etc/routeguard/routeguard.toml line "),
                "{err}"
            );
            assert!(err.contains(needle), "{text:?}: {err}");
        }
        // The line is the key's, in its own section.
        let err = parse("[store]\nmax_rows = 5\n[restore]\nmax_attempts = 3\nwindow = \"0\"\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains(" line 2 (`max_rows = 5`)"), "{err}");
        let err = parse("[store]\nmax_rows = 5000\n[restore]\nwindow = \"0\"\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains(" line 4 (`window = \\\"0\\\"`)"), "{err}");
    }

    #[test]
    fn sizes_and_durations() {
        assert_eq!(parse_size("16M"), Ok(16 << 20));
        assert_eq!(parse_size("4096"), Ok(4096));
        assert!(parse_size("lots").is_err());
        assert_eq!(parse_duration("90s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("30d"), Ok(Duration::from_secs(2_592_000)));
        assert_eq!(parse_duration("0"), Ok(Duration::ZERO));
        assert!(parse_duration("30").is_err());
    }
}
