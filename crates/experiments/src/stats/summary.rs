//! Sufficient statistics of one stream of observations.
//!
//! The sum is kept exactly where it can be: compensated (Neumaier) summation is exact for
//! counts and 0/1 values (any integer below 2^53) and loses no more than one rounding for
//! the rest, so the mean of 30 ones in 300 is 0.1 exactly, two variants with the same
//! data tie exactly, and adding then removing a value leaves the sum as it was. A running
//! mean drifts instead (30 ones in 300 gave a sum of 30.00000000000003, and a tie looked
//! like an improvement). The spread is kept with Welford's update, so that the variance
//! of millions of similar values does not cancel to garbage.

use serde::{Deserialize, Serialize};

/// A sum with Neumaier's compensation: the low-order bits each addition loses are kept
/// apart and added back when the sum is read.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct CompensatedSum {
    sum: f64,
    compensation: f64,
}

impl CompensatedSum {
    /// Adds `value` (subtracts, when negative).
    pub fn add(&mut self, value: f64) {
        let total = self.sum + value;
        self.compensation += if self.sum.abs() >= value.abs() {
            (self.sum - total) + value
        } else {
            (value - total) + self.sum
        };
        self.sum = total;
    }

    /// The sum.
    pub fn value(&self) -> f64 {
        self.sum + self.compensation
    }
}

/// Count, exact sum, sum of squared deviations, minimum and maximum.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct Summary {
    n: u64,
    sum: CompensatedSum,
    /// Welford's running mean, the reference point of `m2`.
    welford_mean: f64,
    /// Sum of squared deviations from the mean.
    m2: f64,
    min: f64,
    max: f64,
}

impl Summary {
    /// A summary of `values`.
    pub fn of(values: impl IntoIterator<Item = f64>) -> Self {
        let mut summary = Self::default();
        for value in values {
            summary.add(value);
        }
        summary
    }

    /// A summary from a count, sum and sum of squares (as `gbstats` takes them); min and
    /// max are unknown and left at 0.
    pub fn from_sums(n: u64, sum: f64, sum_squares: f64) -> Self {
        if n == 0 {
            return Self::default();
        }
        let mut total = CompensatedSum::default();
        total.add(sum);
        Self {
            n,
            sum: total,
            welford_mean: sum / n as f64,
            m2: (sum_squares - sum * sum / n as f64).max(0.0),
            min: 0.0,
            max: 0.0,
        }
    }

    /// Adds one observation.
    pub fn add(&mut self, value: f64) {
        self.n += 1;
        self.sum.add(value);
        let delta = value - self.welford_mean;
        self.welford_mean += delta / self.n as f64;
        self.m2 += delta * (value - self.welford_mean);
        if self.n == 1 {
            self.min = value;
            self.max = value;
        } else {
            self.min = self.min.min(value);
            self.max = self.max.max(value);
        }
    }

    /// Removes one observation added earlier (per-user analysis replaces a user's value
    /// when a new record arrives). Min and max are not updated: the caller tracks them.
    pub fn remove(&mut self, value: f64) {
        match self.n {
            0 => {}
            1 => *self = Self::default(),
            n => {
                let remaining = (n - 1) as f64;
                let mean = (self.welford_mean * n as f64 - value) / remaining;
                self.m2 = (self.m2 - (value - mean) * (value - self.welford_mean)).max(0.0);
                self.welford_mean = mean;
                self.sum.add(-value);
                self.n = n - 1;
            }
        }
    }

    /// Sets the extremes (for callers that track them themselves).
    pub fn set_extremes(&mut self, min: f64, max: f64) {
        self.min = min;
        self.max = max;
    }

    /// The number of observations.
    pub fn n(&self) -> u64 {
        self.n
    }

    /// The mean; 0 with no observations.
    pub fn mean(&self) -> f64 {
        if self.n == 0 {
            0.0
        } else {
            self.sum() / self.n as f64
        }
    }

    /// The sum of the observations.
    pub fn sum(&self) -> f64 {
        self.sum.value()
    }

    /// The sum of the squared observations.
    pub fn sum_squares(&self) -> f64 {
        let mean = self.mean();
        self.m2 + self.n as f64 * mean * mean
    }

    /// The sample variance (n - 1 in the denominator); 0 below two observations.
    pub fn variance(&self) -> f64 {
        if self.n < 2 {
            0.0
        } else {
            self.m2 / (self.n - 1) as f64
        }
    }

    /// The sample standard deviation.
    pub fn std_dev(&self) -> f64 {
        self.variance().sqrt()
    }

    /// The smallest observation; 0 with none.
    pub fn min(&self) -> f64 {
        self.min
    }

    /// The largest observation; 0 with none.
    pub fn max(&self) -> f64 {
        self.max
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn naive_variance(values: &[f64]) -> f64 {
        let mean = values.iter().sum::<f64>() / values.len() as f64;
        values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (values.len() - 1) as f64
    }

    #[test]
    fn large_offsets_do_not_cancel_the_variance() {
        // The textbook sum-of-squares formula loses every digit here.
        let values = [1e9 + 4.0, 1e9 + 7.0, 1e9 + 13.0, 1e9 + 16.0];
        let summary = Summary::of(values);
        assert!(
            (summary.variance() - 30.0).abs() < 1e-6,
            "{}",
            summary.variance()
        );
        assert_eq!(summary.min(), 1e9 + 4.0);
        assert_eq!(summary.max(), 1e9 + 16.0);
    }

    #[test]
    fn counts_and_zero_one_values_sum_exactly() {
        // 30 ones in 300: a running mean made the sum 30.00000000000003.
        let summary = Summary::of((0..300).map(|i| f64::from(u8::from(i % 10 == 0))));
        assert_eq!(summary.sum(), 30.0);
        assert_eq!(summary.mean(), 0.1);
        let tenths = Summary::of(std::iter::repeat_n(0.1, 1000));
        assert_eq!(
            tenths.sum(),
            100.0,
            "compensated: one rounding, not a thousand"
        );
    }

    #[test]
    fn adding_and_removing_leaves_the_sum_exact() {
        let mut summary = Summary::of([1.0, 0.0, 1.0, 1.0]);
        summary.add(0.3);
        summary.remove(0.3);
        assert_eq!(summary.sum(), 3.0);
        assert_eq!(summary.mean(), 0.75);
    }

    proptest! {
        #[test]
        fn matches_a_two_pass_computation(values in prop::collection::vec(-1e4f64..1e4, 2..200)) {
            let summary = Summary::of(values.iter().copied());
            let mean = values.iter().sum::<f64>() / values.len() as f64;
            prop_assert!((summary.mean() - mean).abs() < 1e-9 * mean.abs().max(1.0));
            let expected = naive_variance(&values);
            prop_assert!((summary.variance() - expected).abs() < 1e-7 * expected.max(1.0));
        }

        #[test]
        fn removing_a_value_undoes_adding_it(values in prop::collection::vec(-1e3f64..1e3, 3..100), extra in -1e3f64..1e3) {
            let before = Summary::of(values.iter().copied());
            let mut after = before;
            after.add(extra);
            after.remove(extra);
            prop_assert_eq!(after.n(), before.n());
            prop_assert!((after.mean() - before.mean()).abs() < 1e-9);
            prop_assert!((after.variance() - before.variance()).abs() < 1e-6 * before.variance().max(1.0));
        }
    }
}
