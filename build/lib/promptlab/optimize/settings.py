"""A strategy's settings, declared once beside its field: name, default, help, how to check a value.

Each strategy is a frozen dataclass; a field declared with `setting(...)` is a setting users may change.
`make_config` checks values with it, the CLI builds its flags from it and the Runs page its widgets, so a
new setting is one line in its strategy and nothing else repeats its name, default or limits.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any

from promptlab.errors import PromptlabError


@dataclass(frozen=True)
class Setting:
    name: str  # the strategy's field, and the key in a run's strategy_params
    default: Any
    help: str
    type: str = "str"  # str | int | float | bool | choice | choices (several) | model | demos
    choices: tuple = ()
    low: float | None = None
    high: float | None = None
    flag: str = ""  # the CLI flag; default --name-with-dashes
    key: str = ""  # the Runs page widget key suffix; default the name
    label: str = ""  # the Runs page label; default the help's first clause
    none: str = ""  # what None means, when None is allowed (e.g. "all of them")

    @property
    def cli_flag(self) -> str:
        return self.flag or "--" + self.name.replace("_", "-")

    @property
    def ui_key(self) -> str:
        return self.key or self.name

    def check(self, value):
        """The value in stored form, or a PromptlabError saying what is wrong and what is allowed."""
        if value is None and self.none:
            return None
        where = f"{self.cli_flag.lstrip('-')}"
        try:
            if self.type == "int":
                value = _int(value)
            elif self.type == "float":
                value = float(value)
                if not math.isfinite(value):
                    raise ValueError(value)
            elif self.type == "bool":
                value = _bool(value)
            elif self.type == "demos":
                value = _demos(value)
            elif self.type == "choices":
                value = tuple(v.strip() for v in (value.split(",") if isinstance(value, str) else value) if str(v).strip())
            elif self.type == "model":
                return value  # resolved by the caller (a ModelSpec or its record)
        except (TypeError, ValueError):
            raise PromptlabError(f"{where} must be {_kind(self)}, not {value!r}") from None
        if self.type == "choice" and value not in self.choices:
            raise PromptlabError(f"{where} must be {' or '.join(map(str, self.choices))}, not {value!r}")
        if self.type == "choices":
            bad = [v for v in value if v not in self.choices]
            if bad or not value:
                what = (self.label or self.name).lower()
                raise PromptlabError(f"unknown {what} value(s) {', '.join(bad) or '(none given)'} ({self.cli_flag}): "
                                     f"use {', '.join(self.choices)}")
        if self.low is not None and isinstance(value, (int, float)) and value < self.low:
            raise PromptlabError(f"{where} must be at least {self.low:g}, not {value!r}")
        if self.high is not None and isinstance(value, (int, float)) and value > self.high:
            raise PromptlabError(f"{where} must be at most {self.high:g}, not {value!r}")
        return value


def setting(default, help: str, **kw):
    """A dataclass field that is also a user setting (see Setting)."""
    return field(default=default, metadata={"setting": kw | {"help": help}})


def settings_of(cls) -> list[Setting]:
    """The settings a strategy class declares, in field order."""
    out = []
    for f in dataclasses.fields(cls):
        meta = f.metadata.get("setting")
        if meta is not None:
            default = f.default if f.default is not dataclasses.MISSING else None
            out.append(Setting(name=f.name, default=default, **meta))
    return out


def merged_settings(classes) -> dict[str, Setting]:
    """One Setting per name over several strategies (a chain, or the CLI's flags): the first declaration,
    with the choices of every declaration that shares the name."""
    out: dict[str, Setting] = {}
    for cls in classes:
        for s in settings_of(cls):
            if s.name in out:
                seen = out[s.name]
                extra = tuple(c for c in s.choices if c not in seen.choices)
                if extra:
                    out[s.name] = dataclasses.replace(seen, choices=seen.choices + extra)
            else:
                out[s.name] = s
    return out


def _int(value) -> int:
    if isinstance(value, bool):
        raise ValueError
    if isinstance(value, float) and not value.is_integer():
        raise ValueError
    return int(value)


def _bool(value) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off"):
        return False
    raise ValueError


def _demos(value):
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    text = str(value).strip().lower()
    if text in ("none", "per-label"):
        return text
    if text.isdigit():
        return int(text)
    raise ValueError


def _kind(s: Setting) -> str:
    return {"int": "a whole number", "float": "a finite number", "bool": "true or false",
            "demos": "none, per-label or a number of demos"}.get(s.type, "text")
