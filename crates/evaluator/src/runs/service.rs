//! The run service: create, start, watch, cancel, submit outputs, compare.
//!
//! Runs live in memory as `watch` channels (the current state, which `WatchRun` follows)
//! and in storage. Status changes happen under one lock and are stored before they are
//! published. Each started run has an executor task: it pages through the dataset
//! snapshot, keeps up to `concurrency` samples in flight, and hands finished results to
//! a writer that stores them in batches (whatever finished while the last batch was
//! committing), so each result is durable moments after it is known. A run that was
//! RUNNING at shutdown stays RUNNING in storage and resumes its remaining samples when
//! the service opens again.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex as SyncMutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use dashmap::DashMap;
use futures_util::stream::{self, StreamExt};
use llmops_alerts::{fingerprint, AlertSink};
use llmops_registry::{Registry, VersionSelector};
use tokio::sync::{mpsc, watch, Semaphore};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::compare::{
    compare, regression_checks, threshold_checks, AlertCheck, Comparison, PairedOutcomes,
};
use super::executor::{
    self, blank_result, evaluate, set_error, PreparedPrompt, SampleContext, Scoring,
};
use super::metric::{compile_metric, CompiledMetric};
use super::model::{
    Run, RunProgress, RunSpec, RunStatus, SampleResult, DEFAULT_CONCURRENCY, DEFAULT_SAMPLE_TIMEOUT,
};
use super::store::RunStore;
use super::summary::summarise;
use super::validate::{check_spec, check_submitted_score, limits};
use crate::datasets::DatasetService;
use crate::error::{EvaluationError, FieldViolation, StoreError};
use crate::paging::newest_first;
use crate::providers::selection::{self, AUTO, PASS_RATE_RUNS};
use crate::providers::{ProviderSet, ProviderStatus, QueueClock};

/// Samples read from the dataset per page while a run goes.
const SAMPLE_PAGE: usize = 500;
/// Results stored per transaction at most.
const WRITE_BATCH: usize = 500;
/// The most runs or results one list page holds.
const MAX_PAGE_SIZE: usize = 1000;
/// Submitted outputs scored at once (judges may be slow).
const SUBMIT_CONCURRENCY: usize = 8;

/// Settings that come from configuration.
#[derive(Debug, Clone)]
pub struct RunSettings {
    /// Whether `panel` metrics are allowed.
    pub panel_evaluation: bool,
    /// `[alert_thresholds]`: `pass_rate` (min), `latency_p99` (max, ms), else metric mins.
    pub alert_thresholds: BTreeMap<String, f64>,
}

/// Which runs `list` returns; unset fields match everything.
#[derive(Debug, Clone, Default)]
pub struct RunFilter {
    /// The dataset.
    pub dataset_id: Option<String>,
    /// The prompt.
    pub prompt_name: Option<String>,
    /// The model.
    pub model: Option<String>,
    /// The status.
    pub status: Option<RunStatus>,
    /// Created at or after.
    pub created_after: Option<DateTime<Utc>>,
    /// Created before.
    pub created_before: Option<DateTime<Utc>>,
}

impl RunFilter {
    fn matches(&self, run: &Run) -> bool {
        self.dataset_id
            .as_ref()
            .is_none_or(|d| *d == run.dataset_id)
            && self
                .prompt_name
                .as_ref()
                .is_none_or(|p| *p == run.prompt_name)
            && self.model.as_ref().is_none_or(|m| *m == run.model)
            && self.status.is_none_or(|s| s == run.status)
            && self.created_after.is_none_or(|t| run.created_at >= t)
            && self.created_before.is_none_or(|t| run.created_at < t)
    }
}

/// One output a client produced.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SubmittedOutput {
    /// The sample.
    pub sample_id: String,
    /// The output.
    pub output: String,
    /// Scores from elsewhere, kept as given.
    pub scores: BTreeMap<String, f64>,
    /// The client's model latency.
    pub latency: Option<Duration>,
    /// Why there is no output.
    pub error: String,
}

/// A page of results.
#[derive(Debug, Clone, PartialEq)]
pub struct ResultPage {
    /// In dataset order.
    pub results: Vec<SampleResult>,
    /// Empty at the end.
    pub next_page_token: String,
}

/// A running executor. It removes itself from the map when it exits, then signals
/// `stopped`, so an entry in the map is always a live executor.
#[derive(Clone)]
struct Executor {
    cancel: CancellationToken,
    stopped: watch::Receiver<bool>,
}

impl Executor {
    /// Cancels the executor and waits until it has exited.
    async fn stop(mut self) {
        self.cancel.cancel();
        let _ = self.stopped.wait_for(|stopped| *stopped).await;
    }
}

/// When a run finished, and its pass rate.
type FinishedPassRate = (DateTime<Utc>, f64);

struct Inner {
    store: Arc<dyn RunStore>,
    datasets: Arc<DatasetService>,
    registry: Arc<Registry>,
    providers: ProviderSet,
    alerts: Arc<dyn AlertSink>,
    settings: RunSettings,
    runs: DashMap<String, watch::Sender<Run>>,
    /// Serialises status changes, so each is stored before the next is decided.
    transitions: tokio::sync::Mutex<()>,
    /// Serialises alert checks, so raises and resolves of one problem never interleave.
    alert_checks: tokio::sync::Mutex<()>,
    executors: SyncMutex<HashMap<String, Executor>>,
    /// Per model, the pass rates of its latest finished runs (newest first, at most
    /// [`PASS_RATE_RUNS`]): provider selection's scores.
    recent_pass_rates: SyncMutex<HashMap<String, Vec<FinishedPassRate>>>,
    shutdown: CancellationToken,
}

