"""Label metrics: objectives over predicted vs gold labels (scikit-learn underneath), their CIs, and the confusion
matrix. Reading a reply as a label is `scoring/reading.py` (a leaf an export can carry).

Contract: higher is better for every metric. accuracy, balanced_accuracy, macro_f1 and the per-label
metrics lie in [0, 1]; mcc and cohen_kappa in [-1, 1]. A prediction outside the label set (None here)
is invalid: it is always wrong, it is never a prediction *of* any label, and the invalid rate is
reported next to every score. A metric undefined on the data (recall of a label with no gold examples)
is NaN, never a made-up 0.
"""
from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, replace
from typing import Iterable, Sequence

import numpy as np
import pandas as pd
from sklearn import metrics as skm

from promptlab.scoring.base import Reading, ScoringError, wilson_interval
from promptlab.scoring.reading import normalize_label, parse_label  # noqa: F401 - parse_label: its public home
from promptlab.text import json_number

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
PER_EXAMPLE_METRICS = ("accuracy", "recall", "specificity")  # a mean of per-example correctness


class MetricError(ScoringError):
    pass


def metric_help() -> str:
    return ", ".join(list(GLOBAL_METRICS) + [f"{m}:LABEL" for m in LABEL_METRICS])


@dataclass(frozen=True)
class Metric:
    """A parsed metric spec such as 'accuracy' or 'recall:security' (label kept in normalized form)."""

    name: str
    label: str | None = None  # normalized label
    label_display: str | None = None
    # Floors on other metrics, e.g. precision of 'fraud' at least 0.4 beside recall of 'fraud': ((Metric, 0.4),).
    # A prediction set that misses a floor scores below the metric's range, by how far it falls short, so every
    # ranking (the race, the leaderboard, the confirmation) puts all that meet the floors above all that do not.
    floors: tuple = ()

    @property
    def spec(self) -> str:
        base = f"{self.name}:{self.label_display}" if self.label is not None else self.name
        return with_floors(base, ((m.spec, t) for m, t in self.floors))

    @property
    def range(self) -> tuple[float, float]:
        return (-1.0, 1.0) if self.name in ("mcc", "cohen_kappa") else (0.0, 1.0)

    def describe(self) -> str:
        base = GLOBAL_METRICS[self.name] if self.label is None else LABEL_METRICS[self.name].format(L=self.label_display)
        if not self.floors:
            return base
        lo = self.range[0]
        return (base + ", provided that " + " and ".join(f"{m.describe()} is at least {t:g}" for m, t in self.floors)
                + f" (a prompt below a floor scores under {lo:g}, by how far it falls short)")

    def floor_values(self, gold: Sequence[str], pred: Sequence[str | None]) -> list[tuple[str, float, float, bool]]:
        """(floor spec, its value, its threshold, met) for each floor; a floor undefined on the data (precision of
        a label never answered) is not met."""
        out = []
        for m, t in self.floors:
            v = m.score(gold, pred)
            out.append((m.spec, v, t, bool(v == v and v >= t - 1e-12)))
        return out

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
        if self.floors:  # no longer a plain proportion: its CI is bootstrapped
            return None
        return _proportion(self, g, p)

    def count_relevant(self, gold: Sequence[str], pred: Sequence[str | None]) -> int:
        """How many examples the score actually rests on (the denominator a reader should see)."""
        c = self.counts(gold, pred)
        return c[1] if c else len(gold)

    def relevant(self, gold: np.ndarray) -> np.ndarray:
        """Which examples a per-example comparison looks at: the metric's own denominator when the gold labels
        fix it (recall: gold is L; specificity: gold is not L), else all."""
        if self.name == "recall":
            return gold == self.label
        if self.name == "specificity":
            return gold != self.label
        return np.ones(len(gold), dtype=bool)

    def right(self, gold: np.ndarray, pred: np.ndarray) -> np.ndarray:
        """Per example, whether the answer counts as right (specificity: it did not say L, and said something)."""
        if self.name == "specificity":
            return (pred != self.label) & (pred != None)  # noqa: E711 (elementwise on an object array)
        return pred == gold

    @property
    def is_mean(self) -> bool:
        """The metric is a mean of per-example correctness over its relevant examples (floors make it a whole-set
        score): paired per-example tests apply."""
        return self.name in PER_EXAMPLE_METRICS and not self.floors

    # --- the Objective contract (promptlab.scoring.base), on an evaluation's rows ---------------------------
    reads_labels = True
    outcome = "pred"
    failure_score = 0.0
    invalid_means = "replies that name no label, or failed calls"
    detail_means = None

    def read(self, reply: str, gold: str, gold_norm: str, labels: tuple[str, ...]) -> Reading:
        pred, how = parse_label(reply, labels)
        return Reading(pred, how, 1.0 if pred == gold_norm else 0.0)

    def finish(self, store, rows: list[dict], with_reference: bool, run_id: str | None) -> None:
        return None

    def value(self, rows: pd.DataFrame) -> float:
        return self.score(*_gold_pred(rows))

    def interval(self, rows: pd.DataFrame, level: float = 0.95) -> tuple[float, float]:
        return confidence_interval(self, *_gold_pred(rows), level=level)

    def n_relevant(self, rows: pd.DataFrame) -> int:
        return self.count_relevant(*_gold_pred(rows))

    def per_example(self, rows: pd.DataFrame) -> np.ndarray | None:
        if not self.is_mean:
            return None
        gold, pred = _gold_pred(rows)
        g, p = np.asarray(gold, dtype=object), np.asarray(pred, dtype=object)
        return self.right(g, p)[self.relevant(g)].astype(float)

    def constant(self, rows: pd.DataFrame) -> str | None:
        gold, pred = _gold_pred(rows)
        return constant_label(pred, gold)

    def floors_on(self, rows: pd.DataFrame) -> list[dict]:
        if not self.floors:
            return []
        return [{"metric": m, "value": json_number(v), "floor": t, "met": ok}
                for m, v, t, ok in self.floor_values(*_gold_pred(rows))]


