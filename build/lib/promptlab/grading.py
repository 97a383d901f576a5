"""Grading by hand: the analyst grades a prompt's outputs, one at a time, and the grades become
that prompt's score (with n and a CI); the same grades check an LLM judge (agreement and Cohen's kappa).

A grade belongs to (dataset, prompt, model, example, output): the exact reply graded, by its hash, so a
changed output is never scored with an old grade. Grading can hide the prompt (blind) so knowing which
prompt wrote an output cannot sway the grade; the queue is shuffled by a seed for the same reason.
"""
from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from promptlab.data import Dataset
from promptlab.errors import PromptlabError
from promptlab.progress import Progress
from promptlab.evaluate import dataset_params, evaluate, model_key
from promptlab.prompt import PromptTemplate
from promptlab.scoring.base import HumanGrades
from promptlab.scoring.judge import Judge, agreement
from promptlab.models import ModelSpec
from promptlab.store import Store

SCALES = {"pass/fail": (0, 1), "1-5": (1, 5)}


class GradingError(PromptlabError):
    pass


def output_hash(text: str | None) -> str:
    return hashlib.sha256((text or "").encode("utf-8")).hexdigest()[:16]


def scale_range(scale: str) -> tuple[int, int]:
    if scale not in SCALES:
        raise GradingError(f"unknown grading scale '{scale}': use {' or '.join(SCALES)}")
    return SCALES[scale]


def parse_grade(text: str, scale: str) -> float:
    """'p'/'pass'/'1' and 'f'/'fail'/'0' on pass/fail; a whole number 1–5 on 1-5. Clear errors otherwise."""
    lo, hi = scale_range(scale)
    t = (text or "").strip().lower()
    if scale == "pass/fail":
        if t in ("p", "pass", "1", "y", "yes", "+"):
            return 1.0
        if t in ("f", "fail", "0", "n", "no", "-"):
            return 0.0
        raise GradingError(f"'{text}' is not a pass/fail grade: type p (pass) or f (fail)")
    try:
        value = float(t)
    except ValueError:
        raise GradingError(f"'{text}' is not a grade: type a whole number from {lo} to {hi}") from None
    if value != int(value) or not lo <= value <= hi:
        raise GradingError(f"'{text}' is off the scale: type a whole number from {lo} to {hi}")
    return value


@dataclass(frozen=True)
class Item:
    """One output to grade."""

    example_idx: int
    input: str
    reference: str
    output: str
    output_hash: str
    grade: float | None = None
    note: str = ""


@dataclass(frozen=True)
class Batch:
    """A prompt's outputs on some examples, ready to grade (the outputs come through the call cache)."""

    dataset: Dataset
    prompt: PromptTemplate
    spec: ModelSpec
    model_key: str
    items: tuple[Item, ...]
    scale: str = "1-5"

    @property
    def prompt_id(self) -> str:
        return self.prompt.id

    @property
    def pairs(self) -> set[tuple[int, str]]:
        """(example, output hash) of every output in the batch: what its score is computed over."""
        return {(it.example_idx, it.output_hash) for it in self.items}


def outputs(store: Store, dataset: Dataset, spec: ModelSpec, prompt: PromptTemplate, *, split: str = "val",
            limit: int | None = 20, seed: int = 0, max_tokens: int | None = None, progress: Progress | None = None,
            scale: str = "1-5") -> Batch:
    """The prompt's outputs on up to `limit` examples of a split (a seeded sample), with the grades they
    already have on `scale` (grades on another scale are kept apart, never mixed)."""
    grades = HumanGrades(*scale_range(scale))
    prompt.check(dataset.input_cols)
    examples = dataset.split(split)
    if limit is not None and limit < len(examples):
        examples = examples.iloc[np.sort(np.random.default_rng(seed).permutation(len(examples))[:limit])]
    res = evaluate(store, spec, prompt, dataset, examples, grades, split=split, max_tokens=max_tokens,
                   progress=progress, save=False)  # outputs only: stored scores stay as they are
    mk = model_key(spec, dataset_params(spec, dataset, max_tokens))
    graded = store.grades(dataset.id, prompt.id, mk) if dataset.id else pd.DataFrame()
    if len(graded):
        graded = graded[graded["scale"] == scale]
    known = {(int(r.example_idx), r.output_hash): (float(r.grade), r.note or "") for r in graded.itertuples()}
    items = []
    for r in res.rows.itertuples():
        out = r.reply if isinstance(r.reply, str) else ""
        h = output_hash(out)
        g, note = known.get((int(r.example_idx), h), (None, ""))
        items.append(Item(int(r.example_idx), r.text, r.gold or "", out, h, g, note))
    order = np.random.default_rng([seed, 1]).permutation(len(items))  # shown shuffled: no order effects
    return Batch(dataset, prompt, spec, mk, tuple(items[i] for i in order), scale)


