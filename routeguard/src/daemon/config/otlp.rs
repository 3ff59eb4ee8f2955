//! `[otlp]`: events as OpenTelemetry log records, sent over OTLP to a collector
//! (docs/opentelemetry.md).
//!
//! What the config can know is checked at load, so the exporter never meets a value it would
//! silently drop or mangle: the endpoint is a plain `http://` URL the protocol can use (TLS is not
//! built in), and every header name and value is one HTTP and gRPC accept (the exporter skips a
//! header it cannot send without a word). Sizes and durations are in [`super::limits`].

use std::{collections::BTreeMap, fmt, str::FromStr, time::Duration};

use serde::{de, Deserialize, Deserializer};

use super::limits::Violation;

/// Where a collector listens by default (OTLP's well-known ports, on this machine).
pub const DEFAULT_HTTP_ENDPOINT: &str = "http://localhost:4318";
pub const DEFAULT_GRPC_ENDPOINT: &str = "http://localhost:4317";
/// The OTLP/HTTP path of logs, added to an endpoint that names none.
pub const HTTP_LOGS_PATH: &str = "/v1/logs";

#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OtlpConfig {
    pub enabled: bool,
    /// The collector: `http://HOST:PORT`, optionally with a path (OTLP/HTTP only). `""`: the
    /// protocol's default on localhost. See [`OtlpConfig::url`].
    pub endpoint: String,
    pub protocol: Protocol,
    /// Sent with every request (HTTP headers, gRPC metadata), e.g. a tenant or a token.
    pub headers: BTreeMap<String, String>,
    /// How long one export may take, the exporter's own retries included.
    #[serde(deserialize_with = "duration")]
    pub timeout: Duration,
    /// Records per request, at most.
    pub batch_size: u32,
    /// How long the first record of a batch waits for others before the batch is sent.
    #[serde(deserialize_with = "duration")]
    pub batch_delay: Duration,
    /// Events handed to the exporter and not yet sent, at most; beyond, they are dropped and
    /// counted (`routeguard_otlp_dropped_total{reason="queue-full"}`).
    pub queue_size: u32,
    /// Send the actor's argv as `process.command_args`. Off by default: an argument can be a
    /// secret (a token on a command line), and a log store is read by more people than the node.
    pub command_args: bool,
}

impl Default for OtlpConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            endpoint: String::new(),
            protocol: Protocol::HttpProtobuf,
            headers: BTreeMap::new(),
            timeout: Duration::from_secs(10),
            batch_size: 512,
            batch_delay: Duration::from_secs(1),
            queue_size: 20_000,
            command_args: false,
        }
    }
}

/// OTLP's transports, named as `OTEL_EXPORTER_OTLP_PROTOCOL` names them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub enum Protocol {
    /// Protobuf over HTTP/1.1 `POST` to `/v1/logs`.
    HttpProtobuf,
    /// `opentelemetry.proto.collector.logs.v1.LogsService/Export` over HTTP/2.
    Grpc,
}

/// A `protocol` that is not one of OTLP's two built in; the message names the key, as
/// [`super::limits`]'s do (serde's own would say only "unknown variant").
#[derive(Debug, thiserror::Error)]
#[error(
    "`otlp.protocol` = {0:?} is not a protocol routeguard speaks; accepted: \"http/protobuf\" \
     or \"grpc\" (OTLP/HTTP JSON is not built in)"
)]
pub struct UnknownProtocol(String);

impl TryFrom<String> for Protocol {
    type Error = UnknownProtocol;

    fn try_from(name: String) -> Result<Self, UnknownProtocol> {
        match name.as_str() {
            "http/protobuf" => Ok(Protocol::HttpProtobuf),
            "grpc" => Ok(Protocol::Grpc),
            _ => Err(UnknownProtocol(name)),
        }
    }
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Protocol::HttpProtobuf => "http/protobuf",
            Protocol::Grpc => "grpc",
        })
    }
}

