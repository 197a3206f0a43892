"""Reference vectors for GrowthBook's deterministic assignment.

Generated with the `growthbook` package from PyPI, version 4.0.0 (pinned in
requirements.txt). Every expected value comes from the package's own functions,
imported from `growthbook.core` -- nothing here reimplements them. The only local
FNV code is `_fnv_code_points` / `_fnv_utf16_units`, used solely to *classify*
which variant the package's `fnv1a32` matches on non-BMP input (the "note" field).

Regenerate:
    python3 -m venv /tmp/gbvenv
    /tmp/gbvenv/bin/pip install -r requirements.txt
    /tmp/gbvenv/bin/python generate.py

Output: growthbook_assignment.json next to this script.
"""

import json
import os
import random
import string
from importlib.metadata import version as package_version

from growthbook.core import (
    chooseVariation,
    fnv1a32,
    gbhash,
    getBucketRanges,
    getEqualWeights,
    inRange,
)

PINNED_VERSION = "4.0.0"
HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "growthbook_assignment.json")

rng = random.Random(42)


def rand_ascii(lo, hi, alphabet=string.ascii_letters + string.digits + "-_.:@/ "):
    return "".join(rng.choice(alphabet) for _ in range(rng.randint(lo, hi)))


# ---------------------------------------------------------------- hash inputs
NON_ASCII_BMP = [
    "José", "用户-123", "Ünïcödé", "ñ", "Ñandú", "Москва", "пользователь-42",
    "Ελληνικά", "αβγδε", "日本語ユーザー", "한국어", "العربية", "עברית", "ß", "Straße",
    "café", "naïve", "Œuvre", "€100", "\u00a0nbsp", "ﬁ-ligature", "\uffff", "\u0080",
    "\u07ff", "\u0800", "\ud7ff", "\ue000", "é" + "x" * 20, "ü" * 50, "ä" * 500,
]
NON_BMP = [
    "😀", "user-😀", "👨‍👩‍👧‍👦", "🎉🎉🎉", "𝔘𝔫𝔦𝔠𝔬𝔡𝔢", "𠜎𠜱", "a\U00010000b",
    "\U0010ffff", "José😀", "用户🚀-123", "🇺🇸", "x" * 10 + "💡",
]
SEEDS = ["", "exp-1", "checkout-button", "a", "seed with spaces", "实验", "Ωmega",
         "x" * 500]


def hash_cases():
    cases = []
    pairs = []
    # Random ASCII seeds and ids.
    for _ in range(200):
        pairs.append((rand_ascii(0, 24), rand_ascii(0, 32)))
    # Empty strings.
    pairs += [("", ""), ("", "user-1"), ("exp-1", ""), ("", " ")]
    # Long strings (500 chars).
    for _ in range(6):
        pairs.append((rand_ascii(500, 500), rand_ascii(0, 16)))
        pairs.append((rand_ascii(0, 16), rand_ascii(500, 500)))
    pairs.append(("a" * 500, "b" * 500))
    # Non-ASCII BMP ids, with several seeds (some seeds non-ASCII too).
    for i, value in enumerate(NON_ASCII_BMP):
        pairs.append((SEEDS[i % len(SEEDS)], value))
        pairs.append((rand_ascii(1, 12), value))
        pairs.append((value, "user-" + str(i)))
    # Hashes whose inner decimal string has fewer digits / leading patterns are
    # covered by the randoms above; add sequential ids for spread.
    for i in range(20):
        pairs.append(("sequential", "user-%d" % i))

    for seed, value in pairs:
        cases.append({"seed": seed, "value": value, "version": 2, "n": gbhash(seed, value, 2)})
    # Version 1 for about 50 of them (every 7th pair, plus the edge cases).
    v1 = pairs[::7][:44] + [("", ""), ("", "user-1"), ("exp-1", ""), ("a" * 500, "b" * 500),
                            ("exp-1", "José"), ("exp-1", "用户-123"), ("exp-1", "Москва")]
    for seed, value in v1:
        cases.append({"seed": seed, "value": value, "version": 1, "n": gbhash(seed, value, 1)})
    return cases


