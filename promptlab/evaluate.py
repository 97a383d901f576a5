"""Run one prompt over examples: render, call (through the cache), let the objective read each reply, score.

Contract: `evaluate` never raises for one bad example. A failed call becomes a row with its error and
an invalid prediction; the score treats it as wrong, and the invalid rate says how many there were.
"""
from __future__ import annotations

import hashlib
import json
import math
import re
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from typing import Callable

import pandas as pd

from promptlab.data import Dataset
from promptlab.errors import PromptlabError
from promptlab.models import Completion, ModelSpec, RetryPolicy, complete, request_key, request_record, warm_up
from promptlab.scoring import Objective
from promptlab.scoring.labels import confusion_matrix, invalid_rate
from promptlab.similarity import BACKENDS as SIMILARITY_BACKENDS, nearest
from promptlab.store import Store
from promptlab.text import json_number

# --- prompt templates ------------------------------------------------------------------------------

_PLACEHOLDER = re.compile(r"(?<!\{)\{([A-Za-z_][\w \-]*)\}(?!\})")
SPECIAL_FIELDS = {"input": "the example's input text", "labels": "the label set, comma-separated"}


class PromptError(PromptlabError):
    pass


DEMO_FORMATS = ("chat", "inline")


@dataclass(frozen=True)
class Demo:
    """One demonstration: a train example's input (its text and input fields) and its gold label."""

    text: str
    label: str
    fields: tuple[tuple[str, str], ...] = ()
    idx: int | None = None  # the example's row in its dataset, when it came from one

    def to_record(self) -> dict:
        return {"text": self.text, "label": self.label, "fields": [list(f) for f in self.fields], "idx": self.idx}

    @classmethod
    def from_record(cls, rec) -> "Demo":
        if isinstance(rec, Demo):
            return rec
        return cls(str(rec["text"]), str(rec["label"]), tuple((str(k), str(v)) for k, v in rec.get("fields") or ()),
                   rec.get("idx"))


