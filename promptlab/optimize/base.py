"""The strategy contract: a strategy is a generator of frozen steps, fed by a context that owns the calls.

A strategy never writes to the store, prints, or sleeps; `runs.py` persists each step as it arrives,
the UI draws progress from the store, and stopping is just not asking for the next step. Every call
a strategy makes goes through the context, which serves it from the DuckDB cache when the identical
request was made before. So re-running a strategy with the same run (id, seed, sample scope) replays the same
path without repeating finished calls: that is how a killed run resumes.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import pandas as pd

from promptlab.calls import cached_complete
from promptlab.data import Dataset
from promptlab.split import stratified_order, stratified_sample
from promptlab.evaluate import EvalResult, evaluate
from promptlab.prompt import PromptTemplate
from promptlab.language import detect_language
from promptlab.models import Completion, ModelSpec
from promptlab.scoring import Objective
from promptlab.store import Store


class BudgetExhausted(Exception):
    """Raised by the context when a call would exceed the run's budget; the strategy stops cleanly."""

    def __init__(self, what: str):
        super().__init__(what)
        self.what = what


# --- steps -----------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Step:
    kind = "step"

    def to_record(self) -> dict:
        return {k: v for k, v in self.__dict__.items()}


@dataclass(frozen=True)
class RunStarted(Step):
    kind = "run_started"
    strategy: str
    n_train: int
    n_val: int
    n_test: int
    n_minibatch: int
    projection: dict


@dataclass(frozen=True)
class CandidateProposed(Step):
    kind = "candidate_proposed"
    candidate_id: int
    round: int
    text: str
    system: str
    user: str
    prompt_id: str
    proposer: str  # model label, or "baseline" / "human"
    family: str
    parents: tuple[int, ...] = ()
    meta_prompt: str = ""
    raw_reply: str = ""
    demos: tuple = ()  # Demo records ({text, label, fields, idx}) shown with the prompt
    demo_format: str = "chat"
    similar_k: int = 0  # > 0: demos is a pool; each input is shown its similar_k nearest
    similar_by: str = "tfidf"  # how nearness is measured (tfidf or minilm)


@dataclass(frozen=True)
class ProposalMade(Step):
    kind = "proposal_made"
    round: int
    proposer: str
    family: str
    meta_prompt: str
    raw_reply: str
    error: str | None
    accepted: tuple[int, ...]  # candidate ids
    dropped: dict = field(default_factory=dict)  # reason -> count
    repaired: dict = field(default_factory=dict)  # repair -> count (kept candidates fixed in harmless ways)
    cached: bool = False
    asked: int | None = None  # prompts the call asked for (None: stored before it was recorded)
    # what the meta-prompt showed (meta_prompt.parts_record; empty: stored before it was recorded, or an editor's call)
    parts: dict = field(default_factory=dict)


@dataclass(frozen=True)
class CandidateScored(Step):
    kind = "candidate_scored"
    candidate_id: int
    round: int
    minibatch_score: float | None
    val_score: float | None
    val_ci: tuple[float, float] | None
    n_val: int
    status: str  # "evaluated" | "gated" (stopped before all of val: the gate or the race) | "over budget" | "over ceiling"
    calls_saved: int = 0
    target_requests: int = 0  # the run's target requests so far (an x axis for trajectories)
    n_scored: int = 0  # val examples it was scored on (a race stops most candidates early)


@dataclass(frozen=True)
class RoundStarted(Step):
    kind = "round_started"
    round: int
    proposers: tuple[str, ...]


@dataclass(frozen=True)
class RoundFinished(Step):
    kind = "round_finished"
    round: int
    best_id: int
    best_val: float
    improved: bool
    winner_id: int | None
    winner_proposer: str | None
    target_requests: int
    proposer_calls: int


@dataclass(frozen=True)
class ReviewRequested(Step):
    """A semi-automatic run pauses here until the analyst closes the round (continue or stop)."""

    kind = "review_requested"
    round: int
    candidate_ids: tuple[int, ...]
    best_id: int


@dataclass(frozen=True)
class Decided(Step):
    """One decision on a round's candidates, by the analyst or by the rule (the gate and top-K)."""

    kind = "decided"
    round: int
    action: str  # keep | discard | edit | add | rescore | continue | stop
    candidate_id: int | None
    who: str  # "analyst" or "rule"
    note: str = ""
    parent_id: int | None = None
    detail: dict = field(default_factory=dict)


@dataclass(frozen=True)
class Confirmed(Step):
    """A finalist (or the baseline it must beat) scored on the part of val that no search step saw."""

    kind = "confirmed"
    candidate_id: int
    confirm_score: float | None
    confirm_ci: tuple[float, float] | None
    n_confirm: int
    search_score: float | None  # its score on the search part of val, for the gap (the overfitting)


