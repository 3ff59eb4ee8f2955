//! What the benches read of routeguard's stderr: the trace's closing summary and its outcome
//! evidence, and the daemon's start and stop lines. Each parser tolerates words around what it
//! looks for (a log prefix, a clause a later binary adds) and returns None when the line is not
//! the one it parses, so a bench can run today's binary and tomorrow's side by side.
use std::fmt;

/// `routeguard: 100000 events, 0 lost` → (100000, 0).
pub fn trace_summary(line: &str) -> Option<(u64, u64)> {
    let rest = after(line, "routeguard:")?;
    let words: Vec<&str> = rest
        .split(|c: char| c.is_whitespace() || c == ',')
        .filter(|w| !w.is_empty())
        .collect();
    let before = |label: &str| {
        words
            .windows(2)
            .find(|pair| pair[1].starts_with(label))
            .and_then(|pair| pair[0].parse().ok())
    };
    Some((before("event")?, before("lost")?))
}

/// The trace's `routeguard: outcomes: removed N (ack A, notification B, …), failed G, unknown U`:
/// how many removals ended each way, and what evidence each `removed` rests on.
#[derive(Debug, PartialEq, Eq)]
pub struct Outcomes {
    pub removed: u64,
    /// (kind of evidence, removals resting on it), in the order routeguard printed them.
    pub evidence: Vec<(String, u64)>,
    pub failed: u64,
    pub unknown: u64,
}

impl Outcomes {
    pub fn parse(line: &str) -> Option<Self> {
        let rest = after(line, "routeguard: outcomes:")?.trim();
        let rest = rest.strip_prefix("removed")?.trim_start();
        let (removed, rest) = leading_number(rest)?;
        let rest = rest.trim_start();
        let (evidence, rest) = match rest.strip_prefix('(') {
            Some(inner) => {
                let (list, rest) = inner.split_once(')')?;
                let evidence = list
                    .split(',')
                    .map(|item| {
                        let (label, n) = item.trim().rsplit_once(' ')?;
                        Some((label.trim().to_owned(), n.parse().ok()?))
                    })
                    .collect::<Option<Vec<_>>>()?;
                (evidence, rest)
            }
            None => (Vec::new(), rest),
        };
        let labelled = |label: &str| {
            rest.split(',').find_map(|item| {
                let n = item.trim().strip_prefix(label)?.trim();
                leading_number(n).map(|(n, _)| n)
            })
        };
        Some(Outcomes {
            removed,
            evidence,
            failed: labelled("failed")?,
            unknown: labelled("unknown")?,
        })
    }
}

impl fmt::Display for Outcomes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "removed {}", self.removed)?;
        if !self.evidence.is_empty() {
            let list: Vec<String> = self
                .evidence
                .iter()
                .map(|(label, n)| format!("{label} {n}"))
                .collect();
            write!(f, " ({})", list.join(", "))?;
        }
        write!(f, ", failed {}, unknown {}", self.failed, self.unknown)
    }
}

/// The daemon's `routeguard: daemon started (capture=syscall, 5 programs, ring 8192 KiB,
/// queue 32768 KiB; store …; metrics off)`, or the trace's `routeguard: tracing started
/// (capture=…, ring 16384 KiB)`: the capture path, ring size and queue bounds.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Started {
    pub capture: Option<String>,
    pub ring_kib: Option<u64>,
    /// Every other `<name> <N> KiB` bound the line names (the drain's queue, …).
    pub queues: Vec<(String, u64)>,
}

impl Started {
    pub fn parse(line: &str) -> Option<Self> {
        let rest = after(line, "daemon started").or_else(|| after(line, "tracing started"))?;
        let mut started = Started::default();
        for part in rest.split([',', ';', '(', ')']).map(str::trim) {
            if let Some(capture) = part.strip_prefix("capture=") {
                started.capture = Some(capture.to_owned());
            } else if let Some((name, kib)) = kib_bound(part) {
                if name == "ring" {
                    started.ring_kib = Some(kib);
                } else {
                    started.queues.push((name.to_owned(), kib));
                }
            }
        }
        Some(started)
    }

