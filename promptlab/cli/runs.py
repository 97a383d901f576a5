"""`runs list|show|proposals|resume|choose`, and following a run on a terminal: its steps as they arrive, then its
result."""
from __future__ import annotations

import json
import sys

from promptlab import group as G
from promptlab import report, results, runs
from promptlab.cli.common import OPTIONS, fmt, open_store, print_json
from promptlab.errors import PromptlabError
from promptlab.jobs import matrix_lines
from promptlab.review import paused_at


def register(sub) -> None:
    rn = sub.add_parser("runs", help="list, show and resume runs").add_subparsers(dest="action", metavar="ACTION")
    p = rn.add_parser("list", parents=[OPTIONS], help="runs with their status")
    p.set_defaults(func=cmd_runs_list)
    p = rn.add_parser("show", parents=[OPTIONS], help="leaderboard and per-proposer attribution")
    p.add_argument("run_id")
    p.set_defaults(func=cmd_runs_show)
    p = rn.add_parser("proposals", parents=[OPTIONS],
                      help="the exact meta-prompt each proposer call received and its reply, with what came of it")
    p.add_argument("run_id")
    p.add_argument("--round", type=int, dest="round_", metavar="N", help="only round N (default: every round)")
    p.set_defaults(func=cmd_runs_proposals)
    p = rn.add_parser("resume", parents=[OPTIONS], help="finish a run that stopped short ("
                      f"{', '.join(runs.RESUMABLE)}) without repeating calls")
    p.add_argument("run_id")
    p.set_defaults(func=cmd_runs_resume)
    p = rn.add_parser("choose", parents=[OPTIONS],
                      help="ship another candidate than the decision chose (the search's leader the decision kept the "
                           "baseline over, say); every reader of the result and every export follows")
    p.add_argument("run_id")
    p.add_argument("candidate", type=int, nargs="?", help="the candidate's id (see runs show); leave it out with --undo")
    p.add_argument("--note", default="", help="why, kept with the choice")
    p.add_argument("--undo", action="store_true", help="go back to the decision's own result")
    p.set_defaults(func=cmd_runs_choose)


def cmd_runs_list(args) -> int:
    store = open_store(args)
    runs.mark_dead_runs(store)  # runs whose process died show as interrupted (resumable)
    frame = store.list_runs()
    if args.json:
        print_json(frame.to_dict(orient="records"))
        return 0
    if frame.empty:
        print("no runs yet: python -m promptlab optimize …")
        return 0
    for r in frame.itertuples():
        summary = json.loads(r.summary) if isinstance(r.summary, str) else {}  # NULL reads as NaN
        best = f"best val {fmt(summary.get('best_val'))} test {fmt(summary.get('best_test'))}" if r.kind == "optimize" else f"score {fmt(summary.get('score'))}"
        rate = summary.get("cache_hit_rate")
        hits = f"  cache hits {rate:.0%}" if isinstance(rate, (int, float)) else ""
        print(f"{r.id:<16} {r.kind:<9} {str(r.dataset):<24} {r.status:<12} {str(r.created_at)[:19]}  {best}{hits}")
    for g in store.list_studies(groups=True).itertuples():
        print(f"{g.id:<16} {'group':<9} {str(g.dataset):<24} {g.finished}/{g.runs} searches finished  "
              f"{str(g.created_at)[:19]}  (runs show {g.id})")
    return 0


def follow_group(store, group_id: str, args) -> int:
    """Execute (or resume) a group's searches one target at a time, printing each search's steps; then the
    group: each model's best prompt, and the prompts x models matrix."""
    out = sys.stderr if args.json else sys.stdout

    def progress(step) -> None:
        if line := step_line(step):
            print(line, file=out, flush=True)

    for m in G.members(store, group_id).itertuples():
        if m.status == "finished":
            print(f"{m.target}: {m.run_id} finished", file=out)
            continue
        print(f"{m.target}: {m.run_id}", file=out, flush=True)
        runs.execute(store, m.run_id, on_step=progress)
    return print_group(store, group_id, args, cross=True)


