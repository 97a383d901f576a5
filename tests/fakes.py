"""Scripted fake models for unit tests of logic: they go through litellm like every real model."""
from __future__ import annotations

import threading
from typing import Callable

from promptlab.calls import register_provider

_scripts: dict[str, Callable[[list[dict], dict], str]] = {}
calls: dict[str, int] = {}
_lock = threading.Lock()


def _fake(model: str, messages: list[dict], params: dict) -> dict:
    with _lock:
        calls[model] = calls.get(model, 0) + 1
    reply = _scripts[model](messages, params)
    if isinstance(reply, BaseException):
        raise reply
    return {
        "choices": [{"index": 0, "message": {"role": "assistant", "content": reply}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": sum(len(m["content"].split()) for m in messages), "completion_tokens": 1,
                  "total_tokens": 0},
        "model": model,
    }


register_provider("fake", _fake)


def script(name: str, fn: Callable[[list[dict], dict], str]) -> str:
    """Register fake/<name>; fn(messages, params) returns the reply text (or an exception to raise)."""
    _scripts[name] = fn
    calls[f"{name}"] = 0
    return f"fake/{name}"


def count(name: str) -> int:
    return calls.get(name, 0)
