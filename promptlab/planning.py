"""Planning a run: a request by names (dataset, models, strategy, settings) -> a checked, stored-as-is RunConfig and
its projection (the calls it will request), before anything runs. `build` turns a stored config back into the
strategy and its context, for the projection and for `runs.execute`; `preview_meta_prompt` shows the meta-prompt
a run's proposers would see. (Driving a run: runs.py.)
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field

import pandas as pd

from promptlab.data import Dataset, resolve_dataset, stored_dataset
from promptlab.errors import PromptlabError
from promptlab.models import ModelSpec, resolve_model, spec_from_record
from promptlab.optimize import ceiling, meta_prompt as P
from promptlab.optimize.auto import SHARES
from promptlab.optimize.base import Budget, OptimizeContext
from promptlab.optimize.confirmation import split_val
from promptlab.optimize.proposals import ProposerSettings
from promptlab.optimize.registry import (
    DEFAULT_STRATEGY, STRATEGIES, STRUCTURAL, all_settings, make_strategy, strategy_classes, strategy_names,
    strategy_settings,
)
from promptlab.prompt import PromptTemplate, template_text
from promptlab.scoring import Objective
from promptlab.scoring.objective import JudgeSettings, judge_record, parse_objective
from promptlab.scoring.stats import smallest_shippable_gain
from promptlab.store import Store

DEFAULT_BASELINE = "Classify the text. Answer with one of these labels: {labels}."
DEFAULT_BASELINES = {  # by dataset kind
    "labels": DEFAULT_BASELINE,
    "reference": "Answer the question or do what the input asks. Reply with the answer only, nothing else.",
    "unlabeled": "Respond to the input helpfully and concisely.",
}
SECOND_PROMPTS = {  # by dataset kind: a second prompt to score beside the default one in a manual search
    "labels": "Route the text to one label: {labels}.\nAnswer with the label name only.",
    "reference": "Reply with the answer alone: no sentence, no explanation.",
    "unlabeled": "Reply with the answer alone: no sentence, no explanation.",
}
DEFAULT_TASKS = {
    "labels": "Label each text from the dataset '{name}' with the right label.",
    "reference": "Answer each input from the dataset '{name}'; each reply is compared with a reference answer.",
    "unlabeled": "Respond to each input from the dataset '{name}'; each reply is graded by a rubric.",
}
REVIEW_MODES = ("off", "rounds")


def starting_prompts(kind: str) -> tuple[str, str]:
    """The prompts a manual search starts from: the baseline a run of this kind of dataset starts from, and a second."""
    return DEFAULT_BASELINES[kind], SECOND_PROMPTS[kind]


def default_task(dataset: Dataset) -> str:
    """The task description proposers see when the analyst wrote none."""
    return DEFAULT_TASKS[dataset.kind].format(name=dataset.name)


# Runs stored before racing and confirmation (config version 1) replay with the defaults they ran with.
# Runs stored before version 3 replay without the instructions-for-demos stage, the evidence-based patience, the
# few-shot factorial start and the proposers' angles, as they ran.
# Runs stored before version 4 replay with the decision that tested "not better" on held-back val alone, without the
# simplification of the result or its parts on test, and with the search that neither raced every proposal nor
# dropped copied inputs nor kept a prompt's own demos out of its probes, as they ran.
V3_DEFAULTS = {"harm_margin": 0.0, "raced_patience": False, "copy_screen": False, "demos_apart": False,
               "decide_on_unseen": False, "second_look": False, "test_parts": False,
               "simplify_reserve": 0}
V2_DEFAULTS = {"demo_instructions_share": 0.0, "evidence": False, "factorial_start": False, "angles": False} | V3_DEFAULTS
LEGACY_DEFAULTS = {"gate": "ci", "gate_level": 0.8, "minibatch_size": 24, "confirm": 0.0, "show_rejected": 0,
                   "language": "off", "trials_per_round": 4} | V2_DEFAULTS
CONFIG_VERSION = 4
# The names a run's record keeps for concepts renamed since (code name -> stored name). The record is the contract:
# a stored run, a benchmark's finished run and a group (by the hash of its members' records) are found again by their
# records, so the record keeps the names it always had, and only RunConfig's to_record / from_record translate. (The budget counts target
# requests, each (prompt, example) pair asked for once, cached or not; the CLI's --arena and --candidates always
# had their code names.)
STORED_AS = {"strategy_params": {"arena": "arena_k", "candidates": "candidates_per_proposer"},
             "budget": {"max_target_requests": "max_target_calls"}}
OLD_KEYWORDS = {"budget_calls": "budget", "arena_k": "arena", "candidates_per_proposer": "candidates"}  # for the hint
# What ships after the decision: "simple" (the default) the simplest, cheapest variant of the decided result that is no
# worse than it beyond the simplification margin; "score" the decided result unsimplified. "cheap" names the rule
# of runs stored before the simplification (the cheapest candidate the held-back examples cannot tell from the best);
# asked for now, it means "simple".
PREFER = ("simple", "score")
DEFAULT_PREFER = "simple"
PREFER_ALIASES = {"cheap": "simple"}


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
    # Runs stored before decisions existed read as "unrecorded" (stored then as "none", or not at all) and replay
    # exactly as they ran.
    review: str = "off"
    # What a call may cost and which result to prefer: {"ceilings": {"tokens": 300, ...}, "prefer": "score"}
    # (promptlab.optimize.ceiling). Empty (and left out of the record, so configs stored before it still match) by default.
    cost: dict = field(default_factory=dict)
    # 2: racing, confirmation on held-back val, rejected candidates shown (runs stored before read as 1 and replay with
    # LEGACY_DEFAULTS); 3: the instruction search of issue 24; 4: the decision, the simplification and the honest
    # probes of issue 31 (see V3_DEFAULTS).
    version: int = CONFIG_VERSION

    def to_record(self) -> dict:
        rec = asdict(self)
        if not rec["cost"]:
            rec.pop("cost")
        rec["proposers"] = list(self.proposers)
        rec["baselines"] = list(self.baselines)
        for part, names in STORED_AS.items():
            rec[part] = {names.get(k, k): v for k, v in rec[part].items()}
        return rec

    @classmethod
    def from_record(cls, rec: dict) -> "RunConfig":
        rec = dict(rec)
        rec.setdefault("samples", "run")
        rec["review"] = {"none": "unrecorded", None: "unrecorded"}.get(rec.get("review"), rec.get("review"))
        rec.setdefault("version", 1)
        rec["proposers"] = tuple(rec["proposers"])
        rec["baselines"] = tuple(rec["baselines"])
        for part, names in STORED_AS.items():
            code = {stored: name for name, stored in names.items()}
            rec[part] = {code.get(k, k): v for k, v in (rec.get(part) or {}).items()}
        return cls(**{k: v for k, v in rec.items() if k in cls.__dataclass_fields__})


def make_config(
    dataset: Dataset,
    target: ModelSpec,
    proposers: list[ModelSpec],
    *,
    metric: str | None = None,
    seed: int = 0,
    rounds: int = 5,
    budget: int | None = None,
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
    ceilings: list[str] | dict | None = None,
    prefer: str = DEFAULT_PREFER,
    **strategy_params,
) -> RunConfig:
    """Validate user choices into a RunConfig; every mistake is a PromptlabError naming the fix.

    `metric`: a label metric for labeled datasets; a scorer or "judge" for the others. `judge`: the
    judge record ({model: name or spec record, rubric, lo, hi}); without one the dataset's own is used.
    `review`: "rounds" pauses after every round for the analyst's decisions. `ceilings`: cost ceilings
    ("tokens<=300", "latency<=0.5", "price<=0.2", or a dict of them) no candidate may break; `prefer`: "simple" (the
    simplest, cheapest variant of the decided result no worse than it beyond a margin ships) or "score" (the decided
    result ships as it is).
    `strategy_params`: the strategy's settings (see `strategy_settings`), each checked by its own declaration."""
    names = strategy_names(strategy)
    cost = _cost_choice(ceilings, prefer)
    _check_choices(names, bool(proposers), review, rounds)
    params = _strategy_params(strategy, strategy_params)
    objective = parse_objective(metric, dataset, judge, store)  # no judge given: the dataset's own
    judge_rec = objective.judge.to_record() if getattr(objective, "judge", None) is not None else None
    template = meta_prompt or P.default_meta_prompt(dataset.has_labels)
    try:
        P.check_template(template)
    except P.MetaPromptError as exc:
        raise PromptlabError(str(exc)) from None
    baselines = baselines or [PromptTemplate.from_text(DEFAULT_BASELINES[dataset.kind])]
    for b in baselines:
        b.check(dataset.input_cols)
    _check_against_data(dataset, names, params, bool(proposers), prefer)
    return RunConfig(
        dataset_id=dataset.id, target=target.to_record(), proposers=tuple(p.to_record() for p in proposers),
        metric=objective.spec, seed=seed, strategy=",".join(names), strategy_params=params,
        budget={"max_rounds": rounds, "max_target_requests": budget, "max_proposer_calls": max_proposer_calls,
                "max_proposer_tokens": max_proposer_tokens, "patience": patience},
        baselines=tuple(b.to_record() for b in baselines),
        meta_prompt=template, task=task or default_task(dataset),
        judge=judge_rec, review=review, cost=cost,
    )


