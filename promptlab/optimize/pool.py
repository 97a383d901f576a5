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

    def confirm(self, ctx: OptimizeContext, finalists: int, level: float) -> Generator[Step, None, Cand]:
        """Score the finalists (the best few by search score that beat the baseline there) and the baseline on
        the held-back part of val, and choose the result: the finalists are tested against the baseline in
        their search order with a one-sided paired test (a fixed sequence: each at `level`, stopping at the
        first that fails, so the chance of shipping a candidate that is not better stays under 1 - level),
        and of those that pass the best confirmation score wins. If none passes, the result is the baseline."""
        reference, chosen = self._reference_and_finalists(finalists)
        ctx.reserved = 0
        n_conf = len(ctx.confirmset)
        if not chosen:
            yield _baseline_kept(reference, level, "No candidate scored above the baseline in the search, so the "
                                                   "result is the baseline.")
            return reference
        results = yield from _score_on_confirmset(ctx, [reference, *chosen])
        unpaid = _unpaid_confirmation(reference, chosen[0], results)
        if unpaid:
            yield _baseline_kept(reference, level, unpaid)
            return reference
        passed, first = _fixed_sequence(ctx, reference, chosen, results, level)
        winner, cmp, reading = _confirmation_verdict(reference, passed, first, n_conf, level)
        if passed and ctx.prefer == "cheap":
            cheap = yield from self._cheapest_within_noise(ctx, reference, winner, results, level)
            if cheap is not None:
                winner, cmp, note = cheap
                reading = (reading.removesuffix(", so it replaces the baseline.")
                           + f". {note}, so candidate #{winner.id}, the cheaper, replaces the baseline.")
        if winner is reference:
            reading += _baseline_over_ceiling(ctx, reference)
        shown = winner if winner is not reference else first[0]
        yield WinnerChosen(winner.id, reference.id, winner is not reference, _f(cmp.diff), (_f(cmp.ci_low), _f(cmp.ci_high)),
                           cmp.p_value, level, n_conf, _f(shown.val), _f(shown.confirm), reading)
        return winner

    def _reference_and_finalists(self, finalists: int) -> tuple[Cand, list[Cand]]:
        """(the best baseline by search score (the first evaluated candidate when there is none), the best
        `finalists` other candidates whose search score beats it, best first)."""
        starts = [c for c in self.evaluated if c.round == 0 and c.proposer == "baseline"] or self.evaluated[:1]
        reference = max(starts, key=lambda c: (_val(c), -c.id))
        chosen = [c for c in self.top(len(self.cands)) if c.proposer != "baseline" and _val(c) > _val(reference)]
        return reference, chosen[:finalists]

    def _cheapest_within_noise(self, ctx: OptimizeContext, reference: Cand, best: Cand, results: dict, level: float):
        """With prefer "cheap": the candidate with the fewest prompt tokens per call among those the search could
        not tell from the confirmed best (paired, on the search examples), if it also beats the baseline on the
        held-back examples and they cannot tell it from the best either. Returns (cand, its comparison with the
        baseline, a sentence saying how it was decided) or None (the best stays the result)."""
        measured: dict[int, float] = {}

        def tokens(c: Cand) -> float:  # read from the stored calls once per candidate
            if c.id not in measured:
                t = cost_of_calls(ctx.store, c.rows["call_key"]).prompt_tokens if c.rows is not None else None
                measured[c.id] = np.inf if t is None else t
            return measured[c.id]

        best_tokens = tokens(best)
        rivals = []
        for c in self.evaluated:
            if c is best or c.proposer == "baseline" or c.rows is None or _val(c) <= _val(reference):
                continue
            if len(c.rows) != len(best.rows) or S.compare(ctx.metric, c.rows, best.rows, level, seed=ctx.seed).significant:
                continue  # not read on the same examples, or the search already told the best apart from it
            if tokens(c) < best_tokens:
                rivals.append(c)
        if not rivals:
            return None
        cheap = min(rivals, key=lambda c: (tokens(c), -_val(c), c.id))
        try:
            res = results.get(cheap.id) or ctx.score(cheap.template, ctx.confirmset)
        except BudgetExhausted:
            return None
        if cheap.id not in results:
            results[cheap.id] = res
            cheap.confirm = res.score
            lo, hi = res.ci
            yield Confirmed(cheap.id, _f(res.score), (_f(lo), _f(hi)), res.n, _f(cheap.val))
        vs_base = S.compare(ctx.metric, results[reference.id].rows, res.rows, level, seed=ctx.seed)
        vs_best = S.compare(ctx.metric, res.rows, results[best.id].rows, level, seed=ctx.seed)
        if not vs_base.significant or vs_best.significant:
            return None
        note = (f"Candidate #{cheap.id} costs {tokens(cheap):.0f} prompt tokens per call against #{best.id}'s "
                f"{best_tokens:.0f}, and the held-back examples cannot tell it from #{best.id} ({vs_best.diff:+.3f} "
                f"for #{best.id}, {level:.0%} CI [{vs_best.ci_low:+.3f}, {vs_best.ci_high:+.3f}]) while it beats the "
                f"baseline by {vs_base.diff:+.3f}")
        return cheap, vs_base, note

    def finalize(self, ctx: OptimizeContext, test_top: int, winner: Cand | None = None) -> Iterator[Step]:
        """Held-out test: the result and the top few by val, plus every baseline. Outside the search budget."""
        best = winner or self.best()
        finalists = {c.id: c for c in self.top(test_top)}
        finalists.update({c.id: c for c in self.evaluated if c.proposer == "baseline"})
        if best is not None:
            finalists[best.id] = best
        for cand in sorted(finalists.values(), key=lambda c: c.id):
            res = ctx.score(cand.template, ctx.testset, budgeted=False)
            yield TestScored(cand.id, _f(res.score), _ci(res), res.n)


