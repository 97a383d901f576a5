"""What a prompt is scored by, for every kind of dataset: a label metric, a reference scorer, or an LLM judge.

Labeled datasets keep their metrics (promptlab.metrics). A dataset with a reference answer per row is
scored by a reference scorer (promptlab.scorers) or by an LLM judge that sees the reference; a dataset
with no target is scored by the judge alone (or graded by hand, promptlab.grading). Scorer and judge
objectives are the mean of a per-example score in [0, 1], with a Wilson interval when every score is
0 or 1 (the exact-match family) and a percentile bootstrap otherwise, and n always shown.

A dataset stores its default scoring (`scoring`: {"metric": spec, "judge": {model, rubric, lo, hi}});
a run copies it into its config, so a stored run never depends on a later change to the dataset.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from promptlab import metrics as M
from promptlab.errors import PromptlabError
from promptlab.judge import Judge, JudgeError
from promptlab.scorers import KINDS as SCORER_KINDS, Scorer, ScorerError, parse_scorer

BINARY_SCORERS = {"exact", "normalized", "contains", "regex", "numeric", "json"}
DEFAULT_SCORER = "normalized"
DEFAULT_RUBRIC = ("5: the answer is correct, complete and concise. 3: partly correct or padded with extra text. "
                  "1: wrong, empty, or off the task.")


class ObjectiveError(PromptlabError):
    pass


@dataclass(frozen=True)
class ScoreMetric:
    """The mean over examples of a per-example score in [0, 1] (a reference scorer, or a judge's grade scaled)."""

    scorer: Scorer | None = None
    judge: Judge | None = None
    per_example = True
    label = None

    @property
    def name(self) -> str:
        return "judge" if self.judge is not None else self.scorer.kind

    @property
    def spec(self) -> str:
        return "judge" if self.judge is not None else self.scorer.spec

    @property
    def binary(self) -> bool:
        return self.judge is None and self.scorer.kind in BINARY_SCORERS

    @property
    def range(self) -> tuple[float, float]:
        return (0.0, 1.0)

    def describe(self) -> str:
        if self.judge is not None:
            j = self.judge
            return (f"the mean grade an AI judge gives each reply, from {j.lo} to {j.hi} ({j.hi} is best), by this "
                    f"rubric: {j.rubric.strip().rstrip('.')}")
        return f"the share of replies that pass: {self.scorer.describe()}" if self.binary else \
            f"the mean per-reply score: {self.scorer.describe()}"

    def mean(self, values: Sequence[float]) -> float:
        v = np.asarray(values, dtype=float)
        return float(v.mean()) if len(v) else math.nan

    def interval(self, values: Sequence[float], level: float = 0.95, n_boot: int = 1000, seed: int = 0
                 ) -> tuple[float, float]:
        v = np.asarray(values, dtype=float)
        if len(v) == 0:
            return math.nan, math.nan
        if np.isin(v, (0.0, 1.0)).all():
            return M.wilson_interval(int(v.sum()), len(v), level)
        if len(v) < 2:
            return math.nan, math.nan
        rng = np.random.default_rng(seed)
        means = v[rng.integers(0, len(v), (n_boot, len(v)))].mean(axis=1)
        alpha = (1 - level) / 2
        return float(np.quantile(means, alpha)), float(np.quantile(means, 1 - alpha))


Objective = M.Metric | ScoreMetric


def is_scored(metric) -> bool:
    """True for a per-example objective (scorer or judge), False for a label metric."""
    return bool(getattr(metric, "per_example", False))


def metric_choices(kind: str) -> list[str]:
    """What can score a dataset of this kind (label metrics are listed by promptlab.metrics)."""
    if kind == "reference":
        return [k for k in SCORER_KINDS] + ["judge"]
    if kind == "unlabeled":
        return ["judge"]
    return []


def default_spec(dataset) -> str:
    """What a dataset is scored by when nothing else is named: accuracy for labels, else its stored scoring,
    else the normalized match for reference answers and the judge for outputs without a target."""
    if dataset.kind == "labels":
        return "accuracy"
    return ((dataset.scoring or {}).get("metric") or (DEFAULT_SCORER if dataset.kind == "reference" else "judge")).strip()


def judge_from(rec: dict | None, store=None) -> Judge:
    """A Judge from a stored scoring record {"model": name or spec record, "rubric", "lo", "hi"}."""
    from promptlab.models import resolve_model, spec_from_record

    rec = rec or {}
    model = rec.get("model")
    if not model:
        raise ObjectiveError("the judge needs a model: pick one (--judge MODEL, or 'Judge model' in the dashboard)")
    spec = spec_from_record(model) if isinstance(model, dict) else resolve_model(str(model), store)
    try:
        return Judge(spec, str(rec.get("rubric") or ""), int(rec.get("lo", 1)), int(rec.get("hi", 5)))
    except JudgeError as exc:
        raise ObjectiveError(str(exc)) from None


def parse_objective(spec: str | None, dataset, judge: dict | None = None, store=None) -> Objective:
    """The objective named by `spec` for this dataset: a label metric, a scorer spec, or 'judge'
    (with `judge`, or the dataset's stored judge). Errors say what this dataset can be scored by."""
    if dataset.kind == "labels":
        if spec and spec.strip().lower() == "judge":
            raise ObjectiveError("a labeled dataset is scored by a label metric (accuracy, recall:LABEL, …), "
                                 "not by a judge: import it as a reference-answer dataset to judge its outputs")
        return M.parse_metric(spec or default_spec(dataset), dataset.labels)
    spec = (spec or default_spec(dataset)).strip()
    if re.search(r";\s*[\w:]+\s*>=", spec):  # a floor (a scorer such as regex:\d+;\d+ may hold a ';')
        raise ObjectiveError(f"floors (--constraint) apply to label metrics, and dataset '{dataset.name}' has "
                             f"{'reference answers' if dataset.kind == 'reference' else 'no target'}: drop them")
    if spec.lower() == "judge":
        return ScoreMetric(judge=judge_from(judge or (dataset.scoring or {}).get("judge"), store))
    if dataset.kind == "unlabeled":
        raise ObjectiveError(f"'{spec}' compares replies with a reference answer, and dataset '{dataset.name}' has none: "
                             "score it with an LLM judge (metric 'judge' with a rubric) or grade its outputs by hand")
    if spec.split(":")[0].strip().lower() in M.GLOBAL_METRICS or spec.split(":")[0].strip().lower() in M.LABEL_METRICS:
        raise ObjectiveError(f"'{spec}' is a label metric, and dataset '{dataset.name}' has reference answers, not labels. "
                             f"Use a scorer ({', '.join(SCORER_KINDS)}) or the judge")
    try:
        return ScoreMetric(scorer=parse_scorer(spec))
    except ScorerError as exc:
        raise ObjectiveError(f"{exc} (or 'judge')") from None


def check_scoring(scoring: dict, dataset, store=None) -> dict:
    """Validate a dataset's default scoring and return it in stored form (the judge model as a spec record)."""
    out = {"metric": (scoring.get("metric") or "").strip() or None}
    judge = scoring.get("judge")
    if judge and (judge.get("model") or judge.get("rubric")):
        j = judge_from({**judge, "rubric": judge.get("rubric") or DEFAULT_RUBRIC}, store)
        out["judge"] = j.to_record()
    if out["metric"]:
        parse_objective(out["metric"], dataset, out.get("judge"), store)
    return {k: v for k, v in out.items() if v}


def run_judge(config_judge: dict | None, dataset) -> dict | None:
    """The judge record a run uses: its own if given, else the dataset's."""
    return config_judge or (dataset.scoring or {}).get("judge")


__all__ = ["ScoreMetric", "Objective", "ObjectiveError", "parse_objective", "check_scoring", "is_scored", "judge_from",
           "metric_choices", "default_spec", "DEFAULT_RUBRIC"]
