"""Objectives over predicted vs gold labels (scikit-learn underneath), their CIs, and the confusion matrix.

Contract: higher is better for every metric. accuracy, balanced_accuracy, macro_f1 and the per-label
metrics lie in [0, 1]; mcc and cohen_kappa in [-1, 1]. A prediction outside the label set (None here)
is invalid: it is always wrong, it is never a prediction *of* any label, and the invalid rate is
reported next to every score. A metric undefined on the data (recall of a label with no gold examples)
is NaN, never a made-up 0.
"""
from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import pandas as pd
from sklearn import metrics as skm

from promptlab.errors import PromptlabError

INVALID = "\x00invalid"
INVALID_COLUMN = "(invalid)"
GLOBAL_METRICS = {
    "accuracy": "accuracy",
    "balanced_accuracy": "balanced accuracy (mean recall over labels)",
    "macro_f1": "macro-averaged F1 over labels",
    "mcc": "Matthews correlation coefficient",
    "cohen_kappa": "Cohen's kappa",
}
LABEL_METRICS = {
    "precision": "precision of label '{L}' (of the answers '{L}', the share that are right)",
    "recall": "recall of label '{L}' (of the true '{L}' examples, the share found)",
    "f1": "F1 of label '{L}'",
    "specificity": "specificity for label '{L}' (true-negative rate: of the examples that are not '{L}', the share correctly answered as another label)",
}
_PROPORTIONS = {"accuracy", "precision", "recall", "specificity"}


class MetricError(PromptlabError):
    pass


def metric_help() -> str:
    return ", ".join(list(GLOBAL_METRICS) + [f"{m}:LABEL" for m in LABEL_METRICS])


@dataclass(frozen=True)
class Metric:
    """A parsed metric spec such as 'accuracy' or 'recall:security' (label kept in normalized form)."""

    name: str
    label: str | None = None  # normalized label
    label_display: str | None = None

    @property
    def spec(self) -> str:
        return f"{self.name}:{self.label_display}" if self.label is not None else self.name

    @property
    def range(self) -> tuple[float, float]:
        return (-1.0, 1.0) if self.name in ("mcc", "cohen_kappa") else (0.0, 1.0)

    def describe(self) -> str:
        if self.label is None:
            return GLOBAL_METRICS[self.name]
        return LABEL_METRICS[self.name].format(L=self.label_display)

    def score(self, gold: Sequence[str], pred: Sequence[str | None]) -> float:
        """The metric on normalized gold labels and predictions (None = invalid output)."""
        g = np.asarray(gold, dtype=object)
        p = np.asarray([INVALID if x is None else x for x in pred], dtype=object)
        if len(g) == 0:
            return math.nan
        return _score(self, g, p)

    def counts(self, gold: Sequence[str], pred: Sequence[str | None]) -> tuple[int, int] | None:
        """(successes, trials) when the metric is a plain proportion, else None."""
        g = np.asarray(gold, dtype=object)
        p = np.asarray([INVALID if x is None else x for x in pred], dtype=object)
        if self.name == "accuracy":
            return int((g == p).sum()), len(g)
        if self.name == "recall":
            mask = g == self.label
            return int((p[mask] == self.label).sum()), int(mask.sum())
        if self.name == "precision":
            mask = p == self.label
            return int((g[mask] == self.label).sum()), int(mask.sum())
        if self.name == "specificity":
            mask = g != self.label
            return int(((p[mask] != self.label) & (p[mask] != INVALID)).sum()), int(mask.sum())
        return None

    def n_relevant(self, gold: Sequence[str], pred: Sequence[str | None]) -> int:
        """How many examples the score actually rests on (the denominator a reader should see)."""
        c = self.counts(gold, pred)
        return c[1] if c else len(gold)


