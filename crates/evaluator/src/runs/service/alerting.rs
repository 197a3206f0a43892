//! What a finished run tells others: its regression against a baseline and threshold
//! breaches become alerts (resolved when a later run is back within bounds), and its pass
//! rate is reported to the provider registry.

use super::*;

impl Inner {
    /// The run a completed run is checked against: its explicit baseline, or the most
    /// recent completed run created before it with the same dataset, prompt and model.
    pub(super) fn baseline_of(&self, run: &Run) -> Option<Run> {
        if !run.baseline_run_id.is_empty() {
            return self
                .get(&run.baseline_run_id)
                .ok()
                .filter(|b| b.status == RunStatus::Completed);
        }
        self.runs
            .iter()
            .map(|entry| entry.borrow().clone())
            .filter(|other| {
                other.id != run.id
                    && other.status == RunStatus::Completed
                    && other.dataset_id == run.dataset_id
                    && other.prompt_name == run.prompt_name
                    && other.model == run.model
                    && (other.created_at, &other.id) < (run.created_at, &run.id)
            })
            .max_by(|a, b| (a.created_at, &a.id).cmp(&(b.created_at, &b.id)))
    }

    /// Raises or resolves the regression and threshold alerts of a completed run.
    pub(super) async fn raise_alerts(&self, run: &Run) {
        let Some(results) = &run.results else {
            return;
        };
        let _serial = self.alert_checks.lock().await;
        // Alerts speak for the latest run of a dataset, prompt and model: a run that
        // completes after a newer one must not reopen what the newer one resolved.
        let newer = self.runs.iter().any(|entry| {
            let other = entry.borrow();
            other.id != run.id
                && other.status == RunStatus::Completed
                && other.dataset_id == run.dataset_id
                && other.prompt_name == run.prompt_name
                && other.model == run.model
                && (other.created_at, &other.id) > (run.created_at, &run.id)
        });
        if newer {
            return;
        }
        let mut checks: Vec<AlertCheck> = Vec::new();
        let baseline = (!run.compared_with_run_id.is_empty())
            .then(|| self.get(&run.compared_with_run_id).ok())
            .flatten();
        if let Some(baseline) = baseline {
            let baseline_results = baseline.results.clone().unwrap_or_default();
            // McNemar needs the same samples: the same dataset at the same version.
            let paired = if baseline.dataset_id == run.dataset_id
                && baseline.dataset_version == run.dataset_version
            {
                match self.paired(&baseline.id, &run.id).await {
                    Ok(paired) => Some(paired),
                    Err(err) => {
                        tracing::warn!(run_id = %run.id, error = %err, "reading paired outcomes failed; the alert goes without McNemar's test");
                        None
                    }
                }
            } else {
                None
            };
            checks.extend(regression_checks(
                &baseline,
                &baseline_results,
                run,
                results,
                paired.as_ref(),
            ));
        }
        checks.extend(threshold_checks(
            run,
            results,
            &self.settings.alert_thresholds,
        ));
        for check in checks {
            let alert = check.alert;
            let outcome = if check.breaching {
                self.alerts.raise(alert).await.map(|_| ())
            } else {
                self.alerts
                    .resolve_fingerprint(&alert.dedup_key())
                    .await
                    .map(|_| ())
            };
            if let Err(err) = outcome {
                tracing::warn!(run_id = %run.id, error = %err, "raising an evaluation alert failed");
            }
        }
    }

    /// Counts a completed run's pass rate into its model's recent ones.
    pub(super) fn note_pass_rate(&self, run: &Run) {
        let Some(results) = &run.results else {
            return;
        };
        // Outputs a client submitted say nothing of the provider's answers.
        if run.status != RunStatus::Completed || run.submitted_outputs || results.total == 0 {
            return;
        }
        let finished = run.finished_at.unwrap_or(run.created_at);
        self.providers
            .report_run(&run.model, finished, results.pass_rate);
    }
}

/// Each metric's threshold by name.
pub(super) fn thresholds(run: &Run) -> BTreeMap<String, f64> {
    run.metrics
        .iter()
        .map(|m| (m.name.clone(), m.threshold))
        .collect()
}
