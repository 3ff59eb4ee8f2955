//! The OTLP exporter, on a thread of its own (`routeguard-otlp`) with its own tokio runtime.
//!
//! The daemon's loop hands each batch of events over and goes back to the ring; the thread makes
//! OpenTelemetry log records of them ([`crate::sink::otlp`]), batches them (`otlp.batch_size`
//! records, or what came within `otlp.batch_delay` of the first) and sends one request at a time
//! with `opentelemetry-otlp`'s exporter (HTTP/protobuf over hyper, or gRPC over tonic), which
//! retries a failed request itself (up to three times, within `otlp.timeout`). Encoding and the network
//! never run on the daemon's loop, and a collector that is slow or gone never holds it up.
//!
//! Why not the SDK's `BatchLogProcessor`: it drops records at its bound and after a failed export
//! without telling anyone but its own log, and the daemon needs both as numbers (the sink's health,
//! `routeguard_otlp_dropped_total`). So the queue and the batching are here, and the SDK gives
//! the records, the resource and the exporter. The queue is bounded in events
//! (`otlp.queue_size`): what does not fit is refused at once and counted, never waited for.
//! Every request's outcome comes back to the daemon ([`Done`]), which keeps the sink's health.

use std::{
    collections::VecDeque,
    sync::{
        atomic::{AtomicUsize, Ordering},
        mpsc, Arc, Mutex, PoisonError,
    },
    thread::JoinHandle,
    time::{Duration, SystemTime},
};

use opentelemetry::{
    logs::{AnyValue, LogRecord as _, Logger as _, LoggerProvider as _},
    InstrumentationScope,
};
use opentelemetry_http::{hyper::HyperClient, Bytes, HttpClient, HttpError, Request, Response};
use opentelemetry_otlp::{
    tonic_types::metadata::MetadataMap, LogExporter, WithExportConfig, WithHttpConfig,
    WithTonicConfig,
};
use opentelemetry_sdk::{
    error::OTelSdkError,
    logs::{LogBatch, LogExporter as _, SdkLogRecord, SdkLogger, SdkLoggerProvider},
    Resource,
};
use tokio::sync::{mpsc as async_mpsc, watch, Notify};

use super::{
    config::{OtlpConfig, OtlpProtocol},
    sinks::{Alert, AlertType},
};
use crate::{
    event::{local_host, Event, Suppressed},
    sink::otlp::{self, Attributes, Options, Record},
};

/// Beyond `otlp.timeout`, how long one export may take before it is given up on (the exporter
/// keeps its own deadline; this one only guards against an exporter that never answers).
const GRACE: Duration = Duration::from_secs(1);
/// At exit, what waits is sent for `otlp.timeout`, but never longer than this: the unit gives
/// the whole stop 30 s (`TimeoutStopSec`), and the store is closed first.
const CLOSE_AT_MOST: Duration = Duration::from_secs(10);

enum Job {
    Events(Vec<Event>),
    Alerts(Vec<Alert>),
    Suppressed(Vec<Suppressed>),
}

#[expect(
    clippy::large_enum_variant,
    reason = "nearly every item is an event; alerts are a handful per outage, and boxing events \
              would allocate once per event"
)]
enum Item {
    Event(Event),
    Alert(Alert),
    Suppressed(Suppressed),
}

/// One request's outcome: `events` events (and any alerts with them) accepted by the collector,
/// or not.
#[derive(Debug)]
pub struct Done {
    pub events: usize,
    pub result: Result<(), OtlpError>,
}

/// Why the exporter could not be started, or a request was not delivered. The messages go into
/// the `sink-failed` alert and the log, so they name the collector's URL.
#[derive(Debug, thiserror::Error)]
pub enum OtlpError {
    /// The config's check at load refuses the same endpoint ([`OtlpConfig::url`]).
    #[error("`otlp.endpoint` {endpoint:?} cannot be used: {why}")]
    Endpoint { endpoint: String, why: String },
    #[error("cannot start the thread that exports to {url}: {source}")]
    Thread {
        url: String,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot start the runtime of the exporter to {url}: {source}")]
    Runtime {
        url: String,
        #[source]
        source: std::io::Error,
    },
    #[error("the thread that exports to {url} stopped at start")]
    StoppedAtStart { url: String },
    /// The exporter's builder refused its settings (kept as text: its error type is the SDK's).
    #[error("cannot set up the exporter to {url}: {why}")]
    Build { url: String, why: String },
    /// The collector refused the request or could not be reached, after the exporter's retries.
    #[error("cannot export to {url}: {why}")]
    Export { url: String, why: String },
    #[error("cannot export to {url}: no answer within {waited:?}")]
    NoAnswer { url: String, waited: Duration },
    #[error(
        "{left} records not sent: the daemon stopped and the collector at {url} had not taken \
         them within {within:?}"
    )]
    NotSentAtExit {
        url: String,
        left: usize,
        within: Duration,
    },
}

