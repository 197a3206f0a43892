//! `llmops online-eval ...`: online evaluations, which score a sampled share of the
//! production generations of a prompt as they are logged, and their statistics.

use std::io::{self, IsTerminal as _, Write};

use anyhow::Context as _;
use clap::{Args, Subcommand, ValueEnum};
use serde_json::json;

use super::eval::metric;
use crate::cli::output::{self, emit, millis, number, percent, table, write_table, Fields};
use crate::cli::paging::collect_pages;
use crate::cli::values::rfc3339;
use crate::cli::{connect, status_error, ClientOptions};
use crate::grpc::convert::{duration_to_pb, timestamp};
use crate::pb;
use crate::pb::evaluation_service_client::EvaluationServiceClient;

type Client = EvaluationServiceClient<crate::cli::Connection>;

/// Score production traffic: create, list, inspect, pause, resume and delete online
/// evaluations, and chart their pass rate per window.
#[derive(Args, Debug, Clone)]
pub struct OnlineEvalArgs {
    /// What to do.
    #[command(subcommand)]
    command: OnlineEvalCommand,
}

/// The `llmops online-eval` subcommands.
#[derive(Subcommand, Debug, Clone)]
enum OnlineEvalCommand {
    /// Create an online evaluation and print it.
    ///
    /// A share (`--sample-rate`) of the generations of `--prompt` (and of `--label` or
    /// `--version`, `--model`, `--experiment`) is scored by every `--metric` as it is
    /// logged. Which generations are sampled depends only on the evaluation's id and the
    /// generation's id, so every replica agrees.
    #[command(disable_version_flag = true)]
    Create(Box<CreateArgs>),
    /// List online evaluations, newest first.
    List {
        /// Show at most this many.
        #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
        limit: Option<u32>,
    },
    /// Show one online evaluation, and how many samples wait for scoring.
    Get {
        /// The online evaluation's id.
        #[arg(value_name = "ID")]
        id: String,
    },
    /// Statistics per window: sampled, scored, failed, pass rate, metric means, latency
    /// and cost, with a chart of the pass rate when printing to a terminal.
    Stats(StatsArgs),
    /// Stop sampling and scoring until resumed.
    Pause {
        /// The online evaluation's id.
        #[arg(value_name = "ID")]
        id: String,
    },
    /// Sample and score again.
    Resume {
        /// The online evaluation's id.
        #[arg(value_name = "ID")]
        id: String,
    },
    /// Delete an online evaluation with its queued samples, scores and statistics.
    Delete {
        /// The online evaluation's id.
        #[arg(value_name = "ID")]
        id: String,
    },
}

/// `online-eval create`.
#[derive(Args, Debug, Clone)]
struct CreateArgs {
    /// The prompt whose generations are scored.
    #[arg(long, value_name = "NAME")]
    prompt: String,
    /// Only generations of the version this label points to (and of the experiment that
    /// serves it).
    #[arg(long, value_name = "L", conflicts_with = "version")]
    label: Option<String>,
    /// Only generations of this exact version.
    #[arg(long, value_name = "V")]
    version: Option<String>,
    /// Only generations of this model.
    #[arg(long, value_name = "M")]
    model: Option<String>,
    /// Only generations of this experiment.
    #[arg(long, value_name = "ID")]
    experiment: Option<String>,
    /// The share of matching generations scored, in (0, 1].
    #[arg(long, value_name = "RATE")]
    sample_rate: f64,
    /// A metric (repeatable, at least one): `NAME=SCORER[:THRESHOLD][@PARAMS]` as in
    /// `llmops eval run`; only scorers that need no expected output (json_valid, regex,
    /// contains with a value, contains_any, contains_all, heuristic, levenshtein and
    /// token_f1 against the input, llm_judge, panel).
    #[arg(long = "metric", value_name = "SPEC", required = true, value_parser = metric::parse)]
    metrics: Vec<pb::MetricConfig>,
    /// Alert when a window's pass rate falls below this.
    #[arg(long, value_name = "RATE")]
    min_pass_rate: Option<f64>,
    /// Alert when a metric's mean in a window falls below a minimum: `NAME=MIN`
    /// (repeatable).
    #[arg(long = "metric-minimum", value_name = "NAME=MIN", value_parser = parse_minimum)]
    metric_minimums: Vec<(String, f64)>,
    /// Alert when a window's 99th percentile latency exceeds this many ms.
    #[arg(long, value_name = "MS")]
    max_latency_p99_ms: Option<f64>,
    /// The window thresholds are checked over (whole minutes) [default: 1h].
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration)]
    window: Option<std::time::Duration>,
    /// Scored samples a window needs before it is checked [default: 50].
    #[arg(long, value_name = "N")]
    min_samples: Option<u64>,
    /// The display name [default: "<prompt> online"].
    #[arg(long, value_name = "N")]
    name: Option<String>,
    /// The id [default: generated].
    #[arg(long = "id", value_name = "ID")]
    id: Option<String>,
}

