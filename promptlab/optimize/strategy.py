"""What a strategy is to the run that drives it: the `Strategy` contract, the settings and defaults every strategy over
a pool shares (`PoolStrategy`), and the frame every strategy runs in (`run_strategy`): start, score the starting
prompts, search, decide what ships, score on test, finish.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Generator, Iterator, Protocol, runtime_checkable

from promptlab.optimize.base import BudgetExhausted, OptimizeContext, RunFinished, RunStarted, Step
from promptlab.optimize.confirmation import ConfirmationSettings, decide, finalize
from promptlab.optimize.pool import Pool
from promptlab.optimize.racing import Gate, RaceSettings
from promptlab.prompt import PromptTemplate


@runtime_checkable
class Strategy(Protocol):
    """What `run_strategy` (and `runs.execute`, through `run`) relies on a strategy for. As GEPA's adapter states its
    contract, so this one does; tests/test_strategies.py checks every strategy the registry builds against it.

    - `name`: what the run is stored under ("auto", "arena", "arena,fewshot").
    - `starts(ctx)`: the prompts the run starts from, scored in full on the search's part of val before any search
      step (the analyst's baselines; with demos attached, those with them too). Never empty.
    - `search(ctx, pool)`: a generator of frozen steps over a pool that already holds the scored starts; it returns
      (why it stopped, rounds run). It never writes to the store, prints or sleeps; every target call goes through
      `ctx.score` and every proposer call through `ctx.propose` (cached, budgeted); it catches `BudgetExhausted` and
      returns "budget" rather than raising; one bad candidate or call is a step with its error, never an exception.
      It may add candidates to the pool and score them; it never scores one on the held-back examples or on test.
    - `projection(n_train, n_val, n_test, rounds)`: what the run will ask for before the cache: {"baseline_calls",
      "target_search": {min, expected, max}, "target_test", "proposer_calls", ...}; target figures count requests.
    - `gate_config`: how much of val a candidate gets (racing.Gate); its `minibatch_size` names the first rung.
    - `decision`: whose `ConfirmationSettings` decide what ships (a chain: its first stage's); it gives
      `confirm_reserve(n_confirm, prefer)`, the target requests the search leaves for the decision, and `test_top`.
    - `run(ctx)`: the whole run's steps (RunStarted ... RunFinished), which is `run_strategy(self, ctx)`.
    Scores are the metric's, higher is better, in `ctx.metric.range`.
    """

    name: str

    def starts(self, ctx: OptimizeContext) -> list[PromptTemplate]: ...

    def search(self, ctx: OptimizeContext, pool: Pool) -> Generator[Step, None, tuple[str, int]]: ...

    def projection(self, n_train: int, n_val: int, n_test: int, rounds: int) -> dict: ...

    @property
    def gate_config(self) -> Gate: ...

    @property
    def decision(self) -> ConfirmationSettings: ...

    def run(self, ctx: OptimizeContext) -> Iterator[Step]: ...


@dataclass(frozen=True, kw_only=True)
class PoolStrategy(ConfirmationSettings, RaceSettings):
    """What every strategy over a pool shares: how candidates are raced (RaceSettings), what ships
    (ConfirmationSettings), its starting prompts (the baselines) and the run frame. Subclasses are frozen dataclasses
    with `baselines` and a `search`; these fields are keyword-only so a subclass may add fields without defaults."""

    patience: int | None = None  # rounds without progress before this strategy's search ends (a stage's own)
    # Whether a contender (a candidate the race could not tell from the leader) counts as progress for patience
    # (see Rounds). Runs stored before it existed (config version < 3) counted only a new leader.
    evidence: bool = True
    # Whether each of a proposer call's n prompts is asked to be a different kind of instruction (see
    # meta_prompt.ANGLES); runs stored before it (config version < 3) asked for n alike.
    angles: bool = True
    # Config version 4 (issue 31), each False for runs stored before, which replay as they ran:
    # a proposing round starts only when the budget can race what it asks for to its first rung, and patience counts
    # raced proposals as well as rounds (Rounds.raced_per_round);
    raced_patience: bool = True
    # a proposal that contains a train or val input word for word is dropped (proposals.copies_input);
    copy_screen: bool = True
    # no example judges itself: demos only from train rows whose input is not a val or test input, failures probed only
    # on rows that are not the prompt's own demos (OptimizeContext.demos_apart).
    demos_apart: bool = True

    def starts(self, ctx: OptimizeContext) -> list[PromptTemplate]:
        return list(self.baselines)

    def ready(self, pool: Pool) -> bool:
        """Whether, as a stage of a chain, it can run on the pool as it stands (see chain.py)."""
        return True

    def run(self, ctx: OptimizeContext) -> Iterator[Step]:
        return run_strategy(self, ctx)


def run_strategy(strategy, ctx: OptimizeContext, pool: Pool | None = None) -> Iterator[Step]:
    """The frame every strategy runs in: start, score the starting prompts, search, confirm, test, finish. What it
    reads of the strategy is the `Strategy` contract above."""
    pool = pool or Pool()
    yield RunStarted(
        strategy=strategy.name, n_train=len(ctx.trainset), n_val=len(ctx.valset), n_test=len(ctx.testset),
        n_minibatch=len(ctx.minibatch(strategy.gate_config.minibatch_size)),
        projection=strategy.projection(len(ctx.trainset), len(ctx.valset), len(ctx.testset), ctx.budget.max_rounds),
    )
    reason, rounds = "rounds", 0
    confirming = len(ctx.confirmset) > 0
    ctx.reserved = strategy.decision.confirm_reserve(len(ctx.confirmset), ctx.prefer) if confirming else 0
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
    yield from finalize(ctx, pool, strategy.decision.test_top, winner, strategy.decision.test_parts)
    best = winner or pool.best()
    yield RunFinished(reason=reason, best_id=best.id, best_val=best.val, rounds=rounds)
