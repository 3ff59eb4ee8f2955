//! `--format json`: the [`Report`] model as one JSON document (schema: `docs/report.md`).

use std::io::{self, Write};

use crate::report::Report;

pub fn write(report: &Report, out: &mut dyn Write) -> io::Result<()> {
    serde_json::to_writer_pretty(&mut *out, report)?;
    out.write_all(b"\n")
}
