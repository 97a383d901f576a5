"""Reading a stored run back, one job past 600 lines: every function reads its steps and candidates, none writes.
Its leaderboard (with each candidate's marks and costs), per-proposer attribution, the stage report, each proposer
call's meta-prompt and reply, the family view, its summary and live progress. Used alike by the CLI, the pages, the
report and the benchmarks; `runs` drives a run and writes, this module only reads (it never calls a model), and
report.py puts what it reads in words.
"""
from __future__ import annotations

import math

import pandas as pd

from promptlab.columns import in_words
from promptlab.cost import Cost, costs
from promptlab.data import Dataset, stored_dataset
from promptlab.errors import PromptlabError
from promptlab.evaluate import EvalResult, dataset_params, model_key, stored_rows
from promptlab.models import ModelSpec, relation, spec_from_record
from promptlab.optimize.base import Counters
from promptlab.planning import RunConfig
from promptlab.scoring import Objective, parse_objective
from promptlab.scoring import stats as S
from promptlab.store import Store
from promptlab.text import format_score


# The families of candidates made after the search, by the decision (confirmation.py): variants of the result tried on
# the held-back examples, and the result's parts scored on test. They are shown with the others but are not proposals.
AFTER_DECISION = ("simplify", "part")


def run_setup(store: Store, run_id: str) -> tuple[Dataset, ModelSpec, Objective]:
    """What a run scores with: its dataset, its target, and its objective (its judge included)."""
    rec = store.run_row(run_id)
    config = rec["config"]
    dataset = stored_dataset(store, rec["dataset_id"])
    return dataset, spec_from_record(config["target"]), parse_objective(config["metric"], dataset, config.get("judge"),
                                                                        store)


def misses(res: EvalResult) -> pd.DataFrame:
    """The examples a prompt did not get right (the example's text as `input`): with labels, its wrong answers (and
    how each reply was read); with scored replies, those without full marks, lowest score first."""
    wrong = res.rows[~res.rows["correct"]].rename(columns={"text": "input"})
    if res.labels:
        return wrong[["example_idx", "input", "gold", "reply", "parse"]]
    return wrong.sort_values("score")[["example_idx", "input", "gold", "reply", "score", "detail"]].rename(
        columns={"gold": "reference"})


def demo_summary(demos, similar_k, similar_by: str = "tfidf") -> str:
    """How a prompt's demos read in a table: '' (none), '3', '2 nearest of 64' or '2 nearest (minilm) of 64'."""
    n = len(demos) if demos is not None else 0
    if not n:
        return ""
    by = f" ({similar_by})" if similar_by and similar_by != "tfidf" else ""
    return f"{int(similar_k)} nearest{by} of {n}" if similar_k else str(n)


def _floor_mark(f: dict) -> str:
    """One floor as the leaderboard shows it: 'precision:fraud 0.250 < 0.4' when missed."""
    return f"{f['metric']} {format_score(f['value'])}" + ("" if f["met"] else f" < {f['floor']:g}")


def _rows_setup(store: Store, run_id: str) -> tuple[Dataset, Objective, str, int | None] | None:
    """Where a run's stored rows are read: its dataset, its objective, the model key of its target's rows and its
    split seed; None when its dataset was deleted (the run stays readable, without what needs its rows)."""
    try:
        ds, target, metric = run_setup(store, run_id)
    except PromptlabError:
        return None
    config = store.run_row(run_id)["config"]
    return ds, metric, model_key(target, dataset_params(target, ds, config.get("max_tokens"))), config.get("split_seed")


