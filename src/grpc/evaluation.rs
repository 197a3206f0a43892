//! `llmops.v1.EvaluationService` on top of the evaluator crate (datasets so far).

mod messages;

use std::sync::Arc;

use llmops_evaluator::datasets::{DatasetService, MAX_IMPORT_SAMPLES, MAX_SAMPLES_PER_CALL};
use llmops_evaluator::EvaluationError;
use llmops_registry::FieldViolation;
use tonic::{Request, Response, Status, Streaming};

use self::messages::{dataset_to_pb, sample_from_pb, sample_to_pb, spec_from_pb, type_from_pb};
use crate::grpc::status::{invalid_argument, invalid_field};
use crate::grpc::{response_stream, ResponseStream, ServiceState};
use crate::pb;
use crate::pb::evaluation_service_server::EvaluationService as EvaluationServiceRpc;

const DEFAULT_DATASET_PAGE: usize = 50;
const DEFAULT_SAMPLE_PAGE: usize = 100;
/// Samples per ExportSamples message.
const EXPORT_BATCH: usize = 500;

/// The EvaluationService adapter.
#[derive(Debug, Clone)]
pub struct EvaluationApi {
    state: Arc<ServiceState>,
}

impl EvaluationApi {
    /// An adapter over the shared state.
    pub fn new(state: Arc<ServiceState>) -> Self {
        Self { state }
    }

    fn datasets(&self) -> Result<&DatasetService, Status> {
        self.state.datasets()
    }
}

/// The one mapping from evaluation errors to status codes.
pub(crate) fn evaluation_status(err: EvaluationError, field_prefix: &str) -> Status {
    match err {
        EvaluationError::InvalidArgument(violations) => invalid_argument(
            violations
                .into_iter()
                .map(|v| FieldViolation::new(v.field, v.description))
                .collect(),
            field_prefix,
        ),
        EvaluationError::NotFound(message) => Status::not_found(message),
        EvaluationError::AlreadyExists(message) => Status::already_exists(message),
        EvaluationError::Storage(message) => Status::unavailable(message),
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
            .datasets()?
            .create(spec_from_pb(dataset)?)
            .await
            .map_err(|e| evaluation_status(e, "dataset"))?;
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
        let dataset = self
            .datasets()?
            .get(&id)
            .map_err(|e| evaluation_status(e, ""))?;
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
            .datasets()?
            .list(
                type_from_pb(request.r#type, "type")?,
                page_size(request.page_size, DEFAULT_DATASET_PAGE)?,
                &request.page_token,
            )
            .map_err(|e| evaluation_status(e, ""))?;
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
        self.datasets()?
            .delete(&id)
            .await
            .map_err(|e| evaluation_status(e, ""))?;
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
            .datasets()?
            .add_samples(&request.dataset_id, samples, MAX_SAMPLES_PER_CALL)
            .await
            .map_err(|e| evaluation_status(e, ""))?;
        Ok(Response::new(pb::AddSamplesResponse {
            dataset: Some(dataset_to_pb(dataset)),
            sample_ids,
        }))
    }

    async fn import_samples(
        &self,
        request: Request<Streaming<pb::ImportSamplesRequest>>,
    ) -> Result<Response<pb::ImportSamplesResponse>, Status> {
        let datasets = self.datasets()?;
        let mut stream = request.into_inner();
        let mut dataset_id: Option<String> = None;
        let mut samples = Vec::new();
        while let Some(batch) = stream.message().await? {
            match &dataset_id {
                None => {
                    required("dataset_id", &batch.dataset_id)?;
                    // Fail fast on an unknown dataset rather than after the whole stream.
                    datasets
                        .get(&batch.dataset_id)
                        .map_err(|e| evaluation_status(e, ""))?;
                    dataset_id = Some(batch.dataset_id);
                }
                Some(id) if *id != batch.dataset_id && !batch.dataset_id.is_empty() => {
                    return Err(invalid_field(
                        "dataset_id",
                        format!(
                            "every batch of a stream must name dataset {id:?}, not {:?}",
                            batch.dataset_id
                        ),
                    ));
                }
                Some(_) => {}
            }
            if samples.len() + batch.samples.len() > MAX_IMPORT_SAMPLES {
                return Err(invalid_field(
                    "samples",
                    format!("one import holds at most {MAX_IMPORT_SAMPLES} samples; split it into several imports"),
                ));
            }
            samples.extend(batch.samples.into_iter().map(sample_from_pb));
        }
        let Some(dataset_id) = dataset_id else {
            return Err(invalid_field("samples", "the stream carried no batch"));
        };
        let imported = samples.len() as u64;
        let (dataset, _) = datasets
            .add_samples(&dataset_id, samples, MAX_IMPORT_SAMPLES)
            .await
            .map_err(|e| evaluation_status(e, ""))?;
        Ok(Response::new(pb::ImportSamplesResponse {
            dataset: Some(dataset_to_pb(dataset)),
            imported,
        }))
    }

    async fn list_samples(
        &self,
        request: Request<pb::ListSamplesRequest>,
    ) -> Result<Response<pb::ListSamplesResponse>, Status> {
        let request = request.into_inner();
        required("dataset_id", &request.dataset_id)?;
        let page = self
            .datasets()?
            .list_samples(
                &request.dataset_id,
                page_size(request.page_size, DEFAULT_SAMPLE_PAGE)?,
                &request.page_token,
            )
            .await
            .map_err(|e| evaluation_status(e, ""))?;
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
        let current = self
            .datasets()?
            .get(&request.dataset_id)
            .map_err(|e| evaluation_status(e, ""))?;
        let version = if request.version == 0 {
            current.version
        } else {
            request.version
        };
        let first = self
            .datasets()?
            .export_page(&request.dataset_id, version, 0, EXPORT_BATCH)
            .await
            .map_err(|e| evaluation_status(e, ""))?;
        let state = self.state.clone();
        let dataset_id = request.dataset_id;
        let stream = response_stream(
            self.state.shutdown(),
            (Some(first), 0i64),
            move |(pending, after)| {
                let state = state.clone();
                let dataset_id = dataset_id.clone();
                async move {
                    let page = match pending {
                        Some(page) => page,
                        None => match state.datasets() {
                            Ok(datasets) => match datasets
                                .export_page(&dataset_id, version, after, EXPORT_BATCH)
                                .await
                            {
                                Ok(page) => page,
                                Err(err) => {
                                    return Some((Err(evaluation_status(err, "")), (None, after)))
                                }
                            },
                            Err(status) => return Some((Err(status), (None, after))),
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
            .datasets()?
            .delete_samples(&request.dataset_id, request.sample_ids)
            .await
            .map_err(|e| evaluation_status(e, ""))?;
        Ok(Response::new(pb::DeleteSamplesResponse {
            dataset: Some(dataset_to_pb(dataset)),
        }))
    }
}
