//! The calls each `llmops eval` subcommand makes, and what it prints.

use anyhow::{bail, Context as _};

use super::{format, progress, EvalCommand};
use crate::cli::output::{self, emit};
use crate::cli::paging::collect_pages;
use crate::cli::{connect, status_error, ClientOptions};
use crate::pb;
use crate::pb::evaluation_service_client::EvaluationServiceClient;

pub(crate) type Client = EvaluationServiceClient<crate::cli::Connection>;

/// The largest answer accepted: a page of results with long outputs can pass the 4 MiB
/// default.
const MAX_ANSWER_BYTES: usize = 256 * 1024 * 1024;

/// Runs one subcommand.
pub(crate) async fn run(command: EvalCommand, options: &ClientOptions) -> anyhow::Result<()> {
    let as_json = options.json;
    match command {
        EvalCommand::Run { template, watch } => {
            let run = template.into_run()?;
            let mut client = client(options).await?;
            let created = client
                .create_run(pb::CreateRunRequest { run: Some(run) })
                .await
                .map_err(status_error)?
                .into_inner()
                .run
                .context("the server sent no run")?;
            let started = client
                .start_run(pb::StartRunRequest {
                    run_id: created.id.clone(),
                })
                .await
                .map_err(|status| {
                    status_error(status).context(format!(
                        "run {} was created but could not start (it stays pending)",
                        created.id
                    ))
                })?
                .into_inner()
                .run
                .context("the server sent no run")?;
            if !watch {
                return print_started(as_json, &started);
            }
            if !as_json {
                let id = started.id.clone();
                emit(|out| writeln!(out, "{id}"))?;
            }
            let finished = progress::watch(&mut client, &started.id, as_json).await?;
            if !as_json {
                emit(|out| format::run_details(out, &finished))?;
            }
            fail_if_failed(&finished)
        }
        EvalCommand::Get { run_id } => {
            let mut client = client(options).await?;
            let run = client
                .get_run(pb::GetRunRequest { run_id })
                .await
                .map_err(status_error)?
                .into_inner()
                .run
                .context("the server sent no run")?;
            if as_json {
                emit(|out| output::message(out, &run))
            } else {
                emit(|out| format::run_details(out, &run))
            }
        }
        EvalCommand::List {
            dataset_id,
            prompt_name,
            model,
            status,
            limit,
        } => {
            let client = client(options).await?;
            let filter = pb::ListRunsRequest {
                dataset_id: dataset_id.unwrap_or_default(),
                prompt_name: prompt_name.unwrap_or_default(),
                model: model.unwrap_or_default(),
                status: status.map_or(pb::RunStatus::Unspecified, pb::RunStatus::from) as i32,
                ..Default::default()
            };
            let runs = list_runs(&client, filter, limit).await?;
            if as_json {
                emit(|out| output::messages(out, &runs))
            } else {
                emit(|out| format::run_table(out, &runs))
            }
        }
        EvalCommand::Results {
            run_id,
            failed,
            limit,
        } => {
            let client = client(options).await?;
            let results = list_results(&client, run_id, failed, limit).await?;
            if as_json {
                emit(|out| output::messages(out, &results))
            } else {
                emit(|out| format::sample_table(out, &results))
            }
        }
        EvalCommand::Compare {
            baseline_run_id,
            candidate_run_id,
        } => {
            let mut client = client(options).await?;
            let comparison = client
                .compare_runs(pb::CompareRunsRequest {
                    baseline_run_id: baseline_run_id.clone(),
                    candidate_run_id: candidate_run_id.clone(),
                })
                .await
                .map_err(status_error)?
                .into_inner();
            if as_json {
                emit(|out| output::message(out, &comparison))
            } else {
                emit(|out| {
                    format::comparison(out, &baseline_run_id, &candidate_run_id, &comparison)
                })
            }
        }
        EvalCommand::Cancel { run_id } => {
            let mut client = client(options).await?;
            let run = client
                .cancel_run(pb::CancelRunRequest { run_id })
                .await
                .map_err(status_error)?
                .into_inner()
                .run
                .context("the server sent no run")?;
            if as_json {
                return emit(|out| output::message(out, &run));
            }
            emit(|out| {
                writeln!(
                    out,
                    "cancelled run {} ({})",
                    run.id,
                    format::status_name(run.status)
                )?;
                match (&run.results, &run.progress) {
                    (Some(results), _) => {
                        writeln!(out)?;
                        format::results_summary(out, results)
                    }
                    (None, Some(p)) => writeln!(out, "{}", format::progress_text(p)),
                    (None, None) => Ok(()),
                }
            })
        }
    }
}

