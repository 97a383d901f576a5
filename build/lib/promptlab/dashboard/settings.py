"""What the dashboard remembers across pages (session state, namespaced), its default models, and API keys from st.secrets."""
from __future__ import annotations

from typing import Any

import streamlit as st

DEFAULT_TARGET = "local/qwen2.5-coder-0.5b"
DEFAULT_PROPOSERS = ["local/qwen2.5-coder-1.5b", "local/smollm2-135m"]  # same family bigger, and another family


def remembered(key: str, default: Any) -> Any:
    """A value shared across pages; a default of None only reads (so a page that merely looks, such as
    Runs reading the meta-prompt, never blanks a value another page fills in with its own default)."""
    if default is None:
        return st.session_state.get(f"promptlab.{key}")
    return st.session_state.setdefault(f"promptlab.{key}", default)


def remember(key: str, value: Any) -> None:
    st.session_state[f"promptlab.{key}"] = value


def remembered_prompt_keys(ds) -> tuple[str, str]:
    """Where the Prompts and proposers page keeps the meta-prompt template (one per kind of task) and the task text (one per
    dataset), for the Runs page to start runs with them."""
    return ("meta_prompt" if ds.has_labels else "meta_prompt_open"), f"task.{ds.name}"


def streamlit_secret(name: str) -> Any:
    """An API key from .streamlit/secrets.toml: the lookup promptlab.calls.secret consults after the environment."""
    try:
        return st.secrets.get(name)
    except Exception:  # noqa: BLE001 - no secrets file, or not inside a Streamlit app
        return None
