//! `GetExperimentResults` must cost the same with ten records or ten million: results are
//! computed from sufficient statistics, never from the records. This measures the
//! analysis of a 3-variant, 3-metric experiment after 10 and after 1,000,000 records per
//! cell, side by side.

use chrono::Utc;
use criterion::{black_box, criterion_main, BenchmarkId, Criterion};
use llmops_experiments::results::analyse;
use llmops_experiments::{
    AnalysisUnit, Experiment, ExperimentStatus, MetricDefinition, MetricDirection, MetricKind,
    MetricRole, Tally, Variant,
};

fn experiment() -> Experiment {
    let variant = |id: &str| Variant {
        id: id.into(),
        name: id.into(),
        description: String::new(),
        is_control: id == "a",
        prompt_name: String::new(),
        prompt_version: String::new(),
        model: String::new(),
        parameters: Default::default(),
        weight: None,
    };
    let metric = |name: &str, kind, direction, role| MetricDefinition {
        name: name.into(),
        kind,
        direction,
        role,
    };
    Experiment {
        id: "bench".into(),
        name: "bench".into(),
        description: String::new(),
        seed: "bench".into(),
        coverage: 1.0,
        variants: vec![variant("a"), variant("b"), variant("c")],
        metrics: vec![
            metric(
                "quality",
                MetricKind::Mean,
                MetricDirection::HigherIsBetter,
                MetricRole::Primary,
            ),
            metric(
                "converted",
                MetricKind::Proportion,
                MetricDirection::HigherIsBetter,
                MetricRole::Secondary,
            ),
            metric(
                "latency",
                MetricKind::Mean,
                MetricDirection::LowerIsBetter,
                MetricRole::Guardrail,
            ),
        ],
        alpha: 0.05,
        min_samples: 100,
        sequential: false,
        sequential_tuning: 5000.0,
        analysis_unit: AnalysisUnit::Record,
        status: ExperimentStatus::Running,
        start_time: None,
        end_time: None,
        winner_variant_id: String::new(),
        metadata: Default::default(),
        created_at: Utc::now(),
        updated_at: Utc::now(),
    }
}

fn filled(experiment: &Experiment, per_cell: usize) -> Tally {
    let mut tally = Tally::new(experiment);
    for (v, variant) in ["a", "b", "c"].into_iter().enumerate() {
        for i in 0..per_cell {
            let x = ((i * 7919 + v * 13) % 1000) as f64 / 1000.0;
            tally.add_record(variant, "quality", x + v as f64 * 0.01, "");
            tally.add_record(
                variant,
                "converted",
                f64::from(u8::from(i % 3 == v % 3)),
                "",
            );
            tally.add_record(variant, "latency", 800.0 + x * 400.0, "");
        }
        for _ in 0..per_cell {
            tally.add_exposure(variant);
        }
    }
    tally
}

fn results_cost(c: &mut Criterion) {
    let experiment = experiment();
    let mut group = c.benchmark_group("results/analyse");
    for per_cell in [10usize, 1_000_000] {
        let tally = filled(&experiment, per_cell);
        group.bench_with_input(BenchmarkId::from_parameter(per_cell), &tally, |b, tally| {
            b.iter(|| analyse(black_box(&experiment), black_box(tally)))
        });
    }
    group.finish();
}

/// Holds the `pub fn` that `criterion_group!` generates, which cannot carry a doc comment.
mod group {
    criterion::criterion_group!(benches, super::results_cost);
}

criterion_main!(group::benches);
