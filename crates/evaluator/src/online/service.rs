//! Online evaluations: their definitions (kept in memory, written through), which
//! generations they sample, and their statistics.

use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use chrono::{DateTime, Utc};
use llmops_generations::{Generation, GenerationSampler, QueuedSample};
use llmops_registry::{Registry, VersionSelector};
use tokio::sync::Notify;

use super::model::{OnlineEvaluation, OnlineThresholds};
use super::sampling::sampled;
use super::stats::{
    group_online, OnlineAggregateRow, OnlineGroup, OnlineStatsQuery, OnlineTotals, MINUTE_US,
};
use super::store::{CompletedSample, OnlineStore};
use super::validate::{check_evaluation, check_sample_rate, check_thresholds};
use crate::paging::newest_first;
use crate::providers::registry::ProviderRegistry;
use crate::runs::executor::Scoring;
use crate::runs::metric::compile_metric;
use crate::{EvaluationError, FieldViolation, StoreError};

/// Per-minute aggregates one stats query reads at most.
const MAX_AGGREGATES_READ: usize = 200_000;
/// Online evaluations listed per page: the default and the most.
const DEFAULT_PAGE: usize = 100;
const MAX_PAGE: usize = 1000;

/// Which experiment serves a prompt's label now (the experiments service knows).
pub trait ServingExperiments: Send + Sync + 'static {
    /// The id of the running experiment serving `label` of `prompt`, if any.
    fn serving(&self, prompt: &str, label: &str) -> Option<String>;
}

/// What learns of each verdict (experiments record the metrics they take from online
/// scores). Called before the verdicts are stored; a sample scored again after a crash
/// is passed again, so what it does must be idempotent by generation.
#[async_trait::async_trait]
pub trait OnlineScoreObserver: Send + Sync + 'static {
    /// `samples` were scored now.
    async fn scored(&self, samples: &[CompletedSample]);
}

/// How online evaluation runs on this server.
#[derive(Debug, Clone)]
pub struct OnlineSettings {
    /// Samples waiting for scoring at most (`online_queue_limit`).
    pub queue_limit: u64,
    /// Samples scored at once at most (`online_max_concurrency`).
    pub max_concurrency: usize,
    /// Whether `panel` metrics are allowed (`[evaluation] panel_evaluation`).
    pub panel_evaluation: bool,
    /// This process's name in claims.
    pub worker: String,
    /// How long a claim on a sample lasts unless renewed.
    pub claim_lease: Duration,
}

/// What `UpdateOnlineEvaluation` may change; unset fields stay.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct OnlineUpdate {
    /// A new share of generations to sample.
    pub sample_rate: Option<f64>,
    /// New bounds (replacing all of them).
    pub thresholds: Option<OnlineThresholds>,
    /// Pause (true) or resume (false).
    pub paused: Option<bool>,
    /// A new window.
    pub window: Option<Duration>,
    /// A new minimum of scored samples per window.
    pub min_samples: Option<u64>,
}

/// The online evaluations of this deployment.
pub struct OnlineEvaluationService {
    pub(super) store: Arc<dyn OnlineStore>,
    pub(super) registry: Arc<Registry>,
    pub(super) providers: Arc<ProviderRegistry>,
    serving: Arc<dyn ServingExperiments>,
    pub(super) observer: Option<Arc<dyn OnlineScoreObserver>>,
    pub(super) settings: OnlineSettings,
    evaluations: RwLock<BTreeMap<String, Arc<OnlineEvaluation>>>,
    /// Serialises definition changes with their cache updates.
    changes: tokio::sync::Mutex<()>,
    /// Woken when samples may have been queued, so the scorer need not poll.
    pub(super) queued: Notify,
}

impl std::fmt::Debug for OnlineEvaluationService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OnlineEvaluationService")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

impl OnlineEvaluationService {
    /// Loads the stored online evaluations.
    pub async fn open(
        store: Arc<dyn OnlineStore>,
        registry: Arc<Registry>,
        providers: Arc<ProviderRegistry>,
        serving: Arc<dyn ServingExperiments>,
        observer: Option<Arc<dyn OnlineScoreObserver>>,
        settings: OnlineSettings,
    ) -> Result<Self, EvaluationError> {
        let stored = store.load_online_evaluations().await?;
        let evaluations = stored
            .into_iter()
            .map(|e| (e.id.clone(), Arc::new(e)))
            .collect();
        Ok(Self {
            store,
            registry,
            providers,
            serving,
            observer,
            settings,
            evaluations: RwLock::new(evaluations),
            changes: tokio::sync::Mutex::new(()),
            queued: Notify::new(),
        })
    }

