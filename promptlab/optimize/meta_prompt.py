"""The meta-prompts as data: the arena's template and the parts that fill it, the critic's and the editor's, and the
pure functions that fill them. `build_meta_prompt` is the one builder: the arena sends what it returns, and the
preview on the Prompts and proposers page shows what it returns for a stored round's parts.

Everything taken from the dataset is fenced: texts are cut to a bounded length and any tag-like text
that could close or open one of our sections is neutralized, so an example that says "ignore the
above and …" stays an example and cannot change the meta-prompt's structure.
"""
from __future__ import annotations

import string
from dataclasses import asdict, dataclass, field

from promptlab.language import language_name
from promptlab.scoring.reading import normalize_label
from promptlab.text import fence


DEFAULT_META_PROMPT = """You are an expert prompt engineer. Your job is to write the instruction that makes a small language model label texts correctly.

## The task
{task}

Every text gets exactly one of these labels: {labels}.
The model must reply with one of those labels. We measure {metric}.

## Examples from the training data
{examples}

## Instructions tried so far, with their scores (0 to 100, higher is better), worst first, best last
{history}

{rejected}{errors}{confusion}## What to write
Write {n} new instructions that would score higher than every instruction above, each different from all of them.{angles}
Small models follow short, concrete instructions best: one line per label saying what it means in general words, a hint against the mistakes shown (if any), and a last line "Answer with the label name only." Never copy a text from the examples or mistakes above into an instruction: solved examples are chosen and sent separately, and an instruction that repeats one is dropped.
{input_rule}{demos}{language}
Reply with exactly {n} instructions, each inside <prompt> and </prompt> tags, shaped like this:
{format}
"""

# For datasets without labels: a reference answer per example, or outputs graded by a judge's rubric.
DEFAULT_META_PROMPT_OPEN = """You are an expert prompt engineer. Your job is to write the instruction that makes a small language model answer well.

## The task
{task}

We measure {metric}.

## Examples from the training data
{examples}

## Instructions tried so far, with their scores (0 to 100, higher is better), worst first, best last
{history}

{rejected}{errors}## What to write
Write {n} new instructions that would score higher than every instruction above, each different from all of them.{angles}
Small models follow short, concrete instructions best: say exactly what to answer, in what form and how long, and add a hint against the low-scoring answers shown (if any). Never copy an input from the examples above into an instruction: solved examples are chosen and sent separately, and an instruction that repeats one is dropped.
{input_rule}{demos}{language}
Reply with exactly {n} instructions, each inside <prompt> and </prompt> tags, shaped like this:
{format}
"""


def default_meta_prompt(has_labels: bool) -> str:
    """The meta-prompt a run starts from: the label template, or the open one for reference and unlabeled data."""
    return DEFAULT_META_PROMPT if has_labels else DEFAULT_META_PROMPT_OPEN

PLACEHOLDERS: dict[str, str] = {
    "task": "the task description the user wrote",
    "metric": "the target metric in words, e.g. \"recall of label 'unsupportive'\"",
    "labels": "the label set, comma-separated",
    "history": "the top-K prompts so far with their val scores (0-100), sorted so the best comes last",
    "examples": "a few train examples (input and gold label), fenced",
    "errors": "the current best prompt's answer mix against the true label mix, and its mistakes on train examples (input, gold, the target's reply), fenced",
    "confusion": "the current best prompt's confusion matrix on those train examples; empty if not shown",
    "rejected": "candidates that did worse than the prompts shown, briefly, with their scores and on how many examples (so proposers do not write them again); empty if none",
    "language": "where the data is not in English: which language to write the instructions in; empty for English data",
    "demos": "when the instructions will be sent with solved examples (demonstrations): a sentence saying so; empty otherwise",
    "angles": "a numbered list: what kind of instruction each of the n should be (one angle each, drawn per round), so one call does not write the same prompt n times",
    "n": "how many candidates each proposer should write",
    "input_rule": "where the example text goes: keep {input} in the prompt, or leave the text out",
    "format": "a skeleton of one answer: <prompt> tags around a task line, one '<label>: …' line per label, and the answer rule",
}

REQUIRED = ("history", "n")
SKELETON_TASK = "Decide which label the text should get."
SKELETON_MEANING = "... (what it means)"


class MetaPromptError(ValueError):
    pass


def template_fields(template: str) -> set[str]:
    return {name for _, name, _, _ in string.Formatter().parse(template) if name}


