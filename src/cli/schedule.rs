//! `llmops schedule ...`: continuous evaluation. A schedule is a run template (the flags
//! of `llmops eval run`) plus its triggers, a time expression and/or changes to the
//! prompt; each time one fires, the server starts a run of the template.
//!
//! The arguments and the calls are here; printing is in `format`.

mod format;

use anyhow::Context as _;
use clap::{Args, Subcommand};
use serde_json::json;

use super::eval::RunTemplateArgs;
use crate::cli::output::{self, emit};
use crate::cli::paging::collect_pages;
use crate::cli::{connect, status_error, ClientOptions};
use crate::pb;
use crate::pb::evaluation_service_client::EvaluationServiceClient;

/// Evaluate by schedule: start runs on a cron schedule and whenever a prompt's active
/// version (or a label) changes; list, inspect, pause, resume and delete schedules.
#[derive(Args, Debug, Clone)]
pub struct ScheduleArgs {
    /// What to do.
    #[command(subcommand)]
    command: ScheduleCommand,
}

/// The `llmops schedule` subcommands.
#[derive(Subcommand, Debug, Clone)]
enum ScheduleCommand {
    /// Create a schedule and print it.
    ///
    /// Each time a trigger fires, the server starts a run of the template that the
    /// `llmops eval run` flags describe (`--dataset`, `--prompt`, `--model`, `--metric`,
    /// ...). A tick that falls due while the schedule's previous run is still going is
    /// skipped (and counted); ticks missed while the server was down make one run when it
    /// is back.
    #[command(disable_version_flag = true)]
    Create(Box<CreateArgs>),
    /// List schedules, newest first, with their next and last runs.
    List {
        /// Show at most this many schedules.
        #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
        limit: Option<u32>,
    },
    /// Show one schedule: its template, triggers, next and last run, skipped ticks and
    /// last error.
    Get {
        /// The schedule's id.
        #[arg(value_name = "SCHEDULE")]
        schedule_id: String,
    },
    /// Stop a schedule from starting runs until it is resumed.
    Pause {
        /// The schedule's id.
        #[arg(value_name = "SCHEDULE")]
        schedule_id: String,
    },
    /// Resume a paused schedule from now (missed ticks are not made up).
    Resume {
        /// The schedule's id.
        #[arg(value_name = "SCHEDULE")]
        schedule_id: String,
    },
    /// Delete a schedule; the runs it started stay.
    Delete {
        /// The schedule's id.
        #[arg(value_name = "SCHEDULE")]
        schedule_id: String,
    },
}

/// `schedule create`: the run template and the triggers.
#[derive(Args, Debug, Clone)]
struct CreateArgs {
    #[command(flatten)]
    template: RunTemplateArgs,
    /// When to start runs (UTC): a cron expression, a macro or `@every <DURATION>`
    /// [default: the server's interval].
    ///
    /// EXPR is a cron expression of 5 fields (`'0 3 * * *'`: 03:00 every day) or 6 with
    /// a leading seconds field; a macro: `@hourly`, `@daily`, `@weekly`, `@monthly` or
    /// `@yearly`; or `@every <DURATION>` (`'@every 90s'`, `'@every 6h'`). Quote it.
    /// Without it (or empty), the server's default interval (`[evaluation] interval`)
    /// applies when its auto-evaluation is on; otherwise runs start only on prompt
    /// changes (`--on-prompt-change`).
    #[arg(long, value_name = "EXPR")]
    schedule: Option<String>,
    /// Also start a run of each new active version of the prompt (or, with
    /// `--watch-label`, of each version that label moves to).
    ///
    /// The run's regression check compares it with the previous version's latest run on
    /// the same dataset.
    #[arg(long)]
    on_prompt_change: bool,
    /// Watch this label (`staging`) instead of the active version; needs
    /// `--on-prompt-change`.
    ///
    /// Timed runs evaluate the label's version too, unless `--version` or `--label` is
    /// given.
    #[arg(long, value_name = "L", requires = "on_prompt_change")]
    watch_label: Option<String>,
    /// The schedule's id [default: generated].
    #[arg(long = "id", value_name = "ID")]
    schedule_id: Option<String>,
}

