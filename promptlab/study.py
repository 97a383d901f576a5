"""Studies: does a proposer from the target's own family write better prompts for it than another?

A study is a grid of ordinary runs: targets x proposer sets (each proposer alone, plus optional
mixes) x seeds, every run with the same budget, rounds and metric. Its runs are stored, resumable and
visible like any other. The analysis compares, per target x proposer set, the best prompt's held-out
test predictions with the baseline's on the same test examples, across the seeds:

- the gain in the metric with a two-level paired bootstrap CI (examples and seeds resampled);
- a paired sign-flip test (the exact McNemar test with one seed), for per-example metrics;
- the proposer's relation to the target, from the models' families and sizes.
"""
from __future__ import annotations

import hashlib
import json
import uuid
from dataclasses import asdict, dataclass, field

import numpy as np
import pandas as pd

from promptlab import jobs, planning, results, runs
from promptlab.optimize import registry
from promptlab.progress import Progress
from promptlab.data import Dataset, resolve_dataset, stored_dataset
from promptlab.errors import PromptlabError
from promptlab.models import ModelSpec, relation, resolve_model, spec_from_record
from promptlab.scoring.labels import parse_metric
from promptlab.scoring.stats import holm, paired_gain, paired_test, power_line
from promptlab.store import Store
from promptlab.text import format_score


@dataclass(frozen=True)
class Cell:
    target: str
    proposer: str  # a model label, or a mix "A + B"
    family: str
    relation: str
    seeds: int
    gain_mean: float | None
    ci_low: float | None
    ci_high: float | None
    p_value: float | None
    n_test: int
    better_on: int  # test examples where the best prompts were right more often than the baseline
    worse_on: int
    baseline_test: float | None
    best_test: float | None
    runs: tuple[str, ...]
    finished: int
    # the proposer set's proposals over its finished runs (results.proposal_counts): the prompts its calls asked for,
    # those written in the replies, and the usable ones (passed the screen and became candidates)
    asked: int = 0
    written: int = 0
    usable: int = 0

    def to_record(self) -> dict:
        return asdict(self) | {"runs": list(self.runs)}


def proposer_sets(proposers: list[ModelSpec], mixes: list[list[str]] | None = None) -> list[tuple[str, list[ModelSpec]]]:
    """Each proposer alone, then each mix (names among the proposers), as (label, specs)."""
    by_label = {p.label: p for p in proposers}
    sets = [(p.label, [p]) for p in proposers]
    for mix in mixes or []:
        missing = [m for m in mix if m not in by_label]
        if missing:
            raise PromptlabError(f"mix member(s) {', '.join(missing)} are not among --proposers ({', '.join(by_label)})")
        if len(mix) < 2:
            raise PromptlabError("a mix needs at least two proposers, e.g. --mix A+B")
        sets.append((" + ".join(mix), [by_label[m] for m in mix]))
    return sets


def power(dataset: Dataset, metric: str, seeds: int) -> str:
    """What a study on this dataset can tell apart, before it starts (stats.power_line): the test examples its
    metric counts (recall of a label: the test examples of that label) and its seeds."""
    if not dataset.has_labels:
        raise PromptlabError(f"a study needs a labeled dataset, and '{dataset.name}' has none")
    test = dataset.split("test")
    m = parse_metric(metric, dataset.labels)
    n = int(m.relevant(test["label_norm"].to_numpy(dtype=object)).sum())
    if n < 1:
        raise PromptlabError(f"'{dataset.name}' has no test example that {metric} counts: choose another metric")
    return power_line(n, max(1, int(seeds)))


@dataclass(frozen=True)
class StudyRequest:
    """A study as the CLI and the Runs page ask for it: the dataset and the models by name (see `request_study`)."""

    dataset: str  # a stored dataset's name or id, or a file path to import
    targets: tuple[str, ...]
    proposers: tuple[str, ...]  # each runs alone
    seeds: int = 3
    mixes: tuple[tuple[str, ...], ...] = ()  # proposers also run together, by label
    budget: int | None = 600  # target requests per run for the search (the budget's unit)
    rounds: int = 3
    metric: str = "accuracy"
    strategy: str = "arena"
    candidates: int = 2
    settings: dict = field(default_factory=dict)  # strategy settings by name (minibatch_size, test_top, ...)


