"""Reference vectors for the online pass-rate regression test.

The two-proportion z-test with a pooled variance, one-sided (the newer version's pass
rate is smaller), as statsmodels computes it:

    statsmodels.stats.proportion.proportions_ztest(
        count=[passed_new, passed_old], nobs=[n_new, n_old], alternative="smaller")

Writes two_proportion.json next to this file. Versions are pinned in
requirements-two-proportion.txt; the script refuses others.
"""

import json
import pathlib
import random

import statsmodels
from statsmodels.stats.proportion import proportions_ztest

assert statsmodels.__version__ == "0.15.0", statsmodels.__version__

random.seed(19)
cases = []
# Hand-picked edges: equal rates, a large drop, a rise, tiny and large samples.
fixed = [
    (40, 50, 45, 50),
    (10, 100, 90, 100),
    (90, 100, 10, 100),
    (50, 100, 50, 100),
    (1, 3, 2, 3),
    (4950, 10000, 5050, 10000),
    (0, 60, 30, 60),
    (49, 50, 50, 50),
]
for passed_new, n_new, passed_old, n_old in fixed:
    cases.append((passed_new, n_new, passed_old, n_old))
while len(cases) < 120:
    n_new = random.randint(5, 5000)
    n_old = random.randint(5, 5000)
    rate_old = random.uniform(0.05, 0.95)
    rate_new = min(0.99, max(0.01, rate_old + random.uniform(-0.2, 0.1)))
    passed_new = sum(random.random() < rate_new for _ in range(n_new))
    passed_old = sum(random.random() < rate_old for _ in range(n_old))
    pooled = (passed_new + passed_old) / (n_new + n_old)
    if pooled in (0.0, 1.0):
        continue
    cases.append((passed_new, n_new, passed_old, n_old))

out = []
for passed_new, n_new, passed_old, n_old in cases:
    z, p = proportions_ztest([passed_new, passed_old], [n_new, n_old], alternative="smaller")
    out.append(
        {
            "passed_new": passed_new,
            "n_new": n_new,
            "passed_old": passed_old,
            "n_old": n_old,
            "z": float(z),
            "p_value": float(p),
        }
    )

path = pathlib.Path(__file__).with_name("two_proportion.json")
path.write_text(json.dumps({"two_proportion_smaller": out}, indent=1) + "\n")
print(f"wrote {len(out)} cases to {path}")
