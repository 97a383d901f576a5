"""DSPy 3.4 optimizers (MIPROv2 light, GEPA light) on exactly promptlab's train/val/test rows.

Runs in its OWN venv (benchmarks/.venv-dspy; DSPy pins litellm differently from promptlab), against two
OpenAI-compatible llama_cpp servers of the offline zoo models (see benchmarks/dspy_serve.sh):

    benchmarks/.venv-dspy/bin/python benchmarks/dspy_bench.py --splits benchmarks/splits \\
        --target-base http://127.0.0.1:8771/v1 --proposer-base http://127.0.0.1:8772/v1

The splits come from benchmarks/export_splits.py (promptlab's venv). The program is a dspy.Predict whose
signature has the text as input and the label as a Literal of the task's labels, with promptlab's plain
baseline instruction. Per task: the unoptimized program ("baseline") and each optimized program are scored
on the test rows; compile uses trainset=train and valset=val. Results (resumable: finished (task, entry)
pairs are kept and skipped on the next run; errored ones are retried) go to --out as JSON; see RESULT_SCHEMA.

Call counting: every real request attempt that leaves DSPy for a server is counted per model, by wrapping
dspy.clients.execution._attempt (the one place in DSPy 3.4.1 where a request that missed DSPy's response
cache is sent, on both the native lm15 and the LiteLLM engine; retries are counted as requests).
DSPy's on-disk cache is disabled. --cache memory (default) gives each compile and each test scoring a fresh
in-memory cache (DSPy's normal in-run behaviour: a repeated identical request is free and not counted);
--cache off sends every request.
"""
from __future__ import annotations

import os

# Before anything imports litellm: use the cost map shipped in the package, no network fetch.
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

import argparse  # noqa: E402
import collections  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import random  # noqa: E402
import shlex  # noqa: E402
import sys  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402
import traceback  # noqa: E402
import urllib.request  # noqa: E402
from concurrent.futures import ThreadPoolExecutor  # noqa: E402
from importlib.metadata import version  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Literal  # noqa: E402

import dspy  # noqa: E402
import dspy.clients.execution as _execution  # noqa: E402

HERE = Path(__file__).resolve().parent
TARGET_ALIAS = "qwen2.5-coder-0.5b"
PROPOSER_ALIAS = "qwen2.5-coder-1.5b"
BASELINE = "Classify the text. Answer with one of these labels: {labels}."  # promptlab.planning.DEFAULT_BASELINE

RESULT_SCHEMA = """
{"meta": {"dspy", "litellm", "gepa", "python", "command", "target_model", "proposer_model", "target_base",
          "proposer_base", "seed", "max_rows", "cache", "num_threads", "target_max_tokens", "proposer_max_tokens"},
 "tasks": {<task>: {
    "labels": [...], "content_hash": str, "n_train": int, "n_val": int, "n_test": int, "max_rows": int|null,
    "baseline" | "mipro" | "gepa": {
        "test_acc": float, "n_test": int, "n_invalid": int,        # invalid: the program raised (parse failure)
        "per_example": {<idx>: 0|1},                                 # test rows, idx = promptlab's row idx
        "predictions": {<idx>: label|null},
        "target_calls_test": int, "failed_calls_test": int, "test_wall_s": float,
        "instruction": str, "n_demos": int, "demos": [{"text", "label"}, ...],
        # optimizers only:
        "target_calls_compile": int, "proposer_calls_compile": int, "compile_wall_s": float,
        "failed_calls_compile": {"target": int, "proposer": int},   # attempts that raised (included above)
        "settings": {...}, "finished_at": str}
    | {"error": str, "traceback": str, ...}}}}
"""

# --- call counting -------------------------------------------------------------------------------

CALLS: collections.Counter = collections.Counter()  # request attempts per model (DSPy cache misses)
FAILED: collections.Counter = collections.Counter()  # of which raised (server down, HTTP error, timeout)
_CALLS_LOCK = threading.Lock()
_orig_attempt = _execution._attempt
_orig_aattempt = _execution._aattempt


def _count(counter, lm) -> None:
    with _CALLS_LOCK:
        counter[lm.model] += 1


def _counted_attempt(lm, *args, **kwargs):
    _count(CALLS, lm)
    try:
        return _orig_attempt(lm, *args, **kwargs)
    except BaseException:
        _count(FAILED, lm)
        raise


async def _counted_aattempt(lm, *args, **kwargs):
    _count(CALLS, lm)
    try:
        return await _orig_aattempt(lm, *args, **kwargs)
    except BaseException:
        _count(FAILED, lm)
        raise


_execution._attempt = _counted_attempt
_execution._aattempt = _counted_aattempt


def calls_snapshot() -> dict:
    with _CALLS_LOCK:
        return {**dict(CALLS), **{("failed", m): n for m, n in FAILED.items()}}


