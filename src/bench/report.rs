//! The results: one row per scenario, as a table or as JSON.

use comfy_table::presets::UTF8_FULL_CONDENSED;
use comfy_table::{CellAlignment, Table};
use serde::Serialize;

use super::fanout::{FanoutOutcome, ServerMemory};
use super::load::{LoadOutcome, LoadShape};

/// The fanout scenario's delivery latency target (from the issue): p99 below this.
const FANOUT_P99_TARGET_MS: f64 = 250.0;
/// The fanout scenario's memory target: server memory per subscriber below this.
const FANOUT_KIB_PER_SUBSCRIBER_TARGET: f64 = 20.0;

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

/// Prints the rows, then the fanout row if there is one, as one JSON array.
pub(crate) fn print_json(
    rows: &[Row],
    fanout: Option<&FanoutRow>,
    import: Option<&super::import::ImportRow>,
    evaluation: Option<&super::eval::EvalRow>,
) -> anyhow::Result<()> {
    let mut values = rows
        .iter()
        .map(serde_json::to_value)
        .collect::<Result<Vec<_>, _>>()?;
    if let Some(import) = import {
        values.push(serde_json::to_value(import)?);
    }
    if let Some(fanout) = fanout {
        values.push(serde_json::to_value(fanout)?);
    }
    if let Some(evaluation) = evaluation {
        values.push(serde_json::to_value(evaluation)?);
    }
    println!("{}", serde_json::to_string_pretty(&values)?);
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

/// The fanout scenario's results.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct FanoutRow {
    /// Always `fanout`.
    pub(crate) scenario: &'static str,
    /// Subscribers asked for.
    pub(crate) subscribers: usize,
    /// Connections they were spread over.
    pub(crate) subscriber_connections: usize,
    /// Alerts created per second.
    pub(crate) alert_rate: f64,
    /// For how many seconds alerts were to be created.
    pub(crate) seconds: f64,
    /// Subscriptions the server accepted.
    pub(crate) opened: usize,
    /// Seconds opening them took.
    pub(crate) open_seconds: f64,
    /// Alerts created.
    pub(crate) alerts: u64,
    /// Seconds from the first CreateAlert to the last answer.
    pub(crate) publish_seconds: f64,
    /// CreateAlert calls that failed.
    pub(crate) publish_errors: u64,
    /// Events about the created alerts that subscribers received.
    pub(crate) deliveries: u64,
    /// `subscribers` × `alerts`.
    pub(crate) expected_deliveries: u64,
    /// Median delivery latency (receive time - commit time), in milliseconds.
    pub(crate) p50_ms: f64,
    /// 90th percentile delivery latency, in milliseconds.
    pub(crate) p90_ms: f64,
    /// 99th percentile delivery latency, in milliseconds.
    pub(crate) p99_ms: f64,
    /// The slowest delivery, in milliseconds.
    pub(crate) max_ms: f64,
    /// The target for `p99_ms`.
    pub(crate) p99_target_ms: f64,
    /// Heartbeats received (ignored).
    pub(crate) heartbeats: u64,
    /// Subscriptions refused, failed or ended early.
    pub(crate) stream_errors: u64,
    /// Why something failed, if anything did.
    pub(crate) first_error: Option<String>,
    /// Server memory (VmRSS, KiB) over the run; none for a server the tool did not start.
    pub(crate) server_memory: Option<ServerMemory>,
    /// Server memory per open subscriber once each had its first alert, in KiB,
    /// connections included.
    pub(crate) kib_per_subscriber: Option<f64>,
    /// The same when publishing ended (the steady state).
    pub(crate) kib_per_subscriber_at_end: Option<f64>,
    /// The target for `kib_per_subscriber`.
    pub(crate) kib_per_subscriber_target: f64,
}

