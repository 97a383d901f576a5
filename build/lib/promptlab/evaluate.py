"""Run one prompt over examples: render, call (through the cache), let the objective read each reply, score.

Contract: `evaluate` never raises for one bad example. A failed call becomes a row with its error and
an invalid prediction; the score treats it as wrong, and the invalid rate says how many there were.
"""
from __future__ import annotations

import math
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field

import pandas as pd

from promptlab.data import Dataset
from promptlab.progress import Progress
from promptlab.prompt import PromptTemplate
from promptlab.models import Completion, ModelSpec, RetryPolicy, request_key, request_record
from promptlab.calls import complete, warm_up
from promptlab.scoring import Objective
from promptlab.scoring.labels import confusion_matrix, invalid_rate
from promptlab.store import Store
from promptlab.text import json_number

# --- evaluation ------------------------------------------------------------------------------------

def default_max_tokens(labels: tuple[str, ...], references: list[str] | None = None) -> int:
    """Enough for the longest label plus a short preamble; small models otherwise ramble for seconds.
    Without labels: room for twice the longest reference answer (about 3 characters a token), or 256
    tokens for free-form outputs that a judge grades."""
    if not labels:
        if references:
            longest = max(len(r) for r in references)
            return int(min(256, max(32, longest // 2 + 24)))
        return 256
    longest = max(len(lab) for lab in labels)
    return int(min(64, max(12, longest + 8)))


def eval_params(spec: ModelSpec, labels: tuple[str, ...], max_tokens: int | None = None,
                references: list[str] | None = None) -> dict:
    """Deterministic decoding unless the model's params say otherwise."""
    params = {"temperature": 0.0, **spec.params}
    if max_tokens is not None:
        params["max_tokens"] = max_tokens
    params.setdefault("max_tokens", default_max_tokens(labels, references))
    return params


def dataset_params(spec: ModelSpec, dataset: Dataset, max_tokens: int | None = None) -> dict:
    """eval_params for a dataset of any kind (its references size the reply for reference tasks)."""
    refs = dataset.frame["label"].tolist() if dataset.kind == "reference" else None
    return eval_params(spec, dataset.labels, max_tokens, refs)


def model_key(spec: ModelSpec, params: dict) -> str:
    return request_key({"model": spec.model, "api_base": spec.cache_base, "params": params})[:16]


@dataclass(frozen=True)
class EvalResult:
    prompt: PromptTemplate
    model: str
    metric: Objective
    split: str
    rows: pd.DataFrame = field(repr=False)  # example_idx, text, gold, gold_norm, reply, pred, parse, correct, error,
    # cached, call_key, score, detail
    labels: tuple[str, ...] = ()
    calls: int = 0
    cached: int = 0
    errors: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost: float | None = None
    wall_s: float = 0.0

    @property
    def n(self) -> int:
        return len(self.rows)

    @property
    def preds(self) -> list[str | None]:
        return [None if p is None or (isinstance(p, float) and math.isnan(p)) else p for p in self.rows["pred"]]

    @property
    def scored(self) -> bool:
        """Each reply has its own score (a reference scorer, a judge) rather than a label."""
        return not self.metric.reads_labels

    @property
    def score(self) -> float:
        return self.metric.value(self.rows)

    @property
    def ci(self) -> tuple[float, float]:
        return self.ci_at(0.95)

    def ci_at(self, level: float) -> tuple[float, float]:
        return self.metric.interval(self.rows, level)

    @property
    def n_relevant(self) -> int:
        return self.metric.n_relevant(self.rows)

    @property
    def invalid_rate(self) -> float:
        return invalid_rate(self.preds)

    @property
    def accuracy(self) -> float:
        """The share of examples fully right (a label match, or a full score)."""
        return float(self.rows["correct"].mean()) if self.n else math.nan

    def confusion(self) -> pd.DataFrame:
        if not self.labels:
            return pd.DataFrame()
        return confusion_matrix(self.rows["gold_norm"].tolist(), self.preds, self.labels)

    @property
    def examples_per_s(self) -> float:
        return self.n / self.wall_s if self.wall_s > 0 else math.inf

    def summary(self) -> dict:
        lo, hi = self.ci
        return {
            "score": json_number(self.score), "metric": self.metric.spec, "metric_description": self.metric.describe(),
            "ci_low": json_number(lo), "ci_high": json_number(hi), "n": self.n, "n_relevant": self.n_relevant,
            "accuracy": json_number(self.accuracy), "invalid_rate": json_number(self.invalid_rate),
            "split": self.split, "model": self.model, "prompt_id": self.prompt.id,
            "calls": self.calls, "cached": self.cached, "errors": self.errors,
            "cache_hit_rate": round(self.cached / self.n, 4) if self.n else None,
            "prompt_tokens": self.prompt_tokens, "completion_tokens": self.completion_tokens,
            "cost": self.cost, "eval_wall_s": round(self.wall_s, 4),
            "examples_per_s": round(self.examples_per_s, 3) if math.isfinite(self.examples_per_s) else None,
            "constant": self.constant, "floors": self.floors,
        }

    @property
    def constant(self) -> str | None:
        """The label it gives for at least 95% of the examples (a constant answer), or None."""
        return self.metric.constant(self.rows)

    @property
    def floors(self) -> list[dict]:
        """Each floor of a constrained metric: its value here, its threshold, whether it is met."""
        return self.metric.floors_on(self.rows)


def evaluate(
    store: Store,
    spec: ModelSpec,
    prompt: PromptTemplate,
    dataset: Dataset,
    examples: pd.DataFrame,
    metric: Objective,
    *,
    split: str = "all",
    max_tokens: int | None = None,
    run_id: str | None = None,
    progress: Progress | None = None,
    retry: RetryPolicy = RetryPolicy(),
    save: bool = True,
) -> EvalResult:
    """Score `prompt` for `spec` on `examples` (rows of dataset.frame). Each new call is committed as it completes.

    The objective reads each reply (promptlab.scoring): a label metric maps it to a label, a scorer or a judge
    gives it a score in [0, 1] against the example's reference (the judge's calls are cached and recorded like
    the target's, and its reasoning is kept with the row), human grades fetch the outputs only (they are graded
    by hand later). `save=False` keeps the per-example rows out of the evaluations table. `progress` expects the
    uncached calls once the cache has answered and ticks as each completes."""
    prompt.check(dataset.input_cols)
    params = dataset_params(spec, dataset, max_tokens)
    t0 = time.perf_counter()
    requests, keys = _requests(spec, prompt, dataset, examples, params)
    hits = store.cached_calls(keys)
    todo = _uncached(keys, requests, hits)
    if progress is not None:
        progress.expect(len(todo))
    load_s = warm_up(spec) if todo else 0.0  # model loading is start-up, not evaluation time
    fresh = _call_all(store, spec, todo, params, retry, run_id, progress)
    rows = _read_replies(keys, examples, fresh, hits, metric, dataset.labels)
    metric.finish(store, rows, dataset.kind == "reference", run_id)
    frame = pd.DataFrame(rows, columns=_ROW_COLUMNS)
    wall = time.perf_counter() - t0 - load_s
    if dataset.id and save:
        _save_rows(store, spec, params, prompt, dataset.id, frame)
    return EvalResult(prompt=prompt, model=spec.label, metric=metric, split=split, rows=frame, labels=dataset.labels,
                      cached=len(keys) - len(fresh), wall_s=wall, **_call_totals(fresh))


_ROW_COLUMNS = ["example_idx", "text", "gold", "gold_norm", "reply", "pred", "parse", "correct", "error", "cached",
               "call_key", "score", "detail"]  # an EvalResult's per-example rows


def _requests(spec: ModelSpec, prompt: PromptTemplate, dataset: Dataset, examples: pd.DataFrame,
              params: dict) -> tuple[list[dict], list[str]]:
    """(each example's request record, its cache key), in the order of `examples`."""
    requests, keys = [], []
    for fields, text in zip(examples["fields"], examples["text"]):
        record = request_record(spec, prompt.render(fields, text, dataset.labels), params)
        requests.append(record)
        keys.append(request_key(record))
    return requests, keys


def _uncached(keys: list[str], requests: list[dict], hits: dict) -> dict[str, dict]:
    """{key: request} for the requests the cache did not answer, in example order, each key once (a duplicate
    input in the batch is called once)."""
    todo: dict[str, dict] = {}
    for key, record in zip(keys, requests):
        if key not in hits:
            todo.setdefault(key, record)
    return todo


def _call_one(store: Store, spec: ModelSpec, key: str, record: dict, params: dict, retry: RetryPolicy,
              run_id: str | None) -> tuple[str, Completion]:
    """Call the model for one request and commit the call at once. Never raises for a failed call: the
    completion carries its error."""
    result = complete(spec, record["messages"], params, retry=retry)
    store.record_call(key, record, result, run_id=run_id, purpose="eval")
    return key, result


def _call_all(store: Store, spec: ModelSpec, todo: dict[str, dict], params: dict, retry: RetryPolicy,
              run_id: str | None, progress: Progress | None) -> dict[str, Completion]:
    """{key: completion} for every request in `todo`, each committed and ticked on `progress` as it completes;
    up to `spec.max_in_flight` at once (per endpoint `concurrency`, times its replicas; in-process: 1)."""
    fresh: dict[str, Completion] = {}
    if spec.max_in_flight == 1:
        for key, record in todo.items():
            fresh[key] = _call_one(store, spec, key, record, params, retry, run_id)[1]
            if progress is not None:
                progress.tick()
        return fresh
    with ThreadPoolExecutor(max_workers=spec.max_in_flight) as pool:
        futures = [pool.submit(_call_one, store, spec, k, r, params, retry, run_id) for k, r in todo.items()]
        for fut in as_completed(futures):
            key, result = fut.result()
            fresh[key] = result
            if progress is not None:
                progress.tick()
    return fresh


def _read_replies(keys: list[str], examples: pd.DataFrame, fresh: dict[str, Completion], hits: dict,
                  metric: Objective, labels: tuple[str, ...]) -> list[dict]:
    """One row per example (_ROW_COLUMNS, `detail` left for metric.finish): its reply, from this batch's calls or
    the cache, as the objective reads it. A failed call is a row with its error and the objective's failure score."""
    rows = []
    seen_fresh: set[str] = set()
    for key, idx, text, gold, gold_norm in zip(
        keys, examples["idx"], examples["text"], examples["label"], examples["label_norm"]
    ):
        if key in fresh:
            comp = fresh[key]
            reply, error = comp.text, comp.error
            was_cached = key in seen_fresh  # a duplicate input in this batch reused the first call
            seen_fresh.add(key)
        else:
            reply, error, was_cached = hits[key].response, None, True
        pred, how, score = (None, "error", metric.failure_score) if error else \
            metric.read(reply, gold, gold_norm, labels)
        rows.append({
            "example_idx": int(idx), "text": text, "gold": gold, "gold_norm": gold_norm, "reply": reply,
            "pred": pred, "parse": how, "correct": bool(score is not None and score >= 1.0),
            "error": error, "cached": was_cached, "call_key": key, "score": score, "detail": None,
        })
    return rows


def _save_rows(store: Store, spec: ModelSpec, params: dict, prompt: PromptTemplate, dataset_id: str,
               frame: pd.DataFrame) -> None:
    """Store the prompt and its per-example rows for this model (by its key) on the dataset."""
    store.save_prompt(prompt.id, prompt.system, prompt.user,
                      [d.to_record() for d in prompt.demos] or None, prompt.demo_format, prompt.similar_k,
                      prompt.similar_by)
    store.save_evaluations(pd.DataFrame({
        "prompt_id": prompt.id, "model_key": model_key(spec, params), "dataset_id": dataset_id,
        "example_idx": frame["example_idx"].astype("int32"), "call_key": frame["call_key"],
        "reply": frame["reply"], "pred": frame["pred"], "parse": frame["parse"],
        "correct": frame["correct"].astype(bool), "error": frame["error"],
        "score": frame["score"].astype(float), "detail": frame["detail"].astype(object),
    }))


def _call_totals(fresh: dict[str, Completion]) -> dict:
    """What this batch's own calls (not the cache's answers) made and spent: EvalResult's calls, errors, tokens
    and cost (None when no call priced itself)."""
    costs = [c.cost for c in fresh.values() if c.cost is not None]
    return {
        "calls": len(fresh),
        "errors": sum(1 for c in fresh.values() if not c.ok),
        "prompt_tokens": sum(c.prompt_tokens for c in fresh.values()),
        "completion_tokens": sum(c.completion_tokens for c in fresh.values()),
        "cost": sum(costs) if costs else None,
    }


def stored_rows(store: Store, prompt_id: str, model_key_: str, dataset: Dataset, idx=None) -> pd.DataFrame:
    """A prompt's stored per-example rows for one model on a dataset (optionally only the examples in `idx`), with
    each example's text, gold and normalized gold beside them: the rows an Objective reads."""
    rows = store.evaluations(prompt_id, model_key_, dataset.id)
    if idx is not None:
        rows = rows[rows["example_idx"].isin(set(idx))]
    gold = dataset.frame[["idx", "text", "label", "label_norm"]].rename(
        columns={"idx": "example_idx", "label": "gold", "label_norm": "gold_norm"})
    return rows.merge(gold, on="example_idx", how="left")
