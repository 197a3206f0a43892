//! Release gates: a prompt's label (or its active pointer) only moves to a version that
//! passed its evaluation.
//!
//! A gate names a dataset, a model and a minimum pass rate. A version passes when a
//! completed run of exactly that version, on the dataset at its current version, with
//! the model, reached the minimum; with `no_regression`, its pass rate must also not
//! have fallen by more than the regression alert's margin below that of the version the
//! pointer holds now (measured the same way). The registry asks through its
//! `ReleaseGuard` trait, which the server implements with [`GateService::evaluate`].

use std::collections::BTreeMap;
use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use tokio::sync::Mutex;

use crate::datasets::DatasetService;
use crate::error::{EvaluationError, FieldViolation, StoreError};
use llmops_registry::{ReleaseBasis, ReleaseCheck};

use crate::providers::selection::AUTO;
use crate::runs::{pass_rate_regressed, Run, RunService, RunStatus, PASS_RATE_DROP};

/// The most gates one list page holds.
const MAX_PAGE_SIZE: usize = 1000;
const DEFAULT_PAGE_SIZE: usize = 100;

/// A release gate.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReleaseGate {
    /// The prompt.
    pub prompt_name: String,
    /// The label guarded; `active` guards the active pointer.
    pub label: String,
    /// The dataset a version must pass.
    pub dataset_id: String,
    /// The provider the run must have used.
    pub model: String,
    /// In [0, 1].
    pub min_pass_rate: f64,
    /// Also require no regression against the pointer's current version.
    pub no_regression: bool,
    /// Creation time.
    pub created_at: DateTime<Utc>,
    /// Last change.
    pub updated_at: DateTime<Utc>,
}

/// Durable storage of gates.
#[async_trait]
pub trait GateStore: Send + Sync + 'static {
    /// Inserts or replaces the gate of its prompt and label.
    async fn upsert_gate(&self, gate: &ReleaseGate) -> Result<(), StoreError>;
    /// Deletes a gate; false if there was none.
    async fn delete_gate(&self, prompt_name: &str, label: &str) -> Result<bool, StoreError>;
    /// Every gate.
    async fn load_gates(&self) -> Result<Vec<ReleaseGate>, StoreError>;
}

type Key = (String, String);

/// Gates and the check the registry asks for.
pub struct GateService {
    store: Arc<dyn GateStore>,
    runs: Arc<RunService>,
    datasets: Arc<DatasetService>,
    gates: Mutex<BTreeMap<Key, ReleaseGate>>,
}

impl std::fmt::Debug for GateService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GateService").finish_non_exhaustive()
    }
}

fn not_found(prompt_name: &str, label: &str) -> EvaluationError {
    EvaluationError::NotFound(format!(
        "prompt {prompt_name:?} has no release gate on {label:?}"
    ))
}

fn percent(rate: f64) -> String {
    format!("{:.1}%", rate * 100.0)
}

impl GateService {
    /// Loads every gate.
    pub async fn open(
        store: Arc<dyn GateStore>,
        runs: Arc<RunService>,
        datasets: Arc<DatasetService>,
    ) -> Result<Self, EvaluationError> {
        let gates = store
            .load_gates()
            .await?
            .into_iter()
            .map(|gate| ((gate.prompt_name.clone(), gate.label.clone()), gate))
            .collect();
        Ok(Self {
            store,
            runs,
            datasets,
            gates: Mutex::new(gates),
        })
    }

    /// Reloads every gate from storage after another process changed one. (A label
    /// move checked against a gate this process has not reloaded yet still fails: the
    /// move's transaction checks the gate it was decided on; see `ReleaseBasis`.)
    pub async fn refresh_all(&self) -> Result<(), EvaluationError> {
        // Under the lock local changes commit under, so the cache never moves back.
        let mut gates = self.gates.lock().await;
        *gates = self
            .store
            .load_gates()
            .await?
            .into_iter()
            .map(|gate| ((gate.prompt_name.clone(), gate.label.clone()), gate))
            .collect();
        Ok(())
    }

