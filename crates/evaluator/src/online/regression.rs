//! A drop of an online pass rate against the previous prompt version: the pooled
//! two-proportion z-test, one-sided (H1: the newer version's pass rate is lower), as
//! `statsmodels.stats.proportion.proportions_ztest(..., alternative="smaller")`
//! computes it (`tests/vectors/two_proportion.json`).

use statrs::distribution::{ContinuousCDF, Normal};

/// A newer version's pass rate is a regression when the test's p-value is below this.
pub const REGRESSION_ALPHA: f64 = 0.05;

/// One version's pass count in a window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PassCount {
    /// Scored samples that passed.
    pub passed: u64,
    /// Scored samples.
    pub scored: u64,
}

impl PassCount {
    /// The pass rate; 0 when nothing was scored.
    pub fn rate(&self) -> f64 {
        if self.scored == 0 {
            0.0
        } else {
            self.passed as f64 / self.scored as f64
        }
    }
}

/// The z statistic and one-sided p-value of "`new`'s pass rate is lower than `old`'s";
/// `None` when it is undefined (no samples on a side, or every sample passed or every
/// one failed on both sides, so the pooled variance is zero).
pub fn two_proportion_smaller(new: PassCount, old: PassCount) -> Option<(f64, f64)> {
    if new.scored == 0 || old.scored == 0 {
        return None;
    }
    let (n1, n2) = (new.scored as f64, old.scored as f64);
    let pooled = (new.passed + old.passed) as f64 / (n1 + n2);
    let variance = pooled * (1.0 - pooled) * (1.0 / n1 + 1.0 / n2);
    if variance <= 0.0 || !variance.is_finite() {
        return None;
    }
    let z = (new.rate() - old.rate()) / variance.sqrt();
    let normal = Normal::new(0.0, 1.0).expect("the standard normal exists");
    Some((z, normal.cdf(z)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_undefined_test_is_none() {
        let all = PassCount {
            passed: 10,
            scored: 10,
        };
        assert_eq!(two_proportion_smaller(all, all), None);
        let none = PassCount {
            passed: 0,
            scored: 0,
        };
        assert_eq!(two_proportion_smaller(none, all), None);
    }
}