impl OtlpConfig {
    /// The URL requests go to: for `http/protobuf`, the endpoint with `/v1/logs` added when it
    /// names no path (as `OTEL_EXPORTER_OTLP_ENDPOINT` is read), else as it is (a gateway's own
    /// path); for `grpc`, the endpoint (the path is the service's).
    pub fn url(&self) -> Result<String, String> {
        let endpoint = match (self.endpoint.as_str(), self.protocol) {
            ("", Protocol::HttpProtobuf) => DEFAULT_HTTP_ENDPOINT,
            ("", Protocol::Grpc) => DEFAULT_GRPC_ENDPOINT,
            (e, _) => e,
        };
        let uri = http::Uri::from_str(endpoint)
            .map_err(|e| format!("not a URL ({e}); e.g. \"http://127.0.0.1:4318\""))?;
        match uri.scheme_str() {
            Some("http") => {}
            Some("https") => {
                return Err(
                    "TLS is not built into routeguard; send to a collector on the node \
                            or the pod network over http://, which forwards with TLS"
                        .into(),
                )
            }
            _ => return Err("an http:// URL, e.g. \"http://127.0.0.1:4318\"".into()),
        }
        if uri.host().is_none_or(str::is_empty) {
            return Err("a URL with a host, e.g. \"http://127.0.0.1:4318\"".into());
        }
        if uri.query().is_some() {
            return Err("a URL without a query".into());
        }
        let bare = endpoint.trim_end_matches('/');
        match self.protocol {
            Protocol::HttpProtobuf if matches!(uri.path(), "" | "/") => {
                Ok(format!("{bare}{HTTP_LOGS_PATH}"))
            }
            Protocol::HttpProtobuf => Ok(endpoint.to_owned()),
            Protocol::Grpc if matches!(uri.path(), "" | "/") => Ok(bare.to_owned()),
            Protocol::Grpc => Err(format!(
                "a gRPC endpoint without a path (`{}`): the path of an export is the \
                 service's",
                uri.path()
            )),
        }
    }

    /// What [`super::limits::check`] checks beyond the ranges: the endpoint, the headers and
    /// the queue's bound against the batch's size.
    pub(super) fn check(&self) -> Result<(), Violation> {
        if let Err(accepted) = self.url() {
            return Err(Violation {
                key: "otlp.endpoint",
                value: format!("{:?}", self.endpoint),
                accepted,
            });
        }
        for (name, value) in &self.headers {
            let bad_name = http::HeaderName::from_bytes(name.as_bytes()).is_err();
            let bad_value = http::HeaderValue::from_str(value).is_err();
            if bad_name || bad_value {
                return Err(Violation {
                    key: "otlp.headers",
                    value: format!("{name:?} = {:?}", if bad_name { name } else { value }),
                    accepted: "header names of letters, digits and `-` (no spaces or `:`), \
                               and values of printable ASCII"
                        .into(),
                });
            }
        }
        if self.queue_size < self.batch_size {
            return Err(Violation {
                key: "otlp.queue_size",
                value: self.queue_size.to_string(),
                accepted: format!(
                    "otlp.batch_size ({}) to 1000000: the queue must hold a whole batch",
                    self.batch_size
                ),
            });
        }
        Ok(())
    }
}

fn duration<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    let s = String::deserialize(d)?;
    super::parse_duration(&s).map_err(de::Error::custom)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url(protocol: Protocol, endpoint: &str) -> Result<String, String> {
        OtlpConfig {
            protocol,
            endpoint: endpoint.into(),
            ..OtlpConfig::default()
        }
        .url()
    }

    #[test]
    fn endpoints_become_the_urls_requests_go_to() {
        use Protocol::*;
        assert_eq!(
            url(HttpProtobuf, "").unwrap(),
            "http://localhost:4318/v1/logs"
        );
        assert_eq!(url(Grpc, "").unwrap(), "http://localhost:4317");
        assert_eq!(
            url(HttpProtobuf, "http://10.0.0.5:4318/").unwrap(),
            "http://10.0.0.5:4318/v1/logs"
        );
        assert_eq!(
            url(HttpProtobuf, "http://gw:8080/tenant-a/v1/logs").unwrap(),
            "http://gw:8080/tenant-a/v1/logs"
        );
        assert_eq!(
            url(Grpc, "http://[::1]:4317/").unwrap(),
            "http://[::1]:4317"
        );
        for (protocol, bad, needle) in [
            (HttpProtobuf, "https://collector:4318", "TLS is not built"),
            (Grpc, "https://collector:4317", "TLS is not built"),
            (HttpProtobuf, "collector:4318", "an http:// URL"),
            (HttpProtobuf, "http://", "not a URL"),
            (HttpProtobuf, "http://c:4318/v1/logs?x=1", "without a query"),
            (Grpc, "http://c:4317/v1/logs", "without a path"),
            (HttpProtobuf, "http://a b", "not a URL"),
        ] {
            let err = url(protocol, bad).unwrap_err();
            assert!(err.contains(needle), "{bad}: {err}");
        }
    }
}
