"""Semi-automatic search: a run that pauses after every round for the analyst's decisions.

The analyst sees the round's new candidates side by side (scores with CIs, the diff against the current
best, the proposer, and outputs where they differ from the best's), then keeps or discards each, edits
one (stored as a new candidate with its parent), adds a prompt of their own, re-scores one on more data,
and continues (or stops the search). Each decision is committed at once with who made it; the strategy
reads them when the run continues (promptlab.optimize.rounds.review_round), so a paused, killed or resumed
run always takes the same path. The dashboard and the CLI (interactive, or a file of decisions) both
call these functions.
"""
from __future__ import annotations

import difflib
import json
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from promptlab.errors import PromptlabError
from promptlab.evaluate import dataset_params, evaluate, model_key, stored_rows
from promptlab.prompt import PromptTemplate
from promptlab.runs import round_closed
from promptlab.planning import RunConfig, build
from promptlab.store import Store
from promptlab.text import json_number

ACTIONS = ("keep", "discard", "edit", "add", "rescore", "continue", "stop")
WHO = ("analyst", "rule")


class ReviewError(PromptlabError):
    pass


@dataclass(frozen=True)
class Pause:
    run_id: str
    round: int
    candidate_ids: tuple[int, ...]
    best_id: int


def paused_at(store: Store, run_id: str) -> Pause | None:
    """The round a run is waiting on, or None when it is not waiting for the analyst."""
    rec = store.run_row(run_id)
    if rec is None:
        raise ReviewError(f"no run '{run_id}' (see `runs list`)")
    if rec["status"] != "paused":
        return None
    last = next((s for s in reversed(store.steps(run_id)) if s["kind"] == "review_requested"), None)
    if last is None:
        return None
    return Pause(run_id, int(last["round"]), tuple(last["candidate_ids"]), int(last["best_id"]))


def _require_pause(store: Store, run_id: str) -> Pause:
    pause = paused_at(store, run_id)
    if pause is None:
        rec = store.run_row(run_id)
        raise ReviewError(f"run {run_id} is not waiting for a review (it is {rec['status']}). Start it with "
                          "'pause after each round' (--review) to decide its rounds.")
    if round_closed(store, run_id, pause.round):
        raise ReviewError(f"round {pause.round} is already closed (continue or stop was chosen): resume the run "
                          f"(promptlab review {run_id}, or Continue on the Runs page) to decide the next round")
    return pause


def _context(store: Store, run_id: str):
    config = RunConfig.from_record(store.run_row(run_id)["config"])
    return build(store, config, run_id)[1]


def decide(store: Store, run_id: str, action: str, candidate_id: int | None = None, text: str | None = None, *,
           who: str = "analyst", note: str = "") -> int:
    """Record one decision on the paused round; returns its number. Refuses what the run could not apply."""
    pause = _require_pause(store, run_id)
    action = (action or "").strip().lower()
    if action not in ACTIONS:
        raise ReviewError(f"unknown decision '{action}': use one of {', '.join(ACTIONS)}")
    if who not in WHO:
        raise ReviewError(f"who must be {' or '.join(WHO)}")
    cands = store.candidates(run_id)
    ids = set(cands["id"].astype(int))
    if action in ("keep", "discard", "edit", "rescore"):
        if candidate_id is None or int(candidate_id) not in ids:
            raise ReviewError(f"'{action}' needs one of this run's candidates (ids {min(ids)}–{max(ids)}), "
                              f"not {candidate_id!r}")
        candidate_id = int(candidate_id)
    if action in ("keep", "discard") and candidate_id not in pause.candidate_ids:
        raise ReviewError(f"candidate {candidate_id} is not one of round {pause.round}'s new candidates "
                          f"({', '.join(map(str, pause.candidate_ids)) or 'none'}); keep or discard those")
    if action == "discard":
        left = cands[cands["val_score"].notna() & (cands["id"] != candidate_id)]
        gone = {d["candidate_id"] for d in store.decisions(run_id) if d["action"] == "discard"}
        if left[~left["id"].isin(gone)].empty:
            raise ReviewError("that would discard every scored prompt: keep at least one")
    if action in ("edit", "add"):
        if not (text or "").strip():
            raise ReviewError(f"'{action}' needs the prompt text")
        ctx = _context(store, run_id)
        try:
            PromptTemplate.from_text(text).check(ctx.dataset.input_cols)
        except PromptlabError as exc:
            raise ReviewError(f"the prompt cannot be used: {exc}") from None
    return store.add_decision(run_id, pause.round, action, candidate_id if action not in ("add", "continue", "stop") else None,
                              text if action in ("edit", "add") else None, who, note)