/// Why events were not queued.
#[derive(Debug, PartialEq, Eq)]
pub enum Refused {
    /// The queue was at its bound: this many of the newest were dropped, the rest queued.
    Full(usize),
    /// The thread is gone.
    Stopped,
}

pub struct OtlpWriter {
    url: String,
    jobs: Option<async_mpsc::UnboundedSender<Job>>,
    /// Set by [`OtlpWriter::close`]: by when the thread must be done.
    closing: watch::Sender<Option<tokio::time::Instant>>,
    done: mpsc::Receiver<Done>,
    queued: Arc<AtomicUsize>,
    bound: usize,
    timeout: Duration,
    thread: Option<JoinHandle<()>>,
}

impl OtlpWriter {
    /// Starts the thread and builds the exporter there (a gRPC channel needs the runtime it will
    /// run on); an error says why it could not be built. Nothing is sent yet: the first
    /// connection is made with the first request.
    ///
    /// `news` is told after every request's outcome, so the daemon's loop looks at once
    /// ([`OtlpWriter::done`]) rather than with its next events, which may be minutes away.
    pub fn start(config: &OtlpConfig, news: Arc<Notify>) -> Result<Self, OtlpError> {
        let url = config.url().map_err(|why| OtlpError::Endpoint {
            endpoint: config.endpoint.clone(),
            why,
        })?;
        let (jobs, jobs_rx) = async_mpsc::unbounded_channel();
        let (done_tx, done) = mpsc::channel();
        let (ready_tx, ready) = mpsc::channel();
        let queued = Arc::new(AtomicUsize::new(0));
        let (closing, closing_rx) = watch::channel(None);
        let worker = Worker {
            closing: closing_rx,
            url: url.clone(),
            config: config.clone(),
            queued: queued.clone(),
            done: done_tx,
            news,
        };
        let thread = std::thread::Builder::new()
            .name("routeguard-otlp".into())
            .spawn(move || worker.run(jobs_rx, ready_tx))
            .map_err(|source| OtlpError::Thread {
                url: url.clone(),
                source,
            })?;
        match ready.recv() {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                let _ = thread.join();
                return Err(e);
            }
            Err(_) => {
                let _ = thread.join();
                return Err(OtlpError::StoppedAtStart { url });
            }
        }
        Ok(Self {
            url,
            jobs: Some(jobs),
            closing,
            done,
            queued,
            bound: config.queue_size as usize,
            timeout: config.timeout,
            thread: Some(thread),
        })
    }

    /// How long the thread may take at close: `otlp.timeout`, at most [`CLOSE_AT_MOST`].
    fn closing_time(&self) -> Duration {
        self.timeout.min(CLOSE_AT_MOST)
    }

    /// Where the records go.
    pub fn url(&self) -> &str {
        &self.url
    }

    pub fn is_running(&self) -> bool {
        self.thread.as_ref().is_some_and(|t| !t.is_finished())
    }

    /// Queues `events` to be sent; past the queue's bound, the newest are dropped.
    pub fn send(&self, mut events: Vec<Event>) -> Result<(), Refused> {
        // Only this thread adds to `queued`; the worker only takes away: the bound holds.
        let room = self
            .bound
            .saturating_sub(self.queued.load(Ordering::Acquire));
        let dropped = events.len().saturating_sub(room);
        events.truncate(room);
        if !events.is_empty() {
            let n = events.len();
            self.queued.fetch_add(n, Ordering::AcqRel);
            let sent = self
                .jobs
                .as_ref()
                .is_some_and(|j| j.send(Job::Events(events)).is_ok());
            if !sent {
                self.queued.fetch_sub(n, Ordering::AcqRel);
                return Err(Refused::Stopped);
            }
        }
        if dropped > 0 {
            return Err(Refused::Full(dropped));
        }
        Ok(())
    }

    /// Queues alerts (a handful, when a sink fails or recovers: outside the bound).
    pub fn alerts(&self, alerts: Vec<Alert>) {
        if let Some(j) = &self.jobs {
            let _ = j.send(Job::Alerts(alerts));
        }
    }

    /// Queues `suppressed` summaries (at most one per sender a second, `BUDGETS_MAX` senders:
    /// outside the bound, like alerts).
    pub fn suppressed(&self, summaries: Vec<Suppressed>) {
        if let Some(j) = &self.jobs {
            let _ = j.send(Job::Suppressed(summaries));
        }
    }

    /// The requests' outcomes since the last look.
    pub fn done(&self) -> impl Iterator<Item = Done> + '_ {
        self.done.try_iter()
    }

    /// Sends what is queued (for at most `otlp.timeout`) and stops the thread. With `wait`, waits
    /// for it and returns the last outcomes; without (a reload), the thread finishes alone and logs
    /// what it could not send.
    pub fn close(mut self, wait: bool) -> Vec<Done> {
        // One `otlp.timeout` from now for all that is left, the request in flight included (it
        // may have begun a whole timeout ago, and the unit's stop must not wait for two).
        let closing = self.closing_time();
        self.closing
            .send_replace(Some(tokio::time::Instant::now() + closing));
        self.jobs = None;
        match self.thread.take() {
            Some(t) if wait => {
                let _ = t.join();
                self.done.try_iter().collect()
            }
            _ => Vec::new(),
        }
    }
}

