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
ACTION_KEYS = {"k": "keep", "d": "discard", "e": "edit", "a": "add", "r": "rescore", "c": "continue", "s": "stop"}
CLOSING = ("continue", "stop")  # the decisions that close a round


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
            if _follow_to_a_pause(store, args):
                continue
            return 0
        _print_round(R.round_view(store, args.run_id))
        if queue is not None:
            closed = _decide_round_from_file(store, args.run_id, queue, pause.round)
        else:
            closed = _decide_round_interactively(store, args.run_id)
        if not closed:
            return 0
        follow(store, args.run_id, args, reviewing=True)
        if store.run_row(args.run_id)["status"] != "paused":
            return 0  # finished (its summary is printed), stopped or failed


def _follow_to_a_pause(store, args) -> bool:
    """For a run not paused: whether it has come to a round to decide. A resumable run (runs.RESUMABLE) is run on
    until it pauses or ends; any other says its status (and a finished one its summary)."""
    rec = store.run_row(args.run_id)
    if runs.is_resumable(rec["status"]):
        follow(store, args.run_id, args, reviewing=True)
        return store.run_row(args.run_id)["status"] == "paused"
    print(f"run {args.run_id} is {rec['status']}: nothing to decide")
    if rec["status"] == "finished" and not args.json:
        print_run(store, rec["summary"] or {})
    return False


def _decide_round_from_file(store, run_id: str, queue: list[dict], round_: int) -> bool:
    """Apply the queued decisions for this round (those without a round count for it), taking them off the queue,
    up to and including a continue or stop. Whether the round was closed (else the run stays paused, and says so)."""
    mine = [d for d in queue if d.get("round", round_) == round_]
    if not mine:
        print(f"the decisions file has nothing for round {round_}: the run stays paused")
        return False
    for d in mine:
        queue.remove(d)
        _apply(store, run_id, d)
        if d["action"] in CLOSING:
            return True
    print(f"the decisions file does not close round {round_} (continue or stop): the run stays paused")
    return False


def _decide_round_interactively(store, run_id: str) -> bool:
    """Read the analyst's commands (REVIEW_HELP) until the round is closed by continue or stop (True), or left
    paused by q or the end of input (False). A decision that cannot be taken is said, and the next one read."""
    print(REVIEW_HELP)
    while True:
        try:
            line = input("> ").strip()
        except EOFError:
            print("\nend of input: the run stays paused")
            return False
        if not line:
            continue
        cmd, _, rest = line.partition(" ")
        cmd = cmd.lower()
        if cmd in ("q", "quit"):
            print("the run stays paused; continue later with the same command")
            return False
        try:
            if cmd in ("v", "view"):
                _print_round(R.round_view(store, run_id))
            elif _decide_typed(store, run_id, cmd, rest):
                return True
        except (PromptlabError, ValueError) as exc:
            print(f"  {exc}")


def _decide_typed(store, run_id: str, cmd: str, rest: str) -> bool:
    """Apply one typed decision (a key of ACTION_KEYS or an action's name, then the candidate id where it takes
    one; edit and add then read the prompt). Whether it closed the round. Raises PromptlabError or ValueError."""
    action = ACTION_KEYS.get(cmd, cmd)
    cid = int(rest.split()[0]) if rest.strip() and action in ("keep", "discard", "edit", "rescore") else None
    text = _read_typed_prompt() if action in ("edit", "add") else None
    _apply(store, run_id, {"action": action, "candidate": cid, "text": text})
    if action in CLOSING:
        return True
    print(f"  recorded: {action}{' #' + str(cid) if cid else ''}")
    return False


def _read_typed_prompt() -> str:
    """The lines typed up to one holding only a dot."""
    print("type the prompt; end with a line holding only a dot (.)")
    lines = []
    while (ln := input()) != ".":
        lines.append(ln)
    return "\n".join(lines)
