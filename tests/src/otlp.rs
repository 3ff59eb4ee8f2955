//! An OTLP logs receiver on 127.0.0.1, built on the official protobuf definitions (the
//! `opentelemetry-proto` crate), for both transports:
//!
//! - OTLP/HTTP: HTTP/1.1 written here (keep-alive, `Content-Length` bodies), `POST /v1/logs`
//!   with `Content-Type: application/x-protobuf` only; anything else is recorded as a protocol
//!   error and answered 400/404/415;
//! - OTLP/gRPC: `opentelemetry.proto.collector.logs.v1.LogsService/Export`, tonic's server with
//!   the generated service.
//!
//! Every request is decoded (`ExportLogsServiceRequest`) and kept with its headers (HTTP) or
//! metadata (gRPC); [`Receiver::records`] flattens them into one [`Record`] per log record, with
//! its resource and scope, for tests to check field by field. [`Receiver::stop`] closes the
//! listener and every connection (as a collector that went away), and [`Receiver::start_on`]
//! listens on the same port again.

use std::{
    collections::BTreeMap,
    io::{BufRead, BufReader, Read, Write},
    net::{Ipv4Addr, Shutdown, SocketAddr, TcpListener, TcpStream},
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc, Mutex, PoisonError,
    },
    thread::JoinHandle,
    time::{Duration, Instant},
};

use opentelemetry_proto::tonic::collector::logs::v1::logs_service_server::{
    LogsService, LogsServiceServer,
};
pub use opentelemetry_proto::tonic::{
    collector::logs::v1::{ExportLogsServiceRequest, ExportLogsServiceResponse},
    common::v1::{any_value::Value as AnyValue, KeyValue},
    logs::v1::LogRecord,
};
use prost::Message;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Protocol {
    Http,
    Grpc,
}

impl Protocol {
    /// As `[otlp] protocol` names it.
    pub fn config_name(self) -> &'static str {
        match self {
            Protocol::Http => "http/protobuf",
            Protocol::Grpc => "grpc",
        }
    }
}

/// One request as it arrived.
#[derive(Clone, Debug)]
pub struct Got {
    /// Header (HTTP) or metadata (gRPC) names, lower case, and values.
    pub headers: BTreeMap<String, String>,
    pub request: ExportLogsServiceRequest,
}

/// One log record with what it came with.
#[derive(Clone, Debug)]
pub struct Record {
    pub headers: BTreeMap<String, String>,
    pub resource: BTreeMap<String, AnyValue>,
    pub scope: String,
    pub record: LogRecord,
    pub attributes: BTreeMap<String, AnyValue>,
}

impl Record {
    pub fn attr(&self, key: &str) -> Option<&AnyValue> {
        self.attributes.get(key)
    }

    pub fn int(&self, key: &str) -> Option<i64> {
        match self.attr(key) {
            Some(AnyValue::IntValue(i)) => Some(*i),
            _ => None,
        }
    }

    pub fn str(&self, key: &str) -> Option<&str> {
        match self.attr(key) {
            Some(AnyValue::StringValue(s)) => Some(s),
            _ => None,
        }
    }

    pub fn body(&self) -> Option<&str> {
        match self.record.body.as_ref()?.value.as_ref()? {
            AnyValue::StringValue(s) => Some(s),
            _ => None,
        }
    }
}

#[derive(Default)]
struct Shared {
    got: Mutex<Vec<Got>>,
    /// What was not an OTLP request as the protocol wants it.
    errors: Mutex<Vec<String>>,
}

pub struct Receiver {
    pub protocol: Protocol,
    pub port: u16,
    shared: Arc<Shared>,
    server: Option<Server>,
}

enum Server {
    Http {
        stop: Arc<AtomicBool>,
        accept: JoinHandle<()>,
        connections: Arc<Mutex<Vec<TcpStream>>>,
    },
    Grpc {
        runtime: tokio::runtime::Runtime,
        shutdown: tokio::sync::oneshot::Sender<()>,
    },
}

impl Receiver {
    /// A receiver on a free loopback port.
    pub fn start(protocol: Protocol) -> Self {
        let port = free_port();
        Self::start_on(protocol, port)
    }