impl CreateArgs {
    /// The `ScheduleRun` request these flags describe.
    fn into_request(self) -> anyhow::Result<pb::ScheduleRunRequest> {
        Ok(pb::ScheduleRunRequest {
            run_template: Some(self.template.into_run()?),
            schedule: self.schedule.unwrap_or_default().trim().to_owned(),
            on_prompt_change: self.on_prompt_change,
            watch_label: self.watch_label.unwrap_or_default(),
            schedule_id: self.schedule_id.unwrap_or_default(),
        })
    }
}

type Client = EvaluationServiceClient<crate::cli::Connection>;

/// Runs a `llmops schedule` subcommand against the server in `options`.
pub async fn run(args: ScheduleArgs, options: &ClientOptions) -> anyhow::Result<()> {
    execute(args.command, options).await
}

async fn execute(command: ScheduleCommand, options: &ClientOptions) -> anyhow::Result<()> {
    let as_json = options.json;
    let schedule = match command {
        ScheduleCommand::Create(create) => {
            // Bad flags are refused before connecting.
            let request = create.into_request()?;
            client(options)
                .await?
                .schedule_run(request)
                .await
                .map_err(status_error)?
                .into_inner()
                .schedule
        }
        ScheduleCommand::List { limit } => {
            let schedules = list(&client(options).await?, limit).await?;
            return if as_json {
                emit(|out| output::messages(out, &schedules))
            } else {
                emit(|out| format::schedule_table(out, &schedules))
            };
        }
        ScheduleCommand::Get { schedule_id } => {
            client(options)
                .await?
                .get_schedule(pb::GetScheduleRequest { schedule_id })
                .await
                .map_err(status_error)?
                .into_inner()
                .schedule
        }
        ScheduleCommand::Pause { schedule_id } => {
            client(options)
                .await?
                .pause_schedule(pb::PauseScheduleRequest { schedule_id })
                .await
                .map_err(status_error)?
                .into_inner()
                .schedule
        }
        ScheduleCommand::Resume { schedule_id } => {
            client(options)
                .await?
                .resume_schedule(pb::ResumeScheduleRequest { schedule_id })
                .await
                .map_err(status_error)?
                .into_inner()
                .schedule
        }
        ScheduleCommand::Delete { schedule_id } => {
            client(options)
                .await?
                .delete_schedule(pb::DeleteScheduleRequest {
                    schedule_id: schedule_id.clone(),
                })
                .await
                .map_err(status_error)?;
            return if as_json {
                emit(|out| output::json(out, &json!({"id": schedule_id, "deleted": true})))
            } else {
                emit(|out| writeln!(out, "deleted schedule {schedule_id}"))
            };
        }
    };
    let schedule = schedule.context("the server sent no schedule")?;
    if as_json {
        emit(|out| output::message(out, &schedule))
    } else {
        emit(|out| format::schedule_details(out, &schedule))
    }
}

async fn client(options: &ClientOptions) -> anyhow::Result<Client> {
    Ok(EvaluationServiceClient::new(connect(options).await?))
}

