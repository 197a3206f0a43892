#!/usr/bin/env python3
"""Generate reference vectors for the text metrics of the `evaluator` crate.

Writes ``crates/evaluator/tests/vectors/text_metrics.json`` (next to this
script) with five sections that the Rust implementation must reproduce:

* ``bleu``        -- ``sacrebleu.sentence_bleu(hypothesis, [reference]).score / 100``
                     with sacrebleu's defaults (tokenizer ``13a``, smoothing
                     ``exp``, ``use_effective_order=True``, mixed case).
* ``rouge_l``     -- ``rouge_score.rouge_scorer.RougeScorer(["rougeL"])
                     .score(reference, prediction)["rougeL"].fmeasure``
                     (default tokenizer, no stemmer; note ``score(target, prediction)``).
* ``levenshtein`` -- ``rapidfuzz.distance.Levenshtein.normalized_similarity(a, b)``
                     (operates on Unicode code points).
* ``token_f1``    -- ``f1_score`` of the official SQuAD v1.1 evaluation script
                     (copied verbatim below).
* ``mcnemar``     -- ``statsmodels.stats.contingency_tables.mcnemar(
                     [[10, b], [c, 10]], exact=True).pvalue``.

Exact package versions (the script refuses to run with anything else):

    sacrebleu   == 2.6.0
    rouge-score == 0.1.2
    rapidfuzz   == 3.14.6
    statsmodels == 0.15.0
    scipy       == 1.17.1   (computes the binomial CDF behind statsmodels' McNemar)
    numpy       == 2.4.6

Generated with CPython 3.11.7. The complete environment (``pip freeze``) is
pinned in ``requirements-text-metrics.txt`` next to this file.

Regenerate (from the repository root)::

    python3 -m venv /tmp/textvenv
    /tmp/textvenv/bin/pip install -r crates/evaluator/tests/vectors/requirements-text-metrics.txt
    /tmp/textvenv/bin/python crates/evaluator/tests/vectors/generate_text_metrics.py

Output is deterministic: all randomness comes from ``random.Random(7)``, no
set/dict iteration over hashed strings influences order, and floats are
written with ``repr`` (shortest round-trip) by ``json``.

Cases where a library raises would be skipped and reported on stderr; with
the pinned versions none of the cases raise (empty and whitespace-only inputs
are all accepted and return a number).
"""

import importlib.metadata
import json
import os
import random
import re
import string
import sys
from collections import Counter

PINS = {
    "sacrebleu": "2.6.0",
    "rouge-score": "0.1.2",
    "rapidfuzz": "3.14.6",
    "statsmodels": "0.15.0",
    "scipy": "1.17.1",
    "numpy": "2.4.6",
}
# Packages reported in the JSON "packages" object.
REPORTED = ["sacrebleu", "rouge-score", "rapidfuzz", "statsmodels"]


def check_versions():
    bad = []
    for name, want in PINS.items():
        try:
            got = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            got = None
        if got != want:
            bad.append(f"{name}: installed {got!r}, pinned {want!r}")
    if bad:
        sys.exit(
            "refusing to run, installed versions differ from the pins:\n  "
            + "\n  ".join(bad)
            + "\ninstall them with: pip install -r requirements-text-metrics.txt"
        )


check_versions()

import logging  # noqa: E402

import sacrebleu  # noqa: E402
from rapidfuzz.distance import Levenshtein  # noqa: E402
from rouge_score import rouge_scorer  # noqa: E402
from statsmodels.stats.contingency_tables import mcnemar  # noqa: E402

logging.getLogger("sacrebleu").setLevel(logging.ERROR)
logging.getLogger("absl").setLevel(logging.ERROR)

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "text_metrics.json")


# ---------------------------------------------------------------------------
# Official SQuAD v1.1 evaluation script (evaluate-v1.1.py, Rajpurkar et al.,
# https://rajpurkar.github.io/SQuAD-explorer/), functions copied verbatim.
# ---------------------------------------------------------------------------
def normalize_answer(s):
    """Lower text and remove punctuation, articles and extra whitespace."""
    def remove_articles(text):
        return re.sub(r'\b(a|an|the)\b', ' ', text)

    def white_space_fix(text):
        return ' '.join(text.split())

    def remove_punc(text):
        exclude = set(string.punctuation)
        return ''.join(ch for ch in text if ch not in exclude)

    def lower(text):
        return text.lower()

    return white_space_fix(remove_articles(remove_punc(lower(s))))


