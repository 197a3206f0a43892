//! Experiment alerts: raised through the alert service when a running experiment's
//! results show a sample ratio mismatch (WARNING), a guardrail significantly worse
//! (CRITICAL) or a winner that became decidable (INFO); resolved when the condition
//! clears or the experiment stops running. The alert service deduplicates by
//! fingerprint, and the monitor only raises on a change, so a condition that persists
//! does not add an occurrence every minute.

use std::collections::{BTreeMap, HashMap};

use llmops_alerts::{AlertError, AlertSeverity, AlertSink, AlertType, NewAlert};
use tokio::sync::Mutex;

use crate::results::ExperimentResults;
use crate::service::ExperimentService;

/// The `source` of experiment alerts.
pub const SOURCE: &str = "experiments";

/// Remembers what it has raised, by fingerprint, with the experiment it concerns.
#[derive(Debug, Default)]
pub struct AlertMonitor {
    /// `None` until the first check reads the open experiment alerts.
    raised: Mutex<Option<HashMap<String, String>>>,
}

impl AlertMonitor {
    /// A monitor that starts from the experiment alerts open in the alert service: after
    /// a restart, a condition that still holds is not raised again (its alert would gain
    /// an occurrence per restart), and one that cleared meanwhile is resolved.
    pub fn new() -> Self {
        Self::default()
    }

    /// Checks every running experiment once; returns how many alerts were raised or
    /// resolved.
    pub async fn check(
        &self,
        experiments: &ExperimentService,
        sink: &dyn AlertSink,
    ) -> Result<usize, AlertError> {
        let mut state = self.raised.lock().await;
        if state.is_none() {
            *state = Some(sink.open_of_source(SOURCE).await.into_iter().collect());
        }
        let raised = state.as_mut().expect("set above");
        let mut current: HashMap<String, (String, NewAlert)> = HashMap::new();
        for id in experiments.running() {
            let Ok((experiment, results)) = experiments.results(&id) else {
                continue;
            };
            for alert in conditions(&experiment.id, &experiment.name, &results) {
                current.insert(alert.dedup_key(), (id.clone(), alert));
            }
        }
        let mut changes = 0;
        for (key, (experiment_id, alert)) in &current {
            if !raised.contains_key(key) {
                sink.raise(alert.clone()).await?;
                raised.insert(key.clone(), experiment_id.clone());
                changes += 1;
            }
        }
        let cleared: Vec<String> = raised
            .keys()
            .filter(|key| !current.contains_key(*key))
            .cloned()
            .collect();
        for key in cleared {
            sink.resolve_fingerprint(&key).await?;
            raised.remove(&key);
            changes += 1;
        }
        Ok(changes)
    }
}

/// The alerts an experiment's results call for.
pub fn conditions(id: &str, name: &str, results: &ExperimentResults) -> Vec<NewAlert> {
    let alert = |severity,
                 condition: &str,
                 metric: &str,
                 variant: &str,
                 message: String,
                 value: Option<f64>| {
        let mut labels = BTreeMap::from([("condition".to_owned(), condition.to_owned())]);
        if !variant.is_empty() {
            labels.insert("variant".to_owned(), variant.to_owned());
        }
        NewAlert {
            alert_type: AlertType::Experiment,
            severity,
            message,
            source: SOURCE.to_owned(),
            source_id: id.to_owned(),
            metric: metric.to_owned(),
            threshold: None,
            actual_value: value,
            labels,
            metadata: BTreeMap::from([("experiment_name".to_owned(), name.to_owned())]),
            fingerprint: String::new(),
        }
    };
    let mut alerts = Vec::new();
    if results.srm.detected {
        alerts.push(alert(
            AlertSeverity::Warning,
            "sample_ratio_mismatch",
            "exposures",
            "",
            format!(
                "experiment {id}: sample ratio mismatch, exposures {:?} against expected {:?} (p = {:.2e})",
                results.srm.observed,
                results.srm.expected.iter().map(|e| e.round()).collect::<Vec<_>>(),
                results.srm.p_value.unwrap_or(0.0)
            ),
            results.srm.p_value,
        ));
    }
    for (variant, metric, p) in &results.guardrail_failures {
        alerts.push(alert(
            AlertSeverity::Critical,
            "guardrail",
            metric,
            variant,
            format!("experiment {id}: guardrail {metric} is significantly worse in {variant} (p = {p:.4})"),
            Some(*p),
        ));
    }
    if let Some(winner) = &results.winner_variant_id {
        alerts.push(alert(
            AlertSeverity::Info,
            "winner",
            "",
            winner,
            format!("experiment {id}: {}", results.recommendation),
            results.confidence,
        ));
    }
    alerts
}