    /// Creates or replaces a gate (its times are set here).
    pub async fn set(&self, mut gate: ReleaseGate) -> Result<ReleaseGate, EvaluationError> {
        let mut violations = Vec::new();
        if let Err(v) = llmops_registry::validate_prompt_name("prompt_name", &gate.prompt_name) {
            violations.push(FieldViolation::new(v.field, v.description));
        }
        if gate.label != llmops_registry::ACTIVE_POINTER {
            if let Err(v) = llmops_registry::validate_label("label", &gate.label) {
                violations.push(FieldViolation::new(v.field, v.description));
            }
        }
        if gate.dataset_id.is_empty() {
            violations.push(FieldViolation::new("dataset_id", "is required"));
        }
        if gate.model.is_empty() {
            violations.push(FieldViolation::new("model", "is required"));
        } else if gate.model == AUTO {
            violations.push(FieldViolation::new(
                "model",
                "name a provider: runs record the provider `auto` chose, so a gate on `auto` could never pass",
            ));
        } else if self.runs.providers().get(&gate.model).is_none() {
            violations.push(FieldViolation::new(
                "model",
                format!(
                    "{:?} is not a configured provider; known: {}",
                    gate.model,
                    self.runs.providers().names().join(", ")
                ),
            ));
        }
        if !(0.0..=1.0).contains(&gate.min_pass_rate) {
            violations.push(FieldViolation::new("min_pass_rate", "must be in [0, 1]"));
        }
        if !violations.is_empty() {
            return Err(EvaluationError::InvalidArgument(violations));
        }
        // A gate uses its dataset: setting one must not interleave with deleting the
        // dataset (see `DatasetUsers`).
        let _claim = self.datasets.claim().await;
        self.datasets.get(&gate.dataset_id)?;
        let mut gates = self.gates.lock().await;
        let key = (gate.prompt_name.clone(), gate.label.clone());
        let now = Utc::now();
        gate.created_at = gates.get(&key).map_or(now, |existing| existing.created_at);
        gate.updated_at = now;
        self.store.upsert_gate(&gate).await?;
        gates.insert(key, gate.clone());
        tracing::info!(prompt = %gate.prompt_name, label = %gate.label, dataset = %gate.dataset_id, model = %gate.model, min_pass_rate = gate.min_pass_rate, "release gate set");
        Ok(gate)
    }

    /// One gate.
    pub async fn get(
        &self,
        prompt_name: &str,
        label: &str,
    ) -> Result<ReleaseGate, EvaluationError> {
        self.gates
            .lock()
            .await
            .get(&(prompt_name.to_owned(), label.to_owned()))
            .cloned()
            .ok_or_else(|| not_found(prompt_name, label))
    }

    /// Gates by prompt then label, of one prompt when given. The page token is
    /// `<prompt>\n<label>` of the last gate returned.
    pub async fn list(
        &self,
        prompt_name: Option<&str>,
        page_size: usize,
        page_token: &str,
    ) -> Result<(Vec<ReleaseGate>, String), EvaluationError> {
        let after = if page_token.is_empty() {
            None
        } else {
            let (prompt, label) = page_token.split_once('\n').ok_or_else(|| {
                EvaluationError::invalid("page_token", "is not a token this server issued")
            })?;
            Some((prompt.to_owned(), label.to_owned()))
        };
        let size = if page_size == 0 {
            DEFAULT_PAGE_SIZE
        } else {
            page_size.min(MAX_PAGE_SIZE)
        };
        let gates = self.gates.lock().await;
        let mut page: Vec<ReleaseGate> = gates
            .iter()
            .filter(|(key, _)| after.as_ref().is_none_or(|after| *key > after))
            .filter(|(key, _)| prompt_name.is_none_or(|p| key.0 == p))
            .take(size + 1)
            .map(|(_, gate)| gate.clone())
            .collect();
        let next = if page.len() > size {
            page.truncate(size);
            page.last()
                .map(|g| format!("{}\n{}", g.prompt_name, g.label))
                .unwrap_or_default()
        } else {
            String::new()
        };
        Ok((page, next))
    }