    /// This server's settings.
    pub fn settings(&self) -> &OnlineSettings {
        &self.settings
    }

    /// Checks and stores a new online evaluation (`id` generated when empty).
    pub async fn create(
        &self,
        mut evaluation: OnlineEvaluation,
        now: DateTime<Utc>,
    ) -> Result<OnlineEvaluation, EvaluationError> {
        if evaluation.id.is_empty() {
            evaluation.id = uuid::Uuid::now_v7().to_string();
        }
        if evaluation.name.is_empty() {
            evaluation.name = format!("{} online", evaluation.filter.prompt_name);
        }
        evaluation.created_at = now;
        evaluation.updated_at = now;
        let mut violations = check_evaluation(&evaluation);
        if violations.is_empty() {
            violations.extend(self.check_references(&evaluation));
        }
        if !violations.is_empty() {
            return Err(EvaluationError::InvalidArgument(violations));
        }
        if !self.settings.panel_evaluation {
            if let Some(index) = evaluation.metrics.iter().position(|m| m.scorer == "panel") {
                return Err(EvaluationError::FailedPrecondition(format!(
                    "metrics[{index}]: panel evaluation is turned off on this server ([evaluation] panel_evaluation = false)"
                )));
            }
        }
        let _change = self.changes.lock().await;
        self.store
            .insert_online_evaluation(&evaluation)
            .await
            .map_err(|err| match err {
                StoreError::Duplicate(_) => EvaluationError::AlreadyExists(format!(
                    "online evaluation {:?} already exists",
                    evaluation.id
                )),
                other => other.into(),
            })?;
        self.cache(evaluation.clone());
        Ok(evaluation)
    }

    /// What needs the registry and the providers: the prompt exists, and each metric
    /// compiles (judges name configured providers).
    fn check_references(&self, evaluation: &OnlineEvaluation) -> Vec<FieldViolation> {
        let mut violations = Vec::new();
        let filter = &evaluation.filter;
        let found = if filter.prompt_version.is_empty() {
            self.registry
                .latest_version(&filter.prompt_name)
                .map(|_| ())
                .map_err(|err| ("filter.prompt_name", err))
        } else {
            let exact = VersionSelector::Version(filter.prompt_version.clone());
            self.registry
                .get_version(&filter.prompt_name, &exact)
                .map(|_| ())
                .map_err(|err| ("filter.prompt_version", err))
        };
        if let Err((field, err)) = found {
            violations.push(FieldViolation::new(field, err.to_string()));
        }
        for (index, metric) in evaluation.metrics.iter().enumerate() {
            if let Err(violation) =
                compile_metric(metric, index, self.providers.providers(), &self.registry)
            {
                violations.push(violation);
            }
        }
        violations
    }

    /// One online evaluation.
    pub fn get(&self, id: &str) -> Result<OnlineEvaluation, EvaluationError> {
        self.evaluations
            .read()
            .expect("online evaluations lock")
            .get(id)
            .map(|e| (**e).clone())
            .ok_or_else(|| {
                EvaluationError::NotFound(format!("online evaluation {id:?} does not exist"))
            })
    }

    /// A page of online evaluations, newest first, and the next page's token.
    pub fn list(
        &self,
        page_size: usize,
        page_token: &str,
    ) -> Result<(Vec<OnlineEvaluation>, String), EvaluationError> {
        let all: Vec<OnlineEvaluation> = self
            .evaluations
            .read()
            .expect("online evaluations lock")
            .values()
            .map(|e| (**e).clone())
            .collect();
        let size = if page_size == 0 {
            DEFAULT_PAGE
        } else {
            page_size
        };
        newest_first(
            all,
            |e| (e.created_at.timestamp_micros(), e.id.clone()),
            size,
            page_token,
            MAX_PAGE,
        )
    }

