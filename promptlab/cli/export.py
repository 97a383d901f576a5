"""`export` and `matrix`: stored prompts taken out of promptlab, and scored by other models."""
from __future__ import annotations

import sys
from pathlib import Path

from promptlab.cli.common import (OPTIONS, constraint_arg, metric_spec, model_list, names, open_store, print_json,
                                  terminal_progress)
from promptlab.data import resolve_dataset
from promptlab.errors import PromptlabError
from promptlab.export import files, filename, stored_prompt
from promptlab.jobs import MatrixRequest, matrix_lines, score_matrix


def register(sub) -> None:
    p = sub.add_parser("export", parents=[OPTIONS], help="take a stored prompt into your code: text, chat messages, a "
                                                        "litellm script or a promptfoo config")
    p.add_argument("run", help="the run's id (`promptlab runs list`)")
    p.add_argument("--candidate", type=int, help="this candidate instead of the run's result")
    p.add_argument("--format", default="messages", choices=["text", "messages", "python", "promptfoo"],
                   help="text: to read; messages: JSON messages template and parameters; python: a runnable litellm "
                        "script; promptfoo: a folder promptfoo runs, the test split as tests, with promptlab's score "
                        "(default: messages)")
    p.add_argument("--out", help="write to this file (or into this folder) instead of printing; promptfoo: the folder "
                                 "to write its files into (made if missing)")
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("matrix", parents=[OPTIONS], help="the top prompts of several runs scored by several models on "
                                                        "the same test examples (the best prompt per model)")
    p.add_argument("--runs", required=True, help="comma-separated run ids whose prompts to score")
    p.add_argument("--models", required=True, help="comma-separated models to score them with")
    p.add_argument("--dataset", help="score on this dataset (default: the first run's)")
    p.add_argument("--top", type=int, default=1, help="prompts per run: its result, then its next best (default 1)")
    p.add_argument("--split", default="test", choices=["train", "val", "test", "all"])
    p.add_argument("--metric", help="default: the first run's metric on its own dataset, else the dataset's default")
    constraint_arg(p)
    p.set_defaults(func=cmd_matrix)


def cmd_export(args) -> int:
    """A stored prompt as text, chat messages, a runnable litellm script or a folder promptfoo runs."""
    sp = stored_prompt(open_store(args), args.run, args.candidate)
    out = files(sp, args.format)
    if len(out) > 1:  # promptfoo's folder: the config and the two Python files it calls
        if not args.out:
            raise PromptlabError(f"the {args.format} export is a folder of {len(out)} files ({', '.join(out)}): add "
                                 f"--out DIR, e.g. --out {filename(sp, args.format)}")
        folder = Path(args.out)
        folder.mkdir(parents=True, exist_ok=True)
        for name, content in out.items():
            _write_whole(folder / name, content)
        print(f"wrote {folder}/: {', '.join(out)} (its first lines say how to run it)", file=sys.stderr)
        return 0
    (name, content), = out.items()
    if args.out:
        path = Path(args.out) / name if Path(args.out).is_dir() else Path(args.out)
        _write_whole(path, content)
        print(f"wrote {path}", file=sys.stderr)
    else:
        sys.stdout.write(content)
    return 0


def _write_whole(path: Path, content: str) -> None:
    """Nothing half-written: the file appears whole or not at all."""
    tmp = path.with_name(path.name + ".part")
    tmp.write_text(content, encoding="utf-8")
    tmp.replace(path)


def cmd_matrix(args) -> int:
    """The top prompts of several runs scored by several models on the same test examples."""
    store = open_store(args)
    req = MatrixRequest(names(args.runs), tuple(model_list(store, args.models)),
                        resolve_dataset(store, args.dataset) if args.dataset else None, args.top, args.split,
                        metric_spec(args))
    with terminal_progress(not args.json and sys.stderr.isatty()) as progress:
        result = score_matrix(store, req, progress)
    if args.json:
        print_json({"dataset": result.dataset, "metric": result.metric, "split": result.split, "notes": result.notes,
                    "cells": result.cells.to_dict("records"), "transfer": result.transfer.to_dict("records")})
        return 0
    print(f"{result.metric} on {result.dataset} ({result.split}); * = the model's best prompt, (own) = the model the "
          "prompt was found for")
    table = result.cells.assign(cell=[f"{'*' if b else ' '}{sc:.3f} [{lo:.3f}, {hi:.3f}] n={n}"
                                      + (" (own)" if m == o else "") + (f" constant '{c}'" if c else "")
                                      for sc, lo, hi, n, b, m, o, c in zip(
                                          result.cells["score"], result.cells["ci_low"], result.cells["ci_high"],
                                          result.cells["n"], result.cells["best_for_model"], result.cells["model"],
                                          result.cells["own_model"], result.cells["constant"])])
    print(table.pivot(index="prompt", columns="model", values="cell").to_string())
    for line in matrix_lines(result) + [f"note: {n}" for n in result.notes]:
        print(line)
    return 0
