"""Few-shot: search demonstration sets jointly with instructions, behind the same minibatch gate.

The search space per trial: which instruction (the top few in the pool, demos stripped), how the
demos are chosen (at random; stratified by label; bootstrapped from the target's own correct answers
on train; or, per input, the nearest train examples by similarity), how many (one per label, or two
per label, capped), which seeded draw, and optionally the rendering (chat turns or inline). Optuna's
TPE sampler proposes trials; each becomes a candidate scored like any other (minibatch first, full
val only if it could enter the top-K), and its score is told back to the sampler.

Why optuna: TPE over a mixed categorical space with ask/tell is what it does, it is seeded and
deterministic given the same told values (so a replayed run asks the same trials), and we would
otherwise re-implement a worse one.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Generator, ClassVar

import numpy as np
import optuna

from promptlab.prompt import PromptTemplate
from promptlab.split import stratified_sample
from promptlab.models import ModelSpec
from promptlab.optimize import demos as D
from promptlab.optimize.base import BudgetExhausted, OptimizeContext, RoundStarted, Step
from promptlab.optimize.pool import Cand, Pool
from promptlab.optimize.racing import score_one
from promptlab.optimize.rounds import Rounds
from promptlab.optimize.settings import setting
from promptlab.optimize.strategy import PoolStrategy
from promptlab.similarity import BACKENDS as SIMILARITY_BACKENDS

METHODS = ("random", "stratified", "bootstrapped", "similar")


@dataclass(frozen=True)
class FewShot(PoolStrategy):
    baselines: tuple[PromptTemplate, ...]
    proposers: tuple[ModelSpec, ...] = ()  # not used: demos are chosen, not written
    methods: tuple[str, ...] = setting(METHODS, "how demos are chosen from train, any of: random, stratified (by label), "
                                       "bootstrapped (the target's own correct answers), similar (each input's nearest)",
                                       type="choices", choices=METHODS, flag="--demo-methods", key="methods",
                                       label="Demo selection")
    max_demos: int = setting(8, "most demos per prompt", type="int", low=1, high=32, label="Most demos per prompt")
    sets_per_method: int = 4  # seeded draws per (method, size)
    n_instructions: int = 3  # the top instructions (distinct texts) the search may pair with demos
    trials_per_round: int = setting(6, "demo sets tried per round", type="int", low=1, high=32, flag="--trials",
                                    key="trials", label="Demo sets per round")
    demo_format: str = setting("chat", "demos as chat turns or inline in the instruction; search lets the few-shot "
                               "search try both", type="choice", choices=("chat", "inline", "search"), label="Demo format")
    bootstrap_sample: int = 32  # train examples the current best answers, to find its correct ones
    similar_pool_size: int = 64
    similarity: str = setting("tfidf", "how 'similar' demos measure nearness: tfidf (words and character n-grams, "
                              "any language, instant) or minilm (meaning: all-MiniLM-L6-v2, shipped in a package, "
                              "offline; English-centred)", type="choice", choices=SIMILARITY_BACKENDS,
                              label="Nearness for 'similar' demos")
    meta_prompt: str = ""  # accepted so every strategy takes the same config; not used
    # The first trials try every selection method once with the leading instruction (a factorial start), before
    # TPE samples: drawn at random, the startup trials could miss the one method a task needs (on navigate,
    # "similar" found +0.2 where the others found nothing). Runs stored before it (config version < 3) did not.
    factorial_start: bool = True
    name: str = "fewshot"
    needs_proposers: ClassVar[bool] = False

    def projection(self, n_train: int, n_val: int, n_test: int, rounds: int) -> dict:
        trials = self.trials_per_round
        boot = min(self.bootstrap_sample, n_train) if "bootstrapped" in self.methods else 0
        one = self.race_projection(n_val, 1)  # few-shot trials race one at a time (TPE hears each score)
        per_round = {"min": trials * one["min"], "expected": trials * one["expected"], "max": trials * n_val}
        base = len(self.baselines) * n_val
        return {
            "baseline_calls": base,
            "target_search": {k: int(base + boot + rounds * v) for k, v in per_round.items()},
            "target_test": (len(self.baselines) + self.test_top) * n_test,
            "proposer_calls": 0,
            "candidates": rounds * trials,
        }

    # --- the search --------------------------------------------------------------------------------

    def sizes(self, n_labels: int) -> list[int]:
        n_labels = n_labels or 2  # without labels: two or four demos
        return sorted({min(n_labels, self.max_demos), min(2 * n_labels, self.max_demos)})

    def search(self, ctx: OptimizeContext, pool: Pool) -> Generator[Step, None, tuple[str, int]]:
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        instructions = _distinct_instructions(pool, self.n_instructions, keep_start=self.factorial_start)
        methods = list(self.methods)
        if ctx.dataset.kind == "unlabeled":
            # No gold answers to show: demos can only be the target's own replies that scored full marks.
            methods = ["bootstrapped"]
        formats = ["chat", "inline"] if self.demo_format == "search" else [self.demo_format]
        sizes = self.sizes(len(ctx.dataset.labels))
        sampler = optuna.samplers.TPESampler(seed=ctx.seed, n_startup_trials=min(8, 2 * self.trials_per_round))
        study = optuna.create_study(direction="maximize", sampler=sampler)
        if self.factorial_start:
            for method in methods:
                study.enqueue_trial({"instruction": 0, "method": method, "k": sizes[0], "draw": 0, "format": formats[0]})
        values: dict[str, float] = {}  # template id -> the value told for it
        correct_cache: dict[int, object] = {}
        rounds = Rounds(ctx, pool, self.patience, self.evidence)
        for round_ in rounds:
            short = self._cannot_race(ctx, methods, len(instructions), correct_cache) if self.raced_patience else None
            if short:  # a trial the budget cannot score on its first rung would only be drawn and dropped
                return short, rounds.done
            yield RoundStarted(round_, ("fewshot",))
            round_cands: list[Cand] = []
            reason = None
            for _ in range(self.trials_per_round):
                short = self._cannot_race(ctx, methods, len(instructions), correct_cache) if self.raced_patience else None
                if short:
                    reason = short
                    break
                try:
                    for _attempt in range(4):  # a repeat is told its known value at once, then asked again
                        trial, template, method = self._ask(ctx, study, instructions, methods, sizes, formats,
                                                            correct_cache)
                        known = pool.find(template) if template is not None else None
                        if template is not None and known is None:
                            break
                        study.tell(trial, _value(known) if known else 0.0)
                        trial = None
                except BudgetExhausted:
                    reason = "budget"
                    break
                if trial is None:
                    continue
                parent = pool.ids.get(instructions[trial.params["instruction"]].id)
                cand, step = pool.add(round_, template, f"fewshot/{method}", "fewshot", parents=(parent,) if parent else ())
                yield step
                scored = score_one(ctx, pool, cand, self.gate_config)
                yield scored
                if scored.status == "over budget":
                    study.tell(trial, state=optuna.trial.TrialState.FAIL)
                    reason = "budget"
                    break
                values[template.id] = _value(cand)
                study.tell(trial, values[template.id])
                round_cands.append(cand)
            stop = yield from rounds.end(round_, round_cands, reason)
            if stop:
                return stop, rounds.done
        return "rounds", rounds.done

    def _cannot_race(self, ctx: OptimizeContext, methods, n_instructions: int, correct_cache: dict) -> str | None:
        """"budget" or "share spent" when what is left cannot score one more trial on the race's first rung (with the
        bootstrapping probe a trial may still need first), else None."""
        need = ctx.first_rung(self.minibatch_size)
        if "bootstrapped" in methods and len(correct_cache) < n_instructions:
            need += min(self.bootstrap_sample, len(ctx.trainset))
        if not ctx.can_score(need, stage=False):
            return "budget"
        return None if ctx.can_score(need) else "share spent"

    def _ask(self, ctx, study, instructions, methods, sizes, formats, correct_cache):
        trial = study.ask()
        i = trial.suggest_categorical("instruction", list(range(len(instructions))))
        method = trial.suggest_categorical("method", methods)
        k = trial.suggest_categorical("k", sizes)
        draw = trial.suggest_categorical("draw", list(range(self.sets_per_method)))
        fmt = trial.suggest_categorical("format", formats)
        rng = np.random.default_rng([ctx.seed, 3, methods.index(method), k, draw])
        base = instructions[i]
        rows = ctx.demo_rows
        if method == "random":
            demos = D.random_demos(rows, ctx.dataset, k, rng)
        elif method == "stratified":
            demos = D.stratified_demos(rows, ctx.dataset, k, rng)
        elif method == "bootstrapped":
            if i not in correct_cache and rows.empty:  # every train input is also a val or test input: no demos
                correct_cache[i] = rows
            if i not in correct_cache:  # once per instruction (its demos stripped): its correct answers on a train sample
                probe = stratified_sample(rows, self.bootstrap_sample, seed=ctx.seed)
                res = ctx.score(base, probe)
                good = res.rows[res.rows["correct"]]
                picked = probe[probe["idx"].isin(good["example_idx"])]
                if ctx.dataset.kind == "unlabeled":  # the demo's answer is the reply the judge gave full marks
                    picked = picked.assign(label=picked["idx"].map(dict(zip(good["example_idx"], good["reply"]))))
                correct_cache[i] = picked
            demos = D.bootstrapped_demos(correct_cache[i], ctx.dataset, k, rng)
        elif method == "similar":
            pool_demos = D.similar_pool(rows, ctx.dataset, self.similar_pool_size, rng)
            return trial, (base.with_demos(pool_demos, fmt, similar_k=k, similar_by=self.similarity) if pool_demos else None), method
        else:
            raise ValueError(f"unknown demo selection method '{method}'")
        return trial, (base.with_demos(demos, fmt) if demos else None), method


def _value(cand: Cand) -> float:
    if cand.over_ceiling:  # too costly per call (more or longer demos): TPE learns to keep under the ceiling
        return 0.0
    v = cand.val if cand.val is not None else cand.minibatch
    return 0.0 if v is None or v != v else float(v)


def _distinct_instructions(pool: Pool, n: int, keep_start: bool = False) -> list[PromptTemplate]:
    """The top-n instructions by val, one per text, without their demos. `keep_start`: the best starting prompt
    (the analyst's own baseline) is always among them, last if it did not make the top n: demos are searched
    for the prompt the analyst brought too, since that is the one the result must beat."""
    out, seen = [], set()
    for c in pool.top(len(pool.cands)):
        plain = PromptTemplate(c.template.system, c.template.user)
        if plain.id not in seen:
            seen.add(plain.id)
            out.append(plain)
    top = out[:n]
    if keep_start:
        starts = [c for c in pool.top(len(pool.cands)) if c.round == 0 and c.proposer == "baseline"]
        if starts:
            start = PromptTemplate(starts[0].template.system, starts[0].template.user)
            if start.id not in {t.id for t in top}:
                top = top[: n - 1] + [start] if n > 1 else top + [start]
    return top
