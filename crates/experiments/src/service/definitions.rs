//! Definitions and their lifecycle: create, check, update, start, pause, complete and
//! cancel, under the service's one change lock; reads and pages of definitions.

use super::templates::TemplateError;
use super::*;
use crate::model::StatusChange;

impl ExperimentService {
    /// Validates `spec`, fills in defaults and stores it as a draft.
    pub async fn create(&self, spec: ExperimentSpec) -> Result<Experiment, ExperimentError> {
        let nothing_first = async { Ok::<_, ExperimentError>(Vec::new()) };
        self.create_after(spec, nothing_first)
            .await
            .map_err(|err| match err {
                TemplateError::Experiment(err) | TemplateError::Prompts(err) => err,
            })
    }

    /// [`Self::create`], running `first` once the experiment is known to be accepted
    /// (valid, its id free) and under the change lock, so no other change can slip in
    /// between: `first` stores what the experiment refers to and answers the stored
    /// version of each (variant index, version) it stored; if it fails, nothing of the
    /// experiment is stored.
    pub(super) async fn create_after<E>(
        &self,
        spec: ExperimentSpec,
        first: impl std::future::Future<Output = Result<Vec<(usize, String)>, E>>,
    ) -> Result<Experiment, TemplateError<E>> {
        let now = Utc::now();
        let id = if spec.id.is_empty() {
            Uuid::now_v7().to_string()
        } else {
            spec.id.clone()
        };
        let mut experiment = Experiment::draft(spec, id, self.defaults.min_samples, now);
        self.validate(&experiment)
            .map_err(TemplateError::Experiment)?;
        mark_control(&mut experiment.variants);

        let _guard = self.changes.lock().await;
        if self.experiments.contains_key(&experiment.id) {
            return Err(TemplateError::Experiment(already_exists(&experiment.id)));
        }
        for (index, version) in first.await.map_err(TemplateError::Prompts)? {
            if let Some(variant) = experiment.variants.get_mut(index) {
                variant.prompt_version = version;
            }
        }
        self.store
            .insert_experiment(&experiment)
            .await
            .map_err(|err| match ExperimentError::from(err) {
                ExperimentError::AlreadyExists(_) => already_exists(&experiment.id),
                other => other,
            })
            .map_err(TemplateError::Experiment)?;
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
            auto_complete,
            promote_winner,
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
        if let Some(v) = auto_complete {
            next.auto_complete = v;
        }
        if let Some(v) = promote_winner {
            if v && next.serves_prompt.is_empty() {
                return Err(ExperimentError::invalid(
                    "promote_winner",
                    "moving the winner's version needs the label the experiment serves",
                ));
            }
            next.promote_winner = v;
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

    /// The id of the running experiment that serves `prompt`'s `label`, if any. Asked by
    /// every render with a user, so it copies the id alone, not the experiment.
    pub fn serving(&self, prompt: &str, label: &str) -> Option<String> {
        self.experiments.iter().find_map(|entry| {
            let snapshot = entry.value().snapshot();
            let experiment = &snapshot.experiment;
            (experiment.status == ExperimentStatus::Running
                && experiment.serves_prompt == prompt
                && experiment.serves_label == label)
                .then(|| experiment.id.clone())
        })
    }

    /// Starts a draft, or resumes a paused experiment. `actor` (who asks; empty when
    /// unknown) is recorded with the change, as with every status change.
    pub async fn start(&self, id: &str, actor: &str) -> Result<Experiment, ExperimentError> {
        self.transition(id, ExperimentStatus::Running, None, actor)
            .await
    }

    /// Pauses a running experiment: no assignment; metrics are still recorded.
    pub async fn pause(&self, id: &str, actor: &str) -> Result<Experiment, ExperimentError> {
        self.transition(id, ExperimentStatus::Paused, None, actor)
            .await
    }

    /// Completes a running or paused experiment, with an optional winner.
    pub async fn complete(
        &self,
        id: &str,
        winner: &str,
        actor: &str,
    ) -> Result<Experiment, ExperimentError> {
        self.transition(id, ExperimentStatus::Completed, Some(winner), actor)
            .await
    }

    /// Cancels an experiment that is not final.
    pub async fn cancel(&self, id: &str, actor: &str) -> Result<Experiment, ExperimentError> {
        self.transition(id, ExperimentStatus::Cancelled, None, actor)
            .await
    }

    async fn transition(
        &self,
        id: &str,
        to: ExperimentStatus,
        winner: Option<&str>,
        actor: &str,
    ) -> Result<Experiment, ExperimentError> {
        let _guard = self.changes.lock().await;
        let live = self.live(id)?;
        // Waits for writes in flight to commit, and holds new ones until the change is made.
        let _writes = live.gate.write().await;
        let mut next = live.snapshot().experiment.clone();
        lifecycle::check(id, next.status, to)?;
        if to == ExperimentStatus::Running && !next.serves_prompt.is_empty() {
            if let Some(other) = self.serving(&next.serves_prompt, &next.serves_label) {
                if other != next.id {
                    return Err(ExperimentError::FailedPrecondition(format!(
                        "experiment {:?} already serves {:?} label {:?}; complete, pause or cancel it first",
                        other, next.serves_prompt, next.serves_label
                    )));
                }
            }
        }
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
        next.status_changes.push(StatusChange {
            status: to,
            at: now,
            actor: actor.to_owned(),
        });
        self.store.update_experiment(&next).await?;
        live.replace(next.clone());
        Ok(next)
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
    /// Let the experiment monitor complete it (or stop it from doing so); any time
    /// before it ends.
    pub auto_complete: Option<bool>,
    /// Move the served label when completing automatically.
    pub promote_winner: Option<bool>,
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

fn already_exists(id: &str) -> ExperimentError {
    ExperimentError::AlreadyExists(format!("experiment {id:?} already exists"))
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
