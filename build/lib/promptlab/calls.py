"""Calling a model: the only litellm import. `complete` sends one request with retries on transient errors, bounded
concurrency per endpoint and least-busy dispatch over replicas, and returns a frozen Completion (a failed call is a
value, not an exception); `cached_complete` is the same call through the DuckDB call cache, the helper the judge,
the proposers and the critics share (evaluate batches its own calls through the same cache).

Every call, to a local zoo model, an OpenAI-compatible server or a hosted provider, goes through
``litellm.completion``. Local models are a registered litellm custom provider (``local/<key>``), so
retries, error classification, timing and the call cache treat them exactly like remote ones.
"""
from __future__ import annotations

import os
import threading
import time
from contextlib import contextmanager
from dataclasses import replace
from email.utils import parsedate_to_datetime
from typing import Callable

from promptlab import local
from promptlab.errors import PromptlabError
from promptlab.models import Completion, ModelSpec, RetryPolicy, request_key, request_record
from promptlab.store import Store

# litellm takes 2.5-3.5 s to import. Reading datasets, runs and results never calls a model, so it is imported on the
# first call instead (`import promptlab.data` ~1 s instead of ~4, `promptlab runs list` likewise); `_lib()` then sets it up
# once and installs the registered custom providers.
_LIB = None
_LIB_LOCK = threading.Lock()
ProviderFn = Callable[[str, list[dict], dict], dict]
_PROVIDERS: dict[str, ProviderFn] = {}


# Set on import, not on first use: a script that imports promptlab and then litellm itself never fetches it either.
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")  # never fetch the price map at import


def _lib():
    """litellm, imported and configured on first use (thread-safe; once per process)."""
    global _LIB
    if _LIB is not None:
        return _LIB
    with _LIB_LOCK:
        if _LIB is None:
            import litellm  # heavy (2.5-3.5 s): loaded by the first model call, see above

            litellm.telemetry = False
            litellm.suppress_debug_info = True
            litellm.drop_params = False  # an unsupported parameter is an error, never silently dropped
            _LIB = litellm
            for prefix, fn in _PROVIDERS.items():
                _install(prefix, fn)
    return _LIB


# (kind, transient) by litellm exception class name; litellm maps every provider's errors onto these.
_ERROR_KINDS: list[tuple[str, str, bool]] = [
    ("Timeout", "timeout", True),
    ("RateLimitError", "rate_limit", True),
    ("ContextWindowExceededError", "context_length", False),
    ("ContentPolicyViolationError", "content_filter", False),
    ("AuthenticationError", "auth", False),
    ("PermissionDeniedError", "auth", False),
    ("NotFoundError", "not_found", False),
    ("BadRequestError", "bad_request", False),
    ("UnprocessableEntityError", "bad_request", False),
    ("ServiceUnavailableError", "server_error", True),
    ("InternalServerError", "server_error", True),
    ("BadGatewayError", "server_error", True),
    ("APIConnectionError", "connection", True),
]


def classify_error(exc: BaseException) -> tuple[str, bool]:
    """(kind, transient) for an exception raised by a call."""
    names = {cls.__name__ for cls in type(exc).__mro__}
    for cls_name, kind, transient in _ERROR_KINDS:
        if cls_name in names:
            return kind, transient
    status = getattr(exc, "status_code", None)
    if isinstance(status, int):
        if status == 429:
            return "rate_limit", True
        if status >= 500:
            return "server_error", True
        if status in (401, 403):
            return "auth", False
        return "bad_request", False
    if isinstance(exc, (TimeoutError,)):
        return "timeout", True
    if isinstance(exc, (ConnectionError,)):
        return "connection", True
    if isinstance(exc, PromptlabError):
        return "config", False
    return "unknown", False


def _refine_kind(kind: str, exc: BaseException) -> str:
    text = str(exc).lower()
    if kind in ("bad_request", "unknown") and ("context window" in text or "context length" in text or "maximum context" in text):
        return "context_length"
    if kind == "server_error" and ("connection error" in text or "connection refused" in text or "connecterror" in text):
        return "connection"  # litellm reports a refused connection as a 500
    return kind


