"""Drives a strategy step by step and records each step as it arrives; resumes; summarizes.

A run is its stored config plus its stored steps. Executing a run replays the strategy from the start
with the same seed: steps already stored are skipped (their calls come back from the cache), the
first new step is where the interrupted run stopped. Nothing is lost and no finished call repeats.
"""
from __future__ import annotations

import math
import threading
import uuid
from dataclasses import asdict, dataclass, field

import pandas as pd

from promptlab.data import LabeledDataset, holdout_split, stored_dataset
from promptlab.errors import PromptlabError
from promptlab.evaluate import PromptTemplate, dataset_params, evaluate, model_key
from promptlab.metrics import constant_label, format_score
from promptlab.objective import parse_objective, run_judge
from promptlab.models import ModelSpec, spec_from_record
from promptlab.optimize import prompts as P
from promptlab.optimize.arena import Arena
from promptlab.optimize.auto import Auto
from promptlab.optimize.chain import Chain
from promptlab.optimize.fewshot import FewShot
from promptlab.optimize.gradient import Gradient
from promptlab.optimize.pool import PoolStrategy
from promptlab.optimize.settings import merged_settings, settings_of
from promptlab.optimize.base import (
    Budget, CandidateProposed, CandidateScored, Confirmed, Counters, Decided, OptimizeContext, Step, TestScored,
)
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


def default_task(dataset: LabeledDataset) -> str:
    """The task description proposers see when the analyst wrote none."""
    return DEFAULT_TASKS[dataset.kind].format(name=dataset.name)

STRATEGIES = {"arena": Arena, "fewshot": FewShot, "gradient": Gradient, "auto": Auto}
DEFAULT_STRATEGY = "auto"
# What the Runs page and the CLI's help offer: the default first, each strategy alone, the usual chains.
STRATEGY_MENU = [DEFAULT_STRATEGY] + [n for n in STRATEGIES if n != DEFAULT_STRATEGY] + [
    "arena,fewshot", "arena,gradient", "arena,gradient,fewshot"]
# Runs stored before racing and confirmation (config version 1) replay with the defaults they ran with.
LEGACY_DEFAULTS = {"gate": "ci", "gate_level": 0.8, "minibatch_size": 24, "confirm": 0.0, "show_rejected": 0,
                   "language": "off", "trials_per_round": 4}
CONFIG_VERSION = 2
# Settings every strategy shares (racing and the confirmation of the result); the rest are a strategy's own.
FRAME_SETTINGS = tuple(s.name for s in settings_of(PoolStrategy))
STRUCTURAL = {"proposers", "baselines", "meta_prompt", "name", "instructions", "demos_stage", "edits", "patience"}


def strategy_classes(strategy: str) -> list[type]:
    """The classes whose settings a strategy name (or chain) takes: auto takes its stages' too."""
    out = []
    for name in strategy_names(strategy):
        out += [Auto, Arena, FewShot, Gradient] if name == "auto" else [STRATEGIES[name]]
    return list(dict.fromkeys(out))


def strategy_settings(strategy: str) -> dict:
    """name -> Setting for a strategy (or chain): what make_config checks, the CLI and the Runs page show."""
    return merged_settings(strategy_classes(strategy))


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
    # 2: racing, confirmation on held-back val, rejected candidates shown. Runs stored before read as 1 and
    # replay with LEGACY_DEFAULTS.
    version: int = CONFIG_VERSION

    def to_record(self) -> dict:
        rec = asdict(self)
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
    dataset: LabeledDataset,
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
    **strategy_params,
) -> RunConfig:
    """Validate user choices into a RunConfig; every mistake is a PromptlabError naming the fix.

    `metric`: a label metric for labeled datasets; a scorer or "judge" for the others. `judge`: the
    judge record ({model: name or spec record, rubric, lo, hi}); without one the dataset's own is used.
    `review`: "rounds" pauses after every round for the analyst's decisions. `strategy_params`: the
    strategy's settings (see `strategy_settings`), each checked by its own declaration."""
    names = strategy_names(strategy)
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
    objective = parse_objective(metric, dataset, run_judge(judge, dataset), store)
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
    if "auto" in names and sum(params[k] for k in ("instructions_share", "demos_share", "edits_share")) <= 0:
        raise PromptlabError("auto needs a share above 0 for at least one stage (instructions, demos or edits)")
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
        judge=judge_rec, review=review,
    )


