//! `llmops experiment ...`: the client commands of the experiment service.
//!
//! The pieces: the arguments here, the calls in `commands`, the experiment file format
//! in `spec`, printing in `format` (tables, summaries, results) with the lift chart in
//! `chart`, and `json` (JSON).

mod chart;
mod commands;
mod format;
mod spec;

use std::path::PathBuf;

use clap::{Args, Subcommand, ValueEnum};

use super::ClientOptions;
use crate::pb;

/// Run A/B experiments of prompts and models: create them from a file, move them through
/// their lifecycle, assign users, record metrics and read the results.
#[derive(Args, Debug, Clone)]
pub struct ExperimentArgs {
    /// What to do.
    #[command(subcommand)]
    command: ExperimentCommand,
}

/// The `llmops experiment` subcommands.
#[derive(Subcommand, Debug, Clone)]
enum ExperimentCommand {
    /// Create a draft experiment from a YAML or JSON file.
    ///
    /// The file holds `name` and optionally `id`, `description`, `seed`, `coverage`
    /// (0..1), `alpha`, `min_samples`, `sequential` (bool), `sequential_tuning`,
    /// `analysis_unit` (record or user), `metadata` (string map), `variants` (`id`,
    /// `name`, `description`, `control` (bool), `prompt_name`, `prompt_version`,
    /// `model`, `parameters` (map), `weight`) and `metrics` (`name`, `kind`: mean or
    /// proportion, `direction`: higher_is_better or lower_is_better (required), `role`:
    /// primary, secondary or guardrail). Unknown keys are refused.
    Create {
        /// The file: `.yaml`/`.yml` or `.json` (other names: JSON if it parses, else YAML).
        #[arg(short, long, value_name = "FILE")]
        file: PathBuf,
    },
    /// List experiments, newest first.
    List {
        /// Only experiments in this state.
        #[arg(long, value_enum)]
        status: Option<StatusArg>,
        /// Show at most this many experiments.
        #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
        limit: Option<u32>,
    },
    /// Show one experiment: status, times, settings, variants and metrics.
    Get {
        /// The experiment's id.
        #[arg(value_name = "ID")]
        experiment_id: String,
    },
    /// Start a draft or paused experiment: it assigns users and records metrics.
    Start {
        /// The experiment's id.
        #[arg(value_name = "ID")]
        experiment_id: String,
    },
    /// Pause a running experiment: no assignment; metrics are still recorded.
    Pause {
        /// The experiment's id.
        #[arg(value_name = "ID")]
        experiment_id: String,
    },
    /// Complete a running or paused experiment, optionally naming the winner.
    Complete {
        /// The experiment's id.
        #[arg(value_name = "ID")]
        experiment_id: String,
        /// The winning variant's id.
        #[arg(long = "winner", value_name = "VARIANT")]
        winner: Option<String>,
        /// Move the label the experiment serves to the winner's version first (through
        /// its release gate).
        #[arg(long, requires = "winner")]
        promote: bool,
    },
    /// Cancel a draft, running or paused experiment.
    Cancel {
        /// The experiment's id.
        #[arg(value_name = "ID")]
        experiment_id: String,
    },
    /// Assign a user a variant (running experiments only) and show it.
    Assign {
        /// The experiment's id.
        #[arg(value_name = "ID")]
        experiment_id: String,
        /// The user's id.
        #[arg(value_name = "USER")]
        user_id: String,
    },
    /// Record one metric value observed in a variant.
    Record {
        /// The experiment's id.
        #[arg(value_name = "ID")]
        experiment_id: String,
        /// The variant the value was observed in.
        #[arg(long = "variant", value_name = "VARIANT")]
        variant_id: String,
        /// A metric the experiment declares.
        #[arg(long, value_name = "METRIC")]
        metric: String,
        /// The value: any finite number; 0 or 1 for proportion metrics.
        #[arg(long, value_name = "X", allow_negative_numbers = true)]
        value: f64,
        /// The user (required when the analysis unit is user).
        #[arg(long = "user", value_name = "USER")]
        user_id: Option<String>,
        /// An idempotency key: a retry with the same id is not counted twice.
        #[arg(long, value_name = "ID")]
        record_id: Option<String>,
    },
    /// Show the results: lifts against control, statistics and the recommendation.
    ///
    /// One row per non-control variant and metric (relative lift with its interval, p,
    /// Holm-adjusted p, significance), a chart of the lift intervals on a common scale
    /// (`|` zero, `[` `]` the interval, `*` the estimate), per-variant statistics, the
    /// sample-ratio check, and the recommendation with its reasons.
    Results {
        /// The experiment's id.
        #[arg(value_name = "ID")]
        experiment_id: String,
    },
}

