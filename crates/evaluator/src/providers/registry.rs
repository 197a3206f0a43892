//! The provider registry: the configured providers, their health, and the pass rates
//! runs report, which together score providers for selection. Runs report their
//! outcomes here; ProviderService and `auto` variants read from here.

use std::collections::HashMap;
use std::sync::Mutex;

use chrono::{DateTime, Utc};

use super::selection::{self, PASS_RATE_RUNS};
use super::{ProviderSet, ProviderStatus};
use crate::error::EvaluationError;

/// When a run finished, and its pass rate.
type FinishedPassRate = (DateTime<Utc>, f64);

/// The configured providers, their health and recent pass rates.
#[derive(Debug)]
pub struct ProviderRegistry {
    providers: ProviderSet,
    /// Per model, the pass rates of its latest finished runs (newest first, at most
    /// [`PASS_RATE_RUNS`]): provider selection's scores.
    recent_pass_rates: Mutex<HashMap<String, Vec<FinishedPassRate>>>,
}

impl ProviderRegistry {
    /// A registry over `providers`, with no run reported yet.
    pub fn new(providers: ProviderSet) -> Self {
        Self {
            providers,
            recent_pass_rates: Mutex::new(HashMap::new()),
        }
    }

    /// The providers runs may name.
    pub fn providers(&self) -> &ProviderSet {
        &self.providers
    }

    /// Records that a completed run of `model` that scored samples finished at
    /// `finished` with `pass_rate`.
    pub fn report_run(&self, model: &str, finished: DateTime<Utc>, pass_rate: f64) {
        let mut recent = self.recent_pass_rates.lock().expect("pass rates lock");
        let rates = recent.entry(model.to_owned()).or_default();
        rates.push((finished, pass_rate));
        rates.sort_by_key(|(finished, _)| std::cmp::Reverse(*finished));
        rates.truncate(PASS_RATE_RUNS);
    }

    /// The mean pass rate of the [`PASS_RATE_RUNS`] most recently finished runs of
    /// `model`; None without any. Kept up to date as runs end, so selection (on every
    /// `auto` assignment) reads it in constant time.
    pub fn recent_pass_rate(&self, model: &str) -> Option<f64> {
        let recent = self.recent_pass_rates.lock().expect("pass rates lock");
        let rates = recent.get(model)?;
        (!rates.is_empty())
            .then(|| rates.iter().map(|(_, rate)| rate).sum::<f64>() / rates.len() as f64)
    }

    /// Every provider's health and score (a configured score, else its recent pass rate).
    pub fn statuses(&self) -> Vec<ProviderStatus> {
        self.providers
            .health()
            .statuses(|model| self.recent_pass_rate(model))
    }

    /// The provider `candidates` should use (see [`selection::select`]).
    pub fn select(&self, candidates: &[String]) -> Result<ProviderStatus, EvaluationError> {
        selection::select(&self.statuses(), candidates).cloned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_recent_pass_rate_is_the_mean_of_the_newest_runs() {
        let registry = ProviderRegistry::new(ProviderSet::default());
        assert_eq!(registry.recent_pass_rate("m"), None);
        let start = Utc::now();
        // Reported out of order: the oldest is dropped once more than PASS_RATE_RUNS are in.
        for i in (0..=PASS_RATE_RUNS as i64).rev() {
            let rate = if i == 0 { 0.0 } else { 1.0 };
            registry.report_run("m", start + chrono::Duration::seconds(i), rate);
        }
        assert_eq!(registry.recent_pass_rate("m"), Some(1.0));
        assert_eq!(registry.recent_pass_rate("other"), None);
    }
}
