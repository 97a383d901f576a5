"""What ships (issue 31): auto, the default, from the plain and from a hand-written start, on whole task files: what
the decision shipped against the start and against the search's own leader on test, what it costs per call, how the
simplification went, and where each stage's calls went.

    python benchmarks/ship_bench.py --data-dir ../shared/datasets --commit                      # the 0.5B target
    python benchmarks/ship_bench.py --target local/qwen2.5-coder-1.5b \\
        --tasks implicatures,multiemo_hotels_en,epistemic_reasoning,social_support --commit
    python benchmarks/ship_bench.py --report                    # the section from the summaries committed so far

Every (task, start) is one ordinary `optimize` run with no --strategy (auto): the whole file with the default split
(n_test = 140 for a 400-row task), seed 0, the three zoo proposers, budget 800 target calls (the decision included),
critic and editor qwen2.5-coder-1.5B. 'plain' starts from "Classify the text. Answer with one of these labels:
{labels}."; 'hand' from benchmarks/baselines/<task>.txt (one line per label, written once by hand, no train example in
it). Per run: the start's and the shipped prompt's test scores with the paired 95% CI of the difference, the search's
leader (the best by search score, which the decision tested) on test and the shipped prompt against it, the decision on
the held-back examples, the simplification, the cost per call (tokens in, median latency) of the shipped prompt and of
the start on test, proposals never scored, whether the shipped instruction contains a train input, and each stage's
calls, candidates and proposals.

Each run's summary (with its per-example test answers, so the tables need no store) is written to
benchmarks/ship_runs/<target>/<task>__<start>.json as the run finishes and, with --commit, committed at once: a benchmark
resumed on another machine reads the summaries and reruns nothing that finished (a summary counts for the config it was
made with; a changed config runs again). Runs live in $PROMPTLAB_HOME/bench/ship_bench-<target>.duckdb, resumed when
stopped. Writes the "ship" section of benchmarks/RESULTS.md from every target's summaries.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import shlex
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from arena_bench import find_or_run  # noqa: E402
from common import machine, write_section, zoo_args  # noqa: E402

from promptlab import jobs, planning, results  # noqa: E402
from promptlab.data import import_dataset  # noqa: E402
from promptlab.local import promptlab_home  # noqa: E402
from promptlab.models import resolve_model  # noqa: E402
from promptlab.optimize import proposals as R  # noqa: E402
from promptlab.prompt import PromptTemplate  # noqa: E402
from promptlab.scoring.labels import constant_label, parse_metric  # noqa: E402
from promptlab.scoring.stats import paired_mean_ci  # noqa: E402
from promptlab.store import Store  # noqa: E402

RUNS = ROOT / "benchmarks" / "ship_runs"
BASELINES = ROOT / "benchmarks" / "baselines"
STARTS = ("plain", "hand")
BEFORE = ROOT / "benchmarks" / "auto_results-{key}.json"  # issue 24's figures at 4606536: 'today's rows'


def summary_path(target: str, task: str, start: str) -> Path:
    return RUNS / target.split("/")[-1] / f"{task}__{start}.json"


def config_key(cfg) -> str:
    return hashlib.sha256(json.dumps(cfg.to_record(), sort_keys=True).encode()).hexdigest()[:16]


def hand_prompt(task: str) -> PromptTemplate | None:
    path = BASELINES / f"{task}.txt"
    return PromptTemplate.from_file_text(path.read_text(encoding="utf-8")) if path.exists() else None


def make_config(ds, target, proposers, critic, start: str, args):
    baselines = [hand_prompt(ds.name)] if start == "hand" else None
    return planning.make_config(ds, target, proposers, seed=0, rounds=args.rounds, budget=args.budget,
                                test_top=1, baselines=baselines, critic=critic, editor=critic)


def test_answers(store, run_id: str, cand_id: int, target, ds, metric) -> dict[int, float]:
    rows = jobs.candidate_test_rows(store, run_id, cand_id, target, ds, metric)
    return {int(i): float(c) for i, c in zip(rows["example_idx"], rows["correct"])}


def leader_of(s: dict, cands: pd.DataFrame) -> int:
    """The search's leader: the candidate the decision tested against the start (the best by search score), else the
    best by search score among the search's own candidates."""
    leader = (s.get("result") or {}).get("leader_id")
    if leader:
        return int(leader)
    own = cands[~cands["family"].isin(results.AFTER_DECISION) & cands["val_score"].notna()]
    return int(own.reset_index(drop=True).sort_values(["val_score", "id"], ascending=[False, True]).iloc[0]["id"])


