//! The results: one row per scenario, as a table or as JSON.

use comfy_table::presets::UTF8_FULL_CONDENSED;
use comfy_table::{CellAlignment, Table};
use serde::Serialize;

use super::load::{LoadOutcome, LoadShape};

/// One scenario's results.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Row {
    /// The scenario's name.
    pub(crate) scenario: &'static str,
    /// Requests sent after the warm-up and answered, successfully or not.
    pub(crate) requests: u64,
    /// The seconds they were measured over.
    pub(crate) seconds: f64,
    /// `requests / seconds`.
    pub(crate) rps: f64,
    /// Median latency of the successful requests, in milliseconds.
    pub(crate) p50_ms: f64,
    /// 90th percentile latency, in milliseconds.
    pub(crate) p90_ms: f64,
    /// 99th percentile latency, in milliseconds.
    pub(crate) p99_ms: f64,
    /// 99.9th percentile latency, in milliseconds.
    pub(crate) p999_ms: f64,
    /// The slowest successful request, in milliseconds.
    pub(crate) max_ms: f64,
    /// Failed requests.
    pub(crate) errors: u64,
    /// `rps` divided by the health scenario's `rps` in the same run (none when health
    /// was not run).
    pub(crate) vs_health: Option<f64>,
}

impl Row {
    /// Summarises `outcome`; `health_rps` is the floor measured earlier in the run.
    pub(crate) fn new(
        scenario: &'static str,
        outcome: &LoadOutcome,
        health_rps: Option<f64>,
    ) -> Self {
        let requests = outcome.requests();
        let seconds = outcome.window.as_secs_f64();
        let rps = requests as f64 / seconds;
        let latency = &outcome.latency_us;
        let ms = |quantile: f64| latency.value_at_quantile(quantile) as f64 / 1000.0;
        Self {
            scenario,
            requests,
            seconds,
            rps,
            p50_ms: ms(0.5),
            p90_ms: ms(0.9),
            p99_ms: ms(0.99),
            p999_ms: ms(0.999),
            max_ms: latency.max() as f64 / 1000.0,
            errors: outcome.errors,
            vs_health: match (scenario, health_rps) {
                ("health", _) => Some(1.0),
                (_, Some(floor)) if floor > 0.0 => Some(rps / floor),
                _ => None,
            },
        }
    }
}

/// Prints the rows as a table, with what was run above it.
pub(crate) fn print_table(rows: &[Row], shape: LoadShape, url: &str) {
    println!(
        "{url}: {} connections x {} streams, {} per scenario after {} warm-up",
        shape.connections,
        shape.streams,
        humantime::format_duration(shape.duration),
        humantime::format_duration(shape.warmup),
    );
    println!("{}", table(rows));
}

/// Prints the rows as a JSON array.
pub(crate) fn print_json(rows: &[Row]) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(rows)?);
    Ok(())
}

fn table(rows: &[Row]) -> Table {
    let mut table = Table::new();
    table.load_preset(UTF8_FULL_CONDENSED).set_header([
        "scenario",
        "requests",
        "RPS",
        "p50 ms",
        "p99 ms",
        "errors",
        "vs health",
    ]);
    for row in rows {
        table.add_row([
            row.scenario.to_owned(),
            row.requests.to_string(),
            format!("{:.0}", row.rps),
            format!("{:.3}", row.p50_ms),
            format!("{:.3}", row.p99_ms),
            row.errors.to_string(),
            row.vs_health
                .map_or_else(|| "-".to_owned(), |ratio| format!("{ratio:.2}")),
        ]);
    }
    for index in 1..7 {
        if let Some(column) = table.column_mut(index) {
            column.set_cell_alignment(CellAlignment::Right);
        }
    }
    table
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use hdrhistogram::Histogram;

    use super::*;

    fn outcome(latencies_us: &[u64], errors: u64, seconds: u64) -> LoadOutcome {
        let mut latency_us = Histogram::new(3).unwrap();
        for &value in latencies_us {
            latency_us.record(value).unwrap();
        }
        LoadOutcome {
            latency_us,
            errors,
            window: Duration::from_secs(seconds),
            first_error: None,
        }
    }

    #[test]
    fn rows_compare_with_the_health_floor() {
        let health = Row::new("health", &outcome(&[100; 400], 0, 2), None);
        assert_eq!(health.rps, 200.0);
        assert_eq!(health.vs_health, Some(1.0));
        let render = Row::new("render", &outcome(&[2000; 99], 1, 1), Some(health.rps));
        assert_eq!(render.requests, 100);
        assert_eq!(render.vs_health, Some(0.5));
        assert!((render.p50_ms - 2.0).abs() < 0.01);
        assert_eq!(
            Row::new("render", &outcome(&[1], 0, 1), None).vs_health,
            None
        );

        let text = table(&[health.clone(), render]).to_string();
        assert!(
            text.contains("vs health") && text.contains("0.50"),
            "{text}"
        );
        let json: serde_json::Value = serde_json::to_value([health]).unwrap();
        assert_eq!(json[0]["scenario"], "health");
        assert_eq!(json[0]["rps"], 200.0);
    }
}
