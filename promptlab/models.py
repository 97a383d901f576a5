"""Model specs, family inference, and the one function that calls a model (the only litellm import).

Every call, to a local zoo model, an OpenAI-compatible server or a hosted provider, goes through
``litellm.completion``. Local models are a registered litellm custom provider (``local/<key>``), so
retries, error classification, timing and the call cache treat them exactly like remote ones.
"""
from __future__ import annotations

import hashlib
import json
import os
import random
import re
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from email.utils import parsedate_to_datetime
from typing import Callable

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")  # never fetch the price map at import
import litellm  # noqa: E402
from litellm.llms.custom_llm import CustomLLMError  # noqa: E402
from litellm.utils import custom_llm_setup  # noqa: E402

from promptlab import local  # noqa: E402
from promptlab.errors import PromptlabError  # noqa: E402

litellm.telemetry = False
litellm.suppress_debug_info = True
litellm.drop_params = False  # an unsupported parameter is an error, never silently dropped


# --- specs -----------------------------------------------------------------------------------------

@dataclass(frozen=True)
class ModelSpec:
    """A model as a small value: what to call and how. Holds the *name* of the key's env var, never a key.

    params: generation parameters forwarded verbatim to the call (temperature, max_tokens, ...).
    concurrency: how many calls may be in flight at once to each endpoint (local in-process models always
    run serially). With several endpoints in `api_base` (replicas of one model, comma-separated), each
    call goes to the least busy one.
    """

    model: str
    api_base: str | None = None
    api_key_env: str | None = None
    family: str = "unknown"
    size_b: float | None = None
    params: dict = field(default_factory=dict, hash=False, compare=True)
    concurrency: int = 1
    timeout_s: float = 120.0
    name: str | None = None  # a user's alias for a configured model

    @property
    def label(self) -> str:
        return self.name or self.model

    @property
    def is_local(self) -> bool:
        return self.model.startswith("local/")

    @property
    def endpoints(self) -> tuple[str, ...]:
        """The replicas serving this model: `api_base` may list several, comma-separated."""
        return tuple(b.strip().rstrip("/") for b in (self.api_base or "").split(",") if b.strip())

    @property
    def cache_base(self) -> str | None:
        """The endpoint as it enters cache keys. Replicas serve the same model, so a replica set is one
        cache whatever its members (adding a GPU does not make every call miss); one server keeps its URL."""
        return self.api_base if len(self.endpoints) <= 1 else "replicas"

    @property
    def max_in_flight(self) -> int:
        """How many calls may run at once: `concurrency` per endpoint (in-process models: one)."""
        if self.is_local:
            return 1
        return max(1, self.concurrency) * max(1, len(self.endpoints))

    def with_params(self, **params) -> "ModelSpec":
        return replace(self, params={**self.params, **params})

    def to_record(self) -> dict:
        """JSON-safe description (no secrets: only the env var's name)."""
        return {
            "model": self.model, "api_base": self.api_base, "api_key_env": self.api_key_env,
            "family": self.family, "size_b": self.size_b, "params": dict(self.params),
            "concurrency": self.concurrency, "timeout_s": self.timeout_s, "name": self.name,
        }


# Ordered: the first pattern found in the model's name wins.
_FAMILY_PATTERNS: list[tuple[str, str]] = [
    ("smollm", r"smol-?lm"),
    ("qwen", r"qwen|qwq"),
    ("gemma", r"gemma"),
    ("gemini", r"gemini"),
    ("llama", r"llama|(?<![a-z])llava"),
    ("mistral", r"mistral|mixtral|codestral|ministral|magistral|pixtral|devstral"),
    ("phi", r"(?<![a-z])phi-?\d|(?<![a-z])phi(?![a-z])"),
    ("gpt", r"(?<![a-z])(gpt|chatgpt|davinci|o[1-9])(?![a-z])"),
    ("claude", r"claude"),
    ("deepseek", r"deepseek"),
    ("cohere", r"command-?r|(?<![a-z])command(?![a-z])|cohere|(?<![a-z])aya(?![a-z])"),
    ("granite", r"granite"),
    ("yi", r"(?<![a-z])yi-"),
    ("falcon", r"falcon"),
    ("olmo", r"olmo"),
    ("nemotron", r"nemotron"),
    ("glm", r"(?<![a-z])(chat)?glm"),
    ("internlm", r"internlm"),
    ("grok", r"grok"),
    ("kimi", r"kimi|moonshot"),
]
_MOE_SIZE = re.compile(r"(?<![a-z\d.])(\d+)x(\d+(?:\.\d+)?)b(?![a-z])")
_SIZE = re.compile(r"(?<![a-z\d.])(\d+(?:\.\d+)?)([bm])(?![a-z])")