def parse_metric(spec: str, labels: Sequence[str]) -> Metric:
    """Parse 'accuracy' or 'recall:LABEL' against the dataset's labels; errors list the valid choices."""
    from promptlab.data import normalize_label

    spec = (spec or "accuracy").strip()
    name, _, label = spec.partition(":")
    name = name.strip().lower()
    if name in GLOBAL_METRICS:
        if label:
            raise MetricError(f"metric '{name}' takes no label; drop ':{label}'. Valid metrics: {metric_help()}")
        return Metric(name)
    if name not in LABEL_METRICS:
        raise MetricError(f"unknown metric '{name}'. Valid metrics: {metric_help()}")
    if not label.strip():
        raise MetricError(f"metric '{name}' needs a label, e.g. {name}:{labels[0]}. Labels: {', '.join(labels)}")
    by_norm = {normalize_label(lab): lab for lab in labels}
    norm = normalize_label(label)
    if norm not in by_norm:
        raise MetricError(f"unknown label '{label.strip()}' in metric '{spec}'. Labels are: {', '.join(labels)}")
    return Metric(name, norm, by_norm[norm])


def _score(metric: Metric, g: np.ndarray, p: np.ndarray) -> float:
    name = metric.name
    if name in _PROPORTIONS:
        k, n = metric.counts(g, [None if x == INVALID else x for x in p])
        return k / n if n else math.nan
    labels = sorted(set(g))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if name == "balanced_accuracy":
            recalls = [np.mean(p[g == lab] == lab) for lab in labels]
            return float(np.mean(recalls))
        if name == "macro_f1":
            return float(skm.f1_score(g, p, labels=labels, average="macro", zero_division=0))
        if name == "f1":
            return float(skm.f1_score(g, p, labels=[metric.label], average="macro", zero_division=0))
        if name == "mcc":
            return float(skm.matthews_corrcoef(g, p))
        if name == "cohen_kappa":
            value = skm.cohen_kappa_score(g, p)
            return 0.0 if np.isnan(value) else float(value)
    raise MetricError(f"unknown metric {name}")


def wilson_interval(k: int, n: int, level: float = 0.95) -> tuple[float, float]:
    """Wilson score interval for k successes in n trials (well-behaved near 0 and 1, unlike Wald)."""
    if n == 0:
        return math.nan, math.nan
    from scipy.stats import norm

    z = float(norm.ppf(0.5 + level / 2))
    phat = k / n
    denom = 1 + z * z / n
    centre = (phat + z * z / (2 * n)) / denom
    half = z * math.sqrt(phat * (1 - phat) / n + z * z / (4 * n * n)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)


def confidence_interval(
    metric: Metric, gold: Sequence[str], pred: Sequence[str | None], level: float = 0.95,
    n_boot: int = 1000, seed: int = 0,
) -> tuple[float, float]:
    """A CI for the metric: Wilson for plain proportions, a percentile bootstrap over examples otherwise."""
    counts = metric.counts(gold, pred)
    if counts is not None:
        return wilson_interval(*counts, level=level)
    g = np.asarray(gold, dtype=object)
    p = np.asarray([INVALID if x is None else x for x in pred], dtype=object)
    if len(g) < 2:
        return math.nan, math.nan
    rng = np.random.default_rng(seed)
    stats = []
    for _ in range(n_boot):
        idx = rng.integers(0, len(g), len(g))
        stats.append(_score(metric, g[idx], p[idx]))
    stats = np.asarray(stats, dtype=float)
    stats = stats[~np.isnan(stats)]
    if len(stats) == 0:
        return math.nan, math.nan
    alpha = (1 - level) / 2
    return float(np.quantile(stats, alpha)), float(np.quantile(stats, 1 - alpha))


def format_score(x, digits: int = 3) -> str:
    """A score for people: fixed decimals, and 'n/a' for a missing or undefined (NaN) value."""
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "n/a"
    return f"{x:.{digits}f}"


def invalid_rate(pred: Sequence[str | None]) -> float:
    return sum(1 for x in pred if x is None) / len(pred) if len(pred) else math.nan


def confusion_matrix(gold: Sequence[str], pred: Sequence[str | None], labels: Sequence[str]) -> pd.DataFrame:
    """Counts with gold labels as rows and predictions as columns, plus an '(invalid)' column.

    `labels` are display forms; gold/pred are normalized forms.
    """
    from promptlab.data import normalize_label

    norms = [normalize_label(lab) for lab in labels]
    col_keys = norms + [INVALID]
    p = [INVALID if x is None else x for x in pred]
    cm = skm.confusion_matrix(list(gold), p, labels=col_keys)
    frame = pd.DataFrame(cm[: len(norms)], index=list(labels), columns=list(labels) + [INVALID_COLUMN])
    frame.index.name = "gold \\ predicted"
    return frame
