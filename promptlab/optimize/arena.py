"""The arena: an OPRO-style loop in which proposer models, k drawn at random per round, write new prompts.

Each round: the meta-prompt (meta_prompt.py) shows the task, the metric in words, the labels, a few train examples,
the current best prompt's mistakes on train examples it does not carry as demos, the top-K prompts with their val
scores (best last), the candidates that did worse, and for each of the n prompts asked an angle to take. Each drawn
proposer writes n candidates in one call; the usable ones (proposals.py) race over val (racing.py), and the round
ends as rounds.py decides. Selection reads the search's part of val only: what ships is decided on examples no
search step saw, and scored on test, which no proposer ever sees (confirmation.py).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Generator, ClassVar

import numpy as np
import pandas as pd

from promptlab.split import stratified_sample
from promptlab.prompt import DEMO_FORMATS, PromptTemplate
from promptlab.models import ModelSpec
from promptlab.optimize import ceiling, meta_prompt as P
from promptlab.optimize.demos import stratified_demos
from promptlab.optimize.base import BudgetExhausted, OptimizeContext, RoundStarted, Step
from promptlab.optimize.pool import Cand, Pool
from promptlab.optimize.proposals import ProposerSettings, inputs_of, take_proposals
from promptlab.optimize.rounds import Rounds
from promptlab.optimize.settings import setting
from promptlab.optimize.strategy import PoolStrategy


@dataclass(frozen=True)
class Arena(ProposerSettings, PoolStrategy):
    """Hyper-parameters of the arena; data, models and budget arrive through `run(ctx)`."""

    proposers: tuple[ModelSpec, ...]
    baselines: tuple[PromptTemplate, ...]
    arena: int | None = setting(2, "proposers drawn per round (0: all of them)", type="int", low=0,
                                none="all of them", label="Arena: proposers per round (0 = all)")
    temperature: float = setting(1.0, "proposer temperature", type="float", low=0.0, high=2.0, label="Proposer temperature")
    show_rejected: int = setting(6, "candidates that did worse shown to proposers, briefly with their scores, so they "
                                 "are not written again (0: none)", type="int", low=0, high=20,
                                 label="Rejected candidates shown")
    proposer_max_tokens: int = 500  # at least; 200 more per candidate asked for beyond two (see reply_tokens)
    n_examples: int = 3  # train examples shown
    n_mistakes: int = 3  # mistakes of the best shown (from a train sample)
    mistake_sample: int = 16
    show_confusion: bool = False
    meta_prompt: str = P.DEFAULT_META_PROMPT
    max_prompt_chars: int = 2500
    # Demonstrations attached to every proposed instruction: "none", "per-label" (one train example per
    # label, drawn with the run's seed) or a number k (stratified round-robin). With demos on, each
    # baseline is also scored with them, so the leaderboard separates what the demos did from what the
    # rewriting did. Small targets move far more with an example per label than with rewording.
    demos: str | int = setting("none", "train demonstrations attached to every instruction: none, per-label (one example "
                               "per label) or a number K (stratified)", type="demos", label="Demos attached to every instruction")
    demo_format: str = setting("chat", "demos as chat turns or inline in the instruction", type="choice",
                               choices=("chat", "inline"), label="Demo format")
    # auto's "instructions for the demos" stage: every instruction written in a round is scored with the demos of
    # the leader at that moment (how it would ship), and the proposers are told so.
    leader_demos: bool = False
    name: str = "arena"
    needs_proposers: ClassVar[bool] = True

    def demo_set(self, ctx: OptimizeContext):
        if self.demos in (None, "none", 0, "0"):
            return ()
        k = None if self.demos == "per-label" else int(self.demos)
        return stratified_demos(ctx.demo_rows, ctx.dataset, k, np.random.default_rng([ctx.seed, 2]))

    def ready(self, pool: Pool) -> bool:
        """Writing for the leader's demos needs a leader with demos (auto's instructions for the demos)."""
        return not self.leader_demos or bool(pool.best().template.demos)

    @property
    def fixed_format(self) -> str:
        """The rendering of the arena's fixed demos ("search" belongs to the few-shot stage of a chain)."""
        return self.demo_format if self.demo_format in DEMO_FORMATS else "chat"

    def rejected(self, pool: Pool) -> list[Cand]:
        """Candidates that did worse than those shown (stopped by the race or the gate, below the top-K, or
        discarded by the analyst), latest first, at most show_rejected: proposers are told not to repeat them."""
        if not self.show_rejected:
            return []
        shown = {c.text for c in _distinct_texts(pool.top(len(pool.cands)))[: self.top_k]}
        out, seen = [], set(shown)
        for c in reversed(pool.cands):
            score = c.val if c.val is not None else c.minibatch
            if c.proposer == "baseline" or c.text in seen or score is None or score != score:
                continue
            seen.add(c.text)
            out.append(c)
            if len(out) == self.show_rejected:
                break
        return out

    def _rejected_texts(self, pool: Pool) -> list[str]:
        return [c.text for c in self.rejected(pool)]

    def draw(self, rng: np.random.Generator, appearances: list[int]) -> list[int]:
        """k proposers for this round, at random among those that have played least so far.

        A plain uniform draw can leave a proposer out for several rounds running (1 in 27 over three
        rounds with 2 of 3), which would starve its attribution; balancing keeps every matchup random
        while each proposer plays about equally often.
        """
        n = len(self.proposers)
        k = n if not self.arena or self.arena >= n else self.arena
        order = rng.permutation(n)
        picked = sorted(order, key=lambda i: appearances[i])[:k]  # stable: ties keep the random order
        for i in picked:
            appearances[i] += 1
        return sorted(int(i) for i in picked)

    def projection(self, n_train: int, n_val: int, n_test: int, rounds: int) -> dict:
        """Target and proposer calls the run will request: {min, expected, max} (before the cache)."""
        k = len(self.proposers) if not self.arena else min(self.arena, len(self.proposers))
        cands = k * self.candidates
        mistakes = min(self.mistake_sample, n_train) if self.n_mistakes else 0
        n_starts = len(self.baselines) * (1 if self.demos in (None, "none", 0, "0") else 2)
        base = n_starts * n_val
        # Pairs the run asks for (the budget's unit). The mistake probe re-scores the current best on the
        # same train sample, so it only costs calls in rounds where the best changed.
        race = self.race_projection(n_val, cands)
        per_round = {"min": race["min"], "expected": mistakes / 2 + race["expected"], "max": mistakes + race["max"]}
        test = (n_starts + self.test_top) * n_test
        return {
            "baseline_calls": base,
            "target_search": {key: int(base + rounds * v) for key, v in per_round.items()},
            "target_test": test,
            "proposer_calls": rounds * k,
            "per_round_candidates": cands,
            "candidates": rounds * cands,
        }

    # --- the loop ----------------------------------------------------------------------------------

    def starts(self, ctx: OptimizeContext) -> list[PromptTemplate]:
        """The prompts a run starts from: the baselines, and with demos on, the baselines with them."""
        demos = self.demo_set(ctx)
        out = list(self.baselines)
        if demos:
            out += [b.with_demos(demos, self.fixed_format) for b in self.baselines if not b.demos]
        return out

    def search(self, ctx: OptimizeContext, pool: Pool) -> Generator[Step, None, tuple[str, int]]:
        """The arena's rounds over a pool that already holds scored prompts. Returns (reason, rounds)."""
        rng = np.random.default_rng(ctx.seed)
        draw_rng = np.random.default_rng([ctx.seed, 1])  # its own stream: draws don't depend on data sizes
        angle_rng = np.random.default_rng([ctx.seed, 5])  # its own stream too, so runs without angles replay
        appearances = [0] * len(self.proposers)
        needs_input = any(b.user.strip() != "{input}" for b in self.baselines)  # the text sits inside the prompt
        lo, hi = ctx.metric.range
        fixed = self.demo_set(ctx)
        inputs = inputs_of(ctx) if self.copy_screen else None
        rounds = Rounds(ctx, pool, self.patience, self.evidence, self.candidates if self.raced_patience else 0)
        for round_ in rounds:
            if not ctx.can_propose():
                return "proposer budget", rounds.done
            with_demos = _demos_of(rounds.best.template) if self.leader_demos else (fixed, self.fixed_format, 0, "tfidf")
            mistake_pool = self._mistake_pool(ctx, rounds.best, with_demos)
            short = self._cannot_race(ctx, rounds.best, mistake_pool) if self.raced_patience else None
            if short:
                return short, rounds.done
            drawn = [self.proposers[i] for i in self.draw(draw_rng, appearances)]
            yield RoundStarted(round_, tuple(p.label for p in drawn))
            try:
                angles = P.draw_angles(self.candidates, ctx.dataset.kind, angle_rng) if self.angles else ()
                parts = self.meta_parts(ctx, rng, rounds.best, pool, mistake_pool, needs_input, lo, hi, with_demos,
                                        angles)
                meta = P.build_meta_prompt(self.meta_prompt, parts)
            except BudgetExhausted:
                return "budget", rounds.done
            round_cands: list[Cand] = []
            repeats = 0
            parents = tuple(c.id for c in pool.top(self.top_k))
            reason = None
            for slot, spec in enumerate(drawn):
                if not ctx.can_propose():
                    reason = "proposer budget"
                    break
                params = {"temperature": self.temperature, "max_tokens": self.reply_tokens}
                if spec.is_local:
                    params["seed"] = int(rng.integers(0, 2**31 - 1))  # reproducible sampling on llama.cpp
                reply = ctx.propose(spec, meta, params, sample=f"r{round_}/s{slot}/{spec.model}")
                kept, repeated = yield from take_proposals(
                    ctx, pool, round_, spec, reply, meta, parents, self.candidates, needs_input,
                    self.max_prompt_chars,
                    lambda text: PromptTemplate.from_text(text).with_demos(*with_demos),
                    rejected=self._rejected_texts(pool), angles=angles, inputs=inputs, parts=P.parts_record(parts),
                )
                round_cands += kept
                repeats += repeated
            reason = (yield from rounds.score(round_cands, self.gate_config)) or reason
            stop = yield from rounds.end(round_, round_cands, reason, repeats)
            if stop:
                return stop, rounds.done
        return "rounds", rounds.done

    def _mistake_pool(self, ctx: OptimizeContext, best: Cand, with_demos: tuple) -> pd.DataFrame:
        """Train rows the best prompt's mistakes are read from: none of its own demos, nor of the demos the round's
        instructions will ship with (a demo's own example shows up as an easy "success")."""
        if ctx.demos_apart:
            return ctx.probe_rows(best.template, PromptTemplate().with_demos(*with_demos))
        demos = with_demos[0]
        return ctx.trainset[~ctx.trainset["idx"].isin([d.idx for d in demos])] if demos else ctx.trainset

    def _cannot_race(self, ctx: OptimizeContext, best: Cand, mistake_pool: pd.DataFrame) -> str | None:
        """Why a round must not start: the budget left cannot race every proposal it would ask for to the race's first
        rung (with the mistake probe before it), so its proposals would be written and never scored. "budget" when the
        run's budget is short, "share spent" when the stage's share is; None when the round fits."""
        k = len(self.proposers) if not self.arena else min(self.arena, len(self.proposers))
        need = k * self.candidates * ctx.first_rung(self.minibatch_size)
        if self.n_mistakes and len(mistake_pool):
            probe = stratified_sample(mistake_pool, self.mistake_sample, seed=ctx.seed)
            need += len(ctx.new_requests(best.template, probe))
        if not ctx.can_score(need, stage=False):
            return "budget"
        return None if ctx.can_score(need) else "share spent"

    @property
    def reply_tokens(self) -> int:
        """max_tokens of a proposer's reply: room for every candidate it is asked for (a cut-off one is lost)."""
        return max(self.proposer_max_tokens, 100 + 200 * self.candidates)

    def meta_parts(self, ctx, rng, best, pool: Pool, mistake_pool, needs_input, lo, hi, with_demos=((),),
                   angles=()) -> P.MetaPromptParts:
        """What the round's meta-prompt shows, from the run's state: P.build_meta_prompt fills the template with it,
        and each ProposalMade stores it, so the preview fills an edited template with a real round's state."""
        examples = ()
        if self.n_examples:
            # One per label first (capped), so a proposer can put a demonstration of each label in its prompt.
            rows = ctx.demo_rows  # with demos_apart, no train row whose input is also a val or test input
            order = rng.permutation(len(rows))
            shuffled = rows.iloc[order]
            per_label = shuffled.drop_duplicates("label_norm").head(max(self.n_examples, 8))
            rest = shuffled.drop(per_label.index).head(max(0, self.n_examples - len(per_label)))
            sample = per_label if len(per_label) >= self.n_examples else pd.concat([per_label, rest])
            examples = tuple(zip(sample["text"], sample["label"]))
            ctx.show(sample)
        mistakes, confusion, spread = (), "", ""
        if self.n_mistakes and len(mistake_pool):
            probe = stratified_sample(mistake_pool, self.mistake_sample, seed=ctx.seed)
            res = ctx.score(best.template, probe)
            mistakes = P.low_scoring(res, self.n_mistakes, rng)
            if ctx.dataset.has_labels:
                if self.show_confusion:
                    confusion = res.confusion().to_string()
                spread = P.answer_spread(res.rows["gold"].tolist(), res.rows["pred"].tolist(), ctx.dataset.labels)
        rejected = self.rejected(pool)
        parts = P.MetaPromptParts(
            task=ctx.task, metric=ctx.metric.describe() + ceiling.note(ctx.ceilings), labels=ctx.dataset.labels,
            history=tuple(P.ScoredPrompt(c.text, c.val) for c in _distinct_texts(pool.top(len(pool.cands)))[: self.top_k]),
            examples=examples, mistakes=mistakes, confusion=confusion, spread=spread, n=self.candidates,
            needs_input=needs_input, score_range=(lo, hi), kind=ctx.dataset.kind,
            rejected=tuple(P.ScoredPrompt(c.text, c.val if c.val is not None else c.minibatch) for c in rejected),
            rejected_n=tuple(c.n_scored for c in rejected),
            language_rule=P.language_rule(ctx.language, self.language),
            demos_note=P.demos_note(len(with_demos[0]), *with_demos[1:3]) if with_demos[0] else "",
            angles=angles,
        )
        return parts


def _demos_of(template: PromptTemplate) -> tuple:
    """The demos a template carries, as with_demos takes them (demos, format, similar_k, similar_by)."""
    return (template.demos, template.demo_format, template.similar_k, template.similar_by)


def _distinct_texts(cands: list[Cand]) -> list[Cand]:
    """Best first, one entry per instruction text (the same text with and without demos shows once)."""
    seen, out = set(), []
    for c in cands:
        if c.text not in seen:
            seen.add(c.text)
            out.append(c)
    return out