def _retry_after(exc: BaseException) -> float | None:
    """Seconds the server asked us to wait (Retry-After: seconds or an HTTP date), if it said."""
    for headers in (getattr(exc, "litellm_response_headers", None), getattr(exc, "headers", None),
                    getattr(getattr(exc, "response", None), "headers", None)):
        value = headers.get("retry-after") if hasattr(headers, "get") else None
        if value is None:
            continue
        try:
            return max(0.0, float(value))
        except ValueError:
            pass
        try:
            return max(0.0, parsedate_to_datetime(value).timestamp() - time.time())
        except (TypeError, ValueError):
            return None
    return None


def _error_text(exc: BaseException, secret_value: str | None = None) -> str:
    text = f"{type(exc).__name__}: {exc}"
    if secret_value and len(secret_value) >= 4:
        text = text.replace(secret_value, "***")  # servers echo a rejected key back in their error message
    return text[:2000]


# Registered rather than passed in: a key is read deep inside complete(), reached from worker threads through
# runs, studies and evaluations; passing a lookup down every one of those calls would put the dashboard in each
# signature, and a ModelSpec stays a plain value that never holds a key. One slot, so the library never
# imports a front end: the dashboard fills it with st.secrets when it is imported.
_secret_lookup: Callable[[str], str | None] | None = None


def set_secret_lookup(lookup: Callable[[str], str | None] | None) -> None:
    """Where secret() looks after the environment (the dashboard: .streamlit/secrets.toml); None: nowhere."""
    global _secret_lookup
    _secret_lookup = lookup


def secret(name: str) -> str | None:
    """An API key by its name: from the environment, else from the registered lookup (the dashboard's
    .streamlit/secrets.toml, registered when promptlab.dashboard is imported: a Streamlit script of your own that
    keeps keys in st.secrets imports it too, or calls set_secret_lookup). Keys live only in memory: never in the
    store, logs or exports."""
    value = os.environ.get(name) or (_secret_lookup(name) if _secret_lookup is not None else None)
    return str(value) if value else None


def _api_key(spec: ModelSpec) -> str | None:
    if spec.api_key_env:
        key = secret(spec.api_key_env)
        if not key:
            raise PromptlabError(
                f"environment variable {spec.api_key_env} is not set: export it with the API key for {spec.model} "
                "(or, for the dashboard, put it in .streamlit/secrets.toml)"
            )
        return key
    if spec.api_base and spec.model.startswith("openai/"):
        return "no-key"  # keyless local servers; the OpenAI client refuses an empty key
    return None


def complete(
    spec: ModelSpec,
    messages: list[dict],
    params: dict | None = None,
    retry: RetryPolicy = RetryPolicy(),
    sleep: Callable[[float], None] = time.sleep,
) -> Completion:
    """Call the model once (with bounded retries on transient errors). Never raises for a failed call."""
    call_params = {**spec.params, **(params or {})}
    t0 = time.perf_counter()
    attempt = 0
    failures: list[str] = []
    key = None
    while True:
        attempt += 1
        try:
            kwargs = dict(call_params)
            key = _api_key(spec)
            if key:
                kwargs["api_key"] = key
            with _endpoint(spec) as served_by:
                if served_by:
                    kwargs["api_base"] = served_by
                response = _lib().completion(
                    model=spec.model, messages=messages, timeout=spec.timeout_s, num_retries=0, **kwargs
                )
            result = replace(_completion_from(response, time.perf_counter() - t0, attempt), served_by=served_by)
        except Exception as exc:  # noqa: BLE001 - every failure becomes a recorded value
            kind, transient = classify_error(exc)
            kind = _refine_kind(kind, exc)
            error = _error_text(exc, key)
            failures.append(f"{kind}: {error[:300]}")
            if transient and attempt < retry.max_attempts:
                sleep(retry.delay(attempt, _retry_after(exc)))
                continue
            return Completion(
                text="", latency_s=time.perf_counter() - t0, error=error,
                error_kind=kind, attempts=attempt, failures=tuple(failures),
            )
        if result.text.strip():
            return replace(result, failures=tuple(failures))
        # An empty reply is a failed call (a glitching endpoint sends them): retried, and never cached.
        failures.append("empty_reply: the endpoint answered with no text")
        if attempt < retry.max_attempts:
            sleep(retry.delay(attempt))
            continue
        return replace(result, error="EmptyReply: the endpoint answered with no text on every attempt",
                       error_kind="empty_reply", failures=tuple(failures))


# --- bounded concurrency per endpoint, and least-busy dispatch over replicas ----------------------
#
# Why not litellm's Router here: on its synchronous path (the one threads use) it neither enforces a
# deployment's max_parallel_requests nor counts a call as in flight before the next thread picks, so
# simultaneous calls pile onto one replica (measured in review: 14 of 16 on one of two). Both are a
# few lines with one condition variable, and litellm still makes every call.

