//! The experiment service: definitions and lifecycle, assignment, exposures, metric
//! recording and results.
//!
//! Definitions change under one lock, are written to storage, and only then replace the
//! in-memory copy. Exposures and metric records go through the group-commit writer and
//! are folded into the in-memory statistics after their batch is durable, so results
//! never count a write that could still be lost.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, RwLock};

use chrono::{DateTime, Utc};
use dashmap::DashMap;
use uuid::Uuid;

use crate::assignment::{bucket_ranges, choose_variation, hash_v2, BucketRange};
use crate::error::ExperimentError;
use crate::lifecycle;
use crate::model::{
    AnalysisUnit, Experiment, ExperimentStatus, Exposure, MetricDefinition, MetricKind,
    MetricRecord, Variant,
};
use crate::results::{analyse, ExperimentResults};
use crate::store::{Committed, ExperimentStore};
use crate::tally::Tally;
use crate::validate::{
    check_analysis, check_coverage, check_identifier, check_length, check_metadata, check_metrics,
    check_variants, limits, ExperimentSpec, Violations,
};
use crate::writer::{GroupCommit, OnCommit, Writes};

pub use crate::model::{DEFAULT_ALPHA, DEFAULT_SEQUENTIAL_TUNING};
/// The largest magnitude a metric value may have: squares and sums of values this size
/// stay far from overflow, so statistics never turn into infinities or NaN.
pub const MAX_ABS_VALUE: f64 = 1e15;
/// The most records one `RecordMetrics` call may carry.
pub const MAX_RECORDS_PER_CALL: usize = 10_000;
/// The most exposures one `RecordExposures` call may carry.
pub const MAX_EXPOSURES_PER_CALL: usize = 10_000;
/// The most experiments one list page holds.
pub const MAX_PAGE_SIZE: usize = 1000;

/// Settings that come from configuration.
#[derive(Debug, Clone)]
pub struct Defaults {
    /// Min samples per variant when an experiment does not say.
    pub min_samples: u64,
    /// The model names a variant may use (the configured providers); `None` accepts any.
    pub models: Option<std::collections::BTreeSet<String>>,
}

impl Default for Defaults {
    fn default() -> Self {
        Self {
            min_samples: 100,
            models: None,
        }
    }
}

/// The parts of an experiment `UpdateExperiment` may change; `None` keeps the value.
/// Once the experiment has started only coverage (upwards), description and metadata may.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ExperimentUpdate {
    /// New display name (draft only).
    pub name: Option<String>,
    /// New description.
    pub description: Option<String>,
    /// New hash seed (draft only).
    pub seed: Option<String>,
    /// New coverage; once started it may only rise.
    pub coverage: Option<f64>,
    /// New variants (draft only).
    pub variants: Option<Vec<Variant>>,
    /// New metrics (draft only).
    pub metrics: Option<Vec<MetricDefinition>>,
    /// New alpha (draft only).
    pub alpha: Option<f64>,
    /// New min samples (draft only).
    pub min_samples: Option<u64>,
    /// Sequential testing on or off (draft only).
    pub sequential: Option<bool>,
    /// New tuning parameter (draft only).
    pub sequential_tuning: Option<f64>,
    /// New unit of analysis (draft only).
    pub analysis_unit: Option<AnalysisUnit>,
    /// New metadata (replaces the old).
    pub metadata: Option<BTreeMap<String, String>>,
}

impl ExperimentUpdate {
    /// The fields set that a started experiment no longer lets change.
    fn frozen_fields(&self) -> Vec<&'static str> {
        [
            ("name", self.name.is_some()),
            ("seed", self.seed.is_some()),
            ("variants", self.variants.is_some()),
            ("metrics", self.metrics.is_some()),
            ("alpha", self.alpha.is_some()),
            ("min_samples", self.min_samples.is_some()),
            ("sequential", self.sequential.is_some()),
            ("sequential_tuning", self.sequential_tuning.is_some()),
            ("analysis_unit", self.analysis_unit.is_some()),
        ]
        .into_iter()
        .filter_map(|(name, set)| set.then_some(name))
        .collect()
    }
}

