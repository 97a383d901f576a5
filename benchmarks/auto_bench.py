"""The default search against the arena and few-shot, on whole task files, at one target-call budget;
DSPy's optimizers on the same rows beside them (benchmarks/dspy_bench.py, its own venv).

    python benchmarks/auto_bench.py --data-dir ../shared/datasets

Every (task, strategy) is one ordinary run on the whole file (the default split: 30% train, 35% val,
35% test; n_test = 140 for a 400-row task), seed 0, the same search budget (target calls, confirmation
included) and the plain baseline. Reported: the held-out test gain of each run's result over the
baseline, with a paired 95% bootstrap CI over the same test examples, the target calls it used, and
whether its result replaced the baseline. A second seed (--second-seed) runs where auto and the best
other method are within --close of each other and one of them moved off the baseline. A stopped benchmark continues: finished runs with the
same config are reused and unfinished ones resumed from the store (kept outside the work tree).
Writes the "auto" section of benchmarks/RESULTS.md and benchmarks/auto_results.json.
"""
from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from arena_bench import machine, paired_gain_ci, write_section  # noqa: E402

from promptlab import results, runs  # noqa: E402
from promptlab.errors import PromptlabError  # noqa: E402
from promptlab.data import import_dataset  # noqa: E402
from promptlab.language import detect_language, language_name  # noqa: E402
from promptlab.local import promptlab_home  # noqa: E402
from promptlab.scoring.labels import constant_label, parse_metric  # noqa: E402
from promptlab.models import resolve_model  # noqa: E402
from promptlab.store import Store  # noqa: E402

OUT_JSON = ROOT / "benchmarks" / "auto_results.json"


def run_strategy(store, ds, target, proposers, critic, strategy: str, args, seed: int, **params) -> tuple[str | None, dict, float]:
    """The finished run with this config (reused), else the unfinished one resumed, else a new one; with --report,
    None where no finished run exists."""
    extra = ({"critic": critic, "editor": critic} if strategy in ("auto", "gradient") else {}) | params
    cfg = runs.make_config(ds, target, proposers, seed=seed, rounds=args.rounds, budget_calls=args.budget,
                           strategy=strategy, test_top=args.test_top, **extra)
    rec = cfg.to_record()
    reused = None if args.fresh else store.finished_run_with_config(rec)
    t0 = time.perf_counter()
    if args.report and not reused:
        return None, {}, 0.0
    if reused:
        run_id = reused
        s = results.summarize(store, run_id)
        row = store.run_row(run_id)
        wall = (pd.Timestamp(row["updated_at"]) - pd.Timestamp(row["created_at"])).total_seconds()
        return run_id, s, wall
    run_id = store.unfinished_run_with_config(rec) or runs.create_run(store, cfg)
    try:
        s = runs.execute(store, run_id)
    except PromptlabError as exc:
        if "cannot resume" not in str(exc):
            raise
        # stopped under earlier code whose path this code does not replay: run it anew (calls come from the cache)
        store.set_run_status(run_id, "failed", error=str(exc)[:500])
        run_id = runs.create_run(store, cfg)
        s = runs.execute(store, run_id)
    return run_id, s, time.perf_counter() - t0


def test_correct(store, run_id, cand_id, target, ds, metric) -> pd.Series:
    return correct_by_example(results.candidate_test_rows(store, run_id, cand_id, target, ds, metric))


def correct_by_example(rows: pd.DataFrame) -> pd.Series:
    return pd.Series(rows["correct"].to_numpy(dtype=float), index=rows["example_idx"].to_numpy())


