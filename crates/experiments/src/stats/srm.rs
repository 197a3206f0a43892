//! The sample-ratio-mismatch check: Pearson's chi-square test of the exposure counts
//! against the configured weights (as `scipy.stats.chisquare` with expected counts
//! `weight * total`, df = variants - 1).

use statrs::distribution::{ChiSquared, ContinuousCDF};

/// Below this p-value the split is flagged as broken.
pub const SRM_THRESHOLD: f64 = 0.001;

/// The p-value of the observed counts under the expected split, or `None` when there is
/// nothing to test (no exposures, fewer than two variants with weight).
pub fn srm_p_value(observed: &[u64], weights: &[f64]) -> Option<f64> {
    let total: u64 = observed.iter().sum();
    if total == 0 || observed.len() != weights.len() {
        return None;
    }
    let weight_sum: f64 = weights.iter().sum();
    let mut statistic = 0.0;
    let mut cells = 0usize;
    for (&count, &weight) in observed.iter().zip(weights) {
        // scipy's chisquare requires the expected counts to sum to the observed total;
        // normalising the weights keeps that true within the 0.01 tolerance.
        let expected = weight / weight_sum * total as f64;
        if expected <= 0.0 {
            if count > 0 {
                return Some(0.0); // users in a variant that should get none
            }
            continue;
        }
        statistic += (count as f64 - expected).powi(2) / expected;
        cells += 1;
    }
    if cells < 2 {
        return None;
    }
    let distribution = ChiSquared::new((cells - 1) as f64).ok()?;
    Some(distribution.sf(statistic))
}
