//! `llmops eval ...`: the client commands of the evaluation service's runs.
//!
//! The pieces: the arguments here, the calls in `commands`, the `--metric` syntax in
//! `metric`, following a run live in `progress`, printing in `format` (tables and
//! summaries) and `json` (JSON).

mod commands;
pub(crate) mod format;
pub(crate) mod metric;
mod progress;

use std::collections::HashSet;
use std::time::Duration;

use anyhow::{bail, Context as _};
use clap::{Args, Subcommand, ValueEnum};

use super::ClientOptions;
use crate::pb;

/// Run prompts over datasets and score the outputs: start evaluation runs (and follow
/// them live), inspect their results sample by sample, list them, and compare two runs
/// for regressions.
#[derive(Args, Debug, Clone)]
pub struct EvalArgs {
    /// What to do.
    #[command(subcommand)]
    command: EvalCommand,
}

/// The `llmops eval` subcommands.
#[derive(Subcommand, Debug, Clone)]
enum EvalCommand {
    /// Create a run and start it; prints the run's id.
    ///
    /// The run renders the prompt for every sample of the dataset's current version,
    /// calls the model and scores each output with every `--metric`. A sample passes
    /// when each of its scores reaches its metric's threshold.
    ///
    /// With `--watch`, follows the run to its end (a progress bar on a terminal, one
    /// line per update otherwise; with `--json`, the run as one JSON object per line),
    /// then prints its results. The exit status is non-zero if the run failed.
    #[command(disable_version_flag = true)]
    Run {
        #[command(flatten)]
        template: RunTemplateArgs,
        /// Follow the run until it ends, then print its results.
        #[arg(long)]
        watch: bool,
    },
    /// Show one run: its status, versions, progress and results.
    ///
    /// The prompt and dataset versions are those resolved when the run started. Once the
    /// run has ended: sample counts and pass rate, each metric's mean, standard
    /// deviation, minimum and maximum, latency percentiles, tokens, cost and the failure
    /// reasons by count.
    Get {
        /// The run's id.
        #[arg(value_name = "RUN")]
        run_id: String,
    },
    /// List runs, newest first.
    List {
        /// Only runs over this dataset.
        #[arg(long = "dataset", value_name = "ID")]
        dataset_id: Option<String>,
        /// Only runs of this prompt.
        #[arg(long = "prompt", value_name = "NAME")]
        prompt_name: Option<String>,
        /// Only runs with this model.
        #[arg(long, value_name = "NAME")]
        model: Option<String>,
        /// Only runs in this state.
        #[arg(long, value_enum)]
        status: Option<StatusArg>,
        /// Show at most this many runs.
        #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
        limit: Option<u32>,
    },
    /// List a run's per-sample results, in dataset order.
    ///
    /// Each sample with its outcome (pass, fail or error), scores, latency, the error or
    /// failure reason, and the output cut to one short line.
    Results {
        /// The run's id.
        #[arg(value_name = "RUN")]
        run_id: String,
        /// Only samples that failed or errored.
        #[arg(long)]
        failed: bool,
        /// Show at most this many results.
        #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
        limit: Option<u32>,
    },
    /// Compare two ended runs: pass rate and metric changes, regressions, improvements.
    ///
    /// Over the same dataset, also the samples that changed outcome (newly failing and
    /// newly passing) and McNemar's exact test on them.
    Compare {
        /// The earlier run.
        #[arg(value_name = "BASELINE")]
        baseline_run_id: String,
        /// The run compared with it.
        #[arg(value_name = "CANDIDATE")]
        candidate_run_id: String,
    },
    /// Cancel a pending or running run; samples already scored are kept.
    ///
    /// Prints the resulting status and the results of the samples scored before.
    Cancel {
        /// The run's id.
        #[arg(value_name = "RUN")]
        run_id: String,
    },
}