def dspy_rows(path: Path, task: str, base: pd.Series) -> list[dict]:
    """DSPy's figures for a task from dspy_bench.py's JSON (see its RESULT_SCHEMA), paired with promptlab's plain
    baseline on the same test rows (idx is promptlab's row idx)."""
    if not path.exists():
        return []
    entry = json.loads(path.read_text()).get("tasks", {}).get(task) or {}
    out = []
    for name in ("baseline", "mipro", "gepa"):
        res = entry.get(name)
        if not res or res.get("error") or not res.get("per_example"):
            continue
        correct = pd.Series({int(k): float(v) for k, v in res["per_example"].items()})
        shared = base.index.intersection(correct.index)
        if not len(shared):
            continue
        a, b = base.loc[shared].to_numpy(), correct.loc[shared].to_numpy()
        lo, hi = paired_gain_ci(a, b)
        label = {"baseline": "DSPy program (unoptimized)", "mipro": "DSPy MIPROv2 light", "gepa": "DSPy GEPA light"}[name]
        constant = constant_label(list((res.get("predictions") or {}).values()))
        out.append({"task": task, "strategy": label, "seed": 0, "n_test": len(shared),
                    "baseline_test": float(a.mean()), "best_test": float(b.mean()), "gain": float(b.mean() - a.mean()),
                    "lo": lo, "hi": hi, "search_calls": res.get("target_calls_compile", 0 if name == "baseline" else None),
                    "proposer_calls": res.get("proposer_calls_compile"), "wall_s": res.get("compile_wall_s"),
                    "replaced": None, "result_by": f"{res.get('n_demos', 0)} demos", "confirm_gap": None,
                    "constant": constant})
    return out


def measure(store, run_id: str, s: dict, wall: float, task: str, label: str, seed: int, target, ds, metric) -> dict:
    """One table row: the run's result against the baseline on the same test examples (paired CI), the target
    calls its search and confirmation used, and, for auto, where they went stage by stage."""
    base = test_correct(store, run_id, 1, target, ds, metric)
    best_rows = results.candidate_test_rows(store, run_id, s["best_id"], target, ds, metric)
    best = correct_by_example(best_rows)
    lo, hi = paired_gain_ci(base.to_numpy(), best.to_numpy(), seed=seed)
    result = s.get("result") or {}
    steps = store.steps(run_id)
    # What the confirmation turned down: the first finalist (the search's own pick) on test, where the result
    # stayed the baseline. Its test rows come from the cache (the run scored its top candidates on test).
    finalists = [x["candidate_id"] for x in steps if x["kind"] == "confirmed" and x["candidate_id"] != 1]
    declined = None
    if finalists and s["best_id"] == 1:
        pick = test_correct(store, run_id, finalists[0], target, ds, metric)
        plo, phi = paired_gain_ci(base.to_numpy(), pick.to_numpy(), seed=seed)
        declined = {"candidate": finalists[0], "gain": float(pick.mean() - base.mean()), "lo": plo, "hi": phi}
    search = max([x.get("target_requests") or 0 for x in steps if x["kind"] == "candidate_scored"], default=0)
    confirm = sum(x["n_confirm"] for x in steps if x["kind"] == "confirmed")
    return {"task": task, "strategy": label, "seed": seed, "run_id": run_id, "n_test": len(base),
            "baseline_test": float(base.mean()), "best_test": float(best.mean()),
            "gain": float(best.mean() - base.mean()), "lo": lo, "hi": hi,
            "search_calls": search + confirm, "proposer_calls": s["proposer_calls"], "wall_s": wall,
            "replaced": result.get("replaced_baseline"),
            "result_by": "baseline" if s["best_proposer"] == "baseline" else s["best_proposer"],
            "confirm_gap": result.get("gap"), "search_score": result.get("search_score"),
            "confirm_score": result.get("confirm_score"), "candidates": s["candidates"],
            "stages": stage_report(store, run_id) if label.startswith("auto") else None,
            "declined": declined,
            "constant": constant_label(best_rows["pred"].tolist())}