def candidate_marks(store: Store, run_id: str, cands: pd.DataFrame, setup=False) -> tuple[list, list]:
    """Per candidate, from its replies on the val examples it was scored on: the label it gives to at least 95%
    of them (a constant answer, which recall of that label rewards) or '', and the values of the metric's floors
    ('precision:fraud 0.25 < 0.4') or ''. Labeled datasets only. `setup`: the run's _rows_setup, if read already."""
    setup = _rows_setup(store, run_id) if setup is False else setup
    if setup is None or not setup[0].has_labels:
        return [""] * len(cands), [""] * len(cands)
    ds, metric, key, split_seed = setup
    val = ds.split("val", split_seed)["idx"].tolist()
    constants, floors = [], []
    for pid in cands["prompt_id"]:
        rows = stored_rows(store, pid, key, ds, val)
        constants.append(metric.constant(rows) or "")
        floors.append(", ".join(_floor_mark(f) for f in metric.floors_on(rows)) if len(rows) else "")
    return constants, floors


COST_COLUMNS = ("tokens_in", "tokens_out", "latency_s", "price_1k")


def candidate_costs(store: Store, run_id: str, cands: pd.DataFrame, split: str = "val", setup=False) -> list[Cost]:
    """Per candidate, what a call with its prompt costs for the run's target, measured from the calls that scored
    it on `split` (val: the examples the race gave it). `setup`: the run's _rows_setup, if read already."""
    setup = _rows_setup(store, run_id) if setup is False else setup
    if setup is None:  # its dataset was deleted: no examples to read costs on
        return [Cost()] * len(cands)
    ds, _, key, split_seed = setup
    idx = ds.split(split, split_seed)["idx"].tolist()
    found = costs(store, cands["prompt_id"].tolist(), key, ds.id, idx)
    return [found[pid] for pid in cands["prompt_id"]]


def with_costs(board: pd.DataFrame, measured: list[Cost]) -> pd.DataFrame:
    board["tokens_in"] = [c.prompt_tokens for c in measured]
    board["tokens_out"] = [c.completion_tokens for c in measured]
    board["latency_s"] = [c.latency_s for c in measured]
    board["price_1k"] = [c.price_per_1k for c in measured]
    return board


def leaderboard(store: Store, run_id: str) -> pd.DataFrame:
    """Every candidate, best val first (gated candidates after, by minibatch score), with its marks
    (`constant`, `floors`: see candidate_marks) and its cost per call on the val examples it was scored on
    (COST_COLUMNS: mean prompt and completion tokens, median latency, price per 1,000 calls where known)."""
    cands = store.candidates(run_id)
    if cands.empty:
        return cands
    setup = _rows_setup(store, run_id)  # read once for the marks and the costs
    cands["constant"], cands["floors"] = candidate_marks(store, run_id, cands, setup)
    cands = with_costs(cands, candidate_costs(store, run_id, cands, setup=setup))
    cands["demos_shown"] = [demo_summary(d, k, b) for d, k, b in zip(cands["demos"], cands["similar_k"], cands["similar_by"])]
    cands["_sort_val"] = cands["val_score"].fillna(-math.inf)
    cands["_sort_mb"] = cands["minibatch_score"].fillna(-math.inf)
    return cands.sort_values(["_sort_val", "_sort_mb", "id"], ascending=[False, False, True]).drop(
        columns=["_sort_val", "_sort_mb"]).reset_index(drop=True)


def baseline_of(board: pd.DataFrame) -> pd.Series | None:
    """The leaderboard's first baseline (the best on val, when a dataset has several), or None."""
    base = board[board["proposer"] == "baseline"]
    return base.iloc[0] if len(base) else None


def leaderboard_table(board: pd.DataFrame, marks: bool = False) -> pd.DataFrame:
    """A leaderboard (not empty) as the pages show it, its columns in words (columns.in_words: the prompt's text is
    'prompt'). With `marks`: each candidate's constant answer, its floors (when the metric has any), the analyst's
    decision, and its difference from the baseline on val and from its own held-back val score."""
    cols = ["id", "round", "proposer", "family", "status", "n_scored", "minibatch_score", "val_score", "val_ci_low",
            "val_ci_high", "confirm_score", "test_score"]
    if marks:
        cols += ["constant", *(["floors"] if board["floors"].astype(bool).any() else []), "decision", "decided_by"]
    cols += [c for c in COST_COLUMNS if c in board.columns and (c != "price_1k" or board[c].notna().any())]
    view = board[cols + ["demos_shown", "text"]].copy()
    if marks:
        base = baseline_of(board)
        view["val_vs_baseline"] = view["val_score"] - (float(base["val_score"]) if base is not None else math.nan)
        view["val_minus_held_back"] = view["val_score"] - view["confirm_score"]
    return in_words(view)