def _gold_pred(rows: pd.DataFrame) -> tuple[list, list]:
    """An evaluation's normalized gold labels and predictions (a stored NaN prediction is an invalid one)."""
    return rows["gold_norm"].tolist(), [None if p is None or p != p else p for p in rows["pred"]]


def _proportion(m: Metric, g: np.ndarray, p: np.ndarray) -> tuple[int, int] | None:
    """(successes, trials) of a metric that is a plain proportion (floors aside), else None."""
    if m.name == "accuracy":
        return int((g == p).sum()), len(g)
    if m.name == "recall":
        mask = g == m.label
        return int((p[mask] == m.label).sum()), int(mask.sum())
    if m.name == "precision":
        mask = p == m.label
        return int((g[mask] == m.label).sum()), int(mask.sum())
    if m.name == "specificity":
        mask = g != m.label
        return int(((p[mask] != m.label) & (p[mask] != INVALID)).sum()), int(mask.sum())
    return None


CONSTANT_SHARE = 0.95  # one label for at least this share of the examples: a constant answer


def constant_label(preds: Sequence[str | None], gold: Sequence[str] | None = None, share: float = CONSTANT_SHARE,
                   min_n: int = 10) -> str | None:
    """The label a prompt gives to at least `share` of the examples whatever the input (a constant answer, which
    recall of that label rewards with 1.0), or None. With the gold labels, a prompt that also gets most of the
    other labels' examples right is a classifier on skewed data, not a constant answer. Invalid replies are not a
    label; fewer than `min_n` replies say nothing."""
    values = [None if x is None or x != x or x == INVALID else x for x in preds]
    if len(values) < min_n:
        return None
    counts = pd.Series(values, dtype=object).value_counts(dropna=True)
    if not len(counts) or counts.iloc[0] < share * len(values):
        return None
    top = str(counts.index[0])
    if gold is not None:
        others = [(p, g) for p, g in zip(values, gold) if g != top]
        if others and sum(p == g for p, g in others) >= 0.5 * len(others):
            return None
    return top


def with_floors(spec: str, floors: Iterable[str | tuple[str, float]] = ()) -> str:
    """A metric spec with its floors after it, as parse_metric reads them: 'recall:fraud; precision:fraud>=0.4'.
    A floor is (metric spec, value), or already written as METRIC>=VALUE (a --constraint)."""
    written = (f if isinstance(f, str) else f"{f[0].strip()}>={f[1]:g}" for f in floors)
    return "; ".join([spec.strip(), *(w.strip() for w in written if w.strip())])


def parse_metric(spec: str, labels: Sequence[str], constraints: Sequence[str] = ()) -> Metric:
    """Parse 'accuracy' or 'recall:LABEL' against the dataset's labels, with optional floors ('precision:LABEL>=0.4',
    given in `constraints` or after ';' in the spec); errors list the valid choices."""
    parts = [x.strip() for x in (spec or "accuracy").split(";")] + [c.strip() for c in constraints]
    main = _parse_one(parts[0] or "accuracy", labels)
    floors = []
    for part in (x for x in parts[1:] if x):
        what, op, threshold = part.partition(">=")
        if not op:
            raise MetricError(f"constraint '{part}': write it as METRIC>=VALUE, e.g. precision:{labels[0]}>=0.4")
        m = _parse_one(what.strip(), labels)
        try:
            t = float(threshold)
        except ValueError:
            raise MetricError(f"constraint '{part}': '{threshold.strip()}' is not a number") from None
        lo, hi = m.range
        if not math.isfinite(t):
            raise MetricError(f"constraint '{part}': the floor must be a finite number")
        if not lo <= t <= hi:
            raise MetricError(f"constraint '{part}': {m.name} lies in [{lo:g}, {hi:g}], so a floor of {t:g} is never met"
                              if t > hi else f"constraint '{part}': a floor below {lo:g} always holds; drop it")
        floors.append((m, t))
    return replace(main, floors=tuple(floors)) if floors else main


def _parse_one(spec: str, labels: Sequence[str]) -> Metric:
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
    value = _base_score(metric, g, p)
    if not metric.floors:
        return value
    short = 0.0
    for m, t in metric.floors:
        v = _base_score(m, g, p)
        short += t - m.range[0] if v != v else max(0.0, t - v)  # undefined: as far short as it can be
    return value if short <= 1e-12 else metric.range[0] - short


def _base_score(metric: Metric, g: np.ndarray, p: np.ndarray) -> float:
    name = metric.name
    if name in _PROPORTIONS:
        k, n = _proportion(metric, g, p)
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


def invalid_rate(pred: Sequence[str | None]) -> float:
    return sum(1 for x in pred if x is None) / len(pred) if len(pred) else math.nan


def confusion_matrix(gold: Sequence[str], pred: Sequence[str | None], labels: Sequence[str]) -> pd.DataFrame:
    """Counts with gold labels as rows and predictions as columns, plus an '(invalid)' column.

    `labels` are display forms; gold/pred are normalized forms.
    """
    norms = [normalize_label(lab) for lab in labels]
    col_keys = norms + [INVALID]
    p = [INVALID if x is None else x for x in pred]
    cm = skm.confusion_matrix(list(gold), p, labels=col_keys)
    frame = pd.DataFrame(cm[: len(norms)], index=list(labels), columns=list(labels) + [INVALID_COLUMN])
    frame.index.name = "gold \\ predicted"
    return frame
