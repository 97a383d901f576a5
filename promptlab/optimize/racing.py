"""Racing: how much of val a candidate gets before it is dropped or scored in full, and what that costs.

A race reads candidates over rungs of a stratified order of val (the minibatch, then twice as many examples, ... then
all of it); after each rung a candidate goes on only while a paired bound says it could still beat the leader, and
at most half of a round goes on. The gates of runs stored before racing ("ci", "mean", "off") score a minibatch and
then all of val or nothing. Every candidate's race ends in one CandidateScored step: "evaluated", "gated", "over
budget" or "over ceiling".
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterator

import numpy as np

from promptlab.optimize import ceiling
from promptlab.optimize.base import BudgetExhausted, CandidateScored, OptimizeContext, Step
from promptlab.optimize.pool import Cand, Pool, ci_of, record_val_score
from promptlab.optimize.settings import setting
from promptlab.scoring import stats as S
from promptlab.text import number_or_none as _f  # short: every number a step records passes through it


@dataclass
class Gate:
    """How much of val a candidate gets.

    "race" (the default): successive rungs of a stratified order of val (minibatch_size examples, then
    twice that, … then all of it). After each rung a candidate goes on only while it could still beat
    the leader: the upper bound at `level` of its paired difference from the leader on the same
    examples is above 0; and of a round's candidates at most half go on (successive halving). Only
    those left at the last rung are scored on all of val.
    The gates of runs stored before racing: a stratified val minibatch first, then the full val set
    only if the candidate could still enter the top-K: its minibatch score's upper CI bound at `level`
    ("ci"), or the point estimate ("mean"), reaches the K-th best val score. "off" scores everything in full."""

    kind: str = "race"
    level: float = 0.9
    top_k: int = 4
    minibatch_size: int = 12


def race_rungs(first: int, n: int) -> list[int]:
    """How many examples each rung of a race reads: first, 2x first, … and finally all n (a last step
    shorter than half the rung before is merged into it)."""
    sizes, k = [], max(1, min(first, n))
    while k < n:
        sizes.append(k)
        k *= 2
    if len(sizes) > 1 and n - sizes[-1] < sizes[-1] // 2:
        sizes.pop()
    return sizes + [n]


GATES = ("race", "ci", "mean", "off")


@dataclass(frozen=True, kw_only=True)
class RaceSettings:
    """A strategy's racing settings, declared once (every strategy over a pool has them)."""

    # 8, not 12: a search is a real one only if it can try tens of candidates on a budget of hundreds of calls, and
    # the first rung is most of what a dropped candidate costs; the race's later rungs, not the first, decide.
    minibatch_size: int = setting(8, "val examples every candidate is first scored on (the race's first rung; "
                                  "the gate's minibatch)", type="int", low=2, flag="--minibatch", key="minibatch",
                                  label="Minibatch size (the race's first rung)")
    gate: str = setting("race", "how much of val a candidate gets: race (rungs of twice as many examples while it "
                        "could still beat the leader, at most half of a round going on), ci or mean (a minibatch, "
                        "then all of val if it could enter the top-K), off (all of val)", type="choice",
                        choices=GATES, label="Racing")
    gate_level: float = setting(0.9, "confidence with which a race drops a candidate that cannot beat the leader "
                                "(the ci gate's level)", type="float", low=0.5, high=0.999, label="Racing confidence")
    top_k: int = setting(4, "prompts shown to proposers and the gate's K", type="int", low=1, label="Top-K")

    @property
    def gate_config(self) -> Gate:
        return Gate(self.gate, self.gate_level, self.top_k, self.minibatch_size)

    def race_projection(self, n_val: int, candidates: float) -> dict:
        """What scoring `candidates` new prompts costs: {min, expected, max} target requests, by the gate."""
        mb = min(self.minibatch_size, n_val)
        if self.gate == "off":
            return {"min": candidates * n_val, "expected": candidates * n_val, "max": candidates * n_val}
        if self.gate == "race":
            rungs = race_rungs(self.minibatch_size, n_val)
            steps = [b - a for a, b in zip([0] + rungs[:-1], rungs)]
            # at most half of a round goes on at each rung; expected: about a third
            expected = sum(s * candidates * (0.5 ** i if i < 1 else (1 / 3) ** i) for i, s in enumerate(steps))
            alive = [max(1, math.ceil(candidates))]  # the race keeps ceil(half) of a round at each rung
            for _ in steps[1:]:
                alive.append(max(1, math.ceil(alive[-1] / 2)))
            top = sum(s * a for s, a in zip(steps, alive))
            return {"min": candidates * mb, "expected": expected, "max": top}
        return {"min": candidates * mb, "expected": candidates * (mb + 0.5 * (n_val - mb)), "max": candidates * n_val}


