"""`review`, `grade` and `judge-check`: decisions between a paused run's rounds, and grading outputs by hand."""
from __future__ import annotations

import os
import sys

import pandas as pd

from promptlab import grading as G
from promptlab import review as R
from promptlab import runs
from promptlab.cli.common import OPTIONS, fmt, load_prompt, open_store, print_json, rubric
from promptlab.cli.runs import follow, print_run, run_record
from promptlab.data import resolve_dataset
from promptlab.errors import PromptlabError
from promptlab.models import resolve_model

REVIEW_HELP = """decide the round:  k ID keep   d ID discard   e ID edit (then type the new prompt)   a add a prompt
                   r ID re-score on more data   c continue   s stop the search   v view again   q quit (stays paused)"""


def register(sub) -> None:
    p = sub.add_parser("review", parents=[OPTIONS], help="decide a paused run's rounds (keep, discard, edit, add, "
                       "re-score, continue), interactively or from a file")
    p.add_argument("run_id")
    p.add_argument("--decisions", help='a JSON list (or JSON lines) of decisions, e.g. {"action": "keep", "candidate": 3}, '
                   '{"action": "edit", "candidate": 1, "text": "..."}, {"action": "continue"}; "round" optional')
    p.set_defaults(func=cmd_review)

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


# --- semi-automatic review --------------------------------------------------------------------------

def _print_round(view: dict, out=None) -> None:
    out = out or sys.stdout
    best = view["best"]
    print(f"\nround {view['round']} - we measure {view['metric']}", file=out)
    if best:
        print(f"current best #{best['id']} ({best['proposer']}): val {fmt(best['val'])} "
              f"[{fmt(best['ci'][0])}, {fmt(best['ci'][1])}] n={best['n_val']}", file=out)
    for c in view["candidates"]:
        score = (f"val {fmt(c['val'])} [{fmt(c['ci'][0])}, {fmt(c['ci'][1])}] n={c['n_val']}" if c["val"] is not None
                 else f"minibatch {fmt(c['minibatch'])}, {c['status']}")
        print(f"\n#{c['id']} by {c['proposer']} ({c['family']}): {score}"
              + (f"  [constant: answers '{c['constant']}']" if c.get("constant") else ""), file=out)
        print("  " + (c["diff"] or "(same text as the best)").replace("\n", "\n  "), file=out)
        for o in c["outputs"]:
            gold = f" (reference: {str(o['gold'])[:50]!r})" if o["gold"] else ""
            print(f"  differs on {str(o['input'])[:70]!r}{gold}:\n    best: {str(o['best'])[:80]!r}\n"
                  f"    this: {str(o['candidate'])[:80]!r}", file=out)
    for d in view["decisions"]:
        print(f"  decided so far: {d['action']} {d['candidate_id'] or ''} ({d['who']})", file=out)


def _apply(store, run_id: str, d: dict) -> None:
    action, cid = d["action"], d.get("candidate")
    if action == "rescore":
        res = R.rescore(store, run_id, int(cid), note=d.get("note", ""))
        print(f"  #{cid} on train+val: {fmt(res['score'])} [{fmt(res['ci'][0])}, {fmt(res['ci'][1])}] n={res['n']}")
    else:
        R.decide(store, run_id, action, cid, d.get("text"), note=d.get("note", ""))


