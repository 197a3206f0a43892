//! `llmops.v1.GenerationService` on top of the generation service.

use std::sync::Arc;

use llmops_generations::{
    Generation, GenerationQuery, GenerationScore, GenerationService, GenerationStatus, RenderRef,
    UsageBucket, UsageDimension, UsageGroup, UsageQuery,
};
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status, Streaming};

use crate::grpc::convert::{time_from_timestamp, timestamp};
use crate::grpc::status::{invalid_field, OrStatus as _};
use crate::grpc::{response_stream, ResponseStream};
use crate::pb;
use crate::pb::generation_service_server::GenerationService as GenerationServiceRpc;

/// The GenerationService adapter.
#[derive(Debug, Clone)]
pub struct GenerationApi {
    generations: Arc<GenerationService>,
    shutdown: CancellationToken,
}

impl GenerationApi {
    /// An adapter over the generation service; tails end at `shutdown`.
    pub fn new(generations: Arc<GenerationService>, shutdown: CancellationToken) -> Self {
        Self {
            generations,
            shutdown,
        }
    }
}

/// The domain batch of a request's generations, fields named under `at`.
fn batch_from_pb(generations: Vec<pb::Generation>, at: &str) -> Result<Vec<Generation>, Status> {
    generations
        .into_iter()
        .enumerate()
        .map(|(i, g)| generation_from_pb(g, &format!("{at}generations[{i}]")))
        .collect()
}

/// The query of a list request's filters (its page fields aside).
fn query_from_pb(request: pb::ListGenerationsRequest) -> Result<GenerationQuery, Status> {
    let time = |field: &str, stamp: Option<prost_types::Timestamp>| match stamp {
        None => Ok(None),
        Some(stamp) => time_from_timestamp(&stamp)
            .map(Some)
            .ok_or_else(|| invalid_field(field, "not a valid time")),
    };
    let status = match pb::GenerationStatus::try_from(request.status) {
        Ok(pb::GenerationStatus::Unspecified) => None,
        Ok(pb::GenerationStatus::Ok) => Some(GenerationStatus::Ok),
        Ok(pb::GenerationStatus::Error) => Some(GenerationStatus::Error),
        Err(_) => return Err(invalid_field("status", "not a GenerationStatus")),
    };
    Ok(GenerationQuery {
        prompt_name: non_empty(request.prompt_name),
        prompt_version: non_empty(request.prompt_version),
        model: non_empty(request.model),
        experiment_id: non_empty(request.experiment_id),
        variant_id: non_empty(request.variant_id),
        user_id: non_empty(request.user_id),
        status,
        since: time("since", request.since)?,
        until: time("until", request.until)?,
        before: None,
        limit: request.page_size as usize,
    })
}

