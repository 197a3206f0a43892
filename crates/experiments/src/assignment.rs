//! Deterministic assignment, exactly as GrowthBook's SDKs compute it (hash version 2).
//!
//! 1. `n = fnv1a32(decimal(fnv1a32(seed + user_id))) % 10000 / 10000`, a number in
//!    [0, 1) that depends only on the experiment's seed and the user.
//! 2. The variants' bucket ranges: each variant `i` with weight `w_i` gets
//!    `[c_i, c_i + coverage * w_i)`, where `c_i` is the sum of the weights before it.
//!    The starts do not depend on coverage, so raising coverage only grows the ranges:
//!    users already in an experiment keep their variant.
//! 3. The first range that contains `n` is the user's variant; none means the user is
//!    not in the experiment.
//!
//! FNV-1a runs over UTF-16 code units, as the JavaScript SDK's `charCodeAt` loop and the
//! Python SDK (4.0) do, so ids with characters outside the Basic Multilingual Plane
//! (emoji) hash alike everywhere.

const FNV_OFFSET_BASIS: u32 = 0x811c_9dc5;
const FNV_PRIME: u32 = 0x0100_0193;

/// 32-bit FNV-1a over the UTF-16 code units of `text`.
pub fn fnv1a32(text: &str) -> u32 {
    text.encode_utf16().fold(FNV_OFFSET_BASIS, |hash, unit| {
        (hash ^ u32::from(unit)).wrapping_mul(FNV_PRIME)
    })
}

/// GrowthBook hash version 2: a number in [0, 1) with four decimal places.
pub fn hash_v2(seed: &str, user_id: &str) -> f64 {
    let inner = fnv1a32(&format!("{seed}{user_id}"));
    f64::from(fnv1a32(&inner.to_string()) % 10_000) / 10_000.0
}

/// GrowthBook hash version 1 (older SDKs): a number in [0, 1) with three decimal places.
pub fn hash_v1(seed: &str, user_id: &str) -> f64 {
    f64::from(fnv1a32(&format!("{user_id}{seed}")) % 1_000) / 1_000.0
}

/// A half-open range `[start, end)` of hash values that selects one variant.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BucketRange {
    /// Inclusive.
    pub start: f64,
    /// Exclusive.
    pub end: f64,
}

impl BucketRange {
    /// Whether `n` falls in the range.
    pub fn contains(&self, n: f64) -> bool {
        n >= self.start && n < self.end
    }
}

/// The variants' ranges, as GrowthBook's `getBucketRanges` computes them. Coverage is
/// clamped to [0, 1]. Weights are used as given (never rescaled) when there is one per
/// variant, each is finite and not negative, and they sum to 1 within 0.01; otherwise
/// every variant gets an equal share, as the Python SDK falls back.
pub fn bucket_ranges(variants: usize, coverage: f64, weights: Option<&[f64]>) -> Vec<BucketRange> {
    let coverage = coverage.clamp(0.0, 1.0);
    let usable = weights.filter(|w| {
        w.len() == variants
            && w.iter().all(|x| x.is_finite() && *x >= 0.0)
            && (0.99..=1.01).contains(&w.iter().sum::<f64>())
    });
    let weights = match usable {
        Some(weights) => weights.to_vec(),
        None => equal_weights(variants),
    };
    // Summed one weight at a time, in order, as the SDKs do, so that the boundaries are
    // the same doubles they compute.
    let mut cumulative = 0.0;
    weights
        .iter()
        .map(|weight| {
            let start = cumulative;
            cumulative += weight;
            BucketRange {
                start,
                end: start + coverage * weight,
            }
        })
        .collect()
}

/// `variants` equal weights.
pub fn equal_weights(variants: usize) -> Vec<f64> {
    vec![1.0 / variants as f64; variants]
}

/// The index of the first range containing `n`; `None` when the user is not in the
/// experiment.
pub fn choose_variation(n: f64, ranges: &[BucketRange]) -> Option<usize> {
    ranges.iter().position(|range| range.contains(n))
}

/// The variant of `user_id` in an experiment hashed with `seed`.
pub fn assign(seed: &str, user_id: &str, ranges: &[BucketRange]) -> Option<usize> {
    choose_variation(hash_v2(seed, user_id), ranges)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fnv1a32_matches_the_published_test_vectors() {
        // From the FNV reference (Noll): FNV-1a 32-bit of "", "a" and "foobar".
        assert_eq!(fnv1a32(""), 0x811c_9dc5);
        assert_eq!(fnv1a32("a"), 0xe40c_292c);
        assert_eq!(fnv1a32("foobar"), 0xbf9c_f968);
    }

    #[test]
    fn raising_coverage_keeps_every_user_in_their_variant() {
        let narrow = bucket_ranges(3, 0.2, Some(&[0.5, 0.25, 0.25]));
        let wide = bucket_ranges(3, 0.9, Some(&[0.5, 0.25, 0.25]));
        for user in 0..2_000 {
            let n = hash_v2("exp-seed", &format!("user-{user}"));
            if let Some(variant) = choose_variation(n, &narrow) {
                assert_eq!(choose_variation(n, &wide), Some(variant));
            }
        }
    }

    #[test]
    fn full_coverage_puts_everyone_in_and_splits_by_weight() {
        let ranges = bucket_ranges(2, 1.0, Some(&[0.7, 0.3]));
        let mut counts = [0usize; 2];
        for user in 0..20_000 {
            counts[assign("seed", &format!("u{user}"), &ranges).expect("full coverage")] += 1;
        }
        let share = counts[0] as f64 / 20_000.0;
        assert!((share - 0.7).abs() < 0.02, "{share}");
    }
}
