"""One model call through the DuckDB call cache: the helper the judge, the proposers and the critics share, kept
apart from evaluate (a batch of calls) so that modules evaluate depends on can use it too."""
from __future__ import annotations

from promptlab.models import Completion, ModelSpec, RetryPolicy, complete, request_key, request_record, warm_up
from promptlab.store import Store


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
