//! The registry's release guard, answered by evaluation's release gates. It lives here,
//! where both crates are wired, so the registry never depends on the evaluator.

use std::sync::Arc;

use async_trait::async_trait;
use llmops_evaluator::gates::GateService;
use llmops_registry::{ReleaseBasis, ReleaseCheck, ReleaseGuard};

/// Asks the gate of a prompt's pointer whether a version passed its evaluation.
pub struct EvaluationGuard {
    gates: Arc<GateService>,
}

impl EvaluationGuard {
    /// A guard over `gates`.
    pub fn new(gates: Arc<GateService>) -> Self {
        Self { gates }
    }
}

#[async_trait]
impl ReleaseGuard for EvaluationGuard {
    async fn check(&self, request: &ReleaseCheck<'_>) -> Result<ReleaseBasis, String> {
        self.gates.evaluate(request).await
    }

    async fn gated_pointers(&self, prompt: &str) -> Vec<String> {
        self.gates.labels_gated(prompt).await
    }
}
