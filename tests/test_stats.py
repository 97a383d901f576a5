"""The study statistics against hand-computed values and known cases."""
import numpy as np
import pytest

from promptlab.scoring.labels import parse_metric
from promptlab.scoring.stats import detectable_gain, holm, paired_gain, paired_test

ACC = parse_metric("accuracy", ["a", "b"])


def test_sign_test_matches_the_exact_binomial_by_hand():
    gold = ["a"] * 10
    base = ["b"] * 10
    best = ["a"] * 8 + ["b"] * 2  # best right on 8 where base is wrong, no example the other way
    p, pos, neg = paired_test(ACC, gold, base, best)
    assert (pos, neg) == (8, 0)
    assert p == pytest.approx(2 * 1 / 2**8)  # 2 * P(X = 0 | n = 8) = 0.0078125
    base2 = ["a", "a"] + ["b"] * 8  # base right only on examples 0-1, best only on 2-9
    best2 = ["b", "b"] + ["a"] * 8
    p2, pos2, neg2 = paired_test(ACC, gold, base2, best2)
    assert (pos2, neg2) == (8, 2)
    assert p2 == pytest.approx(2 * (1 + 10 + 45) / 1024)  # 0.109375, the exact McNemar p by hand


def test_sign_test_averages_seeds_per_example_so_each_example_counts_once():
    gold = ["a"] * 4
    base = [["b"] * 4, ["b"] * 4, ["b"] * 4]
    best = [["a", "a", "b", "b"], ["a", "b", "a", "b"], ["a", "a", "a", "b"]]  # examples 0-2 better on average
    p, pos, neg = paired_test(ACC, gold, base, best)
    assert (pos, neg) == (3, 0) and p == pytest.approx(0.25)


def test_sign_test_on_recall_looks_only_at_that_labels_examples():
    m = parse_metric("recall:a", ["a", "b"])
    gold = ["a", "a", "b", "b"]
    p, pos, neg = paired_test(m, gold, ["b", "b", "b", "b"], ["a", "a", "a", "a"])
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


def test_paired_test_tests_the_mean_not_the_sign_of_averaged_differences():
    """30 examples a third better on average and 10 examples fully worse: the mean difference is 0, so
    the test must not call it significant (a sign test on the averaged differences would, 30 vs 10)."""
    gold = ["a"] * 40
    base = [["b"] * 30 + ["a"] * 10] * 3
    best = [["a"] * 10 + ["b"] * 20 + ["b"] * 10, ["b"] * 10 + ["a"] * 10 + ["b"] * 10 + ["b"] * 10,
            ["b"] * 20 + ["a"] * 10 + ["b"] * 10]
    gain = paired_gain(ACC, gold, base, best, n_boot=500)
    p, pos, neg = paired_test(ACC, gold, base, best)
    assert gain.mean == pytest.approx(0.0) and (pos, neg) == (30, 10)
    assert p > 0.9


def test_paired_test_exact_enumeration_and_no_p_for_non_per_example_metrics():
    gold = ["a"] * 4
    # differences 1, 1/3, 1/3, -1/3 (3 seeds), sum 4/3. Of the 16 sign patterns, |sum| >= 4/3 needs the
    # 1 and at least two of the thirds on one side: 4 patterns per side -> p = 8/16
    base = [["b"] * 3 + ["a"], ["b"] * 3 + ["a"], ["b"] * 3 + ["a"]]
    best = [["a", "a", "b", "b"], ["a", "b", "a", "a"], ["a", "b", "b", "a"]]
    p, pos, neg = paired_test(ACC, gold, base, best)
    assert (pos, neg) == (3, 1) and p == pytest.approx(8 / 16)
    f1 = parse_metric("macro_f1", ["a", "b"])
    assert paired_test(f1, ["a", "b"], ["a", "a"], ["a", "b"])[0] is None  # the CI decides for macro-F1


def test_holm_by_hand():
    assert holm([0.01, 0.04, 0.03, None]) == pytest.approx([0.03, 0.06, 0.06, None])


def test_the_detectable_gain_has_the_power_it_claims():
    """At the gain it names, a paired comparison on n examples rejects 'no gain' about 80% of the time (simulated
    with the exact sign test the study uses, one seed, no seed spread); it shrinks with more examples and seeds
    and grows for the difference of two gains."""
    from scipy.stats import binomtest

    n, disc = 140, 0.3
    g = detectable_gain(n, 1, discordance=disc, seed_sd=0.0)
    rng = np.random.default_rng(0)
    hits = 0
    for _ in range(400):
        d = rng.choice([1, -1, 0], size=n, p=[(disc + g) / 2, (disc - g) / 2, 1 - disc])
        pos, neg = int((d > 0).sum()), int((d < 0).sum())
        hits += binomtest(pos, pos + neg, 0.5).pvalue < 0.05
    assert 0.72 <= hits / 400 <= 0.9, hits / 400
    assert detectable_gain(1000, 3) < detectable_gain(140, 3) < detectable_gain(140, 1)
    assert detectable_gain(140, 3, contrast=2.0) > detectable_gain(140, 3)
    with pytest.raises(ValueError):
        detectable_gain(0, 1)
    assert detectable_gain(5, 1) > 0.4 and detectable_gain(10, 1, contrast=2.0) > 0.4  # tiny test sets: honest