/// The thread's side.
struct Worker {
    url: String,
    /// When the daemon closes this exporter, by when it must be done.
    closing: watch::Receiver<Option<tokio::time::Instant>>,
    config: OtlpConfig,
    queued: Arc<AtomicUsize>,
    done: mpsc::Sender<Done>,
    news: Arc<Notify>,
}

/// What the thread holds once the exporter is built.
struct Export {
    exporter: LogExporter,
    /// Why the last HTTP request failed (OTLP/HTTP only).
    last_error: Option<LastError>,
    logger: SdkLogger,
    scope: InstrumentationScope,
    options: Options,
    // Kept for the logger's sake (it creates the records); it has no processor and sends nothing.
    _provider: SdkLoggerProvider,
}

impl Worker {
    fn run(
        self,
        jobs: async_mpsc::UnboundedReceiver<Job>,
        ready: mpsc::Sender<Result<(), OtlpError>>,
    ) {
        let runtime = match tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        {
            Ok(rt) => rt,
            Err(e) => {
                let _ = ready.send(Err(OtlpError::Runtime {
                    url: self.url.clone(),
                    source: e,
                }));
                return;
            }
        };
        runtime.block_on(async move {
            let export = match self.build() {
                Ok(e) => e,
                Err(e) => {
                    let _ = ready.send(Err(e));
                    return;
                }
            };
            let _ = ready.send(Ok(()));
            self.serve(export, jobs).await;
        });
    }

    fn build(&self) -> Result<Export, OtlpError> {
        let c = &self.config;
        // The exporter percent-decodes header values (as it reads OTEL_EXPORTER_OTLP_HEADERS);
        // the config's are literal.
        let headers = c
            .headers
            .iter()
            .map(|(k, v)| (k.clone(), v.replace('%', "%25")));
        let mut last_error = None;
        let built = match c.protocol {
            OtlpProtocol::HttpProtobuf => {
                let client = Client {
                    inner: HyperClient::with_default_connector(c.timeout, None),
                    last_error: LastError::default(),
                };
                last_error = Some(client.last_error.clone());
                LogExporter::builder()
                    .with_http()
                    .with_http_client(client)
                    .with_protocol(opentelemetry_otlp::Protocol::HttpBinary)
                    .with_endpoint(self.url.clone())
                    .with_timeout(c.timeout)
                    .with_headers(headers.collect())
                    .build()
            }
            OtlpProtocol::Grpc => {
                let mut map = http::HeaderMap::new();
                for (k, v) in &c.headers {
                    // Checked at load ([`OtlpConfig`]): both parse.
                    if let (Ok(k), Ok(v)) = (
                        http::HeaderName::from_bytes(k.as_bytes()),
                        http::HeaderValue::from_str(v),
                    ) {
                        map.insert(k, v);
                    }
                }
                LogExporter::builder()
                    .with_tonic()
                    .with_endpoint(self.url.clone())
                    .with_timeout(c.timeout)
                    .with_metadata(MetadataMap::from_headers(map))
                    .build()
            }
        };
        let mut exporter = built.map_err(|e| OtlpError::Build {
            url: self.url.clone(),
            why: e.to_string(),
        })?;
        exporter.set_resource(&resource());
        let provider = SdkLoggerProvider::builder().build();
        let scope = InstrumentationScope::builder("routeguard")
            .with_version(env!("CARGO_PKG_VERSION"))
            .build();
        Ok(Export {
            exporter,
            last_error,
            logger: provider.logger_with_scope(scope.clone()),
            scope,
            options: Options {
                command_args: c.command_args,
            },
            _provider: provider,
        })
    }

