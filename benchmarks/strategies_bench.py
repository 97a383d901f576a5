"""Strategies benchmark: each strategy and chain against the arena alone, at an equal target-call budget.

    python benchmarks/strategies_bench.py --data-dir ../shared/datasets --strategies arena fewshot gradient arena,fewshot

Every (task, strategy) pair is one ordinary run with the same seed, rounds and search budget; all
share one DuckDB cache, so a prompt that two strategies both score (the baseline, at least) is paid
for once. Reports held-out test gain over the plain baseline with a paired bootstrap CI, and each
strategy's test score minus the arena's on the same test examples. Writes the "strategies" section
of benchmarks/RESULTS.md with the command and the machine. Nothing is tuned per task.
"""
from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from arena_bench import find_or_run, machine, task_dataset, write_section  # noqa: E402
from common import zoo_args  # noqa: E402

from promptlab import jobs, planning  # noqa: E402
from promptlab.scoring.labels import parse_metric  # noqa: E402
from promptlab.scoring.stats import paired_mean_ci  # noqa: E402
from promptlab.models import resolve_model  # noqa: E402
from promptlab.store import Store  # noqa: E402


def write_table(args, argv, rows, complete: bool) -> None:
    command = "python benchmarks/strategies_bench.py " + " ".join(shlex.quote(a) for a in (argv or sys.argv[1:]))
    lines = [
        "## Strategies and chains against the arena alone, at an equal target-call budget",
        "",
        f"Command: `{command.strip()}`  ",
        f"Machine: {machine()}. Target `{args.target}`; arena proposers `{args.proposers}` (2 per round, 2 candidates "
        f"each); gradient critic `{args.critic}`, editor `{args.editor}`; fewshot: TPE over instructions x demo sets "
        f"(random, stratified, bootstrapped, similar; 1 or 2 per label, chat turns). Every run: {args.rounds} rounds "
        f"per stage, search budget {args.budget} target calls (a chain splits it between its stages), seed {args.seed}, "
        "metric accuracy, the plain baseline. Test scores are on the held-out split no strategy saw."
        + (f" Each task is a seeded stratified sample of {args.max_rows} rows (to fit the time box)." if args.max_rows else ""),
        "",
        "| task | strategy | n test | baseline test | best test | gain [95% paired CI] | vs arena [95% paired CI] | best val | best by | search calls | wall |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        vs = f"{r['vs_arena'][0]:+.3f} [{r['vs_arena'][1]:+.3f}, {r['vs_arena'][2]:+.3f}]" if r["vs_arena"] else "—"
        lines.append(f"| {r['task']} | {r['strategy']} | {r['n_test']} | {r['baseline_test']:.3f} | {r['best_test']:.3f} | "
                     f"{r['gain']:+.3f} [{r['lo']:+.3f}, {r['hi']:+.3f}] | {vs} | {r['best_val']:.3f} | {r['best_by']} | "
                     f"{r['search_requests']} | {r['wall_s']:.0f} s |")
    lines.append("")
    for strategy in args.strategies:
        mine = [r for r in rows if r["strategy"] == strategy]
        ups = sum(1 for r in mine if r["lo"] > 0)
        line = f"- **{strategy}**: CI of the gain over the baseline above 0 on {ups} of {len(mine)} tasks"
        if strategy != "arena":
            better = sum(1 for r in mine if r["vs_arena"] and r["vs_arena"][1] > 0)
            worse = sum(1 for r in mine if r["vs_arena"] and r["vs_arena"][2] < 0)
            line += f"; better than the arena (CI above 0) on {better}, worse (CI below 0) on {worse}"
        lines.append(line + ".")
    if not complete:
        lines.append("")
        lines.append(f"(In progress: {len(rows)} runs so far.)")
    write_section("strategies", "\n".join(lines))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    zoo_args(ap, ROOT.parent / "shared" / "datasets")
    ap.add_argument("--editor", default="local/qwen2.5-coder-1.5b")
    ap.add_argument("--strategies", nargs="+", default=["arena", "fewshot", "gradient", "arena,fewshot"])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--budget", type=int, default=600)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--db", default=str(ROOT / "benchmarks" / "bench.duckdb"))
    ap.add_argument("--tasks", help="comma-separated file stems to run (default: every CSV)")
    ap.add_argument("--max-rows", type=int, help="a stratified sample of each task (seeded), to fit a time box")
    ap.add_argument("--test-top", type=int, default=1, help="top prompts scored on test besides the baselines")
    args = ap.parse_args(argv)

    store = Store(args.db)
    target = resolve_model(args.target, store)
    proposers = [resolve_model(p, store) for p in args.proposers.split(",")]
    critic, editor = resolve_model(args.critic, store), resolve_model(args.editor, store)
    files = sorted(Path(args.data_dir).glob("*.csv"))
    if args.tasks:
        files = [f for f in files if f.stem in set(args.tasks.split(","))]
    rows = []
    for path in files:
        ds = task_dataset(store, path, args.max_rows, args.seed)
        metric = parse_metric("accuracy", ds.labels)
        arena_correct = None
        for strategy in args.strategies:
            extra = {"critic": critic, "editor": editor} if "gradient" in strategy else {}
            cfg = planning.make_config(ds, target, proposers, seed=args.seed, rounds=args.rounds, budget=args.budget,
                                   strategy=strategy, test_top=args.test_top, **extra)
            run_id, s, wall, reused = find_or_run(store, cfg)  # the same run finished before: reused
            base = jobs.candidate_test_rows(store, run_id, 1, target, ds, metric)["correct"].to_numpy(dtype=float)
            best = jobs.candidate_test_rows(store, run_id, s["best_id"], target, ds, metric)["correct"].to_numpy(dtype=float)
            lo, hi = paired_mean_ci(base, best, n_boot=2000, seed=args.seed)
            if strategy == "arena":
                arena_correct = best
            vs = (float(best.mean() - arena_correct.mean()), *paired_mean_ci(arena_correct, best, n_boot=2000, seed=args.seed)) \
                if arena_correct is not None and strategy != "arena" else None
            search = max([st.get("target_requests", 0) for st in store.steps(run_id) if st["kind"] == "candidate_scored"], default=0)
            row = {"task": path.stem, "strategy": strategy, "n_test": len(base), "baseline_test": float(base.mean()),
                   "best_test": float(best.mean()), "gain": float(best.mean() - base.mean()), "lo": lo, "hi": hi,
                   "vs_arena": vs, "best_val": s["best_val"], "best_by": s["best_proposer"], "search_requests": search,
                   "target_calls": s["target_calls"], "proposer_calls": s["proposer_calls"], "wall_s": wall}
            rows.append(row)
            print(f"{row['task']:<22} {strategy:<15} test {row['baseline_test']:.3f} -> {row['best_test']:.3f} "
                  f"(gain {row['gain']:+.3f} [{lo:+.3f}, {hi:+.3f}])"
                  + (f"  vs arena {vs[0]:+.3f} [{vs[1]:+.3f}, {vs[2]:+.3f}]" if vs else "")
                  + f"  search {search} calls, {wall:.0f} s" + ("  (reused)" if reused else ""), flush=True)
            write_table(args, argv, rows, complete=False)

    write_table(args, argv, rows, complete=True)
    print("wrote benchmarks/RESULTS.md")
    store.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