def f1_score(prediction, ground_truth):
    prediction_tokens = normalize_answer(prediction).split()
    ground_truth_tokens = normalize_answer(ground_truth).split()
    common = Counter(prediction_tokens) & Counter(ground_truth_tokens)
    num_same = sum(common.values())
    if num_same == 0:
        return 0
    precision = 1.0 * num_same / len(prediction_tokens)
    recall = 1.0 * num_same / len(ground_truth_tokens)
    f1 = (2 * precision * recall) / (precision + recall)
    return f1
# --------------------------- end of SQuAD v1.1 copy ------------------------


RNG = random.Random(7)

# Realistic reference sentences (1-40 words; punctuation, numbers, mixed
# case, contractions, repeated words).
REFERENCES = [
    "Paris",
    "The capital of France is Paris.",
    "Water boils at 100 degrees Celsius at sea level.",
    "The Eiffel Tower was completed in 1889 and is 330 metres tall.",
    "Photosynthesis converts light energy into chemical energy stored in glucose.",
    "I don't know the answer to that question.",
    "It's not possible to divide a number by zero; the result is undefined.",
    "The function returns None if the key isn't found in the dictionary.",
    "To install the package, run `pip install requests` in your terminal.",
    "The meeting has been moved to Thursday, March 14, at 3:30 PM.",
    "Albert Einstein published the theory of general relativity in 1915.",
    "The quick brown fox jumps over the lazy dog.",
    "Yes.",
    "No, the patient should not take ibuprofen with warfarin.",
    "The total cost is $1,249.99, including 8.5% sales tax.",
    "Rust guarantees memory safety without a garbage collector by using ownership and borrowing.",
    "The model achieved an F1 score of 0.87 on the held-out test set.",
    "Mount Everest, at 8,849 metres, is the highest mountain above sea level.",
    "Please restart the server and check the logs again.",
    "The the cat sat on the mat, and the cat was happy.",
    "COVID-19 vaccines were first authorized for emergency use in December 2020.",
    "Shakespeare wrote Hamlet, Macbeth, Othello and King Lear.",
    "Our Q3 revenue grew 12% year-over-year to $4.2 billion.",
    "He said, \"We'll be there by 5 o'clock.\"",
    "A binary search runs in O(log n) time on a sorted array.",
    "The mitochondria is the powerhouse of the cell.",
    "Use the --force flag only if you're sure; it overwrites existing files.",
    "In 2023, the population of Tokyo was roughly 14 million people.",
    "The answer is 42.",
    "An apple a day keeps the doctor away.",
    "You can't compare apples and oranges, but you can compare their prices per kilogram.",
    "The HTTP 404 status code means the requested resource was not found on the server.",
    "Summary: the study found no significant difference between the two groups (p = 0.34).",
    "Ice melts at 0 °C and water freezes at the same temperature.",
    "The Great Wall of China is more than 21,000 kilometres long, although estimates vary.",
    "First, preheat the oven to 180 degrees. Then, mix the flour, sugar and eggs. Finally, bake for 25-30 minutes.",
    "The defendant was found not guilty on all three counts.",
    "Neural networks learn by adjusting weights with gradient descent and backpropagation.",
    "My flight leaves at 7:45 a.m. from gate B12.",
    "Thank you! I'm glad I could help.",
    "The company's CEO, Jane Doe, announced the merger on 2024-05-01.",
    "Light travels at approximately 299,792 kilometres per second in a vacuum.",
    "Blue whales are the largest animals ever known to have lived on Earth, reaching lengths of up to 30 metres and weights of 190 tonnes.",
]

SYNONYMS = {
    "capital": "capital city", "completed": "finished", "tall": "high",
    "converts": "turns", "question": "query", "returns": "gives back",
    "found": "located", "moved": "rescheduled", "published": "released",
    "quick": "fast", "patient": "person", "total": "overall",
    "guarantees": "ensures", "achieved": "reached", "highest": "tallest",
    "restart": "reboot", "happy": "content", "authorized": "approved",
    "wrote": "authored", "grew": "increased", "runs": "executes",
    "roughly": "about", "answer": "result", "requested": "asked-for",
    "significant": "meaningful", "long": "lengthy", "bake": "cook",
    "learn": "train", "leaves": "departs", "glad": "happy",
    "announced": "revealed", "approximately": "about", "largest": "biggest",
    "Paris": "Lyon", "1889": "1887", "42": "forty-two", "0.87": "0.78",
    "Thursday,": "Friday,", "12%": "15%",
}