def attribution(store: Store, run_id: str, steps: list[dict] | None = None) -> list[dict]:
    """Per proposer: its calls, the proposals asked for, written and usable (proposal_counts), the usable rate
    (usable / asked), its best val score, rounds won, failed calls and the proposals dropped by reason. A strategy
    that chooses rather than writes (few-shot: "fewshot/<method>") has no calls: each candidate it chose counts as
    asked, written and usable."""
    steps = steps if steps is not None else store.steps(run_id)
    rec = store.run_row(run_id)
    per_call = asked_per_call(rec["config"])
    cands = store.candidates(run_id)
    out: dict[str, dict] = {}
    for p in rec["config"]["proposers"]:
        label = p.get("name") or p["model"]
        out[label] = _proposer_row(label, p.get("family", "unknown"))
    searched = cands[(cands["proposer"] != "baseline") & ~cands["family"].isin(AFTER_DECISION)]
    for label, family in searched[["proposer", "family"]].drop_duplicates().itertuples(index=False):
        if label not in out and not any(s["kind"] == "proposal_made" and s["proposer"] == label for s in steps):
            k = int((cands["proposer"] == label).sum())
            out[label] = _proposer_row(label, family) | {"asked": k, "written": k, "usable": k}
    for s in steps:
        if s["kind"] == "proposal_made":
            row = out.setdefault(s["proposer"], _proposer_row(s["proposer"], s["family"]))
            row["calls"] += 1
            for key, n in proposal_counts(s, per_call).items():
                row[key] += n
            row["errors"] += 1 if s.get("error") else 0
            for why, k in (s.get("dropped") or {}).items():
                row["dropped"][why] = row["dropped"].get(why, 0) + k
        elif s["kind"] == "round_finished" and s.get("winner_proposer") in out:
            out[s["winner_proposer"]]["wins"] += 1
    for label, row in out.items():
        mine = cands[(cands["proposer"] == label) & cands["val_score"].notna()]
        row["best_val"] = float(mine["val_score"].max()) if len(mine) else None
        row["usable_rate"] = row["usable"] / row["asked"] if row["asked"] else None
    return list(out.values())


def _proposer_row(label: str, family: str) -> dict:
    """An empty attribution row for a proposer."""
    return {"model": label, "family": family, "calls": 0, "asked": 0, "written": 0, "usable": 0, "usable_rate": None,
            "best_val": None, "wins": 0, "errors": 0, "dropped": {}}


def asked_per_call(config: dict) -> int:
    """The prompts each proposer call of a run asks for, by its stored config: its `candidates` setting (every
    setting is stored with a run; runs stored before that asked for 2, the default then). What a proposal step
    stored before it recorded its own count (config version 4) is read as."""
    return int(RunConfig.from_record(config).strategy_params.get("candidates", 2))


def proposal_counts(step: dict, per_call: int) -> dict:
    """One proposer call's proposals, from its stored proposal_made step: 'asked', the prompts the call asked for
    (its own record, else the run's `per_call`: asked_per_call); 'written', the prompts found in the reply (cut-off
    ones included); 'usable', those that passed the screen (not empty, overlong, a copy, a leak of the format, a
    repeat) and became candidates."""
    usable = len(step.get("accepted") or ())
    dropped = step.get("dropped") or {}
    return {"asked": step["asked"] if step.get("asked") is not None else per_call,
            "written": usable + sum(v for k, v in dropped.items() if k != "no_tags"), "usable": usable}


