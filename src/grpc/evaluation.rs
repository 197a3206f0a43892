//! `llmops.v1.EvaluationService` on top of the evaluator crate: datasets and runs.

mod gate_messages;
mod messages;
mod online_messages;
mod run_messages;
mod schedule_messages;

use std::sync::Arc;

use llmops_evaluator::datasets::{DatasetService, MAX_IMPORT_SAMPLES, MAX_SAMPLES_PER_CALL};
use prost::Message as _;
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status, Streaming};

use llmops_evaluator::dataset_users::DatasetUsers;
use llmops_evaluator::gates::GateService;
use llmops_evaluator::online::{OnlineEvaluationService, OnlineStatsQuery};
use llmops_evaluator::runs::RunService;
use llmops_evaluator::schedules::ScheduleService;

use self::gate_messages::{gate_from_pb, gate_to_pb};
use self::messages::{dataset_to_pb, sample_from_pb, sample_to_pb, spec_from_pb, type_from_pb};
use self::online_messages::{new_online_from_pb, online_group_to_pb, online_to_pb, update_from_pb};
use self::run_messages::{
    comparison_to_pb, filter_from_pb, output_from_pb, result_to_pb, run_to_pb,
    spec_from_pb as run_spec_from_pb,
};
use self::schedule_messages::{new_schedule_from_pb, schedule_to_pb};
use crate::grpc::status::{invalid_field, IntoStatus as _, OrStatus as _};
use crate::grpc::{convert, response_stream, ResponseStream};
use crate::pb;
use crate::pb::evaluation_service_server::EvaluationService as EvaluationServiceRpc;
use crate::server::access::caller_of;
use crate::server::audit::with_audit_resource;

const DEFAULT_DATASET_PAGE: usize = 50;
const DEFAULT_SAMPLE_PAGE: usize = 100;
const DEFAULT_RUN_PAGE: usize = 50;
const DEFAULT_RESULT_PAGE: usize = 100;
const DEFAULT_SCHEDULE_PAGE: usize = 100;
const DEFAULT_GATE_PAGE: usize = 100;
const DEFAULT_ONLINE_PAGE: usize = 100;
/// Buckets GetOnlineEvaluationStats covers when `since` is not given.
const DEFAULT_STATS_BUCKETS: u32 = 24;
/// Samples per ExportSamples message.
const EXPORT_BATCH: usize = 500;

/// The EvaluationService adapter.
#[derive(Debug, Clone)]
pub struct EvaluationApi {
    datasets: Arc<DatasetService>,
    dataset_users: DatasetUsers,
    runs: Arc<RunService>,
    schedules: Arc<ScheduleService>,
    gates: Arc<GateService>,
    online: Arc<OnlineEvaluationService>,
    /// The most bytes one ImportSamples stream may carry.
    max_import_bytes: u64,
    shutdown: CancellationToken,
}

/// The services EvaluationService is built on.
#[derive(Debug, Clone)]
pub struct EvaluationServices {
    /// Datasets and their samples.
    pub datasets: Arc<DatasetService>,
    /// Evaluation runs.
    pub runs: Arc<RunService>,
    /// Evaluation schedules.
    pub schedules: Arc<ScheduleService>,
    /// Release gates.
    pub gates: Arc<GateService>,
    /// Deletes datasets nothing uses.
    pub dataset_users: DatasetUsers,
    /// Online evaluations.
    pub online: Arc<OnlineEvaluationService>,
}

impl EvaluationApi {
    /// An adapter over `services`; streams end at `shutdown`.
    pub fn new(
        services: EvaluationServices,
        max_import_bytes: u64,
        shutdown: CancellationToken,
    ) -> Self {
        let EvaluationServices {
            datasets,
            runs,
            schedules,
            gates,
            dataset_users,
            online,
        } = services;
        Self {
            datasets,
            dataset_users,
            runs,
            schedules,
            gates,
            online,
            max_import_bytes,
            shutdown,
        }
    }
}

