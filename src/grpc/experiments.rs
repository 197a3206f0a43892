//! `llmops.v1.ExperimentService` on top of the experiments crate.

mod messages;

use std::sync::Arc;

use llmops_evaluator::providers::registry::ProviderRegistry;
use llmops_evaluator::providers::selection::AUTO;
use llmops_experiments::{
    ExperimentService, ModelExperiment, PromptArm, PromptExperiment, RecordNaming, TemplateError,
};
use tonic::{Request, Response, Status, Streaming};

use self::messages::{
    experiment_to_pb, metrics_from_pb, record_from_pb, results_to_pb, spec_from_pb, status_filter,
    update_from_pb, variant_to_pb,
};
use crate::grpc::prompts::check_label_move;
use crate::grpc::prompts::new_prompt_version;
use crate::grpc::status::{invalid_field, IntoStatus as _, OrStatus as _};
use crate::pb;
use crate::pb::experiment_service_server::ExperimentService as ExperimentServiceRpc;
use crate::prompt_versions::RegistryVersions;
use crate::server::access::caller_of;
use crate::server::audit::with_audit_resource;

const DEFAULT_PAGE_SIZE: usize = 50;
/// Stream records are committed in chunks of at most this many.
const INGEST_CHUNK: usize = 1000;

/// The ExperimentService adapter.
#[derive(Debug, Clone)]
pub struct ExperimentApi {
    experiments: Arc<ExperimentService>,
    prompt_versions: RegistryVersions,
    providers: Arc<ProviderRegistry>,
    /// Labels only ROLE_ADMIN may move (`protected_labels`), for `promote_winner`.
    protected_labels: Arc<[String]>,
}

impl ExperimentApi {
    /// An adapter over the experiment service; prompt experiments store their versions
    /// in the registry, and `auto` variants are served the provider selection picks.
    pub fn new(
        experiments: Arc<ExperimentService>,
        prompt_versions: RegistryVersions,
        providers: Arc<ProviderRegistry>,
    ) -> Self {
        Self {
            experiments,
            prompt_versions,
            providers,
            protected_labels: Arc::from([]),
        }
    }

    /// The adapter, with `protected_labels` moved by `promote_winner` only for ROLE_ADMIN.
    pub fn protecting(mut self, protected_labels: Vec<String>) -> Self {
        self.protected_labels = protected_labels.into();
        self
    }

    /// The (prompt, label, version) `promote_winner` moves, checked before anything
    /// changes; `None` without `promote_winner`.
    fn promotion(
        &self,
        request: &pb::CompleteExperimentRequest,
        caller: &llmops_access::Caller,
    ) -> Result<Option<(String, String, String)>, Status> {
        if !request.promote_winner {
            return Ok(None);
        }
        let experiment = self.experiments.get(&request.experiment_id).or_status()?;
        if experiment.serves_prompt.is_empty() {
            return Err(invalid_field(
                "promote_winner",
                "the experiment serves no prompt label: create it with prompt_name and label",
            ));
        }
        if request.winner_variant_id.is_empty() {
            return Err(invalid_field(
                "winner_variant_id",
                "promote_winner needs the winner",
            ));
        }
        let Some(winner) = experiment
            .variants
            .iter()
            .find(|v| v.id == request.winner_variant_id)
        else {
            return Err(invalid_field(
                "winner_variant_id",
                format!(
                    "{:?} is not a variant of experiment {}",
                    request.winner_variant_id, experiment.id
                ),
            ));
        };
        if !matches!(
            experiment.status,
            llmops_experiments::ExperimentStatus::Running
                | llmops_experiments::ExperimentStatus::Paused
        ) {
            return Err(Status::failed_precondition(format!(
                "experiment {} is {}; only a running or paused experiment completes",
                experiment.id,
                experiment.status.as_str()
            )));
        }
        check_label_move(
            &self.protected_labels,
            caller,
            &experiment.serves_label,
            false,
        )?;
        Ok(Some((
            experiment.serves_prompt,
            experiment.serves_label,
            winner.prompt_version.clone(),
        )))
    }
}

fn required_id(id: &str) -> Result<(), Status> {
    if id.is_empty() {
        return Err(invalid_field("experiment_id", "is required"));
    }
    Ok(())
}