/// The run service.
pub struct RunService {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for RunService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunService")
            .field("runs", &self.inner.runs.len())
            .finish_non_exhaustive()
    }
}

fn not_found(id: &str) -> EvaluationError {
    EvaluationError::NotFound(format!("run {id:?} not found"))
}

impl RunService {
    /// Loads every run and resumes those that were RUNNING.
    pub async fn open(
        store: Arc<dyn RunStore>,
        datasets: Arc<DatasetService>,
        registry: Arc<Registry>,
        providers: ProviderSet,
        alerts: Arc<dyn AlertSink>,
        settings: RunSettings,
    ) -> Result<Self, EvaluationError> {
        let inner = Arc::new(Inner {
            store,
            datasets,
            registry,
            providers,
            alerts,
            settings,
            runs: DashMap::new(),
            transitions: tokio::sync::Mutex::new(()),
            alert_checks: tokio::sync::Mutex::new(()),
            executors: SyncMutex::new(HashMap::new()),
            recent_pass_rates: SyncMutex::new(HashMap::new()),
            shutdown: CancellationToken::new(),
        });
        let mut resume = Vec::new();
        let mut complete = Vec::new();
        for mut run in inner.store.load_runs().await? {
            if run.status == RunStatus::Running {
                // Progress is not stored with each result; count what was stored.
                let total = run.progress.total;
                run.progress = RunProgress {
                    total,
                    ..RunProgress::default()
                };
                for result in inner.all_results(&run.id).await? {
                    run.progress.count(&result);
                }
                if !run.submitted_outputs {
                    resume.push(run.clone());
                } else if run.progress.done >= run.progress.total {
                    // Every output was stored but the end was not: finish it now.
                    complete.push(run.id.clone());
                }
            }
            inner.note_pass_rate(&run);
            inner.runs.insert(run.id.clone(), watch::Sender::new(run));
        }
        for id in complete {
            let ended = inner.complete_submitted(&id).await?;
            inner.raise_alerts(&ended).await;
        }
        for run in resume {
            tracing::info!(run_id = %run.id, done = run.progress.done, total = run.progress.total, "resuming an evaluation run");
            inner.spawn_executor(run);
        }
        Ok(Self { inner })
    }

    /// Stops every executor (their runs stay RUNNING, to resume on the next open) and
    /// waits until their finished results are stored.
    pub async fn close(&self) {
        self.inner.shutdown.cancel();
        let executors: Vec<Executor> = self
            .inner
            .executors
            .lock()
            .expect("executors lock")
            .values()
            .cloned()
            .collect();
        for executor in executors {
            executor.stop().await;
        }
    }

    /// Creates a PENDING run after checking it against the dataset, the registry and the
    /// providers.
    pub async fn create(&self, mut spec: RunSpec) -> Result<Run, EvaluationError> {
        let inner = &self.inner;
        if spec.id.is_empty() {
            spec.id = Uuid::now_v7().to_string();
        }
        let dataset_name = self.check(&spec)?;
        // `auto` becomes the provider selection picks now; the run keeps both names.
        let requested_model = spec.model.clone();
        if spec.model == AUTO && !spec.submitted_outputs {
            spec.model = self.select_provider(&[])?.name;
        }
        let name = if spec.name.is_empty() {
            format!("{} on {}", spec.prompt_name, dataset_name)
        } else {
            spec.name
        };
        let run = Run {
            id: spec.id,
            name,
            description: spec.description,
            dataset_id: spec.dataset_id,
            prompt_name: spec.prompt_name,
            prompt_version: spec.prompt_version,
            prompt_label: spec.prompt_label,
            model: spec.model,
            requested_model,
            metrics: spec.metrics,
            concurrency: if spec.concurrency == 0 {
                DEFAULT_CONCURRENCY
            } else {
                spec.concurrency
            },
            sample_timeout: spec.sample_timeout.unwrap_or(DEFAULT_SAMPLE_TIMEOUT),
            baseline_run_id: spec.baseline_run_id,
            submitted_outputs: spec.submitted_outputs,
            status: RunStatus::Pending,
            results: None,
            dataset_version: 0,
            dataset_hash: String::new(),
            progress: RunProgress::default(),
            error: String::new(),
            compared_with_run_id: String::new(),
            created_at: Utc::now(),
            started_at: None,
            finished_at: None,
        };
        let _guard = inner.transitions.lock().await;
        if inner.runs.contains_key(&run.id) {
            return Err(EvaluationError::AlreadyExists(format!(
                "run {:?} already exists",
                run.id
            )));
        }
        inner.store.insert_run(&run).await?;
        inner
            .runs
            .insert(run.id.clone(), watch::Sender::new(run.clone()));
        Ok(run)
    }

    /// The datasets runs read.
    pub fn datasets(&self) -> &Arc<DatasetService> {
        &self.inner.datasets
    }

