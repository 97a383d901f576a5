"""Small text helpers many modules need (fencing dataset text, showing a score): a leaf
module, imported by the heavy ones and importing none of them, so imports point one way."""
from __future__ import annotations

import math
import re

MAX_FIELD_CHARS = 400

_TAG_LIKE = re.compile(r"<\s*/?\s*(prompt|example|mistake|instruction|input|answer|reference)\b[^>]*>", re.I)
_HEADING_LINE = re.compile(r"(?m)^([ \t]*)(#+)")


def fence(text: str, limit: int = MAX_FIELD_CHARS) -> str:
    """Dataset text made safe to embed: tag-like markup neutralized, length bounded, one block."""
    text = _TAG_LIKE.sub(lambda m: m.group(0).replace("<", "‹").replace(">", "›"), str(text))
    text = text.replace("```", "ʼʼʼ")
    text = _HEADING_LINE.sub(lambda m: m.group(1) + "＃" * len(m.group(2)), text)  # no fake '## Section' lines
    if len(text) > limit:
        text = text[:limit].rstrip() + " […]"
    return text


def format_score(x, digits: int = 3) -> str:
    """A score for people: fixed decimals, and 'n/a' for a missing or undefined (NaN) value."""
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "n/a"
    return f"{x:.{digits}f}"


def format_ci(ci) -> str:
    """A confidence interval for people: '[0.612, 0.781]' ('n/a' for a missing end)."""
    lo, hi = ci
    return f"[{format_score(lo)}, {format_score(hi)}]"


def number_or_none(x) -> float | None:
    """A number as a float; None for a missing or undefined (NaN) value."""
    return None if x is None or x != x else float(x)


def json_number(x) -> float | None:
    """A number for JSON and the store: rounded to 6 places; None for a missing or undefined (NaN) value."""
    v = number_or_none(x)
    return None if v is None else round(v, 6)