#[tonic::async_trait]
impl ExperimentServiceRpc for ExperimentApi {
    async fn create_experiment(
        &self,
        request: Request<pb::CreateExperimentRequest>,
    ) -> Result<Response<pb::CreateExperimentResponse>, Status> {
        let caller = caller_of(&request);
        let Some(experiment) = request.into_inner().experiment else {
            return Err(invalid_field("experiment", "is required"));
        };
        let mut spec = spec_from_pb(experiment, "experiment")?;
        spec.created_by = caller.actor().unwrap_or_default().to_owned();
        let created = self
            .experiments
            .create(spec)
            .await
            .or_status_at("experiment")?;
        let id = created.id.to_string();
        Ok(with_audit_resource(
            Response::new(pb::CreateExperimentResponse {
                experiment: Some(experiment_to_pb(created)),
            }),
            id,
        ))
    }

    async fn get_experiment(
        &self,
        request: Request<pb::GetExperimentRequest>,
    ) -> Result<Response<pb::GetExperimentResponse>, Status> {
        let id = request.into_inner().experiment_id;
        required_id(&id)?;
        let experiment = self.experiments.get(&id).or_status()?;
        Ok(Response::new(pb::GetExperimentResponse {
            experiment: Some(experiment_to_pb(experiment)),
        }))
    }

    async fn list_experiments(
        &self,
        request: Request<pb::ListExperimentsRequest>,
    ) -> Result<Response<pb::ListExperimentsResponse>, Status> {
        let request = request.into_inner();
        if request.page_size < 0 {
            return Err(invalid_field("page_size", "must not be negative"));
        }
        let size = match request.page_size {
            0 => DEFAULT_PAGE_SIZE,
            n => n as usize,
        };
        let (experiments, next_page_token) = self
            .experiments
            .list(status_filter(request.status)?, size, &request.page_token)
            .or_status()?;
        Ok(Response::new(pb::ListExperimentsResponse {
            experiments: experiments.into_iter().map(experiment_to_pb).collect(),
            next_page_token,
        }))
    }

    async fn update_experiment(
        &self,
        request: Request<pb::UpdateExperimentRequest>,
    ) -> Result<Response<pb::UpdateExperimentResponse>, Status> {
        let request = request.into_inner();
        required_id(&request.experiment_id)?;
        let update = update_from_pb(request.experiment.unwrap_or_default(), &request.update_mask)?;
        let updated = self
            .experiments
            .update(&request.experiment_id, update)
            .await
            .or_status_at("experiment")?;
        Ok(Response::new(pb::UpdateExperimentResponse {
            experiment: Some(experiment_to_pb(updated)),
        }))
    }

    async fn start_experiment(
        &self,
        request: Request<pb::StartExperimentRequest>,
    ) -> Result<Response<pb::StartExperimentResponse>, Status> {
        let caller = caller_of(&request);
        let id = request.into_inner().experiment_id;
        required_id(&id)?;
        let experiment = self
            .experiments
            .start(&id, caller.actor().unwrap_or_default())
            .await
            .or_status()?;
        Ok(Response::new(pb::StartExperimentResponse {
            experiment: Some(experiment_to_pb(experiment)),
        }))
    }

    async fn pause_experiment(
        &self,
        request: Request<pb::PauseExperimentRequest>,
    ) -> Result<Response<pb::PauseExperimentResponse>, Status> {
        let caller = caller_of(&request);
        let id = request.into_inner().experiment_id;
        required_id(&id)?;
        let experiment = self
            .experiments
            .pause(&id, caller.actor().unwrap_or_default())
            .await
            .or_status()?;
        Ok(Response::new(pb::PauseExperimentResponse {
            experiment: Some(experiment_to_pb(experiment)),
        }))
    }