def check_template(template: str) -> None:
    """Raise MetaPromptError naming unknown or missing placeholders (literal braces are written {{ }})."""
    try:
        fields = template_fields(template)
    except ValueError as exc:
        raise MetaPromptError(f"the meta-prompt template is malformed ({exc}); write literal braces as {{{{ and }}}}") from None
    unknown = sorted(fields - set(PLACEHOLDERS))
    if unknown:
        raise MetaPromptError(
            f"unknown placeholder(s) {', '.join('{' + u + '}' for u in unknown)} in the meta-prompt. "
            f"Available: {', '.join('{' + k + '}' for k in PLACEHOLDERS)}"
        )
    missing = [r for r in REQUIRED if r not in fields]
    if missing:
        raise MetaPromptError(f"the meta-prompt must contain {', '.join('{' + m + '}' for m in missing)}")


@dataclass(frozen=True)
class ScoredPrompt:
    text: str
    score: float  # in the metric's range


@dataclass(frozen=True)
class Mistake:
    text: str
    gold: str  # the correct label or reference answer ("" when the dataset has none)
    reply: str
    score: float | None = None  # per-example score in [0, 1] (scorer and judge tasks)
    reason: str = ""  # the judge's reasoning for its grade


@dataclass(frozen=True)
class MetaPromptParts:
    task: str
    metric: str
    labels: tuple[str, ...]
    history: tuple[ScoredPrompt, ...]  # any order; rendered ascending
    examples: tuple[tuple[str, str], ...] = ()
    mistakes: tuple[Mistake, ...] = ()
    confusion: str = ""
    spread: str = ""  # how the best prompt's answers are distributed vs the correct labels
    n: int = 2
    needs_input: bool = False
    score_range: tuple[float, float] = (0.0, 1.0)
    kind: str = "labels"  # the dataset's kind: labels, reference or unlabeled
    rejected: tuple[ScoredPrompt, ...] = ()  # did worse; shown briefly so proposers do not repeat them
    rejected_n: tuple[int, ...] = ()  # on how many examples each rejected one was scored
    language_rule: str = ""  # the sentence on which language to write in (non-English data only)
    demos_note: str = ""  # the sentence saying the instructions will be sent with demonstrations (see demos_note)
    angles: tuple[str, ...] = ()  # what kind of instruction each of the n should be (see ANGLES)
    extra: dict = field(default_factory=dict)


def parts_record(parts: MetaPromptParts) -> dict:
    """The parts as a step stores them (JSON: tuples as lists, a NaN score as None); parts_from_record reads it back
    so that build_meta_prompt gives the same text."""
    rec = asdict(parts)
    for key in ("history", "rejected"):
        rec[key] = [{"text": p["text"], "score": None if p["score"] != p["score"] else p["score"]} for p in rec[key]]
    return rec


def parts_from_record(rec: dict) -> MetaPromptParts:
    """A stored round's parts (see parts_record)."""
    nan = float("nan")
    fields = {k: v for k, v in rec.items() if k in MetaPromptParts.__dataclass_fields__}
    return MetaPromptParts(**fields | {
        "labels": tuple(rec.get("labels") or ()),
        "history": tuple(ScoredPrompt(p["text"], nan if p["score"] is None else p["score"]) for p in rec.get("history") or ()),
        "rejected": tuple(ScoredPrompt(p["text"], nan if p["score"] is None else p["score"]) for p in rec.get("rejected") or ()),
        "examples": tuple(tuple(e) for e in rec.get("examples") or ()),
        "mistakes": tuple(Mistake(**m) for m in rec.get("mistakes") or ()),
        "score_range": tuple(rec.get("score_range") or (0.0, 1.0)),
        "rejected_n": tuple(rec.get("rejected_n") or ()),
        "angles": tuple(rec.get("angles") or ()),
    })


def _score100(score: float, lo: float, hi: float) -> int:
    return int(round(100 * (score - lo) / (hi - lo))) if hi > lo else int(round(score))


def render_history(history, lo: float = 0.0, hi: float = 1.0) -> str:
    # OPRO: ascending, so the best is nearest to where the model starts writing; integer scores.
    ordered = sorted(history, key=lambda p: (p.score == p.score, p.score if p.score == p.score else 0))
    blocks = [
        f"Instruction:\n{p.text.strip()}\nScore: {_score100(p.score, lo, hi) if p.score == p.score else 'not scored yet'}"
        for p in ordered
    ]
    return "\n\n".join(blocks) if blocks else "(none yet)"