    /// Checks a run spec as `create` would, against the dataset, the registry and the
    /// providers, without storing anything; returns the dataset's name.
    pub fn check(&self, spec: &RunSpec) -> Result<String, EvaluationError> {
        let inner = &self.inner;
        let mut violations = check_spec(spec);
        if !spec.model.is_empty()
            && !spec.submitted_outputs
            && spec.model != AUTO
            && inner.providers.get(&spec.model).is_none()
        {
            let known = inner.providers.names().join(", ");
            violations.push(FieldViolation::new(
                "model",
                format!(
                    "{:?} is not a configured provider; known: {known}, and {AUTO:?} for the best healthy one",
                    spec.model
                ),
            ));
        }
        if !inner.settings.panel_evaluation {
            if let Some(index) = spec.metrics.iter().position(|m| m.scorer == "panel") {
                return Err(EvaluationError::FailedPrecondition(format!(
                    "metrics[{index}]: panel evaluation is turned off on this server ([evaluation] panel_evaluation = false)"
                )));
            }
        }
        for (index, metric) in spec.metrics.iter().enumerate() {
            if let Err(violation) = compile_metric(metric, index, &inner.providers, &inner.registry)
            {
                violations.push(violation);
            }
        }
        if !spec.baseline_run_id.is_empty() {
            match inner.runs.get(&spec.baseline_run_id) {
                None => violations.push(FieldViolation::new(
                    "baseline_run_id",
                    format!("run {:?} does not exist", spec.baseline_run_id),
                )),
                Some(baseline) if baseline.borrow().dataset_id != spec.dataset_id => violations
                    .push(FieldViolation::new(
                        "baseline_run_id",
                        format!("run {:?} evaluated another dataset", spec.baseline_run_id),
                    )),
                Some(_) => {}
            }
        }
        if !violations.is_empty() {
            return Err(EvaluationError::InvalidArgument(violations));
        }
        let dataset = inner.datasets.get(&spec.dataset_id)?;
        inner.resolve_prompt(&spec.prompt_name, &spec.prompt_version, &spec.prompt_label)?;
        Ok(dataset.name)
    }

    /// Starts a PENDING run in the background and returns it RUNNING.
    pub async fn start(&self, id: &str) -> Result<Run, EvaluationError> {
        let inner = &self.inner;
        // A running run uses its dataset: starting one must not interleave with deleting
        // the dataset (see `DatasetUsers`).
        let _claim = inner.datasets.claim().await;
        let _guard = inner.transitions.lock().await;
        let run = inner.get(id)?;
        inner.datasets.get(&run.dataset_id)?;
        if run.submitted_outputs {
            return Err(EvaluationError::FailedPrecondition(format!(
                "run {id} takes its outputs from SubmitRunOutputs; it cannot be started"
            )));
        }
        if run.status != RunStatus::Pending {
            return Err(EvaluationError::FailedPrecondition(format!(
                "run {id} is {}; only a pending run can be started",
                run.status.as_str()
            )));
        }
        if inner.providers.get(&run.model).is_none() {
            return Err(EvaluationError::FailedPrecondition(format!(
                "model {:?} is no longer configured",
                run.model
            )));
        }
        let started = inner.begin(run).await?;
        inner.spawn_executor(started.clone());
        Ok(started)
    }

    /// Ends a PENDING run as FAILED with `reason`: for a run its creator could not start
    /// (a schedule's run whose dataset became empty), so it does not sit pending forever.
    pub async fn abandon(&self, id: &str, reason: String) -> Result<Run, EvaluationError> {
        let inner = &self.inner;
        let _guard = inner.transitions.lock().await;
        let run = inner.get(id)?;
        if run.status != RunStatus::Pending {
            return Err(EvaluationError::FailedPrecondition(format!(
                "run {id} is {}; only a pending run can be abandoned",
                run.status.as_str()
            )));
        }
        inner.end(run, RunStatus::Failed, reason, &[]).await
    }

    /// The most recently created run that `matches`.
    pub fn find_latest(&self, matches: impl Fn(&Run) -> bool) -> Option<Run> {
        // Only the winner is cloned: this runs under the registry's write lock when a
        // release gate asks.
        let mut latest: Option<(DateTime<Utc>, String)> = None;
        for entry in self.inner.runs.iter() {
            let run = entry.borrow();
            if matches(&run)
                && latest
                    .as_ref()
                    .is_none_or(|(at, id)| (run.created_at, &run.id) > (*at, id))
            {
                latest = Some((run.created_at, run.id.clone()));
            }
        }
        latest.and_then(|(_, id)| self.inner.get(&id).ok())
    }

    /// The mean pass rate of the [`PASS_RATE_RUNS`] most recently finished completed
    /// runs of `model` that scored at least one sample; None without any. Kept up to
    /// date as runs end, so provider selection (on every `auto` assignment) reads it in
    /// constant time.
    pub fn recent_pass_rate(&self, model: &str) -> Option<f64> {
        let recent = self
            .inner
            .recent_pass_rates
            .lock()
            .expect("pass rates lock");
        let rates = recent.get(model)?;
        (!rates.is_empty())
            .then(|| rates.iter().map(|(_, rate)| rate).sum::<f64>() / rates.len() as f64)
    }

    /// The providers runs may name.
    pub fn providers(&self) -> &ProviderSet {
        &self.inner.providers
    }

    /// Every provider's health and score (a configured score, else its recent pass rate).
    pub fn provider_statuses(&self) -> Vec<ProviderStatus> {
        self.inner
            .providers
            .health()
            .statuses(|model| self.recent_pass_rate(model))
    }

    /// The provider `candidates` should use (see [`selection::select`]).
    pub fn select_provider(
        &self,
        candidates: &[String],
    ) -> Result<ProviderStatus, EvaluationError> {
        selection::select(&self.provider_statuses(), candidates).cloned()
    }

