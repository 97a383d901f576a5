"""Statistics for comparing prompts on the same held-out examples, across seeds.

- `paired_gain`: the gain of one prompt over another in any metric, with a percentile bootstrap CI
  that resamples examples (the same resample for both prompts: paired) and, when there are several
  seeds, the seeds too (two-level), so seed-to-seed variation widens the interval as it should.
- `paired_test`: a two-sided paired sign-flip (randomization) test of the mean per-example
  difference in correctness, each example's correctness first averaged over the seeds so an example
  counts once however many seeds there are. With one seed the differences are -1/0/+1 and it is
  exactly the exact McNemar (binomial sign) test; with several it tests the same mean the gain
  estimates (a plain sign test on averaged differences would not). Exact up to 16 differing
  examples, else 20,000 seeded random sign flips. The p-value is conditional on the prompts the
  seeds found; the bootstrap CI is what carries the seed-to-seed variation. Only for metrics that
  are a mean of per-example correctness (accuracy, recall:L, specificity:L); for the others
  (macro-F1, MCC, kappa, precision, F1, balanced accuracy) it returns no p-value, and the CI decides.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from promptlab.metrics import Metric


@dataclass(frozen=True)
class Gain:
    mean: float
    ci_low: float
    ci_high: float
    n: int  # examples
    seeds: int


def _as_matrix(preds) -> np.ndarray:
    arr = np.asarray(preds, dtype=object)
    return arr.reshape(1, -1) if arr.ndim == 1 else arr


def paired_gain(metric: Metric, gold: Sequence[str], base: Sequence, best: Sequence, *, n_boot: int = 2000,
                level: float = 0.95, seed: int = 0) -> Gain:
    """metric(best) - metric(base), averaged over seeds. base/best: predictions, one row per seed (or one row)."""
    g = np.asarray(gold, dtype=object)
    a, b = _as_matrix(base), _as_matrix(best)
    if a.shape != b.shape or a.shape[1] != len(g):
        raise ValueError("base and best need the same shape: one row of predictions per seed, one column per example")
    s, n = a.shape
    point = float(np.nanmean([metric.score(g, b[i]) - metric.score(g, a[i]) for i in range(s)]))
    rng = np.random.default_rng(seed)
    diffs = np.empty(n_boot)
    for k in range(n_boot):
        ex = rng.integers(0, n, n)
        seeds = rng.integers(0, s, s) if s > 1 else np.zeros(1, dtype=int)
        gg = g[ex]
        diffs[k] = np.nanmean([metric.score(gg, b[i, ex]) - metric.score(gg, a[i, ex]) for i in seeds])
    alpha = (1 - level) / 2
    lo, hi = np.nanquantile(diffs, [alpha, 1 - alpha]) if np.isfinite(diffs).any() else (np.nan, np.nan)
    def clean(x: float) -> float:  # float noise and -0.0 would print as "-0.000"
        return round(float(x), 12) + 0.0

    return Gain(clean(point), clean(lo), clean(hi), n, s)


def relevant_examples(metric: Metric, gold: np.ndarray) -> np.ndarray:
    """Which examples a per-example comparison should look at: the metric's own denominator when it
    is fixed by the gold labels (recall: gold is L; specificity: gold is not L), else all."""
    if metric.name == "recall":
        return gold == metric.label
    if metric.name == "specificity":
        return gold != metric.label
    return np.ones(len(gold), dtype=bool)


PER_EXAMPLE_METRICS = ("accuracy", "recall", "specificity")


def paired_test(metric: Metric, gold: Sequence[str], base: Sequence, best: Sequence, *, n_perm: int = 20000,
                seed: int = 0) -> tuple[float | None, int, int]:
    """(two-sided p-value or None, examples where best is right more often, examples where base is)."""
    from itertools import product

    from scipy.stats import binomtest

    g = np.asarray(gold, dtype=object)
    a, b = _as_matrix(base), _as_matrix(best)
    mask = relevant_examples(metric, g)
    if metric.name == "specificity":  # right = did not predict L (and gave a valid answer)
        right_a = (a != metric.label) & (a != None)  # noqa: E711 (elementwise on an object array)
        right_b = (b != metric.label) & (b != None)  # noqa: E711
    else:
        right_a, right_b = a == g, b == g
    d = right_b[:, mask].mean(axis=0) - right_a[:, mask].mean(axis=0)
    pos, neg = int((d > 1e-12).sum()), int((d < -1e-12).sum())
    if metric.name not in PER_EXAMPLE_METRICS:
        return None, pos, neg
    nz = d[np.abs(d) > 1e-12]
    if not len(nz):
        return 1.0, pos, neg
    mags = np.abs(nz)
    if np.allclose(mags, mags[0]):  # equal magnitudes: the sign-flip test is the exact binomial sign test
        return float(binomtest(pos, pos + neg, 0.5).pvalue), pos, neg
    observed = abs(nz.sum()) - 1e-9
    if len(nz) <= 16:  # every sign pattern
        flips = np.array(list(product((-1.0, 1.0), repeat=len(nz))))
        return float((np.abs(flips @ mags) >= observed).mean()), pos, neg
    signs = np.random.default_rng(seed).choice((-1.0, 1.0), size=(n_perm, len(nz)))
    return float((1 + (np.abs(signs @ mags) >= observed).sum()) / (n_perm + 1)), pos, neg


def holm(p_values: Sequence[float | None]) -> list[float | None]:
    """Holm-Bonferroni adjusted p-values (None stays None), for a family of comparisons."""
    idx = [i for i, p in enumerate(p_values) if p is not None and np.isfinite(p)]
    order = sorted(idx, key=lambda i: p_values[i])
    out: list[float | None] = [None] * len(p_values)
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (len(order) - rank) * p_values[i]))
        out[i] = running
    return out
