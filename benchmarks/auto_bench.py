"""The default search against each of its levers alone, from the plain baseline and from a good hand-written
prompt, on whole task files, for one target at a time; DSPy's optimizers on the same rows beside them
(benchmarks/dspy_bench.py, its own venv).

    python benchmarks/auto_bench.py --data-dir ../shared/datasets                      # the 0.5B target
    python benchmarks/auto_bench.py --target local/qwen2.5-coder-1.5b \\
        --tasks implicatures,multiemo_hotels_en,navigate,sports_understanding --strategies auto,auto-hand,fewshot,arena

Every (task, method) is one ordinary run on the whole file (the default split: 30% train, 35% val, 35% test;
n_test = 140 for a 400-row task), seed 0, the same search budget (target calls, confirmation included).
Methods: `auto`, `fewshot`, `arena`, `gradient` from the plain baseline ("Classify the text. Answer with one of
these labels: {labels}."), and `auto-hand`: auto started from the hand-written prompt of benchmarks/baselines/
<task>.txt (one line per label, written once by hand, no train example copied). Reported per run: its result's
test score, the held-out gain over the plain baseline and over the hand-written one with paired 95% bootstrap CIs
on the same test examples, the target calls of its search and confirmation, the proposer calls and the proposals
(usable of written), and auto's stage-by-stage report. Each target's runs live in their own store (outside the
work tree, so a stopped benchmark continues in a fresh checkout, and two targets can run at once); finished runs
with the same config are reused and unfinished ones resumed. Writes benchmarks/auto_results-<target>.json; the
"auto" section of benchmarks/RESULTS.md is drawn from every target's JSON.
"""
from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from arena_bench import find_or_run  # noqa: E402
from common import machine, write_section, zoo_args  # noqa: E402

from promptlab import jobs, planning  # noqa: E402
from promptlab.data import import_dataset  # noqa: E402
from promptlab.prompt import PromptTemplate  # noqa: E402
from promptlab.language import detect_language, language_name  # noqa: E402
from promptlab.local import promptlab_home  # noqa: E402
from promptlab.models import resolve_model  # noqa: E402
from promptlab.scoring.labels import constant_label, parse_metric  # noqa: E402
from promptlab.scoring.stats import paired_mean_ci  # noqa: E402
from promptlab.store import Store  # noqa: E402

BASELINES = ROOT / "benchmarks" / "baselines"
LEVERS = ("arena", "fewshot", "gradient")
# Usable proposals per auto run before issue 24 (benchmarks/auto_results.json at 8c8b720: the candidates the
# instruction and edit stages raced, seed 0 on the eight tasks): 3, 2, 4, 3, 3, 2, 4, 4.
USABLE_BEFORE = 3.125


def results_path(target: str) -> Path:
    return ROOT / "benchmarks" / f"auto_results-{target.split('/')[-1]}.json"


def hand_prompt(task: str) -> PromptTemplate | None:
    path = BASELINES / f"{task}.txt"
    return PromptTemplate.from_file_text(path.read_text(encoding="utf-8")) if path.exists() else None


def run_strategy(store, ds, target, proposers, critic, method: str, args, seed: int, **params) -> tuple[str | None, dict, float]:
    """The finished run with this config (reused), else the unfinished one resumed, else a new one; with --report,
    None where no finished run exists."""
    strategy = "auto" if method.startswith("auto") else method
    extra = ({"critic": critic, "editor": critic} if strategy in ("auto", "gradient") else {}) | params
    baselines = [hand_prompt(ds.name)] if method == "auto-hand" else None
    cfg = planning.make_config(ds, target, proposers, seed=seed, rounds=args.rounds, budget=args.budget,
                           strategy=strategy, test_top=args.test_top, baselines=baselines, **extra)
    run_id, s, wall, _ = find_or_run(store, cfg, fresh=args.fresh, report=args.report)
    return run_id, s, wall


def test_correct(store, run_id, cand_id, target, ds, metric) -> pd.Series:
    rows = jobs.candidate_test_rows(store, run_id, cand_id, target, ds, metric)
    return pd.Series(rows["correct"].to_numpy(dtype=float), index=rows["example_idx"].to_numpy())