    /// One run.
    pub fn get(&self, id: &str) -> Result<Run, EvaluationError> {
        self.inner.get(id)
    }

    /// Follows a run's state: the receiver sees every change (intermediate progress may
    /// be coalesced) up to its final state.
    pub fn watch(&self, id: &str) -> Result<watch::Receiver<Run>, EvaluationError> {
        self.inner
            .runs
            .get(id)
            .map(|sender| sender.subscribe())
            .ok_or_else(|| not_found(id))
    }

    /// Runs newest first.
    pub fn list(
        &self,
        filter: &RunFilter,
        page_size: usize,
        page_token: &str,
    ) -> Result<(Vec<Run>, String), EvaluationError> {
        let runs: Vec<Run> = self
            .inner
            .runs
            .iter()
            .map(|entry| entry.borrow().clone())
            .filter(|run| filter.matches(run))
            .collect();
        newest_first(
            runs,
            |run| (run.created_at.timestamp_micros(), run.id.clone()),
            page_size,
            page_token,
            MAX_PAGE_SIZE,
        )
    }

    /// Cancels a PENDING or RUNNING run, keeping the results stored so far.
    pub async fn cancel(&self, id: &str) -> Result<Run, EvaluationError> {
        let inner = &self.inner;
        inner.get(id)?;
        loop {
            let executor = inner
                .executors
                .lock()
                .expect("executors lock")
                .get(id)
                .cloned();
            if let Some(executor) = executor {
                executor.stop().await;
            }
            // The executor has exited, so the stored results are final: summarise them
            // before taking the lock every run's changes share.
            let results = inner.all_results(id).await?;
            let _guard = inner.transitions.lock().await;
            // A StartRun that got the lock first has just spawned an executor: stop it too.
            if inner
                .executors
                .lock()
                .expect("executors lock")
                .contains_key(id)
            {
                continue;
            }
            let run = inner.get(id)?;
            if run.status.is_terminal() {
                return Err(EvaluationError::FailedPrecondition(format!(
                    "run {id} is already {}",
                    run.status.as_str()
                )));
            }
            return inner
                .end(run, RunStatus::Cancelled, String::new(), &results)
                .await;
        }
    }

    /// A page of a run's results in dataset order.
    pub async fn results(
        &self,
        id: &str,
        failed_only: bool,
        page_size: usize,
        page_token: &str,
    ) -> Result<ResultPage, EvaluationError> {
        self.inner.get(id)?;
        let after = if page_token.is_empty() {
            0
        } else {
            page_token.parse::<i64>().map_err(|_| {
                EvaluationError::invalid("page_token", "is not a token this server issued")
            })?
        };
        let size = page_size.clamp(1, MAX_PAGE_SIZE);
        let mut results = self
            .inner
            .store
            .results_page(id, failed_only, after, size + 1)
            .await?;
        let next_page_token = if results.len() > size {
            results.truncate(size);
            results
                .last()
                .map(|r| r.position.to_string())
                .unwrap_or_default()
        } else {
            String::new()
        };
        Ok(ResultPage {
            results,
            next_page_token,
        })
    }

