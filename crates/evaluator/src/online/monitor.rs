//! Alerts on live quality: after each window, the thresholds of every online evaluation
//! are checked per prompt version, model and variant.

use std::collections::{BTreeMap, HashSet};

use chrono::{DateTime, Utc};
use llmops_alerts::{AlertError, AlertSeverity, AlertSink, AlertType, NewAlert};
use llmops_generations::UsageDimension;

use super::model::OnlineEvaluation;
use super::service::OnlineEvaluationService;
use super::stats::{floor, OnlineGroup, OnlineGroupKey, OnlineStatsQuery};
use crate::EvaluationError;

/// The `source` of online evaluation alerts.
pub const ONLINE_ALERT_SOURCE: &str = "online_evaluation";

/// Checks the latest complete window of each online evaluation: a group (prompt
/// version, model, variant) with at least `min_samples` scored that breaks a bound
/// raises a THRESHOLD alert, one within bounds resolves it. Groups with fewer samples
/// change nothing. Checking again is harmless (alerts are deduplicated), so any process
/// holding the monitor role may run it.
#[derive(Debug, Default)]
pub struct OnlineMonitor {
    /// The window last checked per evaluation and group: each window is acted on once.
    checked: std::sync::Mutex<std::collections::HashMap<(String, OnlineGroupKey), DateTime<Utc>>>,
}

impl OnlineMonitor {
    /// Checks every online evaluation at `now`; how many alerts were raised or resolved.
    pub async fn check(
        &self,
        service: &OnlineEvaluationService,
        alerts: &dyn AlertSink,
        now: DateTime<Utc>,
    ) -> Result<usize, EvaluationError> {
        let mut changes = 0;
        let open: HashSet<String> = alerts
            .open_of_source(super::ONLINE_ALERT_SOURCE)
            .await
            .into_iter()
            .map(|(fingerprint, _)| fingerprint)
            .collect();
        for evaluation in service.all() {
            if evaluation.paused || evaluation.thresholds.is_empty() {
                continue;
            }
            let width = i64::try_from(evaluation.window.as_micros()).unwrap_or(i64::MAX);
            let end = floor(now.timestamp_micros(), width);
            let start = end - width;
            let query = OnlineStatsQuery {
                evaluation_id: evaluation.id.clone(),
                group_by: vec![
                    UsageDimension::PromptVersion,
                    UsageDimension::Model,
                    UsageDimension::ExperimentVariant,
                ],
                since: DateTime::from_timestamp_micros(start).unwrap_or_default(),
                until: DateTime::from_timestamp_micros(end).unwrap_or_default(),
                bucket: evaluation.window,
            };
            let groups = match service.stats(&query).await {
                Ok(groups) => groups,
                Err(EvaluationError::NotFound(_)) => continue,
                Err(err) => return Err(err),
            };
            for group in groups {
                if group.totals.scored < evaluation.min_samples {
                    continue;
                }
                let place = (evaluation.id.clone(), group.key.clone());
                let seen = self.checked.lock().expect("checked lock").get(&place)
                    == Some(&group.bucket_start);
                if seen {
                    continue;
                }
                for check in checks(&evaluation, &group) {
                    let fingerprint = check.alert.dedup_key();
                    let outcome = match (check.breaching, open.contains(&fingerprint)) {
                        (true, false) => alerts
                            .raise(check.alert)
                            .await
                            .map(|raised| !raised.deduplicated),
                        (false, true) => alerts
                            .resolve_fingerprint(&fingerprint)
                            .await
                            .map(|resolved| resolved.is_some()),
                        _ => Ok(false),
                    };
                    match outcome {
                        Ok(true) => changes += 1,
                        Ok(false) => {}
                        Err(AlertError::Storage(error)) => {
                            return Err(EvaluationError::Storage(error.to_string()))
                        }
                        Err(error) => {
                            tracing::warn!(%error, "an online evaluation alert was refused")
                        }
                    }
                }
                self.checked
                    .lock()
                    .expect("checked lock")
                    .insert(place, group.bucket_start);
            }
        }
        Ok(changes)
    }
}

/// One bound checked in one group's window.
struct Check {
    alert: NewAlert,
    breaching: bool,
}

/// The bounds of `evaluation` checked against `group`'s window.
fn checks(evaluation: &OnlineEvaluation, group: &OnlineGroup) -> Vec<Check> {
    let totals = &group.totals;
    let thresholds = &evaluation.thresholds;
    let mut checks = Vec::new();
    let mut check = |metric: &str, value: f64, bound: f64, below: bool| {
        let breaching = if below { value < bound } else { value > bound };
        let key = &group.key;
        let mut labels = BTreeMap::from([
            ("prompt".to_owned(), key.prompt_name.clone()),
            ("version".to_owned(), key.prompt_version.clone()),
            ("model".to_owned(), key.model.clone()),
            ("metric".to_owned(), metric.to_owned()),
        ]);
        if !key.experiment_id.is_empty() {
            labels.insert("experiment".to_owned(), key.experiment_id.clone());
            labels.insert("variant".to_owned(), key.variant_id.clone());
        }
        let window_end =
            group.bucket_start + chrono::Duration::from_std(evaluation.window).unwrap_or_default();
        let metadata = BTreeMap::from([
            ("value".to_owned(), format!("{value}")),
            ("samples".to_owned(), totals.scored.to_string()),
            ("window_start".to_owned(), group.bucket_start.to_rfc3339()),
            ("window_end".to_owned(), window_end.to_rfc3339()),
            ("online_evaluation".to_owned(), evaluation.name.clone()),
        ]);
        let relation = if below {
            "below its minimum"
        } else {
            "above its maximum"
        };
        checks.push(Check {
            alert: NewAlert {
                alert_type: AlertType::Threshold,
                severity: AlertSeverity::Warning,
                message: format!(
                    "{metric} of {} {} on {} was {value:.4} over {} scored samples from {} to {}, {relation} of {bound}",
                    key.prompt_name,
                    key.prompt_version,
                    if key.model.is_empty() { "any model" } else { key.model.as_str() },
                    totals.scored,
                    group.bucket_start.to_rfc3339(),
                    window_end.to_rfc3339(),
                ),
                source: super::ONLINE_ALERT_SOURCE.to_owned(),
                source_id: evaluation.id.clone(),
                metric: metric.to_owned(),
                threshold: Some(bound),
                actual_value: Some(value),
                labels,
                metadata,
                fingerprint: String::new(),
            },
            breaching,
        });
    };
    if let Some(minimum) = thresholds.min_pass_rate {
        check("pass_rate", totals.pass_rate(), minimum, true);
    }
    for (name, minimum) in &thresholds.metric_minimums {
        if let Some(metric) = totals.metrics.get(name) {
            check(name, metric.mean(), *minimum, true);
        }
    }
    if let Some(maximum) = thresholds.max_latency_p99_ms {
        if !totals.latency.is_empty() {
            check(
                "latency_p99_ms",
                totals.latency.quantile_ms(0.99),
                maximum,
                false,
            );
        }
    }
    checks
}