CONTRACTIONS = [
    ("don't", "do not"), ("It's", "It is"), ("isn't", "is not"),
    ("can't", "cannot"), ("you're", "you are"), ("I'm", "I am"),
    ("We'll", "We will"), ("company's", "company"),
]

PREFIXES = ["Sure! ", "Answer: ", "Based on the context, ", "I think ",
            "Great question. ", "**Answer:** ", "As an AI language model, "]
SUFFIXES = [" Let me know if you need anything else.", " Hope this helps!",
            " (source: Wikipedia)", " 😊", "...", " Thanks."]


def perturb(ref, rng):
    """Return an LLM-like paraphrase/corruption of ``ref``."""
    words = ref.split()
    ops = rng.sample(range(12), rng.randint(1, 3))
    for op in ops:
        if op == 0 and len(words) > 1:  # drop a word
            del words[rng.randrange(len(words))]
        elif op == 1 and len(words) > 1:  # swap adjacent words
            i = rng.randrange(len(words) - 1)
            words[i], words[i + 1] = words[i + 1], words[i]
        elif op == 2:  # synonym substitution
            idx = [i for i, w in enumerate(words) if w in SYNONYMS]
            if idx:
                i = rng.choice(idx)
                words[i] = SYNONYMS[words[i]]
        elif op == 3 and words:  # repeat a word
            i = rng.randrange(len(words))
            words.insert(i, words[i])
        elif op == 4:  # case change
            mode = rng.randrange(3)
            if mode == 0:
                words = [w.lower() for w in words]
            elif mode == 1:
                words = [w.upper() for w in words]
            else:
                words = [w.capitalize() for w in words]
        elif op == 5:  # strip punctuation
            words = [w.strip(".,;:!?\"") for w in words]
            words = [w for w in words if w]
        elif op == 6:  # prefix
            words = rng.choice(PREFIXES).split() + words
        elif op == 7:  # suffix
            words = words + rng.choice(SUFFIXES).split()
        elif op == 8:  # (un)contract
            s = " ".join(words)
            for a, b in CONTRACTIONS:
                if a in s:
                    s = s.replace(a, b)
                    break
                if b in s:
                    s = s.replace(b, a)
                    break
            words = s.split()
        elif op == 9 and len(words) > 3:  # truncate
            words = words[: rng.randint(1, len(words) - 1)]
        elif op == 10 and words:  # remove space before punctuation / add tokenized period
            if words[-1].endswith("."):
                words[-1] = words[-1][:-1]
                words.append(".")
        elif op == 11 and words:  # insert a random word from another sentence
            other = rng.choice(REFERENCES).split()
            words.insert(rng.randrange(len(words) + 1), rng.choice(other))
    return " ".join(words)


def dedupe(pairs):
    seen = {}
    for p in pairs:
        seen.setdefault(p, None)
    return list(seen)


def generated_pairs(rng, n):
    """n (hypothesis, reference) pairs from the reference pool."""
    out = []
    for i in range(n):
        ref = REFERENCES[i % len(REFERENCES)]
        r = rng.random()
        if r < 0.08:
            hyp = ref  # identical
        elif r < 0.16:
            other = rng.choice([x for x in REFERENCES if x != ref])
            hyp = other  # unrelated
        else:
            hyp = perturb(ref, rng)
        out.append((hyp, ref))
    return out


# ---------------------------------------------------------------- edge cases
EMPTY_AND_WS = [
    ("", ""),
    ("", "The capital of France is Paris."),
    ("The capital of France is Paris.", ""),
    (" ", ""),
    ("", " "),
    ("   ", "   "),
    ("\t\n", "Paris"),
    ("Paris", " \t "),
    ("  Paris  ", "Paris"),
    ("Paris\n", "Paris"),
]

SINGLE_WORD = [
    ("Paris", "Paris"),
    ("paris", "Paris"),
    ("Paris", "London"),
    ("Paris.", "Paris"),
    ("42", "42"),
    ("yes", "Yes."),
    ("No", "No."),
    ("supercalifragilisticexpialidocious", "supercalifragilisticexpialidocious"),
]

