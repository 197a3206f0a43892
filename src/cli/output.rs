//! Writing answers, shared by every client command: borderless tables, the number and
//! duration formats they use, JSON, and stdout handling.

use std::io::{self, Write};
use std::time::Duration;

use comfy_table::{presets, Table};
use serde_json::Value as JsonValue;

use crate::cli::proto_json;

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

/// Writes `message` in the proto3 JSON mapping (see `proto_json`), pretty, and a newline.
pub(crate) fn message<M: prost::Message + prost::Name>(
    out: &mut dyn Write,
    message: &M,
) -> io::Result<()> {
    json(out, &proto_json::message(message))
}

/// Writes `messages` in the proto3 JSON mapping, as one array.
pub(crate) fn messages<M: prost::Message + prost::Name>(
    out: &mut dyn Write,
    messages: &[M],
) -> io::Result<()> {
    json(out, &proto_json::messages(messages))
}

/// Writes `message` in the proto3 JSON mapping on one line (for streams).
pub(crate) fn message_line<M: prost::Message + prost::Name>(
    out: &mut dyn Write,
    message: &M,
) -> io::Result<()> {
    json_line(out, &proto_json::message(message))
}

/// `yes` or `no`.
pub(crate) fn yes_no(value: bool) -> &'static str {
    if value {
        "yes"
    } else {
        "no"
    }
}

/// One thing's details, a `key: value` line each (keys aligned).
pub(crate) struct Fields(Table);

impl Fields {
    pub(crate) fn new() -> Self {
        Self(table(&[]))
    }

    /// Adds `key: value`; an empty value only when `always`.
    pub(crate) fn add(&mut self, key: &str, value: String, always: bool) {
        if always || !value.is_empty() {
            self.0.add_row(vec![format!("{key}:"), value]);
        }
    }

    pub(crate) fn write(self, out: &mut dyn Write) -> io::Result<()> {
        write_table(out, self.0)
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

/// A number with at most four decimals and no trailing zeros: `0.8`, `0.1235`, `3`.
pub(crate) fn number(x: f64) -> String {
    if !x.is_finite() {
        return x.to_string();
    }
    let text = format!("{x:.4}");
    let text = text.trim_end_matches('0').trim_end_matches('.');
    if text == "-0" {
        "0".to_owned()
    } else {
        text.to_owned()
    }
}

/// A signed number with at most four decimals: `+0.05`, `-0.1235`, `0`.
pub(crate) fn signed(x: f64) -> String {
    let text = number(x);
    if text == "0" || text.starts_with('-') || !x.is_finite() {
        text
    } else {
        format!("+{text}")
    }
}

/// A share (0..1) in percent with one decimal: `87.5%`, `100.0%`.
pub(crate) fn percent(x: f64) -> String {
    format!("{:.1}%", x * 100.0)
}

/// A signed share (0..1) in percent with one decimal: `+6.3%`, `-12.0%`.
pub(crate) fn signed_percent(x: f64) -> String {
    format!("{:+.1}%", x * 100.0)
}

/// A change of a share (0..1) in percentage points: `+5.0 points`, `-0.5 points`.
pub(crate) fn points(x: f64) -> String {
    format!("{:+.1} points", x * 100.0)
}

/// `passed` of `done` in percent; `-` before anything is done.
pub(crate) fn ratio(passed: u64, done: u64) -> String {
    if done == 0 {
        "-".to_owned()
    } else {
        percent(passed as f64 / done as f64)
    }
}

/// Milliseconds, no trailing zeros: one decimal from 10 ms (`120`, `300.3`), three
/// below (`3.46`, `0.004`).
pub(crate) fn millis(x: f64) -> String {
    if !x.is_finite() {
        return x.to_string();
    }
    let text = if x.abs() >= 10.0 {
        format!("{x:.1}")
    } else {
        format!("{x:.3}")
    };
    let text = text.trim_end_matches('0').trim_end_matches('.');
    if text == "-0" {
        "0".to_owned()
    } else {
        text.to_owned()
    }
}

/// A protobuf duration in milliseconds.
pub(crate) fn duration_ms(duration: &prost_types::Duration) -> f64 {
    duration.seconds as f64 * 1000.0 + f64::from(duration.nanos) / 1e6
}

/// A p-value with four decimals; `<0.0001` below that.
pub(crate) fn p_value(p: f64) -> String {
    if p < 0.0001 {
        "<0.0001".to_owned()
    } else {
        format!("{p:.4}")
    }
}

/// A cost with up to six decimals and no trailing zeros.
pub(crate) fn cost(x: f64) -> String {
    let text = format!("{x:.6}");
    let text = text.trim_end_matches('0').trim_end_matches('.');
    if text == "-0" {
        "0".to_owned()
    } else {
        text.to_owned()
    }
}

/// A short duration for an ETA or a timeout: `45s`, `2m05s`, `2m`, `1h02m`, `500ms`.
pub(crate) fn short_duration(duration: Duration) -> String {
    let secs = duration.as_secs();
    if secs == 0 {
        let millis = duration.as_millis();
        return if millis == 0 {
            "0s".to_owned()
        } else {
            format!("{millis}ms")
        };
    }
    match secs {
        0..=59 => format!("{secs}s"),
        60..=3599 if secs % 60 == 0 => format!("{}m", secs / 60),
        60..=3599 => format!("{}m{:02}s", secs / 60, secs % 60),
        _ if secs % 3600 < 60 => format!("{}h", secs / 3600),
        _ => format!("{}h{:02}m", secs / 3600, secs % 3600 / 60),
    }
}

/// `text` on one line (runs of whitespace, newlines included, become one space), cut to
/// `width` characters with `…` when longer.
pub(crate) fn clip(text: &str, width: usize) -> String {
    let line = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if line.chars().count() <= width {
        return line;
    }
    let mut cut: String = line.chars().take(width.saturating_sub(1)).collect();
    cut.push('…');
    cut
}