def request_study(store: Store, req: StudyRequest) -> tuple[str, bool, Dataset]:
    """Resolve a request's dataset and models by name and create its study (or find the same grid stored):
    (study id, reused, dataset)."""
    dataset = resolve_dataset(store, req.dataset)
    study_id, reused = create_study(
        store, dataset, [resolve_model(n, store) for n in req.targets], [resolve_model(n, store) for n in req.proposers],
        req.seeds, mixes=[list(m) for m in req.mixes] or None, budget=req.budget, rounds=req.rounds,
        metric=req.metric, strategy=req.strategy, candidates=req.candidates, **req.settings)
    return study_id, reused, dataset


def create_study(store: Store, dataset: Dataset, targets: list[ModelSpec], proposers: list[ModelSpec],
                 seeds: int = 3, *, mixes: list[list[str]] | None = None, budget: int | None = 600,
                 rounds: int = 3, metric: str = "accuracy", strategy: str = "arena", candidates: int = 2,
                 **strategy_params) -> tuple[str, bool]:
    """Plan the grid and store it (study + all runs, atomically). The same grid asked for again is the
    same study, returned with reused=True, so re-running a command resumes it."""
    if not dataset.has_labels:
        raise PromptlabError(f"a study compares proposers on a labeled dataset, and '{dataset.name}' has "
                             f"{'reference answers' if dataset.kind == 'reference' else 'no target'}: compare runs "
                             "on it one by one (Results, 'two runs side by side') instead")
    if seeds < 1:
        raise PromptlabError("--seeds must be at least 1 (3 or more for a CI that reflects seed variation)")
    if not targets:
        raise PromptlabError("give at least one target (--targets T1[,T2])")
    sets = proposer_sets(proposers, mixes)
    members = []
    for target in targets:
        # arena 0: every proposer of the set writes every round (one alone, or all of a mix), where the strategy
        # draws proposers at all (gradient has no arena)
        every = {"arena": 0} if "arena" in registry.strategy_settings(strategy) else {}
        for label, specs in sets:
            for seed in range(seeds):
                cfg = planning.make_config(dataset, target, specs, metric=metric, seed=seed, candidates=candidates,
                                           rounds=rounds, budget=budget, strategy=strategy, **every, **strategy_params)
                members.append({"config": cfg.to_record(), "target": target.label, "proposer_set": label, "seed": seed})
    plan = {"dataset_id": dataset.id, "targets": [t.to_record() for t in targets],
            "proposers": [p.to_record() for p in proposers], "mixes": [list(m) for m in mixes or []], "seeds": seeds,
            "budget_calls": budget, "rounds": rounds, "metric": metric, "strategy": strategy,  # the plan's stored keys
            "candidates": candidates, "strategy_params": {k: v for k, v in strategy_params.items()}}
    digest = hashlib.sha256(json.dumps(plan, sort_keys=True, default=str).encode()).hexdigest()
    existing = store.study_by_hash(digest)
    if existing:
        return existing, True
    # every run of the grid has the same budget and baselines: check one before storing any
    first = planning.RunConfig.from_record(members[0]["config"])
    if problem := planning.budget_problem(planning.projection(store, first), "the budget per run"):
        raise PromptlabError(problem[0].upper() + problem[1:])
    study_id = "study-" + uuid.uuid4().hex[:10]
    for m in members:
        m["run_id"] = "run-" + uuid.uuid4().hex[:10]
    store.create_study(study_id, dataset.id, plan, digest, members)
    return study_id, False


def execute_study(store: Store, study_id: str, progress: Progress | None = None, stop=None) -> list[Cell]:
    """Run (or resume) every run of the study that is not finished, in grid order; then analyse."""
    run_members(store, study_id, progress, stop)
    return analyze(store, study_id)


