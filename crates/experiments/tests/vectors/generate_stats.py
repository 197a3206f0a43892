"""Reference vectors for experiment statistics (frequentist tests, SRM, Holm).

Generated with these PyPI packages (the script refuses to run against other versions):

    gbstats==0.8.0        TwoSidedTTest / SequentialTwoSidedTTest on
                          SampleMeanStatistic / ProportionStatistic
    scipy==1.17.1         scipy.stats.chisquare (sample-ratio-mismatch check)
    statsmodels==0.15.0   statsmodels.stats.multitest.multipletests(method="holm")
    numpy==1.26.4         (gbstats 0.8.0 requires numpy<2)

Every expected value comes from those packages' own classes and functions -- nothing
here reimplements a test. Only the *inputs* (sufficient statistics n / sum /
sum_squares, observed counts, p-value lists) are built here, from a fixed
`random.Random(20240611)` plus hand-written edge cases, so the output is
deterministic.

Regenerate (needs Python >= 3.11 for scipy 1.17):
    python3 -m venv /tmp/statsvenv
    /tmp/statsvenv/bin/pip install gbstats==0.8.0 scipy==1.17.1 statsmodels==0.15.0 numpy==1.26.4
    /tmp/statsvenv/bin/python generate_stats.py

Output: stats.json next to this script. Sections:
  tests  -- one gbstats test per entry. kind "mean" uses
            SampleMeanStatistic(n=, sum=, sum_squares=); kind "proportion" uses
            ProportionStatistic(n=, sum=) (sum_squares is written equal to sum, as for
            0/1 data). sequential=false -> TwoSidedTTest(a, b, FrequentistConfig(
            difference_type=, alpha=)); sequential=true -> SequentialTwoSidedTTest(a, b,
            SequentialConfig(difference_type=, alpha=, sequential_tuning_parameter=tuning)).
            "tuning" is 5000 (the gbstats default) for fixed tests, where it is unused.
            expected / ci_lower / ci_upper / p_value / error are compute_result()'s
            expected, ci[0], ci[1], p_value, error_message. Non-finite floats -> null.
  srm    -- p_value = scipy.stats.chisquare(observed,
            f_exp=[w * sum(observed) for w in weights]).pvalue
  holm   -- adjusted = statsmodels.stats.multitest.multipletests(p_values,
            method="holm")[1], in input order.
"""

import json
import math
import os
import random
import sys
import warnings
from importlib.metadata import version as package_version

import numpy as np
from scipy.stats import chisquare
from statsmodels.stats.multitest import multipletests

from gbstats.frequentist.tests import (
    FrequentistConfig,
    SequentialConfig,
    SequentialTwoSidedTTest,
    TwoSidedTTest,
)
from gbstats.models.statistics import ProportionStatistic, SampleMeanStatistic
from gbstats.utils import check_srm

PINNED = {"gbstats": "0.8.0", "scipy": "1.17.1", "statsmodels": "0.15.0", "numpy": "1.26.4"}
HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "stats.json")

rng = random.Random(20240611)

ALPHAS = [0.05, 0.01, 0.1]
TUNINGS = [1000, 5000, 20000]
DEFAULT_TUNING = 5000

NON_FINITE = []  # descriptions of any non-finite outputs written as null


def num(x, where):
    x = float(x)
    if math.isfinite(x):
        return x
    NON_FINITE.append("%s=%r" % (where, x))
    return None


# ------------------------------------------------------------ sufficient stats
def mean_stats(values):
    """n / sum / sum_squares of a sample, summed left to right in float64."""
    s = 0.0
    ss = 0.0
    for v in values:
        s += v
        ss += v * v
    return {"n": len(values), "sum": s, "sum_squares": ss}


def prop_stats(n, successes):
    return {"n": n, "sum": float(successes), "sum_squares": float(successes)}


def synthetic_mean(n, mean, sd):
    """Moments of a hypothetical sample of size n with given mean and sd."""
    s = n * mean
    ss = (n - 1) * sd * sd + s * s / n
    return {"n": n, "sum": s, "sum_squares": ss}


