"""The command line: the same jobs as the dashboard, headless. `python -m promptlab --help`."""
from __future__ import annotations

import argparse
import json
import math
import os
import re
import sys
import traceback
from pathlib import Path

from promptlab.errors import PromptlabError
from promptlab.similarity import BACKENDS as SIMILARITY_BACKENDS


def _demos_arg(value: str):
    value = value.strip().lower()
    if value in ("none", "per-label"):
        return value
    if value.isdigit():
        return int(value)
    raise argparse.ArgumentTypeError(f"'{value}' is not none, per-label or a number of demos")


def _unescape(text: str) -> str:
    r"""Honour \n, \t and \\ typed on a shell command line, leaving every other character as is."""
    return re.sub(r"\\(n|t|\\)", lambda m: {"n": "\n", "t": "\t", "\\": "\\"}[m.group(1)], text)


def _fmt(x, digits: int = 3) -> str:
    from promptlab.text import format_score

    return format_score(x, digits)


def _store(args):
    from promptlab.store import Store

    return Store(args.db)


def _json_safe(obj):
    """NaN/inf become null: strict JSON readers (jq, JSON.parse) reject Python's NaN."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: _json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_json_safe(v) for v in obj]
    return obj


def _print_json(obj) -> None:
    print(json.dumps(_json_safe(obj), ensure_ascii=False, default=str, allow_nan=False))


def _split_cols(values: list[str] | None) -> list[str] | None:
    if not values:
        return None
    return [c.strip() for v in values for c in v.split(",") if c.strip()]


def _fractions(text: str | None):
    from promptlab.data import DEFAULT_FRACTIONS, DataError

    if not text:
        return DEFAULT_FRACTIONS
    try:
        parts = tuple(float(x) for x in text.split(","))
    except ValueError:
        raise DataError(f"--split-fractions '{text}' must be three numbers like 0.3,0.35,0.35") from None
    return parts


# --- datasets --------------------------------------------------------------------------------------

def cmd_datasets_import(args) -> int:
    from promptlab.data import import_dataset

    store = _store(args)
    ds, reused = import_dataset(
        store, Path(args.path), name=args.name, input_cols=_split_cols(args.input_col), label_col=args.label_col,
        fractions=_fractions(args.split_fractions), split_seed=args.split_seed, kind=args.kind,
        scoring=_scoring_args(args), test_file=args.test_file,
    )
    info = _dataset_info(ds) | {"reused": reused}
    if args.json:
        _print_json(info)
        return 0
    verb = "already stored, reused" if reused else "imported"
    target = {"labels": f"label {ds.label_col}", "reference": f"reference {ds.label_col}"}.get(ds.kind, "no target")
    print(f"{verb}: '{ds.name}' (id {ds.id}), {ds.n} rows, input {', '.join(ds.input_cols)}, {target}")
    _print_dataset_details(ds)
    return 0


def _scoring_args(args) -> dict | None:
    """--scorer / --judge / --rubric / --scale into a scoring record (None when none is given)."""
    judge = None
    if getattr(args, "judge", None) or getattr(args, "rubric", None):
        lo, hi = _scale(getattr(args, "judge_scale", None) or "1-5")
        judge = {"model": args.judge, "rubric": _rubric(args.rubric), "lo": lo, "hi": hi}
    metric = getattr(args, "scorer", None) or getattr(args, "metric", None)
    if not (judge or getattr(args, "scorer", None)):
        return None
    return {"metric": metric, **({"judge": judge} if judge else {})}


def _rubric(text: str | None) -> str:
    if text and text.startswith("@"):
        return _read_text_file(text[1:], "--rubric")
    return _unescape(text) if text else ""


def _scale(text: str) -> tuple[int, int]:
    try:
        lo, hi = (int(x) for x in text.split("-"))
    except ValueError:
        raise PromptlabError(f"--judge-scale '{text}' must look like 1-5 or 0-1") from None
    return lo, hi


def _metric(args) -> str | None:
    """--metric with its --constraint floors, as one spec ('recall:fraud; precision:fraud>=0.4')."""
    floors = getattr(args, "constraint", None) or []
    if not floors:
        return args.metric
    return "; ".join([args.metric or "accuracy", *floors])


def _constraint_arg(p) -> None:
    p.add_argument("--constraint", action="append", metavar="METRIC>=VALUE",
                   help="a floor the metric must respect, e.g. precision:fraud>=0.4 beside --metric recall:fraud "
                        "(repeat for several): candidates that miss a floor rank below all that meet it")


def _judge_record(args, ds) -> dict | None:
    """The run's judge from --judge/--rubric, else None (the dataset's own judge applies)."""
    if not (getattr(args, "judge", None) or getattr(args, "rubric", None)):
        return None
    from promptlab.scoring.objective import DEFAULT_RUBRIC

    stored = (ds.scoring or {}).get("judge") or {}
    lo, hi = _scale(args.judge_scale) if getattr(args, "judge_scale", None) else (stored.get("lo", 1), stored.get("hi", 5))
    return {"model": args.judge or stored.get("model"), "rubric": _rubric(args.rubric) or stored.get("rubric") or DEFAULT_RUBRIC,
            "lo": lo, "hi": hi}


def _dataset_info(ds) -> dict:
    counts = {}
    for split in ("train", "val", "test"):
        counts[split] = len(ds.split(split))
    return {
        "id": ds.id, "name": ds.name, "kind": ds.kind, "n_rows": ds.n, "input_cols": list(ds.input_cols),
        "label_col": ds.label_col, "labels": ds.report.label_counts or {lab: 0 for lab in ds.labels}, "splits": counts,
        "scoring": _public_scoring(ds.scoring), "notes": ds.report.notes(), "own_split": ds.own_split,
    }


def _public_scoring(scoring: dict | None) -> dict:
    """A dataset's scoring for display: the judge model by its label, never its whole record."""
    out = dict(scoring or {})
    if out.get("judge"):
        j = out["judge"]
        model = j.get("model")
        out["judge"] = {**j, "model": model.get("name") or model.get("model") if isinstance(model, dict) else model}
    return out


