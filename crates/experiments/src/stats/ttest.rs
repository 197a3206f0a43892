//! Two-sample tests exactly as GrowthBook's `gbstats` (0.8.0) computes them:
//! `TwoSidedTTest` (fixed horizon, Welch's t) and `SequentialTwoSidedTTest` (an always
//! valid confidence sequence, safe to peek at), each on the absolute difference of means
//! or on the relative lift (delta method).

use statrs::distribution::{Continuous, ContinuousCDF, StudentsT};

use super::Summary;
use crate::model::MetricKind;

/// Which difference a test estimates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DifferenceType {
    /// `mean_b - mean_a`.
    Absolute,
    /// `(mean_b - mean_a) / mean_a`.
    Relative,
}

/// How a test is run.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TestSettings {
    /// The significance level; intervals are at 1 - alpha.
    pub alpha: f64,
    /// The sequential test's tuning parameter, or `None` for the fixed-horizon test.
    pub sequential_tuning: Option<f64>,
}

/// An estimated difference with its interval and two-sided p-value.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Estimate {
    /// The point estimate.
    pub estimate: f64,
    /// Lower end of the 1 - alpha interval.
    pub ci_lower: f64,
    /// Upper end of the 1 - alpha interval.
    pub ci_upper: f64,
    /// Two-sided p-value against no difference.
    pub p_value: f64,
}

/// Why a test could not be computed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotComputable {
    /// A variant has fewer than two observations.
    TooFewObservations,
    /// A variant's observations do not vary, so there is no standard error.
    ZeroVariance,
    /// The control mean is zero, so a relative lift is undefined.
    ZeroControlMean,
    /// A variant's mean or variance is not a finite number.
    NotFinite,
}

impl NotComputable {
    /// A sentence for reports.
    pub fn reason(self) -> &'static str {
        match self {
            Self::TooFewObservations => "not computable: a variant has fewer than 2 observations",
            Self::ZeroVariance => "not computable: a variant's values do not vary",
            Self::NotFinite => "not computable: a variant's statistics are not finite",
            Self::ZeroControlMean => {
                "not computable: the control mean is 0, so there is no baseline to compare with"
            }
        }
    }
}

/// A test's outcome.
pub type Outcome = Result<Estimate, NotComputable>;

/// The absolute and relative comparison of one variant with control on one metric.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Comparison {
    /// `mean_b - mean_a`.
    pub absolute: Outcome,
    /// `(mean_b - mean_a) / mean_a`.
    pub relative: Outcome,
}

/// Compares `treatment` with `control` both ways.
pub fn compare(
    kind: MetricKind,
    control: &Summary,
    treatment: &Summary,
    settings: TestSettings,
) -> Comparison {
    Comparison {
        absolute: test(kind, control, treatment, DifferenceType::Absolute, settings),
        relative: test(kind, control, treatment, DifferenceType::Relative, settings),
    }
}

/// gbstats' variance of a statistic: the sample variance of a mean metric, `p(1 - p)`
/// for a proportion.
fn variance(kind: MetricKind, summary: &Summary) -> f64 {
    match kind {
        MetricKind::Mean => summary.variance(),
        MetricKind::Proportion => {
            let p = summary.mean();
            p * (1.0 - p)
        }
    }
}

/// One test.
pub fn test(
    kind: MetricKind,
    control: &Summary,
    treatment: &Summary,
    difference: DifferenceType,
    settings: TestSettings,
) -> Outcome {
    // gbstats refuses a zero control mean, then a variance that is not positive (which
    // covers n < 2). Every such input is refused here too; too few observations is
    // checked first because it is the most useful reason to report.
    if control.n() < 2 || treatment.n() < 2 {
        return Err(NotComputable::TooFewObservations);
    }
    if ![control, treatment]
        .iter()
        .all(|s| s.mean().is_finite() && s.variance().is_finite())
    {
        return Err(NotComputable::NotFinite);
    }
    let (mean_a, mean_b) = (control.mean(), treatment.mean());
    if mean_a == 0.0 {
        return Err(NotComputable::ZeroControlMean);
    }
    let (var_a, var_b) = (variance(kind, control), variance(kind, treatment));
    if var_a <= 0.0 || var_b <= 0.0 {
        return Err(NotComputable::ZeroVariance);
    }
    let (n_a, n_b) = (control.n() as f64, treatment.n() as f64);
    let (point, var) = match difference {
        DifferenceType::Absolute => (mean_b - mean_a, var_b / n_b + var_a / n_a),
        DifferenceType::Relative => (
            (mean_b - mean_a) / mean_a,
            // Delta method for the ratio of two independent means.
            // (`powf` is the C library's `pow`, as numpy's, for the same rounding.)
            var_b / (mean_a.powf(2.0) * n_b) + var_a * mean_b.powf(2.0) / (mean_a.powf(4.0) * n_a),
        ),
    };
    let std_err = var.sqrt();
    let estimate = match settings.sequential_tuning {
        None => {
            // Welch-Satterthwaite degrees of freedom.
            let dof = (var_b / n_b + var_a / n_a).powf(2.0)
                / (var_b.powf(2.0) / (n_b.powf(2.0) * (n_b - 1.0))
                    + var_a.powf(2.0) / (n_a.powf(2.0) * (n_a - 1.0)));
            let t = StudentsT::new(0.0, 1.0, dof).map_err(|_| NotComputable::ZeroVariance)?;
            let width = quantile(&t, 1.0 - settings.alpha / 2.0) * std_err;
            let p_value = 2.0 * (1.0 - t.cdf((point / std_err).abs()));
            Estimate {
                estimate: point,
                ci_lower: point - width,
                ci_upper: point + width,
                p_value,
            }
        }
        Some(tuning) => sequential(point, var, n_a + n_b, settings.alpha, tuning),
    };
    Ok(estimate)
}

/// The t quantile. statrs' inverse is off in the fifth digit at a few degrees of
/// freedom, while its CDF is accurate, so Newton steps on the CDF polish the estimate to
/// what scipy's `stdtrit` gives.
fn quantile(t: &StudentsT, q: f64) -> f64 {
    let mut x = t.inverse_cdf(q);
    for _ in 0..8 {
        let density = t.pdf(x);
        if density <= 0.0 || !density.is_finite() {
            break;
        }
        let step = (t.cdf(x) - q) / density;
        x -= step;
        if step.abs() <= 1e-14 * x.abs().max(1.0) {
            break;
        }
    }
    x
}

/// The asymptotic confidence sequence of Waudby-Smith et al. (2023), as gbstats tunes it.
fn sequential(point: f64, var: f64, n: f64, alpha: f64, tuning: f64) -> Estimate {
    let log_alpha = alpha.ln();
    let rho = ((-2.0 * log_alpha + (-2.0 * log_alpha + 1.0).ln()) / tuning).sqrt();
    let rho2 = rho.powf(2.0);
    let s2 = var * n;
    let halfwidth = s2.sqrt()
        * ((2.0 * (n * rho2 + 1.0)) * ((n * rho2 + 1.0).sqrt() / alpha).ln() / (n * rho).powf(2.0))
            .sqrt();
    let st2 = point.powf(2.0) * n / var;
    let tr2p1 = n * rho2 + 1.0;
    // An overflowing e-value means overwhelming evidence: p = 0, as in gbstats.
    let evalue = (rho2 * st2 / (2.0 * tr2p1)).exp() / tr2p1.sqrt();
    Estimate {
        estimate: point,
        ci_lower: point - halfwidth,
        ci_upper: point + halfwidth,
        p_value: (1.0 / evalue).min(1.0),
    }
}