def print_group(store, group_id: str, args, cross: bool) -> int:
    """The group's view; with `cross` (after running it) also its matrix, whose off-diagonal cells may call the
    models; without it, the matrix only if every cell is in the cache (`runs show` never waits on a model)."""
    frame = G.view(store, group_id)
    mat = None
    if cross or (frame["status"] == "finished").all():
        try:
            mat = G.matrix(store, group_id)
        except PromptlabError:
            mat = None
    if args.json:
        print_json({"group": group_id, "models": frame.to_dict(orient="records"),
                    "matrix": mat.cells.to_dict(orient="records") if mat is not None else None})
        return 0
    print(f"group {group_id}: the best prompt for each model (held-out test, 95% CIs)")
    for line in G.group_lines(store, group_id, frame):
        print("  " + line)
    if mat is not None:
        print(f"\nprompts x models on the same {mat.split} examples ({mat.metric}; * = the model the prompt was found for)")
        for r in mat.cells.itertuples():
            print(f"  {'*' if r.diagonal else ' '} {r.prompt:<24} on {r.model:<28} {r.score:.3f} [{r.ci_low:.3f}, {r.ci_high:.3f}] n={r.n}")
        for line in matrix_lines(mat):
            print("  " + line)
    return 0


def run_record(store, run_id: str) -> dict:
    """A run's stored row, its status current (a run whose process died reads as interrupted)."""
    runs.mark_dead_runs(store)
    rec = store.run_row(run_id)
    if rec is None:
        raise PromptlabError(f"no run '{run_id}' (see `runs list`)")
    return rec


def cmd_runs_show(args) -> int:
    store = open_store(args)
    if G.is_group(store, args.run_id):
        runs.mark_dead_runs(store)
        return print_group(store, args.run_id, args, cross=False)
    rec = run_record(store, args.run_id)
    if rec["kind"] != "optimize":
        summary = rec["summary"] or {}
        print_json(summary) if args.json else print(json.dumps(summary, indent=2, ensure_ascii=False))
        return 0
    summary = results.summarize(store, args.run_id)
    summary["leaderboard"] = results.leaderboard(store, args.run_id)[
        ["id", "round", "proposer", "family", "status", "minibatch_score", "val_score", "val_ci_low", "val_ci_high",
         "test_score", "constant", "floors", *results.COST_COLUMNS, "text"]].to_dict(orient="records")
    if args.json:
        print_json(summary)
    else:
        print_run(store, summary)
    return 0


def cmd_runs_proposals(args) -> int:
    store = open_store(args)
    run_record(store, args.run_id)
    calls = results.proposals(store, args.run_id, args.round_)
    if args.json:
        print_json(calls)
        return 0
    if not calls:
        where = f" in round {args.round_}" if args.round_ is not None else ""
        print(f"run {args.run_id} made no proposer call{where} (runs show {args.run_id} lists its rounds)")
        return 0
    for c in calls:
        print(f"\nround {c['round']}, {c['stage']}: {report.call_line(c)}")
        print("--- meta-prompt ---\n" + c["meta_prompt"].rstrip())
        print(f"--- {'feedback (as passed on to the editor)' if c['call'] == 'critique' else 'reply'} ---\n"
              + ((c["reply"] or "").rstrip() or "(empty)"))
    return 0


def cmd_runs_choose(args) -> int:
    if args.undo == (args.candidate is not None):
        raise PromptlabError("give a candidate id (runs choose RUN ID), or --undo to go back to the decision's result")
    store = open_store(args)
    summary = runs.choose_result(store, args.run_id, None if args.undo else args.candidate, args.note)
    if args.json:
        print_json(summary)
        return 0
    print(report.leader_line(summary) or f"The result of {args.run_id} is the decision's again: #{summary['best_id']}.")
    print(f"result #{summary['best_id']} ({summary['best_proposer']})  val {fmt(summary['best_val'])}  "
          f"test {fmt(summary['best_test'])}")
    return 0