    /// A receiver on `port` (a free one, or the port of one that was stopped).
    pub fn start_on(protocol: Protocol, port: u16) -> Self {
        let mut r = Self {
            protocol,
            port,
            shared: Arc::default(),
            server: None,
        };
        r.listen();
        r
    }

    /// Listens again on the same port, keeping what was received.
    pub fn restart(&mut self) {
        assert!(self.server.is_none(), "the receiver is running");
        self.listen();
    }

    fn listen(&mut self) {
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, self.port));
        // The port was just freed by a stopped receiver: bind may need a moment.
        let deadline = Instant::now() + Duration::from_secs(10);
        let listener = loop {
            match TcpListener::bind(addr) {
                Ok(l) => break l,
                Err(e) if Instant::now() < deadline => {
                    eprintln!("receiver: bind {addr}: {e}; again");
                    std::thread::sleep(Duration::from_millis(100));
                }
                Err(e) => panic!("cannot listen on {addr}: {e}"),
            }
        };
        self.server = Some(match self.protocol {
            Protocol::Http => serve_http(listener, self.shared.clone()),
            Protocol::Grpc => serve_grpc(listener, self.shared.clone()),
        });
    }

    /// As a collector that went away: no listener, every connection closed.
    pub fn stop(&mut self) {
        match self.server.take() {
            Some(Server::Http {
                stop,
                accept,
                connections,
            }) => {
                stop.store(true, Ordering::SeqCst);
                let _ = accept.join();
                for c in connections
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .drain(..)
                {
                    let _ = c.shutdown(Shutdown::Both);
                }
            }
            Some(Server::Grpc { runtime, shutdown }) => {
                let _ = shutdown.send(());
                // Tasks still serving a connection are dropped with their sockets.
                runtime.shutdown_timeout(Duration::from_secs(2));
            }
            None => {}
        }
    }

    /// `endpoint` for `[otlp]`.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn requests(&self) -> Vec<Got> {
        self.shared
            .got
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Requests that were not OTLP as the protocol wants it.
    pub fn errors(&self) -> Vec<String> {
        self.shared
            .errors
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Every log record received so far.
    pub fn records(&self) -> Vec<Record> {
        let mut out = Vec::new();
        for got in self.requests() {
            for rl in got.request.resource_logs {
                let resource = rl
                    .resource
                    .map(|r| flatten(r.attributes))
                    .unwrap_or_default();
                for sl in rl.scope_logs {
                    let scope = sl.scope.map(|s| s.name).unwrap_or_default();
                    for record in sl.log_records {
                        out.push(Record {
                            headers: got.headers.clone(),
                            resource: resource.clone(),
                            scope: scope.clone(),
                            attributes: flatten(record.attributes.clone()),
                            record,
                        });
                    }
                }
            }
        }
        out
    }

    /// The first record matching `pred`, waiting up to `timeout` for it.
    #[track_caller]
    pub fn wait_record(
        &self,
        what: &str,
        timeout: Duration,
        pred: impl Fn(&Record) -> bool,
    ) -> Record {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(r) = self.records().into_iter().find(|r| pred(r)) {
                return r;
            }
            assert!(
                Instant::now() < deadline,
                "no OTLP record {what} after {timeout:?}; received {} records, errors {:?}",
                self.records().len(),
                self.errors()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.stop();
    }
}

fn free_port() -> u16 {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Attributes by key; a key sent twice is an error of the sender, kept as a protocol error.
fn flatten(kvs: Vec<KeyValue>) -> BTreeMap<String, AnyValue> {
    let mut out = BTreeMap::new();
    for kv in kvs {
        let key = kv.key.clone();
        let value = kv
            .value
            .and_then(|v| v.value)
            .unwrap_or(AnyValue::StringValue("<no value>".into()));
        assert!(out.insert(key.clone(), value).is_none(), "{key} sent twice");
    }
    out
}

fn serve_http(listener: TcpListener, shared: Arc<Shared>) -> Server {
    listener.set_nonblocking(true).unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let connections = Arc::new(Mutex::new(Vec::new()));
    let (stop2, conns2) = (stop.clone(), connections.clone());
    let accept = std::thread::spawn(move || {
        while !stop2.load(Ordering::SeqCst) {
            match listener.accept() {
                Ok((stream, _)) => {
                    let _ = stream.set_nonblocking(false);
                    if let Ok(c) = stream.try_clone() {
                        conns2
                            .lock()
                            .unwrap_or_else(PoisonError::into_inner)
                            .push(c);
                    }
                    let shared = shared.clone();
                    std::thread::spawn(move || http_connection(stream, &shared));
                }
                Err(_) => std::thread::sleep(Duration::from_millis(10)),
            }
        }
        // The listener is dropped here: the port refuses connections.
    });
    Server::Http {
        stop,
        accept,
        connections,
    }
}

/// Requests on one connection until the client closes it (or [`Receiver::stop`] does).
fn http_connection(stream: TcpStream, shared: &Shared) {
    let Ok(mut out) = stream.try_clone() else {
        return;
    };
    let mut r = BufReader::new(stream);
    loop {
        let mut first = String::new();
        if r.read_line(&mut first).unwrap_or(0) == 0 {
            return;
        }
        let mut headers = BTreeMap::new();
        loop {
            let mut line = String::new();
            if r.read_line(&mut line).unwrap_or(0) == 0 {
                return;
            }
            let line = line.trim_end();
            if line.is_empty() {
                break;
            }
            if let Some((name, value)) = line.split_once(':') {
                headers.insert(name.trim().to_ascii_lowercase(), value.trim().to_owned());
            }
        }
        let len: usize = headers
            .get("content-length")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        let mut body = vec![0; len];
        if r.read_exact(&mut body).is_err() {
            return;
        }
        let mut parts = first.split_whitespace();
        let (method, path) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
        let status = if method != "POST" || path != "/v1/logs" {
            shared.error(format!("{method} {path}: not POST /v1/logs"));
            "404 Not Found"
        } else if headers.get("content-type").map(String::as_str) != Some("application/x-protobuf")
        {
            shared.error(format!("content-type {:?}", headers.get("content-type")));
            "415 Unsupported Media Type"
        } else {
            match ExportLogsServiceRequest::decode(&body[..]) {
                Ok(request) => {
                    shared.got(Got { headers, request });
                    "200 OK"
                }
                Err(e) => {
                    shared.error(format!("undecodable body ({len} bytes): {e}"));
                    "400 Bad Request"
                }
            }
        };
        let answer = ExportLogsServiceResponse::default().encode_to_vec();
        let head = format!(
            "HTTP/1.1 {status}\r\nContent-Type: application/x-protobuf\r\nContent-Length: {}\r\n\r\n",
            answer.len()
        );
        if out.write_all(head.as_bytes()).is_err() || out.write_all(&answer).is_err() {
            return;
        }
    }
}

impl Shared {
    fn got(&self, got: Got) {
        self.got
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(got);
    }

    fn error(&self, e: String) {
        self.errors
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(e);
    }
}

struct Grpc(Arc<Shared>);

#[tonic::async_trait]
impl LogsService for Grpc {
    async fn export(
        &self,
        request: tonic::Request<ExportLogsServiceRequest>,
    ) -> Result<tonic::Response<ExportLogsServiceResponse>, tonic::Status> {
        let headers = request
            .metadata()
            .clone()
            .into_headers()
            .iter()
            .map(|(k, v)| {
                (
                    k.as_str().to_owned(),
                    String::from_utf8_lossy(v.as_bytes()).into_owned(),
                )
            })
            .collect();
        self.0.got(Got {
            headers,
            request: request.into_inner(),
        });
        Ok(tonic::Response::new(ExportLogsServiceResponse::default()))
    }
}

fn serve_grpc(listener: TcpListener, shared: Arc<Shared>) -> Server {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("a runtime for the gRPC receiver");
    let (shutdown, signal) = tokio::sync::oneshot::channel::<()>();
    listener.set_nonblocking(true).unwrap();
    runtime.spawn(async move {
        let listener = tokio::net::TcpListener::from_std(listener).expect("tokio listener");
        let incoming = tonic::transport::server::TcpIncoming::from(listener);
        let served = tonic::transport::Server::builder()
            .serve_with_incoming_shutdown(
                LogsServiceServer::new(Grpc(shared.clone())),
                incoming,
                async {
                    let _ = signal.await;
                },
            )
            .await;
        if let Err(e) = served {
            shared.error(format!("gRPC server: {e}"));
        }
    });
    Server::Grpc { runtime, shutdown }
}