REJECTED_CHARS = 160


def render_rejected(rejected, counts=(), lo: float = 0.0, hi: float = 1.0) -> str:
    """The candidates that did worse, one line each (cut), with their score and n: what not to write again."""
    if not rejected:
        return ""
    lines = []
    for i, p in enumerate(rejected):
        text = " ".join(p.text.split())
        text = text if len(text) <= REJECTED_CHARS else text[:REJECTED_CHARS].rstrip() + " …"
        n = f" on {counts[i]} examples" if i < len(counts) and counts[i] else ""
        score = _score100(p.score, lo, hi) if p.score == p.score else "?"
        lines.append(f'- "{fence(text, REJECTED_CHARS + 4)}" (score {score}{n})')
    return ("## Instructions that did worse (do not write these again, or anything close to them)\n"
            + "\n".join(lines) + "\n\n")


def language_rule(language: str, mode: str) -> str:
    """What proposers are told about the data's language: nothing for English data; otherwise write in the
    data's language ("data") or in English ("english"), keeping the labels exactly as they are."""
    if not language or language == "en" or mode not in ("data", "english"):
        return ""
    name = language_name(language)
    if mode == "data":
        return f"\nThe texts are in {name}: write each instruction in {name} (keep the label names exactly as given)."
    return f"\nThe texts are in {name}; write each instruction in English (keep the label names exactly as given)."

# What kind of instruction each slot of a proposer's reply should be. Asked for n prompts in one call, a small
# proposer writes the same one n times (measured: 4 of 4 identical, or copies of the best shown, on
# multiemo_hotels_en with qwen2.5-coder-1.5b and 0.5b); one angle per slot makes the n differ, as MIPROv2's
# proposer varies its "tips" per candidate. Each angle keeps the answer rule, so none invites a chatty reply.
ANGLES = {
    "labels": (
        "one line per label saying what it means",
        "a rule against the mistakes shown above, then one line per label",
        "what to look at in the text first, and how that decides the label",
        "the shortest instruction that still says what every label means",
        "for the labels the model confuses, what tells them apart",
        "two or three questions to ask about the text, in order, that lead to the label",
        "how an expert in this task would explain the labels to a beginner, in a few lines",
        "the label the model gives too often, and when another label is right instead",
    ),
    "open": (
        "exactly what to answer and in what form",
        "a rule against the low-scoring answers shown above",
        "the shortest instruction that still gets the answer right",
        "what a good answer has in common with the reference answers",
        "how an expert would go about it, in two or three short steps, then the answer alone",
        "what to leave out of the answer",
    ),
}


def draw_angles(n: int, kind: str, rng) -> tuple[str, ...]:
    """n different angles for one proposer call, at random (seeded) from the ones for the dataset's kind."""
    pool = ANGLES["labels" if kind == "labels" else "open"]
    return tuple(pool[i] for i in rng.permutation(len(pool))[:n]) if n > 1 else ()


def render_angles(angles, kind: str = "labels") -> str:
    if not angles:
        return ""
    rule = "Answer with the label name only." if kind == "labels" else "the answer alone"
    lines = [f"{i}. {a}." for i, a in enumerate(angles, 1)]
    return (f"\nMake each one a different kind of instruction, in this order (each still ending with {rule!r} where "
            "it fits):\n" + "\n".join(lines))


def demos_note(n: int, demo_format: str = "chat", similar_k: int = 0, similar_by: str = "tfidf") -> str:
    """What proposers are told when their instructions will ship with demonstrations: they write the instruction
    those examples need (what the labels mean, what to look at), not examples of their own."""
    if n <= 0:
        return ""
    which = (f"the {similar_k} solved training examples most similar to each text" if similar_k
             else f"the same {n} solved training example{'s' if n != 1 else ''}")
    where = "as earlier turns of the conversation" if demo_format == "chat" else "after the instruction"
    return (f"\nEach instruction will be sent with {which}, {where}: write the instruction those examples need "
            "(what each label means and what to look at), without adding examples of your own.")


def render_examples(examples, kind: str = "labels") -> str:
    if not examples:
        return "(none shown)"
    if kind == "unlabeled":
        return "\n".join(f"<example>\nInput: {fence(t)}\n</example>" for t, _ in examples)
    if kind == "reference":
        return "\n".join(f"<example>\nInput: {fence(t)}\nReference answer: {fence(g, 200)}\n</example>" for t, g in examples)
    return "\n".join(f"<example>\nText: {fence(t)}\nLabel: {fence(g, 80)}\n</example>" for t, g in examples)