def gain(ref: pd.Series, new: pd.Series, seed: int = 0) -> dict:
    """new - ref on their shared test examples, with the paired 95% bootstrap CI."""
    shared = ref.index.intersection(new.index)
    a, b = ref.loc[shared].to_numpy(), new.loc[shared].to_numpy()
    lo, hi = paired_mean_ci(a, b, n_boot=2000, seed=seed)
    return {"gain": float(b.mean() - a.mean()), "lo": lo, "hi": hi, "n": len(shared)}


def dspy_rows(path: Path, task: str, plain: pd.Series, hand: pd.Series | None) -> list[dict]:
    """DSPy's figures for a task from dspy_bench.py's JSON (see its RESULT_SCHEMA), paired with promptlab's
    baselines on the same test rows (idx is promptlab's row idx)."""
    if not path.exists():
        return []
    entry = json.loads(path.read_text()).get("tasks", {}).get(task) or {}
    out = []
    for name in ("mipro", "gepa"):
        res = entry.get(name)
        if not res or res.get("error") or not res.get("per_example"):
            continue
        correct = pd.Series({int(k): float(v) for k, v in res["per_example"].items()})
        label = {"mipro": "DSPy MIPROv2 light", "gepa": "DSPy GEPA light"}[name]
        row = {"task": task, "method": label, "test": float(correct.mean()), "vs_plain": gain(plain, correct),
               "vs_hand": gain(hand, correct) if hand is not None else None,
               "search_calls": res.get("target_calls_compile"), "proposer_calls": res.get("proposer_calls_compile"),
               "wall_s": res.get("compile_wall_s"), "result_by": f"{res.get('n_demos', 0)} demos",
               "constant": constant_label(list((res.get("predictions") or {}).values()))}
        out.append(row)
    return out


def measure(store, run_id: str, s: dict, wall: float, task: str, method: str, target, ds, metric,
            plain: pd.Series, hand: pd.Series | None) -> tuple[dict, pd.Series]:
    """One table row: the run's result against both baselines on the same test examples (paired CIs), the target
    calls its search and confirmation used, its proposals, and (auto) where the calls went stage by stage."""
    best_rows = jobs.candidate_test_rows(store, run_id, s["best_id"], target, ds, metric)
    best = pd.Series(best_rows["correct"].to_numpy(dtype=float), index=best_rows["example_idx"].to_numpy())
    steps = store.steps(run_id)
    result = s.get("result") or {}
    search = max([x.get("target_requests") or 0 for x in steps if x["kind"] == "candidate_scored"], default=0)
    confirm = sum(x["n_confirm"] for x in steps if x["kind"] == "confirmed")
    stages = s.get("stages") or []
    props = [x for x in steps if x["kind"] == "proposal_made"]
    row = {"task": task, "method": method, "run_id": run_id, "n_test": len(best), "test": float(best.mean()),
           "vs_plain": gain(plain, best), "vs_hand": gain(hand, best) if hand is not None else None,
           "search_calls": search + confirm,
           "proposer_calls": sum(st["proposer_calls"] for st in stages),
           "written": sum(st["written"] for st in stages), "usable": sum(len(x["accepted"]) for x in props),
           "wall_s": wall, "replaced": result.get("replaced_baseline"),
           "result_by": "baseline" if s["best_proposer"] == "baseline" else s["best_proposer"],
           "stages": stages if method.startswith("auto") else None,
           "constant": constant_label(best_rows["pred"].tolist())}
    return row, best


def print_row(row: dict) -> None:
    g = row["vs_plain"]
    print(f"{row['task']:<24} {row['method']:<10}: test {row['test']:.3f} (vs plain {g['gain']:+.3f} [{g['lo']:+.3f}, "
          f"{g['hi']:+.3f}]) by {row['result_by']}; {row['search_calls']} target calls, {row['usable']} usable "
          f"proposals, {row['wall_s']:.0f} s", flush=True)


def _ci(g: dict | None) -> str:
    return "—" if not g else f"{g['gain']:+.3f} [{g['lo']:+.3f}, {g['hi']:+.3f}]"


