"""Statistics for comparing prompts on the same held-out examples, across seeds.

- `paired_gain`: the gain of one prompt over another in any metric, with a percentile bootstrap CI
  that resamples examples (the same resample for both prompts: paired) and, when there are several
  seeds, the seeds too (two-level), so seed-to-seed variation widens the interval as it should.
- `sign_test`: an exact two-sided binomial (sign) test on the examples where the two prompts differ.
  With one seed it is the exact McNemar test; with several, each example's correctness is averaged
  over the seeds first, so an example counts once however many seeds there are.
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
    return Gain(point, float(lo), float(hi), n, s)


def relevant_examples(metric: Metric, gold: np.ndarray) -> np.ndarray:
    """Which examples a per-example comparison should look at: the metric's own denominator when it
    is fixed by the gold labels (recall: gold is L; specificity: gold is not L), else all."""
    if metric.name == "recall":
        return gold == metric.label
    if metric.name == "specificity":
        return gold != metric.label
    return np.ones(len(gold), dtype=bool)


def sign_test(metric: Metric, gold: Sequence[str], base: Sequence, best: Sequence) -> tuple[float, int, int]:
    """(two-sided exact p-value, examples where best is right more often, where base is)."""
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
    pos, neg = int((d > 0).sum()), int((d < 0).sum())
    p = binomtest(pos, pos + neg, 0.5).pvalue if pos + neg else 1.0
    return float(p), pos, neg
