"""Scorers for tasks whose examples carry a reference answer instead of a label (issue 9, first part).

A scorer compares one output with one reference and returns a score in [0, 1]. Each is named by a
short spec, the same way metrics are (`parse_scorer("numeric:0.01")`), and describes itself in one
sentence for the meta-prompt. Pure functions: no model calls here (the LLM judge lives elsewhere).

    exact            the output equals the reference (outer whitespace ignored)
    normalized       equal after case folding, Unicode normalization, punctuation and extra spaces removed
    contains         the normalized reference appears in the normalized output
    regex[:PATTERN]  the output matches PATTERN (or, without one, the reference read as a pattern)
    numeric[:TOL]    the first number in the output is within TOL of the reference (TOL% for relative)
    token_f1         SQuAD-style token F1 between normalized output and reference
    json:FIELD       the output's JSON (the first object in it) has FIELD (a.b.c) equal to the reference
"""
from __future__ import annotations

import json
import math
import re
import unicodedata
from collections import Counter
from dataclasses import dataclass

from promptlab.scoring.base import MeanScore, Reading, ScoringError

SCORER_KINDS = ("exact", "normalized", "contains", "regex", "numeric", "token_f1", "json")
BINARY = {"exact", "normalized", "contains", "regex", "numeric", "json"}  # each reply scores 0 or 1
DEFAULT = "normalized"


class ScorerError(ScoringError):
    pass


_PUNCT = re.compile(r"[^\w\s]", re.UNICODE)
_NUMBER = re.compile(
    r"(?P<sign>[-+−])?(?:"
    r"(?P<comma>\d{1,3}(?:,\d{3})+(?:\.\d+)?)"  # 1,234,567.5
    r"|(?P<space>\d{1,3}(?:[ \u00a0\u202f]\d{3})+(?:[.,]\d+)?)"  # 1 234 567,5
    r"|(?P<plain>\d+(?:[.,]\d+)?)"  # 1234.5 or 3,14
    r")(?P<exp>[eE][-+]?\d+)?"
)


def normalize_text(text: str) -> str:
    """NFKC, case folded, punctuation dropped, whitespace collapsed (language-neutral: no article lists)."""
    text = unicodedata.normalize("NFKC", str(text)).casefold()
    return " ".join(_PUNCT.sub(" ", text).split())


def first_number(text: str) -> float | None:
    """The first number written in `text`: 1,234.5 / 1 234,5 / -3 / 2.5e3 / 3,14 (a decimal comma)."""
    m = _NUMBER.search(unicodedata.normalize("NFKC", str(text)))
    if not m:
        return None
    if m.group("comma"):
        body = m.group("comma").replace(",", "")
    elif m.group("space"):
        body = re.sub(r"[ \u00a0\u202f]", "", m.group("space")).replace(",", ".")
    else:
        body = m.group("plain").replace(",", ".")
    sign = "-" if m.group("sign") in ("-", "−") else ""
    return float(sign + body + (m.group("exp") or ""))


def token_f1(output: str, reference: str) -> float:
    out, ref = normalize_text(output).split(), normalize_text(reference).split()
    if not out and not ref:
        return 1.0
    common = sum((Counter(out) & Counter(ref)).values())
    if common == 0:
        return 0.0
    precision, recall = common / len(out), common / len(ref)
    return 2 * precision * recall / (precision + recall)


def _json_object(text: str):
    """The first JSON object in a reply (fenced in ``` or bare), or None."""
    text = re.sub(r"^```(?:json)?|```$", "", text.strip(), flags=re.M).strip()
    decoder = json.JSONDecoder()
    for i, ch in enumerate(text):
        if ch in "{[":
            try:
                return decoder.raw_decode(text[i:])[0]
            except ValueError:
                continue
    return None


def _field(doc, path: str):
    for part in path.split("."):
        if isinstance(doc, dict) and part in doc:
            doc = doc[part]
        elif isinstance(doc, list) and part.isdigit() and int(part) < len(doc):
            doc = doc[int(part)]
        else:
            raise KeyError(path)
    return doc


