"""`review`: the analyst's decisions between a paused run's rounds (semi-automatic search). Grading outputs by
hand is `grade` (cli/grade.py)."""
from __future__ import annotations

import sys

from promptlab import review as R
from promptlab import runs
from promptlab.cli.common import OPTIONS, fmt, open_store
from promptlab.cli.runs import follow, print_run, run_record
from promptlab.errors import PromptlabError

REVIEW_HELP = """decide the round:  k ID keep   d ID discard   e ID edit (then type the new prompt)   a add a prompt
                   r ID re-score on more data   c continue   s stop the search   v view again   q quit (stays paused)"""


def register(sub) -> None:
    p = sub.add_parser("review", parents=[OPTIONS], help="decide a paused run's rounds (keep, discard, edit, add, "
                       "re-score, continue), interactively or from a file")
    p.add_argument("run_id")
    p.add_argument("--decisions", help='a JSON list (or JSON lines) of decisions, e.g. {"action": "keep", "candidate": 3}, '
                   '{"action": "edit", "candidate": 1, "text": "..."}, {"action": "continue"}; "round" optional')
    p.set_defaults(func=cmd_review)


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