/// The flags that say what a run evaluates and how: `eval run` starts one such run,
/// and every run a schedule starts (`schedule create`) is one.
#[derive(Args, Debug, Clone)]
pub(crate) struct RunTemplateArgs {
    /// The dataset's id.
    #[arg(long = "dataset", value_name = "ID")]
    dataset_id: String,
    /// The prompt's name in the registry.
    #[arg(long = "prompt", value_name = "NAME")]
    prompt_name: String,
    /// An exact prompt version (default: the active version).
    #[arg(long, value_name = "V", conflicts_with = "label")]
    version: Option<String>,
    /// A prompt label (`production`), resolved when the run starts.
    #[arg(long, value_name = "L")]
    label: Option<String>,
    /// The model: a configured provider entry, `echo` (answers with the prompt), or
    /// `auto` (the best healthy provider now; see `llmops providers list`).
    #[arg(long, value_name = "NAME")]
    model: String,
    /// A metric to score every output with (repeatable, at least one).
    ///
    /// SPEC is `NAME=SCORER[:THRESHOLD][@PARAMS]`: the metric's name (the key of its
    /// scores), a scorer (exact_match, contains, contains_any, contains_all, regex,
    /// json_valid, json_match, levenshtein, token_f1, bleu, rouge_l, heuristic,
    /// llm_judge, panel), optionally the pass threshold (default 0.7) and optionally
    /// the scorer's parameters as a JSON object, last. Quote a SPEC with JSON in
    /// it. Examples: `exact=exact_match`, `f1=token_f1:0.5`,
    /// `'judge=llm_judge:0.8@{"judge":"gpt"}'`.
    #[arg(
        long = "metric",
        value_name = "SPEC",
        required = true,
        value_parser = metric::parse
    )]
    metrics: Vec<pb::MetricConfig>,
    /// The run's display name (default: "<prompt> on <dataset>").
    #[arg(long, value_name = "N")]
    name: Option<String>,
    /// Samples in flight at most (server default 8, at most 256).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    concurrency: Option<u32>,
    /// How long one sample (render, model call, scoring) may take, e.g. `30s`,
    /// `2m` (server default 120s).
    #[arg(long, value_name = "DURATION", value_parser = parse_timeout)]
    sample_timeout: Option<Duration>,
    /// The run to compare with for regressions (default: the latest completed run
    /// with the same dataset, prompt and model).
    #[arg(long = "baseline", value_name = "RUN")]
    baseline_run_id: Option<String>,
}

impl RunTemplateArgs {
    /// The run these flags describe, as `CreateRun` and `ScheduleRun` take it. A metric
    /// name given twice is refused before anything is sent.
    pub(crate) fn into_run(self) -> anyhow::Result<pb::Run> {
        check_metric_names(&self.metrics)?;
        let sample_timeout = self
            .sample_timeout
            .map(prost_types::Duration::try_from)
            .transpose()
            .context("--sample-timeout is too long")?;
        Ok(pb::Run {
            name: self.name.unwrap_or_default(),
            dataset_id: self.dataset_id,
            prompt_name: self.prompt_name,
            prompt_version: self.version.unwrap_or_default(),
            prompt_label: self.label.unwrap_or_default(),
            model: self.model,
            metrics: self.metrics,
            concurrency: self.concurrency.unwrap_or_default(),
            sample_timeout,
            baseline_run_id: self.baseline_run_id.unwrap_or_default(),
            ..Default::default()
        })
    }
}

/// Metric names are the keys of the scores: one given twice is refused.
fn check_metric_names(metrics: &[pb::MetricConfig]) -> anyhow::Result<()> {
    let mut seen = HashSet::new();
    for metric in metrics {
        if !seen.insert(metric.name.as_str()) {
            bail!("--metric {} is given twice", metric.name);
        }
    }
    Ok(())
}

/// Run states as command-line values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum StatusArg {
    /// Created, not started.
    Pending,
    /// Samples are running.
    Running,
    /// Every sample has a result.
    Completed,
    /// The run could not go on.
    Failed,
    /// Cancelled.
    Cancelled,
}