COMPLETELY_DIFFERENT = [
    ("Bananas are yellow.", "The server returned a 500 error."),
    ("I cannot help with that request.", "Mitochondria produce ATP through oxidative phosphorylation."),
    ("zzz", "The capital of France is Paris."),
    ("1 2 3 4 5", "six seven eight nine ten"),
]

UNICODE_TEXT = [
    ("Café au lait, s'il vous plaît.", "Cafe au lait, s'il vous plait."),
    ("Der Bär läuft über die Straße.", "Der Bär läuft über die Strasse."),
    ("東京は日本の首都です。", "東京は日本の首都です。"),
    ("東京は日本の首都です。", "日本の首都は東京です。"),
    ("The answer is 42 🎉", "The answer is 42."),
    ("Great job! 👍👍", "Great job!"),
    ("naïve café résumé", "naive cafe resume"),
    ("Ελληνικά: ΟΔΟΣ", "ελληνικά: οδος"),
    ("It’s “quoted” text — really.", "It's \"quoted\" text - really."),
    ("e\u0301t\u00e9", "\u00e9t\u00e9"),  # NFD vs NFC
]

SHORT_BLEU = [  # < 4 tokens: effective order / exp smoothing matter
    ("Paris", "The capital of France is Paris."),
    ("Paris is", "Paris is the capital of France."),
    ("The answer is", "The answer is 42."),
    ("is 42", "The answer is 42."),
    ("the the the", "the cat sat on the mat"),
    ("cat the", "the cat"),
    ("the cat", "the cat"),
    ("the cat sat", "the cat sat"),
    ("the cat sat", "the cat sat on the mat"),
    ("the dog sat", "the cat sat on the mat"),
    ("sat the cat", "the cat sat on the mat"),
    ("42.", "The answer is 42."),
    ("No.", "No, the patient should not take ibuprofen with warfarin."),
    ("a b c d", "a b c d"),
    ("a b c d", "a b d c"),
    ("a b x d", "a b c d"),
    ("a x b y c", "a b c"),
    ("a b c d e", "e d c b a"),
    ("a a a a a a a", "a a"),
]

TOKENIZER_13A = [  # exercise every 13a rule
    ("The cost is $1,249.99.", "The cost is $1,249.99."),
    ("The cost is $1,249.99.", "The cost is $ 1,249.99 ."),
    ("Pi is 3.14, e is 2.72.", "Pi is 3.14 , e is 2.72 ."),
    ("Between 1990-2000 there were 10-20 cases.", "Between 1990 - 2000 there were 10 - 20 cases."),
    ("state-of-the-art results", "state of the art results"),
    ("A &amp; B &lt;tag&gt; &quot;x&quot;", "A & B <tag> \"x\""),
    ("&amp;lt; is not &lt;", "< is not <"),
    ("This was <skipped> removed.", "This was removed."),
    ("well-\nknown fact", "wellknown fact"),
    ("line one\nline two", "line one line two"),
    ("e.g. the U.S.A. and i.e. Dr. Smith", "e.g. the U.S.A. and i.e. Dr. Smith"),
    ("He said: \"Hello!\" (twice) [ok] {yes} ~tilde~ a|b @home #tag 50% a*b+c=d <x> ^_^ `code`",
     "He said : \" Hello ! \" ( twice ) [ ok ] { yes } ~ tilde ~ a | b @ home # tag 50 % a * b + c = d < x > ^ _ ^ ` code `"),
    ("don't can't won't it's", "do n't ca n't wo n't it 's"),
    ("end with tokenized period .", "end with tokenized period."),
    ("1.5.2 and .5 and 5. and ,5 and 5,", "1.5.2 and .5 and 5. and ,5 and 5,"),
    ("a.,b a,.b ...wait!!!", "a . , b a , . b . . . wait ! ! !"),
    ("x/y path/to/file.txt", "x / y path / to / file . txt"),
    ("trailing spaces   \t", "trailing spaces"),
    ("non\u00a0breaking\u00a0space", "non breaking space"),
    ("unit\x1fseparator and\x85next line", "unit separator and next line"),
    ("tabs\tand\tnewlines\r\nhere", "tabs and newlines here"),
]

