"""Reading a model's reply as one of the dataset's labels: `parse_label`, and the form labels are matched in.

A leaf: the standard library only, and nothing of promptlab, so that an export can carry this very file beside its
config (the promptfoo export's assertion is this module plus a `get_assert`), and a label is read outside promptlab
exactly as promptlab read it when it scored the prompt.
"""
from __future__ import annotations

import re
import unicodedata


def normalize_label(value: str) -> str:
    """The form labels are matched in: Unicode-normalized, trimmed, whitespace collapsed, case-folded."""
    return " ".join(unicodedata.normalize("NFKC", str(value)).split()).casefold()


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
