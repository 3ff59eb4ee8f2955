//! What routeguard writes outside the daemon is private, and what it is told is bounded:
//! `report --out FILE` is created mode 0600 (a report holds command lines), an existing file is
//! set to 0600, and a symlink at FILE is refused; `trace`'s sizes and durations out of range are
//! usage errors (exit 2) naming the value and the range, before anything is loaded.

use std::{
    fs,
    os::unix::fs::{symlink, PermissionsExt},
    path::PathBuf,
    process::{Command, Stdio},
    time::Duration,
};

use routeguard_tests::*;

/// One removal, as `routeguard trace --json` writes it (docs/events.md's example).
const EVENT: &str = r#"{"schema_version":1,"ts":"2026-11-27T15:17:41.123456789Z","kind":"route","family":"inet","cause":"request","outcome":"removed","errno":null,"error":null,"capture":"syscall","netns":{"inode":4026532456,"name":"blue"},"actor":{"pid":12345,"tid":12345,"comm":"ip","exe":"/usr/sbin/ip","cmdline":"ip route del 10.1.0.0/24 via 10.0.0.1 table 77 metric 100","argv":["ip","route","del","10.1.0.0/24","via","10.0.0.1","table","77","metric","100"],"uid":0,"ppid":12000,"ancestry":[{"pid":12000,"comm":"bash"},{"pid":1,"comm":"systemd"}],"cgroup":"/system.slice/demo.service","unit":"demo.service","container":null},"request":{"syscall":"sendmsg","op":"RTM_DELROUTE","seq":1764256661,"nlmsg_flags":5,"ack_requested":true},"route":{"table":77,"dst":"10.1.0.0/24","gateway":"10.0.0.1","dev":null,"oif":null,"protocol":null,"scope":null,"type":null,"priority":100,"src":null,"tos":null,"nhid":null},"rule":null,"nexthop":null,"link":null,"address":null,"trigger":null,"event":"removal","restore":null,"replacement":null}"#;

struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> Self {
        let dir =
            std::env::temp_dir().join(format!("routeguard-files-{tag}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        Self(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

fn mode(path: &std::path::Path) -> u32 {
    fs::symlink_metadata(path).unwrap().permissions().mode() & 0o777
}

#[test]
fn report_out_is_private_and_refuses_a_symlink() {
    let dir = TempDir::new("report");
    let input = dir.0.join("removals.jsonl");
    fs::write(&input, format!("{EVENT}\n")).unwrap();
    let report = |out: &std::path::Path| {
        run(Command::new(routeguard_bin())
            .args(["report", "--input"])
            .arg(&input)
            .arg("--out")
            .arg(out))
    };

    let new = dir.0.join("new.md");
    report(&new).ok("report --out new.md");
    assert_eq!(mode(&new), 0o600, "a new report");
    assert!(fs::read_to_string(&new).unwrap().contains("ip route del"));

    let old = dir.0.join("old.html");
    fs::write(&old, "a longer file that was there before the report").unwrap();
    fs::set_permissions(&old, fs::Permissions::from_mode(0o644)).unwrap();
    report(&old).ok("report --out old.html");
    assert_eq!(mode(&old), 0o600, "an existing report file");
    assert!(fs::read_to_string(&old)
        .unwrap()
        .starts_with("<!DOCTYPE html>"));

    let target = dir.0.join("someone-elses");
    fs::write(&target, "theirs\n").unwrap();
    fs::set_permissions(&target, fs::Permissions::from_mode(0o644)).unwrap();
    let link = dir.0.join("report.md");
    symlink(&target, &link).unwrap();
    let ran = report(&link);
    assert_eq!(ran.status.code(), Some(1), "{}", ran.stderr);
    assert!(
        ran.stderr.contains("is a symbolic link") && ran.stderr.contains("report.md"),
        "{}",
        ran.stderr
    );
    assert_eq!(fs::read_to_string(&target).unwrap(), "theirs\n");
    assert_eq!(mode(&target), 0o644, "the link's target is left alone");
}

/// `trace ARGS` is refused with exit 2, its stderr naming `needle`, and starts nothing.
fn trace_refuses(args: &[&str], needle: &str) {
    let child = Command::new(routeguard_bin())
        .arg("trace")
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn routeguard");
    let ran = finish(child, "routeguard trace", Duration::from_secs(10));
    assert_eq!(ran.status.code(), Some(2), "{args:?}: {}", ran.stderr);
    assert!(ran.stderr.contains(needle), "{args:?}: {}", ran.stderr);
    assert!(!ran.stderr.contains("tracing started"), "{}", ran.stderr);
}

#[test]
fn trace_sizes_and_durations_out_of_range_are_usage_errors() {
    // Panicked at `Instant::now() + duration` once tracing had started.
    trace_refuses(
        &["--duration", "18446744073709551615"],
        "accepted: 1ms to 8760h",
    );
    // 2^64 bytes wrapped to 0 in a release build: a wake-up on every event.
    trace_refuses(&["--wakeup", "17179869184G"], "too large");
    trace_refuses(&["--wakeup", "1G"], "accepted: 0 to 512M");
    trace_refuses(&["--ring-size", "2G"], "a power of two from 64K to 1G");
    trace_refuses(&["--queue-size", "4G"], "too large");
    trace_refuses(&["--queue-size", "512K"], "accepted: 1M to 2G");
    trace_refuses(&["--count", "0"], "0");
}