def stage_report(steps: list[dict], config: dict) -> list[dict]:
    """What each stage of a run did and gave, in run order: the target requests it spent, the candidates it
    scored, its proposer calls, the proposals asked for, written and usable (proposal_counts), the leader's search
    score when it ended, and whether the run's result came from it. A run without stages (one strategy) is one
    stage. `config`: the run's stored config (its strategy names a run without stages; what a call asks for)."""
    winner = next((x["winner_id"] for x in reversed(steps) if x["kind"] == "winner_chosen"),
                  next((x["best_id"] for x in reversed(steps) if x["kind"] == "run_finished"), None))
    stages, calls = _stage_tallies(steps, config.get("strategy", ""), asked_per_call(config))
    return [_stage_row(st, calls, winner) for st in stages]


_STAGE_WORK = ("candidate_proposed", "candidate_scored", "proposal_made", "critique", "round_finished")


def _stage_tallies(steps: list[dict], strategy: str, per_call: int) -> tuple[list[dict], int]:
    """(each stage's running tally, in run order, as _new_stage opens it and _tally fills it; the target requests
    counted when the steps end). A stage ends where the next starts or the confirmation does; without
    stage_started steps the whole search is one stage named after `strategy`. `per_call`: asked_per_call."""
    stages: list[dict] = []
    calls = 0
    staged = any(x["kind"] == "stage_started" for x in steps)
    for x in steps:
        kind = x["kind"]
        if kind == "stage_ended" and stages:
            stages[-1]["ended"] = x.get("reason")
            continue
        if kind in ("stage_started", "confirmed", "winner_chosen", "test_scored"):
            if stages:
                stages[-1].setdefault("end", calls)
            if kind == "stage_started":
                stages.append(_new_stage(x["strategy"], x.get("role") or "", calls))
            continue
        if kind not in _STAGE_WORK:
            continue
        if x.get("round", 1) == 0:  # the starting prompts belong to no stage
            calls = x.get("target_requests") or calls
            continue
        if not stages and staged:
            continue
        if not stages:
            stages.append(_new_stage(strategy, "", calls))
        if "end" not in stages[-1]:
            calls = _tally(stages[-1], x, calls, per_call)
    return stages, calls


def _new_stage(name: str, role: str, calls: int) -> dict:
    """An empty tally for a stage that starts after `calls` target requests, named by its role, else its strategy."""
    return {"stage": role or name, "strategy": name, "start": calls, "ids": set(), "proposed": set(), "raced": set(),
            "proposer_calls": 0, "asked": 0, "written": 0, "usable": 0, "copied": 0, "leader_after": None}


def _tally(st: dict, x: dict, calls: int, per_call: int) -> int:
    """Count one step of a stage's work into its tally `st`; returns the target requests counted after it."""
    kind = x["kind"]
    if kind == "candidate_proposed":
        st["proposed"].add(x["candidate_id"])
    elif kind == "candidate_scored":
        calls = x.get("target_requests") or calls
        st["ids"].add(x["candidate_id"])
        if (x.get("n_scored") or 0) > 0 or x.get("status") == "evaluated":
            st["raced"].add(x["candidate_id"])
        st.setdefault("rounds", set()).add(x.get("round"))
    elif kind == "proposal_made":
        st["proposer_calls"] += 1
        for key, n in proposal_counts(x, per_call).items():
            st[key] += n
        st["copied"] += (x.get("dropped") or {}).get("copies_input", 0)
    elif kind == "critique":
        st["proposer_calls"] += 1
    elif kind == "round_finished":
        st["leader_after"] = x.get("best_val")
        calls = max(calls, x.get("target_requests") or 0)
    return calls