    async fn complete_experiment(
        &self,
        request: Request<pb::CompleteExperimentRequest>,
    ) -> Result<Response<pb::CompleteExperimentResponse>, Status> {
        let caller = caller_of(&request);
        let request = request.into_inner();
        required_id(&request.experiment_id)?;
        // The label moves first: a move the gate refuses leaves the experiment as it was.
        if let Some((prompt, label, version)) = self.promotion(&request, &caller)? {
            let actor = format!("experiment/{}", request.experiment_id);
            self.prompt_versions
                .registry()
                .set_label_by(&prompt, &label, &version, None, Some(&actor))
                .await
                .or_status()?;
        }
        let experiment = self
            .experiments
            .complete(
                &request.experiment_id,
                &request.winner_variant_id,
                caller.actor().unwrap_or_default(),
            )
            .await
            .or_status()?;
        Ok(Response::new(pb::CompleteExperimentResponse {
            experiment: Some(experiment_to_pb(experiment)),
        }))
    }

    async fn cancel_experiment(
        &self,
        request: Request<pb::CancelExperimentRequest>,
    ) -> Result<Response<pb::CancelExperimentResponse>, Status> {
        let caller = caller_of(&request);
        let id = request.into_inner().experiment_id;
        required_id(&id)?;
        let experiment = self
            .experiments
            .cancel(&id, caller.actor().unwrap_or_default())
            .await
            .or_status()?;
        Ok(Response::new(pb::CancelExperimentResponse {
            experiment: Some(experiment_to_pb(experiment)),
        }))
    }

    async fn assign_variant(
        &self,
        request: Request<pb::AssignVariantRequest>,
    ) -> Result<Response<pb::AssignVariantResponse>, Status> {
        let request = request.into_inner();
        required_id(&request.experiment_id)?;
        let assignment = self
            .experiments
            .assign(&request.experiment_id, &request.user_id)
            .await
            .or_status()?;
        let mut variant = assignment.variant;
        // The client serves the model it is handed, so `auto` becomes the provider that
        // selection picks now (the hot path pays for this only on `auto` variants).
        if variant.model == AUTO {
            variant.model = self.providers.select(&[]).or_status()?.name;
        }
        Ok(Response::new(pb::AssignVariantResponse {
            in_experiment: assignment.in_experiment,
            variant: Some(variant_to_pb(variant)),
            bucket: assignment.bucket,
        }))
    }

    async fn record_exposures(
        &self,
        request: Request<pb::RecordExposuresRequest>,
    ) -> Result<Response<pb::RecordExposuresResponse>, Status> {
        let request = request.into_inner();
        required_id(&request.experiment_id)?;
        let total = request.exposures.len() as u64;
        let exposures = request
            .exposures
            .into_iter()
            .map(|e| (e.user_id, e.variant_id))
            .collect();
        let recorded = self
            .experiments
            .record_exposures(&request.experiment_id, exposures)
            .await
            .or_status()?;
        Ok(Response::new(pb::RecordExposuresResponse {
            recorded,
            already_exposed: total - recorded,
        }))
    }

    async fn record_metric(
        &self,
        request: Request<pb::RecordMetricRequest>,
    ) -> Result<Response<pb::RecordMetricResponse>, Status> {
        let record = record_from_pb(request.into_inner())?;
        let outcome = self
            .experiments
            .record_metrics(vec![record], RecordNaming::Single)
            .await
            .or_status()?;
        Ok(Response::new(pb::RecordMetricResponse {
            recorded: outcome.accepted == 1,
        }))
    }

    async fn record_metrics(
        &self,
        request: Request<pb::RecordMetricsRequest>,
    ) -> Result<Response<pb::RecordMetricsResponse>, Status> {
        let records = request
            .into_inner()
            .records
            .into_iter()
            .map(record_from_pb)
            .collect::<Result<Vec<_>, _>>()?;
        let outcome = self
            .experiments
            .record_metrics(records, RecordNaming::Batch { first_index: 0 })
            .await
            .or_status()?;
        Ok(Response::new(pb::RecordMetricsResponse {
            recorded: outcome.accepted,
            duplicates: outcome.duplicates,
        }))
    }

