//! Online evaluation's links to the rest of the server: which experiment serves a label
//! (the experiments service knows), and the loop that checks live quality.

use std::sync::Arc;
use std::time::Duration;

use llmops_alerts::AlertService;
use llmops_core::Clock;
use llmops_evaluator::online::{OnlineEvaluationService, OnlineMonitor, ServingExperiments};
use llmops_experiments::ExperimentService;
use tokio_util::sync::CancellationToken;

/// The experiments service, as online evaluation's filters ask it.
#[derive(Debug)]
pub(crate) struct ServingFromExperiments(pub(crate) Arc<ExperimentService>);

impl ServingExperiments for ServingFromExperiments {
    fn serving(&self, prompt: &str, label: &str) -> Option<String> {
        self.0.serving(prompt, label)
    }
}

/// Checks the windows of online evaluations against their thresholds every `interval`
/// until `stop`.
pub(crate) async fn monitor_online(
    online: Arc<OnlineEvaluationService>,
    alerts: Arc<AlertService>,
    clock: Arc<dyn Clock>,
    interval: Duration,
    stop: CancellationToken,
) {
    let monitor = OnlineMonitor::default();
    loop {
        match monitor.check(&online, alerts.as_ref(), clock.now()).await {
            Ok(0) => {}
            Ok(changes) => tracing::info!(changes, "online evaluation alerts raised or resolved"),
            Err(error) => {
                tracing::warn!(%error, "checking online evaluation alerts failed; will retry")
            }
        }
        tokio::select! {
            () = stop.cancelled() => return,
            () = clock.sleep(interval) => {}
        }
    }
}