def cmd_review(args) -> int:
    """Decide a paused run's rounds: interactively, or from a file of decisions; the run goes on between rounds."""
    store = open_store(args)
    run_record(store, args.run_id)
    runs.mark_dead_runs(store)  # a review killed mid-round left the run 'running': it resumes here
    queue = R.read_decisions_file(args.decisions) if args.decisions else None
    while True:
        pause = R.paused_at(store, args.run_id)
        if pause is None:
            rec = store.run_row(args.run_id)
            if rec["status"] in ("created", "interrupted", "stopped"):
                follow(store, args.run_id, args, reviewing=True)
                if store.run_row(args.run_id)["status"] != "paused":
                    return 0
                continue
            print(f"run {args.run_id} is {rec['status']}: nothing to decide")
            if rec["status"] == "finished" and not args.json:
                print_run(store, rec["summary"] or {})
            return 0
        view = R.round_view(store, args.run_id)
        _print_round(view)
        if queue is not None:
            mine = [d for d in queue if d.get("round", pause.round) == pause.round]
            if not mine:
                print(f"the decisions file has nothing for round {pause.round}: the run stays paused")
                return 0
            for d in mine:
                queue.remove(d)
                _apply(store, args.run_id, d)
                if d["action"] in ("continue", "stop"):
                    break
            if not any(d["action"] in ("continue", "stop") for d in mine):
                print(f"the decisions file does not close round {pause.round} (continue or stop): the run stays paused")
                return 0
        else:
            print(REVIEW_HELP)
            while True:
                try:
                    line = input("> ").strip()
                except EOFError:
                    print("\nend of input: the run stays paused")
                    return 0
                if not line:
                    continue
                cmd, _, rest = line.partition(" ")
                cmd = cmd.lower()
                try:
                    if cmd in ("q", "quit"):
                        print("the run stays paused; continue later with the same command")
                        return 0
                    if cmd in ("v", "view"):
                        _print_round(R.round_view(store, args.run_id))
                        continue
                    actions = {"k": "keep", "d": "discard", "e": "edit", "a": "add", "r": "rescore", "c": "continue",
                               "s": "stop"}
                    action = actions.get(cmd, cmd)
                    cid = int(rest.split()[0]) if rest.strip() and action in ("keep", "discard", "edit", "rescore") else None
                    text = None
                    if action in ("edit", "add"):
                        print("type the prompt; end with a line holding only a dot (.)")
                        lines = []
                        while (ln := input()) != ".":
                            lines.append(ln)
                        text = "\n".join(lines)
                    _apply(store, args.run_id, {"action": action, "candidate": cid, "text": text})
                    if action in ("continue", "stop"):
                        break
                    print(f"  recorded: {action}{' #' + str(cid) if cid else ''}")
                except (PromptlabError, ValueError) as exc:
                    print(f"  {exc}")
        follow(store, args.run_id, args, reviewing=True)
        if store.run_row(args.run_id)["status"] != "paused":
            return 0  # finished (its summary is printed), stopped or failed


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
    scale = args.scale
    lo, hi = G.scale_range(scale)
    if args.grades:
        table = pd.read_csv(args.grades, dtype=str, keep_default_na=False)
        missing = {"example", "grade"} - set(table.columns)
        if missing:
            raise PromptlabError(f"{args.grades}: needs columns example and grade (and optionally note); missing {', '.join(sorted(missing))}")
        by_idx = {it.example_idx: it for it in batch.items}
        parsed = []  # every line is checked before any grade is stored: a bad file changes nothing
        for i, r in enumerate(table.itertuples(), 2):
            try:
                idx = int(r.example)
            except ValueError:
                raise PromptlabError(f"{args.grades} line {i}: example '{r.example}' is not a number") from None
            if idx not in by_idx:
                raise PromptlabError(f"{args.grades} line {i}: example {idx} is not among the outputs graded here "
                                     f"(split {args.split}, limit {args.limit}); examples are {sorted(by_idx)[:10]}…")
            try:
                grade = G.parse_grade(r.grade, scale)
            except PromptlabError as exc:
                raise PromptlabError(f"{args.grades} line {i}: {exc}") from None
            parsed.append((by_idx[idx], grade, getattr(r, "note", "") or ""))
        for item, grade, note in parsed:
            G.record(store, batch, item, grade, scale, note=note, grader=args.grader)
    elif not args.summary:
        todo = [it for it in batch.items if it.grade is None]
        keys = "p pass, f fail" if scale == "pass/fail" else f"{lo}-{hi}"
        print(f"{len(todo)} output(s) to grade ({keys}; add a note after the grade; s skip, q quit)")
        if not args.blind:
            print(f"prompt: {(batch.prompt.system + ' ' + batch.prompt.user).strip()[:300]}")
        for n, it in enumerate(todo, 1):
            print(f"\n[{n}/{len(todo)}] input: {it.input[:500]}")
            if it.reference:
                print(f"reference: {it.reference[:300]}")
            print(f"output: {it.output[:1000]}")
            while True:
                try:
                    line = input("grade> ").strip()
                except EOFError:
                    line = "q"
                if line in ("q", "quit"):
                    break
                if line in ("s", "skip"):
                    break
                value, _, note = line.partition(" ")
                try:
                    G.record(store, batch, it, G.parse_grade(value, scale), scale, note=note, grader=args.grader,
                             blind=args.blind)
                    break
                except PromptlabError as exc:
                    print(f"  {exc}")
            if line in ("q", "quit"):
                break
    s = G.summary(store, batch.dataset.id, batch.prompt_id, batch.model_key, scale, batch.pairs)
    out = {"prompt_id": batch.prompt_id, **s}
    if args.json:
        print_json(out)
    elif s["n"]:
        print(f"human score {fmt(s['score'])} [{fmt(s['ci'][0])}, {fmt(s['ci'][1])}] n={s['n']} "
              f"(mean grade {s['mean_grade']:.2f} on {s['scale']}, scaled to 0-1)")
    else:
        print("no grades yet")
    return 0


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
