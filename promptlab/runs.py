"""Drives a strategy step by step and records each step as it arrives; resumes. (Reading a run back: results.)

A run is its stored config plus its stored steps. Executing a run replays the strategy from the start
with the same seed: steps already stored are skipped (their calls come back from the cache), the
first new step is where the interrupted run stopped. Nothing is lost and no finished call repeats.
"""
from __future__ import annotations

import math
import os
import threading
import uuid
from dataclasses import asdict, dataclass, field

from promptlab.cost import CeilingError, parse_ceilings
from promptlab.data import Dataset, holdout_split, resolve_dataset, stored_dataset
from promptlab.errors import PromptlabError
from promptlab.evaluate import PromptTemplate
from promptlab.models import ModelSpec, resolve_model, spec_from_record
from promptlab.optimize import prompts as P
from promptlab.optimize.arena import Arena
from promptlab.optimize.auto import Auto
from promptlab.optimize.chain import Chain
from promptlab.optimize.fewshot import FewShot
from promptlab.optimize.gradient import Gradient
from promptlab.optimize.pool import PoolStrategy
from promptlab.optimize.settings import merged_settings, settings_of
from promptlab.optimize.base import (
    Budget, CandidateProposed, CandidateScored, Confirmed, Decided, OptimizeContext, Step, TestScored,
)
from promptlab.results import summarize
from promptlab.scoring.objective import JudgeSettings, judge_record, parse_objective
from promptlab.store import Store

DEFAULT_BASELINE = "Classify the text. Answer with one of these labels: {labels}."
DEFAULT_BASELINES = {  # by dataset kind
    "labels": DEFAULT_BASELINE,
    "reference": "Answer the question or do what the input asks. Reply with the answer only, nothing else.",
    "unlabeled": "Respond to the input helpfully and concisely.",
}
DEFAULT_TASKS = {
    "labels": "Label each text from the dataset '{name}' with the right label.",
    "reference": "Answer each input from the dataset '{name}'; each reply is compared with a reference answer.",
    "unlabeled": "Respond to each input from the dataset '{name}'; each reply is graded by a rubric.",
}
REVIEW_MODES = ("off", "rounds")
SHARES = ("instructions_share", "demos_share", "demo_instructions_share", "edits_share")  # auto's stages


def default_task(dataset: Dataset) -> str:
    """The task description proposers see when the analyst wrote none."""
    return DEFAULT_TASKS[dataset.kind].format(name=dataset.name)

STRATEGIES = {"arena": Arena, "fewshot": FewShot, "gradient": Gradient, "auto": Auto}
DEFAULT_STRATEGY = "auto"
# What the Runs page and the CLI's help offer: the default first, each strategy alone, the usual chains.
STRATEGY_MENU = [DEFAULT_STRATEGY] + [n for n in STRATEGIES if n != DEFAULT_STRATEGY] + [
    "arena,fewshot", "arena,gradient", "arena,gradient,fewshot"]
# Runs stored before racing and confirmation (config version 1) replay with the defaults they ran with.
# Runs stored before version 3 replay without the instructions-for-demos stage, the evidence-based patience, the
# few-shot factorial start and the proposers' angles, as they ran.
V2_DEFAULTS = {"demo_instructions_share": 0.0, "evidence": False, "factorial_start": False, "angles": False}
LEGACY_DEFAULTS = {"gate": "ci", "gate_level": 0.8, "minibatch_size": 24, "confirm": 0.0, "show_rejected": 0,
                   "language": "off", "trials_per_round": 4} | V2_DEFAULTS
CONFIG_VERSION = 3
PREFER = ("score", "cheap")  # which confirmed candidate is the result: the best, or the cheapest within noise of it
# Settings every strategy shares (racing and the confirmation of the result); the rest are a strategy's own.
FRAME_SETTINGS = tuple(s.name for s in settings_of(PoolStrategy))
STRUCTURAL = {"proposers", "baselines", "meta_prompt", "name", "instructions", "demos_stage", "demo_instructions",
              "edits", "patience", "leader_demos"}


def strategy_classes(strategy: str) -> list[type]:
    """The classes whose settings a strategy name (or chain) takes: auto takes its stages' too."""
    out = []
    for name in strategy_names(strategy):
        out += [Auto, Arena, FewShot, Gradient] if name == "auto" else [STRATEGIES[name]]
    return list(dict.fromkeys(out))