def verdicts(rows: list[dict]) -> list[str]:
    """The issue's bars for one target, checked on its rows."""
    tasks = list(dict.fromkeys(r["task"] for r in rows))
    by = {(r["task"], r["method"]): r for r in rows}
    out = []
    signal = [t for t in tasks if any(r["vs_plain"]["lo"] > 0 for r in rows if r["task"] == t and r["method"] != "hand-written")]
    held = [t for t in signal if (t, "auto") in by and by[(t, "auto")]["vs_plain"]["lo"] > 0]
    out.append(f"auto's gain CI clears 0 on {len(held)} of the {len(signal)} tasks where some method's does "
               f"({', '.join(signal) or 'none'}){'; not on ' + ', '.join(sorted(set(signal) - set(held))) if set(signal) - set(held) else ''}.")
    below = [t for t in tasks if (t, "auto-hand") in by and by[(t, "auto-hand")]["vs_hand"]["hi"] < 0]
    out.append(f"auto from the hand-written prompt significantly below it on: {', '.join(below) or 'no task'}.")
    beaten = [t for t in tasks if any(r["vs_hand"] and r["vs_hand"]["lo"] > 0 for r in rows if r["task"] == t)]
    above = [t for t in beaten if (t, "auto-hand") in by and by[(t, "auto-hand")]["vs_hand"]["lo"] > 0]
    out.append(f"Tasks where some method beats the hand-written prompt beyond noise: {', '.join(beaten) or 'none'}; "
               f"auto from it does on {len(above)} of them ({', '.join(above) or 'none'}).")
    lever_rows = []
    for t in tasks:
        levers = [by[(t, m)] for m in LEVERS if (t, m) in by]
        if (t, "auto") in by and levers:
            best = max(levers, key=lambda r: r["test"])
            d = by[(t, "auto")].get("vs_levers", {}).get(best["method"])
            if d:
                lever_rows.append((t, best["method"], d))
    within = [t for t, _, d in lever_rows if d["hi"] >= 0]
    out.append(f"auto within noise of or above its best lever (the best of {', '.join(LEVERS)} on test, paired) on "
               f"{len(within)} of {len(lever_rows)} tasks"
               + ("; below it on " + ", ".join(f"{t} ({m}: {_ci(d)})" for t, m, d in lever_rows if d["hi"] < 0)
                  if len(within) < len(lever_rows) else "") + ".")
    autos = [r for r in rows if r["method"].startswith("auto")]
    if autos:
        mean = np.mean([r["usable"] for r in autos])
        out.append(f"Usable proposals per auto run: {mean:.1f} on average ({min(r['usable'] for r in autos)}–"
                   f"{max(r['usable'] for r in autos)}) against {USABLE_BEFORE:.1f} before (x{mean / USABLE_BEFORE:.1f}), "
                   f"from {np.mean([r['proposer_calls'] for r in autos]):.1f} proposer calls.")
    return out