def take_proposals(ctx: OptimizeContext, pool: Pool, round_: int, spec, reply, meta: str, parents, n: int,
                   needs_input: bool, max_chars: int, make_template, rejected=(), angles=()
                   ) -> Generator[Step, None, list[Cand]]:
    """Parse a proposer's reply into at most n screened candidates (yielding each CandidateProposed),
    then a ProposalMade recording what was kept, dropped (per reason) and repaired. Returns the kept.
    `rejected`: texts of candidates that did worse; a proposal that repeats one nearly word for word is dropped.
    `angles`: the kinds of instruction the call asked for; a proposal that only restates one is dropped."""
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
    )
    return kept


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
    are all dropped as clearly worse, or that writes nothing usable, has shown it is done."""

    def __init__(self, ctx: OptimizeContext, pool: Pool, patience: int | None = None, evidence: bool = False):
        self.ctx, self.pool = ctx, pool
        self.patience = patience or ctx.budget.patience  # a stage's own patience, else the run's
        self.evidence = evidence
        self.best = pool.best()
        self.since_improved = 0
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

    def end(self, round_: int, cands: list[Cand], reason: str | None = None) -> Generator[Step, None, str | None]:
        """Decide the round (the analyst in a semi-automatic run, else the rule), yield the RoundFinished;
        return why the search must stop now (reason, the analyst, or patience), else None."""
        stopped = None
        if self.ctx.review != "unrecorded":
            stopped = yield from review_round(self.ctx, self.pool, round_, cands)
        improved, self.best = yield from finish_round(self.ctx, self.pool, round_, self.best, cands)
        contender = self.evidence and any(c.val is not None and not c.discarded for c in cands)
        self.since_improved = 0 if improved or contender else self.since_improved + 1
        self.done += 1
        if reason or stopped:
            return reason or stopped
        patience = self.patience
        if patience and self.since_improved >= patience:
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
    # The confirmation's design, chosen from benchmarks/confirm_bench.py (section "confirmation" of RESULTS.md): on
    # the 140 val examples of a 400-row file, holding back 0.6 (84) and testing one finalist with the exact
    # one-sided sign test at 0.95 ships a candidate that is not truly better in at most 3.0% of searches (the
    # least favourable case: every candidate exactly as good as the baseline), and ships a true +0.10 gain in
    # 60% of searches when 15% of answers change (28% when 30% change); holding back 0.5 with two finalists, the
    # design before, gave 53% and 26%. More finalists add no power (in a fixed sequence the second is tested only
    # after the first passed) and cost their held-back calls; Bonferroni over them was worse, and the mid-p test
    # (4.5% to 5.5% in the least favourable case, depending on the replicates) too near the 5% bar. A +0.10 gain is
    # confirmed at best about half the time at this size: the data's limit, not the test's.
    confirm: float = setting(0.6, "share of val held back from the search to confirm the finalists (0: pick the best "
                             "search score, as runs before confirmation did)", type="float", low=0.0, high=0.8,
                             label="Val held back to confirm")
    confidence: float = setting(0.95, "a candidate replaces the baseline only when it beats it on the held-back val "
                                "examples by a paired test at this level", type="float", low=0.5, high=0.999,
                                label="Confidence to replace the baseline")
    finalists: int = setting(1, "best candidates by search score that are confirmed on the held-back examples",
                             type="int", low=1, high=10, label="Finalists")
    patience: int | None = None  # rounds without progress before this strategy's search ends (a stage's own)
    # Whether a contender (a candidate the race could not tell from the leader) counts as progress for patience
    # (see Rounds). Runs stored before it existed (config version < 3) counted only a new leader.
    evidence: bool = True
    # Whether each of a proposer call's n prompts is asked to be a different kind of instruction (see
    # prompts.ANGLES); runs stored before it (config version < 3) asked for n alike.
    angles: bool = True

    @property
    def gate_config(self) -> Gate:
        return Gate(self.gate, self.gate_level, self.top_k, self.minibatch_size)

    def starts(self, ctx: OptimizeContext) -> list[PromptTemplate]:
        return list(self.baselines)

    def run(self, ctx: OptimizeContext) -> Iterator[Step]:
        return run_strategy(self, ctx)

    def confirm_reserve(self, n_confirm: int) -> int:
        """Target requests the confirmation needs at most: the baseline and each finalist on the held-back examples."""
        return (1 + self.finalists) * n_confirm if n_confirm else 0

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
    (reason, rounds)), `projection(...)`, `gate_config`, `test_top`, and the confirmation settings
    (`confirm_reserve`, `finalists`, `confidence`).
    """
    pool = pool or Pool()
    yield RunStarted(
        strategy=strategy.name, n_train=len(ctx.trainset), n_val=len(ctx.valset), n_test=len(ctx.testset),
        n_minibatch=len(ctx.minibatch(strategy.gate_config.minibatch_size)),
        projection=strategy.projection(len(ctx.trainset), len(ctx.valset), len(ctx.testset), ctx.budget.max_rounds),
    )
    reason, rounds = "rounds", 0
    confirming = len(ctx.confirmset) > 0
    # with prefer "cheap", one more candidate may be scored on the held-back examples: the cheapest contender
    ctx.reserved = (strategy.confirm_reserve(len(ctx.confirmset)) + (len(ctx.confirmset) if ctx.prefer == "cheap" else 0)
                    if confirming else 0)
    try:
        yield from pool.score_start(ctx, strategy.starts(ctx))  # baselines: always scored, within the budget
    except BudgetExhausted:
        reason = "budget"
    if not pool.evaluated:
        yield RunFinished(reason="budget", best_id=pool.cands[0].id if pool.cands else 0, best_val=float("nan"), rounds=0)
        return
    if reason != "budget":
        reason, rounds = yield from strategy.search(ctx, pool)
    winner = (yield from pool.confirm(ctx, strategy.finalists, strategy.confidence)) if confirming else None
    yield from pool.finalize(ctx, strategy.test_top, winner)
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


