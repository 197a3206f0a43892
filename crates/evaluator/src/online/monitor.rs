//! Alerts on live quality: after each window, the thresholds of every online evaluation
//! are checked per prompt version, model and variant.

use std::collections::{BTreeMap, HashSet};

use chrono::{DateTime, Utc};
use llmops_alerts::{AlertError, AlertSeverity, AlertSink, AlertType, NewAlert};
use llmops_generations::UsageDimension;

use super::model::OnlineEvaluation;
use super::regression::{two_proportion_smaller, PassCount, REGRESSION_ALPHA};
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
        let open_alerts = alerts.open_of_source(super::ONLINE_ALERT_SOURCE).await;
        // The alerts of a deleted evaluation speak for nothing any more (asked of the
        // store, not only this process's copy, which may lag another replica's create).
        for (fingerprint, evaluation_id) in &open_alerts {
            if service.cached(evaluation_id).is_none()
                && service
                    .store
                    .get_online_evaluation(evaluation_id)
                    .await?
                    .is_none()
            {
                match alerts.resolve_fingerprint(fingerprint).await {
                    Ok(resolved) => changes += usize::from(resolved.is_some()),
                    Err(AlertError::Storage(error)) => return Err(EvaluationError::Storage(error)),
                    Err(error) => {
                        tracing::warn!(%error, "an online evaluation alert was not resolved")
                    }
                }
            }
        }
        let open: HashSet<String> = open_alerts
            .into_iter()
            .map(|(fingerprint, _)| fingerprint)
            .collect();
        for evaluation in service.all() {
            if evaluation.paused {
                continue;
            }
            let width = i64::try_from(evaluation.window.as_micros()).unwrap_or(i64::MAX);
            let end = floor(now.timestamp_micros(), width);
            match self
                .check_regressions(service, alerts, &evaluation, end, &open)
                .await
            {
                Ok(changed) => changes += changed,
                Err(EvaluationError::NotFound(_)) => continue,
                Err(err) => return Err(err),
            }
            if evaluation.thresholds.is_empty() {
                continue;
            }
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
                            return Err(EvaluationError::Storage(error))
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

/// Windows looked back through for the previous version's last full window, at most.
const REGRESSION_LOOKBACK_WINDOWS: u32 = 168;
/// And at most this far back.
const REGRESSION_LOOKBACK: std::time::Duration = std::time::Duration::from_secs(7 * 24 * 3600);

impl OnlineMonitor {
    /// Compares each prompt version's pass rate in the latest complete window (ending at
    /// `end`, µs) with the previous version's last full window: a significant drop (the
    /// one-sided two-proportion z-test below [`REGRESSION_ALPHA`]) raises a REGRESSION
    /// alert, a later window without one resolves it.
    async fn check_regressions(
        &self,
        service: &OnlineEvaluationService,
        alerts: &dyn AlertSink,
        evaluation: &OnlineEvaluation,
        end: i64,
        open: &HashSet<String>,
    ) -> Result<usize, EvaluationError> {
        let lookback = (evaluation.window * REGRESSION_LOOKBACK_WINDOWS).min(REGRESSION_LOOKBACK);
        let lookback = i64::try_from(lookback.as_micros()).unwrap_or(i64::MAX);
        let query = OnlineStatsQuery {
            evaluation_id: evaluation.id.clone(),
            group_by: vec![UsageDimension::PromptVersion],
            since: DateTime::from_timestamp_micros(end - lookback).unwrap_or_default(),
            until: DateTime::from_timestamp_micros(end).unwrap_or_default(),
            bucket: evaluation.window,
        };
        // Per version (by precedence), its full windows in time order.
        let mut full: BTreeMap<(semver::Version, String), FullWindows> = BTreeMap::new();
        for group in service.stats(&query).await? {
            let Ok(version) = semver::Version::parse(&group.key.prompt_version) else {
                continue;
            };
            if group.totals.scored >= evaluation.min_samples {
                full.entry((version, group.key.prompt_version.clone()))
                    .or_default()
                    .push((
                        group.bucket_start,
                        PassCount {
                            passed: group.totals.passed,
                            scored: group.totals.scored,
                        },
                    ));
            }
        }
        let latest = DateTime::from_timestamp_micros(end).unwrap_or_default()
            - chrono::Duration::from_std(evaluation.window).unwrap_or_default();
        let versions: Vec<_> = full.iter().collect();
        let mut changes = 0;
        for (index, ((_, version), windows)) in versions.iter().enumerate() {
            let Some((start, current)) = windows.last().filter(|(start, _)| *start == latest)
            else {
                continue;
            };
            let Some(((_, previous), earlier)) = index.checked_sub(1).map(|i| versions[i]) else {
                continue;
            };
            let Some((previous_start, before)) = earlier.last() else {
                continue;
            };
            let place = (evaluation.id.clone(), regression_key(version));
            if self.checked.lock().expect("checked lock").get(&place) == Some(start) {
                continue;
            }
            let tested = two_proportion_smaller(*current, *before);
            let regressed = tested.is_some_and(|(_, p)| p < REGRESSION_ALPHA);
            let prompt = evaluation.filter.prompt_name.clone();
            let (z, p) = tested.unwrap_or((f64::NAN, f64::NAN));
            let alert = NewAlert {
                alert_type: AlertType::Regression,
                severity: AlertSeverity::Critical,
                message: format!(
                    "the pass rate of {prompt} {version} fell to {:.4} ({} of {}) from {previous}'s {:.4} ({} of {}): one-sided two-proportion z-test p = {p:.4}",
                    current.rate(),
                    current.passed,
                    current.scored,
                    before.rate(),
                    before.passed,
                    before.scored,
                ),
                source: super::ONLINE_ALERT_SOURCE.to_owned(),
                source_id: evaluation.id.clone(),
                metric: "pass_rate".to_owned(),
                threshold: Some(REGRESSION_ALPHA),
                actual_value: Some(current.rate()),
                labels: BTreeMap::from([
                    ("prompt".to_owned(), prompt),
                    ("version".to_owned(), version.clone()),
                    ("previous_version".to_owned(), previous.clone()),
                    ("metric".to_owned(), "pass_rate".to_owned()),
                ]),
                metadata: BTreeMap::from([
                    ("test".to_owned(), "two-proportion z-test, pooled, one-sided (the newer pass rate is lower)".to_owned()),
                    ("p_value".to_owned(), format!("{p}")),
                    ("z".to_owned(), format!("{z}")),
                    ("samples".to_owned(), current.scored.to_string()),
                    ("previous_samples".to_owned(), before.scored.to_string()),
                    ("previous_pass_rate".to_owned(), format!("{}", before.rate())),
                    ("window_start".to_owned(), start.to_rfc3339()),
                    ("previous_window_start".to_owned(), previous_start.to_rfc3339()),
                ]),
                fingerprint: String::new(),
            };
            let fingerprint = alert.dedup_key();
            let outcome = match (regressed, open.contains(&fingerprint)) {
                (true, false) => alerts.raise(alert).await.map(|raised| !raised.deduplicated),
                (false, true) => alerts
                    .resolve_fingerprint(&fingerprint)
                    .await
                    .map(|resolved| resolved.is_some()),
                _ => Ok(false),
            };
            match outcome {
                Ok(true) => changes += 1,
                Ok(false) => {}
                Err(AlertError::Storage(error)) => return Err(EvaluationError::Storage(error)),
                Err(error) => tracing::warn!(%error, "an online regression alert was refused"),
            }
            self.checked
                .lock()
                .expect("checked lock")
                .insert(place, *start);
        }
        Ok(changes)
    }
}

/// A version's windows with at least `min_samples` scored, oldest first.
type FullWindows = Vec<(DateTime<Utc>, PassCount)>;

/// The place regression checks are remembered under (apart from threshold checks).
fn regression_key(version: &str) -> OnlineGroupKey {
    OnlineGroupKey {
        prompt_version: version.to_owned(),
        user_id: "regression".to_owned(),
        ..OnlineGroupKey::default()
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