def _stage_row(st: dict, calls: int, winner: int | None) -> dict:
    """A stage's tally as a row of the stage report (a stage still open ends at `calls`)."""
    end = st.get("end", calls)
    rounds = st.get("rounds") or {0}
    return {"stage": st["stage"], "strategy": st["strategy"], "calls": end - st["start"],
            "candidates": len(st["ids"]), "proposer_calls": st["proposer_calls"], "asked": st["asked"],
            "written": st["written"], "usable": st["usable"], "copied": st["copied"],
            "never_scored": len(st["proposed"] - st["raced"]), "leader_after": st["leader_after"],
            "ended": STOP_REASONS.get(st.get("ended"), st.get("ended")),  # why it handed over (recorded since v4)
            "result_from_here": winner in st["ids"],
            # where it lies on a trajectory chart's axes: target requests, and rounds
            "span_requests": (st["start"], end), "span_rounds": (min(rounds), max(rounds))}


def result_stage(stages: list[dict]) -> str | None:
    """The stage the run's result came from ('demos'), or None (the result is a starting prompt, or one stage)."""
    return next((st["stage"] for st in stages if st["result_from_here"]), None) if len(stages) > 1 else None


def stage_table(stages: list[dict]) -> pd.DataFrame:
    """The stage report as a table for the Results page, its columns in words (columns.in_words)."""
    frame = pd.DataFrame(stages)
    if frame.empty:
        return frame
    frame["result"] = frame["result_from_here"].map({True: "from here", False: ""})
    for col, empty in (("copied", 0), ("never_scored", 0), ("ended", None)):  # reports stored before they were kept
        frame[col] = frame[col] if col in frame else empty
    frame = frame.rename(columns={"calls": "target_requests"})  # a proposer's `calls` are its own calls
    return in_words(frame[["stage", "target_requests", "candidates", "proposer_calls", "asked", "written", "usable",
                           "copied", "never_scored", "leader_after", "ended", "result"]])


def proposals(store: Store, run_id: str, round_: int | None = None) -> list[dict]:
    """Every proposer call of a run (or of round `round_`), in run order, as its step stored it: the round, the stage
    (its role, else its strategy), the model asked (`proposer`), the `call` ('proposal'; 'critique' for the critic of
    an edits stage), the exact `meta_prompt` it received and its `reply`, the proposals asked, written and usable
    (proposal_counts; None for a critique), the candidates it gave, the proposals dropped by reason, its error, and
    whether the reply came from the cache. A proposal's reply is the model's raw text; a critique's is its feedback
    as passed on to the editor (cut to the gradient's max_feedback_chars), the only form a critique stores."""
    rec = store.run_row(run_id)
    per_call = asked_per_call(rec["config"])
    stage = rec["config"].get("strategy", "")
    out = []
    for x in store.steps(run_id):
        if x["kind"] == "stage_started":
            stage = x.get("role") or x["strategy"]
        elif x["kind"] in ("proposal_made", "critique") and round_ in (None, x["round"]):
            out.append({"round": x["round"], "stage": stage, **_proposer_call(x, per_call), "error": x.get("error")})
    return out


def _proposer_call(step: dict, per_call: int) -> dict:
    """What a proposal_made or critique step stored of its call (see proposals)."""
    if step["kind"] == "critique":
        return {"proposer": step["critic"], "family": None, "call": "critique", "meta_prompt": step["meta_prompt"],
                "reply": step["feedback"], "asked": None, "written": None, "usable": None, "candidates": [],
                "dropped": {}, "cached": None, "criticized": step["prompt_id"]}
    return {"proposer": step["proposer"], "family": step["family"], "call": "proposal", "meta_prompt": step["meta_prompt"],
            "reply": step["raw_reply"], **proposal_counts(step, per_call), "candidates": list(step["accepted"]),
            "dropped": step.get("dropped") or {}, "cached": step.get("cached"), "criticized": None}


