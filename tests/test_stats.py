"""The study statistics against hand-computed values and known cases."""
import numpy as np
import pytest

from promptlab.metrics import parse_metric
from promptlab.stats import paired_gain, sign_test

ACC = parse_metric("accuracy", ["a", "b"])


def test_sign_test_matches_the_exact_binomial_by_hand():
    gold = ["a"] * 10
    base = ["b"] * 10
    best = ["a"] * 8 + ["b"] * 2  # best right on 8 where base is wrong, no example the other way
    p, pos, neg = sign_test(ACC, gold, base, best)
    assert (pos, neg) == (8, 0)
    assert p == pytest.approx(2 * 1 / 2**8)  # 2 * P(X = 0 | n = 8) = 0.0078125
    base2 = ["a", "a"] + ["b"] * 8  # base right only on examples 0-1, best only on 2-9
    best2 = ["b", "b"] + ["a"] * 8
    p2, pos2, neg2 = sign_test(ACC, gold, base2, best2)
    assert (pos2, neg2) == (8, 2)
    assert p2 == pytest.approx(2 * (1 + 10 + 45) / 1024)  # 0.109375, the exact McNemar p by hand


def test_sign_test_averages_seeds_per_example_so_each_example_counts_once():
    gold = ["a"] * 4
    base = [["b"] * 4, ["b"] * 4, ["b"] * 4]
    best = [["a", "a", "b", "b"], ["a", "b", "a", "b"], ["a", "a", "a", "b"]]  # examples 0-2 better on average
    p, pos, neg = sign_test(ACC, gold, base, best)
    assert (pos, neg) == (3, 0) and p == pytest.approx(0.25)


def test_sign_test_on_recall_looks_only_at_that_labels_examples():
    m = parse_metric("recall:a", ["a", "b"])
    gold = ["a", "a", "b", "b"]
    p, pos, neg = sign_test(m, gold, ["b", "b", "b", "b"], ["a", "a", "a", "a"])
    assert (pos, neg) == (2, 0)  # the two 'b' examples got worse, but recall of 'a' does not see them


def test_paired_gain_known_cases():
    gold = ["a"] * 100
    same = paired_gain(ACC, gold, ["a"] * 50 + ["b"] * 50, ["a"] * 50 + ["b"] * 50)
    assert (same.mean, same.ci_low, same.ci_high) == (0.0, 0.0, 0.0)
    half = paired_gain(ACC, gold, ["a"] * 50 + ["b"] * 50, ["a"] * 100)
    assert half.mean == 0.5 and 0.38 < half.ci_low < 0.5 < half.ci_high < 0.62 and half.n == 100
    # the binomial standard error of a 0.5 proportion is 0.05, so the 95% CI is about 0.5 +/- 0.098
    assert half.ci_high - half.ci_low == pytest.approx(2 * 1.96 * 0.05, abs=0.03)


def test_paired_gain_widens_with_disagreeing_seeds():
    gold = ["a"] * 60
    base = [["b"] * 60] * 3
    steady = paired_gain(ACC, gold, base, [["a"] * 30 + ["b"] * 30] * 3)
    shaky = paired_gain(ACC, gold, base, [["a"] * 60, ["a"] * 30 + ["b"] * 30, ["b"] * 60])
    assert steady.mean == pytest.approx(0.5) and shaky.mean == pytest.approx(0.5)
    assert (shaky.ci_high - shaky.ci_low) > 2 * (steady.ci_high - steady.ci_low)
    assert shaky.seeds == 3


def test_paired_gain_in_macro_f1_uses_the_metric_not_accuracy():
    m = parse_metric("macro_f1", ["a", "b"])
    gold = ["a"] * 90 + ["b"] * 10
    base = ["a"] * 100  # accuracy 0.9 but macro-F1 about 0.47
    best = ["a"] * 90 + ["b"] * 10
    g = paired_gain(m, gold, base, best, n_boot=300)
    assert g.mean == pytest.approx(1 - m.score(np.array(gold, dtype=object), base), abs=1e-9)
    with pytest.raises(ValueError, match="same shape"):
        paired_gain(m, gold, base[:50], best)