/// `online-eval stats`.
#[derive(Args, Debug, Clone)]
struct StatsArgs {
    /// The online evaluation's id.
    #[arg(value_name = "ID")]
    id: String,
    /// Group by these (comma-separated or repeated); none for one line per window.
    #[arg(long, value_enum, value_delimiter = ',')]
    by: Vec<Dimension>,
    /// From this RFC 3339 time [default: 24 windows before `--until`].
    #[arg(long)]
    since: Option<chrono::DateTime<chrono::Utc>>,
    /// Until this RFC 3339 time (exclusive) [default: now].
    #[arg(long)]
    until: Option<chrono::DateTime<chrono::Utc>>,
    /// The buckets' width (whole minutes) [default: the evaluation's window].
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration)]
    bucket: Option<std::time::Duration>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Dimension {
    /// The prompt and its version.
    Version,
    /// The model.
    Model,
    /// The experiment and its variant.
    Variant,
}

fn parse_minimum(spec: &str) -> Result<(String, f64), String> {
    let (name, minimum) = spec
        .split_once('=')
        .ok_or_else(|| format!("{spec:?} is not NAME=MIN"))?;
    let minimum: f64 = minimum
        .parse()
        .map_err(|_| format!("{minimum:?} is not a number"))?;
    Ok((name.to_owned(), minimum))
}

impl CreateArgs {
    fn into_request(self) -> pb::CreateOnlineEvaluationRequest {
        let thresholds = pb::OnlineThresholds {
            min_pass_rate: self.min_pass_rate,
            metric_minimums: self.metric_minimums.into_iter().collect(),
            max_latency_p99_ms: self.max_latency_p99_ms,
        };
        pb::CreateOnlineEvaluationRequest {
            online_evaluation: Some(pb::OnlineEvaluation {
                id: self.id.unwrap_or_default(),
                name: self.name.unwrap_or_default(),
                filter: Some(pb::OnlineEvaluationFilter {
                    prompt_name: self.prompt,
                    label: self.label.unwrap_or_default(),
                    prompt_version: self.version.unwrap_or_default(),
                    model: self.model.unwrap_or_default(),
                    experiment_id: self.experiment.unwrap_or_default(),
                }),
                sample_rate: self.sample_rate,
                metrics: self.metrics,
                thresholds: Some(thresholds),
                window: self.window.map(duration_to_pb),
                min_samples: self.min_samples.unwrap_or_default(),
                ..Default::default()
            }),
            online_evaluation_id: String::new(),
        }
    }
}

