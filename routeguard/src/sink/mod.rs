//! Sinks: where events go. Each turns an [`Event`](crate::event::Event) into its own format and
//! never reaches back upstream.
//!
//! - [`terminal`]: one readable line per event, every untrusted string escaped.
//! - [`json`]: one JSON object per line, the versioned schema of `docs/events.md`.
//! - [`otlp`]: an OpenTelemetry log record (event name, severity, attributes after the semantic
//!   conventions), which the daemon's OTLP exporter sends (`docs/opentelemetry.md`).

pub mod escape;
pub mod json;
pub mod otlp;
pub mod terminal;