def _check_choices(names: list[str], has_proposers: bool, review: str, rounds: int) -> None:
    if review not in REVIEW_MODES:
        raise PromptlabError(f"review must be {' or '.join(REVIEW_MODES)}, not {review!r}")
    needing = sorted(n for n in names if STRATEGIES[n].needs_proposers)
    if not has_proposers and needing:
        raise PromptlabError(f"the {' and '.join(needing)} strategy needs proposer models (--proposers M1,M2)")
    if rounds < 1:
        raise PromptlabError("--rounds must be at least 1")


def _cost_choice(ceilings: list[str] | dict | None, prefer: str) -> dict:
    """The run's cost record: its checked ceilings and which result it prefers (empty when neither is asked)."""
    prefer = PREFER_ALIASES.get(prefer, prefer)
    if prefer not in PREFER:
        raise PromptlabError(f"prefer must be {' or '.join(PREFER)}, not {prefer!r}")
    ceilings = ceiling.checked(ceilings)
    return ({"ceilings": ceilings} if ceilings else {}) | ({"prefer": prefer} if prefer != DEFAULT_PREFER else {})


def _strategy_params(strategy: str, given: dict) -> dict:
    """Every declared setting of the strategy with its value, defaults included (a stored run says what it ran
    with, and replays the same way after a later release changes a default), each given one checked by its
    declaration; a model-typed one stored as its spec record."""
    names = strategy_names(strategy)
    settings = strategy_settings(strategy)
    # Library callers may also set a strategy's finer knobs (its other fields); users get the declared settings.
    knobs = set().union(*(cls.__dataclass_fields__ for cls in strategy_classes(strategy))) - STRUCTURAL
    unknown = set(given) - set(settings) - knobs
    if unknown:
        renamed = [f"{k} is now {OLD_KEYWORDS[k]}" for k in sorted(unknown) if k in OLD_KEYWORDS]
        raise PromptlabError(f"unknown {'/'.join(names)} setting(s): {', '.join(sorted(unknown))}"
                             + (f" ({'; '.join(renamed)})" if renamed else ""))
    params = {k: (list(v.default) if isinstance(v.default, tuple) else v.default) for k, v in settings.items()
              if v.type != "model"}
    for key, value in given.items():
        if value is None and key in settings and not settings[key].none:
            continue  # not given: the default stays (as `plan` leaves out what the request does not set)
        value = settings[key].check(value) if key in settings else value
        if isinstance(value, ModelSpec):
            value = value.to_record()
        params[key] = value
    if params.get("arena") == 0:
        params["arena"] = None  # 0: every proposer, every round
    return params