def calls_since(before: dict, model: str, failed: bool = False) -> int:
    key = ("failed", model) if failed else model
    return calls_snapshot().get(key, 0) - before.get(key, 0)


def fresh_cache(mode: str) -> None:
    # never the disk cache: results must not depend on what an earlier run left behind
    dspy.configure_cache(enable_disk_cache=False, enable_memory_cache=(mode == "memory"))


# --- task, program, metrics ----------------------------------------------------------------------

def norm(value) -> str:
    return str(value).strip().casefold()


def make_program(labels: list[str]) -> dspy.Predict:
    instruction = BASELINE.format(labels=", ".join(labels))
    sig = dspy.make_signature(
        {"text": (str, dspy.InputField()), "label": (Literal[tuple(labels)], dspy.OutputField())},
        instruction,
        signature_name="Classify",
    )
    return dspy.Predict(sig)


def metric(gold, pred, trace=None) -> float:
    return float(norm(getattr(pred, "label", "")) == norm(gold.label))


def gepa_metric(gold, pred, trace=None, pred_name=None, pred_trace=None):
    got = getattr(pred, "label", None)
    score = float(norm(got) == norm(gold.label)) if got is not None else 0.0
    feedback = (f"Correct: the label is {gold.label}." if score else
                f"Wrong: expected {gold.label}, got {got if got is not None else 'no valid label'}.")
    return dspy.Prediction(score=score, feedback=feedback)


def balanced_head(rows: list[dict], n: int | None) -> list[dict]:
    """The first n rows taking labels in turn (smoke tests only; keeps every label represented)."""
    if not n or len(rows) <= n:
        return rows
    by_label: dict[str, list[dict]] = collections.defaultdict(list)
    for r in rows:
        by_label[r["label"]].append(r)
    queues = [collections.deque(v) for v in by_label.values()]
    out: list[dict] = []
    while len(out) < n:
        for q in queues:
            if q and len(out) < n:
                out.append(q.popleft())
    return sorted(out, key=rows.index)


def examples(rows: list[dict]) -> list[dspy.Example]:
    return [dspy.Example(text=r["text"], label=r["label"]).with_inputs("text") for r in rows]


def describe(program) -> dict:
    pred = program.predictors()[0]
    demos = []
    for d in pred.demos or []:
        get = d.get if hasattr(d, "get") else (lambda k, _d=d: getattr(_d, k, None))
        demos.append({"text": get("text"), "label": str(get("label")) if get("label") is not None else None})
    return {"instruction": pred.signature.instructions, "n_demos": len(demos), "demos": demos}


def score_test(program, test_rows: list[dict], num_threads: int, cache_mode: str) -> dict:
    fresh_cache(cache_mode)
    before = calls_snapshot()
    t0 = time.time()

    def one(row):
        try:
            got = program(text=row["text"]).label
            return str(got), None
        except Exception as exc:  # a parse failure counts as wrong, like promptlab's invalid answers
            return None, f"{type(exc).__name__}: {exc}"[:300]

    with ThreadPoolExecutor(max_workers=max(1, num_threads)) as pool:
        outs = list(pool.map(one, test_rows))
    per_example, predictions, errors = {}, {}, []
    for row, (got, err) in zip(test_rows, outs):
        key = str(row["idx"])
        predictions[key] = got
        per_example[key] = int(got is not None and norm(got) == norm(row["label"]))
        if err:
            errors.append(err)
    n = len(test_rows)
    return {
        "test_acc": sum(per_example.values()) / n if n else None,
        "n_test": n,
        "n_invalid": len(errors),
        "invalid_examples": errors[:5],
        "per_example": per_example,
        "predictions": predictions,
        "target_calls_test": calls_since(before, target_model_name()),
        "failed_calls_test": calls_since(before, target_model_name(), failed=True),
        "test_wall_s": round(time.time() - t0, 2),
    }


# --- optimizers ----------------------------------------------------------------------------------

_LMS: dict[str, dspy.LM] = {}


def target_model_name() -> str:
    return _LMS["target"].model


def build_lms(args) -> None:
    cache = args.cache == "memory"
    _LMS["target"] = dspy.LM(f"openai/{TARGET_ALIAS}", api_base=args.target_base, api_key="local",
                             temperature=0.0, max_tokens=args.target_max_tokens, cache=cache, num_retries=2)
    _LMS["proposer"] = dspy.LM(f"openai/{PROPOSER_ALIAS}", api_base=args.proposer_base, api_key="local",
                               temperature=1.0, max_tokens=args.proposer_max_tokens, cache=cache, num_retries=2)
    dspy.configure(lm=_LMS["target"])