def strategy_settings(strategy: str) -> dict:
    """name -> Setting for a strategy (or chain): what make_config checks, the CLI and the Runs page show."""
    return merged_settings(strategy_classes(strategy))


SETTING_GROUPS = {"auto": "auto: the stages' shares and patience", "arena": "Instructions (the arena's proposers)",
                  "fewshot": "Demonstrations (few-shot)", "gradient": "Edits (textual gradients)",
                  "frame": "Racing and the result: how much of val each candidate gets, and what confirms the winner"}


def settings_by_stage(strategy: str) -> list[tuple[str, dict]]:
    """A strategy's settings grouped as the Runs page's Advanced section shows them: each stage's own (in the
    order the stages run), then racing and the confirmation, which every strategy shares. Each setting once."""
    merged = strategy_settings(strategy)
    shown: set[str] = set(FRAME_SETTINGS)
    out = []
    for cls in strategy_classes(strategy):
        own = {s.name: merged[s.name] for s in settings_of(cls) if s.name not in shown}
        shown |= set(own)
        if own:
            out.append((SETTING_GROUPS.get(cls.name, cls.name), own))
    out.append((SETTING_GROUPS["frame"], {k: merged[k] for k in FRAME_SETTINGS if k in merged}))
    return out


def all_settings() -> dict:
    """Every strategy's settings (the CLI offers them all; each run checks those of its strategy)."""
    return merged_settings([Auto, Arena, FewShot, Gradient])


def strategy_names(strategy: str) -> list[str]:
    """'arena,fewshot' -> ['arena', 'fewshot'], refusing unknown names with the list of known ones."""
    names = [n.strip().lower() for n in str(strategy).split(",") if n.strip()]
    unknown = [n for n in names if n not in STRATEGIES]
    if not names or unknown:
        raise PromptlabError(f"unknown strategy '{', '.join(unknown) or strategy}': use one of {', '.join(STRATEGIES)}, "
                             "or several joined by commas (e.g. arena,fewshot)")
    return names


@dataclass(frozen=True)
class RunConfig:
    """Everything that defines a run; stored verbatim (including the meta-prompt template)."""

    dataset_id: str
    target: dict  # ModelSpec record (no secrets)
    proposers: tuple[dict, ...]
    metric: str = "accuracy"
    seed: int = 0
    strategy: str = DEFAULT_STRATEGY
    strategy_params: dict = field(default_factory=dict)
    budget: dict = field(default_factory=dict)
    baselines: tuple[dict, ...] = ({"system": DEFAULT_BASELINE, "user": "{input}"},)
    meta_prompt: str = P.DEFAULT_META_PROMPT
    task: str = ""
    split_seed: int | None = None
    max_tokens: int | None = None
    # Which draws of the (sampling) proposers a run gets. "seed": the run's seed names them, so the same
    # command run again gets the same replies from the cache, and a new seed gets new ones. "run": each
    # run draws afresh (how runs stored before this field were keyed; kept so they resume on their cache).
    samples: str = "seed"
    judge: dict | None = None  # the LLM judge (model spec record, rubric, lo, hi) when the metric is "judge"
    # "rounds": pause after every round for the analyst's decisions; "off": the rule decides (recorded).
    # Runs stored before decisions existed read as "none" and replay exactly as they ran.
    review: str = "off"
    # What a call may cost and which result to prefer: {"ceilings": {"tokens": 300, ...}, "prefer": "cheap"}
    # (promptlab.cost). Empty (and left out of the record, so configs stored before it still match) by default.
    cost: dict = field(default_factory=dict)
    # 2: racing, confirmation on held-back val, rejected candidates shown. Runs stored before read as 1 and
    # replay with LEGACY_DEFAULTS.
    version: int = CONFIG_VERSION

    def to_record(self) -> dict:
        rec = asdict(self)
        if not rec["cost"]:
            rec.pop("cost")
        rec["proposers"] = list(self.proposers)
        rec["baselines"] = list(self.baselines)
        return rec

    @classmethod
    def from_record(cls, rec: dict) -> "RunConfig":
        rec = dict(rec)
        rec.setdefault("samples", "run")
        rec.setdefault("review", "none")
        rec.setdefault("version", 1)
        rec["proposers"] = tuple(rec["proposers"])
        rec["baselines"] = tuple(rec["baselines"])
        return cls(**{k: v for k, v in rec.items() if k in cls.__dataclass_fields__})


