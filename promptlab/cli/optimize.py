"""`optimize`: a run asked for by name (planning.RunRequest), planned like the Runs page plans it, then followed."""
from __future__ import annotations

import sys

from promptlab import group as G
from promptlab import planning, runs
from promptlab.optimize import registry
from promptlab.cli.common import (
    OPTIONS, ceilings, constraint_arg, judge_args, judge_settings, metric_spec, names, open_store, unescape,
)
from promptlab.cli.runs import follow, follow_group
from promptlab.errors import PromptlabError
from promptlab.prompt import PromptTemplate
from promptlab.read import MAX_PROMPT_FILE_BYTES, read_prompt_file


def register(sub) -> None:
    p = sub.add_parser(
        "optimize", parents=[OPTIONS],
        help="search for a better prompt: by default instructions, demonstrations and edits over one budget, the "
             "result confirmed on held-back data",
        description="Search for a better prompt for the target model. The default strategy, auto, has the proposer "
                    "models write instructions, searches sets of demonstrations for the best of them, has the "
                    "proposers write instructions for those demonstrations, then edits the leader from its failures, "
                    "all over one budget of target requests. Every candidate is raced, and the result replaces the "
                    "baseline only if it beats it beyond noise on val examples the search never saw. --strategy runs "
                    "one of these alone, or a chain of them.")
    p.add_argument("--dataset", required=True, help="stored dataset name, or a file path to import")
    p.add_argument("--target", required=True,
                   help="the model the prompt is for; several joined by commas (A,B,C): one search per model with the "
                        "same data, proposers, budget and seed, stored as a group (the best prompt for each model, and "
                        "how each transfers to the others)")
    p.add_argument("--proposers", default="", help="comma-separated proposer models (needed by arena and gradient)")
    p.add_argument("--strategy", default=registry.DEFAULT_STRATEGY,
                   help=f"one of {', '.join(registry.STRATEGIES)}, or a chain joined by commas, e.g. arena,fewshot (default "
                        f"{registry.DEFAULT_STRATEGY}: instructions, then demonstrations for the best of them, then edits, "
                        "on one budget)")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--metric", help="default: accuracy for labels, the dataset's own scoring otherwise")
    constraint_arg(p, cost=True)
    p.add_argument("--prefer", choices=(*planning.PREFER, *planning.PREFER_ALIASES), default=planning.DEFAULT_PREFER,
                   help="what ships after the decision: simple (the default) tries the result's parts away (fixed demos "
                        "for per-input ones, the baseline's instruction, fewer demos) and ships the simplest, cheapest "
                        "variant the held-back examples show no worse than it beyond the simplification margin; score "
                        "ships the decided result as it is (cheap: the same as simple)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--budget", type=int, help="target requests the search may make: each prompt x example asked for once, whether the cache answers it or not (test scoring is extra; leave it out for no limit)")
    p.add_argument("--max-proposer-calls", type=int)
    p.add_argument("--max-proposer-tokens", type=int)
    p.add_argument("--patience", type=int, help="stop after this many rounds without improvement")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--baseline", action="append", help="baseline prompt (repeat for several); default: a plain label list")
    g.add_argument("--baseline-file", help="a prompt file: plain text, or JSON {\"system\": ..., \"user\": ...} "
                                           f"(a dataset, a binary file or one over {MAX_PROMPT_FILE_BYTES // 1024} KB is "
                                           "refused)")
    p.add_argument("--meta-prompt-file", help="replace the meta-prompt template (see promptlab/optimize/meta_prompt.py)")
    p.add_argument("--task", help="task description shown to the proposers")
    _setting_args(p)
    p.add_argument("--review", action="store_true",
                   help="semi-automatic: pause after every round for your decisions (promptlab review RUN)")
    judge_args(p)
    p.set_defaults(func=cmd_optimize)


def _setting_args(p) -> None:
    """One flag per strategy setting, from its declaration (name, default, help); values are checked by
    make_config against the same declaration, so the CLI repeats no names, defaults or limits."""
    g = p.add_argument_group("strategy settings (each applies to the strategies that have it)")
    for name, s in registry.all_settings().items():
        default = s.none if s.default is None and s.none else (",".join(s.default) if isinstance(s.default, tuple) else s.default)
        metavar = "|".join(map(str, s.choices)) if s.choices else s.type.upper()
        g.add_argument(s.cli_flag, dest=name, metavar=metavar, help=f"{s.help} (default {default})")


def _baselines(args) -> tuple[PromptTemplate, ...]:
    if args.baseline_file:
        return (PromptTemplate.from_file_text(read_prompt_file(args.baseline_file, "--baseline-file")),)
    return tuple(PromptTemplate.from_text(unescape(b)) for b in args.baseline or ())


def request_from(args) -> planning.RunRequest:
    """The run these arguments ask for, by name: files read, escapes honoured, nothing resolved."""
    return planning.RunRequest(
        args.dataset, args.target, names(args.proposers), metric=metric_spec(args, ceilings_ok=True), strategy=args.strategy,
        rounds=args.rounds, seed=args.seed, budget=args.budget, patience=args.patience,
        max_proposer_calls=args.max_proposer_calls, max_proposer_tokens=args.max_proposer_tokens,
        settings={name: getattr(args, name) for name in registry.all_settings() if getattr(args, name, None) is not None},
        baselines=_baselines(args),
        meta_prompt=read_prompt_file(args.meta_prompt_file, "--meta-prompt-file") if args.meta_prompt_file else None,
        task=unescape(args.task) if args.task else None, judge=judge_settings(args), review=args.review,
        ceilings=tuple(ceilings(args)), prefer=args.prefer,
    )


def cmd_optimize(args) -> int:
    store = open_store(args)
    targets = [t for t in args.target.split(",") if t.strip()]
    if len(targets) > 1:  # the best prompt for each model: one search per target, as a group
        out = sys.stderr if args.json else sys.stdout
        plans = G.plan_group(store, request_from(args), targets)
        group_id, reused = G.create_group(store, plans)
        runs.mark_dead_runs(store)
        print(f"group {group_id}{' (stored: resuming it)' if reused else ''}: {plans[0].dataset.name}, "
              f"{len(plans)} targets, one search each; per search: {plans[0].line}", file=out)
        return follow_group(store, group_id, args)
    plan = planning.plan(store, request_from(args), budget_name="--budget")
    if plan.problem:
        raise PromptlabError(plan.problem)
    out = sys.stderr if args.json else sys.stdout
    print("projection: " + plan.line, file=out)
    run_id = runs.create_run(store, plan.config)
    print(f"run {run_id}: {plan.dataset.name}, target {plan.target.label}, proposers "
          f"{', '.join(p.label for p in plan.proposers)}", file=out)
    return follow(store, run_id, args)