# Classification only (see docstring): the two candidate FNV-1a definitions.
def _fnv_code_points(s):
    h = 0x811C9DC5
    for c in s:
        h = ((h ^ ord(c)) * 0x01000193) & 0xFFFFFFFF
    return h


def _fnv_utf16_units(s):
    h = 0x811C9DC5
    data = s.encode("utf-16-le")
    for i in range(0, len(data), 2):
        h = ((h ^ (data[i] | data[i + 1] << 8)) * 0x01000193) & 0xFFFFFFFF
    return h


def _hash_with(fnv, seed, value, version):
    if version == 2:
        return (fnv(str(fnv(seed + value))) % 10000) / 10000
    return (fnv(value + seed) % 1000) / 1000


def non_bmp_cases():
    cases = []
    seeds = ["", "exp-1", "checkout-button", "🧪-exp"]
    for i, value in enumerate(NON_BMP):
        for seed in (seeds[i % len(seeds)], "exp-1"):
            for version in (2, 1):
                cases.append({
                    "seed": seed, "value": value, "version": version,
                    "n": gbhash(seed, value, version),
                    "n_if_utf16_units": _hash_with(_fnv_utf16_units, seed, value, version),
                    "n_if_code_points": _hash_with(_fnv_code_points, seed, value, version),
                    "fnv1a32_of_seed_plus_value": fnv1a32(seed + value),
                })
    return cases


def fnv_iteration_note(cases):
    utf16 = sum(c["n"] == c["n_if_utf16_units"] for c in cases)
    cp = sum(c["n"] == c["n_if_code_points"] for c in cases)
    probe = "😀"
    raw_pkg = fnv1a32(probe)
    if raw_pkg == _fnv_utf16_units(probe) and raw_pkg != _fnv_code_points(probe):
        kind = ("UTF-16 code units (the package encodes non-ASCII strings as "
                "utf-16-le with surrogatepass and folds each 16-bit unit, like the JS "
                "SDK's charCodeAt loop), NOT Python code points")
    elif raw_pkg == _fnv_code_points(probe):
        kind = "Python code points (ord(c) for c in s), NOT UTF-16 code units"
    else:
        kind = "neither plain code points nor UTF-16 code units (unexpected)"
    return (
        "growthbook %s fnv1a32 iterates %s. fnv1a32('😀') = %d; UTF-16 variant = %d; "
        "code-point variant = %d. Of %d non-BMP cases, n equals the UTF-16 variant in %d "
        "and the code-point variant in %d. For BMP strings the two definitions coincide, "
        "so the 'hash' section is unaffected. 'n' in hash_non_bmp is the package's own "
        "output; n_if_* are for classification only."
        % (package_version("growthbook"), kind, raw_pkg, _fnv_utf16_units(probe),
           _fnv_code_points(probe), len(cases), utf16, cp)
    )


# ------------------------------------------------------------ bucket ranges
COVERAGES = [0, 0.1, 0.25, 0.5, 0.99, 1]
WEIGHTS = [
    [0.7, 0.3],
    [0.1, 0.2, 0.7],
    [1 / 3, 1 / 3, 1 / 3],
    [0.5, 0.5],
    [0.2, 0.2, 0.2, 0.2, 0.2],
    [0.25, 0.25, 0.25, 0.25],
    [0.1, 0.1, 0.1, 0.1, 0.1, 0.5],
    [0.995, 0.0],          # sums to 0.995: inside the 0.99..1.01 tolerance, used as given
    [0.5, 0.505],          # sums to 1.005: inside tolerance, used as given
    [0.5, 0.6],            # sums to 1.1: fallback to equal weights
    [0.4, 0.4],            # sums to 0.8: fallback
    [0.5, 0.3, 0.2],       # used with num_variations=2 below: wrong length -> fallback
    [1.0],                 # used with num_variations=3 below: wrong length -> fallback
    [1.2, -0.2],           # sums to 1 but has a negative weight: 4.0.0 falls back
    [0.0, 1.0],
    [1.0, 0.0],
]


