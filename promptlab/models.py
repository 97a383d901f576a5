"""What a model is: specs (a litellm model string, endpoints, family, size, params), family inference, the request
record that keys the call cache, and a configured model by name. Nothing here calls a model or imports litellm, so
reading datasets, runs and results never waits for litellm to load; `calls.py` makes the calls.
"""
from __future__ import annotations

import hashlib
import json
import random
import re
from dataclasses import dataclass, field

from promptlab import local
from promptlab.errors import PromptlabError

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