def answer_spread(gold: list[str], pred: list, labels: tuple[str, ...]) -> str:
    """One line a small proposer can act on: the answer mix of the best prompt against the true mix."""
    n = len(gold) or 1
    norm = {normalize_label(lab): lab for lab in labels}
    answered = [norm.get(p) if isinstance(p, str) else None for p in pred]
    parts_pred = [f"{lab} {sum(1 for a in answered if a == lab) / n:.0%}" for lab in labels]
    invalid = sum(1 for a in answered if a is None)
    if invalid:
        parts_pred.append(f"no valid label {invalid / n:.0%}")
    parts_gold = [f"{lab} {sum(1 for g in gold if normalize_label(g) == normalize_label(lab)) / n:.0%}" for lab in labels]
    return f"With the best instruction the model answers: {', '.join(parts_pred)}. The correct labels are: {', '.join(parts_gold)}."


def render_low_scores(mistakes) -> str:
    """Scorer and judge tasks: the best instruction's lowest-scoring replies, with the judge's reasons."""
    if not mistakes:
        return ""
    blocks = []
    for m in mistakes:
        lines = [f"Input: {fence(m.text)}"]
        if m.gold:
            lines.append(f"Reference answer: {fence(m.gold, 200)}")
        lines.append(f"The model replied: {fence(m.reply, 240)}")
        if m.score is not None:
            lines.append(f"Score: {int(round(100 * m.score))} of 100")
        if m.reason:
            lines.append(f"Why (the judge): {fence(m.reason, 300)}")
        blocks.append("<mistake>\n" + "\n".join(lines) + "\n</mistake>")
    return "## Low-scoring answers of the best instruction on training examples\n" + "\n".join(blocks) + "\n\n"


def render_mistakes(mistakes, spread: str = "") -> str:
    if not mistakes:
        return f"## How the best instruction does on training examples\n{spread}\n\n" if spread else ""
    body = "\n".join(
        f"<mistake>\nText: {fence(m.text)}\nCorrect label: {fence(m.gold, 80)}\nThe model replied: {fence(m.reply, 160)}\n</mistake>"
        for m in mistakes
    )
    head = f"{spread}\n" if spread else ""
    return f"## Mistakes the best instruction made on training examples\n{head}{body}\n\n"


def build_meta_prompt(template: str, parts: MetaPromptParts) -> str:
    """Fill the template. Pure: the same parts always give the same text."""
    check_template(template)
    input_rule = (
        "Keep the placeholder {input} in each instruction exactly where the text must go."
        if parts.needs_input
        else "Do not include any text to label: it is sent separately after the instruction." if parts.kind == "labels"
        else "Do not include the input itself: it is sent separately after the instruction."
    )
    lo, hi = parts.score_range
    shown = list(parts.labels[:12])
    if parts.kind == "labels":
        skeleton = "\n".join(
            ["<prompt>", SKELETON_TASK]
            + [f"{lab}: {SKELETON_MEANING}" for lab in shown]
            + (["…"] if len(parts.labels) > len(shown) else [])
            + (["Text: {input}"] if parts.needs_input else [])
            + ["Answer with the label name only.", "</prompt>"]
        )
    else:
        skeleton = "\n".join(["<prompt>", "... (what to do with the input)", "... (the form and length of the answer)"]
                             + (["Input: {input}"] if parts.needs_input else []) + ["</prompt>"])
    values = {
        "task": parts.task.strip(),
        "metric": parts.metric,
        "labels": ", ".join(parts.labels),
        "history": render_history(parts.history, lo, hi),
        "examples": render_examples(parts.examples, parts.kind),
        "errors": render_mistakes(parts.mistakes, parts.spread) if parts.kind == "labels" else render_low_scores(parts.mistakes),
        "confusion": f"## How the best instruction's answers were spread (rows: correct label)\n{parts.confusion}\n\n" if parts.confusion else "",
        "rejected": render_rejected(parts.rejected, parts.rejected_n, lo, hi),
        "language": parts.language_rule,
        "demos": parts.demos_note,
        "angles": render_angles(parts.angles, parts.kind),
        "n": str(parts.n),
        "input_rule": input_rule,
        "format": skeleton,
    }
    return template.format(**{k: v for k, v in values.items() if k in template_fields(template)})