fn required(field: &str, value: &str) -> Result<(), Status> {
    if value.is_empty() {
        return Err(invalid_field(field, "is required"));
    }
    Ok(())
}

fn page_size(size: i32, default: usize) -> Result<usize, Status> {
    match size {
        0 => Ok(default),
        n if n < 0 => Err(invalid_field("page_size", "must not be negative")),
        n => Ok(n as usize),
    }
}

#[tonic::async_trait]
impl EvaluationServiceRpc for EvaluationApi {
    async fn create_dataset(
        &self,
        request: Request<pb::CreateDatasetRequest>,
    ) -> Result<Response<pb::CreateDatasetResponse>, Status> {
        let Some(dataset) = request.into_inner().dataset else {
            return Err(invalid_field("dataset", "is required"));
        };
        let created = self
            .datasets
            .create(spec_from_pb(dataset)?)
            .await
            .or_status_at("dataset")?;
        Ok(Response::new(pb::CreateDatasetResponse {
            dataset: Some(dataset_to_pb(created)),
        }))
    }

    async fn get_dataset(
        &self,
        request: Request<pb::GetDatasetRequest>,
    ) -> Result<Response<pb::GetDatasetResponse>, Status> {
        let id = request.into_inner().dataset_id;
        required("dataset_id", &id)?;
        let dataset = self.datasets.get(&id).or_status()?;
        Ok(Response::new(pb::GetDatasetResponse {
            dataset: Some(dataset_to_pb(dataset)),
        }))
    }

