"""`study`: grids of runs (targets x proposer sets x seeds) created, run or resumed, and their analysis printed."""
from __future__ import annotations

import sys

from promptlab import runs, study as S
from promptlab.cli.common import OPTIONS, constraint_arg, metric_spec, names, open_store, print_json
from promptlab.data import resolve_dataset
from promptlab.errors import PromptlabError
from promptlab.optimize import registry
from promptlab.progress import Progress


def register(sub) -> None:
    p = sub.add_parser("study", parents=[OPTIONS],
                       help="same-family vs cross-family proposers: targets x proposer sets x seeds, with CIs")
    p.add_argument("--dataset")
    p.add_argument("--targets", help="comma-separated target models")
    p.add_argument("--proposers", help="comma-separated proposer models (each is run alone)")
    p.add_argument("--mix", action="append", help="also run these proposers together, e.g. A+B (repeat)")
    p.add_argument("--seeds", type=int, default=3, help="seeds per cell (default 3)")
    p.add_argument("--budget", type=int, default=600, help="target requests per run for the search, each prompt x example once, cached or not (equal for all)")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--candidates", type=int, default=2)
    p.add_argument("--metric", default="accuracy")
    constraint_arg(p)
    p.add_argument("--strategy", default="arena",
                   help=f"one of {', '.join(registry.STRATEGIES)} or a chain (default arena: a study compares proposers, "
                        "and in the arena everything a run finds is theirs)")
    p.add_argument("--minibatch", type=int)
    p.add_argument("--test-top", type=int)
    p.add_argument("--show", metavar="ID", help="analyse a stored study without running anything")
    p.add_argument("--resume", metavar="ID", help="finish a study's unfinished runs, then analyse")
    p.add_argument("--list", action="store_true", help="stored studies")
    p.set_defaults(func=cmd_study)


def request_from(args, dataset: str) -> S.StudyRequest:
    """The study these arguments ask for, by name (the dataset by its name or id)."""
    settings = {k: v for k, v in {"minibatch_size": args.minibatch, "test_top": args.test_top}.items() if v is not None}
    return S.StudyRequest(
        dataset, names(args.targets), names(args.proposers), args.seeds,
        mixes=tuple(tuple(m.split("+")) for m in args.mix or []), budget=args.budget, rounds=args.rounds,
        metric=metric_spec(args), strategy=args.strategy, candidates=args.candidates, settings=settings)


def cmd_study(args) -> int:
    store = open_store(args)
    out = sys.stderr if args.json else sys.stdout
    if args.list:
        table = store.list_studies()
        if args.json:
            print_json(table.to_dict("records"))
        else:
            for r in table.itertuples():
                print(f"{r.id}  {r.dataset}  {r.finished}/{r.runs} runs finished  {str(r.created_at)[:19]}")
        return 0
    if args.show or args.resume:
        study_id = args.show or args.resume
        if store.study_row(study_id) is None:
            raise PromptlabError(f"no study '{study_id}' (see `study --list`)")
    else:
        if not (args.dataset and args.targets and args.proposers):
            raise PromptlabError("a new study needs --dataset, --targets and --proposers (or --show/--resume ID, --list)")
        ds = resolve_dataset(store, args.dataset)  # once: a file path is imported here, then named by its id
        print(S.power(ds, metric_spec(args), args.seeds), file=out, flush=True)
        study_id, reused, ds = S.request_study(store, request_from(args, ds.id))
        members = store.study_members(study_id)
        print(f"study {study_id}{' (the same grid as before: resuming it)' if reused else ''}: {len(members)} runs "
              f"({members['target'].nunique()} target(s) x {members['proposer_set'].nunique()} proposer set(s) x "
              f"{members['seed'].nunique()} seed(s)), {ds.name}", file=out, flush=True)
    if args.show:
        cells = S.analyze(store, study_id)
    else:
        runs.mark_dead_runs(store)  # a study's runs left 'running' by a killed process resume here

        cells = S.execute_study(store, study_id, Progress(on_change=lambda p: print(
            f"[{p.done + 1}/{p.total}] {p.note}", file=out, flush=True)))
    frame = S.cells_frame(cells)
    pairs = S.head_to_head(store, study_id)
    cols = ["target", "proposer", "relation", "seeds", "gain_mean", "ci_low", "ci_high", "p_value", "n_test"]
    fmt = {c: (lambda x: "—" if x is None or x != x else f"{x:.3g}") for c in ("p_value", "p_adj")}  # None/NaN: no p
    print(frame[cols].to_string(index=False, formatters=fmt, float_format=lambda x: f"{x:+.3f}"), file=out)
    if not pairs.empty:
        print("\nhead to head (second's best prompts minus first's, same test examples and seeds):", file=out)
        print(pairs[["target", "first", "second", "seeds", "diff", "ci_low", "ci_high", "p_value", "p_adj", "n_test"]]
              .to_string(index=False, formatters=fmt, float_format=lambda x: f"{x:+.3f}"), file=out)
    readings = {t: S.reading(cells, t, pairs) for t in dict.fromkeys(frame["target"])}
    for line in readings.values():
        print(line, file=out)
    if args.json:
        print_json({"study_id": study_id, "cells": [c.to_record() for c in cells],
                    "pairs": pairs.to_dict("records"), "readings": readings})
    return 0