# --- textual gradients -----------------------------------------------------------------------------

CRITIC_PROMPT = """You review an instruction given to a small language model that labels texts.

## The task
{task}
Labels: {labels}. We measure {metric}.

## The instruction
<instruction>
{prompt}
</instruction>

## Where it went wrong (training examples)
{errors}
## Your feedback
In at most {words} words, say what in the instruction leads to these mistakes and what to change. Be concrete; do not rewrite the whole instruction and do not quote the examples back."""

EDITOR_PROMPT = """You improve an instruction given to a small language model that labels texts.

## The task
{task}
Labels: {labels}. We measure {metric}.

## The current instruction
<instruction>
{prompt}
</instruction>

## Feedback on its mistakes
{feedback}

## What to write
Write {n} improved versions of the instruction that act on the feedback. Keep what works; one line per label saying what it means; end with "Answer with the label name only." Never copy a text from the mistakes into an instruction.{angles}
{input_rule}{language}
Reply with exactly {n} instructions, each inside <prompt> and </prompt> tags."""


def _open_task(text: str) -> str:
    """The label-task wording of the critic and editor prompts, for tasks without labels."""
    return (text.replace("that labels texts", "that answers inputs").replace("Labels: . We measure", "We measure")
            .replace("Do not include any text to label", "Do not include the input itself")
            .replace("Keep what works; one line per label saying what it means; end with \"Answer with the label name only.\"",
                     "Keep what works; say exactly what to answer and in what form."))


def critic_prompt(task: str, labels, metric: str, prompt: str, mistakes, spread: str, words: int) -> str:
    errors = render_mistakes(mistakes, spread) if labels else render_low_scores(mistakes)
    out = CRITIC_PROMPT.format(task=task.strip(), labels=", ".join(labels), metric=metric, prompt=fence(prompt, 4000),
                               errors=errors, words=words)
    return out if labels else _open_task(out)


def editor_prompt(task: str, labels, metric: str, prompt: str, feedback: str, n: int, needs_input: bool,
                  language: str = "", angles=(), no_copy: bool = True) -> str:
    """The editor's request. `no_copy=False`: the wording of runs stored before copied inputs were dropped."""
    input_rule = ("Keep the placeholder {input} in each instruction exactly where the text must go." if needs_input
                  else "Do not include any text to label: it is sent separately after the instruction.")
    template = EDITOR_PROMPT if no_copy else EDITOR_PROMPT.replace(" Never copy a text from the mistakes into an instruction.", "")
    out = template.format(task=task.strip(), labels=", ".join(labels), metric=metric, prompt=fence(prompt, 4000),
                               feedback=fence(feedback, 2000), n=n, input_rule=input_rule, language=language,
                               angles=render_angles(angles, "labels" if labels else "open"))
    return out if labels else _open_task(out)


def low_scoring(res, n: int, rng) -> tuple[Mistake, ...]:
    """The mistakes a proposer sees, for any objective: with labels, n wrong answers at random; with a
    scorer or judge, the n lowest-scoring replies (ties at random), with the judge's reasons."""
    rows = res.rows
    if not getattr(res, "scored", False):
        wrong = rows[~rows["correct"]]
        pick = wrong.iloc[rng.permutation(len(wrong))[:n]]
        return tuple(Mistake(r.text, r.gold, r.reply or "(no reply)") for r in pick.itertuples())
    low = rows[rows["score"] < 1.0].drop_duplicates("text")
    low = low.iloc[rng.permutation(len(low))]
    low = low.sort_values("score", kind="stable").head(n)
    return tuple(Mistake(r.text, r.gold or "", r.reply or "(no reply)", float(r.score),
                         str(r.detail) if isinstance(r.detail, str) and r.parse in ("judged", "unjudged") else "")
                 for r in low.itertuples())


def bound_feedback(text: str, max_chars: int) -> str:
    """Feedback cut to max_chars at a sentence or word boundary (textual gradients must stay bounded)."""
    text = " ".join((text or "").split())
    if len(text) <= max_chars:
        return text
    cut = text[:max_chars]
    end = max(cut.rfind(". "), cut.rfind("! "), cut.rfind("? "))
    return (cut[: end + 1] if end > max_chars // 2 else cut[: cut.rfind(" ")] + " …").strip()
