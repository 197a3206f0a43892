//! The run service and run lifecycle: create, check, start, watch, list, cancel. Child
//! modules own the rest: `supervision` (executors), `submitted` (SubmitRunOutputs),
//! `alerting` (baselines, regression and threshold alerts), `results` (pages and
//! comparisons). Provider health and scores live in `providers::registry`, to which runs
//! report their pass rates.
//!
//! Runs live in memory as `watch` channels (the current state, which `WatchRun` follows)
//! and in storage. Status changes happen under one lock, are stored (compare-and-set on
//! the stored status, as other processes change runs too) before they are published.
//! Each process serving a running run has an executor task for it, one worker of the
//! run: it claims chunks of the dataset snapshot (shared with the other processes' workers
//! through storage), keeps up to `concurrency` samples in flight, and hands finished
//! results to a writer that stores them in batches (whatever finished while the last
//! batch was committing), so each result is durable moments after it is known. A run
//! that was RUNNING at shutdown stays RUNNING in storage; other processes go on with it,
//! and this one rejoins it when the service opens again.

mod alerting;
mod results;
mod submitted;
mod supervision;

use self::alerting::thresholds;
pub use self::results::ResultPage;
pub use self::submitted::SubmittedOutput;
use self::supervision::Executor;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex as SyncMutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use dashmap::DashMap;
use futures_util::stream::{self, StreamExt};
use llmops_alerts::AlertSink;
use llmops_registry::{Registry, VersionSelector};
use tokio::sync::{mpsc, watch, Notify, Semaphore};
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
    ResultCounts, Run, RunProgress, RunSpec, RunStatus, SampleResult, DEFAULT_CONCURRENCY,
    DEFAULT_SAMPLE_TIMEOUT,
};
use super::store::{OnDuplicate, RunStore, SampleChunk};
use super::summary::summarise;
use super::validate::{check_spec, check_submitted_score, limits};
use crate::datasets::{DatasetService, StoredSample};
use crate::error::{EvaluationError, FieldViolation, StoreError};
use crate::paging::newest_first;
use crate::providers::registry::ProviderRegistry;
use crate::providers::selection::AUTO;
use crate::providers::{ProviderSet, QueueClock};

/// The most runs or results one list page holds.
const MAX_PAGE_SIZE: usize = 1000;

/// Settings that come from configuration.
#[derive(Debug, Clone)]
pub struct RunSettings {
    /// Whether `panel` metrics are allowed.
    pub panel_evaluation: bool,
    /// `[alert_thresholds]`: `pass_rate` (min), `latency_p99` (max, ms), else metric mins.
    pub alert_thresholds: BTreeMap<String, f64>,
    /// This process's name in claims of samples (its replica id): every replica that
    /// serves a running run evaluates a share of its samples.
    pub worker: String,
    /// How long a claim of samples lasts unrenewed (`leader_lease`): the samples of a
    /// replica that dies are claimed again after it.
    pub claim_lease: Duration,
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

struct Inner {
    store: Arc<dyn RunStore>,
    datasets: Arc<DatasetService>,
    registry: Arc<Registry>,
    providers: Arc<ProviderRegistry>,
    alerts: Arc<dyn AlertSink>,
    settings: RunSettings,
    runs: DashMap<String, watch::Sender<Run>>,
    /// Serialises status changes, so each is stored before the next is decided.
    transitions: tokio::sync::Mutex<()>,
    /// Serialises alert checks, so raises and resolves of one problem never interleave.
    alert_checks: tokio::sync::Mutex<()>,
    executors: SyncMutex<HashMap<String, Executor>>,
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
    /// Whether this process executes run `id` now.
    pub fn executes(&self, id: &str) -> bool {
        self.inner.executor(id).is_some()
    }

    /// Reloads every run, stored or cached (after falling too far behind the change
    /// log to know which changed).
    pub async fn refresh_all(&self) -> Result<(), EvaluationError> {
        let mut ids: std::collections::BTreeSet<String> = self
            .inner
            .runs
            .iter()
            .map(|run| run.key().clone())
            .collect();
        ids.extend(
            self.inner
                .store
                .load_runs()
                .await?
                .into_iter()
                .map(|run| run.id),
        );
        for id in ids {
            self.refresh(&id).await?;
        }
        Ok(())
    }

    /// Reloads run `id` after another process created it, changed its status or stored
    /// results of it, so reads, `WatchRun` and release gates on this process see it. A
    /// running run is joined: this process claims a share of its samples. A run ended
    /// elsewhere stops this process's executor of it.
    pub async fn refresh(&self, id: &str) -> Result<(), EvaluationError> {
        let inner = &self.inner;
        let _transitions = inner.transitions.lock().await;
        let Some(stored) = inner.store.get_run(id).await? else {
            inner.runs.remove(id);
            return Ok(());
        };
        let status = stored.status;
        match inner.runs.get(id) {
            // A running run's news is its count of results (this process may have
            // counted its own further already).
            Some(sender) if status == RunStatus::Running && sender.borrow().status == status => {
                drop(sender);
                inner.take_counts(id, stored.progress.counts());
            }
            // Otherwise the stored run is the newest: an end is stored again when
            // results stored meanwhile are summarised too.
            Some(sender) => {
                sender.send_if_modified(|run| {
                    let changed = *run != stored;
                    if changed {
                        *run = stored.clone();
                    }
                    changed
                });
            }
            None => {
                inner
                    .runs
                    .insert(id.to_owned(), watch::channel(stored.clone()).0);
            }
        }
        match inner.executor(id) {
            // Not waited for: it ends by itself, and its end would wait for this lock.
            Some(executor) if status.is_terminal() => executor.cancel(),
            None if status == RunStatus::Running
                && !stored.submitted_outputs
                && !inner.shutdown.is_cancelled() =>
            {
                inner.spawn_executor(stored);
            }
            _ => {}
        }
        Ok(())
    }