/// Experiment states as command-line values.
#[derive(Debug, Clone, Copy, ValueEnum)]
enum StatusArg {
    /// Being set up.
    Draft,
    /// Assigning users and recording metrics.
    Running,
    /// Recording metrics, not assigning.
    Paused,
    /// Finished, with an optional winner.
    Completed,
    /// Abandoned.
    Cancelled,
}

impl From<StatusArg> for pb::ExperimentStatus {
    fn from(value: StatusArg) -> Self {
        match value {
            StatusArg::Draft => Self::Draft,
            StatusArg::Running => Self::Running,
            StatusArg::Paused => Self::Paused,
            StatusArg::Completed => Self::Completed,
            StatusArg::Cancelled => Self::Cancelled,
        }
    }
}

/// Runs a `llmops experiment` subcommand against the server in `options`.
pub async fn run(args: ExperimentArgs, options: &ClientOptions) -> anyhow::Result<()> {
    commands::run(args.command, options).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::testing::{self, assert_refused};

    /// `llmops experiment <args>...` parsed as the binary does.
    fn parse(args: &[&str]) -> Result<ExperimentCommand, clap::Error> {
        testing::parse::<ExperimentArgs>("experiment", args).map(|args| args.command)
    }

    #[test]
    fn the_command_tree_is_consistent() {
        testing::command::<ExperimentArgs>("experiment").debug_assert();
    }

    #[test]
    fn record_takes_negative_values_and_optional_ids() {
        let ExperimentCommand::Record {
            experiment_id,
            variant_id,
            metric,
            value,
            user_id,
            record_id,
        } = parse(&[
            "record",
            "e1",
            "--variant",
            "b",
            "--metric",
            "delta",
            "--value",
            "-1.5",
        ])
        .unwrap()
        else {
            panic!("not record")
        };
        assert_eq!(
            (experiment_id.as_str(), variant_id.as_str(), metric.as_str()),
            ("e1", "b", "delta")
        );
        assert_eq!(value, -1.5);
        assert_eq!((user_id, record_id), (None, None));
        assert_refused(
            parse(&["record", "e1", "--variant", "b", "--metric", "m"]),
            "--value",
        );
        assert_refused(
            parse(&[
                "record",
                "e1",
                "--variant",
                "b",
                "--metric",
                "m",
                "--value",
                "x",
            ]),
            "--value",
        );
    }

    #[test]
    fn list_filters_by_status_and_limits() {
        let ExperimentCommand::List { status, limit } =
            parse(&["list", "--status", "running", "--limit", "5", "--json"]).unwrap()
        else {
            panic!("not list")
        };
        assert!(matches!(status, Some(StatusArg::Running)));
        assert_eq!(limit, Some(5));
        assert_refused(parse(&["list", "--status", "done"]), "--status");
        assert_refused(parse(&["list", "--limit", "0"]), "--limit");
    }

    #[test]
    fn complete_takes_an_optional_winner() {
        let ExperimentCommand::Complete {
            experiment_id,
            winner,
            promote,
        } = parse(&["complete", "e1", "--winner", "b"]).unwrap()
        else {
            panic!("not complete")
        };
        assert_eq!(experiment_id, "e1");
        assert_eq!(winner.as_deref(), Some("b"));
        assert!(!promote);
        assert!(
            parse(&["complete", "e1", "--promote"]).is_err(),
            "--promote needs --winner"
        );
    }
}