def record(store: Store, batch: Batch, item: Item, grade: float, scale: str, *, note: str = "", grader: str = "analyst",
           blind: bool = False) -> None:
    lo, hi = scale_range(scale)
    if not lo <= grade <= hi:
        raise GradingError(f"grade {grade:g} is off the {scale} scale ({lo}–{hi})")
    store.save_prompt(batch.prompt.id, batch.prompt.system, batch.prompt.user,
                      [d.to_record() for d in batch.prompt.demos] or None, batch.prompt.demo_format,
                      batch.prompt.similar_k, batch.prompt.similar_by)
    store.save_grade(batch.dataset.id, batch.prompt.id, batch.model_key, item.example_idx, item.output_hash, item.output,
                     grade, scale, note.strip(), grader, blind)


def summary(store: Store, dataset_id: str, prompt_id: str, model_key_: str, scale: str | None = None,
            pairs: set[tuple[int, str]] | None = None) -> dict:
    """The prompt's score from human grades: mean grade scaled to 0–1, n, and a 95% CI (Wilson for
    pass/fail; a bootstrap over examples for 1–5). One scale at a time (the given one, else the latest
    used); with `pairs`, only grades of those (example, output) pairs: a batch's score is over its
    current outputs, one grade each, never an old output of the same example."""
    g = store.grades(dataset_id, prompt_id, model_key_)
    if not g.empty:
        scale = scale or g["scale"].iloc[-1]
        g = g[g["scale"] == scale]
        if pairs is not None:
            g = g[[(int(i), h) in pairs for i, h in zip(g["example_idx"], g["output_hash"])]]
    if g.empty:
        return {"n": 0, "score": None, "ci": (None, None), "scale": scale, "mean_grade": None}
    grades = HumanGrades(*scale_range(scale))
    rows = pd.DataFrame({"score": grades.scaled(g["grade"])})
    return {"n": grades.n_relevant(rows), "score": grades.value(rows), "ci": grades.interval(rows), "scale": scale,
            "mean_grade": float(g["grade"].mean()), "graders": sorted(set(g["grader"].dropna()))}


def calibrate(store: Store, batch: Batch, judge_model: ModelSpec, rubric: str, scale: str) -> dict:
    """Grade the already human-graded outputs with the judge (on the same scale) and compare:
    n, exact agreement, agreement within one point, and Cohen's kappa; plus the pairs themselves."""
    if scale != batch.scale:
        raise GradingError(f"these outputs were graded on {batch.scale}; check the judge on that scale")
    lo, hi = scale_range(scale)
    judge = Judge(judge_model, rubric, lo, hi)
    graded = [it for it in batch.items if it.grade is not None]
    if not graded:
        raise GradingError("grade some outputs first: the judge is checked against your grades")
    with_ref = batch.dataset.kind == "reference"
    pairs = []
    for it in graded:
        j = judge.grade(store, it.input, it.output, it.reference if with_ref else None)
        pairs.append({"example": it.example_idx, "human": it.grade, "judge": j.score, "judge_reason": j.reasoning or j.error})
    stats = agreement([p["judge"] for p in pairs], [p["human"] for p in pairs], lo, hi)
    return {**stats, "scale": scale, "pairs": pairs}


def kappa_reading(stats: dict) -> str:
    """Landis and Koch's words for kappa, so a number is never read alone."""
    k = stats.get("kappa")
    if k is None or (isinstance(k, float) and math.isnan(k)):
        return "no overlap to compare yet"
    words = ("poor" if k < 0 else "slight" if k < 0.2 else "fair" if k < 0.4 else "moderate" if k < 0.6
             else "substantial" if k < 0.8 else "almost perfect")
    return f"{words} agreement (kappa {k:.2f} on {stats['n']} outputs)"