TOKEN_F1_EXTRA = [
    ("the", "a"),
    ("The Eiffel Tower", "Eiffel Tower"),
    ("an apple", "the apple"),
    ("theory", "the ory"),
    ("Then the answer", "then answer"),
    ("A", ""),
    ("the a an", "an a the"),
    ("state-of-the-art", "state of the art"),
    ("1,000", "1000"),
    ("snake_case_name", "snakecasename"),
    ("“Paris”", "Paris"),
    ("Paris’s", "Pariss"),
    ("Paris's", "Pariss"),
    ("THE ANSWER IS 42.", "the answer is 42"),
    ("Answer:the cat", "answer the cat"),
    ("a.b.c", "abc"),
    ("cat cat cat dog", "cat dog dog"),
    ("thé", "th"),
    ("the\u0301 cat", "\u0301 cat"),  # combining accent after an article: Python \b splits before U+0301
    ("İstanbul is big", "istanbul is big"),
    ("ΣΟΦΟΣ", "σοφος"),
    ("word\x1csep", "word sep"),  # Python str.split() treats U+001C..U+001F as whitespace
    ("non\u00a0breaking", "non breaking"),
    ("the\u00a0cat", "cat"),
]

ROUGE_EXTRA = [
    ("don't stop", "do not stop"),
    ("foo_bar baz", "foo bar baz"),
    ("Café", "caf"),
    ("東京 is big", "is big"),
    ("東京", "日本"),
    ("🎉🎉", "🎉"),
    ("\u212a is Kelvin", "k is kelvin"),  # KELVIN SIGN lowercases to ASCII 'k'
    ("İstanbul", "istanbul"),
    ("ABC123def", "abc123def"),
    ("3.14159", "3 14159"),
    ("a b c d e f", "f e d c b a"),
    ("a b a b a b", "b a b a"),
    ("x y z a b c", "a b c x y z"),
    ("the the the the", "the"),
    ("!!! ??? ...", "!!!"),
    ("!!!", "..."),
]

LEV_EXTRA = [
    ("", ""),
    ("", "a"),
    ("abc", ""),
    (" ", ""),
    ("   ", " "),
    ("\t", " "),
    ("a", "a"),
    ("a", "b"),
    ("ab", "ba"),
    ("kitten", "sitting"),
    ("flaw", "lawn"),
    ("lewenstein", "levenshtein"),
    ("saturday", "sunday"),
    ("abcdef", "azced"),
    ("Paris", "paris"),
    ("PARIS", "paris"),
    ("café", "cafe"),
    ("cafe\u0301", "café"),  # NFD (5 code points) vs NFC (4)
    ("naïve", "naive"),
    ("Straße", "Strasse"),
    ("東京", "京都"),
    ("東京は日本の首都です。", "日本の首都は東京です。"),
    ("こんにちは世界", "こんばんは世界"),
    ("한국어", "한국"),
    ("😀", "😃"),
    ("😀😀😀", "😀"),
    ("👍", "👍🏽"),  # skin-tone modifier = extra code point
    ("👨\u200d👩\u200d👧", "👨\u200d👩"),  # ZWJ family sequence
    ("🇫🇷", "🇩🇪"),  # regional indicator pairs
    ("a😀b", "ab"),
    ("Ελληνικά", "ελληνικα"),
    ("مرحبا", "مرحبًا"),
    ("\U0001d400bc", "abc"),  # mathematical bold A (astral plane)
    ("aaaaaaaaaa", "a"),
    ("abcdefghijklmnopqrstuvwxyz", "zyxwvutsrqponmlkjihgfedcba"),
    ("x" * 70, "x" * 64 + "y" * 6),  # crosses the 64-char bit-parallel block size
    ("ab" * 80, "ba" * 80),
]


def lev_generated(rng, n):
    out = []
    alphabet = "abcdeé東😀 "
    for i in range(n):
        kind = i % 3
        if kind == 0:  # sentence-level LLM-ish edits
            ref = REFERENCES[(i * 7) % len(REFERENCES)]
            out.append((perturb(ref, rng), ref))
        elif kind == 1:  # character-level edits of a sentence
            ref = REFERENCES[(i * 5 + 3) % len(REFERENCES)]
            chars = list(ref)
            for _ in range(rng.randint(1, 6)):
                op = rng.randrange(3)
                pos = rng.randrange(len(chars) + 1)
                c = rng.choice(alphabet)
                if op == 0 or not chars:
                    chars.insert(pos, c)
                elif op == 1:
                    del chars[min(pos, len(chars) - 1)]
                else:
                    chars[min(pos, len(chars) - 1)] = c
            out.append(("".join(chars), ref))
        else:  # random short strings over a small mixed alphabet
            a = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 12)))
            b = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 12)))
            out.append((a, b))
    return out