def summarize_run(store, run_id: str, s: dict, wall: float, ds, target, metric, key: str, start: str) -> dict:
    """Everything the tables need from one finished run, its per-example test answers included."""
    cands = store.candidates(run_id).set_index("id", drop=False)
    ids = {"start": 1, "shipped": int(s["best_id"]), "leader": leader_of(s, cands),
           "decided": int((s.get("result") or {}).get("winner_id") or s["best_id"])}
    answers = {role: test_answers(store, run_id, cid, target, ds, metric) for role, cid in ids.items()}
    picked = cands.loc[list(dict.fromkeys(ids.values()))].reset_index(drop=True)
    measured = dict(zip(picked["id"], results.candidate_costs(store, run_id, picked, "test")))
    shipped = cands.loc[ids["shipped"]]
    train = ds.split("train")["text"].tolist()
    own_start = shipped["text"] == cands.loc[1, "text"]
    steps = store.steps(run_id)
    return {
        "config_key": key, "code": _head(), "run_id": run_id, "task": ds.name, "start": start, "wall_s": wall,
        "ids": ids, "answers": {role: {str(k): v for k, v in a.items()} for role, a in answers.items()},
        "cost": {role: measured[cid].to_record() for role, cid in ids.items()},
        "shipped_prompt": shipped["text"], "shipped_demos": len(shipped["demos"]), "shipped_k": int(shipped["similar_k"] or 0),
        "shipped_by": str(shipped["proposer"]),
        "copies_train_input": bool(not own_start and R.copies_input(str(shipped["text"]), R.input_index(train))),
        "result": s.get("result"), "simplified": s.get("simplified"), "parts": s.get("parts"),
        "stages": s.get("stages"), "reason": s.get("reason"),
        "target_requests": s.get("target_requests"),
        "proposer_calls": sum(1 for x in steps if x["kind"] in ("proposal_made", "critique")),
        "constant": constant_label(jobs.candidate_test_rows(store, run_id, ids["shipped"], target, ds, metric)["pred"].tolist()),
    }


def _head() -> str:
    """The commit this process's code was read from (taken once, at import: later commits do not change what runs)."""
    return _HEAD


def _read_head() -> str:
    try:
        return subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                              check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "?"


_HEAD = _read_head()


def commit(path: Path, message: str) -> None:
    """Commit one summary file alone (retrying while another git command holds the index)."""
    rel = str(path.relative_to(ROOT))
    for _ in range(20):
        add = subprocess.run(["git", "-C", str(ROOT), "add", "--", rel], capture_output=True, text=True)
        done = add.returncode == 0 and subprocess.run(
            ["git", "-C", str(ROOT), "commit", "-q", "-m", message, "--", rel], capture_output=True, text=True
        ).returncode == 0
        if done:
            return
        time.sleep(3)
    print(f"could not commit {rel}: commit it by hand", file=sys.stderr)


def one(store, path: Path, start: str, target, proposers, critic, args) -> dict | None:
    """The summary of one (task, start): read from its committed file when its config is the same, else run (or with
    --report, None)."""
    ds = import_dataset(store, path)[0]
    cfg = make_config(ds, target, proposers, critic, start, args)
    key, out = config_key(cfg), summary_path(args.target, path.stem, start)
    if out.exists() and not args.fresh:
        doc = json.loads(out.read_text())
        if doc.get("config_key") == key:
            return doc
    if args.report:
        return None
    run_id, s, wall, _ = find_or_run(store, cfg, fresh=args.fresh)
    metric = parse_metric("accuracy", ds.labels)
    doc = summarize_run(store, run_id, s, wall, ds, target, metric, key, start)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(doc, indent=1, default=str))
    if args.commit:
        commit(out, f"ship_bench: {args.target.split('/')[-1]} {path.stem} from the {start} start (run {run_id})")
    return doc


# --- the tables ------------------------------------------------------------------------------------------------

def _vec(doc: dict, role: str) -> pd.Series:
    return pd.Series({int(k): v for k, v in doc["answers"][role].items()}).sort_index()


def gain(doc: dict, ref: str, new: str) -> dict:
    a, b = _vec(doc, ref), _vec(doc, new)
    shared = a.index.intersection(b.index)
    lo, hi = paired_mean_ci(a.loc[shared].to_numpy(), b.loc[shared].to_numpy(), n_boot=2000, seed=0)
    return {"gain": float(b.loc[shared].mean() - a.loc[shared].mean()), "lo": lo, "hi": hi, "n": len(shared)}