/// Runs an `llmops online-eval` subcommand.
pub async fn run(args: OnlineEvalArgs, options: &ClientOptions) -> anyhow::Result<()> {
    let as_json = options.json;
    let mut client = EvaluationServiceClient::new(connect(options).await?);
    let (evaluation, queue_depth) = match args.command {
        OnlineEvalCommand::Create(create) => {
            let created = client
                .create_online_evaluation(create.into_request())
                .await
                .map_err(status_error)?
                .into_inner();
            (created.online_evaluation, None)
        }
        OnlineEvalCommand::List { limit } => {
            let all = list(&client, limit).await?;
            return if as_json {
                emit(|out| output::messages(out, &all))
            } else {
                emit(|out| evaluations_table(out, &all))
            };
        }
        OnlineEvalCommand::Get { id } => {
            let got = client
                .get_online_evaluation(pb::GetOnlineEvaluationRequest {
                    online_evaluation_id: id,
                })
                .await
                .map_err(status_error)?
                .into_inner();
            (got.online_evaluation, Some(got.queue_depth))
        }
        OnlineEvalCommand::Stats(stats) => return show_stats(&mut client, stats, as_json).await,
        OnlineEvalCommand::Pause { id } => (set_paused(&mut client, id, true).await?, None),
        OnlineEvalCommand::Resume { id } => (set_paused(&mut client, id, false).await?, None),
        OnlineEvalCommand::Delete { id } => {
            client
                .delete_online_evaluation(pb::DeleteOnlineEvaluationRequest {
                    online_evaluation_id: id.clone(),
                })
                .await
                .map_err(status_error)?;
            return if as_json {
                emit(|out| output::json(out, &json!({"id": id, "deleted": true})))
            } else {
                emit(|out| writeln!(out, "deleted online evaluation {id}"))
            };
        }
    };
    let evaluation = evaluation.context("the server sent no online evaluation")?;
    if as_json {
        emit(|out| output::message(out, &evaluation))
    } else {
        emit(|out| details(out, &evaluation, queue_depth))
    }
}

async fn set_paused(
    client: &mut Client,
    id: String,
    paused: bool,
) -> anyhow::Result<Option<pb::OnlineEvaluation>> {
    Ok(client
        .update_online_evaluation(pb::UpdateOnlineEvaluationRequest {
            online_evaluation_id: id,
            paused: Some(paused),
            ..Default::default()
        })
        .await
        .map_err(status_error)?
        .into_inner()
        .online_evaluation)
}

/// Up to `limit` online evaluations (all without one), newest first.
async fn list(client: &Client, limit: Option<u32>) -> anyhow::Result<Vec<pb::OnlineEvaluation>> {
    collect_pages(limit, |page_size, page_token| {
        let mut client = client.clone();
        async move {
            let page = client
                .list_online_evaluations(pb::ListOnlineEvaluationsRequest {
                    page_size,
                    page_token,
                })
                .await?
                .into_inner();
            Ok((page.online_evaluations, page.next_page_token))
        }
    })
    .await
}

async fn show_stats(client: &mut Client, args: StatsArgs, as_json: bool) -> anyhow::Result<()> {
    let stats = client
        .get_online_evaluation_stats(pb::GetOnlineEvaluationStatsRequest {
            online_evaluation_id: args.id,
            group_by: args
                .by
                .iter()
                .map(|d| match d {
                    Dimension::Version => pb::UsageDimension::PromptVersion,
                    Dimension::Model => pb::UsageDimension::Model,
                    Dimension::Variant => pb::UsageDimension::ExperimentVariant,
                } as i32)
                .collect(),
            since: args.since.map(timestamp),
            until: args.until.map(timestamp),
            bucket: args.bucket.map(duration_to_pb),
        })
        .await
        .map_err(status_error)?
        .into_inner();
    if as_json {
        return emit(|out| output::message(out, &stats));
    }
    let chart = io::stdout().is_terminal();
    emit(|out| stats_table(out, &args.by, &stats.rows, chart))
}