impl From<StatusArg> for pb::RunStatus {
    fn from(value: StatusArg) -> Self {
        match value {
            StatusArg::Pending => Self::Pending,
            StatusArg::Running => Self::Running,
            StatusArg::Completed => Self::Completed,
            StatusArg::Failed => Self::Failed,
            StatusArg::Cancelled => Self::Cancelled,
        }
    }
}

/// Parses a `--sample-timeout` duration (`30s`, `1m 30s`, `500ms`); zero is refused.
fn parse_timeout(text: &str) -> Result<Duration, String> {
    let duration = humantime::parse_duration(text.trim())
        .map_err(|err| format!("expected a duration such as 30s or 2m: {err}"))?;
    if duration.is_zero() {
        return Err("must be more than zero".to_owned());
    }
    Ok(duration)
}

/// Runs a `llmops eval` subcommand against the server in `options`.
pub async fn run(args: EvalArgs, options: &ClientOptions) -> anyhow::Result<()> {
    commands::run(args.command, options).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::testing::{self, assert_refused};

    /// `llmops eval <args>...` parsed as the binary does.
    fn parse(args: &[&str]) -> Result<EvalCommand, clap::Error> {
        testing::parse::<EvalArgs>("eval", args).map(|args| args.command)
    }

    #[test]
    fn the_command_tree_is_consistent() {
        testing::command::<EvalArgs>("eval").debug_assert();
    }

    #[test]
    fn run_takes_metrics_and_options() {
        let EvalCommand::Run { template, watch } = parse(&[
            "run",
            "--dataset",
            "ds",
            "--prompt",
            "greet",
            "--version",
            "1.2.0",
            "--model",
            "echo",
            "--metric",
            "exact=exact_match",
            "--metric",
            "f1=token_f1:0.5",
            "--metric",
            r#"judge=llm_judge@{"judge":"gpt"}"#,
            "--name",
            "nightly",
            "--concurrency",
            "4",
            "--sample-timeout",
            "30s",
            "--baseline",
            "r0",
            "--watch",
        ])
        .unwrap() else {
            panic!("not run")
        };
        assert!(watch);
        let run = template.into_run().unwrap();
        assert_eq!(
            (
                run.dataset_id.as_str(),
                run.prompt_name.as_str(),
                run.model.as_str()
            ),
            ("ds", "greet", "echo")
        );
        assert_eq!(
            (run.prompt_version.as_str(), run.prompt_label.as_str()),
            ("1.2.0", "")
        );
        let names: Vec<_> = run.metrics.iter().map(|m| m.name.as_str()).collect();
        assert_eq!(names, ["exact", "f1", "judge"]);
        assert_eq!(run.metrics[1].threshold, Some(0.5));
        assert!(run.metrics[2].params.is_some());
        assert_eq!(run.name, "nightly");
        assert_eq!(run.concurrency, 4);
        assert_eq!(
            run.sample_timeout,
            Some(prost_types::Duration {
                seconds: 30,
                nanos: 0
            })
        );
        assert_eq!(run.baseline_run_id, "r0");
        assert!(run.id.is_empty());
    }

    #[test]
    fn unset_run_options_are_left_to_the_server() {
        let EvalCommand::Run { template, watch } = parse(&[
            "run",
            "--dataset",
            "ds",
            "--prompt",
            "p",
            "--label",
            "prod",
            "--model",
            "m",
            "--metric",
            "a=b",
        ])
        .unwrap() else {
            panic!("not run")
        };
        assert!(!watch);
        let run = template.into_run().unwrap();
        assert_eq!(run.prompt_label, "prod");
        assert_eq!((run.name.as_str(), run.concurrency), ("", 0));
        assert_eq!(run.sample_timeout, None);
        assert_eq!(run.baseline_run_id, "");
    }

    #[test]
    fn a_metric_name_given_twice_is_refused() {
        let metric = |name: &str| pb::MetricConfig {
            name: name.into(),
            scorer: "exact_match".into(),
            ..Default::default()
        };
        assert!(check_metric_names(&[metric("a"), metric("b")]).is_ok());
        let err = check_metric_names(&[metric("a"), metric("a")])
            .unwrap_err()
            .to_string();
        assert_eq!(err, "--metric a is given twice");
    }

    #[test]
    fn run_needs_a_metric_and_refuses_bad_ones() {
        let base = ["run", "--dataset", "ds", "--prompt", "p", "--model", "echo"];
        assert_refused(parse(&base), "--metric");
        let with = |extra: &[&str]| {
            let mut args = base.to_vec();
            args.extend_from_slice(extra);
            parse(&args)
        };
        assert!(with(&["--metric", "exact=exact_match"]).is_ok());
        let err = with(&["--metric", "exact"]).unwrap_err().to_string();
        assert!(err.contains("--metric <SPEC>"), "{err}");
        assert!(err.contains("NAME=SCORER"), "{err}");
        assert_refused(with(&["--metric", "a=b:x"]), "--metric");
        assert_refused(
            with(&["--metric", "a=b", "--version", "1", "--label", "prod"]),
            "--label",
        );
        assert_refused(
            with(&["--metric", "a=b", "--sample-timeout", "0s"]),
            "--sample-timeout",
        );
        assert_refused(
            with(&["--metric", "a=b", "--sample-timeout", "soon"]),
            "--sample-timeout",
        );
        assert_refused(
            with(&["--metric", "a=b", "--concurrency", "0"]),
            "--concurrency",
        );
    }

    #[test]
    fn list_filters_and_limits() {
        let EvalCommand::List {
            dataset_id,
            prompt_name,
            model,
            status,
            limit,
        } = parse(&[
            "list",
            "--dataset",
            "ds",
            "--prompt",
            "p",
            "--model",
            "m",
            "--status",
            "failed",
            "--limit",
            "5",
            "--json",
        ])
        .unwrap()
        else {
            panic!("not list")
        };
        assert_eq!(dataset_id.as_deref(), Some("ds"));
        assert_eq!(prompt_name.as_deref(), Some("p"));
        assert_eq!(model.as_deref(), Some("m"));
        assert_eq!(status, Some(StatusArg::Failed));
        assert_eq!(limit, Some(5));
        assert_refused(parse(&["list", "--status", "done"]), "--status");
        assert_refused(parse(&["list", "--limit", "0"]), "--limit");
    }

    #[test]
    fn results_compare_get_and_cancel_take_run_ids() {
        let EvalCommand::Results {
            run_id,
            failed,
            limit,
        } = parse(&["results", "r1", "--failed", "--limit", "10"]).unwrap()
        else {
            panic!("not results")
        };
        assert_eq!((run_id.as_str(), failed, limit), ("r1", true, Some(10)));
        let EvalCommand::Compare {
            baseline_run_id,
            candidate_run_id,
        } = parse(&["compare", "a", "b"]).unwrap()
        else {
            panic!("not compare")
        };
        assert_eq!(
            (baseline_run_id.as_str(), candidate_run_id.as_str()),
            ("a", "b")
        );
        assert_refused(parse(&["compare", "a"]), "<");
        assert!(matches!(
            parse(&["get", "r1"]).unwrap(),
            EvalCommand::Get { .. }
        ));
        assert!(matches!(
            parse(&["cancel", "r1"]).unwrap(),
            EvalCommand::Cancel { .. }
        ));
    }

    #[test]
    fn timeouts_are_human_durations() {
        assert_eq!(parse_timeout("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_timeout("1m 30s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_timeout("500ms"), Ok(Duration::from_millis(500)));
        assert!(parse_timeout("0s").is_err());
        assert!(parse_timeout("30").is_err());
    }
}
