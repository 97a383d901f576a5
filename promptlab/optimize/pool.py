"""The candidate pool every strategy shares: ids, membership, the best so far by search score.

A strategy adds candidates; racing.py scores them, rounds.py closes a round, confirmation.py decides what ships.
Chained strategies share one pool, so ids, rounds and the top-K continue across stages.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

import numpy as np

from promptlab.prompt import PromptTemplate, normalize_prompt, template_text
from promptlab.text import number_or_none as _f  # short: every number a step records passes through it
from promptlab.optimize.base import CandidateProposed, CandidateScored, OptimizeContext, Step


@dataclass
class Cand:
    id: int
    round: int
    text: str
    template: PromptTemplate
    proposer: str
    val: float | None = None
    minibatch: float | None = None
    discarded: bool = False  # taken out of the history by a decision
    n_scored: int = 0  # val examples scored so far
    rows: object = None  # its per-example rows on those examples (EvalResult.rows), for paired comparisons
    confirm: float | None = None  # its score on the held-back part of val (finalists only)
    over_ceiling: str = ""  # the cost ceilings it broke ("tokens 359 > 300"), measured at its first rung


class Pool:
    """The candidates of a run, in the order they were proposed (ids from 1), and the best so far by search score."""

    def __init__(self):
        self.cands: list[Cand] = []
        self.seen: set[str] = set()  # normalized texts (what proposers must not repeat)
        self.ids: dict[str, int] = {}  # template id -> candidate id
        self.last_round = 0

    # --- membership --------------------------------------------------------------------------------

    def add(self, round_: int, template: PromptTemplate, proposer: str, family: str, parents=(), meta: str = "",
            raw: str = "", text: str | None = None) -> tuple[Cand, CandidateProposed]:
        text = template_text(template) if text is None else text
        cand = Cand(len(self.cands) + 1, round_, text, template, proposer)
        self.cands.append(cand)
        self.seen.add(normalize_prompt(text))
        self.ids.setdefault(template.id, cand.id)
        self.last_round = max(self.last_round, round_)
        return cand, CandidateProposed(
            candidate_id=cand.id, round=round_, text=text, system=template.system, user=template.user,
            prompt_id=template.id, proposer=proposer, family=family, parents=tuple(parents),
            meta_prompt=meta, raw_reply=raw, demos=tuple(d.to_record() for d in template.demos),
            demo_format=template.demo_format, similar_k=template.similar_k, similar_by=template.similar_by,
        )

    def find(self, template: PromptTemplate) -> Cand | None:
        """The candidate already holding this exact prompt (demos included), if any."""
        cid = self.ids.get(template.id)
        return self.cands[cid - 1] if cid else None

    @property
    def evaluated(self) -> list[Cand]:
        return [c for c in self.cands if c.val is not None and not c.discarded]

    def get(self, cand_id: int | None) -> Cand | None:
        return self.cands[cand_id - 1] if cand_id and 0 < cand_id <= len(self.cands) else None

    def best(self) -> Cand | None:
        ev = self.evaluated
        return max(ev, key=lambda c: (rank_score(c), -c.id)) if ev else None  # ties go to the earlier prompt

    def top(self, k: int) -> list[Cand]:
        return sorted(self.evaluated, key=lambda c: (rank_score(c), -c.id), reverse=True)[:k]

    def kth_best(self, k: int) -> float:
        top = self.top(k)
        return -np.inf if len(top) < k else rank_score(top[-1])

    # --- scoring -----------------------------------------------------------------------------------

    def score_start(self, ctx: OptimizeContext, templates, proposer: str = "baseline") -> Iterator[Step]:
        """Add and score in full the prompts a run starts from (baselines). Raises BudgetExhausted."""
        for template in templates:
            cand, step = self.add(0, template, proposer, proposer)
            yield step
            yield record_val_score(ctx, cand, ctx.score(template, ctx.valset))


def record_val_score(ctx: OptimizeContext, cand: Cand, res, minibatch: float | None = None) -> CandidateScored:
    """Record a candidate's score on all of val and the step that says so."""
    cand.val, cand.rows, cand.n_scored = res.score, res.rows, res.n
    return CandidateScored(cand.id, cand.round, _f(minibatch), _f(res.score), ci_of(res), res.n, "evaluated",
                           target_requests=ctx.counters.target_requests, n_scored=res.n)


def rank_score(c: Cand) -> float:
    """A candidate's search score for ranking: -inf when it has none."""
    return -np.inf if c.val is None or c.val != c.val else c.val


def ci_of(res) -> tuple[float, float]:
    """An evaluation's CI as a step records it."""
    lo, hi = res.ci
    return (_f(lo), _f(hi))
