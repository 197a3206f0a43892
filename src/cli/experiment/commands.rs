//! The calls each `llmops experiment` subcommand makes, and what it prints.

use anyhow::Context as _;

use super::{format, spec, ExperimentCommand, StatusArg};
use crate::cli::output::{self, emit};
use crate::cli::paging::collect_pages;
use crate::cli::{connect, status_error, ClientOptions};
use crate::pb;
use crate::pb::experiment_service_client::ExperimentServiceClient;

type Client = ExperimentServiceClient<crate::cli::Connection>;

/// Runs one subcommand. The experiment file is read before connecting, so its errors do
/// not depend on the server.
pub(crate) async fn run(command: ExperimentCommand, options: &ClientOptions) -> anyhow::Result<()> {
    let as_json = options.json;
    match command {
        ExperimentCommand::Create { file } => {
            let experiment = spec::read(&file)?;
            let mut client = client(options).await?;
            let created = client
                .create_experiment(pb::CreateExperimentRequest {
                    experiment: Some(experiment),
                })
                .await
                .map_err(status_error)?
                .into_inner();
            print_experiment(as_json, created.experiment)
        }
        ExperimentCommand::List { status, limit } => {
            let client = client(options).await?;
            let experiments = list_experiments(&client, status, limit).await?;
            if as_json {
                emit(|out| output::messages(out, &experiments))
            } else {
                emit(|out| format::experiment_table(out, &experiments))
            }
        }
        ExperimentCommand::Get { experiment_id } => {
            let mut client = client(options).await?;
            let got = client
                .get_experiment(pb::GetExperimentRequest { experiment_id })
                .await
                .map_err(status_error)?
                .into_inner();
            print_experiment(as_json, got.experiment)
        }
        ExperimentCommand::Start { experiment_id } => {
            let mut client = client(options).await?;
            let started = client
                .start_experiment(pb::StartExperimentRequest { experiment_id })
                .await
                .map_err(status_error)?
                .into_inner();
            print_transition(as_json, "started", started.experiment)
        }
        ExperimentCommand::Pause { experiment_id } => {
            let mut client = client(options).await?;
            let paused = client
                .pause_experiment(pb::PauseExperimentRequest { experiment_id })
                .await
                .map_err(status_error)?
                .into_inner();
            print_transition(as_json, "paused", paused.experiment)
        }
        ExperimentCommand::Complete {
            experiment_id,
            winner,
            promote,
        } => {
            let mut client = client(options).await?;
            let completed = client
                .complete_experiment(pb::CompleteExperimentRequest {
                    experiment_id,
                    winner_variant_id: winner.unwrap_or_default(),
                    promote_winner: promote,
                })
                .await
                .map_err(status_error)?
                .into_inner();
            print_transition(as_json, "completed", completed.experiment)
        }
        ExperimentCommand::Cancel { experiment_id } => {
            let mut client = client(options).await?;
            let cancelled = client
                .cancel_experiment(pb::CancelExperimentRequest { experiment_id })
                .await
                .map_err(status_error)?
                .into_inner();
            print_transition(as_json, "cancelled", cancelled.experiment)
        }
        ExperimentCommand::Assign {
            experiment_id,
            user_id,
        } => {
            let mut client = client(options).await?;
            let assigned = client
                .assign_variant(pb::AssignVariantRequest {
                    experiment_id,
                    user_id,
                })
                .await
                .map_err(status_error)?
                .into_inner();
            if as_json {
                emit(|out| output::message(out, &assigned))
            } else {
                emit(|out| format::assignment(out, &assigned))
            }
        }
        ExperimentCommand::Record {
            experiment_id,
            variant_id,
            metric,
            value,
            user_id,
            record_id,
        } => {
            let mut client = client(options).await?;
            let request = pb::RecordMetricRequest {
                experiment_id,
                variant_id,
                metric,
                value,
                user_id: user_id.unwrap_or_default(),
                record_id: record_id.unwrap_or_default(),
                time: None,
            };
            let response = client
                .record_metric(request.clone())
                .await
                .map_err(status_error)?
                .into_inner();
            if as_json {
                emit(|out| output::message(out, &response))
            } else if response.recorded {
                emit(|out| {
                    writeln!(
                        out,
                        "recorded {}={} for variant {} of {}",
                        request.metric, request.value, request.variant_id, request.experiment_id
                    )
                })
            } else {
                emit(|out| {
                    writeln!(
                        out,
                        "already recorded (record id {} seen before): not counted again",
                        request.record_id
                    )
                })
            }
        }
        ExperimentCommand::Results { experiment_id } => {
            let mut client = client(options).await?;
            let results = client
                .get_experiment_results(pb::GetExperimentResultsRequest { experiment_id })
                .await
                .map_err(status_error)?
                .into_inner();
            if as_json {
                emit(|out| output::message(out, &results))
            } else {
                emit(|out| format::results(out, &results))
            }
        }
    }
}

async fn client(options: &ClientOptions) -> anyhow::Result<Client> {
    Ok(ExperimentServiceClient::new(connect(options).await?))
}

fn print_experiment(as_json: bool, experiment: Option<pb::Experiment>) -> anyhow::Result<()> {
    let experiment = experiment.context("the server sent no experiment")?;
    if as_json {
        emit(|out| output::message(out, &experiment))
    } else {
        emit(|out| format::experiment_details(out, &experiment))
    }
}

/// After a lifecycle change: `started e1 (running)`, with the winner on completion.
fn print_transition(
    as_json: bool,
    done: &str,
    experiment: Option<pb::Experiment>,
) -> anyhow::Result<()> {
    let experiment = experiment.context("the server sent no experiment")?;
    if as_json {
        return emit(|out| output::message(out, &experiment));
    }
    let status = format::status_name(experiment.status);
    emit(|out| {
        if experiment.winner_variant_id.is_empty() {
            writeln!(out, "{done} {} ({status})", experiment.id)
        } else {
            writeln!(
                out,
                "{done} {} ({status}), winner: {}",
                experiment.id, experiment.winner_variant_id
            )
        }
    })
}

/// Up to `limit` experiments (all without one), newest first.
async fn list_experiments(
    client: &Client,
    status: Option<StatusArg>,
    limit: Option<u32>,
) -> anyhow::Result<Vec<pb::Experiment>> {
    let status = status.map_or(
        pb::ExperimentStatus::Unspecified,
        pb::ExperimentStatus::from,
    );
    collect_pages(limit, |page_size, page_token| {
        let mut client = client.clone();
        async move {
            let page = client
                .list_experiments(pb::ListExperimentsRequest {
                    status: status as i32,
                    page_size,
                    page_token,
                })
                .await?
                .into_inner();
            Ok((page.experiments, page.next_page_token))
        }
    })
    .await
}
