//! The in-memory sufficient statistics of one experiment: per (variant, metric) a
//! [`Summary`] of the observations, and exposure counts per variant. Updated only after
//! the records are durable; rebuilt from storage at start-up.

use std::collections::{BTreeMap, HashMap};

use crate::model::{AnalysisUnit, Experiment, MetricKind};
use crate::stats::{CompensatedSum, Summary};

/// A float ordered by `total_cmp`, so it can key a multiset.
#[derive(Debug, Clone, Copy)]
struct Ordered(f64);

impl PartialEq for Ordered {
    fn eq(&self, other: &Self) -> bool {
        self.0.total_cmp(&other.0).is_eq()
    }
}
impl Eq for Ordered {}
impl PartialOrd for Ordered {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Ordered {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.0.total_cmp(&other.0)
    }
}

/// One (variant, metric) cell.
#[derive(Debug, Clone, Default)]
struct Cell {
    summary: Summary,
    /// Per-user analysis replaces observations, so min and max need every value: a
    /// multiset of the current user observations. Unused per record.
    values: BTreeMap<Ordered, u32>,
}

/// What one user has recorded for one metric in one variant.
#[derive(Debug, Clone, Copy, Default)]
struct UserRecords {
    count: u64,
    sum: CompensatedSum,
    any_one: bool,
}

impl UserRecords {
    fn observation(&self, kind: MetricKind) -> f64 {
        match kind {
            MetricKind::Mean => self.sum.value() / self.count as f64,
            MetricKind::Proportion => f64::from(u8::from(self.any_one)),
        }
    }
}

/// The statistics of one experiment.
#[derive(Debug, Clone)]
pub struct Tally {
    unit: AnalysisUnit,
    kinds: Vec<MetricKind>,
    metric_index: HashMap<String, usize>,
    variant_index: HashMap<String, usize>,
    cells: Vec<Cell>,
    users: HashMap<(usize, usize, String), UserRecords>,
    exposures: Vec<u64>,
}

impl Tally {
    /// An empty tally for `experiment`'s variants and metrics.
    pub fn new(experiment: &Experiment) -> Self {
        let metrics = experiment.metrics.len();
        Self {
            unit: experiment.analysis_unit,
            kinds: experiment.metrics.iter().map(|m| m.kind).collect(),
            metric_index: experiment
                .metrics
                .iter()
                .enumerate()
                .map(|(i, m)| (m.name.clone(), i))
                .collect(),
            variant_index: experiment
                .variants
                .iter()
                .enumerate()
                .map(|(i, v)| (v.id.clone(), i))
                .collect(),
            cells: vec![Cell::default(); experiment.variants.len() * metrics],
            users: HashMap::new(),
            exposures: vec![0; experiment.variants.len()],
        }
    }

    /// Counts one new exposure of `variant_id`.
    pub fn add_exposure(&mut self, variant_id: &str) {
        if let Some(&v) = self.variant_index.get(variant_id) {
            self.exposures[v] += 1;
        }
    }

    /// Folds in one durable record. Unknown variants or metrics (impossible after
    /// validation) are ignored.
    pub fn add_record(&mut self, variant_id: &str, metric: &str, value: f64, user_id: &str) {
        let (Some(&v), Some(&m)) = (
            self.variant_index.get(variant_id),
            self.metric_index.get(metric),
        ) else {
            return;
        };
        let index = v * self.kinds.len() + m;
        match self.unit {
            AnalysisUnit::Record => self.cells[index].summary.add(value),
            AnalysisUnit::User => {
                let kind = self.kinds[m];
                let user = self.users.entry((v, m, user_id.to_owned())).or_default();
                let previous = (user.count > 0).then(|| user.observation(kind));
                user.count += 1;
                user.sum.add(value);
                user.any_one |= value == 1.0;
                let current = user.observation(kind);
                let cell = &mut self.cells[index];
                if let Some(previous) = previous {
                    cell.summary.remove(previous);
                    if let Some(count) = cell.values.get_mut(&Ordered(previous)) {
                        *count -= 1;
                        if *count == 0 {
                            cell.values.remove(&Ordered(previous));
                        }
                    }
                }
                cell.summary.add(current);
                *cell.values.entry(Ordered(current)).or_default() += 1;
                let min = cell.values.keys().next().map_or(0.0, |k| k.0);
                let max = cell.values.keys().next_back().map_or(0.0, |k| k.0);
                cell.summary.set_extremes(min, max);
            }
        }
    }

    /// The summary of `metric` (by index) in `variant` (by index).
    pub fn summary(&self, variant: usize, metric: usize) -> Summary {
        self.cells
            .get(variant * self.kinds.len() + metric)
            .map(|c| c.summary)
            .unwrap_or_default()
    }

    /// Exposures per variant, in variant order.
    pub fn exposures(&self) -> &[u64] {
        &self.exposures
    }
}

#[cfg(test)]
mod tests {
    use chrono::Utc;

    use super::*;
    use crate::model::*;
    use crate::validate::ExperimentSpec;

    fn experiment(unit: AnalysisUnit) -> Experiment {
        let metric = |name: &str, kind| {
            MetricDefinition::new(
                name,
                kind,
                MetricDirection::HigherIsBetter,
                MetricRole::Secondary,
            )
        };
        let spec = ExperimentSpec {
            created_by: String::new(),
            serves_prompt: String::new(),
            serves_label: String::new(),
            name: "e".into(),
            variants: vec![Variant::new("a"), Variant::new("b")],
            metrics: vec![
                metric("score", MetricKind::Mean),
                metric("converted", MetricKind::Proportion),
            ],
            analysis_unit: unit,
            ..ExperimentSpec::default()
        };
        Experiment::draft(spec, "e".into(), 100, Utc::now())
    }

    #[test]
    fn per_record_each_value_is_an_observation() {
        let mut tally = Tally::new(&experiment(AnalysisUnit::Record));
        for value in [1.0, 2.0, 6.0] {
            tally.add_record("b", "score", value, "u1");
        }
        let summary = tally.summary(1, 0);
        assert_eq!(summary.n(), 3);
        assert_eq!(summary.mean(), 3.0);
        assert_eq!((summary.min(), summary.max()), (1.0, 6.0));
        assert_eq!(tally.summary(0, 0).n(), 0);
    }

    #[test]
    fn per_user_records_are_averaged_and_replaced() {
        let mut tally = Tally::new(&experiment(AnalysisUnit::User));
        tally.add_record("a", "score", 1.0, "u1");
        tally.add_record("a", "score", 3.0, "u1");
        tally.add_record("a", "score", 10.0, "u2");
        let summary = tally.summary(0, 0);
        assert_eq!(summary.n(), 2, "n counts users");
        assert!(
            (summary.mean() - 6.0).abs() < 1e-12,
            "users' means are 2 and 10"
        );
        assert_eq!((summary.min(), summary.max()), (2.0, 10.0));
        assert!((summary.variance() - 32.0).abs() < 1e-9);
    }

    #[test]
    fn a_proportion_user_counts_one_if_any_record_is_one() {
        let mut tally = Tally::new(&experiment(AnalysisUnit::User));
        tally.add_record("a", "converted", 0.0, "u1");
        tally.add_record("a", "converted", 1.0, "u1");
        tally.add_record("a", "converted", 0.0, "u1");
        tally.add_record("a", "converted", 0.0, "u2");
        let summary = tally.summary(0, 1);
        assert_eq!(summary.n(), 2);
        assert_eq!(summary.mean(), 0.5);
    }
}
