"""Run one prompt over examples: render, call (through the cache), map replies to labels, score.

Contract: `evaluate` never raises for one bad example. A failed call becomes a row with its error and
an invalid prediction; the score treats it as wrong, and the invalid rate says how many there were.
"""
from __future__ import annotations

import hashlib
import json
import math
import re
import time
import unicodedata
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from typing import Callable

import pandas as pd

from promptlab import metrics as M
from promptlab.data import Dataset, normalize_label
from promptlab.errors import PromptlabError
from promptlab.similarity import BACKENDS as SIMILARITY_BACKENDS
from promptlab.models import Completion, ModelSpec, RetryPolicy, complete, request_key, request_record, warm_up
from promptlab.objective import is_scored
from promptlab.store import Store

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
        from promptlab.similarity import nearest

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


# --- mapping replies to labels ---------------------------------------------------------------------

_THINK = re.compile(r"<think>.*?</think>", re.S | re.I)
_PREFIX = re.compile(r"^\s*(?:the\s+)?(?:final\s+)?(?:answer|label|category|class|classification|sentiment|output|prediction|result|ответ|метка|категория)\s*(?:is)?\s*[:=\-–]?\s*", re.I)
_SENTENCE = re.compile(r"(?<=[.!?])\s+|\n+")


def _loose(text: str) -> str:
    """Case-folded, NFKC, with _ - and runs of whitespace as single spaces, punctuation trimmed at ends."""
    text = unicodedata.normalize("NFKC", text).casefold()
    text = re.sub(r"[\s_\-]+", " ", text)
    return text.strip(" \t\n\"'`*.,;:!?()[]{}<>«»“”„‘’#")


def parse_label(reply: str, labels: tuple[str, ...]) -> tuple[str | None, str]:
    """Map a model's reply to a label's normalized form. Returns (label or None, how).

    In order: 'exact' (the reply is a label); 'normalized' (equal after trimming case, punctuation,
    markup and an 'Answer:' prefix, for the whole reply or its first line); 'stated' (a line such as
    'Label: X' names one label); 'mention' (the label the reply names first, when every label it
    names is that one). Otherwise invalid: 'ambiguous' (it names different labels, or enumerates
    them as 'A: … B: …'), 'none' (no label named), 'empty'. A negated name ('not positive', 'no
    negative sentiment', 'non-X') is not a mention.
    """
    norms = [normalize_label(lab) for lab in labels]
    if reply is None or not reply.strip():
        return None, "empty"
    stripped = reply.strip()
    for lab, norm in zip(labels, norms):
        if stripped == lab:
            return norm, "exact"
    body = _THINK.sub(" ", stripped).strip()
    loose_labels = {_loose(lab): norm for lab, norm in zip(labels, norms)}
    first_line = next((ln for ln in body.splitlines() if ln.strip()), "")
    for candidate in (body, _PREFIX.sub("", body), first_line, _PREFIX.sub("", first_line)):
        if _loose(candidate) in loose_labels:
            return loose_labels[_loose(candidate)], "normalized"
    stated = [loose_labels[_loose(m.group(1))] for m in _STATED.finditer(body) if _loose(m.group(1)) in loose_labels]
    if stated:
        return stated[-1], "stated"  # the last stated answer is the final one
    headings = {loose_labels[_loose(m.group(1))] for m in _HEADING.finditer(body) if _loose(m.group(1)) in loose_labels}
    if len(headings) > 1:
        return None, "ambiguous"  # 'Billing: …\nTechnical: …' enumerates labels, it does not choose one
    first, named = None, set()
    for sentence in _SENTENCE.split(body):
        found = _mentions(_loose_keep(sentence), loose_labels)
        if found and first is None:
            first = found
        named |= found
    if not named:
        return None, "none"
    if len(first) > 1 or len(named) > 1:
        return None, "ambiguous"
    return first.pop(), "mention"


