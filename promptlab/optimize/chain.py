"""Strategies in sequence over one pool: a chain of named strategies ("arena,fewshot": the arena finds the
instruction, then few-shot searches demos for the winner), and auto, which is a chain with shares (auto.py).

The target-request budget left is split across the stages still to run by their shares (even without shares), so a
stage that stops early leaves its rest to the stages after it; each stage gets the run's rounds. A stage that is not
ready when its turn comes (`ready(pool)`: auto's instructions for the demos, when the leader carries none) is skipped
and its share goes to the stages after it. The chain stops when nothing is left to score with or the analyst stops.
One RunStarted, one decision, one held-out finale, one RunFinished for the whole chain.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Generator, Iterator

from promptlab.optimize.base import OptimizeContext, Step
from promptlab.optimize.pool import Pool
from promptlab.optimize.racing import Gate
from promptlab.optimize.strategy import run_strategy


@dataclass(frozen=True)
class StageStarted(Step):
    kind = "stage_started"
    stage: int
    strategy: str
    target_cap: int | None  # the run's target requests at which this stage stops
    role: str = ""  # what the stage does in auto (instructions, demos, instructions for the demos, edits)


@dataclass(frozen=True)
class StageEnded(Step):
    """Why a stage handed over (config version >= 4): its rounds ran, its share could not race another round, patience,
    the budget, ... (the stage's stop reason, as results.STOP_REASONS words it)."""

    kind = "stage_ended"
    stage: int
    reason: str


@dataclass(frozen=True)
class Chain:
    stages: tuple
    shares: tuple[float, ...] = ()  # each stage's share of the budget (auto's); empty: an even split
    roles: tuple[str, ...] = ()  # what each stage does (auto's), recorded in StageStarted

    @property
    def name(self) -> str:
        return ",".join(s.name for s in self.stages)

    @property
    def gate_config(self) -> Gate:
        return self.stages[0].gate_config

    @property
    def decision(self):
        """Whose settings the decision at the end reads (confirmation.decide): the first stage's."""
        return self.stages[0]

    def starts(self, ctx: OptimizeContext):
        return self.stages[0].starts(ctx)

    def run(self, ctx: OptimizeContext) -> Iterator[Step]:
        return run_strategy(self, ctx)

    def projection(self, n_train: int, n_val: int, n_test: int, rounds: int) -> dict:
        parts = [s.projection(n_train, n_val, n_test, rounds) for s in self.stages]
        base = parts[0]["baseline_calls"]
        search = {k: base + sum(p["target_search"][k] - p["baseline_calls"] for p in parts) for k in ("min", "expected", "max")}
        out = {"baseline_calls": base, "target_search": search, "target_test": max(p["target_test"] for p in parts),
               "proposer_calls": sum(p["proposer_calls"] for p in parts)}
        if self.roles:
            out |= {"candidates": sum(p.get("candidates", 0) for p in parts), "stages": list(self.roles),
                    "shares": list(self.shares)}
        return out

    def search(self, ctx: OptimizeContext, pool: Pool) -> Generator[Step, None, tuple[str, int]]:
        shares = self.shares or (1.0,) * len(self.stages)
        roles = self.roles or ("",) * len(self.stages)
        reason, rounds = "rounds", 0
        budget = ctx.budget.max_target_requests
        try:
            for i, stage in enumerate(self.stages):
                if not stage.ready(pool):
                    continue  # its share goes to the stages after it
                if budget is not None:
                    left = budget - ctx.reserved - ctx.counters.target_requests
                    if left <= 0:  # nothing left to score with: a stage would only spend proposer calls
                        reason = "budget"
                        break
                    last = i == len(self.stages) - 1
                    ctx.stage_cap = ctx.counters.target_requests + (left if last else int(left * shares[i] / sum(shares[i:])))
                yield StageStarted(i + 1, stage.name, ctx.stage_cap, roles[i])
                reason, r = yield from stage.search(ctx, pool)
                rounds += r
                if self.decision.raced_patience:
                    yield StageEnded(i + 1, reason)
                if reason == "analyst stopped":
                    break
        finally:
            ctx.stage_cap = None
        return reason, rounds
