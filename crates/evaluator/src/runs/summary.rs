//! A run's results, summarised from its per-sample results.

use std::collections::BTreeMap;

use super::model::{
    LatencySummary, MetricSummary, Outcome, RunResults, SampleResult, DEFAULT_THRESHOLD,
};

/// The `q` quantile (0..=1) of sorted values, interpolating linearly between order
/// statistics as numpy's default `percentile` does. Empty: 0.
pub fn quantile(sorted: &[f64], q: f64) -> f64 {
    match sorted.len() {
        0 => 0.0,
        1 => sorted[0],
        n => {
            let rank = q.clamp(0.0, 1.0) * (n - 1) as f64;
            let low = rank.floor() as usize;
            let high = rank.ceil() as usize;
            sorted[low] + (sorted[high] - sorted[low]) * (rank - low as f64)
        }
    }
}

/// Welford's running mean and variance, with the range.
#[derive(Debug, Clone, Copy, Default)]
struct Running {
    count: u64,
    mean: f64,
    m2: f64,
    min: f64,
    max: f64,
    reached: u64,
}

impl Running {
    fn add(&mut self, value: f64, reached: bool) {
        if self.count == 0 {
            (self.min, self.max) = (value, value);
        }
        self.count += 1;
        let delta = value - self.mean;
        self.mean += delta / self.count as f64;
        self.m2 += delta * (value - self.mean);
        self.min = self.min.min(value);
        self.max = self.max.max(value);
        self.reached += u64::from(reached);
    }

    fn summary(&self) -> MetricSummary {
        MetricSummary {
            mean: self.mean,
            std: if self.count > 1 {
                (self.m2 / (self.count - 1) as f64).sqrt()
            } else {
                0.0
            },
            count: self.count,
            min: self.min,
            max: self.max,
            pass_rate: if self.count == 0 {
                0.0
            } else {
                self.reached as f64 / self.count as f64
            },
        }
    }
}

/// Summarises results. `thresholds` gives each metric's pass threshold; scores of other
/// names (submitted from elsewhere) use the default.
pub fn summarise<'a>(
    results: impl IntoIterator<Item = &'a SampleResult>,
    thresholds: &BTreeMap<String, f64>,
) -> RunResults {
    let mut summary = RunResults::default();
    let mut metrics: BTreeMap<String, Running> = BTreeMap::new();
    let mut latencies_ms = Vec::new();
    for result in results {
        summary.total += 1;
        match result.outcome() {
            Outcome::Passed => summary.passed += 1,
            Outcome::Failed => summary.failed += 1,
            Outcome::Errored => summary.errored += 1,
        }
        if result.outcome() != Outcome::Passed {
            *summary
                .failure_reasons
                .entry(result.failure_reason.clone())
                .or_default() += 1;
        }
        for (name, score) in &result.scores {
            let threshold = thresholds.get(name).copied().unwrap_or(DEFAULT_THRESHOLD);
            metrics
                .entry(name.clone())
                .or_default()
                .add(*score, *score >= threshold);
        }
        if let Some(latency) = result.latency {
            latencies_ms.push(latency.as_secs_f64() * 1000.0);
        }
        summary.input_tokens += result.input_tokens;
        summary.output_tokens += result.output_tokens;
        summary.cost += result.cost.unwrap_or(0.0);
    }
    summary.pass_rate = if summary.total == 0 {
        0.0
    } else {
        summary.passed as f64 / summary.total as f64
    };
    summary.metrics = metrics
        .into_iter()
        .map(|(name, running)| (name, running.summary()))
        .collect();
    latencies_ms.sort_by(f64::total_cmp);
    if !latencies_ms.is_empty() {
        summary.latency = LatencySummary {
            p50_ms: quantile(&latencies_ms, 0.50),
            p95_ms: quantile(&latencies_ms, 0.95),
            p99_ms: quantile(&latencies_ms, 0.99),
            mean_ms: latencies_ms.iter().sum::<f64>() / latencies_ms.len() as f64,
            max_ms: latencies_ms[latencies_ms.len() - 1],
        };
    }
    summary
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_interpolate_as_numpy() {
        // numpy.percentile([1, 2, 3, 4], [50, 95, 99]) == [2.5, 3.85, 3.97]
        let values = [1.0, 2.0, 3.0, 4.0];
        assert_eq!(quantile(&values, 0.5), 2.5);
        assert!((quantile(&values, 0.95) - 3.85).abs() < 1e-12);
        assert!((quantile(&values, 0.99) - 3.97).abs() < 1e-12);
        assert_eq!(quantile(&[7.0], 0.99), 7.0);
        assert_eq!(quantile(&[], 0.5), 0.0);
    }
}