def make_stat(kind, st):
    if kind == "proportion":
        return ProportionStatistic(n=st["n"], sum=st["sum"])
    return SampleMeanStatistic(n=st["n"], sum=st["sum"], sum_squares=st["sum_squares"])


# ------------------------------------------------------------ gbstats tests
TESTS = []
_alpha_i = [0]
_tuning_i = [0]


def next_alpha():
    a = ALPHAS[_alpha_i[0] % len(ALPHAS)]
    _alpha_i[0] += 1
    return a


def next_tuning():
    t = TUNINGS[_tuning_i[0] % len(TUNINGS)]
    _tuning_i[0] += 1
    return t


def run_test(kind, control, treatment, alpha, sequential, tuning, difference_type):
    a = make_stat(kind, control)
    b = make_stat(kind, treatment)
    if sequential:
        test = SequentialTwoSidedTTest(
            a, b,
            SequentialConfig(difference_type=difference_type, alpha=alpha,
                             sequential_tuning_parameter=tuning),
        )
    else:
        test = TwoSidedTTest(a, b, FrequentistConfig(difference_type=difference_type,
                                                     alpha=alpha))
    res = test.compute_result()
    where = "tests[%d]" % len(TESTS)
    TESTS.append({
        "kind": kind,
        "control": control,
        "treatment": treatment,
        "alpha": alpha,
        "sequential": sequential,
        "tuning": float(tuning),
        "difference_type": difference_type,
        "expected": num(res.expected, where + ".expected"),
        "ci_lower": num(res.ci[0], where + ".ci_lower"),
        "ci_upper": num(res.ci[1], where + ".ci_upper"),
        "p_value": num(res.p_value, where + ".p_value"),
        "error": res.error_message,
    })


def add_pair(kind, control, treatment):
    """Four tests per pair: relative/absolute x fixed/sequential, cycling alpha and
    the sequential tuning parameter."""
    for sequential in (False, True):
        for dt in ("relative", "absolute"):
            tuning = next_tuning() if sequential else DEFAULT_TUNING
            run_test(kind, control, treatment, next_alpha(), sequential, tuning, dt)


def add_grid(kind, control, treatment):
    """Full cross product: 3 alphas x 2 difference types x (fixed + 3 tunings)."""
    for alpha in ALPHAS:
        for dt in ("relative", "absolute"):
            run_test(kind, control, treatment, alpha, False, DEFAULT_TUNING, dt)
            for tuning in TUNINGS:
                run_test(kind, control, treatment, alpha, True, tuning, dt)


# Realistic LLM metrics. `effect` multiplies the treatment's location (or success
# probability); 1.0 means same distribution (observed effect is noise only).
def sample_score(n, effect):
    # Judge / eval scores in [0, 1], 4 decimals.
    out = []
    for _ in range(n):
        v = rng.betavariate(6.0 * effect, 3.0)
        out.append(round(min(max(v, 0.0), 1.0), 4))
    return out


def sample_latency(n, effect):
    # End-to-end latency in whole ms, clipped to 100..5000.
    out = []
    for _ in range(n):
        v = rng.lognormvariate(math.log(900.0 * effect), 0.6)
        out.append(float(int(min(max(v, 100.0), 5000.0))))
    return out


def sample_cost(n, effect):
    # USD per request, 6 decimals: tokens * price.
    out = []
    for _ in range(n):
        prompt = rng.randint(200, 4000)
        completion = int(rng.expovariate(1.0 / (350.0 * effect))) + 1
        out.append(round(prompt * 0.0000025 + completion * 0.00001, 6))
    return out


def sample_pass(n, effect):
    p = min(0.72 * effect, 0.99)
    return sum(1 for _ in range(n) if rng.random() < p)


def realistic_cases():
    sizes = [(30, 30), (200, 180), (1500, 1600)]
    effects = [1.08, 1.0, 0.93]
    for sampler in (sample_score, sample_latency, sample_cost):
        for nc, nt in sizes:
            for eff in effects:
                add_pair("mean", mean_stats(sampler(nc, 1.0)), mean_stats(sampler(nt, eff)))
    for nc, nt in sizes:
        for eff in effects:
            add_pair("proportion", prop_stats(nc, sample_pass(nc, 1.0)),
                     prop_stats(nt, sample_pass(nt, eff)))