def infer_family(model: str) -> tuple[str, float | None]:
    """Family and size in billions of parameters, read from a model's name; ('unknown', None) if unsure.

    >>> infer_family("openrouter/google/gemma-2-27b-it")
    ('gemma', 27.0)
    """
    name = model.lower()
    if name.startswith("local/"):
        zoo = local.ZOO.get(name.split("/", 1)[1])
        if zoo:
            return zoo.family, zoo.size_b
    family = "unknown"
    for fam, pattern in _FAMILY_PATTERNS:
        if re.search(pattern, name):
            family = fam
            break
    last = name.rsplit("/", 1)[-1]
    size = None
    if m := _MOE_SIZE.search(last):
        size = int(m.group(1)) * float(m.group(2))
    elif m := _SIZE.search(last):
        size = float(m.group(1)) / (1000.0 if m.group(2) == "m" else 1.0)
    return family, size


def _default_concurrency(model: str, api_base: str | None) -> int:
    if model.startswith(("local/", "fake/")):
        return 1
    if api_base and re.search(r"//(127\.|localhost|\[::1\])", api_base):
        return 2  # a local server (llama.cpp, Ollama) serves about one request at a time
    return 8


def make_spec(
    model: str,
    *,
    api_base: str | None = None,
    api_key_env: str | None = None,
    family: str | None = None,
    size_b: float | None = None,
    params: dict | None = None,
    concurrency: int | None = None,
    timeout_s: float = 120.0,
    name: str | None = None,
) -> ModelSpec:
    """Build a spec from a litellm model string; family and size are inferred unless given."""
    model = model.strip()
    if not model:
        raise PromptlabError("model name is empty: give a litellm model string such as local/qwen2.5-coder-0.5b")
    if model.startswith("local/"):
        local.zoo_model(model.split("/", 1)[1])  # a clear error for an unknown zoo key
    if api_key_env and not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", api_key_env):
        raise PromptlabError(
            f"'{api_key_env[:8]}…' is not an environment variable name. Give the *name* of the "
            "variable that holds the key (e.g. OPENAI_API_KEY), never the key itself."
        )
    for base in (api_base or "").split(","):
        if base.strip() and not re.match(r"https?://[^/\s]+", base.strip()):
            raise PromptlabError(
                f"api_base '{base.strip()[:60]}' is not a URL: give http(s)://host:port/v1, several replicas "
                "separated by commas"
            )
    if concurrency is not None and concurrency < 1:
        raise PromptlabError(f"concurrency {concurrency} is not a number of calls in flight: give 1 or more")
    fam, size = infer_family(model)
    return ModelSpec(
        model=model,
        api_base=api_base or None,
        api_key_env=api_key_env or None,
        family=(family or fam).lower(),
        size_b=size_b if size_b is not None else size,
        params=dict(params or {}),
        concurrency=concurrency or _default_concurrency(model, api_base),
        timeout_s=timeout_s,
        name=name,
    )


def spec_from_record(rec: dict) -> ModelSpec:
    return ModelSpec(**{k: rec[k] for k in ModelSpec.__dataclass_fields__ if k in rec})


# --- completions -----------------------------------------------------------------------------------

@dataclass(frozen=True)
class Completion:
    """The outcome of one call. `error` is None on success; a failed call is a value, not an exception."""

    text: str
    prompt_tokens: int = 0
    completion_tokens: int = 0
    latency_s: float = 0.0
    cost: float | None = None
    error: str | None = None
    error_kind: str | None = None
    attempts: int = 1
    cached: bool = False
    served_by: str | None = None  # the endpoint that answered (one of a spec's replicas)
    failures: tuple[str, ...] = ()  # every failed attempt, "kind: message", including the last when it failed

    @property
    def ok(self) -> bool:
        return self.error is None


