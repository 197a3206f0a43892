"""Reference p-values for `decisions.rs`, from gbstats and statsmodels rather than from
the crate under test.

`decisions.rs` fills its tallies with `fill(tally, variant, metric, center, n)`: the
values `center + ((i % 10) - 4.5) / 10` for i in 0..n. This script builds the same
values (Python floats are the same IEEE doubles), runs gbstats' fixed-horizon
`TwoSidedTTest` on the relative difference at alpha 0.05 (the experiments' defaults),
and adjusts each Holm family with `statsmodels.stats.multitest.multipletests(
method="holm")`. The printed numbers are pasted into `decisions.rs`.

Run with the pinned statistics packages of `vectors/requirements-stats.txt`:

    python3 -m venv /tmp/statsvenv
    /tmp/statsvenv/bin/pip install -r crates/experiments/tests/vectors/requirements-stats.txt
    /tmp/statsvenv/bin/python crates/experiments/tests/decisions_reference.py
"""

import math
from importlib.metadata import version as package_version

from gbstats.frequentist.tests import FrequentistConfig, TwoSidedTTest
from gbstats.models.statistics import SampleMeanStatistic
from statsmodels.stats.multitest import multipletests

PINNED = {"gbstats": "0.8.0", "scipy": "1.17.1", "statsmodels": "0.15.0", "numpy": "1.26.4"}


def fill(center, n):
    values = [center + ((i % 10) - 4.5) / 10 for i in range(n)]
    # Exactly rounded sums, so the reference carries no summation error of its own.
    return SampleMeanStatistic(
        n=n, sum=math.fsum(values), sum_squares=math.fsum(v * v for v in values)
    )


def relative_p(control, treatment):
    result = TwoSidedTTest(
        control, treatment, FrequentistConfig(difference_type="relative", alpha=0.05)
    ).compute_result()
    assert result.error_message is None, result.error_message
    return float(result.p_value)


def holm(p_values):
    return [float(p) for p in multipletests(p_values, method="holm")[1]]


def main():
    installed = {name: package_version(name) for name in PINNED}
    if installed != PINNED:
        raise SystemExit("expected %s, found %s" % (PINNED, installed))

    # lower_latency_wins_when_lower_is_better: the family is the one primary metric.
    latency = relative_p(fill(10.0, 100), fill(9.0, 100))
    print("latency raw p = %r, holm = %r" % (latency, holm([latency])))

    # holm_adjusts_across_variants_and_non_guardrail_metrics_only: quality and helpful
    # (the guardrail is not in the family).
    quality = relative_p(fill(1.0, 200), fill(1.05, 200))
    helpful = relative_p(fill(1.0, 200), fill(1.02, 200))
    print("quality raw p = %r" % quality)
    print("helpful raw p = %r" % helpful)
    print("holm([quality, helpful]) = %r" % holm([quality, helpful]))

    # uncomputable_tests_still_count_in_the_holm_family: quality and a test that cannot
    # be computed, which counts as p = 1.
    quality_100 = relative_p(fill(1.0, 100), fill(1.05, 100))
    print("quality (100 per variant) raw p = %r" % quality_100)
    print("holm([quality, 1.0]) = %r" % holm([quality_100, 1.0]))


if __name__ == "__main__":
    main()
