"""The candidate pool every strategy shares: ids, the gate, the best so far, and the held-out finale.

A strategy adds candidates and asks the pool to score them; the pool yields the frozen steps that
record it. Chained strategies share one pool, so ids, rounds and the top-K continue across stages.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Generator, Iterator

import numpy as np

from promptlab.cost import broken, cost_of_calls
from promptlab.prompt import PromptTemplate, template_text
from promptlab.scoring import stats as S
from promptlab.text import number_or_none as _f  # short: every number a step records passes through it
from promptlab.optimize import prompts as P
from promptlab.optimize.confirmation import _ci, _val, decide, finalize
from promptlab.optimize.settings import setting
from promptlab.optimize.base import (
    BudgetExhausted, CandidateProposed, CandidateScored, Confirmed, Decided, OptimizeContext, ProposalMade,
    ReviewRequested, RoundFinished, RunFinished, RunStarted, Step, TestScored, WinnerChosen,
)


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


class Pool:
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
        self.seen.add(P.normalize_prompt(text))
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
        return max(ev, key=lambda c: (_val(c), -c.id)) if ev else None  # ties go to the earlier prompt

    def top(self, k: int) -> list[Cand]:
        return sorted(self.evaluated, key=lambda c: (_val(c), -c.id), reverse=True)[:k]

    def kth_best(self, k: int) -> float:
        top = self.top(k)
        return -np.inf if len(top) < k else _val(top[-1])

    # --- scoring -----------------------------------------------------------------------------------

    def score_start(self, ctx: OptimizeContext, templates, proposer: str = "baseline") -> Iterator[Step]:
        """Add and score in full the prompts a run starts from (baselines). Raises BudgetExhausted."""
        for template in templates:
            cand, step = self.add(0, template, proposer, proposer)
            yield step
            yield _record_val_score(ctx, cand, ctx.score(template, ctx.valset))

    def score(self, ctx: OptimizeContext, cand: Cand, gate: Gate) -> CandidateScored:
        """Minibatch first, full val if it could enter the top-K. A candidate the budget cannot finish is
        recorded as "over budget" (with its minibatch score when it got that far), never left half-done.
        With the race, a race of one (no halving)."""
        if gate.kind == "race":
            return list(self.race(ctx, [cand], gate, halving=False))[-1]
        minibatch = ctx.minibatch(gate.minibatch_size)
        n_val = len(ctx.valset)
        full = gate.kind == "off" or len(minibatch) >= n_val
        if not ctx.can_score(len(ctx.new_requests(cand.template, ctx.valset if full else minibatch))):
            return CandidateScored(cand.id, cand.round, None, None, None, 0, "over budget",
                                   target_requests=ctx.counters.target_requests)
        if full:
            res = ctx.score(cand.template, ctx.valset)
            if ctx.ceilings and _breaks_ceiling(ctx, cand, res):
                cand.minibatch = res.score
                return _over_ceiling(ctx, cand, n_val, 0)
            return _record_val_score(ctx, cand, res)
        mb = ctx.score(cand.template, minibatch)
        cand.minibatch = mb.score
        if ctx.ceilings and _breaks_ceiling(ctx, cand, mb):
            return _over_ceiling(ctx, cand, len(minibatch), n_val - len(minibatch))
        bar = self.kth_best(gate.top_k)
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
            return _record_val_score(ctx, cand, ctx.score(cand.template, ctx.valset), minibatch=mb.score)
        saved = n_val - len(minibatch)
        ctx.counters.calls_saved_by_gate += saved
        cand.n_scored = len(minibatch)
        return CandidateScored(cand.id, cand.round, _f(mb.score), None, None, 0, "gated", calls_saved=saved,
                               target_requests=ctx.counters.target_requests, n_scored=len(minibatch))

    def score_all(self, ctx: OptimizeContext, cands: list[Cand], gate: Gate) -> Iterator[Step]:
        """Score candidates in order; the first one over budget ends it (the rest stay unscored, as
        'proposed') and raises BudgetExhausted. With the race, the round's candidates race together."""
        if gate.kind == "race":
            over = False
            for step in self.race(ctx, cands, gate):  # every candidate's step, then the end of the budget
                yield step
                over = over or step.status == "over budget"
            if over:
                raise BudgetExhausted("target calls")
            return
        for cand in cands:
            step = self.score(ctx, cand, gate)
            yield step
            if step.status == "over budget":
                raise BudgetExhausted("target calls")

    def race(self, ctx: OptimizeContext, cands: list[Cand], gate: Gate, halving: bool = True) -> Iterator[CandidateScored]:
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
                    if _breaks_ceiling(ctx, c, last[c.id]):
                        ctx.counters.calls_saved_by_gate += len(order) - n
                        yield _over_ceiling(ctx, c, n, len(order) - n)
                alive = [c for c in alive if not c.over_ceiling]
                if not alive:
                    return
            if i == len(rungs) - 1:
                for c in alive:
                    c.val = c.minibatch
                    yield CandidateScored(c.id, c.round, _f(c.minibatch) if len(rungs) > 1 else None, _f(c.val),
                                          _ci(last[c.id]), n, "evaluated",
                                          target_requests=ctx.counters.target_requests, n_scored=n)
                return
            leader = self.best()
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


