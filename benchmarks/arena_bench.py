"""Arena benchmark: run the optimizer on every CSV in a folder and report held-out gains.

    python benchmarks/arena_bench.py --data-dir ../shared/datasets

Prints one line per task and writes the table, with this exact command and the machine, into the
arena section of benchmarks/RESULTS.md. Every task gets the same settings: nothing is tuned per task.
"""
from __future__ import annotations

import argparse
import shlex
import sys
import time
from pathlib import Path


ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

import pandas as pd  # noqa: E402

from promptlab import jobs, planning, results, runs  # noqa: E402
from promptlab.errors import PromptlabError  # noqa: E402
from promptlab.data import import_dataset  # noqa: E402
from promptlab.scoring.labels import parse_metric  # noqa: E402
from promptlab.scoring.stats import paired_mean_ci  # noqa: E402
from promptlab.models import resolve_model  # noqa: E402
from promptlab.store import Store  # noqa: E402
from common import RESULTS, machine, write_section  # noqa: E402,F401  (re-exported for the other benchmarks)


def find_or_run(store: Store, cfg, *, fresh: bool = False, report: bool = False):
    """The benchmarks' run for a config: the finished run with this config (reused; its wall time from its record),
    else the unfinished one resumed, else a new one. `fresh`: never reuse; `report`: never run (None where no
    finished run exists). Returns (run_id, summary, wall seconds, reused)."""
    rec = cfg.to_record()
    reused = None if fresh else store.finished_run_with_config(rec)
    if reused:
        row = store.run_row(reused)
        wall = (pd.Timestamp(row["updated_at"]) - pd.Timestamp(row["created_at"])).total_seconds()
        return reused, results.summarize(store, reused), wall, True
    if report:
        return None, {}, 0.0, False
    t0 = time.perf_counter()
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
    return run_id, s, time.perf_counter() - t0, False