@dataclass(frozen=True)
class PromptTemplate:
    """A prompt: a system part and a user part, with {input}, {labels} and any {column} placeholders,
    plus optional demonstrations.

    Use {{ and }} for literal braces around a name (e.g. '{{input}}' renders as '{input}').
    Demonstrations render either as chat turns (the user part filled with the demo's input, then an
    assistant turn with its label) before the real input, or inline, appended to the instruction as
    'Input: … / Answer: …' pairs.
    """

    system: str = ""
    user: str = "{input}"
    demos: tuple[Demo, ...] = ()
    demo_format: str = "chat"
    similar_k: int = 0  # > 0: `demos` is a pool, and each input gets its similar_k nearest demos from it
    similar_by: str = "tfidf"  # how "nearest" is measured (promptlab.similarity.BACKENDS)

    def __post_init__(self):
        if self.demo_format not in DEMO_FORMATS:
            raise PromptError(f"unknown demo format '{self.demo_format}': use one of {', '.join(DEMO_FORMATS)}")
        if self.similar_by not in SIMILARITY_BACKENDS:
            raise PromptError(f"unknown similarity '{self.similar_by}': use {' or '.join(SIMILARITY_BACKENDS)}")
        object.__setattr__(self, "demos", tuple(Demo.from_record(d) for d in self.demos))

    @property
    def id(self) -> str:
        parts = [self.system, self.user]
        if self.demos:  # prompts without demos keep the ids they always had
            parts += [self.demo_format, [d.to_record() for d in self.demos]]
            if self.similar_k:
                parts.append(self.similar_k)
                if self.similar_by != "tfidf":  # tfidf prompts keep the ids they always had
                    parts.append(self.similar_by)
        blob = json.dumps(parts, ensure_ascii=False)
        return hashlib.sha256(blob.encode("utf-8")).hexdigest()[:16]

    def to_record(self) -> dict:
        rec = {"system": self.system, "user": self.user}
        if self.demos:
            rec.update(demos=[d.to_record() for d in self.demos], demo_format=self.demo_format)
            if self.similar_k:
                rec["similar_k"] = self.similar_k
                if self.similar_by != "tfidf":
                    rec["similar_by"] = self.similar_by
        return rec

    @classmethod
    def from_record(cls, rec: dict) -> "PromptTemplate":
        return cls(system=str(rec.get("system", "")), user=str(rec.get("user", "{input}")),
                   demos=tuple(Demo.from_record(d) for d in rec.get("demos") or ()),
                   demo_format=str(rec.get("demo_format") or "chat"), similar_k=int(rec.get("similar_k") or 0),
                   similar_by=str(rec.get("similar_by") or "tfidf"))

    def with_demos(self, demos, demo_format: str | None = None, similar_k: int = 0,
                   similar_by: str = "tfidf") -> "PromptTemplate":
        if not demos:
            return PromptTemplate(self.system, self.user)
        return PromptTemplate(self.system, self.user, tuple(demos), demo_format or self.demo_format, similar_k,
                              similar_by if similar_k else "tfidf")

    def demos_for(self, text: str) -> tuple[Demo, ...]:
        """The demos shown with one input: all of them, or its similar_k nearest in the pool."""
        if not self.similar_k or len(self.demos) <= self.similar_k:
            return self.demos
        return tuple(self.demos[i] for i in nearest(tuple(d.text for d in self.demos), text, self.similar_k,
                                                    self.similar_by))

    @classmethod
    def from_text(cls, text: str, system: str | None = None) -> "PromptTemplate":
        """A single prompt text: with an {input} (or column) placeholder it is the user message; without
        one it is an instruction, sent as the system message, and the input is the user message."""
        text = text.strip("\n")
        if system is not None:
            return cls(system=system, user=text or "{input}")
        if not text.strip():
            raise PromptError("the prompt is empty: write an instruction, e.g. 'Classify the ticket. Answer with one of: {labels}.'")
        if {m.group(1) for m in _PLACEHOLDER.finditer(text)} - {"labels"}:
            return cls(system="", user=text)
        return cls(system=text, user="{input}")

    @classmethod
    def from_file_text(cls, text: str) -> "PromptTemplate":
        """A prompt file: JSON {"system": ..., "user": ...}, or plain text as in from_text."""
        stripped = text.strip()
        if stripped.startswith("{") and stripped.endswith("}"):
            try:
                doc = json.loads(stripped)
            except ValueError:
                doc = None
            if isinstance(doc, dict) and ({"system", "user"} & set(doc)):
                return cls(system=str(doc.get("system", "")), user=str(doc.get("user", "{input}")))
        return cls.from_text(text)

    def placeholders(self) -> set[str]:
        return {m.group(1) for part in (self.system, self.user) for m in _PLACEHOLDER.finditer(part)}

    def check(self, input_cols: tuple[str, ...]) -> None:
        """Raise a PromptError naming any placeholder the dataset cannot fill."""
        known = set(SPECIAL_FIELDS) | set(input_cols)
        unknown = sorted(self.placeholders() - known)
        if unknown:
            raise PromptError(
                f"the prompt uses {', '.join('{' + u + '}' for u in unknown)}, which the dataset cannot fill. "
                f"Available placeholders: {', '.join('{' + k + '}' for k in sorted(known))} "
                "(write {{name}} for literal braces)."
            )
        if not (self.placeholders() & ({"input"} | set(input_cols))):
            raise PromptError("the prompt never shows the example: put {input} (or a column placeholder) in it.")

    def render(self, fields: dict[str, str], text: str, labels: tuple[str, ...]) -> list[dict]:
        def fill(template: str, fields: dict, text: str) -> str:
            values = {**fields, "input": text, "labels": ", ".join(labels)}
            out = _PLACEHOLDER.sub(lambda m: values.get(m.group(1), m.group(0)), template)
            return out.replace("{{", "{").replace("}}", "}")

        system = fill(self.system, fields, text) if self.system.strip() else ""
        turns: list[dict] = []
        demos = self.demos_for(text)
        if demos and self.demo_format == "inline":
            shown = "\n\n".join(
                f"Input: {fill(self.user, dict(d.fields), d.text)}\nAnswer: {d.label}" for d in demos
            )
            system = f"{system}\n\nExamples:\n\n{shown}".strip()
        elif demos:
            for d in demos:
                turns.append({"role": "user", "content": fill(self.user, dict(d.fields), d.text)})
                turns.append({"role": "assistant", "content": d.label})
        messages = [{"role": "system", "content": system}] if system else []
        return messages + turns + [{"role": "user", "content": fill(self.user, fields, text)}]


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
    on_progress: Callable[[int, int], None] | None = None,
    retry: RetryPolicy = RetryPolicy(),
    save: bool = True,
) -> EvalResult:
    """Score `prompt` for `spec` on `examples` (rows of dataset.frame). Each new call is committed as it completes.

    The objective reads each reply (promptlab.scoring): a label metric maps it to a label, a scorer or a judge
    gives it a score in [0, 1] against the example's reference (the judge's calls are cached and recorded like
    the target's, and its reasoning is kept with the row), human grades fetch the outputs only (they are graded
    by hand later). `save=False` keeps the per-example rows out of the evaluations table."""
    prompt.check(dataset.input_cols)
    params = dataset_params(spec, dataset, max_tokens)
    t0 = time.perf_counter()
    requests, keys = [], []
    for fields, text in zip(examples["fields"], examples["text"]):
        record = request_record(spec, prompt.render(fields, text, dataset.labels), params)
        requests.append(record)
        keys.append(request_key(record))
    hits = store.cached_calls(keys)
    todo: dict[str, dict] = {}
    for key, record in zip(keys, requests):
        if key not in hits:
            todo.setdefault(key, record)
    fresh: dict[str, Completion] = {}
    total, done = len(todo), 0
    load_s = warm_up(spec) if todo else 0.0  # model loading is start-up, not evaluation time

    def call(key: str, record: dict) -> tuple[str, Completion]:
        result = complete(spec, record["messages"], params, retry=retry)
        store.record_call(key, record, result, run_id=run_id, purpose="eval")
        return key, result

    workers = spec.max_in_flight  # per endpoint `concurrency`, times its replicas; in-process: 1
    if workers == 1:
        for key, record in todo.items():
            fresh[key] = call(key, record)[1]
            done += 1
            if on_progress:
                on_progress(done, total)
    else:
        with ThreadPoolExecutor(max_workers=workers) as pool:
            for fut in as_completed([pool.submit(call, k, r) for k, r in todo.items()]):
                key, result = fut.result()
                fresh[key] = result
                done += 1
                if on_progress:
                    on_progress(done, total)

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
            metric.read(reply, gold, gold_norm, dataset.labels)
        rows.append({
            "example_idx": int(idx), "text": text, "gold": gold, "gold_norm": gold_norm, "reply": reply,
            "pred": pred, "parse": how, "correct": bool(score is not None and score >= 1.0),
            "error": error, "cached": was_cached, "call_key": key, "score": score, "detail": None,
        })
    metric.finish(store, rows, dataset.kind == "reference", run_id)
    frame = pd.DataFrame(rows, columns=[
        "example_idx", "text", "gold", "gold_norm", "reply", "pred", "parse", "correct", "error", "cached", "call_key",
        "score", "detail",
    ])
    wall = time.perf_counter() - t0 - load_s
    if dataset.id and save:
        store.save_prompt(prompt.id, prompt.system, prompt.user,
                          [d.to_record() for d in prompt.demos] or None, prompt.demo_format, prompt.similar_k,
                          prompt.similar_by)
        mk = model_key(spec, params)
        store.save_evaluations(pd.DataFrame({
            "prompt_id": prompt.id, "model_key": mk, "dataset_id": dataset.id,
            "example_idx": frame["example_idx"].astype("int32"), "call_key": frame["call_key"],
            "reply": frame["reply"], "pred": frame["pred"], "parse": frame["parse"],
            "correct": frame["correct"].astype(bool), "error": frame["error"],
            "score": frame["score"].astype(float), "detail": frame["detail"].astype(object),
        }))
    costs = [c.cost for c in fresh.values() if c.cost is not None]
    return EvalResult(
        prompt=prompt, model=spec.label, metric=metric, split=split, rows=frame, labels=dataset.labels,
        calls=len(fresh), cached=len(keys) - len(fresh),
        errors=sum(1 for c in fresh.values() if not c.ok),
        prompt_tokens=sum(c.prompt_tokens for c in fresh.values()),
        completion_tokens=sum(c.completion_tokens for c in fresh.values()),
        cost=sum(costs) if costs else None, wall_s=wall,
    )


def stored_rows(store: Store, prompt_id: str, model_key_: str, dataset: Dataset, idx=None) -> pd.DataFrame:
    """A prompt's stored per-example rows for one model on a dataset (optionally only the examples in `idx`), with
    each example's text, gold and normalized gold beside them: the rows an Objective reads."""
    rows = store.evaluations(prompt_id, model_key_, dataset.id)
    if idx is not None:
        rows = rows[rows["example_idx"].isin(set(idx))]
    gold = dataset.frame[["idx", "text", "label", "label_norm"]].rename(
        columns={"idx": "example_idx", "label": "gold", "label_norm": "gold_norm"})
    return rows.merge(gold, on="example_idx", how="left")