def write(docs: list[dict]) -> None:
    lines = ["## auto (the default) against its levers, from the plain and from a hand-written prompt, on whole task files",
             ""]
    for doc in docs:
        a = doc["args"]
        lines += [f"### Target `{a['target']}`", "",
                  f"Command: `{doc['command']}`  ",
                  f"Machine: {doc['machine']}. Proposers `{a['proposers']}`; critic and editor `{a['critic']}`. Every "
                  f"promptlab run: the whole file with the default split, search budget {a['budget']} target calls (the "
                  f"confirmation on held-back val included), up to {a['rounds']} rounds per stage, seed 0, metric "
                  "accuracy. 'plain': \"Classify the text. Answer with one of these labels: {labels}.\"; 'hand-written': "
                  "benchmarks/baselines/<task>.txt; auto-hand starts from it. Gains: test accuracy minus the baseline's "
                  "on the same test examples, 95% paired bootstrap CI. 'target calls': search and confirmation (test "
                  "scoring is outside the budget). 'proposals': usable of written. 'answers X to all': one label for at "
                  "least 95% of the test examples. Elapsed: "
                  + (f"{doc['elapsed_s'] / 3600:.1f} h of runs" if doc.get("elapsed_s") else "—") + ".", "",
                  "| task | method | n test | test | gain vs plain [95% CI] | vs hand-written [95% CI] | result | target calls | proposer calls | proposals | wall |",
                  "|---|---|---|---|---|---|---|---|---|---|---|"]
        for r in doc["rows"]:
            by = r["result_by"] + (f" (answers '{r['constant']}' to all)" if r.get("constant") else "")
            props = "—" if not r.get("written") else f"{r['usable']} of {r['written']}"
            calls = "—" if r.get("search_calls") is None else str(r["search_calls"])
            pc = "—" if r.get("proposer_calls") is None else str(r["proposer_calls"])
            wall = "—" if r.get("wall_s") is None else f"{r['wall_s']:.0f} s"
            lines.append(f"| {r['task']} | {r['method']} | {r.get('n_test', r['vs_plain']['n'])} | {r['test']:.3f} | "
                         f"{_ci(r['vs_plain'])} | {_ci(r.get('vs_hand'))} | {by} | {calls} | {pc} | {props} | {wall} |")
        lines.append("")
        lines += [f"- {v}" for v in verdicts(doc["rows"])]
        staged = [r for r in doc["rows"] if r.get("stages")]
        if staged:
            lines += ["", "Where auto's calls went (per stage: target calls, candidates raced, usable proposals of "
                      "written, the leader's search score after it; * = the result came from it):", "",
                      "| task | method | instructions | demos | instructions for the demos | edits |", "|---|---|---|---|---|---|"]
            for r in staged:
                cells = {st["stage"]: st for st in r["stages"]}
                row = []
                for name in ("instructions", "demos", "instructions for the demos", "edits"):
                    st = cells.get(name)
                    if st is None:
                        row.append("—")
                        continue
                    lead = "—" if st["leader_after"] is None else f"{st['leader_after']:.3f}"
                    props = f", {st['usable']}/{st['written']}" if st["proposer_calls"] else ""
                    row.append(f"{st['calls']}, {st['candidates']}{props}, {lead}" + (" *" if st["result_from_here"] else ""))
                lines.append(f"| {r['task']} | {r['method']} | " + " | ".join(row) + " |")
        if doc.get("missing"):
            lines += ["", f"Not run yet ({len(doc['missing'])}): " + "; ".join(doc["missing"]) + "."]
        lines.append("")
    write_section("auto", "\n".join(lines))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    zoo_args(ap, ROOT.parent / "shared" / "datasets")
    ap.add_argument("--strategies", default="auto,auto-hand,fewshot,arena,gradient")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--budget", type=int, default=800)
    ap.add_argument("--test-top", type=int, default=1)
    ap.add_argument("--fresh", action="store_true",
                    help="run again instead of reusing finished runs with the same config (after a code change; "
                         "calls still come from the cache)")
    ap.add_argument("--language-check", action="store_true",
                    help="on tasks not in English, also run auto with proposers writing in the data's language")
    ap.add_argument("--report", action="store_true",
                    help="write the table from the finished runs in the store and start none (lists the missing ones)")
    ap.add_argument("--tasks", help="comma-separated file stems (default: every CSV)")
    ap.add_argument("--dspy", default=str(ROOT / "benchmarks" / "dspy_results.json"),
                    help="DSPy's figures (dspy_bench.py); read for the target they were made with")
    ap.add_argument("--db", help="default: $PROMPTLAB_HOME/bench/auto_bench-<target>.duckdb, outside the work tree")
    args = ap.parse_args(argv)
    key = args.target.split("/")[-1]
    db = Path(args.db or promptlab_home() / "bench" / f"auto_bench-{key}.duckdb")
    db.parent.mkdir(parents=True, exist_ok=True)
    command = "python benchmarks/auto_bench.py " + " ".join(shlex.quote(a) for a in (argv or sys.argv[1:]) if a != "--report")

    store = Store(str(db))
    target = resolve_model(args.target, store)
    proposers = [resolve_model(p, store) for p in args.proposers.split(",")]
    critic = resolve_model(args.critic, store)
    files = sorted(Path(args.data_dir).glob("*.csv"))
    if args.tasks:  # in the order given: a long benchmark finishes the tasks named first
        by_stem = {f.stem: f for f in files}
        files = [by_stem[t] for t in args.tasks.split(",") if t in by_stem]
    methods = args.strategies.split(",")
    # DSPy's figures are for the target its servers ran (dspy_serve.sh serves the zoo's 0.5B)
    dspy_meta = json.loads(Path(args.dspy).read_text()).get("meta", {}) if Path(args.dspy).exists() else {}
    dspy_target = "local/" + str(dspy_meta.get("target_model", "")).split("/")[-1].removesuffix(".gguf")
    rows: list[dict] = []
    missing: list[str] = []
    elapsed = 0.0
    out = results_path(args.target)

    def save(complete: bool) -> None:
        doc = {"complete": complete, "command": command.strip(), "machine": machine(), "args": vars(args),
               "rows": rows, "missing": missing, "elapsed_s": elapsed}
        out.write_text(json.dumps(doc, indent=1, default=str))
        write([json.loads(p.read_text()) for p in sorted((ROOT / "benchmarks").glob("auto_results-*.json"))])

    for path in files:
        ds = import_dataset(store, path)[0]
        metric = parse_metric("accuracy", ds.labels)
        task_rows: dict[str, tuple[dict, pd.Series, str]] = {}
        for method in methods:
            if method == "auto-hand" and hand_prompt(path.stem) is None:
                continue
            run_id, s, wall = run_strategy(store, ds, target, proposers, critic, method, args, 0)
            if run_id is None:
                missing.append(f"{path.stem} {method}")
                continue
            elapsed += wall
            task_rows[method] = (s, None, run_id)
        if not task_rows:
            continue
        plain_run = next((rid for m, (_, _, rid) in task_rows.items() if m != "auto-hand"), None)
        plain = test_correct(store, plain_run, 1, target, ds, metric) if plain_run else None
        hand = test_correct(store, task_rows["auto-hand"][2], 1, target, ds, metric) if "auto-hand" in task_rows else None
        if plain is None:
            continue
        rows.append({"task": path.stem, "method": "plain", "n_test": len(plain), "test": float(plain.mean()),
                     "vs_plain": gain(plain, plain), "vs_hand": gain(hand, plain) if hand is not None else None,
                     "result_by": "—", "search_calls": None, "proposer_calls": None, "wall_s": None,
                     "constant": constant_label(jobs.candidate_test_rows(store, plain_run, 1, target, ds, metric)["pred"].tolist())})
        if hand is not None:
            rows.append({"task": path.stem, "method": "hand-written", "n_test": len(hand), "test": float(hand.mean()),
                         "vs_plain": gain(plain, hand), "vs_hand": gain(hand, hand), "result_by": "—",
                         "search_calls": None, "proposer_calls": None, "wall_s": None,
                         "constant": constant_label(jobs.candidate_test_rows(store, task_rows["auto-hand"][2], 1, target, ds, metric)["pred"].tolist())})
        measured = {}
        for method, (s, _, run_id) in task_rows.items():
            wall = (pd.Timestamp(store.run_row(run_id)["updated_at"]) - pd.Timestamp(store.run_row(run_id)["created_at"])).total_seconds()
            row, correct = measure(store, run_id, s, wall, path.stem, method, target, ds, metric, plain, hand)
            measured[method] = (row, correct)
        if "auto" in measured:  # auto against each lever alone on the same test examples
            measured["auto"][0]["vs_levers"] = {m: gain(measured[m][1], measured["auto"][1]) for m in LEVERS if m in measured}
        for method in methods:
            if method in measured:
                rows.append(measured[method][0])
                print_row(measured[method][0])
        language = detect_language(ds.split("train")["text"].tolist())
        if args.language_check and language != "en" and "auto" in methods:
            label = f"auto, instructions in {language_name(language)}"
            run_id, s, wall = run_strategy(store, ds, target, proposers, critic, "auto", args, 0, language="data")
            if run_id is None:
                missing.append(f"{path.stem} {label}")
            else:
                rows.append(measure(store, run_id, s, wall, path.stem, label, target, ds, metric, plain, hand)[0])
        if dspy_target == args.target:
            rows += dspy_rows(Path(args.dspy), path.stem, plain, hand)
        save(complete=False)
    save(complete=not missing)
    print(f"wrote {out.relative_to(ROOT)} and the 'auto' section of benchmarks/RESULTS.md")
    store.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