    /// `ring 8192 KiB; queue 32768 KiB`, with `n/a` for what the line did not say.
    pub fn bounds(&self) -> String {
        let ring = self
            .ring_kib
            .map_or_else(|| "ring: n/a".to_owned(), |kib| format!("ring {kib} KiB"));
        let queues = if self.queues.is_empty() {
            "queue: n/a".to_owned()
        } else {
            self.queues
                .iter()
                .map(|(name, kib)| format!("{name} {kib} KiB"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        format!("{ring}; {queues}")
    }
}

/// The daemon's `routeguard: daemon stopped; N events lost since start`, optionally followed by
/// `(ring full R, queue full Q, task records T, acks A)`.
#[derive(Debug, PartialEq, Eq)]
pub struct Stopped {
    pub lost: u64,
    /// The parenthesised breakdown, as printed (without the parentheses).
    pub breakdown: Option<String>,
    /// What its `sinks:` line said (events seen but not written, by sink), when it printed one.
    pub sinks: Option<String>,
}

impl Stopped {
    pub fn parse(line: &str) -> Option<Self> {
        let rest = after(line, "daemon stopped;")?.trim_start();
        let (lost, rest) = leading_number(rest)?;
        let rest = rest.trim_start();
        let rest = rest
            .strip_prefix("events lost since start")
            .unwrap_or(rest)
            .trim_start();
        let breakdown = rest
            .strip_prefix('(')
            .and_then(|inner| inner.split_once(')'))
            .map(|(inside, _)| inside.trim().to_owned());
        Some(Stopped {
            lost,
            breakdown,
            sinks: None,
        })
    }

    /// The daemon's stop lines: the `daemon stopped;` line, with its `sinks:` line if any.
    pub fn from_lines(lines: &[String]) -> Option<Self> {
        let mut stopped = lines.iter().find_map(|l| Self::parse(l))?;
        stopped.sinks = lines
            .iter()
            .find_map(|l| after(l, "routeguard: sinks:").map(|s| s.trim().to_owned()));
        Some(stopped)
    }

    /// Whether a sink missed events (the daemon's line names them).
    pub fn sinks_missed(&self) -> bool {
        self.sinks
            .as_deref()
            .is_some_and(|s| s.starts_with("events not written"))
    }
}

/// `ring 8192 KiB` → ("ring", 8192).
fn kib_bound(part: &str) -> Option<(&str, u64)> {
    let (name, n) = part.strip_suffix("KiB")?.trim_end().rsplit_once(' ')?;
    Some((name.trim(), n.parse().ok()?))
}

/// What follows the first `marker` in `line`.
fn after<'a>(line: &'a str, marker: &str) -> Option<&'a str> {
    Some(&line[line.find(marker)? + marker.len()..])
}

/// `123 rest` → (123, " rest").
fn leading_number(s: &str) -> Option<(u64, &str)> {
    let end = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    Some((s[..end].parse().ok()?, &s[end..]))
}

#[cfg(test)]
mod tests {
    use super::{trace_summary, Outcomes, Started, Stopped};

    #[test]
    fn parses_the_trace_summary() {
        assert_eq!(
            trace_summary("routeguard: 100000 events, 0 lost"),
            Some((100000, 0))
        );
        assert_eq!(
            trace_summary("2026-01-01T00:00:00Z INFO routeguard: 5 events, 2 lost (ring full)"),
            Some((5, 2))
        );
        assert_eq!(trace_summary("routeguard: tracing started"), None);
        assert_eq!(trace_summary("5 events, 0 lost"), None);
    }