impl FanoutRow {
    /// Summarises `outcome`.
    pub(crate) fn new(outcome: &FanoutOutcome) -> Self {
        let latency = &outcome.latency_us;
        let ms = |quantile: f64| latency.value_at_quantile(quantile) as f64 / 1000.0;
        Self {
            scenario: "fanout",
            subscribers: outcome.shape.subscribers,
            subscriber_connections: outcome.shape.connections,
            alert_rate: outcome.shape.alert_rate,
            seconds: outcome.shape.duration.as_secs_f64(),
            opened: outcome.opened,
            open_seconds: outcome.open_time.as_secs_f64(),
            alerts: outcome.published,
            publish_seconds: outcome.publish_time.as_secs_f64(),
            publish_errors: outcome.publish_errors,
            deliveries: outcome.deliveries,
            expected_deliveries: outcome.expected_deliveries(),
            p50_ms: ms(0.5),
            p90_ms: ms(0.9),
            p99_ms: ms(0.99),
            max_ms: latency.max() as f64 / 1000.0,
            p99_target_ms: FANOUT_P99_TARGET_MS,
            heartbeats: outcome.heartbeats,
            stream_errors: outcome.stream_errors,
            first_error: outcome.first_error.clone(),
            server_memory: outcome.memory,
            kib_per_subscriber: outcome
                .memory
                .as_ref()
                .map(ServerMemory::kib_per_subscriber),
            kib_per_subscriber_at_end: outcome
                .memory
                .as_ref()
                .map(ServerMemory::kib_per_subscriber_at_end),
            kib_per_subscriber_target: FANOUT_KIB_PER_SUBSCRIBER_TARGET,
        }
    }
}

/// Prints the fanout row as a table, with what was run above it and how memory was
/// measured below it.
pub(crate) fn print_fanout(row: &FanoutRow, url: &str) {
    println!(
        "{url}: fanout, {} subscribers over {} connections, {} alerts/s for {} s",
        row.subscribers, row.subscriber_connections, row.alert_rate, row.seconds,
    );
    println!("{}", fanout_table(row));
    println!("{}", memory_note(row));
}

fn fanout_table(row: &FanoutRow) -> Table {
    let mut table = Table::new();
    table
        .load_preset(UTF8_FULL_CONDENSED)
        .set_header(["fanout", "value", "target"]);
    let ms = |value: f64| format!("{value:.3} ms");
    table.add_row([
        "subscriptions open".to_owned(),
        format!("{} in {:.1} s", row.opened, row.open_seconds),
        format!("{}", row.subscribers),
    ]);
    table.add_row([
        "alerts created".to_owned(),
        format!("{} in {:.1} s", row.alerts, row.publish_seconds),
        format!("{} errors", row.publish_errors),
    ]);
    table.add_row([
        "deliveries".to_owned(),
        format!("{} of {}", row.deliveries, row.expected_deliveries),
        verdict("all", row.deliveries >= row.expected_deliveries),
    ]);
    table.add_row(["delivery p50".to_owned(), ms(row.p50_ms), String::new()]);
    table.add_row(["delivery p90".to_owned(), ms(row.p90_ms), String::new()]);
    let p99_target = format!("< {} ms", row.p99_target_ms);
    table.add_row([
        "delivery p99".to_owned(),
        ms(row.p99_ms),
        verdict(&p99_target, row.p99_ms < row.p99_target_ms),
    ]);
    table.add_row(["delivery max".to_owned(), ms(row.max_ms), String::new()]);
    for (when, kib) in [
        ("first alert", row.kib_per_subscriber),
        ("end", row.kib_per_subscriber_at_end),
    ] {
        table.add_row(memory_cells(row, when, kib));
    }
    table.add_row([
        "heartbeats (ignored)".to_owned(),
        row.heartbeats.to_string(),
        String::new(),
    ]);
    table.add_row([
        "stream errors".to_owned(),
        row.stream_errors.to_string(),
        "0".to_owned(),
    ]);
    if let Some(column) = table.column_mut(1) {
        column.set_cell_alignment(CellAlignment::Right);
    }
    table
}