    async fn list_datasets(
        &self,
        request: Request<pb::ListDatasetsRequest>,
    ) -> Result<Response<pb::ListDatasetsResponse>, Status> {
        let request = request.into_inner();
        let (datasets, next_page_token) = self
            .datasets
            .list(
                type_from_pb(request.r#type, "type")?,
                page_size(request.page_size, DEFAULT_DATASET_PAGE)?,
                &request.page_token,
            )
            .or_status()?;
        Ok(Response::new(pb::ListDatasetsResponse {
            datasets: datasets.into_iter().map(dataset_to_pb).collect(),
            next_page_token,
        }))
    }

    async fn delete_dataset(
        &self,
        request: Request<pb::DeleteDatasetRequest>,
    ) -> Result<Response<pb::DeleteDatasetResponse>, Status> {
        let id = request.into_inner().dataset_id;
        required("dataset_id", &id)?;
        self.dataset_users.delete_unused(&id).await.or_status()?;
        Ok(Response::new(pb::DeleteDatasetResponse {}))
    }

    async fn add_samples(
        &self,
        request: Request<pb::AddSamplesRequest>,
    ) -> Result<Response<pb::AddSamplesResponse>, Status> {
        let request = request.into_inner();
        required("dataset_id", &request.dataset_id)?;
        let samples = request.samples.into_iter().map(sample_from_pb).collect();
        let (dataset, sample_ids) = self
            .datasets
            .add_samples(&request.dataset_id, samples, MAX_SAMPLES_PER_CALL)
            .await
            .or_status()?;
        Ok(Response::new(pb::AddSamplesResponse {
            dataset: Some(dataset_to_pb(dataset)),
            sample_ids,
        }))
    }

    async fn import_samples(
        &self,
        request: Request<Streaming<pb::ImportSamplesRequest>>,
    ) -> Result<Response<pb::ImportSamplesResponse>, Status> {
        let datasets = &self.datasets;
        let mut stream = request.into_inner();
        // Each batch is stored as it arrives (see ImportSession): the server holds one
        // batch, whatever the stream's size. Any error drops the session, which deletes
        // what was stored.
        let mut import: Option<llmops_evaluator::datasets::ImportSession> = None;
        let mut received: u64 = 0;
        let outcome = async {
            while let Some(batch) = stream.message().await? {
                received += batch.encoded_len() as u64;
                if received > self.max_import_bytes {
                    return Err(Status::resource_exhausted(format!(
                        "the import is larger than max_import_bytes ({} bytes); nothing was imported",
                        self.max_import_bytes
                    )));
                }
                let session = match &mut import {
                    Some(session) => {
                        if !batch.dataset_id.is_empty() && batch.dataset_id != session.dataset_id() {
                            return Err(invalid_field(
                                "dataset_id",
                                format!(
                                    "every batch of a stream must name dataset {:?}, not {:?}",
                                    session.dataset_id(),
                                    batch.dataset_id
                                ),
                            ));
                        }
                        session
                    }
                    None => {
                        required("dataset_id", &batch.dataset_id)?;
                        let session = datasets
                            .begin_import(&batch.dataset_id, MAX_IMPORT_SAMPLES)
                            .await
                            .or_status()?;
                        import.insert(session)
                    }
                };
                session
                    .add_batch(batch.samples.into_iter().map(sample_from_pb).collect())
                    .await
                    .or_status()?;
            }
            let Some(session) = import.take() else {
                return Err(invalid_field("samples", "the stream carried no batch"));
            };
            let imported = session.staged();
            let dataset = datasets
                .commit_import(session)
                .await
                .or_status()?;
            Ok(pb::ImportSamplesResponse {
                dataset: Some(dataset_to_pb(dataset)),
                imported,
            })
        }
        .await;
        drop(import);
        crate::memory::release_after(received);
        outcome.map(Response::new)
    }

    async fn list_samples(
        &self,
        request: Request<pb::ListSamplesRequest>,
    ) -> Result<Response<pb::ListSamplesResponse>, Status> {
        let request = request.into_inner();
        required("dataset_id", &request.dataset_id)?;
        let page = self
            .datasets
            .list_samples(
                &request.dataset_id,
                page_size(request.page_size, DEFAULT_SAMPLE_PAGE)?,
                &request.page_token,
            )
            .await
            .or_status()?;
        Ok(Response::new(pb::ListSamplesResponse {
            samples: page.samples.into_iter().map(sample_to_pb).collect(),
            next_page_token: page.next_page_token,
        }))
    }

    type ExportSamplesStream = ResponseStream<pb::ExportSamplesResponse>;

    async fn export_samples(
        &self,
        request: Request<pb::ExportSamplesRequest>,
    ) -> Result<Response<Self::ExportSamplesStream>, Status> {
        let request = request.into_inner();
        required("dataset_id", &request.dataset_id)?;
        // Resolve the version now, so later changes do not leak into the export.
        let current = self.datasets.get(&request.dataset_id).or_status()?;
        let version = if request.version == 0 {
            current.version
        } else {
            request.version
        };
        let first = self
            .datasets
            .export_page(&request.dataset_id, version, 0, EXPORT_BATCH)
            .await
            .or_status()?;
        let datasets = self.datasets.clone();
        let dataset_id = request.dataset_id;
        let stream = response_stream(
            &self.shutdown,
            (Some(first), 0i64),
            move |(pending, after)| {
                let datasets = datasets.clone();
                let dataset_id = dataset_id.clone();
                async move {
                    let page = match pending {
                        Some(page) => page,
                        None => match datasets
                            .export_page(&dataset_id, version, after, EXPORT_BATCH)
                            .await
                        {
                            Ok(page) => page,
                            Err(err) => return Some((Err(err.into_status()), (None, after))),
                        },
                    };
                    let last = page.last()?.position;
                    let samples = page.into_iter().map(|s| sample_to_pb(s.sample)).collect();
                    Some((Ok(pb::ExportSamplesResponse { samples }), (None, last)))
                }
            },
        );
        Ok(Response::new(stream))
    }

    async fn delete_samples(
        &self,
        request: Request<pb::DeleteSamplesRequest>,
    ) -> Result<Response<pb::DeleteSamplesResponse>, Status> {
        let request = request.into_inner();
        required("dataset_id", &request.dataset_id)?;
        let dataset = self
            .datasets
            .delete_samples(&request.dataset_id, request.sample_ids)
            .await
            .or_status()?;
        Ok(Response::new(pb::DeleteSamplesResponse {
            dataset: Some(dataset_to_pb(dataset)),
        }))
    }

    async fn create_run(
        &self,
        request: Request<pb::CreateRunRequest>,
    ) -> Result<Response<pb::CreateRunResponse>, Status> {
        let caller = caller_of(&request);
        let Some(run) = request.into_inner().run else {
            return Err(invalid_field("run", "is required"));
        };
        let mut spec = run_spec_from_pb(run, "run")?;
        spec.created_by = caller.actor().unwrap_or_default().to_owned();
        let run = self.runs.create(spec).await.or_status_at("run")?;
        let id = run.id.to_string();
        Ok(with_audit_resource(
            Response::new(pb::CreateRunResponse {
                run: Some(run_to_pb(run)),
            }),
            id,
        ))
    }

    async fn start_run(
        &self,
        request: Request<pb::StartRunRequest>,
    ) -> Result<Response<pb::StartRunResponse>, Status> {
        let request = request.into_inner();
        required("run_id", &request.run_id)?;
        let run = self.runs.start(&request.run_id).await.or_status()?;
        Ok(Response::new(pb::StartRunResponse {
            run: Some(run_to_pb(run)),
        }))
    }

    async fn get_run(
        &self,
        request: Request<pb::GetRunRequest>,
    ) -> Result<Response<pb::GetRunResponse>, Status> {
        let request = request.into_inner();
        required("run_id", &request.run_id)?;
        let run = self.runs.get(&request.run_id).or_status()?;
        Ok(Response::new(pb::GetRunResponse {
            run: Some(run_to_pb(run)),
        }))
    }

    async fn list_runs(
        &self,
        request: Request<pb::ListRunsRequest>,
    ) -> Result<Response<pb::ListRunsResponse>, Status> {
        let request = request.into_inner();
        let filter = filter_from_pb(&request)?;
        let size = page_size(request.page_size, DEFAULT_RUN_PAGE)?;
        let (runs, next_page_token) = self
            .runs
            .list(&filter, size, &request.page_token)
            .or_status()?;
        Ok(Response::new(pb::ListRunsResponse {
            runs: runs.into_iter().map(run_to_pb).collect(),
            next_page_token,
        }))
    }

    async fn cancel_run(
        &self,
        request: Request<pb::CancelRunRequest>,
    ) -> Result<Response<pb::CancelRunResponse>, Status> {
        let request = request.into_inner();
        required("run_id", &request.run_id)?;
        let run = self.runs.cancel(&request.run_id).await.or_status()?;
        Ok(Response::new(pb::CancelRunResponse {
            run: Some(run_to_pb(run)),
        }))
    }

    type WatchRunStream = ResponseStream<pb::WatchRunResponse>;

    async fn watch_run(
        &self,
        request: Request<pb::WatchRunRequest>,
    ) -> Result<Response<Self::WatchRunStream>, Status> {
        let request = request.into_inner();
        required("run_id", &request.run_id)?;
        let receiver = self.runs.watch(&request.run_id).or_status()?;
        // The first item is the state now; then each change, until the final state.
        let stream = response_stream(
            &self.shutdown,
            (Some(receiver), true),
            |(receiver, first)| async move {
                let mut receiver = receiver?;
                if !first && receiver.changed().await.is_err() {
                    return None;
                }
                let run = receiver.borrow_and_update().clone();
                let next = (!run.status.is_terminal()).then_some(receiver);
                let item = Ok(pb::WatchRunResponse {
                    run: Some(run_to_pb(run)),
                });
                Some((item, (next, false)))
            },
        );
        Ok(Response::new(stream))
    }

    async fn list_run_results(
        &self,
        request: Request<pb::ListRunResultsRequest>,
    ) -> Result<Response<pb::ListRunResultsResponse>, Status> {
        let request = request.into_inner();
        required("run_id", &request.run_id)?;
        let size = page_size(request.page_size, DEFAULT_RESULT_PAGE)?;
        let page = self
            .runs
            .results(
                &request.run_id,
                request.failed_only,
                size,
                &request.page_token,
            )
            .await
            .or_status()?;
        Ok(Response::new(pb::ListRunResultsResponse {
            results: page.results.into_iter().map(result_to_pb).collect(),
            next_page_token: page.next_page_token,
        }))
    }

    async fn submit_run_outputs(
        &self,
        request: Request<pb::SubmitRunOutputsRequest>,
    ) -> Result<Response<pb::SubmitRunOutputsResponse>, Status> {
        let request = request.into_inner();
        required("run_id", &request.run_id)?;
        let outputs = request
            .outputs
            .into_iter()
            .enumerate()
            .map(|(index, output)| output_from_pb(index, output))
            .collect::<Result<Vec<_>, _>>()?;
        let (run, results) = self
            .runs
            .submit_outputs(&request.run_id, outputs)
            .await
            .or_status()?;
        Ok(Response::new(pb::SubmitRunOutputsResponse {
            run: Some(run_to_pb(run)),
            results: results.into_iter().map(result_to_pb).collect(),
        }))
    }

    async fn compare_runs(
        &self,
        request: Request<pb::CompareRunsRequest>,
    ) -> Result<Response<pb::CompareRunsResponse>, Status> {
        let request = request.into_inner();
        required("baseline_run_id", &request.baseline_run_id)?;
        required("candidate_run_id", &request.candidate_run_id)?;
        let comparison = self
            .runs
            .compare(&request.baseline_run_id, &request.candidate_run_id)
            .await
            .or_status()?;
        Ok(Response::new(comparison_to_pb(comparison)))
    }

    async fn schedule_run(
        &self,
        request: Request<pb::ScheduleRunRequest>,
    ) -> Result<Response<pb::ScheduleRunResponse>, Status> {
        let caller = caller_of(&request);
        let mut new = new_schedule_from_pb(request.into_inner())?;
        new.created_by = caller.actor().unwrap_or_default().to_owned();
        let schedule = self.schedules.create(new).await.or_status()?;
        let id = schedule.id.to_string();
        Ok(with_audit_resource(
            Response::new(pb::ScheduleRunResponse {
                schedule: Some(schedule_to_pb(schedule)),
            }),
            id,
        ))
    }

    async fn get_schedule(
        &self,
        request: Request<pb::GetScheduleRequest>,
    ) -> Result<Response<pb::GetScheduleResponse>, Status> {
        let id = request.into_inner().schedule_id;
        required("schedule_id", &id)?;
        let schedule = self.schedules.get(&id).or_status()?;
        Ok(Response::new(pb::GetScheduleResponse {
            schedule: Some(schedule_to_pb(schedule)),
        }))
    }

    async fn list_schedules(
        &self,
        request: Request<pb::ListSchedulesRequest>,
    ) -> Result<Response<pb::ListSchedulesResponse>, Status> {
        let request = request.into_inner();
        let (schedules, next_page_token) = self
            .schedules
            .list(
                page_size(request.page_size, DEFAULT_SCHEDULE_PAGE)?,
                &request.page_token,
            )
            .or_status()?;
        Ok(Response::new(pb::ListSchedulesResponse {
            schedules: schedules.into_iter().map(schedule_to_pb).collect(),
            next_page_token,
        }))
    }

    async fn pause_schedule(
        &self,
        request: Request<pb::PauseScheduleRequest>,
    ) -> Result<Response<pb::PauseScheduleResponse>, Status> {
        let id = request.into_inner().schedule_id;
        required("schedule_id", &id)?;
        let schedule = self.schedules.pause(&id).await.or_status()?;
        Ok(Response::new(pb::PauseScheduleResponse {
            schedule: Some(schedule_to_pb(schedule)),
        }))
    }

    async fn resume_schedule(
        &self,
        request: Request<pb::ResumeScheduleRequest>,
    ) -> Result<Response<pb::ResumeScheduleResponse>, Status> {
        let id = request.into_inner().schedule_id;
        required("schedule_id", &id)?;
        let schedule = self.schedules.resume(&id).await.or_status()?;
        Ok(Response::new(pb::ResumeScheduleResponse {
            schedule: Some(schedule_to_pb(schedule)),
        }))
    }

    async fn delete_schedule(
        &self,
        request: Request<pb::DeleteScheduleRequest>,
    ) -> Result<Response<pb::DeleteScheduleResponse>, Status> {
        let id = request.into_inner().schedule_id;
        required("schedule_id", &id)?;
        self.schedules.delete(&id).await.or_status()?;
        Ok(Response::new(pb::DeleteScheduleResponse {}))
    }

    async fn set_release_gate(
        &self,
        request: Request<pb::SetReleaseGateRequest>,
    ) -> Result<Response<pb::SetReleaseGateResponse>, Status> {
        let Some(gate) = request.into_inner().gate else {
            return Err(invalid_field("gate", "is required"));
        };
        let gate = self
            .gates
            .set(gate_from_pb(gate))
            .await
            .or_status_at("gate")?;
        Ok(Response::new(pb::SetReleaseGateResponse {
            gate: Some(gate_to_pb(gate)),
        }))
    }

    async fn get_release_gate(
        &self,
        request: Request<pb::GetReleaseGateRequest>,
    ) -> Result<Response<pb::GetReleaseGateResponse>, Status> {
        let request = request.into_inner();
        required("prompt_name", &request.prompt_name)?;
        required("label", &request.label)?;
        let gate = self
            .gates
            .get(&request.prompt_name, &request.label)
            .await
            .or_status()?;
        Ok(Response::new(pb::GetReleaseGateResponse {
            gate: Some(gate_to_pb(gate)),
        }))
    }

    async fn list_release_gates(
        &self,
        request: Request<pb::ListReleaseGatesRequest>,
    ) -> Result<Response<pb::ListReleaseGatesResponse>, Status> {
        let request = request.into_inner();
        let prompt = (!request.prompt_name.is_empty()).then_some(request.prompt_name.as_str());
        let (gates, next_page_token) = self
            .gates
            .list(
                prompt,
                page_size(request.page_size, DEFAULT_GATE_PAGE)?,
                &request.page_token,
            )
            .await
            .or_status()?;
        Ok(Response::new(pb::ListReleaseGatesResponse {
            gates: gates.into_iter().map(gate_to_pb).collect(),
            next_page_token,
        }))
    }

    async fn delete_release_gate(
        &self,
        request: Request<pb::DeleteReleaseGateRequest>,
    ) -> Result<Response<pb::DeleteReleaseGateResponse>, Status> {
        let request = request.into_inner();
        required("prompt_name", &request.prompt_name)?;
        required("label", &request.label)?;
        self.gates
            .delete(&request.prompt_name, &request.label)
            .await
            .or_status()?;
        Ok(Response::new(pb::DeleteReleaseGateResponse {}))
    }

    async fn create_online_evaluation(
        &self,
        request: Request<pb::CreateOnlineEvaluationRequest>,
    ) -> Result<Response<pb::CreateOnlineEvaluationResponse>, Status> {
        let evaluation = new_online_from_pb(request.into_inner())?;
        let evaluation = self
            .online
            .create(evaluation, chrono::Utc::now())
            .await
            .or_status_at("online_evaluation")?;
        let id = evaluation.id.clone();
        Ok(with_audit_resource(
            Response::new(pb::CreateOnlineEvaluationResponse {
                online_evaluation: Some(online_to_pb(evaluation)),
            }),
            id,
        ))
    }

    async fn get_online_evaluation(
        &self,
        request: Request<pb::GetOnlineEvaluationRequest>,
    ) -> Result<Response<pb::GetOnlineEvaluationResponse>, Status> {
        let id = request.into_inner().online_evaluation_id;
        required("online_evaluation_id", &id)?;
        let evaluation = self.online.get(&id).or_status()?;
        let queue_depth = self.online.queue_depth().await.or_status()?;
        Ok(Response::new(pb::GetOnlineEvaluationResponse {
            online_evaluation: Some(online_to_pb(evaluation)),
            queue_depth,
        }))
    }

    async fn list_online_evaluations(
        &self,
        request: Request<pb::ListOnlineEvaluationsRequest>,
    ) -> Result<Response<pb::ListOnlineEvaluationsResponse>, Status> {
        let request = request.into_inner();
        let (evaluations, next_page_token) = self
            .online
            .list(
                page_size(request.page_size, DEFAULT_ONLINE_PAGE)?,
                &request.page_token,
            )
            .or_status()?;
        Ok(Response::new(pb::ListOnlineEvaluationsResponse {
            online_evaluations: evaluations.into_iter().map(online_to_pb).collect(),
            next_page_token,
        }))
    }

    async fn update_online_evaluation(
        &self,
        request: Request<pb::UpdateOnlineEvaluationRequest>,
    ) -> Result<Response<pb::UpdateOnlineEvaluationResponse>, Status> {
        let request = request.into_inner();
        required("online_evaluation_id", &request.online_evaluation_id)?;
        let update = update_from_pb(&request)?;
        let evaluation = self
            .online
            .update(&request.online_evaluation_id, update, chrono::Utc::now())
            .await
            .or_status()?;
        Ok(Response::new(pb::UpdateOnlineEvaluationResponse {
            online_evaluation: Some(online_to_pb(evaluation)),
        }))
    }

    async fn delete_online_evaluation(
        &self,
        request: Request<pb::DeleteOnlineEvaluationRequest>,
    ) -> Result<Response<pb::DeleteOnlineEvaluationResponse>, Status> {
        let id = request.into_inner().online_evaluation_id;
        required("online_evaluation_id", &id)?;
        self.online.delete(&id).await.or_status()?;
        Ok(Response::new(pb::DeleteOnlineEvaluationResponse {}))
    }

    async fn get_online_evaluation_stats(
        &self,
        request: Request<pb::GetOnlineEvaluationStatsRequest>,
    ) -> Result<Response<pb::GetOnlineEvaluationStatsResponse>, Status> {
        let request = request.into_inner();
        required("online_evaluation_id", &request.online_evaluation_id)?;
        let evaluation = self.online.get(&request.online_evaluation_id).or_status()?;
        let bucket = match &request.bucket {
            None => evaluation.window,
            Some(bucket) => convert::duration_from_pb(bucket)
                .ok_or_else(|| invalid_field("bucket", "must be a positive duration"))?,
        };
        let until = match &request.until {
            Some(until) => convert::time_from_timestamp(until)
                .ok_or_else(|| invalid_field("until", "is not a valid time"))?,
            None => chrono::Utc::now(),
        };
        let since = match &request.since {
            Some(since) => convert::time_from_timestamp(since)
                .ok_or_else(|| invalid_field("since", "is not a valid time"))?,
            None => bucket
                .checked_mul(DEFAULT_STATS_BUCKETS)
                .and_then(|span| chrono::Duration::from_std(span).ok())
                .and_then(|span| until.checked_sub_signed(span))
                .ok_or_else(|| invalid_field("bucket", "is too wide"))?,
        };
        let query = OnlineStatsQuery {
            evaluation_id: request.online_evaluation_id,
            group_by: crate::grpc::generations::dimensions_from_pb(&request.group_by)?,
            since,
            until,
            bucket,
        };
        let (since_us, until_us) = query.range().or_status()?;
        let groups = self.online.stats(&query).await.or_status()?;
        let at =
            |micros: i64| chrono::DateTime::from_timestamp_micros(micros).map(convert::timestamp);
        Ok(Response::new(pb::GetOnlineEvaluationStatsResponse {
            rows: groups.into_iter().map(online_group_to_pb).collect(),
            since: at(since_us),
            until: at(until_us),
        }))
    }
}
