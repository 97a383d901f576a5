"""Strategies in sequence over one pool, e.g. "arena,fewshot": the arena finds the instruction, then
few-shot searches demos for the winner. The target-call budget is split evenly across the stages
still to run (a stage that stops early leaves its rest to the next), and each stage gets the run's
rounds. One RunStarted, one held-out finale, one RunFinished for the whole chain."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Generator, Iterator

from promptlab.optimize.base import OptimizeContext, Step
from promptlab.optimize.pool import Gate, Pool, run_strategy


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

    @property
    def name(self) -> str:
        return ",".join(s.name for s in self.stages)

    @property
    def gate_config(self) -> Gate:
        return self.stages[0].gate_config

    @property
    def test_top(self) -> int:
        return max(s.test_top for s in self.stages)

    @property
    def finalists(self) -> int:
        return self.stages[0].finalists

    @property
    def confidence(self) -> float:
        return self.stages[0].confidence

    def confirm_reserve(self, n_confirm: int, prefer: str = "score") -> int:
        return self.stages[0].confirm_reserve(n_confirm, prefer)

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
        return {"baseline_calls": base, "target_search": search, "target_test": max(p["target_test"] for p in parts),
                "proposer_calls": sum(p["proposer_calls"] for p in parts)}

    def search(self, ctx: OptimizeContext, pool: Pool) -> Generator[Step, None, tuple[str, int]]:
        reason, rounds = "rounds", 0
        cap = ctx.budget.max_target_requests
        try:
            for i, stage in enumerate(self.stages):
                if cap is not None:
                    left = cap - ctx.reserved - ctx.counters.target_requests
                    ctx.stage_cap = ctx.counters.target_requests + left // (len(self.stages) - i)
                yield StageStarted(i + 1, stage.name, ctx.stage_cap)
                reason, r = yield from stage.search(ctx, pool)
                rounds += r
                if self.decision.raced_patience:
                    yield StageEnded(i + 1, reason)
        finally:
            ctx.stage_cap = None
        return reason, rounds