SKIPPED = []


def safe(section, fn, *args):
    try:
        return fn(*args)
    except Exception as exc:  # noqa: BLE001 - record and skip
        SKIPPED.append((section, args, f"{type(exc).__name__}: {exc}"))
        return None


def build():
    common_edge = EMPTY_AND_WS + SINGLE_WORD + COMPLETELY_DIFFERENT

    # ---- BLEU
    bleu_pairs = dedupe(common_edge + UNICODE_TEXT + SHORT_BLEU + TOKENIZER_13A
                        + generated_pairs(RNG, 88))
    bleu = []
    for hyp, ref in bleu_pairs:
        s = safe("bleu", lambda h, r: sacrebleu.sentence_bleu(h, [r]).score, hyp, ref)
        if s is not None:
            bleu.append({"hypothesis": hyp, "reference": ref, "score": float(s) / 100})

    # ---- ROUGE-L
    scorer = rouge_scorer.RougeScorer(["rougeL"])
    rouge_pairs = dedupe(common_edge + UNICODE_TEXT + ROUGE_EXTRA
                         + generated_pairs(RNG, 104))
    rouge_l = []
    for pred, ref in rouge_pairs:
        f = safe("rouge_l", lambda p, r: scorer.score(r, p)["rougeL"].fmeasure, pred, ref)
        if f is not None:
            rouge_l.append({"prediction": pred, "reference": ref, "fmeasure": float(f)})

    # ---- Levenshtein
    lev_pairs = dedupe(LEV_EXTRA + common_edge[:12] + UNICODE_TEXT
                       + lev_generated(RNG, 96))
    levenshtein = []
    for a, b in lev_pairs:
        s = safe("levenshtein", Levenshtein.normalized_similarity, a, b)
        if s is not None:
            levenshtein.append({"a": a, "b": b, "similarity": float(s)})

    # ---- SQuAD token F1
    f1_pairs = dedupe(common_edge + UNICODE_TEXT + TOKEN_F1_EXTRA
                      + generated_pairs(RNG, 99))
    token_f1 = []
    for pred, ref in f1_pairs:
        f = safe("token_f1", f1_score, pred, ref)
        if f is not None:
            token_f1.append({"prediction": pred, "reference": ref, "f1": float(f)})

    # ---- McNemar (exact)
    mc_pairs = [(0, 0), (1, 0), (0, 1), (1, 1), (2, 0), (0, 2), (2, 1), (1, 2),
                (3, 3), (5, 0), (0, 5), (6, 1), (10, 2), (2, 10), (15, 15),
                (20, 5), (0, 60), (60, 0), (1, 60), (60, 1), (60, 60), (59, 60),
                (30, 31), (45, 15), (25, 40), (0, 30), (12, 30)]
    while len(mc_pairs) < 40:
        p = (RNG.randint(0, 60), RNG.randint(0, 60))
        if p not in mc_pairs:
            mc_pairs.append(p)
    mcn = []
    for b, c in mc_pairs:
        p = safe("mcnemar", lambda b_, c_: mcnemar([[10, b_], [c_, 10]], exact=True).pvalue, b, c)
        if p is not None:
            mcn.append({"b": b, "c": c, "p_value": float(p)})

    return {
        "generator": "crates/evaluator/tests/vectors/generate_text_metrics.py",
        "packages": {name: PINS[name] for name in REPORTED},
        "bleu": bleu,
        "rouge_l": rouge_l,
        "levenshtein": levenshtein,
        "token_f1": token_f1,
        "mcnemar": mcn,
    }


def main():
    data = build()
    with open(OUT, "w", encoding="utf-8", newline="\n") as fh:
        json.dump(data, fh, ensure_ascii=False, indent=1)
        fh.write("\n")
    for key in ("bleu", "rouge_l", "levenshtein", "token_f1", "mcnemar"):
        print(f"{key}: {len(data[key])} cases", file=sys.stderr)
    if SKIPPED:
        print(f"skipped {len(SKIPPED)} case(s) because the library raised:", file=sys.stderr)
        for section, args, err in SKIPPED:
            print(f"  {section} {args!r}: {err}", file=sys.stderr)
    else:
        print("skipped: none", file=sys.stderr)
    print(f"wrote {OUT}", file=sys.stderr)


if __name__ == "__main__":
    main()
