//! Experiments made from a template: a prompt experiment (a control and a treatment
//! prompt version, stored in the prompt registry by the same request) and a model
//! experiment (several models), each with the metrics its kind is judged on.

use async_trait::async_trait;
use serde_json::{Map, Value};

use super::*;
use crate::model::{MetricDirection, MetricRole};

/// The treatment's share of a prompt experiment when none is given.
pub const DEFAULT_TREATMENT_SHARE: f64 = 0.5;

/// What a prompt experiment needs from the prompt registry. The server implements it
/// over its registry (as it does the registry's `ReleaseGuard`): this crate knows
/// nothing of prompts.
#[async_trait]
pub trait PromptVersions: Send + Sync {
    /// A new prompt version as the client gave it.
    type Version: Send;
    /// Why the registry refused.
    type Error: Send;

    /// Checks every version, then stores each (or reuses an identical stored one); a
    /// refusal stores none. Answers the stored version string of each, in order;
    /// violations name the field paired with each version.
    async fn ensure(
        &self,
        versions: Vec<(String, Self::Version)>,
    ) -> Result<Vec<String>, Self::Error>;
}

/// One side of a prompt experiment.
#[derive(Debug, Clone)]
pub struct PromptArm<V> {
    /// The prompt the version belongs to.
    pub prompt_name: String,
    /// The version as given (the registry answers the one it stores).
    pub version: String,
    /// The version to store.
    pub new: V,
}

/// A prompt experiment as a client asks for it.
#[derive(Debug, Clone)]
pub struct PromptExperiment<V> {
    /// Generated when empty.
    pub id: String,
    /// Display name.
    pub name: String,
    /// What is being tested.
    pub description: String,
    /// The version users see today.
    pub control: PromptArm<V>,
    /// The version under test.
    pub treatment: PromptArm<V>,
    /// The treatment's share of traffic, in (0, 1); [`DEFAULT_TREATMENT_SHARE`] when
    /// `None`.
    pub treatment_share: Option<f64>,
    /// Who creates it; empty when unknown.
    pub created_by: String,
    /// The prompt and label to serve while running (both or neither): a RenderPrompt or
    /// GetPromptVersion of that label with a user gets the user's variant's version.
    pub serves: Option<(String, String)>,
    /// The metrics; empty for quality (primary), latency and satisfaction.
    pub metrics: Vec<MetricDefinition>,
    /// Completed by the experiment monitor once a decision is justified.
    pub auto_complete: bool,
    /// An automatic completion moves the served label to the winner's version.
    pub promote_winner: bool,
}

/// A model experiment as a client asks for it.
#[derive(Debug, Clone, Default)]
pub struct ModelExperiment {
    /// Generated when empty.
    pub id: String,
    /// Display name.
    pub name: String,
    /// What is being tested.
    pub description: String,
    /// At least two models; the first is the control.
    pub models: Vec<String>,
    /// Parameters every variant passes to its model.
    pub parameters: Map<String, Value>,
    /// Who creates it; empty when unknown.
    pub created_by: String,
}

/// Why a prompt experiment was refused: by the experiment's own rules or by the
/// registry.
#[derive(Debug)]
pub enum TemplateError<E> {
    /// The experiment is invalid, its id is taken, or storage failed.
    Experiment(ExperimentError),
    /// The registry refused a version.
    Prompts(E),
}

/// A template's metrics: quality first, then latency and `third` (what else the kind
/// of experiment trades off).
fn default_metrics(third: (&str, MetricDirection)) -> Vec<MetricDefinition> {
    let (name, direction) = third;
    vec![
        metric(
            "quality",
            MetricDirection::HigherIsBetter,
            MetricRole::Primary,
        ),
        metric(
            "latency",
            MetricDirection::LowerIsBetter,
            MetricRole::Secondary,
        ),
        metric(name, direction, MetricRole::Secondary),
    ]
}