    /// The gates (prompt, label) that require runs on `dataset_id`.
    pub async fn using_dataset(&self, dataset_id: &str) -> Vec<(String, String)> {
        self.gates
            .lock()
            .await
            .values()
            .filter(|g| g.dataset_id == dataset_id)
            .map(|g| (g.prompt_name.clone(), g.label.clone()))
            .collect()
    }

    /// The labels (and `active`) of `prompt_name` that have a gate, sorted.
    pub async fn labels_gated(&self, prompt_name: &str) -> Vec<String> {
        self.gates
            .lock()
            .await
            .keys()
            .filter(|(prompt, _)| prompt == prompt_name)
            .map(|(_, label)| label.clone())
            .collect()
    }

    /// Removes a gate.
    pub async fn delete(&self, prompt_name: &str, label: &str) -> Result<(), EvaluationError> {
        let mut gates = self.gates.lock().await;
        let key = (prompt_name.to_owned(), label.to_owned());
        if !gates.contains_key(&key) {
            return Err(not_found(prompt_name, label));
        }
        self.store.delete_gate(prompt_name, label).await?;
        gates.remove(&key);
        tracing::info!(prompt = prompt_name, label, "release gate deleted");
        Ok(())
    }

    /// Whether the move `request` describes may happen; the error says which run is
    /// missing or which figure fell short.
    pub async fn evaluate(&self, request: &ReleaseCheck<'_>) -> Result<ReleaseBasis, String> {
        let ReleaseCheck {
            prompt,
            pointer,
            version,
            version_created_at,
            current,
        } = *request;
        let Some(gate) = self
            .gates
            .lock()
            .await
            .get(&(prompt.to_owned(), pointer.to_owned()))
            .cloned()
        else {
            return Ok(ReleaseBasis::default());
        };
        let dataset = self.datasets.get(&gate.dataset_id).map_err(|_| {
            format!(
                "the gate's dataset {} no longer exists; set the gate again",
                gate.dataset_id
            )
        })?;
        // Only the server's own calls of the gate's model count (outputs a client
        // submitted could say anything), on the dataset as it is now. A run that
        // started before the version existed evaluated an earlier version of that
        // number (a deleted one).
        let run_of = |version: &str, created_at: Option<chrono::DateTime<Utc>>| {
            self.runs.find_latest(|run: &Run| {
                run.status == RunStatus::Completed
                    && !run.submitted_outputs
                    && run.dataset_id == gate.dataset_id
                    && run.dataset_version == dataset.version
                    && run.prompt_name == prompt
                    && run.prompt_version == version
                    && run.model == gate.model
                    && created_at.is_none_or(|at| run.started_at.unwrap_or(run.created_at) >= at)
            })
        };
        let where_ = format!(
            "on dataset {} at version {} with model {}",
            gate.dataset_id, dataset.version, gate.model
        );
        let Some(run) = run_of(version, Some(version_created_at)) else {
            return Err(format!(
                "no completed run of version {version} {where_}; run one first"
            ));
        };
        let pass_rate = run.results.as_ref().map_or(0.0, |r| r.pass_rate);
        if pass_rate < gate.min_pass_rate {
            return Err(format!(
                "run {} of version {version} passed {}, below the gate's {}",
                run.id,
                percent(pass_rate),
                percent(gate.min_pass_rate)
            ));
        }
        if gate.no_regression {
            if let Some(current) = current.filter(|current| *current != version) {
                let Some(baseline) = run_of(current, None) else {
                    return Err(format!(
                        "no_regression: no completed run of the current version {current} {where_} to compare with; run one first"
                    ));
                };
                let baseline_rate = baseline.results.as_ref().map_or(0.0, |r| r.pass_rate);
                if pass_rate_regressed(baseline_rate, pass_rate) {
                    return Err(format!(
                        "no_regression: run {} of version {version} passed {}, more than {:.0} points below run {} of the current version {current} ({})",
                        run.id,
                        percent(pass_rate),
                        PASS_RATE_DROP * 100.0,
                        baseline.id,
                        percent(baseline_rate)
                    ));
                }
            }
        }
        Ok(ReleaseBasis {
            gate_updated_at: Some(gate.updated_at),
            dataset: Some((gate.dataset_id.clone(), dataset.version)),
        })
    }
}