def take_proposals(ctx: OptimizeContext, pool: Pool, round_: int, spec, reply, meta: str, parents, n: int,
                   needs_input: bool, max_chars: int, make_template, rejected=(), angles=(), inputs=None
                   ) -> Generator[Step, None, tuple[list[Cand], int]]:
    """Parse a proposer's reply into at most n screened candidates (yielding each CandidateProposed),
    then a ProposalMade recording what was asked, kept, dropped (per reason) and repaired. Returns (the kept, how
    many were dropped for repeating a prompt already raced: evidence, like a raced one, that the search is done).
    `rejected`: texts of candidates that did worse; a proposal that repeats one nearly word for word is dropped.
    `angles`: the kinds of instruction the call asked for; a proposal that only restates one is dropped.
    `inputs`: the data's inputs (prompts.InputIndex); a proposal that contains one word for word is dropped."""
    allowed = {"input", "labels", *ctx.dataset.input_cols}
    texts, truncated = P.parse_proposals(reply.text if reply.ok else "")
    dropped: dict[str, int] = {"truncated": truncated} if truncated else {}
    repaired: dict[str, int] = {}
    kept: list[Cand] = []
    for raw_text in texts[: n * 2]:
        text, repairs = P.clean_proposal(raw_text, ctx.dataset.labels)
        for r in repairs:
            repaired[r] = repaired.get(r, 0) + 1
        why = P.screen(text, pool.seen, needs_input, allowed, max_chars)
        if why is None and rejected and P.near_duplicate(text, rejected):
            why = "repeats_rejected"
        if why is None and P.copies_angle(text, angles):
            why = "copied_angle"
        if why is None and P.copies_input(text, inputs):
            why = "copies_input"
        if why is None and len(kept) >= n:
            why = "over_n"
        if why:
            dropped[why] = dropped.get(why, 0) + 1
            continue
        cand, step = pool.add(round_, make_template(text), spec.label, spec.family, parents, meta, reply.text, text=text)
        kept.append(cand)
        yield step
    if not texts and reply.ok:
        dropped["no_tags"] = dropped.get("no_tags", 0) + 1
    yield ProposalMade(
        round=round_, proposer=spec.label, family=spec.family, meta_prompt=meta, raw_reply=reply.text,
        error=reply.error, accepted=tuple(c.id for c in kept), dropped=dropped, repaired=repaired, cached=reply.cached,
        asked=n,
    )
    return kept, dropped.get("duplicate", 0) + dropped.get("repeats_rejected", 0)