def _baseline_kept(reference: Cand, level: float, reading: str) -> WinnerChosen:
    """The step saying the baseline stays the result before any finalist was compared with it."""
    return WinnerChosen(reference.id, reference.id, False, None, None, None, level, 0, _f(reference.val), None, reading)


def _unpaid_confirmation(reference: Cand, first: Cand, results: dict) -> str | None:
    """Why the baseline stays the result when the budget ran out before the first finalist could be compared with
    it (the baseline, or the first finalist, was not scored on the held-back examples), else None."""
    if reference.id not in results:
        return "The budget left nothing to confirm a candidate with, so the result is the baseline."
    if first.id not in results:
        return (f"The budget paid for confirming the baseline but could not pay for confirming finalist #{first.id} "
                "on the held-back examples, so the result is the baseline.")
    return None


def _score_on_confirmset(ctx: OptimizeContext, cands: list[Cand]) -> Generator[Confirmed, None, dict]:
    """Score the candidates in order on the held-back examples, each recording its confirmation score, until the
    budget runs out. Returns {candidate id: its EvalResult} for those scored."""
    results = {}
    for c in cands:
        try:
            res = ctx.score(c.template, ctx.confirmset)
        except BudgetExhausted:
            break
        results[c.id] = res
        c.confirm = res.score
        lo, hi = res.ci
        yield Confirmed(c.id, _f(res.score), (_f(lo), _f(hi)), res.n, _f(c.val))
    return results


