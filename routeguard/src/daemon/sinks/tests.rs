//! The sinks together: one failing or missing at start, retried, recovered, reloaded.

use std::{fs, thread::sleep};

use super::*;
use crate::event::fixtures::{route_event, rule_event};

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("rg-sinks-{name}-{}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).unwrap();
    dir
}

fn jsonl_only(path: &Path) -> Config {
    let mut c = Config::default();
    c.store.enabled = false;
    c.journald.enabled = false;
    c.jsonl.enabled = true;
    c.jsonl.path = path.to_owned();
    c
}

fn lines(path: &Path) -> Vec<serde_json::Value> {
    fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// A JSON lines file that cannot be opened at start: the daemon starts without it, counts
/// what it does not write, and once the path works again writes there, beginning with how
/// many events it missed.
#[test]
fn a_jsonl_file_that_cannot_be_opened_is_down_then_retried_and_recovers() {
    let dir = temp_dir("jsonl-start");
    // A file where the directory should be: ENOTDIR, even for root.
    let blocker = dir.join("logs");
    fs::write(&blocker, "").unwrap();
    let path = blocker.join("events.jsonl");
    let metrics = Metrics::new();
    let mut sinks = Sinks::open(&jsonl_only(&path), &metrics).unwrap();
    assert!(sinks.describe().contains("(down: "), "{}", sinks.describe());
    let text = metrics.encode();
    assert!(
        text.contains(r#"routeguard_sink_up{sink="jsonl"} 0"#),
        "{text}"
    );
    sinks.write(vec![route_event(), rule_event()], &metrics);
    assert!(
        metrics
            .encode()
            .contains(r#"routeguard_sink_errors_total{sink="jsonl"} 2"#),
        "{}",
        metrics.encode()
    );
    fs::remove_file(&blocker).unwrap();
    // Not retried before its back-off.
    sinks.write(vec![route_event()], &metrics);
    assert!(!path.exists());
    sleep(health::FIRST_RETRY);
    sinks.write(vec![rule_event()], &metrics);
    let got = lines(&path);
    assert_eq!(got.len(), 2, "{got:#?}");
    assert_eq!(got[0]["kind"], "rule");
    assert_eq!(got[1]["event"], "sink-recovered");
    assert_eq!(got[1]["sink"], "jsonl");
    assert_eq!(got[1]["missed"], 3);
    let error = got[1]["error"].as_str().unwrap();
    assert!(error.contains("cannot create its directory"), "{error}");
    let text = metrics.encode();
    assert!(
        text.contains(r#"routeguard_sink_up{sink="jsonl"} 1"#),
        "{text}"
    );
    assert!(
        text.contains(r#"routeguard_sink_errors_total{sink="jsonl"} 3"#),
        "{text}"
    );
    sinks.close();
    fs::remove_dir_all(&dir).unwrap();
}

/// The file's directory removed while the daemon writes: a new file, not lines to nowhere.
#[test]
fn a_removed_jsonl_directory_is_made_again() {
    let dir = temp_dir("jsonl-removed");
    let path = dir.join("logs/events.jsonl");
    let metrics = Metrics::new();
    let mut sinks = Sinks::open(&jsonl_only(&path), &metrics).unwrap();
    sinks.write(vec![route_event()], &metrics);
    fs::remove_dir_all(dir.join("logs")).unwrap();
    sinks.write(vec![rule_event()], &metrics);
    let got = lines(&path);
    assert_eq!(got.len(), 1, "{got:#?}");
    assert_eq!(got[0]["kind"], "rule");
    sinks.close();
    fs::remove_dir_all(&dir).unwrap();
}

/// A store that cannot be opened at start: the other sinks are told, and the store is
/// retried (here it starts working: its directory was a file).
#[test]
fn a_store_that_cannot_be_opened_alerts_the_jsonl_file_and_is_retried() {
    let dir = temp_dir("store-start");
    let blocker = dir.join("state");
    fs::write(&blocker, "").unwrap();
    let jsonl = dir.join("events.jsonl");
    let mut config = jsonl_only(&jsonl);
    config.store.enabled = true;
    config.store.path = blocker.join("events.db");
    let metrics = Metrics::new();
    let mut sinks = Sinks::open(&config, &metrics).unwrap();
    let got = lines(&jsonl);
    assert_eq!(got.len(), 1, "{got:#?}");
    assert_eq!(got[0]["event"], "sink-failed");
    assert_eq!(got[0]["sink"], "store");
    assert_eq!(got[0]["retry_in_ms"], 1000);
    assert!(metrics
        .encode()
        .contains(r#"routeguard_sink_up{sink="store"} 0"#));
    sinks.write(vec![route_event()], &metrics);
    fs::remove_file(&blocker).unwrap();
    sleep(health::FIRST_RETRY);
    sinks.write(vec![rule_event()], &metrics);
    // The store's thread answers asynchronously.
    let deadline = Instant::now() + std::time::Duration::from_secs(10);
    while !metrics
        .encode()
        .contains(r#"routeguard_sink_up{sink="store"} 1"#)
    {
        assert!(Instant::now() < deadline, "{}", metrics.encode());
        sleep(std::time::Duration::from_millis(20));
        sinks.prune(&metrics);
    }
    let got = lines(&jsonl);
    let recovered = got.last().unwrap();
    assert_eq!(recovered["event"], "sink-recovered", "{got:#?}");
    assert_eq!(recovered["sink"], "store");
    assert_eq!(recovered["missed"], 1);
    sinks.close();
    let stored = crate::store::read_events(&config.store.path, None, None).unwrap();
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0]["kind"], "rule");
    fs::remove_dir_all(&dir).unwrap();
}

/// A reload that names a new file which cannot be opened is refused, the running one kept.
#[test]
fn a_reload_to_a_file_that_cannot_be_opened_keeps_the_running_sinks() {
    let dir = temp_dir("reload");
    let path = dir.join("events.jsonl");
    let metrics = Metrics::new();
    let mut sinks = Sinks::open(&jsonl_only(&path), &metrics).unwrap();
    fs::write(dir.join("file"), "").unwrap();
    let err = sinks
        .reconfigure(&jsonl_only(&dir.join("file/events.jsonl")), &metrics)
        .unwrap_err();
    assert!(err.to_string().contains("file/events.jsonl"), "{err}");
    sinks.write(vec![route_event()], &metrics);
    assert_eq!(lines(&path).len(), 1);
    sinks.close();
    fs::remove_dir_all(&dir).unwrap();
}

/// A collector that cannot be reached: the OTLP sink goes down once the exporter gives up on a
/// request (its outcome comes back asynchronously, seen by `poll`), the JSON lines file is told,
/// and the events are counted by why; while down, events are not handed over.
#[test]
fn an_otlp_collector_that_cannot_be_reached_is_down_alerted_and_counted() {
    let dir = temp_dir("otlp-down");
    let jsonl = dir.join("events.jsonl");
    let mut config = jsonl_only(&jsonl);
    // A port nothing listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    config.otlp.enabled = true;
    config.otlp.endpoint = format!("http://127.0.0.1:{port}");
    config.otlp.timeout = std::time::Duration::from_millis(300);
    config.otlp.batch_delay = std::time::Duration::ZERO;
    let metrics = Metrics::new();
    let mut sinks = Sinks::open(&config, &metrics).unwrap();
    assert!(
        sinks.describe().contains(&format!(
            "otlp http/protobuf http://127.0.0.1:{port}/v1/logs"
        )),
        "{}",
        sinks.describe()
    );
    assert!(metrics
        .encode()
        .contains(r#"routeguard_sink_up{sink="otlp"} 1"#));
    sinks.write(vec![route_event(), rule_event()], &metrics);
    let deadline = Instant::now() + std::time::Duration::from_secs(10);
    while !metrics
        .encode()
        .contains(r#"routeguard_sink_up{sink="otlp"} 0"#)
    {
        assert!(Instant::now() < deadline, "{}", metrics.encode());
        sleep(std::time::Duration::from_millis(20));
        sinks.poll(&metrics);
    }
    // While down (before its back-off ends): counted, not handed over.
    sinks.write(vec![route_event()], &metrics);
    let text = metrics.encode();
    for series in [
        r#"routeguard_otlp_dropped_total{reason="export-failed"} 2"#,
        r#"routeguard_otlp_dropped_total{reason="down"} 1"#,
        r#"routeguard_otlp_dropped_total{reason="queue-full"} 0"#,
        r#"routeguard_sink_errors_total{sink="otlp"} 3"#,
        "routeguard_otlp_exported_total 0",
    ] {
        assert!(text.contains(series), "{series} in {text}");
    }
    let got = lines(&jsonl);
    let alert = got
        .iter()
        .find(|l| l["event"] == "sink-failed")
        .unwrap_or_else(|| panic!("{got:#?}"));
    assert_eq!(alert["sink"], "otlp");
    assert_eq!(alert["missed"], 2);
    assert_eq!(
        alert["path"],
        format!("http://127.0.0.1:{port}/v1/logs").as_str()
    );
    let error = alert["error"].as_str().unwrap();
    assert!(error.contains(&format!("127.0.0.1:{port}")), "{error}");
    // The JSON lines file has all three events all the same.
    assert_eq!(got.iter().filter(|l| l.get("kind").is_some()).count(), 3);
    sinks.close();
    fs::remove_dir_all(&dir).unwrap();
}