fn metric(name: &str, direction: MetricDirection, role: MetricRole) -> MetricDefinition {
    MetricDefinition::new(name, MetricKind::Mean, direction, role)
}

fn variant(id: &str, control: bool) -> Variant {
    Variant {
        is_control: control,
        ..Variant::new(id)
    }
}

impl ExperimentService {
    /// Creates a prompt experiment in one step: the experiment is checked first, then
    /// both versions are checked and stored (or identical stored ones reused), then the
    /// experiment is stored, all under the change lock. A refusal by either side stores
    /// nothing.
    pub async fn create_prompt_experiment<P: PromptVersions>(
        &self,
        request: PromptExperiment<P::Version>,
        prompts: &P,
    ) -> Result<Experiment, TemplateError<P::Error>> {
        let share = request.treatment_share.unwrap_or(DEFAULT_TREATMENT_SHARE);
        if !(share > 0.0 && share < 1.0) {
            return Err(TemplateError::Experiment(ExperimentError::invalid(
                "treatment_share",
                format!("{share} is not between 0 and 1 (exclusive)"),
            )));
        }
        let PromptExperiment {
            id,
            name,
            description,
            control,
            treatment,
            created_by,
            serves,
            metrics,
            auto_complete,
            promote_winner,
            ..
        } = request;
        let (serves_prompt, serves_label) = serves.unwrap_or_default();
        if promote_winner && serves_prompt.is_empty() {
            return Err(TemplateError::Experiment(ExperimentError::invalid(
                "promote_winner",
                "moving the winner's version needs the label it serves: set prompt_name and label",
            )));
        }
        if !serves_prompt.is_empty()
            && (control.prompt_name != serves_prompt || treatment.prompt_name != serves_prompt)
        {
            return Err(TemplateError::Experiment(ExperimentError::invalid(
                "prompt_name",
                format!(
                    "the experiment serves {serves_prompt:?}, so control and treatment must be versions of it"
                ),
            )));
        }
        let mut variants = vec![variant("control", true), variant("treatment", false)];
        for (variant, (arm, weight)) in variants
            .iter_mut()
            .zip([(&control, 1.0 - share), (&treatment, share)])
        {
            variant.prompt_name = arm.prompt_name.clone();
            variant.prompt_version = arm.version.clone();
            variant.weight = Some(weight);
        }
        let spec = ExperimentSpec {
            id,
            created_by,
            serves_prompt,
            serves_label,
            auto_complete,
            promote_winner,
            name,
            description,
            variants,
            metrics: if metrics.is_empty() {
                default_metrics(("satisfaction", MetricDirection::HigherIsBetter))
            } else {
                metrics
            },
            ..ExperimentSpec::default()
        };
        let store_versions = async {
            let stored = prompts
                .ensure(vec![
                    ("control".to_owned(), control.new),
                    ("treatment".to_owned(), treatment.new),
                ])
                .await?;
            // The stored version string (build metadata included) is what clients fetch.
            Ok(stored.into_iter().enumerate().collect())
        };
        self.create_after(spec, store_versions).await
    }

    /// Creates a model experiment: one variant per model, the first the control.
    pub async fn create_model_experiment(
        &self,
        request: ModelExperiment,
    ) -> Result<Experiment, ExperimentError> {
        if request.models.len() < 2 {
            return Err(ExperimentError::invalid(
                "models",
                "a model experiment needs at least 2 models",
            ));
        }
        let variants = request
            .models
            .iter()
            .enumerate()
            .map(|(i, model)| Variant {
                model: model.clone(),
                parameters: request.parameters.clone(),
                ..variant(model, i == 0)
            })
            .collect();
        self.create(ExperimentSpec {
            id: request.id,
            created_by: request.created_by,
            serves_prompt: String::new(),
            serves_label: String::new(),
            name: request.name,
            description: request.description,
            variants,
            metrics: default_metrics(("cost", MetricDirection::LowerIsBetter)),
            ..ExperimentSpec::default()
        })
        .await
    }
}
