"""Study benchmark: same-family versus cross-family proposers on the offline zoo.

    python benchmarks/study_bench.py --data-dir ../shared/datasets

For each task, one `promptlab study` (targets x each proposer alone x seeds, equal budget and rounds,
strategy arena) on a seeded stratified sample of the task, then the study's own analysis: held-out
test gain over the baseline per target x proposer with its two-level paired bootstrap CI, the exact
paired test, the relation from families and sizes, the plain-words reading, and the head-to-head
differences between proposers on the same test examples and seeds. Writes the "study" section of
benchmarks/RESULTS.md (command, machine, table, readings) and one PNG chart per task next to it.
Re-running the same command resumes the studies (finished runs are not redone).
"""
from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from arena_bench import machine, task_dataset, write_section  # noqa: E402

from promptlab import charts  # noqa: E402
from promptlab import study as S  # noqa: E402
from promptlab.models import resolve_model  # noqa: E402
from promptlab.progress import Progress  # noqa: E402
from promptlab.store import Store  # noqa: E402


def _ci(v, lo, hi) -> str:
    return "—" if v is None else f"{v:+.3f} [{lo:+.3f}, {hi:+.3f}]"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data-dir", default=str(ROOT.parent / "shared" / "datasets"))
    ap.add_argument("--tasks", default="multiemo_hotels_en,implicatures", help="comma-separated file stems")
    ap.add_argument("--targets", default="local/qwen2.5-coder-0.5b,local/smollm2-135m")
    ap.add_argument("--proposers", default="local/qwen2.5-coder-1.5b,local/qwen2.5-coder-0.5b,local/smollm2-135m")
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--budget", type=int, default=250)
    ap.add_argument("--candidates", type=int, default=2)
    ap.add_argument("--max-rows", type=int, default=200, help="a seeded stratified sample of each task (0: all rows)")
    ap.add_argument("--db", default=str(ROOT / "benchmarks" / "bench.duckdb"))
    args = ap.parse_args(argv)
    command = "python benchmarks/study_bench.py " + " ".join(shlex.quote(a) for a in (argv or sys.argv[1:]))

    store = Store(args.db)
    targets = [resolve_model(t, store) for t in args.targets.split(",")]
    proposers = [resolve_model(p, store) for p in args.proposers.split(",")]
    results = []
    for stem in args.tasks.split(","):
        ds = task_dataset(store, Path(args.data_dir) / f"{stem}.csv", args.max_rows or None, seed=0)
        study_id, reused = S.create_study(store, ds, targets, proposers, args.seeds, budget=args.budget,
                                          rounds=args.rounds, candidates=args.candidates)
        print(f"{stem}: study {study_id}{' (resumed)' if reused else ''}", flush=True)
        cells = S.execute_study(store, study_id, Progress(on_change=lambda p: print(
            f"  [{p.done + 1}/{p.total}] {p.note}", flush=True)))
        results.append((stem, ds, study_id, cells, S.head_to_head(store, study_id)))

    lines = [
        "## Study: same-family versus cross-family proposers (offline zoo)",
        "",
        f"Command: `{command.strip()}`  ",
        f"Machine: {machine()}. Per task one study: targets {', '.join(f'`{t.label}`' for t in targets)} x each "
        f"proposer alone ({', '.join(f'`{p.label}`' for p in proposers)}) x {args.seeds} seeds; strategy arena, "
        f"{args.rounds} rounds, {args.candidates} candidates per proposer per round, search budget {args.budget} target "
        "calls per run, metric accuracy, the plain baseline"
        + (f"; each task a seeded stratified sample of {args.max_rows} rows (to fit the time box)" if args.max_rows else "")
        + ". Gains are on the held-out test split (the same examples for every run of a task), averaged over seeds, "
        "with a 95% two-level paired bootstrap CI (examples and seeds resampled); p is the paired sign-flip test "
        "(per example, correctness averaged over seeds). The same command shows each study with "
        "`python -m promptlab study --db benchmarks/bench.duckdb --show ID`.",
        "",
        "| task | target | proposer | relation | seeds | n test | baseline | best | gain [95% CI] | p | better / worse on | usable proposals |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for stem, ds, study_id, cells, _ in results:
        for c in cells:
            lines.append(
                f"| {stem} | {c.target} | {c.proposer} | {c.relation} | {c.seeds} | {c.n_test} | "
                + (f"{c.baseline_test:.3f} | {c.best_test:.3f} | " if c.gain_mean is not None else "— | — | ")
                + f"{_ci(c.gain_mean, c.ci_low, c.ci_high)} | "
                + (f"{c.p_value:.3g}" if c.p_value is not None else "—") + f" | {c.better_on} / {c.worse_on} | "
                + f"{c.usable} of {c.asked} |")
    lines += ["", "Head to head (the second proposer's best prompts minus the first's, same test examples and seeds):", "",
              "| task | target | first | second | difference [95% CI] | p | p (Holm) |", "|---|---|---|---|---|---|---|"]
    for stem, ds, study_id, cells, pairs in results:
        for r in pairs.itertuples():
            lines.append(f"| {stem} | {r.target} | {r.first} | {r.second} | {_ci(r.diff, r.ci_low, r.ci_high)} | "
                         f"{r.p_value:.3g} | {r.p_adj:.3g} |")
    lines += ["", "Readings (the study's own one-line verdicts):", ""]
    for stem, ds, study_id, cells, pairs in results:
        for t in dict.fromkeys(c.target for c in cells):
            lines.append(f"- {stem} (`{study_id}`): {S.reading(cells, t, pairs)}")
        png = ROOT / "benchmarks" / f"study_{stem}.png"
        frame = S.cells_frame(cells)
        try:
            for i, t in enumerate(dict.fromkeys(frame["target"])):
                fig = charts.study_gains(frame[frame["target"] == t], f"{stem}: proposers for {t}")
                path = png.with_name(f"study_{stem}_{i}.png")
                path.write_bytes(charts.to_png(fig, width=1000, height=int(fig.layout.height or 400)))
                lines.append(f"  ![{stem}, {t}]({path.name})")
        except RuntimeError as exc:
            print(f"charts not written: {exc}", file=sys.stderr)
    write_section("study", "\n".join(lines))
    print("\n".join(lines))
    print("wrote benchmarks/RESULTS.md")
    store.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