def score_one(ctx: OptimizeContext, pool: Pool, cand: Cand, gate: Gate) -> CandidateScored:
    """Minibatch first, full val if it could enter the top-K. A candidate the budget cannot finish is
    recorded as "over budget" (with its minibatch score when it got that far), never left half-done.
    With the race, a race of one (no halving)."""
    if gate.kind == "race":
        return list(race(ctx, pool, [cand], gate, halving=False))[-1]
    minibatch = ctx.minibatch(gate.minibatch_size)
    n_val = len(ctx.valset)
    full = gate.kind == "off" or len(minibatch) >= n_val
    if not ctx.can_score(len(ctx.new_requests(cand.template, ctx.valset if full else minibatch))):
        return CandidateScored(cand.id, cand.round, None, None, None, 0, "over budget",
                               target_requests=ctx.counters.target_requests)
    if full:
        res = ctx.score(cand.template, ctx.valset)
        if ctx.ceilings and ceiling.breaks(ctx, cand, res):
            cand.minibatch = res.score
            return ceiling.over(ctx, cand, n_val, 0)
        return record_val_score(ctx, cand, res)
    mb = ctx.score(cand.template, minibatch)
    cand.minibatch = mb.score
    if ctx.ceilings and ceiling.breaks(ctx, cand, mb):
        return ceiling.over(ctx, cand, len(minibatch), n_val - len(minibatch))
    bar = pool.kth_best(gate.top_k)
    if gate.kind == "ci":
        optimistic = mb.ci_at(gate.level)[1]
    else:
        optimistic = mb.score
    optimistic = -np.inf if optimistic != optimistic else optimistic  # NaN
    if optimistic >= bar and not ctx.can_score(len(ctx.new_requests(cand.template, ctx.valset))):
        return CandidateScored(cand.id, cand.round, _f(mb.score), None, None, 0, "over budget",
                               target_requests=ctx.counters.target_requests)
    if optimistic >= bar:
        # the minibatch's calls come from the cache
        return record_val_score(ctx, cand, ctx.score(cand.template, ctx.valset), minibatch=mb.score)
    saved = n_val - len(minibatch)
    ctx.counters.calls_saved_by_gate += saved
    cand.n_scored = len(minibatch)
    return CandidateScored(cand.id, cand.round, _f(mb.score), None, None, 0, "gated", calls_saved=saved,
                           target_requests=ctx.counters.target_requests, n_scored=len(minibatch))


def score_all(ctx: OptimizeContext, pool: Pool, cands: list[Cand], gate: Gate) -> Iterator[Step]:
    """Score candidates in order; the first one over budget ends it (the rest stay unscored, as
    'proposed') and raises BudgetExhausted. With the race, the round's candidates race together."""
    if gate.kind == "race":
        over = False
        for step in race(ctx, pool, cands, gate):  # every candidate's step, then the end of the budget
            yield step
            over = over or step.status == "over budget"
        if over:
            raise BudgetExhausted("target requests")
        return
    for cand in cands:
        step = score_one(ctx, pool, cand, gate)
        yield step
        if step.status == "over budget":
            raise BudgetExhausted("target requests")


def race(ctx: OptimizeContext, pool: Pool, cands: list[Cand], gate: Gate, halving: bool = True) -> Iterator[CandidateScored]:
    """Race candidates over the rungs of val (see Gate). Yields one CandidateScored per candidate when
    its race ends: "evaluated" (all of val), "gated" (dropped at a rung, scored on its examples) or
    "over budget" (every candidate still running when the budget cannot pay for the next rung)."""
    order = ctx.race_order()
    rungs = race_rungs(gate.minibatch_size, len(order))
    alive = list(cands)
    for i, n in enumerate(rungs):
        examples = order.iloc[:n]
        need = sum(len(ctx.new_requests(c.template, examples)) for c in alive)
        if not ctx.can_score(need, stage=i == 0):
            for c in alive:
                yield CandidateScored(c.id, c.round, _f(c.minibatch), None, None, 0, "over budget",
                                      target_requests=ctx.counters.target_requests, n_scored=c.n_scored)
            return
        last = {}
        for c in alive:
            last[c.id] = res = ctx.score(c.template, examples, stage=i == 0)
            c.minibatch, c.n_scored, c.rows = res.score, n, res.rows
        if i == 0 and ctx.ceilings:  # a prompt that costs too much per call goes no further, whatever it scores
            for c in alive:
                if ceiling.breaks(ctx, c, last[c.id]):
                    ctx.counters.calls_saved_by_gate += len(order) - n
                    yield ceiling.over(ctx, c, n, len(order) - n)
            alive = [c for c in alive if not c.over_ceiling]
            if not alive:
                return
        if i == len(rungs) - 1:
            for c in alive:
                c.val = c.minibatch
                yield CandidateScored(c.id, c.round, _f(c.minibatch) if len(rungs) > 1 else None, _f(c.val),
                                      ci_of(last[c.id]), n, "evaluated",
                                      target_requests=ctx.counters.target_requests, n_scored=n)
            return
        leader = pool.best()
        ranked = []
        for c in alive:
            if leader is None or leader.rows is None:
                ranked.append((0.0, c))
                continue
            mean, upper = S.race_bound(ctx.metric, c.rows, leader.rows, gate.level)
            if upper > 1e-12:  # not yet told apart (no relevant example, say) counts as could-still-win
                ranked.append((mean if mean == mean else 0.0, c))
        ranked.sort(key=lambda mc: (-mc[0], mc[1].id))
        keep = max(1, -(-len(alive) // 2)) if halving else len(alive)
        go_on = {c.id for _, c in ranked[:keep]}
        for c in alive:
            if c.id not in go_on:
                saved = len(order) - n
                ctx.counters.calls_saved_by_gate += saved
                yield CandidateScored(c.id, c.round, _f(c.minibatch), None, None, 0, "gated", calls_saved=saved,
                                      target_requests=ctx.counters.target_requests, n_scored=n)
        alive = [c for c in alive if c.id in go_on]
        if not alive:
            return