def best_candidate(steps: list[dict], cands: pd.DataFrame, chosen: dict | None = None) -> pd.DataFrame:
    """The run's result as a one-row frame: the candidate the analyst chose over the decision (`chosen`, the run's
    stored choice), else the one its finish named, or (a run still going or stopped) the best on val so far; empty
    when nothing is scored."""
    if chosen and chosen.get("candidate_id") in set(cands["id"]):
        return cands[cands["id"] == chosen["candidate_id"]]
    finished = next((s for s in reversed(steps) if s["kind"] == "run_finished"), None)
    if finished is not None and finished.get("best_id"):
        return cands[cands["id"] == finished["best_id"]]
    scored = cands[cands["val_score"].notna()]
    return scored.sort_values(["val_score", "id"], ascending=[False, True]).head(1)


def summarize(store: Store, run_id: str, counters: Counters | None = None) -> dict:
    """A run in one record (the CLI, the pages, the report and the stored summary read it): its setup, the
    baseline and the result with their scores, what the search did, the calls it made and cached, the proposers'
    attribution, the decisions, how the result was chosen, the stages and the cost per call. `counters`: the live
    ones of a run under way; without them, those stored with the run's last execution."""
    rec = store.run_row(run_id)
    steps = store.steps(run_id)
    cands = store.candidates(run_id)
    base = cands[cands["proposer"] == "baseline"].head(1)
    finished = next((s for s in reversed(steps) if s["kind"] == "run_finished"), None)
    best = best_candidate(steps, cands, rec.get("chosen"))
    started = next((s for s in steps if s["kind"] == "run_started"), {})
    return {
        "run_id": run_id,
        "status": rec["status"],
        "reason": finished.get("reason") if finished else None,
        "dataset": stored_dataset_name(store, rec["dataset_id"]),
        "target": rec["config"]["target"].get("name") or rec["config"]["target"]["model"],
        "metric": rec["config"]["metric"],
        "seed": rec["config"]["seed"],
        **_prompt_fields(base, best),
        "n_val": started.get("n_val"),
        "n_test": started.get("n_test"),
        "rounds": max([s["round"] for s in steps if s["kind"] == "round_finished"], default=0),
        "candidates": int(((cands["proposer"] != "baseline") & ~cands["family"].isin(AFTER_DECISION)).sum()),
        "gated": int((cands["status"] == "gated").sum()),
        "calls_saved_by_gate": int(sum(s.get("calls_saved", 0) for s in steps if s["kind"] == "candidate_scored")),
        **_call_fields(store, run_id, counters or _stored_counters(rec)),
        "projection": started.get("projection"),
        "proposers": attribution(store, run_id, steps),
        "review": RunConfig.from_record(rec["config"]).review,
        "decisions": _decision_counts(steps),
        "result": _result(steps),
        "decided_id": finished.get("best_id") if finished else None,  # the decision's result (before any choice)
        "chosen": rec.get("chosen"),
        "simplified": [{k: x.get(k) for k in ("candidate_id", "of_id", "change", "accepted", "reading", "cost")}
                       for x in steps if x["kind"] == "simplified"],
        "parts": result_parts(store, run_id, steps, cands),
        "stages": stage_report(steps, rec["config"]),
        "costs": _result_costs(store, run_id, cands, base, best),
    }


def _first(frame: pd.DataFrame, col: str):
    """The first row's `col`, None for an empty frame or a missing value; scores as floats."""
    if frame.empty:
        return None
    v = frame.iloc[0][col]
    return None if v is None or (isinstance(v, float) and math.isnan(v)) else (float(v) if col.endswith("score") else v)


