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

auto is a Chain with shares (chain.py): the stages below, each with its share of what is left, declared once in
STAGES. A stage ends when its rounds are done, when its share of the budget is spent, or after `stage_patience` rounds
without progress: no new leader and no contender (a candidate the race could not tell from the leader). A
stage that finds nothing hands the calls it did not spend on to the stages after it, since each stage's cap is
its share of what is left. The instructions-for-demos stage runs only when the leader carries demos by then.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, ClassVar, Generator

from promptlab.optimize.arena import Arena
from promptlab.optimize.base import OptimizeContext, Step
from promptlab.optimize.chain import Chain
from promptlab.optimize.fewshot import FewShot
from promptlab.optimize.gradient import Gradient
from promptlab.optimize.pool import Pool
from promptlab.optimize.settings import setting
from promptlab.optimize.strategy import PoolStrategy


@dataclass(frozen=True)
class Stage:
    """One of auto's stages: what it does, the Auto field that holds it, the setting that is its share, its class and
    what it is built with besides the run's settings."""

    role: str
    slot: str
    share: str
    cls: type
    extra: dict = field(default_factory=dict)


# auto's stages, in the order they run: the one place they are declared.
STAGES = (
    Stage("instructions", "instructions", "instructions_share", Arena),
    Stage("demos", "demos_stage", "demos_share", FewShot),
    Stage("instructions for the demos", "demo_instructions", "demo_instructions_share", Arena, {"leader_demos": True}),
    Stage("edits", "edits", "edits_share", Gradient),
)
SHARES = tuple(s.share for s in STAGES)


@dataclass(frozen=True)
class Auto(PoolStrategy):
    """auto's settings, and its stages as `build` makes them from a run's settings (each None when it cannot run: no
    proposers, or a share of 0). Its search is the Chain of those stages with their shares."""

    baselines: tuple
    instructions: Arena | None = None
    demos_stage: FewShot | None = None
    demo_instructions: Arena | None = None  # instructions written for the leader's demos, each judged with them
    edits: Gradient | None = None
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

    @classmethod
    def build(cls, make: Callable, has_proposers: bool) -> "Auto":
        """auto from a run's settings: `make(cls, **more)` builds a strategy class from them (registry.make_stage).
        A proposing stage gets auto's stage patience; a stage that needs proposers is left out without them."""
        auto = make(cls)
        stages = {}
        for st in STAGES:
            if getattr(auto, st.share) > 0 and (has_proposers or not st.cls.needs_proposers):
                patience = {"patience": auto.stage_patience} if st.cls.needs_proposers else {}
                stages[st.slot] = make(st.cls, **patience, **st.extra)
        return make(cls, **stages)

    @property
    def chain(self) -> Chain:
        """The stages that will run, in order, with their shares."""
        plan = [(st, getattr(self, st.slot), getattr(self, st.share)) for st in STAGES]
        plan = [(st, stage, share) for st, stage, share in plan if stage is not None and share > 0]
        return Chain(tuple(s for _, s, _ in plan), tuple(share for _, _, share in plan), tuple(st.role for st, _, _ in plan))

    def starts(self, ctx: OptimizeContext):
        """The baselines; with demos attached to the instruction stage (--demos), the baselines with them too."""
        return self.instructions.starts(ctx) if self.instructions is not None else list(self.baselines)

    def projection(self, n_train: int, n_val: int, n_test: int, rounds: int) -> dict:
        chain = self.chain
        if chain.stages:
            return chain.projection(n_train, n_val, n_test, rounds)
        return {"baseline_calls": len(self.baselines) * n_val, "target_search": dict.fromkeys(("min", "expected", "max"),
                len(self.baselines) * n_val), "target_test": (len(self.baselines) + self.test_top) * n_test,
                "proposer_calls": 0, "candidates": 0, "stages": [], "shares": []}

    def search(self, ctx: OptimizeContext, pool: Pool) -> Generator[Step, None, tuple[str, int]]:
        return (yield from self.chain.search(ctx, pool))