    /// Scores outputs a client produced; the first call starts the run and the run
    /// completes when every sample of its snapshot has a result.
    pub async fn submit_outputs(
        &self,
        id: &str,
        outputs: Vec<SubmittedOutput>,
    ) -> Result<(Run, Vec<SampleResult>), EvaluationError> {
        let inner = &self.inner;
        check_outputs(&outputs)?;
        let mut run = inner.get(id)?;
        if !run.submitted_outputs {
            return Err(EvaluationError::FailedPrecondition(format!(
                "run {id} runs its model on the server; outputs can only be submitted to a run created with submitted_outputs"
            )));
        }
        // A first call is checked against the dataset as it is now; the run only starts
        // (pinning that version) once the call is accepted.
        match run.status {
            RunStatus::Pending => {
                let dataset = inner.datasets.get(&run.dataset_id)?;
                run.dataset_version = dataset.version;
                run.prompt_version = inner.resolve_prompt(
                    &run.prompt_name,
                    &run.prompt_version,
                    &run.prompt_label,
                )?;
            }
            RunStatus::Running => {}
            other => {
                return Err(EvaluationError::FailedPrecondition(format!(
                    "run {id} is already {}",
                    other.as_str()
                )))
            }
        }
        let ids: Vec<String> = outputs.iter().map(|o| o.sample_id.clone()).collect();
        let samples = inner
            .datasets
            .samples_by_id_at(&run.dataset_id, run.dataset_version, &ids)
            .await?;
        let by_id: HashMap<&str, &crate::datasets::StoredSample> =
            samples.iter().map(|s| (s.sample.id.as_str(), s)).collect();
        if let Some(index) = ids.iter().position(|id| !by_id.contains_key(id.as_str())) {
            return Err(EvaluationError::NotFound(format!(
                "outputs[{index}].sample_id: dataset {} has no sample {:?} at version {}",
                run.dataset_id, ids[index], run.dataset_version
            )));
        }
        let taken = inner.store.existing_results(id, &ids).await?;
        if let Some(index) = ids.iter().position(|id| taken.contains(id)) {
            return Err(EvaluationError::AlreadyExists(format!(
                "outputs[{index}].sample_id: sample {:?} already has an output in run {id}",
                ids[index]
            )));
        }
        let scoring = inner.scoring(&run)?;
        let prompt =
            PreparedPrompt::resolve(&inner.registry, &run.prompt_name, &run.prompt_version).ok();
        let results: Vec<SampleResult> = stream::iter(outputs)
            .map(|output| {
                let sample = by_id[output.sample_id.as_str()];
                let scoring = &scoring;
                let prompt = prompt.as_ref();
                let registry = &inner.registry;
                async move {
                    let mut result = blank_result(sample);
                    result.output = output.output;
                    result.latency = output.latency;
                    result.scores = output.scores;
                    if !output.error.is_empty() {
                        set_error(&mut result, "client error", output.error);
                        return result;
                    }
                    // Judges see the prompt as the run's version renders it.
                    let prompt_text = prompt
                        .and_then(|p| executor::render(registry, p, sample).ok())
                        .map(|messages| executor::transcript(&messages))
                        .unwrap_or_else(|| match &sample.sample.input {
                            serde_json::Value::String(text) => text.clone(),
                            other => other.to_string(),
                        });
                    executor::score(
                        scoring,
                        &prompt_text,
                        &sample.sample.context,
                        &mut result,
                        // Submitted outputs have no time limit to protect.
                        &QueueClock::default(),
                    )
                    .await;
                    result
                }
            })
            .buffered(SUBMIT_CONCURRENCY)
            .collect()
            .await;
        let guard = inner.transitions.lock().await;
        let current = inner.get(id)?;
        match current.status {
            RunStatus::Running if current.dataset_version == run.dataset_version => {}
            RunStatus::Pending => {
                let started = inner.begin(current).await?;
                if started.dataset_version != run.dataset_version {
                    return Err(EvaluationError::FailedPrecondition(format!(
                        "dataset {} changed while these outputs were scored; submit them again",
                        run.dataset_id
                    )));
                }
            }
            other => {
                return Err(EvaluationError::FailedPrecondition(format!(
                    "run {id} was {} while these outputs were scored",
                    other.as_str()
                )))
            }
        }
        match inner.store.insert_results(id, &results).await {
            Ok(()) => {}
            Err(StoreError::Duplicate(_)) => {
                return Err(EvaluationError::AlreadyExists(format!(
                    "another call submitted outputs for some of these samples to run {id} meanwhile"
                )))
            }
            Err(other) => return Err(other.into()),
        }
        let progress = inner.count(id, &results);
        let run = if progress.done >= progress.total {
            let ended = inner.complete_submitted(id).await?;
            drop(guard);
            inner.raise_alerts(&ended).await;
            ended
        } else {
            inner.get(id)?
        };
        Ok((run, results))
    }

    /// Compares two ended runs.
    pub async fn compare(
        &self,
        baseline_id: &str,
        candidate_id: &str,
    ) -> Result<Comparison, EvaluationError> {
        let inner = &self.inner;
        let baseline = inner.get(baseline_id)?;
        let candidate = inner.get(candidate_id)?;
        let ended = |run: &Run, field: &str| {
            run.results.clone().ok_or_else(|| {
                EvaluationError::FailedPrecondition(format!(
                    "{field}: run {} is {}; only an ended run can be compared",
                    run.id,
                    run.status.as_str()
                ))
            })
        };
        let baseline_results = ended(&baseline, "baseline_run_id")?;
        let candidate_results = ended(&candidate, "candidate_run_id")?;
        let paired = if baseline.dataset_id == candidate.dataset_id {
            Some(inner.paired(&baseline.id, &candidate.id).await?)
        } else {
            None
        };
        Ok(compare(
            &baseline,
            &baseline_results,
            &candidate,
            &candidate_results,
            paired,
        ))
    }
}

fn check_outputs(outputs: &[SubmittedOutput]) -> Result<(), EvaluationError> {
    let mut violations = Vec::new();
    if outputs.is_empty() {
        violations.push(FieldViolation::new(
            "outputs",
            "at least one output is required",
        ));
    }
    if outputs.len() > limits::SUBMITTED_OUTPUTS {
        violations.push(FieldViolation::new(
            "outputs",
            format!("at most {} outputs per call", limits::SUBMITTED_OUTPUTS),
        ));
    }
    let mut seen = HashSet::new();
    for (index, output) in outputs.iter().enumerate() {
        let field = |rest: &str| format!("outputs[{index}].{rest}");
        if output.sample_id.is_empty() {
            violations.push(FieldViolation::new(field("sample_id"), "is required"));
        } else if !seen.insert(output.sample_id.as_str()) {
            violations.push(FieldViolation::new(
                field("sample_id"),
                format!("{:?} appears twice in this call", output.sample_id),
            ));
        }
        if output.output.len() > limits::OUTPUT_BYTES || output.error.len() > limits::OUTPUT_BYTES {
            violations.push(FieldViolation::new(
                field("output"),
                format!(
                    "outputs and errors are at most {} bytes",
                    limits::OUTPUT_BYTES
                ),
            ));
        }
        for (name, score) in &output.scores {
            if let Some(violation) = check_submitted_score(&field("scores"), name, *score) {
                violations.push(violation);
            }
        }
    }
    if violations.is_empty() {
        Ok(())
    } else {
        Err(EvaluationError::InvalidArgument(violations))
    }
}

impl Inner {
    fn get(&self, id: &str) -> Result<Run, EvaluationError> {
        self.runs
            .get(id)
            .map(|sender| sender.borrow().clone())
            .ok_or_else(|| not_found(id))
    }