def run_members(store: Store, study_id: str, progress: Progress | None = None, stop=None) -> None:
    """Run (or resume) every member run that is not finished, in order (a study's grid, a group's targets)."""
    members = _members(store, study_id)
    for i, m in enumerate(members.itertuples()):
        if stop is not None and stop.is_set():
            break
        status = store.run_row(m.run_id)["status"]  # fresh: someone may have run it meanwhile
        if status in ("finished", "running"):  # "running": another thread or process has it now
            continue
        if progress is not None:
            progress.unit = "runs"
            progress.update(done=i, total=len(members), run_id=m.run_id,
                            note=f"{m.target} <- {m.proposer_set}, seed {m.seed} ({m.run_id})")
        runs.execute(store, m.run_id, stop=stop)
    if progress is not None:
        progress.run_id = None  # no member is being executed any more (the analysis that follows is not a run)


def _members(store: Store, study_id: str) -> pd.DataFrame:
    if store.study_row(study_id) is None:
        raise PromptlabError(f"no study '{study_id}' (see `study --list`)")
    return store.study_members(study_id)


@dataclass(frozen=True)
class _Preds:
    gold: np.ndarray | None
    seeds: list[int]
    base: list[np.ndarray]  # one row of test predictions per finished seed
    best: list[np.ndarray]


def _context(store: Store, study_id: str):
    study = store.study_row(study_id)
    ds = stored_dataset(store, study["dataset_id"])
    metric = parse_metric(study["config"]["metric"], ds.labels)
    targets = {spec_from_record(t).label: spec_from_record(t) for t in study["config"]["targets"]}
    return study, ds, metric, targets


def _predictions(store: Store, ds, metric, target: ModelSpec, group: pd.DataFrame) -> _Preds:
    """Test predictions of the baseline and of the best prompt, per finished run (seed) of one cell."""
    gold, seeds, base_rows, best_rows = None, [], [], []
    for m in group[group["status"] == "finished"].itertuples():
        summary = json.loads(m.summary) if isinstance(m.summary, str) else (m.summary or {})
        if not summary.get("best_id"):
            continue
        base = jobs.candidate_test_rows(store, m.run_id, 1, target, ds, metric)
        best = jobs.candidate_test_rows(store, m.run_id, summary["best_id"], target, ds, metric)
        gold = base["gold_norm"].to_numpy(dtype=object)
        seeds.append(int(m.seed))
        base_rows.append(base["pred"].to_numpy(dtype=object))
        best_rows.append(best["pred"].to_numpy(dtype=object))
    return _Preds(gold, seeds, base_rows, best_rows)


def analyze(store: Store, study_id: str, n_boot: int = 2000) -> list[Cell]:
    study, ds, metric, targets = _context(store, study_id)
    members = store.study_members(study_id)
    test = ds.split("test")
    prop_recs = {spec_from_record(p).label: p for p in study["config"]["proposers"]}
    cells = []
    for (target_label, set_label), group in members.groupby(["target", "proposer_set"], sort=False):
        target = targets[target_label]
        pr = _predictions(store, ds, metric, target, group)
        done = group[group["status"] == "finished"]
        members_of_set = set_label.split(" + ")
        recs = [prop_recs[p] for p in members_of_set if p in prop_recs]
        rel = relation(target.to_record(), recs[0]) if len(recs) == 1 else "mix"
        family = recs[0].get("family", "unknown") if len(recs) == 1 else "+".join(sorted({r.get("family", "?") for r in recs}))
        if pr.base:
            gold, base_rows, best_rows = pr.gold, pr.base, pr.best
            g = paired_gain(metric, gold, np.vstack(base_rows), np.vstack(best_rows), n_boot=n_boot)
            p, pos, neg = paired_test(metric, gold, np.vstack(base_rows), np.vstack(best_rows))
            base_score = float(np.mean([metric.score(gold, r) for r in base_rows]))
            best_score = float(np.mean([metric.score(gold, r) for r in best_rows]))
            counts = {"asked": 0, "written": 0, "usable": 0}
            for run_id in done["run_id"]:
                for a in results.attribution(store, run_id):
                    if a["model"] in members_of_set:
                        counts = {k: n + a[k] for k, n in counts.items()}
            cells.append(Cell(target_label, set_label, family, rel, len(base_rows), g.mean, g.ci_low, g.ci_high, p,
                              metric.count_relevant(gold, base_rows[0]), pos, neg, base_score, best_score,
                              tuple(group["run_id"]), len(done), **counts))
        else:
            cells.append(Cell(target_label, set_label, family, rel, 0, None, None, None, None, len(test), 0, 0, None,
                              None, tuple(group["run_id"]), len(done)))
    return cells


