"""Rounds: how a search's rounds are numbered, when one ends, and what ends a search (its rounds, the budget, the
analyst, or patience), with the analyst's decisions applied between rounds in a semi-automatic run.
"""
from __future__ import annotations

from typing import Generator

from promptlab.optimize.base import (
    BudgetExhausted, CandidateScored, Decided, OptimizeContext, ReviewRequested, RoundFinished, Step,
)
from promptlab.optimize.pool import Cand, Pool, rank_score, record_val_score
from promptlab.optimize.racing import Gate, score_all
from promptlab.prompt import PromptTemplate


def finish_round(ctx: OptimizeContext, pool: Pool, round_: int, best: Cand, round_cands: list[Cand]
                 ) -> Generator[Step, None, tuple[bool, Cand]]:
    """Yield the round's RoundFinished; return (improved, the new best)."""
    scored = [c for c in round_cands if c.val is not None]
    winner = max(scored, key=lambda c: (rank_score(c), -c.id)) if scored else None
    new_best = pool.best()
    improved = rank_score(new_best) > rank_score(best)
    yield RoundFinished(
        round=round_, best_id=new_best.id, best_val=new_best.val, improved=improved,
        winner_id=winner.id if winner else None, winner_proposer=winner.proposer if winner else None,
        target_requests=ctx.counters.target_requests, proposer_calls=ctx.counters.proposer_requests,
    )
    return improved, new_best


class Rounds:
    """Round bookkeeping a search shares: numbering that continues the pool's, the best so far,
    rounds without progress (patience), and how a round ends.

    What counts as progress: a new leader; with `evidence`, also a *contender*, a candidate of the round that
    the race could not tell from the leader (it read all of the search examples). A search that keeps writing
    contenders is still finding prompts as good as the best, and may find a better one; one whose candidates
    are all dropped as clearly worse has shown it is done. `raced_per_round`: patience ends a search only once it
    has also raced `patience` x this many candidates since its last progress (a proposing stage passes the
    candidates one call asks for): two rounds of two usable proposals, or of none (a proposer that wrote nothing
    usable), are not evidence that the search cannot help."""

    def __init__(self, ctx: OptimizeContext, pool: Pool, patience: int | None = None, evidence: bool = False,
                 raced_per_round: int = 0):
        self.ctx, self.pool = ctx, pool
        self.patience = patience or ctx.budget.patience  # a stage's own patience, else the run's
        self.evidence = evidence
        self.min_raced = (self.patience or 0) * raced_per_round
        self.best = pool.best()
        self.since_improved = 0
        self.raced_since = 0  # candidates raced (scored on at least the first rung) since the last progress
        self.done = 0
        self.first = pool.last_round + 1

    def __iter__(self):
        return iter(range(self.first, self.first + self.ctx.budget.max_rounds))

    def score(self, cands: list[Cand], gate: Gate) -> Generator[Step, None, str | None]:
        """Score a round's candidates; returns "budget" if the budget ran out on the way."""
        try:
            yield from score_all(self.ctx, self.pool, cands, gate)
        except BudgetExhausted:
            return "budget"
        return None

    def end(self, round_: int, cands: list[Cand], reason: str | None = None, repeats: int = 0
            ) -> Generator[Step, None, str | None]:
        """Decide the round (the analyst in a semi-automatic run, else the rule), yield the RoundFinished;
        return why the search must stop now (reason, the analyst, or patience), else None. `repeats`: proposals of
        the round dropped for repeating a prompt already raced, which count as raced for patience."""
        stopped = None
        if self.ctx.review != "unrecorded":
            stopped = yield from review_round(self.ctx, self.pool, round_, cands)
        improved, self.best = yield from finish_round(self.ctx, self.pool, round_, self.best, cands)
        contender = self.evidence and any(c.val is not None and not c.discarded for c in cands)
        progress = improved or contender
        self.since_improved = 0 if progress else self.since_improved + 1
        self.raced_since = 0 if progress else self.raced_since + repeats + sum(1 for c in cands if c.n_scored > 0)
        self.done += 1
        if reason or stopped:
            return reason or stopped
        patience = self.patience
        if patience and self.since_improved >= patience and self.raced_since >= self.min_raced:
            return "patience"
        return None


def review_round(ctx: OptimizeContext, pool: Pool, round_: int, cands: list[Cand]) -> Generator[Step, None, str | None]:
    """Apply a round's decisions, in the order they were made, then the rule to every candidate nobody
    decided on (kept if it was scored in full, else left out). In a semi-automatic run ("rounds") the
    run first yields ReviewRequested, and `runs.execute` pauses there until the analyst closes the round;
    replaying it later reads the same stored decisions, so the path is the same.

    Prompts the analyst writes (an edit, with its parent, or a new one) are scored in full on val outside
    the search budget: the analyst chose to spend those calls. Returns "analyst stopped" on a stop."""
    decisions = []
    if ctx.review == "rounds":
        best = pool.best()
        yield ReviewRequested(round_, tuple(c.id for c in cands), best.id if best else 0)
        decisions = ctx.store.decisions(ctx.run_id, round_)
    decided: set[int] = set()
    stopped = None
    for d in decisions:
        action, cid, who, note = d["action"], d["candidate_id"], d["who"], d["note"]
        if action in ("continue", "stop"):
            yield Decided(round_, action, None, who, note)
            stopped = "analyst stopped" if action == "stop" else None
            break
        cand = pool.get(cid)
        if action == "discard" and cand is not None:
            cand.discarded = True
            decided.add(cand.id)
            yield Decided(round_, action, cand.id, who, note)
        elif action == "keep" and cand is not None:
            cand.discarded = False
            decided.add(cand.id)
            if cand.val is None:  # kept although the gate left it out: score it in full now
                yield score_on_val(ctx, cand)
            yield Decided(round_, action, cand.id, who, note)
        elif action in ("edit", "add"):
            parent = cand if action == "edit" else None
            template = PromptTemplate.from_text(d["text"] or "")
            if parent is not None:
                template = template.with_demos(parent.template.demos, parent.template.demo_format,
                                               parent.template.similar_k, parent.template.similar_by)
            known = pool.find(template)
            if known is not None:  # the same prompt is already a candidate: the analyst keeps that one
                known.discarded = False
                decided.add(known.id)
                if known.val is None:
                    yield score_on_val(ctx, known)
                yield Decided(round_, action, known.id, who, f"same prompt as candidate {known.id}. {note}".strip(),
                              parent.id if parent else None)
                continue
            new, step = pool.add(round_, template, "human", "human", parents=(parent.id,) if parent else ())
            yield step
            decided.add(new.id)
            yield score_on_val(ctx, new)
            yield Decided(round_, action, new.id, who, note, parent.id if parent else None)
        elif action == "rescore" and cand is not None:
            yield Decided(round_, action, cand.id, who, note, detail=d["detail"])
    for c in cands:
        if c.id not in decided:
            yield Decided(round_, "keep" if c.val is not None else "discard", c.id, "rule",
                          "scored in full on val" if c.val is not None else "left out by the gate or the budget")
    return stopped


def score_on_val(ctx: OptimizeContext, cand: Cand) -> CandidateScored:
    """Score a candidate the analyst chose on all of val, outside the search budget (the analyst spent those calls)."""
    return record_val_score(ctx, cand, ctx.score(cand.template, ctx.valset, budgeted=False), minibatch=cand.minibatch)