def rescore(store: Store, run_id: str, candidate_id: int, *, who: str = "analyst", note: str = "") -> dict:
    """Score a candidate on more data (train and val together; test stays held out so the final test
    scores stay honest), record the decision with the result, and return it."""
    pause = _require_pause(store, run_id)
    cands = store.candidates(run_id)
    row = cands[cands["id"] == int(candidate_id)]
    if row.empty:
        raise ReviewError(f"no candidate {candidate_id} in run {run_id}")
    ctx = _context(store, run_id)
    r = row.iloc[0]
    template = _template(r)
    examples = pd.concat([ctx.trainset, ctx.valset])
    res = evaluate(store, ctx.target, template, ctx.dataset, examples, ctx.metric, split="train+val", run_id=run_id,
                   max_tokens=ctx.max_tokens)
    lo, hi = res.ci
    detail = {"on": "train+val", "score": json_number(res.score), "ci": [json_number(lo), json_number(hi)], "n": res.n}
    store.add_decision(run_id, pause.round, "rescore", int(candidate_id), None, who, note, detail)
    return detail


def _template(r) -> PromptTemplate:
    return PromptTemplate.from_record({"system": r["system"], "user": r["user"], "demos": r["demos"],
                                       "demo_format": r["demo_format"], "similar_k": r["similar_k"],
                                       "similar_by": r["similar_by"]})


def _same(a, b) -> bool:
    if pd.isna(a) and pd.isna(b):
        return True
    return not pd.isna(a) and not pd.isna(b) and a == b


def diff(best: str, cand: str, best_name: str = "current best", cand_name: str = "candidate", context: int = 1) -> str:
    """A unified diff of two prompt texts, line by line, with `context` lines around each change (empty when
    they are equal)."""
    return "\n".join(difflib.unified_diff(best.splitlines(), cand.splitlines(), best_name, cand_name, lineterm="",
                                          n=context))


def round_view(store: Store, run_id: str, n_outputs: int = 3) -> dict:
    """Everything the analyst needs to decide a paused round: the new candidates beside the current best."""
    pause = _require_pause(store, run_id)
    ctx = _context(store, run_id)
    cands = store.candidates(run_id)
    by_id = {int(r["id"]): r for _, r in cands.iterrows()}
    best = by_id.get(pause.best_id)
    mk = model_key(ctx.target, dataset_params(ctx.target, ctx.dataset, ctx.max_tokens))
    evals = {}

    def rows_of(r):
        if r["prompt_id"] not in evals:
            evals[r["prompt_id"]] = stored_rows(store, r["prompt_id"], mk, ctx.dataset).set_index("example_idx")
        return evals[r["prompt_id"]]

    val_idx = set(ctx.valset["idx"].astype(int))
    out = []
    for cid in pause.candidate_ids:
        r = by_id[cid]
        item = {
            "id": cid, "proposer": r["proposer"], "family": r["family"], "status": r["status"], "text": r["text"],
            "minibatch": r["minibatch_score"], "val": r["val_score"], "ci": (r["val_ci_low"], r["val_ci_high"]),
            "n_val": r["n_val"], "diff": diff(best["text"], r["text"]) if best is not None else "", "outputs": [],
            "constant": None,
        }
        # the label it gives to (nearly) every val example it was scored on, if any
        item["constant"] = ctx.metric.constant(rows_of(r).loc[lambda f: f.index.isin(val_idx)])
        if best is not None:
            mine, theirs = rows_of(r), rows_of(best)
            shared = sorted(set(mine.index) & set(theirs.index) & val_idx)
            for i in shared:
                a, b = mine.loc[i], theirs.loc[i]
                if _same(a[ctx.metric.outcome], b[ctx.metric.outcome]):
                    continue
                item["outputs"].append({"example": int(i), "input": a["text"], "gold": a["gold"],
                                        "best": b["reply"], "best_score": b["score"], "candidate": a["reply"],
                                        "candidate_score": a["score"]})
                if len(item["outputs"]) >= n_outputs:
                    break
        out.append(item)
    return {
        "round": pause.round, "best": None if best is None else {
            "id": int(best["id"]), "text": best["text"], "val": best["val_score"], "proposer": best["proposer"],
            "ci": (best["val_ci_low"], best["val_ci_high"]), "n_val": best["n_val"]},
        "candidates": out, "decisions": store.decisions(run_id, pause.round), "metric": ctx.metric.describe(),
        "kind": ctx.dataset.kind,
    }


def read_decisions_file(path: str | Path) -> list[dict]:
    """A decisions file: a JSON list, or JSON lines, of {"action", "candidate", "text", "note", "round"}.
    A decision without "round" applies to whichever round is paused when it is reached."""
    p = Path(path)
    if not p.exists():
        raise ReviewError(f"no decisions file '{path}'")
    raw = p.read_text(encoding="utf-8").strip()
    try:
        items = json.loads(raw) if raw.startswith("[") else [json.loads(line) for line in raw.splitlines() if line.strip()]
    except ValueError as exc:
        raise ReviewError(f"{p.name}: not JSON ({exc}). Write a JSON list of decisions, or one JSON object per line, "
                          'e.g. {"action": "keep", "candidate": 3}') from None
    for i, d in enumerate(items, 1):
        if not isinstance(d, dict) or d.get("action") not in ACTIONS:
            raise ReviewError(f"{p.name}: decision {i} needs an action, one of {', '.join(ACTIONS)} (got {d!r})")
    return items