/// A server-memory-per-subscriber row; `n/a` without a reading.
fn memory_cells(row: &FanoutRow, when: &str, kib: Option<f64>) -> [String; 3] {
    let target = format!("< {} KiB", row.kib_per_subscriber_target);
    let judged = kib.map_or(target.clone(), |kib| {
        verdict(&target, kib < row.kib_per_subscriber_target)
    });
    [
        format!("server memory / subscriber, {when}"),
        kib.map_or_else(|| "n/a".to_owned(), |kib| format!("{kib:.1} KiB")),
        judged,
    ]
}

/// `target`, marked met or missed.
fn verdict(target: &str, met: bool) -> String {
    format!("{target}: {}", if met { "met" } else { "MISSED" })
}

/// How the memory figure was measured, or why there is none.
fn memory_note(row: &FanoutRow) -> String {
    let Some(memory) = &row.server_memory else {
        return "server memory: n/a (the server was not started by this tool, so its \
                process cannot be read)"
            .to_owned();
    };
    let mib = |kib: u64| kib as f64 / 1024.0;
    let when = if memory.with_alert >= memory.subscribers {
        "once every subscriber had received its first alert".to_owned()
    } else {
        format!(
            "when publishing ended, with only {} of {} subscribers having had an alert",
            memory.with_alert, memory.subscribers
        )
    };
    format!(
        "server memory (VmRSS): {:.1} MiB before connecting, {:.1} MiB with {} connections, \
         {:.1} MiB {when} (\"first alert\"), {:.1} MiB when publishing ended (\"end\"); \
         per subscriber = (reading - before) / {} subscribers, connections included",
        mib(memory.before_kib),
        mib(memory.connected_kib),
        row.subscriber_connections,
        mib(memory.subscribed_kib),
        mib(memory.end_kib),
        memory.subscribers,
    )
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

    fn fanout_outcome(memory: Option<ServerMemory>) -> FanoutOutcome {
        let mut latency_us = Histogram::new(3).unwrap();
        for value in [1_000, 2_000, 300_000] {
            latency_us.record(value).unwrap();
        }
        FanoutOutcome {
            shape: crate::bench::fanout::FanoutShape {
                subscribers: 2,
                connections: 1,
                alert_rate: 5.0,
                duration: Duration::from_secs(1),
            },
            opened: 2,
            open_time: Duration::from_millis(100),
            published: 2,
            publish_errors: 0,
            publish_time: Duration::from_secs(1),
            latency_us,
            deliveries: 3,
            heartbeats: 0,
            stream_errors: 0,
            first_error: None,
            memory,
        }
    }

    #[test]
    fn fanout_rows_judge_the_targets() {
        let memory = ServerMemory {
            before_kib: 1_000,
            connected_kib: 1_010,
            subscribed_kib: 1_050,
            end_kib: 1_060,
            with_alert: 2,
            subscribers: 2,
        };
        let row = FanoutRow::new(&fanout_outcome(Some(memory)));
        assert_eq!(row.expected_deliveries, 4);
        assert_eq!(row.kib_per_subscriber, Some(25.0));
        assert!((row.p99_ms - 300.0).abs() < 1.0, "{row:?}");
        let text = fanout_table(&row).to_string();
        assert!(
            text.contains("3 of 4") && text.contains("all: MISSED"),
            "{text}"
        );
        assert!(text.contains("< 250 ms: MISSED"), "{text}");
        assert!(
            text.contains("25.0 KiB") && text.contains("< 20 KiB: MISSED"),
            "{text}"
        );
        assert!(text.contains("end") && text.contains("30.0 KiB"), "{text}");
        assert!(memory_note(&row).contains("once every subscriber"));

        let remote = FanoutRow::new(&fanout_outcome(None));
        assert!(fanout_table(&remote).to_string().contains("n/a"));
        assert!(memory_note(&remote).contains("n/a"));
        let json = serde_json::to_value(&remote).unwrap();
        assert_eq!(json["scenario"], "fanout");
        assert!(json["kib_per_subscriber"].is_null());
    }
}