def finish_round(ctx: OptimizeContext, pool: Pool, round_: int, best: Cand, round_cands: list[Cand]
                 ) -> Generator[Step, None, tuple[bool, Cand]]:
    """Yield the round's RoundFinished; return (improved, the new best)."""
    scored = [c for c in round_cands if c.val is not None]
    winner = max(scored, key=lambda c: (_val(c), -c.id)) if scored else None
    new_best = pool.best()
    improved = _val(new_best) > _val(best)
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
            yield from self.pool.score_all(self.ctx, cands, gate)
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
                yield _score_on_val(ctx, cand)
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
                    yield _score_on_val(ctx, known)
                yield Decided(round_, action, known.id, who, f"same prompt as candidate {known.id}. {note}".strip(),
                              parent.id if parent else None)
                continue
            new, step = pool.add(round_, template, "human", "human", parents=(parent.id,) if parent else ())
            yield step
            decided.add(new.id)
            yield _score_on_val(ctx, new)
            yield Decided(round_, action, new.id, who, note, parent.id if parent else None)
        elif action == "rescore" and cand is not None:
            yield Decided(round_, action, cand.id, who, note, detail=d["detail"])
    for c in cands:
        if c.id not in decided:
            yield Decided(round_, "keep" if c.val is not None else "discard", c.id, "rule",
                          "scored in full on val" if c.val is not None else "left out by the gate or the budget")
    return stopped


def _score_on_val(ctx: OptimizeContext, cand: Cand) -> CandidateScored:
    """Score a candidate the analyst chose on all of val, outside the search budget (the analyst spent those calls)."""
    return _record_val_score(ctx, cand, ctx.score(cand.template, ctx.valset, budgeted=False), minibatch=cand.minibatch)


def _record_val_score(ctx: OptimizeContext, cand: Cand, res, minibatch: float | None = None) -> CandidateScored:
    """Record a candidate's score on all of val and the step that says so."""
    cand.val, cand.rows, cand.n_scored = res.score, res.rows, res.n
    return CandidateScored(cand.id, cand.round, _f(minibatch), _f(res.score), _ci(res), res.n, "evaluated",
                           target_requests=ctx.counters.target_requests, n_scored=res.n)


GATES = ("race", "ci", "mean", "off")


@dataclass(frozen=True, kw_only=True)
class ProposerSettings:
    """The settings of every strategy whose proposers write candidates (the arena's proposers, the gradient's
    editor), declared once."""

    # Several per call: one call that writes four costs little more than one that writes two (the meta-prompt is
    # most of the tokens), and a small proposer's usable share is low, so more per call means more to race.
    candidates: int = setting(4, "candidates each proposer (the gradient's editor) writes per round, in one call",
                              type="int", low=1, high=8, label="Candidates per proposer")
    # Where the data is not in English, proposers are told its language and asked to write in it ("data")
    # or in English ("english"). Which helps is being measured on the parallel multiemo_medicine_en/_ru pair
    # (benchmarks/auto_bench.py --language-check); English stays the default until it says otherwise.
    language: str = setting("english", "where the data is not in English: proposers write instructions in English or "
                            "in the data's language (off: say nothing about it)", type="choice",
                            choices=("english", "data", "off"), label="Proposers write in")