def _print_dataset_details(ds) -> None:
    info = _dataset_info(ds)
    if ds.kind == "labels":
        width = max(len(lab) for lab in info["labels"])
        print("labels:")
        for lab, n in info["labels"].items():
            print(f"  {lab:<{width}}  {n:>6}  ({n / ds.n:.1%})")
    else:
        what = "a reference answer per row" if ds.kind == "reference" else "no target: outputs are judged or graded by hand"
        print(f"kind: {ds.kind} ({what})")
        sc = info["scoring"]
        if sc:
            judge = sc.get("judge")
            print(f"scoring: {sc.get('metric') or 'default'}" + (f"; judge {judge['model']} ({judge['lo']}-{judge['hi']}), "
                                                                   f"rubric: {judge['rubric'][:120]}" if judge else ""))
    s = info["splits"]
    how = ("the data's own (its split column or test file; rows left blank: train or val by seed "
           f"{ds.split_seed})" if ds.own_split else f"seed {ds.split_seed}")
    print(f"splits: train {s['train']}, val {s['val']}, test {s['test']} ({how})")
    for note in info["notes"]:
        print(f"note: {note}")


def cmd_datasets_list(args) -> int:
    frame = _store(args).list_datasets()
    if args.json:
        _print_json(frame.to_dict(orient="records"))
        return 0
    if frame.empty:
        print("no datasets stored yet: python -m promptlab datasets import PATH")
        return 0
    for row in frame.itertuples():
        labels = json.loads(row.labels)
        what = f"{len(labels)} labels" if row.kind == "labels" else row.kind
        print(f"{row.name:<28} {row.n_rows:>7} rows  {what:<10}  id {row.id}  from {row.source}")
    return 0


def cmd_datasets_show(args) -> int:
    from promptlab.data import stored_dataset

    ds = stored_dataset(_store(args), args.name)
    if args.json:
        _print_json(_dataset_info(ds))
        return 0
    print(f"'{ds.name}' (id {ds.id}), {ds.n} rows, input {', '.join(ds.input_cols)}, label {ds.label_col}")
    _print_dataset_details(ds)
    return 0


def cmd_datasets_delete(args) -> int:
    from promptlab.data import stored_dataset

    store = _store(args)
    ds = stored_dataset(store, args.name)
    store.delete_dataset(ds.id)
    print(f"deleted dataset '{ds.name}' ({ds.n} rows)")
    return 0


# --- models ----------------------------------------------------------------------------------------

def cmd_models_list(args) -> int:
    from promptlab.local import ZOO, zoo_status

    zoo = [zoo_status(k) for k in ZOO]
    configured = [{"name": n, **rec} for n, rec in _store(args).list_models()]
    if args.json:
        _print_json({"zoo": zoo, "configured": configured})
        return 0
    print("embedded zoo (offline, in-process llama.cpp):")
    for z in zoo:
        print(f"  {z['model']:<28} {z['family']:<8} {z['size_b']:>6}B  {z['status']}")
        if z["install"]:
            print(f"      install: {z['install']}")
    print("configured models:" if configured else "configured models: none (add one with `models add`)")
    for c in configured:
        base = f" at {c['api_base']}" if c.get("api_base") else ""
        key = f", key from ${c['api_key_env']}" if c.get("api_key_env") else ""
        print(f"  {c['name']:<28} {c['model']}{base} ({c['family']}{key})")
    return 0


def _params(pairs: list[str] | None) -> dict:
    params = {}
    for pair in pairs or []:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise PromptlabError(f"--param '{pair}' must look like name=value, e.g. temperature=0.7")
        try:
            params[key.strip()] = json.loads(value)
        except ValueError:
            params[key.strip()] = value
    return params


def cmd_models_add(args) -> int:
    from promptlab.models import make_spec

    spec = make_spec(
        args.model, api_base=args.api_base, api_key_env=args.api_key_env, family=args.family, size_b=args.size_b,
        params=_params(args.param), concurrency=args.concurrency, name=args.name,
    )
    _store(args).save_model(args.name, spec.to_record())
    print(f"saved model '{args.name}': {spec.model} (family {spec.family}, size {spec.size_b or '?'}B)")
    return 0


def cmd_models_remove(args) -> int:
    if not _store(args).delete_model(args.name):
        raise PromptlabError(f"no configured model named '{args.name}' (see `models list`)")
    print(f"removed model '{args.name}'")
    return 0


# --- eval ------------------------------------------------------------------------------------------

def _load_prompt(args):
    from promptlab.evaluate import PromptError, PromptTemplate

    system = _unescape(args.system) if args.system is not None else None
    if args.prompt_file:
        path = Path(args.prompt_file)
        if not path.is_file():
            raise PromptError(f"--prompt-file {path}: no such file")
        try:
            text = path.read_text(encoding="utf-8-sig")
        except UnicodeDecodeError:
            raise PromptError(f"--prompt-file {path}: not UTF-8 text. Save it as UTF-8.") from None
        prompt = PromptTemplate.from_file_text(text)
        return PromptTemplate(system=system, user=prompt.user) if system is not None else prompt
    return PromptTemplate.from_text(_unescape(args.prompt), system=system)