@dataclass(frozen=True)
class Scorer:
    kind: str
    arg: str | None = None

    @property
    def spec(self) -> str:
        return self.kind if self.arg is None else f"{self.kind}:{self.arg}"

    def describe(self) -> str:
        """One sentence for the meta-prompt and the dashboard."""
        return {
            "exact": "the reply must equal the reference answer exactly",
            "normalized": "the reply must equal the reference answer, ignoring case, punctuation and extra spaces",
            "contains": "the reply must contain the reference answer (ignoring case and punctuation)",
            "regex": f"the reply must match the pattern {self.arg}" if self.arg else
                     "the reply must match the example's reference pattern",
            "numeric": f"the reply's first number must be within {self.arg or '0'} of the reference number",
            "token_f1": "the reply is scored by word overlap (F1) with the reference answer",
            "json": f"the reply must be JSON whose field '{self.arg}' equals the reference",
        }[self.kind]

    def score(self, output: str | None, reference: str) -> float:
        if output is None:
            return 0.0
        output, reference = str(output), str(reference)
        if self.kind == "exact":
            return float(output.strip() == reference.strip())
        if self.kind == "normalized":
            return float(normalize_text(output) == normalize_text(reference))
        if self.kind == "contains":
            ref = normalize_text(reference)
            return float(bool(ref) and re.search(r"(?<!\w)" + re.escape(ref) + r"(?!\w)", normalize_text(output)) is not None)
        if self.kind == "regex":
            try:
                return float(re.search(self.arg or reference, output) is not None)
            except re.error as exc:
                raise ScorerError(f"the reference pattern {reference!r} is not a valid regular expression: {exc}") from None
        if self.kind == "numeric":
            got, want = first_number(output), first_number(reference)
            if got is None or want is None:
                return 0.0
            tol = self.arg or "0"
            limit = abs(want) * float(tol[:-1]) / 100 if tol.endswith("%") else float(tol)
            return float(math.isclose(got, want, abs_tol=limit + 1e-12, rel_tol=0.0))
        if self.kind == "token_f1":
            return token_f1(output, reference)
        if self.kind == "json":
            doc = _json_object(output)
            if doc is None:
                return 0.0
            try:
                value = _field(doc, self.arg)
            except KeyError:
                return 0.0
            ref_doc = _json_object(reference)
            if ref_doc is not None:
                try:
                    reference = _field(ref_doc, self.arg)
                except KeyError:
                    pass
            if isinstance(value, (int, float)) and not isinstance(value, bool) and first_number(str(reference)) is not None:
                return float(math.isclose(float(value), first_number(str(reference)), abs_tol=1e-9))
            return float(normalize_text(json.dumps(value, ensure_ascii=False) if not isinstance(value, str) else value)
                         == normalize_text(reference if isinstance(reference, str) else json.dumps(reference, ensure_ascii=False)))
        raise ScorerError(f"unknown scorer '{self.kind}'")


def parse_scorer(spec: str) -> Scorer:
    """'exact', 'normalized', 'contains', 'token_f1', 'regex[:PATTERN]', 'numeric[:TOL or TOL%]', 'json:FIELD'."""
    spec = (spec or "").strip()
    kind, _, arg = spec.partition(":")
    kind = kind.strip().lower()
    arg = arg if arg else None
    if kind not in SCORER_KINDS:
        raise ScorerError(f"unknown scorer '{spec}': use one of {', '.join(SCORER_KINDS)} (e.g. numeric:0.01, json:answer.city)")
    if kind in ("exact", "normalized", "contains", "token_f1") and arg:
        raise ScorerError(f"scorer '{kind}' takes no argument (got '{arg}')")
    if kind == "numeric" and arg:
        try:
            value = float(arg[:-1] if arg.endswith("%") else arg)
        except ValueError:
            raise ScorerError(f"numeric tolerance '{arg}' is not a number: write e.g. numeric:0.01 or numeric:5%") from None
        if value < 0:
            raise ScorerError(f"numeric tolerance '{arg}' is negative")
    if kind == "json" and not arg:
        raise ScorerError("the json scorer needs the field to compare: json:FIELD, e.g. json:answer or json:address.city")
    if kind == "regex" and arg:
        try:
            re.compile(arg)
        except re.error as exc:
            raise ScorerError(f"'{arg}' is not a valid regular expression: {exc}") from None
    return Scorer(kind, arg)


@dataclass(frozen=True)
class ReferenceScore(MeanScore):
    """The objective of a reference scorer: the mean of its per-reply score over examples."""

    scorer: Scorer = Scorer(DEFAULT)

    @property
    def name(self) -> str:
        return self.scorer.kind

    @property
    def spec(self) -> str:
        return self.scorer.spec

    def describe(self) -> str:
        return f"the share of replies that pass: {self.scorer.describe()}" if self.scorer.kind in BINARY else \
            f"the mean per-reply score: {self.scorer.describe()}"

    def read(self, reply: str, gold: str, gold_norm: str, labels: tuple[str, ...]) -> Reading:
        score = self.scorer.score(reply, gold)
        return Reading(reply.strip(), "scored", 0.0 if score is None else score)