def make_config(
    dataset: Dataset,
    target: ModelSpec,
    proposers: list[ModelSpec],
    *,
    metric: str | None = None,
    seed: int = 0,
    rounds: int = 5,
    budget_calls: int | None = None,
    max_proposer_calls: int | None = None,
    max_proposer_tokens: int | None = None,
    patience: int | None = None,
    baselines: list[PromptTemplate] | None = None,
    meta_prompt: str | None = None,
    task: str | None = None,
    strategy: str = DEFAULT_STRATEGY,
    judge: dict | None = None,
    review: str = "off",
    store: Store | None = None,
    arena_k: int | None = None,
    candidates: int | None = None,
    ceilings: list[str] | dict | None = None,
    prefer: str = "score",
    **strategy_params,
) -> RunConfig:
    """Validate user choices into a RunConfig; every mistake is a PromptlabError naming the fix.

    `metric`: a label metric for labeled datasets; a scorer or "judge" for the others. `judge`: the
    judge record ({model: name or spec record, rubric, lo, hi}); without one the dataset's own is used.
    `review`: "rounds" pauses after every round for the analyst's decisions. `ceilings`: cost ceilings
    ("tokens<=300", "latency<=0.5", "price<=0.2", or a dict of them) no candidate may break; `prefer`: "score" (the
    best confirmed candidate is the result) or "cheap" (the cheapest the confirmation cannot tell from it).
    `strategy_params`: the strategy's settings (see `strategy_settings`), each checked by its own declaration."""
    names = strategy_names(strategy)
    if prefer not in PREFER:
        raise PromptlabError(f"prefer must be {' or '.join(PREFER)}, not {prefer!r}")
    try:
        ceilings = dict(ceilings) if isinstance(ceilings, dict) else parse_ceilings(ceilings or [])
    except CeilingError as exc:
        raise PromptlabError(str(exc)) from None
    cost = ({"ceilings": ceilings} if ceilings else {}) | ({"prefer": prefer} if prefer != "score" else {})
    if review not in REVIEW_MODES:
        raise PromptlabError(f"review must be {' or '.join(REVIEW_MODES)}, not {review!r}")
    needing = sorted(n for n in names if STRATEGIES[n].needs_proposers)
    if not proposers and needing:
        raise PromptlabError(f"the {' and '.join(needing)} strategy needs proposer models (--proposers M1,M2)")
    if rounds < 1:
        raise PromptlabError("--rounds must be at least 1")
    if arena_k is not None:
        strategy_params["arena_k"] = arena_k
    if candidates is not None:
        strategy_params["candidates_per_proposer"] = candidates
    settings = strategy_settings(strategy)
    # Library callers may also set a strategy's finer knobs (its other fields); users get the declared settings.
    knobs = set().union(*(cls.__dataclass_fields__ for cls in strategy_classes(strategy))) - STRUCTURAL
    unknown = set(strategy_params) - set(settings) - knobs
    if unknown:
        raise PromptlabError(f"unknown {'/'.join(names)} setting(s): {', '.join(sorted(unknown))}")
    # Every declared setting is stored with its value, defaults included: a stored run says what it ran with,
    # and replays the same way after a later release changes a default.
    params = {k: (list(v.default) if isinstance(v.default, tuple) else v.default) for k, v in settings.items()
              if v.type != "model"}
    for key, value in strategy_params.items():
        value = settings[key].check(value) if key in settings else value
        if isinstance(value, ModelSpec):
            value = value.to_record()
        params[key] = value
    if params.get("arena_k") == 0:
        params["arena_k"] = None  # 0: every proposer, every round
    objective = parse_objective(metric, dataset, judge, store)  # no judge given: the dataset's own
    metric = objective.spec
    judge_rec = objective.judge.to_record() if getattr(objective, "judge", None) is not None else None
    template = meta_prompt or P.default_meta_prompt(dataset.has_labels)
    try:
        P.check_template(template)
    except P.MetaPromptError as exc:
        raise PromptlabError(str(exc)) from None
    baselines = baselines or [PromptTemplate.from_text(DEFAULT_BASELINES[dataset.kind])]
    for b in baselines:
        b.check(dataset.input_cols)
    demos = params.get("demos", "none")
    if demos == "per-label" and not dataset.has_labels:
        raise PromptlabError(f"'{dataset.name}' has no labels: give a number of demos instead of per-label")
    if demos not in ("none", 0) and dataset.kind == "unlabeled":
        raise PromptlabError(f"'{dataset.name}' has no reference answers to show as demos: use --demos none "
                             "(the few-shot strategy can still use the target's own full-marks replies)")
    if demos not in ("none", 0) and not proposers and not (set(names) - {"auto", "fewshot"}):
        # auto attaches --demos to its instruction stage, which needs proposers; without them the demo
        # stage searches demo sets on its own, and a fixed set would be dropped without a word.
        raise PromptlabError("--demos attaches demos to proposed instructions, and this run has no proposers: drop "
                             "--demos (the demonstration stage searches demo sets itself) or add --proposers")
    if "auto" in names and sum(params[k] for k in SHARES) <= 0:
        raise PromptlabError("auto needs a share above 0 for at least one stage (instructions, demos or edits)")
    if prefer == "cheap" and not params["confirm"] > 0:
        raise PromptlabError("--prefer cheap picks among candidates the confirmation cannot tell apart: it needs "
                             "--confirm above 0")
    if params["confirm"] > 0:  # every declared setting is in params, defaults included
        n_val = len(dataset.split("val"))
        held = int(round(n_val * params["confirm"]))
        if held < 4 or n_val - held < 4:
            raise PromptlabError(f"val has {n_val} examples: too few to hold {held} back for the confirmation and race on "
                                 "the rest. Give the dataset more rows, or --confirm 0 to pick the best search score")
    return RunConfig(
        dataset_id=dataset.id, target=target.to_record(), proposers=tuple(p.to_record() for p in proposers),
        metric=metric, seed=seed, strategy=",".join(names), strategy_params=params,
        budget={"max_rounds": rounds, "max_target_calls": budget_calls, "max_proposer_calls": max_proposer_calls,
                "max_proposer_tokens": max_proposer_tokens, "patience": patience},
        baselines=tuple(b.to_record() for b in baselines),
        meta_prompt=template, task=task or default_task(dataset),
        judge=judge_rec, review=review, cost=cost,
    )