def _prompt_fields(base: pd.DataFrame, best: pd.DataFrame) -> dict:
    """The summary's baseline_* and best_* fields: each one's prompt and scores (the result's demos and proposer
    too), from one-row candidate frames (empty: None, or no demos)."""
    return {
        "baseline_prompt": _first(base, "text"),
        "baseline_val": _first(base, "val_score"),
        "baseline_test": _first(base, "test_score"),
        "best_id": int(best.iloc[0]["id"]) if not best.empty else None,
        "best_prompt": _first(best, "text"),
        "best_demos": list(best.iloc[0]["demos"]) if not best.empty else [],
        "best_demo_format": _first(best, "demo_format"),
        "best_proposer": _first(best, "proposer"),
        "best_val": _first(best, "val_score"),
        "best_test": _first(best, "test_score"),
    }


def _stored_counters(rec: dict) -> Counters:
    """The counts of the run's last execution, as stored in its summary (a page or `runs show` reading a stored
    run has no live counters)."""
    prev = rec["summary"] or {}
    return Counters(target_requests=prev.get("target_requests", 0), target_calls=prev.get("target_calls", 0),
                    target_cached=prev.get("cached_calls", 0), proposer_calls=prev.get("proposer_calls", 0))


def _call_fields(store: Store, run_id: str, c: Counters) -> dict:
    """The summary's call fields: calls made and cached by the counters `c`, the cache hit rate, repeats, failures,
    the requests the budget counted, and the calls stored for the run by purpose (the judge's among them)."""
    stored_calls = store.run_call_counts(run_id)
    return {
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
    }


def _result_costs(store: Store, run_id: str, cands: pd.DataFrame, base: pd.DataFrame, best: pd.DataFrame) -> dict:
    """What a call costs with the baseline and with the result, on test where both were scored there (the same
    examples), else on val."""
    picked = pd.concat([base, best]).drop_duplicates("id")
    if picked.empty:
        return {}
    split = "test" if picked["test_score"].notna().all() else "val"
    measured = candidate_costs(store, run_id, picked, split)
    by_id = dict(zip(picked["id"], measured))
    out = {"split": split}
    if not base.empty:
        out["baseline"] = by_id[base.iloc[0]["id"]].to_record()
    if not best.empty:
        out["result"] = by_id[best.iloc[0]["id"]].to_record()
    return out


_SIDE_BY_SIDE = ("run_id", "dataset", "target", "metric", "seed", "rounds", "baseline_val", "baseline_test", "best_val",
                 "best_test", "best_proposer")


def side_by_side(summaries: list[dict]) -> pd.DataFrame:
    """Runs' summaries as one row each: what they optimized and what they found."""
    return pd.DataFrame([{k: s[k] for k in _SIDE_BY_SIDE} for s in summaries])


# Why a search ended, in words (a run's stored stop reason is the short key).
STOP_REASONS = {"rounds": "every round ran", "budget": "the budget was spent", "patience": "no progress for its patience",
                "proposer budget": "the proposer budget was spent", "analyst stopped": "stopped by the analyst",
                "share spent": "its share could not race another round's proposals",
                "no errors": "the leader made no mistake on the train rows probed"}


def stop_words(reason: str | None) -> str | None:
    """A stored stop reason ('budget') in words ('the budget was spent'), an unknown one as it is; None for none."""
    return STOP_REASONS.get(reason, reason) if reason else None


def gain_on_test(summary: dict) -> float | None:
    """The result's test score minus the baseline's, or None while either has no test score."""
    best, base = summary.get("best_test"), summary.get("baseline_test")
    return None if best is None or base is None else best - base


def _result(steps: list[dict]) -> dict | None:
    """How the run's result was chosen (runs that confirm on held-back val): the winner, whether it replaced
    the baseline, the paired test, and the gap between its search and confirmation scores (the overfitting)."""
    w = next((s for s in reversed(steps) if s["kind"] == "winner_chosen"), None)
    if w is None:
        return None
    search, confirm = w.get("search_score"), w.get("confirm_score")
    gap = None if search is None or confirm is None else round(search - confirm, 6)
    return {k: w.get(k) for k in ("winner_id", "reference_id", "replaced_baseline", "diff", "ci", "p_value", "level",
                                  "n_confirm", "search_score", "confirm_score", "reading", "leader_id", "margin",
                                  "n_from_train")} | {"gap": gap, "looks": w.get("looks", 1)}