def _ci(g: dict) -> str:
    return f"{g['gain']:+.3f} [{g['lo']:+.3f}, {g['hi']:+.3f}]"


def _cost(c: dict) -> str:
    t, lat = c.get("prompt_tokens"), c.get("latency_s")
    return f"{'?' if t is None else f'{t:.0f}'} tok, {'?' if lat is None else f'{lat:.2f}'} s"


def _ratio(doc: dict, against: str = "start") -> str:
    a, b = doc["cost"]["shipped"].get("latency_s"), doc["cost"][against].get("latency_s")
    return f"{a / b:.1f}x" if a and b else "—"


def _simpler(doc: dict) -> str:
    """'decided → shipped' median latency per call, where the simplification changed what ships."""
    if doc["ids"]["shipped"] == doc["ids"]["decided"]:
        return "—"
    a, b = doc["cost"]["decided"].get("latency_s"), doc["cost"]["shipped"].get("latency_s")
    return f"{a:.2f} s → {b:.2f} s ({_ratio(doc, 'decided')})" if a and b else "—"


def _decision(doc: dict) -> str:
    r = doc.get("result") or {}
    if r.get("diff") is None:
        return "start kept (nothing beat it in the search)"
    lo, hi = r.get("ci") or (None, None)
    verdict = "shipped" if r.get("replaced_baseline") else "start kept"
    train = f", {r['n_from_train']} of them unseen train rows" if r.get("n_from_train") else ""
    return f"{verdict}: {r['diff']:+.3f} [{lo:+.3f}, {hi:+.3f}] on {r['n_confirm']}{train}"


def _simplified(doc: dict) -> str:
    tried = doc.get("simplified") or []
    if not tried:
        return "—"
    return "; ".join(f"{x['change']} {'kept' if x['accepted'] else 'not kept'}" for x in tried)


def _stages(doc: dict) -> str:
    out = []
    for st in doc.get("stages") or []:
        props = f", {st['usable']}/{st['written']} usable" if st.get("proposer_calls") else ""
        never = f", {st['never_scored']} never scored" if st.get("never_scored") else ""
        out.append(f"{st['stage']}: {st['calls']} calls, {st['candidates']} cand.{props}{never}")
    return "; ".join(out)


def before_rows(target: str) -> dict:
    """Issue 24's figures for the same (task, start) at 4606536, where that benchmark ran them."""
    path = Path(str(BEFORE).format(key=target.split("/")[-1]))
    if not path.exists():
        return {}
    rows = json.loads(path.read_text()).get("rows", [])
    names = {"auto": "plain", "auto-hand": "hand"}
    return {(r["task"], names[r["method"]]): r for r in rows if r.get("method") in names}


def table(target: str, docs: list[dict]) -> list[str]:
    before = before_rows(target)
    lines = ["| task | start | start test | shipped test | vs start [95% CI] | leader test | shipped − leader [95% CI] "
             "| before (4606536) | decision on held-back | simplification | per call: shipped (start) | latency vs start "
             "| stages | wall |", "|" + "---|" * 14]
    for d in docs:
        start, shipped, leader = (float(_vec(d, r).mean()) for r in ("start", "shipped", "leader"))
        prior = before.get((d["task"], d["start"]))
        lines.append(
            f"| {d['task']} | {d['start']} | {start:.3f} | {shipped:.3f}"
            + (f" (answers '{d['constant']}')" if d.get("constant") else "")
            + f" | {_ci(gain(d, 'start', 'shipped'))} | {leader:.3f} | {_ci(gain(d, 'leader', 'shipped'))} | "
            + (f"{prior['test']:.3f}" if prior else "—")
            + f" | {_decision(d)} | {_simplified(d)} | {_cost(d['cost']['shipped'])} ({_cost(d['cost']['start'])}) | "
              f"{_ratio(d)} | {_simpler(d)} | {_stages(d)} | {d['wall_s']:.0f} s |")
    return lines