/// The answer to an assignment.
#[derive(Debug, Clone, PartialEq)]
pub struct Assignment {
    /// Whether the user is in the experiment (coverage may leave them out).
    pub in_experiment: bool,
    /// The variant to serve: the user's, or control when not in the experiment.
    pub variant: Variant,
    /// The user's hash in [0, 1).
    pub bucket: f64,
}

/// A metric record as a caller gives it.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct RecordInput {
    /// The experiment.
    pub experiment_id: String,
    /// The variant observed.
    pub variant_id: String,
    /// A declared metric.
    pub metric: String,
    /// The value.
    pub value: f64,
    /// The user (required for per-user analysis).
    pub user_id: String,
    /// Idempotency key; empty for none.
    pub record_id: String,
    /// When observed; now when unset.
    pub time: Option<DateTime<Utc>>,
}

/// How errors name the records of a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecordNaming {
    /// One record: fields are named bare (`value`).
    Single,
    /// A batch, or a chunk of a stream starting at `first_index`: `records[7].value`.
    Batch {
        /// The index of the chunk's first record in the whole call.
        first_index: usize,
    },
}

/// What a batch of records did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RecordOutcome {
    /// Records stored and counted.
    pub accepted: u64,
    /// Records whose id was seen before: acknowledged, not counted again.
    pub duplicates: u64,
}

/// One experiment in memory.
struct Live {
    snapshot: RwLock<Arc<Snapshot>>,
    /// Users already exposed, with their variant index: a repeated assignment touches
    /// no storage.
    known_users: DashMap<String, usize>,
    tally: Mutex<Tally>,
    /// Writes (exposures, records) hold it shared from their status check until they
    /// are committed; status changes hold it exclusively. So once `CompleteExperiment`
    /// answers, no write accepted before it can still land and change the results.
    gate: Arc<tokio::sync::RwLock<()>>,
}

struct Snapshot {
    experiment: Experiment,
    ranges: Vec<BucketRange>,
}

impl Snapshot {
    fn new(experiment: Experiment) -> Arc<Self> {
        let ranges = bucket_ranges(
            experiment.variants.len(),
            experiment.coverage,
            Some(&experiment.weights()),
        );
        Arc::new(Self { experiment, ranges })
    }
}

impl Live {
    fn new(experiment: Experiment) -> Self {
        Self {
            tally: Mutex::new(Tally::new(&experiment)),
            snapshot: RwLock::new(Snapshot::new(experiment)),
            known_users: DashMap::new(),
            gate: Arc::new(tokio::sync::RwLock::new(())),
        }
    }

    fn snapshot(&self) -> Arc<Snapshot> {
        self.snapshot
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    fn replace(&self, experiment: Experiment) {
        *self
            .snapshot
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Snapshot::new(experiment);
    }

    fn tally(&self) -> std::sync::MutexGuard<'_, Tally> {
        self.tally
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

type Experiments = DashMap<String, Arc<Live>>;

/// The experiment service.
pub struct ExperimentService {
    store: Arc<dyn ExperimentStore>,
    experiments: Arc<Experiments>,
    writer: GroupCommit,
    /// Serialises definition and lifecycle changes.
    changes: tokio::sync::Mutex<()>,
    defaults: Defaults,
}

impl std::fmt::Debug for ExperimentService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ExperimentService")
            .field("experiments", &self.experiments.len())
            .finish_non_exhaustive()
    }
}

