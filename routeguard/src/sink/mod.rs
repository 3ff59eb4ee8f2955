//! Sinks: where events go. Each turns an [`Event`](crate::event::Event) into its own format and
//! never reaches back upstream.
//!
//! - [`terminal`]: one readable line per event, every untrusted string escaped.
//! - [`json`]: one JSON object per line, the versioned schema of `docs/events.md`.

pub mod escape;
pub mod json;
pub mod terminal;