/// The filter in one line: `prompt`, `prompt@version` or `prompt:label`, and the rest.
fn filter_text(filter: Option<&pb::OnlineEvaluationFilter>) -> String {
    let Some(filter) = filter else {
        return String::new();
    };
    let mut text = filter.prompt_name.clone();
    if !filter.prompt_version.is_empty() {
        text.push('@');
        text.push_str(&filter.prompt_version);
    } else if !filter.label.is_empty() {
        text.push(':');
        text.push_str(&filter.label);
    }
    if !filter.model.is_empty() {
        text.push_str(&format!(" model={}", filter.model));
    }
    if !filter.experiment_id.is_empty() {
        text.push_str(&format!(" experiment={}", filter.experiment_id));
    }
    text
}

fn evaluations_table(out: &mut dyn Write, all: &[pb::OnlineEvaluation]) -> io::Result<()> {
    let mut lines = table(&["ID", "NAME", "WATCHES", "RATE", "METRICS", "STATE"]);
    for e in all {
        lines.add_row(vec![
            e.id.clone(),
            e.name.clone(),
            filter_text(e.filter.as_ref()),
            number(e.sample_rate),
            e.metrics
                .iter()
                .map(|m| m.name.as_str())
                .collect::<Vec<_>>()
                .join(","),
            if e.paused { "paused" } else { "active" }.to_owned(),
        ]);
    }
    write_table(out, lines)
}

fn details(
    out: &mut dyn Write,
    e: &pb::OnlineEvaluation,
    queue_depth: Option<u64>,
) -> io::Result<()> {
    let mut fields = Fields::new();
    fields.add("id", e.id.clone(), true);
    fields.add("name", e.name.clone(), true);
    fields.add("watches", filter_text(e.filter.as_ref()), true);
    fields.add("sample rate", number(e.sample_rate), true);
    let metrics = e
        .metrics
        .iter()
        .map(|m| {
            format!(
                "{}={}:{}",
                m.name,
                m.scorer,
                number(m.threshold.unwrap_or(0.7))
            )
        })
        .collect::<Vec<_>>()
        .join(", ");
    fields.add("metrics", metrics, true);
    if let Some(t) = &e.thresholds {
        let mut bounds = Vec::new();
        if let Some(rate) = t.min_pass_rate {
            bounds.push(format!("pass rate >= {}", number(rate)));
        }
        for (name, minimum) in &t.metric_minimums {
            bounds.push(format!("{name} >= {}", number(*minimum)));
        }
        if let Some(p99) = t.max_latency_p99_ms {
            bounds.push(format!("p99 <= {} ms", number(p99)));
        }
        fields.add("alerts when", bounds.join(", "), false);
    }
    fields.add(
        "window",
        e.window
            .as_ref()
            .map(|w| {
                humantime::format_duration(std::time::Duration::from_secs(w.seconds.max(0) as u64))
                    .to_string()
            })
            .unwrap_or_default(),
        true,
    );
    fields.add("min samples", e.min_samples.to_string(), true);
    fields.add(
        "state",
        if e.paused { "paused" } else { "active" }.to_owned(),
        true,
    );
    if let Some(depth) = queue_depth {
        fields.add("queued (all evaluations)", depth.to_string(), true);
    }
    fields.add("created", rfc3339(e.created_at.as_ref()), true);
    fields.write(out)
}

/// Width of the pass-rate bar.
const BAR: usize = 20;