def request_record(
    spec: ModelSpec, messages: list[dict], params: dict | None = None, sample: str | None = None
) -> dict:
    """Everything that determines a reply, and nothing secret: the basis of the cache key.

    `sample` names one draw when the same request is meant to be sampled more than once (a proposer
    asked again in a later round, or in another run): it is part of the key, never sent to the model.
    """
    record = {
        "model": spec.model,
        "api_base": spec.cache_base,
        "messages": messages,
        "params": {**spec.params, **(params or {})},
    }
    if sample is not None:
        record["sample"] = sample
    return record


def request_key(record: dict) -> str:
    """sha256 of the sorted JSON of a request (stable across processes, unlike hash())."""
    blob = json.dumps(record, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff with full jitter, on transient errors only, bounded in attempts and delay."""

    max_attempts: int = 4
    base_delay_s: float = 0.5
    max_delay_s: float = 20.0

    def delay(self, attempt: int, retry_after: float | None = None) -> float:
        backoff = random.uniform(0, min(self.max_delay_s, self.base_delay_s * 2 ** (attempt - 1)))
        if retry_after is not None:
            backoff = max(backoff, min(retry_after, self.max_delay_s))
        return backoff


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
                response = litellm.completion(
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
        cost = float(litellm.completion_cost(completion_response=response))
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

ProviderFn = Callable[[str, list[dict], dict], dict]
# Keys litellm adds to a custom provider's params on its own; the user's params pass through untouched.
_LITELLM_INTERNAL = {"max_retries", "stream", "stream_options"}


class _Provider(litellm.CustomLLM):
    def __init__(self, fn: ProviderFn):
        super().__init__()
        self.fn = fn

    def completion(self, model, messages, *args, optional_params=None, **kwargs):  # noqa: D401
        params = {k: v for k, v in (optional_params or {}).items() if k not in _LITELLM_INTERNAL}
        try:
            out = self.fn(model, messages, params)
        except PromptlabError as exc:
            raise CustomLLMError(400, str(exc)) from exc
        except ValueError as exc:  # llama.cpp: prompt longer than the context window, bad arguments
            raise CustomLLMError(400, f"{exc}") from exc
        except Exception as exc:  # noqa: BLE001
            raise CustomLLMError(500, f"{type(exc).__name__}: {exc}") from exc
        return litellm.ModelResponse(**out)


def register_provider(prefix: str, fn: ProviderFn) -> None:
    """Route `prefix/<model>` through litellm to fn(model, messages, params) -> OpenAI-shaped dict."""
    entries = [e for e in (litellm.custom_provider_map or []) if e["provider"] != prefix]
    entries.append({"provider": prefix, "custom_handler": _Provider(fn)})
    litellm.custom_provider_map = entries
    litellm.custom_provider_map_set = False  # noqa - re-read on the next call
    custom_llm_setup()


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


def resolve_model(name: str, store=None) -> ModelSpec:
    """A configured model by its name (stored with `models add`), else a litellm model string."""
    if store is not None:
        rec = store.model_record(name)
        if rec is not None:
            return spec_from_record(rec)
    if "/" not in name and not name.startswith(("gpt", "o1", "o3", "o4", "claude", "gemini")):
        raise PromptlabError(
            f"unknown model '{name}'. Use local/<key> for the embedded zoo (see `models list`), a litellm model "
            "string such as openai/gpt-4o-mini or ollama/qwen2.5:7b, or the name of a model added with `models add`."
        )
    return make_spec(name)


def relation(target: ModelSpec | dict, proposer: ModelSpec | dict) -> str:
    """How a proposer relates to the target: 'same family, bigger' / 'same size' / 'smaller', or 'cross family'."""
    t = target if isinstance(target, dict) else target.to_record()
    p = proposer if isinstance(proposer, dict) else proposer.to_record()
    if not t.get("family") or t.get("family") == "unknown" or t.get("family") != p.get("family"):
        return "cross family"
    ts, ps = t.get("size_b"), p.get("size_b")
    if ts is None or ps is None or abs(ts - ps) < 1e-9:
        return "same family, same size" if ts is not None and ps is not None else "same family, size unknown"
    return "same family, bigger" if ps > ts else "same family, smaller"