def print_row(row: dict) -> None:
    print(f"{row['task']:<24} {row['strategy']:<8} seed {row['seed']}: test {row['baseline_test']:.3f} -> "
          f"{row['best_test']:.3f} (gain {row['gain']:+.3f} [{row['lo']:+.3f}, {row['hi']:+.3f}]) by {row['result_by']}; "
          f"{row['search_calls']} search calls, {row['wall_s']:.0f} s", flush=True)


def stage_report(store, run_id: str) -> list[dict]:
    """Per stage of an auto run: the target calls it spent, the candidates it scored, the leader's search score
    when it ended, and whether the result came from it (the measurements behind auto's budget shares)."""
    steps = store.steps(run_id)
    winner = next((x["winner_id"] for x in steps if x["kind"] == "winner_chosen"), None)
    stages, calls = [], 0
    for x in steps:
        kind = x["kind"]
        if kind == "candidate_scored":
            calls = x.get("target_requests") or calls
            if stages and "end" not in stages[-1]:
                stages[-1]["ids"].add(x["candidate_id"])
        elif kind == "stage_started":
            if stages:
                stages[-1].setdefault("end", calls)
            stages.append({"stage": x["strategy"], "start": calls, "ids": set(), "leader_after": None})
        elif kind == "round_finished" and stages and "end" not in stages[-1]:
            stages[-1]["leader_after"] = x["best_val"]
        elif kind in ("confirmed", "winner_chosen") and stages:
            stages[-1].setdefault("end", calls)
    return [{"stage": st["stage"], "calls": st.get("end", calls) - st["start"], "candidates": len(st["ids"]),
             "leader_after": st["leader_after"], "result_from_here": winner in st["ids"]} for st in stages]


