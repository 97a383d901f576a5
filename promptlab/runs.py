"""Drives a strategy step by step and records each step as it arrives; resumes. (Planning a run: planning.py;
reading it back: results.py.)

A run is its stored config plus its stored steps. Executing a run replays the strategy from the start
with the same seed: steps already stored are skipped (their calls come back from the cache), the
first new step is where the interrupted run stopped. Nothing is lost and no finished call repeats.
"""
from __future__ import annotations

import math
import os
import threading
import uuid
from datetime import datetime, timezone

from promptlab.errors import PromptlabError
from promptlab.optimize.base import CandidateProposed, CandidateScored, Confirmed, Decided, Step, TestScored
from promptlab.planning import RunConfig, build
from promptlab.results import summarize
from promptlab.store import Store

# The statuses a run resumes from (`runs resume`, `review`, the Runs page's Resume). `execute` replays the stored
# steps and carries on from the first new one, so every run that stopped short of its end resumes: created (never
# started), interrupted (its process died), stopped (by the analyst) and failed (a call or the strategy raised; the
# failed step is tried again). Not 'running' (a live process executes it; mark_dead_runs makes a dead one
# 'interrupted'), 'paused' (it waits for the round's decisions: the review continues it) or 'finished'.
RESUMABLE = ("created", "interrupted", "stopped", "failed")


def is_resumable(status: str) -> bool:
    return status in RESUMABLE


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


def choose_result(store: Store, run_id: str, candidate_id: int | None, note: str = "") -> dict:
    """The analyst ships another candidate than the decision chose (the search's leader the decision kept the
    baseline over, say), or, with None, goes back to the decision's result. The choice is recorded with the run (the
    decision's own steps stay as they ran) and every reader of the result (Results, `runs show`, the report, exports)
    follows it. Returns the run's summary."""
    rec = store.run_row(run_id)
    if rec is None:
        raise PromptlabError(f"no run '{run_id}' (see `runs list`)")
    if rec["kind"] != "optimize" or rec["status"] != "finished":
        raise PromptlabError(f"run {run_id} is {rec['status']}: choose its result once it has finished "
                             "(`runs resume` finishes it)")
    if candidate_id is not None:
        cands = store.candidates(run_id)
        row = cands[cands["id"] == candidate_id]
        if row.empty:
            raise PromptlabError(f"run {run_id} has no candidate #{candidate_id} (see `runs show {run_id}`)")
        if row["val_score"].isna().all() and row["confirm_score"].isna().all():
            raise PromptlabError(f"candidate #{candidate_id} was never scored on val: choose one the search scored "
                                 "(the leaderboard in `runs show` lists them)")
        decided = next((s["best_id"] for s in reversed(store.steps(run_id)) if s["kind"] == "run_finished"), None)
        if candidate_id == decided:
            candidate_id = None  # the decision's own result: nothing to override
    choice = None if candidate_id is None else {"candidate_id": int(candidate_id), "note": note,
                                                "at": datetime.now(timezone.utc).isoformat(timespec="seconds")}
    store.choose_result(run_id, choice)
    summary = summarize(store, run_id)
    store.finish_run(run_id, rec["status"], summary)
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