impl ExperimentService {
    /// Loads every experiment, its exposures and its statistics from `store`, and starts
    /// the group-commit writer.
    pub async fn open(
        store: Arc<dyn ExperimentStore>,
        defaults: Defaults,
    ) -> Result<Self, ExperimentError> {
        let experiments: Arc<Experiments> = Arc::new(DashMap::new());
        for experiment in store.load_experiments().await? {
            let id = experiment.id.clone();
            let mut tally = Tally::new(&experiment);
            store
                .visit_records(&id, &mut |variant, metric, value, user| {
                    tally.add_record(variant, metric, value, user);
                })
                .await?;
            let exposures = store.load_exposures(&id).await?;
            // Only an experiment that can still assign needs to know who is in it.
            let assigning = matches!(
                experiment.status,
                ExperimentStatus::Running | ExperimentStatus::Paused
            );
            let live = Live::new(experiment);
            let snapshot = live.snapshot();
            for (user, variant) in exposures {
                tally.add_exposure(&variant);
                if let Some(index) = snapshot
                    .experiment
                    .variant_index(&variant)
                    .filter(|_| assigning)
                {
                    live.known_users.insert(user, index);
                }
            }
            *live.tally() = tally;
            experiments.insert(id, Arc::new(live));
        }
        let writer = GroupCommit::start(store.clone(), fold_into(experiments.clone()));
        Ok(Self {
            store,
            experiments,
            writer,
            changes: tokio::sync::Mutex::new(()),
            defaults,
        })
    }

    /// Commits queued writes and stops the writer; later writes are refused.
    pub async fn close(&self) {
        self.writer.close().await;
    }

    fn live(&self, id: &str) -> Result<Arc<Live>, ExperimentError> {
        self.experiments
            .get(id)
            .map(|entry| entry.value().clone())
            .ok_or_else(|| ExperimentError::NotFound(format!("experiment {id:?} not found")))
    }

    /// Validates `spec`, fills in defaults and stores it as a draft.
    pub async fn create(&self, spec: ExperimentSpec) -> Result<Experiment, ExperimentError> {
        let now = Utc::now();
        let id = if spec.id.is_empty() {
            Uuid::now_v7().to_string()
        } else {
            spec.id.clone()
        };
        let mut experiment = Experiment::draft(spec, id, self.defaults.min_samples, now);
        self.validate(&experiment)?;
        mark_control(&mut experiment.variants);

        let _guard = self.changes.lock().await;
        if self.experiments.contains_key(&experiment.id) {
            return Err(already_exists(&experiment.id));
        }
        self.store.insert_experiment(&experiment).await.map_err(
            |err| match ExperimentError::from(err) {
                ExperimentError::AlreadyExists(_) => already_exists(&experiment.id),
                other => other,
            },
        )?;
        self.experiments.insert(
            experiment.id.clone(),
            Arc::new(Live::new(experiment.clone())),
        );
        Ok(experiment)
    }

    /// Checks `spec` as `create` would, without storing anything (for callers that must
    /// not write elsewhere before knowing the experiment will be accepted).
    pub fn check(&self, spec: &ExperimentSpec) -> Result<(), ExperimentError> {
        let mut probe = spec.clone();
        if probe.id.is_empty() {
            probe.id = "probe".to_owned();
        } else if self.experiments.contains_key(&probe.id) {
            return Err(already_exists(&probe.id));
        }
        let id = probe.id.clone();
        self.validate(&Experiment::draft(
            probe,
            id,
            self.defaults.min_samples,
            Utc::now(),
        ))
    }