def build(store: Store, config: RunConfig, run_id: str) -> tuple[object, OptimizeContext]:
    dataset = stored_dataset(store, config.dataset_id)
    target = spec_from_record(config.target)
    common = {
        "proposers": tuple(spec_from_record(p) for p in config.proposers),
        "baselines": tuple(PromptTemplate.from_record(b) for b in config.baselines),
        "meta_prompt": config.meta_prompt,
    }
    params = dict(LEGACY_DEFAULTS) if config.version < 2 else {}
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
        confirmset=confirmset,
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
    return make(
        Auto,
        instructions=make(Arena, patience=auto.stage_patience) if has_proposers and auto.instructions_share > 0 else None,
        demos_stage=make(FewShot) if auto.demos_share > 0 else None,
        edits=make(Gradient, patience=auto.stage_patience) if has_proposers and auto.edits_share > 0 else None,
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


def create_run(store: Store, config: RunConfig) -> str:
    run_id = "run-" + uuid.uuid4().hex[:10]
    store.create_run(run_id, "optimize", config.dataset_id, config.to_record())
    store.set_run_status(run_id, "created")
    return run_id


def mark_dead_runs(store: Store, live: set[str] = frozenset()) -> list[str]:
    """Runs left 'running' by a process that is gone become 'interrupted' (resumable). Returns their ids.

    `live`: run ids this process is executing right now (a dashboard's worker threads).
    """
    import os

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


# --- reading a run back ----------------------------------------------------------------------------

def candidate_test_rows(store: Store, run_id: str, cand_id: int, target: ModelSpec, dataset: LabeledDataset,
                        metric) -> pd.DataFrame:
    """A stored candidate's prompt (with its demos) scored on the test split, one row per example in
    example order. The run scored its finalists on test, so this comes from the cache."""
    row = store.candidates(run_id).set_index("id").loc[cand_id].to_dict()
    config = store.run_row(run_id)["config"]  # the run's own split and max_tokens: the same requests, so cached
    res = evaluate(store, target, PromptTemplate.from_record(row), dataset,
                   dataset.split("test", config.get("split_seed")), metric, max_tokens=config.get("max_tokens"))
    return res.rows.sort_values("example_idx").reset_index(drop=True)


def demo_summary(demos, similar_k, similar_by: str = "tfidf") -> str:
    """How a prompt's demos read in a table: '' (none), '3', '2 nearest of 64' or '2 nearest (minilm) of 64'."""
    n = len(demos) if demos is not None else 0
    if not n:
        return ""
    by = f" ({similar_by})" if similar_by and similar_by != "tfidf" else ""
    return f"{int(similar_k)} nearest{by} of {n}" if similar_k else str(n)


def candidate_marks(store: Store, run_id: str, cands: pd.DataFrame) -> tuple[list, list]:
    """Per candidate, from its replies on the val examples it was scored on: the label it gives to at least 95%
    of them (a constant answer, which recall of that label rewards) or '', and the values of the metric's floors
    ('precision:fraud 0.25 < 0.4') or ''. Labeled datasets only."""
    rec = store.run_row(run_id)
    config = rec["config"]
    try:
        ds = stored_dataset(store, rec["dataset_id"])
    except PromptlabError:  # its dataset was deleted: the run stays readable, without marks
        ds = None
    if ds is None or not ds.has_labels:
        return [""] * len(cands), [""] * len(cands)
    target = spec_from_record(config["target"])
    metric = parse_objective(config["metric"], ds)
    key = model_key(target, dataset_params(target, ds, config.get("max_tokens")))
    val = set(ds.split("val", config.get("split_seed"))["idx"].tolist())
    gold = dict(zip(ds.frame["idx"].tolist(), ds.frame["label_norm"].tolist()))
    constants, floors = [], []
    for pid in cands["prompt_id"]:
        rows = store.evaluations(pid, key, ds.id)
        rows = rows[rows["example_idx"].isin(val)]
        preds = [None if p is None or p != p else p for p in rows["pred"]]
        g = [gold[i] for i in rows["example_idx"]]
        constants.append(constant_label(preds, g) or "")
        if metric.floors and len(rows):
            floors.append(", ".join(f"{spec} {format_score(v)}{'' if ok else f' < {t:g}'}"
                                    for spec, v, t, ok in metric.floor_values(g, preds)))
        else:
            floors.append("")
    return constants, floors


def leaderboard(store: Store, run_id: str) -> pd.DataFrame:
    """Every candidate, best val first (gated candidates after, by minibatch score), with its marks
    (`constant`, `floors`: see candidate_marks)."""
    cands = store.candidates(run_id)
    if cands.empty:
        return cands
    cands["constant"], cands["floors"] = candidate_marks(store, run_id, cands)
    cands["demos_shown"] = [demo_summary(d, k, b) for d, k, b in zip(cands["demos"], cands["similar_k"], cands["similar_by"])]
    cands["_sort_val"] = cands["val_score"].fillna(-math.inf)
    cands["_sort_mb"] = cands["minibatch_score"].fillna(-math.inf)
    return cands.sort_values(["_sort_val", "_sort_mb", "id"], ascending=[False, False, True]).drop(
        columns=["_sort_val", "_sort_mb"]).reset_index(drop=True)


def attribution(store: Store, run_id: str, steps: list[dict] | None = None) -> list[dict]:
    """Per proposer: candidates asked for, valid ones, valid rate, best val score, rounds won."""
    steps = steps if steps is not None else store.steps(run_id)
    rec = store.run_row(run_id)
    n = (rec["config"].get("strategy_params") or {}).get("candidates_per_proposer", 2)
    cands = store.candidates(run_id)
    out: dict[str, dict] = {}
    for p in rec["config"]["proposers"]:
        label = p.get("name") or p["model"]
        out[label] = {"model": label, "family": p.get("family", "unknown"), "calls": 0, "candidates": 0,
                      "valid": 0, "valid_rate": None, "best_val": None, "wins": 0, "errors": 0, "dropped": {}}
    # Strategies that choose rather than write (few-shot: "fewshot/<method>") have candidates but no calls.
    for label, family in cands.loc[cands["proposer"] != "baseline", ["proposer", "family"]].drop_duplicates().itertuples(index=False):
        if label not in out and not any(s["kind"] == "proposal_made" and s["proposer"] == label for s in steps):
            k = int((cands["proposer"] == label).sum())
            out[label] = {"model": label, "family": family, "calls": 0, "candidates": k, "valid": k, "valid_rate": None,
                          "best_val": None, "wins": 0, "errors": 0, "dropped": {}}
    for s in steps:
        if s["kind"] == "proposal_made":
            row = out.setdefault(s["proposer"], {"model": s["proposer"], "family": s["family"], "calls": 0, "candidates": 0,
                                                 "valid": 0, "valid_rate": None, "best_val": None, "wins": 0,
                                                 "errors": 0, "dropped": {}})
            row["calls"] += 1
            row["candidates"] += n
            row["valid"] += len(s["accepted"])
            row["errors"] += 1 if s.get("error") else 0
            for why, k in (s.get("dropped") or {}).items():
                row["dropped"][why] = row["dropped"].get(why, 0) + k
        elif s["kind"] == "round_finished" and s.get("winner_proposer") in out:
            out[s["winner_proposer"]]["wins"] += 1
    for label, row in out.items():
        mine = cands[(cands["proposer"] == label) & cands["val_score"].notna()]
        row["best_val"] = float(mine["val_score"].max()) if len(mine) else None
        row["valid_rate"] = row["valid"] / row["candidates"] if row["candidates"] else None
    return list(out.values())


def best_candidate(steps: list[dict], cands: pd.DataFrame) -> pd.DataFrame:
    """The run's result as a one-row frame: the candidate its finish named, or (a run still going or stopped)
    the best on val so far; empty when nothing is scored."""
    finished = next((s for s in reversed(steps) if s["kind"] == "run_finished"), None)
    if finished is not None and finished.get("best_id"):
        return cands[cands["id"] == finished["best_id"]]
    scored = cands[cands["val_score"].notna()]
    return scored.sort_values(["val_score", "id"], ascending=[False, True]).head(1)


def summarize(store: Store, run_id: str, counters: Counters | None = None) -> dict:
    rec = store.run_row(run_id)
    steps = store.steps(run_id)
    cands = store.candidates(run_id)
    base = cands[cands["proposer"] == "baseline"].head(1)
    finished = next((s for s in reversed(steps) if s["kind"] == "run_finished"), None)
    best = best_candidate(steps, cands)
    started = next((s for s in steps if s["kind"] == "run_started"), {})
    rounds = max([s["round"] for s in steps if s["kind"] == "round_finished"], default=0)

    def first(frame, col):
        if frame.empty:
            return None
        v = frame.iloc[0][col]
        return None if v is None or (isinstance(v, float) and math.isnan(v)) else (float(v) if col.endswith("score") else v)

    stored_calls = store.run_call_counts(run_id)
    prev = rec["summary"] or {}
    # Without live counters (a page or `runs show` reading a stored run), the counts are those of the
    # run's last execution, as stored in its summary.
    c = counters or Counters(target_requests=prev.get("target_requests", 0), target_calls=prev.get("target_calls", 0),
                             target_cached=prev.get("cached_calls", 0), proposer_calls=prev.get("proposer_calls", 0))
    gated = cands[cands["status"] == "gated"]
    saved = int(sum(s.get("calls_saved", 0) for s in steps if s["kind"] == "candidate_scored"))
    return {
        "run_id": run_id,
        "status": rec["status"],
        "reason": finished.get("reason") if finished else None,
        "dataset": stored_dataset_name(store, rec["dataset_id"]),
        "target": rec["config"]["target"].get("name") or rec["config"]["target"]["model"],
        "metric": rec["config"]["metric"],
        "seed": rec["config"]["seed"],
        "baseline_prompt": first(base, "text"),
        "baseline_val": first(base, "val_score"),
        "baseline_test": first(base, "test_score"),
        "best_id": int(best.iloc[0]["id"]) if not best.empty else None,
        "best_prompt": first(best, "text"),
        "best_demos": list(best.iloc[0]["demos"]) if not best.empty else [],
        "best_demo_format": first(best, "demo_format"),
        "best_proposer": first(best, "proposer"),
        "best_val": first(best, "val_score"),
        "best_test": first(best, "test_score"),
        "n_val": started.get("n_val"),
        "n_test": started.get("n_test"),
        "rounds": rounds,
        "candidates": int((cands["proposer"] != "baseline").sum()),
        "gated": int(len(gated)),
        "calls_saved_by_gate": saved,
        "target_calls": c.target_calls,
        "proposer_calls": c.proposer_calls,
        "cached_calls": c.target_cached + c.proposer_cached,
        # of every request the run needed, the share the cache answered (repeats and resumes: all of it)
        "cache_hit_rate": _rate(c.target_cached + c.proposer_cached,
                                c.target_cached + c.proposer_cached + c.target_calls + c.proposer_calls),
        "repeated_calls": store.repeated_calls(run_id),
        "failures": store.failure_stats(run_id),
        "target_requests": c.target_requests,
        "calls_stored_for_run": {k: v["calls"] for k, v in stored_calls.items()},
        "judge_calls": stored_calls.get("judge", {}).get("calls", 0),  # all executions (judge calls are outside budgets)
        "projection": started.get("projection"),
        "proposers": attribution(store, run_id, steps),
        "review": rec["config"].get("review", "none"),
        "decisions": _decision_counts(steps),
        "result": _result(steps),
    }


def result_line(summary: dict) -> str | None:
    """How the result was chosen, in words (the CLI, the Results page and the report), or None for runs
    stored before confirmation existed."""
    r = summary.get("result")
    if not r:
        return None
    line = r["reading"]
    if r.get("gap") is not None:
        line += (f" The finalist's search score {r['search_score']:.3f} against {r['confirm_score']:.3f} on the "
                 f"held-back examples: a gap of {r['gap']:+.3f} (how much the search overrated it).")
    return line


def _result(steps: list[dict]) -> dict | None:
    """How the run's result was chosen (runs that confirm on held-back val): the winner, whether it replaced
    the baseline, the paired test, and the gap between its search and confirmation scores (the overfitting)."""
    w = next((s for s in reversed(steps) if s["kind"] == "winner_chosen"), None)
    if w is None:
        return None
    search, confirm = w.get("search_score"), w.get("confirm_score")
    gap = None if search is None or confirm is None else round(search - confirm, 6)
    return {k: w.get(k) for k in ("winner_id", "reference_id", "replaced_baseline", "diff", "ci", "p_value", "level",
                                  "n_confirm", "search_score", "confirm_score", "reading")} | {"gap": gap}


def _decision_counts(steps: list[dict]) -> dict:
    """{who: {action: count}} over the run's decided steps (the analyst's and the rule's)."""
    out: dict = {}
    for s in steps:
        if s["kind"] == "decided":
            out.setdefault(s["who"], {}).setdefault(s["action"], 0)
            out[s["who"]][s["action"]] += 1
    return out


def decisions_line(summary: dict) -> str | None:
    """Who decided the rounds, in one line (the CLI and the report), or None when nothing was recorded."""
    dec = summary.get("decisions") or {}
    if not dec:
        return None
    parts = [f"{who}: " + ", ".join(f"{n} {a}" for a, n in sorted(acts.items())) for who, acts in sorted(dec.items())]
    return "decisions — " + "; ".join(parts)


def calls_line(summary: dict) -> str | None:
    """The run's LLM calls in one line (the CLI and the Results page), or None for a run that has not started.

    "Made" counts every call stored for the run, over all its executions: a semi-automatic run pauses and
    resumes each round, and the live counters only see the last execution (whose replayed steps are read
    back from the cache, so they show up there as hits, not as new calls).
    """
    s = summary
    if s.get("cache_hit_rate") is None and not s.get("calls_stored_for_run"):
        return None
    stored = s.get("calls_stored_for_run") or {}
    made = (stored.get("eval", 0), stored.get("propose", 0))
    line = f"calls made for this run: {made[0]} target + {made[1]} proposer"
    if s.get("judge_calls"):
        line += f" + {s['judge_calls']} judge (outside the budget)"
    hits = f" ({s['cache_hit_rate']:.0%} hits)" if s.get("cache_hit_rate") is not None else ""
    if made != (s["target_calls"], s["proposer_calls"]):
        line += (f"; its last execution (after a pause or a resume) made {s['target_calls'] + s['proposer_calls']} "
                 f"and read {s['cached_calls']} from the cache{hits}, replayed steps included")
    else:
        line += f"; {s['cached_calls']} answered from the cache{hits}"
    return line + f"; {s['repeated_calls']} repeated"


def failures_line(summary: dict) -> str | None:
    """The run's endpoint failures in one line (the CLI and the Results page), or None when there were none."""
    fails = summary.get("failures") or {}
    if not fails.get("failed_attempts"):
        return None
    kinds = ", ".join(f"{k} {v}" for k, v in fails["failed_attempts"].items())
    return (f"failed attempts: {kinds}; {fails['recovered_calls']} call(s) recovered on retry, {fails['failed_calls']} "
            "failed for good (scored as wrong, never cached, asked again on the next run)")


def _rate(part: int, whole: int) -> float | None:
    return round(part / whole, 4) if whole else None


def stored_dataset_name(store: Store, dataset_id: str) -> str | None:
    row = store.dataset_row(dataset_id)
    return row["name"] if row else None



def live_progress(store: Store, run_id: str) -> dict:
    """What the Runs page shows while a run goes: round, candidates, calls made and cached, tokens, ETA."""
    rec = store.run_row(run_id)
    steps = store.steps(run_id)
    calls = store.run_call_counts(run_id)
    started = next((s for s in steps if s["kind"] == "run_started"), None)
    rounds = [s["round"] for s in steps if s["kind"] == "round_started"]
    requests = max([s.get("target_requests") or 0 for s in steps if s["kind"] in ("candidate_scored", "round_finished")],
                   default=0)
    made = sum(v["calls"] for v in calls.values())
    eval_made = calls.get("eval", {}).get("calls", 0)
    requests = max(requests, eval_made)  # before the first scored step, the calls made are the progress
    eta = "—"
    if rec["status"] == "running" and started and requests:
        proj = started["projection"]
        budget = rec["config"]["budget"].get("max_target_calls")
        expected = proj["target_search"]["expected"] if not budget else min(budget, proj["target_search"]["expected"])
        elapsed = (pd.Timestamp.now() - pd.Timestamp(rec["created_at"])).total_seconds()
        left = max(0, expected + proj["target_test"] - requests)
        secs = left * elapsed / requests
        eta = f"~{secs / 60:.0f} min" if secs >= 90 else f"~{secs:.0f} s"
    return {
        "status": rec["status"],
        "round": max(rounds, default=0),
        # each stage of a chain (or of auto) gets the run's rounds
        "max_rounds": (rec["config"]["budget"].get("max_rounds") or 0) * len(
            ((started or {}).get("projection") or {}).get("stages") or strategy_names(rec["config"].get("strategy", "arena"))),
        "candidates": sum(1 for s in steps if s["kind"] == "candidate_proposed" and s["proposer"] != "baseline"),
        "calls": made,
        # a finished run knows its cache hits exactly; while searching, requests beyond the calls made
        # came from the cache (the test scoring at the end is not in `requests`)
        "cached": (rec["summary"] or {}).get("cached_calls", max(0, requests - eval_made)),
        "tokens": sum(v["tokens"] for v in calls.values()),
        "eta": eta,
    }


def family_view(store: Store, run_id: str) -> pd.DataFrame:
    """Per proposer: its relation to the target, and its best candidate's val and test scores."""
    from promptlab.models import relation

    rec = store.run_row(run_id)
    target = rec["config"]["target"]
    cands = store.candidates(run_id)
    rows = []
    for p in rec["config"]["proposers"]:
        label = p.get("name") or p["model"]
        mine = cands[(cands["proposer"] == label) & cands["val_score"].notna()].sort_values("val_score", ascending=False)
        best = mine.head(1)
        rows.append({
            "proposer": label, "family": p.get("family"), "size_b": p.get("size_b"), "relation": relation(target, p),
            "candidates scored": len(mine),
            "best val": float(best["val_score"].iloc[0]) if len(best) else None,
            "its test": float(best["test_score"].iloc[0]) if len(best) and best["test_score"].notna().iloc[0] else None,
        })
    return pd.DataFrame(rows)


def markdown_report(store: Store, run_id: str) -> str:
    """A run as Markdown for a team review: setup, headline with n and CIs, leaderboard, attribution."""
    s = summarize(store, run_id)
    rec = store.run_row(run_id)
    board = leaderboard(store, run_id)
    fam = family_view(store, run_id)

    f = format_score

    base = board[board["proposer"] == "baseline"].head(1)
    best = board[board["id"] == s["best_id"]].head(1)

    def ci(frame, which):
        if frame.empty:
            return ""
        lo, hi = frame.iloc[0][f"{which}_ci_low"], frame.iloc[0][f"{which}_ci_high"]
        return f" [{f(lo)}, {f(hi)}]" if lo == lo and lo is not None else ""

    lines = [
        f"# promptlab run {run_id}",
        "",
        f"- Dataset: **{s['dataset']}**; target **{s['target']}**; metric **{s['metric']}**; seed {s['seed']}",
        f"- Proposers: {', '.join(p['model'] + ' (' + p['family'] + ')' for p in s['proposers'])}",
        f"- Status: {s['status']} ({s.get('reason') or '—'}), {s['rounds']} round(s), {s['candidates']} candidates, "
        f"{s['gated']} stopped at the minibatch gate ({s['calls_saved_by_gate']} calls saved)",
        *([f"- {dec[0].upper()}{dec[1:]}"] if (dec := decisions_line(s)) else []),
        "",
        "## Result (95% CIs; test is held out: no proposer ever saw it)",
        "",
        "| prompt | val | test |",
        "|---|---|---|",
        f"| baseline | {f(s['baseline_val'])}{ci(base, 'val')} (n={s['n_val']}) | {f(s['baseline_test'])}{ci(base, 'test')} (n={s['n_test']}) |",
        f"| result (#{s['best_id']}, {s['best_proposer']}) | {f(s['best_val'])}{ci(best, 'val')} | {f(s['best_test'])}{ci(best, 'test')} |",
        "",
        *([result_line(s), ""] if result_line(s) else []),
        "Result prompt:",
        "",
        "```text",
        (s["best_prompt"] or "").strip(),
        "```",
        "",
        "## Proposers",
        "",
        "| proposer | family | relation to target | candidates asked | valid | best val | wins |",
        "|---|---|---|---|---|---|---|",
    ]
    rel = dict(zip(fam["proposer"], fam["relation"])) if len(fam) else {}
    for p in s["proposers"]:
        rate = f"{p['valid']} ({p['valid_rate']:.0%})" if p["valid_rate"] is not None else str(p["valid"])
        lines.append(f"| {p['model']} | {p['family']} | {rel.get(p['model'], '')} | {p['candidates']} | {rate} | {f(p['best_val'])} | {p['wins']} |")
    lines += ["", "## Leaderboard (val; test where scored)", "", "| # | round | proposer | val | test | prompt |", "|---|---|---|---|---|---|"]
    for r in board.head(20).itertuples():
        text = (f"[+{r.demos_shown} demos] " if r.demos_shown else "") + " ".join(str(r.text).split()).replace("|", "\\|")
        val = f(r.val_score) if r.val_score == r.val_score else f"{r.status} (minibatch {f(r.minibatch_score)})"
        lines.append(f"| {r.id} | {r.round} | {r.proposer} | {val} | {f(r.test_score)} | {text[:120]} |")
    lines += ["", f"Meta-prompt template: {len(rec['config']['meta_prompt'])} characters, stored with the run."]
    return "\n".join(lines) + "\n"
