"""The Objective contract every way of scoring a prompt keeps, and the mean-of-per-example-scores base that the
reference scorers, the LLM judge and human grades share."""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NamedTuple, Protocol, Sequence, runtime_checkable

import numpy as np
import pandas as pd
from scipy.stats import norm

from promptlab.errors import PromptlabError


class ScoringError(PromptlabError):
    pass


class Reading(NamedTuple):
    """What one reply is worth: the prediction kept for it, how it was read, and its score in [0, 1] (None while
    a judge has yet to grade it, or when nothing scores it)."""

    pred: str | None
    parse: str
    score: float | None


@runtime_checkable
class Objective(Protocol):
    """What a prompt is scored by: per reply, what the reply is worth; over an evaluation, one number with its n
    and a confidence interval. Label metrics (scoring.labels.Metric), reference scorers (scorers.ReferenceScore),
    the LLM judge (judge.JudgeScore) and human grades (HumanGrades) all keep it, so callers never ask which.

    Contract:
    - Higher is better. `value` lies in `range`, except that a label metric with floors scores below range[0]
      when a floor is missed (by how far it falls short), so every ranking puts all that keep the floors first.
    - `read` never raises for one bad reply. A label metric reads a reply that names no label as an invalid
      prediction (pred None) scoring 0; a scorer keeps the reply as pred and scores it 0 when it fails the check;
      the judge leaves every reply pending (score None) for `finish`, which scores an ungradable one 0 and makes
      it invalid; human grades leave the score to the analyst. A call that failed scores `failure_score` (0, or
      None when nothing scores replies as they arrive).
    - `rows` are an evaluation's per-example rows, one per example: columns example_idx, gold_norm (the
      normalized label or reference), pred (None or NaN for an invalid reply), score (in [0, 1]).
      `value(rows)`, `interval(rows)` and `n_relevant(rows)` read nothing else; an empty `rows` gives NaN.
    - `per_example(rows)` is each relevant example's share of `value` when `value` is their mean (what paired
      tests and races compare), else None (a whole-set metric such as macro F1, or any metric with floors).
    """

    name: str
    spec: str  # the form it is written in on the command line and stored in a run's config
    reads_labels: bool  # a reply is read as one of the dataset's labels (confusion matrix, constant answers)
    outcome: str  # the row column that tells two replies' worth apart: "pred" (a label) or "score"
    failure_score: float | None
    invalid_means: str  # what makes a reply invalid under it, for people
    detail_means: str | None  # what a row's `detail` holds, if anything

    @property
    def range(self) -> tuple[float, float]: ...

    def describe(self) -> str:
        """One phrase saying what is scored, for proposers (in the meta-prompt) and for people."""

    def read(self, reply: str, gold: str, gold_norm: str, labels: tuple[str, ...]) -> Reading: ...

    def finish(self, store, rows: list[dict], with_reference: bool, run_id: str | None) -> None:
        """Score in place what `read` left pending (the judge grades here, in parallel, through the call cache)."""

    def value(self, rows: pd.DataFrame) -> float: ...

    def interval(self, rows: pd.DataFrame, level: float = 0.95) -> tuple[float, float]: ...

    def n_relevant(self, rows: pd.DataFrame) -> int:
        """How many examples the value rests on (the denominator a reader should see)."""

    def per_example(self, rows: pd.DataFrame) -> np.ndarray | None: ...

    def constant(self, rows: pd.DataFrame) -> str | None:
        """The label given to (nearly) every example, when the replies are labels and one label is all it says."""

    def floors_on(self, rows: pd.DataFrame) -> list[dict]:
        """Each floor the objective carries: its value on `rows`, its threshold, whether it is met."""


def wilson_interval(k: int, n: int, level: float = 0.95) -> tuple[float, float]:
    """Wilson score interval for k successes in n trials (well-behaved near 0 and 1, unlike Wald)."""
    if n == 0:
        return math.nan, math.nan
    z = float(norm.ppf(0.5 + level / 2))
    phat = k / n
    denom = 1 + z * z / n
    centre = (phat + z * z / (2 * n)) / denom
    half = z * math.sqrt(phat * (1 - phat) / n + z * z / (4 * n * n)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)


def mean_interval(values: Sequence[float], level: float = 0.95, n_boot: int = 1000, seed: int = 0
                  ) -> tuple[float, float]:
    """A CI for the mean of per-example scores in [0, 1]: Wilson when every score is 0 or 1 (pass/fail), else a
    percentile bootstrap over examples."""
    v = np.asarray(values, dtype=float)
    if len(v) == 0:
        return math.nan, math.nan
    if np.isin(v, (0.0, 1.0)).all():
        return wilson_interval(int(v.sum()), len(v), level)
    if len(v) < 2:
        return math.nan, math.nan
    rng = np.random.default_rng(seed)
    means = v[rng.integers(0, len(v), (n_boot, len(v)))].mean(axis=1)
    alpha = (1 - level) / 2
    return float(np.quantile(means, alpha)), float(np.quantile(means, 1 - alpha))


@dataclass(frozen=True)
class MeanScore:
    """The mean over examples of a per-example score in [0, 1]; subclasses say how a reply gets its score."""

    reads_labels = False
    outcome = "score"
    failure_score = 0.0
    invalid_means = "failed calls"
    detail_means = None

    @property
    def range(self) -> tuple[float, float]:
        return (0.0, 1.0)

    def read(self, reply: str, gold: str, gold_norm: str, labels: tuple[str, ...]) -> Reading:
        raise NotImplementedError

    def finish(self, store, rows: list[dict], with_reference: bool, run_id: str | None) -> None:
        return None

    def scores(self, rows: pd.DataFrame) -> np.ndarray:
        return rows["score"].to_numpy(dtype=float)

    def value(self, rows: pd.DataFrame) -> float:
        v = self.scores(rows)
        return float(v.mean()) if len(v) else math.nan

    def interval(self, rows: pd.DataFrame, level: float = 0.95) -> tuple[float, float]:
        return mean_interval(self.scores(rows), level)

    def n_relevant(self, rows: pd.DataFrame) -> int:
        return len(rows)

    def per_example(self, rows: pd.DataFrame) -> np.ndarray | None:
        return self.scores(rows)

    def constant(self, rows: pd.DataFrame) -> str | None:
        return None

    def floors_on(self, rows: pd.DataFrame) -> list[dict]:
        return []


@dataclass(frozen=True)
class HumanGrades(MeanScore):
    """Grades the analyst gives by hand on a scale (lo to hi), scaled to [0, 1]. Nothing scores a reply when it is
    fetched: the grades arrive later (promptlab.grading), and their rows (score: the scaled grade) give the value
    and CI. Not chosen by name like the others: a prompt's human score comes from grading it."""

    lo: int = 1
    hi: int = 5
    failure_score = None

    @property
    def name(self) -> str:
        return "grades"

    @property
    def spec(self) -> str:
        return "grades"

    def describe(self) -> str:
        return f"the mean grade the analyst gives each reply by hand, from {self.lo} to {self.hi} ({self.hi} is best)"

    def read(self, reply: str, gold: str, gold_norm: str, labels: tuple[str, ...]) -> Reading:
        return Reading(reply.strip(), "output", None)

    def scaled(self, grades: Sequence[float]) -> np.ndarray:
        return (np.asarray(grades, dtype=float) - self.lo) / (self.hi - self.lo)