_STATED = re.compile(
    r"^\s*[*_#>\s]*(?:final\s+)?(?:answer|label|category|class|classification|sentiment|output|prediction|result|ответ|метка|категория)"
    r"\s*[*_]*\s*[:=]\s*[*_\"'`«]*([^\n]+?)[*_\"'`».]*\s*$",
    re.I | re.M,
)
_NEGATION = re.compile(
    r"(?:\b(?:not|no|never|nothing|isn't|isnt|wasn't|aren't|doesn't|don't|didn't|neither|nor|without|lacks|не|нет|ни|без)"
    r"\s+(?:\w+\s+){0,2}|non\s?)$"
)
_HEADING = re.compile(r"^\s*[*_#>\-\s]*([^\n:]{1,40}?)[*_]*\s*:\s*\S", re.M)


def _loose_keep(text: str) -> str:
    text = unicodedata.normalize("NFKC", text).casefold()
    return re.sub(r"[\s_\-]+", " ", text)


def _mentions(sentence: str, loose_labels: dict[str, str]) -> set[str]:
    """Distinct labels named in a sentence as whole words, not negated, not inside a longer label."""
    spans = []
    for loose, norm in loose_labels.items():
        if not loose:
            continue
        for m in re.finditer(r"(?<!\w)" + re.escape(loose) + r"(?!\w)", sentence):
            spans.append((m.start(), m.end(), norm))
    kept = set()
    for s, e, norm in spans:
        if any(s2 <= s and e <= e2 and (e2 - s2) > (e - s) for s2, e2, _ in spans):
            continue
        if _NEGATION.search(sentence[max(0, s - 40):s]):
            continue
        kept.add(norm)
    return kept


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
    metric: M.Metric
    split: str
    rows: pd.DataFrame = field(repr=False)  # example_idx, text, gold, gold_norm, reply, pred, parse, correct, error, cached
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
        """Scored per example (a reference scorer or a judge) rather than by a label metric."""
        return is_scored(self.metric)

    @property
    def score(self) -> float:
        if self.scored:
            return self.metric.mean(self.rows["score"].astype(float))
        return self.metric.score(self.rows["gold_norm"].tolist(), self.preds)

    @property
    def ci(self) -> tuple[float, float]:
        return self.ci_at(0.95)

    def ci_at(self, level: float) -> tuple[float, float]:
        if self.scored:
            return self.metric.interval(self.rows["score"].astype(float), level)
        return M.confidence_interval(self.metric, self.rows["gold_norm"].tolist(), self.preds, level=level)

    @property
    def n_relevant(self) -> int:
        if self.scored:
            return self.n
        return self.metric.n_relevant(self.rows["gold_norm"].tolist(), self.preds)

    @property
    def invalid_rate(self) -> float:
        return M.invalid_rate(self.preds)

    @property
    def accuracy(self) -> float:
        """The share of examples fully right (a label match, or a full score)."""
        if self.scored:
            return float(self.rows["correct"].mean()) if self.n else math.nan
        return M.Metric("accuracy").score(self.rows["gold_norm"].tolist(), self.preds)

    def confusion(self) -> pd.DataFrame:
        if not self.labels:
            return pd.DataFrame()
        return M.confusion_matrix(self.rows["gold_norm"].tolist(), self.preds, self.labels)

    @property
    def examples_per_s(self) -> float:
        return self.n / self.wall_s if self.wall_s > 0 else math.inf

    def summary(self) -> dict:
        lo, hi = self.ci
        return {
            "score": _num(self.score), "metric": self.metric.spec, "metric_description": self.metric.describe(),
            "ci_low": _num(lo), "ci_high": _num(hi), "n": self.n, "n_relevant": self.n_relevant,
            "accuracy": _num(self.accuracy), "invalid_rate": _num(self.invalid_rate),
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
        return M.constant_label(self.preds, self.rows["gold_norm"].tolist()) if self.labels else None

    @property
    def floors(self) -> list[dict]:
        """Each floor of a constrained metric: its value here, its threshold, whether it is met."""
        if self.scored or not getattr(self.metric, "floors", ()):
            return []
        return [{"metric": m, "value": _num(v), "floor": t, "met": ok}
                for m, v, t, ok in self.metric.floor_values(self.rows["gold_norm"].tolist(), self.preds)]


def _num(x: float) -> float | None:
    return None if x is None or (isinstance(x, float) and math.isnan(x)) else round(float(x), 6)


def evaluate(
    store: Store,
    spec: ModelSpec,
    prompt: PromptTemplate,
    dataset: Dataset,
    examples: pd.DataFrame,
    metric: M.Metric,
    *,
    split: str = "all",
    max_tokens: int | None = None,
    run_id: str | None = None,
    on_progress: Callable[[int, int], None] | None = None,
    retry: RetryPolicy = RetryPolicy(),
    save: bool = True,
) -> EvalResult:
    """Score `prompt` for `spec` on `examples` (rows of dataset.frame). Each new call is committed as it completes.

    With a label metric each reply is mapped to a label; with a scorer or a judge (promptlab.objective)
    each reply gets a score in [0, 1] against the example's reference (the judge's calls are cached and
    recorded like the target's, and its reasoning is kept with the row). `metric=None` fetches outputs
    only (to grade by hand); `save=False` keeps the per-example rows out of the evaluations table."""
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
    scored = is_scored(metric)
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
        score, detail = None, None
        if error:
            pred, how = None, "error"
        elif metric is None:  # outputs only (to grade by hand): nothing is scored here
            pred, how = reply.strip(), "output"
        elif not scored:
            pred, how = parse_label(reply, dataset.labels)
        elif metric.judge is None:
            pred, how = reply.strip(), "scored"
            score = metric.scorer.score(reply, gold)
        else:
            pred, how = reply.strip(), "judged"  # the score comes from the judge, below
        if scored and score is None and how != "judged":
            score = 0.0
        rows.append({
            "example_idx": int(idx), "text": text, "gold": gold, "gold_norm": gold_norm, "reply": reply,
            "pred": pred, "parse": how, "correct": (pred == gold_norm) if not scored else bool(score is not None and score >= 1.0),
            "error": error, "cached": was_cached, "call_key": key,
            "score": score if scored or metric is None else (1.0 if pred == gold_norm else 0.0),
            "detail": detail,
        })
    if scored and metric.judge is not None:
        _judge_rows(store, metric.judge, rows, dataset.kind == "reference", run_id)
    frame = pd.DataFrame(rows, columns=[
        "example_idx", "text", "gold", "gold_norm", "reply", "pred", "parse", "correct", "error", "cached", "call_key",
        "score", "detail",
    ])
    wall = time.perf_counter() - t0 - load_s
    if dataset.id and save and metric is not None:
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


def _judge_rows(store: Store, judge, rows: list[dict], with_reference: bool, run_id: str | None) -> None:
    """Grade every judged row in place (score in [0, 1], the judge's reasoning in `detail`). A reply the judge
    could not grade is invalid: it scores 0 and counts in the invalid rate, with the reason kept."""
    todo = [r for r in rows if r["parse"] == "judged"]

    def grade(row: dict):
        return row, judge.grade(store, row["text"], row["reply"], row["gold"] if with_reference else None, run_id=run_id)

    workers = max(1, judge.model.max_in_flight)
    if workers == 1:
        results = [grade(r) for r in todo]
    else:
        with ThreadPoolExecutor(max_workers=workers) as pool:
            results = list(pool.map(grade, todo))
    for row, j in results:
        if j.normalized is None:
            row.update(score=0.0, pred=None, parse="unjudged", correct=False, detail=j.error or j.reasoning)
        else:
            row.update(score=float(j.normalized), correct=j.normalized >= 1.0,
                       detail=f"{j.score:g}/{judge.hi}: {j.reasoning}".strip())


def cached_complete(
    store: Store,
    spec: ModelSpec,
    messages: list[dict],
    params: dict,
    *,
    sample: str | None = None,
    run_id: str | None = None,
    purpose: str = "",
    retry: RetryPolicy = RetryPolicy(),
) -> Completion:
    """One call through the DuckDB cache: served from it if this exact request succeeded before,
    otherwise made and committed at once (a failure is recorded but never served later)."""
    record = request_record(spec, messages, params, sample=sample)
    key = request_key(record)
    hit = store.cached_calls([key]).get(key)
    if hit is not None:
        return Completion(
            text=hit.response, prompt_tokens=hit.prompt_tokens, completion_tokens=hit.completion_tokens,
            latency_s=hit.latency_s, cost=hit.cost, cached=True,
        )
    warm_up(spec)
    result = complete(spec, messages, params, retry=retry)
    store.record_call(key, record, result, run_id=run_id, purpose=purpose)
    return result
