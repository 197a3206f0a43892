//! The scorer: claims queued samples, scores them through the providers (at most
//! `online_max_concurrency` at once), and stores the verdicts in batches.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use llmops_generations::{Generation, GenerationScore, GenerationStatus, JudgeVerdict, UsageKey};
use serde_json::Value;
use tokio::sync::{mpsc, Semaphore};
use tokio_util::sync::CancellationToken;

use super::model::OnlineEvaluation;
use super::service::{minute_of, OnlineEvaluationService};
use super::stats::{MetricTotals, OnlineTotals};
use super::store::{ClaimedSample, CompletedSample};
use crate::providers::QueueClock;
use crate::runs::executor::{score, Scoring};
use crate::runs::metric::MetricScorer;
use crate::runs::SampleResult;

/// How often the scorer looks for samples when nothing woke it (samples queued by
/// other replicas, lapsed claims).
const POLL: Duration = Duration::from_secs(1);
/// Verdicts stored per transaction at most.
const WRITE_BATCH: usize = 500;
/// Samples claimed at once: eight per scoring slot, within these bounds. Claims and
/// stores are transactions on the one writer that generations also need, so local
/// scorers (microseconds each) are limited by how many samples each transaction moves;
/// judges hold their claims a little longer instead (renewed meanwhile).
const CLAIM_PER_SLOT: usize = 8;
const MIN_CLAIM: usize = 64;
const MAX_CLAIM: usize = 512;
/// Samples scored by this process (`outcome`: scored, failed).
pub const ONLINE_SAMPLES_SCORED_TOTAL: &str = "llmops_online_samples_scored_total";

/// What scoring one claimed sample came to.
enum Outcome {
    /// Scored, or failed to score: stored either way.
    Completed(Box<CompletedSample>),
    /// Its evaluation or generation is gone: only removed from the queue.
    Dropped(String, String),
}

/// An evaluation's metrics compiled, with the `updated_at` of the definition they were
/// compiled from (or why they do not compile).
type CompiledScoring = (DateTime<Utc>, Result<Arc<Scoring>, String>);

/// Scores the queued samples of every online evaluation, sharing the queue with the
/// scorers of other replicas.
pub struct OnlineScorer {
    service: Arc<OnlineEvaluationService>,
    /// Compiled metrics per evaluation, with the `updated_at` they were compiled for.
    scorings: Mutex<HashMap<String, CompiledScoring>>,
}

impl OnlineScorer {
    /// A scorer for `service`'s evaluations.
    pub fn new(service: Arc<OnlineEvaluationService>) -> Arc<Self> {
        Arc::new(Self {
            service,
            scorings: Mutex::new(HashMap::new()),
        })
    }

    /// Scores until `stop`, then stores the verdicts already made and returns.
    pub async fn run(self: Arc<Self>, stop: CancellationToken) {
        let settings = self.service.settings.clone();
        let slots = Arc::new(Semaphore::new(settings.max_concurrency.max(1)));
        let (done, outcomes) = mpsc::channel::<Outcome>(settings.max_concurrency.max(1) * 4);
        let writer = tokio::spawn(write(self.service.clone(), outcomes, stop.clone()));
        let renewal = tokio::spawn(renew(self.service.clone(), stop.clone()));
        loop {
            let first = tokio::select! {
                () = stop.cancelled() => break,
                permit = slots.clone().acquire_owned() => match permit {
                    Ok(permit) => permit,
                    Err(_) => break,
                },
            };
            let active: Vec<String> = self
                .service
                .all()
                .iter()
                .filter(|e| !e.paused)
                .map(|e| e.id.clone())
                .collect();
            let claimed = if active.is_empty() {
                Ok(Vec::new())
            } else {
                let now = Utc::now().timestamp_micros();
                let lease = i64::try_from(settings.claim_lease.as_micros()).unwrap_or(i64::MAX);
                self.service
                    .store
                    .claim_online_samples(
                        &active,
                        &settings.worker,
                        now,
                        now.saturating_add(lease),
                        (settings.max_concurrency * CLAIM_PER_SLOT).clamp(MIN_CLAIM, MAX_CLAIM),
                    )
                    .await
            };
            let claimed = match claimed {
                Ok(claimed) => claimed,
                Err(error) => {
                    tracing::warn!(%error, "claiming online samples failed; trying again");
                    Vec::new()
                }
            };
            if claimed.is_empty() {
                drop(first);
                tokio::select! {
                    () = stop.cancelled() => break,
                    () = self.service.queued.notified() => {}
                    () = tokio::time::sleep(POLL) => {}
                }
                continue;
            }
            let mut permit = Some(first);
            for sample in claimed {
                let permit = match permit.take() {
                    Some(permit) => permit,
                    None => match slots.clone().acquire_owned().await {
                        Ok(permit) => permit,
                        Err(_) => break,
                    },
                };
                let (scorer, done) = (self.clone(), done.clone());
                tokio::spawn(async move {
                    let outcome = scorer.score(sample).await;
                    drop(permit);
                    let _ = done.send(outcome).await;
                });
            }
        }
        drop(done);
        let _ = writer.await;
        renewal.abort();
    }