@dataclass(frozen=True)
class WinnerChosen(Step):
    """The result of a run: a finalist that beat the baseline on the held-back val examples by a paired
    test at `level`, or else the baseline itself, with one sentence saying which and why."""

    kind = "winner_chosen"
    winner_id: int
    reference_id: int  # the baseline a candidate had to beat
    replaced_baseline: bool
    diff: float | None  # the best finalist minus the baseline on the held-back examples
    ci: tuple[float, float] | None
    p_value: float | None
    level: float
    n_confirm: int
    search_score: float | None
    confirm_score: float | None
    reading: str
    leader_id: int | None = None  # the first finalist: the search's leader the baseline was tested against
    margin: float = 0.0  # the harm margin of the test (0: "not better", as runs stored before it tested)
    n_from_train: int = 0  # of n_confirm, train rows no search step read (the rest: held-back val)
    looks: int = 1  # 2: the test ran again on more unseen train rows after the first look failed (each at half the level)


@dataclass(frozen=True)
class TestScored(Step):
    kind = "test_scored"
    candidate_id: int
    test_score: float
    test_ci: tuple[float, float]
    n_test: int
    __test__ = False  # not a pytest class


@dataclass(frozen=True)
class RunFinished(Step):
    kind = "run_finished"
    reason: str
    best_id: int
    best_val: float
    rounds: int


# --- the context -----------------------------------------------------------------------------------

@dataclass
class Counters:
    """What a run has asked of its models. A *request* is a (prompt, example) pair or a proposer call asked for, cached
    or not (what budgets count); a *call* is a request the cache could not answer, made now to the model."""

    target_requests: int = 0  # distinct (prompt, example) pairs asked for, cached or not: the budget's unit
    target_calls: int = 0  # of them, calls made to the target in this execution (the rest came from the cache)
    target_cached: int = 0
    proposer_requests: int = 0
    proposer_calls: int = 0
    proposer_cached: int = 0
    proposer_tokens: int = 0
    calls_saved_by_gate: int = 0


@dataclass
class Budget:
    max_rounds: int = 5
    max_target_requests: int | None = None  # the search; final test scoring is outside it
    max_proposer_calls: int | None = None
    max_proposer_tokens: int | None = None
    patience: int | None = None  # rounds without improvement before stopping