def cmd_eval(args) -> int:
    from promptlab.data import resolve_dataset
    from promptlab.manual import eval_run
    from promptlab.models import resolve_model
    from promptlab.scoring.objective import parse_objective

    store = _store(args)
    show_progress = not args.json and sys.stderr.isatty()

    def progress(done: int, total: int) -> None:
        if show_progress:
            print(f"\r  {done}/{total} calls", end="", file=sys.stderr, flush=True)

    if args.run:  # a stored prompt (its demos included), by default on its own dataset and target
        from promptlab.export import ElsewhereRequest, score_elsewhere, stored_prompt

        other = resolve_dataset(store, args.dataset) if args.dataset else None
        ds = other or stored_prompt(store, args.run, args.candidate).dataset
        req = ElsewhereRequest(
            args.run, args.candidate, other, resolve_model(args.model, store) if args.model else None, args.split,
            _metric(args), _judge_record(args, ds), args.limit, args.seed, args.max_tokens)
        summary = score_elsewhere(store, req, progress)
        result, stored = summary.pop("result"), summary.pop("stored")
        summary.pop("line")
    else:
        if args.candidate is not None:
            raise PromptlabError("--candidate picks a prompt of a stored run: give --run RUN with it")
        if not args.dataset or not args.model:
            raise PromptlabError("give --dataset and --model with --prompt or --prompt-file (or --run RUN to score a "
                                 "stored prompt on its own dataset and target)")
        ds = resolve_dataset(store, args.dataset)
        spec = resolve_model(args.model, store)
        prompt = _load_prompt(args)
        prompt.check(ds.input_cols)
        metric = parse_objective(_metric(args), ds, _judge_record(args, ds), store)
        result, summary = eval_run(store, spec, prompt, ds, metric, split=args.split, seed=args.seed,
                                   limit=args.limit, max_tokens=args.max_tokens, on_progress=progress)
        stored, summary["notes"] = None, []
    if show_progress:
        print("\r" + " " * 30 + "\r", end="", file=sys.stderr)
    if not args.json:
        if stored is not None:
            which = f"candidate #{stored.cand_id}" if stored.cand_id is not None else "its prompt"
            print(f"from      run {stored.run_id}, {which}" + (" (the run's result)" if stored.is_result else ""))
        _print_eval(result, ds, summary)
        for note in summary["notes"]:
            print(f"note      {note}")
    else:
        _print_json(summary)
    return 0


def _print_eval(result, ds, s: dict) -> None:
    print(f"dataset   {ds.name}: {s['split']} split, {s['n']} examples")
    print(f"model     {s['model']}")
    print(f"prompt    {s['prompt_id']}")
    print(f"metric    {s['metric']}: {s['metric_description']}")
    print(f"score     {_fmt(s['score'])}   95% CI [{_fmt(s['ci_low'])}, {_fmt(s['ci_high'])}]   n={s['n_relevant']}")
    for f in s.get("floors") or []:
        print(f"floor     {f['metric']} {_fmt(f['value'])} (at least {f['floor']:g}: {'met' if f['met'] else 'NOT met'})")
    if s.get("constant"):
        print(f"constant  it answers '{s['constant']}' to at least 95% of the examples, whatever the input: a constant "
              "answer (recall of that label rewards it; add a floor such as --constraint precision:LABEL>=0.4)")
    invalid = int(round((s["invalid_rate"] or 0) * s["n"]))
    if result.scored:
        print(f"invalid   {_fmt((s['invalid_rate'] or 0) * 100, 1)}% ({invalid} of {s['n']}: {result.metric.invalid_means})")
        low = result.rows.sort_values("score").head(3)
        print("lowest-scoring replies")
        for r in low.itertuples():
            extra = f"  | judge: {str(r.detail)[:100]}" if isinstance(r.detail, str) else ""
            print(f"  [{_fmt(r.score, 2)}] {str(r.text)[:60]!r} -> {str(r.reply)[:60]!r}"
                  + (f" (reference {str(r.gold)[:40]!r})" if r.gold else "") + extra)
    else:
        print(f"invalid   {_fmt((s['invalid_rate'] or 0) * 100, 1)}% ({invalid} of {s['n']} replies named no single label)")
        cm = result.confusion()
        cm.index.name = None
        print("confusion (rows: gold, columns: predicted)")
        for line in cm.to_string().splitlines():
            print("  " + line)
    err = f", {s['errors']} failed" if s["errors"] else ""
    hit = f" ({s['cache_hit_rate']:.0%} cache hits)" if s.get("cache_hit_rate") is not None else ""
    print(f"calls     {s['calls']} new, {s['cached']} cached{hit}{err}")
    print(f"tokens    {s['prompt_tokens']:,} prompt + {s['completion_tokens']:,} completion (new calls only)")
    rate = f"{s['examples_per_s']:.1f} examples/s" if s["examples_per_s"] else "all cached"
    print(f"time      {s['eval_wall_s']:.2f} s evaluating ({rate})")


# --- optimize and runs -----------------------------------------------------------------------------

def _models(store, names: str) -> list:
    from promptlab.models import resolve_model

    return [resolve_model(n.strip(), store) for n in names.split(",") if n.strip()]


def _read_text_file(path_text: str, what: str) -> str:
    path = Path(path_text)
    if not path.is_file():
        raise PromptlabError(f"{what} {path}: no such file")
    try:
        return path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError:
        raise PromptlabError(f"{what} {path}: not UTF-8 text. Save it as UTF-8.") from None


