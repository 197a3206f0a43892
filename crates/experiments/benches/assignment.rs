//! Hash and bucket lookup: the per-request cost of `AssignVariant` before storage.

use criterion::{black_box, criterion_main, Criterion};
use llmops_experiments::assignment::{assign, bucket_ranges};

fn hash_and_bucket(c: &mut Criterion) {
    let ranges = bucket_ranges(3, 1.0, Some(&[0.5, 0.25, 0.25]));
    c.bench_function("assignment/hash_v2_and_bucket", |b| {
        b.iter(|| {
            assign(
                black_box("exp-0192-checkout"),
                black_box("user-1234567"),
                black_box(&ranges),
            )
        })
    });
}

/// Holds the `pub fn` that `criterion_group!` generates, which cannot carry a doc comment.
mod group {
    criterion::criterion_group!(benches, super::hash_and_bucket);
}

criterion_main!(group::benches);