/// The usage query of a GetUsage request (`since` 24 hours before `until`, `until` now,
/// when unset).
fn usage_query_from_pb(
    request: pb::GetUsageRequest,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<UsageQuery, Status> {
    let time = |field: &str, stamp: &prost_types::Timestamp| {
        time_from_timestamp(stamp).ok_or_else(|| invalid_field(field, "not a valid time"))
    };
    let until = match &request.until {
        Some(until) => time("until", until)?,
        None => now,
    };
    let since = match &request.since {
        Some(since) => time("since", since)?,
        None => until
            .checked_sub_signed(chrono::Duration::hours(24))
            .ok_or_else(|| invalid_field("until", "too early to default since to a day before"))?,
    };
    let group_by = dimensions_from_pb(&request.group_by)?;
    let bucket = match pb::UsageBucket::try_from(request.bucket) {
        Ok(pb::UsageBucket::Unspecified | pb::UsageBucket::Hour) => UsageBucket::Hour,
        Ok(pb::UsageBucket::Day) => UsageBucket::Day,
        Err(_) => return Err(invalid_field("bucket", "not a UsageBucket (HOUR, DAY)")),
    };
    Ok(UsageQuery {
        group_by,
        since,
        until,
        bucket,
        prompt_name: non_empty(request.prompt_name),
        model: non_empty(request.model),
        experiment_id: non_empty(request.experiment_id),
    })
}

fn usage_row_to_pb(group: UsageGroup) -> pb::UsageRow {
    let totals = group.totals;
    pb::UsageRow {
        bucket_start: Some(timestamp(group.bucket_start)),
        prompt_name: group.key.prompt_name,
        prompt_version: group.key.prompt_version,
        model: group.key.model,
        user_id: group.key.user_id,
        experiment_id: group.key.experiment_id,
        variant_id: group.key.variant_id,
        count: totals.count,
        errors: totals.errors,
        input_tokens: totals.input_tokens,
        output_tokens: totals.output_tokens,
        cost: totals.cost,
        latency_p50_ms: totals.latency.quantile_ms(0.50),
        latency_p95_ms: totals.latency.quantile_ms(0.95),
        latency_p99_ms: totals.latency.quantile_ms(0.99),
    }
}

fn status_from_pb(status: i32, error: &str) -> GenerationStatus {
    match pb::GenerationStatus::try_from(status) {
        Ok(pb::GenerationStatus::Error) => GenerationStatus::Error,
        Ok(pb::GenerationStatus::Ok) => GenerationStatus::Ok,
        _ if !error.is_empty() => GenerationStatus::Error,
        _ => GenerationStatus::Ok,
    }
}

fn status_to_pb(status: GenerationStatus) -> pb::GenerationStatus {
    match status {
        GenerationStatus::Ok => pb::GenerationStatus::Ok,
        GenerationStatus::Error => pb::GenerationStatus::Error,
    }
}

/// The domain generation of `g`; a bad time is INVALID_ARGUMENT at `at.<field>`.
pub(crate) fn generation_from_pb(mut g: pb::Generation, at: &str) -> Result<Generation, Status> {
    // A render's token fills in what the client left out.
    if !g.render_id.is_empty() {
        let render = RenderRef::decode(&g.render_id).ok_or_else(|| {
            invalid_field(
                &format!("{at}.render_id"),
                "not a render_id RenderPrompt or GetPromptVersion returned",
            )
        })?;
        for (field, value) in [
            (&mut g.prompt_name, render.prompt_name),
            (&mut g.prompt_version, render.prompt_version),
            (&mut g.experiment_id, render.experiment_id),
            (&mut g.variant_id, render.variant_id),
        ] {
            if field.is_empty() {
                *field = value;
            }
        }
    }
    let time = |field: &str, stamp: Option<prost_types::Timestamp>| match stamp {
        None => Ok(None),
        Some(stamp) => time_from_timestamp(&stamp)
            .map(Some)
            .ok_or_else(|| invalid_field(&format!("{at}.{field}"), "not a valid time")),
    };
    Ok(Generation {
        status: status_from_pb(g.status, &g.error),
        start_time: time("start_time", g.start_time)?,
        end_time: time("end_time", g.end_time)?,
        id: g.id,
        render_id: g.render_id,
        prompt_name: g.prompt_name,
        prompt_version: g.prompt_version,
        experiment_id: g.experiment_id,
        variant_id: g.variant_id,
        user_id: g.user_id,
        model: g.model,
        provider: g.provider,
        input: g.input,
        output: g.output,
        // Set by the server, never by the client.
        input_truncated: false,
        output_truncated: false,
        error: g.error,
        latency_ms: g.latency_ms,
        time_to_first_token_ms: g.time_to_first_token_ms,
        input_tokens: g.input_tokens,
        output_tokens: g.output_tokens,
        cost: g.cost,
        metadata: g.metadata,
        logged_at: None,
        scores: Vec::new(),
    })
}

/// `group_by` of GetUsage and GetOnlineEvaluationStats: each dimension once, in the
/// order given.
pub(crate) fn dimensions_from_pb(values: &[i32]) -> Result<Vec<UsageDimension>, Status> {
    let mut group_by = Vec::new();
    for (i, dimension) in values.iter().enumerate() {
        let dimension = match pb::UsageDimension::try_from(*dimension) {
            Ok(pb::UsageDimension::Prompt) => UsageDimension::Prompt,
            Ok(pb::UsageDimension::PromptVersion) => UsageDimension::PromptVersion,
            Ok(pb::UsageDimension::Model) => UsageDimension::Model,
            Ok(pb::UsageDimension::User) => UsageDimension::User,
            Ok(pb::UsageDimension::ExperimentVariant) => UsageDimension::ExperimentVariant,
            Ok(pb::UsageDimension::Unspecified) | Err(_) => {
                return Err(invalid_field(
                    &format!("group_by[{i}]"),
                    "not a UsageDimension (PROMPT, PROMPT_VERSION, MODEL, USER, \
                     EXPERIMENT_VARIANT)",
                ))
            }
        };
        if !group_by.contains(&dimension) {
            group_by.push(dimension);
        }
    }
    Ok(group_by)
}

fn generation_to_pb(g: Generation) -> pb::Generation {
    pb::Generation {
        status: status_to_pb(g.status).into(),
        start_time: g.start_time.map(timestamp),
        end_time: g.end_time.map(timestamp),
        logged_at: g.logged_at.map(timestamp),
        id: g.id,
        render_id: g.render_id,
        prompt_name: g.prompt_name,
        prompt_version: g.prompt_version,
        experiment_id: g.experiment_id,
        variant_id: g.variant_id,
        user_id: g.user_id,
        model: g.model,
        provider: g.provider,
        input: g.input,
        output: g.output,
        input_truncated: g.input_truncated,
        output_truncated: g.output_truncated,
        error: g.error,
        latency_ms: g.latency_ms,
        time_to_first_token_ms: g.time_to_first_token_ms,
        input_tokens: g.input_tokens,
        output_tokens: g.output_tokens,
        cost: g.cost,
        metadata: g.metadata,
        scores: g.scores.into_iter().map(score_to_pb).collect(),
    }
}

fn score_to_pb(score: GenerationScore) -> pb::GenerationScore {
    pb::GenerationScore {
        online_evaluation_id: score.online_evaluation_id,
        scores: score.scores.into_iter().collect(),
        passed: score.passed,
        failure_reason: score.failure_reason,
        error: score.error,
        judges: score
            .judges
            .into_iter()
            .map(|j| pb::JudgeVerdict {
                metric: j.metric,
                judge: j.judge,
                score: j.score,
                reasoning: j.reasoning,
            })
            .collect(),
        scored_at: score.scored_at.map(timestamp),
        judge_cost: score.judge_cost,
    }
}

/// A page token: the last generation's start (microseconds) and id.
fn page_token((time, id): &(chrono::DateTime<chrono::Utc>, String)) -> String {
    format!("{}.{id}", time.timestamp_micros())
}

fn parse_page_token(token: &str) -> Result<(chrono::DateTime<chrono::Utc>, String), Status> {
    let bad = || invalid_field("page_token", "not a token this listing gave");
    let (micros, id) = token.split_once('.').ok_or_else(bad)?;
    let time = micros
        .parse::<i64>()
        .ok()
        .and_then(chrono::DateTime::from_timestamp_micros)
        .ok_or_else(bad)?;
    Ok((time, id.to_owned()))
}

fn non_empty(text: String) -> Option<String> {
    (!text.is_empty()).then_some(text)
}

#[tonic::async_trait]
impl GenerationServiceRpc for GenerationApi {
    async fn log_generations(
        &self,
        request: Request<pb::LogGenerationsRequest>,
    ) -> Result<Response<pb::LogGenerationsResponse>, Status> {
        let batch = batch_from_pb(request.into_inner().generations, "")?;
        let logged = self
            .generations
            .log(batch, chrono::Utc::now())
            .await
            .or_status()?;
        Ok(Response::new(pb::LogGenerationsResponse {
            ids: logged.ids,
            accepted: logged.accepted,
            duplicates: logged.duplicates,
        }))
    }

    async fn get_generation(
        &self,
        request: Request<pb::GetGenerationRequest>,
    ) -> Result<Response<pb::GetGenerationResponse>, Status> {
        let id = request.into_inner().generation_id;
        if id.is_empty() {
            return Err(invalid_field("generation_id", "required"));
        }
        let generation = self.generations.get(&id).await.or_status()?;
        Ok(Response::new(pb::GetGenerationResponse {
            generation: Some(generation_to_pb(generation)),
        }))
    }

    async fn list_generations(
        &self,
        request: Request<pb::ListGenerationsRequest>,
    ) -> Result<Response<pb::ListGenerationsResponse>, Status> {
        let request = request.into_inner();
        let before = match request.page_token.as_str() {
            "" => None,
            token => Some(parse_page_token(token)?),
        };
        let query = GenerationQuery {
            before,
            ..query_from_pb(request)?
        };
        let page = self.generations.list(query).await.or_status()?;
        Ok(Response::new(pb::ListGenerationsResponse {
            next_page_token: page.next.as_ref().map(page_token).unwrap_or_default(),
            generations: page.generations.into_iter().map(generation_to_pb).collect(),
        }))
    }

    async fn get_usage(
        &self,
        request: Request<pb::GetUsageRequest>,
    ) -> Result<Response<pb::GetUsageResponse>, Status> {
        let query = usage_query_from_pb(request.into_inner(), chrono::Utc::now())?;
        let range = query.filter().or_status()?;
        let groups = self.generations.usage(&query).await.or_status()?;
        Ok(Response::new(pb::GetUsageResponse {
            rows: groups.into_iter().map(usage_row_to_pb).collect(),
            since: Some(timestamp(range.since)),
            until: Some(timestamp(range.until)),
        }))
    }

    async fn ingest_generations(
        &self,
        request: Request<Streaming<pb::IngestGenerationsRequest>>,
    ) -> Result<Response<pb::IngestGenerationsResponse>, Status> {
        let mut stream = request.into_inner();
        let mut totals = pb::IngestGenerationsResponse::default();
        // One batch in memory at a time: each is durable before the next is read.
        while let Some(message) = stream.message().await? {
            let at = format!("batches[{}].", totals.batches);
            let batch = batch_from_pb(message.generations, &at)?;
            let logged = self
                .generations
                .log(batch, chrono::Utc::now())
                .await
                .or_status_at(&format!("batches[{}]", totals.batches))?;
            totals.accepted += logged.accepted;
            totals.duplicates += logged.duplicates;
            totals.batches += 1;
        }
        Ok(Response::new(totals))
    }

    type TailGenerationsStream = ResponseStream<pb::TailGenerationsResponse>;

    async fn tail_generations(
        &self,
        request: Request<pb::TailGenerationsRequest>,
    ) -> Result<Response<Self::TailGenerationsStream>, Status> {
        let filter = request.into_inner().filter.unwrap_or_default();
        let query = query_from_pb(filter)?;
        let stored = self.generations.tail();
        let stream = response_stream(&self.shutdown, stored, move |mut stored| {
            let query = query.clone();
            async move {
                loop {
                    match stored.recv().await {
                        Ok(generation) if query.matches(&generation) => {
                            let item = pb::TailGenerationsResponse {
                                generation: Some(generation_to_pb(Generation::clone(&generation))),
                            };
                            return Some((Ok(item), stored));
                        }
                        Ok(_) => {}
                        Err(broadcast::error::RecvError::Lagged(missed)) => {
                            let status = Status::resource_exhausted(format!(
                                "the tail fell {missed} generations behind; open a new one"
                            ));
                            return Some((Err(status), stored));
                        }
                        Err(broadcast::error::RecvError::Closed) => return None,
                    }
                }
            }
        });
        Ok(Response::new(stream))
    }
}