def cmd_optimize(args) -> int:
    from promptlab import runs
    from promptlab.data import resolve_dataset
    from promptlab.evaluate import PromptTemplate
    from promptlab.models import resolve_model

    store = _store(args)
    ds = resolve_dataset(store, args.dataset)
    target = resolve_model(args.target, store)
    proposers = _models(store, args.proposers)
    baselines = None
    if args.baseline_file:
        baselines = [PromptTemplate.from_file_text(_read_text_file(args.baseline_file, "--baseline-file"))]
    elif args.baseline:
        baselines = [PromptTemplate.from_text(_unescape(b)) for b in args.baseline]
    meta = _read_text_file(args.meta_prompt_file, "--meta-prompt-file") if args.meta_prompt_file else None
    extra = {}
    for name, setting in runs.all_settings().items():  # every strategy's declared settings (see optimize/settings.py)
        value = getattr(args, name, None)
        if value is not None:
            extra[name] = resolve_model(value, store) if setting.type == "model" else value
    config = runs.make_config(
        ds, target, proposers, metric=_metric(args), seed=args.seed,
        rounds=args.rounds, budget_calls=args.budget, max_proposer_calls=args.max_proposer_calls,
        max_proposer_tokens=args.max_proposer_tokens, patience=args.patience, baselines=baselines, meta_prompt=meta,
        task=_unescape(args.task) if args.task else None, strategy=args.strategy,
        judge=_judge_record(args, ds), review="rounds" if args.review else "off", store=store, **extra,
    )
    proj = runs.projection(store, config)
    if problem := runs.budget_problem(proj, "--budget"):
        raise PromptlabError(problem)
    out = sys.stderr if args.json else sys.stdout
    print("projection: " + runs.projection_line(proj), file=out)
    run_id = runs.create_run(store, config)
    print(f"run {run_id}: {ds.name}, target {target.label}, proposers {', '.join(p.label for p in proposers)}", file=out)
    return _execute(store, run_id, args)


def _setting_args(p, runs) -> None:
    """One flag per strategy setting, from its declaration (name, default, help); values are checked by
    make_config against the same declaration, so the CLI repeats no names, defaults or limits."""
    g = p.add_argument_group("strategy settings (each applies to the strategies that have it)")
    for name, s in runs.all_settings().items():
        default = s.none if s.default is None and s.none else (",".join(s.default) if isinstance(s.default, tuple) else s.default)
        metavar = "|".join(map(str, s.choices)) if s.choices else s.type.upper()
        g.add_argument(s.cli_flag, dest=name, metavar=metavar, help=f"{s.help} (default {default})")


def cmd_study(args) -> int:
    from promptlab import study as S
    from promptlab.data import resolve_dataset

    store = _store(args)
    out = sys.stderr if args.json else sys.stdout
    if args.list:
        table = store.list_studies()
        if args.json:
            _print_json(table.to_dict("records"))
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
        ds = resolve_dataset(store, args.dataset)
        print(S.power(ds, _metric(args), args.seeds), file=out, flush=True)
        extra = {k: v for k, v in {"minibatch_size": args.minibatch, "test_top": args.test_top}.items() if v is not None}
        study_id, reused = S.create_study(
            store, ds, _models(store, args.targets), _models(store, args.proposers), args.seeds,
            mixes=[m.split("+") for m in args.mix or []], budget_calls=args.budget, rounds=args.rounds,
            metric=_metric(args), strategy=args.strategy, candidates=args.candidates, **extra,
        )
        members = store.study_members(study_id)
        print(f"study {study_id}{' (the same grid as before: resuming it)' if reused else ''}: {len(members)} runs "
              f"({members['target'].nunique()} target(s) x {members['proposer_set'].nunique()} proposer set(s) x "
              f"{members['seed'].nunique()} seed(s)), {ds.name}", file=out, flush=True)
    if args.show:
        cells = S.analyze(store, study_id)
    else:
        from promptlab.runs import mark_dead_runs

        mark_dead_runs(store)  # a study's runs left 'running' by a killed process resume here
        def on_run(i, n, m):
            print(f"[{i + 1}/{n}] {m.target} <- {m.proposer_set}, seed {m.seed} ({m.run_id})", file=out, flush=True)

        cells = S.execute_study(store, study_id, on_run=on_run)
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
        _print_json({"study_id": study_id, "cells": [c.to_record() for c in cells],
                     "pairs": pairs.to_dict("records"), "readings": readings})
    return 0


def _execute(store, run_id: str, args) -> int:
    from promptlab import runs

    out = sys.stderr if args.json else sys.stdout

    def progress(step) -> None:
        line = _step_line(step)
        if line:
            print(line, file=out, flush=True)

    summary = runs.execute(store, run_id, on_step=progress)
    if summary.get("status") == "paused" and not getattr(args, "_reviewing", False):
        from promptlab.review import paused_at

        pause = paused_at(store, run_id)
        print(f"paused after round {pause.round} for your review: promptlab review {run_id} "
              f"(or --decisions FILE); the dashboard's Runs page shows it too", file=out)
    if args.json:
        _print_json(summary)
    elif summary.get("status") != "paused":
        _print_run(store, summary)
    return 0


def _step_line(step) -> str | None:
    k = step.kind
    if k == "round_started":
        return f"round {step.round}: proposers {', '.join(step.proposers)}"
    if k == "proposal_made":
        dropped = ", ".join(f"{n} {why}" for why, n in step.dropped.items())
        err = f" (error: {step.error[:80]})" if step.error else ""
        return f"  {step.proposer}: {len(step.accepted)} candidate(s){' dropped ' + dropped if dropped else ''}{err}"
    if k == "candidate_scored":
        if step.status == "gated":
            return (f"  #{step.candidate_id}: {_fmt(step.minibatch_score)} on {step.n_scored or '?'} examples, stopped "
                    f"(cannot beat the leader; saved {step.calls_saved} calls)")
        mb = f"minibatch {_fmt(step.minibatch_score)}, " if step.minibatch_score is not None else ""
        if step.status == "over budget":
            return f"  #{step.candidate_id}: {mb}over budget (the target-call budget ran out before its val score)"
        return f"  #{step.candidate_id}: {mb}val {_fmt(step.val_score)} (n={step.n_val})"
    if k == "stage_started":
        return f"stage {step.stage}: {step.strategy}" + (f" (until {step.target_cap} target calls)" if step.target_cap else "")
    if k == "critique":
        err = f" (error: {step.error[:80]})" if step.error else ""
        return f"  {step.critic} on #{step.prompt_id} ({step.n_errors} errors): {step.feedback[:100]}{err}"
    if k == "candidate_proposed" and str(step.proposer).startswith("fewshot/"):
        return f"  #{step.candidate_id}: {step.proposer}, {len(step.demos)} demo(s){' pool, ' + str(step.similar_k) + ' nearest' if step.similar_k else ''} ({step.demo_format})"
    if k == "round_finished":
        return f"  best so far #{step.best_id}: val {_fmt(step.best_val)}{' (improved)' if step.improved else ''}"
    if k == "confirmed":
        ci = step.confirm_ci or (None, None)
        return (f"confirm #{step.candidate_id}: {_fmt(step.confirm_score)} [{_fmt(ci[0])}, {_fmt(ci[1])}] on "
                f"{step.n_confirm} held-back val examples (search score {_fmt(step.search_score)})")
    if k == "winner_chosen":
        return step.reading
    if k == "test_scored":
        return f"test #{step.candidate_id}: {_fmt(step.test_score)} [{_fmt(step.test_ci[0])}, {_fmt(step.test_ci[1])}] n={step.n_test}"
    if k == "run_finished":
        return f"finished ({step.reason}) after {step.rounds} round(s)"
    if k == "decided" and step.who == "analyst":
        on = f" #{step.candidate_id}" if step.candidate_id is not None else ""
        return f"  decided: {step.action}{on}{' (' + step.note + ')' if step.note else ''}"
    return None