@dataclass(frozen=True, kw_only=True)
class PoolStrategy:
    """What every strategy over a pool shares: how candidates are raced, how the result is confirmed,
    how many prompts are scored on test, its starting prompts (the baselines), and the run frame.
    Subclasses are frozen dataclasses with `baselines`; these fields are keyword-only so a subclass may
    add fields without defaults."""

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
    test_top: int = setting(3, "prompts scored on test at the end, besides the baselines and the result", type="int",
                            low=0, label="Prompts scored on test")
    # The decision's design, chosen by benchmarks/confirm_bench.py for the mean true held-out gain of what ships, with a
    # truly worse prompt (by the harm margin, 0.02) shipping in at most 5% of searches (section "confirmation" of
    # RESULTS.md; 20 candidates a search, start accuracy 0.5, figures at 15% / 30% of answers changed): holding back
    # 0.5 of val and testing one finalist with the harm test ships in 73% / 42% of searches a candidate that is truly
    # +0.10, a mean true gain of +0.073 / +0.042 per search, where the sign test of "not better" at 0.6 held back (the
    # design before) shipped 57% / 29% and +0.057 / +0.029, on the 140 val examples of a 400-row file; on DSPy's
    # 100-example val: 56% / 28% against 37% / 19%. Its worst harm rate over the scenarios: 0.043 (the exact level of one
    # test: at most 0.0498). A second finalist changed the mean gain by less than 0.001; holding back 0.3 or 0.4 lost gain.
    # With a second look as large as the first (second_look): 84% / 55%, +0.084 / +0.055 (69% / 38% at val 100), its
    # worst simulated harm 0.033 (exact: at most 0.0403).
    confirm: float = setting(0.5, "share of val held back from the search to confirm the finalists (0: pick the best "
                             "search score, as runs before confirmation did)", type="float", low=0.0, high=0.8,
                             label="Val held back to confirm")
    confidence: float = setting(0.95, "a candidate replaces the baseline only when it scores higher on the held-back "
                                "examples and a paired test at this level shows it is not worse by the harm margin",
                                type="float", low=0.5, high=0.999, label="Confidence to replace the baseline")
    harm_margin: float = setting(0.02, "a candidate truly worse than the baseline by this much or more is what the "
                                 "decision guards against (it ships in at most 1 - confidence of searches); one worse "
                                 "by less is no harm", type="float", low=0.0, high=0.2, label="Harm margin")
    simplify_margin: float = setting(0.05, "a simpler, cheaper variant of the result ships when a paired test shows it "
                                     "no worse than the result by this much or more (with --prefer simple)",
                                     type="float", low=0.0, high=0.2, label="Simplification margin")
    finalists: int = setting(1, "best candidates by search score that are confirmed on the held-back examples",
                             type="int", low=1, high=10, label="Finalists")
    patience: int | None = None  # rounds without progress before this strategy's search ends (a stage's own)
    # Whether a contender (a candidate the race could not tell from the leader) counts as progress for patience
    # (see Rounds). Runs stored before it existed (config version < 3) counted only a new leader.
    evidence: bool = True
    # Whether each of a proposer call's n prompts is asked to be a different kind of instruction (see
    # prompts.ANGLES); runs stored before it (config version < 3) asked for n alike.
    angles: bool = True
    # Config version 4 (issue 31), each False for runs stored before, which replay as they ran:
    # a proposing round starts only when the budget can race what it asks for to its first rung, and patience counts
    # raced proposals as well as rounds (Rounds.raced_per_round);
    raced_patience: bool = True
    # a proposal that contains a train or val input word for word is dropped (prompts.copies_input);
    copy_screen: bool = True
    # no example judges itself: demos only from train rows whose input is not a val or test input, failures probed only
    # on rows that are not the prompt's own demos (OptimizeContext.demos_apart).
    demos_apart: bool = True
    # the decision also reads the train rows no search step read or showed (confirmation.decision_set);
    decide_on_unseen: bool = True
    # a second look: when the first test fails and the budget the simplification held back can pay for more unseen
    # train rows, the finalists are tested again on all the examples, each look at half the level (Bonferroni: the
    # harm bound holds over both). Decided before the first look from the rows and budget left, never from its answers.
    second_look: bool = True
    # the result's parts (its instruction alone, the start's instruction with its demos) are scored on test with it.
    test_parts: bool = True
    # variants of the result the budget holds back room for, to simplify it after the decision (prefer "simple").
    simplify_reserve: int = 2

    @property
    def gate_config(self) -> Gate:
        return Gate(self.gate, self.gate_level, self.top_k, self.minibatch_size)

    @property
    def decision(self) -> "PoolStrategy":
        """Whose settings the decision at the end reads (confirmation.decide): its own."""
        return self

    def starts(self, ctx: OptimizeContext) -> list[PromptTemplate]:
        return list(self.baselines)

    def run(self, ctx: OptimizeContext) -> Iterator[Step]:
        return run_strategy(self, ctx)

    def confirm_reserve(self, n_confirm: int, prefer: str = "score") -> int:
        """Target requests the decision holds back from the search: the baseline and each finalist on the held-back
        examples; with prefer "simple", room for `simplify_reserve` variants too (one more with "cheap", as runs stored
        before the simplification did)."""
        if not n_confirm:
            return 0
        extra = {"simple": self.simplify_reserve, "cheap": 1}.get(prefer, 0)
        return (1 + self.finalists + extra) * n_confirm

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