def grid_cases():
    add_grid("mean", mean_stats(sample_latency(400, 1.0)), mean_stats(sample_latency(420, 0.95)))
    add_grid("proportion", prop_stats(800, 560), prop_stats(790, 590))


def small_n_cases():
    for nc, nt in [(2, 2), (3, 3), (5, 5), (2, 5), (5, 3)]:
        add_pair("mean", mean_stats(sample_score(nc, 1.0)), mean_stats(sample_score(nt, 1.1)))
    for (nc, sc), (nt, st) in [((2, 1), (2, 1)), ((3, 1), (3, 2)), ((5, 2), (5, 4)),
                               ((2, 1), (5, 3)), ((5, 4), (3, 1))]:
        add_pair("proportion", prop_stats(nc, sc), prop_stats(nt, st))


def large_n_cases():
    add_pair("mean", synthetic_mean(100000, 1200.0, 800.0), synthetic_mean(100000, 1212.0, 810.0))
    add_pair("mean", synthetic_mean(1000000, 1200.0, 800.0), synthetic_mean(1000000, 1194.0, 790.0))
    add_pair("mean", synthetic_mean(1000000, 0.71, 0.18), synthetic_mean(1000000, 0.71, 0.18))
    add_pair("mean", synthetic_mean(100000, 0.0042, 0.003), synthetic_mean(1000000, 0.0041, 0.0031))
    add_pair("mean", synthetic_mean(1000000, 0.8123, 0.2), synthetic_mean(1000000, 0.8125, 0.2))
    add_pair("proportion", prop_stats(100000, 12000), prop_stats(100000, 12300))
    add_pair("proportion", prop_stats(1000000, 120000), prop_stats(1000000, 119400))
    add_pair("proportion", prop_stats(100000, 71234), prop_stats(1000000, 712340))


def degenerate_cases():
    normal = mean_stats(sample_latency(50, 1.0))
    normal2 = mean_stats(sample_latency(60, 1.05))
    empty = {"n": 0, "sum": 0.0, "sum_squares": 0.0}
    const5 = mean_stats([5.0] * 10)
    const7 = mean_stats([7.0] * 12)
    # n = 0
    add_pair("mean", empty, normal)                          # control n=0 -> mean 0
    add_pair("mean", normal, empty)                          # treatment n=0 -> variance 0
    add_pair("mean", empty, empty)
    # n = 1
    add_pair("mean", mean_stats([812.0]), normal)
    add_pair("mean", normal, mean_stats([812.0]))
    add_pair("mean", mean_stats([812.0]), mean_stats([640.0]))
    # zero variance
    add_pair("mean", const5, normal)
    add_pair("mean", normal, const7)
    add_pair("mean", const5, const7)
    # zero / negative control mean, zero treatment mean
    add_pair("mean", mean_stats([-1.0, 1.0, -2.0, 2.0, 0.5, -0.5]), mean_stats([1.0, 2.0, 0.5, 3.0]))
    add_pair("mean", mean_stats([0.2, 0.4, 0.9, 0.1]), mean_stats([-1.0, 1.0, -0.3, 0.3]))
    add_pair("mean", mean_stats([-3.0, -1.0, -2.5, -0.5, -4.0]), mean_stats([-2.0, -1.5, -2.2, -0.1]))
    # float round-off "constant" samples: variance is a tiny negative / positive number
    add_pair("mean", mean_stats([0.1] * 3), normal)         # variance -1.7e-18 -> error
    add_pair("mean", normal, mean_stats([0.1] * 7))         # variance +2.3e-18 -> computed
    # inconsistent moments (sum_squares < sum^2 / n) -> negative variance
    add_pair("mean", {"n": 10, "sum": 50.0, "sum_squares": 200.0}, normal)
    # identical arms (observed effect exactly 0) and an enormous effect
    add_pair("mean", normal, normal)
    add_pair("mean", synthetic_mean(1000000, 100.0, 1.0), synthetic_mean(1000000, 150.0, 1.0))
    add_pair("mean", normal, normal2)
    # proportions: 0% / 100% in either or both arms, n = 0, n = 1, identical arms
    add_pair("proportion", prop_stats(50, 0), prop_stats(50, 10))
    add_pair("proportion", prop_stats(50, 50), prop_stats(50, 40))
    add_pair("proportion", prop_stats(50, 10), prop_stats(50, 0))
    add_pair("proportion", prop_stats(50, 10), prop_stats(50, 50))
    add_pair("proportion", prop_stats(40, 0), prop_stats(50, 0))
    add_pair("proportion", prop_stats(40, 40), prop_stats(50, 50))
    add_pair("proportion", prop_stats(0, 0), prop_stats(50, 10))
    add_pair("proportion", prop_stats(50, 10), prop_stats(0, 0))
    add_pair("proportion", prop_stats(1, 1), prop_stats(50, 10))
    add_pair("proportion", prop_stats(50, 10), prop_stats(1, 0))
    add_pair("proportion", prop_stats(300, 123), prop_stats(300, 123))
    add_pair("proportion", prop_stats(1000000, 10), prop_stats(1000000, 900000))