def compile_mipro(program, train, val, args):
    settings = {"auto": "light", "max_bootstrapped_demos": 4, "max_labeled_demos": 4, "seed": args.seed,
                "num_threads": args.num_threads, "max_errors": args.max_errors}
    kwargs = {}
    if args.num_trials or args.num_candidates:  # smoke tests only: leaves DSPy's light settings
        settings.update(auto=None, num_candidates=args.num_candidates or 6, num_trials=args.num_trials or 10)
        kwargs["num_trials"] = settings["num_trials"]
        kwargs["minibatch"] = settings["minibatch"] = len(val) > 50  # light's rule (MIN_MINIBATCH_SIZE)
    opt = dspy.MIPROv2(
        metric=metric, prompt_model=_LMS["proposer"], task_model=_LMS["target"], auto=settings["auto"],
        num_candidates=settings.get("num_candidates"), num_threads=args.num_threads, seed=args.seed,
        max_errors=args.max_errors,
    )
    # seed goes to the constructor: compile() does `seed = seed or self.seed`, so compile(seed=0) means 9
    return opt.compile(program, trainset=train, valset=val, **kwargs), settings


def compile_gepa(program, train, val, args):
    settings = {"auto": "light", "reflection_minibatch_size": 3, "seed": args.seed, "num_threads": args.num_threads}
    budget = {"auto": "light"}
    if args.gepa_max_metric_calls:  # smoke tests only
        budget = {"max_metric_calls": args.gepa_max_metric_calls}
        settings.update(auto=None, max_metric_calls=args.gepa_max_metric_calls)
    opt = dspy.GEPA(metric=gepa_metric, reflection_lm=_LMS["proposer"], num_threads=args.num_threads,
                    seed=args.seed, track_stats=True, **budget)
    compiled = opt.compile(program, trainset=train, valset=val)
    settings["max_metric_calls_effective"] = opt.max_metric_calls
    details = getattr(compiled, "detailed_results", None)
    if details is not None:
        try:
            settings["n_candidates"] = len(details.candidates)
            settings["total_metric_calls"] = details.total_metric_calls
        except Exception:
            pass
    return compiled, settings


OPTIMIZERS = {"mipro": compile_mipro, "gepa": compile_gepa}


# --- results file --------------------------------------------------------------------------------

def load_results(path: Path) -> dict:
    if path.exists():
        return json.loads(path.read_text())
    return {"meta": {}, "tasks": {}}


def save_results(path: Path, results: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(results, ensure_ascii=False, indent=1))
    tmp.replace(path)


def done(entry: dict | None, max_rows) -> bool:
    return bool(entry) and "error" not in entry and entry.get("max_rows") == max_rows


def wait_for(base: str, timeout_s: float = 60.0) -> None:
    deadline = time.time() + timeout_s
    while True:
        try:
            with urllib.request.urlopen(base.rstrip("/") + "/models", timeout=5) as r:
                if r.status == 200:
                    return
        except OSError:
            pass
        if time.time() > deadline:
            raise SystemExit(f"no OpenAI-compatible server answers at {base} (start them: benchmarks/dspy_serve.sh start)")
        time.sleep(1)