def build(store: Store, config: RunConfig, run_id: str) -> tuple[object, OptimizeContext]:
    dataset = stored_dataset(store, config.dataset_id)
    target = spec_from_record(config.target)
    common = {
        "proposers": tuple(spec_from_record(p) for p in config.proposers),
        "baselines": tuple(PromptTemplate.from_record(b) for b in config.baselines),
        "meta_prompt": config.meta_prompt,
    }
    params = dict(LEGACY_DEFAULTS) if config.version < 2 else dict(V2_DEFAULTS) if config.version < 3 else {}
    params.update(config.strategy_params)
    settings = all_settings()
    for key, value in list(params.items()):
        if key in settings and settings[key].type == "model" and isinstance(value, dict):
            params[key] = spec_from_record(value)
        elif key in settings and settings[key].type == "choices" and isinstance(value, list):
            params[key] = tuple(value)
    stages = [_make_stage(name, common, params) for name in strategy_names(config.strategy)]
    strategy = stages[0] if len(stages) == 1 else Chain(tuple(stages))
    valset = dataset.split("val", config.split_seed)
    confirmset = valset.iloc[:0]
    share = getattr(stages[0], "confirm", 0.0)
    if share:
        valset, confirmset = holdout_split(valset, share, config.seed, dataset.has_labels)
    ctx = OptimizeContext(
        store=store, run_id=run_id, dataset=dataset, target=target,
        metric=parse_objective(config.metric, dataset, config.judge, store),
        trainset=dataset.split("train", config.split_seed), valset=valset,
        testset=dataset.split("test", config.split_seed), budget=Budget(**config.budget), seed=config.seed,
        task=config.task, max_tokens=config.max_tokens,
        sample_scope=f"seed-{config.seed}" if config.samples == "seed" else run_id, review=config.review,
        confirmset=confirmset, ceilings=dict(config.cost.get("ceilings") or {}),
        prefer=config.cost.get("prefer", "score"),
    )
    return strategy, ctx