def cmd_runs_resume(args) -> int:
    store = open_store(args)
    if G.is_group(store, args.run_id):
        runs.mark_dead_runs(store)
        return follow_group(store, args.run_id, args)
    rec = run_record(store, args.run_id)
    if rec["kind"] != "optimize":
        raise PromptlabError(f"run {args.run_id} is an {rec['kind']} run; only optimize runs resume (re-run the eval: it is cached)")
    status = rec["status"]
    if status == "running":  # alive: mark_dead_runs (in run_record) made a dead one on this host 'interrupted'
        raise PromptlabError(f"run {args.run_id} is running in another process (pid {rec['pid']} on {rec['host']}): "
                             "a run is executed by one process at a time; stop it there, then resume it")
    if not runs.is_resumable(status):  # finished, or paused for a review: replayed, it ends or pauses as it did
        print(f"run {args.run_id} is {status}, not stopped short; replaying it from the cache", file=sys.stderr)
    return follow(store, args.run_id, args)


def follow(store, run_id: str, args, reviewing: bool = False) -> int:
    """Execute (or resume) a run, printing each new step; then its result, or where it paused for review
    (`reviewing`: the review command is already there to take the decisions)."""
    out = sys.stderr if args.json else sys.stdout

    def progress(step) -> None:
        line = step_line(step)
        if line:
            print(line, file=out, flush=True)

    summary = runs.execute(store, run_id, on_step=progress)
    if summary.get("status") == "paused" and not reviewing:
        pause = paused_at(store, run_id)
        print(f"paused after round {pause.round} for your review: promptlab review {run_id} "
              f"(or --decisions FILE); the dashboard's Runs page shows it too", file=out)
    if args.json:
        print_json(summary)
    elif summary.get("status") != "paused":
        print_run(store, summary)
    return 0


def step_line(step) -> str | None:
    k = step.kind
    if k == "round_started":
        return f"round {step.round}: proposers {', '.join(step.proposers)}"
    if k == "proposal_made":
        dropped = ", ".join(f"{n} {why}" for why, n in step.dropped.items())
        err = f" (error: {step.error[:80]})" if step.error else ""
        return f"  {step.proposer}: {len(step.accepted)} candidate(s){' dropped ' + dropped if dropped else ''}{err}"
    if k == "candidate_scored":
        if step.status == "gated":
            return (f"  #{step.candidate_id}: {fmt(step.minibatch_score)} on {step.n_scored or '?'} examples, stopped "
                    f"(cannot beat the leader; saved {step.calls_saved} calls)")
        mb = f"minibatch {fmt(step.minibatch_score)}, " if step.minibatch_score is not None else ""
        if step.status == "over budget":
            return f"  #{step.candidate_id}: {mb}over budget (the target-call budget ran out before its val score)"
        return f"  #{step.candidate_id}: {mb}val {fmt(step.val_score)} (n={step.n_val})"
    if k == "stage_started":
        what = f"{step.role} ({step.strategy})" if step.role else step.strategy
        return f"stage {step.stage}: {what}" + (f" (until {step.target_cap} target requests)" if step.target_cap else "")
    if k == "critique":
        err = f" (error: {step.error[:80]})" if step.error else ""
        return f"  {step.critic} on #{step.prompt_id} ({step.n_errors} errors): {step.feedback[:100]}{err}"
    if k == "candidate_proposed" and str(step.proposer).startswith("fewshot/"):
        return f"  #{step.candidate_id}: {step.proposer}, {len(step.demos)} demo(s){' pool, ' + str(step.similar_k) + ' nearest' if step.similar_k else ''} ({step.demo_format})"
    if k == "round_finished":
        return f"  best so far #{step.best_id}: val {fmt(step.best_val)}{' (improved)' if step.improved else ''}"
    if k == "confirmed":
        ci = step.confirm_ci or (None, None)
        return (f"confirm #{step.candidate_id}: {fmt(step.confirm_score)} [{fmt(ci[0])}, {fmt(ci[1])}] on "
                f"{step.n_confirm} held-back examples (search score {fmt(step.search_score)})")
    if k in ("winner_chosen", "simplified"):
        return step.reading
    if k == "test_scored":
        return f"test #{step.candidate_id}: {fmt(step.test_score)} [{fmt(step.test_ci[0])}, {fmt(step.test_ci[1])}] n={step.n_test}"
    if k == "run_finished":
        why = results.stop_words(step.reason)
        return f"finished after {step.rounds} round(s)" + (f": {why}" if why else "")
    if k == "decided" and step.who == "analyst":
        on = f" #{step.candidate_id}" if step.candidate_id is not None else ""
        return f"  decided: {step.action}{on}{' (' + step.note + ')' if step.note else ''}"
    return None


