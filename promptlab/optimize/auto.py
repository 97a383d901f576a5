"""auto, the default strategy: instructions, then demonstrations for the best instructions, then optionally
textual-gradient edits of the leader, over one pool and one budget, every candidate raced and the result
confirmed on val examples that no search step saw.

Why this order and these shares: on small targets demonstrations and label definitions move the score
far more than rewording does (../shared/models.md: 0.34 -> 0.56 with one line per label, 0.80 with an
example per label; DSPy's MIPROv2 spends about twice as many trials on demo sets as on instructions for
the same reason, and arXiv 2406.15708 found random search over demos beating instruction optimizers). So
the instruction stage comes first, to find the label definitions the demos are then chosen for, with a
smaller share; the demo stage gets the largest. The shares below follow those measurements and the
stage-by-stage ones in benchmarks/RESULTS.md ("auto: where the calls paid off": so far the demonstration
stage produced every result that held up); they are not tuned per task.

A stage ends when its rounds are done, when its share of the budget is spent, or (instructions and
edits) after `stage_patience` rounds without a new leader: a stage that finds nothing hands the calls
it did not spend on to the stages after it, since each stage's cap is its share of what is left.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Generator, ClassVar

from promptlab.optimize.base import OptimizeContext, Step
from promptlab.optimize.chain import StageStarted
from promptlab.optimize.pool import Pool, PoolStrategy
from promptlab.optimize.settings import setting

STAGES = ("instructions", "demos", "edits")


@dataclass(frozen=True)
class Auto(PoolStrategy):
    """The stages are built by `runs.build` from the run's settings (an Arena, a FewShot, a Gradient, each
    None when it cannot run: no proposers, or a share of 0)."""

    baselines: tuple
    instructions: object = None  # Arena
    demos_stage: object = None  # FewShot
    edits: object = None  # Gradient
    instructions_share: float = setting(0.3, "auto: share of the search budget for proposed instructions (label "
                                        "definitions included)", type="float", low=0.0, high=1.0,
                                        label="Share: instructions")
    demos_share: float = setting(0.55, "auto: share for demonstration sets searched for the best instructions",
                                 type="float", low=0.0, high=1.0, label="Share: demonstrations")
    edits_share: float = setting(0.15, "auto: share for textual-gradient edits of the leader (0: no edits)",
                                 type="float", low=0.0, high=1.0, label="Share: edits")
    stage_patience: int = setting(1, "auto: rounds without a new leader before the instruction or edit stage hands "
                                  "its calls on", type="int", low=1, high=10, label="Stage patience")
    name: str = "auto"
    needs_proposers: ClassVar[bool] = False

    def planned(self) -> list[tuple[object, float]]:
        """(stage, share) for the stages that will run, in order."""
        out = [(self.instructions, self.instructions_share), (self.demos_stage, self.demos_share),
               (self.edits, self.edits_share)]
        return [(s, share) for s, share in out if s is not None and share > 0]

    def starts(self, ctx: OptimizeContext):
        """The baselines; with demos attached to the instruction stage (--demos), the baselines with them too."""
        return self.instructions.starts(ctx) if self.instructions is not None else list(self.baselines)

    def projection(self, n_train: int, n_val: int, n_test: int, rounds: int) -> dict:
        parts = [s.projection(n_train, n_val, n_test, rounds) for s, _ in self.planned()]
        base = parts[0]["baseline_calls"] if parts else len(self.baselines) * n_val
        search = {k: base + sum(p["target_search"][k] - p["baseline_calls"] for p in parts) for k in ("min", "expected", "max")}
        return {"baseline_calls": base, "target_search": search,
                "target_test": max([p["target_test"] for p in parts], default=(len(self.baselines) + self.test_top) * n_test),
                "proposer_calls": sum(p["proposer_calls"] for p in parts),
                "candidates": sum(p.get("candidates", 0) for p in parts),
                "stages": [getattr(s, "name", "?") for s, _ in self.planned()],
                "shares": [share for _, share in self.planned()]}

    def search(self, ctx: OptimizeContext, pool: Pool) -> Generator[Step, None, tuple[str, int]]:
        plan = self.planned()
        reason, rounds = "rounds", 0
        budget = ctx.budget.max_target_calls
        try:
            for i, (stage, share) in enumerate(plan):
                if budget is not None:
                    left = budget - ctx.reserved - ctx.counters.target_requests
                    if left <= 0:  # nothing left to score with: a stage would only spend proposer calls
                        reason = "budget"
                        break
                    rest = sum(s for _, s in plan[i:])
                    ctx.stage_cap = ctx.counters.target_requests + (left if i == len(plan) - 1 else int(left * share / rest))
                yield StageStarted(i + 1, stage.name, ctx.stage_cap)
                reason, r = yield from stage.search(ctx, pool)
                rounds += r
                if reason == "analyst stopped":
                    break
        finally:
            ctx.stage_cap = None
        return reason, rounds