def _make_stage(name: str, common: dict, params: dict, **extra):
    """One strategy from a run's settings; auto gets its stages built the same way."""
    def make(cls, **more):
        fields = cls.__dataclass_fields__
        return cls(**{k: v for k, v in {**common, **params, **more}.items() if k in fields})

    if name != "auto":
        return make(STRATEGIES[name], **extra)
    auto = make(Auto)
    has_proposers = bool(common["proposers"])
    proposing = {"patience": auto.stage_patience}
    return make(
        Auto,
        instructions=make(Arena, **proposing) if has_proposers and auto.instructions_share > 0 else None,
        demos_stage=make(FewShot) if auto.demos_share > 0 else None,
        demo_instructions=(make(Arena, leader_demos=True, **proposing)
                           if has_proposers and auto.demo_instructions_share > 0 else None),
        edits=make(Gradient, **proposing) if has_proposers and auto.edits_share > 0 else None,
    )


def projection(store: Store, config: RunConfig) -> dict:
    """The calls a run will request, before it starts, and what racing and the confirmation do with them."""
    strategy, ctx = build(store, config, "projection")
    n_val, n_confirm = len(ctx.valset), len(ctx.confirmset)
    proj = strategy.projection(len(ctx.trainset), n_val, len(ctx.testset), ctx.budget.max_rounds) | {
        "budget_calls": ctx.budget.max_target_calls, "n_val_search": n_val, "n_confirm": n_confirm,
        "confirm_calls": strategy.confirm_reserve(n_confirm) if n_confirm else 0,
        "confidence": strategy.confidence,
    }
    gate = strategy.gate_config
    if proj.get("candidates") and gate.kind != "off":
        per = max(1.0, (proj["target_search"]["expected"] - proj["baseline_calls"]) / proj["candidates"])
        proj["per_candidate"] = round(per, 1)  # expected target requests a candidate costs, racing it
        if proj["budget_calls"]:
            room = max(0, proj["budget_calls"] - proj["baseline_calls"] - proj["confirm_calls"])
            proj["candidates_in_budget"] = int(room / per)
            proj["candidates_full_val"] = int(room / n_val) if n_val else 0
    return proj


def projection_line(proj: dict) -> str:
    """The projection in words (the CLI and the Runs page): calls, racing, confirmation."""
    search = proj["target_search"]
    cap = f", capped by the budget at {proj['budget_calls']}" if proj["budget_calls"] else ""
    line = (f"target calls for the search {search['min']}–{search['max']} (expected ~{search['expected']}{cap}), "
            f"{proj['target_test']} for the final test scoring, {proj['proposer_calls']} proposer calls")
    if proj.get("per_candidate"):
        line += (f"; racing scores a candidate on ~{proj['per_candidate']:.0f} of {proj['n_val_search']} search-val "
                 "examples on average (only finalists read them all)")
        if proj.get("candidates_in_budget") is not None:
            line += (f", so the budget tries ~{proj['candidates_in_budget']} candidates where scoring each on all of "
                     f"val would try {proj['candidates_full_val']}")
    if proj.get("n_confirm"):
        # The smallest gain the one-sided paired sign test at `confidence` can confirm on n examples, even with
        # every changed answer in the candidate's favour: 0.5**(g n) < 1 - confidence, so g > log2(1/(1-c)) / n.
        floor = math.log2(1 / (1 - proj["confidence"])) / proj["n_confirm"]
        line += (f"; {proj['n_confirm']} val examples are held back to confirm the finalists "
                 f"(up to {proj['confirm_calls']} calls, inside the budget), so only a gain of at least "
                 f"~{min(1.0, floor):.2f} can replace the baseline" + (" (add rows, or lower --confirm)" if floor > 0.25 else ""))
    return line + "; calls already in the cache are free"