    /// The exact version a run's prompt fields select now.
    fn resolve_prompt(
        &self,
        name: &str,
        version: &str,
        label: &str,
    ) -> Result<String, EvaluationError> {
        let selector = VersionSelector::from_fields(version, label)
            .map_err(|err| EvaluationError::invalid("prompt_label", err.to_string()))?;
        let view = self
            .registry
            .get_version(name, &selector)
            .map_err(|err| match err {
                llmops_registry::RegistryError::NotFound(message) => {
                    EvaluationError::NotFound(message)
                }
                other => EvaluationError::invalid("prompt_version", other.to_string()),
            })?;
        Ok(view.version.version.to_string())
    }

    /// Moves a PENDING run to RUNNING: resolves the prompt version and records the
    /// dataset snapshot. Called under the transitions lock.
    async fn begin(&self, mut run: Run) -> Result<Run, EvaluationError> {
        let dataset = self.datasets.get(&run.dataset_id).map_err(|_| {
            EvaluationError::FailedPrecondition(format!(
                "dataset {} no longer exists",
                run.dataset_id
            ))
        })?;
        if dataset.sample_count == 0 {
            return Err(EvaluationError::FailedPrecondition(format!(
                "dataset {} has no samples; add samples before running it",
                dataset.id
            )));
        }
        run.prompt_version = self
            .resolve_prompt(&run.prompt_name, &run.prompt_version, &run.prompt_label)
            .map_err(|err| EvaluationError::FailedPrecondition(err.to_string()))?;
        run.dataset_version = dataset.version;
        run.dataset_hash = dataset.content_hash;
        run.progress = RunProgress {
            total: dataset.sample_count,
            ..RunProgress::default()
        };
        run.status = RunStatus::Running;
        run.started_at = Some(Utc::now());
        self.store.update_run(&run).await?;
        self.publish(run.clone());
        Ok(run)
    }

    fn publish(&self, run: Run) {
        if let Some(sender) = self.runs.get(&run.id) {
            sender.send_replace(run);
        }
    }

    /// Counts stored results into the run's progress; returns the new progress.
    fn count(&self, id: &str, results: &[SampleResult]) -> RunProgress {
        let Some(sender) = self.runs.get(id) else {
            return RunProgress::default();
        };
        sender.send_if_modified(|run| {
            // An ended run's progress is its results; nothing is counted after the end.
            if run.status != RunStatus::Running {
                return false;
            }
            for result in results {
                run.progress.count(result);
            }
            true
        });
        let progress = sender.borrow().progress;
        progress
    }

    /// Ends a run with its results summarised from storage. Called under the
    /// transitions lock.
    async fn end(
        &self,
        mut run: Run,
        status: RunStatus,
        error: String,
        results: &[SampleResult],
    ) -> Result<Run, EvaluationError> {
        let summary = summarise(results, &thresholds(&run));
        run.progress.done = summary.total;
        run.progress.passed = summary.passed;
        run.progress.failed = summary.failed;
        run.progress.errored = summary.errored;
        run.results = Some(summary);
        run.status = status;
        run.error = error;
        run.finished_at = Some(Utc::now());
        if status == RunStatus::Completed {
            run.compared_with_run_id = self.baseline_of(&run).map(|b| b.id).unwrap_or_default();
        }
        self.store.update_run(&run).await?;
        self.note_pass_rate(&run);
        self.publish(run.clone());
        Ok(run)
    }

    /// Counts a completed run's pass rate into its model's recent ones.
    fn note_pass_rate(&self, run: &Run) {
        let Some(results) = &run.results else {
            return;
        };
        // Outputs a client submitted say nothing of the provider's answers.
        if run.status != RunStatus::Completed || run.submitted_outputs || results.total == 0 {
            return;
        }
        let finished = run.finished_at.unwrap_or(run.created_at);
        let mut recent = self.recent_pass_rates.lock().expect("pass rates lock");
        let rates = recent.entry(run.model.clone()).or_default();
        rates.push((finished, results.pass_rate));
        rates.sort_by_key(|(finished, _)| std::cmp::Reverse(*finished));
        rates.truncate(PASS_RATE_RUNS);
    }

    /// Completes a submitted-outputs run whose every sample has a result. Called under
    /// the transitions lock.
    async fn complete_submitted(&self, id: &str) -> Result<Run, EvaluationError> {
        let results = self.all_results(id).await?;
        self.end(self.get(id)?, RunStatus::Completed, String::new(), &results)
            .await
    }

    /// Every stored result of a run.
    async fn all_results(&self, id: &str) -> Result<Vec<SampleResult>, EvaluationError> {
        let mut all = Vec::new();
        let mut after = 0;
        loop {
            let page = self
                .store
                .results_page(id, false, after, MAX_PAGE_SIZE)
                .await?;
            let Some(last) = page.last() else {
                return Ok(all);
            };
            after = last.position;
            let full = page.len() == MAX_PAGE_SIZE;
            all.extend(page);
            if !full {
                return Ok(all);
            }
        }
    }

    async fn outcomes(&self, id: &str) -> Result<HashMap<String, bool>, EvaluationError> {
        Ok(self
            .all_results(id)
            .await?
            .into_iter()
            .map(|r| (r.sample_id, r.passed))
            .collect())
    }

    async fn paired(
        &self,
        baseline: &str,
        candidate: &str,
    ) -> Result<PairedOutcomes, EvaluationError> {
        Ok(PairedOutcomes::pair(
            &self.outcomes(baseline).await?,
            &self.outcomes(candidate).await?,
        ))
    }