_in_flight: dict[str, int] = {}
_flight = threading.Condition()


@contextmanager
def _endpoint(spec: ModelSpec):
    """The endpoint for one call, held while it runs: the least busy of the spec's endpoints that has
    fewer than `spec.concurrency` calls in flight from this process (waits while all are full). Every
    thread, run and role (target, proposer) in the process shares the counts, so a server is kept busy
    and never sent more than its setting; each spec's own setting applies to its own calls."""
    if not spec.api_base:
        yield None
        return
    limit = max(1, spec.concurrency)
    with _flight:
        while True:
            load, _, chosen = min((_in_flight.get(e, 0), i, e) for i, e in enumerate(spec.endpoints))
            if load < limit:
                break
            _flight.wait()
        _in_flight[chosen] = load + 1
    try:
        yield chosen
    finally:
        with _flight:
            _in_flight[chosen] -= 1
            _flight.notify_all()


def _completion_from(response, latency_s: float, attempts: int) -> Completion:
    choice = response.choices[0]
    text = (getattr(choice.message, "content", None) or "") if hasattr(choice, "message") else ""
    usage = getattr(response, "usage", None)
    try:
        cost = float(_lib().completion_cost(completion_response=response))
    except Exception:  # noqa: BLE001 - unknown price (local or unlisted model): cost stays unknown
        cost = None
    return Completion(
        text=text,
        prompt_tokens=int(getattr(usage, "prompt_tokens", 0) or 0),
        completion_tokens=int(getattr(usage, "completion_tokens", 0) or 0),
        latency_s=latency_s,
        cost=cost,
        attempts=attempts,
    )


# --- custom providers (local zoo; scripted fakes in tests) -----------------------------------------

# Keys litellm adds to a custom provider's params on its own; the user's params pass through untouched.
_LITELLM_INTERNAL = {"max_retries", "stream", "stream_options"}


def _provider(fn: ProviderFn):
    """A litellm custom handler that calls fn and maps its exceptions onto litellm's (400: the request is bad,
    500: the model failed), so retries and error kinds treat a local model like a remote one."""
    litellm = _LIB
    from litellm.llms.custom_llm import CustomLLMError  # heavy: part of litellm, loaded with it by _lib()

    class Provider(litellm.CustomLLM):
        def completion(self, model, messages, *args, optional_params=None, **kwargs):  # noqa: D401
            params = {k: v for k, v in (optional_params or {}).items() if k not in _LITELLM_INTERNAL}
            try:
                out = fn(model, messages, params)
            except PromptlabError as exc:
                raise CustomLLMError(400, str(exc)) from exc
            except ValueError as exc:  # llama.cpp: prompt longer than the context window, bad arguments
                raise CustomLLMError(400, f"{exc}") from exc
            except Exception as exc:  # noqa: BLE001
                raise CustomLLMError(500, f"{type(exc).__name__}: {exc}") from exc
            return litellm.ModelResponse(**out)

    return Provider()


def _install(prefix: str, fn: ProviderFn) -> None:
    from litellm.utils import custom_llm_setup  # heavy: part of litellm, loaded with it by _lib()

    litellm = _LIB
    entries = [e for e in (litellm.custom_provider_map or []) if e["provider"] != prefix]
    entries.append({"provider": prefix, "custom_handler": _provider(fn)})
    litellm.custom_provider_map = entries
    litellm.custom_provider_map_set = False  # noqa - re-read on the next call
    custom_llm_setup()


def register_provider(prefix: str, fn: ProviderFn) -> None:
    """Route `prefix/<model>` through litellm to fn(model, messages, params) -> OpenAI-shaped dict."""
    with _LIB_LOCK:
        _PROVIDERS[prefix] = fn
        if _LIB is not None:
            _install(prefix, fn)


def _local_provider(model: str, messages: list[dict], params: dict) -> dict:
    return local.chat(model, messages, params)


register_provider("local", _local_provider)


def warm_up(spec: ModelSpec) -> float:
    """Load a local model now (so timing excludes it); returns seconds spent. No-op for remote models."""
    if not spec.is_local:
        return 0.0
    t0 = time.perf_counter()
    local.load(spec.model.split("/", 1)[1])
    return time.perf_counter() - t0


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
