"""Proposals: what a proposer's reply turns into. The settings of every strategy whose proposers write candidates, the
parsing of a reply's <prompt> blocks, the harmless repairs, and the screen that drops what is not a usable
instruction (empty, overlong, a leak of the meta-prompt's format, a copy of a prompt, an angle or an input).

One vocabulary for the counts, in code, pages, CLI and JSON: a call *asks* for n prompts, the reply has those it
*wrote* (cut-off ones included), and the *usable* ones pass the screen and become candidates.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Generator

from promptlab.optimize.base import OptimizeContext, ProposalMade, Step
from promptlab.optimize.meta_prompt import SKELETON_MEANING
from promptlab.optimize.pool import Cand, Pool
from promptlab.optimize.settings import setting
from promptlab.prompt import PLACEHOLDER, normalize_prompt


@dataclass(frozen=True, kw_only=True)
class ProposerSettings:
    """The settings of every strategy whose proposers write candidates (the arena's proposers, the gradient's
    editor), declared once."""

    # Several per call: one call that writes four costs little more than one that writes two (the meta-prompt is
    # most of the tokens), and a small proposer's usable share is low, so more per call means more to race.
    candidates: int = setting(4, "candidates each proposer (the gradient's editor) writes per round, in one call",
                              type="int", low=1, high=8, label="Candidates per proposer")
    # Where the data is not in English, proposers are told its language and asked to write in it ("data")
    # or in English ("english"). Which helps is being measured on the parallel multiemo_medicine_en/_ru pair
    # (benchmarks/auto_bench.py --language-check); English stays the default until it says otherwise.
    language: str = setting("english", "where the data is not in English: proposers write instructions in English or "
                            "in the data's language (off: say nothing about it)", type="choice",
                            choices=("english", "data", "off"), label="Proposers write in")


def take_proposals(ctx: OptimizeContext, pool: Pool, round_: int, spec, reply, meta: str, parents, n: int,
                   needs_input: bool, max_chars: int, make_template, rejected=(), angles=(), inputs=None, parts=None
                   ) -> Generator[Step, None, tuple[list[Cand], int]]:
    """Parse a proposer's reply into at most n screened candidates (yielding each CandidateProposed),
    then a ProposalMade recording what was asked, kept, dropped (per reason) and repaired. Returns (the kept, how
    many were dropped for repeating a prompt already raced: evidence, like a raced one, that the search is done).
    `rejected`: texts of candidates that did worse; a proposal that repeats one nearly word for word is dropped.
    `angles`: the kinds of instruction the call asked for; a proposal that only restates one is dropped.
    `inputs`: the data's inputs (InputIndex); a proposal that contains one word for word is dropped.
    `parts`: the record of what the meta-prompt showed (meta_prompt.parts_record), stored with the call."""
    allowed = {"input", "labels", *ctx.dataset.input_cols}
    texts, truncated = parse_proposals(reply.text if reply.ok else "")
    dropped: dict[str, int] = {"truncated": truncated} if truncated else {}
    repaired: dict[str, int] = {}
    kept: list[Cand] = []
    for raw_text in texts[: n * 2]:
        text, repairs = clean_proposal(raw_text, ctx.dataset.labels)
        for r in repairs:
            repaired[r] = repaired.get(r, 0) + 1
        why = screen(text, pool.seen, needs_input, allowed, max_chars)
        if why is None and rejected and near_duplicate(text, rejected):
            why = "repeats_rejected"
        if why is None and copies_angle(text, angles):
            why = "copied_angle"
        if why is None and copies_input(text, inputs):
            why = "copies_input"
        if why is None and len(kept) >= n:
            why = "over_n"
        if why:
            dropped[why] = dropped.get(why, 0) + 1
            continue
        cand, step = pool.add(round_, make_template(text), spec.label, spec.family, parents, meta, reply.text, text=text)
        kept.append(cand)
        yield step
    if not texts and reply.ok:
        dropped["no_tags"] = dropped.get("no_tags", 0) + 1
    yield ProposalMade(
        round=round_, proposer=spec.label, family=spec.family, meta_prompt=meta, raw_reply=reply.text,
        error=reply.error, accepted=tuple(c.id for c in kept), dropped=dropped, repaired=repaired, cached=reply.cached,
        asked=n, parts=parts or {},
    )
    return kept, dropped.get("duplicate", 0) + dropped.get("repeats_rejected", 0)


_OPEN = re.compile(r"<\s*prompt\s*>", re.I)
_CLOSE = re.compile(r"<\s*/\s*prompt\s*>", re.I)
_PAIR = re.compile(r"<\s*prompt\s*>(.*?)<\s*/\s*prompt\s*>", re.I | re.S)


def parse_proposals(reply: str) -> tuple[list[str], int]:
    """Texts inside <prompt>…</prompt> tags, in order; also the count of unclosed (truncated) ones."""
    texts = [m.group(1).strip() for m in _PAIR.finditer(reply or "")]
    tail = _PAIR.sub("", reply or "")
    truncated = len(_OPEN.findall(tail))
    return texts, truncated


def near_duplicate(text: str, others, threshold: float = 0.9) -> bool:
    """Whether `text` shares at least `threshold` of its distinct words with one of `others` (Jaccard)."""
    words = set(normalize_prompt(text).split())
    if not words:
        return False
    for other in others:
        o = set(normalize_prompt(other).split())
        if o and len(words & o) / len(words | o) >= threshold:
            return True
    return False


_LEAK = re.compile(
    r"<\s*/?\s*(prompt|example|mistake)\b|^\s*score\s*:\s*\d|\{history\}|\{examples\}|write \d+ new instructions",
    re.I | re.M,
)
_LABEL_PREFIX = re.compile(r"^\s*(new\s+)?instruction\s*\d*\s*:\s*", re.I)


# Lines where a small proposer starts copying the meta-prompt's own sections into its answer.
_COPIED_SECTION = re.compile(
    r"^\s*(score\s*:|mistake\b|<\s*mistake|text\s*:\s*(?!\{)|correct label\s*:|the model replied\s*:|#{1,3}\s|<\s*example)",
    re.I | re.M,
)


def clean_proposal(text: str, labels: tuple[str, ...] = ()) -> tuple[str, list[str]]:
    """Repair what small proposers get wrong in harmless ways; returns (text, repairs made).

    A copied 'Instruction:' heading is removed; the text is cut where it starts copying the
    meta-prompt's sections (scores, mistakes, examples); a label written as a placeholder
    ('{billing}') becomes the plain label.
    """
    repairs = []
    out = _LABEL_PREFIX.sub("", text.strip()).strip()
    if "\\n" in out:  # newlines written as the two characters backslash and n (seen from qwen2.5-coder-1.5b)
        out = out.replace("\\n", "\n").strip()
        repairs.append("unescaped_newlines")
    m = _COPIED_SECTION.search(out)
    if m and out[: m.start()].strip():
        out = out[: m.start()].strip()
        repairs.append("trimmed")
    if labels:
        by_norm = {normalize_prompt(lab): lab for lab in labels}

        def unbrace(match):
            lab = by_norm.get(normalize_prompt(match.group(1)))
            return lab if lab is not None else match.group(0)

        fixed = PLACEHOLDER.sub(unbrace, out)
        if fixed != out:
            repairs.append("unbraced_labels")
            out = fixed
    return out, repairs


def copies_angle(text: str, angles) -> bool:
    """Whether a proposal is only one of the angles it was asked to take, written back as the instruction (a small
    proposer's slip: "What to look at in the text first.\nAnswer with the label name only.")."""
    if not angles:
        return False
    body = "\n".join(line for line in text.splitlines()
                     if line.strip() and not normalize_prompt(line).startswith("answer with"))
    words = set(re.findall(r"\w+", body.casefold()))
    if not words:
        return True
    # (nearly) every word of it comes from one angle: it says what kind of instruction to write, not the instruction
    return any(len(words & set(re.findall(r"\w+", a.casefold()))) >= 0.8 * len(words) for a in angles)

# A proposal that carries a train or val input word for word is not an instruction but a copied example (seen: one
# train review pasted as the "definition" of three labels), and one carrying a val input would be judged on its own
# answer. Eight words in a row is longer than any phrase two texts share by chance and shorter than any copied
# sentence; an input of four to seven words counts whole.
COPY_RUN = 8
COPY_WHOLE = 4
_WORD = re.compile(r"\w+", re.U)


def _words(text: str) -> tuple[str, ...]:
    return tuple(_WORD.findall(text.casefold()))


@dataclass(frozen=True)
class InputIndex:
    """The word runs of a dataset's inputs that a proposal must not contain (see copies_input)."""

    runs: frozenset  # every COPY_RUN-word run of every input
    whole: frozenset  # inputs of COPY_WHOLE to COPY_RUN - 1 words, whole


def input_index(texts) -> InputIndex:
    runs, whole = set(), set()
    for text in texts:
        words = _words(str(text))
        if len(words) >= COPY_RUN:
            runs.update(words[i:i + COPY_RUN] for i in range(len(words) - COPY_RUN + 1))
        elif len(words) >= COPY_WHOLE:
            whole.add(words)
    return InputIndex(frozenset(runs), frozenset(whole))


def inputs_of(ctx: OptimizeContext) -> InputIndex:
    """The index of the run's inputs (ctx.inputs()), built once per run."""
    return ctx.once("input_index", lambda: input_index(ctx.inputs()))


def copies_input(text: str, index: InputIndex | None) -> bool:
    """Whether a proposal contains an input of the data word for word: a run of COPY_RUN of its words, or the whole of
    a shorter one (case and punctuation ignored)."""
    if index is None:
        return False
    words = _words(text)
    if any(words[i:i + COPY_RUN] in index.runs for i in range(len(words) - COPY_RUN + 1)):
        return True
    return any(words[i:i + k] in index.whole for k in range(COPY_WHOLE, COPY_RUN)
               for i in range(len(words) - k + 1)) if index.whole else False


def screen(text: str, seen: set[str], needs_input: bool, allowed_fields: set[str], max_chars: int) -> str | None:
    """Why a proposed text is dropped, or None if it is kept. `seen` holds normalized texts so far."""
    if not text.strip():
        return "empty"
    if len(text) > max_chars:
        return "overlong"
    if _LEAK.search(text):
        return "leaks_format"
    if SKELETON_MEANING in text or "(what it means)" in text:
        return "copied_skeleton"
    names = {m.group(1) for m in PLACEHOLDER.finditer(text)}
    if names - allowed_fields:
        return "bad_placeholder"
    if needs_input and not (names & (allowed_fields - {"labels"})):
        return "missing_input"
    if normalize_prompt(text) in seen:
        return "duplicate"
    return None