def _print_run(store, s: dict) -> None:
    from promptlab import results

    print(f"\nrun {s['run_id']} ({s['status']}{', ' + s['reason'] if s.get('reason') else ''}): {s['dataset']}, "
          f"target {s['target']}, metric {s['metric']}, seed {s['seed']}")
    print(f"baseline  val {_fmt(s['baseline_val'])}  test {_fmt(s['baseline_test'])}")
    print(f"result #{s['best_id']} ({s['best_proposer']})  val {_fmt(s['best_val'])}  test {_fmt(s['best_test'])}"
          f"  (val n={s['n_val']}, test n={s['n_test']})")
    if line := results.result_line(s):
        print(line)
    print("result prompt:\n  " + (s["best_prompt"] or "").replace("\n", "\n  "))
    board = results.leaderboard(store, s["run_id"])
    print("\nleaderboard (val; test where scored)")
    for r in board.head(15).itertuples():
        text = (f"[+{r.demos_shown} demos] " if r.demos_shown else "") + " ".join(str(r.text).split())
        val = f"{_fmt(r.val_score)} [{_fmt(r.val_ci_low)}, {_fmt(r.val_ci_high)}]" if r.val_score == r.val_score and r.val_score is not None else f"{r.status} ({_fmt(r.minibatch_score)})"
        n = f" n={int(r.n_scored)}" if r.n_scored == r.n_scored and r.n_scored is not None else ""
        conf = f"  confirm {_fmt(r.confirm_score)}" if r.confirm_score == r.confirm_score and r.confirm_score is not None else ""
        test = f"  test {_fmt(r.test_score)}" if r.test_score == r.test_score and r.test_score is not None else ""
        marks = (f"  [constant: answers '{r.constant}']" if r.constant else "") + (f"  [{r.floors}]" if r.floors else "")
        print(f"  #{r.id:<3} r{r.round:<2} {str(r.proposer)[:26]:<26} val {val}{n}{conf}{test}{marks}  {text[:60]}")
    print("\nproposers (candidates asked, valid, best val, round wins)")
    for p in s["proposers"]:
        rate = f"{p['valid_rate']:.0%}" if p["valid_rate"] is not None else "n/a"
        print(f"  {p['model']:<30} {p['family']:<8} {p['candidates']:>3} asked  {p['valid']:>3} valid ({rate})  "
              f"best {_fmt(p['best_val'])}  wins {p['wins']}")
    if line := results.decisions_line(s):
        print("\n" + line)
    if fails := results.failures_line(s):
        print("\n" + fails)
    print(f"\n{results.calls_line(s) or 'calls: none yet'}; "
          f"{s['gated']} candidate(s) stopped before all of val saved {s['calls_saved_by_gate']} calls")


def cmd_export(args) -> int:
    """A stored prompt as text, chat messages, a runnable litellm script or a promptfoo config."""
    from promptlab.export import export, filename, stored_prompt

    store = _store(args)
    sp = stored_prompt(store, args.run, args.candidate)
    out = export(sp, args.format)
    if args.out:
        path = Path(args.out)
        if path.is_dir():
            path = path / filename(sp, args.format)
        tmp = path.with_name(path.name + ".part")  # nothing half-written: the file appears whole or not at all
        tmp.write_text(out, encoding="utf-8")
        tmp.replace(path)
        print(f"wrote {path}", file=sys.stderr)
    else:
        sys.stdout.write(out)
    return 0