async fn client(options: &ClientOptions) -> anyhow::Result<Client> {
    Ok(EvaluationServiceClient::new(connect(options).await?)
        .max_decoding_message_size(MAX_ANSWER_BYTES))
}

/// After `run` without `--watch`: the id alone on stdout (for scripts), what was
/// started on stderr; or the run as JSON.
fn print_started(as_json: bool, run: &pb::Run) -> anyhow::Result<()> {
    if as_json {
        return emit(|out| output::message(out, run));
    }
    emit(|out| writeln!(out, "{}", run.id))?;
    let samples = run.progress.map_or(0, |p| p.total);
    eprintln!(
        "started run {} ({}): {samples} sample{} of {} with {} on {}; follow it with `llmops eval get {}`",
        run.id,
        run.name,
        if samples == 1 { "" } else { "s" },
        run.dataset_id,
        format::prompt_ref(run),
        run.model,
        run.id
    );
    Ok(())
}

/// A run that ended FAILED is an error (non-zero exit status), after its summary.
fn fail_if_failed(run: &pb::Run) -> anyhow::Result<()> {
    if run.status == pb::RunStatus::Failed as i32 {
        if run.error.is_empty() {
            bail!("run {} failed", run.id);
        }
        bail!("run {} failed: {}", run.id, run.error);
    }
    Ok(())
}

/// Up to `limit` runs (all without one) matching `filter`, newest first.
async fn list_runs(
    client: &Client,
    filter: pb::ListRunsRequest,
    limit: Option<u32>,
) -> anyhow::Result<Vec<pb::Run>> {
    collect_pages(limit, |page_size, page_token| {
        let mut client = client.clone();
        let request = pb::ListRunsRequest {
            page_size,
            page_token,
            ..filter.clone()
        };
        async move {
            let page = client.list_runs(request).await?.into_inner();
            Ok((page.runs, page.next_page_token))
        }
    })
    .await
}

/// Up to `limit` per-sample results (all without one), in dataset order.
async fn list_results(
    client: &Client,
    run_id: String,
    failed_only: bool,
    limit: Option<u32>,
) -> anyhow::Result<Vec<pb::SampleResult>> {
    collect_pages(limit, |page_size, page_token| {
        let mut client = client.clone();
        let run_id = run_id.clone();
        async move {
            let page = client
                .list_run_results(pb::ListRunResultsRequest {
                    run_id,
                    failed_only,
                    page_size,
                    page_token,
                })
                .await?
                .into_inner();
            Ok((page.results, page.next_page_token))
        }
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_failed_run_is_an_error() {
        let run = |status: pb::RunStatus, error: &str| pb::Run {
            id: "r1".into(),
            status: status as i32,
            error: error.into(),
            ..Default::default()
        };
        assert!(fail_if_failed(&run(pb::RunStatus::Completed, "")).is_ok());
        assert!(fail_if_failed(&run(pb::RunStatus::Cancelled, "")).is_ok());
        assert_eq!(
            fail_if_failed(&run(pb::RunStatus::Failed, "provider down"))
                .unwrap_err()
                .to_string(),
            "run r1 failed: provider down"
        );
    }
}
