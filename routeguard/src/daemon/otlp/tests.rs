//! The exporter's thread against a small OTLP/HTTP collector on loopback, written here with the
//! official protobuf definitions (`opentelemetry-proto`): batches, the queue's bound, failures,
//! what is sent at close. Both protocols, field by field, are tests/tests/otlp.rs's.

use std::{
    collections::BTreeSet,
    io::{BufRead, BufReader, Read, Write},
    net::{Ipv4Addr, TcpListener, TcpStream},
    sync::{Arc, Mutex},
    time::Instant,
};

use opentelemetry_proto::tonic::{
    collector::logs::v1::{ExportLogsServiceRequest, ExportLogsServiceResponse},
    common::v1::any_value::Value,
};
use prost::Message;

use super::*;
use crate::event::fixtures::{route_event, rule_event};

/// What the collector answers.
#[derive(Clone, Copy)]
enum Answer {
    Ok,
    Unavailable,
    /// Reads the request, answers nothing.
    Silence,
}

/// A collector on a loopback port: every request decoded and kept.
struct Collector {
    port: u16,
    got: Arc<Mutex<Vec<ExportLogsServiceRequest>>>,
}

impl Collector {
    fn start(answer: Answer) -> Self {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
        let port = listener.local_addr().unwrap().port();
        let got = Arc::new(Mutex::new(Vec::new()));
        let shared = got.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let got = shared.clone();
                std::thread::spawn(move || serve(stream, answer, &got));
            }
        });
        Self { port, got }
    }

    fn config(&self) -> OtlpConfig {
        OtlpConfig {
            enabled: true,
            endpoint: format!("http://127.0.0.1:{}", self.port),
            timeout: Duration::from_secs(2),
            batch_delay: Duration::from_millis(50),
            ..OtlpConfig::default()
        }
    }

    /// The records' sizes per request, once `n` records came (or after 10 s).
    fn wait(&self, n: usize) -> Vec<usize> {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let sizes: Vec<usize> = self.got.lock().unwrap().iter().map(records).collect();
            if sizes.iter().sum::<usize>() >= n || Instant::now() > deadline {
                return sizes;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

fn records(r: &ExportLogsServiceRequest) -> usize {
    r.resource_logs
        .iter()
        .flat_map(|rl| &rl.scope_logs)
        .map(|sl| sl.log_records.len())
        .sum()
}

/// HTTP/1.1 with keep-alive, as the exporter's client speaks it.
fn serve(stream: TcpStream, answer: Answer, got: &Mutex<Vec<ExportLogsServiceRequest>>) {
    let mut out = stream.try_clone().unwrap();
    let mut r = BufReader::new(stream);
    loop {
        let mut len = 0;
        let mut first = String::new();
        if r.read_line(&mut first).unwrap_or(0) == 0 {
            return;
        }
        assert!(first.starts_with("POST /v1/logs "), "{first}");
        loop {
            let mut line = String::new();
            r.read_line(&mut line).unwrap();
            if line == "\r\n" {
                break;
            }
            let lower = line.to_ascii_lowercase();
            if let Some(v) = lower.strip_prefix("content-length:") {
                len = v.trim().parse().unwrap();
            }
        }
        let mut body = vec![0; len];
        r.read_exact(&mut body).unwrap();
        got.lock()
            .unwrap()
            .push(ExportLogsServiceRequest::decode(&body[..]).unwrap());
        let (status, body) = match answer {
            Answer::Ok => (
                "200 OK",
                ExportLogsServiceResponse::default().encode_to_vec(),
            ),
            Answer::Unavailable => ("503 Service Unavailable", Vec::new()),
            Answer::Silence => {
                std::thread::sleep(Duration::from_secs(3600));
                return;
            }
        };
        let head = format!(
            "HTTP/1.1 {status}\r\nContent-Type: application/x-protobuf\r\nContent-Length: {}\r\n\r\n",
            body.len()
        );
        if out.write_all(head.as_bytes()).is_err() || out.write_all(&body).is_err() {
            return;
        }
    }
}

fn wait_done(w: &OtlpWriter, n: usize) -> Vec<Done> {
    let deadline = Instant::now() + Duration::from_secs(15);
    let mut all = Vec::new();
    while all.len() < n && Instant::now() < deadline {
        all.extend(w.done());
        std::thread::sleep(Duration::from_millis(20));
    }
    all
}

#[test]
fn batches_by_size_then_by_delay_and_tells_each_outcome() {
    let c = Collector::start(Answer::Ok);
    let w = OtlpWriter::start(
        &OtlpConfig {
            batch_size: 2,
            ..c.config()
        },
        Arc::default(),
    )
    .unwrap();
    assert_eq!(w.url(), format!("http://127.0.0.1:{}/v1/logs", c.port));
    w.send(vec![
        route_event(),
        rule_event(),
        route_event(),
        rule_event(),
        route_event(),
    ])
    .unwrap();
    assert_eq!(c.wait(5), [2, 2, 1]);
    let done = wait_done(&w, 3);
    let events: Vec<usize> = done.iter().map(|d| d.events).collect();
    assert_eq!(events, [2, 2, 1]);
    assert!(done.iter().all(|d| d.result.is_ok()), "{done:?}");

    let req = &c.got.lock().unwrap()[0];
    let rl = &req.resource_logs[0];
    let resource: Vec<(String, Option<Value>)> = rl
        .resource
        .as_ref()
        .unwrap()
        .attributes
        .iter()
        .map(|kv| (kv.key.clone(), kv.value.clone().and_then(|v| v.value)))
        .collect();
    assert!(
        resource.contains(&(
            "service.name".into(),
            Some(Value::StringValue("routeguard".into()))
        )),
        "{resource:?}"
    );
    assert_eq!(rl.scope_logs[0].scope.as_ref().unwrap().name, "routeguard");
    let rec = &rl.scope_logs[0].log_records[0];
    assert_eq!(rec.event_name, "routeguard.removal");
    assert_eq!(rec.severity_text, "INFO");
    assert_eq!(rec.time_unix_nano, 1_795_792_661_123_456_789);
    assert!(rec.observed_time_unix_nano > 0);
    let pid = rec
        .attributes
        .iter()
        .find(|kv| kv.key == "process.pid")
        .and_then(|kv| kv.value.clone()?.value);
    assert_eq!(pid, Some(Value::IntValue(12345)));
    assert!(w.close(true).is_empty());
}

#[test]
fn a_collector_that_refuses_or_is_gone_is_an_error_naming_it() {
    let c = Collector::start(Answer::Unavailable);
    let w = OtlpWriter::start(&c.config(), Arc::default()).unwrap();
    w.send(vec![route_event()]).unwrap();
    let done = wait_done(&w, 1);
    let err = done[0].result.as_ref().unwrap_err().to_string();
    assert!(
        err.contains(&format!("127.0.0.1:{}/v1/logs", c.port)),
        "{err}"
    );
    assert!(err.contains("503"), "{err}");
    assert_eq!(done[0].events, 1);
    w.close(true);

    // Nothing listens: a free port, closed again.
    let port = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let w = OtlpWriter::start(
        &OtlpConfig {
            protocol: OtlpProtocol::Grpc,
            endpoint: format!("http://127.0.0.1:{port}"),
            ..c.config()
        },
        Arc::default(),
    )
    .unwrap();
    w.send(vec![route_event(), rule_event()]).unwrap();
    let done = wait_done(&w, 1);
    assert_eq!(done[0].events, 2);
    let err = done[0].result.as_ref().unwrap_err().to_string();
    assert!(err.contains(&format!("http://127.0.0.1:{port}")), "{err}");
    w.close(true);
}

#[test]
fn the_queue_is_bounded_and_what_does_not_fit_is_refused_at_once() {
    let c = Collector::start(Answer::Silence);
    let w = OtlpWriter::start(
        &OtlpConfig {
            batch_size: 2,
            queue_size: 3,
            batch_delay: Duration::ZERO,
            timeout: Duration::from_millis(300),
            ..c.config()
        },
        Arc::default(),
    )
    .unwrap();
    let start = Instant::now();
    assert_eq!(w.send(vec![route_event(), route_event()]), Ok(()));
    assert_eq!(
        w.send(vec![route_event(), route_event(), route_event()]),
        Err(Refused::Full(2))
    );
    assert_eq!(w.send(vec![route_event()]), Err(Refused::Full(1)));
    assert!(start.elapsed() < Duration::from_millis(100), "never waits");
    // The silent collector: each request given up on after the timeout (and a grace), then the
    // queue has room again.
    let done = wait_done(&w, 2);
    assert_eq!(done.iter().map(|d| d.events).sum::<usize>(), 3, "{done:?}");
    assert!(done.iter().all(|d| d.result.is_err()), "{done:?}");
    assert_eq!(w.send(vec![route_event()]), Ok(()));
    let last = w.close(true);
    assert_eq!(last.iter().map(|d| d.events).sum::<usize>(), 1, "{last:?}");
}

#[test]
fn what_waits_at_close_is_sent() {
    let c = Collector::start(Answer::Ok);
    let w = OtlpWriter::start(
        &OtlpConfig {
            batch_delay: Duration::from_secs(60),
            ..c.config()
        },
        Arc::default(),
    )
    .unwrap();
    w.send(vec![route_event(), rule_event(), route_event()])
        .unwrap();
    w.alerts(vec![Alert::failed(
        "jsonl",
        None,
        "No space left on device",
        1,
        Duration::from_secs(1),
    )]);
    let last = w.close(true);
    assert_eq!(last.len(), 1);
    assert!(last[0].result.is_ok(), "{last:?}");
    assert_eq!(last[0].events, 3);
    assert_eq!(c.wait(4), [4]);
    let got = c.got.lock().unwrap();
    let names: Vec<&str> = got[0].resource_logs[0].scope_logs[0]
        .log_records
        .iter()
        .map(|r| r.event_name.as_str())
        .collect();
    assert_eq!(
        names,
        [
            "routeguard.removal",
            "routeguard.removal",
            "routeguard.removal",
            "routeguard.sink_failed"
        ]
    );
}

/// At close, the request in flight and what waits share one `otlp.timeout` from the close: the
/// daemon's stop never waits for the request in flight's whole timeout and then another.
#[test]
fn close_bounds_the_request_in_flight_too() {
    let c = Collector::start(Answer::Silence);
    let timeout = Duration::from_secs(3);
    let w = OtlpWriter::start(
        &OtlpConfig {
            batch_size: 1,
            batch_delay: Duration::ZERO,
            timeout,
            ..c.config()
        },
        Arc::default(),
    )
    .unwrap();
    w.send(vec![route_event()]).unwrap();
    c.wait(1);
    w.send(vec![rule_event()]).unwrap();
    std::thread::sleep(Duration::from_millis(500));
    let start = Instant::now();
    let last = w.close(true);
    let took = start.elapsed();
    assert!(took < timeout + Duration::from_millis(500), "{took:?}");
    // Both told as not sent: the one in flight and the one that waited.
    assert_eq!(last.iter().map(|d| d.events).sum::<usize>(), 2, "{last:?}");
    assert!(last.iter().all(|d| d.result.is_err()), "{last:?}");
}

#[test]
fn a_url_that_cannot_be_used_is_refused_at_start() {
    let err = OtlpWriter::start(
        &OtlpConfig {
            endpoint: "https://collector:4318".into(),
            ..OtlpConfig::default()
        },
        Arc::default(),
    )
    .err()
    .unwrap()
    .to_string();
    assert!(err.contains("TLS"), "{err}");
}

/// docs/opentelemetry.md, "## Alerts", lists the attributes of an alert's record.
#[test]
fn docs_opentelemetry_md_lists_the_alerts_attributes() {
    const DOC: &str = include_str!("../../../../docs/opentelemetry.md");
    let documented: BTreeSet<&str> = DOC
        .lines()
        .skip_while(|l| *l != "## Alerts")
        .skip(1)
        .take_while(|l| !l.starts_with("## "))
        .filter_map(|l| l.strip_prefix("| `")?.split('`').next())
        .collect();
    let replaced = Alert::store_replaced(
        std::path::Path::new("/var/lib/routeguard/events.db"),
        "not a database",
        std::path::Path::new("/var/lib/routeguard/events.db.corrupt-1"),
    );
    let failed = Alert::failed("otlp", None, "refused", 3, Duration::from_secs(1));
    let mut sent = BTreeSet::new();
    for a in [&replaced, &failed] {
        for (k, _) in alert_record(a).attributes {
            sent.insert(k.to_string());
        }
    }
    let sent: BTreeSet<&str> = sent.iter().map(String::as_str).collect();
    assert_eq!(documented, sent, "docs/opentelemetry.md, ## Alerts");
    for (a, name) in [
        (&failed, "routeguard.sink_failed"),
        (&replaced, "routeguard.store_replaced"),
    ] {
        assert_eq!(alert_record(a).event_name, name);
        assert!(DOC.contains(&format!("`{name}`")), "{name}");
    }
    assert!(DOC.contains("`routeguard.sink_recovered`"));
}