def cmd_matrix(args) -> int:
    """The top prompts of several runs scored by several models on the same test examples."""
    from promptlab.data import resolve_dataset
    from promptlab.matrix import MatrixRequest, matrix_lines, score_matrix

    store = _store(args)
    req = MatrixRequest(tuple(r.strip() for r in args.runs.split(",") if r.strip()), tuple(_models(store, args.models)),
                        resolve_dataset(store, args.dataset) if args.dataset else None, args.top, args.split,
                        _metric(args))
    show = not args.json and sys.stderr.isatty()

    class Progress(dict):
        def __setitem__(self, key, value):
            super().__setitem__(key, value)
            if show and key == "calls":
                print(f"\r  cell {self.get('cell')}/{self.get('cells')}: {value} new calls", end="", file=sys.stderr,
                      flush=True)

    result = score_matrix(store, req, Progress())
    if show:
        print("\r" + " " * 40 + "\r", end="", file=sys.stderr)
    if args.json:
        _print_json({"dataset": result.dataset, "metric": result.metric, "split": result.split, "notes": result.notes,
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


def cmd_runs_list(args) -> int:
    from promptlab.runs import mark_dead_runs

    store = _store(args)
    mark_dead_runs(store)  # runs whose process died show as interrupted (resumable)
    frame = store.list_runs()
    if args.json:
        _print_json(frame.to_dict(orient="records"))
        return 0
    if frame.empty:
        print("no runs yet: python -m promptlab optimize …")
        return 0
    for r in frame.itertuples():
        summary = json.loads(r.summary) if isinstance(r.summary, str) else {}  # NULL reads as NaN
        best = f"best val {_fmt(summary.get('best_val'))} test {_fmt(summary.get('best_test'))}" if r.kind == "optimize" else f"score {_fmt(summary.get('score'))}"
        rate = summary.get("cache_hit_rate")
        hits = f"  cache hits {rate:.0%}" if isinstance(rate, (int, float)) else ""
        print(f"{r.id:<16} {r.kind:<9} {str(r.dataset):<24} {r.status:<12} {str(r.created_at)[:19]}  {best}{hits}")
    return 0


def _run_record(store, run_id: str) -> dict:
    from promptlab.runs import mark_dead_runs

    mark_dead_runs(store)
    rec = store.run_row(run_id)
    if rec is None:
        raise PromptlabError(f"no run '{run_id}' (see `runs list`)")
    return rec


def cmd_runs_show(args) -> int:
    from promptlab import results

    store = _store(args)
    rec = _run_record(store, args.run_id)
    if rec["kind"] != "optimize":
        summary = rec["summary"] or {}
        _print_json(summary) if args.json else print(json.dumps(summary, indent=2, ensure_ascii=False))
        return 0
    summary = results.summarize(store, args.run_id)
    summary["leaderboard"] = results.leaderboard(store, args.run_id)[
        ["id", "round", "proposer", "family", "status", "minibatch_score", "val_score", "val_ci_low", "val_ci_high",
         "test_score", "constant", "floors", "text"]].to_dict(orient="records")
    if args.json:
        _print_json(summary)
    else:
        _print_run(store, summary)
    return 0


def cmd_runs_resume(args) -> int:
    store = _store(args)
    rec = _run_record(store, args.run_id)
    if rec["kind"] != "optimize":
        raise PromptlabError(f"run {args.run_id} is an {rec['kind']} run; only optimize runs resume (re-run the eval: it is cached)")
    if rec["status"] == "finished":
        print(f"run {args.run_id} already finished; replaying it from the cache", file=sys.stderr)
    return _execute(store, args.run_id, args)


# --- semi-automatic review and manual grading -------------------------------------------------------

REVIEW_HELP = """decide the round:  k ID keep   d ID discard   e ID edit (then type the new prompt)   a add a prompt
                   r ID re-score on more data   c continue   s stop the search   v view again   q quit (stays paused)"""


def _print_round(view: dict, out=None) -> None:
    out = out or sys.stdout
    best = view["best"]
    print(f"\nround {view['round']} - we measure {view['metric']}", file=out)
    if best:
        print(f"current best #{best['id']} ({best['proposer']}): val {_fmt(best['val'])} "
              f"[{_fmt(best['ci'][0])}, {_fmt(best['ci'][1])}] n={best['n_val']}", file=out)
    for c in view["candidates"]:
        score = (f"val {_fmt(c['val'])} [{_fmt(c['ci'][0])}, {_fmt(c['ci'][1])}] n={c['n_val']}" if c["val"] is not None
                 else f"minibatch {_fmt(c['minibatch'])}, {c['status']}")
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
    from promptlab import review as R

    action, cid = d["action"], d.get("candidate")
    if action == "rescore":
        res = R.rescore(store, run_id, int(cid), note=d.get("note", ""))
        print(f"  #{cid} on train+val: {_fmt(res['score'])} [{_fmt(res['ci'][0])}, {_fmt(res['ci'][1])}] n={res['n']}")
    else:
        R.decide(store, run_id, action, cid, d.get("text"), note=d.get("note", ""))


def cmd_review(args) -> int:
    """Decide a paused run's rounds: interactively, or from a file of decisions; the run goes on between rounds."""
    from promptlab import review as R

    from promptlab.runs import mark_dead_runs

    store = _store(args)
    _run_record(store, args.run_id)
    mark_dead_runs(store)  # a review killed mid-round left the run 'running': it resumes here
    queue = R.read_decisions_file(args.decisions) if args.decisions else None
    args._reviewing = True
    while True:
        pause = R.paused_at(store, args.run_id)
        if pause is None:
            rec = store.run_row(args.run_id)
            if rec["status"] in ("created", "interrupted", "stopped"):
                _execute(store, args.run_id, args)
                if store.run_row(args.run_id)["status"] != "paused":
                    return 0
                continue
            print(f"run {args.run_id} is {rec['status']}: nothing to decide")
            if rec["status"] == "finished" and not args.json:
                _print_run(store, rec["summary"] or {})
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
        _execute(store, args.run_id, args)
        if store.run_row(args.run_id)["status"] != "paused":
            return 0  # finished (its summary is printed), stopped or failed


def _grading_batch(store, args):
    from promptlab import grading as G
    from promptlab.data import resolve_dataset
    from promptlab.models import resolve_model

    ds = resolve_dataset(store, args.dataset)
    spec = resolve_model(args.model, store)
    prompt = _load_prompt(args)
    return G.outputs(store, ds, spec, prompt, split=args.split, limit=args.limit, seed=args.seed, scale=args.scale)


def cmd_grade(args) -> int:
    """Grade a prompt's outputs by hand (interactive, or a CSV of example,grade[,note]); print the score."""
    from promptlab import grading as G

    store = _store(args)
    batch = _grading_batch(store, args)
    scale = args.scale
    lo, hi = G.scale_range(scale)
    if args.grades:
        import pandas as pd

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
        _print_json(out)
    elif s["n"]:
        print(f"human score {_fmt(s['score'])} [{_fmt(s['ci'][0])}, {_fmt(s['ci'][1])}] n={s['n']} "
              f"(mean grade {s['mean_grade']:.2f} on {s['scale']}, scaled to 0-1)")
    else:
        print("no grades yet")
    return 0


def cmd_judge_check(args) -> int:
    """Check an LLM judge against your grades of one prompt's outputs: agreement and Cohen's kappa."""
    from promptlab import grading as G
    from promptlab.models import resolve_model

    store = _store(args)
    batch = _grading_batch(store, args)
    judge = resolve_model(args.judge, store)
    stats = G.calibrate(store, batch, judge, _rubric(args.rubric), args.scale)
    if args.json:
        _print_json(stats)
        return 0
    for p in stats["pairs"]:
        print(f"  example {p['example']}: you {p['human']:g}, judge {p['judge'] if p['judge'] is not None else 'no grade'}")
    ex = "n/a" if stats["exact"] is None else f"{stats['exact']:.0%}"
    within = "n/a" if stats["within_one"] is None else f"{stats['within_one']:.0%}"
    print(f"agreement on {stats['n']} outputs: exact {ex}, within one point {within}; {G.kappa_reading(stats)}")
    return 0


# --- parser ----------------------------------------------------------------------------------------

def _judge_args(p) -> None:
    p.add_argument("--judge", help="the LLM judge model (metric 'judge'); any litellm model or configured name")
    p.add_argument("--rubric", help="the judge's rubric text, or @FILE")
    p.add_argument("--judge-scale", help="the judge's scale, e.g. 1-5 (default) or 0-1")


def build_parser() -> argparse.ArgumentParser:
    from promptlab import runs  # the strategies and their declared settings give the optimize flags

    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--db", default=argparse.SUPPRESS, help="DuckDB file (default: $PROMPTLAB_DB or data/promptlab.duckdb)")
    common.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help="show tracebacks")
    common.add_argument("--json", action="store_true", default=argparse.SUPPRESS, help="end with one JSON line")

    parser = argparse.ArgumentParser(
        prog="promptlab", parents=[common],
        description="Find the best prompt for an LLM on a labeled dataset. Same jobs as the dashboard, headless.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    ds = sub.add_parser("datasets", help="import, list, show and delete datasets").add_subparsers(dest="action", metavar="ACTION")
    p = ds.add_parser("import", parents=[common], help="import a CSV/TSV/JSON/JSONL/Parquet file")
    p.add_argument("path")
    p.add_argument("--name")
    p.add_argument("--input-col", action="append", help="input column (repeat, or comma-separate, for several)")
    p.add_argument("--label-col")
    p.add_argument("--split-fractions", help="train,val,test fractions (default 0.3,0.35,0.35)")
    p.add_argument("--split-seed", type=int, default=0)
    p.add_argument("--test-file", help="a separate file of test rows (same columns): its rows are the test split, "
                                       "the main file's are train and val. A 'split' column (train/val/test; dev "
                                       "and validation read as val) in the file is honoured the same way")
    p.add_argument("--kind", choices=["labels", "reference", "unlabeled"], default="labels",
                   help="what the target column holds: labels (default), reference answers, or nothing (unlabeled)")
    p.add_argument("--scorer", help="default scoring for a reference dataset: exact, normalized, contains, regex[:P], "
                   "numeric[:TOL], token_f1, json:FIELD, or judge")
    _judge_args(p)
    p.set_defaults(func=cmd_datasets_import)
    p = ds.add_parser("list", parents=[common], help="list stored datasets")
    p.set_defaults(func=cmd_datasets_list)
    p = ds.add_parser("show", parents=[common], help="labels, splits and notes of a dataset")
    p.add_argument("name")
    p.set_defaults(func=cmd_datasets_show)
    p = ds.add_parser("delete", parents=[common], help="delete a stored dataset")
    p.add_argument("name")
    p.set_defaults(func=cmd_datasets_delete)

    md = sub.add_parser("models", help="the local zoo and configured models").add_subparsers(dest="action", metavar="ACTION")
    p = md.add_parser("list", parents=[common], help="the zoo with install status, plus configured models")
    p.set_defaults(func=cmd_models_list)
    p = md.add_parser("add", parents=[common], help="configure a model under a name")
    p.add_argument("name")
    p.add_argument("--model", required=True, help="litellm model string, e.g. openai/gpt-4o-mini or openai/qwen2.5 with --api-base")
    p.add_argument("--api-base", help="e.g. http://127.0.0.1:11434/v1 for Ollama; several replicas of one model "
                   "comma-separated (each call goes to the least busy)")
    p.add_argument("--api-key-env", help="NAME of the environment variable holding the key (never the key)")
    p.add_argument("--family", help="override the inferred family")
    p.add_argument("--size-b", type=float, help="override the inferred size, in billions of parameters")
    p.add_argument("--param", action="append", help="generation parameter name=value (repeat)")
    p.add_argument("--concurrency", type=int, help="max calls in flight to each endpoint (default: 2 on 127.0.0.1, "
                   "8 for hosted providers)")
    p.set_defaults(func=cmd_models_add)
    p = md.add_parser("remove", parents=[common], help="remove a configured model")
    p.add_argument("name")
    p.set_defaults(func=cmd_models_remove)

    p = sub.add_parser("eval", parents=[common], help="score one prompt on a dataset")
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
    _constraint_arg(p)
    p.add_argument("--limit", type=int, help="evaluate a stratified sample of N examples")
    p.add_argument("--seed", type=int, help="split seed (default: the dataset's)")
    p.add_argument("--max-tokens", type=int, help="reply length cap (default: sized to the longest label)")
    _judge_args(p)
    p.set_defaults(func=cmd_eval)

    p = sub.add_parser("export", parents=[common], help="take a stored prompt into your code: text, chat messages, a "
                                                       "litellm script or a promptfoo config")
    p.add_argument("run", help="the run's id (`promptlab runs list`)")
    p.add_argument("--candidate", type=int, help="this candidate instead of the run's result")
    p.add_argument("--format", default="messages", choices=["text", "messages", "python", "promptfoo"],
                   help="text: to read; messages: JSON messages template and parameters; python: a runnable litellm "
                        "script; promptfoo: a promptfoo config with the test split as tests (default: messages)")
    p.add_argument("--out", help="write to this file (or into this folder) instead of printing")
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("matrix", parents=[common], help="the top prompts of several runs scored by several models on "
                                                       "the same test examples (the best prompt per model)")
    p.add_argument("--runs", required=True, help="comma-separated run ids whose prompts to score")
    p.add_argument("--models", required=True, help="comma-separated models to score them with")
    p.add_argument("--dataset", help="score on this dataset (default: the first run's)")
    p.add_argument("--top", type=int, default=1, help="prompts per run: its result, then its next best (default 1)")
    p.add_argument("--split", default="test", choices=["train", "val", "test", "all"])
    p.add_argument("--metric", help="default: the first run's metric on its own dataset, else the dataset's default")
    _constraint_arg(p)
    p.set_defaults(func=cmd_matrix)

    p = sub.add_parser("optimize", parents=[common], help="search for a better prompt with an arena of proposer models")
    p.add_argument("--dataset", required=True, help="stored dataset name, or a file path to import")
    p.add_argument("--target", required=True, help="the model the prompt is for")
    p.add_argument("--proposers", default="", help="comma-separated proposer models (needed by arena and gradient)")
    p.add_argument("--strategy", default=runs.DEFAULT_STRATEGY,
                   help=f"one of {', '.join(runs.STRATEGIES)}, or a chain joined by commas, e.g. arena,fewshot (default "
                        f"{runs.DEFAULT_STRATEGY}: instructions, then demonstrations for the best of them, then edits, "
                        "on one budget)")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--metric", help="default: accuracy for labels, the dataset's own scoring otherwise")
    _constraint_arg(p)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--budget", type=int, help="max target calls for the search (test scoring is extra)")
    p.add_argument("--max-proposer-calls", type=int)
    p.add_argument("--max-proposer-tokens", type=int)
    p.add_argument("--patience", type=int, help="stop after this many rounds without improvement")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--baseline", action="append", help="baseline prompt (repeat for several); default: a plain label list")
    g.add_argument("--baseline-file")
    p.add_argument("--meta-prompt-file", help="replace the meta-prompt template (see promptlab/optimize/prompts.py)")
    p.add_argument("--task", help="task description shown to the proposers")
    _setting_args(p, runs)
    p.add_argument("--review", action="store_true",
                   help="semi-automatic: pause after every round for your decisions (promptlab review RUN)")
    _judge_args(p)
    p.set_defaults(func=cmd_optimize)

    p = sub.add_parser("review", parents=[common], help="decide a paused run's rounds (keep, discard, edit, add, "
                       "re-score, continue), interactively or from a file")
    p.add_argument("run_id")
    p.add_argument("--decisions", help='a JSON list (or JSON lines) of decisions, e.g. {"action": "keep", "candidate": 3}, '
                   '{"action": "edit", "candidate": 1, "text": "..."}, {"action": "continue"}; "round" optional')
    p.set_defaults(func=cmd_review)

    for name, func, what in (("grade", cmd_grade, "grade a prompt's outputs by hand; prints the human score with n and CI"),
                             ("judge-check", cmd_judge_check, "check an LLM judge against your grades (agreement, kappa)")):
        p = sub.add_parser(name, parents=[common], help=what)
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

    p = sub.add_parser("study", parents=[common],
                       help="same-family vs cross-family proposers: targets x proposer sets x seeds, with CIs")
    p.add_argument("--dataset")
    p.add_argument("--targets", help="comma-separated target models")
    p.add_argument("--proposers", help="comma-separated proposer models (each is run alone)")
    p.add_argument("--mix", action="append", help="also run these proposers together, e.g. A+B (repeat)")
    p.add_argument("--seeds", type=int, default=3, help="seeds per cell (default 3)")
    p.add_argument("--budget", type=int, default=600, help="target calls per run for the search (equal for all)")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--candidates", type=int, default=2)
    p.add_argument("--metric", default="accuracy")
    _constraint_arg(p)
    p.add_argument("--strategy", default="arena",
                   help=f"one of {', '.join(runs.STRATEGIES)} or a chain (default arena: a study compares proposers, "
                        "and in the arena everything a run finds is theirs)")
    p.add_argument("--minibatch", type=int)
    p.add_argument("--test-top", type=int)
    p.add_argument("--show", metavar="ID", help="analyse a stored study without running anything")
    p.add_argument("--resume", metavar="ID", help="finish a study's unfinished runs, then analyse")
    p.add_argument("--list", action="store_true", help="stored studies")
    p.set_defaults(func=cmd_study)

    rn = sub.add_parser("runs", help="list, show and resume runs").add_subparsers(dest="action", metavar="ACTION")
    p = rn.add_parser("list", parents=[common], help="runs with their status")
    p.set_defaults(func=cmd_runs_list)
    p = rn.add_parser("show", parents=[common], help="leaderboard and per-proposer attribution")
    p.add_argument("run_id")
    p.set_defaults(func=cmd_runs_show)
    p = rn.add_parser("resume", parents=[common], help="finish an interrupted run without repeating calls")
    p.add_argument("run_id")
    p.set_defaults(func=cmd_runs_resume)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    for name, default in (("db", None), ("debug", False), ("json", False)):
        if not hasattr(args, name):
            setattr(args, name, default)
    if not hasattr(args, "func"):
        parser.print_help()
        return 2
    try:
        return args.func(args)
    except PromptlabError as exc:
        if args.debug:
            traceback.print_exc()
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted: every finished call is stored; run the same command again to continue", file=sys.stderr)
        return 130
    except Exception as exc:  # noqa: BLE001 - one clear line unless --debug
        if args.debug:
            traceback.print_exc()
        else:
            print(f"error: unexpected {type(exc).__name__}: {exc} (run again with --debug for details)", file=sys.stderr)
        return 1