    /// Loads every run and resumes those that were RUNNING.
    pub async fn open(
        store: Arc<dyn RunStore>,
        datasets: Arc<DatasetService>,
        registry: Arc<Registry>,
        providers: Arc<ProviderRegistry>,
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
            shutdown: CancellationToken::new(),
        });
        let mut resume = Vec::new();
        let mut complete = Vec::new();
        for run in inner.store.load_runs().await? {
            if run.status == RunStatus::Running {
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
            if let Some(ended) = inner.complete_submitted(&id).await? {
                inner.raise_alerts(&ended).await;
            }
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
            spec.model = inner.providers.select(&[])?.name;
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
            created_by: spec.created_by,
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
            && inner.providers.providers().get(&spec.model).is_none()
        {
            let known = inner.providers.providers().names().join(", ");
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
            if let Err(violation) =
                compile_metric(metric, index, inner.providers.providers(), &inner.registry)
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
        if inner.providers.providers().get(&run.model).is_none() {
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
        inner
            .end(run, RunStatus::Failed, reason, &[])
            .await?
            .ok_or_else(|| {
                EvaluationError::FailedPrecondition(format!(
                    "run {id} was changed by another call meanwhile"
                ))
            })
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

    /// The providers runs may name.
    pub fn providers(&self) -> &ProviderSet {
        self.inner.providers.providers()
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
            if let Some(executor) = inner.executor(id) {
                executor.stop().await;
            }
            // The executor has exited, so the stored results are final: summarise them
            // before taking the lock every run's changes share.
            let results = inner.all_results(id).await?;
            let _guard = inner.transitions.lock().await;
            // A StartRun that got the lock first has just spawned an executor: stop it too.
            if inner.executor(id).is_some() {
                continue;
            }
            let run = inner.get(id)?;
            if run.status.is_terminal() {
                return Err(EvaluationError::FailedPrecondition(format!(
                    "run {id} is already {}",
                    run.status.as_str()
                )));
            }
            // Another process changed the run meanwhile: look again.
            if let Some(ended) = inner
                .end(run, RunStatus::Cancelled, String::new(), &results)
                .await?
            {
                return Ok(ended);
            }
        }
    }
}

impl Inner {
    fn get(&self, id: &str) -> Result<Run, EvaluationError> {
        self.runs
            .get(id)
            .map(|sender| sender.borrow().clone())
            .ok_or_else(|| not_found(id))
    }

    /// This process's executor of run `id`, while it runs.
    fn executor(&self, id: &str) -> Option<Executor> {
        self.executors
            .lock()
            .expect("executors lock")
            .get(id)
            .cloned()
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
        if self
            .store
            .transition_run(&run, RunStatus::Pending)
            .await?
            .is_none()
        {
            let now = self.reload(&run.id).await?;
            return Err(EvaluationError::FailedPrecondition(format!(
                "run {} is {} now: another call changed it first",
                run.id,
                now.status.as_str()
            )));
        }
        self.publish(run.clone());
        Ok(run)
    }

    /// Replaces this process's copy of a run with the stored one, which another process
    /// changed, and returns it.
    async fn reload(&self, id: &str) -> Result<Run, EvaluationError> {
        let stored = self.store.get_run(id).await?.ok_or_else(|| not_found(id))?;
        self.publish(stored.clone());
        Ok(stored)
    }

    fn publish(&self, run: Run) {
        if let Some(sender) = self.runs.get(&run.id) {
            sender.send_replace(run);
        }
    }

    /// Takes the counts of a running run's stored results (every process's) as its
    /// progress, unless this process has counted further already; returns the progress.
    fn take_counts(&self, id: &str, counts: ResultCounts) -> RunProgress {
        let Some(sender) = self.runs.get(id) else {
            return RunProgress::default();
        };
        sender.send_if_modified(|run| {
            // An ended run's progress is its results; nothing is counted after the end.
            if run.status != RunStatus::Running || counts.done <= run.progress.done {
                return false;
            }
            run.progress.set_counts(counts);
            true
        });
        let progress = sender.borrow().progress;
        progress
    }

    /// Ends a run with its results summarised from storage, if its status is still as
    /// this process knows it; Ok(None) when another process changed it first (the
    /// stored run is then this process's copy). Called under the transitions lock.
    async fn end(
        &self,
        run: Run,
        status: RunStatus,
        error: String,
        results: &[SampleResult],
    ) -> Result<Option<Run>, EvaluationError> {
        let from = run.status;
        let mut ended = self.summarised(run, status, error, results);
        let Some(counted) = self.store.transition_run(&ended, from).await? else {
            self.reload(&ended.id).await?;
            return Ok(None);
        };
        // Another replica's executor stored results after `results` were read and before
        // the end, after which none are stored: summarise them all.
        if counted != ended.progress.done {
            let results = self.all_results(&ended.id).await?;
            let error = std::mem::take(&mut ended.error);
            ended = self.summarised(ended, status, error, &results);
            if self.store.transition_run(&ended, status).await?.is_none() {
                self.reload(&ended.id).await?;
                return Ok(None);
            }
        }
        self.note_pass_rate(&ended);
        self.publish(ended.clone());
        Ok(Some(ended))
    }

    /// A run ended with `status`, its results summarised.
    fn summarised(
        &self,
        mut run: Run,
        status: RunStatus,
        error: String,
        results: &[SampleResult],
    ) -> Run {
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
        run
    }
}
