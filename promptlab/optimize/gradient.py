"""Textual gradients (TextGrad / ProTeGi style): critique the current best prompt's concrete failures,
then edit it from the critique.

Each round: the current best is scored on a fresh stratified train sample; a critic model reads a
few of its mistakes and writes bounded feedback; an editor model rewrites the prompt from that
feedback into n candidates. Candidates go through the same minibatch gate; an edit is accepted
(becomes the new current prompt) only when its val score beats the current one. Only train examples
reach the critic and the editor.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Generator, ClassVar

import numpy as np

from promptlab.split import stratified_sample
from promptlab.prompt import PromptTemplate
from promptlab.models import ModelSpec
from promptlab.optimize import ceiling, meta_prompt as P
from promptlab.optimize.base import BudgetExhausted, OptimizeContext, RoundStarted, Step
from promptlab.optimize.pool import Cand, Pool
from promptlab.optimize.proposals import ProposerSettings, inputs_of, take_proposals
from promptlab.optimize.rounds import Rounds
from promptlab.optimize.settings import setting
from promptlab.optimize.strategy import PoolStrategy


@dataclass(frozen=True)
class Critique(Step):
    kind = "critique"
    round: int
    critic: str
    prompt_id: int  # the candidate criticized
    n_errors: int
    feedback: str
    meta_prompt: str
    error: str | None = None


@dataclass(frozen=True)
class Gradient(ProposerSettings, PoolStrategy):
    proposers: tuple[ModelSpec, ...]
    baselines: tuple[PromptTemplate, ...]
    critic: ModelSpec | None = setting(None, "the model that critiques the leader's failures", type="model", none="the first proposer", label="Critic")
    editor: ModelSpec | None = setting(None, "the model that rewrites the prompt from the critique", type="model", none="the first proposer", label="Editor")
    error_sample: int = 24  # train examples scored per round to find mistakes
    n_errors: int = 4  # mistakes shown to the critic
    feedback_words: int = 80
    max_feedback_chars: int = 700
    temperature: float = 0.7
    proposer_max_tokens: int = 500
    max_prompt_chars: int = 2500
    meta_prompt: str = ""  # accepted so every strategy takes the same config; the critic/editor prompts are in meta_prompt.py
    name: str = "gradient"
    needs_proposers: ClassVar[bool] = True

    @property
    def critic_spec(self) -> ModelSpec:
        return self.critic or self.proposers[0]

    @property
    def editor_spec(self) -> ModelSpec:
        return self.editor or self.proposers[0]

    def projection(self, n_train: int, n_val: int, n_test: int, rounds: int) -> dict:
        n = self.candidates
        probe = min(self.error_sample, n_train)
        race = self.race_projection(n_val, n)
        per_round = {"min": race["min"], "expected": probe + race["expected"], "max": probe + race["max"]}
        base = len(self.baselines) * n_val
        return {
            "baseline_calls": base,
            "target_search": {k: int(base + rounds * v) for k, v in per_round.items()},
            "target_test": (len(self.baselines) + self.test_top) * n_test,
            "proposer_calls": 2 * rounds,
            "candidates": rounds * n,
        }

    def _short_of(self, ctx: OptimizeContext, current: Cand, probe) -> str | None:
        """Why a round cannot start (the budget, or the stage's share, cannot pay for probing the leader and racing
        every edit asked for to its first rung), else None. Runs stored before version 4 did not ask."""
        if not self.raced_patience:
            return None
        need = len(ctx.new_requests(current.template, probe)) + self.candidates * ctx.first_rung(self.minibatch_size)
        if not ctx.can_score(need, stage=False):
            return "budget"
        return None if ctx.can_score(need) else "share spent"

    def _critique(self, ctx: OptimizeContext, round_: int, current: Cand, res, n_wrong: int, rng
                  ) -> Generator[Step, None, str]:
        """Ask the critic about the leader's mistakes on the probe; yields the Critique, returns its bounded feedback."""
        critic = self.critic_spec
        mistakes = P.low_scoring(res, self.n_errors, rng)
        spread = (P.answer_spread(res.rows["gold"].tolist(), res.rows["pred"].tolist(), ctx.dataset.labels)
                  if ctx.dataset.has_labels else "")
        metric = ctx.metric.describe() + ceiling.note(ctx.ceilings)
        ask = P.critic_prompt(ctx.task, ctx.dataset.labels, metric, current.text, mistakes, spread, self.feedback_words)
        params = {"temperature": self.temperature, "max_tokens": min(self.proposer_max_tokens, 2 * self.feedback_words + 40)}
        if critic.is_local:
            params["seed"] = int(rng.integers(0, 2**31 - 1))
        reply = ctx.propose(critic, ask, params, sample=f"r{round_}/critic/{critic.model}")
        feedback = P.bound_feedback(reply.text if reply.ok else "", self.max_feedback_chars)
        yield Critique(round_, critic.label, current.id, n_wrong, feedback, ask, reply.error)
        return feedback

    def search(self, ctx: OptimizeContext, pool: Pool) -> Generator[Step, None, tuple[str, int]]:
        rng = np.random.default_rng([ctx.seed, 4])
        angle_rng = np.random.default_rng([ctx.seed, 6])  # its own stream, so runs without angles replay
        needs_input = any(b.user.strip() != "{input}" for b in self.baselines)
        critic, editor = self.critic_spec, self.editor_spec
        inputs = inputs_of(ctx) if self.copy_screen else None
        rounds = Rounds(ctx, pool, self.patience, self.evidence, self.candidates if self.raced_patience else 0)
        for round_ in rounds:
            if not ctx.can_propose():
                return "proposer budget", rounds.done
            current = rounds.best
            probe_seed = int(rng.integers(0, 2**31 - 1))
            # failures are read only on rows that are not the prompt's own demos (they would answer themselves)
            probe = stratified_sample(ctx.probe_rows(current.template), self.error_sample, seed=probe_seed)
            short = self._short_of(ctx, current, probe)
            if short:
                return short, rounds.done
            yield RoundStarted(round_, (critic.label, editor.label))
            try:
                res = ctx.score(current.template, probe)
            except BudgetExhausted:
                return "budget", rounds.done
            wrong = res.rows[~res.rows["correct"]]
            if wrong.empty:
                yield from rounds.end(round_, [])
                return "no errors", rounds.done
            feedback = yield from self._critique(ctx, round_, current, res, len(wrong), rng)
            labels, metric = ctx.dataset.labels, ctx.metric.describe() + ceiling.note(ctx.ceilings)
            round_cands: list[Cand] = []
            repeats = 0
            reason = None
            if feedback and ctx.can_propose():
                angles = P.draw_angles(self.candidates, ctx.dataset.kind, angle_rng) if self.angles else ()
                edit = P.editor_prompt(ctx.task, labels, metric, current.text, feedback, self.candidates,
                                       needs_input, P.language_rule(ctx.language, self.language), angles,
                                       no_copy=self.copy_screen)
                params = {"temperature": self.temperature,
                          "max_tokens": max(self.proposer_max_tokens, 100 + 200 * self.candidates)}
                if editor.is_local:
                    params["seed"] = int(rng.integers(0, 2**31 - 1))
                reply = ctx.propose(editor, edit, params, sample=f"r{round_}/editor/{editor.model}")
                parent = current.template
                round_cands, repeats = yield from take_proposals(
                    ctx, pool, round_, editor, reply, edit, (current.id,), self.candidates, needs_input,
                    self.max_prompt_chars,
                    lambda text: PromptTemplate.from_text(text).with_demos(parent.demos, parent.demo_format, parent.similar_k, parent.similar_by),
                    angles=angles, inputs=inputs,
                )
                reason = yield from rounds.score(round_cands, self.gate_config)
            # Accepted only when val improves: the pool's best moves only on a strictly higher val score.
            stop = yield from rounds.end(round_, round_cands, reason, repeats)
            if stop:
                return stop, rounds.done
        return "rounds", rounds.done
