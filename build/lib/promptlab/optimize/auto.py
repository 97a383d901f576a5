"""auto, the default strategy: instructions, demonstrations for the best of them, instructions written for the
demonstrations that will go with them, and textual-gradient edits of the leader, over one pool and one budget,
every candidate raced and the result confirmed on val examples that no search step saw.

Why these stages, in this order: on small targets demonstrations and label definitions move the score most
(../shared/models.md: 0.34 -> 0.56 with one line per label, 0.80 with an example per label; DSPy's MIPROv2
spends about twice as many trials on demo sets as on instructions for the same reason), but the better the
instruction, the further the demos go (issue 24: a hand-written label glossary with 8 demos reached 0.85 where
the proposer's glossary with demos reached 0.80). So proposers write several instructions per call, judged
alone first; demo sets are then searched for the best few (the analyst's own prompt always among them); then
proposers write instructions for the leader's demos, each judged with them, since that is how it will ship; and
edits rework the leader from its failures. Shares follow the stage-by-stage measurements in
benchmarks/RESULTS.md; they are not tuned per task.

A stage ends when its rounds are done, when its share of the budget is spent, or after `stage_patience` rounds
without progress: no new leader and no contender (a candidate the race could not tell from the leader). A
stage that finds nothing hands the calls it did not spend on to the stages after it, since each stage's cap is
its share of what is left. The instructions-for-demos stage runs only when the leader carries demos by then.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Generator, ClassVar

from promptlab.optimize.base import OptimizeContext, Step
from promptlab.optimize.chain import StageEnded, StageStarted
from promptlab.optimize.pool import Pool, PoolStrategy
from promptlab.optimize.settings import setting

@dataclass(frozen=True)
class Auto(PoolStrategy):
    """The stages are built by `registry.make_stage` from the run's settings (an Arena, a FewShot, a second Arena that writes
    for the leader's demos, a Gradient; each None when it cannot run: no proposers, or a share of 0)."""

    baselines: tuple
    instructions: object = None  # Arena
    demos_stage: object = None  # FewShot
    demo_instructions: object = None  # Arena with leader_demos: instructions written for the leader's demos
    edits: object = None  # Gradient
    instructions_share: float = setting(0.3, "auto: share of the search budget for proposed instructions (label "
                                        "definitions included), judged alone", type="float", low=0.0, high=1.0,
                                        label="Share: instructions")
    demos_share: float = setting(0.4, "auto: share for demonstration sets searched for the best instructions",
                                 type="float", low=0.0, high=1.0, label="Share: demonstrations")
    demo_instructions_share: float = setting(0.15, "auto: share for instructions written for the leader's "
                                             "demonstrations, each judged with them (0: none)", type="float",
                                             low=0.0, high=1.0, label="Share: instructions for the demos")
    edits_share: float = setting(0.15, "auto: share for textual-gradient edits of the leader (0: no edits)",
                                 type="float", low=0.0, high=1.0, label="Share: edits")
    stage_patience: int = setting(2, "auto: rounds without progress (no new leader, and no candidate the race could "
                                  "not tell from it) before a proposing stage hands its calls on", type="int", low=1,
                                  high=10, label="Stage patience")
    name: str = "auto"
    needs_proposers: ClassVar[bool] = False

    def planned(self) -> list[tuple[str, object, float]]:
        """(role, stage, share) for the stages that will run, in order."""
        out = [("instructions", self.instructions, self.instructions_share),
               ("demos", self.demos_stage, self.demos_share),
               ("instructions for the demos", self.demo_instructions, self.demo_instructions_share),
               ("edits", self.edits, self.edits_share)]
        return [(role, s, share) for role, s, share in out if s is not None and share > 0]

    def starts(self, ctx: OptimizeContext):
        """The baselines; with demos attached to the instruction stage (--demos), the baselines with them too."""
        return self.instructions.starts(ctx) if self.instructions is not None else list(self.baselines)

    def projection(self, n_train: int, n_val: int, n_test: int, rounds: int) -> dict:
        parts = [s.projection(n_train, n_val, n_test, rounds) for _, s, _ in self.planned()]
        base = parts[0]["baseline_calls"] if parts else len(self.baselines) * n_val
        search = {k: base + sum(p["target_search"][k] - p["baseline_calls"] for p in parts) for k in ("min", "expected", "max")}
        return {"baseline_calls": base, "target_search": search,
                "target_test": max([p["target_test"] for p in parts], default=(len(self.baselines) + self.test_top) * n_test),
                "proposer_calls": sum(p["proposer_calls"] for p in parts),
                "candidates": sum(p.get("candidates", 0) for p in parts),
                "stages": [role for role, _, _ in self.planned()],
                "shares": [share for _, _, share in self.planned()]}

    def search(self, ctx: OptimizeContext, pool: Pool) -> Generator[Step, None, tuple[str, int]]:
        plan = self.planned()
        reason, rounds = "rounds", 0
        budget = ctx.budget.max_target_requests
        try:
            for i, (role, stage, share) in enumerate(plan):
                if role == "instructions for the demos" and not pool.best().template.demos:
                    continue  # no demos to write for: its share goes to the stages after it
                if budget is not None:
                    left = budget - ctx.reserved - ctx.counters.target_requests
                    if left <= 0:  # nothing left to score with: a stage would only spend proposer calls
                        reason = "budget"
                        break
                    rest = sum(s for _, _, s in plan[i:])
                    ctx.stage_cap = ctx.counters.target_requests + (left if i == len(plan) - 1 else int(left * share / rest))
                yield StageStarted(i + 1, stage.name, ctx.stage_cap, role)
                reason, r = yield from stage.search(ctx, pool)
                rounds += r
                if self.raced_patience:
                    yield StageEnded(i + 1, reason)
                if reason == "analyst stopped":
                    break
        finally:
            ctx.stage_cap = None
        return reason, rounds