def range_configs():
    configs = []
    for nv in range(2, 7):
        for cov in COVERAGES:
            configs.append((nv, cov, None))
    for nv in (1, 7, 10):
        configs.append((nv, 1, None))
        configs.append((nv, 0.5, None))
    for w in WEIGHTS:
        for cov in COVERAGES:
            configs.append((len(w), cov, w))
    # Wrong length (fallback to equal weights of num_variations).
    for cov in (1, 0.5):
        configs.append((2, cov, [0.5, 0.3, 0.2]))
        configs.append((3, cov, [1.0]))
        configs.append((3, cov, [0.5, 0.5]))
    # Clamping of coverage.
    for cov in (1.5, 2, 100, -0.1, -1):
        configs.append((2, cov, None))
        configs.append((3, cov, [0.1, 0.2, 0.7]))
    return configs


def ranges_json(ranges):
    return [[s, e] for s, e in ranges]


def bucket_range_cases():
    return [
        {"num_variations": nv, "coverage": cov, "weights": w,
         "ranges": ranges_json(getBucketRanges(nv, cov, w))}
        for nv, cov, w in range_configs()
    ]


# ------------------------------------------------------------ chooseVariation
def choose_cases():
    cases = []
    range_sets = [getBucketRanges(nv, cov, w) for nv, cov, w in range_configs()]
    seen = set()

    def add(n, ranges):
        key = (n, tuple(ranges))
        if key in seen:
            return
        seen.add(key)
        v = chooseVariation(n, ranges)
        # Sanity: chooseVariation agrees with inRange.
        assert v == next((i for i, r in enumerate(ranges) if inRange(n, r)), -1)
        cases.append({"n": n, "ranges": ranges_json(ranges), "variation": v})

    picks = [range_sets[i] for i in range(0, len(range_sets), 3)]
    for ranges in picks:
        # Exactly on every boundary (start inclusive, end exclusive).
        for s, e in ranges:
            add(s, ranges)
            add(e, ranges)
        # Outside all ranges.
        add(-0.0001, ranges)
        add(1.0, ranges)
        add(0.9999, ranges)
        add(0, ranges)
        # A couple of random hash-like values.
        for _ in range(2):
            add(rng.randrange(10000) / 10000, ranges)
    # Empty ranges list.
    add(0.5, [])
    return cases


# ------------------------------------------------------------ end to end
def assignment_cases():
    cases = []
    configs = range_configs()
    exp_seeds = ["exp-1", "checkout-button", "", "实验-seed", "homepage_v2", "x" * 64]
    users = ["user-%d" % i for i in range(10)] + ["José", "用户-123", "Москва", "", "ä" * 500]
    for i, (nv, cov, w) in enumerate(configs):
        ranges = getBucketRanges(nv, cov, w)
        for j in range(5):
            seed = exp_seeds[(i + j) % len(exp_seeds)]
            user = users[(i * 5 + j) % len(users)] if j < 3 else rand_ascii(1, 20)
            n = gbhash(seed, user, 2)
            cases.append({"seed": seed, "user_id": user, "num_variations": nv,
                          "coverage": cov, "weights": w,
                          "variation": chooseVariation(n, ranges)})
    return cases


def main():
    installed = package_version("growthbook")
    if installed != PINNED_VERSION:
        raise SystemExit("expected growthbook==%s, found %s" % (PINNED_VERSION, installed))
    assert getEqualWeights(0) == [] and getEqualWeights(4) == [0.25] * 4
    non_bmp = non_bmp_cases()
    data = {
        "generator": "tests/vectors/generate.py with growthbook==%s (growthbook.core)" % installed,
        "note": fnv_iteration_note(non_bmp),
        "hash": hash_cases(),
        "hash_non_bmp": non_bmp,
        "bucket_ranges": bucket_range_cases(),
        "choose": choose_cases(),
        "assignments": assignment_cases(),
    }
    with open(OUT, "w", encoding="utf-8") as f:
        json.dump(data, f, indent=1, ensure_ascii=False)
        f.write("\n")
    for k in ("hash", "hash_non_bmp", "bucket_ranges", "choose", "assignments"):
        print(k, len(data[k]))
    print("bytes", os.path.getsize(OUT))


if __name__ == "__main__":
    main()
