"""What a prompt costs per call, measured from its stored calls: mean prompt and completion tokens, median
latency, and (for models in litellm's cost map) the price per 1,000 calls. The ceilings a search holds a prompt's cost
to are promptlab.optimize.ceiling.

A prompt's cost is read from the calls that scored it on the examples it was scored on, so it includes its
demonstrations and the replies it provokes. Latency is the median, not the mean: one slow call (a model
loading, a retry) says little about the prompt. A call answered from the cache counts with the call that
answered it, so a cost does not fall because a run was repeated.
"""
from __future__ import annotations

import math
import statistics
from dataclasses import asdict, dataclass

from promptlab.text import number_or_none


@dataclass(frozen=True)
class Cost:
    calls: int = 0
    prompt_tokens: float | None = None  # mean per call
    completion_tokens: float | None = None  # mean per call
    latency_s: float | None = None  # median per call
    price_per_1k: float | None = None  # dollars per 1,000 calls; None: the model's price is unknown

    def value(self, measure: str) -> float | None:
        return {"tokens": self.prompt_tokens, "latency": self.latency_s, "price": self.price_per_1k}[measure]

    def to_record(self) -> dict:
        return {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in asdict(self).items()}

    @classmethod
    def from_record(cls, rec: dict | None) -> Cost:
        return cls(**{k: v for k, v in (rec or {}).items() if k in cls.__dataclass_fields__})

    def line(self) -> str:
        """'359 tokens in, 2 out, 1.99 s per call (median of 140)'; with a known price, '$0.12 per 1,000 calls'."""
        if not self.calls:
            return "no calls measured"
        parts = [f"{_num(self.prompt_tokens)} tokens in, {_num(self.completion_tokens)} out",
                 f"{self.latency_s:.2f} s per call (median of {self.calls})" if self.latency_s is not None else
                 f"latency unknown ({self.calls} calls)"]
        if self.price_per_1k is not None:
            parts.append(f"${self.price_per_1k:.4g} per 1,000 calls")
        return ", ".join(parts)


def _num(x: float | None) -> str:
    return "?" if number_or_none(x) is None else f"{x:.0f}"


def from_row(row) -> Cost:
    """A Cost from one row of Store.prompt_costs."""
    calls = int(row["calls"])
    priced = int(row["priced"])
    price = number_or_none(row["price"])
    return Cost(calls=calls, prompt_tokens=number_or_none(row["prompt_tokens"]), completion_tokens=number_or_none(row["completion_tokens"]),
                latency_s=number_or_none(row["latency_s"]),
                price_per_1k=price * 1000 if price is not None and priced == calls and calls else None)


def costs(store, prompt_ids, model_key: str, dataset_id: str, idx=None) -> dict[str, Cost]:
    """Each prompt's Cost from its stored calls for one model on a dataset (on the examples in `idx` if given);
    a prompt with none has Cost() (calls 0)."""
    frame = store.prompt_costs(list(prompt_ids), model_key, dataset_id, idx)
    found = {r["prompt_id"]: from_row(r) for _, r in frame.iterrows()}
    return {pid: found.get(pid, Cost()) for pid in prompt_ids}


def cost_of_calls(store, call_keys) -> Cost:
    """The Cost of a set of calls by their keys (an evaluation's rows, which may not be stored)."""
    keys = [k for k in call_keys if isinstance(k, str)]
    hits = store.cached_calls(keys)
    calls = [hits[k] for k in keys if k in hits]
    if not calls:
        return Cost()
    priced = [c.cost for c in calls if c.cost is not None]
    return Cost(calls=len(calls), prompt_tokens=sum(c.prompt_tokens for c in calls) / len(calls),
                completion_tokens=sum(c.completion_tokens for c in calls) / len(calls),
                latency_s=statistics.median(c.latency_s for c in calls),
                price_per_1k=1000 * sum(priced) / len(priced) if len(priced) == len(calls) else None)
