//! `GetExperimentResults` must cost the same with ten records or ten million: results are
//! computed from sufficient statistics, never from the records. This measures the
//! analysis of a 3-variant, 3-metric experiment after 10 and after 1,000,000 records per
//! cell, side by side.

use chrono::Utc;
use criterion::{black_box, criterion_main, BenchmarkId, Criterion};
use llmops_experiments::results::analyse;
use llmops_experiments::{
    Experiment, ExperimentSpec, MetricDefinition, MetricDirection, MetricKind, MetricRole, Tally,
    Variant,
};

fn experiment() -> Experiment {
    let mut control = Variant::new("a");
    control.is_control = true;
    let spec = ExperimentSpec {
        created_by: String::new(),
        serves_prompt: String::new(),
        serves_label: String::new(),
        name: "bench".into(),
        variants: vec![control, Variant::new("b"), Variant::new("c")],
        metrics: vec![
            MetricDefinition::new(
                "quality",
                MetricKind::Mean,
                MetricDirection::HigherIsBetter,
                MetricRole::Primary,
            ),
            MetricDefinition::new(
                "converted",
                MetricKind::Proportion,
                MetricDirection::HigherIsBetter,
                MetricRole::Secondary,
            ),
            MetricDefinition::new(
                "latency",
                MetricKind::Mean,
                MetricDirection::LowerIsBetter,
                MetricRole::Guardrail,
            ),
        ],
        ..ExperimentSpec::default()
    };
    Experiment::draft(spec, "bench".into(), 100, Utc::now())
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