    /// The compiled metrics of `evaluation`, compiled again when it changed.
    fn scoring_of(&self, evaluation: &OnlineEvaluation) -> Result<Arc<Scoring>, String> {
        let mut scorings = self.scorings.lock().expect("scorings lock");
        if let Some((updated_at, scoring)) = scorings.get(&evaluation.id) {
            if *updated_at == evaluation.updated_at {
                return scoring.clone();
            }
        }
        let scoring = self.service.scoring(evaluation).map(Arc::new);
        scorings.insert(
            evaluation.id.clone(),
            (evaluation.updated_at, scoring.clone()),
        );
        scoring
    }

    async fn score(&self, claimed: ClaimedSample) -> Outcome {
        let dropped =
            || Outcome::Dropped(claimed.evaluation_id.clone(), claimed.generation_id.clone());
        let Some(evaluation) = self.service.cached(&claimed.evaluation_id) else {
            return dropped();
        };
        let Some(generation) = &claimed.generation else {
            return dropped();
        };
        let scoring = self.scoring_of(&evaluation);
        let result = judge(scoring, generation).await;
        Outcome::Completed(Box::new(completed(
            &evaluation,
            generation,
            &result,
            Utc::now(),
        )))
    }
}

/// Scores `generation` with every metric: local scorers compare the output with the
/// generation's input (there is no expected output), judges read both.
async fn judge(scoring: Result<Arc<Scoring>, String>, generation: &Generation) -> SampleResult {
    let mut result = SampleResult {
        sample_id: generation.id.clone(),
        position: 0,
        input: Value::String(generation.input.clone()),
        expected_output: String::new(),
        output: generation.output.clone(),
        scores: Default::default(),
        passed: false,
        latency: None,
        error: String::new(),
        failure_reason: String::new(),
        input_tokens: 0,
        output_tokens: 0,
        cost: None,
        judge_scores: Vec::new(),
        panel_spread: Default::default(),
    };
    let scoring = match scoring {
        Ok(scoring) => scoring,
        Err(error) => {
            result.error = error;
            result.failure_reason = "configuration".to_owned();
            return result;
        }
    };
    if generation.status == GenerationStatus::Error {
        result.error = format!("the generation failed: {}", generation.error);
        result.failure_reason = "generation error".to_owned();
        return result;
    }
    for metric in scoring.metrics.iter() {
        if let MetricScorer::Local(scorer) = &metric.scorer {
            let value = scorer.score(&generation.output, &generation.input);
            result.scores.insert(metric.config.name.clone(), value);
        }
    }
    score(
        &scoring,
        &generation.input,
        "",
        &mut result,
        &QueueClock::default(),
    )
    .await;
    result
}