    /// Changes what `update` sets.
    pub async fn update(
        &self,
        id: &str,
        update: OnlineUpdate,
        now: DateTime<Utc>,
    ) -> Result<OnlineEvaluation, EvaluationError> {
        let _change = self.changes.lock().await;
        let mut evaluation = self.store.get_online_evaluation(id).await?.ok_or_else(|| {
            EvaluationError::NotFound(format!("online evaluation {id:?} does not exist"))
        })?;
        let mut violations = Vec::new();
        let mut bad =
            |field: &str, message: String| violations.push(FieldViolation::new(field, message));
        if let Some(rate) = update.sample_rate {
            check_sample_rate(rate, &mut bad);
            evaluation.sample_rate = rate;
        }
        if let Some(thresholds) = update.thresholds {
            let names: HashSet<&str> = evaluation.metrics.iter().map(|m| m.name.as_str()).collect();
            check_thresholds(&thresholds, &names, &mut bad);
            evaluation.thresholds = thresholds;
        }
        if let Some(window) = update.window {
            evaluation.window = window;
        }
        if let Some(min_samples) = update.min_samples {
            evaluation.min_samples = min_samples;
        }
        if let Some(paused) = update.paused {
            evaluation.paused = paused;
        }
        if violations.is_empty() {
            // Window and min_samples are checked with the rest of the record.
            violations.extend(
                check_evaluation(&evaluation)
                    .into_iter()
                    .filter(|v| v.field == "window" || v.field == "min_samples"),
            );
        }
        if !violations.is_empty() {
            return Err(EvaluationError::InvalidArgument(violations));
        }
        evaluation.updated_at = now;
        self.store.update_online_evaluation(&evaluation).await?;
        self.cache(evaluation.clone());
        if !evaluation.paused {
            self.queued.notify_one();
        }
        Ok(evaluation)
    }

    /// Deletes an online evaluation with its queue, scores and statistics.
    pub async fn delete(&self, id: &str) -> Result<(), EvaluationError> {
        let _change = self.changes.lock().await;
        if !self.store.delete_online_evaluation(id).await? {
            return Err(EvaluationError::NotFound(format!(
                "online evaluation {id:?} does not exist"
            )));
        }
        self.evaluations
            .write()
            .expect("online evaluations lock")
            .remove(id);
        Ok(())
    }

    /// Reloads one online evaluation from storage (another process changed it).
    pub async fn refresh(&self, id: &str) -> Result<(), EvaluationError> {
        let _change = self.changes.lock().await;
        match self.store.get_online_evaluation(id).await? {
            Some(evaluation) => self.cache(evaluation),
            None => {
                self.evaluations
                    .write()
                    .expect("online evaluations lock")
                    .remove(id);
            }
        }
        self.queued.notify_one();
        Ok(())
    }

    /// Reloads every online evaluation.
    pub async fn reload(&self) -> Result<(), EvaluationError> {
        let _change = self.changes.lock().await;
        let stored = self.store.load_online_evaluations().await?;
        *self.evaluations.write().expect("online evaluations lock") = stored
            .into_iter()
            .map(|e| (e.id.clone(), Arc::new(e)))
            .collect();
        Ok(())
    }

    fn cache(&self, evaluation: OnlineEvaluation) {
        self.evaluations
            .write()
            .expect("online evaluations lock")
            .insert(evaluation.id.clone(), Arc::new(evaluation));
    }

    /// Every online evaluation, as cached.
    pub fn all(&self) -> Vec<Arc<OnlineEvaluation>> {
        self.evaluations
            .read()
            .expect("online evaluations lock")
            .values()
            .cloned()
            .collect()
    }

    /// The evaluation `id` as cached, if it exists.
    pub(super) fn cached(&self, id: &str) -> Option<Arc<OnlineEvaluation>> {
        self.evaluations
            .read()
            .expect("online evaluations lock")
            .get(id)
            .cloned()
    }

    /// How `evaluation` scores a sample, its metrics compiled against this server's
    /// providers and registry now.
    pub(super) fn scoring(&self, evaluation: &OnlineEvaluation) -> Result<Scoring, String> {
        let metrics = evaluation
            .metrics
            .iter()
            .enumerate()
            .map(|(index, metric)| {
                compile_metric(metric, index, self.providers.providers(), &self.registry)
            })
            .collect::<Result<Vec<_>, _>>()
            .map_err(|violation| {
                format!("the metrics no longer work with this server's configuration: {violation}")
            })?;
        Ok(Scoring {
            registry: self.registry.clone(),
            providers: self.providers.providers().clone(),
            metrics: Arc::new(metrics),
            thresholds: Arc::new(evaluation.metric_thresholds()),
            keep_reasoning: true,
        })
    }