def _check_against_data(dataset: Dataset, names: list[str], params: dict, has_proposers: bool, prefer: str) -> None:
    """The settings that depend on the data: demos a dataset can show, and enough val to hold some back."""
    demos = params.get("demos", "none")
    if demos == "per-label" and not dataset.has_labels:
        raise PromptlabError(f"'{dataset.name}' has no labels: give a number of demos instead of per-label")
    if demos not in ("none", 0) and dataset.kind == "unlabeled":
        raise PromptlabError(f"'{dataset.name}' has no reference answers to show as demos: use --demos none "
                             "(the few-shot strategy can still use the target's own full-marks replies)")
    if demos not in ("none", 0) and not has_proposers and not (set(names) - {"auto", "fewshot"}):
        # auto attaches --demos to its instruction stage, which needs proposers; without them the demo
        # stage searches demo sets on its own, and a fixed set would be dropped without a word.
        raise PromptlabError("--demos attaches demos to proposed instructions, and this run has no proposers: drop "
                             "--demos (the demonstration stage searches demo sets itself) or add --proposers")
    if "auto" in names and sum(params[k] for k in SHARES) <= 0:
        raise PromptlabError("auto needs a share above 0 for at least one stage (instructions, demos or edits)")
    if params["confirm"] > 0:  # every declared setting is in params, defaults included
        n_val = len(dataset.split("val"))
        held = int(round(n_val * params["confirm"]))
        if held < 4 or n_val - held < 4:
            raise PromptlabError(f"val has {n_val} examples: too few to hold {held} back for the confirmation and race on "
                                 "the rest. Give the dataset more rows, or --confirm 0 to pick the best search score")


