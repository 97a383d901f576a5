"""What a prompt is scored by, for every kind of dataset, by name: a label metric, a reference scorer, or an LLM
judge; and a dataset's default scoring (checked, stored, merged with what the analyst gives).

A dataset stores its default scoring (`scoring`: {"metric": spec, "judge": {model, rubric, lo, hi}});
a run copies it into its config, so a stored run never depends on a later change to the dataset.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Iterable

from promptlab.models import resolve_model, spec_from_record
from promptlab.scoring.base import Objective, ScoringError
from promptlab.scoring.judge import Judge, JudgeError, JudgeScore
from promptlab.scoring.labels import GLOBAL_METRICS, LABEL_METRICS, parse_metric, with_floors
from promptlab.scoring.scorers import DEFAULT as SCORER_DEFAULT, SCORER_KINDS, ReferenceScore, ScorerError, \
    parse_scorer

# The names whose spec takes an argument after ':': a label metric's label; the regex, numeric and json scorers'
# pattern, tolerance and field.
TAKES_ARGUMENT = (*LABEL_METRICS, "regex", "numeric", "json")

DEFAULT_RUBRIC = ("5: the answer is correct, complete and concise. 3: partly correct or padded with extra text. "
                  "1: wrong, empty, or off the task.")


class ObjectiveError(ScoringError):
    pass


def metric_choices(kind: str) -> list[str]:
    """What can score a dataset of this kind (label metrics are listed by scoring.labels)."""
    if kind == "reference":
        return [k for k in SCORER_KINDS] + ["judge"]
    if kind == "unlabeled":
        return ["judge"]
    return []


def metric_spec(name: str, arg: str | None = None, floors: Iterable[str | tuple[str, float]] = ()) -> str:
    """The spec parse_objective reads, written in one place for the pages and the CLI: NAME, or NAME:ARG for a name
    that takes an argument (TAKES_ARGUMENT; an empty ARG is left out), then each floor ('; precision:fraud>=0.4',
    labels.with_floors). `name` may be a whole spec already ('recall:fraud'), to which the floors are added."""
    name = name.strip()
    return with_floors(f"{name}:{arg}" if arg and name in TAKES_ARGUMENT else name, floors)


def default_spec(dataset) -> str:
    """What a dataset is scored by when nothing else is named: accuracy for labels, else its stored scoring,
    else the normalized match for reference answers and the judge for outputs without a target."""
    if dataset.kind == "labels":
        return "accuracy"
    return ((dataset.scoring or {}).get("metric") or (SCORER_DEFAULT if dataset.kind == "reference" else "judge")).strip()


def judge_from(rec: dict | None, store=None) -> Judge:
    """A Judge from a stored scoring record {"model": name or spec record, "rubric", "lo", "hi"}."""
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
        return parse_metric(spec or default_spec(dataset), dataset.labels)
    spec = (spec or default_spec(dataset)).strip()
    if re.search(r";\s*[\w:]+\s*>=", spec):  # a floor (a scorer such as regex:\d+;\d+ may hold a ';')
        raise ObjectiveError(f"floors (--constraint) apply to label metrics, and dataset '{dataset.name}' has "
                             f"{'reference answers' if dataset.kind == 'reference' else 'no target'}: drop them")
    if spec.lower() == "judge":
        return JudgeScore(judge=judge_from(judge or (dataset.scoring or {}).get("judge"), store))
    if dataset.kind == "unlabeled":
        raise ObjectiveError(f"'{spec}' compares replies with a reference answer, and dataset '{dataset.name}' has none: "
                             "score it with an LLM judge (metric 'judge' with a rubric) or grade its outputs by hand")
    if spec.split(":")[0].strip().lower() in GLOBAL_METRICS or spec.split(":")[0].strip().lower() in LABEL_METRICS:
        raise ObjectiveError(f"'{spec}' is a label metric, and dataset '{dataset.name}' has reference answers, not labels. "
                             f"Use a scorer ({', '.join(SCORER_KINDS)}) or the judge")
    try:
        return ReferenceScore(parse_scorer(spec))
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


def parse_scale(text: str, what: str = "the judge's scale") -> tuple[int, int]:
    """A grading scale written 'LO-HI' (1-5, 0-1) as (lo, hi); `what` names it in the error."""
    try:
        lo, hi = (int(x) for x in str(text).split("-"))
    except ValueError:
        raise ObjectiveError(f"{what} '{text}' must look like 1-5 or 0-1") from None
    return lo, hi


@dataclass(frozen=True)
class JudgeSettings:
    """The judge a job asks for (--judge, --rubric, --judge-scale, or the dashboard's judge fields); what it leaves
    blank comes from the dataset's own judge, then the default rubric and the 1-5 scale."""

    model: str | dict | None = None  # a configured name, a litellm model string, or a spec record
    rubric: str | None = None
    scale: tuple[int, int] | None = None


def judge_record(settings: JudgeSettings | None, dataset=None) -> dict | None:
    """The judge record a job passes on, or None (the dataset's own judge applies unchanged). Without a dataset
    (one being imported) only the defaults fill the gaps."""
    if settings is None:
        return None
    stored = ((dataset.scoring if dataset is not None else None) or {}).get("judge") or {}
    lo, hi = settings.scale or (stored.get("lo", 1), stored.get("hi", 5))
    return {"model": settings.model or stored.get("model"),
            "rubric": settings.rubric or stored.get("rubric") or DEFAULT_RUBRIC, "lo": lo, "hi": hi}


def _same_scoring(a: dict) -> tuple:
    """What tells two stored scorings apart (a judge model by its name, model and endpoint, never its params)."""
    j = a.get("judge") or {}
    model = j.get("model") or {}
    return (a.get("metric"), (model.get("name"), model.get("model"), model.get("api_base")) if model else None,
            j.get("rubric"), j.get("lo"), j.get("hi"))


def save_scoring(store, dataset, scoring: dict) -> tuple[dict, bool]:
    """Check a dataset's default scoring and store it when it differs from what is stored: (checked, saved)."""
    checked = check_scoring(scoring, dataset, store)
    if _same_scoring(checked) == _same_scoring(dict(dataset.scoring or {})):
        return checked, False
    store.set_dataset_scoring(dataset.id, checked)
    return checked, True


__all__ = ["ObjectiveError", "parse_objective", "check_scoring", "judge_from", "JudgeSettings", "judge_record", "parse_scale",
           "save_scoring", "metric_choices", "metric_spec", "default_spec", "DEFAULT_RUBRIC", "TAKES_ARGUMENT"]
