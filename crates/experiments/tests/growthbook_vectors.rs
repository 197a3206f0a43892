//! Assignment must agree with GrowthBook's SDK exactly. The vectors come from the
//! `growthbook` package on PyPI (`tests/vectors/generate.py`, which imports the SDK's own
//! functions rather than reimplementing them).

use llmops_experiments::assignment::{
    bucket_ranges, choose_variation, hash_v1, hash_v2, BucketRange,
};
use serde::Deserialize;

#[derive(Deserialize)]
struct Vectors {
    hash: Vec<HashCase>,
    hash_non_bmp: Vec<HashCase>,
    bucket_ranges: Vec<RangesCase>,
    choose: Vec<ChooseCase>,
    assignments: Vec<AssignmentCase>,
}

#[derive(Deserialize)]
struct HashCase {
    seed: String,
    value: String,
    version: u8,
    n: f64,
}

#[derive(Deserialize)]
struct RangesCase {
    num_variations: usize,
    coverage: f64,
    weights: Option<Vec<f64>>,
    ranges: Vec<(f64, f64)>,
}

#[derive(Deserialize)]
struct ChooseCase {
    n: f64,
    ranges: Vec<(f64, f64)>,
    variation: i64,
}

#[derive(Deserialize)]
struct AssignmentCase {
    seed: String,
    user_id: String,
    num_variations: usize,
    coverage: f64,
    weights: Option<Vec<f64>>,
    variation: i64,
}

fn vectors() -> Vectors {
    let text = include_str!("vectors/growthbook_assignment.json");
    serde_json::from_str(text).expect("the vectors parse")
}

fn as_index(variation: i64) -> Option<usize> {
    usize::try_from(variation).ok()
}

#[test]
fn hashes_match_the_sdk_for_ascii_and_non_ascii_ids() {
    let vectors = vectors();
    assert!(vectors.hash.len() >= 300);
    for case in &vectors.hash {
        let n = match case.version {
            1 => hash_v1(&case.seed, &case.value),
            _ => hash_v2(&case.seed, &case.value),
        };
        assert_eq!(
            n, case.n,
            "hash v{} of {:?} + {:?}",
            case.version, case.seed, case.value
        );
    }
}

#[test]
fn ids_outside_the_basic_multilingual_plane_hash_over_utf16_units_like_the_sdk() {
    let vectors = vectors();
    assert!(!vectors.hash_non_bmp.is_empty());
    for case in &vectors.hash_non_bmp {
        let n = match case.version {
            1 => hash_v1(&case.seed, &case.value),
            _ => hash_v2(&case.seed, &case.value),
        };
        assert_eq!(
            n, case.n,
            "hash v{} of {:?} + {:?}",
            case.version, case.seed, case.value
        );
    }
}

#[test]
fn bucket_ranges_match_the_sdk_to_the_bit() {
    for case in vectors().bucket_ranges {
        let ranges = bucket_ranges(case.num_variations, case.coverage, case.weights.as_deref());
        let ours: Vec<(f64, f64)> = ranges.iter().map(|r| (r.start, r.end)).collect();
        assert_eq!(
            ours, case.ranges,
            "{} variations, coverage {}, weights {:?}",
            case.num_variations, case.coverage, case.weights
        );
    }
}

#[test]
fn variation_choice_matches_the_sdk_on_boundaries_and_outside_all_ranges() {
    for case in vectors().choose {
        let ranges: Vec<BucketRange> = case
            .ranges
            .iter()
            .map(|&(start, end)| BucketRange { start, end })
            .collect();
        assert_eq!(
            choose_variation(case.n, &ranges),
            as_index(case.variation),
            "n = {}",
            case.n
        );
    }
}

#[test]
fn end_to_end_assignments_match_the_sdk() {
    let vectors = vectors();
    assert!(vectors.assignments.len() >= 500);
    for case in vectors.assignments {
        let ranges = bucket_ranges(case.num_variations, case.coverage, case.weights.as_deref());
        let ours = choose_variation(hash_v2(&case.seed, &case.user_id), &ranges);
        assert_eq!(
            ours,
            as_index(case.variation),
            "{:?} in {:?}",
            case.user_id,
            case.seed
        );
    }
}