def budget_problem(proj: dict, flag: str = "the budget") -> str | None:
    """Why a run with this projection could not do anything, or None."""
    need = proj["baseline_calls"] + proj["confirm_calls"]
    if proj["budget_calls"] is not None and proj["budget_calls"] < need:
        held = (f" and hold back {proj['confirm_calls']} for confirming the finalists on the held-back val examples"
                if proj["confirm_calls"] else "")
        return (f"{flag} of {proj['budget_calls']} target calls cannot even score the baseline(s) on the val split "
                f"({proj['baseline_calls']} calls){held}. Raise it to at least "
                f"{max(need + 1, proj['target_search']['min'])}" + (", or lower --confirm." if held else "."))
    return None


@dataclass(frozen=True)
class RunRequest:
    """A run as the CLI and the Runs page ask for it: everything by name, nothing resolved yet (see `plan`)."""

    dataset: str  # a stored dataset's name or id, or a file path to import
    target: str  # models: configured names, local/<key>, or litellm model strings
    proposers: tuple[str, ...] = ()
    metric: str | None = None  # with its floors, e.g. "recall:fraud; precision:fraud>=0.4"
    strategy: str = DEFAULT_STRATEGY
    rounds: int = 5
    seed: int = 0
    budget: int | None = None  # target calls for the search
    patience: int | None = None
    max_proposer_calls: int | None = None
    max_proposer_tokens: int | None = None
    settings: dict = field(default_factory=dict)  # strategy settings by name; a model-typed one by model name
    baselines: tuple[PromptTemplate, ...] = ()  # none: the default for the dataset's kind
    meta_prompt: str | None = None
    task: str | None = None
    judge: JudgeSettings | None = None
    review: bool = False  # pause after every round for the analyst's decisions
    ceilings: tuple[str, ...] = ()  # cost ceilings, e.g. ("tokens<=300",)
    prefer: str = "score"  # or "cheap": the cheapest candidate the confirmation cannot tell from the best


@dataclass(frozen=True)
class Plan:
    """A run ready to create: its config, what it resolved, the calls it will request, and why it cannot run."""

    config: RunConfig
    dataset: Dataset
    target: ModelSpec
    proposers: tuple[ModelSpec, ...]
    line: str  # the projection in words
    problem: str | None  # a budget that cannot even score the baselines; None when the run can start


def plan(store: Store, request: RunRequest, *, budget_name: str = "the budget") -> Plan:
    """Resolve a request (dataset, models and model-typed settings by name, the judge against the dataset's own)
    into a checked RunConfig with its projection. `budget_name`: how the caller's user knows the budget, for
    the problem's wording (the CLI: --budget). Every mistake is a PromptlabError naming the fix."""
    dataset = resolve_dataset(store, request.dataset)
    target = resolve_model(request.target, store)
    proposers = tuple(resolve_model(name, store) for name in request.proposers)
    declared = all_settings()
    settings = {name: resolve_model(value, store) if name in declared and declared[name].type == "model" else value
                for name, value in request.settings.items() if value is not None}
    config = make_config(
        dataset, target, list(proposers), metric=request.metric, seed=request.seed, rounds=request.rounds,
        budget_calls=request.budget, max_proposer_calls=request.max_proposer_calls,
        max_proposer_tokens=request.max_proposer_tokens, patience=request.patience,
        baselines=list(request.baselines) or None, meta_prompt=request.meta_prompt, task=request.task,
        strategy=request.strategy, judge=judge_record(request.judge, dataset),
        review="rounds" if request.review else "off", store=store, ceilings=list(request.ceilings),
        prefer=request.prefer, **settings,
    )
    proj = projection(store, config)
    return Plan(config, dataset, target, proposers, projection_line(proj), budget_problem(proj, budget_name))


def create_run(store: Store, config: RunConfig) -> str:
    run_id = "run-" + uuid.uuid4().hex[:10]
    store.create_run(run_id, "optimize", config.dataset_id, config.to_record())
    store.set_run_status(run_id, "created")
    return run_id


def mark_dead_runs(store: Store, live: set[str] = frozenset()) -> list[str]:
    """Runs left 'running' by a process that is gone become 'interrupted' (resumable). Returns their ids.

    `live`: run ids this process is executing right now (a dashboard's worker threads).
    """
    here = os.uname().nodename
    marked = []
    for run_id, pid, host in store.running_runs():
        if run_id in live or host != here or pid is None:
            continue
        if pid == os.getpid():
            alive = False  # this process is not executing it (not in `live`)
        else:
            try:
                os.kill(pid, 0)
                alive = True
            except ProcessLookupError:
                alive = False
            except PermissionError:
                alive = True
        if not alive:
            store.mark_interrupted(run_id)
            marked.append(run_id)
    return marked