PART_NAMES = {"result": "the result", "instruction_alone": "its instruction alone, without demos",
              "start_with_demos": "the baseline's instruction with the result's demos", "start": "the baseline"}


def result_parts(store: Store, run_id: str, steps: list[dict], cands: pd.DataFrame) -> list[dict]:
    """What each part of the result adds, on test: the result, its instruction alone, the baseline's instruction with
    its demos, and the baseline, each with its test score, its difference from the result (paired, 95% CI) and its
    cost per call on test. [] for runs stored before it, or when the result has no parts (no demos)."""
    step = next((x for x in reversed(steps) if x["kind"] == "result_parts"), None)
    setup = _rows_setup(store, run_id) if step else None
    if step is None or setup is None:
        return []
    ds, metric, key, split_seed = setup
    roles = {"result": step["result_id"], "instruction_alone": step.get("instruction_alone"),
             "start_with_demos": step.get("start_with_demos"), "start": step["start_id"]}
    roles = {role: cid for role, cid in roles.items() if cid is not None and cid in set(cands["id"])}
    picked = cands.set_index("id").loc[list(dict.fromkeys(roles.values()))].reset_index()
    measured = dict(zip(picked["id"], candidate_costs(store, run_id, picked, "test", setup)))
    test_idx = ds.split("test", split_seed)["idx"].tolist()
    rows = {cid: stored_rows(store, pid, key, ds, test_idx) for cid, pid in zip(picked["id"], picked["prompt_id"])}
    out = []
    for role, cid in roles.items():
        cmp = S.compare(metric, rows[cid], rows[roles["result"]]) if role != "result" and len(rows[cid]) else None
        cost = measured[cid]
        out.append({"part": PART_NAMES[role], "role": role, "id": int(cid), "test": metric.value(rows[cid]) if len(rows[cid]) else None,
                    "n": len(rows[cid]), "result_minus_it": None if cmp is None else cmp.diff,
                    "ci": None if cmp is None else [cmp.ci_low, cmp.ci_high],
                    "tokens_in": cost.prompt_tokens, "latency_s": cost.latency_s})
    return out


def _decision_counts(steps: list[dict]) -> dict:
    """{who: {action: count}} over the run's decided steps (the analyst's and the rule's)."""
    out: dict = {}
    for s in steps:
        if s["kind"] == "decided":
            out.setdefault(s["who"], {}).setdefault(s["action"], 0)
            out[s["who"]][s["action"]] += 1
    return out


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
        budget = RunConfig.from_record(rec["config"]).budget.get("max_target_requests")
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
            ((started or {}).get("projection") or {}).get("stages")
            or [n for n in str(rec["config"].get("strategy", "arena")).split(",") if n.strip()]),  # stored: validated
        "candidates": sum(1 for s in steps if s["kind"] == "candidate_proposed" and s["proposer"] != "baseline"),
        "calls": made,
        # a finished run knows its cache hits exactly; while searching, requests beyond the calls made
        # came from the cache (the test scoring at the end is not in `requests`)
        "cached": (rec["summary"] or {}).get("cached_calls", max(0, requests - eval_made)),
        "tokens": sum(v["tokens"] for v in calls.values()),
        "eta": eta,
    }


def family_view(store: Store, run_id: str) -> pd.DataFrame:
    """Per proposer: its family, size and relation to the target, the candidates of its scored on val, and its best
    candidate's val score and test score (`best_val_test`)."""
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
            "candidates_scored": len(mine),
            "best_val": float(best["val_score"].iloc[0]) if len(best) else None,
            "best_val_test": float(best["test_score"].iloc[0]) if len(best) and best["test_score"].notna().iloc[0] else None,
        })
    return pd.DataFrame(rows)