    /// Batches what comes in and sends it, until the daemon lets go of its end; then sends what
    /// is left for at most `otlp.timeout`.
    async fn serve(&self, export: Export, mut jobs: async_mpsc::UnboundedReceiver<Job>) {
        let batch = (self.config.batch_size as usize).max(1);
        let mut pending: VecDeque<Item> = VecDeque::new();
        // When the oldest pending record must go.
        let mut due = None;
        loop {
            while pending.len() >= batch {
                self.send(&export, pending.drain(..batch).collect(), None)
                    .await;
            }
            if pending.is_empty() {
                due = None;
            }
            let job = match due {
                None => jobs.recv().await,
                Some(at) => tokio::select! {
                    job = jobs.recv() => job,
                    () = tokio::time::sleep_until(at) => {
                        let n = pending.len().min(batch);
                        self.send(&export, pending.drain(..n).collect(), None).await;
                        due = None;
                        continue;
                    }
                },
            };
            let Some(job) = job else { break };
            match job {
                Job::Events(events) => pending.extend(events.into_iter().map(Item::Event)),
                Job::Alerts(alerts) => pending.extend(alerts.into_iter().map(Item::Alert)),
                Job::Suppressed(s) => pending.extend(s.into_iter().map(Item::Suppressed)),
            }
            if due.is_none() {
                due = Some(tokio::time::Instant::now() + self.config.batch_delay);
            }
        }
        // Closing: what is left, by the deadline [`OtlpWriter::close`] set (or, dropped
        // without, one `otlp.timeout` and at most [`CLOSE_AT_MOST`] from now).
        let closing = self.config.timeout.min(CLOSE_AT_MOST);
        let deadline = (*self.closing.borrow()).unwrap_or(tokio::time::Instant::now() + closing);
        while !pending.is_empty() {
            let n = pending.len().min(batch);
            let items: Vec<Item> = pending.drain(..n).collect();
            if tokio::time::Instant::now() >= deadline {
                let left = items.len() + pending.len();
                let events = count_events(&items) + count_events(pending.make_contiguous());
                self.report(Done {
                    events,
                    result: Err(OtlpError::NotSentAtExit {
                        url: self.url.clone(),
                        left,
                        within: closing,
                    }),
                });
                pending.clear();
                break;
            }
            self.send(&export, items, Some(deadline)).await;
        }
        let _ = export.exporter.shutdown();
    }

    /// One request; its outcome goes to the daemon.
    async fn send(
        &self,
        export: &Export,
        items: Vec<Item>,
        deadline: Option<tokio::time::Instant>,
    ) {
        let now = SystemTime::now();
        let records: Vec<SdkLogRecord> = items
            .iter()
            .map(|item| {
                let r = match item {
                    Item::Event(ev) => otlp::record(ev, export.options),
                    Item::Alert(a) => alert_record(a),
                    Item::Suppressed(s) => suppressed_record(s),
                };
                sdk_record(&export.logger, r, now)
            })
            .collect();
        let batch: Vec<(&SdkLogRecord, &InstrumentationScope)> =
            records.iter().map(|r| (r, &export.scope)).collect();
        let start = tokio::time::Instant::now();
        let mut limit = start + self.config.timeout + GRACE;
        if let Some(d) = deadline {
            limit = limit.min(d);
        }
        let sent = export.exporter.export(LogBatch::new(&batch));
        tokio::pin!(sent);
        let mut closing = self.closing.clone();
        let sent = tokio::select! {
            sent = tokio::time::timeout_at(limit, &mut sent) => sent,
            // The daemon closes this exporter while the request is out: it gets what is left
            // of the closing time, not a whole `otlp.timeout` more.
            Ok(at) = closing.wait_for(Option::is_some) => {
                limit = limit.min((*at).unwrap_or(limit));
                // Not held across the wait: it locks the value.
                drop(at);
                tokio::time::timeout_at(limit, &mut sent).await
            }
        };
        let result = match sent {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => {
                let mut why = describe(&e);
                if let Some(detail) = export.last_error.as_ref().and_then(LastError::take) {
                    why = format!("{why} ({detail})");
                }
                Err(OtlpError::Export {
                    url: self.url.clone(),
                    why,
                })
            }
            Err(_) => Err(OtlpError::NoAnswer {
                url: self.url.clone(),
                waited: limit.duration_since(start),
            }),
        };
        self.report(Done {
            events: count_events(&items),
            result,
        });
    }