# ------------------------------------------------------------ SRM
SRM_WEIGHTS = [
    [0.5, 0.5],
    [0.2, 0.8],
    [0.9, 0.1],
    [1 / 3, 1 / 3, 1 / 3],
    [0.1, 0.2, 0.7],
    [0.25, 0.25, 0.25, 0.25],
    [0.4, 0.3, 0.2, 0.1],
    [0.2, 0.2, 0.2, 0.2, 0.2],
    [0.5, 0.2, 0.1, 0.1, 0.1],
    [0.05, 0.05, 0.3, 0.3, 0.3],
]


def draw_counts(total, probs):
    """Multinomial-ish counts: exact draws for small totals, rounded normal
    approximation for large ones (stdlib random only, so deterministic)."""
    if total <= 2000:
        counts = [0] * len(probs)
        for _ in range(total):
            u = rng.random()
            acc = 0.0
            for i, p in enumerate(probs):
                acc += p
                if u < acc or i == len(probs) - 1:
                    counts[i] += 1
                    break
        return counts
    counts = []
    for p in probs[:-1]:
        mu = total * p
        counts.append(max(0, int(round(rng.gauss(mu, math.sqrt(mu * (1 - p)))))))
    counts.append(max(0, total - sum(counts)))
    return counts


SRM = []
SRM_GBSTATS_MAX_DIFF = [0.0]


def add_srm(observed, weights):
    total = sum(observed)
    p = chisquare(observed, f_exp=[w * total for w in weights]).pvalue
    SRM_GBSTATS_MAX_DIFF[0] = max(SRM_GBSTATS_MAX_DIFF[0],
                                  abs(float(p) - float(check_srm(observed, weights))))
    SRM.append({"observed": list(observed), "weights": list(weights),
                "p_value": num(p, "srm[%d].p_value" % len(SRM))})


def srm_cases():
    totals = [40, 300, 20000, 1000000]
    for wi, weights in enumerate(SRM_WEIGHTS):
        for ti, total in enumerate(totals):
            if (wi + ti) % 3 == 2 and total >= 20000:
                # Real mismatch: traffic drawn from distorted weights.
                k = len(weights)
                skew = [w * (1.15 if i == 0 else 1.0) for i, w in enumerate(weights)]
                s = sum(skew)
                probs = [w / s for w in skew]
                assert k >= 2
            else:
                probs = weights
            add_srm(draw_counts(total, probs), weights)
    # Hand-written: exact match, one empty arm, tiny counts, extreme mismatch.
    add_srm([5000, 5000], [0.5, 0.5])
    add_srm([0, 12], [0.5, 0.5])
    add_srm([3, 1, 2], [1 / 3, 1 / 3, 1 / 3])
    add_srm([510000, 490000], [0.5, 0.5])
    add_srm([900, 100], [0.5, 0.5])


# ------------------------------------------------------------ Holm
HOLM = []