    /// Statistics of an online evaluation by group and bucket; samples still queued count
    /// as sampled.
    pub async fn stats(
        &self,
        query: &OnlineStatsQuery,
    ) -> Result<Vec<OnlineGroup>, EvaluationError> {
        self.get(&query.evaluation_id)?;
        let (since, until) = query.range()?;
        // Bounded however wide the range and however many versions and variants: a
        // minute per attribution adds up (a month of one is 44,640 rows).
        let mut rows = self
            .store
            .online_aggregates(&query.evaluation_id, since, until, MAX_AGGREGATES_READ + 1)
            .await?;
        if rows.len() > MAX_AGGREGATES_READ {
            return Err(EvaluationError::invalid(
                "since",
                format!(
                    "the range holds more than {MAX_AGGREGATES_READ} per-minute aggregates; narrow it"
                ),
            ));
        }
        let queued = self
            .store
            .queued_online_samples(&query.evaluation_id, since, until)
            .await?;
        rows.extend(
            queued
                .into_iter()
                .map(|(minute_us, key)| OnlineAggregateRow {
                    minute_us,
                    key,
                    totals: OnlineTotals {
                        queued: 1,
                        ..OnlineTotals::default()
                    },
                }),
        );
        group_online(query, rows)
    }

    /// Samples waiting for scoring.
    pub async fn queue_depth(&self) -> Result<u64, EvaluationError> {
        Ok(self.store.online_queue_depth().await?)
    }
}

/// What one evaluation's filter resolves to for a batch.
struct Resolved<'a> {
    evaluation: &'a OnlineEvaluation,
    /// The version the label points to now.
    label_version: Option<String>,
    /// The experiment serving the label now.
    serving: Option<String>,
}

impl Resolved<'_> {
    fn matches(&self, g: &Generation) -> bool {
        let filter = &self.evaluation.filter;
        let version = if !filter.prompt_version.is_empty() {
            g.prompt_version == filter.prompt_version
        } else if !filter.label.is_empty() {
            self.label_version.as_deref() == Some(g.prompt_version.as_str())
                || (!g.experiment_id.is_empty()
                    && self.serving.as_deref() == Some(g.experiment_id.as_str()))
        } else {
            true
        };
        g.prompt_name == filter.prompt_name
            && version
            && (filter.model.is_empty() || g.model == filter.model)
            && (filter.experiment_id.is_empty() || g.experiment_id == filter.experiment_id)
    }
}

impl GenerationSampler for OnlineEvaluationService {
    fn sample(&self, batch: &[Generation]) -> Vec<QueuedSample> {
        let active: Vec<Arc<OnlineEvaluation>> = self
            .evaluations
            .read()
            .expect("online evaluations lock")
            .values()
            .filter(|e| !e.paused)
            .cloned()
            .collect();
        if active.is_empty() {
            return Vec::new();
        }
        let resolved: Vec<Resolved<'_>> = active
            .iter()
            .map(|evaluation| {
                let filter = &evaluation.filter;
                let by_label = filter.prompt_version.is_empty() && !filter.label.is_empty();
                Resolved {
                    evaluation,
                    label_version: by_label
                        .then(|| {
                            self.registry
                                .get_version(
                                    &filter.prompt_name,
                                    &VersionSelector::Label(filter.label.clone()),
                                )
                                .ok()
                                .map(|view| view.version.version.to_string())
                        })
                        .flatten(),
                    serving: by_label
                        .then(|| self.serving.serving(&filter.prompt_name, &filter.label))
                        .flatten(),
                }
            })
            .collect();
        let mut samples = Vec::new();
        for generation in batch {
            for evaluation in &resolved {
                if evaluation.matches(generation)
                    && sampled(
                        &evaluation.evaluation.id,
                        &generation.id,
                        evaluation.evaluation.sample_rate,
                    )
                {
                    samples.push(QueuedSample {
                        evaluation_id: evaluation.evaluation.id.clone(),
                        generation_id: generation.id.clone(),
                    });
                }
            }
        }
        if !samples.is_empty() {
            self.queued.notify_one();
        }
        samples
    }

    fn queue_limit(&self) -> u64 {
        self.settings.queue_limit
    }
}

/// The minute of a generation's time (µs).
pub(super) fn minute_of(generation: &Generation) -> i64 {
    super::stats::floor(generation.time().timestamp_micros(), MINUTE_US)
}