def print_run(store, s: dict) -> None:
    print(f"\nrun {s['run_id']} ({report.status_line(s)}): {s['dataset']}, "
          f"target {s['target']}, metric {s['metric']}, seed {s['seed']}")
    print(f"baseline  val {fmt(s['baseline_val'])}  test {fmt(s['baseline_test'])}")
    print(f"result #{s['best_id']} ({s['best_proposer']})  val {fmt(s['best_val'])}  test {fmt(s['best_test'])}"
          f"  (val n={s['n_val']}, test n={s['n_test']})")
    for line in [report.result_line(s), *report.simplified_lines(s), report.leader_line(s), report.cost_line(s),
                 *report.parts_lines(s)]:
        if line:
            print(line)
    print("result prompt:\n  " + (s["best_prompt"] or "").replace("\n", "\n  "))
    board = results.leaderboard(store, s["run_id"])
    print("\nleaderboard (val; test where scored; tokens in and median latency per call on val)")
    for r in board.head(15).itertuples():
        text = (f"[+{r.demos_shown} demos] " if r.demos_shown else "") + " ".join(str(r.text).split())
        val = f"{fmt(r.val_score)} [{fmt(r.val_ci_low)}, {fmt(r.val_ci_high)}]" if r.val_score == r.val_score and r.val_score is not None else f"{r.status} ({fmt(r.minibatch_score)})"
        n = f" n={int(r.n_scored)}" if r.n_scored == r.n_scored and r.n_scored is not None else ""
        conf = f"  confirm {fmt(r.confirm_score)}" if r.confirm_score == r.confirm_score and r.confirm_score is not None else ""
        test = f"  test {fmt(r.test_score)}" if r.test_score == r.test_score and r.test_score is not None else ""
        marks = (f"  [constant: answers '{r.constant}']" if r.constant else "") + (f"  [{r.floors}]" if r.floors else "")
        cost = f"  {r.tokens_in:.0f} tok {r.latency_s:.2f} s" if r.tokens_in == r.tokens_in and r.tokens_in is not None \
            and r.latency_s == r.latency_s and r.latency_s is not None else ""
        print(f"  #{r.id:<3} r{r.round:<2} {str(r.proposer)[:26]:<26} val {val}{n}{conf}{test}{marks}{cost}  {text[:60]}")
    print("\nproposers (proposals asked, written, usable with their share of those asked, best val, round wins)")
    for p in s["proposers"]:
        rate = f"{p['usable_rate']:.0%}" if p["usable_rate"] is not None else "n/a"
        print(f"  {p['model']:<30} {p['family']:<8} {p['asked']:>3} asked  {p['written']:>3} written  "
              f"{p['usable']:>3} usable ({rate})  best {fmt(p['best_val'])}  wins {p['wins']}")
    if line := report.decisions_line(s):
        print("\n" + line)
    if line := report.stages_line(s.get("stages") or []):
        print("\n" + line)
    if fails := report.failures_line(s):
        print("\n" + fails)
    print(f"\n{report.calls_line(s) or 'calls: none yet'}; "
          f"{s['gated']} candidate(s) stopped before all of val saved {s['calls_saved_by_gate']} calls")
