"""`grade` and `judge-check`: grading a prompt's outputs by hand, and checking an LLM judge against those grades.
(Deciding a paused run's rounds is `review`, cli/review.py.)"""
from __future__ import annotations

import os

import pandas as pd

from promptlab import grading as G
from promptlab.cli.common import OPTIONS, fmt, load_prompt, open_store, print_json, rubric
from promptlab.data import resolve_dataset
from promptlab.errors import PromptlabError
from promptlab.models import resolve_model


def register(sub) -> None:
    for name, func, what in (("grade", cmd_grade, "grade a prompt's outputs by hand; prints the human score with n and CI"),
                             ("judge-check", cmd_judge_check, "check an LLM judge against your grades (agreement, kappa)")):
        p = sub.add_parser(name, parents=[OPTIONS], help=what)
        p.add_argument("--dataset", required=True)
        p.add_argument("--model", required=True, help="the model whose outputs are graded")
        g = p.add_mutually_exclusive_group(required=True)
        g.add_argument("--prompt", help="prompt text; {input} marks the example")
        g.add_argument("--prompt-file")
        p.add_argument("--system", help="system message (then --prompt is the user message)")
        p.add_argument("--split", default="val", choices=["train", "val", "test", "all"])
        p.add_argument("--limit", type=int, default=20, help="outputs to grade (a seeded sample; default 20)")
        p.add_argument("--seed", type=int, default=0)
        p.add_argument("--scale", default="1-5", choices=["1-5", "pass/fail"])
        if name == "grade":
            p.add_argument("--blind", action="store_true", help="hide the prompt while grading")
            p.add_argument("--grader", default=os.environ.get("USER") or "analyst", help="your name, stored with each grade")
            p.add_argument("--grades", help="a CSV with columns example, grade (and note) instead of grading interactively")
            p.add_argument("--summary", action="store_true", help="only print the human score so far")
        else:
            p.add_argument("--judge", required=True, help="the judge model")
            p.add_argument("--rubric", required=True, help="the rubric text, or @FILE")
        p.set_defaults(func=func)


# --- grading by hand --------------------------------------------------------------------------------

def _grading_batch(store, args):
    ds = resolve_dataset(store, args.dataset)
    spec = resolve_model(args.model, store)
    prompt = load_prompt(args)
    return G.outputs(store, ds, spec, prompt, split=args.split, limit=args.limit, seed=args.seed, scale=args.scale)


def cmd_grade(args) -> int:
    """Grade a prompt's outputs by hand (interactive, or a CSV of example,grade[,note]); print the score."""
    store = open_store(args)
    batch = _grading_batch(store, args)
    if args.grades:
        _record_grades_file(store, batch, args)
    elif not args.summary:
        _grade_interactively(store, batch, args)
    _print_human_score(store, batch, args.json)
    return 0


def _record_grades_file(store, batch, args) -> None:
    """Store the grades of the CSV args.grades; every line is checked before any grade is stored, so a bad file
    changes nothing (it raises PromptlabError naming the line)."""
    for item, grade, note in _read_grades_file(args, batch):
        G.record(store, batch, item, grade, args.scale, note=note, grader=args.grader)


def _read_grades_file(args, batch) -> list[tuple]:
    """(item, grade, note) per line of the CSV args.grades (columns example, grade, optionally note), each example
    one of the batch's outputs and each grade on args.scale; raises PromptlabError naming the first bad line."""
    table = pd.read_csv(args.grades, dtype=str, keep_default_na=False)
    missing = {"example", "grade"} - set(table.columns)
    if missing:
        raise PromptlabError(f"{args.grades}: needs columns example and grade (and optionally note); missing {', '.join(sorted(missing))}")
    by_idx = {it.example_idx: it for it in batch.items}
    parsed = []
    for i, r in enumerate(table.itertuples(), 2):
        try:
            idx = int(r.example)
        except ValueError:
            raise PromptlabError(f"{args.grades} line {i}: example '{r.example}' is not a number") from None
        if idx not in by_idx:
            raise PromptlabError(f"{args.grades} line {i}: example {idx} is not among the outputs graded here "
                                 f"(split {args.split}, limit {args.limit}); examples are {sorted(by_idx)[:10]}…")
        try:
            grade = G.parse_grade(r.grade, args.scale)
        except PromptlabError as exc:
            raise PromptlabError(f"{args.grades} line {i}: {exc}") from None
        parsed.append((by_idx[idx], grade, getattr(r, "note", "") or ""))
    return parsed


def _grade_interactively(store, batch, args) -> None:
    """Show each output not graded yet and record the grade typed for it; 'q' (or the end of input) stops."""
    lo, hi = G.scale_range(args.scale)
    todo = [it for it in batch.items if it.grade is None]
    keys = "p pass, f fail" if args.scale == "pass/fail" else f"{lo}-{hi}"
    print(f"{len(todo)} output(s) to grade ({keys}; add a note after the grade; s skip, q quit)")
    if not args.blind:
        print(f"prompt: {(batch.prompt.system + ' ' + batch.prompt.user).strip()[:300]}")
    for n, it in enumerate(todo, 1):
        print(f"\n[{n}/{len(todo)}] input: {it.input[:500]}")
        if it.reference:
            print(f"reference: {it.reference[:300]}")
        print(f"output: {it.output[:1000]}")
        if not _ask_grade(store, batch, it, args):
            break


def _ask_grade(store, batch, item, args) -> bool:
    """Ask until the item's grade is recorded or skipped (True) or the analyst quits (False); a grade off the
    scale is said and asked again."""
    while True:
        try:
            line = input("grade> ").strip()
        except EOFError:
            line = "q"
        if line in ("q", "quit"):
            return False
        if line in ("s", "skip"):
            return True
        value, _, note = line.partition(" ")
        try:
            G.record(store, batch, item, G.parse_grade(value, args.scale), args.scale, note=note, grader=args.grader,
                     blind=args.blind)
            return True
        except PromptlabError as exc:
            print(f"  {exc}")


def _print_human_score(store, batch, as_json: bool) -> None:
    """The batch's human score with its CI and n (as JSON with the prompt id when as_json)."""
    s = G.summary(store, batch.dataset.id, batch.prompt_id, batch.model_key, batch.scale, batch.pairs)
    out = {"prompt_id": batch.prompt_id, **s}
    if as_json:
        print_json(out)
    elif s["n"]:
        print(f"human score {fmt(s['score'])} [{fmt(s['ci'][0])}, {fmt(s['ci'][1])}] n={s['n']} "
              f"(mean grade {s['mean_grade']:.2f} on {s['scale']}, scaled to 0-1)")
    else:
        print("no grades yet")


def cmd_judge_check(args) -> int:
    """Check an LLM judge against your grades of one prompt's outputs: agreement and Cohen's kappa."""
    store = open_store(args)
    batch = _grading_batch(store, args)
    judge = resolve_model(args.judge, store)
    stats = G.calibrate(store, batch, judge, rubric(args.rubric), args.scale)
    if args.json:
        print_json(stats)
        return 0
    for p in stats["pairs"]:
        print(f"  example {p['example']}: you {p['human']:g}, judge {p['judge'] if p['judge'] is not None else 'no grade'}")
    ex = "n/a" if stats["exact"] is None else f"{stats['exact']:.0%}"
    within = "n/a" if stats["within_one"] is None else f"{stats['within_one']:.0%}"
    print(f"agreement on {stats['n']} outputs: exact {ex}, within one point {within}; {G.kappa_reading(stats)}")
    return 0
