//! What the loss bench counts: routeguard's JSON lines (route events of table 100, their
//! outcomes and causes) and `ip monitor route`'s `Deleted` lines, with the monitor itself.
use std::{
    collections::{BTreeMap, HashSet},
    fs::{self, File},
    io::{BufRead as _, BufReader},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    thread,
    time::{Duration, Instant},
};

use anyhow::{bail, Context as _, Result};

use crate::{bench::routes::TABLE, netns::Netns};

/// `ip -n <ns> monitor route`, stdout to a file; killed on drop if still running.
pub struct Monitor {
    child: Child,
    stderr_path: PathBuf,
}

impl Monitor {
    pub fn start(ns: &Netns, out_path: &Path) -> Result<Self> {
        let out =
            File::create(out_path).with_context(|| format!("creating {}", out_path.display()))?;
        let stderr_path = out_path.with_extension("stderr");
        let err = File::create(&stderr_path)
            .with_context(|| format!("creating {}", stderr_path.display()))?;
        let child = Command::new("ip")
            .args(["-n", ns.name(), "monitor", "route"])
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .context("could not start `ip monitor route`")?;
        Ok(Monitor { child, stderr_path })
    }

    /// SIGINT, then its stderr lines.
    pub fn stop(mut self) -> Result<Vec<String>> {
        let pid = libc::pid_t::try_from(self.child.id()).context("pid out of range")?;
        // SAFETY: kill(2) on our own child, not reaped yet (we own `child`).
        if unsafe { libc::kill(pid, libc::SIGINT) } != 0 {
            bail!(
                "could not send SIGINT to ip monitor: {}",
                std::io::Error::last_os_error()
            );
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        while self.child.try_wait()?.is_none() {
            if Instant::now() > deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                break;
            }
            thread::sleep(Duration::from_millis(50));
        }
        let stderr = fs::read_to_string(&self.stderr_path).unwrap_or_default();
        Ok(stderr.lines().map(str::to_owned).collect())
    }
}

impl Drop for Monitor {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// routeguard's JSON lines, counted.
#[derive(Default)]
pub struct EventCounts {
    /// `"kind":"route"` with `route.table` 100, whatever the outcome or cause.
    pub table_routes: u64,
    /// Distinct `route.dst` among those.
    pub distinct: usize,
    pub outcomes: BTreeMap<String, u64>,
    pub causes: BTreeMap<String, u64>,
    /// Every other line.
    pub other: u64,
}

impl EventCounts {
    pub fn read(path: &Path) -> Result<Self> {
        let file = File::open(path).with_context(|| format!("opening {}", path.display()))?;
        let mut counts = EventCounts::default();
        let mut dsts = HashSet::new();
        for line in BufReader::new(file).lines() {
            let line = line.with_context(|| format!("reading {}", path.display()))?;
            let route = object(&line, "route");
            let in_table = route.is_some_and(|r| number(r, "table") == Some(TABLE));
            if string(&line, "kind") != Some("route") || !in_table {
                counts.other += 1;
                continue;
            }
            counts.table_routes += 1;
            if let Some(dst) = route.and_then(|r| string(r, "dst")) {
                dsts.insert(dst.to_owned());
            }
            let outcome = string(&line, "outcome").unwrap_or("?");
            *counts.outcomes.entry(outcome.to_owned()).or_default() += 1;
            let cause = string(&line, "cause").unwrap_or("?");
            *counts.causes.entry(cause.to_owned()).or_default() += 1;
        }
        counts.distinct = dsts.len();
        Ok(counts)
    }
}

/// The first `"key":"value"` of a JSON line: the top-level one for the event's own fields,
/// which come before the nested objects in routeguard's output (docs/events.md).
fn string<'a>(json: &'a str, key: &str) -> Option<&'a str> {
    let pattern = format!("\"{key}\":\"");
    let rest = &json[json.find(&pattern)? + pattern.len()..];
    Some(&rest[..rest.find('"')?])
}

/// The first `"key":<number>`, as text.
fn number<'a>(json: &'a str, key: &str) -> Option<&'a str> {
    let pattern = format!("\"{key}\":");
    let rest = &json[json.find(&pattern)? + pattern.len()..];
    let end = rest
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(rest.len());
    (end > 0).then(|| &rest[..end])
}

/// The flat object `"key":{…}` (routeguard's `route` holds no nested object).
fn object<'a>(json: &'a str, key: &str) -> Option<&'a str> {
    let pattern = format!("\"{key}\":{{");
    let rest = &json[json.find(&pattern)? + pattern.len()..];
    Some(&rest[..rest.find('}')?])
}

pub fn tally(counts: &BTreeMap<String, u64>) -> String {
    if counts.is_empty() {
        return "-".to_owned();
    }
    counts
        .iter()
        .map(|(k, v)| format!("{k} {v}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// `ip monitor route` output, counted.
pub struct MonitorCounts {
    /// Lines starting with `Deleted`.
    pub deleted: u64,
    pub stderr: Vec<String>,
}

impl MonitorCounts {
    pub fn read(path: &Path, stderr: Vec<String>) -> Result<Self> {
        let file = File::open(path).with_context(|| format!("opening {}", path.display()))?;
        let mut deleted = 0;
        for line in BufReader::new(file).lines() {
            let line = line.with_context(|| format!("reading {}", path.display()))?;
            if line.starts_with("Deleted") {
                deleted += 1;
            }
        }
        Ok(MonitorCounts { deleted, stderr })
    }
}

#[cfg(test)]
mod tests {
    use super::{number, object, string};

    const LINE: &str = r#"{"schema_version":1,"kind":"route","cause":"request","outcome":"unknown","route":{"table":100,"dst":"10.0.0.1/32","gateway":null},"rule":null,"trigger":{"kind":"link"}}"#;

    #[test]
    fn reads_the_fields_it_counts() {
        assert_eq!(string(LINE, "kind"), Some("route"));
        assert_eq!(string(LINE, "outcome"), Some("unknown"));
        let route = object(LINE, "route").unwrap();
        assert_eq!(number(route, "table"), Some("100"));
        assert_eq!(string(route, "dst"), Some("10.0.0.1/32"));
        assert_eq!(object(LINE, "rule"), None);
        assert_eq!(number(r#"{"table":null}"#, "table"), None);
    }
}