def task_dataset(store: Store, path: Path, max_rows: int | None = None, seed: int = 0):
    """Import a task file; with max_rows, a seeded stratified sample of it stored as its own dataset
    (named `<stem>-<max_rows>`), so benchmarks that fit a time box all use the same sample."""
    ds = import_dataset(store, path)[0]
    if max_rows and ds.n > max_rows:
        from promptlab.split import stratified_sample

        sample = stratified_sample(ds.frame, max_rows, seed=seed)
        csv = sample[["text", "label"]].rename(columns={"text": "input"}).to_csv(index=False).encode()
        ds = import_dataset(store, csv, filename=f"{path.stem}.csv", name=f"{path.stem}-{max_rows}")[0]
    return ds


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data-dir", default=str(ROOT.parent / "shared" / "datasets"))
    ap.add_argument("--target", default="local/qwen2.5-coder-0.5b")
    ap.add_argument("--proposers", default="local/qwen2.5-coder-1.5b,local/qwen2.5-coder-0.5b,local/smollm2-135m")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--budget", type=int, default=600)
    ap.add_argument("--arena", type=int, default=2)
    ap.add_argument("--candidates", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--db", default=str(ROOT / "benchmarks" / "bench.duckdb"))
    ap.add_argument("--tasks", help="comma-separated file stems to run (default: every CSV)")
    ap.add_argument("--demos", default="none", help="none, per-label or K: train demos attached to every instruction")
    ap.add_argument("--demo-format", default="chat", choices=["chat", "inline"])
    args = ap.parse_args(argv)

    store = Store(args.db)
    target = resolve_model(args.target, store)
    proposers = [resolve_model(p, store) for p in args.proposers.split(",")]
    files = sorted(Path(args.data_dir).glob("*.csv"))
    if args.tasks:
        wanted = set(args.tasks.split(","))
        files = [f for f in files if f.stem in wanted]
    demos = int(args.demos) if args.demos.isdigit() else args.demos
    with_demos = demos not in ("none", 0)
    rows = []
    for path in files:
        ds = import_dataset(store, path)[0]
        cfg = planning.make_config(ds, target, proposers, seed=args.seed, arena=args.arena, candidates=args.candidates,
                               rounds=args.rounds, budget=args.budget, demos=demos, demo_format=args.demo_format)
        run_id, s, wall, _ = find_or_run(store, cfg, fresh=True)
        # Paired comparison on the same test examples (cached: no new calls).
        metric = parse_metric(cfg.metric, ds.labels)
        test = ds.split("test")
        board = store.candidates(run_id).set_index("id")
        a = jobs.candidate_test_rows(store, run_id, 1, target, ds, metric)["correct"].to_numpy(dtype=float)
        b = jobs.candidate_test_rows(store, run_id, s["best_id"], target, ds, metric)["correct"].to_numpy(dtype=float)
        lo, hi = paired_mean_ci(a, b, n_boot=2000, seed=args.seed)
        # With demos on, candidate 2 is the plain baseline with the run's demos: what the demos did alone.
        demo_base = float(board.loc[2, "test_score"]) if with_demos else None
        row = {
            "task": path.stem, "n_test": len(test), "baseline_test": s["baseline_test"], "best_test": s["best_test"],
            "gain": s["best_test"] - s["baseline_test"], "gain_lo": lo, "gain_hi": hi,
            "baseline_val": s["baseline_val"], "best_val": s["best_val"], "best_by": "baseline + demos" if with_demos and s["best_id"] == 2 else s["best_proposer"],
            "target_calls": s["target_calls"], "proposer_calls": s["proposer_calls"], "cached": s["cached_calls"],
            "gated": s["gated"], "saved": s["calls_saved_by_gate"], "wall_s": wall, "run_id": run_id,
            "demo_base": demo_base, "best_has_demos": bool(s["best_demos"]),
        }
        rows.append(row)
        print(f"{row['task']:<24} test {row['baseline_test']:.3f} -> {row['best_test']:.3f} "
              f"(gain {row['gain']:+.3f}, 95% CI [{lo:+.3f}, {hi:+.3f}], n={row['n_test']})  "
              f"val {row['baseline_val']:.3f} -> {row['best_val']:.3f}  calls {row['target_calls']}+{row['proposer_calls']}  "
              f"{wall:.0f} s", flush=True)

    command = "python benchmarks/arena_bench.py " + " ".join(shlex.quote(a) for a in (argv or sys.argv[1:]))
    wins = sum(1 for r in rows if r["gain_lo"] > 0)
    ups = sum(1 for r in rows if r["gain"] > 0)
    section = "arena" if not with_demos else "arena-demos"
    title = "## Arena: held-out gain over a plain baseline" + (
        "" if not with_demos else f" (instructions with demos: {args.demos}, {args.demo_format})")
    lines = [
        title,
        "",
        f"Command: `{command.strip()}`  ",
        f"Machine: {machine()}. Target `{args.target}`; proposers `{args.proposers}`; arena {args.arena} of "
        f"{len(proposers)} per round, {args.candidates} candidates each, {args.rounds} rounds, search budget "
        f"{args.budget} target calls, seed {args.seed}, metric accuracy. Baseline: "
        f"\"{planning.DEFAULT_BASELINE}\" (system) with the text as the user message. Same settings for every task."
        + ("" if not with_demos else
           f" Every proposed instruction carries the same {args.demos} train demos ({args.demo_format}), drawn with the"
           " run's seed; 'baseline + demos' is the plain baseline with those demos, scored in the same run, so the"
           " table separates what the demos did from what the rewriting did."),
        "",
        "| task | n test | baseline test | " + ("baseline + demos test | " if with_demos else "")
        + "best test | gain [95% paired bootstrap CI] | baseline val | best val | best written by | target calls | proposer calls | gated (calls saved) | wall |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|" + ("---|" if with_demos else ""),
    ]
    for r in rows:
        demo_col = f"{r['demo_base']:.3f} | " if with_demos else ""
        lines.append(
            f"| {r['task']} | {r['n_test']} | {r['baseline_test']:.3f} | {demo_col}{r['best_test']:.3f} | {r['gain']:+.3f} "
            f"[{r['gain_lo']:+.3f}, {r['gain_hi']:+.3f}] | {r['baseline_val']:.3f} | {r['best_val']:.3f} | "
            f"{r['best_by']} | {r['target_calls']} | {r['proposer_calls']} | {r['gated']} ({r['saved']}) | {r['wall_s']:.0f} s |"
        )
    lines += [
        "",
        f"Held-out gain on {ups} of {len(rows)} tasks; the 95% CI excludes 0 on {wins} of {len(rows)}. "
        "Target calls include the final test scoring of the baseline and the top prompts.",
    ]
    write_section(section, "\n".join(lines))
    print(f"wrote {RESULTS}")
    store.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
