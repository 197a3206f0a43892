//! `llmops.v1.ProviderService` on top of the evaluator's provider health and selection.

use std::sync::Arc;

use llmops_evaluator::providers::registry::ProviderRegistry;
use llmops_evaluator::providers::{ProviderStatus, ScoreSource};
use tonic::{Request, Response, Status};

use crate::grpc::convert::{duration_to_pb, timestamp};
use crate::grpc::status::OrStatus as _;
use crate::pb;
use crate::pb::provider_service_server::ProviderService as ProviderServiceRpc;

/// The ProviderService adapter.
#[derive(Debug, Clone)]
pub struct ProviderApi {
    providers: Arc<ProviderRegistry>,
}

impl ProviderApi {
    /// An adapter over the provider registry.
    pub fn new(providers: Arc<ProviderRegistry>) -> Self {
        Self { providers }
    }
}

fn score_source_to_pb(source: ScoreSource) -> pb::ProviderScoreSource {
    match source {
        ScoreSource::Config => pb::ProviderScoreSource::Config,
        ScoreSource::PassRate => pb::ProviderScoreSource::PassRate,
        ScoreSource::None => pb::ProviderScoreSource::None,
    }
}

pub(crate) fn provider_to_pb(status: ProviderStatus) -> pb::Provider {
    let ProviderStatus {
        name,
        kind,
        model,
        healthy,
        score,
        score_source,
        latency_p50,
        error_rate,
        recent_requests,
        consecutive_failures,
        last_probe_at,
        last_error,
    } = status;
    pb::Provider {
        name,
        kind,
        model,
        healthy,
        score,
        latency_p50: latency_p50.map(duration_to_pb),
        error_rate,
        score_source: score_source_to_pb(score_source).into(),
        recent_requests: u32::try_from(recent_requests).unwrap_or(u32::MAX),
        consecutive_failures,
        last_probe_at: last_probe_at.map(timestamp),
        last_error,
    }
}

#[tonic::async_trait]
impl ProviderServiceRpc for ProviderApi {
    async fn list_providers(
        &self,
        _request: Request<pb::ListProvidersRequest>,
    ) -> Result<Response<pb::ListProvidersResponse>, Status> {
        let providers = self
            .providers
            .statuses()
            .into_iter()
            .map(provider_to_pb)
            .collect();
        Ok(Response::new(pb::ListProvidersResponse { providers }))
    }

    async fn select_provider(
        &self,
        request: Request<pb::SelectProviderRequest>,
    ) -> Result<Response<pb::SelectProviderResponse>, Status> {
        let request = request.into_inner();
        let chosen = self.providers.select(&request.candidates).or_status()?;
        Ok(Response::new(pb::SelectProviderResponse {
            provider: Some(provider_to_pb(chosen)),
        }))
    }
}