def run_task(doc: dict, args, results: dict, out: Path) -> None:
    task = doc["task"]
    labels = doc["labels"]
    train_rows = balanced_head(doc["train"], args.max_rows)
    val_rows = balanced_head(doc["val"], args.max_rows)
    test_rows = balanced_head(doc["test"], args.max_rows)
    rec = results["tasks"].setdefault(task, {})
    if rec.get("content_hash") not in (None, doc.get("content_hash")) or rec.get("max_rows") != args.max_rows:
        rec.clear()  # other rows than the stored results: start this task over
    rec.update(labels=labels, content_hash=doc.get("content_hash"), n_train=len(train_rows), n_val=len(val_rows),
               n_test=len(test_rows), max_rows=args.max_rows)
    train, val = examples(train_rows), examples(val_rows)

    for name in ["baseline"] + args.optimizers:
        if done(rec.get(name), args.max_rows):
            print(f"[{task}] {name}: already done (test_acc={rec[name]['test_acc']:.3f}), skipped", flush=True)
            continue
        print(f"[{task}] {name}: start", flush=True)
        entry: dict = {"max_rows": args.max_rows}
        try:
            random.seed(args.seed)
            program = make_program(labels)
            if name != "baseline":
                fresh_cache(args.cache)
                before = calls_snapshot()
                t0 = time.time()
                try:
                    program, settings = OPTIMIZERS[name](program, train, val, args)
                finally:
                    entry["compile_wall_s"] = round(time.time() - t0, 2)
                    entry["target_calls_compile"] = calls_since(before, _LMS["target"].model)
                    entry["proposer_calls_compile"] = calls_since(before, _LMS["proposer"].model)
                    # GEPA logs a failed reflection and goes on: a dead proposer shows up only here
                    entry["failed_calls_compile"] = {
                        "target": calls_since(before, _LMS["target"].model, failed=True),
                        "proposer": calls_since(before, _LMS["proposer"].model, failed=True)}
                entry["settings"] = settings
            entry.update(describe(program))
            entry.update(score_test(program, test_rows, args.num_threads, args.cache))
            entry["finished_at"] = time.strftime("%Y-%m-%dT%H:%M:%S")
            print(f"[{task}] {name}: test_acc={entry['test_acc']:.3f} n={entry['n_test']} "
                  f"invalid={entry['n_invalid']} compile_target_calls={entry.get('target_calls_compile', 0)} "
                  f"proposer_calls={entry.get('proposer_calls_compile', 0)} compile_s={entry.get('compile_wall_s', 0)} "
                  f"demos={entry['n_demos']}", flush=True)
        except KeyboardInterrupt:
            raise
        except Exception as exc:
            entry["error"] = f"{type(exc).__name__}: {exc}"[:2000]
            entry["traceback"] = traceback.format_exc()[-6000:]
            print(f"[{task}] {name}: FAILED {entry['error']}", flush=True)
        rec[name] = entry
        save_results(out, results)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description="DSPy optimizers on promptlab's splits", epilog=RESULT_SCHEMA,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--splits", default=str(HERE / "splits"), help="folder of <task>.json from export_splits.py")
    ap.add_argument("--tasks", default="", help="comma-separated tasks (default: every JSON in --splits)")
    ap.add_argument("--optimizers", default="mipro,gepa", help="comma-separated: mipro, gepa")
    ap.add_argument("--target-base", default="http://127.0.0.1:8771/v1")
    ap.add_argument("--proposer-base", default="http://127.0.0.1:8772/v1")
    ap.add_argument("--out", default=str(HERE / "dspy_results.json"))
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--num-threads", type=int, default=2, help="parallel requests (each server serves one at a time)")
    ap.add_argument("--cache", choices=("memory", "off"), default="memory",
                    help="memory: a fresh in-memory DSPy cache per compile / test scoring; off: cache=False")
    ap.add_argument("--target-max-tokens", type=int, default=256)
    ap.add_argument("--proposer-max-tokens", type=int, default=1024)
    ap.add_argument("--max-errors", type=int, default=None,
                    help="MIPROv2 max_errors (default: DSPy's setting, 10); GEPA sets its own")
    ap.add_argument("--max-rows", type=int, default=None, help="SMOKE TESTS ONLY: rows per split")
    ap.add_argument("--num-trials", type=int, default=None, help="SMOKE TESTS ONLY: MIPROv2 auto=None with this many trials")
    ap.add_argument("--num-candidates", type=int, default=None, help="SMOKE TESTS ONLY: MIPROv2 auto=None, candidates")
    ap.add_argument("--gepa-max-metric-calls", type=int, default=None, help="SMOKE TESTS ONLY: GEPA budget instead of light")
    args = ap.parse_args(argv)
    args.optimizers = [o.strip() for o in args.optimizers.split(",") if o.strip()]
    unknown = set(args.optimizers) - set(OPTIMIZERS)
    if unknown:
        raise SystemExit(f"unknown optimizer(s) {sorted(unknown)}; use {sorted(OPTIMIZERS)}")

    split_files = sorted(Path(args.splits).glob("*.json"))
    wanted = [t.strip() for t in args.tasks.split(",") if t.strip()]
    if wanted:
        split_files = [p for p in split_files if p.stem in wanted]
        missing = set(wanted) - {p.stem for p in split_files}
        if missing:
            raise SystemExit(f"no splits for {sorted(missing)} in {args.splits} (run export_splits.py)")
    if not split_files:
        raise SystemExit(f"no <task>.json in {args.splits} (run export_splits.py in promptlab's venv)")

    wait_for(args.target_base)
    wait_for(args.proposer_base)
    fresh_cache(args.cache)
    build_lms(args)

    out = Path(args.out)
    results = load_results(out)
    results["meta"] = {
        "dspy": version("dspy"), "litellm": version("litellm"), "gepa": version("gepa"),
        "python": platform.python_version(), "machine": f"{platform.machine()} {os.cpu_count()} cpus",
        "command": shlex.join([Path(sys.executable).name] + sys.argv),
        "target_model": _LMS["target"].model, "proposer_model": _LMS["proposer"].model,
        "target_base": args.target_base, "proposer_base": args.proposer_base, "seed": args.seed,
        "max_rows": args.max_rows, "cache": args.cache, "num_threads": args.num_threads,
        "target_max_tokens": args.target_max_tokens, "proposer_max_tokens": args.proposer_max_tokens,
        "baseline_instruction": BASELINE,
    }
    save_results(out, results)
    for path in split_files:
        run_task(json.loads(path.read_text()), args, results, out)
    print(f"results: {out}")


if __name__ == "__main__":
    main()