def add_holm(pvals):
    adj = multipletests(pvals, method="holm")[1]
    # Sanity (not a reimplementation): statsmodels sorts with an unstable argsort;
    # the result must not depend on input order.
    rev = multipletests(pvals[::-1], method="holm")[1][::-1]
    assert list(adj) == list(rev), pvals
    HOLM.append({"p_values": list(pvals),
                 "adjusted": [num(x, "holm[%d].adjusted" % len(HOLM)) for x in adj]})


def holm_cases():
    add_holm([0.03])
    add_holm([0.0])
    add_holm([1.0])
    add_holm([0.01, 0.04])
    add_holm([0.04, 0.01])
    add_holm([0.5, 0.5])
    add_holm([0.0, 0.0, 0.0])
    add_holm([1.0, 1.0, 1.0, 1.0])
    add_holm([0.0, 1.0, 0.5])
    add_holm([0.02, 0.02, 0.02, 0.02])
    add_holm([0.01, 0.02, 0.03, 0.04, 0.05])
    add_holm([0.05, 0.04, 0.03, 0.02, 0.01])
    add_holm([0.3, 0.001, 0.04, 0.001, 0.3, 0.9])
    add_holm([1e-10, 1e-300, 0.2, 5e-324])
    add_holm([0.012, 0.011, 0.5, 0.04, 0.011, 0.04, 0.06])
    add_holm([0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2, 0.1, 0.05, 0.01, 0.001])
    add_holm([0.1] * 12)
    add_holm([0.004, 0.2, 0.003, 0.25, 0.004, 0.0, 1.0, 0.07, 0.07, 0.5, 0.049, 0.011])
    add_holm([0.3, 0.2])                       # monotone step: 0.4 then max(0.4, 0.3)
    add_holm([0.6, 0.7, 0.2])                  # clipping at 1
    add_holm([0.1, 0.30000000000000004, 0.7])
    # Random lists, some with repeated values and rounded to few decimals.
    while len(HOLM) < 42:
        k = rng.randint(1, 12)
        mode = len(HOLM) % 3
        if mode == 0:
            ps = [rng.random() for _ in range(k)]
        elif mode == 1:
            ps = [round(rng.random() ** 3, 3) for _ in range(k)]
            if k > 2:
                ps[rng.randrange(k)] = ps[0]   # force a tie
        else:
            ps = [rng.choice([0.0, 1.0, 0.05, 0.01]) if rng.random() < 0.3
                  else 10 ** rng.uniform(-6, 0) for _ in range(k)]
        add_holm(ps)


# ------------------------------------------------------------ main
def main():
    installed = {name: package_version(name) for name in PINNED}
    wrong = {k: v for k, v in installed.items() if v != PINNED[k]}
    if wrong:
        raise SystemExit("expected %s, found %s" % (PINNED, installed))

    with warnings.catch_warnings():
        # Sequential p-values overflow np.exp for huge effects (-> e-value inf -> p 0).
        warnings.simplefilter("ignore", RuntimeWarning)
        realistic_cases()
        grid_cases()
        small_n_cases()
        large_n_cases()
        degenerate_cases()
    srm_cases()
    holm_cases()

    data = {
        "generator": "crates/experiments/tests/vectors/generate_stats.py",
        "packages": installed,
        "tests": TESTS,
        "srm": SRM,
        "holm": HOLM,
    }
    with open(OUT, "w", encoding="utf-8") as f:
        json.dump(data, f, indent=1, allow_nan=False)
        f.write("\n")

    kinds = {}
    for t in TESTS:
        key = "%s/%s/%s/%s" % (t["kind"], "seq" if t["sequential"] else "fixed",
                               t["difference_type"], t["error"] or "ok")
        kinds[key] = kinds.get(key, 0) + 1
    print("tests", len(TESTS))
    for k in sorted(kinds):
        print("  ", k, kinds[k])
    print("srm", len(SRM), " (p<0.001: %d)" % sum(1 for s in SRM if s["p_value"] < 0.001))
    print("srm max |scipy chisquare - gbstats check_srm| = %r" % SRM_GBSTATS_MAX_DIFF[0])
    print("holm", len(HOLM))
    print("non-finite values written as null:", NON_FINITE or "none")
    print("bytes", os.path.getsize(OUT))


if __name__ == "__main__":
    sys.exit(main())