def _fixed_sequence(ctx: OptimizeContext, reference: Cand, chosen: list[Cand], results: dict, level: float):
    """The finalists' one-sided paired tests against the reference on the held-back examples, in order, stopping
    at the first that fails (or was not scored). Returns (the (cand, comparison) pairs that passed, the first
    finalist's pair, or None when it was not scored)."""
    passed, first = [], None
    for c in chosen:
        if c.id not in results:
            break
        cmp = S.compare(ctx.metric, results[reference.id].rows, results[c.id].rows, level, seed=ctx.seed)
        first = first or (c, cmp)
        if not cmp.significant:
            break
        passed.append((c, cmp))
    return passed, first


def _confirmation_verdict(reference: Cand, passed: list, first: tuple, n_conf: int, level: float):
    """(the winner, its comparison with the reference, the sentence saying why): of the finalists that passed, the
    best on the held-back examples; when none did, the reference, read against the first finalist's test."""
    pct = f"{level:.0%}"
    if passed:  # of those better beyond noise, the best on the held-back examples
        winner, cmp = max(passed, key=lambda cc: (_f(cc[0].confirm) or -np.inf, -cc[0].id))
        return winner, cmp, (f"Candidate #{winner.id} beats the baseline on the {n_conf} held-back val examples by "
                             f"{cmp.diff:+.3f} ({pct} CI [{cmp.ci_low:+.3f}, {cmp.ci_high:+.3f}]" + _p_text(cmp)
                             + "), so it replaces the baseline.")
    best, cmp = first
    return reference, cmp, (f"No candidate beat the baseline beyond noise on the {n_conf} held-back val examples (the "
                            f"first finalist, #{best.id}, by {cmp.diff:+.3f}, {pct} CI [{cmp.ci_low:+.3f}, "
                            f"{cmp.ci_high:+.3f}]" + _p_text(cmp) + f", not below {1 - level:.2g}), "
                            "so the result is the baseline.")


def _p_text(cmp) -> str:
    """', one-sided p = …' for a comparison with a p-value, else nothing."""
    return f", one-sided p = {cmp.p_value:.3g}" if cmp.p_value is not None else ""


def _baseline_over_ceiling(ctx: OptimizeContext, reference: Cand) -> str:
    """A sentence to add when the baseline that stays the result itself breaks the cost ceilings, else nothing."""
    if not ctx.ceilings or reference.rows is None:
        return ""
    over = broken(cost_of_calls(ctx.store, reference.rows["call_key"]), ctx.ceilings)
    return f" The baseline itself breaks the cost ceiling ({'; '.join(over)}): no candidate within it beat it." if over else ""


def _val(c: Cand) -> float:
    return -np.inf if c.val is None or c.val != c.val else c.val


def _ci(res) -> tuple[float, float]:
    lo, hi = res.ci
    return (_f(lo), _f(hi))


__all__ = ["BudgetExhausted", "Cand", "Gate", "Pool"]
