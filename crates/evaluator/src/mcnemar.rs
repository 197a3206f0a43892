//! McNemar's exact test on paired pass/fail outcomes of two runs over the same samples,
//! as `statsmodels.stats.contingency_tables.mcnemar(table, exact=True)` computes it:
//! only the discordant pairs matter, `p = min(1, 2 * BinomCDF(min(b, c); b + c, 1/2))`.

use statrs::distribution::{Binomial, DiscreteCDF};

/// The two-sided exact p-value for `b` samples that passed only in the first run and `c`
/// that passed only in the second. No discordant pairs: 1.
pub fn mcnemar_exact(b: u64, c: u64) -> f64 {
    let n = b + c;
    if n == 0 {
        return 1.0;
    }
    let binomial = Binomial::new(0.5, n).expect("p = 0.5 is a valid probability");
    (2.0 * binomial.cdf(b.min(c))).min(1.0)
}