@dataclass
class OptimizeContext:
    """What a strategy works with: data splits, the target, the metric, and budgeted cached calls."""

    store: Store
    run_id: str
    dataset: Dataset
    target: ModelSpec
    metric: Objective
    trainset: pd.DataFrame
    valset: pd.DataFrame
    testset: pd.DataFrame
    budget: Budget
    seed: int = 0
    task: str = ""
    max_tokens: int | None = None
    counters: Counters = field(default_factory=Counters)
    stage_cap: int | None = None  # a chain's per-stage limit on target requests (within the budget)
    # The part of val held back from the search: it confirms the finalists at the end (empty: runs
    # stored before confirmation existed pick the best search score, as they did).
    confirmset: pd.DataFrame = field(default_factory=pd.DataFrame)
    reserved: int = 0  # target requests the search leaves for the confirmation
    sample_scope: str | None = None  # names the proposers' draws (see RunConfig.samples); default the run id
    # How rounds are decided: "rounds" pauses after each for the analyst; "off" lets the rule decide and
    # records it; "unrecorded" (runs stored before decisions existed) records nothing, so they replay unchanged.
    review: str = "unrecorded"
    # Cost ceilings ({"tokens": 300, "latency": 0.5, "price": 0.2}: promptlab.cost): a candidate whose measured cost
    # per call breaks one is dropped at its first rung, like one the race told apart. "cheap": the result is the
    # cheapest candidate the confirmation cannot tell from the best (RunConfig.cost).
    ceilings: dict = field(default_factory=dict)
    prefer: str = "score"
    # No example judges itself (config version >= 4): demos come only from train rows whose input is not also a val or
    # test input, and a prompt's failures are probed only on rows that are not among its own demos. Runs stored before
    # replay as they ran.
    demos_apart: bool = False
    _requested: dict = field(default_factory=dict, repr=False)  # prompt id -> example idx already asked for
    _memo: dict = field(default_factory=dict, repr=False)
    # every example idx a search step read or showed (scored, shown to a proposer): what the decision may not use
    seen: set = field(default_factory=set, repr=False)

    def minibatch(self, size: int) -> pd.DataFrame:
        return stratified_sample(self.valset, size, seed=self.seed)

    def race_order(self) -> pd.DataFrame:
        """The search part of val in the order a race reads it: every prefix keeps the label mix."""
        if "_race_order" not in self._memo:
            self._memo["_race_order"] = stratified_order(self.valset, self.seed, self.dataset.has_labels)
        return self._memo["_race_order"]

    @property
    def demo_rows(self) -> pd.DataFrame:
        """The train rows demonstrations may be drawn from: with `demos_apart`, not one whose input text is also a val
        or test input (a duplicate would show that example its own answer)."""
        if not self.demos_apart:
            return self.trainset
        if "_demo_rows" not in self._memo:
            held = set(self.valset["text"]) | set(self.testset["text"])
            if len(self.confirmset):
                held |= set(self.confirmset["text"])
            self._memo["_demo_rows"] = self.trainset[~self.trainset["text"].isin(held)]
        return self._memo["_demo_rows"]

    def probe_rows(self, *templates: PromptTemplate) -> pd.DataFrame:
        """The train rows on which the failures of these prompts may be probed (the mistakes shown to proposers and the
        critic): with `demos_apart`, none of their fixed demos, nor a row with a demo's input. (A pool prompt never shows an input itself: see
        PromptTemplate.demos_for.)"""
        if not self.demos_apart:
            return self.trainset
        own = [d for t in templates if not t.similar_k for d in t.demos]
        rows = self.trainset
        return rows[~rows["idx"].isin({d.idx for d in own}) & ~rows["text"].isin({d.text for d in own})]

    def once(self, key: str, build):
        """`build()` computed once per run (the run's data does not change while it runs)."""
        if key not in self._memo:
            self._memo[key] = build()
        return self._memo[key]

    def inputs(self) -> list[str]:
        """Every input of the run's data a proposal must not copy: train and val, the held-back part included."""
        texts = list(self.trainset["text"]) + list(self.valset["text"])
        return texts + list(self.confirmset["text"]) if len(self.confirmset) else texts

    def first_rung(self, minibatch_size: int) -> int:
        """Examples a candidate's race reads first: what the smallest useful score of a new proposal costs."""
        return min(minibatch_size, len(self.valset))

    def show(self, examples: pd.DataFrame) -> None:
        """Record rows a search step showed (to a proposer, say) without scoring them: the decision does not use them."""
        self.seen.update(int(i) for i in examples["idx"])

    @property
    def language(self) -> str:
        """The data's language (ISO 639-1 code) from its train inputs; "en" when it cannot tell."""
        if "language" not in self._memo:
            self._memo["language"] = detect_language(self.trainset["text"].tolist())
        return self._memo["language"]

    def new_requests(self, prompt: PromptTemplate, examples: pd.DataFrame) -> set[int]:
        return set(examples["idx"].tolist()) - self._requested.get(prompt.id, set())

    def can_score(self, n: int, stage: bool = True) -> bool:
        """Whether n more requests fit the budget (less what the confirmation needs) and, with `stage`, the
        current stage's cap. A race already under way finishes with stage=False: a stage's cap decides what
        it may start, and the stages after it get what is left."""
        cap = None if self.budget.max_target_requests is None else self.budget.max_target_requests - self.reserved
        caps = [c for c in (cap, self.stage_cap if stage else None) if c is not None]
        return not caps or self.counters.target_requests + n <= min(caps)

    def score(self, prompt: PromptTemplate, examples: pd.DataFrame, *, budgeted: bool = True,
              stage: bool = True) -> EvalResult:
        """Score a prompt. The budget counts each (prompt, example) pair the run asks for once, whether
        the cache serves it or not, so a resumed run takes exactly the path the first one took.
        `stage=False`: a race under way, held to the run's budget only (see can_score)."""
        fresh = self.new_requests(prompt, examples)
        if budgeted and not self.can_score(len(fresh), stage):
            raise BudgetExhausted("target requests")
        result = evaluate(
            self.store, self.target, prompt, self.dataset, examples, self.metric,
            max_tokens=self.max_tokens, run_id=self.run_id,
        )
        self._requested.setdefault(prompt.id, set()).update(fresh)
        self.seen.update(fresh)
        if budgeted:
            self.counters.target_requests += len(fresh)
        self.counters.target_calls += result.calls
        self.counters.target_cached += result.cached
        return result

    def can_propose(self) -> bool:
        b, c = self.budget, self.counters
        if b.max_proposer_calls is not None and c.proposer_requests >= b.max_proposer_calls:
            return False
        if b.max_proposer_tokens is not None and c.proposer_tokens >= b.max_proposer_tokens:
            return False
        return True

    def propose(self, spec: ModelSpec, meta_prompt: str, params: dict, sample: str) -> Completion:
        if not self.can_propose():
            raise BudgetExhausted("proposer calls")
        result = cached_complete(
            self.store, spec, [{"role": "user", "content": meta_prompt}], params,
            sample=f"{self.sample_scope or self.run_id}/{sample}", run_id=self.run_id, purpose="propose",
        )
        self.counters.proposer_requests += 1
        self.counters.proposer_tokens += result.prompt_tokens + result.completion_tokens
        if result.cached:
            self.counters.proposer_cached += 1
        else:
            self.counters.proposer_calls += 1
        return result

