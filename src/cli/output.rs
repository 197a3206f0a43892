//! Writing answers: borderless tables, JSON, and stdout handling shared by the client
//! commands.

use std::io::{self, Write};

use comfy_table::{presets, Table};
use serde_json::Value as JsonValue;

/// Writes to stdout (locked for the one answer) and flushes.
pub(crate) fn emit(write: impl FnOnce(&mut dyn Write) -> io::Result<()>) -> anyhow::Result<()> {
    let stdout = io::stdout();
    let mut out = stdout.lock();
    write(&mut out)?;
    out.flush()?;
    Ok(())
}

/// Writes `value` as pretty JSON and a newline.
pub(crate) fn json(out: &mut dyn Write, value: &JsonValue) -> io::Result<()> {
    serde_json::to_writer_pretty(&mut *out, value)?;
    writeln!(out)
}

/// Writes `value` as JSON on one line (for streams: one object per line).
pub(crate) fn json_line(out: &mut dyn Write, value: &JsonValue) -> io::Result<()> {
    serde_json::to_writer(&mut *out, value)?;
    writeln!(out)
}

/// `yes` or `no`.
pub(crate) fn yes_no(value: bool) -> &'static str {
    if value {
        "yes"
    } else {
        "no"
    }
}

/// A table with no borders and two spaces between columns.
pub(crate) fn table(header: &[&str]) -> Table {
    let mut table = Table::new();
    table.load_preset(presets::NOTHING);
    if !header.is_empty() {
        table.set_header(header.to_vec());
    }
    table
}

pub(crate) fn write_table(out: &mut dyn Write, mut table: Table) -> io::Result<()> {
    for column in table.column_iter_mut() {
        column.set_padding((0, 2));
    }
    for line in table.lines() {
        writeln!(out, "{}", line.trim_end())?;
    }
    Ok(())
}