    fn report(&self, done: Done) {
        self.queued.fetch_sub(done.events, Ordering::AcqRel);
        match self.done.send(done) {
            Ok(()) => self.news.notify_one(),
            // The daemon let go of this exporter (a reload): the log is all that is left.
            Err(e) => {
                if let Err(why) = e.0.result {
                    tracing::warn!("OTLP exporter stopping: {why} ({} events)", e.0.events);
                }
            }
        }
    }
}

/// Why the last request of a [`Client`] failed.
#[derive(Clone, Debug, Default)]
struct LastError(Arc<Mutex<Option<String>>>);

impl LastError {
    fn set(&self, why: String) {
        *self.0.lock().unwrap_or_else(PoisonError::into_inner) = Some(why);
    }

    fn take(&self) -> Option<String> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner).take()
    }
}

/// hyper's client, remembering why a request failed: the exporter's own error says only
/// "network error" (the rest goes to its debug log), and the alert should say "Connection
/// refused" or "timed out".
#[derive(Debug)]
struct Client {
    inner: HyperClient,
    last_error: LastError,
}

#[async_trait::async_trait]
impl HttpClient for Client {
    async fn send_bytes(&self, request: Request<Bytes>) -> Result<Response<Bytes>, HttpError> {
        let sent = self.inner.send_bytes(request).await;
        if let Err(e) = &sent {
            // The whole chain: `client error (Connect): tcp connect error: Connection refused`.
            let mut why = e.to_string();
            let mut source = e.source();
            while let Some(s) = source {
                why = format!("{why}: {s}");
                source = s.source();
            }
            self.last_error.set(why);
        }
        sent
    }
}

fn count_events(items: &[Item]) -> usize {
    items.iter().filter(|i| matches!(i, Item::Event(_))).count()
}

fn describe(e: &OTelSdkError) -> String {
    match e {
        OTelSdkError::InternalFailure(m) => m.clone(),
        other => other.to_string(),
    }
}

/// The resource of every record: OTEL_RESOURCE_ATTRIBUTES and the SDK's own, then the service and
/// this machine ([`otlp::resource`]), which win.
fn resource() -> Resource {
    Resource::builder()
        .with_attributes(otlp::resource(local_host().as_deref()))
        .build()
}

fn sdk_record(logger: &SdkLogger, r: Record, observed: SystemTime) -> SdkLogRecord {
    let mut rec = logger.create_log_record();
    rec.set_event_name(r.event_name);
    rec.set_timestamp(r.timestamp);
    // Required by the exporter: when routeguard saw the event go out.
    rec.set_observed_timestamp(observed);
    rec.set_severity_number(r.severity);
    rec.set_severity_text(r.severity.name());
    rec.set_body(AnyValue::from(r.body));
    rec.add_attributes(r.attributes);
    rec
}

/// An alert as a record: `routeguard.sink_failed` (ERROR), `routeguard.store_replaced` (WARN),
/// `routeguard.sink_recovered` (INFO); its JSON fields under `routeguard.alert.*`.
pub fn alert_record(a: &Alert) -> Record {
    use opentelemetry::logs::Severity;
    let (event_name, severity) = match a.event {
        AlertType::SinkFailed => ("routeguard.sink_failed", Severity::Error),
        AlertType::StoreReplaced => ("routeguard.store_replaced", Severity::Warn),
        AlertType::SinkRecovered => ("routeguard.sink_recovered", Severity::Info),
    };
    let mut attributes = Attributes::default();
    let mut json = serde_json::to_value(a).unwrap_or_default();
    if let Some(fields) = json.as_object_mut() {
        for gone in ["schema_version", "ts", "event"] {
            fields.remove(gone);
        }
    }
    attributes.json("routeguard.alert", &json);
    Record {
        event_name,
        severity,
        timestamp: otlp::time(a.ts.0),
        body: a.message(),
        attributes: attributes.0,
    }
}

/// A `suppressed` summary as a record: `routeguard.suppressed` (WARN), its JSON fields under
/// `routeguard.suppressed.*`.
pub fn suppressed_record(s: &Suppressed) -> Record {
    let mut attributes = Attributes::default();
    let mut json = serde_json::to_value(s).unwrap_or_default();
    if let Some(fields) = json.as_object_mut() {
        for gone in ["schema_version", "ts", "event", "kind", "host"] {
            fields.remove(gone);
        }
    }
    attributes.json("routeguard.suppressed", &json);
    Record {
        event_name: "routeguard.suppressed",
        severity: opentelemetry::logs::Severity::Warn,
        timestamp: otlp::time(s.ts.0),
        body: s.message(),
        attributes: attributes.0,
    }
}

#[cfg(test)]
mod tests;