    /// Checks a whole definition: its own rules, and that every variant's model is a
    /// configured provider.
    fn validate(&self, experiment: &Experiment) -> Result<(), ExperimentError> {
        let own = validate(experiment);
        let Some(models) = &self.defaults.models else {
            return own;
        };
        let mut violations = match own {
            Ok(()) => Vec::new(),
            Err(ExperimentError::InvalidArgument(found)) => found,
            Err(other) => return Err(other),
        };
        for (i, variant) in experiment.variants.iter().enumerate() {
            if !variant.model.is_empty() && !models.contains(&variant.model) {
                violations.push(crate::error::FieldViolation::new(
                    format!("variants[{i}].model"),
                    format!(
                        "{:?} is not a configured provider (known: {})",
                        variant.model,
                        models
                            .iter()
                            .map(String::as_str)
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                ));
            }
        }
        if violations.is_empty() {
            Ok(())
        } else {
            Err(ExperimentError::InvalidArgument(violations))
        }
    }

    /// One experiment.
    pub fn get(&self, id: &str) -> Result<Experiment, ExperimentError> {
        Ok(self.live(id)?.snapshot().experiment.clone())
    }

    /// Experiments newest first, optionally of one status, after `page_token`.
    /// Returns the page and the token of the next one (empty at the end).
    pub fn list(
        &self,
        status: Option<ExperimentStatus>,
        page_size: usize,
        page_token: &str,
    ) -> Result<(Vec<Experiment>, String), ExperimentError> {
        let after = parse_page_token(page_token)?;
        let size = page_size.clamp(1, MAX_PAGE_SIZE);
        let mut all: Vec<Experiment> = self
            .experiments
            .iter()
            .map(|entry| entry.value().snapshot().experiment.clone())
            .filter(|e| status.is_none_or(|s| e.status == s))
            .collect();
        all.sort_by_key(|e| std::cmp::Reverse(page_key(e)));
        let mut page: Vec<Experiment> = all
            .into_iter()
            .filter(|e| after.as_ref().is_none_or(|after| page_key(e) < *after))
            .take(size + 1)
            .collect();
        let next = if page.len() > size {
            page.truncate(size);
            page.last().map(page_token_of).unwrap_or_default()
        } else {
            String::new()
        };
        Ok((page, next))
    }

    /// Changes an experiment's definition (anything while draft; only coverage upwards,
    /// description and metadata once started).
    pub async fn update(
        &self,
        id: &str,
        update: ExperimentUpdate,
    ) -> Result<Experiment, ExperimentError> {
        let _guard = self.changes.lock().await;
        let live = self.live(id)?;
        let current = live.snapshot().experiment.clone();
        let mut next = current.clone();
        if current.status.has_started() {
            let frozen = update.frozen_fields();
            if !frozen.is_empty() {
                return Err(ExperimentError::FailedPrecondition(format!(
                    "experiment {id} is {}: only coverage, description and metadata may change once started (not {})",
                    current.status.as_str(),
                    frozen.join(", ")
                )));
            }
            if matches!(
                current.status,
                ExperimentStatus::Completed | ExperimentStatus::Cancelled
            ) {
                if update.coverage.is_some_and(|c| c != current.coverage) {
                    return Err(ExperimentError::FailedPrecondition(format!(
                        "experiment {id} is {}: its coverage is final",
                        current.status.as_str()
                    )));
                }
            } else if let Some(coverage) = update.coverage.filter(|c| *c < current.coverage) {
                return Err(ExperimentError::FailedPrecondition(format!(
                    "experiment {id} is {}: coverage may only rise once started ({} -> {coverage} would move users out of their variant)",
                    current.status.as_str(),
                    current.coverage
                )));
            }
        }
        let ExperimentUpdate {
            name,
            description,
            seed,
            coverage,
            variants,
            metrics,
            alpha,
            min_samples,
            sequential,
            sequential_tuning,
            analysis_unit,
            metadata,
        } = update;
        if let Some(v) = name {
            next.name = v;
        }
        if let Some(v) = description {
            next.description = v;
        }
        if let Some(v) = seed {
            next.seed = if v.is_empty() { next.id.clone() } else { v };
        }
        if let Some(v) = coverage {
            next.coverage = v;
        }
        if let Some(v) = variants {
            next.variants = v;
        }
        if let Some(v) = metrics {
            next.metrics = v;
        }
        if let Some(v) = alpha {
            next.alpha = v;
        }
        if let Some(v) = min_samples {
            next.min_samples = v;
        }
        if let Some(v) = sequential {
            next.sequential = v;
        }
        if let Some(v) = sequential_tuning {
            next.sequential_tuning = v;
        }
        if let Some(v) = analysis_unit {
            next.analysis_unit = v;
        }
        if let Some(v) = metadata {
            next.metadata = v;
        }
        self.validate(&next)?;
        mark_control(&mut next.variants);
        next.updated_at = Utc::now();
        self.store.update_experiment(&next).await?;
        if !current.status.has_started() {
            // A draft has no data yet; its variants or metrics may have changed shape.
            *live.tally() = Tally::new(&next);
        }
        live.replace(next.clone());
        Ok(next)
    }

    /// Starts a draft, or resumes a paused experiment.
    pub async fn start(&self, id: &str) -> Result<Experiment, ExperimentError> {
        self.transition(id, ExperimentStatus::Running, None).await
    }

    /// Pauses a running experiment: no assignment; metrics are still recorded.
    pub async fn pause(&self, id: &str) -> Result<Experiment, ExperimentError> {
        self.transition(id, ExperimentStatus::Paused, None).await
    }

    /// Completes a running or paused experiment, with an optional winner.
    pub async fn complete(&self, id: &str, winner: &str) -> Result<Experiment, ExperimentError> {
        self.transition(id, ExperimentStatus::Completed, Some(winner))
            .await
    }

    /// Cancels an experiment that is not final.
    pub async fn cancel(&self, id: &str) -> Result<Experiment, ExperimentError> {
        self.transition(id, ExperimentStatus::Cancelled, None).await
    }

    async fn transition(
        &self,
        id: &str,
        to: ExperimentStatus,
        winner: Option<&str>,
    ) -> Result<Experiment, ExperimentError> {
        let _guard = self.changes.lock().await;
        let live = self.live(id)?;
        // Waits for writes in flight to commit, and holds new ones until the change is made.
        let _writes = live.gate.write().await;
        let mut next = live.snapshot().experiment.clone();
        lifecycle::check(id, next.status, to)?;
        if let Some(winner) = winner.filter(|w| !w.is_empty()) {
            if next.variant_index(winner).is_none() {
                return Err(ExperimentError::invalid(
                    "winner_variant_id",
                    format!("{winner:?} is not a variant of experiment {id}"),
                ));
            }
            next.winner_variant_id = winner.to_owned();
        }
        let now = Utc::now();
        if to == ExperimentStatus::Running && next.start_time.is_none() {
            next.start_time = Some(now);
        }
        if matches!(
            to,
            ExperimentStatus::Completed | ExperimentStatus::Cancelled
        ) {
            next.end_time = Some(now);
        }
        next.status = to;
        next.updated_at = now;
        self.store.update_experiment(&next).await?;
        live.replace(next.clone());
        Ok(next)
    }

    /// Assigns `user_id` a variant. The first assignment of a user is durable as an
    /// exposure before the answer; later ones touch no storage.
    pub async fn assign(&self, id: &str, user_id: &str) -> Result<Assignment, ExperimentError> {
        check_user_id("user_id", user_id)?;
        let live = self.live(id)?;
        let snapshot = live.snapshot();
        let experiment = &snapshot.experiment;
        if experiment.status != ExperimentStatus::Running {
            return Err(ExperimentError::FailedPrecondition(format!(
                "experiment {id} is {}; users are assigned only while it is running",
                experiment.status.as_str()
            )));
        }
        let bucket = hash_v2(&experiment.seed, user_id);
        if let Some(index) = live.known_users.get(user_id).map(|entry| *entry.value()) {
            return Ok(Assignment {
                in_experiment: true,
                variant: experiment.variants[index].clone(),
                bucket,
            });
        }
        let Some(index) = choose_variation(bucket, &snapshot.ranges) else {
            return Ok(Assignment {
                in_experiment: false,
                variant: experiment.variants[experiment.control_index()].clone(),
                bucket,
            });
        };
        let variant = experiment.variants[index].clone();
        // The status is checked again under the gate, which is held until the exposure
        // is committed (variants and ranges are frozen while running).
        let _writes = live.gate.read().await;
        let status = live.snapshot().experiment.status;
        if status != ExperimentStatus::Running {
            return Err(ExperimentError::FailedPrecondition(format!(
                "experiment {id} is {}; users are assigned only while it is running",
                status.as_str()
            )));
        }
        let exposure = Exposure {
            experiment_id: id.to_owned(),
            user_id: user_id.to_owned(),
            variant_id: variant.id.clone(),
            time: Utc::now(),
        };
        self.writer
            .commit(Writes {
                exposures: vec![exposure],
                records: Vec::new(),
            })
            .await?;
        Ok(Assignment {
            in_experiment: true,
            variant,
            bucket,
        })
    }

    /// Records exposures of users a client assigned locally. Each variant must be the
    /// one the hash gives; users already exposed are acknowledged and not counted again.
    /// Returns how many were new.
    pub async fn record_exposures(
        &self,
        id: &str,
        exposures: Vec<(String, String)>,
    ) -> Result<u64, ExperimentError> {
        let live = self.live(id)?;
        let _writes = live.gate.read().await;
        let snapshot = live.snapshot();
        let experiment = &snapshot.experiment;
        if !experiment.status.accepts_metrics() {
            return Err(ExperimentError::FailedPrecondition(format!(
                "experiment {id} is {}; exposures are recorded only while it is running or paused",
                experiment.status.as_str()
            )));
        }
        if exposures.len() > MAX_EXPOSURES_PER_CALL {
            return Err(ExperimentError::invalid(
                "exposures",
                format!("at most {MAX_EXPOSURES_PER_CALL} per call"),
            ));
        }
        let mut violations = Violations::default();
        let now = Utc::now();
        let mut writes = Vec::with_capacity(exposures.len());
        for (i, (user_id, variant_id)) in exposures.into_iter().enumerate() {
            if let Err(ExperimentError::InvalidArgument(v)) =
                check_user_id(&format!("exposures[{i}].user_id"), &user_id)
            {
                violations.extend(v);
                continue;
            }
            let expected = choose_variation(hash_v2(&experiment.seed, &user_id), &snapshot.ranges);
            match expected {
                Some(index) if experiment.variants[index].id == variant_id => {}
                Some(index) => violations.add(
                    format!("exposures[{i}].variant_id"),
                    format!(
                        "user {user_id:?} hashes to variant {:?}, not {variant_id:?}",
                        experiment.variants[index].id
                    ),
                ),
                None => violations.add(
                    format!("exposures[{i}].user_id"),
                    format!("user {user_id:?} is outside the experiment's coverage"),
                ),
            }
            writes.push(Exposure {
                experiment_id: id.to_owned(),
                user_id,
                variant_id,
                time: now,
            });
        }
        violations.into_result()?;
        let committed = self
            .writer
            .commit(Writes {
                exposures: writes,
                records: Vec::new(),
            })
            .await?;
        Ok(committed.exposures.iter().filter(|new| **new).count() as u64)
    }

    /// Records metric values, durably, all or none: a batch with any bad record changes
    /// nothing, and the error names each bad record.
    pub async fn record_metrics(
        &self,
        inputs: Vec<RecordInput>,
        naming: RecordNaming,
    ) -> Result<RecordOutcome, ExperimentError> {
        if inputs.len() > MAX_RECORDS_PER_CALL {
            return Err(ExperimentError::invalid(
                "records",
                format!("at most {MAX_RECORDS_PER_CALL} records per call"),
            ));
        }
        // Hold every involved experiment's gate (in id order, so two batches cannot wait
        // on each other) from the status checks until the commit.
        let mut involved: Vec<&str> = inputs.iter().map(|r| r.experiment_id.as_str()).collect();
        involved.sort_unstable();
        involved.dedup();
        let mut _writes = Vec::with_capacity(involved.len());
        for id in involved {
            if let Ok(live) = self.live(id) {
                _writes.push(live.gate.clone().read_owned().await);
            }
        }
        let mut violations = Violations::default();
        let mut records = Vec::with_capacity(inputs.len());
        let now = Utc::now();
        for (i, input) in inputs.into_iter().enumerate() {
            let prefix = match naming {
                RecordNaming::Single => String::new(),
                RecordNaming::Batch { first_index } => format!("records[{}].", first_index + i),
            };
            match self.check_record(&prefix, &input) {
                Ok(()) => records.push(MetricRecord {
                    experiment_id: input.experiment_id,
                    variant_id: input.variant_id,
                    metric: input.metric,
                    value: input.value,
                    user_id: input.user_id,
                    record_id: input.record_id,
                    time: input.time.unwrap_or(now),
                }),
                Err(ExperimentError::InvalidArgument(found)) => violations.extend(found),
                // Name the record in a batch, as field violations do.
                Err(other) if prefix.is_empty() => return Err(other),
                Err(ExperimentError::NotFound(message)) => {
                    return Err(ExperimentError::NotFound(format!(
                        "{}: {message}",
                        prefix.trim_end_matches('.')
                    )))
                }
                Err(ExperimentError::FailedPrecondition(message)) => {
                    return Err(ExperimentError::FailedPrecondition(format!(
                        "{}: {message}",
                        prefix.trim_end_matches('.')
                    )))
                }
                Err(other) => return Err(other),
            }
        }
        violations.into_result()?;
        if records.is_empty() {
            return Ok(RecordOutcome::default());
        }
        let committed = self
            .writer
            .commit(Writes {
                exposures: Vec::new(),
                records,
            })
            .await?;
        let accepted = committed.records.iter().filter(|new| **new).count() as u64;
        Ok(RecordOutcome {
            accepted,
            duplicates: committed.records.len() as u64 - accepted,
        })
    }

    fn check_record(&self, prefix: &str, input: &RecordInput) -> Result<(), ExperimentError> {
        let field = |name: &str| format!("{prefix}{name}");
        if input.experiment_id.is_empty() {
            return Err(ExperimentError::invalid(
                field("experiment_id"),
                "is required",
            ));
        }
        let live = self.live(&input.experiment_id)?;
        let snapshot = live.snapshot();
        let experiment = &snapshot.experiment;
        if !experiment.status.accepts_metrics() {
            return Err(ExperimentError::FailedPrecondition(format!(
                "experiment {} is {}; metrics are recorded only while it is running or paused",
                experiment.id,
                experiment.status.as_str()
            )));
        }
        let mut violations = Violations::default();
        if experiment.variant_index(&input.variant_id).is_none() {
            violations.add(
                field("variant_id"),
                format!(
                    "{:?} is not a variant of experiment {}",
                    input.variant_id, experiment.id
                ),
            );
        }
        match experiment.metric(&input.metric) {
            None => violations.add(
                field("metric"),
                format!(
                    "{:?} is not declared by experiment {} (declared: {})",
                    input.metric,
                    experiment.id,
                    experiment
                        .metrics
                        .iter()
                        .map(|m| m.name.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            ),
            Some(metric) => {
                if !(input.value.is_finite() && input.value.abs() <= MAX_ABS_VALUE) {
                    violations.add(
                        field("value"),
                        format!(
                            "{} is not a finite number within +-{MAX_ABS_VALUE:e}",
                            input.value
                        ),
                    );
                } else if metric.kind == MetricKind::Proportion
                    && input.value != 0.0
                    && input.value != 1.0
                {
                    violations.add(
                        field("value"),
                        format!(
                            "{} is a proportion: values are 0 or 1, not {}",
                            metric.name, input.value
                        ),
                    );
                }
            }
        }
        if experiment.analysis_unit == AnalysisUnit::User && input.user_id.is_empty() {
            violations.add(
                field("user_id"),
                "is required: the experiment is analysed per user",
            );
        }
        if input.user_id.len() > limits::USER_ID_BYTES {
            violations.add(
                field("user_id"),
                format!("is longer than {} bytes", limits::USER_ID_BYTES),
            );
        }
        if input.record_id.len() > limits::RECORD_ID_BYTES {
            violations.add(
                field("record_id"),
                format!("is longer than {} bytes", limits::RECORD_ID_BYTES),
            );
        }
        violations.into_result()
    }

    /// The experiment and its results, computed from the in-memory statistics.
    pub fn results(&self, id: &str) -> Result<(Experiment, ExperimentResults), ExperimentError> {
        let live = self.live(id)?;
        let snapshot = live.snapshot();
        let results = analyse(&snapshot.experiment, &live.tally());
        Ok((snapshot.experiment.clone(), results))
    }

    /// The ids of running experiments (for the alert monitor).
    pub fn running(&self) -> Vec<String> {
        self.experiments
            .iter()
            .filter(|entry| entry.value().snapshot().experiment.status == ExperimentStatus::Running)
            .map(|entry| entry.key().clone())
            .collect()
    }
}

/// Folds committed writes into the in-memory state; runs in the writer before any
/// caller of the batch is answered.
fn fold_into(experiments: Arc<Experiments>) -> OnCommit {
    Box::new(move |writes: &Writes, committed: &Committed| {
        for (exposure, &new) in writes.exposures.iter().zip(&committed.exposures) {
            let Some(live) = experiments
                .get(&exposure.experiment_id)
                .map(|e| e.value().clone())
            else {
                continue;
            };
            if let Some(index) = live
                .snapshot()
                .experiment
                .variant_index(&exposure.variant_id)
            {
                live.known_users
                    .entry(exposure.user_id.clone())
                    .or_insert(index);
            }
            if new {
                live.tally().add_exposure(&exposure.variant_id);
            }
        }
        for (record, &new) in writes.records.iter().zip(&committed.records) {
            if !new {
                continue;
            }
            if let Some(live) = experiments
                .get(&record.experiment_id)
                .map(|e| e.value().clone())
            {
                live.tally().add_record(
                    &record.variant_id,
                    &record.metric,
                    record.value,
                    &record.user_id,
                );
            }
        }
    })
}

fn already_exists(id: &str) -> ExperimentError {
    ExperimentError::AlreadyExists(format!("experiment {id:?} already exists"))
}

fn check_user_id(field: &str, user_id: &str) -> Result<(), ExperimentError> {
    if user_id.is_empty() {
        return Err(ExperimentError::invalid(field, "is required"));
    }
    if user_id.len() > limits::USER_ID_BYTES {
        return Err(ExperimentError::invalid(
            field,
            format!("is longer than {} bytes", limits::USER_ID_BYTES),
        ));
    }
    Ok(())
}

/// Checks a whole experiment definition, reporting every problem.
fn validate(experiment: &Experiment) -> Result<(), ExperimentError> {
    let mut violations = Violations::default();
    check_identifier(&mut violations, "id", &experiment.id);
    if experiment.name.trim().is_empty() {
        violations.add("name", "is required");
    }
    check_length(
        &mut violations,
        "name",
        &experiment.name,
        limits::NAME_BYTES,
    );
    check_length(
        &mut violations,
        "description",
        &experiment.description,
        limits::DESCRIPTION_BYTES,
    );
    check_length(
        &mut violations,
        "seed",
        &experiment.seed,
        limits::SEED_BYTES,
    );
    check_coverage(&mut violations, experiment.coverage);
    check_variants(&mut violations, &experiment.variants);
    check_metrics(&mut violations, &experiment.metrics);
    check_analysis(
        &mut violations,
        experiment.alpha,
        experiment.min_samples,
        experiment.sequential_tuning,
    );
    check_metadata(&mut violations, &experiment.metadata);
    violations.into_result()
}

/// Marks the first variant as control when none is (validation refused several).
fn mark_control(variants: &mut [Variant]) {
    if !variants.iter().any(|v| v.is_control) {
        if let Some(first) = variants.first_mut() {
            first.is_control = true;
        }
    }
}

fn page_key(experiment: &Experiment) -> (i64, String) {
    (
        experiment.created_at.timestamp_micros(),
        experiment.id.clone(),
    )
}

fn page_token_of(experiment: &Experiment) -> String {
    let (micros, id) = page_key(experiment);
    format!("{micros}:{id}")
}

fn parse_page_token(token: &str) -> Result<Option<(i64, String)>, ExperimentError> {
    if token.is_empty() {
        return Ok(None);
    }
    token
        .split_once(':')
        .and_then(|(micros, id)| Some((micros.parse().ok()?, id.to_owned())))
        .map(Some)
        .ok_or_else(|| ExperimentError::invalid("page_token", "is not a token this server issued"))
}