def head_to_head(store: Store, study_id: str, n_boot: int = 2000) -> pd.DataFrame:
    """Every pair of proposer sets of each target compared directly: metric(second's best prompts) -
    metric(first's), on the same test examples and the seeds both finished, with the same two-level
    paired bootstrap CI and paired test as the gains. This, not whether two gain intervals overlap,
    is the test of "does this proposer write better prompts than that one". `p_adj` is Holm-adjusted
    over the target's pairs, for reading the table as a whole; the CIs are per pair (unadjusted)."""
    _, ds, metric, targets = _context(store, study_id)
    members = _members(store, study_id)
    rows = []
    for target_label, tgroup in members.groupby("target", sort=False):
        preds = {label: _predictions(store, ds, metric, targets[target_label], g)
                 for label, g in tgroup.groupby("proposer_set", sort=False)}
        labels = list(preds)
        for i, first in enumerate(labels):
            for second in labels[i + 1:]:
                a, b = preds[first], preds[second]
                common = sorted(set(a.seeds) & set(b.seeds))
                if not common:
                    continue
                ra = np.vstack([a.best[a.seeds.index(s)] for s in common])
                rb = np.vstack([b.best[b.seeds.index(s)] for s in common])
                g = paired_gain(metric, a.gold, ra, rb, n_boot=n_boot)
                p, pos, neg = paired_test(metric, a.gold, ra, rb)
                rows.append({"target": target_label, "first": first, "second": second, "seeds": len(common),
                             "n_test": metric.count_relevant(a.gold, ra[0]), "diff": g.mean, "ci_low": g.ci_low,
                             "ci_high": g.ci_high, "p_value": p, "second_better_on": pos, "first_better_on": neg})
    frame = pd.DataFrame(rows, columns=["target", "first", "second", "seeds", "n_test", "diff", "ci_low", "ci_high",
                                        "p_value", "second_better_on", "first_better_on"])
    frame["p_adj"] = pd.Series(dtype=float)
    for _, group in frame.groupby("target", sort=False):
        adjusted = holm([None if pd.isna(v) else float(v) for v in group["p_value"]])
        frame.loc[group.index, "p_adj"] = [np.nan if v is None else v for v in adjusted]
    return frame


def cells_frame(cells: list[Cell]) -> pd.DataFrame:
    return pd.DataFrame([c.to_record() for c in cells])


ALPHA = 0.05


def _significant(ci_low: float | None, p_value: float | None) -> bool:
    """Above 0 by both the CI and, where the metric has one, the paired test (the bootstrap's
    percentile CI alone can clear 0 on a handful of differing examples)."""
    return ci_low is not None and ci_low > 0 and (p_value is None or p_value < ALPHA)


def _beats(pairs: pd.DataFrame, target: str, winner: str, other: str) -> bool:
    """Whether `winner`'s best prompts beat `other`'s head to head (paired CI above 0 and p < 0.05).
    Claiming "beats every other" needs every one of these (an intersection-union test), so it keeps
    the 5% level without a multiplicity correction."""
    mine = pairs[pairs["target"] == target]
    row = mine[(mine["first"] == other) & (mine["second"] == winner)]
    if len(row):
        r = row.iloc[0]
        return _significant(r["ci_low"], None if pd.isna(r["p_value"]) else r["p_value"])
    row = mine[(mine["first"] == winner) & (mine["second"] == other)]
    if len(row):
        r = row.iloc[0]
        return _significant(-r["ci_high"], None if pd.isna(r["p_value"]) else r["p_value"])
    return False