def verdicts(docs: list[dict]) -> list[str]:
    """The issue's bars, checked on one target's runs."""
    below_leader = [f"{d['task']} ({d['start']})" for d in docs if gain(d, "leader", "shipped")["hi"] < 0]
    below_start = [f"{d['task']} ({d['start']})" for d in docs if gain(d, "start", "shipped")["hi"] < 0]
    never = sum(st.get("never_scored", 0) for d in docs for st in d.get("stages") or [])
    copies = [f"{d['task']} ({d['start']})" for d in docs if d.get("copies_train_input")]
    edits = [(d, next((st for st in d.get("stages") or [] if st["stage"] == "edits"), None)) for d in docs]
    no_edits = [f"{d['task']} ({d['start']}: {st.get('ended') or 'no reason recorded'})" for d, st in edits
                if st is not None and not st["candidates"]]
    simpler = [d for d in docs if any(x["accepted"] for x in d.get("simplified") or [])]
    faster = [f"{d['task']} ({d['start']}: latency per call {_simpler(d)}, {_ratio(d)} the start's)" for d in simpler]
    return [
        f"What ships is within noise of or above the search's leader on {len(docs) - len(below_leader)} of {len(docs)} "
        f"runs" + (f"; below it on {', '.join(below_leader)}" if below_leader else "") + ".",
        f"Significantly below its start: {', '.join(below_start) or 'none'}.",
        f"Proposals never scored: {never}.",
        f"Shipped instructions that contain a train input: {', '.join(copies) or 'none'}.",
        f"Edits stages that made no candidate: {', '.join(no_edits) or 'none'}.",
        f"A simpler variant shipped on {len(simpler)} of {len(docs)} runs" + (f": {'; '.join(faster)}" if faster else "") + ".",
    ]


def write(targets: list[str], args, command: str) -> None:
    lines = ["## What ships: the decision, the simplification and their cost (issue 31)", "",
             f"Command: `{command}` (one per target; `--report` redraws this from the committed summaries)  ",
             f"Machine: {machine()}. auto with no --strategy, the three zoo proposers, critic and editor "
             f"qwen2.5-coder-1.5B, budget {args.budget} target calls (the decision included), up to {args.rounds} rounds "
             "per stage, seed 0, the whole file with the default split; 'plain' and 'hand' starts as in the script's "
             "docstring. CIs: paired 95% bootstrap on the same test examples. 'leader': the search's best by search score, "
             "which the decision tested against the start. 'per call': mean prompt tokens and median latency on test. "
             "'before': the same run's test score in issue 24's benchmark (auto's rows of the table above, at 4606536).",
             ""]
    for target in targets:
        docs = [json.loads(p.read_text()) for p in sorted((RUNS / target.split("/")[-1]).glob("*.json"))]
        if not docs:
            continue
        lines += [f"### Target `{target}`", "", *table(target, docs), "", *[f"- {v}" for v in verdicts(docs)], ""]
    write_section("ship", "\n".join(lines))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    zoo_args(ap, ROOT.parent / "shared" / "datasets")
    ap.add_argument("--starts", default=",".join(STARTS))
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--budget", type=int, default=800)
    ap.add_argument("--tasks", help="comma-separated file stems, run in that order (default: every CSV)")
    ap.add_argument("--fresh", action="store_true", help="run again even where a summary or a finished run exists")
    ap.add_argument("--commit", action="store_true", help="commit each run's summary as it finishes")
    ap.add_argument("--report", action="store_true", help="redraw the section from the summaries; run nothing")
    ap.add_argument("--db", help="default: $PROMPTLAB_HOME/bench/ship_bench-<target>.duckdb")
    args = ap.parse_args(argv)
    command = "python benchmarks/ship_bench.py " + " ".join(shlex.quote(a) for a in (argv or sys.argv[1:])
                                                            if a not in ("--report", "--commit"))
    targets = sorted({args.target} | {f"local/{p.name}" for p in RUNS.glob("*") if p.is_dir()})
    if args.report:
        write(targets, args, command.strip())
        return 0
    db = Path(args.db or promptlab_home() / "bench" / f"ship_bench-{args.target.split('/')[-1]}.duckdb")
    db.parent.mkdir(parents=True, exist_ok=True)
    store = Store(str(db))
    target = resolve_model(args.target, store)
    proposers = [resolve_model(p, store) for p in args.proposers.split(",")]
    critic = resolve_model(args.critic, store)
    files = sorted(Path(args.data_dir).glob("*.csv"))
    if args.tasks:
        by_stem = {f.stem: f for f in files}
        files = [by_stem[t] for t in args.tasks.split(",") if t in by_stem]
    for path in files:
        for start in args.starts.split(","):
            if start == "hand" and hand_prompt(path.stem) is None:
                continue
            doc = one(store, path, start, target, proposers, critic, args)
            if doc is not None:
                g = gain(doc, "start", "shipped")
                print(f"{path.stem:<24} {start:<5}: shipped {float(_vec(doc, 'shipped').mean()):.3f} "
                      f"(vs start {_ci(g)}), leader {float(_vec(doc, 'leader').mean()):.3f}; {doc['wall_s']:.0f} s",
                      flush=True)
                write(targets, args, command.strip())
    store.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