    /// The run a completed run is checked against: its explicit baseline, or the most
    /// recent completed run created before it with the same dataset, prompt and model.
    fn baseline_of(&self, run: &Run) -> Option<Run> {
        if !run.baseline_run_id.is_empty() {
            return self
                .get(&run.baseline_run_id)
                .ok()
                .filter(|b| b.status == RunStatus::Completed);
        }
        self.runs
            .iter()
            .map(|entry| entry.borrow().clone())
            .filter(|other| {
                other.id != run.id
                    && other.status == RunStatus::Completed
                    && other.dataset_id == run.dataset_id
                    && other.prompt_name == run.prompt_name
                    && other.model == run.model
                    && (other.created_at, &other.id) < (run.created_at, &run.id)
            })
            .max_by(|a, b| (a.created_at, &a.id).cmp(&(b.created_at, &b.id)))
    }

    /// Raises or resolves the regression and threshold alerts of a completed run.
    async fn raise_alerts(&self, run: &Run) {
        let Some(results) = &run.results else {
            return;
        };
        let _serial = self.alert_checks.lock().await;
        // Alerts speak for the latest run of a dataset, prompt and model: a run that
        // completes after a newer one must not reopen what the newer one resolved.
        let newer = self.runs.iter().any(|entry| {
            let other = entry.borrow();
            other.id != run.id
                && other.status == RunStatus::Completed
                && other.dataset_id == run.dataset_id
                && other.prompt_name == run.prompt_name
                && other.model == run.model
                && (other.created_at, &other.id) > (run.created_at, &run.id)
        });
        if newer {
            return;
        }
        let mut checks: Vec<AlertCheck> = Vec::new();
        let baseline = (!run.compared_with_run_id.is_empty())
            .then(|| self.get(&run.compared_with_run_id).ok())
            .flatten();
        if let Some(baseline) = baseline {
            let baseline_results = baseline.results.clone().unwrap_or_default();
            // McNemar needs the same samples: the same dataset at the same version.
            let paired = if baseline.dataset_id == run.dataset_id
                && baseline.dataset_version == run.dataset_version
            {
                match self.paired(&baseline.id, &run.id).await {
                    Ok(paired) => Some(paired),
                    Err(err) => {
                        tracing::warn!(run_id = %run.id, error = %err, "reading paired outcomes failed; the alert goes without McNemar's test");
                        None
                    }
                }
            } else {
                None
            };
            checks.extend(regression_checks(
                &baseline,
                &baseline_results,
                run,
                results,
                paired.as_ref(),
            ));
        }
        checks.extend(threshold_checks(
            run,
            results,
            &self.settings.alert_thresholds,
        ));
        for check in checks {
            let alert = check.alert;
            let outcome = if check.breaching {
                self.alerts.raise(alert).await.map(|_| ())
            } else {
                let key = fingerprint(
                    alert.alert_type,
                    &alert.source,
                    &alert.source_id,
                    &alert.metric,
                    &alert.labels,
                );
                self.alerts.resolve_fingerprint(&key).await.map(|_| ())
            };
            if let Err(err) = outcome {
                tracing::warn!(run_id = %run.id, error = %err, "raising an evaluation alert failed");
            }
        }
    }

    /// The scorers of a run.
    fn scoring(&self, run: &Run) -> Result<Scoring, EvaluationError> {
        let metrics: Vec<CompiledMetric> = run
            .metrics
            .iter()
            .enumerate()
            .map(|(index, config)| compile_metric(config, index, &self.providers, &self.registry))
            .collect::<Result<_, _>>()
            .map_err(|violation| {
                EvaluationError::FailedPrecondition(format!(
                    "the run's metrics no longer work with this server's configuration: {violation}"
                ))
            })?;
        Ok(Scoring {
            registry: self.registry.clone(),
            providers: self.providers.clone(),
            metrics: Arc::new(metrics),
            thresholds: Arc::new(thresholds(run)),
        })
    }

    /// Starts (or resumes) a RUNNING run's executor.
    fn spawn_executor(self: &Arc<Self>, run: Run) {
        let cancel = self.shutdown.child_token();
        let (stopped_sender, stopped) = watch::channel(false);
        self.executors.lock().expect("executors lock").insert(
            run.id.clone(),
            Executor {
                cancel: cancel.clone(),
                stopped,
            },
        );
        let inner = self.clone();
        tokio::spawn(async move {
            let id = run.id.clone();
            inner.execute(run, cancel).await;
            inner.executors.lock().expect("executors lock").remove(&id);
            stopped_sender.send_replace(true);
        });
    }

    async fn execute(self: &Arc<Self>, run: Run, cancel: CancellationToken) {
        let outcome = self.run_samples(&run, &cancel).await;
        let (status, error) = match outcome {
            // Cancelled or shutting down: CancelRun ends the run, or the next start
            // resumes it.
            Ok(false) => return,
            Ok(true) => (RunStatus::Completed, String::new()),
            Err(error) => (RunStatus::Failed, error),
        };
        // The samples are done, so the stored results are final: summarise them before
        // taking the lock every run's changes share.
        let results = match self.all_results(&run.id).await {
            Ok(results) => results,
            Err(err) => {
                tracing::error!(run_id = %run.id, error = %err, "reading a finished run's results failed; it resumes at the next start");
                return;
            }
        };
        let ended = {
            let _guard = self.transitions.lock().await;
            match self.get(&run.id) {
                Ok(current) if current.status == RunStatus::Running => {
                    self.end(current, status, error, &results).await
                }
                _ => return,
            }
        };
        match ended {
            Ok(ended) => {
                tracing::info!(run_id = %ended.id, status = ended.status.as_str(), pass_rate = ended.results.as_ref().map(|r| r.pass_rate), "evaluation run ended");
                if ended.status == RunStatus::Completed {
                    self.raise_alerts(&ended).await;
                }
            }
            Err(err) => {
                tracing::error!(run_id = %run.id, error = %err, "storing the end of an evaluation run failed; it resumes at the next start")
            }
        }
    }