def write(args, argv, rows: list[dict], complete: bool, missing: list[str] = ()) -> None:
    # the command that produces these runs (--report only reads them back)
    command = "python benchmarks/auto_bench.py " + " ".join(shlex.quote(a) for a in (argv or sys.argv[1:]) if a != "--report")
    lines = [
        "## auto (the default) against the arena, few-shot and DSPy, on whole task files",
        "",
        f"Command: `{command.strip()}` (or `make bench`)  ",
        f"Machine: {machine()}. Target `{args.target}`; proposers `{args.proposers}`; critic and editor "
        f"`{args.critic}`. Every promptlab run: the whole file with the default split (n_test = 140 for 400 rows), "
        f"search budget {args.budget} target calls (the confirmation on held-back val included), up to {args.rounds} "
        "rounds per stage, the plain baseline \"Classify the text. Answer with one of these labels: {labels}.\", "
        "metric accuracy. DSPy (3.4, its own venv: benchmarks/dspy_bench.py) compiles the same program on the same "
        "train and val rows against a llama_cpp.server of the same target and proposer, and is scored on the same "
        "test rows. Gain: the result's test accuracy minus promptlab's plain baseline on the same test examples, "
        "95% paired bootstrap CI. 'search calls': target calls the optimizer made before test (for DSPy: its compile). "
        "'answers X to all': the prompt gives one label for at least 95% of the test examples (a constant answer). "
        "'wall': from the run's creation to its last step (a run resumed after a stop includes the pause).",
        "",
        "| task | method | seed | n test | baseline test | result test | gain [95% paired CI] | result | search calls | proposer calls | wall |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        calls = "—" if r["search_calls"] is None else str(r["search_calls"])
        props = "—" if r.get("proposer_calls") is None else str(r["proposer_calls"])
        wall = "—" if r.get("wall_s") is None else f"{r['wall_s']:.0f} s"
        by = r["result_by"] + (f" (answers '{r['constant']}' to all)" if r.get("constant") else "")
        lines.append(f"| {r['task']} | {r['strategy']} | {r['seed']} | {r['n_test']} | {r['baseline_test']:.3f} | "
                     f"{r['best_test']:.3f} | {r['gain']:+.3f} [{r['lo']:+.3f}, {r['hi']:+.3f}] | {by} | "
                     f"{calls} | {props} | {wall} |")
    lines.append("")
    tasks = list(dict.fromkeys(r["task"] for r in rows))
    seed0 = [r for r in rows if r["seed"] == 0]
    for strategy in list(dict.fromkeys(r["strategy"] for r in seed0)):
        mine = [r for r in seed0 if r["strategy"] == strategy]
        up = sum(1 for r in mine if r["lo"] > 0)
        down = sum(1 for r in mine if r["hi"] < 0)
        lines.append(f"- **{strategy}**: gain CI above 0 on {up} of {len(mine)} tasks, below 0 on {down}.")
    signal = [t for t in tasks if any(r["lo"] > 0 for r in seed0 if r["task"] == t)]
    auto = {r["task"]: r for r in seed0 if r["strategy"] == "auto"}
    if auto:
        held = [t for t in signal if t in auto and auto[t]["lo"] > 0]
        lines.append(f"- Tasks where some method's gain CI clears 0: {', '.join(signal) or 'none'}; auto's clears 0 on "
                     f"{len(held)} of them ({', '.join(held) or 'none'}).")
        worse = [t for t in auto if auto[t]["hi"] < 0]
        lines.append(f"- auto significantly below the baseline on: {', '.join(worse) or 'no task'}.")
        dspy_best = {}
        for r in seed0:
            if r["strategy"].startswith("DSPy") and "unoptimized" not in r["strategy"]:
                dspy_best[r["task"]] = max(dspy_best.get(r["task"], -1.0), r["best_test"])
        if dspy_best:
            at_or_above = [t for t in dspy_best if t in auto and auto[t]["best_test"] >= dspy_best[t]]
            lines.append(f"- auto at or above the best DSPy optimizer's test score on {len(at_or_above)} of "
                         f"{len(dspy_best)} tasks with DSPy figures.")
    declined = [r for r in rows if r.get("declined")]
    if declined:
        lines += ["", "**What the confirmation turned down** (runs whose result stayed the baseline: their first "
                  "finalist, the search's own pick, on the same test examples):", ""]
        for r in declined:
            d = r["declined"]
            lines.append(f"- {r['task']}, {r['strategy']}, seed {r['seed']}: candidate #{d['candidate']} "
                         f"{d['gain']:+.3f} [{d['lo']:+.3f}, {d['hi']:+.3f}] on test")
    staged = [r for r in rows if r.get("stages")]
    if staged:
        lines += ["", "**auto: where the calls paid off** (per stage: target calls spent, candidates scored, the "
                  "leader's search-val score when the stage ended; * = the result came from this stage)", "",
                  "| task | seed | instructions | demonstrations | edits |", "|---|---|---|---|---|"]
        for r in staged:
            by = {st["stage"]: st for st in r["stages"]}
            cells = []
            for name in ("arena", "fewshot", "gradient"):
                st = by.get(name)
                cells.append("—" if st is None else
                             f"{st['calls']} calls, {st['candidates']} cands, leader {st['leader_after'] if st['leader_after'] is None else round(st['leader_after'], 3)}"
                             + (" *" if st["result_from_here"] else ""))
            lines.append(f"| {r['task']} | {r['seed']} | " + " | ".join(cells) + " |")
    if missing:
        lines += ["", f"Not run yet ({len(missing)}): " + "; ".join(missing) + "."]
    elif not complete:
        lines += ["", f"(In progress: {len(rows)} rows so far.)"]
    write_section("auto", "\n".join(lines))
    OUT_JSON.write_text(json.dumps({"complete": complete, "rows": rows}, indent=1, default=str))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data-dir", default=str(ROOT.parent / "shared" / "datasets"))
    ap.add_argument("--target", default="local/qwen2.5-coder-0.5b")
    ap.add_argument("--proposers", default="local/qwen2.5-coder-1.5b,local/qwen2.5-coder-0.5b,local/smollm2-135m")
    ap.add_argument("--critic", default="local/qwen2.5-coder-1.5b")
    ap.add_argument("--strategies", default="auto,fewshot,arena")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--budget", type=int, default=800)
    ap.add_argument("--test-top", type=int, default=1)
    ap.add_argument("--second-seed", action="store_true", help="a second seed where auto and the best other are close (and not both the baseline)")
    ap.add_argument("--close", type=float, default=0.03)
    ap.add_argument("--fresh", action="store_true",
                    help="run again instead of reusing finished runs with the same config (after a code change; "
                         "calls still come from the cache)")
    ap.add_argument("--language-check", action="store_true",
                    help="on tasks not in English, also run auto with proposers writing in the data's language")
    ap.add_argument("--report", action="store_true",
                    help="write the table from the finished runs in the store and start none (lists the missing ones)")
    ap.add_argument("--tasks", help="comma-separated file stems (default: every CSV)")
    ap.add_argument("--dspy", default=str(ROOT / "benchmarks" / "dspy_results.json"))
    ap.add_argument("--db", default=str(promptlab_home() / "bench" / "auto_bench.duckdb"),
                    help="kept outside the work tree so a stopped benchmark continues in a fresh checkout")
    args = ap.parse_args(argv)
    Path(args.db).parent.mkdir(parents=True, exist_ok=True)

    store = Store(args.db)
    target = resolve_model(args.target, store)
    proposers = [resolve_model(p, store) for p in args.proposers.split(",")]
    critic = resolve_model(args.critic, store)
    files = sorted(Path(args.data_dir).glob("*.csv"))
    if args.tasks:
        files = [f for f in files if f.stem in set(args.tasks.split(","))]
    strategies = args.strategies.split(",")
    rows: list[dict] = []
    missing: list[str] = []
    for path in files:
        ds = import_dataset(store, path)[0]
        metric = parse_metric("accuracy", ds.labels)
        task_rows = {}
        seeds = [0]
        while seeds:
            seed = seeds.pop(0)
            for strategy in strategies:
                run_id, s, wall = run_strategy(store, ds, target, proposers, critic, strategy, args, seed)
                if run_id is None:
                    missing.append(f"{path.stem} {strategy} seed {seed}")
                    continue
                row = measure(store, run_id, s, wall, path.stem, strategy, seed, target, ds, metric)
                rows.append(row)
                task_rows[(strategy, seed)] = row
                print_row(row)
                write(args, argv, rows, complete=False, missing=missing)
            if seed == 0 and args.second_seed and "auto" in strategies:
                others = [task_rows[(st, 0)]["gain"] for st in strategies if st != "auto" and (st, 0) in task_rows]
                auto0 = task_rows.get(("auto", 0))
                # Close, and at least one of the two moved off the baseline: where every method kept the
                # baseline (0 against 0) there is no ordering for a second seed to check.
                if (others and auto0 and abs(auto0["gain"] - max(others)) < args.close
                        and max(abs(auto0["gain"]), abs(max(others))) > 0):
                    seeds.append(1)
        language = detect_language(ds.split("train")["text"].tolist())
        if args.language_check and language != "en" and "auto" in strategies:
            # The same run with the proposers asked to write in the data's language instead of English.
            label = f"auto, instructions in {language_name(language)}"
            run_id, s, wall = run_strategy(store, ds, target, proposers, critic, "auto", args, 0, language="data")
            if run_id is None:
                missing.append(f"{path.stem} {label}")
            else:
                rows.append(measure(store, run_id, s, wall, path.stem, label, 0, target, ds, metric))
                print_row(rows[-1])
        if task_rows:
            base0 = test_correct(store, next(iter(task_rows.values()))["run_id"], 1, target, ds, metric)
            rows += dspy_rows(Path(args.dspy), path.stem, base0)
        write(args, argv, rows, complete=False, missing=missing)
    write(args, argv, rows, complete=not missing, missing=missing)
    print("wrote benchmarks/RESULTS.md and benchmarks/auto_results.json")
    store.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
