//! Which generations an online evaluation samples: a hash, so that every replica, every
//! re-run and any client decide alike without asking anyone.
//!
//! `point = first 8 bytes of SHA-256("<online_evaluation_id>/<generation_id>")`, read as
//! a big-endian integer and divided by 2^64: a number in [0, 1). A generation is
//! sampled when `point < sample_rate`. Raising the rate keeps every generation sampled
//! before.

use sha2::{Digest, Sha256};

/// The generation's point in [0, 1) for this evaluation.
pub fn sample_point(evaluation_id: &str, generation_id: &str) -> f64 {
    let mut hasher = Sha256::new();
    hasher.update(evaluation_id.as_bytes());
    hasher.update(b"/");
    hasher.update(generation_id.as_bytes());
    let digest = hasher.finalize();
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    // 2^-64 exactly; a u64 converted to f64 rounds to at most 2^64, so the point stays
    // below 1 except for the last 2^10 values, which are clamped.
    (u64::from_be_bytes(first) as f64 * (1.0 / 18_446_744_073_709_551_616.0))
        .min(1.0 - f64::EPSILON)
}

/// Whether the evaluation samples the generation at `sample_rate`.
pub fn sampled(evaluation_id: &str, generation_id: &str, sample_rate: f64) -> bool {
    sample_rate >= 1.0 || sample_point(evaluation_id, generation_id) < sample_rate
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_point_is_the_first_eight_bytes_of_the_digest() {
        // printf 'oe-1/gen-1' | sha256sum: 0x... first 16 hex digits, over 2^64.
        let digest = Sha256::digest(b"oe-1/gen-1");
        let expected = u64::from_be_bytes(digest[..8].try_into().unwrap()) as f64 / 2f64.powi(64);
        assert_eq!(sample_point("oe-1", "gen-1"), expected);
    }

    #[test]
    fn a_rate_samples_about_its_share_and_a_higher_rate_keeps_the_lower_ones() {
        let ids: Vec<String> = (0..20_000).map(|i| format!("g{i}")).collect();
        let at =
            |rate: f64| -> Vec<bool> { ids.iter().map(|id| sampled("oe", id, rate)).collect() };
        let half = at(0.5);
        let share = half.iter().filter(|s| **s).count() as f64 / ids.len() as f64;
        assert!((share - 0.5).abs() < 0.02, "{share}");
        let more = at(0.7);
        assert!(half.iter().zip(&more).all(|(h, m)| !h || *m));
        assert!(at(1.0).iter().all(|s| *s));
        // Another evaluation samples other generations.
        let other: Vec<bool> = ids.iter().map(|id| sampled("oe-2", id, 0.5)).collect();
        assert_ne!(half, other);
    }
}