def run_strategy(strategy, ctx: OptimizeContext, pool: Pool | None = None) -> Iterator[Step]:
    """The frame every strategy runs in: start, score the starting prompts, search, confirm, test, finish.

    A strategy supplies `name`, `starts(ctx)`, `search(ctx, pool)` (a generator returning
    (reason, rounds)), `projection(...)`, `gate_config`, `test_top`, and the decision's settings
    (`confirm_reserve`, `finalists`, `confidence`, `harm_margin`, `simplify_margin`, `simplify_reserve`,
    `decide_on_unseen`, `test_parts`: see confirmation.py).
    """
    pool = pool or Pool()
    yield RunStarted(
        strategy=strategy.name, n_train=len(ctx.trainset), n_val=len(ctx.valset), n_test=len(ctx.testset),
        n_minibatch=len(ctx.minibatch(strategy.gate_config.minibatch_size)),
        projection=strategy.projection(len(ctx.trainset), len(ctx.valset), len(ctx.testset), ctx.budget.max_rounds),
    )
    reason, rounds = "rounds", 0
    confirming = len(ctx.confirmset) > 0
    ctx.reserved = strategy.confirm_reserve(len(ctx.confirmset), ctx.prefer) if confirming else 0
    try:
        yield from pool.score_start(ctx, strategy.starts(ctx))  # baselines: always scored, within the budget
    except BudgetExhausted:
        reason = "budget"
    if not pool.evaluated:
        yield RunFinished(reason="budget", best_id=pool.cands[0].id if pool.cands else 0, best_val=float("nan"), rounds=0)
        return
    if reason != "budget":
        reason, rounds = yield from strategy.search(ctx, pool)
    winner = (yield from decide(ctx, pool, strategy.decision)) if confirming else None
    yield from finalize(ctx, pool, strategy.test_top, winner, strategy.decision.test_parts)
    best = winner or pool.best()
    yield RunFinished(reason=reason, best_id=best.id, best_val=best.val, rounds=rounds)


def _breaks_ceiling(ctx: OptimizeContext, cand: Cand, res) -> bool:
    """Whether the candidate's cost per call, measured from the calls that just scored it, breaks a ceiling;
    records which on the candidate. Read from the stored calls, so a resumed run decides the same."""
    cand.over_ceiling = "; ".join(broken(cost_of_calls(ctx.store, res.rows["call_key"]), ctx.ceilings))
    return bool(cand.over_ceiling)


def _over_ceiling(ctx: OptimizeContext, cand: Cand, n_scored: int, saved: int) -> CandidateScored:
    """The step of a candidate dropped for its cost, at its score on the `n_scored` examples it was read on."""
    cand.n_scored = n_scored
    return CandidateScored(cand.id, cand.round, _f(cand.minibatch), None, None, 0, "over ceiling", calls_saved=saved,
                           target_requests=ctx.counters.target_requests, n_scored=n_scored)


__all__ = ["BudgetExhausted", "Cand", "Gate", "Pool"]
