"""The best prompt for each model in one job: one search per target model with the same data, proposers, budget
and seed (a *group*), stored as a study of kind 'group' (the same tables), resumable, and read back as one row
per model and the prompts x models matrix of its results (does the prompt found for one model transfer?).

A group is asked for as a run is (planning.RunRequest), with several targets: each member's config is the one
`planning.plan` makes for that target, so a group's run is exactly the run `optimize --target T` would have made.
Asking for the same group again finds it (its members' configs hash to the same id) and resumes it.
"""
from __future__ import annotations

import hashlib
import json
import uuid
from dataclasses import replace

import pandas as pd

from promptlab import jobs, planning, results
from promptlab.cost import Cost
from promptlab.errors import PromptlabError
from promptlab.jobs import MatrixRequest, MatrixResult, matrix_lines, score_matrix
from promptlab.progress import Progress
from promptlab.models import spec_from_record
from promptlab.scoring import stats as S
from promptlab.store import Store
from promptlab.study import run_members
from promptlab.text import number_or_none


def plan_group(store: Store, request: planning.RunRequest, targets: list[str]) -> list[planning.Plan]:
    """One checked plan per target (the same request otherwise); every mistake names its target."""
    names = list(dict.fromkeys(t.strip() for t in targets if t.strip()))
    if len(names) < 2:
        raise PromptlabError("a group needs at least two target models (--target A,B)")
    plans = []
    for name in names:
        try:
            plans.append(planning.plan(store, replace(request, target=name)))
        except PromptlabError as exc:
            raise PromptlabError(f"target {name}: {exc}") from None
    for p in plans:
        if p.problem:
            raise PromptlabError(f"target {p.target.label}: {p.problem}")
    return plans


def create_group(store: Store, plans: list[planning.Plan]) -> tuple[str, bool]:
    """Store the group and all its runs at once (never half-created); the same plans again are the same group,
    returned with reused=True."""
    members = [{"config": p.config.to_record(), "target": p.target.label, "proposer_set": "all", "seed": p.config.seed}
               for p in plans]
    plan = {"kind": "group", "targets": [m["target"] for m in members], "configs": [m["config"] for m in members]}
    digest = "group:" + hashlib.sha256(json.dumps(plan, sort_keys=True, default=str).encode()).hexdigest()
    existing = store.study_by_hash(digest)
    if existing:
        return existing, True
    group_id = "group-" + uuid.uuid4().hex[:10]
    for m in members:
        m["run_id"] = "run-" + uuid.uuid4().hex[:10]
    store.create_study(group_id, plans[0].dataset.id, plan, digest, members, kind="group")
    return group_id, False


def is_group(store: Store, ident: str) -> bool:
    """Whether `ident` names a stored group (not a run, nor a study over proposers and seeds)."""
    row = store.study_row(str(ident))
    return row is not None and row["kind"] == "group"


def members(store: Store, group_id: str) -> pd.DataFrame:
    if not is_group(store, group_id):
        raise PromptlabError(f"no group '{group_id}' (`promptlab runs list` shows groups beside runs)")
    order = store.study_row(group_id)["config"]["targets"]
    frame = store.study_members(group_id)
    frame["order"] = [order.index(t) if t in order else len(order) for t in frame["target"]]
    return frame.sort_values("order").drop(columns="order").reset_index(drop=True)


def execute_group(store: Store, group_id: str, progress: Progress | None = None, stop=None) -> pd.DataFrame:
    """Run (or resume) each target's search in turn; then the group's view (one row per model)."""
    members(store, group_id)  # checks the id
    run_members(store, group_id, progress, stop)
    return view(store, group_id)


def view(store: Store, group_id: str) -> pd.DataFrame:
    """One row per model: its run, status, best prompt, held-out score with its 95% CI, the gain over the baseline
    on the same test examples with its paired CI, and the result's cost per call."""
    rows = []
    for m in members(store, group_id).itertuples():
        row = {"model": m.target, "run": m.run_id, "status": m.status, "prompt": None, "result_by": None,
               "test": None, "test_ci_low": None, "test_ci_high": None, "n_test": None, "baseline_test": None,
               "gain": None, "gain_ci_low": None, "gain_ci_high": None, "tokens_in": None, "latency_s": None,
               "price_1k": None}
        if m.status == "finished":
            s = results.summarize(store, m.run_id)
            cands = store.candidates(m.run_id).set_index("id")
            best = cands.loc[s["best_id"]]
            row |= {"prompt": s["best_prompt"], "result_by": s["best_proposer"], "test": s["best_test"],
                    "test_ci_low": best["test_ci_low"], "test_ci_high": best["test_ci_high"], "n_test": s["n_test"],
                    "baseline_test": s["baseline_test"]}
            cost = Cost.from_record((s.get("costs") or {}).get("result"))
            row |= {"tokens_in": cost.prompt_tokens, "latency_s": cost.latency_s, "price_1k": cost.price_per_1k}
            row |= _gain(store, m.run_id, s, cands)
        rows.append(row)
    return pd.DataFrame(rows)