    async fn ingest_metrics(
        &self,
        request: Request<Streaming<pb::RecordMetricRequest>>,
    ) -> Result<Response<pb::IngestMetricsResponse>, Status> {
        let experiments = &self.experiments;
        let mut stream = request.into_inner();
        let mut response = pb::IngestMetricsResponse::default();
        let mut chunk = Vec::with_capacity(INGEST_CHUNK);
        let mut first_index = 0;
        loop {
            let next = stream.message().await?;
            let done = next.is_none();
            if let Some(record) = next {
                chunk.push(record_from_pb(record)?);
            }
            if chunk.len() == INGEST_CHUNK || (done && !chunk.is_empty()) {
                let records = std::mem::take(&mut chunk);
                let count = records.len();
                let outcome = experiments
                    .record_metrics(records, RecordNaming::Batch { first_index })
                    .await
                    .map_err(|e| {
                        let status = e.into_status();
                        if response.recorded + response.duplicates > 0 {
                            tracing::info!(
                                recorded = response.recorded,
                                "an ingest stream failed after recording some records"
                            );
                        }
                        status
                    })?;
                first_index += count;
                response.recorded += outcome.accepted;
                response.duplicates += outcome.duplicates;
            }
            if done {
                return Ok(Response::new(response));
            }
        }
    }

    async fn get_experiment_results(
        &self,
        request: Request<pb::GetExperimentResultsRequest>,
    ) -> Result<Response<pb::GetExperimentResultsResponse>, Status> {
        let id = request.into_inner().experiment_id;
        required_id(&id)?;
        let (experiment, results) = self.experiments.results(&id).or_status()?;
        Ok(Response::new(results_to_pb(experiment, results)))
    }

    async fn create_prompt_experiment(
        &self,
        request: Request<pb::CreatePromptExperimentRequest>,
    ) -> Result<Response<pb::CreatePromptExperimentResponse>, Status> {
        let caller = caller_of(&request);
        let request = request.into_inner();
        let serves = match (request.prompt_name.is_empty(), request.label.is_empty()) {
            (true, true) => None,
            (false, false) => Some((request.prompt_name.clone(), request.label.clone())),
            (true, false) => {
                return Err(invalid_field(
                    "prompt_name",
                    "the prompt whose label is served is required with label",
                ))
            }
            (false, true) => {
                return Err(invalid_field(
                    "label",
                    "the label to serve is required with prompt_name",
                ))
            }
        };
        let (Some(control), Some(treatment)) = (request.control, request.treatment) else {
            return Err(invalid_field(
                "control",
                "control and treatment prompt versions are required",
            ));
        };
        let arm = |version: pb::PromptVersion| -> Result<_, Status> {
            let new = new_prompt_version(version)?;
            Ok(PromptArm {
                prompt_name: new.name.clone(),
                version: new.version.clone(),
                new,
            })
        };
        let created = self
            .experiments
            .create_prompt_experiment(
                PromptExperiment {
                    id: request.experiment_id,
                    name: request.name,
                    description: request.description,
                    control: arm(control)?,
                    treatment: arm(treatment)?,
                    treatment_share: request.treatment_share,
                    created_by: caller.actor().unwrap_or_default().to_owned(),
                    serves,
                    metrics: metrics_from_pb(request.metrics)?,
                    auto_complete: request.auto_complete,
                    promote_winner: request.promote_winner,
                },
                &self.prompt_versions,
            )
            .await
            .map_err(|err| match err {
                TemplateError::Experiment(err) => err.into_status(),
                TemplateError::Prompts(err) => err.into_status(),
            })?;
        let id = created.id.to_string();
        Ok(with_audit_resource(
            Response::new(pb::CreatePromptExperimentResponse {
                experiment: Some(experiment_to_pb(created)),
            }),
            id,
        ))
    }

    async fn create_model_experiment(
        &self,
        request: Request<pb::CreateModelExperimentRequest>,
    ) -> Result<Response<pb::CreateModelExperimentResponse>, Status> {
        let caller = caller_of(&request);
        let request = request.into_inner();
        let created = self
            .experiments
            .create_model_experiment(ModelExperiment {
                id: request.experiment_id,
                name: request.name,
                description: request.description,
                models: request.models,
                parameters: request
                    .parameters
                    .map(crate::grpc::convert::json_from_struct)
                    .unwrap_or_default(),
                created_by: caller.actor().unwrap_or_default().to_owned(),
            })
            .await
            .or_status()?;
        let id = created.id.to_string();
        Ok(with_audit_resource(
            Response::new(pb::CreateModelExperimentResponse {
                experiment: Some(experiment_to_pb(created)),
            }),
            id,
        ))
    }
}