    #[test]
    fn parses_the_outcomes_line() {
        let line = "routeguard: outcomes: removed 999990 (ack 5, notification 999000, \
                    kernel-function 0, ioctl 0, re-dump 980, none 5), failed 3, unknown 7";
        let outcomes = Outcomes::parse(line).unwrap();
        assert_eq!(outcomes.removed, 999990);
        assert_eq!(outcomes.evidence.len(), 6);
        assert_eq!(outcomes.evidence[1], ("notification".to_owned(), 999000));
        assert_eq!(outcomes.evidence[2], ("kernel-function".to_owned(), 0));
        assert_eq!(outcomes.evidence[4], ("re-dump".to_owned(), 980));
        assert_eq!((outcomes.failed, outcomes.unknown), (3, 7));
        // Printed back as routeguard wrote it.
        assert_eq!(
            format!("routeguard: outcomes: {outcomes}"),
            line.split_whitespace().collect::<Vec<_>>().join(" ")
        );
        assert_eq!(
            Outcomes::parse("routeguard: outcomes: removed 4, failed 0, unknown 1"),
            Some(Outcomes {
                removed: 4,
                evidence: Vec::new(),
                failed: 0,
                unknown: 1
            })
        );
        assert_eq!(Outcomes::parse("routeguard: 5 events, 0 lost"), None);
        assert_eq!(Outcomes::parse("routeguard: outcomes: removed 4"), None);
    }

    #[test]
    fn parses_the_daemon_start_line() {
        let line = "routeguard: daemon started (capture=syscall, 5 programs, ring 8192 KiB, \
                    queue 32768 KiB; store /tmp/x/events.db; metrics off)";
        let started = Started::parse(line).unwrap();
        assert_eq!(started.capture.as_deref(), Some("syscall"));
        assert_eq!(started.ring_kib, Some(8192));
        assert_eq!(started.queues, vec![("queue".to_owned(), 32768)]);
        assert_eq!(started.bounds(), "ring 8192 KiB; queue 32768 KiB");
        // Today's binary: no queue.
        let old = "routeguard: daemon started (capture=syscall, 5 programs, ring 8192 KiB, not \
                   pinned; store /tmp/x/events.db (journald off); metrics off)";
        let started = Started::parse(old).unwrap();
        assert_eq!(started.ring_kib, Some(8192));
        assert_eq!(started.bounds(), "ring 8192 KiB; queue: n/a");
        let trace = "routeguard: tracing started (capture=syscall, 5 programs, ring 16384 KiB); \
                     Ctrl-C to stop";
        assert_eq!(Started::parse(trace).unwrap().ring_kib, Some(16384));
        assert_eq!(Started::parse("routeguard: 5 events, 0 lost"), None);
    }

    #[test]
    fn parses_the_daemon_stop_line() {
        assert_eq!(
            Stopped::parse(
                "routeguard: daemon stopped; 12 events lost since start; 0 route-mirror resyncs"
            ),
            Some(Stopped {
                lost: 12,
                breakdown: None,
                sinks: None,
            })
        );
        assert_eq!(
            Stopped::parse(
                "routeguard: daemon stopped; 7 events lost since start (ring full 4, queue full \
                 3, task records 0, acks 0); 1 route-mirror resyncs"
            ),
            Some(Stopped {
                lost: 7,
                breakdown: Some("ring full 4, queue full 3, task records 0, acks 0".to_owned()),
                sinks: None,
            })
        );
        assert_eq!(Stopped::parse("routeguard: daemon started (…)"), None);
        let lines = [
            "routeguard: daemon stopped; 0 events lost since start (ring full 0, queue full 0)",
            "routeguard: outcomes: removed 300000",
            "routeguard: sinks: events not written (refused while a sink lagged, or failed): \
             store 61716",
        ]
        .map(str::to_owned);
        let stopped = Stopped::from_lines(&lines).unwrap();
        assert_eq!(stopped.lost, 0);
        assert!(stopped.sinks_missed());
        assert_eq!(
            stopped.sinks.as_deref(),
            Some("events not written (refused while a sink lagged, or failed): store 61716")
        );
        let whole = Stopped::from_lines(&[
            lines[0].clone(),
            "routeguard: sinks: every event written to every sink that was on".to_owned(),
        ])
        .unwrap();
        assert!(!whole.sinks_missed());
        // A binary from before the sinks line.
        assert_eq!(Stopped::from_lines(&lines[..1]).unwrap().sinks, None);
    }
}
