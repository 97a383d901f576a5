"""`eval`: score one prompt, written or stored, on a dataset split, and print every figure of it."""
from __future__ import annotations

import sys

from promptlab.cli.common import (
    OPTIONS, constraint_arg, fmt, judge_args, judge_settings, load_prompt, metric_spec, open_store, print_json,
    terminal_progress,
)
from promptlab.cost import Cost
from promptlab.jobs import EvalRequest, run_eval


def register(sub) -> None:
    p = sub.add_parser("eval", parents=[OPTIONS], help="score one prompt on a dataset")
    p.add_argument("--dataset", help="stored dataset name, or a file path to import (with --run: default the run's)")
    p.add_argument("--model", help="local/<key>, a litellm model string, or a configured name (with --run: default "
                                   "the run's target)")
    g = p.add_mutually_exclusive_group(required=True)
    g.add_argument("--prompt", help="prompt text; {input} marks the example (\\n is a newline)")
    g.add_argument("--prompt-file", help="a text file, or JSON {\"system\": ..., \"user\": ...}")
    g.add_argument("--run", help="score a stored prompt, demos included: a run's result (or --candidate ID)")
    p.add_argument("--candidate", type=int, help="with --run: this candidate instead of the run's result")
    p.add_argument("--system", help="system message (then --prompt is the user message)")
    p.add_argument("--split", default="test", choices=["train", "val", "test", "all"])
    p.add_argument("--metric", help="labels: accuracy (default), balanced_accuracy, macro_f1, mcc, cohen_kappa, precision:L, "
                                    "recall:L, f1:L, specificity:L; other datasets: a scorer or judge (default: the dataset's)")
    constraint_arg(p)
    p.add_argument("--limit", type=int, help="evaluate a stratified sample of N examples")
    p.add_argument("--seed", type=int, help="split seed (default: the dataset's)")
    p.add_argument("--max-tokens", type=int, help="reply length cap (default: sized to the longest label)")
    judge_args(p)
    p.set_defaults(func=cmd_eval)


def cmd_eval(args) -> int:
    store = open_store(args)
    request = EvalRequest(
        args.dataset, args.model, None if args.run else load_prompt(args), args.run, args.candidate, args.split,
        metric_spec(args), judge_settings(args), args.limit, args.seed, args.max_tokens)
    with terminal_progress(not args.json and sys.stderr.isatty()) as progress:
        result, summary, stored = run_eval(store, request, progress)
    if not args.json:
        if stored is not None:
            which = f"candidate #{stored.cand_id}" if stored.cand_id is not None else "its prompt"
            print(f"from      run {stored.run_id}, {which}" + (" (the run's result)" if stored.is_result else ""))
        _print_eval(result, summary)
        for note in summary["notes"]:
            print(f"note      {note}")
    else:
        print_json(summary)
    return 0


def _print_eval(result, s: dict) -> None:
    print(f"dataset   {s['dataset']}: {s['split']} split, {s['n']} examples")
    print(f"model     {s['model']}")
    print(f"prompt    {s['prompt_id']}")
    print(f"metric    {s['metric']}: {s['metric_description']}")
    print(f"score     {fmt(s['score'])}   95% CI [{fmt(s['ci_low'])}, {fmt(s['ci_high'])}]   n={s['n_relevant']}")
    for f in s.get("floors") or []:
        print(f"floor     {f['metric']} {fmt(f['value'])} (at least {f['floor']:g}: {'met' if f['met'] else 'NOT met'})")
    if s.get("constant"):
        print(f"constant  it answers '{s['constant']}' to at least 95% of the examples, whatever the input: a constant "
              "answer (recall of that label rewards it; add a floor such as --constraint precision:LABEL>=0.4)")
    invalid = int(round((s["invalid_rate"] or 0) * s["n"]))
    if result.scored:
        print(f"invalid   {fmt((s['invalid_rate'] or 0) * 100, 1)}% ({invalid} of {s['n']}: {result.metric.invalid_means})")
        low = result.rows.sort_values("score").head(3)
        print("lowest-scoring replies")
        for r in low.itertuples():
            extra = f"  | judge: {str(r.detail)[:100]}" if isinstance(r.detail, str) else ""
            print(f"  [{fmt(r.score, 2)}] {str(r.text)[:60]!r} -> {str(r.reply)[:60]!r}"
                  + (f" (reference {str(r.gold)[:40]!r})" if r.gold else "") + extra)
    else:
        print(f"invalid   {fmt((s['invalid_rate'] or 0) * 100, 1)}% ({invalid} of {s['n']} replies named no single label)")
        cm = result.confusion()
        cm.index.name = None
        print("confusion (rows: gold, columns: predicted)")
        for line in cm.to_string().splitlines():
            print("  " + line)
    err = f", {s['errors']} failed" if s["errors"] else ""
    hit = f" ({s['cache_hit_rate']:.0%} cache hits)" if s.get("cache_hit_rate") is not None else ""
    print(f"calls     {s['calls']} new, {s['cached']} cached{hit}{err}")
    print(f"tokens    {s['prompt_tokens']:,} prompt + {s['completion_tokens']:,} completion (new calls only)")
    if s.get("per_call"):
        print(f"per call  {Cost.from_record(s['per_call']).line()}")
    rate = f"{s['examples_per_s']:.1f} examples/s" if s["examples_per_s"] else "all cached"
    print(f"time      {s['eval_wall_s']:.2f} s evaluating ({rate})")