def build(store: Store, config: RunConfig, run_id: str) -> tuple[object, OptimizeContext]:
    """The strategy and the context a stored config describes (runs stored by earlier versions with the defaults they
    ran with): what `runs.execute` drives and `projection` counts."""
    dataset = stored_dataset(store, config.dataset_id)
    target = spec_from_record(config.target)
    common = {
        "proposers": tuple(spec_from_record(p) for p in config.proposers),
        "baselines": tuple(PromptTemplate.from_record(b) for b in config.baselines),
        "meta_prompt": config.meta_prompt,
    }
    params = dict({1: LEGACY_DEFAULTS, 2: V2_DEFAULTS, 3: V3_DEFAULTS}.get(config.version, {}))
    params.update(config.strategy_params)
    settings = all_settings()
    for key, value in list(params.items()):
        if key in settings and settings[key].type == "model" and isinstance(value, dict):
            params[key] = spec_from_record(value)
        elif key in settings and settings[key].type == "choices" and isinstance(value, list):
            params[key] = tuple(value)
    strategy = make_strategy(config.strategy, common, params)
    valset, confirmset = split_val(strategy, dataset.split("val", config.split_seed), config.seed, dataset.has_labels)
    ctx = OptimizeContext(
        store=store, run_id=run_id, dataset=dataset, target=target,
        metric=parse_objective(config.metric, dataset, config.judge, store),
        trainset=dataset.split("train", config.split_seed), valset=valset,
        testset=dataset.split("test", config.split_seed), budget=Budget(**config.budget), seed=config.seed,
        task=config.task, max_tokens=config.max_tokens,
        sample_scope=f"seed-{config.seed}" if config.samples == "seed" else run_id, review=config.review,
        confirmset=confirmset, ceilings=dict(config.cost.get("ceilings") or {}),
        prefer=config.cost.get("prefer", DEFAULT_PREFER if config.version >= 4 else "score"),
        demos_apart=strategy.decision.demos_apart,
    )
    return strategy, ctx


def projection(store: Store, config: RunConfig) -> dict:
    """The calls a run will request, before it starts, and what racing and the confirmation do with them."""
    strategy, ctx = build(store, config, "projection")
    n_val, n_confirm = len(ctx.valset), len(ctx.confirmset)
    proj = strategy.projection(len(ctx.trainset), n_val, len(ctx.testset), ctx.budget.max_rounds) | {
        "budget": ctx.budget.max_target_requests, "n_val_search": n_val, "n_confirm": n_confirm,
        "confirm_calls": strategy.decision.confirm_reserve(n_confirm, ctx.prefer) if n_confirm else 0,
        "confidence": strategy.decision.confidence, "harm_margin": strategy.decision.harm_margin, "prefer": ctx.prefer,
        "second_look": bool(strategy.decision.second_look and ctx.prefer == "simple"),
    }
    gate = strategy.gate_config
    if proj.get("candidates") and gate.kind != "off":
        per = max(1.0, (proj["target_search"]["expected"] - proj["baseline_calls"]) / proj["candidates"])
        proj["per_candidate"] = round(per, 1)  # expected target requests a candidate costs, racing it
        if proj["budget"]:
            room = max(0, proj["budget"] - proj["baseline_calls"] - proj["confirm_calls"])
            proj["candidates_in_budget"] = int(room / per)
            proj["candidates_full_val"] = int(room / n_val) if n_val else 0
    return proj


def projection_line(proj: dict) -> str:
    """The projection in words (the CLI and the Runs page): calls, racing, confirmation."""
    search = proj["target_search"]
    cap = f", capped by the budget at {proj['budget']}" if proj["budget"] else ""
    line = (f"target requests for the search {search['min']}–{search['max']} (expected ~{search['expected']}{cap}), "
            f"{proj['target_test']} for the final test scoring, {proj['proposer_calls']} proposer calls")
    if proj.get("per_candidate"):
        line += (f"; racing scores a candidate on ~{proj['per_candidate']:.0f} of {proj['n_val_search']} search-val "
                 "examples on average (only finalists read them all)")
        if proj.get("candidates_in_budget") is not None:
            line += (f", so the budget tries ~{proj['candidates_in_budget']} candidates where scoring each on all of "
                     f"val would try {proj['candidates_full_val']}")
    if proj.get("n_confirm"):
        floor = smallest_shippable_gain(proj["n_confirm"], proj.get("harm_margin", 0.0), proj["confidence"])
        simplify = " and to simplify the result" if proj.get("prefer") == "simple" else ""
        line += (f"; {proj['n_confirm']} val examples are held back to confirm the finalists{simplify} "
                 f"(up to {proj['confirm_calls']} calls, inside the budget), so only a gain of at least "
                 f"~{min(1.0, floor):.2f} can replace the baseline" + (" (add rows, or lower --confirm)" if floor > 0.25 else ""))
        if proj.get("second_look"):
            half = 1 - (1 - proj["confidence"]) / 2
            first = smallest_shippable_gain(proj["n_confirm"], proj.get("harm_margin", 0.0), half)
            line += (f" (~{min(1.0, first):.2f} at the first of two looks, each at half the level, when the budget "
                     "held back for the simplification can pay for a second look at unseen train rows)")
    return line + "; calls already in the cache are free"


