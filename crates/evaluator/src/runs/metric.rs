//! A run's metrics, compiled: a local scorer, or judges (one, or a panel).

use llmops_registry::{Registry, VersionSelector};

use super::model::MetricConfig;
use crate::judges::JudgeConfig;
use crate::providers::ProviderSet;
use crate::scorers::{Scorer, ScorerError};
use crate::FieldViolation;

/// Scorers that call models.
pub const JUDGE_SCORERS: &[&str] = &["llm_judge", "panel"];

/// How a metric scores.
#[derive(Debug, Clone)]
pub(crate) enum MetricScorer {
    /// Computed here.
    Local(Scorer),
    /// Asked of one judge or a panel.
    Judge(JudgeConfig),
}

/// A metric ready to score.
#[derive(Debug, Clone)]
pub(crate) struct CompiledMetric {
    /// As configured.
    pub(crate) config: MetricConfig,
    /// How it scores.
    pub(crate) scorer: MetricScorer,
}

/// Compiles `config` (the run's `metrics[index]`). Judge metrics must name configured
/// providers, and a judge prompt from the registry must exist.
pub(crate) fn compile_metric(
    config: &MetricConfig,
    index: usize,
    providers: &ProviderSet,
    registry: &Registry,
) -> Result<CompiledMetric, FieldViolation> {
    let field = |rest: &str| format!("metrics[{index}].{rest}");
    let scorer =
        if JUDGE_SCORERS.contains(&config.scorer.as_str()) {
            let judge =
                JudgeConfig::from_params(&config.scorer, &config.name, &config.params, &|name| {
                    providers.get(name).is_some()
                })
                .map_err(|(param, message)| {
                    FieldViolation::new(field(&format!("params.{param}")), message)
                })?;
            if let crate::judges::JudgePrompt::Registry { name, label } = &judge.prompt {
                let selector = if label.is_empty() {
                    VersionSelector::Active
                } else {
                    VersionSelector::Label(label.clone())
                };
                registry
                    .get_version(name, &selector)
                    .map_err(|err| FieldViolation::new(field("params.prompt"), err.to_string()))?;
            }
            MetricScorer::Judge(judge)
        } else {
            let scorer = Scorer::from_config(&config.scorer, &config.params, &config.name)
                .map_err(|err| match err {
                    ScorerError::Unknown(_) => FieldViolation::new(
                        field("scorer"),
                        format!("{err}, {}", JUDGE_SCORERS.join(", ")),
                    ),
                    ScorerError::InvalidParam { param, message } => {
                        FieldViolation::new(field(&format!("params.{param}")), message)
                    }
                })?;
            MetricScorer::Local(scorer)
        };
    Ok(CompiledMetric {
        config: config.clone(),
        scorer,
    })
}