/// The stored verdict and its contribution to the aggregates.
fn completed(
    evaluation: &OnlineEvaluation,
    generation: &Generation,
    result: &SampleResult,
    now: DateTime<Utc>,
) -> CompletedSample {
    let ok = result.error.is_empty();
    let thresholds = evaluation.metric_thresholds();
    let mut totals = OnlineTotals {
        cost: generation.cost.unwrap_or(0.0),
        judge_cost: result.cost.unwrap_or(0.0),
        ..OnlineTotals::default()
    };
    totals.latency.record(generation.latency_ms);
    if ok {
        totals.scored = 1;
        totals.passed = u64::from(result.passed);
        for (name, value) in &result.scores {
            let threshold = thresholds
                .get(name)
                .copied()
                .unwrap_or(crate::runs::DEFAULT_THRESHOLD);
            totals.metrics.insert(
                name.clone(),
                MetricTotals {
                    count: 1,
                    sum: *value,
                    passed: u64::from(*value >= threshold),
                },
            );
        }
    } else {
        totals.failed = 1;
    }
    metrics::counter!(ONLINE_SAMPLES_SCORED_TOTAL, "outcome" => if ok { "scored" } else { "failed" })
        .increment(1);
    CompletedSample {
        evaluation_id: evaluation.id.clone(),
        generation_id: generation.id.clone(),
        minute_us: minute_of(generation),
        key: UsageKey::from_parts([
            &generation.prompt_name,
            &generation.prompt_version,
            &generation.model,
            &generation.experiment_id,
            &generation.variant_id,
            "",
        ]),
        user_id: generation.user_id.clone(),
        time: generation.time(),
        score: GenerationScore {
            online_evaluation_id: evaluation.id.clone(),
            scores: result.scores.clone(),
            passed: ok && result.passed,
            failure_reason: result.failure_reason.clone(),
            error: result.error.clone(),
            judges: result
                .judge_scores
                .iter()
                .map(|j| JudgeVerdict {
                    metric: j.metric.clone(),
                    judge: j.judge.clone(),
                    score: j.score,
                    reasoning: j.reasoning.clone(),
                })
                .collect(),
            judge_cost: result.cost,
            scored_at: Some(now),
        },
        totals,
    }
}

/// Stores verdicts as they come, many per transaction; a failed write is retried (the
/// claims are renewed meanwhile) until it succeeds or the server stops. At `stop` it
/// stores what has arrived and returns: samples still being scored are left to their
/// claims' lapse (another replica, or this one after a restart, scores them again).
async fn write(
    service: Arc<OnlineEvaluationService>,
    mut outcomes: mpsc::Receiver<Outcome>,
    stop: CancellationToken,
) {
    loop {
        let first = tokio::select! {
            biased;
            outcome = outcomes.recv() => match outcome {
                Some(outcome) => outcome,
                None => return,
            },
            () = stop.cancelled() => match outcomes.try_recv() {
                Ok(outcome) => outcome,
                Err(_) => return,
            },
        };
        let mut batch = vec![first];
        while batch.len() < WRITE_BATCH {
            match outcomes.try_recv() {
                Ok(more) => batch.push(more),
                Err(_) => break,
            }
        }
        let mut completed = Vec::new();
        let mut dropped = Vec::new();
        for outcome in batch {
            match outcome {
                Outcome::Completed(sample) => completed.push(*sample),
                Outcome::Dropped(evaluation, generation) => dropped.push((evaluation, generation)),
            }
        }
        if let Some(observer) = &service.observer {
            // Before the verdicts are stored: a crash between loses nothing, and what
            // the observer records is idempotent by generation.
            observer.scored(&completed).await;
        }
        let mut delay = Duration::from_millis(100);
        loop {
            match service
                .store
                .complete_online_samples(&completed, &dropped)
                .await
            {
                Ok(_) => break,
                Err(error) => {
                    tracing::warn!(%error, samples = completed.len(), "storing online scores failed; trying again");
                    if stop.is_cancelled() {
                        break;
                    }
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_secs(5));
                }
            }
        }
    }
}

/// Renews this worker's claims every third of their lease until `stop`.
async fn renew(service: Arc<OnlineEvaluationService>, stop: CancellationToken) {
    let settings = service.settings.clone();
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(settings.claim_lease / 3) => {}
        }
        let until = Utc::now() + settings.claim_lease;
        if let Err(error) = service
            .store
            .renew_online_claims(&settings.worker, until.timestamp_micros())
            .await
        {
            tracing::warn!(%error, "renewing claims on online samples failed");
        }
    }
}