def reading(cells: list[Cell], target: str, pairs: pd.DataFrame | None = None) -> str:
    """One line in plain words: which proposer family writes the best prompts for this target, or that
    the data cannot tell. A gain counts when its CI is above 0 and its paired test has p < 0.05. With
    `pairs` (from head_to_head) the ranking rests on the direct paired comparisons; without, on
    non-overlapping gain intervals (more conservative)."""
    every = [c for c in cells if c.target == target]
    mine = [c for c in every if c.gain_mean is not None]
    if not mine:
        return f"No finished runs for {target} yet."
    # a proposer that wrote nothing usable "gains" 0 by keeping the baseline: not a candidate for the top
    wrote = [c for c in mine if c.usable or not c.asked] or mine
    top = max(wrote, key=lambda c: c.gain_mean)
    n = f"n={top.n_test} test examples, {top.seeds} seed(s)"
    caveats = ""
    if len(mine) < len(every):
        caveats += f" Only {len(mine)} of {len(every)} proposers have finished runs so far."
    if min(c.seeds for c in mine) < 3:
        caveats += " With fewer than 3 seeds the CI reflects little of the seed-to-seed variation."
    mute = [c.proposer for c in mine if c.asked and not c.usable]
    if mute:
        caveats += (f" {', '.join(mute)} wrote no usable prompt in any of {'its' if len(mute) == 1 else 'their'} runs "
                    f"({'its' if len(mute) == 1 else 'their'} best is the baseline).")
    if all(c.better_on + c.worse_on == 0 for c in mine):
        return (f"For {target}, no proposer's best prompt answered any test example differently from the baseline "
                f"({n}): the data cannot say which family writes better prompts for it." + caveats)
    gain = f"{format_score(top.gain_mean)} [{format_score(top.ci_low)}, {format_score(top.ci_high)}]"
    if top.ci_high < 0:
        return (f"For {target}, every proposer's best prompt did worse than the baseline on test (the best, "
                f"{top.proposer}'s, {gain}, {n}): the search overfit the validation split, and no family helps here."
                + caveats)
    others = [c for c in mine if c is not top]
    if pairs is not None:
        clear = all(_beats(pairs, target, top.proposer, o.proposer) for o in others)
        why = "and it beats every other proposer head to head (paired CI above 0, p < 0.05)."
    else:
        clear = all(top.gain_mean - o.gain_mean > 0 and o.ci_high < top.ci_low for o in others)
        why = "and its interval clears every other proposer's."
    if _significant(top.ci_low, top.p_value) and clear and len(mine) == len(every):
        return f"For {target}, {top.proposer} ({top.relation}) writes the best prompts: test gain {gain}, {n}, {why}" + caveats
    helping = [c for c in mine if _significant(c.ci_low, c.p_value)]
    if _significant(top.ci_low, top.p_value):
        return (f"For {target}, {top.proposer} ({top.relation}) has the largest test gain, {gain} ({n}), but "
                + ("not every head-to-head comparison clears 0" if pairs is not None else "its interval overlaps others'")
                + ": the data cannot rank the families." + caveats)
    if helping:
        names = ", ".join(f"{c.proposer} ({c.relation})" for c in helping)
        return (f"For {target}, {names} improve{'s' if len(helping) == 1 else ''} on the baseline (CI above 0, "
                f"p < 0.05), but the largest mean gain, {top.proposer}'s {gain} ({n}), is not significant: some "
                "family helps, and the data cannot rank them." + caveats)
    return (f"For {target}, the largest test gain is {top.proposer}'s ({top.relation}), {gain} ({n}), and no "
            "proposer's gain is clearly above 0: the data cannot tell whether any family helps, let alone which."
            + caveats)