/// Up to `limit` schedules (all without one), newest first.
async fn list(client: &Client, limit: Option<u32>) -> anyhow::Result<Vec<pb::Schedule>> {
    collect_pages(limit, |page_size, page_token| {
        let mut client = client.clone();
        async move {
            let page = client
                .list_schedules(pb::ListSchedulesRequest {
                    page_size,
                    page_token,
                })
                .await?
                .into_inner();
            Ok((page.schedules, page.next_page_token))
        }
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::testing;

    fn parse(args: &[&str]) -> Result<ScheduleCommand, clap::Error> {
        testing::parse::<ScheduleArgs>("schedule", args).map(|args| args.command)
    }

    fn create(extra: &[&str]) -> Result<pb::ScheduleRunRequest, String> {
        let mut args = vec![
            "create",
            "--dataset",
            "qa",
            "--prompt",
            "greet",
            "--model",
            "echo",
            "--metric",
            "exact=exact_match",
        ];
        args.extend_from_slice(extra);
        match parse(&args).map_err(|err| err.to_string())? {
            ScheduleCommand::Create(create) => create.into_request().map_err(|e| e.to_string()),
            other => panic!("not create: {other:?}"),
        }
    }

    #[test]
    fn the_command_tree_is_consistent() {
        testing::command::<ScheduleArgs>("schedule").debug_assert();
    }

    #[test]
    fn create_takes_the_run_flags_and_the_triggers() {
        let request = create(&[
            "--label",
            "production",
            "--metric",
            "f1=token_f1:0.5",
            "--concurrency",
            "2",
            "--sample-timeout",
            "1m",
            "--name",
            "nightly",
            "--schedule",
            " @every 90s ",
            "--on-prompt-change",
            "--watch-label",
            "staging",
            "--id",
            "nightly-greet",
        ])
        .unwrap();
        assert_eq!(request.schedule, "@every 90s");
        assert!(request.on_prompt_change);
        assert_eq!(request.watch_label, "staging");
        assert_eq!(request.schedule_id, "nightly-greet");
        let template = request.run_template.unwrap();
        assert_eq!(
            (
                template.dataset_id.as_str(),
                template.prompt_name.as_str(),
                template.prompt_label.as_str(),
                template.model.as_str(),
                template.name.as_str(),
            ),
            ("qa", "greet", "production", "echo", "nightly")
        );
        let metrics: Vec<_> = template.metrics.iter().map(|m| m.name.as_str()).collect();
        assert_eq!(metrics, ["exact", "f1"]);
        assert_eq!(template.concurrency, 2);
        assert_eq!(template.sample_timeout.map(|d| d.seconds), Some(60));
        assert!(template.id.is_empty());
    }

    #[test]
    fn create_defaults_leave_the_schedule_to_the_server() {
        let request = create(&[]).unwrap();
        assert_eq!(request.schedule, "");
        assert!(!request.on_prompt_change);
        assert_eq!(request.watch_label, "");
        assert_eq!(request.schedule_id, "");
        assert_eq!(request.run_template.unwrap().prompt_version, "");
        // A cron expression is passed as given; the server checks it.
        assert_eq!(
            create(&["--schedule", "0 3 * * *"]).unwrap().schedule,
            "0 3 * * *"
        );
    }

    #[test]
    fn create_refuses_what_eval_run_refuses() {
        let err = create(&["--watch-label", "staging"]).unwrap_err();
        assert!(err.contains("--on-prompt-change"), "{err}");
        assert!(create(&["--version", "1.0.0", "--label", "prod"]).is_err());
        assert!(create(&["--concurrency", "0"]).is_err());
        assert!(create(&["--sample-timeout", "0s"]).is_err());
        let err = create(&["--metric", "exact=contains"]).unwrap_err();
        assert_eq!(err, "--metric exact is given twice");
        // The run flags are required as for `eval run`.
        assert!(parse(&["create", "--dataset", "qa", "--prompt", "greet"]).is_err());
        assert!(parse(&["create", "--schedule", "@daily"]).is_err());
    }

    #[test]
    fn the_other_commands_take_a_schedule_id() {
        let id = |command: ScheduleCommand| match command {
            ScheduleCommand::Get { schedule_id }
            | ScheduleCommand::Pause { schedule_id }
            | ScheduleCommand::Resume { schedule_id }
            | ScheduleCommand::Delete { schedule_id } => schedule_id,
            other => panic!("no schedule id: {other:?}"),
        };
        for name in ["get", "pause", "resume", "delete"] {
            let command = parse(&[name, "s1"]).unwrap();
            let debug = format!("{command:?}");
            assert!(debug.to_lowercase().starts_with(name), "{name}: {debug}");
            assert_eq!(id(command), "s1");
            assert!(parse(&[name]).is_err(), "{name} without an id");
        }
        assert!(matches!(
            parse(&["list", "--limit", "5", "--json"]).unwrap(),
            ScheduleCommand::List { limit: Some(5) }
        ));
        assert!(parse(&["list", "--limit", "0"]).is_err());
    }
}