    /// Runs the samples that have no result yet. Ok(true) when all have one, Ok(false)
    /// when cancelled, Err when the run cannot go on.
    async fn run_samples(
        self: &Arc<Self>,
        run: &Run,
        cancel: &CancellationToken,
    ) -> Result<bool, String> {
        let model = self
            .providers
            .get(&run.model)
            .ok_or_else(|| format!("model {:?} is no longer configured", run.model))?;
        let prompt = PreparedPrompt::resolve(&self.registry, &run.prompt_name, &run.prompt_version)
            .map_err(|err| format!("prompt {} {}: {err}", run.prompt_name, run.prompt_version))?;
        let scoring = self.scoring(run).map_err(|err| err.to_string())?;
        let context = SampleContext {
            scoring,
            model,
            prompt: Arc::new(prompt),
        };
        let done: HashSet<String> = self
            .all_results(&run.id)
            .await
            .map_err(|err| format!("reading stored results: {err}"))?
            .into_iter()
            .map(|r| r.sample_id)
            .collect();
        // No more samples in flight than the model takes at once: the rest would wait
        // for the provider inside their time limit and could time out unsent.
        let concurrency = (run.concurrency.max(1) as usize)
            .min(context.model.max_concurrency().unwrap_or(usize::MAX).max(1));
        let (sender, receiver) = mpsc::channel(concurrency * 2);
        let writer_failed = CancellationToken::new();
        let writer = tokio::spawn(self.clone().write_results(
            run.id.clone(),
            receiver,
            writer_failed.clone(),
        ));
        let slots = Arc::new(Semaphore::new(concurrency));
        let mut tasks = JoinSet::new();
        let mut failure = None;
        let mut after = 0;
        'pages: loop {
            let page = match self
                .datasets
                .export_page(&run.dataset_id, run.dataset_version, after, SAMPLE_PAGE)
                .await
            {
                Ok(page) => page,
                Err(err) => {
                    failure = Some(format!("reading dataset {}: {err}", run.dataset_id));
                    break;
                }
            };
            let Some(last) = page.last() else {
                break;
            };
            after = last.position;
            for sample in page {
                if done.contains(&sample.sample.id) {
                    continue;
                }
                let slot = tokio::select! {
                    biased;
                    _ = cancel.cancelled() => break 'pages,
                    _ = writer_failed.cancelled() => break 'pages,
                    slot = slots.clone().acquire_owned() => slot.expect("the semaphore is never closed"),
                };
                let context = context.clone();
                let sender = sender.clone();
                let timeout = run.sample_timeout;
                tasks.spawn(async move {
                    let result = evaluate(&context, &sample, timeout).await;
                    let _ = sender.send(result).await;
                    drop(slot);
                });
                while tasks.try_join_next().is_some() {}
            }
        }
        drop(sender);
        // Samples in flight finish, unless the run is being stopped: then they are
        // dropped (aborted once; their results were never stored, so they run again on
        // resume).
        let mut aborted = false;
        loop {
            if !aborted
                && (failure.is_some() || cancel.is_cancelled() || writer_failed.is_cancelled())
            {
                tasks.abort_all();
                aborted = true;
            }
            tokio::select! {
                joined = tasks.join_next() => match joined {
                    None => break,
                    Some(Err(err)) if err.is_panic() && failure.is_none() => {
                        failure = Some("evaluating a sample panicked; this is a bug, please report it".to_owned());
                    }
                    Some(_) => {}
                },
                _ = cancel.cancelled(), if !aborted => {}
                _ = writer_failed.cancelled(), if !aborted => {}
            }
        }
        match writer.await {
            Ok(Ok(())) => {}
            Ok(Err(err)) => return Err(err),
            Err(err) => return Err(format!("the result writer stopped: {err}")),
        }
        if let Some(failure) = failure {
            return Err(failure);
        }
        Ok(!cancel.is_cancelled())
    }

    /// Stores results as they arrive, in batches of whatever is ready, and counts them
    /// into the run's progress once stored.
    async fn write_results(
        self: Arc<Self>,
        run_id: String,
        mut receiver: mpsc::Receiver<SampleResult>,
        failed: CancellationToken,
    ) -> Result<(), String> {
        while let Some(first) = receiver.recv().await {
            let mut batch = vec![first];
            while batch.len() < WRITE_BATCH {
                match receiver.try_recv() {
                    Ok(result) => batch.push(result),
                    Err(_) => break,
                }
            }
            if let Err(err) = self.store.insert_results(&run_id, &batch).await {
                failed.cancel();
                return Err(format!("storing results: {err}"));
            }
            self.count(&run_id, &batch);
        }
        Ok(())
    }
}

/// Each metric's threshold by name.
fn thresholds(run: &Run) -> BTreeMap<String, f64> {
    run.metrics
        .iter()
        .map(|m| (m.name.clone(), m.threshold))
        .collect()
}