def _candidate_update(step: Step) -> dict | None:
    if isinstance(step, CandidateProposed):
        return {"id": step.candidate_id, "prompt_id": step.prompt_id, "round": step.round, "proposer": step.proposer,
                "family": step.family, "parents": list(step.parents), "meta_prompt": step.meta_prompt,
                "raw_reply": step.raw_reply, "text": step.text, "system": step.system, "user": step.user,
                "demos": list(step.demos), "demo_format": step.demo_format, "similar_k": step.similar_k,
                "similar_by": step.similar_by}
    if isinstance(step, CandidateScored):
        return {"id": step.candidate_id, "status": step.status, "minibatch_score": step.minibatch_score,
                "val_score": step.val_score,
                "extra": {"val_ci": step.val_ci, "n_val": step.n_val, "calls_saved": step.calls_saved,
                          "target_requests": step.target_requests, "n_scored": step.n_scored}}
    if isinstance(step, Confirmed):
        return {"id": step.candidate_id, "extra": {"confirm_score": step.confirm_score, "confirm_ci": step.confirm_ci,
                                                   "n_confirm": step.n_confirm}}
    if isinstance(step, Decided) and step.candidate_id is not None and step.action in ("keep", "discard", "edit", "add"):
        return {"id": step.candidate_id, "extra": {"decision": "keep" if step.action in ("edit", "add") else step.action,
                                                   "decided_by": step.who}}
    if isinstance(step, TestScored):
        return {"id": step.candidate_id, "test_score": step.test_score,
                "extra": {"test_ci": step.test_ci, "n_test": step.n_test}}
    return None


def execute(store: Store, run_id: str, stop: threading.Event | None = None, on_step=None) -> dict:
    """Run (or resume) a run to its end, committing each step as it arrives. Returns the summary.

    `stop`: set it to stop after the current step (status 'stopped'; resumable). `on_step(step)` is
    called after each new step is committed.
    """
    rec = store.run_row(run_id)
    if rec is None:
        raise PromptlabError(f"no run '{run_id}' (see `runs list`)")
    config = RunConfig.from_record(rec["config"])
    strategy, ctx = build(store, config, run_id)
    stored_kinds = store.step_kinds(run_id)
    store.set_run_status(run_id, "running")
    status = "finished"
    try:
        for seq, step in enumerate(strategy.run(ctx)):
            replayed = seq < len(stored_kinds)
            if replayed and stored_kinds[seq] != step.kind:
                raise PromptlabError(
                    f"run {run_id} cannot resume: replay diverged at step {seq} ({step.kind} instead of "
                    f"{stored_kinds[seq]}). The target model is not deterministic, or its settings changed."
                )
            if not replayed:
                store.save_step(run_id, seq, step.kind, _jsonable(step.to_record()), _candidate_update(step))
                if on_step:
                    on_step(step)
            if step.kind == "review_requested" and not round_closed(store, run_id, step.round):
                status = "paused"  # the analyst decides; continuing replays up to here and reads the decisions
                break
            if replayed:
                continue
            if stop is not None and stop.is_set():
                status = "stopped"
                break
    except KeyboardInterrupt:
        store.set_run_status(run_id, "interrupted")
        raise
    except BaseException as exc:
        store.finish_run(run_id, "failed", summarize(store, run_id, ctx.counters), error=str(exc)[:1000])
        raise
    summary = summarize(store, run_id, ctx.counters) | {"status": status}
    store.finish_run(run_id, status, summary)
    return summary


def round_closed(store: Store, run_id: str, round_: int) -> bool:
    """Whether the analyst has closed this round (continue or stop), so the run may go on."""
    return any(d["action"] in ("continue", "stop") for d in store.decisions(run_id, round_))


def _jsonable(obj):
    if isinstance(obj, float) and math.isnan(obj):
        return None
    if isinstance(obj, dict):
        return {k: _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    return obj