def budget_problem(proj: dict, flag: str = "the budget") -> str | None:
    """Why a run with this projection could not do anything, or None. No budget (None) is no limit; a budget of 0 is
    refused like any other too small to start (the CLI and the Runs page alike), never read as no limit."""
    need = proj["baseline_calls"] + proj["confirm_calls"]
    least = max(need + 1, proj["target_search"]["min"])
    if proj["budget"] is not None and proj["budget"] < 1:
        return (f"{flag} of {proj['budget']} target requests would run nothing: give at least {least}, or no budget at all "
                "for no limit")
    if proj["budget"] is not None and proj["budget"] < need:
        held = (f" and hold back {proj['confirm_calls']} for confirming the finalists on the held-back val examples"
                + (" and simplifying the result" if proj.get("prefer") == "simple" else "") if proj["confirm_calls"] else "")
        return (f"{flag} of {proj['budget']} target requests cannot even score the baseline(s) on the val split "
                f"({proj['baseline_calls']} calls){held}. Raise it to at least {least}"
                + (", or lower --confirm." if held else "."))
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
    budget: int | None = None  # target requests for the search (each prompt x example once, cached or not)
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
    prefer: str = DEFAULT_PREFER  # or "score": the decided result, unsimplified


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
        budget=request.budget, max_proposer_calls=request.max_proposer_calls,
        max_proposer_tokens=request.max_proposer_tokens, patience=request.patience,
        baselines=list(request.baselines) or None, meta_prompt=request.meta_prompt, task=request.task,
        strategy=request.strategy, judge=judge_record(request.judge, dataset),
        review="rounds" if request.review else "off", store=store, ceilings=list(request.ceilings),
        prefer=request.prefer, **settings,
    )
    proj = projection(store, config)
    return Plan(config, dataset, target, proposers, projection_line(proj), budget_problem(proj, budget_name))


@dataclass(frozen=True)
class MetaPromptPreview:
    text: str
    source: str  # whose state filled it, in words


def preview_meta_prompt(store: Store, dataset: Dataset, template: str, task: str, metric: Objective,
                        runs_table: pd.DataFrame) -> MetaPromptPreview:
    """`template` filled by the arena's own builder (meta_prompt.build_meta_prompt) with a real round's state: what the
    latest round of the latest run on this dataset showed its proposers (every proposer call stores it), so the text
    is what that round would have sent with this template. With no such round yet, the state a first round starts
    from (the baselines, one example per label), before any mistakes are read: `task` and `metric` are the page's."""
    mine = runs_table[(runs_table["kind"] == "optimize") & (runs_table["dataset"] == dataset.name)] if len(runs_table) else runs_table
    for run_id in mine["id"] if len(mine) else ():
        step = store.latest_meta_parts(run_id)
        if step:
            parts = P.parts_from_record(step["parts"])
            return MetaPromptPreview(P.build_meta_prompt(template, parts), f"the state round {step['round']} of run "
                                     f"{run_id} showed {step['proposer']} (its history, mistakes and examples)")
    saved = store.baselines(dataset.id) if dataset.id else []
    texts = [template_text(PromptTemplate(s, u)) for _, s, u in saved] or [DEFAULT_BASELINES[dataset.kind]]
    train = dataset.split("train")
    shown = train.drop_duplicates("label_norm").head(8) if dataset.has_labels else train.head(3)
    parts = P.MetaPromptParts(
        task=task, metric=metric.describe(), labels=dataset.labels,
        history=tuple(P.ScoredPrompt(t, float("nan")) for t in texts),
        examples=tuple(zip(shown["text"], shown["label"])), n=ProposerSettings.candidates, score_range=metric.range,
        kind=dataset.kind,
    )
    return MetaPromptPreview(P.build_meta_prompt(template, parts), "no round on this dataset has stored what it showed "
                             "yet (rounds run before this version did not): the state a first round starts from, before "
                             "the leader's mistakes are read")