fn stats_table(
    out: &mut dyn Write,
    by: &[Dimension],
    rows: &[pb::OnlineStatsRow],
    chart: bool,
) -> io::Result<()> {
    let mut header = vec!["WINDOW"];
    for dimension in by {
        header.push(match dimension {
            Dimension::Version => "VERSION",
            Dimension::Model => "MODEL",
            Dimension::Variant => "VARIANT",
        });
    }
    header.extend(["SAMPLED", "SCORED", "FAILED", "PASS RATE"]);
    if chart {
        header.push("");
    }
    header.extend(["METRICS", "P99 MS", "COST"]);
    let mut lines = table(&header);
    for row in rows {
        let mut line = vec![rfc3339(row.bucket_start.as_ref())];
        for dimension in by {
            line.push(match dimension {
                Dimension::Version => format!("{}@{}", row.prompt_name, row.prompt_version),
                Dimension::Model => row.model.clone(),
                Dimension::Variant => format!("{}/{}", row.experiment_id, row.variant_id),
            });
        }
        line.extend([
            row.sampled.to_string(),
            row.scored.to_string(),
            row.failed.to_string(),
            if row.scored == 0 {
                "-".to_owned()
            } else {
                percent(row.pass_rate)
            },
        ]);
        if chart {
            line.push(bar(row.pass_rate, row.scored > 0));
        }
        line.extend([
            row.metrics
                .iter()
                .map(|(name, m)| format!("{name}={}", number(m.mean)))
                .collect::<Vec<_>>()
                .join(" "),
            millis(row.latency_p99_ms),
            number(row.cost),
        ]);
        lines.add_row(line);
    }
    write_table(out, lines)
}

/// The pass rate as a bar of [`BAR`] cells.
fn bar(rate: f64, scored: bool) -> String {
    if !scored {
        return String::new();
    }
    let full = (rate.clamp(0.0, 1.0) * BAR as f64).round() as usize;
    format!("{}{}", "█".repeat(full), "·".repeat(BAR - full))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::testing;

    fn parse(args: &[&str]) -> Result<OnlineEvalCommand, clap::Error> {
        testing::parse::<OnlineEvalArgs>("online-eval", args).map(|args| args.command)
    }

    #[test]
    fn the_command_tree_is_consistent() {
        testing::command::<OnlineEvalArgs>("online-eval").debug_assert();
    }

    #[test]
    fn create_takes_the_filter_metrics_and_bounds() {
        let OnlineEvalCommand::Create(create) = parse(&[
            "create",
            "--prompt",
            "support",
            "--label",
            "production",
            "--sample-rate",
            "0.1",
            "--metric",
            r#"helpful=llm_judge:0.8@{"judge":"gpt"}"#,
            "--metric",
            "json=json_valid",
            "--min-pass-rate",
            "0.9",
            "--metric-minimum",
            "helpful=0.75",
            "--window",
            "15m",
        ])
        .unwrap() else {
            panic!("not create");
        };
        let request = create.into_request();
        let evaluation = request.online_evaluation.unwrap();
        let filter = evaluation.filter.unwrap();
        assert_eq!(
            (filter.prompt_name.as_str(), filter.label.as_str()),
            ("support", "production")
        );
        assert_eq!(evaluation.sample_rate, 0.1);
        assert_eq!(evaluation.metrics.len(), 2);
        assert_eq!(evaluation.metrics[0].threshold, Some(0.8));
        let thresholds = evaluation.thresholds.unwrap();
        assert_eq!(thresholds.min_pass_rate, Some(0.9));
        assert_eq!(thresholds.metric_minimums["helpful"], 0.75);
        assert_eq!(evaluation.window.unwrap().seconds, 900);
        assert!(parse(&[
            "create",
            "--prompt",
            "p",
            "--label",
            "l",
            "--version",
            "1.0.0",
            "--sample-rate",
            "1",
            "--metric",
            "j=json_valid"
        ])
        .is_err());
    }

    #[test]
    fn stats_chart_the_pass_rate_only_for_a_terminal() {
        let row = pb::OnlineStatsRow {
            sampled: 10,
            scored: 10,
            pass_rate: 0.5,
            ..Default::default()
        };
        let mut charted = Vec::new();
        stats_table(&mut charted, &[], std::slice::from_ref(&row), true).unwrap();
        let charted = String::from_utf8(charted).unwrap();
        assert!(
            charted.contains(&format!("{}{}", "█".repeat(10), "·".repeat(10))),
            "{charted}"
        );
        let mut plain = Vec::new();
        stats_table(&mut plain, &[], &[row], false).unwrap();
        let plain = String::from_utf8(plain).unwrap();
        assert!(!plain.contains('█') && plain.contains("50"), "{plain}");
    }
}