def _gain(store: Store, run_id: str, s: dict, cands: pd.DataFrame) -> dict:
    """The result's test gain over the run's baseline, paired on the same examples (from the cache). `cands`: the
    run's candidates by id."""
    base_id = int(cands.index[cands["proposer"] == "baseline"][0])
    if s["best_id"] == base_id or s["best_test"] is None:
        return {"gain": 0.0 if s["best_id"] == base_id else None}
    ds, target, metric = results.run_setup(store, run_id)
    base = jobs.candidate_test_rows(store, run_id, base_id, target, ds, metric)
    best = jobs.candidate_test_rows(store, run_id, s["best_id"], target, ds, metric)
    cmp = S.compare(metric, base, best, 0.95)
    return {"gain": cmp.diff, "gain_ci_low": cmp.ci_low, "gain_ci_high": cmp.ci_high}


def matrix(store: Store, group_id: str, progress: Progress | None = None) -> MatrixResult:
    """Each finished member's result scored by every model of the group on the same test examples; `diagonal`
    marks a prompt on the model it was found for. Off-diagonal cells make new calls the first time."""
    mem = members(store, group_id)
    done = mem[mem["status"] == "finished"]
    if done.empty:
        raise PromptlabError(f"no search of group '{group_id}' has finished yet: nothing to cross-score")
    models = tuple(spec_from_record(store.run_row(r)["config"]["target"]) for r in mem["run_id"])
    result = score_matrix(store, MatrixRequest(tuple(done["run_id"]), models), progress)
    result.cells["diagonal"] = result.cells["model"] == result.cells["own_model"]
    return result


def group_lines(store: Store, group_id: str, frame: pd.DataFrame | None = None) -> list[str]:
    """The group in words, for `runs show` and the report: per model, its best prompt's held-out score and cost."""
    frame = view(store, group_id) if frame is None else frame
    lines = []
    for r in frame.itertuples():
        if r.status != "finished":
            lines.append(f"{r.model}: {r.run} {r.status}")
            continue
        gain = "" if r.gain is None else f", {r.gain:+.3f} over its baseline{_gain_ci(r)}"
        cost = "" if r.tokens_in is None else f"; {r.tokens_in:.0f} tokens in, {r.latency_s:.2f} s per call"
        ci = f" [{r.test_ci_low:.3f}, {r.test_ci_high:.3f}]" if number_or_none(r.test_ci_low) is not None else ""
        lines.append(f"{r.model}: test {r.test:.3f}{ci} (n={r.n_test}){gain}, by {r.result_by} ({r.run}){cost}")
    return lines


def _gain_ci(r) -> str:
    """' [-0.021, +0.200]': a view row's paired CI of its gain, or '' where there is none (the result is the baseline)."""
    return f" [{r.gain_ci_low:+.3f}, {r.gain_ci_high:+.3f}]" if number_or_none(r.gain_ci_low) is not None else ""


def markdown_report(store: Store, group_id: str, mat: MatrixResult | None = None,
                    frame: pd.DataFrame | None = None) -> str:
    """The group as Markdown for a team review: one row per model, then the matrix in words. `frame`: the group's
    view, if read already (it summarizes every member and bootstraps each gain)."""
    frame = view(store, group_id) if frame is None else frame
    f = lambda x: "—" if x is None or x != x else f"{x:.3f}"  # noqa: E731 - a table's one number format
    lines = [f"# promptlab group {group_id}: the best prompt for each model", "",
             "| model | test [95% CI] | n | gain over its baseline [95% paired CI] | tokens in per call | latency per call | result by |",
             "|---|---|---|---|---|---|---|"]
    for r in frame.itertuples():
        ci = f" [{f(r.test_ci_low)}, {f(r.test_ci_high)}]" if r.test is not None else ""
        gain = "—" if r.gain is None else f"{r.gain:+.3f}{_gain_ci(r)}"
        tokens = "—" if r.tokens_in is None else f"{r.tokens_in:.0f}"
        latency = "—" if r.latency_s is None else f"{r.latency_s:.2f} s"
        lines.append(f"| {r.model} | {f(r.test)}{ci} | {r.n_test or '—'} | {gain} | {tokens} | {latency} | "
                     f"{r.result_by or r.status} |")
    for r in frame.itertuples():
        if r.prompt:
            lines += ["", f"Best prompt for {r.model} ({r.run}):", "", "```text", r.prompt.strip(), "```"]
    if mat is not None:
        lines += ["", f"## Each prompt on every model ({mat.metric}, {mat.split}; the diagonal is the model it was found for)", ""]
        lines += [f"- {line}" for line in matrix_lines(mat)]
    return "\n".join(lines) + "\n"
